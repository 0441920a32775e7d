"""The evaluator: one feature row -> ``score_<pattern>``, ``pattern`` and ``evidence``; the study
context of a series.

Scoring (documented again in docs/criteria.md, generated from the table):

* membership ``m`` in [0, 1] of each criterion: ``above``: ``s((x - t) / w)``, ``below``:
  ``s((t - x) / w)``, ``between``: ``s((x - lo) / w) s((hi - x) / w)``, with ``s`` the logistic
  function and ``w`` the ramp width in the feature's unit; ``in``: 1 when the value is one of the
  listed values, else 0. A criterion *fires* when ``m >= fires_at`` (0.5: the threshold itself).
* signed weight ``c = d g``: direction ``d`` (``++`` 2, ``+`` 1, ``-`` -1, ``--`` -2) times the
  evidence-grade weight ``g`` (A 1.0, B 0.8, C 0.6, D 0.4), both set in the table.
* per pattern, over the criteria that apply to the modality (CT, radiograph or both):
  ``support = sum(c m) / max(sum(c+), min_evidence)`` over the *assessed* criteria (``c+``: their
  positive weights; ``min_evidence`` keeps a pattern with one or two weak criteria from reaching a
  full score); ``coverage = sum |c|`` assessed / ``sum |c|`` applicable; and
  ``score = clip(support, 0, 1) * coverage ** k``. A criterion marked ``absence_neutral`` (a sign
  whose absence says nothing, like a fluid level) enters ``support`` only when it fires. A feature
  that could not be measured (empty, or a column this version does not write) leaves its
  criterion out of ``support``: it never counts as absent; it only lowers ``coverage``, and so
  the score.
* ``pattern`` = the best-scoring pattern, or ``indeterminate`` when its score is below
  ``min_score``, it leads the runner-up by less than ``margin``, its coverage is below
  ``min_coverage``, or one of its ``key`` criteria was not assessable.
"""

from __future__ import annotations

import math

from calcimg.criteria._table import INDETERMINATE, PATTERNS, Criterion, Table


def is_missing(v) -> bool:
    """None, blank text, NaN or infinite: a value that was not measured."""
    if v is None:
        return True
    if isinstance(v, str):
        return v.strip() == ""
    try:
        return not math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _logistic(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def membership(crit: Criterion, value) -> float:
    """Degree (0..1) to which a measured value meets the criterion's test.

    >>> from calcimg.criteria._table import Criterion
    >>> c = Criterion("x", "phlebolith", "max_diameter_mm", "below", "+", "C", ("SRC",), "small",
    ...               threshold=10.0, width=1.5)
    >>> round(membership(c, 10.0), 2), round(membership(c, 4.0), 2), round(membership(c, 16.0), 2)
    (0.5, 0.98, 0.02)
    """
    if crit.test == "in":
        if isinstance(value, str):
            return float(value in {str(v) for v in crit.values})
        return float(any(not isinstance(v, str) and float(value) == float(v) for v in crit.values))
    x = float(value)
    if crit.test == "above":
        return _logistic((x - crit.threshold) / crit.width)
    if crit.test == "below":
        return _logistic((crit.threshold - x) / crit.width)
    lo, hi = crit.threshold
    return _logistic((x - lo) / crit.width) * _logistic((hi - x) / crit.width)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def describe(crit: Criterion, row: dict, value) -> str:
    """The criterion in words with its value: its ``says`` template formatted with ``{value}`` and
    any other column of the row; on a template the row cannot fill, ``says (feature = value)``."""
    try:
        return crit.says.format_map({**row, "value": value})
    except (KeyError, ValueError, TypeError, IndexError, AttributeError):
        plain = crit.says.split("(")[0].strip() if "{" in crit.says else crit.says
        return f"{plain} ({crit.feature} = {_fmt(value)})"


def _kind(row: dict) -> str:
    kind = row.get("kind")
    return kind if kind in ("ct", "radiograph") else "ct"


def assess(row: dict, table: Table) -> dict[str, dict]:
    """Per pattern: support, coverage, score and the per-criterion results (for evidence/tests)."""
    kind = _kind(row)
    fires_at = float(table.scoring["fires_at"])
    k = float(table.scoring["coverage_exponent"])
    floor = float(table.scoring["min_evidence"])
    out = {}
    for pattern in PATTERNS:
        num = pos = assessed_abs = total_abs = 0.0
        results, missing_keys = [], []
        for crit in table.for_pattern(pattern):
            if not crit.applies_to(kind):
                continue
            total_abs += abs(crit.weight)
            value = row.get(crit.feature)
            if is_missing(value):
                results.append((crit, None, None))
                if crit.key:
                    missing_keys.append(crit)
                continue
            m = membership(crit, value)
            assessed_abs += abs(crit.weight)
            results.append((crit, value, m))
            if crit.absence_neutral and m < fires_at:
                continue  # a sign whose absence says nothing (e.g. no fluid level in a solid lesion)
            num += crit.weight * m
            if crit.weight > 0:
                pos += crit.weight
        support = num / max(pos, floor) if max(pos, floor) > 0 else 0.0
        coverage = assessed_abs / total_abs if total_abs > 0 else 0.0
        score = min(max(support, 0.0), 1.0) * coverage**k
        fired = [(c, v, m) for c, v, m in results if m is not None and m >= fires_at]
        out[pattern] = {"support": support, "coverage": coverage, "score": score,
                        "results": results, "fired": fired, "missing_keys": missing_keys}
    return out


def evaluate(row: dict, table: Table) -> dict:
    """Score a lesion's feature row against every pattern of the table.

    Parameters
    ----------
    row : dict
        A lesion row as `calcimg.pipeline.measure_scan` builds it (``kind`` selects the criteria
        that apply: CT, radiograph or both). Missing columns and empty values are not assessed.
    table : Table
        From `load_table`.

    Returns
    -------
    dict
        ``score_<pattern>`` (0..1, 3 decimals) for every pattern of CONTRACT.md, ``pattern`` (or
        ``indeterminate``), ``evidence`` (the criteria of the chosen, or leading, pattern that
        fired, in words with their values; criteria against it prefixed ``against:``) and
        ``criteria_not_assessed`` (the features the table wanted but the row did not have).

    Examples
    --------
    >>> from calcimg.criteria import load_table
    >>> out = evaluate({"kind": "ct", "skin_depth_mm": 1.5, "ibsi_flatness": 0.12}, load_table())
    >>> out["pattern"]
    'calcinosis_cutis'
    """
    sc = table.scoring
    res = assess(row, table)
    ranked = sorted(PATTERNS, key=lambda p: res[p]["score"], reverse=True)
    lead, second = ranked[0], ranked[1]
    top = res[lead]
    why = ""
    if top["score"] < float(sc["min_score"]):
        why = f"no pattern reaches {float(sc['min_score']):.2f}"
    elif top["score"] - res[second]["score"] < float(sc["margin"]):
        why = (f"{lead} ({top['score']:.2f}) does not lead {second} ({res[second]['score']:.2f}) "
               f"by {float(sc['margin']):.2f}")
    elif top["coverage"] < float(sc["min_coverage"]):
        why = f"{lead}: only {top['coverage']:.0%} of its criteria assessable"
    elif top["missing_keys"]:
        why = f"{lead}: key feature not assessable ({', '.join(c.feature for c in top['missing_keys'])})"
    words = []
    for crit, value, _m in sorted(top["fired"], key=lambda r: -r[0].weight):
        text = describe(crit, row, value)
        words.append(text if crit.weight > 0 else f"against: {text}")
    evidence = "; ".join(words)
    if why:
        evidence = f"indeterminate: {why}" + (f"; leading {lead}: {evidence}" if evidence else "")
    missing = sorted({c.feature for p in PATTERNS for c, v, m in res[p]["results"] if m is None},
                     key=table.features.index)
    out = {f"score_{p}": round(res[p]["score"], 3) for p in PATTERNS}
    out.update(pattern=INDETERMINATE if why else lead, evidence=evidence,
               criteria_not_assessed=missing)
    return out


def not_assessed_reasons(row: dict, missing: list[str], table: Table) -> str:
    """The criteria's not-assessed features in words, leaving out those the row's own
    ``not_assessed`` already explains (features that measured nothing say why themselves)."""
    already = row.get("not_assessed", "") or ""
    absent = [f for f in missing if f not in row]
    empty = [f for f in missing if f in row and f not in already]
    parts = []
    if absent:
        parts.append(f"criteria: not measured by this version: {', '.join(absent)}")
    if empty:
        parts.append(f"criteria: empty: {', '.join(empty)}")
    return "; ".join(parts)


def apply(row: dict, table: Table) -> dict:
    """`evaluate` a row and add its results to it in place: ``pattern``, ``score_*``,
    ``evidence``, and the criteria's not-assessed reasons appended to ``not_assessed``."""
    out = evaluate(row, table)
    missing = out.pop("criteria_not_assessed")
    reasons = not_assessed_reasons(row, missing, table)
    row.update(out)
    if reasons:
        row["not_assessed"] = "; ".join(r for r in (row.get("not_assessed", ""), reasons) if r)
    return row


def _flag(v) -> int | None:
    return None if is_missing(v) else int(float(v) >= 0.5)


def study_context(lesion_rows: list[dict], series_row: dict, table: Table) -> dict:
    """Study-level columns for ``series.csv`` from the lesions' patterns and the bone density.

    A tumoral-calcinosis pattern with demineralised bone or vascular calcification in the same
    series is *consistent with metabolic (e.g. renal-failure) calcinosis*: imaging cannot separate
    it from hereditary tumoral calcinosis (criteria-research 0.1, 1.6; [RP-CKD], [SRC]). The
    pattern names and the count of vascular lesions that trigger it are in the table's ``[study]``.

    Returns
    -------
    dict
        ``n_vascular_calcifications`` (lesions with the vascular pattern; left out when the rows
        carry no ``pattern``),
        ``metabolic_calcinosis_consistent`` (1, 0, or empty when no lesion has the TC pattern or
        bone density is unknown and no vascular calcification was seen),
        ``metabolic_calcinosis_evidence`` (why, in words) and ``criteria_table`` (version and
        digest of the table used).
    """
    st = table.study
    tc_patterns = set(st.get("calcinosis_patterns", ["tumoral_calcinosis"]))
    vascular = set(st.get("vascular_patterns", ["vascular"]))
    min_vascular = int(st.get("min_vascular_calcifications", 1))
    n_vasc = sum(r.get("pattern") in vascular for r in lesion_rows)
    tc_ids = [str(r.get("lesion_id", "?")) for r in lesion_rows if r.get("pattern") in tc_patterns]
    demin = _flag(series_row.get("demineralised"))
    bone = series_row.get("trabecular_bone_hu")
    out: dict = {"criteria_table": f"{table.version} ({table.digest})"}
    if not all("pattern" in r for r in lesion_rows):  # rows the criteria did not see: no count
        out["metabolic_calcinosis_consistent"] = float("nan")
        out["metabolic_calcinosis_evidence"] = "lesion patterns not assigned"
        return out
    out["n_vascular_calcifications"] = n_vasc
    if not tc_ids:
        out["metabolic_calcinosis_consistent"] = float("nan")
        out["metabolic_calcinosis_evidence"] = "no lesion with the tumoral-calcinosis pattern"
        return out
    found = []
    if demin == 1:
        thr = series_row.get("demineralised_threshold_hu")
        found.append(f"demineralised bone (trabecular {_fmt(bone)} HU < {_fmt(thr)} HU)")
    if n_vasc >= min_vascular:
        found.append(f"{n_vasc} vascular calcification{'s' if n_vasc != 1 else ''}")
    lesions = f"tumoral-calcinosis pattern (lesion{'s' if len(tc_ids) > 1 else ''} {', '.join(tc_ids)})"
    if found:
        out["metabolic_calcinosis_consistent"] = 1
        out["metabolic_calcinosis_evidence"] = (
            f"{lesions} with {' and '.join(found)}: consistent with metabolic (e.g. renal-failure) "
            "calcinosis, which imaging cannot tell from hereditary tumoral calcinosis")
    elif demin is None:
        out["metabolic_calcinosis_consistent"] = float("nan")
        out["metabolic_calcinosis_evidence"] = (
            f"{lesions}, no vascular calcification; bone density not measured "
            "(CT only), so metabolic calcinosis cannot be assessed")
    else:
        out["metabolic_calcinosis_consistent"] = 0
        out["metabolic_calcinosis_evidence"] = (
            f"{lesions} without demineralised bone or vascular calcification in this series "
            "(labs and other studies still decide)")
    return out
