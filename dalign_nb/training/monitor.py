"""The offset monitor: how large the learned offsets grow, and when they overflow."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["OffsetMonitor"]


class OffsetMonitor:
    """Per pyramid level: mean and max |offset| and the share of components beyond ``threshold``.

    ``update(offsets)`` after every forward pass keeps, on the device, the largest mean
    |offset| seen since the last ``flush`` (so an overflow between two log points is not
    missed, without a host sync per iteration); ``flush()`` returns the statistics of the
    latest batch plus that running maximum, and the levels whose mean |offset| exceeded
    ``overflow_mean`` (BasicSR warns at 50: the offsets have diverged, the training
    instability that motivates Sec. 3.4).
    """

    def __init__(self, threshold: float = 10.0, overflow_mean: float = 50.0):
        self.threshold, self.overflow_mean = threshold, overflow_mean
        self._last, self._peak = {}, {}

    def update(self, offsets: dict[str, Tensor]) -> None:
        for level, off in offsets.items():
            if off is None:
                continue
            a = off.detach().abs().float()
            mean = a.mean()
            self._last[level] = (mean, a.amax(), (a > self.threshold).float().mean())
            peak = self._peak.get(level)
            self._peak[level] = mean if peak is None else torch.maximum(peak, mean)

    def flush(self) -> tuple[dict, list[dict]]:
        stats, overflow = {}, []
        for level, (mean, amax, frac) in self._last.items():
            peak = self._peak[level].item()
            stats[level] = {"mean_abs": mean.item(), "max_abs": amax.item(),
                            "frac_above": frac.item(), "peak_mean_abs": peak}
            if not math.isfinite(peak) or peak > self.overflow_mean:
                overflow.append({"level": level, "mean_abs": peak})
        self._last, self._peak = {}, {}
        return stats, overflow
