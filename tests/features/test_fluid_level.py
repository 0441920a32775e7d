"""Fluid-calcium levels: synthetic cysts in every posture (as `Lesion` objects and through real
DICOM), a tilted interface, radiographs (erect, decubitus, supine AP), and sensitivity /
specificity on the phantoms of the test preset."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from calcimg.features import fluid_level_features
from calcimg.features.fluid_level import COLUMNS, find_fluid_levels
from calcimg.io import discover, load
from calcimg.lesion import Lesion
from calcimg.pipeline import measure_scan, segment_scan
from calcimg.settings import Settings
from dicom_factory import ct_slices, write_series
from phantom_truth import truth_series

AXIAL = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
OBLIQUE = ((0.95105652, 0.30901699, 0.0), (-0.29983787, 0.92280607, 0.2419219))  # the phantom's
#: posture -> (PatientPosition, ImageOrientationPatient row and column cosines, gravity LPS)
POSTURES = {
    "supine": ("HFS", AXIAL, (0.0, 1.0, 0.0)),
    "prone": ("HFP", ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)), (0.0, -1.0, 0.0)),
    "left_decubitus": ("HFDL", ((0.0, -1.0, 0.0), (1.0, 0.0, 0.0)), (1.0, 0.0, 0.0)),
    "right_decubitus": ("HFDR", ((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0)), (-1.0, 0.0, 0.0)),
    "oblique_supine": ("HFS", OBLIQUE, (0.0, 1.0, 0.0)),
}


def _direction(row_cos, col_cos) -> np.ndarray:
    """Scan.direction of an axial stack: columns = slice normal, row-index axis, column-index axis."""
    r, c = np.asarray(row_cos, float), np.asarray(col_cos, float)
    return np.column_stack([np.cross(r, c), c, r])


def _tilted(g: np.ndarray, tilt_deg: float) -> np.ndarray:
    """g turned by tilt_deg about an axis perpendicular to it."""
    e = np.eye(3)[int(np.argmin(np.abs(g)))]
    a = np.cross(g, e)
    a /= np.linalg.norm(a)
    t = math.radians(tilt_deg)
    return g * math.cos(t) + np.cross(a, g) * math.sin(t)


def cyst_hu(shape, spacing, direction, gravity_lps, *, radius=6.0, wall=1.0, level_mm=1.5, tilt_deg=0.0,
            background=40.0, seed=0, center=None):
    """A calcified cyst (wall 700 HU) with fluid (10 HU) over a calcium sediment (400 HU) whose
    interface lies `level_mm` below the centre along gravity, its normal `tilt_deg` from gravity;
    blurred (0.6 mm) with 10 HU noise, sampled on the grid ``direction @ (index * spacing)``."""
    spacing = np.asarray(spacing, float)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    centre = (np.asarray(shape) - 1) / 2 if center is None else np.asarray(center, float)
    x = ((idx - centre) * spacing) @ np.asarray(direction).T  # LPS mm from the cyst's centre
    g = np.asarray(gravity_lps, float)
    n = _tilted(g, tilt_deg)
    d = np.linalg.norm(x, axis=-1)
    hu = np.full(shape, background)
    hu[d < radius] = 700.0
    inner = d < radius - wall
    sediment = (x - level_mm * g) @ n > 0
    hu[inner & sediment] = 400.0
    hu[inner & ~sediment] = 10.0
    hu = ndimage.gaussian_filter(hu, 0.6 / spacing)
    return hu + np.random.default_rng(seed).normal(0.0, 10.0, shape)


def cyst_lesion(posture: str, tilt_deg: float = 0.0, spacing=(1.0, 0.6, 0.6), shape=(18, 28, 28)) -> Lesion:
    """The cyst as a CT `Lesion`, gravity expressed in array axes as the loader does."""
    _, (r, c), g_lps = POSTURES[posture]
    direction = _direction(r, c)
    hu = cyst_hu(shape, spacing, direction, g_lps, tilt_deg=tilt_deg)
    g_arr = np.linalg.solve(direction, np.asarray(g_lps))
    return Lesion(1, hu.astype(np.float32), hu >= 130, (0, 0, 0), spacing, np.zeros(3), direction, "ct",
                  gravity=g_arr / np.linalg.norm(g_arr))


# ---------------------------------------------------------------- CT, synthetic lesions

@pytest.mark.parametrize("posture", list(POSTURES))
def test_level_found_in_every_posture(posture):
    row = fluid_level_features(cyst_lesion(posture))
    assert set(COLUMNS) <= set(row)
    assert row["fluid_level"] == 1 and row["fluid_level_count"] == 1 and row["loculi_assessed"] == 1, row
    assert row["fluid_level_angle_deg"] < 5.0, row
    assert 300 < row["fluid_level_contrast_hu"] < 420, row  # 400 HU sediment over 10 HU fluid
    assert "not_assessed" not in row


@pytest.mark.parametrize("posture", ["supine", "left_decubitus", "oblique_supine"])
def test_interface_tilted_30_degrees_is_not_a_level(posture):
    les = cyst_lesion(posture, tilt_deg=30.0)
    row = fluid_level_features(les)
    assert row["fluid_level"] == 0 and row["fluid_level_count"] == 0, row
    assert math.isnan(row["fluid_level_angle_deg"])
    levels, tested = find_fluid_levels(les)
    assert tested == 1 and len(levels) == 1
    assert levels[0].angle_deg > 20.0, levels  # the plane is seen, well beyond 12 degrees
    assert "tilted" in levels[0].why_not


def test_wrong_gravity_is_not_a_level():
    """The supine cyst read as if the patient lay on the side: its level is parallel to gravity."""
    les = cyst_lesion("supine")
    les.gravity = np.array([0.0, 0.0, 1.0])
    assert fluid_level_features(les)["fluid_level"] == 0


def test_cyst_without_sediment_and_solid_nodule_have_no_level():
    direction = _direction(*AXIAL)
    shape, spacing = (18, 28, 28), (1.0, 0.6, 0.6)
    hu = cyst_hu(shape, spacing, direction, (0, 1, 0), level_mm=20.0)  # all fluid: a simple cyst
    les = Lesion(1, hu, hu >= 130, (0, 0, 0), spacing, np.zeros(3), direction, "ct", gravity=np.array([0, 1.0, 0]))
    row = fluid_level_features(les)
    assert row["fluid_level"] == 0 and row["loculi_assessed"] == 1, row  # tested, bowl-shaped floor
    solid = cyst_hu(shape, spacing, direction, (0, 1, 0), level_mm=-20.0)  # all sediment
    les = Lesion(1, solid, solid >= 130, (0, 0, 0), spacing, np.zeros(3), direction, "ct",
                 gravity=np.array([0, 1.0, 0]))
    row = fluid_level_features(les)
    assert row["fluid_level"] == 0 and row["loculi_assessed"] == 0, row


def test_gravity_unknown_is_empty_with_a_reason():
    les = cyst_lesion("supine")
    les.gravity = None
    les.context["gravity_source"] = "unknown: PatientPosition missing"
    row = fluid_level_features(les)
    assert all(math.isnan(row[c]) for c in COLUMNS)
    assert row["not_assessed"] == "fluid_level: gravity unknown (PatientPosition missing)"


# ---------------------------------------------------------------- CT, through real DICOM

@pytest.mark.parametrize("posture", list(POSTURES))
def test_level_through_dicom_load_and_segmentation(tmp_path, posture):
    code, (r, c), g_lps = POSTURES[posture]
    shape, spacing = (24, 40, 40), (1.0, 0.7, 0.7)
    direction = _direction(r, c)
    hu = cyst_hu(shape, spacing, direction, g_lps, seed=1)
    body = np.zeros(shape, bool)
    body[:, 3:-3, 3:-3] = True
    hu = np.where(body, hu, -1000.0)
    write_series(ct_slices(hu, spacing=spacing, row_cos=r, col_cos=c, patient_position=code), tmp_path)
    scan = load(discover(tmp_path).series[0])
    np.testing.assert_allclose(scan.gravity_lps, g_lps)
    rows = measure_scan(scan, Settings())
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["fluid_level"] == 1 and row["fluid_level_count"] == 1, row
    assert row["fluid_level_angle_deg"] < 5.0, row


# ---------------------------------------------------------------- radiographs

def lobule_image(gravity_rc, tilt_deg=0.0, radius=5.0, spacing=0.2, seed=0):
    """A projected cystic lobule (larger = denser): a bright rim, a lucent fluid region and a dense
    sediment below a straight level perpendicular to gravity (turned by tilt_deg)."""
    n = int(2 * radius / spacing) + 20
    y, x = (np.mgrid[:n, :n] - (n - 1) / 2) * spacing  # y along rows, x along columns (mm)
    g = np.asarray(gravity_rc, float)
    t = math.radians(tilt_deg)
    nrm = np.array([g[0] * math.cos(t) - g[1] * math.sin(t), g[0] * math.sin(t) + g[1] * math.cos(t)])
    d = np.hypot(y, x)
    chord = np.sqrt(np.clip(radius ** 2 - d ** 2, 0, None))  # path length through a ball
    inner = np.sqrt(np.clip((radius - 1.0) ** 2 - d ** 2, 0, None))
    sediment = (y * nrm[0] + x * nrm[1]) > 0.8
    img = 100.0 + 20.0 * (chord - inner) + np.where(sediment, 12.0, 2.0) * inner
    img = ndimage.gaussian_filter(img, 0.5)
    img += np.random.default_rng(seed).normal(0.0, 2.0, img.shape)
    mask = d < radius
    return Lesion(1, img, mask, (0, 0), (spacing, spacing), np.zeros(2), np.eye(2), "radiograph",
                  gravity=g / np.linalg.norm(g))


@pytest.mark.parametrize("gravity_rc", [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.6, 0.8)],
                         ids=["erect", "left_decubitus", "upside_down", "oblique"])
def test_radiograph_level(gravity_rc):
    row = fluid_level_features(lobule_image(gravity_rc))
    assert row["fluid_level"] == 1 and row["fluid_level_angle_deg"] < 5.0, row
    assert row["fluid_level_cnr"] >= 3 and math.isnan(row["fluid_level_contrast_hu"])
    assert math.isnan(row["loculi_assessed"])


def test_radiograph_level_tilted_30_degrees_is_not_a_level():
    assert fluid_level_features(lobule_image((1.0, 0.0), tilt_deg=30.0))["fluid_level"] == 0


def test_radiograph_level_needs_gravity_as_the_header_says():
    """An erect view's level runs across the rows; read with gravity along the columns (what a
    'down the screen' assumption gets wrong for a decubitus view) it is no level."""
    les = lobule_image((0.0, 1.0))  # decubitus: the level is vertical on the display
    assert fluid_level_features(les)["fluid_level"] == 1
    les.gravity = np.array([1.0, 0.0])
    assert fluid_level_features(les)["fluid_level"] == 0


def test_supine_ap_radiograph_is_not_assessable():
    les = lobule_image((1.0, 0.0))
    les.gravity = None
    les.context["gravity_source"] = ("PatientOrientationModifierCodeSequence 40199007 (supine); "
                                     "along the beam (in-plane fraction 0.00)")
    row = fluid_level_features(les)
    assert math.isnan(row["fluid_level"]) and math.isnan(row["fluid_level_count"])
    assert row["not_assessed"] == "fluid_level: gravity along the beam"
    les.context.clear()
    assert fluid_level_features(les)["not_assessed"] == "fluid_level: gravity unknown or along the beam"


# ---------------------------------------------------------------- phantoms

@pytest.fixture(scope="module")
def phantom_rows(tmp_path_factory):
    """(kind, view, truth lesion, row) for every lesion matched to its truth, test preset."""
    from calcimg.phantom import generate

    out = []
    folders = generate(tmp_path_factory.mktemp("fl_phantoms"), preset="test", seed=0)
    for series, t_series in truth_series(folders):
        scan = load(series)
        rows = measure_scan(scan, Settings(), segment_scan(scan, Settings()))
        key = "centroid_lps_mm" if scan.kind == "ct" else "centroid_image_mm"
        for t in t_series["lesions"]:
            cols = ["centroid_x_mm", "centroid_y_mm"] + (["centroid_z_mm"] if scan.kind == "ct" else [])
            d = [np.linalg.norm(np.array([r[c] for c in cols]) - np.asarray(t[key])) for r in rows]
            if d and min(d) <= max(2.0, t["max_diameter_mm"] / 4):
                out.append((scan.kind, t_series.get("view", t_series.get("posture")), t, rows[int(np.argmin(d))]))
    return out


def _rates(pairs):
    tp = sum(1 for t, r in pairs if t["fluid_level"] == 1 and r["fluid_level"] == 1)
    pos = sum(1 for t, _ in pairs if t["fluid_level"] == 1)
    tn = sum(1 for t, r in pairs if t["fluid_level"] == 0 and r["fluid_level"] == 0)
    neg = sum(1 for t, _ in pairs if t["fluid_level"] == 0)
    return tp, pos, tn, neg


def test_phantom_sensitivity_and_specificity(phantom_rows):
    """Lesion level: truth fluid_level 1/0 against ours, where both say it can be assessed.

    Test preset (seed 0): CT 5 of 5 cystic tumoral calcinoses found (the right-decubitus one,
    loculi of 3-4 mm radius merged through septa that its 2 mm slices do not resolve, only by the
    slice-by-slice pass), no false level in 21 mimics; radiographs (erect and left decubitus AP)
    2 of 2, none in the mimics. Seeds 0-5 (pooled in the slow test below): CT 29/30 (0.97), no
    false level in 120 mimics; radiographs 12/12, none in 16 mimics (10/12 before the 0.75 mm
    supernatant band: the erect views of seeds 4 and 5). The demo preset finds 4/4 on CT and 3/3
    on radiographs with no false level (37 and 23 mimics)."""
    for kind in ("ct", "radiograph"):
        pairs = [(t, r) for k, _, t, r in phantom_rows
                 if k == kind and t["fluid_level"] is not None and not math.isnan(r["fluid_level"])]
        tp, pos, tn, neg = _rates(pairs)
        print(f"{kind}: fluid-level sensitivity {tp}/{pos} = {tp / pos:.2f}, specificity {tn}/{neg} = {tn / neg:.2f}")
        assert pos >= 2 and neg >= 2
        assert tp / pos >= (0.95 if kind == "ct" else 1.0)
        assert tn / neg >= 0.98


def test_phantom_supine_ap_view_is_not_assessable(phantom_rows):
    supine = [r for k, view, _, r in phantom_rows if k == "radiograph" and view == "supine_ap"]
    assert supine
    for r in supine:
        assert math.isnan(r["fluid_level"])
        assert "fluid_level: gravity along the beam" in r["not_assessed"]


def test_phantom_level_angles(phantom_rows):
    """Levels found on the phantoms lie within the 12 degree limit, most within a few degrees (a
    level measured slice by slice in thick slices, from a 4 mm line, reads up to about 11)."""
    found = [r["fluid_level_angle_deg"] for _, _, _, r in phantom_rows if r["fluid_level"] == 1]
    assert found and max(found) < 12.0 and float(np.median(found)) < 3.0, found


@pytest.mark.parametrize("posture", list(POSTURES))
def test_interface_point_lies_on_the_true_level(posture):
    """Each level carries a point on its interface in patient mm (for drawing it): on the cyst's
    true interface plane, 1.5 mm below the centre along gravity, in every posture."""
    lesion = cyst_lesion(posture)
    levels, _ = find_fluid_levels(lesion)
    present = [lv for lv in levels if lv.present]
    assert len(present) == 1
    g = np.asarray(POSTURES[posture][2], float)
    centre = lesion.index_to_physical((np.asarray(lesion.image.shape) - 1) / 2)
    p = present[0].point_lps
    assert abs((p - centre) @ g - 1.5) < 0.5, (p, centre)
    assert np.linalg.norm(p - centre) < 5.0  # inside the 6 mm cyst, near its middle


@pytest.mark.parametrize("gravity_rc", [(1.0, 0.0), (0.0, 1.0), (0.6, 0.8)], ids=["erect", "decubitus", "oblique"])
def test_radiograph_interface_point_lies_on_the_level(gravity_rc):
    """A radiograph level carries a point on its line in image-plane mm, 0.8 mm below the
    lobule's centre along gravity (the level of `lobule_image`)."""
    lesion = lobule_image(gravity_rc)
    levels, _ = find_fluid_levels(lesion)
    present = [lv for lv in levels if lv.present]
    assert present
    g = np.asarray(gravity_rc, float) / np.linalg.norm(gravity_rc)
    centre = lesion.index_to_physical((np.asarray(lesion.image.shape) - 1) / 2)
    p = present[0].point_lps
    assert abs((p - centre) @ g - 0.8) < 0.5, (p, centre)
    assert np.linalg.norm(p - centre) < 4.0


def test_plane_fit_gives_no_tilt_along_an_axis_the_columns_do_not_span():
    """A pocket one slice thick: every column has the same slice coordinate, so the fit must not
    trade the intercept for a slope along it (least squares' minimum-norm answer does)."""
    from calcimg.features.fluid_level import _plane_fit

    y = np.arange(6.0)
    u = np.column_stack([np.full(6, 7.5), y])
    coef, inl = _plane_fit(u, 5.0 + 0.1 * y, tol=0.75)
    assert coef[1] == 0.0 and coef[2] == pytest.approx(0.1) and inl.all()
    assert coef[0] == pytest.approx(5.0)


@pytest.mark.slow
def test_ct_sensitivity_and_specificity_over_five_more_layouts(tmp_path_factory, phantom_rows):
    """Issue 7's targets (sensitivity >= 0.95, specificity >= 0.98). CT over the test preset's
    seeds 1-5 (seed 0 is above): 24 of 25 cystic tumoral calcinoses, no false level in 99 mimics
    when measured. Radiographs pooled over seeds 0-5 (seed 0 from `phantom_rows`): 12 of 12 erect
    and left decubitus views of the tumoral calcinoses, no false level in 16 mimics; the erect
    views of seeds 4 and 5 were missed with a 1.5 mm supernatant band only (`BANDS_ABOVE_MM`)."""
    from calcimg.phantom import generate

    counts = {"ct": [0, 0, 0, 0], "radiograph": [0, 0, 0, 0]}
    dx0 = [(t, r) for k, _, t, r in phantom_rows if k == "radiograph"
           and t["fluid_level"] is not None and not math.isnan(r["fluid_level"])]
    counts["radiograph"] = list(_rates(dx0))
    for seed in range(1, 6):
        root = generate(tmp_path_factory.mktemp(f"fl_seed{seed}"), preset="test", seed=seed)
        for series, t_series in truth_series(root):
            scan = load(series)
            rows = measure_scan(scan, Settings(), segment_scan(scan, Settings()))
            key = "centroid_lps_mm" if scan.kind == "ct" else "centroid_image_mm"
            cols = ["centroid_x_mm", "centroid_y_mm"] + (["centroid_z_mm"] if scan.kind == "ct" else [])
            for t in t_series["lesions"]:
                d = [np.linalg.norm(np.array([r[c] for c in cols]) - np.asarray(t[key])) for r in rows]
                if not d or min(d) > max(2.0, t["max_diameter_mm"] / 4) or t["fluid_level"] is None:
                    continue
                r = rows[int(np.argmin(d))]
                if math.isnan(r["fluid_level"]):
                    continue
                c = counts[scan.kind]
                if t["fluid_level"] == 1:
                    c[0] += r["fluid_level"] == 1
                    c[1] += 1
                else:
                    c[2] += r["fluid_level"] == 0
                    c[3] += 1
    for kind, (tp, pos, tn, neg) in counts.items():
        seeds = "1-5" if kind == "ct" else "0-5"
        print(f"{kind} seeds {seeds}: sensitivity {tp}/{pos}, specificity {tn}/{neg}")
    tp, pos, tn, neg = counts["ct"]
    assert pos >= 20 and neg >= 80
    assert tp / pos >= 0.95 and tn / neg >= 0.98
    tp, pos, tn, neg = counts["radiograph"]
    assert pos >= 10 and neg >= 12
    assert tp / pos >= 0.95 and tn == neg  # no false level on a radiograph mimic
