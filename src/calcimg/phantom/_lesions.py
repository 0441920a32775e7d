"""Lesion models, one per CONTRACT pattern, shaped after criteria-research section 1.

Each lesion is a function of LPS coordinates: ``render(x, y, z, gravity, w)`` returns, on the
coordinates given (a bounding-box crop), the fraction of each voxel inside the lesion envelope
(``env``), the HU of the lesion material there (``hu``) and the calcified fraction (``calc``).
Gravity only matters for sedimenting loculi. ``w`` is the partial-volume ramp width (mm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._geometry import frame_from_axis, local, ramp, sd_ellipsoid, unit

PATTERNS = ("tumoral_calcinosis", "calcific_tendinitis", "myositis_ossificans", "calcinosis_cutis",
            "vascular", "phlebolith", "lymph_node", "hydatid_cyst", "parasitic", "tumor_matrix",
            "dystrophic")


@dataclass
class Lesion:
    pattern: str
    center: np.ndarray
    radius: float  # bounding sphere (mm)
    variant: str = ""
    group: str = ""
    info: dict = field(default_factory=dict)

    def render(self, x, y, z, gravity, w):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def lobule_count(self) -> int:
        return 1

    def level_loculi(self, gravity) -> list:
        return []


def _blend(a, b, f):
    return a + (b - a) * f


@dataclass
class Cluster(Lesion):
    """Tumoral calcinosis: spheres (lobules) in a grape cluster, calcified walls, soft-tissue septa.

    Cystic lobules carry a dependent calcium sediment under a fluid supernatant, the interface
    perpendicular to gravity (the sedimentation sign); solid lobules are dense throughout.
    """

    centers: np.ndarray = None
    radii: np.ndarray = None
    kinds: np.ndarray = None  # 0 solid, 1 level
    level: np.ndarray = None  # interface height along gravity from each lobule centre (fraction of r)
    wall: float = 1.0
    septum: float = 1.0
    hu_wall: float = 750.0
    hu_fill: np.ndarray = None  # sediment or solid HU per lobule
    hu_fluid: np.ndarray = None

    @property
    def lobule_count(self) -> int:
        return len(self.radii)

    def _cells(self, x, y, z):
        """Nearest and second-nearest lobule (signed distance to the sphere surfaces)."""
        shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))
        d1 = np.full(shape, 1e3, np.float32)
        d2 = np.full(shape, 1e3, np.float32)
        i1 = np.zeros(shape, np.int16)
        for i, (c, r) in enumerate(zip(self.centers, self.radii, strict=True)):
            d = np.sqrt((x - float(c[0])) ** 2 + (y - float(c[1])) ** 2 + (z - float(c[2])) ** 2)
            d -= float(r)
            closer = d < d1
            np.minimum(d2, d, out=d2)
            d2[closer] = d1[closer]
            d1[closer] = d[closer]
            i1[closer] = i
        return i1, d1, d2

    def render(self, x, y, z, gravity, w):
        x, y, z = np.broadcast_arrays(x, y, z)
        i1, d1, d2 = self._cells(x, y, z)
        env = ramp(-d1 / w)
        e_sep = (d2 - d1) / 2 - self.septum / 2  # distance from the septum's edge
        sep = ramp(-e_sep / w)
        e = np.minimum(-d1, e_sep)
        inner = ramp((e - self.wall) / w)
        g = unit(gravity) if gravity is not None else np.zeros(3)
        pg = x * float(g[0]) + y * float(g[1]) + z * float(g[2])  # height along gravity
        thr = (self.centers @ g + self.level * self.radii).astype(np.float32)
        is_level = (self.kinds == 1)[i1]
        sed = np.where(is_level, ramp((pg - thr[i1]) / w), np.float32(1.0))
        f32 = np.float32
        fill = _blend(self.hu_fluid.astype(f32)[i1], self.hu_fill.astype(f32)[i1], sed)
        if self.variant == "solid":  # lacy texture in inactive lesions
            fill = fill * (0.85 + 0.15 * np.cos(0.9 * x) * np.cos(0.8 * y + 0.3 * z))
        body = _blend(self.hu_wall, fill, inner)
        hu = _blend(body, 40.0, sep)
        calc = env * (1 - sep) * ((1 - inner) + inner * sed)
        return env, hu, calc

    def level_loculi(self, gravity) -> list:
        g = unit(gravity)
        out = []
        for c, r, k, lv in zip(self.centers, self.radii, self.kinds, self.level, strict=True):
            if k == 1:
                out.append({"center_lps": c, "radius_mm": float(r),
                            "interface_point_lps": c + lv * r * g, "interface_normal_lps": g})
        return out


@dataclass
class Blob(Lesion):
    """Ellipsoid family: homogeneous deposit, zonal shell, rim with fluid core, central lucency."""

    rot: np.ndarray = None
    radii: tuple = (3.0, 2.0, 2.0)
    hu_calc: float = 800.0
    shell: float = 0.0  # > 0: only a shell of this thickness is calcified
    hu_core: float = 40.0
    core_frac: float = 0.0  # phlebolith / cysticercus lucent centre (fraction of the radii)
    texture: float = 0.0

    def render(self, x, y, z, gravity, w):
        u, v, t = local(x, y, z, self.center, self.rot)
        sd = sd_ellipsoid(u, v, t, self.radii)
        env = ramp(-sd / w)
        if self.shell > 0:
            calc_in = 1 - ramp((-sd - self.shell) / w)
        elif self.core_frac > 0:
            core = sd_ellipsoid(u, v, t, [r * self.core_frac for r in self.radii])
            calc_in = ramp(core / w)
        else:
            calc_in = np.ones_like(sd)
        hc = self.hu_calc
        if self.texture:
            hc = hc * (1 + self.texture * np.cos(2.2 * u) * np.cos(2.0 * v + 1.3 * t))
        hu = _blend(self.hu_core, hc, calc_in)
        return env, hu, env * calc_in


@dataclass
class BlobField(Lesion):
    """Irregular calcification from a sum of Gaussian blobs, optionally inside a soft-tissue mass
    (lymph node: mottled, irregular border; tumour matrix: densest centrally; dystrophic:
    amorphous)."""

    blobs: np.ndarray = None  # (k, 4): centre xyz, sigma
    mass_rot: np.ndarray = None
    mass_radii: tuple | None = None
    hu_mass: float = 40.0
    hu_calc: float = 500.0
    threshold: float = 0.5

    def render(self, x, y, z, gravity, w):
        x, y, z = np.broadcast_arrays(x, y, z)
        f = np.zeros(x.shape, np.float32)
        for bx, by, bz, s in self.blobs:
            f += np.exp(-((x - bx) ** 2 + (y - by) ** 2 + (z - bz) ** 2) / (2 * s * s))
        calc = ramp((f - self.threshold) / (0.12 * w))
        hc = self.hu_calc * np.clip(0.6 + 0.5 * f, 0.6, 1.4)
        if self.mass_radii is not None:
            u, v, t = local(x, y, z, self.center, self.mass_rot)
            env = ramp(-sd_ellipsoid(u, v, t, self.mass_radii) / w)
            calc = calc * env
            hu = _blend(self.hu_mass, hc, calc / np.maximum(env, 1e-6))
            return env, hu, calc
        return calc, hc, calc


@dataclass
class Vessel(Lesion):
    """Arterial wall calcification (tram track): patchy arcs of a tube wall along a segment."""

    a: np.ndarray = None
    b: np.ndarray = None
    r: float = 3.0
    wall: float = 1.0
    hu_calc: float = 700.0
    phase: float = 0.0

    def render(self, x, y, z, gravity, w):
        ax = self.b - self.a
        length = float(np.linalg.norm(ax))
        rot = frame_from_axis(ax)
        u, v, t = local(x, y, z, self.a, rot)
        rad = np.sqrt(v * v + t * t)
        inside_len = ramp(np.minimum(u, length - u) / w)
        env = ramp((self.r - rad) / w) * inside_len
        ang = np.arctan2(t, v)
        patch = np.cos(2 * ang + self.phase + 0.35 * u) > -0.3  # two opposite arcs, wandering
        patch |= np.cos(ang - 0.2 * u + 2 * self.phase) > 0.6
        wall = ramp((rad - (self.r - self.wall)) / w) * patch
        calc = env * wall
        hu = _blend(42.0, self.hu_calc, wall)
        return env, hu, calc


@dataclass
class Sheet(Lesion):
    """Calcinosis cutis: a thin plaque following the skin at a fixed depth (needs the body)."""

    body: object = None
    depth: float = 2.0
    thick: float = 1.5
    theta0: float = 0.0
    z0: float = 0.0
    half_len: float = 10.0
    half_wid: float = 3.0
    tilt: float = 0.0
    hu_calc: float = 600.0

    def render(self, x, y, z, gravity, w):
        x, y, z = np.broadcast_arrays(x, y, z)
        dep = -self.body.body_sdf(x, y, z)
        a, b = self.body.semi_axes
        cx, cy = self.body.body_center
        th = np.arctan2((y - cy) / b, (x - cx) / a)
        s = np.angle(np.exp(1j * (th - self.theta0))) * 0.5 * (a + b)  # arc length (mm)
        dz = z - self.z0
        c, sn = np.cos(self.tilt), np.sin(self.tilt)
        along, across = c * dz + sn * s, -sn * dz + c * s
        lat = ramp((self.half_len - np.abs(along)) / w) * ramp((self.half_wid - np.abs(across)) / w)
        rad = ramp((dep - self.depth) / w) * ramp((self.depth + self.thick - dep) / w)
        env = (lat * rad).astype(np.float32)
        return env, np.full(env.shape, self.hu_calc, np.float32), env
