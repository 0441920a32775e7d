"""Fluid-calcium levels (the "sedimentation sign") along the gravity of the acquisition.

Definition (criteria-research 2.5): inside a closed compartment (loculus), a planar interface
separating a denser dependent layer from a less dense supernatant, whose normal is parallel to
gravity and which spans most of the compartment.

Both detectors first resample the lesion's crop into a *gravity frame*: array axis 0 runs along
gravity (increasing index = dependent side), the other axes perpendicular to it. When gravity lies
along an array axis of an orthogonal grid this is a transpose and flip (no interpolation);
otherwise (oblique Image Orientation, gantry tilt, a decubitus reformat...) the crop is resampled
(linear) on an isotropic grid at the smallest spacing, through the scan's direction matrix, so the
frame is exact in patient space. Each image column of the frame is then a line along gravity.

Gravity comes from the DICOM header (``Lesion.gravity``); when it is unknown, or lies along the
beam of a radiograph (a supine AP view sees a layer en face), every column here is empty and
``not_assessed`` says why: never a silent 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from calcimg._edt import edt as fast_edt
from calcimg.lesion import Lesion

#: Envelope closing radius (mm; criteria-research 2.0).
CLOSING_MM = 2.0
#: CT: thresholds (HU) below which connected parts of the envelope are candidate fluid pockets.
POCKET_HU = (130.0, 250.0)
#: CT: fraction of a pocket's one-voxel shell that must be at or above the threshold (closed).
MIN_ENCLOSED_FRACTION = 0.8
#: CT: a pocket must be at least this deep somewhere (mm): thin soft-tissue septa and slivers
#: between lobules are not compartments.
MIN_POCKET_DEPTH_MM = 0.75
#: Smallest interface that is tested (mm^2, CT; a disc 3 mm across), and its smallest width (mm).
MIN_INTERFACE_AREA_MM2 = 7.0
MIN_INTERFACE_WIDTH_MM = 3.0
#: Largest angle between the interface normal and gravity (degrees; criteria-research 2.5: 12 for
#: CT, 10 for radiographs).
MAX_ANGLE_DEG_CT = 12.0
MAX_ANGLE_DEG_DX = 10.0
#: CT: interface columns within this distance of the fitted plane are on the interface (mm; or one
#: voxel along gravity if larger).
PLANE_TOLERANCE_MM = 0.75
#: CT: the interface must cover this fraction of the pocket's footprint across gravity.
MIN_COVERAGE = 0.6
#: A level's floor is flat under a domed roof: the floor's RMS deviation from a plane must be at
#: most this fraction of the roof's (a lens, the core of a cigar-shaped shell or a vessel lumen
#: are as curved, or as straight, on both sides). CT allows 0.7: resampling a thick-slice scan
#: onto an oblique gravity frame staircases a level's floor (0.23 mm RMS under a 0.38 mm roof, 0.62),
#: while the phantoms' lenses, shell cores and cyst floors measure 0.95-1.05.
MAX_FLOOR_TO_ROOF = 0.5
MAX_FLOOR_TO_ROOF_CT = 0.7
#: CT: ...unless the floor is flat outright (sub-voxel heights): RMS deviation from its plane at most this (mm; the lucent
#: cores of the phantoms' shells deviate by 0.19 mm or more, their level floors by 0.01-0.15 mm).
FLAT_FLOOR_MM = 0.15
#: CT: slices at least this thick (mm) and this many times the finest spacing are also tested
#: one by one when the 3D pockets show no level; levels of adjacent slices within
#: `SLICE_LEVEL_MM` of height are one loculus.
SLICE_MM = 2.0
SLICE_RATIO = 1.5
SLICE_LEVEL_MM = 1.5
#: CT, slice by slice: the shortest level line (mm); a vessel lumen's floor is flat over 3 mm.
MIN_SLICE_LINE_MM = 4.0
#: CT: the dependent layer must reach this HU and exceed the supernatant by this much.
MIN_SEDIMENT_HU = 130.0
MIN_STEP_HU = 80.0
#: Radiographs: height of the band below a candidate edge (mm), the dependent layer. A sediment
#: is dense over at least this height in projection; a calcified vessel wall (0.8-1.3 mm) seen
#: edge-on under its lumen is not, so a short band here would take a tram track for a level
#: (0.75 mm bands above and below find one on a test-preset artery: seed 0, left decubitus).
BAND_MM = 1.5
#: Radiographs: heights of the band above the edge (mm), the supernatant; each is tried and a
#: level found with either counts. The band must fit inside the lucent layer: projected through
#: its bright rim, the fluid of a small lobule shows as a crescent about 0.8 mm high above its
#: level (test preset seed 5, erect view), which a 1.5 mm band averages with the rim (step 3.0-3.4
#: x the noise, over too few columns for a line); 0.75 mm fits it (5.4 x). Where a superposed
#: lobule's level lies 1.8 mm lower, the edge found with 1.5 mm is pulled 0.7 mm towards it at that
#: end of the line, which tilts the line (seed 4, erect: 10.2 deg); 0.5 mm with 0.75 mm (8.1 deg).
#: 1.5 mm is kept as well (more noise averaging): with 0.75 mm alone, test-preset seeds 6-45
#: lose 2 of the 72 views whose calcinosis 1.5 mm + 0.75 mm finds.
BANDS_ABOVE_MM = (1.5, 0.75)
#: Radiographs: step between the bands, in units of the pixel noise SD, and the shortest level (mm).
MIN_CNR_DX = 3.0
MIN_LENGTH_MM_DX = 2.0
#: Radiographs: a level spans at least this fraction of the lesion's width at its height (measured
#: as the lucent run just above the line, its lobule's width as projected).
MIN_SPAN_DX = 0.5

FLUID_LEVEL_COLUMNS: list[tuple[str, str, str]] = [
    ("fluid_level", "", "1 when at least one loculus has a fluid-calcium level (dependent denser layer, "
     "planar interface perpendicular to gravity), 0 when none; empty when gravity is unknown or along "
     "the beam"),
    ("fluid_level_count", "", "Loculi (CT) or distinct level lines (radiographs) with a fluid level"),
    ("fluid_level_angle_deg", "deg", "Angle between gravity and the area-weighted mean normal of the "
     "interfaces found (0 = perpendicular to gravity, as expected); empty without a level"),
    ("fluid_level_contrast_hu", "HU", "CT: dependent layer minus supernatant, median over the loculi "
     "with a level"),
    ("fluid_level_cnr", "", "Step across the interface / image noise SD (CT: SD of the supernatant; "
     "radiographs: pixel noise), median over the levels"),
    ("loculi_assessed", "", "CT: closed fluid pockets (loculi) large enough to test for a level; "
     "radiographs: empty (projected lobules overlap)"),
]
COLUMNS: tuple[str, ...] = tuple(c[0] for c in FLUID_LEVEL_COLUMNS)

NAN = float("nan")


@dataclass
class Level:
    """One candidate interface: a loculus (CT) or a line (radiograph), and how it was judged.

    ``normal`` is the fitted interface normal in the lesion's physical frame (LPS for CT, image
    plane mm ``(row, column)`` for radiographs), pointing to the dependent side.
    """

    present: bool
    angle_deg: float
    area_mm2: float  # CT: interface area; radiographs: line length (mm)
    coverage: float  # CT: interface / pocket footprint; radiographs: length / lesion width
    contrast: float  # HU (CT) or image units (radiographs)
    cnr: float
    height_mm: float  # position of the interface along gravity in the frame
    normal: np.ndarray
    floor_to_roof: float = NAN
    why_not: str = ""
    point_index: np.ndarray | None = None  # a point on the interface, in crop array indices
    point_lps: np.ndarray | None = None  # the same point in physical mm (CT: LPS; radiographs: image mm)


# --------------------------------------------------------------------------------------------
# Geometry: envelope and gravity frame
# --------------------------------------------------------------------------------------------

def _envelope(mask: np.ndarray, spacing: np.ndarray, radius_mm: float = CLOSING_MM) -> np.ndarray:
    """fill_holes(closing(mask, ball of radius_mm)), by two Euclidean distance transforms.

    The mask is zero-padded first so the dilation is not clipped by the crop."""
    pad = [int(np.ceil(radius_mm / s)) + 1 for s in spacing]
    m = np.pad(mask, [(p, p) for p in pad])
    aniso = tuple(float(s) for s in spacing)
    dist_out = fast_edt(np.ascontiguousarray(~m).view(np.uint8), anisotropy=aniso, black_border=False)
    dilated = dist_out <= radius_mm
    dist_in = fast_edt(np.ascontiguousarray(dilated).view(np.uint8), anisotropy=aniso, black_border=True)
    closed = (dist_in > radius_mm) | m
    closed = closed[tuple(slice(p, -p) for p in pad)]
    return ndimage.binary_fill_holes(closed)


@dataclass
class _Frame:
    image: np.ndarray  # float32, axis 0 along gravity (dependent = larger index)
    mask: np.ndarray
    envelope: np.ndarray
    spacing: np.ndarray  # mm per frame axis
    basis: np.ndarray  # rows: physical unit vector of each frame axis (gravity first)
    to_crop: tuple[np.ndarray, np.ndarray] | None = None  # (M, t): crop index = M @ frame index + t


def _gravity_frame(image: np.ndarray, mask: np.ndarray, spacing: np.ndarray,
                   direction: np.ndarray, gravity: np.ndarray, background: float) -> _Frame:
    """The crop with array axis 0 along gravity (see the module docstring)."""
    ndim = image.ndim
    env = _envelope(mask, spacing)
    g_phys = direction @ gravity
    g_phys = g_phys / np.linalg.norm(g_phys)
    orthogonal = np.allclose(direction.T @ direction, np.eye(ndim), atol=1e-6)
    axis = int(np.argmax(np.abs(gravity)))
    if orthogonal and abs(abs(gravity[axis]) - 1.0) < 1e-6:
        order = [axis] + [a for a in range(ndim) if a != axis]
        flip = gravity[axis] < 0

        def move(a):
            a = np.moveaxis(a, order, range(ndim))
            return a[::-1] if flip else a

        basis = direction[:, order].T.copy()
        if flip:
            basis[0] = -basis[0]
        M = np.zeros((ndim, ndim))
        t = np.zeros(ndim)
        for k, a in enumerate(order):
            M[a, k] = 1.0
        if flip:
            M[axis, 0] = -1.0
            t[axis] = image.shape[axis] - 1
        return _Frame(np.ascontiguousarray(move(image), dtype=np.float32), np.ascontiguousarray(move(mask)),
                      np.ascontiguousarray(move(env)), spacing[order], basis, (M, t))
    # an orthonormal physical basis with gravity first
    basis = [g_phys]
    for e in np.eye(len(g_phys)):
        v = e - sum((e @ b) * b for b in basis)
        if np.linalg.norm(v) > 1e-3:
            basis.append(v / np.linalg.norm(v))
        if len(basis) == ndim:
            break
    basis = np.asarray(basis)  # frame axis k -> physical basis[k]
    A = direction * spacing[None, :]  # crop index -> physical mm (relative)
    s = float(spacing.min())
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in image.shape], indexing="ij")).reshape(ndim, -1).T
    q = (corners @ A.T) @ basis.T  # corner coordinates in the frame (mm)
    lo, hi = q.min(axis=0), q.max(axis=0)
    shape = tuple(int(np.floor((h - lo_) / s)) + 1 for lo_, h in zip(lo, hi, strict=True))
    grids = np.meshgrid(*[lo[k] + s * np.arange(shape[k]) for k in range(ndim)], indexing="ij", sparse=False)
    pts = np.stack([g.ravel() for g in grids])  # (ndim, N) frame mm
    idx = np.linalg.solve(A, basis.T @ pts)  # crop indices
    sample = lambda a, order, cval: ndimage.map_coordinates(  # noqa: E731
        a, idx, order=order, cval=cval, mode="constant", prefilter=False).reshape(shape)
    img = sample(np.asarray(image, np.float32), 1, background)
    m = sample(mask.astype(np.float32), 1, 0.0) >= 0.5
    e = sample(env.astype(np.float32), 1, 0.0) >= 0.5
    to_crop = (np.linalg.solve(A, basis.T) * s, np.linalg.solve(A, basis.T @ lo))
    return _Frame(img.astype(np.float32), m, e, np.full(ndim, s), basis, to_crop)


# --------------------------------------------------------------------------------------------
# CT: one test per closed fluid pocket
# --------------------------------------------------------------------------------------------

def _plane_fit(u: np.ndarray, h: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Robust plane h = c0 + c1 u1 + c2 u2 over the columns: from two starts (a horizontal plane at
    the median height and the least-squares plane) refit three times on the columns within `tol`;
    the fit with most inliers wins. Returns the coefficients and the inlier mask.

    An axis along which every column has the same coordinate (a pocket one slice thick) says
    nothing about the tilt along it: its slope is 0, not whatever least squares would trade
    against the intercept."""
    flat = np.ptp(u, axis=0) < 1e-9 if len(u) else np.zeros(u.shape[1], bool)
    u = np.where(flat[None, :], 0.0, u)
    X = np.column_stack([np.ones(len(h)), u])
    starts = [np.r_[np.median(h), np.zeros(u.shape[1])], np.linalg.lstsq(X, h, rcond=None)[0]]
    best = (starts[0], np.zeros(len(h), bool))
    for c in starts:
        inl = np.abs(X @ c - h) <= tol
        for _ in range(3):
            if inl.sum() < X.shape[1] + 1:
                break
            c = np.linalg.lstsq(X[inl], h[inl], rcond=None)[0]
            new = np.abs(X @ c - h) <= tol
            if np.array_equal(new, inl):
                break
            inl = new
        if inl.sum() > best[1].sum():
            best = (c, inl)
    return best


def _crossing(img: np.ndarray, edge: np.ndarray, cols: tuple, a: float, sh: float, sense: int) -> np.ndarray:
    """Sub-voxel height (mm) where each column's profile, from its pocket voxel `edge` outwards
    (`sense` +1: down, towards gravity; -1: up), first reaches half-way between the pocket's HU `a`
    and the densest HU within 2 mm (linear interpolation)."""
    nb = max(2, int(np.ceil(2.0 / sh)))
    rows = np.clip(edge[None, :] + sense * np.arange(nb + 1)[:, None], 0, img.shape[0] - 1)
    prof = img[(rows, *cols)].astype(np.float64)  # (nb + 1, ncol)
    half = 0.5 * (a + prof[1:].max(axis=0))
    past = prof >= half[None, :]
    past[0] = False
    j = np.where(past.any(axis=0), past.argmax(axis=0), nb)  # first sample at or past half
    at = np.arange(prof.shape[1])
    lo_v, hi_v = prof[j - 1, at], prof[j, at]
    frac = np.clip((half - lo_v) / np.where(hi_v > lo_v, hi_v - lo_v, 1.0), 0.0, 1.0)
    return (edge + sense * (j - 1 + frac)) * sh


def _floor_to_roof(u: np.ndarray, floor: np.ndarray, roof: np.ndarray, flat_mm: float = 0.0) -> float:
    """RMS deviation of the floor from its least-squares plane over that of the roof (the far side
    of the low region), on the same columns. A fluid level has a flat floor under a domed roof
    (ratio near 0); a lens, the core of a cigar-shaped shell or a vessel lumen is as curved or as
    flat on both sides (ratio near 1). 0 when the floor's RMS is at most `flat_mm` (CT);
    infinite when the roof is not found."""
    ok = np.isfinite(roof) & np.isfinite(floor)
    if ok.sum() < 4:
        return float("inf")
    X = np.column_stack([np.ones(ok.sum()), u[ok]])

    def rms(h):
        return float(np.sqrt(np.mean((X @ np.linalg.lstsq(X, h, rcond=None)[0] - h) ** 2)))

    f, r = rms(floor[ok]), rms(roof[ok])
    if f <= flat_mm:
        return 0.0  # flat whatever the roof: a small loculus's dome can be as shallow
    return f / r if r > 0 else float("inf")


def _robust_sd(v: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) if v.size else NAN


def _pocket_level(img: np.ndarray, pocket: np.ndarray, fs: np.ndarray, basis: np.ndarray,
                  min_area: float = MIN_INTERFACE_AREA_MM2) -> Level | None:
    """Test one closed fluid pocket (frame arrays cropped around it, with room below)."""
    sh = fs[0]
    col_area = float(np.prod(fs[1:]))
    has = pocket.any(axis=0)
    footprint_area = has.sum() * col_area
    hidx = np.arange(pocket.shape[0]).reshape((-1,) + (1,) * (pocket.ndim - 1))
    bottom = np.where(pocket, hidx, -1).max(axis=0)[has]  # last fluid voxel of each column
    top = np.where(pocket, hidx, pocket.shape[0]).min(axis=0)[has]  # first fluid voxel
    cols = np.nonzero(has)
    fluid = img[pocket].astype(np.float64)
    a = float(np.median(fluid))
    sd = _robust_sd(fluid)
    # the profile from the last fluid voxel to 2 mm below it, per column
    h = _crossing(img, bottom, cols, a, sh, +1)  # interface height along gravity (mm), per column
    roof = _crossing(img, top, cols, a, sh, -1)
    u = np.column_stack([c * s for c, s in zip(cols, fs[1:], strict=True)])
    tol = max(PLANE_TOLERANCE_MM, sh)
    coef, inl = _plane_fit(u, h, tol)
    area = inl.sum() * col_area
    if area < min_area:
        return None
    # narrowest extent of the interface (4 SD of its columns across the narrow axis, plus a column)
    spread = np.linalg.eigvalsh(np.atleast_2d(np.cov(u[inl], rowvar=False)))[0] if inl.sum() > 2 else 0.0
    if 4.0 * np.sqrt(max(spread, 0.0)) + float(np.min(fs[1:])) < MIN_INTERFACE_WIDTH_MM:
        return None  # a trough or a sliver: its floor is flat across a few columns whatever its shape
    slope = coef[1:]
    n_frame = np.r_[1.0, -slope] / np.sqrt(1.0 + slope @ slope)
    angle = float(np.degrees(np.arccos(np.clip(n_frame[0], -1.0, 1.0))))
    coverage = float(area / footprint_area)
    # the dependent layer: 0.5-1.5 mm below the interface, on the interface columns
    k1 = np.clip(np.floor(h[inl] / sh + 0.5 / sh).astype(int) + 1, 0, img.shape[0] - 1)
    k2 = np.clip(np.floor(h[inl] / sh + 1.5 / sh).astype(int), 0, img.shape[0] - 1)
    sel = tuple(c[inl] for c in cols)
    layer = np.concatenate([img[(k1, *sel)], img[(k2, *sel)]]).astype(np.float64)
    sediment = float(np.median(layer))
    step = sediment - a
    cnr = step / sd if sd > 0 else NAN
    why = []
    if angle > MAX_ANGLE_DEG_CT:
        why.append(f"tilted {angle:.0f} deg")
    if coverage < MIN_COVERAGE:
        why.append(f"covers {coverage:.2f} of the loculus")
    if sediment < MIN_SEDIMENT_HU or step < MIN_STEP_HU:
        why.append(f"step {step:.0f} HU to {sediment:.0f} HU")
    ratio = _floor_to_roof(u[inl], h[inl], roof[inl], FLAT_FLOOR_MM)
    if ratio > MAX_FLOOR_TO_ROOF_CT:
        why.append(f"floor as curved as the roof ({ratio:.2f}): a band or lens, not a level")
    # a point on the interface: the middle of its columns, at the fitted height (sub-image indices)
    u0 = u[inl].mean(axis=0)
    local = np.r_[(coef[0] + coef[1:] @ u0) / sh, u0 / fs[1:]]
    return Level(present=not why, angle_deg=angle, area_mm2=float(area), coverage=coverage, contrast=step,
                 cnr=float(cnr), height_mm=float(np.median(h[inl])), normal=n_frame @ basis, floor_to_roof=ratio,
                 why_not="; ".join(why), point_index=local)


def _pockets(img: np.ndarray, env: np.ndarray, fs: np.ndarray, basis: np.ndarray, to_crop,
             min_area: float) -> tuple[list[tuple[np.ndarray, tuple, Level]], int]:
    """Every closed fluid pocket of `img` (3D, or one slice in 2D) tested: (pocket mask, its box
    in `img`, the candidate level) for each, and the number of pockets large enough to test.
    `to_crop` maps the array's indices to the crop's."""
    voxel = float(np.prod(fs))
    pad = [max(2, int(np.ceil(2.5 / s))) for s in fs]
    found: list[tuple[np.ndarray, tuple, Level]] = []  # (pocket, its box, level)
    tested = 0
    for thr in POCKET_HU:
        low = env & (img < thr)
        if not low.any():
            continue
        labels, _ = ndimage.label(low)
        for k, box in enumerate(ndimage.find_objects(labels), 1):
            if box is None:
                continue
            grown = tuple(slice(max(b.start - p, 0), min(b.stop + p, sz))
                          for b, p, sz in zip(box, pad, img.shape, strict=True))
            pocket = labels[grown] == k
            if pocket.sum() * voxel < min_area * fs[0]:
                continue
            if any(b.start == 0 or b.stop == sz for b, sz in zip(box, img.shape, strict=True)):
                continue
            ring = ndimage.binary_dilation(pocket) & ~pocket
            closed = env[grown][ring] & (img[grown][ring] >= thr)
            if closed.mean() < MIN_ENCLOSED_FRACTION:
                continue
            depth = fast_edt(np.ascontiguousarray(pocket).view(np.uint8), anisotropy=tuple(float(s) for s in fs),
                            black_border=True)
            if depth.max() < MIN_POCKET_DEPTH_MM:
                continue
            prior = [i for i, (pk, bx, _) in enumerate(found) if _overlaps(pocket, grown, pk, bx)]
            if any(found[i][2].present for i in prior):
                continue
            level = _pocket_level(img[grown], pocket, fs, basis, min_area)
            if level is None:
                continue
            if level.point_index is not None:
                level.point_index = to_crop(level.point_index + np.array([g.start for g in grown]))
            if prior and not level.present:
                continue
            if not prior:
                tested += 1
            for i in sorted(prior, reverse=True):
                del found[i]
            found.append((pocket, grown, level))
    return found, tested


def _slice_axis(frame: _Frame) -> int | None:
    """The frame axis across gravity along which the scan's slices are thick (>= 2 mm and >= 1.5 x
    the finest spacing), when the frame is the crop's own grid (gravity along an array axis)."""
    M = frame.to_crop[0] if frame.to_crop is not None else None
    if M is None or not np.array_equal(np.abs(M), np.abs(M).astype(bool)):
        return None
    if np.abs(M).sum() != M.shape[0]:
        return None  # resampled onto an oblique frame: no slices to follow
    fs = frame.spacing
    c = 1 + int(np.argmax(fs[1:]))
    return c if fs[c] >= SLICE_MM and fs[c] >= SLICE_RATIO * float(fs.min()) else None


def _ct_levels(frame: _Frame) -> tuple[list[Level], int]:
    """Every closed fluid pocket of a CT lesion tested; returns the candidates and the number of
    pockets that were large enough to test.

    A pocket is a connected part of the envelope below a threshold whose one-voxel shell is at
    least `MIN_ENCLOSED_FRACTION` at or above it (closed: a bay of soft tissue that the closing
    added to the envelope is open to the outside). Thresholds `POCKET_HU` are tried in turn: 130 HU
    finds well-resolved loculi; partial volume leaves small loculi in thick slices at 150-300 HU,
    which only the higher threshold separates. A pocket that contains one already found at a lower
    threshold replaces it only when it shows a level and the smaller one did not.

    Thick slices (`_slice_axis`): when no 3D pocket shows a level, each slice is tested on its
    own as well (pockets in 2D, the interface a line perpendicular to gravity at least 4 mm long):
    loculi a few mm across, whose 1 mm septa the slices do not resolve, merge into pockets whose
    levels lie at different heights in different slices. A level is then measured in the slice
    plane only (its tilt across the slices cannot be); levels of adjacent slices within 1.5 mm of
    height count as one loculus; a slice's level inside a 3D pocket rejected as domed below as
    above (a lens: a cyst's fluid core) does not count.
    """
    found3, tested = _pockets(frame.image, frame.envelope, frame.spacing, frame.basis,
                              lambda idx: _to_crop(frame, idx), MIN_INTERFACE_AREA_MM2)
    levels = [lv for _, _, lv in found3]
    c = _slice_axis(frame)
    if c is None or any(lv.present for lv in levels):
        return levels, tested
    # a pocket the 3D test saw whole and found domed below as above (a cyst's fluid core) keeps
    # that verdict: a slice through it does not overrule it
    lens = np.zeros(frame.image.shape, bool)
    for pocket, box, lv in found3:
        if lv.floor_to_roof > MAX_FLOOR_TO_ROOF_CT:
            lens[box] |= pocket
    fs2 = np.delete(frame.spacing, c)
    basis2 = np.delete(frame.basis, c, axis=0)
    per_slice: list[tuple[int, Level]] = []
    for k in range(frame.image.shape[c]):
        env2 = np.take(frame.envelope, k, axis=c)
        if not env2.any():
            continue
        img2 = np.ascontiguousarray(np.take(frame.image, k, axis=c))
        found, _ = _pockets(img2, np.ascontiguousarray(env2), fs2, basis2,
                            lambda idx, k=k: _to_crop(frame, np.insert(idx, c, k)), MIN_SLICE_LINE_MM)
        lens2 = np.take(lens, k, axis=c)
        per_slice += [(k, lv) for pocket, box, lv in found if lv.present and not (lens2[box] & pocket).any()]
    distinct = [lv for k, lv in per_slice
                if not any(k2 == k - 1 and abs(lv2.height_mm - lv.height_mm) <= SLICE_LEVEL_MM
                           for k2, lv2 in per_slice)]
    return levels + distinct, max(tested, len(distinct))


def _overlaps(a: np.ndarray, box_a: tuple, b: np.ndarray, box_b: tuple) -> bool:
    inter = tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(box_a, box_b, strict=True))
    if any(s.start >= s.stop for s in inter):
        return False
    sa = tuple(slice(s.start - x.start, s.stop - x.start) for s, x in zip(inter, box_a, strict=True))
    sb = tuple(slice(s.start - y.start, s.stop - y.start) for s, y in zip(inter, box_b, strict=True))
    return bool((a[sa] & b[sb]).any())


# --------------------------------------------------------------------------------------------
# Radiographs: straight edges with the denser side dependent
# --------------------------------------------------------------------------------------------

def _band_means(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the k rows above (rows h-k+1..h) and below (h+1..h+k) each row h; NaN off the array."""
    c = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0, dtype=np.float64)])
    n = values.shape[0]
    above = np.full(values.shape, np.nan)
    below = np.full(values.shape, np.nan)
    h = np.arange(n)
    ok_a = h - k + 1 >= 0
    ok_b = h + k < n
    above[ok_a] = (c[h[ok_a] + 1] - c[h[ok_a] - k + 1]) / k
    below[ok_b] = (c[h[ok_b] + k + 1] - c[h[ok_b] + 1]) / k
    return above, below


def _dx_levels(frame: _Frame) -> list[Level]:
    """Every candidate line of a radiograph's gravity frame with its verdict, for each height of
    the supernatant band (`BANDS_ABOVE_MM`); a line found with both counts once (`_merge_lines`)."""
    img, env, fs = frame.image.astype(np.float64), frame.envelope, frame.spacing
    sh, su = float(fs[0]), float(fs[1])
    inner = ndimage.binary_erosion(env)
    if inner.sum() < 10:
        return []
    noise = _robust_sd(np.diff(img, axis=1)[inner[:, 1:] & inner[:, :-1]]) / np.sqrt(2.0)
    if not noise > 0:
        return []
    smooth = ndimage.gaussian_filter1d(img, max(0.5 / su, 0.5), axis=1)  # along the level only
    env_f = env.astype(np.float64)
    kb = max(2, round(BAND_MM / sh))
    below = _band_means(smooth, kb)[1]
    eb = _band_means(env_f, kb)[1]
    out: list[Level] = []
    for band_above in BANDS_ABOVE_MM:
        k = max(2, round(band_above / sh))
        above = _band_means(smooth, k)[0]
        ea = _band_means(env_f, k)[0]
        valid = (ea > 0.999) & (eb > 0.999)
        step = np.where(valid, below - above, 0.0)
        up = np.r_[step[:1] * 0, step[:-1]]  # row above
        down = np.r_[step[1:], step[:1] * 0]
        cand = (step >= MIN_CNR_DX * noise) & (step >= up) & (step > down)
        labels, _ = ndimage.label(cand, structure=np.ones((3, 3)))
        for k_, box in enumerate(ndimage.find_objects(labels), 1):
            r, c = np.nonzero(labels[box] == k_)
            r, c = r + box[0].start, c + box[1].start
            level = _dx_line(frame, r, c, step, above, smooth, noise, k)
            if level is not None:
                out.append(level)
    return _merge_lines(out, sh)


def _dx_line(frame: _Frame, r: np.ndarray, c: np.ndarray, step: np.ndarray, above: np.ndarray,
             smooth: np.ndarray, noise: float, k: int) -> Level | None:
    """Judge one 8-connected line of edge pixels (rows r, columns c of the frame); None when it is
    too short to test. `above` is the mean of the k rows above each pixel, `step` below - above."""
    env = frame.envelope
    sh, su = float(frame.spacing[0]), float(frame.spacing[1])
    length = (c.max() - c.min() + 1) * su
    if len(r) < 3 or length < MIN_LENGTH_MM_DX:
        return None
    w = step[r, c]
    X = np.column_stack([np.ones(len(c)), c * su])
    coef = np.linalg.lstsq(X * w[:, None] ** 0.5, (r + 0.5) * sh * w ** 0.5, rcond=None)[0]
    angle = float(np.degrees(np.arctan(abs(coef[1]))))
    length /= np.cos(np.radians(angle))
    contrast = float(np.median(w))
    # the width of the lucent region just above the line: the run of pixels darker than
    # half-way up the step, in the row half a band above the line's middle
    cm = round(float(np.median(c)))
    rmid = round(float(np.median(r)))
    rm = int(np.clip(rmid - k // 2, 0, step.shape[0] - 1))
    half = above[rmid, cm] + 0.5 * contrast
    dark = (smooth[rm] < half) & env[rm]
    if dark[cm]:
        left = cm - (np.argmin(dark[cm::-1]) if not dark[: cm + 1].all() else cm + 1)
        right = cm + (np.argmin(dark[cm:]) if not dark[cm:].all() else len(dark) - cm)
        width = max((right - left - 1) * su, length)
    else:
        width = np.inf
    coverage = float(length / width)
    # the roof: the strongest dense-above edge over each column of the line, above its row - 1
    higher = np.arange(step.shape[0])[:, None] < np.maximum(r - 1, 0)[None, :]
    col = np.where(higher, step[:, c], np.inf)
    top = np.argmin(col, axis=0)
    roof = np.where(col[top, np.arange(len(c))] <= -MIN_CNR_DX * noise, (top + 0.5) * sh, np.nan)
    ratio = _floor_to_roof((c * su)[:, None], (r + 0.5) * sh, roof)
    n_frame = np.array([1.0, -coef[1]]) / np.sqrt(1.0 + coef[1] ** 2)
    why = []
    if angle > MAX_ANGLE_DEG_DX:
        why.append(f"tilted {angle:.0f} deg")
    if coverage < MIN_SPAN_DX:
        why.append(f"spans {coverage:.2f} of the region above it")
    if ratio > MAX_FLOOR_TO_ROOF:
        why.append(f"floor as straight as the roof ({ratio:.2f}): a band, not a level")
    height = float(coef[0] + coef[1] * cm * su)
    return Level(present=not why, angle_deg=angle, area_mm2=float(length), coverage=coverage,
                 contrast=contrast, cnr=contrast / noise, height_mm=height,
                 normal=n_frame @ frame.basis, floor_to_roof=ratio, why_not="; ".join(why),
                 point_index=_to_crop(frame, np.array([height / sh - 0.5, cm])))


def _to_crop(frame: _Frame, index: np.ndarray) -> np.ndarray | None:
    """Frame array indices -> crop array indices."""
    if frame.to_crop is None:
        return None
    M, t = frame.to_crop
    return M @ index + t


def _merge_lines(levels: list[Level], sh: float) -> list[Level]:
    """Lines found twice (two chains a pixel apart, one broken by noise, or the same line found with
    both heights of the band above) count once."""
    kept: list[Level] = []
    for lv in sorted(levels, key=lambda x: -x.area_mm2):
        if lv.present and any(k.present and abs(k.height_mm - lv.height_mm) <= max(1.0, 2 * sh) for k in kept):
            continue
        kept.append(lv)
    return kept


# --------------------------------------------------------------------------------------------
# Public
# --------------------------------------------------------------------------------------------

def gravity_reason(lesion: Lesion) -> str:
    """Why fluid levels cannot be assessed on this lesion, or "" when they can."""
    source = str(lesion.context.get("gravity_source", ""))
    if lesion.gravity is None or not np.all(np.isfinite(lesion.gravity)) or not np.any(lesion.gravity):
        if "along the beam" in source:
            return "gravity along the beam"
        if lesion.kind == "radiograph" and not source:
            return "gravity unknown or along the beam"
        return "gravity unknown" + (f" ({source.removeprefix('unknown: ')})" if source.startswith("unknown: ") else "")
    if not np.all(np.isfinite(lesion.spacing)):
        return "pixel spacing unknown"
    return ""


def find_fluid_levels(lesion: Lesion) -> tuple[list[Level], int | None]:
    """Every candidate interface of the lesion with its verdict, and (CT) the loculi tested.

    Raises ValueError when gravity is unknown (check `gravity_reason` first).
    """
    reason = gravity_reason(lesion)
    if reason:
        raise ValueError(f"lesion {lesion.lesion_id}: fluid levels not assessable: {reason}")
    image, mask = np.asarray(lesion.image), np.asarray(lesion.mask, bool)
    spacing = np.asarray(lesion.spacing, float)
    direction = np.asarray(lesion.direction, float)
    gravity = np.asarray(lesion.gravity, float)
    if lesion.kind == "radiograph":
        if image.ndim == 3 and image.shape[0] == 1:
            image, mask = image[0], mask[0]
        spacing, direction = spacing[-2:], direction[-2:, -2:] if direction.shape == (3, 3) else direction
        gravity = gravity[-2:]
        frame = _gravity_frame(image, mask, spacing, direction, gravity, float(np.median(image)))
        levels = _dx_levels(frame)
        if np.asarray(lesion.mask).ndim == 2:
            for level in levels:
                if level.point_index is not None:
                    level.point_lps = lesion.index_to_physical(level.point_index)
        return levels, None
    frame = _gravity_frame(image, mask, spacing, direction, gravity, -1000.0)
    levels, tested = _ct_levels(frame)
    for level in levels:
        if level.point_index is not None:
            level.point_lps = lesion.index_to_physical(level.point_index)
    return levels, tested


def fluid_level_features(lesion: Lesion) -> dict:
    """Fluid-calcium levels of a lesion, along the gravity of its acquisition.

    CT (3D detector, per loculus). Envelope E = fill_holes(closing(mask, 2 mm)). A *loculus* is a
    connected fluid pocket (E and HU < 130) that is closed (>= 80 % of the voxels touching it are
    >= 130 HU), at least 0.75 mm deep and whose interface would cover >= 7 mm^2. For every column
    of the pocket along gravity ĝ, the interface height is where the profile from the pocket's
    last fluid voxel downwards first crosses (a + d) / 2 (a: median HU of the pocket, d: the
    densest HU within 2 mm below; linear interpolation). A plane h = c0 + c . u is fitted to those
    heights (robust: columns within max(0.75 mm, one voxel along ĝ) of the plane, refitted). The
    loculus has a level when

    * theta = arccos(n . ĝ) <= 12 deg, n the fitted plane's normal;
    * the plane's columns cover >= 0.6 of the pocket's footprint across ĝ ("spans most of the
      loculus"; a spherical cyst's bowl-shaped floor covers about 2 x 0.75 mm / radius);
    * the dependent layer (median HU 0.5-1.5 mm below the interface) is >= 130 HU and exceeds a by
      >= 80 HU: denser side dependent.

    Thick slices (>= 2 mm and >= 1.5 x the in-plane spacing, gravity in the slice plane): when no
    3D pocket has a level, every slice is tested the same way in 2D (the interface a line >= 4 mm
    long; its tilt is measured in the slice plane only), because 1 mm septa between loculi a few
    mm across vanish between such slices and merge loculi whose levels lie at different heights.
    Levels of adjacent slices within 1.5 mm of height count as one loculus; a slice's level
    inside a pocket the 3D test rejected as a lens does not count.

    Radiographs (2D detector). The crop is turned so ĝ runs down the frame's rows. At every pixel
    the mean of the 1.5 mm band below minus the mean of the band above (both inside E, smoothed
    0.5 mm along the level) is the step, with the band above 1.5 mm and, in a second pass,
    0.75 mm (a thin supernatant); pixels where it is a maximum along ĝ and >= 3 x the pixel noise
    SD (robust SD of horizontal differences / sqrt 2) form 8-connected lines; a line is a level
    when its fitted angle to the perpendicular of ĝ is <= 10 deg, it is >= 2 mm long, it spans
    >= 0.5 of the lucent region above it and its floor is straighter than the roof above it
    (RMS <= 0.5 x). Lines of either pass within max(1 mm, 2 pixels) of a longer one count once.
    Gravity is the header's, projected on the image axes (PatientOrientation): on an erect view it
    runs along the rows, on a decubitus AP view along the columns.

    Columns
    -------
    fluid_level : {1, 0, NaN}
        1 when at least one loculus (line) has a level, 0 when none; NaN when gravity is unknown or
        along the beam (supine AP radiograph), with the reason in ``not_assessed``.
    fluid_level_count : int
        Loculi (CT) or distinct lines (radiographs) with a level; 0..number of loculi.
    fluid_level_angle_deg : float
        Angle (deg, 0..90) between ĝ and the area-weighted (radiographs: length-weighted) mean
        normal of the levels found: with two or more levels, this is the angle between the
        empirical gravity they imply and the header's. NaN without a level.
    fluid_level_contrast_hu : float
        CT: sediment minus supernatant HU, median over the loculi with a level. NaN otherwise.
    fluid_level_cnr : float
        Step / noise SD, median over the levels (CT: SD of the supernatant; radiographs: the pixel
        noise). NaN without a level.
    loculi_assessed : int
        CT: loculi tested (the denominator of ``fluid_level_count``). Radiographs: NaN.

    Criterion: the fluid-calcium level ("sedimentation sign") of cystic tumoral calcinosis, also
    seen in milk-of-calcium collections and calcific myonecrosis (criteria-research 1.1, 2.5).
    Thresholds are estimates [est] tuned on the project's phantoms.
    """
    nan_row = {c: NAN for c in COLUMNS}
    reason = gravity_reason(lesion)
    if reason:
        return {**nan_row, "not_assessed": f"fluid_level: {reason}"}
    levels, tested = find_fluid_levels(lesion)
    found = [lv for lv in levels if lv.present]
    row = dict(nan_row)
    row["fluid_level"] = int(bool(found))
    row["fluid_level_count"] = len(found)
    row["loculi_assessed"] = NAN if tested is None else tested
    if found:
        w = np.array([lv.area_mm2 for lv in found])
        normals = np.array([lv.normal for lv in found])
        g = np.asarray(lesion.direction, float) @ np.asarray(lesion.gravity, float)
        if lesion.kind == "radiograph":
            g = np.asarray(lesion.gravity, float)[-2:]  # image-plane mm axes are the array axes
        mean_n = (w[:, None] * normals).sum(axis=0)
        cosang = abs(mean_n @ g) / (np.linalg.norm(mean_n) * np.linalg.norm(g))
        row["fluid_level_angle_deg"] = float(np.degrees(np.arccos(np.clip(cosang, 0.0, 1.0))))
        if lesion.kind == "ct":
            row["fluid_level_contrast_hu"] = float(np.median([lv.contrast for lv in found]))
        row["fluid_level_cnr"] = float(np.median([lv.cnr for lv in found]))
    return row
