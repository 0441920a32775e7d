"""The criteria table: validated on load, and data, not code (editing the TOML changes results)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from calcimg.criteria import PATTERNS, CriteriaTableError, evaluate, load_table
from calcimg.criteria._table import DEFAULT_PATH

TEXT = DEFAULT_PATH.read_text(encoding="utf-8")


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "criteria.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_packaged_table_covers_the_contract_vocabulary():
    t = load_table()
    assert set(c.pattern for c in t.criteria) == set(PATTERNS)
    assert {c.grade for c in t.criteria} <= {"A", "B", "C", "D"}
    assert all(c.sources for c in t.criteria)
    assert len(t.register) >= 5
    # the weak-evidence register is visible in the rule metadata
    fl = {c.pattern: c for c in t.criteria if c.feature == "fluid_level" and c.weight > 0}
    assert {"tumoral_calcinosis", "calcinosis_cutis", "dystrophic"} <= set(fl)
    assert "not pathognomonic" in fl["tumoral_calcinosis"].note.lower()
    neck = [c for c in t.criteria if c.pattern == "tumoral_calcinosis" and c.feature == "anatomic_region"]
    assert neck and neck[0].direction == "-"  # weak evidence, never "--"


def test_unknown_feature_is_an_error_naming_the_criterion(tmp_path):
    bad = TEXT.replace('feature = "lobulation"', 'feature = "lobulaton"', 1)
    with pytest.raises(CriteriaTableError, match=r"criterion 'tc_lobulated'.*'lobulaton'"):
        load_table(_write(tmp_path, bad))


@pytest.mark.parametrize(("old", "new", "what"), [
    ('grade = "A"', 'grade = "E"', "evidence grade 'E'"),
    ('direction = "++"', 'direction = "+++"', "direction '\\+\\+\\+'"),
    ("width = 0.08", "width = -1.0", "width must be > 0"),
    ('sources = ["SRC", "PO", "OC06", "ER12159", "HZ04"]', 'sources = ["NOPE"]', "NOPE"),
])
def test_bad_grade_direction_width_or_source_is_an_error(tmp_path, old, new, what):
    with pytest.raises(CriteriaTableError, match=f"tc_lobulated.*{what}"):
        load_table(_write(tmp_path, TEXT.replace(old, new, 1)))


def test_bad_weights_are_errors(tmp_path):
    bad = TEXT.replace("B = 0.8", "B = 1.5", 1)
    with pytest.raises(CriteriaTableError, match="grade_weights"):
        load_table(_write(tmp_path, bad))
    bad = TEXT.replace('"+" = 1.0', '"+" = -1.0', 1)
    with pytest.raises(CriteriaTableError, match="direction_weights"):
        load_table(_write(tmp_path, bad))


def test_missing_column_is_not_assessed_not_absent():
    t = load_table()
    row = {"kind": "ct", "skin_depth_mm": 1.5, "ibsi_flatness": 0.1}
    out = evaluate(row, t)
    assert "lobulation" in out["criteria_not_assessed"]
    assert out["pattern"] == "calcinosis_cutis"


def test_editing_the_toml_changes_the_result_without_code(tmp_path):
    row = {"kind": "ct", "skin_depth_mm": 1.5, "ibsi_flatness": 0.1, "compartment": "cutaneous"}
    assert evaluate(row, load_table())["pattern"] == "calcinosis_cutis"
    # make the cutaneous depth criterion demand 1 mm instead of 3 mm: the lesion no longer fits
    edited = re.sub(r'(id = "cc_in_skin"(?:\n[^\[]*?)threshold = )3\.0', r"\g<1>1.0", TEXT, count=1)
    assert edited != TEXT
    out = evaluate(row, load_table(_write(tmp_path, edited)))
    assert out["score_calcinosis_cutis"] < evaluate(row, load_table())["score_calcinosis_cutis"]
    # raising min_score makes the same lesion indeterminate
    strict = TEXT.replace("min_score = 0.35", "min_score = 0.99", 1)
    assert evaluate(row, load_table(_write(tmp_path, strict)))["pattern"] == "indeterminate"


def test_dystrophic_damaged_muscle_sign_needs_an_intramuscular_shell():
    """criteria-research 2.6 calls a lesion intramuscular at >= 70 % muscle in its shell; a deposit
    half in fat (a phlebolith, a node, a fascial-plane lesion) earns no damaged-muscle support."""
    from calcimg.criteria import membership

    crit = next(c for c in load_table().criteria if c.id == "dy_intramuscular")
    assert {"RP-CM", "EUR-CM"} <= set(crit.sources) and crit.grade == "B" and crit.weight > 1
    assert membership(crit, 0.55) < 0.2 and membership(crit, 0.85) > 0.8
