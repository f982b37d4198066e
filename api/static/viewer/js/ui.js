// Small DOM helpers shared by the modules: element builder, the info panel, the tool pane, toasts.
// Text always goes in through textContent (never innerHTML), so API data cannot inject markup.

import { t, tv, fmtNumber, fmtTime } from "./i18n.js";

/** h("div", {class: "x", onclick: fn}, child, "text", [more]) → element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Format one attribute value for display (numbers localised, ISO times local, codes translated). */
export function fmtValue(key, value) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "number") return fmtNumber(value, Number.isInteger(value) ? 0 : 2);
  if (typeof value === "boolean") return value ? t("ui.yes") : t("ui.no");
  if (typeof value === "object") return JSON.stringify(value);
  if (key === "use") return tv("use", value);
  if (key === "category") return tv("event.category", value);
  if (key === "status") {
    if (value === "online") return t("camera.online");
    if (value === "offline") return t("camera.statusOffline");
    return t(`event.status.${value}`, {}, String(value));
  }
  if (key === "source") return tv("event.source", value);
  if (/_at$|^t$|^time$/.test(key) && /^\d{4}-\d\d-\d\dT/.test(value)) return fmtTime(value);
  return String(value);
}

/** A definition list of attributes; keys translated through attr.* (unknown keys shown as is). */
export function kvTable(obj, { skip = [], labelNs = "attr" } = {}) {
  const dl = h("dl", { class: "kv" });
  for (const [k, v] of Object.entries(obj || {})) {
    if (skip.includes(k)) continue;
    dl.append(h("dt", {}, t(`${labelNs}.${k}`, {}, k)), h("dd", { dataset: { key: k } }, fmtValue(k, v)));
  }
  return dl;
}

export function section(titleKey, ...content) {
  return h("section", { class: "panel-section" }, h("h3", {}, t(titleKey)), ...content);
}

export function loadingLine() {
  return h("p", { class: "muted" }, t("ui.loading"));
}

export function errorLine(err) {
  if (err && err.status === 401) return h("p", { class: "muted" }, t("ui.signInNeeded"));
  if (err && err.status === 403) return h("p", { class: "muted" }, t("ui.forbidden"));
  return h("p", { class: "error" }, t("ui.error", { msg: err?.message || String(err) }));
}

/** Fill a placeholder element when `promise` resolves (render(result) → nodes), or show the error. */
export function later(promise, render) {
  const slot = h("div", { class: "later" }, loadingLine());
  promise.then(
    (value) => slot.replaceChildren(...[render(value)].flat().filter(Boolean)),
    (err) => slot.replaceChildren(errorLine(err)),
  );
  return slot;
}

// ------------------------------------------------------------------------------------ info panel
const panel = () => document.getElementById("panel");
let panelRenderer = null;
let panelKind = null;

/**
 * Show the info panel. `render()` returns its content and is re-run when the language changes.
 * `kind`/`id` land on the panel as data attributes (tests and styling use them).
 */
export function openPanel(kind, id, render) {
  panelRenderer = render;
  panelKind = kind;
  const el = panel();
  el.dataset.kind = kind;
  el.dataset.id = id ?? "";
  document.getElementById("panel-body").replaceChildren(...[render()].flat().filter(Boolean));
  el.hidden = false;
  document.dispatchEvent(new CustomEvent("onemap:panel", { detail: { kind, id } }));
}

export function closePanel() {
  const el = panel();
  el.hidden = true;
  el.dataset.kind = "";
  el.dataset.id = "";
  panelRenderer = null;
  const kind = panelKind;
  panelKind = null;
  document.dispatchEvent(new CustomEvent("onemap:panel-closed", { detail: { kind } }));
}

export function panelShows(kind, id) {
  const el = panel();
  return !el.hidden && el.dataset.kind === kind && (id === undefined || el.dataset.id === String(id));
}

// ------------------------------------------------------------------------------------ tool pane
let toolRenderer = null;
let toolName = null;

export function openToolPane(name, render) {
  toolRenderer = render;
  toolName = name;
  const el = document.getElementById("tool-pane");
  el.dataset.tool = name;
  el.replaceChildren(...[render()].flat().filter(Boolean));
  el.hidden = false;
}

export function closeToolPane(name) {
  if (name && name !== toolName) return;
  const el = document.getElementById("tool-pane");
  el.hidden = true;
  el.replaceChildren();
  toolRenderer = null;
  toolName = null;
}

export const activeTool = () => toolName;

// ------------------------------------------------------------------------------------ toast
let toastTimer = null;
export function toast(message, ms = 4000) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, ms);
}

export function initUi() {
  document.getElementById("panel-close")?.addEventListener("click", closePanel);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !document.getElementById("panel").hidden) closePanel();
  });
  document.addEventListener("onemap:lang", () => {
    if (panelRenderer && !panel().hidden) {
      document.getElementById("panel-body").replaceChildren(...[panelRenderer()].flat().filter(Boolean));
    }
    if (toolRenderer) {
      document.getElementById("tool-pane").replaceChildren(...[toolRenderer()].flat().filter(Boolean));
    }
  });
}
