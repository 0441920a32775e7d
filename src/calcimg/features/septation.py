"""Septation: loculi separated by walls ("chicken-wire" tumoral calcinosis) versus one cavity
(hydatid, zonal myositis ossificans) or a solid deposit.

criteria-research 2.2: S3 (loculi as basins of the non-calcified interior, split by watershed,
kept when enclosed by a wall that is denser by a contrast margin) and S1 (closing residue: the
thin non-calcified septa between calcified compartments), on the lesion's envelope on an
isotropic grid (`calcimg.features._shape`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from calcimg.features._shape import (
    NAN,
    Shape,
    _edt,
    close_mm,
    not_assessed,
    shape_of,
    split_regions,
)
from calcimg.lesion import Lesion

SEPTUM_CLOSING_MM = 1.5  # r_c of the closing residue: above the septal half-thickness
LOCULUS_MIN_RADIUS_MM = 1.5  # inscribed radius of a loculus (diameter 3 mm)
COMPARTMENT_MIN_RADIUS_MM = 2.0  # inscribed radius of a calcified compartment
NECK_RATIO = 0.75
ENCLOSURE = 0.6  # fraction of a loculus' one-voxel ring that must be wall
CT_WALL_CONTRAST_HU = 100.0  # wall - loculus (criteria-research 2.2: 100 HU)
XR_WALL_CONTRAST = 0.25  # of (95th percentile - background) on radiographs
XR_BRIGHT = 0.5  # radiograph "calcified": above this fraction of (95th percentile - background)

SEPTATION_COLUMNS: list[tuple[str, str, str]] = [
    ("septation", "", "0..1 loculi separated by walls: 1 - exp(-(loculus_count - 1) / 2)"),
    ("loculus_count", "", "Loculi: enclosed non-calcified basins of the interior with a denser wall, or calcified compartments split by septa (the larger count); 1 when none"),
    ("cavity_count", "", "Non-calcified basins (inscribed radius >= 1.5 mm) enclosed by a wall >= 100 HU (CT) denser"),
    ("compartment_count", "", "Calcified compartments (inscribed radius >= 2 mm) separated by the closing residue (septa)"),
    ("septal_area_mm2", "mm^2", "CT: area of the septa (closing residue at 1.5 mm) = residue volume / its thickness"),
    ("septal_length_mm", "mm", "Radiograph: length of the septa (closing residue at 1.5 mm) = residue area / its thickness"),
    ("septal_thickness_mm", "mm", "Twice the median inscribed radius along the closing residue's medial ridge"),
]
COLUMNS = tuple(c[0] for c in SEPTATION_COLUMNS)


def _bright(shape: Shape) -> tuple[np.ndarray, float]:
    """The calcified part of the envelope and the wall-contrast margin (image units)."""
    if shape.kind == "ct":
        return shape.mask & shape.env, CT_WALL_CONTRAST_HU
    img = shape.image
    outside = _edt(~shape.env, shape.s, black_border=False)
    shell = (~shape.env) & (outside > 1.0) & (outside <= 3.0)
    bg = float(np.median(img[shell])) if shell.any() else float(img.min())
    top = float(np.percentile(img[shape.env], 95))
    span = max(top - bg, 1e-6)
    return shape.env & shape.mask & (img - bg >= XR_BRIGHT * span), XR_WALL_CONTRAST * span


def _cavities(shape: Shape, bright: np.ndarray, contrast: float) -> int:
    interior = shape.env & ~bright
    if not interior.any():
        return 0
    dist = _edt(interior, shape.s)
    labels, peaks = split_regions(interior, dist, shape.s, 0.5, NECK_RATIO)
    img = shape.image
    count = 0
    for i, sl in enumerate(ndimage.find_objects(labels), 1):
        if sl is None or peaks[i - 1] < LOCULUS_MIN_RADIUS_MM:
            continue
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        region = labels[grown] == i
        ring = ndimage.binary_dilation(region) & ~region
        if not ring.any():
            continue
        wall = ring & bright[grown]
        if wall.sum() < ENCLOSURE * ring.sum():
            continue
        if float(np.median(img[grown][wall])) - float(np.median(img[grown][region])) >= contrast:
            count += 1
    return count


def septation_features(lesion: Lesion) -> dict:
    """Septation of a lesion (CT: 3D; radiographs: 2D).

    Columns
    -------
    cavity_count : int
        S3. Interior = envelope minus the calcified voxels (CT: the lesion mask; radiograph:
        mask voxels at least half-way from the surrounding background to the 95th percentile).
        Split by a marker watershed of its distance transform (`_shape.split_regions`: saddles
        < 0.5 mm or necks > 0.75 of the smaller radius merge). A basin counts when its inscribed
        radius is >= 1.5 mm, at least 60 % of its one-voxel ring is calcified (enclosed by a
        wall) and the wall's median intensity exceeds the basin's by >= 100 HU (CT) or 25 % of
        the lesion's contrast (radiograph). Cystic loculi of tumoral calcinosis, a hydatid's
        single cavity, the core of a zonal shell.
    compartment_count : int
        S1. Septa = closing residue closing(calcified, 1.5 mm) minus calcified, inside the
        envelope; compartments = connected parts of (envelope minus the septa grown by one
        voxel) with inscribed radius >= 2 mm. Solid lobules split by soft-tissue septa.
    loculus_count : int
        max(cavity_count, compartment_count, 1). >= 1. Four for a cyst split by three septa.
    septal_area_mm2 (CT), septal_length_mm (radiograph) : float
        Size of the septa: residue volume (area) / septal_thickness_mm. 0 without septa.
    septal_thickness_mm : float
        2 x median EDT (mm) on the residue's medial ridge; NaN without septa. Tumoral calcinosis
        septa are 1-2 mm; near the CT resolution limit blooming erases them (criteria-research
        2.2 pitfalls), so a count from thick-slice CT is a lower bound.
    septation : float
        Score 1 - exp(-(loculus_count - 1) / 2). [0, 1): 0 for one loculus, 0.78 for four.
        Criteria: tumoral calcinosis ("chicken-wire" septa, multiple loculi) versus every
        single-cavity or solid pattern.

    Lesions below the minimum size (`_shape`) are NaN with a reason.
    """
    shape = shape_of(lesion)
    if shape.reason:
        return not_assessed(COLUMNS, shape.reason)
    bright, contrast = _bright(shape)
    n_cav = _cavities(shape, bright, contrast)
    closed = close_mm(bright, shape.s, SEPTUM_CLOSING_MM)
    residue = closed & ~bright & shape.env
    row: dict = dict.fromkeys(COLUMNS, NAN)
    n_comp = 0
    if residue.any():
        d = _edt(residue, shape.s)
        ridge = residue & (d >= ndimage.maximum_filter(d, size=3))
        thick = max(float(2.0 * np.median(d[ridge])) - shape.s, shape.s)
        measure = float(residue.sum()) * shape.voxel / thick
        row["septal_thickness_mm"] = thick
        parts = shape.env & ~ndimage.binary_dilation(residue)
        lab, n = ndimage.label(parts)
        if n:
            peaks = ndimage.maximum(_edt(parts, shape.s), lab, index=np.arange(1, n + 1))
            n_comp = int(np.count_nonzero(np.asarray(peaks) >= COMPARTMENT_MIN_RADIUS_MM))
    else:
        measure = 0.0
    if shape.ndim == 3:
        row["septal_area_mm2"] = measure
    else:
        row["septal_length_mm"] = measure
    n_loc = max(n_cav, n_comp, 1)
    row["cavity_count"] = n_cav
    row["compartment_count"] = n_comp
    row["loculus_count"] = n_loc
    row["septation"] = 1.0 - math.exp(-(n_loc - 1) / 2.0)
    return row
