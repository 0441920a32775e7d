"""Shared shape infrastructure of the lobulation, septation, linearity and rim families.

criteria-research 2.0, done once per lesion and cached in ``lesion.context`` (`lesion_features`
drops the cache after the row is built):

* the crop is cut to the lesion's box plus room for the closing, and resampled to isotropic
  voxels of size ``s`` (mm): the image linearly, the mask by shape-based interpolation (its
  signed distance in mm, d_inside - d_outside, interpolated linearly and thresholded at 0), so
  anisotropic CT (e.g. 0.6 x 0.6 x 2.5 mm) is not staircased along z.
  ``s`` is the smallest original spacing, coarsened for large lesions so that the envelope's
  equivalent diameter spans at most `MAX_VOXELS_ACROSS` voxels (the cost stays milliseconds);
* the *envelope* E = fill_holes(closing(mask, 2 mm)), the closing done with two Euclidean
  distance transforms, the hole filling by labelling the background;
* the depth of every envelope voxel below its surface (EDT, mm);
* the sub-voxel boundary: marching cubes (3D) / marching squares (2D) of the envelope smoothed
  with a Gaussian of sigma 0.5 mm (at least half a voxel) at level 0.5;
* an integral-invariant curvature of that boundary: for a Gaussian of width sigma centred on a
  boundary point, the fraction of the envelope it covers is 1/2 - H sigma / sqrt(2 pi) in 3D
  (H the mean curvature) and 1/2 - kappa sigma / (2 sqrt(2 pi)) in 2D, to first order; so
  H = (1/2 - G_sigma * E) sqrt(2 pi) / sigma. Positive = convex, negative = concave.

The minimum size (criteria-research 2.0): the envelope's equivalent diameter d_eq must be at least
`MIN_DIAMETER_MM` and at least `MIN_VOXELS_ACROSS` of the finest original spacing; smaller
lesions are reported as not assessable (partial volume dominates their shape).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage.measure import find_contours, marching_cubes

from calcimg.features import _fast
from calcimg.lesion import Lesion

CLOSING_MM = 2.0  # envelope closing radius r_c
MIN_DIAMETER_MM = 3.0
MIN_VOXELS_ACROSS = 5
MAX_VOXELS_ACROSS = 40
BOUNDARY_SIGMA_MM = 0.5
HULL_MAX_VERTICES = 300
CACHE_KEY = "_descriptor_shape"
NAN = float("nan")


@dataclass
class Shape:
    """One lesion on an isotropic grid (see the module docstring)."""

    ndim: int
    s: float  # isotropic spacing, mm
    kind: str
    mask: np.ndarray  # calcified voxels (bool)
    image: np.ndarray  # float32
    env: np.ndarray  # envelope (bool)
    depth: np.ndarray  # mm below the envelope surface (0 outside)
    d_eq: float  # equivalent diameter of the envelope, mm
    reason: str = ""  # why the shape is not assessable ("" when it is)
    coarsest_mm: float = 0.0  # the largest original spacing
    cache: dict = field(default_factory=dict)

    @property
    def r_eq(self) -> float:
        return 0.5 * self.d_eq

    @property
    def voxel(self) -> float:
        return self.s ** self.ndim

    # -- boundary --------------------------------------------------------------------------
    def boundary(self):
        """Sub-voxel boundary of the envelope (mm): 3D (verts, faces); 2D a list of closed
        contours (k, 2), longest first."""
        if "boundary" not in self.cache:
            sigma = max(BOUNDARY_SIGMA_MM / self.s, 0.5)
            smooth = ndimage.gaussian_filter(self.env.astype(np.float32), sigma, mode="constant")
            if self.ndim == 3:
                verts, faces, _, _ = marching_cubes(smooth, 0.5, spacing=(self.s,) * 3,
                                                    allow_degenerate=False)
                self.cache["boundary"] = (verts, faces)
            else:
                contours = [c * self.s for c in find_contours(smooth, 0.5) if len(c) >= 4]
                contours.sort(key=len, reverse=True)
                self.cache["boundary"] = contours
        return self.cache["boundary"]

    def boundary_points(self) -> np.ndarray:
        b = self.boundary()
        if self.ndim == 3:
            return b[0]
        return np.concatenate(b) if b else np.zeros((0, 2))

    def curvature(self, sigma_mm: float) -> np.ndarray:
        """Integral-invariant curvature (1/mm) at the boundary points (mean curvature in 3D,
        contour curvature in 2D); > 0 convex, < 0 concave."""
        key = ("curv", round(sigma_mm, 4))
        if key not in self.cache:
            g = ndimage.gaussian_filter(self.env.astype(np.float32), sigma_mm / self.s, mode="constant")
            pts = self.boundary_points() / self.s
            frac = ndimage.map_coordinates(g, pts.T, order=1, mode="constant")
            k = math.sqrt(2 * math.pi) / sigma_mm * (1.0 if self.ndim == 3 else 2.0)
            self.cache[key] = (0.5 - frac) * k
        return self.cache[key]

    def hull(self) -> ConvexHull | None:
        if "hull" not in self.cache:
            pts = self.boundary_points()
            try:
                self.cache["hull"] = ConvexHull(pts) if len(pts) > self.ndim else None
            except QhullError:
                self.cache["hull"] = None
        return self.cache["hull"]

    def boundary_measure(self) -> tuple[float, float]:
        """Envelope volume (3D, mm^3) or area (2D, mm^2) enclosed by the sub-voxel boundary, and
        its area (mm^2) or perimeter (mm)."""
        b = self.boundary()
        if self.ndim == 3:
            verts, faces = b
            a, bb, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
            volume = abs(float(np.einsum("ij,ij->", a, np.cross(bb, c)))) / 6.0
            area = 0.5 * float(np.linalg.norm(np.cross(bb - a, c - a), axis=1).sum())
            return volume, area
        area = perim = 0.0
        for c in b:
            x, y = c[:, 0], c[:, 1]
            area += 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
            perim += float(np.linalg.norm(np.diff(np.vstack([c, c[:1]]), axis=0), axis=1).sum())
        return area, perim


def _edt(mask: np.ndarray, s: float, black_border: bool = True) -> np.ndarray:
    return _fast.edt(np.ascontiguousarray(mask, dtype=np.uint8), (s,) * mask.ndim, black_border=black_border)


def close_mm(mask: np.ndarray, s: float, radius_mm: float) -> np.ndarray:
    """Binary closing with a Euclidean ball of `radius_mm` (two distance transforms). The mask
    must have at least `radius_mm` of empty margin."""
    if radius_mm <= 0:
        return mask.copy()
    dilated = _edt(~mask, s, black_border=False) <= radius_mm
    return _edt(dilated, s) > radius_mm


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the background components that do not touch the array border (face connectivity,
    as ``ndimage.binary_fill_holes``; a compiled flood fill from the border)."""
    return _fast.fill_holes(mask)


def equivalent_diameter(measure: float, ndim: int) -> float:
    if ndim == 3:
        return (6.0 * measure / math.pi) ** (1.0 / 3.0)
    return math.sqrt(4.0 * measure / math.pi)


def _arrays(lesion: Lesion) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mask = np.asarray(lesion.mask, bool)
    image = np.asarray(lesion.image, dtype=np.float32)
    spacing = np.asarray(lesion.spacing, dtype=float)
    if lesion.kind == "radiograph" and mask.ndim == 3 and mask.shape[0] == 1:
        mask, image, spacing = mask[0], image[0], spacing[-2:]
    if lesion.kind not in ("ct", "radiograph"):
        raise ValueError(f"lesion {lesion.lesion_id}: kind must be 'ct' or 'radiograph', got {lesion.kind!r}")
    want = 3 if lesion.kind == "ct" else 2
    if mask.ndim != want or image.shape != mask.shape or spacing.shape != (want,):
        raise ValueError(f"lesion {lesion.lesion_id}: a {lesion.kind} lesion needs a {want}-D mask, an "
                         f"image of the same shape and {want} spacings; got mask {mask.shape}, image "
                         f"{image.shape}, spacing {tuple(lesion.spacing)}")
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"lesion {lesion.lesion_id}: spacing must be positive mm, got {tuple(lesion.spacing)}")
    if not mask.any():
        raise ValueError(f"lesion {lesion.lesion_id}: the mask is empty")
    return mask, image, spacing


def shape_of(lesion: Lesion) -> Shape:
    """The lesion on an isotropic grid with its envelope (cached in ``lesion.context``)."""
    cached = lesion.context.get(CACHE_KEY)
    if cached is not None:
        return cached
    mask, image, spacing = _arrays(lesion)
    ndim = mask.ndim
    n_vox = int(np.count_nonzero(mask))
    d_rough = equivalent_diameter(n_vox * float(np.prod(spacing)), ndim)
    s = max(float(spacing.min()), d_rough / MAX_VOXELS_ACROSS)
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    # room for the closing and the smoothing, in original voxels
    pad = [math.ceil((CLOSING_MM + 2 * s) / sp) + 1 for sp in spacing]
    lo = [b.start for b in box]
    hi = [b.stop for b in box]
    src = tuple(slice(max(a - p, 0), min(b + p, n)) for a, b, p, n in zip(lo, hi, pad, mask.shape, strict=True))
    m, im = mask[src], image[src]
    pads = [(p - (a - sl.start), p - (sl.stop - b)) for a, b, p, sl in zip(lo, hi, pad, src, strict=True)]
    m = np.pad(m, pads)
    im = np.pad(im, pads, mode="edge")
    factors = spacing / s
    if np.allclose(factors, 1.0, atol=1e-3):
        m_iso, im_iso = m, im
    else:
        # shape-based interpolation: the signed distance (mm) is resampled linearly, so a
        # sphere cut in thick slices becomes a smooth surface, not a stack of terraces
        sd = (_fast.edt(m.view(np.uint8), tuple(spacing), black_border=False)
              - _fast.edt((~m).view(np.uint8), tuple(spacing), black_border=False))
        sd_iso = _fast.zoom_linear(sd.astype(np.float32), factors)  # = ndimage.zoom(order=1, grid_mode, nearest)
        m_iso = sd_iso > 0
        im_iso = _fast.zoom_linear(im, factors)
        if not m_iso.any():  # thinner than the new grid: keep the voxel nearest the lesion
            m_iso = np.zeros(sd_iso.shape, bool)
            m_iso[np.unravel_index(int(np.argmax(sd_iso)), sd_iso.shape)] = True
    env = fill_holes(close_mm(m_iso, s, CLOSING_MM))
    depth = np.where(env, _edt(env, s), 0.0).astype(np.float32)
    d_eq = equivalent_diameter(float(np.count_nonzero(env)) * s ** ndim, ndim)
    shape = Shape(ndim=ndim, s=s, kind=lesion.kind, mask=m_iso, image=im_iso.astype(np.float32),
                  env=env, depth=depth, d_eq=d_eq, coarsest_mm=float(spacing.max()))
    min_d = max(MIN_DIAMETER_MM, MIN_VOXELS_ACROSS * float(spacing.min()))
    if d_eq < min_d:
        shape.reason = (f"lesion too small for shape (envelope equivalent diameter {d_eq:.1f} mm < "
                        f"{min_d:.1f} mm)")
    lesion.context[CACHE_KEY] = shape
    return shape


def not_assessed(columns, reason: str, extra: dict | None = None) -> dict:
    """Every column NaN (except those in `extra`), with ``not_assessed`` naming them and why."""
    row = dict.fromkeys(columns, NAN)
    if extra:
        row.update(extra)
    row["not_assessed"] = f"{', '.join(c for c in columns if not extra or c not in extra)}: {reason}"
    return row


def hull_voxels(shape: Shape) -> np.ndarray:
    """Voxels whose centres lie in the convex hull of the sub-voxel boundary (bool)."""
    if "hull_voxels" in shape.cache:
        return shape.cache["hull_voxels"]
    hull = shape.hull()
    if hull is not None and len(hull.vertices) > HULL_MAX_VERTICES:
        # the cost is lines x facets: a hull of evenly thinned hull vertices lies within
        # a fraction of a voxel of the full one
        keep = hull.points[hull.vertices[:: math.ceil(len(hull.vertices) / HULL_MAX_VERTICES)]]
        try:
            hull = ConvexHull(keep)
        except QhullError:
            pass
    if hull is None:
        out = shape.env.copy()
    else:
        eq = hull.equations  # n . x + off <= 0 inside, x in mm
        normal, off = eq[:, :-1], eq[:, -1]
        grids = np.meshgrid(*[np.arange(n) * shape.s for n in shape.env.shape[:-1]], indexing="ij")
        lines = np.stack([g.ravel() for g in grids], axis=1)  # (L, ndim - 1)
        rhs = -(lines @ normal[:, :-1].T + off) + 1e-7  # n_last * x_last <= rhs
        n_last = normal[:, -1]
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = rhs / n_last
        upper = np.where(n_last > 1e-12, bound, np.inf).min(axis=1)
        lower = np.where(n_last < -1e-12, bound, -np.inf).max(axis=1)
        feasible = np.where(np.abs(n_last) <= 1e-12, rhs >= 0, True).all(axis=1)
        x = np.arange(shape.env.shape[-1]) * shape.s
        inside = (x[None, :] >= lower[:, None]) & (x[None, :] <= upper[:, None]) & feasible[:, None]
        out = inside.reshape(shape.env.shape) | shape.env
    shape.cache["hull_voxels"] = out
    return out


def split_regions(region: np.ndarray, dist: np.ndarray, s: float, h_mm: float,
                  neck_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Split `region` into blobs: marker watershed of -`dist` (an EDT, mm) from its local
    maxima, then merge neighbours whose saddle is shallow (peak - saddle < `h_mm` for the lower
    peak) or whose neck is wide (saddle / lower peak > `neck_ratio`).

    Returns the label image (0 outside `region`) and each label's peak distance (mm), index i-1.
    """
    from skimage.segmentation import watershed

    if not region.any():
        return np.zeros(region.shape, np.int32), np.zeros(0)
    d = np.where(region, dist, 0.0).astype(np.float32)
    peaks = region & (d >= ndimage.maximum_filter(d, size=3)) & (d > 0)
    markers, n = ndimage.label(peaks, structure=np.ones((3,) * region.ndim))
    if n == 0:
        return region.astype(np.int32), np.array([float(d.max())])
    labels = watershed(-d, markers, mask=region)
    peak = np.asarray(ndimage.maximum(d, labels, index=np.arange(1, n + 1)), dtype=float)
    # saddles: the highest min(d_a, d_b) over face-neighbour pairs with different labels
    pairs, vals = [], []
    for axis in range(region.ndim):
        a = np.moveaxis(labels, axis, 0)
        da = np.moveaxis(d, axis, 0)
        la, lb = a[:-1], a[1:]
        diff = (la != lb) & (la > 0) & (lb > 0)
        if diff.any():
            x, y = la[diff], lb[diff]
            pairs.append(np.stack([np.minimum(x, y), np.maximum(x, y)], axis=1))
            vals.append(np.minimum(da[:-1][diff], da[1:][diff]))
    parent = np.arange(n + 1)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    best = peak.copy()
    if pairs:
        pr = np.concatenate(pairs)
        vv = np.concatenate(vals)
        key = pr[:, 0].astype(np.int64) * (n + 1) + pr[:, 1]
        uniq, inv = np.unique(key, return_inverse=True)
        sad = np.full(len(uniq), -np.inf)
        np.maximum.at(sad, inv, vv)
        ua, ub = uniq // (n + 1), uniq % (n + 1)
        order = np.argsort(-sad)
        for k in order:  # highest saddles first: a merge only ever raises the peaks
            i, j = find(int(ua[k])), find(int(ub[k]))
            if i == j:
                continue
            low = min(best[i - 1], best[j - 1])
            if low - sad[k] < h_mm or sad[k] > neck_ratio * low:
                parent[j] = i
                best[i - 1] = max(best[i - 1], best[j - 1])
    roots = np.array([find(i) for i in range(n + 1)])
    uniq_roots = np.unique(roots[1:])
    relabel = np.zeros(n + 1, np.int32)
    relabel[uniq_roots] = np.arange(1, len(uniq_roots) + 1)
    out = relabel[roots][labels]
    return out.astype(np.int32), best[uniq_roots - 1]


def covariance_eigenvalues(points_mm: np.ndarray) -> np.ndarray:
    """Eigenvalues (descending, mm^2) of the points' covariance."""
    if len(points_mm) < 2:
        return np.full(points_mm.shape[1], NAN)
    cov = np.atleast_2d(np.cov(points_mm, rowvar=False))
    return np.clip(np.linalg.eigvalsh(cov)[::-1], 0.0, None)
