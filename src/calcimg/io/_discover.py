"""Find the series in a set of files and folders, reading headers only."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from calcimg.errors import UnreadableFileError

#: File name endings read through SimpleITK rather than pydicom.
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

# SOP classes of objects that carry no image calcimg measures. Modality alone is not enough:
# some writers put the referenced image's modality ("CT") on an SR or a presentation state.
_NON_IMAGE_SOP_PREFIXES = {
    "1.2.840.10008.5.1.4.1.1.88.": "structured report",
    "1.2.840.10008.5.1.4.1.1.11.": "presentation state",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT structure set",
    "1.2.840.10008.5.1.4.1.1.481.5": "RT plan",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT dose",
    "1.2.840.10008.5.1.4.1.1.66": "registration or segmentation object",
    "1.2.840.10008.5.1.4.1.1.104.": "encapsulated document",
    "1.2.840.10008.5.1.4.1.1.9.": "waveform",
    "1.2.840.10008.1.3.10": "DICOMDIR (media storage directory)",
}
_NON_IMAGE_MODALITIES = {
    "SR": "structured report",
    "RTSTRUCT": "RT structure set",
    "RTPLAN": "RT plan",
    "RTDOSE": "RT dose",
    "PR": "presentation state",
    "KO": "key object selection",
    "DOC": "encapsulated document",
    "SEG": "segmentation object",
    "REG": "registration object",
}
_CT_SOP = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}
_ENHANCED_CT_SOP = {"1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}
_RADIOGRAPH_MODALITIES = {"CR", "DX", "RG", "MG", "IO", "PX"}


@dataclass
class Instance:
    """One DICOM file of a series: its path, its header (no pixels) and where its pixels start."""

    path: Path
    header: pydicom.Dataset
    pixel_offset: int | None  # byte offset of the (7FE0,0010) element, when known


@dataclass
class Series:
    """A group of files that load into one `Scan`.

    ``kind`` is ``"ct"``, ``"radiograph"``, ``"localizer"`` (scout images: listed, not measured),
    ``"volume"`` (a NIfTI/NRRD/MetaImage file) or ``"other"`` (an image modality calcimg does not
    measure, e.g. MR; `load` refuses it with the reason).
    """

    series_uid: str
    study_uid: str
    modality: str
    kind: str
    source: str
    instances: list[Instance] = field(default_factory=list)
    volume_path: Path | None = None
    split_note: str = ""
    part: int = 0

    @property
    def key(self) -> str:
        """A unique, file-name-safe identifier: the UID, plus ``.pN`` for parts of a split series."""
        return self.series_uid if self.part == 0 else f"{self.series_uid}.p{self.part}"

    @property
    def files(self) -> list[Path]:
        if self.volume_path is not None:
            return [self.volume_path]
        return [inst.path for inst in self.instances]

    @property
    def n_files(self) -> int:
        return len(self.files)

    @property
    def first_header(self) -> pydicom.Dataset | None:
        return self.instances[0].header if self.instances else None

    def __repr__(self) -> str:
        return (
            f"Series(kind={self.kind!r}, modality={self.modality!r}, files={self.n_files}, "
            f"series_uid={self.series_uid!r})"
        )


@dataclass(frozen=True)
class Skipped:
    """A file that discovery left out, and why.

    ``status`` is ``"skipped"`` for files that are not meant to be images (text files, SR,
    RTSTRUCT, DICOMDIR...) and ``"error"`` for files that claim to be DICOM images but cannot be
    used (corrupt, truncated, no pixel data): a batch reports those as failures.
    """

    path: Path
    reason: str
    status: str = "skipped"


@dataclass
class Discovery:
    """What `discover` found: the series to load and the files it skipped, with reasons."""

    series: list[Series]
    skipped: list[Skipped]

    def __iter__(self):
        return iter(self.series)

    def __len__(self) -> int:
        return len(self.series)


def path_uid(path: str | Path) -> str:
    """A stable DICOM-style UID (``2.25.<int>``) for a non-DICOM input, from its resolved path."""
    digest = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()
    return "2.25." + str(int(digest[:32], 16))


def _walk(paths: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """Every file under the given paths, with the input path it came from; sorted, deduplicated."""
    found: dict[Path, str] = {}
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in files:
                    found.setdefault(Path(root) / name, str(p))
        elif p.exists():
            found.setdefault(p, str(p))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return sorted(found.items())


def _is_volume_file(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in VOLUME_SUFFIXES)


def read_header(path: Path) -> tuple[pydicom.Dataset, int | None]:
    """Read a DICOM header without its pixel data.

    Returns the dataset and the byte offset of its Pixel Data element (None when the file has
    none). Files without the 128-byte preamble that still start with a group-0008 element, as some
    older scanners and PACS exports write, are read too.

    Raises
    ------
    UnreadableFileError
        The file is not DICOM, is truncated, or cannot be opened.
    """
    try:
        with open(path, "rb") as fp:
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True)
            except InvalidDicomError:
                fp.seek(0)
                head = fp.read(4)
                # A raw dataset (no preamble, no meta) starts with a little-endian group 0008 tag.
                if len(head) == 4 and head[:2] == b"\x08\x00":
                    fp.seek(0)
                    ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
                else:
                    raise
            offset = fp.tell()
            fp.seek(0, os.SEEK_END)
            has_more = fp.tell() > offset
    except InvalidDicomError as exc:
        raise UnreadableFileError("not a DICOM file (no DICM marker and no DICOM header)", path) from exc
    except OSError as exc:
        raise UnreadableFileError(f"cannot be read ({exc.strerror or exc})", path) from exc
    except Exception as exc:  # pydicom raises many types on corrupt headers
        raise UnreadableFileError(f"corrupt or truncated DICOM header ({exc})", path) from exc
    if not isinstance(ds, pydicom.Dataset) or len(ds) == 0:
        raise UnreadableFileError("no DICOM data elements could be read", path)
    meta = getattr(ds, "file_meta", None)
    if "SOPClassUID" not in ds and not (meta is not None and "MediaStorageSOPClassUID" in meta):
        # pydicom parses noise leniently; a real object always says what it is
        raise UnreadableFileError("corrupt DICOM: no SOP Class UID in the header or meta information", path)
    return ds, (offset if has_more else None)


def _non_image_reason(ds: pydicom.Dataset, has_pixels: bool) -> str | None:
    sop = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
    for prefix, what in _NON_IMAGE_SOP_PREFIXES.items():
        if sop.startswith(prefix):
            return f"not an image: {what} (SOP class {sop})"
    if "DirectoryRecordSequence" in ds:
        return "not an image: DICOMDIR (media storage directory)"
    modality = str(ds.get("Modality", "")).upper()
    if modality in _NON_IMAGE_MODALITIES:
        return f"not an image: {_NON_IMAGE_MODALITIES[modality]} (Modality {modality})"
    if not has_pixels or "Rows" not in ds or "Columns" not in ds:
        return "not an image: no pixel data"
    return None


def _is_localizer(ds: pydicom.Dataset) -> bool:
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return "LOCALIZER" in image_type or "SCOUT" in image_type or "TOPOGRAM" in image_type


def _kind_of(ds: pydicom.Dataset) -> str:
    if _is_localizer(ds):
        return "localizer"
    modality = str(ds.get("Modality", "")).upper()
    sop = str(ds.get("SOPClassUID", ""))
    if modality == "CT" or sop in _CT_SOP:
        return "ct"
    if modality in _RADIOGRAPH_MODALITIES:
        return "radiograph"
    return "other"


def _geometry_key(ds: pydicom.Dataset) -> tuple:
    """What must be equal for two single-frame slices to stack into one volume."""
    iop = ds.get("ImageOrientationPatient")
    iop_key = tuple(np.round(np.asarray(iop, dtype=float), 3)) if iop is not None and len(iop) == 6 else None
    ps = ds.get("PixelSpacing")
    ps_key = tuple(np.round(np.asarray(ps, dtype=float), 4)) if ps is not None and len(ps) == 2 else None
    return (int(ds.get("Rows", 0)), int(ds.get("Columns", 0)), iop_key, ps_key)


def _looks_like_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    try:
        with open(path, "rb") as fp:
            return fp.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _read_one(path: Path) -> tuple[Path, pydicom.Dataset | None, int | None, Skipped | None]:
    try:
        ds, offset = read_header(path)
    except UnreadableFileError as exc:
        return path, None, None, Skipped(path, exc.reason, "error" if _looks_like_dicom(path) else "skipped")
    reason = _non_image_reason(ds, offset is not None)
    if reason is None:
        return path, ds, offset, None
    # An object of an image class (or with a matrix) but no pixels is broken, not merely other.
    broken = reason.endswith("no pixel data") and ("Rows" in ds or _kind_of(ds) in ("ct", "radiograph"))
    return path, ds, offset, Skipped(path, reason, "error" if broken else "skipped")


def discover(paths: str | Path | Sequence[str | Path], *, threads: int = 2) -> Discovery:
    """Find every series under `paths`, reading headers only.

    Walks folders recursively (any file names, with or without ``.dcm``), groups DICOM files by
    SeriesInstanceUID, splits a series whose orientation, matrix size or pixel spacing changes,
    puts localizer/scout images in series of their own (``kind="localizer"``), and records every
    file it leaves out (non-DICOM files, SR, RTSTRUCT, presentation states, DICOMDIR...) with the
    reason. NIfTI/NRRD/MetaImage files become one series each (``kind="volume"``).

    Parameters
    ----------
    paths : path or sequence of paths
        Files and folders.
    threads : int
        Header reads run in this many threads. Parsing holds the GIL, so more than two gain
        nothing on a warm cache (measured with benchmarks/bench_load.py); they help on cold disks.

    Returns
    -------
    Discovery
        ``.series`` ordered by study, then series UID; ``.skipped`` in path order.

    Raises
    ------
    FileNotFoundError
        An input path does not exist.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    files = _walk(paths)
    series: list[Series] = []
    skipped: list[Skipped] = []

    dicom_files = []
    for path, src in files:
        if _is_volume_file(path):
            uid = path_uid(path)
            series.append(Series(uid, uid, "", "volume", str(path), volume_path=path))
        elif path.suffix.lower() in (".raw", ".zraw") and path.with_suffix(".mhd").exists():
            continue  # the data file of a MetaImage header: read through the header
        else:
            dicom_files.append((path, src))

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(pool.map(lambda ps: (_read_one(ps[0]), ps[1]), dicom_files))

    groups: dict[tuple, list[tuple[Instance, str]]] = defaultdict(list)
    for (path, ds, offset, skip), src in results:
        if skip is not None:
            skipped.append(skip)
            continue
        uid = str(ds.get("SeriesInstanceUID", "")) or path_uid(path.parent)
        kind = _kind_of(ds)
        key = (uid, kind, _geometry_key(ds))
        groups[key].append((Instance(path, ds, offset), src))

    by_uid: dict[str, list[tuple]] = defaultdict(list)
    for key in groups:
        by_uid[key[0]].append(key)
    for uid, keys in by_uid.items():
        keys.sort(key=lambda k: (k[1] == "localizer", str(k[2])))
        parts: list[tuple[str, list[tuple[Instance, str]]]] = []
        for key in keys:
            members = groups[key]
            if key[1] == "radiograph":
                # The images of a radiograph series are separate projections, each measured alone.
                members.sort(key=lambda m: (int(m[0].header.get("InstanceNumber", 0) or 0), str(m[0].path)))
                parts.extend((key[1], [m]) for m in members)
            else:
                parts.append((key[1], members))
        n_parts = len(parts)
        split = sum(1 for kind, _ in parts if kind == "ct") > 1
        for number, (kind, members) in enumerate(parts):
            ds0 = members[0][0].header
            folders = sorted({str(inst.path.parent) for inst, _ in members})
            series.append(
                Series(
                    series_uid=uid,
                    study_uid=str(ds0.get("StudyInstanceUID", "")) or uid,
                    modality=str(ds0.get("Modality", "")).upper(),
                    kind=kind,
                    source=folders[0] if len(folders) == 1 else os.path.commonpath(folders),
                    instances=[inst for inst, _ in members],
                    split_note=(
                        f"series {uid} split by geometry (matrix, orientation or pixel spacing changes)"
                        if split and kind == "ct" else ""
                    ),
                    part=0 if n_parts == 1 else number + 1,
                )
            )
    series.sort(key=lambda s: (s.study_uid, s.series_uid, s.kind, s.files[0]))
    return Discovery(series, skipped)
