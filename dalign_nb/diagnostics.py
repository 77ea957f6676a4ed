"""Why learned offsets miss the flow: where they miss, and which way each loss pushes them.

Two measurements behind notebook 05's "why not 80 %" (Sec. 4.1, Fig. 5 at small scale):

* ``offset_errors`` -- per non-occluded pixel of a synthetic scene (exact flow, layer labels):
  the offset's end-point error, its error along the flow (negative: it falls short of the
  motion) and across it, the flow's length, and what kind of pixel it is (on a sprite or
  the background, near a layer boundary, near the frame border, textured or flat);
  ``dis_errors`` the same for DIS flow on the same frames;
* ``offset_gradients`` -- the gradient of any loss with respect to the offsets that a PCD
  level actually sampled with, frame by frame, and ``descent_towards_flow``: whether a step
  of gradient descent on that loss moves each offset towards the exact flow;
* ``offsets_held_at`` / ``exact_offsets``: a trained model given the exact flow in place of a
  PCD level's offsets at test time, and whether its neighbours then reach its output;
* ``alignment_health``: where a model that ends at the bilinear base (learned nothing) went
  dead -- offsets beyond the overflow threshold, masks at zero, an alignment output the
  leaky ReLU all but shuts, an output that adds nothing to the base.

How hard each term of the training loss pulls on the offsets' parameters is
``training.objective.term_gradients``, beside the terms themselves.

Offsets are in the layout of ``ops`` (``(dy, dx)`` pairs), flows ``(u, v)``, as in ``metrics``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .alignment import DCNAlignment, centre_only, pcd_level, sample_at
from .data.degrade import DEGRADATIONS as LR_DEGRADATIONS
from .data.degrade import resize_weights
from .data.synthetic import synthetic_scene
from .flow import estimate_flows
from .losses import photometric_warping_loss
from .metrics import psnr, quantize
from .models.modes import evaluating

__all__ = ["DEGRADATIONS", "PIXEL_KINDS", "alignment_health", "capture_offsets", "degradation_matrix",
           "descent_towards_flow", "dis_errors", "exact_offsets", "neighbour_information",
           "offsets_held_at", "offset_errors", "offset_gradients", "pixel_classes",
           "shares_by_kind", "shares_by_motion", "tap_use", "taps_muted", "terms_towards_flow"]


@contextlib.contextmanager
def capture_offsets(model: nn.Module, level: str = "l1"):
    """Inside the block, every call of PCD ``level``'s alignment (``"l1"``, ``"l2"``, ``"l3"`` or
    ``"cascade"``) appends the offset tensor it sampled with (``(B, 2*G*N, h, w)``, one call per
    input frame) to the yielded list.

    These are the tensors of the computation graph, not copies (``aux["offsets"]`` stacks
    copies), so ``torch.autograd.grad(loss, captured)`` is the gradient with respect to the
    offsets themselves, through every path: sampling, the coarser levels' use, any loss on
    ``aux``.
    """
    module = pcd_level(model, level)
    captured: list[Tensor] = []
    bound = module.align

    def align(*args, **kwargs):
        rec = bound(*args, **kwargs)
        captured.append(rec.offset)
        return rec

    module.align = align  # an instance attribute shadows the method for this block only
    try:
        yield captured
    finally:
        del module.align


def offset_gradients(model: nn.Module, lq: Tensor, losses: dict[str, Callable], level: str = "l1",
                     flows: Tensor | None = None) -> dict[str, Tensor]:
    """``d loss / d offsets`` at PCD ``level`` for each named loss, ``(T, 2*G*N, h, w)`` each.

    lq: ``(1, T, 3, h, w)``; losses: name -> ``fn(out, aux) -> scalar`` (``out`` the SR output
    ``(1, 3, 4h, 4w)``, ``aux`` EDVR's ``return_aux`` dict). One forward pass per loss; the
    model's parameters are not changed and keep no gradient.
    """
    if lq.dim() != 5 or lq.shape[0] != 1:
        raise ValueError(f"lq must be (1, T, 3, h, w), got {tuple(lq.shape)}")
    kw = {} if flows is None else {"flows": flows}
    grads = {}
    for name, fn in losses.items():
        with capture_offsets(model, level) as captured:
            out, aux = model(lq, return_aux=True, **kw)
        grad = torch.autograd.grad(fn(out, aux), captured, allow_unused=True)
        grads[name] = torch.cat([torch.zeros_like(o) if g is None else g for o, g in zip(captured, grad)])
    return grads


def descent_towards_flow(grad: Tensor, offsets: Tensor, flow: Tensor) -> Tensor:
    """Per pixel, the component of the descent direction ``-grad`` along the unit vector from
    the offset to the flow: positive where a gradient step moves the offset towards the flow.

    grad, offsets: ``(2, h, w)`` one ``(dy, dx)`` offset per pixel; flow ``(2, h, w)`` (u, v).
    Returns ``(h, w)``; 0 where the offset already equals the flow.
    """
    to_flow = flow.flip(0) - offsets  # (2, h, w), (dy, dx)
    length = to_flow.norm(dim=0)
    along = (-grad * to_flow).sum(0) / length.clamp_min(1e-12)
    return torch.where(length > 0, along, torch.zeros_like(length))


def terms_towards_flow(model: nn.Module, clips, penalties=("census", "rgb"),
                       alphas=(0.0, 0.25, 0.5, 0.75, 1.0), level: str = "l1") -> dict[str, list[float]]:
    """Has a model reached the optimum of its own warping term? Each term (``penalty`` of
    ``losses.photometric_warping_loss``, at ``level`` alone) on the offsets ``(1 - a) * learned
    + a * exact`` for each ``a`` of ``alphas``: the model's offsets at 0, the scenes' exact LR flow
    at 1, averaged over ``clips`` (``SceneClip``s with the model's number of frames). Lower at 1
    than at 0: the exact flow explains the frames better by the term's own measure, so what keeps
    the offsets from it is the network or its training, not the term; higher: the term itself
    prefers the learned offsets (it counts occluded pixels, where the flow points at other
    content). Returns ``{"alphas": [...], penalty: [mean term per alpha], ..., "per_clip":
    {penalty: [[term per alpha] per clip]}}``. One offset per pixel (N = 1) at a full-size level."""
    if not alphas:
        raise ValueError("alphas must name at least one point between the offsets (0) and the flow (1)")
    per_clip: dict[str, list[list[float]]] = {p: [] for p in penalties}
    with evaluating(model):
        device = next(model.parameters()).device
        for clip in clips:
            t = len(clip)
            frames = np.stack([clip.lr(i) for i in range(t)])  # (T, h, w, 3)
            lq = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float().to(device)
            _, aux = model(lq, return_aux=True)
            learned = aux["offsets"][level].float()  # (1, T, 2, h, w), (dy, dx)
            if learned.shape[2] != 2 or learned.shape[-2:] != lq.shape[-2:]:
                raise ValueError(f"terms_towards_flow needs one offset per pixel at the LR size; {level} has "
                                 f"{learned.shape[2] // 2} of size {tuple(learned.shape[-2:])}")
            exact = torch.from_numpy(np.stack(clip.flows)).permute(0, 3, 1, 2).flip(1)[None].to(learned)
            walk = [{level: (1 - a) * learned + a * exact} for a in alphas]
            for p in penalties:
                per_clip[p].append([photometric_warping_loss(lq, off, t // 2, (level,), penalty=p).item()
                                    for off in walk])
    return {"alphas": [float(a) for a in alphas],
            **{p: np.mean(v, axis=0).tolist() for p, v in per_clip.items()}, "per_clip": per_clip}


@contextlib.contextmanager
def offsets_held_at(model: nn.Module, flows, level: str = "l1"):
    """Inside the block, EDVR's PCD ``level`` (``"l1"``, ``"l2"``, ``"l3"`` or ``"cascade"``)
    samples each input frame at the given motion instead of the offsets it predicts, and reports
    that motion as its offsets (``alignment.sample_at`` with ``reports="given"``, where the
    arguments are described): a trained model held at a flow at test time."""
    with sample_at(model, flows, level, reports="given") as calls:
        yield calls


def _clip_tensors(clip, device) -> tuple[Tensor, Tensor]:
    """A ``SceneClip``'s LR frames ``(1, T, 3, h, w)`` on ``device`` and its centre HR frame
    ``(1, 3, H, W)``, float32."""
    lq = torch.from_numpy(np.stack([clip.lr(i) for i in range(len(clip))])).permute(0, 3, 1, 2)[None]
    gt = torch.from_numpy(clip.hr(len(clip) // 2)).permute(2, 0, 1)[None].float()
    return lq.float().to(device), gt


def _psnr8(out: Tensor, gt: Tensor) -> float:
    return psnr(quantize(out.float().cpu()), gt)  # as saved to 8 bits


@torch.no_grad()
def exact_offsets(model: nn.Module, clips, level: str = "l1") -> dict:
    """A trained EDVR given the exact flow in place of its ``level`` offsets at test time.

    Per synthetic clip (``SceneClip``s with the model's number of frames, exact LR flows): the
    PSNR of the centre frame's output (8-bit, RGB) with the model's own offsets (``model``),
    with the exact flow at ``level`` (``exact``; ``offsets_held_at``, the other levels and the
    cascade as the model computes them), and given the centre frame in place of every neighbour
    (``reference_only``). ``gain`` / ``gain_exact``: the first two minus the third, what the
    neighbours add to the output with its own offsets and with exact ones.

    A test-time substitution: the fusion was trained on features aligned by the model's own
    offsets, so a loss here need not mean that exact offsets cannot help a model trained with
    them; a gain would say that the model's own offsets keep its neighbours out.
    """
    scales = {"l1": 1, "l2": 2, "l3": 4}  # the pyramid's levels against the LR size
    if level not in scales:
        raise ValueError(f"level must be one of {tuple(scales)} (the cascade aligns the already aligned "
                         f"L1 feature: its exact motion is not the flow), got {level!r}")
    scale = scales[level]
    scores: dict[str, list[float]] = {"model": [], "exact": [], "reference_only": []}
    with evaluating(model):
        device = next(model.parameters()).device
        for clip in clips:
            c = len(clip) // 2
            lq, gt = _clip_tensors(clip, device)
            flows = torch.from_numpy(np.ascontiguousarray(clip.flows)).permute(0, 3, 1, 2).float()
            flows[c] = 0  # the reference frame's motion to itself
            given = [(F.avg_pool2d(f[None], scale) / scale).to(device) for f in flows]  # level's pixels
            scores["model"].append(_psnr8(model(lq), gt))
            with offsets_held_at(model, given, level):
                scores["exact"].append(_psnr8(model(lq), gt))
            scores["reference_only"].append(_psnr8(centre_only(model, lq, c), gt))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    return {"psnr": mean["model"], "psnr_exact": mean["exact"], "psnr_reference_only": mean["reference_only"],
            "gain": mean["model"] - mean["reference_only"],
            "gain_exact": mean["exact"] - mean["reference_only"],
            "per_clip": scores, "level": level, "num_clips": len(scores["model"])}


@torch.no_grad()
def alignment_health(model: nn.Module, clips, threshold: float = 10.0) -> dict:
    """Where a trained EDVR's signal stops, on synthetic clips (``SceneClip``s with the model's
    number of frames; a model that ``takes_flows`` is given their exact flows).

    Per PCD level (``LEVELS``: ``l3``, ``l2``, ``l1``, ``cascade``), over every input frame (EDVR
    aligns the reference too) and every pixel: ``mean_abs_offset`` (px of that level),
    ``above`` the share of offset components beyond ``threshold`` px (the offset monitor's, 10
    px; Fig. 10(a)'s overflow is a mean beyond 50), ``mask_mean`` and ``masks_off`` (the share of
    DCNv2 masks below 0.01, Eq. 7; None without masks) and ``feat_mean_abs``, the mean |value| of
    the level's alignment output (``aux["aligned"]``). For the model: ``pcd_positive``, the share
    of the PCD output (the features TSA fuses, after its leaky ReLU, slope 0.1 below zero) that
    is positive; ``residual``, the mean |output - bilinear base| in 8-bit levels (EDVR adds its
    output to the bilinearly upsampled centre frame: 0 is a model that adds nothing); ``psnr``
    and ``psnr_base`` (8-bit, RGB, the centre frame). Means over the clips.

    A reading, not a cause: a model whose masks sit at zero or whose aligned features are
    nearly all negative passes almost nothing of its frames on, and one whose residual is near
    zero has learned nothing; which came first needs the training curve.
    """
    from .data.patches import validation_samples
    from .metrics import bilinear_base
    from .models import takes_flows
    from .models.edvr import LEVELS

    if threshold <= 0:
        raise ValueError(f"threshold must be a positive number of pixels, got {threshold}")
    flows = takes_flows(model)
    samples = validation_samples(list(clips), model.num_frame, 1)
    if flows and any("flow" not in s for s in samples):
        raise ValueError("this model takes flows: give it synthetic clips (their exact flows)")
    per: dict[str, list[float]] = {}

    def add(key: str, value) -> None:
        per.setdefault(key, []).append(None if value is None else float(value))

    with evaluating(model):
        device = next(model.parameters()).device
        for s in samples:
            lq, gt = s["lq"].to(device)[None], s["gt"][None].float()
            out, aux = model(lq, return_aux=True, **({"flows": s["flow"].to(device)[None]} if flows else {}))
            for level in LEVELS:
                off, mask = aux["offsets"][level].abs(), aux["masks"][level]
                add(f"{level}.mean_abs_offset", off.mean())
                add(f"{level}.above", (off > threshold).float().mean())
                add(f"{level}.mask_mean", None if mask is None else mask.mean())
                add(f"{level}.masks_off", None if mask is None else (mask < 0.01).float().mean())
                add(f"{level}.feat_mean_abs", aux["aligned"][level].abs().mean())
            add("pcd_positive", (aux["aligned_feat"] > 0).float().mean())
            base = bilinear_base(lq[:, lq.shape[1] // 2].float())
            add("residual", 255 * (out.float() - base).abs().mean())
            add("psnr", _psnr8(out, gt))
            add("psnr_base", _psnr8(base, gt))
    mean = {k: None if None in v else float(np.mean(v)) for k, v in per.items()}
    levels = {level: {k.split(".", 1)[1]: v for k, v in mean.items() if k.startswith(level + ".")}
              for level in LEVELS}
    return {"levels": levels, **{k: v for k, v in mean.items() if "." not in k},
            "threshold": threshold, "num_clips": len(samples)}


@contextlib.contextmanager
def taps_muted(model: nn.Module, taps, level: str = "l1", frames=None):
    """Inside the block, the DCNv2 (Eq. 7) of EDVR's PCD ``level`` gives the kernel taps ``taps``
    (indices ``0 .. k*k - 1``, row-major; the centre is ``k*k // 2``) a mask of zero in every
    group, when it aligns one of the input ``frames`` (indices, default all; EDVR aligns every
    frame, the reference too, with the same module, frame 0 first): their samples no longer
    reach the aligned feature. The offsets, the other masks and every other level are as the
    model computes them."""
    module = pcd_level(model, level)
    if not (isinstance(module, DCNAlignment) and module.modulated):
        raise ValueError(f"taps_muted needs a modulated DCN (DCNv2, Eq. 7) at {level}, got "
                         f"{type(module).__name__} (modulated: {getattr(module, 'modulated', None)})")
    kk = module.weight.shape[-2] * module.weight.shape[-1]
    taps = sorted({int(t) for t in taps})
    if not taps or taps[0] < 0 or taps[-1] >= kk:
        raise ValueError(f"taps must be indices in 0..{kk - 1} (a {kk}-tap kernel), got {taps}")
    num_frames = model.num_frame
    frames = set(range(num_frames)) if frames is None else {int(f) for f in frames}
    if not frames <= set(range(num_frames)):
        raise ValueError(f"frames must be indices in 0..{num_frames - 1}, got {sorted(frames)}")
    bound = module.offsets_and_mask
    calls = []

    def offsets_and_mask(feat):
        offset, mask = bound(feat)  # mask (B, G*k*k, H, W), group-major
        frame = len(calls) % num_frames
        calls.append(frame)
        if frame not in frames:
            return offset, mask
        b, c, h, w = mask.shape
        keep = torch.ones(kk, dtype=mask.dtype, device=mask.device)
        keep[taps] = 0
        return offset, (mask.view(b, c // kk, kk, h, w) * keep[:, None, None]).view(b, c, h, w)

    module.offsets_and_mask = offsets_and_mask  # an instance attribute shadows the method
    try:
        yield module
    finally:
        del module.offsets_and_mask


@torch.no_grad()
def tap_use(model: nn.Module, clips, tap: int | None = None, level: str = "l1") -> dict:
    """Which samples of a DCNv2 reach the output (A.5: masks as attention): per synthetic clip
    (``SceneClip``s with the model's number of frames), the PSNR of the centre frame's output
    (8-bit, RGB) with every tap (``model``); with kernel tap ``tap`` (default the centre,
    ``k*k // 2``) muted (``taps_muted``) when the neighbours are aligned (``without_tap``) and
    when every frame is, the reference too (``without_tap_all``); with every other tap muted on
    the neighbours (``tap_only``); and given the centre frame in place of every neighbour
    (``reference_only``). A tap whose offset stays near zero samples a neighbour unaligned (and
    the reference near in place): muting it, against muting the other taps, says which samples
    the output rests on. Means over clips, ``per_clip``, and the ``tap``."""
    module = pcd_level(model, level)
    kk = module.weight.shape[-2] * module.weight.shape[-1]
    tap = kk // 2 if tap is None else int(tap)
    if not 0 <= tap < kk:
        raise ValueError(f"tap must be an index in 0..{kk - 1} (a {kk}-tap kernel), got {tap}")
    others = [k for k in range(kk) if k != tap]
    t = model.num_frame
    neighbours = [i for i in range(t) if i != t // 2]
    runs = {"without_tap": ([tap], neighbours), "without_tap_all": ([tap], None),
            "tap_only": (others, neighbours)}
    scores: dict[str, list[float]] = {"model": [], **{k: [] for k in runs}, "reference_only": []}
    with evaluating(model):
        device = next(model.parameters()).device
        for clip in clips:
            c = len(clip) // 2
            lq, gt = _clip_tensors(clip, device)
            scores["model"].append(_psnr8(model(lq), gt))
            for name, (taps, frames) in runs.items():
                with taps_muted(model, taps, level, frames):
                    scores[name].append(_psnr8(model(lq), gt))
            scores["reference_only"].append(_psnr8(centre_only(model, lq, c), gt))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    return {**mean, "per_clip": scores, "tap": tap, "level": level, "num_clips": len(scores["model"])}


def pixel_classes(labels: np.ndarray, frame: np.ndarray, *, edge: int = 2,
                  border: int = 6) -> dict[str, np.ndarray]:
    """Boolean maps ``(h, w)`` of the kinds of pixel of a synthetic scene's centre frame.

    labels: ``(h, w)`` layer on top (0: background); frame: ``(h, w, 3)`` float RGB.
    ``sprite``; ``layer_edge``: within ``edge`` px (chessboard) of another layer;
    ``frame_border``: within ``border`` px of the frame's edge; ``flat``: local gradient
    magnitude (Sobel of the grey frame, Gaussian-smoothed) in the lowest quartile of the frame.
    """
    lab = labels.astype(np.int64)
    h, w = lab.shape
    padded = np.pad(lab, edge, mode="edge")
    near_other = np.zeros((h, w), bool)
    for dy in range(2 * edge + 1):
        for dx in range(2 * edge + 1):
            near_other |= padded[dy:dy + h, dx:dx + w] != lab
    yy, xx = np.mgrid[0:h, 0:w]
    near_border = np.minimum.reduce([yy, xx, h - 1 - yy, w - 1 - xx]) < border
    grey = cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    texture = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    texture = cv2.GaussianBlur(texture, (5, 5), 1.0)
    return {"sprite": lab > 0, "layer_edge": near_other, "frame_border": near_border,
            "flat": texture <= np.quantile(texture, 0.25)}


@torch.no_grad()
def offset_errors(model: nn.Module, clips, level: str = "l1") -> dict[str, np.ndarray]:
    """Per non-occluded pixel of every neighbour of every synthetic clip, pooled (1-D arrays).

    clips: ``SceneClip``s (``data.get_clips("synthetic", ...)``: exact flows, and labels
    re-rendered from their seed) with the model's number of frames. With N > 1 offsets per
    pixel, the first offset is used. A coarser level's offsets (L2, L3) are upsampled to the
    LR size (bilinear, their length scaled with it), so each level's estimate of the motion is
    compared with the same flow (``shares_by_motion``). Keys: ``epe`` (px), ``along`` (offset minus flow along
    the flow's direction: negative falls short), ``across`` (|component across it|),
    ``flow`` (|flow|), and the ``pixel_classes`` of the centre frame.
    """
    with evaluating(model):
        return _offset_errors(model, clips, level)


def _offset_errors(model: nn.Module, clips, level: str) -> dict[str, np.ndarray]:
    device = next(model.parameters()).device

    def estimate(frames: np.ndarray) -> Tensor:  # (T, h, w, 3) -> the first offsets as (u, v) (T, 2, h, w)
        lq = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float().to(device)
        _, aux = model(lq, return_aux=True)
        offsets = aux["offsets"][level][0, :, :2].float().cpu()  # (T, 2, h_l, w_l), the first (dy, dx)
        scale = frames.shape[1] // offsets.shape[-2]
        if scale > 1:  # a coarser level: its motion at the LR size
            offsets = F.interpolate(offsets, scale_factor=scale, mode="bilinear", align_corners=False) * scale
        return offsets.flip(1)

    return _pooled_errors(clips, estimate)


def dis_errors(clips, preset: str = "medium") -> dict[str, np.ndarray]:
    """``offset_errors``' arrays for OpenCV's DIS flow (``flow.estimate_flow``) from the centre
    LR frame to each neighbour in place of a model's offsets: the classical estimate on the same
    frames, pixel for pixel (Fig. 5 and 11 compare the offsets with a flow estimator's output)."""
    return _pooled_errors(clips, lambda frames: estimate_flows(
        torch.from_numpy(frames).permute(0, 3, 1, 2), "dis", preset))


def _pooled_errors(clips, estimate: Callable[[np.ndarray], Tensor]) -> dict[str, np.ndarray]:
    """Errors of ``estimate(frames (T, h, w, 3))`` -> (T, 2, h, w) (u, v) against each clip's exact
    flows, on its non-occluded pixels, pooled over neighbours and clips, with the pixel classes."""
    pooled: dict[str, list] = {}
    for clip in clips:
        t = len(clip)
        c = t // 2
        frames = np.stack([clip.lr(i) for i in range(t)])  # (T, h, w, 3)
        estimates = estimate(frames)
        labels = synthetic_scene(clip.config, clip.seed, texture_split=clip.texture_split).lr().labels[c]
        classes = pixel_classes(labels, frames[c])
        for k in (k for k in range(t) if k != c):
            flow = torch.from_numpy(clip.flows[k]).permute(2, 0, 1).float()  # (2, h, w), (u, v)
            length = flow.norm(dim=0)
            unit = flow / length.clamp_min(1e-12)
            diff = estimates[k] - flow
            along = (diff * unit).sum(0)  # (h, w)
            across = (diff[0] * -unit[1] + diff[1] * unit[0]).abs()
            valid = ~np.asarray(clip.occlusion[k])
            values = {"epe": diff.norm(dim=0).numpy(), "along": along.numpy(), "across": across.numpy(),
                      "flow": length.numpy(), **classes}
            for key, v in values.items():
                pooled.setdefault(key, []).append(v[valid])
    return {k: np.concatenate(v) for k, v in pooled.items()}


# Kinds of pixel, from ``offset_errors`` / ``dis_errors``' classes: name -> mask of the pooled pixels.
PIXEL_KINDS: dict[str, Callable[[dict], np.ndarray]] = {
    "all non-occluded pixels": lambda e: np.ones_like(e["sprite"]),
    "background": lambda e: ~e["sprite"],
    "sprites": lambda e: e["sprite"],
    "within 2 px of a layer boundary": lambda e: e["layer_edge"],
    "within 6 px of the frame border": lambda e: e["frame_border"],
    "flat": lambda e: e["flat"],
    "textured (not flat)": lambda e: ~e["flat"],
    "background, away from boundaries": lambda e: ~e["sprite"] & ~e["layer_edge"],
    "background, away from boundaries and border":
        lambda e: ~(e["sprite"] | e["layer_edge"] | e["frame_border"]),
    "inside sprites, away from boundaries": lambda e: e["sprite"] & ~e["layer_edge"],
}


def shares_by_kind(errors: dict[str, np.ndarray], kinds=None, threshold: float = 1.0) -> dict[str, dict]:
    """Per kind of pixel (names of ``PIXEL_KINDS``, all by default): ``pixels`` (its share of
    the pooled pixels), ``within`` (the share of it within ``threshold`` px of the exact flow,
    NaN if empty), ``of_misses`` (its share of all the pixels farther than that) and
    ``median_epe`` (px), from ``offset_errors`` or ``dis_errors``."""
    miss = errors["epe"] >= threshold
    out = {}
    for name in kinds or PIXEL_KINDS:
        m = PIXEL_KINDS[name](errors)
        n = int(m.sum())
        out[name] = {"pixels": float(m.mean()),
                     "within": float((~miss[m]).mean()) if n else float("nan"),
                     "of_misses": float((m & miss).sum() / max(int(miss.sum()), 1)),
                     "median_epe": float(np.median(errors["epe"][m])) if n else float("nan")}
    return out


MOTION_BINS = (0.0, 2.0, 4.0, 6.0, float("inf"))  # |flow| in LR px


def shares_by_motion(errors: dict[str, np.ndarray], bins=MOTION_BINS, threshold: float = 1.0) -> list[dict]:
    """The share of pixels within ``threshold`` px of the exact flow (end-point error), per bin
    of the flow's length: ``[{"from", "to", "pixels", "within"}, ...]`` from ``offset_errors``
    (``within`` NaN for an empty bin). Run per PCD level, it says at which level a motion is
    lost: a coarse level that misses a fast motion leaves the finer ones only a residual
    search around the wrong place."""
    out = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (errors["flow"] >= lo) & (errors["flow"] < hi)
        n = int(sel.sum())
        out.append({"from": lo, "to": hi, "pixels": n,
                    "within": float((errors["epe"][sel] < threshold).mean()) if n else float("nan")})
    return out


# ------------------------------------------------------------------ what the neighbours carry

DEGRADATIONS = tuple(d.upper() for d in LR_DEGRADATIONS)  # data.degrade's, named as the literature does


def degradation_matrix(size: int, scale: int = 4, degradation: str = "BI") -> np.ndarray:
    """The 1-D x``scale`` downsampling of ``data.degrade`` as a dense ``(size / scale, size)``
    matrix ``W``, so that a grey image ``X`` degrades to ``W @ X @ W.T``: ``"BI"`` MATLAB's
    antialiased bicubic (``resize_weights``, as ``bi_degrade``), ``"BD"`` the 13-tap Gaussian of
    sigma 1.6 with reflect-101 borders, then every ``scale``-th pixel from the first (as
    ``bd_degrade``)."""
    if degradation not in DEGRADATIONS:
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {degradation!r}")
    if size % scale:
        raise ValueError(f"size {size} must be divisible by scale {scale}")
    if degradation == "BI":
        return resize_weights(size, size // scale, 1.0 / scale)
    r, sigma = 6, 1.6
    taps = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma ** 2))
    taps /= taps.sum()
    mat = np.zeros((size, size))
    for i in range(size):
        for j, w in zip(range(i - r, i + r + 1), taps):
            j = -j if j < 0 else 2 * (size - 1) - j if j > size - 1 else j  # reflect-101
            mat[i, j] += w
    return mat[::scale]


def neighbour_information(textures=None, *, num_crops: int = 4, size: int = 128, scale: int = 4,
                          degradation: str = "BI", speed: tuple[float, float] = (2.0, 6.0),
                          regularisation: float = 2e-4, seed: int = 0) -> dict:
    """How much two neighbours can add to the centre frame at all: the HR centre (grey) rebuilt
    by least squares from 8-bit LR frames whose degradation and motion are known exactly, from
    the centre frame alone and from all three.

    Per crop: a ``size`` x ``size`` HR window of a texture (the bundled training footage by
    default) moved by a global motion of whole HR pixels, ``-d``, 0, ``+d`` over three frames
    (``|d|`` drawn in ``speed`` LR px per frame, a random direction: the synthetic scenes'
    background motion); each frame degraded by ``degradation_matrix`` and rounded to 8 bits.
    The estimate ``X`` on a canvas covering all three frames minimises
    ``sum_k ||W S_k(X) W^T - LR_k||^2 + regularisation * ||grad X||^2`` (L-BFGS), ``S_k`` the
    crop of frame k; its PSNR is taken on the centre frame away from an 8-px border. Evidence
    that the neighbours carry information beyond the centre frame, not a bound on what a
    learned model can gain from them (it knows neither the degradation nor the motion, but can
    learn a stronger prior than a smoothness term). Returns ``psnr_centre_only`` and
    ``psnr_three_frames`` (per crop), ``gain`` (their mean difference, dB) and ``settings``.
    """
    if textures is None:
        from .data.video import bundled_shots, load_bundled

        textures = [f for shot in bundled_shots("train")
                    for f in load_bundled(shot.clip)[shot.start:shot.stop:10]]
    rng = np.random.default_rng(seed)
    margin = int(math.ceil(speed[1] * scale)) + 1
    textures = [t for t in textures if min(t.shape[:2]) >= size + 2 * margin]
    if not textures:
        raise ValueError(f"no texture of at least {size + 2 * margin} px a side")
    w = torch.from_numpy(degradation_matrix(size, scale, degradation))
    grey = np.array([0.299, 0.587, 0.114])
    out = {"psnr_centre_only": [], "psnr_three_frames": []}
    for _ in range(num_crops):
        tex = textures[rng.integers(len(textures))].astype(np.float64) @ grey / 255.0
        y0, x0 = (rng.integers(0, tex.shape[i] - size - 2 * margin + 1) for i in (0, 1))
        canvas = torch.from_numpy(tex[y0:y0 + size + 2 * margin, x0:x0 + size + 2 * margin].copy())
        angle = rng.uniform(0, 2 * np.pi)
        d = np.round(rng.uniform(*speed) * scale * np.array([np.sin(angle), np.cos(angle)])).astype(int)
        corners = [(margin - d[0], margin - d[1]), (margin, margin), (margin + d[0], margin + d[1])]
        lrs = [torch.round((w @ _window(canvas, c, size) @ w.T).clamp(0, 1) * 255) / 255 for c in corners]
        gt = _window(canvas, corners[1], size)[8:-8, 8:-8]
        for key, frames in (("psnr_centre_only", (1,)), ("psnr_three_frames", (1, 0, 2))):
            est = _least_squares([lrs[k] for k in frames], [corners[k] for k in frames], w, size, scale,
                                 margin, regularisation)
            est = _window(est, corners[1], size)[8:-8, 8:-8].clamp(0, 1)
            out[key].append(10 * math.log10(1.0 / float(((est - gt) ** 2).mean())))
    gain = float(np.mean(out["psnr_three_frames"]) - np.mean(out["psnr_centre_only"]))
    return {**out, "gain": gain, "settings": {"num_crops": num_crops, "size": size, "scale": scale,
                                               "degradation": degradation, "speed": speed,
                                               "regularisation": regularisation, "seed": seed}}


def _window(x: Tensor, corner, size: int) -> Tensor:
    return x[corner[0]:corner[0] + size, corner[1]:corner[1] + size]


def _least_squares(lrs, corners, w: Tensor, size: int, scale: int, margin: int,
                   regularisation: float) -> Tensor:
    """The canvas ``X`` minimising ``sum_k ||W window_k(X) W^T - LR_k||^2 + reg ||grad X||^2``
    (L-BFGS from the bicubic upsampling of the first LR frame, the centre's, replicated to the
    margins)."""
    start = F.interpolate(lrs[0][None, None], scale_factor=scale, mode="bicubic", align_corners=False)
    x = F.pad(start, (margin,) * 4, mode="replicate")[0, 0].clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], max_iter=300, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        fit = sum(((w @ _window(x, c, size) @ w.T - lr) ** 2).sum() for lr, c in zip(lrs, corners))
        smooth = ((x[1:] - x[:-1]) ** 2).sum() + ((x[:, 1:] - x[:, :-1]) ** 2).sum()
        loss = fit + regularisation * smooth
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    return x.detach()
