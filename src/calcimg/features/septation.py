"""Septation: loculi separated by walls ("chicken-wire" tumoral calcinosis) versus one cavity
(hydatid, zonal myositis ossificans) or a solid deposit, lobulated or not.

criteria-research 2.2, on the lesion's envelope on an isotropic grid (`calcimg.features._shape`):

* septa (S1 on the image rather than the mask, with the S3 contrast test): a septum is a lucent
  band narrower than 4 mm with denser tissue on both sides. The grey-level black top-hat
  closing(I, ball 2 mm) - I measures, at every voxel, how much darker it is than the calcium
  around it on both sides; a band counts where that exceeds 100 HU (CT) or 10 % of the lesion's
  contrast (radiograph). The mask cannot show septa on CT: blurred by the scanner, a 1 mm septum
  between two 700 HU walls stays above the 130 HU calcium threshold.
* loculi (S3): the envelope minus the septa, split into basins by a marker watershed of its
  distance transform, the basins then grown over the septa by a watershed of the top-hat, so
  that neighbouring basins meet on the septum's crest. A basin is a loculus when it is large
  (inscribed radius) and *enclosed*: most of its interface with the other large basins runs
  along a septum. Outline notches between lobes look like septa to the top-hat, so interfaces
  are judged only deeper than 1.5 mm below the envelope surface, and only septum pieces of at
  least 8 mm^3 (3D) or 2 mm^2 (2D) there count as walls; a lobulated deposit without internal
  septa therefore has no loculi, however deep its notches.
* cavities (S3 for cystic loculi): non-calcified basins enclosed by a denser wall, so a cyst
  split by calcified plates also counts its loculi.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import ndimage

from calcimg.features._shape import (
    NAN,
    Shape,
    _edt,
    not_assessed,
    shape_of,
    split_regions,
)
from calcimg.lesion import Lesion

SEPTUM_RADIUS_MM = 2.0  # closing ball: fills lucent bands up to 4 mm wide (1-2 mm septum + blur)
SMOOTH_MM = 0.5  # Gaussian sigma before the top-hat (noise; at least half a voxel)
CT_SEPTUM_CONTRAST_HU = 100.0  # criteria-research 2.2 S3: 100 HU for calcified loculi
XR_SEPTUM_CONTRAST = 0.10  # radiograph: of (95th percentile - background) of the lesion
WALL_DEPTH_MM = 1.5  # interfaces are judged this far below the envelope surface (not in notches)
WALL_MIN_MM3, WALL_MIN_MM2 = 8.0, 2.0  # smallest septum piece that counts as a wall (3D, 2D)
BASIN_SADDLE_MM = 0.5  # watershed basins with a shallower saddle merge
LOCULUS_RADIUS_MM = (1.5, 2.5)  # size weight: 0 below, 1 above (inscribed radius)
ENCLOSURE = (0.2, 0.6)  # enclosure weight: 0 below, 1 above (walled fraction of the interface)

LOCULUS_MIN_RADIUS_MM = 1.5  # cavities: inscribed radius of a cystic loculus (diameter 3 mm)
NECK_RATIO = 0.75
CAVITY_ENCLOSURE = 0.6  # fraction of a cavity's one-voxel ring that must be calcified wall
CT_WALL_CONTRAST_HU = 100.0  # cavity wall - cavity (criteria-research 2.2: 100 HU)
XR_WALL_CONTRAST = 0.25  # of (95th percentile - background) on radiographs
XR_BRIGHT = 0.5  # radiograph "calcified": above this fraction of (95th percentile - background)

SEPTATION_COLUMNS: list[tuple[str, str, str]] = [
    ("septation", "", "0..1 loculi separated by walls: 1 - exp(-max(n - 1, 0) / 2), "
     "n = max(septate_loculi, cavity_count)"),
    ("loculus_count", "", "Loculi: max(compartment_count, cavity_count, 1)"),
    ("cavity_count", "", "Non-calcified basins (inscribed radius >= 1.5 mm) enclosed by a wall "
     ">= 100 HU (CT) denser; touching basins count once"),
    ("compartment_count", "", "Basins of the envelope with inscribed radius >= 2 mm whose interfaces "
     "with the other basins run >= 40 % along septa (lucent bands < 4 mm wide, darker than both "
     "sides by >= 100 HU on CT or 10 % of the lesion's contrast on radiographs)"),
    ("septate_loculi", "", "Effective number of loculi enclosed by septa: sum over basins of "
     "size weight (inscribed radius 1.5 -> 2.5 mm) x enclosure weight (walled fraction 0.2 -> 0.6)"),
    ("septal_area_mm2", "mm^2", "CT: area of the septa deeper than 1.5 mm in the envelope = their "
     "volume / septal_thickness_mm"),
    ("septal_length_mm", "mm", "Radiograph: length of the septa deeper than 1.5 mm in the envelope = "
     "their area / septal_thickness_mm"),
    ("septal_thickness_mm", "mm", "Width of the lucent band of the septa at the contrast threshold: "
     "2 x median inscribed radius on its medial ridge, less one voxel"),
    ("septal_density_per_mm", "1/mm", "septal_area_mm2 / envelope volume (CT) or septal_length_mm / "
     "envelope area (radiograph)"),
]
COLUMNS = tuple(c[0] for c in SEPTATION_COLUMNS)


def _ramp(x, lo: float, hi: float):
    return np.clip((np.asarray(x, float) - lo) / (hi - lo), 0.0, 1.0)


@lru_cache(maxsize=32)
def _ball(radius_vox: float, ndim: int) -> np.ndarray:
    n = math.floor(radius_vox + 1e-6)
    grid = np.mgrid[(slice(-n, n + 1),) * ndim]
    return (grid ** 2).sum(axis=0) <= radius_vox ** 2 + 1e-6


def _radiograph_span(shape: Shape) -> tuple[float, float]:
    """Background (median of a 1-3 mm shell outside the envelope) and the lesion's contrast
    (95th percentile inside minus background), in image units (cached on the shape)."""
    if "radiograph_span" in shape.cache:
        return shape.cache["radiograph_span"]
    img = shape.image
    outside = _edt(~shape.env, shape.s, black_border=False)
    shell = (~shape.env) & (outside > 1.0) & (outside <= 3.0)
    bg = float(np.median(img[shell])) if shell.any() else float(img.min())
    top = float(np.percentile(img[shape.env], 95))
    shape.cache["radiograph_span"] = (bg, max(top - bg, 1e-6))
    return shape.cache["radiograph_span"]


def _bright(shape: Shape) -> tuple[np.ndarray, float]:
    """The calcified part of the envelope and the cavity wall-contrast margin (image units)."""
    if shape.kind == "ct":
        return shape.mask & shape.env, CT_WALL_CONTRAST_HU
    bg, span = _radiograph_span(shape)
    return shape.env & shape.mask & (shape.image - bg >= XR_BRIGHT * span), XR_WALL_CONTRAST * span


def _cavities(shape: Shape, bright: np.ndarray, contrast: float) -> int:
    interior = shape.env & ~bright
    if not interior.any():
        return 0
    dist = _edt(interior, shape.s)
    labels, peaks = split_regions(interior, dist, shape.s, 0.5, NECK_RATIO)
    img = shape.image
    kept = []
    for i, sl in enumerate(ndimage.find_objects(labels), 1):
        if sl is None or peaks[i - 1] < LOCULUS_MIN_RADIUS_MM:
            continue
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        region = labels[grown] == i
        ring = ndimage.binary_dilation(region) & ~region
        if not ring.any():
            continue
        wall = ring & bright[grown]
        if wall.sum() < CAVITY_ENCLOSURE * ring.sum():
            continue
        if float(np.median(img[grown][wall])) - float(np.median(img[grown][region])) >= contrast:
            kept.append(i)
    if not kept:
        return 0
    # basins that touch (a tube's lumen cut at a neck) are one cavity: loculi have walls between
    return int(ndimage.label(np.isin(labels, kept), structure=np.ones((3,) * labels.ndim))[1])


def septum_tophat(shape: Shape) -> tuple[np.ndarray, float]:
    """Black top-hat of the lightly smoothed image, closing(I, ball 2 mm) - I (image units), and
    the contrast a septum must reach (100 HU on CT, 10 % of the lesion's contrast on
    radiographs)."""
    sigma = max(SMOOTH_MM / shape.s, 0.5)
    img = ndimage.gaussian_filter(shape.image, sigma)
    closed = ndimage.grey_closing(img, footprint=_ball(SEPTUM_RADIUS_MM / shape.s, shape.ndim))
    if shape.kind == "ct":
        contrast = CT_SEPTUM_CONTRAST_HU
    else:
        contrast = XR_SEPTUM_CONTRAST * _radiograph_span(shape)[1]
    return closed - img, contrast


def _face_pairs(labels: np.ndarray, *fields: np.ndarray):
    """Every pair of face-neighbour voxels with different non-zero labels: (low label, high
    label) and, for each field, its values on the two voxels."""
    lo, hi, vals = [], [], [[] for _ in fields]
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)
        diff = (a[:-1] != a[1:]) & (a[:-1] > 0) & (a[1:] > 0)
        if not diff.any():
            continue
        x, y = a[:-1][diff], a[1:][diff]
        lo.append(np.minimum(x, y))
        hi.append(np.maximum(x, y))
        for v, f in zip(vals, fields, strict=True):
            g = np.moveaxis(f, axis, 0)
            v.append((g[:-1][diff], g[1:][diff]))
    if not lo:
        return None
    out = [np.concatenate(lo), np.concatenate(hi)]
    for v in vals:
        out.append((np.concatenate([p[0] for p in v]), np.concatenate([p[1] for p in v])))
    return out


def septate_loculi(shape: Shape) -> dict:
    """Septa and the loculi they enclose (see the module docstring and `septation_features`)."""
    from skimage.segmentation import watershed

    env = shape.env
    out = {"septate_loculi": 0.0, "compartment_count": 0, "wall": np.zeros(env.shape, bool)}
    deep = shape.depth >= WALL_DEPTH_MM
    if not deep.any():
        return out  # too thin for a wall to be judged: no loculus can be enclosed
    tophat, contrast = septum_tophat(shape)
    out["septum"] = septum = env & (tophat >= contrast)
    # walls: septum pieces deeper than WALL_DEPTH_MM, large enough not to be pixel noise
    pieces, n_pieces = ndimage.label(septum & deep, structure=np.ones((3,) * shape.ndim))
    if not n_pieces:
        return out  # no wall, so no enclosed loculus (and the basins need not be found)
    size = np.bincount(pieces.ravel()) * shape.voxel
    keep = size >= (WALL_MIN_MM3 if shape.ndim == 3 else WALL_MIN_MM2)
    keep[0] = False
    if not keep.any():
        return out
    out["wall"] = wall = keep[pieces]
    cells = env & ~septum
    labels, _ = split_regions(cells, _edt(cells, shape.s), shape.s, BASIN_SADDLE_MM, 1.0)
    basins = watershed(tophat, labels, mask=env)
    n = int(basins.max())
    if n < 2:
        return out
    # inscribed radius of each basin (grown over its half of the septa), in mm
    edge = np.zeros(env.shape, bool)
    for axis in range(shape.ndim):
        a = np.moveaxis(basins, axis, 0)
        e = np.moveaxis(edge, axis, 0)
        d = a[:-1] != a[1:]
        e[:-1] |= d
        e[1:] |= d
    radius = np.zeros(n + 1)
    inner = _edt(env & ~edge, shape.s)
    radius[1:] = np.asarray(ndimage.maximum(inner, basins, index=np.arange(1, n + 1))) + 0.5 * shape.s
    pairs = _face_pairs(basins, deep, wall)
    if pairs is None:
        return out
    lo, hi, (deep_a, deep_b), (wall_a, wall_b) = pairs
    judged = deep_a & deep_b
    lo, hi, walled = lo[judged], hi[judged], (wall_a | wall_b)[judged]
    if not len(lo):
        return out
    key = lo.astype(np.int64) * (n + 1) + hi
    uniq, inv = np.unique(key, return_inverse=True)
    faces = np.bincount(inv).astype(float)
    walled_faces = np.bincount(inv, weights=walled.astype(float))
    ua, ub = uniq // (n + 1), uniq % (n + 1)
    size_w = _ramp(radius, *LOCULUS_RADIUS_MM)
    size_w[0] = 0.0
    total = np.zeros(n + 1)
    along = np.zeros(n + 1)
    np.add.at(total, ua, size_w[ub] * faces)
    np.add.at(total, ub, size_w[ua] * faces)
    np.add.at(along, ua, size_w[ub] * walled_faces)
    np.add.at(along, ub, size_w[ua] * walled_faces)
    enclosure = np.divide(along, total, out=np.zeros(n + 1), where=total > 0)
    out["septate_loculi"] = float((size_w * _ramp(enclosure, *ENCLOSURE)).sum())
    mid_r = 0.5 * sum(LOCULUS_RADIUS_MM)
    mid_e = 0.5 * sum(ENCLOSURE)
    loculi = (radius[1:] >= mid_r) & (enclosure[1:] >= mid_e)
    out["compartment_count"] = int(np.count_nonzero(loculi))
    return out


def septation_features(lesion: Lesion) -> dict:
    """Septation of a lesion (CT: 3D; radiographs: 2D).

    Every column serves the septation criteria of the table (``tc_septate``: tumoral calcinosis,
    whose "chicken-wire" lucencies are fibrous septa between loculi, criteria-research 1.1 and
    2.2; ``ct_no_septa``: against calcific tendinitis), through ``septation`` and
    ``loculus_count``; the others are its raw measurements. Counts are unitless.

    Columns
    -------
    septate_loculi : float
        S1/S3 on the image. Septa = envelope voxels where the black top-hat
        closing(G_0.5mm * I, ball 2 mm) - G_0.5mm * I >= 100 HU (CT) or 10 % of the lesion's
        contrast (radiograph: 95th percentile inside the envelope minus the median of a 1-3 mm
        shell outside), i.e. lucent bands narrower than 4 mm darker than the tissue on both
        sides. Basins: marker watershed of the distance transform of (envelope minus septa),
        saddles < 0.5 mm merged, grown over the septa by a watershed of the top-hat. Walls:
        septum pieces >= 1.5 mm below the envelope surface of >= 8 mm^3 (CT) / 2 mm^2
        (radiograph). For basin i (grown over its half of the septa) with inscribed radius
        r_i (mm, distance to its edge plus half a voxel): size weight
        w_i = clip((r_i - 1.5) / 1.0, 0, 1); enclosure e_i = sum_j w_j W_ij / sum_j w_j F_ij over
        the other basins j, F_ij the faces i shares with j deeper than 1.5 mm, W_ij those on a
        wall; septate_loculi = sum_i w_i clip((e_i - 0.2) / 0.4, 0, 1). Unitless, >= 0: 0 for a
        solid or merely lobulated deposit, a shell or a tube; about the number of loculi of a
        septate mass (8 for a ball cut by three lucent planes).
    compartment_count : int
        Basins with r_i >= 2 mm and e_i >= 0.4 (the weights' midpoints). >= 0.
    cavity_count : int
        S3 for cystic loculi. Interior = envelope minus the calcified voxels (CT: the lesion
        mask; radiograph: mask voxels at least half-way from the background to the 95th
        percentile), split by a marker watershed of its distance transform. A basin counts when
        its inscribed radius is >= 1.5 mm, at least 60 % of its one-voxel ring is calcified and
        the wall's median intensity exceeds the basin's by >= 100 HU (CT) or 25 % of the
        lesion's contrast (radiograph); basins that touch count once (no wall between them).
        >= 0. A cyst split by calcified plates, a hydatid's cavity.
    loculus_count : int
        max(compartment_count, cavity_count, 1). >= 1. Four for a cyst split by three septa.
    septal_area_mm2 (CT), septal_length_mm (radiograph) : float
        Size of the walls: their volume (area) / septal_thickness_mm, mm^2 (mm). >= 0; 0
        without walls.
    septal_thickness_mm : float
        2 x median distance-to-edge (mm) on the medial ridge of the walls, less one voxel: the
        width of the lucent band at the contrast threshold, which includes the scanner's blur
        (a 1.2 mm septum reads about 2 mm). >= one voxel; NaN without walls. Tumoral calcinosis septa are
        1-2 mm; on thick-slice CT blooming erases those lying across the slices
        (criteria-research 2.2 pitfalls), so counts from such scans are lower bounds.
    septal_density_per_mm : float
        septal_area_mm2 / envelope volume (CT) or septal_length_mm / envelope area, 1/mm. >= 0.
    septation : float
        n = max(septate_loculi, cavity_count); score 1 - exp(-max(n - 1, 0) / 2). [0, 1): 0 for
        at most one loculus, 0.39 for two, 0.78 for four. Criterion: tumoral calcinosis
        ("chicken-wire" septa between loculi) versus every single-cavity, solid or lobulated
        pattern. A zonal shell whose lucent core is narrower than 4 mm (small myositis
        ossificans) can read as two walled halves at some orientations (up to about 0.35).

    Lesions below the minimum size (`_shape`) are NaN with a reason.
    """
    shape = shape_of(lesion)
    if shape.reason:
        return not_assessed(COLUMNS, shape.reason)
    n_cav = _cavities(shape, *_bright(shape))
    sep = septate_loculi(shape)
    wall = sep["wall"]
    row: dict = dict.fromkeys(COLUMNS, NAN)
    measure = 0.0
    if wall.any():
        d = _edt(sep["septum"], shape.s)
        ridge = wall & (d >= ndimage.maximum_filter(d, size=3))
        thick = max(float(2.0 * np.median(d[ridge])) - shape.s, shape.s)
        measure = float(np.count_nonzero(wall)) * shape.voxel / thick
        row["septal_thickness_mm"] = thick
    row["septal_area_mm2" if shape.ndim == 3 else "septal_length_mm"] = measure
    row["septal_density_per_mm"] = measure / (float(np.count_nonzero(shape.env)) * shape.voxel)
    n_sep = sep["septate_loculi"]
    row["septate_loculi"] = n_sep
    row["compartment_count"] = sep["compartment_count"]
    row["cavity_count"] = n_cav
    row["loculus_count"] = max(sep["compartment_count"], n_cav, 1)
    row["septation"] = 1.0 - math.exp(-max(max(n_sep, n_cav) - 1.0, 0.0) / 2.0)
    return row
