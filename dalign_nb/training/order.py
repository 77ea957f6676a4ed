"""The data order: sample ``n`` of the run is a function of (seed, n) alone.

That is what makes resuming exact (nothing about the order needs saving) and DDP ranks
disjoint (each takes its own share of every global batch).
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["BatchKeys", "KeyedSamples", "sample_seed", "seeded"]


def sample_seed(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


@contextlib.contextmanager
def seeded(seed: int):
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


class KeyedSamples(Dataset):
    """Sample number ``n`` (counted over the whole run) -> a training sample.

    Epoch ``n // len(base)`` visits the base dataset in a permutation drawn from (seed,
    epoch); the sample's own randomness (crop, flips) is drawn with the RNGs seeded from
    (seed, n).
    """

    def __init__(self, base, seed: int):
        self.base, self.seed, self._perm = base, seed, (None, None)

    def __len__(self) -> int:
        return len(self.base)

    def _index(self, n: int) -> int:
        epoch, pos = divmod(n, len(self.base))
        if self._perm[0] != epoch:
            g = torch.Generator().manual_seed(sample_seed(self.seed, 0, epoch))
            self._perm = (epoch, torch.randperm(len(self.base), generator=g).tolist())
        return self._perm[1][pos]

    def __getitem__(self, n: int):
        index = self._index(n)
        if hasattr(self.base, "set_epoch"):  # PatchDataset draws item i from (seed, epoch, i)
            self.base.set_epoch(n // len(self.base))
        with seeded(sample_seed(self.seed, 1, n)):
            return self.base[index]


class BatchKeys(Sampler):
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
