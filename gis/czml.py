"""CZML (Cesium's time-dynamic JSON) for patrol track playback."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def track_czml(
    entity_id: str,
    name: str,
    samples: Sequence[tuple[datetime, float, float] | tuple[datetime, float, float, float | None]],
    *,
    height_m: float = 1.0,
    color_rgba: tuple[int, int, int, int] = (255, 140, 0, 255),
    trail_s: float = 600.0,
) -> list[dict[str, Any]]:
    """Document packet + one entity moving through ``samples`` (time, lon, lat[, ground]).

    Positions are ``cartographicDegrees`` (ellipsoidal heights, what Cesium wants) ``height_m``
    above the ground: ``ground`` is the ellipsoidal ground height there (DEM orthometric + geoid
    undulation, ``ground_height(x, y, true)`` in SQL). Without it (no DEM loaded) the height is
    ``height_m`` above the ellipsoid, i.e. under the terrain: the point is clamped to the ground,
    the path is not.
    """
    doc: dict[str, Any] = {"id": "document", "name": f"track {entity_id}", "version": "1.0"}
    if not samples:
        return [doc]
    samples = sorted(samples, key=lambda s: s[0])
    epoch = samples[0][0]
    start, end = _iso(epoch), _iso(samples[-1][0])
    doc["clock"] = {
        "interval": f"{start}/{end}",
        "currentTime": start,
        "multiplier": 10,
        "range": "LOOP_STOP",
        "step": "SYSTEM_CLOCK_MULTIPLIER",
    }
    flat: list[float] = []
    for t, lon, lat, *ground in samples:
        h = height_m + (ground[0] if ground and ground[0] is not None else 0.0)
        flat += [round((t - epoch).total_seconds(), 3), round(lon, 7), round(lat, 7), round(h, 2)]
    entity = {
        "id": entity_id,
        "name": name,
        "availability": f"{start}/{end}",
        "position": {"epoch": start, "cartographicDegrees": flat, "interpolationAlgorithm": "LINEAR"},
        "point": {"pixelSize": 10, "color": {"rgba": list(color_rgba)}, "heightReference": "CLAMP_TO_GROUND"},
        "path": {
            "width": 3,
            "leadTime": 0,
            "trailTime": trail_s,
            "material": {"solidColor": {"color": {"rgba": list(color_rgba)}}},
        },
        "label": {"text": name, "pixelOffset": {"cartesian2": [0, -24]}, "scale": 0.6},
    }
    return [doc, entity]
