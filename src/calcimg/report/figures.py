"""Figures for radiologists: one study's lesions, and a batch's results.

Every function returns a `matplotlib.figure.Figure` built with the object API (no pyplot state),
so it renders inline in Jupyter, saves with ``fig.savefig`` and is testable headless.

Conventions
-----------
* Images are drawn in millimetres (``extent`` from the scan's spacing), so CT crops keep their
  physical aspect whatever the slice thickness; axes are labelled in mm along the array axes and
  the patient directions (R/L, A/P, S/I; radiographs: from PatientOrientation) are written at the
  image edges.
* CT views follow the radiological habit: axial with the patient's left on the viewer's right as
  stored, coronal and sagittal with the head up.
* Window presets (HU, level/width): ``soft_tissue`` 40/400 and ``bone`` 400/1800. Radiographs
  use the 1st..99.5th percentile of the image whatever the preset.
* Lesion outlines are coloured by ``pattern`` when the rows carry it (the colours of the batch
  overlays), else by lesion id.
* Columns other parts of calcimg add (``pattern``, ``evidence``, the shape descriptors, fluid
  levels) are used when present; when absent the figure says "not available" instead of failing.
"""

from __future__ import annotations

import math
import re
import textwrap

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from calcimg.criteria._evaluate import is_missing
from calcimg.report._overlay import _ID_COLOURS, _PATTERN_COLOURS
from calcimg.report._results import (
    DESCRIPTOR_COLUMNS,
    Results,
    column_label,
    format_value,
    load_results,
    plain,
)

__all__ = [
    "PATTERN_ORDER",
    "WINDOWS",
    "batch_status_table",
    "feature_distributions",
    "lesion_gallery",
    "lobulation_linearity_scatter",
    "pattern_colour",
    "scan_overview",
]

#: Window presets, HU (level, width).
WINDOWS: dict[str, tuple[float, float]] = {"soft_tissue": (40.0, 400.0), "bone": (400.0, 1800.0)}

#: The patterns of CONTRACT.md, in the order legends list them.
PATTERN_ORDER: tuple[str, ...] = (
    "tumoral_calcinosis", "calcific_tendinitis", "myositis_ossificans", "calcinosis_cutis", "vascular",
    "phlebolith", "lymph_node", "hydatid_cyst", "parasitic", "tumor_matrix", "dystrophic", "indeterminate",
)

# On white paper the overlay's white/pale colours vanish: darker stand-ins, same hues elsewhere.
_LIGHT_BG = {"dystrophic": "#505050", "indeterminate": "#a0a0a0", "calcific_tendinitis": "#e0b000",
             "parasitic": "#8cb000", "phlebolith": "#00b08a", "lymph_node": "#2ca02c"}
_STATUS_COLOURS = {"ok": "#2ca02c", "error": "#d62728", "skipped": "#a0a0a0"}
_FLUID_COLOUR = "#00e5ff"
_GRAVITY_COLOUR = "#ffe000"
_LPS_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))


def pattern_colour(pattern: str, background: str = "light") -> str:
    """The colour of a pattern: the batch overlays' colours on images (``background="dark"``),
    darker stand-ins for the pale ones on white charts (``"light"``)."""
    pattern = str(pattern or "indeterminate")
    if background == "light" and pattern in _LIGHT_BG:
        return _LIGHT_BG[pattern]
    return _PATTERN_COLOURS.get(pattern, "#808080")


# --------------------------------------------------------------------------------------------
# Helpers: windows, geometry, colours
# --------------------------------------------------------------------------------------------

def _window(scan, window: str, image: np.ndarray | None = None) -> tuple[float, float, str]:
    """(vmin, vmax, words) for the scan's kind and a preset name."""
    if scan.kind == "ct":
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {sorted(WINDOWS)}, not {window!r}")
        level, width = WINDOWS[window]
        return level - width / 2, level + width / 2, f"{plain(window)} window W{width:.0f}/L{level:.0f} HU"
    img = scan.pixels if image is None else image
    step = max(1, max(img.shape) // 256)
    lo, hi = np.percentile(img[::step, ::step], (1.0, 99.5))
    return float(lo), float(hi if hi > lo else lo + 1), "1–99.5th percentile window"


def _spacing(scan) -> tuple[np.ndarray, str]:
    """mm per array axis and the unit name; pixels when a radiograph's spacing is unknown."""
    sp = np.asarray(scan.spacing, float)
    if np.all(np.isfinite(sp)) and np.all(sp > 0):
        return sp, "mm"
    return np.ones_like(sp), "px"


def _axis_letters(scan, axis: int) -> tuple[str, str] | None:
    """Patient directions (towards low index, towards high index) of an array axis, or None."""
    if scan.kind == "ct":
        vec = np.asarray(scan.direction, float)[:, axis]
    elif getattr(scan, "axes_lps", None) is not None:
        vec = np.asarray(scan.axes_lps, float)[axis]
    else:
        return None
    k = int(np.argmax(np.abs(vec)))
    if abs(vec[k]) < 0.5:
        return None
    neg, pos = _LPS_LETTERS[k]
    return (neg, pos) if vec[k] > 0 else (pos, neg)


def _head_up(scan, vertical_axis: int) -> bool:
    """True when the array axis drawn vertically runs towards the head (draw it bottom-up)."""
    if scan.kind != "ct":
        return False
    return float(np.asarray(scan.direction, float)[2, vertical_axis]) > 0.5


def _colours(rows: list[dict], background: str = "dark") -> tuple[dict[int, str], list[tuple[str, str]]]:
    """Colour per lesion id and legend entries (colour, text): by pattern when rows have one."""
    by_pattern = any(isinstance(r.get("pattern"), str) and r.get("pattern") for r in rows)
    colours: dict[int, str] = {}
    legend: dict[str, str] = {}
    for r in rows:
        lid = int(r["lesion_id"])
        if by_pattern:
            p = r.get("pattern") if isinstance(r.get("pattern"), str) and r.get("pattern") else "indeterminate"
            colours[lid] = pattern_colour(p, background)
            legend.setdefault(p, colours[lid])
        else:
            colours[lid] = _ID_COLOURS[(lid - 1) % len(_ID_COLOURS)]
            if len(legend) < 10:
                legend[f"lesion {lid}"] = colours[lid]
    if by_pattern:
        order = {p: i for i, p in enumerate(PATTERN_ORDER)}
        items = sorted(legend.items(), key=lambda kv: order.get(kv[0], 99))
        return colours, [(c, plain(t)) for t, c in items]
    return colours, [(c, t) for t, c in legend.items()]


def _lesion_mask(seg, lid: int) -> tuple[tuple[slice, ...], np.ndarray]:
    box = seg.boxes[lid - 1]
    if seg.masks is not None:
        return box, np.asarray(seg.masks[lid - 1], bool)
    return box, seg.labels[box] == lid


def _show(ax, image2d, sp_v, sp_h, origin_v, origin_h, vmin, vmax, unit, head_up=False) -> None:
    """Draw a 2D image (rows = vertical array axis) in mm, starting at index (origin_v, origin_h)."""
    n_v, n_h = image2d.shape
    extent = ((origin_h - 0.5) * sp_h, (origin_h + n_h - 0.5) * sp_h,
              (origin_v + n_v - 0.5) * sp_v, (origin_v - 0.5) * sp_v)
    ax.imshow(image2d, cmap="gray", vmin=vmin, vmax=vmax, extent=extent, interpolation="nearest",
              origin="upper", aspect="equal")
    if head_up:
        ax.invert_yaxis()
    ax.tick_params(labelsize=7, length=2)


def _contour(ax, mask2d, sp_v, sp_h, origin_v, origin_h, colour, lw=1.2, ls="-") -> None:
    """Outline of a 2D mask, in mm, at the boundary between voxels."""
    if not mask2d.any():
        return
    m = np.pad(mask2d.astype(float), 1)
    v = (origin_v - 1 + np.arange(m.shape[0])) * sp_v
    h = (origin_h - 1 + np.arange(m.shape[1])) * sp_h
    ax.contour(h, v, m, levels=[0.5], colors=[colour], linewidths=lw, linestyles=ls)


def _letters(ax, scan, v_axis: int, h_axis: int, colour="#ffffff") -> None:
    """Patient directions at the image edges, after any axis inversion."""
    from matplotlib import patheffects

    kw = {"transform": ax.transAxes, "color": colour, "fontsize": 8, "fontweight": "bold",
          "path_effects": [patheffects.withStroke(linewidth=2, foreground="black")]}
    hl = _axis_letters(scan, h_axis)
    if hl:
        x0, x1 = ax.get_xlim()
        left, right = hl if x1 > x0 else hl[::-1]
        ax.text(0.02, 0.5, left, ha="left", va="center", **kw)
        ax.text(0.98, 0.5, right, ha="right", va="center", **kw)
    vl = _axis_letters(scan, v_axis)
    if vl:
        y0, y1 = ax.get_ylim()  # y1 is at the top of the picture
        bottom, top = vl if y1 > y0 else vl[::-1]
        ax.text(0.5, 0.98, top, ha="center", va="top", **kw)
        ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **kw)


def _gravity_arrow(ax, scan, v_axis: int, h_axis: int) -> str:
    """Draw gravity's in-plane component as an arrow from the top-left corner; returns a note."""
    kw = {"transform": ax.transAxes, "fontsize": 7, "color": _GRAVITY_COLOUR, "ha": "left", "va": "top",
          "bbox": {"boxstyle": "round,pad=0.15", "fc": "black", "alpha": 0.55, "lw": 0}}
    g = getattr(scan, "gravity", None)
    if g is None or not np.all(np.isfinite(g)):
        ax.text(0.03, 0.97, "gravity unknown", **kw)
        return "gravity unknown"
    g = np.asarray(g, float)
    gv, gh = float(g[v_axis]), float(g[h_axis])
    inplane = math.hypot(gv, gh)
    if inplane < 0.2:
        ax.text(0.03, 0.97, "gravity ⊥ this plane", **kw)
        return "gravity through the plane"
    # data -> display direction: data axes may be inverted, so go through the transform
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    dx = gh / inplane * (1 if x1 > x0 else -1)
    dy = gv / inplane * (1 if y1 > y0 else -1)  # +dy = up on screen in axes fraction
    start = np.array([0.12, 0.80]) - 0.07 * np.array([dx, dy])
    end = start + 0.14 * np.array([dx, dy])
    ax.annotate("", xy=end, xytext=start, xycoords="axes fraction", textcoords="axes fraction",
                arrowprops={"arrowstyle": "-|>", "color": _GRAVITY_COLOUR, "lw": 1.6, "mutation_scale": 10})
    ax.text(0.03, 0.97, "gravity" if inplane > 0.9 else f"gravity ({inplane:.0%} in plane)", **kw)
    return ""


# --------------------------------------------------------------------------------------------
# Fluid-level interfaces, when the fluid-level feature exposes them
# --------------------------------------------------------------------------------------------

def fluid_interfaces(scan, seg) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
    """The fluid-level interfaces per lesion id, as (point, normal) in physical mm (CT: LPS;
    radiographs: image-plane mm along the array axes), for the levels found present
    (``calcimg.features.fluid_level.find_fluid_levels``).
    """
    from calcimg.features.fluid_level import find_fluid_levels, gravity_reason
    from calcimg.segment import crop_lesions

    out: dict[int, list] = {}
    for lesion in crop_lesions(scan, seg):
        if gravity_reason(lesion):
            continue
        try:
            levels, _ = find_fluid_levels(lesion)
        except Exception:  # a picture never fails over an optional overlay
            continue
        for lv in levels:
            if lv.present and lv.point_lps is not None:
                out.setdefault(lesion.lesion_id, []).append((np.asarray(lv.point_lps, float),
                                                             np.asarray(lv.normal, float)))
    return out


def _draw_interface(ax, scan, plane, v_axis, h_axis, fixed_axis, fixed_index, sp, box_v, box_h) -> bool:
    """Draw the intersection of an interface plane with a view plane, clipped to the crop."""
    p0, n = plane
    ndim = scan.ndim
    if scan.kind == "ct":
        D = np.asarray(scan.direction, float)
        origin = np.asarray(scan.origin, float)
    else:
        D = np.eye(ndim)
        origin = np.zeros(ndim)
    # physical point at mm-along-axes s: origin + D @ s; on the plane: n.(D s) = n.(p0 - origin)
    a = n @ D  # coefficient per array axis (mm)
    rhs = float(n @ (p0 - origin))
    if fixed_axis is not None:
        rhs -= a[fixed_axis] * fixed_index * sp[fixed_axis]
    av, ah = a[v_axis], a[h_axis]
    (v0, v1), (h0, h1) = box_v, box_h
    pts = []
    if abs(av) > 1e-9:
        for h in (h0, h1):
            v = (rhs - ah * h) / av
            if v0 - 1e-6 <= v <= v1 + 1e-6:
                pts.append((h, v))
    if abs(ah) > 1e-9:
        for v in (v0, v1):
            h = (rhs - av * v) / ah
            if h0 - 1e-6 <= h <= h1 + 1e-6:
                pts.append((h, v))
    if len(pts) < 2:
        return False
    pts = sorted(set(pts))
    (ha, va), (hb, vb) = pts[0], pts[-1]
    ax.plot([ha, hb], [va, vb], color=_FLUID_COLOUR, lw=1.4, ls="--")
    return True


# --------------------------------------------------------------------------------------------
# One study
# --------------------------------------------------------------------------------------------

def _most_lesion_slice(seg, n_slices: int) -> int:
    k = n_slices // 2
    counts = np.zeros(n_slices, int)
    for i in range(seg.n_lesions):
        box, m = _lesion_mask(seg, i + 1)
        counts[box[0]] += m.reshape(m.shape[0], -1).sum(axis=1)
    if counts.max() > 0:
        k = int(np.argmax(counts))
    return k


def _numbers(ax, rows, centres, colours) -> None:
    for r in rows:
        lid = int(r["lesion_id"])
        if lid in centres:
            h, v = centres[lid]
            ax.annotate(str(lid), (h, v), xytext=(6, 6), textcoords="offset points", fontsize=7,
                        color=colours.get(lid, "#ff3030"), fontweight="bold")


def scan_overview(scan, seg, rows: list[dict], window: str = "soft_tissue", *, title: str = "") -> Figure:
    """The scan with every lesion outlined and numbered.

    CT: three panels, the axial slice with the most lesion voxels, and maximum-intensity projections
    along the slices (axial) and front to back (coronal) with each lesion's projected outline.
    Radiograph: the image.

    Parameters
    ----------
    scan : calcimg.scan.Scan
    seg : calcimg.segment.Segmentation
        Its lesions are numbered as the rows' ``lesion_id``.
    rows : list of dict
        The lesion rows of this scan (``lesion_id``; ``pattern`` colours the outlines when present).
    window : {"soft_tissue", "bone"}
        CT window preset (`WINDOWS`); radiographs use a percentile window.
    title : str, optional
        Figure title (default: kind, shape and spacing).

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = list(rows)
    vmin, vmax, wtext = _window(scan, window)
    sp, unit = _spacing(scan)
    colours, legend = _colours(rows, "dark")
    if scan.kind == "ct":
        fig = Figure(figsize=(13.0, 5.2), layout="constrained")
        axes = fig.subplots(1, 3, width_ratios=[1, 1, 1])
        k = _most_lesion_slice(seg, scan.shape[0])
        views = [
            (axes[0], scan.pixels[k], 1, 2, f"axial slice {k + 1}/{scan.shape[0]} (most lesion voxels)", "slice"),
            (axes[1], scan.pixels.max(axis=0), 1, 2, "axial MIP (all slices)", "mip0"),
            (axes[2], scan.pixels.max(axis=1), 0, 2, "coronal MIP (front to back)", "mip1"),
        ]
        for ax, img, va, ha, name, how in views:
            _show(ax, img, sp[va], sp[ha], 0, 0, vmin, vmax, unit, head_up=_head_up(scan, va))
            centres = {}
            for r in rows:
                lid = int(r["lesion_id"])
                if lid > seg.n_lesions:
                    continue
                box, m = _lesion_mask(seg, lid)
                if how == "slice":
                    if not (box[0].start <= k < box[0].stop):
                        continue
                    m2 = m[k - box[0].start]
                    ov, oh = box[1].start, box[2].start
                elif how == "mip0":
                    m2, ov, oh = m.any(axis=0), box[1].start, box[2].start
                else:
                    m2, ov, oh = m.any(axis=1), box[0].start, box[2].start
                if not m2.any():
                    continue
                _contour(ax, m2, sp[va], sp[ha], ov, oh, colours.get(lid, "#ff3030"))
                iv, ih = np.nonzero(m2)
                centres[lid] = ((oh + ih.max() + 0.5) * sp[ha], (ov + iv.min() - 0.5) * sp[va])
            _numbers(ax, rows, centres, colours)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel(f"{_axis_name(scan, ha)} ({unit})", fontsize=8)
            ax.set_ylabel(f"{_axis_name(scan, va)} ({unit})", fontsize=8)
            _letters(ax, scan, va, ha)
        _gravity_arrow(axes[0], scan, 1, 2)
        _gravity_arrow(axes[2], scan, 0, 2)
    else:
        fig = Figure(figsize=(7.0, 7.4), layout="constrained")
        ax = fig.subplots(1, 1)
        _show(ax, scan.pixels, sp[0], sp[1], 0, 0, vmin, vmax, unit)
        centres = {}
        for r in rows:
            lid = int(r["lesion_id"])
            if lid > seg.n_lesions:
                continue
            box, m = _lesion_mask(seg, lid)
            m2 = m.reshape(m.shape[-2:]) if m.ndim > 2 else m
            _contour(ax, m2, sp[0], sp[1], box[-2].start, box[-1].start, colours.get(lid, "#ff3030"))
            iv, ih = np.nonzero(m2)
            if len(iv):
                centres[lid] = ((box[-1].start + ih.max() + 0.5) * sp[1], (box[-2].start + iv.min() - 0.5) * sp[0])
        _numbers(ax, rows, centres, colours)
        view = scan.header.get("view_position") or ""
        ax.set_title(f"radiograph{' ' + view if view else ''}", fontsize=9)
        ax.set_xlabel(f"columns ({unit})", fontsize=8)
        ax.set_ylabel(f"rows ({unit})", fontsize=8)
        _letters(ax, scan, 0, 1)
        _gravity_arrow(ax, scan, 0, 1)
    handles = [Patch(facecolor=c, edgecolor="black", lw=0.5, label=t) for c, t in legend]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=8,
                   frameon=False, title="outline colour = " + ("pattern" if any(r.get("pattern") for r in rows)
                                                                 else "lesion (pattern not available)"),
                   title_fontsize=8)
    else:
        fig.text(0.5, 0.01, "no lesions found", ha="center", fontsize=9)
    head = title or _scan_title(scan)
    fig.suptitle(f"{head}\n{len(rows)} lesion(s); {wtext}", fontsize=10)
    return fig


def _axis_name(scan, axis: int) -> str:
    if scan.kind == "ct":
        name = ("slice axis", "rows", "columns")[axis]
    else:
        name = ("rows", "columns")[axis]
    lt = _axis_letters(scan, axis)
    return f"{name}, {lt[0]}→{lt[1]}" if lt else name


def _scan_title(scan) -> str:
    shape = "×".join(str(n) for n in scan.shape)
    sp = " × ".join(f"{s:.3g}" for s in scan.spacing)
    pos = scan.header.get("patient_position") or ""
    return f"{'CT' if scan.kind == 'ct' else 'Radiograph'} {shape} {'voxels' if scan.kind == 'ct' else 'pixels'}, {sp} mm" + (f", {pos}" if pos else "")


_GALLERY_FEATURES = ("volume_mm3", "area_mm2", "max_diameter_mm", "mean_hu", "max_hu", *DESCRIPTOR_COLUMNS,
                     "bone_distance_mm", "skin_depth_mm", "compartment")


def _feature_text(row: dict, kind: str, width: int = 60, max_lines: int = 5) -> tuple[str, str]:
    """(values block, words block) of a lesion's text panel; long reasons are cut (the table and
    `describe_lesion` keep them whole)."""
    lines = []
    for c in _GALLERY_FEATURES:
        if kind == "radiograph" and c in ("volume_mm3", "mean_hu", "max_hu", "compartment"):
            continue
        if kind == "ct" and c == "area_mm2":
            continue
        value = format_value(c, row[c]) if c in row else "not available"
        lines.append(f"{column_label(c, unit=False):<22}{value}")
    words = []
    for name in ("evidence", "not_assessed"):
        label = "evidence" if name == "evidence" else "not assessed"
        if name not in row:
            words.append(f"{label}: not available")
            continue
        v = row.get(name)
        text = plain(v) if not is_missing(v) else ("none" if name == "evidence" else "—")
        if name == "not_assessed":
            text = re.sub(r"\s*\([^)]*\)", "", text)  # the why in brief; details in the table
        text = "; ".join(t.strip() for t in text.split(";"))
        wrapped = textwrap.wrap(f"{label}: {text}", width=width, subsequent_indent="  ")
        limit = max_lines if name == "evidence" else max_lines - 1
        if len(wrapped) > limit:
            wrapped = [*wrapped[: limit - 1], "  … (whole text in the lesion table)"]
        words.append("\n".join(wrapped))
    return "\n".join(lines), "\n".join(words)


def lesion_gallery(scan, seg, rows: list[dict], max_lesions: int = 8, window: str = "bone", *,
                   lesion_ids: list[int] | None = None, crop_mm: float | None = None,
                   interfaces: dict | None = None) -> Figure:
    """One row per lesion: crops through its centroid, its values, pattern and evidence.

    CT: axial, coronal and sagittal crops (the plane through the centroid, or the nearest one
    holding the lesion) at physical aspect; radiographs: the crop. Each crop shows the lesion's
    outline (other lesions dashed grey), gravity's in-plane component as an arrow ("gravity
    unknown" / "gravity ⊥ this plane" otherwise), and the fluid-level interface where the
    fluid-level feature exposes it (`fluid_interfaces`). The text panel lists the values with
    units, the pattern, the evidence and what was not assessed; columns the rows lack are
    "not available".

    Parameters
    ----------
    scan : calcimg.scan.Scan
    seg : calcimg.segment.Segmentation
    rows : list of dict
        The lesion rows of this scan.
    max_lesions : int
        Show at most this many lesions (largest first, as ``lesion_id`` orders them).
    window : {"bone", "soft_tissue"}
        CT window preset; bone shows the structure inside the calcification.
    lesion_ids : list of int, optional
        Show these lesions instead.
    crop_mm : float, optional
        Side of the crops (mm); default: the lesion's largest extent plus 16 mm, at least 24 mm.
    interfaces : dict, optional
        Fluid-level interfaces per lesion id (`fluid_interfaces`); computed when None.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if max_lesions < 1:
        raise ValueError(f"max_lesions must be at least 1, not {max_lesions}")
    by_id = {int(r["lesion_id"]): r for r in rows}
    ids = [i for i in (lesion_ids if lesion_ids is not None else sorted(by_id)) if 1 <= i <= seg.n_lesions]
    shown = ids[:max_lesions]
    vmin, vmax, wtext = _window(scan, window)
    sp, unit = _spacing(scan)
    colours, _ = _colours(rows, "dark")
    if interfaces is None:
        interfaces = fluid_interfaces(scan, seg) if shown else {}
    n_img = 3 if scan.kind == "ct" else 1
    fig = Figure(figsize=(3.0 * n_img + 5.0, 3.7 * max(1, len(shown)) + 0.9), layout="constrained")
    if not shown:
        fig.text(0.5, 0.5, "no lesions to show", ha="center", va="center", fontsize=11)
        fig.suptitle(f"Lesion gallery: {_scan_title(scan)}", fontsize=10)
        return fig
    subfigs = fig.subfigures(len(shown), 1, squeeze=False)[:, 0]
    any_interface = False
    for sub, lid in zip(subfigs, shown, strict=True):
        row = by_id.get(lid, {"lesion_id": lid})
        box, m = _lesion_mask(seg, lid)
        colour = colours.get(lid, "#ff3030")
        axes = sub.subplots(1, n_img + 1, width_ratios=[1] * n_img + [1.75])
        centre = np.argwhere(m).mean(axis=0) + np.array([b.start for b in box])
        extent_mm = max((b.stop - b.start) * s for b, s in zip(box, sp, strict=True))
        side = crop_mm or max(24.0, extent_mm + 16.0)
        if scan.kind == "ct":
            views = [(0, 1, 2, "axial"), (1, 0, 2, "coronal"), (2, 0, 1, "sagittal")]
        else:
            views = [(None, 0, 1, "crop")]
        for ax, (fixed, va, ha, name) in zip(axes[:n_img], views, strict=True):
            if fixed is None:
                k, image, labels = None, scan.pixels, seg.labels
            else:
                k = int(np.rint(centre[fixed]))
                k = _nearest_with_lesion(m, fixed, k - box[fixed].start) + box[fixed].start
                image = np.take(scan.pixels, k, axis=fixed)
                labels = np.take(seg.labels, k, axis=fixed)
            half_v, half_h = side / 2 / sp[va], side / 2 / sp[ha]
            v0 = max(0, int(np.floor(centre[va] - half_v)))
            v1 = min(scan.shape[va], int(np.ceil(centre[va] + half_v)) + 1)
            h0 = max(0, int(np.floor(centre[ha] - half_h)))
            h1 = min(scan.shape[ha], int(np.ceil(centre[ha] + half_h)) + 1)
            img = image[v0:v1, h0:h1]
            lab = labels[v0:v1, h0:h1]
            _show(ax, img, sp[va], sp[ha], v0, h0, vmin, vmax, unit, head_up=_head_up(scan, va))
            if scan.kind != "ct":  # a radiograph's contrast is local: window on the crop
                lo, hi, _ = _window(scan, window, img)
                ax.images[-1].set_clim(lo, hi)
            for other in np.unique(lab):
                if other and other != lid:
                    _contour(ax, lab == other, sp[va], sp[ha], v0, h0, colours.get(int(other), "#b0b0b0"),
                             lw=0.8, ls="--")
            _contour(ax, lab == lid, sp[va], sp[ha], v0, h0, colour, lw=1.4)
            for plane in interfaces.get(lid, []):
                bv = ((v0 - 0.5) * sp[va], (v1 - 0.5) * sp[va])
                bh = ((h0 - 0.5) * sp[ha], (h1 - 0.5) * sp[ha])
                any_interface |= _draw_interface(ax, scan, plane, va, ha, fixed, k, sp, bv, bh)
            where = "" if k is None else f" {['slice', 'row', 'column'][fixed]} {k + 1}"
            ax.set_title(f"{name}{where}", fontsize=8)
            ax.set_xlabel(unit, fontsize=7, labelpad=1)
            _letters(ax, scan, va, ha)
            _gravity_arrow(ax, scan, va, ha)
        text_ax = axes[-1]
        text_ax.set_axis_off()
        values, words = _feature_text(row, scan.kind)
        pattern = row.get("pattern") if "pattern" in row else None
        ptext = f"pattern: {plain(pattern)}" if isinstance(pattern, str) and pattern else (
            "pattern: not available" if "pattern" not in row else "pattern: not assigned")
        has_pattern = isinstance(pattern, str) and bool(pattern)
        title = text_ax.text(0.0, 1.0, ptext, transform=text_ax.transAxes, va="top", ha="left", fontsize=10,
                             fontweight="bold", color=pattern_colour(pattern, "light") if has_pattern else "#404040")
        block = text_ax.annotate(values, xy=(0, 0), xycoords=title, xytext=(0, -4), textcoords="offset points",
                                 va="top", ha="left", fontsize=7, family="monospace")
        text_ax.annotate(words, xy=(0, 0), xycoords=block, xytext=(0, -6), textcoords="offset points",
                         va="top", ha="left", fontsize=7)
        sub.suptitle(f"Lesion {lid}", fontsize=10, fontweight="bold", x=0.01, ha="left")
    legend = [Line2D([], [], color="#ff3030", lw=1.4, label="lesion outline (colour = pattern)"),
              Line2D([], [], color="#808080", lw=0.8, ls="--", label="other lesions (dashed)"),
              Line2D([], [], color=_GRAVITY_COLOUR, marker=">", lw=1.6, label="gravity (in-plane part)")]
    legend.append(Line2D([], [], color=_FLUID_COLOUR, lw=1.4, ls="--",
                         label="fluid-level interface" if any_interface else "fluid-level interface (none drawn)"))
    fig.legend(handles=legend, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    more = f" (first {len(shown)} of {len(ids)})" if len(ids) > len(shown) else ""
    fig.suptitle(f"Lesion gallery{more}: {_scan_title(scan)}; {wtext}", fontsize=10)
    return fig


def _nearest_with_lesion(mask: np.ndarray, axis: int, k: int) -> int:
    """The plane index (crop coordinates) nearest `k` along `axis` holding lesion voxels."""
    planes = np.moveaxis(mask, axis, 0)
    present = planes.reshape(planes.shape[0], -1).any(axis=1)
    if 0 <= k < len(present) and present[k]:
        return k
    idx = np.nonzero(present)[0]
    return int(idx[np.argmin(np.abs(idx - k))]) if len(idx) else int(np.clip(k, 0, len(present) - 1))


# --------------------------------------------------------------------------------------------
# A batch
# --------------------------------------------------------------------------------------------

def _results(source) -> Results:
    return source if isinstance(source, Results) else load_results(source)


def _reason_words(reason: str, source: str) -> str:
    """A reason without its leading ``<path>: `` (the source column says where)."""
    reason = str(reason or "")
    if source and reason.startswith(source):
        return reason[len(source):].lstrip("/:\\ ")  # keeps a file name below the source
    return reason


def batch_status_table(out_dir, max_rows: int = 15) -> Figure:
    """The series of a batch: counts by status and kind, every failure with its reason, and the
    skipped files grouped by reason.

    Parameters
    ----------
    out_dir : str, Path or Results
        An output folder of ``calcimg extract`` (or its `load_results`).
    max_rows : int
        Failures listed at most (the rest are counted).

    Returns
    -------
    matplotlib.figure.Figure
        Left: series per status, hatched by kind; right: a table of the failed series (source,
        kind, reason) then the skipped ones, one line per reason with their count.
    """
    res = _results(out_dir)
    s = res.series
    status = s["status"].fillna("") if "status" in s else None
    kind_col = s["kind"].fillna("") if "kind" in s else None
    fails = s[status == "error"] if status is not None else s.iloc[:0]
    cells, colours = [], []
    for _, r in fails.head(max_rows).iterrows():
        src = str(r.get("source", "") or "")
        reason = textwrap.shorten(_reason_words(r.get("reason", ""), src), width=90, placeholder=" …")
        cells.append([("…" + src[-36:]) if len(src) > 38 else src, str(r.get("kind", "") or ""), reason])
        colours.append("#fde0e0")
    if len(fails) > max_rows:
        cells.append([f"… and {len(fails) - max_rows} more failures", "", "see the series table"])
        colours.append("#fde0e0")
    if status is not None:
        skipped = s[status == "skipped"]
        groups: dict[str, int] = {}
        for _, r in skipped.iterrows():
            why = _reason_words(r.get("reason", ""), str(r.get("source", "") or ""))
            why = re.sub(r"\s*\([^)]*\)", "", why)
            groups[why] = groups.get(why, 0) + 1
        for why, n in sorted(groups.items(), key=lambda kv: -kv[1]):
            cells.append([f"{n} skipped", "", textwrap.shorten(why, width=90, placeholder=" …")])
            colours.append("#f0f0f0")
    fig = Figure(figsize=(13.0, max(3.0, 1.3 + 0.3 * len(cells))), layout="constrained")
    ax, tab = fig.subplots(1, 2, width_ratios=[1, 2.6])
    statuses = ["ok", "error", "skipped"]
    hatches = ["", "//", "..", "xx", "\\\\", "++"]
    left = np.zeros(len(statuses))
    kinds: list[str] = []
    if status is not None and kind_col is not None:
        kinds = sorted(set(kind_col) - {""}) + ([""] if (kind_col == "").any() else [])
        for j, kind in enumerate(kinds):
            counts = np.array([int(((status == st) & (kind_col == kind)).sum()) for st in statuses])
            ax.barh(statuses, counts, left=left, color=[_STATUS_COLOURS[st] for st in statuses],
                    edgecolor="white", hatch=hatches[j % len(hatches)])
            left += counts
    for i, total in enumerate(left):
        ax.text(total + 0.02 * max(1.0, left.max()), i, f"{int(total)}", va="center", fontsize=8)
    ax.set_xlabel("series", fontsize=8)
    ax.set_xlim(0, max(1.0, left.max() * 1.15))
    ax.invert_yaxis()
    ax.tick_params(labelsize=8)
    ax.set_title(f"{len(s)} series by status", fontsize=9)
    if kinds:
        ax.legend(handles=[Patch(facecolor="white", edgecolor="#404040", hatch=hatches[j % len(hatches)],
                                 label=k or "not an image") for j, k in enumerate(kinds)],
                  fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=len(kinds), frameon=False,
                  title="hatching = kind", title_fontsize=7)
    tab.set_axis_off()
    if cells:
        t = tab.table(cellText=cells, colLabels=["source", "kind", "reason"], loc="upper left",
                      cellLoc="left", colLoc="left", colWidths=[0.28, 0.08, 0.64])
        t.auto_set_font_size(False)
        t.set_fontsize(7)
        t.scale(1, 1.3)
        for (i, _j), cell in t.get_celld().items():
            cell.set_edgecolor("#d0d0d0")
            if i == 0:
                cell.set_facecolor("#e8e8e8")
                cell.set_text_props(fontweight="bold")
            else:
                cell.set_facecolor(colours[i - 1])
    tab.set_title("failed series and why (red); skipped files by reason (grey)" if cells
                  else "no failures, nothing skipped", fontsize=9, loc="left")
    if not len(fails):
        tab.text(1.0, 1.02, "no failures", transform=tab.transAxes, ha="right", va="bottom", fontsize=9,
                 color=_STATUS_COLOURS["ok"], fontweight="bold")
    fig.suptitle(f"Batch {res.out_dir.name}: {len(s)} series, {len(res.lesions)} lesions", fontsize=10)
    return fig


_DEFAULT_FEATURES = ("lobulation", "septation", "linearity", "rim_smoothness", "max_diameter_mm", "mean_hu",
                     "bone_distance_mm", "fluid_level_angle_deg")


def _groups(df, by: str) -> tuple[list[str], object, str]:
    """Group names (legend order), the group of each row, and words for the legend title."""
    import pandas as pd

    if by in df.columns and df[by].notna().any():
        g = df[by].fillna("indeterminate" if by == "pattern" else "(empty)").astype(str)
        names = list(dict.fromkeys(p for p in PATTERN_ORDER if p in set(g))) if by == "pattern" else []
        names += sorted(set(g) - set(names))
        return names, g, plain(by)
    return ["all lesions"], pd.Series("all lesions", index=df.index), f"{plain(by)} not available"


def _group_colour(name: str, i: int, by: str) -> str:
    if by == "pattern" and name in _PATTERN_COLOURS:
        return pattern_colour(name, "light")
    if name == "all lesions":
        return "#4060a0"
    return ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")[i % 8]


def feature_distributions(lesions_df, by: str = "pattern", features: tuple[str, ...] | None = None,
                          ncols: int = 4) -> Figure:
    """Each feature's values per group (pattern by default): a box per group with every lesion as
    a dot.

    Parameters
    ----------
    lesions_df : pandas.DataFrame
        lesions.csv / lesions.parquet as read by `load_results`.
    by : str
        Grouping column (``pattern``; ``kind``, ``compartment``...). When the column is absent the
        lesions form one group and the legend says "<by> not available".
    features : tuple of str, optional
        Columns to show (default: the shape descriptors, size, HU, bone distance and fluid-level
        angle). A feature the table lacks gets a panel saying "not available".
    ncols : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import pandas as pd

    df = lesions_df
    features = tuple(features or _DEFAULT_FEATURES)
    names, group, legend_title = _groups(df, by)
    nrows = max(1, math.ceil(len(features) / ncols))
    height = max(2.6, 0.32 * len(names) + 1.3)
    fig = Figure(figsize=(3.3 * ncols + 1.6, height * nrows + 1.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    ypos = {n: i for i, n in enumerate(names)}
    rng = np.random.default_rng(0)
    for ax, feat in zip(axes, features, strict=False):
        ax.set_title(column_label(feat, unit=False), fontsize=9)
        values = pd.to_numeric(df[feat], errors="coerce") if feat in df.columns else None
        if values is None or not values.notna().any():
            ax.text(0.5, 0.5, "not available" if values is None else "no values (not assessed)",
                    transform=ax.transAxes, ha="center", va="center", fontsize=8, color="#808080")
            ax.set_xticks([])
        else:
            data = [values[group == n].dropna().to_numpy() for n in names]
            pos = [ypos[n] for n, d in zip(names, data, strict=True) if len(d)]
            ax.boxplot([d for d in data if len(d)], positions=pos, orientation="horizontal", widths=0.6,
                       showfliers=False, medianprops={"color": "black"}, boxprops={"color": "#606060"},
                       whiskerprops={"color": "#606060"}, capprops={"color": "#606060"})
            for i, (n, d) in enumerate(zip(names, data, strict=True)):
                if len(d):
                    ax.scatter(d, ypos[n] + rng.uniform(-0.18, 0.18, len(d)), s=14, zorder=3,
                               color=_group_colour(n, i, by), edgecolor="black", linewidth=0.4)
            unit = column_label(feat)
            unit = unit[unit.find("(") + 1:-1] if "(" in unit else "0..1" if feat in DESCRIPTOR_COLUMNS[:4] else ""
            ax.set_xlabel("degrees" if unit == "°" else unit, fontsize=8)
            if feat in DESCRIPTOR_COLUMNS[:4]:
                ax.set_xlim(-0.04, 1.04)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", color="#e8e8e8", lw=0.6)
    for ax in axes[len(features):]:
        ax.set_axis_off()
    axes[0].set_yticks(range(len(names)), [plain(n) for n in names])
    axes[0].set_ylim(len(names) - 0.5, -0.5)
    counts = group.value_counts()
    handles = [Patch(facecolor=_group_colour(n, i, by), edgecolor="black", lw=0.4,
                     label=f"{plain(n)} ({int(counts.get(n, 0))})") for i, n in enumerate(names)]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False,
               title=f"colour = {legend_title} (lesions)", title_fontsize=8)
    fig.suptitle(f"Feature distributions by {plain(by)}: {len(df)} lesions", fontsize=10)
    return fig


def lobulation_linearity_scatter(lesions_df, annotate: bool = False) -> Figure:
    """Lobulation against linearity, one dot per lesion, coloured by pattern (marker = kind).

    Tumoral calcinosis sits at high lobulation and low linearity; vascular calcification and
    tendinitis at high linearity. When either column is absent the axes say which one is
    "not available".

    Parameters
    ----------
    lesions_df : pandas.DataFrame
        lesions.csv / lesions.parquet as read by `load_results`.
    annotate : bool
        Write each lesion's id beside its dot.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import pandas as pd

    df = lesions_df
    fig = Figure(figsize=(8.4, 5.6), layout="constrained")
    ax = fig.subplots(1, 1)
    ax.set_xlabel("lobulation (0..1, larger = more lobulated)", fontsize=9)
    ax.set_ylabel("linearity (0..1, larger = more linear)", fontsize=9)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(color="#e8e8e8", lw=0.6)
    fig.suptitle(f"Lobulation vs linearity: {len(df)} lesions", fontsize=10)
    missing = [c for c in ("lobulation", "linearity") if c not in df.columns]
    if missing:
        ax.text(0.5, 0.5, f"{' and '.join(missing)} not available in this output",
                transform=ax.transAxes, ha="center", va="center", fontsize=10, color="#808080")
        return fig
    x = pd.to_numeric(df["lobulation"], errors="coerce")
    y = pd.to_numeric(df["linearity"], errors="coerce")
    names, group, legend_title = _groups(df, "pattern")
    kinds = df["kind"].fillna("") if "kind" in df.columns else pd.Series("", index=df.index)
    markers = {"ct": "o", "radiograph": "^"}
    handles = []
    for i, n in enumerate(names):
        sel = (group == n) & x.notna() & y.notna()
        for kind in sorted(set(kinds[sel])):
            s2 = sel & (kinds == kind)
            ax.scatter(x[s2], y[s2], s=36, marker=markers.get(kind, "s"), color=_group_colour(n, i, "pattern"),
                       edgecolor="black", linewidth=0.5, zorder=3)
        handles.append(Line2D([], [], ls="", marker="o", markersize=7, markeredgecolor="black", markeredgewidth=0.5,
                              color=_group_colour(n, i, "pattern"), label=f"{plain(n)} ({int(sel.sum())})"))
        if not sel.any():
            handles.pop()
    for kind in sorted(set(kinds)):
        if kind:
            handles.append(Line2D([], [], ls="", marker=markers.get(kind, "s"), color="white", markeredgecolor="black",
                                  label=f"marker: {kind}"))
    n_missing = int((x.isna() | y.isna()).sum())
    if n_missing:
        fig.suptitle(f"Lobulation vs linearity: {len(df) - n_missing} lesions "
                     f"({n_missing} without both values not shown)", fontsize=10)
    if annotate and "lesion_id" in df.columns:
        for xi, yi, lid in zip(x, y, df["lesion_id"], strict=True):
            if pd.notna(xi) and pd.notna(yi):
                ax.annotate(str(lid), (xi, yi), xytext=(3, 3), textcoords="offset points", fontsize=6)
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False,
              title=f"colour = {legend_title}", title_fontsize=8)
    return fig
