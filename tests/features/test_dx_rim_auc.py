"""Rim smoothness on radiographs: hydatid cysts against calcified lymph nodes (issue 7).

Target: AUC of ``rim_smoothness`` (hydatid cyst positive, calcified lymph node negative) >= 0.95
on radiographs as on CT. The presets' radiograph studies hold no hydatid cyst or lymph node
(test_descriptor_auc.py measures what they hold; the presets stay as they are), so this module
builds its own study in memory with the phantom machinery: a two-view hip series, erect AP
(MONOCHROME2, 12 bits) and erect lateral (MONOCHROME1, 16 bits), 768 x 768 at 0.18 mm with the
demo's anatomy scale, holding four hydatid cysts and three calcified lymph nodes, for four seeds.
Each view is written as DX DICOM by the phantom's writer, read back by `calcimg.io`, segmented and
measured by `calcimg.pipeline.measure_scan` (crops, every feature, the criteria), and matched to
the truth by centroid within max(2 mm, a quarter of the truth's diameter), as in
test_descriptor_auc.py.

What is asserted is the descriptor on the lesions the image shows whole. Two truth-based
exclusions (both decided from the phantom's truth, before any measurement), each about what a
single projection can show, not about the descriptor:

* superimposed: the lesion's footprint (pixels whose ray crosses >= 0.5 mm of calcium) comes
  within ``dx_group_gap_mm`` (2 mm) of another lesion's. The layout keeps lesions 4 mm apart in
  3D, but in projection two cysts, or the nodes of one station, overlap or abut; the segmentation
  reports one object (it groups components closer than 2 mm) whose outline belongs to neither.
* over bone: the footprint reaches pixels whose ray crosses >= 1 mm of bone (truth
  ``bone_distance_mm`` == 0). The radiograph segmentation finds over bone only compact deposits
  (its documented limitation), so a cyst's shell across a cortex comes back as the crescent
  outside the bone, and a crescent is rough by any measure.

The AUC over every matched lesion (the pipeline-level number, exclusions kept) is printed, not
asserted (measured 0.65-0.68): it falls short because of those segmentation limits, not because of
the descriptor (the table's ``cover``: the share of the footprint the matched lesion covers;
``purity``: the share of the lesion on or within 1 mm of that footprint).

Lesion size 0.65 (the test preset's 0.65-0.7; the demo's is 1.0): hydatid cysts 12-21 mm across.
At the demo's size they are 18-32 mm, and a round object larger than ``dx_bone_min_area_mm2``
(400 mm2, 23 mm across) with a bright rim is taken for bone by the segmentation (documented in
`calcimg.segment._radiograph`), so most would never be lesions. Lymph nodes are mostly missed in
the AP view, where the nodal station projects onto the edge-on iliac plate; the lateral view
shows them clear of bone.

Run as a script (``python tests/features/test_dx_rim_auc.py [seed ...]``) for the table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

import calcimg.phantom._radiograph as phantom_dx
from calcimg.io import discover, load
from calcimg.phantom import build_study
from calcimg.phantom._dicom import uid, write_dx
from calcimg.phantom._presets import AP
from calcimg.phantom._radiograph import DXSpec, DXView
from calcimg.pipeline import measure_scan, segment_scan
from calcimg.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_descriptor_auc import auc  # the same Mann-Whitney AUC, ties counted half

PRESET = "dx_rim_auc"  # only seeds the random streams (calcimg.phantom._study._rng)
SEEDS = (0, 1, 2, 3)
POSITIVE, NEGATIVE = "hydatid_cyst", "lymph_node"
MIN_PER_CLASS = 6
SPEC = DXSpec(
    "dx_rim_auc",
    [DXView("erect_ap", "erect", AP, ("L", "F"), "AP", "MONOCHROME2", 12),
     DXView("erect_lateral", "erect", (1, 0, 0), ("P", "F"), "LL", "MONOCHROME1", 16)],
    shape=(768, 768), scale=0.55, size=0.65,
    lesions=[(POSITIVE, {}, 4), (NEGATIVE, {}, 3)],
    description="rim smoothness on radiographs: hydatid cysts and calcified lymph nodes",
)


def build_views(seed: int):
    """The study's views in memory: ``[(view, info, footprints), ...]``, ``footprints`` one
    boolean mask per truth lesion, the pixels `_record` measures the truth's area and centroid on
    (kept by wrapping it, as tests/segment/test_radiograph_segment.py does, and checked against
    the recorded area and centroid)."""
    record = phantom_dx._record
    feet: list = []

    def keep_footprint(les, sl, path, *args):
        r, c = np.nonzero(phantom_dx.footprint(path))
        feet.append((r + sl[1].start, c + sl[2].start))
        return record(les, sl, path, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(phantom_dx, "_record", keep_footprint)
        (_, built), _ = build_study(SPEC, seed=seed, preset=PRESET)
    out = []
    for view, info in built:  # views are projected in order, each recording its lesions in order
        px = float(info["spacing"])
        n = len(info["lesions"])
        masks = []
        for (r, c), lesion in zip(feet[:n], info["lesions"], strict=True):
            assert abs(r.size * px * px - lesion["area_mm2"]) < 0.01
            assert np.allclose([c.mean() * px, r.mean() * px], lesion["centroid_image_mm"], atol=1e-2)
            m = np.zeros(view.pixels.shape, bool)
            m[r, c] = True
            masks.append(m)
        del feet[:n]
        out.append((view, info, masks))
    return out


def _within(mask: np.ndarray, spacing: float, mm: float) -> np.ndarray:
    """Pixels within `mm` of `mask` (its box grown by `mm`, for speed: an EDT of the whole view
    per lesion costs seconds over the module)."""
    grow = int(np.ceil(mm / spacing)) + 1
    box = tuple(slice(max(b.start - grow, 0), b.stop + grow) for b in ndi.find_objects(mask.astype(np.uint8))[0])
    out = np.zeros(mask.shape, bool)
    out[box] = ndi.distance_transform_edt(~mask[box], sampling=spacing) <= mm
    return out


def superimposed(masks, spacing: float, gap_mm: float) -> list[bool]:
    """Per truth lesion: its footprint lies within `gap_mm` of another lesion's footprint."""
    near = [_within(m, spacing, gap_mm) for m in masks]
    return [any((near[i] & o).any() for j, o in enumerate(masks) if j != i) for i in range(len(masks))]


def measure_seed(seed: int, folder: Path, settings: Settings) -> list[dict]:
    """One row per truth lesion per view: pattern, truth size, the two exclusions, matched or
    not, and the matched lesion's rim columns with its cover and purity."""
    rows = []
    for k, (view, info, masks) in enumerate(build_views(seed), 1):
        ids = {"patient_name": "PHANTOM^RIM", "patient_id": f"PHANTOM-RIM-{seed:03d}",
               "study_uid": uid(PRESET, seed, "study"), "series_uid": uid(PRESET, seed, "series", view.name),
               "frame_uid": uid(PRESET, seed, "frame"), "version": "test", "series_number": k,
               "series_description": view.name}
        where = folder / f"seed{seed}_{view.name}"
        write_dx(view, SPEC, where, ids, np.random.default_rng(seed))
        (series,) = discover(where).series
        scan = load(series)
        assert scan.kind == "radiograph"
        assert np.allclose(scan.spacing[-2:], info["spacing"], rtol=1e-4)
        seg = segment_scan(scan, settings)
        found = measure_scan(scan, settings, seg)
        labels = seg.labels.reshape(view.pixels.shape)
        cents = np.array([[r["centroid_x_mm"], r["centroid_y_mm"]] for r in found]).reshape(-1, 2)
        over = superimposed(masks, info["spacing"], settings.dx_group_gap_mm)
        for tl, sup, foot in zip(info["lesions"], over, masks, strict=True):
            row = {"seed": seed, "view": view.name, "pattern": tl["pattern"],
                   "diameter_mm": tl["max_diameter_mm"], "superimposed": sup,
                   "over_bone": tl["bone_distance_mm"] == 0, "matched": False}
            row["whole"] = not (row["superimposed"] or row["over_bone"])
            if len(cents):
                d = np.linalg.norm(cents - np.asarray(tl["centroid_image_mm"]), axis=1)
                i = int(np.argmin(d))
                row["distance_mm"] = float(d[i])
                if d[i] <= max(2.0, tl["max_diameter_mm"] / 4):
                    row["matched"] = True
                    row.update({c: found[i][c] for c in ("lesion_id", "rim_smoothness", "rim_roughness_rel",
                                                         "rim_curvature_energy")})
                    label = labels == found[i]["lesion_id"]
                    row["cover"] = float(label[foot].mean())
                    row["purity"] = float(_within(foot, info["spacing"], 1.0)[label].mean())
            rows.append(row)
    return rows


def rim_auc(rows, whole_only: bool = True):
    """(AUC, hydatid values, lymph node values) over matched lesions with a rim_smoothness,
    only those the image shows whole unless `whole_only` is False."""
    def values(pattern):
        return [r["rim_smoothness"] for r in rows
                if r["pattern"] == pattern and r["matched"] and np.isfinite(r["rim_smoothness"])
                and (r["whole"] or not whole_only)]

    pos, neg = values(POSITIVE), values(NEGATIVE)
    return auc(pos, neg), pos, neg


def print_table(rows) -> None:
    print(f"\n{'seed':>4s} {'view':14s} {'pattern':13s} {'D mm':>5s} {'superimp':>8s} {'on bone':>7s} "
          f"{'match':>11s} {'cover':>5s} {'purity':>6s} {'smooth':>6s} {'rough_rel':>9s} {'curv_E':>6s}")
    for r in rows:
        match = "yes" if r["matched"] else f"no ({r.get('distance_mm', np.nan):.0f} mm)"
        vals = (f"{r['cover']:5.2f} {r['purity']:6.2f} {r['rim_smoothness']:6.3f} "
                f"{r['rim_roughness_rel']:9.3f} {r['rim_curvature_energy']:6.2f}" if r["matched"] else "")
        print(f"{r['seed']:4d} {r['view']:14s} {r['pattern']:13s} {r['diameter_mm']:5.1f} "
              f"{'yes' if r['superimposed'] else '':>8s} {'yes' if r['over_bone'] else '':>7s} "
              f"{match:>11s} {vals}")
    for whole_only in (True, False):
        value, pos, neg = rim_auc(rows, whole_only)
        what = "lesions shown whole" if whole_only else "every matched lesion"
        summary = (f"; hydatid median {np.median(pos):.3f} (min {min(pos):.3f}), lymph node median "
                   f"{np.median(neg):.3f} (max {max(neg):.3f})" if pos and neg else "")
        print(f"AUC radiograph rim_smoothness, {what}: {value:.3f} ({len(pos)} hydatid cysts vs "
              f"{len(neg)} lymph nodes){summary}")


@pytest.fixture(scope="module")
def rim_rows(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dx_rim_auc")
    t0 = time.perf_counter()
    rows = [row for seed in SEEDS for row in measure_seed(seed, folder, Settings())]
    print(f"\n{len(SEEDS)} seeds x {len(SPEC.views)} views built, written, read and measured in "
          f"{time.perf_counter() - t0:.1f} s")
    print_table(rows)
    return rows


def test_rim_smoothness_auc_on_radiographs(rim_rows):
    """Hydatid cysts against calcified lymph nodes, lesions the image shows whole: AUC >= 0.95."""
    value, pos, neg = rim_auc(rim_rows)
    assert len(pos) >= MIN_PER_CLASS and len(neg) >= MIN_PER_CLASS, (len(pos), len(neg))
    assert value >= 0.95, value


if __name__ == "__main__":
    import tempfile

    seeds = tuple(int(a) for a in sys.argv[1:]) or SEEDS
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        table = [row for seed in seeds for row in measure_seed(seed, Path(tmp), Settings())]
        print_table(table)
        print(f"{time.perf_counter() - t0:.1f} s")
