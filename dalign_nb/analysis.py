"""The numbers the viewers draw, without a widget library (Sec. 4.1-4.2, Fig. 4-7).

``dalign_nb.widgets`` draws them; notebooks and tests compute them here without ipywidgets:

* ``clip_frames(clip, T)``: the T LR frames around a centre frame, the DIS flows from the
  centre to each frame, the exact flows and occlusion where the clip knows them (synthetic
  scenes), else occlusion from a forward-backward check of the DIS flows
  (``forward_backward_occlusion``);
* ``model_outputs(model, frames)``: one forward pass of an EDVR, or of Table 2's TDAN-like or
  flow-based network (eval mode, restored after): per level the model has its offsets, masks
  and aligned features, the features before alignment and the super-resolved centre frame;
* ``analyse_offsets(outputs, frames, t, level, group)``: one neighbour's offsets at one level
  and group beside the flow: l1 distance of each offset to the flow, the offsets sorted by
  it (Fig. 6), the pixelwise diversity (Sec. 4.2), the occlusion at that level;
* ``offset_layout(model)``: the alignment's kind, G, N and kernel grid;
* ``offsets_vs_dis(model, clip)``: any EDVR -- the paper's own, loaded from a BasicSR
  checkpoint (``models.edvr_from_checkpoint``) -- on a few frames of a clip, cut to a small
  crop (``clip_window``): its offsets at each PCD level beside DIS flow on the same LR frames,
  per neighbour the mean and the closest offset, Fig. 5's share within 1 px and the mean
  |flow| (Fig. 1, 4, 5, 11 on the paper's model; ``viz.show_offsets_beside_flow`` draws it).
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
from .metrics import closest_offset, offset_diversity, offset_flow_distance, share_within
from .models.edvr import LEVELS, flow_pyramid
from .models.modes import evaluating
from .ops import flow_warp
from .paper import format_table

__all__ = [
    "DEFAULT_CROP",
    "FLOW_BASED",
    "LEVEL_INDEX",
    "PCD_LEVELS",
    "ClipFrames",
    "ModelOutputs",
    "OffsetAnalysis",
    "OffsetsVsDIS",
    "analyse_offsets",
    "clip_frames",
    "clip_window",
    "forward_backward_occlusion",
    "level_occlusion",
    "model_outputs",
    "offset_layout",
    "offsets_vs_dis",
]

LEVEL_INDEX = {"l1": 0, "l2": 1, "l3": 2, "cascade": 0}  # position in [L1, L2, L3]
PCD_LEVELS = ("l3", "l2", "l1")  # the pyramid's offsets, each relative to the unaligned neighbour
DEFAULT_CROP = (64, 96)  # LR pixels: EDVR-M on 5 frames in seconds on a CPU core


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


def _window(clip, num_frame: int, centre: int | None) -> tuple[object, int, int, list[int]]:
    """``(clip, n, centre, idx)``: the clip (a video file's path: its first shot), its length, the
    centre (default: its middle) and the indices of the ``num_frame`` frames around it."""
    if isinstance(clip, (str, Path)):
        from .data import video_clips

        clip = video_clips(clip)[0]
    n, half = (len(clip.lq) if hasattr(clip, "lq") else len(clip)), num_frame // 2
    centre = n // 2 if centre is None else centre
    if not half <= centre < n - half:
        raise ValueError(f"centre must leave {half} frames on each side in a clip of {n}, got {centre}")
    return clip, n, centre, list(range(centre - half, centre + half + 1))


def _clip_array(clip, idx: list[int], side: str) -> np.ndarray:
    """Frames ``idx`` of a clip's ``side``, "lr" (T, h, w, 3) or "hr" (T, H, W, 3): of a clip of
    ``dalign_nb.data`` or of a ``ValClip`` (tensors lq, gt (T, 3, h, w))."""
    if hasattr(clip, "lq"):
        x = clip.lq if side == "lr" else clip.gt
        return np.ascontiguousarray(x[idx].permute(0, 2, 3, 1).numpy())
    frame = clip.lr if side == "lr" else clip.hr
    return np.stack([frame(i) for i in idx])


def clip_frames(clip, num_frame: int, centre: int | None = None) -> ClipFrames:
    """The ``num_frame`` LR frames of ``clip`` around ``centre`` (default: the clip's middle).

    clip: any clip of ``dalign_nb.data`` (``SceneClip``, ``ArrayClip``, ``FolderClip``) or a
    path to a video file (its first shot). Exact flows and occlusion are used when the clip
    has them and ``centre`` is the frame they start from (the clip's middle).
    """
    clip, n, centre, idx = _window(clip, num_frame, centre)
    lr = torch.stack([_frame(a) for a in _clip_array(clip, idx, "lr")])  # (T, 3, h, w)
    fw, bw = _dis_flows(lr, num_frame // 2)
    exact = occ = None
    if getattr(clip, "has_flow", False) and centre == n // 2:
        exact = torch.from_numpy(np.asarray(clip.flows)[idx]).permute(0, 3, 1, 2).float().contiguous()
        if getattr(clip, "occlusion", None) is not None:
            occ = torch.from_numpy(np.asarray(clip.occlusion)[idx])
    name = getattr(clip, "name", "clip")
    if occ is None:
        return ClipFrames(name, centre, lr, fw, exact, forward_backward_occlusion(fw, bw), False)
    return ClipFrames(name, centre, lr, fw, exact, occ, True)


FLOW_BASED = "flow-based"  # offset_layout's kind for Table 2's flow-based network (N image warps)


def offset_layout(model: nn.Module) -> tuple[str, int, int, int | None]:
    """``(kind, G, N, k)`` of a model's alignment: groups, offsets per group, and the kernel grid's
    size k when the offsets start on it (DCN, flow-guided, the decomposition with ``grid``), else
    None (``AlignmentConfig.kernel_grid_size``). An EDVR's or the TDAN-like network's (always
    "decomposed", Eq. 3); for the flow-based network of Table 2, ``FLOW_BASED``, G = 1 and its N
    flows, one SPyNet each."""
    config = model.config
    if not hasattr(config, "alignment"):  # models.flownet: N SPyNets warp the LR image
        return FLOW_BASED, 1, config.num_offsets, None
    a = config.alignment
    return a.kind, a.num_groups(config.deformable_groups), a.offsets_per_group, a.kernel_grid_size


@dataclass(frozen=True)
class ModelOutputs:
    """What one forward pass of a model shows about alignment, per level it has (``levels``).

    offsets[level] (T, G, N, 2, h_l, w_l) as (dy, dx); masks[level] (T, G, N, h_l, w_l) or
    None; aligned[level] (T, C, h_l, w_l), the alignment module's output; features [L1, L2,
    L3] (T, C, h_l, w_l) before alignment; output (3, 4h, 4w) the super-resolved centre frame.
    An EDVR has every level of ``LEVELS`` (offsets, masks and aligned features at each); the
    TDAN-like network ``l1`` only (its one DCN at the LR size); the flow-based network its
    SPyNet levels ``l1``, ``l2``, ... as offsets, ``aligned`` at ``l1`` only (the N warped LR
    frames, 3N channels) and the LR frames themselves as its one level of ``features`` (it
    aligns images, not features).
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

    @property
    def levels(self) -> tuple[str, ...]:
        """The levels with offsets, in ``LEVELS``' order (coarse to fine, then the cascade)."""
        return tuple(lv for lv in LEVELS if lv in self.offsets)

    @property
    def feature_levels(self) -> tuple[str, ...]:
        """The levels with aligned features and features before alignment (``aligned``)."""
        return tuple(lv for lv in LEVELS if lv in self.aligned and LEVEL_INDEX[lv] < len(self.features))


def model_outputs(model: nn.Module, frames: ClipFrames) -> ModelOutputs:
    """Run ``model`` (an EDVR, ``models.tdan.TDAN`` or ``models.flownet.FlowNet``) once on
    ``frames`` (eval mode, then the mode it had; no gradients) and keep what the viewers show."""
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
        # the flow-based network aligns the LR images: they are its features before alignment
        features = ([frames.lr.clone()] if kind == FLOW_BASED
                    else [f.cpu() for f in model.extract(frames.lr.to(device))])
    levels = [lv for lv in LEVELS if lv in aux["offsets"]]
    offsets = {lv: aux["offsets"][lv][0].cpu().unflatten(1, (g, n, 2)) for lv in levels}
    masks = {lv: None if aux["masks"].get(lv) is None else aux["masks"][lv][0].cpu().unflatten(1, (g, n))
             for lv in levels}
    aligned = {lv: aux["aligned"][lv][0].cpu() for lv in LEVELS if lv in aux["aligned"]}
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
    if level not in outputs.offsets:
        raise ValueError(f"level must be one of the model's {outputs.levels}, got {level!r}")
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


def _crop_box(size: tuple[int, int], crop, top_left) -> tuple[int, int, int, int]:
    """(y0, x0, h, w) in LR pixels: ``crop`` (h, w) at most the frame, rounded down to multiples
    of 4 (PCD halves the frame twice), its corner ``top_left`` or centred."""
    big_h, big_w = size
    h, w = (big_h, big_w) if crop is None else (min(int(crop[0]), big_h), min(int(crop[1]), big_w))
    h, w = h - h % 4, w - w % 4
    if h < 4 or w < 4:
        raise ValueError(f"crop must keep at least 4 x 4 LR pixels of the {big_h} x {big_w} frame, "
                         f"got {crop}")
    if top_left is None:
        return (big_h - h) // 2, (big_w - w) // 2, h, w
    y0, x0 = top_left
    if not (0 <= y0 <= big_h - h and 0 <= x0 <= big_w - w):
        raise ValueError(f"top_left {tuple(top_left)} puts the {h} x {w} crop outside the "
                         f"{big_h} x {big_w} frame")
    return y0, x0, h, w


def _cut(clip, num_frame: int, centre, crop, top_left):
    """``clip_window`` and the crop's box (y0, x0, h, w)."""
    from .data import ArrayClip

    clip, _, _, idx = _window(clip, num_frame, centre)
    lr, hr = (_clip_array(clip, idx, side) for side in ("lr", "hr"))
    y0, x0, h, w = _crop_box(lr.shape[1:3], crop, top_left)
    s = hr.shape[1] // lr.shape[1]  # the SR scale, 4
    name = (f"{getattr(clip, 'name', 'clip')}, frames {idx[0]}-{idx[-1]}, "
            f"LR {h}x{w} at ({y0}, {x0})")
    window = ArrayClip(name, np.ascontiguousarray(hr[:, s * y0:s * (y0 + h), s * x0:s * (x0 + w)]),
                       np.ascontiguousarray(lr[:, y0:y0 + h, x0:x0 + w]))
    return window, (y0, x0, h, w)


def clip_window(clip, num_frame: int, centre: int | None = None, crop=DEFAULT_CROP, top_left=None):
    """The ``num_frame`` frames of ``clip`` around ``centre`` (default: its middle), cut to a crop.

    clip: a clip of ``dalign_nb.data`` (``bundled_clips``, ``video_clips``, ...), a ``ValClip``
    of ``validation_clips``, or a video file's path (its first shot). crop: (h, w) in LR
    pixels, at most the frame and rounded down to multiples of 4 (None: the whole frame);
    top_left: its corner (y0, x0) in LR pixels (default: centred). Returns an ``ArrayClip``
    of ``num_frame`` frames, the requested centre in its middle, HR frames cut to the same box,
    named after where it came from. An exact flow (synthetic scenes) is not kept.
    """
    return _cut(clip, num_frame, centre, crop, top_left)[0]


@dataclass(frozen=True)
class OffsetsVsDIS:
    """An EDVR's offsets beside DIS flow on one window of a clip (Sec. 4.1, Fig. 1, 4, 5, 11).

    clip: the window the model saw (``clip_window``; ``widgets.OffsetViewer(model, clip)``
    opens on it); box: its crop (y0, x0, h, w) in LR pixels of the source; frames: its LR
    frames, DIS flows from the centre frame and occlusion (``clip_frames``); outputs: the
    forward pass (``model_outputs``). Per level of ``levels``, fields (T, 2, h_l, w_l) in that
    level's pixels, as flows (u, v) = (dx, dy): ``mean_offset``, each pixel's mean over its G
    groups and N offsets; ``closest_offset``, the one of them nearest DIS; ``dis``, DIS at
    that level (``flow_pyramid``). ``rows``: per level and neighbour (``neighbour`` = t -
    centre) over all pixels: ``mean_dis`` (mean |DIS|), ``mean_offset`` (mean |mean offset|),
    Fig. 5's share within ``threshold`` px (end-point error) of DIS of the mean offset
    (``within_mean``), of the closest (``within_closest``) and of zero offsets
    (``within_zero``: the pixels DIS moves less than that), ``epe_mean``, ``epe_closest``, and
    ``scale`` (LR pixels per level pixel).
    """

    clip: object
    box: tuple[int, int, int, int]
    frames: ClipFrames
    outputs: ModelOutputs
    threshold: float
    mean_offset: dict
    closest_offset: dict
    dis: dict
    rows: tuple

    def row(self, level: str = "l1", neighbour: int = 1) -> dict:
        """The row of one level and neighbour (t - centre)."""
        found = [r for r in self.rows if (r["level"], r["neighbour"]) == (level, neighbour)]
        if not found:
            have = sorted({(r["level"], r["neighbour"]) for r in self.rows})
            raise KeyError(f"no row for level {level!r}, neighbour {neighbour:+d}; rows: {have}")
        return found[0]

    def table(self) -> str:
        """``rows`` as a Markdown table, shares in per cent."""
        within = f"within {self.threshold:g} px of DIS:"
        headers = ["level", "neighbour", "mean abs(DIS) px", f"{within} mean offset", "closest offset",
                   "zero offsets", "EPE mean / closest px"]
        body = [[r["level"], f"t{r['neighbour']:+d}", f"{r['mean_dis']:.2f}",
                 *(f"{100 * r[k]:.0f} %" for k in ("within_mean", "within_closest", "within_zero")),
                 f"{r['epe_mean']:.2f} / {r['epe_closest']:.2f}"] for r in self.rows]
        return format_table(body, headers)

    def figure_data(self, level: str = "l1") -> dict:
        """The arguments of ``viz.show_offsets_beside_flow`` for ``level``: one row per neighbour."""
        c = len(self.frames.lr) // 2
        nb = [t for t in range(len(self.frames.lr)) if t != c]
        rows = [self.row(level, t - c) for t in nb]
        title = f"{level} offsets (level pixels, x{rows[0]['scale']} LR) beside DIS flow: {self.clip.name}"
        return {"reference": self.frames.lr[c], "neighbours": self.frames.lr[nb],
                "offsets": {"mean offset": self.mean_offset[level][nb],
                            "closest offset": self.closest_offset[level][nb]},
                "flow": self.dis[level][nb],
                "within": {"mean offset": [r["within_mean"] for r in rows],
                           "closest offset": [r["within_closest"] for r in rows]},
                "labels": [f"t{t - c:+d}" for t in nb], "threshold": self.threshold, "suptitle": title}


def _level_fields(outputs: ModelOutputs, frames: ClipFrames, level: str) -> tuple[Tensor, ...]:
    """(mean offset, closest offset, its end-point error, DIS) at ``level``: fields (T, 2, h_l, w_l)
    as flows (u, v), the error (T, h_l, w_l)."""
    off = outputs.offsets[level].flatten(1, 2)  # (T, G*N, 2, h, w) as (dy, dx)
    dis = _level_flow(frames.flow_est, level)  # (T, 2, h, w) as (u, v)
    error, index = closest_offset(off.flatten(1, 2), dis)  # (T, h, w) each, end-point error (Fig. 5)
    pick = index[:, None, None].expand(-1, 1, 2, -1, -1)  # (T, 1, 2, h, w)
    closest = off.gather(1, pick)[:, 0].flip(1)  # (T, 2, h, w) as (u, v)
    return off.mean(1).flip(1), closest, error, dis


def _neighbour_row(level: str, neighbour: int, scale: int, mean: Tensor, error: Tensor, dis: Tensor,
                   threshold: float) -> dict:
    """One neighbour's numbers at one level from its (2, h, w) fields and (h, w) closest error."""
    epe_mean, flow_len = (mean - dis).norm(dim=0), dis.norm(dim=0)  # (h, w) each
    return {"level": level, "neighbour": neighbour, "scale": scale,
            "mean_dis": float(flow_len.mean()), "mean_offset": float(mean.norm(dim=0).mean()),
            "within_mean": share_within(epe_mean, threshold),
            "within_closest": share_within(error, threshold),
            "within_zero": share_within(flow_len, threshold),
            "epe_mean": float(epe_mean.mean()), "epe_closest": float(error.mean())}


def _bundled_bikes():
    from .data import bundled_clips

    return next(c for c in bundled_clips("test") if c.name.startswith("bikes"))


def offsets_vs_dis(model: nn.Module, clip=None, *, centre: int | None = None, crop=DEFAULT_CROP,
                   top_left=None, levels=PCD_LEVELS, threshold: float = 1.0) -> OffsetsVsDIS:
    """An EDVR's offsets at each PCD level beside DIS flow on the same LR frames (Sec. 4.1).

    The paper's Fig. 4 and 11 put a G = N = 1 model's offsets beside PWC-Net flow, Fig. 5
    counts the pixels within 1 px of it; here any EDVR -- the paper's own EDVR-M / EDVR-L from a
    BasicSR checkpoint (``models.edvr_from_checkpoint``) -- runs once (no gradients, on its
    device) on ``model.num_frame`` frames of ``clip`` around ``centre``, cut to ``crop``
    (``clip_window``; default: the bundled ``bikes`` test shot, its middle, a 64 x 96 LR crop),
    and its raw offsets Δp_k (without the kernel grid, as the authors' offset-fidelity loss
    compares them) at each level of ``levels`` are compared with DIS flow (OpenCV, from the
    centre frame) pooled to that level. With G x N offsets per pixel, the mean over them and
    the closest to DIS are both reported. Seconds for EDVR-M on the default crop on a CPU core.
    """
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown or not levels:
        raise ValueError(f"levels must be some of {LEVELS}, got {tuple(levels)}")
    window, box = _cut(_bundled_bikes() if clip is None else clip, model.num_frame, centre, crop, top_left)
    frames = clip_frames(window, model.num_frame)
    outputs = model_outputs(model, frames)
    c, width = len(frames.lr) // 2, frames.lr.shape[-1]
    fields = {lv: _level_fields(outputs, frames, lv) for lv in levels}
    rows = tuple(_neighbour_row(lv, t - c, width // mean.shape[-1], mean[t], error[t], dis[t], threshold)
                 for lv, (mean, _, error, dis) in fields.items() for t in range(len(frames.lr)) if t != c)
    return OffsetsVsDIS(window, box, frames, outputs, threshold, {lv: f[0] for lv, f in fields.items()},
                        {lv: f[1] for lv, f in fields.items()}, {lv: f[3] for lv, f in fields.items()}, rows)
