// Cameras: clustered markers; click → the camera's field-of-view frustum drawn in 3D and its
// stream in an HTML5 <video>. Only same-origin stream URLs are ever loaded (the page must not
// talk to other hosts); anything else, or a failing stream, shows a clear "stream offline" state.

import { getOptional } from "./api.js";
import { t, tv } from "./i18n.js";
import { collectionLayer, markerIcon, styleClusters } from "./features.js";
import { onPick } from "./picking.js";
import { h, kvTable, openPanel } from "./ui.js";

let viewer = null;
let frustum = null; // the CustomDataSource holding the open camera's FOV
const cameras = new Map(); // id → {properties, lonlat}
// EPSG:4548 (3° Gauss-Krüger, CM 117°E): headings are from grid north; true azimuth adds the
// meridian convergence γ = atan(tan(λ − λ0) · sin φ).
const CENTRAL_MERIDIAN = 117;

function cameraIcon(props) {
  const online = props.status !== "offline";
  return markerIcon(online ? "#16a085" : "#7f8c8d", { size: props.kind === "high_altitude" ? 30 : 22, glyph: "◉" });
}

/** World position of the camera (terrain height + mount height) and its ENU frame. */
function cameraPose(info) {
  const [lon, lat] = info.lonlat;
  const p = info.properties;
  const carto = Cesium.Cartographic.fromDegrees(lon, lat);
  const ground = viewer.scene.globe.getHeight(carto) ?? 0;
  const origin = Cesium.Cartesian3.fromDegrees(lon, lat, ground + Number(p.mount_height ?? 6));
  const convergence = Math.atan(Math.tan(Cesium.Math.toRadians(lon - CENTRAL_MERIDIAN)) * Math.sin(Cesium.Math.toRadians(lat)));
  const heading = Cesium.Math.toRadians(Number(p.heading ?? 0)) + convergence;
  const pitch = Cesium.Math.toRadians(Number(p.pitch ?? -15));
  return { origin, heading, pitch, hfov: Cesium.Math.toRadians(Number(p.hfov ?? 60)), range: Number(p.range_m ?? 80) };
}

/** The 4 far-plane corners of the camera's view pyramid (16:9 image) in ECEF. */
export function frustumCorners(pose) {
  const enu = Cesium.Transforms.eastNorthUpToFixedFrame(pose.origin);
  const { heading, pitch } = pose;
  // ENU basis of the camera: forward (azimuth clockwise from north, pitch up), right, up.
  const fwd = new Cesium.Cartesian3(Math.sin(heading) * Math.cos(pitch), Math.cos(heading) * Math.cos(pitch), Math.sin(pitch));
  const right = new Cesium.Cartesian3(Math.cos(heading), -Math.sin(heading), 0);
  const up = Cesium.Cartesian3.cross(right, fwd, new Cesium.Cartesian3());
  const th = Math.tan(pose.hfov / 2);
  const tv_ = th * 9 / 16;
  const corners = [[-1, 1], [1, 1], [1, -1], [-1, -1]].map(([sx, sy]) => {
    const d = Cesium.Cartesian3.clone(fwd);
    Cesium.Cartesian3.add(d, Cesium.Cartesian3.multiplyByScalar(right, sx * th, new Cesium.Cartesian3()), d);
    Cesium.Cartesian3.add(d, Cesium.Cartesian3.multiplyByScalar(up, sy * tv_, new Cesium.Cartesian3()), d);
    Cesium.Cartesian3.multiplyByScalar(d, pose.range, d);
    return Cesium.Matrix4.multiplyByPoint(enu, d, new Cesium.Cartesian3());
  });
  return corners;
}

function drawFrustum(info) {
  frustum.entities.removeAll();
  const pose = cameraPose(info);
  const c = frustumCorners(pose);
  const fill = Cesium.Color.fromCssColorString("#00d1ff").withAlpha(0.18);
  const edge = Cesium.Color.fromCssColorString("#00d1ff");
  for (let i = 0; i < 4; i++) {
    frustum.entities.add({
      polygon: { hierarchy: [pose.origin, c[i], c[(i + 1) % 4]], perPositionHeight: true, material: fill },
    });
    frustum.entities.add({ polyline: { positions: [pose.origin, c[i]], width: 1.5, material: edge } });
  }
  frustum.entities.add({ polyline: { positions: [...c, c[0]], width: 2, material: edge } });
  frustum.show = true;
}

function isLocalUrl(u) {
  try {
    return new URL(u, location.origin).origin === location.origin;
  } catch {
    return false;
  }
}

function offlineBox(url) {
  return h("div", { class: "video-offline", role: "status", dataset: { state: "offline" } },
    h("strong", {}, t("camera.offline")), h("code", {}, url || "—"));
}

/** A <video> for the stream, replaced by the offline state when it cannot play. */
function videoBox(props) {
  const url = props.stream_url;
  if (!url || props.status === "offline" || !isLocalUrl(url)) return offlineBox(url);
  const wrap = h("div", { class: "video-wrap", dataset: { state: "loading" } });
  const video = h("video", {
    src: new URL(url, location.origin).pathname + new URL(url, location.origin).search,
    controls: true, muted: true, autoplay: true, playsinline: true, loop: true, preload: "auto",
    "aria-label": t("camera.stream"),
  });
  video.muted = true;
  video.addEventListener("error", () => wrap.replaceChildren(offlineBox(url)));
  video.addEventListener("playing", () => { wrap.dataset.state = "playing"; });
  video.addEventListener("loadeddata", () => { if (wrap.dataset.state === "loading") wrap.dataset.state = "loaded"; });
  wrap.append(video);
  return wrap;
}

/** Open the camera panel: attributes, FOV frustum, stream. `fallback` = row from another API. */
export async function showCameraPanel(info) {
  drawFrustum(info);
  const p = info.properties;
  // The video element is created once per opening (re-rendering for a language switch keeps it).
  const video = videoBox(p);
  openPanel("camera", info.id, () => [
    h("h2", {}, t("camera.title", { id: info.id })),
    h("p", { class: "muted" }, `${p.name ?? ""} · ${tv("camera", p.kind)} · ${p.status === "offline" ? t("camera.statusOffline") : t("camera.online")}`),
    h("section", { class: "panel-section" }, h("h3", {}, t("camera.stream")), video),
    kvTable(p, { skip: ["id", "name", "stream_url"] }),
    h("p", { class: "small muted" }, t("attr.stream_url"), ": ", h("code", {}, p.stream_url ?? "—")),
  ]);
}

/** Open a camera by id (e.g. from the event panel's "cameras that see it" list). */
export async function openCameraById(id, row = null) {
  let info = cameras.get(id);
  if (!info) {
    const f = await getOptional(`/collections/cameras/items/${encodeURIComponent(id)}`, { f: "json" });
    if (f?.geometry) info = { id, properties: { ...f.properties, id }, lonlat: f.geometry.coordinates };
    else if (row?.lon !== undefined) info = { id, properties: { ...row, id }, lonlat: [row.lon, row.lat] };
  }
  if (!info) return;
  await showCameraPanel(info);
  const pose = cameraPose(info);
  viewer.camera.flyToBoundingSphere(new Cesium.BoundingSphere(pose.origin, pose.range / 2), {
    offset: new Cesium.HeadingPitchRange(pose.heading + Math.PI, Cesium.Math.toRadians(-35), pose.range * 2.2), duration: 1.2,
  });
}

export function initCameras(v) {
  viewer = v;
  frustum = new Cesium.CustomDataSource("camera-fov");
  viewer.dataSources.add(frustum);
  const layer = collectionLayer(viewer, {
    collection: "cameras", layerId: "cameras", label: "layers.cameras", show: true,
    build: (ds, features) => {
      cameras.clear();
      for (const f of features) {
        const id = f.id ?? f.properties?.id;
        const props = { ...f.properties, id };
        const lonlat = f.geometry?.coordinates;
        if (!lonlat) continue;
        const e = ds.entities.add({
          id: `camera:${id}`,
          position: Cesium.Cartesian3.fromDegrees(lonlat[0], lonlat[1], Number(props.mount_height ?? 6)),
          billboard: {
            image: cameraIcon(props), width: props.kind === "high_altitude" ? 30 : 22, height: props.kind === "high_altitude" ? 30 : 22,
            heightReference: Cesium.HeightReference.RELATIVE_TO_GROUND,
            disableDepthTestDistance: Number.POSITIVE_INFINITY,
          },
        });
        e.onemap = { kind: "camera", id, properties: props, lonlat };
        cameras.set(id, e.onemap);
      }
    },
  });
  styleClusters(layer.dataSource, "#16a085");
  onPick("camera", showCameraPanel);
  document.addEventListener("onemap:panel-closed", (ev) => {
    if (ev.detail.kind === "camera") frustum.entities.removeAll();
  });
  return { layer, cameras, openCameraById };
}
