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
# # 05 · Offsets vs optical flow
#
# > **What this notebook shows.** Whether a $G = N = 1$ EDVR learns offsets that follow the
# > motion (Sec. 4.1, Fig. 4-5), measured against the exact flow of held-out synthetic scenes.
# > **Main results** (the next cell prints them from `data/results/fig5`): with two named
# > departures from the paper (`align`) the offsets come within 1 px of the flow on about half
# > the paper's share, and with three more (`align2`: warp-then-estimate, a census term,
# > smoothness; section 2b) on most pixels, short of the paper's 80 %; with the SR loss alone
# > they do not move, neither EDVR's own PCD's nor round 2's (three seeds each); the aligning
# > models rely on their offsets, yet round 2's model trained without its warping term scores
# > higher PSNR than the same model that aligns, on every seed and beyond noise.

# %%
from dalign_nb import experiments, paper, report

_fig5 = experiments.load_results("fig5")
_w = experiments.summarize(_fig5, "measures.offsets_vs_flow.within_1px")
_gain = experiments.summarize(_fig5, "measures.offsets_vs_flow.psnr_gain_over_zero")["aligning"]
_d = experiments.paired(_fig5, "measures.offsets_vs_flow.psnr", "aligning", "sr_only")
print(f"offsets within 1 px of the exact flow: aligning {report.mean_sd(_w['aligning'], 1, percent=True)} "
      f"(n = {_w['aligning']['n']}; paper: over {100 * paper.FIG5_SHARE_WITHIN_1PX:.0f} %), "
      f"sr_only {report.mean_sd(_w['sr_only'], 1, percent=True)} (n = {_w['sr_only']['n']})")
print(f"aligning, PSNR lost with its offsets held at zero: {report.mean_sd(_gain)} dB (n = {_gain['n']})")
print(f"aligning - sr_only PSNR, seed for seed: {report.mean_sd(_d, signed=True)} dB (n = {_d['n']})")
if "round2" in _w:
    _g2 = experiments.summarize(_fig5, "measures.offsets_vs_flow.psnr_gain_over_zero")["round2"]
    print(f"round2 (align2): {report.mean_sd(_w['round2'], 1, percent=True)} within 1 px (n = {_w['round2']['n']}), "
          f"PSNR lost with its offsets held at zero {report.mean_sd(_g2)} dB")
    _d2 = experiments.paired(_fig5, "measures.offsets_vs_flow.psnr", "round2_sr_only", "round2")
    print(f"round2_sr_only (SR loss alone): {report.mean_sd(_w['round2_sr_only'], 1, percent=True)} within 1 px; "
          f"round2_sr_only - round2 PSNR, seed for seed: {report.mean_sd(_d2, 3, signed=True)} dB (n = {_d2['n']}: "
          f"{report.difference_verdict(_d2, +1)})")

# %% [markdown]
# Sec. 4.1 of the paper trains EDVR-M with a single offset per pixel ($G = N = 1$: flow-based
# alignment, the $n = 1$ case of Eq. 3) and finds that "the model automatically learns to
# align features based on the motions between frames": its offsets look like the optical flow
# of PWC-Net (Fig. 4) and over 80 % of them lie within 1 px of it (Fig. 5).
#
# In this notebook we will:
#
# 1. recall how EDVR predicts offsets from $F_t$ and $F_{t+i}$ (Eq. 2, Fig. 3), and the two
#    departures from the paper that make alignment learnable at small scale;
# 2. read the committed results of the experiment `fig5` (`python -m dalign_nb experiment fig5`):
#    offsets against the **exact** flow of held-out synthetic scenes (the paper could only use an
#    estimate), with and without those departures, beside the paper's number;
# 3. draw Fig. 5 (the histogram of offset-flow differences) and Fig. 4 (offsets, exact flow and
#    DIS flow in the colour wheel; the neighbour warped by each), and look at where offsets and
#    flow disagree: occlusions and motion boundaries (Fig. 11);
# 4. compare the offsets with DIS flow on the same scenes and on a real held-out clip;
# 5. measure why the offsets fall short of the paper's 80 %: where they miss, and which way
#    each training loss pushes them;
# 6. list what was tried on the way, including what failed;
# 7. train a small model live for a few minutes, as a demonstration (not the evidence).

# %% tags=["parameters"]
import matplotlib.pyplot as plt
import numpy as np
import torch

from dalign_nb import data, diagnostics, experiments, flow, losses, metrics, ops, paper, report, viz
from dalign_nb.analysis import offsets_vs_dis
from dalign_nb.config import get_profile, profile_name
from dalign_nb.data import SceneConfig
from dalign_nb.models import checkpoint_from_env, optional_edvr
from dalign_nb.models.edvr import EDVR, flow_pyramid
from dalign_nb.ops import flow_warp
from dalign_nb.paper import format_table
from dalign_nb.train import run_dir, train
from dalign_nb.viz import show_offsets_beside_flow
from dalign_nb.widgets import OffsetViewer

PROFILE = profile_name()  # DALIGN_PROFILE: "quick" (CI, minutes on 2 CPU cores), "standard", "paper"
CHECKPOINT = checkpoint_from_env()  # DALIGN_CHECKPOINT: a BasicSR EDVR checkpoint (section 5), or None
SEED = 0
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
torch.manual_seed(SEED)
print(f"profile {PROFILE} on {DEVICE}")

# %% [markdown]
# ## A first look: one offset field finds a known shift
#
# Before any network: one free offset per pixel (a $G = N = 1$ field, (dy, dx)), moved by
# gradient descent so that a neighbour frame sampled at $\mathbf{p} + \Delta\mathbf{p}(\mathbf{p})$
# reproduces the reference (`dalign_nb.offset_fit`: the photometric warping term of section 1,
# plus edge-aware smoothness). The neighbour is a crop of a real held-out LR frame moved by a known
# shift, so the right answer is that shift at every pixel. Searched at full resolution from zero,
# the field creeps, and unevenly: bilinear sampling tells an offset where to go only within about
# a pixel of the answer, so only where the texture is coarse does the gradient reach that far
# (after as many steps, the printout says how much of the frame it found). Searched **coarse to fine** -- at a quarter of the resolution first, where the shift
# is a pixel, then refined at half and full resolution from the coarser answer -- it finds it. That
# is the idea behind *warp-then-estimate* (section 1), which the PCD pyramid adopts in round 2.

# %%
from dalign_nb.offset_fit import fit_offset_field

frame = data.validation_clips("bundled", max_frames=11)[0].lq[10][None]  # (1, 3, h, w): bikes, held out
SHIFT = (0, 4)  # (dy, dx) in LR pixels: the neighbour is the reference moved 4 px to the right
y0, x0, size = 2, 40, 64
reference = frame[..., y0:y0 + size, x0:x0 + size]
neighbour = frame[..., y0 - SHIFT[0]:y0 - SHIFT[0] + size, x0 - SHIFT[1]:x0 - SHIFT[1] + size]
fits = {"one level, from zero": fit_offset_field(reference, neighbour, coarse_to_fine=False, steps=450),
        "coarse to fine": fit_offset_field(reference, neighbour, coarse_to_fine=True, steps=150)}
inner = (slice(None), slice(6, -6), slice(6, -6))  # away from the borders, whose content left the frame
shares = {}
for name, fit in fits.items():
    off = fit.offsets[0][inner]  # (2, h', w') as (dy, dx)
    shares[name] = float((((off[0] - SHIFT[0]) ** 2 + (off[1] - SHIFT[1]) ** 2).sqrt() < 1).float().mean())
    print(f"{name:22s} within 1 px of the shift on {100 * shares[name]:.0f} % of the pixels, "
          f"mean offset ({off[0].mean():+.2f}, {off[1].mean():+.2f}) px, {len(fit.losses)} steps")

fig, axes = plt.subplots(1, 5, figsize=(15, 3.2), layout="constrained")
for ax, (title, img) in zip(axes, (("reference", reference), ("neighbour\n(moved 4 px right)", neighbour))):
    ax.imshow(img[0].permute(1, 2, 0).clamp(0, 1))
    ax.set(title=title, xticks=[], yticks=[])
for ax, (name, fit) in zip(axes[2:4], fits.items()):
    ax.imshow(flow.flow_to_color(fit.offsets[0].flip(0).permute(1, 2, 0), 5.0))
    ax.set(title=f"{name}:\n{100 * shares[name]:.0f} % within 1 px", xticks=[], yticks=[])
for name, fit in fits.items():
    axes[4].plot(fit.losses, label=name)
axes[4].set(title="warping + smoothness loss", xlabel="Adam step", yscale="log")
axes[4].legend(fontsize=8)
plt.show()
assert shares["coarse to fine"] > shares["one level, from zero"] + 0.3

# %% [markdown]
# ## 1. How EDVR predicts offsets, and what we changed
#
# Eq. 2 aligns the neighbour's feature $F_{t+i}$ to the reference $F_t$ with a deformable
# convolution whose offsets $\Delta\mathbf{p}_k$ are predicted from **both** features (Fig. 3):
#
# $$\hat{F}_{t+i}(\mathbf{p}) = \sum_{k=1}^{n^2} w(\mathbf{p}_k)\cdot F_{t+i}(\mathbf{p} +
# \mathbf{p}_k + \Delta\mathbf{p}_k), \qquad \Delta\mathbf{p} = f(F_t, F_{t+i}). \qquad (2)$$
#
# In EDVR's PCD module $f$ runs on a three-level pyramid (L3 at a quarter of the LR size, L2 at
# half, L1 full): at each level a few convolutions turn $[F_{t+i}, F_t]$ and the upsampled
# *offset feature* of the coarser level into an offset feature, and a zero-initialised
# `conv_offset` turns that into offsets. With $G = N = 1$ there is one offset per pixel: a flow
# field, in (dy, dx) order.
#
# Trained at small scale with the SR loss alone, EDVR's offsets do not become flow: they stay
# near 0 px while the synthetic scenes move 2-6 px (the `sr_only` rows of section 2 measure
# it: a mean |offset| of about 0.01 px). Bilinear sampling gives a useful gradient
# only within about a pixel of the true position, and the paper's models had 600k iterations on
# GPUs to get past that. The profile `align` (the setting of this notebook) therefore departs
# from the paper in two named ways:
#
# * **residual offsets** (`model.residual_offsets`): level $l$ predicts a residual on top of
#   the coarser level's offsets, $\Delta\mathbf{p}^{l} = 2\,\mathrm{up}_2(\Delta\mathbf{p}^{l+1})
#   + r^{l}$, as coarse-to-fine flow networks (SPyNet, PWC-Net) do; at L3 a motion of 4 px is
#   one pixel, within reach of the bilinear gradient, and L1 inherits it instead of re-learning
#   it from an offset feature;
# * **a photometric warping loss** (`train.photometric_weight`, `losses.photometric_warping_loss`):
#   every neighbour LR frame, warped by its offsets at each level, should reproduce the centre LR
#   frame (Charbonnier, samples from outside the frame ignored), the self-supervised motion
#   compensation of VESPCN and TDAN. It uses **no** optical flow, estimated or exact.
#
# The architecture and everything else are the `standard` small EDVR (32 features, 2 + 4
# residual blocks, TSA) with 3 frames and 4 x 32² LR patches of synthetic scenes.

# %%
align = get_profile("align")
print(align.description)
for field in ("model.residual_offsets", "train.photometric_weight", "train.photometric_levels",
              "model.num_frame", "data.patch_size", "data.batch_size", "train.total_iter", "train.lr"):
    print(f"  {field:28s} {align.flat()[field]}")

# %% [markdown]
# ## 2. The committed results (experiment `fig5`)
#
# Four conditions, all $G = N = 1$ on the `align` profile, seeds 0-2, each measured on 8
# held-out synthetic scenes (256² HR, 64² LR, textures from held-out footage) against their
# exact flow, occluded pixels excluded:
#
# | condition | residual offsets | photometric loss | what it tests |
# | --- | --- | --- | --- |
# | `aligning` | yes | throughout | the setting |
# | `sr_only` | yes | never | the same model with the paper's training signal, the SR loss alone |
# | `warmup_then_sr` | yes | first 1000 of 3000 iterations | what the SR loss alone does to offsets that start flow-like: stay, drift or sharpen (Fig. 11) |
# | `edvr_sr_only` | no | never | EDVR's own PCD with the SR loss alone: the paper's condition at this scale |
#
# "Within 1 px" is the end-point error $\lVert \Delta\mathbf{p} - \mathbf{f} \rVert_2 < 1$ at the
# finest level (L1); "within 1 px, l1" the l1 distance $|\Delta x - u| + |\Delta y - v| < 1$, a
# stricter reading of the paper's "pixelwise difference" (Fig. 5 does not say which); PSNR is RGB on 8-bit output, beside the same model with its offsets held
# at zero (`experiments.zero_offsets`) and MATLAB bicubic.

# %%
results = experiments.load_results("fig5")
CONDITIONS = [c.name for c in experiments.EXPERIMENTS["fig5"].conditions]
KEYS = {"within 1 px": "within_1px", "within 1 px, l1": "within_1px_l1", "EPE px": "epe", "mean |flow| px": "mean_flow",
        "mean |offset| px": "mean_offset", "PSNR": "psnr", "PSNR, offsets 0": "psnr_zero_offsets",
        "gain over 0": "psnr_gain_over_zero", "bicubic": "psnr_bicubic"}
summary = {name: experiments.summarize(results, f"measures.offsets_vs_flow.{key}")
           for name, key in KEYS.items()}


rows = []
for cond in CONDITIONS:
    if cond not in summary["within 1 px"]:
        rows.append([cond, "not run yet"] + [""] * len(KEYS))
        continue
    n = summary["within 1 px"][cond]["n"]
    rows.append([cond, str(n)] + [report.mean_sd(summary[name][cond], 1, percent=True) if "within" in name
                                  else report.mean_sd(summary[name][cond]) for name in KEYS])
print(format_table(rows, ["condition", "seeds"] + list(KEYS)))
print("\nmean ± sample standard deviation over seeds; the paper (Fig. 5, EDVR-M on REDS, against "
      "PWC-Net's flow): over 80 % within 1 px")

# %% [markdown]
# Each run's training time and provenance are in its JSON file (`data/results/fig5/`):

# %%
print(format_table([[r["run"], r["provenance"]["iterations"], f"{r['provenance']['train_wall_s'] / 60:.0f}",
                    r["provenance"]["device"], r["provenance"]["threads"], r["provenance"]["git_commit"][:8]]
                   for r in results], ["run", "iterations", "training (min)", "device", "threads", "commit"]))


# %% [markdown]
# The verdicts, each computed from the table above by `dalign_nb.report`'s rule (a level or a
# difference is judged by its 95 % interval over the seeds; fewer than 3 seeds is inconclusive):

# %%
w, w_l1 = summary["within 1 px"], summary["within 1 px, l1"]
if "aligning" in w:
    a = w["aligning"]
    report.verdict_line(
        f"over {100 * paper.FIG5_SHARE_WITHIN_1PX:.0f} % of G = N = 1 offsets within 1 px of the flow (PWC-Net)",
        f"aligning: {report.mean_sd(a, 1, percent=True)} within 1 px of the exact flow by end-point error, "
        f"{report.mean_sd(w_l1['aligning'], 1, percent=True)} by l1 distance (n = {a['n']}), with residual "
        "offsets and a photometric loss",
        report.level_verdict(a, paper.FIG5_SHARE_WITHIN_1PX))
for cond in ("sr_only", "edvr_sr_only"):
    if cond in w:
        s_ = w[cond]
        report.verdict_line("the SR loss alone makes offsets flow-like (600k iterations, EDVR-M, REDS)",
                            f"{cond}: {report.mean_sd(s_, 1, percent=True)} within 1 px (n = {s_['n']})",
                            report.level_verdict(s_, paper.FIG5_SHARE_WITHIN_1PX))
gain = {**summary["gain over 0"]["aligning"]} if "aligning" in summary["gain over 0"] else None
if gain:
    report.verdict_line("(beyond the paper) a model that aligns relies on its offsets: PSNR falls when they "
                        "are held at zero",
                        f"aligning: {report.mean_sd(gain, signed=True)} dB over the same model with its offsets "
                        f"held at 0 (n = {gain['n']})", report.difference_verdict(gain, +1))
# The paper's claim itself: aligned features improve SR. Seed for seed, the same model trained with
# the SR loss alone (same architecture, batches and seed; only the photometric weight differs)
d = experiments.paired(results, "measures.offsets_vs_flow.psnr", "aligning", "sr_only")
if d["n"]:
    report.verdict_line("alignment improves SR (Sec. 4.1: the model learns to align, and that is what it is for)",
                        f"aligning - sr_only: {report.mean_sd(d, signed=True)} dB PSNR, seeds {d['seeds']} "
                        f"(per seed: {', '.join(f'{x:+.2f}' for x in d['values'])})",
                        report.difference_verdict(d, +1),
                        why="the model that does not align scores higher on every seed run")

# %% [markdown]
# What the table and the verdicts say:
#
# * **Offsets that follow the motion, at about half the paper's share.** With its two
#   departures the $G = N = 1$ model puts about 45 % of its offsets within 1 px of the exact
#   flow by end-point error (about a third by the stricter l1 distance), with an end-point error of
#   about 1.6 px for about 4.1 px of motion, over three seeds; the paper reports over 80 %
#   against PWC-Net at full scale. Section 6 measures why it falls short.
# * **The SR loss alone does not align at this scale**, the paper's own training signal: the
#   offsets of `sr_only` stay at about 0.01 px (0 % within 1 px) on both seeds run; two seeds
#   make the verdict inconclusive by the rule, though neither seed moved its offsets at all.
# * **Nor does it keep alignment** (one seed). `warmup_then_sr` learned flow-like offsets with
#   the photometric loss for 1000 iterations, then trained 2000 more on the SR loss alone: at
#   the end about 2 % are within 1 px, its mean offset (about 1.1 px) is a third of the
#   `aligning` runs' (about 3.4 px), and its end-point error (about 3.7 px) is nearly the motion
#   itself. The offsets drift back towards zero; they do not sharpen at motion boundaries (the
#   paper's Fig. 11) at this scale.
# * **A model that aligns relies on its offsets**: held at zero, the `aligning` model's
#   offsets cost it about 1.3 dB (interval over three seeds above zero).
# * **That alignment improves SR is not shown at this scale.** Seed for seed, the `sr_only`
#   model, which does not align, scores about 0.1 dB *above* `aligning` on both seeds run (the
#   verdict: inconclusive, two seeds). The rest of EDVR — the 3x3
#   convolutions of the offset-feature path, the TSA fusion and the reconstruction blocks,
#   whose receptive fields span the 4 px of motion — makes up for missing alignment, and the
#   photometric loss competes with the SR loss for the same features (a reading, not measured).
#   What is shown is only that a model whose offsets align comes to rely on them.

# %% [markdown]
# ## 2b. Round 2: warp-then-estimate, a census term and smoothness (profile `align2`)
#
# Section 6 measures where the `aligning` offsets miss: mostly where the motion is fast, and in
# a noisy field that follows texture where the flow is flat. Round 2 adds three named departures
# from the paper to the `align` setting (`config.align2`; same model, data and 3000 iterations):
#
# * **warp-then-estimate** (`model.warp_then_estimate`): at L2 and L1 the offset branch compares
#   the reference with the neighbour *already warped* by the coarser level's offsets (each
#   group by its mean offset, `ops.group_warp`), so it only has to find the residual motion,
#   as SPyNet and PWC-Net do; EDVR's PCD compares the unwarped neighbour. The alignment still
#   samples the unwarped neighbour at base + residual, so the offsets keep their meaning;
# * the warping term on **soft census transforms** (`train.photometric_penalty="census"`,
#   UnFlow): 7 x 7 local brightness order instead of colour, blind to brightness changes and
#   to flat regions that any offset matches;
# * **edge-aware smoothness** of the offsets (`train.smoothness_weight = 0.1`, exponent 10 on
#   the reference's gradient; UnFlow, UFlow): neighbouring offsets agree except across edges.
#
# Before these parts were written into the package, a screen patched into the trainer (one
# seed, kept no results) found each part helping alone, warp-then-estimate far more than the
# census and smoothness terms, and the two together best; only the committed runs of the
# package's own implementation below are evidence here. The parts alone (`round2_wte_only`,
# `round2_census_only`, one seed each as a screen) and the same model trained with the SR loss
# alone (`round2_sr_only`) are conditions of `fig5`, listed as "not run yet" until they are.
# `motion_sets` scores the same offsets on more scenes: synthetic scenes of two other seeds, and
# held-out real footage moved by a known global motion (real texture, exact flow), with
# OpenCV's DIS on the same LR frames beside them.

# %%
ROUND2 = [c for c in CONDITIONS if c.startswith("round2")]
per_seed = []
for r in sorted((r for r in results if r["condition"] in ROUND2 + ["aligning"]), key=lambda r: r["run"]):
    m, ms = r["measures"]["offsets_vs_flow"], r["measures"].get("motion_sets")
    cells = [f"{100 * m['within_1px']:.1f} %", f"{100 * m['within_1px_l1']:.1f} %", f"{m['epe']:.2f}",
             f"{m['psnr']:.2f}", f"{m['psnr_gain_over_zero']:+.2f}"]
    cells += ([f"{100 * ms[f'within_1px_{s}']:.0f} % (DIS {100 * ms[f'dis_within_1px_{s}']:.0f} %)"
               for s in ("fig5", "other_seeds", "real_global")] if ms else ["not measured"] * 3)
    per_seed.append([r["run"], *cells])
print(format_table(per_seed, ["run", "within 1 px", "within 1 px, l1", "EPE px", "PSNR", "gain over offsets 0",
                              "fig5 scenes", "other seeds", "real footage, global motion"]))
print("\noffsets at L1 against the exact flow, visible pixels; PSNR on the held-out synthetic scenes; "
      "motion_sets: the share within 1 px, DIS's beside it")

# %% [markdown]
# The verdicts, by `report`'s rule:

# %%
r2 = summary["within 1 px"].get("round2")
if r2:
    report.verdict_line(
        f"over {100 * paper.FIG5_SHARE_WITHIN_1PX:.0f} % of G = N = 1 offsets within 1 px of the flow (PWC-Net)",
        f"round2: {report.mean_sd(r2, 1, percent=True)} within 1 px of the exact flow (n = {r2['n']}; "
        f"seeds {', '.join(f'{100 * v:.1f} %' for v in r2['values'])})",
        report.level_verdict(r2, paper.FIG5_SHARE_WITHIN_1PX))
    g2 = summary["gain over 0"]["round2"]
    report.verdict_line("(beyond the paper) a model that aligns relies on its offsets",
                        f"round2: {report.mean_sd(g2, signed=True)} dB over its offsets held at 0 "
                        f"(per seed {', '.join(f'{v:+.2f}' for v in g2['values'])})",
                        report.difference_verdict(g2, +1))
    for key, what in (("within_1px", "share within 1 px"), ("psnr", "PSNR")):
        d = experiments.paired(results, f"measures.offsets_vs_flow.{key}", "round2", "aligning")
        report.verdict_line(f"(ours) round 2 aligns better than align: {what}, round2 - aligning",
                            f"{report.mean_sd(d, 3, signed=True)} seed for seed, seeds {d['seeds']}",
                            report.difference_verdict(d, +1))

# %% [markdown]
# Round 2's other conditions, each seed for seed against `round2` (the same seed: the same data
# order and initial weights; only the named fields differ): the same model trained with the SR
# loss alone (`round2_sr_only`: no warping term, no smoothness, the paper's signal), each part
# alone, and the cost volume of section 6 (`round2_cost_volume`). A condition not yet run is
# said so.

# %%
VARIANTS = {"round2_sr_only": "the SR loss alone", "round2_wte_only": "warp-then-estimate alone (RGB term)",
            "round2_census_only": "census + smoothness alone (no warp)", "round2_cost_volume": "+ a cost volume"}
rows = []
for cond, what in VARIANTS.items():
    w, g = summary["within 1 px"].get(cond), summary["gain over 0"].get(cond)
    if w is None:
        rows.append([cond, what, "not run yet", "", "", ""])
        continue
    dw = experiments.paired(results, "measures.offsets_vs_flow.within_1px", cond, "round2")
    dp = experiments.paired(results, "measures.offsets_vs_flow.psnr", cond, "round2")
    rows.append([cond, what, f"{w['n']}", report.mean_sd(w, 1, percent=True), report.mean_sd(g, signed=True),
                 f"{report.mean_sd(dw, 1, percent=True, signed=True)} / {report.mean_sd(dp, 3, signed=True)} dB"])
print(format_table(rows, ["condition", "what", "seeds", "within 1 px", "gain over offsets 0 (dB)",
                          "minus round2, seed for seed: within 1 px / PSNR"]))
for cond, claim in (("round2_sr_only", "(the paper's signal) the SR loss alone teaches the round-2 model "
                                       "offsets within 1 px of the flow, as Fig. 5 finds for EDVR"),
                    ("round2_cost_volume", f"(ours) a cost volume lifts round 2 towards "
                                           f"{100 * paper.FIG5_SHARE_WITHIN_1PX:.0f} %")):
    w = summary["within 1 px"].get(cond)
    if w:
        d = experiments.paired(results, "measures.offsets_vs_flow.within_1px", cond, "round2")
        verdict = (report.level_verdict(w, paper.FIG5_SHARE_WITHIN_1PX) if cond == "round2_sr_only"
                   else report.difference_verdict(d, +1))
        report.verdict_line(claim, f"{cond}: {report.mean_sd(w, 1, percent=True)} within 1 px (n = {w['n']}); "
                                   f"{cond} - round2 {report.mean_sd(d, 1, percent=True, signed=True)}", verdict)

# %% [markdown]
# What round 2 shows (the table and verdicts above are computed; these lines read them):
#
# * **Most offsets now follow the motion, short of the paper's 80 %.** About three quarters of
#   the visible pixels are within 1 px of the exact flow (73-77 % on the seeds run, against
#   43-48 % for `align`), about as many on scenes of two other seeds, more (83-90 %) on real
#   footage moved by a global motion; OpenCV's DIS, with no learning, reaches about 81 % on
#   fig5's scenes and 79 % on the other seeds. Over three seeds the 95 % interval holds 80 %:
#   inconclusive by the rule, not shown.
# * **Its offsets matter to it**: held at zero they cost 1.3-5.7 dB depending on the seed
#   (`align`: 1.0-1.6 dB); positive on every seed, but the spread leaves it "a trend, not shown"
#   by the rule.
# * **PSNR is not higher than `align`'s** (seed for seed, the last verdict: within noise): better
#   alignment has not turned into better SR at this scale, as section 2 found for alignment at
#   all; EDVR's own PCD trained on the SR loss alone (`edvr_sr_only`), whose offsets do not
#   move, scores higher than both on all three seeds.
# * **The SR loss alone does not move round 2's offsets** (`round2_sr_only`, the paper's own
#   training signal on the same model, three seeds): they stay at zero (a mean |offset| of a
#   few hundredths of a pixel at most, none within 1 px of the motion), as EDVR's own PCD's do,
#   and the model scores a higher PSNR than `round2` on every seed, beyond noise (the table's
#   last column; about a quarter of a dB). So the alignment round 2 learns comes from its
#   warping term, not from the SR loss, and at this scale it costs the SR a little (why is not
#   measured here; the warping term also shapes the features that the reconstruction reads).
# * **A cost volume does not take round 2 to 80 %** (`round2_cost_volume`: each PCD offset
#   branch also sees the local correlation of reference and neighbour, section 6): two points
#   above `round2` on seed 0, one on seed 1, none on seed 2; over three seeds within noise by
#   the rule, at about the same PSNR. Sec. 4's sweep (notebooks 06-09) runs without it.
# * **Each part alone** (one seed each, a screen): warp-then-estimate with the colour warping
#   term (`round2_wte_only`) gets most of the way (about 69 %, as the probe before the package
#   had it did); the census and smoothness terms without the warp (`round2_census_only`) reach
#   about half the pixels (the probe: 48 %); together they make `round2`'s 77 % on the same seed.
#   On this one seed the warp does most and the two together beat either alone; a screen, not a
#   verdict (one seed has no spread).
# * Section 6 measures where the round-2 offsets still miss.

# %% [markdown]
# Why warp-then-estimate helps, in one picture: what L2's offset branch is given. Without the
# warp (EDVR's PCD) it compares the reference with the neighbour as it is, and the motion it must
# find is the whole motion at that level; with the warp by the coarser level's offsets it sees
# what is left. The picture is in image terms (the branch compares features computed from these
# frames), for the round-2 model of seed 0 on section 4's held-out scene.

# %%
# What L2's offset branch is given, with and without warp-then-estimate, drawn in image terms
# (the branch compares features, computed from these frames): a round-2 model (fig5's round2,
# seed 0, weights kept) on the held-out scene of section 4, neighbour t+1.
r2_model = experiments.load_model("fig5", "round2-s0")
wte_scene = data.validation_clips("synthetic", num_scenes=8, seed=0,
                                  scene_config=SceneConfig(height=256, width=256, num_frames=3))[3]
with torch.no_grad():
    _, r2_aux = r2_model(wte_scene.lq[None], return_aux=True)
K2 = 2  # the neighbour t+1 of a 3-frame clip (the centre is 1)
base = 2 * torch.nn.functional.interpolate(r2_aux["offsets"]["l3"][:, K2], scale_factor=2, mode="bilinear",
                                           align_corners=False)  # (1, 2, h/2, w/2): L3's offsets, upsampled
frames_l2 = torch.nn.functional.avg_pool2d(wte_scene.lq, 2)  # (T, 3, h/2, w/2)
ref_l2, nbr_l2 = frames_l2[1:2], frames_l2[K2:K2 + 1]
warped_l2 = ops.group_warp(nbr_l2, base)  # the neighbour moved by the coarser level's motion
flow_l2 = flow_pyramid(wte_scene.flow[K2][None])[1]  # (1, 2, h/2, w/2) (u, v), in L2 pixels
visible_l2 = torch.nn.functional.avg_pool2d((~wte_scene.occlusion[K2]).float()[None, None], 2)[0, 0] == 1
left = (flow_l2 - base.flip(1)).norm(dim=1)[0]  # what L2 must still find, px
motion = flow_l2.norm(dim=1)[0]
print(f"at L2, visible pixels: mean |motion| {motion[visible_l2].mean():.2f} px, mean |motion - base| "
      f"{left[visible_l2].mean():.2f} px; within 1 px of where the branch looks: "
      f"{100 * (motion[visible_l2] < 1).float().mean():.0f} % unwarped, "
      f"{100 * (left[visible_l2] < 1).float().mean():.0f} % warped")
fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), layout="constrained")
vmax_d = float((ref_l2 - nbr_l2).abs().mean(1).max())
for ax, (title, img) in zip(axes[:2], (("|reference - neighbour|\n(EDVR's PCD compares these)", nbr_l2),
                                        ("|reference - warped neighbour|\n(warp-then-estimate)", warped_l2))):
    im = ax.imshow((ref_l2 - img).abs().mean(1)[0], cmap="magma", vmin=0, vmax=vmax_d)
    ax.set(title=title, xticks=[], yticks=[])
fig.colorbar(im, ax=axes[:2], shrink=0.8, label="mean |difference|")
for ax, (title, m) in zip(axes[2:], (("|motion| at L2 (px)", motion), ("|motion - base| at L2 (px)", left))):
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=float(motion.max()))
    ax.set(title=title, xticks=[], yticks=[])
fig.colorbar(im, ax=axes[2:], shrink=0.8, label="px at L2")
plt.show()
assert left[visible_l2].mean() < motion[visible_l2].mean()  # the warp leaves less to find

# %% [markdown]
# ## 2c. Does the alignment reach the output?
#
# A model's gain over itself with its offsets held at zero says that its fusion relies on
# aligned features: zeroed offsets hand it misaligned neighbours, and it breaks. It does not
# say that the neighbours' content reaches the output. For that, `offsets_vs_flow` also feeds
# each model the centre frame in place of every neighbour (`psnr_reference_only`): nothing to
# align and nothing new to add. A model that uses its neighbours loses PSNR there.

# %%
print(format_table(report.gains_table(results, ["aligning", "round2", "round2_sr_only", "edvr_sr_only"]),
                   report.GAINS_HEADERS))
print("\n" + report.baseline_premise(results, "round2")["line"])

# %% [markdown]
# Round 2's offsets are within 1 px of the exact flow on three quarters of the pixels and
# holding them at zero costs 1.3-5.7 dB, yet the model given the centre frame three times
# scores the same as with its real neighbours (+0.00, +0.01, +0.00 dB over 3 seeds: flat by
# the rule): it has learned single-image SR, and an alignment its fusion depends on but takes
# nothing through. The same model trained with the SR loss alone is mixed (+0.39 dB on one
# seed of three). (Results measured before the
# reference-only PSNR existed show "-".) Is there anything in the neighbours to take? The
# check below (evidence, not a bound on a learned model) rebuilds the HR centre by least
# squares from three 8-bit LR frames whose
# degradation and motion it knows exactly (`diagnostics.neighbour_information`; grey crops of
# the training textures, the scenes' global motion), and from the centre frame alone:

# %%
bound = diagnostics.neighbour_information(num_crops=1 if PROFILE == "quick" else 4,
                                          size=64 if PROFILE == "quick" else 128)
print(f"least squares, BI, {bound['settings']['num_crops']} crop(s) of {bound['settings']['size']}² HR px: "
      f"centre frame alone {np.mean(bound['psnr_centre_only']):.2f} dB, all three frames "
      f"{np.mean(bound['psnr_three_frames']):.2f} dB: the neighbours add {bound['gain']:+.2f} dB")

# %% [markdown]
# The neighbours carry a few dB (+3.2 dB on BI and +4.5 dB on BD with the default four crops of
# 128² px; fewer and smaller crops under `quick`). A learned model knows neither the degradation
# nor the motion, and 3000 iterations of a 32-feature EDVR have not learned to take any of it:
# the paper's EDVR-M trains for 600k. Sec. 4's comparisons of PSNR rest on alignment reaching
# the output, so `report.baseline_premise` asks for this gain too before it gives them a
# verdict (notebooks 06-09); the claims about the offsets themselves do not need it.

# %% [markdown]
# ### What lets the neighbours in? Screens for the next setting
#
# Each setting below is align2's model with one thing changed, trained for the full 3000
# iterations, and asked the same question: what does it lose when its neighbours are replaced by
# the centre frame? `report.neighbour_use` gives the rule's verdict (one seed is inconclusive).
# The learned settings are the G = N = 1 model of Sec. 4. The flow-guided ones are table3's
# `flow_guided`: a modulated 3 x 3 DCN (G = 1, N = 9, with masks) whose offsets are a given flow
# plus a learned residue, as in BasicVSR++ -- a different N, and a flow from outside the model;
# the rows with N = 1 are the same with one tap (k = 1: G = N = 1 around the flow). Given the
# scenes' exact flow it is an oracle: what the neighbours bring this model, data and schedule
# when the alignment is as good as it can be.

# %%
def _runs(name, condition):
    return [r for r in experiments.load_results(name, missing_ok=True) if r["condition"] == condition]


SCREENS = {
    "align2: learned offsets (fig9 n1, Sec. 4's baseline)": _runs("fig9", "n1"),
    "align2, twice the schedule (fig9-long n1)": _runs("fig9-long", "n1"),
    "align2 on BD frames (fig9-bd n1)": _runs("fig9-bd", "n1"),
    "align2 + the colour term beside census (fig9-census-rgb n1)": _runs("fig9-census-rgb", "n1"),
    "align2, 1000 iterations of the warping terms alone first (fig9-align-first n1)": _runs("fig9-align-first",
                                                                                           "n1"),
    "align2 on noisy frames, sd 10 after BI (fig9-noise10 n1; bfloat16)": _runs("fig9-noise10", "n1"),
    "align2 without TSA, fusion by a plain convolution (fig9-notsa n1; bfloat16)": _runs("fig9-notsa", "n1"),
    "align2, L1 offsets pulled toward the exact flow from iteration 1000 (fig9-offsets-to-flow n1)":
        _runs("fig9-offsets-to-flow", "n1"),
    "align2, the exact flow in place of L1's offsets for the first 1500 iterations (fig9-exact-first n1)":
        _runs("fig9-exact-first", "n1"),
    "flow-guided, N = 9, on DIS's flow of each training patch (table3-dis)": _runs("table3-dis", "flow_guided"),
    "flow-guided, N = 9, on DIS's flow of whole frames (table3-dis-scene)": _runs("table3-dis-scene",
                                                                                  "flow_guided"),
    "flow-guided, N = 1, on DIS's flow of whole frames (table3-dis-scene-k1)": _runs("table3-dis-scene-k1",
                                                                                     "flow_guided"),
    "flow-guided, N = 1, 3 x 3 branch, on DIS's flow of whole frames (table3-dis-scene-k1-branch3)":
        _runs("table3-dis-scene-k1-branch3", "flow_guided"),
    "oracle: flow-guided, N = 9, on the exact flow (table3 flow_guided)": _runs("table3", "flow_guided"),
    "oracle with one tap, N = 1, 3 x 3 branch, on the exact flow (table3-k1-branch3)": _runs("table3-k1-branch3",
                                                                                          "flow_guided"),
}
print(format_table(report.neighbour_use(SCREENS), report.NEIGHBOUR_HEADERS))

# %% [markdown]
# What the screens say (seed 0 unless the table shows more). **Flow-guided alignment on DIS's
# flow of whole frames** is the first setting whose neighbours reach the output by the rule, if
# only just: +0.09, +0.10 and +0.18 dB over the centre frame alone (+0.12 ± 0.05 dB, the 95 %
# interval +0.00 to +0.25 dB), with offsets within 1 px of the exact flow on 84-86 % of the
# pixels (the closest of its nine offsets to the flow: 0.12-0.14 px in the median, DIS's flow
# 0.23 px). The oracle gains more on every seed, +0.36, +0.56 and +0.16 dB, but spreads more (a trend, not shown). align2's learned offsets (three
# quarters within 1 px, median error 0.37-0.43 px), the same trained twice as long, with the
# colour term summed to census (median error 0.37 px on seed 0), with the warping terms alone
# for the first 1000 iterations (0.32 px on seed 0) and flow-guided alignment on
# DIS's flow of each 32² training patch gain no more than 0.05 dB on any seed; on BD frames the
# model stays below bicubic after 3000 iterations (one seed). **Noisy frames** do not change
# that either: with Gaussian noise of standard deviation 10 (on 0-255) added to every LR frame
# after BI (`data.degradation = "bi+n10"`, a departure from the paper meant to give the
# neighbours something the centre frame lacks, an independent draw of the noise, which aligned
# frames average away), the model gains +0.04 dB over the centre frame alone on seed 0, while its
# offsets, within 1 px on 54 % of the pixels, still matter (+1.47 dB over holding them at zero).
# On that seed it denoises the centre frame on its own rather than average its neighbours in.
# Nor does **TSA's attention** look like what keeps them out (a reading, one seed): without
# TSA (`model.with_tsa = False`, EDVR's fusion by a plain convolution over the aligned frames)
# the gain is +0.04 dB too (seed 0, 78 % within 1 px). The flow-guided settings differ
# from Sec. 4's baseline in two things, the flow from outside and N = 9 with masks. With one tap
# (k = 1: G = N = 1 around DIS's flow) the gain is +0.06, +0.04 and +0.03 dB: positive on every
# seed but not beyond a flat difference (a trend, not shown; the median error of its one offset
# is 0.28 px, DIS's flow it starts from 0.23 px). So no G = N = 1 model here, learned or around a
# flow, is yet a baseline whose neighbours reach its output; the nine-tap one is. That leans the
# way of Sec. 4.2 (more offsets, more use of the neighbours) but is no comparison the rule has
# judged, and the two differ in more than N (masks over nine taps, a 3 x 3 offset branch against
# the one-tap model's 1 x 1).
#
# **A one-tap model does take from its neighbours when its flow is exact.** The last row is
# G = N = 1 around the exact flow with the nine-tap model's 3 x 3 residue-and-mask branch
# (`model.alignment.offset_kernel = 3`; `table3-k1-branch3`): +0.17, +0.16 and +0.11 dB over
# itself given the centre frame alone, +0.14 ± 0.03 dB, the 95 % interval +0.06 to +0.23 dB,
# so by the rule its neighbours reach the output. So one offset per pixel is enough for a model
# of this size and schedule to use its neighbours. It differs from align2's learned model in more
# than the accuracy of its offsets (a flow from outside, masks, no pyramid of offsets), so this
# does not show that accuracy is what the learned model lacks; the next section compares the
# learned offsets' error with the flows these models gain from. It is an oracle, not a baseline for Sec. 4: its flow is the scenes' exact flow. Given DIS's flow
# at test it still gains +0.09 ± 0.02 dB (3 seeds, reaching the output by the rule; next
# section), so the same one-tap model trained on DIS's flow with the 3 x 3 branch was the next
# screen for a G = N = 1 baseline (`table3-dis-scene-k1-branch3`): +0.04 dB on seed 0, no more
# than with the 1 x 1 branch (+0.06 on that seed), and +0.04 dB too when given the exact flow at
# test (one seed, inconclusive by the rule; seeds 1 and 2 were not run). Trained on the exact
# flow, the one-tap model gains given either flow; trained on DIS's, it gains little given
# either. A reading, on one seed: what the model learned to trust in training, more than the
# flow it is given at test, sets how much of its neighbours it takes (the learned models given
# the exact flow at test, below, say the same). Until a G = N = 1 setting passes, the comparisons of Sec. 4 that rest on PSNR stay without a verdict
# (`report.baseline_premise`).

# %% [markdown]
# **Learned offsets pulled toward the exact flow** (`fig9-offsets-to-flow`, three seeds; a probe
# of ours, not the paper's: outside synthetic scenes the flow is not known). If coarse offsets
# were what keeps the neighbours out, a learned G = N = 1 model whose offsets are trained toward
# the exact flow should let them in. align2's model is trained as usual for 1000 iterations, then
# the offset-fidelity loss of Sec. 3.4 with $t = 0$ (so every pixel's L1 offset is pulled
# toward the flow, not only those more than 10 px off) acts on the mean offset with
# $\lambda = 0.05$ (`train.offset_fidelity_from`, `_threshold`, `_target = "mean"`,
# `_weight`): on seed 0's kept align2 model and 6 training batches, `training.objective.term_gradients`
# puts its gradient norm on the offset branch at 93 times the warping term's for $\lambda = 1$
# (medians), so about five times for 0.05. Seed for seed
# against align2's own N = 1 (fig9's `n1`, the same seeds, trained earlier with the code of that
# time, so their first 1000 iterations need not match these bit for bit):
#
# (Tried first and stopped at iteration 750, not kept: the same pull from the start held every
# PCD level's offsets near zero for 300 iterations; L1's then grew slowly and the coarser levels
# stayed below 0.03 px.)

# %%
def print_setting_differences(settings):
    """``report.setting_differences`` in PSNR (dB) and in the share of offsets within 1 px of the
    exact flow (a share, so no dB in the headers; more is better)."""
    print(format_table(report.setting_differences(settings), report.DIFFERENCE_HEADERS))
    print(format_table(report.setting_differences(
        settings, {"within 1 px (share)": "measures.offsets_vs_flow.within_1px"}),
        ["setting minus its baseline", "quantity", "per seed", "mean ± sd", "verdict"]))


OFFSETS_TO_FLOW = {"L1 offsets pulled toward the exact flow from iteration 1000 - align2 (fig9 n1)":
                   (_runs("fig9-offsets-to-flow", "n1"), _runs("fig9", "n1"))}
print_setting_differences(OFFSETS_TO_FLOW)

# %% [markdown]
# The pull sharpened the offsets on seeds 0 and 2 (82.4 % within 1 px on both, median error 0.28
# and 0.25 px, against 76.0 and 74.0 %, 0.40 and 0.43 px) and not on seed 1 (71.6 % against
# 77.1 %, 0.52 px against 0.37): within noise over the three. PSNR rose on every seed (+0.11,
# +0.06, +0.03 dB: a trend, not shown), but the single-image part accounts for it (+0.06 ± 0.03
# dB, the models given the centre frame alone), and what goes through the neighbours did not
# change by more than noise (+0.00 ± 0.02 dB, within noise; the screen above: +0.02, +0.03, -0.00 dB over the centre
# frame alone). Given the exact flow at test the seed-0 model gains +0.03 dB (below). Offsets at
# 0.25-0.28 px in the median are still coarser than DIS's 0.23 px, the coarsest flow seen to help
# (next sections), so this does not settle whether sharper learned offsets would let the
# neighbours in; on these three seeds, pulling the offsets toward the flow did not let them in
# beyond noise.

# %% [markdown]
# **The exact flow in place of the L1 offsets for the first half of training**
# (`fig9-exact-first`, three seeds; a probe of ours, not the paper's: it needs the exact flow,
# which only synthetic scenes have). The readings above point at training: the one-tap model
# trained on the exact flow takes from its neighbours given either flow at test, and the learned
# models given the exact flow at test take no more. So here the fusion learns on well-aligned
# neighbours first: for the first 1500 of align2's 3000 iterations PCD L1 samples every frame at
# the training scene's exact flow (`train.exact_offsets_until = 1500`; `alignment.sample_at` with
# `reports = "predicted"`), while the warping terms train the L1 offsets as usual (they reach no
# output until then); from iteration 1500 the model's own offsets take over. On each run's
# checkpoint at iteration 1500 (not kept; `--stop-at 1500` makes it again), given the exact flow
# at L1, the model gains +0.79, +0.95 and +0.69 dB over itself given the centre frame alone (the 8
# held-out scenes of 256² px, `diagnostics.exact_offsets`), and +0.06, +0.03 and +0.08 dB with its
# own offsets: by then the fusion takes from aligned neighbours. Seed for seed against align2's
# own N = 1 (fig9's `n1`) at iteration 3000:

# %%
EXACT_FIRST = {"the exact flow at L1 for the first 1500 iterations - align2 (fig9 n1)":
               (_runs("fig9-exact-first", "n1"), _runs("fig9", "n1"))}
print_setting_differences(EXACT_FIRST)

# %% [markdown]
# After the switch most of that is gone. At iteration 3000 the models gain +0.05, +0.06 and
# +0.03 dB over themselves given the centre frame alone (the screen above: positive on every seed,
# not beyond a flat difference, a trend, not shown), and the seed-0 model given the exact flow at
# test gains -0.00 dB (below), where at iteration 1500 it gained +0.79. Against align2's own
# N = 1 the PSNR is higher on every seed (+0.05 ± 0.01 dB, shown by the rule), most of it through
# the neighbours (+0.04 ± 0.01 dB, shown; the single-image part +0.02 ± 0.01 dB, a trend), while
# the offsets are no sharper (within 1 px -1 ± 5 points, within noise; median error 0.40, 0.51
# and 0.37 px). So the schedule lets a little more of the neighbours in, and by the rule it is
# shown; but its N = 1 model still does not reach the output by more than a flat difference, so
# it is not yet the baseline Sec. 4's comparisons need. A reading, not measured: with offsets of
# 0.4 px median error in place of the exact flow, the aligned neighbours are worth too little to
# the fusion and it learns to lean on the centre frame again (the oracle, given the exact flow
# plus per-pixel noise of 0.35 px median error, loses from its neighbours: the flow-tolerance
# table below).

# %% [markdown]
# ### More offsets, more of the neighbours?
#
# A PSNR difference between two models splits, seed for seed, into two parts that add up to it
# (`report.SPLIT`): the difference of the two models given the centre frame in place of every
# neighbour (single-image SR: capacity, nothing alignment can claim) and the difference of their
# gains over that (what reaches the output through the neighbours). The second part asks Sec.
# 4.2's question even where the one-offset model takes nothing from its neighbours. Pairs of one
# seed share every weight outside the alignment modules and see the same batches
# (`model.seed_per_module`), so the differences compare the alignment modules alone:

# %%
PAIRS = {
    "flow-guided, DIS's flow: N = 9 - N = 1 (1 x 1 branch)": (_runs("table3-dis-scene", "flow_guided"),
                                                               _runs("table3-dis-scene-k1", "flow_guided")),
    "flow-guided, exact flow: N = 9 - N = 1 (3 x 3 branch)": (_runs("table3", "flow_guided"),
                                                               _runs("table3-k1-branch3", "flow_guided")),
    "learned offsets (fig9): N = 5 - N = 1": (_runs("fig9", "n5"), _runs("fig9", "n1")),
    "learned offsets (fig9): N = 15 - N = 1": (_runs("fig9", "n15"), _runs("fig9", "n1")),
    "learned offsets (fig9): N = 15 - N = 5": (_runs("fig9", "n15"), _runs("fig9", "n5")),
}
print(format_table(report.setting_differences(PAIRS), report.DIFFERENCE_HEADERS))

# %% [markdown]
# Around the exact flow, nine taps beat one by +0.26 ± 0.15 dB in PSNR (+0.31, +0.38, +0.09),
# and of that +0.22 ± 0.17 dB goes through the neighbours while the single-image part is
# within noise (+0.04 ± 0.07 dB): the paper's sign on every seed, a trend, not shown. Around
# DIS's flow the two parts are +0.08 ± 0.06 dB through the neighbours (a trend) and -0.03 ±
# 0.11 dB alone (there the one-tap model has the 1 x 1 branch, a second difference). With
# learned offsets, N = 5 takes +0.04 ± 0.03 dB more through the neighbours than N = 1 (within
# noise) and N = 15 +0.07 ± 0.06 dB (+0.11, -0.00, +0.11: within noise). N = 15 beats N = 5 in
# PSNR on every seed, +0.10 ± 0.03 dB, its 95 % interval above zero (the table's "reproduced"
# is the rule's word for a difference of the paper's sign) -- but most of it is the single-image
# part (+0.06 ± 0.02 dB, also above zero: the models given the centre frame alone), and +0.04 ±
# 0.03 dB goes through the neighbours (a trend). More offsets here buy mostly capacity, which
# Sec. 4.2 does not claim, so this is no verdict on Fig. 9: notebook 09 gives none while the
# N = 1 baseline takes nothing from its neighbours. Every through-the-neighbours part leans Sec. 4.2's
# way -- more offsets, more of the neighbours in the output -- and none is yet shown by the rule;
# notebook 09's overview carries fig9's rows as the sweep lands.

# %% [markdown]
# ### How exact must the alignment be?
#
# The oracle can answer this directly, because it takes its flow as an input: give it the exact
# flow plus independent noise of standard deviation sigma on each component of each pixel, or
# DIS's flow, and compare each with the model given the centre frame alone
# (`experiments.flow_tolerance`, recorded with table3's flow-guided runs; `report.flow_tolerance`
# gives the rule's verdict per row). The grey band is where the learned offsets of the screens
# sit: their median end-point error.

# %%
ORACLE = _runs("table3", "flow_guided")
print("oracle, trained on the exact flow (table3 flow_guided)")
print(format_table(report.flow_tolerance(ORACLE), report.TOLERANCE_HEADERS))
print("\nthe same model trained on DIS's flow of whole frames (table3-dis-scene)")
print(format_table(report.flow_tolerance(_runs("table3-dis-scene", "flow_guided")), report.TOLERANCE_HEADERS))
print("\nthe oracle with one tap (N = 1, 3 x 3 branch), trained on the exact flow (table3-k1-branch3)")
print(format_table(report.flow_tolerance(_runs("table3-k1-branch3", "flow_guided")), report.TOLERANCE_HEADERS))
LEARNED_EPE = [r["measures"]["offsets_vs_flow"]["median_epe"] for r in _runs("fig9", "n1")]

fig, ax = plt.subplots(figsize=(7.0, 3.8))
ax.axhspan(-report.PLATEAU_TOLERANCE, report.PLATEAU_TOLERANCE, color="0.85", label="flat (± 0.05 dB)")
if LEARNED_EPE:
    ax.axvspan(min(LEARNED_EPE) - 0.005, max(LEARNED_EPE) + 0.005, color="0.6", alpha=0.6,
               label="learned offsets' median error (fig9 n1)")
for r, colour in zip(ORACLE, ("tab:blue", "tab:orange", "tab:green")):
    tol = r["measures"]["flow_tolerance"]
    ax.plot(tol["median_epe"], tol["gain_over_reference_only"], "o-", color=colour,
            label=f"seed {r['seed']}: exact flow + noise")
    ax.plot(tol["median_epe_dis"], tol["gain_dis"], "s", ms=9, mfc="none", color=colour,
            label=f"seed {r['seed']}: DIS's flow")
ax.axhline(0, color="k", lw=0.8)
ax.set_xlabel("median end-point error of the flow given (LR px)")
ax.set_ylabel("gain over the centre frame alone (dB)")
ax.set_title("The oracle (table3 flow_guided, trained on the exact flow) given a worse flow")
ax.legend(fontsize=7, ncol=2)
fig.tight_layout()
plt.show()

# %% [markdown]
# Over 3 seeds the gain holds, smaller, at a median error of 0.12 px (+0.25 ± 0.15 dB, a trend)
# and is gone by 0.24 px; at 0.35 px, where the learned offsets sit (0.37-0.43 px on fig9's three
# seeds), the neighbours cost this model 0.78 ± 0.19 dB, shown by the rule. Per-pixel noise is the
# harshest error of its median: DIS's flow, as far off in the median (0.23 px) but smooth in space
# and wrong mostly at motion boundaries, still gives +0.18 ± 0.13 dB (a trend). The oracle was
# trained on the exact flow and never saw an error; the same model trained on DIS's flow
# tolerates per-pixel noise no better (second table: it too loses from its neighbours at 0.24 px),
# and it too gains most given the exact flow. The one-tap oracle (third table) draws the same
# line: +0.14 ± 0.03 dB given the exact flow, +0.06 ± 0.03 at 0.12 px (a trend), -0.27 ± 0.06 dB
# at 0.24 px and -0.81 ± 0.06 dB at 0.35 px (both costing the output), +0.09 ± 0.02 dB given
# DIS's flow. This is one model size and schedule. What it
# does say: the learned offsets of align2 (0.37-0.43 px) are coarser than any flow these models
# were seen to gain from (DIS's, 0.23 px, is the coarsest), so a setting for Sec. 4 has to make
# the offsets sharper, not only more often within 1 px.
#
# Is the warping term the limit, or the network? Walk from the learned offsets of fig9's `n1-s0`
# (alpha 0, kept weights) to the exact flow (alpha 1) and evaluate align2's census term and the
# colour term along the way (`diagnostics.terms_towards_flow`, held-out scenes):

# %%
n1_model = experiments.load_model("fig9", "n1-s0")
walk_clips = data.get_clips("synthetic", "test", num_scenes=2 if PROFILE == "quick" else 8, seed=0,
                            scene_config=SceneConfig(height=128 if PROFILE == "quick" else 256,
                                                     width=128 if PROFILE == "quick" else 256, num_frames=3))
walk = diagnostics.terms_towards_flow(n1_model, walk_clips)
print(format_table([[term] + [f"{v:.4f}" for v in walk[term]]
                    + [f"{sum(c[-1] < c[0] for c in walk['per_clip'][term])} of {len(walk_clips)}"]
                    for term in ("census", "rgb")],
                   ["term"] + [f"alpha {a:g}" for a in walk["alphas"]] + ["scenes lower at the flow"]))

# %% [markdown]
# No answer either way. Scene by scene it is mixed: on the 8 held-out scenes of 256² px the
# exact flow scores lower by the census term on 4 and higher on the other 4 (the same for the
# colour term), and the mean leans to whichever scenes dominate (lower at the flow there, 0.148
# against 0.153; higher on the 2 smaller scenes of the `quick` run above). The terms count
# occluded pixels, where the exact flow points at other content and a wrong offset can match
# better; so this walk cannot say whether the term or the network keeps the offsets coarse. Two
# levers for sharper offsets, each one change to align2, are screened in the table of section 2c
# (seed 0 each): `train.photometric_penalty = "census+rgb"` (both terms summed: the colours meant
# to pull on the sub-pixel part; median error 0.37 px) and `train.sr_after` (the SR loss left out
# of the first 1000 iterations, so that the alignment is learned before the fusion sees a
# neighbour; `fig9-align-first`, median error 0.32 px against 0.40 px for fig9's `n1-s0`). Both
# sharpen the offsets a little; neither gains more than a flat difference over the centre frame
# alone (+0.03 and +0.04 dB), and both stay coarser than DIS's flow (0.23 px).

# %% [markdown]
# And the network: would a learned model take from its neighbours if its offsets were exact? Give
# each kept $G = N = 1$ model the exact flow in place of its L1 offsets at test time
# (`diagnostics.exact_offsets`; `offsets_held_at` holds a PCD level at a given motion, the coarser
# levels and the cascade run as trained) and score its gain over itself given the centre frame
# alone, with its own offsets and with the exact ones:

# %%
EXACT_MODELS = {  # kept weights of learned G = N = 1 models (seed 0 each)
    "fig9 n1 (align2)": ("fig9", "n1-s0"),
    "fig9-long n1 (6000 iterations)": ("fig9-long", "n1-s0"),
    "fig9-census-rgb n1": ("fig9-census-rgb", "n1-s0"),
    "fig5 round2": ("fig5", "round2-s0"),
    "fig5 round2_sr_only (no warping term)": ("fig5", "round2_sr_only-s0"),
    "fig9-align-first n1 (the warping terms alone first)": ("fig9-align-first", "n1-s0"),
    "fig9-offsets-to-flow n1 (pulled toward the exact flow)": ("fig9-offsets-to-flow", "n1-s0"),
    "fig9-exact-first n1 (the exact flow at L1 for the first 1500 iterations)": ("fig9-exact-first", "n1-s0"),
}
exact_rows = []
for label, (exp_name, run_name) in EXACT_MODELS.items():
    found = diagnostics.exact_offsets(experiments.load_model(exp_name, run_name), walk_clips)
    exact_rows.append([label, f"{found['psnr']:.2f}", f"{found['gain']:+.3f}", f"{found['gain_exact']:+.3f}",
                       f"{found['gain_exact'] - found['gain']:+.3f}"])
print(f"{len(walk_clips)} held-out scenes of {walk_clips[0].config.height}² HR px; gains over the centre "
      "frame alone (dB)")
print(format_table(exact_rows, ["model", "PSNR", "own offsets", "exact flow at L1", "difference"]))

# %% [markdown]
# On the 8 held-out scenes of 256² px (this cell under any profile but `quick`; the `quick` run
# printed above scores 2 smaller scenes, where the models' own offsets gain up to +0.11 dB and the
# exact flow gains no more, but for the model trained toward the flow, +0.05 dB more there) the
# exact flow lets no model's neighbours in: its gain over the
# centre frame alone is -0.06 to +0.03 dB with the exact flow at L1, against -0.01 to +0.05 dB with
# its own offsets (the difference -0.07 to +0.03 dB, each model one seed). This is
# a substitution at test time: each fusion was trained on the features its own offsets aligned, so
# it does not say what a model trained with exact offsets would do (the one-tap oracle above is
# such a model, and gains). What it does say is that sharper offsets alone, given to these trained
# models, do not open them to their neighbours. A reading, not measured: their fusion has learned
# to take the centre frame's content and little else, so a way in has to act during training.
# `train.sr_after` (`fig9-align-first`: the warping terms alone for the first 1000 iterations) is one
# such; its model's offsets are sharper, and it too takes no more given the exact flow. So is the
# row whose offsets were pulled toward the exact flow during training (`fig9-offsets-to-flow`,
# above): +0.02 dB with its own offsets (median error 0.28 px), +0.03 dB given the exact flow. The
# last row trained its first 1500 iterations on neighbours aligned by the exact flow
# (`fig9-exact-first`, above): +0.05 dB with its own offsets, -0.00 dB given the exact flow, where
# its checkpoint at iteration 1500 gained +0.79 dB given it; what the fusion learned to take
# then did not outlast 1500 iterations on its own offsets.

# %% [markdown]
# ## 3. Fig. 5: how far the offsets are from the flow
#
# The histograms pool every non-occluded pixel of every held-out scene and both neighbours, over
# the seeds of each condition; the orange line is the 1 px threshold of Fig. 5.

# %%
RUN = [c for c in CONDITIONS if any(r["condition"] == c for r in results)]  # conditions with results
fig, axes = plt.subplots(1, len(RUN), figsize=(3.6 * len(RUN), 3.2), sharey=True)
for ax, cond in zip(np.atleast_1d(axes), RUN):
    runs = [r for r in results if r["condition"] == cond]
    hist = [r["measures"]["offsets_vs_flow"]["histogram"] for r in runs]
    edges = np.array(hist[0]["edges"])
    counts = np.sum([h["counts"] for h in hist], axis=0)
    total = counts.sum() + sum(h["above"] for h in hist)
    ax.bar(edges[:-1], counts / total, width=np.diff(edges), align="edge", color="tab:blue")
    ax.axvline(1.0, color="tab:orange", lw=2)
    share = np.mean([r["measures"]["offsets_vs_flow"]["within_1px"] for r in runs])
    ax.set_title(f"{cond}: {100 * share:.0f} % < 1 px")
    ax.set_xlabel("|offset - exact flow| (LR px)")
axes[0].set_ylabel("share of pixels")
fig.suptitle("Fig. 5 at small scale: end-point error of the L1 offsets, held-out synthetic scenes")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Fig. 4: offsets, exact flow and DIS flow on one held-out scene
#
# The weights of `aligning-s0` are committed (fp16, `data/results/fig5/weights/`). We run it on a
# held-out synthetic scene and show, for the neighbour $t+1$: the learned L1 offsets (flipped to
# (u, v)), the exact flow, the DIS flow (`dalign_nb.flow.estimate_flows`, OpenCV), all in the
# same colour wheel, and the offsets' error beside the occlusion mask. On this scene and
# neighbour the offsets are within 1 px of the exact flow on about a third of the visible
# pixels (printed below): the error map shows where they miss, on the sprites, at layer
# boundaries and along the borders whose content is not in the neighbour at all, and also over
# much of the background (section 6 counts the misses by kind over all 8 scenes).

# %%
model = experiments.load_model("fig5", "aligning-s0", device=DEVICE)
T = model.num_frame
C = T // 2
scene = data.validation_clips("synthetic", num_scenes=8, seed=0,
                              scene_config=SceneConfig(height=256, width=256, num_frames=T))[3]
with torch.no_grad():
    _, aux = model(scene.lq[None].to(DEVICE), return_aux=True)
offsets = aux["offsets"]["l1"][0].float().cpu()  # (T, 2, h, w), (dy, dx)
learned = offsets.flip(1)  # (T, 2, h, w), (u, v)
exact = scene.flow.float()  # (T, 2, h, w), centre -> frame
dis = flow.estimate_flows(scene.lq)  # (T, 2, h, w), DIS from the centre LR frame
k = C + 1
valid = ~scene.occlusion[k]
err = (learned[k] - exact[k]).norm(dim=0)
print(f"neighbour t+1: mean |exact flow| {exact[k].norm(dim=0)[valid].mean():.2f} px; offsets within 1 px "
      f"of it on {100 * (err[valid] < 1).float().mean():.0f} % of the non-occluded pixels, "
      f"on {100 * (err[~valid] < 1).float().mean():.0f} % of the occluded ones")

# %%
vmax = float(exact[k].norm(dim=0).max())
fig, axes = plt.subplots(1, 6, figsize=(19, 3.4))
axes[0].imshow(scene.lq[C].permute(1, 2, 0))
axes[0].set_title("reference LR frame t")
for ax, (name, f) in zip(axes[1:4], (("learned offsets", learned[k]), ("exact flow", exact[k]),
                                      ("DIS flow", dis[k]))):
    ax.imshow(flow.flow_to_color(f.permute(1, 2, 0), vmax))
    ax.set_title(f"{name}, t → t+1")
im = axes[4].imshow(err, cmap="magma", vmin=0, vmax=3)
fig.colorbar(im, ax=axes[4], fraction=0.046, label="px")
axes[4].set_title("|offsets - exact flow|")
viz.show_occlusion(axes[5], scene.lq[C].permute(1, 2, 0), scene.occlusion[k], title="occluded in t+1")
for ax in axes[:6]:
    ax.set_axis_off()
fig.suptitle(f"Fig. 4 at small scale: learned offsets, exact and DIS flow of one held-out scene; the offsets are "
             f"within 1 px of the exact flow on {100 * (err[valid] < 1).float().mean():.0f} % of the visible pixels")
fig.tight_layout()
plt.show()
fig, ax = plt.subplots(figsize=(2, 2))
viz.flow_key(ax, vmax)
plt.show()

# %% [markdown]
# Warping the neighbour LR frame $t+1$ with each field shows what each would bring to the
# reference (the model warps features, not images; the images are for illustration, as in the
# paper's Fig. 4). Where the reference's content is hidden in the neighbour, no flow can fetch it:
# the exact flow fetches the occluder, the offsets whatever served the losses best. As in the
# paper's Fig. 4, warping by the flow leaves dark borders where samples leave the frame. The
# table under the pictures measures it: the learned offsets send fewer samples outside the frame
# than the exact flow (so fewer dark pixels at the borders), but on the visible pixels, where the
# exact flow fetches the right content, their warp is several times worse — they are not the
# clearer warp the paper's Fig. 4 shows, only the one with less dark border.

# %%
nbr = scene.lq[k][None]
warps = {name: flow_warp(nbr, f[None])[0] for name, f in
         (("by the learned offsets", learned[k]), ("by the exact flow", exact[k]), ("by DIS flow", dis[k]))}
fig, axes = plt.subplots(1, 5, figsize=(17, 3.6))
axes[0].imshow(scene.lq[C].permute(1, 2, 0))
axes[0].set_title("reference t")
axes[1].imshow(nbr[0].permute(1, 2, 0))
axes[1].set_title("neighbour t+1 (unaligned)")
for ax, (name, w) in zip(axes[2:], warps.items()):
    e = (w - scene.lq[C]).abs().mean(0)[valid].mean()
    ax.imshow(w.clamp(0, 1).permute(1, 2, 0))
    ax.set_title(f"t+1 warped {name}\nmean |error| {e:.3f} (non-occluded)")
for ax in axes:
    ax.set_axis_off()
fig.tight_layout()
plt.show()
h, w_ = valid.shape
ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w_), indexing="ij")
rows = []
for (name, f), warped in zip((("learned offsets", learned[k]), ("exact flow", exact[k]), ("DIS flow", dis[k])),
                             warps.values()):
    e = (warped - scene.lq[C]).abs().mean(0)  # (h, w)
    outside = ((xs + f[0]) < 0) | ((xs + f[0]) > w_ - 1) | ((ys + f[1]) < 0) | ((ys + f[1]) > h - 1)
    rows.append([name, f"{e[valid].mean():.3f}", f"{e[~valid].mean():.3f}", f"{100 * outside.float().mean():.1f} %"])
print(format_table(rows, ["t+1 warped by", "mean |error|, visible pixels", "occluded pixels",
                          "samples outside the frame (dark)"]))

# %% [markdown]
# The same scene in the offset viewer (`dalign_nb.widgets.OffsetViewer`, notebook 10; live in
# JupyterLab): click a pixel of the reference frame to see where the learned offset samples
# the neighbour, beside the exact flow (cyan) and the DIS flow (magenta), with the offset field
# in the colour wheel, the occlusions and the numbers at that pixel. Try the fast sprite and the
# frame's borders, where the offsets and the flow part ways. Without a running kernel the cell
# shows its first view.

# %%
scene_clip = data.get_clips("synthetic", "test", num_scenes=8, seed=0,
                            scene_config=SceneConfig(height=256, width=256, num_frames=T))[3]
OffsetViewer(model, scene_clip, pixel=(32, 32))

# %% [markdown]
# ## 5. Offsets against an estimated flow, on synthetic scenes and on a real clip
#
# The paper compares with PWC-Net's flow, an estimate. Here an estimate (DIS) sits beside the exact
# flow on the same pixels, and then is the only reference on a real held-out clip (the bundled
# `bikes` test shot, whose motion is largest of the bundled clips).

# %%
def share_within_1px(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    return metrics.share_within((a - b).norm(dim=1), 1.0, mask)


rows = []
scenes = data.validation_clips("synthetic", num_scenes=8, seed=0,
                               scene_config=SceneConfig(height=256, width=256, num_frames=T))
for s in scenes:
    with torch.no_grad():
        off = model(s.lq[None].to(DEVICE), return_aux=True)[1]["offsets"]["l1"][0].float().cpu().flip(1)
    est = flow.estimate_flows(s.lq)
    nb = [i for i in range(T) if i != C]
    m = ~s.occlusion[nb]
    rows.append([share_within_1px(off[nb], s.flow[nb], m), share_within_1px(off[nb], est[nb], m),
                 share_within_1px(est[nb], s.flow[nb], m)])
r = 100 * np.mean(rows, axis=0)
print(format_table([[f"{v:.0f} %" for v in r]], ["offsets vs exact flow", "offsets vs DIS", "DIS vs exact flow"]))
print("within 1 px, non-occluded pixels of the 8 held-out scenes, both neighbours, aligning-s0")

# %%
real = data.validation_clips("bundled", max_clips=1)[0]
centres = range(C, real.lq.shape[0] - C, max(1, (real.lq.shape[0] - 2 * C) // 8))
shares, still, mags = [], [], []
for c in centres:
    lq = real.lq[c - C:c + C + 1]
    with torch.no_grad():
        off = model(lq[None].to(DEVICE), return_aux=True)[1]["offsets"]["l1"][0].float().cpu().flip(1)
    est = flow.estimate_flows(lq)
    nb = [i for i in range(T) if i != C]
    shares.append(share_within_1px(off[nb], est[nb]))
    still.append(share_within_1px(torch.zeros_like(est[nb]), est[nb]))  # offsets held at zero
    mags.append(float(est[nb].norm(dim=1).mean()))
print(f"{real.name}: {len(shares)} centre frames, mean |DIS flow| {np.mean(mags):.2f} px; "
      f"offsets within 1 px of DIS on {100 * np.mean(shares):.0f} % of the pixels "
      f"(range {100 * min(shares):.0f}-{100 * max(shares):.0f} %); zero offsets would be within 1 px on "
      f"{100 * np.mean(still):.0f} % (the clip moves little)")

# %% [markdown]
# ### The paper's own model, where the reader has it
#
# The paper measures EDVR-M trained on REDS (600k iterations), and BasicSR publishes it. When
# `CHECKPOINT` (the parameters cell, from `DALIGN_CHECKPOINT`) names such a file, this cell loads
# it strictly (`models.optional_edvr`), runs it on the CPU on five frames of a crop of the
# held-out `bikes` shot and puts its offsets (each pixel's mean and its closest to DIS, raw
# $\Delta\mathbf{p}_k$) beside DIS flow on the same LR frames, with Fig. 5's share within 1 px and
# what offsets held at zero would score (`analysis.offsets_vs_dis`; notebook 10 opens the offset
# viewer on it). Without a checkpoint it says how to get one.

# %%
paper_model = optional_edvr(CHECKPOINT)  # None without a checkpoint
if paper_model is not None:
    paper_found = offsets_vs_dis(paper_model)  # the bikes test shot, a 64 x 96 LR crop
    print(paper_found.table())
    show_offsets_beside_flow(**paper_found.figure_data("l1"))
    plt.show()

# %% [markdown]
# ## 6. Why not 80 %: where the offsets miss, and which way the losses push them
#
# The `aligning` offsets reach about half the paper's share. Two measurements on `aligning-s0`
# (the run whose weights are kept) and the 8 held-out scenes of section 2 say where they miss
# and why (`dalign_nb.diagnostics`).
#
# **Where.** Every non-occluded pixel of both neighbours, by kind — on a sprite or the
# background, within 2 px of a layer boundary, within 6 px of the frame border, flat (the
# lowest quartile of local gradient magnitude) — and by the length of its flow. "Along" is the
# offset's error along the flow's direction: negative means it falls short of the motion.

# %%
clips8 = data.get_clips("synthetic", "test", num_scenes=8, seed=0,
                        scene_config=SceneConfig(height=256, width=256, num_frames=T))
for run, m_ in (("aligning-s0", model), ("round2-s0", r2_model)):  # align, then align2 (section 2b)
    errors = diagnostics.offset_errors(m_, clips8)  # 1-D arrays over the non-occluded pixels
    hit = errors["epe"] < 1
    kinds = diagnostics.shares_by_kind(errors, [k for k in diagnostics.PIXEL_KINDS if "away" not in k]
                                       + ["background, away from boundaries and border"])
    rows = [[name, f"{100 * k['pixels']:.0f} %", f"{100 * k['within']:.1f} %", f"{100 * k['of_misses']:.0f} %"]
            for name, k in kinds.items()]
    print(f"{run}\n" + format_table(rows, ["pixels", "share of pixels", "within 1 px", "share of the misses"]))
    rows = []
    for lo, hi in ((0, 2), (2, 4), (4, 6), (6, np.inf)):
        m = (errors["flow"] >= lo) & (errors["flow"] < hi)
        rows.append([f"{lo}-{hi} px", f"{100 * m.mean():.0f} %", f"{100 * hit[m].mean():.1f} %",
                     f"{np.median(errors['along'][m]):+.2f}", f"{np.median(errors['across'][m]):.2f}"])
    print(format_table(rows, ["flow length", "share of pixels", "within 1 px", "median error along the flow (px)",
                              "median error across it (px)"]))
    slow, fast = errors["flow"] < 4, errors["flow"] >= 4
    as_if = hit[slow].mean()  # every pixel matched as often as those that move less than 4 px
    committed = next(r for r in results if r["run"] == run)["measures"]["offsets_vs_flow"]["within_1px"]
    print(f"\nwithin 1 px: {100 * hit.mean():.1f} % recomputed from the fp16 weights of {run} "
          f"({100 * committed:.1f} % in its committed measurement). Were the {100 * fast.mean():.0f} % of pixels "
          f"that move 4 px or more matched as often as the others, the share would be {100 * as_if:.1f} %: the "
          f"shortfall on fast motion costs {100 * (as_if - hit.mean()):.1f} points; the gap to the paper's "
          f"{100 * paper.FIG5_SHARE_WITHIN_1PX:.0f} % is {100 * (paper.FIG5_SHARE_WITHIN_1PX - hit.mean()):.1f}\n")

# %% [markdown]
# **Which way the losses push.** The gradient of each training loss with respect to the L1
# offsets the model samples with (`diagnostics.offset_gradients`, every path through the
# network included), on the same scenes with their ground truth, at the pixels whose offset is
# more than 1 px from the flow: does a step of gradient descent move the offset towards the
# flow (`diagnostics.descent_towards_flow` > 0)? Both losses at their training weights (1 and 1).

# %%
val8 = data.validation_clips("synthetic", num_scenes=8, seed=0,
                             scene_config=SceneConfig(height=256, width=256, num_frames=T))
towards = {"SR loss (Charbonnier)": [], "photometric warping loss": []}
strength = {name: [] for name in towards}
for clip in val8:
    lq, gt = clip.lq[None].float(), clip.gt[C][None].float()
    grads = diagnostics.offset_gradients(model, lq, {  # the losses are called here, in this iteration
        "SR loss (Charbonnier)": lambda out, aux: losses.charbonnier_loss(out, gt),  # noqa: B023
        "photometric warping loss": lambda out, aux: losses.photometric_warping_loss(  # noqa: B023
            lq, aux["offsets"], C)})  # noqa: B023
    with torch.no_grad():
        _, aux = model(lq, return_aux=True)
    off = aux["offsets"]["l1"][0].float()  # (T, 2, h, w)
    for k in (C - 1, C + 1):
        far = ~clip.occlusion[k] & ((off[k].flip(0) - clip.flow[k]).norm(dim=0) > 1)  # (h, w)
        for name, g in grads.items():
            towards[name].append(diagnostics.descent_towards_flow(g[k], off[k], clip.flow[k])[far])
            strength[name].append(g[k].norm(dim=0)[far])
rows = []
for name in towards:
    t, g = torch.cat(towards[name]), torch.cat(strength[name])
    rows.append([name, f"{100 * (t > 0).float().mean():.0f} %", f"{g.mean():.2e}"])
print(format_table(rows, ["loss", "descent moves the offset towards the flow", "mean |gradient| per offset"]))
mean_grad = {name: float(torch.cat(strength[name]).mean()) for name in strength}
print(f"{len(torch.cat(towards['SR loss (Charbonnier)']))} pixels more than 1 px from the flow; the photometric "
      f"loss's gradient is {mean_grad['photometric warping loss'] / mean_grad['SR loss (Charbonnier)']:.0f} times "
      "the SR loss's there")

# %% [markdown]
# What the tables say (the numbers above are recomputed on every run from the fp16 weights,
# beside the committed full-precision measurement):
#
# * **The offsets miss everywhere, most at the hard places.** Sprites (about 24 % within 1 px)
#   and layer boundaries (about 22 %) are worst, as expected — a sprite moves on its own, and a
#   4 x 4 HR block at a boundary mixes two motions — but even the background away from
#   boundaries and the frame border, a rigid translation, reaches only about half. Flat regions
#   are no worse than textured ones: this is not the aperture problem.
# * **They fall short of fast motion.** Up to 4 px of motion about 55 % are within 1 px, with a
#   median shortfall of about 0.2 px and a scatter of about half a pixel across the flow;
#   between 4 and 6 px a third, 0.9 px short; beyond 6 px almost none, 3.6 px short. About 40 %
#   of the pixels move 4 px or more; matched as often as the slower ones, they would lift the
#   share by about 12 points (the line under the tables): about a third of the gap to 80 %, not
#   most of it. The rest is the misses at every motion, background included.
# * **Neither loss pulls a far-off offset back.** Where an offset is more than 1 px from the
#   flow, a step on the SR loss moves it towards the flow on half of the pixels, a coin toss,
#   with a gradient about 16 times weaker than the photometric loss's (printed); a step on the
#   photometric loss does so on only two thirds. A warping loss learns from the image gradient
#   at the sampling position, which points the right way only within about a pixel of the
#   answer; farther away it is about as likely to push the wrong way. Large motions therefore
#   have to be found at the coarse PCD levels, where they are small, and at this scale and
#   budget the coarse levels do not find all of them.
#
# **Round 2** (the `round2-s0` tables, section 2b's setting) moves every row: the background
# away from boundaries and the border, a rigid translation, is now matched on about nine pixels
# in ten; up to 6 px of motion about four in five, with the median shortfall along the flow at
# most about 0.1 px and the scatter across it about 0.2 px. What is left is where one flow per
# pixel has a hard time at any scale: sprites (about 55 %) and layer boundaries (about 42 %),
# each holding over a third of the remaining misses, and the fastest motion (6 px or more, 8 % of the
# pixels, about 28 % matched, 2.4 px short): at L3, a quarter of the LR size, such a motion is
# still 1.5 px or more, outside the bilinear basin of the coarsest level, which has no coarser
# level to warp it first.
#
# **At which level the fastest motion is lost.** The same share per PCD level of `round2-s0`,
# each coarser level's offsets upsampled to the LR size (`diagnostics.shares_by_motion`):

# %%
level_models = {"round2-s0": r2_model}
if any(r["run"] == "round2_cost_volume-s0" for r in results):  # the variant below, once it has run
    level_models["round2_cost_volume-s0"] = experiments.load_model("fig5", "round2_cost_volume-s0")
rows = []
for run, m_ in level_models.items():
    for level in ("l3", "l2", "l1"):
        level_errors = diagnostics.offset_errors(m_, clips8, level=level)
        by_motion = diagnostics.shares_by_motion(level_errors)
        rows.append([run, level.upper()] + [f"{100 * b['within']:.1f} %" for b in by_motion])
print(format_table(rows, ["run", "level"] + [f"{b['from']:g}-{b['to']:g} px ({b['pixels']} pixels)"
                                             for b in by_motion]))
fast = level_errors["flow"] >= 6
print(f"\nof the pixels that move 6 px or more, {100 * level_errors['sprite'][fast].mean():.1f} % lie on a sprite "
      f"(of all pixels {100 * level_errors['sprite'].mean():.0f} %) and {100 * level_errors['layer_edge'][fast].mean():.0f} % "
      "within 2 px of a layer boundary")

# %% [markdown]
# Each finer level adds to what the coarser one found, but where L3 misses, L2 and L1 recover
# only part: on motion of 6 px or more L3 is within 1 px (of the LR flow) on a few pixels in a
# hundred and L1 on about a quarter, while below 4 px L3 already holds about half (4-6 px: about
# a quarter) and L1 four in five or more. The fastest motion is lost at the coarsest level, where nothing coarser warps it
# first and the offset branch must infer a displacement of 1.5 px or more from two stacked
# feature maps. Hence the next variant, `round2_cost_volume` (fig5): a local correlation of the
# reference with the (warped) neighbour for every displacement up to 3 px of each level
# (`model.cost_volume`, FlowNetC and PWC-Net's cost volume; 12 LR px at L3) fed to every offset
# branch. Its rows above (seed 0) show what it changes level by level: about three points more
# at every level on 4-6 px of motion and a point or two below 4 px, but motion of 6 px or more
# stays where it was (L3 a few pixels in a hundred, L1 under a third). Its gain comes from the
# middle of the range, and the fastest motion is not a matter of the branch's reach alone:
# nearly all of it lies on sprites (printed under the table), small at L3 and often near their
# own occlusion boundary, which one flow per pixel at a quarter of the size cannot follow.
# Section 2b has its share against `round2` seed for seed over three seeds: within noise.
# Other ways, not measured here: a fourth pyramid level, more
# iterations, a curriculum of motion, the learning-rate multiplier on the offset branch of
# section 7.

# %% [markdown]
# ## 7. What was tried
#
# The variants tried while looking for a setting in which a $G = N = 1$ EDVR learns flow-like
# offsets on 2 CPU cores, one seed each, measured on held-out synthetic scenes against the
# exact flow (L1 offsets). They were screens, run with the probes' own training loop and kept
# no result files, so this list says what they showed in words; the numbers in this notebook
# are those of the committed `fig5` runs only.
#
# | variant | what it showed |
# | --- | --- |
# | **SR loss alone**, EDVR's own PCD (0-4 px and 2-6 px of motion, `standard` and `align` sizes) | the offsets never moved: no closer to the flow than zero offsets, and holding them at zero cost nothing |
# | photometric warping loss at the finest level (L1) only | hardly better than zero offsets |
# | photometric loss at L1, L2 and L3 | the coarse levels learned first (L2, then L3) and the finest offsets followed them |
# | the same, with a x10 learning rate on `conv_offset` / on the whole offset branch | faster / slower |
# | a model trained with the photometric loss, then continued on the SR loss alone | the flow-like offsets fell back to the zero-offset level within a few dozen iterations |
# | **residual offsets** across the pyramid, with the photometric loss at L1-L3 | the largest step towards the flow of all the screens: the `align` recipe |
#
# What the rows say:
#
# * The SR loss alone never moved the offsets of EDVR's own PCD, whatever the motion, learning
#   rate or patch.
# * The motion has to come from the coarse levels, where it is small: a photometric loss on all
#   three levels lets them learn first, and residual offsets pass what they learn up directly.
# * Without the photometric loss, flow-like offsets do not stay: the SR loss at this scale does
#   not hold on to alignment (`warmup_then_sr` in section 2 measures the same on a full run).
#
# The `fig5` runs above are the first full-length runs of the residual recipe (3000 iterations,
# cosine schedule).

# %% [markdown]
# ## 8. A live demonstration (not the evidence)
#
# Under `quick` this trains a small $G = N = 1$ model with the `align` recipe (residual offsets,
# photometric loss) for 120 iterations of 2 x 32² patches, and measures its offsets as above on
# two held-out scenes before and after, to show the machinery end to end in about a minute. It
# is far too short to show alignment: the offsets start to move (mean |offset|) but are not yet
# closer to the flow than zero offsets (compare the "within 1 px" column with the untrained
# row); the committed runs above needed about 3000 iterations of a larger model. With another
# profile the same cell trains 3000 iterations.

# %%
DEMO_ITERS = 120 if PROFILE == "quick" else 3000
demo = align.replace(
    model={"num_feat": 16, "num_extract_block": 1, "num_reconstruct_block": 1},
    data={"patch_size": 32, "batch_size": 2, "num_scenes": 8, "val_clips": 1},
    train={"total_iter": DEMO_ITERS, "periods": (DEMO_ITERS,),
           "log_every": 25, "val_every": 10**6, "ckpt_every": 10**6, "seed": SEED})
measure = {"num_scenes": 2, "size": 128}
torch.manual_seed(SEED)
before = experiments.offsets_vs_flow(EDVR.from_config(demo.model), demo, **measure)
res = train(demo, run_dir(demo, "notebook05-demo"), resume=False, device=DEVICE)
after = experiments.offsets_vs_flow(res.model, demo, **measure)
print(format_table([[name, f"{100 * m['within_1px']:.1f} %", f"{m['epe']:.2f}", f"{m['mean_offset']:.2f}",
                     f"{m['psnr']:.2f}", f"{m['psnr_zero_offsets']:.2f}"]
                    for name, m in (("untrained", before), (f"after {res.iteration} iterations", after))],
                   ["", "within 1 px", "EPE px", "mean |offset| px", "PSNR", "PSNR offsets 0"]))
print(f"mean |exact flow| {after['mean_flow']:.2f} px")

# %% [markdown]
# ## Summary
#
# In this notebook we have:
#
# * seen where EDVR predicts its offsets (Eq. 2, Fig. 3) and why, at small scale, the SR loss
#   alone does not make them flow-like;
# * named the two departures of the `align` setting, residual offsets across the PCD pyramid and
#   a self-supervised photometric warping loss, which use no optical flow;
# * measured, against the exact flow of held-out scenes, how close the learned offsets come to
#   the motion (Fig. 5), what the SR loss alone does to them, and how much PSNR the alignment is
#   worth against the same model with its offsets held at zero;
# * looked at offsets, exact and estimated flow side by side and at where they disagree (Fig. 4):
#   at occlusions, where no flow can fetch the reference's content;
# * measured why they fall short of the paper's 80 %: they under-reach fast motion, miss
#   sprites and boundaries, and neither loss pulls an offset that is more than a pixel off
#   back to the flow;
# * watched one offset field find a known shift coarse to fine and not at one level, and seen
#   round 2 (`align2`: warp-then-estimate, a census warping term, smoothness) bring the offsets
#   to about three quarters of the pixels within 1 px, close to what DIS finds on the same
#   frames, without raising PSNR; what remains is at sprites, boundaries and the fastest motion.
#
# Notebook 06 uses models of this setting with more offsets (N > 1) to study offset diversity.
