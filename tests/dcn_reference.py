"""References for the tests that share no code with ``dalign_nb.ops``: torchvision and grid_sample.

* ``warp_by_grid_sample`` is backward warping ``x(p + flow(p))`` written out with
  ``grid_sample(align_corners=True)``, where pixel ``i`` of ``n`` sits at ``2i/(n-1) - 1``
  (``ops`` pads to powers of two and uses ``align_corners=False`` instead).
* ``remark1_by_torchvision`` is the generalised deformable convolution of Remark 1 (N
  offsets, no kernel grid) computed by ``torchvision.ops.deform_conv2d`` with a ``1 x K``
  kernel, ``K = N`` rounded up to odd so that ``padding = (0, (K-1)/2)`` keeps the size:
  tap ``j`` sits at ``x - (K-1)/2 + j``, so that position is taken off its offset.
"""

import torch
import torch.nn.functional as F
import torchvision


def warp_by_grid_sample(x, flow):
    """x (B, C, H, W), flow (B, 2, H, W) as (u, v) -> x(p + flow(p)), bilinear, zeros outside."""
    b, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
    gx = 2 * (xs + flow[:, 0]) / (w - 1) - 1
    gy = 2 * (ys + flow[:, 1]) / (h - 1) - 1
    return F.grid_sample(x, torch.stack([gx, gy], dim=-1), mode="bilinear", padding_mode="zeros",
                         align_corners=True)


def remark1_by_torchvision(x, offset, weight, bias=None, mask=None):
    """``y(p) = sum_n W_n x_g(p + dp_n^g) m_n^g(p)``: x (B, C, H, W), offset (B, 2*G*N, H, W) as
    (dy, dx), weight (C_out, C, N), mask (B, G*N, H, W) or None."""
    b, _, h, w = x.shape
    c_out, c, n = weight.shape
    g = offset.shape[1] // (2 * n)
    k = n + 1 - n % 2  # odd; an even N gets one extra tap of weight zero
    off = torch.zeros(b, g, k, 2, h, w, dtype=x.dtype)
    off[:, :, :n] = offset.reshape(b, g, n, 2, h, w)
    off[:, :, :, 1] -= (torch.arange(k, dtype=x.dtype) - (k - 1) // 2).view(1, 1, k, 1, 1)
    full_weight = torch.zeros(c_out, c, 1, k, dtype=x.dtype)
    full_weight[..., :n] = weight.reshape(c_out, c, 1, n)
    full_mask = None
    if mask is not None:
        full_mask = torch.zeros(b, g, k, h, w, dtype=x.dtype)
        full_mask[:, :, :n] = mask.reshape(b, g, n, h, w)
        full_mask = full_mask.view(b, g * k, h, w)
    return torchvision.ops.deform_conv2d(x, off.view(b, 2 * g * k, h, w), full_weight, bias,
                                         padding=(0, (k - 1) // 2), mask=full_mask)
