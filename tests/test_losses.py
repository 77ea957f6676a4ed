"""Charbonnier and offset-fidelity loss (Eq. 4-5) against hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from dalign_nb.alignment import AlignmentConfig
from dalign_nb.config import TrainConfig
from dalign_nb.losses import (
    GREY,
    CharbonnierLoss,
    OffsetFidelityLoss,
    census_transform,
    charbonnier_loss,
    offset_fidelity_loss,
    photometric_warping_loss,
    smoothness_loss,
    soft_hamming,
)


def _t(values):
    return torch.tensor(values, dtype=torch.float64)


def test_charbonnier_hand_values():
    pred, target = _t([0.0, 3.0]), _t([4.0, 0.0])
    assert charbonnier_loss(pred, target).item() == pytest.approx(3.5, abs=1e-12)  # (4 + 3) / 2
    zero = torch.zeros(3, dtype=torch.float64)
    assert charbonnier_loss(zero, zero).item() == pytest.approx(1e-6, rel=1e-9)  # sqrt(eps), eps = 1e-12
    assert CharbonnierLoss(loss_weight=2.0)(pred, target).item() == pytest.approx(7.0, abs=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        charbonnier_loss(pred, zero)


def test_below_threshold_is_zero():
    offset = _t([[[[9.0, -9.9]], [[0.5, 10.0]]]])  # (1, 2, 1, 2): |d| <= t = 10 everywhere
    flow = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    assert offset_fidelity_loss(offset, flow).item() == 0.0
    assert offset_fidelity_loss(offset, flow, normalization="paper").item() == 0.0


def test_above_threshold_hand_value_and_lambda():
    # dy = [12, 3], dx = [-15, 10], flow 0: the components beyond t = 10 are 12 and 15
    # (10 itself is not: H is strict, as the released code's `abs_diff > threshold`).
    offset = _t([[[[12.0, 3.0]], [[-15.0, 10.0]]]])
    flow = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    assert offset_fidelity_loss(offset, flow).item() == pytest.approx(27 / 4)  # mean over (2, H, W)
    assert offset_fidelity_loss(offset, flow, normalization="paper").item() == pytest.approx(27.0)
    assert offset_fidelity_loss(offset, flow, loss_weight=0.5).item() == pytest.approx(27 / 8)
    assert offset_fidelity_loss(offset, flow, threshold=2.0).item() == pytest.approx((12 + 3 + 15 + 10) / 4)
    assert OffsetFidelityLoss(0.5, 10.0)(offset, flow).item() == pytest.approx(27 / 8)


def test_flow_is_flipped_to_dy_dx():
    flow = _t([[[[4.0]], [[-20.0]]]])  # u = 4, v = -20
    assert offset_fidelity_loss(_t([[[[-20.0]], [[4.0]]]]), flow).item() == 0.0  # dy = v, dx = u
    # zero offsets: |0 - v| = 20 > 10 counts, |0 - u| = 4 does not: mean over 2 components
    assert offset_fidelity_loss(torch.zeros(1, 2, 1, 1, dtype=torch.float64), flow).item() == 10.0


def test_groups_pairs_and_batch_are_summed():
    flow = torch.zeros(2, 2, 1, 1, dtype=torch.float64)
    # G = 2 (or N = 2): pair 0 (dy, dx) = (15, 0), pair 1 = (0, -11) -> 15/2 + 11/2 = 13 per sample
    offset = _t([[15.0, 0.0, 0.0, -11.0], [0.0, 0.0, 0.0, 30.0]]).view(2, 4, 1, 1)
    assert offset_fidelity_loss(offset, flow).item() == pytest.approx(13 + 15)
    # a frame axis (B, T, ...) as in EDVR's aux joins the batch
    assert offset_fidelity_loss(offset[None], flow[None]).item() == pytest.approx(28.0)


def test_matches_the_released_algorithm_on_random_offsets():
    torch.manual_seed(0)
    offset, flow = torch.randn(3, 2 * 4 * 9, 5, 6) * 12, torch.randn(3, 2, 5, 6) * 6
    # the released OffsetFidelityLoss: every pair to the batch axis, flow flipped and repeated
    n, c, h, w = offset.shape
    rep = flow.flip(1).repeat(1, c // 2, 1, 1).view(-1, 2, h, w)
    diff = (offset.view(-1, 2, h, w) - rep).abs()
    released = torch.sum(torch.mean((diff > 10).float() * diff, dim=(1, 2, 3)))
    torch.testing.assert_close(offset_fidelity_loss(offset, flow), released)
    paper = offset_fidelity_loss(offset, flow, normalization="paper")
    torch.testing.assert_close(paper, released * 2 * h * w)


def test_gradient_only_beyond_threshold():
    torch.manual_seed(1)
    offset = (torch.randn(2, 6, 4, 4, dtype=torch.float64) * 12).requires_grad_()
    flow = torch.randn(2, 2, 4, 4, dtype=torch.float64) * 3
    offset_fidelity_loss(offset, flow, loss_weight=2.0).backward()
    diff = offset.detach() - flow.flip(1).repeat(1, 3, 1, 1)
    beyond = diff.abs() > 10
    assert 0 < beyond.sum() < beyond.numel()  # both kinds present
    expected = torch.where(beyond, 2.0 * diff.sign() / (2 * 4 * 4), torch.zeros_like(diff))
    torch.testing.assert_close(offset.grad, expected)
    assert (offset.grad[~beyond] == 0).all()


def test_bad_arguments():
    flow = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match="normalization"):
        offset_fidelity_loss(torch.zeros(1, 2, 4, 4), flow, normalization="mean")
    with pytest.raises(ValueError, match="offset must be"):
        offset_fidelity_loss(torch.zeros(1, 3, 4, 4), flow)
    with pytest.raises(ValueError, match="offset must be"):
        offset_fidelity_loss(torch.zeros(1, 2, 4, 5), flow)
    with pytest.raises(ValueError, match="frame axis"):
        offset_fidelity_loss(torch.zeros(1, 1, 2, 4, 4), flow)


# --------------------------------------------------------------------------- photometric warping loss


def _shifted_clip(shift: int = 2, size: int = 32):
    """Three LR frames cut from one random image: the neighbours are the centre moved by
    ``shift`` px to the left, so the centre-to-neighbour flow is u = -shift everywhere."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, size, size + 2 * shift + 8, generator=g, dtype=torch.float64)
    centre = image[..., 4:4 + size]
    neighbour = image[..., 4 + shift:4 + shift + size]  # neighbour(p) = centre(p + (shift, 0))
    return torch.stack([neighbour, centre, neighbour], 1)  # (1, 3, 3, size, size)


def _constant_offsets(u: float, pairs: int = 1, size: int = 32):
    offsets = {}
    for level, s in (("l1", 1), ("l2", 2), ("l3", 4)):
        off = torch.zeros(1, 3, 2 * pairs, size // s, size // s, dtype=torch.float64)
        off[:, :, 1::2] = u / s  # dx; dy = 0
        offsets[level] = off
    return offsets


def test_photometric_loss_vanishes_at_the_true_motion_only():
    lq = _shifted_clip(shift=2)
    exact = photometric_warping_loss(lq, _constant_offsets(-2.0), center=1, levels=("l1",))
    assert exact.item() == pytest.approx(1e-3, rel=1e-6)  # sqrt(eps): nothing left but eps
    # the opposite direction and no motion leave the frame difference: far larger
    for u in (0.0, 2.0):
        assert photometric_warping_loss(lq, _constant_offsets(u), 1, ("l1",)).item() > 0.1
    # half-size level: the frames are 2x2-averaged and the motion is one pixel there
    half = photometric_warping_loss(lq, _constant_offsets(-2.0), 1, ("l2",))
    assert half.item() == pytest.approx(1e-3, rel=1e-6)


def test_photometric_loss_ignores_samples_from_outside_the_frame():
    """A 40 px offset samples only outside the 32 px frame: no pixel counts, the loss is 0
    (by the clamp of the pixel count), not the zeros-padding difference."""
    lq = _shifted_clip(shift=2)
    assert photometric_warping_loss(lq, _constant_offsets(-40.0), 1, ("l1",)).item() == 0.0


def test_photometric_loss_averages_every_offset_pair_and_its_gradient_points_to_the_motion():
    lq = _shifted_clip(shift=2)
    one = photometric_warping_loss(lq, _constant_offsets(-1.5), 1, ("l1",))
    offsets = _constant_offsets(-1.5, pairs=2)
    offsets["l1"][:, :, 3] = -2.0  # the second pair on the true motion
    two = photometric_warping_loss(lq, offsets, 1, ("l1",))
    assert two.item() == pytest.approx((one.item() + 1e-3) / 2, rel=1e-6)
    off = _constant_offsets(-1.5)["l1"].requires_grad_(True)
    photometric_warping_loss(lq, {"l1": off}, 1, ("l1",)).backward()
    assert off.grad[:, [0, 2], 1].sum() > 0  # descending the gradient moves dx from -1.5 towards -2
    with pytest.raises(ValueError, match="neighbour"):
        photometric_warping_loss(lq[:, :1], {"l1": off[:, :1]}, 0, ("l1",))


def _spread(shifts, spreads):
    """Offsets per level whose group g holds the N copies ``shifts[g] + d`` for d in ``spreads``
    (dx only, LR pixels at l1; halved per level as the motion is)."""
    offsets = {}
    for level, s in (("l1", 1), ("l2", 2), ("l3", 4)):
        off = torch.zeros(1, 3, 2 * len(shifts) * len(spreads), 32 // s, 32 // s, dtype=torch.float64)
        for g, u in enumerate(shifts):
            for n, d in enumerate(spreads):
                off[:, :, 2 * (g * len(spreads) + n) + 1] = (u + d) / s
        offsets[level] = off
    return offsets


@pytest.mark.parametrize("spreads", [(0.7, -0.7), (1.3, 0.0, -1.3)])
def test_photometric_mean_target_warps_each_groups_mean_offset(spreads):
    """N copies +d, (0,) -d around a shift s: "mean" gives the loss "each" gives the single offset
    s, per group (G = 2, each group around its own shift); "each" sees the spread and is larger."""
    lq, shifts = _shifted_clip(shift=2), (-1.5, -2.0)
    n = len(spreads)
    spread = _spread(shifts, spreads)
    mean = photometric_warping_loss(lq, spread, 1, target="mean", num_offsets=n)
    torch.testing.assert_close(mean, photometric_warping_loss(lq, _spread(shifts, (0.0,)), 1))
    assert photometric_warping_loss(lq, spread, 1, target="each").item() > mean.item() + 0.01
    one = _spread(shifts[:1], (0.0,))  # N = 1: the mean is the offset itself
    torch.testing.assert_close(photometric_warping_loss(lq, one, 1, target="mean"),
                               photometric_warping_loss(lq, one, 1, target="each"))
    with pytest.raises(ValueError, match="2\\*G\\*N"):
        photometric_warping_loss(lq, spread, 1, target="mean", num_offsets=n + 1)
    with pytest.raises(ValueError, match="target"):
        photometric_warping_loss(lq, spread, 1, target="median")


def test_offsets_per_group_is_n_of_each_alignment_kind():
    kinds = {"dcn": 9, "flow_guided": 9, "decomposed": 15, "flow": 1, "image": 1}
    for kind, n in kinds.items():
        assert AlignmentConfig(kind=kind, num_offsets=15).offsets_per_group == n
    assert AlignmentConfig(kind="dcn", kernel_size=5).offsets_per_group == 25


def test_train_config_accepts_only_the_two_photometric_targets():
    assert TrainConfig().photometric_target == "each"
    assert TrainConfig(photometric_target="mean").photometric_target == "mean"
    with pytest.raises(ValueError, match="photometric_target"):
        TrainConfig(photometric_target="median")


# --------------------------------------------------------------------------- census and smoothness terms


def test_census_of_a_constant_image_is_zero_and_a_hand_value():
    flat = torch.full((2, 3, 9, 11), 0.37, dtype=torch.float64)
    census = census_transform(flat)
    assert census.shape == (2, 49, 9, 11) and census.abs().max() == 0  # borders included
    spot = flat.clone()
    spot[0, :, 4, 5] += 0.1  # grey rises by 25.5 at one pixel
    census = census_transform(spot)
    d = 25.5 * sum(GREY)  # BT.601 weights sum to 0.9999
    # the pixel to the right of the spot sees it at patch position (3, 2) (row, column of 7 x 7)
    assert census[0, 3 * 7 + 2, 4, 6].item() == pytest.approx(d / (0.81 + d * d) ** 0.5, rel=1e-9)
    assert census[0, 3 * 7 + 4, 4, 5].item() == pytest.approx(-d / (0.81 + d * d) ** 0.5, rel=1e-9)
    assert census[0, :, 0, 0].abs().max() == 0  # farther than 3 px from the spot
    with pytest.raises(ValueError, match="patch_size"):
        census_transform(flat, patch_size=4)


def _smooth_shifted_clip(shift: int = 2, size: int = 32):
    """``_shifted_clip`` of a blurred random image: texture wider than a pixel, as in real frames
    (on white noise every wrong offset is equally wrong beyond one pixel)."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, size + 4, size + 2 * shift + 12, generator=g, dtype=torch.float64)
    image = torch.nn.functional.avg_pool2d(image, 5, stride=1)  # (1, 3, size, size + 2 shift + 8)
    centre = image[..., 4:4 + size]
    neighbour = image[..., 4 + shift:4 + shift + size]
    return torch.stack([neighbour, centre, neighbour], 1)


def test_census_loss_is_zero_at_the_true_motion_and_grows_away_from_it():
    lq = _smooth_shifted_clip(shift=2)
    losses = [photometric_warping_loss(lq, _constant_offsets(u), 1, ("l1",), penalty="census").item()
              for u in (-2.0, -1.5, -1.0, -0.5, 0.0)]
    assert losses == sorted(losses) and losses[0] < 0.1 * losses[-1]
    # on pixels 3 px or more from any sample taken outside the frame the distance is exactly 0
    lq = _shifted_clip(shift=2)
    warped = torch.roll(lq[:, 0], shifts=2, dims=-1)  # the neighbour moved back onto the centre
    dist = soft_hamming(census_transform(warped), census_transform(lq[:, 1]))
    assert dist[..., 3:-3, 5:-3].abs().max() == 0 and dist[..., 3:-3, 5:-3].numel() > 0
    with pytest.raises(ValueError, match="penalty"):
        photometric_warping_loss(lq, _constant_offsets(-2.0), 1, penalty="ssim")


def test_census_term_is_blind_to_a_brightness_change_that_the_rgb_term_sees():
    lq = _shifted_clip(shift=2)
    lq = torch.stack([0.8 * lq[:, 0] + 0.1, lq[:, 1], 0.8 * lq[:, 2] + 0.1], 1)  # darker neighbours
    exact = _constant_offsets(-2.0)
    rgb = photometric_warping_loss(lq, exact, 1, ("l1",)).item()
    census = photometric_warping_loss(lq, exact, 1, ("l1",), penalty="census").item()
    census_wrong = photometric_warping_loss(lq, _constant_offsets(0.0), 1, ("l1",), penalty="census").item()
    assert rgb > 0.04  # the colour difference stays at the true motion
    assert census < 0.1 * census_wrong  # the brightness order does not


def test_census_plus_rgb_is_the_sum_of_the_two_terms_and_keeps_the_colour_term_precise():
    lq = _smooth_shifted_clip(shift=2)
    for u in (-2.0, -1.7, -0.5):
        off = _constant_offsets(u)
        both = photometric_warping_loss(lq, off, 1, ("l1", "l2"), penalty="census+rgb").item()
        parts = [photometric_warping_loss(lq, off, 1, ("l1", "l2"), penalty=p).item()
                 for p in ("census", "rgb")]
        assert both == pytest.approx(sum(parts), rel=1e-12)
    # a quarter pixel off the motion costs the sum
    near = [photometric_warping_loss(lq, _constant_offsets(u), 1, ("l1",), penalty="census+rgb").item()
            for u in (-2.0, -1.75)]
    assert near[0] < near[1]
    assert TrainConfig(photometric_penalty="census+rgb").photometric_penalty == "census+rgb"


def _step_field(size: int = 16, column: int = 8):
    """Offsets (1, 3, 2, size, size) at l1: dx = 0 left of ``column``, 1 from it on."""
    off = torch.zeros(1, 3, 2, size, size, dtype=torch.float64)
    off[:, :, 1, :, column:] = 1.0
    return {"l1": off}


def test_smoothness_is_zero_for_a_constant_field_and_weaker_across_an_image_edge():
    lq = torch.rand(1, 3, 3, 16, 16, dtype=torch.float64)
    const = {"l1": torch.full((1, 3, 2, 16, 16), 1.7, dtype=torch.float64)}
    assert smoothness_loss(lq, const, 1, ("l1",)).item() == 0.0
    flat = torch.full((1, 3, 3, 16, 16), 0.5, dtype=torch.float64)
    edge = flat.clone()
    edge[:, 1, :, :, 8:] = 1.0  # the reference frame steps by 0.5 where the offsets step
    plain = smoothness_loss(flat, _step_field(), 1, ("l1",))
    # by hand: |d_x dx| = 1 on one column of 15 differences, on 1 of 2 components, 2 neighbours
    assert plain.item() == pytest.approx(1 / 15 / 2, rel=1e-12)
    across = smoothness_loss(edge, _step_field(), 1, ("l1",), edge_weight=10.0)
    assert across.item() == pytest.approx(plain.item() * math.exp(-5.0), rel=1e-12)
    moved = edge.clone()
    moved[:, 1, :, :, 8:] = 0.5
    moved[:, 1, :, :, 4:] = 1.0  # an edge elsewhere does not excuse the step
    assert smoothness_loss(moved, _step_field(), 1, ("l1",)).item() == pytest.approx(plain.item())


def test_train_config_checks_the_self_supervised_terms():
    assert TrainConfig().photometric_penalty == "rgb" and TrainConfig().smoothness_weight == 0
    with pytest.raises(ValueError, match="photometric_penalty"):
        TrainConfig(photometric_penalty="ssim")
    with pytest.raises(ValueError, match="smoothness_weight"):
        TrainConfig(smoothness_weight=-1.0)


def test_fidelity_flow_pools_and_scales_the_flow_to_a_coarser_level_and_zero_for_the_cascade():
    from dalign_nb.losses import fidelity_flow

    flow = torch.arange(2 * 2 * 4 * 4, dtype=torch.float32).view(1, 2, 2, 4, 4)  # (B, T, 2, h, w)
    assert fidelity_flow(flow, torch.zeros(1, 2, 18, 4, 4)) is flow  # L1: the flow itself
    half = fidelity_flow(flow, torch.zeros(1, 2, 2, 2, 2))  # L2: half the size, its pixels 2 LR px
    assert half.shape == (1, 2, 2, 2, 2)
    torch.testing.assert_close(half[0, 1, 0, 1, 0], flow[0, 1, 0, 2:4, 0:2].mean() / 2)
    assert fidelity_flow(flow, torch.zeros(1, 2, 2, 4, 4), cascade_target_zero=True).abs().max() == 0


def test_the_trainer_applies_the_fidelity_loss_at_the_levels_asked(tmp_path):
    """A 4x rate with the loss on L1 alone and on L1-L3 and the cascade: the term is logged in both,
    larger (or equal) with more levels from the same start; a level the model lacks is refused."""
    from dalign_nb.config import get_profile, with_overrides
    from dalign_nb.train import train

    tiny = {"model.num_feat": 8, "model.num_extract_block": 1, "model.num_reconstruct_block": 1,
            "data.patch_size": 16, "data.batch_size": 2, "data.num_scenes": 1, "data.val_clips": 1,
            "data.val_frames": 1, "train.total_iter": 1, "train.log_every": 1, "train.val_every": 10**6,
            "train.offset_fidelity_weight": 1.0, "train.offset_fidelity_threshold": 0.0}
    first = {}
    for name, levels in (("l1", ("l1",)), ("all", ("l1", "l2", "l3", "cascade"))):
        profile = with_overrides(get_profile("align"), {**tiny, "train.offset_fidelity_levels": levels})
        res = train(profile, tmp_path / name, resume=False, device="cpu", progress=False)
        first[name] = res.history["train"][0]["terms"]["fidelity"]
    assert 0 < first["l1"] < first["all"]  # threshold 0: every level adds its distance to its target
    assert profile.model.cascade_is_residual  # the cascade's target: zero motion
    assert not with_overrides(profile, {"model.alignment.kind": "image"}).model.cascade_is_residual
    with pytest.raises(ValueError, match="offset_fidelity_levels"):
        with_overrides(get_profile("align"), {"train.offset_fidelity_levels": ("l7",),
                                              "train.offset_fidelity_weight": 1.0})
    with pytest.raises(ValueError, match="offset_fidelity_levels"):
        with_overrides(get_profile("align"), {"train.offset_fidelity_levels": ("cascad",)})


def _blurred_noise_clip(shift: int, size: int = 64, blur: int = 2):
    """``_shifted_clip`` from an image of blurred noise (Gaussian, sigma ``blur`` px): structure
    at several scales, as natural frames have."""
    g = torch.Generator().manual_seed(0)
    shape = (3, 1, size + 6 * blur, size + 2 * shift + 8 + 6 * blur)
    noise = torch.rand(shape, generator=g, dtype=torch.float64)
    k = torch.exp(-torch.arange(-3 * blur, 3 * blur + 1, dtype=torch.float64) ** 2 / (2 * blur ** 2))
    k = k / k.sum()
    image = F.conv2d(F.conv2d(noise, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))[:, 0][None]
    centre, neighbour = image[..., 4:4 + size], image[..., 4 + shift:4 + shift + size]
    return torch.stack([neighbour, centre, neighbour], 1)


def test_photometric_scales_add_the_pooled_offsets_term_and_reach_a_motion_beyond_a_pixel():
    lq = _shifted_clip(shift=2)
    off = _constant_offsets(-1.0)
    both = photometric_warping_loss(lq, {"l1": off["l1"]}, 1, ("l1",), scales=(1, 2))
    l1, l2 = (photometric_warping_loss(lq, off, 1, (lvl,)) for lvl in ("l1", "l2"))
    # a constant field pools exactly: the pooled term is the half-size level's
    assert both.item() == pytest.approx((l1.item() + l2.item()) / 2, rel=1e-12)
    # a 6 px motion from offsets at 0: the census term at the level itself pulls the wrong way
    # on this image; on the offsets pooled by 4 (1.5 coarse px away) it pulls towards the motion
    lq = _blurred_noise_clip(shift=6)
    grads = {}
    for scales in ((1,), (4,)):
        zero = torch.zeros(1, 3, 2, 64, 64, dtype=torch.float64, requires_grad=True)
        photometric_warping_loss(lq, {"l1": zero}, 1, ("l1",), penalty="census", scales=scales).backward()
        grads[scales] = zero.grad[:, [0, 2], 1].sum().item()  # > 0: descending moves dx towards -6
    assert grads[(1,)] < 0 < grads[(4,)]
    with pytest.raises(ValueError, match="scales"):
        photometric_warping_loss(lq, {"l1": zero}, 1, ("l1",), scales=(0,))
    with pytest.raises(ValueError, match="photometric_scales"):
        TrainConfig(photometric_scales=())
