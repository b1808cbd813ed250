// The typed API client: openapi-fetch over the types generated from the platform's
// OpenAPI document (schema.d.ts, see scripts/gen-api.mjs). Every call goes through
// `unwrap`, which turns a problem+json answer into an ApiError.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];

/** RFC 9457 problem details, with the platform's extensions. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  /** request validation errors (422 validation-error) */
  errors?: { location: string[]; message: string; type: string }[];
  /** a pipeline rule broken by these stages (422 invalid-request) */
  stages?: string[];
  rule?: string;
  [extension: string]: unknown;
}

export class ApiError extends Error {
  readonly problem: Problem;
  readonly retryAfter: number | null;
  constructor(problem: Problem, retryAfter: number | null = null) {
    super(problem.detail || problem.title);
    this.name = "ApiError";
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
  get status(): number {
    return this.problem.status;
  }
  /** the messages of a 422 keyed by field path below the body ("stages.0.name") */
  fieldErrors(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const e of this.problem.errors ?? []) {
      const path = e.location[0] === "body" ? e.location.slice(1) : e.location;
      const key = path.join(".");
      out[key] = out[key] ? `${out[key]}; ${e.message}` : e.message;
    }
    return out;
  }
}

let tokenSource: () => string | null = () => null;
let onUnauthenticated: () => void = () => {};

/** The session module tells the client where the key is and what to do on a 401. */
export function configureAuth(source: () => string | null, unauthenticated: () => void): void {
  tokenSource = source;
  onUnauthenticated = unauthenticated;
}

/** For calls made outside the client (uploads through XMLHttpRequest): a 401 ends the
 * session the same way. */
export function reportStatus(status: number): void {
  if (status === 401 && tokenSource()) onUnauthenticated();
}

export function authHeader(): Record<string, string> {
  const key = tokenSource();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

const auth: Middleware = {
  onRequest({ request }) {
    const key = tokenSource();
    if (key && !request.headers.has("Authorization")) {
      request.headers.set("Authorization", `Bearer ${key}`);
    }
    return request;
  },
  onResponse({ response }) {
    if (response.status === 401 && tokenSource()) onUnauthenticated();
    return response;
  },
};

export const api = createClient<paths>({ baseUrl: "" });
api.use(auth);

export async function problemFrom(response: Response, body?: unknown): Promise<ApiError> {
  let problem: Problem | null = null;
  const data = body ?? (await response.json().catch(() => null));
  if (data && typeof data === "object" && "status" in data && "title" in data) {
    problem = data as Problem;
  }
  const retry = Number(response.headers.get("Retry-After"));
  return new ApiError(
    problem ?? {
      type: "about:blank",
      title: response.statusText || "Request failed",
      status: response.status,
      detail: `the platform answered ${response.status}`,
    },
    Number.isFinite(retry) && retry > 0 ? retry : null,
  );
}

export function unreachable(cause: unknown): ApiError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new ApiError({
    type: "about:blank",
    title: "The platform could not be reached",
    status: 0,
    detail: `no answer from the server (${detail}); check that llmops is running`,
  });
}

type Result<T> = { data?: T; error?: unknown; response: Response };

/** The data of a successful call, or an ApiError (problem+json, or the network). */
export async function unwrap<T>(call: Promise<Result<T>>): Promise<T> {
  let result: Result<T>;
  try {
    result = await call;
  } catch (cause) {
    throw unreachable(cause);
  }
  if (!result.response.ok) throw await problemFrom(result.response, result.error);
  return result.data as T;
}

/** Like unwrap, but also hands back the response (its status: 201 done, 202 queued). */
export async function unwrapWithResponse<T>(
  call: Promise<Result<T>>,
): Promise<{ data: T; response: Response }> {
  let result: Result<T>;
  try {
    result = await call;
  } catch (cause) {
    throw unreachable(cause);
  }
  if (!result.response.ok) throw await problemFrom(result.response, result.error);
  return { data: result.data as T, response: result.response };
}

/** A human sentence for any error a page may catch. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    const { title, detail } = error.problem;
    return detail && detail !== title ? `${title}: ${detail}` : title;
  }
  return error instanceof Error ? error.message : String(error);
}
