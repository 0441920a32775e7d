"""Writing small synthetic DICOM series for tests, with full control over the header quirks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"


def _base(sop_class: str, modality: str, study_uid: str, series_uid: str, ts=ExplicitVRLittleEndian) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "TEST^PATIENT"
    ds.PatientID = "T0001"
    ds.PatientBirthDate = "19700101"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid()
    return ds


def ct_slices(
    hu: np.ndarray,
    *,
    spacing=(2.0, 0.8, 0.8),
    origin=(-50.0, -60.0, 100.0),
    row_cos=(1.0, 0.0, 0.0),
    col_cos=(0.0, 1.0, 0.0),
    slice_axis=None,
    positions=None,
    patient_position: str | None = "HFS",
    intercept: float = -1024.0,
    slope: float = 1.0,
    bits_stored: int = 12,
    signed: bool = False,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> list[FileDataset]:
    """One CT dataset per slice of `hu` (slices, rows, columns), geometry as given.

    The slice k sits at ``origin + k * spacing[0] * slice_axis`` (slice_axis defaults to the normal
    row x col, so a sheared axis models gantry tilt), unless `positions` lists them explicitly.
    """
    r, c = np.asarray(row_cos, float), np.asarray(col_cos, float)
    n = np.cross(r, c)
    axis = n if slice_axis is None else np.asarray(slice_axis, float) / np.linalg.norm(slice_axis)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    stored = np.rint((hu.astype(np.float64) - intercept) / slope)
    dtype = np.int16 if signed else np.uint16
    out = []
    for k in range(hu.shape[0]):
        ds = _base(CTImageStorage, "CT", study_uid, series_uid)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        pos = np.asarray(origin, float) + k * spacing[0] * axis if positions is None else np.asarray(positions[k])
        ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*r, *c)]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.InstanceNumber = k + 1
        if patient_position is not None:
            ds.PatientPosition = patient_position
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleIntercept = intercept
        ds.RescaleSlope = slope
        ds.KVP = 120
        ds.Manufacturer = "calcimg tests"
        ds.PixelData = stored[k].astype(dtype).tobytes()
        out.append(ds)
    return out


def write_series(datasets, folder: Path, *, shuffle_seed: int | None = 0, suffix: str = "") -> list[Path]:
    """Write datasets under random-looking names (so file order is not slice order)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(shuffle_seed)
    names = [f"IM{v:08x}{suffix}" for v in rng.choice(2**31, size=len(datasets), replace=False)]
    paths = []
    for ds, name in zip(datasets, names, strict=True):
        p = folder / name
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


def dx_image(
    values: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    imager_spacing=(0.2, 0.2),
    pixel_spacing=None,
    magnification: float | None = None,
    patient_orientation=("L", "F"),
    view_position: str | None = "AP",
    orientation_code: tuple[str, str] | None = None,
    modifier_code: tuple[str, str] | None = None,
    description: str = "",
) -> FileDataset:
    """A DX For Presentation image of stored `values` (rows, columns)."""
    ds = _base(DX_STORAGE, "DX", generate_uid(), generate_uid())
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Rows, ds.Columns = values.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if imager_spacing is not None:
        ds.ImagerPixelSpacing = list(imager_spacing)
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    if magnification is not None:
        ds.EstimatedRadiographicMagnificationFactor = magnification
    if patient_orientation is not None:
        ds.PatientOrientation = list(patient_orientation)
    if view_position is not None:
        ds.ViewPosition = view_position
    if description:
        ds.SeriesDescription = description
    if orientation_code is not None:
        item = pydicom.Dataset()
        item.CodeValue, item.CodingSchemeDesignator = orientation_code
        if modifier_code is not None:
            mod = pydicom.Dataset()
            mod.CodeValue, mod.CodingSchemeDesignator = modifier_code
            item.PatientOrientationModifierCodeSequence = [mod]
        ds.PatientOrientationCodeSequence = [item]
    ds.PixelData = values.astype(np.uint16).tobytes()
    return ds
