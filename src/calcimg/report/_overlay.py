"""Overlay images: the picture of a series with its lesions outlined, for a quick visual check.

CT: two panels, the axial slice with the most lesion voxels (window -250..1250 HU, soft tissue to
bone) and a maximum-intensity projection along the slices with every lesion's projected outline.
Radiographs: the image itself (1st..99.5th percentile window). Outlines are coloured by
``pattern`` when the lesion rows carry one, else by lesion id; a legend names the colours and each
lesion is numbered with its ``lesion_id``.

Rendering uses matplotlib's object API on an Agg canvas (no pyplot, no global state, no display),
a small figure and images reduced to at most ~600 pixels a side, so it costs a fraction of the
series' processing time. matplotlib is imported here only, lazily, when an overlay is drawn.
"""

from __future__ import annotations

import io

import numpy as np
from scipy import ndimage

CT_WINDOW_HU = (-250.0, 1250.0)
MAX_SIDE = 600
_ID_COLOURS = ("#ff3030", "#30c0ff", "#ffd000", "#40ff40", "#ff40ff", "#ff9020", "#a080ff", "#00ffc0",
               "#ffffff", "#c0ff00")
_PATTERN_COLOURS = {
    "tumoral_calcinosis": "#ff3030", "calcific_tendinitis": "#ffd000", "myositis_ossificans": "#ff9020",
    "calcinosis_cutis": "#ff40ff", "vascular": "#30c0ff", "phlebolith": "#00ffc0", "lymph_node": "#40ff40",
    "hydatid_cyst": "#a080ff", "parasitic": "#c0ff00", "tumor_matrix": "#ff8080", "dystrophic": "#ffffff",
    "indeterminate": "#b0b0b0",
}


def _outline(mask2d: np.ndarray) -> np.ndarray:
    return mask2d & ~ndimage.binary_erosion(mask2d)


def _reduce(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    step = max(1, int(np.ceil(max(image.shape) / MAX_SIDE)))
    if step == 1:
        return image, labels, 1
    # image: block mean (keeps faint detail); labels: any voxel of the block (keeps small lesions)
    h, w = (image.shape[0] // step) * step, (image.shape[1] // step) * step
    img = image[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3))
    lab = labels[:h, :w].reshape(h // step, step, w // step, step).max(axis=(1, 3))
    return img, lab, step


def _colour_of(lesion_rows: list[dict]) -> tuple[dict[int, str], list[tuple[str, str]]]:
    """Colour per lesion id and the legend entries (colour, text)."""
    by_pattern = any(r.get("pattern") for r in lesion_rows)
    colours: dict[int, str] = {}
    legend: dict[str, str] = {}
    for r in lesion_rows:
        lid = int(r["lesion_id"])
        if by_pattern:
            pattern = str(r.get("pattern") or "indeterminate")
            colours[lid] = _PATTERN_COLOURS.get(pattern, "#b0b0b0")
            legend.setdefault(pattern.replace("_", " "), colours[lid])
        else:
            colours[lid] = _ID_COLOURS[(lid - 1) % len(_ID_COLOURS)]
            if len(legend) < 10:
                legend[f"lesion {lid}"] = colours[lid]
            elif len(legend) == 10:
                legend[f"... ({len(lesion_rows)} lesions)"] = "#808080"
    return colours, [(c, t) for t, c in legend.items()]


def _paint(ax, image, labels2d, colours, window, aspect, title) -> None:
    from matplotlib.colors import to_rgba

    img, lab, _ = _reduce(image.astype(np.float32, copy=False), labels2d)
    ax.imshow(img, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect, interpolation="nearest")
    rgba = np.zeros((*lab.shape, 4), np.float32)
    for lid in np.unique(lab):
        if lid == 0:
            continue
        m = lab == lid
        rgba[_outline(m)] = to_rgba(colours.get(int(lid), "#ff3030"))
        ys, xs = np.nonzero(m)
        ax.text(xs.max() + 2, ys.min(), str(int(lid)), color=colours.get(int(lid), "#ff3030"), fontsize=7,
                va="bottom", ha="left")
    ax.imshow(rgba, aspect=aspect, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def _projected_labels(labels: np.ndarray, boxes, masks) -> np.ndarray:
    """A 2D label image: each lesion's footprint projected along the slices, larger lesions first
    so that smaller ones stay visible on top."""
    out = np.zeros(labels.shape[1:], labels.dtype)
    for i in range(len(boxes)):
        box = boxes[i]
        mask = masks[i] if masks is not None else labels[box] == i + 1
        foot = mask.any(axis=0)
        out[box[1:]][foot] = i + 1
    return out


def render_overlay(scan, seg, lesion_rows: list[dict], *, title: str = "") -> bytes:
    """The overlay PNG of one series, as bytes.

    Parameters
    ----------
    scan : calcimg.scan.Scan
    seg : calcimg.segment.Segmentation
        Its label image numbers the lesions as ``lesion_id`` does.
    lesion_rows : list of dict
        The series' lesions.csv rows (``lesion_id`` and, when present, ``pattern``).
    title : str
        A line above the picture (the series key; never header text that could identify anyone).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    colours, legend = _colour_of(lesion_rows)
    labels = seg.labels
    if scan.kind == "ct":
        fig = Figure(figsize=(8.0, 4.4), dpi=90)
        axes = fig.subplots(1, 2)
        counts = np.bincount(np.nonzero(labels)[0], minlength=labels.shape[0]) if seg.n_lesions else None
        k = int(np.argmax(counts)) if counts is not None and counts.max() > 0 else labels.shape[0] // 2
        sp = scan.spacing
        aspect = float(sp[1] / sp[2]) if np.all(np.isfinite(sp)) else 1.0
        _paint(axes[0], scan.pixels[k], labels[k], colours, CT_WINDOW_HU, aspect,
               f"slice {k + 1}/{labels.shape[0]} (most lesion voxels)")
        mip = scan.pixels.max(axis=0)
        _paint(axes[1], mip, _projected_labels(labels, seg.boxes, seg.masks), colours, CT_WINDOW_HU, aspect,
               "maximum-intensity projection, all lesions")
    else:
        fig = Figure(figsize=(5.0, 5.4), dpi=90)
        ax = fig.subplots(1, 1)
        lo, hi = np.percentile(scan.pixels[:: max(1, scan.pixels.shape[0] // 256), :: max(1, scan.pixels.shape[1] // 256)],
                               (1.0, 99.5))
        sp = scan.spacing
        aspect = float(sp[0] / sp[1]) if np.all(np.isfinite(sp)) else 1.0
        _paint(ax, scan.pixels, labels, colours, (float(lo), float(hi) if hi > lo else float(lo) + 1), aspect,
               "radiograph")
    handles = [Patch(facecolor="none", edgecolor=c, label=t) for c, t in legend]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)), fontsize=7, frameon=False)
    else:
        fig.text(0.5, 0.02, "no lesions found", ha="center", fontsize=8)
    fig.suptitle(title, fontsize=8)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    return buf.getvalue()
