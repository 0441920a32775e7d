"""A user's label image (NIfTI, NRRD, MetaImage) for an image already loaded, grid checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from calcimg.errors import MaskMismatchError, UnsupportedDataError
from calcimg.io._volume import itk_geometry, read_itk
from calcimg.scan import Scan

#: Geometry tolerances: spacing relative, origin in voxels of the smallest spacing, direction cosines.
SPACING_RTOL, ORIGIN_VOXELS, DIRECTION_ATOL = 1e-3, 0.01, 1e-3


def load_mask(path: str | Path, scan: Scan) -> Scan:
    """Read a label image (0 = background, 1, 2, ... = lesions) that lies on `scan`'s grid.

    The file is read through SimpleITK (NIfTI ``.nii``/``.nii.gz``, NRRD, MetaImage), whose
    physical space is LPS like DICOM's, and must match the scan voxel for voxel: same shape, same
    spacing (relative 1e-3), origin within 1 % of a voxel and direction cosines within 1e-3
    (radiographs: shape and spacing only; their image files carry no patient geometry).
    Resampling a mask would move its boundary, so a mismatch is an error, never fixed silently.

    Returns
    -------
    Scan
        The labels as ``pixels`` (integers) with the scan's geometry, for
        `calcimg.pipeline.measure_with_mask`.

    Raises
    ------
    MaskMismatchError
        The grid differs; the message names the file and what differs.
    UnreadableFileError, UnsupportedDataError
        The file cannot be read, or is not a scalar 2-D/3-D label image.
    """
    img = read_itk(path)
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise UnsupportedDataError("a mask must be a scalar label image, not a vector or colour image", path)
    arr = np.asarray(sitk.GetArrayFromImage(img))
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise UnsupportedDataError("a mask must hold integer labels (0 = background); this one has "
                                       "fractional values", path)
        arr = arr.astype(np.int64)
    if arr.shape != scan.shape:
        raise MaskMismatchError(f"mask shape {arr.shape} differs from the image's {scan.shape} "
                                "(array order: slices, rows, columns)", path)
    spacing, origin, direction = itk_geometry(img)
    what = []
    if not np.allclose(spacing, scan.spacing, rtol=SPACING_RTOL, atol=0):
        what.append(f"spacing {tuple(round(s, 4) for s in spacing)} mm vs {tuple(round(s, 4) for s in scan.spacing)} mm")
    if scan.kind == "ct":
        tol = ORIGIN_VOXELS * min(scan.spacing)
        if np.max(np.abs(origin - scan.origin)) > tol:
            what.append(f"origin {np.round(origin, 3).tolist()} vs {np.round(scan.origin, 3).tolist()} (LPS mm)")
        if np.max(np.abs(direction - scan.direction)) > DIRECTION_ATOL:
            what.append("direction cosines differ (the mask is oriented differently)")
    if what:
        raise MaskMismatchError("mask does not lie on the image's voxel grid: " + "; ".join(what)
                                + " (resample the mask onto the image first)", path)
    return Scan(arr, scan.spacing, scan.origin, scan.direction, scan.kind, study_uid=scan.study_uid,
                series_uid=scan.series_uid, source=str(path), spacing_source="mask file header",
                notes=[f"labels from {path}"])
