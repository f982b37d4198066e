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

/** GET/POST JSON. Throws ApiError with the server's `detail` on non-2xx. */
export async function request(path, { method = "GET", params, body, signal, headers } = {}) {
  const init = { method, signal, headers: withAuth({ Accept: "application/json", ...headers }) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const res = await fetch(url(path, params), init);
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
