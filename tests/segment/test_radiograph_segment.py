"""Radiograph segmentation on the phantom's DX views: recall, bone kept out, photometric-proof."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from scipy import ndimage as ndi

from calcimg.io import discover, load
from calcimg.phantom import generate
from calcimg.scan import Scan
from calcimg.segment._radiograph import segment_radiograph
from calcimg.settings import Settings
from dicom_factory import dx_image

MATCH_MM = 1.5  # a truth lesion is found when a label lies within this distance of its centroid


@pytest.fixture(scope="module")
def dx_views(tmp_path_factory):
    """(scan, truth series) for every DX view of the test preset."""
    root = tmp_path_factory.mktemp("phantom")
    generate(root, preset="test", seed=0)
    views = []
    for study in sorted(p for p in root.iterdir() if (p / "truth.json").exists()):
        truth = {s["series_uid"]: s for s in json.loads((study / "truth.json").read_text())["series"]}
        for series in discover(study).series:
            t = truth.get(series.series_uid)
            if t is not None and t["kind"] == "radiograph":
                views.append((load(series), t))
    assert len(views) >= 3
    return sorted(views, key=lambda v: v[1]["view"])


def _score(scan: Scan, truth: dict, labels: np.ndarray) -> tuple[int, set[int]]:
    """Truth lesions found, and the labels that matched one."""
    row_mm, col_mm = scan.spacing
    rr, cc = np.ogrid[: labels.shape[0], : labels.shape[1]]
    found, matched = 0, set()
    for lesion in truth["lesions"]:
        x_mm, y_mm = lesion["centroid_image_mm"]  # x along columns, y along rows
        near = ((rr * row_mm - y_mm) ** 2 + (cc * col_mm - x_mm) ** 2 <= MATCH_MM**2) & (labels > 0)
        if near.any():
            found += 1
            matched |= {int(v) for v in np.unique(labels[near])}
    return found, matched


def _check_segmentation(seg, shape):
    assert seg.labels.dtype == np.uint32 and seg.labels.shape == shape
    assert seg.bone.dtype == bool and seg.bone.shape == shape
    n = seg.n_lesions
    assert len(seg.component_counts) == n and all(c >= 1 for c in seg.component_counts)
    areas = np.bincount(seg.labels.ravel(), minlength=n + 1)[1:]
    assert set(np.unique(seg.labels)) <= set(range(n + 1))
    assert np.all(areas > 0) and np.all(np.diff(areas) <= 0)  # numbered by decreasing area
    for i, box in enumerate(seg.boxes):
        assert np.array_equal(seg.labels[box] == i + 1, (seg.labels == i + 1)[box])
        assert (seg.labels[box] == i + 1).any()


def test_phantom_dx_recall_and_no_bone(dx_views):
    for scan, truth in dx_views:
        t0 = time.perf_counter()
        seg = segment_radiograph(scan)
        seconds = time.perf_counter() - t0
        _check_segmentation(seg, scan.shape)
        found, matched = _score(scan, truth, seg.labels)
        n_truth = len(truth["lesions"])
        unmatched = [i for i in range(1, seg.n_lesions + 1) if i not in matched]
        print(f"\n{truth['view']}: recall {found}/{n_truth}, lesions {seg.n_lesions}, "
              f"unmatched {len(unmatched)}, {seconds * 1000:.0f} ms")
        # 3 of the 4 test lesions are visible in every view; the calcific tendinitis at the
        # femoral insertion projects onto bone with no contrast (-0.4 noise sigma measured), a
        # known limit of single-view radiographs (criteria-research 4.2, superimposition)
        visible = [t for t in truth["lesions"] if t["pattern"] != "calcific_tendinitis"]
        found_visible, _ = _score(scan, {**truth, "lesions": visible}, seg.labels)
        assert found_visible == len(visible), f"{truth['view']}: recall {found_visible}/{len(visible)} visible"
        assert found / n_truth >= 0.75, f"{truth['view']}: recall {found}/{n_truth}"
        assert len(unmatched) <= 1, f"{truth['view']}: {len(unmatched)} false positives"
        assert seg.bone.mean() > 0.05, f"{truth['view']}: the phantom's femur and pelvis were not found"
        # bone is never a lesion, and no false positive lies mostly on the bone's cortical band
        # (a true lesion may: the phantom's vessel runs across the bone's edge)
        assert not (seg.labels[seg.bone] > 0).any()
        cortex = ndi.distance_transform_edt(~seg.bone, sampling=scan.spacing) <= 1.0
        for i in unmatched:
            on = cortex[seg.labels == i].mean()
            assert on <= 0.5, f"{truth['view']}: lesion {i} lies {on:.0%} on the bone edge"
        assert seg.body is not None and seg.body.mean() > 0.5


def test_same_labels_for_monochrome1_and_monochrome2(dx_views, tmp_path):
    """Written as MONOCHROME2 and as its inverse in MONOCHROME1, one image segments the same."""
    scan, _ = dx_views[0]
    stored = np.clip(np.rint(scan.pixels), 0, 4095).astype(np.uint16)
    segs = []
    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        values = stored if photometric == "MONOCHROME2" else (4095 - stored).astype(np.uint16)
        path = tmp_path / photometric
        dx_image(values, photometric=photometric, imager_spacing=list(scan.spacing)).save_as(
            path, enforce_file_format=True
        )
        loaded = load(discover(path).series[0])
        np.testing.assert_allclose(loaded.pixels, stored.astype(np.float32))
        segs.append(segment_radiograph(loaded))
    assert segs[0].n_lesions > 0
    np.testing.assert_array_equal(segs[0].labels, segs[1].labels)
    np.testing.assert_array_equal(segs[0].bone, segs[1].bone)
    assert segs[0].component_counts == segs[1].component_counts


def test_unknown_spacing_falls_back_to_a_pixel_scale_and_says_so(dx_views):
    scan, truth = dx_views[0]
    blind = Scan(scan.pixels, (float("nan"), float("nan")), (0, 0), np.eye(2), "radiograph")
    assert not blind.spacing_known
    seg = segment_radiograph(blind)
    _check_segmentation(seg, scan.shape)
    assert any("spacing unknown" in f for f in seg.flags)
    assert seg.n_lesions > 0
    # the phantom's 0.18 mm pixels are close to the 0.2 mm fallback: the lesions are still found
    found, _ = _score(scan, truth, seg.labels)
    assert found >= len(truth["lesions"]) - 1


def test_flat_noise_gives_no_lesion():
    rng = np.random.default_rng(1)
    noise = ndi.gaussian_filter(rng.normal(2000.0, 20.0, (512, 512)), 0.6).astype(np.float32)
    seg = segment_radiograph(Scan(noise, (0.15, 0.15), (0, 0), np.eye(2), "radiograph"))
    assert seg.n_lesions == 0 and not seg.labels.any() and not seg.bone.any()
    flat = segment_radiograph(Scan(np.full((64, 64), 7.0, np.float32), (0.2, 0.2), (0, 0), np.eye(2),
                                   "radiograph"))
    assert flat.n_lesions == 0 and any("flat" in f for f in flat.flags)


def test_grouping_ordering_and_min_area():
    """Deposits closer than the gap are one lesion; lesions numbered by decreasing area."""
    rng = np.random.default_rng(2)
    img = rng.normal(1000.0, 5.0, (300, 300)).astype(np.float32)
    yy, xx = np.mgrid[:300, :300]

    def blob(r, c, radius, height=150.0):
        img[(yy - r) ** 2 + (xx - c) ** 2 <= radius**2] += height

    blob(60, 60, 8)  # two grains 2 mm apart (0.2 mm pixels): one lesion of two components
    blob(60, 86, 8)
    blob(200, 200, 12)  # the largest single deposit
    blob(200, 60, 6)  # a small one
    blob(120, 250, 1)  # 0.1 mm^2: under the minimum area
    settings = Settings(dx_group_gap_mm=3.0, dx_min_area_mm2=1.0)
    seg = segment_radiograph(Scan(img, (0.2, 0.2), (0, 0), np.eye(2), "radiograph"), settings)
    _check_segmentation(seg, img.shape)
    assert seg.n_lesions == 3
    assert seg.labels[60, 60] == seg.labels[60, 86] == 1 and seg.component_counts[0] == 2
    assert seg.labels[200, 200] == 2 and seg.component_counts[1] == 1
    assert seg.labels[200, 60] == 3
    assert seg.labels[120, 250] == 0
    apart = segment_radiograph(Scan(img, (0.2, 0.2), (0, 0), np.eye(2), "radiograph"),
                               Settings(dx_group_gap_mm=1.0))
    assert apart.n_lesions == 4 and apart.component_counts == [1, 1, 1, 1]


def test_rejects_ct_and_bad_settings():
    ct = Scan(np.zeros((2, 4, 4), np.int16), (1.0, 1.0, 1.0), (0, 0, 0), np.eye(3), "ct")
    with pytest.raises(ValueError, match="radiograph"):
        segment_radiograph(ct)
    with pytest.raises(ValueError, match="dx_grow_sigma"):
        Settings(dx_contrast_sigma=3.0, dx_grow_sigma=4.0)
    with pytest.raises(ValueError, match="dx_background_scale_mm"):
        Settings(dx_background_scale_mm=0.0)


def test_disc_over_bone_found_and_straight_cortex_not():
    """A dense disc projected over a large bone is a lesion (touching bone); the bone's cortical
    rim and a straight internal cortical line are not."""
    rng = np.random.default_rng(3)
    img = ndi.gaussian_filter(rng.normal(1000.0, 5.0, (400, 400)), 0.7).astype(np.float32)
    yy, xx = np.mgrid[:400, :400]
    shaft = (yy >= 50) & (yy < 350) & (xx >= 100) & (xx < 300)  # 60 x 40 mm at 0.2 mm pixels
    img[shaft] += 300.0
    inner = (yy >= 55) & (yy < 345) & (xx >= 105) & (xx < 295)
    img[shaft & ~inner] += 300.0  # 1 mm cortex, brighter than the medulla
    img[(np.abs(yy - 250) <= 2) & (xx >= 115) & (xx < 285)] += 300.0  # a straight cortical line
    img[(yy - 140) ** 2 + (xx - 200) ** 2 <= 8**2] += 300.0  # a 1.6 mm-radius deposit over bone
    img = ndi.gaussian_filter(img, 0.5).astype(np.float32)
    seg = segment_radiograph(Scan(img, (0.2, 0.2), (0, 0), np.eye(2), "radiograph"))
    _check_segmentation(seg, img.shape)
    assert seg.bone[200, 150] and seg.bone[300, 200]
    assert seg.n_lesions == 1, f"{seg.n_lesions} lesions"
    assert seg.labels[140, 200] == 1 and seg.touches_bone == [True]
    assert not seg.labels[250, 120:280].any()
    assert not (seg.labels[seg.bone] > 0).any()
    assert any("over bone" in f for f in seg.flags)
