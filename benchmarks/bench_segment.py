"""Segmentation core against the memory-bandwidth floor and peer libraries, in one process.

Run: ``python benchmarks/bench_segment.py [--data DIR] [--repeats 5]``

Uses the phantom ``bench`` preset (one 512 x 512 x 400 CT with about 200 lesions), generated into
a temporary folder unless ``--data`` names one that holds it. Prints the median of the runs
after one warm-up, each as a ratio to (a):

(a) the floor: one streaming pass, ``np.greater_equal(vol, 130, out=mask)`` plus a sum;
(b) peers: scipy.ndimage.label, skimage.measure.label, SimpleITK ConnectedComponent and
    cc3d.connected_components on the thresholded volume, each plus per-label count/bbox/max;
(c) calcimg's threshold + label + per-component statistics (``label_runs``);
(d) calcimg's full segmentation (``segment_ct``: body, metal, bone, grouping);
and the peak memory of (d) over the volume's bytes (tracemalloc, numpy allocations).

The last line is exactly ``core_ratio=<(c)/(a)> full_seconds=<(d)> peak_mem_ratio=<peak/volume>``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up (JIT, page faults, caches)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="folder with the bench phantom (generated if missing)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-slow-peers", action="store_true", help="leave out scipy and skimage")
    args = parser.parse_args()

    from calcimg.io import discover, load
    from calcimg.phantom import generate
    from calcimg.segment import label_runs, segment_ct
    from calcimg.settings import Settings

    tmp = None
    data = args.data
    if data is None or not any(data.rglob("truth.json")):
        tmp = Path(tempfile.mkdtemp(prefix="calcimg-bench-seg-"))
        data = tmp
        t = time.perf_counter()
        generate(data, preset="bench", seed=0)
        print(f"generated the bench phantom in {time.perf_counter() - t:.1f} s")
    try:
        scan = load(next(s for s in discover(data).series if s.kind == "ct"))
        vol = scan.pixels
        print(f"volume {vol.shape} {vol.dtype}, {vol.nbytes / 2**20:.0f} MiB, spacing {scan.spacing}")
        settings = Settings()
        mask = np.empty(vol.shape, bool)

        def floor():
            np.greater_equal(vol, 130, out=mask)
            return int(mask.sum())

        def stats(labels, n):
            counts = np.bincount(labels.ravel(), minlength=n + 1)
            from scipy import ndimage

            return counts, ndimage.find_objects(labels)

        def scipy_label():
            from scipy import ndimage

            np.greater_equal(vol, 130, out=mask)
            lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
            return stats(lab, n)

        def skimage_label():
            from skimage.measure import label

            np.greater_equal(vol, 130, out=mask)
            lab, n = label(mask, connectivity=3, return_num=True)
            return stats(lab, n)

        def sitk_label():
            import SimpleITK as sitk

            img = sitk.GetImageFromArray(vol)
            cc = sitk.ConnectedComponent(sitk.BinaryThreshold(img, 130, 32767), True)
            ls = sitk.LabelShapeStatisticsImageFilter()
            ls.ComputePerimeterOff()
            ls.Execute(cc)
            return ls.GetNumberOfLabels()

        def cc3d_label():
            import cc3d

            np.greater_equal(vol, 130, out=mask)
            lab, n = cc3d.connected_components(mask, connectivity=26, return_N=True)
            return stats(lab, n)

        def core():
            return label_runs(vol, settings.threshold_hu, connectivity=26)

        def full():
            return segment_ct(scan, settings)

        rows = [("(a) floor: threshold + sum", floor)]
        if not args.skip_slow_peers:
            rows += [("(b) scipy label + stats", scipy_label), ("(b) skimage label + stats", skimage_label)]
        rows += [
            ("(b) SimpleITK CC + shape stats", sitk_label),
            ("(b) cc3d + stats", cc3d_label),
            ("(c) calcimg label_runs", core),
            ("(d) calcimg segment_ct (full)", full),
        ]
        results, mins = {}, {}
        for name, fn in rows:
            med, best = timed(fn, args.repeats)
            results[name] = med
            mins[name] = best
        base = results["(a) floor: threshold + sum"]
        print(f"\n{'step':36s} {'median s':>9s} {'min s':>7s} {'x floor':>8s}")
        for name, med in results.items():
            print(f"{name:36s} {med:9.3f} {mins[name]:7.3f} {med / base:8.1f}")
        seg = full()
        print(f"\nsegment_ct: {seg.n_lesions} lesions; flags: {seg.flags}")

        tracemalloc.start()
        full()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        core_ratio = results["(c) calcimg label_runs"] / base
        full_s = results["(d) calcimg segment_ct (full)"]
        print(f"core_ratio={core_ratio:.2f} full_seconds={full_s:.3f} peak_mem_ratio={peak / vol.nbytes:.2f}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
