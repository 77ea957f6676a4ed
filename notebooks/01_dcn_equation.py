# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The deformable-convolution equation
#
# > **What this notebook shows.** Eq. 1 of the paper (Sec. 3.1) taken apart: the sampling grid,
# > bilinear sampling and its derivative, DCNv2's mask (Eq. 7) and deformable groups.
# > **Main results**: Eq. 1 computed by hand for one pixel equals `dalign_nb.ops` and
# > torchvision's `deform_conv2d` to float rounding (asserted in section 3, the difference
# > printed there); a mask of ones gives DCNv1, a one-hot mask a single warp (section 4).
#
# In this notebook we will take Eq. 1 of *Understanding Deformable Alignment in Video
# Super-Resolution* (Chan et al., AAAI 2021, Sec. 3.1) apart, one symbol at a time:
#
# $$y(\mathbf{p}) = \sum_{k=1}^{n^2} w(\mathbf{p}_k)\cdot x(\mathbf{p} + \mathbf{p}_k + \Delta\mathbf{p}_k) \qquad (1)$$
#
# 1. the regular sampling grid $\mathbf{p} + \mathbf{p}_k$ of a convolution, and how learned
#    offsets $\Delta\mathbf{p}_k$ move it;
# 2. bilinear sampling, the reason fractional offsets are differentiable, derived by hand;
# 3. Eq. 1 computed by hand for one output pixel and compared with `dalign_nb.ops` and with
#    `torchvision.ops.deform_conv2d`;
# 4. DCNv2's modulation mask $m_k(\mathbf{p})$ (Eq. 7, Sec. A.5);
# 5. deformable groups $G$ and the offset layout shared by torchvision, BasicSR and mmcv;
# 6. all of it in one interactive picture, the DCN playground.
#
# Nothing is trained here; the next notebook proves that Eq. 1 is a set of spatial warps
# followed by a 1x1 convolution (Eq. 3).

# %% tags=["parameters"]
import matplotlib.pyplot as plt
import numpy as np
import skimage.data
import torch
import torch.nn.functional as F
import torchvision

from dalign_nb.config import profile_name
from dalign_nb.ops import bilinear_sample, deform_conv2d, flow_to_offset, kernel_grid, offset_to_flows
from dalign_nb.viz import plot_bilinear, plot_sampling_positions
from dalign_nb.widgets import DCNPlayground

PROFILE = profile_name()  # DALIGN_PROFILE; nothing here depends on it (no training)
SEED = 0
DEVICE = "cpu"
torch.manual_seed(SEED)
torch.set_default_dtype(torch.float64)  # exact comparisons in this notebook

# %% [markdown]
# A real image to sample from: the `camera` test image that ships with scikit-image, reduced
# to 64x64 so that single pixels stay visible. The box marks the 20x20 window that the
# figures below zoom into.

# %%
image = torch.from_numpy(skimage.data.camera()).double()[None, None] / 255  # (1, 1, 512, 512)
image = F.interpolate(image, size=(64, 64), mode="area")  # (1, 1, 64, 64)
H, W = image.shape[-2:]
fig, ax = plt.subplots(figsize=(3.5, 3.5))
ax.imshow(image[0, 0], cmap="gray")
ax.add_patch(plt.Rectangle((18, 20), 20, 20, fill=False, color="tab:red", lw=1.5))
ax.set(title="input x (64 x 64): the zoomed window in red", xlabel="x (px)", ylabel="y (px)");

# %% [markdown]
# ## 1. Sampling grids
#
# A $3\times3$ convolution reads its input at $\mathbf{p} + \mathbf{p}_k$ with
# $\mathbf{p}_k \in \{(-1,-1), (-1,0), \dots, (1,1)\}$. In code (torchvision's convention) the
# grid starts at the kernel's top-left tap and the padding shifts it back: with padding 1,
# `kernel_grid(3) - 1` is the paper's centred grid. A deformable convolution adds a learned
# offset $\Delta\mathbf{p}_k$, one per tap and per output position, so each output pixel gets
# its own irregular grid.

# %%
p_k = kernel_grid(3, dtype=torch.float64) - 1  # (9, 2) as (dy, dx), centred
print("p_k (dy, dx):\n", p_k.T.int())

p = torch.tensor([30.0, 28.0])  # one output position (y, x)
delta_p = torch.randn(9, 2) * 1.5 + torch.tensor([2.0, -3.0])  # offsets, as a DCN might predict
fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
plot_sampling_positions(axes[0], image[0, 0], p + p_k, title="regular convolution", zoom=(20, 40, 18, 38))
plot_sampling_positions(axes[1], image[0, 0], p + p_k, p + p_k + delta_p,
                        title="deformable convolution (Eq. 1)", zoom=(20, 40, 18, 38))
fig.suptitle("The same output pixel p = (30, 28): nine taps on a fixed grid (left), "
             "each moved by its own offset (right, arrows)", fontsize=10)
fig.tight_layout()

# %% [markdown]
# ## 2. Bilinear sampling, by hand
#
# The deformed positions are fractional, so $x(\cdot)$ must be interpolated. DCN uses
# bilinear interpolation with zeros outside the image:
#
# $$x(\mathbf{q}) = \sum_{\mathbf{r}} \max(0, 1-|r_y-q_y|)\,\max(0, 1-|r_x-q_x|)\; x(\mathbf{r})$$
#
# Only the four integer neighbours of $\mathbf{q}$ have non-zero weight. Derive the value at
# $(y, x) = (30.3, 26.6)$ from them, then compare with `bilinear_sample` (the explicit formula
# in `dalign_nb.ops`) and PyTorch's `grid_sample`.

# %%
qy, qx = 30.3, 26.6
y0, x0 = int(np.floor(qy)), int(np.floor(qx))
ly, lx = qy - y0, qx - x0
img = image[0, 0]
by_hand = ((1 - ly) * (1 - lx) * img[y0, x0] + (1 - ly) * lx * img[y0, x0 + 1]
           + ly * (1 - lx) * img[y0 + 1, x0] + ly * lx * img[y0 + 1, x0 + 1])
ours = bilinear_sample(image, torch.tensor([[[qy]]]), torch.tensor([[[qx]]]))[0, 0, 0, 0]
grid = torch.tensor([[[[(2 * qx + 1) / W - 1, (2 * qy + 1) / H - 1]]]])  # align_corners=False mapping
reference = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0, 0, 0]
print(f"by hand {by_hand.item():.12f}\nours    {ours.item():.12f}\ntorch   {reference.item():.12f}")
torch.testing.assert_close(ours, by_hand, rtol=0, atol=1e-12)
torch.testing.assert_close(reference, by_hand, rtol=0, atol=1e-12)

fig, ax = plt.subplots(figsize=(4, 4))
plot_bilinear(ax, img, qy, qx, title=f"x at (y, x) = ({qy}, {qx}) (red cross): the weight of\n"
              "each neighbour (dot area, label; they sum to 1)")
ax.set_xlim(x0 - 1.5, x0 + 2.5)
ax.set_ylim(y0 + 2.5, y0 - 1.5);

# %% [markdown]
# Bilinear sampling is what makes offsets learnable: the value is piecewise linear in the
# position, so $\partial y / \partial \Delta\mathbf{p}_k$ is a difference of neighbouring
# pixels. At an exactly integer position the function has a kink and the two one-sided
# derivatives differ; torchvision takes the forward difference $x(q+1) - x(q)$. Zero offsets,
# where every DCN starts training, are exactly such positions, so `dalign_nb.ops` takes the
# same side (checked in `tests/test_ops.py`).

# %%
q = torch.tensor([[[30.0]]], requires_grad=True)
value = bilinear_sample(image, q, torch.tensor([[[26.0]]]))
(dvalue_dy,) = torch.autograd.grad(value.sum(), q)
print("d x / d y at an integer y:", dvalue_dy.item(), " forward difference:",
      (img[31, 26] - img[30, 26]).item())
assert torch.isclose(dvalue_dy, img[31, 26] - img[30, 26])

# %% [markdown]
# Outside the image the input is zero. A sample half a pixel left of column 0 gets half of
# $x(\cdot, 0)$ and half of a zero:

# %%
edge = bilinear_sample(image, torch.tensor([[[10.0]]]), torch.tensor([[[-0.5]]]))[0, 0, 0, 0]
print(f"x(10, -0.5) = {edge.item():.6f} = x(10, 0) / 2 = {img[10, 0].item() / 2:.6f}")
assert torch.isclose(edge, img[10, 0] / 2)

# %% [markdown]
# ## 3. Eq. 1 by hand for one output pixel
#
# Now the whole sum for one output position: 9 taps, each sampling the input at its deformed
# position and multiplied by its kernel weight. The input has 3 channels, so $w(\mathbf{p}_k)$
# is a $C_{out}\times C_{in}$ matrix per tap.

# %%
C_in, C_out = 3, 2
x = torch.randn(1, C_in, H, W)
weight = torch.randn(C_out, C_in, 3, 3)
offset = torch.randn(1, 2 * 9, H, W) * 2  # (B, 2*G*N, H, W), G = 1, N = 9: (dy, dx) per tap

py, px = 30, 28
y_by_hand = torch.zeros(C_out)
for k in range(9):
    i, j = divmod(k, 3)  # tap k = i*3 + j, row-major as the offset layout
    dy, dx = offset[0, 2 * k, py, px], offset[0, 2 * k + 1, py, px]
    sy, sx = py + (i - 1) + dy, px + (j - 1) + dx  # p + p_k + dp_k
    sample = bilinear_sample(x, sy.view(1, 1, 1), sx.view(1, 1, 1))[0, :, 0, 0]  # (C_in,)
    y_by_hand += weight[:, :, i, j] @ sample  # w(p_k) . x(p + p_k + dp_k)

y = {backend: deform_conv2d(x, offset, weight, padding=1, backend=backend)[0, :, py, px]
     for backend in ("naive", "decomposed", "torchvision")}
for backend, value in y.items():
    diff = (value - y_by_hand).abs().max().item()
    print(f"{backend:12s} {value.numpy().round(6)}  max |diff| to the hand sum: {diff:.1e}")
    torch.testing.assert_close(value, y_by_hand, rtol=0, atol=1e-12)

# %% [markdown]
# ## 4. DCNv2: modulation masks (Eq. 7)
#
# DCNv2 (Sec. A.5 of the paper) multiplies each sample by a learned scalar $m_k(\mathbf{p})\in[0,1]$:
#
# $$y(\mathbf{p}) = \sum_k w(\mathbf{p}_k)\cdot x(\mathbf{p}+\mathbf{p}_k+\Delta\mathbf{p}_k)\cdot m_k(\mathbf{p}) \qquad (7)$$
#
# A mask of ones is DCNv1; a zero switches a tap off. Sec. A.5 of the paper finds that taps
# whose offsets stray far from the optical flow get small masks (Fig. 17, 18).

# %%
ones = torch.ones(1, 9, H, W)
torch.testing.assert_close(deform_conv2d(x, offset, weight, padding=1, mask=ones),
                           deform_conv2d(x, offset, weight, padding=1), rtol=0, atol=1e-12)
only_centre = torch.zeros(1, 9, H, W)
only_centre[:, 4] = 1  # keep the centre tap k = 4 only
y_centre = deform_conv2d(x, offset, weight, padding=1, mask=only_centre)
warp_centre = bilinear_sample(x, torch.arange(H).double().view(1, H, 1).expand(1, H, W) + offset[:, 8],
                              torch.arange(W).double().view(1, 1, W).expand(1, H, W) + offset[:, 9])
torch.testing.assert_close(y_centre, torch.einsum("oc,bchw->bohw", weight[:, :, 1, 1], warp_centre),
                           rtol=0, atol=1e-12)
print("mask = 1 is DCNv1; a one-hot mask keeps a single warped tap: both checked")

# %% [markdown]
# ## 5. Deformable groups and the offset layout
#
# With $G$ deformable groups the $C$ input channels are split into $G$ blocks of $C/G$ and
# every block gets its own $n^2$ offsets, so $G\cdot n^2$ offsets are learned per position
# (Sec. 3.1). The layout, shared by torchvision, BasicSR and mmcv: an offset tensor is
# `(B, 2*G*N, H, W)`, with `dy = offset[:, g*2N + 2n]` and `dx = offset[:, g*2N + 2n + 1]`; a
# mask is `(B, G*N, H, W)` with `mask[:, g*N + n]`. `offset_to_flows` unpacks it into
# `(B, G, N, 2, H, W)` flows in (u, v) order.
#
# A check that the layout means what it says: perturb group 1's offsets only, and only the
# output's dependence on group 1's channels changes.

# %%
G, C = 2, 4
x4 = torch.randn(1, C, H, W)
w_g0 = torch.randn(C_out, C, 3, 3)
w_g0[:, C // G:] = 0  # a weight that reads only group 0's channels
off = torch.randn(1, 2 * G * 9, H, W)
off_perturbed = off.clone()
off_perturbed[:, 2 * 9:] += 5  # move every tap of group 1
same = deform_conv2d(x4, off, w_g0, padding=1)
torch.testing.assert_close(same, deform_conv2d(x4, off_perturbed, w_g0, padding=1), rtol=0, atol=1e-12)
flows = offset_to_flows(off, deform_groups=G)
print("offset", tuple(off.shape), "-> flows (B, G, N, 2, H, W)", tuple(flows.shape))
assert torch.equal(flows[:, 1, 3, 0], off[:, 1 * 18 + 2 * 3 + 1])  # u of group 1, tap 3 = its dx

# %% [markdown]
# A flow field $(u, v)$ becomes DCN offsets by flipping to $(dy, dx)$ and repeating for every
# group and tap; with $k = 1$ that DCN is flow warping (notebook 02 proves it in general).

# %%
flow = torch.randn(1, 2, H, W) * 3
offsets_from_flow = flow_to_offset(flow, deform_groups=G, num_offsets=9)
print("flow", tuple(flow.shape), "-> offsets", tuple(offsets_from_flow.shape))
assert torch.equal(offsets_from_flow[:, 0], flow[:, 1]) and torch.equal(offsets_from_flow[:, 1], flow[:, 0])

# %% [markdown]
# Finally, the whole layer against torchvision on this image, with groups, masks and large
# offsets that send samples outside the image:

# %%
G = 2
off = torch.randn(1, 2 * G * 9, H, W) * 10
mask = torch.rand(1, G * 9, H, W)
bias = torch.randn(C_out)
ours = deform_conv2d(x4, off, weight.repeat(1, 2, 1, 1)[:, :C], bias, mask, padding=1)
ref = torchvision.ops.deform_conv2d(x4, off, weight.repeat(1, 2, 1, 1)[:, :C], bias, padding=1, mask=mask)
print(f"max |ours - torchvision| = {(ours - ref).abs().max().item():.1e}")
torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)

# %% [markdown]
# ## 6. Try it: the DCN playground
#
# Sections 2-4 in one interactive picture (`dalign_nb.widgets.DCNPlayground`, live in
# JupyterLab): Eq. 1 for one output pixel of a 3x3 deformable convolution on a 9x9 picture.
# Pick a tap *k*, move its offset $(\Delta y, \Delta x)$ and its mask $m_k$, and watch the
# sampling position, its four bilinear neighbours with their weights, and every tap's
# contribution $w_k m_k x(\mathbf{p}+\mathbf{p}_k+\Delta\mathbf{p}_k)$ to $y(\mathbf{p})$. The line
# under the picture recomputes $y(\mathbf{p})$ by hand, with `dalign_nb.ops` and with
# torchvision on every move. Without a running kernel the cell shows its first view: tap 0
# moved by (0.6, -1.3).

# %%
playground = DCNPlayground()
playground.select(dy=0.6, dx=-1.3)
playground

# %% [markdown]
# ## Summary
#
# In this notebook we have:
#
# - drawn the regular grid $\mathbf{p}+\mathbf{p}_k$ of a convolution and the deformed grid
#   $\mathbf{p}+\mathbf{p}_k+\Delta\mathbf{p}_k$ of Eq. 1;
# - derived bilinear sampling by hand, including zeros outside the image and the one-sided
#   derivative at integer positions that torchvision (and `dalign_nb.ops`) use;
# - computed Eq. 1 for one pixel by hand and matched it to 1e-12 with three backends;
# - seen DCNv2's mask (Eq. 7) reduce to DCNv1 with ones and to a single warp with a one-hot
#   mask;
# - checked the group / offset layout that every later notebook relies on;
# - moved one tap of a DCN by hand in the playground.
#
# ## Exercises
#
# 1. Set all offsets to the same integer vector $(a, b)$. What does the DCN become? Check it
#    against `torch.roll` on the interior of the image.
# 2. Find offsets for which a $3\times3$ DCN equals a $5\times5$ convolution whose kernel is
#    zero except on a dilated $3\times3$ pattern (`dilation=2`).
# 3. With `torch.autograd.grad`, compute $\partial y / \partial\Delta\mathbf{p}_k$ at a
#    fractional position and compare with the finite difference of the input image.
