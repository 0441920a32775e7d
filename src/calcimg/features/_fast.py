"""Compiled (numba) kernels of the per-lesion features: exact, so the numbers do not depend on the path.

Lesions are small (the bench phantom's median is ~100 voxels), so per-call overhead, not
arithmetic, dominates the NumPy/SciPy paths: an FFT, a Qhull run, a `pdist`, a scikit-image mesh
or an `edt.edt` call (which starts a thread pool every time) costs 50-300 us whatever the input,
and more on a busy machine. These kernels compute the same quantities directly:

* `autocorrelation_pair_sums`: Moran's I / Geary's C pair sums (small lesions; the FFT path
  serves large ones), to ~1e-13 of the FFT;
* `binary_mesh_measures`: volume, area and vertices of the marching-cubes mesh of a binary mask,
  summed cube by cube from per-configuration tables (~1e-14 of the mesh's own sums);
* `hull_measures` (`line_extremes`, `lattice_convex_hull`): the convex hull of lattice points in
  exact integer arithmetic, its volume and area, and the largest distance; equal to Qhull + pdist;
* `edt`, `zoom_linear`: ``edt.edt`` and ``ndimage.zoom(order=1, grid_mode=True, mode="nearest")``
  operation for operation, bit-identical.

All release the GIL (``nogil``). Every caller keeps its NumPy/SciPy path for installs without
numba (``HAVE_NUMBA``; ``CALCIMG_DISABLE_NUMBA=1`` forces those paths). Compiled code is cached on
disk (``cache=True``): the first import after installing compiles for ~10 s, later ones load in
milliseconds. tests/features/test_fast_kernels.py checks every kernel against the path it replaces.
"""

from __future__ import annotations

import math

import numpy as np

from calcimg._edt import HAVE_NUMBA, _jit, edt  # noqa: F401  (one numba switch; edt re-exported)


@_jit
def autocorrelation_pair_sums(coords, y, spacing):
    """Sums over the pairs i < j of lesion voxels, with w_ij = 1 / distance (mm):
    (sum w_ij, sum w_ij y_i y_j, sum w_ij (y_i - y_j)^2).

    `coords` (n, 3) int64 voxel indices, `y` (n,) float64, `spacing` (3,) float64 mm. The weights
    come from a table over the |offsets| of the lesion's box (1/sqrt(d^2), d^2 summed per axis in
    index order), so the inner loop is a gather and three multiply-adds, four pairs at a time into
    separate partial sums (which breaks the add-latency chain: ~1.5 ns a pair). O(n^2), for small
    lesions (the FFT path serves large ones).
    """
    n = coords.shape[0]
    cz = coords[:, 0].copy()
    cy = coords[:, 1].copy()
    cx = coords[:, 2].copy()
    if n > 0:
        cz -= cz.min()
        cy -= cy.min()
        cx -= cx.min()
    e0 = (cz.max() + 1) if n > 0 else 1
    e1 = (cy.max() + 1) if n > 0 else 1
    e2 = (cx.max() + 1) if n > 0 else 1
    table = np.empty(e0 * e1 * e2)
    for a in range(e0):
        for b in range(e1):
            for c in range(e2):
                ga, gb, gc = a * spacing[0], b * spacing[1], c * spacing[2]
                d2 = ga * ga + gb * gb + gc * gc
                table[(a * e1 + b) * e2 + c] = 1.0 / math.sqrt(d2) if d2 > 0 else 0.0
    w0 = w1 = w2 = w3 = 0.0
    c0 = c1 = c2 = c3 = 0.0
    q0 = q1 = q2 = q3 = 0.0
    for i in range(n):
        zi, yi, xi = cz[i], cy[i], cx[i]
        vi = y[i]
        j = i + 1
        while j + 3 < n:
            wa = table[(abs(zi - cz[j]) * e1 + abs(yi - cy[j])) * e2 + abs(xi - cx[j])]
            wb = table[(abs(zi - cz[j + 1]) * e1 + abs(yi - cy[j + 1])) * e2 + abs(xi - cx[j + 1])]
            wc = table[(abs(zi - cz[j + 2]) * e1 + abs(yi - cy[j + 2])) * e2 + abs(xi - cx[j + 2])]
            wd = table[(abs(zi - cz[j + 3]) * e1 + abs(yi - cy[j + 3])) * e2 + abs(xi - cx[j + 3])]
            va, vb, vc, vd = y[j], y[j + 1], y[j + 2], y[j + 3]
            w0 += wa
            w1 += wb
            w2 += wc
            w3 += wd
            c0 += wa * (vi * va)
            c1 += wb * (vi * vb)
            c2 += wc * (vi * vc)
            c3 += wd * (vi * vd)
            da, db, dc, dd = vi - va, vi - vb, vi - vc, vi - vd
            q0 += wa * (da * da)
            q1 += wb * (db * db)
            q2 += wc * (dc * dc)
            q3 += wd * (dd * dd)
            j += 4
        while j < n:
            wa = table[(abs(zi - cz[j]) * e1 + abs(yi - cy[j])) * e2 + abs(xi - cx[j])]
            va = y[j]
            da = vi - va
            w0 += wa
            c0 += wa * (vi * va)
            q0 += wa * (da * da)
            j += 1
    return (w0 + w1) + (w2 + w3), (c0 + c1) + (c2 + c3), (q0 + q1) + (q2 + q3)


@_jit
def max_sq_distance(points):
    """Largest squared Euclidean distance between two rows of `points` (n, d), float64; O(n^2).

    Each d^2 is summed over the axes in order, as `scipy.spatial.distance.pdist` does before its
    square root, so sqrt of the result equals ``pdist(points).max()``.
    """
    n, dim = points.shape
    best = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            d2 = 0.0
            for k in range(dim):
                t = points[i, k] - points[j, k]
                d2 += t * t
            if d2 > best:
                best = d2
    return best


@_jit
def mesh_volume_area(verts, faces):
    """Enclosed volume (|sum of signed tetrahedra to the origin| / 6) and area of a closed
    triangle mesh; `verts` (m, 3) float64, `faces` (k, 3) integer. Compensated (Kahan-Neumaier)
    sums: as accurate as NumPy's pairwise sums, whatever the number of triangles."""
    vol = 0.0
    vol_c = 0.0
    area = 0.0
    area_c = 0.0
    for f in range(faces.shape[0]):
        i, j, k = faces[f, 0], faces[f, 1], faces[f, 2]
        ax, ay, az = verts[i, 0], verts[i, 1], verts[i, 2]
        bx, by, bz = verts[j, 0], verts[j, 1], verts[j, 2]
        cx, cy, cz = verts[k, 0], verts[k, 1], verts[k, 2]
        # a . (b x c)
        t = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
        s = vol + t
        vol_c += (vol - s) + t if abs(vol) >= abs(t) else (t - s) + vol
        vol = s
        ux, uy, uz = bx - ax, by - ay, bz - az
        vx, vy, vz = cx - ax, cy - ay, cz - az
        nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
        t = math.sqrt(nx * nx + ny * ny + nz * nz)
        s = area + t
        area_c += (area - s) + t if area >= t else (t - s) + area
        area = s
    return abs(vol + vol_c) / 6.0, 0.5 * (area + area_c)


@_jit
def line_extremes(lattice):
    """Mask of the points that are first or last on every axis-parallel lattice line through them.

    `lattice` (n, 3) int64 points on an integer lattice. A point strictly between two others on
    one line is inside their segment, so it is neither a vertex of the convex hull nor an end of
    the largest distance: dropping it changes neither, and Qhull and the pairwise search then see
    a fraction of the points. Dense per-line min/max tables, O(n + lines).
    """
    n = lattice.shape[0]
    keep = np.ones(n, np.bool_)
    if n == 0:
        return keep
    lo = np.empty(3, np.int64)
    hi = np.empty(3, np.int64)
    for k in range(3):
        lo[k] = lattice[0, k]
        hi[k] = lattice[0, k]
    for i in range(n):
        for k in range(3):
            v = lattice[i, k]
            if v < lo[k]:
                lo[k] = v
            if v > hi[k]:
                hi[k] = v
    for axis in range(3):
        b = (axis + 1) % 3
        c = (axis + 2) % 3
        nb = hi[b] - lo[b] + 1
        nc = hi[c] - lo[c] + 1
        first = np.full((nb, nc), np.int64(1 << 62))
        last = np.full((nb, nc), np.int64(-(1 << 62)))
        for i in range(n):
            if keep[i]:
                jb = lattice[i, b] - lo[b]
                jc = lattice[i, c] - lo[c]
                v = lattice[i, axis]
                if v < first[jb, jc]:
                    first[jb, jc] = v
                if v > last[jb, jc]:
                    last[jb, jc] = v
        for i in range(n):
            if keep[i]:
                jb = lattice[i, b] - lo[b]
                jc = lattice[i, c] - lo[c]
                v = lattice[i, axis]
                if v != first[jb, jc] and v != last[jb, jc]:
                    keep[i] = False
    return keep


@_jit
def _argsort_int(keys):
    """Indices that sort `keys` (int64) ascending, ties in index order: a shell sort, which
    numba compiles in a fraction of the time of np.argsort (point sets here are small)."""
    n = keys.shape[0]
    order = np.arange(n)
    gap = 1
    while gap < n // 3:
        gap = 3 * gap + 1
    while gap > 0:
        for i in range(gap, n):
            o = order[i]
            j = i
            while j >= gap and (keys[order[j - gap]] > keys[o] or (keys[order[j - gap]] == keys[o] and order[j - gap] > o)):
                order[j] = order[j - gap]
                j -= gap
            order[j] = o
        gap //= 3
    return order


@_jit
def _face_plane(pts, a, b, c):
    """Integer normal (b - a) x (c - a) and offset normal . a of the triangle a, b, c."""
    ux, uy, uz = pts[b, 0] - pts[a, 0], pts[b, 1] - pts[a, 1], pts[b, 2] - pts[a, 2]
    vx, vy, vz = pts[c, 0] - pts[a, 0], pts[c, 1] - pts[a, 1], pts[c, 2] - pts[a, 2]
    nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
    return nx, ny, nz, nx * pts[a, 0] + ny * pts[a, 1] + nz * pts[a, 2]


@_jit
def lattice_convex_hull(pts):
    """Convex hull of integer points (n, 3) int64, in exact integer arithmetic: (k, 3) int64
    triangles (indices into `pts`, counter-clockwise seen from outside), or (0, 3) when the
    points are coplanar.

    Incremental (beneath-beyond), points taken farthest from the centroid first. A point is added
    when it lies strictly above some face; the faces it does not lie strictly below (above or in
    their plane) are replaced by the cone from the point to their boundary. Taking the coplanar
    faces too is what keeps this exact with the many coplanar points of a voxel surface: a cone
    face (a, b, p) has p strictly below the kept neighbour across a-b, so it is never degenerate,
    and a flat facet that grows is re-fanned from the new point. Coordinates must stay below
    ~1e5 in magnitude (products of three fit in int64). O(n x faces): for the small point sets of
    lesion surfaces (hundreds of points), where Qhull's set-up and facet merging dominate.
    """
    n = pts.shape[0]
    empty = np.zeros((0, 3), np.int64)
    if n < 4:
        return empty
    # initial simplex: lowest point, farthest from it, farthest from that line, farthest from that plane
    i0 = 0
    for i in range(1, n):
        if pts[i, 0] < pts[i0, 0] or (pts[i, 0] == pts[i0, 0] and (
                pts[i, 1] < pts[i0, 1] or (pts[i, 1] == pts[i0, 1] and pts[i, 2] < pts[i0, 2]))):
            i0 = i
    i1, best = -1, 0
    for i in range(n):
        d0, d1, d2 = pts[i, 0] - pts[i0, 0], pts[i, 1] - pts[i0, 1], pts[i, 2] - pts[i0, 2]
        d = d0 * d0 + d1 * d1 + d2 * d2
        if d > best:
            i1, best = i, d
    if i1 < 0:
        return empty
    i2, best = -1, 0
    for i in range(n):
        nx, ny, nz, _ = _face_plane(pts, i0, i1, i)
        d = nx * nx + ny * ny + nz * nz
        if d > best:
            i2, best = i, d
    if i2 < 0:
        return empty
    nx, ny, nz, off = _face_plane(pts, i0, i1, i2)
    i3, best = -1, 0
    for i in range(n):
        d = abs(nx * pts[i, 0] + ny * pts[i, 1] + nz * pts[i, 2] - off)
        if d > best:
            i3, best = i, d
    if i3 < 0:
        return empty

    cap = 16 + 8 * n  # a hull of n points has at most 2n - 4 triangles, so this never fills
    fv = np.empty((cap, 3), np.int64)
    fn = np.empty((cap, 4), np.int64)  # normal x, y, z and offset
    nf = 0
    inner = np.empty(3, np.int64)  # 4 x the simplex centroid: strictly inside every face
    for k in range(3):
        inner[k] = pts[i0, k] + pts[i1, k] + pts[i2, k] + pts[i3, k]
    simplex = np.array([i0, i1, i2, i3], np.int64)
    for t in range(4):
        a, b, c = simplex[(t + 1) % 4], simplex[(t + 2) % 4], simplex[(t + 3) % 4]
        nx, ny, nz, off = _face_plane(pts, a, b, c)
        if nx * inner[0] + ny * inner[1] + nz * inner[2] - 4 * off > 0:
            b, c = c, b
            nx, ny, nz, off = -nx, -ny, -nz, -off
        fv[nf, 0], fv[nf, 1], fv[nf, 2] = a, b, c
        fn[nf, 0], fn[nf, 1], fn[nf, 2], fn[nf, 3] = nx, ny, nz, off
        nf += 1

    # the other points, farthest from the centroid first (they grow the hull fastest)
    dist = np.empty(n, np.int64)
    for i in range(n):
        d0, d1, d2 = 4 * pts[i, 0] - inner[0], 4 * pts[i, 1] - inner[1], 4 * pts[i, 2] - inner[2]
        dist[i] = -(d0 * d0 + d1 * d1 + d2 * d2)
    order = _argsort_int(dist)
    vis = np.zeros(cap, np.bool_)
    ea = np.empty(3 * cap, np.int64)
    eb = np.empty(3 * cap, np.int64)
    ha = np.empty(3 * cap, np.int64)
    hb = np.empty(3 * cap, np.int64)
    for q in order:
        if q == i0 or q == i1 or q == i2 or q == i3:
            continue
        px, py, pz = pts[q, 0], pts[q, 1], pts[q, 2]
        outside = False
        for f in range(nf):
            if fn[f, 0] * px + fn[f, 1] * py + fn[f, 2] * pz - fn[f, 3] > 0:
                outside = True
                break
        if not outside:
            continue
        ne = 0
        for f in range(nf):
            vis[f] = fn[f, 0] * px + fn[f, 1] * py + fn[f, 2] * pz - fn[f, 3] >= 0
            if vis[f]:
                for k in range(3):
                    ea[ne] = fv[f, k]
                    eb[ne] = fv[f, (k + 1) % 3]
                    ne += 1
        # horizon: directed edges of replaced faces whose reverse is not one
        nh = 0
        for e in range(ne):
            twin = False
            for g in range(ne):
                if ea[g] == eb[e] and eb[g] == ea[e]:
                    twin = True
                    break
            if not twin:
                ha[nh] = ea[e]
                hb[nh] = eb[e]
                nh += 1
        w = 0
        for f in range(nf):
            if not vis[f]:
                if w != f:
                    for k in range(3):
                        fv[w, k] = fv[f, k]
                    for k in range(4):
                        fn[w, k] = fn[f, k]
                w += 1
        nf = w
        for e in range(nh):
            a, b = ha[e], hb[e]
            nx, ny, nz, off = _face_plane(pts, a, b, q)
            fv[nf, 0], fv[nf, 1], fv[nf, 2] = a, b, q
            fn[nf, 0], fn[nf, 1], fn[nf, 2], fn[nf, 3] = nx, ny, nz, off
            nf += 1
    return fv[:nf].copy()


@_jit
def hull_measures(points, lattice):
    """Convex hull of `points` (n, 3) float64 mm, whose combinatorics are computed exactly on
    `lattice` (n, 3) int64, an affine image of the points on an integer grid (voxel indices, or
    twice the marching-cubes vertices in voxel units): (hull found, hull volume, hull area, largest
    squared distance between two points).

    The hull is None-like (False, NaN, NaN) when the points are coplanar; the largest distance is
    then searched over every point first or last on its lattice lines, which still holds the
    farthest pair. Volume and area are summed over the hull's triangles in mm.
    """
    keep = line_extremes(lattice)
    idx = np.flatnonzero(keep)
    faces = lattice_convex_hull(lattice[idx])
    if faces.shape[0] == 0:
        return False, np.nan, np.nan, max_sq_distance(points[idx])
    for f in range(faces.shape[0]):
        for k in range(3):
            faces[f, k] = idx[faces[f, k]]
    volume, area = mesh_volume_area(points, faces)
    on_hull = np.zeros(points.shape[0], np.bool_)
    for f in range(faces.shape[0]):
        for k in range(3):
            on_hull[faces[f, k]] = True
    return True, volume, area, max_sq_distance(points[np.flatnonzero(on_hull)])



@_jit
def _face_neighbour(i, j, k, axis, step):
    """The index one `step` (-1 or 1) from (i, j, k) along `axis`."""
    if axis == 0:
        return i + step, j, k
    if axis == 1:
        return i, j + step, k
    return i, j, k + step


@_jit
def binary_mesh_measures(mask, cube_volume, cube_moment, cube_area, spacing):
    """Volume, area and vertices of the marching-cubes mesh (level 0.5) of the zero-padded
    binary `mask`, without building the mesh.

    Each cube of the padded grid holds the triangles of its 8-corner configuration (marching
    cubes, Lewiner's variant included, decides them from those 8 values alone). With the cube's
    corner at c (mm), a triangle (a, b, d) of the configuration contributes
    (a + c) . ((b + c) x (d + c)) = a . (b x d) + c . ((b - a) x (d - a)) to six times the
    enclosed volume, so per configuration k the tables hold ``cube_volume[k]`` = sum a . (b x d),
    ``cube_moment[k]`` = sum (b - a) x (d - a) (3-vector) and ``cube_area[k]`` = the triangles'
    area, all in mm at the cube's own corner. Configuration bit of corner (di, dj, dk) is
    4 di + 2 dj + dk. Compensated sums, as in `mesh_volume_area`.

    Returns (|volume|, area, vertex lattice): the vertices are the midpoints of the edges between
    a mask voxel and a face neighbour outside it, as (n, 3) int64 in units of half a voxel of the
    padded grid (so vertex mm = lattice / 2 x spacing, as marching cubes computes them). Lewiner's
    extra vertices inside ambiguous cubes are means of these, so they change no hull or extent.
    """
    s0, s1, s2 = mask.shape
    vol = 0.0
    vol_c = 0.0
    area = 0.0
    area_c = 0.0
    for i in range(s0 + 1):
        for j in range(s1 + 1):
            for k in range(s2 + 1):
                cfg = 0
                for di in range(2):
                    a = i + di - 1
                    if a < 0 or a >= s0:
                        continue
                    for dj in range(2):
                        b = j + dj - 1
                        if b < 0 or b >= s1:
                            continue
                        for dk in range(2):
                            c = k + dk - 1
                            if c >= 0 and c < s2 and mask[a, b, c]:
                                cfg |= 1 << (4 * di + 2 * dj + dk)
                if cfg == 0 or cfg == 255:
                    continue
                t = (cube_volume[cfg] + i * spacing[0] * cube_moment[cfg, 0]
                     + j * spacing[1] * cube_moment[cfg, 1] + k * spacing[2] * cube_moment[cfg, 2])
                s = vol + t
                vol_c += (vol - s) + t if abs(vol) >= abs(t) else (t - s) + vol
                vol = s
                t = cube_area[cfg]
                s = area + t
                area_c += (area - s) + t if area >= t else (t - s) + area
                area = s
    n = 0
    for i in range(s0):
        for j in range(s1):
            for k in range(s2):
                if mask[i, j, k]:
                    n += ((i == 0 or not mask[i - 1, j, k]) + (i == s0 - 1 or not mask[i + 1, j, k])
                          + (j == 0 or not mask[i, j - 1, k]) + (j == s1 - 1 or not mask[i, j + 1, k])
                          + (k == 0 or not mask[i, j, k - 1]) + (k == s2 - 1 or not mask[i, j, k + 1]))
    lattice = np.empty((n, 3), np.int64)
    n = 0
    for i in range(s0):
        for j in range(s1):
            for k in range(s2):
                if not mask[i, j, k]:
                    continue
                for axis in range(3):
                    for step in (-1, 1):
                        a, b, c = _face_neighbour(i, j, k, axis, step)
                        if 0 <= a < s0 and 0 <= b < s1 and 0 <= c < s2 and mask[a, b, c]:
                            continue
                        lattice[n, 0] = 2 * (i + 1)
                        lattice[n, 1] = 2 * (j + 1)
                        lattice[n, 2] = 2 * (k + 1)
                        lattice[n, axis] += step
                        n += 1
    return abs(vol + vol_c) / 6.0, area + area_c, lattice


# The Euclidean distance transform lives in calcimg._edt (the scan context uses it too).

# --------------------------------------------------------------------------------------------
# Linear resampling: scipy.ndimage.zoom(order=1, grid_mode=True, mode="nearest"), bit-identical
# --------------------------------------------------------------------------------------------

@_jit
def _zoom_axis(n_in, n_out, zoom):
    """Per output index: the first input index and the two linear weights, as ndimage computes
    them (grid mode: c = (k + 0.5) zoom - 0.5; w0 = 1 - (c - floor c), w1 = 1 - w0)."""
    start = np.empty(n_out, np.int64)
    w0 = np.empty(n_out)
    w1 = np.empty(n_out)
    for k in range(n_out):
        cc = np.float64(k)
        cc += 0.5
        cc *= zoom
        cc -= 0.5
        f = math.floor(cc)
        w0[k] = 1.0 - (cc - f)
        w1[k] = 1.0 - w0[k]
        start[k] = np.int64(f)
    return start, w0, w1


@_jit
def _zoom_linear_3d(a, o0, o1, o2, z0, z1, z2):
    s0, s1, s2 = a.shape
    st0, a0, b0 = _zoom_axis(s0, o0, z0)
    st1, a1, b1 = _zoom_axis(s1, o1, z1)
    st2, a2, b2 = _zoom_axis(s2, o2, z2)
    out = np.empty((o0, o1, o2), np.float32)
    for i in range(o0):
        for j in range(o1):
            for k in range(o2):
                t = 0.0  # the 8 corner terms in ndimage's order, each coeff * w0 * w1 * w2
                for di in range(2):
                    ii = min(max(st0[i] + di, 0), s0 - 1)  # mode "nearest": clamp the index
                    wi = a0[i] if di == 0 else b0[i]
                    for dj in range(2):
                        jj = min(max(st1[j] + dj, 0), s1 - 1)
                        wj = a1[j] if dj == 0 else b1[j]
                        for dk in range(2):
                            kk = min(max(st2[k] + dk, 0), s2 - 1)
                            wk = a2[k] if dk == 0 else b2[k]
                            coeff = np.float64(a[ii, jj, kk])
                            coeff *= wi
                            coeff *= wj
                            coeff *= wk
                            t += coeff
                out[i, j, k] = np.float32(t)
    return out


def zoom_linear(a: np.ndarray, factors) -> np.ndarray:
    """``scipy.ndimage.zoom(a, factors, order=1, grid_mode=True, mode="nearest")`` for float32
    2-D/3-D arrays, bit-identical (the tests check it), without scipy's per-call set-up; other
    inputs go to scipy."""
    from scipy import ndimage

    a = np.asarray(a)
    factors = [float(f) for f in np.broadcast_to(np.asarray(factors, float), (a.ndim,))]
    if not HAVE_NUMBA or a.dtype != np.float32 or a.ndim not in (2, 3) or a.size == 0:
        return ndimage.zoom(a, factors, order=1, grid_mode=True, mode="nearest")
    out_shape = [round(n * f) for n, f in zip(a.shape, factors, strict=True)]
    zooms = [n / o if o else 1.0 for n, o in zip(a.shape, out_shape, strict=True)]
    if a.ndim == 2:
        return _zoom_linear_3d(a[None], 1, *out_shape, 1.0, *zooms)[0]
    return _zoom_linear_3d(a, *out_shape, *zooms)


# --------------------------------------------------------------------------------------------
# Hole filling
# --------------------------------------------------------------------------------------------

@_jit
def _fill_holes_3d(mask, first_axis_is_border):
    """`mask` | the background voxels not face-connected to the array's border (flood fill from
    the border through the background, 6-connectivity; `first_axis_is_border` False for a 2-D
    image given as (1, rows, cols))."""
    s0, s1, s2 = mask.shape
    reach = np.zeros((s0, s1, s2), np.bool_)
    stack = np.empty((s0 * s1 * s2, 3), np.int64)
    top = 0
    for i in range(s0):
        for j in range(s1):
            for k in range(s2):
                on_border = (j == 0 or j == s1 - 1 or k == 0 or k == s2 - 1
                             or (first_axis_is_border and (i == 0 or i == s0 - 1)))
                if on_border and not mask[i, j, k]:
                    reach[i, j, k] = True
                    stack[top, 0], stack[top, 1], stack[top, 2] = i, j, k
                    top += 1
    while top > 0:
        top -= 1
        i, j, k = stack[top, 0], stack[top, 1], stack[top, 2]
        for axis in range(3):
            for step in (-1, 1):
                a, b, c = _face_neighbour(i, j, k, axis, step)
                if 0 <= a < s0 and 0 <= b < s1 and 0 <= c < s2 and not mask[a, b, c] and not reach[a, b, c]:
                    reach[a, b, c] = True
                    stack[top, 0], stack[top, 1], stack[top, 2] = a, b, c
                    top += 1
    out = np.empty((s0, s1, s2), np.bool_)
    for i in range(s0):
        for j in range(s1):
            for k in range(s2):
                out[i, j, k] = mask[i, j, k] or not reach[i, j, k]
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes(mask)`` (default structure: face connectivity) for 2-D
    and 3-D boolean arrays: the background components that do not touch the border become
    foreground. Identical results (the tests check it)."""
    m = np.ascontiguousarray(mask, dtype=bool)
    if not HAVE_NUMBA or m.ndim not in (2, 3):
        from scipy import ndimage

        return ndimage.binary_fill_holes(m)
    if m.ndim == 2:
        return _fill_holes_3d(m[None], False)[0]
    return _fill_holes_3d(m, True)
