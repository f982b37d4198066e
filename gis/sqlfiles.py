"""SQL statements kept in ``gis/sql/<name>.sql`` (``name`` may hold a folder: ``events/insert``).

Statements use bound parameters only (``:name``); they are read once and cached.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sqlalchemy import TextClause, text

SQL_DIR = Path(__file__).resolve().parent / "sql"


@lru_cache(maxsize=256)
def sql(name: str) -> TextClause:
    """The statement in ``gis/sql/<name>.sql``."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise KeyError(f"no SQL named {name!r} in {SQL_DIR}")
    return text(path.read_text(encoding="utf-8"))
