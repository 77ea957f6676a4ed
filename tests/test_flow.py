"""Optical flow helpers: .flo files (Middlebury format), colour wheel, EPE, OpenCV estimators."""

import struct

import cv2
import numpy as np
import pytest
import torch

from dalign_nb.flow import FlowFileError, end_point_error, estimate_flow, flow_to_color, read_flo, write_flo
from dalign_nb.ops import flow_warp


def hand_flo_bytes(flow):
    """The Middlebury layout written out by hand: b"PIEH", width, height, then u, v per pixel."""
    h, w = flow.shape[:2]
    out = struct.pack("<f", 202021.25) + struct.pack("<ii", w, h)
    for y in range(h):
        for x in range(w):
            out += struct.pack("<ff", flow[y, x, 0], flow[y, x, 1])
    return out


def test_flo_round_trip_is_exact_and_byte_compatible(tmp_path):
    flow = np.random.default_rng(0).normal(0, 20, (5, 7, 2)).astype(np.float32)
    flow[0, 0] = [np.inf, -0.0]
    write_flo(tmp_path / "a.flo", flow)
    raw = (tmp_path / "a.flo").read_bytes()
    assert raw[:4] == b"PIEH" and raw == hand_flo_bytes(flow)
    back = read_flo(tmp_path / "a.flo")
    assert back.dtype == np.float32 and back.shape == (5, 7, 2)
    assert back.tobytes() == flow.tobytes()  # bit-exact, including inf and -0.0
    (tmp_path / "b.flo").write_bytes(hand_flo_bytes(flow))
    np.testing.assert_array_equal(read_flo(tmp_path / "b.flo"), flow)


def test_bad_flo_files_are_refused(tmp_path):
    flow = np.zeros((3, 4, 2), np.float32)
    good = hand_flo_bytes(flow)
    (tmp_path / "magic.flo").write_bytes(struct.pack("<f", 1.0) + good[4:])
    with pytest.raises(FlowFileError, match="bad magic number"):
        read_flo(tmp_path / "magic.flo")
    (tmp_path / "cut.flo").write_bytes(good[:-4])
    with pytest.raises(FlowFileError, match="expected 108 for a 4x3 flow"):
        read_flo(tmp_path / "cut.flo")
    (tmp_path / "header.flo").write_bytes(good[:6])
    with pytest.raises(FlowFileError, match="too short"):
        read_flo(tmp_path / "header.flo")
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        write_flo(tmp_path / "x.flo", np.zeros((3, 4)))


def test_end_point_error_by_hand():
    a = np.zeros((2, 3, 2))
    b = np.zeros((2, 3, 2))
    b[0, 0] = [3, 4]  # EPE 5 at one pixel of six
    assert end_point_error(a, b) == pytest.approx(5 / 6)
    assert end_point_error(a, b, mask=np.eye(2, 3, dtype=bool)) == pytest.approx(2.5)
    ta, tb = (torch.from_numpy(x).permute(2, 0, 1)[None] for x in (a, b))  # (1, 2, H, W)
    assert end_point_error(ta, tb) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="must both be"):
        end_point_error(a, b[:1])


def test_colour_wheel():
    flow = np.zeros((4, 4, 2), np.float32)
    flow[0, 0] = [1, 0]  # rightwards: the wheel's red end (Baker et al.)
    flow[0, 1] = [-1, 0]  # leftwards: cyan-ish
    img = flow_to_color(flow)
    assert img.dtype == np.uint8 and img.shape == (4, 4, 3)
    assert tuple(img[1, 1]) == (255, 255, 255)  # zero flow is white
    assert img[0, 0, 0] == 255 and img[0, 0, 1] < 10 and img[0, 0, 2] < 10
    assert img[0, 1, 0] < 10 and img[0, 1, 1] > 200 and img[0, 1, 2] > 200
    # a shared max_flow: the same vector is paler when the scale is larger
    same = flow_to_color(flow, max_flow=1.0)
    np.testing.assert_allclose(same.astype(int), img.astype(int), atol=1)
    paler = flow_to_color(flow, max_flow=4.0)
    assert paler[0, 0, 1] > img[0, 0, 1] + 100


def smooth_texture(h=96, w=96, seed=0):
    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


@pytest.mark.parametrize("method,preset", [("dis", "medium"), ("dis", "fast"), ("farneback", "medium")])
def test_estimators_follow_the_backward_warping_convention(method, preset):
    # other = ref with its content moved by (+3, -2): ref(p) = other(p + (3, -2)), so the flow is (3, -2)
    tex = smooth_texture()
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    ref = tex[10:74, 10:74]
    other = tex[12:76, 7:71]  # other(y, x) = ref(y + 2, x - 3), so ref(y, x) = other(y - 2, x + 3)
    flow = estimate_flow(ref, other, method=method, preset=preset)
    assert flow.shape == (64, 64, 2) and flow.dtype == np.float32
    inner = flow[12:-12, 12:-12]
    assert end_point_error(inner, np.broadcast_to(np.float32([3, -2]), inner.shape)) < 0.3
    as_batch = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]  # noqa: E731
    warped = flow_warp(as_batch(other), as_batch(flow))
    err = (warped[0].permute(1, 2, 0).numpy() - ref)[12:-12, 12:-12]
    assert np.abs(err).mean() < 0.02


def test_estimator_arguments_are_checked():
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="preset"):
        estimate_flow(img, img, preset="slow")
    with pytest.raises(ValueError, match="method"):
        estimate_flow(img, img, method="pwcnet")
    with pytest.raises(ValueError, match="same size"):
        estimate_flow(img, img[:8])
