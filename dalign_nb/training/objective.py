"""The training objective: the weighted terms of the loss the trainer adds, and how hard each
pulls on the parameters that predict the offsets.

``loss_terms`` is what ``train`` minimises on every batch (the Charbonnier SR term; the
offset-fidelity loss of Sec. 3.4, Eq. 4-5; the warping and smoothness terms, not the paper's;
TDAN's aligned-frames term), each switched on and weighted by ``profile.train``.
``term_gradients`` reads one term's pull on the offset branches (notebook 09: the
offset-fidelity loss against the warping terms, Sec. 4.3).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..losses import (
    aligned_frames_loss,
    charbonnier_loss,
    fidelity_flow,
    offset_fidelity_loss,
    photometric_warping_loss,
    smoothness_loss,
    target_offsets,
)
from .validation import build_data

__all__ = ["loss_terms", "offset_branch", "term_gradients", "training_batches"]


def loss_terms(profile, model: nn.Module, lq: Tensor, gt: Tensor, out: Tensor, aux: dict,
               flows: Tensor | None = None, iteration: int = 0) -> dict[str, Tensor]:
    """The weighted terms of the training loss of one batch, by name, as the trainer adds them:
    ``"sr"`` (Charbonnier), ``"fidelity"`` (the offset-fidelity loss, Sec. 3.4, summed over
    ``offset_fidelity_levels``, from iteration ``offset_fidelity_from``), ``"photometric"`` and
    ``"smoothness"`` (the warping terms, not the paper's, while ``photometric_until`` allows at
    ``iteration``), ``"aligned_lr"`` (TDAN's); only those ``profile.train`` switches on. ``lq``
    (B, T, 3, h, w), ``gt`` (B, 3, H, W), ``out`` and ``aux`` the model's output and
    ``return_aux`` dict, ``flows`` (B, T, 2, h, w) (u, v) centre to frame t (the offset-fidelity
    loss needs them). ``"sr"`` is there at every iteration: the trainer weights it 0 before
    ``sr_after``. ``term_gradients`` reads one term's pull on the offsets with it."""
    cfg = profile.train
    sr = charbonnier_loss(out.float(), gt, cfg.charbonnier_eps)  # mean over pixels
    terms = {"sr": sr * out.numel() if cfg.loss_reduction == "sum" else sr}
    if cfg.offset_fidelity_weight > 0 and iteration >= cfg.offset_fidelity_from:
        if flows is None:
            raise ValueError("offset_fidelity_weight > 0 needs the flows of the batch (B, T, 2, h, w)")
        terms["fidelity"] = _fidelity(profile, aux["offsets"], flows.float())
    until = cfg.photometric_until
    if cfg.photometric_weight > 0 and (until == 0 or iteration < until):
        terms.update(_self_supervised(profile, model, lq, aux["offsets"]))
    if cfg.aligned_lr_weight > 0:  # TDAN's own alignment loss
        center = getattr(model, "center_frame_idx", lq.shape[1] // 2)
        terms["aligned_lr"] = cfg.aligned_lr_weight * aligned_frames_loss(aux["aligned_lr"].float(), lq,
                                                                          center)
    return terms


def _fidelity(profile, offsets: dict, flows: Tensor) -> Tensor:
    """The offset-fidelity loss (Sec. 3.4) summed over ``offset_fidelity_levels``, each level
    against the flow at its size (``losses.fidelity_flow``; the cascade against zero motion
    unless the model's cascade offsets are the whole motion, EDVR's "image" alignment); on every
    offset, or on each group's mean (``offset_fidelity_target``)."""
    cfg = profile.train
    residual = getattr(profile.model, "cascade_is_residual", False)  # EDVR's; others have no cascade
    total = 0
    for level in cfg.offset_fidelity_levels:
        off = offsets[level].float()  # (B, T, 2*G*N, h_l, w_l), relative to the neighbour
        off = target_offsets(off, cfg.offset_fidelity_target, profile.model.offsets_per_group)
        target = fidelity_flow(flows, off, cascade_target_zero=level == "cascade" and residual)
        total = total + offset_fidelity_loss(off, target, cfg.offset_fidelity_weight,
                                             cfg.offset_fidelity_threshold)
    return total


def _self_supervised(profile, model: nn.Module, lq: Tensor, offsets: dict) -> dict[str, Tensor]:
    """The warping term (and the smoothness term), weighted: not the paper's (see losses)."""
    cfg = profile.train
    kw = {"target": cfg.photometric_target, "num_offsets": profile.model.offsets_per_group}
    center = getattr(model, "center_frame_idx", lq.shape[1] // 2)
    terms = {"photometric": cfg.photometric_weight * photometric_warping_loss(
        lq, offsets, center, cfg.photometric_levels, penalty=cfg.photometric_penalty,
        scales=cfg.photometric_scales, **kw)}
    if cfg.smoothness_weight > 0:
        terms["smoothness"] = cfg.smoothness_weight * smoothness_loss(
            lq, offsets, center, cfg.photometric_levels, cfg.smoothness_edge, **kw)
    return terms


def training_batches(profile, count: int) -> list[dict]:
    """The first ``count`` batches of ``profile``'s training patches, ``data.batch_size`` each
    and stacked as the trainer stacks them (``lq``, ``gt`` and, where the data has them, ``flow``),
    in the dataset's order rather than the trainer's: the ``batches`` of ``term_gradients``."""
    train_set, _ = build_data(profile)
    size = profile.data.batch_size
    if count < 1 or count * size > len(train_set):
        raise ValueError(f"count must be in [1, {len(train_set) // size}] (batches of {size} of the "
                         f"{len(train_set)} training patches), got {count}")
    keys = [k for k in ("lq", "gt", "flow") if k in train_set[0]]
    return [{k: torch.stack([train_set[i][k] for i in range(b * size, (b + 1) * size)]) for k in keys}
            for b in range(count)]


def offset_branch(name: str) -> bool:
    """Whether parameter ``name`` predicts offsets (EDVR's ``offset_conv*``, ``cas_offset_conv*``
    and each DCN's ``conv_offset``, which predicts its masks too): ``term_gradients``' default."""
    return "offset" in name


def term_gradients(model: nn.Module, profile, batches,
                   params: Callable[[str], bool] = offset_branch, iteration: int | None = None) -> list[dict]:
    """How hard each term of the training loss pulls on the parameters that predict the offsets:
    per batch, each term's value and the norm of its gradient on the parameters ``params``
    selects (by name; the offset branches by default), the terms weighted and switched on as
    ``profile.train`` says (``loss_terms``). ``batches``: dicts of ``lq`` (B, T, 3, h, w),
    ``gt`` (B, 3, H, W) and ``flow`` (B, T, 2, h, w), as the trainer's samples stacked. Returns one
    ``{term: {"value": float, "grad_norm": float}}`` per batch. A term that is zero on a batch
    (the offset-fidelity loss while every offset lies within its threshold) has a zero gradient.
    ``iteration``: the terms as switched on at that training iteration (``photometric_until``,
    ``offset_fidelity_from``); the last one of ``profile.train`` by default, as for a kept model.
    The model's parameters are not changed and keep no gradient."""
    chosen = [p for n, p in model.named_parameters() if params(n)]
    if not chosen:
        raise ValueError("params selects no parameter of the model")
    device = chosen[0].device
    iteration = profile.train.total_iter - 1 if iteration is None else iteration
    rows = []
    for batch in batches:
        lq, gt = batch["lq"].to(device), batch["gt"].to(device)
        flows = batch["flow"].to(device) if "flow" in batch else None
        out, aux = model(lq, return_aux=True)
        terms = loss_terms(profile, model, lq, gt, out, aux, flows, iteration)
        row = {}
        for name, value in terms.items():
            grads = torch.autograd.grad(value, chosen, retain_graph=True, allow_unused=True)
            norm = math.sqrt(sum(float((g.float() ** 2).sum()) for g in grads if g is not None))
            row[name] = {"value": float(value.detach()), "grad_norm": norm}
        rows.append(row)
    return rows
