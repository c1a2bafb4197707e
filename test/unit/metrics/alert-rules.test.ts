import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type AlertRule,
  alertRulesFromConfig,
  createAlertEngine,
  MAX_ALERTS_PER_RULE,
} from "../../../src/metrics/alert-rules.js";
import { AgentError } from "../../../src/shared/errors.js";
import type { AgentEvent } from "../../../src/shared/events.js";

const DISK: AlertRule = {
  metric: "disk.*.usedPct",
  direction: "above",
  threshold: 90,
  hysteresis: 5,
  minDurationMs: 60_000,
  severity: "high",
};
const BATTERY: AlertRule = {
  metric: "battery.pct",
  direction: "below",
  threshold: 15,
  hysteresis: 5,
  minDurationMs: 60_000,
  severity: "high",
};

type Sample = readonly [now: number, metrics: Record<string, number>];
/** [now, type, id] of each event, in order. */
type Seen = [number, string, string];

function run(rules: readonly AlertRule[], samples: readonly Sample[]) {
  const engine = createAlertEngine(rules);
  const seen: Seen[] = [];
  const events: AgentEvent[] = [];
  for (const [now, metrics] of samples) {
    for (const event of engine.evaluate(metrics, now)) {
      events.push(event);
      seen.push([now, event.type, String(event.details?.alert)]);
    }
  }
  return { engine, seen, events };
}

/** One sample per 30 s starting at `from`, with the data disk at each value. */
const disk = (values: readonly number[], from = 0): Sample[] =>
  values.map((value, i) => [from + i * 30_000, { "disk.data.usedPct": value }]);

describe("alert engine", () => {
  const table: { name: string; rules: readonly AlertRule[]; samples: Sample[]; expected: Seen[] }[] = [
    {
      name: "raises nothing for a spike shorter than minDurationMs",
      rules: [DISK],
      samples: disk([95, 96, 80, 95, 97, 70]),
      expected: [],
    },
    {
      name: "raises once when the breach holds for minDurationMs",
      rules: [DISK],
      samples: disk([95, 96, 93.5, 99, 97, 92]),
      expected: [[60_000, "alert.raised", "disk.data.usedPct"]],
    },
    {
      name: "raises nothing while the value hovers under the threshold or sits exactly on it",
      rules: [DISK],
      samples: disk([89, 89.9, 90, 90, 90, 88, 90, 90, 90]),
      expected: [],
    },
    {
      name: "does not clear while the value hovers between threshold − hysteresis and threshold",
      rules: [DISK],
      samples: disk([95, 95, 95, 89, 86, 85, 88, 85.5, 87, 85, 85, 85, 85]),
      expected: [[60_000, "alert.raised", "disk.data.usedPct"]],
    },
    {
      name: "clears once, only after the value stays past the hysteresis for minDurationMs",
      rules: [DISK],
      // raised at 60 s; recovery starts at 90 s, is interrupted at 150 s, restarts at 180 s, clears at 240 s.
      samples: disk([95, 95, 95, 80, 80, 86, 80, 80, 80, 70, 60]),
      expected: [
        [60_000, "alert.raised", "disk.data.usedPct"],
        [240_000, "alert.cleared", "disk.data.usedPct"],
      ],
    },
    {
      name: "raises again after a clear when a new breach holds",
      rules: [DISK],
      samples: disk([95, 95, 95, 80, 80, 80, 95, 95, 95]),
      expected: [
        [60_000, "alert.raised", "disk.data.usedPct"],
        [150_000, "alert.cleared", "disk.data.usedPct"],
        [240_000, "alert.raised", "disk.data.usedPct"],
      ],
    },
    {
      name: "resets the pending run when the metric disappears from a sample",
      rules: [DISK],
      samples: [
        [0, { "disk.data.usedPct": 95 }],
        [30_000, { "disk.data.usedPct": 95 }],
        [45_000, {}],
        [60_000, { "disk.data.usedPct": 95 }],
        [90_000, { "disk.data.usedPct": 95 }],
        [120_000, { "disk.data.usedPct": 95 }],
      ],
      expected: [[120_000, "alert.raised", "disk.data.usedPct"]],
    },
    {
      name: "treats NaN and Infinity like a missing reading",
      rules: [DISK],
      samples: [
        [0, { "disk.data.usedPct": 95 }],
        [30_000, { "disk.data.usedPct": Number.NaN }],
        [60_000, { "disk.data.usedPct": 95 }],
        [90_000, { "disk.data.usedPct": Number.POSITIVE_INFINITY }],
        [120_000, { "disk.data.usedPct": 95 }],
        [150_000, { "disk.data.usedPct": 95 }],
        [180_000, { "disk.data.usedPct": 95 }],
      ],
      expected: [[180_000, "alert.raised", "disk.data.usedPct"]],
    },
    {
      name: "keeps disks independent",
      rules: [DISK],
      samples: [
        [0, { "disk.data.usedPct": 95, "disk.root.usedPct": 50 }],
        [30_000, { "disk.data.usedPct": 95, "disk.root.usedPct": 91 }],
        [60_000, { "disk.data.usedPct": 95, "disk.root.usedPct": 91 }],
        [90_000, { "disk.data.usedPct": 50, "disk.root.usedPct": 91 }],
        [120_000, { "disk.data.usedPct": 50, "disk.root.usedPct": 91 }],
        [150_000, { "disk.data.usedPct": 50, "disk.root.usedPct": 50 }],
      ],
      expected: [
        [60_000, "alert.raised", "disk.data.usedPct"],
        [90_000, "alert.raised", "disk.root.usedPct"],
        [150_000, "alert.cleared", "disk.data.usedPct"],
      ],
    },
    {
      name: "matches exactly one segment for the wildcard",
      rules: [DISK],
      samples: [
        [0, { "disk.a.b.usedPct": 99, "disk.usedPct": 99, "net.data.usedPct": 99, "disk.x.usedPctX": 99 }],
        [
          60_000,
          { "disk.a.b.usedPct": 99, "disk.usedPct": 99, "net.data.usedPct": 99, "disk.x.usedPctX": 99 },
        ],
      ],
      expected: [],
    },
    {
      name: "raises a below rule when the battery stays low and clears above threshold + hysteresis",
      rules: [BATTERY],
      samples: [
        [0, { "battery.pct": 14 }],
        [60_000, { "battery.pct": 12 }],
        [120_000, { "battery.pct": 20 }], // exactly on the clear level: not past it
        [180_000, { "battery.pct": 21 }],
        [240_000, { "battery.pct": 40 }],
      ],
      expected: [
        [60_000, "alert.raised", "battery.pct"],
        [240_000, "alert.cleared", "battery.pct"],
      ],
    },
    {
      name: "acts on the first sample when minDurationMs is 0",
      rules: [{ ...DISK, minDurationMs: 0 }],
      samples: disk([91, 92, 84, 95]),
      expected: [
        [0, "alert.raised", "disk.data.usedPct"],
        [60_000, "alert.cleared", "disk.data.usedPct"],
        [90_000, "alert.raised", "disk.data.usedPct"],
      ],
    },
    {
      name: "restarts a pending run when time steps backwards",
      rules: [DISK],
      samples: [
        [100_000, { "disk.data.usedPct": 95 }],
        [10_000, { "disk.data.usedPct": 95 }],
        [60_000, { "disk.data.usedPct": 95 }],
        [70_000, { "disk.data.usedPct": 95 }],
      ],
      expected: [[70_000, "alert.raised", "disk.data.usedPct"]],
    },
  ];

  it.each(table)("$name", ({ rules, samples, expected }) => {
    expect(run(rules, samples).seen).toEqual(expected);
  });

  it("describes the raise and the clear in the events", () => {
    const { events, engine } = run([DISK], disk([95, 96, 93.5, 80, 80, 80.1]));
    expect(events).toEqual([
      {
        type: "alert.raised",
        severity: "high",
        source: "host",
        message: "disk.data.usedPct is 93.5, above 90 for 60 s",
        details: {
          alert: "disk.data.usedPct",
          metric: "disk.data.usedPct",
          value: 93.5,
          threshold: 90,
          direction: "above",
          since: 0,
        },
      },
      {
        type: "alert.cleared",
        severity: "info",
        source: "host",
        message: "disk.data.usedPct is back to 80.1 (alert at 90)",
        details: {
          alert: "disk.data.usedPct",
          metric: "disk.data.usedPct",
          value: 80.1,
          threshold: 90,
          direction: "above",
          since: 0,
        },
      },
    ]);
    expect(engine.active()).toEqual([]);
  });

  it("lists the raised alerts, with their latest value, for the birth message", () => {
    const { engine } = run(
      alertRulesFromConfig({ diskUsedPct: 90, memUsedPct: 92, batteryPct: 15, cpuTempC: 85 }),
      [
        [0, { "disk.root.usedPct": 97, "disk.data.usedPct": 95, "mem.usedPct": 93, "battery.pct": 80 }],
        [30_000, { "disk.root.usedPct": 97, "disk.data.usedPct": 95, "mem.usedPct": 50, "battery.pct": 80 }],
        [60_000, { "disk.root.usedPct": 98, "disk.data.usedPct": 95, "mem.usedPct": 93, "battery.pct": 80 }],
      ],
    );
    expect(engine.active()).toEqual([
      {
        id: "disk.data.usedPct",
        metric: "disk.data.usedPct",
        value: 95,
        threshold: 90,
        direction: "above",
        since: 0,
      },
      {
        id: "disk.root.usedPct",
        metric: "disk.root.usedPct",
        value: 98,
        threshold: 90,
        direction: "above",
        since: 0,
      },
    ]);
  });

  it("keeps a raised alert, and lists it, while its metric is missing", () => {
    const { engine, seen } = run([DISK], [...disk([95, 95, 95]), [90_000, {}], [120_000, {}]]);
    expect(seen).toEqual([[60_000, "alert.raised", "disk.data.usedPct"]]);
    expect(engine.active().map((alert) => alert.id)).toEqual(["disk.data.usedPct"]);
    // An unmounted disk that comes back healthy clears after a full recovery run, not at once.
    expect(engine.evaluate({ "disk.data.usedPct": 10 }, 150_000)).toEqual([]);
    expect(engine.evaluate({}, 180_000)).toEqual([]);
    expect(engine.evaluate({ "disk.data.usedPct": 10 }, 210_000)).toEqual([]);
    expect(engine.evaluate({ "disk.data.usedPct": 10 }, 270_000).map((event) => event.type)).toEqual([
      "alert.cleared",
    ]);
  });

  it(`watches at most ${MAX_ALERTS_PER_RULE} metrics per wildcard rule`, () => {
    const engine = createAlertEngine([{ ...DISK, minDurationMs: 0 }]);
    const many: Record<string, number> = {};
    for (let i = 0; i < MAX_ALERTS_PER_RULE + 10; i++)
      many[`disk.d${String(i).padStart(3, "0")}.usedPct`] = 99;
    expect(engine.evaluate(many, 0)).toHaveLength(MAX_ALERTS_PER_RULE);
    expect(engine.active()).toHaveLength(MAX_ALERTS_PER_RULE);
    expect(engine.evaluate(many, 1_000)).toEqual([]);
  });

  it("frees the slot of a metric that goes idle", () => {
    const engine = createAlertEngine([DISK]);
    const many: Record<string, number> = {};
    for (let i = 0; i < MAX_ALERTS_PER_RULE; i++) many[`disk.d${i}.usedPct`] = 99;
    engine.evaluate(many, 0); // all pending
    engine.evaluate({ "disk.late.usedPct": 99 }, 1_000); // the others vanish: their pending runs end
    expect(engine.evaluate({ "disk.late.usedPct": 99 }, 61_000).map((event) => event.details?.alert)).toEqual(
      ["disk.late.usedPct"],
    );
  });

  it("builds the configured rules with their defaults", () => {
    const rules = alertRulesFromConfig({ diskUsedPct: 90, memUsedPct: 92, batteryPct: 15, cpuTempC: 85 });
    expect(rules).toEqual([
      { ...DISK, metric: "disk.data.usedPct" },
      { ...DISK, metric: "disk.root.usedPct" },
      {
        metric: "mem.usedPct",
        direction: "above",
        threshold: 92,
        hysteresis: 5,
        minDurationMs: 60_000,
        severity: "medium",
      },
      { ...BATTERY },
      {
        metric: "cpu.tempC",
        direction: "above",
        threshold: 85,
        hysteresis: 5,
        minDurationMs: 60_000,
        severity: "high",
      },
    ]);
    const quick = alertRulesFromConfig(
      { diskUsedPct: 80, memUsedPct: 92, batteryPct: 15, cpuTempC: 85 },
      { minDurationMs: 5_000 },
    );
    expect(quick.every((rule) => rule.minDurationMs === 5_000)).toBe(true);
    expect(() => createAlertEngine(rules)).not.toThrow();
  });

  it.each([
    ["two wildcards", [{ ...DISK, metric: "disk.*.*" }]],
    ["a partial wildcard segment", [{ ...DISK, metric: "disk.d*.usedPct" }]],
    ["an empty segment", [{ ...DISK, metric: "disk..usedPct" }]],
    ["a negative hysteresis", [{ ...DISK, hysteresis: -1 }]],
    ["a NaN threshold", [{ ...DISK, threshold: Number.NaN }]],
    ["a negative duration", [{ ...DISK, minDurationMs: -1 }]],
    [
      "two rules that can watch the same metric",
      [DISK, { ...DISK, metric: "disk.data.usedPct", threshold: 95 }],
    ],
  ])("refuses rules with %s", (_name, rules) => {
    expect(() => createAlertEngine(rules)).toThrow(AgentError);
  });

  const reading = fc.oneof(
    { weight: 8, arbitrary: fc.integer({ min: 60, max: 100 }) },
    { weight: 1, arbitrary: fc.constant(Number.NaN) },
    { weight: 1, arbitrary: fc.constant(undefined) },
  );
  const samples = fc.array(
    fc.record({ dt: fc.integer({ min: 0, max: 40_000 }), data: reading, root: reading, mem: reading }),
    { maxLength: 120 },
  );
  const IDS = ["disk.data.usedPct", "disk.root.usedPct", "mem.usedPct"] as const;

  it("alternates raised and cleared per alert, starting with raised, and changes state only after a full run", () => {
    fc.assert(
      fc.property(
        samples,
        fc.integer({ min: 0, max: 10 }),
        fc.integer({ min: 0, max: 90_000 }),
        (samples, hysteresis, minDurationMs) => {
          const engine = createAlertEngine([
            { ...DISK, hysteresis, minDurationMs },
            { ...DISK, metric: "mem.usedPct", hysteresis, minDurationMs, severity: "medium" },
          ]);
          const breached = (v: number | undefined) => v !== undefined && Number.isFinite(v) && v > 90;
          const recovered = (v: number | undefined) =>
            v !== undefined && Number.isFinite(v) && v < 90 - hysteresis;
          const history = new Map<string, { now: number; value: number | undefined }[]>(
            IDS.map((id) => [id, []]),
          );
          /** First sample time of the run, ending now, in which `holds` is true throughout. */
          const runStart = (id: string, holds: (v: number | undefined) => boolean) => {
            const h = history.get(id) ?? [];
            let i = h.length;
            while (i > 0 && holds(h[i - 1]?.value)) i--;
            return i === h.length ? undefined : h[i]?.now;
          };
          const last = new Map<string, string>();
          let now = 0;
          for (const { dt, data, root, mem } of samples) {
            now += dt;
            const values = { "disk.data.usedPct": data, "disk.root.usedPct": root, "mem.usedPct": mem };
            const metrics: Record<string, number> = {};
            for (const id of IDS) {
              const value = values[id];
              if (value !== undefined) metrics[id] = value;
              history.get(id)?.push({ now, value });
            }
            const events = engine.evaluate(metrics, now);
            const changed = new Set<string>();
            for (const event of events) {
              const id = String(event.details?.alert);
              expect(changed.has(id)).toBe(false);
              changed.add(id);
              const previous = last.get(id) ?? "alert.cleared";
              expect(event.type).not.toBe(previous);
              last.set(id, event.type);
              const start = runStart(id, event.type === "alert.raised" ? breached : recovered);
              expect(start).toBeDefined();
              expect(now - (start ?? now)).toBeGreaterThanOrEqual(minDurationMs);
              if (event.type === "alert.raised") expect(event.details?.since).toBe(start);
            }
            for (const id of IDS) {
              if (changed.has(id)) continue;
              const start = runStart(id, last.get(id) === "alert.raised" ? recovered : breached);
              if (start !== undefined) expect(now - start).toBeLessThan(minDurationMs);
            }
            const raised = [...last].filter(([, type]) => type === "alert.raised").map(([id]) => id);
            expect(engine.active().map((alert) => alert.id)).toEqual(raised.sort());
          }
        },
      ),
    );
  });
});

describe("alert engine restore", () => {
  it("keeps an alert raised across a restart without a second raise, and clears it once", () => {
    const rules = alertRulesFromConfig(
      { diskUsedPct: 90, memUsedPct: 92, batteryPct: 15, cpuTempC: 85 },
      { minDurationMs: 0 },
    );
    const before = createAlertEngine(rules);
    expect(before.evaluate({ "disk.data.usedPct": 95 }, 1_000).map((event) => event.type)).toEqual([
      "alert.raised",
    ]);

    const after = createAlertEngine(rules);
    after.restore([
      ...before.active(),
      {
        id: "disk.gone.usedPct",
        metric: "disk.gone.usedPct",
        value: 99,
        threshold: 90,
        direction: "above",
        since: 0,
      },
    ]);
    expect(after.active().map((alert) => [alert.id, alert.since])).toEqual([["disk.data.usedPct", 1_000]]);
    expect(after.evaluate({ "disk.data.usedPct": 96 }, 2_000)).toEqual([]);
    expect(after.evaluate({ "disk.data.usedPct": 50 }, 3_000).map((event) => event.type)).toEqual([
      "alert.cleared",
    ]);
    expect(after.active()).toEqual([]);
  });
});
