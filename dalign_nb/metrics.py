"""Metrics: image quality (PSNR, SSIM, the bicubic baseline) and offset analysis (Sec. 4), and
the ROC AUC of a per-pixel score as a detector (of occlusion, of misses: ``roc_auc``).

Conventions (shared by the trainer, the experiments and the viewers):

* images are torch tensors in [0, 1], RGB, ``(B, 3, H, W)`` (a single ``(3, H, W)`` is
  accepted); the first argument of ``psnr`` / ``ssim`` is the estimate, clamped to [0, 1]
  (a network's output overshoots), the second the ground truth;
* offsets are in the torchvision / BasicSR layout ``(B, 2*G*N, H, W)`` with
  ``dy = off[:, g*2N + 2n]`` and ``dx = off[:, g*2N + 2n + 1]``; flows are ``(B, 2, H, W)``
  with channel 0 = x (u) and 1 = y (v), so a flow equals DCN offsets via ``flow.flip(1)``.
  Leading dimensions beyond B (EDVR's frames) are accepted by the offset metrics.

How the VSR literature reports PSNR (and what ``dalign_nb.training.validation.evaluate`` reports): the
output is rounded to 8 bits (``quantize``, as BasicSR's ``tensor2img``), then PSNR is
computed on RGB with no border crop for REDS4 (the paper's Table 3: "evaluated on RGB
channels"), or on the Y channel of ITU-R BT.601 YCbCr (``y_channel=True``) for Vid4 and
Vimeo-90K-T in other papers. The bicubic baseline is MATLAB's ``imresize`` upscaling.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity
from torch import Tensor

from .data.degrade import imresize

__all__ = [
    "bicubic_baseline",
    "bilinear_base",
    "closest_offset",
    "offset_diversity",
    "offset_flow_distance",
    "pearson_r",
    "psnr",
    "quantize",
    "rgb_to_y",
    "roc_auc",
    "share_within",
    "ssim",
]

# ITU-R BT.601 for [0, 1] RGB -> Y in [16/255, 235/255], as MATLAB's rgb2ycbcr and BasicSR's
# rgb2ycbcr(y_only=True): Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255.
_BT601_Y = (65.481, 128.553, 24.966)


def _images(x: Tensor, name: str = "x") -> Tensor:
    if not isinstance(x, Tensor) or x.dim() not in (3, 4) or x.shape[-3] != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be RGB images (B, 3, H, W) or (3, H, W), got {shape}")
    return x if x.dim() == 4 else x[None]


def _pair(x: Tensor, y: Tensor, crop_border: int, y_channel: bool) -> tuple[Tensor, Tensor]:
    """Both images as float64 (B, C, H, W), the estimate clamped, converted and cropped alike."""
    x, y = _images(x, "x"), _images(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.detach().double().clamp(0, 1), y.detach().double()
    if y_channel:
        x, y = rgb_to_y(x), rgb_to_y(y)  # (B, 1, H, W)
    if crop_border:
        c = crop_border
        x, y = x[..., c:-c, c:-c], y[..., c:-c, c:-c]
    return x, y


def quantize(x: Tensor) -> Tensor:
    """Round images in [0, 1] to 8 bits: ``round(255 x) / 255`` (what saving a PNG does)."""
    return (x.clamp(0, 1) * 255).round() / 255


def rgb_to_y(x: Tensor) -> Tensor:
    """Luma of ITU-R BT.601: ``(B, 3, H, W)`` in [0, 1] -> ``(B, 1, H, W)`` in [16/255, 235/255].

    ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255`` (MATLAB's ``rgb2ycbcr``, BasicSR).
    """
    x = _images(x)
    w = x.new_tensor(_BT601_Y).view(1, 3, 1, 1)
    return (16.0 + (x * w).sum(1, keepdim=True)) / 255.0


def psnr(x: Tensor, y: Tensor, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(1 / MSE)``, per image, averaged over the batch.

    x: the estimate (clamped to [0, 1]); y: the ground truth. ``crop_border`` pixels are
    dropped on every side; ``y_channel`` compares BT.601 luma (``rgb_to_y``) instead of RGB.
    An image identical to its ground truth scores ``inf``.
    """
    x, y = _pair(x, y, crop_border, y_channel)
    mse = (x - y).pow(2).flatten(1).mean(1)  # (B,)
    return float(np.mean([math.inf if m == 0 else 10 * math.log10(1 / m) for m in mse.tolist()]))


def ssim(x: Tensor, y: Tensor, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """Structural similarity (Wang et al., IEEE TIP 2004) with scikit-image, averaged over the batch.

    Wang et al.'s settings, as BasicSR's ``calculate_ssim``: an 11x11 Gaussian window with
    sigma 1.5, population covariances, ``data_range`` 1; RGB channels are scored separately
    and averaged. Arguments as ``psnr``.
    """
    x, y = _pair(x, y, crop_border, y_channel)
    a, b = x.permute(0, 2, 3, 1).cpu().numpy(), y.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, C)
    scores = [structural_similarity(ai, bi, data_range=1.0, channel_axis=-1, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False) for ai, bi in zip(a, b)]
    return float(np.mean(scores))


def bilinear_base(lq: Tensor, scale: int = 4) -> Tensor:
    """EDVR's base: the centre LR frame upsampled bilinearly (torch, ``align_corners=False``), to
    which the network adds its output; an untrained EDVR (``zero_init_output``) returns exactly
    this, so a model whose PSNR equals the base's has learned nothing.
    ``(B, 3, h, w) -> (B, 3, scale*h, scale*w)`` (or ``(3, h, w)``)."""
    single = lq.dim() == 3
    out = F.interpolate(_images(lq, "lq"), scale_factor=scale, mode="bilinear", align_corners=False)
    return out[0] if single else out


def bicubic_baseline(lq: Tensor, scale: int = 4) -> Tensor:
    """The "bicubic" row of every VSR table: MATLAB ``imresize(lq, scale, 'bicubic')``.

    ``(B, 3, h, w) -> (B, 3, scale*h, scale*w)`` (or ``(3, h, w)`` -> ``(3, H, W)``), clamped to
    [0, 1], on ``lq``'s device and dtype. Uses ``dalign_nb.data.imresize`` (Keys' cubic with
    a = -0.5, MATLAB's border handling), not torch's bicubic (a = -0.75).
    """
    single = lq.dim() == 3
    frames = _images(lq, "lq").detach().permute(0, 2, 3, 1).double().cpu().numpy()  # (B, h, w, 3)
    up = np.stack([imresize(f, scale) for f in frames])  # (B, s*h, s*w, 3) float64
    out = torch.from_numpy(up).permute(0, 3, 1, 2).clamp(0, 1).to(lq.device, lq.dtype)
    return out[0] if single else out


def _offset_vectors(offsets: Tensor) -> Tensor:
    """``(..., 2*G*N, H, W)`` -> ``(..., G*N, 2, H, W)`` as (dy, dx) pairs."""
    if offsets.dim() < 3 or offsets.shape[-3] % 2:
        raise ValueError(f"offsets must be (..., 2*G*N, H, W), got {tuple(offsets.shape)}")
    return offsets.unflatten(-3, (-1, 2))


def offset_flow_distance(offsets: Tensor, flow: Tensor, *, norm: str = "l2") -> Tensor:
    """Per pixel and per offset, the distance between each offset (dx, dy) and the flow (u, v).

    offsets ``(B, 2*G*N, H, W)``, flow ``(B, 2, H, W)`` -> ``(B, G*N, H, W)`` in pixels.
    ``norm="l2"``: end-point error ``sqrt((dx - u)^2 + (dy - v)^2)``; ``"l1"``:
    ``|dx - u| + |dy - v|`` (the paper sorts offsets by it, Fig. 6).
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
    off = _offset_vectors(offsets)  # (B, G*N, 2, H, W) as (dy, dx)
    if flow.shape[-3] != 2 or flow.shape[-2:] != offsets.shape[-2:]:
        raise ValueError(f"flow must be (B, 2, H, W) matching the offsets' H, W, got {tuple(flow.shape)}")
    diff = off - flow.flip(-3).unsqueeze(-4)  # flow (u, v) -> (dy, dx) = (v, u)
    return diff.abs().sum(-3) if norm == "l1" else diff.pow(2).sum(-3).sqrt()


def closest_offset(offsets: Tensor, flow: Tensor, *, norm: str = "l2") -> tuple[Tensor, Tensor]:
    """Per pixel, the offset nearest the flow: ``(distance (B, H, W), index (B, H, W))``.

    ``index`` counts offsets as the channel pairs do, ``g * N + n``.
    """
    return offset_flow_distance(offsets, flow, norm=norm).min(dim=-3)


def share_within(distance: Tensor, threshold: float = 1.0, valid: Tensor | None = None) -> float:
    """Share of pixels whose ``distance`` is below ``threshold`` (px), among the ``valid`` ones.

    ``valid``: a bool mask broadcastable to ``distance`` (e.g. not occluded); NaN if empty.
    """
    hit = distance < threshold
    if valid is None:
        return float(hit.double().mean())
    valid = torch.broadcast_to(valid.bool(), hit.shape)
    count = int(valid.sum())
    return float(hit[valid].double().sum() / count) if count else math.nan


def offset_diversity(offsets: Tensor, deform_groups: int = 1) -> Tensor:
    """Offset diversity (Sec. 4.2): the pixelwise standard deviation of each group's N offsets.

    ``(B, 2*G*N, H, W) -> (B, G, H, W)``, in pixels: the spread of the offset vectors
    ``o_n = (dy_n, dx_n)`` around their mean ``o_bar``, ``sqrt(mean_n ||o_n - o_bar||^2)``
    (population form: a single offset has diversity 0).
    """
    off = _offset_vectors(offsets)  # (B, G*N, 2, H, W)
    if off.shape[-4] % deform_groups:
        raise ValueError(f"{off.shape[-4]} offsets cannot be split into {deform_groups} groups")
    off = off.unflatten(-4, (deform_groups, -1))  # (B, G, N, 2, H, W)
    centred = off - off.mean(-4, keepdim=True)
    return centred.pow(2).sum(-3).mean(-3).sqrt()


def pearson_r(x, y) -> float:
    """Pearson's correlation coefficient of two equally long sequences (tensors or arrays)."""
    a = torch.as_tensor(x).detach().double().flatten().cpu()
    b = torch.as_tensor(y).detach().double().flatten().cpu()
    if a.numel() != b.numel() or a.numel() < 2:
        raise ValueError(f"x and y must hold the same number (>= 2) of values, got {a.numel()} "
                         f"and {b.numel()}")
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


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
