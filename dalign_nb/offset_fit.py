"""One offset field fitted to two frames: what the alignment losses ask of offsets, in isolation.

The smallest version of what a PCD level learns (Sec. 4.1): no network, just a free offset
per pixel, ``o (1, 2, h, w)`` in the (dy, dx) layout of ``ops``, moved by gradient descent
(Adam) so that the neighbour frame sampled at ``p + o(p)`` reproduces the reference frame
(``losses.photometric_warping_loss``, with the RGB or census penalty, plus
``losses.smoothness_loss``). Two ways to search:

* **at one level** -- the field starts at 0 at full resolution. Bilinear sampling only
  sees the pixels next to each sample, so the gradient knows where to go only within about
  a pixel of the true motion (less on fine texture): a motion of several pixels is found
  slowly and only where the texture is coarse;
* **coarse to fine** -- the field is fitted at 1/4 resolution first, where that motion is
  under a pixel or two, then upsampled (magnitude doubled) and refined at 1/2 and at full
  resolution: each finer level starts from the coarser answer and only has a residual to
  find, the idea of warp-then-estimate (SPyNet, PWC-Net; ``EDVRConfig.warp_then_estimate``).

Notebook 05 runs both on a real frame moved by a known shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .losses import photometric_warping_loss, smoothness_loss

__all__ = ["FittedField", "fit_offset_field"]

LEVELS = ("l3", "l2", "l1")  # coarse to fine: 1/4, 1/2 and full resolution


@dataclass
class FittedField:
    """The fitted offsets ``(1, 2, h, w)`` (dy, dx) at full resolution, the loss after every step
    and, per level searched, the field when that level finished (at that level's size)."""

    offsets: Tensor
    losses: list[float]
    by_level: dict[str, Tensor]


def _objective(lq: Tensor, off: Tensor, penalty: str, smoothness_weight: float) -> Tensor:
    """The warping (+ smoothness) terms of frames (neighbour, reference) with the neighbour's
    offsets ``off`` (1, 2, h_l, w_l) (the reference's own are zero); frames pooled to h_l x w_l."""
    offsets = {"l1": torch.stack([off, torch.zeros_like(off)], dim=1)}  # (1, T=2, 2, h_l, w_l)
    loss = photometric_warping_loss(lq, offsets, 1, ("l1",), penalty=penalty)
    if smoothness_weight > 0:
        loss = loss + smoothness_weight * smoothness_loss(lq, offsets, 1, ("l1",))
    return loss


def fit_offset_field(reference: Tensor, neighbour: Tensor, *, coarse_to_fine: bool = True,
                     steps: int = 150, lr: float = 0.05, penalty: str = "rgb",
                     smoothness_weight: float = 0.1) -> FittedField:
    """Fit one offset per pixel that warps ``neighbour`` onto ``reference`` (both ``(1, 3, h, w)``
    in [0, 1], h and w multiples of 4), ``steps`` Adam steps per level searched."""
    if reference.shape != neighbour.shape or reference.dim() != 4 or reference.shape[:2] != (1, 3):
        raise ValueError(f"reference and neighbour must both be (1, 3, h, w), got "
                         f"{tuple(reference.shape)} and {tuple(neighbour.shape)}")
    h, w = reference.shape[-2:]
    if h % 4 or w % 4:
        raise ValueError(f"h and w must be multiples of 4 (three levels), got {(h, w)}")
    lq = torch.stack([neighbour, reference], dim=1).float()  # (1, 2, 3, h, w)
    levels = LEVELS if coarse_to_fine else ("l1",)
    off, losses, by_level = None, [], {}
    for level in levels:
        s = 2 ** (int(level[1]) - 1)
        start = torch.zeros(1, 2, h // s, w // s) if off is None else 2 * F.interpolate(
            off, scale_factor=2, mode="bilinear", align_corners=False)
        off = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([off], lr=lr)
        for _ in range(steps):
            loss = _objective(lq, off, penalty, smoothness_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        off = off.detach()
        by_level[level] = off.clone()
    return FittedField(off, losses, by_level)
