"""The Euclidean distance transform of the `edt` package, compiled with numba, without its thread pool.

`edt.edt` starts a thread pool on every call (three times for a 3-D array), which costs 0.1-0.3 ms
even for a 3 x 3 x 3 array and several times that on a busy machine: more than the transform
itself on a lesion crop, and calcimg calls it a few times per lesion (envelopes, bone gap, skin
depth, shell fractions, fluid pockets). `edt` here is bit-identical to ``edt.edt(uint8 array,
anisotropy, black_border, parallel=1)`` (tests/features/test_fast_kernels.py), releases the GIL,
and falls back to the package without numba (``CALCIMG_DISABLE_NUMBA=1``). It lives at the
package's top level because both the segmentation's scan context and the features use it.
"""

from __future__ import annotations

import os

import numpy as np

try:  # numba is a hard dependency; the fallback keeps a broken install usable and testable
    import numba

    HAVE_NUMBA = os.environ.get("CALCIMG_DISABLE_NUMBA", "") != "1"
except ImportError:  # pragma: no cover
    numba = None
    HAVE_NUMBA = False


def _jit(fn):
    if numba is None:  # pragma: no cover
        return fn
    return numba.njit(cache=True, nogil=True, boundscheck=False)(fn)


# --------------------------------------------------------------------------------------------
# Euclidean distance transform: the `edt` package's arithmetic, without its thread pool
# --------------------------------------------------------------------------------------------
# `edt.edt` starts a thread pool on every call (three times for a 3-D array), which costs
# 0.1-0.3 ms even for a 3 x 3 x 3 array and several times that on a busy machine: more than the
# transform itself for a lesion crop. These kernels follow its algorithm (Rosenfeld-Pfaltz along
# the last axis, then Felzenszwalb-Huttenlocher parabolas per run of foreground along the others,
# float32 storage between passes, float64 inside a pass) operation for operation, so the result
# is bit-identical to ``edt.edt(uint8 array, anisotropy, black_border)``; the tests check it.

_F32_MAX = np.float32(3.4028234663852886e38)


@_jit
def _edt_first_pass(seg, d, w, black_border):
    """`squared_edt_1d_multi_seg` of one line: squared distance (float32) along the line."""
    n = seg.shape[0]
    if n == 0:
        return
    zero = np.float32(0.0)
    inf = np.float32(np.inf)
    working = seg[0]
    if black_border:
        d[0] = np.float32(1.0) * w if working != 0 else zero
    else:
        d[0] = zero if working == 0 else inf
    for i in range(1, n):
        if seg[i] == 0:
            d[i] = zero
        elif seg[i] == working:
            d[i] = d[i - 1] + w
        else:
            d[i] = w
            d[i - 1] = w if seg[i - 1] != 0 else zero
            working = seg[i]
    min_bound = 0
    if black_border:
        d[n - 1] = w if seg[n - 1] != 0 else zero
        min_bound = 1
    for i in range(n - 2, min_bound - 1, -1):
        t = d[i + 1] + w
        if t < d[i]:
            d[i] = t
    for i in range(n):
        d[i] = d[i] * d[i]


@_jit
def _edt_parabolic(f, lo, n, w2, left, right, v, ff, ranges):
    """`squared_edt_1d_parabolic` on f[lo:lo + n] (in place), black borders `left`/`right`."""
    if n == 0:
        return
    for i in range(n):
        ff[i] = np.float64(f[lo + i])
    k = 0
    v[0] = 0
    ranges[0] = -np.inf
    ranges[1] = np.inf
    for i in range(1, n):
        factor1 = np.float64(i - v[k]) * w2
        factor2 = np.float64(i + v[k])
        s = (ff[i] - ff[v[k]] + factor1 * factor2) / (2.0 * factor1)
        while k > 0 and s <= ranges[k]:
            k -= 1
            factor1 = np.float64(i - v[k]) * w2
            factor2 = np.float64(i + v[k])
            s = (ff[i] - ff[v[k]] + factor1 * factor2) / (2.0 * factor1)
        k += 1
        v[k] = i
        ranges[k] = s
        ranges[k + 1] = np.inf
    k = 0
    for i in range(n):
        while ranges[k + 1] < i:
            k += 1
        r = np.float64(i - v[k])
        val = np.float32(w2 * (r * r) + ff[v[k]])
        if left and right:
            a = np.float64(i + 1)
            b = np.float64(n - i)
            env = min(w2 * (a * a), w2 * (b * b))
            e = np.float32(env)
            if e < val:
                val = e
        elif left:
            a = np.float64(i + 1)
            e = np.float32(w2 * (a * a))
            if e < val:
                val = e
        elif right:
            b = np.float64(n - i)
            e = np.float32(w2 * (b * b))
            if e < val:
                val = e
        f[lo + i] = val


@_jit
def _edt_parabolic_runs(seg, f, n, w2, black_border, v, ff, ranges):
    """`squared_edt_1d_parabolic_multi_seg` on the first `n` values: the parabola pass over each
    run of one label (one call site, so numba compiles the pass once)."""
    working = seg[0]
    last = 0
    for i in range(1, n + 1):
        label = seg[i] if i < n else np.uint8(0)
        if i == n or label != working:
            if working != 0:
                # a run cut by another label has a border on that side; the array's ends have
                # one only with black_border
                right = True if i < n else black_border
                _edt_parabolic(f, last, i - last, w2, black_border or last > 0, right, v, ff, ranges)
            if i < n:
                working = label
                last = i


@_jit
def _finish_edt(out, black_border):
    flat = out.ravel()
    for i in range(flat.shape[0]):
        x = flat[i]
        if not black_border and x >= _F32_MAX:
            x = np.float32(np.inf)
        flat[i] = np.sqrt(x)


@_jit
def _to_finite(out):
    flat = out.ravel()
    for i in range(flat.shape[0]):
        if np.isinf(flat[i]):
            flat[i] = _F32_MAX


@_jit
def _edt_c(labels, wz, wy, wx, black_border, three_d):
    """`edt.edt` of a C-ordered (sz, sy, sx) uint8 array, anisotropy as float32; `three_d`
    False for a 2-D image given as (1, sy, sx) (no pass along the first axis)."""
    sz, sy, sx = labels.shape
    out = np.zeros((sz, sy, sx), np.float32)
    for z in range(sz):
        for y in range(sy):
            _edt_first_pass(labels[z, y], out[z, y], wx, black_border)
    if not black_border:
        _to_finite(out)
    m = max(sx, sy, sz)
    v = np.empty(m, np.int64)
    ff = np.empty(m, np.float64)
    ranges = np.empty(m + 1, np.float64)
    seg = np.empty(m, np.uint8)
    line = np.empty(m, np.float32)
    flat_labels = labels.ravel()
    flat = out.ravel()
    # the passes along y, then z, on a copy of each line (contiguous; lines without foreground
    # are skipped, as the package's run loop does nothing on them)
    for axis in range(2 if three_d else 1):
        if axis == 0:
            n_lines, n, stride, w2 = sz * sx, sy, sx, np.float64(wy * wy)
        else:
            n_lines, n, stride, w2 = sy * sx, sz, sy * sx, np.float64(wz * wz)
        for li in range(n_lines):
            base = (li // sx) * sy * sx + li % sx if axis == 0 else li
            any_fg = False
            for t in range(n):
                seg[t] = flat_labels[base + t * stride]
                line[t] = flat[base + t * stride]
                any_fg = any_fg or seg[t] != 0
            if any_fg:
                _edt_parabolic_runs(seg, line, n, w2, black_border, v, ff, ranges)
                for t in range(n):
                    flat[base + t * stride] = line[t]
    _finish_edt(out, black_border)
    return out


def edt(data: np.ndarray, anisotropy, black_border: bool = False) -> np.ndarray:
    """``edt.edt(data, anisotropy, black_border, parallel=1)`` (float32, bit-identical), for 2-D
    and 3-D uint8 arrays, computed by the kernels above; other inputs go to the package."""
    a = np.asarray(data)
    if not HAVE_NUMBA or a.dtype != np.uint8 or a.ndim not in (2, 3):
        import edt as edt_package

        return edt_package.edt(a, anisotropy=anisotropy, black_border=black_border, parallel=1)
    if a.size == 0:
        return np.zeros(a.shape, np.float32)
    w = [np.float32(x) for x in anisotropy]
    if len(w) != a.ndim:
        raise ValueError(f"anisotropy must have {a.ndim} values, got {tuple(anisotropy)}")
    transpose = a.flags.f_contiguous  # as the package: Fortran order runs the passes reversed
    if transpose:
        a, w = a.T, w[::-1]
    a = np.ascontiguousarray(a)
    if a.ndim == 3:
        out = _edt_c(a, w[0], w[1], w[2], bool(black_border), True)
    else:
        out = _edt_c(a[None], np.float32(1.0), w[0], w[1], bool(black_border), False)[0]
    return out.T if transpose else out
