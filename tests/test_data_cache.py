"""The decoded-clip cache when several processes fill it at once (DDP ranks, parallel runs).

Two training processes once shared one temporary file name: one finished writing and renamed
the file onto the cache path while the other had just reopened (truncated) it, and read back a
half-written cache file. The test below forces that interleaving with events: writer A writes
completely; writer B then starts its own write and stops half-way; A renames and reads the
cache; only then does B finish. With a temporary file per writer A reads a complete file.
"""

import multiprocessing as mp
import os

import numpy as np

from dalign_nb.data import video

SHAPE = (64, 128, 128)  # 1 MB


def _half_then_wait(events, role):
    """np.save that, for writer B, waits for A's write, writes half, and waits for A's read."""
    real = np.save

    def save(file, arr, *args, **kwargs):
        if role == "A":
            real(file, arr)
            return
        events["a_written"].wait(20)
        f = open(file, "wb") if isinstance(file, (str, os.PathLike)) else file
        data = arr.tobytes()
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(arr))
        f.write(data[: len(data) // 2])
        f.flush()
        events["b_half"].set()
        events["a_read"].wait(20)
        f.write(data[len(data) // 2 :])
        if f is not file:
            f.close()

    return save


def _fill(path, role, events, out):
    """One cache writer (a forked process): A writes, then renames only once B is half-way."""
    np.save = _half_then_wait(events, role)
    if role == "A":
        real_replace = os.replace

        def replace(src, dst):
            events["a_written"].set()
            events["b_half"].wait(20)
            real_replace(src, dst)

        os.replace = replace
    arr = np.full(SHAPE, 7, dtype=np.uint8)
    try:
        got = video._cached(path, lambda: arr)
        out[role] = bool(got.shape == SHAPE and (np.asarray(got) == 7).all())
    except Exception as exc:  # a torn file: np.load fails
        out[role] = f"{type(exc).__name__}: {exc}"
    finally:
        if role == "A":  # never leave B waiting
            events["a_written"].set()
            events["a_read"].set()


def test_concurrent_writers_never_expose_a_partial_file(tmp_path):
    path = tmp_path / "cache" / "clip.npy"
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager:
        events = {k: manager.Event() for k in ("a_written", "b_half", "a_read")}
        out = manager.dict()
        procs = [ctx.Process(target=_fill, args=(path, role, events, out)) for role in ("A", "B")]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert events["b_half"].is_set()  # the interleaving happened
        result = dict(out)
    assert result == {"A": True, "B": True}, result
    assert np.load(path).shape == SHAPE and (np.load(path) == 7).all()
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.npy"]  # no temporary files left


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "cache" / "clip.npy"

    def broken(f, arr):
        f.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken)
    arr = np.arange(6, dtype=np.uint8)
    out = video._cached(path, lambda: arr)  # falls back to memory, as for a read-only checkout
    assert np.array_equal(out, arr)
    assert list(path.parent.iterdir()) == []
