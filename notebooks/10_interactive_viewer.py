# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
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
# # 10 · Interactive viewers: offsets, masks and aligned features
#
# > **What this notebook shows.** Trained alignment modules from the inside, pixel by pixel,
# > with the viewers of `dalign_nb.widgets` (Sec. 4.1-4.2, Fig. 6-7, A.5): one offset against
# > fifteen, from the same training (`fig9`, seed 0), and a DCNv2's masks (`fig17`).
# > **Main results** (section 4 prints them on a held-out scene): how close the nearest offset
# > comes to the exact flow with one offset and with fifteen, how far the fifteen spread on
# > visible and on occluded pixels, and whether the masks fall with the distance to the flow.
#
# In this notebook we will look inside trained alignment modules with the three viewers of
# `dalign_nb.widgets`, the way the paper reads its models (Sec. 4.1–4.2):
#
# 1. the **offset viewer**: click a pixel of the reference frame and see where its N offsets
#    sample a neighbour frame, beside the exact and the estimated optical flow; the selected
#    offset's field in the flow colour wheel, the offsets sorted by their l1 distance to the
#    flow (Fig. 6), their diversity (the pixelwise standard deviation, Sec. 4.2), the
#    modulation masks and the occlusions;
# 2. the same picture in numbers, so that what the viewer shows is checked on every run;
# 3. the **aligned-feature viewer**: features before and after alignment, one offset against
#    several (Fig. 7);
# 4. the offset viewer on a real clip, where the flow is estimated;
# 5. the paper's own model, EDVR-M or EDVR-L trained on REDS, where the reader has BasicSR's
#    checkpoint: its offsets beside DIS flow (Fig. 1, 4, 5, 11) and in the offset viewer;
# 6. the **DCN playground**: one kernel tap's offset, its bilinear weights and the output of
#    Eq. 1;
# 7. how fast the viewers redraw.
#
# The viewers are live in JupyterLab (`make lab`): click, drag the sliders. Where widgets
# cannot run (a code host, a notebook opened without its kernel), each viewer's output is a
# picture of its first view.

# %% tags=["parameters"]
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from dalign_nb.analysis import analyse_offsets, clip_frames, model_outputs, offsets_vs_dis
from dalign_nb.config import profile_name
from dalign_nb.data import bundled_clips, synthetic_clips
from dalign_nb.experiments import load_model
from dalign_nb.metrics import bicubic_baseline, closest_offset, pearson_r, psnr, share_within
from dalign_nb.models import checkpoint_from_env, optional_edvr
from dalign_nb.viz import show_offsets_beside_flow
from dalign_nb.widgets import AlignedFeatureViewer, DCNPlayground, OffsetViewer, benchmark, format_benchmark

PROFILE = profile_name()  # DALIGN_PROFILE: "quick" (CI, minutes on 2 CPU cores), "standard", "paper"
SEED = 0
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CHECKPOINT = checkpoint_from_env()  # DALIGN_CHECKPOINT: a BasicSR EDVR checkpoint (section 7), or None
# the sweep whose kept weights are viewed: "" the sweep on align2 (fig9's n1-s0 and n15-s0);
# ARCHIVE_600 the first one (align, 600 iterations, kept as <name>-600it)
SWEEP = ""
# the DCNv2 with masks (fig17 dcnv2-k3-s0): "" the sweep on align2's, ARCHIVE_600 the first one's
MASK_SWEEP = ""
torch.manual_seed(SEED)
print(f"profile {PROFILE} on {DEVICE}; checkpoint: {CHECKPOINT.name if CHECKPOINT else None}")

# %% [markdown]
# ## 1. The models to look at
#
# **One offset against fifteen, like for like.** The experiment `fig9` (notebook 06) trained
# the decomposition of Sec. 3.3 with $G = 1$ and $N = 1$ or $N = 15$ offsets per pixel, from
# the same seed, on the same batches, for the same 3000 iterations of the `align2` setting (the
# sweep of Sec. 4, chosen by `SWEEP`: a 32-feature EDVR on synthetic scenes, with residual
# offsets, warp-then-estimate in the PCD pyramid and a census warping term on the mean offset,
# departures from the paper named in notebooks 05-06). Its $N = 1$ model aligns (about three
# quarters of the pixels within 1 px of the exact flow, notebook 05), though it takes little from
# its neighbours' content. The two differ only in $N$; the weights of seed 0 are kept, so we load
# them. Neither has masks. (`SWEEP = ARCHIVE_600` views the first sweep, 600 iterations of the
# `align` setting, whose offsets do not follow the motion yet.)
#
# **Masks.** For DCNv2's modulation masks (Eq. 7, A.5) we load `fig17`'s DCNv2 ($G = 1$,
# $k = 3$: $N = 9$ offsets on the kernel grid, each with a mask), chosen by `MASK_SWEEP`: seed
# 0 of the sweep on `align2` (3000 iterations; notebook 08). Its eight outer taps follow the
# flow with small masks while the centre tap stays near zero offset with a mask near 1 (notebook
# 08, Fig. 18): pick a pixel on it below and the big dot sits on the pixel itself.

# %%
models = {"N = 15": load_model("fig9" + SWEEP, "n15-s0"), "N = 1": load_model("fig9" + SWEEP, "n1-s0")}
dcnv2 = load_model("fig17" + MASK_SWEEP, "dcnv2-k3-s0")
print(f"fig9{SWEEP} n1-s0, n15-s0; fig17{MASK_SWEEP} dcnv2-k3-s0")
for name, m in {**models, "DCNv2, N = 9": dcnv2}.items():
    print(f"{name:13s} {m.config.alignment.kind:10s} {sum(q.numel() for q in m.parameters()) / 1e3:.1f}k parameters")

# %% [markdown]
# ## 2. A held-out scene with exact flow and occlusion
#
# A synthetic scene (notebook 03) cut from footage no training scene uses: a background moved
# by a global motion plus sprites that move on their own and cover each other, rendered with
# the exact flow from the centre frame to every frame and the mask of what is occluded. How
# well do the two models super-resolve its centre frame?

# %%
scene = synthetic_clips(1, split="test", seed=SEED)[0]
frames = clip_frames(scene, models["N = 1"].num_frame)  # the models' 3 frames around the centre
gt = torch.from_numpy(scene.hr(frames.centre)).permute(2, 0, 1)  # (3, 4h, 4w)
centre = frames.lr[len(frames.lr) // 2]
print(f"{scene.name}: LR {tuple(frames.lr.shape[-2:])}, exact flow {frames.flow_exact is not None}")
print(f"bicubic {psnr(bicubic_baseline(centre), gt):.2f} dB")
outputs = {name: model_outputs(m, frames) for name, m in {**models, "DCNv2, N = 9": dcnv2}.items()}
for name, out in outputs.items():
    print(f"{name:6s}  {psnr(out.output, gt):.2f} dB")

# %% [markdown]
# ## 3. The offset viewer
#
# Click a pixel in the reference frame (or use the `pixel y` / `pixel x` sliders); choose the
# neighbour frame, the PCD level (L3 is the coarsest, a quarter of the LR size; the cascade
# refines the L1 result) and the deformable group.

# %%
viewer = OffsetViewer(models["N = 15"], scene, pixel=(40, 24))
viewer

# %% [markdown]
# What each panel shows:
#
# - **reference frame**: the centre frame; the red cross is the selected pixel *p*.
# - **neighbour**: the neighbour frame around *p*, zoomed. Each arrow goes from where a plain
#   convolution would sample (*p + p_k*, the kernel grid) to where this one does
#   (*p + p_k + Δp_k*); dots are coloured and sized by their mask *m_k(p)* (DCNv2, Eq. 7) —
#   a faint small dot is an offset the model switched off. The dashed arrows are the exact
#   flow (cyan) and the DIS estimate (magenta); the red circle marks the offset selected by
#   the slider.
# - **offset** and **flow**: the selected offset's field over the whole frame in the
#   Middlebury colour wheel (hue: direction, saturation: length; key beside the flow), with
#   the flow in the same colour scale — an offset that "resembles the flow" has the same
#   picture.
# - **l1 distance to flow**: every offset's mean l1 distance to the flow over the visible
#   pixels, sorted as the paper's Fig. 6 (tick labels: offset index; red: the selected one;
#   crosses: the distances at *p*). The slider `offset, by l1 distance to flow` walks
#   through them, closest first.
# - **diversity**: the pixelwise standard deviation of the N offsets (Sec. 4.2), in pixels.
# - **mask** of the selected offset, and the **occlusion** of the neighbour (exact here).
#
# What to look for: offsets that resemble the flow (Sec. 4.1); offsets that depart from it,
# and larger diversity, where the flow fails — at occlusions, where the pixel's content is not
# in the neighbour at all (Fig. 6's red arrows); masks that switch off offsets far from the
# flow. The line under the picture gives the numbers at *p*. Neither model sees a flow: their
# offsets were learned from the features alone.
#
# The same viewer on the N = 1 model of the same training: compare its offset field with the
# flow's in the colour wheel, and click on a sprite's edge or in an occluded region, where no
# single flow can be right.

# %%
OffsetViewer(models["N = 1"], scene, pixel=(40, 24))

# %% [markdown]
# And on the DCNv2, whose dots are sized by their masks: a faint small dot is an offset the
# model turned down at that pixel.

# %%
OffsetViewer(dcnv2, scene, pixel=(40, 24))

# %% [markdown]
# ## 4. The same, in numbers
#
# Over all pixels of both neighbours at L1 (distances in LR pixels): how close the nearest
# of the N offsets comes to the exact flow, how far the offsets spread where the neighbour
# sees the content (visible) and where it does not (occluded), and whether masks are lower
# for offsets far from the flow.

# %%
print(f"{'model':13s} {'frame':>5s}  {'nearest < 1 px':>14s}  {'mean l1 to flow':>15s}  "
      f"{'diversity vis / occ':>19s}  {'r(mask, l1)':>11s}")
summary = {}
for name, out in outputs.items():
    for t in (0, 2):
        a = analyse_offsets(out, frames, t, "l1", 0)
        visible = ~a.occlusion
        nearest, _ = closest_offset(a.offsets.flatten(0, 1)[None], a.flow[None])  # (1, h, w) l2
        within = share_within(nearest[0], 1.0, visible)
        div_vis = float(a.diversity[visible].mean())
        div_occ = float(a.diversity[a.occlusion].mean()) if a.occlusion.any() else float("nan")
        several = a.masks is not None and a.masks.shape[0] > 1
        r = pearson_r(a.masks.flatten(), a.distance.flatten()) if several else float("nan")
        # an offset read with the wrong sign or layout would be nearer the negated flow than the flow
        mirrored, _ = closest_offset(a.offsets.flatten(0, 1)[None], -a.flow[None])
        summary[name, t] = {"within": within, "nearest": float(nearest[0][visible].mean()),
                            "mirrored": float(mirrored[0][visible].mean()), "diversity": (div_vis, div_occ), "r": r}
        print(f"{name:13s} {t - 1:+5d}  {100 * within:13.0f}%  {float(a.mean_distance.mean()):15.2f}  "
              f"{div_vis:9.2f} / {div_occ:6.2f}  {r:11.2f}")
for (name, t), v in summary.items():
    assert v["nearest"] < v["mirrored"], (name, t, v)  # the offsets point with the motion, not against it
assert all(summary["N = 1", t]["diversity"] == (0.0, 0.0) for t in (0, 2))  # one offset: no spread
assert all(summary["N = 15", t]["diversity"][0] > 0 for t in (0, 2))
w1, w15 = (np.mean([summary[n, t]["within"] for t in (0, 2)]) for n in ("N = 1", "N = 15"))
vis, occ = (np.mean([summary["N = 15", t]["diversity"][i] for t in (0, 2)]) for i in (0, 1))
print(f"\nnearest offset within 1 px of the exact flow: N = 1 {100 * w1:.0f} %, N = 15 {100 * w15:.0f} %; "
      f"N = 15's diversity {vis:.2f} px on visible pixels, {occ:.2f} px on occluded ones")

# %% [markdown]
# What the numbers above say, on this one scene (read them beside notebook 06, which measures
# the same models on 8 scenes and three seeds):
#
# - **nearest < 1 px**: fifteen offsets give fifteen chances to be near the motion; the line
#   under the table compares the nearest of them with the single offset of the same training.
# - **diversity**: how far the fifteen offsets spread, on visible and on occluded pixels; the
#   paper sees more spread where the flow fails (Fig. 6), which notebook 06 does not find over
#   8 scenes and three seeds (its ROC AUC below 0.5).
# - **r(mask, l1)**: the DCNv2's masks against each offset's l1 distance to the flow, pixel by
#   pixel; notebook 08 measures the per-offset version (Fig. 17).
#
# The checks under the table hold on every run: every model's offsets are nearer the flow
# than its negation (a sign or layout error would reverse that), the single offset has no
# spread and the fifteen have some.

# %% [markdown]
# ## 5. Aligned features: one offset against several (Fig. 7)
#
# For each model: a channel of the reference feature, of the neighbour's feature before
# alignment and of the alignment module's output, at a PCD level. The alignment output mixes
# channels (the 1x1 convolution of Eq. 3), so compare where structure is, not the grey
# levels: after alignment, edges should sit where the reference has them, and inside the red
# contour (occluded in the neighbour) a single warp has nothing right to fetch. The line under
# the pictures gives the correlation of each aligned map with the reference map.

# %%
AlignedFeatureViewer(models, scene, channel=3)

# %% [markdown]
# ## 6. A real clip: estimated flow
#
# The held-out shot of the bundled `bikes` clip has no exact flow: the viewer estimates it
# with DIS (Kroeger et al., ECCV 2016) from the centre frame to each neighbour, and marks as
# occluded the pixels where the forward and backward estimates disagree (Sundaram et al.,
# ECCV 2010). The `centre frame` slider moves through the shot; the model runs once per
# centre frame.

# %%
bikes = next(c for c in bundled_clips("test") if c.name.startswith("bikes"))
OffsetViewer(models["N = 15"], bikes, centre=30, pixel=(34, 80))

# %% [markdown]
# ## 7. The paper's own model
#
# The models above are small and were trained here. The paper reads EDVR-M (Sec. 4), trained
# on REDS for 600k iterations, and BasicSR publishes it (and EDVR-L). When `CHECKPOINT` (the
# parameters cell, from `DALIGN_CHECKPOINT`) names such a file, this section loads it strictly
# (`optional_edvr`, its size read off its shapes), runs it on the CPU on five frames of
# the `bikes` shot of section 6 cut to a 64 x 96 LR crop (`offsets_vs_dis`, seconds for
# EDVR-M) and puts its offsets at each PCD level beside DIS flow on the same LR frames (the
# paper used PWC-Net):
#
# - per neighbour, the **mean** of each pixel's G x N offsets (EDVR-M: 8 groups of a 3x3
#   kernel's 9) and the **closest** of them to DIS, raw Δp_k without the kernel grid, in
#   pixels of their level (L2: half the LR size, L3: a quarter; DIS pooled to it);
# - Fig. 5's share within 1 px of DIS (end-point error) — over 80 % for the paper's G = N = 1
#   model against PWC-Net — beside what offsets held at zero would score (the pixels DIS moves
#   less than 1 px), which any share has to beat to mean alignment;
# - the L1 fields in the flow colour wheel beside DIS (Fig. 1, 4, 11), then the offset viewer.
#
# Without a checkpoint the cell says how to get one, and the notebook goes on.

# %%
paper_model = optional_edvr(CHECKPOINT)  # None without a checkpoint
if paper_model is not None:
    paper_found = offsets_vs_dis(paper_model, bikes)
    print(f"{paper_found.clip.name}; forward pass {paper_found.outputs.seconds:.1f} s on the CPU")
    print(paper_found.table())
    show_offsets_beside_flow(**paper_found.figure_data("l1"))
    plt.show()

# %% [markdown]
# With a checkpoint, the offset viewer opens here on the same frames: click a pixel to see
# where its G x N offsets (72 for EDVR-M and EDVR-L) sample the neighbour beside the DIS vector, the groups with the
# `group g` slider, the levels with `level`.

# %%
if paper_model is not None:
    display(OffsetViewer(paper_model, paper_found.clip))

# %% [markdown]
# ## 8. The DCN playground
#
# Eq. 1 for one output pixel of a 3x3 deformable convolution on a 9x9 picture: pick a tap
# *k*, move its offset (dy, dx) and its mask *m_k*, and watch the sampling position, its four
# bilinear neighbours with their weights, and every tap's contribution
# *w_k m_k x(p + p_k + Δp_k)* to the output *y(p)*. The line under the picture computes
# *y(p)* three ways — by hand, with `dalign_nb.ops.deform_conv2d` and with torchvision's op —
# on every move. It starts with tap 0 moved by (0.6, -1.3).

# %%
playground = DCNPlayground()
playground.select(dy=0.6, dx=-1.3)
playground

# %% [markdown]
# ## 9. How fast the viewers answer
#
# A model runs once per centre frame; an interaction redraws only the panels it changes
# (a click: the reference, the neighbour and the distances). Here are the times on untrained
# tiny models and a 64x64 LR scene (`python -m dalign_nb.bench widgets` prints the same
# table): wall-clock and CPU time of this process in milliseconds. Drawing runs on one
# thread, so the CPU time is what a redraw takes on an idle machine; the wall time is what
# it took here, with whatever else was running.

# %%
times = benchmark(repeats=3, seed=SEED)
print(format_benchmark(times))
assert all(cpu < 0.5 for row in times.values() for step, (wall, cpu) in row.items() if step != "first view")

# %% [markdown]
# ## Summary
#
# In this notebook we have:
#
# - loaded two models of one training that differ only in N (1 and 15 offsets, `fig9`, seed 0)
#   and a DCNv2 with masks (`fig17`), and looked at their offsets pixel by pixel beside the
#   exact and the estimated flow, sorted by their l1 distance to the flow as in Fig. 6, with
#   their diversity, masks and the occlusions;
# - measured the same: how close the nearest offset comes to the flow, and how diversity and
#   masks behave at occlusions;
# - compared the features before and after alignment with one and with several offsets
#   (Fig. 7);
# - used the viewer on a real clip, with DIS flow and a forward-backward occlusion check;
# - where the reader has BasicSR's EDVR checkpoint, put the paper's own model's offsets beside
#   DIS flow at each PCD level, with Fig. 5's share within 1 px, and opened the viewer on it;
# - moved one tap of a DCN by hand and checked Eq. 1 against two implementations;
# - timed the viewers: one interaction redraws in a fraction of a second on 2 cores.
#
# The viewers take any EDVR of the project (`dcn`, `decomposed` with any N and G, `flow`,
# `image`, `flow_guided`) and any clip (`synthetic_clips`, `bundled_clips`, a video file's
# path): point them at the models of the experiments to see what training at scale does to
# the offsets.
