"""Reading the phantom's ground truth beside the series it describes (shared by the tests)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from calcimg.io import Series, discover


def truth_series(root: Path | list[Path]) -> Iterator[tuple[Series, dict]]:
    """Every discovered series of every phantom study (folders holding truth.json), paired with
    its entry of truth.json, in study order."""
    studies = root if isinstance(root, list) else [p for p in Path(root).iterdir()]
    for study in sorted(p for p in studies if (p / "truth.json").exists()):
        truth = {s["series_uid"]: s for s in json.loads((study / "truth.json").read_text())["series"]}
        for series in discover(study).series:
            if series.series_uid in truth:
                yield series, truth[series.series_uid]
