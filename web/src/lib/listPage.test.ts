import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createApp, nextTick } from "vue";
import { createMemoryHistory, createRouter, type Router } from "vue-router";
import { choicesOf, type FilterField } from "./list";
import { useListPage } from "./listPage";
import type { Page } from "./resource";

interface Job {
  id: string;
  status: string;
}

const FIELDS = [
  { key: "q", label: "Search", id: "q", kind: "search" },
  { key: "status", label: "Status", id: "status", kind: "select", options: choicesOf(["running", "failed"]) },
] as const satisfies readonly FilterField[];

async function routerAt(url: string): Promise<Router> {
  const router = createRouter({ history: createMemoryHistory(), routes: [{ path: "/:any(.*)", component: {} }] });
  await router.push(url);
  return router;
}

/** useListPage as a page calls it, with ``router`` provided */
function setup<T extends { id: string }>(router: Router, ...args: Parameters<typeof useListPage<T, typeof FIELDS>>) {
  const app = createApp({});
  app.use(router);
  return app.runWithContext(() => useListPage<T, typeof FIELDS>(...args));
}

/** a fake API: one answer per call, and what each call asked */
function fakeApi(...pages: Page<Job>[]) {
  const calls: { query: Record<string, unknown>; cursor: string | null }[] = [];
  const fetchPage = vi.fn(async (query: Record<string, unknown>, cursor: string | null) => {
    calls.push({ query, cursor });
    const page = pages[Math.min(calls.length - 1, pages.length - 1)];
    if (!page) throw new Error("no page");
    return page;
  });
  return { calls, fetchPage };
}

const job = (id: string, status = "failed"): Job => ({ id, status });

async function settle(ms = 1000): Promise<void> {
  await nextTick();
  await vi.advanceTimersByTimeAsync(ms);
}

beforeEach(() => {
  vi.useFakeTimers();
  // the readiness marker and polling read the document
  vi.stubGlobal("document", { documentElement: { dataset: {} }, visibilityState: "visible" });
  vi.stubGlobal("window", {});
  // usePolling, outside a component here, says it cannot stop on unmount
  vi.spyOn(console, "warn").mockImplementation(() => {});
});

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
});

describe("useListPage", () => {
  it("loads the first page with the URL's filters as the API's query, and marks the page ready", async () => {
    const router = await routerAt("/jobs?q=+bert+&status=bogus");
    const api = fakeApi({ items: [job("a")], nextCursor: null });
    const { resource, filters } = setup<Job>(router, "jobs", { filters: FIELDS, fetchPage: api.fetchPage });
    await settle();
    expect(api.calls).toEqual([{ query: { q: "bert" }, cursor: null }]);
    expect(resource.items.value).toEqual([job("a")]);
    expect(filters.values).toEqual({ q: " bert ", status: "" }); // not a status: the default
    expect(filters.active.value).toBe(true);
    expect(document.documentElement.dataset.ready).toBe("jobs");
  });

  it("starts over from the first page when a filter changes, and writes the filter to the URL", async () => {
    const router = await routerAt("/jobs");
    const api = fakeApi({ items: [job("a")], nextCursor: "c1" }, { items: [job("b")], nextCursor: null });
    const { resource, filters } = setup<Job>(router, "jobs", { filters: FIELDS, fetchPage: api.fetchPage });
    await settle();
    await resource.loadMore();
    expect(resource.pages.value).toBe(2);

    filters.values.status = "running";
    await settle();
    expect(router.currentRoute.value.query).toEqual({ status: "running" });
    expect(api.calls.at(-1)).toEqual({ query: { status: "running" }, cursor: null });
    expect(resource.pages.value).toBe(1);

    filters.clear();
    await settle();
    expect(router.currentRoute.value.query).toEqual({});
    expect(filters.active.value).toBe(false);
  });

  it("pages on with the cursor, lists a repeated item once, and keeps a failed next page apart", async () => {
    const router = await routerAt("/jobs");
    const api = fakeApi(
      { items: [job("a"), job("b")], nextCursor: "c1" },
      { items: [job("b"), job("c")], nextCursor: "c2" },
    );
    const { resource } = setup<Job>(router, "jobs", { filters: FIELDS, fetchPage: api.fetchPage });
    await settle();
    await resource.loadMore();
    expect(api.calls.at(-1)?.cursor).toBe("c1");
    expect(resource.items.value.map((j) => j.id)).toEqual(["a", "b", "c"]);
    expect(resource.nextCursor.value).toBe("c2");

    api.fetchPage.mockRejectedValueOnce(new Error("the next page is away"));
    await resource.loadMore();
    expect(resource.moreError.value).toBeInstanceOf(Error);
    expect(resource.error.value).toBeNull(); // the list on screen is not in error
    expect(resource.items.value).toHaveLength(3);

    await resource.reload();
    expect(resource.moreError.value).toBeNull();
  });

  it("keeps the first page live while an item on it moves, and stops once the user pages on", async () => {
    const router = await routerAt("/jobs");
    const api = fakeApi({ items: [job("a", "running")], nextCursor: "c1" });
    const { resource } = setup<Job>(router, "jobs", {
      filters: FIELDS,
      fetchPage: api.fetchPage,
      live: { while: (j) => j.status === "running", everyMs: 3000 },
    });
    await settle(0);
    expect(api.fetchPage).toHaveBeenCalledTimes(1);
    await settle(3000);
    expect(api.fetchPage).toHaveBeenCalledTimes(2);
    expect(api.calls.at(-1)?.cursor).toBeNull();

    await resource.loadMore();
    const calls = api.fetchPage.mock.calls.length;
    await settle(9000);
    expect(api.fetchPage).toHaveBeenCalledTimes(calls); // a reload would undo "Load more"
  });

  it("pauses the live reload while the page says so, and stops when nothing moves", async () => {
    const router = await routerAt("/jobs");
    let paused = true;
    const api = fakeApi({ items: [job("a", "running")], nextCursor: null }, { items: [job("a", "failed")] });
    setup<Job>(router, "jobs", {
      filters: FIELDS,
      fetchPage: api.fetchPage,
      live: { while: (j) => j.status === "running", everyMs: 1000, paused: () => paused },
    });
    await settle(3000);
    expect(api.fetchPage).toHaveBeenCalledTimes(1);
    paused = false;
    await settle(1000);
    expect(api.fetchPage).toHaveBeenCalledTimes(2); // now failed: nothing moves any more
    await settle(5000);
    expect(api.fetchPage).toHaveBeenCalledTimes(2);
  });
});
