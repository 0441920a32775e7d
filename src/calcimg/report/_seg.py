"""DICOM SEG output: the lesions of a CT series as one segment each, for viewers (``extract --seg``).

Written through highdicom (the ``seg`` extra). The SEG references the source CT slices, shares
their Frame of Reference and Study Instance UID, and stores one binary segment per lesion
(``lesion <id>``, segment number = lesion_id), so a viewer overlays it on the CT and a program
reads the lesions back.

Direct identifiers that highdicom copies from the source images (patient name, ID, birth date,
sex, accession number, referring physician, study ID, study date and time) are emptied: the
output contract promises no identifiers anywhere. Viewers align the SEG through the referenced
SOP Instance UIDs and the Frame of Reference, which are kept.

The SEG is written only when each slice of the measured volume is exactly one source image
(positions and orientation agree); a volume that loading resampled (irregular gaps) or an
enhanced multi-frame CT is left out with the reason.
"""

from __future__ import annotations

import copy
import io

import numpy as np

#: Attributes emptied in the SEG (type 2: present but empty) or removed (type 3).
_EMPTIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
            "ReferringPhysicianName", "StudyID", "StudyDate", "StudyTime")
_REMOVED = ("OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientAge", "PatientSize",
            "PatientWeight", "PatientAddress", "PatientComments", "IssuerOfPatientID", "InstitutionName",
            "InstitutionAddress", "PatientBirthTime", "EthnicGroup", "StudyDescription")


class SegNotWritten(Exception):
    """The series cannot be written as a SEG; the message says why."""


def _source_images(series, scan) -> list:
    """The source headers in the scan's slice order, or SegNotWritten."""
    if scan.kind != "ct":
        raise SegNotWritten("SEG is written for CT only")
    instances = list(series.instances)
    n, rows, cols = scan.shape
    if len(instances) != n:
        raise SegNotWritten(f"{len(instances)} source file(s) for {n} slices (multi-frame or resampled volume)")
    positions = []
    for inst in instances:
        h = inst.header
        try:
            positions.append([float(v) for v in h.ImagePositionPatient])
            iop = [float(v) for v in h.ImageOrientationPatient]
        except (AttributeError, TypeError, ValueError) as exc:
            raise SegNotWritten(f"source geometry unreadable ({exc})") from exc
        if int(h.Rows) != rows or int(h.Columns) != cols:
            raise SegNotWritten("source image size differs from the measured volume")
        if not (np.allclose(iop[:3], scan.direction[:, 2], atol=1e-3)
                and np.allclose(iop[3:], scan.direction[:, 1], atol=1e-3)):
            raise SegNotWritten("source orientation differs from the measured volume")
    if len({str(getattr(i.header, "FrameOfReferenceUID", "")) for i in instances}) > 1:
        raise SegNotWritten("the source slices disagree on their Frame of Reference UID")
    positions = np.asarray(positions)
    wanted = scan.index_to_lps(np.stack([np.arange(n), np.zeros(n), np.zeros(n)], axis=1))
    tol = 0.1 * min(scan.spacing)
    order = []
    for k in range(n):
        d = np.linalg.norm(positions - wanted[k], axis=1)
        j = int(np.argmin(d))
        if d[j] > tol:
            raise SegNotWritten("the measured volume was resampled; its slices are not the source images")
        order.append(j)
    if len(set(order)) != n:
        raise SegNotWritten("two slices map to one source image")
    # copies with the identifiers emptied: highdicom copies the patient and study modules from
    # them (and needs the type-2 attributes present, which some scanners leave out)
    sources = []
    for j in order:
        h = copy.deepcopy(instances[j].header)
        for name in _EMPTIED:
            setattr(h, name, "")
        sources.append(h)
    return sources


def seg_bytes(series, scan, seg, *, software_version: str) -> bytes:
    """The DICOM SEG (Part 10 bytes) of a CT series' lesions.

    Raises
    ------
    SegNotWritten
        The series has no lesion, is not CT, or its volume does not map one to one onto the source
        images.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    if seg.n_lesions == 0:
        raise SegNotWritten("no lesions")
    sources = _source_images(series, scan)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="calcimg", version=software_version, family=codes.cid7162.MorphologicalOperations)
    calcification = Code("18115005", "SCT", "Pathologic calcification")
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i, segment_label=f"lesion {i}",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=calcification,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for i in range(1, seg.n_lesions + 1)
    ]
    label_dtype = np.uint8 if seg.n_lesions < 256 else np.uint16
    dcm = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=seg.labels.astype(label_dtype, copy=False),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=9901,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="calcimg",
        manufacturer_model_name="calcimg",
        software_versions=software_version,
        device_serial_number="0",
        series_description="calcimg calcified lesions",
        content_label="CALCIMG",
    )
    for name in _EMPTIED:
        if name in dcm:
            setattr(dcm, name, "")
    for name in _REMOVED:
        if name in dcm:
            delattr(dcm, name)
    buf = io.BytesIO()
    dcm.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
