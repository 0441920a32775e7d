"""Reading DICOM, NIfTI and NRRD into `Scan` objects; the only place that reads image files.

>>> from calcimg.io import discover, load                     # doctest: +SKIP
>>> found = discover("study_folder")                           # doctest: +SKIP
>>> scan = load(found.series[0])                               # doctest: +SKIP
"""

from calcimg.io._discover import (
    Discovery,
    Instance,
    Series,
    Skipped,
    discover,
    path_uid,
    read_header,
)
from calcimg.io._gravity import (
    gravity_from_patient_position,
    gravity_from_radiograph_header,
    patient_orientation_axes,
)
from calcimg.io._load import load, radiograph_spacing
from calcimg.io._mask import load_mask

__all__ = [
    "Discovery",
    "Instance",
    "Series",
    "Skipped",
    "discover",
    "gravity_from_patient_position",
    "gravity_from_radiograph_header",
    "load",
    "load_mask",
    "path_uid",
    "patient_orientation_axes",
    "radiograph_spacing",
    "read_header",
]
