// OGC API – Features items → Cesium entities (points with clustering, ground-draped polygons).
// Every entity carries `entity.onemap = {kind, id, properties}` so picking.js can dispatch clicks.
// Also owns the simple reference layers: communities, grid cell outlines, geofences, checkpoints.

import { fetchItems } from "./api.js";
import { canRead } from "./auth.js";
import { registerLayer, updateLayer } from "./layers.js";

const ICON_CACHE = new Map();

/** A round marker icon drawn on a canvas (no image files, no network). */
export function markerIcon(fill, { size = 26, stroke = "#ffffff", glyph = "" } = {}) {
  const key = `${fill}|${size}|${stroke}|${glyph}`;
  if (ICON_CACHE.has(key)) return ICON_CACHE.get(key);
  const c = document.createElement("canvas");
  const dpr = 2;
  c.width = c.height = size * dpr;
  const g = c.getContext("2d");
  g.scale(dpr, dpr);
  g.beginPath();
  g.arc(size / 2, size / 2, size / 2 - 2, 0, 2 * Math.PI);
  g.fillStyle = fill;
  g.fill();
  g.lineWidth = 2;
  g.strokeStyle = stroke;
  g.stroke();
  if (glyph) {
    g.fillStyle = "#ffffff";
    g.font = `bold ${Math.round(size * 0.5)}px sans-serif`;
    g.textAlign = "center";
    g.textBaseline = "middle";
    g.fillText(glyph, size / 2, size / 2 + 1);
  }
  ICON_CACHE.set(key, c);
  return c;
}

/** Cluster styling: a circle with the member count, sized by count. */
export function styleClusters(dataSource, color = "#1f6feb", { pixelRange = 40, minimumClusterSize = 3 } = {}) {
  const clustering = dataSource.clustering;
  clustering.enabled = true;
  clustering.pixelRange = pixelRange;
  clustering.minimumClusterSize = minimumClusterSize;
  clustering.clusterEvent.addEventListener((entities, cluster) => {
    const n = entities.length;
    const size = n < 10 ? 30 : n < 100 ? 38 : 46;
    cluster.label.show = false;
    cluster.point.show = false;
    cluster.billboard.show = true;
    cluster.billboard.image = markerIcon(color, { size, glyph: String(n) });
    cluster.billboard.width = size;
    cluster.billboard.height = size;
    cluster.billboard.verticalOrigin = Cesium.VerticalOrigin.CENTER;
    cluster.billboard.disableDepthTestDistance = Number.POSITIVE_INFINITY;
    cluster.billboard.id = { onemapCluster: entities };
  });
}

export function pointPosition(feature, heightAboveGround = 0) {
  const [lon, lat] = feature.geometry.coordinates;
  return Cesium.Cartesian3.fromDegrees(lon, lat, heightAboveGround);
}

/** Rings of a Polygon/MultiPolygon geometry as [[outer, ...holes], ...] of lon/lat arrays. */
export function polygonParts(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return [geometry.coordinates];
  if (geometry.type === "MultiPolygon") return geometry.coordinates;
  return [];
}

function ringToCartesians(ring) {
  const flat = [];
  for (const [lon, lat] of ring) flat.push(lon, lat);
  return Cesium.Cartesian3.fromDegreesArray(flat);
}

export function hierarchy(rings) {
  const [outer, ...holes] = rings;
  return new Cesium.PolygonHierarchy(ringToCartesians(outer), holes.map((r) => new Cesium.PolygonHierarchy(ringToCartesians(r))));
}

/** Area-weighted centroid of the outer ring of the largest part, [lon, lat]. */
export function centroid(geometry) {
  if (geometry?.type === "Point") return geometry.coordinates.slice(0, 2);
  let best = null;
  for (const rings of polygonParts(geometry)) {
    const ring = rings[0];
    let a = 0; let cx = 0; let cy = 0;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const f = ring[j][0] * ring[i][1] - ring[i][0] * ring[j][1];
      a += f; cx += (ring[j][0] + ring[i][0]) * f; cy += (ring[j][1] + ring[i][1]) * f;
    }
    if (!best || Math.abs(a) > Math.abs(best.a)) best = { a, c: a ? [cx / (3 * a), cy / (3 * a)] : ring[0] };
  }
  return best ? best.c : null;
}

/**
 * Ground-draped polygons (+ clamped outlines) for every feature; returns the data source.
 *
 * Entities get Cesium's own unique ids (the feature id is in entity.onemap): a layer that is
 * rebuilt — the grid on a new metric, any collection reloaded — removes its entities and adds new
 * ones, and when a new entity took the id of one removed before the next frame, Cesium's geometry
 * visualizer kept the outline but never drew the ground fill again (the grid choropleth stayed
 * uncoloured; found by the grid pixel test).
 */
export function polygonsToEntities(dataSource, features, kind, { fill, outline, width = 2 } = {}) {
  for (const f of features) {
    const id = f.id ?? f.properties?.id;
    const parts = polygonParts(f.geometry);
    parts.forEach((rings) => {
      const fillColor = typeof fill === "function" ? fill(f) : fill;
      const entity = dataSource.entities.add({
        polygon: fillColor ? {
          hierarchy: hierarchy(rings),
          material: fillColor,
          classificationType: Cesium.ClassificationType.TERRAIN,
        } : undefined,
        polyline: outline ? {
          positions: ringToCartesians(rings[0]),
          clampToGround: true,
          width,
          material: typeof outline === "function" ? outline(f) : outline,
          classificationType: Cesium.ClassificationType.TERRAIN,
        } : undefined,
      });
      entity.onemap = { kind, id, properties: f.properties || {}, geometry: f.geometry };
    });
  }
  return dataSource;
}

/**
 * Load a collection into a new CustomDataSource registered as a layer.
 * opts: {collection, layerId, label, group, roles, params, show, build(dataSource, features)}.
 * Returns {dataSource, reload(params)}.
 */
export function collectionLayer(viewer, opts) {
  const dataSource = new Cesium.CustomDataSource(opts.layerId);
  dataSource.show = opts.show ?? true;
  viewer.dataSources.add(dataSource);
  let loaded = false;
  let loading = null;
  let params = opts.params || {};

  async function load() {
    if (opts.requires && !opts.requires()) {
      dataSource.entities.removeAll();
      loaded = false;
      return [];
    }
    const fc = await fetchItems(opts.collection, params, { maxFeatures: opts.maxFeatures ?? 5000 });
    dataSource.entities.suspendEvents();
    dataSource.entities.removeAll();
    opts.build(dataSource, fc.features);
    dataSource.entities.resumeEvents();
    viewer.scene.requestRender();
    loaded = true;
    updateLayer(opts.layerId, { available: true, error: undefined });
    return fc.features;
  }

  let again = false;
  function ensure() {
    if (loading) { again = true; return loading; }
    loading = load().catch((err) => {
      console.warn(`layer ${opts.layerId}:`, err);
      // 401/403: the layer exists but not for this role; anything else: unavailable.
      updateLayer(opts.layerId, { available: err.status === 401 || err.status === 403, error: err.message });
      return [];
    }).finally(() => {
      loading = null;
      if (again) { again = false; ensure(); }
    });
    return loading;
  }

  registerLayer({
    id: opts.layerId, group: opts.group || "ops", label: opts.label, roles: opts.roles,
    getShow: () => dataSource.show,
    setShow: (v) => {
      dataSource.show = v;
      viewer.scene.requestRender();
      if (v && !loaded) ensure();
    },
  });
  if (dataSource.show) ensure();
  document.addEventListener("onemap:auth", () => { if (dataSource.show || loaded) { loaded = false; ensure(); } });
  return {
    dataSource,
    reload: (next) => { if (next) params = next; loaded = false; return ensure(); },
    ready: () => loading || Promise.resolve(),
  };
}

/** Reference layers: communities, geofences, checkpoints (grid cells: grid.js). */
export function initFeatures(viewer) {
  const communities = collectionLayer(viewer, {
    collection: "communities", layerId: "communities", label: "layers.communities", show: false,
    build: (ds, features) => {
      polygonsToEntities(ds, features, "community", {
        outline: Cesium.Color.fromCssColorString("#f39c12").withAlpha(0.9), width: 3,
      });
      for (const f of features) {
        const c = centroid(f.geometry);
        if (!c) continue;
        const e = ds.entities.add({
          position: Cesium.Cartesian3.fromDegrees(c[0], c[1]),
          label: {
            text: f.properties?.name ?? String(f.id), font: "600 15px sans-serif",
            fillColor: Cesium.Color.WHITE, outlineColor: Cesium.Color.BLACK, outlineWidth: 3,
            style: Cesium.LabelStyle.FILL_AND_OUTLINE, heightReference: Cesium.HeightReference.CLAMP_TO_GROUND,
            disableDepthTestDistance: Number.POSITIVE_INFINITY,
            distanceDisplayCondition: new Cesium.DistanceDisplayCondition(0, 12000),
          },
        });
        e.onemap = { kind: "community", id: f.id ?? f.properties?.id, properties: f.properties || {} };
      }
    },
  });
  const geofences = collectionLayer(viewer, {
    collection: "geofences", layerId: "geofences", label: "layers.geofences", show: false,
    roles: ["admin", "operator", "planner", "viewer"], requires: canRead,
    build: (ds, features) => polygonsToEntities(ds, features, "geofence", {
      fill: (f) => Cesium.Color.fromCssColorString(f.properties?.kind === "no_parking" ? "#e74c3c" : "#2ecc71").withAlpha(0.25),
      outline: (f) => Cesium.Color.fromCssColorString(f.properties?.kind === "no_parking" ? "#e74c3c" : "#2ecc71"),
    }),
  });
  const checkpoints = collectionLayer(viewer, {
    collection: "checkpoints", layerId: "checkpoints", label: "layers.checkpoints", show: false,
    build: (ds, features) => {
      for (const f of features) {
        const e = ds.entities.add({
          position: pointPosition(f),
          billboard: {
            image: markerIcon("#8e44ad", { size: 18 }), heightReference: Cesium.HeightReference.CLAMP_TO_GROUND,
            disableDepthTestDistance: Number.POSITIVE_INFINITY, width: 18, height: 18,
          },
        });
        e.onemap = { kind: "checkpoint", id: f.id ?? f.properties?.id, properties: f.properties || {} };
      }
    },
  });
  return { communities, geofences, checkpoints };
}
