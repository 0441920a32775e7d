"""docs/features.md, generated from the column registry and the feature docstrings.

Run ``python -m calcimg.report._docs docs/features.md`` after changing a column or a docstring;
a test fails while the file is out of date.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from calcimg.features import (
    context,
    fluid_level,
    intensity,
    linearity,
    lobulation,
    mass,
    morphology,
    multiplicity,
    rim,
    septation,
    size,
    study,
)
from calcimg.report._columns import LESION_COLUMNS, SERIES_COLUMNS

_FAMILIES = [
    ("Identity, position and size", size.size_features),
    ("Intensity and rim-to-core profile (CT)", intensity.intensity_features),
    ("Context: bone, skin, compartment, ossification", context.context_features),
    ("Soft-tissue mass around the calcification (CT)", mass.mass_features),
    ("IBSI morphology (CT)", morphology.morphology_3d),
    ("2D shape (radiographs)", morphology.morphology_2d),
    ("Lobulation (CT 3D, radiographs 2D)", lobulation.lobulation_features),
    ("Septation (CT 3D, radiographs 2D)", septation.septation_features),
    ("Linearity (CT 3D, radiographs 2D)", linearity.linearity_features),
    ("Rim smoothness and rim calcification (CT 3D, radiographs 2D)", rim.rim_features),
    ("Fluid-calcium levels (CT 3D, radiographs 2D)", fluid_level.fluid_level_features),
    ("Principal axis", multiplicity.principal_axis),
    ("Multiplicity and distribution in the series", multiplicity.multiplicity_features),
    ("Study level (series.csv)", study.study_features),
]


def _table(columns) -> list[str]:
    lines = ["| column | unit | IBSI code | meaning |", "|---|---|---|---|"]
    for c in columns:
        desc = c.description.replace("|", "\\|")
        lines.append(f"| `{c.name}` | {c.unit or '-'} | {c.ibsi_code or '-'} | {desc} |")
    return lines


def features_markdown() -> str:
    """The text of docs/features.md."""
    out = [
        "# calcimg output columns",
        "",
        "Generated from the code (`python -m calcimg.report._docs docs/features.md`); do not edit by hand.",
        "Units are in the column names; `data_dictionary.csv` in every output folder holds the same list.",
        "Details of the IBSI morphology family, with its caveats, are in `features_morphology.md`.",
        "",
        "## lesions.csv",
        "",
        *_table(LESION_COLUMNS),
        "",
        "## series.csv",
        "",
        *_table(SERIES_COLUMNS),
        "",
        "## Formulas, ranges and the criteria they serve",
        "",
    ]
    for title, fn in _FAMILIES:
        doc = inspect.cleandoc(fn.__doc__ or "")
        out += [f"### {title} (`{fn.__module__}.{fn.__name__}`)", "", "```text", doc, "```", ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/features.md")
    target.write_text(features_markdown(), encoding="utf-8")
    print(f"wrote {target}")
