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
# In this notebook we will:
#
# 1. read Eq. 2 of the paper (Sec. 3.2), deformable alignment, and see where EDVR computes it;
# 2. go through the training recipe of the paper (Sec. A.1) — Adam, cosine annealing with
#    restarts, Charbonnier loss, the two-stage TSA schedule — and what the profiles `quick`,
#    `standard` and `paper` set;
# 3. measure how much the training patches and the held-out frames move;
# 4. train two small EDVR models live: a deformable alignment (DCNv2, 3x3 kernel: N = 9
#    offsets per deformable group) and its one-offset special case (N = 1 per group: a warp
#    followed by a 1x1 convolution, Eq. 3 with N = 1), interrupting and resuming one exactly;
# 5. follow the training curves and the offset monitor;
# 6. score both models on held-out frames against bicubic, and measure what their offsets
#    contribute by switching them off;
# 7. recompute Eq. 2 by hand from the trained DCN's own offsets and weights, and look at the
#    aligned features.
#
# The `quick` models train for a few minutes on 12x12 patches. They show the machinery —
# the recipe, exact resume, the monitor, the model's internals — but, as sections 3, 6 and 7
# measure, **they barely align**, so they cannot show the paper's findings about alignment;
# the experiments of Sec. 4 need models that do.

# %% tags=["parameters"]
import copy
import dataclasses
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from dalign_nb import data, flow, metrics
from dalign_nb.config import get_profile, profile_name
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
# the mask $m_k$ of Eq. 7) and evaluates the sum. Section 9 recomputes Eq. 2 by hand from a
# trained model's offsets.
#
# ## 2. The recipe and the profiles
#
# A profile is three frozen dataclasses: the model (EDVR's hyper-parameters under BasicSR's
# names, with its alignment), the data (patches, batch, held-out clips) and the optimisation.
# `paper` is BasicSR's EDVR-M REDS configuration; `quick` keeps the recipe and shrinks
# everything else so that this notebook runs in CI.
#
# One deviation is ours: `quick` and `standard` set `model.zero_init_output`, which starts
# EDVR's last convolution at zero so that the untrained model is exactly its bilinear base
# (`out = residual + bilinear(centre frame)`). With BasicSR's random initialisation the first
# steps go into silencing a noisy residual, and a small model then sits at the bilinear
# output for hundreds of iterations — all that `quick` has. `paper` keeps BasicSR's
# initialisation.

# %%
rows = []
for name in ("quick", "standard", "paper"):
    p = get_profile(name)
    rows.append([name, p.model.num_feat, p.model.num_frame, p.model.deformable_groups,
                 p.model.num_reconstruct_block, p.model.with_tsa, p.data.source,
                 f"{p.data.batch_size} x {p.data.patch_size}^2", f"{p.train.lr:g}", p.train.total_iter,
                 p.train.tsa_iter])
print(format_table(rows, ["profile", "C (features)", "T (frames)", "G (groups)", "recon. blocks", "TSA",
                          "training data", "batch x LR patch", "lr", "iterations", "TSA-only iterations"]))

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
n1_profile = profile.replace(model={"alignment": {"kind": "decomposed", "num_offsets": 1}})
runs = {"DCN (N = 9)": (dcn_profile, run_dir(dcn_profile, "nb04")),
        "N = 1": (n1_profile, run_dir(n1_profile, "nb04"))}
total = profile.train.total_iter
results, wall = {}, {}

name, (p, out) = "DCN (N = 9)", runs["DCN (N = 9)"]
start = time.perf_counter()
half = train(p, out, train_set=train_set, val_set=val_set, resume=False, stop_at=total // 2, device=DEVICE)
print(f"status {half.status!r} after {half.iteration} iterations; checkpoint {half.out_dir.name}/{CHECKPOINT}")
results[name] = train(p, out, train_set=train_set, val_set=val_set, resume=True, device=DEVICE)
wall[name] = time.perf_counter() - start
print("events:", [(e["event"], e["iter"]) for e in results[name].history["events"]])
assert results[name].status == "done" and results[name].iteration == total

# %% [markdown]
# ## 5. Train the one-offset model (N = 1 per group)
#
# Same EDVR, same data order, same schedule; only the alignment changes: every deformable
# group warps its channels with a single offset field (a flow) and a 1x1 convolution mixes
# them — Eq. 3 with N = 1. The two models are not the same size: a 3x3 DCN has nine weight
# matrices per group where N = 1 has one.

# %%
name, (p, out) = "N = 1", runs["N = 1"]
start = time.perf_counter()
results[name] = train(p, out, train_set=train_set, val_set=val_set, resume=False, device=DEVICE)
wall[name] = time.perf_counter() - start
params = {name: sum(q.numel() for q in res.model.parameters()) for name, res in results.items()}
for name, res in results.items():
    print(f"{name:12s} {params[name] / 1e3:7.1f}k parameters, {res.iteration} iterations in {wall[name]:.0f} s")

# %% [markdown]
# ## 6. Curves and the offset monitor
#
# The history (`history.json` in the run folder) logs, every `log_every` iterations, the
# mean loss, the learning rate and, per pyramid level, the mean and max |offset| and the
# share of offset components beyond 10 px. BasicSR warns when the mean |offset| exceeds 50
# ("offset overflow", the instability that Sec. 3.4's offset-fidelity loss addresses); the
# trainer records every such event in `history["overflow"]`.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3))
for name, res in results.items():
    h = res.history["train"]
    it = [e["iter"] for e in h]
    axes[0].plot(it, [e["loss"] for e in h], label=name)
    axes[1].plot(it, [e["lr"] for e in h], label=name)
    axes[2].plot(it, [e["offsets"]["l1"]["mean_abs"] for e in h], label=f"{name}, L1")
    axes[2].plot(it, [e["offsets"]["l3"]["mean_abs"] for e in h], "--", label=f"{name}, L3")
axes[0].set(title="training loss", xlabel="iteration", ylabel="Charbonnier loss", yscale="log")
axes[1].set(title="learning rate", xlabel="iteration", ylabel="lr")
axes[2].set(title="offsets: how far alignment samples", xlabel="iteration", ylabel="mean |offset| (LR px)")
for ax in axes:
    ax.legend(fontsize=7)
plt.tight_layout()
plt.show()
final_offsets = {name: res.history["train"][-1]["offsets"] for name, res in results.items()}
for name, res in results.items():
    print(f"{name:12s} overflow events: {len(res.overflow)};  final "
          + ", ".join(f"{lvl}: mean {s['mean_abs']:.3f} max {s['max_abs']:.3f}"
                      for lvl, s in final_offsets[name].items()))
    assert not res.overflow

# %% [markdown]
# Neither model learns offsets that match the motion. The training patches move 3–4 LR px
# to their neighbours (section 3), but at the end of training the N = 1 model's L1 offsets
# average 0.003 px (at most 0.018 px): its warp is the identity, it does not align. The
# DCN's L1 offsets average 0.27 px (at most 2.1 px), an order of magnitude below the motion.
#
# ## 7. PSNR on the held-out frames, and what the offsets contribute
#
# The validation PSNR (RGB, 8-bit output, no border crop) is the mean over the held-out
# frames; the bicubic baseline is MATLAB's `imresize` x4 of the centre frame
# (`metrics.bicubic_baseline`).
#
# A PSNR gap between the two models is not by itself a gap between two alignments: the
# models differ in size, and section 6 shows that neither moves its samples by more than
# a fraction of the motion. To compare like with like we score each model a second time
# with its offsets switched off — the last convolution of every offset branch set to zero,
# so $\Delta\mathbf{p}_k = 0$ everywhere and the masks untouched. Eq. 2 then becomes a plain
# 3x3 convolution (DCN) or a 1x1 convolution (N = 1) of the unaligned neighbour; the PSNR
# change is what the offsets contribute, whether or not they align (section 9 checks that).

# %%
def without_offsets(model):
    """A copy of ``model`` whose alignment modules all predict zero offsets (masks kept)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for module in model.modules():
            conv = getattr(module, "conv_offset", None)
            if isinstance(conv, torch.nn.Conv2d):
                n = conv.out_channels * 2 // 3 if module.modulated else conv.out_channels  # (dy, dx) channels
                conv.weight[:n] = 0
                conv.bias[:n] = 0
    return model


scores = {name: evaluate(res.model, val_set, DEVICE) for name, res in results.items()}
unaligned = {name: evaluate(without_offsets(res.model), val_set, DEVICE)["psnr"] for name, res in results.items()}
bicubic = next(iter(scores.values()))["psnr_bicubic"]
rows = [["bicubic", "", f"{bicubic:.2f}", "", "", ""]]
for name, s in scores.items():
    rows.append([name, f"{params[name] / 1e3:.1f}k", f"{s['psnr']:.2f}", f"{s['psnr'] - bicubic:+.2f}",
                 f"{unaligned[name]:.2f}", f"{s['psnr'] - unaligned[name]:+.3f}"])
print(format_table(rows, ["model", "parameters", "PSNR (dB)", "over bicubic (dB)",
                          "PSNR, offsets off (dB)", "what the offsets add (dB)"]))
assert all(s["psnr"] > bicubic for s in scores.values()), "a quick model must beat bicubic"

# %% [markdown]
# Both models beat bicubic, and the DCN scores 0.35 dB above N = 1 (29.48 against
# 29.13 dB). That gap is not evidence about alignment:
#
# - the models differ in size and kernel: 196.4k against 160.3k parameters, a 3x3 DCN
#   against a warp followed by a 1x1 convolution;
# - N = 1 does not use its offsets: switching them off changes its PSNR by −0.007 dB;
# - the DCN does depend on its offsets (1.24 dB without them, which leaves it below
#   bicubic), but section 9 shows that they are nearly the same for the centre frame, which
#   has nothing to align, as for its neighbours: a learned sampling pattern of the 3x3
#   kernel, not motion compensation;
# - three of the four held-out frames barely move (0.12–0.15 px to their neighbours, 1.10 px
#   for the fourth; section 3), so alignment has little to do there.
#
# Sec. 4.2's comparison of N needs models whose offsets follow the motion and held-out
# frames that move; the `quick` profile provides neither.
#
# ## 8. Super-resolved frames side by side

# %%
sample = val_set[0]
lq, gt = sample["lq"], sample["gt"]  # (T, 3, h, w), (3, 4h, 4w)
centre = lq[lq.shape[0] // 2]
with torch.no_grad():
    outs = {name: metrics.quantize(res.model(lq[None].to(DEVICE))[0].cpu()) for name, res in results.items()}
panels = {"bicubic": metrics.quantize(metrics.bicubic_baseline(centre[None])[0]), **outs, "ground truth": gt}
H, W = gt.shape[-2:]
y0, x0, size = H // 4, W // 3, min(H, W) // 2
fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.6), layout="constrained")
for ax, (name, img) in zip(axes, panels.items()):
    crop = img[:, y0:y0 + size, x0:x0 + size]
    title = name if name == "ground truth" else f"{name}\n{metrics.psnr(img[None], gt[None]):.2f} dB"
    ax.imshow(crop.permute(1, 2, 0).numpy())
    ax.set(title=title, xticks=[], yticks=[])
fig.suptitle(f"{sample['name']}: a {size} x {size} HR crop; PSNR over the whole frame", fontsize=10)
plt.show()

# %% [markdown]
# ## 9. Eq. 2 inside the trained DCN, and the aligned features
#
# `model(x, return_aux=True)` returns what alignment did at every pyramid level: the offsets,
# the masks and the alignment module's output. At level L1, that output must be Eq. 2 (with
# the mask of Eq. 7) evaluated on the neighbour's L1 feature with the module's own kernel
# weights $w(\mathbf{p}_k)$ — and nothing of the reference, which entered only through the
# offsets:

# %%
model = results["DCN (N = 9)"].model.cpu()
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
# ## 10. The `standard` and `paper` profiles
#
# The same code runs at every scale; only the profile changes. From a shell at the top of
# the repository:
#
# ```bash
# # small-scale reproduction: tens of minutes on a laptop CPU, minutes on a GPU
# python -m dalign_nb train --profile standard --alignment dcn
# python -m dalign_nb train --profile standard --alignment decomposed --num-offsets 1
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
# ## Summary
#
# In this notebook we have:
#
# - read Eq. 2: deformable alignment is Eq. 1 on the neighbour's feature, with offsets
#   predicted from the neighbour and the reference together; recomputed it by hand from a
#   trained DCN;
# - trained EDVR with a DCN (N = 9 offsets per group) and with one offset per group (N = 1)
#   using the paper's recipe (Adam, cosine annealing with restarts, Charbonnier), scaled
#   down, and interrupted and resumed the DCN run exactly;
# - followed the loss, the learning rate and the offset monitor (no overflow at this scale);
# - checked that both models beat bicubic on the held-out frames;
# - measured what these quick models do not show: the N = 1 model's offsets stay at about
#   0.003 px while the training motion is 3–4 px; the DCN's offsets matter to it (1.24 dB)
#   but are nearly the same for the centre frame as for its neighbours; the held-out frames
#   barely move. The 0.35 dB between the two models is not a measurement of alignment;
# - seen the commands that run the `standard` and `paper` profiles (DDP under `torchrun`).
#
# The next step of the reproduction trains models that do align — more iterations, larger
# patches, held-out frames that move — and compares their offsets with optical flow
# (Sec. 4.1), using the synthetic scenes' exact flow of notebook 03.
