"""One series from files to feature rows: load, segment, measure."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from calcimg import __version__
from calcimg.criteria import apply as apply_criteria
from calcimg.criteria import default_table, study_context
from calcimg.errors import CalcimgError
from calcimg.features import lesion_features, study_features
from calcimg.features.multiplicity import multiplicity_features, principal_axis
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
    """Segment a loaded scan and measure every lesion: one dict per lesion, in lesion_id order,
    with the criteria stage's ``pattern``, ``score_*`` and ``evidence`` (calcimg.criteria).

    The criteria run once every lesion is measured: the multiplicity columns
    (`calcimg.features.multiplicity`) describe each lesion's company in the series."""
    seg = seg if seg is not None else segment_scan(scan, settings)
    table = default_table()
    rows = []
    for lesion in crop_lesions(scan, seg, settings=settings):
        lesion.context["gravity_source"] = scan.gravity_source  # why fluid levels are not assessed
        row = {"study_uid": scan.study_uid, "series_uid": scan.series_uid, "lesion_id": lesion.lesion_id}
        row.update(lesion_features(lesion))
        row.update(principal_axis(lesion))
        rows.append(row)
    multiplicity_features(rows)
    return [apply_criteria(row, table) for row in rows]


def study_row(scan: Scan, seg: Segmentation, rows: list[dict]) -> dict:
    """The study-level columns of the series row (bone density, vascular count, the criteria's
    metabolic-calcinosis flag). A failure here empties them with the reason; it never fails the
    series."""
    try:
        row = study_features(scan, seg, rows)
        row.update(study_context(rows, row, default_table()))
        return row
    except Exception as exc:  # context for the row, not worth losing the lesions over
        return {"study_not_assessed": f"study features failed: {type(exc).__name__}: {exc}"}


def _mask_labels(scan: Scan, mask) -> np.ndarray:
    """The user's label image as an integer array on the scan's grid (checked)."""
    arr = mask.pixels if isinstance(mask, Scan) else np.asarray(mask)
    if arr.shape != scan.shape:
        raise ValueError(f"mask shape {arr.shape} differs from the image shape {scan.shape}")
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError("the mask holds non-integer values: it must be a label image (0 = background)")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"the mask has data type {arr.dtype}: it must be a label image of integers")
    if arr.size and arr.min() < 0:
        raise ValueError("the mask holds negative labels: 0 is background, lesions are 1, 2, ...")
    return arr


def mask_segmentation(scan: Scan, mask, settings: Settings | None = None,
                      context: Segmentation | None = None) -> tuple[Segmentation, list[int]]:
    """A `Segmentation` whose lesions are the labels of a user's mask, and those label values.

    Lesion ``i`` (1..n) is the ``i``-th label value in increasing order. Bone and body come from
    `context` (a segmentation of the same scan) or, when None, from running calcimg's own
    segmentation for them (its lesions are not used); the user's labelled voxels never count as
    bone. Each label's ``component_count`` is its number of connected parts (26-/8-connected).
    """
    from scipy import ndimage

    labels = _mask_labels(scan, mask)
    values = [int(v) for v in np.unique(labels) if v != 0]
    if context is None:
        try:
            context = segment_scan(scan, settings or Settings())
        except Exception as exc:  # e.g. a tiny test image: measure the labels without bone or body
            context = Segmentation(labels=np.zeros(scan.shape, np.uint8), boxes=[], component_counts=[],
                                   flags=[f"bone and body not found ({type(exc).__name__}: {exc})"])
    lab = np.zeros(scan.shape, np.uint32)
    boxes, masks, counts = [], [], []
    full = ndimage.generate_binary_structure(scan.ndim, scan.ndim)
    objects = ndimage.find_objects(np.searchsorted(values, labels, side="right") * (labels > 0)) if values else []
    for i, (value, box) in enumerate(zip(values, objects, strict=True), 1):
        m = labels[box] == value
        lab[box][m] = i
        boxes.append(box)
        masks.append(m)
        counts.append(int(ndimage.label(m, structure=full)[1]))
    bone = context.bone
    if bone is not None and values:
        bone = bone & (labels == 0)
    seg = Segmentation(labels=lab, boxes=boxes, component_counts=counts, bone=bone, body=context.body,
                       flags=list(context.flags), masks=masks, touches_bone=[False] * len(values),
                       body_coarse=context.body_coarse, body_steps=context.body_steps)
    return seg, values


def measure_with_mask(scan: Scan, mask, settings: Settings | None = None,
                      context: Segmentation | None = None) -> list[dict]:
    """Every feature for each label of a user's mask (drawn ROIs, another tool's labels), instead of
    segmenting.

    Parameters
    ----------
    scan : Scan
        The loaded image.
    mask : Scan or ndarray
        A label image on the scan's grid (0 = background): a `Scan` from `calcimg.io.load_mask`
        (which checked the geometry) or an array of the scan's shape.
    settings : Settings, optional
        Used for the bone and body context (calcimg's own segmentation of the scan).
    context : Segmentation, optional
        A segmentation of the same scan to take bone and body from, instead of computing it.

    Returns
    -------
    list of dict
        One row per label, like `measure_scan`'s, with ``lesion_id`` 1..n by increasing label
        value and ``label`` the user's value.

    Examples
    --------
    >>> from calcimg.io import load_mask                                  # doctest: +SKIP
    >>> mask = load_mask("rois.nii.gz", scan)                             # doctest: +SKIP
    >>> rows = measure_with_mask(scan, mask)                              # doctest: +SKIP
    """
    seg, values = mask_segmentation(scan, mask, settings, context)
    rows = measure_scan(scan, settings or Settings(), seg)
    for row, value in zip(rows, values, strict=True):
        row["label"] = value
    return rows


def process_series(
    series: Series,
    settings: Settings | None = None,
    *,
    on_measured: Callable[[Scan, Segmentation, list[dict]], None] | None = None,
    mask_path: str | None = None,
) -> SeriesResult:
    """Run the pipeline on one series. Never raises for bad data: failures become the row's
    ``status="error"`` with the reason; series calcimg does not measure become ``"skipped"``.

    `on_measured(scan, seg, lesion_rows)`, when given, is called once the lesions are measured,
    while the scan is still in memory (the batch draws overlays and DICOM SEG there). It should
    not raise: an exception from it fails the series like any other.

    `mask_path`, when given, names a label image on the scan's grid whose labels are measured
    instead of the segmentation's lesions (the segmentation still gives bone and body context)."""
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
            if mask_path is not None:
                from calcimg.io import load_mask

                rows = measure_with_mask(scan, load_mask(mask_path, scan), settings, context=seg)
            else:
                rows = measure_scan(scan, settings, seg)
            for r in rows:
                r["series_key"] = series.key
            if on_measured is not None:
                on_measured(scan, seg, rows)
            result.lesions = rows
            row.update(status="ok", reason="", n_lesions=len(rows), segmentation_flags="; ".join(seg.flags))
            row.update(study_row(scan, seg, rows))
        except CalcimgError as exc:
            row.update(status="error", reason=str(exc))
        except MemoryError:
            row.update(status="error", reason=f"{series.source}: out of memory")
        except Exception as exc:  # a bug must not stop the batch; the row says what happened
            row.update(status="error", reason=f"{series.source}: internal error {type(exc).__name__}: {exc}")
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return result
