"""Many series: discover, run the pipeline on each through an executor, write the tables.

One bad file never stops or spoils a batch, and an interrupted batch picks up where it stopped:

* The unit of work is `run_series_task(series, settings, options)`, the same function on the
  local process pool (default) and on dask.distributed. It never raises for bad data (the
  pipeline turns failures into ``status="error"`` rows) and returns the rows plus the overlay
  PNG / DICOM SEG bytes, so that only the driver writes into the output folder.
* The driver writes each result as soon as it arrives: overlay and SEG files, then
  ``parts/<series_key>.json`` (temporary file + rename; the part is the "done" marker). The final
  ``lesions.csv``, ``lesions.parquet`` and ``series.csv`` are merged from the parts in a fixed
  order (source, series key, lesion id), so the tables do not depend on worker timing, and a
  resumed run gives the same bytes as an uninterrupted one.
* ``resume=True`` keeps the parts made with the same settings hash (and at least the same
  outputs asked for) and redoes the rest.
* A worker that raises, is killed by the OS, or runs past ``timeout`` seconds gives an ``error``
  row for its series; the pool replaces the worker and the batch goes on.

Executors
---------
Local: a `pebble.ProcessPool` on a ``forkserver`` context. pebble is used over
`concurrent.futures.ProcessPoolExecutor` because it stops a task that runs past its timeout by
killing its worker, and reports a worker's death (OOM killer, segfault) on that task's future
only, replacing the worker; the standard pool can do neither (a dead worker breaks the whole pool
and every pending future). ``forkserver`` gives fresh single-threaded parents to fork from
(forking the multi-threaded driver is unsafe) while the preloaded pipeline modules keep worker
start-up cheap.

dask.distributed: ``scheduler="tcp://host:port"`` connects to a running cluster (workers must see
the input and output paths); ``dask_local=N`` starts a `LocalCluster` of N single-threaded worker
processes. A worker killed mid-series is retried by the scheduler and then reported
(`KilledWorker`). Timeouts: dask cannot stop a running task, so with ``timeout`` the task runs the
series in a forked child that it kills when time is up; this needs non-daemonic workers (set for
the local cluster; ``distributed.worker.daemon: false`` on a remote one), else the series runs
without a time limit and its row says so.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from calcimg import __version__
from calcimg.io import Series, discover
from calcimg.pipeline import process_series, series_row
from calcimg.report._parts import (
    PARTS_DIR,
    merge_rows,
    part_path,
    read_part,
    remove_stale_temporaries,
    safe_name,
    write_part,
    write_tables,
)
from calcimg.report._write import atomic_write_bytes, atomic_write_text, write_data_dictionary
from calcimg.settings import Settings

LOG_NAME = "calcimg.log"

#: Thread pools in numerical libraries: one thread per worker process (the pool is the parallelism).
_WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "NUMBA_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


class OutputError(Exception):
    """The output folder cannot be written (disk full, read-only, permission denied...)."""


@dataclass(frozen=True)
class TaskOptions:
    """What the per-series task produces besides the rows. Per-run options that are not pipeline
    settings (e.g. a region mask given on the command line) belong here too: the task passes them
    on to the pipeline, and `TaskOptions.covers` decides whether a resumed part is still valid."""

    overlays: bool = True
    seg: bool = False
    mask: str | None = None  # a label image to measure instead of segmenting (`--mask`)

    def covers(self, other: TaskOptions) -> bool:
        """True when a result made with these options has everything `other` asks for."""
        return (self.overlays or not other.overlays) and (self.seg or not other.seg) and self.mask == other.mask


@dataclass
class TaskResult:
    """What a worker sends back: the series row, the lesion rows, files by relative path."""

    key: str
    series: dict
    lesions: list[dict]
    files: dict[str, bytes] = field(default_factory=dict)


def run_series_task(series: Series, settings: Settings, options: TaskOptions = TaskOptions()) -> TaskResult:
    """The unit of work of a batch: one series through the pipeline, plus its overlay and SEG.

    Runs the same on the local pool and on dask. Never raises for bad data; a failed overlay or
    SEG is a note on the series row, not a failed series.
    """
    name = safe_name(series.key)
    files: dict[str, bytes] = {}
    notes: list[str] = []

    def on_measured(scan, seg, rows) -> None:
        if options.overlays:
            try:
                from calcimg.report._overlay import render_overlay

                files[f"overlays/{name}.png"] = render_overlay(scan, seg, rows, title=series.key)
            except Exception as exc:  # a picture must never cost the measurements
                notes.append(f"overlay not drawn: {type(exc).__name__}: {exc}")
        if options.seg and scan.kind == "ct":
            try:
                from calcimg.report._seg import SegNotWritten, seg_bytes
            except ImportError:
                notes.append("SEG not written: highdicom is not installed (pip install 'calcimg[seg]')")
                return
            try:
                files[f"seg/{name}.dcm"] = seg_bytes(series, scan, seg, software_version=__version__)
            except SegNotWritten as exc:
                notes.append(f"SEG not written: {exc}")
            except Exception as exc:
                notes.append(f"SEG not written: {type(exc).__name__}: {exc}")

    result = process_series(series, settings, on_measured=on_measured, mask_path=options.mask)
    row = result.series
    if notes:
        row["notes"] = "; ".join(n for n in (row.get("notes", ""), *notes) if n)
    row["overlay"] = next((p for p in files if p.startswith("overlays/")), "")
    row["seg_file"] = next((p for p in files if p.startswith("seg/")), "")
    return TaskResult(key=series.key, series=row, lesions=result.lesions, files=files)


# --------------------------------------------------------------------------------------------
# Executors: submit(series) -> results as they complete, as (series, TaskResult | str reason).


def _worker_init() -> None:
    os.environ.update(_WORKER_ENV)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle


class LocalPool:
    """The default executor: a pebble process pool (see the module docstring for why)."""

    name = "local"

    def __init__(self, workers: int, timeout: float | None, task: Callable) -> None:
        import multiprocessing

        from pebble import ProcessPool

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["calcimg.pipeline", "calcimg.batch"])
        self.workers = workers
        self.timeout = timeout
        self.task = task
        self.pool = ProcessPool(max_workers=workers, initializer=_worker_init, context=ctx)

    def run(self, series: list[Series], settings: Settings, options: TaskOptions) -> Iterator[tuple[Series, object]]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures import TimeoutError as FutureTimeout

        from pebble import ProcessExpired

        pending = {self.pool.schedule(self.task, args=(s, settings, options), timeout=self.timeout): s
                   for s in series}
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                s = pending.pop(fut)
                try:
                    yield s, fut.result()
                except FutureTimeout:
                    yield s, f"timed out after {self.timeout:g} s (--timeout); its worker was stopped"
                except ProcessExpired as exc:
                    yield s, f"worker process died ({_exit_reason(exc.exitcode)}) while processing this series"
                except Exception as exc:
                    yield s, f"internal error in worker {type(exc).__name__}: {exc}"

    def close(self, cancel: bool = False) -> None:
        if cancel:
            self.pool.stop()
        else:
            self.pool.close()
        self.pool.join()


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = ", killed by the OS, e.g. out of memory" if -code == signal.SIGKILL else ""
        return f"{name}{hint}"
    return f"exit code {code}"


def _run_with_time_limit(task: Callable, series: Series, settings: Settings, options: TaskOptions,
                         timeout: float | None):
    """The dask task: `task` in this worker, or in a forked child stopped after `timeout` s."""
    import multiprocessing

    if not timeout:
        return task(series, settings, options)
    if multiprocessing.current_process().daemon:
        result = task(series, settings, options)
        result.series["notes"] = "; ".join(
            n for n in (result.series.get("notes", ""),
                        "timeout not enforced: dask worker is daemonic (distributed.worker.daemon: false)") if n)
        return result
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_main, args=(send, task, series, settings, options), daemon=True)
    child.start()
    send.close()
    try:
        if recv.poll(timeout):
            try:
                status, payload = recv.recv()
            except EOFError:
                status, payload = "died", None
        else:
            status, payload = "timeout", None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        recv.close()
    if status == "ok":
        return payload
    if status == "timeout":
        return f"timed out after {timeout:g} s (--timeout); its process was stopped"
    if status == "error":
        return f"internal error in worker {payload}"
    return f"worker process died ({_exit_reason(child.exitcode)}) while processing this series"


def _child_main(send, task, series, settings, options) -> None:
    try:
        send.send(("ok", task(series, settings, options)))
    except BaseException as exc:
        send.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        send.close()


class DaskExecutor:
    """dask.distributed: a running scheduler, or a LocalCluster started here."""

    name = "dask"

    def __init__(self, task: Callable, timeout: float | None, *, scheduler: str | None = None,
                 local_workers: int | None = None) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ValueError("dask.distributed is not installed: pip install 'calcimg[dask]'") from exc
        self.task, self.timeout, self.cluster = task, timeout, None
        if scheduler:
            self.client = Client(scheduler, timeout="30s")
        else:
            with dask.config.set({"distributed.worker.daemon": False}):
                self.cluster = LocalCluster(n_workers=local_workers or 1, threads_per_worker=1, processes=True,
                                            host="127.0.0.1", dashboard_address=None,
                                            silence_logs=logging.ERROR, env=_WORKER_ENV)
            self.client = Client(self.cluster)

    def run(self, series: list[Series], settings: Settings, options: TaskOptions) -> Iterator[tuple[Series, object]]:
        from distributed import KilledWorker, as_completed

        pending = {}
        for s in series:
            fut = self.client.submit(_run_with_time_limit, self.task, s, settings, options, self.timeout,
                                     pure=False, key=f"calcimg-{safe_name(s.key)}-{os.urandom(4).hex()}")
            pending[fut.key] = (fut, s)
        for fut in as_completed([f for f, _ in pending.values()]):
            _, s = pending.pop(fut.key)
            try:
                yield s, fut.result()
            except KilledWorker:
                yield s, "worker process died repeatedly while processing this series (dask KilledWorker)"
            except Exception as exc:
                yield s, f"internal error in worker {type(exc).__name__}: {exc}"
            fut.release()

    def close(self, cancel: bool = False) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


# --------------------------------------------------------------------------------------------
# Progress and log


class _Progress:
    """A tqdm bar on a terminal, plain log lines otherwise; every line also goes to the log file."""

    def __init__(self, out_dir: Path, total: int, initial: int, mode: str, log: Callable[[str], None] | None):
        self.logger = logging.getLogger(f"calcimg.batch.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.file = logging.FileHandler(out_dir / LOG_NAME, encoding="utf-8")
        self.file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.logger.addHandler(self.file)
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode, self.log, self.total, self.done, self.lesions, self.errors = mode, log, total, initial, 0, 0
        self.t0, self.new = time.monotonic(), 0
        self.last_line = 0.0
        self.bar = None
        if mode == "bar" and log is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="series", dynamic_ncols=True, file=sys.stderr,
                            smoothing=0.1)
            self.bar.set_postfix(lesions=0, errors=0)

    def info(self, msg: str) -> None:
        self.logger.info(msg)
        self._echo(msg, important=False)

    def warn(self, msg: str) -> None:
        self.logger.warning(msg)
        self._echo(msg, important=True)

    def _echo(self, msg: str, important: bool) -> None:
        if self.log is not None:
            self.log(msg)
        elif self.bar is not None:
            if important:
                self.bar.write(msg, file=sys.stderr)
        elif self.mode == "lines" or (self.mode == "quiet" and important):
            print(msg, file=sys.stderr, flush=True)

    def series_done(self, row: dict) -> None:
        self.done += 1
        self.new += 1
        n = int(row.get("n_lesions") or 0)
        self.lesions += n
        self.errors += row.get("status") == "error"
        reason = f"  ({row['reason']})" if row.get("reason") else ""
        msg = (f"[{self.done}/{self.total}] {row.get('status', ''):7s} {row.get('kind', ''):10s} {n:5d} lesions "
               f"{row.get('seconds') or 0:7.2f} s  {row.get('series_key', '')}  {row.get('source', '')}{reason}")
        if row.get("status") == "error":
            self.warn(msg)
        else:
            self.info(msg)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(lesions=self.lesions, errors=self.errors, refresh=False)
        elif self.mode == "lines" and self.log is None and time.monotonic() - self.last_line > 10:
            self.last_line = time.monotonic()
            print(self.rate_line(), file=sys.stderr, flush=True)

    def rate_line(self) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = self.new / elapsed * 60
        left = self.total - self.done
        eta = left / (self.new / elapsed) if self.new else float("nan")
        eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta == eta else "?"
        return (f"progress: {self.done}/{self.total} series, {self.lesions} lesions, {rate:.1f} series/min, "
                f"ETA {eta_s}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.logger.removeHandler(self.file)
        self.file.close()


# --------------------------------------------------------------------------------------------
# The batch


@dataclass
class BatchSummary:
    n_series: int
    n_ok: int
    n_error: int
    n_skipped: int
    n_lesions: int
    out_dir: Path
    n_resumed: int = 0
    seconds: float = 0.0

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


def _output_error(exc: OSError, out_dir: Path) -> OutputError:
    where = exc.filename or out_dir
    return OutputError(f"cannot write to {where}: {exc.strerror or exc}")


def _prepare_out_dir(out: Path, resume: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / PARTS_DIR).mkdir(exist_ok=True)
    remove_stale_temporaries(out)
    if not resume:  # a fresh run owns these folders: results of an earlier run must not leak in
        for sub, pattern in ((PARTS_DIR, "*.json"), ("overlays", "*.png"), ("seg", "*.dcm")):
            for p in (out / sub).glob(pattern) if (out / sub).is_dir() else ():
                p.unlink()


def _done_part(out: Path, s: Series, settings: Settings, options: TaskOptions, retry_errors: bool) -> bool:
    doc = read_part(part_path(out, s.key))
    if doc is None or doc.get("key") != s.key or doc.get("settings_hash") != settings.hash:
        return False
    if retry_errors and doc["series"].get("status") == "error":
        return False
    made = doc.get("options") or {}
    return TaskOptions(bool(made.get("overlays")), bool(made.get("seg")), made.get("mask")).covers(options)


def _failure_row(s: Series, settings: Settings, reason: str) -> dict:
    row = series_row(s, settings)
    row.update(status="error", reason=f"{s.source}: {reason}", overlay="", seg_file="")
    return row


def run_batch(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    settings: Settings | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    dask_local: int | None = None,
    resume: bool = False,
    retry_errors: bool = False,
    timeout: float | None = None,
    overlays: bool = True,
    seg: bool = False,
    mask: str | Path | None = None,
    progress: str = "auto",
    log: Callable[[str], None] | None = None,
    task: Callable = run_series_task,
) -> BatchSummary:
    """Process every series under `inputs` and write the output tables into `out_dir`.

    Parameters
    ----------
    workers : int, optional
        Local worker processes (default: the CPU count). ``workers=0`` runs in this process (no
        timeout, no protection against a crashing worker; for debugging).
    scheduler : str, optional
        Address of a dask.distributed scheduler (``tcp://host:port``) to run on instead.
    dask_local : int, optional
        Start a dask LocalCluster with this many worker processes and run on it.
    resume : bool
        Keep the series already done with the same settings (``OUT/parts``); redo the others.
    retry_errors : bool
        With `resume`, redo the series whose earlier result was an error.
    timeout : float, optional
        Seconds a series may take; past it, the series is stopped and becomes an error row.
    overlays, seg : bool
        Write ``overlays/<key>.png`` per series; write ``seg/<key>.dcm`` (DICOM SEG) per CT series.
    mask : path, optional
        A NIfTI/NRRD label image on the input's grid: every label is measured as a lesion instead
        of segmenting (a series whose geometry differs becomes an error row naming the file).
    progress : {"auto", "bar", "lines", "quiet"}
        A progress bar ("auto": when stderr is a terminal), a log line per series, or errors only.
    log : callable, optional
        Receives every log line instead of stderr.
    task : callable
        The per-series task (tests pass a faulty one); must be picklable.

    Raises
    ------
    FileNotFoundError
        An input does not exist.
    ValueError
        Bad usage: output inside an input folder, dask not installed.
    OutputError
        The output folder cannot be written.
    """
    settings = settings or Settings()
    if mask is not None and not Path(mask).exists():
        raise FileNotFoundError(f"{mask}: no such mask file")
    options = TaskOptions(overlays=overlays, seg=seg, mask=None if mask is None else str(Path(mask).resolve()))
    check_out_dir(inputs, out_dir)
    out = Path(out_dir)
    t0 = time.monotonic()
    found = discover(inputs)  # before touching the output: a missing input is a usage error
    try:
        _prepare_out_dir(out, resume)
        write_data_dictionary(out)
        atomic_write_text(out / "settings.toml", settings.to_toml())
        progress_ = _Progress(out, total=len(found.series), initial=0, mode=progress, log=log)
    except OSError as exc:
        raise _output_error(exc, out) from exc

    executor = None
    try:
        todo = [s for s in found.series if not (resume and _done_part(out, s, settings, options, retry_errors))]
        n_resumed = len(found.series) - len(todo)
        progress_.done = n_resumed
        if progress_.bar is not None:
            progress_.bar.n = n_resumed
            progress_.bar.refresh()
        if resume:
            progress_.info(f"resume: {n_resumed} series already done with settings {settings.hash}, "
                           f"{len(todo)} to do")
        progress_.info(f"{len(found.series)} series, {len(found.skipped)} file(s) skipped by discovery; "
                       f"calcimg {__version__}, settings {settings.hash}")
        if todo:
            if scheduler or dask_local:
                executor = DaskExecutor(task, timeout, scheduler=scheduler, local_workers=dask_local)
                progress_.info(f"executor: dask ({scheduler or f'LocalCluster, {dask_local} workers'})")
            elif workers == 0:
                executor = None
            else:
                n = workers or os.cpu_count() or 1
                executor = LocalPool(min(n, len(todo)), timeout, task)
                progress_.info(f"executor: local process pool, {executor.workers} workers")
            results = (_in_process(todo, task, settings, options) if executor is None
                       else executor.run(todo, settings, options))
            for s, res in results:
                if isinstance(res, str):
                    res = TaskResult(key=s.key, series=_failure_row(s, settings, res), lesions=[])
                _save(out, res, settings, options)
                progress_.series_done(res.series)
        if executor is not None:
            executor.close()
            executor = None

        series_rows = [_discovery_row(skip, settings) for skip in found.skipped]
        lesions_by_key: dict[str, list[dict]] = {}
        for s in found.series:
            doc = read_part(part_path(out, s.key))
            if doc is None:  # cannot happen unless a part was removed under us
                doc = {"series": _failure_row(s, settings, "result part missing; run again with --resume"),
                       "lesions": []}
            series_rows.append(doc["series"])
            lesions_by_key[s.key] = doc["lesions"]
        series_rows, lesion_rows = merge_rows(series_rows, lesions_by_key)
        write_tables(out, series_rows, lesion_rows)
    except OSError as exc:
        progress_.close()
        raise _output_error(exc, out) from exc
    except BaseException:
        progress_.close()
        raise
    finally:
        if executor is not None:
            executor.close(cancel=True)

    statuses = [r.get("status") for r in series_rows]
    summary = BatchSummary(
        n_series=len(series_rows),
        n_ok=statuses.count("ok"),
        n_error=statuses.count("error"),
        n_skipped=statuses.count("skipped"),
        n_lesions=len(lesion_rows),
        out_dir=out,
        n_resumed=n_resumed,
        seconds=time.monotonic() - t0,
    )
    progress_.info(f"done: {summary.n_ok} ok, {summary.n_error} failed, {summary.n_skipped} skipped, "
                   f"{summary.n_lesions} lesions in {summary.seconds:.1f} s")
    progress_.close()
    return summary


def _in_process(todo: list[Series], task: Callable, settings: Settings, options: TaskOptions):
    for s in todo:
        try:
            yield s, task(s, settings, options)
        except Exception as exc:
            yield s, f"internal error {type(exc).__name__}: {exc}"


def _discovery_row(skip, settings: Settings) -> dict:
    return {"source": str(skip.path), "status": skip.status, "reason": f"{skip.path}: {skip.reason}",
            "n_files": 1, "calcimg_version": __version__, "settings_hash": settings.hash}


def _save(out: Path, res: TaskResult, settings: Settings, options: TaskOptions) -> None:
    """Write a result's files, then its part (the part marks the series done)."""
    for rel, data in res.files.items():
        path = out / rel
        path.parent.mkdir(exist_ok=True)
        atomic_write_bytes(path, data)
    write_part(out, res.key, res.series, res.lesions, settings.hash, __version__,
               options={"overlays": options.overlays, "seg": options.seg, "mask": options.mask})
