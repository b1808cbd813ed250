// The arithmetic behind BarChart (the cost page's charts): one bar per bucket, scaled to
// the largest value, and the words a screen reader hears instead of the picture. Pure
// functions, tested in bars.test.ts.

export interface Bar {
  /** what the bar counts (a bucket's start, as the axis shows it) */
  label: string;
  value: number;
}

export interface BarBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** The columns of ``count`` equal slots across ``width``: each column is centred in its
 * slot with a gap of ``gap`` (a fraction of the slot) around it, and is at least 1 wide.
 * Shared by barBoxes and overview.ts's stackedBars. */
export function columns(count: number, width: number, gap = 0.2): { x: number; width: number }[] {
  if (count <= 0) return [];
  const slot = width / count;
  const barWidth = Math.max(1, slot * (1 - gap));
  return Array.from({ length: count }, (_, i) => ({ x: i * slot + (slot - barWidth) / 2, width: barWidth }));
}

/** Boxes for ``values`` in a ``width`` x ``height`` plot: each bar gets an equal slot with
 * a gap of ``gap`` (a fraction of the slot) around it, its height in proportion to the
 * largest value; a value that is not a positive finite number draws no bar (height 0). */
export function barBoxes(values: readonly number[], width: number, height: number, gap = 0.2): BarBox[] {
  if (values.length === 0) return [];
  const top = Math.max(0, ...values.filter((v) => Number.isFinite(v)));
  const cols = columns(values.length, width, gap);
  return values.map((value, i) => {
    const h = top > 0 && Number.isFinite(value) && value > 0 ? (value / top) * height : 0;
    return { x: cols[i]!.x, y: height - h, width: cols[i]!.width, height: h };
  });
}

/** A number as a chart or a table shows it: at most ``digits`` decimals, no trailing zeros. */
export function formatAmount(value: number, digits = 2): string {
  if (!Number.isFinite(value)) return "—";
  return value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** The chart in words: what it shows, its total and its largest bar. */
export function describeBars(what: string, bars: readonly Bar[], unit: string): string {
  if (bars.length === 0) return `${what}: no data`;
  const total = bars.reduce((sum, b) => sum + (Number.isFinite(b.value) ? b.value : 0), 0);
  let peak = bars[0]!;
  for (const bar of bars) if (bar.value > peak.value) peak = bar;
  const first = bars[0]!.label;
  const last = bars[bars.length - 1]!.label;
  const span = bars.length === 1 ? first : `${first} to ${last}`;
  const most = total > 0 ? `, the most ${formatAmount(peak.value)} ${unit} at ${peak.label}` : "";
  const count = bars.length === 1 ? "1 bar" : `${bars.length} bars`;
  return `${what}, ${count} from ${span}: ${formatAmount(total)} ${unit} in all${most}`;
}
