"""Cutting lesions out of a segmented scan, with the context the features need."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import ndimage

from calcimg.lesion import Lesion
from calcimg.scan import Scan
from calcimg.segment._types import Segmentation

#: How far around a lesion bone is looked for (mm); beyond it bone_distance_mm is not assessed.
BONE_SEARCH_MM = 30.0


def _grow(box, shape, margin_vox):
    return tuple(slice(max(b.start - m, 0), min(b.stop + m, n)) for b, m, n in zip(box, margin_vox, shape, strict=True))


class _SkinDepth:
    """In-plane depth below the skin, from the coarse body mask, one slice EDT at a time (cached)."""

    def __init__(self, scan: Scan, seg: Segmentation) -> None:
        self.body, self.steps = seg.body_coarse, seg.body_steps
        self.spacing = scan.spacing
        self.cache: dict[int, np.ndarray] = {}

    def __call__(self, index: np.ndarray) -> float:
        if self.body is None or not self.body.any():
            return float("nan")
        c = np.minimum((np.asarray(index) / np.asarray(self.steps)).round().astype(int), np.asarray(self.body.shape) - 1)
        c = np.maximum(c, 0)
        if self.body.ndim == 2:
            key, plane, at = 0, self.body, tuple(c)
            sampling = [self.steps[a] * self.spacing[a] for a in range(2)]
        else:
            key, plane, at = int(c[0]), self.body[c[0]], (c[1], c[2])
            sampling = [self.steps[a] * self.spacing[a] for a in (1, 2)]
        if key not in self.cache:
            self.cache[key] = ndimage.distance_transform_edt(np.pad(plane, 1), sampling=sampling)[1:-1, 1:-1]
        return float(self.cache[key][at])


def crop_lesions_basic(scan: Scan, seg: Segmentation, margin: int = 1) -> Iterator[Lesion]:
    """Yield one `Lesion` per label: its crop (box plus `margin` voxels) and the context read off
    the segmentation alone (`calcimg.segment.crop_lesions` adds the scan-level context).

    ``lesion.context`` holds ``bone`` (the bone mask on the lesion's box grown by
    `BONE_SEARCH_MM`, with ``bone_offset`` its first voxel relative to the lesion crop),
    ``touches_bone`` (the lesion was split off a bone-bearing component) and ``skin_depth_mm``
    (in-plane depth of the lesion centroid below the skin; NaN without a body mask).
    """
    shape = scan.pixels.shape
    skin = _SkinDepth(scan, seg)
    search = [int(np.ceil(BONE_SEARCH_MM / s)) if np.isfinite(s) and s > 0 else 50 for s in scan.spacing]
    for i, box in enumerate(seg.boxes):
        lid = i + 1
        grown = _grow(box, shape, [margin] * len(shape))
        if seg.masks is not None:
            mask = np.zeros(tuple(b.stop - b.start for b in grown), bool)
            mask[tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown, strict=True))] = seg.masks[i]
        else:
            mask = seg.labels[grown] == lid
        offset = tuple(b.start for b in grown)
        context: dict = {"touches_bone": bool(seg.touches_bone[i]) if seg.touches_bone else False}
        if seg.bone is not None:
            wide = _grow(box, shape, search)
            context["bone"] = seg.bone[wide]
            context["bone_offset"] = tuple(w.start - o for w, o in zip(wide, offset, strict=True))
        centroid = np.argwhere(mask).mean(axis=0) + np.asarray(offset)
        context["skin_depth_mm"] = skin(centroid)
        yield Lesion(
            lesion_id=lid,
            image=scan.pixels[grown],
            mask=mask,
            offset=offset,
            spacing=scan.spacing,
            origin=scan.origin,
            direction=scan.direction,
            kind=scan.kind,
            gravity=scan.gravity,
            component_count=seg.component_counts[i],
            context=context,
        )
