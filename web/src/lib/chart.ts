// The arithmetic behind MetricChart: domains, "nice" ticks, linear and log scales, the
// downsampling that keeps thousands of points drawable, and the nearest-point lookup of
// the hover readout. Pure functions, tested in chart.test.ts.

export interface ChartPoint {
  /** the step */
  x: number;
  y: number;
}

export interface ChartSeries {
  name: string;
  /** ordered by x (the API orders a metric's history by step) */
  points: readonly ChartPoint[];
}

export type Scale = "linear" | "log";

/**
 * Okabe & Ito's colour-blind-safe palette (without its yellow, too pale on white). After
 * seven series the colours repeat with a dash pattern, so no two series look alike.
 */
export const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"] as const;
const DASHES = ["", "6 3", "2 3", "8 3 2 3"] as const;

export interface SeriesStyle {
  color: string;
  /** an SVG stroke-dasharray; "" is a solid line */
  dash: string;
}

export function seriesStyle(index: number): SeriesStyle {
  const i = Math.max(0, Math.floor(index));
  return {
    color: PALETTE[i % PALETTE.length]!,
    dash: DASHES[Math.floor(i / PALETTE.length) % DASHES.length]!,
  };
}

/** Whether a point can be drawn on ``scale``: finite, and positive on a log scale. */
export function drawable(point: ChartPoint, scale: Scale = "linear"): boolean {
  return Number.isFinite(point.x) && Number.isFinite(point.y) && (scale === "linear" || point.y > 0);
}

/** The points that can be drawn, in order (NaN, ±Infinity and, on a log scale, y ≤ 0 skipped). */
export function drawablePoints(points: readonly ChartPoint[], scale: Scale = "linear"): ChartPoint[] {
  return points.filter((p) => drawable(p, scale));
}

export interface Extent {
  x: [number, number];
  y: [number, number];
}

/**
 * The domain of every drawable point, or null when there is none. A single x or y value
 * is widened so that the point sits in the middle of the plot.
 */
export function extentOf(series: readonly { points: readonly ChartPoint[] }[], scale: Scale = "linear"): Extent | null {
  let x0 = Infinity;
  let x1 = -Infinity;
  let y0 = Infinity;
  let y1 = -Infinity;
  for (const s of series) {
    for (const p of s.points) {
      if (!drawable(p, scale)) continue;
      if (p.x < x0) x0 = p.x;
      if (p.x > x1) x1 = p.x;
      if (p.y < y0) y0 = p.y;
      if (p.y > y1) y1 = p.y;
    }
  }
  if (x0 > x1) return null;
  if (x0 === x1) {
    x0 -= 1;
    x1 += 1;
  }
  if (y0 === y1) {
    if (scale === "log") {
      y0 /= 10;
      y1 *= 10;
    } else {
      const pad = y0 === 0 ? 1 : Math.abs(y0) * 0.1;
      y0 -= pad;
      y1 += pad;
    }
  }
  return { x: [x0, x1], y: [y0, y1] };
}

/** The "nice" step (1, 2 or 5 × 10^k) nearest to cutting ``span`` into ``count`` parts. */
export function niceStep(span: number, count: number): number {
  if (!(span > 0) || !Number.isFinite(span)) return 1;
  const raw = span / Math.max(1, count);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const fraction = raw / power;
  const nice = fraction >= Math.sqrt(50) ? 10 : fraction >= Math.sqrt(10) ? 5 : fraction >= Math.sqrt(2) ? 2 : 1;
  return nice * power;
}

/** Removes the float noise of ``k * step`` (0.30000000000000004 → 0.3). */
function clean(value: number, step: number): number {
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  return Number(value.toFixed(Math.min(20, decimals)));
}

/**
 * About ``count`` round values from ``min`` to ``max`` inclusive: the ticks of a linear
 * axis. ``integer`` keeps them whole (steps are integers).
 */
export function linearTicks(min: number, max: number, count = 5, integer = false): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max) || min > max) return [];
  if (min === max) return [min];
  let step = niceStep(max - min, count);
  if (integer) step = Math.max(1, Math.round(step));
  const first = Math.ceil(min / step - 1e-9);
  const last = Math.floor(max / step + 1e-9);
  const ticks: number[] = [];
  for (let k = first; k <= last; k++) ticks.push(clean(k * step, step));
  return ticks;
}

/** The domain widened outwards to whole steps of its ticks, so the lines don't touch the frame's edge at an odd value. */
export function niceDomain(min: number, max: number, count = 5): [number, number] {
  if (!Number.isFinite(min) || !Number.isFinite(max) || min >= max) return [min, max];
  const step = niceStep(max - min, count);
  return [clean(Math.floor(min / step + 1e-9) * step, step), clean(Math.ceil(max / step - 1e-9) * step, step)];
}

/** Ticks of a log axis: the powers of ten within the domain, with 2 and 5 between them when there are few. */
export function logTicks(min: number, max: number): number[] {
  if (!(min > 0) || !(max > 0) || min > max) return [];
  const lo = Math.floor(Math.log10(min));
  const hi = Math.ceil(Math.log10(max));
  const multiples = hi - lo <= 2 ? [1, 2, 5] : [1];
  const ticks: number[] = [];
  for (let e = lo; e <= hi; e++) {
    for (const m of multiples) {
      const v = Number((m * Math.pow(10, e)).toPrecision(12));
      if (v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9)) ticks.push(v);
    }
  }
  return ticks;
}

/** Maps ``domain`` onto ``range`` (pixels), linearly or by the logarithm. */
export function makeScale(domain: [number, number], range: [number, number], scale: Scale = "linear"): (v: number) => number {
  const [d0, d1] = scale === "log" ? [Math.log10(domain[0]), Math.log10(domain[1])] : domain;
  const [r0, r1] = range;
  const span = d1 - d0 || 1;
  return (v: number) => {
    const t = ((scale === "log" ? Math.log10(v) : v) - d0) / span;
    return r0 + t * (r1 - r0);
  };
}

/**
 * At most about four points per pixel column: the first, lowest, highest and last point
 * of each of ``buckets`` equal slices of ``[x0, x1]``, in order. The drawn line then looks
 * the same as with every point (its spikes stay), at a cost that doesn't grow with the
 * history. Fewer points than ``4 × buckets`` are returned as they are.
 */
export function downsample(points: readonly ChartPoint[], x0: number, x1: number, buckets: number): ChartPoint[] {
  const n = Math.max(1, Math.floor(buckets));
  if (points.length <= 4 * n || !(x1 > x0)) return points.slice();
  const out: ChartPoint[] = [];
  let current = -1;
  let first: ChartPoint | null = null;
  let low: ChartPoint | null = null;
  let high: ChartPoint | null = null;
  let last: ChartPoint | null = null;
  const flush = (): void => {
    if (!first) return;
    const kept = [first, low!, high!, last!].filter((p, i, all) => all.indexOf(p) === i);
    // within a bucket, keep the x order so the line doesn't double back
    kept.sort((a, b) => a.x - b.x);
    out.push(...kept);
  };
  for (const p of points) {
    const bucket = Math.min(n - 1, Math.max(0, Math.floor(((p.x - x0) / (x1 - x0)) * n)));
    if (bucket !== current) {
      flush();
      current = bucket;
      first = low = high = last = p;
      continue;
    }
    if (p.y < low!.y) low = p;
    if (p.y > high!.y) high = p;
    last = p;
  }
  flush();
  return out;
}

/** The index of the point whose x is nearest ``x`` (points ordered by x), or -1 when there are none. */
export function nearestIndex(points: readonly ChartPoint[], x: number): number {
  if (points.length === 0 || !Number.isFinite(x)) return -1;
  let lo = 0;
  let hi = points.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid]!.x < x) lo = mid + 1;
    else hi = mid;
  }
  // lo is the first point at or after x; the one before may be nearer
  if (lo > 0 && Math.abs(points[lo - 1]!.x - x) <= Math.abs(points[lo]!.x - x)) return lo - 1;
  return lo;
}

/** An SVG path through ``points`` ("M x y L x y …"), pixel values to a tenth. */
export function linePath(points: readonly ChartPoint[], sx: (v: number) => number, sy: (v: number) => number): string {
  let d = "";
  for (const p of points) {
    d += `${d ? "L" : "M"}${round1(sx(p.x))} ${round1(sy(p.y))}`;
  }
  return d;
}

function round1(v: number): number {
  return Math.round(v * 10) / 10;
}

/** A tick label or readout value: short, without float noise (0.1, 2.5k, 1e-5). */
export function formatValue(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1e6 || abs < 1e-3) return value.toExponential(2).replace(/\.?0+e/, "e");
  if (abs >= 1e4) return `${Number((value / 1000).toFixed(1))}k`;
  return String(Number(value.toPrecision(4)));
}

/** One line for a screen reader: what the chart shows, over which steps, and where each series ends. */
export function describeChart(title: string, series: readonly ChartSeries[]): string {
  const drawn = series.map((s) => ({ name: s.name, points: drawablePoints(s.points) })).filter((s) => s.points.length);
  if (drawn.length === 0) return `${title}: no values yet`;
  let count = 0;
  let first = Infinity;
  let last = -Infinity;
  let low = Infinity;
  let high = -Infinity;
  for (const s of drawn) {
    count += s.points.length;
    for (const p of s.points) {
      first = Math.min(first, p.x);
      last = Math.max(last, p.x);
      low = Math.min(low, p.y);
      high = Math.max(high, p.y);
    }
  }
  const ends = drawn.map((s) => `${s.name} ends at ${formatValue(s.points[s.points.length - 1]!.y)}`).join(", ");
  const steps = first === last ? `at step ${formatValue(first)}` : `from step ${formatValue(first)} to ${formatValue(last)}`;
  const values = low === high ? `value ${formatValue(low)}` : `values from ${formatValue(low)} to ${formatValue(high)}`;
  return `${title}: ${drawn.length} series, ${count} ${count === 1 ? "point" : "points"} ${steps}, ${values}; ${ends}`;
}
