"""The command line of the experiments: ``python -m dalign_nb experiment NAME ...`` (``--help``)."""

from __future__ import annotations

import argparse
import shlex
import sys

from dalign_nb.config import parse_sets, parse_value
from dalign_nb.data import DatasetNotFoundError

from .catalogue import EXPERIMENTS, plan
from .files import RESULTS_DIR, ROOT, RUNS_DIR, DamagedResultError, ExperimentError
from .files import paths as experiment_paths
from .measures import MEASURES
from .runner import run_experiment, run_state

__all__ = ["main"]


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _list(args, overrides) -> int:
    """Each run and how far it got; a damaged result file is named and the listing goes on."""
    paths = experiment_paths(args.name, args.tag, args.runs, args.results)
    damaged = 0
    for run in plan(args.name, profile=args.profile, seeds=args.seeds, overrides=overrides):
        try:
            state = run_state(run, paths)
        except DamagedResultError as exc:
            state, damaged = f"damaged: {exc}", damaged + 1
        print(f"{run.name:24s} {state}")
    return 1 if damaged else 0


def _parser() -> argparse.ArgumentParser:
    table = "\n".join(f"  {e.name:8s} {len(e.conditions)} condition(s), {len(plan(e.name))} run(s): "
                      f"{e.description}" for e in EXPERIMENTS.values())
    p = argparse.ArgumentParser(
        prog="python -m dalign_nb experiment", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train and measure the runs of a named experiment; results in "
                    "data/results/<experiment>/<run>.json, checkpoints in runs/<experiment>/<run>/. "
                    "Running it again skips finished runs and resumes interrupted ones.",
        epilog=f"experiments:\n{table}")
    p.add_argument("name", nargs="?", help="experiment (listed below)")
    p.add_argument("--profile", default=None, help="run every condition on this profile instead")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="instead of the experiment's")
    p.add_argument("--device", default=None, help="default: CUDA if available, else CPU")
    p.add_argument("--jobs", type=_at_least_one, default=1, help="runs at once (subprocesses)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="change a profile field of every run, e.g. --set train.total_iter=500")
    p.add_argument("--option", action="append", default=[], metavar="MEASURE.KEY=VALUE",
                   help="change a measurement's option, e.g. --option offsets_vs_flow.num_scenes=1 "
                        "(smoke runs: not compared when skipping finished runs)")
    p.add_argument("--only", nargs="+", default=None, metavar="RUN", help="run only these runs")
    p.add_argument("--stop-at", type=int, default=None, help="stop each run after this iteration")
    p.add_argument("--fresh", action="store_true", help="discard results and checkpoints first")
    p.add_argument("--remeasure", action="store_true", help="measure finished runs again")
    p.add_argument("--tag", default=None, help="keep results and runs in <name>-<tag>")
    p.add_argument("--list", action="store_true", help="list the runs and their state, then exit")
    p.add_argument("--runs", default=None, help=f"runs folder (default {RUNS_DIR.relative_to(ROOT)})")
    p.add_argument("--results", default=None,
                   help=f"results folder (default {RESULTS_DIR.relative_to(ROOT)})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=_at_least_one, default=None,
                   help="torch threads per run (default: all cores; with --jobs K on a CPU, cores / K)")
    p.add_argument("--command", default=None, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    """``python -m dalign_nb experiment NAME ...``; exit code 0, 1 (a run failed, or bad input: one
    line on stderr naming it), 2 (bad arguments), 130 (Ctrl-C). ``--list`` exits 1 when a result
    file is damaged."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.name is None:
        parser.print_help()
        return 2
    try:
        overrides = parse_sets(args.set)
    except ValueError as exc:
        parser.error(f"--set expects SECTION.FIELD=VALUE, got {exc.args[0]!r}")
    options: dict[str, dict] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        measure, dot, field = key.partition(".")
        if not (sep and dot) or measure not in MEASURES:
            parser.error(f"--option expects MEASURE.KEY=VALUE, MEASURE one of {sorted(MEASURES)}; "
                         f"got {item!r}")
        options.setdefault(measure, {})[field] = parse_value(value)
    try:
        if args.list:
            return _list(args, overrides)
        status = run_experiment(
            args.name, profile=args.profile, seeds=args.seeds, device=args.device, jobs=args.jobs,
            overrides=overrides, only=args.only, stop_at=args.stop_at, fresh=args.fresh,
            remeasure=args.remeasure, tag=args.tag, runs_dir=args.runs, results_dir=args.results,
            progress=not args.no_progress, threads=args.threads, options=options,
            command=args.command or shlex.join(["python", "-m", "dalign_nb", "experiment", *argv]))
    except (ValueError, ExperimentError, DatasetNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: checkpoints kept; run the same command again to resume", flush=True)
        return 130
    if any(s in ("SIGINT", "SIGTERM") for s in status.values()):
        print("interrupted: checkpoints kept; run the same command again to resume", flush=True)
        return 130 if "SIGINT" in status.values() else 143
    if any(s.startswith("failed") for s in status.values()):
        return 1
    return 0
