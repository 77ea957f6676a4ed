"""The optimiser and its learning-rate schedule: cosine annealing with restarts, as BasicSR's."""

from __future__ import annotations

import math
import re

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["CosineAnnealingRestartLR", "build_optimizer", "build_scheduler", "lr_groups"]


def lr_groups(model: nn.Module, rules) -> list[tuple[float, list[str]]]:
    """``model``'s parameter names by learning-rate multiplier under ``rules`` (``train.lr_mul``:
    ``(pattern, multiplier)`` pairs; a parameter takes the first rule whose regular expression is
    found in its name, ``re.search``; the rest keep multiplier 1): ``[(1.0, names), (m_1,
    names_1), ...]``, one entry per rule, in order. BasicSR's ``dcn_lr_mul = m`` is
    ``(("dcn", m),)``: in EDVR's PCD module (ours and BasicSR's share the names) the deformable
    convolutions of each level and of the cascade (``pcd_align.dcn_pack.*``,
    ``pcd_align.cas_dcnpack``) with the convolutions that predict their offsets and masks
    (``*.conv_offset``), not the layers before them (``offset_conv1-3``, ``cas_offset_conv1-2``).
    ``"pcd_align"`` picks the whole alignment module. A rule that picks no parameter raises
    ``ValueError``: it would change nothing."""
    names = [name for name, _ in model.named_parameters()]
    groups: list[tuple[float, list[str]]] = [(1.0, [])] + [(float(m), []) for _, m in rules]
    patterns = [re.compile(p) for p, _ in rules]
    for name in names:
        hit = next((i for i, pattern in enumerate(patterns) if pattern.search(name)), None)
        groups[0 if hit is None else hit + 1][1].append(name)
    for (pattern, _), (_, picked) in zip(rules, groups[1:]):
        if not picked:
            raise ValueError(f"train.lr_mul: {pattern!r} picks no parameter of {type(model).__name__} "
                             "(before it, another rule may have taken them)")
    return groups


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Adam:
    """Adam over ``model``'s parameters, one group per multiplier of ``lr_groups(model,
    cfg.lr_mul)`` at ``cfg.lr`` times it (``cfg`` a ``TrainConfig``); without rules one group, as
    BasicSR does at ``dcn_lr_mul: 1``. Group 0 is always the base rate's (the rate the history
    logs); each group carries its ``lr_mul`` for ``build_scheduler``. A multiplier of 0 freezes
    its parameters (Adam's step is ``lr`` times a bounded ratio: exactly 0)."""
    params = dict(model.named_parameters())
    groups = [{"params": [params[n] for n in names], "lr_mul": mul, "lr": cfg.lr * mul}
              for mul, names in lr_groups(model, cfg.lr_mul)]  # every rule's group holds parameters
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
        # a group at lr0 = 0 (train.lr_mul's 0, frozen) stays at 0: eta_min would move it
        return [0.0 if lr0 == 0 else self.lr_at(self.last_epoch, lr0) for lr0 in self.base_lrs]


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
