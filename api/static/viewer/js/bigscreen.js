// Big-screen mode (/?mode=bigscreen): KPIs, an alarm ticker, flashing new events and live
// patroller positions from /stream, and an automatic camera tour. Needs no clicks. Renders on
// demand (renderOnDemand below).

import { getJson, getOptional } from "./api.js";
import { fmtNumber, fmtTime, t, tv } from "./i18n.js";
import * as live from "./live.js";
import { h } from "./ui.js";

const KPI_REFRESH_MS = 30_000;
const FLASH_MS = 90_000;
// ?tour_s=N: seconds per tour stop (default 20)
const TOUR_STOP_MS = (Number(new URLSearchParams(location.search).get("tour_s")) || 20) * 1000;
const MAX_TICKER = 30;

let viewer = null;
let kpis = null;
let tickerItems = []; // {key, text, level, at}
let tour = null; // {timer, index, paused}
let flashes = null; // CustomDataSource
let district = null; // {center: [lon, lat], radius: m}

// ------------------------------------------------------------------------------------ KPIs
function kpiCard(key, value, sub, level = "") {
  return h("div", { class: `kpi ${level}`, role: "listitem", dataset: { kpi: key } },
    h("div", { class: "kpi-value" }, value),
    h("div", { class: "kpi-label" }, t(`big.${key}`)),
    sub ? h("div", { class: "kpi-sub" }, sub) : null);
}

function renderKpis() {
  const el = document.getElementById("kpis");
  if (!el) return;
  if (!kpis) { el.replaceChildren(h("p", { class: "muted" }, t("ui.loading"))); return; }
  const byStatus = kpis.events_today || {};
  const total = Object.values(byStatus).reduce((a, b) => a + (Number(b) || 0), 0);
  const breakdown = h("ul", { class: "kpi-breakdown" }, Object.entries(byStatus).map(([s, n]) =>
    h("li", { dataset: { status: s } }, `${tv("event.status", s)} ${fmtNumber(n)}`)));
  el.replaceChildren(
    kpiCard("eventsToday", fmtNumber(total), breakdown),
    kpiCard("overdue", fmtNumber(kpis.overdue ?? 0), null, (kpis.overdue ?? 0) > 0 ? "alert" : ""),
    kpiCard("patrollers", fmtNumber(kpis.patrollers_on_duty ?? 0)),
    kpiCard("cameras", `${fmtNumber(kpis.cameras_online ?? 0)} / ${fmtNumber(kpis.cameras_total ?? 0)}`),
  );
}

async function refreshKpis() {
  try {
    kpis = await getJson("/analytics/kpis");
    document.body.dataset.kpis = "loaded";
  } catch (err) {
    console.warn("kpis", err);
    document.body.dataset.kpis = `error:${err.status ?? ""}`;
  }
  renderKpis();
}

let kpiTimer = null;
function refreshKpisSoon() {
  clearTimeout(kpiTimer);
  kpiTimer = setTimeout(refreshKpis, 1500);
}

// ------------------------------------------------------------------------------------ ticker
function renderTicker() {
  const list = document.getElementById("ticker-list");
  if (!list) return;
  list.replaceChildren(...tickerItems.map((it) => h("li", { class: it.level, dataset: { key: it.key } },
    h("time", {}, fmtTime(it.at)), " ", it.text())));
  // Scroll speed follows the content length so long lists don't race past.
  list.style.animationDuration = `${Math.max(20, tickerItems.length * 6)}s`;
}

function pushTicker(item) {
  if (tickerItems.some((x) => x.key === item.key)) return;
  tickerItems.unshift(item);
  tickerItems = tickerItems.slice(0, MAX_TICKER);
  renderTicker();
}

function alarmText(a) {
  const worker = a.worker_name ?? a.name ?? a.worker_id ?? "";
  return () => t(`big.alarm.${a.kind}`, { worker }, `${a.kind ?? "alarm"} ${worker}`);
}

async function loadAlarms() {
  const since = new Date(Date.now() - 24 * 3600e3).toISOString();
  const rows = await getOptional("/analytics/alarms", { since });
  const list = Array.isArray(rows) ? rows : rows?.features?.map((f) => f.properties) ?? rows?.items ?? [];
  for (const a of list.slice(-MAX_TICKER)) {
    pushTicker({ key: `alarm:${a.id}`, level: "alarm", at: a.raised_at ?? a.t_start, text: alarmText(a) });
  }
}

// ------------------------------------------------------------------------------------ new events
let ring = null;
function ringImage() {
  if (ring) return ring;
  ring = document.createElement("canvas");
  ring.width = ring.height = 96;
  const g = ring.getContext("2d");
  g.lineWidth = 8;
  g.strokeStyle = "#ff2d2d";
  g.beginPath();
  g.arc(48, 48, 40, 0, 2 * Math.PI);
  g.stroke();
  return ring;
}

function flash(entityOrPosition, id) {
  const position = entityOrPosition.position?.getValue
    ? entityOrPosition.position.getValue(viewer.clock.currentTime)
    : entityOrPosition;
  if (!position) return;
  const t0 = performance.now();
  const pulse = () => ((performance.now() - t0) % 1200) / 1200;
  const e = flashes.entities.add({
    id: `flash:${id}:${t0}`,
    position,
    // A pulsing ring drawn as a billboard (cheap; a ground ellipse would be re-tessellated per frame).
    billboard: {
      image: ringImage(),
      scale: new Cesium.CallbackProperty(() => 0.4 + 1.6 * pulse(), false),
      color: new Cesium.CallbackProperty(() => Cesium.Color.WHITE.withAlpha(1 - pulse()), false),
      heightReference: Cesium.HeightReference.CLAMP_TO_GROUND,
      disableDepthTestDistance: Number.POSITIVE_INFINITY,
    },
    point: {
      pixelSize: new Cesium.CallbackProperty(() => 12 + 10 * Math.abs(Math.sin(pulse() * Math.PI)), false),
      color: Cesium.Color.RED, outlineColor: Cesium.Color.WHITE, outlineWidth: 2,
      heightReference: Cesium.HeightReference.CLAMP_TO_GROUND, disableDepthTestDistance: Number.POSITIVE_INFINITY,
    },
  });
  setTimeout(() => flashes.entities.remove(e), FLASH_MS);
}

function onNewEvent(ev) {
  const { entity, info } = ev.detail;
  const p = info.properties;
  flash(entity, info.id);
  pushTicker({
    key: `event:${info.id}`, level: p.priority === "A" ? "alarm" : "event", at: p.reported_at ?? new Date().toISOString(),
    text: () => t("big.alarm.event", { id: info.id, cat: tv("event.category", p.category), prio: p.priority ?? "—" }),
  });
  document.body.dataset.lastEvent = info.id;
  const flashed = (document.body.dataset.flashed || "").split(" ").filter(Boolean);
  document.body.dataset.flashed = [...flashed, info.id].slice(-20).join(" ");
  refreshKpisSoon();
  // Interrupt the tour: show the new event for one stop, then continue.
  if (tour) {
    clearTimeout(tour.timer);
    const pos = entity.position.getValue(viewer.clock.currentTime);
    viewer.camera.flyToBoundingSphere(new Cesium.BoundingSphere(pos, 30), {
      offset: new Cesium.HeadingPitchRange(viewer.camera.heading, Cesium.Math.toRadians(-40), 600), duration: 3,
    });
    tour.timer = setTimeout(nextStop, TOUR_STOP_MS);
  }
}

// ------------------------------------------------------------------------------------ tour
function stops() {
  const [lon, lat] = district.center;
  const r = district.radius;
  const center = Cesium.Cartesian3.fromDegrees(lon, lat, 20);
  const sphere = new Cesium.BoundingSphere(center, r);
  const views = [];
  for (let k = 0; k < 4; k++) {
    views.push({ sphere, offset: new Cesium.HeadingPitchRange(Cesium.Math.toRadians(k * 90 + 20), Cesium.Math.toRadians(-35), r * 2.3) });
    // a closer look at one quadrant of the district
    const dx = (k % 2 ? 1 : -1) * r * 0.35;
    const dy = (k < 2 ? 1 : -1) * r * 0.35;
    const q = Cesium.Cartesian3.fromDegrees(lon + dx / (111320 * Math.cos((lat * Math.PI) / 180)), lat + dy / 110540, 20);
    views.push({ sphere: new Cesium.BoundingSphere(q, r * 0.3), offset: new Cesium.HeadingPitchRange(Cesium.Math.toRadians(k * 90 + 65), Cesium.Math.toRadians(-28), r * 0.8) });
  }
  return views;
}

function nextStop() {
  if (!tour || tour.paused) return;
  const all = stops();
  const view = all[tour.index % all.length];
  tour.index += 1;
  document.body.dataset.tourStop = String(tour.index);
  viewer.camera.flyToBoundingSphere(view.sphere, { offset: view.offset, duration: Math.min(6, TOUR_STOP_MS / 4000) });
  tour.timer = setTimeout(nextStop, TOUR_STOP_MS);
}

/** Start/stop the automatic camera tour. */
export function setTour(on) {
  if (on && !tour) {
    tour = { index: 0, paused: false, timer: null };
    tour.timer = setTimeout(nextStop, TOUR_STOP_MS);
  } else if (!on && tour) {
    clearTimeout(tour.timer);
    tour = null;
  }
  document.body.dataset.tour = on ? "on" : "off";
}

// ------------------------------------------------------------------------------------ frames
/**
 * The wall screen renders when something changed, not continuously: a camera flight (the tour,
 * a new event) renders by itself, every module asks for a frame when it adds or moves what it
 * shows (live positions, new events, layers), and the flashing markers ask for frames while they
 * pulse. A continuous loop redrew an unchanged scene all day; in software GL (the browser tests,
 * a wall PC without a GPU) a 1920×1080 frame takes seconds, and the page's main thread — which also
 * reads /stream and updates the ticker — was busy drawing them: an alarm reached the ticker 6 s
 * after its POST, most of it waiting for frames. ?render=continuous keeps the loop (benchmarks).
 */
function renderOnDemand(v) {
  if (new URLSearchParams(location.search).get("render") === "continuous") return;
  const scene = v.scene;
  scene.requestRenderMode = true;
  // the clock still runs (shouldAnimate), but nothing shown on the wall depends on it
  scene.maximumRenderTimeChange = Number.POSITIVE_INFINITY;
  scene.preUpdate.addEventListener(() => {
    // pulsing markers; entity geometry still building (it advances one step per rendered frame)
    if (flashes.entities.values.length > 0 || v.clockViewModel.canAnimate === false) scene.requestRender();
  });
  scene.requestRender();
}

// ------------------------------------------------------------------------------------ init
function tickClock() {
  const el = document.getElementById("big-clock");
  if (el) el.textContent = fmtTime(new Date());
}

function liveStatus(state) {
  const el = document.getElementById("big-live");
  if (!el) return;
  el.dataset.state = state;
  el.textContent = state === "open" ? t("big.liveOk") : state === "connecting" || state === "lost" ? t("big.liveLost") : "";
}

/**
 * Turn the page into the wall-screen layout. `opts.district` = {center: [lon, lat], radius: m}.
 * Call startTour() after the scene is ready.
 */
export function initBigscreen(v, opts) {
  viewer = v;
  district = opts.district;
  document.getElementById("bigscreen").hidden = false;
  flashes = new Cesium.CustomDataSource("flashes");
  viewer.dataSources.add(flashes);
  renderOnDemand(viewer);
  renderKpis();
  refreshKpis();
  setInterval(refreshKpis, KPI_REFRESH_MS);
  loadAlarms().catch((err) => console.warn("alarms", err));
  live.on("alarm", (a) => {
    pushTicker({ key: `alarm:${a.id ?? Math.random()}`, level: "alarm", at: a.raised_at ?? new Date().toISOString(), text: alarmText(a) });
    refreshKpisSoon();
  });
  live.on("event_status", refreshKpisSoon);
  live.onState(liveStatus);
  document.addEventListener("onemap:new-event", onNewEvent);
  document.addEventListener("onemap:lang", () => { renderKpis(); renderTicker(); tickClock(); });
  document.addEventListener("onemap:auth", () => { refreshKpis(); loadAlarms().catch(() => {}); });
  tickClock();
  setInterval(tickClock, 1000);
  return { refreshKpis, setTour, flash };
}
