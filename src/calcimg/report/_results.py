"""Reading results back for people: a study measured in memory, a batch output folder as tables.

`measure_study` runs the batch's own per-series path (`calcimg.pipeline.process_series`) on one
study folder and keeps each series' `Scan` and `Segmentation`, so the pictures of a notebook show
exactly what `calcimg extract` measured. `load_results` reads an output folder of
``calcimg extract`` into pandas DataFrames. pandas is imported inside the functions that need it,
so ``import calcimg.report`` stays light.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from calcimg.criteria._evaluate import is_missing

#: Columns a radiologist reads first, in this order (those present are shown).
KEY_COLUMNS: tuple[str, ...] = (
    "lesion_id", "pattern", "volume_mm3", "area_mm2", "max_diameter_mm", "mean_hu", "max_hu",
    "lobulation", "septation", "linearity", "rim_smoothness", "lobe_count", "loculus_count",
    "fluid_level", "fluid_level_count", "fluid_level_angle_deg", "bone_distance_mm",
    "skin_depth_mm", "compartment", "component_count", "evidence", "not_assessed",
)

#: The descriptors and criteria columns other parts of calcimg add (issues 7 and 8): shown as
#: "not available" when an output predates them.
DESCRIPTOR_COLUMNS: tuple[str, ...] = (
    "lobulation", "septation", "linearity", "rim_smoothness", "lobe_count", "loculus_count",
    "fluid_level", "fluid_level_count", "fluid_level_angle_deg",
)
CRITERIA_COLUMNS: tuple[str, ...] = ("pattern", "evidence")

_SUFFIX_UNITS = (("_mm3", "mm³"), ("_mm2", "mm²"), ("_mm", "mm"), ("_hu", "HU"), ("_deg", "°"),
                 ("_hu_mm3", "HU·mm³"), ("_per_mm", "1/mm"))
_PRETTY_UNITS = {"mm^3": "mm³", "mm^2": "mm²", "HU mm^3": "HU·mm³", "deg": "°"}


def column_unit(name: str) -> str:
    """The unit of a lesions.csv column (from the column registry, else its name's suffix)."""
    from calcimg.report._columns import LESION_COLUMNS

    for c in LESION_COLUMNS:
        if c.name == name:
            return _PRETTY_UNITS.get(c.unit, c.unit)
    for suffix, unit in sorted(_SUFFIX_UNITS, key=lambda s: -len(s[0])):
        if name.endswith(suffix):
            return unit
    return ""


_WORDS = {"mean_hu": "mean attenuation", "max_hu": "max attenuation", "median_hu": "median attenuation",
          "p10_hu": "10th percentile attenuation", "p90_hu": "90th percentile attenuation",
          "fluid_level_angle_deg": "fluid level tilt"}


def column_label(name: str, unit: bool = True) -> str:
    """A column name in words with its unit: ``max_diameter_mm`` -> ``max diameter (mm)``."""
    u = column_unit(name)
    if name in _WORDS:
        return f"{_WORDS[name]} ({u})" if unit and u else _WORDS[name]
    words = name
    for suffix, _ in sorted(_SUFFIX_UNITS, key=lambda s: -len(s[0])):
        if u and name.endswith(suffix):
            words = name[: -len(suffix)]
            break
    words = words.replace("_", " ")
    return f"{words} ({u})" if unit and u else words


def plain(text) -> str:
    """Machine names in words: ``tumoral_calcinosis`` -> ``tumoral calcinosis``; empty/NaN -> ''."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    return re.sub(r"(?<=[a-z0-9])_(?=[a-z0-9])", " ", str(text))


def format_value(name: str, value) -> str:
    """One feature value for people: units, sensible digits, words for flags and empties."""
    if name == "fluid_level":
        if is_missing(value):
            return "not assessable"
        return "present" if float(value) >= 0.5 else "absent"
    if is_missing(value):
        return "—"
    if isinstance(value, str):
        return plain(value)
    v = float(value)
    unit = column_unit(name)
    if name.endswith("_count") or name in ("lesion_id", "lobe_count", "loculus_count", "ossified"):
        text = f"{v:.0f}"
    elif abs(v) >= 100:
        text = f"{v:,.0f}"
    elif abs(v) >= 10:
        text = f"{v:.1f}"
    else:
        text = f"{v:.2f}"
    return f"{text} {unit}".rstrip() if unit and unit != "°" else f"{text}{unit}"


def describe_lesion(row: dict) -> str:
    """A lesion in plain words (one paragraph of Markdown): pattern, size, descriptors, evidence
    and what was not assessed, saying "not available" for columns the output does not have."""
    lid = row.get("lesion_id", "?")
    pattern = plain(row.get("pattern")) if "pattern" in row else ""
    head = f"**Lesion {lid}**: " + (f"pattern **{pattern}**" if pattern else
                                    "pattern not assigned" if "pattern" in row else "pattern not available")
    size = next((c for c in ("volume_mm3", "area_mm2") if not is_missing(row.get(c))), None)
    parts = []
    if size:
        parts.append(f"{column_label(size, unit=False)} {format_value(size, row[size])}")
    if not is_missing(row.get("max_diameter_mm")):
        parts.append(f"max diameter {format_value('max_diameter_mm', row['max_diameter_mm'])}")
    for c in DESCRIPTOR_COLUMNS:
        parts.append(f"{column_label(c, unit=False)} {format_value(c, row[c])}" if c in row
                     else f"{column_label(c, unit=False)} not available")
    text = head + "; " + ", ".join(parts) + "."
    ev = row.get("evidence") if "evidence" in row else None
    text += f" Evidence: {plain(ev)}." if not is_missing(ev) else (
        " Evidence: none fired." if "evidence" in row else " Evidence: not available.")
    na = row.get("not_assessed")
    if not is_missing(na):
        text += f" Not assessed: {plain(na)}."
    return text


# --------------------------------------------------------------------------------------------
# One study, measured in memory
# --------------------------------------------------------------------------------------------

@dataclass
class SeriesView:
    """One series of a study as the pipeline saw it: the series.csv row, lesion rows, and (when it
    was measured) the loaded `Scan` and its `Segmentation`."""

    series: object  # calcimg.io.Series
    row: dict
    rows: list[dict] = field(default_factory=list)
    scan: object | None = None
    seg: object | None = None

    @property
    def ok(self) -> bool:
        return self.row.get("status") == "ok" and self.scan is not None


def measure_study(path: str | Path, settings=None) -> list[SeriesView]:
    """Discover, load, segment and measure every series under `path`, keeping the images.

    Parameters
    ----------
    path : str or Path
        A study folder (DICOM, any file names), a DICOM file or a NIfTI/NRRD file.
    settings : calcimg.settings.Settings, optional
        Pipeline settings (default: ``Settings()``, as ``calcimg extract`` without ``--pipeline``).

    Returns
    -------
    list of SeriesView
        One per series found, in discovery order; failed or skipped series carry their reason in
        ``row["reason"]`` and no scan.
    """
    from calcimg.io import discover
    from calcimg.pipeline import process_series
    from calcimg.settings import Settings

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such study folder or file")
    settings = settings or Settings()
    views = []
    for series in discover(path).series:
        kept: dict = {}

        def keep(scan, seg, rows, kept=kept):
            kept.update(scan=scan, seg=seg)

        result = process_series(series, settings, on_measured=keep)
        _add_patterns(result.lesions)
        views.append(SeriesView(series, result.series, result.lesions, kept.get("scan"), kept.get("seg")))
    return views


def _add_patterns(rows: list[dict]) -> None:
    """The criteria step on rows that lack it (when the pipeline leaves it to the batch), so a
    study inspected here reads as its lesions.csv does. Without a criteria module: nothing."""
    if not rows or all("pattern" in r for r in rows):
        return
    try:
        from calcimg.criteria import apply, default_table

        table = default_table()
    except Exception:  # no criteria step in this version: pattern stays "not available"
        return
    for r in rows:
        if "pattern" not in r:
            try:
                apply(r, table)
            except Exception:
                pass


def series_summary(views: list[SeriesView]):
    """A DataFrame with one row per series of `measure_study`: kind, geometry, gravity, status."""
    import pandas as pd

    cols = ["kind", "status", "n_lesions", "shape", "spacing_mm", "patient_position", "gravity",
            "gravity_source", "reason"]
    return pd.DataFrame([{c: v.row.get(c, "") for c in cols} for v in views],
                        index=pd.RangeIndex(len(views), name="series"))


def lesion_table(rows, columns: tuple[str, ...] | None = None):
    """The lesions as a DataFrame for reading: key columns first, headers with units, values as
    measured; a key column the rows do not have is shown as "not available".

    Parameters
    ----------
    rows : list of dict or pandas.DataFrame
        lesions.csv rows (``measure_scan``/``measure_study`` rows or `load_results` lesions).
    columns : tuple of str, optional
        Columns to show (default `KEY_COLUMNS` that apply to the rows' kind).
    """
    import pandas as pd

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if columns is None:
        kinds = set(df["kind"].dropna()) if "kind" in df else set()
        skip = set()
        if kinds == {"radiograph"}:
            skip |= {"volume_mm3", "mean_hu", "max_hu"}
        elif kinds == {"ct"}:
            skip |= {"area_mm2"}
        columns = tuple(c for c in KEY_COLUMNS if c not in skip)
    out = pd.DataFrame(index=df.index)
    for c in columns:
        label = column_label(c)
        if c in df:
            col = df[c]
            if c in ("pattern", "compartment"):
                col = col.map(plain)
            elif c == "fluid_level":
                col = col.map(lambda v: format_value("fluid_level", v))
            out[label] = col
        else:
            out[label] = "not available"
    if "series_key" in df and df["series_key"].nunique() > 1:
        out.insert(0, "series", df["series_key"].astype(str).str[-12:])
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# A batch output folder
# --------------------------------------------------------------------------------------------

@dataclass
class Results:
    """An output folder of ``calcimg extract`` as DataFrames."""

    out_dir: Path
    lesions: object  # pandas.DataFrame
    series: object
    dictionary: object

    def overlay_path(self, series_key: str) -> Path | None:
        """The overlay PNG of a series, or None when none was drawn."""
        s = self.series
        hit = s[s["series_key"].astype(str) == str(series_key)] if "series_key" in s else s.iloc[:0]
        if len(hit) and isinstance(hit["overlay"].iloc[0], str) and hit["overlay"].iloc[0]:
            p = self.out_dir / hit["overlay"].iloc[0]
            return p if p.exists() else None
        return None


def load_results(out_dir: str | Path) -> Results:
    """Read an output folder of ``calcimg extract``.

    Parameters
    ----------
    out_dir : str or Path
        The folder given to ``calcimg extract --out``.

    Returns
    -------
    Results
        ``lesions`` (lesions.parquet when readable, else lesions.csv), ``series`` (series.csv),
        ``dictionary`` (data_dictionary.csv, empty when absent) as pandas DataFrames, and
        ``out_dir``.

    Raises
    ------
    FileNotFoundError
        When `out_dir` holds no series.csv (not an output folder of ``calcimg extract``).
    """
    import pandas as pd

    out = Path(out_dir)
    if not (out / "series.csv").exists():
        raise FileNotFoundError(f"{out}: no series.csv here; is this an output folder of `calcimg extract --out`?")
    text_cols = {"study_uid": str, "series_uid": str, "series_key": str}
    series = pd.read_csv(out / "series.csv", dtype=text_cols, keep_default_na=False, na_values=[""])
    for c in ("reason", "overlay", "notes", "source", "kind", "status"):
        if c in series:
            series[c] = series[c].fillna("")
    lesions = None
    if (out / "lesions.parquet").exists():
        try:
            lesions = pd.read_parquet(out / "lesions.parquet")
        except Exception:  # no parquet engine, or a partial file: the CSV says the same
            lesions = None
    if lesions is None:
        lesions = (pd.read_csv(out / "lesions.csv", dtype=text_cols) if (out / "lesions.csv").exists()
                   and (out / "lesions.csv").stat().st_size > 0 else pd.DataFrame())
    dictionary = (pd.read_csv(out / "data_dictionary.csv", keep_default_na=False)
                  if (out / "data_dictionary.csv").exists() else pd.DataFrame())
    return Results(out, lesions, series, dictionary)


def series_status(results: Results, links: str = "file"):
    """The series table with status and reasons, failures first, and a link to each overlay.

    Parameters
    ----------
    results : Results
        From `load_results`.
    links : {"file", "relative", "none"}
        ``"file"``: the overlay column holds ``file://`` links (open from a rendered HTML page);
        ``"relative"``: paths relative to the current directory (Jupyter serves those);
        ``"none"``: the overlay's path inside the output folder.
    """
    import os

    s = results.series.copy()
    order = {"error": 0, "skipped": 2, "ok": 1}
    s["_o"] = s.get("status", "").map(lambda v: order.get(v, 3))
    s = s.sort_values(["_o"], kind="stable").drop(columns="_o")
    cols = [c for c in ("status", "reason", "kind", "n_lesions", "source", "series_key", "gravity",
                        "seconds", "overlay") if c in s]
    s = s[cols].reset_index(drop=True)
    if "source" in s:
        s["source"] = s["source"].map(lambda p: _short_path(p))
    if "series_key" in s:
        s["series_key"] = s["series_key"].fillna("").astype(str).map(lambda k: f"…{k[-14:]}" if len(k) > 16 else k)
    if "overlay" in s and links != "none":
        def link(p):
            if not p:
                return ""
            full = (results.out_dir / p).resolve()
            href = full.as_uri() if links == "file" else os.path.relpath(full)
            return f'<a href="{href}" target="_blank">overlay</a>'
        s["overlay"] = s["overlay"].map(link)
    return s


def _short_path(p) -> str:
    p = str(p or "")
    parts = Path(p).parts
    return str(Path(*parts[-2:])) if len(parts) > 2 else p
