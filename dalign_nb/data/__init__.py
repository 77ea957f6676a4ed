"""Data for video super-resolution (Sec. A.1 of the paper).

* ``video``: the bundled real clips (decoded with OpenCV, cut into shots, a fixed split),
  any video file;
* ``degrade``: MATLAB-compatible bicubic ``imresize`` (BI) and blur + decimation (BD);
* ``synthetic``: scenes with exact flow and occlusion masks;
* ``clips``: image-folder datasets (REDS, Vimeo-90K, Vid4) and the other clip sources;
* ``patches``: the training ``PatchDataset``, the held-out ``validation_clips`` and
  ``validation_samples``.
"""

from .clips import (
    REDS4,
    ArrayClip,
    DatasetNotFoundError,
    FolderClip,
    SceneClip,
    bundled_clips,
    reds_clips,
    synthetic_clips,
    vid4_clips,
    video_clips,
    vimeo_clips,
)
from .degrade import DEGRADATIONS, bd_degrade, bi_degrade, cubic, degrade, imresize, resize_weights
from .patches import PatchDataset, ValClip, augment, get_clips, validation_clips, validation_samples
from .synthetic import Layer, Scene, SceneConfig, flow_to_lr, render_layers, synthetic_scene
from .video import (
    BUNDLED_CLIPS,
    SPLIT,
    Shot,
    VideoError,
    bundled_path,
    bundled_shots,
    detect_shots,
    load_bundled,
    read_video,
)

__all__ = [
    "BUNDLED_CLIPS",
    "REDS4",
    "SPLIT",
    "ArrayClip",
    "DatasetNotFoundError",
    "FolderClip",
    "Layer",
    "PatchDataset",
    "Scene",
    "SceneClip",
    "SceneConfig",
    "Shot",
    "ValClip",
    "VideoError",
    "augment",
    "DEGRADATIONS",
    "bd_degrade",
    "bi_degrade",
    "bundled_clips",
    "bundled_path",
    "bundled_shots",
    "cubic",
    "degrade",
    "detect_shots",
    "flow_to_lr",
    "get_clips",
    "imresize",
    "load_bundled",
    "read_video",
    "reds_clips",
    "render_layers",
    "resize_weights",
    "synthetic_clips",
    "synthetic_scene",
    "validation_clips",
    "validation_samples",
    "vid4_clips",
    "video_clips",
    "vimeo_clips",
]
