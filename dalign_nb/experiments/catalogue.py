"""The catalogue of experiments: one named experiment per table or figure of the paper.

An ``Experiment`` is a list of conditions (a run name and the profile fields it changes, by
their dotted names) times a list of seeds; every (condition, seed) is a ``Run`` with its
complete profile (``plan``). What was cut from the paper's grids to fit the CPU budget is said
in each description.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from dalign_nb.config import Profile, get_profile, with_overrides
from dalign_nb.models import flownet_config, tdan_config

__all__ = ["EXPERIMENTS", "Condition", "Experiment", "Run", "experiment", "plan"]


class Condition(NamedTuple):
    """A run name and the profile fields it changes, as dotted paths
    (``{"model.alignment.kind": "flow"}``; ``"model"`` replaces the whole model config, as
    table2's TDAN and FlowNet conditions do, ``config.with_overrides``); ``profile`` names the
    profile it starts from (None: the experiment's); ``measures``: measurements of this condition
    beyond the experiment's (fig5's round-2 runs add ``motion_sets``); ``seeds``: this
    condition's seeds (None: the experiment's), where a grid point needs fewer seeds than the
    conditions a verdict rests on (fig9's N = 3, 9, 25)."""

    name: str
    overrides: dict = {}
    profile: str | None = None
    measures: tuple[str, ...] = ()
    seeds: tuple[int, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Conditions x seeds (``seeds``, or a condition's own), the measurements taken after
    training, the weights kept.

    ``options``: keyword arguments per measurement; ``keep_weights``: seeds whose trained
    weights are kept (fp16 state dicts) in ``data/results/<experiment>/weights/``.
    """

    name: str
    description: str
    conditions: tuple[Condition, ...]
    profile: str = "standard"
    seeds: tuple[int, ...] = (0, 1, 2)
    measures: tuple[str, ...] = ("offsets_vs_flow",)
    options: dict = dataclasses.field(default_factory=dict)
    keep_weights: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of an experiment: ``<condition>-s<seed>`` and its complete profile."""

    experiment: Experiment
    condition: str
    seed: int
    profile: Profile
    extra_measures: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.condition}-s{self.seed}"

    @property
    def measures(self) -> tuple[str, ...]:
        """The experiment's measurements, then the condition's own."""
        return self.experiment.measures + tuple(m for m in self.extra_measures
                                                if m not in self.experiment.measures)


FLOW = {"model.alignment.kind": "flow"}  # G = N = 1: one learned flow warps the features (Sec. 4.1)

# The small-scale setting in which a G = N = 1 model learns flow-like offsets (issue 8; see
# config.align): residual offsets across the PCD pyramid and a photometric warping loss.
ALIGNING_PROFILE = "align"
SR_ONLY = {"train.photometric_weight": 0.0}  # the SR loss alone: the paper's training signal
EDVR_PCD = {"model.residual_offsets": False}  # EDVR's own PCD: offset features, not offsets, go up
# Alignment, round 2 (config.align2): warp-then-estimate + the census term + smoothness
ROUND2_PROFILE = "align2"
# align2 trains under bfloat16 autocast where the CPU computes bfloat16 natively (config.align2),
# and in float32 elsewhere: which one a run gets would depend on the machine it lands on. The
# experiments that compare runs seed for seed, begun in float32 before the fast path was found
# within float32's seed spread (fig5-bf16), keep float32 on every machine: a precision that changed
# between a condition and its baseline would break the pairing their verdicts rest on.
FLOAT32 = {"train.cpu_amp": False, "train.channels_last": False}
ROUND2 = {**FLOW, **FLOAT32}  # fig5's round-2 conditions: one learned flow, float32
RGB_TERM = {"train.photometric_penalty": "rgb", "train.smoothness_weight": 0.0}  # align's warping term
NO_WTE = {"model.warp_then_estimate": False}  # EDVR's estimate from unwarped features (residual kept)
COST_VOLUME = {"model.cost_volume": 3}  # matches up to 3 px of each level: 12 LR px at L3
SECOND_SET = ("motion_sets",)  # round 2's runs are also scored on more scenes, DIS beside

# Shrinks any profile to a model and a run that finish in seconds (tests, smoke runs): TINY_MODEL
# holds the fields every model config has (EDVR, TDAN, FlowNet), TINY_RUN the data and schedule.
TINY_MODEL = {"model.num_feat": 8, "model.num_reconstruct_block": 1}
TINY_RUN = {"data.patch_size": 8, "data.batch_size": 2, "data.num_scenes": 2, "data.val_clips": 1,
            "data.val_frames": 1, "train.total_iter": 12, "train.log_every": 2, "train.ckpt_every": 2,
            "train.val_every": 10**6}  # validation at the end only
TINY = {**TINY_MODEL, "model.num_extract_block": 1, **TINY_RUN}  # EDVR (and TDAN)

# Sec. 4 at small scale (issue 9): every condition on the align profile, where offsets learn.
MEAN_TARGET = {"train.photometric_target": "mean"}  # the warping loss on each group's mean offset:
# the N offsets' spread (offset diversity, Sec. 4.2) is left to the SR loss
SCENES = {"num_scenes": 8, "size": 256}  # held-out synthetic scenes of the offset measurements
SEC4_OPTIONS = {"offsets_vs_flow": SCENES, "diversity": SCENES, "masks": SCENES, "flow_tolerance": SCENES,
                "psnr_real": {"frames_per_clip": 4}}
SEC4_MEASURES = ("offsets_vs_flow", "diversity", "psnr_real")
FIDELITY = {"train.offset_fidelity_weight": 1.0, "train.offset_fidelity_threshold": 10.0}  # lambda, t
# as released (losses.py); against the exact flows of the synthetic training scenes
FIDELITY_ALL_LEVELS = {"train.offset_fidelity_levels": ("l1", "l2", "l3", "cascade")}  # ours: see
# TrainConfig; the released loss says nothing of EDVR's levels
LR_4X = {"train.lr": 4e-3}  # 4 x align's 1e-3: meant to provoke offset overflow (Sec. 4.3)
# The alignment module (EDVR's PCD, every parameter named pcd_align) at 4x the rate, the features,
# fusion and reconstruction at align's: at 4x everywhere every model, even one whose offsets cannot
# overflow, ends at the bilinear base. Screens (1 seed, stopped early): BasicSR's dcn_lr_mul (the
# DCNs and their offset convs) at 4x and 16x did not overflow in 1000 and 350 iterations; the whole
# alignment module at 4x overflowed in the cascade from iteration 250.
ALIGN_4X = {"train.lr_mul": (("pcd_align", 4.0),)}
# its control: exact-flow alignment whose offset (and mask) layers are frozen at their zero start,
# so that its offsets are the flow and cannot overflow (training.schedule.lr_groups: the first rule wins)
ALIGN_4X_FROZEN = {"train.lr_mul": (("conv_offset", 0.0), ("pcd_align", 4.0))}
# Sec. 4's schedule: align's model and data for 600 iterations (cosine over 600) instead of 3000,
# validation at the end: the whole sweep has to fit a few CPU-hours (issue 9's budget). A named cut:
# at 600 iterations a G = N = 1 model's offsets have learned part of the motion (fig5 runs 3000).
SEC4_ITERS = 600
SEC4_SCHEDULE = {"train.total_iter": SEC4_ITERS, "train.periods": (SEC4_ITERS,),
                 "train.val_every": SEC4_ITERS, "train.ckpt_every": 100}
# table1's twins: 200 iterations, the loss logged at every one (how the two drift apart)
TWIN_SCHEDULE = {"train.total_iter": 200, "train.periods": (200,), "train.val_every": 200,
                 "train.ckpt_every": 100, "train.log_every": 1}


def dcn(groups: int, kernel_size: int, modulated: bool = False) -> dict:
    """Deformable alignment (Eq. 1; DCNv2, Eq. 7, when ``modulated``), G groups, k x k kernel."""
    return {"model.alignment.kind": "dcn", "model.alignment.kernel_size": kernel_size,
            "model.alignment.modulated": modulated, "model.deformable_groups": groups}


def decomposed(groups: int, num_offsets: int) -> dict:
    """The decomposition (Sec. 3.3, Remark 1): N warps per group then a 1x1 conv, no masks."""
    return {"model.alignment.kind": "decomposed", "model.alignment.num_offsets": num_offsets,
            "model.alignment.modulated": False, "model.deformable_groups": groups}


def dcn_reference(groups: int, kernel_size: int) -> dict:
    """``dcn`` (no masks) computed by torchvision's ``deform_conv2d``, the reference op."""
    return {**dcn(groups, kernel_size), "model.alignment.backend": "torchvision"}


def decomposed_on_grid(groups: int, kernel_size: int) -> dict:
    """The k x k DCN written as Eq. 3: k*k warps starting on the kernel grid, a k x k offset
    branch, a 1x1 conv (``AlignmentConfig.grid``); parameter for parameter ``dcn``'s."""
    return {**decomposed(groups, kernel_size ** 2), "model.alignment.kernel_size": kernel_size,
            "model.alignment.grid": True}


def table2_model(config) -> dict:
    """Table 2's model ``config`` (``TDANConfig`` or ``FlowNetConfig``) in place of align's EDVR,
    the warping term on each group's mean offset at every offset level it has."""
    return {"model": config, **MEAN_TARGET, "train.photometric_levels": tuple(sorted(config.offset_levels)),
            **FLOAT32}


FLOW_GUIDED = {"model.alignment.kind": "flow_guided", "model.alignment.kernel_size": 3,
               "model.alignment.modulated": True, "model.deformable_groups": 1,
               "model.residual_offsets": False}  # its offsets are the flow plus a bounded residue


def _sec4_600(name: str, description: str, conditions, schedule=SEC4_SCHEDULE, **kw) -> Experiment:
    conditions = tuple(Condition(c, {**schedule, **o}, ALIGNING_PROFILE) for c, o in conditions)
    return Experiment(f"{name}{ARCHIVE_600}", description, conditions,
                      **{"measures": SEC4_MEASURES, "options": SEC4_OPTIONS, **kw})


# The first sweep of Sec. 4 (issue 9), kept as it ran: the align profile, 600 iterations, the
# paper's grids cut to fit a few CPU-hours. Its N = 1 model's offsets are within 1 px of the flow
# on 7 % of pixels and holding them at zero raises its PSNR on every seed, so its comparisons rest
# on a baseline that does not align. Its results live in data/results/<name>-600it/ and notebooks
# 06-10 read them until the sweep on align2 below is done. What was cut is said in each
# description; runs that would be the same model, seed and training as another experiment's are
# not repeated: table4's feature warping is fig9's n1 (FlowAlignment is DecomposedAlignment with
# G = N = 1), table3's DCN without the loss is fig17's dcnv2-k3, fig16's G = 1 row is fig9's seed 0.
ARCHIVE_600 = "-600it"
SEC4_600IT = (
    _sec4_600("table1",
          "Table 1: DCN (Eq. 1, no masks as Sec. 4.1-4.2, computed by torchvision's deform_conv2d) "
          "beside the decomposition (Sec. 3.3, Eq. 3: k x k warps starting on the kernel grid, then "
          "a 1x1 conv), G = 1, k in {1, 3}, trained side by side for 200 iterations with the loss "
          "logged at every one. With the same seed the two start from the same weights and see "
          "the same batches: they differ by float rounding only, and the curve shows how that "
          "rounding grows. Cut from the paper's grid: G = 8 (the small model's 32 channels would "
          "allow it) and the full schedule. Warping loss on each group's mean offset.",
          [(f"{kind}-g1-k{k}", {**(dcn_reference(1, k) if kind == "dcn" else decomposed_on_grid(1, k)),
                                **MEAN_TARGET})
           for k in (1, 3) for kind in ("dcn", "decomposed")],
          schedule=TWIN_SCHEDULE, seeds=(0,)),
    _sec4_600("fig9",
          "Fig. 6-9: G = 1, N in {1, 5, 15} offsets (the decomposition, no masks; the paper's "
          "N = 3, 9, 25 cut), 3 seeds, 600 iterations: PSNR, offset diversity (pixelwise standard "
          "deviation of the offsets, Sec. 4.2) and where it concentrates (occluded vs visible "
          "pixels, ROC AUC), offsets against the exact flow. Warping loss on the mean offset. "
          "Seed 0's weights kept (Fig. 6-8 look at N = 1 and 15). n1 is also table4's feature "
          "warping and fig16's G = 1, N = 1.",
          [(f"n{n}", {**decomposed(1, n), **MEAN_TARGET}) for n in (1, 5, 15)],
          keep_weights=(0,)),
    _sec4_600("fig16",
          "Fig. 16 (A.4): G = 4, N in {1, 5} (the decomposition, no masks), one seed, 600 "
          "iterations; the G = 1 row is fig9's n1, n5 seed 0. A cut of the paper's G in {1, 2, 4, "
          "8} x N in {1, 3, 5, 9, 15}. PSNR and, with num_params, PSNR gain per million "
          "parameters over N = 1. Warping loss on each group's mean offset.",
          [(f"g4-n{n}", {**decomposed(4, n), **MEAN_TARGET}) for n in (1, 5)],
          seeds=(0,)),
    _sec4_600("table4",
          "Table 4 (A.3, Fig. 15): image warping (kind image: one learned flow, G = N = 1, warps "
          "the LR frame, whose features are then extracted), 3 seeds, 600 iterations, against "
          "feature warping, which is fig9's n1 (one learned flow warps the features then a 1x1 "
          "conv: the same model, seeds and training, not run twice). Seed 0's weights kept.",
          [("image_warping", {"model.alignment.kind": "image"})],
          measures=("offsets_vs_flow", "psnr_real"), keep_weights=(0,)),
    _sec4_600("fig17",
          "Fig. 17-18 (A.5): DCNv2 (modulated, Eq. 7), G = 1, k = 3 (N = 9; the paper's k = 5 cut), "
          "one seed, 600 iterations: per offset the mean mask against the mean distance to the "
          "exact flow, their Pearson r; masks on occluded vs visible pixels. Warping loss on the "
          "mean offset. Also table3's DCN without the offset-fidelity loss. Weights kept.",
          [("dcnv2-k3", {**dcn(1, 3, modulated=True), **MEAN_TARGET})],
          measures=(*SEC4_MEASURES, "masks"), keep_weights=(0,), seeds=(0,)),
    _sec4_600("table3",
          "Table 3, Fig. 10, 19 (Sec. 3.4, 4.3): DCNv2 (G = 1, k = 3) at 4x the learning rate to "
          "provoke offset overflow, with and without the offset-fidelity loss (lambda = 1, t = 10 "
          "as released, against the exact flows of the training scenes), the loss at the normal "
          "rate, and flow-guided alignment; the DCN at the normal rate without the loss is "
          "fig17's dcnv2-k3. n1_lr4x: fig9's flow-based N = 1 model at 4x the rate, whether the "
          "4x rate alone breaks training. One seed, 600 iterations; the training curve keeps each level's "
          "mean and max |offset| and the overflow events. Warping loss on the mean offset. "
          "Weights kept.",
          [("dcn_lr4x", {**dcn(1, 3, modulated=True), **MEAN_TARGET, **LR_4X}),
           ("dcn_fidelity_lr4x", {**dcn(1, 3, modulated=True), **MEAN_TARGET, **FIDELITY, **LR_4X}),
           ("dcn_fidelity", {**dcn(1, 3, modulated=True), **MEAN_TARGET, **FIDELITY}),
           ("flow_guided", {**FLOW_GUIDED, **MEAN_TARGET}),
           ("n1_lr4x", {**decomposed(1, 1), **MEAN_TARGET, **LR_4X})],
          measures=(*SEC4_MEASURES, "masks"), keep_weights=(0,), seeds=(0,)),
)

# Sec. 4 on models that align (issue 17): every condition on align2 (warp-then-estimate, the
# census warping term, smoothness; fig5's round2 is its G = N = 1 model, within 1 px of the exact
# flow on 76 % of visible pixels over 3 seeds) at its full schedule (3000 iterations, validation
# every 500), with each module's initial weights drawn from its own stream (seed_per_module): the
# models of one seed share every weight outside the alignment modules, so a seed-for-seed
# difference compares alignment and nothing else. 3 seeds where a verdict rests on the condition,
# 1 where the paper's grid is filled in (Condition.seeds). The warping terms act on each group's
# mean offset (MEAN_TARGET): the spread of the N offsets is left to the SR loss. Runs that would
# be the same model, seed and training as another experiment's are not repeated: table4's feature
# warping and fig16's G = 1 row are fig9's n1 (and n5), table3's DCN without the loss at the normal
# rate is fig17's dcnv2-k3. Measured run times: a 3000-iteration run took 47-72 minutes two at a
# time on 2 cores of an AVX2 CPU (float32, OMP_WAIT_POLICY=PASSIVE; fig5's round2). Without
# fig5's cost volume (model.cost_volume): over round2 seed for seed it added +2.3, +1.1 and -0.2
# points within 1 px (+1.1 ± 1.2, within noise) and +0.05 ± 0.05 dB PSNR, for 16 % more time per
# iteration on every run of the sweep; round2 already meets the sweep's premise (its offsets
# held at zero cost it 1.3-5.7 dB on every seed).
SEC4_PROFILE = "align2"
SEC4_COMMON = {"model.seed_per_module": True, **MEAN_TARGET, **FLOAT32}
SEC4_SEEDS = (0, 1, 2)
ONE_SEED = (0,)
# table1's twins: 1000 iterations (align2's G = N = 1 model is 1.4 dB above bicubic by then,
# fig5's round2-s0), the loss logged every 5 (how the two drift apart)
TWIN_ITERS = 1000
TWIN_SCHEDULE_ALIGN2 = {"train.total_iter": TWIN_ITERS, "train.periods": (TWIN_ITERS,),
                        "train.val_every": 500, "train.log_every": 5}
NO_WTE_FLOW_GUIDED = {**FLOW_GUIDED, "model.warp_then_estimate": False}  # its offsets are the flow
# plus a residue, no pyramid of offsets to warp by


def _sec4(name: str, description: str, conditions, **kw) -> Experiment:
    """Conditions ``(name, overrides[, seeds])`` on align2 with ``SEC4_COMMON``."""
    conditions = tuple(Condition(c[0], {**SEC4_COMMON, **c[1]}, SEC4_PROFILE, (), *c[2:])
                       for c in conditions)
    return Experiment(name, description, conditions, **{"measures": SEC4_MEASURES,
                                                        "options": SEC4_OPTIONS, "seeds": SEC4_SEEDS, **kw})


SEC4 = (
    _sec4("table1",
          "Table 1: DCN (Eq. 1, no masks as Sec. 4.1-4.2, computed by torchvision's deform_conv2d) "
          "beside the decomposition (Sec. 3.3, Eq. 3: k x k warps starting on the kernel grid, then "
          "a 1x1 conv), G = 1, k in {1, 3}, 3 seeds, and G = 8, k = 3, 1 seed; 1000 iterations "
          "(the N = 1 model is then about 1.4 dB above bicubic), the loss logged every 5. With the "
          "same seed the two start from the same weights and see the same batches: they differ by "
          "float rounding only, and the curve shows how that rounding grows. Cut: the full schedule.",
          [(f"{kind}-g{g}-k{k}", {**(dcn_reference(g, k) if kind == "dcn" else decomposed_on_grid(g, k)),
                                  **TWIN_SCHEDULE_ALIGN2}, SEC4_SEEDS if g == 1 else ONE_SEED)
           for g, k in ((1, 1), (1, 3), (8, 3)) for kind in ("dcn", "decomposed")]),
    _sec4("fig9",
          "Fig. 6-9: G = 1, N in {1, 3, 5, 9, 15, 25} offsets (the paper's six points; the "
          "decomposition, no masks), 3 seeds for N = 1, 5, 15 and 1 for N = 3, 9, 25: PSNR, offset "
          "diversity (pixelwise standard deviation of the offsets, Sec. 4.2) and where it "
          "concentrates (occluded vs visible pixels, ROC AUC), offsets against the exact flow, the "
          "gain over the same model with its offsets held at zero. Seed 0's weights kept (Fig. "
          "6-8, 12-14 look at N = 1, 15, 25). n1 is also table4's feature warping and fig16's G = 1.",
          [(f"n{n}", decomposed(1, n), SEC4_SEEDS if n in (1, 5, 15) else ONE_SEED)
           for n in (1, 3, 5, 9, 15, 25)],
          keep_weights=(0,)),
    _sec4("fig16",
          "Fig. 16 (A.4): G in {2, 4, 8} x N in {1, 5} (the decomposition, no masks), seed 0, and "
          "G = 4 with 3 seeds; the G = 1 row is fig9's n1, n5. Cut from the paper's grid: N in {3, "
          "9, 15}. PSNR and, with num_params, PSNR gain per million parameters over N = 1.",
          [(f"g{g}-n{n}", decomposed(g, n), SEC4_SEEDS if g == 4 else ONE_SEED)
           for g in (2, 4, 8) for n in (1, 5)]),
    _sec4("table4",
          "Table 4 (A.3, Fig. 15): image warping (kind image: one learned flow, G = N = 1, warps "
          "the LR frame, whose features are then extracted), 3 seeds, against feature warping, "
          "which is fig9's n1 (one learned flow warps the features then a 1x1 conv: the same "
          "model, seeds and training, not run twice). Seed 0's weights kept.",
          [("image_warping", {"model.alignment.kind": "image"})],
          measures=("offsets_vs_flow", "psnr_real"), keep_weights=(0,)),
    _sec4("fig17",
          "Fig. 17-18 (A.5): DCNv2 (modulated, Eq. 7), G = 1, k = 3 (N = 9) with 3 seeds and "
          "k = 5 (N = 25, the paper's) with 1 seed: per offset the mean mask against the mean "
          "distance to the exact flow, their Pearson r; masks on occluded vs visible pixels; the "
          "share of masks near 0 (A.5: 'a significant proportion'). dcnv2-k3 is also table3's DCN "
          "without the offset-fidelity loss at the normal rate. Weights kept.",
          [("dcnv2-k3", dcn(1, 3, modulated=True)),
           ("dcnv2-k5", dcn(1, 5, modulated=True), ONE_SEED)],
          measures=(*SEC4_MEASURES, "masks"), keep_weights=(0,)),
    _sec4("table3",
          "Table 3, Fig. 10, 19 (Sec. 3.4, 4.3): DCNv2 (G = 1, k = 3) with the offset-fidelity loss "
          "(lambda = 1, t = 10 as released, against the exact flows of the training scenes) at the "
          "normal rate, 3 seeds (without it: fig17's dcnv2-k3); at 4x the rate, meant to provoke "
          "offset overflow, with and without the loss, 1 seed each (cut from 3: the rate alone breaks "
          "training, see flow_guided_lr4x, so more seeds could not give Table 3's 4x row a verdict); "
          "flow-guided alignment (an "
          "oracle: the exact flow plus a learned residue), 3 seeds: what the neighbours bring this "
          "model when its alignment is exact, the reference for every learned alignment's gain over "
          "the centre frame alone, and how exact its flow must be for that (measures.flow_tolerance); "
          "fig9's N = 1 model at 4x the rate with the loss on every level and the cascade "
          "(n1_fidelity_all_lr4x, 1 seed: the first sweep's only overflow was n1_lr4x's cascade, "
          "which the loss on L1 does not reach; the cascade against zero motion, "
          "losses.fidelity_flow; n1_lr4x itself is not rerun here, flow_guided_lr4x answers what it "
          "was for); flow-guided alignment at 4x the rate (flow_guided_lr4x, 1 seed), "
          "whose offsets cannot overflow (the flow plus at most 10 px at every level and the cascade): "
          "whether the rate alone, without any overflow, breaks training (the premise of the 4x "
          "rows, report.rate_premise). Since it does: the alignment module alone at 4x the rate "
          "(dcn_align4x, and dcn_fidelity_all_align4x with the loss on every level and the cascade, where "
          "the overflow is: 3 seeds; ALIGN_4X), its control exact-flow alignment with "
          "its offset layers frozen (flow_frozen_align4x, 1 seed). The training curve keeps each "
          "level's mean and max |offset| and the overflow events. Weights kept.",
          [("dcn_fidelity", {**dcn(1, 3, modulated=True), **FIDELITY}),
           ("dcn_lr4x", {**dcn(1, 3, modulated=True), **LR_4X}, ONE_SEED),
           ("dcn_fidelity_lr4x", {**dcn(1, 3, modulated=True), **FIDELITY, **LR_4X}, ONE_SEED),
           ("flow_guided", NO_WTE_FLOW_GUIDED),
           ("n1_fidelity_all_lr4x", {**decomposed(1, 1), **FIDELITY, **FIDELITY_ALL_LEVELS, **LR_4X},
            ONE_SEED),
           ("flow_guided_lr4x", {**NO_WTE_FLOW_GUIDED, **LR_4X}, ONE_SEED),
           ("dcn_align4x", {**dcn(1, 3, modulated=True), **ALIGN_4X}),
           ("dcn_fidelity_all_align4x", {**dcn(1, 3, modulated=True), **FIDELITY, **FIDELITY_ALL_LEVELS,
                                         **ALIGN_4X}),
           ("flow_frozen_align4x", {**NO_WTE_FLOW_GUIDED, **ALIGN_4X_FROZEN}, ONE_SEED)],
          # flow_tolerance: the flow-guided runs only (the others record None)
          measures=(*SEC4_MEASURES, "masks", "flow_tolerance"), keep_weights=(0,)),
)

# Table 2 (Sec. 4.2, footnote 3): align2's data, warping terms and full schedule (as the Sec. 4
# sweep), both model families, 3 seeds. align2's third part, warp-then-estimate, is a field of
# EDVR's PCD pyramid: TDAN has one offset level, and the flow network's SPyNet pyramid already
# estimates each level's residual flow on the neighbour warped by the coarser level's.
TABLE2_PROFILE = SEC4_PROFILE
# TDAN's one offset level, with these terms alone, did not align (tdan-n1-s0: 5.1 % within 1 px,
# +0.01 dB over its offsets held at zero): bilinear warping passes a gradient to an offset from
# about a pixel around its sample only, and the motion is 2-6 px. So its warping term also acts
# on its offsets average-pooled by 2 and 4 (losses.photometric_warping_loss's scales), a
# coarse-to-fine term on the one field, in place of the pyramid the other two models have.
TDAN_SCALES = {"train.photometric_scales": (1, 2, 4)}
TABLE2 = Experiment(
    "table2",
    "Table 2 (Sec. 4.2, footnote 3): offset diversity beyond EDVR. A TDAN-like network "
    "(models.tdan: offsets from the reference and neighbour features, one deformable convolution "
    "through the decomposition, reconstruction from the aligned LR frames) with N in {1, 9, 25} "
    "offsets (9 and 25: the k = 3 and k = 5 DCNs on their kernel grids; 1: one flow-like offset), "
    "and a TOFlow-like flow-based network (models.flownet: N SPyNet-style pyramids, N image warps "
    "in LR space as footnote 3 says, fusion, reconstruction) with N in {1, 2, 3} flows; the "
    "paper: 33.313 / 33.483 / 33.540 and 32.835 / 32.973 / 33.017 dB on Vimeo-90K-T. Ours: the "
    "'small' sizes of both (32 features, 3 frames, G = 1, so N is the only source of diversity, "
    "as fig9), the synthetic training scenes and full schedule of align2, the setting of the "
    "Sec. 4 sweep (3000 iterations of 4 x 32^2 LR patches), 3 seeds, seed 0's weights kept; PSNR "
    "on held-out synthetic scenes and on the real held-out clips, the gain over the same model "
    "with its offsets held at zero, offset diversity (read from the raw offsets dp_k, without the "
    "kernel grid), offsets against the exact flow. Cut from the paper: Vimeo-90K (training and "
    "Vimeo-90K-T), the models' sizes (TDAN: 64 features, G = 8, 5 frames; TOFlow: 7 frames, 4 "
    "SPyNet levels) and schedules. Named departures: align2's self-supervised warping term on "
    "soft census transforms with its edge-aware smoothness term (not the paper's; TDAN trains "
    "with an alignment loss of its own on the aligned LR frames, train.aligned_lr_weight) acting "
    "on each group's mean offset, so the spread of the N offsets is left to the SR loss, at every "
    "offset level the model has (TDAN: l1 only, and its offsets average-pooled by 2 and 4, "
    "train.photometric_scales, since at one level alone they did not align; the flow network: its "
    "3 SPyNet levels); SPyNet "
    "trained from scratch with the rest, not pre-trained on flow; the models' own departures are "
    "named in their modules. A 3000-iteration run took 12-16 minutes two at a time on 2 cores of "
    "an AVX2 CPU (float32, one thread each).",
    conditions=tuple(
        [Condition(f"tdan-n{n}", {**table2_model(tdan_config("small", num_offsets=n)), **TDAN_SCALES},
                   TABLE2_PROFILE)
         for n in (1, 9, 25)]
        + [Condition(f"flownet-n{n}", table2_model(flownet_config("small", num_offsets=n)),
                     TABLE2_PROFILE)
           for n in (1, 2, 3)]),
    measures=SEC4_MEASURES,
    options=SEC4_OPTIONS,
    keep_weights=(0,),
)

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment(
        "fig5",
        "Fig. 5: offsets of a G = N = 1 model (finest PCD level) against the exact flow of "
        "held-out synthetic scenes: share within 1 px, end-point error, histogram; PSNR against "
        "bicubic and against the same model with its offsets held at zero.",
        conditions=(Condition("aligning", FLOW, ALIGNING_PROFILE),
                    Condition("sr_only", {**FLOW, **SR_ONLY}, ALIGNING_PROFILE),
                    Condition("warmup_then_sr", {**FLOW, "train.photometric_until": 1000},
                              ALIGNING_PROFILE),
                    Condition("edvr_sr_only", {**FLOW, **SR_ONLY, **EDVR_PCD}, ALIGNING_PROFILE),
                    # Alignment, round 2 (config.align2): the setting, each of its parts alone,
                    # and its model trained with the SR loss alone
                    Condition("round2", ROUND2, ROUND2_PROFILE, SECOND_SET),
                    Condition("round2_wte_only", {**ROUND2, **RGB_TERM}, ROUND2_PROFILE, SECOND_SET),
                    Condition("round2_census_only", {**ROUND2, **NO_WTE}, ROUND2_PROFILE, SECOND_SET),
                    Condition("round2_sr_only", {**ROUND2, **SR_ONLY, "train.smoothness_weight": 0.0},
                              ROUND2_PROFILE, SECOND_SET),
                    # round 2 with a cost volume at every PCD level (model.cost_volume): round2
                    # misses most where L3 misses, on motion of 6 px and more
                    Condition("round2_cost_volume", {**ROUND2, **COST_VOLUME}, ROUND2_PROFILE, SECOND_SET)),
        options={"offsets_vs_flow": {"num_scenes": 8, "size": 256}},
        keep_weights=(0,),
    ),
    Experiment(
        "tiny",
        "The runner's own check: fig5's measurement on a tiny G = N = 1 model trained for 12 "
        "iterations (seconds). Not evidence of anything.",
        conditions=(Condition("flow", {**FLOW, **TINY}),),
        profile="quick",
        seeds=(0, 1),
        options={"offsets_vs_flow": {"num_scenes": 1, "size": 64}},
        keep_weights=(0,),
    ),
    *SEC4,
    TABLE2,
    *SEC4_600IT,
)}


def plan(name: str, *, profile: str | None = None, seeds=None, overrides: dict | None = None) -> list[Run]:
    """The runs of experiment ``name``: each condition's profile (or ``profile`` for all), its
    overrides, then ``overrides`` (for all), with ``train.seed`` set to each of its seeds (the
    condition's, else the experiment's; ``seeds`` replaces both)."""
    exp = experiment(name)
    overrides = dict(overrides or {})
    runs = []
    for cond in (Condition(*c) for c in exp.conditions):
        base = get_profile(profile or cond.profile or exp.profile)
        merged = {**cond.overrides, **overrides}
        if "train.total_iter" in overrides and "train.periods" not in overrides:
            merged.pop("train.periods", None)  # a condition's schedule yields to a new length
        for seed in (cond.seeds or exp.seeds) if seeds is None else seeds:
            p = with_overrides(base, {**merged, "train.seed": seed})
            runs.append(Run(exp, cond.name, int(seed), p, cond.measures))
    return runs


def experiment(name: str) -> Experiment:
    """The experiment called ``name``; an unknown name is refused with the list of names."""
    if name not in EXPERIMENTS:
        raise ValueError(f"no experiment {name!r}; experiments: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]
