// The loading behind a list page (ListPage.vue): its filters, kept in the URL query
// (useQueryFilters), one page of the list at a time ("Load more", keyset cursors), a new
// first page whenever a filter changes, and, while something on the first page is still
// moving, that page kept live.
import type { ComputedRef } from "vue";
import { useQueryFilters } from "@/lib/filters";
import {
  filterCodecs,
  filterDebounceMs,
  filterDefaults,
  filterQuery,
  orderingKeys,
  type FilterField,
  type FilterKey,
  type FilterQuery,
} from "@/lib/list";
import { useList, usePolling, type ListResource, type Page } from "@/lib/resource";

export interface ListFilters<K extends string = string> {
  fields: readonly FilterField[];
  /** the form's values, as the URL has them (a page may set one, e.g. from a cell) */
  values: Record<K, string>;
  /** true when a filter (not the sort order) narrows the list */
  active: ComputedRef<boolean>;
  /** every filter back to its default, the sort order kept */
  clear: () => void;
}

export interface ListPageSource<T, K extends string = string> {
  /** the page's name: its readiness marker, and the table's data-testid */
  name: string;
  /** the pages loaded so far */
  resource: ListResource<T>;
  filters: ListFilters<K>;
}

export interface LiveFirstPage<T> {
  /** whether an item is still moving (running, pending…): while one on the first page is,
   * the page reloads every ``everyMs`` */
  while: (item: T) => boolean;
  everyMs: number;
  /** what to do instead of a plain reload (e.g. read the moving items first) */
  tick?: () => Promise<void>;
  /** true while the page must not reload (an action on a row is under way) */
  paused?: () => boolean;
}

/**
 * A list page's data: ``fetchPage(query, cursor)`` loads one page for the filters' query
 * parameters (typed by the filters: a select's value is one of its choices). ``name``
 * marks the page interactive once its first page (or error) is on screen.
 */
export function useListPage<T extends { id: string | number }, const F extends readonly FilterField[] = readonly []>(
  name: string,
  options: {
    filters?: F;
    fetchPage: (query: FilterQuery<F>, cursor: string | null) => Promise<Page<T>>;
    live?: LiveFirstPage<T>;
  },
): ListPageSource<T, FilterKey<F>> {
  const fields: readonly FilterField[] = options.filters ?? [];
  const { filters: values, active, clear } = useQueryFilters(filterDefaults(fields), () => void resource.reload(), {
    ordering: orderingKeys(fields),
    debounceMs: filterDebounceMs(fields),
    codecs: filterCodecs(fields),
  });
  const resource = useList<T>(
    (cursor) => options.fetchPage(filterQuery(fields, values) as FilterQuery<F>, cursor),
    name,
    { key: (item) => item.id },
  );
  const live = options.live;
  if (live) {
    usePolling(
      () => (live.tick ? live.tick() : resource.reload()),
      () =>
        resource.pages.value === 1 &&
        !resource.loading.value &&
        !resource.loadingMore.value &&
        !live.paused?.() &&
        resource.items.value.some(live.while),
      live.everyMs,
    );
  }
  return {
    name,
    resource,
    filters: { fields, values: values as Record<FilterKey<F>, string>, active, clear },
  };
}
