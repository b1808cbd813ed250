// Who is signed in: the API key (kept in this tab's sessionStorage, or in localStorage
// when the user asks to stay signed in) and what GET /llm-ops/v1/me says about it.
import { computed, reactive } from "vue";
import { api, configureAuth, unwrap, type Schemas } from "@/api/client";

export type Role = "viewer" | "editor" | "admin";
const RANK: Record<Role, number> = { viewer: 1, editor: 2, admin: 3 };
const STORAGE_KEY = "llmops.apiKey";

interface SessionState {
  key: string | null;
  principal: Schemas["PrincipalOut"] | null;
  /** set when a 401 ended the session, shown on the sign-in page */
  expired: boolean;
}

export const session = reactive<SessionState>({
  key: sessionStorage.getItem(STORAGE_KEY) ?? localStorage.getItem(STORAGE_KEY),
  principal: null,
  expired: false,
});

let afterSignOut: () => void = () => {};
export function onSignOut(callback: () => void): void {
  afterSignOut = callback;
}

configureAuth(
  () => session.key,
  () => {
    signOut();
    session.expired = true;
  },
);

/** Check the key with the platform; keep it only when the platform accepts it. */
export async function signIn(key: string, remember = false): Promise<void> {
  const principal = await unwrap(
    api.GET("/llm-ops/v1/me", { headers: { Authorization: `Bearer ${key}` } }),
  );
  session.key = key;
  session.principal = principal;
  session.expired = false;
  (remember ? localStorage : sessionStorage).setItem(STORAGE_KEY, key);
}

/** With a key from an earlier visit: ask who it belongs to (false when it no longer works). */
export async function restore(): Promise<boolean> {
  if (!session.key) return false;
  if (session.principal) return true;
  try {
    session.principal = await unwrap(api.GET("/llm-ops/v1/me"));
    return true;
  } catch {
    return session.principal !== null;
  }
}

export function signOut(): void {
  session.key = null;
  session.principal = null;
  sessionStorage.removeItem(STORAGE_KEY);
  localStorage.removeItem(STORAGE_KEY);
  afterSignOut();
}

export const role = computed<Role | null>(() => (session.principal?.role as Role) ?? null);

/** Whether the signed-in key has at least ``needed``: pages hide what it may not do. */
export function can(needed: Role): boolean {
  const current = role.value;
  return current !== null && RANK[current] >= RANK[needed];
}
