// Statistics per grid cell or community as charts, drawn as plain SVG (no chart library, no CDN):
// open/overdue events (/analytics/events/sla), open events by category, and population
// (population_by_grid / population_by_community, suppressed below 5 for non-privileged roles).

import { fetchItems, getJson } from "./api.js";
import { fmtNumber, t, tv } from "./i18n.js";
import { closeToolPane, h, later, openToolPane } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";
const state = { unit: "grid", open: false, cache: new Map() };

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/**
 * Horizontal bar chart. rows: [{label, values: [n, ...]}], series: [{name, color}].
 * Bars of several series are stacked. Returns an <svg> sized by its rows.
 */
export function barChart(rows, series, { title = "", width = 360, barHeight = 16, labelWidth = 96 } = {}) {
  const gap = 6;
  const top = title ? 28 : 8;
  const legendH = series.length > 1 ? 22 : 0;
  const height = top + legendH + rows.length * (barHeight + gap) + 8;
  const max = Math.max(1, ...rows.map((r) => r.values.reduce((a, b) => a + (Number(b) || 0), 0)));
  const plotW = width - labelWidth - 56;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "chart", "aria-label": title });
  if (title) root.append(svg("text", { x: 0, y: 18, class: "chart-title" }, title));
  if (legendH) {
    let x = labelWidth;
    for (const s of series) {
      root.append(svg("rect", { x, y: top, width: 10, height: 10, fill: s.color }),
        svg("text", { x: x + 14, y: top + 9, class: "chart-legend" }, s.name));
      x += 14 + s.name.length * 12 + 16;
    }
  }
  rows.forEach((r, i) => {
    const y = top + legendH + i * (barHeight + gap);
    root.append(svg("text", { x: labelWidth - 6, y: y + barHeight - 4, "text-anchor": "end", class: "chart-label" }, r.label));
    let x = labelWidth;
    let total = 0;
    r.values.forEach((v, k) => {
      const w = ((Number(v) || 0) / max) * plotW;
      if (w > 0) {
        root.append(svg("rect", { x, y, width: w, height: barHeight, fill: series[k].color, rx: 2 },
          svg("title", {}, `${r.label} · ${series[k].name}: ${fmtNumber(v)}`)));
      }
      x += w;
      total += Number(v) || 0;
    });
    root.append(svg("text", { x: x + 4, y: y + barHeight - 4, class: "chart-value" }, fmtNumber(total)));
  });
  return root;
}

async function slaRows(unit) {
  const key = `sla:${unit}`;
  if (!state.cache.has(key)) state.cache.set(key, getJson("/analytics/events/sla", { group: unit }));
  return state.cache.get(key);
}

async function populationRows(unit) {
  const key = `pop:${unit}`;
  if (!state.cache.has(key)) {
    const collection = unit === "grid" ? "population_by_grid" : "population_by_community";
    state.cache.set(key, fetchItems(collection, {}, { maxFeatures: 2000 }).then((fc) => fc.features.map((f) => f.properties || {})));
  }
  return state.cache.get(key);
}

function top(rows, n = 15) {
  return rows.sort((a, b) => b.values.reduce((x, y) => x + y, 0) - a.values.reduce((x, y) => x + y, 0)).slice(0, n);
}

function eventsChart(rows) {
  const data = top((rows || []).map((r) => ({ label: String(r.key ?? "—"), values: [Number(r.open ?? 0) - Number(r.overdue ?? 0), Number(r.overdue ?? 0)] })));
  if (!data.length) return h("p", { class: "muted" }, t("ui.noData"));
  return barChart(data, [{ name: t("stats.open"), color: "#4aa3ff" }, { name: t("stats.overdue"), color: "#e5534b" }],
    { title: `${t("stats.openOverdue")} · ${t("stats.top", { n: data.length })}` });
}

function categoryChart(rows) {
  // every category (a short, fixed list): a top-n cut hid some under a title that promises them all
  const data = (rows || []).map((r) => ({ label: tv("event.category", r.key), values: [Number(r.open ?? 0)] }));
  if (!data.length) return h("p", { class: "muted" }, t("ui.noData"));
  return barChart(top(data, data.length), [{ name: t("stats.open"), color: "#f0a500" }], { title: t("stats.eventsByCategory"), labelWidth: 110 });
}

function populationChart(unit, rows) {
  const idKey = unit === "grid" ? "grid_id" : "community_id";
  const data = top((rows || []).map((p) => ({
    label: String(p.name ?? p[idKey] ?? p.id ?? "—"),
    values: [Number(p.registered ?? 0), Number(p.floating ?? 0)],
  })).filter((r) => r.values.some((v) => v > 0)));
  if (!data.length) return h("p", { class: "muted" }, t("ui.noData"));
  return barChart(data, [{ name: t("population.registered"), color: "#2ea043" }, { name: t("population.floating"), color: "#a371f7" }],
    { title: `${t("stats.population")} · ${t("stats.top", { n: data.length })}` });
}

function pane() {
  const unit = h("select", { id: "stats-unit", onchange: (ev) => { state.unit = ev.target.value; openToolPane("stats", pane); } },
    h("option", { value: "grid", selected: state.unit === "grid" }, t("stats.byGrid")),
    h("option", { value: "community", selected: state.unit === "community" }, t("stats.byCommunity")));
  return [
    h("h2", {}, t("stats.title")),
    h("label", { for: "stats-unit" }, t("stats.by")), unit,
    h("div", { class: "charts" },
      later(slaRows(state.unit), eventsChart),
      later(slaRows("category"), categoryChart),
      later(populationRows(state.unit), (rows) => populationChart(state.unit, rows))),
  ];
}

export function toggleStats(on) {
  state.open = on ?? !state.open;
  if (state.open) {
    state.cache.clear();
    openToolPane("stats", pane);
  } else closeToolPane("stats");
  return state.open;
}

export function initStats() {
  document.addEventListener("onemap:auth", () => state.cache.clear());
  return { toggleStats, barChart };
}
