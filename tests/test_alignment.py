"""Alignment modules: BasicSR DCNv2Pack behaviour, Remark 1, flow / image / flow-guided alignment."""

import pytest
import torch
import torch.nn.functional as F
import torchvision

from dalign_nb.alignment import (
    ALIGNMENT_KINDS,
    Aligned,
    AlignmentConfig,
    DCNAlignment,
    DecomposedAlignment,
    FlowAlignment,
    FlowGuidedAlignment,
    ImageAlignment,
    build_alignment,
)
from dalign_nb.ops import decomposed_deform_conv2d, deform_conv2d, flow_to_offset


def _randomise_offsets(module, std=0.3, bias_std=2.0):
    with torch.no_grad():
        module.conv_offset.weight.normal_(0, std)
        module.conv_offset.bias.normal_(0, bias_std)


def _shift(x, dy, dx):
    """out(p) = x(p + (dy, dx)) for integer shifts, zeros outside."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    ys, xs = slice(max(0, -dy), min(h, h - dy)), slice(max(0, -dx), min(w, w - dx))
    ys_src, xs_src = slice(ys.start + dy, ys.stop + dy), slice(xs.start + dx, xs.stop + dx)
    out[..., ys, xs] = x[..., ys_src, xs_src]
    return out


def test_dcn_parameters_are_basicsr_dcnv2pack():
    shapes = {k: tuple(v.shape) for k, v in DCNAlignment(16, 3, deform_groups=4).state_dict().items()}
    assert shapes == {"weight": (16, 16, 3, 3), "bias": (16,), "conv_offset.weight": (3 * 4 * 9, 16, 3, 3),
                      "conv_offset.bias": (3 * 4 * 9,)}
    v1 = DCNAlignment(16, 3, deform_groups=4, modulated=False)
    assert tuple(v1.conv_offset.weight.shape) == (2 * 4 * 9, 16, 3, 3)


def test_dcn_starts_as_half_a_convolution():
    torch.manual_seed(0)
    m = DCNAlignment(8, 3, deform_groups=2)
    with torch.no_grad():
        m.bias.normal_()
    x, feat = torch.randn(2, 8, 6, 7), torch.randn(2, 8, 6, 7)
    out = m.align(x, feat)
    assert out.offset.abs().max() == 0 and tuple(out.offset.shape) == (2, 2 * 2 * 9, 6, 7)
    torch.testing.assert_close(out.mask, torch.full((2, 2 * 9, 6, 7), 0.5))  # sigmoid(0)
    expected = 0.5 * F.conv2d(x, m.weight, padding=1) + m.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(out.feat, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("modulated", [True, False])
def test_dcn_offsets_and_masks_split_as_basicsr(modulated):
    torch.manual_seed(1)
    m = DCNAlignment(8, 3, deform_groups=2, modulated=modulated)
    _randomise_offsets(m)
    x, feat = torch.randn(1, 8, 9, 8), torch.randn(1, 8, 9, 8)
    raw = m.conv_offset(feat)
    if modulated:  # o1, o2, mask = chunk(3); offset = cat(o1, o2); mask = sigmoid
        o1, o2, mk = torch.chunk(raw, 3, dim=1)
        offset, mask = torch.cat([o1, o2], 1), torch.sigmoid(mk)
    else:
        offset, mask = raw, None
    expected = torchvision.ops.deform_conv2d(x, offset, m.weight, m.bias, padding=1, mask=mask)
    out = m.align(x, feat)
    assert offset.abs().mean() > 1.0  # offsets of pixels, not a trivial check
    torch.testing.assert_close(out.offset, offset)
    torch.testing.assert_close(out.feat, expected, atol=1e-4, rtol=1e-4)
    m.backend = "torchvision"
    torch.testing.assert_close(m(x, feat), expected, atol=1e-5, rtol=1e-5)


def test_decomposed_alignment_is_remark_1():
    torch.manual_seed(2)
    m = DecomposedAlignment(8, num_offsets=5, deform_groups=2, modulated=True).double()
    x, feat = torch.randn(2, 8, 5, 6, dtype=torch.float64), torch.randn(2, 8, 5, 6, dtype=torch.float64)
    # at initialisation all offsets are zero: N copies of x through a 1x1 conv
    start = m.align(x, feat)
    torch.testing.assert_close(start.feat, F.conv2d(0.5 * x, m.weight.sum(-1)[..., None, None], m.bias))
    _randomise_offsets(m)
    out = m.align(x, feat)
    assert tuple(out.offset.shape) == (2, 2 * 2 * 5, 5, 6) and tuple(out.mask.shape) == (2, 2 * 5, 5, 6)
    o1, o2, mk = torch.chunk(m.conv_offset(feat), 3, dim=1)
    torch.testing.assert_close(out.offset, torch.cat([o1, o2], 1))
    naive = decomposed_deform_conv2d(x, out.offset, m.weight, m.bias, torch.sigmoid(mk), backend="naive")
    torch.testing.assert_close(out.feat, naive, atol=1e-10, rtol=1e-10)
    assert DecomposedAlignment(8, num_offsets=3).align(x.float(), feat.float()).mask is None


def test_flow_alignment_warps_features_then_1x1():
    torch.manual_seed(3)
    m = FlowAlignment(4)
    assert (m.num_offsets, m.deform_groups, m.modulated) == (1, 1, False)
    with torch.no_grad():
        m.conv_offset.bias.copy_(torch.tensor([1.0, -2.0]))  # dy = 1, dx = -2 everywhere
    x = torch.randn(1, 4, 6, 7)
    out = m.align(x, torch.randn(1, 4, 6, 7))
    expected = F.conv2d(_shift(x, 1, -2), m.weight[..., None], m.bias)
    torch.testing.assert_close(out.feat, expected, atol=1e-5, rtol=1e-5)


def test_image_alignment_warps_the_image_then_extracts():
    m = ImageAlignment(4)
    with torch.no_grad():
        m.conv_offset.bias.copy_(torch.tensor([1.0, 0.0]))  # dy = 1 at the level's resolution
    image = torch.rand(1, 3, 8, 8)
    embed = lambda img: img * 2  # noqa: E731  a stand-in feature extractor
    out = m.align(None, torch.zeros(1, 4, 4, 4), image=image, embed=embed)  # level at half resolution
    assert tuple(out.offset.shape) == (1, 2, 4, 4) and out.mask is None
    torch.testing.assert_close(out.feat, 2 * _shift(image, 2, 0))  # 1 px at 1/2 size = 2 px on the image
    base = torch.tensor([3.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 8, 8)  # flow u = 3 as a base
    out = m.align(None, torch.zeros(1, 4, 8, 8), flow=base, image=image, embed=embed)
    torch.testing.assert_close(out.feat, 2 * _shift(image, 1, 3))
    with pytest.raises(ValueError, match="image"):
        m.align(None, torch.zeros(1, 4, 8, 8))


def test_flow_guided_offsets_are_flow_plus_bounded_residue():
    torch.manual_seed(4)
    m = FlowGuidedAlignment(8, 3, deform_groups=2, max_residue_magnitude=5.0)
    x, feat, flow = torch.randn(1, 8, 6, 6), torch.randn(1, 8, 6, 6), torch.randn(1, 2, 6, 6) * 4
    base = flow_to_offset(flow, 2, 9)  # (1, 2*2*9, 6, 6)
    out = m.align(x, feat, flow)
    torch.testing.assert_close(out.offset, base)  # zero-initialised residue: offsets = flow
    torch.testing.assert_close(out.feat, deform_conv2d(x, base, m.weight, m.bias, out.mask, padding=1))
    _randomise_offsets(m, std=5.0, bias_std=50.0)
    residue = m.align(x, feat, flow).offset - base
    assert residue.abs().max() <= 5.0 + 1e-5 and residue.abs().max() > 4.9
    with pytest.raises(ValueError, match="flow"):
        m.align(x, feat)


@pytest.mark.parametrize("kind", ALIGNMENT_KINDS)
def test_every_kind_shares_the_interface(kind):
    torch.manual_seed(5)
    config = AlignmentConfig(kind=kind, num_offsets=3)
    m = build_alignment(config, num_feat=8, deform_groups=2)
    nbr, feat = torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8)
    flow, image = torch.randn(2, 2, 8, 8), torch.rand(2, 3, 8, 8)
    embed = torch.nn.Conv2d(3, 8, 3, 1, 1)
    out = m.align(nbr, feat, flow, image, embed)
    g, n = {"dcn": (2, 9), "decomposed": (2, 3), "flow": (1, 1), "image": (1, 1), "flow_guided": (2, 9)}[kind]
    assert isinstance(out, Aligned) and tuple(out.feat.shape) == (2, 8, 8, 8)
    assert tuple(out.offset.shape) == (2, 2 * g * n, 8, 8)
    if kind in ("flow", "image"):
        assert out.mask is None
    else:  # the config's default is modulated=True
        assert tuple(out.mask.shape) == (2, g * n, 8, 8)
    torch.testing.assert_close(m(nbr, feat, flow, image, embed), out.feat)
    out.feat.square().sum().backward()  # offsets start at 0 (or the flow) and still get a gradient
    assert m.conv_offset.weight.grad.abs().sum() > 0


def test_config_errors():
    with pytest.raises(ValueError, match="kind"):
        AlignmentConfig(kind="tdan")
    with pytest.raises(ValueError, match="torchvision"):
        AlignmentConfig(kind="decomposed", backend="torchvision")
    with pytest.raises(ValueError, match="backend"):
        AlignmentConfig(backend="cuda")
    with pytest.raises(ValueError, match="odd"):
        DCNAlignment(8, kernel_size=2)
    assert isinstance(build_alignment("flow", 8), FlowAlignment)


@pytest.mark.parametrize("kind", ALIGNMENT_KINDS)
def test_every_kind_runs_under_autocast(kind):
    """AMP: the offset branch runs in bfloat16, the warps in float32 (torchvision's autocast rule)."""
    torch.manual_seed(6)
    m = build_alignment(AlignmentConfig(kind=kind, num_offsets=3), num_feat=8, deform_groups=2)
    _randomise_offsets(m, std=0.1, bias_std=1.0)
    args = (torch.randn(1, 8, 8, 8), torch.randn(1, 8, 8, 8), torch.randn(1, 2, 8, 8), torch.rand(1, 3, 8, 8),
            torch.nn.Conv2d(3, 8, 3, 1, 1))
    full = m.align(*args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = m.align(*args)
    assert amp.feat.dtype == (torch.bfloat16 if kind == "image" else torch.float32)  # image: embed's dtype
    torch.testing.assert_close(amp.feat.float(), full.feat, atol=0.2, rtol=0.05)  # bf16 offsets: ~3 digits
