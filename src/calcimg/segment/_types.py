from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Segmentation:
    """What segmentation found in one scan.

    Attributes
    ----------
    labels : ndarray of uint16/uint32
        0 = background, 1..n = lesions numbered by decreasing size (ties: first voxel in array
        order), same shape as the scan. A segmentation built from per-lesion `masks` may pass
        None with `shape`: the label image is then painted on first access (CT: writing a full
        volume of labels costs more than the whole segmentation on this machine class, and the
        features never need it).
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

    labels: np.ndarray | None = field(repr=False)
    boxes: list[tuple[slice, ...]]
    component_counts: list[int]
    bone: np.ndarray | None = None
    body: np.ndarray | None = None
    flags: list[str] = field(default_factory=list)
    masks: list[np.ndarray] | None = None
    touches_bone: list[bool] | None = None
    body_coarse: np.ndarray | None = None
    body_steps: tuple[int, ...] | None = None
    shape: tuple[int, ...] | None = None

    @property
    def n_lesions(self) -> int:
        return len(self.boxes)


def _get_labels(self: Segmentation) -> np.ndarray | None:
    labels = self.__dict__.get("_labels")
    if labels is None and self.masks is not None and self.shape is not None:
        labels = np.zeros(self.shape, np.uint16 if len(self.masks) < 65535 else np.uint32)
        for lid, (box, mask) in enumerate(zip(self.boxes, self.masks, strict=True), 1):
            labels[box][mask] = lid
        self.__dict__["_labels"] = labels
    return labels


def _set_labels(self: Segmentation, value: np.ndarray | None) -> None:
    self.__dict__["_labels"] = value


# the dataclass __init__ assigns through this property, so `labels=None` defers the painting
Segmentation.labels = property(_get_labels, _set_labels)
