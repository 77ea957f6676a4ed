"""Benchmark: EDVR training iterations per second with the decomposed vs torchvision DCN.

``python -m dalign_nb.bench train`` (or ``python -m dalign_nb.bench_train``). One training
iteration is what ``dalign_nb.train`` does per step: forward, Charbonnier loss, backward,
Adam step. Models: EDVR-M (the paper's, Sec. A.1) and the ``standard`` profile's small
EDVR, each at its profile's batch and LR patch size unless overridden. Both backends run
the same model and weights (``EDVR.set_backend``); runs are interleaved (the order
alternates every round) so that a machine's drifting load hits both alike, and the table
reports medians. CPU, float32, 2 threads by default.

``--precision`` (the ``align2`` profile by default, ``--profile``) times the trainer's own
iteration (``train._Run.step``: forward with the offsets, SR loss and the self-supervised
terms, backward, Adam) in float32 and on the CPU fast path: channels-last weights, and
bfloat16 autocast. bfloat16 runs natively only on CPUs with AVX512-BF16 or AMX
(``training.processes.cpu_bf16_support``); elsewhere oneDNN emulates it and the table says so.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from dalign_nb.config import get_profile
from dalign_nb.losses import charbonnier_loss
from dalign_nb.models.edvr import EDVR

BACKENDS = ("decomposed", "torchvision")


def _configs(args) -> dict:
    paper, standard = get_profile("paper"), get_profile("standard")
    return {
        "EDVR-M": paper.replace(data={"batch_size": args.edvr_m_batch, "patch_size": args.edvr_m_patch}),
        "standard": standard,
    }


def _step(model, optimizer, lq, gt) -> None:
    loss = charbonnier_loss(model(lq), gt)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def bench_profile(profile, rounds: int, warmup: int = 1, seed: int = 0) -> dict[str, list[float]]:
    """Seconds per training iteration for each backend, ``rounds`` interleaved runs each."""
    torch.manual_seed(seed)
    model = EDVR.from_config(profile.model).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=profile.train.lr, betas=profile.train.betas)
    b, p, t = profile.data.batch_size, profile.data.patch_size, profile.model.num_frame
    lq, gt = torch.rand(b, t, 3, p, p), torch.rand(b, 3, 4 * p, 4 * p)
    times = {k: [] for k in BACKENDS}
    for backend in BACKENDS:
        model.set_backend(backend)
        for _ in range(warmup):
            _step(model, optimizer, lq, gt)
    for r in range(rounds):
        for backend in BACKENDS if r % 2 == 0 else BACKENDS[::-1]:
            model.set_backend(backend)
            start = time.perf_counter()
            _step(model, optimizer, lq, gt)
            times[backend].append(time.perf_counter() - start)
    return times


def table(results: dict, profiles: dict) -> str:
    head = ("| model | batch x T x LR patch | decomposed it/s | torchvision it/s | "
            "decomposed s/it | torchvision s/it | speed-up |")
    lines = [head, "|" + " --- |" * 7]
    for name, times in results.items():
        p = profiles[name]
        d, tv = statistics.median(times["decomposed"]), statistics.median(times["torchvision"])
        shape = f"{p.data.batch_size} x {p.model.num_frame} x {p.data.patch_size}^2"
        lines.append(f"| {name} | {shape} | {1 / d:.3f} | {1 / tv:.3f} | {d:.2f} | {tv:.2f} | "
                     f"{tv / d:.2f}x |")
    return "\n".join(lines)


PRECISIONS = {  # name -> (TrainConfig changes, autocast dtype forced on the run)
    "float32": ({"cpu_amp": False, "channels_last": False}, None),
    "channels_last": ({"cpu_amp": False, "channels_last": True}, None),
    "bf16 + channels_last": ({"cpu_amp": False, "channels_last": True}, torch.bfloat16),
}


def bench_precision(profile, rounds: int, warmup: int = 1, seed: int = 0) -> dict[str, list[float]]:
    """Seconds per trainer iteration of ``profile`` for each of ``PRECISIONS`` (interleaved)."""
    from dalign_nb.train import _Run

    runs = {}
    for name, (changes, dtype) in PRECISIONS.items():
        run = _Run(profile.replace(train=changes), tempfile.mkdtemp(), None, [], None, "cpu", False)
        run.amp_dtype = dtype  # forced even where the CPU would fall back: the table says why
        runs[name] = run
    g = torch.Generator().manual_seed(seed)
    b, t, p = profile.data.batch_size, profile.model.num_frame, profile.data.patch_size
    batch = {"lq": torch.rand(b, t, 3, p, p, generator=g), "gt": torch.rand(b, 3, 4 * p, 4 * p, generator=g)}
    times = {k: [] for k in runs}
    for r in range(warmup + rounds):
        for name, run in (runs.items() if r % 2 == 0 else reversed(runs.items())):
            start = time.perf_counter()
            run.step(batch)
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def precision_table(times: dict) -> str:
    from dalign_nb.training.processes import cpu_bf16_support

    native, why = cpu_bf16_support()
    base = statistics.median(times["float32"])
    lines = ["| path | s / iteration | speed-up over float32 |", "| --- | ---: | ---: |"]
    for name, t in times.items():
        note = "" if "bf16" not in name or native else " (emulated)"
        lines.append(f"| {name}{note} | {statistics.median(t):.3f} | {base / statistics.median(t):.2f}x |")
    return "\n".join(lines) + f"\n\nbfloat16 on this CPU: {why}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dalign_nb.bench train",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed iterations per backend (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--edvr-m-batch", type=int, default=1, help="EDVR-M batch (paper: 16)")
    parser.add_argument("--edvr-m-patch", type=int, default=64, help="EDVR-M LR patch (paper: 64)")
    parser.add_argument("--only", choices=("EDVR-M", "standard"), default=None)
    parser.add_argument("--precision", action="store_true",
                        help="the trainer's iteration in float32 vs the CPU fast path instead")
    parser.add_argument("--profile", default="align2", help="profile of --precision")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.precision:
        times = bench_precision(get_profile(args.profile), args.rounds)
        print(f"\n{args.profile} trainer iteration on CPU ({torch.get_num_threads()} threads, median "
              f"of {args.rounds} interleaved rounds; torch {torch.__version__})\n")
        print(precision_table(times))
        return 0
    profiles = _configs(args)
    if args.only:
        profiles = {args.only: profiles[args.only]}
    results = {}
    for name, profile in profiles.items():
        results[name] = bench_profile(profile, args.rounds)
        print(f"{name}: done", flush=True)
    print(f"\nEDVR training iterations on CPU ({torch.get_num_threads()} threads, float32, "
          f"median of {args.rounds} interleaved runs; torch {torch.__version__})\n")
    print(table(results, profiles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
