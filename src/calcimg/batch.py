"""Many series: discover, run the pipeline on each, write the tables. One bad file never stops it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from calcimg import __version__
from calcimg.io import discover
from calcimg.pipeline import process_series
from calcimg.report import write_outputs
from calcimg.settings import Settings


@dataclass
class BatchSummary:
    n_series: int
    n_ok: int
    n_error: int
    n_skipped: int
    n_lesions: int
    out_dir: Path

    @property
    def exit_code(self) -> int:
        """0 when every series was processed or skipped with a reason, 1 when any failed."""
        return 1 if self.n_error else 0


def check_out_dir(inputs: Sequence[str | Path], out_dir: str | Path) -> None:
    """Refuse an output folder inside an input folder (the next run would read its own output)."""
    out = Path(out_dir).resolve()
    for p in inputs:
        p = Path(p).resolve()
        if p.is_dir() and (out == p or p in out.parents):
            raise ValueError(f"output folder {out_dir} is inside input folder {p}; choose another --out")


def run_batch(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    settings: Settings | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> BatchSummary:
    """Process every series under `inputs` and write the output tables into `out_dir`."""
    settings = settings or Settings()
    check_out_dir(inputs, out_dir)
    log = log or (lambda msg: print(msg, file=sys.stderr))
    found = discover(inputs)
    series_rows: list[dict] = []
    lesion_rows: list[dict] = []
    for skip in found.skipped:
        series_rows.append({"source": str(skip.path), "status": skip.status, "reason": f"{skip.path}: {skip.reason}",
                            "n_files": 1, "calcimg_version": __version__, "settings_hash": settings.hash})
    total = len(found.series)
    for i, series in enumerate(found.series, 1):
        result = process_series(series, settings)
        series_rows.append(result.series)
        lesion_rows.extend(result.lesions)
        row = result.series
        log(f"[{i}/{total}] {row['status']:7s} {series.kind:10s} {row.get('n_lesions', 0) or 0:5d} lesions "
            f"{row['seconds']:.2f} s  {series.source}" + (f"  ({row['reason']})" if row.get("reason") else ""))
    write_outputs(out_dir, lesion_rows, series_rows, settings)
    statuses = [r["status"] for r in series_rows]
    return BatchSummary(
        n_series=len(series_rows),
        n_ok=statuses.count("ok"),
        n_error=statuses.count("error"),
        n_skipped=statuses.count("skipped"),
        n_lesions=len(lesion_rows),
        out_dir=Path(out_dir),
    )
