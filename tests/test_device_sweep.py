"""scripts/device_sweep.py: the runs of several experiments in priority order, K at a time, until
a deadline, and their results packed (a GPU loan's one command), on tiny models on the CPU."""

from __future__ import annotations

import importlib.util
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device_sweep.py"


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("device_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(tmp_path, *extra):
    tiny = {"model.num_feat": 8, "model.num_reconstruct_block": 1, "model.num_extract_block": 1,
            "data.patch_size": 8, "data.batch_size": 2, "data.num_scenes": 1, "data.val_clips": 1,
            "data.val_frames": 1, "train.val_every": 10**6, "train.ckpt_every": 2}
    args = ["--device", "cpu", "--jobs", "2", "--profile", "quick", "--tag", "smoke",
            "--only-experiments", "fig9",
            "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    for k, v in tiny.items():
        args += ["--set", f"{k}={v!r}"]
    for m in ("offsets_vs_flow", "diversity"):
        args += ["--option", f"{m}.num_scenes=1", "--option", f"{m}.size=32"]
    return args + ["--option", "psnr_real.clips=('carphone/shot0',)",
                   "--option", "psnr_real.frames_per_clip=1", *extra]


def test_the_order_puts_the_baseline_and_its_comparisons_first(sweep):
    order = [(r.experiment.name, r.name) for r, _ in sweep.queue()]
    assert order[:3] == [("fig9", "n1-s0"), ("fig9", "n1-s1"), ("fig9", "n1-s2")]
    assert len(order) == len(set(order))  # no run twice
    sec4 = {(r.experiment.name, r.name) for name in ("table1", "fig9", "fig16", "table4", "fig17", "table3")
            for r in sweep.plan(name)}
    assert sec4 <= set(order) and set(order[:len(sec4)]) == sec4  # all of Sec. 4 before Table 2


def test_runs_in_order_and_packs_what_finished(sweep, tmp_path, capsys):
    target = tmp_path / "out.tar.gz"
    assert sweep.main(_args(tmp_path, "--set", "train.total_iter=2", "--first", "3", "--deadline", "600",
                            "--pack", str(target))) == 0
    with tarfile.open(target) as tar:
        names = sorted(tar.getnames())
    assert names == ["results/fig9-smoke/n1-s0.json", "results/fig9-smoke/n1-s1.json",
                     "results/fig9-smoke/n1-s2.json", "results/fig9-smoke/weights/n1-s0.pt"]
    assert "3 runs finished" in capsys.readouterr().out


def test_the_deadline_stops_the_runs_with_nothing_half_packed(sweep, tmp_path, capsys):
    target = tmp_path / "out.tar.gz"
    code = sweep.main(_args(tmp_path, "--set", "train.total_iter=100000", "--first", "1", "--deadline", "8",
                            "--pack", str(target)))
    out = capsys.readouterr().out
    assert code == 1 and "deadline after" in out and "0 runs finished" in out
    with tarfile.open(target) as tar:
        assert tar.getnames() == []


def test_table2_runs_each_familys_baseline_then_its_largest_n_first(sweep):
    order = [r.name for r, _ in sweep.queue(experiments=("table2",))]
    assert len(order) == len(sweep.plan("table2")) == len(set(order))
    conditions = list(dict.fromkeys(name.rsplit("-s", 1)[0] for name in order))
    assert conditions[:4] == ["tdan-n1", "flownet-n1", "tdan-n25", "flownet-n3"]
