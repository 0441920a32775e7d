"""Attenuation of a lesion: HU statistics, HU-weighted volume, and the rim-to-core density profile.

The profile is measured on the lesion's *envelope* (the calcified mask with its enclosed holes
filled), so a shell with a lucent centre (myositis ossificans zoning, a hydatid or parasite cyst, a
phlebolith) shows its centre, which the 130 HU calcium mask leaves out (criteria-research 1.3, 2.6).
"""

from __future__ import annotations

import numpy as np

from calcimg.features import _fast
from calcimg.features._shape import fill_holes
from calcimg.lesion import Lesion

#: Depth bands below the envelope surface (mm): rim [0, 1), mid [1, 2), core >= 2.
RIM_MM, CORE_MM = 1.0, 2.0
#: A band needs at least this many voxels for its mean to be reported.
MIN_BAND_VOXELS = 4

INTENSITY_COLUMNS = ("mean_hu", "max_hu", "median_hu", "p10_hu", "p90_hu", "hu_weighted_volume_hu_mm3",
                     "rim_mean_hu", "mid_mean_hu", "core_mean_hu", "rim_core_contrast")


def envelope_depth_mm(lesion: Lesion) -> tuple[np.ndarray, np.ndarray]:
    """The lesion's envelope on its crop and each envelope voxel's depth below its surface (mm).

    Envelope: the mask with holes filled in 3D (2D for radiographs). Depth: the distance from the
    voxel centre to the nearest voxel centre outside the envelope, minus half the smallest spacing
    (the surface lies half a voxel beyond the outermost voxel centres), so the outer layer has
    depth ``s/2``. Cached in ``lesion.context`` (the profile and the ossification indicator share it).

    >>> m = np.zeros((1, 7, 7), bool); m[0, 1:6, 1:6] = True
    >>> les = Lesion(1, m * 500.0, m, (0, 0, 0), (1.0, 1.0, 1.0), np.zeros(3), np.eye(3), "ct")
    >>> env, depth = envelope_depth_mm(les)
    >>> float(depth[0, 3, 3])   # the centre of a 5 x 5 square lies 2.5 voxels below its edge
    2.5
    """
    cached = lesion.context.get("_envelope_depth")
    if cached is not None:
        return cached
    mask = np.asarray(lesion.mask, bool)
    env = fill_holes(mask)
    spacing = np.asarray(lesion.spacing, dtype=float)
    if env.ndim == 3 and env.shape[0] == 1 and lesion.kind == "ct":
        # a single slice: depth in-plane only (the slice axis cannot hold a core)
        d = _fast.edt(np.ascontiguousarray(env[0]).view(np.uint8), tuple(spacing[1:]), black_border=True)[None]
    else:  # outside the crop counts as outside the envelope
        d = _fast.edt(np.ascontiguousarray(env).view(np.uint8), tuple(spacing), black_border=True)
    depth = np.where(env, d - 0.5 * spacing.min(), 0.0)
    lesion.context["_envelope_depth"] = (env, depth)
    return env, depth


def depth_bands(lesion: Lesion) -> dict[str, np.ndarray]:
    """HU of the envelope voxels in each depth band: ``rim``, ``mid`` and ``core``."""
    env, depth = envelope_depth_mm(lesion)
    hu = lesion.image[env].astype(np.float64)
    d = depth[env]
    return {"rim": hu[d < RIM_MM], "mid": hu[(d >= RIM_MM) & (d < CORE_MM)], "core": hu[d >= CORE_MM]}


def intensity_features(lesion: Lesion) -> dict:
    """HU statistics and the rim-to-core density profile of a CT lesion (radiographs: none).

    Columns
    -------
    mean_hu, max_hu, median_hu : float
        Mean, maximum and median HU over the lesion's calcified voxels (HU; >= the detection
        threshold, 130 HU by default, for segmented lesions; any value for a user's mask).
    p10_hu, p90_hu : float
        10th and 90th percentiles (linear interpolation) of the same voxels (HU). Robust stand-ins
        for min/max; partial volume pulls p10 of small lesions towards the threshold.
    hu_weighted_volume_hu_mm3 : float
        sum over the lesion's voxels of HU x voxel volume (HU mm^3) = mean_hu x volume_mm3. It is
        the scanner-independent part of the calcium mass score: mass (mg) = c_HA x this / 1000, with
        c_HA (mg hydroxyapatite per cm^3 per HU) measured for the scanner and protocol on a
        calibration phantom (McCollough et al., Radiology 2007;243:527). calcimg does not assume a
        c_HA. Unlike ``ibsi_integrated_intensity_hu_mm3`` (mean HU x mesh volume) it uses the voxel
        count, so it adds up over lesions.
    rim_mean_hu, mid_mean_hu, core_mean_hu : float
        Mean HU of the envelope voxels (the mask with enclosed holes filled) whose depth below
        the envelope surface is < 1 mm (rim), 1-2 mm (mid) and >= 2 mm (core); depth = distance
        to the nearest voxel outside the envelope minus half the smallest spacing (HU). Empty, with
        a reason, when a band holds fewer than 4 voxels (a lesion thinner than about 4-5 mm has no
        core).
    rim_core_contrast : float
        (rim_mean_hu - core_mean_hu) / (|rim_mean_hu| + |core_mean_hu|), in [-1, 1]. Near +1: a
        dense shell around a lucent centre (fluid, soft tissue or fat: cysts, zonal myositis
        ossificans, phleboliths with a lucent centre); near 0: homogeneous; negative: densest
        centrally (the reverse zoning of tumour matrix / osteosarcoma, criteria-research 1.3).
        A ratio rim/core is not used: it diverges for a water core (0 HU) and changes sign for a
        fat core. Empty when the core is.
    """
    if lesion.kind != "ct":
        return {}
    mask = np.asarray(lesion.mask, bool)
    values = lesion.image[mask].astype(np.float64)
    voxel = float(abs(np.linalg.det(lesion.direction * np.asarray(lesion.spacing)[None, :])))
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    row = {
        "mean_hu": float(values.mean()),
        "max_hu": float(values.max()),
        "median_hu": float(median),
        "p10_hu": float(p10),
        "p90_hu": float(p90),
        "hu_weighted_volume_hu_mm3": float(values.sum() * voxel),
    }
    bands = depth_bands(lesion)
    empty = []
    for name in ("rim", "mid", "core"):
        v = bands[name]
        row[f"{name}_mean_hu"] = float(v.mean()) if v.size >= MIN_BAND_VOXELS else float("nan")
        if v.size < MIN_BAND_VOXELS:
            empty.append(name)
    rim, core = row["rim_mean_hu"], row["core_mean_hu"]
    denom = abs(rim) + abs(core)
    row["rim_core_contrast"] = float((rim - core) / denom) if np.isfinite(denom) and denom > 0 else float("nan")
    if empty:
        row["not_assessed"] = (f"{', '.join(f'{n}_mean_hu' for n in empty)}"
                               f"{', rim_core_contrast' if 'core' in empty or 'rim' in empty else ''}: "
                               f"lesion too thin (fewer than {MIN_BAND_VOXELS} voxels in the band)")
    return row
