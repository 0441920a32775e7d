"""One test per rule family of the evaluator: membership ramps, grade x direction weights,
not-assessed handling, the indeterminate rules, evidence in words, the fluid-level and location
caveats, and the study-level metabolic-calcinosis flag."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from calcimg.criteria import PATTERNS, evaluate, load_table, membership, study_context
from calcimg.criteria._evaluate import apply

HEAD = """
version = "t"
[scoring]
direction_weights = { "++" = 2.0, "+" = 1.0, "-" = -1.0, "--" = -2.0 }
grade_weights = { A = 1.0, B = 0.8, C = 0.6, D = 0.4 }
fires_at = 0.5
min_evidence = 0.0
coverage_exponent = 1.0
min_score = 0.3
margin = 0.1
min_coverage = 0.0
[sources]
S = "a source"
"""


def _mini(tmp_path: Path, criteria: str) -> object:
    """A table whose every pattern has one filler criterion on `filler` (never in the rows)."""
    text = HEAD + "".join(f'[patterns.{p}]\nlabel = "{p}"\n' for p in PATTERNS)
    for p in PATTERNS:
        text += (f'[[criteria]]\nid = "fill_{p}"\npattern = "{p}"\nfeature = "filler"\ntest = "above"\n'
                 'threshold = 0.0\nwidth = 1.0\ndirection = "+"\ngrade = "D"\nsources = ["S"]\n'
                 'says = "filler"\nmodality = "radiograph"\n')
    path = tmp_path / "t.toml"
    path.write_text(text + criteria, encoding="utf-8")
    return load_table(path, known={"filler", "x", "y", "z", "kind"})


def _crit(cid, pattern, feature, test, direction="+", grade="A", extra=""):
    thr = {"above": "threshold = 10.0\nwidth = 1.0\n", "below": "threshold = 10.0\nwidth = 1.0\n",
           "between": "threshold = [5.0, 15.0]\nwidth = 1.0\n", "in": 'values = ["yes", 1]\n'}[test]
    return (f'[[criteria]]\nid = "{cid}"\npattern = "{pattern}"\nfeature = "{feature}"\ntest = "{test}"\n'
            f'{thr}direction = "{direction}"\ngrade = "{grade}"\nsources = ["S"]\n'
            f'says = "{cid} ({{value:.1f}})"\n{extra}')


def test_membership_ramps(tmp_path):
    t = _mini(tmp_path, _crit("a", "phlebolith", "x", "above") + _crit("b", "phlebolith", "x", "below")
              + _crit("c", "phlebolith", "x", "between") + _crit("d", "phlebolith", "y", "in"))
    a, b, c, d = (next(k for k in t.criteria if k.id == i) for i in "abcd")
    assert membership(a, 10.0) == pytest.approx(0.5)
    assert membership(a, 14.0) == pytest.approx(1 / (1 + math.exp(-4)))
    assert membership(a, 12.0) + membership(b, 12.0) == pytest.approx(1.0)  # mirror images
    assert membership(c, 10.0) > 0.98 and membership(c, 5.0) < 0.51 and membership(c, 20.0) < 0.01
    assert membership(d, "yes") == 1.0 and membership(d, 1) == 1.0 and membership(d, "no") == 0.0
    assert membership(d, 0) == 0.0


def test_grade_and_direction_weight_the_score(tmp_path):
    rows = {"kind": "ct", "x": 20.0}
    strong = _mini(tmp_path, _crit("s", "phlebolith", "x", "above", "++", "A")
                   + _crit("w", "phlebolith", "z", "above", "+", "D"))
    # z not assessed: support = 2 * m / 2 ~ 1; coverage = 2 / 2.4
    out = evaluate(rows, strong)
    assert out["score_phlebolith"] == pytest.approx(2 / 2.4, abs=2e-3)
    against = _mini(tmp_path, _crit("s", "phlebolith", "x", "above", "+", "A")
                    + _crit("n", "phlebolith", "x", "above", "-", "C"))
    out = evaluate(rows, against)  # (1 - 0.6) / 1, coverage 1
    assert out["score_phlebolith"] == pytest.approx(0.4, abs=2e-3)
    assert "against: n (20.0)" in out["evidence"]


def test_not_assessed_lowers_confidence_but_never_counts_as_absent(tmp_path):
    t = _mini(tmp_path, _crit("p", "hydatid_cyst", "x", "above", "+", "A")
              + _crit("q", "hydatid_cyst", "y", "in", "+", "A")
              + _crit("r", "hydatid_cyst", "z", "above", "--", "A"))
    full = evaluate({"kind": "ct", "x": 20.0, "y": "yes", "z": 0.0}, t)
    absent = evaluate({"kind": "ct", "x": 20.0, "y": "no", "z": 0.0}, t)
    missing = evaluate({"kind": "ct", "x": 20.0, "y": float("nan"), "z": 0.0}, t)
    assert full["score_hydatid_cyst"] > missing["score_hydatid_cyst"] > absent["score_hydatid_cyst"]
    assert missing["criteria_not_assessed"] == ["y"]
    # a missing argues-against criterion is not evidence either way: no penalty, lower coverage
    no_z = evaluate({"kind": "ct", "x": 20.0, "y": "yes"}, t)
    assert no_z["score_hydatid_cyst"] < full["score_hydatid_cyst"]
    assert no_z["pattern"] == "hydatid_cyst"


def test_indeterminate_by_margin_min_score_and_key(tmp_path):
    t = _mini(tmp_path, _crit("a", "phlebolith", "x", "above") + _crit("b", "parasitic", "x", "above")
              + _crit("k", "lymph_node", "x", "above") + _crit("k2", "lymph_node", "y", "in", extra="key = true\n"))
    out = evaluate({"kind": "ct", "x": 20.0}, t)
    assert out["pattern"] == "indeterminate"  # three patterns tie
    assert "does not lead" in out["evidence"]
    t = _mini(tmp_path, _crit("k", "lymph_node", "x", "above", "++") + _crit("k2", "lymph_node", "y", "in", extra="key = true\n"))
    out = evaluate({"kind": "ct", "x": 20.0}, t)
    assert out["pattern"] == "indeterminate" and "key feature not assessable (y)" in out["evidence"]
    assert evaluate({"kind": "ct", "x": 20.0, "y": "yes"}, t)["pattern"] == "lymph_node"
    out = evaluate({"kind": "ct", "x": 0.0, "y": "no"}, t)
    assert out["pattern"] == "indeterminate" and "reaches" in out["evidence"]


def test_modality_selects_criteria(tmp_path):
    t = _mini(tmp_path, _crit("c", "vascular", "x", "above", extra='modality = "ct"\n'))
    assert evaluate({"kind": "ct", "x": 20.0}, t)["pattern"] == "vascular"
    # on a radiograph the CT criterion does not apply (n/a, not "not assessed")
    out = evaluate({"kind": "radiograph", "x": 20.0}, t)
    assert out["score_vascular"] == 0.0 and "x" not in out["criteria_not_assessed"]


def test_evidence_in_words_and_not_assessed_appended():
    t = load_table()
    row = {"kind": "ct", "max_diameter_mm": 24.0, "lobulation": 0.8, "fluid_level": 1,
           "fluid_level_count": 2, "bone_distance_mm": 6.2, "not_assessed": "septation: too small"}
    apply(row, t)
    assert row["pattern"] == "tumoral_calcinosis"
    assert "lobulated (0.80)" in row["evidence"] and "fluid level (2 loculi)" in row["evidence"]
    assert "separate from bone (6.2 mm)" in row["evidence"]
    assert row["not_assessed"].startswith("septation: too small; criteria:")
    assert all(0.0 <= row[f"score_{p}"] <= 1.0 for p in PATTERNS)


def test_fluid_level_is_strong_but_not_pathognomonic_and_neck_is_not_an_exclusion():
    t = load_table()
    base = {"kind": "ct", "max_diameter_mm": 24.0, "lobulation": 0.8, "bone_distance_mm": 5.0,
            "ibsi_volume_density_convex_hull": 0.7, "linearity": 0.1, "ossified": 0, "skin_depth_mm": 20.0,
            "lobe_count": 4, "septation": 0.6}
    with_level = evaluate({**base, "fluid_level": 1}, t)
    without = evaluate({**base, "fluid_level": 0}, t)
    unknown = evaluate(base, t)
    assert with_level["score_tumoral_calcinosis"] > without["score_tumoral_calcinosis"]
    # absence of a level is not evidence against TC: same support, only coverage differs
    assert without["pattern"] == unknown["pattern"] == "tumoral_calcinosis"
    assert without["score_tumoral_calcinosis"] > unknown["score_tumoral_calcinosis"]  # coverage
    # a level also supports dermatomyositis milk of calcium and calcific myonecrosis
    for p in ("calcinosis_cutis", "dystrophic"):
        assert evaluate({"kind": "ct", "fluid_level": 1}, t)[f"score_{p}"] > 0
    # a nodal-station location weakens TC, it does not exclude it
    neck = evaluate({**base, "fluid_level": 1, "anatomic_region": "neck"}, t)
    assert neck["pattern"] == "tumoral_calcinosis"
    assert 0 < neck["score_tumoral_calcinosis"] < with_level["score_tumoral_calcinosis"]


def test_radiograph_zonal_shell_reads_as_myositis_and_a_long_band_at_bone_not_as_tendinitis():
    """mo_zonal_2d: a projected shell whose lucent centre is a third of its outline (the demo
    phantom's lateral view of a myositis) is myositis ossificans; without the centre (the shell
    half hidden by bone) the zonal sign is absent, which says nothing. ct_not_large: a 26 mm band
    at the bone is not called tendinitis, a 6 mm deposit there still is."""
    t = load_table()
    shell = {"kind": "radiograph", "max_diameter_mm": 28.0, "bone_distance_mm": 1.8, "linearity": 0.5,
             "tubularity": 0.56, "central_lucency": 0.56, "concavity_count": 2, "fluid_level": 0,
             "calcified_thickness_mm": 2.8, "shape2d_circularity": 0.58}
    zonal = evaluate({**shell, "lucent_centre_fraction": 0.33}, t)
    solid = evaluate({**shell, "lucent_centre_fraction": 0.0}, t)
    assert zonal["pattern"] == "myositis_ossificans" and "zonal: dense shell" in zonal["evidence"]
    # absence neutral: a measured 0 never scores below not measuring it (coverage only helps)
    unknown = evaluate(shell, t)["score_myositis_ossificans"]
    assert unknown <= solid["score_myositis_ossificans"] < zonal["score_myositis_ossificans"]
    assert solid["pattern"] != "myositis_ossificans"
    # the demo phantom's AP half-ring, as measured
    band = {"kind": "radiograph", "bone_distance_mm": 0.0, "calcified_thickness_mm": 4.0,
            "central_lucency": 0.18, "concavity_count": 0, "fluid_level": 0, "linearity": 0.5,
            "lobe_count": 1, "lobulation": 0.87, "lucent_centre_fraction": 0.01, "rim_smoothness": 0.0,
            "septation": 0.0, "shape2d_circularity": 0.32, "shape2d_solidity": 0.74, "tubularity": 0.73}
    long_band = evaluate({**band, "max_diameter_mm": 26.6}, t)
    assert long_band["pattern"] != "calcific_tendinitis"
    short = evaluate({**band, "max_diameter_mm": 12.0}, t)
    assert long_band["score_calcific_tendinitis"] < short["score_calcific_tendinitis"] - 0.1
    deposit = {**band, "max_diameter_mm": 6.0, "linearity": 0.0, "tubularity": 0.3, "lobulation": 0.1,
               "shape2d_circularity": 0.8, "shape2d_solidity": 0.95, "rim_smoothness": 0.8}
    assert evaluate(deposit, t)["pattern"] == "calcific_tendinitis"


def test_tram_track_lumen_soft_tissue_mass_and_grain_shape_rules():
    """va_lumen_2d / va_solid_band_2d: a band 25 mm long at the bone is vascular only with the
    tram-track's lucent lumen and thin walls; solid and 3 mm thick (the demo phantom's myositis
    half-shell beside the femur, as measured) it is not. tm_soft_mass: a dense-centred clump in a
    3 cm^3 non-calcified mass reads as tumour matrix, and a measured 'no mass' scores no lower
    than an unmeasured one (absence-neutral). pa_oval_2d / ph_not_elongated_2d: a 5.5 x 2.6 mm
    grain (axis ratio 0.47, yet circularity 0.79) is parasitic, the same outline round is not."""
    t = load_table()
    band = {"kind": "radiograph", "max_diameter_mm": 25.0, "bone_distance_mm": 0.0, "linearity": 0.85,
            "tubularity": 0.73, "shape2d_circularity": 0.26, "concavity_count": 0, "fluid_level": 0,
            "lucent_centre_fraction": 0.02, "axis_ratio": 0.15}
    vessel = evaluate({**band, "central_lucency": 0.5, "calcified_thickness_mm": 1.2}, t)
    solid = evaluate({**band, "central_lucency": 0.1, "calcified_thickness_mm": 3.0}, t)
    assert vessel["pattern"] == "vascular" and "tram-track: a lucent lumen" in vessel["evidence"]
    assert solid["pattern"] != "vascular"
    assert solid["score_vascular"] < vessel["score_vascular"] - 0.3
    clump = {"kind": "ct", "max_diameter_mm": 10.0, "volume_mm3": 260.0, "mean_hu": 330.0,
             "core_mean_hu": 440.0, "p90_hu": 435.0, "rim_core_contrast": -0.23, "compartment": "deep",
             "ibsi_volume_density_convex_hull": 0.89, "rim_smoothness": 0.49, "ibsi_elongation": 0.72,
             "lobulation": 0.0, "linearity": 0.0, "septation": 0.0, "fluid_level": 0,
             "shell_muscle_fraction": 0.78, "bone_distance_mm": 7.7, "skin_depth_mm": 30.0}
    massed = evaluate({**clump, "soft_mass_volume_mm3": 3000.0, "soft_mass_fraction": 0.8}, t)
    bare = evaluate({**clump, "soft_mass_volume_mm3": 0.0, "soft_mass_fraction": 0.0}, t)
    unknown = evaluate(clump, t)
    assert massed["pattern"] == "tumor_matrix" and "non-calcified soft-tissue mass" in massed["evidence"]
    assert massed["score_tumor_matrix"] > bare["score_tumor_matrix"] + 0.1
    assert bare["score_tumor_matrix"] >= unknown["score_tumor_matrix"]
    grain = {"kind": "radiograph", "max_diameter_mm": 5.5, "axis_ratio": 0.47, "shape2d_circularity": 0.79,
             "central_lucency": 0.8, "rim_smoothness": 0.95, "aligned_lesion_count": 3,
             "bone_distance_mm": 30.9, "lobulation": 0.0, "concavity_count": 0, "linearity": 0.0,
             "tubularity": 0.7, "calcified_thickness_mm": 2.55, "fluid_level": 0,
             "lucent_centre_fraction": 0.0, "shape2d_solidity": 0.99, "septation": 0.0, "lobe_count": 1}
    oval = evaluate(grain, t)
    assert oval["pattern"] == "parasitic" and "axis ratio 0.47" in oval["evidence"]
    assert oval["score_parasitic"] > oval["score_phlebolith"] + 0.1
    round_ = evaluate({**grain, "axis_ratio": 0.95, "shape2d_circularity": 0.95, "aligned_lesion_count": 0}, t)
    assert round_["pattern"] == "phlebolith"


def test_study_context_flags_metabolic_calcinosis():
    t = load_table()
    tc = {"lesion_id": 1, "pattern": "tumoral_calcinosis"}
    vasc = {"lesion_id": 2, "pattern": "vascular"}
    out = study_context([tc, vasc], {"demineralised": 0, "trabecular_bone_hu": 200.0}, t)
    assert out["metabolic_calcinosis_consistent"] == 1 and out["n_vascular_calcifications"] == 1
    assert "renal-failure" in out["metabolic_calcinosis_evidence"]
    out = study_context([tc], {"demineralised": 1, "trabecular_bone_hu": 95.0,
                               "demineralised_threshold_hu": 120.0}, t)
    assert out["metabolic_calcinosis_consistent"] == 1 and "95 HU < 120 HU" in out["metabolic_calcinosis_evidence"]
    out = study_context([tc], {"demineralised": 0}, t)
    assert out["metabolic_calcinosis_consistent"] == 0
    out = study_context([tc], {"demineralised": float("nan")}, t)  # radiograph: bone density unknown
    assert math.isnan(out["metabolic_calcinosis_consistent"])
    out = study_context([vasc], {"demineralised": 1}, t)
    assert math.isnan(out["metabolic_calcinosis_consistent"]) and out["n_vascular_calcifications"] == 1
