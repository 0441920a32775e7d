"""Identity, position and size of a lesion: the columns every row of lesions.csv carries."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from calcimg.features import _fast
from calcimg.lesion import Lesion


def _boundary_points(mask: np.ndarray) -> np.ndarray:
    """Indices of mask voxels with at least one face neighbour outside the mask."""
    inner = ndimage.binary_erosion(mask, border_value=0)
    return np.argwhere(mask & ~inner)


def max_diameter_mm(points_mm: np.ndarray, lattice: np.ndarray | None = None) -> float:
    """Largest distance (mm) between two of the given points.

    Uses the convex hull's vertices (the farthest pair always lies on the hull), so the cost is
    quadratic in hull size, not in the number of points. When the 3-D points are an affine image
    of integer `lattice` points (voxel indices), the hull is computed exactly on those by a
    compiled kernel (`calcimg.features._fast`), without Qhull's set-up cost; same result.

    >>> max_diameter_mm(np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]]))
    5.0
    """
    pts = np.asarray(points_mm, dtype=float)
    if len(pts) < 2:
        return 0.0
    if lattice is not None and _fast.HAVE_NUMBA and pts.shape[1] == 3:
        return math.sqrt(_fast.hull_measures(pts, np.asarray(lattice, np.int64))[3])
    if len(pts) > pts.shape[1] + 1:
        try:
            pts = pts[ConvexHull(pts).vertices]
        except QhullError:  # all points on a line or plane: the pairwise search is still exact
            pass
    return float(pdist(pts).max())


def size_features(lesion: Lesion) -> dict:
    """Centroid, size and extent of a lesion (HU statistics: `calcimg.features.intensity`).

    Columns
    -------
    centroid_x_mm, centroid_y_mm, centroid_z_mm : float
        CT: mean voxel-centre position in DICOM patient coordinates (LPS, mm). Radiograph:
        image-plane mm from the centre of the first pixel, x along columns, y along rows; z empty.
    volume_mm3 (CT) / area_mm2 (radiograph) : float
        Voxel count x voxel volume (mm^3, >= 0) or pixel count x pixel area (mm^2). Serves every
        size criterion (e.g. large tumoral-calcinosis masses, small tendinitis deposits).
    max_diameter_mm : float
        Largest distance between two boundary-voxel centres (mm, >= 0; 0 for a single voxel).
    component_count : int
        Connected calcified components grouped into this lesion (>= 1).
    """
    idx = np.argwhere(lesion.mask)
    phys = lesion.index_to_physical(idx)
    centroid = phys.mean(axis=0)
    spacing = np.asarray(lesion.spacing)
    d = lesion.direction * spacing[None, :]
    unit = float(abs(np.linalg.det(d if lesion.kind == "ct" else d[:2, :2])))
    boundary_idx = _boundary_points(lesion.mask)
    boundary = lesion.index_to_physical(boundary_idx)
    row = {"kind": lesion.kind}
    if lesion.kind == "ct":
        row.update(centroid_x_mm=centroid[0], centroid_y_mm=centroid[1], centroid_z_mm=centroid[2])
        row["volume_mm3"] = idx.shape[0] * unit
    else:
        row.update(centroid_x_mm=centroid[1], centroid_y_mm=centroid[0], centroid_z_mm=float("nan"))
        row["area_mm2"] = idx.shape[0] * unit
    row["max_diameter_mm"] = max_diameter_mm(boundary, lattice=boundary_idx)
    row["component_count"] = int(lesion.component_count)
    return row
