// What several pages offer to pick from, or name things by: the catalog's models and
// datasets (for a select, or a table's names), one model's or dataset's name by its id,
// and the orchestrators a run may go to.
import { ref, watch, type Ref } from "vue";
import { api, unwrap } from "@/api/client";
import { useResource, type Resource } from "@/lib/resource";

/** the catalog's models, by name: one page, enough for a select */
export function fetchModelChoices() {
  return unwrap(api.GET("/llm-ops/v1/catalog/models", { params: { query: { sort: "name", limit: 500 } } }));
}

/** the catalog's datasets, by name: one page, enough for a select */
export function fetchDatasetChoices() {
  return unwrap(api.GET("/llm-ops/v1/catalog/datasets", { params: { query: { sort: "name", limit: 500 } } }));
}

/** a model's name and version, e.g. "llama (version 2)" */
export async function fetchModelName(modelId: string): Promise<string> {
  const m = await unwrap(api.GET("/llm-ops/v1/catalog/models/{modelId}", { params: { path: { modelId } } }));
  return `${m.name} (version ${m.version})`;
}

/** a dataset's name */
export async function fetchDatasetName(datasetId: string): Promise<string> {
  const d = await unwrap(api.GET("/llm-ops/v1/catalog/datasets/{datasetId}", { params: { path: { datasetId } } }));
  return d.name;
}

/**
 * The name of what ``id()`` points at, loaded with ``load`` now and whenever the id
 * changes: null until it arrives, or when it cannot be loaded (the page shows the id).
 */
export function useNameById(
  id: () => string | null | undefined,
  load: (id: string) => Promise<string>,
): Ref<string | null> {
  const name = ref<string | null>(null);
  watch(
    () => id() ?? null,
    async (value) => {
      if (!value) return;
      try {
        name.value = await load(value);
      } catch {
        name.value = null;
      }
    },
    { immediate: true },
  );
  return name;
}

/**
 * The names of what ``ids()`` point at, each loaded once with ``load`` (as ``useNameById``
 * does for one): an id whose name cannot be loaded is left out (the page shows the id).
 */
export function useNamesByIds(
  ids: () => readonly string[],
  load: (id: string) => Promise<string>,
): Ref<Record<string, string>> {
  const names = ref<Record<string, string>>({});
  watch(
    ids,
    async (list) => {
      for (const id of new Set(list)) {
        if (names.value[id]) continue;
        try {
          names.value = { ...names.value, [id]: await load(id) };
        } catch {
          // the link shows the id
        }
      }
    },
    { immediate: true },
  );
  return names;
}

export interface Orchestrators {
  /** the providers of the enabled, loaded plugins that orchestrate */
  names: string[];
  /** the platform's default orchestrator, if one is set */
  default: string | null;
}

/** The orchestrators a pipeline or training job may run on, for the "Orchestrator" select. */
export function useOrchestrators(): Resource<Orchestrators> {
  return useResource(async () => {
    const [plugins, defaults] = await Promise.all([
      unwrap(api.GET("/llm-ops/v1/integrations")),
      unwrap(api.GET("/llm-ops/v1/integrations/defaults")),
    ]);
    const names = plugins.items
      .filter((p) => p.enabled && p.loaded && p.capabilities.includes("orchestration"))
      .flatMap((p) => p.providers?.orchestration ?? [p.name]);
    return { names, default: defaults.defaults.orchestration ?? null };
  });
}
