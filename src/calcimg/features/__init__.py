"""Per-lesion features: pure functions ``Lesion -> dict`` with unit-suffixed column names."""

from calcimg.features.size import size_features

__all__ = ["size_features"]
