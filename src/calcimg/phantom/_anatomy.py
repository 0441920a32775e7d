"""Analytic anatomy in LPS: body with skin, subcutaneous fat, muscle with fascial fat planes,
hip-like ball-and-socket joints (femur-like head, neck, trochanters and shaft; acetabulum-like
socket with iliac and ischiopubic parts), tendons at four insertions, femoral-like vessels.

HU values follow criteria-research 1.0 (air, fat, muscle, trabecular and cortical bone).
Bones are a union of signed-distance primitives, each evaluated only on its own bounding-box crop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._geometry import Grid, ramp, rotation, sd_box, sd_capsule, sd_sphere, unit


def _ramp_(t):
    """`ramp` in place on a fresh float32 array (t is consumed)."""
    t = np.asarray(t, dtype=np.float32)
    t += 0.5
    np.clip(t, 0.0, 1.0, out=t)
    return t

AIR, SKIN, FAT, MUSCLE, FASCIA, TENDON, BLOOD = -1000.0, 25.0, -105.0, 50.0, -90.0, 95.0, 42.0
BONE = {  # (cortex, trabecular, fatty medulla)
    False: (1500.0, 230.0, -30.0),
    True: (850.0, 85.0, -70.0),  # demineralised (metabolic / renal osteodystrophy variant)
}
TABLE_SHELL, TABLE_CORE = 220.0, -850.0


@dataclass
class Part:
    name: str
    fn: object  # (x, y, z) -> signed distance
    lo: np.ndarray
    hi: np.ndarray


@dataclass
class Joint:
    side: int  # +1 patient left, -1 patient right
    scale: float
    center: np.ndarray
    head_r: float
    neck_end: np.ndarray
    shaft_top: np.ndarray
    shaft_end: np.ndarray
    shaft_r: float
    troch: np.ndarray
    troch_r: float
    tendons: list  # [(a, b, r), ...]: gluteal (greater trochanter), iliopsoas (lesser trochanter),
    #                 gluteus maximus (gluteal tuberosity), hamstrings (ischial tuberosity)
    artery: tuple  # (a, b, r)
    vein: tuple
    station: np.ndarray  # inguinal-like nodal station
    parts: list = field(default_factory=list)
    cavity_r: float = 0.0  # the socket's inner radius: the joint space is head_r < r < cavity_r

    @property
    def shaft_axis(self) -> np.ndarray:
        return unit(self.shaft_end - self.shaft_top)


def _make_joint(center, side: int, sc: float) -> Joint:
    J = np.asarray(center, float)
    S = np.array([side, 1.0, 1.0])  # mirror x for the right side

    def at(v):
        return J + S * np.asarray(v, float) * sc

    head_r = 24 * sc
    neck_end = at((40, 2, -32))
    shaft_top = at((46, 2, -40))
    shaft_end = at((60, 4, -480))
    shaft_r = max(14 * sc, 4.0)
    troch, troch_r = at((54, 8, -26)), 15 * sc
    lesser = at((34, 12, -70))
    tend_a = troch + S * np.array([3, 0, 14]) * sc
    ilio_a = lesser + S * np.array([-4, -6, 4]) * sc
    isch = (at((-14, 14, -22)), at((-58, -8, -48)), 9 * sc)
    # gluteus maximus: gluteal tuberosity, posterolateral on the proximal shaft
    sax = unit(shaft_end - shaft_top)
    out = S * np.array([1.0, 1.0, 0.0])
    out = unit(out - (out @ sax) * sax)
    gmax_a = shaft_top + sax * 70 * sc + out * (shaft_r - 0.5)
    # hamstrings: ischial tuberosity, posteroinferior on the ischium
    iax = unit(isch[1] - isch[0])
    down = np.array([0.0, 1.0, -1.0])
    down = unit(down - (down @ iax) * iax)
    ham_a = isch[0] + 0.6 * (isch[1] - isch[0]) + down * (isch[2] - 0.5)
    # (insertion on bone, free end, radius): the insertion point lies just inside the cortex
    tendons = [(tend_a, tend_a + S * np.array([-16, 6, 60]) * sc, 3.5 * sc + 0.8),
               (ilio_a, ilio_a + S * np.array([-12, -30, 75]) * sc, 4.0 * sc + 0.8),
               (gmax_a, gmax_a + S * np.array([16, 24, 55]) * sc, 3.0 * sc + 0.8),
               (ham_a, ham_a + S * np.array([8, 10, -70]) * sc, 3.5 * sc + 0.8)]
    ra, rv = 4.0 * sc + 1.0, 5.0 * sc + 1.2
    art_a, art_b = at((-14, -44, 90)), at((6, -34, -300))
    dv = S * np.array([-(ra + rv + 1.5 * sc + 1.0), 0, 0])
    artery, vein = (art_a, art_b, ra), (art_a + dv, art_b + dv, rv)
    j = Joint(side, sc, J, head_r, neck_end, shaft_top, shaft_end, shaft_r, troch, troch_r,
              tendons, artery, vein, at((-30, -50, 25)))

    r_in, r_out = head_r + 2.5 * sc + 0.5, head_r + 14 * sc
    m = unit(S * np.array([-1.0, 0.0, 0.75]))

    def socket(x, y, z):
        dx, dy, dz = x - J[0], y - J[1], z - J[2]
        r = np.sqrt(dx * dx + dy * dy + dz * dz)
        cut = -(dx * m[0] + dy * m[1] + dz * m[2] + 0.15 * head_r)
        return np.maximum(np.maximum(r - r_out, r_in - r), cut)

    il_c, il_rot = at((-22, 10, 62)), rotation((0, 1, 0), side * 18)
    il_half = (7 * sc + 1, 42 * sc, 48 * sc)
    il_round = 0.9 * il_half[0]  # rounded edges: a plate, not a brick

    def ischium(x, y, z):  # minus the joint cavity: it meets the socket, not the femoral head
        dx, dy, dz = x - J[0], y - J[1], z - J[2]
        return np.maximum(sd_capsule(x, y, z, *isch), r_in - np.sqrt(dx * dx + dy * dy + dz * dz))

    def box_bounds(c, rot, half):
        ext = np.abs(rot) @ np.asarray(half)
        return c - ext, c + ext

    def cap_bounds(a, b, r):
        return np.minimum(a, b) - r, np.maximum(a, b) + r

    parts = [
        Part("head", lambda x, y, z: sd_sphere(x, y, z, J, head_r), J - head_r, J + head_r),
        Part("neck", lambda x, y, z: sd_capsule(x, y, z, J, neck_end, 13 * sc),
             *cap_bounds(J, neck_end, 13 * sc)),
        Part("shaft", lambda x, y, z: sd_capsule(x, y, z, shaft_top, shaft_end, shaft_r),
             *cap_bounds(shaft_top, shaft_end, shaft_r)),
        Part("greater_trochanter", lambda x, y, z: sd_sphere(x, y, z, troch, troch_r),
             troch - troch_r, troch + troch_r),
        Part("lesser_trochanter", lambda x, y, z: sd_sphere(x, y, z, lesser, 8 * sc),
             lesser - 8 * sc, lesser + 8 * sc),
        Part("socket", socket, J - r_out, J + r_out),
        Part("ilium", lambda x, y, z: sd_box(x, y, z, il_c, il_rot,
                                              [h - il_round for h in il_half]) - il_round,
             *box_bounds(il_c, il_rot, il_half)),
        Part("ischium", ischium, *cap_bounds(*isch)),
    ]
    j.parts = parts
    j.cavity_r = r_in
    return j


#: The parts of a joint that make the femur; the others make the hip bone.
FEMUR_PARTS = ("head", "neck", "shaft", "greater_trochanter", "lesser_trochanter")
#: Joint gap of the truth: non-bone points within half of this (mm) of two different bones
#: (criteria-research 2.6 d_joint, the 10 mm estimate that calcimg's setting also uses).
JOINT_GAP_MM = 10.0


def _intersect(a, b):
    if a is None or b is None:
        return None
    out = tuple(slice(max(p.start, q.start), min(p.stop, q.stop)) for p, q in zip(a, b, strict=True))
    return None if any(s.stop <= s.start for s in out) else out


def _rel(inner, outer):
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer, strict=True))


@dataclass
class Anatomy:
    """A hip-region body; ``scale`` 1 is adult size, the test preset uses about a third."""

    scale: float
    body_center: np.ndarray  # (x, y) LPS mm
    semi_axes: tuple[float, float]
    joints: list
    demineralised: bool = False
    skin_t: float = 1.6
    fat_t: float = 10.0
    harmonics: tuple = ((0.04, 0.3), (0.02, 1.1))  # radial perturbation (amplitude, phase)
    planes: list = field(default_factory=list)  # (qx, qy, nx, ny, dx, dy, half_thickness)
    extra_parts: list = field(default_factory=list)
    tex: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    _gap_tree: object = field(default=None, repr=False, compare=False)

    # -- body outline -------------------------------------------------------------------------
    def _widen(self, z):
        z0 = float(np.mean([j.center[2] for j in self.joints]))
        return 1.0 + 0.08 * np.tanh((z - z0) / (80.0 * self.scale))  # wider towards the pelvis

    def _delta(self, theta):
        (a2, p2), (a3, p3) = ((float(a), float(p)) for a, p in self.harmonics)
        return a2 * np.cos(2 * theta + p2) + a3 * np.cos(3 * theta + p3)

    def body_sdf(self, x, y, z):
        a, b = (float(v) for v in self.semi_axes)
        dx, dy = x - float(self.body_center[0]), y - float(self.body_center[1])
        one_d = 1.0 + self._delta(np.arctan2(dy / b, dx / a))
        dx, dy = dx / one_d, dy / one_d
        k0 = np.sqrt((dx / a) ** 2 + (dy / b) ** 2)
        k1 = np.maximum(np.sqrt((dx / a**2) ** 2 + (dy / b**2) ** 2), 1e-9)
        return (k0 / k1 * one_d) * (k0 - self._widen(z))  # 2D factors, one 3D product

    def outline(self, z: float, n: int = 4096) -> np.ndarray:
        """Body outline (n, 2) in the axial plane at height ``z``."""
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        r = (1 + self._delta(t)) * self._widen(z)
        a, b = self.semi_axes
        return np.stack([self.body_center[0] + a * r * np.cos(t),
                         self.body_center[1] + b * r * np.sin(t)], axis=1)

    def skin_depth(self, p) -> float:
        """Distance (mm) from an LPS point inside the body to the skin surface (axial plane)."""
        p = np.asarray(p, float)
        o = self.outline(p[2])
        d = float(np.min(np.hypot(o[:, 0] - p[0], o[:, 1] - p[1])))
        return d if self.body_sdf(p[0], p[1], p[2]) <= 0 else -d

    def fat_thickness(self, x, y):
        theta = np.arctan2(y - float(self.body_center[1]), x - float(self.body_center[0]))
        return float(self.fat_t) * (1.0 + 0.35 * np.sin(theta))  # thicker posteriorly (+y)

    # -- bones --------------------------------------------------------------------------------
    @property
    def parts(self) -> list:
        return [p for j in self.joints for p in j.parts] + self.extra_parts

    def bone_sdf(self, pts) -> np.ndarray:
        """Signed distance (mm) to bone at LPS points (N, 3): negative inside bone."""
        pts = np.atleast_2d(np.asarray(pts, float))
        x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
        return np.min([p.fn(x, y, z) for p in self.parts], axis=0)

    def bones(self) -> list[list[Part]]:
        """The separate bones, each a list of parts: per joint the femur and the hip bone, then
        each extra part (the sacrum)."""
        out = []
        for j in self.joints:
            out.append([p for p in j.parts if p.name in FEMUR_PARTS])
            out.append([p for p in j.parts if p.name not in FEMUR_PARTS])
        return out + [[p] for p in self.extra_parts]

    def joint_gap_points(self, gap_mm: float = JOINT_GAP_MM, step: float = 0.5) -> np.ndarray:
        """Points (LPS, (n, 3)) sampling the joint gaps every `step` mm: outside all bone and within
        ``gap_mm / 2`` of two different bones. Searched on a 2 x `step` grid first, then refined."""
        h, coarse = 0.5 * gap_mm, 2.0 * step
        bones = self.bones()
        lo = [np.min([p.lo for p in b], axis=0) for b in bones]
        hi = [np.max([p.hi for p in b], axis=0) for b in bones]

        def sdf(parts, pts):
            return np.min([p.fn(pts[:, 0], pts[:, 1], pts[:, 2]) for p in parts], axis=0)

        found = []
        for a in range(len(bones)):
            for b in range(a + 1, len(bones)):
                blo, bhi = np.maximum(lo[a], lo[b]) - h, np.minimum(hi[a], hi[b]) + h
                if np.any(bhi <= blo):
                    continue
                axes = [np.arange(u, v + coarse, coarse) for u, v in zip(blo, bhi, strict=True)]
                pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
                slack = coarse * np.sqrt(3) / 2  # a coarse cell's corner is this far from its centre
                for parts in (bones[a], bones[b]):
                    d = sdf(parts, pts)
                    pts = pts[(d >= -slack) & (d <= h + slack)]
                if not len(pts):
                    continue
                sub = np.stack(np.meshgrid(*[(-0.25 * coarse, 0.25 * coarse)] * 3, indexing="ij"), -1).reshape(-1, 3)
                pts = (pts[:, None, :] + sub[None]).reshape(-1, 3)
                da, db = sdf(bones[a], pts), sdf(bones[b], pts)
                pts = pts[(da >= 0) & (da <= h) & (db >= 0) & (db <= h)]
                if len(pts):
                    found.append(pts[self.bone_sdf(pts) >= 0])
        return np.concatenate(found) if found else np.zeros((0, 3))

    def joint_distance(self, pts) -> float:
        """Distance (mm) from the nearest of the LPS points (n, 3) to a joint gap sampled every
        0.5 mm (`joint_gap_points`): 0 when one lies in a gap (within the sampling's half
        diagonal, 0.43 mm), NaN when the anatomy has no joint gap."""
        if self._gap_tree is None:
            from scipy.spatial import cKDTree

            self._gap_tree = cKDTree(self.joint_gap_points())
        if self._gap_tree.n == 0:
            return float("nan")
        d = float(self._gap_tree.query(np.atleast_2d(np.asarray(pts, float)))[0].min())
        return 0.0 if d <= 0.25 * np.sqrt(3) else d

    def _bone_block(self, grid: Grid, blk, parts, x, y, z):
        sd = np.full(tuple(s.stop - s.start for s in blk), 1e3, np.float32)
        for p in parts:
            c = _intersect(grid.crop(p.lo, p.hi, margin=3.0), blk)
            if c is None:
                continue
            xx, yy, zz = grid.coords(c)
            r = _rel(c, blk)
            np.minimum(sd[r], p.fn(xx, yy, zz), out=sd[r])
        return sd

    # -- rendering ----------------------------------------------------------------------------
    def render(self, grid: Grid, sl=None, gravity=None, table: bool = False, want_bone=False):
        """HU of the anatomy on ``grid`` (or its crop ``sl``), anti-aliased (partial volume)."""
        if sl is None:
            sl = tuple(slice(0, n) for n in grid.shape)
        shape = tuple(s.stop - s.start for s in sl)
        w = grid.blur_width
        x, y, z = grid.coords(sl)
        depth = self.body_sdf(x, y, z)
        np.negative(depth, out=depth)
        depth = np.broadcast_to(depth, shape).astype(np.float32, copy=False)
        fat_t = self.fat_thickness(x, y)
        t = depth - (self.skin_t + 0.5 * w)  # skin -> fat boundary, in mm
        tissue = _ramp_(t / w) * (FAT - SKIN) + SKIN
        t -= fat_t
        to_muscle = _ramp_(t / w)
        del t
        tissue += to_muscle * (MUSCLE - FAT)
        fascia = None  # vertical planes: a 2D map on axis-aligned grids, one 3D blend
        for qx, qy, nx, ny, ux, uy, half, start in self.planes:
            px, py = x - qx, y - qy
            f = _ramp_((half - np.abs(px * nx + py * ny)) / w) * ((px * ux + py * uy) > start)
            fascia = f if fascia is None else np.maximum(fascia, f)
        if fascia is not None and np.any(fascia):
            f = to_muscle * fascia
            tissue += (FASCIA - tissue) * f
            del f
        fb = _ramp_(depth * (1.0 / w) + 0.5)
        hu = tissue
        hu -= AIR
        hu *= fb
        hu += AIR
        del depth, fb
        for j in self.joints:  # vessels in fat sheaths, tendon
            for (a, b, r), val, grow in ((j.artery, FAT, 2.5 * j.scale + 1.0),
                                         (j.vein, FAT, 2.5 * j.scale + 1.0),
                                         (j.artery, BLOOD, 0.0), (j.vein, BLOOD, 0.0),
                                         *((t, TENDON, 0.0) for t in j.tendons)):
                c = _intersect(grid.crop(np.minimum(a, b) - r - grow, np.maximum(a, b) + r + grow,
                                         margin=2.0), sl)
                if c is None:
                    continue
                xx, yy, zz = grid.coords(c)
                f = ramp(-sd_capsule(xx, yy, zz, a, b, r + grow) / w)
                rr = _rel(c, sl)
                f = f * to_muscle[rr] if grow else f
                hu[rr] += (val - hu[rr]) * f

        if table and gravity is not None:
            self._table(grid, sl, hu, np.asarray(gravity, float), w)

        bone = np.zeros(shape, np.float32) if want_bone else None
        cortex_hu, trab_hu, med_hu = BONE[self.demineralised]
        groups = [j.parts for j in self.joints] + ([self.extra_parts] if self.extra_parts else [])
        for gi, parts in enumerate(groups):
            lo = np.min([p.lo for p in parts], axis=0)
            hi = np.max([p.hi for p in parts], axis=0)
            blk = _intersect(grid.crop(lo, hi, margin=3.0), sl)
            if blk is None:
                continue
            sd = self._bone_block(grid, blk, parts, x, y, z)
            inside = sd < 0.5 * w
            if not inside.any():
                continue
            xx, yy, zz = (np.broadcast_to(v, sd.shape)[inside] for v in grid.coords(blk))
            s = sd[inside]
            cort_t = np.full(s.shape, 0.8 + 1.2 * self.scale, np.float32)
            marrow = trab_hu + 70.0 * self._texture(xx, yy, zz)
            if gi < len(self.joints):
                jt = self.joints[gi]
                ax = jt.shaft_axis
                t = ((xx - jt.shaft_top[0]) * ax[0] + (yy - jt.shaft_top[1]) * ax[1]
                     + (zz - jt.shaft_top[2]) * ax[2])
                dia = np.clip((t - 40 * jt.scale) / (40 * jt.scale), 0, 1)  # metaphysis->diaphysis
                cort_t = cort_t + dia * (0.33 * jt.shaft_r - cort_t)
                marrow = marrow + dia * (med_hu + 15.0 * self._texture(xx, yy, zz) - marrow)
            frac = ramp(-s / w)
            val = cortex_hu + (marrow - cortex_hu) * ramp((-s - cort_t) / w)
            rb = _rel(blk, sl)
            sub = hu[rb]
            cur = sub[inside]
            sub[inside] = cur + (val - cur) * frac
            hu[rb] = sub
            if want_bone:
                bsub = bone[rb]
                bsub[inside] = np.maximum(bsub[inside], frac)
                bone[rb] = bsub
        return (hu, bone) if want_bone else hu

    def _texture(self, x, y, z):
        out = np.zeros(np.shape(x), np.float32)
        for kx, ky, kz, ph in self.tex:
            out += np.cos(kx * x + ky * y + kz * z + ph)
        return out / max(1.0, np.sqrt(len(self.tex) / 2.0))

    def _table(self, grid, sl, hu, g, w):
        """A CT table (two carbon shells around foam) just below the body along gravity."""
        o = self.outline(float(np.mean([j.center[2] for j in self.joints])))
        pts = np.c_[o, np.zeros(len(o))]
        low = float(np.max(pts @ g)) + 6.0
        side = np.cross(g, [0, 0, 1.0])
        width = float(np.ptp(pts @ side)) * 0.55
        c = np.r_[self.body_center, 0.0]
        c = c - (c @ g) * g + (low + 9.0) * g
        c[2] = float(np.mean([j.center[2] for j in self.joints]))
        rot = np.stack([unit(g), unit(side), [0, 0, 1.0]], axis=1)
        half = (9.0, width, 2000.0)
        box = grid.crop(c - np.abs(rot) @ half, c + np.abs(rot) @ half, margin=2.0)
        box = _intersect(box, sl)
        if box is None:
            return
        xx, yy, zz = grid.coords(box)
        sd = sd_box(xx, yy, zz, c, rot, half)
        shell = ramp(-sd / w)
        core = ramp((-sd - 2.0) / w)
        val = TABLE_SHELL + (TABLE_CORE - TABLE_SHELL) * core
        r = _rel(box, sl)
        hu[r] += (val - hu[r]) * shell


def make_anatomy(rng: np.random.Generator, kind: str = "limb", scale: float = 1.0,
                 demineralised: bool = False) -> Anatomy:
    """``kind`` "limb": one (left) hip region; "pelvis": both hips in one body."""
    sc = scale
    if kind == "limb":
        joints = [_make_joint((0.0, 0.0, 0.0), +1, sc)]
        center, axes = np.array([18 * sc, 5 * sc]), (95 * sc, 84 * sc)
    elif kind == "pelvis":
        joints = [_make_joint((95 * sc, 0.0, 0.0), +1, sc), _make_joint((-95 * sc, 0.0, 0.0), -1, sc)]
        center, axes = np.array([0.0, 12 * sc]), (195 * sc, 128 * sc)
    else:
        raise ValueError(f"unknown anatomy kind {kind!r}: use 'limb' or 'pelvis'")
    harm = ((rng.uniform(0.02, 0.05), rng.uniform(0, 2 * np.pi)),
            (rng.uniform(0.01, 0.025), rng.uniform(0, 2 * np.pi)))
    planes = []
    for j in joints:
        q = np.r_[j.shaft_top[:2]]
        for ang in rng.uniform(0, 2 * np.pi, size=3):
            u = np.array([np.cos(ang), np.sin(ang)])
            planes.append((float(q[0]), float(q[1]), float(-u[1]), float(u[0]), float(u[0]),
                           float(u[1]), 0.6 + 0.5 * sc, 1.4 * j.shaft_r))
    k = 2 * np.pi / rng.uniform(2.0, 3.2, size=6)
    dirs = rng.normal(size=(6, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    tex = np.c_[dirs * k[:, None], rng.uniform(0, 2 * np.pi, 6)]
    extra = []
    if kind == "pelvis":  # sacrum-like midline plate
        c, rot, half = np.array([0, 75 * sc, 40 * sc]), rotation((1, 0, 0), -25), (45 * sc, 14 * sc, 55 * sc)
        ext = np.abs(rot) @ np.asarray(half)
        extra.append(Part("sacrum", lambda x, y, z: sd_box(x, y, z, c, rot, half), c - ext, c + ext))
    return Anatomy(sc, center, axes, joints, demineralised, skin_t=1.2 + 0.6 * sc,
                   fat_t=5.0 + 9.0 * sc, harmonics=harm, planes=planes, extra_parts=extra, tex=tex)
