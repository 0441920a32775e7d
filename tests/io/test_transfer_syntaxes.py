"""pydicom's bundled files: one image in every transfer syntax pydicom ships decodes identically."""

import numpy as np
import pydicom
import pytest

from calcimg.io import read_header
from calcimg.io._pixels import can_read_raw, decode_frames, fix_stored_values, read_raw_into
from conftest import pydicom_file

MR_VARIANTS = {
    "MR_small_implicit.dcm": "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "MR_small_bigendian.dcm": "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    "MR_small_expb.dcm": "1.2.840.10008.1.2.2",
    "MR_small_padded.dcm": "1.2.840.10008.1.2.1",  # trailing padding after the pixels
    "MR_small_RLE.dcm": "1.2.840.10008.1.2.5",  # RLE Lossless
    "MR_small_jp2klossless.dcm": "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "MR_small_jpeg_ls_lossless.dcm": "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
}


@pytest.fixture(scope="module")
def mr_reference():
    ds, arr = decode_frames(pydicom_file("MR_small.dcm"))
    assert str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.1"
    return arr


@pytest.mark.parametrize("name", sorted(MR_VARIANTS))
def test_same_image_in_every_transfer_syntax_decodes_identically(name, mr_reference):
    ds, arr = decode_frames(pydicom_file(name))
    assert str(ds.file_meta.TransferSyntaxUID) == MR_VARIANTS[name]
    assert arr.shape == mr_reference.shape == (64, 64)
    np.testing.assert_array_equal(arr.astype(np.int32), mr_reference.astype(np.int32))


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_padded.dcm", "CT_small.dcm"])
def test_fast_raw_read_matches_pydicom(name):
    path = pydicom_file(name)
    header, offset = read_header(path)
    assert can_read_raw(header, offset)
    out = np.empty((header.Rows, header.Columns), dtype=np.int16)
    read_raw_into(path, offset, header, out)
    values, pad = fix_stored_values(out, header)
    np.testing.assert_array_equal(values, pydicom.dcmread(path).pixel_array)
    assert pad is None


@pytest.mark.parametrize(("name", "ts"), [
    ("liver_expb_1frame.dcm", "1.2.840.10008.1.2.2"),
    ("rtdose_rle_1frame.dcm", "1.2.840.10008.1.2.5"),
])
def test_other_pairs_decode_identically(name, ts):
    ref_name = name.replace("_expb", "").replace("_rle", "")
    _, ref = decode_frames(pydicom_file(ref_name))
    ds, arr = decode_frames(pydicom_file(name))
    assert str(ds.file_meta.TransferSyntaxUID) == ts
    np.testing.assert_array_equal(arr, ref)


def test_lossy_jpeg_and_jpeg2000_of_one_image_agree_closely():
    """JPGExtended (12-bit lossy JPEG) and JPEG2000.dcm are lossy encodings of one image."""
    _, jpeg = decode_frames(pydicom_file("JPGExtended.dcm"))
    _, j2k = decode_frames(pydicom_file("JPEG2000.dcm"))
    assert jpeg.shape == j2k.shape == (1024, 256)
    diff = np.abs(jpeg.astype(float) - j2k.astype(float))
    scale = float(np.ptp(j2k))
    assert np.median(diff) < 0.01 * scale
    assert np.corrcoef(jpeg.ravel(), j2k.ravel())[0, 1] > 0.9  # measured 0.954; unrelated images correlate far less
