"""DICOM SEG and overlay outputs of `calcimg extract`."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from calcimg.cli import main
from calcimg.report._overlay import render_overlay
from calcimg.scan import Scan
from calcimg.segment import Segmentation
from dicom_factory import ct_slices, write_series

SPACING = (1.5, 0.8, 0.8)


def read_csv(path):
    with open(path, newline="") as fp:
        return list(csv.DictReader(fp))


def two_lesion_ct(folder):
    """40-HU tissue with a large and a small calcified block, far apart."""
    hu = np.full((16, 40, 40), 40, np.int16)
    hu[3:9, 6:16, 6:18] = 400
    hu[10:13, 26:31, 25:30] = 300
    slices = ct_slices(hu, spacing=SPACING, origin=(-16.0, -16.0, 50.0))
    for ds in slices:  # one Frame of Reference for the whole series, as scanners write it
        ds.FrameOfReferenceUID = slices[0].FrameOfReferenceUID
    write_series(slices, folder, shuffle_seed=4)


def test_seg_reads_back_to_the_same_lesions(tmp_path):
    hd = pytest.importorskip("highdicom")
    two_lesion_ct(tmp_path / "in")
    assert main(["extract", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--seg", "--workers", "0",
                 "--quiet"]) == 0
    series = read_csv(tmp_path / "out" / "series.csv")[0]
    lesions = read_csv(tmp_path / "out" / "lesions.csv")
    assert len(lesions) == 2
    assert series["seg_file"] == f"seg/{series['series_key']}.dcm"
    data = (tmp_path / "out" / series["seg_file"]).read_bytes()
    assert b"TEST^PATIENT" not in data and b"T0001" not in data and b"19700101" not in data
    seg = hd.seg.segread(tmp_path / "out" / series["seg_file"])
    assert seg.StudyInstanceUID == series["study_uid"]
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["lesion 1", "lesion 2"]
    vol = seg.get_volume(combine_segments=True)
    labels = vol.array
    voxel = float(np.prod(SPACING))
    for row in lesions:
        lid = int(row["lesion_id"])
        mask = labels == lid
        assert mask.sum() * voxel == pytest.approx(float(row["volume_mm3"]))
        centroid_lps = vol.map_indices_to_reference(np.argwhere(mask)).mean(axis=0)
        np.testing.assert_allclose(centroid_lps, [float(row[f"centroid_{a}_mm"]) for a in "xyz"], atol=0.05)


def test_seg_is_skipped_with_a_reason_for_radiographs(tmp_path):
    pytest.importorskip("highdicom")
    from calcimg.batch import run_batch
    from calcimg.phantom import generate

    generate(tmp_path / "in", preset="test", seed=0)
    run_batch([tmp_path / "in" / "dx_hip"], tmp_path / "out", workers=0, seg=True, overlays=False,
              progress="quiet")
    rows = [r for r in read_csv(tmp_path / "out" / "series.csv") if r["status"] == "ok"]
    assert rows and all(r["seg_file"] == "" for r in rows)
    assert not (tmp_path / "out" / "seg").exists()


def _scan_and_seg(kind):
    if kind == "ct":
        pixels = np.full((6, 30, 40), 40, np.int16)
        labels = np.zeros(pixels.shape, np.uint32)
        labels[2:4, 5:10, 5:12] = 1
        labels[3, 20:23, 30:33] = 2
        spacing, origin, direction = (2.0, 0.7, 0.7), np.zeros(3), np.eye(3)
    else:
        pixels = np.random.default_rng(0).normal(100, 5, (1300, 900)).astype(np.float32)
        labels = np.zeros(pixels.shape, np.uint32)
        labels[100:160, 200:260] = 1
        labels[700:703, 500:504] = 2  # a small one, kept visible when the image is reduced
        spacing, origin, direction = (0.15, 0.15), np.zeros(2), np.eye(2)
    pixels = np.where(labels > 0, 500, pixels).astype(pixels.dtype)
    from scipy import ndimage

    boxes = ndimage.find_objects(labels)
    seg = Segmentation(labels=labels, boxes=boxes, component_counts=[1, 1])
    scan = Scan(pixels=pixels, spacing=spacing, origin=origin, direction=direction, kind=kind)
    return scan, seg


@pytest.mark.parametrize("kind", ["ct", "radiograph"])
@pytest.mark.parametrize("with_pattern", [False, True])
def test_overlay_is_a_png_coloured_by_pattern_or_lesion(kind, with_pattern):
    from PIL import Image

    scan, seg = _scan_and_seg(kind)
    rows = [{"lesion_id": 1}, {"lesion_id": 2}]
    if with_pattern:
        rows[0]["pattern"], rows[1]["pattern"] = "tumoral_calcinosis", "phlebolith"
    png = render_overlay(scan, seg, rows, title="1.2.3")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import io

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert max(img.shape[:2]) <= 800  # small and quick
    red = (img[..., 0] > 200) & (img[..., 1] < 80) & (img[..., 2] < 80)  # lesion 1 / tumoral calcinosis
    assert red.sum() > 20


def test_overlay_without_lesions_still_draws(tmp_path):
    scan, seg = _scan_and_seg("ct")
    empty = Segmentation(labels=np.zeros_like(seg.labels), boxes=[], component_counts=[])
    assert render_overlay(scan, empty, [])[:4] == b"\x89PNG"


def test_import_calcimg_stays_light():
    import subprocess
    import sys

    code = ("import sys, calcimg, calcimg.batch, calcimg.cli; "
            "print(sorted(m for m in ('matplotlib', 'pyarrow', 'dask', 'distributed', 'highdicom') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
