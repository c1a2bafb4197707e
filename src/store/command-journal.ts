import type { Database } from "better-sqlite3";
import { CommandResponse } from "../shared/command-response.js";
import { AgentError, errorMessage } from "../shared/errors.js";

export type JournalBegin =
  | { kind: "new" }
  | { kind: "done"; response: CommandResponse }
  | { kind: "running" };

export interface InterruptedCommand {
  id: string;
  cmd: string;
  receivedAt: number;
}

export type CommandJournal = ReturnType<typeof createCommandJournal>;

/**
 * Which command ids were seen and how each ended, so a repeated id is answered with its first terminal
 * response and never executed twice, also across restarts (CONTRACT 6). Table from migration step 2.
 */
export function createCommandJournal(db: Database) {
  const select = db.prepare<[string], { state: string; response: string | null }>(
    "SELECT state, response FROM command_journal WHERE id = ?",
  );
  const insert = db.prepare<[string, string, number]>(
    "INSERT INTO command_journal (id, cmd, received_at, state) VALUES (?, ?, ?, 'running')",
  );
  const update = db.prepare<[string, number, string]>(
    "UPDATE command_journal SET state = 'done', response = ?, finished_at = ? WHERE id = ?",
  );
  const running = db.prepare<[], { id: string; cmd: string; received_at: number }>(
    "SELECT id, cmd, received_at FROM command_journal WHERE state = 'running' ORDER BY received_at, id",
  );
  const remove = db.prepare<[number]>("DELETE FROM command_journal WHERE state = 'done' AND received_at < ?");

  // IMMEDIATE: the look-up and the insert hold the write lock together, so two connections cannot both
  // see an id as new.
  const beginTx = db.transaction((id: string, cmd: string, now: number): JournalBegin => {
    const row = select.get(id);
    if (row === undefined) {
      insert.run(id, cmd, now);
      return { kind: "new" };
    }
    if (row.state === "running") return { kind: "running" };
    return { kind: "done", response: readResponse(id, row.response) };
  });

  return {
    /**
     * Atomically: a new id is recorded as running → `new`; a finished id → `done` with its terminal
     * response; one still running (or left running by a crash) → `running`. Throws AgentError INTERNAL
     * when the stored response is unreadable: the caller must then not execute the command.
     */
    begin(id: string, cmd: string, now: number): JournalBegin {
      return beginTx.immediate(id, cmd, now);
    },

    /** Records the terminal response; the row is `done` from now on. Also for a row left running by a crash. */
    finish(id: string, response: CommandResponse, now: number): void {
      const changed = update.run(JSON.stringify(response), now, id).changes;
      if (changed === 0) {
        throw new AgentError("INTERNAL", `command ${id} was never begun in the journal`, { details: { id } });
      }
    },

    /** Commands left running by a crash, oldest first (call once at start, before any begin). */
    interrupted(): InterruptedCommand[] {
      return running.all().map((row) => ({ id: row.id, cmd: row.cmd, receivedAt: row.received_at }));
    },

    /**
     * Forgets finished commands received before `olderThan` (ms); never a running one. A pruned id is
     * no longer recognised as a repeat, so keep well over the longest command lifetime.
     */
    prune(olderThan: number): number {
      return remove.run(olderThan).changes;
    },
  };
}

/** JSON read back from SQLite is a trust boundary. */
function readResponse(id: string, text: string | null): CommandResponse {
  if (text === null) {
    throw new AgentError("INTERNAL", `command journal entry ${id} is done but holds no response`, {
      details: { id },
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new AgentError("INTERNAL", `command journal entry ${id} is not JSON: ${errorMessage(error)}`, {
      cause: error,
      details: { id },
    });
  }
  const parsed = CommandResponse.safeParse(json);
  if (!parsed.success) {
    throw new AgentError(
      "INTERNAL",
      `command journal entry ${id} is not a command response: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}`,
      { cause: parsed.error, details: { id } },
    );
  }
  return parsed.data;
}
