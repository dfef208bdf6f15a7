// The console's client of oblio's API: same origin, the key from sessionStorage (this tab
// only: never a cookie, never in a URL), JSON in and out, the API's errors kept as they are.

const KEY = "oblio.console.key";
// ../v1/ from /console/: right behind API Gateway's stage prefix (/api/console/) as well
const BASE = new URL("../v1/", document.baseURI);

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set(key) { sessionStorage.setItem(KEY, key); },
  clear() { sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  constructor(status, body, text) {
    const e = body && body.error;
    super(e ? e.message : (text || `the API answered ${status}`));
    this.status = status;
    this.code = e ? e.code : "http_error";
    this.details = e ? (e.details || {}) : {};
  }
}

export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function url(path, query) {
  const u = new URL(path.replace(/^\/?(v1\/)?/, ""), BASE);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "" && v !== false) u.searchParams.set(k, String(v));
  }
  return u;
}

let onUnauthorized = () => {};
export function whenSignedOut(fn) { onUnauthorized = fn; }

async function call(method, path, { body, query, idempotencyKey, key } = {}) {
  const headers = { Authorization: `Bearer ${key || session.key || ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["Idempotency-Key"] = idempotencyKey || newKey();
  let r;
  try {
    r = await fetch(url(path, query), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
    });
  } catch (err) {
    throw new Error(`the API could not be reached (${err.message}); check that oblio is running`);
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!r.ok) {
    const err = new ApiError(r.status, data, text);
    if (r.status === 401 && !key) onUnauthorized(err);
    throw err;
  }
  return data;
}

export const api = {
  get: (path, query, opts) => call("GET", path, { ...opts, query }),
  post: (path, body, opts) => call("POST", path, { ...opts, body: body ?? {} }),
  put: (path, body, opts) => call("PUT", path, { ...opts, body: body ?? {} }),
  patch: (path, body, opts) => call("PATCH", path, { ...opts, body: body ?? {} }),
};

/** PUT a file as it is (bytes), reporting upload progress; XHR because fetch cannot. */
export function uploadFile(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url(path));
    xhr.setRequestHeader("Authorization", `Bearer ${session.key || ""}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) onProgress?.(e.loaded, e.total); });
    xhr.addEventListener("load", () => {
      let data = null;
      try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, data, xhr.responseText));
    });
    xhr.addEventListener("error", () => reject(new Error("the upload could not reach the API")));
    xhr.send(file);
  });
}

/** Who the key is (tenant, scopes, children) and whether it holds `scope` (admin: all). */
export function can(me, scope) {
  return !!me && (me.scopes.includes("admin") || me.scopes.includes(scope));
}
