"""Decoding stored pixel values: a fast path for native little-endian slices, pydicom otherwise."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from calcimg.errors import UnreadableFileError, UnsupportedDataError

_PIXEL_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian


def transfer_syntax(ds: pydicom.Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if ts is None:
        # A file without meta information: pydicom worked the encoding out while reading.
        implicit = getattr(ds, "is_implicit_VR", None)
        if implicit is None:
            implicit = getattr(ds, "original_encoding", (True, True))[0]
        return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return str(ts)


def stored_dtype(ds: pydicom.Dataset) -> np.dtype:
    bits = int(ds.get("BitsAllocated", 16))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    if bits not in (8, 16, 32):
        raise UnsupportedDataError(f"BitsAllocated {bits} is not supported on the fast path")
    return np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")


def can_read_raw(ds: pydicom.Dataset, pixel_offset: int | None) -> bool:
    """True when a slice's pixels can be read straight from the file (no decoding needed)."""
    return (
        pixel_offset is not None
        and transfer_syntax(ds) in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
        and int(ds.get("SamplesPerPixel", 1)) == 1
        and int(ds.get("BitsAllocated", 0)) in (8, 16)
        and int(ds.get("NumberOfFrames", 1) or 1) == 1
    )


def read_raw_into(path: Path, pixel_offset: int, ds: pydicom.Dataset, out: np.ndarray) -> None:
    """Read one native-encoded frame of stored values into `out` (shape rows x columns).

    Reads only the bytes of the Pixel Data element, after checking its tag and length.
    """
    dtype = stored_dtype(ds)
    nbytes = out.size * dtype.itemsize
    implicit = transfer_syntax(ds) == ImplicitVRLittleEndian
    try:
        with open(path, "rb", buffering=0) as fp:
            fp.seek(pixel_offset)
            head = fp.read(8)
            if head[:4] != _PIXEL_TAG:
                raise UnreadableFileError("Pixel Data element not where the header ended", path)
            if implicit:
                (length,) = struct.unpack("<I", head[4:8])
            else:
                vr = head[4:6]
                if vr in (b"OB", b"OW", b"UN", b"OD", b"OF", b"OL", b"OV"):
                    (length,) = struct.unpack("<I", fp.read(4))
                else:
                    (length,) = struct.unpack("<H", head[6:8])
            if length == 0xFFFFFFFF:
                raise UnsupportedDataError("encapsulated pixel data in a native transfer syntax", path)
            if length < nbytes:
                raise UnreadableFileError(
                    f"Pixel Data holds {length} bytes, {nbytes} needed for {out.shape[0]}x{out.shape[1]} pixels",
                    path,
                )
            buf = out.view(np.uint8).reshape(-1) if out.dtype == dtype and out.flags.c_contiguous else None
            if buf is not None:
                got = fp.readinto(memoryview(buf)[:nbytes])
                if got != nbytes:
                    raise UnreadableFileError(f"truncated pixel data ({got} of {nbytes} bytes)", path)
            else:
                data = fp.read(nbytes)
                if len(data) != nbytes:
                    raise UnreadableFileError(f"truncated pixel data ({len(data)} of {nbytes} bytes)", path)
                out[...] = np.frombuffer(data, dtype=dtype).reshape(out.shape)
    except OSError as exc:
        raise UnreadableFileError(f"cannot be read ({exc.strerror or exc})", path) from exc


def decode_frames(path: Path) -> tuple[pydicom.Dataset, np.ndarray]:
    """Decode every frame of a file through pydicom (any transfer syntax its plugins handle).

    Returns the full dataset and the stored values (frames x rows x columns, or rows x columns),
    with pydicom's handling of BitsStored and signedness.
    """
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise UnreadableFileError(f"corrupt or truncated DICOM file ({exc})", path) from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise UnreadableFileError("no pixel data", path)
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise UnsupportedDataError(
            f"colour image ({ds.get('PhotometricInterpretation', '?')}): calcimg measures grayscale only", path
        )
    try:
        arr = ds.pixel_array
    except Exception as exc:
        ts = transfer_syntax(ds)
        name = getattr(pydicom.uid.UID(ts), "name", ts)
        raise UnreadableFileError(f"pixel data cannot be decoded ({name}: {exc})", path) from exc
    return ds, arr


def fix_stored_values(raw: np.ndarray, ds: pydicom.Dataset) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply BitsStored and the padding value to raw stored values read on the fast path.

    Returns the corrected values (int32 or the raw dtype) and a mask of padding pixels (or None).
    Padding is matched on the raw values, before masking, as the standard defines it.
    """
    bits_alloc = int(ds.get("BitsAllocated", 16))
    bits_stored = int(ds.get("BitsStored", bits_alloc))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    pad = padding_mask(raw, ds)
    if bits_stored < bits_alloc:
        if signed:
            # sign-extend from BitsStored bits
            raw = (raw.astype(np.int32) << (32 - bits_stored)) >> (32 - bits_stored)
        else:
            raw = raw & np.array((1 << bits_stored) - 1, dtype=raw.dtype)
    return raw, pad


def padding_mask(raw: np.ndarray, ds: pydicom.Dataset) -> np.ndarray | None:
    """Pixels equal to PixelPaddingValue (or within PixelPaddingRangeLimit of it)."""
    if "PixelPaddingValue" not in ds:
        return None
    pv = ds.PixelPaddingValue
    if isinstance(pv, bytes):  # written with VR OB/UN by some converters
        pv = int.from_bytes(pv[:2], "little", signed=raw.dtype.kind == "i")
    pv = int(pv)
    limit = ds.get("PixelPaddingRangeLimit")
    info = np.iinfo(raw.dtype) if raw.dtype.kind in "iu" else None
    if info is not None:
        # the value is written in the pixel representation; wrap it into the raw dtype's range
        pv = int(np.array(pv).astype(np.int64) % (1 << (8 * raw.dtype.itemsize)))
        if raw.dtype.kind == "i" and pv > info.max:
            pv -= 1 << (8 * raw.dtype.itemsize)
    if limit is None:
        m = raw == pv
    else:
        limit = int(limit)
        lo, hi = min(pv, limit), max(pv, limit)
        m = (raw >= lo) & (raw <= hi)
    return m if m.any() else None
