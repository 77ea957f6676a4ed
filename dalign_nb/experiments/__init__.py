"""Named experiments: sets of training runs, each measured after training, with provenance.

An ``Experiment`` is a list of conditions (a run name and the profile fields it changes)
times a list of seeds; every (condition, seed) is a run. A run trains with
``dalign_nb.train.train`` in ``runs/<experiment>/<run>/`` (checkpoints, git-ignored), then
measures the trained model -- each measurement a function ``(model, profile) -> dict``
named in ``MEASURES`` -- and writes ``data/results/<experiment>/<run>.json``::

    {"format": 1, "experiment": "fig5", "run": "aligning-s0", "condition": "aligning", "seed": 0,
     "num_params": 1234567, "measures": {"offsets_vs_flow": {...}},
     "train": {"status": "done", "iterations": 3000, "val": [...], "events": [...],
               "curve": [{"iter", "loss", "lr", "mean_abs_offset", "max_abs_offset",
                          "peak_mean_abs_offset", "masks_off", "pcd_positive"}, ...],
               "overflow": [...]},
     "provenance": {"command": "python -m dalign_nb experiment fig5", "profile": {...},
                    "git_commit": "...", "git_dirty": false, "seed": 0, "device": "cpu",
                    "device_name": "AMD EPYC (AVX512)", "precision": {"autocast": null,
                    "channels_last": false, "why": "float32"}, "torch": "2.x", "threads": 2,
                    "train_wall_s": 2700.0, "measure_wall_s": 30.0, "measure_options": {...},
                    "iterations": 3000,
                    "date": "2025-01-01T12:00:00+00:00",
                    "sittings": [{"date": ..., "git_commit": ..., "from_iter": 0, "to_iter": 1250,
                                  "wall_s": ..., "status": "SIGINT", "device": ...,
                                  "device_name": ..., "precision": {...}}, ...]},
     "weights": "weights/aligning-s0.pt" | null}

Run it from a shell (``python -m dalign_nb experiment --help``)::

    python -m dalign_nb experiment fig5                        # every run, one after the other
    python -m dalign_nb experiment fig5 --device cuda --jobs 6 # all six at once on one GPU
    python -m dalign_nb experiment fig5 --list                 # the runs and how far each got

The measurements: ``offsets_vs_flow`` (Fig. 5), ``diversity`` (Sec. 4.2, Fig. 6, 9),
``masks`` (A.5, Fig. 17) on held-out synthetic scenes with exact flow and occlusion, and
``psnr_real`` on the real held-out clips. The experiments of Sec. 4 (``table1``, ``fig9``,
``fig16``, ``table4``, ``fig17``, ``table3``) run on the ``align2`` profile, where a G = N = 1
model's offsets follow the motion, at its full schedule with 3 seeds where a verdict rests on a
condition; their first sweep (``align``, 600 iterations) is kept as it ran under
``<name>-600it``. ``table2`` runs on ``align``, with Table 2's TDAN-like and flow-based
networks in place of EDVR (a condition may replace the whole model config:
``{"model": tdan_config("small", num_offsets=9)}``).

Running it again skips finished runs and resumes interrupted ones exactly from their
checkpoints (Ctrl-C stops after the current iteration and keeps them), so a sweep may span
several sittings. Notebooks read the results with ``load_results("fig5")`` and
``summarize(...)``, and the kept weights with ``load_model("fig5", "aligning-s0")``.

The package, one module per concern (every public name is importable from here):

* ``catalogue``: ``Condition``, ``Experiment``, ``Run``, ``EXPERIMENTS``, ``plan``;
* ``measures``: the measurements, ``MEASURES``, ``held_out_scenes``;
* ``runner``: ``run_experiment`` (skip, resume, measure, record with provenance);
* ``parallel``: several runs at once in subprocesses;
* ``files``: where results, weights and run folders live; ``read_result`` refuses a damaged file;
* ``results``: ``load_results``, ``load_model`` (and ``summarize`` / ``paired`` of ``report``);
* ``cli``: the command line.

Profile fields change by their dotted names with ``config.with_overrides``; ``zero_offsets``
lives beside the alignment modules and ``roc_auc`` in ``metrics`` (both re-exported here).
"""

from dalign_nb.alignment import zero_offsets
from dalign_nb.config import with_overrides
from dalign_nb.metrics import roc_auc
from dalign_nb.report import paired, summarize

from .catalogue import (
    ALIGNING_PROFILE,
    ARCHIVE_600,
    EDVR_PCD,
    EXPERIMENTS,
    FIDELITY,
    FLOW,
    FLOW_GUIDED,
    LR_4X,
    MEAN_TARGET,
    SCENES,
    SEC4,
    SEC4_600IT,
    SEC4_COMMON,
    SEC4_ITERS,
    SEC4_MEASURES,
    SEC4_OPTIONS,
    SEC4_PROFILE,
    SEC4_SCHEDULE,
    SEC4_SEEDS,
    SR_ONLY,
    TABLE2,
    TINY,
    TINY_MODEL,
    TINY_RUN,
    TWIN_ITERS,
    TWIN_SCHEDULE,
    Condition,
    Experiment,
    Run,
    dcn,
    dcn_reference,
    decomposed,
    decomposed_on_grid,
    experiment,
    plan,
    table2_model,
)
from .cli import main
from .files import RESULTS_DIR, ROOT, RUNS_DIR, DamagedResultError, ExperimentError, read_result
from .measures import (
    MEASURES,
    Measure,
    bilinear_base_psnr,
    diversity,
    flow_tolerance,
    held_out_scenes,
    masks,
    offsets_vs_flow,
    psnr_real,
)
from .results import (
    PROGRESS_HEADERS,
    SEC4_NAMES,
    SWEEP_EXPERIMENTS,
    load_model,
    load_results,
    load_sweep,
    progress,
    progress_table,
    sweep_status,
)
from .runner import run_experiment

__all__ = [
    "ALIGNING_PROFILE",
    "EDVR_PCD",
    "EXPERIMENTS",
    "FIDELITY",
    "FLOW",
    "FLOW_GUIDED",
    "LR_4X",
    "MEAN_TARGET",
    "MEASURES",
    "PROGRESS_HEADERS",
    "RESULTS_DIR",
    "ROOT",
    "RUNS_DIR",
    "SCENES",
    "ARCHIVE_600",
    "SEC4",
    "SEC4_600IT",
    "SEC4_COMMON",
    "SEC4_ITERS",
    "SEC4_MEASURES",
    "SEC4_NAMES",
    "SEC4_OPTIONS",
    "SEC4_PROFILE",
    "SEC4_SCHEDULE",
    "SEC4_SEEDS",
    "SR_ONLY",
    "SWEEP_EXPERIMENTS",
    "TABLE2",
    "TINY",
    "TINY_MODEL",
    "TINY_RUN",
    "TWIN_ITERS",
    "TWIN_SCHEDULE",
    "Condition",
    "DamagedResultError",
    "Experiment",
    "ExperimentError",
    "Measure",
    "Run",
    "bilinear_base_psnr",
    "dcn",
    "dcn_reference",
    "decomposed",
    "decomposed_on_grid",
    "diversity",
    "experiment",
    "flow_tolerance",
    "held_out_scenes",
    "load_model",
    "load_results",
    "load_sweep",
    "main",
    "masks",
    "offsets_vs_flow",
    "paired",
    "plan",
    "progress",
    "progress_table",
    "psnr_real",
    "read_result",
    "roc_auc",
    "run_experiment",
    "summarize",
    "sweep_status",
    "table2_model",
    "with_overrides",
    "zero_offsets",
]
