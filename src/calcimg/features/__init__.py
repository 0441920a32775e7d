"""Per-lesion features: pure functions ``Lesion -> dict`` with unit-suffixed column names.

`lesion_features` runs every family (or the ones given) and joins their ``not_assessed`` reasons.
`BASIC_FAMILIES` are size, intensity, context and IBSI morphology; `DESCRIPTOR_FAMILIES` the shape
descriptors built on the shared isotropic envelope (`calcimg.features._shape`); `CONTEXT_FAMILIES`
what needs the scan beyond the lesion's crop (the soft-tissue mass, `calcimg.features.mass`).
"""

from calcimg.features._shape import CACHE_KEY as _SHAPE_CACHE
from calcimg.features.context import CONTEXT_COLUMNS, context_features
from calcimg.features.fluid_level import FLUID_LEVEL_COLUMNS, fluid_level_features
from calcimg.features.intensity import INTENSITY_COLUMNS, intensity_features
from calcimg.features.linearity import LINEARITY_COLUMNS, linearity_features
from calcimg.features.lobulation import LOBULATION_COLUMNS, lobulation_features
from calcimg.features.mass import MASS_COLUMNS, mass_features
from calcimg.features.morphology import MORPHOLOGY_COLUMNS, morphology_features
from calcimg.features.rim import RIM_COLUMNS, rim_features
from calcimg.features.septation import SEPTATION_COLUMNS, septation_features
from calcimg.features.size import size_features
from calcimg.features.study import SERIES_STUDY_COLUMNS, study_features
from calcimg.lesion import Lesion

BASIC_FAMILIES = (size_features, intensity_features, context_features, morphology_features)
DESCRIPTOR_FAMILIES = (lobulation_features, septation_features, linearity_features, rim_features,
                       fluid_level_features)
#: Context beyond the lesion's crop that the basic families do not need (the soft-tissue mass).
CONTEXT_FAMILIES = (mass_features,)
FAMILIES = BASIC_FAMILIES + DESCRIPTOR_FAMILIES + CONTEXT_FAMILIES


def lesion_features(lesion: Lesion, families=FAMILIES) -> dict:
    """Every feature of a lesion (of the given `families`, all by default); ``not_assessed`` lists
    what could not be measured and why. Per-lesion caches the families share (the envelope depth,
    the isotropic envelope) are dropped afterwards."""
    row: dict = {}
    reasons: list[str] = []
    for family in families:
        values = family(lesion)
        reason = values.pop("not_assessed", "")
        if reason:
            reasons.append(reason)
        row.update(values)
    lesion.context.pop("_envelope_depth", None)  # a per-measurement cache, not context
    lesion.context.pop(_SHAPE_CACHE, None)  # likewise (the isotropic envelope of the descriptors)
    row["not_assessed"] = "; ".join(reasons)
    return row


__all__ = [
    "BASIC_FAMILIES",
    "CONTEXT_COLUMNS",
    "CONTEXT_FAMILIES",
    "DESCRIPTOR_FAMILIES",
    "FAMILIES",
    "FLUID_LEVEL_COLUMNS",
    "INTENSITY_COLUMNS",
    "LINEARITY_COLUMNS",
    "LOBULATION_COLUMNS",
    "MASS_COLUMNS",
    "MORPHOLOGY_COLUMNS",
    "RIM_COLUMNS",
    "SEPTATION_COLUMNS",
    "SERIES_STUDY_COLUMNS",
    "context_features",
    "fluid_level_features",
    "intensity_features",
    "lesion_features",
    "linearity_features",
    "lobulation_features",
    "mass_features",
    "morphology_features",
    "rim_features",
    "septation_features",
    "size_features",
    "study_features",
]
