"""docs/criteria.md, generated from the criteria table.

Run ``python -m calcimg.criteria._docs docs/criteria.md`` after editing ``criteria.toml``; a test
fails while the file is out of date.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from calcimg.criteria import _evaluate
from calcimg.criteria._table import PATTERNS, Criterion, Table, load_table


def _test_text(c: Criterion) -> str:
    if c.test == "in":
        return "in {" + ", ".join(str(v) for v in c.values) + "}"
    if c.test == "between":
        lo, hi = c.threshold
        return f"{lo:g}..{hi:g} (ramp {c.width:g})"
    sign = ">" if c.test == "above" else "<"
    return f"{sign} {c.threshold:g} (ramp {c.width:g})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def criteria_markdown(table: Table | None = None) -> str:
    """The text of docs/criteria.md for a table (default: the packaged one)."""
    t = table or load_table()
    sc = t.scoring
    grades = ", ".join(f"{k} {v:g}" for k, v in t.grade_weights.items())
    dirs = ", ".join(f"`{k}` {v:g}" for k, v in t.direction_weights.items())
    n_by_grade = {g: sum(c.grade == g for c in t.criteria) for g in t.grade_weights}
    out = [
        "# calcimg criteria table",
        "",
        "Generated from `src/calcimg/criteria/criteria.toml` (`python -m calcimg.criteria._docs "
        "docs/criteria.md`); do not edit by hand. Edit the TOML to change the medicine: no code "
        "change is needed.",
        "",
        f"Table version {t.version} (digest `{t.digest}`): {len(PATTERNS)} patterns, "
        f"{len(t.criteria)} criteria (grades: "
        + ", ".join(f"{g} {n}" for g, n in n_by_grade.items()) + "). Sources: the research note "
        "`shared/domain/criteria-research.md` section 3 and the two source texts in "
        "`shared/reference/`, paraphrased and cited by key.",
        "",
        "What the software claims: a lesion's *pattern* (\"findings consistent with ...\"), never a "
        "diagnosis. Primary tumoral calcinosis and the calcinosis of renal failure look the same; "
        "only context (series.csv `metabolic_calcinosis_consistent`) and the clinic separate them.",
        "",
        "## Scoring",
        "",
        "```text",
        inspect.cleandoc(_evaluate.__doc__ or ""),
        "```",
        "",
        f"Settings of this table: direction weights {dirs}; grade weights {grades}; "
        f"fires_at {sc['fires_at']:g}; min_evidence {sc['min_evidence']:g}; coverage_exponent "
        f"{sc['coverage_exponent']:g}; min_score {sc['min_score']:g}; margin {sc['margin']:g}; "
        f"min_coverage {sc['min_coverage']:g}.",
        "",
        "Study level (series.csv): a lesion with a pattern in "
        f"{t.study.get('calcinosis_patterns', ['tumoral_calcinosis'])} together with "
        "demineralised bone or at least "
        f"{t.study.get('min_vascular_calcifications', 1)} lesion(s) with a pattern in "
        f"{t.study.get('vascular_patterns', ['vascular'])} sets `metabolic_calcinosis_consistent` "
        "= 1: consistent with metabolic (e.g. renal-failure) calcinosis, which imaging cannot tell "
        "from hereditary tumoral calcinosis.",
        "",
        "## Weak-evidence register",
        "",
        "| claim | status | how the table encodes it | sources |",
        "|---|---|---|---|",
    ]
    for r in t.register:
        out.append(f"| {_cell(r['claim'])} | **{_cell(r['status'])}** | {_cell(r['why'])} | "
                   f"{', '.join(r['sources'])} |")
    out += ["", "## Criteria by pattern", ""]
    for pat in PATTERNS:
        out += [f"### `{pat}`: {t.patterns[pat]['label']}", "",
                "| id | feature | test | direction | grade | weight | modality | sources | evidence text | note |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for c in t.for_pattern(pat):
            key = " (key)" if c.key else ""
            out.append(f"| `{c.id}`{key} | `{c.feature}` | {_cell(_test_text(c))} | `{c.direction}` | "
                       f"{c.grade} | {c.weight:+.2f} | {c.modality} | {', '.join(c.sources)} | "
                       f"{_cell(c.says)} | {_cell(c.note)} |")
        out.append("")
    if t.planned_features:
        out += ["## Features the table reads that calcimg may not write yet", "",
                "A criterion on such a feature is *not assessed* (it lowers coverage, never counts "
                "as absent) until the column exists.", "", "| feature | status |", "|---|---|"]
        out += [f"| `{k}` | {_cell(v)} |" for k, v in t.planned_features.items()]
        out.append("")
    out += ["## Sources", "", "| key | source |", "|---|---|"]
    out += [f"| {k} | {_cell(v)} |" for k, v in t.sources.items()]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/criteria.md")
    target.write_text(criteria_markdown(), encoding="utf-8")
    print(f"wrote {target}")
