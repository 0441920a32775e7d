"""Per-series result parts and their merge into the output tables.

A batch writes each series' result as its own small JSON file, ``OUT/parts/<name>.json``, through
a temporary file and a rename, the moment the result arrives. The final tables are merged from
the parts, so a batch killed at any point loses at most the series that were running, and a
resumed batch gives the same tables, byte for byte, as an uninterrupted one.

A part holds::

    {"format": 1, "key": <series key>, "settings_hash": ..., "calcimg_version": ...,
     "options": {"overlays": true, "seg": false},
     "series": {series.csv row}, "lesions": [{lesions.csv row}, ...]}

File names come from the series key (a UID, plus ``.pN``) through `safe_name`, never from other
header text.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path

from calcimg.report._columns import LESION_COLUMNS, SERIES_COLUMNS
from calcimg.report._write import atomic_path, atomic_write_bytes, atomic_write_text, write_csv

PART_FORMAT = 1
PARTS_DIR = "parts"

_UNSAFE = re.compile(r"[^0-9A-Za-z.\-]")


def safe_name(key: str) -> str:
    """A file-name-safe form of a series key (UIDs and ``.pN`` pass unchanged).

    Anything but letters, digits, dots and dashes becomes ``_``; a name that had to change, is
    empty, starts with a dot or is longer than 120 characters gets a short hash of the key so that
    two keys never share a file.

    >>> safe_name("1.2.840.113619.2.55.3.604688119.971.1")
    '1.2.840.113619.2.55.3.604688119.971.1'
    >>> safe_name("1.2.3.p2")
    '1.2.3.p2'
    >>> safe_name("../etc/passwd")
    '_etc_passwd-e61a1e5b9e'
    """
    name = _UNSAFE.sub("_", key).lstrip(".")
    if name == key and name and len(name) <= 120:
        return name
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{name[:100] or 'series'}-{digest}"


def _jsonable(value):
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalar
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in a result part")


def part_path(out_dir: str | Path, key: str) -> Path:
    return Path(out_dir) / PARTS_DIR / f"{safe_name(key)}.json"


def write_part(out_dir: str | Path, key: str, series_row: dict, lesion_rows: list[dict],
               settings_hash: str, calcimg_version: str, options: dict | None = None) -> Path:
    """Write one series' result atomically; returns the part's path. `options` records what else
    was made with it (overlay, SEG), so that a resumed run with more outputs asked redoes it."""
    path = part_path(out_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": PART_FORMAT, "key": key, "settings_hash": settings_hash,
           "calcimg_version": calcimg_version, "options": options or {}, "series": series_row,
           "lesions": lesion_rows}
    atomic_write_text(path, json.dumps(doc, default=_jsonable, allow_nan=True, sort_keys=False))
    return path


def read_part(path: str | Path) -> dict | None:
    """A part's content, or None when it is missing, unreadable or of another format."""
    try:
        with open(path, encoding="utf-8") as fp:
            doc = json.load(fp)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != PART_FORMAT or "series" not in doc:
        return None
    return doc


def remove_stale_temporaries(out_dir: str | Path) -> None:
    """Delete temporary files a killed batch left behind (``.<name>.<random>.tmp``)."""
    for folder in (Path(out_dir), Path(out_dir) / PARTS_DIR, Path(out_dir) / "overlays", Path(out_dir) / "seg"):
        if folder.is_dir():
            for p in folder.glob(".*.tmp"):
                try:
                    p.unlink()
                except OSError:
                    pass


def _row_order(row: dict) -> tuple:
    return (str(row.get("source") or ""), str(row.get("series_key") or ""))


def merge_rows(series_rows: Iterable[dict], lesion_rows_by_key: dict[str, list[dict]]) -> tuple[list[dict], list[dict]]:
    """Series rows ordered by (source, series_key); lesion rows in the order of their series, then
    by lesion_id. The order depends only on the inputs, never on which worker finished first."""
    series = sorted(series_rows, key=_row_order)
    lesions: list[dict] = []
    for row in series:
        key = row.get("series_key")
        if key:
            lesions.extend(sorted(lesion_rows_by_key.get(key, []), key=lambda r: int(r.get("lesion_id") or 0)))
    return series, lesions


def _arrow_column(values: list):
    import pyarrow as pa

    def missing(v) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    present = [v for v in values if not missing(v)]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array([None if missing(v) else v for v in values], pa.bool_())
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array([None if missing(v) else v for v in values], pa.int64())
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.array([None if missing(v) else float(v) for v in values], pa.float64())
    return pa.array([None if missing(v) else str(v) for v in values], pa.string())


def write_parquet(path: str | Path, rows: list[dict], columns: list[str]) -> None:
    """Write rows as Parquet (typed columns, NaN and empty as null, same column order as the CSV),
    through a temporary file and a rename."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    extra = sorted({k for r in rows for k in r} - set(columns))
    names = list(columns) + extra
    table = pa.table({name: _arrow_column([r.get(name) for r in rows]) for name in names})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_tables(out_dir: str | Path, series_rows: list[dict], lesion_rows: list[dict]) -> None:
    """lesions.csv, lesions.parquet and series.csv from already merged rows."""
    out = Path(out_dir)
    lesion_cols = [c.name for c in LESION_COLUMNS]
    write_csv(out / "lesions.csv", lesion_rows, lesion_cols)
    write_parquet(out / "lesions.parquet", lesion_rows, lesion_cols)
    write_csv(out / "series.csv", series_rows, [c.name for c in SERIES_COLUMNS])


__all__ = [
    "PARTS_DIR",
    "atomic_write_bytes",
    "merge_rows",
    "part_path",
    "read_part",
    "remove_stale_temporaries",
    "safe_name",
    "write_parquet",
    "write_part",
    "write_tables",
]
