"""The `Lesion`: one segmented lesion as a crop, the unit every feature works on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)
class Lesion:
    """One lesion, cropped to its bounding box (plus a margin) from its `Scan`.

    Attributes
    ----------
    lesion_id : int
        1..n within the series, by decreasing size.
    image : ndarray
        The scan's pixels on the crop (HU for CT; larger = denser for radiographs).
    mask : ndarray of bool
        The lesion's voxels on the crop.
    offset : tuple of int
        Array index of the crop's first voxel in the scan.
    spacing : tuple of float
        mm per array axis.
    origin, direction : ndarray
        The scan's geometry (see `calcimg.scan.Scan`); with `offset` they place the crop in space.
    gravity : ndarray or None
        Unit gravity vector in array axes, or None when unknown.
    kind : {"ct", "radiograph"}
    component_count : int
        Connected calcified components grouped into this lesion.
    context : dict of str -> ndarray
        Crops of the context maps the segmentation computed (distance to bone, depth below skin...).
    """

    lesion_id: int
    image: np.ndarray
    mask: np.ndarray
    offset: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: np.ndarray
    direction: np.ndarray
    kind: str
    gravity: np.ndarray | None = None
    component_count: int = 1
    context: dict = field(default_factory=dict)

    def index_to_physical(self, index: np.ndarray) -> np.ndarray:
        """Crop indices (..., ndim) -> LPS mm (CT) or image-plane mm (radiograph)."""
        index = np.asarray(index, dtype=float) + np.asarray(self.offset, dtype=float)
        return self.origin + (index * np.asarray(self.spacing)) @ self.direction.T
