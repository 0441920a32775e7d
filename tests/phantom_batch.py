"""The `test` phantom preset and a `calcimg extract` output of it (with one failing series), made
once per test session for the figure and notebook tests."""

from __future__ import annotations

import io
from pathlib import Path

_CACHE: dict[str, tuple[Path, Path]] = {}


def _broken_series(study: Path, folder: Path) -> None:
    """One CT slice of its own series with its pixel data cut short: an `error` row."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(sorted((study / "ct_supine").glob("*.dcm"))[0])
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    buf = io.BytesIO()
    ds.save_as(buf)
    folder.mkdir(parents=True)
    (folder / "slice.dcm").write_bytes(buf.getvalue()[:-4000])


def make_phantom_batch(tmp_path_factory) -> tuple[Path, Path]:
    """(folder of the test preset's studies, output folder of `calcimg extract` on it)."""
    if "test" not in _CACHE:
        from calcimg.cli import main
        from calcimg.phantom import generate

        root = tmp_path_factory.mktemp("phantom_batch")
        studies = root / "studies"
        generate(studies, preset="test", seed=0)
        _broken_series(studies, studies / "broken")
        out = root / "out"
        code = main(["extract", str(studies), "--out", str(out), "--workers", "0", "--quiet"])
        assert code == 1, "the broken series should fail, and only it"
        _CACHE["test"] = (studies, out)
    return _CACHE["test"]
