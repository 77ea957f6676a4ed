"""The numbers the viewers draw, without a widget library (Sec. 4.1-4.2, Fig. 4-7).

``dalign_nb.widgets`` draws them; notebooks and tests compute them here without ipywidgets:

* ``clip_frames(clip, T)``: the T LR frames around a centre frame, the DIS flows from the
  centre to each frame, the exact flows and occlusion where the clip knows them (synthetic
  scenes), else occlusion from a forward-backward check of the DIS flows
  (``forward_backward_occlusion``);
* ``model_outputs(model, frames)``: one forward pass of an EDVR (eval mode, restored after):
  per PCD level its offsets, masks and aligned features, the features before alignment and
  the super-resolved centre frame;
* ``analyse_offsets(outputs, frames, t, level, group)``: one neighbour's offsets at one level
  and group beside the flow: l1 distance of each offset to the flow, the offsets sorted by
  it (Fig. 6), the pixelwise diversity (Sec. 4.2), the occlusion at that level;
* ``offset_layout(model)``: the alignment's kind, G, N and kernel grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .flow import estimate_flow
from .metrics import offset_diversity, offset_flow_distance
from .models.edvr import LEVELS, flow_pyramid
from .models.modes import evaluating
from .ops import flow_warp

__all__ = [
    "LEVEL_INDEX",
    "ClipFrames",
    "ModelOutputs",
    "OffsetAnalysis",
    "analyse_offsets",
    "clip_frames",
    "forward_backward_occlusion",
    "level_occlusion",
    "model_outputs",
    "offset_layout",
]

LEVEL_INDEX = {"l1": 0, "l2": 1, "l3": 2, "cascade": 0}  # position in [L1, L2, L3]


@dataclass(frozen=True)
class ClipFrames:
    """The T frames a model sees around one centre frame, with flows and occlusion from the centre.

    lr (T, 3, h, w) in [0, 1]; flow_est (T, 2, h, w) DIS flow from the centre frame to each
    frame, (u, v); flow_exact the same where the clip knows it (synthetic scenes), else None;
    occlusion (T, h, w) bool, True where the centre frame's content is not visible in frame
    t: exact where the clip knows it, else a forward-backward check of the DIS flows.
    """

    name: str
    centre: int  # index of the centre frame in the clip
    lr: Tensor
    flow_est: Tensor
    flow_exact: Tensor | None
    occlusion: Tensor
    occlusion_exact: bool

    @property
    def flow(self) -> Tensor:
        """The best flow there is: exact where known, else estimated."""
        return self.flow_exact if self.flow_exact is not None else self.flow_est


def _frame(img) -> Tensor:
    a = np.asarray(img)
    a = a.astype(np.float32) / 255 if a.dtype == np.uint8 else a.astype(np.float32)
    return torch.from_numpy(a).permute(2, 0, 1)  # (3, h, w)


def forward_backward_occlusion(forward: Tensor, backward: Tensor) -> Tensor:
    """Occlusion where a forward and a backward flow disagree (Sundaram, Brox & Keutzer, ECCV 2010).

    forward (T, 2, h, w) from the centre frame to frame t, backward from frame t to the
    centre -> (T, h, w) bool, True where ``|w_f + w_b(p + w_f)|^2 > 0.01 (|w_f|^2 +
    |w_b(p + w_f)|^2) + 0.5`` or where ``p + w_f`` leaves the frame.
    """
    back = flow_warp(backward, forward)  # w_b sampled at p + w_f(p)
    gap = (forward + back).pow(2).sum(1)
    bound = 0.01 * (forward.pow(2).sum(1) + back.pow(2).sum(1)) + 0.5
    h, w = forward.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    qx, qy = xs + forward[:, 0], ys + forward[:, 1]
    outside = (qx < 0) | (qx > w - 1) | (qy < 0) | (qy > h - 1)
    return (gap > bound) | outside


def _dis_flows(lr: Tensor, centre: int) -> tuple[Tensor, Tensor]:
    """DIS flows centre -> t and t -> centre, (T, 2, h, w) each, zero for t = centre."""
    frames = lr.permute(0, 2, 3, 1).numpy()  # (T, h, w, 3)
    zero = np.zeros((*frames.shape[1:3], 2), np.float32)
    fw = [zero if t == centre else estimate_flow(frames[centre], f) for t, f in enumerate(frames)]
    bw = [zero if t == centre else estimate_flow(f, frames[centre]) for t, f in enumerate(frames)]
    return tuple(torch.from_numpy(np.stack(f)).permute(0, 3, 1, 2).contiguous() for f in (fw, bw))


def clip_frames(clip, num_frame: int, centre: int | None = None) -> ClipFrames:
    """The ``num_frame`` LR frames of ``clip`` around ``centre`` (default: the clip's middle).

    clip: any clip of ``dalign_nb.data`` (``SceneClip``, ``ArrayClip``, ``FolderClip``) or a
    path to a video file (its first shot). Exact flows and occlusion are used when the clip
    has them and ``centre`` is the frame they start from (the clip's middle).
    """
    if isinstance(clip, (str, Path)):
        from .data import video_clips

        clip = video_clips(clip)[0]
    n, half = len(clip), num_frame // 2
    centre = n // 2 if centre is None else centre
    if not half <= centre < n - half:
        raise ValueError(f"centre must leave {half} frames on each side in a clip of {n}, got {centre}")
    idx = list(range(centre - half, centre + half + 1))
    lr = torch.stack([_frame(clip.lr(i)) for i in idx])  # (T, 3, h, w)
    fw, bw = _dis_flows(lr, half)
    exact = occ = None
    if getattr(clip, "has_flow", False) and centre == n // 2:
        exact = torch.from_numpy(np.asarray(clip.flows)[idx]).permute(0, 3, 1, 2).float().contiguous()
        if getattr(clip, "occlusion", None) is not None:
            occ = torch.from_numpy(np.asarray(clip.occlusion)[idx])
    name = getattr(clip, "name", "clip")
    if occ is None:
        return ClipFrames(name, centre, lr, fw, exact, forward_backward_occlusion(fw, bw), False)
    return ClipFrames(name, centre, lr, fw, exact, occ, True)


def offset_layout(model: nn.Module) -> tuple[str, int, int, int | None]:
    """``(kind, G, N, k)`` of an EDVR's alignment: groups, offsets per group, and the kernel grid's
    size k when the offsets start on it (DCN, flow-guided, the decomposition with ``grid``), else
    None (``AlignmentConfig.kernel_grid_size``)."""
    a = model.config.alignment
    return a.kind, a.num_groups(model.config.deformable_groups), a.offsets_per_group, a.kernel_grid_size


@dataclass(frozen=True)
class ModelOutputs:
    """What one forward pass of an EDVR shows about alignment, per level of ``LEVELS``.

    offsets[level] (T, G, N, 2, h_l, w_l) as (dy, dx); masks[level] (T, G, N, h_l, w_l) or
    None; aligned[level] (T, C, h_l, w_l), the alignment module's output; features [L1, L2,
    L3] (T, C, h_l, w_l) before alignment; output (3, 4h, 4w) the super-resolved centre frame.
    """

    kind: str
    deform_groups: int
    num_offsets: int
    kernel_size: int | None
    offsets: dict
    masks: dict
    aligned: dict
    features: list
    output: Tensor
    seconds: float  # time of the forward pass


def model_outputs(model: nn.Module, frames: ClipFrames) -> ModelOutputs:
    """Run ``model`` once on ``frames`` (eval mode, then the mode it had; no gradients) and keep
    what the viewers show."""
    kind, g, n, k = offset_layout(model)
    if model.hr_in:
        raise ValueError("the viewers need a model with LR input (hr_in=False)")
    if model.num_frame != len(frames.lr):
        raise ValueError(f"the model takes {model.num_frame} frames, the clip window has {len(frames.lr)}")
    device = next(model.parameters()).device
    start = time.perf_counter()
    with evaluating(model), torch.no_grad():
        x = frames.lr[None].to(device)  # (1, T, 3, h, w)
        kw = {"flows": frames.flow[None].to(device)} if kind == "flow_guided" else {}
        out, aux = model(x, return_aux=True, **kw)
        features = [f.cpu() for f in model.extract(frames.lr.to(device))]
    offsets = {lv: aux["offsets"][lv][0].cpu().unflatten(1, (g, n, 2)) for lv in LEVELS}
    masks = {lv: None if aux["masks"][lv] is None else aux["masks"][lv][0].cpu().unflatten(1, (g, n))
             for lv in LEVELS}
    aligned = {lv: aux["aligned"][lv][0].cpu() for lv in LEVELS}
    return ModelOutputs(kind, g, n, k, offsets, masks, aligned, features, out[0].cpu().clamp(0, 1),
                        time.perf_counter() - start)


@dataclass(frozen=True)
class OffsetAnalysis:
    """One neighbour frame, level and group of a model's offsets, beside the flow (Sec. 4.1-4.2).

    offsets (N, 2, h_l, w_l) (dy, dx) in level pixels; masks (N, h_l, w_l) or None; flow
    (2, h_l, w_l) the reference flow (exact if known, else DIS), flow_est / flow_exact both;
    occlusion (h_l, w_l); distance (N, h_l, w_l) the l1 distance of each offset to the flow;
    order (N,) the offsets sorted by their mean l1 distance over visible pixels (Fig. 6) and
    mean_distance (N,) those means in that order; diversity (h_l, w_l) the pixelwise
    standard deviation of the N offsets (Sec. 4.2); scale: LR pixels per level pixel;
    max_flow: the colour wheel's saturation, shared by the offsets and the flows.
    """

    offsets: Tensor
    masks: Tensor | None
    flow: Tensor
    flow_est: Tensor
    flow_exact: Tensor | None
    occlusion: Tensor
    distance: Tensor
    order: Tensor
    mean_distance: Tensor
    diversity: Tensor
    scale: int
    max_flow: float


def _level_flow(flow: Tensor | None, level: str) -> Tensor | None:
    """Flows (T, 2, h, w) at a PCD level (average pooled, magnitude halved per level)."""
    return None if flow is None else flow_pyramid(flow)[LEVEL_INDEX[level]]


def level_occlusion(occlusion: Tensor, scale: int) -> Tensor:
    """An LR occlusion mask (h, w) at a PCD level of ``scale`` LR pixels per level pixel:
    (h / scale, w / scale) bool, True where any of its LR pixels is occluded."""
    occ = occlusion.float()[None]  # (1, h, w)
    return (F.max_pool2d(occ, scale) if scale > 1 else occ)[0] > 0


def analyse_offsets(outputs: ModelOutputs, frames: ClipFrames, t: int, level: str = "l1",
                    group: int = 0) -> OffsetAnalysis:
    """The offsets of neighbour ``t`` at ``level`` in ``group``, compared with the flow.

    Offsets of l3, l2, l1 are relative to the unaligned neighbour and comparable with the
    flow; the cascade's act on the already aligned L1 feature (compared with the L1 flow
    all the same).
    """
    g = outputs.deform_groups
    if not 0 <= group < g:
        raise ValueError(f"group must be in [0, {g}), got {group}")
    off_all = outputs.offsets[level][t]  # (G, N, 2, h_l, w_l)
    off = off_all[group]
    masks = outputs.masks[level]
    scale = frames.lr.shape[-1] // off.shape[-1]
    flow_est = _level_flow(frames.flow_est, level)[t]
    flow_exact = _level_flow(frames.flow_exact, level)
    flow_exact = None if flow_exact is None else flow_exact[t]
    flow = flow_exact if flow_exact is not None else flow_est
    occ = level_occlusion(frames.occlusion[t], scale)
    distance = offset_flow_distance(off.flatten(0, 1)[None], flow[None], norm="l1")[0]  # (N, h, w)
    visible = ~occ if bool((~occ).any()) else torch.ones_like(occ)
    means = distance[:, visible].mean(1)  # (N,)
    order = torch.argsort(means, stable=True)
    diversity = offset_diversity(off_all.flatten(0, 2)[None], g)[0, group]  # (h_l, w_l)
    norms = off.pow(2).sum(1).sqrt()  # (N, h_l, w_l)
    max_flow = max(float(flow.pow(2).sum(0).sqrt().max()), float(torch.quantile(norms.flatten(), 0.99)), 0.5)
    return OffsetAnalysis(off, None if masks is None else masks[t, group], flow, flow_est, flow_exact,
                          occ, distance, order, means[order], diversity, scale, max_flow)
