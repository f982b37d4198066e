"""Spatial partitions and the engine that runs them: in-process, or on Dask distributed.

A partitioned pipeline cuts its root square into the quadtree cells of one level
(:func:`grid_cells`), runs one task per cell and then one per parent cell, level by level. A task
gets only small, picklable arguments (the source path, the options, a cell key) and writes its
results as files into its own folder of a :class:`WorkDir`; what it returns is a small JSON-able
summary. A finished task leaves ``done.json`` (written last, atomically): a run killed mid-way
and started again with the same inputs and options finds the same work folder and skips the
tasks that are done.

Engines (:class:`Engine`): ``None`` runs the tasks one after the other in this process;
``local:N`` starts a Dask ``LocalCluster`` of N worker processes (one thread each); any other
address (``tcp://host:8786``) connects to an existing Dask scheduler, whose workers must have
onemap installed and see the same paths (source, output). ``ONEMAP_DASK_SCHEDULER`` is the
default address.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import logging
import os
import re
import resource
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError

log = logging.getLogger(__name__)

DONE = "done.json"
SUMMARY = "summary.json"


# ------------------------------------------------------------------------------------ cells
@dataclass(frozen=True)
class Cell:
    """A quadtree cell (same z/x/y scheme as :func:`tiles.tileset.build_quadtree`)."""

    level: int
    x: int
    y: int
    bounds: tuple[float, float, float, float]

    @property
    def key(self) -> str:
        return f"{self.level}/{self.x}/{self.y}"

    @property
    def parent_key(self) -> str:
        return f"{self.level - 1}/{self.x // 2}/{self.y // 2}"


def cell_bounds(square: Sequence[float], level: int, x: int, y: int) -> tuple[float, float, float, float]:
    side = (square[2] - square[0]) / 2 ** level
    x0, y0 = square[0] + x * side, square[1] + y * side
    return float(x0), float(y0), float(x0 + side), float(y0 + side)


def cell_index(xy: np.ndarray, square: Sequence[float], level: int) -> tuple[np.ndarray, np.ndarray]:
    """Column and row of the level-``level`` cell holding each point (half-open cells, clamped)."""
    xy = np.asarray(xy, float).reshape(-1, 2)
    n = 2 ** level
    side = (square[2] - square[0]) / n
    ix = np.clip(np.floor((xy[:, 0] - square[0]) / side), 0, n - 1).astype(np.int64)
    iy = np.clip(np.floor((xy[:, 1] - square[1]) / side), 0, n - 1).astype(np.int64)
    return ix, iy


def grid_cells(square: Sequence[float], level: int,
               extent: Sequence[float] | None = None) -> list[Cell]:
    """The level-``level`` cells of ``square`` meeting ``extent`` (all of them without one)."""
    n = 2 ** level
    lo_x = lo_y = 0
    hi_x = hi_y = n - 1
    if extent is not None:
        (lo_x, hi_x), (lo_y, hi_y) = (
            tuple(int(v) for v in cell_index(np.array([[extent[0], extent[1]], [extent[2], extent[3]]]),
                                             square, level)[k]) for k in (0, 1))
    return [Cell(level, x, y, cell_bounds(square, level, x, y))
            for y in range(lo_y, hi_y + 1) for x in range(lo_x, hi_x + 1)]


def auto_level(n_features: int, per_partition: int, square: Sequence[float] | None = None,
               extent: Sequence[float] | None = None, max_level: int = 8) -> int:
    """The smallest level whose cells meeting ``extent`` hold ≤ ``per_partition`` features on
    average (0 when everything fits in one partition). Partitions then hold between a quarter of
    and ``per_partition`` features whatever the input's size: a worker's memory does not grow."""
    if n_features <= per_partition:
        return 0
    level = 1
    while level < max_level:
        cells = len(grid_cells(square, level, extent)) if square is not None else 4 ** level
        if n_features <= per_partition * cells:
            break
        level += 1
    return level


# ------------------------------------------------------------------------------------ source probe
PARTITIONED_SUFFIXES = (".gpkg", ".fgb", ".shp", ".geojson", ".json", ".gml", ".sqlite", ".parquet", ".geoparquet")


@dataclass(frozen=True)
class SourceProbe:
    """What planning a partitioned run learns from the source without reading its features."""

    layer: str | None  # the source layer (GeoPackage table...)
    n: int  # feature count
    layer_crs: Any  # pyproj CRS of the source
    working: Any  # pyproj CRS of the run (metres)
    extent: tuple[float, float, float, float]  # the declared extent, working CRS
    square: tuple[float, float, float, float]  # the root square, working CRS
    level: int  # the partition level (> 0)
    frame: tuple[float, float, float]  # lon, lat, ellipsoidal h of the ENU origin (active geoid)
    fid_base: int  # the first feature id (rows are fids - fid_base)


def _metadata(path: Path, options: Any, mapping: Any) -> tuple[str | None, int, Any, Any] | None:
    """(layer, feature count, extent or None, declared CRS) from the file's metadata (GeoParquet:
    :func:`core.delivery.geoparquet.probe`, the extent only when the run can be partitioned)."""
    from core.delivery import geoparquet as gp

    try:
        if path.suffix.lower() in gp.PARQUET_SUFFIXES:
            found = gp.probe(path, lambda n: n > options.partition_features or options.partition_level is not None)
            return None if found is None else (None, *found)
        import pyogrio

        from core.delivery.read import pick_layer

        layer = pick_layer(path, options.layer or mapping.layer)
        info = pyogrio.read_info(path, layer=layer, force_feature_count=True, force_total_bounds=True)
        return layer, int(info.get("features") or 0), info.get("total_bounds"), info.get("crs")
    except Exception:  # noqa: BLE001 - unreadable: the one-piece path reports it properly
        return None


def probe_source(src: Path | str, options: Any, mapping: Any) -> SourceProbe | None:
    """Plan a partitioned run from the source's metadata: feature count, declared extent and CRS,
    the root square, the level (``options.partition_level``, else :func:`auto_level` with
    ``options.partition_features``) and the ENU origin on the DEM at the square's centre. None when
    the one-piece build applies: few features, a format read whole (CSV, GeoParquet of
    GeoArrow-native geometry), ``partition_level`` 0, no CRS or extent, an unreadable file (the
    one-piece path reports it). Heights use the active geoid (:func:`core.frames.using_geoid`)."""
    from pyproj import CRS, Transformer

    from core.frames import geoid_undulation, projected_to_lonlat, working_crs_for
    from tiles.tileset import snapped_square

    path = Path(src)
    if path.suffix.lower() not in PARTITIONED_SUFFIXES or not path.is_file() or options.partition_level == 0:
        return None
    found = _metadata(path, options, mapping)
    if found is None:
        return None
    layer, n, bounds, declared = found
    declared = declared or options.src_crs or mapping.crs
    if n <= options.partition_features and options.partition_level is None:
        return None
    if n == 0 or bounds is None or not np.all(np.isfinite(bounds)) or declared is None:
        return None
    layer_crs = CRS.from_user_input(declared)
    working = working_crs_for(tuple(bounds), layer_crs)
    wb = Transformer.from_crs(layer_crs, working, always_xy=True).transform_bounds(*bounds, densify_pts=21)
    square = snapped_square(np.array([[wb[0], wb[1]], [wb[2], wb[3]]]), 250.0)
    level = options.partition_level
    if level is None:
        level = auto_level(n, options.partition_features, square, wb)
    if level <= 0:
        return None
    cx, cy = 0.5 * (square[0] + square[2]), 0.5 * (square[1] + square[3])
    lon, lat = projected_to_lonlat(np.array([cx]), np.array([cy]), working)
    h0 = 0.0
    if options.dem is not None:
        h = open_ground(options.dem, (cx - 50, cy - 50, cx + 50, cy + 50), working).at_points(
            np.array([cx]), np.array([cy]), working)
        h0 = round(float(h[0]), 0) if np.isfinite(h[0]) else 0.0
    h_ell = h0 + float(geoid_undulation(lon, lat)[0])
    from core.delivery.geoparquet import PARQUET_SUFFIXES

    fid_base = 0  # GeoParquet: the feature id is the 0-based row
    if path.suffix.lower() not in PARQUET_SUFFIXES:
        import pyogrio

        first = pyogrio.read_dataframe(path, layer=layer, max_features=1, fid_as_index=True, read_geometry=False)
        fid_base = int(first.index[0]) if len(first) else 0
    return SourceProbe(layer, n, layer_crs, working, tuple(float(v) for v in wb), tuple(square), int(level),
                       (float(lon[0]), float(lat[0]), h_ell), fid_base)


def open_ground(dem: Path | str, bounds: tuple[float, ...], crs: Any) -> Any:
    """The DEM window under ``bounds`` (:class:`pipelines.ground.Ground`); a window off the DEM is
    all no-data (never the whole DEM)."""
    import rasterio
    import rasterio.errors
    from pyproj import CRS

    from pipelines.ground import Ground

    try:
        return Ground.open(dem, bounds=tuple(bounds), bounds_crs=crs)  # type: ignore[arg-type]
    except rasterio.errors.WindowError:
        with rasterio.open(dem) as ds:
            return Ground(Path(dem), CRS.from_user_input(ds.crs.to_wkt()), np.full((1, 1), np.nan), ds.transform)


# ------------------------------------------------------------------------------------ work dir
class WorkDir:
    """``OUT.partial-<hash>``: the partition outputs of one run, kept until it is published."""

    def __init__(self, out: Path, run_hash: str) -> None:
        out = Path(out).absolute()
        self.out = out
        self.path = out.parent / f"{out.name}.partial-{run_hash[:16]}"
        self.path.mkdir(parents=True, exist_ok=True)

    def task_dir(self, name: str) -> Path:
        return self.path / name.replace("/", "_")

    def done(self, name: str) -> dict[str, Any] | None:
        """The summary of a finished task, None when it has to run."""
        marker = self.task_dir(name) / DONE
        try:
            return json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def cleanup(self) -> None:
        """Delete this run's folder and stale ones of earlier runs into the same OUT."""
        pattern = re.compile(re.escape(self.out.name) + r"\.partial-[0-9a-f]+$")
        for p in self.out.parent.iterdir():
            if pattern.match(p.name) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)


def fresh_task_dir(path: Path) -> Path:
    """An empty folder for a task (a half-written one from a killed run is discarded)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def mark_done(path: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Write ``summary.json`` and then, atomically, the ``done.json`` marker."""
    data = json.dumps(summary, separators=(",", ":"))
    (path / SUMMARY).write_text(data, encoding="utf-8")
    tmp = path / (DONE + ".tmp")
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path / DONE)
    return summary


def peak_rss_mb() -> float:
    """Peak resident memory of this process (a Dask worker, or the client in-process), MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def release_memory() -> None:
    """Between two tasks of a long-lived process (a Dask worker, an in-process run): collect
    cycles, then hand the heap's free pages back to the OS (glibc ``malloc_trim``). Without it
    the heap kept what each task freed, fragmented, and a worker's peak crept up task after task
    (the 3.2 M-building city in one process: 275–355 MB held between partitions and a 391 MB
    peak after 18 of them; with it 230–240 MB held and 343 MB)."""
    global _LIBC
    gc.collect()
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        lib = ctypes.CDLL(name) if name else None
        _LIBC = lib if lib is not None and hasattr(lib, "malloc_trim") else False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC: Any = None


# ------------------------------------------------------------------------------------ engine
def resolve_address(address: str | None) -> str | None:
    """``--dask`` or, when not given, the ``ONEMAP_DASK_SCHEDULER`` setting ('' = in-process)."""
    if address is None:
        from core.settings import get_settings

        address = get_settings().tiles.dask_scheduler
    return address or None


# Dask's statistical profiler samples a worker's stack every 10 ms and keeps one call tree a
# second for the last distributed.admin.low-level-log-length (1,000) seconds, twice (all tasks;
# per task prefix). On partition tasks that history cost ≈ 0.3 MB of RSS a second: a worker's peak
# grew with the run's length, not with its partitions (measured: docs/scale.md, Memory). The
# workers of --dask local:N run without it; a remote cluster's workers are checked.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False}
PROFILE_ENV = "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"
PROFILE_HISTORY = 1000


def _worker_profiling() -> bool:
    import dask

    return bool(dask.config.get("distributed.worker.profile.enabled"))


#: the message of the ``unowned`` rejection: the orphans task reads by feature id the rows no
#: partition owned; one with a usable geometry would be accounted as written yet drawn in no tile
UNOWNED = "read by no partition (its geometry does not reach the partition of its reference point)"


class Engine:
    """Runs partition tasks; a context manager owning the Dask client/cluster it started."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.client: Any = None
        self.cluster: Any = None
        self.start_seconds = 0.0  # starting the LocalCluster / connecting

    def __enter__(self) -> Engine:
        if self.address is None:
            return self
        t0 = time.perf_counter()
        self._start()
        self.start_seconds = round(time.perf_counter() - t0, 3)
        return self

    def _start(self) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - a dependency
            raise InputError("--dask needs the dask[distributed] package", hint="pip install 'dask[distributed]'") \
                from exc
        m = re.fullmatch(r"local:(\d+)", self.address)
        if m:
            n = int(m.group(1))
            if n < 1:
                raise InputError(f"--dask {self.address}: at least one worker", hint="e.g. --dask local:2")
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        dashboard_address=":0", silence_logs=logging.ERROR, config=WORKER_CONFIG)
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(self.address, timeout="20s")
            except OSError as exc:
                raise InputError(f"cannot reach the Dask scheduler at {self.address}: {exc}",
                                 hint="start one (dask scheduler; dask worker ADDRESS) or use --dask local:N") \
                    from exc
            profiling = [w for w, on in self.client.run(_worker_profiling).items() if on]
            if profiling:
                log.warning("%d Dask worker(s) of %s run the statistical profiler: its history grows a "
                            "worker's memory for the first %s s of a run (start them with %s=False)",
                            len(profiling), self.address, PROFILE_HISTORY, PROFILE_ENV)

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    @property
    def workers(self) -> int:
        if self.client is None:
            return 1
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def map(self, fn: Callable[..., dict[str, Any]], calls: Iterable[tuple[Any, ...]],
            on_done: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Run ``fn(*args)`` for every args tuple; results (small dicts) in completion order."""
        calls = list(calls)
        results: list[dict[str, Any]] = []
        if self.client is None:
            for args in calls:
                res = fn(*args)
                results.append(res)
                if on_done:
                    on_done(res)
            return results
        from distributed import as_completed

        # a future is dropped as soon as its result is read: the worker then forgets the task
        pending = {f.key: f for f in (self.client.submit(fn, *args, pure=False) for args in calls)}
        try:
            for fut in as_completed(list(pending.values())):
                res = fut.result()
                del pending[fut.key]
                results.append(res)
                if on_done:
                    on_done(res)
        finally:
            for fut in pending.values():
                fut.cancel()
        return results


# ------------------------------------------------------------------------------------ the partition stage
@dataclass
class PartitionStage:
    """What :func:`run_partition_stage` leaves: every cell's summary, the folders to account."""

    summaries: dict[str, dict[str, Any]]  # cell key -> its summary (done.json, as ``load`` gives it)
    resumed: int  # cells already done when the run started
    folders: list[Path]  # every accounted task folder (cells, then orphans)
    orphans: int  # rows no cell owns, accounted by the orphans task
    partitions_done: float  # time.perf_counter() when the first pass over the cells ended


def run_partition_stage(engine: Engine, work: WorkDir, cells: Sequence[Cell], head: tuple[Any, ...],
                        task: Callable[..., dict[str, Any]], orphan_task: Callable[..., dict[str, Any]],
                        n_input: int, fid_base: int, src: str, read_rows: str,
                        load: Callable[[str], dict[str, Any]],
                        progress: Callable[[int, int], None] | None = None) -> PartitionStage:
    """Run ``task(*head, cell_key, dups)`` for every cell not done yet, then again for every cell
    that read a row whose id an earlier row of another cell has (``dups``: row → that id; the
    rows a task read are in its ``read_rows`` file), then ``orphan_task(*head, fids)`` for the rows
    no cell owns (its ``rows.npy``). ``load(key)`` gives a finished cell's summary (its
    ``done.json``, possibly trimmed); ``progress(done, total)`` follows the cells."""
    summaries: dict[str, dict[str, Any]] = {}
    todo = []
    for c in cells:
        if work.done(c.key) is not None:
            summaries[c.key] = load(c.key)
        else:
            todo.append(c)
    resumed = len(summaries)

    def finished(s: dict[str, Any]) -> None:
        summaries[s["cell"]] = load(s["cell"])
        if progress:
            progress(len(summaries), len(cells))

    if progress:
        progress(resumed, len(cells))
    engine.map(task, [(*head, c.key, None) for c in todo], finished)
    partitions_done = time.perf_counter()
    # duplicate ids across partitions: every task that read such a row runs again with it rejected
    dup_all: dict[int, str] = {}
    for d in cross_duplicates(work.path, summaries).values():
        dup_all.update(d)
    dup_rows = np.array(sorted(dup_all), np.int64)
    again = []
    for key, s in summaries.items():
        mine: dict[int, str] = {}
        if len(dup_rows):
            read = np.load(work.task_dir(key) / read_rows)
            mine = {int(r): dup_all[int(r)] for r in read[np.isin(read, dup_rows)]}
        if sorted(mine) != s.get("dups", []):
            again.append((*head, key, mine))
    engine.map(task, again, finished)
    seen = np.zeros(n_input, bool)
    for key, s in summaries.items():
        if s.get("owned_rows"):
            rows = np.load(work.task_dir(key) / "rows.npy")
            if len(rows) and (rows.min() < 0 or rows.max() >= n_input):
                raise InputError(f"{src}: feature ids are not numbered 1..n (a layer with deleted rows): "
                                 "partitions cannot number its rows",
                                 hint="build it in one piece with --partition-level 0, or rewrite the file (ogr2ogr)")
            seen[rows] = True
    orphans = np.flatnonzero(~seen)
    folders = [work.task_dir(k) for k in summaries]
    if len(orphans):
        done = work.done("orphans")
        if done is None or done.get("read") != len(orphans):
            engine.map(orphan_task, [(*head, (orphans + fid_base).tolist())])
        folders.append(work.task_dir("orphans"))
    return PartitionStage(summaries, resumed, folders, len(orphans), partitions_done)


# ------------------------------------------------------------------------------------ shared by every layer
_ROW_RE = re.compile(r"^(.*?: feature )row \d+")


def rekey(node: Any, level: int, x: int, y: int) -> None:
    """Renumber a quadtree built over one cell (root 0/0/0) into the run's z/x/y keys."""
    for n in node.walk():
        n.x, n.y = (x << n.level) + n.x, (y << n.level) + n.y
    for n in node.walk():
        n.level += level


def subset_layer(layer: Any, keep: np.ndarray) -> Any:
    """A :class:`core.delivery.read.SourceLayer` restricted to rows ``keep`` (positions, in that
    order), its accounting renumbered."""
    from dataclasses import replace

    from core.delivery import Accounting

    pos = np.full(len(layer.gdf), -1, np.int64)
    pos[keep] = np.arange(len(keep))
    old = layer.report
    new = Accounting(layer=old.layer, source=old.source, ids=old.ids[keep])
    new.notes = list(old.notes)
    for r, issue in old.rejected.items():
        if pos[r] >= 0:
            new.rejected[int(pos[r])] = replace(issue, row=int(pos[r]))
    for r, issues in old.repaired.items():
        if pos[r] >= 0:
            new.repaired[int(pos[r])] = [replace(i, row=int(pos[r])) for i in issues]
    gdf = layer.gdf.iloc[keep].reset_index(drop=True)
    return replace(layer, gdf=gdf, report=new, fids=layer.fids[keep])


def issue_json(issue: Any, row: int) -> dict[str, Any]:
    """An issue numbered by its source row (a message naming a local row is renumbered too)."""
    d = issue.as_dict()
    d["row"] = row
    if issue.id is None:
        d["message"] = _ROW_RE.sub(lambda m: f"{m.group(1)}row {row}", issue.message, count=1)
    return d


def export_report(acc: Any, rows: np.ndarray, keep: np.ndarray | None = None) -> dict[str, Any]:
    """Rejections and repairs numbered by source row (``rows``: local → source); ``keep``: only
    these local rows (a partition's own features, not the context it read around them)."""
    mine = None if keep is None else set(np.asarray(keep, np.int64).tolist())
    return {"notes": acc.notes,
            "rejected": [issue_json(i, int(rows[r])) for r, i in sorted(acc.rejected.items())
                         if mine is None or r in mine],
            "repaired": [[issue_json(i, int(rows[r])) for i in issues] for r, issues in sorted(acc.repaired.items())
                         if mine is None or r in mine]}


def write_ids(folder: Path, ids: np.ndarray, rows: np.ndarray) -> None:
    """``ids.parquet``: the ids alive when the duplicate-id rule ran (hash, source row, id)."""
    import pandas as pd

    text = np.array([str(i) for i in ids], dtype=object)
    pd.DataFrame({"h": pd.util.hash_array(text), "row": np.asarray(rows, np.int64), "id": text}
                 ).to_parquet(folder / "ids.parquet", index=False)


_DUP_BUCKET = 500_000  # id hashes held at once while looking for duplicates across cells
_DUP_DTYPE = np.dtype([("h", "<u8"), ("row", "<i8"), ("cell", "<i4")])


def cross_duplicates(work: Path, cells: dict[str, dict[str, Any]]) -> dict[str, dict[int, str]]:
    """Per cell, its rows whose id an earlier row of another cell has (row → the id), from the
    cells' ``ids.parquet``. Bounded memory: the (hash, row, cell) of every id are spread over
    buckets on disk by hash (≤ ``_DUP_BUCKET`` a bucket on average), each bucket is searched for
    repeated hashes on its own, and only the colliding rows are read again with their ids."""
    import pandas as pd

    keys = [k for k, s in cells.items() if s.get("owned_rows")]
    if not keys:
        return {}
    n_buckets = max(1, -(-sum(int(cells[k]["owned_rows"]) for k in keys) // _DUP_BUCKET))
    spool = fresh_task_dir(work / "_dup_hashes")
    try:
        handles = [(spool / f"{b}.bin").open("wb") for b in range(n_buckets)]
        try:
            for i, key in enumerate(keys):
                df = pd.read_parquet(work / key.replace("/", "_") / "ids.parquet", columns=["h", "row"])
                rec = np.empty(len(df), _DUP_DTYPE)
                rec["h"], rec["row"], rec["cell"] = df["h"].to_numpy(np.uint64), df["row"].to_numpy(np.int64), i
                bucket = rec["h"] % np.uint64(n_buckets)
                for b in np.unique(bucket):
                    rec[bucket == b].tofile(handles[int(b)])
        finally:
            for f in handles:
                f.close()
        hits = []
        for b in range(n_buckets):
            rec = np.fromfile(spool / f"{b}.bin", _DUP_DTYPE)
            rec = rec[np.argsort(rec["h"], kind="stable")]
            same = rec["h"][1:] == rec["h"][:-1]
            rep = np.zeros(len(rec), bool)
            rep[1:] |= same
            rep[:-1] |= same
            hits.append(rec[rep])
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    rep = np.concatenate(hits)
    if not len(rep):
        return {}
    found: list[pd.DataFrame] = []
    for i in np.unique(rep["cell"]):
        df = pd.read_parquet(work / keys[int(i)].replace("/", "_") / "ids.parquet")
        found.append(df[df["row"].isin(rep["row"][rep["cell"] == i])].assign(cell=int(i)))
    ids = pd.concat(found, ignore_index=True).sort_values("row")
    out: dict[str, dict[int, str]] = {}
    for _id, group in ids.groupby("id"):
        if group["cell"].nunique() < 2:
            continue
        for row, cell in zip(group["row"].to_numpy()[1:], group["cell"].to_numpy()[1:], strict=True):
            out.setdefault(keys[int(cell)], {})[int(row)] = str(_id)
    return out
