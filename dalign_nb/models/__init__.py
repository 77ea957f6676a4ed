"""Video super-resolution models of Sec. 4: EDVR with pluggable alignment, and Table 2's
TDAN-like and flow-based networks; ``build_model`` makes any of them from its config."""

from torch import nn

from .checkpoint import (
    CHECKPOINT_ENV,
    GET_CHECKPOINT,
    CheckpointError,
    checkpoint_from_env,
    describe_edvr,
    edvr_from_checkpoint,
    infer_edvr_config,
    optional_edvr,
)
from .edvr import (
    EDVR,
    LEVELS,
    PRESETS,
    EDVRConfig,
    build_edvr,
    edvr_config,
    flow_pyramid,
    load_basicsr_checkpoint,
    read_basicsr_state_dict,
)
from .flownet import FLOWNET_PRESETS, FlowNet, FlowNetConfig, build_flownet, flownet_config
from .modes import evaluating
from .tdan import TDAN, TDAN_PRESETS, TDANConfig, build_tdan, tdan_config

MODELS = {EDVRConfig: EDVR, TDANConfig: TDAN, FlowNetConfig: FlowNet}  # config type -> model class
# The name a profile records for each config type (``config.Profile.to_dict``'s ``model.type``).
MODEL_TYPES = {"edvr": EDVRConfig, "tdan": TDANConfig, "flownet": FlowNetConfig}
ModelConfig = EDVRConfig | TDANConfig | FlowNetConfig


def takes_flows(model: nn.Module) -> bool:
    """Whether ``model`` is called with ``flows=``: the one rule, from the model's own config
    (``EDVRConfig.takes_flows``: flow-guided alignment); models without a config take none."""
    config = getattr(model, "config", None)
    return bool(getattr(config, "takes_flows", False))


def model_type(config) -> str:
    """The name of a model config's type in ``MODEL_TYPES`` ("edvr", "tdan", "flownet")."""
    for name, cls in MODEL_TYPES.items():
        if type(config) is cls:
            return name
    raise ValueError(f"config must be one of {', '.join(c.__name__ for c in MODELS)}, "
                     f"got {type(config).__name__}")


def build_model(config) -> nn.Module:
    """The model a config describes: ``EDVR``, ``TDAN`` or ``FlowNet`` ``.from_config(config)``."""
    cls = MODELS.get(type(config))
    if cls is None:
        names = ", ".join(c.__name__ for c in MODELS)
        raise ValueError(f"config must be one of {names}, got {type(config).__name__}")
    return cls.from_config(config)


__all__ = [
    "CHECKPOINT_ENV",
    "EDVR",
    "FLOWNET_PRESETS",
    "MODELS",
    "MODEL_TYPES",
    "TDAN",
    "TDAN_PRESETS",
    "CheckpointError",
    "EDVRConfig",
    "FlowNet",
    "FlowNetConfig",
    "GET_CHECKPOINT",
    "LEVELS",
    "ModelConfig",
    "PRESETS",
    "TDANConfig",
    "build_edvr",
    "build_flownet",
    "build_model",
    "build_tdan",
    "checkpoint_from_env",
    "describe_edvr",
    "edvr_config",
    "edvr_from_checkpoint",
    "evaluating",
    "flow_pyramid",
    "flownet_config",
    "infer_edvr_config",
    "load_basicsr_checkpoint",
    "model_type",
    "optional_edvr",
    "read_basicsr_state_dict",
    "takes_flows",
    "tdan_config",
]
