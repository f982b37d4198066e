// Sign-in with a bearer token kept in localStorage["onemap.token"]; role-dependent UI.
// The role comes from GET /auth/me ({name, role, privileged}). Elements with
// data-roles="planner operator ..." are shown only to those roles ("anonymous" for nobody signed in).
// Other modules listen to the "onemap:auth" event to reload role-dependent data.

import { t } from "./i18n.js";

const STORAGE_KEY = "onemap.token";
const ANONYMOUS = Object.freeze({ name: null, role: "anonymous", privileged: false });
let user = ANONYMOUS;

export function getToken() {
  try { return localStorage.getItem(STORAGE_KEY) || null; } catch { return null; }
}

function storeToken(token) {
  try {
    if (token) localStorage.setItem(STORAGE_KEY, token);
    else localStorage.removeItem(STORAGE_KEY);
  } catch { /* storage disabled: token lives for this page only */ }
}

export function getUser() {
  return user;
}

/** True when the signed-in user has one of `roles` ("anonymous" matches nobody signed in). */
export function hasRole(...roles) {
  return roles.includes(user.role);
}

/** Operational layers (events, tracks, alarms) are for operators and admins. */
export const canOperate = () => hasRole("operator", "admin");
/** Reading aggregates and analytics: every signed-in reading role. */
export const canRead = () => hasRole("admin", "operator", "planner", "viewer");

async function fetchMe(token) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
  const res = await fetch("/auth/me", { headers });
  if (res.status === 401) return null;
  if (res.ok) {
    const me = await res.json();
    return { name: me.name ?? me.user ?? "?", role: me.role ?? "viewer", privileged: Boolean(me.privileged) };
  }
  if (res.status !== 404) throw new Error(`/auth/me → HTTP ${res.status}`);
  return inferRole(headers);
}

/**
 * Servers without /auth/me: infer the role from the collections the token may read
 * (patrol tracks: operator/admin; population: planner; events only: viewer).
 */
async function inferRole(headers) {
  const res = await fetch("/collections?f=json", { headers });
  if (res.status === 401) return null;
  if (!res.ok) throw new Error(`/collections → HTTP ${res.status}`);
  const ids = new Set(((await res.json()).collections || []).map((c) => c.id));
  const role = ids.has("patrol_tracks") ? "operator" : ids.has("population_by_grid") ? "planner"
    : ids.has("events") ? "viewer" : "device";
  return { name: "?", role, privileged: false };
}

function setUser(next) {
  user = next;
  document.body.dataset.role = user.role;
  applyRoleVisibility(document);
  renderBadge();
  document.dispatchEvent(new CustomEvent("onemap:auth", { detail: { user } }));
}

export function applyRoleVisibility(root = document) {
  for (const el of root.querySelectorAll("[data-roles]")) {
    el.hidden = !el.dataset.roles.split(/\s+/).includes(user.role);
  }
}

function renderBadge() {
  const badge = document.getElementById("user-badge");
  const signedIn = user.role !== "anonymous";
  if (badge) {
    badge.textContent = signedIn
      ? t("auth.signedInAs", { name: user.name, role: t(`auth.roles.${user.role}`) })
      : t("auth.anonymous");
  }
  const openBtn = document.getElementById("signin-open");
  const outBtn = document.getElementById("signout");
  if (openBtn) openBtn.hidden = signedIn;
  if (outBtn) outBtn.hidden = !signedIn;
}

/** Called by api.js on any 401: the stored token is no longer valid. */
export function onUnauthorized() {
  if (!getToken()) return;
  storeToken(null);
  setUser(ANONYMOUS);
}

/** Sign in with `token`; resolves to the user or throws with a translated message. */
export async function signIn(token) {
  const me = await fetchMe(token.trim());
  if (!me) throw new Error(t("auth.badToken"));
  storeToken(token.trim());
  setUser(me);
  return me;
}

export function signOut() {
  storeToken(null);
  setUser(ANONYMOUS);
}

/** Resolve the stored token (if any) and wire the sign-in dialog. */
export async function initAuth() {
  const dialog = document.getElementById("signin");
  const form = document.getElementById("signin-form");
  const input = document.getElementById("signin-token");
  const error = document.getElementById("signin-error");
  document.getElementById("signin-open")?.addEventListener("click", () => {
    error.textContent = "";
    input.value = "";
    dialog.showModal();
    input.focus();
  });
  document.getElementById("signin-cancel")?.addEventListener("click", () => dialog.close());
  document.getElementById("signout")?.addEventListener("click", signOut);
  form?.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      await signIn(input.value);
      dialog.close();
    } catch (err) {
      error.textContent = err.message;
    }
  });
  document.addEventListener("onemap:lang", renderBadge);

  const token = getToken();
  if (token) {
    try {
      const me = await fetchMe(token);
      if (me) { setUser(me); return user; }
      storeToken(null);
    } catch (err) {
      console.warn("could not resolve the stored token", err);
    }
  }
  setUser(ANONYMOUS);
  return user;
}
