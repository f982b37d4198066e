// Tilesets, terrain, building styles, the layer tree, and "has everything finished loading".
//
// Catalog: GET /tilesets → {layers: [{name, url, features, bytes, region}], terrain: {url}}.
// Every 3D Tiles layer becomes a Cesium3DTileset; other modules register their own layers
// (events, cameras, grid cells, ...) with registerLayer() so the tree shows one list.

import { getJson } from "./api.js";
import { getUser } from "./auth.js";
import { t } from "./i18n.js";
import { h } from "./ui.js";

/** Building colours by `use` (EXT_structural_metadata property of the building tiles). */
export const USE_COLORS = {
  residential: "#e8dcc4",
  commercial: "#6fa8dc",
  office: "#8e9fc9",
  school: "#f6c945",
  hospital: "#ef8a80",
  market: "#f3a65a",
  public: "#9fd3c7",
  industrial: "#a4a9ad",
  courtyard_house: "#c9a27e",
};
const OTHER_COLOR = "#d9dde1";

/** Building colours by height class (metres above ground): [min height, colour, label key]. */
export const HEIGHT_CLASSES = [
  [100, "#b2182b", "heightClass.h4"],
  [50, "#ef8a62", "heightClass.h3"],
  [24, "#fddbc7", "heightClass.h2"],
  [10, "#d1e5f0", "heightClass.h1"],
  [Number.NEGATIVE_INFINITY, "#67a9cf", "heightClass.h0"],
];

/** Cesium3DTileStyle for buildings, by "use" or "height" (works with 3D Tiles 1.1 metadata). */
export function buildingStyle(kind) {
  if (kind === "height") {
    const height = "Number(${feature['height']})";
    return new Cesium.Cesium3DTileStyle({
      color: {
        conditions: [
          ...HEIGHT_CLASSES.filter(([min]) => Number.isFinite(min)).map(([min, color]) => [
            `${height} >= ${min}`, `color('${color}')`,
          ]),
          ["true", `color('${HEIGHT_CLASSES.at(-1)[1]}')`],
        ],
      },
    });
  }
  return new Cesium.Cesium3DTileStyle({
    color: {
      conditions: [
        ...Object.entries(USE_COLORS).map(([use, color]) => [`\${feature['use']} === '${use}'`, `color('${color}')`]),
        ["true", `color('${OTHER_COLOR}')`],
      ],
    },
  });
}

function renderLegend(kind) {
  const el = document.getElementById("legend");
  if (!el) return;
  const items = kind === "height"
    ? HEIGHT_CLASSES.map(([, color, key]) => [color, t(key)])
    : [...Object.entries(USE_COLORS).map(([use, color]) => [color, t(`use.${use}`)]), [OTHER_COLOR, t("use.other")]];
  el.replaceChildren(h("ul", {}, items.map(([color, label]) =>
    h("li", {}, h("span", { class: "swatch", style: `background:${color}` }), label))));
}

// ------------------------------------------------------------------------------------ registry
const registry = new Map(); // id → {id, group, label, roles, available, error, getShow, setShow}

/**
 * Add a layer to the tree. `def`: {id, group: "city"|"ops", label (i18n key), roles?: [...],
 * getShow(): bool, setShow(bool), available?: bool, error?: string}.
 */
export function registerLayer(def) {
  registry.set(def.id, { available: true, ...def });
  renderTree();
}

export function updateLayer(id, patch) {
  const def = registry.get(id);
  if (!def) return;
  Object.assign(def, patch);
  renderTree();
}

let sceneRef = null;
/** The scene to re-render after a layer switch (render-on-demand mode). */
export function setScene(scene) {
  sceneRef = scene;
}

export function setLayerVisible(id, show) {
  const def = registry.get(id);
  if (!def || !def.available) return false;
  def.setShow(Boolean(show));
  sceneRef?.requestRender();
  renderTree();
  return true;
}

export function layerVisible(id) {
  const def = registry.get(id);
  return Boolean(def && def.available && def.getShow());
}

export function layerIds() {
  return [...registry.keys()];
}

function allowed(def) {
  return !def.roles || def.roles.includes(getUser().role);
}

function renderTree() {
  const root = document.getElementById("layer-groups");
  if (!root) return;
  const groups = ["city", "ops"];
  root.replaceChildren(...groups.map((group) => {
    const defs = [...registry.values()].filter((d) => d.group === group && allowed(d));
    if (!defs.length) return null;
    return h("fieldset", { class: "layer-group" },
      h("legend", {}, t(`layers.groups.${group}`)),
      defs.map((d) => h("label", { class: d.available ? "" : "unavailable", title: d.error || null },
        h("input", {
          type: "checkbox", dataset: { layer: d.id }, checked: d.available && d.getShow(),
          disabled: !d.available,
          onchange: (ev) => setLayerVisible(d.id, ev.target.checked),
        }),
        " ", t(d.label, {}, d.id), d.available ? "" : ` ${t("layers.unavailable")}`)));
  }).filter(Boolean));
}

// ------------------------------------------------------------------------------------ catalog
export async function loadCatalog() {
  try {
    return await getJson("/tilesets");
  } catch (err) {
    console.error("tileset catalog unavailable", err);
    return { layers: [], terrain: { url: "/terrain" }, error: err.message };
  }
}

/** The 3D Tiles layers of the catalog (its `layers` also list the terrain, kind "terrain"). */
export function tileLayers(catalog) {
  return (catalog.layers || []).filter((l) => (l.kind ? l.kind === "3dtiles" : /tileset\.json$/.test(l.url || "")));
}

/** The terrain URL: `terrain.url`, else a layer of kind "terrain", else null (no terrain built). */
export function terrainUrl(catalog) {
  return catalog.terrain?.url ?? (catalog.layers || []).find((l) => l.kind === "terrain")?.url ?? null;
}

/** [west, south, east, north] in radians covering every 3D Tiles layer's region (or null). */
export function catalogRectangle(catalog) {
  const regions = tileLayers(catalog).map((l) => l.region).filter((r) => Array.isArray(r) && r.length >= 4);
  if (!regions.length) return null;
  return new Cesium.Rectangle(
    Math.min(...regions.map((r) => r[0])), Math.min(...regions.map((r) => r[1])),
    Math.max(...regions.map((r) => r[2])), Math.max(...regions.map((r) => r[3])),
  );
}

// ------------------------------------------------------------------------------------ tilesets
const TILESET_OPTIONS = {
  buildings: { maximumScreenSpaceError: 16 },
  roads: { maximumScreenSpaceError: 16 },
  vegetation: { maximumScreenSpaceError: 24 },
  furniture: { maximumScreenSpaceError: 24 },
  pointcloud: { maximumScreenSpaceError: 16 },
};
const ORDER = ["buildings", "roads", "vegetation", "furniture", "pointcloud"];

/**
 * Load every catalog layer as a Cesium3DTileset (failures are reported, never fatal).
 * Returns {name: tileset} for those that loaded; `errors` collects messages.
 */
export async function addTilesets(viewer, catalog, errors) {
  const tilesets = {};
  const layers = tileLayers(catalog).sort((a, b) => rank(a.name) - rank(b.name));
  await Promise.all(layers.map(async (layer) => {
    const id = layer.name;
    try {
      const tileset = await Cesium.Cesium3DTileset.fromUrl(layer.url, {
        ...(TILESET_OPTIONS[id] || { maximumScreenSpaceError: 16 }),
        showCreditsOnScreen: false,
      });
      tileset.onemapName = id;
      if (id === "buildings") tileset.style = buildingStyle("use");
      if (id === "pointcloud") {
        tileset.pointCloudShading.attenuation = true;
        tileset.pointCloudShading.maximumAttenuation = 3;
      }
      tileset.tileFailed.addEventListener((e) => {
        errors.push(`${id}: tile ${e.url}: ${e.message}`);
      });
      viewer.scene.primitives.add(tileset);
      tilesets[id] = tileset;
      registerLayer({
        id, group: "city", label: `layers.${id}`,
        getShow: () => tileset.show, setShow: (v) => { tileset.show = v; },
      });
    } catch (err) {
      const msg = t("layers.failed", { name: id, msg: err.message || err });
      errors.push(msg);
      console.error(msg, err);
      registerLayer({ id, group: "city", label: `layers.${id}`, available: false, error: msg,
        getShow: () => false, setShow: () => {} });
    }
  }));
  return tilesets;
}

function rank(name) {
  const i = ORDER.indexOf(name);
  return i < 0 ? ORDER.length : i;
}

export function initBuildingStyleSwitch(getBuildings) {
  const inputs = document.querySelectorAll('input[name="building-style"]');
  let current = "use";
  for (const input of inputs) {
    input.addEventListener("change", () => {
      if (!input.checked) return;
      current = input.value;
      const buildings = getBuildings();
      if (buildings) buildings.style = buildingStyle(current);
      document.body.dataset.buildingStyle = current;
      sceneRef?.requestRender();
      renderLegend(current);
    });
  }
  renderLegend(current);
  document.body.dataset.buildingStyle = current;
  document.addEventListener("onemap:lang", () => { renderLegend(current); renderTree(); });
  document.addEventListener("onemap:auth", renderTree);
}

// ------------------------------------------------------------------------------------ terrain
/**
 * Quantized-mesh terrain from the API (`/terrain/layer.json`). Resolves to
 * {provider | null, error | null} once the provider is ready or has failed; the globe keeps the
 * ellipsoid when it failed. Registers the "terrain" and "water" toggles.
 */
export function setupTerrain(viewer, url, errors) {
  const globe = viewer.scene.globe;
  const ellipsoid = new Cesium.EllipsoidTerrainProvider();
  let provider = null;
  let showTerrain = true;
  if (!url) { // the tiles folder has no terrain: plain ellipsoid, the toggle greyed out
    registerLayer({ id: "terrain", group: "city", label: "layers.terrain", available: false,
      getShow: () => false, setShow: () => {} });
    return Promise.resolve({ provider: null, error: null });
  }
  const settled = Cesium.CesiumTerrainProvider.fromUrl(url, { requestVertexNormals: true, requestWaterMask: true })
    .then((p) => {
      provider = p;
      if (showTerrain) viewer.scene.terrainProvider = p;
      return { provider: p, error: null };
    }, (err) => {
      const msg = t("layers.failed", { name: t("layers.terrain"), msg: err.message || err });
      errors.push(msg);
      console.error(msg, err);
      updateLayer("terrain", { available: false, error: msg });
      return { provider: null, error: msg };
    });
  registerLayer({
    id: "terrain", group: "city", label: "layers.terrain",
    getShow: () => showTerrain,
    setShow: (v) => {
      showTerrain = v;
      viewer.scene.terrainProvider = v && provider ? provider : ellipsoid;
    },
  });
  registerLayer({
    id: "water", group: "city", label: "layers.water",
    getShow: () => globe.showWaterEffect,
    setShow: (v) => { globe.showWaterEffect = v; },
  });
  return settled;
}

// ------------------------------------------------------------------------------------ readiness
/**
 * Resolves once the globe and every shown tileset report all tiles loaded for `frames`
 * consecutive rendered frames (so a camera move that has not been traversed yet can't fool it).
 */
export function whenTilesLoaded(viewer, tilesets, { frames = 3 } = {}) {
  return new Promise((resolve) => {
    let stable = 0;
    const scene = viewer.scene;
    const remove = scene.postRender.addEventListener(() => {
      const ok = scene.globe.tilesLoaded && tilesets.every((ts) => !ts.show || ts.tilesLoaded);
      stable = ok ? stable + 1 : 0;
      if (stable >= frames) {
        remove();
        resolve();
      } else {
        scene.requestRender(); // render-on-demand mode: keep frames coming until settled
      }
    });
    scene.requestRender();
  });
}
