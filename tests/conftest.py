from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
PYDICOM_TEST_FILES = Path(__import__("pydicom").__file__).parent / "data" / "test_files"


def shared(path: str) -> Path:
    """A path under ../shared/data, or a skip when this clone has no ../shared beside it."""
    p = SHARED_DATA / path
    if not p.exists():
        pytest.skip(f"{p} not found: ../shared/data sits beside the project root only on the team's machines")
    return p


def pydicom_file(name: str) -> Path:
    p = PYDICOM_TEST_FILES / name
    if not p.exists():
        pytest.skip(f"pydicom's bundled test file {name} is not in this pydicom install")
    return p
