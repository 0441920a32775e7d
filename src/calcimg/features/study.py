"""Study-level context for ``series.csv``: bone density of the scanned bones and the count of
vascular calcifications (criteria-research 1.6, 2.6: metabolic calcification comes with bone
demineralisation and vascular calcification; hereditary tumoral calcinosis with neither)."""

from __future__ import annotations

import edt
import numpy as np
from scipy import ndimage

from calcimg.scan import Scan

#: Cancellous bone: bone-mask voxels at least this deep below the bone surface (mm) ...
TRABECULAR_DEPTH_MM = 3.0
#: ... whose HU lies in this window: cortex (>= 500 HU, the segmentation's cortex_hu) and fatty
#: marrow (< 0 HU) left out.
TRABECULAR_HU = (0.0, 500.0)
#: Grid (mm) the bone mask is sampled on for this: one pass over a few million voxels at most.
GRID_MM = 1.5
MIN_VOXELS = 50
#: Demineralised below this trabecular HU. [PICK19] (criteria-research 1.0) gives L1 trabecular
#: attenuation 226 +- 44 HU under 30 years and 89 +- 38 HU at 90 years and over; 120 HU lies two SD
#: under the young mean and within one SD of the oldest group. A soft indicator (2.6: report,
#: do not threshold hard): kVp, scanner and which bone is scanned move it.
DEMINERALISED_HU = 120.0
DEMINERALISED_SOURCE = "PICK19 L1 trabecular norms: 226+-44 HU <30 y, 89+-38 HU >=90 y (120 kVp)"

SERIES_STUDY_COLUMNS = ("trabecular_bone_hu", "demineralised", "demineralised_threshold_hu",
                        "demineralised_source", "n_vascular_calcifications", "study_not_assessed")


def trabecular_bone_hu(scan: Scan, bone: np.ndarray | None) -> tuple[float, str]:
    """Typical HU of the cancellous bone in the bone mask; NaN and a reason when there is none.

    The mask is sampled every ~1.5 mm inside its bounding box; depth below the bone surface is the
    Euclidean distance transform of that sample. The value is the mode (peak of a 10 HU histogram
    smoothed with a 15 HU Gaussian) of the deep voxels in the window: a median would be pulled up
    by cortex partial volume, which spreads several mm into thin bones (a 850 HU cortex around
    85 HU cancellous bone: median 123 HU, mode 95 HU on the phantom).
    """
    if scan.kind != "ct":
        return float("nan"), "trabecular_bone_hu: CT only"
    if bone is None or not bone.any():
        return float("nan"), "trabecular_bone_hu: no bone in the scan"
    box = []
    for axis in range(bone.ndim):
        other = tuple(a for a in range(bone.ndim) if a != axis)
        hit = np.flatnonzero(bone.any(axis=other))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    steps = [max(1, round(GRID_MM / s)) for s in scan.spacing]
    sl = tuple(slice(b.start, b.stop, k) for b, k in zip(box, steps, strict=True))
    b = np.ascontiguousarray(bone[sl])
    depth = edt.edt(b, anisotropy=tuple(float(s * k) for s, k in zip(scan.spacing, steps, strict=True)),
                    black_border=True, parallel=1)
    hu = scan.pixels[sl][depth >= TRABECULAR_DEPTH_MM].astype(np.float64)
    hu = hu[(hu >= TRABECULAR_HU[0]) & (hu < TRABECULAR_HU[1])]
    if hu.size < MIN_VOXELS:
        return float("nan"), f"trabecular_bone_hu: fewer than {MIN_VOXELS} cancellous bone voxels"
    counts, edges = np.histogram(hu, bins=np.arange(TRABECULAR_HU[0], TRABECULAR_HU[1] + 1, 10.0))
    peak = int(np.argmax(ndimage.gaussian_filter1d(counts.astype(float), 1.5, mode="constant")))
    return float(edges[peak] + 5.0), ""


def study_features(scan: Scan, seg, lesion_rows: list[dict]) -> dict:
    """The study-level columns of a series' ``series.csv`` row.

    Columns
    -------
    trabecular_bone_hu : float
        CT: typical HU of the cancellous bone of the scanned bones: the mode (10 HU bins, smoothed)
        of the bone-mask voxels at least 3 mm below the bone surface with 0 <= HU < 500 (cortex
        and fatty marrow left out), sampled on a ~1.5 mm grid (HU); the mode, not the median,
        because cortex partial volume reaches several mm into thin bones. Scanner- and kVp-dependent; adjacent bone rather than the L1 vertebra
        the norms were measured on (criteria-research 2.6).
    demineralised : int
        1 when trabecular_bone_hu < demineralised_threshold_hu, 0 otherwise, empty when it is not
        measured. A soft indicator for metabolic calcification (CKD, renal osteodystrophy), never
        a diagnosis of osteoporosis.
    demineralised_threshold_hu : float
        The threshold used: 120 HU, two SD below the young-adult L1 mean (226 +- 44 HU) and within
        one SD of the >= 90-year mean (89 +- 38 HU) [PICK19].
    demineralised_source : str
        Where the threshold comes from.
    n_vascular_calcifications : int
        Lesions whose ``pattern`` is ``vascular``; empty, with a reason, until the criteria step
        assigns patterns.
    study_not_assessed : str
        Study-level columns that could not be measured, and why.
    """
    reasons = []
    value, why = trabecular_bone_hu(scan, getattr(seg, "bone", None))
    if why:
        reasons.append(why)
    row: dict = {
        "trabecular_bone_hu": value,
        "demineralised": int(value < DEMINERALISED_HU) if np.isfinite(value) else float("nan"),
        "demineralised_threshold_hu": DEMINERALISED_HU,
        "demineralised_source": DEMINERALISED_SOURCE,
    }
    if lesion_rows and all("pattern" in r for r in lesion_rows):
        row["n_vascular_calcifications"] = sum(r["pattern"] == "vascular" for r in lesion_rows)
    elif not lesion_rows:
        row["n_vascular_calcifications"] = 0
    else:
        row["n_vascular_calcifications"] = float("nan")
        reasons.append("n_vascular_calcifications: lesion patterns not assigned (no criteria step yet)")
    row["study_not_assessed"] = "; ".join(reasons)
    return row
