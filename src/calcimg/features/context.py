"""Where a lesion sits: its gap to bone and its depth below the skin (criteria-research 2.6)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from calcimg.lesion import Lesion


def context_features(lesion: Lesion) -> dict:
    """Bone gap and skin depth of a lesion.

    Columns
    -------
    bone_distance_mm : float
        Gap between the lesion surface and the nearest bone surface (mm, >= 0): the smallest
        distance between a lesion voxel centre and a bone voxel centre, minus one voxel (half a
        voxel on each side), floored at 0; exactly 0 for a lesion split off bone (touching it).
        Empty, with a reason in ``not_assessed``, when no bone lies within the search margin
        (30 mm) or no bone mask exists. Serves "separate from bone" (tumoral calcinosis,
        myositis ossificans with its cleft) versus "at a tendon insertion" (calcific tendinitis).
    skin_depth_mm : float
        In-plane depth of the lesion centroid below the skin surface (mm, >= 0), from the coarse
        body mask (about 3 mm grid). Serves the cutaneous / subcutaneous / deep split (calcinosis
        cutis is superficial).
    """
    row: dict = {"skin_depth_mm": float(lesion.context.get("skin_depth_mm", float("nan")))}
    reasons = []
    if lesion.context.get("touches_bone"):
        row["bone_distance_mm"] = 0.0
    elif "bone" in lesion.context and lesion.context["bone"].any():
        bone = lesion.context["bone"]
        off = lesion.context["bone_offset"]
        spacing = np.asarray(lesion.spacing)
        dist = ndimage.distance_transform_edt(~bone, sampling=spacing)
        idx = np.argwhere(lesion.mask) - np.asarray(off)
        inside = np.all((idx >= 0) & (idx < np.asarray(bone.shape)), axis=1)
        d = dist[tuple(idx[inside].T)].min() if inside.any() else np.inf
        row["bone_distance_mm"] = float(max(d - spacing.min(), 0.0))
    else:
        row["bone_distance_mm"] = float("nan")
        reasons.append("bone_distance_mm: no bone within 30 mm" if "bone" in lesion.context
                       else "bone_distance_mm: no bone mask")
    if not np.isfinite(row["skin_depth_mm"]):
        reasons.append("skin_depth_mm: no body outline")
    if reasons:
        row["not_assessed"] = "; ".join(reasons)
    return row
