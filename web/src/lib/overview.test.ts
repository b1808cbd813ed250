import { describe, expect, it } from "vitest";
import { describeHours, describeTimeline, percent, shares, stackedBars, timeline } from "./overview";

const NOW = Date.parse("2026-12-14T12:00:00Z");
const at = (hoursAgo: number): string => new Date(NOW - hoursAgo * 3600_000).toISOString();

describe("timeline", () => {
  it("runs each status from its change to the next, the first change's previous status before it", () => {
    const segments = timeline(
      [
        { at: at(6), status: "down", previous: "ok" },
        { at: at(3), status: "ok", previous: "down" },
      ],
      "ok",
      NOW,
      24,
    );
    expect(segments.map((s) => [s.status, (s.end - s.start) / 3600_000])).toEqual([
      ["ok", 18],
      ["down", 3],
      ["ok", 3],
    ]);
  });

  it("is unknown before a first result, and the current status throughout without changes", () => {
    expect(timeline([{ at: at(2), status: "ok", previous: null }], "ok", NOW, 24).map((s) => s.status)).toEqual([
      "unknown",
      "ok",
    ]);
    expect(timeline([], "degraded", NOW, 24)).toEqual([{ status: "degraded", start: NOW - 24 * 3600_000, end: NOW }]);
  });

  it("clamps changes older than the window to its start", () => {
    const segments = timeline([{ at: at(30), status: "down", previous: "ok" }], "down", NOW, 24);
    expect(segments).toEqual([{ status: "down", start: NOW - 24 * 3600_000, end: NOW }]);
  });
});

describe("shares and describeTimeline", () => {
  it("says the share of the window each status held and how many changes there were", () => {
    const segments = timeline([{ at: at(6), status: "down", previous: "ok" }], "down", NOW, 24);
    expect(shares(segments)).toEqual([
      { status: "ok", share: 0.75 },
      { status: "down", share: 0.25 },
    ]);
    expect(describeTimeline("mlflow tracking", segments, 1, 24)).toBe(
      "mlflow tracking over the last 24 h: ok 75%, down 25%; 1 change",
    );
    expect(percent(0.001)).toBe("<1%");
    expect(percent(0.9999)).toBe(">99%");
  });
});

describe("stackedBars and describeHours", () => {
  const hours = [
    { start: at(2), succeeded: 1, failed: 1, cancelled: 0 },
    { start: at(1), succeeded: 4, failed: 0, cancelled: 0 },
  ];

  it("stacks the outcomes of each hour, scaled to the busiest", () => {
    const boxes = stackedBars(hours, 200, 100, 0);
    expect(boxes.map((b) => [b.outcome, b.x, b.y, b.height])).toEqual([
      ["succeeded", 0, 75, 25],
      ["failed", 0, 50, 25],
      ["succeeded", 100, 0, 100],
    ]);
    expect(stackedBars([{ start: at(1), succeeded: 0, failed: 0, cancelled: 0 }], 200, 100)).toEqual([]);
  });

  it("says the totals by outcome and the busiest hour", () => {
    const text = describeHours("Pipelines finished per hour", hours);
    expect(text).toMatch(/^Pipelines finished per hour, 2 hours: 5 succeeded, 1 failed, 0 cancelled; the most, 4, in the hour from \d\d:00$/);
  });
});
