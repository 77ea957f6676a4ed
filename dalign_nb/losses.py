"""Losses: the Charbonnier data term and the offset-fidelity loss of Sec. 3.4 (Eq. 4-5).

The paper augments the data-fitting loss ``L`` (Charbonnier, as EDVR) with

    L_hat = L + lambda * sum_n L_n                                         (Eq. 4)
    L_n   = sum_{i,j} H(|x_{n,ij} - y_{ij}| - t) * |x_{n,ij} - y_{ij}|      (Eq. 5)

where ``x_n`` is the n-th offset, ``y`` the optical flow and ``H`` the Heaviside step:
an offset is free within ``t`` pixels of the flow (offset diversity is kept) and pulled
back towards it by an L1 penalty beyond (no overflow).

The authors' released code (github.com/ckkelvinchan/offset-fidelity-loss,
``offset_fidelity_loss.py``, class ``OffsetFidelityLoss``) fixes what Eq. 5 leaves open,
and ``normalization="released"`` (the default) follows it:

* ``lambda = 1`` (``loss_weight``) and ``t = 10`` (``threshold``) by default;
* the flow ``(B, 2, H, W)`` in (u, v) order is flipped to (dy, dx) and repeated for every
  offset pair; offsets are raw ``dp_k``, without the kernel grid ``p_k``;
* ``|dy - v|`` and ``|dx - u|`` are thresholded separately, strictly (``> t``);
* each offset pair's penalty is averaged over (2, H, W), and these means are summed over
  all pairs (groups x offsets) and the batch.

``normalization="paper"`` is Eq. 5 read literally: the same per-component penalty summed
over i, j (and both components, all pairs and the batch), so it is ``2*H*W`` times the
released value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ops import flow_warp

__all__ = ["CharbonnierLoss", "OffsetFidelityLoss", "charbonnier_loss", "offset_fidelity_loss",
           "photometric_warping_loss"]

NORMALIZATIONS = ("released", "paper")
PHOTOMETRIC_TARGETS = ("each", "mean")


def charbonnier_loss(pred: Tensor, target: Tensor, eps: float = 1e-12) -> Tensor:
    """Charbonnier penalty ``mean(sqrt((pred - target)^2 + eps))``, BasicSR's ``CharbonnierLoss``.

    A differentiable L1; BasicSR (and EDVR's training) use ``eps = 1e-12`` inside the root.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    return torch.sqrt((pred - target) ** 2 + eps).mean()


class CharbonnierLoss(nn.Module):
    """``loss_weight * charbonnier_loss(pred, target, eps)``."""

    def __init__(self, loss_weight: float = 1.0, eps: float = 1e-12):
        super().__init__()
        self.loss_weight, self.eps = loss_weight, eps

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return self.loss_weight * charbonnier_loss(pred, target, self.eps)


def _as_pairs(offset: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """offset (..., 2M, H, W), flow (..., 2, H, W) -> (B', M, 2, H, W) offsets and (B', 1, 2, H, W) flow."""
    if offset.dim() not in (4, 5) or offset.dim() != flow.dim():
        raise ValueError(f"offset (B, 2*G*N, H, W) and flow (B, 2, H, W) (or both with a frame axis "
                         f"after B) expected, got {tuple(offset.shape)} and {tuple(flow.shape)}")
    if offset.dim() == 5:  # (B, T, ...) as stacked by EDVR's aux: frames join the batch
        offset, flow = offset.flatten(0, 1), flow.flatten(0, 1)
    b, c, h, w = offset.shape
    if c == 0 or c % 2 or tuple(flow.shape) != (b, 2, h, w):
        raise ValueError(f"offset must be (B, 2*G*N, H, W) and flow (B, 2, H, W) with the same B, H, W, "
                         f"got {tuple(offset.shape)} and {tuple(flow.shape)}")
    return offset.view(b, c // 2, 2, h, w), flow.flip(1)[:, None]  # flow (u, v) -> (dy, dx)


def offset_fidelity_loss(offset: Tensor, flow: Tensor, loss_weight: float = 1.0, threshold: float = 10.0,
                         normalization: str = "released") -> Tensor:
    """Offset-fidelity loss ``lambda * sum_n L_n`` (Eq. 4-5) of offsets against an optical flow.

    offset: ``(B, 2*G*N, H, W)`` DCN offsets (dy, dx per pair, layout of ``ops``), or
        ``(B, T, 2*G*N, H, W)`` as in EDVR's ``aux["offsets"][level]``;
    flow: ``(B, 2, H, W)`` (u, v) from the reference to the neighbour at the offsets'
        resolution (``(B, T, 2, H, W)`` with a frame axis);
    loss_weight: lambda; threshold: t (pixels); normalization: "released" (mean over
        (2, H, W) per offset pair, summed over pairs and batch) or "paper" (Eq. 5's sum).
    Gradients reach only the offset components farther than ``t`` from the flow.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    pairs, target = _as_pairs(offset, flow)  # (B, M, 2, H, W), (B, 1, 2, H, W)
    diff = (pairs - target).abs()  # |x_{n,ij} - y_{ij}| per component
    beyond = (diff > threshold).to(diff.dtype)  # H(|x - y| - t), strict as the released code
    penalty = beyond * diff  # (B, M, 2, H, W)
    if normalization == "released":
        loss = penalty.mean(dim=(2, 3, 4)).sum()  # mean over (2, H, W), sum over pairs and batch
    else:
        loss = penalty.sum()  # Eq. 5: sum over i, j (and components), Eq. 4: sum over n
    return loss_weight * loss


class OffsetFidelityLoss(nn.Module):
    """``offset_fidelity_loss`` as a module (the released ``OffsetFidelityLoss``'s arguments)."""

    def __init__(self, loss_weight: float = 1.0, threshold: float = 10.0, normalization: str = "released"):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.loss_weight, self.threshold, self.normalization = loss_weight, threshold, normalization

    def forward(self, offset: Tensor, flow: Tensor) -> Tensor:
        return offset_fidelity_loss(offset, flow, self.loss_weight, self.threshold, self.normalization)


def _group_means(off: Tensor, num_offsets: int) -> Tensor:
    """(B, T, 2*G*N, h, w) -> (B, T, 2*G, h, w): each group's mean offset ``o_bar_g = mean_n o_{g,n}``."""
    if off.shape[2] % (2 * num_offsets):
        raise ValueError(f"{off.shape[2]} offset channels are not 2*G*N with N = {num_offsets}")
    return off.unflatten(2, (-1, num_offsets, 2)).mean(3).flatten(2, 3)  # layout g*2N + 2n + (dy, dx)


def photometric_warping_loss(lq: Tensor, offsets: dict[str, Tensor], center: int,
                             levels: tuple[str, ...] = ("l1", "l2", "l3"), eps: float = 1e-6, *,
                             target: str = "each", num_offsets: int = 1) -> Tensor:
    """Self-supervised warping loss on the LR frames: NOT part of the paper.

    Each neighbour frame, warped by each of its offsets, should reproduce the centre frame,
    as in the unsupervised motion compensation of VESPCN (Caballero et al., CVPR 2017) and
    TDAN (Tian et al., CVPR 2020). At pyramid level ``l`` (``"l1"`` full LR size, ``"l2"``
    half, ``"l3"`` quarter) the frames are average-pooled to that size and warped by that
    level's offsets. Per level: the Charbonnier penalty ``sqrt(d^2 + eps)`` between the
    centre frame and every warped neighbour, averaged over the pixels whose sample lies
    inside the frame (a sample from outside carries no information about the motion), over
    the colour channels, every offset of every group, the neighbours and the batch; the
    result is the mean over ``levels``. It needs no flow: it shapes offsets towards the
    motion that explains the frames, which the SR loss alone does not do at small scale.

    ``target``: ``"each"`` -- every offset warped must reproduce the centre frame (all N
    offsets of a group are pulled onto the motion); ``"mean"`` -- only each group's mean
    offset ``o_bar_g = (1/N) sum_n o_{g,n}`` is warped, so the spread of the N offsets around
    it, the offset diversity of Sec. 4.2, is left to the SR loss. With N = 1 the two agree.
    For a DCN the offsets are the raw ``dp_k`` (as the offset-fidelity loss takes them); the
    kernel grid ``p_k`` of an odd kernel has mean 0, so ``o_bar`` is also the mean sampling
    displacement ``mean_k (p_k + dp_k)``. ``num_offsets``: N (``AlignmentConfig.offsets_per_group``).

    lq: (B, T, C, h, w) LR frames; offsets[level]: (B, T, 2*G*N, h_l, w_l) in the (dy, dx)
    layout of ``ops`` (EDVR's ``aux["offsets"]``); center: index of the reference frame.
    """
    if target not in PHOTOMETRIC_TARGETS:
        raise ValueError(f"target must be one of {PHOTOMETRIC_TARGETS}, got {target!r}")
    b, t, c, h, w = lq.shape
    neighbours = [i for i in range(t) if i != center]
    if not neighbours:
        raise ValueError("photometric_warping_loss needs at least one neighbour frame (T >= 2)")
    total = lq.new_zeros(())
    for level in levels:
        off = offsets[level]  # (B, T, 2*G*N, h_l, w_l)
        if target == "mean":
            off = _group_means(off, num_offsets)  # (B, T, 2*G, h_l, w_l)
        s = h // off.shape[-2]
        frames = lq if s == 1 else F.avg_pool2d(lq.flatten(0, 1), s).view(b, t, c, *off.shape[-2:])
        pairs = off.shape[2] // 2
        nbr = frames[:, neighbours].repeat_interleave(pairs, dim=1).flatten(0, 1)  # (B*T'*P, C, h_l, w_l)
        ref = frames[:, center, None].expand(-1, len(neighbours) * pairs, -1, -1, -1).flatten(0, 1)
        flow = off[:, neighbours].float().unflatten(2, (pairs, 2)).flatten(0, 2).flip(1)  # (u, v)
        warped = flow_warp(nbr.float(), flow)
        with torch.no_grad():  # samples inside the frame
            hl, wl = flow.shape[-2:]
            x = torch.arange(wl, device=flow.device).view(1, wl) + flow[:, 0]
            y = torch.arange(hl, device=flow.device).view(hl, 1) + flow[:, 1]
            inside = ((x >= 0) & (x <= wl - 1) & (y >= 0) & (y <= hl - 1)).float()[:, None]
        penalty = torch.sqrt((warped - ref.float()) ** 2 + eps)  # (B*T'*P, C, h_l, w_l)
        total = total + (penalty * inside).sum() / (inside.sum() * c).clamp_min(1.0)
    return total / len(levels)
