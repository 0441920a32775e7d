"""Intensity, rim-to-core profile, ossification, context on phantoms with truth, study level,
and the user's-mask path."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from calcimg.errors import MaskMismatchError
from calcimg.features import intensity_features, lesion_features
from calcimg.features.context import compartment, context_features, ossification
from calcimg.io import discover, load, load_mask
from calcimg.lesion import Lesion
from calcimg.pipeline import measure_with_mask, study_row
from calcimg.scan import Scan
from calcimg.segment import crop_lesions, segment_ct
from calcimg.settings import Settings


def ball_lesion(radius_mm, spacing=(0.5, 0.5, 0.5), inside=None, shell_mm=None, shell_hu=1200.0,
                background=40.0):
    """A ball of `radius_mm`: homogeneous at `shell_hu`, or a `shell_mm` shell at `shell_hu` around
    `inside` HU. The mask is what a 130 HU threshold keeps."""
    n = [int(np.ceil(2 * radius_mm / s)) + 5 for s in spacing]
    grids = np.meshgrid(*[(np.arange(k) - (k - 1) / 2) * s for k, s in zip(n, spacing, strict=True)],
                        indexing="ij")
    r = np.sqrt(sum(g * g for g in grids))
    image = np.full(r.shape, background)
    image[r <= radius_mm] = shell_hu
    if shell_mm is not None:
        image[r <= radius_mm - shell_mm] = inside
    mask = image >= 130
    return Lesion(1, image, mask, (0, 0, 0), spacing, np.zeros(3), np.eye(3), "ct")


# ---------------------------------------------------------------- intensity on known arrays

def test_intensity_numbers_on_a_known_array():
    mask = np.zeros((3, 3, 6), bool)
    mask[1, 1, 1:5] = True
    image = np.zeros(mask.shape)
    image[1, 1, 1:5] = [200.0, 300.0, 400.0, 1000.0]
    les = Lesion(1, image, mask, (0, 0, 0), (2.0, 1.0, 0.5), np.zeros(3), np.eye(3), "ct")
    row = intensity_features(les)
    assert row["mean_hu"] == 475.0 and row["max_hu"] == 1000.0 and row["median_hu"] == 350.0
    assert row["p10_hu"] == pytest.approx(230.0) and row["p90_hu"] == pytest.approx(820.0)
    assert row["hu_weighted_volume_hu_mm3"] == pytest.approx(1900.0 * 1.0)  # voxel = 1 mm^3
    # a rod one voxel thick has a rim and nothing deeper
    assert math.isnan(row["core_mean_hu"]) and math.isnan(row["rim_core_contrast"])
    assert "too thin" in row["not_assessed"]


def test_rim_core_profile_of_a_homogeneous_ball_and_of_a_cyst():
    solid = intensity_features(ball_lesion(6.0, shell_hu=800.0))
    assert solid["rim_mean_hu"] == solid["core_mean_hu"] == 800.0
    assert solid["rim_core_contrast"] == 0.0
    cyst = intensity_features(ball_lesion(6.0, shell_mm=1.5, inside=10.0, shell_hu=700.0))
    assert cyst["rim_mean_hu"] == 700.0 and cyst["core_mean_hu"] == pytest.approx(10.0, abs=60)
    assert cyst["rim_core_contrast"] > 0.8
    # the calcium mask (the shell) alone gives the lesion HU; the profile sees the filled centre
    assert cyst["mean_hu"] == 700.0


# ---------------------------------------------------------------- ossification

@pytest.mark.parametrize(("inside", "shell_mm", "shell_hu", "expect"), [
    (230.0, 1.5, 1400.0, 1),    # cortex around cancellous bone: heterotopic bone / mature MO
    (-60.0, 1.5, 1200.0, 1),    # cortex around fatty marrow
    (None, None, 900.0, 0),     # homogeneous dense deposit
    (10.0, 1.5, 800.0, 0),      # cyst: water core (hydatid, calcified wall)
    (40.0, 1.5, 900.0, 0),      # zonal immature MO / soft-tissue centre: no marrow yet
    (250.0, 1.5, 330.0, 0),     # faint shell around medium density: no cortex
])
def test_ossification(inside, shell_mm, shell_hu, expect):
    les = ball_lesion(6.0, inside=inside, shell_mm=shell_mm, shell_hu=shell_hu)
    score, flag, why = ossification(les)
    assert flag == expect and not why
    assert (score > 0.7) if expect else (score < 0.3)


def test_ossification_needs_a_core():
    score, flag, why = ossification(ball_lesion(1.5))
    assert math.isnan(score) and math.isnan(flag) and "core" in why


def test_compartment_rule():
    assert compartment(2.9, 0.9) == "cutaneous"
    assert compartment(10.0, 0.5) == "subcutaneous"
    assert compartment(10.0, 0.49) == "deep"
    assert compartment(float("nan"), 0.0) == ""


# ---------------------------------------------------------------- phantoms with truth

@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Every CT study of the test preset: (truth series, rows, study row)."""
    from calcimg.phantom import generate

    out = []
    for folder in generate(tmp_path_factory.mktemp("phantoms"), preset="test", seed=0):
        truth = json.loads((folder / "truth.json").read_text())["series"][0]
        if truth["kind"] != "ct":
            continue
        scan = load(discover(folder).series[0])
        seg = segment_ct(scan, Settings())
        rows = [lesion_features(les) for les in crop_lesions(scan, seg)]
        out.append((folder.name, truth, rows, study_row(scan, seg, rows)))
    return out


def _matched(truth, rows):
    """(truth lesion, row) pairs: the row whose centroid is nearest, within max(2 mm, diameter / 4)."""
    pairs = []
    for t in truth["lesions"]:
        c = np.asarray(t["centroid_lps_mm"])
        d = [np.linalg.norm(np.array([r["centroid_x_mm"], r["centroid_y_mm"], r["centroid_z_mm"]]) - c) for r in rows]
        if d and min(d) <= max(2.0, t["max_diameter_mm"] / 4):
            pairs.append((t, rows[int(np.argmin(d))]))
    return pairs


def test_bone_distance_and_skin_depth_against_truth(measured):
    # Tolerances. bone_distance_mm: truth is measured from the lesion's voxel centres to the
    # analytic bone surface, calcimg between two half-maximum boundaries (half a voxel less on
    # the lesion side) on blurred, noisy voxels of 0.9-2.5 mm: 1.5 mm. skin_depth_mm: the skin is
    # found to the pixel (1 mm) and measured in the slice plane, which the oblique study tilts by
    # 18 degrees (1/cos = 1.05): max(1.5 mm, 12 %).
    n, lines = 0, []
    for name, truth, rows, _ in measured:
        for t, r in _matched(truth, rows):
            n += 1
            bd, sd = r["bone_distance_mm"], r["skin_depth_mm"]
            lines.append(f"{name} {t['pattern']}: bone {bd:.2f}/{t['bone_distance_mm']:.2f}, "
                         f"skin {sd:.2f}/{t['skin_depth_mm']:.2f}")
            if t["bone_distance_mm"] <= 20:
                assert abs(bd - t["bone_distance_mm"]) <= 1.5, lines[-1]
            assert abs(sd - t["skin_depth_mm"]) <= max(1.5, 0.12 * t["skin_depth_mm"]), lines[-1]
    print("\n".join(lines))
    assert n >= 20


def test_compartment_and_ossification_on_phantoms(measured):
    seen = {}
    for _, truth, rows, _ in measured:
        for t, r in _matched(truth, rows):
            seen.setdefault(t["pattern"], []).append(r)
            assert r["ossified"] in (0, 1) or math.isnan(r["ossified"])
            assert r["ossified"] != 1, f"{t['pattern']} called ossified"  # the phantom has no mature bone
    assert all(r["compartment"] in ("cutaneous", "subcutaneous") for r in seen["calcinosis_cutis"])
    assert all(r["compartment"] == "deep" for r in seen["myositis_ossificans"])
    cyst = seen["hydatid_cyst"][0]  # a calcified wall around fluid
    assert cyst["core_mean_hu"] < 100 and cyst["rim_core_contrast"] > 0.5


def test_demineralised_flag(measured):
    for name, truth, _, study in measured:
        assert study["demineralised"] == int(truth["demineralised_bone"]), (name, study)
        assert study["demineralised_threshold_hu"] == 120.0 and "PICK19" in study["demineralised_source"]
        assert math.isnan(study["n_vascular_calcifications"])
        assert "pattern" in study["study_not_assessed"]


# ---------------------------------------------------------------- the user's mask

def _write(arr, path, spacing=(0.7, 0.6, 0.5), origin=(-10.0, 5.0, 20.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing[::-1])
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))


def test_measure_with_a_nifti_mask(tmp_path):
    shape = (30, 40, 50)
    z, y, x = np.indices(shape)
    image = np.full(shape, 40, np.int16)
    a = (z - 12) ** 2 + (y - 15) ** 2 + (x - 15) ** 2 <= 36
    b = (z - 15) ** 2 + (y - 25) ** 2 + (x - 35) ** 2 <= 16
    image[a], image[b] = 500, 900
    labels = np.zeros(shape, np.uint8)
    labels[a], labels[b] = 7, 3
    _write(image, tmp_path / "image.nii.gz")
    _write(labels, tmp_path / "mask.nrrd")
    scan = load(discover(tmp_path / "image.nii.gz").series[0])
    rows = measure_with_mask(scan, load_mask(tmp_path / "mask.nrrd", scan))
    assert [r["lesion_id"] for r in rows] == [1, 2] and [r["label"] for r in rows] == [3, 7]
    assert rows[0]["mean_hu"] == 900 and rows[1]["mean_hu"] == 500
    assert rows[1]["volume_mm3"] == pytest.approx(a.sum() * 0.7 * 0.6 * 0.5)
    assert rows[1]["component_count"] == 1
    # without a body or bone in the image, the context says why instead of guessing
    assert "bone_distance_mm" in rows[0]["not_assessed"]


def test_mask_geometry_mismatch_names_the_file(tmp_path):
    image = np.zeros((10, 12, 14), np.int16)
    _write(image, tmp_path / "image.nii.gz")
    scan = load(discover(tmp_path / "image.nii.gz").series[0])
    _write(np.zeros((10, 12, 14), np.uint8), tmp_path / "shifted.nii.gz", origin=(-10.0, 5.0, 21.0))
    with pytest.raises(MaskMismatchError, match=r"shifted\.nii\.gz.*origin"):
        load_mask(tmp_path / "shifted.nii.gz", scan)
    _write(np.zeros((10, 12, 13), np.uint8), tmp_path / "small.nii.gz")
    with pytest.raises(MaskMismatchError, match=r"small\.nii\.gz.*shape"):
        load_mask(tmp_path / "small.nii.gz", scan)
    _write(np.zeros((10, 12, 14), np.uint8), tmp_path / "coarse.nii.gz", spacing=(1.0, 0.6, 0.5))
    with pytest.raises(MaskMismatchError, match=r"coarse\.nii\.gz.*spacing"):
        load_mask(tmp_path / "coarse.nii.gz", scan)


def test_mask_array_with_bone_context():
    """A label array on a scan with body and bone: the user's label is measured with context,
    and the labelled voxels never count as bone."""
    sp = 0.6
    shape = (40, 80, 80)
    z, y, x = np.indices(shape) * sp
    hu = np.full(shape, -1000.0)
    hu[np.hypot(y - 24, x - 24) < 22] = 40.0
    r = np.hypot(y - 24, x - 24)
    hu[r < 8.0] = 1500.0
    hu[r < 6.0] = 230.0
    dep = np.sqrt((z - 12) ** 2 + (y - 24) ** 2 + (x - 24 - 8 - 4 - 2.4) ** 2) <= 2.4  # 4 mm from cortex
    hu[dep] = 700.0
    scan = Scan(hu.astype(np.int16), (sp, sp, sp), np.zeros(3), np.eye(3), "ct")
    (row,) = measure_with_mask(scan, dep.astype(np.uint16) * 5)
    assert row["label"] == 5
    assert row["bone_distance_mm"] == pytest.approx(4.0, abs=1.0)
    assert row["skin_depth_mm"] == pytest.approx(22 - (8 + 4 + 2.4), abs=1.5)
    assert row["compartment"] == "deep"
    with pytest.raises(ValueError, match="shape"):
        measure_with_mask(scan, np.zeros((3, 3, 3), np.uint8))


def test_context_without_bone_mask_gives_reasons():
    row = context_features(ball_lesion(3.0))
    assert math.isnan(row["bone_distance_mm"]) and "no bone mask" in row["not_assessed"]
    assert "no body outline" in row["not_assessed"]
