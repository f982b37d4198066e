// Where Cesium finds its Workers, Assets and Widgets (served by the API from node_modules/cesium).
window.CESIUM_BASE_URL = "/cesium/";
