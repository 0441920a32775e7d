from __future__ import annotations

import cc3d
import numpy as np
from scipy import ndimage

from calcimg.scan import Scan
from calcimg.segment._types import Segmentation
from calcimg.settings import Settings


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
