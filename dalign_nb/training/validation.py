"""What a model is trained and scored on: which models take flows, the data, ``evaluate``.

Validation PSNR is the VSR literature's: the super-resolved centre frame rounded to 8 bits,
RGB, no border crop (REDS4's protocol, the paper's Table 3), beside the bicubic baseline
(MATLAB ``imresize``); ``dalign_nb.metrics`` computes both.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data import PatchDataset, SceneConfig, get_clips, validation_samples
from ..metrics import bicubic_baseline, bilinear_base, psnr, quantize
from ..models import takes_flows  # re-exported: the trainer and the notebooks read it here
from ..models.modes import evaluating

__all__ = ["build_data", "evaluate", "needs_flow", "takes_flows"]


def needs_flow(profile) -> bool:
    """Whether the data must deliver flows: a model that takes them, the offset-fidelity loss, or the
    exact flow in place of the L1 offsets early in training (``exact_offsets_until``)."""
    t = profile.train
    return profile.model.takes_flows or t.offset_fidelity_weight > 0 or t.exact_offsets_until > 0


def build_data(profile):
    """(training ``PatchDataset``, validation samples of the held-out clips) for ``profile``.

    Only the first ``data.val_clips`` held-out clips are read. ``data.val_source =
    "synthetic"`` scores ``val_clips`` held-out synthetic scenes (textures from held-out
    footage, seeds no training scene uses, the same whatever the training seed) with
    their exact flows.
    """
    d, m, with_flow = profile.data, profile.model, needs_flow(profile)
    train_set = PatchDataset(d.source, num_frames=m.num_frame, patch_size=d.patch_size,
                             augment=d.augment, with_flow=with_flow, seed=profile.train.seed,
                             samples_per_epoch=d.samples_per_epoch, temporal_stride=d.temporal_stride,
                             num_scenes=d.num_scenes, degradation=d.degradation, flow_source=d.flow_source)
    clips = get_clips(d.val_source, "test", num_scenes=d.val_clips, degradation=d.degradation,
                      scene_config=SceneConfig(num_frames=m.num_frame))[: d.val_clips]
    return train_set, validation_samples(clips, m.num_frame, d.val_frames, with_flow, d.flow_source)


@torch.no_grad()
def evaluate(model: nn.Module, samples, device=None) -> dict:
    """Mean PSNR of the model, of bicubic and of EDVR's bilinear base over validation samples
    (see the module docstring).

    ``samples``: dicts with ``"lq"`` ``(T, 3, h, w)``, ``"gt"`` ``(3, 4h, 4w)`` and, for a model
    that ``takes_flows``, ``"flow"`` ``(T, 2, h, w)``; the centre frame is super-resolved.
    """
    device = device or next(model.parameters()).device
    flows = takes_flows(model)
    if flows and any("flow" not in s for s in samples):
        raise ValueError("this model takes flows, but some validation samples have none")
    ours, bic, base = [], [], []
    with evaluating(model):
        for s in samples:
            lq = s["lq"].to(device)[None]  # (1, T, 3, h, w)
            gt = s["gt"].to(device)[None].float()  # (1, 3, H, W)
            out = model(lq, flows=s["flow"].to(device)[None]) if flows else model(lq)
            ours.append(psnr(quantize(out.float()), gt))
            centre = lq[:, lq.shape[1] // 2].float()  # (1, 3, h, w)
            bic.append(psnr(quantize(bicubic_baseline(centre)), gt))
            base.append(psnr(quantize(bilinear_base(centre)), gt))
    return {"psnr": float(np.mean(ours)), "psnr_bicubic": float(np.mean(bic)),
            "psnr_bilinear_base": float(np.mean(base)), "num_frames": len(ours)}
