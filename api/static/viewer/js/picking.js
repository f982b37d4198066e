// Click → panels. 3D Tiles features (buildings and the other city layers) are handled here;
// entities carry `entity.onemap = {kind, id, ...}` and go to the handler registered for their kind
// (events.js, cameras.js, grid.js, patrol.js). pickBuilding(id) drives the same path from code.

import { getOptional } from "./api.js";
import { canRead } from "./auth.js";
import { t } from "./i18n.js";
import { centroid, polygonParts } from "./features.js";
import { whenTilesLoaded } from "./layers.js";
import { closePanel, h, kvTable, later, openPanel, section } from "./ui.js";

const handlers = new Map();
let viewer = null;
let tilesets = {};
let highlighted = null; // {feature, color}
const HIGHLIGHT = () => Cesium.Color.fromCssColorString("#ffd400");

/** Register the click handler for entities whose `onemap.kind` is `kind`: fn(info, entity). */
export function onPick(kind, fn) {
  handlers.set(kind, fn);
}

function clearHighlight() {
  if (highlighted) {
    try { highlighted.feature.color = highlighted.color; } catch { /* tile unloaded */ }
    highlighted = null;
    viewer?.scene.requestRender();
  }
}

function highlight(feature) {
  clearHighlight();
  highlighted = { feature, color: Cesium.Color.clone(feature.color) };
  feature.color = HIGHLIGHT();
  viewer.scene.requestRender();
}

/** Every metadata property of a picked 3D Tiles feature. */
export function featureProperties(feature) {
  const props = {};
  for (const key of feature.getPropertyIds()) {
    const v = feature.getProperty(key);
    props[key] = typeof v === "bigint" ? Number(v) : v;
  }
  return props;
}

// ------------------------------------------------------------------------------------ panels
/** Population summary; counts withheld below 5 come back as null and are named in `suppressed`. */
export function renderPopulation(pop) {
  if (!pop) return h("p", { class: "muted" }, t("ui.forbidden"));
  const data = pop.properties ?? pop;
  const suppressed = Array.isArray(data.suppressed) ? data.suppressed : [];
  const rows = {};
  for (const [k, v] of Object.entries(data)) {
    if (["level", "id", "name", "suppressed", "building_id", "grid_id", "community_id"].includes(k)) continue;
    if (v === null && suppressed.includes(k)) rows[k] = "< 5";
    else if (typeof v !== "object" || v === null) rows[k] = v;
  }
  return [kvTable(rows, { labelNs: "population" }),
    suppressed.length ? h("p", { class: "muted small" }, t("building.suppressed")) : null];
}

/** The planners' building panel: tile metadata, the PostGIS record and the population summary. */
export function showBuildingPanel(props) {
  const id = props.id ?? props.ID ?? props.building_id;
  const record = id ? getOptional(`/collections/buildings/items/${encodeURIComponent(id)}`, { f: "json" }) : Promise.resolve(null);
  const population = id && canRead() ? getOptional("/analytics/population", { level: "building", id }) : null;
  openPanel("building", id, () => [
    h("h2", {}, t("building.title", { id: id ?? "?" })),
    section("building.attributes", kvTable(props)),
    section("building.database", later(record, (f) => (f
      ? kvTable(f.properties ?? {}, { skip: ["id"] })
      : h("p", { class: "muted" }, t("building.notInDb"))))),
    population ? section("building.population", later(population, renderPopulation)) : null,
  ]);
}

function showTileFeaturePanel(layer, props) {
  const id = props.id ?? "";
  openPanel(layer, id, () => [
    h("h2", {}, `${t(`layers.${layer}`, {}, layer)} ${id}`),
    kvTable(props),
  ]);
}

// ------------------------------------------------------------------------------------ clicks
/** Pick at a window position (CSS px, canvas-relative) and open the matching panel. */
export function pickAt(position) {
  const picked = viewer.scene.pick(position);
  if (!Cesium.defined(picked)) {
    clearHighlight();
    closePanel();
    return null;
  }
  if (picked instanceof Cesium.Cesium3DTileFeature) {
    const layer = picked.tileset?.onemapName ?? "tiles";
    const props = featureProperties(picked);
    highlight(picked);
    if (layer === "buildings") showBuildingPanel(props);
    else showTileFeaturePanel(layer, props);
    return { kind: layer, id: props.id ?? null };
  }
  clearHighlight();
  const target = picked.id;
  if (target && target.onemapCluster) {
    zoomToEntities(target.onemapCluster);
    return { kind: "cluster", id: null };
  }
  if (target instanceof Cesium.Entity && target.onemap) {
    const fn = handlers.get(target.onemap.kind);
    if (fn) {
      fn(target.onemap, target);
      return { kind: target.onemap.kind, id: target.onemap.id };
    }
  }
  return null;
}

function zoomToEntities(entities) {
  const positions = entities.map((e) => e.position?.getValue(viewer.clock.currentTime)).filter(Boolean);
  if (!positions.length) return;
  const sphere = Cesium.BoundingSphere.fromPoints(positions);
  viewer.camera.flyToBoundingSphere(sphere, {
    offset: new Cesium.HeadingPitchRange(viewer.camera.heading, Cesium.Math.toRadians(-50), Math.max(250, sphere.radius * 3)),
    duration: 1.2,
  });
}

// ------------------------------------------------------------------------------------ by id
const featureIndex = new Map(); // building id → Set of features currently loaded

function contentFeatures(content, out = []) {
  if (!content) return out;
  if (content.innerContents) for (const c of content.innerContents) contentFeatures(c, out);
  for (let i = 0; i < (content.featuresLength || 0); i++) out.push(content.getFeature(i));
  return out;
}

function indexTileset(tileset) {
  tileset.tileLoad.addEventListener((tile) => {
    for (const f of contentFeatures(tile.content)) {
      const id = f.getProperty("id");
      if (id === undefined) continue;
      if (!featureIndex.has(id)) featureIndex.set(id, new Set());
      featureIndex.get(id).add(f);
    }
  });
  tileset.tileUnload.addEventListener((tile) => {
    for (const f of contentFeatures(tile.content)) {
      featureIndex.get(f.getProperty("id"))?.delete(f);
    }
  });
}

/** A point inside the ring near its centroid (the centroid of an L-shape can fall outside). */
function interiorPoint(ring, c) {
  const inside = ([x, y]) => {
    let hit = false;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const [xi, yi] = ring[i]; const [xj, yj] = ring[j];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
    }
    return hit;
  };
  if (inside(c)) return c;
  const xs = [];
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i]; const [xj, yj] = ring[j];
    if ((yi > c[1]) !== (yj > c[1])) xs.push(xi + ((c[1] - yi) * (xj - xi)) / (yj - yi));
  }
  xs.sort((a, b) => a - b);
  return xs.length >= 2 ? [(xs[0] + xs[1]) / 2, c[1]] : c;
}

function canvasPointIsFree(x, y) {
  const rect = viewer.scene.canvas.getBoundingClientRect();
  const el = document.elementFromPoint(rect.left + x, rect.top + y);
  return el === viewer.scene.canvas;
}

/**
 * Fly to building `id`, pick it on screen like a user click would, and open its panel.
 * Resolves to {id, picked: bool, x, y} (x/y: page CSS pixels of the point that picks it, usable
 * for a real mouse click) or rejects when the building cannot be found.
 */
export async function pickBuilding(id, { range } = {}) {
  const buildings = tilesets.buildings;
  if (!buildings) throw new Error("no buildings tileset");
  const record = await getOptional(`/collections/buildings/items/${encodeURIComponent(id)}`, { f: "json" });
  let target;
  let heightAboveGround = 10;
  if (record?.geometry) {
    const c = centroid(record.geometry);
    const ring = polygonParts(record.geometry)[0]?.[0];
    const [lon, lat] = ring ? interiorPoint(ring, c) : c;
    heightAboveGround = Number(record.properties?.height ?? record.properties?.roof_height_m ?? 10) || 10;
    target = Cesium.Cartographic.fromDegrees(lon, lat);
  } else {
    const any = [...(featureIndex.get(id) ?? [])][0];
    if (!any) throw new Error(`building ${id} is neither in the database nor in a loaded tile`);
    target = Cesium.Cartographic.fromCartesian(any.content.tile.boundingSphere.center);
  }
  const ground = viewer.scene.globe.getHeight(target) ?? 0;
  const roof = Cesium.Cartesian3.fromRadians(target.longitude, target.latitude, ground + heightAboveGround);
  const viewRange = range ?? Math.max(180, heightAboveGround * 4);
  viewer.camera.flyToBoundingSphere(new Cesium.BoundingSphere(roof, 1), {
    offset: new Cesium.HeadingPitchRange(0, Cesium.Math.toRadians(-65), viewRange), duration: 0,
  });
  viewer.camera.lookAtTransform(Cesium.Matrix4.IDENTITY);
  await whenTilesLoaded(viewer, Object.values(tilesets));

  // Try the roof point, then a small spiral around it (another building may hide an edge).
  const base = Cesium.SceneTransforms.worldToWindowCoordinates(viewer.scene, roof);
  const offsets = [[0, 0], [0, 6], [6, 0], [0, -6], [-6, 0], [0, 12], [12, 0], [0, -12], [-12, 0]];
  for (const [dx, dy] of base ? offsets : []) {
    const pos = new Cesium.Cartesian2(base.x + dx, base.y + dy);
    const picked = viewer.scene.pick(pos);
    if (picked instanceof Cesium.Cesium3DTileFeature && picked.getProperty("id") === id && canvasPointIsFree(pos.x, pos.y)) {
      pickAt(pos);
      const rect = viewer.scene.canvas.getBoundingClientRect();
      return { id, picked: true, x: rect.left + pos.x, y: rect.top + pos.y };
    }
  }
  // Not pickable from here: open the panel from a loaded feature's metadata.
  const feature = [...(featureIndex.get(id) ?? [])][0];
  if (!feature) throw new Error(`building ${id} not found in the loaded tiles`);
  highlight(feature);
  showBuildingPanel(featureProperties(feature));
  return { id, picked: false, x: null, y: null };
}

export function initPicking(v, sets) {
  viewer = v;
  tilesets = sets;
  if (tilesets.buildings) indexTileset(tilesets.buildings);
  const handler = new Cesium.ScreenSpaceEventHandler(viewer.scene.canvas);
  handler.setInputAction((click) => {
    if (document.body.dataset.tool?.startsWith("measure")) return; // measure.js owns clicks
    pickAt(click.position);
  }, Cesium.ScreenSpaceEventType.LEFT_CLICK);
  document.addEventListener("onemap:panel-closed", clearHighlight);
  return { pickAt, pickBuilding, featureIndex };
}

