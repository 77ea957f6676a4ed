"""The runner: train (or resume) each run of an experiment, measure it, record it with provenance.

``run_experiment(name)`` skips finished runs, resumes interrupted ones exactly from their
checkpoints (Ctrl-C stops after the current iteration and keeps them), refuses to mix a run
with results or checkpoints of another configuration (``Profile.changes_from``: the trainer's
resume rule), and with ``jobs > 1`` runs several at once in subprocesses (``parallel``). Each
finished run is written to ``data/results/<experiment>/<run>.json`` with its provenance: the
command, the profile, the git commit the process started with, the seed, device, torch
version, threads, wall times and every sitting of the trainer.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
import subprocess
import sys
import time

import torch

from dalign_nb.config import Profile

from .catalogue import Run, plan
from .files import (
    ROOT,
    SITTINGS,
    ExperimentError,
    Paths,
    read_json,
    read_result,
    save_weights,
    write_json,
)
from .files import paths as experiment_paths
from .measures import MEASURES
from .parallel import run_parallel

__all__ = ["child_status", "run_experiment", "run_state"]


def _plain(profile: Profile) -> dict:
    return json.loads(json.dumps(profile.to_dict()))  # tuples -> lists, as stored


def _changes(profile: Profile, saved: dict) -> tuple[list[str], list[str]]:
    """Dotted fields in which ``profile`` differs from a stored one: (those that make it another
    run, those a resumed run may change -- ``config.RESUMABLE``: schedule, logging, validation)."""
    try:
        theirs = Profile.from_dict(saved)
    except (KeyError, TypeError, ValueError) as exc:
        return [f"unreadable profile ({type(exc).__name__}: {exc})"], []
    return profile.changes_from(theirs)


def _git() -> dict:
    """The commit checked out and whether a tracked file differs from it (``git_dirty``), results
    aside: ``data/results`` is what a sweep writes and commits while its other runs train, not
    code that a run executes."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)data/results")
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    if head.returncode:
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": head.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}


_CODE: dict | None = None  # the repository's state when this process started running experiments


def _code_state() -> dict:
    """``_git()`` as it was the first time this process asked: the code that runs is the code
    the process loaded, not whatever the working tree holds when a run ends an hour later."""
    global _CODE
    if _CODE is None:
        _CODE = _git()
    return _CODE


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _applicable(run: Run) -> list[str]:
    """The experiment's measurements that apply to this run's model (``Measure.applies``): a
    finished run missing only others is done."""
    return [m for m in run.measures if MEASURES[m].applies(run.profile)]


def run_state(run: Run, paths: Paths) -> str:
    """"done"; "measure" (some measurement missing); "stale" (results of a shorter schedule,
    say: resume and measure again); "resume at N"; "pending"."""
    res = read_result(paths.result(run))
    if res is not None:
        if _changes(run.profile, res["provenance"]["profile"])[1]:
            return "stale"
        return "done" if set(_applicable(run)) <= set(res["measures"]) else "measure"
    history = read_json(paths.run_dir(run) / "history.json")
    return f"resume at {history['iteration']}" if history else "pending"


def _check_conflicts(run: Run, paths: Paths) -> None:
    """Refuse to mix a run with results or checkpoints of another configuration (fields a
    resumed run may not change, as the trainer refuses them)."""
    res = read_result(paths.result(run))
    history = read_json(paths.run_dir(run) / "history.json")
    for what, path, saved in (("results", paths.result(run), res and res["provenance"]["profile"]),
                              ("a run", paths.run_dir(run), history and history["profile"])):
        conflicts = _changes(run.profile, saved)[0] if saved else []
        if conflicts:
            raise ExperimentError(
                f"{path} holds {what} of another configuration (differs in {', '.join(conflicts[:6])}). "
                "Use --tag to keep both, or --fresh to replace it.")


def _fresh(run: Run, paths: Paths) -> None:
    for path in (paths.result(run), paths.weights(run)):
        path.unlink(missing_ok=True)
    folder = paths.run_dir(run)
    for name in ("checkpoint.pt", "history.json", "model.pt", SITTINGS):
        (folder / name).unlink(missing_ok=True)


def _train(run: Run, paths: Paths, device, stop_at, progress):
    """One sitting of the trainer, recorded in ``sittings.json``; returns the ``TrainResult``."""
    from dalign_nb.train import train

    folder = paths.run_dir(run)
    before = (read_json(folder / "history.json") or {}).get("iteration", 0)
    t0 = time.perf_counter()
    res = train(run.profile, folder, resume=True, stop_at=stop_at, device=device, progress=progress)
    sittings = read_json(folder / SITTINGS) or []
    if res.iteration > before or not sittings:
        sittings.append({"date": _now(), **_code_state(), "from_iter": before, "to_iter": res.iteration,
                         "wall_s": round(time.perf_counter() - t0, 1), "status": res.status,
                         **_machine(next(res.model.parameters()).device),
                         "precision": res.history.get("precision")})
        write_json(folder / SITTINGS, sittings)
    return res, sittings


def _machine(device: torch.device) -> dict:
    """Where a sitting ran: the device type and its name (the GPU's, or the CPU's model and the
    vector instructions torch uses on it)."""
    if device.type == "cuda":
        return {"device": "cuda", "device_name": torch.cuda.get_device_name(device)}
    capability = torch.backends.cpu.get_cpu_capability()
    return {"device": device.type, "device_name": f"{_cpu_model()} ({capability})"}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def _curve(history: dict, max_points: int = 200) -> list[dict]:
    """The loss and the offset monitor from the training history, at most ``max_points``: each
    level's mean and max |offset| of the logged batch and the largest mean |offset| since the
    previous entry, its share of DCNv2 masks below 0.01 (None without masks) and the share of
    the PCD output above zero (``training.monitor``; Fig. 10 and 19 read them, overflow events
    are in ``train.overflow``). Runs trained before the monitor read masks have None there."""
    entries = history["train"]
    step = max(1, math.ceil(len(entries) / max_points))
    picked = entries[::step] + ([entries[-1]] if entries and (len(entries) - 1) % step else [])

    def per_level(e, key):
        return {lvl: s.get(key) for lvl, s in e.get("offsets", {}).items()}

    return [{"iter": e["iter"], "loss": e["loss"], "terms": e.get("terms", {}), "lr": e["lr"],
             "mean_abs_offset": per_level(e, "mean_abs"), "max_abs_offset": per_level(e, "max_abs"),
             "peak_mean_abs_offset": per_level(e, "peak_mean_abs"), "masks_off": per_level(e, "masks_off"),
             "pcd_positive": e.get("pcd_positive")}
            for e in picked]


def _options(run: Run, extra: dict | None) -> dict:
    """Each measurement's keyword arguments: the experiment's, then ``extra`` (``--option``)."""
    names = run.measures
    return {n: {**run.experiment.options.get(n, {}), **(extra or {}).get(n, {})} for n in names}


def _measure(run: Run, model, names, device, options: dict) -> tuple[dict, float]:
    """The measurements ``names`` of a trained model; None for a measurement that does not apply
    to the run's model (``Measure.applies``: ``masks`` of a model without masks, which an
    experiment may put beside its DCNv2 ones)."""
    t0 = time.perf_counter()
    out = {}
    for name in names:
        m = MEASURES[name]
        applies = m.applies(run.profile)
        out[name] = m.fn(model, run.profile, device=device, **options[name]) if applies else None
    return out, time.perf_counter() - t0


def _record(run: Run, paths: Paths, res, sittings, measures, measure_wall, command, options) -> dict:
    dev = next(res.model.parameters()).device
    weights = None
    if run.seed in run.experiment.keep_weights:
        save_weights(paths.weights(run), res.model)
        weights = paths.weights(run).relative_to(paths.results).as_posix()
    h = res.history
    return {
        "format": 1, "experiment": run.experiment.name, "run": run.name, "condition": run.condition,
        "seed": run.seed, "num_params": sum(p.numel() for p in res.model.parameters()),
        "measures": measures,
        "train": {"status": res.status, "iterations": res.iteration, "val": h["val"], "curve": _curve(h),
                  "events": h["events"], "overflow": h["overflow"]},
        "provenance": {
            "command": command, "profile": _plain(run.profile), **_code_state(), "seed": run.seed,
            **_machine(dev), "precision": h.get("precision"),
            "torch": str(torch.__version__), "python": sys.version.split()[0],
            "threads": torch.get_num_threads(),
            "train_wall_s": round(sum(s["wall_s"] for s in sittings), 1),
            "measure_wall_s": round(measure_wall, 1), "measure_options": options,
            "iterations": res.iteration, "date": _now(),
            "sittings": sittings},
        "weights": weights,
    }


def _headline(result: dict) -> str:
    parts = []
    for name, values in result["measures"].items():
        for key in MEASURES[name].headline if name in MEASURES and values is not None else ():
            v = values.get(key)
            parts.append(f"{key} {v:.4g}" if isinstance(v, float) else f"{key} {v}")
    return ", ".join(parts)


def _run_one(run: Run, paths: Paths, *, device, stop_at, remeasure, progress, command, options=None) -> str:
    """Train (or resume) and measure one run; returns how it ended."""
    old = None if remeasure or run_state(run, paths) == "stale" else read_result(paths.result(run))
    todo = [m for m in run.measures
            if old is None or (m not in old["measures"] and m in _applicable(run))]
    if not todo:
        return "skipped"
    res, sittings = _train(run, paths, device, stop_at, progress)
    if res.status != "done":
        print(f"{run.experiment.name}/{run.name}: {res.status} at iteration {res.iteration}; "
              "checkpoint kept, run again to resume", flush=True)
        return res.status
    options = _options(run, options)
    measures, wall = _measure(run, res.model, todo, device, options)
    if old is not None:
        measures = {**old["measures"], **measures}
    result = _record(run, paths, res, sittings, measures, wall, command, options)
    write_json(paths.result(run), result)
    print(f"{run.experiment.name}/{run.name}: {_headline(result)}", flush=True)
    return "done"


def _child_args(name, run, *, profile, seeds, device, overrides, stop_at, fresh, remeasure, tag,
                paths_args, threads, command, options=None) -> list[str]:
    args = ["experiment", name, "--only", run.name, "--jobs", "1", "--threads", str(threads),
            "--no-progress", "--command", command]
    if profile:
        args += ["--profile", profile]
    if seeds is not None:
        args += ["--seeds", *map(str, seeds)]
    for flag, value in (("--device", device), ("--stop-at", stop_at), ("--tag", tag),
                        ("--runs", paths_args[0]), ("--results", paths_args[1])):
        if value is not None:
            args += [flag, str(value)]
    for key, value in (overrides or {}).items():
        args += ["--set", f"{key}={value!r}"]
    for measure, values in (options or {}).items():
        args += [arg for key, value in values.items() for arg in ("--option", f"{measure}.{key}={value!r}")]
    return args + (["--fresh"] if fresh else []) + (["--remeasure"] if remeasure else [])


def child_status(run: Run, paths: Paths, code: int) -> tuple[str, str]:
    """(status as ``_run_one`` says it, a line for the log) of a run's finished subprocess with
    exit ``code``: what ``run_experiment`` reports for ``--jobs`` and ``scripts/device_sweep.py``
    for its own pool."""
    if code == 0:
        state = run_state(run, paths)
        if state == "done":
            return "done", _headline(read_result(paths.result(run)))
        return "stopped", state
    status = {130: "SIGINT", 143: "SIGTERM"}.get(code, "failed")
    return status, f"{status} (exit code {code}); see {paths.run_dir(run) / 'log.txt'}"


def run_experiment(name: str, *, profile: str | None = None, seeds=None, device=None, jobs: int = 1,
                   overrides: dict | None = None, only=None, stop_at: int | None = None,
                   fresh: bool = False, remeasure: bool = False, tag: str | None = None,
                   runs_dir=None, results_dir=None, progress: bool = True, threads: int | None = None,
                   command: str | None = None, options: dict | None = None) -> dict[str, str]:
    """Run experiment ``name``: skip finished runs, resume interrupted ones, measure, record.

    profile: run every condition on this profile instead (e.g. "quick" for a smoke run);
    seeds: instead of the experiment's; overrides: dotted profile fields for every run;
    only: run names to run; stop_at: stop each run after this iteration (another sitting
    resumes it); fresh: discard the selected runs' results and checkpoints first;
    remeasure: measure finished runs again; tag: keep the results in ``<name>-<tag>``;
    jobs: runs at once, in subprocesses; threads: torch threads per run (this process's are
    set to it; default: all cores, or cores / jobs for each subprocess); options: measurement
    keyword arguments over the experiment's, ``{"offsets_vs_flow": {"num_scenes": 1}}`` (smoke
    runs; recorded in ``provenance.measure_options``, not compared when skipping).
    Returns run name -> "done", "skipped", "stopped", "SIGINT", ... A Ctrl-C stops every run
    after its current iteration with a checkpoint, then raises ``KeyboardInterrupt``.
    """
    if jobs < 1 or (threads is not None and threads < 1):
        raise ValueError(f"jobs and threads must be >= 1, got jobs={jobs}, threads={threads}")
    _code_state()  # the code this process runs with, recorded with every run it finishes
    runs = plan(name, profile=profile, seeds=seeds, overrides=overrides)
    if only:
        unknown = set(only) - {r.name for r in runs}
        if unknown:
            raise ValueError(f"no run {sorted(unknown)} in {name}; runs: {[r.name for r in runs]}")
        runs = [r for r in runs if r.name in only]
    paths = experiment_paths(name, tag, runs_dir, results_dir)
    for run in runs:
        if fresh:
            _fresh(run, paths)
        _check_conflicts(run, paths)
    command = command or f"run_experiment({name!r}, profile={profile!r}, seeds={seeds!r}, " \
                         f"overrides={overrides!r})"
    todo = [r for r in runs if remeasure or run_state(r, paths) != "done"]
    status = {r.name: "skipped" for r in runs if r not in todo}
    for name_ in status:
        print(f"{name}/{name_}: finished, skipped", flush=True)
    if jobs > 1 and len(todo) > 1:
        def child(run, threads):
            return _child_args(name, run, profile=profile, seeds=seeds, device=device, overrides=overrides,
                               stop_at=stop_at, fresh=False, remeasure=remeasure, tag=tag,
                               paths_args=(paths.runs.parent, paths.results.parent), threads=threads,
                               command=command, options=options)
        return {**status, **run_parallel(todo, paths, jobs, child, child_status, run_state, threads)}
    if threads:
        torch.set_num_threads(threads)
    for i, run in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {name}/{run.name}: {run_state(run, paths)}", flush=True)
        status[run.name] = _run_one(run, paths, device=device, stop_at=stop_at, remeasure=remeasure,
                                    progress=progress, command=command, options=options)
        if status[run.name] in ("SIGINT", "SIGTERM"):
            break
    return status
