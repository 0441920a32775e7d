"""Per-lesion features: pure functions ``Lesion -> dict`` with unit-suffixed column names.

`lesion_features` runs every family and joins their ``not_assessed`` reasons.
"""

from calcimg.features.context import CONTEXT_COLUMNS, context_features
from calcimg.features.intensity import INTENSITY_COLUMNS, intensity_features
from calcimg.features.morphology import MORPHOLOGY_COLUMNS, morphology_features
from calcimg.features.size import size_features
from calcimg.features.study import SERIES_STUDY_COLUMNS, study_features
from calcimg.lesion import Lesion

FAMILIES = (size_features, intensity_features, context_features, morphology_features)


def lesion_features(lesion: Lesion) -> dict:
    """Every feature of a lesion; ``not_assessed`` lists what could not be measured and why."""
    row: dict = {}
    reasons: list[str] = []
    for family in FAMILIES:
        values = family(lesion)
        reason = values.pop("not_assessed", "")
        if reason:
            reasons.append(reason)
        row.update(values)
    lesion.context.pop("_envelope_depth", None)  # a per-measurement cache, not context
    row["not_assessed"] = "; ".join(reasons)
    return row


__all__ = [
    "CONTEXT_COLUMNS",
    "FAMILIES",
    "INTENSITY_COLUMNS",
    "MORPHOLOGY_COLUMNS",
    "SERIES_STUDY_COLUMNS",
    "context_features",
    "intensity_features",
    "lesion_features",
    "morphology_features",
    "size_features",
    "study_features",
]
