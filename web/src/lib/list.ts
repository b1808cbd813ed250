// What a list page is made of, as data (ListPage.vue draws it, lib/listPage.ts loads it):
// its filters (what the filter bar shows, how each one stands in the URL and in the API's
// query), its columns, and the pages of a keyset-paginated list. Pure functions only.
import type { QueryCodec } from "@/lib/filters";
import { humanize } from "@/lib/format";

export interface FilterOption<V extends string = string> {
  value: V;
  label: string;
}

interface FilterBase<K extends string> {
  /** the query parameter, in the URL and in the API call */
  key: K;
  label: string;
  /** the input's id, which its label points at */
  id: string;
  /** the value when the URL says nothing; "" (any) unless given */
  default?: string;
  /** true for the sort order: it orders the list rather than narrowing it, so it does not
   * make the list "filtered" and "Clear filters" keeps it */
  ordering?: boolean;
}

/** A typed filter; its surrounding spaces do not count. */
export interface TextFilter<K extends string = string> extends FilterBase<K> {
  kind: "search" | "text";
  placeholder?: string;
  maxlength?: number;
  /** values to suggest while typing (a datalist), e.g. the API keys' names */
  suggestions?: () => readonly string[];
}

/** A choice. Its default is "" unless given, and then the first choice is "Any". */
export interface SelectFilter<K extends string = string, V extends string = string> extends FilterBase<K> {
  kind: "select";
  /** a list: a value the URL names that is not in it means the default. A function: the
   * choices load later, so any value is kept (and shown as itself until its choice is
   * there), e.g. the models of the catalog */
  options: readonly FilterOption<V>[] | (() => readonly FilterOption[]);
}

/** A point in time: local time in the form, an ISO instant in UTC in the URL and the API
 * call, so a shared link means the same instant anywhere. */
export interface DateTimeFilter<K extends string = string> extends FilterBase<K> {
  kind: "datetime";
}

export type FilterField<K extends string = string> = TextFilter<K> | SelectFilter<K> | DateTimeFilter<K>;

/** the keys of ``F``'s filters */
export type FilterKey<F extends readonly FilterField[]> = F[number]["key"];

type FieldValue<Field> = Field extends SelectFilter<string, infer V> ? V : string;

/** What the filters send to the API: one parameter per filter that says something, a
 * select's value typed by its choices (so it fits the API's enums). */
export type FilterQuery<F extends readonly FilterField[]> = {
  [Field in F[number] as Field["key"]]?: FieldValue<Field>;
};

/** The choices ``values``, each labelled in words ("dead" → "Dead"). */
export function choicesOf<const V extends string>(values: readonly V[], label: (value: V) => string = humanize): FilterOption<V>[] {
  return values.map((value) => ({ value, label: label(value) }));
}

/** The "Sort by" select: its first choice is the default order. */
export function sortFilter<const V extends string>(
  id: string,
  options: readonly [FilterOption<V>, ...FilterOption<V>[]],
): SelectFilter<"sort", V> {
  return { key: "sort", label: "Sort by", id, kind: "select", default: options[0].value, ordering: true, options };
}

/** The orders of a list of runs (jobs, pipelines) */
export const BY_CREATION = [
  { value: "-createdAt", label: "Newest" },
  { value: "createdAt", label: "Oldest" },
  { value: "name", label: "Name" },
] as const satisfies readonly FilterOption[];

/** The orders of a list of catalog entries (models, datasets) */
export const BY_UPDATE = [
  { value: "-updatedAt", label: "Recently updated" },
  { value: "-createdAt", label: "Newest" },
  { value: "name", label: "Name" },
] as const satisfies readonly FilterOption[];

const defaultOf = (field: FilterField): string => field.default ?? "";

const fixedOptions = (field: SelectFilter): readonly FilterOption[] | null =>
  typeof field.options === "function" ? null : field.options;

/** Whether ``value`` is a choice of ``field`` (any value is, when the choices load later). */
function isChoice(field: SelectFilter, value: string): boolean {
  const options = fixedOptions(field);
  return options === null || value === "" || options.some((o) => o.value === value);
}

/** Every filter's value when nothing is set. */
export function filterDefaults(fields: readonly FilterField[]): Record<string, string> {
  return Object.fromEntries(fields.map((f) => [f.key, defaultOf(f)]));
}

/** The keys that order the list rather than narrow it. */
export function orderingKeys(fields: readonly FilterField[]): string[] {
  return fields.filter((f) => f.ordering).map((f) => f.key);
}

/** A select applies at once; typing waits a moment, so a half-typed word is not sent. */
export function filterDebounceMs(fields: readonly FilterField[]): number {
  return fields.some((f) => f.kind === "search" || f.kind === "text") ? 250 : 0;
}

/** How each filter stands in the URL (see useQueryFilters). */
export function filterCodecs(fields: readonly FilterField[]): Record<string, QueryCodec> {
  const codecs: Record<string, QueryCodec> = {};
  for (const field of fields) {
    if (field.kind === "select") {
      if (fixedOptions(field)) {
        codecs[field.key] = { fromQuery: (raw) => (isChoice(field, raw) ? raw : defaultOf(field)) };
      }
    } else if (field.kind === "datetime") {
      codecs[field.key] = { fromQuery: toLocalInput, toQuery: toIsoUtc };
    } else {
      codecs[field.key] = { toQuery: (value) => value.trim() };
    }
  }
  return codecs;
}

/** One filter's value as the API is sent it: undefined when it says nothing. */
function queryValue(field: FilterField, value: string): string | undefined {
  let sent: string;
  if (field.kind === "select") sent = isChoice(field, value) ? value : defaultOf(field);
  else if (field.kind === "datetime") sent = toIsoUtc(value);
  else sent = value.trim();
  return sent === "" ? undefined : sent;
}

/** The API call's query parameters for the filters' ``values``. */
export function filterQuery<F extends readonly FilterField[]>(
  fields: F,
  values: Readonly<Record<string, string>>,
): FilterQuery<F> {
  const query: Record<string, string> = {};
  for (const field of fields) {
    const value = queryValue(field, values[field.key] ?? defaultOf(field));
    if (value !== undefined) query[field.key] = value;
  }
  return query as FilterQuery<F>;
}

/** The choices a select shows for its ``current`` value: "Any" first when its default is
 * "", then the current value itself when its choice is not (yet) there, then the choices. */
export function selectChoices(field: SelectFilter, current: string): FilterOption[] {
  const options = typeof field.options === "function" ? field.options() : field.options;
  const choices: FilterOption[] = defaultOf(field) === "" ? [{ value: "", label: "Any" }] : [];
  if (current !== "" && !options.some((o) => o.value === current)) choices.push({ value: current, label: current });
  return [...choices, ...options];
}

/** An ISO instant → the value of a datetime-local input, in the browser's time zone. */
export function toLocalInput(iso: string): string {
  const date = new Date(iso);
  if (!iso || Number.isNaN(date.getTime())) return "";
  const pad = (n: number) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}`
  );
}

/** A datetime-local value (local time) → an ISO instant in UTC, or "" when empty. */
export function toIsoUtc(local: string): string {
  if (!local) return "";
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

// -- columns ------------------------------------------------------------------------------

/** One column of a list's table. A cell shows the slot ``cell-<key>`` when the page gives
 * one; otherwise its ``status`` as a badge, or its ``value`` (linked to ``to``). */
export interface Column<T> {
  /** names the column's cell slot: ``#cell-<key>="{ item }"`` */
  key: string;
  /** the header, in sentence case */
  label: string;
  /** a number: right-aligned */
  num?: boolean;
  /** the header is read by screen readers only (a column of row actions) */
  hideLabel?: boolean;
  /** the cell's text; null, undefined or "" shows "—" */
  value?: (item: T) => string | number | null | undefined;
  /** where the cell's text links to (none when null) */
  to?: (item: T) => string | null | undefined;
  /** the cell is this status, shown by StatusBadge */
  status?: (item: T) => string | null | undefined;
  /** the cell's tooltip, e.g. the exact date of a relative one */
  title?: (item: T) => string | undefined;
  /** classes of the column's cells (not its header) */
  class?: string;
}

/** The text of ``column``'s cell for ``item``: "—" when there is nothing to show. */
export function cellText<T>(column: Column<T>, item: T): string {
  const value = column.value?.(item);
  return value === null || value === undefined || value === "" ? "—" : String(value);
}

// -- pages --------------------------------------------------------------------------------

/** ``items`` and the next page after it: an item already listed (it moved up while the
 * user paged on) is not listed twice. Without ``key``, the pages are joined as they are. */
export function appendPage<T>(items: readonly T[], more: readonly T[], key?: (item: T) => unknown): T[] {
  if (!key) return [...items, ...more];
  const seen = new Set(items.map(key));
  return [...items, ...more.filter((item) => !seen.has(key(item)))];
}

/** ``items`` with ``updated`` in place of the item with its id. */
export function replaceItem<T extends { id: string | number }>(items: readonly T[], updated: T): T[] {
  return items.map((item) => (item.id === updated.id ? updated : item));
}
