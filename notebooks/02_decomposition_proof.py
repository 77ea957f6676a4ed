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
# # 02 · A DCN is N spatial warps plus a 1x1 convolution
#
# > **What this notebook shows.** Sec. 3.3's decomposition (Eq. 3, Remarks 1-2): a DCN is $N$
# > spatial warps followed by a 1x1 convolution, proved numerically in float64.
# > **Main results**: outputs and every gradient of the decomposition equal the literal Eq. 1
# > loops and torchvision in every configuration tried, DCNv1 and DCNv2, $G > 1$, borders and
# > large offsets (asserted in section 2 to $10^{-10}$; the largest differences are printed there).
#
# In this notebook we will prove, numerically and to the last digit float64 allows, the
# central observation of Sec. 3.3 of *Understanding Deformable Alignment in Video
# Super-Resolution* (Chan et al., AAAI 2021). Writing $x_k(\mathbf{p}) = x(\mathbf{p} +
# \mathbf{p}_k + \Delta\mathbf{p}_k)$ for the input warped by the $k$-th offset field, Eq. 1 becomes
#
# $$y(\mathbf{p}) = \sum_{k=1}^{n^2} w(\mathbf{p}_k)\cdot x_k(\mathbf{p}) \qquad (3)$$
#
# a $1\times1\times n^2$ 3D convolution over the $n^2$ warped features — or, stacking them along
# channels (Remark 2), a $1\times1$ 2D convolution. We will:
#
# 1. take a DCN apart into its $n^2$ warped feature maps and its $1\times1$ weight, and put it
#    back together;
# 2. check the decomposition against the literal Eq. 1 loops and against torchvision for DCNv1
#    and DCNv2, $G>1$, $k\in\{1,3,5\}$, stride / padding / dilation, image borders and offsets of
#    ±20 px, outputs and every gradient;
# 3. see Remark 2 (3D conv == 1x1 2D conv) and the special case $n=1$: flow warping;
# 4. use Remark 1, the generalisation to any number $N$ of offsets per group;
# 5. read Table 1 of the paper, where trained DCNs and decompositions score the same.

# %% tags=["parameters"]
import itertools

import matplotlib.pyplot as plt
import numpy as np
import skimage.data
import torch
import torch.nn.functional as F

from dalign_nb import paper
from dalign_nb.config import profile_name
from dalign_nb.flow import flow_to_color
from dalign_nb.ops import (
    decompose_deform_conv2d,
    decomposed_deform_conv2d,
    deform_conv2d,
    flow_to_offset,
    flow_warp,
    kernel_grid,
)
from dalign_nb.viz import flow_key, show_difference, show_maps

PROFILE = profile_name()  # DALIGN_PROFILE; the proof is the same in every profile
SEED = 0
DEVICE = "cpu"
torch.manual_seed(SEED)
torch.set_default_dtype(torch.float64)  # the proof is in float64
TOL = 1e-10

# %% [markdown]
# ## 1. Taking a DCN apart
#
# The input is the `camera` image (scikit-image) at 96x96. The offsets are smooth fields, a
# different one per tap, like those a trained alignment network predicts: each tap looks a few
# pixels away in its own direction, and the whole field rotates about the centre.

# %%
image = torch.from_numpy(skimage.data.camera()).double()[None, None] / 255
image = F.interpolate(image, size=(96, 96), mode="area")  # (1, 1, 96, 96)
H, W = image.shape[-2:]

yy, xx = torch.meshgrid(torch.arange(H).double(), torch.arange(W).double(), indexing="ij")
rotation = torch.stack([(xx - W / 2) * 0.08, -(yy - H / 2) * 0.08])  # (dy, dx) of a small rotation
angles = torch.arange(9) * 2 * np.pi / 9
offset = torch.cat([rotation + 4 * torch.stack([a.sin(), a.cos()]).view(2, 1, 1) for a in angles])[None]
print("offset", tuple(offset.shape), "= (B, 2*G*N, H, W) with G = 1, N = 9")

weight = torch.randn(1, 1, 3, 3) / 3
parts = decompose_deform_conv2d(image, offset, weight, padding=1)
print("warped features", tuple(parts.warped.shape), "(B, N, C, H, W); 1x1 weight", tuple(parts.weight.shape))
shift = [(kernel_grid(3)[k] - 1 + offset[0, 2 * k:2 * k + 2, H // 2, W // 2]).tolist() for k in range(9)]
show_maps([parts.warped[0, k, 0] - image[0, 0] for k in range(9)],
          [f"$x_{{{k + 1}}} - x$, ({dy:+.1f}, {dx:+.1f})" for k, (dy, dx) in enumerate(shift)],
          ncols=5, cmap="RdBu_r", size=2.2, symmetric=True, colorbar="grey-level difference",
          suptitle="Eq. 3: each warp $x_k$ minus the input x; titles: $p_k + \\Delta p_k$ (dy, dx) "
          "at the centre pixel");

# %% [markdown]
# Each $x_k$ is an ordinary backward warp of the whole image by one flow field
# ($\mathbf{p}_k + \Delta\mathbf{p}_k$, in (u, v) order for `flow_warp`). The $1\times1$ convolution
# then mixes them with the kernel weights:

# %%
for k in range(9):
    flow_k = (offset[:, 2 * k:2 * k + 2] + (kernel_grid(3)[k] - 1).view(1, 2, 1, 1)).flip(1)  # (u, v)
    torch.testing.assert_close(parts.warped[:, k], flow_warp(image, flow_k), rtol=0, atol=TOL)

y_dcn = deform_conv2d(image, offset, weight, padding=1)
y_parts = F.conv2d(parts.stacked(), parts.weight)  # Remark 2: a 1x1 2D convolution
print(f"max |DCN - (9 warps + 1x1 conv)| = {(y_dcn - y_parts).abs().max().item():.1e}")
torch.testing.assert_close(y_parts, y_dcn, rtol=0, atol=TOL)

show_difference(y_dcn[0, 0], y_parts[0, 0], ("deform_conv2d(x)", "1x1 conv of the 9 warps"),
                suptitle="The two outputs and their difference: its colour bar is the size of float64 "
                "rounding");

# %% [markdown]
# ## 2. The proof, case by case
#
# One output and all five gradients (input, offset, mask, weight, bias) of three
# implementations: `decomposed` (one `grid_sample` for all $G\cdot N$ warps, then one matrix
# product), `naive` (Eq. 1 / Eq. 7 as a loop over taps with hand-written bilinear
# interpolation) and torchvision's CPU kernel. Offsets are uniform in ±20 px on a 13x17 input,
# so a large share of the samples falls outside the image or across its border.


# %%
def max_differences(modulated, groups, k, stride, padding, dilation, seed=0):
    g = torch.Generator().manual_seed(seed)
    b, c, h, w, c_out = 2, 16, 13, 17, 8
    ho = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    tensors = {
        "input": torch.randn(b, c, h, w, generator=g),
        "offset": (torch.rand(b, 2 * groups * k * k, ho, wo, generator=g) * 2 - 1) * 20,
        "weight": torch.randn(c_out, c, k, k, generator=g),
        "bias": torch.randn(c_out, generator=g),
        "mask": torch.rand(b, groups * k * k, ho, wo, generator=g) if modulated else None,
    }
    names = [n for n, t in tensors.items() if t is not None]
    results = {}
    for backend in ("decomposed", "naive", "torchvision"):
        leaves = {n: t.clone().requires_grad_() for n, t in tensors.items() if t is not None}
        out = deform_conv2d(leaves["input"], leaves["offset"], leaves["weight"], leaves["bias"],
                            leaves.get("mask"), stride, padding, dilation, backend=backend)
        grads = torch.autograd.grad((out**2).sum(), [leaves[n] for n in names])
        results[backend] = [out, *grads]
    diff = {other: max((a - r).abs().max().item() for a, r in zip(results["decomposed"], results[other]))
            for other in ("naive", "torchvision")}
    return diff


configs = [
    (mod, g, k, s, p, d)
    for mod, g in itertools.product((False, True), (1, 2, 8))
    for k, s, p, d in ((1, 1, 0, 1), (3, 1, 1, 1), (5, 1, 2, 1), (3, 2, 0, 1), (3, 1, 2, 2))
]
rows = []
for mod, g, k, s, p, d in configs:
    diff = max_differences(mod, g, k, s, p, d)
    rows.append(["DCNv2" if mod else "DCNv1", g, k, s, p, d,
                 f"{diff['naive']:.1e}", f"{diff['torchvision']:.1e}"])
    assert diff["naive"] < TOL and diff["torchvision"] < TOL, (mod, g, k, s, p, d, diff)
print(paper.format_table(rows, ["op", "G", "k", "stride", "padding", "dilation",
                                "max diff vs Eq. 1 loops", "max diff vs torchvision"]))
largest = max(float(v) for r in rows for v in r[-2:])
print(f"\n{len(rows)} configurations, outputs and all gradients agree to < {TOL:g}; the largest "
      f"difference is {largest:.1e}")

# %% [markdown]
# The differences range from about $2\times10^{-13}$ to $2.6\times10^{-12}$: float64 rounding
# in sums of several hundred terms of order one. The decomposition is not an approximation of
# the DCN; it *is* the DCN.
#
# ### Where training starts: integer sample positions
#
# At zero offsets every sample sits exactly on a pixel, where bilinear sampling has a kink and
# the offset gradient is one-sided. torchvision takes the forward difference; so does the
# decomposition, because it normalises positions for `grid_sample` in a way that maps integer
# pixels back exactly (`align_corners=False` on an input zero-padded to power-of-two sizes).
# With `align_corners=True`, the usual choice in flow-warping code, the values agree but
# integer positions come back a rounding error off, and the gradient can take the other side:

# %%
x = torch.randn(1, 4, 13, 17, requires_grad=True)
zero = torch.zeros(1, 2 * 9, 13, 17, requires_grad=True)
w3 = torch.randn(4, 4, 3, 3)
grads = {}
for backend in ("decomposed", "torchvision"):
    out = deform_conv2d(x, zero, w3, padding=1, backend=backend)
    grads[backend] = torch.autograd.grad(out.sum(), zero)[0]
print("offset gradient at zero offsets, max |decomposed - torchvision| =",
      f"{(grads['decomposed'] - grads['torchvision']).abs().max().item():.1e}")
torch.testing.assert_close(grads["decomposed"], grads["torchvision"], rtol=0, atol=TOL)

# The usual flow-warping code: align_corners=True, here on a float32 REDS-sized LR frame.
x32 = torch.randn(1, 4, 180, 320, dtype=torch.float32)
pos = torch.zeros(1, 180, 320, 2, dtype=torch.float32, requires_grad=True)  # zero flow, (x, y)
base = torch.stack(torch.meshgrid(torch.arange(320.0), torch.arange(180.0), indexing="xy"), -1)[None].float()
grid_ac = (base + pos) / torch.tensor([319.0, 179.0], dtype=torch.float32) * 2 - 1
g_ac = torch.autograd.grad(F.grid_sample(x32, grid_ac, align_corners=True).sum(), pos)[0][..., 0]
forward_diff = (x32[..., 1:] - x32[..., :-1]).sum(1)[0]  # what torchvision's DCN uses at zero offsets
same_side = torch.isclose(g_ac[0, :, :-1], forward_diff).float().mean().item()
print(f"align_corners=True: forward difference at {100 * same_side:.0f}% of the pixels, "
      f"the other side at the rest")
assert same_side < 0.99

# %% [markdown]
# ## 3. Remark 2 and the case $n = 1$
#
# Eq. 3 is a $1\times1\times n^2$ 3D convolution over the warps stacked along a depth axis;
# stacking them along channels instead makes it a $1\times1$ 2D convolution. Both are the
# same sum, in a different memory layout:

# %%
x16 = torch.randn(1, 8, 20, 24)
off16 = torch.randn(1, 18, 20, 24) * 3
w16 = torch.randn(5, 8, 3, 3)
parts = decompose_deform_conv2d(x16, off16, w16, padding=1)
depth = parts.warped.permute(0, 2, 1, 3, 4)  # (B, C, N, H, W): the warps along depth
w3d = w16.flatten(2)[..., None, None]  # (C_out, C, N, 1, 1): a 1 x 1 x n^2 kernel
y3d = F.conv3d(depth, w3d)[:, :, 0]
y2d = F.conv2d(parts.stacked(), parts.weight)
torch.testing.assert_close(y3d, y2d, rtol=0, atol=TOL)
torch.testing.assert_close(y2d, deform_conv2d(x16, off16, w16, padding=1), rtol=0, atol=TOL)
print("1x1xN 3D conv == 1x1 2D conv on stacked warps == DCN")

# %% [markdown]
# With $n = 1$ there is one tap, $\mathbf{p}_1 = 0$, and Eq. 3 reads $y = w\cdot x(\mathbf{p} +
# \Delta\mathbf{p})$: a **flow warp followed by a $1\times1$ convolution**. That is flow-based
# alignment, and the reason the paper calls the two alignments one formulation that differs
# only in offset diversity.

# %%
flow = torch.stack([(yy - H / 2) * -0.1, (xx - W / 2) * 0.1])[None] + torch.tensor([3.0, -2.0]).view(1, 2, 1, 1)
w1 = torch.ones(1, 1, 1, 1)
y_k1 = deform_conv2d(image, flow_to_offset(flow), w1)
torch.testing.assert_close(y_k1, flow_warp(image, flow), rtol=0, atol=TOL)
max_flow = float(flow.norm(dim=1).max())
fig, axes = plt.subplots(1, 4, figsize=(12, 3), layout="constrained")
axes[0].imshow(image[0, 0], cmap="gray")
axes[0].set_title("x", fontsize=10)
axes[1].imshow(flow_to_color(flow[0].permute(1, 2, 0).numpy(), max_flow=max_flow))
axes[1].set_title("flow (u, v): rotation + shift", fontsize=10)
axes[2].imshow(y_k1[0, 0], cmap="gray")
axes[2].set_title("1x1 DCN = flow_warp(x, flow)", fontsize=10)
for ax in axes[:3]:
    ax.set(xticks=[], yticks=[])
flow_key(axes[3], max_flow, title="flow key (colour of a flow)")
fig.suptitle("Each output pixel p reads x at p + flow(p); black: samples outside the image (zeros)",
             fontsize=10);

# %% [markdown]
# ## 4. Remark 1: any number of offsets
#
# Nothing in Eq. 3 needs $n^2$ warps. With $N$ offset fields per group (and no kernel grid) the
# same formula defines an alignment whose *offset diversity* can be chosen freely — $N=1$ is
# flow warping, $N=9$ with the grid added back is a $3\times3$ DCN, and no kernel size gives
# $N=5$ (between the two) or $N=15$ and $N=25$ (beyond a $3\times3$ kernel's nine); Sec. 4.2
# and Fig. 16 train $N \in \{1, 5, 9, 15, 25\}$. `decomposed_deform_conv2d` implements it; its
# naive form loops over the $N$ offsets.

# %%
rows = []
for n_off, groups, modulated in ((1, 1, False), (2, 1, True), (5, 2, False), (15, 1, True), (25, 8, True)):
    g = torch.Generator().manual_seed(n_off)
    xin = torch.randn(2, 16, 15, 18, generator=g, requires_grad=True)
    off = ((torch.rand(2, 2 * groups * n_off, 15, 18, generator=g) * 2 - 1) * 15).requires_grad_()
    wn = torch.randn(6, 16, n_off, generator=g, requires_grad=True)
    mask = torch.rand(2, groups * n_off, 15, 18, generator=g, requires_grad=True) if modulated else None
    leaves = [t for t in (xin, off, wn, mask) if t is not None]
    res = []
    for backend in ("decomposed", "naive"):
        out = decomposed_deform_conv2d(xin, off, wn, mask=mask, backend=backend)
        res.append([out, *torch.autograd.grad((out**2).sum(), leaves)])
    diff = max((a - b).abs().max().item() for a, b in zip(*res))
    rows.append([n_off, groups, "yes" if modulated else "no", f"{diff:.1e}"])
    assert diff < TOL
print(paper.format_table(rows, ["N", "G", "mask", "max diff decomposed vs naive (output and grads)"]))

# A 3x3 DCN is the N = 9 case with the kernel grid p_k folded into the offsets:
grid = (kernel_grid(3) - 1).view(1, 9, 2, 1, 1)
shifted = (off16.view(1, 9, 2, 20, 24) + grid).view(1, 18, 20, 24)
torch.testing.assert_close(decomposed_deform_conv2d(x16, shifted, w16.flatten(2)),
                           deform_conv2d(x16, off16, w16, padding=1), rtol=0, atol=TOL)
print("\n3x3 DCN == N = 9 decomposition with offsets p_k + dp_k")

# %% [markdown]
# ## 5. Gradients
#
# Training needs the gradients, so the decomposition's hand-written backward (it reuses its
# buffers to save memory) is checked against finite differences with `gradcheck`, for the
# input, offsets, mask, weight and bias. Positions are kept 0.1 px away from integers, where
# the one-sided derivative makes finite differences meaningless.

# %%
g = torch.Generator().manual_seed(1)
frac = torch.rand(1, 36, 5, 6, generator=g) * 0.8 + 0.1
inputs = (torch.randn(1, 4, 5, 6, generator=g), torch.randint(-3, 3, (1, 36, 5, 6), generator=g) + frac,
          torch.randn(3, 4, 3, 3, generator=g), torch.randn(3, generator=g), torch.rand(1, 18, 5, 6, generator=g))
inputs = tuple(t.requires_grad_() for t in inputs)
ok = torch.autograd.gradcheck(lambda x, o, w, b, m: deform_conv2d(x, o, w, b, m, padding=1), inputs)
print("gradcheck (decomposed backend, G = 2, DCNv2):", ok)
assert ok

# %% [markdown]
# ## 6. Table 1 of the paper
#
# Because the decomposition is exact, a network built from it can only differ from a DCN
# network through training noise. The authors trained both inside EDVR-M on REDS; the PSNRs
# (REDS4) differ by at most 0.041 dB, in both directions:

# %%
rows = [[f"G={g}, k={k}", paper.TABLE1_REDS4["DCN"][(g, k)], paper.TABLE1_REDS4["decomposition"][(g, k)],
         f"{paper.TABLE1_REDS4['decomposition'][(g, k)] - paper.TABLE1_REDS4['DCN'][(g, k)]:+.3f}"]
        for g, k in paper.TABLE1_REDS4["DCN"]]
print(paper.format_table(rows, ["setting", "DCN (dB)", "decomposition (dB)", "difference"]))

# %% [markdown]
# In this project the decomposition is also the **fast path** on a CPU: all $G\cdot N$ warps
# are one `grid_sample` call and the $1\times1$ convolution one matrix product, instead of
# torchvision's serial per-pixel loop. `python -m dalign_nb.bench dcn` measures it; the README
# has the table.
#
# ## Summary
#
# In this notebook we have:
#
# - split a $3\times3$ DCN into nine flow-warped copies of its input and a $1\times1$
#   convolution (Eq. 3, Fig. 2b), and put it back together exactly;
# - checked the decomposition against the literal Eq. 1 / Eq. 7 loops and torchvision in 30
#   configurations (DCNv1/v2, $G\in\{1,2,8\}$, $k\in\{1,3,5\}$, stride, padding, dilation,
#   offsets of ±20 px across the borders): outputs and all gradients agree to $<10^{-10}$;
# - seen why integer sample positions need care, and that the decomposition takes
#   torchvision's side of the kink;
# - verified Remark 2 (the $1\times1\times N$ 3D convolution is a $1\times1$ 2D convolution) and
#   that $n=1$ is flow warping;
# - used Remark 1: any number $N$ of offsets per group, with its own exact reference;
# - read Table 1: trained DCN and decomposition networks score within 0.05 dB.
#
# ## Exercises
#
# 1. Build an $N=2$ decomposition whose two offset fields are the forward flow and the flow
#    plus one pixel to the right. Which $3\times3$ DCN (which weights, which offsets) computes
#    the same thing?
# 2. Modulation masks multiply the warps before the $1\times1$ convolution (A.5). Show that a
#    mask that is constant per tap can be folded into the weights, and one that varies over
#    $\mathbf{p}$ cannot.
# 3. Replace `align_corners=False` with `True` in a copy of `dalign_nb.ops._sampling_grid`
#    (and the matching normalisation) and find which test in `tests/test_ops.py` fails first.
