"""central_lucency (calcimg.features.rim) on analytic projections: a solid ball projects densest
in its middle, a shell and a tube leave the middle darker."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calcimg.features import rim_features
from calcimg.lesion import Lesion


def _chord(r2, radius):
    return 2.0 * np.sqrt(np.clip(radius * radius - r2, 0.0, None))


def _projection(thickness, spacing=0.1, half=9.0, seed=0, noise=0.5):
    """A radiograph lesion: intensity = path length (mm) through the object times 20, plus noise.
    `thickness` maps squared in-plane radius (mm^2) to path length (mm)."""
    ax = np.arange(-half, half + spacing / 2, spacing)
    y, x = np.meshgrid(ax, ax, indexing="ij")
    img = 100.0 + 20.0 * thickness(y, x) + np.random.default_rng(seed).normal(0.0, noise, y.shape)
    mask = img > 100.0 + 20.0 * 0.5  # the calcium threshold: half a millimetre of path
    return Lesion(1, img.astype(np.float32), mask, (0, 0), (spacing, spacing), np.zeros(2), np.eye(2),
                  "radiograph")


def test_solid_ball_has_no_central_lucency():
    les = _projection(lambda y, x: _chord(x * x + y * y, 5.0))
    assert rim_features(les)["central_lucency"] < 0.12


def test_shell_and_tube_have_a_lucent_centre():
    shell = _projection(lambda y, x: _chord(x * x + y * y, 5.0) - _chord(x * x + y * y, 3.8))
    value = rim_features(shell)["central_lucency"]
    # centre path 2 x 1.2 mm; the densest 5 % sit near the inner tangent, path ~2 sqrt(5^2 - 3.8^2)
    expected = 1.0 - 2.4 / (2.0 * math.sqrt(25.0 - 3.8 ** 2))
    assert value == pytest.approx(expected, abs=0.12)
    tube = _projection(lambda y, x: np.where(np.abs(y) <= 8.0, _chord(x * x, 3.0) - _chord(x * x, 2.2), 0.0))
    assert rim_features(tube)["central_lucency"] > 0.3


def test_central_lucency_is_empty_on_ct():
    hu = np.full((20, 20, 20), 40.0, np.float32)
    z, y, x = np.mgrid[:20, :20, :20] - 9.5
    hu[x * x + y * y + z * z <= 49] = 700.0
    les = Lesion(1, hu, hu >= 130, (0, 0, 0), (0.8, 0.8, 0.8), np.zeros(3), np.eye(3), "ct")
    assert math.isnan(rim_features(les)["central_lucency"])
