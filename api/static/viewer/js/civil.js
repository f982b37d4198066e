// Civil affairs (issue 16) in the viewer: the community-targets panel (a "targets" tool for planners,
// always on in big-screen mode), communities coloured by on/off track (/analytics/targets
// communities[].status) and the camera-gap layer: every camera's viewshed (/analytics/camera-viewsheds;
// the high-altitude lookouts' fainter), unseen event hot-spot cells and ranked candidate camera
// sites (/analytics/camera-coverage).
// Text goes in through textContent only (ui.h); colours come from CSS classes, not inline styles.

import { fetchItems, getJson } from "./api.js";
import { canRead, hasRole } from "./auth.js";
import { fmtNumber, fmtTime, t } from "./i18n.js";
import { centroid, hierarchy, markerIcon, polygonParts } from "./features.js";
import { registerLayer, setLayerVisible } from "./layers.js";
import { whenSettled } from "./render.js";
import { closeToolPane, h, later, openToolPane } from "./ui.js";

const READ_ROLES = ["admin", "operator", "planner", "viewer"];
/** community status (and target result status) → colour */
export const STATUS_COLORS = {
  met: "#1a9850", on_track: "#66bd63", off_track: "#f46d43", missed: "#d73027", no_data: "#9e9e9e",
};
/** viewshed fill: street cameras, and the faint one of high-altitude lookouts (kilometres of ground
 * around their towers, under which the street cameras' views and the gaps must stay readable) */
const VIEWSHED_FILL = { street: ["#2ec4f1", 0.3], high_altitude: ["#a78bfa", 0.12] };
const REFRESH_MS = 5 * 60_000;
const params = new URLSearchParams(location.search);

let viewer = null;
let targetsDoc = null; // Promise of the /analytics/targets answer
let communityDs = null; // CustomDataSource: communities coloured by status
let gapDs = null; // CustomDataSource: viewsheds, unseen hot spots, candidate sites
let gapLoad = null;
let communityLoad = null;
const state = { open: false, big: false };

// ------------------------------------------------------------------------------------ targets
/** The targets answer (cached until `fresh`); ?as_of=ISO evaluates at another time (demos, tests). */
export function loadTargets(fresh = false) {
  if (!targetsDoc || fresh) {
    targetsDoc = getJson("/analytics/targets", { as_of: params.get("as_of") || undefined });
    targetsDoc.then(() => { document.body.dataset.targets = "loaded"; },
      (err) => { document.body.dataset.targets = `error:${err.status ?? ""}`; targetsDoc = null; });
  }
  return targetsDoc;
}

function pct(v, digits = 0) {
  return v === null || v === undefined ? "—" : `${fmtNumber(v * 100, digits)}%`;
}

function signedPct(v) {
  if (v === null || v === undefined) return "—";
  const s = fmtNumber(Math.abs(v) * 100, 1);
  return `${v > 0 ? "+" : v < 0 ? "−" : "±"}${s}%`;
}

function fmtValue(metric, v) {
  if (v === null || v === undefined) return "—";
  if (metric === "events.count") return fmtNumber(v);
  if (metric === "events.closure_hours") return `${fmtNumber(v, 1)} h`;
  return pct(v, 1);
}

function goalText(tg) {
  if (tg.change !== null && tg.change !== undefined) return t("targets.target", { v: signedPct(tg.change) });
  const v = tg.metric === "events.closure_hours" ? `${fmtNumber(tg.level, 1)} h`
    : tg.metric === "events.count" ? fmtNumber(tg.level) : pct(tg.level);
  return t(tg.direction === "at_most" ? "targets.levelAtMost" : "targets.level", { v });
}

/** One status for a target over its results: met / on_track when all with data are, else the worst. */
export function overallStatus(results) {
  const sts = results.map((r) => r.status).filter((s) => s !== "no_data");
  if (!sts.length) return "no_data";
  if (sts.every((s) => s === "met")) return "met";
  if (sts.every((s) => s === "met" || s === "on_track")) return "on_track";
  return sts.includes("off_track") ? "off_track" : "missed";
}

function statusBadge(st) {
  return h("span", { class: `target-status st-${st}`, dataset: { status: st } }, t(`targets.status.${st}`));
}

function targetCard(tg) {
  const res = tg.results || [];
  const st = overallStatus(res);
  const single = res.length === 1 ? res[0] : null;
  const good = res.filter((r) => r.status === "met" || r.status === "on_track").length;
  return h("li", { class: `target st-border-${st}`, dataset: { target: tg.id, status: st } },
    h("div", { class: "target-head" }, h("span", { class: "target-title" }, tg.title || tg.id), statusBadge(st)),
    single ? h("div", { class: "target-figures" },
      h("span", { class: "target-value", dataset: { key: "value" } }, fmtValue(tg.metric, single.current_value)),
      single.achieved_change !== null && single.achieved_change !== undefined
        ? h("span", { class: "target-change", dataset: { key: "change" } },
          `${t("targets.change")} ${signedPct(single.achieved_change)}`)
        : null)
      : h("div", { class: "target-figures" },
        h("span", { class: "target-value", dataset: { key: "communities" } },
          t("targets.communities", { on: fmtNumber(good), n: fmtNumber(res.length) }))),
    h("div", { class: "target-goal muted" }, `${goalText(tg)} · ${t("targets.deadline", { d: tg.deadline })}`),
    single ? null : h("ul", { class: "target-dots" }, res.map((r) =>
      h("li", { class: `st-${r.status}`, title: `${r.name ?? r.community_id}: ${t(`targets.status.${r.status}`)}`,
        dataset: { community: r.community_id ?? "", status: r.status } }))));
}

function legend() {
  return h("ul", { class: "legend target-legend" }, ["on_track", "off_track", "no_data"].map((s) =>
    h("li", {}, h("span", { class: `swatch st-${s}` }), t(`targets.status.${s}`))));
}

function renderTargets(doc) {
  const list = doc.targets || [];
  return [
    h("p", { class: "muted", id: "targets-asof" }, t("targets.asOf", { t: fmtTime(doc.as_of) })),
    list.length ? h("ol", { class: "targets", id: "targets-list" }, list.map(targetCard))
      : h("p", { class: "muted" }, t("targets.none")),
    h("p", { class: "muted" }, t("targets.legend")), legend(),
  ];
}

function pane() {
  return [h("h2", {}, t("targets.title")), later(loadTargets(), renderTargets)];
}

export function toggleTargets(on) {
  state.open = on ?? !state.open;
  if (state.open) {
    openToolPane("targets", pane);
    setLayerVisible("targets", true);
  } else {
    closeToolPane("targets");
  }
  return state.open ? loadTargets() : Promise.resolve(null);
}

function mountBigPanel() {
  let el = document.getElementById("big-targets");
  if (!el) {
    el = h("section", { id: "big-targets", class: "big-targets", "aria-labelledby": "big-targets-title" });
    document.getElementById("bigscreen")?.append(el);
  }
  el.replaceChildren(h("h2", { id: "big-targets-title" }, t("targets.title")), later(loadTargets(), renderTargets));
}

/**
 * body[data-<flag>] = "false" now, "true" once the scene has drawn the entities just added
 * (render.js keeps frames coming while their ground geometry builds, in every view mode).
 */
function settle(flag) {
  document.body.dataset[flag] = "false";
  return whenSettled().then(() => { document.body.dataset[flag] = "true"; });
}

// ------------------------------------------------------------------------------------ community colouring
function polygonEntity(ds, rings, fill, outline, width = 2) {
  return ds.entities.add({
    polygon: fill ? {
      hierarchy: hierarchy(rings), material: fill, classificationType: Cesium.ClassificationType.TERRAIN,
    } : undefined,
    polyline: outline ? {
      positions: Cesium.Cartesian3.fromDegreesArray(rings[0].flat()), clampToGround: true, width,
      material: outline, classificationType: Cesium.ClassificationType.TERRAIN,
    } : undefined,
  });
}

async function drawCommunities() {
  const [fc, doc] = await Promise.all([fetchItems("communities", {}, { maxFeatures: 500 }), loadTargets()]);
  const status = new Map((doc.communities || []).map((c) => [c.community_id, c]));
  communityDs.entities.suspendEvents();
  communityDs.entities.removeAll();
  const counts = {};
  for (const f of fc.features) {
    const id = f.id ?? f.properties?.id;
    const s = status.get(id)?.status ?? "no_data";
    counts[s] = (counts[s] || 0) + 1;
    const color = Cesium.Color.fromCssColorString(STATUS_COLORS[s] ?? STATUS_COLORS.no_data);
    for (const rings of polygonParts(f.geometry)) {
      const e = polygonEntity(communityDs, rings, color.withAlpha(0.45), color.withAlpha(0.95), 3);
      e.onemap = { kind: "community", id, properties: { ...(f.properties || {}), target_status: s } };
    }
    const c = centroid(f.geometry);
    if (c) {
      const e = communityDs.entities.add({
        position: Cesium.Cartesian3.fromDegrees(c[0], c[1]),
        label: {
          text: `${f.properties?.name ?? id} · ${t(`targets.status.${s}`)}`, font: "600 14px sans-serif",
          fillColor: Cesium.Color.WHITE, outlineColor: Cesium.Color.BLACK, outlineWidth: 3,
          style: Cesium.LabelStyle.FILL_AND_OUTLINE, heightReference: Cesium.HeightReference.CLAMP_TO_GROUND,
          disableDepthTestDistance: Number.POSITIVE_INFINITY,
          distanceDisplayCondition: new Cesium.DistanceDisplayCondition(0, 12000),
        },
      });
      e.onemap = { kind: "community", id, properties: { ...(f.properties || {}), target_status: s } };
    }
  }
  communityDs.entities.resumeEvents();
  document.body.dataset.targetCommunities = Object.entries(counts).sort().map(([k, n]) => `${k}:${n}`).join(",");
  settle("targetCommunitiesDrawn");
  return counts;
}

function ensureCommunities() {
  if (!communityLoad) {
    communityLoad = drawCommunities().catch((err) => {
      console.warn("target communities", err);
      document.body.dataset.targetCommunities = `error:${err.status ?? ""}`;
      communityLoad = null;
      return null;
    });
  }
  return communityLoad;
}

export function setCommunitiesShown(on) {
  communityDs.show = on;
  if (on) ensureCommunities();
  viewer.scene.requestRender();
  return communityLoad || Promise.resolve(null);
}

// ------------------------------------------------------------------------------------ camera gaps
async function drawGaps() {
  const [vs, cov] = await Promise.all([
    getJson("/analytics/camera-viewsheds"),
    getJson("/analytics/camera-coverage", { sites: 5 }),
  ]);
  gapDs.entities.suspendEvents();
  gapDs.entities.removeAll();
  let nViews = 0;
  let nHigh = 0;
  for (const f of vs.features || []) {
    const high = f.properties?.kind === "high_altitude";
    const [css, alpha] = VIEWSHED_FILL[high ? "high_altitude" : "street"];
    const fill = Cesium.Color.fromCssColorString(css).withAlpha(alpha);
    for (const rings of polygonParts(f.geometry)) {
      const e = polygonEntity(gapDs, rings, fill, null);
      e.onemap = { kind: "viewshed", id: f.id, properties: f.properties || {} };
    }
    nViews += 1;
    nHigh += high;
  }
  const hot = Cesium.Color.fromCssColorString("#ff3b30");
  const cells = cov.uncovered_hotspots?.features || [];
  for (const f of cells) {
    for (const rings of polygonParts(f.geometry)) {
      const e = polygonEntity(gapDs, rings, hot.withAlpha(0.35), hot, 3);
      e.onemap = { kind: "unseen_hotspot", id: f.id, properties: f.properties || {} };
    }
  }
  for (const s of cov.sites || []) {
    const e = gapDs.entities.add({
      position: Cesium.Cartesian3.fromDegrees(s.lon, s.lat),
      billboard: {
        image: markerIcon("#7b2cbf", { size: 26, glyph: String(s.rank) }), width: 26, height: 26,
        heightReference: Cesium.HeightReference.CLAMP_TO_GROUND, disableDepthTestDistance: Number.POSITIVE_INFINITY,
      },
    });
    e.onemap = { kind: "camera_site", id: `camera-site:${s.rank}`, properties: s };
  }
  gapDs.entities.resumeEvents();
  const out = { viewsheds: nViews, high: nHigh, hotspots: cells.length, sites: (cov.sites || []).length,
    share: cov.share };
  document.body.dataset.cameraGaps = `viewsheds:${out.viewsheds},high:${out.high},hotspots:${out.hotspots},`
    + `sites:${out.sites}`;
  settle("cameraGapsDrawn");
  return out;
}

function ensureGaps() {
  if (!gapLoad) {
    gapLoad = drawGaps().catch((err) => {
      console.warn("camera gaps", err);
      document.body.dataset.cameraGaps = `error:${err.status ?? ""}`;
      gapLoad = null;
      return null;
    });
  }
  return gapLoad;
}

export function setGapsShown(on) {
  gapDs.show = on;
  if (on) ensureGaps();
  viewer.scene.requestRender();
  return gapLoad || Promise.resolve(null);
}

// ------------------------------------------------------------------------------------ init
export function initCivil(v, { bigscreen = false } = {}) {
  viewer = v;
  state.big = bigscreen;
  communityDs = new Cesium.CustomDataSource("target-communities");
  gapDs = new Cesium.CustomDataSource("camera-gaps");
  communityDs.show = gapDs.show = false;
  viewer.dataSources.add(communityDs);
  viewer.dataSources.add(gapDs);
  registerLayer({
    id: "targets", group: "ops", label: "layers.targets", roles: READ_ROLES,
    getShow: () => communityDs.show, setShow: (on) => { setCommunitiesShown(on); },
  });
  registerLayer({
    id: "cameraGaps", group: "ops", label: "layers.cameraGaps", roles: READ_ROLES,
    getShow: () => gapDs.show, setShow: (on) => { setGapsShown(on); },
  });
  const refresh = () => {
    targetsDoc = null;
    communityLoad = null;
    if (!canRead() || !(state.open || state.big || communityDs.show)) return;
    loadTargets(true);
    if (communityDs.show) ensureCommunities();
    if (state.open) openToolPane("targets", pane);
    if (state.big) mountBigPanel();
  };
  if (bigscreen) {
    setInterval(refresh, REFRESH_MS);
    if (canRead()) {
      mountBigPanel();
      setLayerVisible("targets", true);
    }
  }
  document.addEventListener("onemap:lang", () => {
    if (state.open) openToolPane("targets", pane);
    if (state.big && canRead()) mountBigPanel();
  });
  document.addEventListener("onemap:auth", () => {
    if (!hasRole(...READ_ROLES)) {
      if (state.open) toggleTargets(false);
      return;
    }
    refresh();
    gapLoad = null;
    if (gapDs.show) ensureGaps();
    if (state.big) setLayerVisible("targets", true);
  });
  return { loadTargets, toggleTargets, setCommunitiesShown, setGapsShown, overallStatus, state,
    communities: () => communityLoad, gaps: () => gapLoad };
}
