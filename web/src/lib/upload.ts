// Uploading files into a dataset with real progress. fetch() reports no upload progress,
// so this uses XMLHttpRequest (upload.onprogress) and sends each file as multipart/form-data
// in the field "file" of POST /llm-ops/v1/catalog/datasets/{datasetId}/files, one request
// per file. Errors become the same ApiError every other call raises.
import { ApiError, authHeader, problemFrom, reportStatus, unreachable, type Schemas } from "@/api/client";

export type UploadResult = Schemas["UploadResult"];

/** The archive names the platform can unpack (services/storage.py ARCHIVE_SUFFIXES). */
export const ARCHIVE_SUFFIXES = [".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"] as const;

export function isArchive(name: string): boolean {
  const lower = name.toLowerCase();
  return ARCHIVE_SUFFIXES.some((suffix) => lower.endsWith(suffix));
}

export interface UploadProgress {
  /** 0–100, over all the files of this upload */
  percent: number;
  /** the bytes of the files sent so far, and of all of them */
  loaded: number;
  total: number;
  /** which file is on its way (0-based) and its name */
  index: number;
  name: string;
}

/**
 * The percentage of a multi-file upload: the files before ``index`` are done, the file at
 * ``index`` is ``fraction`` (0–1) sent. Weighted by size, so a big file counts more; a
 * batch of empty files counts each file the same. Whole numbers, 100 only when all is sent.
 */
export function overallPercent(sizes: readonly number[], index: number, fraction: number): number {
  const clamped = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
  const total = sizes.reduce((sum, size) => sum + size, 0);
  let done: number;
  if (total > 0) {
    const before = sizes.slice(0, index).reduce((sum, size) => sum + size, 0);
    done = (before + clamped * (sizes[index] ?? 0)) / total;
  } else {
    done = sizes.length ? (index + clamped) / sizes.length : 1;
  }
  return Math.floor(Math.min(1, done) * 100);
}

export interface UploadOptions {
  /** unpack the .zip/.tar archives among the files (other files are stored as they are) */
  extract?: boolean;
  onProgress?: (progress: UploadProgress) => void;
  /** aborting stops the file on its way; the files already sent stay in the dataset */
  signal?: AbortSignal;
}

/** The URL one file goes to. */
export function uploadUrl(datasetId: string, extract: boolean): string {
  const base = `/llm-ops/v1/catalog/datasets/${encodeURIComponent(datasetId)}/files`;
  return extract ? `${base}?extract=true` : base;
}

/** The ApiError for a failed answer of an XMLHttpRequest (problem+json when there is one). */
export async function problemFromXhr(xhr: {
  status: number;
  statusText: string;
  responseText: string;
  getResponseHeader(name: string): string | null;
}): Promise<ApiError> {
  const headers = new Headers();
  const retry = xhr.getResponseHeader("Retry-After");
  if (retry) headers.set("Retry-After", retry);
  let body: unknown = null;
  try {
    body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
  } catch {
    body = null;
  }
  const response = new Response(null, { status: xhr.status, statusText: xhr.statusText, headers });
  return problemFrom(response, body ?? undefined);
}

function sendOne(
  url: string,
  file: File,
  onFraction: (fraction: number) => void,
  signal?: AbortSignal,
): Promise<UploadResult> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new DOMException("The upload was cancelled", "AbortError"));
      return;
    }
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    for (const [name, value] of Object.entries(authHeader())) xhr.setRequestHeader(name, value);
    xhr.setRequestHeader("Accept", "application/json, application/problem+json");
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable && event.total > 0) onFraction(event.loaded / event.total);
    };
    // every byte is sent; the platform still stores (and maybe unpacks) the file
    xhr.upload.onload = () => onFraction(1);
    const abort = (): void => xhr.abort();
    signal?.addEventListener("abort", abort, { once: true });
    const done = (): void => signal?.removeEventListener("abort", abort);
    xhr.onload = () => {
      done();
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          onFraction(1);
          resolve(JSON.parse(xhr.responseText) as UploadResult);
        } catch (cause) {
          reject(unreachable(cause));
        }
      } else {
        reportStatus(xhr.status);
        void problemFromXhr(xhr).then(reject, reject);
      }
    };
    xhr.onerror = () => {
      done();
      reject(unreachable(new Error("the upload was interrupted")));
    };
    xhr.onabort = () => {
      done();
      reject(new DOMException("The upload was cancelled", "AbortError"));
    };
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

/**
 * Uploads ``files`` into dataset ``datasetId``, one after the other, reporting the progress
 * over all of them. Resolves with each file's result (the last one carries the dataset as
 * it is now); rejects with an ApiError (or an AbortError) at the first file that fails.
 */
export async function uploadFiles(
  datasetId: string,
  files: readonly File[],
  options: UploadOptions = {},
): Promise<UploadResult[]> {
  const sizes = files.map((f) => f.size);
  const total = sizes.reduce((sum, size) => sum + size, 0);
  const results: UploadResult[] = [];
  let highest = 0;
  for (const [index, file] of files.entries()) {
    const report = (fraction: number): void => {
      // progress never goes backwards (a retried chunk, a late event)
      highest = Math.max(highest, overallPercent(sizes, index, fraction));
      const before = sizes.slice(0, index).reduce((sum, size) => sum + size, 0);
      options.onProgress?.({
        percent: highest,
        loaded: Math.min(total, before + Math.round(fraction * file.size)),
        total,
        index,
        name: file.name,
      });
    };
    report(0);
    const url = uploadUrl(datasetId, Boolean(options.extract) && isArchive(file.name));
    results.push(await sendOne(url, file, report, options.signal));
  }
  return results;
}

/** Every path written by a batch of uploads, in order. */
export function writtenPaths(results: readonly UploadResult[]): string[] {
  return results.flatMap((r) => r.written);
}

export function isAbort(error: unknown): boolean {
  return error instanceof DOMException && error.name === "AbortError";
}
