"""Several runs of an experiment at once, each in its own subprocess (``--jobs K``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tqdm.auto import tqdm

__all__ = ["cpu_count", "run_parallel"]


def cpu_count() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_parallel(runs, paths, jobs: int, child_args, child_status, state, threads=None) -> dict[str, str]:
    """``jobs`` runs at a time in subprocesses of ``python -m dalign_nb`` (output in each run
    folder's ``log.txt``), each with ``threads`` torch threads (default: the cores shared out).

    ``child_args(run, threads)``: the command line of one run; ``child_status(run, paths,
    exit_code)``: ``(status, a line for the log)`` of a finished one; ``state(run, paths)``: how
    far a run got (printed when it starts). A Ctrl-C reaches every child once (each stops after
    its current iteration with a checkpoint), then ``KeyboardInterrupt`` is raised again.
    """
    threads = threads or max(1, cpu_count() // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    pending, active, status = list(runs), {}, {}
    bar = tqdm(total=len(runs), desc="runs", unit="run", dynamic_ncols=True)
    try:
        while pending or active:
            while pending and len(active) < jobs:
                run = pending.pop(0)
                log = paths.run_dir(run) / "log.txt"
                log.parent.mkdir(parents=True, exist_ok=True)
                with open(log, "ab") as f:  # own session: a terminal's Ctrl-C reaches the parent only
                    proc = subprocess.Popen([sys.executable, "-m", "dalign_nb", *child_args(run, threads)],
                                            stdout=f, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
                active[proc] = run
                bar.write(f"started {run.experiment.name}/{run.name} ({state(run, paths)}); log {log}")
            time.sleep(0.5)
            for proc in [p for p in active if p.poll() is not None]:
                run = active.pop(proc)
                status[run.name], message = child_status(run, paths, proc.returncode)
                bar.update(1)
                bar.write(f"{run.experiment.name}/{run.name}: {message}")
    except KeyboardInterrupt:
        for proc in active:  # once: the trainer stops after the current iteration and checkpoints
            proc.send_signal(signal.SIGINT)
        for proc, run in active.items():
            proc.wait()
            status[run.name] = "SIGINT"
        raise
    finally:
        bar.close()
    return status
