"""Where an experiment's files live, and reading and writing them.

``data/results/<experiment>[-<tag>]/<run>.json`` (results with provenance, committed),
``.../weights/<run>.pt`` (kept weights, fp16), ``runs/<experiment>[-<tag>]/<run>/`` (the
trainer's checkpoints, git-ignored). Every file is written atomically (``io.atomic_write``);
a result file that is not what the runner writes (truncated, edited, of another program) is
refused by ``read_result``, naming the file, what is wrong and how to redo that run alone.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import torch
from torch import nn

from dalign_nb.io import atomic_write
from dalign_nb.io import write_json as _write_json

__all__ = ["RESULTS_DIR", "ROOT", "RUNS_DIR", "DamagedResultError", "ExperimentError", "read_result"]

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "data" / "results"
RUNS_DIR = ROOT / "runs"
SITTINGS = "sittings.json"  # in a run folder: one entry per call of the trainer

# What every result file holds (``runner._record``), and the type of each.
RESULT_KEYS = {"run": str, "condition": str, "seed": int, "measures": dict, "train": dict, "provenance": dict}


class ExperimentError(RuntimeError):
    """A run that cannot go ahead as asked (results or checkpoints of another configuration)."""


class DamagedResultError(ExperimentError):
    """A result file that cannot be read as a run's result."""


@dataclasses.dataclass
class Paths:
    """The folders of one experiment (and tag): results and run folders."""

    results: Path  # data/results/<experiment>[-<tag>]
    runs: Path  # runs/<experiment>[-<tag>]

    def result(self, run) -> Path:
        return self.results / f"{run.name}.json"

    def run_dir(self, run) -> Path:
        return self.runs / run.name

    def weights(self, run) -> Path:
        return self.results / "weights" / f"{run.name}.pt"


def paths(name: str, tag: str | None = None, runs_dir=None, results_dir=None) -> Paths:
    folder = name + (f"-{tag}" if tag else "")
    return Paths(Path(results_dir or RESULTS_DIR) / folder, Path(runs_dir or RUNS_DIR) / folder)


def _finite(obj):
    """JSON has no NaN / infinity: they become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: Path, obj) -> None:
    """``io.write_json`` with NaN and infinity written as null (``_finite``)."""
    _write_json(path, _finite(obj))


def read_json(path: Path):
    """The JSON in ``path``, or None when there is no such file."""
    return json.loads(path.read_text()) if path.exists() else None


def _result_problem(result) -> str | None:
    """What keeps ``result`` from being a run's result, or None."""
    if not isinstance(result, dict):
        return f"a JSON {type(result).__name__}, not an object"
    missing = [k for k in RESULT_KEYS if k not in result]
    if missing:
        return f"missing {', '.join(repr(k) for k in missing)}"
    wrong = [k for k, kind in RESULT_KEYS.items() if not isinstance(result[k], kind)]
    if wrong:
        return f"{wrong[0]!r} is a {type(result[wrong[0]]).__name__}, not a {RESULT_KEYS[wrong[0]].__name__}"
    if not isinstance(result["provenance"].get("profile"), dict):
        return "missing 'provenance.profile'"
    return None


def read_result(path: Path) -> dict | None:
    """The result in ``path`` (None when there is none); a damaged one raises
    ``DamagedResultError`` naming the file, what is wrong and how to redo that run alone."""
    path = Path(path)
    try:
        result = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problem = f"not JSON ({exc})"
    else:
        problem = None if result is None else _result_problem(result)
    if problem:
        raise DamagedResultError(f"{path}: damaged result file, {problem}; delete it or run that run again "
                                 f"alone with --only {path.stem} --fresh")
    return result


def save_weights(path: Path, model: nn.Module) -> None:
    """The model's state dict in fp16 (floating tensors), written atomically."""
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"params": state}, buf)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
