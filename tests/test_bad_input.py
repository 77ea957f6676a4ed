"""Bad input, tried as a new user would: a damaged result file, a missing dataset, --jobs 0.
Each stops with one line that names what is wrong (no traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from dalign_nb import experiments as E
from dalign_nb.__main__ import main
from dalign_nb.experiments.files import ROOT

DAMAGE = {
    "truncated": ('{\n "format": 1,\n "run": "flow-s0",\n "measures": {', "not JSON (Expecting"),
    "no provenance": (json.dumps({"run": "flow-s0", "condition": "flow", "seed": 0, "measures": {},
                                  "train": {}}), "missing 'provenance'"),
    "not an object": ("[1, 2]", "a JSON list, not an object"),
}


@pytest.fixture
def torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _damaged(tmp_path, text: str):
    folder = tmp_path / "results" / "tiny"
    folder.mkdir(parents=True)
    (folder / "flow-s0.json").write_text(text)
    args = ["experiment", "tiny", "--no-progress", "--threads", "1", "--set", "train.total_iter=2",
            "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    return folder / "flow-s0.json", args


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_result_stops_the_experiment_with_one_line_naming_the_file(damage, tmp_path, capsys):
    text, what = DAMAGE[damage]
    path, args = _damaged(tmp_path, text)
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: {path}: damaged result file") and what in err
    assert "--only flow-s0 --fresh" in err and "Traceback" not in err
    with pytest.raises(E.DamagedResultError) as refused:
        E.load_results("tiny", tmp_path / "results")
    assert str(refused.value).startswith(f"{path}: damaged result file") and what in str(refused.value)


def test_list_marks_the_damaged_run_and_goes_on(tmp_path, capsys):
    path, args = _damaged(tmp_path, DAMAGE["truncated"][0])
    assert main([*args, "--list"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("flow-s0") and f"damaged: {path}" in lines[0]
    assert lines[1].split() == ["flow-s1", "pending"]


def test_fresh_redoes_the_damaged_run_alone(tmp_path, capsys, torch_threads):
    path, args = _damaged(tmp_path, DAMAGE["no provenance"][0])
    assert main([*args, "--only", "flow-s0", "--fresh"]) == 0
    (result,) = E.load_results("tiny", tmp_path / "results")
    assert (result["run"], result["provenance"]["iterations"]) == ("flow-s0", 2)
    assert not (tmp_path / "results" / "tiny" / "flow-s1.json").exists()


@pytest.mark.skipif((ROOT / "data" / "REDS").exists(), reason="REDS is present: nothing is missing")
def test_train_without_reds_says_so_in_one_line(tmp_path):
    """As a user sees it (stdout and stderr of the command, warnings included)."""
    cmd = [sys.executable, "-m", "dalign_nb", "train", "--profile", "paper", "--out", str(tmp_path / "run"),
           "--no-progress"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: REDS: expected")
    assert "data/REDS" in res.stderr


def test_jobs_and_threads_below_one_are_refused(tmp_path, capsys):
    for flag in ("--jobs", "--threads"):
        with pytest.raises(SystemExit) as exit_:
            main(["experiment", "tiny", flag, "0", "--results", str(tmp_path)])
        assert exit_.value.code == 2 and f"argument {flag}: must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="jobs and threads must be >= 1, got jobs=0"):
        E.run_experiment("tiny", jobs=0, results_dir=tmp_path, runs_dir=tmp_path)
