"""The compiled kernels of `calcimg.features._fast` give the numbers of the paths they replace."""

from __future__ import annotations

import edt
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

from calcimg.features import _fast, morphology, size
from calcimg.features.morphology import (
    _mesh,
    _mesh_hull,
    _mesh_measures,
    _mesh_volume_area,
    _morans_i_gearys_c,
)
from calcimg.lesion import Lesion

pytestmark = pytest.mark.skipif(not _fast.HAVE_NUMBA, reason="numba disabled: the kernels are not used")
SPACINGS = (0.5, 0.8, 1.0, 2.5, 0.7, 0.488281, 3.0)


def random_masks(seed, count, ndim=3, big_every=10):
    rng = np.random.default_rng(seed)
    for i in range(count):
        shape = tuple(rng.integers(1, 12, ndim)) if i % big_every else tuple(rng.integers(10, 30, ndim))
        mask = rng.random(shape) < rng.uniform(0.1, 1.0)
        if i % 3 == 0:
            mask = ndimage.binary_closing(mask)
        if mask.any():
            yield mask, np.array(rng.choice(SPACINGS, ndim)), rng


def test_edt_is_bit_identical_to_the_package():
    cases = 0
    for ndim in (2, 3):
        for i, (mask, spacing, rng) in enumerate(random_masks(1 + ndim, 300, ndim)):
            if i % 7 == 0:
                mask = np.asfortranarray(mask)  # the package runs Fortran order with the axes reversed
            labels = mask.view(np.uint8)
            black_border = bool(rng.random() < 0.5)
            want = edt.edt(labels, anisotropy=tuple(spacing), black_border=black_border, parallel=1)
            got = _fast.edt(labels, tuple(spacing), black_border=black_border)
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
            cases += 1
    assert cases > 500


def test_mesh_measures_match_the_marching_cubes_mesh():
    for mask, spacing, _ in random_masks(5, 150):
        verts, faces = _mesh(mask, spacing)
        volume, area = _mesh_volume_area(verts, faces)
        got_volume, got_area, got_verts, lattice = _mesh_measures(mask, spacing)
        assert got_volume == pytest.approx(volume, rel=1e-12)
        assert got_area == pytest.approx(area, rel=1e-12)
        # every vertex of ours is a mesh vertex, and the extent is the mesh's
        mesh_lattice = {tuple(p) for p in np.rint(2 * verts / spacing).astype(int).tolist()}
        assert {tuple(p) for p in lattice.tolist()} <= mesh_lattice
        np.testing.assert_allclose(got_verts.max(0) - got_verts.min(0), verts.max(0) - verts.min(0), atol=1e-12)
        # the hull: exact on the lattice, the same as Qhull's on the mesh vertices
        hull = ConvexHull(verts)
        hull_volume, hull_area, diameter = _mesh_hull(got_verts, lattice)
        assert hull_volume == pytest.approx(hull.volume, rel=1e-12)
        assert hull_area == pytest.approx(hull.area, rel=1e-12)
        assert diameter == pdist(verts[hull.vertices]).max()


def test_lattice_hull_of_coplanar_points_is_flagged():
    flat = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [2, 2, 0], [1, 1, 0]], np.int64)
    assert _fast.lattice_convex_hull(flat).shape == (0, 3)
    found, volume, area, d2 = _fast.hull_measures(flat.astype(float), flat)
    assert not found and np.isnan(volume) and np.isnan(area) and d2 == 8.0


def test_max_diameter_on_the_lattice_equals_qhull_and_pdist():
    for mask, spacing, rng in random_masks(9, 300):
        idx = np.argwhere(mask)
        direction = np.linalg.qr(rng.normal(size=(3, 3)))[0]  # any rotation: LPS axes need not be the array's
        points = (idx * spacing) @ direction.T
        assert size.max_diameter_mm(points, lattice=idx) == size.max_diameter_mm(points)


def brute_force_autocorrelation(image, mask, spacing):
    pts = np.argwhere(mask) * spacing
    x = image[mask].astype(float)
    y = x - x.mean()
    d = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    np.fill_diagonal(d, np.inf)
    w = 1 / d
    n, ss = len(x), (y * y).sum()
    return (n / w.sum() * (w * np.outer(y, y)).sum() / ss,
            (n - 1) / (2 * w.sum()) * (w * (x[:, None] - x[None]) ** 2).sum() / ss)


@pytest.mark.parametrize("path", ["direct", "fft"])
def test_morans_i_and_gearys_c_paths_agree_with_the_pair_sums(path, monkeypatch):
    if path == "fft":
        monkeypatch.setattr(morphology, "_DIRECT_PAIRS_FLOOR", -(10**12))
    rng = np.random.default_rng(11)
    for shape in [(6, 7, 8), (3, 9, 5), (12, 10, 9)]:
        spacing = rng.choice(SPACINGS, 3)
        mask = rng.random(shape) < 0.6
        image = rng.normal(200, 50, shape) + 30 * np.arange(shape[2])
        got = _morans_i_gearys_c(image, mask, spacing)
        assert got == pytest.approx(brute_force_autocorrelation(image, mask, spacing), rel=1e-9)


def test_numpy_and_scipy_paths_give_the_same_row(monkeypatch):
    rng = np.random.default_rng(3)
    lesions = []
    for mask, spacing, _ in random_masks(13, 40):
        image = np.where(mask, rng.normal(500, 120, mask.shape), -40.0)
        lesions.append(Lesion(1, image, mask, (0, 0, 0), tuple(spacing), np.zeros(3), np.eye(3), "ct"))
    fast = [morphology.morphology_3d(les) for les in lesions]
    monkeypatch.setattr(_fast, "HAVE_NUMBA", False)
    slow = [morphology.morphology_3d(les) for les in lesions]
    for a, b in zip(fast, slow, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], float):
                assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12, nan_ok=True), key
            else:
                assert a[key] == b[key], key


def test_zoom_linear_is_bit_identical_to_ndimage_zoom():
    rng = np.random.default_rng(17)
    for i in range(300):
        ndim = 3 if i % 3 else 2
        image = rng.normal(0, 50, tuple(rng.integers(1, 14, ndim))).astype(np.float32)
        factors = rng.choice([1.0, 1.25, 0.8, 3.125, 0.6, 1.6, 1 / 3], ndim)
        want = ndimage.zoom(image, factors, order=1, grid_mode=True, mode="nearest")
        got = _fast.zoom_linear(image, factors)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_fill_holes_is_ndimage_binary_fill_holes():
    for ndim in (2, 3):
        for mask, _, _ in random_masks(19 + ndim, 300, ndim):
            np.testing.assert_array_equal(_fast.fill_holes(mask), ndimage.binary_fill_holes(mask))
    shell = np.ones((5, 5, 5), bool)
    shell[2, 2, 2] = False
    assert _fast.fill_holes(shell).all()
    slab = np.ones((1, 5, 5), bool)  # a single slice in 3-D: every background voxel touches the border
    slab[0, 2, 2] = False
    assert not _fast.fill_holes(slab)[0, 2, 2] and _fast.fill_holes(slab[0])[2, 2]
