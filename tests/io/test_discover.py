"""Discovery: grouping, splitting, skipping with reasons; errors that name the file."""

import shutil

import numpy as np
import pytest

from calcimg import NotAnImageError, UnreadableFileError
from calcimg.io import discover, load, read_header
from conftest import pydicom_file, shared
from dicom_factory import ct_slices, dx_image, write_series


def small_ct(n=4, **kw):
    k, i, j = np.indices((n, 8, 8))
    return ct_slices((k * 10 + i + j).astype(np.int16), **kw)


def test_groups_by_series_and_walks_nested_folders(tmp_path):
    write_series(small_ct(study_uid="1.2.3", series_uid="1.2.3.4"), tmp_path / "a" / "deep")
    write_series(small_ct(5, study_uid="1.2.3", series_uid="1.2.3.5"), tmp_path / "b", suffix=".dcm")
    dx_image(np.zeros((8, 8), np.uint16)).save_as(tmp_path / "b" / "xray", enforce_file_format=True)
    found = discover(tmp_path)
    kinds = sorted((s.kind, s.n_files) for s in found.series)
    assert kinds == [("ct", 4), ("ct", 5), ("radiograph", 1)]
    assert found.skipped == []


def test_series_split_when_orientation_changes(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.1"
    write_series(small_ct(3, series_uid=uid), tmp_path, shuffle_seed=1)
    write_series(small_ct(3, series_uid=uid, row_cos=(0, 1, 0), col_cos=(0, 0, -1)), tmp_path, shuffle_seed=2)
    found = discover(tmp_path)
    assert [s.n_files for s in found.series] == [3, 3]
    assert {s.key for s in found.series} == {f"{uid}.p1", f"{uid}.p2"}
    assert all("split" in s.split_note for s in found.series)
    for s in found.series:
        assert load(s).shape == (3, 8, 8)


def test_localizer_separated(tmp_path):
    dss = small_ct(4, series_uid="1.2.9")
    scout = small_ct(1, series_uid="1.2.9", row_cos=(1, 0, 0), col_cos=(0, 0, -1))[0]
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    write_series([*dss, scout], tmp_path)
    found = discover(tmp_path)
    assert sorted((s.kind, s.n_files) for s in found.series) == [("ct", 4), ("localizer", 1)]


@pytest.mark.parametrize(
    ("name", "reason"),
    [("test-SR.dcm", "structured report"), ("rtstruct.dcm", "RT structure set"), ("rtplan.dcm", "RT plan")],
)
def test_non_image_objects_skipped_with_reason(tmp_path, name, reason):
    shutil.copy(pydicom_file(name), tmp_path / "obj")
    found = discover(tmp_path)
    assert found.series == []
    assert len(found.skipped) == 1
    assert reason in found.skipped[0].reason
    assert found.skipped[0].status == "skipped"


def test_dicomdir_and_vendor_files_skipped(tmp_path):
    shutil.copy(pydicom_file("dicomdirtests/DICOMDIR"), tmp_path / "DICOMDIR")
    (tmp_path / "DIRFILE").write_bytes(b"\x00\x01PHILIPS-DIRFILE" + bytes(200))
    (tmp_path / "notes.txt").write_text("scanner log")
    found = discover(tmp_path)
    reasons = {s.path.name: (s.status, s.reason) for s in found.skipped}
    assert reasons["DICOMDIR"][0] == "skipped" and "DICOMDIR" in reasons["DICOMDIR"][1]
    assert reasons["DIRFILE"] == ("skipped", "not a DICOM file (no DICM marker and no DICOM header)")
    assert reasons["notes.txt"][0] == "skipped"


def test_corrupt_truncated_pixelless_files_are_errors(tmp_path):
    paths = write_series(small_ct(3), tmp_path / "good", suffix=".dcm")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(0).bytes(300))
    data = paths[0].read_bytes()
    (bad / "truncated_header.dcm").write_bytes(data[:300])
    pixelless = small_ct(1)[0]
    del pixelless.PixelData
    pixelless.save_as(bad / "pixelless.dcm", enforce_file_format=True)
    found = discover(tmp_path)
    errors = {s.path.name: s.reason for s in found.skipped if s.status == "error"}
    assert set(errors) == {"corrupt.dcm", "truncated_header.dcm", "pixelless.dcm"}
    assert "no pixel data" in errors["pixelless.dcm"]
    assert len(found.series) == 1 and found.series[0].n_files == 3
    with pytest.raises(UnreadableFileError, match=r"corrupt\.dcm"):
        read_header(bad / "corrupt.dcm")
    with pytest.raises(UnreadableFileError, match="not a DICOM file"):
        (tmp_path / "text.dcm").write_text("hello")
        read_header(tmp_path / "text.dcm")


def test_truncated_pixel_data_raises_naming_the_file(tmp_path):
    paths = write_series(small_ct(3), tmp_path)
    victim = paths[1]
    victim.write_bytes(victim.read_bytes()[:-40])
    series = discover(tmp_path).series[0]
    with pytest.raises(UnreadableFileError, match="truncated pixel data") as info:
        load(series)
    assert victim.name in str(info.value)


def test_load_path_with_no_series_raises(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(NotAnImageError, match="0 loadable series"):
        load(tmp_path)


def test_missing_input_raises():
    with pytest.raises(FileNotFoundError):
        discover("/nonexistent/calcimg/input")


def test_real_chest_ct_loads():
    folder = shared("ct_chest_tcia_a0002")
    found = discover(folder)
    assert [s.kind for s in found.series] == ["ct"]
    assert [s.path.name for s in found.skipped] == ["TCIA_LICENSE.txt"]
    scan = load(found.series[0])
    assert scan.shape == (30, 512, 512)
    assert scan.spacing == pytest.approx((8.0, 0.646484375, 0.646484375))
    # air outside the body (top-left corner, all slices) near -1000 HU
    assert np.median(scan.pixels[:, :40, :40]) == pytest.approx(-1000, abs=40)
    # cortical bone above 300 HU exists (ribs, spine), and is a small fraction of the volume
    dense = np.mean(scan.pixels > 300)
    assert 0.001 < dense < 0.05
    assert np.percentile(scan.pixels, 99.95) > 700
    # supine (HFS): gravity posterior, i.e. down the image rows
    np.testing.assert_allclose(scan.gravity_lps, (0, 1, 0))
    np.testing.assert_allclose(scan.gravity, (0, 1, 0))
    # 1-01.dcm sits at z = 312: the top of the ascending stack
    np.testing.assert_allclose(scan.index_to_lps([29, 0, 0]), (-173.1767578125, -294.1767578125, 312))
