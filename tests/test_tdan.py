"""The TDAN-like network (Table 2, left): shapes, its DCN against torchvision, N = 1 as flow
warping, the aux interface the trainer reads, strict checkpoints, refusals.

References that share no code with the package: ``torchvision.ops.deform_conv2d`` and
``grid_sample`` written out (``dcn_reference.warp_by_grid_sample``).
"""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from dcn_reference import warp_by_grid_sample

from dalign_nb.losses import photometric_warping_loss
from dalign_nb.models import TDAN, TDANConfig, build_model, build_tdan, tdan_config


def _clip(b=2, t=3, h=8, w=8, seed=0, dtype=torch.float32):
    return torch.rand(b, t, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _randomise(model, seed=0, offset_std=1.5):
    """Offsets of a pixel or two (the branch starts at zero) and a non-zero output convolution."""
    torch.manual_seed(seed)
    with torch.no_grad():
        model.dconv.conv_offset.weight.normal_(0, 0.05)
        model.dconv.conv_offset.bias.normal_(0, offset_std)
        model.up[1].weight.normal_(0, 0.05)
    return model


@pytest.mark.parametrize("n, groups", [(1, 1), (9, 2), (25, 1), (4, 2)])
def test_shapes_and_aux(n, groups):
    model = build_tdan("tiny", num_offsets=n, deformable_groups=groups)
    x = _clip()
    out, aux = model(x, return_aux=True)
    assert out.shape == (2, 3, 32, 32)
    assert aux["offsets"]["l1"].shape == (2, 3, 2 * groups * n, 8, 8)
    assert aux["masks"]["l1"] is None  # TDAN's DCNv1
    assert aux["aligned"]["l1"].shape == aux["aligned_feat"].shape == (2, 3, 8, 8, 8)
    assert aux["aligned_lr"].shape == (2, 3, 3, 8, 8)
    assert aux["offsets"]["l1"][:, 1].abs().max() == 0  # the centre frame is not aligned
    torch.testing.assert_close(aux["aligned_lr"][:, 1], x[:, 1], rtol=0, atol=0)
    bilinear = F.interpolate(x[:, 1], scale_factor=4, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, bilinear, rtol=0, atol=0)  # zero-initialised output: the base
    assert model.config.kernel_size == {9: 3, 25: 5}.get(n)


@pytest.mark.parametrize("n, groups, modulated", [(9, 2, False), (25, 1, True)])
def test_grid_dcn_equals_torchvision(n, groups, modulated):
    """With N = k*k on the grid, the aligning DCN (computed as Eq. 3) is torchvision's k x k DCN."""
    k = {9: 3, 25: 5}[n]
    model = _randomise(build_tdan("tiny", num_offsets=n, deformable_groups=groups, modulated=modulated))
    model = model.double()
    x = _clip(dtype=torch.float64, h=10, w=12)
    _, aux = model(x, return_aux=True)
    feats = model.extract(x.flatten(0, 1))[0].view(2, 3, 8, 10, 12)
    weight = model.dconv.weight.view(8, 8, k, k)  # (C, C, N) is the DCN's (C, C, k, k) flattened
    for t in (0, 2):
        offset = aux["offsets"]["l1"][:, t]  # dp_k, without the grid p_k
        mask = aux["masks"]["l1"][:, t] if modulated else None
        expected = torchvision.ops.deform_conv2d(feats[:, t], offset, weight, model.dconv.bias,
                                                 padding=k // 2, mask=mask)
        torch.testing.assert_close(aux["aligned"]["l1"][:, t], expected, rtol=0, atol=1e-10)
    assert aux["offsets"]["l1"][:, 0].abs().mean() > 0.5  # offsets of pixels, not the zero case


def test_one_offset_is_feature_flow_warping():
    """N = G = 1: the aligned neighbour is a 1x1 convolution of the feature warped by one flow."""
    model = _randomise(build_tdan("tiny", num_offsets=1)).double()
    x = _clip(dtype=torch.float64)
    _, aux = model(x, return_aux=True)
    feat = model.extract(x[:, 0])[0]  # (B, C, h, w)
    offset = aux["offsets"]["l1"][:, 0]  # (B, 2, h, w) as (dy, dx)
    warped = warp_by_grid_sample(feat, offset.flip(1))  # feat(p + dp(p)), flow as (u, v)
    expected = F.conv2d(warped, model.dconv.weight[..., None], model.dconv.bias)  # (C, C, 1, 1)
    torch.testing.assert_close(aux["aligned"]["l1"][:, 0], expected, rtol=0, atol=1e-10)
    assert offset.abs().mean() > 0.5


def test_recon_lr_is_what_the_reconstruction_sees():
    model = _randomise(build_tdan("tiny", num_offsets=9))
    x = _clip()
    out, aux = model(x, return_aux=True)
    expected_lr = model.recon_lr(aux["aligned"]["l1"][:, 0])
    torch.testing.assert_close(aux["aligned_lr"][:, 0], expected_lr)
    base = F.interpolate(x[:, 1], scale_factor=4, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, model.reconstruct(aux["aligned_lr"]) + base)
    assert (out - base).abs().mean() > 1e-3


def test_photometric_term_reads_the_offsets():
    """The trainer's warping term acts on ``aux["offsets"]["l1"]`` and reaches the offset branch."""
    model = _randomise(build_tdan("tiny", num_offsets=9))
    x = _clip()
    _, aux = model(x, return_aux=True)
    loss = photometric_warping_loss(x, aux["offsets"], 1, ("l1",), num_offsets=9, target="mean")
    loss.backward()
    assert loss.item() > 0
    assert model.dconv.conv_offset.weight.grad.abs().sum() > 0


def test_tdans_own_alignment_loss_by_hand_and_in_the_trainer(tmp_path):
    """``aligned_frames_loss``: the mean squared difference of each aligned neighbour and the
    reference frame, the reference itself left out; the trainer adds it as ``aligned_lr`` for a
    TDAN and the profile refuses it for a model without aligned LR frames."""
    from dalign_nb.config import get_profile, with_overrides
    from dalign_nb.losses import aligned_frames_loss
    from dalign_nb.train import train

    x, aligned = _clip(t=5, seed=1), _clip(t=5, seed=2)
    expected = sum(((aligned[:, k] - x[:, 2]) ** 2).mean() for k in (0, 1, 3, 4)) / 4
    torch.testing.assert_close(aligned_frames_loss(aligned, x, 2), expected)
    assert aligned_frames_loss(x[:, [2, 2, 2]], x[:, 1:4], 1) == 0  # neighbours equal to the reference
    with pytest.raises(ValueError, match="B, T, C, h, w"):
        aligned_frames_loss(aligned[:, :3], x, 2)
    with pytest.raises(ValueError, match="aligned_lr_weight"):
        with_overrides(get_profile("align"), {"train.aligned_lr_weight": 0.25})  # an EDVR
    tiny = {"model": tdan_config("tiny", num_offsets=1), "train.aligned_lr_weight": 0.25,
            "train.total_iter": 2, "train.log_every": 1, "data.patch_size": 8, "data.batch_size": 2,
            "data.num_scenes": 1, "data.val_clips": 1, "data.val_frames": 1, "train.val_every": 10**6,
            "train.photometric_levels": ("l1",)}
    profile = with_overrides(get_profile("align"), tiny)
    res = train(profile, tmp_path, resume=False, device="cpu", progress=False)
    assert all(e["terms"]["aligned_lr"] > 0 for e in res.history["train"])


def test_checkpoint_round_trip_is_strict(tmp_path):
    model = _randomise(build_tdan("tiny", num_offsets=25))
    torch.save(model.state_dict(), tmp_path / "tdan.pt")
    loaded = TDAN.from_config(model.config)
    loaded.load_state_dict(torch.load(tmp_path / "tdan.pt", weights_only=True), strict=True)
    x = _clip()
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert sum(p.numel() for p in loaded.state_dict().values()) == sum(p.numel() for p in model.parameters())
    with pytest.raises(RuntimeError, match="size mismatch"):  # N = 9 is another model
        build_tdan("tiny", num_offsets=9).load_state_dict(loaded.state_dict(), strict=True)
    assert isinstance(build_model(model.config), TDAN)


def test_bad_input_refused():
    model = build_tdan("tiny")
    with pytest.raises(ValueError, match=r"x must have shape \(B, T=3, 3, h, w\)"):
        model(torch.rand(1, 5, 3, 8, 8))
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="num_offsets"):
        TDANConfig(num_offsets=0)
    with pytest.raises(ValueError, match="deformable_groups"):
        TDAN(num_feat=12, deformable_groups=8)
    with pytest.raises(ValueError, match="center_frame_idx"):
        tdan_config("tiny", center_frame_idx=3)
    with pytest.raises(ValueError, match="preset"):
        tdan_config("tdan-xl")
    with pytest.raises(ValueError, match="config must be one of"):
        build_model({"num_offsets": 9})
