"""CT acquisition: anatomy and lesions sampled on the DICOM voxel grid, scanner PSF, noise.

Truth values are measured on each lesion's own rasterised crop (calcified fraction >= 0.5),
so they are what a measurement on the noise-free image would find.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

from ._anatomy import make_anatomy
from ._geometry import POSTURES, Grid, make_grid, rotation
from ._layout import Layout


@dataclass
class CTSpec:
    name: str
    posture: str = "supine"
    oblique: tuple | None = None  # (degrees about z, degrees about x) applied to the image axes
    shape: tuple = (40, 96, 96)
    spacing: tuple = (2.0, 0.9, 0.9)
    anatomy: str = "limb"
    scale: float = 0.33
    size: float = 0.7  # lesion size factor
    demineralised: bool = False
    table: bool = False
    noise_sd: float = 14.0
    storage: str = "uint16"  # uint16 + intercept -1024 (12 bits stored) or int16
    lesions: list = field(default_factory=list)  # (pattern, kwargs) or (pattern, kwargs, count)
    z_center: float = -12.0  # field-of-view centre height relative to the joint, x scale
    description: str = ""


@dataclass
class LesionTruth:
    lesion: object
    sl: tuple
    env: np.ndarray
    calc: np.ndarray
    record: dict


@dataclass
class CTStudy:
    spec: CTSpec
    grid: Grid
    gravity: np.ndarray
    patient_position: str
    hu: np.ndarray  # float32, final (blurred, noisy) HU
    truths: list
    anatomy: object


def max_diameter(pts: np.ndarray) -> float:
    if len(pts) < 2:
        return 0.0
    if len(pts) > 4:
        try:
            pts = pts[ConvexHull(pts).vertices]
        except QhullError:
            pass
    if len(pts) > 3000:
        pts = pts[:: len(pts) // 3000 + 1]
    d = pts[:, None, :] - pts[None, :, :]
    return float(np.sqrt((d * d).sum(-1)).max())


def _geometry(spec: CTSpec, anatomy) -> tuple[Grid, np.ndarray, str]:
    post = POSTURES[spec.posture]
    row, col = np.asarray(post["row"], float), np.asarray(post["col"], float)
    if spec.oblique is not None:
        rot = rotation((0, 0, 1), spec.oblique[0]) @ rotation((1, 0, 0), spec.oblique[1])
        row, col = rot @ row, rot @ col
    j = anatomy.joints[0] if len(anatomy.joints) == 1 else None
    cx = float(anatomy.body_center[0]) if j is None else float(0.5 * (j.center[0] + anatomy.body_center[0]))
    cy = float(anatomy.body_center[1])
    center = np.array([cx, cy, spec.z_center * anatomy.scale])
    grid = make_grid(spec.shape, spec.spacing, center, row, col)
    return grid, np.asarray(post["gravity"], float), post["patient_position"]


def _kernel_power(sigma: float) -> float:
    if sigma <= 0:
        return 1.0
    k = ndi.gaussian_filter1d(np.eye(1, 41, 20).ravel(), sigma)
    return float(np.sum(k * k))


def lesion_record(les, sl, env, calc, grid: Grid, anatomy, gravity) -> dict:
    """Truth for one lesion measured on its rasterised crop."""
    mask = calc >= 0.5
    if not mask.any():
        mask = calc >= 0.5 * calc.max()
    idx = np.argwhere(mask) + np.array([s.start for s in sl])
    pts = grid.index_to_lps(idx)
    cen = pts.mean(axis=0)
    level = les.level_loculi(gravity) if gravity is not None else []
    bone = anatomy.bone_sdf(pts)
    return {
        "pattern": les.pattern,
        "variant": les.variant or None,
        "group": les.group or None,
        "centroid_lps_mm": [round(float(v), 3) for v in cen],
        "volume_mm3": round(float(calc.sum() * grid.voxel_volume), 2),
        "envelope_volume_mm3": round(float(env.sum() * grid.voxel_volume), 2),
        "voxel_count": int(mask.sum()),
        "max_diameter_mm": round(max_diameter(pts), 2),
        "lobule_count": int(les.lobule_count),
        "fluid_level": int(len(level) > 0) if les.pattern == "tumoral_calcinosis" else 0,
        "fluid_level_count": len(level),
        "bone_distance_mm": round(max(0.0, float(bone.min())), 2),
        "skin_depth_mm": round(float(anatomy.skin_depth(cen)), 2),
        "joint_distance_mm": round(anatomy.joint_distance(pts), 2),
        "loculi": [{k: (np.round(v, 3).tolist() if isinstance(v, np.ndarray) else round(v, 3))
                    for k, v in d.items()} for d in level],
        "design": {"center_lps_mm": np.round(les.center, 3).tolist(),
                   **({"lobules": [{"center_lps_mm": np.round(c, 3).tolist(), "radius_mm": round(float(r), 3),
                                    "level": bool(k)} for c, r, k in zip(les.centers, les.radii, les.kinds,
                                                                          strict=True)],
                       "wall_mm": round(float(les.wall), 3), "septum_mm": round(float(les.septum), 3)}
                      if hasattr(les, "centers") else {}),
                   "bounding_radius_mm": round(float(les.radius), 2),
                   **{k: v for k, v in les.info.items()}},
    }


def plan_ct(spec: CTSpec, rng: np.random.Generator):
    """Anatomy, grid and lesion layout of a CT study, nothing rasterised yet.

    Returns ``(anatomy, grid, gravity, patient_position, lesions)``; `build_ct` starts with this.
    """
    anatomy = make_anatomy(rng, spec.anatomy, spec.scale, spec.demineralised)
    grid, gravity, pp = _geometry(spec, anatomy)
    layout = Layout(anatomy, grid, rng, size=spec.size)
    for item in spec.lesions:
        pattern, kw = item[0], dict(item[1]) if len(item) > 1 else {}
        for _ in range(item[2] if len(item) > 2 else 1):
            layout.place(pattern, **kw)
    return anatomy, grid, gravity, pp, layout.lesions


def rasterise_lesion(les, grid: Grid, anatomy, gravity):
    """One lesion on its own crop of ``grid``: ``(crop, env, hu, calc, truth record)``."""
    sl = grid.crop(les.center - les.radius, les.center + les.radius, margin=2 * grid.blur_width)
    x, y, z = grid.coords(sl)
    env, lhu, calc = (np.broadcast_to(a, tuple(s.stop - s.start for s in sl)).astype(np.float32)
                      for a in les.render(x, y, z, gravity, grid.blur_width))
    return sl, env, lhu, calc, lesion_record(les, sl, env, calc, grid, anatomy, gravity)


def build_ct(spec: CTSpec, rng: np.random.Generator) -> CTStudy:
    anatomy, grid, gravity, pp, lesions = plan_ct(spec, rng)
    hu = anatomy.render(grid, gravity=gravity, table=spec.table)
    truths = []
    for les in lesions:
        sl, env, lhu, calc, rec = rasterise_lesion(les, grid, anatomy, gravity)
        sub = hu[sl]
        sub += (lhu - sub) * env
        truths.append(LesionTruth(les, sl, env, calc, rec))
    # scanner PSF (in-plane FWHM ~0.95 mm, slice profile) then correlated noise
    sig = (0.3, 0.4 / grid.spacing[1], 0.4 / grid.spacing[2])
    ndi.gaussian_filter(hu, sig, output=hu, truncate=3.0)
    noise = rng.standard_normal(grid.shape, dtype=np.float32)
    ns = 0.75
    ndi.gaussian_filter(noise, (0, ns, ns), output=noise, truncate=3.0)
    noise *= np.float32(spec.noise_sd / np.sqrt(_kernel_power(ns) ** 2))
    hu += noise
    del noise
    return CTStudy(spec, grid, gravity, pp, hu, truths, anatomy)
