"""Alignment modules: BasicSR DCNv2Pack behaviour, Remark 1, flow / image / flow-guided alignment.

References that share no code with the package: torchvision's ``deform_conv2d``,
``grid_sample`` written out (``dcn_reference``), ``torch.roll`` and hand-made shifts.
"""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from dcn_reference import remark1_by_torchvision, warp_by_grid_sample
from torch import nn

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
    assert out.offset.abs().mean() > 1.0
    expected = remark1_by_torchvision(x, out.offset, m.weight, m.bias, torch.sigmoid(mk))
    torch.testing.assert_close(out.feat, expected, atol=1e-10, rtol=1e-10)
    assert DecomposedAlignment(8, num_offsets=3).align(x.float(), feat.float()).mask is None


def test_flow_alignment_warps_features_then_1x1():
    """A flow that varies per pixel (fractional, up to a few px) against grid_sample written out."""
    torch.manual_seed(3)
    m = FlowAlignment(4).double()
    assert (m.num_offsets, m.deform_groups, m.modulated) == (1, 1, False)
    _randomise_offsets(m, std=0.5, bias_std=2.0)
    x, feat = torch.randn(2, 4, 6, 7, dtype=torch.float64), torch.randn(2, 4, 6, 7, dtype=torch.float64)
    out = m.align(x, feat)
    offset = F.conv2d(feat, m.conv_offset.weight, m.conv_offset.bias, padding=1)  # (dy, dx)
    torch.testing.assert_close(out.offset, offset, rtol=0, atol=1e-12)
    assert offset.abs().max() > 2 and (offset - offset.round()).abs().min() < 0.2  # fractional, varying
    expected = F.conv2d(warp_by_grid_sample(x, offset.flip(1)), m.weight[..., None], m.bias)
    torch.testing.assert_close(out.feat, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(m(x, feat), expected, rtol=0, atol=1e-10)


def _roll_groups(x, shifts):
    """x(p + d_g) for each group g of channels, d_g = shifts[g] = (dy, dx), by torch.roll."""
    groups = x.chunk(len(shifts), dim=1)
    return torch.cat([torch.roll(g, (-dy, -dx), dims=(-2, -1)) for g, (dy, dx) in zip(groups, shifts)], 1)


def _with_zero_border(x, margin):
    out = torch.zeros_like(x)
    out[..., margin:-margin, margin:-margin] = x[..., margin:-margin, margin:-margin]
    return out


SHIFTS = [[(2, -3), (0, 1), (-1, 0)], [(-1, 4), (3, 3), (0, -2)]]  # (dy, dx) per group g, offset n


@pytest.mark.parametrize("kind", ["dcn", "decomposed", "flow", "flow_guided"])
def test_integer_offsets_are_shifts(kind):
    """Offsets of whole pixels move each group's features by those pixels: against torch.roll on
    features whose border of 4 zeros makes rolling and shifting in zeros the same."""
    torch.manual_seed(8)
    g, n = (1, 1) if kind == "flow" else (2, 3)
    m = build_alignment(AlignmentConfig(kind, num_offsets=n), num_feat=8, deform_groups=g).double()
    x = _with_zero_border(torch.randn(2, 8, 12, 13, dtype=torch.float64), 4)
    flow = None
    with torch.no_grad():
        m.conv_offset.weight.zero_()
        m.conv_offset.bias.zero_()  # masks sigmoid(0) = 1/2 where modulated
        if kind == "dcn":  # every tap of group g shifted by SHIFTS[g][0]
            m.conv_offset.bias[:2 * g * 9].copy_(torch.tensor([SHIFTS[i][0] for i in range(g)]).double()
                                                 .repeat_interleave(9, 0).flatten())
        elif kind in ("decomposed", "flow"):
            m.conv_offset.bias[:2 * g * n].copy_(torch.tensor([SHIFTS[i][:n] for i in range(g)]).flatten())
    if kind == "flow_guided":  # zero residue: the offsets are the flow, (u, v) = (dx, dy) of SHIFTS[0][0]
        flow = torch.tensor([SHIFTS[0][0][1], SHIFTS[0][0][0]], dtype=torch.float64).view(1, 2, 1, 1)
        flow = flow.expand(2, 2, 12, 13)
    out = m(x, torch.randn(2, 8, 12, 13, dtype=torch.float64), flow)
    scale = 1.0 if kind == "flow" else 0.5  # the masks
    if kind in ("dcn", "flow_guided"):
        shifts = [SHIFTS[i if kind == "dcn" else 0][0] for i in range(g)]
        expected = F.conv2d(_roll_groups(x, shifts), m.weight * scale, m.bias, padding=1)
    else:
        expected = m.bias.view(1, -1, 1, 1)
        for k in range(n):
            rolled = _roll_groups(x, [SHIFTS[i][k] for i in range(g)])
            expected = expected + F.conv2d(rolled, m.weight[:, :, k, None, None] * scale)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


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
    base = flow.flip(1).repeat(1, 2 * 9, 1, 1)  # (dy, dx) = (v, u) for every group and tap
    out = m.align(x, feat, flow)
    torch.testing.assert_close(out.offset, base)  # zero-initialised residue: offsets = flow
    expected = torchvision.ops.deform_conv2d(x, base, m.weight, m.bias, padding=1, mask=out.mask)
    torch.testing.assert_close(out.feat, expected, rtol=1e-5, atol=1e-5)
    _randomise_offsets(m, std=5.0, bias_std=50.0)
    residue = m.align(x, feat, flow).offset - base
    assert residue.abs().max() <= 5.0 + 1e-5 and residue.abs().max() > 4.9
    with pytest.raises(ValueError, match="flow"):
        m.align(x, feat)


def test_one_tap_flow_guided_can_see_a_3x3_neighbourhood_of_the_features():
    torch.manual_seed(6)
    x, feat, flow = torch.randn(1, 8, 6, 6), torch.randn(1, 8, 6, 6), torch.randn(1, 2, 6, 6) * 3
    wide = build_alignment(AlignmentConfig(kind="flow_guided", kernel_size=1, offset_kernel=3), 8)
    narrow = build_alignment(AlignmentConfig(kind="flow_guided", kernel_size=1), 8)
    assert wide.conv_offset.kernel_size == (3, 3) and narrow.conv_offset.kernel_size == (1, 1)
    assert wide.conv_offset.out_channels == narrow.conv_offset.out_channels == 3  # dy, dx, mask
    out = wide.align(x, feat, flow)  # zero-initialised: the flow, mask 0.5, as the 1 x 1 branch
    torch.testing.assert_close(out.offset, flow.flip(1))
    expected = torchvision.ops.deform_conv2d(x, flow.flip(1), wide.weight, wide.bias, mask=out.mask)
    torch.testing.assert_close(out.feat, expected, rtol=1e-5, atol=1e-5)
    moved = feat.clone()
    moved[..., 2, 3] += 1.0  # one pixel beside (2, 2)
    for m, sees in ((wide, True), (narrow, False)):
        _randomise_offsets(m, std=0.1)
        change = (m.align(x, moved, flow).offset - m.align(x, feat, flow).offset)[..., 2, 2]
        assert bool(change.abs().max() > 1e-4) == sees
    with pytest.raises(ValueError, match="offset_kernel"):
        AlignmentConfig(kind="flow_guided", offset_kernel=2)
    dcn = build_alignment(AlignmentConfig(kind="dcn", offset_kernel=1), 8)  # one --set for a whole experiment
    assert dcn.conv_offset.kernel_size == (3, 3)  # other kinds ignore it


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
def test_offsets_keep_sub_pixel_precision_under_autocast(kind):
    """AMP: offsets and masks are predicted in float32, the warps run in float32 (torchvision's
    autocast rule for its op). An offset of 37.3 px, and offsets of tens of pixels generally,
    come back within 1/64 px of the float32 prediction (bfloat16 would give 37.25, and errors of
    a tenth of a pixel from rounding the inputs of the offset branch)."""
    torch.manual_seed(6)
    m = build_alignment(AlignmentConfig(kind=kind, num_offsets=3), num_feat=8, deform_groups=2)
    residue = kind == "flow_guided"  # bounded by tanh: keep it away from saturation
    _randomise_offsets(m, std=0.1 if residue else 2.0, bias_std=0.0)
    with torch.no_grad():
        m.conv_offset.bias[0] = 0.3 if residue else 37.3
    flow = torch.full((1, 2, 8, 8), 37.0) if residue else torch.randn(1, 2, 8, 8)
    args = (torch.randn(1, 8, 8, 8), torch.randn(1, 8, 8, 8), flow, torch.rand(1, 3, 8, 8),
            torch.nn.Conv2d(3, 8, 3, 1, 1))
    full = m.align(*args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = m.align(*args)
    assert full.offset.abs().max() > 30
    assert amp.offset.dtype == torch.float32
    assert (amp.offset - full.offset).abs().max() < 1 / 64
    if full.mask is not None:
        assert amp.mask.dtype == torch.float32
        torch.testing.assert_close(amp.mask, full.mask, rtol=0, atol=1e-6)
    if kind == "image":  # the warped image goes through embed, a bfloat16 convolution under autocast
        assert amp.feat.dtype == torch.bfloat16
        torch.testing.assert_close(amp.feat.float(), full.feat, rtol=0.02, atol=0.02)
    else:
        assert amp.feat.dtype == torch.float32
        torch.testing.assert_close(amp.feat, full.feat, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- the DCN as Eq. 3 (Table 1)


@pytest.mark.parametrize("k, groups, modulated", [(1, 1, False), (3, 1, False), (3, 2, True), (5, 1, False)])
def test_decomposition_on_the_grid_is_the_dcn_parameter_for_parameter(k, groups, modulated):
    """Built after the same seed, a k x k DCN alignment and the decomposition with ``grid=k`` have
    the same parameters (the 1x1 weight is the DCN's flattened) and the same output and offsets
    for any offset branch, against torchvision's deformable convolution."""
    torch.manual_seed(0)
    dcn = build_alignment(AlignmentConfig("dcn", kernel_size=k, modulated=modulated, backend="torchvision"),
                          8, groups).double()
    torch.manual_seed(0)
    dec = build_alignment(AlignmentConfig("decomposed", kernel_size=k, num_offsets=k * k, modulated=modulated,
                                          grid=True), 8, groups).double()
    a, b = dcn.state_dict(), dec.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name].flatten(), b[name].flatten(), rtol=0, atol=0)
    with torch.no_grad():  # offsets of a few pixels, masks away from 0.5
        for m in (dcn, dec):
            torch.manual_seed(1)
            nn.init.normal_(m.conv_offset.weight, std=0.3)
            nn.init.normal_(m.conv_offset.bias, std=1.5)
    nbr, feat = torch.rand(2, 8, 12, 12, dtype=torch.float64), torch.rand(2, 8, 12, 12, dtype=torch.float64)
    base = torch.randn(2, 2 * groups * k * k, 12, 12, dtype=torch.float64)
    x, y = dcn.align(nbr, feat, base=base), dec.align(nbr, feat, base=base)
    torch.testing.assert_close(y.offset, x.offset, rtol=0, atol=0)
    torch.testing.assert_close(y.feat, x.feat, rtol=1e-10, atol=1e-10)


def test_grid_needs_the_decomposition_with_k_squared_offsets():
    with pytest.raises(ValueError, match="grid=True"):
        AlignmentConfig("decomposed", kernel_size=3, num_offsets=5, grid=True)
    with pytest.raises(ValueError, match="grid=True"):
        AlignmentConfig("dcn", kernel_size=3, grid=True)
    module = build_alignment(AlignmentConfig("decomposed", num_offsets=9, grid=True), 8)
    assert "grid_offsets" not in module.state_dict()


@pytest.mark.parametrize("kind, modulated, grid", [
    ("dcn", True, False), ("dcn", False, False), ("decomposed", True, False), ("decomposed", False, True),
    ("flow", True, False), ("image", False, False), ("flow_guided", True, False)])
def test_config_facts_match_the_module_it_builds(kind, modulated, grid):
    """has_masks, the kernel grid, G, N and the offset branch's channel split, read from the config,
    against what the built module returns for two groups."""
    num_offsets = 9 if grid else 4
    config = AlignmentConfig(kind=kind, modulated=modulated, num_offsets=num_offsets, grid=grid)
    m = build_alignment(config, num_feat=8, deform_groups=2)
    out = m.align(torch.randn(1, 8, 6, 6), torch.randn(1, 8, 6, 6), torch.zeros(1, 2, 6, 6),
                  torch.rand(1, 3, 6, 6), torch.nn.Conv2d(3, 8, 3, 1, 1))
    g, n = config.num_groups(2), config.offsets_per_group
    assert out.offset.shape[1] == 2 * g * n and config.has_masks == (out.mask is not None)
    offsets, masks = config.channel_split(2)
    assert (offsets, masks) == (2 * g * n, g * n if config.has_masks else 0)
    assert m.conv_offset.out_channels == offsets + masks and m.channel_split == (offsets, masks)
    expected_grid = 3 if kind in ("dcn", "flow_guided") or grid else None
    assert config.kernel_grid_size == expected_grid


def test_centre_only_gives_the_model_the_centre_frame_everywhere_and_zero_motion():
    from dalign_nb.alignment import centre_only

    seen = {}

    def model(x, **inputs):
        seen.update(x=x, **inputs)
        return x.sum()

    lq = torch.rand(2, 3, 3, 4, 5)
    flows = torch.rand(2, 3, 2, 4, 5)
    centre_only(model, lq, 1, flows=flows)
    assert torch.equal(seen["x"], lq[:, 1:2].expand_as(lq))  # a copy of the same values, no arithmetic
    assert torch.equal(seen["flows"], torch.zeros_like(flows))
    centre_only(model, lq, 0)
    assert set(seen) == {"x", "flows"} and torch.equal(seen["x"][:, 2], lq[:, 0])
