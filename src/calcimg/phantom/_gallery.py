"""Render a contact sheet of phantom studies (axial and coronal crops per pattern, radiographs).

A side tool, not part of the import path of `calcimg.phantom`: it needs matplotlib, imported here
only when called. Usage::

    python -m calcimg.phantom._gallery STUDY_ROOT OUT.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pydicom


def _read_ct(folder: Path):
    ds = [pydicom.dcmread(p) for p in folder.iterdir() if p.name != "truth.json"]
    iop = np.array(ds[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    ds.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, float), normal)))
    return np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in ds])


def _index(series: dict, lps) -> np.ndarray:
    aff = np.array(series["direction"]) * np.array(series["spacing_mm"])[None, :]
    return np.linalg.solve(aff, np.asarray(lps) - np.array(series["origin_lps_mm"]))


def _crop(img, c0, c1, half0, half1):
    c0, c1 = int(np.rint(c0)), int(np.rint(c1))
    out = np.full((2 * half0 + 1, 2 * half1 + 1), -1000.0)
    a0, a1 = max(c0 - half0, 0), min(c0 + half0 + 1, img.shape[0])
    b0, b1 = max(c1 - half1, 0), min(c1 + half1 + 1, img.shape[1])
    out[a0 - c0 + half0:a1 - c0 + half0, b0 - c1 + half1:b1 - c1 + half1] = img[a0:a1, b0:b1]
    return out


def render_gallery(root, out_png, half_mm: float = 22.0, dpi: int = 90) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(root)
    studies = sorted(p for p in root.iterdir() if (p / "truth.json").exists())
    panels, seen, first_ct = [], set(), None
    for folder in studies:
        truth = json.loads((folder / "truth.json").read_text())
        s = truth["series"][0]
        if s["kind"] != "ct":
            continue
        vol = _read_ct(folder)
        if first_ct is None:
            first_ct = (folder.name, vol[vol.shape[0] // 2], s)
        for les in s["lesions"]:
            key = (les["pattern"], les.get("variant"))
            if key in seen:
                continue
            seen.add(key)
            k, i, j = _index(s, les["centroid_lps_mm"])
            sp = s["spacing_mm"]
            h1, h2 = int(half_mm / sp[1]), int(half_mm / sp[2])
            ax = _crop(vol[int(np.rint(k))], i, j, h1, h2)
            co = _crop(vol[:, int(np.rint(i)), :], k, j, int(half_mm / sp[0]), h2)
            name = les["pattern"] + ("" if les.get("variant") in (None, "plaque") else f" ({les['variant']})")
            panels.append((name, folder.name, ax, co, sp))
    dx = []
    for folder in studies:
        truth = json.loads((folder / "truth.json").read_text())
        if truth["series"][0]["kind"] != "radiograph":
            continue
        for p in folder.iterdir():
            if p.name == "truth.json":
                continue
            d = pydicom.dcmread(p)
            img = d.pixel_array.astype(float)
            if d.PhotometricInterpretation == "MONOCHROME1":
                img = img.max() - img
            dx.append((f"DX {d.SeriesDescription} {d.PhotometricInterpretation[-1]}", img[::2, ::2]))
        break
    ncol = 8
    n = 2 * len(panels) + len(dx) + (1 if first_ct else 0)
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * 1.45, nrow * 1.6))
    axes = axes.ravel()
    kw = {"cmap": "gray", "vmin": -160, "vmax": 900, "interpolation": "nearest"}
    q = 0
    if first_ct:
        name, sl, s = first_ct
        axes[q].imshow(sl, cmap="gray", vmin=-160, vmax=240)
        axes[q].set_title(f"{name}\nsoft-tissue window", fontsize=5)
        q += 1
    for name, study, ax, co, sp in panels:
        axes[q].imshow(ax, **kw)
        axes[q].set_title(f"{name}\n{study} acquired plane", fontsize=5)
        axes[q + 1].imshow(co, aspect=sp[0] / sp[2], **kw)
        axes[q + 1].set_title(f"{name}\nreformat (slice x col)", fontsize=5)
        q += 2
    for name, img in dx:
        axes[q].imshow(img, cmap="gray")
        axes[q].set_title(name, fontsize=5)
        q += 1
    for a in axes:
        a.set_axis_off()
    fig.tight_layout(pad=0.3)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi)
    plt.close(fig)
    return out_png


if __name__ == "__main__":  # pragma: no cover
    render_gallery(sys.argv[1], sys.argv[2])
