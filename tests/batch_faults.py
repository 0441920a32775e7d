"""Per-series tasks that misbehave on purpose, for the batch tests (importable by worker processes).

The series' input folder name says what goes wrong: ``raise`` (an exception in the worker, outside
the pipeline's own guard), ``crash`` (the worker kills itself with SIGKILL, as the OOM killer
would), ``hang`` (never returns; --timeout must stop it). Other series run normally.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from calcimg.batch import run_batch, run_series_task


def faulty_task(series, settings, options):
    name = Path(series.source).name
    if name == "raise":
        raise RuntimeError("injected worker failure")
    if name == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if name == "hang":
        time.sleep(3600)
    return run_series_task(series, settings, options)


def slow_task(series, settings, options):
    """A normal task that takes at least 0.4 s, so that a test can kill a batch midway."""
    time.sleep(0.4)
    return run_series_task(series, settings, options)


if __name__ == "__main__":  # python batch_faults.py INPUT OUT: a slow batch to be killed
    run_batch([sys.argv[1]], sys.argv[2], workers=1, task=slow_task, progress="lines")
