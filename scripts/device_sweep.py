"""Run the most valuable pending runs of several experiments at once, until a deadline, and pack
their results: the whole of a short loan of a GPU in one command.

    python scripts/device_sweep.py --device cuda --jobs 12 --deadline 480 --pack OUT/results.tar.gz
    python scripts/device_sweep.py --plan                # the order, and what is already done

The runs go in ``PRIORITY`` order, ``--jobs`` at a time, each a subprocess ``python -m dalign_nb
experiment NAME --only RUN --device DEVICE --jobs 1 --threads T`` (its output in the run folder's
``log.txt``; finished runs are skipped, interrupted ones resume from their checkpoints). At the
deadline every run still training is stopped as Ctrl-C stops it (after the current iteration,
with a checkpoint) and no new one starts; the result files (json and kept weights) written since
the start are packed into one ``.tar.gz`` (paths from the repository root), so that they can be
unpacked into a checkout and committed. A result records the device it trained on.

``--set`` / ``--option`` / ``--profile`` / ``--tag`` / ``--runs`` / ``--results`` pass through to
every run (a smoke test: ``--profile quick --set train.total_iter=2 --tag smoke``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dalign_nb.config import parse_sets  # noqa: E402
from dalign_nb.experiments import EXPERIMENTS, plan  # noqa: E402
from dalign_nb.experiments.files import paths as experiment_paths  # noqa: E402
from dalign_nb.experiments.parallel import run_parallel  # noqa: E402
from dalign_nb.experiments.runner import child_status, run_state  # noqa: E402

# (experiment, condition): the comparisons of Sec. 4 first (each needs its 3 seeds, and its
# baseline fig9 n1 first of all), then the grid points of one seed, Table 1's twins, Table 2
# (each family's N = 1, the premise of its verdict, then its largest N, then the middle one),
# and fig5's remaining seeds.
PRIORITY = (
    [("fig9", c) for c in ("n1", "n5", "n15")]
    + [("table4", "image_warping"), ("fig17", "dcnv2-k3")]
    # each control before its pair: whether the rate alone breaks training (report.rate_premise)
    + [("table3", c) for c in ("dcn_fidelity", "flow_guided_lr4x", "flow_frozen_align4x", "dcn_align4x",
                               "dcn_fidelity_all_align4x", "dcn_lr4x", "dcn_fidelity_lr4x", "flow_guided",
                               "n1_fidelity_all_lr4x")]
    + [("fig16", f"g4-n{n}") for n in (1, 5)]
    + [("fig9", c) for c in ("n3", "n9", "n25")] + [("fig17", "dcnv2-k5")]
    + [("fig16", f"g{g}-n{n}") for g in (2, 8) for n in (1, 5)]
    + [("table1", c.name) for c in EXPERIMENTS["table1"].conditions]
    + [("table2", c) for c in ("tdan-n1", "flownet-n1", "tdan-n25", "flownet-n3", "tdan-n9", "flownet-n2")]
    + [("fig5", c) for c in ("round2_sr_only", "edvr_sr_only", "round2_wte_only", "round2_census_only",
                             "round2_cost_volume")]
)


class _PerExperiment:
    """``Paths`` of each run's own experiment (``run_parallel`` takes one object)."""

    def __init__(self, tag, runs_dir, results_dir):
        self.args = tag, runs_dir, results_dir

    def of(self, run):
        return experiment_paths(run.experiment.name, *self.args)

    def run_dir(self, run):
        return self.of(run).run_dir(run)

    def result(self, run):
        return self.of(run).result(run)


def queue(profile=None, tag=None, runs_dir=None, results_dir=None, overrides=None, experiments=None) -> list:
    """The runs in ``PRIORITY`` order (of ``experiments`` only, if given), seed by seed within a
    condition; with their state."""
    out = []
    for name, condition in PRIORITY:
        if experiments is not None and name not in experiments:
            continue
        for run in plan(name, profile=profile, overrides=overrides):
            if run.condition == condition:
                out.append((run, run_state(run, experiment_paths(name, tag, runs_dir, results_dir))))
    return out


def pack(files: list[Path], target: Path, base: Path = ROOT) -> None:
    """``files`` into the ``.tar.gz`` ``target``, named from ``base`` (the results folder's parent
    for a folder outside the repository)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as tar:
        for f in files:
            tar.add(f, arcname=str(f.resolve().relative_to(base.resolve())))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--deadline", type=float, default=480, help="seconds; then stop and pack")
    p.add_argument("--pack", type=Path, default=None, help="a .tar.gz of the results written")
    p.add_argument("--plan", action="store_true", help="print the order and each run's state, then exit")
    p.add_argument("--only-experiments", nargs="+", default=None, metavar="NAME")
    p.add_argument("--first", type=int, default=None, help="only the first N runs still to do")
    p.add_argument("--profile", default=None)
    p.add_argument("--tag", default=None)
    p.add_argument("--runs", default=None)
    p.add_argument("--results", default=None)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--option", action="append", default=[])
    args = p.parse_args(argv)

    try:
        overrides = parse_sets(args.set)
    except ValueError as exc:
        p.error(f"--set needs FIELD=VALUE, got {exc}")
    runs = queue(args.profile, args.tag, args.runs, args.results, overrides, args.only_experiments)
    if args.plan:
        for run, state in runs:
            print(f"{run.experiment.name:8s} {run.name:24s} {state}")
        print(f"{sum(s == 'done' for _, s in runs)} of {len(runs)} done")
        return 0
    todo = [r for r, s in runs if s != "done"][:args.first]
    passthrough = [a for flag, values in (("--set", args.set), ("--option", args.option))
                   for v in values for a in (flag, v)]
    for flag, value in (("--profile", args.profile), ("--tag", args.tag), ("--runs", args.runs),
                        ("--results", args.results)):
        if value is not None:
            passthrough += [flag, value]
    paths = _PerExperiment(args.tag, args.runs, args.results)

    def child_args(run, threads):
        return ["experiment", run.experiment.name, "--only", run.name, "--jobs", "1", "--threads",
                str(threads), "--device", args.device, "--no-progress", *passthrough]

    def status_of(run, paths_, code):
        return child_status(run, paths_.of(run), code)

    def state(run, paths_):
        return run_state(run, paths_.of(run))

    def stop(signum, frame):
        raise KeyboardInterrupt

    start = time.time()
    print(f"{len(todo)} runs to go, {args.jobs} at a time on {args.device}, deadline {args.deadline:.0f} s",
          flush=True)
    signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, args.deadline)
    status, finished_all = {}, True
    try:
        status = run_parallel(todo, paths, args.jobs, child_args, status_of, state, args.threads)
    except KeyboardInterrupt:
        finished_all = False
        print(f"deadline after {time.time() - start:.0f} s: unfinished runs stopped with a checkpoint",
              flush=True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    written = sorted({f for r in todo for f in (paths.result(r), paths.of(r).weights(r))
                      if f.exists() and f.stat().st_mtime >= start})
    done = [r.experiment.name + "/" + r.name for r in todo if paths.result(r) in written]
    print(f"{len(done)} runs finished in {time.time() - start:.0f} s: {', '.join(done) or 'none'}")
    if args.pack is not None:
        pack(written, args.pack, ROOT if args.results is None else Path(args.results).parent)
        print(f"packed {len(written)} files into {args.pack}")
    return 0 if finished_all and all(v == "done" for v in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
