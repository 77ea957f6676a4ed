"""Synthetic scenes: exact flow, exact occlusion masks, augmentations that keep them consistent."""

import itertools

import numpy as np
import pytest
import torch

from dalign_nb.data import Layer, SceneConfig, augment, render_layers, synthetic_scene
from dalign_nb.ops import flow_warp

RNG = np.random.default_rng(0)
NOISE = [RNG.integers(0, 256, (300, 300, 3), dtype=np.uint8) for _ in range(3)]  # texture source


def tensors(scene):
    frames = torch.from_numpy(scene.frames).permute(0, 3, 1, 2)  # (T, 3, H, W)
    flows = torch.from_numpy(scene.flows).permute(0, 3, 1, 2)  # (T, 2, H, W)
    return frames, flows, torch.from_numpy(scene.occlusion)


def warp_errors(frames, flows, centre):
    """Per-pixel mean abs error (T, H, W) of warping every frame to the centre frame."""
    return (flow_warp(frames, flows) - centre[None]).abs().mean(1)


@pytest.fixture(scope="module")
def scene():
    config = SceneConfig(height=96, width=128, num_frames=7, num_sprites=4)
    return synthetic_scene(config, seed=3, textures=NOISE)


def test_warp_with_true_flow_reproduces_centre_on_visible_pixels(scene):
    frames, flows, occ = tensors(scene)
    err = warp_errors(frames, flows, frames[scene.center])
    for k in range(len(frames)):
        visible = ~occ[k]
        assert err[k][visible].mean() < 1e-3
        if k != scene.center:
            assert 0.02 < occ[k].float().mean() < 0.9  # sprites and borders occlude something
            assert err[k][occ[k]].mean() > 0.05  # and there the warp really is wrong
    assert not occ[scene.center].any() and (flows[scene.center] == 0).all()


def test_global_motion_is_2_to_6_lr_pixels_per_frame(scene):
    bg = scene.labels[scene.center] == 0
    speed = np.linalg.norm(scene.flows[scene.center + 1][bg], axis=-1) / scene.scale  # LR px / frame
    assert bg.any() and np.ptp(speed) == 0  # one rigid global motion
    assert 2 - 0.2 <= speed[0] <= 6 + 0.2  # within rounding to whole HR pixels


def test_lr_scene_is_consistent(scene):
    lr = scene.lr()
    assert lr.frames.shape == (7, 24, 32, 3) and lr.flows.shape == (7, 24, 32, 2)
    block_mean = scene.flows.reshape(7, 24, 4, 32, 4, 2).mean((2, 4))  # (T, 24, 32, 2)
    np.testing.assert_allclose(lr.flows, block_mean / 4, atol=1e-6)
    assert (lr.occlusion >= scene.occlusion[:, ::4, ::4]).all()  # a block is occluded if any pixel is


def rect(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_occlusion_is_exactly_where_sprites_cover_content():
    """Hand-made scene, T = 3, static background, positions (y, x) of top-left corners:
    A 8x8 at y=10 moves 5 px right per frame; B 10x10 static at (30, 30); C 6x6 on top of B
    at y=32 moves 4 px right; D 6x6 at (50, 56) moves 3 px right and leaves the 64x64 frame."""
    h = w = 64
    tex = [np.random.default_rng(i).random((s, s, 3)).astype(np.float32) for i, s in enumerate((8, 10, 6, 6))]
    steps = np.array([-1, 0, 1])
    a = Layer(tex[0], np.ones((8, 8), bool), np.stack([10 + 0 * steps, 10 + 5 * steps], 1))
    b = Layer(tex[1], np.ones((10, 10), bool), np.stack([30 + 0 * steps, 30 + 0 * steps], 1))
    c = Layer(tex[2], np.ones((6, 6), bool), np.stack([32 + 0 * steps, 26 + 4 * steps], 1))
    d = Layer(tex[3], np.ones((6, 6), bool), np.stack([50 + 0 * steps, 56 + 3 * steps], 1))
    background = np.random.default_rng(9).random((h, w, 3)).astype(np.float32)
    scene = render_layers(background, np.zeros((3, 2), int), [a, b, c, d], (h, w))
    # frame 2: background covered by A's new columns 18-22; B covered by C's columns 32-35
    # (30-31 were already under C); D's column 61 leaves the frame; background covered by D (62-63)
    expected2 = (rect(h, w, 10, 18, 18, 23) | rect(h, w, 32, 38, 32, 36) | rect(h, w, 50, 56, 61, 62)
                 | rect(h, w, 50, 56, 62, 64))
    # frame 0: background covered by A (columns 5-9) and by C (columns 22-25); D (columns 53-58)
    # covers background columns 53-55; B's columns under C in frame 0 are free, not occluded
    expected0 = rect(h, w, 10, 18, 5, 10) | rect(h, w, 32, 38, 22, 26) | rect(h, w, 50, 56, 53, 56)
    np.testing.assert_array_equal(scene.occlusion[2], expected2)
    np.testing.assert_array_equal(scene.occlusion[0], expected0)
    assert scene.occlusion[2].sum() == 40 + 24 + 6 + 12
    assert tuple(scene.flows[2, 12, 12]) == (5, 0) and tuple(scene.flows[2, 34, 28]) == (4, 0)
    assert tuple(scene.flows[0, 52, 57]) == (-3, 0) and tuple(scene.flows[2, 0, 0]) == (0, 0)
    frames, flows, occ = tensors(scene)
    err = warp_errors(frames, flows, frames[1])
    assert err[~occ].max() < 1e-6


@pytest.mark.parametrize("hflip,vflip,transpose,reverse", list(itertools.product([False, True], repeat=4)))
def test_augmentations_keep_frames_and_flows_consistent(scene, hflip, vflip, transpose, reverse):
    frames, flows, occ = tensors(scene)
    centre = frames[scene.center]
    flags = dict(hflip=hflip, vflip=vflip, transpose=transpose, reverse=reverse)
    lq, gt, flow, mask = augment(frames, centre, flows, occ, **flags)
    err = warp_errors(lq, flow, gt)
    assert err[~mask].mean() < 1e-3
    torch.testing.assert_close(lq[len(lq) // 2], gt)
    if hflip or vflip or transpose:  # moving the flow like an image, without sign / swap, would not do
        moved = augment(flows, flows[0], **flags)[0]
        assert warp_errors(lq, moved, gt)[~mask].mean() > 0.05
    elif reverse:  # nor would forgetting to reverse the flows
        assert warp_errors(lq, flows, gt)[~mask].mean() > 0.05


def test_scene_size_must_divide_by_scale():
    with pytest.raises(ValueError, match="divisible"):
        synthetic_scene(SceneConfig(height=30, width=32), textures=NOISE)
