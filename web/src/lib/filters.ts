// A list page's filters, kept in the URL query so a filtered list can be shared and
// survives a reload: read from the URL once, written back (without the defaults) on every
// change, which also reloads the list after a short pause for typing.
import { computed, getCurrentInstance, onBeforeUnmount, reactive, watch, type ComputedRef, type UnwrapNestedRefs } from "vue";
import { useRoute, useRouter } from "vue-router";

export interface QueryFilters<T extends Record<string, string>> {
  filters: UnwrapNestedRefs<T>;
  /** true when a filter (not the sort order) narrows the list */
  active: ComputedRef<boolean>;
  /** back to the defaults, keeping the sort order */
  clear: () => void;
}

/** How one filter stands in the URL, where that differs from its value in the form. */
export interface QueryCodec {
  /** the URL's value → the filter's (e.g. an ISO instant → a datetime-local value) */
  fromQuery?: (raw: string) => string;
  /** the filter's value → the URL's, which also says whether it narrows the list: "" (or
   * the default's) leaves it out */
  toQuery?: (value: string) => string;
}

/** A text filter whose surrounding spaces do not count. */
export const trimmed: QueryCodec = { toQuery: (value) => value.trim() };

export function useQueryFilters<T extends Record<string, string>>(
  defaults: T,
  onChange: () => void,
  options: { ordering?: (keyof T)[]; debounceMs?: number; codecs?: { [K in keyof T]?: QueryCodec } } = {},
): QueryFilters<T> {
  const route = useRoute();
  const router = useRouter();
  const ordering = new Set<string>((options.ordering ?? ["sort"]) as string[]);
  const codecs = (options.codecs ?? {}) as Record<string, QueryCodec | undefined>;
  const base = defaults as Record<string, string>;
  const keys = Object.keys(base);
  const encode = (key: string, value: string): string => codecs[key]?.toQuery?.(value) ?? value;
  const initial: Record<string, string> = { ...base };
  for (const key of keys) {
    const value = route.query[key];
    // an empty value in the URL means the default
    if (typeof value === "string" && value !== "") {
      const fromQuery = codecs[key]?.fromQuery;
      initial[key] = fromQuery ? fromQuery(value) : value;
    }
  }
  const filters = reactive(initial as T) as UnwrapNestedRefs<T>;
  const values = filters as unknown as Record<string, string>;
  /** whether a filter differs from its default, as the URL (and the list) sees it */
  const changed = (key: string): boolean => encode(key, values[key] ?? "") !== encode(key, base[key] ?? "");

  let timer: ReturnType<typeof setTimeout> | undefined;
  watch(
    () => ({ ...values }),
    () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        const query: Record<string, string> = {};
        for (const key of keys) {
          const value = encode(key, values[key] ?? "");
          if (value !== "" && changed(key)) query[key] = value;
        }
        void router.replace({ query });
        onChange();
      }, options.debounceMs ?? 250);
    },
  );

  // a change made just before leaving the page must not rewrite the next page's URL
  if (getCurrentInstance()) onBeforeUnmount(() => clearTimeout(timer));

  const active = computed(() => keys.some((key) => !ordering.has(key) && changed(key)));
  function clear(): void {
    for (const key of keys) {
      if (!ordering.has(key)) values[key] = base[key] ?? "";
    }
  }
  return { filters, active, clear };
}
