"""Checkpoints and the RNG states they carry, written atomically (``dalign_nb.io.atomic_write``)."""

from __future__ import annotations

import random

import numpy as np
import torch

from ..io import atomic_write

__all__ = ["load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]


def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` (tensors and plain Python containers only) atomically."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``."""
    return torch.load(path, map_location=map_location, weights_only=True)


def rng_state() -> dict:
    """The torch (CPU and CUDA), numpy and python RNG states, as ``weights_only`` can load them."""
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


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    s = state["numpy"]
    np.random.set_state({"bit_generator": s["bit_generator"], "has_gauss": s["has_gauss"],
                         "gauss": s["gauss"],
                         "state": {"key": s["key"].numpy().astype(np.uint32), "pos": s["pos"]}})
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
