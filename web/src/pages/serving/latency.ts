// An endpoint's latency from the platform's Prometheus metrics (GET /metrics, the gateway's
// llmops_inference_* series): the text format parsed, the endpoint's histograms and
// counters picked out, and what happened between two scrapes (what Prometheus' rate()
// and histogram_quantile() would say), so a page can show recent latency.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/y;

function unescape(value: string): string {
  return value.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
}

function number(text: string): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  return Number(text);
}

/** The samples of Prometheus' text exposition format (comments and bad lines skipped). */
export function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const match = SAMPLE.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    const body = match[3] ?? "";
    LABEL.lastIndex = 0;
    let ok = true;
    while (LABEL.lastIndex < body.length) {
      const start = LABEL.lastIndex;
      const label = LABEL.exec(body);
      if (!label || LABEL.lastIndex === start) {
        ok = body.slice(start).trim() === "";
        break;
      }
      labels[label[1]!] = unescape(label[2]!);
    }
    const value = number(match[4]!);
    if (ok && !Number.isNaN(value)) out.push({ name: match[1]!, labels, value });
  }
  return out;
}

function matches(sample: Sample, name: string, labels: Record<string, string>): boolean {
  if (sample.name !== name) return false;
  return Object.entries(labels).every(([k, v]) => sample.labels[k] === v);
}

export interface Histogram {
  /** cumulative counts by upper bound, ascending, the last one +Inf */
  buckets: { le: number; count: number }[];
  count: number;
  sum: number;
}

/** The histogram ``name`` summed over the series whose labels include ``labels``; null
 * when there is none. */
export function histogramOf(samples: Sample[], name: string, labels: Record<string, string>): Histogram | null {
  const byBound = new Map<number, number>();
  let count = 0;
  let sum = 0;
  let found = false;
  for (const s of samples) {
    if (matches(s, `${name}_bucket`, labels)) {
      const le = number(s.labels.le ?? "");
      if (Number.isNaN(le)) continue;
      byBound.set(le, (byBound.get(le) ?? 0) + s.value);
      found = true;
    } else if (matches(s, `${name}_count`, labels)) {
      count += s.value;
      found = true;
    } else if (matches(s, `${name}_sum`, labels)) {
      sum += s.value;
    }
  }
  if (!found) return null;
  const buckets = [...byBound.entries()].sort((a, b) => a[0] - b[0]).map(([le, c]) => ({ le, count: c }));
  return { buckets, count, sum };
}

/** What was observed between ``older`` and ``newer`` (a reset counter starts over). */
export function histogramBetween(newer: Histogram | null, older: Histogram | null): Histogram | null {
  if (!newer) return null;
  if (!older || newer.count < older.count) return newer;
  const before = new Map(older.buckets.map((b) => [b.le, b.count]));
  return {
    buckets: newer.buckets.map((b) => ({ le: b.le, count: Math.max(0, b.count - (before.get(b.le) ?? 0)) })),
    count: newer.count - older.count,
    sum: Math.max(0, newer.sum - older.sum),
  };
}

/**
 * The ``q`` quantile (0–1) estimated from the buckets, as Prometheus'
 * histogram_quantile() does: linear within the bucket it falls in; in the +Inf bucket,
 * the highest finite bound. Null when nothing was observed.
 */
export function quantile(h: Histogram | null, q: number): number | null {
  if (!h || h.count <= 0 || h.buckets.length === 0) return null;
  const rank = q * h.count;
  let lower = 0;
  let below = 0;
  for (const b of h.buckets) {
    if (b.count >= rank) {
      if (!Number.isFinite(b.le)) {
        const finite = h.buckets.filter((x) => Number.isFinite(x.le));
        return finite.length ? finite[finite.length - 1]!.le : null;
      }
      const inBucket = b.count - below;
      if (inBucket <= 0) return b.le;
      return lower + (b.le - lower) * ((rank - below) / inBucket);
    }
    lower = Number.isFinite(b.le) ? b.le : lower;
    below = b.count;
  }
  return null;
}

/** The sum of the counter ``name`` by the value of label ``by``, over series with ``labels``. */
export function countersBy(
  samples: Sample[],
  name: string,
  labels: Record<string, string>,
  by: string,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) {
    if (!matches(s, name, labels)) continue;
    const key = s.labels[by] ?? "";
    out[key] = (out[key] ?? 0) + s.value;
  }
  return out;
}

// -- one endpoint -----------------------------------------------------------------------

export const DURATION = "llmops_inference_duration_seconds";
export const FIRST_BYTE = "llmops_inference_time_to_first_byte_seconds";
export const REQUESTS = "llmops_inference_requests_total";
export const TOKENS = "llmops_inference_tokens_total";

/** One scrape of /metrics, for one endpoint. */
export interface Snapshot {
  /** ms (Date.now()) when it was taken */
  at: number;
  duration: Histogram | null;
  firstByte: Histogram | null;
  /** requests by outcome (ok, client_error, upstream_error, unavailable, fallback) */
  outcomes: Record<string, number>;
  /** tokens by kind (prompt, completion) */
  tokens: Record<string, number>;
}

export function snapshotOf(text: string, endpoint: string, at: number): Snapshot {
  const samples = parseSamples(text);
  const labels = { endpoint };
  return {
    at,
    duration: histogramOf(samples, DURATION, labels),
    firstByte: histogramOf(samples, FIRST_BYTE, labels),
    outcomes: countersBy(samples, REQUESTS, labels, "outcome"),
    tokens: countersBy(samples, TOKENS, labels, "kind"),
  };
}

export interface LatencySummary {
  /** how long the summary covers, in seconds (null: since the platform started) */
  seconds: number | null;
  requests: number;
  /** requests that failed: upstream errors and no backend (fallbacks answered) */
  failed: number;
  /** ms; null when no request finished */
  p50: number | null;
  p95: number | null;
  mean: number | null;
  firstByteP50: number | null;
  completionTokens: number;
}

function total(values: Record<string, number>): number {
  return Object.values(values).reduce((a, b) => a + b, 0);
}

function minus(a: Record<string, number>, b: Record<string, number> | null): Record<string, number> {
  if (!b || total(a) < total(b)) return a; // a reset: the platform restarted
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(a)) out[k] = Math.max(0, v - (b[k] ?? 0));
  return out;
}

const ms = (seconds: number | null): number | null => (seconds === null ? null : seconds * 1000);

/** What happened up to ``newer``, since ``older`` (or since the platform started). */
export function summarize(newer: Snapshot, older: Snapshot | null = null): LatencySummary {
  const duration = histogramBetween(newer.duration, older?.duration ?? null);
  const firstByte = histogramBetween(newer.firstByte, older?.firstByte ?? null);
  const outcomes = minus(newer.outcomes, older?.outcomes ?? null);
  const tokens = minus(newer.tokens, older?.tokens ?? null);
  return {
    seconds: older ? Math.max(0, (newer.at - older.at) / 1000) : null,
    requests: total(outcomes),
    failed: (outcomes.upstream_error ?? 0) + (outcomes.unavailable ?? 0),
    p50: ms(quantile(duration, 0.5)),
    p95: ms(quantile(duration, 0.95)),
    mean: duration && duration.count > 0 ? (duration.sum / duration.count) * 1000 : null,
    firstByteP50: ms(quantile(firstByte, 0.5)),
    completionTokens: tokens.completion ?? 0,
  };
}

/**
 * Of ``snapshots`` (oldest first), the one to measure a window of ``seconds`` from the
 * newest: the newest one at least that old, else the oldest (a shorter window).
 */
export function windowStart(snapshots: Snapshot[], seconds: number): Snapshot | null {
  const newest = snapshots[snapshots.length - 1];
  if (!newest || snapshots.length < 2) return null;
  let start: Snapshot = snapshots[0]!;
  for (const s of snapshots.slice(0, -1)) {
    if (newest.at - s.at >= seconds * 1000) start = s;
  }
  return start;
}

/** "12 ms", "1.4 s"; "—" for nothing */
export function formatMs(value: number | null): string {
  if (value === null || !Number.isFinite(value)) return "—";
  if (value < 10) return `${value.toFixed(1)} ms`;
  if (value < 1000) return `${Math.round(value)} ms`;
  return `${(value / 1000).toFixed(value < 10_000 ? 2 : 1)} s`;
}
