"""Command line: ``python -m dalign_nb train ...`` (see ``--help``).

Examples::

    python -m dalign_nb train --profile quick                       # a minute on a CPU
    python -m dalign_nb train --profile standard --alignment decomposed --num-offsets 1
    torchrun --nproc_per_node 4 -m dalign_nb train --profile paper  # 4 GPUs, DDP

The paper's two stages (Sec. A.1): first EDVR without TSA, then the full model initialised
from it, with only TSA training for the first 50k iterations::

    torchrun --nproc_per_node 4 -m dalign_nb train --profile paper --out runs/paper-wotsa \
        --set model.with_tsa=False --set train.tsa_iter=0
    torchrun --nproc_per_node 4 -m dalign_nb train --profile paper \
        --set train.pretrained=runs/paper-wotsa/model.pt

A run folder (default ``runs/<profile>-<alignment>``) holds ``checkpoint.pt``,
``history.json`` and, when finished, ``model.pt``; running the same command again resumes
from the checkpoint (``--fresh`` starts over). A resumed run may change its schedule (e.g.
``--iters 800`` after 400: the new cosine applies from iteration 400); changing the model
or the data order is refused.

Named experiments (sets of runs, measured and recorded in ``data/results/``; see
``dalign_nb.experiments``)::

    python -m dalign_nb experiment fig5 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import sys

from dalign_nb.config import PROFILES, get_profile, parse_sets
from dalign_nb.data import DatasetNotFoundError
from dalign_nb.train import run_dir, train

EXIT_CODES = {"done": 0, "stopped": 0, "SIGINT": 130, "SIGTERM": 143}


def _overrides(profile, args):
    """The profile with ``--set FIELD=VALUE`` and the named flags applied (``config.with_overrides``)."""
    try:
        changes = parse_sets(args.set, reserved=("name", "description"))
    except ValueError as exc:
        raise SystemExit(f"--set expects FIELD=VALUE with FIELD one of the profile's dotted fields, "
                         f"e.g. train.lr or model.alignment.kind; got {exc.args[0]!r}") from None
    for flag, key in (("alignment", "model.alignment.kind"), ("num_offsets", "model.alignment.num_offsets"),
                      ("backend", "model.alignment.backend"), ("batch_size", "data.batch_size"),
                      ("seed", "train.seed"), ("iters", "train.total_iter")):
        if getattr(args, flag) is not None:
            changes[key] = getattr(args, flag)
    return profile.with_overrides(changes)


def _train(argv) -> int:
    parser = argparse.ArgumentParser(prog="python -m dalign_nb train", description=(
        "Train EDVR with a chosen alignment (Sec. A.1 of the paper). The profile sets every "
        "hyper-parameter; flags and --set change single fields."))
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None,
                        help="default: $DALIGN_PROFILE, else quick")
    parser.add_argument("--out", default=None, help="run folder (default runs/<profile>-<alignment>)")
    parser.add_argument("--alignment", default=None,
                        help="dcn, decomposed, flow, image or flow_guided")
    parser.add_argument("--num-offsets", type=int, default=None, help="N of --alignment decomposed")
    parser.add_argument("--backend", default=None, help="DCN backend: decomposed or torchvision")
    parser.add_argument("--iters", type=int, default=None, help="total iterations")
    parser.add_argument("--batch-size", type=int, default=None, help="total batch over all processes")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--stop-at", type=int, default=None,
                        help="stop after this iteration with a checkpoint (resume later)")
    parser.add_argument("--set", action="append", metavar="FIELD=VALUE",
                        help="change any config field by its dotted name, e.g. --set train.lr=2e-4 or "
                             "--set model.alignment.kernel_size=1 (repeatable)")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--device", default=None, help="default: CUDA if available, else CPU")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--print-config", action="store_true", help="print the config and exit")
    args = parser.parse_args(argv)

    try:
        profile = _overrides(get_profile(args.profile), args)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"invalid configuration: {exc}") from exc
    if args.print_config:
        for key, value in profile.flat().items():
            print(f"{key} = {value!r}")
        return 0
    out = args.out or run_dir(profile)
    try:
        res = train(profile, out, resume=not args.fresh, stop_at=args.stop_at, device=args.device,
                    progress=not args.no_progress)
    except DatasetNotFoundError as exc:  # what to download and where to put it, in one line
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", 0)) != 0:  # torchrun: one summary
        return EXIT_CODES.get(res.status, 1)
    val = res.final_val()
    summary = [f"{res.status} at iteration {res.iteration} of {profile.train.total_iter}; run folder {out}"]
    if val:
        summary.append(f"validation PSNR {val['psnr']:.2f} dB (bicubic {val['psnr_bicubic']:.2f} dB)")
    if res.overflow:
        summary.append(f"offset overflow recorded {len(res.overflow)} time(s): see history.json")
    print("\n".join(summary))
    return EXIT_CODES.get(res.status, 1)


def _experiment(argv) -> int:
    from dalign_nb.experiments import main as experiment_main

    return experiment_main(argv)


COMMANDS = {"train": _train, "experiment": _experiment}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        print(f"commands: {', '.join(COMMANDS)}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
