import { describe, expect, it, vi } from "vitest";
import { createApp, nextTick } from "vue";
import { createMemoryHistory, createRouter, type Router } from "vue-router";
import { trimmed, useQueryFilters } from "./filters";

async function routerAt(url: string): Promise<Router> {
  const router = createRouter({ history: createMemoryHistory(), routes: [{ path: "/:any(.*)", component: {} }] });
  await router.push(url);
  return router;
}

/** useQueryFilters as a page calls it, with ``router`` provided */
function setup<T extends Record<string, string>>(router: Router, ...args: Parameters<typeof useQueryFilters<T>>) {
  const app = createApp({});
  app.use(router);
  return app.runWithContext(() => useQueryFilters<T>(...args));
}

async function settle(): Promise<void> {
  await nextTick();
  await vi.advanceTimersByTimeAsync(1000);
}

describe("useQueryFilters", () => {
  it("reads the URL, an empty value meaning the default", async () => {
    const router = await routerAt("/x?q=llama&sort=&other=1");
    const { filters, active } = setup(router, { q: "", sort: "-updatedAt" }, () => {});
    expect({ ...filters }).toEqual({ q: "llama", sort: "-updatedAt" });
    expect(active.value).toBe(true);
  });

  it("writes the changed filters back without the defaults, then calls onChange", async () => {
    vi.useFakeTimers();
    const router = await routerAt("/x");
    const onChange = vi.fn();
    const { filters, active, clear } = setup(router, { q: "", status: "", sort: "-updatedAt" }, onChange);
    expect(active.value).toBe(false);
    filters.q = "bert";
    filters.sort = "name";
    await settle();
    expect(router.currentRoute.value.query).toEqual({ q: "bert", sort: "name" });
    expect(onChange).toHaveBeenCalledTimes(1);
    expect(active.value).toBe(true);
    clear();
    await settle();
    expect({ ...filters }).toEqual({ q: "", status: "", sort: "name" });
    expect(router.currentRoute.value.query).toEqual({ sort: "name" });
    expect(active.value).toBe(false);
    vi.useRealTimers();
  });

  it("converts with a codec both ways, and a filter that encodes to nothing does not count", async () => {
    vi.useFakeTimers();
    const router = await routerAt("/x?since=A");
    const since = { fromQuery: (raw: string) => raw.toLowerCase(), toQuery: (value: string) => value.toUpperCase() };
    const { filters, active } = setup(router, { kind: "", since: "" }, () => {}, { codecs: { kind: trimmed, since } });
    expect(filters.since).toBe("a");
    filters.kind = "   ";
    expect(active.value).toBe(true); // the since filter
    filters.since = "";
    expect(active.value).toBe(false); // spaces only: nothing narrows the list
    filters.kind = " pipeline.submit ";
    filters.since = "b";
    await settle();
    expect(router.currentRoute.value.query).toEqual({ kind: "pipeline.submit", since: "B" });
    vi.useRealTimers();
  });
});
