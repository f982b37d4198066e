"""District layout: boundary, Longzi Lake, the river, communities and management grid cells."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import LineString, MultiPoint, Polygon

from .common import CRS_4548, DISTRICT_AREA_M2, District, centre_xy_4548, sample_in_polygon
from .names import COMMUNITY_NAMES, unique_picks


def _harmonic_radius(rng: np.random.Generator, n_harm: int, amp: float):
    ks = np.arange(2, 2 + n_harm)
    a = rng.uniform(0.4, 1.0, n_harm) * amp / np.sqrt(ks - 1)
    ph = rng.uniform(0, 2 * np.pi, n_harm)

    def rho(theta):
        theta = np.asarray(theta)[..., None]
        return 1.0 + np.sum(a * np.cos(ks * theta + ph), axis=-1)

    return rho


def make_boundary(rng: np.random.Generator) -> Polygon:
    """An irregular street-district outline, scaled to exactly 4.61 km²."""
    cx, cy = centre_xy_4548()
    n = 72
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rho = _harmonic_radius(rng, 4, 0.07)(theta)
    rho *= 1 + rng.normal(0, 0.012, n)  # small kinks, as boundaries follow streets and walls
    x = 1.22 * rho * np.cos(theta)
    y = 0.86 * rho * np.sin(theta)
    ang = np.deg2rad(rng.uniform(-6, 6))
    xr = x * np.cos(ang) - y * np.sin(ang)
    yr = x * np.sin(ang) + y * np.cos(ang)
    poly = Polygon(np.column_stack([xr, yr]))
    k = np.sqrt(DISTRICT_AREA_M2 / poly.area)
    coords = np.round(np.column_stack([xr * k + cx, yr * k + cy]), 2)
    return Polygon(coords)


def make_lake(rng: np.random.Generator, boundary: Polygon):
    """Part of Longzi Lake: an elongated N-S lake whose west shore cuts the district's east side."""
    minx, miny, maxx, maxy = boundary.bounds
    a, b = 620.0, 1700.0  # semi-axes (E-W, N-S)
    lx = maxx + a - 430.0  # ~430 m of lake inside the district's east edge
    ly = (miny + maxy) / 2 + rng.uniform(-150, 150)
    rot = np.deg2rad(rng.uniform(-8, 8))
    rho = _harmonic_radius(rng, 5, 0.06)
    theta = np.linspace(0, 2 * np.pi, 160, endpoint=False)
    r = rho(theta)
    u, v = a * r * np.cos(theta), b * r * np.sin(theta)
    x = lx + u * np.cos(rot) - v * np.sin(rot)
    y = ly + u * np.sin(rot) + v * np.cos(rot)
    lake = Polygon(np.round(np.column_stack([x, y]), 2))
    params = {"cx": lx, "cy": ly, "a": a, "b": b, "rot": rot, "rho": rho}
    return lake, params


def lake_q(params: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Normalised lake radius: <1 inside the lake, 1 on the shore (analytic, vectorised)."""
    dx, dy = x - params["cx"], y - params["cy"]
    c, s = np.cos(-params["rot"]), np.sin(-params["rot"])
    u = (dx * c - dy * s) / params["a"]
    v = (dx * s + dy * c) / params["b"]
    theta = np.arctan2(v, u)
    return np.hypot(u, v) / params["rho"](theta)


def make_river(rng: np.random.Generator, boundary: Polygon, lake: Polygon, width: float):
    """A meandering river (席家沟) entering from the west and flowing into the lake."""
    minx, miny, maxx, maxy = boundary.bounds
    x = np.linspace(minx - 300, maxx + 200, 140)
    y0 = miny + (maxy - miny) * rng.uniform(0.36, 0.44)
    y = (
        y0
        + 70 * np.sin((x - minx) / 520 + rng.uniform(0, 6))
        + 35 * np.sin((x - minx) / 190 + rng.uniform(0, 6))
    )
    line = LineString(np.round(np.column_stack([x, y]), 2))
    # stop the centreline 50 m inside the lake
    inside = shapely.contains_xy(lake, x, y)
    first = int(np.argmax(inside)) if inside.any() else len(x) - 1
    line = LineString(np.round(np.column_stack([x[: first + 2], y[: first + 2]]), 2))
    river = line.buffer(width / 2, cap_style="flat").difference(lake)
    if river.geom_type == "MultiPolygon":
        river = max(river.geoms, key=lambda g: g.area)
    return line, shapely.set_precision(river, 0.01)


def _lloyd_cells(rng: np.random.Generator, poly, n: int, iters: int = 4) -> list:
    """n Voronoi cells tiling poly, relaxed towards equal size; returns Polygons (never Multi)."""
    pts = sample_in_polygon(rng, poly, n)
    for it in range(iters + 1):
        vor = shapely.voronoi_polygons(MultiPoint(pts), extend_to=poly.buffer(500))
        cells = list(vor.geoms)
        # order cells like the seed points
        tree = shapely.STRtree(cells)
        idx = tree.query(shapely.points(pts), predicate="within")
        order = np.empty(len(pts), dtype=int)
        order[idx[0]] = idx[1]
        clipped = [cells[j].intersection(poly) for j in order]
        if it == iters:
            break
        pts = np.array([[c.centroid.x, c.centroid.y] for c in clipped])
    return _fix_multi(clipped)


def _fix_multi(cells: list) -> list:
    """Give stray pieces of MultiPolygon cells to the neighbour sharing the longest border."""
    cells = [shapely.make_valid(c) for c in cells]
    for _ in range(5):
        changed = False
        for i, c in enumerate(cells):
            if c.geom_type == "Polygon":
                continue
            parts = sorted(
                [g for g in getattr(c, "geoms", []) if g.geom_type == "Polygon"], key=lambda g: -g.area
            )
            cells[i] = parts[0]
            for p in parts[1:]:
                best, best_len = None, -1.0
                for j, d in enumerate(cells):
                    if j == i:
                        continue
                    ln = p.boundary.intersection(d.boundary).length
                    if ln > best_len:
                        best, best_len = j, ln
                cells[best] = shapely.make_valid(cells[best].union(p))
                if cells[best].geom_type != "Polygon":
                    changed = True
        if not changed:
            break
    return [shapely.set_precision(c, 0.01) if c.geom_type == "Polygon" else c for c in cells]


def make_communities(rng: np.random.Generator, d: District) -> gpd.GeoDataFrame:
    n = int(rng.integers(18, 23))
    cells = _lloyd_cells(rng, d.boundary, n)
    # order north-west to south-east for readable ids
    cent = np.array([[c.centroid.x, c.centroid.y] for c in cells])
    order = np.lexsort((cent[:, 0], -np.round(cent[:, 1] / 400)))
    cells = [cells[i] for i in order]
    names = unique_picks(rng, COMMUNITY_NAMES, n)
    return gpd.GeoDataFrame(
        {"id": [f"C{i + 1:02d}" for i in range(n)], "name": [f"{nm}社区" for nm in names]},
        geometry=cells,
        crs=CRS_4548,
    )


def make_grid_cells(rng: np.random.Generator, d: District, target: int = 90) -> gpd.GeoDataFrame:
    comm = d.communities
    total = comm.geometry.area.sum()
    rows = []
    for cid, cname, poly in zip(comm["id"], comm["name"], comm.geometry, strict=True):
        k = max(3, int(round(poly.area / total * target)))
        cells = _lloyd_cells(rng, poly, k, iters=3)
        cent = np.array([[c.centroid.x, c.centroid.y] for c in cells])
        order = np.lexsort((cent[:, 0], -np.round(cent[:, 1] / 200)))
        for j, i in enumerate(order):
            rows.append((cid, f"{cname}第{j + 1}网格", cells[i]))
    gdf = gpd.GeoDataFrame(
        {
            "id": [f"G{i + 1:03d}" for i in range(len(rows))],
            "name": [r[1] for r in rows],
            "community_id": [r[0] for r in rows],
        },
        geometry=[r[2] for r in rows],
        crs=CRS_4548,
    )
    return gdf


def build(rng: np.random.Generator, d: District) -> None:
    d.boundary = make_boundary(rng)
    d.lake, d.lake_params = make_lake(rng, d.boundary)
    d.river_line, d.river = make_river(rng, d.boundary, d.lake, d.river_width)
    d.land = d.boundary.difference(d.lake).difference(d.river)
    d.communities = make_communities(rng, d)
    d.grid_cells = make_grid_cells(rng, d)
