// Bootstrap: the Cesium viewer (fully offline), the catalog of tilesets and terrain, every module,
// the tool buttons, readiness (body[data-ready="true"]) and window.onemap for tests and monitors.

import { initAccess, toggleAccess } from "./access.js";
import { initAuth } from "./auth.js";
import { initBigscreen } from "./bigscreen.js";
import { initCameras, openCameraById } from "./cameras.js";
import { initCivil, toggleTargets } from "./civil.js";
import { initEvents, toggleHeatmap } from "./events.js";
import { initFeatures } from "./features.js";
import { initGrid } from "./grid.js";
import { setupImagery } from "./imagery.js";
import { applyI18n, getLang, setLang, t } from "./i18n.js";
import * as layers from "./layers.js";
import * as live from "./live.js";
import * as measure from "./measure.js";
import { flyToWorker, initPatrol, togglePatrolPane } from "./patrol.js";
import { initPicking } from "./picking.js";
import { installRenderKeeper, whenSettled } from "./render.js";
import { initStats, toggleStats } from "./stats.js";
import { initUi, toast } from "./ui.js";

const params = new URLSearchParams(location.search);
const MODE = params.get("mode") === "bigscreen" ? "bigscreen" : "planner";
const errors = [];

/** window.onemap: the handles tests, scripts and wall-screen monitors use. */
const onemap = {
  mode: MODE, errors, viewer: null, tilesets: {}, catalog: null, ready: false, readyAt: null,
  layers, measure, live, t, setLang,
};
window.onemap = onemap;
window.addEventListener("error", (ev) => errors.push(`page: ${ev.message}`));
window.addEventListener("unhandledrejection", (ev) => errors.push(`promise: ${ev.reason?.message ?? ev.reason}`));

function createViewer() {
  Cesium.Ion.defaultAccessToken = "";
  // Start over Bengbu (not the whole globe) so the first frames don't fetch world-wide tiles.
  Cesium.Camera.DEFAULT_VIEW_RECTANGLE = Cesium.Rectangle.fromDegrees(117.36, 32.9, 117.42, 32.96);
  Cesium.Camera.DEFAULT_VIEW_FACTOR = 0;
  const big = MODE === "bigscreen";
  const viewer = new Cesium.Viewer("cesium", {
    baseLayer: Cesium.ImageryLayer.fromProviderAsync(
      Cesium.TileMapServiceImageryProvider.fromUrl(Cesium.buildModuleUrl("Assets/Textures/NaturalEarthII")),
    ),
    baseLayerPicker: false,
    geocoder: false,
    homeButton: !big,
    sceneModePicker: false,
    navigationHelpButton: false,
    fullscreenButton: !big,
    animation: !big,
    timeline: !big,
    infoBox: false,
    selectionIndicator: false,
    // Planners' view renders on demand (idle = no frames, no CPU); the wall screen switches to it
    // once its modules are set up (bigscreen.js renderOnDemand).
    // ?render=continuous forces a render loop (benchmarks).
    requestRenderMode: !big && params.get("render") !== "continuous",
    maximumRenderTimeChange: 0,
    shouldAnimate: big,
    contextOptions: { webgl: { preserveDrawingBuffer: true } }, // screenshots via canvas.toDataURL()
  });
  const scale = Number(params.get("scale"));
  if (scale > 0 && scale <= 2) viewer.resolutionScale = scale;
  const scene = viewer.scene;
  scene.globe.depthTestAgainstTerrain = true;
  scene.globe.showWaterEffect = true;
  scene.postProcessStages.fxaa.enabled = false;
  scene.fog.enabled = true;
  viewer.cesiumWidget.creditContainer.classList.add("credits");
  if (big) scene.globe.baseColor = Cesium.Color.fromCssColorString("#0b1220");
  return viewer;
}

/**
 * The district's extent: the catalog regions when every layer has one, else the union of the
 * loaded tilesets' bounding spheres, else Jiefang Street's approximate centre.
 */
function districtExtent(catalog, tilesets) {
  const rect = layers.catalogRectangle(catalog);
  const spheres = Object.values(tilesets).map((ts) => ts.boundingSphere).filter(Boolean);
  const allHaveRegions = layers.tileLayers(catalog).every((l) => Array.isArray(l.region));
  if (rect && allHaveRegions) {
    const c = Cesium.Rectangle.center(rect);
    const sw = Cesium.Cartesian3.fromRadians(rect.west, rect.south);
    const ne = Cesium.Cartesian3.fromRadians(rect.east, rect.north);
    const radius = Math.max(200, Cesium.Cartesian3.distance(sw, ne) / 2);
    return { center: [Cesium.Math.toDegrees(c.longitude), Cesium.Math.toDegrees(c.latitude)], radius, rect };
  }
  if (spheres.length) {
    const sphere = Cesium.BoundingSphere.fromBoundingSpheres(spheres);
    const c = Cesium.Cartographic.fromCartesian(sphere.center);
    const r = Math.max(200, sphere.radius);
    const dLat = r / 6371000;
    const dLon = dLat / Math.cos(c.latitude);
    return {
      center: [Cesium.Math.toDegrees(c.longitude), Cesium.Math.toDegrees(c.latitude)], radius: r,
      rect: new Cesium.Rectangle(c.longitude - dLon, c.latitude - dLat, c.longitude + dLon, c.latitude + dLat),
    };
  }
  return { center: [117.39, 32.93], radius: 1500, rect: null };
}

function homeView(viewer, district) {
  const [lon, lat] = district.center;
  const ground = viewer.scene.globe.getHeight(Cesium.Cartographic.fromDegrees(lon, lat)) ?? 20;
  const sphere = new Cesium.BoundingSphere(Cesium.Cartesian3.fromDegrees(lon, lat, ground), district.radius);
  viewer.camera.flyToBoundingSphere(sphere, {
    offset: new Cesium.HeadingPitchRange(0, Cesium.Math.toRadians(-42), district.radius * 2.1), duration: 0,
  });
  viewer.camera.lookAtTransform(Cesium.Matrix4.IDENTITY);
}

function downloadScreenshot() {
  try {
    const url = onemap.screenshot();
    const stamp = new Date().toISOString().replace(/[:T]/g, "-").slice(0, 19);
    const a = document.createElement("a");
    a.href = url;
    a.download = `onemap-${stamp}.png`;
    document.body.append(a);
    a.click();
    a.remove();
    toast(t("shot.done"));
  } catch (err) {
    console.error(err);
    toast(t("shot.failed"));
  }
}

function initToolbar() {
  const exclusive = { stats: toggleStats, heatmap: toggleHeatmap, patrol: togglePatrolPane, access: toggleAccess, targets: toggleTargets };
  const setPressed = (tool, on) => document.querySelector(`[data-tool="${tool}"]`)?.setAttribute("aria-pressed", String(on));
  for (const button of document.querySelectorAll("[data-tool]")) {
    button.addEventListener("click", () => {
      const tool = button.dataset.tool;
      if (tool === "layers") {
        const tree = document.getElementById("layer-tree");
        tree.hidden = !tree.hidden;
        setPressed("layers", !tree.hidden);
      } else if (tool.startsWith("measure-")) {
        const kind = tool.slice("measure-".length);
        if (measure.active() === kind) measure.stop(true);
        else measure.start(kind);
      } else if (tool === "screenshot") {
        downloadScreenshot();
      } else if (exclusive[tool]) {
        const on = button.getAttribute("aria-pressed") !== "true";
        for (const [other, toggle] of Object.entries(exclusive)) {
          if (other !== tool && document.querySelector(`[data-tool="${other}"]`)?.getAttribute("aria-pressed") === "true") {
            toggle(false);
            setPressed(other, false);
          }
        }
        exclusive[tool](on);
        setPressed(tool, on);
      }
    });
  }
  const lang = document.getElementById("lang-toggle");
  const syncLang = () => {
    const zh = getLang() === "zh";
    lang.textContent = zh ? "EN" : "中文";
    lang.lang = zh ? "en" : "zh-CN";
    lang.setAttribute("aria-label", zh ? "Switch to English" : "切换到中文");
  };
  lang.addEventListener("click", () => { setLang(getLang() === "zh" ? "en" : "zh"); syncLang(); });
  syncLang();
}

async function main() {
  document.body.dataset.mode = MODE;
  document.body.classList.toggle("bigscreen-mode", MODE === "bigscreen");
  applyI18n(document);
  initUi();
  initToolbar();
  const authReady = initAuth();

  const viewer = createViewer();
  onemap.viewer = viewer;
  /** Stop/restart the render loop (a page screenshot waits for a frame; frames are slow in software GL). */
  onemap.pauseRendering = () => { viewer.useDefaultRenderLoop = false; };
  onemap.resumeRendering = () => { viewer.useDefaultRenderLoop = true; viewer.scene.requestRender(); };
  onemap.screenshot = () => {
    viewer.render();
    return viewer.scene.canvas.toDataURL("image/png");
  };
  layers.setScene(viewer.scene);
  // Render-on-demand: frames while geometry builds in workers (render.js), and any entity
  // added/removed anywhere asks for a frame.
  installRenderKeeper(viewer);
  onemap.whenSettled = whenSettled;
  const watch = (ds) => ds.entities.collectionChanged.addEventListener(() => viewer.scene.requestRender());
  viewer.dataSources.dataSourceAdded.addEventListener((_c, ds) => watch(ds));
  viewer.entities.collectionChanged.addEventListener(() => viewer.scene.requestRender());
  const catalog = await layers.loadCatalog();
  if (catalog.error) errors.push(`catalog: ${catalog.error}`);
  onemap.catalog = catalog;
  const terrain = layers.setupTerrain(viewer, layers.terrainUrl(catalog), errors);
  onemap.imagery = await setupImagery(viewer, catalog, errors);
  const tilesets = await layers.addTilesets(viewer, catalog, errors);
  onemap.tilesets = tilesets;
  layers.initBuildingStyleSwitch(() => tilesets.buildings);
  const district = districtExtent(catalog, tilesets);
  onemap.district = district;
  if (district.rect) {
    Cesium.Camera.DEFAULT_VIEW_RECTANGLE = district.rect;
    Cesium.Camera.DEFAULT_VIEW_FACTOR = 0.2;
  }
  homeView(viewer, district);
  viewer.homeButton?.viewModel.command.beforeExecute.addEventListener((e) => {
    e.cancel = true;
    homeView(viewer, district);
  });

  await authReady;
  const picking = initPicking(viewer, tilesets);
  onemap.pickAt = picking.pickAt;
  onemap.pickBuilding = picking.pickBuilding;
  onemap.featureIndex = picking.featureIndex;
  onemap.features = initFeatures(viewer);
  onemap.grid = initGrid(viewer);
  onemap.cameras = initCameras(viewer);
  onemap.openCamera = openCameraById;
  onemap.patrol = initPatrol(viewer, { center: district.center });
  onemap.events = initEvents(viewer, { openCameraPanel: openCameraById, flyToWorkerFn: flyToWorker });
  onemap.measure = { ...measure, ...measure.initMeasure(viewer) };
  onemap.stats = initStats();
  onemap.access = initAccess(viewer, { buildings: () => tilesets.buildings });
  onemap.civil = initCivil(viewer, { bigscreen: MODE === "bigscreen" });
  if (MODE === "bigscreen") {
    onemap.bigscreen = initBigscreen(viewer, { district });
    document.getElementById("layer-tree").hidden = true;
  }
  live.startStream();
  document.addEventListener("onemap:auth", () => live.restartStream());

  const terrainResult = await terrain;
  if (terrainResult.provider) homeView(viewer, district); // ground height known now
  await layers.whenTilesLoaded(viewer, Object.values(tilesets));
  onemap.ready = true;
  onemap.readyAt = performance.now();
  document.body.dataset.ready = "true";
  document.body.dataset.errors = String(errors.length);
  document.dispatchEvent(new CustomEvent("onemap:ready"));
  if (MODE === "bigscreen" && params.get("tour") !== "off") onemap.bigscreen.setTour(true);
}

main().catch((err) => {
  console.error(err);
  errors.push(`bootstrap: ${err.message ?? err}`);
  document.body.dataset.ready = "error";
});
