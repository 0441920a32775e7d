"""Principal axes and the multiplicity columns (calcimg.features.multiplicity), on analytic shapes
with known directions and on rows with a known arrangement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calcimg.criteria import apply, default_table
from calcimg.features.multiplicity import multiplicity_features, principal_axis
from calcimg.lesion import Lesion


def _rotation(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    t = math.radians(deg)
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * k @ k


def _box_lesion(half_lengths, frame, spacing, direction):
    """A solid box with half-lengths along the columns of `frame` (LPS), sampled on a grid whose
    array axes point along the columns of `direction`, with `spacing` mm per array axis."""
    spacing = np.asarray(spacing, float)
    n = np.ceil(2 * np.linalg.norm(half_lengths) / spacing).astype(int) + 3
    idx = np.stack(np.meshgrid(*[np.arange(k) - (k - 1) / 2 for k in n], indexing="ij"), axis=-1)
    lps = (idx * spacing) @ direction.T
    local = lps @ frame  # coordinates along the box's own axes
    mask = np.all(np.abs(local) <= np.asarray(half_lengths), axis=-1)
    origin = -((np.asarray(n) - 1) / 2 * spacing) @ direction.T
    image = np.where(mask, 700.0, 40.0).astype(np.float32)
    return Lesion(1, image, mask, (0, 0, 0), tuple(spacing), origin, direction, "ct")


# an oblique, non-orthogonal-looking but orthonormal acquisition frame (a tilted oblique series)
DIRECTION = _rotation((1, 2, 0.5), 25.0)


def test_rod_axis_in_patient_space_on_anisotropic_oblique_grid():
    frame = _rotation((0.3, -1.0, 0.4), 50.0)
    les = _box_lesion((15.0, 1.5, 1.5), frame, (2.5, 0.6, 0.6), DIRECTION)
    row = principal_axis(les)
    axis = np.array([row["principal_axis_x"], row["principal_axis_y"], row["principal_axis_z"]])
    angle = math.degrees(math.acos(min(1.0, abs(float(axis @ frame[:, 0])))))
    assert angle < 3.0
    assert np.linalg.norm(axis) == pytest.approx(1.0)
    assert axis[np.argmax(np.abs(axis))] > 0  # the sign convention
    # box 30 x 3 x 3 mm: uniform-box sd ratio 3/30 (the grid's staircase adds a little)
    assert row["axis_ratio"] == pytest.approx(0.1, abs=0.04)
    assert row["cross_section_ratio"] > 0.8  # round (square) cross-section: a tube or rod


def test_sheet_has_a_flat_cross_section_and_a_ball_has_none():
    sheet = _box_lesion((15.0, 5.0, 0.8), _rotation((0, 0, 1), 30.0), (1.0, 0.7, 0.7), np.eye(3))
    row = principal_axis(sheet)
    assert row["cross_section_ratio"] == pytest.approx(1.6 / 10.0, abs=0.08)
    ball = _box_lesion((5.0, 5.0, 5.0), np.eye(3), (1.0, 1.0, 1.0), np.eye(3))
    row = principal_axis(ball)
    assert row["axis_ratio"] == pytest.approx(1.0, abs=0.05)
    assert math.isnan(row["cross_section_ratio"])  # no long axis to cut across


def test_radiograph_axis_is_in_image_x_along_columns():
    rows, cols = np.mgrid[0:120, 0:160]
    sp = (0.2, 0.1)  # anisotropic pixels: row spacing 0.2 mm, column spacing 0.1 mm
    y, x = (rows - 60) * sp[0], (cols - 80) * sp[1]
    t = math.radians(30.0)  # long axis 30 degrees from the columns direction towards the rows
    u, v = x * math.cos(t) + y * math.sin(t), -x * math.sin(t) + y * math.cos(t)
    mask = (u / 6.0) ** 2 + (v / 1.5) ** 2 <= 1
    les = Lesion(1, mask * 1.0, mask, (0, 0), sp, np.zeros(2), np.eye(2), "radiograph")
    row = principal_axis(les)
    assert row["principal_axis_x"] == pytest.approx(math.cos(t), abs=0.02)
    assert row["principal_axis_y"] == pytest.approx(math.sin(t), abs=0.02)
    assert math.isnan(row["principal_axis_z"]) and math.isnan(row["cross_section_ratio"])
    assert row["axis_ratio"] == pytest.approx(0.25, abs=0.03)


def _row(x, diam, axis, ratio, y=0.0):
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    return {"centroid_x_mm": x, "centroid_y_mm": y, "centroid_z_mm": 0.0, "max_diameter_mm": diam,
            "principal_axis_x": a[0], "principal_axis_y": a[1], "principal_axis_z": a[2], "axis_ratio": ratio}


def test_multiplicity_counts_similar_aligned_and_neighbouring_lesions():
    grains = [_row(20.0 * i, 7.0 + 0.3 * i, (0.05 * i, 0, 1), 0.4) for i in range(5)]  # parallel, 0-12 deg
    crossed = _row(0.0, 7.0, (1, 0, 0), 0.4, y=25.0)  # same size, perpendicular
    ball = _row(200.0, 7.5, (0, 0, 1), 0.95)  # same size, round: no axis to align
    mass = _row(300.0, 40.0, (0, 0, 1), 0.3)  # elongated along the grains but far too large
    rows = [*grains, crossed, ball, mass]
    multiplicity_features(rows)
    assert all(r["series_lesion_count"] == 8 for r in rows)
    assert rows[0]["similar_lesion_count"] == 6  # four grains, the crossed one and the ball
    assert rows[0]["aligned_lesion_count"] == 4
    assert rows[5]["aligned_lesion_count"] == 0 and rows[6]["aligned_lesion_count"] == 0
    assert rows[7]["similar_lesion_count"] == 0
    # neighbours within 30 mm: grain 0 has grain 1 (20 mm) and the crossed grain (25 mm)
    assert rows[0]["neighbour_count"] == 2 and rows[2]["neighbour_count"] == 2
    assert rows[7]["neighbour_count"] == 0


def test_a_grain_among_aligned_grains_reads_more_parasitic_than_a_solitary_one():
    base = {"kind": "ct", "max_diameter_mm": 7.0, "ibsi_elongation": 0.45, "ibsi_minor_axis_length_mm": 3.5,
            "ibsi_volume_density_convex_hull": 0.95, "linearity": 0.1, "shell_muscle_fraction": 0.8,
            "skin_depth_mm": 20.0, "bone_distance_mm": 10.0, "lobulation": 0.0, "fluid_level": 0}
    table = default_table()
    field = apply({**base, "aligned_lesion_count": 8}, table)
    alone = apply({**base, "aligned_lesion_count": 0}, table)
    assert field["score_parasitic"] > alone["score_parasitic"] + 0.1
    assert field["pattern"] == "parasitic"
    assert "parallel" in field["evidence"]
