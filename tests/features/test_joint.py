"""Joint gaps and the nearest-joint distance: two-bone volumes with an analytic gap (CT and
radiograph), a hip phantom against its analytic geometry, the real chest CT."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

from calcimg.features import context_features
from calcimg.features.context import compartment, periarticular
from calcimg.io import discover, load
from calcimg.scan import Scan
from calcimg.segment import Segmentation, crop_lesions, segment_ct
from calcimg.segment import _joints as joints
from calcimg.segment._context import ScanContext
from calcimg.settings import Settings
from conftest import shared

# ---------------------------------------------------------------- two bars with a 5 mm gap
#
# Voxels of 1 mm. Two bone bars along z, facing each other across x: A ends at x = -0.5 mm, B
# starts at x = 4.5 mm (voxel faces), both over y in [-20.5, 20.5] mm. The gap, the non-bone
# points within 5 mm of both, is the 5 mm slab between them plus a lens beyond the bars' ends,
# widest on the midplane x = 2 mm, where it reaches sqrt(5^2 - 2.5^2) = 4.33 mm past y = 20.5.
GAP_TIP_Y = 20.5 + math.sqrt(5.0**2 - 2.5**2)
X0, Y0 = -30, -30  # world mm of index 0
BALLS = {  # lesion name: (centre x, centre y, radius) in mm
    "in_gap": (2.0, 0.0, 1.5),
    "near": (2.0, 40.0, 3.0),
    "mid": (2.0, 60.0, 3.0),
    "far": (2.0, 90.0, 3.0),
}


def _truth(name: str) -> float:
    """Distance (mm) from the ball's nearest voxel centre (on y) to the gap's tip."""
    _x, y, r = BALLS[name]
    return 0.0 if name == "in_gap" else (y - r) - GAP_TIP_Y


def _bars(ndim: int):
    """(image, bone mask, lesion masks) of the two bars and the balls, 3D (21 slices) or 2D."""
    shape = (21, 131, 66) if ndim == 3 else (131, 66)
    grids = np.indices(shape).astype(float)
    z = grids[0] - shape[0] // 2 if ndim == 3 else 0.0
    y, x = grids[-2] + Y0, grids[-1] + X0
    bone = ((x <= -1) | (x >= 5)) & (np.abs(y) <= 20) & (np.abs(x - 2) <= 30)
    img = np.where(bone, 1000.0, 40.0)
    masks = {}
    for name, (cx, cy, r) in BALLS.items():
        masks[name] = (x - cx) ** 2 + (y - cy) ** 2 + z**2 <= r * r
        img[masks[name]] = 800.0
    return img.astype(np.float32), bone, masks


def _segmentation(img, bone, masks) -> Segmentation:
    boxes, crops = [], []
    for m in masks.values():
        box = ndimage.find_objects(m.astype(np.uint8))[0]
        boxes.append(box)
        crops.append(m[box])
    steps = (3,) * img.ndim
    body = np.ones(tuple(-(-n // 3) for n in img.shape), bool)  # no air in view: all body, deep
    return Segmentation(labels=None, boxes=boxes, component_counts=[1] * len(boxes), bone=bone,
                        masks=crops, touches_bone=[False] * len(boxes), body_coarse=body,
                        body_steps=steps, shape=img.shape)


def _rows(img, bone, masks, kind, settings=None) -> dict:
    scan = Scan(img, (1.0,) * img.ndim, np.zeros(img.ndim), np.eye(img.ndim), kind)
    seg = _segmentation(img, bone, masks)
    return {name: context_features(les) for name, les in zip(masks, crop_lesions(scan, seg, settings=settings),
                                                                strict=True)}


@pytest.mark.parametrize("kind", ["ct", "radiograph"])
def test_two_bars_give_the_analytic_distance(kind):
    img, bone, masks = _bars(3 if kind == "ct" else 2)
    rows = _rows(img, bone, masks, kind)
    for name, row in rows.items():
        # the gap's border is sampled on a 2 mm grid: a cell (1 mm each side) of slack
        assert row["joint_distance_mm"] == pytest.approx(_truth(name), abs=1.5), (name, row)
    assert rows["in_gap"]["joint_distance_mm"] == 0.0
    assert [rows[n]["periarticular"] for n in ("near", "mid", "far")] == [1, 1, 0]  # 50 mm
    if kind == "ct":
        assert rows["in_gap"]["compartment"] == "intra_articular"
        assert rows["in_gap"]["periarticular"] == 0  # in the joint, not around it
        assert {rows[n]["compartment"] for n in ("near", "mid", "far")} == {"deep"}
    else:
        assert rows["in_gap"]["periarticular"] == 1 and "compartment" not in rows["in_gap"]


def test_settings_reach_the_columns():
    img, bone, masks = _bars(3)
    rows = _rows(img, bone, masks, "ct", Settings(periarticular_mm=20.0))
    assert rows["near"]["periarticular"] == 1 and rows["mid"]["periarticular"] == 0  # 12 and 32 mm
    # bones 5 mm apart are no joint when joints must be closer than 4 mm
    rows = _rows(img, bone, masks, "ct", Settings(joint_gap_mm=4.0))
    assert math.isnan(rows["near"]["joint_distance_mm"]) and math.isnan(rows["near"]["periarticular"])
    assert "joint_distance_mm, periarticular: no joint found" in rows["near"]["not_assessed"]
    assert rows["in_gap"]["compartment"] == "deep"
    for bad in ({"joint_gap_mm": 0.0}, {"periarticular_mm": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Settings(**bad)


def test_one_bone_is_no_joint():
    img, bone, masks = _bars(3)
    bone[..., 33:] = False  # only bar A
    rows = _rows(img, bone, masks, "ct")
    for row in rows.values():
        assert math.isnan(row["joint_distance_mm"])
        assert "no joint found: one bone" in row["not_assessed"]
    assert rows["near"]["compartment"] == "deep" and math.isnan(rows["near"]["periarticular"])


def test_a_joint_space_filled_in_the_bone_mask_is_reopened_by_hu():
    """Slice filling closes a narrow joint space in the bone mask: the HU (soft tissue) there
    still separates the bones."""
    img, bone, _masks = _bars(3)
    filled = bone.copy()
    filled[:, 25:36, 29:35] = True  # the gap closed over y in [-5, 5] mm
    scan = Scan(img, (1.0,) * 3, np.zeros(3), np.eye(3), "ct")
    gaps = joints.find_joint_gaps(scan, filled, Settings(), surface_hu=520.0)
    assert gaps.n_bones == 2 and gaps.pairs == [(1, 2)]
    assert gaps.inside(np.array([[10, 30, 32]]))[0]  # the midplane at y = 0 is still gap
    whole = joints.find_joint_gaps(scan, filled, Settings(threshold_hu=30.0), surface_hu=520.0)
    assert whole.n_bones == 1 and not whole.found  # by the mask alone: one bone


def test_slicewise_labelling_matches_the_reference():
    """The numba run splitter against scipy labelling, in 3D and slice by slice."""
    rng = np.random.default_rng(3)
    vol = (ndimage.gaussian_filter(rng.normal(size=(12, 40, 37)), 1.2) * 3000).astype(np.float32)
    bone = ndimage.gaussian_filter(rng.normal(size=vol.shape), 2.0) > -0.05
    scan = Scan(vol, (3.0, 1.0, 1.0), np.zeros(3), np.eye(3), "ct")
    for slicewise in (False, True):
        fast = joints._ct_bones(scan, bone, 130.0, 2, slicewise)
        mask = bone & (vol >= 130)
        if slicewise:
            mask[:, 0] = False
            ref = np.zeros(vol.shape, np.int32)
            for z in range(vol.shape[0]):
                lab, _ = ndimage.label(mask[z])
                ref[z] = np.where(lab > 0, lab + 1000 * z, 0)
        else:
            ref, _ = ndimage.label(mask)
        got = fast.label_volume()
        ids, counts = np.unique(ref[ref > 0], return_counts=True)
        assert fast.n == int((counts >= 2).sum()) > 10
        for i in ids[counts >= 2][:20]:  # each reference component is one label of ours, alone
            ours = np.unique(got[ref == i])
            assert ours.size == 1 and ours[0] > 0 and np.all(ref[got == ours[0]] == i)
        if slicewise:
            assert np.all(fast.bbox[:, 3] - fast.bbox[:, 0] == 1)  # one slice each


def test_compartment_and_periarticular_rules():
    assert compartment(float("nan"), float("nan"), intra_articular=True) == "intra_articular"
    assert periarticular(50.0, "deep", 50.0) == 1 and periarticular(50.1, "deep", 50.0) == 0
    assert math.isnan(periarticular(float("nan"), "deep")) and math.isnan(periarticular(3.0, ""))
    assert periarticular(float("nan"), "cutaneous") == 0


# ---------------------------------------------------------------- a hip phantom

@pytest.fixture(scope="module")
def hip():
    """An adult-size hip (the 3 mm joint space resolved at 1 mm voxels) with lesions around it,
    plus a deposit painted deep in the thigh far from the joint."""
    from calcimg.phantom import build_study
    from calcimg.phantom._ct import CTSpec

    spec = CTSpec("joint", "supine", shape=(150, 150, 150), spacing=(1.0, 1.0, 1.0), scale=1.0,
                  size=0.8, z_center=-20.0,
                  lesions=[("tumoral_calcinosis",), ("tumoral_calcinosis", {"variant": "solid"}),
                           ("calcific_tendinitis", {}, 2), ("phlebolith", {}, 2), ("lymph_node",)])
    st, _ = build_study(spec, seed=0, preset="joint-test")
    grid, an = st.grid, st.anatomy
    # the far deposit: the deep muscle point farthest from the joint gap in the lower half
    cand = grid.index_to_lps(np.argwhere(np.ones((1, 15, 15), bool)) * [1, 10, 10] + [20, 5, 5])
    ok = (an.bone_sdf(cand) > 12) & np.array([an.skin_depth(p) > 25 for p in cand])
    far = cand[ok][np.argmax([an.joint_distance(p[None]) for p in cand[ok]])]
    c = np.round(grid.lps_to_index(far)).astype(int)
    zz, yy, xx = np.ogrid[:150, :150, :150]
    ball = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 9
    hu = st.hu.copy()
    hu[ball] = 600.0
    scan = Scan(hu, grid.spacing, grid.origin, grid.direction, "ct")
    seg = segment_ct(scan, Settings())
    lesions = list(crop_lesions(scan, seg))
    rows = [context_features(les) for les in lesions]
    return SimpleNamespace(st=st, lesions=lesions, rows=rows, far=far)


def test_hip_joint_is_found_where_the_geometry_puts_it(hip):
    st, gaps = hip.st, hip.lesions[0].context["joint_gaps"]
    assert gaps.n_bones == 2 and gaps.pairs == [(1, 2)]  # femur and hip bone, one joint
    an, grid = st.anatomy, st.grid
    pts = grid.index_to_lps(gaps.cells * np.asarray(gaps.steps))
    femur, hip_bone = an.bones()
    d = np.maximum(*(np.min([p.fn(*pts.T) for p in parts], axis=0) for parts in (femur, hip_bone)))
    # every gap cell lies within 5 mm of both bones, give or take the 2 mm grid
    assert np.all(d <= 6.0) and np.median(d) < 3.5
    # and the joint space proper (the shell between head and socket) is found
    j = an.joints[0]
    r = np.linalg.norm(pts - j.center, axis=1)
    assert np.mean((r > j.head_r) & (r < j.cavity_r)) > 0.2
    assert st.truths[0].record["joint_distance_mm"] >= 0  # the truth carries the column


def _holds(lesion, index) -> bool:
    at = np.asarray(index) - np.asarray(lesion.offset)
    return bool(np.all(at >= 0) and np.all(at < lesion.mask.shape) and lesion.mask[tuple(at)])


def test_hip_lesion_distances_against_the_geometry(hip):
    st, lesions, rows, far = hip.st, hip.lesions, hip.rows, hip.far
    an, grid = st.anatomy, st.grid
    n_near, lines = 0, []
    for les, row in zip(lesions, rows, strict=True):
        lps = grid.index_to_lps(np.argwhere(les.mask) + np.asarray(les.offset))
        truth = an.joint_distance(lps)  # from the same voxels to the analytic gap
        lines.append(f"{row['joint_distance_mm']:.2f} / {truth:.2f}")
        # the grid's border sticks out by up to half a 2 mm cell, and the truth runs from voxel
        # centres of the 130 HU mask, calcimg from the half-maximum surface: 2 mm
        assert row["joint_distance_mm"] == pytest.approx(truth, abs=2.0), lines[-1]
        if truth < 45:
            n_near += 1
            assert row["periarticular"] == (1 if row["compartment"] == "deep" else 0), lines[-1]
    assert n_near >= 5
    # the far deposit: deep, more than 50 mm from the joint, not periarticular
    idx = np.round(st.grid.lps_to_index(far)).astype(int)
    (row,) = [r for les, r in zip(lesions, rows, strict=True) if _holds(les, idx)]
    assert an.joint_distance(far[None]) > 55
    assert row["compartment"] == "deep" and row["joint_distance_mm"] > 50 and row["periarticular"] == 0
    print("\n".join(lines))


def test_hip_tumoral_calcinosis_is_periarticular_against_truth(hip):
    st, lesions, rows = hip.st, hip.lesions, hip.rows
    centroids = [st.grid.index_to_lps((np.argwhere(les.mask) + np.asarray(les.offset)).mean(axis=0))
                 for les in lesions]
    seen = 0
    for t in st.truths:
        rec = t.record
        d = [np.linalg.norm(c - np.asarray(rec["centroid_lps_mm"])) for c in centroids]
        if min(d) > max(2.0, rec["max_diameter_mm"] / 4):
            continue
        row = rows[int(np.argmin(d))]
        # truth.json's value runs from the rasterised lesion; calcimg's lesion is the segmented
        # one (grouping, partial volume): 3 mm
        assert row["joint_distance_mm"] == pytest.approx(rec["joint_distance_mm"], abs=3.0), rec["pattern"]
        if rec["pattern"] == "tumoral_calcinosis":
            seen += 1
            assert row["periarticular"] == 1 and row["compartment"] == "deep"
    assert seen == 2


# ---------------------------------------------------------------- real data

def test_chest_ct_thick_slices_find_joints_slice_by_slice():
    """8 mm slices: the whole skeleton touches from slice to slice, so bones are taken per slice;
    what is found must be narrow soft-tissue clefts between two bones (costotransverse and
    costovertebral regions, ribs crossing)."""
    folder = shared("ct_chest_tcia_a0002")
    scan = load(discover(folder).series[0])
    seg = segment_ct(scan, Settings())
    ctx = ScanContext(scan, seg)
    gaps = ctx.joint_gaps
    assert gaps.found and len(gaps.pairs) >= 3, gaps
    whole = joints.find_joint_gaps(scan, seg.bone, Settings(bone_split_max_slice_mm=10.0), ctx.bone_surface_hu)
    assert not whole.found and whole.n_bones < 10  # in 3D: one skeleton
    idx = gaps.cells * np.asarray(gaps.steps)
    hu = scan.pixels[tuple(idx.T)]
    assert np.median(hu) < 200  # soft tissue between bones, not bone
    to_bone = ndimage.distance_transform_edt(~seg.bone, sampling=scan.spacing)
    assert np.all(to_bone[tuple(idx.T)] <= 7.0)
    rows = [context_features(les) for les in crop_lesions(scan, seg)]
    assert rows and all(r["joint_distance_mm"] >= 0 for r in rows)


def test_unknown_pixel_spacing_and_no_bone_mask_give_reasons():
    img, bone, _masks = _bars(2)
    nan = Scan(img, (float("nan"),) * 2, np.zeros(2), np.eye(2), "radiograph")
    gaps = joints.find_joint_gaps(nan, bone)
    assert not gaps.found and "spacing unknown" in gaps.reason
    assert math.isnan(gaps.distance_mm(np.array([[3, 4]]))) and not gaps.inside(np.array([[3, 4]])).any()
    scan = Scan(img, (1.0, 1.0), np.zeros(2), np.eye(2), "radiograph")
    assert joints.find_joint_gaps(scan, None).reason == "no bone mask"
