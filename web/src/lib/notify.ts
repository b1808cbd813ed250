// Short-lived notices after an action ("Model created"), shown by <ToastList>.
import { reactive } from "vue";

export interface Toast {
  id: number;
  text: string;
  kind: "info" | "error";
}

export const toasts = reactive<Toast[]>([]);
let next = 1;

export function notify(text: string, kind: Toast["kind"] = "info", ms = 4000): void {
  const id = next++;
  toasts.push({ id, text, kind });
  setTimeout(() => {
    const index = toasts.findIndex((t) => t.id === id);
    if (index >= 0) toasts.splice(index, 1);
  }, ms);
}
