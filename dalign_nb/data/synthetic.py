"""Synthetic scenes with exact optical flow and occlusion masks.

The paper compares learned offsets with optical flow estimated by PWC-Net (Sec. 4.1,
Fig. 4-5), because real videos have no true flow. Here a scene is built so that its flow
is known exactly: a background texture moved by a global motion plus ``num_sprites``
textured sprites (ellipses and rectangles) that move independently and occlude each other
and the background. Textures are cut from real frames (the bundled clips by default).

Every layer is rigid and moves by whole pixels of the rendering (HR) grid per frame, so
the flow from the centre frame c to frame k at pixel p is exactly ``d_l(k) - d_l(c)``
for the layer l on top at p, and warping frame k with it gives back the centre frame
wherever p's content is still visible in frame k. The occlusion mask marks where it is
not: covered by another layer, or moved out of the picture. Motion of whole HR pixels is
a quarter of an LR pixel, so the LR frames still see sub-pixel motion.

Speeds are given in LR pixels per frame (by default a global motion of 2-6 LR px per frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .degrade import degrade

__all__ = ["Layer", "Scene", "SceneConfig", "flow_to_lr", "render_layers", "synthetic_scene"]


@dataclass(frozen=True)
class SceneConfig:
    """How a random synthetic scene is drawn; sizes are HR pixels, speeds LR pixels / frame."""

    height: int = 256  # HR frame height (LR: height / scale)
    width: int = 256
    num_frames: int = 7  # T; flows are from the centre frame T // 2
    num_sprites: int = 4
    global_speed: tuple[float, float] = (2.0, 6.0)  # background speed range, LR px / frame
    sprite_speed: tuple[float, float] = (1.0, 6.0)  # each sprite's own speed range
    sprite_size: tuple[float, float] = (0.15, 0.4)  # sprite side as a fraction of the frame side
    scale: int = 4


@dataclass(frozen=True)
class Layer:
    """A rigid layer: texture ``(h, w, 3)`` float, boolean mask ``(h, w)``, and its top-left
    corner in every frame, ``positions (T, 2)`` integer (y, x) in frame coordinates."""

    texture: np.ndarray
    mask: np.ndarray
    positions: np.ndarray


@dataclass(frozen=True)
class Scene:
    """A rendered scene at HR; ``lr()`` gives its LR version.

    frames (T, H, W, 3) float32 in [0, 1]; flows (T, H, W, 2) float32, the flow from the
    centre frame to each frame, (u, v) = (x, y) as OpenCV, zeros at the centre;
    occlusion (T, H, W) bool, True where the centre frame's content is not visible in
    frame k; labels (T, H, W) int, the layer on top (0 = background).
    """

    frames: np.ndarray
    flows: np.ndarray
    occlusion: np.ndarray
    labels: np.ndarray
    scale: int = 4
    center: int = field(default=0)

    def lr(self, degradation: str = "bi", noise_seed: int | None = None) -> Scene:
        """LR frames (BI or BD, with noise if the name says: ``data.degrade``; frame k's noise
        from the seed ``[noise_seed, k]``), flows at LR (``flow_to_lr``), occlusion of any HR
        pixel in the block.

        As image files are, frames are 8-bit before and after the degradation (so LR values
        stay in [0, 1]); HR frames cut from 8-bit textures are not changed by it.
        """
        s = self.scale
        t, h, w = self.occlusion.shape
        hr8 = np.round(np.clip(self.frames, 0, 1) * 255).astype(np.uint8)
        seeds = [None if noise_seed is None else [noise_seed, k] for k in range(t)]
        frames = np.stack([degrade(f, degradation, s, seed) for f, seed in zip(hr8, seeds)])
        frames = frames.astype(np.float32) / 255
        # frames: (T, H/s, W/s, 3)
        occ = self.occlusion.reshape(t, h // s, s, w // s, s).any(axis=(2, 4))  # (T, H/s, W/s)
        labels = self.labels[:, s // 2 :: s, s // 2 :: s]
        return Scene(frames, flow_to_lr(self.flows, s), occ, labels, s, self.center)


def flow_to_lr(flows: np.ndarray, scale: int = 4) -> np.ndarray:
    """HR flows ``(..., H, W, 2)`` to LR ``(..., H/s, W/s, 2)``: mean over each s x s block, / s.

    Exact inside a layer (rigid translation); at layer boundaries the block mixes layers.
    """
    *lead, h, w, _ = flows.shape
    blocks = flows.reshape(*lead, h // scale, scale, w // scale, scale, 2)
    return (blocks.mean(axis=(-4, -2)) / scale).astype(np.float32)


def render_layers(background: np.ndarray, bg_positions: np.ndarray, sprites: list[Layer],
                  size: tuple[int, int]) -> Scene:
    """Composite a background and sprites (painted in list order) into a ``Scene``.

    background (Hb, Wb, 3) float; frame k shows ``background[y - py_k, x - px_k]`` where
    ``bg_positions[k] = (py_k, px_k)`` (so the background must cover the frame at every
    position: ``-p_k`` in range and ``size - p_k <= (Hb, Wb)``).
    """
    h, w = size
    t = len(bg_positions)
    c = t // 2
    frames = np.zeros((t, h, w, 3), np.float32)
    labels = np.zeros((t, h, w), np.int64)
    for k in range(t):
        py, px = (int(v) for v in bg_positions[k])
        if py > 0 or px > 0 or h - py > background.shape[0] or w - px > background.shape[1]:
            raise ValueError(f"background {background.shape[:2]} does not cover the frame at "
                             f"position {(py, px)}")
        frames[k] = background[-py : h - py, -px : w - px]
        for j, layer in enumerate(sprites, start=1):
            _paste(frames[k], labels[k], layer, k, j)
    positions = [np.asarray(bg_positions)] + [np.asarray(s.positions) for s in sprites]
    disp = np.stack(positions).astype(np.float32)  # (L, T, 2) as (y, x)
    flows = np.zeros((t, h, w, 2), np.float32)
    occlusion = np.zeros((t, h, w), bool)
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(t):
        d = disp[:, k] - disp[:, c]  # (L, 2): displacement of each layer from frame c to k
        flows[k] = d[labels[c]][..., ::-1]  # (H, W, 2) as (u, v)
        qy, qx = yy + d[labels[c], 0].astype(int), xx + d[labels[c], 1].astype(int)
        inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        seen = np.zeros((h, w), bool)
        seen[inside] = labels[k][qy[inside], qx[inside]] == labels[c][inside]
        occlusion[k] = ~seen
    return Scene(frames, flows, occlusion, labels, center=c)


def _paste(frame, labels, layer: Layer, k: int, label: int) -> None:
    """Paint ``layer`` at its frame-k position, clipped to the frame."""
    h, w = labels.shape
    sh, sw = layer.mask.shape
    y0, x0 = (int(v) for v in layer.positions[k])
    fy0, fx0, fy1, fx1 = max(y0, 0), max(x0, 0), min(y0 + sh, h), min(x0 + sw, w)
    if fy0 >= fy1 or fx0 >= fx1:
        return
    m = layer.mask[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    frame[fy0:fy1, fx0:fx1][m] = layer.texture[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0][m]
    labels[fy0:fy1, fx0:fx1][m] = label


def _crop(rng, textures: np.ndarray, h: int, w: int) -> np.ndarray:
    """A random ``h x w`` crop of a random texture frame, mirrored where the frame is smaller."""
    img = textures[rng.integers(len(textures))]
    ph, pw = max(0, h - img.shape[0]), max(0, w - img.shape[1])
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
    y, x = rng.integers(img.shape[0] - h + 1), rng.integers(img.shape[1] - w + 1)
    return np.asarray(img[y : y + h, x : x + w], np.float32) / 255.0


def _track(rng, speed_range, t: int, scale: int) -> np.ndarray:
    """Integer HR displacements ``(T, 2)`` of a constant velocity drawn in LR px / frame."""
    speed = rng.uniform(*speed_range) * scale
    angle = rng.uniform(0, 2 * np.pi)
    steps = np.arange(t) - t // 2
    return np.round(steps[:, None] * speed * np.array([np.sin(angle), np.cos(angle)])).astype(np.int64)


def _sprite_mask(rng, h: int, w: int) -> np.ndarray:
    if rng.random() < 0.5:
        return np.ones((h, w), bool)
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy + 0.5 - h / 2) / (h / 2)) ** 2 + ((xx + 0.5 - w / 2) / (w / 2)) ** 2 <= 1


def synthetic_scene(config: SceneConfig = SceneConfig(), seed: int = 0, textures=None,
                    texture_split: str = "train") -> Scene:
    """A random scene (HR ``Scene``; call ``.lr()`` for the LR frames and flows).

    textures: a sequence of uint8 RGB frames ``(H, W, 3)`` to cut textures from; default: the frames of
    the bundled clips' ``texture_split`` shots, so that validation scenes can be drawn from
    held-out footage.
    """
    if config.height % config.scale or config.width % config.scale:
        raise ValueError(f"scene size {(config.height, config.width)} must be divisible by "
                         f"scale {config.scale}")
    if textures is None:
        textures = _bundled_textures(texture_split)
    rng = np.random.default_rng(seed)
    h, w, t, s = config.height, config.width, config.num_frames, config.scale
    bg_track = _track(rng, config.global_speed, t, s)  # (T, 2)
    margin = np.abs(bg_track).max(axis=0)
    background = _crop(rng, textures, h + 2 * margin[0], w + 2 * margin[1])
    bg_positions = bg_track - margin  # frame k shows background[y + margin - track]
    sprites = []
    for _ in range(config.num_sprites):
        sh, sw = (int(rng.uniform(*config.sprite_size) * side) for side in (h, w))
        start = np.array([rng.integers(-sh // 2, h - sh // 2), rng.integers(-sw // 2, w - sw // 2)])
        track = bg_track + _track(rng, config.sprite_speed, t, s) + start
        sprites.append(Layer(_crop(rng, textures, sh, sw), _sprite_mask(rng, sh, sw), track))
    scene = render_layers(background, bg_positions, sprites, (h, w))
    return Scene(scene.frames, scene.flows, scene.occlusion, scene.labels, s, scene.center)


def _bundled_textures(split: str) -> list[np.ndarray]:
    from .video import bundled_shots, load_bundled

    return [f for shot in bundled_shots(split) for f in load_bundled(shot.clip)[shot.start : shot.stop : 10]]
