"""The paper's own model, where the reader has it: a BasicSR EDVR checkpoint, its size read off its shapes.

BasicSR publishes EDVR-M and EDVR-L checkpoints trained on REDS (the models the paper analyses,
Sec. 4; nothing here downloads them). ``edvr_from_checkpoint(path)`` reads one (``{"params":
sd}``, ``{"params_ema": sd}`` or a bare state dict), infers its ``EDVRConfig`` from the state
dict's shapes (``infer_edvr_config``: EDVR-M or EDVR-L, frames, deformable groups, TSA,
pre-deblurring, HR input), builds ``EDVR`` and loads the weights strictly. A wrong or damaged
file raises a one-line ``CheckpointError`` (a ``ValueError``) naming the file and what is wrong.

``checkpoint_from_env()`` is the path in ``DALIGN_CHECKPOINT`` (None when unset), the optional
checkpoint of notebooks 05 and 10; ``optional_edvr(path)`` loads it there, or prints
``GET_CHECKPOINT``, how to get one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from torch import Tensor

from .edvr import EDVR, EDVRConfig, read_basicsr_state_dict

__all__ = ["CHECKPOINT_ENV", "GET_CHECKPOINT", "CheckpointError", "checkpoint_from_env", "describe_edvr",
           "edvr_from_checkpoint", "infer_edvr_config", "optional_edvr"]

CHECKPOINT_ENV = "DALIGN_CHECKPOINT"
SIZES = {"EDVR-M": (64, 10), "EDVR-L": (128, 40)}  # (num_feat, num_reconstruct_block), BasicSR's
_DCN = "pcd_align.dcn_pack.l1"
OFFICIAL = {"EDVR-M": "EDVR_M_x4_SR_REDS_official-32075921.pth",  # BasicSR's model zoo, trained on REDS
            "EDVR-L": "EDVR_L_x4_SR_REDS_official-9f5f5039.pth"}
GET_CHECKPOINT = (
    f"No checkpoint ({CHECKPOINT_ENV} is not set). BasicSR's model zoo (docs/ModelZoo.md of "
    f"XPixelGroup/BasicSR; `python scripts/download_pretrained_models.py EDVR` in a BasicSR checkout) "
    f"has the paper's EDVR-M and EDVR-L trained on REDS, x4: {OFFICIAL['EDVR-M']} and {OFFICIAL['EDVR-L']}.\n"
    f"Point {CHECKPOINT_ENV} at one and restart the notebook, e.g. "
    f"{CHECKPOINT_ENV}=/path/to/{OFFICIAL['EDVR-M']} make lab"
)


class CheckpointError(ValueError):
    """A checkpoint file that is not what it should be; the message is one line naming the file."""


def checkpoint_from_env() -> Path | None:
    """The file named by ``DALIGN_CHECKPOINT``, or None when it is unset or empty.

    A value naming no file raises ``FileNotFoundError`` (a typo should not pass for "no checkpoint").
    """
    value = os.environ.get(CHECKPOINT_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{CHECKPOINT_ENV}={value!r}: no such file")
    return path


def _count(sd: dict[str, Tensor], prefix: str) -> int:
    """How many numbered blocks ``prefix.{i}.`` the state dict holds."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return len({m.group(1) for k in sd if (m := pattern.match(k))})


def _shape(sd: dict[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise KeyError(key)
    return tuple(sd[key].shape)


def _frames(sd: dict[str, Tensor], num_feat: int, with_tsa: bool) -> int:
    """T from the fusion's input channels ``T * C`` (TSA's ``feat_fusion``, else the 1x1 ``fusion``)."""
    c_in = _shape(sd, "fusion.feat_fusion.weight" if with_tsa else "fusion.weight")[1]
    if c_in % num_feat:
        raise ValueError(f"the fusion takes {c_in} channels, not a multiple of num_feat = {num_feat}")
    return c_in // num_feat


def _groups(sd: dict[str, Tensor], num_feat: int) -> int:
    """G from the DCNv2 offset branch: ``conv_offset`` has ``3 * G * k * k`` outputs (BasicSR's DCNv2Pack)."""
    c_out, c_in, k, _ = _shape(sd, f"{_DCN}.weight")
    offset_out = _shape(sd, f"{_DCN}.conv_offset.weight")[0]
    if (c_out, c_in) != (num_feat, num_feat) or offset_out % (3 * k * k):
        raise ValueError(f"{_DCN} has weight {(c_out, c_in, k)} and {offset_out} offset channels, "
                         f"not a DCNv2 of {num_feat} channels (3 * G * {k}*{k} offset channels)")
    return offset_out // (3 * k * k)


def infer_edvr_config(sd: dict[str, Tensor]) -> EDVRConfig:
    """The ``EDVRConfig`` of BasicSR's ``EDVR`` whose state dict is ``sd``, from its keys and shapes.

    Raises ``KeyError`` (a key EDVR always has is missing) or ``ValueError`` (shapes no EDVR has).
    Only shapes are read (tensors on the ``meta`` device will do). ``center_frame_idx`` is not
    stored; BasicSR's default, the middle frame, is assumed.
    """
    with_predeblur = "predeblur.conv_first.weight" in sd
    num_feat = _shape(sd, "conv_l2_1.weight")[0]
    num_in_ch = _shape(sd, "predeblur.conv_first.weight" if with_predeblur else "conv_first.weight")[1]
    with_tsa = "fusion.temporal_attn1.weight" in sd
    return EDVRConfig(
        num_in_ch=num_in_ch, num_out_ch=_shape(sd, "conv_last.weight")[0], num_feat=num_feat,
        num_frame=_frames(sd, num_feat, with_tsa), deformable_groups=_groups(sd, num_feat),
        num_extract_block=_count(sd, "feature_extraction"),
        num_reconstruct_block=_count(sd, "reconstruction"),
        hr_in="predeblur.stride_conv_hr1.weight" in sd, with_predeblur=with_predeblur, with_tsa=with_tsa)


def describe_edvr(config: EDVRConfig) -> str:
    """``"EDVR-M, 5 frames, G = 8, TSA"``-like: the size's name (or its numbers) and the variant."""
    size = next((name for name, (c, r) in SIZES.items()
                 if (config.num_feat, config.num_reconstruct_block) == (c, r)),
                f"EDVR with {config.num_feat} features, {config.num_reconstruct_block} reconstruction blocks")
    parts = [size, f"{config.num_frame} frames", f"G = {config.deformable_groups}",
             "TSA" if config.with_tsa else "no TSA"]
    parts += ["pre-deblurring"] * config.with_predeblur + ["HR input"] * config.hr_in
    return ", ".join(parts)


def _load_error(path, error: RuntimeError) -> CheckpointError:
    lines = [s.strip() for s in str(error).splitlines() if s.strip()]
    detail = ("; ".join(lines[1:3]) or lines[0]) if lines else type(error).__name__
    return CheckpointError(f"{path}: EDVR keys, but the weights do not load strictly into the EDVR their "
                           f"shapes describe: {detail[:300]}")


def edvr_from_checkpoint(path: str | Path, param_key: str = "params") -> EDVR:
    """BasicSR's EDVR checkpoint at ``path`` as an ``EDVR`` (eval mode), its config inferred, loaded strictly.

    ``param_key`` is preferred when the file holds both ``params`` and ``params_ema``. The
    model's config (``model.config``; ``describe_edvr`` names it) is what the shapes say.
    Errors name the file: ``FileNotFoundError``; ``ValueError`` for a file that is no readable
    PyTorch checkpoint or holds no state dict; ``CheckpointError`` (a ``ValueError``) for a
    state dict that is not EDVR's, has shapes of no EDVR, or does not load strictly.
    """
    sd = read_basicsr_state_dict(path, param_key)
    try:
        model = EDVR.from_config(infer_edvr_config(sd))
    except KeyError as missing:
        some = ", ".join(list(sd)[:3]) or "none"
        raise CheckpointError(f"{path}: not an EDVR state dict (no {missing.args[0]!r}; "
                              f"{len(sd)} keys, the first: {some})") from None
    except ValueError as why:
        raise CheckpointError(f"{path}: EDVR keys with shapes of no EDVR that can be built: {why}") from None
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as error:
        raise _load_error(path, error) from None
    return model.eval()


def optional_edvr(path: str | Path | None) -> EDVR | None:
    """The EDVR of the BasicSR checkpoint ``path`` (``edvr_from_checkpoint``), after printing the
    file's name and what it holds (``describe_edvr``); with ``path`` None, None, after printing
    ``GET_CHECKPOINT``: the optional model of notebooks 05 and 10 (``checkpoint_from_env()``)."""
    if path is None:
        print(GET_CHECKPOINT)
        return None
    model = edvr_from_checkpoint(path)
    print(f"{Path(path).name}: {describe_edvr(model.config)}")
    return model
