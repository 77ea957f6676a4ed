"""Metrics against hand-computed values, scikit-image and numpy.

The bicubic baseline's reference is derived by hand from MATLAB's ``imresize``: upscaling by 4,
output pixel i (0-based) sits at input coordinate ``u = (i + 1) / 4 + 0.5 * (1 - 1/4) - 1 =
i/4 - 3/8``, so its fractional part is 1/8, 3/8, 5/8 or 7/8 and the four taps
``floor(u) - 1 .. floor(u) + 2`` lie at distances from {1/8, 3/8, ..., 15/8}. Keys' cubic
(a = -0.5) at those distances is, over 1024: 987, 745, 399, 93 (below 1) and -49, -75, -45, -7
(1 1/8 .. 1 7/8); each phase's four weights sum to exactly 1024. Borders are mirrored
half-sample symmetrically (``np.pad(mode="symmetric")``).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio

from dalign_nb import metrics as M

# fractional part of u -> weights of taps floor(u) - 1 .. floor(u) + 2, over 1024
HAND_UP_X4 = {0.125: (-49, 987, 93, -7), 0.375: (-75, 745, 399, -45),
              0.625: (-45, 399, 745, -75), 0.875: (-7, 93, 987, -49)}


def hand_upscale_x4_1d(x: np.ndarray) -> np.ndarray:
    """Upscale axis 0 of ``x`` by 4 with the hand weights above."""
    n = x.shape[0]
    pad = np.pad(x, [(3, 3)] + [(0, 0)] * (x.ndim - 1), mode="symmetric")
    out = []
    for i in range(4 * n):
        u = i / 4 - 3 / 8
        m = math.floor(u)
        w = np.array(HAND_UP_X4[u - m]) / 1024
        taps = pad[m - 1 + 3 : m + 3 + 3]  # (4, ...)
        out.append(np.tensordot(w, taps, axes=(0, 0)))
    return np.stack(out)


def hand_upscale_x4(img: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (4H, 4W, C): rows then columns."""
    return hand_upscale_x4_1d(hand_upscale_x4_1d(img).swapaxes(0, 1)).swapaxes(0, 1)


def test_hand_phases_sum_to_one():
    assert all(sum(w) == 1024 for w in HAND_UP_X4.values())


# --------------------------------------------------------------------------- PSNR, SSIM, Y


def test_psnr_by_hand_is_the_mean_of_per_image_values():
    gt = torch.zeros(2, 3, 8, 8, dtype=torch.float64)
    x = torch.stack([torch.full((3, 8, 8), v, dtype=torch.float64) for v in (0.1, 0.01)])  # MSE 1e-2, 1e-4
    assert M.psnr(x, gt) == pytest.approx(30.0, abs=1e-9)  # (20 + 40) / 2, not 10 log10(1 / 5.05e-3)
    assert M.psnr(x[0], gt[0]) == pytest.approx(20.0, abs=1e-9)  # a single (3, H, W) image
    assert M.psnr(gt, gt) == math.inf
    over, gt1 = (torch.full((3, 4, 4), v, dtype=torch.float64) for v in (1.5, 0.9))
    assert M.psnr(over, gt1) == pytest.approx(20.0, abs=1e-9)  # the estimate is clamped to 1 first


@pytest.mark.parametrize("crop", [0, 3])
def test_psnr_matches_scikit_image(crop):
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 20, 24, generator=g)
    x = (gt + 0.05 * torch.randn(2, 3, 20, 24, generator=g)).clamp(0, 1)
    ref = []
    for a, b in zip(x, gt):
        a, b = a.permute(1, 2, 0).double().numpy(), b.permute(1, 2, 0).double().numpy()
        if crop:
            a, b = a[crop:-crop, crop:-crop], b[crop:-crop, crop:-crop]
        ref.append(peak_signal_noise_ratio(b, a, data_range=1.0))
    assert M.psnr(x, gt, crop_border=crop) == pytest.approx(np.mean(ref), abs=1e-9)


def test_y_channel_is_bt601():
    rgb = torch.eye(3)[:, :, None, None]  # pure red, green, blue as 3 images of 1x1
    y = M.rgb_to_y(rgb).flatten()
    expect = torch.tensor([16 + 65.481, 16 + 128.553, 16 + 24.966], dtype=torch.float64) / 255
    torch.testing.assert_close(y.double(), expect, rtol=0, atol=1e-7)
    img = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sk = rgb2ycbcr(img[0].permute(1, 2, 0).numpy())[..., 0] / 255  # scikit-image's BT.601, Y in [16, 235]
    np.testing.assert_allclose(M.rgb_to_y(img)[0, 0].numpy(), sk, rtol=0, atol=1e-12)
    # PSNR on Y: a pure blue error of 0.1 moves Y by 0.1 * 24.966 / 255
    gt = torch.zeros(1, 3, 4, 4)
    x = gt.clone()
    x[:, 2] = 0.1
    dy = 0.1 * 24.966 / 255
    assert M.psnr(x, gt, y_channel=True) == pytest.approx(-20 * math.log10(dy), abs=1e-6)


def test_ssim_by_hand_and_identity():
    """Constant images a, b: variances vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = 0.01^2."""
    a, b, c1 = 0.5, 0.25, 0.01**2
    x, y = torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b)
    assert M.ssim(x, y) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-9)
    img = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    assert M.ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    noisy = (img + 0.2 * torch.randn(img.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    assert 0 < M.ssim(noisy, img) < 0.9 and M.ssim(noisy, img, y_channel=True) < 1


def test_quantize_rounds_to_8_bits():
    x = torch.tensor([0.0, 0.5, 1.2, 100.4 / 255, 100.6 / 255])
    torch.testing.assert_close(M.quantize(x) * 255, torch.tensor([0.0, 128.0, 255.0, 100.0, 101.0]))


# --------------------------------------------------------------------------- bicubic baseline


def test_bicubic_baseline_is_matlab_imresize_by_hand():
    lq = torch.rand(2, 3, 6, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 0.8 + 0.1
    out = M.bicubic_baseline(lq)
    assert out.shape == (2, 3, 24, 28) and out.dtype == lq.dtype
    for i in range(2):
        ref = np.clip(hand_upscale_x4(lq[i].permute(1, 2, 0).numpy()), 0, 1)
        np.testing.assert_allclose(out[i].permute(1, 2, 0).numpy(), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(M.bicubic_baseline(lq[0]), out[0])  # a single image
    # torch's bicubic (a = -0.75, other border rule) is a different baseline
    torch_bic = F.interpolate(lq, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    assert (torch_bic - out).abs().max() > 0.01


# --------------------------------------------------------------------------- offsets and flows


def _offsets(*pairs) -> torch.Tensor:
    """(dy, dx) pairs, one per offset, constant over a 2x3 image -> (1, 2*len, 2, 3)."""
    return torch.tensor([c for p in pairs for c in p], dtype=torch.float32)[None, :, None, None].expand(
        1, 2 * len(pairs), 2, 3).clone()


def test_offset_flow_distance_on_constructed_offsets():
    flow = torch.tensor([3.0, 1.0])[None, :, None, None].expand(1, 2, 2, 3)  # u = 3 (x), v = 1 (y)
    off = _offsets((1.0, 3.0), (0.0, 0.0), (3.0, 1.0))  # dy, dx: the flow, zero, the flow transposed
    l2 = M.offset_flow_distance(off, flow)
    l1 = M.offset_flow_distance(off, flow, norm="l1")
    assert l2.shape == (1, 3, 2, 3)
    torch.testing.assert_close(l2[0, :, 0, 0], torch.tensor([0.0, math.sqrt(10), math.sqrt(8)]))
    torch.testing.assert_close(l1[0, :, 0, 0], torch.tensor([0.0, 4.0, 4.0]))
    # extra leading dimensions (EDVR's frames) broadcast
    assert M.offset_flow_distance(off[:, None].expand(1, 4, 6, 2, 3), flow[:, None]).shape == (1, 4, 3, 2, 3)
    with pytest.raises(ValueError, match="norm"):
        M.offset_flow_distance(off, flow, norm="l3")


def test_closest_offset_and_share_within():
    flow = torch.zeros(1, 2, 2, 3)
    off = _offsets((0.0, 2.0), (0.0, 0.5))
    off[0, 0:2, 1, 2] = 0.1  # offset 0 is closest at pixel (1, 2): distance 0.1 * sqrt(2)
    dist, idx = M.closest_offset(off, flow)
    expect_idx = torch.tensor([[[1, 1, 1], [1, 1, 0]]])
    assert torch.equal(idx, expect_idx)
    torch.testing.assert_close(dist, torch.tensor([[[0.5, 0.5, 0.5], [0.5, 0.5, 0.1 * math.sqrt(2)]]]))
    assert M.share_within(dist, 0.2) == pytest.approx(1 / 6)
    assert M.share_within(dist, 1.0) == 1.0
    valid = torch.tensor([[[True, False, False], [False, False, True]]])
    assert M.share_within(dist, 0.2, valid) == pytest.approx(0.5)  # 1 of the 2 valid pixels
    assert math.isnan(M.share_within(dist, 0.2, torch.zeros_like(valid)))


def test_offset_diversity_of_known_sets():
    cross = _offsets((2.0, 0.0), (-2.0, 0.0), (0.0, 2.0), (0.0, -2.0))  # around 0, each 2 px away
    assert torch.allclose(M.offset_diversity(cross), torch.full((1, 1, 2, 3), 2.0))
    pair = _offsets((0.0, 0.0), (0.0, 2.0))  # mean (0, 1), each 1 px from it
    assert torch.allclose(M.offset_diversity(pair), torch.ones(1, 1, 2, 3))
    same = _offsets((5.0, -3.0), (5.0, -3.0), (5.0, -3.0))  # large, but no diversity
    assert M.offset_diversity(same).abs().max() == 0
    groups = M.offset_diversity(torch.cat([pair, cross], 1), deform_groups=3)  # G = 3, N = 2
    torch.testing.assert_close(groups[0, :, 0, 0], torch.tensor([1.0, 2.0, 2.0]))
    rand = torch.randn(2, 2 * 2 * 5, 3, 4, generator=torch.Generator().manual_seed(5))
    vec = rand.view(2, 2, 5, 2, 3, 4)  # (B, G, N, (dy, dx), H, W)
    ref = vec.var(2, unbiased=False).sum(2).sqrt()  # total variance of the 2-D vectors
    torch.testing.assert_close(M.offset_diversity(rand, 2), ref)
    assert M.offset_diversity(_offsets((1.0, 1.0))).abs().max() == 0  # N = 1: one offset, no spread


def test_pearson_r_matches_numpy():
    rng = np.random.default_rng(6)
    a = rng.normal(size=50)
    b = 0.7 * a + rng.normal(size=50)
    assert M.pearson_r(torch.from_numpy(a), b) == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    assert M.pearson_r([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert M.pearson_r([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same number"):
        M.pearson_r([1, 2], [1, 2, 3])


def test_bilinear_base_is_what_an_untrained_edvr_returns():
    from dalign_nb.models.edvr import EDVR, EDVRConfig

    torch.manual_seed(0)
    config = EDVRConfig(num_feat=8, num_frame=3, deformable_groups=1, num_extract_block=1,
                        num_reconstruct_block=1, with_tsa=False, zero_init_output=True)
    model = EDVR.from_config(config).eval()
    x = torch.rand(2, 3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), M.bilinear_base(x[:, 1]))
    assert M.bilinear_base(x[0, 1]).shape == (3, 64, 64)
