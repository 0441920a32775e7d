"""Segmentation: the only place that passes over whole volumes.

Today: calcium candidates by a fixed CT threshold and 26-connected components. Body and bone
masks, lesion grouping and the radiograph path replace this with the segmentation core.
"""

from calcimg.segment._threshold import Segmentation, crop_lesions, segment_ct_threshold

__all__ = ["Segmentation", "crop_lesions", "segment_ct_threshold"]
