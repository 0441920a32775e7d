"""Load one discovered series into a `Scan`."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

from calcimg.errors import (
    CalcimgError,
    InconsistentSeriesError,
    MissingGeometryError,
    NotAnImageError,
    UnreadableFileError,
    UnsupportedDataError,
)
from calcimg.io._discover import Instance, Series, discover
from calcimg.io._gravity import (
    MIN_IN_PLANE_FRACTION,
    gravity_from_patient_position,
    gravity_from_radiograph_header,
    patient_orientation_axes,
    project_gravity,
)
from calcimg.io._pixels import (
    can_read_raw,
    decode_frames,
    fix_stored_values,
    padding_mask,
    read_raw_into,
    stored_dtype,
    transfer_syntax,
)
from calcimg.scan import Scan

#: CT values below this are outside the reconstruction circle or padding; they are set to it (air).
CT_FLOOR_HU = -1024
#: Relative deviation of one slice gap from the median gap above which spacing is non-uniform.
NONUNIFORM_TOLERANCE = 0.02


def _default_threads() -> int:
    return max(2, min(8, (os.cpu_count() or 2) + 1))


def load(series: Series | str | Path, *, threads: int | None = None, nonuniform: str = "resample") -> Scan:
    """Load a series into a `Scan` in physical units.

    Parameters
    ----------
    series : Series or path
        A series from `discover`, or a path holding exactly one loadable series.
    threads : int, optional
        Threads decoding slices in parallel (default: CPU count + 1, at least 2).
    nonuniform : {"resample", "error"}
        What to do when CT slice gaps differ by more than 2 % from their median (a missing slice,
        a mixed-thickness reconstruction): ``"resample"`` (default) interpolates linearly onto a
        uniform grid at the median gap and records it in ``scan.notes``; ``"error"`` raises
        `InconsistentSeriesError`. Features assume a regular grid, so the volume is never left
        irregular.

    Raises
    ------
    UnreadableFileError, NotAnImageError, InconsistentSeriesError, MissingGeometryError,
    UnsupportedDataError
        Each names the file and the reason.
    """
    if nonuniform not in ("resample", "error"):
        raise ValueError(f"nonuniform must be 'resample' or 'error', not {nonuniform!r}")
    if not isinstance(series, Series):
        found = discover(series)
        loadable = [s for s in found.series if s.kind != "localizer"]
        if len(loadable) != 1:
            reasons = "; ".join(f"{s.path.name}: {s.reason}" for s in found.skipped[:3])
            raise NotAnImageError(
                f"holds {len(loadable)} loadable series, not 1"
                + (f" (skipped: {reasons})" if reasons else ""),
                series,
            )
        series = loadable[0]
    threads = threads or _default_threads()
    if series.kind == "volume":
        from calcimg.io._volume import load_volume_file

        return load_volume_file(series)
    if series.kind in ("radiograph", "localizer"):
        if len(series.instances) != 1:
            raise InconsistentSeriesError(
                f"a radiograph series must hold one image, this one holds {len(series.instances)}",
                series.source,
            )
        return _load_radiograph(series, series.instances[0])
    if series.kind == "ct":
        first = series.instances[0]
        if len(series.instances) == 1 and int(first.header.get("NumberOfFrames", 1) or 1) > 1:
            return _load_enhanced_ct(series, first, nonuniform)
        return _load_ct_slices(series, threads, nonuniform)
    raise UnsupportedDataError(
        f"modality {series.modality or '?'} is not measured by calcimg (CT, CR and DX are)",
        series.files[0],
    )


# --------------------------------------------------------------------------------------- CT ---


def _floats(value, n: int, what: str, path: Path) -> np.ndarray:
    try:
        arr = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError) as exc:
        raise MissingGeometryError(f"{what} is missing or not numeric", path) from exc
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise MissingGeometryError(f"{what} must hold {n} numbers, has {value!r}", path)
    return arr


def _orientation(iop: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    r, c = iop[:3], iop[3:]
    nr, nc = np.linalg.norm(r), np.linalg.norm(c)
    if nr < 0.5 or nc < 0.5:
        raise MissingGeometryError(f"ImageOrientationPatient {iop.tolist()} is not two unit vectors", path)
    r, c = r / nr, c / nc
    if abs(float(r @ c)) > 0.01:
        raise MissingGeometryError(f"ImageOrientationPatient rows and columns are not orthogonal ({iop.tolist()})", path)
    c = c - (r @ c) * r
    return r, c / np.linalg.norm(c)


def _pixel_spacing(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    if "PixelSpacing" not in ds:
        raise MissingGeometryError("PixelSpacing is missing", path)
    ps = _floats(ds.PixelSpacing, 2, "PixelSpacing", path)
    if np.any(ps <= 0):
        raise MissingGeometryError(f"PixelSpacing {ps.tolist()} is not positive", path)
    return ps


class _Rescale:
    """Stored value -> HU for one frame: Rescale Slope/Intercept, or a Modality LUT Sequence."""

    def __init__(self, ds: pydicom.Dataset, source: pydicom.Dataset | None = None) -> None:
        src = source if source is not None else ds
        self.lut_ds = ds if "ModalityLUTSequence" in ds else None
        self.slope = float(src.get("RescaleSlope", 1) or 1)
        self.intercept = float(src.get("RescaleIntercept", 0) or 0)
        self.missing = "RescaleSlope" not in src and "RescaleIntercept" not in src and self.lut_ds is None

    @property
    def integral(self) -> bool:
        return self.lut_ds is None and self.slope == 1.0 and float(self.intercept).is_integer()

    def apply(self, values: np.ndarray) -> np.ndarray:
        if self.lut_ds is not None:
            return apply_modality_lut(values, self.lut_ds).astype(np.float32, copy=False)
        if self.integral:
            out = values.astype(np.int32)
            out += int(self.intercept)
            return out
        return values.astype(np.float32) * np.float32(self.slope) + np.float32(self.intercept)


def _to_hu(values: np.ndarray, pad: np.ndarray | None, rescale: _Rescale, out: np.ndarray) -> None:
    hu = rescale.apply(values)
    if pad is not None:
        hu[pad] = CT_FLOOR_HU
    np.clip(hu, CT_FLOOR_HU, 32767, out=out, casting="unsafe")


def _direct_ok(ds: pydicom.Dataset, inst: Instance, rescale: _Rescale) -> bool:
    """Whether a slice can be read straight into the int16 HU volume and rescaled in place.

    True for the common case (native 16-bit slices, integral rescale, no padding value) when every
    value BitsStored allows lands inside [CT_FLOOR_HU, 32767] after the intercept, so neither a
    clip nor a wider temporary is needed. Everything else takes the general path.
    """
    if not (rescale.integral and can_read_raw(ds, inst.pixel_offset) and "PixelPaddingValue" not in ds):
        return False
    if int(ds.get("BitsAllocated", 0)) != 16:
        return False
    bits = int(ds.get("BitsStored", 16))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    icpt = int(rescale.intercept)
    return lo + icpt >= CT_FLOOR_HU and hi + icpt <= 32767


def _read_direct(inst: Instance, ds: pydicom.Dataset, rescale: _Rescale, out: np.ndarray) -> None:
    """Read one slice into `out` (int16) and apply BitsStored and the intercept in place."""
    raw = out.view(stored_dtype(ds))
    read_raw_into(inst.path, inst.pixel_offset, ds, raw)
    bits = int(ds.get("BitsStored", 16))
    if bits < 16:
        if int(ds.get("PixelRepresentation", 0)) == 1:
            np.left_shift(out, 16 - bits, out=out)
            np.right_shift(out, 16 - bits, out=out)  # arithmetic shift: sign extension
        else:
            np.bitwise_and(raw, np.uint16((1 << bits) - 1), out=raw)
    if rescale.intercept:
        out += np.int16(rescale.intercept)


def _looks_signed(values: np.ndarray, ds: pydicom.Dataset, rescale: _Rescale) -> bool:
    """PixelRepresentation says unsigned, but stored HU (intercept 0) wrap past 32767: two's complement."""
    return (
        values.dtype == np.uint16
        and int(ds.get("BitsStored", 16)) == 16
        and rescale.integral
        and rescale.intercept == 0
        and bool((values >= 32768).any())
    )


def _slab_geometry(
    positions: np.ndarray, r: np.ndarray, c: np.ndarray, paths: list[Path], ds0: pydicom.Dataset, ps: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Sort slices along the normal; return order, positions along the stack axis, axis vector, notes."""
    notes: list[str] = []
    n = np.cross(r, c)
    s = positions @ n
    order = np.argsort(s, kind="stable")
    pos = positions[order]
    if len(pos) == 1:
        gap = float(ds0.get("SpacingBetweenSlices", 0) or ds0.get("SliceThickness", 0) or 1.0)
        notes.append(f"single slice: slice spacing {gap:g} mm from SpacingBetweenSlices/SliceThickness")
        return order, np.array([0.0]), n, notes
    ds_along = np.diff(s[order])
    dup = np.flatnonzero(ds_along < 1e-3)
    if dup.size:
        i = dup[0]
        raise InconsistentSeriesError(
            f"two slices share one position ({paths[order[i]].name} and {paths[order[i + 1]].name}, "
            f"{int(dup.size)} duplicate(s)): several acquisitions or echoes in one series",
            paths[order[i]].parent,
        )
    axis = pos[-1] - pos[0]
    axis /= np.linalg.norm(axis)
    rel = pos - pos[0]
    along = rel @ axis
    off_line = np.linalg.norm(rel - np.outer(along, axis), axis=1)
    if off_line.max() > 0.5 * float(ps.min()):
        raise InconsistentSeriesError(
            f"slice positions do not lie on one line (up to {off_line.max():.2f} mm off): "
            "not one stack of parallel slices",
            paths[order[int(off_line.argmax())]],
        )
    tilt = float(np.degrees(np.arccos(np.clip(abs(axis @ n), -1, 1))))
    if tilt > 0.05:
        notes.append(f"gantry tilt {tilt:.1f} degrees: the slice axis is sheared, kept in direction")
    return order, along, axis, notes


def _resample_uniform(vol: np.ndarray, along: np.ndarray, gap: float) -> np.ndarray:
    """Linear interpolation along axis 0 onto positions 0, gap, 2 gap, ... up to the last slice."""
    n_out = int(np.floor(along[-1] / gap + 0.5)) + 1
    targets = np.arange(n_out) * gap
    idx = np.clip(np.searchsorted(along, targets, side="right") - 1, 0, len(along) - 2)
    w = np.clip((targets - along[idx]) / (along[idx + 1] - along[idx]), 0.0, 1.0).astype(np.float32)
    out = np.empty((n_out, *vol.shape[1:]), dtype=vol.dtype)
    for j in range(n_out):  # one pass per output slice, vectorised within the slice
        a = vol[idx[j]].astype(np.float32)
        a += w[j] * (vol[idx[j] + 1] - a)
        out[j] = np.rint(a) if out.dtype.kind in "iu" else a
    return out


def _load_ct_slices(series: Series, threads: int, nonuniform: str) -> Scan:
    insts = series.instances
    paths = [i.path for i in insts]
    ds0 = insts[0].header
    iop = _floats(ds0.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", paths[0])
    r, c = _orientation(iop, paths[0])
    ps = _pixel_spacing(ds0, paths[0])
    positions = np.stack(
        [_floats(i.header.get("ImagePositionPatient"), 3, "ImagePositionPatient", i.path) for i in insts]
    )
    order, along, axis, notes = _slab_geometry(positions, r, c, paths, ds0, ps)
    rows, cols = int(ds0.Rows), int(ds0.Columns)
    rescales = [_Rescale(i.header) for i in insts]
    if rescales[0].missing:
        notes.append("no Rescale Slope/Intercept or Modality LUT: stored values taken as HU")
    dtype = np.int16 if all(rs.integral for rs in rescales) else np.float32
    vol = np.empty((len(insts), rows, cols), dtype=dtype)
    quirks: set[str] = set()
    local = threading.local()

    def fill(k: int) -> None:
        inst: Instance = insts[order[k]]
        ds = inst.header
        if int(ds.get("Rows", 0)) != rows or int(ds.get("Columns", 0)) != cols:
            raise InconsistentSeriesError(f"matrix {ds.get('Rows')}x{ds.get('Columns')} differs from {rows}x{cols}", inst.path)
        rs = rescales[order[k]]
        if dtype == np.int16 and _direct_ok(ds, inst, rs):
            _read_direct(inst, ds, rs, vol[k])
            return
        if can_read_raw(ds, inst.pixel_offset):
            dt = stored_dtype(ds)
            buf = getattr(local, "buf", None)
            if buf is None or buf.dtype != dt:
                buf = local.buf = np.empty((rows, cols), dtype=dt)
            read_raw_into(inst.path, inst.pixel_offset, ds, buf)
            values, pad = fix_stored_values(buf, ds)
        else:
            full, values = decode_frames(inst.path)
            if values.shape != (rows, cols):
                raise InconsistentSeriesError(f"pixel array shape {values.shape} is not {rows}x{cols}", inst.path)
            pad = padding_mask(values, full)
            quirks.add(f"decoded {transfer_syntax(full)} through pydicom")
        if _looks_signed(values, ds, rs):
            values = values.view(np.int16)
            quirks.add("PixelRepresentation says unsigned but values are two's-complement HU: read as signed")
        _to_hu(values, pad, rs, vol[k])

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(fill, range(len(insts))))
    notes.extend(sorted(quirks))

    fallback = float(ds0.get("SpacingBetweenSlices", 0) or ds0.get("SliceThickness", 0) or 1.0)
    notes = ([series.split_note] if series.split_note else []) + notes
    return _ct_scan(series, vol, along, fallback, nonuniform, positions[order[0]], np.stack([axis, c, r], axis=1),
                    ps, ds0, "ImagePositionPatient (slices) + PixelSpacing", notes)


def _ct_scan(series, vol, along, fallback_gap, nonuniform, origin, direction, ps, ds, spacing_source, notes) -> Scan:
    """The `Scan` of a sorted CT stack: uniform slice gap (resampled if needed), geometry, gravity."""
    gap = float(np.median(np.diff(along))) if len(along) > 1 else fallback_gap
    if len(along) > 2:
        gaps = np.diff(along)
        if np.max(np.abs(gaps - gap)) > NONUNIFORM_TOLERANCE * gap:
            msg = f"non-uniform slice spacing ({gaps.min():.3g} to {gaps.max():.3g} mm)"
            if nonuniform == "error":
                raise InconsistentSeriesError(msg, series.source)
            vol = _resample_uniform(vol, along, gap)
            notes.append(f"{msg}: resampled linearly to {gap:.3g} mm ({len(along)} -> {vol.shape[0]} slices)")
    scan = Scan(
        pixels=vol,
        spacing=(gap, float(ps[0]), float(ps[1])),
        origin=origin,
        direction=direction,
        kind="ct",
        study_uid=series.study_uid,
        series_uid=series.series_uid,
        source=series.source,
        spacing_source=spacing_source,
        header=_header_facts(ds),
        notes=notes,
    )
    _set_ct_gravity(scan, ds.get("PatientPosition"))
    return scan


def _set_ct_gravity(scan: Scan, patient_position) -> None:
    g = gravity_from_patient_position(None if patient_position is None else str(patient_position))
    scan.gravity_source = g.source
    if g.lps is not None:
        scan.gravity_lps = g.lps
        scan.gravity, scan.gravity_in_plane = project_gravity(g.lps, scan.direction.T)


def _fg(item: pydicom.Dataset, seq: str, attr: str):
    s = item.get(seq)
    if s and attr in s[0]:
        return s[0].get(attr)
    return None


def _load_enhanced_ct(series: Series, inst: Instance, nonuniform: str) -> Scan:
    """Enhanced (multi-frame) CT: geometry and rescale from the shared and per-frame groups."""
    ds, frames = decode_frames(inst.path)
    if frames.ndim == 2:
        frames = frames[None]
    shared = (ds.get("SharedFunctionalGroupsSequence") or [pydicom.Dataset()])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != frames.shape[0]:
        raise MissingGeometryError(
            f"PerFrameFunctionalGroupsSequence has {len(per_frame)} items for {frames.shape[0]} frames", inst.path
        )

    def group(i: int, seq: str, attr: str):
        v = _fg(per_frame[i], seq, attr)
        return v if v is not None else _fg(shared, seq, attr)

    iop = _floats(group(0, "PlaneOrientationSequence", "ImageOrientationPatient"), 6, "ImageOrientationPatient", inst.path)
    r, c = _orientation(iop, inst.path)
    for i in range(len(per_frame)):
        other = group(i, "PlaneOrientationSequence", "ImageOrientationPatient")
        if other is not None and not np.allclose(np.asarray(other, float), iop, atol=1e-3):
            raise InconsistentSeriesError(f"frame {i + 1} has another orientation than frame 1", inst.path)
    ps = group(0, "PixelMeasuresSequence", "PixelSpacing")
    ps = _floats(ps, 2, "PixelSpacing (Pixel Measures)", inst.path)
    positions = np.stack(
        [_floats(group(i, "PlanePositionSequence", "ImagePositionPatient"), 3, "ImagePositionPatient", inst.path)
         for i in range(len(per_frame))]
    )
    names = [Path(f"{inst.path.name}#frame{i + 1}") for i in range(len(per_frame))]
    order, along, axis, notes = _slab_geometry(positions, r, c, [inst.path.parent / n for n in names], ds, ps)
    rescales = []
    for i in range(len(per_frame)):
        tr = per_frame[i].get("PixelValueTransformationSequence") or shared.get("PixelValueTransformationSequence")
        rescales.append(_Rescale(ds, tr[0] if tr else None))
    dtype = np.int16 if all(rs.integral for rs in rescales) else np.float32
    vol = np.empty(frames.shape, dtype=dtype)
    pad = padding_mask(frames, ds)
    for k, i in enumerate(order):
        _to_hu(frames[i], None if pad is None else pad[i], rescales[i], vol[k])
    fallback = float(_fg(shared, "PixelMeasuresSequence", "SpacingBetweenSlices")
                     or _fg(shared, "PixelMeasuresSequence", "SliceThickness") or 1.0)
    return _ct_scan(series, vol, along, fallback, nonuniform, positions[order[0]], np.stack([axis, c, r], axis=1),
                    ps, ds, "PlanePositionSequence (frames) + PixelMeasuresSequence",
                    ["enhanced multi-frame CT", *notes])


# ------------------------------------------------------------------------------- radiographs ---


def radiograph_spacing(ds: pydicom.Dataset) -> tuple[tuple[float, float], str]:
    """Pixel size in the patient plane where the header allows it (criteria-research 2.0).

    Order: PixelSpacing calibrated (PixelSpacingCalibrationType GEOMETRY or FIDUCIAL);
    ImagerPixelSpacing divided by EstimatedRadiographicMagnificationFactor; ImagerPixelSpacing
    alone (size at the detector); PixelSpacing without calibration; else unknown (NaN). Zero or
    negative values count as missing.
    """

    def pair(key):
        v = ds.get(key)
        try:
            a = np.asarray([float(x) for x in v], dtype=float) if v is not None else None
        except (TypeError, ValueError):
            return None
        return a if a is not None and a.shape == (2,) and np.all(a > 0) and np.all(np.isfinite(a)) else None

    ps, ips = pair("PixelSpacing"), pair("ImagerPixelSpacing")
    cal = str(ds.get("PixelSpacingCalibrationType", "") or "").upper()
    if ps is not None and cal in ("GEOMETRY", "FIDUCIAL"):
        return (float(ps[0]), float(ps[1])), f"PixelSpacing (calibrated, {cal})"
    if ips is not None:
        try:
            emf = float(ds.get("EstimatedRadiographicMagnificationFactor", 0) or 0)
        except (TypeError, ValueError):
            emf = 0.0
        if emf > 0:
            return (float(ips[0] / emf), float(ips[1] / emf)), "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor"
        return (float(ips[0]), float(ips[1])), "ImagerPixelSpacing (at detector)"
    if ps is not None:
        return (float(ps[0]), float(ps[1])), "PixelSpacing (uncalibrated)"
    return (float("nan"), float("nan")), "unknown"


def _load_radiograph(series: Series, inst: Instance) -> Scan:
    ds, arr = decode_frames(inst.path)
    if arr.ndim != 2:
        raise UnsupportedDataError(f"a radiograph with {arr.shape[0]} frames is not supported", inst.path)
    notes: list[str] = []
    if series.kind == "localizer":
        notes.append("localizer/scout image")
    pad = padding_mask(arr, ds)
    values = apply_modality_lut(arr, ds).astype(np.float32, copy=False)
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    smin, smax = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    lo, hi = sorted(np.asarray(apply_modality_lut(np.array([smin, smax]), ds), dtype=float).tolist())
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "MONOCHROME1":
        values = np.float32(lo + hi) - values
        notes.append("MONOCHROME1: inverted so that larger = denser")
    elif photometric != "MONOCHROME2":
        raise UnsupportedDataError(f"photometric interpretation {photometric} is not grayscale", inst.path)
    if pad is not None:
        values[pad] = lo
        notes.append("padding pixels set to the least dense value")
    spacing, spacing_source = radiograph_spacing(ds)
    if spacing_source == "unknown":
        notes.append("pixel spacing unknown: sizes in mm cannot be given")
    axes = patient_orientation_axes(ds.get("PatientOrientation"))
    scan = Scan(
        pixels=values,
        spacing=spacing,
        origin=np.zeros(2),
        direction=np.eye(2),
        kind="radiograph",
        study_uid=series.study_uid,
        series_uid=series.series_uid,
        source=series.source,
        spacing_source=spacing_source,
        axes_lps=axes,
        header=_header_facts(ds),
        notes=notes,
    )
    g = gravity_from_radiograph_header(ds)
    scan.gravity_source = g.source
    scan.gravity_lps = g.lps
    if g.lps is not None:
        if axes is None:
            scan.gravity_source += "; image axes unknown (no PatientOrientation)"
        else:
            g_img, frac = project_gravity(g.lps, axes)
            scan.gravity_in_plane = frac
            if frac >= MIN_IN_PLANE_FRACTION:
                scan.gravity = g_img
            else:
                scan.gravity_source += f"; along the beam (in-plane fraction {frac:.2f})"
    return scan


_HEADER_KEYS = {
    "modality": "Modality",
    "manufacturer": "Manufacturer",
    "model": "ManufacturerModelName",
    "kernel": "ConvolutionKernel",
    "kvp": "KVP",
    "patient_position": "PatientPosition",
    "view_position": "ViewPosition",
    "photometric": "PhotometricInterpretation",
    "body_part": "BodyPartExamined",
    "sop_class_uid": "SOPClassUID",
}


def _header_facts(ds: pydicom.Dataset) -> dict:
    """A few non-identifying facts about the acquisition (no names, dates or IDs)."""
    facts = {}
    for key, tag in _HEADER_KEYS.items():
        v = ds.get(tag)
        if v is None or v == "":
            continue
        facts[key] = "\\".join(str(x) for x in v) if isinstance(v, pydicom.multival.MultiValue) else str(v)
    facts["transfer_syntax"] = transfer_syntax(ds)
    return facts


__all__ = ["CalcimgError", "UnreadableFileError", "load", "radiograph_spacing"]
