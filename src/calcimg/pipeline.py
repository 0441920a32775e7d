"""One series from files to feature rows: load, segment, measure."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from calcimg import __version__
from calcimg.errors import CalcimgError
from calcimg.features import lesion_features
from calcimg.io import Series, load
from calcimg.scan import Scan
from calcimg.segment import Segmentation, crop_lesions, segment_ct
from calcimg.settings import Settings


@dataclass
class SeriesResult:
    """The lesion rows of one series and its series.csv row."""

    lesions: list[dict] = field(default_factory=list)
    series: dict = field(default_factory=dict)


def _fmt_vec(v) -> str:
    return " ".join(f"{x:.6g}" for x in v)


def series_row(series: Series, settings: Settings, scan: Scan | None = None) -> dict:
    """The series.csv row for a series, filled from its `Scan` when it was loaded."""
    row = {
        "study_uid": series.study_uid,
        "series_uid": series.series_uid,
        "series_key": series.key,
        "source": series.source,
        "kind": series.kind,
        "modality": series.modality,
        "n_files": series.n_files,
        "gravity": "unknown",
        "calcimg_version": __version__,
        "settings_hash": settings.hash,
    }
    header = series.first_header
    if header is not None:
        row["patient_position"] = str(header.get("PatientPosition", "") or "")
    if scan is not None:
        row.update(
            kind=scan.kind,
            shape=" ".join(str(n) for n in scan.shape),
            spacing_mm=_fmt_vec(scan.spacing),
            spacing_source=scan.spacing_source,
            gravity="unknown" if scan.gravity_lps is None else _fmt_vec(scan.gravity_lps),
            gravity_source=scan.gravity_source,
            notes="; ".join(scan.notes),
        )
        row["patient_position"] = scan.header.get("patient_position", row.get("patient_position", ""))
    return row


def segment_scan(scan: Scan, settings: Settings) -> Segmentation:
    """The segmentation for the scan's kind."""
    if scan.kind == "ct":
        return segment_ct(scan, settings)
    from calcimg.segment._radiograph import segment_radiograph

    return segment_radiograph(scan, settings)


def measure_scan(scan: Scan, settings: Settings, seg: Segmentation | None = None) -> list[dict]:
    """Segment a loaded scan and measure every lesion: one dict per lesion, in lesion_id order."""
    seg = seg if seg is not None else segment_scan(scan, settings)
    rows = []
    for lesion in crop_lesions(scan, seg):
        row = {"study_uid": scan.study_uid, "series_uid": scan.series_uid, "lesion_id": lesion.lesion_id}
        row.update(lesion_features(lesion))
        rows.append(row)
    return rows


def process_series(series: Series, settings: Settings | None = None) -> SeriesResult:
    """Run the pipeline on one series. Never raises for bad data: failures become the row's
    ``status="error"`` with the reason; series calcimg does not measure become ``"skipped"``."""
    settings = settings or Settings()
    t0 = time.perf_counter()
    result = SeriesResult(series=series_row(series, settings))
    row = result.series
    if series.kind == "localizer":
        row.update(status="skipped", reason="localizer/scout image")
    elif series.kind == "other":
        row.update(status="skipped", reason=f"modality {series.modality or '?'} is not measured (CT, CR and DX are)")
    else:
        try:
            scan = load(series, nonuniform=settings.nonuniform_slices)
            row.update(series_row(series, settings, scan))
            seg = segment_scan(scan, settings)
            rows = measure_scan(scan, settings, seg)
            for r in rows:
                r["series_key"] = series.key
            result.lesions = rows
            row.update(status="ok", reason="", n_lesions=len(rows), segmentation_flags="; ".join(seg.flags))
        except CalcimgError as exc:
            row.update(status="error", reason=str(exc))
        except MemoryError:
            row.update(status="error", reason=f"{series.source}: out of memory")
        except Exception as exc:  # a bug must not stop the batch; the row says what happened
            row.update(status="error", reason=f"{series.source}: internal error {type(exc).__name__}: {exc}")
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return result
