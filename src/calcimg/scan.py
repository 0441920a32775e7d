"""The `Scan`: one loaded series, in physical units, with its geometry and gravity.

Loading (`calcimg.io`) is the only place that reads files; everything downstream works on a
`Scan` and never touches pydicom.

Conventions
-----------
* Array axes: CT volumes are ``(slice, row, column)``; radiographs ``(row, column)``.
* ``spacing`` is in mm, in array-axis order (as in scikit-image).
* ``origin`` (LPS mm) is the centre of voxel ``[0, 0, 0]``; ``direction`` is a 3 x ndim matrix whose
  column ``a`` is the unit vector, in DICOM patient coordinates (LPS: +x patient left,
  +y posterior, +z head), along which array axis ``a`` increases. For a gantry-tilted CT the slice
  axis is not perpendicular to the rows and columns: ``direction`` keeps that shear, so
  ``index_to_lps`` is exact.
* Radiographs have no patient-space origin: ``origin`` is ``(0, 0)``, ``direction`` is the 2 x 2
  identity (image-plane mm from the centre of the first pixel, as CONTRACT.md states), and
  ``axes_lps`` holds the patient directions of the two image axes when PatientOrientation gives them.
* ``pixels``: CT in Hounsfield units; radiographs an attenuation image where larger = denser,
  whatever the photometric interpretation. CT pixels are int16 when the rescale is integral and
  fits (half the memory of float32 for a volume that is passed over whole), float32 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Kind = Literal["ct", "radiograph"]


@dataclass(eq=False)
class Scan:
    """One series, loaded.

    Attributes
    ----------
    pixels : ndarray
        CT: HU, shape ``(slices, rows, columns)``. Radiograph: larger = denser, ``(rows, columns)``.
    spacing : tuple of float
        Voxel size in mm per array axis. NaN for a radiograph whose spacing is unknown
        (``spacing_source == "unknown"``): never divide by it.
    origin : ndarray, shape (ndim,) or (3,)
        LPS mm of the centre of the first voxel (CT); zeros for radiographs.
    direction : ndarray, shape (3, 3) for CT, (2, 2) for radiographs
        Column ``a`` is the unit vector of array axis ``a`` (LPS for CT).
    gravity : ndarray or None
        Unit vector of gravity in array axes (physical directions expressed along the array axes,
        mm-space, not index space), or None when it cannot be known. For radiographs, None also
        when gravity lies along the beam (in-plane fraction below cos 20 degrees).
    gravity_lps : ndarray or None
        Unit vector of gravity in DICOM patient coordinates (LPS).
    gravity_source : str
        Where gravity came from (e.g. ``"PatientPosition HFS"``), or why it is unknown. Sources read
        from free text are prefixed ``"heuristic: "``.
    gravity_in_plane : float
        Radiographs: fraction of gravity lying in the image plane (1 = fully). CT: 1.0 when gravity
        is known, NaN otherwise.
    kind : {"ct", "radiograph"}
    study_uid, series_uid : str
    source : str
        The input path (file or folder) the series came from.
    spacing_source : str
        Which header gave the spacing (CT: ``"PixelSpacing+positions"``; radiographs:
        ``"PixelSpacing"``, ``"ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor"``,
        ``"ImagerPixelSpacing (at detector)"`` or ``"unknown"``).
    axes_lps : ndarray or None
        Radiographs: 2 x 3, the patient direction (LPS unit vector) of each image axis, from
        PatientOrientation; None when absent. CT: None (use ``direction``).
    header : dict
        A few non-identifying header facts: manufacturer, model, kernel, kvp, modality,
        patient_position, view_position, photometric, transfer_syntax, series_description.
    notes : list of str
        Things the loader did or noticed that a user should know (resampling, quirks handled).
    """

    pixels: np.ndarray
    spacing: tuple[float, ...]
    origin: np.ndarray
    direction: np.ndarray
    kind: Kind
    study_uid: str = ""
    series_uid: str = ""
    source: str = ""
    gravity: np.ndarray | None = None
    gravity_lps: np.ndarray | None = None
    gravity_source: str = "unknown"
    gravity_in_plane: float = float("nan")
    spacing_source: str = ""
    axes_lps: np.ndarray | None = None
    header: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pixels = np.asarray(self.pixels)
        ndim = self.pixels.ndim
        if self.kind not in ("ct", "radiograph"):
            raise ValueError(f"Scan.kind must be 'ct' or 'radiograph', not {self.kind!r}")
        if self.kind == "ct" and ndim != 3:
            raise ValueError(f"a CT Scan needs a 3D pixel array, got shape {self.pixels.shape}")
        if self.kind == "radiograph" and ndim != 2:
            raise ValueError(f"a radiograph Scan needs a 2D pixel array, got shape {self.pixels.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)
        if len(self.spacing) != ndim:
            raise ValueError(f"spacing {self.spacing} does not match {ndim} array axes")
        self.origin = np.asarray(self.origin, dtype=float)
        self.direction = np.asarray(self.direction, dtype=float)
        if self.gravity is not None:
            self.gravity = np.asarray(self.gravity, dtype=float)
        if self.gravity_lps is not None:
            self.gravity_lps = np.asarray(self.gravity_lps, dtype=float)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.pixels.shape)

    @property
    def ndim(self) -> int:
        return self.pixels.ndim

    @property
    def spacing_known(self) -> bool:
        return bool(np.all(np.isfinite(self.spacing)) and np.all(np.asarray(self.spacing) > 0))

    @property
    def voxel_volume(self) -> float:
        """Volume (mm^3, CT) or area (mm^2, radiograph) of one voxel, with gantry shear taken in."""
        d = self.direction * np.asarray(self.spacing)[None, :]
        if self.kind == "ct":
            return float(abs(np.linalg.det(d)))
        return float(abs(np.linalg.det(d[:2, :2])))

    def index_to_lps(self, index: np.ndarray) -> np.ndarray:
        """Map array indices (..., ndim) to physical coordinates (..., ndim or 3) in mm.

        CT: DICOM patient LPS. Radiograph: image-plane mm (row mm, column mm) from the first pixel.
        """
        index = np.asarray(index, dtype=float)
        return self.origin + (index * np.asarray(self.spacing)) @ self.direction.T

    def lps_to_index(self, points: np.ndarray) -> np.ndarray:
        """Inverse of `index_to_lps` (continuous indices)."""
        points = np.asarray(points, dtype=float)
        m = self.direction * np.asarray(self.spacing)[None, :]
        return (points - self.origin) @ np.linalg.inv(m).T

    def __repr__(self) -> str:
        g = "unknown" if self.gravity_lps is None else np.round(self.gravity_lps, 3).tolist()
        return (
            f"Scan(kind={self.kind!r}, shape={self.shape}, spacing={tuple(round(s, 4) for s in self.spacing)}, "
            f"dtype={self.pixels.dtype}, gravity_lps={g}, series_uid={self.series_uid!r})"
        )
