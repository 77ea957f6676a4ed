"""Clip sources: bundled shots, synthetic scenes, image folders (REDS, Vimeo-90K, Vid4), video files.

A clip is anything with a ``name``, a length, ``lr_size()``, ``hr(i)`` / ``lr(i)`` frames
(RGB ``HxWx3``, uint8 or float32 in [0, 1]) and ``has_flow``: True for synthetic scenes,
whose exact LR ``flows`` from the centre frame come with them. The patch dataset and the
validation helpers only use that interface.

Image-folder layouts are the ones the datasets ship in (Sec. A.1 of the paper):

* REDS (Nah et al. 2019): ``<root>/train_sharp/<clip>/<frame>.png`` and, optionally,
  ``<root>/train_sharp_bicubic/X4/<clip>/<frame>.png``; REDS4 = clips 000, 011, 015, 020
  is the test set, every other clip is training data (EDVR's split).
* Vimeo-90K septuplets (Xue et al. 2019): ``<root>/sequences/<a>/<b>/im1.png .. im7.png``
  with ``<root>/sep_trainlist.txt`` and ``<root>/sep_testlist.txt`` (lines ``<a>/<b>``).
* Vid4: ``<root>/GT/<clip>/*.png`` and, optionally, ``<root>/BIx4/<clip>/*.png``.

Where an LR folder is missing, LR frames are made with BI (``bi_degrade``) on the fly.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .degrade import bi_degrade, degrade
from .synthetic import SceneConfig, synthetic_scene
from .video import bundled_shots, load_bundled, read_video

__all__ = [
    "REDS4",
    "ArrayClip",
    "DatasetNotFoundError",
    "FolderClip",
    "SceneClip",
    "bundled_clips",
    "reds_clips",
    "synthetic_clips",
    "vid4_clips",
    "video_clips",
    "vimeo_clips",
]

REDS4 = ("000", "011", "015", "020")
DATA_DIR = Path(__file__).resolve().parents[2] / "data"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder that is missing or not in the expected layout."""


@dataclass(frozen=True)
class ArrayClip:
    """Frames held in arrays (or memory maps): hr ``(T, H, W, 3)``, lr ``(T, H/s, W/s, 3)``."""

    name: str
    hr_frames: np.ndarray
    lr_frames: np.ndarray
    flows: np.ndarray | None = None  # (T, H/s, W/s, 2) LR flow from the centre frame, if exact

    @property
    def has_flow(self) -> bool:
        return self.flows is not None

    def __len__(self) -> int:
        return len(self.hr_frames)

    def lr_size(self) -> tuple[int, int]:
        return tuple(self.lr_frames.shape[1:3])

    def hr(self, i: int) -> np.ndarray:
        return self.hr_frames[i]

    def lr(self, i: int) -> np.ndarray:
        return self.lr_frames[i]

    def degraded(self, degradation: str, scale: int = 4) -> ArrayClip:
        """The same clip with LR frames made again from its HR frames (``data.degrade``): a clip
        stored as BI read as BD. ``"bi"`` returns the clip itself; ``degrade`` refuses other names.
        Noise (``"bi+n10"``) is drawn per frame from the clip's name and the frame's index."""
        if degradation == "bi":
            return self
        key = zlib.crc32(self.name.encode())
        lr = np.stack([degrade(np.asarray(f), degradation, scale, [key, i])
                       for i, f in enumerate(self.hr_frames)])
        return ArrayClip(self.name, self.hr_frames, lr, self.flows)


class SceneClip:
    """A synthetic scene rendered on first use; its ``flows`` are exact (``synthetic_scene``)."""

    has_flow = True

    def __init__(self, name: str, config: SceneConfig, seed: int, texture_split: str = "train",
                 degradation: str = "bi"):
        self.name, self.config, self.seed = name, config, seed
        self.texture_split, self.degradation = texture_split, degradation

    @functools.cached_property
    def _arrays(self):
        hr = synthetic_scene(self.config, self.seed, texture_split=self.texture_split)
        lr = hr.lr(self.degradation, noise_seed=self.seed)
        return hr.frames, lr.frames, lr.flows, lr.occlusion

    @property
    def flows(self) -> np.ndarray:
        return self._arrays[2]  # (T, h, w, 2)

    @property
    def occlusion(self) -> np.ndarray:
        return self._arrays[3]  # (T, h, w)

    def __len__(self) -> int:
        return self.config.num_frames

    def lr_size(self) -> tuple[int, int]:
        return self.config.height // self.config.scale, self.config.width // self.config.scale

    def hr(self, i: int) -> np.ndarray:
        return self._arrays[0][i]

    def lr(self, i: int) -> np.ndarray:
        return self._arrays[1][i]


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, read from its header."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except (FileNotFoundError, UnidentifiedImageError) as exc:
        raise DatasetNotFoundError(f"cannot read image {path} (missing or not an image file)") from exc
    return h, w


def _imread(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetNotFoundError(f"cannot read image {path} (missing or not an image file)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class FolderClip:
    """Frames read from image files on demand; LR by BI when ``lr_paths`` is None."""

    name: str
    hr_paths: tuple[Path, ...]
    lr_paths: tuple[Path, ...] | None = None
    flows = None
    has_flow = False

    def __len__(self) -> int:
        return len(self.hr_paths)

    @functools.cached_property
    def _lr_size(self) -> tuple[int, int]:
        """From the first frame's file header only (no decoding, no resizing)."""
        if self.lr_paths:
            return _image_size(self.lr_paths[0])
        h, w = _image_size(self.hr_paths[0])
        return math.ceil(h / 4), math.ceil(w / 4)  # BI's output size, as imresize's ceil

    def lr_size(self) -> tuple[int, int]:
        return self._lr_size

    def hr(self, i: int) -> np.ndarray:
        return _imread(self.hr_paths[i])

    def lr(self, i: int) -> np.ndarray:
        return _imread(self.lr_paths[i]) if self.lr_paths else bi_degrade(self.hr(i))


def bundled_clips(split: str = "train", names=("bikes", "bigbuckbunny", "carphone")) -> list[ArrayClip]:
    """One ``ArrayClip`` per shot of the bundled clips in ``split`` (``video.SPLIT``)."""
    clips = []
    for shot in bundled_shots(split, names):
        hr, lr = load_bundled(shot.clip), load_bundled(shot.clip, lr=True)
        clips.append(ArrayClip(f"{shot.clip}/shot{shot.index}", hr[shot.start : shot.stop],
                               lr[shot.start : shot.stop]))
    return clips


def synthetic_clips(num_scenes: int, config: SceneConfig | None = None, seed: int = 0,
                    split: str = "train", degradation: str = "bi") -> list[SceneClip]:
    """``num_scenes`` synthetic scenes; ``split="test"`` cuts textures from held-out shots
    and uses seeds disjoint from any training seed below 10**6."""
    config = config or SceneConfig()
    offset = 10**6 if split == "test" else 0
    return [SceneClip(f"synthetic/{split}{i}", config, offset + seed * 10**4 + i, split, degradation)
            for i in range(num_scenes)]


def video_clips(path, name: str | None = None, min_frames: int = 1) -> list[ArrayClip]:
    """A user's video file as one clip per shot, LR by BI (frames cropped to a multiple of 4)."""
    frames = read_video(path, min_frames=min_frames)
    h, w = (frames.shape[1] // 4) * 4, (frames.shape[2] // 4) * 4
    frames = np.ascontiguousarray(frames[:, :h, :w])
    lr = np.stack([bi_degrade(f) for f in frames])
    from .video import detect_shots

    name = name or Path(path).stem
    shots = detect_shots(frames)
    return [ArrayClip(f"{name}/shot{i}", frames[a:b], lr[a:b]) for i, (a, b) in enumerate(shots)]


def _require(path: Path, what: str, dataset: str, layout: str) -> Path:
    if not path.exists():
        raise DatasetNotFoundError(f"{dataset}: expected {what} at {path}, but it does not exist. "
                                   f"Expected layout: {layout}")
    return path


def _pngs(folder: Path, dataset: str, layout: str) -> tuple[Path, ...]:
    files = tuple(sorted(folder.glob("*.png")))
    if not files:
        raise DatasetNotFoundError(f"{dataset}: no .png frames in {folder}. Expected layout: {layout}")
    return files


def reds_clips(root=None, split: str = "train") -> list[FolderClip]:
    """REDS clips (default root ``data/REDS``); ``split="test"`` is REDS4, "train" the rest."""
    layout = "<root>/train_sharp/<clip>/00000000.png ... [+ <root>/train_sharp_bicubic/X4/<clip>/*.png]"
    root = Path(root) if root else DATA_DIR / "REDS"
    gt_dir = _require(root / "train_sharp", "the folder train_sharp/", "REDS", layout)
    lr_dir = root / "train_sharp_bicubic" / "X4"
    names = sorted(p.name for p in gt_dir.iterdir() if p.is_dir())
    names = [n for n in names if (n in REDS4) == (split == "test")]
    if not names:
        raise DatasetNotFoundError(f"REDS: no {split} clip folders in {gt_dir}. Expected layout: {layout}")
    clips = []
    for n in names:
        lr = _pngs(lr_dir / n, "REDS", layout) if lr_dir.exists() else None
        clips.append(FolderClip(f"REDS/{n}", _pngs(gt_dir / n, "REDS", layout), lr))
    return clips


def vimeo_clips(root=None, split: str = "train") -> list[FolderClip]:
    """Vimeo-90K septuplets (default root ``data/vimeo90k``) listed in ``sep_{split}list.txt``."""
    layout = "<root>/sequences/<a>/<b>/im1.png .. im7.png, <root>/sep_trainlist.txt, <root>/sep_testlist.txt"
    root = Path(root) if root else DATA_DIR / "vimeo90k"
    seq = _require(root / "sequences", "the folder sequences/", "Vimeo-90K", layout)
    listing = _require(root / f"sep_{split}list.txt", f"the list sep_{split}list.txt", "Vimeo-90K", layout)
    keys = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    if not keys:
        raise DatasetNotFoundError(f"Vimeo-90K: {listing} lists no sequences. Expected layout: {layout}")
    _require(seq / keys[0] / "im7.png", f"the frames of {keys[0]} (from {listing.name})", "Vimeo-90K", layout)
    return [FolderClip(f"vimeo/{k}", tuple(seq / k / f"im{i}.png" for i in range(1, 8))) for k in keys]


def vid4_clips(root=None) -> list[FolderClip]:
    """Vid4 clips (default root ``data/Vid4``): ``GT/<clip>/*.png`` [+ ``BIx4/<clip>/*.png``]."""
    layout = "<root>/GT/<clip>/*.png [+ <root>/BIx4/<clip>/*.png]"
    root = Path(root) if root else DATA_DIR / "Vid4"
    gt_dir = _require(root / "GT", "the folder GT/", "Vid4", layout)
    names = sorted(p.name for p in gt_dir.iterdir() if p.is_dir())
    if not names:
        raise DatasetNotFoundError(f"Vid4: no clip folders in {gt_dir}. Expected layout: {layout}")
    lr_dir = root / "BIx4"
    return [FolderClip(f"Vid4/{n}", _pngs(gt_dir / n, "Vid4", layout),
                       _pngs(lr_dir / n, "Vid4", layout) if lr_dir.exists() else None) for n in names]
