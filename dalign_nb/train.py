"""The trainer (Sec. A.1 of the paper; BasicSR's EDVR recipe).

``train(profile, out_dir)`` runs one training job and returns a ``TrainResult``:

* Adam (betas 0.9 / 0.99), cosine annealing with restarts (``CosineAnnealingRestartLR``,
  BasicSR's semantics), Charbonnier loss, the two-stage TSA schedule (only the fusion
  parameters train for the first ``tsa_iter`` iterations), the optional offset-fidelity loss
  (Sec. 3.4) against the flows that the data pipeline delivers;
* validation PSNR of the super-resolved centre frames of the held-out clip, beside bicubic;
* an offset monitor: per pyramid level, mean and max |offset| and the share of components
  beyond a threshold; a mean |offset| above 50 (BasicSR's "offset overflow" warning, the
  training instability that motivates Sec. 3.4) is recorded in the history and reported;
* a metrics history in ``history.json`` (below); progress bars (``tqdm.auto``) in a notebook
  and a terminal;
* checkpoints written atomically (temporary file in the same folder, fsync, ``os.replace``);
  an interrupted run -- Ctrl-C / notebook interrupt, SIGTERM, an exception between
  iterations -- checkpoints the last finished iteration and resumes *exactly*: the data order
  is a function of (seed, iteration) and the checkpoint holds model, optimiser, scheduler,
  AMP scaler and the torch / numpy / python RNG states. Loading uses ``weights_only=True``;
* AMP on CUDA, several GPUs / processes with DDP under ``torchrun`` (NCCL, or gloo on CPU).

Run it from a shell with ``python -m dalign_nb train --profile quick`` (``--help``).

``history.json`` (also ``TrainResult.history`` and inside the checkpoint)::

    {"format": 1, "profile": {...the Profile as a dict...}, "world_size": 1, "device": "cpu",
     "torch": "2.x", "iteration": 300, "status": "done",
     "train": [{"iter": 10, "loss": 0.021, "lr": 1e-3, "stage": "all" | "fusion",
                "wall_s": 4.2, "offsets": {"l1": {"mean_abs": .., "max_abs": ..,
                "frac_above": .., "peak_mean_abs": ..}, "l2": .., "l3": .., "cascade": ..}}, ...],
     "val": [{"iter": 300, "psnr": 30.1, "psnr_bicubic": 29.8, "num_frames": 2}, ...],
     "overflow": [{"iter": 20, "level": "l1", "mean_abs": 61.0}, ...],
     "events": [{"iter": 0, "event": "start"}, {"iter": 150, "event": "interrupted",
                 "signal": "SIGINT"}, {"iter": 150, "event": "resume"}, ...]}

``train`` entries average the loss over the ``log_every`` iterations before ``iter``; the
offset statistics are those of the latest batch, ``peak_mean_abs`` the largest mean |offset|
since the previous entry. Events: start, resume, stopped, interrupted, crashed, done.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import random
import signal
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from dalign_nb.alignment import AlignmentConfig
from dalign_nb.config import Profile, get_profile
from dalign_nb.data import PatchDataset, validation_clips
from dalign_nb.flow import estimate_flow
from dalign_nb.losses import charbonnier_loss, offset_fidelity_loss
from dalign_nb.models.edvr import EDVR

__all__ = [
    "CosineAnnealingRestartLR",
    "OffsetMonitor",
    "TrainResult",
    "bicubic_upsample",
    "build_data",
    "build_model",
    "needs_flow",
    "evaluate",
    "fusion_parameters",
    "load_checkpoint",
    "psnr",
    "run_dir",
    "save_checkpoint",
    "train",
    "validation_samples",
]

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
WEIGHTS = "model.pt"


# --------------------------------------------------------------------------- schedule


class CosineAnnealingRestartLR(LRScheduler):
    """Cosine annealing with restarts (Loshchilov & Hutter 2016), as BasicSR's.

    Within restart period ``i`` (``periods[i]`` iterations long, starting at iteration
    ``c_i = sum(periods[:i])``):

        lr(t) = eta_min + w_i * (lr0 - eta_min) * (1 + cos(pi * (t - c_i) / periods[i])) / 2

    with ``w_i = restart_weights[i]``. ``t`` is the scheduler's step count; the trainer
    steps it after every optimiser step, so iteration ``t + 1`` runs at ``lr(t)``.
    """

    def __init__(self, optimizer, periods, restart_weights=(1.0,), eta_min=0.0, last_epoch=-1):
        if len(periods) != len(restart_weights):
            raise ValueError("periods and restart_weights must have the same length, got "
                             f"{len(periods)} and {len(restart_weights)}")
        self.periods, self.restart_weights = list(periods), list(restart_weights)
        self.eta_min = eta_min
        self.cumulative_period = [sum(self.periods[: i + 1]) for i in range(len(self.periods))]
        super().__init__(optimizer, last_epoch)

    def _position(self, t: int) -> int:
        for i, end in enumerate(self.cumulative_period):
            if t <= end:
                return i
        return len(self.periods) - 1

    def lr_at(self, t: int, lr0: float | None = None) -> float:
        """The learning rate after ``t`` scheduler steps (of the first group, or from ``lr0``)."""
        lr0 = self.base_lrs[0] if lr0 is None else lr0
        i = self._position(t)
        start = 0 if i == 0 else self.cumulative_period[i - 1]
        cos = 1 + math.cos(math.pi * (t - start) / self.periods[i])
        return self.eta_min + self.restart_weights[i] * 0.5 * (lr0 - self.eta_min) * cos

    def get_lr(self) -> list[float]:
        return [self.lr_at(self.last_epoch, lr0) for lr0 in self.base_lrs]


# --------------------------------------------------------------------------- data order


def _sample_seed(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


@contextlib.contextmanager
def _seeded(seed: int):
    """Run the body with torch / numpy / python RNGs seeded, then restore their states."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


class _KeyedSamples(Dataset):
    """Sample number ``n`` (counted over the whole run) -> a training sample.

    Epoch ``n // len(base)`` visits the base dataset in a permutation drawn from (seed,
    epoch); the sample's own randomness (crop, flips) is drawn with the RNGs seeded from
    (seed, n). The data order is therefore a function of seed and iteration alone, which is
    what makes resuming exact and DDP ranks disjoint.
    """

    def __init__(self, base, seed: int):
        self.base, self.seed, self._perm = base, seed, (None, None)

    def __len__(self) -> int:
        return len(self.base)

    def _index(self, n: int) -> int:
        epoch, pos = divmod(n, len(self.base))
        if self._perm[0] != epoch:
            g = torch.Generator().manual_seed(_sample_seed(self.seed, 0, epoch))
            self._perm = (epoch, torch.randperm(len(self.base), generator=g).tolist())
        return self._perm[1][pos]

    def __getitem__(self, n: int):
        index = self._index(n)
        if hasattr(self.base, "set_epoch"):  # PatchDataset draws item i from (seed, epoch, i)
            self.base.set_epoch(n // len(self.base))
        with _seeded(_sample_seed(self.seed, 1, n)):
            return self.base[index]


class _BatchKeys(Sampler):
    """Iteration ``i`` of a global batch ``B`` takes samples ``[i*B, (i+1)*B)``; rank ``r``
    of ``W`` processes takes its contiguous ``B/W`` share."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of "
                             f"processes ({world})")
        self.start, self.stop, self.batch_size = start, stop, batch_size
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        per = self.batch_size // self.world
        for it in range(self.start, self.stop):
            first = it * self.batch_size + self.rank * per
            yield list(range(first, first + per))


# --------------------------------------------------------------------------- checkpoints


def _atomic_write(path: Path, write) -> None:
    """``write(file)`` into a temporary file next to ``path``, fsync, then ``os.replace``.

    A crash at any point leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` (tensors and plain Python containers only) atomically."""
    _atomic_write(Path(path), lambda f: torch.save(state, f))


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``."""
    return torch.load(path, map_location=map_location, weights_only=True)


def _write_json(path: Path, obj) -> None:
    _atomic_write(path, lambda f: f.write((json.dumps(obj, indent=1) + "\n").encode()))


def _rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    s = state["numpy"]
    np.random.set_state({"bit_generator": s["bit_generator"], "has_gauss": s["has_gauss"],
                         "gauss": s["gauss"],
                         "state": {"key": s["key"].numpy().astype(np.uint32), "pos": s["pos"]}})
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# --------------------------------------------------------------------------- metrics


def psnr(x: Tensor, y: Tensor) -> float:
    """PSNR in dB of images in [0, 1] (RGB, whole image)."""
    mse = F.mse_loss(x.double().clamp(0, 1), y.double()).item()
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


def bicubic_upsample(lq: Tensor, scale: int = 4) -> Tensor:
    """The bicubic baseline: ``(B, 3, h, w) -> (B, 3, 4h, 4w)``, clamped to [0, 1]."""
    return F.interpolate(lq, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


def _charbonnier(pred: Tensor, target: Tensor, reduction: str, eps: float) -> Tensor:
    loss = charbonnier_loss(pred, target, eps)  # mean over all pixels
    return loss * pred.numel() if reduction == "sum" else loss


class OffsetMonitor:
    """Per pyramid level: mean and max |offset| and the share of components beyond ``threshold``.

    ``update(offsets)`` after every forward pass keeps, on the device, the largest mean
    |offset| seen since the last ``flush`` (so an overflow between two log points is not
    missed, without a host sync per iteration); ``flush(iteration)`` returns the statistics of
    the latest batch plus that running maximum, and the levels whose mean |offset| exceeded
    ``overflow_mean`` (BasicSR warns at 50: the offsets have diverged).
    """

    def __init__(self, threshold: float = 10.0, overflow_mean: float = 50.0):
        self.threshold, self.overflow_mean = threshold, overflow_mean
        self._last, self._peak = {}, {}

    def update(self, offsets: dict[str, Tensor]) -> None:
        for level, off in offsets.items():
            if off is None:
                continue
            a = off.detach().abs().float()
            mean = a.mean()
            self._last[level] = (mean, a.amax(), (a > self.threshold).float().mean())
            peak = self._peak.get(level)
            self._peak[level] = mean if peak is None else torch.maximum(peak, mean)

    def flush(self) -> tuple[dict, list[dict]]:
        stats, overflow = {}, []
        for level, (mean, amax, frac) in self._last.items():
            peak = self._peak[level].item()
            stats[level] = {"mean_abs": mean.item(), "max_abs": amax.item(),
                            "frac_above": frac.item(), "peak_mean_abs": peak}
            if not math.isfinite(peak) or peak > self.overflow_mean:
                overflow.append({"level": level, "mean_abs": peak})
        self._last, self._peak = {}, {}
        return stats, overflow


# --------------------------------------------------------------------------- model and data


def build_model(profile: Profile) -> nn.Module:
    """EDVR (``dalign_nb.models.edvr``) as ``profile.model`` describes it."""

    m = profile.model
    align = AlignmentConfig(kind=m.alignment, num_offsets=m.num_offsets, modulated=m.modulated,
                            max_residue_magnitude=m.max_residue_magnitude, backend=m.backend)
    model = EDVR(num_in_ch=3, num_out_ch=3, num_feat=m.num_feat, num_frame=m.num_frame,
                 deformable_groups=m.deformable_groups, num_extract_block=m.num_extract_block,
                 num_reconstruct_block=m.num_reconstruct_block, with_tsa=m.with_tsa, alignment=align)
    if m.zero_init_output:  # the model starts as its bilinear base (see ModelConfig)
        nn.init.zeros_(model.conv_last.weight)
        nn.init.zeros_(model.conv_last.bias)
    return model


def needs_flow(profile: Profile) -> bool:
    """Whether training needs optical flows: offset-fidelity loss or flow-guided alignment."""
    return profile.train.offset_fidelity_weight > 0 or profile.model.alignment == "flow_guided"


def validation_samples(clips, num_frame: int, frames_per_clip: int, with_flow: bool = False) -> list[dict]:
    """Whole-frame samples of held-out clips: ``frames_per_clip`` centre frames per clip,
    evenly spaced among those with ``num_frame`` frames around them, as dicts ``{"lq": (T, 3,
    h, w), "gt": (3, 4h, 4w)[, "flow": (T, 2, h, w)]}`` (flows estimated with DIS)."""
    half, out = num_frame // 2, []
    for clip in clips:  # dalign_nb.data.ValClip: lq (N, 3, h, w), gt (N, 3, H, W)
        n = clip.lq.shape[0]
        if n < num_frame:
            continue
        count = min(frames_per_clip, n - 2 * half)
        for c in np.linspace(half, n - 1 - half, count).round().astype(int).tolist():
            # contiguous: ValClip tensors are permuted views of (N, H, W, 3) arrays
            sample = {"lq": clip.lq[c - half:c + half + 1].contiguous(), "gt": clip.gt[c].contiguous(),
                      "name": f"{clip.name}#{c}"}
            if with_flow:
                sample["flow"] = _estimate_flows(sample["lq"])
            out.append(sample)
    if not out:
        raise ValueError(f"no held-out clip has {num_frame} frames")
    return out


def _estimate_flows(lq: Tensor) -> Tensor:

    frames = lq.permute(0, 2, 3, 1).numpy()  # (T, h, w, 3)
    c = len(frames) // 2
    flows = [estimate_flow(frames[c], f) for f in frames]  # (h, w, 2) each, centre -> frame
    return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).float()  # (T, 2, h, w)


def build_data(profile: Profile):
    """(training ``PatchDataset``, validation samples of the held-out clips) for ``profile``."""

    d, m, with_flow = profile.data, profile.model, needs_flow(profile)
    train_set = PatchDataset(d.source, num_frames=m.num_frame, patch_size=d.patch_size,
                             augment=d.augment, with_flow=with_flow, seed=profile.train.seed,
                             samples_per_epoch=d.samples_per_epoch, temporal_stride=d.temporal_stride,
                             num_scenes=d.num_scenes)
    clips = validation_clips(d.val_source)[: d.val_clips]
    return train_set, validation_samples(clips, m.num_frame, d.val_frames, with_flow)


def fusion_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The TSA fusion parameters: the model's ``fusion_parameters()`` if it has one, else the
    parameters named ``fusion.*`` (BasicSR's ``EDVRModel`` selects ``'fusion' in name``)."""
    if hasattr(model, "fusion_parameters"):
        wanted = {id(p) for p in model.fusion_parameters()}
        return [(n, p) for n, p in model.named_parameters() if id(p) in wanted]
    return [(n, p) for n, p in model.named_parameters() if "fusion" in n]


def _takes_aux(model: nn.Module) -> bool:
    return "return_aux" in inspect.signature(model.forward).parameters


@torch.no_grad()
def evaluate(model: nn.Module, samples, device=None) -> dict:
    """Mean PSNR (RGB) of the model and of bicubic over validation samples.

    ``samples``: dicts with ``"lq"`` ``(T, 3, h, w)`` and ``"gt"`` ``(3, 4h, 4w)``; the
    centre frame of each is super-resolved.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    ours, bic = [], []
    for s in samples:
        lq, gt = s["lq"].to(device)[None], s["gt"].to(device)[None]  # (1, T, 3, h, w), (1, 3, H, W)
        out = model(lq, flows=s["flow"].to(device)[None]) if "flow" in s else model(lq)
        centre = lq[:, lq.shape[1] // 2]
        ours.append(psnr(out.float(), gt.float()))
        bic.append(psnr(bicubic_upsample(centre.float()), gt.float()))
    model.train(was_training)
    return {"psnr": float(np.mean(ours)), "psnr_bicubic": float(np.mean(bic)),
            "num_frames": len(ours)}


# --------------------------------------------------------------------------- processes


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # this call initialised the process group

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls) -> _Dist:
        """Join the process group that ``torchrun`` describes (RANK, WORLD_SIZE, ...), if any."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
        world = int(os.environ.get("WORLD_SIZE", 1))
        if world <= 1:
            return cls()
        local = int(os.environ.get("LOCAL_RANK", 0))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), local, owned=True)

    def any(self, flag: bool, device) -> bool:
        """True on every rank if ``flag`` is true on any (so all ranks stop together)."""
        if not self.enabled:
            return flag
        t = torch.tensor([float(flag)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mean(self, value: Tensor) -> Tensor:
        if self.enabled:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world
        return value


def _pick_device(dist_ctx: _Dist, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", dist_ctx.local_rank)
    return torch.device("cpu")


class _StopRequests:
    """SIGINT (Ctrl-C, a notebook's interrupt) and SIGTERM ask the loop to stop after the
    current iteration and checkpoint it; a second SIGINT interrupts at once."""

    def __init__(self):
        self.signal_name, self._old = None, {}

    def _handler(self, signum, frame):
        if signum == signal.SIGINT and self.signal_name == "SIGINT":
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


# --------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    """What ``train`` returns: the trained model (unwrapped, eval mode), the metrics history,
    the run folder and how the run ended (``"done"``, ``"stopped"`` at ``stop_at``,
    ``"SIGINT"``, ``"SIGTERM"``)."""

    model: nn.Module
    history: dict
    out_dir: Path
    status: str

    @property
    def iteration(self) -> int:
        return self.history["iteration"]

    @property
    def overflow(self) -> list[dict]:
        return self.history["overflow"]

    def final_val(self) -> dict | None:
        return self.history["val"][-1] if self.history["val"] else None


def run_dir(profile: Profile, tag: str | None = None) -> Path:
    """``runs/<profile>-<alignment>[-tag]`` at the top of the repository."""
    name = f"{profile.name}-{profile.model.alignment}" + (f"-{tag}" if tag else "")
    return ROOT / "runs" / name


def _new_history(profile: Profile, world: int, device: torch.device) -> dict:
    """The metrics history (``history.json``); see the README of ``train``."""
    return {"format": 1, "profile": profile.to_dict(), "world_size": world, "device": device.type,
            "torch": str(torch.__version__), "iteration": 0, "status": "running",
            "train": [], "val": [], "overflow": [], "events": []}


def _set_stage(model: nn.Module, fusion_only: bool) -> None:
    """Two-stage TSA (Sec. A.1): freeze everything but the fusion parameters, or train all."""
    fusion = {id(p) for _, p in fusion_parameters(model)}
    if fusion_only and not fusion:
        raise ValueError("tsa_iter > 0 needs a model with TSA fusion parameters (with_tsa=True)")
    for p in model.parameters():
        p.requires_grad_(not fusion_only or id(p) in fusion)


class _Run:
    """State of one training run; ``train`` below drives it."""

    def __init__(self, profile, out_dir, model, train_set, val_set, device, progress):
        self.p, self.cfg, self.out_dir = profile, profile.train, Path(out_dir)
        self.dist = _Dist.setup()
        self.device = _pick_device(self.dist, device)
        torch.manual_seed(self.cfg.seed)  # model initialisation
        np.random.seed(self.cfg.seed)
        random.seed(self.cfg.seed)
        self.model = (model if model is not None else build_model(profile)).to(self.device)
        self.history = _new_history(profile, self.dist.world, self.device)
        if self.cfg.pretrained:
            self._load_pretrained(self.cfg.pretrained)
        elif self.cfg.tsa_iter > 0 and model is None and self.dist.main:
            warnings.warn(f"tsa_iter={self.cfg.tsa_iter}: only the TSA fusion trains at first, but "
                          "nothing was loaded; the paper starts this stage from a model trained "
                          "without TSA (train.pretrained)", RuntimeWarning, stacklevel=3)
        if train_set is None:
            train_set, built_val = build_data(profile)
            val_set = built_val if val_set is None else val_set
        self.train_set, self.val_set = train_set, val_set
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr,
                                          betas=self.cfg.betas)
        self.scheduler = CosineAnnealingRestartLR(self.optimizer, self.cfg.periods,
                                                  self.cfg.restart_weights, self.cfg.eta_min)
        self.monitor = OffsetMonitor(self.cfg.offset_threshold, self.cfg.overflow_mean)
        self.iteration, self.stage, self.net = 0, None, self.model
        self.aux = _takes_aux(self.model)
        self.progress = progress and self.dist.main

    def _amp_dtype(self):
        if not (self.cfg.amp and self.device.type == "cuda"):
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def _load_pretrained(self, path) -> None:
        state = load_checkpoint(path, self.device)
        state = state.get("params", state.get("model", state))
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        self.history["pretrained"] = {"path": str(path), "missing": list(missing),
                                      "unexpected": list(unexpected)}

    # ---- checkpoints
    def state(self) -> dict:
        return {"iteration": self.iteration, "profile": self.p.to_dict(),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": _rng_state(), "history": self.history}

    def save(self) -> None:
        if self.dist.main:
            save_checkpoint(self.out_dir / CHECKPOINT, self.state())
            _write_json(self.out_dir / HISTORY, self.history)
        if self.dist.enabled:
            dist.barrier()

    def restore(self, ckpt: dict) -> None:
        saved = Profile.from_dict(ckpt["profile"])
        if saved.model != self.p.model or saved.train.seed != self.p.train.seed:
            raise ValueError(f"the checkpoint in {self.out_dir} was written for another model or "
                             "seed; pass resume=False (or another out_dir) to start afresh")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state(ckpt["rng"])
        self.iteration, self.history = ckpt["iteration"], ckpt["history"]
        self.history["profile"] = self.p.to_dict()  # schedule fields may have been extended

    # ---- one iteration
    def _set_stage(self, it: int) -> None:
        # BasicSR's EDVRModel: fusion only for iterations 1 .. tsa_iter - 1, then all.
        fusion_only = self.cfg.tsa_iter > 0 and it + 1 < self.cfg.tsa_iter
        if fusion_only == self.stage:
            return
        _set_stage(self.model, fusion_only)
        self.stage = fusion_only
        if self.dist.enabled:  # DDP registers the trainable parameters at construction
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def _loss(self, batch) -> Tensor:
        lq, gt = batch["lq"].to(self.device), batch["gt"].to(self.device)  # (B,T,3,h,w), (B,3,H,W)
        kw = {"flows": batch["flow"].to(self.device)} if self.p.model.alignment == "flow_guided" else {}
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            if self.aux:
                out, aux = self.net(lq, return_aux=True, **kw)
                self.monitor.update(aux.get("offsets", {}))
            else:
                out, aux = self.net(lq, **kw), {}
            loss = _charbonnier(out.float(), gt, self.cfg.loss_reduction, self.cfg.charbonnier_eps)
            if self.cfg.offset_fidelity_weight > 0:
                loss = loss + self._offset_fidelity(aux, batch)
        return loss

    def _offset_fidelity(self, aux: dict, batch) -> Tensor:

        if "flow" not in batch:
            raise ValueError("offset_fidelity_weight > 0 needs flows from the data pipeline "
                             "(samples with a 'flow' entry)")
        flow = batch["flow"].to(self.device)  # (B, T, 2, h, w), centre -> frame t
        off = aux["offsets"]["l1"]  # (B, T, 2*G*N, h, w): finest level, relative to the neighbour
        return offset_fidelity_loss(off.float(), flow.float(), self.cfg.offset_fidelity_weight,
                                    self.cfg.offset_fidelity_threshold)

    def step(self, batch) -> Tensor:
        loss = self._loss(batch)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss.detach()

    # ---- logging
    def log(self, it: int, loss_sum: Tensor, count: int, lr: float, t0: float, bar) -> None:
        loss = self.dist.mean(loss_sum / count).item()
        stats, overflow = self.monitor.flush()
        entry = {"iter": it, "loss": loss, "lr": lr, "stage": "fusion" if self.stage else "all",
                 "wall_s": round(time.perf_counter() - t0, 3), "offsets": stats}
        self.history["train"].append(entry)
        self.history["overflow"] += [{"iter": it, **o} for o in overflow]
        if overflow and self.dist.main:
            levels = ", ".join(f"{o['level']} {o['mean_abs']:.3g}" for o in overflow)
            warnings.warn(f"offset overflow at iteration {it}: mean |offset| above "
                          f"{self.cfg.overflow_mean:g} ({levels}); see history['overflow']",
                          RuntimeWarning, stacklevel=3)
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        if self.dist.main:
            _write_json(self.out_dir / HISTORY, self.history)

    def validate(self, it: int, bar) -> None:
        if self.val_set is None:
            return
        if self.dist.main:
            res = {"iter": it, **evaluate(self.model, self.val_set, self.device)}
            self.history["val"].append(res)
            msg = (f"iter {it}: PSNR {res['psnr']:.2f} dB (bicubic {res['psnr_bicubic']:.2f} dB) "
                   f"on {res['num_frames']} held-out frames")
            (bar.write if bar is not None else print)(msg)
        if self.dist.enabled:
            dist.barrier()

    def event(self, name: str, **extra) -> None:
        self.history["events"].append({"iter": self.iteration, "event": name, **extra})


def train(profile: Profile | str | None = None, out_dir=None, *, model: nn.Module | None = None,
          train_set=None, val_set=None, resume: bool = True, stop_at: int | None = None,
          device=None, progress: bool = True) -> TrainResult:
    """Train ``model`` (default: EDVR built from ``profile.model``) as ``profile`` says.

    profile: a ``Profile``, a profile name, or None for ``DALIGN_PROFILE`` (default quick).
    out_dir: run folder for ``checkpoint.pt``, ``history.json`` and ``model.pt`` (default
        ``run_dir(profile)``).
    model, train_set, val_set: override what the profile builds; ``train_set`` yields dicts
        ``{"lq": (T,3,h,w), "gt": (3,4h,4w)[, "flow": (T,2,h,w)]}``, ``val_set`` is a sequence
        of such dicts (whole frames of the held-out clip) or None.
    resume: continue from ``out_dir/checkpoint.pt`` if it exists (else start afresh and
        overwrite it).
    stop_at: stop after this iteration with a checkpoint, as an interruption would; the
        schedule still runs to ``total_iter`` when resumed.
    device: default CUDA (``cuda:LOCAL_RANK`` under torchrun) if available, else CPU.

    Returns a ``TrainResult``; its ``status`` says whether the run finished.
    """
    profile = get_profile(profile) if profile is None or isinstance(profile, str) else profile
    out_dir = Path(out_dir) if out_dir is not None else run_dir(profile)
    run = _Run(profile, out_dir, model, train_set, val_set, device, progress)
    ckpt_path = out_dir / CHECKPOINT
    if resume and ckpt_path.exists():
        run.restore(load_checkpoint(ckpt_path, "cpu"))  # RNG states must stay on the CPU
        run.event("resume")
    else:
        run.event("start")
    status = _loop(run, stop_at)
    run.history["status"] = status
    if run.dist.main:
        _write_json(out_dir / HISTORY, run.history)
        if status == "done":
            params = {k: v.detach().cpu() for k, v in run.model.state_dict().items()}
            save_checkpoint(out_dir / WEIGHTS, {"params": params})
    if run.dist.owned:
        dist.destroy_process_group()
    run.model.eval()
    return TrainResult(run.model, run.history, out_dir, status)


def _loop(run: _Run, stop_at: int | None) -> str:
    cfg = run.cfg
    total = cfg.total_iter
    stop = total if stop_at is None else min(stop_at, total)
    if run.iteration >= stop:
        return "done" if run.iteration >= total else "stopped"
    sampler = _BatchKeys(run.iteration, stop, run.p.data.batch_size, run.dist.rank, run.dist.world)
    loader = DataLoader(_KeyedSamples(run.train_set, cfg.seed), batch_sampler=sampler,
                        num_workers=run.p.data.num_workers,
                        pin_memory=run.device.type == "cuda",
                        persistent_workers=False)
    bar = tqdm(total=total, initial=run.iteration, desc=f"train {run.p.name}", unit="it",
               dynamic_ncols=True, disable=not run.progress)
    run.model.train()
    t0, loss_sum, count = time.perf_counter(), torch.zeros((), device=run.device), 0
    consistent, status = True, "done"
    try:
        with _StopRequests() as stops:
            batches = iter(loader)
            for it in range(run.iteration, stop):
                run._set_stage(it)
                batch = next(batches)
                consistent = False
                loss_sum += run.step(batch)
                count += 1
                run.iteration = run.history["iteration"] = it + 1
                consistent = True
                n = it + 1
                bar.update(1)
                if n % cfg.log_every == 0 or n == stop:
                    run.log(n, loss_sum, count, run.scheduler.get_last_lr()[0], t0, bar)
                    loss_sum, count = torch.zeros((), device=run.device), 0
                if n % cfg.val_every == 0 or n == total:
                    run.validate(n, bar)
                halt = run.dist.any(stops.signal_name is not None, run.device) and n < total
                if halt:
                    status = stops.signal_name or "SIGTERM"  # another rank's signal
                    run.event("interrupted", signal=status)
                elif n == stop:
                    status = "done" if n == total else "stopped"
                    run.event(status)
                if halt or n == stop or n % cfg.ckpt_every == 0:
                    run.save()
                if halt:
                    bar.write(f"{status}: stopped after iteration {n}; checkpoint saved, "
                              "train again to resume")
                    break
    except BaseException as exc:
        if consistent and run.dist.main:  # between iterations: keep the finished work
            run.event("crashed", error=f"{type(exc).__name__}: {exc}")
            run.history["status"] = "crashed"
            save_checkpoint(run.out_dir / CHECKPOINT, run.state())  # no barrier: others may run
            _write_json(run.out_dir / HISTORY, run.history)
        raise
    finally:
        bar.close()
    return status
