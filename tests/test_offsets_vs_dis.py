"""The paper's own model beside DIS flow (Sec. 4.1, Fig. 1, 4, 5, 11): what notebooks 10 and 11
run with ``DALIGN_CHECKPOINT`` set, on checkpoints written in BasicSR's format from BasicSR's own
``EDVR`` (random weights, small sizes). Without BasicSR those tests skip; under ``CI=true`` they fail."""

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from basicsr_arch import require_basicsr_edvr

from dalign_nb.analysis import PCD_LEVELS, clip_window, offsets_vs_dis
from dalign_nb.data import ArrayClip, ValClip
from dalign_nb.flow import estimate_flows
from dalign_nb.metrics import share_within
from dalign_nb.models import (
    CHECKPOINT_ENV,
    GET_CHECKPOINT,
    checkpoint_from_env,
    describe_edvr,
    edvr_from_checkpoint,
    flow_pyramid,
    optional_edvr,
)
from dalign_nb.viz import show_offsets_beside_flow

# BasicSR's DCNv2Pack compares torchvision versions with distutils' LooseVersion
pytestmark = pytest.mark.filterwarnings("ignore:distutils Version classes are deprecated")

SMALL = dict(num_feat=8, num_frame=5, deformable_groups=2, num_extract_block=1, num_reconstruct_block=2)
LEVEL = {"l1": 0, "l2": 1, "l3": 2}


@pytest.fixture(scope="module")
def basicsr_edvr():
    return require_basicsr_edvr()


def _checkpoint(module, path, offset=None, random_offsets=False):
    """BasicSR's EDVR (``SMALL``, random weights) saved as ``{"params": ...}`` at ``path``.

    Its offset branches start at zero (BasicSR's ``init_offset``). ``offset`` (dy, dx): their
    weights zeroed and biases set so that every offset of every level is (dy, dx) (BasicSR's
    DCNv2Pack: the first 2 * G * 9 channels of ``conv_offset`` are the offsets, (dy, dx) pairs).
    ``random_offsets``: random offset branches, offsets of about a pixel.
    """
    torch.manual_seed(0)
    model = module.EDVR(**SMALL).eval()
    with torch.no_grad():
        for name, conv in model.named_modules():
            if not name.endswith("conv_offset"):
                continue
            if random_offsets:
                conv.weight.normal_(0, 0.02)
                conv.bias.normal_(0, 1.0)
            if offset is not None:
                n = 2 * conv.out_channels // 3
                conv.weight.zero_()
                conv.bias[:n:2], conv.bias[1:n:2] = offset
    torch.save({"params": model.state_dict()}, path)
    return path


def _level_dis(lr: torch.Tensor, level: str) -> torch.Tensor:
    """DIS from the centre frame, computed here, pooled to ``level``: (T, 2, h_l, w_l)."""
    return flow_pyramid(estimate_flows(lr))[LEVEL[level]]


def _shifting_clip(step=2, frames=5, size=(32, 48)) -> ArrayClip:
    """A smooth random texture moving ``step`` LR pixels right per frame: DIS from the centre frame
    to frame t is about (u, v) = (step * (t - centre), 0)."""
    rng = np.random.default_rng(0)
    h, w = size
    texture = cv2.GaussianBlur(rng.random((h, w + 40, 3)).astype(np.float32), (0, 0), 1.5)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    c = frames // 2
    lr = np.stack([np.roll(texture, step * (t - c), axis=1)[:, 20:20 + w] for t in range(frames)])
    hr = np.stack([cv2.resize(f, (4 * w, 4 * h), interpolation=cv2.INTER_CUBIC) for f in lr])
    return ArrayClip("shift", hr, lr)


def test_the_notebook_section_on_a_zero_offset_checkpoint(basicsr_edvr, tmp_path, monkeypatch, capsys):
    """Notebook 10's section (and notebook 11's), call for call. Offsets at zero (an untrained
    offset branch): at every level and neighbour the mean and the closest offset are within 1 px
    of DIS exactly where DIS moves less than 1 px (computed here from DIS on the same frames)."""
    monkeypatch.setenv(CHECKPOINT_ENV, str(_checkpoint(basicsr_edvr, tmp_path / "edvr.pth")))
    model = optional_edvr(checkpoint_from_env())
    description = "EDVR with 8 features, 2 reconstruction blocks, 5 frames, G = 2, TSA"
    assert describe_edvr(model.config) == description
    assert capsys.readouterr().out == f"edvr.pth: {description}\n"
    found = offsets_vs_dis(model)  # the bundled bikes test shot, its middle, a 64 x 96 LR crop
    assert found.box == (2, 32, 64, 96) and found.frames.lr.shape == (5, 3, 64, 96)
    assert found.clip.name == "bikes/shot2, frames 28-32, LR 64x96 at (2, 32)"
    assert [(r["level"], r["neighbour"]) for r in found.rows] == [
        (lv, k) for lv in PCD_LEVELS for k in (-2, -1, 1, 2)]
    for r in found.rows:
        dis = _level_dis(found.frames.lr, r["level"])[r["neighbour"] + 2]  # (2, h_l, w_l)
        still = share_within(dis.norm(dim=0), 1.0)
        assert r["within_mean"] == r["within_closest"] == r["within_zero"] == pytest.approx(still, abs=1e-3)
        assert r["mean_dis"] == pytest.approx(float(dis.norm(dim=0).mean()), rel=1e-3)
        assert r["mean_offset"] == 0 and r["epe_mean"] == pytest.approx(r["mean_dis"])
        assert r["scale"] == {"l1": 1, "l2": 2, "l3": 4}[r["level"]]
    assert found.row("l1", 2)["mean_dis"] > 1.0  # the crop moves: the share is not trivially 100 %
    assert "| l1 | t+2 |" in found.table()
    fig = show_offsets_beside_flow(**found.figure_data("l1"))
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 2 + 4 * 4  # reference, key, and per neighbour: frame, two offset fields, DIS
    assert f"mean offset, t-2\n{100 * found.row('l1', -2)['within_mean']:.0f} % within 1 px" in titles
    plt.close(fig)
    from dalign_nb.widgets import OffsetViewer

    viewer = OffsetViewer(model, found.clip)
    assert repr(viewer).startswith("OffsetViewer(dcn, G=2, N=9, clip='bikes/shot2, frames 28-32")


def test_constant_offsets_on_a_known_shift(basicsr_edvr, tmp_path):
    """Every offset (dy, dx) = (0, 2) on a texture moving 2 px right per frame: the fields read as
    flows (u, v) = (2, 0), near DIS towards t+1 and far from it towards t-1 (a swapped or negated
    layout would reverse that), shares as computed here."""
    model = edvr_from_checkpoint(_checkpoint(basicsr_edvr, tmp_path / "edvr.pth", offset=(0.0, 2.0)))
    found = offsets_vs_dis(model, _shifting_clip(), crop=None)
    constant = torch.tensor([2.0, 0.0]).view(1, 2, 1, 1)
    for level in PCD_LEVELS:
        for field in (found.mean_offset[level], found.closest_offset[level]):
            torch.testing.assert_close(field, constant.expand_as(field))
        dis = _level_dis(found.frames.lr, level)
        for k in (-2, -1, 1, 2):
            expected = share_within((dis[k + 2] - constant[0]).norm(dim=0), 1.0)
            assert found.row(level, k)["within_mean"] == pytest.approx(expected, abs=1e-3)
    assert found.row("l1", 1)["within_mean"] > 0.8
    assert found.row("l1", -1)["within_mean"] < 0.1 and found.row("l1", 2)["within_mean"] < 0.1
    assert found.row("l1", 1)["mean_dis"] == pytest.approx(2.0, abs=0.3)


def test_closest_offset_against_the_models_own_offsets(basicsr_edvr, tmp_path):
    """Random offset branches: the closest of the G * N offsets, recomputed from the model's
    ``return_aux`` offsets, and its share within 1 px of DIS."""
    model = edvr_from_checkpoint(_checkpoint(basicsr_edvr, tmp_path / "edvr.pth", random_offsets=True))
    found = offsets_vs_dis(model, crop=(32, 48), top_left=(8, 40))
    with torch.no_grad():
        _, aux = model(found.frames.lr[None], return_aux=True)
    dis = _level_dis(found.frames.lr, "l1")
    for t in (0, 1, 3, 4):
        pairs = aux["offsets"]["l1"][0, t].unflatten(0, (-1, 2))  # (G*N, 2, h, w) as (dy, dx)
        assert pairs.abs().mean() > 0.3  # offsets of about a pixel, not the zero case
        epe = (pairs.flip(1) - dis[t]).norm(dim=1)  # (G*N, h, w)
        row = found.row("l1", t - 2)
        assert row["within_closest"] == pytest.approx(share_within(epe.min(0).values, 1.0), abs=1e-3)
        assert row["epe_closest"] == pytest.approx(float(epe.min(0).values.mean()), rel=1e-3)
        torch.testing.assert_close(found.mean_offset["l1"][t], pairs.mean(0).flip(0))
        assert row["within_closest"] >= share_within(epe[0], 1.0)


def test_clip_window_crops_and_refuses_bad_requests():
    clip = _shifting_clip(frames=7, size=(30, 50))
    window = clip_window(clip, 5, crop=(30, 50))  # rounded down to multiples of 4, centred
    assert window.lr_frames.shape == (5, 28, 48, 3) and window.hr_frames.shape == (5, 112, 192, 3)
    np.testing.assert_array_equal(window.lr_frames, clip.lr_frames[1:6, 1:29, 1:49])
    corner = clip_window(clip, 3, centre=2, crop=(8, 12), top_left=(4, 8))
    np.testing.assert_array_equal(corner.lr_frames, clip.lr_frames[1:4, 4:12, 8:20])
    lq, gt = (torch.from_numpy(a).permute(0, 3, 1, 2) for a in (clip.lr_frames, clip.hr_frames))
    as_tensors = ValClip("v", lq, gt)
    np.testing.assert_array_equal(clip_window(as_tensors, 5, crop=(30, 50)).lr_frames, window.lr_frames)
    with pytest.raises(ValueError, match="centre must leave 2 frames on each side in a clip of 7, got 1"):
        clip_window(clip, 5, centre=1)
    with pytest.raises(ValueError, match=r"top_left \(24, 0\) puts the 8 x 12 crop outside the 30 x 50"):
        clip_window(clip, 5, crop=(8, 12), top_left=(24, 0))
    with pytest.raises(ValueError, match="at least 4 x 4"):
        clip_window(clip, 5, crop=(3, 40))


def test_bad_levels_are_refused(basicsr_edvr, tmp_path):
    model = edvr_from_checkpoint(_checkpoint(basicsr_edvr, tmp_path / "edvr.pth"))
    with pytest.raises(ValueError, match="levels must be some of"):
        offsets_vs_dis(model, _shifting_clip(), levels=("l4",))


def test_without_a_checkpoint_the_notebooks_say_how_to_get_one(capsys):
    assert optional_edvr(None) is None
    assert capsys.readouterr().out == GET_CHECKPOINT + "\n"
    for name in ("EDVR_M_x4_SR_REDS_official-32075921.pth", "EDVR_L_x4_SR_REDS_official-9f5f5039.pth",
                 f"{CHECKPOINT_ENV}=/path/to/EDVR_M", "BasicSR"):
        assert name in GET_CHECKPOINT
