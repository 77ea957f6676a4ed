"""dalign_nb.diagnostics: captured offsets are the graph's own, gradients against finite
differences and a loss with a known gradient, the descent direction and pixel classes by hand,
offset errors of models whose offsets are the exact flow or zero."""

from __future__ import annotations

import contextlib

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from dalign_nb import diagnostics as D
from dalign_nb.data import SceneConfig, bd_degrade, bi_degrade, get_clips
from dalign_nb.losses import charbonnier_loss
from dalign_nb.models.edvr import EDVR


def _model(residual: bool = True) -> EDVR:
    torch.manual_seed(0)
    model = EDVR(num_feat=8, num_frame=3, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1,
                 with_tsa=False, alignment="flow", residual_offsets=residual).double()
    for level in ("l3", "l2", "l1"):  # offsets of about a pixel, not the zero initialisation
        conv = model.pcd_align.dcn_pack[level].conv_offset
        nn.init.normal_(conv.weight, std=0.05)
        nn.init.normal_(conv.bias, std=0.5)
    return model.eval()


def test_captured_offsets_are_the_offsets_of_aux_one_per_frame():
    model, x = _model(), torch.rand(1, 3, 3, 16, 16, dtype=torch.float64)
    with D.capture_offsets(model, "l1") as captured:
        _, aux = model(x, return_aux=True)
    assert len(captured) == 3
    torch.testing.assert_close(torch.stack(captured, 1), aux["offsets"]["l1"], rtol=0, atol=0)
    assert "align" not in vars(model.pcd_align.dcn_pack["l1"])  # the patch is gone


def test_gradient_of_a_linear_loss_on_aux_is_its_coefficient():
    model, x = _model(), torch.rand(1, 3, 3, 16, 16, dtype=torch.float64)
    coef = torch.randn(1, 3, 2, 16, 16, dtype=torch.float64)
    grads = D.offset_gradients(model, x, {"linear": lambda out, aux: (aux["offsets"]["l1"] * coef).sum()})
    torch.testing.assert_close(grads["linear"], coef[0], rtol=0, atol=1e-12)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("channel", [0, 1])
def test_gradient_of_the_sr_loss_matches_a_finite_difference(channel):
    """Moving the L1 offset branch's bias by eps moves every L1 offset's dy (or dx) by eps: the
    loss changes by eps times the sum of that channel's gradient."""
    model, x = _model(), torch.rand(1, 3, 3, 16, 16, dtype=torch.float64)
    gt = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    grads = D.offset_gradients(model, x, {"sr": lambda out, aux: charbonnier_loss(out, gt)})["sr"]
    bias, eps = model.pcd_align.dcn_pack["l1"].conv_offset.bias, 1e-5
    losses = []
    with torch.no_grad():
        for sign in (1, -1):
            bias[channel] += sign * eps
            losses.append(charbonnier_loss(model(x), gt).item())
            bias[channel] -= sign * eps
    numeric = (losses[0] - losses[1]) / (2 * eps)
    analytic = grads[:, channel].sum().item()
    assert abs(analytic) > 1e-8
    assert numeric == pytest.approx(analytic, rel=1e-4, abs=1e-11)


def test_descent_towards_flow_by_hand():
    flow = torch.zeros(2, 1, 3)
    flow[0] = 3.0  # u = 3: the content is 3 px to the right
    offsets = torch.zeros(2, 1, 3)
    grad = torch.zeros(2, 1, 3)
    grad[1, 0, 0] = -1.0  # descent +1 in dx: towards the flow
    grad[1, 0, 1] = 2.0  # descent -2 in dx: away from it
    grad[0, 0, 2] = 5.0  # across the flow only
    assert D.descent_towards_flow(grad, offsets, flow)[0].tolist() == [1.0, -2.0, 0.0]
    assert D.descent_towards_flow(grad, flow.flip(0), flow).abs().max() == 0  # already on the flow


def test_pixel_classes_by_hand():
    labels = np.zeros((20, 20), int)
    labels[8:12, 8:12] = 1
    frame = np.zeros((20, 20, 3), np.float32)
    frame[:, 10:] = 1.0  # one vertical edge: texture there, flat elsewhere
    c = D.pixel_classes(labels, frame, edge=2, border=3)
    assert c["sprite"].sum() == 16
    assert c["layer_edge"][6:14, 6:14].all() and c["layer_edge"].sum() == 64  # the sprite and 2 px around it
    assert c["frame_border"].sum() == 400 - 14 * 14
    assert not c["flat"][:, 8:12].any() and c["flat"][:, :4].all()


class _FakeEDVR(nn.Module):
    """Returns the clip's exact flows as L1 offsets (or zeros), looked up by the input frames."""

    def __init__(self, clip, exact: bool):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        flows = torch.from_numpy(np.asarray(clip.flows)).permute(0, 3, 1, 2).flip(1)  # (T, 2, h, w), (dy, dx)
        self.offsets = flows if exact else torch.zeros_like(flows)
        self.modes = []  # self.training at each forward pass

    def forward(self, x, return_aux=False):
        self.modes.append(self.training)
        return x[:, 1], {"offsets": {"l1": self.offsets[None]}}


def test_offset_errors_of_the_exact_flow_and_of_zero_offsets():
    clip = get_clips("synthetic", "test", num_scenes=1, seed=3,
                     scene_config=SceneConfig(height=64, width=64, num_frames=3))[0]
    training = _FakeEDVR(clip, exact=True).train()
    exact = D.offset_errors(training, [clip])
    assert training.modes == [False] and training.training  # evaluated in eval mode, handed back as it came
    zero = D.offset_errors(_FakeEDVR(clip, exact=False), [clip])
    visible = sum(int((~np.asarray(clip.occlusion[k])).sum()) for k in (0, 2))
    assert {len(v) for v in exact.values()} == {visible}
    assert np.abs(exact["epe"]).max() < 1e-5 and np.abs(exact["along"]).max() < 1e-5
    np.testing.assert_allclose(zero["epe"], zero["flow"], atol=1e-5)
    np.testing.assert_allclose(zero["along"], -zero["flow"], atol=1e-5)
    assert np.abs(zero["across"]).max() < 1e-5
    assert zero["sprite"].any() and (~zero["sprite"]).any()


def test_terms_towards_flow_run_from_the_offsets_to_the_exact_flow():
    """With the exact flow as the model's offsets every point of the segment is the flow: one
    value per term; with zero offsets the terms at alpha 0 are those of zero motion, by hand, and
    the exact flow (alpha 1) explains the frames better by both."""
    from dalign_nb.losses import photometric_warping_loss

    clip = get_clips("synthetic", "test", num_scenes=1, seed=3,
                     scene_config=SceneConfig(height=64, width=64, num_frames=3))[0]
    same = D.terms_towards_flow(_FakeEDVR(clip, exact=True), [clip], alphas=(0.0, 0.5, 1.0))
    assert same["alphas"] == [0.0, 0.5, 1.0]
    for p in ("census", "rgb"):
        assert same[p] == pytest.approx([same[p][0]] * 3, rel=1e-6)
    zero = D.terms_towards_flow(_FakeEDVR(clip, exact=False), [clip], alphas=(0.0, 1.0))
    lq = torch.from_numpy(np.stack([clip.lr(i) for i in range(3)])).permute(0, 3, 1, 2)[None].float()
    still = {"l1": torch.zeros(1, 3, 2, 16, 16)}
    by_hand = photometric_warping_loss(lq, still, 1, ("l1",), penalty="census").item()
    assert zero["census"][0] == pytest.approx(by_hand)
    assert zero["census"][1] == pytest.approx(same["census"][0], rel=1e-6)
    assert zero["census"][1] < zero["census"][0] and zero["rgb"][1] < zero["rgb"][0]
    two = D.terms_towards_flow(_FakeEDVR(clip, exact=False), [clip, clip], alphas=(0.0, 1.0))
    assert len(two["per_clip"]["rgb"]) == 2 and two["rgb"] == pytest.approx(zero["rgb"])
    assert all(c == pytest.approx(zero["rgb"]) for c in two["per_clip"]["rgb"])
    with pytest.raises(ValueError, match="alphas"):
        D.terms_towards_flow(_FakeEDVR(clip, exact=True), [clip], alphas=())


def test_a_coarser_level_is_compared_at_the_lr_size_and_binned_by_motion():
    """L3 offsets of a quarter of the LR size, constant (dy, dx) = (0, 1) there, are 4 px to the
    right at the LR size: the upsampled field is compared with the flow pixel for pixel, and
    ``shares_by_motion`` counts, per bin of |flow|, the pixels within 1 px."""
    clip = get_clips("synthetic", "test", num_scenes=1, seed=3,
                     scene_config=SceneConfig(height=64, width=64, num_frames=3))[0]
    model = _FakeEDVR(clip, exact=False)
    coarse = torch.zeros(3, 2, 4, 4)
    coarse[:, 1] = 1.0  # dx = 1 px at L3
    model.forward = lambda x, return_aux=False: (x[:, 1], {"offsets": {"l3": coarse[None]}})
    errors = D.offset_errors(model, [clip], level="l3")
    flows = [torch.from_numpy(clip.flows[k]).permute(2, 0, 1) for k in (0, 2)]
    visible = [~np.asarray(clip.occlusion[k]) for k in (0, 2)]
    expected = np.concatenate([(f - torch.tensor([4.0, 0.0])[:, None, None]).norm(dim=0).numpy()[v]
                               for f, v in zip(flows, visible)])
    np.testing.assert_allclose(errors["epe"], expected, atol=1e-5)
    table = D.shares_by_motion(errors, bins=(0.0, 3.0, float("inf")))
    slow = errors["flow"] < 3
    assert [row["pixels"] for row in table] == [int(slow.sum()), int((~slow).sum())]
    for row in table:
        sel = (errors["flow"] >= row["from"]) & (errors["flow"] < row["to"])
        assert row["within"] == pytest.approx(float((expected[sel] < 1).mean()))


def test_dis_errors_are_offset_errors_of_dis_flow():
    """DIS on the same LR frames, pixel for pixel beside a model's offsets: the arrays of a model
    whose offsets *are* DIS's flows (dy, dx), and DIS does find a synthetic scene's motion."""
    from dalign_nb.flow import estimate_flows

    clip = get_clips("synthetic", "test", num_scenes=1, seed=3,
                     scene_config=SceneConfig(height=64, width=64, num_frames=3))[0]
    frames = torch.from_numpy(np.stack([clip.lr(i) for i in range(3)])).permute(0, 3, 1, 2)
    model = _FakeEDVR(clip, exact=False)
    model.offsets = estimate_flows(frames).flip(1)  # (T, 2, h, w) as (dy, dx)
    expected = D.offset_errors(model, [clip])
    errors = D.dis_errors([clip])
    assert errors.keys() == expected.keys()
    for key in errors:
        np.testing.assert_allclose(errors[key], expected[key], atol=1e-5)
    assert np.median(errors["epe"]) < 1.0 < np.median(errors["flow"])


def test_shares_by_kind_by_hand():
    """Four pixels: two on a sprite (one within 1 px), one at a layer boundary, one flat."""
    e = {"epe": np.array([0.5, 2.0, 3.0, 0.2]), "sprite": np.array([True, True, False, False]),
         "layer_edge": np.array([False, True, True, False]), "frame_border": np.zeros(4, bool),
         "flat": np.array([False, False, False, True])}
    s = D.shares_by_kind(e, ["all non-occluded pixels", "sprites", "inside sprites, away from boundaries",
                             "within 2 px of a layer boundary", "background, away from boundaries"])
    assert s["all non-occluded pixels"] == {"pixels": 1.0, "within": 0.5, "of_misses": 1.0,
                                            "median_epe": 1.25}
    assert s["sprites"] == {"pixels": 0.5, "within": 0.5, "of_misses": 0.5, "median_epe": 1.25}
    assert s["inside sprites, away from boundaries"]["within"] == 1.0
    assert s["within 2 px of a layer boundary"] == {"pixels": 0.5, "within": 0.0, "of_misses": 1.0,
                                                    "median_epe": 2.5}
    assert s["background, away from boundaries"]["pixels"] == 0.25
    assert set(D.shares_by_kind(e)) == set(D.PIXEL_KINDS)


@pytest.mark.parametrize("kind, degrade", [("BI", bi_degrade), ("BD", bd_degrade)])
def test_degradation_matrix_is_the_datas_degradation(kind, degrade):
    img = np.random.default_rng(1).random((48, 40))
    w_rows, w_cols = D.degradation_matrix(48, 4, kind), D.degradation_matrix(40, 4, kind)
    assert np.abs(w_rows @ img @ w_cols.T - degrade(img)).max() < 1e-12
    with pytest.raises(ValueError, match="degradation"):
        D.degradation_matrix(48, 4, "BX")


def test_neighbours_carry_information_that_a_reconstruction_knowing_the_motion_recovers():
    """Two neighbours moved by whole HR pixels: the least-squares estimate from all three 8-bit
    LR frames beats the one from the centre frame alone on every crop."""
    rng = np.random.default_rng(0)
    noise = rng.random((160, 160, 3)) * 255  # blurred a little: detail down to a few HR pixels
    textures = [cv2.GaussianBlur(noise, (0, 0), 1.5).astype(np.uint8)]
    res = D.neighbour_information(textures, num_crops=2, size=48, speed=(1.0, 3.0))
    assert all(three > one + 0.5 for one, three in zip(res["psnr_centre_only"], res["psnr_three_frames"]))
    assert res["gain"] == pytest.approx(np.mean(res["psnr_three_frames"]) - np.mean(res["psnr_centre_only"]))
    with pytest.raises(ValueError, match="no texture"):
        D.neighbour_information(textures, size=160)


def test_a_level_held_at_a_flow_samples_the_neighbour_there_and_reports_it():
    """Held at a flow, L1 is a backward warp by it and the 1x1 convolution (Sec. 3.3, k = 1), the
    flow is what ``aux`` reports for every frame, and the model is as before after the block."""
    from dalign_nb.ops import flow_warp

    model, x = _model(), torch.rand(1, 3, 3, 16, 16, dtype=torch.float64)
    before = model(x)
    flows = [torch.randn(1, 2, 16, 16, dtype=torch.float64) for _ in range(3)]
    module = model.pcd_align.dcn_pack["l1"]
    with D.offsets_held_at(model, flows, "l1") as calls:
        _, aux = model(x, return_aux=True)
        assert len(calls) == 3  # one per input frame
        nbr = torch.rand(1, 8, 16, 16, dtype=torch.float64)
        rec = module.align(nbr, torch.rand(1, 8, 16, 16, dtype=torch.float64))
    by_hand = torch.nn.functional.conv2d(flow_warp(nbr, flows[0]), module.weight[..., None], module.bias)
    torch.testing.assert_close(rec.feat, by_hand)
    torch.testing.assert_close(aux["offsets"]["l1"][0], torch.cat(flows).flip(1))  # (u, v) -> (dy, dx)
    assert "align" not in vars(module)
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)


def test_sampling_at_a_flow_that_reports_its_own_offsets_is_a_teacher_for_training():
    """``sample_at(reports="predicted")``: the output of the model held at the flow (the fusion
    sees neighbours aligned by it), the offsets ``aux`` reports are the model's own (what the
    warping terms train), and the gradient of a loss on them reaches the L1 offset branch."""
    from dalign_nb.alignment import sample_at

    model, x = _model(), torch.rand(1, 3, 3, 16, 16, dtype=torch.float64)
    _, own = model(x, return_aux=True)
    flows = [torch.randn(1, 2, 16, 16, dtype=torch.float64) for _ in range(3)]
    with D.offsets_held_at(model, flows, "l1"):
        held = model(x)
    with sample_at(model, flows, "l1", reports="predicted") as calls:
        out, aux = model(x, return_aux=True)
    assert len(calls) == 3
    torch.testing.assert_close(out, held, rtol=0, atol=0)
    torch.testing.assert_close(aux["offsets"]["l1"], own["offsets"]["l1"], rtol=0, atol=0)
    assert not torch.allclose(own["offsets"]["l1"][0], torch.cat(flows).flip(1))
    conv = model.pcd_align.dcn_pack["l1"].conv_offset
    with sample_at(model, flows, "l1", reports="predicted"):
        _, aux = model(x, return_aux=True)
    on_offsets = torch.autograd.grad(aux["offsets"]["l1"].square().sum(), conv.weight)[0]
    assert on_offsets.abs().sum() > 0
    with sample_at(model, flows, "l1", reports="predicted"):
        out = model(x)
    on_output = torch.autograd.grad(out.sum(), conv.weight, allow_unused=True)[0]
    assert on_output is None or on_output.abs().sum() == 0  # the sampling no longer uses them
    with pytest.raises(ValueError, match="reports must be one of"):
        with sample_at(model, flows, "l1", reports="both"):
            pass


def test_every_level_held_at_zero_is_the_model_with_its_offsets_zeroed():
    from dalign_nb.alignment import zero_offsets

    model, x = _model(), torch.rand(1, 3, 3, 16, 16, dtype=torch.float64)
    zeros = {level: [torch.zeros(1, 2, 16 // s, 16 // s, dtype=torch.float64)] * 3
             for level, s in (("l1", 1), ("l2", 2), ("l3", 4), ("cascade", 1))}
    with contextlib.ExitStack() as stack:
        for level, fields in zeros.items():
            stack.enter_context(D.offsets_held_at(model, fields, level))
        held = model(x)
    with zero_offsets(model):
        zeroed = model(x)
    assert not torch.allclose(held, model(x))  # the model's own offsets are not zero
    torch.testing.assert_close(held, zeroed)


def test_offsets_held_at_refuses_what_it_cannot_hold():
    model, x = _model(), torch.rand(1, 3, 3, 16, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match="level must be one of"):
        with D.offsets_held_at(model, [torch.zeros(1, 2, 16, 16)], "l4"):
            pass
    with pytest.raises(ValueError, match="size"):
        with D.offsets_held_at(model, [torch.zeros(1, 2, 8, 8, dtype=torch.float64)], "l1"):
            model(x)
    assert "align" not in vars(model.pcd_align.dcn_pack["l1"])  # undone after the error too
    with pytest.raises(ValueError, match="one .* per input frame"):
        with D.offsets_held_at(model, [], "l1"):
            pass
    dcn = EDVR(num_feat=8, num_frame=3, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1,
               with_tsa=False, alignment="dcn")
    with pytest.raises(ValueError, match="kernel grid"):
        with D.offsets_held_at(dcn, [torch.zeros(1, 2, 16, 16)], "l1"):
            pass
    with pytest.raises(ValueError, match="PCD"):
        with D.offsets_held_at(nn.Conv2d(3, 3, 1), [torch.zeros(1, 2, 16, 16)], "l1"):
            pass


def test_exact_offsets_scores_the_model_with_its_own_offsets_the_flow_and_the_centre_frame():
    from dalign_nb.metrics import psnr, quantize

    clip = get_clips("synthetic", "test", num_scenes=1, seed=3,
                     scene_config=SceneConfig(height=64, width=64, num_frames=3))[0]
    model = _model().float().train()
    found = D.exact_offsets(model, [clip, clip])
    assert model.training  # handed back as it came
    lq = torch.from_numpy(np.stack([clip.lr(i) for i in range(3)])).permute(0, 3, 1, 2)[None].float()
    gt = torch.from_numpy(clip.hr(1)).permute(2, 0, 1)[None].float()
    flows = [torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None].float() for f in clip.flows]
    flows[1] = torch.zeros_like(flows[1])
    with torch.no_grad():
        model.eval()
        own = psnr(quantize(model(lq)), gt)
        with D.offsets_held_at(model, flows, "l1"):
            exact = psnr(quantize(model(lq)), gt)
        alone = psnr(quantize(model(lq[:, 1:2].expand_as(lq).contiguous())), gt)
    assert found["num_clips"] == 2 and found["per_clip"]["model"] == pytest.approx([own, own])
    assert found["psnr"] == pytest.approx(own) and found["psnr_exact"] == pytest.approx(exact)
    assert found["gain"] == pytest.approx(own - alone) and found["gain_exact"] == pytest.approx(exact - alone)
    assert exact != pytest.approx(own)  # the random model's offsets are not the flow
    coarse = D.exact_offsets(model, [clip], level="l3")
    assert coarse["level"] == "l3" and coarse["psnr"] == pytest.approx(own)
    with pytest.raises(ValueError, match="cascade"):
        D.exact_offsets(model, [clip], level="cascade")


def _dcnv2() -> EDVR:
    from dalign_nb.models.edvr import AlignmentConfig

    torch.manual_seed(0)
    dcnv2 = AlignmentConfig(kind="dcn", kernel_size=3, modulated=True)
    model = EDVR(num_feat=8, num_frame=3, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1,
                 with_tsa=False, alignment=dcnv2).double()
    for module in (*model.pcd_align.dcn_pack.values(), model.pcd_align.cas_dcnpack):  # masks away from 0.5
        nn.init.normal_(module.conv_offset.weight, std=0.05)
        nn.init.normal_(module.conv_offset.bias, std=0.5)
    return model.eval()


def test_muted_taps_have_zero_masks_on_the_frames_asked_and_only_there():
    model = _dcnv2()
    lq = torch.rand(1, 3, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        _, aux = model(lq, return_aux=True)
        with D.taps_muted(model, [4], "l1", frames=[0, 2]):
            _, muted = model(lq, return_aux=True)
        with D.taps_muted(model, [4], "l1", frames=[]):
            same = model(lq)
        with D.taps_muted(model, range(9), "l1"):
            silent = model(lq)
    masks, held = aux["masks"]["l1"][0], muted["masks"]["l1"][0]  # (T, G*9, h, w)
    by_tap = held.view(3, 2, 9, 16, 16)
    assert (by_tap[[0, 2], :, 4] == 0).all()  # tap 4 of both groups, on the neighbours
    torch.testing.assert_close(by_tap[[0, 2]][:, :, [0, 1, 2, 3, 5, 6, 7, 8]],
                               masks.view(3, 2, 9, 16, 16)[[0, 2]][:, :, [0, 1, 2, 3, 5, 6, 7, 8]])
    torch.testing.assert_close(held[1], masks[1])  # the reference frame untouched
    torch.testing.assert_close(muted["offsets"]["l1"], aux["offsets"]["l1"])
    torch.testing.assert_close(same, model(lq))
    assert not torch.allclose(silent, same)
    assert "offsets_and_mask" not in vars(model.pcd_align.dcn_pack["l1"])  # the method is back
    with pytest.raises(ValueError, match="indices in 0..8"):
        with D.taps_muted(model, [9]):
            pass
    with pytest.raises(ValueError, match="modulated DCN"):
        with D.taps_muted(_model(), [0]):
            pass


def test_tap_use_scores_the_muted_taps_and_the_centre_frame():
    from dalign_nb.metrics import psnr, quantize

    clip = get_clips("synthetic", "test", num_scenes=1, seed=3,
                     scene_config=SceneConfig(height=64, width=64, num_frames=3))[0]
    model = _dcnv2().float()
    lq = torch.from_numpy(np.stack([clip.lr(i) for i in range(3)])).permute(0, 3, 1, 2)[None].float()
    gt = torch.from_numpy(clip.hr(1)).permute(2, 0, 1)[None].float()
    for tap in (None, 1):
        found = D.tap_use(model, [clip], tap=tap)
        k = 4 if tap is None else tap
        with torch.no_grad():
            with D.taps_muted(model, [k], frames=[0, 2]):
                without = psnr(quantize(model(lq)), gt)
            with D.taps_muted(model, [i for i in range(9) if i != k], frames=[0, 2]):
                only = psnr(quantize(model(lq)), gt)
            with D.taps_muted(model, [k]):
                without_all = psnr(quantize(model(lq)), gt)
            own = psnr(quantize(model(lq)), gt)
        assert found["tap"] == k and found["num_clips"] == 1
        assert found["model"] == pytest.approx(own) and found["without_tap"] == pytest.approx(without)
        assert found["tap_only"] == pytest.approx(only)
        assert found["without_tap_all"] == pytest.approx(without_all)
        assert len({round(v, 6) for v in (own, without, only, without_all)}) == 4  # each mute changes it
    with pytest.raises(ValueError, match="tap must be"):
        D.tap_use(model, [clip], tap=9)


def _fidelity_setting():
    """table3's DCNv2 with the offset-fidelity loss and the warping terms, on a tiny EDVR."""
    from dalign_nb import experiments
    from dalign_nb.models import build_model

    run = next(r for r in experiments.plan("table3", seeds=[0]) if r.condition == "dcn_fidelity")
    profile = experiments.with_overrides(run.profile, experiments.TINY_MODEL)
    torch.manual_seed(0)
    model = build_model(profile.model)
    for module in (*model.pcd_align.dcn_pack.values(), model.pcd_align.cas_dcnpack):  # offsets away from 0
        nn.init.normal_(module.conv_offset.weight, std=0.01)
    return profile, model


def test_term_gradients_read_the_trainers_terms_on_the_offset_branches():
    from dalign_nb.training.objective import loss_terms, term_gradients

    profile, model = _fidelity_setting()
    torch.manual_seed(1)
    lq, gt = torch.rand(2, 3, 3, 16, 16), torch.rand(2, 3, 64, 64)
    still, fast = torch.zeros(2, 3, 2, 16, 16), torch.full((2, 3, 2, 16, 16), 30.0)  # 30 px: beyond t = 10
    rows = term_gradients(model, profile, [{"lq": lq, "gt": gt, "flow": still},
                                           {"lq": lq, "gt": gt, "flow": fast}])
    assert set(rows[0]) == {"sr", "fidelity", "photometric", "smoothness"}
    assert rows[0]["fidelity"] == {"value": 0.0, "grad_norm": 0.0}  # every offset within t of no motion
    assert rows[1]["fidelity"]["value"] > 0 and rows[1]["fidelity"]["grad_norm"] > 0
    for key in ("value", "grad_norm"):  # the flow reaches the fidelity term only
        assert rows[1]["sr"][key] == pytest.approx(rows[0]["sr"][key], rel=1e-6)
    out, aux = model(lq, return_aux=True)  # the SR term's pull, by hand
    chosen = [p for n, p in model.named_parameters() if "offset" in n]
    sr = loss_terms(profile, model, lq, gt, out, aux, fast)["sr"]
    by_hand = torch.sqrt(sum((g ** 2).sum() for g in torch.autograd.grad(sr, chosen)))
    assert rows[0]["sr"]["value"] == pytest.approx(float(sr.detach()), rel=1e-6)
    assert rows[0]["sr"]["grad_norm"] == pytest.approx(float(by_hand), rel=1e-4)
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="selects no parameter"):
        term_gradients(model, profile, [], params=lambda name: False)
    with pytest.raises(ValueError, match="needs the flows"):
        term_gradients(model, profile, [{"lq": lq, "gt": gt}])


def test_fidelity_probes_switch_the_loss_on_late_and_put_it_on_each_groups_mean_offset():
    """``offset_fidelity_from``: no fidelity term before that iteration, the same one from it on;
    ``offset_fidelity_target="mean"``: the released loss on each group's mean offset, computed here
    by hand from the offsets the model returns (one pair per group in place of N)."""
    from dalign_nb.config import TrainConfig, with_overrides
    from dalign_nb.losses import offset_fidelity_loss
    from dalign_nb.ops import group_mean_offsets
    from dalign_nb.training.objective import loss_terms, term_gradients

    profile, model = _fidelity_setting()
    late = with_overrides(profile, {"train.offset_fidelity_from": 5})
    mean = with_overrides(profile, {"train.offset_fidelity_target": "mean",
                                    "train.offset_fidelity_threshold": 0.0})
    torch.manual_seed(1)
    lq, gt = torch.rand(2, 3, 3, 16, 16), torch.rand(2, 3, 64, 64)
    flow = torch.full((2, 3, 2, 16, 16), 30.0)  # beyond t = 10 for every offset
    out, aux = model(lq, return_aux=True)
    on = loss_terms(profile, model, lq, gt, out, aux, flow, iteration=0)["fidelity"]
    assert "fidelity" not in loss_terms(late, model, lq, gt, out, aux, flow, iteration=4)
    later = loss_terms(late, model, lq, gt, out, aux, flow, iteration=5)["fidelity"]
    assert later.item() == pytest.approx(on.item())
    assert "fidelity" in term_gradients(model, late, [{"lq": lq, "gt": gt, "flow": flow}])[0]  # a kept model
    assert "fidelity" not in term_gradients(model, late, [{"lq": lq, "gt": gt, "flow": flow}], iteration=0)[0]

    n = profile.model.offsets_per_group
    assert n == 9  # the 3 x 3 DCNv2: nine offsets per group, one mean
    got = loss_terms(mean, model, lq, gt, out, aux, flow)["fidelity"]
    l1 = aux["offsets"]["l1"].float()
    by_hand = offset_fidelity_loss(group_mean_offsets(l1, n), flow, 1.0, 0.0)
    each = offset_fidelity_loss(l1, flow, 1.0, 0.0)
    assert got.item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert got.item() != pytest.approx(each.item(), rel=1e-3)
    with pytest.raises(ValueError, match="offset_fidelity_target"):
        TrainConfig(offset_fidelity_target="median")
    with pytest.raises(ValueError, match="offset_fidelity_from"):
        TrainConfig(total_iter=10, periods=(10,), restart_weights=(1.0,), offset_fidelity_from=10)


def test_training_batches_stack_the_training_patches_as_the_trainer_does():
    from dalign_nb.training.objective import training_batches
    from dalign_nb.training.validation import build_data

    profile, _ = _fidelity_setting()  # tiny: batches of 2 patches of 8 x 8, with flows (the loss needs them)
    batches = training_batches(profile, 2)
    size, patch = profile.data.batch_size, profile.data.patch_size
    assert len(batches) == 2 and set(batches[0]) == {"lq", "gt", "flow"}
    assert batches[1]["lq"].shape == (size, profile.model.num_frame, 3, patch, patch)
    assert batches[1]["gt"].shape == (size, 3, 4 * patch, 4 * patch)
    train_set, _ = build_data(profile)
    torch.testing.assert_close(batches[1]["flow"][0], train_set[size]["flow"])  # the dataset's order
    with pytest.raises(ValueError, match="count must be in"):
        training_batches(profile, 0)


def test_alignment_health_reads_masks_offsets_and_features_and_finds_a_dead_cascade():
    from dalign_nb.metrics import bilinear_base

    clip = get_clips("synthetic", "test", num_scenes=1, seed=3,
                     scene_config=SceneConfig(height=64, width=64, num_frames=3))[0]
    model = _dcnv2().float()
    fresh = D.alignment_health(model, [clip])
    lq = torch.from_numpy(np.stack([clip.lr(i) for i in range(3)])).permute(0, 3, 1, 2)[None].float()
    with torch.no_grad():
        out, aux = model(lq, return_aux=True)
    assert fresh["num_clips"] == 1 and fresh["threshold"] == 10
    assert fresh["pcd_positive"] == pytest.approx(float((aux["aligned_feat"] > 0).float().mean()))
    assert fresh["residual"] == pytest.approx(float(255 * (out - bilinear_base(lq[:, 1])).abs().mean()))
    l1 = fresh["levels"]["l1"]
    assert l1["mask_mean"] == pytest.approx(float(aux["masks"]["l1"].mean()))
    assert l1["mean_abs_offset"] == pytest.approx(float(aux["offsets"]["l1"].abs().mean()))
    assert l1["feat_mean_abs"] == pytest.approx(float(aux["aligned"]["l1"].abs().mean()))
    assert fresh["levels"]["cascade"]["masks_off"] == 0 and fresh["levels"]["cascade"]["above"] == 0

    cas = model.pcd_align.cas_dcnpack.conv_offset  # (dy, dx) of 2 groups x 9 taps, then their 18 masks
    with torch.no_grad():
        cas.weight.zero_()
        cas.bias[:36] = 20.0  # every cascade offset 20 px: beyond the threshold
        cas.bias[36:] = -30.0  # every cascade mask sigmoid(-30): shut
    dead = D.alignment_health(model, [clip])
    c = dead["levels"]["cascade"]
    assert c["above"] == 1 and c["mean_abs_offset"] == pytest.approx(20) and c["masks_off"] == 1
    assert c["mask_mean"] < 1e-6
    assert dead["levels"]["l1"] == pytest.approx(l1)  # the pyramid before the cascade is as it was
    assert D.alignment_health(model, [clip], threshold=25)["levels"]["cascade"]["above"] == 0

    torch.manual_seed(0)
    tiny = dict(num_feat=8, num_frame=3, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1,
                with_tsa=False)
    untrained = EDVR(**tiny, zero_init_output=True)
    quiet = D.alignment_health(untrained, [clip])
    assert quiet["residual"] == 0 and quiet["psnr"] == pytest.approx(quiet["psnr_base"])  # adds nothing
    assert D.alignment_health(_model().float(), [clip])["levels"]["l1"]["mask_mean"] is None  # no masks
    guided = EDVR(**tiny, alignment="flow_guided")  # zero residues: its L1 offsets are the exact flow
    given = D.alignment_health(guided, [clip])["levels"]["l1"]
    flows = torch.from_numpy(np.ascontiguousarray(clip.flows)).abs().mean()
    assert given["mean_abs_offset"] == pytest.approx(float(flows), rel=1e-5)
    with pytest.raises(ValueError, match="threshold"):
        D.alignment_health(model, [clip], threshold=0)
