"""Batch processing: local pool, dask, parts and resume, failures as rows, output errors."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from calcimg.batch import OutputError, run_batch
from calcimg.cli import main
from calcimg.report._parts import safe_name
from calcimg.settings import Settings
from dicom_factory import ct_slices, write_series

TESTS = Path(__file__).resolve().parent


def read_csv(path):
    with open(path, newline="") as fp:
        return list(csv.DictReader(fp))


def without_seconds(path) -> str:
    """series.csv minus its wall-time column: the only one that differs between two runs."""
    rows = list(csv.reader(io.StringIO(Path(path).read_text())))
    i = rows[0].index("seconds")
    return "\n".join(",".join(r[:i] + r[i + 1:]) for r in rows)


def small_ct(folder, *, value=300, seed=0):
    """A 12 x 32 x 32 CT with one calcified cube (`value` HU) in 40-HU tissue."""
    hu = np.full((12, 32, 32), 40, np.int16)
    hu[4:8, 10:16, 12:18] = value
    hu += np.random.default_rng(seed).normal(0, 3, hu.shape).round().astype(np.int16)
    write_series(ct_slices(hu, spacing=(1.0, 0.7, 0.7)), folder, shuffle_seed=seed)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    from calcimg.phantom import generate

    root = tmp_path_factory.mktemp("phantoms")
    generate(root / "in", preset="test", seed=0)
    return root / "in"


@pytest.fixture(scope="module")
def reference(phantoms, tmp_path_factory):
    """An uninterrupted run on the local pool, 2 workers."""
    out = tmp_path_factory.mktemp("ref") / "out"
    summary = run_batch([phantoms], out, workers=2, progress="quiet")
    assert summary.exit_code == 0
    return out


def test_local_pool_writes_every_output(reference, phantoms):
    for name in ("lesions.csv", "lesions.parquet", "series.csv", "data_dictionary.csv", "settings.toml",
                 "calcimg.log"):
        assert (reference / name).is_file(), name
    series = read_csv(reference / "series.csv")
    ok = [r for r in series if r["status"] == "ok"]
    assert len(ok) == 8 and {r["status"] for r in series} == {"ok", "skipped"}  # truth.json files skipped
    # rows in a fixed order: (source, series_key); lesions follow their series, by lesion_id
    assert [(r["source"], r["series_key"]) for r in series] == sorted((r["source"], r["series_key"]) for r in series)
    lesions = read_csv(reference / "lesions.csv")
    order = {r["series_key"]: i for i, r in enumerate(series)}
    keys = [(order[r["series_key"]], int(r["lesion_id"])) for r in lesions]
    assert keys == sorted(keys)
    assert sum(int(r["n_lesions"]) for r in ok) == len(lesions) > 0
    # one overlay and one part per series, named from the sanitised series key
    for r in ok:
        assert r["overlay"] == f"overlays/{safe_name(r['series_key'])}.png"
        assert (reference / r["overlay"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (reference / "parts" / f"{safe_name(r['series_key'])}.json").is_file()
    assert not list(reference.rglob(".*.tmp"))
    dictionary = {(r["file"], r["column"]) for r in read_csv(reference / "data_dictionary.csv")}
    assert ("series.csv", "overlay") in dictionary and ("lesions.csv", "volume_mm3") in dictionary
    assert "executor: local process pool, 2 workers" in (reference / "calcimg.log").read_text()


def test_parquet_holds_the_csv_rows_with_types(reference):
    import pyarrow.parquet as pq

    table = pq.read_table(reference / "lesions.parquet")
    rows = read_csv(reference / "lesions.csv")
    assert table.column_names == list(rows[0])
    assert table.num_rows == len(rows)
    assert str(table.schema.field("lesion_id").type) == "int64"
    assert str(table.schema.field("max_diameter_mm").type) == "double"
    got = table.column("max_diameter_mm").to_pylist()
    np.testing.assert_allclose(got, [float(r["max_diameter_mm"]) for r in rows], rtol=1e-6)
    # NaN / empty cells are nulls
    z = table.column("centroid_z_mm").to_pylist()
    assert [v is None for v in z] == [r["centroid_z_mm"] == "" for r in rows]


def test_in_process_run_gives_the_same_tables(reference, phantoms, tmp_path):
    run_batch([phantoms], tmp_path / "out", workers=0, progress="quiet")
    assert (tmp_path / "out" / "lesions.csv").read_bytes() == (reference / "lesions.csv").read_bytes()
    assert without_seconds(tmp_path / "out" / "series.csv") == without_seconds(reference / "series.csv")


def test_dask_local_cluster_gives_the_same_tables(reference, phantoms, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        code = main(["extract", str(phantoms), "--out", str(tmp_path / "out"), "--scheduler",
                     cluster.scheduler_address, "--quiet"])
    assert code == 0
    assert (tmp_path / "out" / "lesions.csv").read_bytes() == (reference / "lesions.csv").read_bytes()
    assert without_seconds(tmp_path / "out" / "series.csv") == without_seconds(reference / "series.csv")
    assert sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir()) == \
        sorted(p.name for p in (reference / "overlays").iterdir())
    assert "executor: dask" in (tmp_path / "out" / "calcimg.log").read_text()


def test_failing_crashing_and_hanging_workers_become_error_rows(tmp_path):
    import batch_faults

    for name in ("good", "raise", "crash", "hang"):
        small_ct(tmp_path / "in" / name)
    t0 = time.monotonic()
    summary = run_batch([tmp_path / "in"], tmp_path / "out", workers=2, timeout=3, progress="quiet",
                        task=batch_faults.faulty_task)
    assert time.monotonic() - t0 < 60
    assert summary.exit_code == 1 and (summary.n_ok, summary.n_error) == (1, 3)
    rows = {Path(r["source"]).name: r for r in read_csv(tmp_path / "out" / "series.csv")}
    assert rows["good"]["status"] == "ok" and rows["good"]["n_lesions"] == "1"
    assert rows["raise"]["status"] == "error" and "RuntimeError: injected worker failure" in rows["raise"]["reason"]
    assert rows["crash"]["status"] == "error" and "worker process died (SIGKILL" in rows["crash"]["reason"]
    assert rows["hang"]["status"] == "error" and "timed out after 3 s" in rows["hang"]["reason"]
    for r in rows.values():  # error rows still say which series they are
        assert r["series_uid"] and r["kind"] == "ct"
    assert len(read_csv(tmp_path / "out" / "lesions.csv")) == 1
    assert "timed out" in (tmp_path / "out" / "calcimg.log").read_text()


def test_dask_workers_failing_crashing_and_hanging_become_error_rows(tmp_path):
    pytest.importorskip("distributed")
    import batch_faults

    for name in ("good", "raise", "crash", "hang"):
        small_ct(tmp_path / "in" / name)
    summary = run_batch([tmp_path / "in"], tmp_path / "out", dask_local=2, timeout=3, progress="quiet",
                        overlays=False, task=batch_faults.faulty_task)
    assert (summary.n_ok, summary.n_error) == (1, 3)
    rows = {Path(r["source"]).name: r["reason"] for r in read_csv(tmp_path / "out" / "series.csv")}
    assert "RuntimeError: injected worker failure" in rows["raise"]
    assert "worker process died (SIGKILL" in rows["crash"]
    assert "timed out after 3 s" in rows["hang"]


def test_killed_batch_resumes_to_the_same_tables(reference, phantoms, tmp_path):
    """SIGKILL a batch midway, resume it, and get byte-identical tables to an uninterrupted run."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(TESTS / "batch_faults.py"), str(phantoms), str(out)],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    parts = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            parts = list((out / "parts").glob("*.json")) if (out / "parts").is_dir() else []
            if len(parts) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, as a crash or `kill -9` would
        proc.wait()
    done_before = len(list((out / "parts").glob("*.json")))
    assert 2 <= done_before < 8 and not (out / "lesions.csv").exists()

    assert main(["extract", str(phantoms), "--out", str(out), "--resume", "--workers", "2", "--quiet"]) == 0
    assert f"resume: {done_before} series already done" in (out / "calcimg.log").read_text()
    assert (out / "lesions.csv").read_bytes() == (reference / "lesions.csv").read_bytes()
    assert without_seconds(out / "series.csv") == without_seconds(reference / "series.csv")
    import pyarrow.parquet as pq

    assert pq.read_table(out / "lesions.parquet").equals(pq.read_table(reference / "lesions.parquet"))
    assert not list(out.rglob(".*.tmp"))


def test_resume_redoes_series_done_with_other_settings(tmp_path):
    small_ct(tmp_path / "in" / "a", seed=1)
    small_ct(tmp_path / "in" / "b", seed=2, value=200)
    out = tmp_path / "out"
    first = run_batch([tmp_path / "in"], out, workers=0, progress="quiet", overlays=False)
    assert (first.n_ok, first.n_lesions, first.n_resumed) == (2, 2, 0)
    again = run_batch([tmp_path / "in"], out, workers=0, progress="quiet", overlays=False, resume=True)
    assert (again.n_ok, again.n_lesions, again.n_resumed) == (2, 2, 2)
    # other settings: everything is redone, and the 200-HU cube is now below the threshold
    high = Settings(threshold_hu=250.0)
    redone = run_batch([tmp_path / "in"], out, high, workers=0, progress="quiet", overlays=False, resume=True)
    assert (redone.n_ok, redone.n_lesions, redone.n_resumed) == (2, 1, 0)
    assert {r["settings_hash"] for r in read_csv(out / "series.csv")} == {high.hash}
    assert "threshold_hu = 250.0" in (out / "settings.toml").read_text()
    # asking for more outputs (overlays) redoes the series made without them
    more = run_batch([tmp_path / "in"], out, high, workers=0, progress="quiet", resume=True)
    assert more.n_resumed == 0 and len(list((out / "overlays").glob("*.png"))) == 2
    # a run without --resume starts afresh: no part of an earlier run is kept
    (out / "parts" / "stale.json").write_text(json.dumps({"format": 1}))
    run_batch([tmp_path / "in" / "a"], out, workers=0, progress="quiet")
    assert not (out / "parts" / "stale.json").exists()
    assert len(read_csv(out / "series.csv")) == 1


def test_unwritable_output_is_a_clean_error(tmp_path, capsys, monkeypatch):
    small_ct(tmp_path / "in")
    (tmp_path / "file").write_text("a file, not a folder")
    assert main(["extract", str(tmp_path / "in"), "--out", str(tmp_path / "file" / "out"), "--workers", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("calcimg extract: cannot write to") and "Traceback" not in err

    import calcimg.batch

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "parts" / "x.json"))

    monkeypatch.setattr(calcimg.batch, "write_part", disk_full)
    assert main(["extract", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--workers", "0"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    with pytest.raises(OutputError):
        run_batch([tmp_path / "in"], tmp_path / "out", workers=0, progress="quiet")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_output_is_a_clean_error(tmp_path, capsys):
    small_ct(tmp_path / "in")
    (tmp_path / "ro").mkdir(mode=0o555)
    assert main(["extract", str(tmp_path / "in"), "--out", str(tmp_path / "ro" / "out"), "--workers", "0"]) == 1
    assert "cannot write to" in capsys.readouterr().err


def test_progress_lines_and_bar(tmp_path, capsys):
    small_ct(tmp_path / "in")
    run_batch([tmp_path / "in"], tmp_path / "o1", workers=0, progress="lines", overlays=False)
    err = capsys.readouterr().err
    assert "[1/1] ok" in err and "1 lesions" in err
    run_batch([tmp_path / "in"], tmp_path / "o2", workers=0, progress="bar", overlays=False)
    err = capsys.readouterr().err
    assert "1/1" in err and "lesions=1" in err  # tqdm's bar, with the lesion count
    run_batch([tmp_path / "in"], tmp_path / "o3", workers=0, progress="quiet", overlays=False)
    assert capsys.readouterr().err == ""


def test_file_names_never_come_from_header_text():
    assert safe_name("1.2.3.4") == "1.2.3.4"
    assert safe_name("1.2.3.4.p2") == "1.2.3.4.p2"
    for key in ("../../etc/passwd", "DOE^JOHN 1.2", ".hidden", "", "a/b", "x" * 300):
        name = safe_name(key)
        assert "/" not in name and not name.startswith(".") and 0 < len(name) <= 120
    assert safe_name("a b") != safe_name("a_b")


def test_cli_options_are_checked(tmp_path, capsys):
    small_ct(tmp_path / "in")
    base = ["extract", str(tmp_path / "in"), "--out", str(tmp_path / "o")]
    assert main([*base, "--timeout", "0"]) == 2
    assert main([*base, "--workers", "-1"]) == 2
    assert main([*base, "--scheduler", "tcp://127.0.0.1:1", "--dask-local", "2"]) == 2
    assert main([*base, "--pipeline", "no_such_pipeline"]) == 2
    err = capsys.readouterr().err
    assert "unknown pipeline" in err and "high_sensitivity" in err and "ct" in err
