// Management grid cells: outlines for everyone, a choropleth by a chosen metric for reading roles
// (events in the last 30 days, open / overdue events, population), a legend, and the cell panel.

import { fetchItems, getJson, getOptional } from "./api.js";
import { canRead } from "./auth.js";
import { fmtNumber, t } from "./i18n.js";
import { collectionLayer, polygonsToEntities } from "./features.js";
import { onPick, renderPopulation } from "./picking.js";
import { h, kvTable, later, openPanel, section } from "./ui.js";

// Sequential palette (ColorBrewer YlOrRd, 5 classes).
export const PALETTE = ["#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026"];
const METRICS = ["none", "events", "open", "overdue", "population"];

let viewer = null;
let layer = null;
let cells = []; // GeoJSON features of grid_cells
let metric = "none";
let values = new Map(); // grid id → number

/** Quantile class breaks (upper bounds) for `n` classes. */
export function quantileBreaks(numbers, n = PALETTE.length) {
  const v = numbers.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return [];
  const breaks = [];
  for (let i = 1; i <= n; i++) breaks.push(v[Math.min(v.length - 1, Math.ceil((i * v.length) / n) - 1)]);
  return [...new Set(breaks)];
}

function classOf(value, breaks) {
  const i = breaks.findIndex((b) => value <= b);
  return i < 0 ? breaks.length - 1 : i;
}

function pickNumber(props, keys) {
  for (const k of keys) if (props[k] !== undefined && props[k] !== null) return Number(props[k]);
  return undefined;
}

async function loadMetric(m) {
  if (m === "none" || !canRead()) return new Map();
  if (m === "events") {
    const end = new Date();
    const start = new Date(end.getTime() - 30 * 86400e3);
    const fc = await getJson("/analytics/events/density", { start: start.toISOString(), end: end.toISOString(), cell: "grid" });
    return new Map((fc.features || []).map((f) => [f.id ?? f.properties?.grid_id ?? f.properties?.id, Number(f.properties?.count ?? 0)]));
  }
  if (m === "open" || m === "overdue") {
    const rows = await getJson("/analytics/events/sla", { group: "grid" });
    return new Map((rows || []).map((r) => [r.key, Number(r[m] ?? 0)]));
  }
  const fc = await fetchItems("population_by_grid", {}, { maxFeatures: 2000 });
  return new Map(fc.features.map((f) => [f.properties?.grid_id ?? f.id,
    pickNumber(f.properties || {}, ["total", "population", "residents", "count"])]));
}

function render() {
  const ds = layer.dataSource;
  ds.entities.suspendEvents();
  ds.entities.removeAll();
  const breaks = quantileBreaks([...values.values()]);
  const colorOf = (f) => {
    const id = f.id ?? f.properties?.id;
    const v = values.get(id);
    if (metric === "none" || v === undefined || !breaks.length) return Cesium.Color.fromCssColorString("#4aa3ff").withAlpha(0.06);
    return Cesium.Color.fromCssColorString(PALETTE[classOf(v, breaks)]).withAlpha(0.55);
  };
  polygonsToEntities(ds, cells, "grid", {
    fill: colorOf, outline: Cesium.Color.fromCssColorString("#4aa3ff").withAlpha(0.9), width: 2,
  });
  ds.entities.resumeEvents();
  renderLegend(breaks);
}

function renderLegend(breaks) {
  const el = document.getElementById("grid-legend");
  if (!el) return;
  if (metric === "none" || !breaks.length) { el.replaceChildren(); return; }
  let lo = Math.min(...values.values());
  el.replaceChildren(h("ul", {}, breaks.map((b, i) => {
    const label = `${fmtNumber(lo)} – ${fmtNumber(b)}`;
    lo = b;
    return h("li", {}, h("span", { class: "swatch", style: `background:${PALETTE[i]}` }), label);
  })));
}

function controls() {
  const select = h("select", { id: "grid-metric", "aria-label": t("grid.metric"),
    onchange: async (ev) => { await setMetric(ev.target.value); } },
  METRICS.map((m) => h("option", { value: m, selected: m === metric }, m === "none" ? t("ui.none") : t(`grid.${m}`))));
  return h("div", { class: "grid-controls", dataset: { roles: "admin operator planner viewer" }, hidden: !canRead() },
    h("label", { for: "grid-metric" }, `${t("layers.grid")} · ${t("grid.metric")}`), select, h("div", { id: "grid-legend", class: "legend" }));
}

function mountControls() {
  const host = document.getElementById("grid-controls-host");
  if (host) host.replaceChildren(controls());
}

/** Colour the grid cells by `m` ("none" | "events" | "open" | "overdue" | "population"). */
export async function setMetric(m) {
  metric = METRICS.includes(m) ? m : "none";
  try {
    values = await loadMetric(metric);
  } catch (err) {
    console.warn("grid metric", err);
    values = new Map();
  }
  if (layer.dataSource.show) render();
  return values;
}

function showCellPanel(info) {
  const p = info.properties;
  const population = canRead() ? getOptional("/analytics/population", { level: "grid", id: info.id }) : null;
  openPanel("grid", info.id, () => [
    h("h2", {}, t("grid.cell", { id: info.id })),
    kvTable(p, { skip: ["id"] }),
    metric !== "none" ? h("p", {}, `${t(`grid.${metric}`)}: ${fmtNumber(values.get(info.id))}`) : null,
    population ? section("building.population", later(population, renderPopulation)) : null,
  ]);
}

export function initGrid(v) {
  viewer = v;
  const tree = document.getElementById("layer-tree");
  tree?.insertBefore(h("div", { id: "grid-controls-host" }), document.getElementById("legend"));
  layer = collectionLayer(viewer, {
    collection: "grid_cells", layerId: "grid", label: "layers.grid", show: false,
    build: (_ds, features) => { cells = features; render(); },
  });
  onPick("grid", showCellPanel);
  mountControls();
  document.addEventListener("onemap:lang", mountControls);
  document.addEventListener("onemap:auth", mountControls);
  return { layer, setMetric, cells: () => cells, viewer };
}
