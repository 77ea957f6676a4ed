"""Deformable convolution and flow warping: Eq. 1, 3 and 7 of the paper in code.

A deformable convolution (Sec. 3.1, Eq. 1; with a modulation mask, Eq. 7)

    y(p) = sum_k  w(p_k) * x(p + p_k + dp_k) * m_k(p)

is, by Sec. 3.3 (Eq. 3), ``N = k*k`` spatial warps ``x_k(p) = x(p + p_k + dp_k)``
followed by a ``1 x 1 x N`` 3D convolution, i.e. (Remark 2) a 1x1 2D convolution of
the N warped features stacked along channels. This module computes it three ways:

* ``backend="decomposed"`` -- the decomposition as the fast path: all ``G*N`` warps in
  one ``grid_sample`` call, then one matrix product.
* ``backend="naive"`` -- a literal loop over kernel positions with explicit bilinear
  interpolation (Eq. 1 / Eq. 7); the readable reference the tests compare with.
* ``backend="torchvision"`` -- ``torchvision.ops.deform_conv2d``.

Conventions (shared with torchvision, BasicSR and mmcv):

* an offset tensor is ``(B, 2*G*N, H_out, W_out)``; group ``g``, offset ``n`` has
  ``dy = offset[:, g*2N + 2n]`` and ``dx = offset[:, g*2N + 2n + 1]``;
* a mask is ``(B, G*N, H_out, W_out)`` with ``mask[:, g*N + n]``;
* group ``g`` covers input channels ``[g*C/G, (g+1)*C/G)``;
* sampling is bilinear with zeros outside the image (the image zero-padded forever);
* at integer sample positions, where bilinear sampling has a kink, the offset gradient
  is the forward difference ``x(q + 1) - x(q)``, as torchvision's (also on the ring
  just outside the image, e.g. ``y = -1`` gives ``x(0) - 0``); see ``_normalised_grid``
  for how ``grid_sample`` is made to agree;
* flows are ``(B, 2, H, W)`` with channel 0 = x (u), channel 1 = y (v); a flow becomes
  offsets by ``flow.flip(1).repeat(1, G*N, 1, 1)`` (``flow_to_offset``).

Remark 1 (any number N of offsets per group, no kernel grid) is
``decomposed_deform_conv2d``; ``decompose_deform_conv2d`` returns the pieces of
Eq. 3 (the N warped features and the 1x1 weight) so that notebooks can show them.

Under autocast (mixed precision) the ops run in float32, and ``predict_offsets`` runs
an offset branch in float32 too: sample positions need float32's precision, which an
offset predicted in half precision has already lost (``_float32_under_autocast``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torchvision.ops
from torch import Tensor, nn

__all__ = [
    "BACKENDS",
    "DecomposedDeformConv2d",
    "DeformConv2d",
    "DeformConv2dPack",
    "DeformDecomposition",
    "bilinear_sample",
    "conv_output_size",
    "decompose_deform_conv2d",
    "decomposed_deform_conv2d",
    "deform_conv2d",
    "flow_to_offset",
    "flow_warp",
    "group_mean_offsets",
    "group_warp",
    "local_correlation",
    "kernel_grid",
    "offset_to_flows",
    "predict_offsets",
]

BACKENDS = ("decomposed", "naive", "torchvision")


# --------------------------------------------------------------------------- helpers


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) for v in value):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return value


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a convolution along one axis (as ``nn.Conv2d``)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _output_hw(in_hw, kernel, stride, padding, dilation) -> tuple[int, int]:
    out = tuple(conv_output_size(*args) for args in zip(in_hw, kernel, stride, padding, dilation))
    if min(out) <= 0:
        raise ValueError(f"input of size {tuple(in_hw)} is too small for kernel {tuple(kernel)} "
                         f"with padding {padding} and dilation {dilation}")
    return out


def kernel_grid(kernel_size, dilation=1, *, dtype=torch.float32, device=None) -> Tensor:
    """The regular sampling grid ``p_k`` of a ``kh x kw`` kernel, shape ``(kh*kw, 2)`` as (dy, dx).

    ``k = i*kw + j`` is row-major, as the offset layout. Positions are measured from the
    kernel's top-left tap (torchvision's convention); the paper's centred grid
    ``p_k in {(-1,-1), ..., (1,1)}`` (Sec. 3.1) is this one shifted by the padding.
    """
    kh, kw = _pair(kernel_size, "kernel_size")
    dh, dw = _pair(dilation, "dilation")
    i, j = torch.meshgrid(torch.arange(kh), torch.arange(kw), indexing="ij")
    return torch.stack([i * dh, j * dw], dim=-1).reshape(kh * kw, 2).to(dtype=dtype, device=device)


def _base_positions(n_offsets_grid: Tensor, out_hw, stride, padding, *, dtype, device) -> Tensor:
    """Undeformed sample positions ``p*stride - padding + p_k``: ``(N, H_out, W_out, 2)`` as (y, x)."""
    ho, wo = out_hw
    ys = torch.arange(ho, dtype=dtype, device=device) * stride[0] - padding[0]
    xs = torch.arange(wo, dtype=dtype, device=device) * stride[1] - padding[1]
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)  # (Ho, Wo, 2)
    return grid[None] + n_offsets_grid.to(dtype=dtype, device=device)[:, None, None, :]


def flow_to_offset(flow: Tensor, deform_groups: int = 1, num_offsets: int = 1) -> Tensor:
    """A flow ``(B, 2, H, W)`` (u, v) as DCN offsets ``(B, 2*G*N, H, W)`` (dy, dx), all equal."""
    _check_rank(flow, 4, "flow", "(B, 2, H, W)")
    if flow.shape[1] != 2:
        raise ValueError(f"flow must have shape (B, 2, H, W), got {tuple(flow.shape)}")
    return flow.flip(1).repeat(1, deform_groups * num_offsets, 1, 1)


def offset_to_flows(offset: Tensor, deform_groups: int = 1) -> Tensor:
    """Offsets ``(B, 2*G*N, H, W)`` as flows ``(B, G, N, 2, H, W)`` in (u, v) order."""
    _check_rank(offset, 4, "offset", "(B, 2*G*N, H, W)")
    b, c, h, w = offset.shape
    if c % (2 * deform_groups):
        raise ValueError(
            f"offset must have 2*G*N channels with G={deform_groups}, got {c} channels"
        )
    n = c // (2 * deform_groups)
    return offset.reshape(b, deform_groups, n, 2, h, w).flip(3)


# --------------------------------------------------------------------------- validation


def _check_rank(t: Tensor, rank: int, name: str, expected: str) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a tensor of shape {expected}, got {type(t).__name__}")
    if t.dim() != rank:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(t.shape)}")


def _check_like(t: Tensor | None, ref: Tensor, name: str) -> None:
    if t is None:
        return
    if t.dtype != ref.dtype:
        raise ValueError(f"{name} has dtype {t.dtype}, but input has dtype {ref.dtype}")
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device}, but input is on {ref.device}")


def _check_backend(backend: str, allowed=BACKENDS) -> None:
    if backend not in allowed:
        raise ValueError(f"backend must be one of {allowed}, got {backend!r}")


def _check_offset_mask(input, offset, mask, num_taps, out_hw, tap_desc):
    """Validate offset / mask against input; return the number of deformable groups G."""
    b, cin = input.shape[:2]
    _check_rank(offset, 4, "offset", f"(B, 2*G*{tap_desc}, H_out, W_out)")
    _check_like(offset, input, "offset")
    c_off = offset.shape[1]
    if c_off == 0 or c_off % (2 * num_taps):
        raise ValueError(
            f"offset must have 2*G*{tap_desc} = 2*G*{num_taps} channels for a number of "
            f"deformable groups G, got shape {tuple(offset.shape)}"
        )
    groups = c_off // (2 * num_taps)
    if cin % groups:
        raise ValueError(
            f"input channels ({cin}) must be divisible by the deformable groups G={groups} "
            f"implied by offset's {c_off} channels"
        )
    expected = (b, c_off, *out_hw)
    if tuple(offset.shape) != expected:
        raise ValueError(f"offset must have shape {expected}, got {tuple(offset.shape)}")
    if mask is not None:
        _check_rank(mask, 4, "mask", f"(B, G*{tap_desc}, H_out, W_out)")
        _check_like(mask, input, "mask")
        expected = (b, groups * num_taps, *out_hw)
        if tuple(mask.shape) != expected:
            raise ValueError(
                f"mask must have shape (B, G*{tap_desc}, H_out, W_out) = {expected}, "
                f"got {tuple(mask.shape)}"
            )
    return groups


def _check_groups(offset: Tensor, groups: int, num_offsets: int) -> None:
    if isinstance(offset, Tensor) and offset.dim() == 4 and offset.shape[1] != 2 * groups * num_offsets:
        raise ValueError(
            f"offset must have 2*G*N = {2 * groups * num_offsets} channels for this layer "
            f"(G={groups}, N={num_offsets}), got shape {tuple(offset.shape)}"
        )


def _check_bias(bias: Tensor | None, input: Tensor, c_out: int) -> None:
    if bias is not None:
        _check_like(bias, input, "bias")
        if tuple(bias.shape) != (c_out,):
            raise ValueError(f"bias must have shape ({c_out},), got {tuple(bias.shape)}")


def _float32_under_autocast(fn):
    """Run ``fn`` in float32 when autocast is on, as torchvision's autocast rule for its op.

    Bilinear sampling positions need float32: bfloat16 keeps 8 significant bits, so an
    offset between 32 and 64 px is a multiple of 1/4 px (float16: of 1/32 px); float32
    keeps 1/262144 px there. Casting here cannot restore what an offset lost when it was
    predicted in half precision, so offset branches predict in float32 as well
    (``predict_offsets``). Mixed dtypes would also be refused by the validation above.
    """

    @functools.wraps(fn)
    def wrapper(input, *args, **kwargs):
        device_type = input.device.type if isinstance(input, Tensor) else "cpu"
        if not torch.is_autocast_enabled(device_type):
            return fn(input, *args, **kwargs)

        def cast(t):
            return t.float() if isinstance(t, Tensor) and t.is_floating_point() else t

        with torch.autocast(device_type, enabled=False):
            return fn(cast(input), *map(cast, args), **{k: cast(v) for k, v in kwargs.items()})

    return wrapper


# --------------------------------------------------------------------------- sampling


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _sampling_grid(offset: Tensor, base: Tensor, groups: int, size_hw) -> Tensor:
    """The ``grid_sample`` grid of all ``G*N`` warps: ``(B*G, N*Ho, Wo, 2)`` as normalised (x, y).

    offset: (B, 2*G*N, Ho, Wo) as (dy, dx); base: (N, Ho, Wo, 2) undeformed positions (y, x).
    The sample position is ``p + p_k + dp_k`` (Eq. 1), summed in pixel units first, as
    torchvision does, so that float32 rounds the same way.

    ``grid_sample(align_corners=False)`` maps pixel ``x`` to ``(2x + 1) / W - 1``. When W
    (and H) is a power of two this is exact in floating point, so an integer position
    comes back as exactly that integer and the offset gradient there is the forward
    difference, as torchvision's. (``align_corners=True`` gives the same values but may
    land an integer position a rounding error below it: the backward difference.)
    The input must be zero-padded to that size (``_pad_pow2``).
    """
    b = offset.shape[0]
    n, ho, wo, _ = base.shape
    hp, wp = (_next_pow2(s) for s in size_hw)
    off = offset.reshape(b, groups, n, 2, ho, wo)  # any memory layout
    pos = torch.stack((base[..., 1] + off[:, :, :, 1], base[..., 0] + off[:, :, :, 0]), dim=-1)
    scale = pos.new_tensor([2.0 / wp, 2.0 / hp])
    shift = pos.new_tensor([1.0 / wp - 1.0, 1.0 / hp - 1.0])
    return torch.addcmul(shift, pos, scale).view(b * groups, n * ho, wo, 2)


def _pad_pow2(x: Tensor, groups: int) -> Tensor:
    """Zero-pad ``(B, C, H, W)`` at the bottom/right to power-of-two H and W (see above),
    viewed as ``(B*G, C/G, Hp, Wp)``: one ``grid_sample`` batch entry per group."""
    b, c, h, w = x.shape
    hp, wp = _next_pow2(h), _next_pow2(w)
    if (hp, wp) != (h, w):
        x = F.pad(x, (0, wp - w, 0, hp - h))
    return x.reshape(b * groups, c // groups, hp, wp)


def _warp_all(x: Tensor, offset: Tensor, base: Tensor, groups: int) -> Tensor:
    """All ``G*N`` warps of Eq. 3 in one ``grid_sample`` call.

    x: (B, C, H, W); offset: (B, 2*G*N, Ho, Wo) as (dy, dx); base: (N, Ho, Wo, 2) as (y, x).
    Returns (B, G, C/G, N, Ho, Wo): ``x_k(p) = x(p + p_k + dp_k)`` for every group and tap.
    """
    b, c, h, w = x.shape
    n, ho, wo, _ = base.shape
    grid = _sampling_grid(offset, base, groups, (h, w))
    warped = F.grid_sample(_pad_pow2(x, groups), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)  # (B*G, C/G, N*Ho, Wo)
    return warped.view(b, groups, c // groups, n, ho, wo)


def bilinear_sample(x: Tensor, y: Tensor, x_pos: Tensor) -> Tensor:
    """Sample ``x`` (B, C, H, W) at real positions ``(y, x_pos)`` (each (B, Ho, Wo)), bilinearly.

    The explicit formula with the four neighbours, zeros outside the image:
    ``x(p) = sum_q  max(0, 1-|q_y-p_y|) * max(0, 1-|q_x-p_x|) * x(q)``.
    Written for reading and for tests, not for speed.
    """
    b, c, h, w = x.shape
    y0, x0 = torch.floor(y), torch.floor(x_pos)
    ly, lx = y - y0, x_pos - x0  # fractional parts; d/dy at integers is the forward difference
    flat = x.reshape(b, c, h * w)
    out = torch.zeros(b, c, *y.shape[1:], dtype=x.dtype, device=x.device)
    for dy, dx, weight in (
        (0, 0, (1 - ly) * (1 - lx)),
        (0, 1, (1 - ly) * lx),
        (1, 0, ly * (1 - lx)),
        (1, 1, ly * lx),
    ):
        qy, qx = y0 + dy, x0 + dx
        valid = (qy >= 0) & (qy <= h - 1) & (qx >= 0) & (qx <= w - 1)
        index = (qy.clamp(0, h - 1) * w + qx.clamp(0, w - 1)).long().reshape(b, 1, -1)
        value = flat.gather(2, index.expand(b, c, -1)).view_as(out)
        out = out + value * (weight * valid)[:, None]
    return out


@_float32_under_autocast
def flow_warp(x: Tensor, flow: Tensor) -> Tensor:
    """Backward warping: ``out(p) = x(p + flow(p))``, bilinear, zeros outside.

    x: (B, C, H, W); flow: (B, 2, H, W) with channel 0 = x (u) and 1 = y (v). To align
    frame ``t+i`` to frame ``t``, pass the flow from ``t`` to ``t+i``. This is the
    ``k = 1`` case of the decomposition (Sec. 3.3): a DCN with one offset is a warp
    followed by a 1x1 convolution.
    """
    _check_rank(x, 4, "x", "(B, C, H, W)")
    _check_rank(flow, 4, "flow", "(B, 2, H, W)")
    _check_like(flow, x, "flow")
    b, c, h, w = x.shape
    if tuple(flow.shape) != (b, 2, h, w):
        raise ValueError(f"flow must have shape (B, 2, H, W) = {(b, 2, h, w)}, got {tuple(flow.shape)}")
    base = _base_positions(torch.zeros(1, 2), (h, w), (1, 1), (0, 0), dtype=x.dtype, device=x.device)
    return _warp_all(x, flow.flip(1), base, 1)[:, 0, :, 0]


def group_mean_offsets(offset: Tensor, num_offsets: int) -> Tensor:
    """Each group's mean offset ``o_bar_g = (1/N) sum_n o_{g,n}``: ``(..., 2*G*N, H, W) -> (..., 2*G, H, W)``.

    The layout stays that of ``ops`` (dy, dx per group). For a DCN's raw ``dp_k`` the kernel
    grid ``p_k`` of an odd kernel has mean 0, so ``o_bar_g`` is also the group's mean
    sampling displacement ``mean_k (p_k + dp_k)``.
    """
    if offset.dim() < 3 or offset.shape[-3] % (2 * num_offsets):
        raise ValueError(f"offset must be (..., 2*G*N, H, W) with N = {num_offsets}, "
                         f"got {tuple(offset.shape)}")
    return offset.unflatten(-3, (-1, num_offsets, 2)).mean(-4).flatten(-4, -3)


def group_warp(x: Tensor, offset: Tensor, num_offsets: int = 1) -> Tensor:
    """Warp each deformable group's channels of ``x`` by that group's mean offset.

    x: (B, C, H, W); offset: (B, 2*G*N, H, W) in the layout of ``ops``. Group ``g`` (channels
    ``[g*C/G, (g+1)*C/G)``) is backward-warped, ``out(p) = x(p + o_bar_g(p))``. With
    G = N = 1 this is ``flow_warp(x, offset.flip(1))``. Used by the PCD pyramid's
    warp-then-estimate (``models.edvr.PCDAlignment``): the finer level sees the neighbour
    already moved by the coarser level's motion.
    """
    _check_rank(x, 4, "x", "(B, C, H, W)")
    means = group_mean_offsets(offset, num_offsets)  # (B, 2*G, H, W)
    b, c, h, w = x.shape
    groups = means.shape[1] // 2
    if c % groups or tuple(means.shape) != (b, 2 * groups, h, w):
        raise ValueError(f"offset (B, 2*G*N, H, W) must match x {tuple(x.shape)} with C divisible "
                         f"by G; got {tuple(offset.shape)} with N = {num_offsets}")
    flows = means.reshape(b * groups, 2, h, w).flip(1)  # (B*G, 2, H, W) as (u, v)
    return flow_warp(x.reshape(b * groups, c // groups, h, w), flows).reshape(b, c, h, w)


def local_correlation(ref: Tensor, other: Tensor, max_displacement: int) -> Tensor:
    """A local cost volume (FlowNetC, Dosovitskiy et al. 2015; PWC-Net, Sun et al. 2018):
    ``out[k](p) = (1/C) sum_c ref_c(p) * other_c(p + s_k)`` for every integer displacement
    ``s_k = (dy, dx)`` with ``|dy|, |dx| <= max_displacement``, ``dy`` the outer order, ``dx``
    the inner; ``other`` is zero outside the frame. ref, other: (B, C, H, W) -> (B, (2d+1)^2, H, W).
    """
    _check_rank(ref, 4, "ref", "(B, C, H, W)")
    _check_rank(other, 4, "other", "(B, C, H, W)")
    if ref.shape != other.shape:
        raise ValueError(f"ref and other must have one shape, got {tuple(ref.shape)} and "
                         f"{tuple(other.shape)}")
    if not isinstance(max_displacement, int) or max_displacement < 0:
        raise ValueError(f"max_displacement must be an int >= 0, got {max_displacement!r}")
    d, (h, w) = max_displacement, ref.shape[-2:]
    padded = F.pad(other, (d, d, d, d))
    return torch.stack([(ref * padded[:, :, d + dy:d + dy + h, d + dx:d + dx + w]).mean(1)
                        for dy in range(-d, d + 1) for dx in range(-d, d + 1)], dim=1)


# --------------------------------------------------------------------------- the two backends


def _warps_and_columns(xg, grid, mask, batch: int, weight_groups: int, num_offsets: int):
    """The warps ``x_k`` (one ``grid_sample``) and the matrix-product operand ``x_k * m_k``.

    Returns warped (B*G, C/G, N*Ho, Wo) and columns (B*wg, C_in/wg*N, Ho*Wo), channel order
    (c, n) as the weight's; without a mask the columns are a view of the warps.
    """
    b, (bg, cg, _, _) = batch, xg.shape
    p = grid.shape[1] * grid.shape[2] // num_offsets  # Ho*Wo
    warped = torch.grid_sampler_2d(xg, grid, 0, 0, False)  # bilinear, zeros, align_corners=False
    cols = warped
    if mask is not None:
        cols = warped.view(b, bg // b, cg, -1) * mask.view(b, bg // b, 1, -1)  # x_k(p) m_k(p), Eq. 7
    return warped, cols.view(b * weight_groups, -1, p)


class _WarpModulateMatmul(torch.autograd.Function):
    """Eq. 3 / Eq. 7 as one op: warps (one ``grid_sample``), modulation, one matrix product.

    The maths is three lines; the hand-written backward exists for memory. On a CPU, fresh
    tensors of many megabytes cost more in page faults than the arithmetic done in them,
    and autograd would allocate five tensors of the warps' size (``C*N`` times the input's)
    per call. Here the forward keeps the warps and their modulated copy, and the backward
    reuses both buffers in place; a second backward through the same graph
    (``retain_graph=True``, ``gradcheck``) recomputes them first.

    xg: (B*G, C/G, Hp, Wp) padded input; grid: (B*G, N*Ho, Wo, 2); mask: (B, G*N, Ho, Wo)
    or None; weight: (wg, C_out/wg, C_in/wg*N); batch: B; num_offsets: N.
    Returns (B, wg, C_out/wg, Ho*Wo).
    """

    @staticmethod
    def forward(ctx, xg, grid, mask, weight, batch: int, num_offsets: int):
        b, wg = batch, weight.shape[0]
        warped, cols = _warps_and_columns(xg, grid, mask, b, wg, num_offsets)
        w = weight.unsqueeze(0).expand(b, *weight.shape).reshape(b * wg, *weight.shape[1:])
        out = torch.bmm(w, cols)  # the 1x1 convolution of Remark 2: (B*wg, C_out/wg, Ho*Wo)
        ctx.save_for_backward(xg, grid, mask, w)
        ctx.buffers = (warped, cols)  # intermediates, consumed by the backward
        ctx.sizes = (b, wg, num_offsets)
        return out.view(b, wg, -1, cols.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        xg, grid, mask, w = ctx.saved_tensors
        b, wg, n = ctx.sizes
        warped, cols = ctx.buffers or _warps_and_columns(xg, grid, mask, b, wg, n)
        ctx.buffers = None
        g = grad_out.reshape(w.shape[0], w.shape[1], -1)  # (B*wg, C_out/wg, Ho*Wo)
        grad_w = None
        if ctx.needs_input_grad[3]:
            grad_w = torch.bmm(g, cols.transpose(1, 2)).view(b, wg, *w.shape[1:]).sum(0)
        grad_cols = torch.bmm(w.transpose(1, 2), g, out=cols)  # into the buffer of cols
        grad_mask = None
        if mask is not None:
            # dL/dm_k = sum_c grad * x_k, then dL/dx_k = grad * m_k; both in place
            grad_4d = grad_cols.view(b, xg.shape[0] // b, xg.shape[1], -1)  # (B, G, C/G, N*Ho*Wo)
            grad_mask = warped.view_as(grad_4d).mul_(grad_4d).sum(2).view_as(mask)
            grad_4d.mul_(mask.view(b, grad_4d.shape[1], 1, -1))
        grad_x, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
            grad_cols.view_as(warped), xg, grid, 0, 0, False, [ctx.needs_input_grad[0], True])
        return grad_x, grad_grid, grad_mask, grad_w, None, None


def _decomposed(x, offset, mask, weight, bias, base, groups) -> Tensor:
    """The fast path of Eq. 3: one ``grid_sample`` for all G*N warps, one matrix product."""
    b, c, h, w = x.shape
    c_out, cin_per_wg, n = weight.shape
    ho, wo = base.shape[1:3]
    wg = c // cin_per_wg
    grid = _sampling_grid(offset, base, groups, (h, w))
    w3 = weight.reshape(wg, c_out // wg, cin_per_wg * n)
    mask = None if mask is None else mask.contiguous()  # e.g. channels-last masks
    out = _WarpModulateMatmul.apply(_pad_pow2(x, groups), grid, mask, w3, b, n)
    out = out.reshape(b, c_out, ho, wo)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def _naive(x, offset, mask, weight, bias, base, groups) -> Tensor:
    """Eq. 1 / Eq. 7 literally: ``y(p) = sum_k w(p_k) x(p + p_k + dp_k) m_k(p)``, one tap at a time."""
    b, c, h, w = x.shape
    c_out, cin_per_wg, n = weight.shape
    ho, wo = base.shape[1:3]
    cg = c // groups
    y = torch.zeros(b, c_out, ho, wo, dtype=x.dtype, device=x.device)
    for k in range(n):
        # x_k(p) = x(p + p_k + dp_k) for every group: the k-th warped feature of Eq. 3
        x_k = []
        for g in range(groups):
            dy = offset[:, g * 2 * n + 2 * k]
            dx = offset[:, g * 2 * n + 2 * k + 1]
            sample = bilinear_sample(x[:, g * cg:(g + 1) * cg], base[k, ..., 0] + dy, base[k, ..., 1] + dx)
            if mask is not None:
                sample = sample * mask[:, g * n + k, None]  # m_k(p), Eq. 7
            x_k.append(sample)
        x_k = torch.cat(x_k, dim=1)  # (B, C, Ho, Wo)
        # w(p_k) * x_k(p): a 1x1 convolution (grouped as the weight is)
        y = y + F.conv2d(x_k, weight[:, :, k, None, None], groups=c // cin_per_wg)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


# --------------------------------------------------------------------------- public ops


class _Geometry(NamedTuple):
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int  # deformable groups G, read off the offset's channels
    base: Tensor  # (kh*kw, H_out, W_out, 2) undeformed positions p*stride - padding + p_k, as (y, x)


def _kernel_geometry(input, offset, weight, bias, mask, stride, padding, dilation) -> _Geometry:
    """Validate the arguments of a kxk deformable convolution; return its geometry."""
    _check_rank(input, 4, "input", "(B, C_in, H, W)")
    _check_rank(weight, 4, "weight", "(C_out, C_in/groups, kh, kw)")
    _check_like(weight, input, "weight")
    stride, padding, dilation = (_pair(stride, "stride"), _pair(padding, "padding"),
                                 _pair(dilation, "dilation"))
    cin, h, w = input.shape[1:]
    c_out, cin_per_wg, kh, kw = weight.shape
    if cin_per_wg == 0 or cin % cin_per_wg or c_out % (cin // cin_per_wg):
        raise ValueError(
            f"weight must have shape (C_out, C_in/groups, kh, kw) with C_in={cin} and C_out "
            f"divisible by groups, got {tuple(weight.shape)}"
        )
    out_hw = _output_hw((h, w), (kh, kw), stride, padding, dilation)
    groups = _check_offset_mask(input, offset, mask, kh * kw, out_hw, "kh*kw")
    _check_bias(bias, input, c_out)
    grid = kernel_grid((kh, kw), dilation, dtype=input.dtype, device=input.device)
    base = _base_positions(grid, out_hw, stride, padding, dtype=input.dtype, device=input.device)
    return _Geometry(stride, padding, dilation, groups, base)


@_float32_under_autocast
def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    mask: Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    backend: str = "decomposed",
) -> Tensor:
    """Deformable convolution (DCNv1, Eq. 1; DCNv2 with ``mask``, Eq. 7).

    Same semantics and layouts as ``torchvision.ops.deform_conv2d``:

    * input ``(B, C_in, H, W)``; weight ``(C_out, C_in/wg, kh, kw)`` (``wg`` weight groups);
    * offset ``(B, 2*G*kh*kw, H_out, W_out)``, G (deformable groups) read off its channels;
    * mask ``(B, G*kh*kw, H_out, W_out)`` or None; bias ``(C_out,)`` or None.

    Sample ``k = i*kw + j`` of output ``p`` lies at ``p*stride - padding + (i, j)*dilation
    + dp_k``. ``backend`` is ``"decomposed"`` (N warps in one ``grid_sample`` + one matrix
    product, Eq. 3), ``"naive"`` (Eq. 1 as loops) or ``"torchvision"``.
    """
    _check_backend(backend)
    geo = _kernel_geometry(input, offset, weight, bias, mask, stride, padding, dilation)
    if backend == "torchvision":
        return torchvision.ops.deform_conv2d(input, offset, weight, bias, geo.stride, geo.padding,
                                             geo.dilation, mask)
    c_out, cin_per_wg, kh, kw = weight.shape
    w3 = weight.reshape(c_out, cin_per_wg, kh * kw)
    if backend == "naive":
        return _naive(input, offset, mask, w3, bias, geo.base, geo.groups)
    return _decomposed(input, offset, mask, w3, bias, geo.base, geo.groups)


@_float32_under_autocast
def decomposed_deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    mask: Tensor | None = None,
    backend: str = "decomposed",
) -> Tensor:
    """The generalised deformable convolution of Remark 1: any N offsets per group, no kernel grid.

    ``y(p) = sum_n W_n x(p + dp_n) m_n(p)`` -- N warps followed by a 1x1 convolution
    (Remark 2). input ``(B, C_in, H, W)``; offset ``(B, 2*G*N, H, W)`` as (dy, dx) without
    any kernel grid; weight ``(C_out, C_in, N)``; mask ``(B, G*N, H, W)`` or None.
    With ``N = 1`` and ``G = 1`` it is flow warping followed by a 1x1 convolution.
    ``backend`` is ``"decomposed"`` or ``"naive"``.
    """
    _check_backend(backend, ("decomposed", "naive"))
    _check_rank(input, 4, "input", "(B, C_in, H, W)")
    _check_rank(weight, 3, "weight", "(C_out, C_in, N)")
    _check_like(weight, input, "weight")
    b, cin, h, w = input.shape
    c_out, w_cin, n = weight.shape
    if w_cin != cin or n == 0:
        raise ValueError(f"weight must have shape (C_out, C_in={cin}, N), got {tuple(weight.shape)}")
    groups = _check_offset_mask(input, offset, mask, n, (h, w), "N")
    _check_bias(bias, input, c_out)
    zero = torch.zeros(n, 2)
    base = _base_positions(zero, (h, w), (1, 1), (0, 0), dtype=input.dtype, device=input.device)
    if backend == "naive":
        return _naive(input, offset, mask, weight, bias, base, groups)
    return _decomposed(input, offset, mask, weight, bias, base, groups)


@dataclass(frozen=True)
class DeformDecomposition:
    """The pieces of Eq. 3 / Remark 2: N warped features and one 1x1 convolution.

    warped: ``(B, N, C_in, H_out, W_out)``, ``warped[:, n]`` is ``x_n(p) = x(p + p_n + dp_n)``
        (each group's channels warped by that group's n-th offset);
    mask: ``(B, N, C_in, H_out, W_out)`` modulation broadcast to channels, or None;
    weight: ``(C_out, N*C_in, 1, 1)``, the 1x1 convolution over the warps stacked along
        channels (stack index ``n*C_in + c``); bias: ``(C_out,)`` or None.
    """

    warped: Tensor
    mask: Tensor | None
    weight: Tensor
    bias: Tensor | None

    def stacked(self) -> Tensor:
        """The (modulated) warps stacked along channels: ``(B, N*C_in, H_out, W_out)``."""
        x = self.warped if self.mask is None else self.warped * self.mask
        return x.flatten(1, 2)

    def output(self) -> Tensor:
        """The deformable convolution's output: the 1x1 convolution of ``stacked()``."""
        return F.conv2d(self.stacked(), self.weight, self.bias)


@_float32_under_autocast
def decompose_deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    mask: Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
) -> DeformDecomposition:
    """Split ``deform_conv2d`` (same arguments, no weight groups) into its Eq. 3 pieces."""
    geo = _kernel_geometry(input, offset, weight, bias, mask, stride, padding, dilation)
    b, cin = input.shape[:2]
    c_out, w_cin, kh, kw = weight.shape
    if w_cin != cin:
        raise ValueError(f"weight must have shape (C_out, C_in={cin}, kh, kw) (no weight groups), "
                         f"got {tuple(weight.shape)}")
    n, groups, out_hw = kh * kw, geo.groups, tuple(geo.base.shape[1:3])
    warped = _warp_all(input, offset, geo.base, groups)  # (B, G, C/G, N, Ho, Wo)
    warped = warped.permute(0, 3, 1, 2, 4, 5).reshape(b, n, cin, *out_hw)
    full_mask = None
    if mask is not None:
        m = mask.reshape(b, groups, 1, n, *out_hw).expand(b, groups, cin // groups, n, *out_hw)
        full_mask = m.permute(0, 3, 1, 2, 4, 5).reshape(b, n, cin, *out_hw)
    w1x1 = weight.reshape(c_out, cin, n).permute(0, 2, 1).reshape(c_out, n * cin, 1, 1)
    return DeformDecomposition(warped, full_mask, w1x1, bias)


# --------------------------------------------------------------------------- modules


@_float32_under_autocast
def _offset_branch(feat: Tensor, weight: Tensor, bias: Tensor | None, conv: nn.Conv2d,
                   modulated: bool) -> tuple[Tensor, Tensor | None]:
    out = conv._conv_forward(feat, weight, bias)  # (B, 3*G*N or 2*G*N, H_out, W_out)
    if not modulated:
        return out, None
    o1, o2, mask = torch.chunk(out, 3, dim=1)
    return torch.cat((o1, o2), dim=1), torch.sigmoid(mask)


def predict_offsets(conv_offset: nn.Conv2d, feat: Tensor,
                    modulated: bool = True) -> tuple[Tensor, Tensor | None]:
    """Offsets ``(B, 2*G*N, H, W)`` and mask ``(B, G*N, H, W)`` (or None) from an offset branch.

    BasicSR's split: ``o1, o2, mask = chunk(conv_offset(feat), 3)``, ``offset = cat(o1, o2)``,
    ``mask = sigmoid(mask)``; without ``modulated`` (DCNv1) every channel is an offset.
    Under autocast the branch runs in float32, so that offsets keep sub-pixel precision
    (see ``_float32_under_autocast``): a bfloat16 convolution would return 37.3 px as 37.25.
    """
    return _offset_branch(feat, conv_offset.weight, conv_offset.bias, conv_offset, modulated)


class _WarpConv(nn.Module):
    """What the two layers share: G warps' checks, ``weight (C_out, C_in, *taps)``, ``bias``.

    Initialised as BasicSR's ``ModulatedDeformConv``: weight ``U(-1/sqrt(n), 1/sqrt(n))``
    with ``n = C_in * N`` (N = kh*kw taps, or N offsets), bias zero.
    """

    def __init__(self, in_channels: int, out_channels: int, taps: tuple[int, ...], deform_groups: int,
                 bias: bool, backend: str, backends: tuple[str, ...]):
        super().__init__()
        _check_backend(backend, backends)
        if in_channels % deform_groups:
            raise ValueError(f"in_channels ({in_channels}) must be divisible by "
                             f"deform_groups ({deform_groups})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.deform_groups, self.backend = deform_groups, backend
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *taps))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.weight[0].numel())  # 1 / sqrt(C_in * N)
        nn.init.uniform_(self.weight, -stdv, stdv)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class DeformConv2d(_WarpConv):
    """A deformable convolution layer; offsets (and mask) are passed to ``forward``.

    Initialised as BasicSR's ``ModulatedDeformConv``: weight ``U(-1/sqrt(n), 1/sqrt(n))``
    with ``n = C_in * kh * kw``, bias zero.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1,
                 padding=1, dilation=1, deform_groups: int = 1, bias: bool = True,
                 backend: str = "decomposed"):
        kernel_size = _pair(kernel_size, "kernel_size")
        super().__init__(in_channels, out_channels, kernel_size, deform_groups, bias, backend, BACKENDS)
        self.kernel_size = kernel_size
        self.stride, self.padding = _pair(stride, "stride"), _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")

    @property
    def num_offsets(self) -> int:
        return self.kernel_size[0] * self.kernel_size[1]

    def forward(self, x: Tensor, offset: Tensor, mask: Tensor | None = None) -> Tensor:
        _check_groups(offset, self.deform_groups, self.num_offsets)
        return deform_conv2d(x, offset, self.weight, self.bias, mask, self.stride, self.padding,
                             self.dilation, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"deform_groups={self.deform_groups}, backend={self.backend!r}")


class DeformConv2dPack(DeformConv2d):
    """A deformable convolution that predicts its own offsets (and mask, for DCNv2).

    As BasicSR's ``ModulatedDeformConvPack``: a zero-initialised ``conv_offset`` (same
    kernel, stride, padding) predicts ``3*G*kh*kw`` channels split as
    ``o1, o2, mask = chunk(3)``, ``offset = cat(o1, o2)``, ``mask = sigmoid(mask)``
    (``modulated=False`` predicts only the ``2*G*kh*kw`` offset channels, DCNv1). At
    initialisation the offsets are zero, so the layer starts as a plain convolution
    (times 0.5 for DCNv2, the sigmoid of zero). ``forward(x, feat=None)`` predicts
    from ``feat`` (``x`` if None), as deformable alignment predicts from both frames.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1,
                 padding=1, dilation=1, deform_groups: int = 1, bias: bool = True,
                 modulated: bool = True, offset_in_channels: int | None = None,
                 backend: str = "decomposed"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         deform_groups, bias, backend)
        self.modulated = modulated
        per_tap = 3 if modulated else 2
        self.conv_offset = nn.Conv2d(offset_in_channels or in_channels,
                                     deform_groups * per_tap * self.num_offsets,
                                     self.kernel_size, self.stride, self.padding, self.dilation)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def offsets_and_mask(self, feat: Tensor) -> tuple[Tensor, Tensor | None]:
        return predict_offsets(self.conv_offset, feat, self.modulated)

    def forward(self, x: Tensor, feat: Tensor | None = None) -> Tensor:
        offset, mask = self.offsets_and_mask(x if feat is None else feat)
        return super().forward(x, offset, mask)


class DecomposedDeformConv2d(_WarpConv):
    """Remark 1 as a layer: N warps per group (offsets given) and a 1x1 convolution.

    ``forward(x, offset, mask=None)`` with offset ``(B, 2*G*N, H, W)`` and mask
    ``(B, G*N, H, W)``. The weight ``(C_out, C_in, N)`` is initialised as a 1x1
    convolution over ``N*C_in`` inputs, as ``DeformConv2d`` with ``n = C_in * N``.
    """

    def __init__(self, in_channels: int, out_channels: int, num_offsets: int,
                 deform_groups: int = 1, bias: bool = True, backend: str = "decomposed"):
        super().__init__(in_channels, out_channels, (num_offsets,), deform_groups, bias, backend,
                         ("decomposed", "naive"))
        self.num_offsets = num_offsets

    def forward(self, x: Tensor, offset: Tensor, mask: Tensor | None = None) -> Tensor:
        _check_groups(offset, self.deform_groups, self.num_offsets)
        return decomposed_deform_conv2d(x, offset, self.weight, self.bias, mask, self.backend)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, num_offsets={self.num_offsets}, "
                f"deform_groups={self.deform_groups}, backend={self.backend!r}")
