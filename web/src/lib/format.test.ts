import { describe, expect, it } from "vitest";
import { formatBytes, formatDuration, formatRelative, humanize } from "./format";
import { isFinal, toneOf } from "./status";

describe("formatting", () => {
  it("sizes use binary units with one decimal", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1536)).toBe("1.5 KB");
    expect(formatBytes(5 * 1024 * 1024)).toBe("5.0 MB");
    expect(formatBytes(null)).toBe("—");
  });

  it("durations run to now while unfinished", () => {
    const start = "2026-01-01T00:00:00Z";
    expect(formatDuration(start, "2026-01-01T00:00:42Z")).toBe("42 s");
    expect(formatDuration(start, "2026-01-01T01:02:00Z")).toBe("1 h 2 min");
    expect(formatDuration(start, null, Date.parse("2026-01-01T00:03:05Z"))).toBe("3 min 5 s");
    expect(formatDuration(null, null)).toBe("—");
  });

  it("relative times round to a readable unit", () => {
    const now = Date.parse("2026-01-02T00:00:00Z");
    expect(formatRelative("2026-01-01T23:59:50Z", now)).toBe("just now");
    expect(formatRelative("2026-01-01T23:50:00Z", now)).toBe("10 min ago");
    expect(formatRelative("2026-01-01T21:00:00Z", now)).toBe("3 h ago");
    expect(formatRelative("2025-12-29T00:00:00Z", now)).toBe("4 d ago");
  });

  it("labels are sentence case", () => {
    expect(humanize("training_job")).toBe("Training job");
    expect(humanize("trainingJob")).toBe("Training job");
    expect(humanize("RUN_CREATE")).toBe("Run create");
  });
});

describe("status tones", () => {
  it("maps every family of status to one tone", () => {
    expect(toneOf("succeeded")).toBe("success");
    expect(toneOf("Healthy")).toBe("success");
    expect(toneOf("failed")).toBe("failure");
    expect(toneOf("dead")).toBe("failure");
    expect(toneOf("running")).toBe("running");
    expect(toneOf("degraded")).toBe("warning");
    expect(toneOf("something-new")).toBe("neutral");
    expect(toneOf(null)).toBe("neutral");
  });

  it("knows which statuses are final", () => {
    expect(isFinal("succeeded")).toBe(true);
    expect(isFinal("cancelled")).toBe(true);
    expect(isFinal("running")).toBe(false);
  });
});
