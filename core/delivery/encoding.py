"""Text encodings of deliveries: declared where the format declares one, detected only where not.

* GeoPackage, GeoJSON, FlatGeobuf and GeoParquet are UTF-8 by specification: never checked,
  never guessed, ``--encoding`` does not apply to them.
* Shapefile: ``--encoding`` > ``.cpg`` > the mapping's ``encoding:`` > the dBASE language driver
  byte (LDID 0x4D = GBK) > detection. A declared encoding is checked against the raw bytes of the
  attribute table (not decodable → :class:`EncodingError`; declared non-UTF-8 although the bytes
  are multi-byte UTF-8 → mojibake, :class:`EncodingError`).
* CSV: ``--encoding`` > the mapping's ``encoding:`` > detection.

Detection (:func:`detect`) accepts only unambiguous answers: ASCII; valid UTF-8 (other encodings
of real text are almost never valid UTF-8); GBK when every non-ASCII byte pair lies in the GB2312
range (lead and trail 0xA1–0xFE, which Latin-1 text never forms). Anything else is an error that
lists the encodings the bytes decode as and names ``--encoding``. No heuristic looks at decoded
strings, so valid text in any script (Latin with diacritics, Cyrillic, Greek, CJK) is never
mistaken for mojibake.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from pathlib import Path

from core.delivery.errors import EncodingError

UTF8_BY_SPEC = {"GPKG", "GeoJSON", "GeoJSONSeq", "FlatGeobuf", "Parquet", "Arrow"}

#: dBASE language driver ids that name an encoding (byte 29 of the header)
_LDID = {0x4D: "GBK", 0x7A: "GBK", 0x57: "ISO-8859-1", 0x03: "cp1252", 0x01: "cp437"}

_GB2312_PAIR = re.compile(rb"[\xa1-\xfe][\xa1-\xfe]")
_HIGH = re.compile(rb"[\x80-\xff]")


def dbf_text_samples(dbf: Path, max_records: int = 5000) -> list[bytes]:
    """Raw bytes of the non-ASCII character fields of a dBASE file (for encoding checks)."""
    with open(dbf, "rb") as fh:
        head = fh.read(32)
        if len(head) < 32:
            return []
        n_records, header_len, record_len = struct.unpack_from("<IHH", head, 4)
        if record_len <= 0:
            return []
        fields: list[tuple[int, int]] = []  # (offset in record, length) of C fields
        offset = 1
        while True:
            desc = fh.read(32)
            if not desc or desc[0] == 0x0D or len(desc) < 32:
                break
            ftype, flen = chr(desc[11]), desc[16]
            if ftype == "C":
                fields.append((offset, flen))
            offset += flen
        if not fields:
            return []
        fh.seek(header_len)
        data = fh.read(record_len * min(n_records, max_records))
    samples = []
    for r in range(len(data) // record_len):
        rec = data[r * record_len:(r + 1) * record_len]
        for off, length in fields:
            raw = rec[off:off + length].rstrip(b" \x00")
            if any(b > 0x7F for b in raw):
                samples.append(raw)
    return samples


def dbf_language_driver(dbf: Path) -> str | None:
    """The encoding the dBASE header's language driver byte names, if any."""
    try:
        with open(dbf, "rb") as fh:
            head = fh.read(32)
    except OSError:
        return None
    return _LDID.get(head[29]) if len(head) >= 30 else None


def decodes(samples: Sequence[bytes], encoding: str) -> bool:
    try:
        for s in samples:
            s.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def is_utf8_name(encoding: str | None) -> bool:
    return (encoding or "").lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig")


def _looks_gb2312(samples: Sequence[bytes]) -> bool:
    for s in samples:
        high = len(_HIGH.findall(s))
        if high == 0:
            continue
        paired = 2 * len(_GB2312_PAIR.findall(s))
        if paired != high:
            return False
    return decodes(samples, "GBK")


def candidates(samples: Sequence[bytes]) -> list[str]:
    out = [e for e in ("UTF-8", "GBK", "GB18030", "Big5") if decodes(samples, e)]
    return out + ["ISO-8859-1"]  # Latin-1 decodes every byte: always a (last) candidate


def detect(samples: Sequence[bytes]) -> str | None:
    """ASCII (None), UTF-8 or GBK when unambiguous; raises ValueError otherwise."""
    if not samples:
        return None
    if decodes(samples, "UTF-8"):
        return "UTF-8"
    if _looks_gb2312(samples):
        return "GBK"
    raise ValueError("ambiguous")


def resolve_encoding(path: Path, samples: Sequence[bytes], declared: str | None, origin: str) -> tuple[str | None, str]:
    """(encoding to read with, note) after checking ``declared`` (from ``origin``) against the bytes.

    ``declared`` None: detect (see module docstring). Raises :class:`EncodingError` naming the file,
    an example and ``--encoding`` with the encodings the bytes decode as.
    """
    example = samples[0][:40] if samples else b""
    if declared is not None:
        declared = canonical_name(path, declared, origin)
    if declared is None:
        try:
            found = detect(samples)
        except ValueError:
            cands = candidates(samples)
            raise EncodingError(
                path, f"text fields are not ASCII (e.g. {example!r}) and the file declares no encoding; "
                      f"they decode as {', '.join(cands)}", hint=f"pass --encoding {cands[0]} (or the right one)",
            ) from None
        if found is None:
            return None, ""
        return found, f"no declared encoding: text detected as {found}"
    if not samples:
        return declared, ""
    if not decodes(samples, declared):
        cands = candidates(samples)
        raise EncodingError(
            path, f"text fields are not valid {declared} (from {origin}), e.g. {example!r}; "
                  f"they decode as {', '.join(cands)}", hint=f"pass --encoding {cands[0]}",
        )
    if not is_utf8_name(declared) and decodes(samples, "UTF-8"):
        mojibake = example.decode(declared, "replace")
        raise EncodingError(
            path, f"{origin} says {declared} but the text bytes are UTF-8 (reading them as {declared} "
                  f"gives mojibake such as {mojibake!r})", hint="pass --encoding UTF-8 or fix the .cpg",
        )
    return declared, ""


def canonical_name(path: Path, encoding: str, origin: str) -> str:
    """The encoding's canonical name as GDAL/iconv spell it (latin-1 → ISO-8859-1, gbk → GBK)."""
    import codecs

    try:
        name = codecs.lookup(encoding.strip()).name
    except LookupError:
        raise EncodingError(path, f"{origin} {encoding!r} is not a known text encoding",
                            hint="pass --encoding with e.g. UTF-8, GBK, ISO-8859-1") from None
    if name.startswith("iso8859-"):
        return "ISO-8859-" + name.split("-", 1)[1]
    return {"utf-8": "UTF-8", "utf-8-sig": "UTF-8"}.get(name, name.upper())


def csv_samples(raw: bytes, max_lines: int = 5000) -> list[bytes]:
    """Lines of a CSV's bytes that are not ASCII (for encoding checks)."""
    return [line for line in raw.splitlines()[:max_lines] if any(b > 0x7F for b in line)]
