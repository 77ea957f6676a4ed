"""Benchmark: EDVR training iterations per second with the decomposed vs torchvision DCN.

``python -m dalign_nb.bench train`` (or ``python -m dalign_nb.bench_train``). One training
iteration is what ``dalign_nb.train`` does per step: forward, Charbonnier loss, backward,
Adam step. Models: EDVR-M (the paper's, Sec. A.1) and the ``standard`` profile's small
EDVR, each at its profile's batch and LR patch size unless overridden. Both backends run
the same model and weights (``EDVR.set_backend``); runs are interleaved (the order
alternates every round) so that a machine's drifting load hits both alike, and the table
reports medians. CPU, float32, 2 threads by default.
"""

from __future__ import annotations

import argparse
import statistics
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dalign_nb.bench train",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed iterations per backend (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--edvr-m-batch", type=int, default=1, help="EDVR-M batch (paper: 16)")
    parser.add_argument("--edvr-m-patch", type=int, default=64, help="EDVR-M LR patch (paper: 64)")
    parser.add_argument("--only", choices=("EDVR-M", "standard"), default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
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
