"""Threshold + connected components + per-component statistics on row runs (numba).

Calcium candidates are sparse (a few percent of a CT volume, mostly bone). Instead of writing a
label for every voxel, one streaming pass finds, for every image row, the runs of voxels at or
above the threshold; components are then unions of runs (union-find over runs of neighbouring
rows), and statistics come from the runs. The cost is one read of the volume plus work in
proportion to the number of runs: no full-size label volume is written unless asked for.

`label_runs_scipy` is the reference path (scipy.ndimage.label) used by the tests and as a
fallback when numba is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

try:  # numba is a hard dependency; the fallback keeps a broken install usable and testable
    import numba

    HAVE_NUMBA = os.environ.get("CALCIMG_DISABLE_NUMBA", "") != "1"
except ImportError:  # pragma: no cover
    numba = None
    HAVE_NUMBA = False


@dataclass
class Runs:
    """Runs of above-threshold voxels and the component each belongs to.

    Row ``r`` is ``(r // n_rows, r % n_rows)`` = (slice, image row); a run covers columns
    ``start <= x < stop`` of its row. Components are numbered 1..n by decreasing voxel count
    (ties: first run in raster order), with dust below ``min_voxels`` removed.
    """

    shape: tuple[int, int, int]
    row: np.ndarray  # int64 (z * Y + y)
    start: np.ndarray  # int32
    stop: np.ndarray  # int32
    label: np.ndarray  # int32, 1..n
    count: np.ndarray  # int64 per component (index 0 = component 1)
    bbox: np.ndarray  # int64 (n, 6): z0, y0, x0, z1, y1, x1 (exclusive ends)
    value_sum: np.ndarray  # float64 per component
    value_max: np.ndarray  # float64 per component

    @property
    def n(self) -> int:
        return int(self.count.shape[0])

    def boxes(self) -> list[tuple[slice, slice, slice]]:
        return [tuple(slice(int(b[i]), int(b[i + 3])) for i in range(3)) for b in self.bbox]

    def paint(self, out: np.ndarray, labels: np.ndarray | None = None, offset=(0, 0, 0), value=None) -> np.ndarray:
        """Write component labels (or `value`) into `out`, whose first voxel is `offset` of the volume.

        Only runs of the given `labels` (all when None) that fall inside `out` are written.
        """
        sel = np.ones(self.row.shape[0], bool) if labels is None else np.isin(self.label, labels)
        z = self.row[sel] // self.shape[1] - offset[0]
        y = self.row[sel] % self.shape[1] - offset[1]
        x0 = self.start[sel] - offset[2]
        x1 = self.stop[sel] - offset[2]
        lab = self.label[sel] if value is None else np.full(int(sel.sum()), value, dtype=np.int64)
        _paint(out, z, y, x0, x1, lab)
        return out

    def label_volume(self) -> np.ndarray:
        """The full label image (uint16 when fewer than 65535 components, else uint32)."""
        dtype = np.uint16 if self.n < 65535 else np.uint32
        return self.paint(np.zeros(self.shape, dtype=dtype))


def _paint_py(out, z, y, x0, x1, lab):
    for i in range(z.shape[0]):
        zi, yi = z[i], y[i]
        if zi < 0 or zi >= out.shape[0] or yi < 0 or yi >= out.shape[1]:
            continue
        a = max(x0[i], 0)
        b = min(x1[i], out.shape[2])
        if a < b:
            out[zi, yi, a:b] = lab[i]


def _count_runs_py(vol, thr, counts):
    above = vol >= thr
    starts = above.copy()
    starts[..., 1:] &= ~above[..., :-1]
    counts[:] = starts.reshape(counts.shape[0], -1).sum(axis=1)


if HAVE_NUMBA:
    _paint = numba.njit(cache=True, nogil=True)(_paint_py)

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def _count_runs(vol, thr, counts):  # pragma: no cover - compiled
        nz, ny, nx = vol.shape
        for z in range(nz):
            for y in range(ny):
                row = vol[z, y]
                # a cheap max first: most rows hold no candidate at all
                m = row[0]
                for x in range(1, nx):
                    if row[x] > m:
                        m = row[x]
                if m < thr:
                    continue
                c = 0
                prev = False
                for x in range(nx):
                    cur = row[x] >= thr
                    if cur and not prev:
                        c += 1
                    prev = cur
                counts[z * ny + y] = c

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def _fill_runs(vol, thr, row_ptr, rows_with_runs, run_row, run_start, run_stop):  # pragma: no cover
        _nz, ny, nx = vol.shape
        for r in rows_with_runs:
            z = r // ny
            y = r % ny
            row = vol[z, y]
            k = row_ptr[r]
            prev = False
            for x in range(nx):
                cur = row[x] >= thr
                if cur and not prev:
                    run_row[k] = r
                    run_start[k] = x
                elif prev and not cur:
                    run_stop[k] = x
                    k += 1
                prev = cur
            if prev:
                run_stop[k] = nx
                k += 1

    @numba.njit(cache=True, nogil=True)
    def _find(parent, i):  # pragma: no cover
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            nxt = parent[i]
            parent[i] = root
            i = nxt
        return root

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def _union_runs(ny, nz, row_ptr, run_start, run_stop, full):  # pragma: no cover
        """Union-find over runs. full=True: 26-connectivity; False: 6-connectivity."""
        n = run_start.shape[0]
        parent = np.arange(n)
        for z in range(nz):
            for y in range(ny):
                r = z * ny + y
                a0, a1 = row_ptr[r], row_ptr[r + 1]
                if a0 == a1:
                    continue
                # earlier neighbour rows: (z, y-1) and, for 26-conn, (z-1, y-1..y+1); 6-conn: (z-1, y)
                for k in range(4):
                    if k == 0:
                        if y == 0:
                            continue
                        nr = r - 1
                    else:
                        if z == 0:
                            continue
                        dy = k - 2
                        if not full and dy != 0:
                            continue
                        if y + dy < 0 or y + dy >= ny:
                            continue
                        nr = (z - 1) * ny + y + dy
                    b0, b1 = row_ptr[nr], row_ptr[nr + 1]
                    if b0 == b1:
                        continue
                    diag = full
                    i, j = a0, b0
                    while i < a1 and j < b1:
                        s1, e1 = run_start[i], run_stop[i]
                        s2, e2 = run_start[j], run_stop[j]
                        if diag:
                            touch = s1 <= e2 and s2 <= e1
                        else:
                            touch = s1 < e2 and s2 < e1
                        if touch:
                            ri = _find(parent, i)
                            rj = _find(parent, j)
                            if ri != rj:
                                if ri < rj:
                                    parent[rj] = ri
                                else:
                                    parent[ri] = rj
                        if e1 < e2:
                            i += 1
                        else:
                            j += 1
        for i in range(n):
            parent[i] = _find(parent, i)
        return parent

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def _run_stats(vol, ny, comp, n_comp, run_row, run_start, run_stop):  # pragma: no cover
        count = np.zeros(n_comp, np.int64)
        bbox = np.empty((n_comp, 6), np.int64)
        bbox[:, :3] = 1 << 40
        bbox[:, 3:] = -1
        vsum = np.zeros(n_comp, np.float64)
        vmax = np.full(n_comp, -np.inf)
        for k in range(run_row.shape[0]):
            c = comp[k]
            z = run_row[k] // ny
            y = run_row[k] % ny
            s, e = run_start[k], run_stop[k]
            count[c] += e - s
            if z < bbox[c, 0]:
                bbox[c, 0] = z
            if y < bbox[c, 1]:
                bbox[c, 1] = y
            if s < bbox[c, 2]:
                bbox[c, 2] = s
            if z + 1 > bbox[c, 3]:
                bbox[c, 3] = z + 1
            if y + 1 > bbox[c, 4]:
                bbox[c, 4] = y + 1
            if e > bbox[c, 5]:
                bbox[c, 5] = e
            row = vol[z, y]
            acc = 0.0
            mx = vmax[c]
            for x in range(s, e):
                v = row[x]
                acc += v
                if v > mx:
                    mx = v
            vsum[c] += acc
            vmax[c] = mx
        return count, bbox, vsum, vmax
else:  # pragma: no cover
    _paint = _paint_py


def _finish(shape, run_row, run_start, run_stop, comp, count, bbox, vsum, vmax, min_voxels) -> Runs:
    """Drop dust, number components by decreasing size, map runs to final labels."""
    n_comp = count.shape[0]
    # first run of each component in raster order breaks ties stably
    first = np.full(n_comp, np.iinfo(np.int64).max)
    np.minimum.at(first, comp, np.arange(comp.shape[0]))
    keep = np.flatnonzero(count >= max(min_voxels, 1))
    keep = keep[np.lexsort((first[keep], -count[keep]))]
    lut = np.zeros(n_comp, np.int32)
    lut[keep] = np.arange(1, keep.size + 1, dtype=np.int32)
    label = lut[comp]
    sel = label > 0
    return Runs(
        shape=tuple(int(s) for s in shape),
        row=run_row[sel],
        start=run_start[sel],
        stop=run_stop[sel],
        label=label[sel],
        count=count[keep],
        bbox=bbox[keep],
        value_sum=vsum[keep],
        value_max=vmax[keep],
    )


def extract_runs(volume: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of ``volume >= threshold`` in raster order: (row, start, stop). One streaming pass."""
    vol = np.ascontiguousarray(volume)
    nz, ny, _nx = vol.shape
    if vol.dtype.kind in "iu":
        if threshold > np.iinfo(vol.dtype).max:
            return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32)
        thr = vol.dtype.type(max(np.ceil(threshold), np.iinfo(vol.dtype).min))
    else:
        thr = vol.dtype.type(threshold)
    counts = np.zeros(nz * ny, np.int64)
    _count_runs(vol, thr, counts)
    row_ptr = np.zeros(nz * ny + 1, np.int64)
    np.cumsum(counts, out=row_ptr[1:])
    n_runs = int(row_ptr[-1])
    run_row = np.empty(n_runs, np.int64)
    run_start = np.empty(n_runs, np.int32)
    run_stop = np.empty(n_runs, np.int32)
    if n_runs:
        _fill_runs(vol, thr, row_ptr, np.flatnonzero(counts), run_row, run_start, run_stop)
    return run_row, run_start, run_stop


def components_from_runs(
    volume: np.ndarray, run_row: np.ndarray, run_start: np.ndarray, run_stop: np.ndarray,
    *, connectivity: int = 26, min_voxels: int = 1,
) -> Runs:
    """Connected components of the given runs (raster order), with per-component statistics."""
    nz, ny, _nx = volume.shape
    counts = np.bincount(run_row, minlength=nz * ny) if run_row.size else np.zeros(nz * ny, np.int64)
    row_ptr = np.zeros(nz * ny + 1, np.int64)
    np.cumsum(counts, out=row_ptr[1:])
    parent = _union_runs(ny, nz, row_ptr, run_start, run_stop, connectivity == 26)
    roots, comp = np.unique(parent, return_inverse=True)
    comp = comp.astype(np.int64)
    count, bbox, vsum, vmax = _run_stats(np.ascontiguousarray(volume), ny, comp, roots.shape[0],
                                         run_row, run_start, run_stop)
    return _finish(volume.shape, run_row, run_start, run_stop, comp, count, bbox, vsum, vmax, min_voxels)


def label_runs(volume: np.ndarray, threshold: float, *, connectivity: int = 26, min_voxels: int = 1) -> Runs:
    """Components of ``volume >= threshold`` as runs, with count, bbox and value sum/max each.

    Parameters
    ----------
    volume : ndarray, 3D
    threshold : float
    connectivity : {6, 26}
    min_voxels : int
        Components with fewer voxels are dropped (dust).
    """
    if connectivity not in (6, 26):
        raise ValueError("connectivity must be 6 or 26 for the run-based labeller")
    if not HAVE_NUMBA:
        return label_runs_scipy(volume, threshold, connectivity=connectivity, min_voxels=min_voxels)
    run_row, run_start, run_stop = extract_runs(volume, threshold)
    return components_from_runs(volume, run_row, run_start, run_stop,
                                connectivity=connectivity, min_voxels=min_voxels)


def label_runs_scipy(volume: np.ndarray, threshold: float, *, connectivity: int = 26, min_voxels: int = 1) -> Runs:
    """Reference implementation with scipy.ndimage.label (same result as `label_runs`)."""
    from scipy import ndimage

    mask = volume >= threshold
    structure = ndimage.generate_binary_structure(3, 3 if connectivity == 26 else 1)
    labels, n = ndimage.label(mask, structure=structure)
    nz, ny, nx = mask.shape
    # runs from the mask, in raster order
    m = mask.reshape(nz * ny, nx)
    padded = np.zeros((nz * ny, nx + 2), bool)
    padded[:, 1:-1] = m
    d = np.diff(padded.astype(np.int8), axis=1)
    r_s, x_s = np.nonzero(d == 1)
    _r_e, x_e = np.nonzero(d == -1)
    run_row, run_start, run_stop = r_s.astype(np.int64), x_s.astype(np.int32), x_e.astype(np.int32)
    comp = labels.reshape(nz * ny, nx)[run_row, run_start].astype(np.int64) - 1
    vol = np.asarray(volume)
    if n == 0:
        empty = np.zeros(0, np.int64)
        return _finish(mask.shape, run_row, run_start, run_stop, comp, empty, np.zeros((0, 6), np.int64),
                       np.zeros(0), np.zeros(0), min_voxels)
    idx = np.arange(1, n + 1)
    count = ndimage.sum_labels(mask, labels, idx).astype(np.int64)
    vsum = ndimage.sum_labels(vol.astype(np.float64), labels, idx)
    vmax = ndimage.maximum(vol, labels, idx).astype(np.float64)
    objs = ndimage.find_objects(labels)
    bbox = np.array([[s.start for s in o] + [s.stop for s in o] for o in objs], np.int64)
    return _finish(mask.shape, run_row, run_start, run_stop, comp, count, bbox, vsum, vmax, min_voxels)
