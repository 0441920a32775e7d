"""Radiographs: parallel-beam line integrals of attenuation (mu from HU) through the phantom.

Image axes follow PatientOrientation: the first letter is the patient direction of increasing
column index (along a row), the second that of increasing row index. Gravity depends on posture
(criteria-research 2.5): erect -> F, supine -> P, prone -> A, left decubitus -> L, right -> R.
Sediment in cystic lobules settles along the gravity of each view, so an erect view shows
horizontal levels, a supine AP view (beam along gravity) shows none, and a decubitus AP view hung
upright shows them vertical on the display.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ._anatomy import make_anatomy
from ._ct import max_diameter
from ._geometry import make_grid
from ._layout import Layout

MU_WATER = 0.02  # 1/mm, about 60 keV
LETTERS = {"L": (1, 0, 0), "R": (-1, 0, 0), "P": (0, 1, 0), "A": (0, -1, 0), "H": (0, 0, 1),
           "F": (0, 0, -1)}
GRAVITY = {"erect": (0, 0, -1), "supine": (0, 1, 0), "prone": (0, -1, 0),
           "left_decubitus": (1, 0, 0), "right_decubitus": (-1, 0, 0)}
IN_PLANE_MIN = float(np.cos(np.deg2rad(20)))


@dataclass
class DXView:
    name: str
    posture: str  # key of GRAVITY
    beam: tuple  # LPS direction source -> detector
    patient_orientation: tuple  # e.g. ("L", "F")
    view_position: str
    photometric: str = "MONOCHROME2"
    bits: int = 12
    pixels: np.ndarray | None = None

    @property
    def erect(self) -> bool:
        return self.posture == "erect"

    @property
    def modifier(self) -> str:
        return "standing" if self.erect else self.posture


@dataclass
class DXSpec:
    name: str
    views: list
    shape: tuple = (384, 384)
    imager_spacing: float = 0.2
    magnification: float = 1.1
    scale: float = 0.3
    size: float = 0.7
    lesions: list = field(default_factory=list)
    z_center: float = -8.0  # x scale
    description: str = ""


def mu(hu):
    return MU_WATER * np.maximum(1.0 + np.asarray(hu, np.float32) / 1000.0, 0.0)


def _view_grid(view: DXView, center, shape, p, depth, dd):
    row = np.asarray(LETTERS[view.patient_orientation[0]], float)
    col = np.asarray(LETTERS[view.patient_orientation[1]], float)
    beam = np.asarray(view.beam, float)
    nd = int(np.ceil(depth / dd))
    grid = make_grid((nd, *shape), (dd, p, p), center, row, col)
    if not np.allclose(grid.direction[:, 0], beam) and not np.allclose(grid.direction[:, 0], -beam):
        raise ValueError(f"view {view.name}: beam {beam} is not normal to the image axes")
    return grid, row, col


def build_dx(spec: DXSpec, rng: np.random.Generator):
    an = make_anatomy(rng, "limb", spec.scale)
    p = spec.imager_spacing / spec.magnification
    rows, cols = spec.shape
    depth = 2.3 * max(an.semi_axes)
    center = np.array([float(an.body_center[0]), float(an.body_center[1]), spec.z_center * an.scale])
    # placement box: the image field (x, z) crossed with the body (y); all views share it
    fov = make_grid((int(rows * p / 2), int(depth / 2), int(cols * p / 2)), (2.0, 2.0, 2.0), center,
                    (1, 0, 0), (0, 1, 0))
    layout = Layout(an, fov, rng, size=spec.size)
    for item in spec.lesions:
        pattern, kw = item[0], dict(item[1]) if len(item) > 1 else {}
        for _ in range(item[2] if len(item) > 2 else 1):
            layout.place(pattern, **kw)
    views, cache = [], {}
    for view in spec.views:
        views.append(_project(view, spec, an, layout.lesions, center, p, depth, rng, cache))
    return an, views


def _project(view, spec, an, lesions, center, p, depth, rng, cache):
    rows, cols = spec.shape
    g = np.asarray(GRAVITY[view.posture], float)
    # anatomy on a 2x coarser grid, then upsampled (smooth structures)
    dd_c = max(0.6, 2 * p)
    cg, row, col = _view_grid(view, center, (rows // 2, cols // 2), 2 * p, depth, dd_c)
    key = (tuple(view.beam), tuple(view.patient_orientation))
    if key not in cache:  # the anatomy does not depend on posture; views sharing axes share it
        hu_c, bone_c = an.render(cg, want_bone=True)
        cache[key] = (mu(hu_c).sum(axis=0) * dd_c, bone_c.sum(axis=0) * dd_c)
        del hu_c, bone_c
    a_c, b_c = cache[key]
    ii, jj = np.meshgrid(np.arange(rows) / 2 - 0.25, np.arange(cols) / 2 - 0.25, indexing="ij")
    att = ndi.map_coordinates(a_c, [ii, jj], order=1, mode="nearest").astype(np.float32)
    bone_path = ndi.map_coordinates(b_c, [ii, jj], order=1, mode="nearest")
    # lesions on the full-resolution grid, each on its own crop, composited as extra attenuation
    dd = 0.4
    fg, _, _ = _view_grid(view, center, (rows, cols), p, depth, dd)
    w = fg.blur_width
    bone_gap_map = ndi.distance_transform_edt(bone_path < 1.0) * p
    in_plane = float(np.hypot(g @ row, g @ col))
    records = []
    for les in lesions:
        sl = fg.crop(les.center - les.radius, les.center + les.radius, margin=2 * w)
        if sl is None:
            continue
        x, y, z = fg.coords(sl)
        shp = tuple(s.stop - s.start for s in sl)
        env, lhu, calc = (np.broadcast_to(a, shp).astype(np.float32)
                          for a in les.render(x, y, z, g, w))
        bkey = (key, id(les))
        if bkey not in cache:
            cache[bkey] = mu(an.render(fg, sl))
        base = cache[bkey]
        att[sl[1], sl[2]] += (env * (mu(lhu) - base)).sum(axis=0) * dd
        path = calc.sum(axis=0) * dd
        records.append(_record(les, sl, path, calc, fg, an, g, row, col, p, in_plane, bone_gap_map))
    # detector: quantum noise on transmitted intensity, blur, then presentation processing
    n0 = 4.0e4
    trans = np.exp(-att) * n0
    att = att + rng.standard_normal(att.shape, dtype=np.float32) / np.sqrt(np.maximum(trans, 1.0))
    att = ndi.gaussian_filter(att, 0.6)
    att = att + 0.5 * (att - ndi.gaussian_filter(att, 12.0))  # unsharp mask, as processed DX
    top = (1 << view.bits) - 1
    lo, hi = -0.05, float(np.percentile(att, 99.9)) * 1.08
    v = np.clip((att - lo) / (hi - lo), 0, 1)
    stored = np.rint(v * top)
    if view.photometric == "MONOCHROME1":
        stored = top - stored
    view.pixels = stored.astype(np.uint16)
    return view, {"gravity": g, "in_plane": in_plane, "row": row, "col": col, "spacing": p,
                  "lesions": records}


def footprint(path: np.ndarray) -> np.ndarray:
    """A lesion's footprint on the image: pixels whose ray crosses >= 0.5 mm of its calcium (or,
    for a lesion thinner than that everywhere, >= half its largest path)."""
    foot = path >= 0.5
    return foot if foot.any() else path >= 0.5 * path.max()


def _record(les, sl, path, calc, fg, an, g, row, col, p, in_plane, bone_gap_map):
    foot = footprint(path)
    r, c = np.nonzero(foot)
    r, c = r + sl[1].start, c + sl[2].start
    pts = np.c_[c * p, r * p]
    m3 = calc >= 0.5
    idx = np.argwhere(m3) + np.array([s.start for s in sl])
    p3 = fg.index_to_lps(idx) if len(idx) else les.center[None]
    c3 = p3.mean(axis=0)
    level = les.level_loculi(g)
    if level:
        visible = in_plane >= IN_PLANE_MIN
        fl, flc = (1, len(level)) if visible else (None, None)
    else:
        fl, flc = 0, 0
    gi = np.array([g @ row, g @ col])
    return {
        "pattern": les.pattern,
        "variant": les.variant or None,
        "group": les.group or None,
        "centroid_image_mm": [round(float(pts[:, 0].mean()), 3), round(float(pts[:, 1].mean()), 3)],
        "area_mm2": round(float(foot.sum() * p * p), 2),
        "max_diameter_mm": round(max_diameter(pts), 2),
        "lobule_count": int(les.lobule_count),
        "fluid_level": fl,
        "fluid_level_count": flc,
        "has_sediment": bool(level),
        "interface_normal_image": (np.round(gi / np.linalg.norm(gi), 4).tolist()
                                   if level and np.linalg.norm(gi) > 1e-6 else None),
        "bone_distance_mm": round(float(bone_gap_map[r, c].min()), 2),
        "bone_distance_3d_mm": round(max(0.0, float(an.bone_sdf(p3).min())), 2),
        "skin_depth_mm": round(float(an.skin_depth(c3)), 2),
        "centroid_lps_mm": np.round(c3, 3).tolist(),
    }
