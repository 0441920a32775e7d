"""Joint gaps: where two bones come close, found once per scan (criteria-research 2.6, ``d_joint``).

A joint gap is the non-bone region lying within half of ``joint_gap_mm`` (5 mm) of two different
bones. The lesion features measure their distance to it (``joint_distance_mm``) and whether they
lie inside it (intra-articular).

Steps:

1. Bones. CT: the 6-connected components of the bone mask's voxels at or above the calcium
   threshold (``threshold_hu``). The bone mask is filled slice by slice, which closes narrow joint
   spaces (a femoral head in its socket) together with the marrow; the HU test reopens them. The
   work follows the bone, not the volume: the rows holding bone, their runs of bone at or above
   the threshold (numba), joined by union-find over runs (`segment._runs`). On slices thicker
   than ``bone_split_max_slice_mm`` every bone touches its neighbours from one slice to the next
   (a chest's whole skeleton is one component on 8 mm slices), so bones are taken slice by slice
   (4-connected in the slice) and joints are sought within each slice only.
   Radiographs: the 4-connected components of the bone mask. Bones smaller than a cube (square)
   of side ``joint_min_bone_mm`` are dropped.
2. Pairs: bones whose bounding boxes come within ``joint_gap_mm`` of each other.
3. On a grid of about `CELL_MM` (a voxel sampled every few voxels per axis), per pair and only
   where both bones can be in reach: distance transforms to each bone's cells at or above the
   bone's surface HU (half maximum, as for ``bone_distance_mm``: the threshold set is widened by
   the scanner's blur); grid cells within reach of both and not bone are the gap. The reach is
   half of ``joint_gap_mm`` plus half a cell: the grid distance runs from cell centre to cell
   centre, and the bone's surface lies on average half a cell beyond its last cell.
4. `JointGaps` keeps the gap cells: a KD-tree of their centres (array-axis mm) for distances and
   their sorted flat indices for inside tests. A lesion's distance runs to the union of the gap
   cells (boxes of a cell around their centres), so a point inside a gap cell is at 0.

Accuracy, on the hip phantoms (lesion voxels to the analytic gap): 0.3 +- 0.5 mm short on the
bench preset (2 x 1.6 x 1.6 mm cells), 1.1 +- 0.5 mm short on a 1 mm grid (2 mm cells): the gap's
sampled border sticks out by up to half a cell, and the smallest distance finds where it does.
Cost on the bench volume (512 x 512 x 400, 1 mm slices): about 0.09 s, half of it the labelling.

Limitations: bones fused on the image (a joint narrower than about a voxel at the threshold, an
ankylosis, bone outlines merged by projection on a radiograph) form one component and no gap; a
bone cut twice by a thick slice gives two pieces and a false gap between them; marrow under the
threshold next to another bone counts as gap; on radiographs the gap is the projected one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import cc3d
import edt
import numpy as np
from scipy.spatial import cKDTree

from calcimg.scan import Scan
from calcimg.segment._runs import HAVE_NUMBA, Runs, components_from_runs, label_runs_scipy
from calcimg.settings import Settings

#: Grid cell of the gap search (mm, per axis the nearest whole number of voxels): distances come
#: out to about half of it; the search costs the bones' boxes over this cell cubed.
CELL_MM = 2.0

if HAVE_NUMBA:
    import numba

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def _hard_runs(bone, vol, rows, thr, ptr, o_row, o_start, o_stop, fill):  # pragma: no cover - compiled
        """Runs of ``bone & (vol >= thr)`` on the given rows of 2D (rows, x) views: counts into
        ``ptr[k + 1]`` when not `fill`, else the runs at ``ptr[k]``."""
        nx = bone.shape[1]
        for k in range(rows.shape[0]):
            r = rows[k]
            c = ptr[k] if fill else 0
            prev = False
            for x in range(nx):
                cur = bone[r, x] != 0 and vol[r, x] >= thr
                if cur and not prev:
                    if fill:
                        o_row[c] = r
                        o_start[c] = x
                    else:
                        c += 1
                elif prev and not cur:
                    if fill:
                        o_stop[c] = x
                        c += 1
                prev = cur
            if prev and fill:
                o_stop[c] = nx
            if not fill:
                ptr[k + 1] = c


def _ct_bones(scan: Scan, bone: np.ndarray, threshold_hu: float, min_voxels: int, slicewise: bool = False) -> Runs:
    """6-connected components of ``bone & (HU >= threshold_hu)`` as runs (see the module docstring);
    `slicewise`: 4-connected within each slice, none across slices."""
    vol = np.ascontiguousarray(scan.pixels)
    bone = np.ascontiguousarray(bone)
    nz, ny, nx = vol.shape
    if not HAVE_NUMBA:  # pragma: no cover - numba is a dependency
        mask = np.ascontiguousarray(bone & (vol >= threshold_hu))
        if slicewise:
            mask[:, 0] = False
            mask = mask.reshape(1, nz * ny, nx)
        runs = label_runs_scipy(mask.view(np.uint8), 1, connectivity=6, min_voxels=min_voxels)
        return _unstack(runs, vol.shape) if slicewise else runs
    b2, v2 = bone.view(np.uint8).reshape(-1, nx), vol.reshape(-1, nx)
    rows = np.flatnonzero(bone.reshape(-1, nx).any(axis=1))  # numpy's any: far faster than a scan
    if slicewise:  # the slices stacked into one tall image; each slice's first row left out, so
        rows = rows[rows % ny != 0]  # that no component runs on from one slice into the next
    thr = vol.dtype.type(threshold_hu) if vol.dtype.kind == "f" else vol.dtype.type(np.ceil(threshold_hu))
    ptr = np.zeros(rows.shape[0] + 1, np.int64)
    none64, none32 = np.zeros(0, np.int64), np.zeros(0, np.int32)
    _hard_runs(b2, v2, rows, thr, ptr, none64, none32, none32, False)
    np.cumsum(ptr, out=ptr)
    total = int(ptr[-1])
    o_row, o_start, o_stop = np.empty(total, np.int64), np.empty(total, np.int32), np.empty(total, np.int32)
    if total:
        _hard_runs(b2, v2, rows, thr, ptr, o_row, o_start, o_stop, True)
    if not slicewise:
        return components_from_runs(vol, o_row, o_start, o_stop, connectivity=6, min_voxels=min_voxels)
    runs = components_from_runs(vol.reshape(1, nz * ny, nx), o_row, o_start, o_stop, connectivity=6,
                                min_voxels=min_voxels)
    return _unstack(runs, vol.shape)


def _unstack(runs: Runs, shape) -> Runs:
    """Runs labelled on the slices stacked into one tall image, back on the volume: the row
    numbers are the same (slice x rows + row), each component's box lies in one slice."""
    ny = shape[1]
    z0, y0, y1 = runs.bbox[:, 1] // ny, runs.bbox[:, 1] % ny, (runs.bbox[:, 4] - 1) % ny + 1
    bbox = np.stack([z0, y0, runs.bbox[:, 2], z0 + 1, y1, runs.bbox[:, 5]], axis=1)
    return replace(runs, shape=tuple(int(s) for s in shape), bbox=bbox)


def _samples_from_runs(runs: Runs, steps, vol: np.ndarray, surface_hu: float):
    """The grid cells that sample bone: their grid indices (one array per axis, in raster order),
    bone labels, and whether the sampled voxel reaches `surface_hu` (all True when NaN). Cell
    ``c`` samples voxel ``c * steps``."""
    ny = runs.shape[1]
    kz, ky, kx = steps
    z, y = runs.row // ny, runs.row % ny
    sel = (z % kz == 0) & (y % ky == 0)
    z, y = z[sel] // kz, y[sel] // ky
    first = -(-runs.start[sel].astype(np.int64) // kx)
    n = np.maximum(-(-runs.stop[sel].astype(np.int64) // kx) - first, 0)
    which = np.repeat(np.arange(n.shape[0]), n)
    x = first[which] + np.arange(which.shape[0]) - np.repeat(np.cumsum(n) - n, n)
    idx = (z[which], y[which], x)
    dense = (vol[idx[0] * kz, idx[1] * ky, idx[2] * kx] >= surface_hu if np.isfinite(surface_hu)
             else np.ones(len(x), bool))
    return idx, runs.label[sel][which], dense


@dataclass
class JointGaps:
    """The joint gaps of one scan, as cells of the search grid.

    Attributes
    ----------
    cells : ndarray of int, (n, ndim)
        Grid indices of the gap cells; grid cell ``c`` samples voxel ``c * steps`` and stands for
        the box of ``steps`` voxels around it.
    steps : tuple of int
        Voxels per grid cell along each array axis.
    spacing : tuple of float
        The scan's spacing (mm).
    grid_shape : tuple of int
        Shape of the search grid.
    n_bones : int
        Bones (components) considered.
    pairs : list of (int, int)
        The bone pairs (component labels, numbered by decreasing size) that share a gap: the joints.
    reason : str
        Why no gap was found (empty when one was).
    seconds : float
        Time spent finding the gaps.
    """

    cells: np.ndarray
    steps: tuple[int, ...]
    spacing: tuple[float, ...]
    grid_shape: tuple[int, ...]
    n_bones: int = 0
    pairs: list = field(default_factory=list)
    reason: str = ""
    seconds: float = 0.0
    tree: cKDTree | None = field(default=None, init=False, repr=False)
    _flat: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.cells = np.asarray(self.cells, np.int64).reshape(-1, len(self.steps))
        if len(self.cells):
            self.tree = cKDTree(self.cells * self.cell_mm)
            self._flat = np.unique(np.ravel_multi_index(tuple(self.cells.T), self.grid_shape))

    @property
    def found(self) -> bool:
        return len(self.cells) > 0

    @property
    def cell_mm(self) -> np.ndarray:
        return np.asarray(self.steps, float) * np.asarray(self.spacing, float)

    def inside(self, index: np.ndarray) -> np.ndarray:
        """Whether each voxel (array indices, (n, ndim)) lies in a gap cell (its nearest sample)."""
        index = np.asarray(index).reshape(-1, len(self.steps))
        if not self.found or len(index) == 0:
            return np.zeros(len(index), bool)
        c = np.rint(index / np.asarray(self.steps, float)).astype(np.int64)
        ok = np.all((c >= 0) & (c < np.asarray(self.grid_shape)), axis=1)
        flat = np.ravel_multi_index(tuple(np.clip(c, 0, np.asarray(self.grid_shape) - 1).T), self.grid_shape)
        at = np.minimum(np.searchsorted(self._flat, flat), len(self._flat) - 1)
        return ok & (self._flat[at] == flat)

    def distance_mm(self, index: np.ndarray) -> float:
        """Smallest distance (mm) from the given voxel centres (array indices, (n, ndim)) to the
        gap cells, each a box of ``steps`` voxels around its centre: 0 inside one; NaN without
        gaps or points."""
        if not self.found or len(index) == 0:
            return float("nan")
        index = np.asarray(index).reshape(-1, len(self.steps))
        pts = index * np.asarray(self.spacing, float)
        diag = float(np.linalg.norm(self.cell_mm))
        # One point per grid cell first (a big lesion has thousands of surface voxels): a point
        # lies within a cell diagonal of its cell's first point, so only the cells whose first
        # point is within two diagonals of the nearest can hold the nearest point.
        cells = index // np.asarray(self.steps)
        cells -= cells.min(axis=0)
        _, first, which = np.unique(np.ravel_multi_index(tuple(cells.T), tuple(cells.max(axis=0) + 1)),
                                    return_index=True, return_inverse=True)
        d0, _ = self.tree.query(pts[first])
        bound = float(d0.min()) + 2 * diag
        pts = pts[(d0 <= bound)[which]]
        # the nearest box is among those of the points whose nearest centre is at most a cell
        # diagonal farther than the nearest of all (a box is within half a diagonal of its centre)
        d1, _ = self.tree.query(pts, distance_upper_bound=bound + 1e-6)
        bound = float(d1.min()) + diag
        pts = pts[d1 <= bound]
        k = min(8, self.tree.n)
        d8, nearest = self.tree.query(pts, k=k, distance_upper_bound=bound + 1e-6)
        d8, nearest = np.asarray(d8).reshape(len(pts), k), np.asarray(nearest).reshape(len(pts), k)
        centres = self.tree.data[np.minimum(nearest, self.tree.n - 1)]  # (n, k, ndim); misses masked below
        out = np.maximum(np.abs(centres - pts[:, None, :]) - 0.5 * self.cell_mm, 0.0)
        return float(np.where(np.isfinite(d8), np.sqrt((out * out).sum(-1)), np.inf).min())


def _pairs(lo_mm: np.ndarray, hi_mm: np.ndarray, gap_mm: float) -> list[tuple[int, int]]:
    """Index pairs (i < j) of boxes (mm) that come within gap_mm of each other: a sweep along the
    first axis, each box against those starting before it ends (plus the gap)."""
    order = np.argsort(lo_mm[:, 0], kind="stable")
    lo, hi = lo_mm[order], hi_mm[order]
    ends = np.searchsorted(lo[:, 0], hi[:, 0] + gap_mm, side="right")
    out = []
    for k in range(len(order)):
        if ends[k] <= k + 1:
            continue
        sep = np.maximum(0.0, np.maximum(lo[k + 1:ends[k]] - hi[k], lo[k] - hi[k + 1:ends[k]]))
        for m in np.flatnonzero(np.sqrt((sep * sep).sum(-1)) <= gap_mm):
            i, j = int(order[k]), int(order[k + 1 + m])
            out.append((min(i, j), max(i, j)))
    return sorted(out)


def _gap_cells(samples, grid_shape, boxes: list[tuple[slice, ...]], cell: np.ndarray, reach_mm: float,
               pairs: list[tuple[int, int]], slicewise: bool = False) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Grid cells that sample no bone and lie within `reach_mm` of the dense cells (at or above
    the bone's surface HU) of two different bones; and the bone pairs found.

    `samples` = (grid indices, one array per axis, sorted along the first; labels; dense) of the
    bone cells;
    ``boxes[i]`` is the grid box of
    bone label ``i + 1``. Per pair, only where both can be in reach: the core (both boxes grown by
    the reach, intersected), painted on a crop grown by the reach again, which holds every cell
    of either bone within reach of the core. `slicewise`: the crops stay in the bones' slice.
    """
    idx, lab, dense = samples
    r = np.ceil(reach_mm / cell).astype(int) + 1
    if slicewise:  # in the slice only
        r[0] = 0
    shape = np.asarray(grid_shape)
    aniso = tuple(float(c) for c in cell)
    out, found = [], []
    for i, j in pairs:
        lo = np.maximum([max(a.start, b.start) for a, b in zip(boxes[i], boxes[j], strict=True)] - 2 * r, 0)
        hi = np.minimum([min(a.stop, b.stop) for a, b in zip(boxes[i], boxes[j], strict=True)] + 2 * r, shape)
        if np.any(hi <= lo):
            continue
        a, b = np.searchsorted(idx[0], [lo[0], hi[0]])  # cells come sorted along the first axis
        keep = np.ones(b - a, bool)
        for ax in range(1, len(idx)):
            keep &= (idx[ax][a:b] >= lo[ax]) & (idx[ax][a:b] < hi[ax])
        sel = a + np.flatnonzero(keep)
        at = tuple(c[sel] - o for c, o in zip(idx, lo, strict=True))
        bone = np.zeros(tuple(hi - lo), bool)
        bone[at] = True
        hard = np.zeros(bone.shape, np.int64)
        hard[at] = np.where(dense[sel], lab[sel], 0)
        own_i, own_j = hard == i + 1, hard == j + 1
        if not (own_i.any() and own_j.any()):
            continue
        near = edt.edt(np.ascontiguousarray(~own_i).view(np.uint8), anisotropy=aniso, black_border=False,
                       parallel=1) <= reach_mm
        near &= ~bone
        if not near.any():
            continue
        near &= edt.edt(np.ascontiguousarray(~own_j).view(np.uint8), anisotropy=aniso, black_border=False,
                        parallel=1) <= reach_mm
        if near.any():
            out.append(np.argwhere(near) + lo)
            found.append((i + 1, j + 1))
    cells = np.unique(np.concatenate(out), axis=0) if out else np.zeros((0, len(grid_shape)), np.int64)
    return cells, found


def find_joint_gaps(scan: Scan, bone: np.ndarray | None, settings: Settings | None = None,
                    surface_hu: float = float("nan")) -> JointGaps:
    """The joint gaps of a scan (see the module docstring); once per scan.

    Parameters
    ----------
    scan : Scan
        CT (3D, HU) or radiograph (2D).
    bone : ndarray of bool or None
        The segmentation's bone mask.
    settings : Settings, optional
        ``joint_gap_mm``, ``joint_min_bone_mm`` and, for CT, ``threshold_hu``.
    surface_hu : float, optional
        CT: the HU of the bone's surface (half maximum, `segment._context`); distances to a bone
        run to its cells at or above it, where the bone ends, not to the ``threshold_hu`` set,
        which the scanner's blur widens by about a millimetre. NaN: to the whole bone.

    Examples
    --------
    Two 20 mm bars end to end with a 4 mm gap between them on a 1 mm radiograph:

    >>> import numpy as np
    >>> from calcimg.scan import Scan
    >>> img = np.zeros((60, 80), np.float32)
    >>> bone = np.zeros(img.shape, bool)
    >>> bone[20:40, 10:38] = bone[20:40, 42:70] = True
    >>> gaps = find_joint_gaps(Scan(img, (1.0, 1.0), (0, 0), np.eye(2), "radiograph"), bone)
    >>> gaps.found, gaps.pairs, gaps.inside(np.array([[30, 40], [5, 40]])).tolist()
    (True, [(1, 2)], [True, False])
    >>> round(gaps.distance_mm(np.array([[30, 40]])), 1), round(gaps.distance_mm(np.array([[5, 40]])), 1)
    (0.0, 10.0)
    """
    t0 = time.perf_counter()
    settings = settings or Settings()
    spacing = tuple(float(s) for s in scan.spacing)
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        return JointGaps(np.zeros((0, len(spacing)), np.int64), (1,) * len(spacing), spacing, tuple(scan.shape),
                         reason="no joint search: pixel spacing unknown", seconds=time.perf_counter() - t0)
    steps = tuple(max(1, round(CELL_MM / s)) for s in spacing)
    grid = tuple(-(-n // k) for n, k in zip(scan.shape, steps, strict=True))

    def result(cells=(), **kw) -> JointGaps:
        return JointGaps(np.asarray(cells, np.int64), steps, spacing, grid, seconds=time.perf_counter() - t0, **kw)

    if bone is None or not bone.any():
        return result(reason="no bone mask" if bone is None else "no bone in the scan")
    cell = np.asarray(steps, float) * np.asarray(spacing)
    slicewise = bone.ndim == 3 and spacing[0] > settings.bone_split_max_slice_mm
    if bone.ndim == 3:
        min_vox = int(np.ceil(settings.joint_min_bone_mm**3 / float(np.prod(spacing))))
        runs = _ct_bones(scan, bone, settings.threshold_hu, max(min_vox, 1), slicewise)
        n = runs.n
        samples = _samples_from_runs(runs, steps, scan.pixels, surface_hu)
        lo_vox, hi_vox = runs.bbox[:, :3], runs.bbox[:, 3:]
    else:
        full = cc3d.connected_components(np.ascontiguousarray(bone), connectivity=4)
        stats = cc3d.statistics(full)
        min_px = settings.joint_min_bone_mm**2 / float(np.prod(spacing))
        keep = np.flatnonzero(np.asarray(stats["voxel_counts"][1:]) >= max(min_px, 1)) + 1
        lut = np.zeros(int(full.max()) + 1, np.int32)
        lut[keep] = np.arange(1, keep.size + 1)
        n = int(keep.size)
        lab = lut[full[tuple(slice(None, None, k) for k in steps)]]
        at = np.nonzero(lab)
        samples = (at, lab[at], np.ones(len(at[0]), bool))
        bb = [stats["bounding_boxes"][k] for k in keep]
        lo_vox = np.array([[s.start for s in b] for b in bb], np.int64).reshape(n, 2)
        hi_vox = np.array([[s.stop for s in b] for b in bb], np.int64).reshape(n, 2)
    st = np.asarray(steps)
    boxes = [tuple(slice(int(a), int(b)) for a, b in zip(-(-lo // st), -(-hi // st), strict=True))
             for lo, hi in zip(lo_vox, hi_vox, strict=True)]
    sp = np.asarray(spacing)
    if slicewise:  # bones of different slices never pair
        sp = np.r_[1e9, sp[1:]]
    pairs = _pairs(lo_vox * sp, (hi_vox - 1) * sp, settings.joint_gap_mm) if n > 1 else []
    if not pairs:
        why = (f"no joint found: {n} bones, none within {settings.joint_gap_mm:g} mm of another" if n > 1
               else f"no joint found: {'one bone' if n else 'no bone'} of at least "
                    f"{settings.joint_min_bone_mm:g} mm (bones touching on the image count as one)")
        return result(n_bones=n, reason=why)
    reach = 0.5 * settings.joint_gap_mm + 0.5 * float(cell[1:].mean() if slicewise else cell.mean())
    cells, found = _gap_cells(samples, grid, boxes, cell, reach, pairs, slicewise)
    why = "" if len(cells) else f"no joint found: no two bones within {settings.joint_gap_mm:g} mm"
    return result(cells, n_bones=n, pairs=found, reason=why)
