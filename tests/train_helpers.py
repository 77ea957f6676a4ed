"""A tiny deformable VSR model and a tiny patch dataset for the trainer's tests.

They follow the interfaces the trainer expects of ``dalign_nb.models.edvr.EDVR`` and
``dalign_nb.data`` (``model(x, return_aux=True) -> (out, {"offsets": {level: ...}})``; samples
``{"lq": (T,3,h,w), "gt": (3,4h,4w)}``) at a size that trains in milliseconds.
"""

from __future__ import annotations

import os
import random
import signal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dalign_nb.config import DataConfig, EDVRConfig, Profile, TrainConfig
from dalign_nb.ops import DeformConv2d
from dalign_nb.train import train
from dalign_nb.training.processes import Dist


class TinyVSR(nn.Module):
    """Features -> a DCN aligning every frame to the centre one -> ``fusion`` -> x4 upsampling."""

    def __init__(self, num_feat: int = 8, num_frame: int = 3, offset_bias: float = 0.0):
        super().__init__()
        c, self.num_frame = num_feat, num_frame
        self.feat = nn.Conv2d(3, c, 3, padding=1)
        self.conv_offset = nn.Conv2d(2 * c, 2 * 9, 3, padding=1)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.constant_(self.conv_offset.bias, offset_bias)
        self.dcn = DeformConv2d(c, c, 3, padding=1)
        self.fusion = nn.Conv2d(num_frame * c, c, 1)
        self.upconv = nn.Conv2d(c, 3 * 16, 3, padding=1)

    def forward(self, x, return_aux: bool = False):
        b, t, _, h, w = x.shape  # (B, T, 3, h, w)
        f = self.feat(x.flatten(0, 1)).unflatten(0, (b, t))  # (B, T, C, h, w)
        ref = f[:, t // 2]
        offsets = [self.conv_offset(torch.cat([f[:, i], ref], 1)) for i in range(t)]
        aligned = [self.dcn(f[:, i], o) for i, o in enumerate(offsets)]
        fused = F.leaky_relu(self.fusion(torch.cat(aligned, 1)), 0.1)
        base = F.interpolate(x[:, t // 2], scale_factor=4, mode="bilinear", align_corners=False)
        out = F.pixel_shuffle(self.upconv(fused), 4) + base  # (B, 3, 4h, 4w)
        if return_aux:
            return out, {"offsets": {"l1": torch.stack(offsets, 1)}}
        return out


class TinyPatches:
    """Random crops of a few random smooth clips; the crop and flips use torch, numpy and
    python RNGs on purpose (the trainer must make all three deterministic).

    ``fail_at`` / ``signal_at``: raise, or send a signal to this process, when asked for that
    sample number's patch (once), to simulate a crash or an interruption.
    """

    def __init__(self, num_clips=4, num_frame=3, size=16, patch=8, seed=123):
        g = torch.Generator().manual_seed(seed)
        hr = F.avg_pool2d(torch.rand(num_clips * num_frame, 3, 4 * size, 4 * size, generator=g), 5,
                          stride=1, padding=2)
        self.gt = hr.unflatten(0, (num_clips, num_frame))  # (K, T, 3, 4s, 4s)
        lq = F.interpolate(hr, scale_factor=0.25, mode="bicubic", align_corners=False)
        self.lq = lq.unflatten(0, (num_clips, num_frame))  # (K, T, 3, s, s)
        self.patch, self.calls = patch, 0
        self.fail_at = self.signal_at = None
        self.flow = None  # (u, v): a constant centre-to-frame flow added to every sample

    def __len__(self):
        return self.lq.shape[0]

    def __getitem__(self, i):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            self.fail_at = None
            raise RuntimeError("simulated crash in the data pipeline")
        if self.signal_at is not None and self.calls == self.signal_at[0]:
            os.kill(os.getpid(), self.signal_at[1])
            self.signal_at = None
        s, p = self.lq.shape[-1], self.patch
        y, x = torch.randint(0, s - p + 1, (2,)).tolist()
        lq = self.lq[i, :, :, y:y + p, x:x + p]
        gt = self.gt[i, self.lq.shape[1] // 2, :, 4 * y:4 * (y + p), 4 * x:4 * (x + p)]
        if np.random.rand() < 0.5:
            lq, gt = lq.flip(-1), gt.flip(-1)
        if random.random() < 0.5:
            lq, gt = lq.flip(-2), gt.flip(-2)
        item = {"lq": lq.contiguous(), "gt": gt.contiguous()}
        if self.flow is not None:
            item["flow"] = torch.tensor(self.flow, dtype=torch.float32)[None, :, None, None].expand(
                lq.shape[0], 2, p, p).clone()  # (T, 2, p, p)
        return item

    def val(self, k=2):
        t = self.lq.shape[1]
        return [{"lq": self.lq[i], "gt": self.gt[i, t // 2]} for i in range(k)]


def tiny_profile(total_iter=8, batch_size=2, **train) -> Profile:
    cfg = dict(total_iter=total_iter, lr=1e-3, periods=(total_iter,), restart_weights=(1.0,),
               tsa_iter=0, loss_reduction="mean", log_every=2, val_every=total_iter, ckpt_every=3)
    cfg.update(train)
    return Profile(name="tiny", description="trainer tests",
                   model=EDVRConfig(num_feat=8, num_frame=3, deformable_groups=1, num_extract_block=1,
                                    num_reconstruct_block=1, alignment="dcn"),
                   data=DataConfig(source="synthetic", patch_size=8, batch_size=batch_size),
                   train=TrainConfig(**cfg))


def tiny_model(seed=0, **kw) -> TinyVSR:
    torch.manual_seed(seed)
    return TinyVSR(**kw)


def ddp_worker(rank: int, world: int, port: int, out_dir: str, total_iter: int, batch: int,
               train_fields: dict | None = None):
    """One process of a CPU (gloo) DDP run, set up as ``torchrun`` would; ``train_fields``:
    TrainConfig fields in place of the fusion-only stage (``tsa_iter=3``)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    calls = []  # the stop-request all-reduces (host syncs) this rank made
    any_ = Dist.any
    Dist.any = lambda self, flag, device: calls.append(1) or any_(self, flag, device)
    profile = tiny_profile(total_iter, batch, **(train_fields or {"tsa_iter": 3}))
    res = train(profile, out_dir, model=tiny_model(), train_set=TinyPatches(), val_set=None, resume=False,
                progress=False, device="cpu")
    state = {k: v.clone() for k, v in res.model.state_dict().items()}
    state["stop_checks"] = torch.tensor(len(calls))
    torch.save(state, os.path.join(out_dir, f"rank{rank}.pt"))


SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}
