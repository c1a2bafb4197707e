import type { Database } from "better-sqlite3";

/** Small durable key/value facts (connection status, last errors) that `pos-agent status` reads. */
export interface MetaStore {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
  getJson<T>(key: string): T | undefined;
  setJson(key: string, value: unknown): void;
}

export function createMetaStore(db: Database): MetaStore {
  const select = db.prepare<[string], { value: string }>("SELECT value FROM meta WHERE key = ?");
  const upsert = db.prepare<[string, string]>(
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
  );
  const get = (key: string) => select.get(key)?.value;
  return {
    get,
    set: (key, value) => {
      upsert.run(key, value);
    },
    getJson<T>(key: string): T | undefined {
      const raw = get(key);
      if (raw === undefined) return undefined;
      try {
        return JSON.parse(raw) as T;
      } catch {
        return undefined;
      }
    },
    setJson: (key, value) => {
      upsert.run(key, JSON.stringify(value));
    },
  };
}
