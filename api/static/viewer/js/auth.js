// Sign-in: user name + password (POST /auth/login → a token kept in sessionStorage, ended by
// POST /auth/logout), or a pasted access token for devices and kiosks (kept in localStorage so a
// kiosk survives restarts). Role-dependent UI: the role comes from GET /auth/me ({name, role,
// privileged}). Elements with data-roles="planner operator ..." are shown only to those roles
// ("anonymous" for nobody signed in). Other modules listen to the "onemap:auth" event.

import { t } from "./i18n.js";

const SESSION_KEY = "onemap.session";  // sessionStorage: a login token (this tab only)
const STORAGE_KEY = "onemap.token";    // localStorage: a pasted device/kiosk token
const ANONYMOUS = Object.freeze({ name: null, role: "anonymous", privileged: false });
let user = ANONYMOUS;

export function getToken() {
  try {
    return sessionStorage.getItem(SESSION_KEY) || localStorage.getItem(STORAGE_KEY) || null;
  } catch { return null; }
}

/** Whether the current token came from a password login (then sign-out revokes it). */
function isSessionToken() {
  try { return Boolean(sessionStorage.getItem(SESSION_KEY)); } catch { return false; }
}

/** Keep `token` (kind "session": a login; "pasted": a device/kiosk token); null forgets both. */
function storeToken(token, kind = "pasted") {
  try {
    sessionStorage.removeItem(SESSION_KEY);
    localStorage.removeItem(STORAGE_KEY);
    if (token && kind === "session") sessionStorage.setItem(SESSION_KEY, token);
    else if (token) localStorage.setItem(STORAGE_KEY, token);
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

/** Sign in with a pasted `token`; resolves to the user or throws with a translated message. */
export async function signIn(token) {
  const me = await fetchMe(token.trim());
  if (!me) throw new Error(t("auth.badToken"));
  storeToken(token.trim(), "pasted");
  setUser(me);
  return me;
}

/** Log in with user name and password (POST /auth/login); resolves to the user. */
export async function logIn(username, password) {
  const res = await fetch("/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ username, password }),
  });
  if (res.status === 401) throw new Error(t("auth.badLogin"));
  if (res.status === 429) throw new Error(t("auth.throttled", { s: res.headers.get("Retry-After") || "60" }));
  if (!res.ok) throw new Error(`/auth/login → HTTP ${res.status}`);
  const { access_token: token } = await res.json();
  const me = await fetchMe(token);
  if (!me) throw new Error(t("auth.badToken"));
  storeToken(token, "session");
  setUser(me);
  return me;
}

export async function signOut() {
  const token = getToken();
  if (token && isSessionToken()) {
    // revoke the login token on the server; a pasted device/kiosk token is only forgotten here
    try {
      await fetch("/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
    } catch (err) { console.warn("logout request failed", err); }
  }
  storeToken(null);
  setUser(ANONYMOUS);
}

/** Resolve the stored token (if any) and wire the sign-in dialog. */
export async function initAuth() {
  const dialog = document.getElementById("signin");
  const form = document.getElementById("signin-form");
  const username = document.getElementById("signin-username");
  const password = document.getElementById("signin-password");
  const input = document.getElementById("signin-token");
  const error = document.getElementById("signin-error");
  const open = () => {
    error.textContent = "";
    for (const el of [username, password, input]) if (el) el.value = "";
    dialog.showModal();
    username?.focus();
  };
  document.getElementById("signin-open")?.addEventListener("click", open);
  document.getElementById("signin-cancel")?.addEventListener("click", () => dialog.close());
  document.getElementById("signout")?.addEventListener("click", () => { signOut(); });
  form?.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      if (input?.value.trim()) await signIn(input.value);
      else if (username?.value.trim() && password?.value) await logIn(username.value.trim(), password.value);
      else throw new Error(t("auth.needCredentials"));
      if (password) password.value = "";
      dialog.close();
    } catch (err) {
      error.textContent = err.message;
    }
  });
  document.addEventListener("onemap:lang", renderBadge);
  // the sign-in controls answer from here on (tests wait for it: the body says "anonymous" in the HTML)
  document.body.dataset.auth = "ready";

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
  // The big screen has no top bar: ask for an account at once (Cancel stays anonymous).
  if (document.body.classList.contains("bigscreen-mode") && dialog && !dialog.open) open();
  return user;
}
