"""Segmentation: the only place that passes over whole volumes.

`segment_ct` finds calcified lesions in CT (body, bone and metal handled) and `crop_lesions`
cuts them out with their context.
"""

from calcimg.segment._context import crop_lesions
from calcimg.segment._ct import segment_ct
from calcimg.segment._runs import label_runs, label_runs_scipy
from calcimg.segment._types import Segmentation

__all__ = [
    "Segmentation",
    "crop_lesions",
    "label_runs",
    "label_runs_scipy",
    "segment_ct",
]
