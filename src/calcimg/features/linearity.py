"""Linearity: rods, tubes, plaques and sheets (myositis ossificans, calcinosis cutis, vascular).

criteria-research 2.3 (Li1 inertia eigenvalues, Li2 skeleton slenderness and tortuosity, Li3
Hessian tubularity), on the lesion's envelope on an isotropic grid (`calcimg.features._shape`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from skimage.morphology import reconstruction, skeletonize

from calcimg.features._shape import NAN, Shape, _edt, covariance_eigenvalues, not_assessed, shape_of
from calcimg.lesion import Lesion

LINEARITY_COLUMNS: list[tuple[str, str, str]] = [
    ("linearity", "", "0..1 rod, tube, plaque or sheet: anisotropy x slenderness (see docs)"),
    ("principal_length_mm", "mm", "sqrt(12 lambda_1) of the envelope's voxel covariance: the length of a rod or plate"),
    ("linear_anisotropy", "", "CT: 1 - sqrt(lambda_3 / lambda_1); radiograph: 1 - sqrt(lambda_2 / lambda_1); 0 ball, 1 rod or sheet"),
    ("westin_linear", "", "(lambda_1 - lambda_2) / lambda_1: rod-likeness"),
    ("westin_planar", "", "CT: (lambda_2 - lambda_3) / lambda_1: sheet-likeness"),
    ("calcified_thickness_mm", "mm", "Twice the median inscribed radius along the calcified mask's medial ridge (radiographs: the mask less an enclosed lucent centre, cut at the inner half-maximum of the image contrast, so a projected shell reads as its wall)"),
    ("lucent_centre_fraction", "", "Radiograph: area of the enclosed lucent centre (cut at its inner half-maximum) over the mask's area, 0..1; 0 for a solid deposit, ~0.1-0.6 for a projected zonal shell"),
    ("slenderness", "", "principal_length_mm / calcified_thickness_mm"),
    ("skeleton_length_mm", "mm", "Longest geodesic path through the envelope's skeleton"),
    ("skeleton_length_ratio", "", "skeleton_length_mm / envelope equivalent diameter"),
    ("tortuosity", "", "skeleton_length_mm / distance between the path's ends; 1 straight"),
    ("tubularity", "", "Mean Frangi vesselness (CT) or ridge measure (radiograph) of the envelope along its skeleton"),
]
COLUMNS = tuple(c[0] for c in LINEARITY_COLUMNS)
SLENDER_LO, SLENDER_HI = 3.0, 8.0  # slenderness from "not linear" to "fully linear"


#: Medial-ridge points at least this fraction of the deepest point's depth give the thickness.
RIDGE_FRACTION = 0.5


#: Radiographs: the image is smoothed with a Gaussian of this sigma (mm) before the half-maximum
#: threshold (criteria-research 2.0), so that quantum noise does not fray the wall.
HALF_MAX_SIGMA_MM = 0.5
#: Radiographs: the lesion's peak contrast is this percentile of its contrast over the mask
#: (robust to a few hot pixels).
PEAK_PERCENTILE = 95.0
#: Radiographs: an enclosed dip of the contrast whose floor is at most (1 - this) x the peak is
#: a lucent centre (the zonal shell's; central_lucency reads 0.3-0.7 there), not texture.
LUCENCY_MIN = 0.25


def _background_plane(shape: Shape) -> np.ndarray | None:
    """Radiographs: the soft-tissue background under the lesion, a plane a + b.x fitted (least
    squares, refitted without the > 3 MAD outliers: other calcifications, bone edges) to the
    pixels 1-3 mm outside the envelope, evaluated over the crop. A first-order background
    follows the gradient of soft-tissue thickness across a limb, which a constant does not.
    None when the ring is too small to fit."""
    env, img = shape.env, shape.image
    outside = _edt(~env, shape.s, black_border=False)
    ring = (~env) & (outside > 1.0) & (outside <= 3.0)
    idx = np.argwhere(ring).astype(float)
    if len(idx) < 10:
        return None
    a = np.column_stack([np.ones(len(idx)), idx])
    y = img[ring].astype(float)
    keep = np.ones(len(y), bool)
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(a[keep], y[keep], rcond=None)
        res = y - a @ coef
        mad = float(np.median(np.abs(res[keep] - np.median(res[keep]))))
        keep = np.abs(res) <= max(3.0 * 1.4826 * mad, 1e-6)
        if keep.sum() < 10:
            break
    return coef[0] + np.tensordot(coef[1:], np.indices(img.shape).astype(float), axes=1)


def _calcified_wall(shape: Shape) -> np.ndarray:
    """Radiographs: the calcified mask less its lucent centre, found on the image.

    The radiograph segmenter fills holes (in projection a closed calcified outline encloses
    calcium), so a zonal shell (myositis ossificans: dense periphery, lucent centre) comes as a
    filled outline. Its projected contrast c = G_0.5mm * image - background plane
    (`_background_plane`) peaks where the rays run tangentially through the wall and dips
    through the centre, where they cross only the front and back walls. The lucent centre is
    each basin of the grey-level hole filling of c (reconstruction by erosion from the crop
    border: a region enclosed by higher contrast) whose floor f is at most
    (1 - `LUCENCY_MIN`) x peak (peak = `PEAK_PERCENTILE` of c over the mask), cut at the inner
    half-maximum, c < (peak + f) / 2 (criteria-research 2.0: half-maximum boundaries; the
    outer boundary stays the mask's). A solid grain or rod has no such basin and keeps its
    mask. Falls back to the mask without a background ring, a positive peak, or 4 pixels."""
    m = shape.mask
    bg = _background_plane(shape)
    if bg is None:
        return m
    c = ndimage.gaussian_filter(shape.image.astype(np.float64), max(HALF_MAX_SIGMA_MM / shape.s, 0.5)) - bg
    peak = float(np.percentile(c[m], PEAK_PERCENTILE))
    if peak <= 0:
        return m
    seed = np.full(c.shape, c.max())
    border = np.zeros(c.shape, bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    seed[border] = c[border]
    dip = reconstruction(seed, c, method="erosion") - c
    labels, n = ndimage.label(dip > 1e-6 * peak)
    if not n:
        return m
    floor = np.asarray(ndimage.minimum(c, labels, index=np.arange(1, n + 1)))
    inner = np.where(floor <= (1.0 - LUCENCY_MIN) * peak, 0.5 * (peak + floor), -np.inf)
    wall = m & ~(c < np.concatenate([[-np.inf], inner])[labels])
    return wall if wall.sum() >= 4 else m


def _thickness(shape: Shape, m: np.ndarray) -> float:
    d = _edt(m, shape.s)
    ridge = m & (d >= ndimage.maximum_filter(d, size=3))
    # spurs of the medial ridge that the staircase of a thick-slice surface grows (local maxima a
    # voxel or two deep) are not the object's half-thickness: only the ridge at least half as
    # deep as the deepest point counts
    ridge &= d >= RIDGE_FRACTION * float(d.max())
    vals = d[ridge]
    return float(2.0 * np.median(vals)) if vals.size else NAN


def _longest_path(skel: np.ndarray, s: float) -> tuple[float, float, np.ndarray]:
    """Length (mm) of the longest geodesic path through the skeleton (double Dijkstra sweep),
    the distance between its ends (mm), and the skeleton points (index)."""
    pts = np.argwhere(skel)
    n = len(pts)
    if n < 2:
        return 0.0, 0.0, pts
    index = -np.ones(skel.shape, np.int64)
    index[tuple(pts.T)] = np.arange(n)
    rows, cols, w = [], [], []
    nd = skel.ndim
    for off in np.ndindex(*(3,) * nd):
        o = np.asarray(off) - 1
        if not (o > 0).any() or (o[np.flatnonzero(o)[0]] < 0):  # half of the neighbourhood
            continue
        q = pts + o
        ok = np.all((q >= 0) & (q < skel.shape), axis=1)
        j = np.full(n, -1)
        j[ok] = index[tuple(q[ok].T)]
        hit = j >= 0
        rows.append(np.flatnonzero(hit))
        cols.append(j[hit])
        w.append(np.full(hit.sum(), s * math.sqrt(float((o * o).sum()))))
    g = coo_matrix((np.concatenate(w), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
    d0 = dijkstra(g, directed=False, indices=0)
    d0[~np.isfinite(d0)] = -1
    a = int(np.argmax(d0))
    da = dijkstra(g, directed=False, indices=a)
    da[~np.isfinite(da)] = -1
    b = int(np.argmax(da))
    return float(da[b]), float(np.linalg.norm((pts[a] - pts[b]) * s)), pts


def _tubularity(shape: Shape, pts: np.ndarray, radius_mm: float) -> float:
    """Mean vesselness at the skeleton points, Hessian of the smoothed envelope at sigma = r / sqrt 2."""
    if len(pts) == 0:
        return NAN
    sigma = max(radius_mm / math.sqrt(2.0) / shape.s, 1.0)
    f = shape.env.astype(np.float32)
    nd = shape.ndim
    h = np.empty((len(pts), nd, nd))
    for i in range(nd):
        for j in range(i, nd):
            order = [0] * nd
            order[i] += 1
            order[j] += 1
            v = ndimage.gaussian_filter(f, sigma, order=order, mode="constant")[tuple(pts.T)] * sigma ** 2
            h[:, i, j] = h[:, j, i] = v
    lam = np.linalg.eigvalsh(h)
    lam = np.take_along_axis(lam, np.argsort(np.abs(lam), axis=1), axis=1)  # |l1| <= |l2| (<= |l3|)
    if nd == 3:
        l1, l2, l3 = lam[:, 0], lam[:, 1], lam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            ra = np.abs(l2) / np.abs(l3)
            rb = np.abs(l1) / np.sqrt(np.abs(l2 * l3))
        snorm = np.sqrt((lam ** 2).sum(axis=1))
        c = 0.5 * max(float(snorm.max()), 1e-9)
        v = (1 - np.exp(-ra ** 2 / 0.5)) * np.exp(-rb ** 2 / 0.5) * (1 - np.exp(-snorm ** 2 / (2 * c * c)))
        v = np.where((l2 < 0) & (l3 < 0), v, 0.0)
    else:
        l1, l2 = lam[:, 0], lam[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            rb = np.abs(l1) / np.abs(l2)
        snorm = np.sqrt((lam ** 2).sum(axis=1))
        c = 0.5 * max(float(snorm.max()), 1e-9)
        v = np.exp(-rb ** 2 / 0.5) * (1 - np.exp(-snorm ** 2 / (2 * c * c)))
        v = np.where(l2 < 0, v, 0.0)
    return float(np.nan_to_num(v).mean())


def linearity_features(lesion: Lesion) -> dict:
    """Linearity of a lesion (CT: 3D; radiographs: 2D).

    Columns
    -------
    principal_length_mm : float
        Li1. lambda_1 >= lambda_2 (>= lambda_3) are the eigenvalues (mm^2) of the covariance of
        the envelope's voxel centres; sqrt(12 lambda_1) is the exact length of a thin rod or
        plate (1.55 a for an ellipsoid of semi-axis a). mm.
    linear_anisotropy : float
        1 - sqrt(lambda_min / lambda_1). [0, 1]: 0 for a ball or disc, -> 1 for rods and (CT)
        sheets: calcinosis cutis plaques and sheets are linear in the wide sense.
    westin_linear, westin_planar : float
        c_l = (lambda_1 - lambda_2) / lambda_1 and (CT) c_p = (lambda_2 - lambda_3) / lambda_1.
        [0, 1]. Rod (vessel, myositis ossificans) versus sheet (calcinosis universalis).
    calcified_thickness_mm : float
        t = 2 x median of the calcified mask's EDT (mm) over its medial ridge (voxels not
        exceeded by their 3^n neighbours, at least half as deep as the deepest voxel: the
        shallow spurs a thick-slice staircase grows are not the object's thickness). mm. A vessel wall, plaque or shell is thin; a rice
        grain, tendon deposit or solid nodule is its own width. Radiographs: the mask is first
        cut by its lucent centre (`_calcified_wall`): with c the contrast above a fitted
        background plane, peak its 95th percentile, each enclosed basin of c with floor
        f <= 0.75 peak loses its pixels with c < (peak + f) / 2 (inner half-maximum), since
        the segmenter's filled outline of a projected shell (zonal myositis ossificans) is not
        calcium; solid lesions keep their mask. Criteria: myositis ossificans (linear).
    lucent_centre_fraction : float
        Radiographs only (CT: NaN). 1 - |wall| / |mask|, with wall the mask less its lucent
        centre as cut above: the share of the filled outline that is an enclosed lucent basin.
        [0, 1]: 0 for a solid grain, rod or vessel seen side-on (its lumen dips less than
        `LUCENCY_MIN`), 0.33 for a 16 x 6 mm ellipsoid with a 2 mm wall, 0.13-0.43 for the
        phantoms' whole myositis shells. Criteria: myositis ossificans (mo_zonal_2d, the zone
        phenomenon in projection).
    slenderness : float
        Li2. principal_length_mm / t. >= ~1; linear above ~4 (criteria-research 2.3).
    skeleton_length_mm, skeleton_length_ratio, tortuosity : float
        Li2. Skeleton of the envelope (skimage ``skeletonize``); its longest geodesic path
        (26-/8-connected steps weighted by their length in mm, double Dijkstra sweep) L (mm);
        L / d_eq; L / |end_1 - end_2| (1 straight, >> 1 serpiginous; NaN for a one-point path).
    tubularity : float
        Li3. Mean over the skeleton points of the Frangi vesselness of the envelope (bright
        tube, alpha = beta = 0.5, c = half the largest Hessian norm; 2D: the ridge measure
        exp(-R_B^2 / 2 beta^2)(1 - exp(-S^2 / 2c^2))), at the scale sigma = r / sqrt(2), r = the
        median envelope depth along the skeleton. [0, 1].
    linearity : float
        Score ``a x clip((slenderness - 3) / 5, 0, 1)``, a = linear_anisotropy. [0, 1]: near 1
        for a 40 x 3 mm rod or a thin vessel wall, 0 for a ball, low for short thick grains
        (cysticerci, tendon deposits) however elongated, whose slenderness is below ~4.
        Criteria: myositis ossificans, calcinosis cutis / universalis, vascular (linear);
        tumoral calcinosis (not linear).

    Lesions below the minimum size (`_shape`) are NaN with a reason.
    """
    shape = shape_of(lesion)
    if shape.reason:
        return not_assessed(COLUMNS, shape.reason)
    pts = np.argwhere(shape.env) * shape.s
    lam = covariance_eigenvalues(pts)
    l1 = float(lam[0])
    row: dict = dict.fromkeys(COLUMNS, NAN)
    row["principal_length_mm"] = math.sqrt(12.0 * l1)
    row["linear_anisotropy"] = 1.0 - math.sqrt(float(lam[-1]) / l1) if l1 > 0 else 0.0
    row["westin_linear"] = (l1 - float(lam[1])) / l1 if l1 > 0 else 0.0
    if shape.ndim == 3:
        row["westin_planar"] = (float(lam[1]) - float(lam[2])) / l1 if l1 > 0 else 0.0
    wall = shape.mask
    if shape.ndim == 2:
        wall = _calcified_wall(shape)
        row["lucent_centre_fraction"] = 1.0 - float(wall.sum()) / max(float(shape.mask.sum()), 1.0)
    t = _thickness(shape, wall)
    row["calcified_thickness_mm"] = t
    row["slenderness"] = row["principal_length_mm"] / t if t > 0 else NAN
    skel = skeletonize(shape.env)
    length, chord, spts = _longest_path(skel, shape.s)
    row["skeleton_length_mm"] = length
    row["skeleton_length_ratio"] = length / shape.d_eq
    row["tortuosity"] = length / chord if chord > 0 else NAN
    r = float(np.median(shape.depth[tuple(spts.T)])) if len(spts) else shape.s
    row["tubularity"] = _tubularity(shape, spts, r)
    slender = row["slenderness"]
    factor = min(max((slender - SLENDER_LO) / (SLENDER_HI - SLENDER_LO), 0.0), 1.0) if np.isfinite(slender) else 0.0
    row["linearity"] = row["linear_anisotropy"] * factor
    return row
