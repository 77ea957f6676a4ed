"""The measurements taken after training, each a function ``(model, profile, **options) -> dict``.

``offsets_vs_flow`` (Fig. 5), ``diversity`` (Sec. 4.2, Fig. 6, 9) and ``masks`` (A.5, Fig. 17)
on held-out synthetic scenes with exact flow and occlusion (``held_out_scenes``), and
``psnr_real`` on the real held-out clips, ``motion_sets`` (Fig. 5's share on more scenes, DIS
beside it). ``MEASURES`` names them for the experiments, with the
keys printed when a run finishes and which models they apply to.

Every measure takes any of the models a profile can hold (``models.build_model``: EDVR, TDAN,
FlowNet), through what each returns alike: ``aux["offsets"][level]`` ``(B, T, 2*G*N, h, w)``
at the levels it has (``offset_levels``; TDAN has ``"l1"`` only), N from the config's
``offsets_per_group``, flows passed only to a model whose config ``takes_flows``. The held-out
scenes' flows start at the middle frame, so the model's reference frame must be it
(``center_frame_idx`` = ``num_frame // 2``, every config's default).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from dalign_nb.alignment import FlowGuidedAlignment, centre_only, zero_offsets
from dalign_nb.config import Profile
from dalign_nb.data import SceneConfig, get_clips, validation_clips, validation_samples
from dalign_nb.flow import estimate_flows
from dalign_nb.metrics import (
    bicubic_baseline,
    bilinear_base,
    closest_offset,
    offset_diversity,
    offset_flow_distance,
    pearson_r,
    psnr,
    quantize,
    roc_auc,
)
from dalign_nb.models import model_type
from dalign_nb.models.modes import evaluating
from dalign_nb.training.validation import evaluate

__all__ = ["MEASURES", "Measure", "bilinear_base_psnr", "diversity", "held_out_scenes", "masks",
           "motion_sets", "offsets_vs_flow", "psnr_real"]


def _pooled(dist_l2, dist_l1, flow_mag, off_mag, threshold) -> dict:
    """Statistics over pooled valid pixels (1-D arrays)."""
    if dist_l2.size == 0:
        return {"num_pixels": 0}
    return {"num_pixels": int(dist_l2.size),
            "within_1px": float(np.mean(dist_l2 < threshold)),
            "within_1px_l1": float(np.mean(dist_l1 < threshold)),
            "epe": float(dist_l2.mean()), "median_epe": float(np.median(dist_l2)),
            "mean_flow": float(flow_mag.mean()), "mean_offset": float(off_mag.mean())}


def _chosen_magnitude(off, index):
    """|offset| of the offset ``index`` (h, w) picked per pixel from ``off`` (2*G*N, h, w)."""
    vec = off.unflatten(0, (-1, 2))  # (G*N, 2, h, w) as (dy, dx)
    pick = index[None, None].expand(1, 2, *index.shape)
    return vec.gather(0, pick)[0].norm(dim=0)  # (h, w)


def held_out_scenes(profile: Profile, num_scenes: int, size: int, scene_seed: int) -> list:
    """``num_scenes`` held-out synthetic scenes of ``size`` x ``size`` HR pixels with the model's
    ``num_frame`` frames (``validation_clips("synthetic")``: textures from held-out footage,
    seeds no training scene uses), with exact flows and occlusion masks."""
    config = SceneConfig(height=size, width=size, num_frames=profile.model.num_frame)
    return validation_clips("synthetic", num_scenes=num_scenes, seed=scene_seed, scene_config=config,
                            degradation=profile.data.degradation)


def bilinear_base_psnr(result: dict) -> float:
    """EDVR's bilinear base (what an untrained EDVR outputs) on the held-out scenes a result's
    ``offsets_vs_flow`` was measured on: the value it records (``psnr_bilinear_base``), or, for
    results measured before it did, that PSNR computed again on the same scenes (its settings'
    ``num_scenes``, ``size``, ``scene_seed``; BI frames). ``report.collapsed`` and
    ``report.overview`` read it."""
    m = result["measures"]["offsets_vs_flow"]
    if m.get("psnr_bilinear_base") is not None:
        return float(m["psnr_bilinear_base"])
    settings = m["settings"]
    config = SceneConfig(height=settings["size"], width=settings["size"], num_frames=3)
    clips = validation_clips("synthetic", num_scenes=settings["num_scenes"], seed=settings["scene_seed"],
                             scene_config=config)
    return float(np.mean([psnr(quantize(bilinear_base(clip.lq[1][None])), clip.gt[1][None])
                          for clip in clips]))


def _check_centre(model: nn.Module, num_frame: int) -> None:
    """Refuse a model whose reference frame is not the middle one, where the scenes' flows start."""
    centre = getattr(model, "center_frame_idx", num_frame // 2)
    if centre != num_frame // 2:
        raise ValueError(f"the measures compare the model's output and offsets with the middle frame "
                         f"{num_frame // 2} of {num_frame}; the model's center_frame_idx is {centre}")


def _run_on(model: nn.Module, profile: Profile, clip, device):
    """The model on a held-out scene: ``(lq (1, T, 3, h, w), flow kwargs, output (1, 3, H, W), aux)``;
    a model that takes flows gets the scene's exact flows, or DIS's (``data.flow_source``)."""
    _check_centre(model, clip.lq.shape[0])
    lq = clip.lq[None].to(device)  # (1, T, 3, h, w)
    kw = {}
    if profile.model.takes_flows:
        flows = estimate_flows(clip.lq) if profile.data.flow_source == "dis" else clip.flow
        kw = {"flows": flows[None].to(device)}
    out, aux = model(lq, return_aux=True, **kw)
    return lq, kw, out, aux


def _neighbours(clip, aux: dict, level: str):
    """Per neighbour frame of a held-out scene: ``(distance from the centre, exact flow (1, 2, h, w),
    offsets (1, 2*G*N, h, w), masks (1, G*N, h, w) or None, visible (h, w) bool)`` at ``level``;
    visible: the centre frame's content is not occluded in that neighbour."""
    t = clip.lq.shape[0]
    c = t // 2
    if level not in aux["offsets"]:
        raise ValueError(f"level must be one of the model's offset levels {tuple(aux['offsets'])}, "
                         f"got {level!r}")
    off = aux["offsets"][level][0].float().cpu()  # (T, 2*G*N, h, w)
    masks = aux.get("masks", {}).get(level)
    masks = None if masks is None else masks[0].float().cpu()  # (T, G*N, h, w)
    for k in range(t):
        if k != c:
            yield (k - c, clip.flow[k][None].float(), off[k][None],
                   None if masks is None else masks[k][None], ~clip.occlusion[k])


def _has_flow_guided(model: nn.Module) -> bool:
    return any(isinstance(m, FlowGuidedAlignment) for m in model.modules())


@torch.no_grad()
def offsets_vs_flow(model: nn.Module, profile: Profile, *, num_scenes: int = 8, size: int = 256,
                    scene_seed: int = 0, level: str = "l1", threshold: float = 1.0,
                    bin_width: float = 0.25, max_distance: float = 10.0, device=None) -> dict:
    """Fig. 5 on held-out synthetic scenes, whose flow and occlusion are exact.

    The model's offsets at PCD ``level`` (``aux["offsets"][level]``, (B, T, 2*G*N, h, w))
    against the exact LR flow from the centre frame to each neighbour, on the pixels that
    are not occluded in that neighbour; with N > 1 offsets per pixel, the closest one
    (``metrics.closest_offset``). Pooled over scenes and neighbours: the share within
    ``threshold`` px (end-point error; ``_l1``: |du| + |dv|), mean and median end-point error,
    mean |flow|, mean |offset|, a histogram of the end-point errors (``bin_width`` px bins up
    to ``max_distance``, the rest in ``above``), the same per neighbour (``by_frame``, keyed by
    the frame's distance from the centre). PSNR (RGB, 8-bit output) of the centre frame: the
    model, bicubic, and the model with its offsets held at zero (``alignment.zero_offsets``; null for
    flow-guided alignment, whose offsets are the flow plus a residue and cannot be zeroed so),
    the same with the offsets of the neighbours alone held at zero (``psnr_gain_over_zero_neighbours``,
    EDVR only: EDVR aligns the reference frame with the same modules, and its own offsets, left
    as trained here, need not be zero; ``alignment.zero_offsets(frames=...)``),
    and the model given the centre frame in place of every neighbour (``psnr_reference_only``;
    zero motion for a model that takes flows): ``psnr_gain_over_reference_only``, the model's
    PSNR minus it, is what the neighbours' content adds to this model's output at all, so what
    any alignment of them can have brought it.
    Scenes: ``num_scenes`` of ``size`` x ``size`` HR pixels (``held_out_scenes``).
    """
    device = device or next(model.parameters()).device
    t = profile.model.num_frame
    c = t // 2
    zero = not _has_flow_guided(model)
    pixels = {k - c: [] for k in range(t) if k != c}  # neighbour -> [(l2, l1, |flow|, |offset|)]
    scores = {"model": [], "zero_offsets": [], "zero_neighbours": [], "reference_only": [], "bicubic": [],
              "bilinear_base": []}
    neighbours = [k for k in range(t) if k != c] if zero and hasattr(model, "pcd_align") else None
    occluded = []
    with evaluating(model):
        for clip in held_out_scenes(profile, num_scenes, size, scene_seed):
            lq, kw, out, aux = _run_on(model, profile, clip, device)
            gt = clip.gt[c][None]  # (1, 3, H, W)
            scores["model"].append(psnr(quantize(out.float().cpu()), gt))
            scores["bicubic"].append(psnr(quantize(bicubic_baseline(clip.lq[c][None])), gt))
            scores["bilinear_base"].append(psnr(quantize(bilinear_base(clip.lq[c][None])), gt))
            if zero:
                with zero_offsets(model):
                    out_zero = model(lq, **kw)
                scores["zero_offsets"].append(psnr(quantize(out_zero.float().cpu()), gt))
            if neighbours:
                with zero_offsets(model, frames=neighbours):
                    out_zero = model(lq, **kw)
                scores["zero_neighbours"].append(psnr(quantize(out_zero.float().cpu()), gt))
            scores["reference_only"].append(psnr(quantize(centre_only(model, lq, c, **kw).float().cpu()), gt))
            for k, f, o, _, valid in _neighbours(clip, aux, level):  # (1, 2, h, w), (1, 2GN, h, w)
                occluded.append(float((~valid).float().mean()))
                d2, index = closest_offset(o, f)  # (1, h, w) each
                d1, _ = closest_offset(o, f, norm="l1")
                mags = (f[0].norm(dim=0), _chosen_magnitude(o[0], index[0]))
                pixels[k].append([a[valid].numpy() for a in (d2[0], d1[0], *mags)])
    cat = {k: [np.concatenate(a) for a in zip(*v)] for k, v in pixels.items()}
    everything = [np.concatenate(a) for a in zip(*cat.values())]
    edges = np.arange(0.0, max_distance + bin_width / 2, bin_width)
    counts, _ = np.histogram(everything[0], bins=edges)
    mean = {k: float(np.mean(v)) if v else None for k, v in scores.items()}
    return {
        **_pooled(*everything, threshold),
        "occluded_share": float(np.mean(occluded)),
        "by_frame": {str(k): _pooled(*v, threshold) for k, v in cat.items()},
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist(),
                      "above": int((everything[0] > edges[-1]).sum())},
        "psnr": mean["model"], "psnr_zero_offsets": mean["zero_offsets"], "psnr_bicubic": mean["bicubic"],
        "psnr_bilinear_base": mean["bilinear_base"],
        "psnr_gain_over_zero": None if not zero else mean["model"] - mean["zero_offsets"],
        "psnr_zero_neighbours": mean["zero_neighbours"],
        "psnr_gain_over_zero_neighbours": None if not neighbours else mean["model"] - mean["zero_neighbours"],
        "psnr_reference_only": mean["reference_only"],
        "psnr_gain_over_reference_only": mean["model"] - mean["reference_only"],
        "psnr_per_scene": scores,
        "settings": {"num_scenes": num_scenes, "size": size, "scene_seed": scene_seed, "level": level,
                     "threshold": threshold, "num_frame": t},
    }


def _versus_occlusion(values: np.ndarray, occluded: np.ndarray, name: str) -> dict:
    """Means of per-pixel ``values`` on visible and occluded pixels, their ratio, and the ROC AUC
    of ``values`` as a detector of occlusion."""
    vis = float(values[~occluded].mean()) if (~occluded).any() else math.nan
    occ = float(values[occluded].mean()) if occluded.any() else math.nan
    return {f"{name}_visible": vis, f"{name}_occluded": occ,
            f"{name}_ratio_occluded_visible": occ / vis if vis > 0 else math.nan,
            f"{name}_auc_occlusion": roc_auc(values, occluded)}


@torch.no_grad()
def diversity(model: nn.Module, profile: Profile, *, num_scenes: int = 8, size: int = 256,
              scene_seed: int = 0, level: str = "l1", threshold: float = 1.0, device=None) -> dict:
    """Offset diversity (Sec. 4.2, Fig. 6, 9) on held-out synthetic scenes with exact occlusion.

    Per pixel of each neighbour frame, the standard deviation of the offsets at PCD ``level``
    (``metrics.offset_diversity``): ``diversity`` over all G*N offsets ("the pixelwise standard
    deviation of all offsets", Fig. 9; with G = 1 the same as within the group) and
    ``diversity_within_groups``, each group's N offsets (A.4: G is another source of
    diversity), averaged over groups. Pooled over scenes and neighbours: the mean over all
    pixels, over visible and over occluded ones (the centre's content occluded in that
    neighbour, where a single flow cannot align), their ratio and the ROC AUC of the
    diversity as a detector of occlusion (``metrics.roc_auc``; 0.5: diversity does not concentrate
    where the flow fails). The other place a single flow fails is where it is wrong: on visible
    pixels, ``mean_offset_within_1px`` is the share whose mean offset (over all G*N, the
    flow-like estimate the warping loss trains) is within ``threshold`` px of the exact flow,
    ``diversity_mean_offset_off`` / ``_on`` the mean diversity where it is not / is, and
    ``diversity_auc_mean_offset_error`` the ROC AUC of diversity as a detector of the pixels
    where it misses. ``within_1px``: the share of visible pixels whose closest offset is within
    ``threshold`` px of the exact flow, as ``offsets_vs_flow``.
    """
    device = device or next(model.parameters()).device
    per_group = profile.model.offsets_per_group
    div, within, occluded, closest, missed = [], [], [], [], []
    with evaluating(model):
        for clip in held_out_scenes(profile, num_scenes, size, scene_seed):
            _, _, _, aux = _run_on(model, profile, clip, device)
            for _, f, o, _, valid in _neighbours(clip, aux, level):
                groups, rest = divmod(o.shape[1], 2 * per_group)
                if rest or not groups:
                    raise ValueError(f"{o.shape[1]} offset channels are not 2*G*N with the profile's "
                                     f"N = {per_group} ({model_type(profile.model)})")
                div.append(offset_diversity(o)[0, 0].flatten().numpy())  # (h*w,)
                within.append(offset_diversity(o, groups)[0].mean(0).flatten().numpy())
                occluded.append((~valid).flatten().numpy())
                closest.append(closest_offset(o, f)[0][0][valid].numpy())
                mean = o.unflatten(1, (-1, 2)).mean(1)  # (1, 2, h, w), (dy, dx): the mean of all G*N
                missed.append(offset_flow_distance(mean, f)[0, 0][valid].numpy() >= threshold)
    div, within, occluded, closest, missed = map(np.concatenate, (div, within, occluded, closest, missed))
    visible_div = div[~occluded]
    on = float(visible_div[~missed].mean()) if (~missed).any() else math.nan
    off = float(visible_div[missed].mean()) if missed.any() else math.nan
    return {
        "diversity": float(div.mean()), **_versus_occlusion(div, occluded, "diversity"),
        "diversity_within_groups": float(within.mean()),
        "mean_offset_within_1px": float(np.mean(~missed)), "diversity_mean_offset_on": on,
        "diversity_mean_offset_off": off, "diversity_auc_mean_offset_error": roc_auc(visible_div, missed),
        "within_1px": float(np.mean(closest < threshold)), "num_pixels": int(div.size),
        "occluded_share": float(occluded.mean()),
        "settings": {"num_scenes": num_scenes, "size": size, "scene_seed": scene_seed, "level": level,
                     "threshold": threshold, "offsets_per_group": per_group},
    }


@torch.no_grad()
def masks(model: nn.Module, profile: Profile, *, num_scenes: int = 8, size: int = 256,
          scene_seed: int = 0, level: str = "l1", norm: str = "l1", small: float = 0.1,
          device=None) -> dict:
    """Modulation masks of DCNv2 (Eq. 7, A.5, Fig. 17-18) against the exact flow and occlusion.

    For each offset index ``k = g*N + n`` at PCD ``level``: the mean mask ``m_k`` and the mean
    distance (``norm``, "l1" as Fig. 6 sorts offsets) of offset ``k`` to the exact flow, over
    the visible pixels of every neighbour of the held-out scenes -- Fig. 17's scatter, one
    point per offset -- and the Pearson r between them (the paper: offsets far from the
    flow have the smallest masks, a negative r). ``share_small``: the share of mask values
    below ``small`` over all offsets and pixels (A.5: with many offsets a large share is
    about 0). Masks against occlusion: the per-pixel mean mask over the G*N offsets on
    visible and occluded pixels, their ratio and its ROC AUC as a detector of occlusion
    (below 0.5: the masks drop where the centre's content is occluded).
    """
    device = device or next(model.parameters()).device
    mask_sum = dist_sum = None
    count, per_pixel, occluded, values = 0, [], [], []
    with evaluating(model):
        for clip in held_out_scenes(profile, num_scenes, size, scene_seed):
            _, _, _, aux = _run_on(model, profile, clip, device)
            for _, f, o, m, valid in _neighbours(clip, aux, level):
                if m is None:
                    raise ValueError("masks needs a modulated model (DCNv2: alignment.modulated=True)")
                dist = offset_flow_distance(o, f, norm=norm)[0]  # (G*N, h, w)
                ms, ds = m[0][:, valid].double().sum(1), dist[:, valid].double().sum(1)  # (G*N,)
                mask_sum = ms if mask_sum is None else mask_sum + ms
                dist_sum = ds if dist_sum is None else dist_sum + ds
                count += int(valid.sum())
                per_pixel.append(m[0].mean(0).flatten().numpy())
                occluded.append((~valid).flatten().numpy())
                values.append(m[0].flatten().numpy())
    mean_mask, mean_dist = (mask_sum / count).tolist(), (dist_sum / count).tolist()
    per_pixel, occluded, values = map(np.concatenate, (per_pixel, occluded, values))
    return {
        "per_offset": {"mean_mask": mean_mask, "mean_distance": mean_dist},
        "pearson_r": pearson_r(mean_mask, mean_dist) if len(mean_mask) > 1 else math.nan,
        "mean_mask": float(values.mean()), "share_small": float(np.mean(values < small)),
        **_versus_occlusion(per_pixel, occluded, "mask"),
        "num_pixels": count,
        "settings": {"num_scenes": num_scenes, "size": size, "scene_seed": scene_seed, "level": level,
                     "norm": norm, "small": small},
    }


@torch.no_grad()
def psnr_real(model: nn.Module, profile: Profile, *, clips=None, frames_per_clip: int = 4,
              device=None) -> dict:
    """PSNR on the real held-out clips: the bundled test shots, never trained on (``video.SPLIT``).

    As the trainer's validation (``training.validation``: ``get_clips("bundled", "test")``,
    ``validation_samples``, ``evaluate``): ``frames_per_clip`` centre frames per clip, evenly
    spaced, super-resolved, rounded to 8 bits, RGB PSNR against the ground truth, beside
    MATLAB-bicubic and EDVR's bilinear base (an untrained EDVR's output); a flow-guided model
    gets DIS flows. Per clip and over all frames;
    ``clips``: the clip names to score (default all).
    """
    found = get_clips("bundled", "test", degradation=profile.data.degradation)
    names = [c.name for c in found]
    if clips is not None:
        unknown = set(clips) - set(names)
        if unknown:
            raise ValueError(f"no held-out clip {sorted(unknown)}; clips: {names}")
        found = [c for c in found if c.name in clips]
    _check_centre(model, profile.model.num_frame)
    per_clip, ours, bic, base = {}, [], [], []
    for clip in found:
        samples = validation_samples([clip], profile.model.num_frame, frames_per_clip,
                                     with_flow=profile.model.takes_flows)
        res = evaluate(model, samples, device)
        per_clip[clip.name] = res
        ours += [res["psnr"]] * res["num_frames"]
        bic += [res["psnr_bicubic"]] * res["num_frames"]
        base += [res["psnr_bilinear_base"]] * res["num_frames"]
    return {"psnr": float(np.mean(ours)), "psnr_bicubic": float(np.mean(bic)),
            "psnr_bilinear_base": float(np.mean(base)),
            "psnr_gain_over_bicubic": float(np.mean(ours) - np.mean(bic)), "num_frames": len(ours),
            "per_clip": per_clip, "settings": {"clips": [c.name for c in found],
                                               "frames_per_clip": frames_per_clip}}


def _within(distances: list[np.ndarray], threshold: float) -> dict:
    d = np.concatenate(distances) if distances else np.zeros(0)
    if d.size == 0:
        return {"num_pixels": 0}
    return {"within_1px": float(np.mean(d < threshold)), "epe": float(d.mean()), "num_pixels": int(d.size)}


def _offsets_and_dis(model: nn.Module, profile: Profile, clips, device, level: str) -> dict:
    """Over ``clips`` (held-out scenes, exact flow): the end-point errors (1-D arrays over the
    visible pixels) of the model's closest offset and of DIS (OpenCV, on the same LR frames)."""
    learned, dis = [], []
    for clip in clips:
        _, _, _, aux = _run_on(model, profile, clip, device)
        estimated = estimate_flows(clip.lq)  # (T, 2, h, w), DIS from the centre frame
        c = clip.lq.shape[0] // 2
        for k, f, o, _, valid in _neighbours(clip, aux, level):
            learned.append(closest_offset(o, f)[0][0][valid].numpy())
            dis.append((estimated[c + k] - f[0]).norm(dim=0)[valid].numpy())
    return {"offsets": learned, "dis": dis}


def _shares(errors: dict, threshold: float) -> dict:
    return {name: _within(d, threshold) for name, d in errors.items()}


@torch.no_grad()
def motion_sets(model: nn.Module, profile: Profile, *, num_scenes: int = 8, size: int = 256,
                scene_seeds: tuple[int, ...] = (1, 2), real_seed: int = 3, level: str = "l1",
                threshold: float = 1.0, device=None) -> dict:
    """Fig. 5's share within 1 px on more scenes than ``offsets_vs_flow``'s, DIS beside it.

    Three sets of held-out scenes with exact flow (``held_out_scenes``): ``"fig5"`` -- the scenes
    ``offsets_vs_flow`` scores (scene seed 0); ``"other_seeds"`` -- synthetic scenes of
    ``scene_seeds`` (other cuts of the held-out footage, other motions and sprites; pooled, and
    ``by_seed``); ``"real_global"`` -- held-out real footage moved by a known global motion,
    without sprites (``SceneConfig.num_sprites = 0``, scene seed ``real_seed``): real texture,
    exact flow. On each, the share of visible pixels whose closest offset at ``level`` lies
    within ``threshold`` px (end-point error) of the exact flow, and the same for DIS
    (``flow.estimate_flows``, OpenCV, on the same LR frames): what a flow estimator with no
    learning reaches on these frames.
    """
    device = device or next(model.parameters()).device
    config = SceneConfig(height=size, width=size, num_frames=profile.model.num_frame)
    real = dataclasses.replace(config, num_sprites=0)
    with evaluating(model):
        def errors(clips):
            return _offsets_and_dis(model, profile, clips, device, level)

        by_seed = {str(s): errors(held_out_scenes(profile, num_scenes, size, s)) for s in scene_seeds}
        pooled = {name: [d for e in by_seed.values() for d in e[name]] for name in ("offsets", "dis")}
        out = {"fig5": _shares(errors(held_out_scenes(profile, num_scenes, size, 0)), threshold),
               "other_seeds": _shares(pooled, threshold),
               "by_seed": {s: _shares(e, threshold) for s, e in by_seed.items()},
               "real_global": _shares(errors(validation_clips(
                   "synthetic", num_scenes=num_scenes, seed=real_seed, scene_config=real,
                   degradation=profile.data.degradation)), threshold)}
    for name in ("fig5", "other_seeds", "real_global"):  # the headline numbers, flat
        out[f"within_1px_{name}"] = out[name]["offsets"].get("within_1px")
        out[f"dis_within_1px_{name}"] = out[name]["dis"].get("within_1px")
    out["settings"] = {"num_scenes": num_scenes, "size": size, "scene_seeds": list(scene_seeds),
                       "real_seed": real_seed, "level": level, "threshold": threshold}
    return out


def flow_tolerance(model: nn.Module, profile: Profile, *, sigmas=(0.0, 0.1, 0.2, 0.3, 0.5),
                   num_scenes: int = 8, size: int = 256, scene_seed: int = 0, noise_seed: int = 0,
                   device=None) -> dict:
    """How exact must the flow be for the neighbours to help? A model that takes flows (flow-guided
    alignment, Table 3's oracle) on held-out synthetic scenes, given the exact flow plus independent
    Gaussian noise of standard deviation ``sigma`` LR px on each component of each pixel, and given
    DIS's flow (``flow.estimate_flows``), against the same model given the centre frame in place of
    every neighbour with zero motion (``psnr_reference_only``, as ``offsets_vs_flow``'s).

    Per sigma: the PSNR, its gain over the centre frame alone and the median end-point error of
    the flow given (over every pixel of every neighbour). Per-pixel noise is not the error of a
    learned alignment (which is smooth in space and largest at motion boundaries); the median
    error is what places the two side by side. The noise is drawn from ``noise_seed``, the same
    for every model. Not a figure of the paper: it asks what Sec. 4's PSNR comparisons need.
    """
    if not profile.model.takes_flows:
        raise ValueError("flow_tolerance needs a model that takes flows (model.alignment.kind "
                         "'flow_guided'); this profile's model estimates its own motion")
    if any(s < 0 for s in sigmas):
        raise ValueError(f"sigmas must be >= 0, got {tuple(sigmas)}")
    device = device or next(model.parameters()).device
    c = profile.model.num_frame // 2
    clips = held_out_scenes(profile, num_scenes, size, scene_seed)
    _check_centre(model, clips[0].lq.shape[0])
    g = torch.Generator().manual_seed(noise_seed)

    def run(flows_of) -> tuple[float, float]:
        scores, errors = [], []
        for clip in clips:
            flows = flows_of(clip)  # (T, 2, h, w)
            nbrs = [k for k in range(flows.shape[0]) if k != c]
            errors.append((flows[nbrs] - clip.flow[nbrs]).norm(dim=1).flatten())
            out = model(clip.lq[None].to(device), flows=flows[None].to(device))
            scores.append(psnr(quantize(out.float().cpu()), clip.gt[c][None]))
        return float(np.mean(scores)), float(torch.cat(errors).median())

    with evaluating(model):
        reference_only = float(np.mean([psnr(quantize(centre_only(
            model, clip.lq[None].to(device), c, flows=clip.flow[None].to(device)).float().cpu()),
            clip.gt[c][None]) for clip in clips]))
        noisy = [run(lambda clip, s=s: clip.flow + s * torch.randn(clip.flow.shape, generator=g))
                 for s in sigmas]
        dis = run(lambda clip: estimate_flows(clip.lq))
    return {"sigmas": [float(s) for s in sigmas], "psnr": [p for p, _ in noisy],
            "gain_over_reference_only": [p - reference_only for p, _ in noisy],
            "median_epe": [e for _, e in noisy], "psnr_reference_only": reference_only,
            "psnr_dis": dis[0], "gain_dis": dis[0] - reference_only, "median_epe_dis": dis[1],
            "settings": {"num_scenes": num_scenes, "size": size, "scene_seed": scene_seed,
                         "noise_seed": noise_seed}}


class Measure(NamedTuple):
    fn: Callable[..., dict]  # (model, profile, *, device, **options) -> dict
    headline: tuple[str, ...]  # keys printed when a run finishes
    applies: Callable[[Profile], bool] = lambda profile: True  # else the result records None


MEASURES: dict[str, Measure] = {
    "offsets_vs_flow": Measure(offsets_vs_flow, ("within_1px", "epe", "mean_flow", "psnr",
                                                 "psnr_gain_over_zero")),
    "diversity": Measure(diversity, ("diversity", "diversity_auc_occlusion")),
    "masks": Measure(masks, ("pearson_r", "mask_auc_occlusion"), lambda p: p.model.has_masks),
    "psnr_real": Measure(psnr_real, ("psnr", "psnr_gain_over_bicubic")),
    "motion_sets": Measure(motion_sets, ("within_1px_other_seeds", "within_1px_real_global",
                                         "dis_within_1px_fig5")),
    "flow_tolerance": Measure(flow_tolerance, ("gain_over_reference_only", "gain_dis"),
                              lambda p: p.model.takes_flows),
}
