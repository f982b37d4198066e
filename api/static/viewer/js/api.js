// HTTP helpers for the onemap API (same origin only): bearer token, JSON errors, OGC API paging.

import { getToken, onUnauthorized } from "./auth.js";

export class ApiError extends Error {
  constructor(status, detail, body = null) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

function withAuth(headers = {}) {
  const token = getToken();
  return token ? { ...headers, Authorization: `Bearer ${token}` } : headers;
}

/** Build a same-origin URL from a path and a params object (undefined/null/"" values are left out). */
export function url(path, params = {}) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, String(v));
  }
  return u.pathname + u.search;
}

/**
 * The server runs at most `analytics_per_token` (default 2) /analytics requests of one token at a
 * time and answers 429 + Retry-After beyond that. A view that opens several panels at once (the
 * planners' access colouring, targets and camera gaps; the big screen's KPIs) must therefore queue
 * its own analytics calls instead of firing them together; and a 429 (another tab on the same
 * token, a busy server) is retried after the Retry-After the server names, a few times.
 */
const ANALYTICS_AT_ONCE = 2;
const RETRIES_ON_429 = 4;
let analyticsRunning = 0;
const analyticsWaiting = [];

async function analyticsTurn() {
  if (analyticsRunning < ANALYTICS_AT_ONCE) {
    analyticsRunning += 1;
    return;
  }
  await new Promise((resolve) => analyticsWaiting.push(resolve));
}

function analyticsDone() {
  const next = analyticsWaiting.shift();
  if (next) next();  // the slot passes straight to the next waiter
  else analyticsRunning -= 1;
}

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(t); reject(signal.reason); }, { once: true });
});

async function fetchWithLimits(target, init) {
  const analytics = target.startsWith("/analytics");
  for (let attempt = 0; ; attempt += 1) {
    if (analytics) await analyticsTurn();
    let res;
    try {
      res = await fetch(target, init);
    } finally {
      if (analytics) analyticsDone();
    }
    if (res.status !== 429 || attempt >= RETRIES_ON_429) return res;
    const wait = Number(res.headers.get("Retry-After"));
    await sleep(1000 * (Number.isFinite(wait) && wait > 0 ? Math.min(wait, 30) : 1 + attempt), init.signal);
  }
}

/** GET/POST JSON. Throws ApiError with the server's `detail` on non-2xx. */
export async function request(path, { method = "GET", params, body, signal, headers } = {}) {
  const init = { method, signal, headers: withAuth({ Accept: "application/json", ...headers }) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const res = await fetchWithLimits(url(path, params), init);
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!res.ok) {
    if (res.status === 401) onUnauthorized();
    const detail = data && typeof data === "object" ? data.detail : String(data || res.statusText);
    throw new ApiError(res.status, typeof detail === "string" ? detail : JSON.stringify(detail), data);
  }
  return data;
}

export const getJson = (path, params, opts = {}) => request(path, { ...opts, params });

/** GET that returns null instead of throwing for 401/403/404 (role- or data-dependent extras). */
export async function getOptional(path, params) {
  try {
    return await getJson(path, params);
  } catch (err) {
    if (err instanceof ApiError && [401, 403, 404].includes(err.status)) return null;
    throw err;
  }
}

/**
 * All features of an OGC API collection (follows `next` links up to `maxFeatures`).
 * Returns a GeoJSON FeatureCollection.
 */
export async function fetchItems(collection, params = {}, { maxFeatures = 5000, signal } = {}) {
  const features = [];
  let next = url(`/collections/${encodeURIComponent(collection)}/items`, { limit: 1000, ...params, f: "json" });
  let numberMatched;
  while (next && features.length < maxFeatures) {
    const page = await request(next, { signal, headers: { Accept: "application/geo+json, application/json" } });
    numberMatched ??= page.numberMatched;
    features.push(...(page.features || []));
    const link = (page.links || []).find((l) => l.rel === "next");
    next = link ? sameOriginPath(link.href) : null;
  }
  return { type: "FeatureCollection", features: features.slice(0, maxFeatures), numberMatched };
}

/** Links may be absolute (possibly naming another host for this API): only the path is followed. */
function sameOriginPath(href) {
  const u = new URL(href, location.origin);
  return u.pathname + u.search;
}
