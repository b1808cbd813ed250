// Loading data for a page: one place for the loading / error / empty states, lists with
// keyset pagination ("Load more"), polling while something runs, and the marker the
// browser tests read to time a page until it is interactive.
import { getCurrentInstance, onBeforeUnmount, ref, shallowRef, type Ref, type ShallowRef } from "vue";
import { appendPage } from "@/lib/list";

/** A flag that turns false when the calling component unmounts: an answer that arrives
 * after the user left the page must not mark the next page ready. */
function aliveFlag(): { alive: boolean } {
  const flag = { alive: true };
  if (getCurrentInstance()) onBeforeUnmount(() => (flag.alive = false));
  return flag;
}

export interface Resource<T> {
  data: ShallowRef<T | null>;
  error: Ref<unknown>;
  loading: Ref<boolean>;
  /** load again; the current data stays on screen until the new answer arrives */
  reload: () => Promise<void>;
}

/**
 * The loading behind useResource and useList: ``reload()`` runs ``load`` and hands its
 * value to ``apply``, unless a newer reload started meanwhile (only the latest answer
 * counts). The first settled load (data or error) marks ``page`` interactive.
 */
function latestLoad<T>(load: () => Promise<T>, apply: (value: T) => void, page?: string) {
  const error = ref<unknown>(null);
  const loading = ref(false);
  const mounted = aliveFlag();
  let generation = 0;
  async function reload(): Promise<void> {
    const mine = ++generation;
    loading.value = true;
    try {
      const value = await load();
      if (mine !== generation) return;
      apply(value);
      error.value = null;
    } catch (caught) {
      if (mine !== generation) return;
      error.value = caught;
    } finally {
      if (mine === generation) {
        loading.value = false;
        if (page && mounted.alive) markReady(page);
      }
    }
  }
  return { error, loading, reload, generation: () => generation };
}

/**
 * Loads ``loader()`` now and on ``reload()``. ``page`` names the page for the readiness
 * marker: the first settled load (data or error) marks the page interactive.
 */
export function useResource<T>(loader: () => Promise<T>, page?: string): Resource<T> {
  const data = shallowRef<T | null>(null) as ShallowRef<T | null>;
  const { error, loading, reload } = latestLoad(loader, (value) => (data.value = value), page);
  void reload();
  return { data, error, loading, reload };
}

export interface Page<T> {
  items: T[];
  nextCursor?: string | null;
}

export interface ListResource<T> {
  items: ShallowRef<T[]>;
  nextCursor: Ref<string | null>;
  /** why the first page could not be loaded (the last reload's error) */
  error: Ref<unknown>;
  loading: Ref<boolean>;
  loadingMore: Ref<boolean>;
  /** why "Load more" failed; cleared by the next try and by a new first page */
  moreError: Ref<unknown>;
  /** true once the first page arrived */
  loaded: Ref<boolean>;
  /** how many pages are on screen: 1 after a reload, one more per "Load more" (a page
   * that keeps its list live reloads only while it shows the first page, which a reload
   * would otherwise cut back to) */
  pages: Ref<number>;
  reload: () => Promise<void>;
  loadMore: () => Promise<void>;
}

/** A keyset-paginated list: ``fetchPage(cursor)`` returns one page. With ``key``, an item
 * that a later page repeats (it moved while the user paged on) is listed once. */
export function useList<T>(
  fetchPage: (cursor: string | null) => Promise<Page<T>>,
  page?: string,
  options: { key?: (item: T) => unknown } = {},
): ListResource<T> {
  const items = shallowRef<T[]>([]) as ShallowRef<T[]>;
  const nextCursor = ref<string | null>(null);
  const loadingMore = ref(false);
  const moreError = ref<unknown>(null);
  const loaded = ref(false);
  const pages = ref(0);
  const { error, loading, reload, generation } = latestLoad(
    () => fetchPage(null),
    (first) => {
      items.value = first.items;
      nextCursor.value = first.nextCursor ?? null;
      moreError.value = null;
      pages.value = 1;
      loaded.value = true;
    },
    page,
  );
  async function loadMore(): Promise<void> {
    if (!nextCursor.value || loadingMore.value) return;
    const mine = generation(); // a reload meanwhile starts the list over
    loadingMore.value = true;
    moreError.value = null;
    try {
      const more = await fetchPage(nextCursor.value);
      if (mine !== generation()) return;
      items.value = appendPage(items.value, more.items, options.key);
      nextCursor.value = more.nextCursor ?? null;
      pages.value += 1;
    } catch (caught) {
      if (mine === generation()) moreError.value = caught;
    } finally {
      loadingMore.value = false;
    }
  }
  void reload();
  return { items, nextCursor, error, loading, loadingMore, moreError, loaded, pages, reload, loadMore };
}

/**
 * Calls ``tick`` every ``intervalMs`` while ``active()`` is true and the tab is visible;
 * stops when the component unmounts. For live status and logs.
 */
export function usePolling(
  tick: () => Promise<void> | void,
  active: () => boolean,
  intervalMs = 1500,
): void {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;
  async function loop(): Promise<void> {
    if (stopped) return;
    if (active() && document.visibilityState !== "hidden") {
      try {
        await tick();
      } catch {
        // the page's own resource shows errors; polling just tries again
      }
    }
    if (!stopped) timer = setTimeout(loop, intervalMs);
  }
  timer = setTimeout(loop, intervalMs);
  onBeforeUnmount(() => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
  });
}

/** The current time, ticking every second while ``active()``: running durations count up. */
export function useNow(active: () => boolean = () => true): Ref<number> {
  const now = ref(Date.now());
  usePolling(
    () => {
      now.value = Date.now();
    },
    active,
    1000,
  );
  return now;
}

// -- readiness, for the browser tests' time-to-interactive measurement -----------------

interface ReadyMark {
  page: string;
  /** ms since the document started loading */
  sinceNavigation: number;
  /** ms since the router started this navigation */
  sinceRoute: number;
}

declare global {
  interface Window {
    __llmopsReady?: ReadyMark[];
  }
}

let routeStarted = 0;
export function markRouteStart(): void {
  routeStarted = performance.now();
  delete document.documentElement.dataset.ready;
}

/** The page named ``page`` shows its data (or its error) and takes input. */
export function markReady(page: string): void {
  if (document.documentElement.dataset.ready === page) return;
  const now = performance.now();
  (window.__llmopsReady ??= []).push({
    page,
    sinceNavigation: Math.round(now),
    sinceRoute: Math.round(now - routeStarted),
  });
  document.documentElement.dataset.ready = page;
}
