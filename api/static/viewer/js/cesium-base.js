// Where Cesium finds its Workers, Assets and Widgets (served by the API from node_modules/cesium).
window.CESIUM_BASE_URL = "/cesium/";
// Cesium.js (the IIFE build) sets CESIUM_WORKERS to its worker bundle's source and starts every
// worker as a blob: that importScripts() another blob: — which the viewer's CSP (script-src without
// blob:, inherited by blob: workers) refuses inside the worker: geometry (ground polygons), terrain
// decoding, etc. fail with "Failed to execute 'importScripts'". Kept undefined, Cesium starts the
// same-origin ES-module workers from /cesium/Workers/ instead (worker-src 'self').
Object.defineProperty(window, "CESIUM_WORKERS", { get: () => undefined, set: () => {}, configurable: false });
