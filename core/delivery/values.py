"""Lenient value parsing of delivered attributes (numbers written as text, blank strings).

Numbers are parsed leniently ("12.5 m", "12,5", " 12 ", "12米", "6层", "3.5"); "" and blanks are
missing; anything else ("abc") is unparsable (the reader rejects the feature with
``unparsable_value``). Lenient parses that changed the text are ``parsed_value`` repairs.
Fractional floors (3.5, as in OpenStreetMap ``building:levels``) are numbers like any other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)$")
_UNIT = re.compile(r"\s*(m|M|meters?|metres?|米|层|F|f|floors?)$")

ParseStatus = Literal["ok", "empty", "parsed", "unparsable"]


def parse_number(value: Any) -> tuple[float | None, ParseStatus]:
    """Lenient number parse: (value, status). "12,5"→12.5 parsed; ""→None empty; "abc"→unparsable."""
    if value is None:
        return None, "empty"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return float(value), "ok"
    if isinstance(value, (float, np.floating)):
        return (None, "empty") if math.isnan(value) else (float(value), "ok")
    text = str(value).strip().replace("\u3000", "")
    if not text:
        return None, "empty"
    try:
        number = float(text)
        return (number, "ok") if math.isfinite(number) else (None, "unparsable")
    except ValueError:
        pass
    stripped = _UNIT.sub("", text).strip()
    if _NUMBER.match(stripped):
        number = float(stripped.replace(",", "."))
        return (number, "parsed") if math.isfinite(number) else (None, "unparsable")
    return None, "unparsable"


def parse_numbers(values: pd.Series | Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised :func:`parse_number`: (float64 with NaN for missing, parsed mask, unparsable mask)."""
    series = pd.Series(values, copy=False)
    n = len(series)
    if n == 0:
        return np.zeros(0), np.zeros(0, bool), np.zeros(0, bool)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(n, bool), np.zeros(n, bool)
    out = np.full(n, np.nan)
    parsed = np.zeros(n, bool)
    unparsable = np.zeros(n, bool)
    fast = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(fast)
    out[ok] = fast[ok]
    for i in np.flatnonzero(~ok):
        v, status = parse_number(series.iat[i])
        if v is not None:
            out[i] = v
        parsed[i] = status == "parsed"
        unparsable[i] = status == "unparsable"
    return out, parsed, unparsable




def clean_strings(series: pd.Series) -> pd.Series:
    """Stripped strings, None for missing/blank; integral floats (ids read as numbers) without '.0'."""
    if pd.api.types.is_float_dtype(series):
        return series.map(_clean_str).astype(object)
    if pd.api.types.is_integer_dtype(series):
        return series.astype(str).astype(object)
    s = series.astype(object)
    missing = s.isna().to_numpy()
    text = s.where(~missing, "").astype(str).str.strip()
    out = text.astype(object).to_numpy()
    out[missing | (text.to_numpy() == "")] = None
    return pd.Series(out, index=series.index, dtype=object)


def _clean_str(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        v = int(v)
    s = str(v).strip()
    return s or None
