"""Benchmark: load a CT series from a folder into an int16 HU volume.

What it measures
----------------
It writes one synthetic CT series with pydicom (by default 400 slices of 512 x 512, CT Image
Storage, uncompressed Explicit VR Little Endian, uint16 with BitsStored 12, RescaleIntercept
-1024, a noisy body phantom, shuffled random file names so that file order is not slice order),
then times, in the same process and with a warm page cache, four ways of going from the folder to
a volume sorted along the slice normal:

(a) plain pydicom, one thread: ``dcmread`` + ``pixel_array`` for every file, sort by
    ImagePositionPatient projected on the slice normal, ``np.stack``, rescale to int16 HU;
(b) the same with a ``ThreadPoolExecutor(2)``;
(c) SimpleITK: ``ImageSeriesReader.GetGDCMSeriesFileNames`` + ``Execute`` + ``GetArrayFromImage``;
(d) calcimg: ``discover(folder)`` + ``load(found.series[0])`` (also reported separately).

Each method runs once to warm up, then ``--repeats`` times (rounds interleaving the methods); the
table gives the median and the minimum. (a), (c) and (d) must give identical int16 arrays (checked with ``np.array_equal`` after
aligning SimpleITK's slice order by position).

The target (project issue on loading speed) is <= 0.6 s for 400 slices on 2 cores.

Run
---
::

    .venv/bin/python benchmarks/bench_load.py                 # 400 slices, 5 repeats, temp dir
    .venv/bin/python benchmarks/bench_load.py --slices 100 --repeats 3
    .venv/bin/python benchmarks/bench_load.py --data /tmp/ct400  # write once, reuse next time

The last line printed is exactly
``load_seconds=<calcimg median> ratio_vs_pydicom=<calcimg median / pydicom (a) median>``.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from calcimg.io import discover, load

ROWS = COLS = 512
PIXEL_MM = 0.7
SLICE_MM = 1.0
INTERCEPT = -1024
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


# ------------------------------------------------------------------------------ test data ---


def _phantom_slices(n: int, seed: int = 0):
    """Yield (index, uint16 stored values) for a noisy elliptical body phantom, slice by slice.

    Stored value = HU + 1024, clipped to 0..4095 (12 bits). Outside the reconstruction circle the
    stored value is 0 (-1024 HU), as scanners write it.
    """
    rng = np.random.default_rng(seed)
    half = (np.arange(ROWS, dtype=np.float32) - (ROWS - 1) / 2) * PIXEL_MM
    y2 = (half**2)[:, None]  # mm^2, rows = y (anterior -> posterior)
    x2 = (half**2)[None, :]
    y, x = half[:, None], half[None, :]
    fov = (x2 + y2) <= (ROWS * PIXEL_MM / 2) ** 2
    spine = ((x2 + (y - 70) ** 2) <= 15**2) & ~((x2 + (y - 70) ** 2) <= 9**2)
    aorta = (x - 20) ** 2 + (y - 40) ** 2 <= 12**2
    lung_l = ((x - 65) / 45) ** 2 + ((y + 5) / 60) ** 2
    lung_r = ((x + 65) / 45) ** 2 + ((y + 5) / 60) ** 2
    # a small bank of noise images (sigma 12 HU), rolled per slice: cheap and not repeating exactly
    noise = rng.normal(0.0, 12.0, size=(8, ROWS, COLS)).astype(np.int16)
    spots = rng.uniform(-1.0, 1.0, size=(n, 2)) * 8.0  # calcified plaque offsets in the aorta wall

    for k in range(n):
        t = k / max(1, n - 1)
        scale = 0.88 + 0.12 * np.sin(np.pi * t)  # the body widens towards the middle
        a, b = 150.0 * scale, 105.0 * scale
        body_r = x2 / a**2 + y2 / b**2
        hu = np.full((ROWS, COLS), -1000, dtype=np.int16)
        hu[body_r <= 1.0] = -100  # subcutaneous fat
        hu[body_r <= 0.85] = 40  # soft tissue
        if t > 0.55:  # the chest: lungs in the upper slices
            hu[(lung_l <= 1.0) | (lung_r <= 1.0)] = -850
        hu[aorta] = 45
        hu[spine] = 700
        if k % 7 < 3:  # calcifications on some slices
            cx, cy = 20 + spots[k, 0], 40 + spots[k, 1]
            hu[(x - cx) ** 2 + (y - cy) ** 2 <= 2.0**2] = 900 + 60 * (k % 5)
        hu += np.roll(noise[k % 8], shift=(k * 37) % ROWS, axis=1)
        stored = np.clip(hu.astype(np.int32) - INTERCEPT, 0, 4095).astype(np.uint16)
        stored[~fov] = 0
        yield k, stored


def _template(study_uid: str, series_uid: str, frame_uid: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Modality = "CT"
    ds.Manufacturer = "calcimg-bench"
    ds.PatientName = "Bench^Phantom"
    ds.PatientID = "BENCH0001"
    ds.StudyDate = ds.SeriesDate = "20240101"
    ds.StudyTime = ds.SeriesTime = "120000"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 2
    ds.PatientPosition = "HFS"
    ds.KVP = "120"
    ds.ConvolutionKernel = "STANDARD"
    ds.SliceThickness = f"{SLICE_MM:.1f}"
    ds.PixelSpacing = [f"{PIXEL_MM:.1f}", f"{PIXEL_MM:.1f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = ROWS, COLS
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = str(INTERCEPT)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    return ds


def write_series(folder: Path, n: int, seed: int = 0) -> None:
    """Write an `n`-slice CT series into `folder`, with shuffled random file names."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = _template(generate_uid(), generate_uid(), generate_uid())
    x0 = -(COLS - 1) / 2 * PIXEL_MM
    y0 = -(ROWS - 1) / 2 * PIXEL_MM
    z0 = -(n - 1) / 2 * SLICE_MM
    rng = random.Random(seed)
    names = [uuid.UUID(int=rng.getrandbits(128)).hex[:20] for _ in range(n)]
    assert len(set(names)) == n
    rng.shuffle(names)
    for k, stored in _phantom_slices(n, seed):
        z = z0 + k * SLICE_MM
        sop_uid = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = n - k  # numbered from the head down, as axial HFS scans usually are
        ds.ImagePositionPatient = [f"{x0:.2f}", f"{y0:.2f}", f"{z:.2f}"]
        ds.SliceLocation = f"{z:.2f}"
        ds.PixelData = stored.tobytes()
        ds.save_as(folder / names[k], enforce_file_format=True)


def _holds_series(folder: Path, n: int) -> bool:
    """True when `folder` already holds an `n`-file 512 x 512 CT series (written by an earlier run)."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    if len(files) != n:
        return False
    try:
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    except Exception:
        return False
    return ds.get("Modality") == "CT" and ds.get("Rows") == ROWS and ds.get("Columns") == COLS


# -------------------------------------------------------------------------------- methods ---


def _read_slice(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    ds = pydicom.dcmread(path)
    return (
        np.asarray(ds.ImagePositionPatient, dtype=float),
        np.asarray(ds.ImageOrientationPatient, dtype=float),
        ds.pixel_array,
        float(ds.get("RescaleSlope", 1)),
        float(ds.get("RescaleIntercept", 0)),
    )


def _pydicom_volume(folder: Path, threads: int) -> np.ndarray:
    paths = [folder / name for name in os.listdir(folder)]
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            slices = list(pool.map(_read_slice, paths))
    else:
        slices = [_read_slice(p) for p in paths]
    iop = slices[0][1]
    normal = np.cross(iop[:3], iop[3:])
    slices.sort(key=lambda s: float(s[0] @ normal))
    vol = np.stack([s[2] for s in slices])
    rescales = {(s[3], s[4]) for s in slices}
    if len(rescales) == 1:
        slope, intercept = rescales.pop()
        if slope == 1 and intercept.is_integer():  # integer rescale: one pass over the volume
            hu = vol.astype(np.int16)
            hu += np.int16(intercept)
            return hu
    hu = np.empty(vol.shape, dtype=np.int16)
    for k, s in enumerate(slices):
        hu[k] = np.rint(vol[k] * s[3] + s[4])
    return hu


def pydicom_1(folder: Path) -> np.ndarray:
    return _pydicom_volume(folder, 1)


def pydicom_2(folder: Path) -> np.ndarray:
    return _pydicom_volume(folder, 2)


def sitk_files(folder: Path) -> list[str]:
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))


def simpleitk(folder: Path) -> np.ndarray:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk_files(folder))
    image = reader.Execute()
    return sitk.GetArrayFromImage(image).astype(np.int16, copy=False)


class CalcimgTimer:
    """calcimg discover + load, keeping the two parts' times of every run."""

    def __init__(self) -> None:
        self.discover_s: list[float] = []
        self.load_s: list[float] = []

    def __call__(self, folder: Path) -> np.ndarray:
        t0 = time.perf_counter()
        found = discover(folder)
        t1 = time.perf_counter()
        scan = load(found.series[0])
        t2 = time.perf_counter()
        self.discover_s.append(t1 - t0)
        self.load_s.append(t2 - t1)
        return scan.pixels


def run_all(
    methods: list[tuple[str, Callable[[Path], np.ndarray]]], folder: Path, repeats: int
) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """One warm-up run per method (its result is kept), then `repeats` timed rounds.

    The rounds interleave the methods (each round starting with the next method) so that a slow
    spell of the machine falls on all of them rather than on one.
    """
    arrays = {name: fn(folder) for name, fn in methods}
    times: dict[str, list[float]] = {name: [] for name, _ in methods}
    for r in range(repeats):
        for name, fn in methods[r % len(methods) :] + methods[: r % len(methods)]:
            gc.collect()
            t0 = time.perf_counter()
            out = fn(folder)
            times[name].append(time.perf_counter() - t0)
            del out
    return times, arrays


# ----------------------------------------------------------------------------------- main ---


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--slices", type=int, default=400, help="slices in the series (default 400)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method (default 5)")
    parser.add_argument(
        "--data", type=Path, help="folder for the series, kept and reused (default: temp dir)"
    )
    args = parser.parse_args(argv)
    n, repeats = args.slices, max(1, args.repeats)

    print(
        f"python {platform.python_version()}  numpy {np.__version__}  pydicom {pydicom.__version__}  "
        f"SimpleITK {sitk.Version.VersionString()}  cpus {os.cpu_count()}"
    )
    tmp = None
    if args.data is None:
        folder = Path(tmp := tempfile.mkdtemp(prefix="calcimg-bench-"))
    else:
        folder = args.data
    try:
        if folder.is_dir() and any(folder.iterdir()):
            if not _holds_series(folder, n):
                print(
                    f"{folder} is not empty and does not hold a {n}-slice series", file=sys.stderr
                )
                return 2
            print(f"reusing {n} slices in {folder}")
        else:
            t0 = time.perf_counter()
            write_series(folder, n)
            print(
                f"wrote {n} slices of {ROWS}x{COLS} in {time.perf_counter() - t0:.2f} s to {folder}"
            )

        calcimg_timer = CalcimgTimer()
        methods: list[tuple[str, Callable[[Path], np.ndarray]]] = [
            ("pydicom, 1 thread", pydicom_1),
            ("pydicom, 2 threads", pydicom_2),
            ("SimpleITK series reader", simpleitk),
            ("calcimg discover+load", calcimg_timer),
        ]
        times, arrays = run_all(methods, folder, repeats)
        # the warm-up run is not timed: keep only the timed runs' part times
        times["  calcimg discover"] = calcimg_timer.discover_s[1:]
        times["  calcimg load"] = calcimg_timer.load_s[1:]

        # (a), (c) and (d) give the same volume, sorted ascending along the slice normal
        ref = arrays["calcimg discover+load"]
        assert ref.dtype == np.int16 and ref.shape == (n, ROWS, COLS), (ref.dtype, ref.shape)
        assert np.array_equal(arrays["pydicom, 1 thread"], ref), "pydicom and calcimg differ"
        assert np.array_equal(arrays["pydicom, 2 threads"], ref), (
            "pydicom (threads) and calcimg differ"
        )
        files = sitk_files(folder)
        z_first, z_last = (
            float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
            for f in (files[0], files[-1])
        )
        sitk_arr = arrays["SimpleITK series reader"]
        if z_first > z_last:
            sitk_arr = sitk_arr[::-1]
        assert np.array_equal(sitk_arr, ref), "SimpleITK and calcimg differ"
        print(
            f"identical int16 volumes {ref.shape} (SimpleITK order: "
            f"{'descending, flipped' if z_first > z_last else 'ascending'}); HU {ref.min()}..{ref.max()}"
        )
        del arrays, sitk_arr, ref

        base = statistics.median(times["calcimg discover+load"])
        print()
        print(f"{n} slices, median and min of {repeats} warm runs")
        print(f"{'method':<26}{'median s':>10}{'min s':>9}{'ms/slice':>10}{'x calcimg':>11}")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(
                f"{name:<26}{med:>10.3f}{min(ts):>9.3f}{1000 * med / n:>10.2f}{med / base:>11.2f}"
            )
        ratio = base / statistics.median(times["pydicom, 1 thread"])
        print(f"load_seconds={base:.3f} ratio_vs_pydicom={ratio:.3f}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
