// Events (cases): clustered markers, the event panel (details, lifecycle, nearest patrollers,
// cameras that see it), live updates from /stream, and the heatmap with time slider + category filter.

import { fetchItems, getJson, getOptional, request } from "./api.js";
import { canOperate, canRead } from "./auth.js";
import { fmtDuration, fmtNumber, fmtTime, t, tv } from "./i18n.js";
import { markerIcon, styleClusters } from "./features.js";
import { registerLayer, updateLayer } from "./layers.js";
import * as live from "./live.js";
import { onPick } from "./picking.js";
import { closeToolPane, h, kvTable, later, openPanel, openToolPane, section, toast } from "./ui.js";

/** Event categories: the codes of the database's event_category (migrations 0001 and 0009_civil). */
export const CATEGORIES = [
  "city_appearance", "street_order", "sanitation", "municipal_facilities",
  "greening", "illegal_construction", "safety_hazard", "dispute",
  "burglary", "theft", "family_conflict",
];
export const PRIORITY_COLORS = { A: "#d7263d", B: "#f46036", C: "#e2b714", D: "#2e86de" };
const CLOSED = new Set(["closed", "rejected"]);

let viewer = null;
let dataSource = null;
let loaded = false;
const byId = new Map(); // event id → entity
let openCamera = () => {};
let flyToWorker = () => {};

function eventIcon(props) {
  const color = CLOSED.has(props.status) ? "#7f8c8d" : (PRIORITY_COLORS[props.priority] || "#2e86de");
  return markerIcon(color, { size: 24, glyph: props.priority || "" });
}

function lonLatOf(feature) {
  const g = feature.geometry;
  if (g?.type === "Point") return g.coordinates;
  const p = feature.properties || {};
  if (p.lon !== undefined && p.lat !== undefined) return [Number(p.lon), Number(p.lat)];
  return null;
}

/** Add or update one event marker from a GeoJSON feature (or a live message shaped like one). */
export function upsertEvent(feature) {
  const props = { ...(feature.properties || {}) };
  const id = feature.id ?? props.id;
  const lonlat = lonLatOf(feature);
  if (!id || !lonlat) return null;
  props.id = id;
  let entity = byId.get(id);
  if (!entity) {
    entity = dataSource.entities.add({
      id: `event:${id}`,
      position: Cesium.Cartesian3.fromDegrees(lonlat[0], lonlat[1]),
      billboard: {
        image: eventIcon(props), width: 24, height: 24,
        heightReference: Cesium.HeightReference.CLAMP_TO_GROUND,
        verticalOrigin: Cesium.VerticalOrigin.BOTTOM,
        disableDepthTestDistance: Number.POSITIVE_INFINITY,
      },
    });
    byId.set(id, entity);
  } else {
    entity.billboard.image = eventIcon(props);
  }
  entity.onemap = { kind: "event", id, properties: props, lonlat };
  viewer.scene.requestRender();
  return entity;
}

async function loadEvents() {
  if (!canRead()) {
    dataSource.entities.removeAll();
    byId.clear();
    return;
  }
  const end = new Date();
  const start = new Date(end.getTime() - 30 * 86400e3);
  const fc = await fetchItems("events", { datetime: `${start.toISOString()}/..` }, { maxFeatures: 3000 });
  dataSource.entities.suspendEvents();
  dataSource.entities.removeAll();
  byId.clear();
  for (const f of fc.features) upsertEvent(f);
  dataSource.entities.resumeEvents();
  loaded = true;
}

// ------------------------------------------------------------------------------------ panel
function historyList(rows) {
  const items = Array.isArray(rows) ? rows : rows?.history ?? rows?.items ?? [];
  if (!items.length) return h("p", { class: "muted" }, t("ui.noData"));
  return h("ol", { class: "timeline" }, items.map((r) => h("li", {},
    h("time", {}, fmtTime(r.at ?? r.t ?? r.time)), " ",
    h("strong", {}, r.from_status
      ? t("event.fromTo", { from: tv("event.status", r.from_status), to: tv("event.status", r.to_status ?? r.status) })
      : tv("event.status", r.to_status ?? r.status)),
    r.actor ? h("span", { class: "muted" }, ` · ${r.actor}`) : null,
    r.note ? h("div", { class: "small" }, r.note) : null)));
}

function nearestList(rows) {
  if (!rows?.length) return h("p", { class: "muted" }, t("event.noWorkers"));
  return h("table", { class: "rows" },
    h("thead", {}, h("tr", {}, h("th", {}, t("patrol.worker")), h("th", {}, t("event.distance")), h("th", {}, t("event.age")))),
    h("tbody", {}, rows.map((r) => h("tr", {},
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => flyToWorker(r) }, r.name || r.worker_id)),
      h("td", {}, t("ui.meters", { v: fmtNumber(r.distance_m, 0) })),
      h("td", {}, t("event.ago", { v: fmtDuration(r.fix_age_s) }))))));
}

function camerasList(rows) {
  if (!rows?.length) return h("p", { class: "muted" }, t("event.noCameras"));
  return h("ul", { class: "plain" }, rows.map((r) => h("li", {},
    h("button", { type: "button", class: "link", onclick: () => openCamera(r.camera_id, r) }, `${r.name || r.camera_id}`),
    h("span", { class: "muted" }, ` · ${t("ui.meters", { v: fmtNumber(r.distance_m, 0) })}`))));
}

// ------------------------------------------------------------------------------------ dispatch
let routeSource = null; // the dispatched worker's road route

function showRoute(route) {
  if (!routeSource) {
    routeSource = new Cesium.CustomDataSource("dispatch-route");
    viewer.dataSources.add(routeSource);
  }
  routeSource.entities.removeAll();
  const coords = route?.coordinates ?? [];
  if (coords.length < 2) return;
  routeSource.entities.add({
    id: "dispatch-route",
    polyline: {
      positions: Cesium.Cartesian3.fromDegreesArray(coords.flatMap(([lon, lat]) => [lon, lat])),
      clampToGround: true, width: 5, material: Cesium.Color.fromCssColorString("#2ea043"),
    },
  });
  viewer.scene.requestRender();
}

/** POST /events/{id}/dispatch (a chosen worker, or the suggested one when workerId is null). */
async function dispatchTo(id, workerId, box) {
  box.dataset.state = "sending";
  try {
    const out = await request(`/events/${encodeURIComponent(id)}/dispatch`, {
      method: "POST", body: workerId ? { worker_id: workerId } : {},
    });
    box.dataset.state = "dispatched";
    box.dataset.dispatched = out.worker_id;
    box.replaceChildren(h("p", { class: "badge ok" }, t("event.dispatchedTo", { worker: out.worker_id })),
      out.eta_s != null ? h("p", { class: "muted" }, t("event.etaText", { eta: fmtDuration(out.eta_s), m: fmtNumber(out.network_m, 0) })) : null);
    showRoute(out.route);
    const entity = byId.get(id);
    if (entity) onLiveStatus({ id, to: "dispatched", worker_id: out.worker_id });
  } catch (err) {
    box.dataset.state = "error";
    box.append(h("p", { class: "error", role: "alert" }, t("ui.error", { msg: err.message })));
  }
}

function dispatchSection(id, lonlat) {
  const box = h("div", { class: "dispatch", dataset: { state: "loading", eventId: id } });
  const suggestions = getJson(`/events/${encodeURIComponent(id)}/dispatch/suggestions`, { n: 5 })
    .then((r) => r?.suggestions ?? []);
  const fallback = getJson("/analytics/patrollers/nearest", { lon: lonlat[0], lat: lonlat[1], n: 5, by: "straight" });
  Promise.all([suggestions, fallback.catch(() => [])]).then(([sug, near]) => {
    const suggested = sug.length > 0;
    const rows = suggested ? sug : near;
    box.dataset.state = "ready";
    box.dataset.source = suggested ? "suggestions" : "nearest";
    const row = (r) => h("tr", { dataset: { worker: r.worker_id } },
      h("td", {}, r.name || r.worker_id),
      h("td", {}, r.eta_s != null ? fmtDuration(r.eta_s) : t("ui.meters", { v: fmtNumber(r.distance_m, 0) })),
      h("td", {}, h("button", { type: "button", class: "primary", dataset: { worker: r.worker_id },
        onclick: () => dispatchTo(id, r.worker_id, box) }, t("event.dispatch"))));
    box.replaceChildren(
      h("p", { class: "muted" }, t(suggested ? "event.bySuggestion" : "event.noneAvailable")),
      rows.length ? h("table", { class: "rows" }, h("tbody", {}, rows.map(row))) : h("p", { class: "muted" }, t("event.noWorkers")),
      suggested ? h("button", { type: "button", class: "dispatch-suggested", onclick: () => dispatchTo(id, null, box) },
        t("event.dispatchSuggested")) : null);
  }).catch((err) => {
    box.dataset.state = "error";
    box.replaceChildren(h("p", { class: "muted" }, err.status === 409 ? t("event.notDispatchable") : t("ui.error", { msg: err.message })));
  });
  return box;
}

/** Open the event panel for `info` = {id, properties, lonlat}. */
export function showEventPanel(info) {
  const { id, lonlat } = info;
  const detail = getOptional(`/collections/events/items/${encodeURIComponent(id)}`, { f: "json" })
    .then((f) => f?.properties ?? info.properties);
  const history = getJson(`/events/${encodeURIComponent(id)}/history`);
  const nearest = getJson("/analytics/patrollers/nearest", { lon: lonlat[0], lat: lonlat[1], n: 5 });
  const cameras = getJson("/analytics/cameras/visible", { lon: lonlat[0], lat: lonlat[1], h: 1.5 });
  openPanel("event", id, () => [
    h("h2", {}, t("event.title", { id })),
    later(detail, (p) => {
      const overdue = p?.deadline_at && !CLOSED.has(p.status) && new Date(p.deadline_at) < new Date();
      return [overdue ? h("p", { class: "badge danger" }, t("event.overdue")) : null,
        kvTable(p, { skip: ["id", "geom", "lon", "lat"] })];
    }),
    canOperate() && !CLOSED.has(info.properties?.status) ? section("event.dispatchTitle", dispatchSection(id, lonlat)) : null,
    section("event.history", later(history, historyList)),
    section("event.nearest", later(nearest, nearestList)),
    section("event.cameras", later(cameras, camerasList)),
  ]);
}

// ------------------------------------------------------------------------------------ live
let bulkTimer = null;
function onLiveEvent(data) {
  if (data?.bulk) { // many events in one statement: re-read instead of one message each
    clearTimeout(bulkTimer);
    bulkTimer = setTimeout(() => loadEvents().catch((err) => console.warn("events:", err)), 2000);
    return;
  }
  // {type: "event", id, category, priority, status, source, worker_id, grid_id, building_id, reported_at, deadline_at, lon, lat}
  const { type: _type, ...props } = data ?? {};
  const feature = data?.type === "Feature" ? data : { id: data?.id, properties: props, geometry: data?.geometry };
  if (!feature.geometry && data?.lon !== undefined) feature.geometry = { type: "Point", coordinates: [data.lon, data.lat] };
  if (!dataSource) return;
  const entity = upsertEvent(feature);
  if (entity) document.dispatchEvent(new CustomEvent("onemap:new-event", { detail: { entity, info: entity.onemap } }));
}

function onLiveStatus(data) {
  if (data?.bulk) { onLiveEvent(data); return; }
  const id = data?.id ?? data?.event_id;
  const entity = byId.get(id);
  if (!entity) return;
  // {type: "event_status", id, from, to, at, worker_id, actor}
  const props = { ...entity.onemap.properties, status: data.to ?? data.status ?? entity.onemap.properties.status };
  if (data.worker_id) props.worker_id = data.worker_id;
  entity.onemap.properties = props;
  entity.billboard.image = eventIcon(props);
  viewer.scene.requestRender();
}

// ------------------------------------------------------------------------------------ heatmap
const heat = { layer: null, days: 7, end: null, category: "", playing: null, requestSeq: 0 };

function isoDay(d) {
  return new Date(d.getTime() + 8 * 3600e3).toISOString().slice(0, 10); // China Standard Time day
}

/** Heat colours: transparent blue → cyan → yellow → red. */
function heatColor(v) {
  const stops = [[0, [0, 0, 255, 0]], [0.25, [0, 200, 255, 150]], [0.5, [80, 255, 80, 190]],
    [0.75, [255, 220, 0, 215]], [1, [230, 20, 20, 235]]];
  for (let i = 1; i < stops.length; i++) {
    if (v <= stops[i][0]) {
      const [a, ca] = stops[i - 1]; const [b, cb] = stops[i];
      const f = (v - a) / (b - a);
      return ca.map((x, k) => Math.round(x + (cb[k] - x) * f));
    }
  }
  return stops.at(-1)[1];
}

/** Kernel-density style canvas from density cells {geometry, properties.count}. */
function drawHeat(features) {
  const pts = [];
  let [w, s, e, n] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const f of features) {
    const count = Number(f.properties?.count ?? 0);
    if (!count) continue;
    const ring = f.geometry?.type === "Polygon" ? f.geometry.coordinates[0]
      : f.geometry?.type === "MultiPolygon" ? f.geometry.coordinates[0][0] : null;
    const c = f.geometry?.type === "Point" ? f.geometry.coordinates
      : ring ? ring.slice(0, -1).reduce((acc, p, _, arr) => [acc[0] + p[0] / arr.length, acc[1] + p[1] / arr.length], [0, 0]) : null;
    if (!c) continue;
    pts.push([c[0], c[1], count]);
    w = Math.min(w, c[0]); e = Math.max(e, c[0]); s = Math.min(s, c[1]); n = Math.max(n, c[1]);
  }
  if (!pts.length) return null;
  const pad = 0.004;
  w -= pad; e += pad; s -= pad; n += pad;
  const size = 512;
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = size;
  const g = canvas.getContext("2d");
  const max = Math.max(...pts.map((p) => p[2]));
  const radius = Math.max(10, size * 0.045);
  for (const [x, y, c] of pts) {
    const px = ((x - w) / (e - w)) * size;
    const py = ((n - y) / (n - s)) * size;
    const grad = g.createRadialGradient(px, py, 0, px, py, radius);
    grad.addColorStop(0, `rgba(0,0,0,${Math.min(1, 0.15 + 0.85 * (c / max))})`);
    grad.addColorStop(1, "rgba(0,0,0,0)");
    g.fillStyle = grad;
    g.fillRect(px - radius, py - radius, radius * 2, radius * 2);
  }
  const img = g.getImageData(0, 0, size, size);
  for (let i = 0; i < img.data.length; i += 4) {
    const [r, gg, b, a] = heatColor(img.data[i + 3] / 255);
    img.data[i] = r; img.data[i + 1] = gg; img.data[i + 2] = b; img.data[i + 3] = a;
  }
  g.putImageData(img, 0, 0);
  return { canvas, rectangle: Cesium.Rectangle.fromDegrees(w, s, e, n), total: pts.reduce((a, p) => a + p[2], 0) };
}

async function updateHeat() {
  const seq = ++heat.requestSeq;
  const end = heat.end ? new Date(`${heat.end}T23:59:59+08:00`) : new Date();
  const start = new Date(end.getTime() - heat.days * 86400e3);
  const status = document.getElementById("heat-status");
  try {
    const fc = await getJson("/analytics/events/density", {
      start: start.toISOString(), end: end.toISOString(), category: heat.category || undefined, cell: "square", size: 100,
    });
    if (seq !== heat.requestSeq) return;
    const drawn = drawHeat(fc.features || []);
    if (heat.layer) viewer.imageryLayers.remove(heat.layer, true);
    heat.layer = null;
    if (drawn) {
      const provider = await Cesium.SingleTileImageryProvider.fromUrl(drawn.canvas.toDataURL("image/png"), { rectangle: drawn.rectangle });
      if (seq !== heat.requestSeq) return;
      heat.layer = viewer.imageryLayers.addImageryProvider(provider);
      heat.layer.alpha = 0.85;
    }
    if (status) {
      status.textContent = t("heat.events", { n: fmtNumber(drawn?.total ?? 0) });
      Object.assign(status.dataset, { total: String(drawn?.total ?? 0), category: heat.category, days: String(heat.days),
        end: heat.end ?? "", start: start.toISOString(), until: end.toISOString() });
    }
  } catch (err) {
    if (status) status.textContent = t("ui.error", { msg: err.message });
  }
}

function heatPane() {
  const today = isoDay(new Date());
  heat.end ??= today;
  const slider = h("input", {
    type: "range", id: "heat-days", min: 1, max: 90, value: heat.days, "aria-describedby": "heat-days-out",
    oninput: (ev) => { heat.days = Number(ev.target.value); out.textContent = t("heat.days", { n: heat.days }); schedule(); },
  });
  const out = h("output", { id: "heat-days-out" }, t("heat.days", { n: heat.days }));
  const endInput = h("input", { type: "date", id: "heat-end", value: heat.end, max: today,
    onchange: (ev) => { heat.end = ev.target.value || today; schedule(); } });
  const category = h("select", { id: "heat-category", onchange: (ev) => { heat.category = ev.target.value; schedule(); } },
    h("option", { value: "" }, t("ui.all")),
    CATEGORIES.map((c) => h("option", { value: c, selected: c === heat.category }, tv("event.category", c))));
  const play = h("button", { type: "button", "aria-pressed": String(Boolean(heat.playing)), onclick: () => togglePlay(play, endInput) }, "▶");
  return [
    h("h2", {}, t("heat.title")),
    h("label", { for: "heat-days" }, t("heat.window")), h("div", { class: "row" }, slider, out),
    h("label", { for: "heat-end" }, t("heat.endDay")), h("div", { class: "row" }, endInput, play),
    h("label", { for: "heat-category" }, t("heat.category")), category,
    h("p", { id: "heat-status", class: "muted", role: "status" }),
  ];
}

let heatTimer = null;
function schedule() {
  clearTimeout(heatTimer);
  heatTimer = setTimeout(updateHeat, 350);
}

function togglePlay(button, endInput) {
  if (heat.playing) {
    clearInterval(heat.playing);
    heat.playing = null;
    button.setAttribute("aria-pressed", "false");
    return;
  }
  const today = isoDay(new Date());
  let day = new Date(Date.now() - 60 * 86400e3);
  button.setAttribute("aria-pressed", "true");
  heat.playing = setInterval(() => {
    day = new Date(day.getTime() + 86400e3);
    heat.end = isoDay(day);
    endInput.value = heat.end;
    updateHeat();
    if (heat.end >= today) togglePlay(button, endInput);
  }, 1500);
}

export function toggleHeatmap(on) {
  const show = on ?? !heat.visible;
  heat.visible = show;
  if (show) {
    openToolPane("heatmap", heatPane);
    updateHeat();
  } else {
    closeToolPane("heatmap");
    if (heat.playing) { clearInterval(heat.playing); heat.playing = null; }
    if (heat.layer) viewer.imageryLayers.remove(heat.layer, true);
    heat.layer = null;
  }
  return show;
}

// ------------------------------------------------------------------------------------ init
export function initEvents(v, { openCameraPanel, flyToWorkerFn } = {}) {
  viewer = v;
  if (openCameraPanel) openCamera = openCameraPanel;
  if (flyToWorkerFn) flyToWorker = flyToWorkerFn;
  dataSource = new Cesium.CustomDataSource("events");
  styleClusters(dataSource, "#d7263d");
  viewer.dataSources.add(dataSource);
  const reload = () => loadEvents().then(
    () => updateLayer("events", { available: true, error: undefined }),
    (err) => { console.warn("events:", err); updateLayer("events", { error: err.message }); toast(t("ui.error", { msg: err.message })); },
  );
  registerLayer({
    id: "events", group: "ops", label: "layers.events", roles: ["admin", "operator", "planner", "viewer"],
    getShow: () => dataSource.show,
    setShow: (show) => { dataSource.show = show; if (show && !loaded) reload(); },
  });
  onPick("event", showEventPanel);
  live.on("event", onLiveEvent);
  live.on("event_status", onLiveStatus);
  document.addEventListener("onemap:auth", reload);
  reload();
  const openEvent = (id) => { const e = byId.get(id); if (e) showEventPanel(e.onemap); return Boolean(e); };
  return { dataSource, byId, upsertEvent, reload, openEvent };
}
