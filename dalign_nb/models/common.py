"""What Table 2's two networks share (``tdan`` and ``flownet``): the checks of their configs and
clips, TDAN's x4 upsampler, the bilinear base they add their residual to, and the stacking of
the neighbours' entries around the centre frame's."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .edvr import _conv

__all__ = ["bilinear_x4", "check_clip", "check_config", "upsampler_x4", "with_centre"]


def check_config(config, **minimum: int) -> None:
    """Refuse a config whose fields ``name=least`` are not ints >= least, or whose
    ``center_frame_idx`` lies outside its ``num_frame`` frames."""
    for name, least in minimum.items():
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    c = config.center_frame_idx
    if c is not None and not 0 <= c < config.num_frame:
        raise ValueError(f"center_frame_idx must be in [0, {config.num_frame}), got {c}")


def upsampler_x4(num_feat: int, num_out_ch: int = 3, zero_last: bool = False) -> nn.Sequential:
    """TDAN's ``up``: (conv C -> 4C, pixel shuffle x2) twice, then a 3x3 conv to RGB without bias.

    ``up.0`` is TDAN's ``Upsampler`` (no activation), ``up.1`` the last convolution, at zero
    with ``zero_last``: (B, C, h, w) -> (B, 3, 4h, 4w).
    """
    upsampler = nn.Sequential(_conv(num_feat, 4 * num_feat), nn.PixelShuffle(2),
                              _conv(num_feat, 4 * num_feat), nn.PixelShuffle(2))
    last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1, bias=False)
    if zero_last:
        nn.init.zeros_(last.weight)
    return nn.Sequential(upsampler, last)


def bilinear_x4(frame: Tensor) -> Tensor:
    """The base every model here adds its residual to: (B, 3, h, w) -> (B, 3, 4h, 4w), bilinear."""
    return F.interpolate(frame, scale_factor=4, mode="bilinear", align_corners=False)


def check_clip(x: Tensor, num_frame: int, multiple: int = 1) -> None:
    """Refuse anything but a clip ``(B, T=num_frame, 3, h, w)`` with h, w multiples of ``multiple``."""
    if not isinstance(x, Tensor) or x.dim() != 5 or x.shape[1] != num_frame or x.shape[2] != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must have shape (B, T={num_frame}, 3, h, w), got {shape}")
    if x.shape[-1] % multiple or x.shape[-2] % multiple:
        raise ValueError(f"x's height and width must be multiples of {multiple}, got {tuple(x.shape[-2:])}")


def with_centre(nbrs: Tensor, centre: Tensor, index: int) -> Tensor:
    """Neighbours (B, T-1, ...) and the centre frame's entry (B, ...) as (B, T, ...), in frame order."""
    return torch.cat([nbrs[:, :index], centre[:, None], nbrs[:, index:]], dim=1)
