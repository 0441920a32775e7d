"""The criteria table on the project's phantoms: pattern accuracy per truth pattern, printed as a
confusion matrix (run with -s to see it).

Detected lesions are matched to truth lesions by centroid: CT in LPS mm within max(2 mm, a quarter
of the truth diameter); radiographs on the image plane (truth ``centroid_image_mm``, x along
columns, y along rows) with the same tolerance. Truth lesions that segmentation missed are counted
apart: they test segmentation, not the criteria.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from calcimg.criteria import INDETERMINATE, PATTERNS
from calcimg.io import load
from calcimg.phantom import generate
from calcimg.pipeline import measure_scan
from calcimg.settings import Settings
from phantom_truth import truth_series

#: Targets of issue 8, asserted where the data supports them (see the module docstring).
OVERALL, PER_PATTERN = 0.85, 0.70


def _match(truth: dict, rows: list[dict]) -> list[tuple[dict, dict | None]]:
    """One-to-one matching of truth lesions to detected rows that minimises the summed centroid
    distance (``linear_sum_assignment``) among pairs within tolerance. A greedy pass in truth order
    let a vessel superimposed on a tumoral-calcinosis mass in an AP view claim the mass's detection
    (4.7 mm from the vessel's centre, 1.4 mm from the mass's)."""
    keys = ("centroid_x_mm", "centroid_y_mm", "centroid_z_mm") if truth["kind"] == "ct" else (
        "centroid_x_mm", "centroid_y_mm")
    lesions = truth["lesions"]
    out: list[tuple[dict, dict | None]] = [(t, None) for t in lesions]
    if not lesions or not rows:
        return out
    c_true = np.array([t["centroid_lps_mm"] if truth["kind"] == "ct" else t["centroid_image_mm"]
                       for t in lesions], float)
    c_rows = np.array([[r[k] for k in keys] for r in rows], float)
    dist = np.linalg.norm(c_true[:, None, :] - c_rows[None, :, :], axis=-1)
    tol = np.maximum(2.0, np.array([t["max_diameter_mm"] for t in lesions], float) / 4)
    allowed = dist <= tol[:, None]
    cost = np.where(allowed, dist, 1e6)  # a pair out of tolerance is never chosen over no pair
    for i, j in zip(*linear_sum_assignment(cost), strict=True):
        if allowed[i, j]:
            out[i] = (lesions[i], rows[j])
    return out


def confusion(root) -> tuple[dict, Counter]:
    cm: dict[str, Counter] = defaultdict(Counter)
    missed: Counter = Counter()
    for series, t in truth_series(root):
        rows = measure_scan(load(series), Settings())
        for tl, row in _match(t, rows):
            if row is None:
                missed[tl["pattern"]] += 1
            else:
                cm[tl["pattern"]][row["pattern"]] += 1
    return cm, missed


def format_confusion(cm: dict, missed: Counter) -> str:
    cols = [*PATTERNS, INDETERMINATE]
    lines = ["truth \\ pattern".ljust(16) + "".join(c[:6].rjust(7) for c in cols) + "   right"]
    ok = tot = 0
    for p in PATTERNS:
        n = sum(cm[p].values())
        if not n:
            continue
        ok, tot = ok + cm[p][p], tot + n
        lines.append(p[:15].ljust(16) + "".join(str(cm[p][c] or ".").rjust(7) for c in cols)
                     + f"   {cm[p][p]}/{n}")
    lines.append(f"overall {ok}/{tot} = {ok / max(tot, 1):.2f}; missed by segmentation: {dict(missed)}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def test_preset(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    generate(root, preset="test", seed=0)
    return root


@pytest.fixture(scope="module")
def test_confusion(test_preset):
    cm, missed = confusion(test_preset)
    print("\n" + format_confusion(cm, missed))
    return cm


def _rates(cm):
    total = sum(sum(c.values()) for c in cm.values())
    return sum(cm[p][p] for p in cm) / total, {p: row[p] / sum(row.values()) for p, row in cm.items()}, total


@pytest.mark.slow
def test_patterns_on_the_test_phantoms_regression_floor(test_confusion):
    """A floor against regressions for the patterns with several lesions (tumoral calcinosis,
    the pattern calcimg exists for, among them), kept apart from the full target so that a
    regression there is reported on its own."""
    overall, per, total = _rates(test_confusion)
    assert total >= 25  # enough lesions matched for the rates to mean something
    assert overall >= OVERALL
    for p in ("tumoral_calcinosis", "parasitic", "phlebolith", "vascular", "calcinosis_cutis"):
        assert per[p] >= PER_PATTERN, (p, dict(test_confusion[p]))


@pytest.mark.slow
def test_patterns_on_the_test_phantoms_reach_the_issue_targets(test_confusion):
    """Issue 8: >= 85 % overall and >= 70 % for every pattern (measured 32/32 on the test preset
    once the multiplicity and cross-section columns were in; the demo preset, outside the suite:
    69/76 at the fourth session, myositis 2/5 and dystrophic 0/2 short; 67/78 at the fifth, when
    the radiograph halo correction found three more phleboliths, read as parasitic grains, and the
    AP myositis half-rings went from indeterminate to vascular; 70/78 at the sixth, once the
    tram-track's lucent lumen and the solid-band test took those half-rings back to myositis
    (5/5), with phlebolith 8/12 (the plate-straddling halves) and dystrophic 0/2 short; at the
    seventh, once the phantom's dystrophic deposits were drawn amorphous (they rendered as smooth
    balls) and the damaged-muscle sign was weighted as its source grades it, 71/78, with dystrophic
    8/8 over the five demo and test layouts; at the ninth, over the five layouts pooled, 253/277
    with every pattern at >= 0.71, once matching was one-to-one and the CT split kept a myositis
    shell's core out of the bone; see the closing notes of issue 8)."""
    overall, per, _ = _rates(test_confusion)
    assert overall >= OVERALL
    for p, rate in per.items():
        assert rate >= PER_PATTERN, (p, dict(test_confusion[p]))
