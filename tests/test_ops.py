"""dalign_nb.ops: the decomposition (Eq. 3) equals Eq. 1 / Eq. 7 and torchvision's op.

The references are torchvision's ``deform_conv2d`` and ``grid_sample`` written out in
``dcn_reference``; the ``naive`` backend (Eq. 1 as loops) is a second implementation
checked against the same references, not a reference itself.
"""

import itertools

import pytest
import torch
import torch.nn.functional as F
import torchvision
from dcn_reference import remark1_by_torchvision, warp_by_grid_sample

from dalign_nb import ops
from dalign_nb.ops import (
    DecomposedDeformConv2d,
    DeformConv2d,
    DeformConv2dPack,
    decompose_deform_conv2d,
    decomposed_deform_conv2d,
    deform_conv2d,
    flow_to_offset,
    flow_warp,
    kernel_grid,
    offset_to_flows,
)

F64 = dict(rtol=0, atol=1e-10)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def make_case(*, b=2, c=16, c_out=6, h=9, w=11, groups=2, k=3, stride=1, padding=1, dilation=1,
              modulated=True, weight_groups=1, max_offset=20.0, offsets="uniform", bias=True,
              dtype=torch.float64, seed=0):
    """Random DCN inputs (k, stride, padding, dilation: an int or an (h, w) pair). Offsets up to
    +-max_offset px send many samples outside the image."""
    g = torch.Generator().manual_seed(seed)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (k, stride, padding, dilation))
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    taps = groups * kh * kw
    if offsets == "uniform":
        off = (torch.rand(b, 2 * taps, ho, wo, generator=g, dtype=dtype) * 2 - 1) * max_offset
    elif offsets == "zero":
        off = torch.zeros(b, 2 * taps, ho, wo, dtype=dtype)
    elif offsets == "integer":
        off = torch.randint(-3, 4, (b, 2 * taps, ho, wo), generator=g).to(dtype)
    elif offsets == "away_from_integers":  # fractional parts in [0.1, 0.9]
        frac = torch.rand(b, 2 * taps, ho, wo, generator=g, dtype=dtype) * 0.8 + 0.1
        off = torch.randint(-4, 4, (b, 2 * taps, ho, wo), generator=g).to(dtype) + frac
    case = {
        "input": torch.randn(b, c, h, w, generator=g, dtype=dtype),
        "offset": off,
        "weight": torch.randn(c_out, c // weight_groups, kh, kw, generator=g, dtype=dtype),
        "bias": torch.randn(c_out, generator=g, dtype=dtype) if bias else None,
        "mask": torch.rand(b, taps, ho, wo, generator=g, dtype=dtype) if modulated else None,
    }
    for t in case.values():
        if t is not None:
            t.requires_grad_(True)
    return case, dict(stride=stride, padding=padding, dilation=dilation)


def run(case, conv_args, backend):
    """Output and the gradients of a non-trivial scalar w.r.t. every tensor argument."""
    out = deform_conv2d(case["input"], case["offset"], case["weight"], case["bias"], case["mask"],
                        backend=backend, **conv_args)
    probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    names = [n for n, t in case.items() if t is not None]
    grads = torch.autograd.grad((out * probe).sum() + 0.5 * (out**2).sum(), [case[n] for n in names])
    return out, dict(zip(names, grads))


def assert_same(a, b, **tol):
    out_a, grads_a = a
    out_b, grads_b = b
    torch.testing.assert_close(out_a, out_b, **tol)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], **tol, msg=lambda m, n=name: f"{n}: {m}")


GEOMETRY = [  # (k, stride, padding, dilation), each an int or an (h, w) pair
    (1, 1, 0, 1),
    (3, 1, 1, 1),
    (5, 1, 2, 1),
    (3, 2, 1, 1),
    (3, 1, 0, 1),
    (3, 1, 2, 2),
    (5, 2, 3, 2),
    ((3, 5), (2, 1), (0, 2), (1, 2)),  # every argument different along y and x
    ((1, 3), (1, 3), (2, 1), (3, 1)),
    ((2, 4), (3, 2), (1, 3), (2, 1)),  # even kernels: no centre tap
]


@pytest.mark.parametrize("backend,groups", [("decomposed", 1), ("decomposed", 8), ("naive", 2)])
@pytest.mark.parametrize("modulated", [False, True], ids=["DCNv1", "DCNv2"])
@pytest.mark.parametrize("geometry", GEOMETRY, ids=lambda g: "k{}s{}p{}d{}".format(*g).replace(" ", ""))
def test_geometry_matches_torchvision_float64(backend, groups, modulated, geometry):
    """Stride, padding and dilation place the taps as torchvision does (forward and gradients)."""
    k, stride, padding, dilation = geometry
    case, args = make_case(groups=groups, k=k, stride=stride, padding=padding, dilation=dilation,
                           modulated=modulated)
    assert_same(run(case, args, backend), run(case, args, "torchvision"), **F64)


@pytest.mark.parametrize("backend", ["decomposed", "naive"])
@pytest.mark.parametrize("modulated", [False, True], ids=["DCNv1", "DCNv2"])
@pytest.mark.parametrize("groups,k,weight_groups", [(1, 3, 1), (2, 1, 1), (8, 3, 1), (2, 5, 1), (4, 3, 2)])
def test_matches_torchvision_float64(backend, modulated, groups, k, weight_groups):
    case, args = make_case(groups=groups, k=k, padding=k // 2, modulated=modulated,
                           weight_groups=weight_groups)
    assert_same(run(case, args, backend), run(case, args, "torchvision"), **F64)


@pytest.mark.parametrize("offsets", ["zero", "integer"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_integer_sample_positions_take_torchvision_side(offsets, dtype):
    """At integer positions the offset gradient is one-sided; torchvision takes the forward
    difference, also on the ring just outside the image (padding=1 samples y=-1 exactly).
    Zero offsets are where every DCN starts training, so this must hold exactly."""
    case, args = make_case(offsets=offsets, dtype=dtype, groups=2)
    reference = run(case, args, "torchvision")
    tol = F64 if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-4)
    for backend in ("decomposed", "naive"):
        assert_same(run(case, args, backend), reference, **tol)


@pytest.mark.parametrize("backend", ["decomposed", "naive"])
def test_float32_matches_torchvision(backend):
    """float32: forward to 1e-5. Gradients are compared where every sample lies at least 0.1 px
    from an integer position: within a rounding error of one, float32 may floor a position to
    the other side of the kink of bilinear sampling, and the offset gradient legitimately jumps
    from one one-sided difference to the other (both backends round p + p_k + dp_k as
    torchvision does, but grid_sample's normalisation adds its own last-bit error)."""
    case, args = make_case(dtype=torch.float32, groups=8, max_offset=20.0, c=32)
    with torch.no_grad():
        ours = deform_conv2d(case["input"], case["offset"], case["weight"], case["bias"], case["mask"],
                             backend=backend, **args)
        ref = torchvision.ops.deform_conv2d(case["input"], case["offset"], case["weight"], case["bias"],
                                            mask=case["mask"], **args)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    case, args = make_case(dtype=torch.float32, groups=8, offsets="away_from_integers", c=32)
    assert_same(run(case, args, backend), run(case, args, "torchvision"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["decomposed", "naive"])
def test_gradcheck(backend):
    case, args = make_case(b=1, c=2, c_out=2, h=4, w=5, groups=2, offsets="away_from_integers")
    inputs = (case["input"], case["offset"], case["weight"], case["bias"], case["mask"])

    def fn(x, offset, weight, bias, mask):
        return deform_conv2d(x, offset, weight, bias, mask, backend=backend, **args)

    # The naive loops are slow to differentiate 2000 times; fast mode checks random projections.
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, fast_mode=backend == "naive")


def test_second_backward_through_same_graph_recomputes():
    case, args = make_case()
    out = deform_conv2d(case["input"], case["offset"], case["weight"], case["bias"], case["mask"], **args)
    tensors = [case["input"], case["offset"], case["mask"], case["weight"]]
    first = torch.autograd.grad(out.sum(), tensors, retain_graph=True)
    second = torch.autograd.grad(out.sum(), tensors)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# --------------------------------------------------------------------------- Remark 1, k = 1, pieces


@pytest.mark.parametrize("backend", ["decomposed", "naive"])
@pytest.mark.parametrize("modulated", [False, True])
@pytest.mark.parametrize("num_offsets,groups", [(1, 1), (2, 1), (5, 3), (15, 1), (4, 8)])
def test_arbitrary_n_matches_torchvision(num_offsets, groups, modulated, backend):
    """Remark 1 (N offsets, no kernel grid) against torchvision's op with a 1 x N kernel."""
    g = torch.Generator().manual_seed(1)
    b, c, h, w = 2, 24, 7, 10
    x = torch.randn(b, c, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    off = ((torch.rand(b, 2 * groups * num_offsets, h, w, generator=g, dtype=torch.float64) * 2 - 1) * 15)
    off.requires_grad_(True)
    weight = torch.randn(5, c, num_offsets, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    mask = (torch.rand(b, groups * num_offsets, h, w, generator=g, dtype=torch.float64).requires_grad_(True)
            if modulated else None)
    tensors = [t for t in (x, off, weight, bias, mask) if t is not None]
    results = []
    for y in (decomposed_deform_conv2d(x, off, weight, bias, mask, backend=backend),
              remark1_by_torchvision(x, off, weight, bias, mask)):
        results.append((y, torch.autograd.grad((y**2).sum(), tensors)))
    torch.testing.assert_close(results[0][0], results[1][0], **F64)
    for a, b_ in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b_, **F64)


def test_arbitrary_n_gradcheck():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    frac = torch.rand(1, 2 * 2 * 3, 5, 6, generator=g, dtype=torch.float64) * 0.8 + 0.1
    off = (torch.randint(-3, 3, frac.shape, generator=g).double() + frac).requires_grad_(True)
    weight = torch.randn(3, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(1, 6, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: decomposed_deform_conv2d(*t[:3], mask=t[3]),
                                    (x, off, weight, mask), eps=1e-6, atol=1e-7)


def test_kxk_dcn_is_arbitrary_n_with_the_kernel_grid_added():
    """Remark 1 generalises Eq. 3: a kxk DCN is N = k*k offsets p_k + dp_k with no kernel grid."""
    case, args = make_case(groups=2, k=3, padding=1, modulated=True, bias=False)
    b, _, h, w = case["input"].shape
    grid = kernel_grid(3, dtype=torch.float64) - 1  # p_k centred, as the paper writes it
    shifted = case["offset"].view(b, 2, 9, 2, h, w) + grid.view(1, 1, 9, 2, 1, 1)
    y_dcn = torchvision.ops.deform_conv2d(case["input"], case["offset"], case["weight"], mask=case["mask"],
                                          **args)
    y_n = decomposed_deform_conv2d(case["input"], shifted.view(b, 36, h, w),
                                   case["weight"].flatten(2), mask=case["mask"])
    torch.testing.assert_close(y_dcn, y_n, **F64)


def test_k1_dcn_is_flow_warp_then_1x1_conv():
    """Sec. 3.3: the special case n = 1 is a spatial warp followed by a 1x1 convolution
    (torchvision's DCN against grid_sample: the claim, checked without this package's ops)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 9, 13, generator=g, dtype=torch.float64)
    flow = torch.randn(2, 2, 9, 13, generator=g, dtype=torch.float64) * 6
    weight = torch.randn(5, 8, 1, 1, generator=g, dtype=torch.float64)
    y = torchvision.ops.deform_conv2d(x, flow.flip(1), weight)  # offsets (dy, dx) = (v, u)
    torch.testing.assert_close(y, F.conv2d(warp_by_grid_sample(x, flow), weight), **F64)


def test_flow_warp_matches_grid_sample():
    """Fractional flows of up to 8 px (many samples outside) as grid_sample with align_corners=True."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 11, 14, generator=g, dtype=torch.float64)
    flow = (torch.rand(2, 2, 11, 14, generator=g, dtype=torch.float64) * 2 - 1) * 8
    torch.testing.assert_close(flow_warp(x, flow), warp_by_grid_sample(x, flow), **F64)
    torch.testing.assert_close(flow_to_offset(flow), flow.flip(1))


def test_flow_warp_integer_shift_and_zeros_outside():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float64).view(2, 3, 5, 7)
    flow = torch.zeros(2, 2, 5, 7, dtype=torch.float64)
    flow[:, 0] = 2  # u: sample two pixels to the right
    flow[:, 1] = -1  # v: one pixel up
    out = flow_warp(x, flow)
    expected = torch.zeros_like(x)
    expected[..., 1:, :5] = x[..., :4, 2:]
    torch.testing.assert_close(out, expected, **F64)
    torch.testing.assert_close(flow_warp(x, torch.zeros_like(flow)), x, **F64)


def test_flow_warp_half_pixel_is_the_average():
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    flow = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    flow[:, 0] = 0.5
    out = flow_warp(x, flow)
    torch.testing.assert_close(out[..., :3], (x[..., :3] + x[..., 1:]) / 2, **F64)
    torch.testing.assert_close(out[..., 3], x[..., 3] / 2, **F64)  # half of the zero outside


@pytest.mark.parametrize("modulated", [False, True])
def test_decomposition_pieces_reassemble_the_dcn(modulated):
    case, args = make_case(groups=2, modulated=modulated)
    parts = decompose_deform_conv2d(case["input"], case["offset"], case["weight"], case["bias"],
                                    case["mask"], **args)
    b, c, h, w = case["input"].shape
    assert parts.warped.shape == (b, 9, c, h, w)
    assert parts.weight.shape == (6, 9 * c, 1, 1)
    y = deform_conv2d(case["input"], case["offset"], case["weight"], case["bias"], case["mask"], **args)
    torch.testing.assert_close(parts.output(), y, **F64)
    # Piece n of group g's channels is a warp by that group's n-th offset + p_n: torchvision's
    # DCN with a 1x1 identity kernel and that one offset.
    offsets = case["offset"].view(b, 2, 9, 2, h, w)  # (B, G, N, (dy, dx), H, W)
    p = kernel_grid(3, dtype=torch.float64) - 1  # padding 1: p_n centred
    eye = torch.eye(c // 2, dtype=torch.float64)[..., None, None]
    for n, g in itertools.product((0, 4, 8), (0, 1)):
        channels = slice(g * c // 2, (g + 1) * c // 2)
        shifted = offsets[:, g, n] + p[n].view(1, 2, 1, 1)
        expected = torchvision.ops.deform_conv2d(case["input"][:, channels], shifted, eye)
        torch.testing.assert_close(parts.warped[:, n, channels], expected, **F64)
        if modulated:
            torch.testing.assert_close(parts.mask[:, n, channels],
                                       case["mask"][:, g * 9 + n, None].expand(b, c // 2, h, w), **F64)


def test_offset_flow_layout_round_trip():
    flow = torch.randn(2, 2, 4, 5)
    off = flow_to_offset(flow, deform_groups=3, num_offsets=4)
    assert off.shape == (2, 24, 4, 5)
    torch.testing.assert_close(off[:, 0], flow[:, 1])  # dy first
    torch.testing.assert_close(off[:, 1], flow[:, 0])
    back = offset_to_flows(off, deform_groups=3)
    assert back.shape == (2, 3, 4, 2, 4, 5)
    torch.testing.assert_close(back, flow[:, None, None].expand_as(back))


# --------------------------------------------------------------------------- modules


def test_pack_starts_as_a_plain_convolution():
    """BasicSR zero-initialises conv_offset: offsets 0 and (DCNv2) masks sigmoid(0) = 1/2."""
    x = torch.randn(2, 8, 10, 12)
    for modulated, scale in ((False, 1.0), (True, 0.5)):
        layer = DeformConv2dPack(8, 6, 3, padding=1, deform_groups=2, modulated=modulated)
        assert not layer.conv_offset.weight.any() and not layer.conv_offset.bias.any()
        assert layer.conv_offset.out_channels == (3 if modulated else 2) * 2 * 9
        expected = F.conv2d(x, layer.weight * scale, layer.bias, padding=1)
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_modules_call_the_ops():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 6, 7)
    layer = DeformConv2d(8, 4, 3, padding=1, deform_groups=2)
    off, mask = torch.randn(1, 36, 6, 7), torch.rand(1, 18, 6, 7)
    torch.testing.assert_close(layer(x, off, mask), torchvision.ops.deform_conv2d(
        x, off, layer.weight, layer.bias, padding=1, mask=mask), rtol=1e-5, atol=1e-5)
    bound = 1 / (8 * 9) ** 0.5
    assert layer.weight.abs().max() <= bound and not layer.bias.any()
    dec = DecomposedDeformConv2d(8, 4, num_offsets=5, deform_groups=2)
    off5, mask5 = torch.randn(1, 20, 6, 7) * 3, torch.rand(1, 10, 6, 7)
    expected = remark1_by_torchvision(x, off5, dec.weight, dec.bias, mask5)
    torch.testing.assert_close(dec(x, off5, mask5), expected, rtol=1e-5, atol=1e-5)
    assert dec.weight.abs().max() <= 1 / (8 * 5) ** 0.5 and not dec.bias.any()
    with pytest.raises(ValueError, match="G=2, N=5"):
        dec(x, torch.randn(1, 10, 6, 7))


def test_any_memory_layout():
    """Channels-last or otherwise strided inputs, offsets and masks give the same result."""
    case, args = make_case(groups=2)
    ref = run(case, args, "decomposed")
    strided = {k: (None if t is None else
                   t.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
                   if t.dim() == 4 else t) for k, t in case.items()}
    assert not strided["mask"].is_contiguous() and not strided["offset"].is_contiguous()
    assert_same(run(strided, args, "decomposed"), ref, **F64)


def test_autocast_runs_in_float32():
    x = torch.randn(1, 4, 6, 6)
    off, w = torch.randn(1, 18, 6, 6) * 40, torch.randn(4, 4, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = deform_conv2d(x.bfloat16(), off, w, padding=1)
    assert y.dtype == torch.float32
    expected = torchvision.ops.deform_conv2d(x.bfloat16().float(), off, w, padding=1)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("modulated", [False, True], ids=["DCNv1", "DCNv2"])
def test_offsets_are_predicted_in_float32_under_autocast(modulated):
    """bfloat16 keeps 8 significant bits: 37.3 px would come back as 37.25, and an offset of tens
    of pixels predicted from bfloat16 inputs and weights is off by a tenth of a pixel or more.
    Under autocast the offset branch runs in float32: within 1/64 px of the float32 prediction."""
    torch.manual_seed(7)
    layer = DeformConv2dPack(8, 8, 3, padding=1, deform_groups=2, modulated=modulated)
    with torch.no_grad():
        layer.conv_offset.weight.normal_(0, 2.0)  # offsets of tens of pixels
        layer.conv_offset.bias.zero_()
    x = torch.randn(2, 8, 10, 12)
    full = layer.offsets_and_mask(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = layer.offsets_and_mask(x)
        y_amp = layer(x)
    assert full[0].abs().max() > 30
    assert amp[0].dtype == torch.float32
    assert (amp[0] - full[0]).abs().max() < 1 / 64
    if modulated:
        torch.testing.assert_close(amp[1], full[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(y_amp, layer(x), rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # a single offset of 37.3 px, every other channel zero
        layer.conv_offset.weight.zero_()
        layer.conv_offset.bias[0] = 37.3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        offset = layer.offsets_and_mask(x)[0]
    assert (offset[:, 0] - 37.3).abs().max() < 1 / 64


# --------------------------------------------------------------------------- bad input


def _good():
    return dict(input=torch.randn(2, 8, 6, 7), offset=torch.randn(2, 36, 6, 7),
                weight=torch.randn(4, 8, 3, 3), mask=torch.rand(2, 18, 6, 7), padding=1)


BAD = {
    "offset channels": (dict(offset=torch.randn(2, 35, 6, 7)), r"offset must have 2\*G\*kh\*kw"),
    "offset spatial": (dict(offset=torch.randn(2, 36, 5, 7)), r"offset must have shape \(2, 36, 6, 7\)"),
    "mask channels": (dict(mask=torch.rand(2, 9, 6, 7)), r"mask must have shape \(B, G\*kh\*kw"),
    "groups divide channels": (dict(offset=torch.randn(2, 54, 6, 7), mask=None),
                               r"input channels \(8\) must be divisible by the deformable groups G=3"),
    "input rank": (dict(input=torch.randn(8, 6, 7)), r"input must have shape \(B, C_in, H, W\)"),
    "weight rank": (dict(weight=torch.randn(4, 8, 3)), r"weight must have shape \(C_out, C_in/groups"),
    "weight channels": (dict(weight=torch.randn(4, 3, 3, 3)), r"weight must have shape"),
    "dtype": (dict(offset=torch.randn(2, 36, 6, 7, dtype=torch.float64)), r"offset has dtype torch.float64"),
    "device": (dict(mask=torch.rand(2, 18, 6, 7, device="meta")), r"mask is on meta"),
    "backend": (dict(backend="cuda-magic"), r"backend must be one of"),
    "too small": (dict(input=torch.randn(2, 8, 1, 1), padding=0), r"too small for kernel"),
}


@pytest.mark.parametrize("change,pattern", BAD.values(), ids=BAD.keys())
def test_bad_input_raises_value_error(change, pattern):
    kwargs = {**_good(), **change}
    with pytest.raises(ValueError, match=pattern):
        deform_conv2d(kwargs.pop("input"), kwargs.pop("offset"), kwargs.pop("weight"), **kwargs)


def test_bad_input_other_entry_points():
    x = torch.randn(1, 4, 5, 5)
    with pytest.raises(ValueError, match=r"flow must have shape \(B, 2, H, W\) = \(1, 2, 5, 5\)"):
        flow_warp(x, torch.randn(1, 2, 5, 4))
    with pytest.raises(ValueError, match=r"weight must have shape \(C_out, C_in=4, N\)"):
        decomposed_deform_conv2d(x, torch.randn(1, 6, 5, 5), torch.randn(2, 3, 3))
    with pytest.raises(ValueError, match="backend must be one of"):
        decomposed_deform_conv2d(x, torch.randn(1, 6, 5, 5), torch.randn(2, 4, 3), backend="torchvision")
    with pytest.raises(ValueError, match="deform_groups"):
        DeformConv2d(6, 4, deform_groups=4)


def test_power_of_two_padding_is_exact():
    """The grid normalisation maps integer pixels exactly (the reason inputs are padded)."""
    for size in (1, 5, 64, 180, 320, 1000):
        p = ops._next_pow2(size)
        assert p >= size and p & (p - 1) == 0
        pos = torch.arange(-2, size + 2, dtype=torch.float32)
        normed = pos * (2.0 / p) + (1.0 / p - 1.0)
        back = (normed + 1) * (p / 2) - 0.5  # grid_sample's own un-normalisation
        assert torch.equal(back, pos)
