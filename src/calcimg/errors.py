"""The exceptions calcimg raises. Each message names the file and a reason a user can act on."""

from __future__ import annotations

from pathlib import Path


class CalcimgError(Exception):
    """Base class of every error calcimg raises on purpose."""

    def __init__(self, reason: str, path: str | Path | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(reason if path is None else f"{path}: {reason}")


class UnreadableFileError(CalcimgError):
    """A file could not be read or parsed (corrupt, truncated, not DICOM, permission denied)."""


class NotAnImageError(CalcimgError):
    """A readable DICOM object that holds no image calcimg can measure (SR, RTSTRUCT, DICOMDIR...)."""


class InconsistentSeriesError(CalcimgError):
    """The files of one series do not form one volume (duplicate positions, mixed sizes...)."""


class MissingGeometryError(CalcimgError):
    """A tag needed to place the pixels in space is missing or invalid."""


class UnsupportedDataError(CalcimgError):
    """Valid data calcimg does not handle (colour images, an unknown compression...)."""


class MaskMismatchError(CalcimgError):
    """A user's mask does not lie on its image's voxel grid (shape, spacing, origin or direction)."""
