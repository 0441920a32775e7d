"""Build the studies of a preset in memory and write them (DICOM + truth.json)."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np

from ._ct import CTSpec, CTStudy, build_ct, plan_ct
from ._dicom import uid, write_ct, write_dx
from ._layout import PlacementError
from ._presets import PRESETS as _PRESET_FUNCS
from ._radiograph import DXSpec, build_dx

PRESETS = tuple(_PRESET_FUNCS)
SCHEMA = "calcimg.phantom.truth/1"
_ATTEMPTS = 8


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("calcimg")
    except Exception:  # not installed (PYTHONPATH use)
        return "0+unknown"


def _rng(seed: int, preset: str, name: str, attempt: int, what: str) -> np.random.Generator:
    key = [int(seed) & 0xFFFFFFFF, zlib.crc32(preset.encode()), zlib.crc32(name.encode()),
           attempt, zlib.crc32(what.encode())]
    return np.random.default_rng(np.random.SeedSequence(key))


def study_specs(preset: str = "demo") -> list:
    """The study specifications (`CTSpec` / `DXSpec`) a preset writes."""
    if preset not in _PRESET_FUNCS:
        raise ValueError(f"unknown phantom preset {preset!r}: choose one of {', '.join(PRESETS)}")
    return _PRESET_FUNCS[preset]()


def _attempts(spec, seed, preset, fn):
    last = None
    for attempt in range(_ATTEMPTS):
        rng = _rng(seed, preset, spec.name, attempt, "build")
        try:
            return fn(spec, rng), attempt
        except PlacementError as err:
            last = err
    raise PlacementError(f"study {spec.name}: {last} (after {_ATTEMPTS} layouts)")


def build_study(spec, seed: int = 0, preset: str = "demo"):
    """Build one study in memory, deterministic per seed. Returns ``(result, attempt)``.

    A layout that does not fit is retried with the next derived random stream (still
    deterministic): the result is a `CTStudy`, or ``(anatomy, [(DXView, info), ...])`` for DX.
    """
    return _attempts(spec, seed, preset, build_ct if isinstance(spec, CTSpec) else build_dx)


def plan_study(spec: CTSpec, seed: int = 0, preset: str = "demo"):
    """The lesion layout `build_study` would rasterise for a CT ``spec``, without the volume.

    Returns ``((anatomy, grid, gravity, patient_position, lesions), attempt)``; a lesion's truth
    record is then `calcimg.phantom._ct.rasterise_lesion` on its own crop (cheap even for bench).
    """
    if not isinstance(spec, CTSpec):
        raise TypeError("plan_study takes a CT study specification")
    return _attempts(spec, seed, preset, plan_ct)


def _ids(seed, preset, name, n, series=""):
    base = (preset, seed, name)
    return {
        "patient_name": f"PHANTOM^{n}",
        "patient_id": f"PHANTOM-{preset.upper()}-{n:03d}",
        "study_uid": uid(*base, "study"),
        "series_uid": uid(*base, "series", series),
        "frame_uid": uid(*base, "frame"),
        "version": _version(),
    }


def _r(v, nd=6):
    return [round(float(x), nd) for x in np.ravel(v)]


def _ct_series(st: CTStudy, ids, n_files) -> dict:
    g, spec = st.grid, st.spec
    lesions = []
    for i, t in enumerate(st.truths, 1):
        rec = dict(t.record)
        rec = {"id": i, **rec}
        lesions.append(rec)
    return {
        "series_uid": ids["series_uid"],
        "kind": "ct",
        "modality": "CT",
        "files": n_files,
        "description": spec.description or None,
        "patient_position": st.patient_position,
        "posture": spec.posture,
        "oblique": spec.oblique is not None,
        "image_orientation_patient": _r([*g.direction[:, 2], *g.direction[:, 1]], 8),
        "origin_lps_mm": _r(g.origin, 4),
        "direction": [_r(row, 8) for row in g.direction],
        "shape": list(g.shape),
        "spacing_mm": _r(g.spacing, 6),
        "gravity_lps": _r(st.gravity, 6),
        "gravity_array": _r(g.direction.T @ st.gravity, 6),
        "storage": spec.storage,
        "noise_sd_hu": spec.noise_sd,
        "demineralised_bone": spec.demineralised,
        "joints": [{"center_lps_mm": _r(j.center, 4), "head_radius_mm": round(float(j.head_r), 4),
                    "cavity_radius_mm": round(float(j.cavity_r), 4)} for j in st.anatomy.joints],
        "lesions": lesions,
    }


def _dx_series(view, info, ids, spec: DXSpec) -> dict:
    g = info["gravity"]
    lesions = [{"id": i, **rec} for i, rec in enumerate(info["lesions"], 1)]
    gi = [float(g @ info["row"]), float(g @ info["col"])]
    return {
        "series_uid": ids["series_uid"],
        "kind": "radiograph",
        "modality": "DX",
        "files": 1,
        "view": view.name,
        "view_position": view.view_position,
        "posture": view.posture,
        "patient_orientation": list(view.patient_orientation),
        "beam_lps": _r(view.beam),
        "row_direction_lps": _r(info["row"]),
        "column_direction_lps": _r(info["col"]),
        "photometric": view.photometric,
        "bits_stored": view.bits,
        "shape": list(view.pixels.shape),
        "imager_pixel_spacing_mm": spec.imager_spacing,
        "magnification": spec.magnification,
        "pixel_spacing_mm": round(info["spacing"], 6),
        "gravity_lps": _r(g),
        "gravity_image": _r(gi),
        "gravity_in_plane": round(info["in_plane"], 6),
        "lesions": lesions,
    }


def _prepare(folder: Path) -> None:
    if folder.exists():
        if not (folder / "truth.json").exists() and any(folder.iterdir()):
            raise FileExistsError(f"{folder} exists and is not a phantom study (no truth.json); "
                                  "refusing to overwrite it")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def generate(outdir, preset: str = "demo", seed: int = 0) -> list[Path]:
    """Write the studies of ``preset`` ("test", "demo" or "bench") under ``outdir``.

    Parameters
    ----------
    outdir : str or Path
        Created if missing. Each study goes to ``outdir/<study name>/`` (an earlier phantom
        study of that name is replaced; any other existing folder of that name is an error).
    preset : {"test", "demo", "bench"}
    seed : int
        Same seed, same pixels, UIDs and file names.

    Returns
    -------
    list of Path
        The study folders written, each with its DICOM files and ``truth.json``.
    """
    specs = study_specs(preset)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    folders = []
    for n, spec in enumerate(specs, 1):
        result, attempt = build_study(spec, seed, preset)
        folder = out / spec.name
        _prepare(folder)
        names = _rng(seed, preset, spec.name, attempt, "files")
        ids = _ids(seed, preset, spec.name, n)
        truth = {
            "schema": SCHEMA,
            "generator": {"package": "calcimg.phantom", "version": _version(), "preset": preset,
                          "seed": int(seed), "study": spec.name, "layout_attempt": attempt},
            "study_uid": ids["study_uid"],
            "patient_id": ids["patient_id"],
            "description": spec.description or None,
            "coordinates": ("CT: DICOM patient LPS mm. Radiographs: image-plane mm from the centre "
                            "of the first pixel, x along columns, y along rows, at pixel_spacing_mm "
                            "(ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor)."),
        }
        if isinstance(spec, CTSpec):
            paths = write_ct(result, folder, ids, names)
            series = [_ct_series(result, ids, len(paths))]
        else:
            _an, views = result
            series = []
            for k, (view, info) in enumerate(views, 1):
                vids = {**ids, "series_uid": uid(preset, seed, spec.name, "series", view.name),
                        "series_number": k, "series_description": view.name}
                write_dx(view, spec, folder, vids, names)
                series.append(_dx_series(view, info, vids, spec))
        truth["series"] = series
        truth["patterns"] = sorted({les["pattern"] for s in series for les in s["lesions"]})
        (folder / "truth.json").write_text(json.dumps(truth, indent=1))
        folders.append(folder)
    return folders
