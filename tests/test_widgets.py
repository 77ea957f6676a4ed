"""The viewers of dalign_nb.widgets: numbers against hand computations, clicks, selective redraws."""

import base64
import io
import time

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from dalign_nb.alignment import AlignmentConfig
from dalign_nb.data import SceneConfig, synthetic_clips
from dalign_nb.metrics import bilinear_base
from dalign_nb.models.edvr import build_edvr
from dalign_nb.widgets import (
    AlignedFeatureViewer,
    DCNPlayground,
    OffsetViewer,
    analyse_offsets,
    clip_frames,
    model_outputs,
)

# Known offsets (dy, dx) of every pixel, level and frame, and their mask logits: a model whose
# offset branches are constant (zero weights, these biases).
OFFSETS = np.array([[0.5, -1.0], [2.0, 1.5], [-1.0, 0.0]])
MASK_LOGITS = np.array([0.0, 2.0, -2.0])


@pytest.fixture(scope="module")
def scene():
    """A held-out synthetic scene, 32x32 LR, 5 frames, with exact flow and occlusion."""
    return synthetic_clips(1, SceneConfig(height=128, width=128, num_frames=5), seed=3, split="test")[0]


def constant_offset_model():
    torch.manual_seed(0)
    model = build_edvr("tiny", alignment=AlignmentConfig(kind="decomposed", num_offsets=3, modulated=True),
                       deformable_groups=1, num_frame=3)
    bias = torch.tensor([*OFFSETS.reshape(-1), *MASK_LOGITS], dtype=torch.float32)  # o1, o2 | mask
    for module in model.modules():
        if hasattr(module, "conv_offset"):
            torch.nn.init.zeros_(module.conv_offset.weight)
            module.conv_offset.bias.data.copy_(bias)
    return model


@pytest.fixture(scope="module")
def viewer(scene):
    return OffsetViewer(constant_offset_model(), scene, pixel=(13, 7))


def test_sampling_positions_and_distances(viewer, scene):
    """The viewer's arrows end at p + offset (level pixels scaled to LR), its bars are the l1 means."""
    starts, ends = viewer.sampling_positions()
    np.testing.assert_allclose(starts, [[13, 7]] * 3)
    np.testing.assert_allclose(ends, np.array([13, 7]) + OFFSETS, atol=1e-5)
    a = viewer.analysis()
    np.testing.assert_allclose(a.masks[:, 13, 7], 1 / (1 + np.exp(-MASK_LOGITS)), atol=1e-6)
    # the mean l1 distance of each offset to the exact flow over visible pixels, in numpy
    t = viewer.controls["frame"].value  # index in the 3-frame window around the scene's centre 2
    flow, occ = scene.flows[1 + t], scene.occlusion[1 + t]  # (h, w, 2) as (u, v), (h, w)
    dist = [np.abs(dx - flow[..., 0]) + np.abs(dy - flow[..., 1]) for dy, dx in OFFSETS]
    means = np.array([d[~occ].mean() for d in dist])
    assert a.order.tolist() == np.argsort(means, kind="stable").tolist()
    np.testing.assert_allclose(a.mean_distance, np.sort(means), rtol=1e-5)
    bars = [p.get_height() for p in viewer.panels["distance"].axes["ax"].patches]
    np.testing.assert_allclose(bars, np.sort(means), rtol=1e-5)
    # one level coarser: a level pixel covers 2x2 LR pixels and offsets count double
    viewer.select(level="l2")
    starts, ends = viewer.sampling_positions()
    np.testing.assert_allclose(starts, [[6.5 * 2 - 0.5, 3.5 * 2 - 0.5]] * 3)
    np.testing.assert_allclose(ends - starts, 2 * OFFSETS, atol=1e-5)
    viewer.select(level="l1")


def test_click_selects_the_pixel_under_it(viewer):
    """Where pixel (y, x) lies in the reference picture, worked out from the panel geometry."""
    panel = viewer.panels["reference"]
    width, height = panel.fig.bbox.width, panel.fig.bbox.height
    left, bottom, box_w, box_h = 0.03, 0.03, 0.94, 0.85  # the picture's box in figure fractions
    side = box_h * height  # a square 32x32 image fits the box's height and is centred in its width
    x0 = width * (left + box_w / 2) - side / 2
    y0 = height * (1 - bottom - box_h)
    for y, x in ((5, 20), (31, 0), (0, 31)):
        event = {"type": "click", "dataX": x0 + (x + 0.5) * side / 32, "dataY": y0 + (y + 0.5) * side / 32}
        viewer._on_click(event)
        assert viewer.pixel == (y, x)
        assert f"pixel (y, x) = ({y}, {x})" in viewer.readout.value
    n = len(viewer.redraw_seconds)
    viewer._on_click({"type": "click", "dataX": 1.0, "dataY": 1.0})  # outside the picture: ignored
    assert viewer.pixel == (0, 31) and len(viewer.redraw_seconds) == n


def _state(viewer):
    return {name: (p.renders, p.pixels.copy()) for name, p in viewer.panels.items()}


def _redrawn(before, viewer):
    return {name for name, p in viewer.panels.items() if p.renders > before[name][0]}


def _changed(before, viewer):
    return {name for name, p in viewer.panels.items() if not np.array_equal(before[name][1], p.pixels)}


def test_interactions_redraw_the_panels_they_change(viewer):
    viewer.select(y=16, x=16, rank=0, level="l1")
    before = _state(viewer)
    viewer._on_click(dict(zip(("dataX", "dataY"), viewer.click_position(9, 22))))
    assert viewer.pixel == (9, 22)
    assert _redrawn(before, viewer) == {"reference", "neighbour", "distance"}
    assert {"reference", "neighbour"} <= _changed(before, viewer) <= {"reference", "neighbour", "distance"}
    before = _state(viewer)
    viewer.select(rank=2)
    assert _redrawn(before, viewer) == _changed(before, viewer) == {"neighbour", "offset", "distance", "mask"}
    before = _state(viewer)
    viewer.select(frame=2)  # the other neighbour: its flow, occlusion, samples; not the reference
    assert _redrawn(before, viewer) == set(viewer.panels) - {"reference"}
    assert {"neighbour", "flow", "occlusion", "distance"} <= _changed(before, viewer)


def test_redraw_is_fast(viewer):
    """One interaction well under half a second (CPU time of the redraw: drawing is one thread)."""
    cpu = []
    for i in range(4):
        viewer._on_click(dict(zip(("dataX", "dataY"), viewer.click_position(4 + 5 * i, 30 - 6 * i))))
        cpu.append(viewer.redraw_seconds[-1][1])
    assert np.median(cpu) < 0.5, cpu


def test_static_picture_in_the_mime_bundle(viewer):
    bundle = viewer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    img = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    rows = [[p.pixels.shape for p in row] for row in viewer.rows]
    assert img.size == (max(sum(s[1] for s in r) for r in rows), sum(max(s[0] for s in r) for r in rows))
    assert bundle["text/plain"].startswith("OffsetViewer(decomposed, G=1, N=3")


@pytest.mark.parametrize("kind, groups, num_offsets", [
    ("dcn", 2, 9), ("decomposed", 2, 4), ("flow", 1, 1), ("image", 1, 1), ("flow_guided", 2, 9)])
def test_model_outputs_of_every_kind(scene, kind, groups, num_offsets):
    torch.manual_seed(0)
    align = AlignmentConfig(kind=kind, num_offsets=num_offsets if kind == "decomposed" else 1)
    model = build_edvr("tiny", alignment=align, deformable_groups=2, num_frame=3, zero_init_output=True)
    frames = clip_frames(scene, 3)
    out = model_outputs(model, frames)
    assert (out.deform_groups, out.num_offsets) == (groups, num_offsets)
    for level, side in (("l3", 8), ("l2", 16), ("l1", 32), ("cascade", 32)):
        assert out.offsets[level].shape == (3, groups, num_offsets, 2, side, side)
        assert out.aligned[level].shape == (3, 16, side, side)
        if kind != "flow_guided":  # zero-initialised offset branches
            assert float(out.offsets[level].abs().max()) == 0.0
    # an untrained EDVR (zero_init_output) returns its bilinear base
    torch.testing.assert_close(out.output, bilinear_base(frames.lr[1]).clamp(0, 1), atol=1e-6, rtol=0)
    if kind == "flow_guided":  # zero-initialised residual: the offsets are the exact flow itself
        a = analyse_offsets(out, frames, 0, "l1", 1)
        assert float(a.distance.max()) < 1e-5 and float(a.diversity.max()) < 1e-5
    viewer = OffsetViewer(model, scene, level="l2", group=groups - 1)
    assert viewer.panels["neighbour"].pixels is not None


def test_clip_frames_of_a_video_file(tmp_path):
    """A video file has no exact flow: DIS estimates it (here a known global shift) and the occlusion."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (128, 256, 3), dtype=np.uint8), (0, 0), 4)
    path = tmp_path / "shift.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 128))
    for k in range(7):  # 4 HR px = 1 LR px to the left per frame
        writer.write(texture[:, 4 * k : 4 * k + 128])
    writer.release()
    frames = clip_frames(path, 3)
    assert frames.flow_exact is None and not frames.occlusion_exact
    assert frames.lr.shape == (3, 3, 32, 32)
    u = frames.flow_est[2, 0, 8:24, 8:24]  # centre -> next frame: ref(p) = next(p + (-1, 0))
    assert abs(float(u.median()) + 1.0) < 0.25, float(u.median())
    # the centre frame's left column has left the next frame: occluded there, not in the middle
    assert float(frames.occlusion[2, :, 0].float().mean()) > 0.5
    assert float(frames.occlusion[2, 8:24, 8:24].float().mean()) < 0.1


def test_aligned_feature_viewer(scene):
    torch.manual_seed(0)
    models = {f"N = {n}": build_edvr("tiny", alignment=AlignmentConfig(kind="decomposed", num_offsets=n),
                                     deformable_groups=1, num_frame=3) for n in (1, 15)}
    viewer = AlignedFeatureViewer(models, scene, channel=5)
    frames = clip_frames(scene, 3)
    with torch.no_grad():
        ref = models["N = 15"].extract(frames.lr)[0][1, 5]  # (h, w): L1, centre frame, channel 5
    torch.testing.assert_close(viewer.maps("N = 15")["ref"], ref)
    before = viewer.panels["model1"].pixels.copy()
    viewer.select(channel=6)
    assert not np.array_equal(before, viewer.panels["model1"].pixels)
    viewer.select(mean=True, level="l3")
    with torch.no_grad():
        l3 = models["N = 1"].extract(frames.lr)[2]  # (T, C, 8, 8)
    maps = viewer.maps("N = 1")
    torch.testing.assert_close(maps["nbr"], l3[viewer.controls["frame"].value].abs().mean(0))
    torch.testing.assert_close(maps["ref"], l3[1].abs().mean(0))
    assert "correlation" in viewer.readout.value


def test_playground_matches_the_libraries():
    pg = DCNPlayground()
    rng = np.random.default_rng(0)
    pg.offsets[:] = np.round(rng.uniform(-2.5, 2.5, (9, 2)), 2)  # some samples fall outside the image
    pg.masks[:] = np.round(rng.uniform(0, 1, 9), 2)
    tap0 = (float(pg.offsets[0, 0]), float(pg.offsets[0, 1]), float(pg.masks[0]))
    by_hand = pg.contributions().sum()
    ops_y, tv_y = pg.library_outputs()
    assert abs(by_hand - ops_y) < 1e-10 and abs(by_hand - tv_y) < 1e-10
    # an integer offset samples one pixel exactly: tap 4 (p_k = 0) moved by (1, -2)
    pg.select(tap=4)
    pg.select(dy=1.0, dx=-2.0, mask=1.0)
    value, terms = pg.sample(*pg.positions()[4])
    assert value == pytest.approx(float(pg.x[5, 2])) and sum(t[2] for t in terms) == pytest.approx(1.0)
    # choosing a tap shows its own offset and mask again: tap 0 kept what it was given while
    # tap 4 moved, and tap 4 kept (1, -2)
    pg.select(tap=0)
    c = pg.controls
    assert (c["dy"].value, c["dx"].value, c["mask"].value) == pytest.approx(tap0, abs=1e-9)
    pg.select(tap=4)
    assert (c["dy"].value, c["dx"].value, c["mask"].value) == pytest.approx((1.0, -2.0, 1.0), abs=1e-9)


def test_benchmark_shape():
    """``python -m dalign_nb.bench widgets`` reports (wall, CPU) seconds per interaction."""
    from dalign_nb.widgets import _time_interactions

    torch.manual_seed(0)
    model = build_edvr("tiny", alignment=AlignmentConfig(kind="decomposed", num_offsets=2), num_frame=3)
    scene = synthetic_clips(1, SceneConfig(height=128, width=128, num_frames=3), seed=1, split="test")[0]
    viewer = OffsetViewer(model, scene)
    start = time.process_time()
    times = _time_interactions(viewer, 1)
    assert set(times) == {"click", "offset slider", "level", "neighbour"}
    assert all(len(v) == 2 and 0 < v[1] <= time.process_time() - start for v in times.values())


def test_the_decomposition_on_the_kernel_grid_samples_from_the_grid(scene):
    """A decomposed model on the kernel grid (Table 1) with zero offsets: the viewer's arrows start
    and end on the 3 x 3 grid around the pixel, as a DCN's."""
    torch.manual_seed(0)
    align = AlignmentConfig(kind="decomposed", num_offsets=9, kernel_size=3, grid=True, modulated=False)
    model = build_edvr("tiny", alignment=align, deformable_groups=1, num_frame=3)
    starts, ends = OffsetViewer(model, scene, pixel=(10, 20)).sampling_positions()
    grid = np.array([(10 + dy, 20 + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], dtype=float)
    np.testing.assert_allclose(starts, grid)
    np.testing.assert_allclose(ends, grid, atol=1e-6)  # zero-initialised offset branch


@pytest.mark.parametrize("family, num_offsets", [("tdan", 1), ("tdan", 9), ("flownet", 2)])
def test_model_outputs_and_viewers_of_table2_s_models(scene, family, num_offsets):
    """Table 2's TDAN-like and flow-based networks through the same numbers and viewers: their
    levels (TDAN: l1; the flow network: its SPyNet levels), offsets where a constant offset
    branch puts them, the flow network's N warped LR frames as its aligned 'features'."""
    from dalign_nb.models.flownet import build_flownet
    from dalign_nb.models.tdan import build_tdan

    torch.manual_seed(0)
    model = (build_tdan if family == "tdan" else build_flownet)("tiny", num_offsets=num_offsets)
    frames = clip_frames(scene, 3)
    out = model_outputs(model, frames)
    levels = ("l1",) if family == "tdan" else ("l2", "l1")
    assert out.levels == levels and out.feature_levels == ("l1",)
    assert (out.deform_groups, out.num_offsets) == (1, num_offsets)
    assert out.offsets["l1"].shape == (3, 1, num_offsets, 2, 32, 32)
    channels = 3 * num_offsets if family == "flownet" else model.config.num_feat
    assert out.aligned["l1"].shape == (3, channels, 32, 32)
    assert out.kind == ("flow-based" if family == "flownet" else "decomposed")
    assert out.kernel_size == (3 if num_offsets == 9 else None)
    # the untrained models (zero flows / zero-initialised output) return their bilinear base
    torch.testing.assert_close(out.output, bilinear_base(frames.lr[1]).clamp(0, 1), atol=1e-6, rtol=0)
    if family == "flownet":  # every flow starts at zero: the warped frames are the frames
        torch.testing.assert_close(out.aligned["l1"][:, :3], frames.lr, atol=1e-6, rtol=0)
        assert float(out.offsets["l2"].abs().max()) == 0.0
    with pytest.raises(ValueError, match="level must be one of the model's"):
        analyse_offsets(out, frames, 0, "l3")
    with pytest.raises(ValueError, match="level must be one of the model's"):
        OffsetViewer(model, scene, level="cascade")
    viewer = OffsetViewer(model, scene)
    assert [v for _, v in viewer.controls["level"].options] == list(levels)
    assert repr(viewer).startswith(f"OffsetViewer({out.kind}, G=1, N={num_offsets}")
    features = AlignedFeatureViewer({"model": model}, scene)
    assert set(features.maps("model")) == {"ref", "nbr", "aligned"}
