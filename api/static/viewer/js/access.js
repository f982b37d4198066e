// Facilities and walking access (issue 16): the facilities layer (an icon per kind, a toggle in the
// layer tree), and the "access" tool for planners and up: per-community shares within 5/10/15 min
// (suppressed counts shown as "—"), isochrones as road edges coloured by band
// (/analytics/access/isochrones), buildings coloured by walking time (/analytics/access) and ranked
// candidate sites (/analytics/access/sites) as numbered markers.

import { getJson } from "./api.js";
import { hasRole } from "./auth.js";
import { fmtNumber, t } from "./i18n.js";
import { collectionLayer, markerIcon } from "./features.js";
import { buildingStyle, registerLayer } from "./layers.js";
import { closeToolPane, h, later, openToolPane } from "./ui.js";

/** kind → [colour, glyph] of its icon */
export const KIND_ICONS = {
  service_station: ["#d7263d", "站"],
  service_terminal: ["#f46036", "终"],
  elderly_care: ["#8e44ad", "老"],
  clinic: ["#1b998b", "医"],
  school: ["#2e86de", "学"],
  police: ["#1d3557", "警"],
  convenience_store: ["#e1a100", "店"],
};
/** walking-time bands (minutes) → colour, for roads and buildings; beyond 15 / unreachable: grey */
export const BANDS = [[5, "#1a9850"], [10, "#fee08b"], [15, "#f46d43"]];
const FAR = "#9e9e9e";
const ACCESS_ROLES = ["admin", "operator", "planner"];

const state = { open: false, kind: "service_station", speed: 1.2, minutes: 15, answer: null, table: null, sites: null };
let viewer = null;
let getBuildings = () => null;
let edges = null; // CustomDataSource of isochrone edges
let siteMarks = null; // CustomDataSource of candidate sites

export function bandColor(minutes) {
  if (minutes === null || minutes === undefined) return FAR;
  for (const [limit, color] of BANDS) if (minutes <= limit) return color;
  return FAR;
}

/** A Cesium3DTileStyle colouring building features by walking minutes (id → minutes map). */
export function accessStyle(minutesById) {
  const style = new Cesium.Cesium3DTileStyle();
  const cache = new Map();
  style.color = {
    evaluateColor(feature, result) {
      const color = bandColor(minutesById.get(feature.getProperty("id")));
      if (!cache.has(color)) cache.set(color, Cesium.Color.fromCssColorString(color));
      return Cesium.Color.clone(cache.get(color), result);
    },
  };
  return style;
}

function kindSelect() {
  return h("select", { id: "access-kind", onchange: (ev) => { state.kind = ev.target.value; refresh(); } },
    Object.keys(KIND_ICONS).map((k) => h("option", { value: k, selected: state.kind === k }, t(`access.kinds.${k}`))));
}

function speedSelect() {
  return h("select", { id: "access-speed", onchange: (ev) => { state.speed = Number(ev.target.value); refresh(); } },
    h("option", { value: "1.2", selected: state.speed === 1.2 }, t("access.speedDefault")),
    h("option", { value: "0.8", selected: state.speed === 0.8 }, t("access.speedElderly")));
}

function minutesSelect() {
  return h("select", { id: "access-minutes", onchange: (ev) => { state.minutes = Number(ev.target.value); refresh(); } },
    [5, 10, 15].map((m) => h("option", { value: String(m), selected: state.minutes === m }, t("ui.minutes", { v: m }))));
}

function pct(share) {
  return share === null || share === undefined ? "—" : `${fmtNumber(share * 100, 0)}%`;
}

function communityTable(answer) {
  const rows = answer.communities.filter((r) => r.grp === "total" || r.grp === "age_80_plus");
  const head = h("tr", {}, h("th", {}, t("access.community")), h("th", {}, t("access.group")),
    h("th", {}, "≤5"), h("th", {}, "≤10"), h("th", {}, "≤15"));
  return h("table", { class: "kv access-table", id: "access-communities" }, h("thead", {}, head), h("tbody", {},
    rows.map((r) => h("tr", { dataset: { community: r.community_id, grp: r.grp } },
      h("td", {}, r.name ?? r.community_id), h("td", {}, t(`access.groups.${r.grp}`)),
      h("td", {}, pct(r.share_5)), h("td", {}, pct(r.share_10)), h("td", {}, pct(r.share_15))))));
}

function sitesList(sites) {
  if (!sites.length) return h("p", { class: "muted" }, t("ui.noData"));
  return h("ol", { id: "access-sites" }, sites.map((s) => h("li", { dataset: { vertex: s.vertex_id } },
    t("access.siteLine", { n: fmtNumber(s.residents_added), b: fmtNumber(s.buildings_added) }))));
}

function legend() {
  return h("ul", { class: "legend" }, [...BANDS.map(([m, c]) => [c, t("access.within", { m })]), [FAR, t("access.beyond")]]
    .map(([color, label]) => h("li", {}, h("span", { class: "swatch", dataset: { color } }), label)));
}

function pane() {
  const list = state.answer || Promise.resolve(null);
  const table = state.table || Promise.resolve(null);
  const legendEl = legend();
  for (const s of legendEl.querySelectorAll(".swatch")) s.style.background = s.dataset.color;
  return [
    h("h2", {}, t("access.title")),
    h("label", { for: "access-kind" }, t("access.kind")), kindSelect(),
    h("label", { for: "access-speed" }, t("access.speed")), speedSelect(),
    h("label", { for: "access-minutes" }, t("access.minutes")), minutesSelect(),
    legendEl,
    later(list, (a) => (a ? h("p", { id: "access-uncovered" },
      t("access.uncovered", { n: fmtNumber(a.uncovered.length), m: a.minutes })) : [])),
    later(table, (a) => (a ? communityTable(a) : [])),
    h("h3", {}, t("access.sites")),
    later(state.sites || Promise.resolve([]), sitesList),
  ];
}

function drawEdges(fc) {
  edges.entities.removeAll();
  for (const f of fc.features) {
    const coords = f.geometry?.coordinates;
    if (!coords || coords.length < 2) continue;
    const e = edges.entities.add({
      polyline: {
        positions: Cesium.Cartesian3.fromDegreesArray(coords.flat()),
        width: 4, clampToGround: true,
        material: Cesium.Color.fromCssColorString(bandColor(f.properties.minutes)).withAlpha(0.9),
      },
    });
    e.onemap = { kind: "isochrone", id: f.id, properties: f.properties };
  }
  viewer.scene.requestRender();
}

function drawSites(sites) {
  siteMarks.entities.removeAll();
  for (const s of sites) {
    const e = siteMarks.entities.add({
      position: Cesium.Cartesian3.fromDegrees(s.lon, s.lat),
      billboard: {
        image: markerIcon("#000000", { size: 24, glyph: String(s.rank) }), width: 24, height: 24,
        heightReference: Cesium.HeightReference.CLAMP_TO_GROUND, disableDepthTestDistance: Number.POSITIVE_INFINITY,
      },
    });
    e.onemap = { kind: "access_site", id: `site:${s.rank}`, properties: s };
  }
  viewer.scene.requestRender();
}

/** Colour the buildings tileset by walking minutes (id → minutes); the style carries what it shows. */
function colourBuildings(answer) {
  const byId = new Map(answer.buildings.map((b) => [b.building_id, b.walk_min]));
  const buildings = getBuildings();
  if (!buildings) return 0;
  const style = accessStyle(byId);
  style.onemap = { access: true, kind: answer.kind, speed: answer.speed, minutes: answer.minutes, buildings: byId.size };
  buildings.style = style;
  viewer.scene.requestRender();
  return byId.size;
}

/** Load the access figures for the current kind/speed/minutes and redraw everything. */
export function refresh() {
  const q = { kind: state.kind, speed: state.speed, minutes: state.minutes };
  const key = `${state.kind}:${state.speed}:${state.minutes}`;
  // building times first (fast); the suppressed community figures cost more and come separately
  state.answer = getJson("/analytics/access", { ...q, communities: false });
  state.table = getJson("/analytics/access", q);
  state.sites = getJson("/analytics/access/sites", { ...q, n: 5 });
  const iso = getJson("/analytics/access/isochrones", { kind: state.kind, speed: state.speed });
  // each part is drawn as soon as it arrives: the buildings do not wait for the sites or isochrones
  const coloured = state.answer.then((answer) => {
    if (!state.open) return answer;
    const n = colourBuildings(answer);
    document.body.dataset.accessBuildings = `${key}:${n}`;
    return answer;
  });
  const done = Promise.all([coloured, state.sites.then((sites) => {
    if (state.open) drawSites(sites);
    return sites;
  }), iso.then((fc) => {
    if (state.open) drawEdges(fc);
    return fc;
  })]).then(([answer, sites, fc]) => {
    document.body.dataset.access = key;
    return { answer, sites, fc };
  });
  done.catch((err) => {
    console.warn("access", err);
    document.body.dataset.access = `error:${err.status ?? ""}`;
  });
  if (state.open) openToolPane("access", pane);
  return done;
}

export function toggleAccess(on) {
  state.open = on ?? !state.open;
  edges.show = state.open;
  siteMarks.show = state.open;
  if (state.open) return refresh();
  closeToolPane("access");
  const buildings = getBuildings();
  const styleKind = document.body.dataset.buildingStyle || "use";
  if (buildings) buildings.style = buildingStyle(styleKind);
  delete document.body.dataset.access;
  delete document.body.dataset.accessBuildings;
  viewer.scene.requestRender();
  return Promise.resolve(null);
}

export function initAccess(v, { buildings } = {}) {
  viewer = v;
  getBuildings = buildings || (() => null);
  edges = new Cesium.CustomDataSource("access-isochrones");
  siteMarks = new Cesium.CustomDataSource("access-sites");
  edges.show = siteMarks.show = false;
  viewer.dataSources.add(edges);
  viewer.dataSources.add(siteMarks);
  registerLayer({
    id: "isochrones", group: "ops", label: "layers.isochrones", roles: ACCESS_ROLES,
    getShow: () => edges.show, setShow: (on) => { edges.show = on; viewer.scene.requestRender(); },
  });
  const facilities = collectionLayer(viewer, {
    collection: "facilities", layerId: "facilities", label: "layers.facilities", show: false,
    roles: ["admin", "operator", "planner", "viewer"],
    build: (ds, features) => {
      for (const f of features) {
        const [color, glyph] = KIND_ICONS[f.properties?.kind] ?? ["#555555", "?"];
        const coords = f.geometry?.coordinates;
        if (!coords) continue;
        const e = ds.entities.add({
          position: Cesium.Cartesian3.fromDegrees(coords[0], coords[1]),
          billboard: {
            image: markerIcon(color, { size: 22, glyph }), width: 22, height: 22,
            heightReference: Cesium.HeightReference.CLAMP_TO_GROUND, disableDepthTestDistance: Number.POSITIVE_INFINITY,
          },
        });
        e.onemap = { kind: "facility", id: f.id ?? f.properties?.id, properties: f.properties || {} };
      }
    },
  });
  document.addEventListener("onemap:lang", () => { if (state.open) openToolPane("access", pane); });
  document.addEventListener("onemap:auth", () => {
    if (state.open && !hasRole(...ACCESS_ROLES)) toggleAccess(false);
  });
  return { facilities, toggleAccess, refresh, state };
}
