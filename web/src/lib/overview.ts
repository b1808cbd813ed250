// The arithmetic behind the overview's charts: a provider's health over the history
// window as segments of a strip (StatusTimeline), the hourly throughput as stacked bars
// (HourlyBars), and each chart in words for a screen reader. Pure functions, tested in
// overview.test.ts.

import { columns } from "@/lib/bars";

export interface Change {
  at: string;
  status: string;
  previous?: string | null;
}

export interface Segment {
  status: string;
  /** epoch ms */
  start: number;
  end: number;
}

/** A provider's status over ``[now - hours, now]`` from its recorded changes (oldest
 * first): before the first change it had that change's ``previous`` status ("unknown"
 * when the history holds nothing earlier); with no change in the window, ``current``
 * throughout. Changes outside the window are clamped to it. */
export function timeline(history: readonly Change[], current: string, now: number, hours: number): Segment[] {
  const since = now - hours * 3600_000;
  const sorted = [...history].sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  let status = sorted.length ? (sorted[0]!.previous ?? "unknown") : current;
  let cursor = since;
  const segments: Segment[] = [];
  const push = (end: number): void => {
    if (end <= cursor) return;
    const last = segments[segments.length - 1];
    if (last && last.status === status && last.end === cursor) last.end = end;
    else segments.push({ status, start: cursor, end });
    cursor = end;
  };
  for (const change of sorted) {
    const at = Math.min(now, Math.max(since, Date.parse(change.at)));
    if (Number.isNaN(at)) continue;
    push(at);
    status = change.status;
  }
  push(now);
  return segments;
}

/** The share of the window (0..1) each status held, largest first. */
export function shares(segments: readonly Segment[]): { status: string; share: number }[] {
  const total = segments.reduce((sum, s) => sum + (s.end - s.start), 0);
  if (total <= 0) return [];
  const by = new Map<string, number>();
  for (const s of segments) by.set(s.status, (by.get(s.status) ?? 0) + (s.end - s.start));
  return [...by.entries()]
    .map(([status, span]) => ({ status, share: span / total }))
    .sort((a, b) => b.share - a.share);
}

export function percent(share: number): string {
  const value = share * 100;
  if (value > 0 && value < 1) return "<1%";
  if (value < 100 && value > 99) return ">99%";
  return `${Math.round(value)}%`;
}

/** The strip in words: the share of each status and how many changes there were. */
export function describeTimeline(what: string, segments: readonly Segment[], changes: number, hours: number): string {
  const parts = shares(segments).map((s) => `${s.status} ${percent(s.share)}`);
  const counted = changes === 1 ? "1 change" : `${changes} changes`;
  return `${what} over the last ${hours} h: ${parts.join(", ") || "no data"}; ${counted}`;
}

export const OUTCOMES = ["succeeded", "failed", "cancelled"] as const;
export type Outcome = (typeof OUTCOMES)[number];
export type HourCount = { start: string } & Record<Outcome, number>;

export interface StackBox {
  outcome: Outcome;
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Stacked boxes, one column per hour, in a ``width`` x ``height`` plot scaled to the
 * busiest hour; outcomes stack from the bottom in OUTCOMES' order. */
export function stackedBars(hours: readonly HourCount[], width: number, height: number, gap = 0.2): StackBox[] {
  if (hours.length === 0) return [];
  const top = Math.max(0, ...hours.map((h) => OUTCOMES.reduce((sum, o) => sum + h[o], 0)));
  if (top <= 0) return [];
  const cols = columns(hours.length, width, gap);
  const boxes: StackBox[] = [];
  hours.forEach((hour, i) => {
    const { x, width: barWidth } = cols[i]!;
    let bottom = height;
    for (const outcome of OUTCOMES) {
      const h = (hour[outcome] / top) * height;
      if (h <= 0) continue;
      bottom -= h;
      boxes.push({ outcome, x, y: bottom, width: barWidth, height: h });
    }
  });
  return boxes;
}

/** An hour's start as the axis shows it ("14:00", local time). */
export function hourLabel(start: string): string {
  const date = new Date(start);
  if (Number.isNaN(date.getTime())) return start;
  return `${String(date.getHours()).padStart(2, "0")}:00`;
}

/** The bars in words: the totals by outcome and the busiest hour. */
export function describeHours(what: string, hours: readonly HourCount[]): string {
  const totals = OUTCOMES.map((o) => `${hours.reduce((sum, h) => sum + h[o], 0)} ${o}`);
  let busiest: HourCount | null = null;
  let most = 0;
  for (const hour of hours) {
    const n = OUTCOMES.reduce((sum, o) => sum + hour[o], 0);
    if (n > most) {
      most = n;
      busiest = hour;
    }
  }
  const peak = busiest ? `; the most, ${most}, in the hour from ${hourLabel(busiest.start)}` : "";
  return `${what}, ${hours.length} hours: ${totals.join(", ")}${peak}`;
}
