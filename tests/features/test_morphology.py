"""Morphology: IBSI digital-phantom reference values, analytic shapes in 3D and 2D, edge cases."""

from __future__ import annotations

import csv
import math
import time

import numpy as np
import pytest
from scipy.special import elliprg

from calcimg.features.morphology import (
    COLUMNS_2D,
    COLUMNS_3D,
    MORPHOLOGY_COLUMNS,
    _ellipsoid_area,
    _morans_i_gearys_c,
    morphology_2d,
    morphology_3d,
    morphology_features,
)
from calcimg.io import discover, load, load_mask
from calcimg.lesion import Lesion
from calcimg.pipeline import measure_with_mask
from conftest import shared

PHANTOM = "ibsi_digital_phantom"
IBSI_CODES = {code: col for col, _, _, code in MORPHOLOGY_COLUMNS if code}
# Name suffix -> unit, longest suffixes first.
UNIT_SUFFIXES = {"_hu_mm3": "HU mm^3", "_per_mm": "1/mm", "_mm3": "mm^3", "_mm2": "mm^2", "_mm": "mm"}


def ct_lesion(mask, spacing, image=None):
    mask = np.asarray(mask, bool)
    image = np.where(mask, 400.0, 0.0) if image is None else image
    return Lesion(1, image, mask, (0,) * 3, tuple(spacing), np.zeros(3), np.eye(3), "ct")


def xr_lesion(mask, spacing):
    mask = np.asarray(mask, bool)
    return Lesion(1, mask * 1.0, mask, (0, 0), tuple(spacing), np.zeros(2), np.eye(2), "radiograph")


def centred_grid(extent_mm, spacing):
    """Voxel-centre coordinates (mm) of a grid covering +-extent/2 plus a margin, centred at 0."""
    n = [int(np.ceil(e / s)) + 4 for e, s in zip(extent_mm, spacing, strict=True)]
    axes = [(np.arange(k) - (k - 1) / 2) * s for k, s in zip(n, spacing, strict=True)]
    return np.meshgrid(*axes, indexing="ij")


def ellipsoid(semi_axes, spacing):
    g = centred_grid([2 * a for a in semi_axes], spacing)
    return sum((x / a) ** 2 for x, a in zip(g, semi_axes, strict=True)) <= 1


def rel(x, truth):
    return abs(x / truth - 1)


# ---------------------------------------------------------------- IBSI digital phantom

@pytest.fixture(scope="module")
def phantom_row():
    """The IBSI phantom through the user's-mask path (`calcimg extract IMAGE --mask MASK`)."""
    image = load(discover(shared(f"{PHANTOM}/image.nii.gz")).series[0])
    mask = load_mask(shared(f"{PHANTOM}/mask.nii.gz"), image)
    (row,) = measure_with_mask(image, mask)
    assert row["label"] == 1 and row["lesion_id"] == 1
    return row


@pytest.fixture(scope="module")
def reference():
    with open(shared(f"{PHANTOM}/reference_morphology.csv"), newline="", encoding="utf-8") as f:
        return {r["ibsi_code"]: r for r in csv.DictReader(f)}


@pytest.mark.shared_data
@pytest.mark.parametrize("code", sorted(IBSI_CODES))
def test_ibsi_phantom_reference(code, phantom_row, reference):
    ref = reference.get(code)
    if ref is None or not ref["value"].strip():
        pytest.skip(f"{code}: no reference value in reference_morphology.csv")
    column = IBSI_CODES[code]
    value, tol = float(ref["value"]), float(ref["tolerance"])
    assert abs(phantom_row[column] - value) <= tol, (
        f"{column} ({code}, {ref['ibsi_name']}): {phantom_row[column]:.6g}, reference {value} +- {tol}")


@pytest.mark.shared_data
def test_every_referenced_ibsi_feature_has_a_column(reference):
    missing = [f"{c} ({r['feature']})" for c, r in reference.items() if r["value"].strip() and c not in IBSI_CODES]
    assert not missing, f"reference values without a calcimg column: {missing}"


# ---------------------------------------------------------------- columns table

def test_columns_table_is_consistent():
    names = [c[0] for c in MORPHOLOGY_COLUMNS]
    assert len(names) == len(set(names))
    codes = [c[3] for c in MORPHOLOGY_COLUMNS if c[3]]
    assert len(codes) == len(set(codes))
    for name, unit, description, code in MORPHOLOGY_COLUMNS:
        assert description
        assert name.startswith(("ibsi_", "shape2d_"))
        assert bool(code) == name.startswith("ibsi_"), name  # IBSI defines no 2D morphology
        suffix = next((u for u in UNIT_SUFFIXES if name.endswith(u)), "")
        assert unit == UNIT_SUFFIXES.get(suffix, ""), name
    assert set(COLUMNS_3D) | set(COLUMNS_2D) == set(names)


def test_outputs_are_exactly_the_declared_columns():
    mask = ellipsoid((3, 2, 2), (0.5, 0.5, 0.5))
    image = np.where(mask, 300.0 + np.arange(mask.shape[-1]), 0.0)
    row3 = morphology_features(ct_lesion(mask, (0.5, 0.5, 0.5), image))
    assert set(row3) == set(COLUMNS_3D)
    row2 = morphology_features(xr_lesion(ellipsoid((3, 2), (0.5, 0.5)), (0.5, 0.5)))
    assert set(row2) == set(COLUMNS_2D)
    assert all(np.isfinite(v) for v in [*row3.values(), *row2.values()])


# ---------------------------------------------------------------- 3D analytic shapes

@pytest.mark.parametrize("spacing", [(0.5, 0.5, 0.5), (2.0, 0.6, 0.6), (0.6, 0.6, 2.0)])
def test_sphere(spacing):
    r = 10.0
    row = morphology_3d(ct_lesion(ellipsoid((r, r, r), spacing), spacing))
    volume, area = 4 / 3 * math.pi * r**3, 4 * math.pi * r**2
    iso = len(set(spacing)) == 1
    assert rel(row["ibsi_mesh_volume_mm3"], volume) < (0.01 if iso else 0.02)
    assert rel(row["ibsi_voxel_volume_mm3"], volume) < 0.01
    # IBSI's marching-cubes area includes the voxel staircase: it exceeds the smooth sphere's
    # area, by ~8.5 % here at 0.5 mm and ~16.5 % with 2 mm slices. So sphericity < 1 and
    # depends on spacing; a spacing-independent area would no longer match the IBSI reference.
    excess = row["ibsi_surface_area_mm2"] / area - 1
    assert (0.0 < excess < 0.10) if iso else (0.0 < excess < 0.20)
    assert row["ibsi_sphericity"] > (0.90 if iso else 0.84)
    assert row["ibsi_asphericity"] == pytest.approx(1 / row["ibsi_sphericity"] - 1)
    assert row["ibsi_compactness_2"] == pytest.approx(row["ibsi_sphericity"] ** 3)
    # The mesh reaches half a voxel past the outermost voxel centres.
    assert 2 * r - min(spacing) < row["ibsi_max_3d_diameter_mm"] < 2 * r + max(spacing)
    for axis in ("major", "minor", "least"):  # variance r^2/5 per axis
        assert rel(row[f"ibsi_{axis}_axis_length_mm"], 4 * r / math.sqrt(5)) < 0.02
    assert row["ibsi_elongation"] > 0.98 and row["ibsi_flatness"] > 0.98
    assert rel(row["ibsi_volume_density_aee"], (math.sqrt(5) / 2) ** 3) < 0.03
    # The staircase's notches lie inside the mesh's hull: 0.96 at 0.5 mm, 0.92 with 2 mm slices.
    assert row["ibsi_volume_density_convex_hull"] > (0.95 if iso else 0.90)
    assert rel(row["ibsi_volume_density_aabb"], math.pi / 6) < (0.03 if iso else 0.05)
    assert row["ibsi_centre_of_mass_shift_mm"] == pytest.approx(0.0, abs=1e-9)
    assert row["ibsi_integrated_intensity_hu_mm3"] == pytest.approx(400.0 * row["ibsi_mesh_volume_mm3"])


def test_ellipsoid_axis_lengths():
    a, b, c = 12.0, 8.0, 5.0
    spacing = (0.5, 0.5, 0.5)
    row = morphology_3d(ct_lesion(ellipsoid((c, a, b), spacing), spacing))  # axes in any order
    # A solid ellipsoid's variance along semi-axis s is s^2/5: IBSI length 4 s / sqrt(5).
    for name, s in (("major", a), ("minor", b), ("least", c)):
        assert rel(row[f"ibsi_{name}_axis_length_mm"], 4 * s / math.sqrt(5)) < 0.02, name
    assert rel(row["ibsi_elongation"], b / a) < 0.02
    assert rel(row["ibsi_flatness"], c / a) < 0.02
    assert rel(row["ibsi_mesh_volume_mm3"], 4 / 3 * math.pi * a * b * c) < 0.01
    assert rel(row["ibsi_max_3d_diameter_mm"], 2 * a) < 0.03


def test_cylinder_elongation():
    r, length, s = 4.0, 30.0, 0.5
    z, y, x = centred_grid((length, 2 * r, 2 * r), (s, s, s))
    mask = (y**2 + x**2 <= r * r) & (np.abs(z) < length / 2)
    row = morphology_3d(ct_lesion(mask, (s, s, s)))
    # Variances: length^2/12 along the axis, r^2/4 across it.
    expected = math.sqrt(3) * r / length
    assert rel(row["ibsi_elongation"], expected) < 0.03
    assert rel(row["ibsi_flatness"], expected) < 0.03
    assert rel(row["ibsi_major_axis_length_mm"], 4 * length / math.sqrt(12)) < 0.02
    assert rel(row["ibsi_max_3d_diameter_mm"], math.hypot(length, 2 * r)) < 0.03


def test_lobulated_lesion_is_less_convex_than_a_sphere():
    s = (0.5, 0.5, 0.5)
    z, y, x = centred_grid((24, 24, 24), s)
    lobes = np.zeros(z.shape, bool)
    for cz, cy, cx in ((0, 0, 6), (0, 6, -4), (5, -5, -3), (-5, -4, 0)):
        lobes |= (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= 16
    sphere = morphology_3d(ct_lesion(ellipsoid((8, 8, 8), s), s))
    lobulated = morphology_3d(ct_lesion(lobes, s))
    assert lobulated["ibsi_volume_density_convex_hull"] < sphere["ibsi_volume_density_convex_hull"] - 0.1
    assert lobulated["ibsi_sphericity"] < sphere["ibsi_sphericity"]


def test_centre_of_mass_shift_follows_a_dense_side():
    s = (1.0, 1.0, 1.0)
    mask = np.zeros((3, 3, 12), bool)
    mask[1, 1, 1:11] = True  # a rod of 10 voxels along x
    image = np.where(mask, 100.0, 0.0)
    image[1, 1, 1:6] = 300.0  # the first half denser: centre moves 2.5 mm * (300-100)/(300+100)
    row = morphology_3d(ct_lesion(mask, s, image))
    assert row["ibsi_centre_of_mass_shift_mm"] == pytest.approx(1.25)


def test_ellipsoid_area_series():
    # IBSI's Legendre series is exact for spheres and close for the mildly eccentric shapes of
    # the phantom; it is what IBSI's reference (RDD2) uses, so calcimg keeps it.
    assert _ellipsoid_area(5.0, 5.0, 5.0) == pytest.approx(4 * math.pi * 25)
    a, b, c = 6.0, 5.0, 4.0
    exact = 4 * math.pi * a * b * c * elliprg(a**-2, b**-2, c**-2)
    assert rel(_ellipsoid_area(a, b, c), exact) < 0.02
    assert math.isfinite(_ellipsoid_area(10.0, 10.0, 4.0))  # alpha beta = 0 stays finite


def test_morans_i_and_gearys_c_match_the_pair_sums():
    rng = np.random.default_rng(7)
    spacing = np.array([2.0, 0.7, 0.9])
    mask = rng.random((6, 7, 8)) < 0.6
    image = rng.normal(200, 50, mask.shape) + 30 * np.arange(8)  # a gradient: positive autocorrelation
    pts = np.argwhere(mask) * spacing
    x = image[mask]
    y = x - x.mean()
    d = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    np.fill_diagonal(d, np.inf)
    w = 1 / d
    n, ss = len(x), (y * y).sum()
    morans = n / w.sum() * (w * np.outer(y, y)).sum() / ss
    gearys = (n - 1) / (2 * w.sum()) * (w * (x[:, None] - x[None]) ** 2).sum() / ss
    got = _morans_i_gearys_c(image, mask, spacing)
    assert got == pytest.approx((morans, gearys), rel=1e-9)
    assert morans > 0 and gearys < 1


def test_single_voxel_and_uniform_lesion():
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    row = morphology_3d(ct_lesion(mask, (1.0, 2.0, 3.0)))
    assert row["ibsi_voxel_volume_mm3"] == 6.0
    assert row["ibsi_mesh_volume_mm3"] > 0 and row["ibsi_max_3d_diameter_mm"] > 0
    assert math.isnan(row["ibsi_major_axis_length_mm"]) and math.isnan(row["ibsi_morans_i"])
    assert "axis lengths" in row["not_assessed"]
    flat = np.zeros((3, 6, 6), bool)
    flat[1, 1:5, 1:5] = True  # one slice thick: flat, least axis 0
    row = morphology_3d(ct_lesion(flat, (1.0, 1.0, 1.0)))
    assert row["ibsi_least_axis_length_mm"] == 0.0 and row["ibsi_flatness"] == 0.0
    assert math.isnan(row["ibsi_volume_density_aee"]) and "coplanar" in row["not_assessed"]
    assert "Moran" not in row["not_assessed"] or "same HU" in row["not_assessed"]


def test_negative_hu_leaves_centre_of_mass_shift_unassessed():
    mask = ellipsoid((3, 3, 3), (1.0, 1.0, 1.0))
    image = np.where(mask, -50.0, 0.0)
    row = morphology_3d(ct_lesion(mask, (1.0, 1.0, 1.0), image))
    assert math.isnan(row["ibsi_centre_of_mass_shift_mm"])
    assert "negative HU" in row["not_assessed"]


def test_autocorrelation_voxel_limit():
    mask = ellipsoid((4, 4, 4), (1.0, 1.0, 1.0))
    row = morphology_3d(ct_lesion(mask, (1.0, 1.0, 1.0)), max_autocorrelation_voxels=10)
    assert math.isnan(row["ibsi_morans_i"]) and "limit of 10" in row["not_assessed"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mask": np.zeros((4, 4, 4), bool)}, "mask is empty"),
        ({"image": np.zeros((4, 4, 5))}, "differs from mask"),
        ({"spacing": (1.0, 0.0, 1.0)}, "positive mm"),
        ({"spacing": (1.0, 1.0)}, "positive mm"),
        ({"kind": "mr"}, "kind must be"),
        ({"kind": "radiograph"}, "2-D mask"),
    ],
)
def test_bad_lesions_fail_with_a_sentence(change, message):
    mask = np.zeros((4, 4, 4), bool)
    mask[1:3, 1:3, 1:3] = True
    fields = {"mask": mask, "image": np.zeros((4, 4, 4)), "spacing": (1.0, 1.0, 1.0), "kind": "ct"}
    fields.update(change)
    lesion = Lesion(3, fields["image"], fields["mask"], (0, 0, 0), fields["spacing"], np.zeros(3),
                    np.eye(3), fields["kind"])
    with pytest.raises(ValueError, match=message):
        morphology_features(lesion)


# ---------------------------------------------------------------- 2D analytic shapes

ANISO = (0.5, 0.8)  # mm per row, per column


def test_disc():
    r = 10.0
    row = morphology_2d(xr_lesion(ellipsoid((r, r), ANISO), ANISO))
    assert rel(row["shape2d_area_mm2"], math.pi * r * r) < 0.01
    assert rel(row["shape2d_perimeter_mm"], 2 * math.pi * r) < 0.03
    assert row["shape2d_circularity"] == pytest.approx(1.0, abs=0.05)
    # The contour passes half a pixel beyond the outermost pixel centres.
    assert abs(row["shape2d_max_feret_diameter_mm"] - 2 * r) < max(ANISO)
    assert row["shape2d_solidity"] == pytest.approx(1.0, abs=0.005)
    assert rel(row["shape2d_major_axis_length_mm"], 2 * r) < 0.02
    assert rel(row["shape2d_minor_axis_length_mm"], 2 * r) < 0.02


@pytest.mark.parametrize("spacing", [ANISO, (0.8, 0.5)])
def test_ellipse(spacing):
    a, b = 18.0, 10.0  # semi-axes along columns, rows
    row = morphology_2d(xr_lesion(ellipsoid((b, a), spacing), spacing))
    h = ((a - b) / (a + b)) ** 2
    perimeter = math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))  # Ramanujan
    assert rel(row["shape2d_area_mm2"], math.pi * a * b) < 0.01
    assert rel(row["shape2d_perimeter_mm"], perimeter) < 0.03
    assert rel(row["shape2d_circularity"], 4 * math.pi * math.pi * a * b / perimeter**2) < 0.06
    assert rel(row["shape2d_major_axis_length_mm"], 2 * a) < 0.02
    assert rel(row["shape2d_minor_axis_length_mm"], 2 * b) < 0.02
    assert abs(row["shape2d_max_feret_diameter_mm"] - 2 * a) < max(spacing)
    assert row["shape2d_solidity"] == pytest.approx(1.0, abs=0.005)


def test_rectangle():
    mask = np.zeros((30, 36), bool)
    mask[3:27, 3:33] = True  # 24 rows x 0.5 = 12 mm, 30 columns x 0.8 = 24 mm
    row = morphology_2d(xr_lesion(mask, ANISO))
    assert row["shape2d_area_mm2"] == pytest.approx(288.0)
    # Crofton lines miss the rectangle's corners by up to a pixel each: -3 % at 24 x 30 pixels,
    # -1.5 % at four times the size.
    assert rel(row["shape2d_perimeter_mm"], 72.0) < 0.04
    assert rel(row["shape2d_circularity"], 4 * math.pi * 288 / 72**2) < 0.08
    assert row["shape2d_solidity"] == 1.0
    assert row["shape2d_convex_area_mm2"] == pytest.approx(288.0)
    assert rel(row["shape2d_max_feret_diameter_mm"], math.hypot(24, 12)) < 0.03
    # Uniform variance L^2/12: lengths 4 L / sqrt(12) (the discrete sample: (n^2 - 1) / 12 px^2).
    assert rel(row["shape2d_major_axis_length_mm"], 4 * 24 / math.sqrt(12)) < 0.01
    assert rel(row["shape2d_minor_axis_length_mm"], 4 * 12 / math.sqrt(12)) < 0.01


def test_rotated_rectangle_perimeter():
    y, x = centred_grid((30, 30), ANISO)
    t = math.radians(30)
    u, v = x * math.cos(t) + y * math.sin(t), -x * math.sin(t) + y * math.cos(t)
    row = morphology_2d(xr_lesion((np.abs(u) < 12) & (np.abs(v) < 6), ANISO))
    assert rel(row["shape2d_area_mm2"], 288.0) < 0.02
    assert rel(row["shape2d_perimeter_mm"], 72.0) < 0.03
    assert row["shape2d_solidity"] > 0.99


def test_l_shape_is_not_solid():
    mask = np.zeros((44, 29), bool)
    mask[2:42, 2:27] = True  # 40 rows x 0.5 = 20 mm, 25 columns x 0.8 = 20 mm
    mask[2:22, 14:27] = False  # remove the top-right 10 x 10 mm quadrant (approx., 12.5 x 0.8 = 10 mm)
    row = morphology_2d(xr_lesion(mask, ANISO))
    area = row["shape2d_area_mm2"]
    assert area == pytest.approx(400 - 20 * 0.5 * 13 * 0.8)
    # Convex hull of an L cut from a square: the square minus half the missing corner.
    hull = 400 - 0.5 * (20 * 0.5) * (13 * 0.8)
    assert rel(row["shape2d_convex_area_mm2"], hull) < 0.03
    assert rel(row["shape2d_solidity"], area / hull) < 0.03
    assert row["shape2d_solidity"] < 0.9


def test_single_pixel_and_line():
    one = np.zeros((3, 3), bool)
    one[1, 1] = True
    row = morphology_2d(xr_lesion(one, ANISO))
    assert row["shape2d_area_mm2"] == pytest.approx(0.4) and row["shape2d_solidity"] == 1.0
    assert math.isnan(row["shape2d_major_axis_length_mm"]) and "one pixel" in row["not_assessed"]
    line = np.zeros((3, 12), bool)
    line[1, 1:11] = True
    row = morphology_2d(xr_lesion(line, ANISO))
    assert row["shape2d_solidity"] == 1.0 and row["shape2d_minor_axis_length_mm"] == 0.0
    assert rel(row["shape2d_max_feret_diameter_mm"], 8.0) < 0.01


def test_radiograph_stored_as_one_slice():
    mask = ellipsoid((5, 5), ANISO)[None]
    lesion = Lesion(1, mask * 1.0, mask, (0, 0, 0), (1.0, *ANISO), np.zeros(3), np.eye(3), "radiograph")
    assert morphology_features(lesion) == morphology_2d(xr_lesion(mask[0], ANISO))


# ---------------------------------------------------------------- timing (printed, not asserted)

def test_timing_per_lesion(capsys):
    rng = np.random.default_rng(0)
    spacing = (1.0, 0.7, 0.7)
    lesions = []
    for _ in range(50):
        semi = rng.uniform(2.5, 10.0, 3)  # 5-20 mm diameters
        mask = ellipsoid(semi, spacing)
        image = np.where(mask, rng.normal(600, 150, mask.shape), -50.0)
        lesions.append(ct_lesion(mask, spacing, image))
    morphology_features(lesions[0])  # warm-up
    t0 = time.perf_counter()
    for lesion in lesions:
        morphology_features(lesion)
    ms = (time.perf_counter() - t0) / len(lesions) * 1e3
    pixel = (0.15, 0.15)
    discs = [xr_lesion(ellipsoid(rng.uniform(2.5, 10.0, 2), pixel), pixel) for _ in range(50)]
    t0 = time.perf_counter()
    for lesion in discs:
        morphology_features(lesion)
    ms2 = (time.perf_counter() - t0) / len(discs) * 1e3
    with capsys.disabled():
        print(f"\nmorphology_3d: {ms:.2f} ms per lesion (50 lesions, 5-20 mm, spacing {spacing}); "
              f"morphology_2d: {ms2:.2f} ms (50 ellipses, 5-20 mm, pixels {pixel})")
