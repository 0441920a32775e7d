"""Sampling grids in DICOM patient space (LPS), postures, and signed-distance primitives.

Everything in the phantom is a function of LPS coordinates (mm). A `Grid` maps array indices to
LPS exactly as a DICOM series does, so the oblique study is sampled correctly by construction.
Coordinates are handed around as three broadcastable arrays ``(x, y, z)``: on an axis-aligned
grid ``x`` only varies along one array axis, so 2D work (body outline, fascial planes) stays 2D.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Gravity (LPS) and the scanner's image axes for each posture: row cosine = direction of
# increasing column index (scanner +x), column cosine = direction of increasing row index
# (scanner +y, towards the table). In every posture gravity therefore points down the display.
POSTURES: dict[str, dict] = {
    "supine": {"patient_position": "HFS", "gravity": (0, 1, 0), "row": (1, 0, 0), "col": (0, 1, 0)},
    "prone": {"patient_position": "HFP", "gravity": (0, -1, 0), "row": (-1, 0, 0), "col": (0, -1, 0)},
    "left_decubitus": {
        "patient_position": "HFDL", "gravity": (1, 0, 0), "row": (0, -1, 0), "col": (1, 0, 0)},
    "right_decubitus": {
        "patient_position": "HFDR", "gravity": (-1, 0, 0), "row": (0, 1, 0), "col": (-1, 0, 0)},
}


def rotation(axis, degrees: float) -> np.ndarray:
    """Rotation matrix about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    t = np.deg2rad(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def frame_from_axis(axis, spin_deg: float = 0.0) -> np.ndarray:
    """A rotation matrix whose first column is ``axis``; ``spin_deg`` turns the other two about it."""
    u = unit(axis)
    helper = np.array([0.0, 0.0, 1.0]) if abs(u[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    v = unit(np.cross(u, helper))
    w = np.cross(u, v)
    t = np.deg2rad(spin_deg)
    v, w = np.cos(t) * v + np.sin(t) * w, -np.sin(t) * v + np.cos(t) * w
    return np.stack([u, v, w], axis=1)


def ramp(t):
    """Partial-volume fraction for a signed distance ``t`` in voxel units (inside positive)."""
    return np.clip(t + 0.5, 0.0, 1.0)


@dataclass(frozen=True)
class Grid:
    """Voxel grid: index ``(k, i, j)`` -> ``origin + k*s0*d0 + i*s1*d1 + j*s2*d2`` (LPS mm).

    ``direction`` columns follow `calcimg.scan.Scan`: column 0 the slice normal, column 1 the DICOM
    column cosine (increasing row index), column 2 the row cosine (increasing column index).
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: np.ndarray
    direction: np.ndarray

    @property
    def affine(self) -> np.ndarray:
        return self.direction * np.asarray(self.spacing)[None, :]

    @property
    def voxel_volume(self) -> float:
        return float(abs(np.linalg.det(self.affine)))

    @property
    def blur_width(self) -> float:
        """Width (mm) of the partial-volume ramp: RMS voxel extent."""
        return float(np.sqrt(np.mean(np.square(self.spacing))))

    def index_to_lps(self, idx) -> np.ndarray:
        return self.origin + np.asarray(idx, dtype=float) @ self.affine.T

    def lps_to_index(self, pts) -> np.ndarray:
        return (np.asarray(pts, dtype=float) - self.origin) @ np.linalg.inv(self.affine).T

    def coords(self, sl: tuple[slice, slice, slice] | None = None, dtype=np.float32):
        """Broadcastable LPS coordinate arrays ``(x, y, z)`` of the voxels in ``sl``."""
        if sl is None:
            sl = tuple(slice(0, n) for n in self.shape)
        idx = []
        for a, s in enumerate(sl):
            r = np.arange(s.start, s.stop, dtype=np.float64) * self.spacing[a]
            shp = [1, 1, 1]
            shp[a] = r.size
            idx.append(r.reshape(shp))
        out = []
        for c in range(3):
            acc = np.full((1, 1, 1), self.origin[c], dtype=np.float64)
            for a in range(3):
                if abs(self.direction[c, a]) > 1e-12:
                    acc = acc + idx[a] * self.direction[c, a]
            out.append(acc.astype(dtype))
        return tuple(out)

    def crop(self, lo, hi, margin: float = 0.0) -> tuple[slice, slice, slice] | None:
        """Index slices covering the LPS box ``[lo, hi]`` grown by ``margin`` mm; None if outside."""
        lo = np.asarray(lo, float) - margin
        hi = np.asarray(hi, float) + margin
        corners = np.array([[(lo, hi)[b][c] for c, b in enumerate(bits)]
                            for bits in np.ndindex(2, 2, 2)])
        ind = self.lps_to_index(corners)
        a0 = np.floor(ind.min(axis=0)).astype(int)
        a1 = np.ceil(ind.max(axis=0)).astype(int) + 1
        a0 = np.maximum(a0, 0)
        a1 = np.minimum(a1, self.shape)
        if np.any(a1 <= a0):
            return None
        return tuple(slice(int(s), int(e)) for s, e in zip(a0, a1, strict=True))

    def contains(self, pts, margin_mm: float = 0.0) -> np.ndarray:
        """True where points lie inside the grid box, at least ``margin_mm`` from its faces."""
        ind = self.lps_to_index(np.atleast_2d(pts))
        m = margin_mm / np.asarray(self.spacing)
        hi = np.asarray(self.shape) - 1
        return np.all((ind >= m) & (ind <= hi - m), axis=-1)


def make_grid(shape, spacing, center, row_cos, col_cos, offset=(0.0, 0.0, 0.0)) -> Grid:
    """Grid of ``shape`` (slices, rows, cols) centred on ``center`` with the given IOP cosines."""
    row_cos = unit(row_cos)
    col_cos = unit(col_cos)
    normal = np.cross(row_cos, col_cos)
    direction = np.stack([normal, col_cos, row_cos], axis=1)
    half = (np.asarray(shape) - 1) / 2.0 * np.asarray(spacing)
    origin = np.asarray(center, float) - direction @ half + np.asarray(offset, float)
    return Grid(tuple(int(n) for n in shape), tuple(float(s) for s in spacing), origin, direction)


# -- signed-distance primitives (negative inside), on broadcastable coordinate arrays ---------

def sd_sphere(x, y, z, c, r):
    return np.sqrt((x - float(c[0])) ** 2 + (y - float(c[1])) ** 2 + (z - float(c[2])) ** 2) - float(r)


def sd_capsule(x, y, z, a, b, r):
    a = np.asarray(a, float)
    ba = np.asarray(b, float) - a
    inv = 1.0 / float(ba @ ba)
    (a0, a1, a2), (b0, b1, b2) = (float(v) for v in a), (float(v) for v in ba)
    px, py, pz = x - a0, y - a1, z - a2
    h = np.clip((px * b0 + py * b1 + pz * b2) * inv, 0.0, 1.0)
    return np.sqrt((px - b0 * h) ** 2 + (py - b1 * h) ** 2 + (pz - b2 * h) ** 2) - float(r)


def local(x, y, z, c, rot):
    """Coordinates in a frame centred at ``c`` whose axes are the columns of ``rot``."""
    dx, dy, dz = x - float(c[0]), y - float(c[1]), z - float(c[2])
    r = [[float(v) for v in row] for row in np.asarray(rot)]
    return tuple(dx * r[0][k] + dy * r[1][k] + dz * r[2][k] for k in range(3))


def sd_box(x, y, z, c, rot, half):
    u = local(x, y, z, c, rot)
    q = [np.abs(u[k]) - half[k] for k in range(3)]
    outside = np.sqrt(sum(np.maximum(qk, 0.0) ** 2 for qk in q))
    inside = np.minimum(np.maximum(np.maximum(q[0], q[1]), q[2]), 0.0)
    return outside + inside


def sd_ellipsoid(u, v, w, radii):
    """Approximate signed distance to an axis-aligned ellipsoid (exact on the surface normal scale)."""
    a, b, c = radii
    k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2)
    k1 = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2 + (w / c**2) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)
