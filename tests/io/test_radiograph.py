"""Radiographs: larger = denser, spacing calibration and gravity from the header."""

from pathlib import Path

import numpy as np
import pytest

from calcimg.io import discover, load
from dicom_factory import dx_image

ERECT = ("C86043", "NCIt")
RECUMBENT = ("102538003", "SCT")
SUPINE = ("40199007", "SCT")
LEFT_DECUB = ("102536004", "SCT")
RIGHT_DECUB = ("102535000", "SCT")


def bone_on_air(bits=12):
    """Stored values of a MONOCHROME2 image: a dense bar (bright) on an air background (dark)."""
    v = np.full((40, 50), 200, np.uint16)
    v[10:30, 20:30] = (1 << bits) - 300
    return v


def load_one(tmp_path, ds, name="img"):
    p = tmp_path / name
    ds.save_as(p, enforce_file_format=True)
    found = discover(p)
    assert len(found.series) == 1
    return load(found.series[0])


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_larger_is_denser_for_both_photometric_interpretations(tmp_path, photometric):
    v = bone_on_air()
    if photometric == "MONOCHROME1":
        v = (1 << 12) - 1 - v  # the same radiograph stored with white = low values
    scan = load_one(tmp_path, dx_image(v, photometric=photometric))
    assert scan.kind == "radiograph"
    assert scan.pixels[20, 25] > scan.pixels[2, 2] + 3000
    # the two encodings give the same attenuation image
    np.testing.assert_allclose(scan.pixels, bone_on_air().astype(np.float32))


@pytest.mark.parametrize(
    ("kwargs", "spacing", "source"),
    [
        ({"imager_spacing": (0.2, 0.25)}, (0.2, 0.25), "ImagerPixelSpacing (at detector)"),
        ({"imager_spacing": (0.2, 0.2), "magnification": 1.25}, (0.16, 0.16),
         "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor"),
        ({"imager_spacing": None, "pixel_spacing": (0.15, 0.15)}, (0.15, 0.15), "PixelSpacing (uncalibrated)"),
        ({"imager_spacing": (0.0, 0.0)}, (np.nan, np.nan), "unknown"),
        ({"imager_spacing": None}, (np.nan, np.nan), "unknown"),
    ],
)
def test_spacing_choice_is_recorded(tmp_path, kwargs, spacing, source):
    scan = load_one(tmp_path, dx_image(bone_on_air(), **kwargs))
    np.testing.assert_allclose(scan.spacing, spacing)
    assert scan.spacing_source == source
    assert scan.spacing_known == (source != "unknown")


def test_calibrated_pixel_spacing_wins(tmp_path):
    ds = dx_image(bone_on_air(), imager_spacing=(0.2, 0.2), pixel_spacing=(0.17, 0.17))
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    scan = load_one(tmp_path, ds)
    assert scan.spacing == pytest.approx((0.17, 0.17))
    assert scan.spacing_source == "PixelSpacing (calibrated, GEOMETRY)"


@pytest.mark.parametrize(
    ("kwargs", "gravity_lps", "gravity_img"),
    [
        # erect AP: rows run to the patient's left, columns to the feet; gravity down the image
        ({"orientation_code": ERECT}, (0, 0, -1), (1, 0)),
        # left lateral decubitus, horizontal beam AP: gravity along the rows, towards patient left
        ({"orientation_code": RECUMBENT, "modifier_code": LEFT_DECUB, "patient_orientation": ("L", "F")},
         (1, 0, 0), (0, 1)),
        ({"orientation_code": RECUMBENT, "modifier_code": RIGHT_DECUB}, (-1, 0, 0), (0, -1)),
        # cross-table lateral of a supine patient: columns run posterior; gravity along them
        ({"orientation_code": RECUMBENT, "modifier_code": SUPINE, "patient_orientation": ("H", "P"),
          "view_position": "LL"}, (0, 1, 0), (1, 0)),
        ({"view_position": "LLD", "patient_orientation": ("L", "F")}, (1, 0, 0), (0, 1)),
    ],
)
def test_gravity_in_the_image_plane(tmp_path, kwargs, gravity_lps, gravity_img):
    scan = load_one(tmp_path, dx_image(bone_on_air(), **kwargs))
    np.testing.assert_allclose(scan.gravity_lps, gravity_lps)
    np.testing.assert_allclose(scan.gravity, gravity_img, atol=1e-12)
    assert scan.gravity_in_plane == pytest.approx(1.0)
    assert not scan.gravity_source.startswith("heuristic")


def test_supine_ap_has_gravity_along_the_beam(tmp_path):
    ds = dx_image(bone_on_air(), orientation_code=RECUMBENT, modifier_code=SUPINE, patient_orientation=("L", "F"))
    scan = load_one(tmp_path, ds)
    np.testing.assert_allclose(scan.gravity_lps, (0, 1, 0))
    assert scan.gravity is None  # a fluid level cannot be seen: the layer is seen en face
    assert scan.gravity_in_plane == pytest.approx(0.0)
    assert "along the beam" in scan.gravity_source


def test_description_keywords_are_flagged_heuristic(tmp_path):
    scan = load_one(tmp_path, dx_image(bone_on_air(), view_position="PA", description="CHEST PA ERECT"))
    np.testing.assert_allclose(scan.gravity_lps, (0, 0, -1))
    assert scan.gravity_source.startswith("heuristic")


def test_no_posture_means_unknown(tmp_path):
    scan = load_one(tmp_path, dx_image(bone_on_air(), view_position="AP"))
    assert scan.gravity is None and scan.gravity_lps is None


def test_real_dx_larger_is_denser():
    """A real Fujifilm DX (MONOCHROME1, copied into tests/data): after loading, the open air at the
    film edge is the least dense and the body brighter, as on the radiologist's display."""
    path = Path(__file__).resolve().parents[1] / "data" / "dx_fujifilm_monochrome1.dcm"
    import pydicom

    raw = pydicom.dcmread(path).pixel_array.astype(np.float32)
    scan = load(discover(path).series[0])
    assert scan.shape == (169, 211)
    np.testing.assert_allclose(scan.pixels, 255 - raw)  # MONOCHROME1, 8 bits stored: inverted
    assert "MONOCHROME1" in " ".join(scan.notes)
    edge = np.concatenate([scan.pixels[:5].ravel(), scan.pixels[-5:].ravel()])
    centre = scan.pixels[60:110, 70:140]
    assert np.median(centre) > np.median(edge)
    assert scan.spacing == pytest.approx((1.2, 1.2012))
    assert scan.gravity is None  # no posture recorded: unknown, not assumed
