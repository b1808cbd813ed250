import { describe, expect, it } from "vitest";
import {
  countersBy,
  formatMs,
  histogramBetween,
  histogramOf,
  parseSamples,
  quantile,
  snapshotOf,
  summarize,
  windowStart,
  type Snapshot,
} from "./latency";

/** what prometheus_client writes for the gateway's series, for endpoints ``a`` and ``b`` */
function exposition(a: { le: string; n: number }[], aSum: number, outcomes: Record<string, number>): string {
  const lines = [
    "# HELP llmops_inference_duration_seconds Whole inference requests, streams included, by endpoint",
    "# TYPE llmops_inference_duration_seconds histogram",
    ...a.map(({ le, n }) => `llmops_inference_duration_seconds_bucket{endpoint="a",le="${le}"} ${n.toFixed(1)}`),
    `llmops_inference_duration_seconds_count{endpoint="a"} ${a[a.length - 1]!.n.toFixed(1)}`,
    `llmops_inference_duration_seconds_sum{endpoint="a"} ${aSum}`,
    'llmops_inference_duration_seconds_created{endpoint="a"} 1.7e+09',
    'llmops_inference_duration_seconds_bucket{endpoint="b",le="0.1"} 9.0',
    'llmops_inference_duration_seconds_bucket{endpoint="b",le="+Inf"} 9.0',
    'llmops_inference_duration_seconds_count{endpoint="b"} 9.0',
    'llmops_inference_duration_seconds_sum{endpoint="b"} 0.3',
    "# TYPE llmops_inference_requests_total counter",
    ...Object.entries(outcomes).map(
      ([outcome, n]) => `llmops_inference_requests_total{endpoint="a",outcome="${outcome}",route="chat"} ${n}.0`,
    ),
    'llmops_inference_requests_total{endpoint="b",outcome="ok",route="chat"} 9.0',
    'llmops_inference_tokens_total{endpoint="a",kind="completion"} 40.0',
    'llmops_inference_tokens_total{endpoint="a",kind="prompt"} 12.0',
  ];
  return lines.join("\n") + "\n";
}

const BUCKETS = (counts: number[]) =>
  ["0.01", "0.05", "0.1", "0.25", "+Inf"].map((le, i) => ({ le, n: counts[i]! }));

describe("parseSamples", () => {
  it("reads names, labels and values, and skips comments", () => {
    const samples = parseSamples('# HELP x y\nfoo_total{a="1",b="two"} 3.0\nbar 4.5e-1 1700000000\n');
    expect(samples).toEqual([
      { name: "foo_total", labels: { a: "1", b: "two" }, value: 3 },
      { name: "bar", labels: {}, value: 0.45 },
    ]);
  });

  it("unescapes label values with quotes, commas and backslashes", () => {
    const [sample] = parseSamples('m{endpoint="a \\"b\\", c\\\\d\\n"} 1\n');
    expect(sample?.labels.endpoint).toBe('a "b", c\\d\n');
  });

  it("reads +Inf and skips lines it cannot read", () => {
    const samples = parseSamples('m{le="+Inf"} +Inf\nnot a sample line at all\nm{broken} 1\n');
    expect(samples).toEqual([{ name: "m", labels: { le: "+Inf" }, value: Infinity }]);
  });
});

describe("histograms", () => {
  const samples = parseSamples(exposition(BUCKETS([1, 3, 4, 4, 4]), 0.15, { ok: 4 }));

  it("picks one endpoint's histogram out of the others'", () => {
    const h = histogramOf(samples, "llmops_inference_duration_seconds", { endpoint: "a" });
    expect(h).toEqual({
      buckets: [
        { le: 0.01, count: 1 },
        { le: 0.05, count: 3 },
        { le: 0.1, count: 4 },
        { le: 0.25, count: 4 },
        { le: Infinity, count: 4 },
      ],
      count: 4,
      sum: 0.15,
    });
    expect(histogramOf(samples, "llmops_inference_duration_seconds", { endpoint: "nobody" })).toBeNull();
  });

  it("estimates quantiles like histogram_quantile", () => {
    const h = histogramOf(samples, "llmops_inference_duration_seconds", { endpoint: "a" });
    // rank 2 of 4 falls in (0.01, 0.05] which holds ranks 2..3: halfway
    expect(quantile(h, 0.5)).toBeCloseTo(0.03, 10);
    expect(quantile(h, 0.25)).toBeCloseTo(0.01, 10);
    expect(quantile(h, 1)).toBeCloseTo(0.1, 10);
    expect(quantile(null, 0.5)).toBeNull();
    expect(quantile({ buckets: [{ le: Infinity, count: 0 }], count: 0, sum: 0 }, 0.5)).toBeNull();
  });

  it("answers the highest finite bound for what fell in +Inf", () => {
    const slow = { buckets: [{ le: 0.1, count: 1 }, { le: 1, count: 1 }, { le: Infinity, count: 5 }], count: 5, sum: 40 };
    expect(quantile(slow, 0.95)).toBe(1);
  });

  it("subtracts an older scrape, and starts over after a reset", () => {
    const older = histogramOf(samples, "llmops_inference_duration_seconds", { endpoint: "a" });
    const newer = histogramOf(
      parseSamples(exposition(BUCKETS([1, 3, 6, 9, 9]), 1.0, { ok: 9 })),
      "llmops_inference_duration_seconds",
      { endpoint: "a" },
    );
    const between = histogramBetween(newer, older);
    expect(between?.count).toBe(5);
    expect(between?.sum).toBeCloseTo(0.85, 10);
    expect(between?.buckets.map((b) => b.count)).toEqual([0, 0, 2, 5, 5]);
    expect(histogramBetween(older, newer)).toBe(older); // fewer than before: a restart
  });

  it("sums counters by a label", () => {
    expect(
      countersBy(parseSamples(exposition(BUCKETS([1, 1, 1, 1, 1]), 0, { ok: 3, unavailable: 2 })), "llmops_inference_requests_total", { endpoint: "a" }, "outcome"),
    ).toEqual({ ok: 3, unavailable: 2 });
  });
});

describe("summaries", () => {
  const first = snapshotOf(exposition(BUCKETS([1, 3, 4, 4, 4]), 0.15, { ok: 4 }), "a", 1_000);
  const second = snapshotOf(
    exposition(BUCKETS([1, 3, 4, 6, 6]), 0.55, { ok: 5, unavailable: 1, upstream_error: 1 }),
    "a",
    31_000,
  );

  it("summarises since the platform started", () => {
    const all = summarize(second);
    expect(all.seconds).toBeNull();
    expect(all.requests).toBe(7);
    expect(all.failed).toBe(2);
    expect(all.mean).toBeCloseTo((0.55 / 6) * 1000, 6);
    expect(all.completionTokens).toBe(40);
  });

  it("summarises the window between two scrapes", () => {
    const recent = summarize(second, first);
    expect(recent.seconds).toBe(30);
    expect(recent.requests).toBe(3);
    expect(recent.failed).toBe(2);
    // the two requests of the window both took 100–250 ms
    expect(recent.p50).toBeCloseTo(175, 6);
    expect(recent.mean).toBeCloseTo(200, 6);
    expect(recent.firstByteP50).toBeNull();
    expect(recent.completionTokens).toBe(0);
  });

  it("picks the scrape that starts a window", () => {
    const at = (t: number): Snapshot => ({ ...first, at: t });
    expect(windowStart([at(0)], 60)).toBeNull();
    expect(windowStart([at(0), at(10_000)], 60)?.at).toBe(0); // shorter than asked
    expect(windowStart([at(0), at(30_000), at(70_000), at(95_000)], 60)?.at).toBe(30_000);
  });

  it("formats milliseconds", () => {
    expect(formatMs(null)).toBe("—");
    expect(formatMs(3.21)).toBe("3.2 ms");
    expect(formatMs(175.4)).toBe("175 ms");
    expect(formatMs(1400)).toBe("1.40 s");
    expect(formatMs(12_345)).toBe("12.3 s");
  });
});
