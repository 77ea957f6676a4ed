"""Benchmarks: ``python -m dalign_nb.bench dcn`` (and ``train``, see ``bench_train``; ``widgets``,
the redraw times of ``dalign_nb.widgets``' offset viewer).

``dcn`` times ``deform_conv2d``'s backends and a dense ``conv2d`` of the same shape,
forward and forward+backward, float32, on the CPU with 2 threads by default:

* the EDVR-M alignment shape: B=4, C=64, 64x64, G=8, k=3, with mask (DCNv2);
* a full LR frame of REDS: B=1, C=64, 180x320, G=8, k=3, with mask.

Runs are interleaved (one run of every implementation per round) and the medians are
reported with ratios against torchvision and against the dense convolution. OpenMP's
wait policy matters on small machines, so by default the whole benchmark runs twice,
in fresh processes: with ``OMP_WAIT_POLICY`` unset (the default) and ``PASSIVE``.
Peak memory of one forward+backward at the full-frame shape is the growth of the peak
resident set size of a fresh process (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from dalign_nb.ops import deform_conv2d

IMPLS = ("decomposed", "torchvision", "naive", "conv2d")


@dataclass(frozen=True)
class DCNCase:
    """One benchmark shape: batch, channels, height, width, groups G, kernel k."""

    name: str
    batch: int
    channels: int
    height: int
    width: int
    deform_groups: int = 8
    kernel: int = 3


CASES = (
    DCNCase("EDVR-M alignment", 4, 64, 64, 64),
    DCNCase("full LR frame", 1, 64, 180, 320),
)


def make_inputs(case: DCNCase, requires_grad: bool, seed: int = 0, device: str = "cpu") -> dict:
    """Random input, offsets of a few pixels, a mask in (0, 1) and a weight, as DCNv2 sees them."""
    g = torch.Generator().manual_seed(seed)
    b, c, h, w, k = case.batch, case.channels, case.height, case.width, case.kernel
    taps = case.deform_groups * k * k
    tensors = {
        "input": torch.randn(b, c, h, w, generator=g),
        "offset": 2.0 * torch.randn(b, 2 * taps, h, w, generator=g),
        "mask": torch.rand(b, taps, h, w, generator=g),
        "weight": torch.randn(c, c, k, k, generator=g) / (c * k * k) ** 0.5,
        "bias": torch.zeros(c),
    }
    return {name: t.to(device).requires_grad_(requires_grad) for name, t in tensors.items()}


def run_once(impl: str, case: DCNCase, t: dict, backward: bool) -> None:
    pad = case.kernel // 2
    if impl == "conv2d":
        out = F.conv2d(t["input"], t["weight"], t["bias"], padding=pad)
    else:
        out = deform_conv2d(t["input"], t["offset"], t["weight"], t["bias"], t["mask"], 1, pad, 1,
                            backend=impl)
    if backward:
        out.backward(torch.ones_like(out))
    if out.is_cuda:
        torch.cuda.synchronize()


def time_case(case: DCNCase, impls, repeats: int, device: str = "cpu") -> dict:
    """Median seconds per call, {impl: {"forward": s, "forward+backward": s}}, interleaved."""
    inputs = {False: make_inputs(case, False, device=device), True: make_inputs(case, True, device=device)}
    times = {impl: {"forward": [], "forward+backward": []} for impl in impls}
    for round_ in range(repeats + 1):  # round 0 warms up
        for impl in impls:
            for backward, key in ((False, "forward"), (True, "forward+backward")):
                t = inputs[backward]
                for v in t.values():
                    v.grad = None
                with torch.set_grad_enabled(backward):
                    start = time.perf_counter()
                    run_once(impl, case, t, backward)
                    elapsed = time.perf_counter() - start
                if round_:
                    times[impl][key].append(elapsed)
    return {impl: {k: statistics.median(v) for k, v in d.items()} for impl, d in times.items()}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_child(impl: str, case: DCNCase) -> float:
    """MiB by which one forward+backward raises this (fresh) process's peak RSS."""
    t = make_inputs(case, True)
    run_once(impl, make_case_small(case), make_inputs(make_case_small(case), True), True)  # load kernels
    before = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
        f.write("5")
    run_once(impl, case, t, True)
    return (_rss_kib("VmHWM") - before) / 1024


def make_case_small(case: DCNCase) -> DCNCase:
    return DCNCase("warm-up", 1, case.channels, 8, 8, case.deform_groups, case.kernel)


def _child(args) -> dict:
    torch.set_num_threads(args.threads)
    result = {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"), "device": args.device,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "cases": []}
    if args.device == "cuda":
        result["device_name"] = torch.cuda.get_device_name()
    impls = [i for i in IMPLS if i != "naive" or args.naive]
    for case in CASES:
        print(f"  timing {case.name} ({result['omp_wait_policy']}) ...", file=sys.stderr, flush=True)
        seconds = time_case(case, impls, args.repeats, args.device)
        result["cases"].append({"case": asdict(case), "seconds": seconds})
        if args.device == "cuda":
            result["cases"][-1]["peak_memory_mib"] = _cuda_peak_memory(case, impls)
    return result


def _cuda_peak_memory(case: DCNCase, impls) -> dict:
    """MiB allocated at the peak of one forward+backward on the GPU, beyond the inputs."""
    out = {}
    for impl in impls:
        t = make_inputs(case, True, device="cuda")
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run_once(impl, case, t, True)
        out[impl] = (torch.cuda.max_memory_allocated() - base) / 2**20
        del t
    return out


def _memory(args) -> dict:
    """Peak memory per implementation at the full-frame shape, each in a fresh process."""
    out = {}
    for impl in IMPLS:
        if impl == "naive" and not args.naive:
            continue
        code = (f"import torch; from dalign_nb import bench; torch.set_num_threads({args.threads}); "
                f"print(bench.peak_memory_child({impl!r}, bench.CASES[1]))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        out[impl] = float(proc.stdout.split()[-1])
    return out


def format_table(result: dict) -> str:
    where = (result.get("device_name", "GPU") if result.get("device") == "cuda" else
             f"CPU, OMP_WAIT_POLICY={result['omp_wait_policy']}, {result['threads']} threads")
    lines = [f"{where}, float32, torch {result['torch']}, medians of interleaved runs", "",
             "| shape | implementation | forward ms | fwd+bwd ms | fwd+bwd speed-up vs torchvision "
             "| fwd+bwd time vs dense conv2d |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for entry in result["cases"]:
        s = entry["seconds"]
        tv, conv = s["torchvision"]["forward+backward"], s["conv2d"]["forward+backward"]
        for impl, d in s.items():
            fb = d["forward+backward"]
            lines.append(f"| {entry['case']['name']} | {impl} | {1e3 * d['forward']:.1f} | {1e3 * fb:.1f} "
                         f"| {tv / fb:.2f}x | {fb / conv:.2f}x |")
    return "\n".join(lines)


def bench_dcn(args) -> dict:
    if args.device == "cuda":
        args.policy, args.no_memory = "current", True  # threads and OpenMP do not matter there
    if args.policy != "both":
        result = _child(args)
        print(format_table(result), "\n")
    else:
        result = {"runs": []}
        for policy in ("default", "passive"):
            env = dict(os.environ)
            env.pop("OMP_WAIT_POLICY", None)
            if policy == "passive":
                env["OMP_WAIT_POLICY"] = "PASSIVE"
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "run.json")
                cmd = [sys.executable, "-m", "dalign_nb.bench", "dcn", "--policy", "current",
                       "--repeats", str(args.repeats), "--threads", str(args.threads), "--json", path,
                       "--no-memory"] + (["--naive"] if args.naive else [])
                subprocess.run(cmd, env=env, check=True)
                with open(path) as f:
                    result["runs"].append(json.load(f))
    if not args.no_memory:
        result["peak_memory_mib_full_frame"] = mem = _memory(args)
        print("Peak memory of one forward+backward at the full-frame shape (growth of peak RSS, MiB, "
              f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}):")
        print("| implementation | MiB |\n| --- | ---: |")
        for impl, mib in mem.items():
            print(f"| {impl} | {mib:.0f} |")
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dalign_nb.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    dcn = sub.add_parser("dcn", help="deform_conv2d backends vs torchvision vs dense conv2d")
    dcn.add_argument("--repeats", type=int, default=7, help="timed rounds (after one warm-up round)")
    dcn.add_argument("--threads", type=int, default=2)
    dcn.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    dcn.add_argument("--policy", choices=("both", "current"), default="both",
                     help="OpenMP wait policy: both (unset and PASSIVE, two fresh processes) or "
                          "the current environment's")
    dcn.add_argument("--naive", action="store_true", help="also time the (slow) naive backend")
    dcn.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    dcn.add_argument("--json", help="write the results to this JSON file")
    sub.add_parser("train", help="training iterations per second (see dalign_nb.bench_train)",
                   add_help=False)
    viewers = sub.add_parser("widgets", help="redraw times of the offset viewer (dalign_nb.widgets)")
    viewers.add_argument("--repeats", type=int, default=5, help="interactions timed per kind")
    viewers.add_argument("--threads", type=int, default=2)
    args, rest = parser.parse_known_args(argv)
    if args.command == "train":
        from dalign_nb import bench_train

        return bench_train.main(rest)
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    if args.command == "widgets":
        from dalign_nb import widgets

        torch.set_num_threads(args.threads)
        return print(widgets.format_benchmark(widgets.benchmark(args.repeats)))
    result = bench_dcn(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
