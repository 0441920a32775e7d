from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

from calcimg.report._columns import LESION_COLUMNS, SERIES_COLUMNS, data_dictionary_rows
from calcimg.settings import Settings


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`.

    A reader sees the old file or the new one, never half of one; a crash (even SIGKILL) leaves
    the old file and at worst a hidden ``.<name>.<random>.tmp`` beside it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fp:
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically, as `atomic_write_bytes` does."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(round(float(value), 6))
    if hasattr(value, "item"):  # numpy scalar
        return _fmt(value.item())
    return str(value)


def write_csv(path: str | Path, rows: Iterable[dict], columns: Sequence[str]) -> None:
    """Write rows as CSV with the given columns first (extra keys follow, sorted), atomically."""
    rows = list(rows)
    extra = sorted({k for r in rows for k in r} - set(columns))
    header = list(columns) + extra
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([_fmt(r.get(c)) for c in header])
    atomic_write_text(path, buf.getvalue())


def write_data_dictionary(out_dir: str | Path) -> None:
    """data_dictionary.csv: every column of lesions.csv and series.csv with unit and meaning."""
    write_csv(Path(out_dir) / "data_dictionary.csv", data_dictionary_rows(),
              ["file", "column", "unit", "description", "ibsi_code"])


def write_outputs(out_dir: str | Path, lesion_rows: list[dict], series_rows: list[dict], settings: Settings) -> None:
    """Write lesions.csv, series.csv, data_dictionary.csv and settings.toml into `out_dir`
    (rows written in the order given; `calcimg.batch` merges per-series parts instead)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "lesions.csv", lesion_rows, [c.name for c in LESION_COLUMNS])
    write_csv(out / "series.csv", series_rows, [c.name for c in SERIES_COLUMNS])
    write_data_dictionary(out)
    atomic_write_text(out / "settings.toml", settings.to_toml())
