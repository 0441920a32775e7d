"""Where a lesion sits and whether it is bone: its gap to bone, its depth below the skin, the
tissue around it, its distance to the nearest joint, its compartment and the ossification
indicator (criteria-research 1.3, 2.6)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from calcimg._edt import edt as fast_edt
from calcimg.features.intensity import CORE_MM, RIM_MM, envelope_depth_mm
from calcimg.lesion import Lesion

#: Soft tissue HU (muscle, criteria-research 1.0): the background of half-maximum boundaries.
SOFT_TISSUE_HU = 40.0
#: Bone is looked for within these margins around the lesion (mm), widening until found; None =
#: the whole search crop (30 mm). A distance found within a margin is exact: all bone that close
#: lies in the box.
BONE_MARGINS_MM = (5.0, 12.0, None)
#: Bone farther than this from the lesion (mm) is not looked for (the crops' search margin).
BONE_SEARCH_MM = 30.0
#: Tissue windows (HU, criteria-research 2.6 [est]) and the shell around the lesion (mm).
FAT_HU, MUSCLE_HU, SHELL_MM = (-190.0, -30.0), (30.0, 80.0), 2.0
#: Compartment thresholds: cutaneous when the centroid is at most this deep (mm, criteria-research
#: 2.6 [est]); subcutaneous when at least this fraction of the surrounding shell is fat.
CUTANEOUS_MM, SUBCUTANEOUS_FAT_FRACTION = 3.0, 0.5
#: Ossification (criteria-research 2.6 [D]): cortical shell >= CORTEX_HU over >= SHELL_COMPLETE of the
#: rim, exceeding the core by >= SHELL_OVER_CORE_HU; medullary core 100-400 HU or fat < -30 HU
#: over >= MARROW_FRACTION of the core.
CORTEX_HU, SHELL_COMPLETE, SHELL_OVER_CORE_HU = 400.0, 0.7, 200.0
MARROW_HU, MARROW_FAT_HU, MARROW_FRACTION = (100.0, 400.0), -30.0, 0.5

#: Joint thresholds used when a lesion's context does not carry the settings' (calcimg.settings:
#: criteria-research 2.6 [est]).
PERIARTICULAR_MM, INTRA_ARTICULAR_FRACTION = 50.0, 0.5

CONTEXT_COLUMNS = ("bone_distance_mm", "skin_depth_mm", "shell_fat_fraction", "shell_muscle_fraction",
                   "joint_distance_mm", "compartment", "periarticular", "ossification_score", "ossified")


def _edt_to(target: np.ndarray, spacing) -> np.ndarray:
    """Distance (mm) from every voxel to the nearest True voxel of `target` (outside the array
    counts as not-target). The `edt` package: several times faster than scipy, equal to 1e-5."""
    return fast_edt(np.ascontiguousarray(~target).view(np.uint8), anisotropy=tuple(float(s) for s in spacing),
                   black_border=False)


def _lesion_halfmax_surface(lesion: Lesion) -> np.ndarray:
    """Crop indices of the face-boundary voxels of the lesion's half-maximum set."""
    values = lesion.image[lesion.mask]
    t_lesion = 0.5 * (float(np.percentile(values, 95)) + SOFT_TISSUE_HU)
    core = lesion.mask & (lesion.image >= t_lesion)
    if not core.any():
        core = lesion.mask
    edge = core & ~ndimage.binary_erosion(core, border_value=0)
    return np.argwhere(edge)


def _bone_gap_halfmax(lesion: Lesion, pts: np.ndarray | None = None) -> tuple[float, str]:
    """Gap (mm) between the half-maximum boundaries of lesion and bone (`pts`: the lesion's
    half-maximum surface, when already found); NaN and a reason if none."""
    ctx = lesion.context
    spacing = np.asarray(lesion.spacing, dtype=float)
    pts = _lesion_halfmax_surface(lesion) if pts is None else pts
    tree = ctx.get("bone_surface")
    if tree is not None:  # the scan's bone surface, built once (segment._context)
        q = (pts + np.asarray(lesion.offset)) * spacing
        # a sparse sample first: its nearest distance bounds the full query, which then prunes
        # almost every branch of the tree (the same minimum, several times faster)
        step = max(1, len(q) // 32)
        d = float(tree.query(q[::step], distance_upper_bound=BONE_SEARCH_MM)[0].min())
        if step > 1:
            bound = d * (1 + 1e-9) + 1e-9 if np.isfinite(d) else BONE_SEARCH_MM
            d = min(d, float(tree.query(q, distance_upper_bound=bound)[0].min()))
        if np.isfinite(d):
            return max(d - spacing.min(), 0.0), ""
        return float("nan"), "bone_distance_mm: no bone within 30 mm"
    bone, img = ctx["bone"], ctx["bone_image"]
    pts = pts - np.asarray(ctx["bone_offset"])
    t_bone = float(ctx.get("bone_surface_hu", np.nan))
    lo_pts, hi_pts = pts.min(axis=0), pts.max(axis=0) + 1
    for margin_mm in BONE_MARGINS_MM:
        if margin_mm is None:
            box = tuple(slice(0, n) for n in bone.shape)
        else:
            g = np.ceil(margin_mm / spacing).astype(int)
            box = tuple(slice(max(int(a - m), 0), min(int(b + m), n))
                        for a, b, m, n in zip(lo_pts, hi_pts, g, bone.shape, strict=True))
        b = bone[box]
        hard = b & (img[box] >= t_bone) if np.isfinite(t_bone) else b
        if not hard.any():
            hard = b  # only partial-volume bone in reach: its 130 HU mask is the best boundary there
        if not hard.any():
            continue
        p = pts - np.asarray([s.start for s in box])
        inside = np.all((p >= 0) & (p < np.asarray(hard.shape)), axis=1)
        d = float(_edt_to(hard, spacing)[tuple(p[inside].T)].min()) if inside.any() else np.inf
        if margin_mm is None or d <= margin_mm:
            return max(d - spacing.min(), 0.0), ""
    return float("nan"), "bone_distance_mm: no bone within 30 mm"


def _bone_gap_masks(lesion: Lesion) -> float:
    """Radiographs: gap between the lesion and bone masks (minus one pixel)."""
    if lesion.context.get("touches_bone"):
        return 0.0
    bone, off = lesion.context["bone"], lesion.context["bone_offset"]
    spacing = np.asarray(lesion.spacing)
    dist = _edt_to(bone, spacing)
    idx = np.argwhere(lesion.mask) - np.asarray(off)
    inside = np.all((idx >= 0) & (idx < np.asarray(bone.shape)), axis=1)
    d = dist[tuple(idx[inside].T)].min() if inside.any() else np.inf
    return float(max(d - spacing.min(), 0.0))


def envelope_in_context(lesion: Lesion, margin_mm: float) -> tuple[tuple[slice, ...], np.ndarray]:
    """The box of the scan-level context crop (``lesion.context["bone_image"]``, ``["bone"]``)
    covering the lesion's envelope grown by `margin_mm` per axis (clipped to the crop), and the
    envelope placed on that box."""
    env, _ = envelope_depth_mm(lesion)
    spacing = np.asarray(lesion.spacing, dtype=float)
    g = np.ceil(margin_mm / spacing).astype(int)
    off = np.asarray(lesion.context["bone_offset"])
    lo = np.maximum(-off - g, 0)
    hi = np.minimum(-off + np.asarray(env.shape) + g, lesion.context["bone_image"].shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    inside = np.zeros(tuple(hi - lo), bool)
    at = -off - lo
    inside[tuple(slice(int(a), int(a) + n) for a, n in zip(at, env.shape, strict=True))] = env
    return box, inside


def _shell_fractions(lesion: Lesion) -> tuple[float, float]:
    """Fat and muscle fractions of the tissue within SHELL_MM outside the lesion's envelope."""
    spacing = np.asarray(lesion.spacing, dtype=float)
    if "bone_image" in lesion.context:  # the wide crop around the lesion: room for the whole shell
        box, big = envelope_in_context(lesion, SHELL_MM)
        img = lesion.context["bone_image"][box]
    else:  # only the lesion crop: the shell is cut to its one-voxel margin
        img, (big, _) = lesion.image, envelope_depth_mm(lesion)
    dist = _edt_to(big, spacing)
    shell = (dist > 0) & (dist <= SHELL_MM + 1e-6)
    hu = img[shell]
    if not hu.size:
        return float("nan"), float("nan")
    fat = float(np.mean((hu >= FAT_HU[0]) & (hu <= FAT_HU[1])))
    muscle = float(np.mean((hu >= MUSCLE_HU[0]) & (hu <= MUSCLE_HU[1])))
    return fat, muscle


def compartment(skin_depth_mm: float, shell_fat_fraction: float, intra_articular: bool = False) -> str:
    """``intra_articular`` (most of the lesion inside a joint gap), else ``cutaneous`` (centroid
    <= 3 mm below the skin), ``subcutaneous`` (surrounded mostly by fat, >= 0.5 of the 2 mm
    shell), else ``deep``; empty when the skin depth is unknown (and the lesion is not in a joint).

    >>> compartment(1.6, 0.1), compartment(8.0, 0.8), compartment(20.0, 0.1)
    ('cutaneous', 'subcutaneous', 'deep')
    >>> compartment(20.0, 0.1, intra_articular=True)
    'intra_articular'
    """
    if intra_articular:
        return "intra_articular"
    if not np.isfinite(skin_depth_mm):
        return ""
    if skin_depth_mm <= CUTANEOUS_MM:
        return "cutaneous"
    if np.isfinite(shell_fat_fraction) and shell_fat_fraction >= SUBCUTANEOUS_FAT_FRACTION:
        return "subcutaneous"
    return "deep"


def _joint(lesion: Lesion, surface: np.ndarray | None = None) -> tuple[float, float, str]:
    """(distance to the nearest joint gap in mm, fraction of the lesion's voxels in a gap, reason
    when not assessable) from the scan's joint gaps (segment._joints, in ``lesion.context``);
    `surface`: the lesion's surface voxels (crop indices) when already found."""
    gaps = lesion.context.get("joint_gaps")
    if gaps is None:
        return float("nan"), float("nan"), "joint_distance_mm: no joint search (no scan context)"
    if not gaps.found:
        return float("nan"), float("nan"), f"joint_distance_mm: {gaps.reason}"
    offset = np.asarray(lesion.offset)
    inside = gaps.inside(np.argwhere(lesion.mask) + offset)
    if inside.any():
        return 0.0, float(inside.mean()), ""
    if surface is not None:
        edge = surface
    elif lesion.kind == "ct":
        edge = _lesion_halfmax_surface(lesion)
    else:
        edge = np.argwhere(lesion.mask & ~ndimage.binary_erosion(lesion.mask, border_value=0))
    return gaps.distance_mm(edge + offset), 0.0, ""


def periarticular(joint_distance_mm: float, compartment: str | None, limit_mm: float = PERIARTICULAR_MM):
    """1 when a deep lesion (or, on radiographs where `compartment` is None, any lesion) lies at
    most `limit_mm` from a joint gap, 0 when farther or not deep, NaN when not assessable.

    >>> periarticular(12.0, "deep"), periarticular(80.0, "deep"), periarticular(12.0, "subcutaneous")
    (1, 0, 0)
    >>> periarticular(0.0, "intra_articular"), periarticular(30.0, None)
    (0, 1)
    """
    if compartment is not None and compartment != "deep":
        return 0 if compartment else float("nan")
    if not np.isfinite(joint_distance_mm):
        return float("nan")
    return int(joint_distance_mm <= limit_mm)


def ossification(lesion: Lesion) -> tuple[float, float | int, str]:
    """(score 0..1, flag 1/0 (NaN when not assessable), reason when not assessable) from the envelope's depth profile."""
    env, depth = envelope_depth_mm(lesion)
    image = lesion.image
    core = env & (depth >= CORE_MM)
    if core.sum() < 4:
        return float("nan"), float("nan"), "ossification_score, ossified: lesion too thin to have a core (< 4 voxels deeper than 2 mm)"
    core_hu = image[core].astype(np.float64)
    rim = env & (depth < RIM_MM)
    # a rim voxel is cortical when it or a face/edge neighbour is dense: the outermost layer is
    # partial volume, the cortex proper lies just under it
    local_max = ndimage.maximum_filter(np.where(env, image, -np.inf), size=3)
    shell_hu = max(CORTEX_HU, float(np.median(core_hu)) + SHELL_OVER_CORE_HU)
    completeness = float(np.mean(local_max[rim] >= shell_hu)) if rim.any() else 0.0
    marrow = float(np.mean(((core_hu >= MARROW_HU[0]) & (core_hu <= MARROW_HU[1])) | (core_hu < MARROW_FAT_HU)))
    flag = int(completeness >= SHELL_COMPLETE and marrow >= MARROW_FRACTION)
    return completeness * marrow, flag, ""


def context_features(lesion: Lesion) -> dict:
    """Bone gap, skin depth, surrounding tissue, joint distance, compartment and ossification of a
    lesion.

    Columns
    -------
    bone_distance_mm : float
        Gap between the lesion surface and the nearest bone surface (mm, >= 0; 0 when touching).
        CT: measured between half-maximum boundaries, which do not move with partial volume: the
        lesion's voxels at or above (p95 of its HU + 40) / 2 and the bone mask's voxels at or above
        the bone surface HU (cortex plateau + 40) / 2; the smallest distance between their voxel
        centres minus one voxel (half a voxel on each side), floored at 0, bone within 30 mm of the
        lesion (a nearest-neighbour query on the scan's bone surface, built once per scan). Radiographs: the same on the lesion
        and bone masks, 0 for a lesion split off bone. Empty, with a reason in ``not_assessed``,
        when no bone lies within 30 mm or no bone mask exists. Serves "separate from bone"
        (tumoral calcinosis, myositis ossificans with its cleft) versus "at a tendon insertion"
        (calcific tendinitis).
    skin_depth_mm : float
        In-plane depth of the lesion centroid below the skin surface (mm, >= 0). CT: distance to
        the nearest air voxel (<= -500 HU) outside the body, at full resolution, minus half a
        pixel; air deeper than two coarse cells (about 6 mm) inside the body outline is gas, not
        outside. Radiographs: from the coarse body mask (about 3 mm grid). Serves the cutaneous /
        subcutaneous / deep split (calcinosis cutis is superficial).
    shell_fat_fraction, shell_muscle_fraction : float
        CT: fractions (0..1) of the voxels within 2 mm outside the lesion's envelope that are fat
        (-190..-30 HU) and muscle (30..80 HU) (criteria-research 2.6 windows [est]).
    joint_distance_mm : float
        Distance from the lesion surface to the nearest joint gap (mm, >= 0; 0 when any of the
        lesion's voxels lies in a gap): criteria-research 2.6 ``d_joint``. A joint gap is the
        non-bone region within ``joint_gap_mm`` / 2 (5 mm) of two different bones, the bones
        being the bone mask's components (CT: its voxels >= ``threshold_hu``, which reopens joint
        spaces the mask's slice filling closed; slice by slice on slices thicker than
        ``bone_split_max_slice_mm``) of at least ``joint_min_bone_mm`` (8 mm) a side, the
        distances to them measured from their half-maximum surface, found once per scan on a
        grid of about 2 mm (segment._joints). The distance runs from the lesion's surface voxels
        (CT: of its half-maximum set, as for bone_distance_mm; radiographs: of its mask, in the
        image plane) to the union of the gap's grid cells: good to about a grid cell (on the hip
        phantoms 0.3-1.1 mm short on average, never more than 2 mm). Empty, with a reason in
        ``not_assessed``, when the scan shows no joint (no two bones within 10 mm, or bones
        fused on the image). Serves the periarticular location of tumoral calcinosis
        (criteria-research 3b, ``++``).
    compartment : str
        CT: ``intra_articular`` when at least ``intra_articular_fraction`` (0.5) of the lesion's
        voxels lie in a joint gap (inside the joint space between articulating bones,
        criteria-research 2.6); else ``cutaneous`` when skin_depth_mm <= 3 mm (criteria-research
        2.6 [est]); ``subcutaneous`` when shell_fat_fraction >= 0.5 (lying in fat); otherwise
        ``deep`` (muscle, fascia, deep soft tissue). Fat-surrounded deep lesions (pelvic or
        intermuscular fat) are called subcutaneous too: a known simplification. Whether a deep
        lesion is near a joint is the separate ``periarticular`` column.
    periarticular : int
        1 when the lesion is deep (compartment ``deep``; radiographs: any lesion, the distance
        being the projected one) and joint_distance_mm <= ``periarticular_mm`` (50 mm,
        criteria-research 2.6 [est]); 0 when farther, or cutaneous, subcutaneous or
        intra-articular; empty when not assessable (no joint in the scan, or no compartment). A
        column of its own rather than a compartment value: periarticular and deep are not
        exclusive, and downstream classifiers get the depth and the joint separately. Serves
        tumoral calcinosis (periarticular ``++``, criteria-research 3b) and, against it, the
        intra-articular calcifications.
    ossification_score : float
        CT, 0..1: shell completeness x marrow fraction. Shell completeness: the fraction of the
        envelope's rim voxels (depth < 1 mm) that are, or touch, a voxel of at least
        max(400 HU, median core HU + 200 HU) (a cortex denser than what it encloses). Marrow
        fraction: the fraction of core voxels (depth >= 2 mm) that are medullary-like, 100-400 HU
        (cancellous) or below -30 HU (fatty marrow). Empty, with a reason, without a core (fewer
        than 4 voxels deeper than 2 mm).
    ossified : int
        CT: 1 when shell completeness >= 0.7 and marrow fraction >= 0.5 (criteria-research 2.6:
        cortical shell >= 400 HU over >= 70 % plus a medullary interior [D]), else 0: mature
        myositis ossificans and heterotopic bone versus homogeneous or cystic calcification (a
        fluid or soft-tissue centre, 0-60 HU, is not marrow: zonal immature myositis ossificans
        and cysts show a high rim_core_contrast instead). Trabecular texture, which 2.6 also
        names, is not tested. Bone formation is never seen in tumoral calcinosis.
    """
    ctx = lesion.context
    row: dict = {"skin_depth_mm": float(ctx.get("skin_depth_mm", float("nan")))}
    reasons = []
    surface = _lesion_halfmax_surface(lesion) if lesion.kind == "ct" else None
    if "bone" in ctx and ctx["bone"].any():
        if lesion.kind == "ct" and "bone_image" in ctx:
            row["bone_distance_mm"], why = _bone_gap_halfmax(lesion, surface)
            if why:
                reasons.append(why)
        else:
            row["bone_distance_mm"] = _bone_gap_masks(lesion)
    elif ctx.get("touches_bone"):
        row["bone_distance_mm"] = 0.0
    else:
        row["bone_distance_mm"] = float("nan")
        reasons.append("bone_distance_mm: no bone within 30 mm" if "bone" in ctx else "bone_distance_mm: no bone mask")
    if not np.isfinite(row["skin_depth_mm"]):
        reasons.append("skin_depth_mm: no body outline")
    d_joint, in_joint, why_joint = _joint(lesion, surface)
    row["joint_distance_mm"] = d_joint
    limit = float(ctx.get("periarticular_mm", PERIARTICULAR_MM))
    if lesion.kind == "ct":
        fat, muscle = _shell_fractions(lesion)
        row["shell_fat_fraction"], row["shell_muscle_fraction"] = fat, muscle
        intra = bool(in_joint >= float(ctx.get("intra_articular_fraction", INTRA_ARTICULAR_FRACTION)))
        row["compartment"] = compartment(row["skin_depth_mm"], fat, intra_articular=intra)
        if not row["compartment"]:
            reasons.append("compartment: no skin depth")
        row["periarticular"] = periarticular(d_joint, row["compartment"], limit)
    else:
        row["periarticular"] = periarticular(d_joint, None, limit)
    if why_joint:
        if not np.isfinite(row["periarticular"]) and (lesion.kind != "ct" or row["compartment"]):
            why_joint = why_joint.replace("joint_distance_mm:", "joint_distance_mm, periarticular:", 1)
        reasons.append(why_joint)
    if lesion.kind == "ct":
        score, flag, why = ossification(lesion)
        row["ossification_score"], row["ossified"] = score, flag
        if why:
            reasons.append(why)
    if reasons:
        row["not_assessed"] = "; ".join(reasons)
    return row
