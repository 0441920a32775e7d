"""The differential-diagnosis table: loading ``criteria.toml`` and checking it up front.

A criterion is one published (or estimated) imaging sign for one pattern: which feature column it
reads, a soft membership test (``above``/``below``/``between`` a threshold with a ramp width in the
feature's unit, or ``in`` a set of values), a direction (``++``, ``+``, ``-``, ``--``: the ordinal
weights of criteria-research 3d), an evidence grade (A-D) and the source keys it paraphrases.
Everything is checked on load: a table that names an unknown feature, grade, direction or source
fails with an error naming the criterion, before a single lesion is scored.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from calcimg.errors import CalcimgError

#: The ``pattern`` vocabulary of CONTRACT.md, in its order; ``indeterminate`` is not scored.
PATTERNS: tuple[str, ...] = (
    "tumoral_calcinosis", "calcific_tendinitis", "myositis_ossificans", "calcinosis_cutis",
    "vascular", "phlebolith", "lymph_node", "hydatid_cyst", "parasitic", "tumor_matrix",
    "dystrophic",
)
INDETERMINATE = "indeterminate"
TESTS = ("above", "below", "between", "in")
MODALITIES = ("ct", "radiograph", "both")
DEFAULT_PATH = Path(__file__).with_name("criteria.toml")


class CriteriaTableError(CalcimgError, ValueError):
    """The criteria table is malformed; the message names the criterion and what is wrong."""


@dataclass(frozen=True)
class Criterion:
    id: str
    pattern: str
    feature: str
    test: str
    direction: str
    grade: str
    sources: tuple[str, ...]
    says: str
    threshold: float | tuple[float, float] | None = None
    width: float = 0.0
    values: tuple = ()
    modality: str = "both"
    key: bool = False
    absence_neutral: bool = False
    note: str = ""
    weight: float = 0.0  # signed: direction weight x grade weight, filled by the loader

    def applies_to(self, kind: str) -> bool:
        return self.modality == "both" or self.modality == kind


@dataclass(frozen=True)
class Table:
    """A loaded, validated criteria table."""

    criteria: tuple[Criterion, ...]
    patterns: dict[str, dict]
    scoring: dict
    study: dict
    sources: dict[str, str]
    register: tuple[dict, ...]
    planned_features: dict[str, str]
    version: str
    path: str
    digest: str = ""
    grade_weights: dict[str, float] = field(default_factory=dict)
    direction_weights: dict[str, float] = field(default_factory=dict)

    def for_pattern(self, pattern: str) -> tuple[Criterion, ...]:
        return tuple(c for c in self.criteria if c.pattern == pattern)

    @property
    def features(self) -> tuple[str, ...]:
        """Every feature column the table reads, in first-use order."""
        return tuple(dict.fromkeys(c.feature for c in self.criteria))


def known_features() -> set[str]:
    """Column names calcimg writes for a lesion (the report's registry, read lazily: the registry
    lists the criteria's own output columns, built from this module's PATTERNS)."""
    from calcimg.report._columns import LESION_COLUMNS

    return {c.name for c in LESION_COLUMNS}


def _err(where: str, what: str) -> CriteriaTableError:
    return CriteriaTableError(f"criteria table: {where}: {what}")


def _number(where: str, name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _err(where, f"{name} must be a finite number, got {v!r}")
    return float(v)


def _criterion(raw: dict, i: int, known: set[str], planned: dict, sources: dict,
               grades: dict, directions: dict) -> Criterion:
    cid = raw.get("id") or f"criteria[{i}]"
    where = f"criterion {cid!r}"
    allowed = {"id", "pattern", "feature", "test", "threshold", "width", "values", "direction",
               "grade", "sources", "says", "modality", "key", "absence_neutral", "note"}
    extra = set(raw) - allowed
    if extra:
        raise _err(where, f"unknown field(s) {sorted(extra)}; allowed: {sorted(allowed)}")
    for req in ("id", "pattern", "feature", "test", "direction", "grade", "sources", "says"):
        if req not in raw:
            raise _err(where, f"missing field {req!r}")
    if raw["pattern"] not in PATTERNS:
        raise _err(where, f"pattern {raw['pattern']!r} is not in the CONTRACT vocabulary {list(PATTERNS)}")
    feature = raw["feature"]
    if feature not in known and feature not in planned:
        raise _err(where, f"feature {feature!r} is not a calcimg column (see docs/features.md) "
                          "nor listed under [planned_features]")
    test = raw["test"]
    if test not in TESTS:
        raise _err(where, f"test {test!r} must be one of {list(TESTS)}")
    if raw["direction"] not in directions:
        raise _err(where, f"direction {raw['direction']!r} must be one of {list(directions)}")
    if raw["grade"] not in grades:
        raise _err(where, f"evidence grade {raw['grade']!r} must be one of {list(grades)}")
    srcs = raw["sources"]
    if not isinstance(srcs, list) or not srcs:
        raise _err(where, "sources must be a non-empty list of source keys")
    missing = [s for s in srcs if s not in sources]
    if missing:
        raise _err(where, f"source key(s) {missing} not defined under [sources]")
    modality = raw.get("modality", "both")
    if modality not in MODALITIES:
        raise _err(where, f"modality {modality!r} must be one of {list(MODALITIES)}")
    threshold, width, values = None, 0.0, ()
    if test == "in":
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise _err(where, "test 'in' needs a non-empty list 'values'")
        values = tuple(values)
    else:
        if "threshold" not in raw or "width" not in raw:
            raise _err(where, f"test {test!r} needs 'threshold' and 'width' (the ramp softness, "
                              "in the feature's unit)")
        width = _number(where, "width", raw["width"])
        if width <= 0:
            raise _err(where, f"width must be > 0, got {width}")
        if test == "between":
            t = raw["threshold"]
            if not isinstance(t, list) or len(t) != 2:
                raise _err(where, "test 'between' needs threshold = [low, high]")
            lo, hi = (_number(where, "threshold", v) for v in t)
            if lo >= hi:
                raise _err(where, f"threshold low {lo} must be below high {hi}")
            threshold = (lo, hi)
        else:
            threshold = _number(where, "threshold", raw["threshold"])
    key = raw.get("key", False)
    neutral = raw.get("absence_neutral", False)
    for name, v in (("key", key), ("absence_neutral", neutral)):
        if not isinstance(v, bool):
            raise _err(where, f"{name} must be true or false, got {v!r}")
    weight = float(directions[raw["direction"]]) * float(grades[raw["grade"]])
    return Criterion(id=cid, pattern=raw["pattern"], feature=feature, test=test,
                     direction=raw["direction"], grade=raw["grade"], sources=tuple(srcs),
                     says=str(raw["says"]), threshold=threshold, width=width, values=values,
                     modality=modality, key=key, absence_neutral=neutral, note=str(raw.get("note", "")), weight=weight)


def _weights(where: str, raw, names) -> dict[str, float]:
    if not isinstance(raw, dict) or set(raw) != set(names):
        raise _err(where, f"must give a weight for each of {list(names)}, got {raw!r}")
    out = {k: _number(where, k, v) for k, v in raw.items()}
    return out


def load_table(path: str | Path | None = None, *, known: set[str] | None = None) -> Table:
    """Read and validate a criteria table (default: the ``criteria.toml`` shipped in the package).

    Parameters
    ----------
    path : str or Path, optional
        A TOML file in the schema of the packaged table.
    known : set of str, optional
        Feature columns a criterion may read; default: every lesion column calcimg writes. Names
        under ``[planned_features]`` are accepted too and are not assessed until produced.

    Raises
    ------
    CriteriaTableError
        Naming the criterion (or section) and what is wrong with it.
    """
    p = Path(path) if path is not None else DEFAULT_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CriteriaTableError(f"criteria table {p}: cannot read: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CriteriaTableError(f"criteria table {p}: not valid TOML: {exc}") from exc
    scoring = data.get("scoring")
    if not isinstance(scoring, dict):
        raise _err("[scoring]", "section missing")
    grades = _weights("[scoring.grade_weights]", scoring.get("grade_weights"), ("A", "B", "C", "D"))
    if any(not 0 < w <= 1 for w in grades.values()):
        raise _err("[scoring.grade_weights]", f"weights must lie in (0, 1], got {grades}")
    directions = _weights("[scoring.direction_weights]", scoring.get("direction_weights"),
                          ("++", "+", "-", "--"))
    if not (directions["++"] >= directions["+"] > 0 > directions["-"] >= directions["--"]):
        raise _err("[scoring.direction_weights]", f"need ++ >= + > 0 > - >= --, got {directions}")
    for name, lo, hi in (("margin", 0, 1), ("min_score", 0, 1), ("min_coverage", 0, 1),
                         ("coverage_exponent", 0, 4), ("fires_at", 0, 1),
                         ("min_evidence", 0, 100)):
        if name not in scoring:
            raise _err("[scoring]", f"missing {name!r}")
        v = _number("[scoring]", name, scoring[name])
        if not lo <= v <= hi:
            raise _err("[scoring]", f"{name} must lie in [{lo}, {hi}], got {v}")
    sources = data.get("sources", {})
    if not isinstance(sources, dict) or not sources:
        raise _err("[sources]", "section missing or empty")
    planned = data.get("planned_features", {})
    if not isinstance(planned, dict):
        raise _err("[planned_features]", "must map feature name -> why it is not measured yet")
    known = known_features() if known is None else set(known)
    raws = data.get("criteria")
    if not isinstance(raws, list) or not raws:
        raise _err("[[criteria]]", "no criteria")
    criteria = tuple(_criterion(r, i, known, planned, sources, grades, directions)
                     for i, r in enumerate(raws))
    ids = [c.id for c in criteria]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise _err("[[criteria]]", f"duplicate criterion id(s) {dup}")
    patterns = data.get("patterns", {})
    for pat in PATTERNS:
        if not any(c.pattern == pat and c.weight > 0 for c in criteria):
            raise _err(f"pattern {pat!r}", "has no criterion that supports it")
        if pat not in patterns or "label" not in patterns[pat]:
            raise _err(f"[patterns.{pat}]", "missing, or without a 'label'")
    for reg in data.get("register", []):
        for f in ("claim", "status", "why", "sources"):
            if f not in reg:
                raise _err("[[register]]", f"entry {reg.get('claim', '?')!r} misses {f!r}")
        missing = [s for s in reg["sources"] if s not in sources]
        if missing:
            raise _err("[[register]]", f"entry {reg['claim']!r}: source key(s) {missing} undefined")
    study = data.get("study", {})
    return Table(criteria=criteria, patterns=patterns, scoring=scoring, study=study,
                 sources=sources, register=tuple(data.get("register", [])),
                 planned_features=dict(planned), version=str(data.get("version", "")),
                 path=str(p), digest=hashlib.sha256(text.encode()).hexdigest()[:12],
                 grade_weights=grades, direction_weights=directions)
