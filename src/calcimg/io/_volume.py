"""NIfTI, NRRD and MetaImage files through SimpleITK, into the same LPS conventions as DICOM."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from calcimg.errors import UnreadableFileError, UnsupportedDataError
from calcimg.io._discover import Series
from calcimg.scan import Scan


def read_itk(path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise UnreadableFileError(f"cannot be read as an image ({first})", path) from exc


def itk_geometry(img: sitk.Image) -> tuple[tuple[float, ...], np.ndarray, np.ndarray]:
    """Spacing, origin and direction in calcimg's array-axis order.

    ITK's index order is (x, y, z) and its physical space is LPS, as DICOM's; NumPy's array from
    `GetArrayFromImage` is (z, y, x). So the array axes are ITK's axes reversed.
    """
    dim = img.GetDimension()
    spacing = tuple(float(s) for s in img.GetSpacing()[::-1])
    origin = np.asarray(img.GetOrigin(), dtype=float)
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(dim, dim)[:, ::-1]
    return spacing, origin, direction


def load_volume_file(series: Series) -> Scan:
    """Load a NIfTI/NRRD/MetaImage file. 3D images are taken as CT in HU, 2D as radiographs.

    These formats record no patient position, so gravity is unknown.
    """
    path = series.volume_path
    img = read_itk(path)
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise UnsupportedDataError("vector or colour images are not supported", path)
    dim = img.GetDimension()
    if dim not in (2, 3):
        raise UnsupportedDataError(f"{dim}-D images are not supported (2-D or 3-D only)", path)
    arr = sitk.GetArrayFromImage(img)
    if arr.dtype.kind in "iu" and arr.size and arr.min() >= -32768 and arr.max() <= 32767:
        pixels = arr.astype(np.int16, copy=False)
    else:
        pixels = arr.astype(np.float32, copy=False)
    spacing, origin, direction = itk_geometry(img)
    notes = ["NIfTI/NRRD/MetaImage: no modality recorded, values taken as HU" if dim == 3 else
             "2-D image file: taken as a radiograph, larger = denser"]
    if dim == 3:
        return Scan(pixels, spacing, origin, direction, "ct", study_uid=series.study_uid,
                    series_uid=series.series_uid, source=series.source,
                    gravity_source="unknown: image files carry no patient position",
                    spacing_source="image file header", notes=notes)
    return Scan(pixels, spacing, np.zeros(2), np.eye(2), "radiograph", study_uid=series.study_uid,
                series_uid=series.series_uid, source=series.source,
                gravity_source="unknown: image files carry no patient position",
                spacing_source="image file header", notes=notes)
