"""Reading an experiment's results: the result dicts and the models whose weights were kept.

``summarize`` and ``paired`` (the mean and spread over seeds of one key, per condition or as a
seed-for-seed difference) live in ``dalign_nb.report`` beside ``stats``.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch
from torch import nn

from dalign_nb import report
from dalign_nb.config import Profile
from dalign_nb.models import build_model
from dalign_nb.paper import format_table

from .catalogue import SEC4, plan
from .files import RESULTS_DIR, read_result

__all__ = ["PROGRESS_HEADERS", "SEC4_NAMES", "SWEEP_EXPERIMENTS", "load_model", "load_results", "load_sweep",
           "progress", "progress_table", "sweep_status"]


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


SWEEP_EXPERIMENTS = report.OVERVIEW_EXPERIMENTS
SEC4_NAMES = tuple(e.name for e in SEC4)  # the sweep's experiments, each with its 600-iteration archive


def load_sweep(suffix: str = "", results_dir=None) -> dict[str, list[dict]]:
    """Every experiment ``report.overview`` reads, name -> its committed results (``[]`` where
    none): Sec. 4's experiments of the sweep ``suffix`` ("" the sweep on align2,
    ``catalogue.ARCHIVE_600`` the first one), fig5 and table2 as they are."""
    return {name: load_results(name + suffix if name in SEC4_NAMES else name, results_dir, missing_ok=True)
            for name in SWEEP_EXPERIMENTS}


PROGRESS_HEADERS = ["experiment", "runs done", "per condition (seeds done / planned)", "training time",
                    "median per run"]


def progress(names, results_dir=None) -> list[dict]:
    """How far each experiment of ``names`` got, from its committed results alone (not from
    ``runs/``, which holds one machine's checkpoints): per experiment ``done`` and ``total``
    runs, ``conditions`` (condition -> (seeds done, seeds planned)), ``train_hours`` (the sum
    of the done runs' training wall time) and ``median_minutes`` (per run; None before one is
    done). A result of another schedule than the plan's (fewer iterations) does not count."""
    out = []
    for name in names:
        results = {r["run"]: r for r in load_results(name, results_dir, missing_ok=True)}
        conditions: dict[str, list[int]] = {}
        walls = []
        for run in plan(name):
            res = results.get(run.name)
            done = res is not None and res["train"].get("iterations") == run.profile.train.total_iter
            counts = conditions.setdefault(run.condition, [0, 0])
            counts[0] += done
            counts[1] += 1
            if done:
                walls.append(res["provenance"].get("train_wall_s") or 0.0)
        out.append({"experiment": name, "done": sum(c[0] for c in conditions.values()),
                    "total": sum(c[1] for c in conditions.values()),
                    "conditions": {c: tuple(v) for c, v in conditions.items()},
                    "train_hours": sum(walls) / 3600,
                    "median_minutes": statistics.median(walls) / 60 if walls else None})
    return out


def progress_table(rows: list[dict]) -> list[list[str]]:
    """``progress``'s rows for ``paper.format_table`` under ``PROGRESS_HEADERS``."""
    table = []
    for p in rows:
        per = ", ".join(f"{c} {d}/{t}" for c, (d, t) in p["conditions"].items())
        table.append([p["experiment"], f"{p['done']} / {p['total']}", per,
                      f"{p['train_hours']:.1f} h" if p["done"] else "-",
                      f"{p['median_minutes']:.0f} min" if p["median_minutes"] is not None else "-"])
    return table


def sweep_status(names, progress_of=None, results_dir=None) -> str:
    """How far the sweep on align2 got, as text for a notebook: the ``progress`` table of the
    experiments ``progress_of`` (default ``names``), then every row of ``report.overview`` that
    reads ``names`` (with Sec. 4's baseline row where they rest on it, ``report.overview_of``)."""
    rows = report.overview(load_sweep("", results_dir))
    return (format_table(progress_table(progress(progress_of or names, results_dir)), PROGRESS_HEADERS)
            + "\n\n" + format_table(report.overview_of(rows, *names), report.OVERVIEW_HEADERS))
