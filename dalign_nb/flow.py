"""Optical flow: estimation with OpenCV, Middlebury ``.flo`` files, the colour wheel, EPE.

Flow-based alignment (Sec. 4.1 of the paper) warps a neighbour with an estimated flow;
the paper compares learned offsets with PWC-Net flow (Fig. 4-5). Here flow comes from
OpenCV's DIS (Kroeger et al., ECCV 2016) or Farneback (SCIA 2003) estimators, and
synthetic scenes (``dalign_nb.data.synthetic_scene``) give the true flow to score them.

Layout: numpy flows are ``(H, W, 2)`` float32 with ``[..., 0] = u`` (x) and
``[..., 1] = v`` (y), OpenCV's layout; torch flows are ``(B, 2, H, W)`` with the same
channel order. ``estimate_flow(ref, other)`` is the flow from ``ref`` to
``other``: ``ref(p) ~ other(p + flow(p))``, so ``flow_warp(other, flow)`` aligns
``other`` to ``ref``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.utils import flow_to_image

__all__ = [
    "DIS_PRESETS",
    "FLO_MAGIC",
    "FlowFileError",
    "end_point_error",
    "estimate_flow",
    "estimate_flows",
    "flow_to_color",
    "read_flo",
    "write_flo",
]

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
FLO_MAGIC = 202021.25  # "PIEH" read as a little-endian float32 (Middlebury flow format)


class FlowFileError(ValueError):
    """A ``.flo`` file that is not in the Middlebury format."""


def _grey_uint8(img: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
        raise ValueError(f"{name} must be a numpy image HxW or HxWx3, got {getattr(img, 'shape', type(img))}")
    if img.dtype != np.uint8:
        img = np.clip(np.round(np.asarray(img, np.float64) * 255), 0, 255).astype(np.uint8)  # [0,1] -> 0..255
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def estimate_flow(ref: np.ndarray, other: np.ndarray, method: str = "dis",
                  preset: str = "medium") -> np.ndarray:
    """Flow ``(H, W, 2)`` float32 from ``ref`` to ``other`` (RGB or grey; uint8, or float in [0, 1]).

    method ``"dis"`` (preset ``"ultrafast"`` / ``"fast"`` / ``"medium"``) or ``"farneback"``
    (pyramid scale 0.5, 5 levels, window 15, as OpenCV's tutorial with more levels).
    """
    a, b = _grey_uint8(ref, "ref"), _grey_uint8(other, "other")
    if a.shape != b.shape:
        raise ValueError(f"ref and other must have the same size, got {a.shape} and {b.shape}")
    if method == "dis":
        if preset not in DIS_PRESETS:
            raise ValueError(f"preset must be one of {sorted(DIS_PRESETS)}, got {preset!r}")
        return cv2.DISOpticalFlow_create(DIS_PRESETS[preset]).calc(a, b, None)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 5, 15, 3, 5, 1.2, 0)
    raise ValueError(f"method must be 'dis' or 'farneback', got {method!r}")


def estimate_flows(frames: torch.Tensor, method: str = "dis", preset: str = "medium") -> torch.Tensor:
    """Flows from the centre frame to every frame of a clip: ``(T, 3, h, w)`` -> ``(T, 2, h, w)``.

    The one estimator behind every flow the models and losses use when a clip has no exact
    flow (training patches, validation frames): ``estimate_flow(centre, frame)`` for each
    frame, (u, v) channels, and exactly zero for the centre frame itself (T odd).
    """
    imgs = frames.detach().permute(0, 2, 3, 1).float().cpu().numpy()  # (T, h, w, 3) in [0, 1]
    c = len(imgs) // 2
    flows = [np.zeros(imgs.shape[1:3] + (2,), np.float32) if i == c else
             estimate_flow(imgs[c], f, method, preset) for i, f in enumerate(imgs)]
    return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).contiguous()  # (T, 2, h, w)


def write_flo(path, flow: np.ndarray) -> None:
    """Write a Middlebury ``.flo`` file (Baker et al., IJCV 2011).

    Bytes, little-endian: float32 magic 202021.25, int32 width, int32 height, then
    ``height * width`` (u, v) float32 pairs in row-major order.
    """
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {flow.shape}")
    h, w = flow.shape[:2]
    with open(path, "wb") as f:
        f.write(np.array([FLO_MAGIC], "<f4").tobytes())
        f.write(np.array([w, h], "<i4").tobytes())
        f.write(flow.astype("<f4").tobytes())


def read_flo(path) -> np.ndarray:
    """Read a Middlebury ``.flo`` file into ``(H, W, 2)`` float32; refuse anything malformed."""
    data = Path(path).read_bytes()
    if len(data) < 12:
        raise FlowFileError(f"{path}: {len(data)} bytes, too short for a .flo header (12 bytes)")
    magic = np.frombuffer(data, "<f4", 1)[0]
    if magic != np.float32(FLO_MAGIC):
        raise FlowFileError(f"{path}: bad magic number {magic!r}, expected {FLO_MAGIC} "
                            "(not a Middlebury .flo file)")
    w, h = (int(v) for v in np.frombuffer(data, "<i4", 2, offset=4))
    if w <= 0 or h <= 0:
        raise FlowFileError(f"{path}: invalid size width={w}, height={h}")
    expected = 12 + 8 * w * h
    if len(data) != expected:
        raise FlowFileError(f"{path}: {len(data)} bytes, expected {expected} for a {w}x{h} flow "
                            "(truncated or padded)")
    return np.frombuffer(data, "<f4", 2 * w * h, offset=12).reshape(h, w, 2).astype(np.float32)


def flow_to_color(flow, max_flow: float | None = None) -> np.ndarray:
    """The Middlebury colour-wheel picture (Baker et al., IJCV 2011) of a flow, ``(H, W, 3)`` uint8.

    Uses ``torchvision.utils.flow_to_image``. That one scales by the flow's own largest
    norm; with ``max_flow`` every picture shares one scale (larger norms saturate), so a
    true flow and an estimate can be compared by eye.
    """
    f = torch.as_tensor(np.asarray(flow, np.float32)).permute(2, 0, 1)  # (2, H, W)
    if max_flow is not None:
        norm = f.norm(dim=0, keepdim=True).clamp(min=1e-12)
        f = f * (norm.clamp(max=max_flow) / norm)
        # one extra pixel of norm max_flow pins torchvision's normalisation to max_flow
        pin = torch.zeros(2, f.shape[1], 1, dtype=f.dtype)
        pin[0, 0, 0] = max_flow
        f = torch.cat([f, pin], dim=2)
        return flow_to_image(f)[:, :, :-1].permute(1, 2, 0).numpy()
    return flow_to_image(f).permute(1, 2, 0).numpy()


def end_point_error(a, b, mask=None) -> float:
    """Mean end-point error ``mean_p ||a(p) - b(p)||_2`` (Baker et al., IJCV 2011).

    numpy flows are ``(..., H, W, 2)``; torch flows are ``(..., 2, H, W)``. ``mask``
    (broadcastable to ``(..., H, W)``, bool) restricts the mean to where it is True.
    """
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        if a.shape != b.shape or a.dim() < 3 or a.shape[-3] != 2:
            raise ValueError(f"torch flows must both be (..., 2, H, W), got {tuple(a.shape)} "
                             f"and {tuple(b.shape)}")
        err = (a - b).double().norm(dim=-3).numpy()
    else:
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.ndim < 3 or a.shape[-1] != 2:
            raise ValueError(f"numpy flows must both be (..., H, W, 2), got {a.shape} and {b.shape}")
        err = np.linalg.norm(a.astype(np.float64) - b, axis=-1)
    if mask is not None:
        mask = np.broadcast_to(np.asarray(mask, bool), err.shape)
        return float(err[mask].mean()) if mask.any() else float("nan")
    return float(err.mean())
