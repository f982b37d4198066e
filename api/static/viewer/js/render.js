// Render-on-demand that finishes what it starts. The planner view renders only when asked
// (requestRenderMode). Cesium builds entity geometry — ground-draped polygons (communities by
// target status, grid cells, geofences, camera viewsheds, hot-spot cells), clamped polylines
// (isochrones, outlines, routes), billboard images — asynchronously: a primitive advances one step
// per *rendered* frame (start a web-worker job, pick its result up, combine, upload, show), and a
// worker job that finishes asks for no frame. In render-on-demand mode such a primitive waited for
// the next camera move: layers switched on stayed undrawn. The keeper below asks for frames while
// any primitive of the scene is not ready (or the entity display still builds), one more after,
// and tells waiters when the scene has settled: body[data-scene] = "pending" | "settled".

/** Give up asking for frames after this long pending without a pause (a primitive that never readies). */
const MAX_PENDING_MS = 300_000;
/** Rendered frames without anything pending before the scene counts as settled. */
const SETTLED_FRAMES = 2;

function isCollection(p) {
  return typeof p?.get === "function" && typeof p.length === "number" && typeof p.add === "function";
}

/** Number of primitives under `collection` (shown nested collections walked) not ready to draw. */
export function pendingPrimitives(collection) {
  let n = 0;
  for (let i = 0; i < collection.length; i++) {
    const p = collection.get(i);
    if (isCollection(p)) {
      if (p.show !== false) n += pendingPrimitives(p);
    } else if (p && p.ready === false && !p.isDestroyed?.()) {
      // hidden leaves count too: the entity batches build their ground primitives hidden and
      // show them once ready
      n += 1;
    }
  }
  return n;
}

/** What still builds: primitives of the scene, and whether the entity display is up to date. */
export function sceneBacklog(viewer) {
  const scene = viewer.scene;
  return {
    primitives: pendingPrimitives(scene.primitives) + pendingPrimitives(scene.groundPrimitives),
    // Viewer._onTick sets canAnimate to DataSourceDisplay.update()'s answer every tick: false while
    // a geometry batch is not ready (dataSourceDisplay.ready becomes true once and stays true)
    entities: viewer.clockViewModel.canAnimate === false,
  };
}

let settle = null; // whenSettled of the installed keeper
let warned = false;

/**
 * Keep requesting frames while anything builds (installed once, by app.js); whenSettled() then
 * tells when nothing has been pending for SETTLED_FRAMES rendered frames.
 */
export function installRenderKeeper(viewer) {
  const scene = viewer.scene;
  let pendingSince = null;
  let quietFrames = 0;
  let waiters = [];
  const mark = (state) => { if (document.body.dataset.scene !== state) document.body.dataset.scene = state; };

  // raised every animation frame, rendered or not (Scene.render → postUpdate)
  scene.postUpdate.addEventListener(() => {
    const backlog = sceneBacklog(viewer);
    const pending = backlog.primitives > 0 || backlog.entities;
    if (pending) {
      quietFrames = 0;
      pendingSince ??= performance.now();
      if (performance.now() - pendingSince < MAX_PENDING_MS) {
        scene.requestRender();
      } else if (!warned) {
        warned = true;
        console.warn("render keeper: primitives still not ready after", MAX_PENDING_MS, "ms", backlog);
      }
      mark("pending");
    } else if (pendingSince !== null) {
      pendingSince = null;
      scene.requestRender(); // the frame that draws what just became ready
    }
  });
  scene.postRender.addEventListener(() => {
    if (pendingSince !== null) return;
    quietFrames += 1;
    if (quietFrames < SETTLED_FRAMES) {
      scene.requestRender();
      return;
    }
    mark("settled");
    const done = waiters;
    waiters = [];
    for (const resolve of done) resolve();
  });

  settle = () => {
    quietFrames = 0;
    mark("pending");
    scene.requestRender();
    return new Promise((resolve) => waiters.push(resolve));
  };
  return whenSettled;
}

/** Resolves once the scene has drawn everything it is building (entities just added included). */
export function whenSettled() {
  return settle ? settle() : Promise.resolve();
}
