"""dalign_nb.experiments: the runner through the command line (two runs at once, Ctrl-C,
resume, skip, provenance, kept weights), ``offsets_vs_flow`` against values computed here from
the exact flows, and ``zero_offsets`` against a model whose offset branch is zeroed by hand."""

from __future__ import annotations

import copy
import datetime
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dalign_nb import experiments as E
from dalign_nb.__main__ import main
from dalign_nb.config import get_profile
from dalign_nb.data import SceneConfig, validation_clips
from dalign_nb.experiments import runner
from dalign_nb.metrics import quantize
from dalign_nb.models.edvr import EDVR, LEVELS

ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}


# --------------------------------------------------------------------------- the table


def test_overrides_follow_dotted_paths_and_bring_the_schedule_along():
    p = E.with_overrides(get_profile("quick"), {"train.total_iter": 7, "model.num_feat": 4,
                                                "data.patch_size": 8})
    assert (p.train.total_iter, p.train.periods, p.model.num_feat, p.data.patch_size) == (7, (7,), 4, 8)
    with pytest.raises(ValueError, match="no field 'train.bogus'"):
        E.with_overrides(p, {"train.bogus": 1})


def test_one_json_writer_results_null_what_json_cannot_hold(tmp_path):
    """``io.write_json`` writes the trainer's histories as they are (Python reads NaN back); the
    experiments' result files, strict JSON, carry NaN and infinity as null."""
    from dalign_nb.experiments.files import write_json as write_result
    from dalign_nb.io import write_json

    obj = {"loss": math.nan, "psnr": [30.5, (math.inf, 2)]}
    write_json(tmp_path / "history.json", obj)
    write_result(tmp_path / "result.json", obj)
    assert (tmp_path / "history.json").read_text().endswith("]\n}\n")
    history = json.loads((tmp_path / "history.json").read_text())
    assert math.isnan(history["loss"]) and history["psnr"] == [30.5, [math.inf, 2]]
    assert json.loads((tmp_path / "result.json").read_text()) == {"loss": None, "psnr": [30.5, [None, 2]]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json", "result.json"]  # no temporaries


def test_one_override_rule_for_the_command_line_and_the_experiments():
    """``--set`` text goes through ``parse_value``; a stored profile is another run exactly where
    the trainer would refuse to resume it."""
    from dalign_nb.config import parse_sets, parse_value

    assert [parse_value(t) for t in ("2e-4", "False", "(600,)", "None", "flow", "'flow'")] == \
        [2e-4, False, (600,), None, "flow", "flow"]
    assert [parse_value(t) for t in ("true", "FALSE", "none", "null")] == [True, False, None, None]
    assert parse_sets(["train.lr=2e-4", "model.alignment.kind=flow", "train.lr=1e-3"]) == \
        {"train.lr": 1e-3, "model.alignment.kind": "flow"}
    assert parse_sets(None) == {}
    for bad, reserved in (("train.lr", ()), ("name=x", ("name",))):
        with pytest.raises(ValueError) as exc:
            parse_sets(["train.lr=1", bad], reserved)
        assert exc.value.args == (bad,)
    quick = get_profile("quick")
    with pytest.raises(ValueError, match="train.cpu_amp is True or False, got 'yes'"):
        quick.with_overrides({"train.cpu_amp": "yes"})
    assert quick.with_overrides(parse_sets(["train.cpu_amp=true"])).train.cpu_amp is True
    other = quick.with_overrides({"train.total_iter": 50, "model.num_feat": 8, "description": "x"})
    assert other.changes_from(quick) == (["model.num_feat"], ["train.periods", "train.total_iter"])
    assert other.resume_conflicts(quick) == ["model.num_feat"]
    with pytest.raises(ValueError, match="no field 'model.kind'.*'model.alignment.kind'"):
        quick.with_overrides({"model.kind": "flow"})


def test_fig5_plan_is_nine_conditions_times_three_seeds_of_a_single_flow():
    conditions = ("aligning", "sr_only", "warmup_then_sr", "edvr_sr_only",
                  "round2", "round2_wte_only", "round2_census_only", "round2_sr_only", "round2_cost_volume")
    runs = E.plan("fig5")
    assert [r.name for r in runs] == [f"{c}-s{s}" for c in conditions for s in (0, 1, 2)]
    assert [r.profile.train.seed for r in runs] == [0, 1, 2] * len(conditions)
    assert {r.profile.model.alignment.kind for r in runs} == {"flow"}
    signals = {r.condition: (r.profile.train.photometric_weight > 0, r.profile.train.photometric_until,
                             r.profile.model.residual_offsets, r.profile.model.warp_then_estimate,
                             r.profile.train.photometric_penalty, r.profile.train.smoothness_weight > 0,
                             r.profile.model.cost_volume)
               for r in runs}
    assert signals == {"aligning": (True, 0, True, False, "rgb", False, 0),
                       "sr_only": (False, 0, True, False, "rgb", False, 0),
                       "warmup_then_sr": (True, 1000, True, False, "rgb", False, 0),
                       "edvr_sr_only": (False, 0, False, False, "rgb", False, 0),
                       "round2": (True, 0, True, True, "census", True, 0),
                       "round2_wte_only": (True, 0, True, True, "rgb", False, 0),
                       "round2_census_only": (True, 0, True, False, "census", True, 0),
                       "round2_sr_only": (False, 0, True, True, "census", False, 0),
                       "round2_cost_volume": (True, 0, True, True, "census", True, 3)}
    # every run of one seed trains the same data order and schedule: only the named fields differ
    s0 = {r.condition: r.profile for r in runs if r.profile.train.seed == 0}
    schedules = {(p.train.total_iter, p.data.batch_size, p.data.patch_size) for p in s0.values()}
    assert schedules == {(3000, 4, 32)}
    assert not any(r.profile.train.cpu_amp for r in runs)  # round 2's runs, begun in float32, keep it
    quick = E.plan("fig5", profile="quick", seeds=[5], overrides={"train.total_iter": 3})
    assert [(r.name, r.profile.name, r.profile.train.total_iter) for r in quick] == \
        [(f"{c}-s5", "quick", 3) for c in conditions]


# --------------------------------------------------------------------------- zero offsets


def _offset_rows(module: nn.Module) -> int:
    """How many leading output channels of ``module.conv_offset`` are offsets (not masks)."""
    n = module.conv_offset.out_channels
    return n - n // 3 if getattr(module, "modulated", False) else n


@pytest.mark.parametrize("kind", ["dcn", "flow"])
def test_zero_offsets_is_the_model_with_its_offset_branch_zeroed(kind):
    torch.manual_seed(0)
    model = EDVR(num_feat=8, num_frame=3, deformable_groups=2, num_extract_block=1,
                 num_reconstruct_block=1, with_tsa=False, alignment=kind).eval()
    aligners = [m for m in model.modules() if hasattr(m, "conv_offset") and hasattr(m, "align")]
    assert len(aligners) == 4  # L3, L2, L1, cascade
    for m in aligners:  # offsets of about a pixel
        nn.init.normal_(m.conv_offset.weight, std=0.05)
        nn.init.normal_(m.conv_offset.bias, std=1.0)
    x = torch.rand(1, 3, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
        with E.zero_offsets(model):
            out0, aux0 = model(x, return_aux=True)
        out1, aux1 = model(x, return_aux=True)  # weights restored
        by_hand = copy.deepcopy(model)
        for m in by_hand.modules():
            if hasattr(m, "conv_offset") and hasattr(m, "align"):
                rows = _offset_rows(m)
                m.conv_offset.weight[:rows] = 0
                m.conv_offset.bias[:rows] = 0
        ref, aux_ref = by_hand(x, return_aux=True)
    for level in LEVELS:
        assert aux0["offsets"][level].abs().max() == 0
        assert aux1["offsets"][level].abs().max() > 0.1
        if kind == "dcn" and level != "cascade":  # masks are kept (the cascade's branch sees
            torch.testing.assert_close(aux0["masks"][level], aux1["masks"][level])  # aligned L1)
    torch.testing.assert_close(out0, ref)
    assert torch.equal(out1, before) and (out1 - out0).abs().max() > 1e-5


# --------------------------------------------------------------------------- offsets vs flow


class _Branch(nn.Module):
    """An identity 1x1 ``conv_offset`` that ``zero_offsets`` finds (it has ``align``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_offset = nn.Conv2d(channels, channels, 1, bias=False)
        with torch.no_grad():
            self.conv_offset.weight.copy_(torch.eye(channels)[:, :, None, None])

    def align(self, *args):
        raise NotImplementedError


class Oracle(nn.Module):
    """Offsets = the exact flow of each scene (dy, dx) + ``shift``, and a second offset 5 px
    off it; the output is bilinear, brightened by 0.02 when every offset is zero. A clip it
    does not know (the centre frame repeated: ``psnr_reference_only``) gets zero offsets."""

    def __init__(self, clips, shift):
        super().__init__()
        self.branch, self.targets = _Branch(4), {}
        for clip in clips:
            first = clip.flow.flip(1) + torch.tensor(shift).view(1, 2, 1, 1)  # (T, 2, h, w) as (dy, dx)
            self.targets[float(clip.lq.sum())] = torch.cat([first, first + 5.0], dim=1)  # (T, 4, h, w)

    def forward(self, x, return_aux=False):
        target = self.targets.get(float(x[0].sum()), torch.zeros(x.shape[1], 4, *x.shape[-2:]))
        offsets = self.branch.conv_offset(target)  # (T, 4, h, w)
        out = F.interpolate(x[:, x.shape[1] // 2], scale_factor=4, mode="bilinear", align_corners=False)
        out = out + 0.02 * float(offsets.abs().max() == 0)
        return (out, {"offsets": {"l1": offsets[None]}}) if return_aux else out


def _psnr(x, y) -> float:
    return 10 * math.log10(1 / float(((quantize(x).double() - y.double()) ** 2).mean()))


def test_offsets_vs_flow_against_the_exact_flow():
    """A closest offset 0.6 px off the flow in x and y: end-point error sqrt(0.72) = 0.849 px
    everywhere (all within 1 px), but 1.2 px in the l1 norm (none within 1 px)."""
    config = SceneConfig(height=64, width=64, num_frames=3)
    clips = validation_clips("synthetic", num_scenes=2, seed=0, scene_config=config)
    res = E.offsets_vs_flow(Oracle(clips, (0.6, 0.6)), get_profile("quick"), num_scenes=2, size=64)
    epe = math.sqrt(0.72)
    valid = torch.stack([~c.occlusion[k] for c in clips for k in (0, 2)])  # (4, 16, 16)
    flows = torch.stack([c.flow[k] for c in clips for k in (0, 2)])  # (4, 2, 16, 16)
    shifted = flows.flip(1) + 0.6
    assert res["num_pixels"] == int(valid.sum()) > 100
    assert res["within_1px"] == 1.0 and res["within_1px_l1"] == 0.0
    assert res["epe"] == pytest.approx(epe, abs=1e-5) and res["median_epe"] == pytest.approx(epe, abs=1e-5)
    assert res["mean_flow"] == pytest.approx(float(flows.norm(dim=1)[valid].mean()), rel=1e-5)
    assert res["mean_offset"] == pytest.approx(float(shifted.norm(dim=1)[valid].mean()), rel=1e-5)
    assert res["mean_flow"] > 1.0  # the scenes move
    hist = res["histogram"]
    assert hist["counts"][3] == res["num_pixels"] and sum(hist["counts"]) == res["num_pixels"]  # [0.75, 1)
    assert hist["edges"][3:5] == [0.75, 1.0] and hist["above"] == 0
    assert res["by_frame"]["-1"]["num_pixels"] + res["by_frame"]["1"]["num_pixels"] == res["num_pixels"]
    gts = [c.gt[1][None] for c in clips]
    bilinear = [F.interpolate(c.lq[1][None], scale_factor=4, mode="bilinear", align_corners=False)
                for c in clips]
    aligned = np.mean([_psnr(b, g) for b, g in zip(bilinear, gts)])
    zero = np.mean([_psnr(b + 0.02, g) for b, g in zip(bilinear, gts)])
    assert res["psnr"] == pytest.approx(aligned, abs=1e-9)
    assert res["psnr_zero_offsets"] == pytest.approx(zero, abs=1e-9)
    assert res["psnr_gain_over_zero"] == pytest.approx(aligned - zero, abs=1e-9) and aligned > zero
    assert res["psnr_bilinear_base"] == pytest.approx(aligned, abs=1e-9)  # the oracle's output is the base
    assert res["psnr_reference_only"] == pytest.approx(zero, abs=1e-9)  # the centre frame thrice: no offsets
    assert res["psnr_gain_over_reference_only"] == pytest.approx(aligned - zero, abs=1e-9)
    far = E.offsets_vs_flow(Oracle(clips, (0.0, 1.5)), get_profile("quick"), num_scenes=2, size=64)
    assert far["within_1px"] == 0.0 and far["epe"] == pytest.approx(1.5, abs=1e-5)


# --------------------------------------------------------------------------- the runner


def _json(path):
    return json.loads(path.read_text())


def _head() -> str | None:
    res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=E.ROOT, capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else None


@pytest.fixture
def torch_threads():
    """The in-process command line sets torch's thread count (``--threads``): put it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_cli_runs_two_at_once_is_interrupted_resumes_then_skips(tmp_path, capsys, torch_threads):
    runs, results = tmp_path / "runs" / "tiny", tmp_path / "results" / "tiny"
    # One thread: a tiny model gains nothing from two, and loses much on a busy machine.
    # Long enough that neither run finishes before both have checkpointed (on a quiet machine the
    # second run's first checkpoint once came after the first run's last iteration of 20).
    iters = 200
    args = ["experiment", "tiny", "--set", f"train.total_iter={iters}", "--no-progress", "--threads", "1",
            "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    names = ("flow-s0", "flow-s1")

    # Sitting 1: both runs at once in subprocesses; Ctrl-C once both have checkpointed.
    # A shell's background jobs (nohup, CI runners) start with SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored: give the runner the default disposition, as a terminal would.
    proc = subprocess.Popen([sys.executable, "-m", "dalign_nb", *args, "--jobs", "2"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not all((runs / n / "checkpoint.pt").exists() for n in names):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, out
    stopped = {}
    for n in names:
        h = _json(runs / n / "history.json")
        assert h["status"] == "SIGINT" and 0 < h["iteration"] < iters, (n, h["iteration"], out)
        stopped[n] = h["iteration"]
    assert not list(results.glob("*.json"))

    # Sitting 2: resumes both from their checkpoints, measures, records.
    assert main(args) == 0
    assert "resume at" in capsys.readouterr().out
    for n in names:
        res = _json(results / f"{n}.json")
        k = stopped[n]
        assert [(e["iter"], e["event"]) for e in res["train"]["events"]] == \
            [(0, "start"), (k, "interrupted"), (k, "resume"), (iters, "done")]
        prov = res["provenance"]
        assert [(s["from_iter"], s["to_iter"], s["status"]) for s in prov["sittings"]] == \
            [(0, k, "SIGINT"), (k, iters, "done")]
        assert prov["command"] == shlex.join(["python", "-m", "dalign_nb", *args])
        assert prov["profile"]["train"]["seed"] == res["seed"] == int(n[-1])
        assert prov["profile"]["train"]["total_iter"] == prov["iterations"] == iters
        assert res["train"]["iterations"] == iters
        assert prov["profile"]["model"]["num_feat"] == 8 and prov["device"] == "cpu"
        assert prov["git_commit"] == _head()
        assert isinstance(prov["git_dirty"], bool) if _head() else prov["git_dirty"] is None
        assert prov["torch"] == torch.__version__ and prov["train_wall_s"] > 0
        assert datetime.datetime.fromisoformat(prov["date"]).tzinfo is not None
        m = res["measures"]["offsets_vs_flow"]
        assert m["num_pixels"] > 100 and 0 <= m["within_1px"] <= 1 and m["mean_flow"] > 1.0
        assert sum(m["histogram"]["counts"]) + m["histogram"]["above"] == m["num_pixels"]
    assert (results / "weights" / "flow-s0.pt").exists() and not (results / "weights" / "flow-s1.pt").exists()

    # Sitting 3: nothing left to do; the results stay as they were.
    before = {n: (results / f"{n}.json").read_bytes() for n in names}
    assert main(args) == 0
    assert capsys.readouterr().out.count("finished, skipped") == 2
    assert {n: (results / f"{n}.json").read_bytes() for n in names} == before
    assert main(args + ["--list"]) == 0
    assert capsys.readouterr().out.split() == ["flow-s0", "done", "flow-s1", "done"]

    # Another configuration under the same names is refused, not mixed in.
    assert main(args + ["--set", "model.num_feat=4"]) == 1
    assert "another configuration (differs in model.num_feat)" in capsys.readouterr().err

    # A lengthened schedule makes the results stale: the run resumes at iters and is measured again.
    assert main(args + ["--set", f"train.total_iter={iters + 2}", "--only", "flow-s0"]) == 0
    res = _json(results / "flow-s0.json")
    assert res["provenance"]["iterations"] == iters + 2 and res["train"]["events"][-2:] == [
        {"iter": iters, "event": "resume", "changed": ["train.periods", "train.total_iter"]},
        {"iter": iters + 2, "event": "done"}]
    assert (results / "flow-s1.json").read_bytes() == before["flow-s1"]

    # What notebooks read: the results and the kept fp16 weights.
    table = E.summarize(E.load_results("tiny", tmp_path / "results"), "provenance.iterations")
    assert table == {"flow": {"mean": iters + 1.0, "std": math.sqrt(2), "n": 2, "seeds": [0, 1],
                              "values": [iters + 2.0, float(iters)]}}
    model = E.load_model("tiny", "flow-s0", tmp_path / "results")
    full = torch.load(runs / "flow-s0" / "model.pt", weights_only=True)["params"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, full[key], atol=1e-3, rtol=1e-3)


def test_provenance_names_the_code_the_process_started_with(tmp_path, monkeypatch, torch_threads):
    """A run ends an hour after it started; commits made meanwhile are not the code it ran."""
    states = iter([{"git_commit": "a" * 40, "git_dirty": False}]
                  + [{"git_commit": "b" * 40, "git_dirty": True}] * 99)
    monkeypatch.setattr(runner, "_git", lambda: next(states))
    monkeypatch.setattr(runner, "_CODE", None)
    status = E.run_experiment("tiny", seeds=[0], runs_dir=tmp_path / "runs", results_dir=tmp_path / "results",
                              progress=False, overrides={"train.total_iter": 2})
    assert status == {"flow-s0": "done"}
    prov = _json(tmp_path / "results" / "tiny" / "flow-s0.json")["provenance"]
    assert (prov["git_commit"], prov["git_dirty"]) == ("a" * 40, False)
    assert [(s["git_commit"], s["git_dirty"]) for s in prov["sittings"]] == [("a" * 40, False)]
    # where and how it trained: the CPU by name, and the trainer's precision record
    cpu = torch.backends.cpu.get_cpu_capability()
    assert prov["device"] == "cpu" and prov["device_name"].endswith(f"({cpu})")
    assert prov["precision"] == {"autocast": None, "channels_last": False, "why": "float32"}
    assert prov["sittings"][0]["precision"] == prov["precision"]
    assert prov["sittings"][0]["device_name"] == prov["device_name"]


def test_paired_differences_over_the_shared_seeds_by_hand():
    rows = [{"condition": c, "seed": s, "measures": {"m": {"psnr": v}}}
            for c, s, v in (("a", 0, 30.0), ("a", 1, 31.0), ("a", 2, 29.0), ("b", 0, 29.5), ("b", 1, 30.0))]
    p = E.paired(rows, "measures.m.psnr", "a", "b")
    assert (p["n"], p["seeds"], p["values"]) == (2, [0, 1], [0.5, 1.0])
    assert p["mean"] == 0.75 and p["std"] == pytest.approx(math.sqrt(0.125))
    one = E.paired(rows[:1] + rows[3:4], "measures.m.psnr", "a", "b")
    assert one["n"] == 1 and one["mean"] == 0.5 and math.isnan(one["std"])


def test_load_results_of_a_sweep_not_yet_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="experiment fig9"):
        E.load_results("fig9", tmp_path)
    assert E.load_results("fig9", tmp_path, missing_ok=True) == []


# --------------------------------------------------------------------------- the second measure set


def test_motion_sets_of_an_untrained_model_score_the_share_of_slow_pixels_and_dis_beside_it():
    """An untrained EDVR's offsets are all zero, so its end-point error is |flow|: its share
    within 1 px is the share of visible pixels moving less than 1 px, computed here by hand;
    DIS, on real footage under a global motion, finds nearly all of it."""
    from dalign_nb.experiments.measures import held_out_scenes, motion_sets
    from dalign_nb.models import EDVR

    profile = get_profile("align2").with_overrides({"model.num_feat": 8, "model.num_extract_block": 1,
                                                    "model.num_reconstruct_block": 1})
    torch.manual_seed(0)
    model = EDVR.from_config(profile.model)
    out = motion_sets(model, profile, num_scenes=1, size=64, scene_seeds=(1,))

    def slow_share(clips):
        c = clips[0].lq.shape[0] // 2
        mags = [clip.flow[k].norm(dim=0)[~clip.occlusion[k]] for clip in clips
                for k in range(clip.lq.shape[0]) if k != c]
        return float((torch.cat(mags) < 1).float().mean())

    assert out["within_1px_fig5"] == pytest.approx(slow_share(held_out_scenes(profile, 1, 64, 0)))
    assert out["within_1px_other_seeds"] == pytest.approx(slow_share(held_out_scenes(profile, 1, 64, 1)))
    assert out["within_1px_fig5"] < 0.3  # the scenes move 2-6 px per frame
    assert out["dis_within_1px_real_global"] > 0.9
    assert out["by_seed"]["1"] == out["other_seeds"]
    # round 2's conditions add the second set; the align runs (no checkpoints kept) are done without it
    measured = {r.condition: r.measures for r in E.plan("fig5")}
    assert measured["round2"] == ("offsets_vs_flow", "motion_sets")
    assert measured["aligning"] == ("offsets_vs_flow",)


def test_progress_counts_committed_runs_of_the_plans_schedule(tmp_path):
    """Done: a result of the plan's iteration count; a shorter one (stale) does not count."""
    folder = tmp_path / "table4"
    folder.mkdir()
    full = E.plan("table4")[0].profile.train.total_iter
    for seed, iters, wall in ((0, full, 3000.0), (1, full, 2400.0), (2, full // 5, 600.0)):
        result = {"run": f"image_warping-s{seed}", "condition": "image_warping", "seed": seed, "measures": {},
                  "train": {"iterations": iters}, "provenance": {"profile": {}, "train_wall_s": wall}}
        (folder / f"image_warping-s{seed}.json").write_text(json.dumps(result))
    rows = E.progress(["table4", "fig17"], tmp_path)
    assert rows[0] | {"train_hours": round(rows[0]["train_hours"], 6)} == {
        "experiment": "table4", "done": 2, "total": 3, "conditions": {"image_warping": (2, 3)},
        "train_hours": 1.5, "median_minutes": 45.0}
    assert (rows[1]["done"], rows[1]["total"], rows[1]["median_minutes"]) == (0, 4, None)
    assert rows[1]["conditions"] == {"dcnv2-k3": (0, 3), "dcnv2-k5": (0, 1)}
    table = E.progress_table(rows)
    assert table[0] == ["table4", "2 / 3", "image_warping 2/3", "1.5 h", "45 min"]
    assert table[1][1:] == ["0 / 4", "dcnv2-k3 0/3, dcnv2-k5 0/1", "-", "-"]
    assert all(len(row) == len(E.PROGRESS_HEADERS) for row in table)


def test_load_sweep_reads_sec4_under_the_sweeps_suffix_and_fig5_table2_as_they_are(tmp_path):
    for name in ("fig9-600it", "fig5", "table2"):
        (tmp_path / name).mkdir()
        result = {"run": "n1-s0", "condition": "n1", "seed": 0, "measures": {}, "train": {},
                  "provenance": {"profile": {}}}
        (tmp_path / name / "n1-s0.json").write_text(json.dumps(result))
    for suffix, fig9 in (("", 0), (E.ARCHIVE_600, 1)):
        sweep = E.load_sweep(suffix, tmp_path)
        assert tuple(sweep) == E.SWEEP_EXPERIMENTS
        expected = {**dict.fromkeys(E.SWEEP_EXPERIMENTS, 0), "fig9": fig9, "fig5": 1, "table2": 1}
        assert {k: len(v) for k, v in sweep.items()} == expected


def test_provenance_calls_a_tree_dirty_for_code_not_for_committed_results(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "data" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "data" / "results" / "run.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    assert runner._git()["git_dirty"] is False
    (tmp_path / "data" / "results" / "run.json").write_text('{"remeasured": true}\n')  # a sweep's result
    assert runner._git()["git_dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert runner._git()["git_dirty"] is True


def test_sweep_status_prints_progress_then_the_verdicts_that_read_the_experiments(tmp_path):
    text = E.sweep_status(("table4",), ("fig9", "table4"), tmp_path)
    progress, verdicts = text.split("\n\n")
    assert "| fig9 | 0 / 12 |" in progress and "| table4 | 0 / 3 | image_warping 0/3 | - | - |" in progress
    assert "Sec. 4's baseline" in verdicts and "Table 4: feature - image warping" in verdicts
    assert "Fig. 9" not in verdicts  # rows of fig9 alone are not table4's


def test_bilinear_base_psnr_reads_the_record_or_recomputes_it_on_the_same_scenes():
    from dalign_nb.metrics import bilinear_base, psnr, quantize

    settings = {"num_scenes": 1, "size": 64, "scene_seed": 3}
    result = {"measures": {"offsets_vs_flow": {"settings": settings}}}
    clip = validation_clips("synthetic", num_scenes=1, seed=3, scene_config=SceneConfig(height=64, width=64,
                                                                                         num_frames=3))[0]
    expected = psnr(quantize(bilinear_base(clip.lq[1][None])), clip.gt[1][None])
    assert E.bilinear_base_psnr(result) == pytest.approx(expected, abs=1e-6)
    result["measures"]["offsets_vs_flow"]["psnr_bilinear_base"] = 21.5
    assert E.bilinear_base_psnr(result) == 21.5
