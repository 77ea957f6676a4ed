"""Reading an experiment's results: the result dicts and the models whose weights were kept.

``summarize`` and ``paired`` (the mean and spread over seeds of one key, per condition or as a
seed-for-seed difference) live in ``dalign_nb.report`` beside ``stats``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dalign_nb.config import Profile
from dalign_nb.models import build_model

from .files import RESULTS_DIR, read_result

__all__ = ["load_model", "load_results"]


def load_results(name: str, results_dir=None, missing_ok: bool = False) -> list[dict]:
    """The result dicts of experiment folder ``name`` (``data/results/<name>/*.json``), by run name;
    ``missing_ok``: no folder yet gives ``[]`` instead of an error (a sweep not yet run). A damaged
    file is refused (``files.DamagedResultError``), naming it."""
    folder = Path(results_dir or RESULTS_DIR) / name
    if not folder.is_dir() and missing_ok:
        return []
    if not folder.is_dir():
        raise FileNotFoundError(f"no results for {name!r} in {folder}; run "
                                f"`python -m dalign_nb experiment {name}`")
    return [read_result(p) for p in sorted(folder.glob("*.json"))]


def load_model(name: str, run: str, results_dir=None, device="cpu") -> nn.Module:
    """The model of a run whose weights were kept (``Experiment.keep_weights``), in eval mode:
    EDVR, TDAN or FlowNet, as the run's profile says (``models.build_model``)."""
    folder = Path(results_dir or RESULTS_DIR) / name
    result = read_result(folder / f"{run}.json")
    if result is None:
        raise FileNotFoundError(f"no result {folder / f'{run}.json'}; run "
                                f"`python -m dalign_nb experiment {name}`")
    if not result.get("weights"):
        raise FileNotFoundError(f"{name}/{run} kept no weights (Experiment.keep_weights)")
    model = build_model(Profile.from_dict(result["provenance"]["profile"]).model)
    state = torch.load(folder / result["weights"], map_location="cpu", weights_only=True)["params"]
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.to(device).eval()
