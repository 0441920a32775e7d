"""The non-calcified soft-tissue mass around a calcification (CT).

criteria-research 1.9 and 2.6: a calcification inside a soft-tissue tumour (synovial sarcoma,
matrix-producing tumours) sits in a dominant non-calcified mass, while tumoral calcinosis, a
dystrophic clump or a phlebolith is (nearly) all calcium or cyst; the research's measurable is the
calcified fraction of the lesion envelope and its adjacent soft-tissue mass. On unenhanced CT a mass
shows only where its attenuation differs from the muscle around it; many sarcomas are nearly
iso-attenuating [LIA15], so a missing mass is no evidence (the criteria mark it absence-neutral).
Only masses below muscle are looked for: tissue denser than muscle next to a calcification is
mostly the calcium's own partial volume.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from calcimg.features.context import _edt_to, envelope_in_context
from calcimg.lesion import Lesion

#: Smoothing before the tissue test (mm, Gaussian sigma): CT noise of 10-20 HU per voxel would
#: otherwise scatter muscle voxels across a 10 HU margin.
SMOOTH_MM = 1.0
#: A mass voxel is at least this far below the muscle reference (HU) and at least FLOOR_HU: soft
#: tissue, not fat nor the band where fat and muscle share a voxel (with -30 or -20 HU, fascial
#: planes and fat-muscle interfaces next to tumoral-calcinosis and myositis lesions of the
#: phantoms measured 1-2 cm^3 of "mass"; with 0 HU at most 0.08 cm^3, the tumours 2-7 cm^3).
BELOW_MUSCLE_HU, FLOOR_HU = 10.0, 0.0
#: Soft-tissue window of the muscle reference's histogram (HU, criteria-research 1.0).
SOFT_HU = (0.0, 120.0)
#: Mass regions thinner than twice this (mm, half-width of the box opening) are interfaces (the
#: partial-volume band between fat and muscle), not masses.
OPEN_MM = 1.5
#: A mass region must come this close to the calcified envelope (mm): the partial-volume band
#: between calcium and tissue (about 2 mm after the smoothing) separates them.
CONTACT_MM = 3.0
#: The mass is measured within this distance of the envelope's box along each axis (mm); a larger
#: mass is truncated.
REACH_MM = 20.0

MASS_COLUMNS: list[tuple[str, str, str]] = [
    ("soft_mass_volume_mm3", "mm^3", "CT: volume of the non-calcified soft-tissue mass around the lesion: smoothed tissue 0 HU or more and at least 10 HU below the muscle reference, at least 3 mm thick, reaching within 3 mm of the calcified envelope; counted within 20 mm of its box"),
    ("soft_mass_fraction", "", "CT: soft_mass_volume_mm3 / (soft_mass_volume_mm3 + envelope volume), 0..1: 0 no mass, towards 1 a small calcification in a large non-calcified mass"),
    ("muscle_reference_hu", "HU", "CT: mode of the smoothed soft-tissue (0..120 HU) attenuation within 20 mm of the lesion's box: the muscle the mass is compared with"),
]
COLUMNS = tuple(c[0] for c in MASS_COLUMNS)


def _mode(values: np.ndarray, lo: float, hi: float) -> float:
    """Mode of `values` in [lo, hi) from a 1 HU histogram smoothed over 3 HU (Gaussian sigma)."""
    hist, edges = np.histogram(values, bins=int(hi - lo), range=(lo, hi))
    if not hist.any():
        return float("nan")
    hist = ndimage.gaussian_filter1d(hist.astype(float), 3.0)
    i = int(np.argmax(hist))
    return float(0.5 * (edges[i] + edges[i + 1]))


def mass_features(lesion: Lesion) -> dict:
    """The hypo-attenuating soft-tissue mass around a CT lesion, and its share of the lesion.

    Columns
    -------
    soft_mass_volume_mm3 : float
        mm^3, >= 0. On the scan's HU (the scan-level context crop) within ``REACH_MM`` (20 mm) of
        the box of the lesion's envelope (mask, holes filled) along each axis, smoothed (Gaussian
        sigma 1 mm): mass voxels are outside the envelope and outside bone, at least 10 HU below
        the muscle reference and at least 0 HU (soft tissue, not fat nor a fat-muscle interface);
        the mask is opened with a box of half-width 1.5 mm per axis (an axis whose spacing
        exceeds 3 mm is not opened), which removes the partial-volume band between fat and
        muscle; its connected regions that reach within 3 mm of the envelope form the mass.
        Volume = voxel count x voxel volume, so a mass reaching beyond that box is truncated
        there. The calcium's own partial-volume band (about 2 mm after the smoothing) is not
        mass, so a mass shell must reach more than about 5.5 mm beyond the calcium to be seen (a
        12 mm ball at 30 HU around a 3 mm calcified ball in noisy muscle measures 0.90-0.93 of
        its volume beyond 5 mm; an 8 mm ball is missed).
    soft_mass_fraction : float
        0..1: ``soft_mass_volume_mm3 / (soft_mass_volume_mm3 + envelope volume)``; 0 without a mass.
        The complement of criteria-research 2.6's calcified fraction of the envelope plus its
        adjacent mass, with the envelope (calcium, cyst or septa alike) counted as calcified, so a
        hydatid cyst's fluid core or a tumoral-calcinosis cyst does not read as a tumour.
    muscle_reference_hu : float
        HU: mode of the smoothed attenuation of the non-bone voxels in 0..120 HU in the same box,
        more than 3 mm from the envelope: muscle, which usually dominates there. Where a mass
        fills most of that box the mode is the mass and no mass is found: the measure errs
        towards "no mass".

    Empty, with a reason in ``not_assessed``, for radiographs (a projection cannot show a mass of
    soft-tissue attenuation) and without the scan-level context crop. Serves the tumour-matrix
    pattern's "dominant non-calcified soft-tissue mass" (criteria-research 1.9, 3b [LIA15]).
    """
    nan = float("nan")
    out = {c: nan for c in COLUMNS}
    ctx = lesion.context
    if lesion.kind != "ct":
        return out  # radiographs: not in the radiograph schema's assessed set
    if "bone_image" not in ctx or "bone" not in ctx:
        out["not_assessed"] = "soft_mass_volume_mm3: no context crop around the lesion"
        return out
    spacing = np.asarray(lesion.spacing, dtype=float)
    box, inside = envelope_in_context(lesion, REACH_MM)
    hu = np.asarray(ctx["bone_image"][box], dtype=np.float32)
    sm = ndimage.gaussian_filter(hu, SMOOTH_MM / spacing, truncate=2.5)
    # the contact band: within CONTACT_MM of the envelope, from a distance map on the envelope's
    # box grown by that much, a sub-box of the reach box (a distance map over the whole reach box
    # cost twice the rest of the measure)
    cbox, cinside = envelope_in_context(lesion, CONTACT_MM + spacing.max())
    contact = np.zeros(hu.shape, bool)
    contact[tuple(slice(c.start - b.start, c.stop - b.start) for c, b in zip(cbox, box, strict=True))] = (
        _edt_to(cinside, spacing) <= CONTACT_MM)
    contact &= ~inside
    not_bone = ~ctx["bone"][box]
    soft = not_bone & (sm >= SOFT_HU[0]) & (sm < SOFT_HU[1]) & ~contact & ~inside
    ref = _mode(sm[soft], *SOFT_HU)
    out["muscle_reference_hu"] = ref
    env_mm3 = float(inside.sum() * spacing.prod())
    if not np.isfinite(ref):
        out["not_assessed"] = "soft_mass_volume_mm3: no soft tissue around the lesion"
        return out
    cand = (not_bone & ~inside & (sm < ref - BELOW_MUSCLE_HU) & (sm >= FLOOR_HU)).view(np.uint8)
    r = np.round(OPEN_MM / spacing).astype(int)
    size = tuple(int(2 * k + 1) for k in r)
    cand = ndimage.maximum_filter(ndimage.minimum_filter(cand, size=size), size=size).astype(bool)
    cand &= not_bone & ~inside
    lab, n = ndimage.label(cand)
    vol = 0.0
    if n:
        touch = np.unique(lab[cand & contact])
        touch = touch[touch > 0]
        if touch.size:
            vol = float(np.isin(lab, touch).sum() * spacing.prod())
    out["soft_mass_volume_mm3"] = vol
    out["soft_mass_fraction"] = vol / (vol + env_mm3) if vol + env_mm3 > 0 else nan
    return out
