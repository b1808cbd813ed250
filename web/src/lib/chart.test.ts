import { describe, expect, it } from "vitest";
import {
  PALETTE,
  describeChart,
  downsample,
  drawablePoints,
  extentOf,
  formatValue,
  linePath,
  linearTicks,
  logTicks,
  makeScale,
  nearestIndex,
  niceDomain,
  niceStep,
  seriesStyle,
  type ChartPoint,
} from "./chart";

const pts = (...ys: number[]): ChartPoint[] => ys.map((y, x) => ({ x, y }));

describe("drawable points", () => {
  it("skips NaN and infinite values, and values a log scale cannot show", () => {
    const points = pts(1, Number.NaN, 2, Number.POSITIVE_INFINITY, 0, -1, Number.NEGATIVE_INFINITY);
    expect(drawablePoints(points).map((p) => p.y)).toEqual([1, 2, 0, -1]);
    expect(drawablePoints(points, "log").map((p) => p.y)).toEqual([1, 2]);
  });
});

describe("extentOf", () => {
  it("spans every drawable point of every series", () => {
    const extent = extentOf([{ points: pts(3, 1, Number.NaN) }, { points: [{ x: 10, y: 5 }] }]);
    expect(extent).toEqual({ x: [0, 10], y: [1, 5] });
  });

  it("widens a single point so it sits inside the plot", () => {
    expect(extentOf([{ points: [{ x: 5, y: 2 }] }])).toEqual({ x: [4, 6], y: [1.8, 2.2] });
    expect(extentOf([{ points: [{ x: 0, y: 0 }] }])).toEqual({ x: [-1, 1], y: [-1, 1] });
    expect(extentOf([{ points: [{ x: 0, y: 1 }] }], "log")).toEqual({ x: [-1, 1], y: [0.1, 10] });
  });

  it("is null when nothing can be drawn", () => {
    expect(extentOf([])).toBeNull();
    expect(extentOf([{ points: pts(Number.NaN, Number.POSITIVE_INFINITY) }])).toBeNull();
    expect(extentOf([{ points: pts(0, -2) }], "log")).toBeNull();
  });
});

describe("ticks", () => {
  it("picks 1, 2 or 5 times a power of ten", () => {
    expect(niceStep(10, 5)).toBe(2);
    expect(niceStep(1, 5)).toBe(0.2);
    expect(niceStep(1000, 4)).toBe(200);
    expect(niceStep(1000, 2)).toBe(500);
    expect(niceStep(0.03, 3)).toBe(0.01);
  });

  it("gives round ticks inside the domain, without float noise", () => {
    expect(linearTicks(0, 10, 5)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(linearTicks(0.13, 0.97, 4)).toEqual([0.2, 0.4, 0.6, 0.8]);
    expect(linearTicks(-3, 3, 3)).toEqual([-2, 0, 2]);
    expect(linearTicks(0.1, 0.3, 2)).toEqual([0.1, 0.2, 0.3]);
    expect(linearTicks(5, 5)).toEqual([5]);
    expect(linearTicks(Number.NaN, 1)).toEqual([]);
  });

  it("keeps step ticks whole", () => {
    expect(linearTicks(0, 3, 8, true)).toEqual([0, 1, 2, 3]);
    expect(linearTicks(0, 9999, 5, true)).toEqual([0, 2000, 4000, 6000, 8000]);
  });

  it("widens a domain to whole steps", () => {
    expect(niceDomain(0.13, 0.97, 4)).toEqual([0, 1]);
    expect(niceDomain(1.2, 2.35, 5)).toEqual([1.2, 2.4]);
    expect(niceDomain(-0.3, 0.7, 5)).toEqual([-0.4, 0.8]);
    expect(niceDomain(3, 3)).toEqual([3, 3]);
  });

  it("puts log ticks on powers of ten, with 2 and 5 over a short range", () => {
    expect(logTicks(0.001, 100)).toEqual([0.001, 0.01, 0.1, 1, 10, 100]);
    expect(logTicks(0.3, 8)).toEqual([0.5, 1, 2, 5]);
    expect(logTicks(0, 1)).toEqual([]);
  });
});

describe("scales", () => {
  it("maps linearly, the range possibly reversed (y grows upwards)", () => {
    const sy = makeScale([0, 10], [200, 0]);
    expect(sy(0)).toBe(200);
    expect(sy(10)).toBe(0);
    expect(sy(2.5)).toBe(150);
  });

  it("maps by the logarithm", () => {
    const s = makeScale([1, 100], [0, 100], "log");
    expect(s(1)).toBe(0);
    expect(s(10)).toBeCloseTo(50);
    expect(s(100)).toBe(100);
  });

  it("doesn't divide by zero on an empty domain", () => {
    expect(makeScale([3, 3], [0, 10])(3)).toBe(0);
  });
});

describe("downsample", () => {
  it("leaves short histories alone", () => {
    const points = pts(3, 2, 1);
    expect(downsample(points, 0, 2, 100)).toEqual(points);
  });

  it("keeps at most four points per bucket: first, lowest, highest, last", () => {
    // 10 000 points of a noisy falling loss, 100 pixel columns
    const points: ChartPoint[] = [];
    for (let x = 0; x < 10_000; x++) points.push({ x, y: 10 - x / 1000 + (x % 7 === 0 ? 1 : 0) });
    points[5_000] = { x: 5_000, y: 50 }; // a spike must survive
    points[7_777] = { x: 7_777, y: -20 }; // and a dip
    const kept = downsample(points, 0, 9_999, 100);
    expect(kept.length).toBeLessThanOrEqual(400);
    expect(kept.length).toBeGreaterThanOrEqual(200);
    expect(kept[0]).toEqual(points[0]);
    expect(kept[kept.length - 1]).toEqual(points[9_999]);
    expect(kept).toContainEqual({ x: 5_000, y: 50 });
    expect(kept).toContainEqual({ x: 7_777, y: -20 });
    // still ordered by step, so the line never doubles back
    for (let i = 1; i < kept.length; i++) expect(kept[i]!.x).toBeGreaterThanOrEqual(kept[i - 1]!.x);
    // every bucket keeps its own extremes
    const bucketOf = (p: ChartPoint) => Math.min(99, Math.floor((p.x / 9_999) * 100));
    for (let b = 0; b < 100; b++) {
      const all = points.filter((p) => bucketOf(p) === b).map((p) => p.y);
      const mine = kept.filter((p) => bucketOf(p) === b).map((p) => p.y);
      expect(Math.min(...mine)).toBe(Math.min(...all));
      expect(Math.max(...mine)).toBe(Math.max(...all));
    }
  });

  it("keeps a single point per bucket once", () => {
    const points: ChartPoint[] = [];
    for (let x = 0; x < 50; x++) points.push({ x: x * 100, y: x });
    expect(downsample(points, 0, 4900, 5).length).toBeLessThanOrEqual(20);
  });
});

describe("nearestIndex", () => {
  const points = [0, 10, 20, 35].map((x) => ({ x, y: x }));
  it("finds the point nearest an x, before or after it", () => {
    expect(nearestIndex(points, -5)).toBe(0);
    expect(nearestIndex(points, 4)).toBe(0);
    expect(nearestIndex(points, 6)).toBe(1);
    expect(nearestIndex(points, 20)).toBe(2);
    expect(nearestIndex(points, 28)).toBe(3);
    expect(nearestIndex(points, 1e9)).toBe(3);
  });
  it("takes the earlier point on a tie and says -1 for no points", () => {
    expect(nearestIndex(points, 5)).toBe(0);
    expect(nearestIndex([], 3)).toBe(-1);
    expect(nearestIndex(points, Number.NaN)).toBe(-1);
  });
  it("works on a single point", () => {
    expect(nearestIndex([{ x: 7, y: 1 }], 100)).toBe(0);
  });
});

describe("linePath", () => {
  it("draws through the points in pixels", () => {
    const sx = makeScale([0, 2], [0, 100]);
    const sy = makeScale([0, 1], [50, 0]);
    expect(linePath(pts(0, 1, 0.5), sx, sy)).toBe("M0 50L50 0L100 25");
    expect(linePath([], sx, sy)).toBe("");
  });
});

describe("formatValue", () => {
  it("is short and free of float noise", () => {
    expect(formatValue(0.1 + 0.2)).toBe("0.3");
    expect(formatValue(2.3456789)).toBe("2.346");
    expect(formatValue(12_500)).toBe("12.5k");
    expect(formatValue(0.00001234)).toBe("1.23e-5");
    expect(formatValue(3e7)).toBe("3e+7");
    expect(formatValue(0)).toBe("0");
    expect(formatValue(-4)).toBe("-4");
  });
});

describe("seriesStyle", () => {
  it("gives each of the first series its own colour, then dashes", () => {
    const styles = Array.from({ length: 10 }, (_, i) => seriesStyle(i));
    expect(new Set(styles.slice(0, PALETTE.length).map((s) => s.color)).size).toBe(PALETTE.length);
    expect(styles[0]!.dash).toBe("");
    expect(styles[PALETTE.length]!.dash).not.toBe("");
    expect(new Set(styles.map((s) => `${s.color}/${s.dash}`)).size).toBe(10);
  });
});

describe("describeChart", () => {
  it("summarises the series for a screen reader", () => {
    const text = describeChart("loss", [
      { name: "run-a", points: pts(2, 1.5, 1) },
      { name: "run-b", points: pts(3, Number.NaN, 2.5) },
    ]);
    expect(text).toBe("loss: 2 series, 5 points from step 0 to 2, values from 1 to 3; run-a ends at 1, run-b ends at 2.5");
  });
  it("says when there is nothing to show", () => {
    expect(describeChart("loss", [{ name: "a", points: [] }])).toBe("loss: no values yet");
    expect(describeChart("loss", [{ name: "a", points: [{ x: 3, y: 1 }] }])).toBe(
      "loss: 1 series, 1 point at step 3, value 1; a ends at 1",
    );
  });
});
