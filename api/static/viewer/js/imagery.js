// Imagery: Natural Earth II (bundled with Cesium) as the base, the district orthophoto
// (catalog layer of kind "imagery", a TMS pyramid under /imagery/) on top of it, and, only when
// the server is configured with one (ONEMAP_BASEMAP_URL, GET /viewer-config), an online WMTS/XYZ
// base map the user can switch to. Nothing here requests a foreign host unless that is chosen.

import { getJson } from "./api.js";
import { registerLayer } from "./layers.js";
import { t } from "./i18n.js";

function tilingScheme(name) {
  return name === "WorldCRS84Quad" ? new Cesium.GeographicTilingScheme() : new Cesium.WebMercatorTilingScheme();
}

function onlineProvider(cfg) {
  const common = {
    url: cfg.url, tilingScheme: tilingScheme(cfg.scheme), maximumLevel: cfg.maximumLevel,
    credit: cfg.credit || undefined,
  };
  if (cfg.subdomains) common.subdomains = cfg.subdomains.split("");
  if (cfg.kind === "wmts") {
    return new Cesium.WebMapTileServiceImageryProvider({
      ...common, layer: cfg.layer, style: cfg.style || "default", tileMatrixSetID: cfg.tileMatrixSetID,
    });
  }
  return new Cesium.UrlTemplateImageryProvider(common);
}

/**
 * Add the orthophoto layer and the base-map switch. Resolves to {ortho: ImageryLayer | null,
 * setBasemap(name), basemap: () => name}; failures go to `errors`, never fatal.
 */
export async function setupImagery(viewer, catalog, errors) {
  const layers = viewer.imageryLayers;
  const natural = layers.get(0);
  const entry = (catalog.layers || []).find((l) => l.kind === "imagery");
  let ortho = null;
  if (entry) {
    try {
      const provider = await Cesium.TileMapServiceImageryProvider.fromUrl(entry.url);
      ortho = layers.addImageryProvider(provider);
      ortho.onemapName = "imagery";
      provider.errorEvent.addEventListener((e) => errors.push(`imagery: tile ${e.x}/${e.y}/${e.level}: ${e.message}`));
    } catch (err) {
      errors.push(t("layers.failed", { name: t("layers.imagery"), msg: err.message || err }));
    }
  }
  registerLayer({
    id: "imagery", group: "city", label: "layers.imagery", available: Boolean(ortho),
    getShow: () => Boolean(ortho?.show), setShow: (v) => { if (ortho) ortho.show = v; },
  });

  let config = { basemap: null };
  try {
    config = await getJson("/viewer-config");
  } catch (err) {
    console.warn("viewer config unavailable", err);
  }
  let online = null;
  let current = "naturalearth";
  const setBasemap = (name) => {
    if (name === "online" && config.basemap) {
      if (!online) {
        online = layers.addImageryProvider(onlineProvider(config.basemap), 1);
      }
      online.show = true;
      natural.show = false;
      current = "online";
    } else {
      if (online) online.show = false;
      natural.show = true;
      current = "naturalearth";
    }
    if (ortho) layers.raiseToTop(ortho);
    viewer.scene.requestRender();
  };
  const onlineLabel = document.querySelector("[data-basemap-online]");
  if (onlineLabel) onlineLabel.hidden = !config.basemap;
  for (const input of document.querySelectorAll('input[name="basemap"]')) {
    input.addEventListener("change", () => { if (input.checked) setBasemap(input.value); });
  }
  return { ortho, setBasemap, basemap: () => current, config };
}
