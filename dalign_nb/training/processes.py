"""Processes and devices: the DDP process group ``torchrun`` describes, and stop requests."""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["Dist", "StopRequests", "cpu_bf16_support", "pick_device"]


@dataclass
class Dist:
    """This process's place in a DDP run (one process: rank 0 of 1)."""

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
    def setup(cls) -> Dist:
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
        """True on every rank if ``flag`` is true on any (an all-reduce: a host sync under DDP)."""
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

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.owned:
            dist.destroy_process_group()


def pick_device(ctx: Dist, device=None) -> torch.device:
    """``device`` if given, else this rank's CUDA device if there is one, else the CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", ctx.local_rank)
    return torch.device("cpu")


class StopRequests:
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


def cpu_bf16_support() -> tuple[bool, str]:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), and why not if not.

    oneDNN's own test (``torch.ops.mkldnn._is_mkldnn_bf16_supported``). Without such units
    bfloat16 convolutions are emulated and slower than float32, so the trainer's CPU autocast
    (``TrainConfig.cpu_amp``) falls back to float32 there and records why.
    """
    if not torch.backends.mkldnn.is_available():
        return False, "this torch build has no oneDNN (mkldnn)"
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError) as exc:  # a private op: absent from some builds
        return False, f"oneDNN's bfloat16 check is unavailable ({type(exc).__name__})"
    if not native:
        return False, ("the CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX); "
                       f"torch reports capability {torch.backends.cpu.get_cpu_capability()}")
    return True, "native bfloat16 (oneDNN)"
