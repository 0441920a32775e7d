from pathlib import Path

from calcimg.criteria._docs import criteria_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "criteria.md"


def test_criteria_doc_is_up_to_date():
    assert DOC.exists() and DOC.read_text(encoding="utf-8") == criteria_markdown(), (
        "docs/criteria.md is out of date: run python -m calcimg.criteria._docs docs/criteria.md"
    )
