import { AgentError } from "../shared/errors.js";
import type { AgentEvent, Severity } from "../shared/events.js";

export interface AlertRule {
  /** Metric name, or a pattern with one `*` segment (e.g. "disk.*.usedPct"): one alert per matching metric. */
  metric: string;
  direction: "above" | "below";
  threshold: number;
  /** The value must come back past threshold ∓ hysteresis to clear (same unit as the metric). */
  hysteresis: number;
  /** The condition (raise or clear) must hold this long, continuously, before the state changes. */
  minDurationMs: number;
  /** Severity of the raise event; clears are "info". */
  severity: Severity;
}

export interface ActiveAlert {
  /** The alert's key: the concrete metric name. */
  id: string;
  /** The concrete metric name (today equal to `id`; kept apart so the key may carry more later). */
  metric: string;
  /** The latest finite value seen while raised. */
  value: number;
  threshold: number;
  direction: "above" | "below";
  /** When the breach that raised the alert began (the first sample of the qualifying run). */
  since: number;
}

export interface AlertEngine {
  /** One sample; returns the events to record (0 or more), at most one per alert state change. */
  evaluate(metrics: Readonly<Record<string, number>>, now: number): AgentEvent[];
  /** The alerts currently raised, for the birth message. */
  active(): ActiveAlert[];
  /**
   * Alerts that were raised when the agent last stopped: raised again without an event, so a restart
   * neither repeats `alert.raised` nor loses the `alert.cleared` (it follows through the hysteresis).
   * Alerts no rule watches any more are dropped.
   */
  restore(previous: readonly ActiveAlert[]): void;
}

/**
 * A wildcard rule tracks at most this many concrete metrics at once. Only metrics that are raised or
 * pending hold state, so a terminal that mounts many disks over its life does not grow the map; a metric
 * beyond the limit is not watched until one of the tracked ones goes idle.
 */
export const MAX_ALERTS_PER_RULE = 64;

export const DEFAULT_ALERT_MIN_DURATION_MS = 60_000;
const PERCENT_HYSTERESIS = 5;
const TEMPERATURE_HYSTERESIS_C = 5;

/** The `alerts` section of the config. */
export interface AlertThresholds {
  diskUsedPct: number;
  memUsedPct: number;
  batteryPct: number;
  cpuTempC: number;
}

/** The host sampler's metrics checked against the configured thresholds. */
export function alertRulesFromConfig(
  alerts: AlertThresholds,
  options?: { minDurationMs?: number },
): AlertRule[] {
  const minDurationMs = options?.minDurationMs ?? DEFAULT_ALERT_MIN_DURATION_MS;
  // The disks the terminal runs on: small vendor partitions (/persist, /metadata) sit near full by
  // design and would alert for ever.
  const disk = (name: string): AlertRule => ({
    metric: `disk.${name}.usedPct`,
    direction: "above",
    threshold: alerts.diskUsedPct,
    hysteresis: PERCENT_HYSTERESIS,
    minDurationMs,
    severity: "high",
  });
  return [
    disk("data"),
    disk("root"),
    {
      metric: "mem.usedPct",
      direction: "above",
      threshold: alerts.memUsedPct,
      hysteresis: PERCENT_HYSTERESIS,
      minDurationMs,
      severity: "medium",
    },
    {
      metric: "battery.pct",
      direction: "below",
      threshold: alerts.batteryPct,
      hysteresis: PERCENT_HYSTERESIS,
      minDurationMs,
      severity: "high",
    },
    {
      metric: "cpu.tempC",
      direction: "above",
      threshold: alerts.cpuTempC,
      hysteresis: TEMPERATURE_HYSTERESIS_C,
      minDurationMs,
      severity: "high",
    },
  ];
}

/** Per concrete metric; only kept while raised or pending, so idle metrics cost nothing. */
interface AlertState {
  raised: boolean;
  /** Start of the breach that raised the alert; meaningful while raised. */
  since: number;
  value: number;
  /** First sample of the current uninterrupted run towards the other state. */
  pendingSince: number | undefined;
}

interface CompiledRule {
  rule: AlertRule;
  matcher: Matcher;
  states: Map<string, AlertState>;
}

/**
 * Edge rules, all strict so a value sitting exactly on a boundary never changes state:
 * raise needs the value past `threshold`, clear needs it past `threshold ∓ hysteresis`.
 *
 * A metric missing from a sample (absent sensor, unmounted disk) or carrying NaN/±Infinity is treated the
 * same way: the state does not change (a raised alert stays raised and listed) and any pending run is
 * reset, because we cannot vouch that the condition held "continuously" across a gap in the readings.
 *
 * `now` only has to be consistent between calls; if it steps backwards, a pending run restarts there.
 * `details.since` is the alert's `since` in both its events, so a consumer can pair them and get the duration.
 */
export function createAlertEngine(rules: readonly AlertRule[]): AlertEngine {
  const compiled: CompiledRule[] = rules.map((rule, index) => {
    validateRule(rule, index);
    return { rule, matcher: compileMatcher(rule.metric, index), states: new Map() };
  });
  rejectOverlaps(compiled);

  function step(entry: CompiledRule, id: string, value: number, now: number): AgentEvent | undefined {
    const { rule, states } = entry;
    let state = states.get(id);
    const raised = state?.raised ?? false;
    const towardsChange = raised ? isCleared(rule, value) : isBreached(rule, value);
    if (state !== undefined) state.value = value;
    if (!towardsChange) {
      if (state === undefined) return undefined;
      state.pendingSince = undefined;
      if (!state.raised) states.delete(id);
      return undefined;
    }
    if (state === undefined) {
      if (states.size >= MAX_ALERTS_PER_RULE) return undefined;
      state = { raised: false, since: now, value, pendingSince: undefined };
      states.set(id, state);
    }
    if (state.pendingSince === undefined || now < state.pendingSince) state.pendingSince = now;
    const heldMs = now - state.pendingSince;
    if (heldMs < rule.minDurationMs) return undefined;

    if (!state.raised) {
      state.raised = true;
      state.since = state.pendingSince;
      state.pendingSince = undefined;
      return {
        type: "alert.raised",
        severity: rule.severity,
        source: "host",
        message: `${id} is ${show(value)}, ${rule.direction} ${show(rule.threshold)} for ${Math.round(heldMs / 1000)} s`,
        details: details(rule, id, value, state.since),
      };
    }
    states.delete(id);
    return {
      type: "alert.cleared",
      severity: "info",
      source: "host",
      message: `${id} is back to ${show(value)} (alert at ${show(rule.threshold)})`,
      details: details(rule, id, value, state.since),
    };
  }

  return {
    evaluate(metrics, now) {
      const events: AgentEvent[] = [];
      for (const entry of compiled) {
        const readings = new Map<string, number>();
        for (const id of entry.matcher.candidates(metrics)) {
          const value: unknown = metrics[id];
          if (typeof value === "number" && Number.isFinite(value)) readings.set(id, value);
        }
        // Gaps first, so slots freed by vanished metrics are available to new ones in this same sample.
        for (const [id, state] of entry.states) {
          if (readings.has(id)) continue;
          state.pendingSince = undefined;
          if (!state.raised) entry.states.delete(id);
        }
        for (const [id, value] of readings) {
          const event = step(entry, id, value, now);
          if (event !== undefined) events.push(event);
        }
      }
      return events;
    },
    restore(previous) {
      for (const alert of previous) {
        const entry = compiled.find((candidate) =>
          [...candidate.matcher.candidates({ [alert.id]: 0 })].includes(alert.id),
        );
        if (entry === undefined || entry.states.size >= MAX_ALERTS_PER_RULE) continue;
        entry.states.set(alert.id, {
          raised: true,
          since: alert.since,
          value: alert.value,
          pendingSince: undefined,
        });
      }
    },
    active() {
      const out: ActiveAlert[] = [];
      for (const { rule, states } of compiled) {
        for (const [id, state] of states) {
          if (!state.raised) continue;
          out.push({
            id,
            metric: id,
            value: state.value,
            threshold: rule.threshold,
            direction: rule.direction,
            since: state.since,
          });
        }
      }
      return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    },
  };
}

function isBreached(rule: AlertRule, value: number): boolean {
  return rule.direction === "above" ? value > rule.threshold : value < rule.threshold;
}

function isCleared(rule: AlertRule, value: number): boolean {
  return rule.direction === "above"
    ? value < rule.threshold - rule.hysteresis
    : value > rule.threshold + rule.hysteresis;
}

function details(rule: AlertRule, id: string, value: number, since: number): Record<string, unknown> {
  return { alert: id, metric: id, value, threshold: rule.threshold, direction: rule.direction, since };
}

/** Messages are read by people; details keep the exact value. */
function show(value: number): string {
  return String(Math.round(value * 100) / 100);
}

interface Matcher {
  /** The concrete metric names in a sample that this rule watches. */
  candidates(metrics: Readonly<Record<string, number>>): Iterable<string>;
  /** Segments, `*` for the wildcard, to detect rules that could watch the same metric. */
  segments: readonly string[];
}

function compileMatcher(pattern: string, index: number): Matcher {
  const segments = pattern.split(".");
  if (segments.some((segment) => segment === "")) {
    throw new AgentError(
      "BAD_REQUEST",
      `alert rule ${index}: metric ${JSON.stringify(pattern)} has an empty segment`,
    );
  }
  const wild = segments.filter((segment) => segment.includes("*"));
  if (wild.length === 0) {
    return {
      segments,
      candidates: (metrics) => (Object.hasOwn(metrics, pattern) ? [pattern] : []),
    };
  }
  if (wild.length > 1 || wild[0] !== "*") {
    throw new AgentError(
      "BAD_REQUEST",
      `alert rule ${index}: metric ${JSON.stringify(pattern)} may hold one "*", as a whole segment`,
    );
  }
  const star = segments.indexOf("*");
  const prefix = segments
    .slice(0, star)
    .map((s) => `${s}.`)
    .join("");
  const suffix = segments
    .slice(star + 1)
    .map((s) => `.${s}`)
    .join("");
  return {
    segments,
    candidates: (metrics) =>
      Object.keys(metrics).filter((name) => {
        if (name.length <= prefix.length + suffix.length) return false;
        if (!name.startsWith(prefix) || !name.endsWith(suffix)) return false;
        return !name.slice(prefix.length, name.length - suffix.length).includes(".");
      }),
  };
}

function validateRule(rule: AlertRule, index: number): void {
  const bad = (why: string) => new AgentError("BAD_REQUEST", `alert rule ${index} (${rule.metric}): ${why}`);
  if (!Number.isFinite(rule.threshold)) throw bad("threshold must be a finite number");
  if (!Number.isFinite(rule.hysteresis) || rule.hysteresis < 0) throw bad("hysteresis must be ≥ 0");
  if (!Number.isFinite(rule.minDurationMs) || rule.minDurationMs < 0) throw bad("minDurationMs must be ≥ 0");
}

/**
 * The alert id is the concrete metric name, so two rules that could watch the same metric would share
 * one id and break the raised/cleared alternation consumers rely on; refuse them up front.
 */
function rejectOverlaps(compiled: readonly CompiledRule[]): void {
  for (let i = 0; i < compiled.length; i++) {
    for (let j = i + 1; j < compiled.length; j++) {
      const a = compiled[i]?.matcher.segments ?? [];
      const b = compiled[j]?.matcher.segments ?? [];
      const overlap =
        a.length === b.length && a.every((segment, k) => segment === "*" || b[k] === "*" || segment === b[k]);
      if (overlap) {
        throw new AgentError(
          "BAD_REQUEST",
          `alert rules ${i} and ${j} (${a.join(".")}, ${b.join(".")}) can watch the same metric`,
        );
      }
    }
  }
}
