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

from .ops import flow_warp, group_mean_offsets

__all__ = ["CharbonnierLoss", "OffsetFidelityLoss", "aligned_frames_loss", "census_transform",
           "charbonnier_loss", "fidelity_flow", "offset_fidelity_loss", "photometric_warping_loss",
           "smoothness_loss", "soft_hamming", "target_offsets"]

NORMALIZATIONS = ("released", "paper")
PHOTOMETRIC_TARGETS = ("each", "mean")
FIDELITY_TARGETS = PHOTOMETRIC_TARGETS  # offset_fidelity_target: every offset (Eq. 5), or each group's mean
PHOTOMETRIC_PENALTIES = ("rgb", "census", "census+rgb")


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


def fidelity_flow(flow: Tensor, offset: Tensor, cascade_target_zero: bool = False) -> Tensor:
    """The flow that the offset-fidelity loss compares ``offset`` with, at its resolution.

    flow: ``(B, T, 2, h, w)`` or ``(B, 2, h, w)`` (u, v) at the LR size; offset: a PCD level's
    offsets, ``(..., 2*G*N, h / s, w / s)``: a coarser level (s = 2, 4) gets the flow
    average-pooled by s and divided by s (its pixels are s LR pixels). ``cascade_target_zero``:
    the offsets are EDVR's cascade, which aligns the already aligned L1 feature: the motion left
    for it is zero (ours: neither the paper nor the released loss says what the loss does there).
    """
    if cascade_target_zero:
        return torch.zeros_like(flow)
    s = flow.shape[-1] // offset.shape[-1]
    if s == 1:
        return flow
    lead = flow.shape[:-3]
    pooled = F.avg_pool2d(flow.reshape(-1, *flow.shape[-3:]), s) / s
    return pooled.view(*lead, *pooled.shape[-3:])


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


def _level_frames(lq: Tensor, size: tuple[int, int]) -> Tensor:
    """LR frames (B, T, C, h, w) average-pooled to a PCD level's size (h_l, w_l)."""
    b, t, c, h, w = lq.shape
    s = h // size[0]
    return lq if s == 1 else F.avg_pool2d(lq.flatten(0, 1), s).view(b, t, c, *size)


def target_offsets(off: Tensor, target: str, num_offsets: int) -> Tensor:
    """The offsets a term acts on: every one (``"each"``), or each group's mean (``"mean"``,
    ``ops.group_mean_offsets``): the warping and smoothness terms' ``target``, and the
    offset-fidelity loss's ``TrainConfig.offset_fidelity_target``."""
    if target not in PHOTOMETRIC_TARGETS:
        raise ValueError(f"target must be one of {PHOTOMETRIC_TARGETS}, got {target!r}")
    return group_mean_offsets(off, num_offsets) if target == "mean" else off


def _pooled_offsets(off: Tensor, scale: int) -> Tensor:
    """Offsets (B, T, 2P, h, w) average-pooled by ``scale`` and divided by it: the same motion
    in the pixels of the frames pooled by ``scale`` (``photometric_warping_loss``'s ``scales``)."""
    if scale == 1:
        return off
    b, t, ch, h, w = off.shape
    if h < scale or w < scale:
        raise ValueError(f"offsets of {h} x {w} pixels cannot be pooled by {scale}")
    pooled = F.avg_pool2d(off.flatten(0, 1), scale) / scale
    return pooled.view(b, t, ch, *pooled.shape[-2:])


def _wide(t: Tensor) -> Tensor:
    """At least float32: half-precision tensors from autocast are widened, float64 kept."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _neighbours(t: int, center: int) -> list[int]:
    neighbours = [i for i in range(t) if i != center]
    if not neighbours:
        raise ValueError("the self-supervised warping terms need at least one neighbour frame (T >= 2)")
    return neighbours


GREY = (0.2989, 0.5870, 0.1140)  # ITU-R BT.601 luma weights, as UnFlow's rgb_to_grayscale


def census_transform(image: Tensor, patch_size: int = 7) -> Tensor:
    """Soft ternary census transform (Zabih & Woodfill 1994; soft form of UnFlow, Meister et al.
    AAAI 2018): ``(M, C, H, W)`` RGB in [0, 1] -> ``(M, P*P, H, W)``.

    The image is turned to grey on 0-255 (BT.601); for every pixel p and every q of the
    P x P patch around it, ``d = I(p + q) - I(p)`` becomes ``d / sqrt(0.81 + d^2)``, in (-1, 1):
    the sign of a local brightness order, robust to additive and multiplicative changes of
    brightness. Borders are padded by replication, so a constant image has census 0.
    """
    if patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"patch_size must be a positive odd number, got {patch_size}")
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be (M, 3, H, W) RGB, got {tuple(image.shape)}")
    grey = 255.0 * (image * image.new_tensor(GREY).view(1, 3, 1, 1)).sum(1, keepdim=True)  # (M, 1, H, W)
    r = patch_size // 2
    eye = torch.eye(patch_size * patch_size, dtype=image.dtype, device=image.device)
    taps = eye.view(-1, 1, patch_size, patch_size)  # one filter per patch position q
    d = F.conv2d(F.pad(grey, (r, r, r, r), mode="replicate"), taps) - grey  # (M, P*P, H, W)
    return d / torch.sqrt(0.81 + d * d)


def soft_hamming(a: Tensor, b: Tensor) -> Tensor:
    """Soft Hamming distance of two census transforms, ``mean_q (a-b)^2 / (0.1 + (a-b)^2)``:
    (M, P*P, H, W) twice -> (M, 1, H, W), in [0, 1)."""
    d2 = (a - b) ** 2
    return (d2 / (0.1 + d2)).mean(1, keepdim=True)


def aligned_frames_loss(aligned_lr: Tensor, lq: Tensor, center: int) -> Tensor:
    """TDAN's alignment loss (Tian et al., CVPR 2020, Sec. 3.3): the aligned LR neighbours
    should be the reference LR frame. Mean squared error, as MMEditing's TDAN configuration
    (``lq_pixel_loss``: MSE, weight 0.25 from scratch, 0.01 when fine-tuning), averaged over the
    neighbours only (the reference is not aligned, ``models.tdan``).

    aligned_lr: ``(B, T, 3, h, w)`` (a TDAN's ``aux["aligned_lr"]``); lq: ``(B, T, 3, h, w)``.
    """
    if aligned_lr.shape != lq.shape or aligned_lr.dim() != 5:
        raise ValueError(f"aligned_lr and lq must both be (B, T, C, h, w), got {tuple(aligned_lr.shape)} "
                         f"and {tuple(lq.shape)}")
    nbrs = [k for k in range(lq.shape[1]) if k != center]
    return F.mse_loss(aligned_lr[:, nbrs], lq[:, center, None].expand_as(aligned_lr[:, nbrs]))


def photometric_warping_loss(lq: Tensor, offsets: dict[str, Tensor], center: int,
                             levels: tuple[str, ...] = ("l1", "l2", "l3"), eps: float = 1e-6, *,
                             target: str = "each", num_offsets: int = 1,
                             penalty: str = "rgb", scales: tuple[int, ...] = (1,)) -> Tensor:
    """Self-supervised warping loss on the LR frames: NOT part of the paper.

    Each neighbour frame, warped by each of its offsets, should reproduce the centre frame,
    as in the unsupervised motion compensation of VESPCN (Caballero et al., CVPR 2017) and
    TDAN (Tian et al., CVPR 2020). At pyramid level ``l`` (``"l1"`` full LR size, ``"l2"``
    half, ``"l3"`` quarter) the frames are average-pooled to that size and warped by that
    level's offsets. Per level, a Charbonnier penalty ``sqrt(d^2 + eps)`` averaged over the
    pixels whose sample lies inside the frame (a sample from outside carries no information
    about the motion), every offset of every group, the neighbours and the batch; the result
    is the mean over ``levels``. It needs no flow: it shapes offsets towards the motion that
    explains the frames, which the SR loss alone does not do at small scale.

    ``penalty``: ``"rgb"`` -- ``d`` is the colour difference (averaged over the channels);
    ``"census"`` -- ``d`` is the soft Hamming distance between the 7 x 7 soft census
    transforms of the warped neighbour and of the centre frame (``census_transform``,
    ``soft_hamming``; UnFlow, Meister et al. AAAI 2018), which compares local brightness
    *order*: it does not reward the flat, textureless matches and brightness changes that
    the RGB difference does; ``"census+rgb"`` -- the sum of the two terms: census to find the
    motion, the colour difference (zero at the motion where the frames keep their colours, as BI
    frames of one scene do) meant to pin its sub-pixel part (a lever to screen, not a finding).

    ``target``: ``"each"`` -- every offset warped must reproduce the centre frame (all N
    offsets of a group are pulled onto the motion); ``"mean"`` -- only each group's mean
    offset ``o_bar_g = (1/N) sum_n o_{g,n}`` is warped (``ops.group_mean_offsets``), so the
    spread of the N offsets around it, the offset diversity of Sec. 4.2, is left to the SR
    loss. With N = 1 the two agree. For a DCN the offsets are the raw ``dp_k`` (as the
    offset-fidelity loss takes them); the kernel grid ``p_k`` of an odd kernel has mean 0, so
    ``o_bar`` is also the mean sampling displacement ``mean_k (p_k + dp_k)``. ``num_offsets``:
    N (``AlignmentConfig.offsets_per_group``).

    ``scales``: each level's offsets are also average-pooled by every ``s`` of ``scales`` (and
    divided by ``s``: the same motion in coarser pixels) and warp the frames pooled by ``s``.
    Bilinear warping passes gradient to an offset from the two pixels either side of its
    sample only, so a term at one resolution cannot pull an offset towards a motion more than
    about a pixel away; at ``s`` = 4 a motion of 6 px is 1.5 coarse px. For a model with one
    offset level (TDAN's) this stands in for the coarse-to-fine pyramid that EDVR's PCD and
    SPyNet have; ``(1,)`` (the default) is the level alone. The result is the mean over
    ``levels`` x ``scales``.

    lq: (B, T, C, h, w) LR frames; offsets[level]: (B, T, 2*G*N, h_l, w_l) in the (dy, dx)
    layout of ``ops`` (EDVR's ``aux["offsets"]``); center: index of the reference frame.
    """
    if penalty not in PHOTOMETRIC_PENALTIES:
        raise ValueError(f"penalty must be one of {PHOTOMETRIC_PENALTIES}, got {penalty!r}")
    b, t, c, h, w = lq.shape
    neighbours = _neighbours(t, center)
    if not scales or any(not isinstance(s, int) or s < 1 for s in scales):
        raise ValueError(f"scales must be a non-empty tuple of positive integers, got {scales!r}")
    total = lq.new_zeros(())
    for level, scale in ((lvl, s) for lvl in levels for s in scales):
        off = target_offsets(offsets[level], target, num_offsets)  # (B, T, 2*P, h_l, w_l)
        off = _pooled_offsets(off, scale)  # (B, T, 2*P, h_l / scale, w_l / scale)
        frames = _level_frames(lq, off.shape[-2:])
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
        differences = []  # (d, channels) per penalty compared
        if penalty in ("census", "census+rgb"):
            differences.append((soft_hamming(census_transform(warped), census_transform(ref.float())), 1))
        if penalty in ("rgb", "census+rgb"):
            differences.append((warped - ref.float(), c))
        for d, channels in differences:
            penalty_map = torch.sqrt(d ** 2 + eps)  # (B*T'*P, channels, h_l, w_l)
            total = total + (penalty_map * inside).sum() / (inside.sum() * channels).clamp_min(1.0)
    return total / (len(levels) * len(scales))


def smoothness_loss(lq: Tensor, offsets: dict[str, Tensor], center: int,
                    levels: tuple[str, ...] = ("l1", "l2", "l3"), edge_weight: float = 10.0, *,
                    target: str = "each", num_offsets: int = 1) -> Tensor:
    """Edge-aware first-order smoothness of the offsets: NOT part of the paper.

    ``mean |d_x o| exp(-e |d_x I_ref|) + mean |d_y o| exp(-e |d_y I_ref|)`` per level (UnFlow,
    Meister et al. AAAI 2018; UFlow, Jonschkowski et al. ECCV 2020): neighbouring offsets
    should agree, except across an edge of the reference frame, where motion boundaries
    lie. ``|d I|`` is the forward difference of the centre frame (average-pooled to the
    level, [0, 1], mean over the colour channels), ``e`` = ``edge_weight``; ``o`` are the
    neighbours' offsets in that level's pixels (every offset, or each group's mean, as
    ``target`` says). The mean over ``levels``. Zero for a constant field.
    """
    b, t, c, h, w = lq.shape
    neighbours = _neighbours(t, center)
    total = lq.new_zeros(())
    for level in levels:
        off = target_offsets(offsets[level], target, num_offsets)
        off = _wide(off[:, neighbours])  # (B, T', 2P, h_l, w_l)
        ref = _wide(_level_frames(lq, off.shape[-2:])[:, center])  # (B, C, h_l, w_l)
        wx = torch.exp(-edge_weight * (ref[..., :, 1:] - ref[..., :, :-1]).abs().mean(1))  # (B, h_l, w_l-1)
        wy = torch.exp(-edge_weight * (ref[..., 1:, :] - ref[..., :-1, :]).abs().mean(1))  # (B, h_l-1, w_l)
        gx = (off[..., :, 1:] - off[..., :, :-1]).abs()  # (B, T', 2P, h_l, w_l-1)
        gy = (off[..., 1:, :] - off[..., :-1, :]).abs()
        total = total + (gx * wx[:, None, None]).mean() + (gy * wy[:, None, None]).mean()
    return total / len(levels)
