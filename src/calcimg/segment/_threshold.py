from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import ndimage

from calcimg.lesion import Lesion
from calcimg.scan import Scan
from calcimg.settings import Settings


@dataclass
class Segmentation:
    """A label image (0 = background, 1..n = lesions by decreasing size) and each lesion's box."""

    labels: np.ndarray
    boxes: list[tuple[slice, ...]]
    component_counts: list[int]

    @property
    def n_lesions(self) -> int:
        return len(self.boxes)


def segment_ct_threshold(scan: Scan, settings: Settings | None = None) -> Segmentation:
    """CT voxels >= ``settings.threshold_hu`` grouped into connected components.

    Components smaller than ``settings.min_volume_mm3`` are dropped; the rest are numbered
    1..n by decreasing voxel count (ties by first voxel in array order, so the order is stable).
    """
    settings = settings or Settings()
    if scan.kind != "ct":
        raise ValueError("segment_ct_threshold needs a CT scan")
    mask = scan.pixels >= settings.threshold_hu
    labels, n = cc3d.connected_components(mask, connectivity=settings.connectivity, return_N=True)
    del mask
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    counts[0] = 0
    min_voxels = settings.min_volume_mm3 / scan.voxel_volume
    keep = np.flatnonzero(counts >= max(min_voxels, 1))
    keep = keep[np.argsort(-counts[keep], kind="stable")]
    lut = np.zeros(n + 1, dtype=np.uint32)
    lut[keep] = np.arange(1, keep.size + 1, dtype=np.uint32)
    labels = lut[labels]
    boxes = ndimage.find_objects(labels, max_label=keep.size)
    return Segmentation(labels, [b for b in boxes if b is not None], [1] * keep.size)


def crop_lesions(scan: Scan, seg: Segmentation, margin: int = 1):
    """Yield one `Lesion` per label, cropped to its box plus `margin` voxels."""
    shape = scan.pixels.shape
    for i, box in enumerate(seg.boxes):
        lid = i + 1
        grown = tuple(slice(max(b.start - margin, 0), min(b.stop + margin, n)) for b, n in zip(box, shape, strict=True))
        yield Lesion(
            lesion_id=lid,
            image=scan.pixels[grown],
            mask=seg.labels[grown] == lid,
            offset=tuple(b.start for b in grown),
            spacing=scan.spacing,
            origin=scan.origin,
            direction=scan.direction,
            kind=scan.kind,
            gravity=scan.gravity,
            component_count=seg.component_counts[i],
        )
