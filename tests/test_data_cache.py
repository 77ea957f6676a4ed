"""The decoded-clip cache when several processes fill it at once (DDP ranks, parallel runs).

Two training processes once shared one temporary file name and one of them read a cache file
the other was still writing; each writer now has its own temporary file. The exact
interleaving is too narrow to reproduce reliably here: this checks the outcome.
"""

import multiprocessing as mp

import numpy as np

from dalign_nb.data import video


def _fill(path, seed):
    arr = np.full((512, 256, 256), seed % 7, dtype=np.uint8)  # 32 MB: writes overlap
    out = video._cached(path, lambda: arr)
    return int(out.shape[0]), int(out.size)


def test_concurrent_writers_never_expose_a_partial_file(tmp_path):
    path = tmp_path / "cache" / "clip.npy"
    with mp.get_context("fork").Pool(4) as pool:
        results = pool.starmap(_fill, [(path, s) for s in range(8)])
    assert results == [(512, 512 * 256 * 256)] * 8
    assert np.load(path).shape == (512, 256, 256)
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.npy"]  # no temporary files left
