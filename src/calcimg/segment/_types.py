from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Segmentation:
    """What segmentation found in one scan.

    Attributes
    ----------
    labels : ndarray of uint32
        0 = background, 1..n = lesions numbered by decreasing size (ties: first voxel in array
        order), same shape as the scan.
    boxes : list of tuple of slice
        ``boxes[i]`` is the bounding box of lesion ``i + 1``.
    component_counts : list of int
        Connected calcified components grouped into each lesion.
    bone : ndarray of bool or None
        Bone (cortical shell with its enclosed marrow); never reported as a lesion.
    body : ndarray of bool or None
        The patient's body (air, table and clothing out).
    flags : list of str
        Things found that a user should know (metal, no body found...).
    masks : list of ndarray or None
        Optional: each lesion's mask on its box (saves a comparison on the label image).
    touches_bone : list of bool or None
        Optional: whether each lesion was split off a bone-bearing component (bone distance 0).
    body_coarse : ndarray or None
        Optional: the body mask on a coarse grid, with `body_steps` the integer step per axis.
    """

    labels: np.ndarray
    boxes: list[tuple[slice, ...]]
    component_counts: list[int]
    bone: np.ndarray | None = None
    body: np.ndarray | None = None
    flags: list[str] = field(default_factory=list)
    masks: list[np.ndarray] | None = None
    touches_bone: list[bool] | None = None
    body_coarse: np.ndarray | None = None
    body_steps: tuple[int, ...] | None = None

    @property
    def n_lesions(self) -> int:
        return len(self.boxes)
