"""The trainer (Sec. A.1 of the paper; BasicSR's EDVR recipe).

``train(profile, out_dir)`` runs one training job and returns a ``TrainResult``:

* Adam (betas 0.9 / 0.99), cosine annealing with restarts (``training.schedule``, BasicSR's
  semantics), Charbonnier loss, the two-stage TSA schedule (only the fusion parameters train
  for the first ``tsa_iter`` iterations), the optional offset-fidelity loss (Sec. 3.4)
  against the flows that the data pipeline delivers; a probe of ours, PCD L1 sampling at those
  flows for the first ``exact_offsets_until`` iterations while the warping terms train its offsets;
* validation PSNR of the super-resolved centre frames of the held-out clips, beside bicubic
  (``training.validation``: 8-bit output, RGB, no border crop; MATLAB ``imresize`` bicubic);
* an offset monitor (``training.monitor``): per pyramid level, mean and max |offset| and the
  share of components beyond a threshold; a mean |offset| above 50 (BasicSR's "offset
  overflow" warning) is recorded in the history and reported;
* a metrics history in ``history.json`` (below); progress bars (``tqdm.auto``);
* checkpoints written atomically (``training.checkpoint``); an interrupted run -- Ctrl-C /
  notebook interrupt, SIGTERM, an exception between iterations -- checkpoints the last
  finished iteration and resumes *exactly*: the data order is a function of (seed,
  iteration) (``training.order``) and the checkpoint holds model, optimiser, AMP scaler and
  the torch / numpy / python RNG states. Loading uses ``weights_only=True``;
* resuming with a changed profile: the schedule (``total_iter``, ``lr``, ``periods``,
  ``restart_weights``, ``eta_min``), logging and validation may change, and the *new*
  schedule applies from the restored iteration (a lengthened run follows the new cosine);
  any other change (model, data order, seed, objective) is refused with a ``ValueError``
  naming the fields (``config.RESUMABLE``);
* AMP on CUDA, several GPUs / processes with DDP under ``torchrun`` (NCCL, or gloo on CPU).
  Under DDP the ranks agree on a stop request (a signal on any rank) with an all-reduce,
  a host sync; so that the loop does not wait on one every iteration, they check every
  ``STOP_CHECK_EVERY`` iterations and at log points: a signal stops a DDP run after at
  most that many further iterations (one process stops after the current one).

Run it from a shell with ``python -m dalign_nb train --profile quick`` (``--help``).

``history.json`` (also ``TrainResult.history`` and inside the checkpoint)::

    {"format": 2, "profile": {...the Profile as a dict...}, "world_size": 1, "device": "cpu",
     "torch": "2.x", "iteration": 300, "status": "done",
     "train": [{"iter": 10, "loss": 0.021, "terms": {"sr": 0.02, "fidelity": .., "photometric": ..},
                "lr": 1e-3, "stage": "all" | "fusion",
                "wall_s": 4.2, "offsets": {"l1": {"mean_abs": .., "max_abs": ..,
                "frac_above": .., "peak_mean_abs": ..}, "l2": .., "l3": .., "cascade": ..}}, ...],
     "val": [{"iter": 300, "psnr": 30.1, "psnr_bicubic": 29.8, "num_frames": 2}, ...],
     "overflow": [{"iter": 20, "level": "l1", "mean_abs": 61.0}, ...],
     "events": [{"iter": 0, "event": "start"}, {"iter": 150, "event": "interrupted",
                 "signal": "SIGINT"}, {"iter": 150, "event": "resume", "changed": []}, ...]}

``train`` entries average the loss over the ``log_every`` iterations up to ``iter``, and each of
its terms (``terms``: the Charbonnier SR loss, the weighted offset-fidelity and photometric
losses, those the profile uses; older histories lack it); ``lr``
is the learning rate iteration ``iter`` ran at; the offset statistics are those of the
latest batch, ``peak_mean_abs`` the largest mean |offset| since the previous entry. Events:
start, resume (with the profile fields that changed), stopped, interrupted, crashed, done.
"""

from __future__ import annotations

import contextlib
import inspect
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dalign_nb.alignment import sample_at
from dalign_nb.config import Profile, get_profile
from dalign_nb.io import write_json
from dalign_nb.models import EDVRConfig, build_model, model_type
from dalign_nb.models.edvr import set_fusion_only
from dalign_nb.training.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from dalign_nb.training.monitor import OffsetMonitor
from dalign_nb.training.objective import loss_terms
from dalign_nb.training.order import BatchKeys, KeyedSamples
from dalign_nb.training.processes import Dist, StopRequests, cpu_bf16_support, pick_device
from dalign_nb.training.schedule import build_optimizer, build_scheduler
from dalign_nb.training.validation import build_data, evaluate, takes_flows

__all__ = [
    "CHECKPOINT",
    "HISTORY",
    "STOP_CHECK_EVERY",
    "WEIGHTS",
    "TrainResult",
    "load_checkpoint",
    "run_dir",
    "train",
]

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
WEIGHTS = "model.pt"
STOP_CHECK_EVERY = 10  # DDP: iterations between the all-reduces that agree on a stop request


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
    """``runs/<profile>-<alignment kind of EDVR, else the model type>[-tag]`` at the top of the
    repository."""
    m = profile.model
    kind = m.alignment.kind if isinstance(m, EDVRConfig) else model_type(m)
    name = f"{profile.name}-{kind}" + (f"-{tag}" if tag else "")
    return ROOT / "runs" / name


def _new_history(profile: Profile, world: int, device: torch.device) -> dict:
    """The metrics history (``history.json``); see the module docstring."""
    return {"format": 2, "profile": profile.to_dict(), "world_size": world, "device": device.type,
            "torch": str(torch.__version__), "iteration": 0, "status": "running",
            "train": [], "val": [], "overflow": [], "events": []}


def _takes_aux(model: nn.Module) -> bool:
    return "return_aux" in inspect.signature(model.forward).parameters


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _saved_profile(ckpt: dict, out_dir: Path) -> Profile:
    try:
        return Profile.from_dict(ckpt["profile"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the checkpoint in {out_dir} holds a profile this version cannot read "
                         f"({exc}); pass resume=False (or another out_dir) to start afresh") from exc


def _conflict_message(conflicts: list[str], new: Profile, saved: Profile, out_dir: Path) -> str:
    now, then = new.flat(), saved.flat()
    fields = "; ".join(f"{k}: {then.get(k)!r} -> {now.get(k)!r}" for k in conflicts)
    return (f"cannot resume the run in {out_dir} with a changed {', '.join(conflicts)} ({fields}): only "
            "the schedule, logging and validation may change on resume (config.RESUMABLE); pass "
            "resume=False (or another out_dir) to start afresh")


class _Run:
    """State of one training run; ``train`` and ``_loop`` below drive it."""

    def __init__(self, profile, out_dir, model, train_set, val_set, device, progress):
        self.p, self.cfg, self.out_dir = profile, profile.train, Path(out_dir)
        self.dist = Dist.setup()
        self.device = pick_device(self.dist, device)
        _seed_everything(self.cfg.seed)  # model initialisation
        self.model = (model if model is not None else build_model(profile.model)).to(self.device)
        self.history = _new_history(profile, self.dist.world, self.device)
        if train_set is None:  # first: a missing dataset is the one thing to say
            train_set, built_val = build_data(profile)
            val_set = built_val if val_set is None else val_set
        self._start_from(self.cfg.pretrained, given_model=model is not None)
        self.train_set, self.val_set = train_set, val_set
        self.amp_dtype = self._amp_dtype()
        if self.cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.optimizer = build_optimizer(self.model, self.cfg)
        self.scheduler = build_scheduler(self.optimizer, self.cfg)
        self.monitor = OffsetMonitor(self.cfg.offset_threshold, self.cfg.overflow_mean)
        self.iteration, self.stage, self.net = 0, None, self.model
        self.aux, self.flows = _takes_aux(self.model), takes_flows(self.model)
        if self.cfg.photometric_weight > 0 and not self.aux:
            raise ValueError("photometric_weight > 0 needs a model that returns its offsets "
                             "(forward(..., return_aux=True), as EDVR, TDAN and FlowNet)")
        self.progress = progress and self.dist.main
        self.loss_sum, self.count, self.consistent = torch.zeros((), device=self.device), 0, True
        self.term_sums: dict[str, Tensor] = {}  # each term of the loss, summed since the last log

    def _amp_dtype(self):
        """The autocast dtype (None: float32), recorded in ``history["precision"]``."""
        dtype, why = None, "float32"
        if self.device.type == "cuda" and self.cfg.amp:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            why = "autocast (train.amp)"
        elif self.device.type == "cpu" and self.cfg.cpu_amp:
            native, why = cpu_bf16_support()
            dtype = torch.bfloat16 if native else None
            if not native:
                why = f"float32: train.cpu_amp asked for bfloat16 autocast, but {why}"
                if self.dist.main:
                    warnings.warn(why, RuntimeWarning, stacklevel=4)
        self.precision = {"autocast": str(dtype).removeprefix("torch.") if dtype else None,
                          "channels_last": self.cfg.channels_last, "why": why}
        self.history["precision"] = self.precision
        return dtype

    def _start_from(self, pretrained, given_model: bool) -> None:
        if pretrained:
            state = load_checkpoint(pretrained, self.device)
            state = state.get("params", state.get("model", state))
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            self.history["pretrained"] = {"path": str(pretrained), "missing": list(missing),
                                          "unexpected": list(unexpected)}
        elif self.cfg.tsa_iter > 0 and not given_model and self.dist.main:
            warnings.warn(f"tsa_iter={self.cfg.tsa_iter}: only the TSA fusion trains at first, but "
                          "nothing was loaded; the paper starts this stage from a model trained "
                          "without TSA (train.pretrained)", RuntimeWarning, stacklevel=4)

    # ---- checkpoints
    def state(self) -> dict:
        return {"iteration": self.iteration, "profile": self.p.to_dict(),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng_state(), "history": self.history}

    def save(self) -> None:
        if self.dist.main:
            save_checkpoint(self.out_dir / CHECKPOINT, self.state())
            write_json(self.out_dir / HISTORY, self.history)
        self.dist.barrier()

    def restore(self, ckpt: dict) -> None:
        """Continue from ``ckpt``: its weights, optimiser moments, scaler, RNG states and
        iteration, under *this* profile's schedule (see the module docstring)."""
        saved = _saved_profile(ckpt, self.out_dir)
        conflicts = self.p.resume_conflicts(saved)
        if conflicts:
            raise ValueError(_conflict_message(conflicts, self.p, saved, self.out_dir))
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.iteration, self.history = ckpt["iteration"], ckpt["history"]
        self.history["precision"] = self.precision  # this sitting's (may differ on resume)
        self.scheduler = build_scheduler(self.optimizer, self.cfg, self.iteration)
        now, then = self.p.flat(), saved.flat()
        self.history["profile"] = self.p.to_dict()
        self.event("resume", changed=sorted(k for k in now if now[k] != then.get(k)))

    # ---- one iteration
    def set_stage(self, it: int) -> None:
        # BasicSR's EDVRModel: fusion only for iterations 1 .. tsa_iter - 1, then all.
        fusion_only = self.cfg.tsa_iter > 0 and it + 1 < self.cfg.tsa_iter
        if fusion_only == self.stage:
            return
        set_fusion_only(self.model, fusion_only)
        self.stage = fusion_only
        if self.dist.enabled:  # DDP registers the trainable parameters at construction
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def _flows(self, batch) -> Tensor:
        if "flow" not in batch:
            raise ValueError("the batch has no flows, and a model that takes them, offset_fidelity_weight "
                             "> 0 and exact_offsets_until > 0 need them: the data pipeline must deliver "
                             "samples with a 'flow' entry")
        return batch["flow"].to(self.device)  # (B, T, 2, h, w), centre -> frame t

    def _sampling(self, flows: Tensor | None):
        """PCD L1 sampling at ``flows`` (B, T, 2, h, w), the batch's centre-to-frame flows, with its
        own offsets still reported to the losses (``exact_offsets_until``); None: as the model predicts."""
        if flows is None:
            return contextlib.nullcontext()
        per_frame = flows.float().unbind(1)  # EDVR aligns frame 0 first, the reference too
        centre = getattr(self.model, "center_frame_idx", len(per_frame) // 2)
        per_frame = [torch.zeros_like(f) if t == centre else f for t, f in enumerate(per_frame)]
        return sample_at(self.model, per_frame, "l1", reports="predicted")

    def _loss(self, batch) -> Tensor:
        lq, gt = batch["lq"].to(self.device), batch["gt"].to(self.device)  # (B,T,3,h,w), (B,3,H,W)
        teacher = self.iteration < self.cfg.exact_offsets_until
        flows = self._flows(batch) if self.flows or self.cfg.offset_fidelity_weight > 0 or teacher else None
        kw = {"flows": flows} if self.flows else {}
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None), self._sampling(flows if teacher else None):
            if self.aux:
                out, aux = self.net(lq, return_aux=True, **kw)
                self.monitor.update(aux.get("offsets", {}), aux.get("masks"), aux.get("aligned_feat"))
            else:
                out, aux = self.net(lq, **kw), {}
            terms = loss_terms(self.p, self.model, lq, gt, out, aux, flows, self.iteration)
            # sr_after: the warping terms alone first. The SR loss still enters, weighted 0, so that
            # every parameter gets a (zero) gradient: DDP finds none unused, and Adam counts its
            # steps alike in one process and under DDP
            silent = 0.0 if self.iteration >= self.cfg.sr_after else 0.0 * terms.pop("sr")
        for name, value in terms.items():
            self.term_sums[name] = self.term_sums.get(name, 0) + value.detach()
        return sum(terms.values()) + silent

    def step(self, batch) -> None:
        loss = self._loss(batch)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.loss_sum += loss.detach()
        self.count += 1

    # ---- logging
    def log(self, it: int, lr: float, t0: float, bar) -> None:
        loss = self.dist.mean(self.loss_sum / self.count).item()
        terms = {k: self.dist.mean(v / self.count).item() for k, v in self.term_sums.items()}
        self.loss_sum, self.count, self.term_sums = torch.zeros((), device=self.device), 0, {}
        stats, overflow, positive = self.monitor.flush()
        self.history["train"].append({"iter": it, "loss": loss, "terms": terms, "lr": lr,
                                      "stage": "fusion" if self.stage else "all",
                                      "wall_s": round(time.perf_counter() - t0, 3), "offsets": stats,
                                      "pcd_positive": positive})
        self.history["overflow"] += [{"iter": it, **o} for o in overflow]
        if overflow and self.dist.main:
            levels = ", ".join(f"{o['level']} {o['mean_abs']:.3g}" for o in overflow)
            warnings.warn(f"offset overflow at iteration {it}: mean |offset| above "
                          f"{self.cfg.overflow_mean:g} ({levels}); see history['overflow']",
                          RuntimeWarning, stacklevel=4)
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        if self.dist.main:
            write_json(self.out_dir / HISTORY, self.history)

    def validate(self, it: int, bar) -> None:
        if self.val_set is None:
            return
        if self.dist.main:
            res = {"iter": it, **evaluate(self.model, self.val_set, self.device)}
            self.history["val"].append(res)
            bar.write(f"iter {it}: PSNR {res['psnr']:.2f} dB (bicubic {res['psnr_bicubic']:.2f} dB) "
                      f"on {res['num_frames']} held-out frames")
        self.dist.barrier()

    def event(self, name: str, **extra) -> None:
        self.history["events"].append({"iter": self.iteration, "event": name, **extra})

    def crashed(self, exc: BaseException) -> None:
        """Keep the finished work of a run that raised between iterations."""
        if not (self.consistent and self.dist.main):
            return
        self.event("crashed", error=f"{type(exc).__name__}: {exc}")
        self.history["status"] = "crashed"
        save_checkpoint(self.out_dir / CHECKPOINT, self.state())  # no barrier: others may run
        write_json(self.out_dir / HISTORY, self.history)


def train(profile: Profile | str | None = None, out_dir=None, *, model: nn.Module | None = None,
          train_set=None, val_set=None, resume: bool = True, stop_at: int | None = None,
          device=None, progress: bool = True) -> TrainResult:
    """Train ``model`` (default: ``models.build_model(profile.model)``: EDVR, TDAN or FlowNet) as
    ``profile`` says.

    profile: a ``Profile``, a profile name, or None for ``DALIGN_PROFILE`` (default quick).
    out_dir: run folder for ``checkpoint.pt``, ``history.json`` and ``model.pt`` (default
        ``run_dir(profile)``).
    model, train_set, val_set: override what the profile builds; ``train_set`` yields dicts
        ``{"lq": (T,3,h,w), "gt": (3,4h,4w)[, "flow": (T,2,h,w)]}``, ``val_set`` is a sequence
        of such dicts (whole frames of held-out clips) or None.
    resume: continue from ``out_dir/checkpoint.pt`` if it exists (else start afresh and
        overwrite it); the profile may differ from the checkpoint's in its schedule only.
    stop_at: stop after this iteration with a checkpoint, as an interruption would; the
        schedule still runs to ``total_iter`` when resumed.
    device: default CUDA (``cuda:LOCAL_RANK`` under torchrun) if available, else CPU.

    Returns a ``TrainResult``; its ``status`` says whether the run finished.
    """
    profile = get_profile(profile) if profile is None or isinstance(profile, str) else profile
    out_dir = Path(out_dir) if out_dir is not None else run_dir(profile)
    run = _Run(profile, out_dir, model, train_set, val_set, device, progress)
    if resume and (out_dir / CHECKPOINT).exists():
        run.restore(load_checkpoint(out_dir / CHECKPOINT, "cpu"))  # RNG states must stay on the CPU
    else:
        run.event("start")
    status = _loop(run, stop_at)
    run.history["status"] = status
    if run.dist.main:
        write_json(out_dir / HISTORY, run.history)
        if status == "done":
            params = {k: v.detach().cpu() for k, v in run.model.state_dict().items()}
            save_checkpoint(out_dir / WEIGHTS, {"params": params})
    run.dist.close()
    run.model.eval()
    return TrainResult(run.model, run.history, out_dir, status)


def _loader(run: _Run, stop: int) -> DataLoader:
    sampler = BatchKeys(run.iteration, stop, run.p.data.batch_size, run.dist.rank, run.dist.world)
    return DataLoader(KeyedSamples(run.train_set, run.cfg.seed), batch_sampler=sampler,
                      num_workers=run.p.data.num_workers, pin_memory=run.device.type == "cuda")


def _loop(run: _Run, stop_at: int | None) -> str:
    total = run.cfg.total_iter
    stop = total if stop_at is None else min(stop_at, total)
    if run.iteration >= stop:
        return "done" if run.iteration >= total else "stopped"
    bar = tqdm(total=total, initial=run.iteration, desc=f"train {run.p.name}", unit="it",
               dynamic_ncols=True, disable=not run.progress)
    run.model.train()
    t0, status = time.perf_counter(), "done"
    try:
        with StopRequests() as stops:
            for it, batch in zip(range(run.iteration, stop), _loader(run, stop)):
                status = _iteration(run, it, batch, stop, stops, bar, t0)
                if status:
                    break
    except BaseException as exc:
        run.crashed(exc)
        raise
    finally:
        bar.close()
    return status


def _iteration(run: _Run, it: int, batch, stop: int, stops: StopRequests, bar, t0: float) -> str | None:
    """Iteration ``it + 1``: a step, then logging, validation, checkpoint as due. Returns how
    the run ends if it ends here, else None."""
    cfg, n = run.cfg, it + 1
    run.set_stage(it)
    lr = run.optimizer.param_groups[0]["lr"]
    run.consistent = False
    run.step(batch)
    run.iteration = run.history["iteration"] = n
    run.consistent = True
    bar.update(1)
    if n % cfg.log_every == 0 or n == stop:
        run.log(n, lr, t0, bar)
    if n % cfg.val_every == 0 or n == cfg.total_iter:
        run.validate(n, bar)
    halt = n < cfg.total_iter and _stop_requested(run, n, stops)
    status = None
    if halt:
        status = stops.signal_name or "SIGTERM"  # another rank's signal
        run.event("interrupted", signal=status)
    elif n == stop:
        status = "done" if n == cfg.total_iter else "stopped"
        run.event(status)
    if status or n % cfg.ckpt_every == 0:
        run.save()
    if halt:
        bar.write(f"{status}: stopped after iteration {n}; checkpoint saved, train again to resume")
    return status


def _stop_requested(run: _Run, n: int, stops: StopRequests) -> bool:
    """A signal asked to stop (on any rank). One process reads its own flag every iteration;
    under DDP the ranks agree by an all-reduce only every ``STOP_CHECK_EVERY`` iterations and
    at log points, so that no iteration waits on a host sync."""
    if run.dist.enabled and n % STOP_CHECK_EVERY and n % run.cfg.log_every:
        return False
    return run.dist.any(stops.signal_name is not None, run.device)
