"""Training patches and held-out validation clips (Sec. A.1 of the paper).

``PatchDataset`` gives EDVR-style samples: T LR frames around a centre frame, the HR
centre frame, a random crop (LR ``patch_size``, HR ``scale * patch_size``), random
flips and transposes (with flips, all eight 90-degree rotations and mirrors, as
BasicSR's ``augment``), and temporal reversal. With ``with_flow=True`` it also gives the
LR flow from the centre frame to every frame, for the offset-fidelity loss (Sec. 3.4):
exact for synthetic scenes, DIS estimates (``dalign_nb.flow.estimate_flows``) otherwise.
Flows go through the same augmentation as the frames (``augment``).

``validation_samples`` cuts whole-frame samples from held-out clips, reading only the frames
it uses; synthetic scenes give one sample each, centred on the scene's centre frame, with
their exact flows and occlusion masks.

Nothing reads a frame before it is needed: with paper-scale data (64k Vimeo-90K folders),
``PatchDataset`` checks a folder clip's frame size when it first draws from it, and
``validation_clips`` / ``validation_samples`` load only the clips (and frames) they keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..flow import estimate_flows
from .clips import (
    FolderClip,
    bundled_clips,
    reds_clips,
    synthetic_clips,
    vid4_clips,
    video_clips,
    vimeo_clips,
)
from .degrade import check_degradation
from .synthetic import SceneConfig

__all__ = ["FLOW_SOURCES", "PatchDataset", "ValClip", "augment", "get_clips", "validation_clips",
           "validation_samples"]


# the flows a model is given on clips with exact flows: those, or DIS's estimate (as on real clips)
FLOW_SOURCES = ("exact", "dis")


def get_clips(source="synthetic", split: str = "train", *, root=None, num_scenes: int = 32,
              scene_config: SceneConfig | None = None, seed: int = 0, degradation: str = "bi") -> list:
    """Clips from a named source, or ``source`` itself if it is already a list of clips.

    ``"synthetic"`` (``num_scenes`` scenes of ``scene_config``), ``"bundled"`` (alias
    ``"clips"``: the shots of the bundled real clips), ``"reds"``, ``"vimeo"``, ``"vid4"``
    (image folders under ``root``, default ``data/<dataset>``), or a path to a video file.
    ``degradation`` (``data.DEGRADATIONS``): how LR frames are made; "bd" for the synthetic
    scenes (rendered so) and the bundled clips (LR made again from their HR frames) only --
    the LR folders of REDS / Vimeo-90K / Vid4 are BI.
    """
    check_degradation(degradation)
    if not isinstance(source, (str, Path)):
        return list(source)
    name = str(source)
    if name == "synthetic":
        return synthetic_clips(num_scenes, scene_config, seed, split, degradation)
    if name in ("bundled", "clips"):
        return [clip.degraded(degradation) for clip in bundled_clips(split)]
    if degradation != "bi":
        raise ValueError(f"degradation {degradation!r} is made for the synthetic scenes and the bundled "
                         f"clips; {source!r} is read from BI LR frames")
    if name == "reds":
        return reds_clips(root, split)
    if name == "vimeo":
        return vimeo_clips(root, split)
    if name == "vid4":
        return vid4_clips(root)
    if Path(name).suffix:
        return video_clips(name)
    raise ValueError(f"source must be 'synthetic', 'bundled', 'reds', 'vimeo', 'vid4', a video file "
                     f"or a list of clips, got {source!r}")


def augment(lq: Tensor, gt: Tensor, flow: Tensor | None = None, occlusion: Tensor | None = None, *,
            hflip: bool = False, vflip: bool = False, transpose: bool = False, reverse: bool = False):
    """Flip / transpose / reverse a clip, its centre frame and its centre-to-frame flows alike.

    lq (T, C, h, w); gt (C, H, W); flow (T, 2, h, w) as (u, v); occlusion (T, h, w).
    A horizontal flip negates u, a vertical flip negates v, a transpose swaps u and v;
    reversing time keeps the centre frame and reverses the list of flows (T odd).
    Returns ``(lq, gt, flow, occlusion)`` (None stays None).
    """
    if hflip:
        lq, gt = lq.flip(-1), gt.flip(-1)
        flow = None if flow is None else flow.flip(-1) * flow.new_tensor([-1.0, 1.0])[:, None, None]
        occlusion = None if occlusion is None else occlusion.flip(-1)
    if vflip:
        lq, gt = lq.flip(-2), gt.flip(-2)
        flow = None if flow is None else flow.flip(-2) * flow.new_tensor([1.0, -1.0])[:, None, None]
        occlusion = None if occlusion is None else occlusion.flip(-2)
    if transpose:
        lq, gt = lq.transpose(-1, -2), gt.transpose(-1, -2)
        flow = None if flow is None else flow.transpose(-1, -2).flip(-3)
        occlusion = None if occlusion is None else occlusion.transpose(-1, -2)
    if reverse:
        lq = lq.flip(0)
        flow = None if flow is None else flow.flip(0)
        occlusion = None if occlusion is None else occlusion.flip(0)
    return lq, gt, flow, occlusion


def _to_tensor(frames) -> Tensor:
    """(..., H, W, 3) uint8 or float [0, 1] -> float32 (..., 3, H, W)."""
    arr = np.ascontiguousarray(frames)
    arr = arr if arr.flags.writeable else arr.copy()  # a memory-mapped cache file is read-only
    t = torch.from_numpy(arr).movedim(-1, -3)
    return t.float().div_(255) if arr.dtype == np.uint8 else t.float()


class PatchDataset(Dataset):
    """Random LR clips with the HR centre frame, for training (EDVR's recipe, Sec. A.1).

    Items are dicts: ``"lq"`` (T, 3, h, w) float in [0, 1], ``"gt"`` (3, 4h, 4w), and with
    ``with_flow`` ``"flow"`` (T, 2, h, w), the LR flow (u, v) from the centre frame to each
    frame (zeros at the centre). Item ``i`` is a pure function of ``(seed, epoch, i)``;
    ``set_epoch`` draws new samples.

    source: see ``get_clips``. ``temporal_stride``: an int, or a tuple of ints to draw from,
    spacing of the sampled frames (real clips only; synthetic scenes are rendered with
    ``scene_config.num_frames = num_frames`` and used whole). ``flow_source``: a synthetic
    scene's exact flows, or ``"dis"``: DIS's estimate on the scene's whole LR frames, cut as the
    patch is (a real clip's patch gets DIS on the patch itself).
    """

    def __init__(self, source="synthetic", num_frames: int = 5, patch_size: int = 64, scale: int = 4, *,
                 augment: bool = True, flip: bool = True, rotate: bool = True, reverse: bool = True,
                 with_flow: bool = False, seed: int = 0, samples_per_epoch: int = 1000,
                 temporal_stride=1, split: str = "train", root=None, num_scenes: int = 32,
                 scene_config: SceneConfig | None = None, degradation: str = "bi",
                 flow_source: str = "exact"):
        if num_frames < 1 or num_frames % 2 == 0:
            raise ValueError(f"num_frames must be odd and positive (a centre frame), got {num_frames}")
        if flow_source not in FLOW_SOURCES:
            raise ValueError(f"flow_source must be one of {FLOW_SOURCES}, got {flow_source!r}")
        self.flow_source, self._dis = flow_source, {}  # DIS flows per scene name, made on first use
        if scene_config is None:
            side = max(256, scale * patch_size)
            scene_config = SceneConfig(height=side, width=side, num_frames=num_frames, scale=scale)
        if scene_config.num_frames != num_frames:
            raise ValueError(f"scene_config.num_frames ({scene_config.num_frames}) must equal "
                             f"num_frames ({num_frames})")
        self.num_frames, self.patch_size, self.scale = num_frames, patch_size, scale
        self.flip, self.rotate, self.reverse = flip and augment, rotate and augment, reverse and augment
        self.with_flow, self.seed, self.samples_per_epoch, self.epoch = with_flow, seed, samples_per_epoch, 0
        self.strides = (temporal_stride,) if isinstance(temporal_stride, int) else tuple(temporal_stride)
        clips = get_clips(source, split, root=root, num_scenes=num_scenes, scene_config=scene_config,
                          seed=seed, degradation=degradation)
        self.clips = [c for c in clips if self._fits(c)]
        if not self.clips:
            raise ValueError(f"no clip of {source!r} ({split}) is large enough for {num_frames} frames "
                             f"of LR patch {patch_size} at temporal stride {max(self.strides)}")

    def _fits(self, clip) -> bool:
        """Long enough, and (where the size is known without reading a file) large enough;
        a folder clip's frame size is checked when it is first drawn (``_check_size``)."""
        span = (self.num_frames - 1) * (1 if clip.has_flow else max(self.strides))
        if len(clip) <= span:
            return False
        return isinstance(clip, FolderClip) or min(clip.lr_size()) >= self.patch_size

    def _check_size(self, clip) -> tuple[int, int]:
        h, w = clip.lr_size()
        if min(h, w) < self.patch_size:
            raise ValueError(f"clip {clip.name}: LR frames of {h}x{w} are smaller than the LR patch "
                             f"({self.patch_size}); remove it from the dataset or lower data.patch_size")
        return h, w

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        clip = self.clips[rng.integers(len(self.clips))]
        frame_ids, flow = self._window(rng, clip)
        h, w = self._check_size(clip)
        p, s = self.patch_size, self.scale
        y, x = rng.integers(h - p + 1), rng.integers(w - p + 1)
        lq = _to_tensor(np.stack([clip.lr(i)[y : y + p, x : x + p] for i in frame_ids]))  # (T, 3, p, p)
        gt = _to_tensor(clip.hr(frame_ids[len(frame_ids) // 2])[s * y : s * (y + p), s * x : s * (x + p)])
        if not self.with_flow:
            flow = None
        elif flow is not None:  # a scene's exact flows, or DIS's on its whole frames: (T, 2, p, p)
            flow = self._scene_flows(clip, flow)[:, :, y : y + p, x : x + p]
        else:
            flow = estimate_flows(lq)  # (T, 2, p, p)
        hflip, vflip, transpose, rev = rng.random(4) < 0.5
        lq, gt, flow, _ = augment(lq, gt, flow, hflip=hflip and self.flip, vflip=vflip and self.flip,
                                  transpose=transpose and self.rotate, reverse=rev and self.reverse)
        item = {"lq": lq.contiguous(), "gt": gt.contiguous()}
        if flow is not None:
            item["flow"] = flow.contiguous()
        return item

    def _scene_flows(self, clip, exact: np.ndarray) -> Tensor:
        """A synthetic scene's flows ``(T, 2, h, w)``: its exact ones, or (``flow_source="dis"``)
        DIS's on its whole LR frames, estimated once per scene -- as a flow network sees whole
        frames, and as the held-out scenes get them; on a cut patch DIS sees less context."""
        if self.flow_source == "exact":
            return torch.from_numpy(np.ascontiguousarray(exact)).permute(0, 3, 1, 2)
        if clip.name not in self._dis:
            frames = np.stack([clip.lr(i) for i in range(len(clip))])  # (T, h, w, 3)
            self._dis[clip.name] = estimate_flows(_to_tensor(frames))
        return self._dis[clip.name]

    def _window(self, rng, clip):
        if clip.has_flow:  # a synthetic scene: used whole, exact flows
            return list(range(len(clip))), clip.flows
        stride = int(rng.choice([s for s in self.strides if len(clip) > (self.num_frames - 1) * s]))
        half = self.num_frames // 2 * stride
        c = rng.integers(half, len(clip) - half)
        return list(range(c - half, c + half + 1, stride)), None


@dataclass(frozen=True)
class ValClip:
    """A held-out clip: lq (T, 3, h, w), gt (T, 3, s*h, s*w), float in [0, 1].

    For synthetic scenes also flow (T, 2, h, w), the exact LR flow from the centre frame
    ``T // 2``, and occlusion (T, h, w) bool."""

    name: str
    lq: Tensor
    gt: Tensor
    flow: Tensor | None = None
    occlusion: Tensor | None = None


def validation_clips(source="bundled", max_frames: int | None = None, *, root=None, num_scenes: int = 2,
                     scene_config: SceneConfig | None = None, seed: int = 0,
                     max_clips: int | None = None, degradation: str = "bi") -> list[ValClip]:
    """The held-out clips of a source, whole, for PSNR evaluation.

    ``"bundled"``: the test shots of ``video.SPLIT`` (bikes shot 2, carphone), never used
    for training; ``"synthetic"``: ``num_scenes`` scenes cut from held-out footage with seeds
    no training scene uses; ``"reds"``: REDS4; ``"vimeo"``: Vimeo-90K-T; ``"vid4"``: Vid4.
    ``max_frames`` keeps the first frames of each clip (the centre of a synthetic scene is
    always kept, with its flows). ``max_clips`` keeps the first clips; the others are never read.
    ``degradation``: see ``get_clips``.
    """
    clips = get_clips(source, "test", root=root, num_scenes=num_scenes, scene_config=scene_config, seed=seed,
                      degradation=degradation)
    out = []
    clips = clips[:max_clips]
    for clip in clips:
        n = len(clip)
        ids = list(range(n if max_frames is None else min(n, max_frames)))
        flows = clip.flows if clip.has_flow else None
        if flows is not None:
            ids = list(range(n))  # a synthetic scene's flows refer to its centre frame: keep all
        lq = _to_tensor(np.stack([clip.lr(i) for i in ids]))
        gt = _to_tensor(np.stack([clip.hr(i) for i in ids]))
        flow = None if flows is None else torch.from_numpy(np.ascontiguousarray(flows)).permute(0, 3, 1, 2)
        occ = None if flows is None else torch.from_numpy(np.ascontiguousarray(clip.occlusion))
        out.append(ValClip(clip.name, lq, gt, flow, occ))
    return out


def validation_samples(clips, num_frame: int, frames_per_clip: int, with_flow: bool = False,
                       flow_source: str = "exact") -> list[dict]:
    """Whole-frame samples of held-out clips (any clip of ``get_clips(..., "test")``).

    Each sample is a dict ``{"lq": (T, 3, h, w), "gt": (3, 4h, 4w), "name": "<clip>#<centre>"}``
    with ``T = num_frame``. A clip with exact flows (a synthetic scene) gives one sample,
    centred on the scene's centre frame, with ``"flow"`` (T, 2, h, w), its exact flows from
    the centre frame, and ``"occlusion"`` (T, h, w) bool. Any other clip gives
    ``frames_per_clip`` samples, centres evenly spaced among the frames with ``num_frame // 2``
    frames on either side, and with ``with_flow`` DIS flows (``dalign_nb.flow.estimate_flows``).
    ``flow_source="dis"``: a synthetic scene's sample also has DIS flows in ``"flow"`` (the exact
    ones in ``"flow_exact"``). Only the frames used are read.
    """
    if flow_source not in FLOW_SOURCES:
        raise ValueError(f"flow_source must be one of {FLOW_SOURCES}, got {flow_source!r}")
    half, out = num_frame // 2, []
    for clip in clips:
        if len(clip) < num_frame:
            continue
        if clip.has_flow:  # exact flows refer to the scene's centre frame
            centres = [len(clip) // 2]
        else:
            count = min(frames_per_clip, len(clip) - 2 * half)
            centres = np.linspace(half, len(clip) - 1 - half, count).round().astype(int).tolist()
        for c in centres:
            ids = range(c - half, c + half + 1)
            sample = {"lq": _to_tensor(np.stack([clip.lr(i) for i in ids])), "gt": _to_tensor(clip.hr(c)),
                      "name": f"{clip.name}#{c}"}
            if clip.has_flow:
                window = slice(c - half, c + half + 1)
                flows = np.ascontiguousarray(clip.flows[window])  # (T, h, w, 2)
                sample["flow"] = torch.from_numpy(flows).permute(0, 3, 1, 2).contiguous()
                sample["occlusion"] = torch.from_numpy(np.ascontiguousarray(clip.occlusion[window]))
                if flow_source == "dis":
                    sample["flow_exact"], sample["flow"] = sample["flow"], estimate_flows(sample["lq"])
            elif with_flow:
                sample["flow"] = estimate_flows(sample["lq"])
            out.append(sample)
    if not out:
        raise ValueError(f"no held-out clip has {num_frame} frames")
    return out
