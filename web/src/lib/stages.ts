// Which stage's log a run's page shows (a pipeline's or a training job's): the one the user
// picked, else one chosen as the run goes.
import { computed, ref, watch, type ComputedRef, type Ref } from "vue";

export interface StageState {
  name: string;
  state: string;
  attempts: number;
}

export interface StageSelection {
  /** the stage the user picked (null: none, or back to the automatic choice) */
  picked: Ref<string | null>;
  /** the stage shown: the pick while that stage exists, else the automatic choice */
  selected: ComputedRef<string | null>;
  /** changes when the shown stage's state or attempt does: the log loads again */
  revision: ComputedRef<string | undefined>;
  select: (name: string) => void;
}

export function useStageSelection(stages: Ref<StageState[]>): StageSelection {
  const picked = ref<string | null>(null);
  // without a pick: the stage running now, else a failed one (its log says why), else the
  // last one that ran, else the first
  const auto = ref<string | null>(null);
  watch(
    stages,
    (list) => {
      const running = list.find((s) => s.state === "running")?.name;
      const failed = list.find((s) => s.state === "failed")?.name;
      const current = list.find((s) => s.name === auto.value);
      if (running) auto.value = running;
      else if (failed && current?.state !== "failed") auto.value = failed;
      else if (!current) auto.value = list[0]?.name ?? null;
    },
    { immediate: true },
  );
  const selected = computed<string | null>(() =>
    picked.value && stages.value.some((s) => s.name === picked.value) ? picked.value : auto.value,
  );
  const revision = computed(() => {
    const stage = stages.value.find((s) => s.name === selected.value);
    return stage ? `${stage.state}:${stage.attempts}` : undefined;
  });
  function select(name: string): void {
    picked.value = name;
  }
  return { picked, selected, revision, select };
}
