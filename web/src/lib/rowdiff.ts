// Row diffs of JSONL and CSV files as the compare page shows them: each change's fields
// side by side, the ones that differ marked, the rows as text (never HTML).

export type ChangeKind = "added" | "removed" | "changed";

export interface RowChange {
  kind: string;
  key?: unknown;
  before?: unknown;
  after?: unknown;
  beforeLine?: number | null;
  afterLine?: number | null;
}

export interface RowCell {
  /** a JSON object's field name, a CSV column's name (or its number from 1) */
  field: string;
  before: string | null;
  after: string | null;
  /** the field differs from before to after (or exists on one side only) */
  changed: boolean;
}

/** A value as the text a cell shows: strings as they are, the rest as JSON. */
export function cellText(value: unknown): string {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  return cellText(a) === cellText(b) && typeof a === typeof b;
}

/**
 * The fields of a change, before and after, in their order (before's first, then the
 * ones only after has), each marked when it differs. A JSON object row gives its fields;
 * a CSV row (a list, or an object by column) gives its columns, named by ``columns`` when
 * the header is known; a row that is neither (an unreadable line) is one field, "row".
 */
export function rowCells(change: RowChange, columns?: readonly string[] | null): RowCell[] {
  const { before, after } = change;
  const hasBefore = change.kind !== "added" && before !== undefined && before !== null;
  const hasAfter = change.kind !== "removed" && after !== undefined && after !== null;
  const sides = [hasBefore ? before : undefined, hasAfter ? after : undefined];
  if (sides.every((s) => s === undefined || isRecord(s))) {
    const b = (sides[0] ?? {}) as Record<string, unknown>;
    const a = (sides[1] ?? {}) as Record<string, unknown>;
    const fields = [...Object.keys(b), ...Object.keys(a).filter((k) => !(k in b))];
    return fields.map((field) => {
      const inB = hasBefore && field in b;
      const inA = hasAfter && field in a;
      return {
        field,
        before: inB ? cellText(b[field]) : null,
        after: inA ? cellText(a[field]) : null,
        changed: change.kind === "changed" && (inB !== inA || !sameValue(b[field], a[field])),
      };
    });
  }
  if (sides.every((s) => s === undefined || Array.isArray(s))) {
    const b = (sides[0] ?? []) as unknown[];
    const a = (sides[1] ?? []) as unknown[];
    const count = Math.max(b.length, a.length);
    return Array.from({ length: count }, (_, i) => {
      const inB = hasBefore && i < b.length;
      const inA = hasAfter && i < a.length;
      return {
        field: columns?.[i] ?? String(i + 1),
        before: inB ? cellText(b[i]) : null,
        after: inA ? cellText(a[i]) : null,
        changed: change.kind === "changed" && (inB !== inA || !sameValue(b[i], a[i])),
      };
    });
  }
  return [
    {
      field: "row",
      before: hasBefore ? cellText(before) : null,
      after: hasAfter ? cellText(after) : null,
      changed: change.kind === "changed" && !sameValue(before, after),
    },
  ];
}

/** The tone a change is shown in: green added, red removed, yellow changed. */
export function changeTone(kind: string): "success" | "failure" | "warning" | "neutral" {
  if (kind === "added") return "success";
  if (kind === "removed") return "failure";
  if (kind === "changed") return "warning";
  return "neutral";
}

/** Whether a file's name says it is diffed row by row (JSONL, CSV, TSV). */
export function isTabular(path: string): boolean {
  return /\.(jsonl|ndjson|csv|tsv)$/i.test(path);
}

export interface PageWindow {
  /** 1-based first and last change shown, 0 when there is none */
  first: number;
  last: number;
  total: number;
  previous: number | null;
  next: number | null;
}

/** Which changes a page shows and the offsets of the pages before and after it. */
export function pageWindow(offset: number, limit: number, shown: number, total: number, hasMore: boolean): PageWindow {
  const first = shown ? offset + 1 : 0;
  return {
    first,
    last: shown ? offset + shown : 0,
    total,
    previous: offset > 0 ? Math.max(0, offset - limit) : null,
    next: hasMore ? offset + Math.max(shown, 1) : null,
  };
}

/** A checksum shown short (its first 10 characters, after any "md5:"-like prefix). */
export function shortChecksum(checksum: string | null | undefined): string {
  if (!checksum) return "—";
  const bare = checksum.includes(":") ? checksum.slice(checksum.indexOf(":") + 1) : checksum;
  return bare.slice(0, 10);
}
