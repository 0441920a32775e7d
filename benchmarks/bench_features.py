"""Per-lesion features against a PyRadiomics-style baseline, in one process.

Run: ``python benchmarks/bench_features.py [--data DIR] [--repeats 3] [--baseline-labels 6]``

Uses the phantom ``bench`` preset (one 512 x 512 x 400 CT with about 200 lesions), generated into a
temporary folder unless ``--data`` names a folder that holds it. `segment_ct` runs once (not timed
here: see bench_segment.py); then, timed, in rounds that alternate (a) and (b) so that a change in
the machine's load hits both alike (medians over the rounds):

(a) calcimg: `crop_lesions` with the scan context plus the features of issue 6,
    ``lesion_features(lesion, BASIC_FAMILIES)`` (size, intensity and rim-to-core profile, bone
    gap, skin depth, compartment, ossification, IBSI morphology), for every lesion: crops, so the
    cost follows the lesion's size;
(b) the baseline, what PyRadiomics does: one whole-volume pass per label. For each label, the
    label's mask on the full volume (``labels == i``) and scikit-image ``regionprops`` on it with
    the HU image (area, centroid, bounding box, mean/max intensity, which scan the full volume),
    then the bone distance read off a full-grid distance transform of the bone mask (computed
    once and shared, untimed, which favours the baseline), then the same features on the lesion's
    crop (PyRadiomics computes its features on the bounding-box crop after those whole-volume
    passes; crops and context are made untimed, favouring the baseline again). The baseline is
    timed on ``--baseline-labels`` labels spread over the size range and extrapolated to all
    labels (the output says so): the full run would take minutes.

Also printed, not part of the ratio: the full row (`lesion_features` with every family, the shape
descriptors of issue 7 included) and the cost of each family (issue 7's target: all descriptors
< 10 s on 2 cores). Everything runs on one core; the load average printed with the results says how
busy the machine was (other processes share the cores).

Prints lesions per second for both and their ratio; the last line is exactly
``lesions_per_s=<calcimg> ratio_vs_baseline=<ratio>``. Target: ratio >= 100 and all lesions in
under 2 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="folder with the bench phantom (generated if missing)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-labels", type=int, default=6)
    args = parser.parse_args()

    from scipy import ndimage
    from skimage.measure import regionprops

    from calcimg.features import lesion_features
    from calcimg.io import discover, load
    from calcimg.phantom import generate
    from calcimg.segment import crop_lesions, segment_ct
    from calcimg.settings import Settings

    tmp = None
    data = args.data
    if data is None or not any(Path(data).rglob("truth.json")):
        tmp = Path(tempfile.mkdtemp(prefix="calcimg-bench-feat-"))
        data = tmp
        t = time.perf_counter()
        generate(data, preset="bench", seed=0)
        print(f"generated the bench phantom in {time.perf_counter() - t:.1f} s ({data})")
    try:
        found = discover(data)
        series = next(s for s in found.series if s.kind == "ct")
        scan = load(series)
        t = time.perf_counter()
        seg = segment_ct(scan, Settings())
        n = seg.n_lesions
        print(f"scan {scan.shape} spacing {tuple(round(s, 3) for s in scan.spacing)}; segment_ct "
              f"{time.perf_counter() - t:.2f} s (not counted); {n} lesions; cores available: "
              f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}")

        from calcimg.features import BASIC_FAMILIES, FAMILIES
        from calcimg.features._shape import CACHE_KEY, shape_of

        def calcimg_all(families=BASIC_FAMILIES):
            return [lesion_features(les, families) for les in crop_lesions(scan, seg)]

        sizes = np.array([m.sum() for m in seg.masks])
        order = np.argsort(sizes)
        k = min(args.baseline_labels, n)
        picks = [int(order[i]) + 1 for i in np.linspace(0, n - 1, k).round().astype(int)]
        bone_dist = ndimage.distance_transform_edt(~seg.bone, sampling=scan.spacing)  # shared, untimed
        hu = scan.pixels
        lesions = {les.lesion_id: les for les in crop_lesions(scan, seg)}

        def baseline_picks():
            for lid in picks:
                full = (seg.labels == lid).astype(np.uint8)  # one whole-volume pass per label
                props = regionprops(full, intensity_image=hu, spacing=scan.spacing)[0]
                _ = (props.area, props.centroid, props.bbox, props.intensity_mean, props.intensity_max)
                _ = float(bone_dist[full.astype(bool)].min())
                lesion_features(lesions[lid], BASIC_FAMILIES)  # then the features on the crop, as PyRadiomics does

        rows = calcimg_all()  # warm-up (imports, compiled kernels, caches, page faults)
        assert len(rows) == n
        baseline_picks()
        times, base_times = [], []
        for _ in range(args.repeats):  # alternate, so a change in load hits both alike
            t = time.perf_counter()
            calcimg_all()
            times.append(time.perf_counter() - t)
            t = time.perf_counter()
            baseline_picks()
            base_times.append((time.perf_counter() - t) / k)
        ours = statistics.median(times)
        per_label = statistics.median(base_times)
        base_total = per_label * n
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

        full_times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            calcimg_all(FAMILIES)
            full_times.append(time.perf_counter() - t)

        # per-family cost (issue 7: the shape descriptors, all lesions < 10 s on 2 cores)
        crops = list(crop_lesions(scan, seg))
        t = time.perf_counter()
        for les in crops:
            shape_of(les)
        family_s = {"_shape (isotropic envelope, shared)": time.perf_counter() - t}
        for family in FAMILIES:
            t = time.perf_counter()
            for les in crops:
                family(les)
            family_s[family.__name__] = time.perf_counter() - t
        for les in crops:
            les.context.pop(CACHE_KEY, None)
            les.context.pop("_envelope_depth", None)
        for name, sec in family_s.items():
            print(f"  {name:40s} {sec:6.3f} s  ({1000 * sec / max(n, 1):5.2f} ms/lesion)")
        descriptors = sum(v for k_, v in family_s.items() if k_.startswith(("_shape", "lobulation", "septation",
                                                                              "linearity", "rim", "fluid")))
        print(f"shape descriptors (lobulation, septation, linearity, rim{', fluid level' if any(k_.startswith('fluid') for k_ in family_s) else ''}): "
              f"{descriptors:.2f} s for {n} lesions -> {'met' if descriptors < 10 else 'NOT met'} (target < 10 s)")
        print(f"full row (crop_lesions + every family, descriptors included): {statistics.median(full_times):.3f} s "
              f"for {n} lesions (median of {args.repeats}, min {min(full_times):.3f} s)")

        ours_rate, base_rate = n / ours, n / base_total
        print(f"calcimg:  {ours:.3f} s for {n} lesions, crop_lesions + issue-6 features (median of {args.repeats}, "
              f"min {min(times):.3f} s) = {ours_rate:.1f} lesions/s; load average {load:.2f} on "
              f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} cores")
        print(f"baseline: {per_label:.3f} s per label (median of {args.repeats}), timed on {k} labels spread over "
              f"the size range and extrapolated to {n}: {base_total:.1f} s = {base_rate:.3f} lesions/s")
        print(f"target: ratio >= 100 and {n} lesions < 2 s: ratio {ours_rate / base_rate:.0f}, "
              f"{ours:.2f} s -> {'met' if ours_rate / base_rate >= 100 and ours < 2 else 'NOT met'}")
        print(f"lesions_per_s={ours_rate:.1f} ratio_vs_baseline={ours_rate / base_rate:.1f}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
