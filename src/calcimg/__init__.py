"""calcimg: per-lesion feature tables for soft-tissue calcification from CT and radiographs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("calcimg")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from calcimg.errors import (
    CalcimgError,
    InconsistentSeriesError,
    MissingGeometryError,
    NotAnImageError,
    UnreadableFileError,
    UnsupportedDataError,
)
from calcimg.scan import Scan

__all__ = [
    "CalcimgError",
    "InconsistentSeriesError",
    "MissingGeometryError",
    "NotAnImageError",
    "Scan",
    "UnreadableFileError",
    "UnsupportedDataError",
    "__version__",
]
