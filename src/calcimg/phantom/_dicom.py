"""Writing the phantom as DICOM: CT Image Storage (one file per slice) and DX For Presentation.

UIDs come from `pydicom.uid.generate_uid` with entropy sources derived from the seed and names,
so the same seed writes the same UIDs. File names are random hex, some with ``.dcm``, so that
directory order is not slice order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
DX_PRESENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
IMPLEMENTATION_UID = generate_uid(entropy_srcs=["calcimg", "phantom", "implementation"])

# Posture codes (criteria-research 2.5; DICOM CID 19 / CID 20 / CID 6206).
ERECT = ("C86043", "NCIt", "erect")
RECUMBENT = ("102538003", "SCT", "recumbent")
MODIFIERS = {
    "standing": ("10904000", "SCT", "standing"),
    "supine": ("40199007", "SCT", "supine"),
    "prone": ("1240000", "SCT", "prone"),
    "right_decubitus": ("102535000", "SCT", "right lateral decubitus"),
    "left_decubitus": ("102536004", "SCT", "left lateral decubitus"),
}


def uid(*parts) -> str:
    return generate_uid(entropy_srcs=["calcimg-phantom", *map(str, parts)])


def _code(value, scheme, meaning) -> Dataset:
    d = Dataset()
    d.CodeValue, d.CodingSchemeDesignator, d.CodeMeaning = value, scheme, meaning
    return d


def _base(sop_class: str, sop_uid: str, ids: dict) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = "CALCIMG_PHANTOM"
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20260101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.Manufacturer = "calcimg"
    ds.ManufacturerModelName = "calcimg.phantom"
    ds.SoftwareVersions = ids.get("version", "")
    ds.ReferringPhysicianName = ""
    ds.PatientName = ids["patient_name"]
    ds.PatientID = ids["patient_id"]
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "YES"
    ds.StudyInstanceUID = ids["study_uid"]
    ds.SeriesInstanceUID = ids["series_uid"]
    ds.StudyID = "1"
    ds.SeriesNumber = ids.get("series_number", 1)
    ds.StudyDescription = ids.get("study_description", "calcimg phantom")
    ds.SeriesDescription = ids.get("series_description", "")
    ds.BodyPartExamined = "HIP"
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = 16
    return ds


def file_name(rng: np.random.Generator) -> str:
    name = "".join(f"{b:02x}" for b in rng.integers(0, 256, 8))
    return name + (".dcm" if rng.uniform() < 0.5 else "")


def write_ct(study, folder: Path, ids: dict, rng: np.random.Generator) -> list[Path]:
    """One file per slice; uint16 + intercept -1024 (12 bits stored) or int16 (16 bits)."""
    grid, spec = study.grid, study.spec
    folder.mkdir(parents=True, exist_ok=True)
    row_cos, col_cos, normal = grid.direction[:, 2], grid.direction[:, 1], grid.direction[:, 0]
    iop = [round(float(v), 8) for v in (*row_cos, *col_cos)]
    hu = np.rint(study.hu)
    if spec.storage == "uint16":
        stored = np.clip(hu + 1024, 0, 4095).astype(np.uint16)
        intercept, bits, pixrep = -1024, 12, 0
    else:
        stored = np.clip(hu, -1024, 3071).astype(np.int16)
        intercept, bits, pixrep = 0, 16, 1
    frame = ids["frame_uid"]
    n = grid.shape[0]
    reverse = bool(rng.uniform() < 0.5)  # instance numbers head->feet or feet->head
    paths = []
    for k in range(n):
        sop = uid(ids["series_uid"], "slice", k)
        ds = _base(CT_IMAGE_STORAGE, sop, ids)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] if spec.oblique is None else \
            ["DERIVED", "SECONDARY", "OBLIQUE"]
        ds.Modality = "CT"
        ds.KVP = "120"
        ds.ConvolutionKernel = "PHANTOM_SOFT"
        ds.SliceThickness = f"{grid.spacing[0]:g}"
        ds.PatientPosition = study.patient_position
        ds.FrameOfReferenceUID = frame
        ds.PositionReferenceIndicator = ""
        ds.InstanceNumber = (n - k) if reverse else (k + 1)
        pos = grid.origin + k * grid.spacing[0] * normal
        ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        ds.SliceLocation = f"{float(pos @ normal):.4f}"
        ds.PixelSpacing = [f"{grid.spacing[1]:g}", f"{grid.spacing[2]:g}"]
        ds.Rows, ds.Columns = grid.shape[1], grid.shape[2]
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, pixrep
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = str(intercept), "1", "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        path = folder / file_name(rng)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_dx(view, spec, folder: Path, ids: dict, rng: np.random.Generator) -> Path:
    """One DX For Presentation image, with posture codes, orientation and view position."""
    folder.mkdir(parents=True, exist_ok=True)
    sop = uid(ids["series_uid"], "image")
    ds = _base(DX_PRESENTATION_STORAGE, sop, ids)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.KVP = "65"
    ds.DetectorType = "SCINTILLATOR"
    ds.ImageLaterality = "L"
    ds.InstanceNumber = 1
    ds.ViewPosition = view.view_position
    ds.PatientOrientation = list(view.patient_orientation)
    ds.ImagerPixelSpacing = [f"{spec.imager_spacing:g}"] * 2
    ds.EstimatedRadiographicMagnificationFactor = f"{spec.magnification:g}"
    ds.DistanceSourceToDetector = "1150"
    ds.DistanceSourceToPatient = f"{1150 / spec.magnification:.1f}"
    code = _code(*(ERECT if view.erect else RECUMBENT))
    code.PatientOrientationModifierCodeSequence = Sequence([_code(*MODIFIERS[view.modifier])])
    ds.PatientOrientationCodeSequence = Sequence([code])
    ds.Rows, ds.Columns = view.pixels.shape
    ds.PhotometricInterpretation = view.photometric
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = view.bits, view.bits - 1, 0
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = -1 if view.photometric == "MONOCHROME2" else 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    top = (1 << view.bits) - 1
    ds.WindowCenter, ds.WindowWidth = f"{top // 2}", f"{top}"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.PixelData = np.ascontiguousarray(view.pixels.astype(np.uint16)).tobytes()
    path = folder / file_name(rng)
    ds.save_as(path, enforce_file_format=True)
    return path
