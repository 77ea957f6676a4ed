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
# # 04 · Training alignment models
#
# > **What this notebook shows.** The paper's training recipe (A.1) at small scale, a DCN model
# > trained live (interrupted and resumed exactly), Eq. 2 recomputed from its own weights, and
# > two committed models of the `align` profile compared like with like.
# > **Main results**: the live `quick` model beats bicubic and relies on its offsets, which do
# > not follow the motion (sections 6-7 print it); of the committed models of the `align`
# > profile, the one whose offsets align relies on them, yet the one trained on the SR loss
# > alone scores higher on both of two seeds (inconclusive by the rule; section 8 prints both
# > from `data/results/fig5`); `align2` under bfloat16 autocast learns within float32's spread
# > over three seeds (section 11), so it trains that way where the CPU computes bfloat16 natively.
#
# In this notebook we will:
#
# 1. read Eq. 2 of the paper (Sec. 3.2), deformable alignment, and see where EDVR computes it;
# 2. go through the training recipe of the paper (Sec. A.1) — Adam, cosine annealing with
#    restarts, Charbonnier loss, the two-stage TSA schedule — and what the profiles `quick`,
#    `standard`, `align` and `paper` set;
# 3. measure how much the training patches and the held-out frames move;
# 4. train a small EDVR with deformable alignment (DCNv2, 3x3 kernel: N = 9 offsets per
#    deformable group) live, interrupting and resuming it exactly;
# 5. follow its training curves and the offset monitor;
# 6. score it on held-out frames against bicubic, and measure what its offsets contribute by
#    switching them off;
# 7. recompute Eq. 2 by hand from the trained DCN's own offsets and weights, and look at the
#    aligned features;
# 8. compare, like with like, two models of the `align` profile that differ in one thing
#    only — the training signal that shapes their offsets — from the committed results of
#    the experiment `fig5`: one aligns, the other does not, and the PSNR says which is used;
# 9. (sections 9-11) look at their output frames, the commands of every profile, and whether
#    bfloat16 on the CPU learns within float32's spread over seeds.
#
# The `quick` model trains for a couple of minutes on 12x12 patches. It shows the machinery
# — the recipe, exact resume, the monitor, the model's internals — but, as sections 3, 6 and
# 7 measure, **it barely aligns**. Section 8 shows models that do: trained for 3000
# iterations (about 50 minutes each on one CPU core) by `python -m dalign_nb experiment fig5`,
# their weights and measurements are part of the repository.

# %% tags=["parameters"]
import dataclasses
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from dalign_nb import data, experiments, flow, metrics, report, viz
from dalign_nb.config import Profile, get_profile, profile_name
from dalign_nb.data import SceneConfig, validation_clips
from dalign_nb.experiments import zero_offsets
from dalign_nb.ops import deform_conv2d
from dalign_nb.paper import format_table
from dalign_nb.train import CHECKPOINT, run_dir, train
from dalign_nb.training.schedule import CosineAnnealingRestartLR
from dalign_nb.training.validation import build_data, evaluate

PROFILE = profile_name()  # DALIGN_PROFILE: "quick" (CI, minutes on 2 CPU cores), "standard", "paper"
SEED = 0
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
torch.manual_seed(SEED)
profile = get_profile(PROFILE).replace(train={"seed": SEED})
print(f"profile {profile.name} on {DEVICE}: {profile.description}")

# %% [markdown]
# ## 1. Deformable alignment (Eq. 2, Sec. 3.2)
#
# Let $F_t$ be the feature of the reference (centre) frame and $F_{t+i}$ the feature of a
# neighbouring frame. Deformable alignment aligns $F_{t+i}$ to $F_t$ with a deformable
# convolution:
#
# $$\hat{F}_{t+i}(\mathbf{p}) = \sum_{k=1}^{n^2} w(\mathbf{p}_k)\cdot F_{t+i}(\mathbf{p} +
# \mathbf{p}_k + \Delta\mathbf{p}_k) \qquad (2)$$
#
# This is Eq. 1 (notebook 01) with the neighbour's feature as input. What makes it
# *alignment* is where the offsets come from: a few convolutions predict $\Delta\mathbf{p}_k$
# from $F_t$ and $F_{t+i}$ together (Fig. 3), so the offsets can encode where each piece of
# the reference's content sits in the neighbour. The reference feature is used **only** to
# predict the offsets; it never enters the sum. If the neighbour moved by $\mathbf{d}$ pixels
# and every $\Delta\mathbf{p}_k = \mathbf{d}$, Eq. 2 samples the neighbour where the
# reference's content is: a flow warp followed by a convolution (Sec. 3.3, notebook 02).
#
# EDVR (the model the paper analyses) computes Eq. 2 in its PCD module at three pyramid
# levels (L3 coarse to L1 at full LR size) and once more in a cascade. At each level,
# `PCDAlignment.forward` predicts an offset feature from `torch.cat([nbr, ref])` and
# `dcn_pack[level].align(nbr, offset_feature)` predicts $\Delta\mathbf{p}_k$ (and, for DCNv2,
# the mask $m_k$ of Eq. 7) and evaluates the sum. Section 7 recomputes Eq. 2 by hand from a
# trained model's offsets.
#
# ## 2. The recipe and the profiles
#
# A profile is three frozen dataclasses: the model (EDVR's hyper-parameters under BasicSR's
# names, with its alignment), the data (patches, batch, held-out clips) and the optimisation.
# `paper` is BasicSR's EDVR-M REDS configuration; `quick` keeps the recipe and shrinks
# everything else so that this notebook runs in CI; `standard` is a small model for an hour
# on a CPU; `align` is the setting, found by measurement (notebook 05), in which a small
# model's offsets learn the motion: `standard`'s model with one flow per neighbour
# (G = N = 1), 3 frames, 4 x 32² patches, and two departures from the paper, both named —
# residual offsets across the PCD pyramid and a self-supervised photometric warping loss.
# `align2` ("Alignment, round 2"; notebook 05 measures it) adds three more, named too:
# **warp-then-estimate** (each finer PCD level predicts its offsets from the neighbour already
# warped by the coarser level's offsets, as the flow networks SPyNet and PWC-Net estimate a
# residual; `model.warp_then_estimate`), the warping term on **census transforms** instead of
# colours (UnFlow's soft census: local brightness order, blind to brightness changes and flat
# matches; `train.photometric_penalty`) and an **edge-aware smoothness** term on the offsets
# (`train.smoothness_weight`). The table's last column says what shapes each profile's offsets.
#
# One deviation is ours: `quick` and `standard` set `model.zero_init_output`, which starts
# EDVR's last convolution at zero so that the untrained model is exactly its bilinear base
# (`out = residual + bilinear(centre frame)`). With BasicSR's random initialisation the first
# steps go into silencing a noisy residual, and a small model then sits at the bilinear
# output for hundreds of iterations — all that `quick` has. `paper` keeps BasicSR's
# initialisation.

# %%
rows = []
for name in ("quick", "standard", "align", "align2", "paper"):
    p = get_profile(name)
    signal = "SR loss" + (f" + warping ({p.train.photometric_penalty})" if p.train.photometric_weight > 0 else "")
    signal += " + smoothness" if p.train.smoothness_weight > 0 else ""
    signal += ", warp-then-estimate" if p.model.warp_then_estimate else ""
    rows.append([name, p.model.num_feat, p.model.num_frame, p.model.alignment.kind, p.model.deformable_groups,
                 p.model.num_reconstruct_block, p.model.with_tsa, p.data.source,
                 f"{p.data.batch_size} x {p.data.patch_size}^2", f"{p.train.lr:g}", p.train.total_iter,
                 p.train.tsa_iter, signal])
print(format_table(rows, ["profile", "C (features)", "T (frames)", "alignment", "G (groups)", "recon. blocks",
                          "TSA", "training data", "batch x LR patch", "lr", "iterations", "TSA-only iterations",
                          "offsets shaped by"]))

# %% [markdown]
# The learning rate follows BasicSR's `CosineAnnealingRestartLR`: within restart period *i*
# it falls from `restart_weights[i] * lr` to `eta_min` along half a cosine. The `paper`
# schedule restarts after 50k, 150k, 300k and 450k iterations; `quick` has a single period:

# %%
def lr_schedule(cfg):
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    return CosineAnnealingRestartLR(opt, cfg.periods, cfg.restart_weights, cfg.eta_min)


fig, axes = plt.subplots(1, 2, figsize=(10, 2.6))
for ax, p in zip(axes, (get_profile("paper"), profile)):
    sched, steps = lr_schedule(p.train), np.arange(0, p.train.total_iter, max(1, p.train.total_iter // 600))
    ax.plot(steps + 1, [sched.lr_at(t) for t in steps])
    ax.set(title=f"{p.name}: learning rate", xlabel="iteration", ylabel="lr", yscale="log")
plt.tight_layout()
plt.show()
paper_schedule = lr_schedule(get_profile("paper").train)
# lr after t scheduler steps (iteration t + 1 runs at it): BasicSR counts t = 50,000 in the
# first period, so the restart comes at t = 50,001.
for t in (0, 25_000, 50_000, 50_001):
    print(f"t = {t:6d}: lr = {paper_schedule.lr_at(t):.3g}")
assert paper_schedule.lr_at(0) == 4e-4 and paper_schedule.lr_at(50_000) == 1e-7
assert abs(paper_schedule.lr_at(50_001) - 4e-4) < 1e-9

# %% [markdown]
# ## 3. Data: how much do the frames move?
#
# Training patches come from the profile's source (for `quick` and `standard`: synthetic
# scenes with a global motion of 2–6 LR pixels per frame and moving sprites, notebook 03).
# Validation uses whole frames of held-out clips that no training sample comes from: for
# `quick`, two frames each of the held-out `bikes` shot and of `carphone`.
#
# Alignment can only matter where frames move, so we measure the motion between the centre
# frame and its neighbours in both: for training, the exact LR flow of scenes drawn as the
# training scenes are; for the held-out frames, DIS (notebook 03 scores it at a fraction of a
# pixel for small motion).

# %%
start = time.perf_counter()
train_set, val_set = build_data(profile)
print(f"{len(val_set)} held-out frames: {[s['name'] for s in val_set]}, "
      f"LR {tuple(val_set[0]['lq'].shape[-2:])}; data ready in {time.perf_counter() - start:.1f} s")


def mean_motion(frames, flows=None):
    """Mean |flow| (LR px) from the centre frame to each of its two nearest neighbours."""
    c = len(frames) // 2
    if flows is None:
        flows = {k: flow.estimate_flow(frames[c], frames[k]) for k in (c - 1, c + 1)}
    return float(np.mean([np.linalg.norm(flows[k], axis=-1).mean() for k in (c - 1, c + 1)]))


scene_config = data.SceneConfig(num_frames=profile.model.num_frame)
train_motion = [mean_motion(s.frames, s.flows) for s in
                (data.synthetic_scene(scene_config, seed=i).lr() for i in range(4))]
val_motion = {s["name"]: mean_motion(s["lq"].permute(0, 2, 3, 1).numpy()) for s in val_set}
print(f"training scenes (exact flow): mean |flow| to the neighbours {np.round(train_motion, 2)} LR px")
for name, m in val_motion.items():
    print(f"held-out {name:20s} mean |flow| to the neighbours {m:.2f} LR px (DIS)")

# %% [markdown]
# ## 4. Train a DCN — interrupt it — resume it
#
# `train` writes a checkpoint atomically (temporary file, fsync, rename) every
# `ckpt_every` iterations and whenever it stops: at `stop_at`, on Ctrl-C / the notebook's
# interrupt button, on SIGTERM, or on an exception between iterations. Here we stop the DCN
# model half-way on purpose, then call `train` again: it restores model, optimiser,
# scheduler and random states, and the data order is a function of (seed, iteration), so
# the resumed run is the same as an uninterrupted one (the test suite checks weight for
# weight).

# %%
dcn_profile = profile.replace(model={"alignment": {"kind": "dcn"}})
out = run_dir(dcn_profile, "nb04")
total = dcn_profile.train.total_iter
start = time.perf_counter()
half = train(dcn_profile, out, train_set=train_set, val_set=val_set, resume=False, stop_at=total // 2,
             device=DEVICE)
print(f"status {half.status!r} after {half.iteration} iterations; checkpoint {half.out_dir.name}/{CHECKPOINT}")
result = train(dcn_profile, out, train_set=train_set, val_set=val_set, resume=True, device=DEVICE)
wall = time.perf_counter() - start
print("events:", [(e["event"], e["iter"]) for e in result.history["events"]])
num_params = sum(q.numel() for q in result.model.parameters())
print(f"{num_params / 1e3:.1f}k parameters, {result.iteration} iterations in {wall:.0f} s")
assert result.status == "done" and result.iteration == total

# %% [markdown]
# ## 5. Curves and the offset monitor
#
# The history (`history.json` in the run folder) logs, every `log_every` iterations, the
# mean loss, the learning rate and, per pyramid level, the mean and max |offset| and the
# share of offset components beyond 10 px. BasicSR warns when the mean |offset| exceeds 50
# ("offset overflow", the instability that Sec. 3.4's offset-fidelity loss addresses); the
# trainer records every such event in `history["overflow"]`.

# %%
h = result.history["train"]
it = [e["iter"] for e in h]
fig, axes = plt.subplots(1, 3, figsize=(13, 3))
axes[0].plot(it, [e["loss"] for e in h])
axes[1].plot(it, [e["lr"] for e in h])
for level, style in (("l1", "-"), ("l2", ":"), ("l3", "--")):
    axes[2].plot(it, [e["offsets"][level]["mean_abs"] for e in h], style, label=level.upper())
axes[0].set(title="training loss", xlabel="iteration", ylabel="Charbonnier loss", yscale="log")
axes[1].set(title="learning rate", xlabel="iteration", ylabel="lr")
axes[2].set(title="offsets: how far alignment samples", xlabel="iteration", ylabel="mean |offset| (LR px)")
axes[2].legend(fontsize=7)
plt.tight_layout()
plt.show()
final_offsets = h[-1]["offsets"]
print(f"overflow events: {len(result.overflow)};  final "
      + ", ".join(f"{lvl}: mean {s['mean_abs']:.3f} max {s['max_abs']:.3f}" for lvl, s in final_offsets.items()))
assert not result.overflow

# %% [markdown]
# The training patches move 3–4 LR px to their neighbours (section 3), but the DCN's L1
# offsets average a fraction of a pixel at the end of training: an order of magnitude below
# the motion.
#
# ## 6. PSNR on the held-out frames, and what the offsets contribute
#
# The validation PSNR (RGB, 8-bit output, no border crop) is the mean over the held-out
# frames; the bicubic baseline is MATLAB's `imresize` x4 of the centre frame
# (`metrics.bicubic_baseline`).
#
# To see what the offsets contribute we score the model a second time with its offsets
# switched off (`experiments.zero_offsets`: the offset rows of the last convolution of every
# offset branch set to zero, so $\Delta\mathbf{p}_k = 0$ everywhere and the masks untouched).
# Eq. 2 then becomes a plain 3x3 convolution of the unaligned neighbour; the PSNR change is
# what the offsets contribute, whether or not they align (section 7 checks that).

# %%
model = result.model.cpu().eval()
score = evaluate(model, val_set, "cpu")
with zero_offsets(model):
    unaligned = evaluate(model, val_set, "cpu")["psnr"]
bicubic = score["psnr_bicubic"]
print(format_table([["bicubic", f"{bicubic:.2f}", ""],
                    ["DCN (N = 9)", f"{score['psnr']:.2f}", f"{score['psnr'] - bicubic:+.2f}"],
                    ["DCN, offsets off", f"{unaligned:.2f}", f"{unaligned - bicubic:+.2f}"]],
                   ["model", "PSNR (dB)", "over bicubic (dB)"]))
assert score["psnr"] > bicubic, "the quick model must beat bicubic"

# %% [markdown]
# The model beats bicubic (by 0.9 dB) and depends on its offsets: without them it loses
# 1.2 dB and falls below bicubic.
# Section 7 shows that this is not alignment — the offsets are nearly the same for the
# centre frame, which has nothing to align, as for its neighbours: a learned sampling
# pattern of the 3x3 kernel, not motion compensation. Besides, three of the four held-out
# frames barely move (0.12–0.15 px to their neighbours, 1.10 px for the fourth; section 3),
# so alignment has little to do there.
#
# ## 7. Eq. 2 inside the trained DCN, and the aligned features
#
# `model(x, return_aux=True)` returns what alignment did at every pyramid level: the offsets,
# the masks and the alignment module's output. At level L1, that output must be Eq. 2 (with
# the mask of Eq. 7) evaluated on the neighbour's L1 feature with the module's own kernel
# weights $w(\mathbf{p}_k)$ — and nothing of the reference, which entered only through the
# offsets:

# %%
lq = val_set[0]["lq"]  # (T, 3, h, w): the first held-out sample
dcn = model.pcd_align.dcn_pack["l1"]
with torch.no_grad():
    _, aux = model(lq[None], return_aux=True)
    feats = model.extract(lq)[0]  # (T, C, h, w): L1 features before alignment
    off, mask = aux["offsets"]["l1"][0], aux["masks"]["l1"][0]  # (T, 2*G*9, h, w), (T, G*9, h, w)
    eq2 = deform_conv2d(feats, off, dcn.weight, dcn.bias, mask, padding=1, backend="torchvision")
diff = (eq2 - aux["aligned"]["l1"][0]).abs().max().item()
print(f"Eq. 2 by hand (torchvision's DCN, the model's weights and offsets) vs the model's L1 "
      f"alignment: max |diff| {diff:.1e}")
torch.testing.assert_close(eq2, aux["aligned"]["l1"][0], rtol=1e-4, atol=1e-5)

# %% [markdown]
# Below, for each input frame of the held-out sample: its L1 feature before alignment, the
# PCD output that the fusion receives, and the length of the L1 offsets (each $(dy, dx)$,
# averaged over groups and kernel taps). The centre frame is aligned to itself — there is
# no motion to undo — yet its offsets are as long as its neighbours': these offsets reshape
# the DCN's sampling grid, they do not follow motion.

# %%
aligned = aux["aligned_feat"][0]  # (T, C, h, w)
mag = off.unflatten(1, (-1, 2)).norm(dim=2).mean(1)  # (T, h, w): mean |(dy, dx)|
t = lq.shape[0]
h, w = lq.shape[-2:]
fig, axes = plt.subplots(3, t, figsize=(3.5 * t, 3 * 3.5 * h / w + 1.2), constrained_layout=True)
for i in range(t):
    axes[0, i].imshow(feats[i].mean(0), cmap="gray")
    axes[1, i].imshow(aligned[i].mean(0), cmap="gray")
    im = axes[2, i].imshow(mag[i], cmap="magma", vmin=0, vmax=float(mag.max()) + 1e-6)
    axes[0, i].set_title(f"frame {i - t // 2:+d}" + (" (centre)" if i == t // 2 else ""))
    axes[2, i].set_xlabel(f"mean {mag[i].mean():.2f} px")
for ax in axes.flat:
    ax.set(xticks=[], yticks=[])
for ax, label in zip(axes[:, 0], ("L1 feature\n(channel mean)", "aligned\n(channel mean)", "|L1 offset|")):
    ax.set_ylabel(label)
fig.colorbar(im, ax=axes[2].tolist(), label="LR px", aspect=10)
fig.suptitle("DCN model, held-out frame: features before and after alignment, and how far the "
             "L1 offsets sample", fontsize=10)
plt.show()
print("mean |L1 offset| per frame:", [round(float(m.mean()), 3) for m in mag])
assert aligned.shape == (t, profile.model.num_feat, *lq.shape[-2:])

# %% [markdown]
# ## 8. Models that align, compared like with like
#
# The experiment `fig5` (notebook 05) trains the `align` profile's G = N = 1 model — one
# learned flow per neighbour, Eq. 3 with N = 1 — for 3000 iterations under several
# conditions. Two of them differ in one thing only, the training signal of the offsets:
#
# - `aligning`: the SR loss plus a self-supervised photometric warping loss (each neighbour,
#   warped by its offsets, should reproduce the centre frame; not the paper's);
# - `sr_only`: the SR loss alone, the paper's training signal.
#
# Same model, same number of parameters, same seeds — hence the same initial weights and
# the same training batches, since the trainer seeds the initialisation and draws the data
# order from (seed, iteration). The stored profiles of each pair of runs must differ in the
# photometric weight and nothing else:

# %%
fig5 = {r["run"]: r for r in experiments.load_results("fig5")}
stored = {run: Profile.from_dict(r["provenance"]["profile"]).flat() for run, r in fig5.items()}
pairs = sorted(r["seed"] for r in fig5.values()
               if r["condition"] == "sr_only" and f"aligning-s{r['seed']}" in fig5)
for seed in pairs:
    a, b = stored[f"aligning-s{seed}"], stored[f"sr_only-s{seed}"]
    differ = sorted(k for k in a.keys() | b.keys() if k != "description" and a.get(k) != b.get(k))
    print(f"seed {seed}: the two runs differ in {differ} ({a['train.photometric_weight']} vs "
          f"{b['train.photometric_weight']})")
    assert differ == ["train.photometric_weight"]
aligning_model = experiments.load_model("fig5", "aligning-s0")
print(f"{sum(q.numel() for q in aligning_model.parameters()) / 1e3:.1f}k parameters each")

# %% [markdown]
# Each run was then measured on 8 held-out synthetic scenes (64² LR frames, about 4 px of
# motion to each neighbour, exact flow and occlusion; notebook 03): the share of
# non-occluded pixels whose L1 offset lies within 1 px of the exact flow, the end-point
# error, and the PSNR of the model beside that of the same model with its offsets held at
# zero.

# %%
COLUMNS = {"within 1 px (%)": ("within_1px", 100, 1), "EPE (px)": ("epe", 1, 2),
           "mean |offset| (px)": ("mean_offset", 1, 2), "PSNR (dB)": ("psnr", 1, 2),
           "offsets at 0 (dB)": ("psnr_zero_offsets", 1, 2), "what the offsets add (dB)": ("psnr_gain_over_zero", 1, 2)}
results = list(fig5.values())
rows = []
for cond in ("aligning", "sr_only"):
    for r in sorted((r for r in results if r["condition"] == cond), key=lambda r: r["seed"]):
        m = r["measures"]["offsets_vs_flow"]
        rows.append([r["run"]] + [f"{scale * m[key]:.{digits}f}" for key, scale, digits in COLUMNS.values()])
    stats = [experiments.summarize(results, f"measures.offsets_vs_flow.{key}")[cond] for key, _, _ in COLUMNS.values()]
    if stats[0]["n"] > 1:
        rows.append([f"{cond}, mean ± sd"] + [f"{scale * st['mean']:.{digits}f} ± {scale * st['std']:.{digits}f}"
                                              for st, (_, scale, digits) in zip(stats, COLUMNS.values())])
bicubic_synthetic = fig5["aligning-s0"]["measures"]["offsets_vs_flow"]["psnr_bicubic"]
print(format_table(rows, ["run"] + list(COLUMNS)))
print(f"bicubic on the same scenes: {bicubic_synthetic:.2f} dB; mean |flow| "
      f"{fig5['aligning-s0']['measures']['offsets_vs_flow']['mean_flow']:.2f} px")

# %% [markdown]
# Two comparisons, each between runs that share everything but one thing:

# %%
comparisons = {
    "aligning model, offsets on minus offsets at zero": experiments.summarize(
        results, "measures.offsets_vs_flow.psnr_gain_over_zero")["aligning"],
    "aligning minus sr_only (same seed)": experiments.paired(
        results, "measures.offsets_vs_flow.psnr", "aligning", "sr_only")}
for label, st in comparisons.items():
    spread = f" ± {st['std']:.2f}" if st["n"] > 1 else " (one seed: no spread)"
    print(f"{label:50s} {st['mean']:+.2f}{spread} dB over {st['n']} seed(s)")

# %% [markdown]
# What these numbers say (the verdicts are in notebook 05, recomputed from the same files):
#
# - The `aligning` model **uses** its alignment: held at zero, its offsets cost it about
#   1 dB (the spread over seeds is in the table). Its offsets follow the motion (over 40 % of
#   the pixels within 1 px, the end-point error less than half the motion; the paper reports
#   over 80 % at full scale).
# - The SR loss alone leaves the offsets at zero: `sr_only` does not align at all. Its
#   offsets stay at about 0.01 px at L1, yet holding them at zero costs it about 0.1 dB: tiny
#   sub-pixel shifts that the SR loss found useful, not motion.
# - Yet `sr_only` scores about 0.1 dB *above* `aligning` on both seeds run (two seeds: no
#   verdict by `dalign_nb.report`'s rule, which needs three). At this scale the
#   rest of the network — the 3x3 convolutions of the offset-feature path, the TSA fusion and
#   the reconstruction blocks, whose receptive fields span the 4 px of motion — makes up for
#   missing alignment, and the photometric loss competes with the SR loss for the same
#   features. "Alignment helps SR" is therefore **not** shown by this pair; what is shown is
#   that a model whose offsets align comes to rely on them.
#
# ## 9. Super-resolved frames side by side
#
# One held-out synthetic scene (seed 0 of the scenes above): bicubic, the two models, the
# `aligning` model with its offsets held at zero, and the ground truth, cropped where the two
# models' outputs differ most.

# %%
sr_only_model = experiments.load_model("fig5", "sr_only-s0")
scene = validation_clips("synthetic", num_scenes=1, seed=0,
                         scene_config=SceneConfig(height=256, width=256, num_frames=3))[0]
c = scene.lq.shape[0] // 2
gt = scene.gt[c]
with torch.no_grad():
    panels = {"bicubic": metrics.bicubic_baseline(scene.lq[c][None])[0],
              "sr_only": sr_only_model(scene.lq[None])[0],
              "aligning": aligning_model(scene.lq[None])[0]}
    with zero_offsets(aligning_model):
        panels["aligning, offsets at 0"] = aligning_model(scene.lq[None])[0]
panels = {name: metrics.quantize(img) for name, img in panels.items()}
size = 96
corner = viz.most_different_crop(panels["aligning"], panels["sr_only"], size)  # where the two differ most
viz.show_crops(panels, gt, corner, size, suptitle=f"held-out synthetic scene: the {size} x {size} HR crop where "
               "the two models differ most; PSNR over the whole frame")
plt.show()

# %% [markdown]
# ## 10. The `standard`, `align`, `align2` and `paper` profiles
#
# The same code runs at every scale; only the profile changes. From a shell at the top of
# the repository:
#
# ```bash
# # small-scale reproduction: tens of minutes on a laptop CPU, minutes on a GPU
# python -m dalign_nb train --profile standard --alignment dcn
# python -m dalign_nb train --profile standard --alignment decomposed --num-offsets 1
#
# # the models of section 8 and notebook 05: the experiment fig5 (its align and align2
# # conditions x 3 seeds, 50-90 minutes per run on one core of a 2-core CPU; --jobs K runs K
# # at once, --device cuda on a GPU)
# python -m dalign_nb experiment fig5 --jobs 2
# python -m dalign_nb experiment fig5 --only round2-s0 round2-s1 --jobs 2
#
# # align2 trains under bfloat16 autocast with channels-last weights on a CPU with native
# # bfloat16 (AVX512-BF16 or AMX; section 11), elsewhere in float32 (its history says why);
# # python -m dalign_nb.bench train --precision times both ways. To force float32:
# python -m dalign_nb train --profile align2 --set train.cpu_amp=False --set train.channels_last=False
#
# # the paper (Sec. A.1): EDVR-M on REDS (data/REDS/train_sharp, train_sharp_bicubic/X4),
# # 4 GPUs with DDP; first without TSA, then with TSA initialised from it
# torchrun --nproc_per_node 4 -m dalign_nb train --profile paper --out runs/paper-wotsa \
#     --set model.with_tsa=False --set train.tsa_iter=0
# torchrun --nproc_per_node 4 -m dalign_nb train --profile paper \
#     --set train.pretrained=runs/paper-wotsa/model.pt
# ```
#
# Running a command again resumes from its run folder's checkpoint (`--fresh` starts over);
# Ctrl-C or SIGTERM stops after the current iteration with a checkpoint. `--print-config`
# shows every hyper-parameter; `--set section.field=value` changes any of them. In this
# notebook, set `DALIGN_PROFILE=standard` before starting Jupyter to train the standard
# models here instead.

# %%
print(dataclasses.asdict(get_profile("paper").train))

# %% [markdown]
# ## 11. bfloat16 on the CPU: faster, and does it learn as float32 does?
#
# On a CPU with native bfloat16 arithmetic (AVX512-BF16 or AMX) the trainer can run the network
# under bfloat16 autocast with channels-last weights (`train.cpu_amp`, `train.channels_last`):
# the feature convolutions compute in bfloat16, while every offset, warp and loss stays in
# float32 (an offset predicted in bfloat16 would have lost the sub-pixel part that the
# sampling needs: `ops.predict_offsets`). Where bfloat16 is only emulated the trainer stays in
# float32 and its history says why (`history["precision"]`).
#
# Faster is not enough: rounding differs, and over 3000 iterations a rounding difference grows
# as a different seed would. So the fast path was trained on `fig5`'s `round2` (the `align2`
# setting) with the same three seeds as float32 (`experiment fig5 --tag bf16`), and compared
# seed for seed (`report.precision_parity`): a quantity learns as float32 does when the
# difference's 95 % interval includes zero and its mean is no larger than float32's own
# spread over seeds; the setting's two targets, the share within 1 px of the exact flow and
# the PSNR, decide (`report.learns_as_baseline`).

# %%
fast = experiments.load_results("fig5-bf16", missing_ok=True)
f32 = [r for r in experiments.load_results("fig5") if r["condition"] == "round2"]
if fast:
    parity = report.precision_parity(fast, f32)
    print(format_table(parity, report.PARITY_HEADERS))
    print(f"\nwithin float32's seed spread on both deciding quantities: {report.learns_as_baseline(parity)}; "
          f"the fast path is align2's default: {get_profile('align2').train.cpu_amp}")

    def precision(r):  # the trainer's record; runs from before it was kept say what they asked for
        if r["provenance"].get("precision"):
            return r["provenance"]["precision"]["autocast"] or "float32"
        return "bfloat16 asked, not recorded" if r["provenance"]["profile"]["train"]["cpu_amp"] else "float32"

    print(format_table([[r["run"], r["provenance"].get("device_name") or r["provenance"]["device"],
                         precision(r), f"{r['provenance']['train_wall_s'] / 60:.1f}"] for r in f32 + fast],
                       ["run", "device", "autocast", "training (minutes, two runs at a time)"]))
else:
    print("fig5-bf16 has not run: python -m dalign_nb experiment fig5 --only round2-s0 round2-s1 round2-s2 "
          "--tag bf16 --set train.cpu_amp=True --set train.channels_last=True")

# %% [markdown]
# **What the three seeds say** (the table above): every quantity is within float32's spread
# over seeds, and the two that decide are, so `align2` now trains on the fast path wherever the
# CPU computes bfloat16 natively. Three seeds show no difference beyond the seeds' own; they
# cannot show the two paths the same. The share within 1 px came out higher with bfloat16 on all
# three seeds (+1.9 points on average, +0.7 to +3.9): a trend, not shown (with three seeds its
# interval includes zero), and not a reason to prefer it. The gain over offsets held at zero
# varies most from seed to seed in both precisions: it measures how badly this model does when
# its offsets are switched off, which is not something training aims at.
#
# The float32 runs trained on another machine (an AVX2 CPU without native bfloat16, not
# recorded in their provenance, which did not keep the CPU's name then), so their minutes do
# not compare with the bfloat16 ones; `python -m dalign_nb.bench train --precision` times both
# paths on one machine, interleaved (README: 1.7-2.0x on the CPU of the bfloat16 runs). The
# experiments of Sec. 4 and Table 2, begun in float32, keep float32 on every machine
# (`experiments.FLOAT32`): a precision that changed with the machine a run lands on would break
# the seed-for-seed pairing their verdicts rest on.

# %% [markdown]
# ## Summary
#
# In this notebook we have:
#
# - read Eq. 2: deformable alignment is Eq. 1 on the neighbour's feature, with offsets
#   predicted from the neighbour and the reference together; recomputed it by hand from a
#   trained DCN;
# - trained EDVR with a DCN (N = 9 offsets per group) using the paper's recipe (Adam, cosine
#   annealing with restarts, Charbonnier), scaled down, and interrupted and resumed it
#   exactly;
# - followed the loss, the learning rate and the offset monitor (no overflow at this scale);
# - measured what the quick model does not show: its offsets matter to it but do not follow
#   the motion (the same for the centre frame as for its neighbours), and the held-out
#   frames barely move;
# - compared like with like two models of the `align` profile that differ only in the
#   training signal of their offsets: with a photometric warping loss they follow the motion
#   and the model relies on them (about 1 dB); with the SR loss alone they stay at zero — and
#   that model scores about 0.1 dB higher on both seeds run (two seeds: inconclusive by the
#   rule), which suggests that at this scale the rest of the network makes up for missing
#   alignment;
# - seen the commands that run the `standard`, `align`, `align2` and `paper` profiles and the
#   `fig5` experiment;
# - checked, over three seeds, that `align2` under bfloat16 autocast stays within the spread of
#   float32, which makes the faster path its default on CPUs with native bfloat16.
#
# Notebook 05 looks at the `align` models' offsets against the exact and the estimated flow
# (Fig. 4-5 of the paper).
