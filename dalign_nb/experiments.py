"""Named experiments: sets of training runs, each measured after training, with provenance.

An ``Experiment`` is a list of conditions (a run name and the profile fields it changes)
times a list of seeds; every (condition, seed) is a run. A run trains with
``dalign_nb.train.train`` in ``runs/<experiment>/<run>/`` (checkpoints, git-ignored), then
measures the trained model -- each measurement a function ``(model, profile) -> dict``
named in ``MEASURES`` -- and writes ``data/results/<experiment>/<run>.json``::

    {"format": 1, "experiment": "fig5", "run": "aligning-s0", "condition": "aligning", "seed": 0,
     "num_params": 1234567, "measures": {"offsets_vs_flow": {...}},
     "train": {"status": "done", "iterations": 3000, "val": [...], "events": [...],
               "curve": [{"iter", "loss", "lr", "mean_abs_offset", "max_abs_offset",
                          "peak_mean_abs_offset"}, ...], "overflow": [...]},
     "provenance": {"command": "python -m dalign_nb experiment fig5", "profile": {...},
                    "git_commit": "...", "git_dirty": false, "seed": 0, "device": "cpu",
                    "torch": "2.x", "threads": 2, "train_wall_s": 2700.0, "measure_wall_s": 30.0,
                    "measure_options": {...}, "iterations": 3000,
                    "date": "2025-01-01T12:00:00+00:00",
                    "sittings": [{"date": ..., "git_commit": ..., "from_iter": 0, "to_iter": 1250,
                                  "wall_s": ..., "status": "SIGINT"}, ...]},
     "weights": "weights/aligning-s0.pt" | null}

Run it from a shell (``python -m dalign_nb experiment --help``)::

    python -m dalign_nb experiment fig5                        # every run, one after the other
    python -m dalign_nb experiment fig5 --device cuda --jobs 6 # all six at once on one GPU
    python -m dalign_nb experiment fig5 --list                 # the runs and how far each got

The measurements: ``offsets_vs_flow`` (Fig. 5), ``diversity`` (Sec. 4.2, Fig. 6, 9),
``masks`` (A.5, Fig. 17) on held-out synthetic scenes with exact flow and occlusion, and
``psnr_real`` on the real held-out clips. The experiments of Sec. 4 (``table1``, ``fig9``,
``fig16``, ``table4``, ``fig17``, ``table3``) run on the ``align`` profile, where offsets learn.

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
from dalign_nb.data import SceneConfig, get_clips, validation_clips, validation_samples
from dalign_nb.io import atomic_write
from dalign_nb.metrics import (
    bicubic_baseline,
    bilinear_base,
    closest_offset,
    offset_diversity,
    offset_flow_distance,
    pearson_r,
    psnr,
    quantize,
)
from dalign_nb.models.modes import evaluating

__all__ = [
    "EXPERIMENTS",
    "MEASURES",
    "Condition",
    "Experiment",
    "Run",
    "load_model",
    "load_results",
    "main",
    "diversity",
    "masks",
    "offsets_vs_flow",
    "paired",
    "plan",
    "psnr_real",
    "roc_auc",
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

# Sec. 4 at small scale (issue 9): every condition on the align profile, where offsets learn.
MEAN_TARGET = {"train.photometric_target": "mean"}  # the warping loss on each group's mean offset:
# the N offsets' spread (offset diversity, Sec. 4.2) is left to the SR loss
SCENES = {"num_scenes": 8, "size": 256}  # held-out synthetic scenes of the offset measurements
SEC4_OPTIONS = {"offsets_vs_flow": SCENES, "diversity": SCENES, "masks": SCENES,
                "psnr_real": {"frames_per_clip": 4}}
SEC4_MEASURES = ("offsets_vs_flow", "diversity", "psnr_real")
FIDELITY = {"train.offset_fidelity_weight": 1.0, "train.offset_fidelity_threshold": 10.0}  # lambda, t
# as released (losses.py); against the exact flows of the synthetic training scenes
LR_4X = {"train.lr": 4e-3}  # 4 x align's 1e-3: meant to provoke offset overflow (Sec. 4.3)
# Sec. 4's schedule: align's model and data for 600 iterations (cosine over 600) instead of 3000,
# validation at the end: the whole sweep has to fit a few CPU-hours (issue 9's budget). A named cut:
# at 600 iterations a G = N = 1 model's offsets have learned part of the motion (fig5 runs 3000).
SEC4_ITERS = 600
SEC4_SCHEDULE = {"train.total_iter": SEC4_ITERS, "train.periods": (SEC4_ITERS,),
                 "train.val_every": SEC4_ITERS, "train.ckpt_every": 100}
# table1's twins: 200 iterations, the loss logged at every one (how the two drift apart)
TWIN_SCHEDULE = {"train.total_iter": 200, "train.periods": (200,), "train.val_every": 200,
                 "train.ckpt_every": 100, "train.log_every": 1}


def dcn(groups: int, kernel_size: int, modulated: bool = False) -> dict:
    """Deformable alignment (Eq. 1; DCNv2, Eq. 7, when ``modulated``), G groups, k x k kernel."""
    return {"model.alignment.kind": "dcn", "model.alignment.kernel_size": kernel_size,
            "model.alignment.modulated": modulated, "model.deformable_groups": groups}


def decomposed(groups: int, num_offsets: int) -> dict:
    """The decomposition (Sec. 3.3, Remark 1): N warps per group then a 1x1 conv, no masks."""
    return {"model.alignment.kind": "decomposed", "model.alignment.num_offsets": num_offsets,
            "model.alignment.modulated": False, "model.deformable_groups": groups}


def dcn_reference(groups: int, kernel_size: int) -> dict:
    """``dcn`` (no masks) computed by torchvision's ``deform_conv2d``, the reference op."""
    return {**dcn(groups, kernel_size), "model.alignment.backend": "torchvision"}


def decomposed_on_grid(groups: int, kernel_size: int) -> dict:
    """The k x k DCN written as Eq. 3: k*k warps starting on the kernel grid, a k x k offset
    branch, a 1x1 conv (``AlignmentConfig.grid``); parameter for parameter ``dcn``'s."""
    return {**decomposed(groups, kernel_size ** 2), "model.alignment.kernel_size": kernel_size,
            "model.alignment.grid": True}


FLOW_GUIDED = {"model.alignment.kind": "flow_guided", "model.alignment.kernel_size": 3,
               "model.alignment.modulated": True, "model.deformable_groups": 1,
               "model.residual_offsets": False}  # its offsets are the flow plus a bounded residue


def _sec4(name: str, description: str, conditions, schedule=SEC4_SCHEDULE, **kw) -> Experiment:
    conditions = tuple(Condition(c, {**schedule, **o}, ALIGNING_PROFILE) for c, o in conditions)
    return Experiment(name, description, conditions, **{"measures": SEC4_MEASURES,
                                                        "options": SEC4_OPTIONS, **kw})


# What was cut from the paper's grids to fit the CPU budget is said in each description; runs
# that would be the same model, seed and training as another experiment's are not repeated:
# table4's feature warping is fig9's n1 (FlowAlignment is DecomposedAlignment with G = N = 1),
# table3's DCN without the loss is fig17's dcnv2-k3, fig16's G = 1 row is fig9's seed 0.
SEC4 = (
    _sec4("table1",
          "Table 1: DCN (Eq. 1, no masks as Sec. 4.1-4.2, computed by torchvision's deform_conv2d) "
          "beside the decomposition (Sec. 3.3, Eq. 3: k x k warps starting on the kernel grid, then "
          "a 1x1 conv), G = 1, k in {1, 3}, trained side by side for 200 iterations with the loss "
          "logged at every one. With the same seed the two start from the same weights and see "
          "the same batches: they differ by float rounding only, and the curve shows how that "
          "rounding grows. Cut from the paper's grid: G = 8 (the small model's 32 channels would "
          "allow it) and the full schedule. Warping loss on each group's mean offset.",
          [(f"{kind}-g1-k{k}", {**(dcn_reference(1, k) if kind == "dcn" else decomposed_on_grid(1, k)),
                                **MEAN_TARGET})
           for k in (1, 3) for kind in ("dcn", "decomposed")],
          schedule=TWIN_SCHEDULE, seeds=(0,)),
    _sec4("fig9",
          "Fig. 6-9: G = 1, N in {1, 5, 15} offsets (the decomposition, no masks; the paper's "
          "N = 3, 9, 25 cut), 3 seeds, 600 iterations: PSNR, offset diversity (pixelwise standard "
          "deviation of the offsets, Sec. 4.2) and where it concentrates (occluded vs visible "
          "pixels, ROC AUC), offsets against the exact flow. Warping loss on the mean offset. "
          "Seed 0's weights kept (Fig. 6-8 look at N = 1 and 15). n1 is also table4's feature "
          "warping and fig16's G = 1, N = 1.",
          [(f"n{n}", {**decomposed(1, n), **MEAN_TARGET}) for n in (1, 5, 15)],
          keep_weights=(0,)),
    _sec4("fig16",
          "Fig. 16 (A.4): G = 4, N in {1, 5} (the decomposition, no masks), one seed, 600 "
          "iterations; the G = 1 row is fig9's n1, n5 seed 0. A cut of the paper's G in {1, 2, 4, "
          "8} x N in {1, 3, 5, 9, 15}. PSNR and, with num_params, PSNR gain per million "
          "parameters over N = 1. Warping loss on each group's mean offset.",
          [(f"g4-n{n}", {**decomposed(4, n), **MEAN_TARGET}) for n in (1, 5)],
          seeds=(0,)),
    _sec4("table4",
          "Table 4 (A.3, Fig. 15): image warping (kind image: one learned flow, G = N = 1, warps "
          "the LR frame, whose features are then extracted), 3 seeds, 600 iterations, against "
          "feature warping, which is fig9's n1 (one learned flow warps the features then a 1x1 "
          "conv: the same model, seeds and training, not run twice). Seed 0's weights kept.",
          [("image_warping", {"model.alignment.kind": "image"})],
          measures=("offsets_vs_flow", "psnr_real"), keep_weights=(0,)),
    _sec4("fig17",
          "Fig. 17-18 (A.5): DCNv2 (modulated, Eq. 7), G = 1, k = 3 (N = 9; the paper's k = 5 cut), "
          "one seed, 600 iterations: per offset the mean mask against the mean distance to the "
          "exact flow, their Pearson r; masks on occluded vs visible pixels. Warping loss on the "
          "mean offset. Also table3's DCN without the offset-fidelity loss. Weights kept.",
          [("dcnv2-k3", {**dcn(1, 3, modulated=True), **MEAN_TARGET})],
          measures=(*SEC4_MEASURES, "masks"), keep_weights=(0,), seeds=(0,)),
    _sec4("table3",
          "Table 3, Fig. 10, 19 (Sec. 3.4, 4.3): DCNv2 (G = 1, k = 3) at 4x the learning rate to "
          "provoke offset overflow, with and without the offset-fidelity loss (lambda = 1, t = 10 "
          "as released, against the exact flows of the training scenes), the loss at the normal "
          "rate, and flow-guided alignment; the DCN at the normal rate without the loss is "
          "fig17's dcnv2-k3. n1_lr4x: fig9's flow-based N = 1 model at 4x the rate, whether the "
          "4x rate alone breaks training. One seed, 600 iterations; the training curve keeps each level's "
          "mean and max |offset| and the overflow events. Warping loss on the mean offset. "
          "Weights kept.",
          [("dcn_lr4x", {**dcn(1, 3, modulated=True), **MEAN_TARGET, **LR_4X}),
           ("dcn_fidelity_lr4x", {**dcn(1, 3, modulated=True), **MEAN_TARGET, **FIDELITY, **LR_4X}),
           ("dcn_fidelity", {**dcn(1, 3, modulated=True), **MEAN_TARGET, **FIDELITY}),
           ("flow_guided", {**FLOW_GUIDED, **MEAN_TARGET}),
           ("n1_lr4x", {**decomposed(1, 1), **MEAN_TARGET, **LR_4X})],
          measures=(*SEC4_MEASURES, "masks"), keep_weights=(0,), seeds=(0,)),
)

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
    *SEC4,
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
    overrides = dict(overrides or {})
    runs = []
    for cond in (Condition(*c) for c in exp.conditions):
        base = get_profile(profile or cond.profile or exp.profile)
        merged = {**cond.overrides, **overrides}
        if "train.total_iter" in overrides and "train.periods" not in overrides:
            merged.pop("train.periods", None)  # a condition's schedule yields to a new length
        for seed in exp.seeds if seeds is None else seeds:
            p = with_overrides(base, {**merged, "train.seed": seed})
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


def _held_out_scenes(profile: Profile, num_scenes: int, size: int, scene_seed: int) -> list:
    """``num_scenes`` held-out synthetic scenes of ``size`` x ``size`` HR pixels with the model's
    ``num_frame`` frames (``validation_clips("synthetic")``: textures from held-out footage,
    seeds no training scene uses), with exact flows and occlusion masks."""
    config = SceneConfig(height=size, width=size, num_frames=profile.model.num_frame)
    return validation_clips("synthetic", num_scenes=num_scenes, seed=scene_seed, scene_config=config)


def _run_on(model: nn.Module, profile: Profile, clip, device):
    """The model on a held-out scene: ``(lq (1, T, 3, h, w), flow kwargs, output (1, 3, H, W), aux)``."""
    lq = clip.lq[None].to(device)  # (1, T, 3, h, w)
    kw = {"flows": clip.flow[None].to(device)} if profile.model.takes_flows else {}
    out, aux = model(lq, return_aux=True, **kw)
    return lq, kw, out, aux


def _neighbours(clip, aux: dict, level: str):
    """Per neighbour frame of a held-out scene: ``(distance from the centre, exact flow (1, 2, h, w),
    offsets (1, 2*G*N, h, w), masks (1, G*N, h, w) or None, visible (h, w) bool)`` at ``level``;
    visible: the centre frame's content is not occluded in that neighbour."""
    t = clip.lq.shape[0]
    c = t // 2
    off = aux["offsets"][level][0].float().cpu()  # (T, 2*G*N, h, w)
    masks = aux.get("masks", {}).get(level)
    masks = None if masks is None else masks[0].float().cpu()  # (T, G*N, h, w)
    for k in range(t):
        if k != c:
            yield (k - c, clip.flow[k][None].float(), off[k][None],
                   None if masks is None else masks[k][None], ~clip.occlusion[k])


def _has_flow_guided(model: nn.Module) -> bool:
    from dalign_nb.alignment import FlowGuidedAlignment

    return any(isinstance(m, FlowGuidedAlignment) for m in model.modules())


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
    model, bicubic, and the model with its offsets held at zero (``zero_offsets``; null for
    flow-guided alignment, whose offsets are the flow plus a residue and cannot be zeroed so).
    Scenes: ``num_scenes`` of ``size`` x ``size`` HR pixels (``_held_out_scenes``).
    """
    device = device or next(model.parameters()).device
    t = profile.model.num_frame
    c = t // 2
    zero = not _has_flow_guided(model)
    pixels = {k - c: [] for k in range(t) if k != c}  # neighbour -> [(l2, l1, |flow|, |offset|)]
    scores = {"model": [], "zero_offsets": [], "bicubic": [], "bilinear_base": []}
    occluded = []
    with evaluating(model):
        for clip in _held_out_scenes(profile, num_scenes, size, scene_seed):
            lq, kw, out, aux = _run_on(model, profile, clip, device)
            gt = clip.gt[c][None]  # (1, 3, H, W)
            scores["model"].append(psnr(quantize(out.float().cpu()), gt))
            scores["bicubic"].append(psnr(quantize(bicubic_baseline(clip.lq[c][None])), gt))
            scores["bilinear_base"].append(psnr(quantize(bilinear_base(clip.lq[c][None])), gt))
            if zero:
                with zero_offsets(model):
                    out_zero = model(lq, **kw)
                scores["zero_offsets"].append(psnr(quantize(out_zero.float().cpu()), gt))
            for k, f, o, _, valid in _neighbours(clip, aux, level):  # (1, 2, h, w), (1, 2GN, h, w)
                occluded.append(float((~valid).float().mean()))
                d2, index = closest_offset(o, f)  # (1, h, w) each
                d1, _ = closest_offset(o, f, norm="l1")
                mags = (f[0].norm(dim=0), _chosen_magnitude(o[0], index[0]))
                pixels[k].append([a[valid].numpy() for a in (d2[0], d1[0], *mags)])
    cat = {k: [np.concatenate(a) for a in zip(*v)] for k, v in pixels.items()}
    everything = [np.concatenate(a) for a in zip(*cat.values())]
    edges = np.arange(0.0, max_distance + bin_width / 2, bin_width)
    counts, _ = np.histogram(everything[0], bins=edges)
    mean = {k: float(np.mean(v)) if v else None for k, v in scores.items()}
    return {
        **_pooled(*everything, threshold),
        "occluded_share": float(np.mean(occluded)),
        "by_frame": {str(k): _pooled(*v, threshold) for k, v in cat.items()},
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist(),
                      "above": int((everything[0] > edges[-1]).sum())},
        "psnr": mean["model"], "psnr_zero_offsets": mean["zero_offsets"], "psnr_bicubic": mean["bicubic"],
        "psnr_bilinear_base": mean["bilinear_base"],
        "psnr_gain_over_zero": None if not zero else mean["model"] - mean["zero_offsets"],
        "psnr_per_scene": scores,
        "settings": {"num_scenes": num_scenes, "size": size, "scene_seed": scene_seed, "level": level,
                     "threshold": threshold, "num_frame": t},
    }


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve of ``scores`` as a detector of ``labels`` (True: positive).

    The Mann-Whitney form, with ties at their average rank: ``AUC = (R+ - n+ (n+ + 1) / 2) /
    (n+ n-)``, ``R+`` the sum of the positives' ranks among all scores (1 = lowest): the
    probability that a random positive scores above a random negative, ties counting half.
    0.5: no better than chance; below 0.5: the positives score lower. NaN without both classes.
    """
    x = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    if x.shape != y.shape:
        raise ValueError(f"scores and labels must have the same size, got {x.size} and {y.size}")
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return math.nan
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # a tie group of c values at ranks end - c + 1 .. end
    ranks = (ends - (counts - 1) / 2)[inverse]  # average rank of each score
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _versus_occlusion(values: np.ndarray, occluded: np.ndarray, name: str) -> dict:
    """Means of per-pixel ``values`` on visible and occluded pixels, their ratio, and the ROC AUC
    of ``values`` as a detector of occlusion."""
    vis = float(values[~occluded].mean()) if (~occluded).any() else math.nan
    occ = float(values[occluded].mean()) if occluded.any() else math.nan
    return {f"{name}_visible": vis, f"{name}_occluded": occ,
            f"{name}_ratio_occluded_visible": occ / vis if vis > 0 else math.nan,
            f"{name}_auc_occlusion": roc_auc(values, occluded)}


@torch.no_grad()
def diversity(model: nn.Module, profile: Profile, *, num_scenes: int = 8, size: int = 256,
              scene_seed: int = 0, level: str = "l1", threshold: float = 1.0, device=None) -> dict:
    """Offset diversity (Sec. 4.2, Fig. 6, 9) on held-out synthetic scenes with exact occlusion.

    Per pixel of each neighbour frame, the standard deviation of the offsets at PCD ``level``
    (``metrics.offset_diversity``): ``diversity`` over all G*N offsets ("the pixelwise standard
    deviation of all offsets", Fig. 9; with G = 1 the same as within the group) and
    ``diversity_within_groups``, each group's N offsets (A.4: G is another source of
    diversity), averaged over groups. Pooled over scenes and neighbours: the mean over all
    pixels, over visible and over occluded ones (the centre's content occluded in that
    neighbour, where a single flow cannot align), their ratio and the ROC AUC of the
    diversity as a detector of occlusion (``roc_auc``; 0.5: diversity does not concentrate
    where the flow fails). The other place a single flow fails is where it is wrong: on visible
    pixels, ``mean_offset_within_1px`` is the share whose mean offset (over all G*N, the
    flow-like estimate the warping loss trains) is within ``threshold`` px of the exact flow,
    ``diversity_mean_offset_off`` / ``_on`` the mean diversity where it is not / is, and
    ``diversity_auc_mean_offset_error`` the ROC AUC of diversity as a detector of the pixels
    where it misses. ``within_1px``: the share of visible pixels whose closest offset is within
    ``threshold`` px of the exact flow, as ``offsets_vs_flow``.
    """
    device = device or next(model.parameters()).device
    per_group = profile.model.alignment.offsets_per_group
    div, within, occluded, closest, missed = [], [], [], [], []
    with evaluating(model):
        for clip in _held_out_scenes(profile, num_scenes, size, scene_seed):
            _, _, _, aux = _run_on(model, profile, clip, device)
            for _, f, o, _, valid in _neighbours(clip, aux, level):
                groups, rest = divmod(o.shape[1], 2 * per_group)
                if rest or not groups:
                    raise ValueError(f"{o.shape[1]} offset channels are not 2*G*N with the profile's "
                                     f"N = {per_group} ({profile.model.alignment.kind})")
                div.append(offset_diversity(o)[0, 0].flatten().numpy())  # (h*w,)
                within.append(offset_diversity(o, groups)[0].mean(0).flatten().numpy())
                occluded.append((~valid).flatten().numpy())
                closest.append(closest_offset(o, f)[0][0][valid].numpy())
                mean = o.unflatten(1, (-1, 2)).mean(1)  # (1, 2, h, w), (dy, dx): the mean of all G*N
                missed.append(offset_flow_distance(mean, f)[0, 0][valid].numpy() >= threshold)
    div, within, occluded, closest, missed = map(np.concatenate, (div, within, occluded, closest, missed))
    visible_div = div[~occluded]
    on = float(visible_div[~missed].mean()) if (~missed).any() else math.nan
    off = float(visible_div[missed].mean()) if missed.any() else math.nan
    return {
        "diversity": float(div.mean()), **_versus_occlusion(div, occluded, "diversity"),
        "diversity_within_groups": float(within.mean()),
        "mean_offset_within_1px": float(np.mean(~missed)), "diversity_mean_offset_on": on,
        "diversity_mean_offset_off": off, "diversity_auc_mean_offset_error": roc_auc(visible_div, missed),
        "within_1px": float(np.mean(closest < threshold)), "num_pixels": int(div.size),
        "occluded_share": float(occluded.mean()),
        "settings": {"num_scenes": num_scenes, "size": size, "scene_seed": scene_seed, "level": level,
                     "threshold": threshold, "offsets_per_group": per_group},
    }


@torch.no_grad()
def masks(model: nn.Module, profile: Profile, *, num_scenes: int = 8, size: int = 256,
          scene_seed: int = 0, level: str = "l1", norm: str = "l1", small: float = 0.1,
          device=None) -> dict:
    """Modulation masks of DCNv2 (Eq. 7, A.5, Fig. 17-18) against the exact flow and occlusion.

    For each offset index ``k = g*N + n`` at PCD ``level``: the mean mask ``m_k`` and the mean
    distance (``norm``, "l1" as Fig. 6 sorts offsets) of offset ``k`` to the exact flow, over
    the visible pixels of every neighbour of the held-out scenes -- Fig. 17's scatter, one
    point per offset -- and the Pearson r between them (the paper: offsets far from the
    flow have the smallest masks, a negative r). ``share_small``: the share of mask values
    below ``small`` over all offsets and pixels (A.5: with many offsets a large share is
    about 0). Masks against occlusion: the per-pixel mean mask over the G*N offsets on
    visible and occluded pixels, their ratio and its ROC AUC as a detector of occlusion
    (below 0.5: the masks drop where the centre's content is occluded).
    """
    device = device or next(model.parameters()).device
    mask_sum = dist_sum = None
    count, per_pixel, occluded, values = 0, [], [], []
    with evaluating(model):
        for clip in _held_out_scenes(profile, num_scenes, size, scene_seed):
            _, _, _, aux = _run_on(model, profile, clip, device)
            for _, f, o, m, valid in _neighbours(clip, aux, level):
                if m is None:
                    raise ValueError("masks needs a modulated model (DCNv2: alignment.modulated=True)")
                dist = offset_flow_distance(o, f, norm=norm)[0]  # (G*N, h, w)
                ms, ds = m[0][:, valid].double().sum(1), dist[:, valid].double().sum(1)  # (G*N,)
                mask_sum = ms if mask_sum is None else mask_sum + ms
                dist_sum = ds if dist_sum is None else dist_sum + ds
                count += int(valid.sum())
                per_pixel.append(m[0].mean(0).flatten().numpy())
                occluded.append((~valid).flatten().numpy())
                values.append(m[0].flatten().numpy())
    mean_mask, mean_dist = (mask_sum / count).tolist(), (dist_sum / count).tolist()
    per_pixel, occluded, values = map(np.concatenate, (per_pixel, occluded, values))
    return {
        "per_offset": {"mean_mask": mean_mask, "mean_distance": mean_dist},
        "pearson_r": pearson_r(mean_mask, mean_dist) if len(mean_mask) > 1 else math.nan,
        "mean_mask": float(values.mean()), "share_small": float(np.mean(values < small)),
        **_versus_occlusion(per_pixel, occluded, "mask"),
        "num_pixels": count,
        "settings": {"num_scenes": num_scenes, "size": size, "scene_seed": scene_seed, "level": level,
                     "norm": norm, "small": small},
    }


@torch.no_grad()
def psnr_real(model: nn.Module, profile: Profile, *, clips=None, frames_per_clip: int = 4,
              device=None) -> dict:
    """PSNR on the real held-out clips: the bundled test shots, never trained on (``video.SPLIT``).

    As the trainer's validation (``training.validation``: ``get_clips("bundled", "test")``,
    ``validation_samples``, ``evaluate``): ``frames_per_clip`` centre frames per clip, evenly
    spaced, super-resolved, rounded to 8 bits, RGB PSNR against the ground truth, beside
    MATLAB-bicubic and EDVR's bilinear base (an untrained EDVR's output); a flow-guided model
    gets DIS flows. Per clip and over all frames;
    ``clips``: the clip names to score (default all).
    """
    from dalign_nb.training.validation import evaluate

    found = get_clips("bundled", "test")
    names = [c.name for c in found]
    if clips is not None:
        unknown = set(clips) - set(names)
        if unknown:
            raise ValueError(f"no held-out clip {sorted(unknown)}; clips: {names}")
        found = [c for c in found if c.name in clips]
    per_clip, ours, bic, base = {}, [], [], []
    for clip in found:
        samples = validation_samples([clip], profile.model.num_frame, frames_per_clip,
                                     with_flow=profile.model.takes_flows)
        res = evaluate(model, samples, device)
        per_clip[clip.name] = res
        ours += [res["psnr"]] * res["num_frames"]
        bic += [res["psnr_bicubic"]] * res["num_frames"]
        base += [res["psnr_bilinear_base"]] * res["num_frames"]
    return {"psnr": float(np.mean(ours)), "psnr_bicubic": float(np.mean(bic)),
            "psnr_bilinear_base": float(np.mean(base)),
            "psnr_gain_over_bicubic": float(np.mean(ours) - np.mean(bic)), "num_frames": len(ours),
            "per_clip": per_clip, "settings": {"clips": [c.name for c in found],
                                               "frames_per_clip": frames_per_clip}}


class Measure(NamedTuple):
    fn: Callable[..., dict]  # (model, profile, *, device, **options) -> dict
    headline: tuple[str, ...]  # keys printed when a run finishes
    applies: Callable[[Profile], bool] = lambda profile: True  # else the result records None


MEASURES: dict[str, Measure] = {
    "offsets_vs_flow": Measure(offsets_vs_flow, ("within_1px", "epe", "mean_flow", "psnr",
                                                 "psnr_gain_over_zero")),
    "diversity": Measure(diversity, ("diversity", "diversity_auc_occlusion")),
    "masks": Measure(masks, ("pearson_r", "mask_auc_occlusion"), lambda p: p.model.alignment.has_masks),
    "psnr_real": Measure(psnr_real, ("psnr", "psnr_gain_over_bicubic")),
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


_CODE: dict | None = None  # the repository's state when this process started running experiments


def _code_state() -> dict:
    """``_git()`` as it was the first time this process asked: the code that runs is the code
    the process loaded, not whatever the working tree holds when a run ends an hour later."""
    global _CODE
    if _CODE is None:
        _CODE = _git()
    return _CODE


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
        sittings.append({"date": _now(), **_code_state(), "from_iter": before, "to_iter": res.iteration,
                         "wall_s": round(time.perf_counter() - t0, 1), "status": res.status,
                         "device": next(res.model.parameters()).device.type})
        _write_json(folder / SITTINGS, sittings)
    return res, sittings


def _curve(history: dict, max_points: int = 200) -> list[dict]:
    """The loss and the offset monitor from the training history, at most ``max_points``: each
    level's mean and max |offset| of the logged batch and the largest mean |offset| since the
    previous entry (``training.monitor``; Fig. 10 and 19 read them, overflow events are in
    ``train.overflow``)."""
    entries = history["train"]
    step = max(1, math.ceil(len(entries) / max_points))
    picked = entries[::step] + ([entries[-1]] if entries and (len(entries) - 1) % step else [])

    def per_level(e, key):
        return {lvl: s.get(key) for lvl, s in e.get("offsets", {}).items()}

    return [{"iter": e["iter"], "loss": e["loss"], "terms": e.get("terms", {}), "lr": e["lr"],
             "mean_abs_offset": per_level(e, "mean_abs"), "max_abs_offset": per_level(e, "max_abs"),
             "peak_mean_abs_offset": per_level(e, "peak_mean_abs")}
            for e in picked]


def _options(run: Run, extra: dict | None) -> dict:
    """Each measurement's keyword arguments: the experiment's, then ``extra`` (``--option``)."""
    names = run.experiment.measures
    return {n: {**run.experiment.options.get(n, {}), **(extra or {}).get(n, {})} for n in names}


def _measure(run: Run, model, names, device, options: dict) -> tuple[dict, float]:
    """The measurements ``names`` of a trained model; None for a measurement that does not apply
    to the run's model (``Measure.applies``: ``masks`` of a model without masks, which an
    experiment may put beside its DCNv2 ones)."""
    t0 = time.perf_counter()
    out = {}
    for name in names:
        m = MEASURES[name]
        applies = m.applies(run.profile)
        out[name] = m.fn(model, run.profile, device=device, **options[name]) if applies else None
    return out, time.perf_counter() - t0


def _record(run: Run, paths: _Paths, res, sittings, measures, measure_wall, command, options) -> dict:
    dev = next(res.model.parameters()).device
    weights = None
    if run.seed in run.experiment.keep_weights:
        _save_weights(paths.weights(run), res.model)
        weights = paths.weights(run).relative_to(paths.results).as_posix()
    h = res.history
    return {
        "format": 1, "experiment": run.experiment.name, "run": run.name, "condition": run.condition,
        "seed": run.seed, "num_params": sum(p.numel() for p in res.model.parameters()),
        "measures": measures,
        "train": {"status": res.status, "iterations": res.iteration, "val": h["val"], "curve": _curve(h),
                  "events": h["events"], "overflow": h["overflow"]},
        "provenance": {
            "command": command, "profile": _plain(run.profile), **_code_state(), "seed": run.seed,
            "device": dev.type,
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
            "torch": str(torch.__version__), "python": sys.version.split()[0],
            "threads": torch.get_num_threads(),
            "train_wall_s": round(sum(s["wall_s"] for s in sittings), 1),
            "measure_wall_s": round(measure_wall, 1), "measure_options": options,
            "iterations": res.iteration, "date": _now(),
            "sittings": sittings},
        "weights": weights,
    }


def _headline(result: dict) -> str:
    parts = []
    for name, values in result["measures"].items():
        for key in MEASURES[name].headline if name in MEASURES and values is not None else ():
            v = values.get(key)
            parts.append(f"{key} {v:.4g}" if isinstance(v, float) else f"{key} {v}")
    return ", ".join(parts)


def _run_one(run: Run, paths: _Paths, *, device, stop_at, remeasure, progress, command, options=None) -> str:
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
    options = _options(run, options)
    measures, wall = _measure(run, res.model, todo, device, options)
    if old is not None:
        measures = {**old["measures"], **measures}
    result = _record(run, paths, res, sittings, measures, wall, command, options)
    _write_json(paths.result(run), result)
    print(f"{run.experiment.name}/{run.name}: {_headline(result)}", flush=True)
    return "done"


def _child_args(name, run, *, profile, seeds, device, overrides, stop_at, fresh, remeasure, tag,
                paths_args, threads, command, options=None) -> list[str]:
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
    for measure, values in (options or {}).items():
        args += [arg for key, value in values.items() for arg in ("--option", f"{measure}.{key}={value!r}")]
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
                   command: str | None = None, options: dict | None = None) -> dict[str, str]:
    """Run experiment ``name``: skip finished runs, resume interrupted ones, measure, record.

    profile: run every condition on this profile instead (e.g. "quick" for a smoke run);
    seeds: instead of the experiment's; overrides: dotted profile fields for every run;
    only: run names to run; stop_at: stop each run after this iteration (another sitting
    resumes it); fresh: discard the selected runs' results and checkpoints first;
    remeasure: measure finished runs again; tag: keep the results in ``<name>-<tag>``;
    jobs: runs at once, in subprocesses; threads: torch threads per run (this process's are
    set to it; default: all cores, or cores / jobs for each subprocess); options: measurement
    keyword arguments over the experiment's, ``{"offsets_vs_flow": {"num_scenes": 1}}`` (smoke
    runs; recorded in ``provenance.measure_options``, not compared when skipping).
    Returns run name -> "done", "skipped", "stopped", "SIGINT", ... A Ctrl-C stops every run
    after its current iteration with a checkpoint, then raises ``KeyboardInterrupt``.
    """
    _code_state()  # the code this process runs with, recorded with every run it finishes
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
                               command=command, options=options)
        return {**status, **_run_parallel(todo, paths, jobs, child, threads)}
    if threads:
        torch.set_num_threads(threads)
    for i, run in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {name}/{run.name}: {_state(run, paths)}", flush=True)
        status[run.name] = _run_one(run, paths, device=device, stop_at=stop_at, remeasure=remeasure,
                                    progress=progress, command=command, options=options)
        if status[run.name] in ("SIGINT", "SIGTERM"):
            break
    return status


# --------------------------------------------------------------------------- reading results


def load_results(name: str, results_dir=None, missing_ok: bool = False) -> list[dict]:
    """The result dicts of experiment folder ``name`` (``data/results/<name>/*.json``), by run name;
    ``missing_ok``: no folder yet gives ``[]`` instead of an error (a sweep not yet run)."""
    folder = Path(results_dir or RESULTS_DIR) / name
    if not folder.is_dir() and missing_ok:
        return []
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


def paired(results: list[dict], key: str, condition: str, baseline: str) -> dict:
    """Seed for seed, ``condition`` minus ``baseline`` of a dotted ``key`` over the seeds both
    have (same initial weights and batches; only the conditions' fields differ): the mean and
    sample standard deviation of the differences (NaN with one seed), ``n``, ``seeds``, ``values``.
    ``paired(load_results("fig5"), "measures.offsets_vs_flow.psnr", "aligning", "sr_only")``."""
    by = {(r["condition"], r["seed"]): _get(r, key) for r in results}
    seeds = sorted(s for c, s in by if c == condition and (baseline, s) in by)
    d = np.array([by[condition, s] - by[baseline, s] for s in seeds], dtype=float)
    return {"mean": float(d.mean()) if len(d) else math.nan,
            "std": float(d.std(ddof=1)) if len(d) > 1 else math.nan,
            "n": len(d), "seeds": seeds, "values": d.tolist()}


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
    options: dict[str, dict] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        measure, dot, field = key.partition(".")
        if not (sep and dot) or measure not in MEASURES:
            parser.error(f"--option expects MEASURE.KEY=VALUE, MEASURE one of {sorted(MEASURES)}; "
                         f"got {item!r}")
        options.setdefault(measure, {})[field] = _value(value)
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
            progress=not args.no_progress, threads=args.threads, options=options,
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
