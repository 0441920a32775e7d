"""Lobulation: a multiglobular outline (tumoral calcinosis) versus ovoid, elongated or irregular.

criteria-research 2.1 (L1 solidity, L2 convexity defects, L3 curvature sign changes, L4 lobe count
by distance-transform maxima and watershed), on the lesion's envelope, on an isotropic grid
(`calcimg.features._shape`). The same code serves CT (3D) and radiographs (2D).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from calcimg.features._shape import (
    NAN,
    Shape,
    _edt,
    hull_voxels,
    not_assessed,
    shape_of,
    split_regions,
)
from calcimg.lesion import Lesion

LOBE_MIN_RADIUS_MM = 2.5  # r_min: a lobe's inscribed radius
NECK_RATIO = 0.75  # a neck wider than this fraction of the smaller lobe's radius joins them
DEFECT_ABS_MM, DEFECT_REL = 1.5, 0.10  # significant convexity defect: depth >= max(abs, rel R_eq)
CONCAVE_REL = 0.5  # concave where curvature < -CONCAVE_REL / R_eq
CONCAVE_MIN_3D_MM2, CONCAVE_MIN_2D_MM = 4.0, 2.0
CONCAVE_FRACTION_SCALE = 0.05

LOBULATION_COLUMNS: list[tuple[str, str, str]] = [
    ("lobulation", "", "0..1 multiglobular outline: 1 - exp(-(concave_boundary_fraction / 0.05 + (lobe_count - 1) / 2))"),
    ("lobe_count", "", "Lobes: distance-transform maxima of the envelope split by watershed, "
     "inscribed radius >= 2.5 mm, necks <= 0.75 of the smaller radius; 1 for a single globule"),
    ("lobe_median_radius_mm", "mm", "Median inscribed radius of the lobes"),
    ("lobulation_solidity", "", "Envelope volume (CT) or area (radiograph) / that of its convex hull; 1 = convex"),
    ("convexity_defect_count", "", "Concavities of the hull minus the envelope deeper than max(1.5 mm, 0.1 R_eq)"),
    ("convexity_defect_depth_mm", "mm", "Depth of the deepest convexity defect (0 when convex)"),
    ("concave_boundary_fraction", "", "Fraction of the envelope boundary (area or length) with curvature < -0.5 / R_eq"),
    ("concavity_count", "", "Concave boundary patches (CT, >= 4 mm^2) or runs (radiograph, >= 2 mm): curvature sign changes"),
]
COLUMNS = tuple(c[0] for c in LOBULATION_COLUMNS)


def lobes(shape: Shape) -> tuple[int, np.ndarray]:
    """Lobe count and lobe radii (mm) of the envelope (cached on the shape)."""
    if "lobes" not in shape.cache:
        depth = shape.depth
        h = max(1.0, 0.15 * float(depth.max()))
        _, peaks = split_regions(shape.env, depth, shape.s, h, NECK_RATIO)
        radii = np.sort(peaks[peaks >= LOBE_MIN_RADIUS_MM])[::-1]
        shape.cache["lobes"] = (max(1, len(radii)), radii)
    return shape.cache["lobes"]


def _defects(shape: Shape) -> tuple[int, float]:
    hull = hull_voxels(shape)
    residue = hull & ~shape.env
    if not residue.any():
        return 0, 0.0
    dh = _edt(hull, shape.s)
    lab, n = ndimage.label(residue)
    depth = np.asarray(ndimage.maximum(dh, lab, index=np.arange(1, n + 1)), dtype=float)
    tau = max(DEFECT_ABS_MM, DEFECT_REL * shape.r_eq)
    return int(np.count_nonzero(depth >= tau)), float(depth.max())


def curvature_sigma(shape: Shape) -> float:
    """Smoothing scale of the boundary curvature: max(1 mm, 2 voxels)."""
    return max(1.0, 2.0 * shape.s)


def _concavities(shape: Shape) -> tuple[float, int]:
    kappa = shape.curvature(curvature_sigma(shape))
    concave = kappa < -CONCAVE_REL / shape.r_eq
    if shape.ndim == 3:
        verts, faces = shape.boundary()
        tri = np.linalg.norm(np.cross(verts[faces[:, 1]] - verts[faces[:, 0]],
                                      verts[faces[:, 2]] - verts[faces[:, 0]]), axis=1) / 2
        vert_area = np.bincount(faces.ravel(), weights=np.repeat(tri / 3, 3), minlength=len(verts))
        frac = float(vert_area[concave].sum() / vert_area.sum()) if vert_area.sum() > 0 else NAN
        keep = concave[faces].all(axis=1)
        f = faces[keep]
        if not len(f):
            return frac, 0
        e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(len(verts),) * 2)
        _, comp = connected_components(graph, directed=False)
        patch_area = np.bincount(comp, weights=np.where(concave, vert_area, 0.0))
        used = np.unique(comp[f.ravel()])
        return frac, int(np.count_nonzero(patch_area[used] >= CONCAVE_MIN_3D_MM2))
    # 2D: concave runs along each closed contour
    total = count = 0
    conc_len = 0.0
    offset = 0
    for c in shape.boundary():
        k = concave[offset:offset + len(c)]
        offset += len(c)
        seg = np.linalg.norm(np.roll(c, -1, axis=0) - c, axis=1)
        total += seg.sum()
        conc_len += seg[k].sum()
        if k.all():
            continue
        start = int(np.argmin(k))  # begin at a convex point so runs do not wrap
        kk, ss = np.roll(k, -start), np.roll(seg, -start)
        edges = np.diff(np.r_[0, kk.astype(np.int8), 0])
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            if ss[a:b].sum() >= CONCAVE_MIN_2D_MM:
                count += 1
    return (float(conc_len / total) if total > 0 else NAN), count


def lobulation_features(lesion: Lesion) -> dict:
    """Lobulation of a lesion's envelope (CT: 3D; radiographs: 2D).

    The envelope E = fill_holes(closing(mask, 2 mm)) on an isotropic grid (criteria-research 2.0;
    `calcimg.features._shape`); R_eq = d_eq / 2, the radius of the disc or ball of E's size.

    Columns
    -------
    lobe_count : int
        L4. Distance transform D of E (mm); markers = local maxima of D; marker watershed of -D;
        neighbouring regions merge when their saddle s is shallow (min peak - s < h,
        h = max(1 mm, 0.15 max D)) or wide (s > 0.75 min peak), highest saddles first. A lobe is
        a region with inscribed radius (peak D) >= 2.5 mm. At least 1. >= 1. Multiglobular
        tumoral calcinosis: several; tendinitis, phlebolith, cyst: 1. A projection (radiograph)
        superimposes lobules, so there the count is a lower bound.
    lobe_median_radius_mm : float
        Median inscribed radius of the lobes (mm); NaN when no region reaches 2.5 mm.
    lobulation_solidity : float
        L1. V_E / V_hull (3D, both from the marching-cubes boundary of E smoothed at 0.5 mm) or
        A_E / A_hull (2D, marching squares). (0, 1]; 1 = convex.
    convexity_defect_count : int
        L2. Connected parts of (hull voxels minus E) whose deepest point lies at least
        max(1.5 mm, 0.1 R_eq) inside the hull (EDT of the hull, mm): the notches between lobes.
    convexity_defect_depth_mm : float
        Depth of the deepest defect, mm (0 for a convex envelope).
    concave_boundary_fraction : float
        L3. Fraction of the boundary (area in 3D, length in 2D) where the integral-invariant
        curvature (`_shape`: H = (1/2 - G_sigma * E) sqrt(2 pi) / sigma in 3D, kappa = twice that
        in 2D; sigma = max(1 mm, 2 voxels)) is below -0.5 / R_eq. [0, 1]; 0 for convex shapes.
    concavity_count : int
        L3. Concave patches (3D: connected on the mesh, area >= 4 mm^2) or runs along the
        contour (2D: length >= 2 mm); for a closed outline about the number of lobes.
    lobulation : float
        Score 1 - exp(-(concave_boundary_fraction / 0.05 + (lobe_count - 1) / 2)). [0, 1): 0
        for a convex outline (ball, ellipsoid, disc), -> 1 for multiglobular outlines (a
        quarter of the boundary concave, or several lobes). Criteria: tumoral calcinosis
        (multilobulated) versus tendinitis, phlebolith, cysticercus (ovoid) and myositis
        ossificans (elongated).

    Lesions below the minimum size (`_shape`: d_eq < max(3 mm, 5 voxels)) are NaN with a reason.
    """
    shape = shape_of(lesion)
    if shape.reason:
        return not_assessed(COLUMNS, shape.reason)
    n_lobes, radii = lobes(shape)
    volume, _ = shape.boundary_measure()
    hull = shape.hull()
    solidity = min(1.0, volume / hull.volume) if hull is not None and hull.volume > 0 else 1.0
    n_def, depth = _defects(shape)
    frac, n_conc = _concavities(shape)
    row = {
        "lobe_count": n_lobes,
        "lobe_median_radius_mm": float(np.median(radii)) if len(radii) else NAN,
        "lobulation_solidity": solidity,
        "convexity_defect_count": n_def,
        "convexity_defect_depth_mm": depth,
        "concave_boundary_fraction": frac,
        "concavity_count": n_conc,
    }
    row["lobulation"] = 1.0 - math.exp(-(frac / CONCAVE_FRACTION_SCALE + (n_lobes - 1) / 2.0))
    return row
