"""Video super-resolution models of Sec. 4 (EDVR with pluggable alignment)."""

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
from .modes import evaluating

__all__ = [
    "EDVR",
    "EDVRConfig",
    "LEVELS",
    "PRESETS",
    "build_edvr",
    "edvr_config",
    "evaluating",
    "flow_pyramid",
    "load_basicsr_checkpoint",
    "read_basicsr_state_dict",
]
