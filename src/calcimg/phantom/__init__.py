"""Synthetic sample data: CT and radiograph DICOM phantoms of soft-tissue calcification.

`generate` writes one folder per study: real DICOM (CT Image Storage, one file per slice, or DX
For Presentation) with shuffled file names, plus ``truth.json`` giving gravity and, per lesion, the
pattern (CONTRACT.md names) and measurements taken on the rasterised lesion.

The anatomy and lesions are functions of DICOM patient coordinates (LPS, mm), sampled on the voxel
grid that the written Image Position/Orientation (Patient) and spacing describe, so every posture
and the oblique study are geometrically exact; fluid-calcium levels lie perpendicular to the
gravity of each acquisition.

Examples
--------
>>> import tempfile
>>> from calcimg.phantom import generate
>>> folders = generate(tempfile.mkdtemp(), preset="test", seed=0)  # doctest: +SKIP
>>> sorted(p.name for p in folders)  # doctest: +SKIP
['ct_left_decubitus', 'ct_oblique', 'ct_prone', 'ct_right_decubitus', 'ct_supine', 'dx_hip']
"""

from __future__ import annotations

from ._lesions import PATTERNS
from ._study import PRESETS, build_study, generate, study_specs

__all__ = ["PATTERNS", "PRESETS", "build_study", "generate", "study_specs"]
