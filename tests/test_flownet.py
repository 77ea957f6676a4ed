"""The flow-based network with N flows (Table 2, right): shapes, N = 1 is flow warping of the
image, SPyNet's coarse-to-fine sum, the aux interface the trainer reads, strict checkpoints,
refusals.

Reference that shares no code with the package: ``grid_sample`` written out
(``dcn_reference.warp_by_grid_sample``).
"""

import pytest
import torch
import torch.nn.functional as F
from dcn_reference import warp_by_grid_sample

from dalign_nb.losses import photometric_warping_loss
from dalign_nb.models import FlowNet, FlowNetConfig, build_flownet, build_model, flownet_config
from dalign_nb.ops import flow_warp


def _clip(b=2, t=3, h=8, w=8, seed=0, dtype=torch.float32):
    return torch.rand(b, t, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _randomise(model, seed=0, flow_std=1.0):
    """Flows of about a pixel (every SPyNet level's last convolution starts at zero) and a
    non-zero output convolution."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for conv, _ in model.offset_branches():
            conv.weight.normal_(0, 0.05)
            conv.bias.normal_(0, flow_std)
        model.up[1].weight.normal_(0, 0.05)
    return model


@pytest.mark.parametrize("n", [1, 2, 3])
def test_shapes_and_aux(n):
    model = build_flownet("tiny", num_offsets=n)  # 2 SPyNet levels
    x = _clip()
    out, aux = model(x, return_aux=True)
    assert out.shape == (2, 3, 32, 32)
    assert set(aux["offsets"]) == {"l1", "l2"}
    assert aux["offsets"]["l1"].shape == (2, 3, 2 * n, 8, 8)
    assert aux["offsets"]["l2"].shape == (2, 3, 2 * n, 4, 4)
    assert aux["masks"] == {"l1": None, "l2": None}
    assert aux["aligned"]["l1"].shape == (2, 3, 3 * n, 8, 8)
    assert aux["offsets"]["l1"].abs().max() == 0  # every SPyNet starts at zero flow
    torch.testing.assert_close(aux["aligned"]["l1"][:, 0], x[:, 0].repeat(1, n, 1, 1), rtol=0, atol=0)
    bilinear = F.interpolate(x[:, 1], scale_factor=4, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, bilinear, rtol=0, atol=0)  # zero-initialised output: the base


def test_one_flow_is_flow_warping():
    """N = 1: the aligned neighbour is the LR image warped by the model's own flow."""
    model = _randomise(build_flownet("tiny", num_offsets=1)).double()
    x = _clip(dtype=torch.float64)
    _, aux = model(x, return_aux=True)
    for t in (0, 2):
        flow = aux["offsets"]["l1"][:, t].flip(1)  # (dy, dx) -> (u, v)
        # another batch shape than the model's own warp: kernels may round differently
        torch.testing.assert_close(aux["aligned"]["l1"][:, t], flow_warp(x[:, t], flow), rtol=0, atol=1e-6)
        torch.testing.assert_close(aux["aligned"]["l1"][:, t], warp_by_grid_sample(x[:, t], flow),
                                   rtol=0, atol=1e-12)
    assert aux["offsets"]["l1"][:, 0].abs().mean() > 0.5  # flows of pixels, not the zero case


def test_n_flows_are_n_warps_and_all_are_fused():
    model = _randomise(build_flownet("tiny", num_offsets=3)).double()
    x = _clip(dtype=torch.float64)
    seen = []
    model.conv_1.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    _, aux = model(x, return_aux=True)
    off, aligned = aux["offsets"]["l1"][:, 2], aux["aligned"]["l1"][:, 2]  # (B, 6, h, w), (B, 9, h, w)
    for n in range(3):
        flow = off[:, 2 * n: 2 * n + 2].flip(1)
        torch.testing.assert_close(aligned[:, 3 * n: 3 * n + 3], warp_by_grid_sample(x[:, 2], flow),
                                   rtol=0, atol=1e-12)
    assert (off[:, 0:2] - off[:, 2:4]).abs().mean() > 0.1  # three different flows
    torch.testing.assert_close(seen[0], aux["aligned"]["l1"].flatten(1, 2), rtol=0, atol=0)


def test_spynet_adds_residuals_coarse_to_fine():
    """``V_1 = 2 up2(V_2) + G_1(...)``: with the finest module silenced, V_1 is the coarser flow upsampled."""
    model = _randomise(build_flownet("tiny", num_offsets=1))
    with torch.no_grad():
        model.spynet[0].basic_module[-1].basic_module[-1].weight.zero_()
        model.spynet[0].basic_module[-1].basic_module[-1].bias.zero_()
    _, aux = model(_clip(), return_aux=True)
    coarse = aux["offsets"]["l2"][:, 0]
    expected = 2 * F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(aux["offsets"]["l1"][:, 0], expected)
    assert coarse.abs().mean() > 0.5


def test_offset_branches_zero_every_flow():
    model = _randomise(build_flownet("tiny", num_offsets=2))
    with torch.no_grad():
        for conv, rows in model.offset_branches():
            conv.weight[:rows] = 0
            conv.bias[:rows] = 0
    x = _clip()
    _, aux = model(x, return_aux=True)
    assert all(off.abs().max() == 0 for off in aux["offsets"].values())
    torch.testing.assert_close(aux["aligned"]["l1"][:, 0], x[:, 0].repeat(1, 2, 1, 1), rtol=0, atol=0)


def test_photometric_term_reads_every_level():
    model = _randomise(build_flownet("tiny", num_offsets=2))
    x = _clip()
    _, aux = model(x, return_aux=True)
    loss = photometric_warping_loss(x, aux["offsets"], 1, ("l1", "l2"), num_offsets=2)
    loss.backward()
    assert loss.item() > 0
    assert all(conv.weight.grad.abs().sum() > 0 for conv, _ in model.offset_branches())


def test_checkpoint_round_trip_is_strict(tmp_path):
    model = _randomise(build_flownet("tiny", num_offsets=2))
    torch.save(model.state_dict(), tmp_path / "flownet.pt")
    loaded = FlowNet.from_config(model.config)
    loaded.load_state_dict(torch.load(tmp_path / "flownet.pt", weights_only=True), strict=True)
    x = _clip()
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="spynet.2"):  # N = 3 has a third SPyNet
        build_flownet("tiny", num_offsets=3).load_state_dict(loaded.state_dict(), strict=True)
    assert isinstance(build_model(model.config), FlowNet)


def test_bad_input_refused():
    model = build_flownet("tiny")
    with pytest.raises(ValueError, match=r"x must have shape \(B, T=3, 3, h, w\)"):
        model(torch.rand(1, 2, 3, 8, 8))
    with pytest.raises(ValueError, match="multiples of 2"):
        model(torch.rand(1, 3, 3, 8, 9))
    with pytest.raises(ValueError, match="multiples of 4"):
        build_flownet("tiny", num_levels=3)(torch.rand(1, 3, 3, 8, 6))
    with pytest.raises(ValueError, match="num_offsets"):
        FlowNetConfig(num_offsets=0)
    with pytest.raises(ValueError, match="spynet_kernel must be odd"):
        flownet_config("tiny", spynet_kernel=4)
    with pytest.raises(ValueError, match="spynet_feat"):
        FlowNet(spynet_feat=5)
    with pytest.raises(ValueError, match="center_frame_idx"):
        flownet_config("tiny", center_frame_idx=-1)
    with pytest.raises(ValueError, match="preset"):
        flownet_config("pwc")
