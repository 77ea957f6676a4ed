"""The offset monitor: how large the learned offsets grow, when they overflow, and whether the
alignment still passes its frames on (masks shut, a PCD output the leaky ReLU all but stops)."""

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

    Given ``masks`` (``aux["masks"]``: per level the DCNv2 masks, Eq. 7, or None) a level's
    statistics add ``masks_off``, the share of masks below ``mask_off`` (0.01); given
    ``aligned`` (``aux["aligned_feat"]``: in EDVR the features its PCD passes to the fusion,
    after its leaky ReLU; in TDAN and the flow network their aligned features or frames)
    ``flush`` also returns ``pcd_positive``, the share of them above zero, of the latest batch
    (None if never given): where the signal of a model that ends at the bilinear base stopped,
    and when (``diagnostics.alignment_health`` reads the same of a trained model).
    """

    def __init__(self, threshold: float = 10.0, overflow_mean: float = 50.0, mask_off: float = 0.01):
        self.threshold, self.overflow_mean, self.mask_off = threshold, overflow_mean, mask_off
        self._last, self._peak, self._masks, self._positive = {}, {}, {}, None

    def update(self, offsets: dict[str, Tensor], masks: dict[str, Tensor | None] | None = None,
               aligned: Tensor | None = None) -> None:
        for level, off in offsets.items():
            if off is None:
                continue
            a = off.detach().abs().float()
            mean = a.mean()
            self._last[level] = (mean, a.amax(), (a > self.threshold).float().mean())
            peak = self._peak.get(level)
            self._peak[level] = mean if peak is None else torch.maximum(peak, mean)
        for level, mask in (masks or {}).items():
            if mask is not None:
                self._masks[level] = (mask.detach() < self.mask_off).float().mean()
        if aligned is not None:
            self._positive = (aligned.detach() > 0).float().mean()

    def flush(self) -> tuple[dict, list[dict], float | None]:
        """(per level statistics, overflow events, ``pcd_positive``); starts afresh."""
        stats, overflow = {}, []
        for level, (mean, amax, frac) in self._last.items():
            peak = self._peak[level].item()
            stats[level] = {"mean_abs": mean.item(), "max_abs": amax.item(),
                            "frac_above": frac.item(), "peak_mean_abs": peak}
            if level in self._masks:
                stats[level]["masks_off"] = self._masks[level].item()
            if not math.isfinite(peak) or peak > self.overflow_mean:
                overflow.append({"level": level, "mean_abs": peak})
        positive = None if self._positive is None else self._positive.item()
        self._last, self._peak, self._masks, self._positive = {}, {}, {}, None
        return stats, overflow, positive
