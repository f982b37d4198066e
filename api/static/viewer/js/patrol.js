// Patrols: live patroller positions (initial fixes from /analytics/patrollers/nearest, then
// "position" messages from /stream), daily shift tracks (patrol_tracks collection), and playback of
// one worker's track in a time window as CZML (/analytics/patrol/track?format=czml) on the timeline.

import { getJson } from "./api.js";
import { canOperate, canRead } from "./auth.js";
import { fmtNumber, fmtTime, t } from "./i18n.js";
import { collectionLayer, markerIcon } from "./features.js";
import { registerLayer } from "./layers.js";
import * as live from "./live.js";
import { onPick } from "./picking.js";
import { closeToolPane, h, kvTable, openPanel, openToolPane } from "./ui.js";

let viewer = null;
let positions = null; // CustomDataSource of live workers
let playback = null; // CzmlDataSource of the current playback
const workers = new Map(); // worker id → entity
let districtCenter = null; // [lon, lat]

function workerIcon(kind) {
  return markerIcon(kind === "vehicle" ? "#1f6feb" : "#ff7b00", { size: 22, glyph: kind === "vehicle" ? "车" : "人" });
}

// Live positions ask for one frame a moment after a burst, not one at once: a device's batch
// commits its positions and the alarms it raises together, and the position messages come first on
// /stream. Rendering at once started a frame (seconds long in software GL: a wall PC without a GPU,
// the browser tests) before the alarm that followed was read, so it reached the ticker a frame late.
const POSITION_FRAME_DELAY_MS = 250;
let frameTimer = null;

function frameSoon() {
  if (frameTimer !== null) return;
  frameTimer = setTimeout(() => { frameTimer = null; viewer.scene.requestRender(); }, POSITION_FRAME_DELAY_MS);
}

/** Create/move the live marker of a worker: {worker_id, name?, lon, lat, t?, kind?}; `soon`: ask for
 * the frame a moment later (frameSoon). */
export function upsertWorker(fix, { soon = false } = {}) {
  const id = fix.worker_id ?? fix.id;
  if (!id || fix.lon === undefined) return null;
  const position = Cesium.Cartesian3.fromDegrees(Number(fix.lon), Number(fix.lat));
  let e = workers.get(id);
  if (!e) {
    e = positions.entities.add({
      id: `worker:${id}`,
      position,
      billboard: {
        image: workerIcon(fix.kind), width: 22, height: 22,
        heightReference: Cesium.HeightReference.CLAMP_TO_GROUND,
        verticalOrigin: Cesium.VerticalOrigin.BOTTOM,
        disableDepthTestDistance: Number.POSITIVE_INFINITY,
      },
      label: {
        text: fix.name ?? id, font: "600 13px sans-serif", pixelOffset: new Cesium.Cartesian2(0, -28),
        fillColor: Cesium.Color.WHITE, outlineColor: Cesium.Color.BLACK, outlineWidth: 3,
        style: Cesium.LabelStyle.FILL_AND_OUTLINE, heightReference: Cesium.HeightReference.CLAMP_TO_GROUND,
        disableDepthTestDistance: Number.POSITIVE_INFINITY,
        distanceDisplayCondition: new Cesium.DistanceDisplayCondition(0, 2500),
      },
    });
    workers.set(id, e);
  } else {
    e.position = position;
    if (fix.name) e.label.text = fix.name;
  }
  if (soon) frameSoon();
  else viewer.scene.requestRender();
  const prev = e.onemap?.properties ?? {};
  e.onemap = { kind: "worker", id, properties: { ...prev, ...fix, worker_id: id } };
  return e;
}

async function loadPositions() {
  if (!canRead() || !districtCenter) return;
  const rows = await getJson("/analytics/patrollers/nearest", { lon: districtCenter[0], lat: districtCenter[1], n: 500 });
  for (const r of rows || []) upsertWorker(r);
}

export function flyToWorker(row) {
  const e = workers.get(row.worker_id) ?? upsertWorker(row);
  if (!e) return;
  viewer.flyTo(e, { offset: new Cesium.HeadingPitchRange(0, Cesium.Math.toRadians(-45), 300), duration: 1.2 });
}

function showWorkerPanel(info) {
  openPanel("worker", info.id, () => [h("h2", {}, `${info.properties.name ?? ""} ${info.id}`),
    kvTable(info.properties, { skip: ["worker_id"] })]);
}

// ------------------------------------------------------------------------------------ playback
function isoDay(d) {
  return new Date(d.getTime() + 8 * 3600e3).toISOString().slice(0, 10);
}

async function fillWorkers(select, day, mileageOut) {
  select.replaceChildren(h("option", { value: "" }, t("ui.loading")));
  try {
    const rows = await getJson("/analytics/patrol/mileage", { day });
    const names = new Map([...workers.values()].map((e) => [e.onemap.id, e.onemap.properties.name]));
    select.replaceChildren(...(rows || []).map((r) => h("option", { value: r.worker_id, dataset: { km: r.km } },
      `${names.get(r.worker_id) ?? r.worker_id} · ${t("ui.km", { v: fmtNumber(r.km, 1) })}`)));
    if (!rows?.length) select.replaceChildren(h("option", { value: "" }, t("patrol.noTrack")));
    mileageOut.textContent = "";
  } catch (err) {
    select.replaceChildren(h("option", { value: "" }, t("ui.error", { msg: err.message })));
  }
}

/** Load the CZML of `workerId` between `start` and `end` (Date) and animate it on the timeline. */
export async function playTrack(workerId, start, end) {
  const czml = await getJson("/analytics/patrol/track", {
    worker_id: workerId, start: start.toISOString(), end: end.toISOString(), format: "czml",
  });
  if (playback) viewer.dataSources.remove(playback, true);
  playback = await Cesium.CzmlDataSource.load(czml);
  await viewer.dataSources.add(playback);
  const startJ = Cesium.JulianDate.fromDate(start);
  const stopJ = Cesium.JulianDate.fromDate(end);
  const clock = viewer.clock;
  const docClock = playback.clock;
  clock.startTime = docClock?.startTime ?? startJ;
  clock.stopTime = docClock?.stopTime ?? stopJ;
  clock.currentTime = Cesium.JulianDate.clone(clock.startTime);
  clock.clockRange = Cesium.ClockRange.LOOP_STOP;
  clock.multiplier = docClock?.multiplier ?? 60;
  clock.shouldAnimate = true;
  document.body.dataset.playback = "on"; // shows the animation + timeline widgets (CSS)
  viewer.timeline?.resize();
  viewer.timeline?.zoomTo(clock.startTime, clock.stopTime);
  const moving = playback.entities.values.find((e) => e.position && e.path) ?? playback.entities.values.find((e) => e.position);
  if (moving) viewer.trackedEntity = moving;
  else await viewer.flyTo(playback, { duration: 1 });
  return playback;
}

function patrolPane() {
  const today = isoDay(new Date());
  const day = h("input", { type: "date", id: "patrol-day", value: today, max: today });
  const worker = h("select", { id: "patrol-worker" });
  const from = h("input", { type: "time", id: "patrol-start", value: "08:00" });
  const to = h("input", { type: "time", id: "patrol-end", value: "18:00" });
  const out = h("p", { class: "muted", role: "status", id: "patrol-status" });
  day.addEventListener("change", () => fillWorkers(worker, day.value, out));
  fillWorkers(worker, day.value, out);
  const play = async () => {
    if (!worker.value) return;
    const start = new Date(`${day.value}T${from.value}:00+08:00`);
    const end = new Date(`${day.value}T${to.value}:00+08:00`);
    out.textContent = t("ui.loading");
    try {
      await playTrack(worker.value, start, end);
      out.textContent = t("patrol.loaded", { name: worker.selectedOptions[0]?.textContent ?? worker.value });
    } catch (err) {
      out.textContent = err.status === 404 ? t("patrol.noTrack") : t("ui.error", { msg: err.message });
    }
  };
  return [
    h("h2", {}, t("patrol.title")),
    h("label", { for: "patrol-day" }, t("patrol.day")), day,
    h("label", { for: "patrol-worker" }, t("patrol.worker")), worker,
    h("div", { class: "row" },
      h("label", {}, t("patrol.start"), " ", from), h("label", {}, t("patrol.end"), " ", to)),
    h("button", { type: "button", class: "primary", onclick: play }, t("patrol.play")),
    out,
  ];
}

let paneOpen = false;
export function togglePatrolPane(on) {
  paneOpen = on ?? !paneOpen;
  if (paneOpen) openToolPane("patrol", patrolPane);
  else {
    closeToolPane("patrol");
    viewer.trackedEntity = undefined;
    if (document.body.dataset.mode !== "bigscreen") viewer.clock.shouldAnimate = false;
    delete document.body.dataset.playback;
    if (playback) { viewer.dataSources.remove(playback, true); playback = null; }
  }
  return paneOpen;
}

// ------------------------------------------------------------------------------------ init
export function initPatrol(v, { center } = {}) {
  viewer = v;
  districtCenter = center;
  positions = new Cesium.CustomDataSource("workers");
  viewer.dataSources.add(positions);
  registerLayer({
    id: "workers", group: "ops", label: "layers.workers", roles: ["admin", "operator", "planner", "viewer"],
    getShow: () => positions.show, setShow: (s) => { positions.show = s; },
  });
  const tracks = collectionLayer(viewer, {
    collection: "patrol_tracks", layerId: "patrol", label: "layers.patrol", show: false,
    roles: ["admin", "operator"], requires: canOperate, maxFeatures: 300,
    build: (ds, features) => {
      for (const f of features) {
        const lines = f.geometry?.type === "MultiLineString" ? f.geometry.coordinates
          : f.geometry?.type === "LineString" ? [f.geometry.coordinates] : [];
        lines.forEach((line, i) => {
          if (line.length < 2) return;
          const e = ds.entities.add({
            id: `track:${f.id ?? f.properties?.id}:${i}`,
            polyline: {
              positions: Cesium.Cartesian3.fromDegreesArray(line.flatMap(([lon, lat]) => [lon, lat])),
              clampToGround: true, width: 3,
              material: Cesium.Color.fromCssColorString("#ff7b00").withAlpha(0.8),
            },
          });
          e.onemap = { kind: "track", id: f.id ?? f.properties?.id, properties: f.properties || {} };
        });
      }
    },
  });
  onPick("worker", showWorkerPanel);
  onPick("track", (info) => openPanel("track", info.id, () => [h("h2", {}, `${t("layers.patrol")} ${info.id}`),
    kvTable(info.properties)]));
  live.on("position", (msg) => {
    // {type: "position", count, total, positions: [{worker_id, device_id, t, lon, lat, speed}]}
    const fixes = Array.isArray(msg) ? msg : Array.isArray(msg?.positions) ? msg.positions : [msg];
    for (const fix of fixes) {
      const e = upsertWorker(fix, { soon: true });
      if (e) e.onemap.properties.t_display = fmtTime(fix.t);
    }
  });
  const reload = () => loadPositions().catch((err) => console.warn("patroller positions:", err));
  document.addEventListener("onemap:auth", reload);
  reload();
  return { positions, tracks, workers, playTrack };
}
