"""The optimiser and its learning-rate schedule: cosine annealing with restarts, as BasicSR's."""

from __future__ import annotations

import math
import re

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["CosineAnnealingRestartLR", "DCN_KEY", "build_optimizer", "build_scheduler", "dcn_parameter_names"]

DCN_KEY = "dcn"  # BasicSR's EDVRModel: parameters whose name holds it train at lr * dcn_lr_mul


def dcn_parameter_names(model: nn.Module, key: str = DCN_KEY) -> list[str]:
    """The parameters ``train.dcn_lr_mul`` scales: every name in which the regular expression
    ``key`` is found (``re.search``; a plain word is found where the name contains it). With
    ``"dcn"`` (the default) these are the ones BasicSR's ``EDVRModel.setup_optimizers`` picks: in
    EDVR's PCD module (ours and BasicSR's share the names) the deformable convolutions of each
    level and of the cascade (``pcd_align.dcn_pack.*``, ``pcd_align.cas_dcnpack``) with the
    convolutions that predict their offsets and masks (``*.conv_offset``); the layers before
    them (``offset_conv1-3``, ``cas_offset_conv1-2``) keep the base rate. ``"pcd_align"`` takes
    the whole alignment module, ``"^(conv_first|feature_extraction|conv_l[23]_|pcd_align)"`` the features
    and the alignment (``train.dcn_lr_params``)."""
    pattern = re.compile(key)
    return [name for name, _ in model.named_parameters() if pattern.search(name)]


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Adam:
    """Adam over ``model``'s parameters at ``cfg.lr`` (a ``TrainConfig``), those of
    ``dcn_parameter_names(model, cfg.dcn_lr_params)`` at ``cfg.lr * cfg.dcn_lr_mul`` (a second
    group, kept only when
    ``dcn_lr_mul != 1``, as BasicSR does). Group 0 is always the base rate's; each group carries
    its ``lr_mul`` for ``build_scheduler``. A multiplier other than 1 on a model without such
    parameters raises ``ValueError``: it would change nothing."""
    mul = float(cfg.dcn_lr_mul)
    if mul == 1.0:
        groups = [{"params": list(model.parameters()), "lr_mul": 1.0}]
    else:
        dcn = set(dcn_parameter_names(model, cfg.dcn_lr_params))
        if not dcn:
            raise ValueError(f"train.dcn_lr_mul = {mul} scales the parameters whose name contains "
                             f"{cfg.dcn_lr_params!r} (train.dcn_lr_params); {type(model).__name__} has none")
        named = list(model.named_parameters())
        groups = [{"params": [p for n, p in named if n not in dcn], "lr_mul": 1.0},
                  {"params": [p for n, p in named if n in dcn], "lr_mul": mul}]
    for group in groups:
        group["lr"] = cfg.lr * group["lr_mul"]
    return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)


class CosineAnnealingRestartLR(LRScheduler):
    """Cosine annealing with restarts (Loshchilov & Hutter 2016), as BasicSR's.

    Within restart period ``i`` (``periods[i]`` iterations long, starting at iteration
    ``c_i = sum(periods[:i])``):

        lr(t) = eta_min + w_i * (lr0 - eta_min) * (1 + cos(pi * (t - c_i) / periods[i])) / 2

    with ``w_i = restart_weights[i]``. ``t`` is the scheduler's step count; the trainer
    steps it after every optimiser step, so iteration ``t + 1`` runs at ``lr(t)``.
    """

    def __init__(self, optimizer, periods, restart_weights=(1.0,), eta_min=0.0, last_epoch=-1):
        if len(periods) != len(restart_weights):
            raise ValueError("periods and restart_weights must have the same length, got "
                             f"{len(periods)} and {len(restart_weights)}")
        self.periods, self.restart_weights = list(periods), list(restart_weights)
        self.eta_min = eta_min
        self.cumulative_period = [sum(self.periods[: i + 1]) for i in range(len(self.periods))]
        super().__init__(optimizer, last_epoch)

    def _position(self, t: int) -> int:
        for i, end in enumerate(self.cumulative_period):
            if t <= end:
                return i
        return len(self.periods) - 1

    def lr_at(self, t: int, lr0: float | None = None) -> float:
        """The learning rate after ``t`` scheduler steps (of the first group, or from ``lr0``)."""
        lr0 = self.base_lrs[0] if lr0 is None else lr0
        i = self._position(t)
        start = 0 if i == 0 else self.cumulative_period[i - 1]
        cos = 1 + math.cos(math.pi * (t - start) / self.periods[i])
        return self.eta_min + self.restart_weights[i] * 0.5 * (lr0 - self.eta_min) * cos

    def get_lr(self) -> list[float]:
        return [self.lr_at(self.last_epoch, lr0) for lr0 in self.base_lrs]


def build_scheduler(optimizer: Optimizer, cfg, position: int = 0) -> CosineAnnealingRestartLR:
    """The schedule of ``cfg`` (a ``TrainConfig``) placed at ``position`` finished iterations.

    Resuming calls it with the restored iteration: the schedule is always the current
    profile's (a lengthened run continues along the new cosine), never the checkpoint's; the
    optimiser's learning rate is set to ``lr(position)``. Each group starts from ``cfg.lr`` times
    its ``lr_mul`` (``build_optimizer``; 1 where a group has none).
    """
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"] = cfg.lr * group.get("lr_mul", 1.0)
    # LRScheduler steps once on construction: from last_epoch = position - 1 to position
    return CosineAnnealingRestartLR(optimizer, cfg.periods, cfg.restart_weights, cfg.eta_min,
                                    last_epoch=position - 1)
