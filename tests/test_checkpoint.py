"""The paper's own model from a BasicSR EDVR checkpoint: size inferred from shapes, strict load,
BasicSR's output; wrong or damaged files get one-line errors naming the file; DALIGN_CHECKPOINT.

Checkpoints are written in BasicSR's format from BasicSR's own ``EDVR`` (random weights, small
sizes). Without BasicSR those tests skip; under ``CI=true`` they fail, saying what to install.
"""

import json
from pathlib import Path

import pytest
import torch
from basicsr_arch import require_basicsr_edvr

from dalign_nb.models import (
    CHECKPOINT_ENV,
    PRESETS,
    CheckpointError,
    checkpoint_from_env,
    describe_edvr,
    edvr_from_checkpoint,
    infer_edvr_config,
)

# BasicSR's DCNv2Pack compares torchvision versions with distutils' LooseVersion
pytestmark = pytest.mark.filterwarnings("ignore:distutils Version classes are deprecated")

FROZEN = Path(__file__).parent / "data" / "basicsr_edvr_params.json"
SMALL = dict(num_feat=8, num_frame=3, deformable_groups=2, num_extract_block=1, num_reconstruct_block=2)


@pytest.fixture(scope="module")
def basicsr_edvr():
    return require_basicsr_edvr()


def _basicsr_model(module, seed=0, **kwargs):
    """BasicSR's EDVR with random weights, offsets of about a pixel (its offset branches start at 0)."""
    torch.manual_seed(seed)
    model = module.EDVR(**{**SMALL, **kwargs}).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "conv_offset" in name:
                p.normal_(0, 0.02 if name.endswith("weight") else 1.0)
    return model


def _save(tmp_path, sd, name="edvr.pth", wrap="params"):
    path = tmp_path / name
    torch.save(sd if wrap is None else {wrap: sd}, path)
    return path


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(with_tsa=False, deformable_groups=4, num_frame=5),
    dict(with_predeblur=True),
    dict(with_predeblur=True, hr_in=True),
])
def test_basicsr_checkpoint_builds_the_same_model(basicsr_edvr, tmp_path, kwargs):
    reference = _basicsr_model(basicsr_edvr, **kwargs)
    t, hw = kwargs.get("num_frame", 3), 32 if kwargs.get("hr_in") else 8
    x = torch.rand(2, t, 3, hw, hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
    for wrap in ("params", "params_ema", None):
        model = edvr_from_checkpoint(_save(tmp_path, reference.state_dict(), wrap=wrap))
        cfg = model.config
        assert (cfg.num_feat, cfg.num_frame, cfg.deformable_groups) == (
            8, t, kwargs.get("deformable_groups", 2))
        assert (cfg.with_tsa, cfg.with_predeblur, cfg.hr_in) == (
            kwargs.get("with_tsa", True), kwargs.get("with_predeblur", False), kwargs.get("hr_in", False))
        assert (cfg.num_extract_block, cfg.num_reconstruct_block) == (1, 2)
        assert not model.training
        with torch.no_grad():
            out, aux = model(x, return_aux=True)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert aux["offsets"]["l1"].abs().mean() > 0.5  # offsets of pixels: not the zero-offset case


def test_params_key_is_preferred_and_ddp_prefix_stripped(basicsr_edvr, tmp_path):
    a, b = _basicsr_model(basicsr_edvr, seed=0), _basicsr_model(basicsr_edvr, seed=1)
    sd_a = {f"module.{k}": v for k, v in a.state_dict().items()}
    torch.save({"params": sd_a, "params_ema": b.state_dict()}, tmp_path / "both.pth")
    x = torch.rand(1, 3, 3, 8, 8)
    with torch.no_grad():
        ema = edvr_from_checkpoint(tmp_path / "both.pth", param_key="params_ema")(x)
        torch.testing.assert_close(edvr_from_checkpoint(tmp_path / "both.pth")(x), a(x))
        torch.testing.assert_close(ema, b(x))
        assert (ema - a(x)).abs().max() > 1e-3


@pytest.mark.parametrize("preset, name", [("edvr-m", "EDVR-M"), ("edvr-l", "EDVR-L")])
def test_official_sizes_are_named(preset, name):
    """EDVR-M / EDVR-L from the shapes of BasicSR's state dicts (frozen list; meta tensors, no memory)."""
    params = json.loads(FROZEN.read_text())["models"][preset]["params"]
    sd = {k: torch.empty(shape, device="meta") for k, shape in params}
    config = infer_edvr_config(sd)
    assert config == PRESETS[preset]
    assert describe_edvr(config) == f"{name}, 5 frames, G = 8, TSA"


def _one_line_error(exc_type, path, match, call=edvr_from_checkpoint):
    with pytest.raises(exc_type, match=match) as info:
        call(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    return message


def test_wrong_or_damaged_files(basicsr_edvr, tmp_path):
    good = _save(tmp_path, _basicsr_model(basicsr_edvr).state_dict())
    (tmp_path / "notes.pth").write_text("these are not weights\n")
    _one_line_error(ValueError, tmp_path / "notes.pth", "not a readable PyTorch checkpoint: not a file")
    data = good.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    _one_line_error(ValueError, tmp_path / "truncated.pth", "damaged or truncated")
    torch.save({"params": {}, "opt": Path("elsewhere")}, tmp_path / "objects.pth")
    _one_line_error(ValueError, tmp_path / "objects.pth", "Python objects besides tensors")
    _one_line_error(FileNotFoundError, tmp_path / "missing.pth", "no such checkpoint file")

    resnet = {"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}
    message = _one_line_error(CheckpointError, _save(tmp_path, resnet, "resnet.pth"), "not an EDVR state")
    assert "conv1.weight" in message

    sd = torch.load(good, weights_only=True)["params"]
    odd = {**sd, "fusion.feat_fusion.weight": torch.zeros(8, 20, 1, 1)}  # 20 channels: not T * 8
    _one_line_error(CheckpointError, _save(tmp_path, odd, "odd.pth"), "shapes of no EDVR")
    dcnv1 = {**sd, "pcd_align.dcn_pack.l1.conv_offset.weight": torch.zeros(36, 8, 3, 3)}  # 2*G*9
    _one_line_error(CheckpointError, _save(tmp_path, dcnv1, "dcnv1.pth"), "not a DCNv2")
    partial = {k: v for k, v in sd.items() if k != "reconstruction.1.conv2.bias"}
    message = _one_line_error(CheckpointError, _save(tmp_path, partial, "partial.pth"), "not load strictly")
    assert "reconstruction.1.conv2.bias" in message
    torch.save({"iter": 3, "params": {"a": 1}}, tmp_path / "meta.pth")
    _one_line_error(ValueError, tmp_path / "meta.pth", "not a state dict")


def test_checkpoint_from_env(monkeypatch, tmp_path):
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    assert checkpoint_from_env() is None
    monkeypatch.setenv(CHECKPOINT_ENV, "  ")
    assert checkpoint_from_env() is None
    (tmp_path / "edvr.pth").write_bytes(b"")
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "edvr.pth"))
    assert checkpoint_from_env() == tmp_path / "edvr.pth"
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "edvr_m.pth"))
    with pytest.raises(FileNotFoundError, match="DALIGN_CHECKPOINT=.*edvr_m.pth.*no such file"):
        checkpoint_from_env()
