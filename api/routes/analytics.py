"""Analytics routes (wired to gis.analytics)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["analytics"])
