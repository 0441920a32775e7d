"""Gravity at acquisition time, from the DICOM header (criteria-research section 2.5).

DICOM patient coordinates are LPS: +x towards the patient's left, +y posterior, +z head.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pydicom

#: Below this fraction of gravity in the image plane a radiograph cannot show a fluid level
#: (cos 20 degrees; criteria-research 2.5, an estimate).
MIN_IN_PLANE_FRACTION = float(np.cos(np.deg2rad(20.0)))

_SUPINE = np.array([0.0, 1.0, 0.0])
_PRONE = np.array([0.0, -1.0, 0.0])
_RIGHT_DOWN = np.array([-1.0, 0.0, 0.0])
_LEFT_DOWN = np.array([1.0, 0.0, 0.0])
_ERECT = np.array([0.0, 0.0, -1.0])


@dataclass(frozen=True)
class Gravity:
    """Gravity in LPS (unit vector) or None, and where it came from."""

    lps: np.ndarray | None
    source: str


def gravity_from_patient_position(patient_position: str | None) -> Gravity:
    """Gravity for a CT (or MR) from Patient Position (0018,5100).

    Supine (HFS, FFS, LFS, RFS... any code ending in S) -> posterior (0, +1, 0); prone (..P)
    -> anterior; right side down (..DR) -> patient right (-1, 0, 0); left side down (..DL) ->
    patient left (+1, 0, 0). Anything else is unknown.

    Examples
    --------
    >>> gravity_from_patient_position("HFS").lps.tolist()
    [0.0, 1.0, 0.0]
    >>> gravity_from_patient_position("FFDL").lps.tolist()
    [1.0, 0.0, 0.0]
    >>> gravity_from_patient_position(None).lps is None
    True
    """
    code = (patient_position or "").strip().upper()
    if not code:
        return Gravity(None, "unknown: PatientPosition missing")
    if code.endswith("DR"):
        return Gravity(_RIGHT_DOWN.copy(), f"PatientPosition {code}")
    if code.endswith("DL"):
        return Gravity(_LEFT_DOWN.copy(), f"PatientPosition {code}")
    if code.endswith("S"):
        return Gravity(_SUPINE.copy(), f"PatientPosition {code}")
    if code.endswith("P"):
        return Gravity(_PRONE.copy(), f"PatientPosition {code}")
    return Gravity(None, f"unknown: PatientPosition {code!r} is not a standard code")


# CID 19 (patient orientation) and CID 20 (orientation modifier) codes, with their meaning.
_ERECT_CODES = {"C86043", "10904000"}  # erect (NCIt), standing (SCT)
_RECUMBENT_CODES = {"102538003"}
_SEMI_ERECT_CODES = {"102539006"}
_MODIFIER_GRAVITY = {
    "40199007": (_SUPINE, "supine"),
    "1240000": (_PRONE, "prone"),
    "102535000": (_RIGHT_DOWN, "right lateral decubitus"),
    "102536004": (_LEFT_DOWN, "left lateral decubitus"),
    "10904000": (_ERECT, "standing"),
}
_VIEW_GRAVITY = {
    "RLD": (_RIGHT_DOWN, "right lateral decubitus"),
    "LLD": (_LEFT_DOWN, "left lateral decubitus"),
}
_KEYWORDS = [
    (re.compile(r"\b(LEFT\s+(LAT(ERAL)?\s+)?DECUB\w*|LLD)\b"), _LEFT_DOWN, "left decubitus"),
    (re.compile(r"\b(RIGHT\s+(LAT(ERAL)?\s+)?DECUB\w*|RLD)\b"), _RIGHT_DOWN, "right decubitus"),
    (re.compile(r"\b(ERECT|STANDING|UPRIGHT|STEHEND)\b"), _ERECT, "erect"),
    (re.compile(r"\b(CROSS[\s-]*TABLE|HORIZONTAL\s+BEAM|SUPINE|LIEGEND)\b"), _SUPINE, "supine"),
    (re.compile(r"\bPRONE\b"), _PRONE, "prone"),
]


def _code(item: pydicom.Dataset) -> str:
    return str(item.get("CodeValue", "") or item.get("LongCodeValue", "") or "").strip()


def gravity_from_radiograph_header(ds: pydicom.Dataset) -> Gravity:
    """Gravity for a radiograph, from the most to the least trustworthy source.

    1. Patient Orientation Code Sequence (0054,0410) and its modifier (0054,0412): erect or
       standing -> feet; recumbent with a supine / prone / lateral decubitus modifier.
    2. View Position (0018,5101) RLD / LLD (horizontal-beam decubitus views).
    3. Patient Position (0018,5100), when a CR/DX writer fills it.
    4. Keywords in Series/Study Description and Protocol Name ("ERECT", "DECUB", "CROSS-TABLE"...),
       flagged ``heuristic:``.
    """
    seq = ds.get("PatientOrientationCodeSequence")
    if seq:
        item = seq[0]
        code = _code(item)
        mods = item.get("PatientOrientationModifierCodeSequence") or ds.get(
            "PatientOrientationModifierCodeSequence"
        )
        mod_code = _code(mods[0]) if mods else ""
        if mod_code in _MODIFIER_GRAVITY and code not in _ERECT_CODES:
            g, what = _MODIFIER_GRAVITY[mod_code]
            return Gravity(g.copy(), f"PatientOrientationModifierCodeSequence {mod_code} ({what})")
        if code in _ERECT_CODES:
            return Gravity(_ERECT.copy(), f"PatientOrientationCodeSequence {code} (erect)")
        if code in _RECUMBENT_CODES:
            view = str(ds.get("ViewPosition", "")).upper()
            if view in _VIEW_GRAVITY:
                g, what = _VIEW_GRAVITY[view]
                return Gravity(g.copy(), f"recumbent, ViewPosition {view} ({what})")
        if code in _SEMI_ERECT_CODES:
            return Gravity(None, "unknown: semi-erect (angle to vertical not recorded)")
    view = str(ds.get("ViewPosition", "")).upper()
    if view in _VIEW_GRAVITY:
        g, what = _VIEW_GRAVITY[view]
        return Gravity(g.copy(), f"ViewPosition {view} ({what})")
    pp = str(ds.get("PatientPosition", "") or "").strip()
    if pp:
        g = gravity_from_patient_position(pp)
        if g.lps is not None:
            return g
    text = " ".join(
        str(ds.get(k, "") or "") for k in ("SeriesDescription", "StudyDescription", "ProtocolName")
    ).upper()
    for pattern, g, what in _KEYWORDS:
        m = pattern.search(text)
        if m:
            return Gravity(g.copy(), f"heuristic: description says {m.group(0)!r} ({what})")
    return Gravity(None, "unknown: no posture in the header")


_LETTERS = {
    "L": (1.0, 0.0, 0.0),
    "R": (-1.0, 0.0, 0.0),
    "P": (0.0, 1.0, 0.0),
    "A": (0.0, -1.0, 0.0),
    "H": (0.0, 0.0, 1.0),
    "F": (0.0, 0.0, -1.0),
}


def patient_orientation_axes(value) -> np.ndarray | None:
    """Patient directions (LPS unit vectors) of the image's array axes from PatientOrientation.

    PatientOrientation (0020,0020) gives the direction of the rows (increasing column index) then
    of the columns (increasing row index), e.g. ``L\\F``. Returned in array-axis order: row 0 is
    the direction of increasing row index, row 1 of increasing column index. Combined letters
    (``LP``) are normalised. None when absent or unreadable.

    Examples
    --------
    >>> patient_orientation_axes(["L", "F"]).tolist()
    [[0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]
    """
    if value is None:
        return None
    parts = list(value) if not isinstance(value, str) else value.split("\\")
    if len(parts) != 2:
        return None
    vecs = []
    for part in parts:
        v = np.zeros(3)
        letters = str(part).strip().upper()
        if not letters or any(c not in _LETTERS for c in letters):
            return None
        for c in letters:
            v += _LETTERS[c]
        n = np.linalg.norm(v)
        if n == 0:
            return None
        vecs.append(v / n)
    row_dir, col_dir = vecs
    return np.stack([col_dir, row_dir])


def project_gravity(g_lps: np.ndarray, axes_lps: np.ndarray) -> tuple[np.ndarray, float]:
    """Express gravity along array axes.

    ``axes_lps`` has one row per array axis (its LPS unit vector). For a full 3D basis (CT, possibly
    sheared by gantry tilt) the components solve ``axes_lps.T @ g = g_lps``; for a 2D image they
    are the projections onto the two in-plane axes. Returns the unit vector in array axes and the
    fraction of gravity that lies in the span of the axes (1 for a 3D basis).
    """
    axes = np.asarray(axes_lps, dtype=float)
    if axes.shape[0] == 3:
        g = np.linalg.solve(axes.T, g_lps)
        return g / np.linalg.norm(g), 1.0
    g = axes @ g_lps
    frac = float(np.linalg.norm(g))
    return (g / frac if frac > 0 else g), frac
