"""Rim smoothness and rim calcification: smooth round rims (hydatid, phlebolith) versus irregular
(calcified lymph nodes, lobulated masses).

criteria-research 2.4 (R1 residual to a fitted ellipse/ellipsoid, R2 curvature energy, R5
rim-to-core index and ring completeness), on the lesion's envelope on an isotropic grid
(`calcimg.features._shape`).
"""

from __future__ import annotations

import math

import numpy as np

from calcimg.features._shape import NAN, Shape, _edt, not_assessed, shape_of
from calcimg.lesion import Lesion

ROUGHNESS_SCALE = 0.06  # roughness_rel at which the smoothness score falls to 1/e
CURVATURE_FREE = 1.25  # curvature energy tolerated (a ball: ~0.9-1)
SAMPLING_FLOOR = 0.1  # x the coarsest original spacing: residual expected from sampling alone
# Curvature scale, at least this x R_eq. `_shape` coarsens a large lesion's grid to <= 40 voxels
# across (R_eq ~ 20 voxels), so a scale of 2 voxels shrinks against R_eq as the lesion grows and the
# staircase of the binary envelope reads as curvature: with sigma = max(1 mm, 2 voxels) digitised
# discs of R = 10 / 16 / 25 mm gave an energy of 1.14 / 2.45 / 3.62 (a perfect hydatid-sized disc
# scored rim_smoothness 0.3 at R = 16 mm), with 0.2 R_eq (>= 4 voxels once coarsened) 0.99 / 1.11 /
# 1.21. The energy is scale-free (x R_eq^2), so the scale follows the size; lesions with R_eq <= 5 mm
# (and every grid that was not coarsened below 2 voxels = 0.2 R_eq) keep max(1 mm, 2 voxels).
CURVATURE_SCALE_REL = 0.2
CENTRE_DEPTH = 0.6  # radiographs: the "centre" is the envelope deeper than this x its largest depth

RIM_COLUMNS: list[tuple[str, str, str]] = [
    ("rim_smoothness", "", "0..1 smooth outline: exp(-(rim_roughness_rel / 0.06)^2 - max(rim_curvature_energy - 1.25, 0))"),
    ("rim_roughness_mm", "mm", "RMS distance of the envelope boundary from its least-squares ellipsoid (CT) or ellipse (radiograph)"),
    ("rim_roughness_rel", "", "sqrt(rim_roughness_mm^2 - (0.1 x coarsest spacing)^2) / R_eq (R_eq = envelope equivalent radius)"),
    ("rim_curvature_energy", "", "Mean squared boundary curvature x R_eq^2 (mean curvature in 3D): 1 for a ball or disc, larger when rough"),
    ("rim_core_index", "", "(rim - core) / (|rim| + |core|) of the median intensity above the surrounding background; +1 shell with a lucent centre"),
    ("ring_completeness", "", "Fraction of directions from the centre (~100 in 3D, 36 in 2D) whose rim band holds calcium"),
    ("central_lucency", "", "Radiograph: 1 - (median of the envelope's central part - background) / (p95 of the envelope - background), 0..1: ~0 densest centrally, high for a projected shell or tube (zonal, tram-track, ring)"),
]
COLUMNS = tuple(c[0] for c in RIM_COLUMNS)


def _fibonacci_sphere(n: int = 100) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5 ** 0.5) * i
    return np.stack([np.cos(phi), np.sin(phi) * np.sin(theta), np.sin(phi) * np.cos(theta)], axis=1)


def _ellipsoid_residual(pts: np.ndarray) -> float:
    """RMS geometric distance (first-order |F| / |grad F|) of points from their algebraic
    least-squares quadric x^T A x + b^T x = 1 (ellipse in 2D, ellipsoid in 3D)."""
    c = pts.mean(axis=0)
    scale = float(np.sqrt(((pts - c) ** 2).sum(axis=1).mean())) or 1.0
    x = (pts - c) / scale
    nd = x.shape[1]
    iu = np.triu_indices(nd)
    quad = x[:, iu[0]] * x[:, iu[1]]
    design = np.hstack([quad, x])
    coef, *_ = np.linalg.lstsq(design, np.ones(len(x)), rcond=None)
    a = np.zeros((nd, nd))
    a[iu] = coef[: len(iu[0])]
    a = (a + a.T) / 2  # off-diagonal terms were fitted once for both positions
    b = coef[len(iu[0]):]
    f = np.einsum("ni,ij,nj->n", x, a, x) + x @ b - 1.0
    grad = 2 * x @ a + b
    g = np.linalg.norm(grad, axis=1)
    r = np.abs(f) / np.maximum(g, 1e-9)
    return float(np.sqrt(np.mean(r ** 2)) * scale)


def _background(shape: Shape) -> float:
    """Median intensity 1-3 mm outside the envelope (CT without such a shell: 40 HU, soft
    tissue; radiographs: the darkest pixel outside the envelope)."""
    env, img = shape.env, shape.image
    outside = _edt(~env, shape.s, black_border=False)
    shell = (~env) & (outside > 1.0) & (outside <= 3.0)
    if shell.any():
        return float(np.median(img[shell]))
    return 40.0 if shape.kind == "ct" else float(img[~env].min())


def _rim_core(shape: Shape, bg: float) -> tuple[float, float]:
    s = shape.s
    w = max(1.0, 2 * s, 0.15 * shape.r_eq)
    depth = shape.depth
    env = shape.env
    rim = env & (depth < w)
    core = env & (depth >= 2 * w)
    img = shape.image
    index = NAN
    if core.sum() >= 4 and rim.any():
        rc = float(np.median(img[rim])) - bg
        cc = float(np.median(img[core])) - bg
        den = abs(rc) + abs(cc)
        index = (rc - cc) / den if den > 0 else 0.0
    # ring completeness: directions from the envelope centroid whose rim band holds calcium
    idx = np.argwhere(rim)
    centre = np.argwhere(env).mean(axis=0)
    v = idx - centre
    norm = np.linalg.norm(v, axis=1)
    ok = norm > 0
    v, idx = v[ok] / norm[ok, None], idx[ok]
    if shape.ndim == 3:
        dirs = _fibonacci_sphere(100)
        sector = np.argmax(v @ dirs.T, axis=1)
        n_sec = len(dirs)
    else:
        n_sec = 36
        sector = (np.floor((np.arctan2(v[:, 0], v[:, 1]) + math.pi) / (2 * math.pi) * n_sec).astype(int)) % n_sec
    calc = shape.mask[tuple(idx.T)]
    has_rim = np.bincount(sector, minlength=n_sec) > 0
    has_calc = np.bincount(sector, weights=calc.astype(float), minlength=n_sec) > 0
    completeness = float(has_calc[has_rim].mean()) if has_rim.any() else NAN
    return index, completeness


def _central_lucency(shape: Shape, bg: float) -> float:
    """Radiographs: how much darker the middle of a projected lesion is than its densest part
    (`bg`: `_background`)."""
    if shape.ndim != 2:
        return NAN
    env, depth, img = shape.env, shape.depth, shape.image
    dmax = float(depth.max())
    if dmax < 2.0 * shape.s:
        return NAN
    centre = env & (depth >= CENTRE_DEPTH * dmax)
    peak = float(np.percentile(img[env], 95)) - bg
    if peak <= 0 or not centre.any():
        return NAN
    return float(np.clip(1.0 - (float(np.median(img[centre])) - bg) / peak, 0.0, 1.0))


def rim_features(lesion: Lesion) -> dict:
    """Rim smoothness and rim calcification of a lesion (CT: 3D; radiographs: 2D).

    Columns
    -------
    rim_roughness_mm, rim_roughness_rel : float
        R1. The boundary points (marching cubes / squares of the envelope smoothed at 0.5 mm,
        `_shape`) are fitted with the algebraic least-squares quadric x^T A x + b^T x = 1
        (ellipsoid in 3D, ellipse in 2D); residual r_i = |F(x_i)| / |grad F(x_i)| (first-order
        geometric distance). roughness = RMS(r_i) mm; roughness_rel = sqrt(max(roughness^2 -
        (0.1 s_max)^2, 0)) / R_eq, s_max the coarsest original spacing (the residual that the
        sampling alone leaves, e.g. the staircase of 2.5 mm slices, is not roughness). 0 for an
        ellipsoid; < 0.02 for digitised balls; > 0.05 for lobulated or mottled outlines.
    rim_curvature_energy : float
        R2. Mean over the boundary (area-weighted in 3D) of H^2 (3D, integral-invariant mean
        curvature at sigma = max(1 mm, 2 voxels, 0.2 R_eq), `_shape`) or kappa^2 (2D), times R_eq^2.
        1 for a ball or disc (somewhat less once sigma is not small against R), larger for rough
        or lobulated outlines and for elongated ones.
    rim_core_index : float
        R5. Rim band = envelope within w = max(1 mm, 2 voxels, 0.15 R_eq) of its surface, core =
        depth >= 2w; background = median intensity 1-3 mm outside the envelope; with rim and
        core the medians minus the background, (rim - core) / (|rim| + |core|). [-1, 1]: near
        +1 a dense shell around a lucent centre (hydatid, phlebolith, zonal myositis
        ossificans), ~0 homogeneous, < 0 densest centrally. NaN when the core has < 4 voxels.
    ring_completeness : float
        R5. Directions from the envelope centroid (100 Fibonacci directions in 3D, 36 sectors in
        2D): the fraction of those whose rim-band voxels include calcified ones. [0, 1]; 1 for a
        complete ring (or any solid lesion), low for an open arc.
    central_lucency : float
        Radiographs only (criteria-research 2.4 R5 in projection): with bg the median intensity
        1-3 mm outside the envelope, peak the 95th percentile inside it and centre the median
        over the envelope's central part (depth >= 0.6 x its largest depth),
        1 - (centre - bg) / (peak - bg), clipped to [0, 1]. In projection a solid deposit is
        densest where it is thickest, in its middle (~0, noise adds ~0.1); a shell, a ring or a
        tube projects its walls edge-on at the sides and leaves its middle darker (a zonal
        myositis ossificans, a tram-track artery, a phlebolith's central lucency: 0.3-0.7).
        The CT rim_core_index above does not carry over to projections, whose walls overlap
        the centre. Empty on CT, and when the envelope is less than two pixels deep.
    rim_smoothness : float
        Score exp(-(roughness_rel / 0.06)^2 - max(curvature_energy - 1.25, 0)). [0, 1]: ~1 for a
        ball, ellipsoid or thin smooth shell (hydatid, phlebolith), low for mottled nodes and
        lobulated masses. Criteria: hydatid cyst and phlebolith (smooth round rim) versus
        calcified lymph node (irregular), tumoral calcinosis (lobulated). With rim_core_index
        ~ 1 and ring_completeness ~ 1 it is the hydatid / eggshell pattern.

    Lesions below the minimum size (`_shape`) are NaN with a reason.
    """
    shape = shape_of(lesion)
    if shape.reason:
        return not_assessed(COLUMNS, shape.reason)
    pts = shape.boundary_points()
    rough = _ellipsoid_residual(pts)
    # the part of the residual the sampling alone explains (staircase of thick slices) is not roughness
    floor = SAMPLING_FLOOR * shape.coarsest_mm
    rel = math.sqrt(max(rough * rough - floor * floor, 0.0)) / shape.r_eq
    sigma = max(1.0, 2.0 * shape.s, CURVATURE_SCALE_REL * shape.r_eq)
    kappa = shape.curvature(sigma)
    if shape.ndim == 3:
        verts, faces = shape.boundary()
        tri = np.linalg.norm(np.cross(verts[faces[:, 1]] - verts[faces[:, 0]],
                                      verts[faces[:, 2]] - verts[faces[:, 0]]), axis=1) / 2
        weight = np.bincount(faces.ravel(), weights=np.repeat(tri / 3, 3), minlength=len(verts))
    else:
        weight = np.concatenate([np.linalg.norm(np.roll(c, -1, axis=0) - c, axis=1) for c in shape.boundary()])
    energy = float(np.sum(weight * kappa ** 2) / np.sum(weight)) * shape.r_eq ** 2
    bg = _background(shape)
    index, completeness = _rim_core(shape, bg)
    smooth = math.exp(-(rel / ROUGHNESS_SCALE) ** 2 - max(energy - CURVATURE_FREE, 0.0))
    row = {
        "rim_smoothness": smooth,
        "rim_roughness_mm": rough,
        "rim_roughness_rel": rel,
        "rim_curvature_energy": energy,
        "rim_core_index": index,
        "ring_completeness": completeness,
        "central_lucency": _central_lucency(shape, bg),
    }
    if not np.isfinite(index):
        row["not_assessed"] = "rim_core_index: the envelope has no core (fewer than 4 voxels deeper than 2 rim widths)"
    return row
