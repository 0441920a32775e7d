"""Analytic lesions for the descriptor tests: CT images in HU sampled on a grid, masks = HU >= 130."""

from __future__ import annotations

import numpy as np

from calcimg.lesion import Lesion

CALCIUM_HU, WATER_HU, SOFT_HU = 700.0, 10.0, 40.0


def grid(half_extent_mm, spacing, rotation=None):
    """Physical coordinates (3, ...) of a grid covering +-half_extent_mm per axis, optionally
    rotated (the object rotates by `rotation`, i.e. we sample it at R^T x)."""
    spacing = np.asarray(spacing, float)
    half = np.broadcast_to(np.asarray(half_extent_mm, float), spacing.shape)
    axes = [np.arange(-h, h + s / 2, s) for h, s in zip(half, spacing, strict=True)]
    axes = [a - a.mean() for a in axes]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"))
    if rotation is not None:
        pts = np.tensordot(np.asarray(rotation).T, pts, axes=1)
    return pts


def lesion_from(image, spacing, kind="ct"):
    mask = image >= 130.0
    nd = image.ndim
    return Lesion(1, image.astype(np.float32), mask, (0,) * nd, tuple(float(s) for s in spacing),
                  np.zeros(nd), np.eye(nd), kind)


def sphere(radius=8.0, spacing=(0.8, 0.8, 0.8), rotation=None):
    x = grid(radius + 4, spacing, rotation)
    r = np.sqrt((x ** 2).sum(axis=0))
    return lesion_from(np.where(r <= radius, CALCIUM_HU, SOFT_HU), spacing)


def six_spheres(radius=5.0, offset=6.0, spacing=(0.8, 0.8, 0.8), rotation=None):
    """Six balls of `radius` centred at +-`offset` on each axis (an octahedral cluster)."""
    x = grid(offset + radius + 4, spacing, rotation)
    inside = np.zeros(x.shape[1:], bool)
    for axis in range(3):
        for sign in (-1, 1):
            c = np.zeros(3)
            c[axis] = sign * offset
            inside |= ((x - c[:, None, None, None]) ** 2).sum(axis=0) <= radius ** 2
    return lesion_from(np.where(inside, CALCIUM_HU, SOFT_HU), spacing)


def cylinder(length=40.0, diameter=3.0, spacing=(0.5, 0.5, 0.5), rotation=None):
    x = grid((length / 2 + 3, diameter / 2 + 3, diameter / 2 + 3) if rotation is None
             else length / 2 + 3, spacing, rotation)
    inside = (np.abs(x[0]) <= length / 2) & (x[1] ** 2 + x[2] ** 2 <= (diameter / 2) ** 2)
    return lesion_from(np.where(inside, CALCIUM_HU, SOFT_HU), spacing)


def shell(radius=9.0, wall=1.5, spacing=(0.8, 0.8, 0.8), rotation=None, septa=()):
    """A calcified spherical shell with a water core, optionally split by calcified plates
    x_0 = c for c in `septa` (thickness `wall`)."""
    x = grid(radius + 4, spacing, rotation)
    r = np.sqrt((x ** 2).sum(axis=0))
    image = np.where(r <= radius, WATER_HU, SOFT_HU)
    calc = (r <= radius) & (r > radius - wall)
    for c in septa:
        calc |= (r <= radius) & (np.abs(x[0] - c) <= wall / 2)
    return lesion_from(np.where(calc, CALCIUM_HU, image), spacing)


def disc(radius=8.0, spacing=(0.2, 0.2)):
    x = grid(radius + 3, spacing)
    r = np.sqrt((x ** 2).sum(axis=0))
    return lesion_from(np.where(r <= radius, 1.0 + CALCIUM_HU, 1.0), spacing, "radiograph")


def flower(n=6, radius=5.0, ring=9.0, spacing=(0.8, 0.8, 0.8), rotation=None):
    """`n` overlapping balls of `radius` centred on a ring of radius `ring` (neighbours overlap)."""
    x = grid(ring + radius + 4, spacing, rotation)
    inside = np.zeros(x.shape[1:], bool)
    for k in range(n):
        a = 2 * np.pi * k / n
        c = np.array([ring * np.cos(a), ring * np.sin(a), 0.0])
        inside |= ((x - c[:, None, None, None]) ** 2).sum(axis=0) <= radius ** 2
    return lesion_from(np.where(inside, CALCIUM_HU, SOFT_HU), spacing)
