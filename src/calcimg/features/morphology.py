"""Morphology of a lesion: IBSI 3D morphology (CT) and planar shape (radiographs).

CT lesions get the IBSI 1 morphological features (Zwanenburg et al., *Radiology* 2020;
https://ibsi.readthedocs.io/en/latest/03_Image_features.html#morphological-features), named with
the prefix ``ibsi_`` and their units, and checked against the IBSI digital phantom's reference
values in the tests. Radiograph lesions get planar shape features, prefix ``shape2d_``: IBSI 1
defines no 2D morphology set, so those columns carry no IBSI code and must not be matched to
another tool's IBSI columns.

Everything is computed on the lesion's crop, so the cost follows the lesion's size, not the scan's:
the marching-cubes mesh of the zero-padded mask (its volume and area summed cube by cube from
per-configuration tables of scikit-image's own triangles, without building it), one convex hull
of its vertices, one eigen decomposition of a 3x3 covariance, and (for Moran's I and Geary's C)
the pair sums, directly for small lesions and in Fourier space for large ones. The mesh sums, the
hull (exact, on the vertices' half-voxel lattice) and the pair sums are compiled kernels
(`calcimg.features._fast`); they agree with the scikit-image mesh, Qhull and the FFT to ~1e-13 and
cost a fraction of them on the few hundred voxels of a typical lesion. Without numba the
scikit-image / Qhull / FFT paths run instead.

A value that cannot be measured (one voxel has no covariance, negative HU leave the weighted
centre undefined...) is NaN, and the row then carries ``not_assessed``: ``"column: reason; ..."``.

Not computed: the IBSI volume and area densities of the oriented minimum bounding box (ZH1A,
IQYR) and of the minimum volume enclosing ellipsoid (SWZ1, BRI8). IBSI 1 gives them no
reference value, and both need an iterative optimisation per lesion.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import fft, ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist
from skimage.measure import marching_cubes

from calcimg.features import _fast
from calcimg.lesion import Lesion

# Moran's I and Geary's C cost an FFT of twice the crop per axis; above this many lesion voxels
# they are reported as not assessed rather than approximated.
MAX_AUTOCORRELATION_VOXELS = 20_000

#: Every column this module writes: (column, unit, description, IBSI code or "").
MORPHOLOGY_COLUMNS: list[tuple[str, str, str, str]] = [
    ("ibsi_mesh_volume_mm3", "mm^3", "CT: volume enclosed by the marching-cubes mesh of the mask (iso-level 0.5)", "RNU0"),
    ("ibsi_voxel_volume_mm3", "mm^3", "CT: voxel count x voxel volume", "YEKZ"),
    ("ibsi_surface_area_mm2", "mm^2", "CT: area of the marching-cubes mesh", "C0JK"),
    ("ibsi_surface_to_volume_ratio_per_mm", "1/mm", "CT: mesh surface area / mesh volume", "2PR5"),
    ("ibsi_compactness_1", "", "CT: V / (sqrt(pi) A^(3/2)); 1/(6 pi) for a sphere", "SKGS"),
    ("ibsi_compactness_2", "", "CT: 36 pi V^2 / A^3; 1 for a sphere", "BQWJ"),
    ("ibsi_spherical_disproportion", "", "CT: A / (36 pi V^2)^(1/3); 1 for a sphere, larger = less spherical", "KRCK"),
    ("ibsi_sphericity", "", "CT: (36 pi V^2)^(1/3) / A; 1 for a sphere, smaller = less spherical", "QCFX"),
    ("ibsi_asphericity", "", "CT: (A^3 / (36 pi V^2))^(1/3) - 1; 0 for a sphere", "25C7"),
    ("ibsi_centre_of_mass_shift_mm", "mm", "CT: distance between the geometric centre and the HU-weighted centre of the lesion", "KLMA"),
    ("ibsi_max_3d_diameter_mm", "mm", "CT: largest distance between two vertices of the mesh", "L0JK"),
    ("ibsi_major_axis_length_mm", "mm", "CT: 4 sqrt(largest eigenvalue) of the voxel-centre covariance (mm^2)", "TDIC"),
    ("ibsi_minor_axis_length_mm", "mm", "CT: 4 sqrt(second eigenvalue) of the voxel-centre covariance", "P9VJ"),
    ("ibsi_least_axis_length_mm", "mm", "CT: 4 sqrt(smallest eigenvalue) of the voxel-centre covariance", "7J51"),
    ("ibsi_elongation", "", "CT: sqrt(minor eigenvalue / major eigenvalue); 1 = round in cross-section, small = rod", "Q3CK"),
    ("ibsi_flatness", "", "CT: sqrt(least eigenvalue / major eigenvalue); 1 = round, small = plate or rod", "N17B"),
    ("ibsi_volume_density_aabb", "", "CT: mesh volume / volume of the mesh's axis-aligned bounding box", "PBX1"),
    ("ibsi_area_density_aabb", "", "CT: mesh area / surface area of the mesh's axis-aligned bounding box", "R59B"),
    ("ibsi_volume_density_aee", "", "CT: mesh volume / volume of the approximate enclosing ellipsoid (semi-axes = half the axis lengths)", "6BDE"),
    ("ibsi_area_density_aee", "", "CT: mesh area / surface area of the approximate enclosing ellipsoid", "RDD2"),
    ("ibsi_volume_density_convex_hull", "", "CT: mesh volume / volume of the mesh's convex hull; 1 = convex", "R3ER"),
    ("ibsi_area_density_convex_hull", "", "CT: mesh area / area of the mesh's convex hull; 1 = convex, larger = folded", "7T7F"),
    ("ibsi_integrated_intensity_hu_mm3", "HU mm^3", "CT: mesh volume x mean HU of the lesion", "99N0"),
    ("ibsi_morans_i", "", "CT: Moran's I of HU with inverse-distance weights; > 0 = similar HU cluster together", "N365"),
    ("ibsi_gearys_c", "", "CT: Geary's C of HU with inverse-distance weights; < 1 = similar HU cluster together", "NPT7"),
    ("shape2d_area_mm2", "mm^2", "Radiograph: pixel count x pixel area", ""),
    ("shape2d_perimeter_mm", "mm", "Radiograph: boundary length (Cauchy-Crofton estimate, 16 directions)", ""),
    ("shape2d_circularity", "", "Radiograph: 4 pi area / perimeter^2; 1 for a disc", ""),
    ("shape2d_convex_area_mm2", "mm^2", "Radiograph: area of the pixels whose centres lie in the convex hull of the lesion's pixel centres", ""),
    ("shape2d_solidity", "", "Radiograph: area / convex area; 1 = convex, smaller = concave or lobulated", ""),
    ("shape2d_major_axis_length_mm", "mm", "Radiograph: 4 sqrt(largest eigenvalue) of the pixel-centre covariance (mm^2)", ""),
    ("shape2d_minor_axis_length_mm", "mm", "Radiograph: 4 sqrt(smallest eigenvalue) of the pixel-centre covariance", ""),
    ("shape2d_max_feret_diameter_mm", "mm", "Radiograph: largest distance between two points of the lesion's boundary contour", ""),
]

COLUMNS_3D: tuple[str, ...] = tuple(c[0] for c in MORPHOLOGY_COLUMNS if c[0].startswith("ibsi_"))
COLUMNS_2D: tuple[str, ...] = tuple(c[0] for c in MORPHOLOGY_COLUMNS if c[0].startswith("shape2d_"))

NAN = float("nan")

# Crofton line directions: the 16 primitive (row, col) steps with components up to 3, one per
# direction in [0, pi). 16 rather than 8 directions cut the worst-case error for a straight edge
# from ~4 % to ~2.5 % at 0.5 x 0.8 mm pixels (1 % at square pixels).
_CROFTON_STEPS = tuple((a, b) for a in range(4) for b in range(-3, 4)
                       if math.gcd(a, abs(b)) == 1 and (a > 0 or b > 0))


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

def _checked(lesion: Lesion, ndim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lesion's mask (bool), image and spacing as arrays, after checking they fit together."""
    mask = np.asarray(lesion.mask)
    image = np.asarray(lesion.image)
    spacing = np.asarray(lesion.spacing, dtype=float)
    if ndim == 2 and mask.ndim == 3 and mask.shape[0] == 1:  # a radiograph stored as one slice
        mask, image = mask[0], image[0]
        spacing = spacing[-2:]
    if mask.ndim != ndim:
        raise ValueError(f"lesion {lesion.lesion_id}: {lesion.kind} morphology needs a {ndim}-D mask, "
                         f"got shape {mask.shape}")
    if image.shape != mask.shape:
        raise ValueError(f"lesion {lesion.lesion_id}: image shape {image.shape} differs from mask "
                         f"shape {mask.shape}; crop both with the same slices")
    if spacing.shape != (ndim,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"lesion {lesion.lesion_id}: spacing must be {ndim} positive mm values in "
                         f"array-axis order, got {tuple(lesion.spacing)}")
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        raise ValueError(f"lesion {lesion.lesion_id}: the mask is empty; a lesion needs at least one voxel")
    return mask, image, spacing


def _tight_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The mask's bounding box: FFT sizes and mesh padding then follow the lesion, not the margin."""
    return ndimage.find_objects(mask.astype(np.uint8))[0]


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 and np.isfinite(den) else NAN


def _finish(row: dict, reasons: list[str]) -> dict:
    if reasons:
        row["not_assessed"] = "; ".join(reasons)
    return row


# --------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------

def _mesh(mask: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Marching-cubes mesh (vertices in mm, triangles) of the mask, zero-padded so it is closed."""
    padded = np.pad(mask, 1).astype(np.float32)
    verts, faces, _, _ = marching_cubes(padded, level=0.5, spacing=tuple(spacing),
                                        allow_degenerate=True)
    return verts, faces


@functools.lru_cache(maxsize=1)
def _unit_cube_triangles() -> tuple[np.ndarray, np.ndarray]:
    """The marching-cubes triangles (vertex coordinates in voxels, (T, 3, 3)) of every 8-corner
    configuration of a binary cube, and each triangle's configuration (bit 4 di + 2 dj + dk for
    corner (di, dj, dk)): scikit-image's own output on a 2 x 2 x 2 volume, the same call as `_mesh`."""
    tris, configs = [], []
    for config in range(1, 255):
        cube = np.array([(config >> bit) & 1 for bit in range(8)], np.float32).reshape(2, 2, 2)
        verts, faces, _, _ = marching_cubes(cube, level=0.5, spacing=(1.0, 1.0, 1.0), allow_degenerate=True)
        tris.append(np.asarray(verts, np.float64)[faces])
        configs.append(np.full(len(faces), config))
    return np.concatenate(tris), np.concatenate(configs)


@functools.lru_cache(maxsize=32)
def _cube_tables(spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per configuration, at this spacing (mm): sum a . (b x d), sum (b - a) x (d - a) and the
    area of its triangles (see `_fast.binary_mesh_measures`)."""
    tri, config = _unit_cube_triangles()
    tri = tri * np.asarray(spacing)
    a, b, d = tri[:, 0], tri[:, 1], tri[:, 2]
    moment = np.cross(b - a, d - a)
    volume = np.bincount(config, np.einsum("ij,ij->i", a, np.cross(b, d)), minlength=256)
    moments = np.stack([np.bincount(config, moment[:, k], minlength=256) for k in range(3)], axis=1)
    area = np.bincount(config, 0.5 * np.linalg.norm(moment, axis=1), minlength=256)
    for table in (volume, moments, area):
        table.setflags(write=False)
    return volume, moments, area


def _mesh_measures(mask: np.ndarray, spacing: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray | None]:
    """Volume, area and vertices (mm) of the marching-cubes mesh of the zero-padded mask, and the
    vertices on their half-voxel lattice (None on the scikit-image path).

    With numba, summed cube by cube from per-configuration tables (`_fast.binary_mesh_measures`),
    which gives the mesh's own volume and area (to ~1e-14) at a fraction of the cost of building
    it; otherwise the mesh itself (`_mesh`).
    """
    if _fast.HAVE_NUMBA:
        tables = _cube_tables(tuple(float(s) for s in spacing))
        volume, area, lattice = _fast.binary_mesh_measures(np.ascontiguousarray(mask), *tables,
                                                           np.asarray(spacing, np.float64))
        return float(volume), float(area), lattice / 2.0 * spacing, lattice
    verts, faces = _mesh(mask, spacing)
    volume, area = _mesh_volume_area(verts, faces)
    return volume, area, verts, None


def _mesh_volume_area(verts: np.ndarray, faces: np.ndarray) -> tuple[float, float]:
    """Enclosed volume (sum of signed tetrahedra to the origin) and area of a closed mesh."""
    if _fast.HAVE_NUMBA:
        volume, area = _fast.mesh_volume_area(np.asarray(verts, np.float64), faces)
        return float(volume), float(area)
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    volume = abs(float(np.einsum("ij,ij->", a, np.cross(b, c)))) / 6.0
    area = 0.5 * float(np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())
    return volume, area


def _covariance_eigenvalues(points_mm: np.ndarray) -> np.ndarray:
    """Eigenvalues (descending, mm^2) of the sample covariance of the points; NaN for one point."""
    if len(points_mm) < 2:
        return np.full(points_mm.shape[1], NAN)
    cov = np.atleast_2d(np.cov(points_mm, rowvar=False))  # ddof=1, as the IBSI reference expects
    return np.clip(np.linalg.eigvalsh(cov)[::-1], 0.0, None)


def _ellipsoid_area(a: float, b: float, c: float, terms: int = 20) -> float:
    """Surface area of an ellipsoid with semi-axes a >= b >= c, by IBSI's Legendre series.

    A = 4 pi a b sum_{nu=0}^{20} (alpha beta)^nu / (1 - 4 nu^2) P_nu((alpha^2 + beta^2) / (2 alpha beta)),
    alpha = sqrt(1 - b^2/a^2), beta = sqrt(1 - c^2/a^2). The products (alpha beta)^nu P_nu(.) are
    evaluated by the Legendre recurrence scaled by alpha beta, which stays finite for spheroids
    and spheres (alpha beta = 0).
    """
    alpha = math.sqrt(max(1.0 - (b / a) ** 2, 0.0))
    beta = math.sqrt(max(1.0 - (c / a) ** 2, 0.0))
    t, s = alpha * beta, 0.5 * (alpha * alpha + beta * beta)
    q_prev, q = 1.0, s  # (alpha beta)^nu P_nu(s / (alpha beta)) for nu = 0, 1
    total = 1.0 + q / (1.0 - 4.0)
    for nu in range(1, terms):
        q_prev, q = q, ((2 * nu + 1) * s * q - nu * t * t * q_prev) / (nu + 1)
        total += q / (1.0 - 4.0 * (nu + 1) ** 2)
    return 4.0 * math.pi * a * b * total


# Direct pair sums (~1.7 ns a pair) versus the FFT path (~90 us + ~25 ns per cell of the FFT
# grid, kernel included), measured on the bench phantom's lesions: the direct sums win up to
# ~700-1200 voxels, depending on how compact the lesion is.
_DIRECT_PAIRS_PER_FFT_CELL, _DIRECT_PAIRS_FLOOR = 14, 50_000


def _even_fast_len(n: int) -> int:
    """The smallest even FFT-friendly length >= n (even, so the kernel's spectrum is a DCT-I)."""
    m = n
    while (f := fft.next_fast_len(m, real=True)) % 2:
        m = f + 1
    return f


@functools.lru_cache(maxsize=16)
def _inverse_distance_kernel_fft(fshape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """The circular 1/distance (1/mm) kernel's spectrum on an FFT grid of `fshape` (even lengths),
    on the rFFT half grid, times the Parseval weights (1 on the last axis' zero and Nyquist
    planes, 2 elsewhere) / prod(fshape); 0 at offset 0.

    Offsets wrap (t and F - t are the same distance), so linear convolution of arrays up to
    F / 2 long per axis is exact, and one kernel serves every crop with the same FFT grid and
    spacing. The kernel is real and even, so its spectrum is real: the DCT-I of one octant
    (a quarter to an eighth of the cost of the full FFT), mirrored.
    """
    octant = [np.arange(f // 2 + 1) * s for f, s in zip(fshape, spacing, strict=True)]
    grids = np.meshgrid(*octant, indexing="ij", sparse=True)
    d2 = sum(g * g for g in grids)
    d2[(0,) * len(fshape)] = 1.0
    kernel = 1.0 / np.sqrt(d2)
    kernel[(0,) * len(fshape)] = 0.0
    spectrum = fft.dctn(kernel, type=1)  # the DFT at frequencies 0..F/2 on every axis
    mirror = [np.minimum(np.arange(f), f - np.arange(f)) for f in fshape[:-1]]
    half = spectrum[np.ix_(*mirror, np.arange(fshape[-1] // 2 + 1))]
    weight = np.full(fshape[-1] // 2 + 1, 2.0)
    weight[[0, -1]] = 1.0
    out = half * (weight / math.prod(fshape))
    out.setflags(write=False)
    return out


def _morans_i_gearys_c(image: np.ndarray, mask: np.ndarray, spacing: np.ndarray) -> tuple[float, float]:
    """IBSI Moran's I and Geary's C with weights 1/distance(mm), exactly.

    Small lesions: the pair sums themselves, compiled (`_fast.autocorrelation_pair_sums`, O(N^2)).
    Large ones, in Fourier space: with y = (x - mean) on the mask and 0 elsewhere, m the mask and
    K the inverse-distance kernel (K(0) = 0): sum_{i != j} w_ij = <m, K*m>,
    sum w_ij y_i y_j = <y, K*y> and sum w_ij (x_i - x_j)^2 = 2 <y^2, K*m> - 2 <y, K*y>; by
    Parseval, <a, K*b> = sum_f conj(A_f) K_f B_f / N over the zero-padded FFT grid. Three forward
    FFTs replace the O(N^2) pair sums. The two paths agree to ~1e-12.
    """
    values = image[mask].astype(np.float64)
    n = values.size
    centred = values - values.mean()
    ss = float(np.dot(centred, centred))
    if n < 2 or ss <= 0:
        return NAN, NAN
    fshape = tuple(_even_fast_len(2 * k - 1) for k in mask.shape)
    if _fast.HAVE_NUMBA and n * (n - 1) // 2 <= _DIRECT_PAIRS_PER_FFT_CELL * math.prod(fshape) + _DIRECT_PAIRS_FLOOR:
        # the pair sums directly: cheaper than the FFTs below for the few hundred voxels of most lesions
        w_half, cross_half, diff_half = _fast.autocorrelation_pair_sums(
            np.argwhere(mask).astype(np.int64), centred, np.asarray(spacing, np.float64))
        return n / w_half * cross_half / ss, (n - 1) / (2.0 * w_half) * diff_half / ss
    y = np.zeros(mask.shape)
    y[mask] = centred
    kernel = _inverse_distance_kernel_fft(fshape, tuple(float(s) for s in spacing))
    m_f, y_f, q_f = fft.rfftn(np.stack([mask.astype(np.float64), y, y * y]), fshape,
                              axes=tuple(range(1, mask.ndim + 1)))
    w_sum = float(np.sum(kernel * (m_f.real * m_f.real + m_f.imag * m_f.imag)))
    cross = float(np.sum(kernel * (y_f.real * y_f.real + y_f.imag * y_f.imag)))
    sq_m = float(np.sum(kernel * (q_f.real * m_f.real + q_f.imag * m_f.imag)))
    morans_i = n / w_sum * cross / ss
    gearys_c = (n - 1) / (2.0 * w_sum) * (2.0 * sq_m - 2.0 * cross) / ss
    return morans_i, gearys_c


def _mesh_hull(verts: np.ndarray, lattice: np.ndarray | None) -> tuple[float, float, float]:
    """Volume and area of the convex hull of the mesh vertices (NaN when they are flat) and their
    largest pairwise distance.

    Marching cubes at level 0.5 on a binary mask puts every vertex at an edge midpoint, so twice
    the vertices in voxel units (`lattice`) are integers and the hull is computed exactly on them
    (`_fast.hull_measures`); Qhull otherwise (or without numba).
    """
    if _fast.HAVE_NUMBA and lattice is not None:
        _, volume, area, d2 = _fast.hull_measures(np.asarray(verts, np.float64), lattice)
        return float(volume), float(area), math.sqrt(d2)
    hull, diameter = _hull_and_diameter(verts)
    return (hull.volume, hull.area, diameter) if hull is not None else (NAN, NAN, diameter)


def _hull_and_diameter(points: np.ndarray) -> tuple[ConvexHull | None, float]:
    """Convex hull of the points (None when they are flat) and their largest pairwise distance."""
    try:
        hull = ConvexHull(points)
        far = points[hull.vertices]
    except QhullError:  # coplanar or collinear points: the pairwise search is still exact
        hull, far = None, points
    return hull, (float(pdist(far).max()) if len(far) > 1 else 0.0)


# --------------------------------------------------------------------------------------------
# 3D
# --------------------------------------------------------------------------------------------

def morphology_3d(lesion: Lesion, *, max_autocorrelation_voxels: int = MAX_AUTOCORRELATION_VOXELS) -> dict:
    """IBSI 1 morphological features of a CT lesion (mm, HU).

    V is the mesh volume, A the mesh area, N the voxel count, x the voxel-centre positions (mm)
    and lambda_1 >= lambda_2 >= lambda_3 the eigenvalues (mm^2) of their sample covariance
    (ddof = 1, as the IBSI reference values assume). The mesh is marching cubes at iso-level 0.5
    on the zero-padded mask with the voxel spacing (IBSI 3.1.1). Positions are taken in array
    axes scaled by `spacing`: the scan's direction cosines are a rotation, which changes no
    feature here except the axis-aligned bounding box, which IBSI defines in the image's axes.

    Parameters
    ----------
    lesion : Lesion
        A CT lesion: 3-D `mask` and `image` (HU) of the same shape, `spacing` in mm per axis.
    max_autocorrelation_voxels : int, optional
        Largest lesion (in voxels) for which Moran's I and Geary's C are computed; their cost
        grows with the crop (an FFT of twice its size). Larger lesions get NaN and a reason.

    Returns
    -------
    dict
        The columns below, plus ``not_assessed`` (``"column: reason; ..."``) when any is NaN.

    Columns
    -------
    ibsi_mesh_volume_mm3 : float
        RNU0. V = |sum_faces a . (b x c)| / 6 (signed tetrahedra to the origin). mm^3, > 0.
        Serves the size criteria (large tumoral-calcinosis masses vs small tendinitis deposits).
    ibsi_voxel_volume_mm3 : float
        YEKZ. N x voxel volume. mm^3, > 0. Size criteria; equals ``volume_mm3``.
    ibsi_surface_area_mm2 : float
        C0JK. A = sum_faces |(b - a) x (c - a)| / 2. mm^2, > 0. Note: the staircase of a voxelised
        surface makes A exceed the true area (about 8 % for a sphere at 40 voxels per diameter,
        more when slices are thick), so every feature built on A depends on spacing.
    ibsi_surface_to_volume_ratio_per_mm : float
        2PR5. A / V. 1/mm, > 0; falls with size. Irregular, thin or rim-like deposits.
    ibsi_compactness_1 : float
        SKGS. V / (pi^(1/2) A^(3/2)). (0, 1/(6 pi)]; 1/(6 pi) ~ 0.053 for a sphere. Roundness:
        phleboliths and nodes (round) vs tumoral calcinosis (lobulated), tendinitis (elongated).
    ibsi_compactness_2 : float
        BQWJ. 36 pi V^2 / A^3. (0, 1]; 1 for a sphere. Same criteria as compactness 1.
    ibsi_spherical_disproportion : float
        KRCK. A / (36 pi V^2)^(1/3). >= 1; 1 for a sphere. Same criteria, inverse scale.
    ibsi_sphericity : float
        QCFX. (36 pi V^2)^(1/3) / A. (0, 1]; 1 for a sphere. Roundness criteria (phlebolith,
        lymph node, hydatid cyst: round; calcific tendinitis, vascular: elongated).
    ibsi_asphericity : float
        25C7. (A^3 / (36 pi V^2))^(1/3) - 1. >= 0; 0 for a sphere. Same criteria.
    ibsi_centre_of_mass_shift_mm : float
        KLMA. || mean(x) - sum(HU_i x_i) / sum(HU_i) ||. mm, >= 0. Asymmetric density, e.g. zonal
        maturation (myositis ossificans: dense periphery) or a dependent dense layer. NaN when a
        voxel has negative HU (the weighted centre is then undefined).
    ibsi_max_3d_diameter_mm : float
        L0JK. Largest distance between two mesh vertices (on their convex hull). mm, > 0.
        Size criteria; close to ``max_diameter_mm``, which uses voxel centres.
    ibsi_major_axis_length_mm, ibsi_minor_axis_length_mm, ibsi_least_axis_length_mm : float
        TDIC, P9VJ, 7J51. 4 sqrt(lambda_1), 4 sqrt(lambda_2), 4 sqrt(lambda_3). mm, >= 0; for a
        solid ellipsoid with semi-axes a >= b >= c they are 4a/sqrt(5), 4b/sqrt(5), 4c/sqrt(5).
        NaN for a single voxel. Extent and shape criteria (linear vascular or tendon deposits).
    ibsi_elongation : float
        Q3CK. sqrt(lambda_2 / lambda_1). [0, 1]; 1 when the two largest axes are equal, small for
        rods. Linear/tubular shape (vascular, tendinitis along a tendon).
    ibsi_flatness : float
        N17B. sqrt(lambda_3 / lambda_1). [0, 1]; small for plates and rods. Plate-like or linear
        deposits (calcinosis cutis sheets, tendinitis).
    ibsi_volume_density_aabb : float
        PBX1. V / V_aabb, the box spanned by the mesh vertices along the image axes. (0, 1].
        Fill of the bounding box: compact vs branching or scattered deposits.
    ibsi_area_density_aabb : float
        R59B. A / A_aabb. > 0. Same criteria.
    ibsi_volume_density_aee : float
        6BDE. V / (4 pi a b c / 3), with semi-axes a, b, c = half the major, minor, least axis
        lengths. > 0, ~ 1.1-1.2 for compact solids (can exceed 1). Same criteria; NaN when an
        axis is 0.
    ibsi_area_density_aee : float
        RDD2. A / A_aee, with A_aee the ellipsoid's area by the IBSI Legendre series (20 terms).
        > 0. Surface folding relative to a fitted ellipsoid: lobulation.
    ibsi_volume_density_convex_hull : float
        R3ER. V / V_hull, hull of the mesh vertices. (0, 1]; 1 = convex. Concavity, lobulation
        (tumoral calcinosis), clustering of separate components.
    ibsi_area_density_convex_hull : float
        7T7F. A / A_hull. >= ~1; larger = folded or lobulated surface. Same criteria.
    ibsi_integrated_intensity_hu_mm3 : float
        99N0. V x mean(HU). HU mm^3. Total calcium load (large dense tumoral calcinosis vs faint
        dystrophic deposits).
    ibsi_morans_i : float
        N365. N / W x sum_{i != j} w_ij (HU_i - mu)(HU_j - mu) / sum_i (HU_i - mu)^2, w_ij = 1 /
        distance (mm), W = sum w_ij. About [-1, 1]; > 0 when similar HU cluster (zonal or layered
        density), ~0 random. Texture of the calcium: homogeneous vs zonal/fluid-level lesions.
        NaN when all HU are equal, for one voxel, or above `max_autocorrelation_voxels`.
    ibsi_gearys_c : float
        NPT7. (N - 1) / (2 W) x sum_{i != j} w_ij (HU_i - HU_j)^2 / sum_i (HU_i - mu)^2. >= 0;
        < 1 when similar HU cluster, ~1 random. Same criteria and NaN rules as Moran's I.

    Examples
    --------
    >>> from calcimg.lesion import Lesion
    >>> mask = np.zeros((5, 5, 5), bool)
    >>> mask[1:4, 1:4, 1:4] = True
    >>> les = Lesion(1, np.where(mask, 300.0, 0.0), mask, (0, 0, 0), (1.0, 1.0, 1.0),
    ...              np.zeros(3), np.eye(3), "ct")
    >>> row = morphology_3d(les)
    >>> row["ibsi_voxel_volume_mm3"], round(row["ibsi_mesh_volume_mm3"], 2)
    (27.0, 23.17)
    >>> row["ibsi_elongation"], round(row["ibsi_volume_density_convex_hull"], 6)
    (1.0, 1.0)
    """
    mask, image, spacing = _checked(lesion, 3)
    box = _tight_box(mask)
    mask, image = mask[box], image[box]
    reasons: list[str] = []
    row: dict = dict.fromkeys(COLUMNS_3D, NAN)

    volume, area, verts, lattice = _mesh_measures(mask, spacing)
    n_voxels = int(np.count_nonzero(mask))
    row["ibsi_mesh_volume_mm3"] = volume
    row["ibsi_voxel_volume_mm3"] = n_voxels * float(np.prod(spacing))
    row["ibsi_surface_area_mm2"] = area
    row["ibsi_surface_to_volume_ratio_per_mm"] = _ratio(area, volume)
    sphere_area = (36.0 * math.pi * volume * volume) ** (1.0 / 3.0)  # area of a sphere of volume V
    row["ibsi_compactness_1"] = _ratio(volume, math.sqrt(math.pi) * area ** 1.5)
    row["ibsi_compactness_2"] = _ratio(36.0 * math.pi * volume * volume, area ** 3)
    row["ibsi_spherical_disproportion"] = _ratio(area, sphere_area)
    row["ibsi_sphericity"] = _ratio(sphere_area, area)
    row["ibsi_asphericity"] = _ratio(area, sphere_area) - 1.0

    idx = np.argwhere(mask)
    points = idx * spacing
    values = image[mask].astype(np.float64)
    centre = points.mean(axis=0)
    if values.min() < 0 or values.sum() <= 0:
        reasons.append("ibsi_centre_of_mass_shift_mm: negative HU in the lesion, the HU-weighted centre is undefined")
    else:
        weighted = (values @ points) / values.sum()
        row["ibsi_centre_of_mass_shift_mm"] = float(np.linalg.norm(centre - weighted))

    hull_volume, hull_area, diameter = _mesh_hull(verts, lattice)
    row["ibsi_max_3d_diameter_mm"] = diameter

    lam = _covariance_eigenvalues(points)
    if n_voxels < 2:
        reasons.append("ibsi axis lengths, elongation, flatness, aee densities: one voxel has no covariance")
    else:
        row["ibsi_major_axis_length_mm"], row["ibsi_minor_axis_length_mm"], row["ibsi_least_axis_length_mm"] = (
            float(v) for v in 4.0 * np.sqrt(lam))
        row["ibsi_elongation"] = math.sqrt(_ratio(lam[1], lam[0]))
        row["ibsi_flatness"] = math.sqrt(_ratio(lam[2], lam[0]))
        a, b, c = (2.0 * math.sqrt(v) for v in lam)
        if c > 0:
            row["ibsi_volume_density_aee"] = volume / (4.0 / 3.0 * math.pi * a * b * c)
            row["ibsi_area_density_aee"] = area / _ellipsoid_area(a, b, c)
        else:
            reasons.append("ibsi aee densities: the voxel centres are coplanar, the ellipsoid is flat")

    extent = verts.max(axis=0) - verts.min(axis=0)
    row["ibsi_volume_density_aabb"] = _ratio(volume, float(np.prod(extent)))
    row["ibsi_area_density_aabb"] = _ratio(
        area, 2.0 * float(extent[0] * extent[1] + extent[0] * extent[2] + extent[1] * extent[2]))
    row["ibsi_volume_density_convex_hull"] = _ratio(volume, hull_volume)
    row["ibsi_area_density_convex_hull"] = _ratio(area, hull_area)
    row["ibsi_integrated_intensity_hu_mm3"] = volume * float(values.mean())

    if n_voxels > max_autocorrelation_voxels:
        reasons.append(f"ibsi_morans_i, ibsi_gearys_c: lesion has {n_voxels} voxels, above the "
                       f"limit of {max_autocorrelation_voxels} for this O(crop log crop) feature")
    else:
        row["ibsi_morans_i"], row["ibsi_gearys_c"] = _morans_i_gearys_c(image, mask, spacing)
        if math.isnan(row["ibsi_morans_i"]):
            reasons.append("ibsi_morans_i, ibsi_gearys_c: all voxels have the same HU or there is one voxel")
    return _finish(row, reasons)


# --------------------------------------------------------------------------------------------
# 2D
# --------------------------------------------------------------------------------------------

def _crofton_perimeter(mask: np.ndarray, spacing: np.ndarray) -> float:
    """Boundary length (mm) by the Cauchy-Crofton formula, P = 1/2 int int n(theta, p) dp dtheta.

    For each lattice direction v (pixel steps) the lines through the pixel centres along v are
    d = pixel area / |v|_mm apart and cross the boundary once per pair (p, p + v) with different
    mask values. Each direction is weighted by its share of [0, pi) of physical angle, so the
    estimate holds at anisotropic spacing. Unbiased over all edge orientations; for one straight
    edge within +-1 % at square pixels, -1 % to +2.5 % at 0.5 x 0.8 mm pixels.
    """
    padded = np.pad(mask, 3)  # >= the longest step, so every crossing pair is inside the array
    steps = np.asarray(_CROFTON_STEPS, dtype=float)
    u = steps * spacing
    theta = np.mod(np.arctan2(u[:, 0], u[:, 1]), np.pi)
    order = np.argsort(theta)
    gaps = np.diff(np.r_[theta[order], theta[order][0] + np.pi])
    weight = np.empty_like(theta)
    weight[order] = 0.5 * (gaps + np.roll(gaps, 1))
    pixel_area = float(np.prod(spacing))
    rows, cols = padded.shape
    total = 0.0
    for (di, dj), w, uk in zip(_CROFTON_STEPS, weight, u, strict=True):
        a = padded[max(di, 0):rows + min(di, 0), max(dj, 0):cols + min(dj, 0)]
        b = padded[max(-di, 0):rows + min(-di, 0), max(-dj, 0):cols + min(-dj, 0)]
        total += w * pixel_area / float(np.linalg.norm(uk)) * np.count_nonzero(a != b)
    return 0.5 * total


def _digital_convex_hull_count(mask: np.ndarray) -> int:
    """Pixels whose centres lie in the convex hull of the mask's pixel centres (>= mask count).

    Equal to the mask's count for digitised convex shapes. The hull is affine-invariant, so index
    space gives the same pixels as mm.
    """
    edge = np.argwhere(mask & ~ndimage.binary_erosion(mask, border_value=0)).astype(float)
    try:
        hull = ConvexHull(edge)
    except QhullError:  # collinear: the lesion is its own hull
        return int(np.count_nonzero(mask))
    # Count row by row: each row meets the hull in one column interval, so the cost follows the
    # number of rows x hull facets, not the number of pixels.
    rows = np.arange(int(edge[:, 0].min()), int(edge[:, 0].max()) + 1, dtype=float)
    n_row, n_col, off = hull.equations.T
    rhs = -(rows[:, None] * n_row + off) + 1e-7  # n_col * col <= rhs for every facet
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = rhs / n_col
    upper = np.where(n_col > 1e-12, bound, np.inf).min(axis=1)
    lower = np.where(n_col < -1e-12, bound, -np.inf).max(axis=1)
    feasible = np.where(np.abs(n_col) <= 1e-12, rhs >= 0, True).all(axis=1)
    counts = np.floor(upper) - np.ceil(lower) + 1
    return int(np.clip(counts[feasible], 0, None).sum())


def _boundary_midpoints(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Marching-squares vertices (mm): midpoints between 4-neighbours inside and outside."""
    padded = np.pad(mask, 1)
    out = []
    for axis in range(padded.ndim):
        lo = [slice(None)] * padded.ndim
        hi = [slice(None)] * padded.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        idx = np.argwhere(padded[tuple(lo)] != padded[tuple(hi)]).astype(float)
        idx[:, axis] += 0.5
        out.append(idx)
    return np.concatenate(out) * spacing


def morphology_2d(lesion: Lesion) -> dict:
    """Planar shape features of a radiograph lesion (mm).

    IBSI 1 defines no 2D morphology, so these columns are prefixed ``shape2d_`` and carry no IBSI
    code. They follow the IBSI 3D conventions where one exists: axis lengths from 4 sqrt of the
    pixel-centre covariance eigenvalues, the maximum diameter from the marching-squares contour
    (the 2D analogue of the mesh).

    Parameters
    ----------
    lesion : Lesion
        A radiograph lesion: 2-D `mask` (a leading axis of length 1 is accepted), `spacing` in mm
        per array axis (rows, columns), which may differ.

    Returns
    -------
    dict
        The columns below, plus ``not_assessed`` when any is NaN.

    Columns
    -------
    shape2d_area_mm2 : float
        N x pixel area. mm^2, > 0. Size criteria; equals ``area_mm2``.
    shape2d_perimeter_mm : float
        P: boundary length by the Cauchy-Crofton formula over 16 lattice directions, weighted by
        physical angle (valid at anisotropic spacing). mm, > 0; within ~1-3 % for shapes a few
        pixels across or more (marching-squares contour length would overestimate by 5-8 %).
        Boundary irregularity (with area).
    shape2d_circularity : float
        4 pi area / P^2. ~(0, 1]; 1 for a disc, ~0.79 for a square, small for lines and lobulated
        outlines. Lesions of a few pixels can exceed 1 (P is then underestimated). Roundness
        criteria (phlebolith, node, cyst: round; tendinitis, vascular: elongated).
    shape2d_convex_area_mm2 : float
        Pixels whose centres lie in the convex hull of the lesion's pixel centres, x pixel area.
        mm^2, >= area. Denominator of solidity.
    shape2d_solidity : float
        area / convex area. (0, 1]; 1 for digitised convex shapes, smaller for concave, lobulated
        (tumoral calcinosis) or clustered deposits.
    shape2d_major_axis_length_mm, shape2d_minor_axis_length_mm : float
        4 sqrt(lambda_1), 4 sqrt(lambda_2) of the sample covariance (mm^2) of the pixel centres
        (mm). mm, >= 0; 2a and 2b for a solid ellipse with semi-axes a >= b. NaN for one pixel.
        Elongation criteria (linear vascular and tendon calcifications).
    shape2d_max_feret_diameter_mm : float
        Largest distance between two marching-squares contour vertices (midpoints between inside
        and outside 4-neighbours). mm, > 0; 2r for a disc of radius r. Size criteria.

    Examples
    --------
    >>> from calcimg.lesion import Lesion
    >>> mask = np.zeros((6, 6), bool)
    >>> mask[1:5, 1:5] = True
    >>> les = Lesion(1, mask * 1.0, mask, (0, 0), (0.5, 1.0), np.zeros(2), np.eye(2), "radiograph")
    >>> row = morphology_2d(les)
    >>> row["shape2d_area_mm2"], row["shape2d_solidity"], round(row["shape2d_max_feret_diameter_mm"], 2)
    (8.0, 1.0, 4.27)
    """
    mask, _, spacing = _checked(lesion, 2)
    reasons: list[str] = []
    row: dict = dict.fromkeys(COLUMNS_2D, NAN)
    n_pixels = int(np.count_nonzero(mask))
    pixel_area = float(np.prod(spacing))
    area = n_pixels * pixel_area
    perimeter = _crofton_perimeter(mask, spacing)
    row["shape2d_area_mm2"] = area
    row["shape2d_perimeter_mm"] = perimeter
    row["shape2d_circularity"] = _ratio(4.0 * math.pi * area, perimeter * perimeter)
    convex = _digital_convex_hull_count(mask) * pixel_area
    row["shape2d_convex_area_mm2"] = convex
    row["shape2d_solidity"] = _ratio(area, convex)
    if n_pixels < 2:
        reasons.append("shape2d axis lengths: one pixel has no covariance")
    else:
        lam = _covariance_eigenvalues(np.argwhere(mask) * spacing)
        row["shape2d_major_axis_length_mm"], row["shape2d_minor_axis_length_mm"] = (
            float(v) for v in 4.0 * np.sqrt(lam))
    row["shape2d_max_feret_diameter_mm"] = _hull_and_diameter(_boundary_midpoints(mask, spacing))[1]
    return _finish(row, reasons)


def morphology_features(lesion: Lesion, **options) -> dict:
    """Morphology columns of a lesion: `morphology_3d` for CT, `morphology_2d` for radiographs.

    ``options`` go to `morphology_3d` (``max_autocorrelation_voxels``).
    """
    if lesion.kind == "ct":
        return morphology_3d(lesion, **options)
    if lesion.kind == "radiograph":
        return morphology_2d(lesion)
    raise ValueError(f"lesion {lesion.lesion_id}: kind must be 'ct' or 'radiograph', got {lesion.kind!r}")
