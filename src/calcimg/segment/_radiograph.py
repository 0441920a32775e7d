"""Radiograph segmentation: calcification candidates on a projection image with no HU scale.

A radiograph has no absolute density scale, so a pixel is a candidate by how much it stands out
from its neighbourhood, measured in units of the image's own noise (criteria-research 4.2):

1. Detection image: the `Scan`'s attenuation image (larger = denser for MONOCHROME1 and
   MONOCHROME2 alike) smoothed by a Gaussian of ``dx_smooth_mm``.
2. Background: a local median over a disc of radius ``dx_background_scale_mm``, computed on a
   block-averaged copy (a few pixels per radius step) and interpolated back, so its cost does not
   grow with the scale. Air outside the body is first replaced by the nearest body value, so the
   skin line is not measured against air.
3. Noise: 1.4826 x the median absolute deviation of a high-pass image (detection image minus its
   local box mean, inside the body). Contrast in noise sigmas ``z = (image - background) / noise``.
4. Candidates: hysteresis threshold, seeds at ``dx_contrast_sigma``, grown over
   ``dx_grow_sigma``. A second search on the image smoothed to a small deposit's own scale
   (``dx_blob_smooth_mm``, seeds at ``dx_blob_sigma`` in that image's noise sigmas) adds faint
   compact blobs at least ``dx_blob_clear_mm`` from bone and skin (phantom demo seeds 1 and 2:
   28 -> 30 and 25 -> 29 of 48 found, no false positive added).
5. Bone: candidate structures (holes filled) of at least ``dx_bone_min_area_mm2`` whose rim is
   brighter than their inside (cortical edges) are bone; an outline broken by gaps of up to 2 mm
   (a flat bone en face whose frame other bones cross) is sealed for the hole filling when what
   it encloses is itself bone-sized; an opening by ``dx_bone_open_mm`` first
   cuts thin calcifications (vessel walls, small deposits) off them, and what it cut off a bone
   goes back to it when it is at least half as bright as that bone's cortex (`_cut_cortex`: a
   socket's rim or a process seen tangentially continues the cortex at its density; phantoms,
   five layouts: the acetabular rims of demo seeds 1 and 2's lateral views, 125, 102 and 51 mm2,
   were reported as lesions; false positives 29 -> 26, found 117 -> 118). A smaller structure (from a
   quarter of ``dx_bone_min_area_mm2``) is bone too when its rim is as bright as the skeleton's brightest
   cortex and twice its inside (a small bone on its own: test seed 1's iliac plate, 190 mm2,
   was reported as a lesion in every view). Everything within
   ``dx_bone_margin_mm`` of the bone is dropped from the candidates. Before the second search the
   edge-enhancement halo that bone casts on the soft tissue beside it (`_halo`: processed
   radiographs are unsharp-masked; the tissue a few mm out then reads as a bright strip against
   a background that includes the dark band) is fitted from the image and added back outside
   the bone; bone rims the opening cut off (below) are judged on the uncorrected image first,
   since the correction lifts the tissue between a socket's rims and can bridge them (phantoms,
   demo seeds 0-2 and test seeds 0-1: false positives 80 -> 52, lesions found 115 -> 117 of
   168: demo seed 0's phlebolith across the iliac plate's edge is found in its 3 AP views; the
   strip beside the plate and the notch at its end are gone from every AP view). Cortex the bone
   mask left out is dropped too: a candidate lying mostly within 1 mm of bone (cortex blur or halo, however
   bright: cortex is the densest thing in the image), one that bone surrounds on most sides (it
   fills a notch of the mask), and a thin piece lying for 90% within ``dx_bone_rim_mm`` of bone
   and elongated along it (second-moment elongation >= 3: a socket's rim seen tangentially),
   which joins the bone; the last test is applied twice, so a socket's outer rim, lying along its
   inner one, joins as well.
6. Over bone: inside the bone shrunk by ``dx_over_bone_inset_mm`` (past the cortical edge's bright
   band), on the image smoothed to a deposit's own scale (``dx_over_bone_smooth_mm``, which
   averages out the finer trabecular texture), contrast against a local median of the bone
   itself (radius ``dx_over_bone_scale_mm``) in units of the noise over bone (texture included);
   hysteresis at ``dx_over_bone_sigma`` / half of it; an opening (r 0.8 mm) removes lines; a
   candidate must be compact (elongation <= ``dx_over_bone_max_elongation``, filling its moment
   ellipse), isolated (little bright in a 1 mm ring around it: not a piece of a line or a crossing
   of two), and away from internal cortical lines (no ridge of ``dx_over_bone_line_sigma`` within
   2 mm, at Hessian scales of 0.4 and 0.8 mm, on the image with the blobs replaced by their
   background: the end of a line or the crossing of two bones' cortices looks like a blob once
   opened; the broader scale sees a shaft's cortex seen tangentially, whose flat top the finer
   one misses: false positives over bone 6 -> 1 on the five layouts, found 118 -> 117).
   Parts outside and over the bone of one lesion are joined through the edge band between them;
   lesion pixels are carved out of the bone mask and ``touches_bone`` marks lesions within
   ``dx_bone_margin_mm`` of bone.
7. Clean-up: components lying mostly in the ``dx_skin_band_mm`` band inside the skin line (the
   edge-enhancement halo of processed radiographs) and components under ``dx_min_area_mm2`` are
   dropped; components closer than ``dx_group_gap_mm`` are grouped into one lesion.

Limitations
-----------
Measured on the phantom DX views (tests/segment/test_radiograph_segment.py prints the table).

* The detection was fitted on the phantom's seed-0 layouts (demo 42/48 found); other layouts
  put more lesions over bone and fare worse (demo seed 1: 31/48, seed 2: 29/48). Over the five
  layouts 117/168 lesions are found, and 83/87 of those that stand at least 3 times above the
  anatomy's fluctuation beside them (tests/segment, `conspicuity_of`); 33 lesions are weaker
  than that fluctuation itself, 20 of them grains over bone.
* Over bone only compact, isolated deposits above the bone's texture are found: a faint
  deposit, a shell or arc (myositis ossificans rim), or a lesion across the cortical edge band is
  missed or found only by its parts outside the bone (criteria-research 4.2, superimposition). A
  flag says so whenever bone was found, and another counts the deposits found over bone. The
  edge band itself (``dx_bone_margin_mm`` outside to ``dx_over_bone_inset_mm`` inside) is searched
  by neither pass: a grain lying on a cortical line is missed.
* A deposit over bone whose edge touches an internal cortical line (a tendon deposit ending on
  the lesser trochanter's outline) is taken for the line's crossing and missed; a texture speck
  over a flat bone can pass every test (phantoms, five layouts: one, 3 mm2).
* The halo fit assumes one linear edge enhancement of one width; its amplitude is shrunk (x0.7)
  because the halo and the thicker tissue near bone are nearly collinear regressors. A faint
  deposit a few mm from a very bright bone can be lost where the fit over-corrects (demo seed 0:
  a parasitic grain beside the iliac plate, found before in 2 AP views, now missed there; demo
  seed 2: a tendon deposit in one view).
* Bone is recognised by size and a bright rim; a calcified mass larger than
  ``dx_bone_min_area_mm2`` with a bright rim of its own (a large myositis ossificans shell) is
  taken for bone, and a bone smaller than that whose shadow is separate from the rest of the
  skeleton (a sesamoid, an ossicle) can be reported as a lesion.
* Calcifications in the skin-line band (calcinosis cutis seen tangentially) are dropped with the
  edge-enhancement halo.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import apply_hysteresis_threshold, threshold_otsu

from calcimg.scan import Scan
from calcimg.segment._types import Segmentation
from calcimg.settings import Settings

__all__ = ["segment_radiograph"]

_EIGHT = np.ones((3, 3), dtype=bool)
_MAD_TO_SIGMA = 1.4826
_NOISE_BOX_PX = 9  # high-pass for the noise estimate: image minus its 9 x 9 box mean
_STEPS_PER_RADIUS = 8
# a bone cut by the image edge: its two cortices reach the border at most this many background
# scales apart, and the border between them closes its outline for hole filling
_BORDER_GAP_SCALES = 3.0
# a bone outline broken where other bones cross it is sealed over gaps up to twice this (mm)
_SEAL_MM = 1.0
# candidates lying mostly within this distance (mm) of bone are cortex blur or halo
_BONE_EDGE_MM = 1.0
# a candidate whose surrounding ring (this wide, mm) lies on bone for at least this fraction fills
# a notch of the bone mask (phantoms: deposits beside bone 0-0.36, notches 0.50-0.62)
_ENCLOSED_RING_MM = 1.0
_ENCLOSED_MAX = 0.45
# a structure under dx_bone_min_area_mm2 but at least this fraction of it is bone when its rim is as
# bright as the skeleton's brightest cortex and this many times its inside
_SMALL_BONE_AREA = 0.25
_SMALL_BONE_RIM_RATIO = 2.0
# a piece the bone opening cut off a bone is cortex (a socket's rim seen tangentially) when its mean
# contrast is at least this fraction of that bone's cortical rim (phantoms, five layouts: the same
# result for any value from 0.2 to 0.8; the acetabular rims the opening cut off reach 0.57-0.80 of
# the cortex, lesions within 5 mm of bone at most 0.40)
_CUT_CORTEX_RATIO = 0.5
# a candidate lying for 90% within dx_bone_rim_mm of bone and at least this elongated is a rim of
# the bone the opening cut off (a socket's rim seen tangentially)
_RIM_ELONGATION = 3.0
# over bone: candidates are opened by a disc of this radius (mm), which removes lines thinner than
# its diameter (cortical edges, trabecular streaks), and must be compact
_LINE_MM = 0.8
_OVER_BONE_MIN_FILL = 0.6  # area over that of the ellipse of equal second moments
# ... and isolated: at most this fraction of a ring of _RING_MM around it reaches half the seed
_RING_MM = 1.0
_RING_MAX_BRIGHT = 0.15
# ... and not beside an internal cortical line: ridges (the stronger at two Hessian scales, mm) are
# sought in a ring from _RIDGE_RING_MM[0] to _RIDGE_RING_MM[1] around the candidate. The 0.8 mm
# scale finds the broader cortical bands (a shaft's cortex seen tangentially, 1.5-2 mm wide, has a
# flat top the 0.4 mm scale hardly sees): phantoms, five layouts, false positives over bone 6 -> 1
# (the lesser trochanter's patch over the shaft, the femoral neck's cortex crossing the head),
# one tendon deposit of conspicuity 0.85 lost beside a shaft's cortex (118 -> 117 found)
_RIDGE_SCALES_MM = (0.4, 0.8)
_RIDGE_RING_MM = (0.5, 2.0)
# edge-enhancement halo beside bone (`_halo`): candidate widths (mm), fit band (mm from bone),
# high-pass scale (mm), working grid (mm), amplitude clip and shrink
_HALO_SCALES_MM = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
_HALO_FIT_MM = 10.0
_HALO_HP_MM = 25.0
_HALO_GRID_MM = 0.35
_HALO_MIN_AMOUNT = -1.0
_HALO_SHRINK = 0.7


def segment_radiograph(scan: Scan, settings: Settings | None = None) -> Segmentation:
    """Calcified lesions, bone and body of one radiograph.

    Parameters
    ----------
    scan : Scan
        A radiograph (``kind == "radiograph"``, 2D ``pixels`` where larger = denser).
    settings : Settings, optional
        The ``dx_*`` fields set the scales (mm) and thresholds (noise sigmas).

    Returns
    -------
    Segmentation
        ``labels`` (uint32, lesions 1..n by decreasing area, ties by first pixel in array order,
        8-connected components grouped when closer than ``dx_group_gap_mm``), ``boxes``,
        ``component_counts``, ``bone`` (bool), ``body`` (bool, or None when no air is seen around
        the patient) and ``flags``.

    Examples
    --------
    >>> import numpy as np
    >>> from calcimg.scan import Scan
    >>> rng = np.random.default_rng(0)
    >>> img = 1000 + rng.normal(0, 5, (200, 200)).astype(np.float32)
    >>> yy, xx = np.mgrid[:200, :200]
    >>> img[(yy - 100) ** 2 + (xx - 60) ** 2 < 36] += 200   # a 1.2 mm-radius deposit
    >>> scan = Scan(img, (0.2, 0.2), (0, 0), np.eye(2), "radiograph")
    >>> seg = segment_radiograph(scan)
    >>> seg.n_lesions, seg.labels[100, 60]
    (1, np.uint32(1))
    """
    settings = settings or Settings()
    if not isinstance(scan, Scan):
        raise TypeError(f"segment_radiograph needs a calcimg Scan, got {type(scan).__name__}")
    if scan.kind != "radiograph" or scan.pixels.ndim != 2:
        raise ValueError(
            f"segment_radiograph needs a 2D radiograph Scan, got kind={scan.kind!r} shape={scan.shape}"
        )
    flags: list[str] = []
    if scan.spacing_known:
        mm = (float(scan.spacing[0]), float(scan.spacing[1]))
    else:
        px = float(settings.dx_fallback_pixel_mm)
        mm = (px, px)
        flags.append(
            f"radiograph spacing unknown: mm scales and areas assume {px:g} mm pixels "
            "(dx_fallback_pixel_mm)"
        )
    image = np.asarray(scan.pixels, dtype=np.float32)
    finite = np.isfinite(image)
    if not finite.all():
        image = np.where(finite, image, np.median(image[finite]) if finite.any() else 0.0)
        flags.append("radiograph: non-finite pixels replaced by the median")
    shape = image.shape
    empty = _empty(shape, flags)
    if image.size == 0 or float(image.max() - image.min()) == 0.0:
        empty.flags.append("radiograph: flat image, nothing to segment")
        return empty

    detect = ndi.gaussian_filter(image, (settings.dx_smooth_mm / mm[0], settings.dx_smooth_mm / mm[1]))
    body = _body_mask(detect)
    inside = np.ones(shape, bool) if body is None else body
    if body is None:
        flags.append("radiograph: no air around the patient, body not delineated")

    noise = _noise_sigma(detect, inside)
    if not noise > 0:
        empty.flags.append("radiograph: no noise measurable (synthetic or saturated image), nothing segmented")
        empty.body = body
        return empty
    z = _contrast(detect, inside, noise, settings.dx_background_scale_mm, mm)
    candidates = apply_hysteresis_threshold(z, settings.dx_grow_sigma, settings.dx_contrast_sigma)
    bone = _bone_mask(candidates, z, mm, settings)
    over = np.zeros(shape, bool)
    if bone.any():
        near_bone = _dilate_mm(bone, settings.dx_bone_margin_mm, mm)
        halo = _halo(detect, bone, inside & ~near_bone & ~_dilate_mm(candidates & ~bone, 1.0, mm),
                     settings.dx_background_scale_mm, mm)
        if halo is not None:
            # rims of bone the opening cut off are judged on the uncorrected image first: the
            # correction lifts the tissue between a socket's rims and can bridge them
            z0 = _contrast(detect, inside & ~near_bone, noise, settings.dx_background_scale_mm, mm)
            cand0 = apply_hysteresis_threshold(z0, settings.dx_grow_sigma, settings.dx_contrast_sigma)
            comp0, n0 = ndi.label(cand0 & ~near_bone, _EIGHT)
            bone = bone | _rim_labels(comp0, n0, bone, mm, settings)[comp0]
            near_bone = _dilate_mm(bone, settings.dx_bone_margin_mm, mm)
            image = image - halo
            detect = detect - halo
        # second pass: the background next to bone is soft tissue, not the bone's bright shadow
        z = _contrast(detect, inside & ~near_bone, noise, settings.dx_background_scale_mm, mm)
        candidates = apply_hysteresis_threshold(z, settings.dx_grow_sigma, settings.dx_contrast_sigma)
        candidates &= ~near_bone
        over = _over_bone(image, bone, mm, settings)
    if settings.dx_blob_smooth_mm > settings.dx_smooth_mm:
        candidates |= _compact_blobs(image, inside, body, bone, z, candidates, mm, settings)
    # in projection a closed calcified outline (a shell, a lobule wall) encloses calcium too
    candidates = ndi.binary_fill_holes(candidates)

    comp, n_comp = ndi.label(candidates, _EIGHT)
    if n_comp:
        keep = np.ones(n_comp + 1, bool)
        keep[0] = False
        n_px = np.bincount(comp.ravel(), minlength=n_comp + 1)
        area = n_px * (mm[0] * mm[1])
        keep &= area >= settings.dx_min_area_mm2
        if bone.any():
            # a candidate hugging the bone's edge is cortex blur, edge-enhancement halo or cortex
            # the bone mask left out, however bright: cortex is the densest thing around (the
            # phantoms' recall is unchanged without the former exception for strong seeds, and a
            # shaft's cortex in a notch of the lateral view's bone mask is no longer reported)
            gap = ndi.distance_transform_edt(~bone, sampling=mm)
            keep &= _fraction(comp, n_comp, gap <= _BONE_EDGE_MM) <= 0.5
            # a candidate that bone surrounds on most sides fills a notch of the bone mask (a
            # faint outer cortex, overlapping bones): a deposit beside bone has soft tissue around
            keep &= _ring_fraction(comp, n_comp, gap <= settings.dx_bone_margin_mm + max(mm),
                                   _ENCLOSED_RING_MM, mm) < _ENCLOSED_MAX
            # a thin piece along the bone's outline is bone the opening cut off (a socket rim)
            rim = _rim_labels(comp, n_comp, bone, mm, settings)
            bone |= rim[comp]
            keep &= ~rim
        if body is not None and settings.dx_skin_band_mm > 0:
            depth = ndi.distance_transform_edt(body, sampling=mm)
            in_band = _fraction(comp, n_comp, depth < settings.dx_skin_band_mm)
            keep &= in_band < 0.5
        candidates = keep[comp]
    touching = np.zeros(shape, bool)
    if over.any():
        # a lesion across the bone's edge: join its parts outside and over the bone through the
        # edge band that both passes leave out
        reach = settings.dx_over_bone_inset_mm + settings.dx_bone_margin_mm + max(mm)
        bridge = _dilate_mm(candidates, reach, mm) & _dilate_mm(over, reach, mm)
        bridge &= ndi.distance_transform_edt(bone, sampling=mm) <= settings.dx_over_bone_inset_mm
        touching = over | bridge
        candidates = candidates | touching
        flags.append(f"radiograph: {int(ndi.label(over, _EIGHT)[1])} calcification(s) found projected over bone "
                     "(superimposition: check on the orthogonal view)")
    if bone.any():
        flags.append("radiograph: faint or large calcification projected over bone can be missed")
    labels, counts = _group(candidates, settings.dx_group_gap_mm, mm)
    boxes = ndi.find_objects(labels, max_label=len(counts))
    touches_bone = None
    if bone.any():
        near = _dilate_mm(bone, settings.dx_bone_margin_mm + max(mm), mm)
        hit = np.bincount(labels[near].ravel(), minlength=len(counts) + 1)[1:]
        touches_bone = [bool(h) for h in hit]
        bone &= labels == 0  # a lesion over the bone is carved out of the bone mask
    return Segmentation(labels, list(boxes), counts, bone=bone, body=body, flags=flags,
                        touches_bone=touches_bone)


def _halo(detect, bone, valid, scale_mm, mm) -> np.ndarray | None:
    """The edge-enhancement halo that bone casts on the soft tissue beside it, or None.

    Processed radiographs are edge-enhanced (unsharp masking and its multi-scale kin): a bone's
    shadow pushes the soft tissue beside it dark over a few mm, and the tissue beyond reads as a
    bright strip against a background that includes the dark band. With the enhancement linear,
    the halo is ``a * (G_s * E)``, E the bone's excess over the soft-tissue background and G_s a
    Gaussian of unknown width s. Both are fitted on the valid soft tissue within `_HALO_FIT_MM`
    of bone: the high-passed image (minus the mean of the valid pixels within +-`_HALO_HP_MM`)
    against the high-passed ``G_s * E`` for each s in `_HALO_SCALES_MM`, with a nuisance term for the tissue that is
    thicker near bone (``G_6mm * bone``); the best fit is kept when a < 0. Its amplitude is
    clipped to `_HALO_MIN_AMOUNT` and shrunk by `_HALO_SHRINK` (the two regressors are nearly
    collinear and the full amplitude over-corrects: on the phantoms x0.85 finds 111 of 168
    lesions, x0.7 finds 116, x0.6 116 with 5 more false positives; measured before the rims were judged
    on the uncorrected image).
    Computed on a grid of about `_HALO_GRID_MM` pixels; returned at full resolution, 0 on bone.
    """
    k = max(1, round(_HALO_GRID_MM / min(mm)))
    cmm = (mm[0] * k, mm[1] * k)
    d, b, wt = _block_mean(detect, k), _block_mean(bone, k) >= 0.5, _block_mean(valid, k) > 0.99
    if not b.any() or not wt.any():
        return None
    bg = _local_median(_fill_outside(d, wt), scale_mm, cmm)
    excess = np.where(b, np.maximum(d - bg, 0.0), 0.0).astype(np.float32)
    fit = wt & (ndi.distance_transform_edt(~b, sampling=cmm) <= _HALO_FIT_MM)
    if fit.sum() < 200:
        return None
    wf = wt.astype(np.float32)
    box = (2 * int(_HALO_HP_MM / cmm[0]) + 1, 2 * int(_HALO_HP_MM / cmm[1]) + 1)
    norm = np.maximum(ndi.uniform_filter(wf, box), 1e-6)

    def hp(a):  # minus the mean of the valid pixels in a box of +-_HALO_HP_MM
        return (a - ndi.uniform_filter(a * wf, box) / norm)[fit]

    y = hp(d)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    prox = hp(ndi.gaussian_filter(b.astype(np.float32), (6.0 / cmm[0], 6.0 / cmm[1])))
    best = None
    for s in _HALO_SCALES_MM:
        blurred = ndi.gaussian_filter(excess, (s / cmm[0], s / cmm[1]))
        design = np.c_[hp(blurred), prox, np.ones(y.size, np.float32)]
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        r2 = 1.0 - float(((y - design @ coef) ** 2).sum()) / max(ss_tot, 1e-12)
        if best is None or r2 > best[0]:
            best = (r2, float(coef[0]), blurred)
    _, amount, blurred = best
    if not amount < 0:
        return None
    halo = _upsample(max(amount, _HALO_MIN_AMOUNT) * _HALO_SHRINK * blurred, k, detect.shape)
    halo[bone] = 0.0
    return halo.astype(np.float32)


def _rim_labels(comp, n, bone, mm, settings: Settings) -> np.ndarray:
    """Per label 0..n (0 False): a thin piece lying for 90 % within ``dx_bone_rim_mm`` of `bone`
    and elongated along it (elongation >= `_RIM_ELONGATION`), bone the opening cut off (a socket's
    rim seen tangentially); a second pass takes a rim lying along the first (its outer cortex)."""
    rim = np.zeros(n + 1, bool)
    if n == 0:
        return rim
    elong, _ = _shape(comp, n, mm)
    for _ in range(2):
        gap = ndi.distance_transform_edt(~(bone | rim[comp]), sampling=mm)
        rim |= (_fraction(comp, n, gap <= settings.dx_bone_rim_mm) >= 0.9) & (elong >= _RIM_ELONGATION)
        rim[0] = False
        if not rim.any():
            break
    return rim


def _compact_blobs(image, inside, body, bone, z_fine, found, mm, settings: Settings) -> np.ndarray:
    """Faint compact deposits in soft tissue, sought at their own scale.

    The image smoothed by ``dx_blob_smooth_mm`` against the same local-median background, in its
    own noise sigmas; hysteresis at ``dx_blob_sigma`` / half of it; kept when compact (elongation
    <= ``dx_over_bone_max_elongation``, area >= 0.6 of its moment ellipse: not a fat plane or a
    halo strip), at least ``dx_blob_clear_mm`` from bone and from the skin line, faint at the
    detection scale (peak of `z_fine` under ``dx_blob_sigma``: anything brighter there was judged
    whole by the first search; a speck under ``dx_min_area_mm2`` blurs into a blob here) and not
    touching what the first search `found` (a deposit found there keeps its sharper outline: the
    blurred one is larger and rounder, and the demo's parasitic grains read as phleboliths).
    """
    s = settings.dx_blob_smooth_mm
    detect = ndi.gaussian_filter(image, (s / mm[0], s / mm[1]))
    noise = _noise_sigma(detect, inside)
    clear = settings.dx_blob_clear_mm
    valid = inside.copy()
    if bone.any():
        valid &= ndi.distance_transform_edt(~bone, sampling=mm) >= clear
    if body is not None:
        valid &= ndi.distance_transform_edt(body, sampling=mm) >= clear
    if not noise > 0 or not valid.any():
        return np.zeros(image.shape, bool)
    near_bone = _dilate_mm(bone, settings.dx_bone_margin_mm, mm) if bone.any() else bone
    z = _contrast(detect, inside & ~near_bone, noise, settings.dx_background_scale_mm, mm)
    seed = settings.dx_blob_sigma
    cand = apply_hysteresis_threshold(np.where(valid, z, 0.0), seed / 2.0, seed)
    comp, n = ndi.label(cand, _EIGHT)
    if n == 0:
        return cand
    keep = _compact(comp, n, mm, settings)
    keep &= np.asarray(ndi.maximum(z_fine, comp, np.arange(n + 1))) < seed
    keep &= np.bincount(comp[found], minlength=n + 1) == 0
    return keep[comp]


def _over_bone(image, bone, mm, settings: Settings) -> np.ndarray:
    """Compact bright blobs inside the bone shadow, against the bone's own local background."""
    shape = image.shape
    inner = ndi.distance_transform_edt(bone, sampling=mm) > settings.dx_over_bone_inset_mm
    if inner.sum() < 100:
        return np.zeros(shape, bool)
    # smoothed at a deposit's own scale: the finer trabecular texture averages out
    s = settings.dx_over_bone_smooth_mm
    detect = ndi.gaussian_filter(image, (s / mm[0], s / mm[1]))
    noise = _noise_sigma(detect, inner)  # trabecular texture counts as noise here
    if not noise > 0:
        return np.zeros(shape, bool)
    z = _contrast(detect, inner, noise, settings.dx_over_bone_scale_mm, mm)
    seed = settings.dx_over_bone_sigma
    cand = apply_hysteresis_threshold(z, seed / 2.0, seed)
    cand = ndi.binary_opening(cand, structure=_disk(_LINE_MM, mm))
    comp, n = ndi.label(cand, _EIGHT)
    if n == 0:
        return cand
    keep = _compact(comp, n, mm, settings)
    if not keep.any():
        return np.zeros(shape, bool)
    # isolated: a line's fragment or two lines' crossing continues bright beyond the opened blob
    kept = keep[comp]
    near, owner = ndi.distance_transform_edt(~kept, sampling=mm, return_indices=True)
    ring = (near > 0) & (near <= _RING_MM) & inner
    ring_lab = np.where(ring, comp[owner[0], owner[1]], 0)
    bright = _fraction(ring_lab, n, z >= seed / 2.0)
    keep &= bright <= _RING_MAX_BRIGHT
    if keep.any():
        # beside an internal cortical line (two bones overlapping, a neck's cortex): the blob is
        # that line's end or a crossing of lines
        kept = keep[comp]
        near, owner = ndi.distance_transform_edt(~kept, sampling=mm, return_indices=True)
        lo, hi = _RIDGE_RING_MM
        ring = (near > lo) & (near <= hi) & inner
        ring_lab = np.where(ring, comp[owner[0], owner[1]], 0)
        line = np.zeros(n + 1)
        if ring_lab.any():
            box = ndi.find_objects((ring_lab > 0).astype(np.uint8))[0]
            box = _pad_box(box, 4.0 * max(_RIDGE_SCALES_MM), mm, shape)
            # the blobs themselves are replaced by their background first: at the broader scale a
            # blob's own flank would read as a line beside it
            flat = np.where(_dilate_mm(kept, lo, mm), detect - z * noise, detect)[box]
            ridge = np.maximum.reduce([_ridge_strength(flat, r, mm) for r in _RIDGE_SCALES_MM]) / noise
            line = np.asarray(ndi.maximum(ridge, ring_lab[box], np.arange(n + 1)))
        keep &= line < settings.dx_over_bone_line_sigma
    return keep[comp]


def _compact(comp: np.ndarray, n: int, mm, settings: Settings) -> np.ndarray:
    """Per label 0..n (0 False): at least ``dx_min_area_mm2``, elongation at most
    ``dx_over_bone_max_elongation`` and filling its moment ellipse (>= `_OVER_BONE_MIN_FILL`): a
    deposit's blob, not a line, a streak or a strip."""
    area = np.bincount(comp.ravel(), minlength=n + 1) * (mm[0] * mm[1])
    elong, fill = _shape(comp, n, mm)
    keep = (area >= settings.dx_min_area_mm2) & (elong <= settings.dx_over_bone_max_elongation)
    keep &= fill >= _OVER_BONE_MIN_FILL
    keep[0] = False
    return keep


def _pad_box(box, margin_mm: float, mm, shape) -> tuple[slice, slice]:
    """`box` grown by `margin_mm` on every side, clipped to `shape`."""
    pad = (int(np.ceil(margin_mm / mm[0])), int(np.ceil(margin_mm / mm[1])))
    return tuple(slice(max(b.start - p, 0), min(b.stop + p, n)) for b, p, n in zip(box, pad, shape, strict=True))


def _ridge_strength(image: np.ndarray, scale_mm: float, mm) -> np.ndarray:
    """Bright-ridge strength: minus the most negative eigenvalue of the Hessian at Gaussian scale
    `scale_mm`, scale-normalised (times scale^2), so a line of contrast c scores about c/2 whatever
    its width near the scale; 0 where the image curves upward in every direction."""
    sig = (scale_mm / mm[0], scale_mm / mm[1])
    hrr = ndi.gaussian_filter(image, sig, order=(2, 0)) / mm[0] ** 2
    hcc = ndi.gaussian_filter(image, sig, order=(0, 2)) / mm[1] ** 2
    hrc = ndi.gaussian_filter(image, sig, order=(1, 1)) / (mm[0] * mm[1])
    most_negative = (hrr + hcc) / 2.0 - np.sqrt(((hrr - hcc) / 2.0) ** 2 + hrc**2)
    return np.maximum(-most_negative, 0.0) * scale_mm**2


def _ring_fraction(comp: np.ndarray, n: int, mask: np.ndarray, width_mm: float, mm) -> np.ndarray:
    """Per label 0..n, the fraction of the ring of `width_mm` around it (each ring pixel going to
    the nearest label) that lies inside `mask`."""
    near, owner = ndi.distance_transform_edt(comp == 0, sampling=mm, return_indices=True)
    ring = (near > 0) & (near <= width_mm)
    ring_lab = np.where(ring, comp[owner[0], owner[1]], 0)
    frac = _fraction(ring_lab, n, mask)
    frac[0] = 0.0
    return frac


def _fraction(comp: np.ndarray, n: int, mask: np.ndarray) -> np.ndarray:
    """Per label 0..n, the fraction of its pixels inside `mask`."""
    n_px = np.maximum(np.bincount(comp.ravel(), minlength=n + 1), 1)
    return np.bincount(comp.ravel(), weights=mask.ravel(), minlength=n + 1) / n_px


def _shape(comp: np.ndarray, n: int, mm) -> tuple[np.ndarray, np.ndarray]:
    """Per label 0..n: elongation (square root of the ratio of the second-moment eigenvalues) and
    fill (area over that of the ellipse with the same second moments: 1 for a filled ellipse)."""
    flat = comp.ravel()
    r, c = np.indices(comp.shape, dtype=np.float64)
    r, c = r.ravel() * mm[0], c.ravel() * mm[1]
    nz = flat > 0
    flat, r, c = flat[nz], r[nz], c[nz]
    cnt = np.maximum(np.bincount(flat, minlength=n + 1), 1).astype(np.float64)

    def mean(v):
        return np.bincount(flat, weights=v, minlength=n + 1) / cnt

    mr, mc = mean(r), mean(c)
    pix = (mm[0] ** 2 + mm[1] ** 2) / 24.0  # a pixel's own second moment keeps tiny sizes > 0
    vr = mean(r * r) - mr**2 + pix
    vc = mean(c * c) - mc**2 + pix
    vrc = mean(r * c) - mr * mc
    half = np.sqrt(((vr - vc) / 2.0) ** 2 + vrc**2)
    l1, l2 = (vr + vc) / 2.0 + half, np.maximum((vr + vc) / 2.0 - half, 1e-12)
    elong = np.sqrt(l1 / l2)
    fill = cnt * (mm[0] * mm[1]) / (4.0 * np.pi * np.sqrt(l1 * l2))
    return elong, fill


def _empty(shape, flags) -> Segmentation:
    return Segmentation(np.zeros(shape, np.uint32), [], [], bone=np.zeros(shape, bool), body=None,
                        flags=flags)


def _disk(radius_mm: float, mm: tuple[float, float]) -> np.ndarray:
    """An elliptical footprint of `radius_mm` on pixels of size `mm` (row, column)."""
    rr = max(int(np.floor(radius_mm / mm[0])), 0)
    rc = max(int(np.floor(radius_mm / mm[1])), 0)
    y, x = np.ogrid[-rr:rr + 1, -rc:rc + 1]
    return (y * mm[0]) ** 2 + (x * mm[1]) ** 2 <= radius_mm ** 2 + 1e-9


def _dilate_mm(mask: np.ndarray, radius_mm: float, mm) -> np.ndarray:
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    return ndi.distance_transform_edt(~mask, sampling=mm) <= radius_mm


def _body_mask(image: np.ndarray) -> np.ndarray | None:
    """Pixels that are not air, or None when no air is seen.

    Air is the dark class of an Otsu split that touches the image border and is both dark (its
    median below a quarter of the image's range) and quieter than the rest (fewer photons
    absorbed: lower high-pass noise). The body edge is then placed a quarter of the way from the
    air level to the body level, and holes in the body are filled.
    """
    k = max(1, min(image.shape) // 256)
    small = image[::k, ::k]
    lo, hi = np.percentile(small, [0.5, 99.5])
    if hi <= lo:
        return None
    air = _border_connected(image < threshold_otsu(small))
    frac = air.mean()
    if frac < 0.01 or frac > 0.9:
        return None
    air_level, body_level = np.median(image[air]), np.median(image[~air])
    if air_level > lo + 0.25 * (hi - lo):
        return None
    hp = image - ndi.uniform_filter(image, 5)
    if _mad(hp[air]) > 0.8 * _mad(hp[~air]):
        return None
    air = _border_connected(image < air_level + 0.25 * (body_level - air_level))
    return ndi.binary_fill_holes(~air)


def _border_connected(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    return np.isin(lab, border[border > 0])


def _mad(values: np.ndarray) -> float:
    if values.size == 0:
        return 0.0
    med = np.median(values)
    return float(_MAD_TO_SIGMA * np.median(np.abs(values - med)))


def _noise_sigma(image: np.ndarray, inside: np.ndarray) -> float:
    """Robust noise sigma of `image`: MAD of image minus its local box mean, inside the body."""
    hp = image - ndi.uniform_filter(image, _NOISE_BOX_PX, mode="reflect")
    vals = hp[inside]
    if vals.size > 2_000_000:
        vals = vals[:: vals.size // 1_000_000]
    return _mad(vals)


def _contrast(detect, valid, noise, radius_mm, mm) -> np.ndarray:
    """Noise-normalised local contrast: (image - local median of the valid pixels) / noise."""
    background = _local_median(_fill_outside(detect, valid), radius_mm, mm)
    z = (detect - background) / noise
    z[~valid] = 0.0
    return z


def _fill_outside(image: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """`image` with pixels outside `inside` replaced by the nearest inside value."""
    if inside.all():
        return image
    idx = ndi.distance_transform_edt(~inside, return_distances=False, return_indices=True)
    return image[tuple(idx)]


def _local_median(image: np.ndarray, radius_mm: float, mm) -> np.ndarray:
    """Median over a disc of `radius_mm`, on a block-averaged image, interpolated back."""
    r_px = radius_mm / min(mm)
    k = max(1, int(r_px // _STEPS_PER_RADIUS))
    coarse = _block_mean(image, k)
    fp = _disk(radius_mm, (mm[0] * k, mm[1] * k))
    med = ndi.median_filter(coarse, footprint=fp, mode="reflect")
    med = ndi.uniform_filter(med, 3, mode="nearest")  # soften the block steps
    return _upsample(med, k, image.shape)


def _block_mean(image: np.ndarray, k: int) -> np.ndarray:
    """Means of k x k blocks (float32), the image edge-padded to a multiple of k."""
    rows, cols = image.shape
    h, w = -(-rows // k) * k, -(-cols // k) * k
    padded = np.pad(np.asarray(image, np.float32), ((0, h - rows), (0, w - cols)), mode="edge")
    return padded.reshape(h // k, k, w // k, k).mean(axis=(1, 3))


def _upsample(coarse: np.ndarray, k: int, shape) -> np.ndarray:
    """A `_block_mean` grid back at full resolution `shape`: separable linear interpolation
    between block centres."""
    if k == 1:
        return coarse
    r = (np.arange(shape[0], dtype=np.float32) + 0.5) / k - 0.5
    c = (np.arange(shape[1], dtype=np.float32) + 0.5) / k - 0.5
    return _interp_axis(_interp_axis(coarse, r, 0), c, 1)


def _interp_axis(a: np.ndarray, pos: np.ndarray, axis: int) -> np.ndarray:
    n = a.shape[axis]
    pos = np.clip(pos, 0, n - 1)
    i0 = np.floor(pos).astype(np.intp)
    i1 = np.minimum(i0 + 1, n - 1)
    f = (pos - i0).astype(np.float32)
    a0, a1 = np.take(a, i0, axis=axis), np.take(a, i1, axis=axis)
    f = f[:, None] if axis == 0 else f[None, :]
    return a0 + (a1 - a0) * f


def _bone_mask(candidates: np.ndarray, z: np.ndarray, mm, settings: Settings) -> np.ndarray:
    """Large dense structures with a rim brighter than their inside (cortical edges)."""
    shape = candidates.shape
    gap_mm = _BORDER_GAP_SCALES * settings.dx_background_scale_mm
    filled = _fill_holes_closing_border(candidates, gap_mm, mm)
    # a cortical outline broken where other bones cross it (an iliac wing en face behind the
    # acetabular rims) leaks: an outline sealed over gaps of up to 2 x _SEAL_MM has its holes
    # filled when they are bone-sized (seals included); smaller ones are the gaps between a
    # calcified shell and the cortex it lies against, and stay open
    sealed = ndi.binary_closing(candidates, structure=_disk(_SEAL_MM, mm), border_value=0)
    holes = _fill_holes_closing_border(sealed | candidates, gap_mm, mm) & ~filled
    lab, n = ndi.label(holes, _EIGHT)
    if n:
        big = np.bincount(lab.ravel(), minlength=n + 1) * (mm[0] * mm[1]) >= settings.dx_bone_min_area_mm2
        big[0] = False
        filled |= big[lab]
    r_open = settings.dx_bone_open_mm
    core = ndi.binary_opening(filled, structure=_disk(r_open, mm)) if r_open > 0 else filled
    lab, n = ndi.label(core, _EIGHT)
    if n == 0:
        return np.zeros(shape, bool)
    px_area = mm[0] * mm[1]
    area = np.bincount(lab.ravel(), minlength=n + 1) * px_area
    big = area >= settings.dx_bone_min_area_mm2
    big[0] = False
    if not big.any():
        return np.zeros(shape, bool)
    # cortical edges: the 1 mm rim inside the outline is brighter, on average, than the rest
    depth = ndi.distance_transform_edt(lab > 0, sampling=mm)
    rim = (depth > 0) & (depth <= 1.0)
    deep = depth > 1.0
    rim_mean = ndi.mean(z, labels=np.where(rim, lab, 0), index=np.arange(n + 1))
    deep_mean = ndi.mean(z, labels=np.where(deep, lab, 0), index=np.arange(n + 1))
    rim_mean, deep_mean = np.nan_to_num(rim_mean), np.nan_to_num(deep_mean)
    is_bone = big & (rim_mean > deep_mean)
    if is_bone.any():
        # a small bone on its own (an iliac plate seen edge-on in a small field, an ossicle): a
        # closed outline as bright as the skeleton's cortex and much brighter than its inside
        # (phantoms: the test-seed-1 plate's rim 99 sigmas, 2.3 x its inside, against the hip's
        # 20; calcified lesions of 80-320 mm2 reach 10-18 sigmas at their rim, at most 2.0 x)
        cortex = float(rim_mean[is_bone].max())
        small = (area >= settings.dx_bone_min_area_mm2 * _SMALL_BONE_AREA) & ~big
        small &= (rim_mean >= cortex) & (rim_mean >= _SMALL_BONE_RIM_RATIO * deep_mean)
        is_bone |= small
    bone = is_bone[lab]
    if is_bone.any() and r_open > 0:
        # what the opening cut off the bone and is as bright as its cortex goes back to it
        bone |= _cut_cortex(filled & ~core, np.where(bone, lab, 0), rim_mean, z)
    return bone


def _cut_cortex(cut: np.ndarray, bone_lab: np.ndarray, rim_mean: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The pieces of `cut` (what the opening took off the filled candidates) that are cortex.

    A piece touching a bone (8-connected to a pixel of `bone_lab`, the bone's labels) is cortex
    when its mean contrast ``z`` is at least `_CUT_CORTEX_RATIO` times that bone's cortical rim
    (``rim_mean``, noise sigmas): a socket's rim or a process seen tangentially is as dense as the
    cortex it continues, a vessel wall or a deposit cut off the bone is far fainter.
    """
    pieces, n = ndi.label(cut, _EIGHT)
    if n == 0:
        return np.zeros(cut.shape, bool)
    near = ndi.grey_dilation(bone_lab, footprint=_EIGHT)  # the bone each pixel touches
    index = np.arange(n + 1)
    level = np.asarray(ndi.maximum(np.where(near > 0, rim_mean[near], 0.0), labels=pieces, index=index))
    zmean = np.nan_to_num(ndi.mean(z, labels=pieces, index=index))
    keep = (level > 0) & (zmean >= _CUT_CORTEX_RATIO * level)
    keep[0] = False
    return keep[pieces]


def _fill_holes_closing_border(mask: np.ndarray, gap_mm: float, mm) -> np.ndarray:
    """Fill holes, counting runs of the image border shorter than `gap_mm` between two mask
    pixels as closed (a structure cut by the image edge keeps its inside)."""
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), bool)
    padded[1:-1, 1:-1] = mask
    padded[0, 1:-1] = _close_gaps(mask[0], gap_mm / mm[1])
    padded[-1, 1:-1] = _close_gaps(mask[-1], gap_mm / mm[1])
    padded[1:-1, 0] = _close_gaps(mask[:, 0], gap_mm / mm[0])
    padded[1:-1, -1] = _close_gaps(mask[:, -1], gap_mm / mm[0])
    return ndi.binary_fill_holes(padded)[1:-1, 1:-1]


def _close_gaps(line: np.ndarray, max_gap: float) -> np.ndarray:
    """`line` with runs of False no longer than `max_gap` between two True pixels set True."""
    idx = np.flatnonzero(line)
    out = line.copy()
    if idx.size < 2:
        return out
    gaps = np.diff(idx) - 1
    fill = np.flatnonzero((gaps > 0) & (gaps <= max_gap))
    if fill.size:
        # mark run starts (+1) and ends (-1), then a cumulative sum paints the runs
        marks = np.zeros(line.size + 1, np.int32)
        np.add.at(marks, idx[fill] + 1, 1)
        np.add.at(marks, idx[fill + 1], -1)
        out |= np.cumsum(marks[:-1]) > 0
    return out


def _group(mask: np.ndarray, gap_mm: float, mm) -> tuple[np.ndarray, list[int]]:
    """Label 8-connected components of `mask`, grouping those closer than `gap_mm`.

    Returns labels (uint32, 1..n by decreasing area, ties by first pixel in array order) and the
    number of components in each lesion.
    """
    comp, n_comp = ndi.label(mask, _EIGHT)
    if n_comp == 0:
        return np.zeros(mask.shape, np.uint32), []
    if gap_mm > 0:
        grown = _dilate_mm(mask, gap_mm / 2.0, mm)
        group, n = ndi.label(grown, _EIGHT)
        group = np.where(mask, group, 0)
    else:
        group, n = comp, n_comp
    flat = group.ravel()
    area = np.bincount(flat, minlength=n + 1)
    nz = np.flatnonzero(flat)
    present, first = np.unique(flat[nz], return_index=True)
    first_pixel = np.full(n + 1, np.iinfo(np.intp).max)
    first_pixel[present] = nz[first]
    order = np.lexsort((first_pixel[present], -area[present]))
    ids = present[order]
    lut = np.zeros(n + 1, np.uint32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.uint32)
    labels = lut[group]
    # components per lesion: each component lies in exactly one group
    comp_group = np.asarray(ndi.maximum(labels, comp, np.arange(1, n_comp + 1)), dtype=np.intp)
    counts = np.bincount(comp_group, minlength=ids.size + 1)[1:]
    return labels, [int(c) for c in counts]
