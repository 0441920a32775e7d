"""CT series written by the tests: geometry, sorting, HU, gravity and header quirks."""

import numpy as np
import pydicom
import pytest

from calcimg import InconsistentSeriesError, MissingGeometryError
from calcimg.io import discover, load
from dicom_factory import ct_slices, write_series

SHAPE = (12, 20, 24)


def ramp_volume(shape=SHAPE):
    """HU that encode each voxel's index: value = 100*k + 3*i + j - 1000 (unique, in range)."""
    k, i, j = np.indices(shape)
    return (100 * k + 3 * i + j - 1000).astype(np.int16)


def load_folder(folder, **kw):
    found = discover(folder)
    assert len(found.series) == 1, found
    return load(found.series[0], **kw)


def check_geometry(scan, datasets):
    """Every written slice's first pixel lands where its ImagePositionPatient says."""
    for ds in datasets:
        ipp = np.asarray(ds.ImagePositionPatient, float)
        k = np.argmin(np.linalg.norm(scan.index_to_lps(np.array([[kk, 0, 0] for kk in range(scan.shape[0])])) - ipp, axis=1))
        np.testing.assert_allclose(scan.index_to_lps([k, 0, 0]), ipp, atol=1e-3)
        # the pixel values travelled with their slice
        np.testing.assert_array_equal(scan.pixels[k], ds.pixel_array.astype(np.int32) + int(ds.RescaleIntercept))


def test_shuffled_names_sorted_by_position_and_hu_from_rescale(tmp_path):
    hu = ramp_volume()
    dss = ct_slices(hu, spacing=(2.5, 0.7, 0.9))
    write_series(dss, tmp_path, suffix="")  # no .dcm suffix, random names
    scan = load_folder(tmp_path)
    assert scan.kind == "ct"
    assert scan.shape == SHAPE
    assert scan.spacing == pytest.approx((2.5, 0.7, 0.9))
    assert scan.pixels.dtype == np.int16
    np.testing.assert_array_equal(scan.pixels, hu)
    np.testing.assert_allclose(scan.origin, (-50, -60, 100))
    np.testing.assert_allclose(scan.gravity_lps, (0, 1, 0))
    np.testing.assert_allclose(scan.gravity, (0, 1, 0))  # supine axial: gravity runs down the rows
    check_geometry(scan, dss)


def test_descending_z_and_instance_numbers_that_lie(tmp_path):
    hu = ramp_volume()
    dss = ct_slices(hu, origin=(0, 0, 50), spacing=(3.0, 1.0, 1.0))
    # the scanner wrote the stack head-to-feet and numbered the instances backwards
    positions = [ds.ImagePositionPatient for ds in dss][::-1]
    for ds, pos, num in zip(dss, positions, range(len(dss)), strict=True):
        ds.ImagePositionPatient = pos
        ds.InstanceNumber = 100 - num
    write_series(dss, tmp_path, suffix=".dcm")
    scan = load_folder(tmp_path)
    z = scan.index_to_lps(np.c_[np.arange(SHAPE[0]), np.zeros(SHAPE[0]), np.zeros(SHAPE[0])])[:, 2]
    assert np.all(np.diff(z) > 0)  # sorted along the slice normal (+z), whatever the names/numbers
    assert scan.spacing[0] == pytest.approx(3.0)
    check_geometry(scan, dss)


def test_spacing_from_positions_not_slice_thickness(tmp_path):
    dss = ct_slices(ramp_volume(), spacing=(1.25, 0.6, 0.6))
    for ds in dss:
        ds.SliceThickness = 5.0  # thick slices reconstructed with overlap
    write_series(dss, tmp_path)
    assert load_folder(tmp_path).spacing[0] == pytest.approx(1.25)


def test_gantry_tilt_kept_in_direction(tmp_path):
    tilt = np.deg2rad(15.0)
    # positions step along z and drift along y: a stack tilted about the x axis
    axis = np.array([0.0, np.sin(tilt), np.cos(tilt)])
    dss = ct_slices(ramp_volume(), spacing=(2.0, 0.8, 0.8), slice_axis=axis)
    write_series(dss, tmp_path)
    scan = load_folder(tmp_path)
    np.testing.assert_allclose(scan.direction[:, 0], axis, atol=1e-4)
    np.testing.assert_allclose(scan.direction[:, 1], (0, 1, 0))
    assert scan.spacing[0] == pytest.approx(2.0, abs=1e-3)
    assert any("gantry tilt 15.0" in n for n in scan.notes)
    check_geometry(scan, dss)
    # voxel volume accounts for the shear: slab thickness along the normal is 2 cos(15 deg)
    assert scan.voxel_volume == pytest.approx(2.0 * np.cos(tilt) * 0.64, rel=1e-3)
    # gravity (supine: +y) expressed on the sheared axes reconstructs the LPS vector
    np.testing.assert_allclose(
        (scan.direction @ scan.gravity) / np.linalg.norm(scan.direction @ scan.gravity), (0, 1, 0), atol=1e-9
    )


@pytest.mark.parametrize(
    ("position", "gravity_lps"),
    [("HFS", (0, 1, 0)), ("FFS", (0, 1, 0)), ("HFP", (0, -1, 0)), ("FFP", (0, -1, 0)),
     ("HFDL", (1, 0, 0)), ("HFDR", (-1, 0, 0)), ("FFDL", (1, 0, 0)), ("FFDR", (-1, 0, 0))],
)
def test_gravity_from_patient_position(tmp_path, position, gravity_lps):
    write_series(ct_slices(ramp_volume((3, 8, 8)), patient_position=position), tmp_path)
    scan = load_folder(tmp_path)
    np.testing.assert_allclose(scan.gravity_lps, gravity_lps)
    # standard axial orientation: array axes are (z, y, x)
    np.testing.assert_allclose(scan.gravity, np.asarray(gravity_lps, float)[[2, 1, 0]], atol=1e-12)
    assert position in scan.gravity_source


def test_missing_patient_position_means_unknown_gravity(tmp_path):
    write_series(ct_slices(ramp_volume((3, 8, 8)), patient_position=None), tmp_path)
    scan = load_folder(tmp_path)
    assert scan.gravity is None and scan.gravity_lps is None
    assert scan.gravity_source.startswith("unknown")


def test_oblique_orientation_geometry_and_gravity(tmp_path):
    a = np.deg2rad(20.0)
    row = (np.cos(a), np.sin(a), 0.0)  # image rows rotated 20 degrees about z
    col = (-np.sin(a), np.cos(a), 0.0)
    dss = ct_slices(ramp_volume(), row_cos=row, col_cos=col, patient_position="HFS")
    write_series(dss, tmp_path)
    scan = load_folder(tmp_path)
    check_geometry(scan, dss)
    # gravity (0, 1, 0) LPS seen on the rotated axes: (0, cos a, sin a) on (slice, row, column)
    np.testing.assert_allclose(scan.gravity, (0, np.cos(a), np.sin(a)), atol=1e-6)
    # a point's LPS position round-trips
    p = scan.index_to_lps([3, 5, 7])
    np.testing.assert_allclose(scan.lps_to_index(p), [3, 5, 7], atol=1e-9)


def test_sagittal_series_decubitus(tmp_path):
    # sagittal slices: rows run posterior (+y), columns run to the feet (-z), normal is -x... or +x
    dss = ct_slices(ramp_volume(), row_cos=(0, 1, 0), col_cos=(0, 0, -1), patient_position="HFDR")
    write_series(dss, tmp_path)
    scan = load_folder(tmp_path)
    check_geometry(scan, dss)
    normal = np.cross((0, 1, 0), (0, 0, -1))
    np.testing.assert_allclose(scan.direction[:, 0], normal)
    # right side down: gravity (-1, 0, 0) lies along the slice axis
    np.testing.assert_allclose(scan.gravity, (float(np.dot((-1, 0, 0), normal)), 0, 0), atol=1e-12)


def test_nonuniform_spacing_resampled_to_median(tmp_path):
    hu = np.zeros((8, 6, 6), np.int16)
    z = np.array([0, 2, 4, 6, 8, 12, 14, 16.0])  # one slice (z = 10) missing
    hu[:] = (z * 10).astype(np.int16)[:, None, None]  # HU = 10 z: linear in z
    positions = [(0.0, 0.0, zz) for zz in z]
    write_series(ct_slices(hu, positions=positions), tmp_path)
    scan = load_folder(tmp_path)
    assert scan.shape[0] == 9
    assert scan.spacing[0] == pytest.approx(2.0)
    np.testing.assert_array_equal(scan.pixels[:, 0, 0], np.arange(9) * 20)  # the gap filled linearly
    assert any("non-uniform slice spacing" in n and "resampled" in n for n in scan.notes)
    with pytest.raises(InconsistentSeriesError, match="non-uniform"):
        load_folder(tmp_path, nonuniform="error")


def test_duplicate_positions_are_an_error_naming_files(tmp_path):
    dss = ct_slices(ramp_volume((4, 6, 6)))
    dss[2].ImagePositionPatient = dss[1].ImagePositionPatient
    paths = write_series(dss, tmp_path)
    with pytest.raises(InconsistentSeriesError, match="share one position") as info:
        load_folder(tmp_path)
    assert any(p.name in str(info.value) for p in paths)


def test_missing_orientation_is_named(tmp_path):
    dss = ct_slices(ramp_volume((3, 6, 6)))
    for ds in dss:
        del ds.ImageOrientationPatient
    write_series(dss, tmp_path)
    with pytest.raises(MissingGeometryError, match="ImageOrientationPatient"):
        load_folder(tmp_path)


def test_rescale_slope_and_intercept_float(tmp_path):
    hu = ramp_volume((3, 6, 6)).astype(float)
    write_series(ct_slices(hu, slope=0.5, intercept=-1000.0, bits_stored=16), tmp_path)
    scan = load_folder(tmp_path)
    assert scan.pixels.dtype == np.float32
    np.testing.assert_allclose(scan.pixels, hu, atol=0.5)


def test_rescale_that_varies_per_slice(tmp_path):
    hu = ramp_volume((4, 6, 6))
    dss = ct_slices(hu)
    # slice 2 stored with another intercept (some scanners do this)
    dss[2].RescaleIntercept = -2048
    dss[2].PixelData = (hu[2].astype(np.int32) + 2048).astype(np.uint16).tobytes()
    write_series(dss, tmp_path)
    np.testing.assert_array_equal(load_folder(tmp_path).pixels, hu)


def test_modality_lut_sequence(tmp_path):
    """A Modality LUT Sequence replaces Rescale Slope/Intercept (its output is unsigned)."""
    stored = ramp_volume((3, 6, 6)).astype(np.int32) + 1024  # 24..about 1300
    lut = (np.arange(4096) * 3) // 2  # stored v -> 1.5 v, floored: not a linear rescale in integers
    dss = ct_slices(stored.astype(np.int16), intercept=0.0)
    for ds in dss:
        del ds.RescaleIntercept
        del ds.RescaleSlope
        item = pydicom.Dataset()
        item.LUTDescriptor = [4096, 0, 16]
        item.ModalityLUTType = "HU"
        item.add_new(0x00283006, "US", lut.astype(np.uint16).tolist())
        ds.ModalityLUTSequence = [item]
    write_series(dss, tmp_path)
    scan = load_folder(tmp_path)
    np.testing.assert_array_equal(scan.pixels.astype(np.int32), lut[stored])


def test_pixel_padding_value_becomes_air(tmp_path):
    hu = np.full((3, 8, 8), 40, np.int16)
    dss = ct_slices(hu, signed=True, intercept=0.0, bits_stored=16)
    for ds in dss:
        raw = np.frombuffer(ds.PixelData, np.int16).reshape(8, 8).copy()
        raw[:, :2] = -2000  # outside the reconstruction circle
        raw[0, 7] = -3024
        ds.PixelData = raw.tobytes()
        ds.PixelPaddingValue = -3024
    write_series(dss, tmp_path)
    scan = load_folder(tmp_path)
    assert scan.pixels[0, 0, 7] == -1024  # padding -> air
    assert np.all(scan.pixels[:, :, :2] == -1024)  # below the air floor -> air
    assert np.all(scan.pixels[:, 1:, 2:] == 40)


def test_signed_bits_stored_12_sign_extended(tmp_path):
    hu = ramp_volume((3, 6, 6)) // 2  # -1000..about -350 and positive values
    hu[0, 0, 0] = -2000
    dss = ct_slices(hu, signed=True, intercept=0.0, bits_stored=12)
    for ds in dss:
        raw = np.frombuffer(ds.PixelData, np.int16).reshape(6, 6)
        # a 12-bit signed value written without sign extension of the top four bits
        ds.PixelData = (raw.view(np.uint16) & 0x0FFF).astype(np.uint16).tobytes()
    write_series(dss, tmp_path)
    scan = load_folder(tmp_path)
    expected = np.maximum(hu, -1024)
    np.testing.assert_array_equal(scan.pixels, expected)


def test_unsigned_with_garbage_above_bits_stored_is_masked(tmp_path):
    hu = ramp_volume((3, 6, 6))
    dss = ct_slices(hu, bits_stored=12)
    for ds in dss:
        raw = np.frombuffer(ds.PixelData, np.uint16)
        ds.PixelData = (raw | 0xA000).astype(np.uint16).tobytes()  # overlay bits in the high nibble
    write_series(dss, tmp_path)
    np.testing.assert_array_equal(load_folder(tmp_path).pixels, hu)


def test_unsigned_claim_with_twos_complement_hu(tmp_path):
    hu = ramp_volume((3, 6, 6))
    dss = ct_slices(hu, signed=True, intercept=0.0, bits_stored=16)
    for ds in dss:
        ds.PixelRepresentation = 0  # the header lies: the values are signed HU
    write_series(dss, tmp_path)
    scan = load_folder(tmp_path)
    np.testing.assert_array_equal(scan.pixels, hu)
    assert any("two's-complement" in n for n in scan.notes)


def test_compressed_ct_series_decodes_like_uncompressed(tmp_path):
    from pydicom.uid import RLELossless

    hu = ramp_volume((4, 16, 16))
    plain = ct_slices(hu)
    write_series(plain, tmp_path / "plain")
    rle = ct_slices(hu)
    for ds in rle:
        ds.compress(RLELossless)
    write_series(rle, tmp_path / "rle")
    a, b = load_folder(tmp_path / "plain"), load_folder(tmp_path / "rle")
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert b.header["transfer_syntax"] == RLELossless


def test_file_without_preamble_is_read(tmp_path):
    hu = ramp_volume((3, 6, 6))
    dss = ct_slices(hu)
    write_series(dss, tmp_path)
    # rewrite one file as a raw dataset: no preamble, no meta group (old ACR-NEMA style exports)
    victim = sorted(tmp_path.iterdir())[0]
    ds = pydicom.dcmread(victim)
    ds.preamble = None
    del ds.file_meta
    pydicom.dcmwrite(victim, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert victim.read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(load_folder(tmp_path).pixels, hu)


def test_enhanced_multiframe_ct(tmp_path):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    hu = ramp_volume((5, 8, 10))
    order = [3, 0, 4, 1, 2]  # frames stored out of order
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientPosition = "HFP"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 8, 10, 5
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = pydicom.Dataset()
    pm = pydicom.Dataset()
    pm.PixelSpacing, pm.SliceThickness = [0.5, 0.6], 1.5
    po = pydicom.Dataset()
    po.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    tr = pydicom.Dataset()
    tr.RescaleIntercept, tr.RescaleSlope, tr.RescaleType = -1024, 1, "HU"
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [pm], [po]
    shared.PixelValueTransformationSequence = [tr]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for k in order:
        item = pydicom.Dataset()
        pp = pydicom.Dataset()
        pp.ImagePositionPatient = [10.0, 20.0, 30.0 + 1.5 * k]
        item.PlanePositionSequence = [pp]
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = (hu[order].astype(np.int32) + 1024).astype(np.int16).tobytes()
    ds.save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)
    scan = load_folder(tmp_path)
    np.testing.assert_array_equal(scan.pixels, hu)
    assert scan.spacing == pytest.approx((1.5, 0.5, 0.6))
    np.testing.assert_allclose(scan.origin, (10, 20, 30))
    np.testing.assert_allclose(scan.gravity_lps, (0, -1, 0))
    assert "enhanced multi-frame CT" in scan.notes
