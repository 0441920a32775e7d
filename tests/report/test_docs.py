from pathlib import Path

from calcimg.report import LESION_COLUMNS, data_dictionary_rows
from calcimg.report._docs import features_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "features.md"


def test_features_doc_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == features_markdown(), (
        "docs/features.md is out of date: run python -m calcimg.report._docs docs/features.md"
    )


def test_every_lesion_column_has_a_unit_or_is_unitless_on_purpose_and_ibsi_codes_are_kept():
    names = [c.name for c in LESION_COLUMNS]
    assert len(names) == len(set(names))
    for c in LESION_COLUMNS:
        if c.name.endswith(("_mm", "_mm2", "_mm3", "_hu")):
            assert c.unit, c.name
    rows = {r["column"]: r for r in data_dictionary_rows() if r["file"] == "lesions.csv"}
    assert rows["ibsi_mesh_volume_mm3"]["ibsi_code"] == "RNU0"
    assert rows["volume_mm3"]["unit"] == "mm^3"
