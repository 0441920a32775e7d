"""Criteria mapping: the differential-diagnosis table as data, and one small evaluator.

The table (``criteria.toml`` in this package; docs/criteria.md is generated from it) lists, for
each pattern of CONTRACT.md, the imaging signs that support or argue against it, with their
evidence grade and sources. `evaluate` turns a lesion's feature row into ``score_<pattern>``,
``pattern`` and ``evidence``; `study_context` adds the series-level flags. Changing the medicine
means editing the TOML, not this code.

Examples
--------
>>> from calcimg.criteria import load_table, evaluate
>>> table = load_table()
>>> row = {"kind": "ct", "skin_depth_mm": 1.2, "ibsi_flatness": 0.1}
>>> evaluate(row, table)["pattern"]
'calcinosis_cutis'
"""

from __future__ import annotations

from functools import lru_cache

from calcimg.criteria._evaluate import apply, evaluate, membership, study_context
from calcimg.criteria._table import (
    INDETERMINATE,
    PATTERNS,
    CriteriaTableError,
    Criterion,
    Table,
    load_table,
)

#: Lesion columns the criteria stage adds (before ``not_assessed``).
LESION_CRITERIA_COLUMNS: tuple[str, ...] = ("pattern", *(f"score_{p}" for p in PATTERNS), "evidence")


@lru_cache(maxsize=1)
def default_table() -> Table:
    """The packaged table, loaded and validated once per process."""
    return load_table()


__all__ = [
    "INDETERMINATE",
    "LESION_CRITERIA_COLUMNS",
    "PATTERNS",
    "CriteriaTableError",
    "Criterion",
    "Table",
    "apply",
    "default_table",
    "evaluate",
    "load_table",
    "membership",
    "study_context",
]
