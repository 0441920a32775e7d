"""Pipeline settings: typed, documented, loaded from TOML, hashed for resumable batches."""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Every knob of a calcimg run. Each field is a key of a pipeline TOML file.

    Attributes
    ----------
    threshold_hu : float
        CT voxels at or above this value (HU) are calcium candidates (130 HU: the coronary-calcium
        convention, criteria-research section 1.0, grade A).
    min_volume_mm3 : float
        CT components smaller than this (mm^3) are noise and dropped.
    connectivity : int
        CT voxel connectivity for components: 6, 18 or 26.
    nonuniform_slices : str
        ``"resample"`` or ``"error"``: what loading does with irregular slice gaps.
    """

    threshold_hu: float = 130.0
    min_volume_mm3: float = 1.0
    connectivity: int = 26
    nonuniform_slices: str = "resample"

    def __post_init__(self) -> None:
        if self.connectivity not in (6, 18, 26):
            raise ValueError(f"settings: connectivity must be 6, 18 or 26, not {self.connectivity!r}")
        if self.min_volume_mm3 < 0:
            raise ValueError(f"settings: min_volume_mm3 must be >= 0, not {self.min_volume_mm3!r}")
        if self.nonuniform_slices not in ("resample", "error"):
            raise ValueError(
                f"settings: nonuniform_slices must be 'resample' or 'error', not {self.nonuniform_slices!r}"
            )

    @classmethod
    def from_mapping(cls, values: dict, source: str = "settings") -> Settings:
        """Build settings from a mapping; an unknown key or a wrong type is an error naming it."""
        known = {f.name: f for f in fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(known))})")
            default = getattr(cls(), key)
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not type(default):
                raise ValueError(
                    f"{source}: {key!r} must be {type(default).__name__}, got {type(value).__name__} {value!r}"
                )
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path) -> Settings:
        with open(path, "rb") as fp:
            return cls.from_mapping(tomllib.load(fp), source=str(path))

    def to_dict(self) -> dict:
        return asdict(self)

    def to_toml(self) -> str:
        lines = []
        for key, value in self.to_dict().items():
            lines.append(f"{key} = {json.dumps(value)}")
        return "\n".join(lines) + "\n"

    @property
    def hash(self) -> str:
        """A short hash of the settings: equal settings, equal hash."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
