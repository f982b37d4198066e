// Measuring on the 3D scene (terrain and tiles, via scene.pickPosition):
// distance (polyline, 3D segment lengths), area (polygon on the local tangent plane),
// height (vertical difference between two picked points, with the horizontal offset).

import { fmtNumber, t } from "./i18n.js";
import { toast } from "./ui.js";

let viewer = null;
let handler = null;
let mode = null; // "distance" | "area" | "height"
let points = [];
let floating = null; // Cartesian3 under the mouse
let ds = null;
const results = [];

const COLOR = () => Cesium.Color.fromCssColorString("#ffd400");

function surfacePosition(windowPos) {
  const scene = viewer.scene;
  if (scene.pickPositionSupported) {
    const p = scene.pickPosition(windowPos);
    if (Cesium.defined(p)) return p;
  }
  const ray = viewer.camera.getPickRay(windowPos);
  return ray ? scene.globe.pick(ray, scene) : undefined;
}

/** Sum of 3D segment lengths (m). */
export function pathLength(positions) {
  let d = 0;
  for (let i = 1; i < positions.length; i++) d += Cesium.Cartesian3.distance(positions[i - 1], positions[i]);
  return d;
}

/** Area (m²) of a polygon projected on the tangent plane at its first vertex. */
export function polygonArea(positions) {
  if (positions.length < 3) return 0;
  const toEnu = Cesium.Matrix4.inverseTransformation(
    Cesium.Transforms.eastNorthUpToFixedFrame(positions[0]), new Cesium.Matrix4());
  const xy = positions.map((p) => Cesium.Matrix4.multiplyByPoint(toEnu, p, new Cesium.Cartesian3()));
  let a = 0;
  for (let i = 0, j = xy.length - 1; i < xy.length; j = i++) a += xy[j].x * xy[i].y - xy[i].x * xy[j].y;
  return Math.abs(a) / 2;
}

/** {vertical, horizontal} (m) between two points: ellipsoidal height difference and ground distance. */
export function heightBetween(a, b) {
  const ca = Cesium.Cartographic.fromCartesian(a);
  const cb = Cesium.Cartographic.fromCartesian(b);
  const geodesic = new Cesium.EllipsoidGeodesic(ca, cb);
  return { vertical: Math.abs(cb.height - ca.height), horizontal: geodesic.surfaceDistance || 0 };
}

function fmtLen(m) {
  return m >= 1000 ? t("ui.km", { v: fmtNumber(m / 1000, 2) }) : t("ui.meters", { v: fmtNumber(m, 1) });
}

function livePoints() {
  return floating ? [...points, floating] : points;
}

function label(position, text) {
  return ds.entities.add({
    position,
    label: {
      text, font: "600 15px sans-serif", fillColor: Cesium.Color.WHITE, showBackground: true,
      backgroundColor: Cesium.Color.fromCssColorString("#111a").withAlpha(0.8),
      pixelOffset: new Cesium.Cartesian2(0, -18), disableDepthTestDistance: Number.POSITIVE_INFINITY,
    },
  });
}

function drawShape() {
  const pts = new Cesium.CallbackProperty(() => livePoints(), false);
  if (mode === "area") {
    ds.entities.add({
      polygon: { hierarchy: new Cesium.CallbackProperty(() => new Cesium.PolygonHierarchy(livePoints()), false),
        perPositionHeight: true, material: COLOR().withAlpha(0.3) },
    });
    ds.entities.add({ polyline: { positions: new Cesium.CallbackProperty(() => {
      const p = livePoints();
      return p.length > 1 ? [...p, p[0]] : p;
    }, false), width: 2, material: COLOR(), depthFailMaterial: COLOR().withAlpha(0.5) } });
  } else if (mode === "distance") {
    ds.entities.add({ polyline: { positions: pts, width: 3, material: COLOR(), depthFailMaterial: COLOR().withAlpha(0.5) } });
  } else {
    // height: the vertical leg from the lower point up, and the slanted line
    ds.entities.add({ polyline: { positions: new Cesium.CallbackProperty(() => verticalLeg(livePoints()), false),
      width: 2, material: new Cesium.PolylineDashMaterialProperty({ color: COLOR() }) } });
    ds.entities.add({ polyline: { positions: pts, width: 3, material: COLOR() } });
  }
}

function verticalLeg(p) {
  if (p.length < 2) return [];
  const [a, b] = p;
  const ca = Cesium.Cartographic.fromCartesian(a);
  const cb = Cesium.Cartographic.fromCartesian(b);
  const [low, high] = ca.height <= cb.height ? [ca, cb] : [cb, ca];
  const corner = Cesium.Cartesian3.fromRadians(low.longitude, low.latitude, high.height);
  return [Cesium.Cartesian3.fromRadians(low.longitude, low.latitude, low.height), corner,
    Cesium.Cartesian3.fromRadians(high.longitude, high.latitude, high.height)];
}

function hint(text) {
  const el = document.getElementById("measure-hint");
  el.hidden = !text;
  el.textContent = text || "";
}

function finish() {
  if (!mode) return null;
  let result = null;
  if (mode === "distance" && points.length >= 2) {
    const d = pathLength(points);
    result = { mode, value: d, text: t("measure.distance", { v: fmtLen(d) }) };
  } else if (mode === "area" && points.length >= 3) {
    const a = polygonArea(points);
    result = { mode, value: a, text: t("measure.area", { v: a >= 1e5 ? `${fmtNumber(a / 1e6, 3)} km²` : t("ui.sqm", { v: fmtNumber(a, 0) }) }) };
  } else if (mode === "height" && points.length >= 2) {
    const { vertical, horizontal } = heightBetween(points[0], points[1]);
    result = { mode, value: vertical, horizontal, text: `${t("measure.height", { v: fmtLen(vertical) })} · ${t("measure.horizontal", { v: fmtLen(horizontal) })}` };
  }
  floating = null;
  if (result) {
    const fixed = points.slice();
    // freeze the shape: replace callback geometry by constant positions
    ds.entities.removeAll();
    if (mode === "area") {
      ds.entities.add({ polygon: { hierarchy: new Cesium.PolygonHierarchy(fixed), perPositionHeight: true, material: COLOR().withAlpha(0.3) } });
      ds.entities.add({ polyline: { positions: [...fixed, fixed[0]], width: 2, material: COLOR() } });
    } else if (mode === "height") {
      ds.entities.add({ polyline: { positions: verticalLeg(fixed), width: 2, material: new Cesium.PolylineDashMaterialProperty({ color: COLOR() }) } });
      ds.entities.add({ polyline: { positions: fixed, width: 3, material: COLOR() } });
    } else {
      ds.entities.add({ polyline: { positions: fixed, width: 3, material: COLOR() } });
    }
    label(fixed.at(-1), result.text);
    results.push(result);
    hint(result.text);
    document.body.dataset.measure = JSON.stringify({ mode: result.mode, value: result.value });
  }
  viewer.scene.requestRender();
  stop(false);
  return result;
}

/** Start measuring ("distance" | "area" | "height"); clicks go to the measurement until finished. */
export function start(kind) {
  stop(true);
  mode = kind;
  points = [];
  document.body.dataset.tool = `measure-${kind}`;
  hint(t(`measure.${kind}Hint`));
  drawShape();
  handler = new Cesium.ScreenSpaceEventHandler(viewer.scene.canvas);
  handler.setInputAction((click) => {
    const p = surfacePosition(click.position);
    if (!p) { toast(t("measure.noSurface")); return; }
    points.push(p);
    viewer.scene.requestRender();
    if (mode === "height" && points.length === 2) finish();
  }, Cesium.ScreenSpaceEventType.LEFT_CLICK);
  handler.setInputAction((move) => {
    if (!points.length) return;
    floating = surfacePosition(move.endPosition) ?? floating;
    viewer.scene.requestRender();
  }, Cesium.ScreenSpaceEventType.MOUSE_MOVE);
  handler.setInputAction(() => finish(), Cesium.ScreenSpaceEventType.RIGHT_CLICK);
  handler.setInputAction(() => {
    // a double click also fired two LEFT_CLICKs on the same spot: drop the duplicate
    if (points.length >= 2 && Cesium.Cartesian3.equalsEpsilon(points.at(-1), points.at(-2), 0, 0.01)) points.pop();
    finish();
  }, Cesium.ScreenSpaceEventType.LEFT_DOUBLE_CLICK);
  syncButtons();
}

/** Stop measuring; `clear` also removes the drawn shape. */
export function stop(clear = true) {
  handler?.destroy();
  handler = null;
  mode = null;
  floating = null;
  delete document.body.dataset.tool;
  if (clear) {
    ds?.entities.removeAll();
    hint("");
  }
  syncButtons();
}

/** For tests and scripts: measure between given lon/lat/height (ellipsoidal) points. */
export function measurePoints(kind, lonLatHeights) {
  start(kind);
  points = lonLatHeights.map(([lon, lat, hgt]) => Cesium.Cartesian3.fromDegrees(lon, lat, hgt ?? 0));
  return finish();
}

function syncButtons() {
  for (const b of document.querySelectorAll('[data-tool^="measure-"]')) {
    b.setAttribute("aria-pressed", String(b.dataset.tool === `measure-${mode}`));
  }
}

export function initMeasure(v) {
  viewer = v;
  ds = new Cesium.CustomDataSource("measure");
  viewer.dataSources.add(ds);
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && mode) stop(true); });
  return { start, stop, results, measurePoints, active: () => mode };
}
