"""models.evaluating: every measurement runs a model in eval mode and hands it back as it came."""

import pytest
import torch

from dalign_nb.analysis import clip_frames, model_outputs
from dalign_nb.config import get_profile
from dalign_nb.data import SceneConfig, synthetic_clips, validation_samples
from dalign_nb.experiments import offsets_vs_flow, with_overrides
from dalign_nb.models import EDVR, evaluating
from dalign_nb.training.validation import evaluate

TINY_MODEL = {"model.num_feat": 8, "model.num_extract_block": 1, "model.num_reconstruct_block": 1}


def _recorded(model):
    """``model`` with a list of (its mode, its feature extractor's mode) at every forward pass."""
    modes = []
    model.register_forward_pre_hook(lambda m, args: modes.append((m.training, m.feature_extraction.training)))
    return modes


def _partly_frozen():
    """A tiny EDVR in training mode with its feature extractor frozen in eval mode."""
    torch.manual_seed(0)
    profile = with_overrides(get_profile("quick"), TINY_MODEL)
    model = EDVR.from_config(profile.model).train()
    model.feature_extraction.eval()
    return model, profile


def test_evaluating_restores_every_module_s_mode_even_after_an_error():
    model, _ = _partly_frozen()
    with evaluating(model):
        assert not any(m.training for m in model.modules())
    assert model.training and not model.feature_extraction.training
    with pytest.raises(RuntimeError), evaluating(model):
        raise RuntimeError("a failed measurement")
    assert model.training and model.conv_first.training and not model.feature_extraction.training


@pytest.mark.parametrize("consumer", ["model_outputs", "evaluate", "offsets_vs_flow"])
def test_measurements_run_in_eval_mode_and_hand_the_model_back(consumer):
    model, profile = _partly_frozen()
    modes = _recorded(model)
    scene = synthetic_clips(1, SceneConfig(height=64, width=64, num_frames=3), seed=1, split="test")[0]
    if consumer == "model_outputs":
        model_outputs(model, clip_frames(scene, 3))
    elif consumer == "evaluate":
        evaluate(model, validation_samples([scene], 3, 1))
    else:
        offsets_vs_flow(model, profile, num_scenes=1, size=32)
    assert modes and set(modes) == {(False, False)}
    assert model.training and not model.feature_extraction.training
