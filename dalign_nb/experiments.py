"""Named experiments: sets of training runs, each measured after training, with provenance.

An ``Experiment`` is a list of conditions (a run name and the profile fields it changes)
times a list of seeds; every (condition, seed) is a run. A run trains with
``dalign_nb.train.train`` in ``runs/<experiment>/<run>/`` (checkpoints, git-ignored), then
measures the trained model -- each measurement a function ``(model, profile) -> dict``
named in ``MEASURES`` -- and writes ``data/results/<experiment>/<run>.json``::

    {"format": 1, "experiment": "fig5", "run": "aligning-s0", "condition": "aligning", "seed": 0,
     "measures": {"offsets_vs_flow": {...}},
     "train": {"status": "done", "iterations": 3000, "val": [...], "curve": [...], "events": [...]},
     "provenance": {"command": "python -m dalign_nb experiment fig5", "profile": {...},
                    "git_commit": "...", "git_dirty": false, "seed": 0, "device": "cpu",
                    "torch": "2.x", "threads": 2, "train_wall_s": 2700.0, "measure_wall_s": 30.0,
                    "iterations": 3000, "date": "2025-01-01T12:00:00+00:00",
                    "sittings": [{"date": ..., "git_commit": ..., "from_iter": 0, "to_iter": 1250,
                                  "wall_s": ..., "status": "SIGINT"}, ...]},
     "weights": "weights/aligning-s0.pt" | null}

Run it from a shell (``python -m dalign_nb experiment --help``)::

    python -m dalign_nb experiment fig5                        # every run, one after the other
    python -m dalign_nb experiment fig5 --device cuda --jobs 6 # all six at once on one GPU
    python -m dalign_nb experiment fig5 --list                 # the runs and how far each got

Running it again skips finished runs and resumes interrupted ones exactly from their
checkpoints (Ctrl-C stops after the current iteration and keeps them), so a sweep may span
several sittings. Notebooks read the results with ``load_results("fig5")`` and
``summarize(...)``, and the kept weights with ``load_model("fig5", "aligning-s0")``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import datetime
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from dalign_nb.config import RESUMABLE, Profile, get_profile
from dalign_nb.data import SceneConfig, validation_clips
from dalign_nb.metrics import bicubic_baseline, closest_offset, psnr, quantize
from dalign_nb.training.checkpoint import atomic_write

__all__ = [
    "EXPERIMENTS",
    "MEASURES",
    "Condition",
    "Experiment",
    "Run",
    "load_model",
    "load_results",
    "main",
    "offsets_vs_flow",
    "plan",
    "run_experiment",
    "summarize",
    "with_overrides",
    "zero_offsets",
]

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "data" / "results"
RUNS_DIR = ROOT / "runs"
SITTINGS = "sittings.json"  # in a run folder: one entry per call of the trainer


class ExperimentError(RuntimeError):
    """A run that cannot go ahead as asked (results or checkpoints of another configuration)."""


# --------------------------------------------------------------------------- the table


class Condition(NamedTuple):
    """A run name and the profile fields it changes, as dotted paths
    (``{"model.alignment.kind": "flow"}``); ``profile`` names the profile it starts from
    (None: the experiment's)."""

    name: str
    overrides: dict = {}
    profile: str | None = None


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Conditions x seeds, the measurements taken after training, the weights kept.

    ``options``: keyword arguments per measurement; ``keep_weights``: seeds whose trained
    weights are kept (fp16 state dicts) in ``data/results/<experiment>/weights/``.
    """

    name: str
    description: str
    conditions: tuple[Condition, ...]
    profile: str = "standard"
    seeds: tuple[int, ...] = (0, 1, 2)
    measures: tuple[str, ...] = ("offsets_vs_flow",)
    options: dict = dataclasses.field(default_factory=dict)
    keep_weights: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of an experiment: ``<condition>-s<seed>`` and its complete profile."""

    experiment: Experiment
    condition: str
    seed: int
    profile: Profile

    @property
    def name(self) -> str:
        return f"{self.condition}-s{self.seed}"


FLOW = {"model.alignment.kind": "flow"}  # G = N = 1: one learned flow warps the features (Sec. 4.1)

# The small-scale setting in which a G = N = 1 model learns flow-like offsets (issue 8; see
# config.align): residual offsets across the PCD pyramid and a photometric warping loss.
ALIGNING_PROFILE = "align"
SR_ONLY = {"train.photometric_weight": 0.0}  # the SR loss alone: the paper's training signal
EDVR_PCD = {"model.residual_offsets": False}  # EDVR's own PCD: offset features, not offsets, go up

# Shrinks any profile to a model and a run that finish in seconds (tests, smoke runs).
TINY = {"model.num_feat": 8, "model.num_extract_block": 1, "model.num_reconstruct_block": 1,
        "data.patch_size": 8, "data.batch_size": 2, "data.num_scenes": 2, "data.val_clips": 1,
        "data.val_frames": 1, "train.total_iter": 12, "train.log_every": 2, "train.ckpt_every": 2,
        "train.val_every": 10**6}  # validation at the end only

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment(
        "fig5",
        "Fig. 5: offsets of a G = N = 1 model (finest PCD level) against the exact flow of "
        "held-out synthetic scenes: share within 1 px, end-point error, histogram; PSNR against "
        "bicubic and against the same model with its offsets held at zero.",
        conditions=(Condition("aligning", FLOW, ALIGNING_PROFILE),
                    Condition("sr_only", {**FLOW, **SR_ONLY}, ALIGNING_PROFILE),
                    Condition("warmup_then_sr", {**FLOW, "train.photometric_until": 1000},
                              ALIGNING_PROFILE),
                    Condition("edvr_sr_only", {**FLOW, **SR_ONLY, **EDVR_PCD}, ALIGNING_PROFILE)),
        options={"offsets_vs_flow": {"num_scenes": 8, "size": 256}},
        keep_weights=(0,),
    ),
    Experiment(
        "tiny",
        "The runner's own check: fig5's measurement on a tiny G = N = 1 model trained for 12 "
        "iterations (seconds). Not evidence of anything.",
        conditions=(Condition("flow", {**FLOW, **TINY}),),
        profile="quick",
        seeds=(0, 1),
        options={"offsets_vs_flow": {"num_scenes": 1, "size": 64}},
        keep_weights=(0,),
    ),
)}


# --------------------------------------------------------------------------- profiles


def _replace(obj, overrides: dict[str, Any]):
    """``dataclasses.replace`` along dotted paths, into nested dataclasses."""
    names = {f.name for f in dataclasses.fields(obj)}
    direct, nested = {}, {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise ValueError(f"{type(obj).__name__} has no field {head!r} (from {key!r}); "
                             f"fields: {sorted(names)}")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    changes = {**direct, **{k: _replace(getattr(obj, k), v) for k, v in nested.items()}}
    return dataclasses.replace(obj, **changes)


def with_overrides(profile: Profile, overrides: dict[str, Any]) -> Profile:
    """``profile`` with fields changed along dotted paths: ``{"train.lr": 2e-4, ...}``.

    A changed ``train.total_iter`` brings a single-period schedule (``train.periods``) along
    unless ``train.periods`` is given too, as ``python -m dalign_nb train --iters`` does.
    """
    overrides = dict(overrides)
    if "train.total_iter" in overrides and "train.periods" not in overrides \
            and len(profile.train.periods) == 1:
        overrides["train.periods"] = (overrides["train.total_iter"],)
    return _replace(profile, overrides) if overrides else profile


def plan(name: str, *, profile: str | None = None, seeds=None, overrides: dict | None = None) -> list[Run]:
    """The runs of experiment ``name``: each condition's profile (or ``profile`` for all), its
    overrides, then ``overrides`` (for all), with ``train.seed`` set to each seed."""
    exp = _experiment(name)
    runs = []
    for cond in (Condition(*c) for c in exp.conditions):
        base = get_profile(profile or cond.profile or exp.profile)
        for seed in exp.seeds if seeds is None else seeds:
            p = with_overrides(base, {**cond.overrides, **(overrides or {}), "train.seed": seed})
            runs.append(Run(exp, cond.name, int(seed), p))
    return runs


def _experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"no experiment {name!r}; experiments: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]


# --------------------------------------------------------------------------- measurements


def _offset_branches(model: nn.Module) -> list[tuple[nn.Conv2d, int]]:
    """Every alignment module's offset branch ``conv_offset`` and how many of its leading output
    channels are offsets (the rest, the last third with masks, BasicSR's ``o1, o2, mask``)."""
    from dalign_nb.alignment import FlowGuidedAlignment

    out = []
    for m in model.modules():
        conv = getattr(m, "conv_offset", None)
        if not (isinstance(conv, nn.Conv2d) and hasattr(m, "align")):
            continue
        if isinstance(m, FlowGuidedAlignment):
            raise ValueError("flow-guided offsets are the flow plus a residue: zeroing the "
                             "branch does not zero the offsets")
        n = conv.out_channels
        out.append((conv, n - n // 3 if getattr(m, "modulated", False) else n))
    if not out:
        raise ValueError("the model has no alignment module with an offset branch (conv_offset)")
    return out


@contextlib.contextmanager
def zero_offsets(model: nn.Module):
    """Inside the block, every alignment module of ``model`` samples its input at zero offsets.

    The offset rows of each offset branch's weight and bias (``conv_offset``) are set to zero
    and restored, bit for bit, on leaving; modulation masks are kept. The model then fuses
    unaligned neighbours (a DCN becomes a plain convolution): comparing its PSNR with the
    trained model's says whether alignment is used at all.
    """
    saved = []
    with torch.no_grad():
        for conv, rows in _offset_branches(model):
            params = [p for p in (conv.weight, conv.bias) if p is not None]
            saved += [(p, p[:rows].clone()) for p in params]
            for p in params:
                p[:rows] = 0
    try:
        yield model
    finally:
        with torch.no_grad():
            for p, rows in saved:
                p[: len(rows)] = rows


def _pooled(dist_l2, dist_l1, flow_mag, off_mag, threshold) -> dict:
    """Statistics over pooled valid pixels (1-D arrays)."""
    if dist_l2.size == 0:
        return {"num_pixels": 0}
    return {"num_pixels": int(dist_l2.size),
            "within_1px": float(np.mean(dist_l2 < threshold)),
            "within_1px_l1": float(np.mean(dist_l1 < threshold)),
            "epe": float(dist_l2.mean()), "median_epe": float(np.median(dist_l2)),
            "mean_flow": float(flow_mag.mean()), "mean_offset": float(off_mag.mean())}


def _chosen_magnitude(off, index):
    """|offset| of the offset ``index`` (h, w) picked per pixel from ``off`` (2*G*N, h, w)."""
    vec = off.unflatten(0, (-1, 2))  # (G*N, 2, h, w) as (dy, dx)
    pick = index[None, None].expand(1, 2, *index.shape)
    return vec.gather(0, pick)[0].norm(dim=0)  # (h, w)


@torch.no_grad()
def offsets_vs_flow(model: nn.Module, profile: Profile, *, num_scenes: int = 8, size: int = 256,
                    scene_seed: int = 0, level: str = "l1", threshold: float = 1.0,
                    bin_width: float = 0.25, max_distance: float = 10.0, device=None) -> dict:
    """Fig. 5 on held-out synthetic scenes, whose flow and occlusion are exact.

    The model's offsets at PCD ``level`` (``aux["offsets"][level]``, (B, T, 2*G*N, h, w))
    against the exact LR flow from the centre frame to each neighbour, on the pixels that
    are not occluded in that neighbour; with N > 1 offsets per pixel, the closest one
    (``metrics.closest_offset``). Pooled over scenes and neighbours: the share within
    ``threshold`` px (end-point error; ``_l1``: |du| + |dv|), mean and median end-point error,
    mean |flow|, mean |offset|, a histogram of the end-point errors (``bin_width`` px bins up
    to ``max_distance``, the rest in ``above``), the same per neighbour (``by_frame``, keyed by
    the frame's distance from the centre). PSNR (RGB, 8-bit output) of the centre frame: the
    model, bicubic, and the model with its offsets held at zero (``zero_offsets``).
    Scenes: ``num_scenes`` of ``size`` x ``size`` HR pixels (``validation_clips("synthetic")``,
    textures from held-out footage, seeds no training scene uses).
    """
    device = device or next(model.parameters()).device
    t = profile.model.num_frame
    c = t // 2
    scenes = validation_clips("synthetic", num_scenes=num_scenes, seed=scene_seed,
                              scene_config=SceneConfig(height=size, width=size, num_frames=t))
    was_training = model.training
    model.eval()
    pixels = {k - c: [] for k in range(t) if k != c}  # neighbour -> [(l2, l1, |flow|, |offset|)]
    scores = {"model": [], "zero_offsets": [], "bicubic": []}
    occluded = []
    for clip in scenes:
        lq = clip.lq[None].to(device)  # (1, T, 3, h, w)
        kw = {"flows": clip.flow[None].to(device)} if profile.model.takes_flows else {}
        out, aux = model(lq, return_aux=True, **kw)
        with zero_offsets(model):
            out_zero = model(lq, **kw)
        gt = clip.gt[c][None]  # (1, 3, H, W)
        scores["model"].append(psnr(quantize(out.float().cpu()), gt))
        scores["zero_offsets"].append(psnr(quantize(out_zero.float().cpu()), gt))
        scores["bicubic"].append(psnr(quantize(bicubic_baseline(clip.lq[c][None])), gt))
        off = aux["offsets"][level][0].float().cpu()  # (T, 2*G*N, h, w)
        for k in pixels.keys():
            f, o = clip.flow[c + k][None].float(), off[c + k][None]  # (1, 2, h, w), (1, 2GN, h, w)
            valid = ~clip.occlusion[c + k]  # (h, w)
            occluded.append(float((~valid).float().mean()))
            d2, index = closest_offset(o, f)  # (1, h, w) each
            d1, _ = closest_offset(o, f, norm="l1")
            mags = (f[0].norm(dim=0), _chosen_magnitude(o[0], index[0]))
            pixels[k].append([a[valid].numpy() for a in (d2[0], d1[0], *mags)])
    model.train(was_training)
    cat = {k: [np.concatenate(a) for a in zip(*v)] for k, v in pixels.items()}
    everything = [np.concatenate(a) for a in zip(*cat.values())]
    edges = np.arange(0.0, max_distance + bin_width / 2, bin_width)
    counts, _ = np.histogram(everything[0], bins=edges)
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    return {
        **_pooled(*everything, threshold),
        "occluded_share": float(np.mean(occluded)),
        "by_frame": {str(k): _pooled(*v, threshold) for k, v in cat.items()},
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist(),
                      "above": int((everything[0] > edges[-1]).sum())},
        "psnr": mean["model"], "psnr_zero_offsets": mean["zero_offsets"], "psnr_bicubic": mean["bicubic"],
        "psnr_gain_over_zero": mean["model"] - mean["zero_offsets"],
        "psnr_per_scene": scores,
        "settings": {"num_scenes": num_scenes, "size": size, "scene_seed": scene_seed, "level": level,
                     "threshold": threshold, "num_frame": t},
    }


class Measure(NamedTuple):
    fn: Callable[..., dict]  # (model, profile, *, device, **options) -> dict
    headline: tuple[str, ...]  # keys printed when a run finishes


MEASURES: dict[str, Measure] = {
    "offsets_vs_flow": Measure(offsets_vs_flow, ("within_1px", "epe", "mean_flow", "psnr",
                                                 "psnr_gain_over_zero")),
}


# --------------------------------------------------------------------------- files


def _finite(obj):
    """JSON has no NaN / infinity: they become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _write_json(path: Path, obj) -> None:
    text = (json.dumps(_finite(obj), indent=1) + "\n").encode()
    atomic_write(path, lambda f: f.write(text))


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _plain(profile: Profile) -> dict:
    return json.loads(json.dumps(profile.to_dict()))  # tuples -> lists, as stored


def _changes(profile: Profile, saved: dict) -> tuple[list[str], list[str]]:
    """Dotted fields in which ``profile`` differs from a stored one: (those that make it another
    run, those a resumed run may change -- ``config.RESUMABLE``: schedule, logging, validation)."""
    try:
        theirs = Profile.from_dict(saved).flat()
    except (KeyError, TypeError, ValueError) as exc:
        return [f"unreadable profile ({type(exc).__name__}: {exc})"], []
    mine = profile.flat()
    diff = sorted(k for k in mine.keys() | theirs.keys()
                  if k != "description" and mine.get(k) != theirs.get(k))
    return [k for k in diff if k not in RESUMABLE], [k for k in diff if k in RESUMABLE]


def _git() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    if head.returncode:
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": head.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _fp16(state: dict) -> dict:
    return {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
            for k, v in state.items()}


def _save_weights(path: Path, model: nn.Module) -> None:
    import io

    buf = io.BytesIO()
    torch.save({"params": _fp16(model.state_dict())}, buf)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


# --------------------------------------------------------------------------- the runner


@dataclasses.dataclass
class _Paths:
    results: Path  # data/results/<experiment>[-<tag>]
    runs: Path  # runs/<experiment>[-<tag>]

    def result(self, run: Run) -> Path:
        return self.results / f"{run.name}.json"

    def run_dir(self, run: Run) -> Path:
        return self.runs / run.name

    def weights(self, run: Run) -> Path:
        return self.results / "weights" / f"{run.name}.pt"


def _paths(name: str, tag: str | None, runs_dir, results_dir) -> _Paths:
    folder = name + (f"-{tag}" if tag else "")
    return _Paths(Path(results_dir or RESULTS_DIR) / folder, Path(runs_dir or RUNS_DIR) / folder)


def _state(run: Run, paths: _Paths) -> str:
    """"done"; "measure" (some measurement missing); "stale" (results of a shorter schedule,
    say: resume and measure again); "resume at N"; "pending"."""
    res = _read_json(paths.result(run))
    if res is not None:
        if _changes(run.profile, res["provenance"]["profile"])[1]:
            return "stale"
        return "done" if set(run.experiment.measures) <= set(res["measures"]) else "measure"
    history = _read_json(paths.run_dir(run) / "history.json")
    return f"resume at {history['iteration']}" if history else "pending"


def _check_conflicts(run: Run, paths: _Paths) -> None:
    """Refuse to mix a run with results or checkpoints of another configuration (fields a
    resumed run may not change, as the trainer refuses them)."""
    res = _read_json(paths.result(run))
    history = _read_json(paths.run_dir(run) / "history.json")
    for what, path, saved in (("results", paths.result(run), res and res["provenance"]["profile"]),
                              ("a run", paths.run_dir(run), history and history["profile"])):
        conflicts = _changes(run.profile, saved)[0] if saved else []
        if conflicts:
            raise ExperimentError(
                f"{path} holds {what} of another configuration (differs in {', '.join(conflicts[:6])}). "
                "Use --tag to keep both, or --fresh to replace it.")


def _fresh(run: Run, paths: _Paths) -> None:
    for path in (paths.result(run), paths.weights(run)):
        path.unlink(missing_ok=True)
    folder = paths.run_dir(run)
    for name in ("checkpoint.pt", "history.json", "model.pt", SITTINGS):
        (folder / name).unlink(missing_ok=True)


def _train(run: Run, paths: _Paths, device, stop_at, progress):
    """One sitting of the trainer, recorded in ``sittings.json``; returns the ``TrainResult``."""
    from dalign_nb.train import train

    folder = paths.run_dir(run)
    before = (_read_json(folder / "history.json") or {}).get("iteration", 0)
    t0 = time.perf_counter()
    res = train(run.profile, folder, resume=True, stop_at=stop_at, device=device, progress=progress)
    sittings = _read_json(folder / SITTINGS) or []
    if res.iteration > before or not sittings:
        sittings.append({"date": _now(), **_git(), "from_iter": before, "to_iter": res.iteration,
                         "wall_s": round(time.perf_counter() - t0, 1), "status": res.status,
                         "device": next(res.model.parameters()).device.type})
        _write_json(folder / SITTINGS, sittings)
    return res, sittings


def _curve(history: dict, max_points: int = 200) -> list[dict]:
    """The loss and each level's mean |offset| from the training history, at most ``max_points``."""
    entries = history["train"]
    step = max(1, math.ceil(len(entries) / max_points))
    picked = entries[::step] + ([entries[-1]] if entries and (len(entries) - 1) % step else [])
    return [{"iter": e["iter"], "loss": e["loss"], "lr": e["lr"],
             "mean_abs_offset": {lvl: s["mean_abs"] for lvl, s in e.get("offsets", {}).items()}}
            for e in picked]


def _measure(run: Run, model, names, device) -> tuple[dict, float]:
    t0 = time.perf_counter()
    out = {}
    for name in names:
        options = run.experiment.options.get(name, {})
        out[name] = MEASURES[name].fn(model, run.profile, device=device, **options)
    return out, time.perf_counter() - t0


def _record(run: Run, paths: _Paths, res, sittings, measures, measure_wall, command, device) -> dict:
    dev = next(res.model.parameters()).device
    weights = None
    if run.seed in run.experiment.keep_weights:
        _save_weights(paths.weights(run), res.model)
        weights = paths.weights(run).relative_to(paths.results).as_posix()
    h = res.history
    return {
        "format": 1, "experiment": run.experiment.name, "run": run.name, "condition": run.condition,
        "seed": run.seed, "measures": measures,
        "train": {"status": res.status, "iterations": res.iteration, "val": h["val"], "curve": _curve(h),
                  "events": h["events"], "overflow": h["overflow"]},
        "provenance": {
            "command": command, "profile": _plain(run.profile), **_git(), "seed": run.seed,
            "device": dev.type,
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
            "torch": str(torch.__version__), "python": sys.version.split()[0],
            "threads": torch.get_num_threads(),
            "train_wall_s": round(sum(s["wall_s"] for s in sittings), 1),
            "measure_wall_s": round(measure_wall, 1), "iterations": res.iteration, "date": _now(),
            "sittings": sittings},
        "weights": weights,
    }


def _headline(result: dict) -> str:
    parts = []
    for name, values in result["measures"].items():
        for key in MEASURES[name].headline if name in MEASURES else ():
            v = values.get(key)
            parts.append(f"{key} {v:.4g}" if isinstance(v, float) else f"{key} {v}")
    return ", ".join(parts)


def _run_one(run: Run, paths: _Paths, *, device, stop_at, remeasure, progress, command) -> str:
    """Train (or resume) and measure one run; returns how it ended."""
    old = None if remeasure or _state(run, paths) == "stale" else _read_json(paths.result(run))
    todo = [m for m in run.experiment.measures if old is None or m not in old["measures"]]
    if not todo:
        return "skipped"
    res, sittings = _train(run, paths, device, stop_at, progress)
    if res.status != "done":
        print(f"{run.experiment.name}/{run.name}: {res.status} at iteration {res.iteration}; "
              "checkpoint kept, run again to resume", flush=True)
        return res.status
    measures, wall = _measure(run, res.model, todo, device)
    if old is not None:
        measures = {**old["measures"], **measures}
    result = _record(run, paths, res, sittings, measures, wall, command, device)
    _write_json(paths.result(run), result)
    print(f"{run.experiment.name}/{run.name}: {_headline(result)}", flush=True)
    return "done"


def _child_args(name, run, *, profile, seeds, device, overrides, stop_at, fresh, remeasure, tag,
                paths_args, threads, command) -> list[str]:
    args = ["experiment", name, "--only", run.name, "--jobs", "1", "--threads", str(threads),
            "--no-progress", "--command", command]
    if profile:
        args += ["--profile", profile]
    if seeds is not None:
        args += ["--seeds", *map(str, seeds)]
    for flag, value in (("--device", device), ("--stop-at", stop_at), ("--tag", tag),
                        ("--runs", paths_args[0]), ("--results", paths_args[1])):
        if value is not None:
            args += [flag, str(value)]
    for key, value in (overrides or {}).items():
        args += ["--set", f"{key}={value!r}"]
    return args + (["--fresh"] if fresh else []) + (["--remeasure"] if remeasure else [])


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _run_parallel(runs, paths, jobs, child_args, threads=None) -> dict[str, str]:
    """``jobs`` runs at a time in subprocesses (output in each run folder's ``log.txt``), each
    with ``threads`` torch threads (default: the cores shared out)."""
    from tqdm.auto import tqdm

    threads = threads or max(1, _cpu_count() // jobs)
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
                bar.write(f"started {run.experiment.name}/{run.name} ({_state(run, paths)}); log {log}")
            time.sleep(0.5)
            for proc in [p for p in active if p.poll() is not None]:
                run = active.pop(proc)
                status[run.name], message = _child_status(run, paths, proc.returncode)
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


def _child_status(run: Run, paths: _Paths, code: int) -> tuple[str, str]:
    """(status as ``_run_one`` says it, a line for the log) of a finished subprocess."""
    if code == 0:
        state = _state(run, paths)
        if state == "done":
            return "done", _headline(_read_json(paths.result(run)))
        return "stopped", state
    status = {130: "SIGINT", 143: "SIGTERM"}.get(code, "failed")
    return status, f"{status} (exit code {code}); see {paths.run_dir(run) / 'log.txt'}"


def run_experiment(name: str, *, profile: str | None = None, seeds=None, device=None, jobs: int = 1,
                   overrides: dict | None = None, only=None, stop_at: int | None = None,
                   fresh: bool = False, remeasure: bool = False, tag: str | None = None,
                   runs_dir=None, results_dir=None, progress: bool = True, threads: int | None = None,
                   command: str | None = None) -> dict[str, str]:
    """Run experiment ``name``: skip finished runs, resume interrupted ones, measure, record.

    profile: run every condition on this profile instead (e.g. "quick" for a smoke run);
    seeds: instead of the experiment's; overrides: dotted profile fields for every run;
    only: run names to run; stop_at: stop each run after this iteration (another sitting
    resumes it); fresh: discard the selected runs' results and checkpoints first;
    remeasure: measure finished runs again; tag: keep the results in ``<name>-<tag>``;
    jobs: runs at once, in subprocesses; threads: torch threads per run (this process's are
    set to it; default: all cores, or cores / jobs for each subprocess).
    Returns run name -> "done", "skipped", "stopped", "SIGINT", ... A Ctrl-C stops every run
    after its current iteration with a checkpoint, then raises ``KeyboardInterrupt``.
    """
    runs = plan(name, profile=profile, seeds=seeds, overrides=overrides)
    if only:
        unknown = set(only) - {r.name for r in runs}
        if unknown:
            raise ValueError(f"no run {sorted(unknown)} in {name}; runs: {[r.name for r in runs]}")
        runs = [r for r in runs if r.name in only]
    paths = _paths(name, tag, runs_dir, results_dir)
    for run in runs:
        if fresh:
            _fresh(run, paths)
        _check_conflicts(run, paths)
    command = command or f"run_experiment({name!r}, profile={profile!r}, seeds={seeds!r}, " \
                         f"overrides={overrides!r})"
    todo = [r for r in runs if remeasure or _state(r, paths) != "done"]
    status = {r.name: "skipped" for r in runs if r not in todo}
    for name_ in status:
        print(f"{name}/{name_}: finished, skipped", flush=True)
    if jobs > 1 and len(todo) > 1:
        def child(run, threads):
            return _child_args(name, run, profile=profile, seeds=seeds, device=device, overrides=overrides,
                               stop_at=stop_at, fresh=False, remeasure=remeasure, tag=tag,
                               paths_args=(paths.runs.parent, paths.results.parent), threads=threads,
                               command=command)
        return {**status, **_run_parallel(todo, paths, jobs, child, threads)}
    if threads:
        torch.set_num_threads(threads)
    for i, run in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {name}/{run.name}: {_state(run, paths)}", flush=True)
        status[run.name] = _run_one(run, paths, device=device, stop_at=stop_at, remeasure=remeasure,
                                    progress=progress, command=command)
        if status[run.name] in ("SIGINT", "SIGTERM"):
            break
    return status


# --------------------------------------------------------------------------- reading results


def load_results(name: str, results_dir=None) -> list[dict]:
    """The result dicts of experiment folder ``name`` (``data/results/<name>/*.json``), by run name."""
    folder = Path(results_dir or RESULTS_DIR) / name
    if not folder.is_dir():
        raise FileNotFoundError(f"no results for {name!r} in {folder}; run "
                                f"`python -m dalign_nb experiment {name}`")
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def _get(result: dict, key: str):
    for part in key.split("."):
        result = result[part]
    return result


def summarize(results: list[dict], key: str) -> dict[str, dict]:
    """Per condition, the mean, sample standard deviation and seeds of a dotted ``key``:
    ``summarize(load_results("fig5"), "measures.offsets_vs_flow.within_1px")``."""
    by_condition: dict[str, list] = {}
    for r in results:
        by_condition.setdefault(r["condition"], []).append((r["seed"], _get(r, key)))
    out = {}
    for cond, pairs in by_condition.items():
        values = np.array([v for _, v in pairs], dtype=float)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[cond] = {"mean": float(values.mean()), "std": std, "n": len(values),
                     "seeds": [s for s, _ in pairs], "values": values.tolist()}
    return out


def load_model(name: str, run: str, results_dir=None, device="cpu") -> nn.Module:
    """The model of a run whose weights were kept (``Experiment.keep_weights``), in eval mode."""
    from dalign_nb.models.edvr import EDVR

    folder = Path(results_dir or RESULTS_DIR) / name
    result = json.loads((folder / f"{run}.json").read_text())
    if not result.get("weights"):
        raise FileNotFoundError(f"{name}/{run} kept no weights (Experiment.keep_weights)")
    model = EDVR.from_config(Profile.from_dict(result["provenance"]["profile"]).model)
    state = torch.load(folder / result["weights"], map_location="cpu", weights_only=True)["params"]
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.to(device).eval()


# --------------------------------------------------------------------------- command line


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _parser() -> argparse.ArgumentParser:
    table = "\n".join(f"  {e.name:8s} {len(e.conditions)} condition(s) x {len(e.seeds)} seed(s): "
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
    p.add_argument("--jobs", type=int, default=1, help="runs at once (subprocesses)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="change a profile field of every run, e.g. --set train.total_iter=500")
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
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per run (default: all cores; with --jobs K on a CPU, cores / K)")
    p.add_argument("--command", default=None, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    """``python -m dalign_nb experiment NAME ...``; exit code 0, 1 (a run failed), 130 (Ctrl-C)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.name is None:
        parser.print_help()
        return 2
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set expects SECTION.FIELD=VALUE, got {item!r}")
        overrides[key] = _value(value)
    try:
        if args.list:
            paths = _paths(args.name, args.tag, args.runs, args.results)
            for run in plan(args.name, profile=args.profile, seeds=args.seeds, overrides=overrides):
                print(f"{run.name:24s} {_state(run, paths)}")
            return 0
        status = run_experiment(
            args.name, profile=args.profile, seeds=args.seeds, device=args.device, jobs=args.jobs,
            overrides=overrides, only=args.only, stop_at=args.stop_at, fresh=args.fresh,
            remeasure=args.remeasure, tag=args.tag, runs_dir=args.runs, results_dir=args.results,
            progress=not args.no_progress, threads=args.threads,
            command=args.command or shlex.join(["python", "-m", "dalign_nb", "experiment", *argv]))
    except (ValueError, ExperimentError) as exc:
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
