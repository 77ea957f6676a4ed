"""The experiments of Sec. 4 at small scale (Table 1, 3, 4, Fig. 9, 16, 17): what their plans must
guarantee (paired runs differ only in the compared field, seeds and kept weights),
the measurements against values computed here by hand, and each experiment end to end through
the command line in a tiny configuration, run twice (the second run skips every finished run)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dalign_nb import experiments as E
from dalign_nb.__main__ import main
from dalign_nb.config import get_profile
from dalign_nb.data import SceneConfig, get_clips, validation_clips
from dalign_nb.losses import photometric_warping_loss
from dalign_nb.metrics import bicubic_baseline, quantize
from dalign_nb.models import build_model
from dalign_nb.models.edvr import EDVR, LEVELS
from dalign_nb.training.schedule import lr_groups
from dalign_nb.training.validation import needs_flow

KIND, NUM, MOD = "model.alignment.kind", "model.alignment.num_offsets", "model.alignment.modulated"
GRID = "model.alignment.grid"
SEC4 = ("table1", "fig9", "fig16", "table4", "fig17", "table3")


def _differences(name: str) -> dict[str, set]:
    """Per condition of experiment ``name`` (seed 0), the fields in which it differs from the
    experiment's first condition."""
    runs = {r.condition: r.profile.flat() for r in E.plan(name, seeds=[0])}
    first = next(iter(runs.values()))
    return {c: {k for k, v in flat.items() if v != first[k]} for c, flat in runs.items()}


def _psnr8(out, gt) -> float:
    from dalign_nb.metrics import psnr, quantize

    return psnr(quantize(out.float()), gt)


def test_runs_that_another_experiment_already_has_are_the_same_model_and_training():
    """table4's feature warping is fig9's n1, table3's DCN is fig17's dcnv2-k3 (not run twice):
    kind flow is the decomposition with G = N = 1 (same class, parameters, initialisation), and
    with one offset the mean-offset warping loss is the per-offset one."""
    n1 = E.plan("fig9", seeds=[0])[0].profile
    flow = E.with_overrides(get_profile("align2"), {**E.SEC4_COMMON, **E.FLOW})
    a = EDVR.from_config(n1.model).state_dict()  # seed_per_module: each module's own stream
    b = EDVR.from_config(flow.model).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    diff = {k for k, v in n1.flat().items() if v != flow.flat()[k]}
    assert diff == {KIND, MOD}  # kind flow has no masks whatever MOD says
    t3 = {r.condition: r.profile.flat() for r in E.plan("table3", seeds=[0])}
    dcn = E.plan("fig17", seeds=[0])[0].profile.flat()
    assert {k for k, v in t3["dcn_lr4x"].items() if v != dcn[k]} == {"train.lr"}


# --------------------------------------------------------------------------- plans


@pytest.mark.parametrize("name", SEC4)
def test_every_run_is_a_condition_on_align2_with_its_seeds_and_one_schedule(name):
    """Conditions x their seeds on align2 (where a G = N = 1 model aligns), the seed in the profile,
    one stream per module, the warping terms on each group's mean offset, one schedule per
    experiment (cosine over the whole run): 3000 iterations, table1's twins 1000."""
    exp, runs = E.EXPERIMENTS[name], E.plan(name)
    assert [r.name for r in runs] == [f"{c.name}-s{s}" for c in exp.conditions for s in c.seeds or exp.seeds]
    assert all(r.profile.name == "align2" and r.profile.train.seed == r.seed for r in runs)
    assert all(r.profile.model.seed_per_module and r.profile.train.photometric_target == "mean" for r in runs)
    ((total, periods),) = {(r.profile.train.total_iter, r.profile.train.periods) for r in runs}
    assert periods == (total,) and total == (E.TWIN_ITERS if name == "table1" else 3000)
    assert all(r.profile.train.photometric_weight > 0 for r in runs)  # the warping terms stay on
    guided = {r.name for r in runs if r.condition.startswith(("flow_guided", "flow_frozen"))}
    assert all(r.profile.model.warp_then_estimate == (r.name not in guided) for r in runs)
    # begun in float32, compared seed for seed: float32 on every machine (catalogue.FLOAT32)
    assert not any(r.profile.train.cpu_amp or r.profile.train.channels_last for r in runs)


def test_the_600_iteration_sweep_is_kept_as_it_ran():
    """The first sweep (align, 600 iterations; table1's twins 200) under <name>-600it, every run
    it made done by its committed results (table3's loss at the normal rate was never run)."""
    from dalign_nb.experiments.files import paths
    from dalign_nb.experiments.runner import run_state

    for name in SEC4:
        old = E.EXPERIMENTS[f"{name}-600it"]
        runs = E.plan(old.name)
        assert all(r.profile.name == "align" and not r.profile.model.seed_per_module for r in runs)
        assert {r.profile.train.total_iter for r in runs} == {200 if name == "table1" else E.SEC4_ITERS}
        states = {r.name: run_state(r, paths(old.name)) for r in runs}
        assert {k: v for k, v in states.items() if v != "done"} == (
            {"dcn_fidelity-s0": "pending"} if name == "table3" else {}), name


def test_paired_conditions_differ_only_in_what_they_compare():
    """A seed-for-seed difference means something only when the two runs differ in the compared
    field alone (the same seed then gives the same batches and, one stream per module, the same
    weights outside the alignment)."""
    assert _differences("fig9") == {"n1": set(), **{f"n{n}": {NUM} for n in (3, 5, 9, 15, 25)}}
    fig9 = {r.condition: r.profile.flat() for r in E.plan("fig9", seeds=[0])}
    for run in E.plan("fig16", seeds=[0]):
        g1 = fig9[run.condition.split("-")[1]]
        assert {k for k, v in run.profile.flat().items() if v != g1[k]} == {"model.deformable_groups"}
    twins = _differences("table1")  # a DCN on torchvision's op and its decomposition on the grid
    assert twins["decomposed-g1-k1"] == {KIND, "model.alignment.backend", GRID}
    assert twins["decomposed-g1-k3"] - twins["dcn-g1-k3"] == {KIND, "model.alignment.backend", GRID, NUM}
    assert twins["decomposed-g8-k3"] - twins["dcn-g8-k3"] == {KIND, "model.alignment.backend", GRID, NUM}
    assert _differences("fig17") == {"dcnv2-k3": set(), "dcnv2-k5": {"model.alignment.kernel_size"}}
    dcn = E.plan("fig17", seeds=[0])[0].profile.flat()
    table3 = {r.condition: r.profile.flat() for r in E.plan("table3", seeds=[0])}
    changed = {c: {k for k, v in f.items() if v != dcn[k]} for c, f in table3.items() if c.startswith("dcn")}
    assert changed == {
        "dcn_lr4x": {"train.lr"}, "dcn_fidelity": {"train.offset_fidelity_weight"},
        "dcn_fidelity_lr4x": {"train.lr", "train.offset_fidelity_weight"},
        "dcn_align4x": {"train.lr_mul"},
        "dcn_fidelity_all_align4x": {"train.lr_mul", "train.offset_fidelity_weight",
                                     "train.offset_fidelity_levels"}}
    assert table3["dcn_lr4x"]["train.lr"] == 4 * dcn["train.lr"]


def test_seeds_and_kept_weights_are_what_the_notebooks_need():
    """A verdict over seeds needs report.MIN_SEEDS of them: 3 seeds where one rests on the
    condition (issue 17's list), 1 where the paper's grid is filled in; Fig. 6-8, 12-15, 18, 19
    load seed 0's models."""
    from dalign_nb.report import MIN_SEEDS

    seeds = {(r.experiment.name, r.condition): set() for name in SEC4 for r in E.plan(name)}
    for name in SEC4:
        for r in E.plan(name):
            seeds[name, r.condition].add(r.seed)
    three = {("fig9", c) for c in ("n1", "n5", "n15")}
    three |= {("fig16", "g4-n1"), ("fig16", "g4-n5"), ("table4", "image_warping"), ("fig17", "dcnv2-k3")}
    three |= {("table1", f"{k}-g1-k{n}") for k in ("dcn", "decomposed") for n in (1, 3)}
    three |= {("table3", c) for c in ("dcn_fidelity", "dcn_align4x", "dcn_fidelity_all_align4x")}
    three |= {("table3", "flow_guided")}  # the oracle: what exact alignment lets the neighbours bring
    assert {k for k, v in seeds.items() if len(v) >= MIN_SEEDS} == three
    assert all(v == {0} for k, v in seeds.items() if k not in three)
    assert sum(map(len, seeds.values())) == 60  # runs in the sweep
    ex = E.EXPERIMENTS
    assert all(0 in ex[n].keep_weights for n in ("fig9", "table4", "fig17", "table3"))
    assert all("masks" in ex[n].measures for n in ("fig17", "table3"))
    assert all({"offsets_vs_flow", "psnr_real"} <= set(ex[n].measures) for n in SEC4)


def test_flows_reach_the_data_exactly_where_a_table3_run_needs_them():
    runs = {r.condition: r.profile for r in E.plan("table3", seeds=[0])}
    assert {c: needs_flow(p) for c, p in runs.items()} == {
        "dcn_fidelity": True, "flow_guided": True, "dcn_lr4x": False, "dcn_fidelity_lr4x": True,
        "n1_fidelity_all_lr4x": True, "flow_guided_lr4x": True,
        "dcn_align4x": False, "dcn_fidelity_all_align4x": True, "flow_frozen_align4x": True}
    flat = {c: p.flat() for c, p in runs.items()}  # the rate's control: flow_guided at dcn_lr4x's rate
    assert {k for k, v in flat["flow_guided_lr4x"].items() if v != flat["flow_guided"][k]} == {"train.lr"}
    assert flat["flow_guided_lr4x"]["train.lr"] == flat["dcn_lr4x"]["train.lr"]
    # the alignment module at 4x, nothing else; its control's offset layers frozen, the rest as the DCN's
    changed = {k for k, v in flat["dcn_align4x"].items() if v != flat["dcn_lr4x"][k]}
    assert changed == {"train.lr", "train.lr_mul"}
    assert flat["dcn_align4x"]["train.lr"] == flat["dcn_fidelity"]["train.lr"]
    model = build_model(runs["flow_frozen_align4x"].model)
    (_, rest), (frozen, offsets), (fast, align) = lr_groups(model, runs["flow_frozen_align4x"].train.lr_mul)
    assert (frozen, fast) == (0.0, 4.0) and offsets and all(".conv_offset." in n for n in offsets)
    assert set(align) | set(offsets) == {n for n in rest + offsets + align if n.startswith("pcd_align.")}
    assert lr_groups(build_model(runs["dcn_align4x"].model), runs["dcn_align4x"].train.lr_mul)[1][1] == [
        n for n, _ in build_model(runs["dcn_align4x"].model).named_parameters() if n.startswith("pcd_align.")]


# --------------------------------------------------------------------------- image warping


def test_image_alignment_reports_the_offsets_that_warp_its_frame():
    """Constant offset biases per level: with residual offsets L2 adds its own to twice L3's,
    L1 to twice L2's, the cascade refines L1's; aux reports them, the warping loss and the
    offset measurement use them, and zero_offsets zeroes all of them."""
    torch.manual_seed(0)
    profile = E.with_overrides(get_profile("align"), {**E.TINY, KIND: "image"})
    model = EDVR.from_config(profile.model).eval()
    bias = {"l3": (0.25, -0.5), "l2": (0.5, 0.25), "l1": (-0.25, 1.0), "cascade": (0.5, 0.5)}
    for level, b in bias.items():
        module = model.pcd_align.cas_dcnpack if level == "cascade" else model.pcd_align.dcn_pack[level]
        with torch.no_grad():
            module.conv_offset.bias.copy_(torch.tensor(b))
    b = {k: torch.tensor(v) for k, v in bias.items()}
    expected = {"l3": b["l3"], "l2": 2 * b["l3"] + b["l2"]}
    expected["l1"] = 2 * expected["l2"] + b["l1"]
    expected["cascade"] = expected["l1"] + b["cascade"]
    x = torch.rand(1, 3, 3, 16, 16)
    _, aux = model(x, return_aux=True)
    for level, size in zip(LEVELS, (4, 8, 16, 16)):
        off = aux["offsets"][level]
        assert off.shape == (1, 3, 2, size, size) and aux["masks"][level] is None
        torch.testing.assert_close(off, expected[level].view(1, 1, 2, 1, 1).expand_as(off))
    loss = photometric_warping_loss(x, aux["offsets"], 1)
    loss.backward()
    assert math.isfinite(loss.item()) and model.pcd_align.dcn_pack["l1"].conv_offset.bias.grad.abs().sum() > 0
    with torch.no_grad(), E.zero_offsets(model):
        _, aux0 = model(x, return_aux=True)
    assert all(aux0["offsets"][level].abs().max() == 0 for level in LEVELS)
    res = E.offsets_vs_flow(model, profile, num_scenes=1, size=32)
    assert res["mean_offset"] == pytest.approx(float(expected["l1"].norm()), rel=1e-5)
    assert res["psnr_zero_offsets"] is not None
    # the neighbours' offsets alone held at zero: the reference frame aligned as trained (an
    # output that depends on the features, not the untrained bilinear base)
    torch.manual_seed(1)
    torch.nn.init.normal_(model.conv_last.weight, std=0.05)
    res = E.offsets_vs_flow(model, profile, num_scenes=1, size=32)
    clip = E.held_out_scenes(profile, 1, 32, 0)[0]
    with torch.no_grad(), E.zero_offsets(model, frames=[0, 2]):
        by_hand = _psnr8(model(clip.lq[None]), clip.gt[1][None])
    assert res["psnr_zero_neighbours"] == pytest.approx(by_hand, abs=1e-9)
    assert res["psnr_gain_over_zero_neighbours"] == pytest.approx(res["psnr"] - by_hand, abs=1e-9)
    assert res["psnr_zero_neighbours"] != pytest.approx(res["psnr_zero_offsets"], abs=1e-6)


def test_offsets_vs_flow_skips_the_zero_offset_psnr_of_flow_guided_alignment():
    """An untrained flow-guided model's offsets are the exact flow (zero residue)."""
    torch.manual_seed(0)
    model_fields = {k: v for k, v in E.TINY.items() if k.startswith("model.")}
    profile = E.with_overrides(get_profile("quick"), {**model_fields, KIND: "flow_guided"})
    model = EDVR.from_config(profile.model).eval()
    res = E.offsets_vs_flow(model, profile, num_scenes=1, size=32)
    assert res["within_1px"] == 1.0 and res["epe"] == pytest.approx(0.0, abs=1e-5)
    assert res["psnr_zero_offsets"] is None and res["psnr_gain_over_zero"] is None
    assert res["psnr_per_scene"]["zero_offsets"] == []
    # an untrained EDVR (zero_init_output) returns its bilinear base: the same PSNR, below bicubic
    assert res["psnr"] == pytest.approx(res["psnr_bilinear_base"], abs=1e-4)
    assert res["psnr_bilinear_base"] < res["psnr_bicubic"]


def test_flow_tolerance_matches_offsets_vs_flow_at_zero_noise_and_refuses_models_without_flows():
    """At sigma 0 the model gets the exact flow, as ``offsets_vs_flow`` gives it: the same PSNR and
    the same reference-only PSNR on the same scenes; the median error of the flow given is 0 there
    and grows with sigma (about 1.18 sigma for a 2-D Gaussian, Rayleigh's median)."""
    torch.manual_seed(0)
    model_fields = {k: v for k, v in E.TINY.items() if k.startswith("model.")}
    profile = E.with_overrides(get_profile("quick"), {**model_fields, KIND: "flow_guided"})
    model = EDVR.from_config(profile.model).eval()
    with torch.no_grad():  # an output that depends on the neighbours (zero_init_output leaves it at the base)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    res = E.flow_tolerance(model, profile, sigmas=(0.0, 0.5), num_scenes=1, size=64)  # DIS: 12 LR px or more
    ref = E.offsets_vs_flow(model, profile, num_scenes=1, size=64)
    assert res["psnr"][0] == pytest.approx(ref["psnr"], abs=1e-6)
    assert res["psnr_reference_only"] == pytest.approx(ref["psnr_reference_only"], abs=1e-6)
    gains = [p - res["psnr_reference_only"] for p in res["psnr"]]
    assert res["gain_over_reference_only"] == pytest.approx(gains)
    assert res["median_epe"][0] == 0.0 and res["median_epe"][1] == pytest.approx(0.5 * 1.1774, rel=0.2)
    assert res["psnr"][1] != res["psnr"][0]  # the noise reaches the output
    assert res["median_epe_dis"] > 0
    assert res["gain_dis"] == pytest.approx(res["psnr_dis"] - res["psnr_reference_only"])
    assert E.MEASURES["flow_tolerance"].applies(profile)
    learned = E.with_overrides(get_profile("quick"), model_fields)
    assert not E.MEASURES["flow_tolerance"].applies(learned)
    with pytest.raises(ValueError, match="takes flows"):
        E.flow_tolerance(EDVR.from_config(learned.model), learned, num_scenes=1, size=32)
    with pytest.raises(ValueError, match="sigmas"):
        E.flow_tolerance(model, profile, sigmas=(-0.1,), num_scenes=1, size=32)


# --------------------------------------------------------------------------- ROC AUC


def test_roc_auc_hand_examples_and_pairs():
    assert E.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75  # 3 of 4 pairs ordered
    assert E.roc_auc([0.0, 0.0, 1.0], [1, 0, 1]) == 0.75  # a tie counts half: (0.5 + 1) / 2
    assert E.roc_auc([1, 1, 2, 2], [0, 1, 0, 1]) == 0.5
    assert E.roc_auc([3, 2, 1], [1, 0, 0]) == 1.0 and E.roc_auc([3, 2, 1], [0, 1, 1]) == 0.0
    assert math.isnan(E.roc_auc([1, 2], [1, 1]))
    g = np.random.default_rng(0)
    x, y = g.integers(0, 5, 60).astype(float), g.random(60) < 0.4  # many ties
    pairs = [(a > b) + 0.5 * (a == b) for a in x[y] for b in x[~y]]
    assert E.roc_auc(x, y) == pytest.approx(np.mean(pairs), abs=1e-12)


# --------------------------------------------------------------------------- diversity, masks


class GivenOffsets(nn.Module):
    """Returns the offsets (and masks) given for each held-out scene, found by its LR frames;
    the output is the bilinear centre frame."""

    def __init__(self, table: dict):
        super().__init__()
        self.table, self.unused = table, nn.Parameter(torch.zeros(()))

    def forward(self, x, return_aux=False):
        off, masks = self.table[float(x[0].sum())]  # (T, 2K, h, w), (T, K, h, w) or None
        out = F.interpolate(x[:, x.shape[1] // 2], scale_factor=4, mode="bilinear", align_corners=False)
        aux = {"offsets": {"l1": off[None]}, "masks": {"l1": None if masks is None else masks[None]}}
        return (out, aux) if return_aux else out


def _scenes():
    clips = validation_clips("synthetic", num_scenes=2, seed=0,
                             scene_config=SceneConfig(height=64, width=64, num_frames=3))
    occluded = torch.stack([c.occlusion[k] for c in clips for k in (0, 2)])  # (4, 16, 16)
    assert 0 < int(occluded.sum()) < occluded.numel() // 2  # both kinds of pixel
    return clips, int((~occluded).sum()), int(occluded.sum())


def _around_flow(clip, shifts) -> torch.Tensor:
    """(T, 2K, h, w): offset k = the exact flow as (dy, dx) + shifts[k], a (dy, dx) pair or (T, 2, h, w)."""
    base = clip.flow.flip(1)  # (T, 2, h, w) as (dy, dx)
    parts = []
    for shift in shifts:
        shift = torch.as_tensor(shift, dtype=base.dtype)
        parts.append(base + (shift.view(1, 2, 1, 1) if shift.dim() == 1 else shift))
    return torch.cat(parts, dim=1)


def test_diversity_where_the_mean_offset_misses_the_flow():
    """Two offsets flow + (0, -a) and flow + (b, +a): mean flow + (b/2, 0), diversity sqrt(a^2 + b^2/4).
    Left half of every frame a = 0.5, b = 0 (the mean on the flow, diversity 0.5); right half a = 1,
    b = 4 (the mean 2 px off, diversity sqrt 5): diversity detects the misses perfectly."""
    clips, _, _ = _scenes()
    table, right, visible = {}, 0, 0
    for clip in clips:
        w = clip.flow.shape[-1]
        is_right = (torch.arange(w) >= w // 2).view(1, 1, 1, w).expand(clip.flow.shape[0], 1, -1, -1)
        a = torch.where(is_right, 1.0, 0.5)
        b = torch.where(is_right, 4.0, 0.0)
        table[float(clip.lq.sum())] = (_around_flow(clip, [torch.cat([torch.zeros_like(a), -a], 1),
                                                           torch.cat([b, a], 1)]), None)
        for k in (0, 2):
            vis = ~clip.occlusion[k]
            visible += int(vis.sum())
            right += int(vis[:, w // 2:].sum())
    n2 = E.with_overrides(get_profile("quick"), {KIND: "decomposed", NUM: 2})
    res = E.diversity(GivenOffsets(table), n2, num_scenes=2, size=64)
    assert 0 < right < visible
    assert res["mean_offset_within_1px"] == pytest.approx(1 - right / visible)
    assert res["diversity_mean_offset_on"] == pytest.approx(0.5, rel=1e-5)
    assert res["diversity_mean_offset_off"] == pytest.approx(math.sqrt(5), rel=1e-5)
    assert res["diversity_auc_mean_offset_error"] == 1.0


def test_diversity_against_a_spread_set_by_hand():
    """Three offsets (dy, dx) = flow + (0, -s), (0, +s), (0.6, 0.6), s = 0.5 px on visible pixels and
    2 px on occluded ones: standard deviation sqrt((2 s^2 + 0.48) / 3); the closest is s from the flow."""
    clips, n_vis, n_occ = _scenes()
    table = {}
    for clip in clips:
        s = torch.where(clip.occlusion, 2.0, 0.5)[:, None]  # (T, 1, h, w)
        zero = torch.zeros_like(s)
        shifts = [torch.cat([zero, -s], 1), torch.cat([zero, s], 1), (0.6, 0.6)]
        table[float(clip.lq.sum())] = (_around_flow(clip, shifts), None)
    model = GivenOffsets(table)

    def std(s):
        return math.sqrt((2 * s**2 + 0.48) / 3)

    n3 = E.with_overrides(get_profile("quick"), {KIND: "decomposed", NUM: 3})
    res = E.diversity(model, n3, num_scenes=2, size=64)
    total = n_vis + n_occ
    assert res["num_pixels"] == total and res["occluded_share"] == pytest.approx(n_occ / total)
    assert res["diversity"] == pytest.approx((n_vis * std(0.5) + n_occ * std(2.0)) / total, rel=1e-5)
    assert res["diversity_visible"] == pytest.approx(std(0.5), rel=1e-5)
    assert res["diversity_occluded"] == pytest.approx(std(2.0), rel=1e-5)
    assert res["diversity_ratio_occluded_visible"] == pytest.approx(std(2.0) / std(0.5), rel=1e-5)
    assert res["diversity_auc_occlusion"] == 1.0 and res["within_1px"] == 1.0
    assert res["diversity_within_groups"] == pytest.approx(res["diversity"], rel=1e-6)  # G = 1
    # Read as G = 3 groups of N = 1: no diversity within a group, the same over all offsets.
    res = E.diversity(model, E.with_overrides(get_profile("quick"), {KIND: "flow"}), num_scenes=2, size=64)
    assert res["diversity_within_groups"] == 0.0
    assert res["diversity_visible"] == pytest.approx(std(0.5), rel=1e-5)
    with pytest.raises(ValueError, match="not 2\\*G\\*N"):  # N = 9 of a 3 x 3 DCN
        E.diversity(model, get_profile("quick"), num_scenes=2, size=64)


def test_masks_against_offsets_and_occlusion_set_by_hand():
    """Offsets flow + (0, d_k), d = 0.5, 2, 4 px (l1 distance d_k); masks 0.9, 0.5, 0.1 on visible
    pixels and 0.2 for every offset on occluded ones."""
    clips, n_vis, n_occ = _scenes()
    d, m = (0.5, 2.0, 4.0), torch.tensor([0.9, 0.5, 0.1])
    table = {}
    for clip in clips:
        occ = clip.occlusion[:, None]  # (T, 1, h, w)
        masks = torch.where(occ, torch.tensor(0.2), m.view(1, 3, 1, 1))  # (T, 3, h, w)
        table[float(clip.lq.sum())] = (_around_flow(clip, [(0.0, dk) for dk in d]), masks)
    res = E.masks(GivenOffsets(table), get_profile("quick"), num_scenes=2, size=64, small=0.15)
    assert res["per_offset"]["mean_mask"] == pytest.approx(m.tolist(), rel=1e-6)
    assert res["per_offset"]["mean_distance"] == pytest.approx(d, rel=1e-5)
    assert res["pearson_r"] == pytest.approx(np.corrcoef(m.numpy(), d)[0, 1], rel=1e-5)
    assert res["num_pixels"] == n_vis
    assert res["mask_visible"] == pytest.approx(0.5, rel=1e-6) and res["mask_occluded"] == pytest.approx(0.2)
    assert res["mask_ratio_occluded_visible"] == pytest.approx(0.4) and res["mask_auc_occlusion"] == 0.0
    total = n_vis + n_occ
    assert res["mean_mask"] == pytest.approx((0.5 * n_vis + 0.2 * n_occ) / total, rel=1e-6)
    assert res["share_small"] == pytest.approx(n_vis / (3 * total))  # the 0.1 masks of visible pixels
    with pytest.raises(ValueError, match="modulated"):
        E.masks(GivenOffsets({k: (v[0], None) for k, v in table.items()}), get_profile("quick"),
                num_scenes=2, size=64)


# --------------------------------------------------------------------------- real clips


def _frames(a) -> torch.Tensor:
    t = torch.from_numpy(np.array(a)).movedim(-1, -3).float()  # a copy: cached frames are read-only
    return t / 255 if a.dtype == np.uint8 else t


def test_psnr_real_by_hand_on_a_held_out_clip():
    torch.manual_seed(0)
    profile = E.with_overrides(get_profile("quick"), {"model.num_feat": 8, "model.num_extract_block": 1,
                                                      "model.num_reconstruct_block": 1,
                                                      "model.zero_init_output": False})
    model = EDVR.from_config(profile.model).eval()
    res = E.psnr_real(model, profile, clips=("carphone/shot0",), frames_per_clip=2)
    clip = next(c for c in get_clips("bundled", "test") if c.name == "carphone/shot0")
    ours, bicubic, base = [], [], []
    with torch.no_grad():
        for c in (1, len(clip) - 2):  # the first and last centres with a neighbour on each side
            lq = torch.stack([_frames(clip.lr(i)) for i in (c - 1, c, c + 1)])[None]  # (1, 3, 3, h, w)
            gt = _frames(clip.hr(c))[None].double()
            bilinear = F.interpolate(lq[:, 1], scale_factor=4, mode="bilinear", align_corners=False)
            for scores, est in ((ours, model(lq)), (bicubic, bicubic_baseline(lq[:, 1])), (base, bilinear)):
                scores.append(-10 * math.log10(float(((quantize(est).double() - gt) ** 2).mean())))
    assert res["num_frames"] == 2 and list(res["per_clip"]) == ["carphone/shot0"]
    assert res["psnr"] == pytest.approx(np.mean(ours), abs=1e-9)
    assert res["psnr_bicubic"] == pytest.approx(np.mean(bicubic), abs=1e-9)
    assert res["psnr_bilinear_base"] == pytest.approx(np.mean(base), abs=1e-9)
    assert res["psnr_gain_over_bicubic"] == pytest.approx(np.mean(ours) - np.mean(bicubic), abs=1e-9)
    with pytest.raises(ValueError, match="no held-out clip"):
        E.psnr_real(model, profile, clips=("nope",))


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def torch_threads():
    """The in-process command line sets torch's thread count (``--threads``): put it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _tiny_args(tmp_path) -> list[str]:
    """The TINY fields, one iteration with the warping loss on, validation and measurements on one
    small held-out scene or frame."""
    fields = {**E.TINY, "train.total_iter": 1, "data.num_scenes": 1, "data.val_source": "synthetic",
              "train.photometric_weight": 1.0}
    args = [a for k, v in fields.items() for a in ("--set", f"{k}={v!r}")]
    for m in ("offsets_vs_flow", "diversity", "masks"):
        args += ["--option", f"{m}.num_scenes=1", "--option", f"{m}.size=32"]
    args += ["--option", "psnr_real.clips=('carphone/shot0',)", "--option", "psnr_real.frames_per_clip=1"]
    args += ["--option", "flow_tolerance.num_scenes=1", "--option", "flow_tolerance.size=64",
             "--option", "flow_tolerance.sigmas=(0.0, 0.3)"]  # 64: DIS needs 12 LR px or more
    return args + ["--profile", "quick", "--seeds", "0", "--no-progress", "--threads", "1",
                   "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]


# fig9 and fig16 train their extremes through the command line (the other conditions differ
# only in N or G; each of their tiny models takes a forward pass and the warping loss instead),
# to keep the new tests within a minute on 2 busy cores.
ONLY = {"fig9": ("n1", "n15"), "fig16": ("g4-n5",)}


def _forward_and_loss(profile) -> float:
    torch.manual_seed(0)
    model = EDVR.from_config(profile.model)
    x = torch.rand(1, profile.model.num_frame, 3, 16, 16)
    _, aux = model(x, return_aux=True)
    cfg, n = profile.train, profile.model.alignment.offsets_per_group
    assert aux["offsets"]["l1"].shape[2] == 2 * profile.model.deformable_groups * n
    return photometric_warping_loss(x, aux["offsets"], 1, target=cfg.photometric_target, num_offsets=n).item()


@pytest.mark.parametrize("name", SEC4)
def test_cli_runs_the_experiment_end_to_end_then_skips_it(name, tmp_path, capsys, torch_threads):
    exp = E.EXPERIMENTS[name]
    only = ONLY.get(name, tuple(c.name for c in exp.conditions))
    names = [f"{c}-s0" for c in only]
    args = ["experiment", name, *_tiny_args(tmp_path), "--only", *names]
    assert main(args) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "results" / name
    assert sorted(p.stem for p in folder.glob("*.json")) == sorted(names), out
    for run in names:
        res = json.loads((folder / f"{run}.json").read_text())
        assert set(res["measures"]) == set(exp.measures) and res["num_params"] > 0
        assert res["provenance"]["profile"]["name"] == "quick" and res["train"]["iterations"] == 1
        assert res["provenance"]["measure_options"]["offsets_vs_flow"] == {"num_scenes": 1, "size": 32}
        entry = res["train"]["curve"][-1]
        assert set(entry["max_abs_offset"]) == set(entry["peak_mean_abs_offset"]) == set(LEVELS)
        masked = res["measures"].get("masks") is not None  # the monitor reads masks where there are
        assert set(entry["masks_off"]) == set(LEVELS) and (entry["masks_off"]["l1"] is not None) == masked
        assert 0 <= entry["pcd_positive"] <= 1
        assert "overflow" in res["train"]
        gain = res["measures"]["offsets_vs_flow"]["psnr_gain_over_zero"]
        guided = run.startswith(("flow_guided", "flow_frozen"))  # offsets given: nothing to zero
        assert (gain is None) == guided
        if "flow_tolerance" in exp.measures:  # the flow-guided runs only
            assert (res["measures"]["flow_tolerance"] is None) != guided, run
        if "masks" in exp.measures:  # None for a condition without masks (table3's n1_fidelity_all_lr4x)
            assert (res["measures"]["masks"] is None) == run.startswith("n1_"), run
        assert (folder / "weights" / f"{run}.pt").exists() == (0 in exp.keep_weights)
    before = {p.name: p.read_bytes() for p in folder.glob("*.json")}
    assert main(args) == 0
    assert capsys.readouterr().out.count("finished, skipped") == len(names)
    assert {p.name: p.read_bytes() for p in folder.glob("*.json")} == before
    tiny = {k: v for k, v in E.TINY.items() if k.startswith("model.")}
    for run in E.plan(name, profile="quick", seeds=[0], overrides=tiny):
        if run.condition not in only:
            assert math.isfinite(_forward_and_loss(run.profile)), run.name


@pytest.mark.parametrize("groups, k", [(1, 3), (2, 1)])
def test_table1_twins_start_as_one_model_and_drift_by_rounding_only(tmp_path, groups, k):
    """Table 1's DCN (torchvision's op) and the decomposition on the grid, same seed: the same
    initial weights, and losses and weights that agree to float rounding over the first
    iterations (the same batches, the same updates; on the CPU they even agree bit for bit
    while the offsets are small)."""
    from dalign_nb.train import train

    tiny = {**E.TINY, "train.total_iter": 6, "train.log_every": 1, "train.ckpt_every": 10**6,
            "data.patch_size": 16, "model.num_feat": 8}
    twins = {}
    for name, cond in (("dcn", E.dcn_reference(groups, k)), ("decomposed", E.decomposed_on_grid(groups, k))):
        profile = E.with_overrides(get_profile("align"), {**cond, **E.MEAN_TARGET, **tiny})
        twins[name] = train(profile, tmp_path / name, resume=False, device="cpu", progress=False)
    a, b = (twins[n].model.state_dict() for n in ("dcn", "decomposed"))
    losses = {n: np.array([e["loss"] for e in r.history["train"]]) for n, r in twins.items()}
    assert len(losses["dcn"]) == 6
    np.testing.assert_allclose(losses["decomposed"], losses["dcn"], rtol=1e-4)
    for name in a:  # after 6 Adam steps the weights still agree to rounding-sized drift
        torch.testing.assert_close(a[name].flatten(), b[name].flatten(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name, run", [("fig9", "n25-s0"), ("fig16", "g8-n5-s0"), ("table1", "dcn-g8-k3-s0"),
                                       ("table4", "image_warping-s0"), ("fig17", "dcnv2-k5-s0"),
                                       ("table3", "flow_guided-s0")])
def test_every_kind_of_alignment_in_the_sweep_trains_on_align2(name, run, tmp_path, torch_threads):
    """The sweep's own profile (align2: warp-then-estimate, census, smoothness, one stream per
    module), not quick's: each kind of alignment it holds takes two iterations on a tiny model
    and a finite loss (the end-to-end tests above run on quick)."""
    from dalign_nb.train import train

    tiny = {**E.TINY, "train.total_iter": 2, "data.patch_size": 16}
    (plan,) = [r for r in E.plan(name, seeds=[0], overrides=tiny) if r.name == run]
    assert plan.profile.name == "align2" and plan.profile.train.photometric_penalty == "census"
    res = train(plan.profile, tmp_path, resume=False, device="cpu", progress=False)
    assert res.iteration == 2 and all(math.isfinite(e["loss"]) for e in res.history["train"])
