"""The notebooks in notebooks/ run headless, start to finish, on the `test` phantom preset."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from phantom_batch import make_phantom_batch

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "calcimg-test"


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """(studies of the test preset, `calcimg extract` output of them), made once per session."""
    return make_phantom_batch(tmp_path_factory)


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernel spec for this interpreter and private Jupyter/IPython/matplotlib folders, so the run
    uses the venv's Python and writes nothing to the user's home."""
    base = tmp_path_factory.mktemp("jupyter")
    spec = base / "data" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "calcimg tests", "language": "python"}))
    env = {"JUPYTER_PATH": str(base / "data"), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
           "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_DATA_DIR": str(base / "data"),
           "IPYTHONDIR": str(base / "ipython"), "MPLCONFIGDIR": str(base / "mpl"),
           "JUPYTER_PLATFORM_DIRS": "1"}
    return env


def run_notebook(name: str, env: dict, monkeypatch) -> tuple[object, float]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name=KERNEL, allow_errors=False,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    t0 = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - t0


def outputs(nb, mime: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if mime in o.get("data", {})]


def test_notebooks_are_stored_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name


@pytest.mark.slow
def test_inspect_study_runs_on_the_test_phantom(phantom, kernel_env, monkeypatch):
    study, _ = phantom
    monkeypatch.setenv("CALCIMG_STUDY", str(study / "ct_supine"))
    monkeypatch.setenv("CALCIMG_SERIES", "0")
    nb, seconds = run_notebook("inspect_study.ipynb", kernel_env, monkeypatch)
    assert seconds < 60
    # the two overviews (soft tissue, bone) and the gallery
    assert len(outputs(nb, "image/png")) >= 3
    tables = [o["data"]["text/html"] for o in outputs(nb, "text/html")]
    assert sum("<table" in t for t in tables) >= 2  # the series summary and the lesion table
    words = "".join(o["data"]["text/markdown"] for o in outputs(nb, "text/markdown"))
    assert "**Lesion 1**" in words


@pytest.mark.slow
def test_batch_overview_runs_on_an_extract_output(phantom, kernel_env, monkeypatch):
    _, out = phantom
    monkeypatch.setenv("CALCIMG_OUT", str(out))
    nb, seconds = run_notebook("batch_overview.ipynb", kernel_env, monkeypatch)
    assert seconds < 60
    # status, distributions, scatter, and the overlay of the chosen row
    assert len(outputs(nb, "image/png")) >= 4
    html = "".join(o["data"]["text/html"] for o in outputs(nb, "text/html"))
    assert "<table" in html and "truncated pixel data" in html  # the failed series and its reason
    assert 'href="' in html and "overlays/" in html  # links from the rows to the overlays
