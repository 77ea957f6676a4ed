"""The trainer: schedule, exact resume, resume with a changed profile, atomic checkpoints,
interruptions, DDP, the TSA stage, the offset monitor, validation (flows, bicubic baseline)."""

import dataclasses
import json
import math
import socket
import warnings

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from skimage.metrics import peak_signal_noise_ratio
from train_helpers import SIGNALS, TinyPatches, ddp_worker, tiny_model, tiny_profile

from dalign_nb import train as T
from dalign_nb.config import PROFILES, Profile, get_profile, profile_name
from dalign_nb.data import imresize
from dalign_nb.models.edvr import EDVR, EDVRConfig
from dalign_nb.training import checkpoint as C
from dalign_nb.training.monitor import OffsetMonitor
from dalign_nb.training.schedule import (
    CosineAnnealingRestartLR,
    build_optimizer,
    build_scheduler,
    lr_groups,
)
from dalign_nb.training.validation import build_data, evaluate


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def _run(tmp, total=8, **kw):
    data = kw.pop("data", None) or TinyPatches()
    return T.train(tiny_profile(total), tmp, model=tiny_model(), train_set=data,
                   val_set=data.val(), progress=False, device="cpu", **kw)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Eight iterations in one go: the reference every interrupted run must reproduce."""
    res = _run(tmp_path_factory.mktemp("straight"))
    return res, _weights(res.model)


# --------------------------------------------------------------------------- schedule and profiles


def test_cosine_restart_matches_basicsr_formula():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1.0)
    sched = CosineAnnealingRestartLR(opt, periods=(3, 4), restart_weights=(1.0, 0.5), eta_min=0.1)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(7):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])

    def expect(t):  # BasicSR: period i holds t <= cumulative_period[i]
        start, period, weight = (0, 3, 1.0) if t <= 3 else (3, 4, 0.5)
        return 0.1 + weight * 0.5 * 0.9 * (1 + math.cos(math.pi * (t - start) / period))

    assert lrs == pytest.approx([expect(t) for t in range(8)], abs=1e-12)
    assert lrs[0] == 1.0 and lrs[3] == pytest.approx(0.1) and lrs[7] == pytest.approx(0.1)
    assert lrs[4] == pytest.approx(0.1 + 0.5 * 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_profiles_are_complete_and_paper_follows_basicsr(monkeypatch):
    assert set(PROFILES) == {"quick", "standard", "align", "align2", "paper"}
    for name in PROFILES:
        p = get_profile(name)
        assert p.name == name and p.description
    paper = get_profile("paper")
    assert (paper.train.lr, paper.train.betas, paper.train.eta_min) == (4e-4, (0.9, 0.99), 1e-7)
    assert paper.train.periods == (50_000, 100_000, 150_000, 150_000, 150_000)
    assert paper.train.restart_weights == (1, 1, 1, 1, 1) and paper.train.total_iter == 600_000
    assert paper.train.tsa_iter == 50_000
    assert (paper.data.patch_size, paper.data.batch_size, paper.model.num_frame) == (64, 16, 5)
    assert (paper.model.num_feat, paper.model.num_reconstruct_block) == (64, 10)  # EDVR-M
    align = get_profile("align")  # the two departures that make alignment learn (issue 8)
    assert align.model.residual_offsets and align.train.photometric_weight > 0
    assert align.data.val_source == "synthetic" and align.model.alignment.kind == "flow"
    round2 = get_profile("align2")  # align plus three named departures, and nothing else changed
    changed = {k for k, v in round2.flat().items() if v != align.flat()[k]} - {"name", "description"}
    assert changed == {"model.warp_then_estimate", "train.photometric_penalty", "train.smoothness_weight",
                       "train.cpu_amp", "train.channels_last"}
    assert round2.model.warp_then_estimate and round2.train.photometric_penalty == "census"
    # the CPU fast path where bfloat16 is native: shown over 3 seeds to learn as float32 does
    assert round2.train.cpu_amp and round2.train.channels_last
    monkeypatch.setenv("DALIGN_PROFILE", "standard")
    assert profile_name() == "standard" and get_profile().name == "standard"
    monkeypatch.setenv("DALIGN_PROFILE", "huge")
    with pytest.raises(ValueError, match="DALIGN_PROFILE"):
        profile_name()


# --------------------------------------------------------------------------- exact resume


def test_straight_run_trains_and_records_history(straight, tmp_path):
    res, _ = straight
    h = res.history
    assert res.status == "done" and h["iteration"] == 8 and h["status"] == "done"
    assert [e["iter"] for e in h["train"]] == [2, 4, 6, 8]
    assert h["train"][-1]["loss"] < h["train"][0]["loss"]
    assert set(h["train"][-1]["offsets"]["l1"]) == {"mean_abs", "max_abs", "frac_above", "peak_mean_abs"}
    assert h["overflow"] == [] and len(h["val"]) == 1 and h["val"][0]["num_frames"] == 2
    assert [e["event"] for e in h["events"]] == ["start", "done"]
    on_disk = (res.out_dir / T.HISTORY).read_text()
    assert '"iteration": 8' in on_disk
    params = T.load_checkpoint(res.out_dir / T.WEIGHTS)["params"]
    _assert_same(params, _weights(res.model))


def test_half_resume_half_is_identical(straight, tmp_path):
    first = _run(tmp_path, stop_at=4)
    assert first.status == "stopped" and first.iteration == 4
    assert T.load_checkpoint(tmp_path / T.CHECKPOINT)["iteration"] == 4
    second = _run(tmp_path)  # a fresh model, dataset and process state: all come from the checkpoint
    assert second.status == "done" and second.iteration == 8
    _assert_same(_weights(second.model), straight[1])
    assert [e["event"] for e in second.history["events"]] == ["start", "stopped", "resume", "done"]
    assert second.history["val"] == straight[0].history["val"]  # same weights, same PSNR


def test_crash_between_iterations_keeps_work_and_resumes_exactly(straight, tmp_path):
    data = TinyPatches()
    data.fail_at = 11  # first sample of iteration 6 (batch 2): iterations 1-5 are finished
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(tmp_path, data=data)
    assert T.load_checkpoint(tmp_path / T.CHECKPOINT)["iteration"] == 5
    res = _run(tmp_path)
    _assert_same(_weights(res.model), straight[1])


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_signal_stops_after_the_iteration_and_resumes_exactly(straight, tmp_path, name):
    data = TinyPatches()
    data.signal_at = (7, SIGNALS[name])  # while loading iteration 4
    res = _run(tmp_path, data=data)
    assert res.status == name and res.iteration == 4
    assert T.load_checkpoint(tmp_path / T.CHECKPOINT)["iteration"] == 4
    res = _run(tmp_path)
    assert res.status == "done"
    _assert_same(_weights(res.model), straight[1])


def test_resume_refuses_another_model(tmp_path):
    _run(tmp_path, total=2)
    p = tiny_profile(2).replace(model={"num_feat": 16})
    with pytest.raises(ValueError, match="resume=False"):
        T.train(p, tmp_path, model=tiny_model(), train_set=TinyPatches(), progress=False)


def _cosine(t, lr0, period, eta_min=1e-7):  # TrainConfig's eta_min
    return eta_min + 0.5 * (lr0 - eta_min) * (1 + math.cos(math.pi * t / period))


def test_lengthened_resume_follows_the_new_schedule(tmp_path):
    """A finished 4-iteration run resumed with total_iter = periods = 10 (and another lr):
    iteration n runs at lr(n - 1) of the *new* cosine, lr0 = 2e-3 over 10 iterations; the
    checkpoint's schedule (period 4) would climb back up after iteration 4."""
    data = TinyPatches()
    first = T.train(tiny_profile(4, log_every=1), tmp_path, model=tiny_model(), train_set=data,
                    val_set=None, progress=False)
    assert [e["lr"] for e in first.history["train"]] == pytest.approx([_cosine(t, 1e-3, 4) for t in range(4)])
    longer = tiny_profile(10, log_every=1, lr=2e-3)
    res = T.train(longer, tmp_path, model=tiny_model(), train_set=data, val_set=None, progress=False)
    assert res.status == "done" and res.iteration == 10
    lrs = {e["iter"]: e["lr"] for e in res.history["train"]}
    assert [lrs[n] for n in range(5, 11)] == pytest.approx([_cosine(n - 1, 2e-3, 10) for n in range(5, 11)],
                                                           rel=1e-12)
    resume = [e for e in res.history["events"] if e["event"] == "resume"]
    assert resume[0]["iter"] == 4
    assert set(resume[0]["changed"]) == {"train.total_iter", "train.periods", "train.lr", "train.val_every"}
    assert res.history["profile"]["train"]["total_iter"] == 10
    again = T.train(longer, tmp_path / "straight", model=tiny_model(), train_set=TinyPatches(),
                    val_set=None, progress=False)  # the new schedule from scratch: same lr from 5 on
    assert [e["lr"] for e in again.history["train"]][4:] == pytest.approx([lrs[n] for n in range(5, 11)])


@pytest.mark.parametrize("section, change, field", [
    ("data", {"batch_size": 4}, "data.batch_size"),
    ("data", {"patch_size": 4}, "data.patch_size"),
    ("data", {"source": "bundled"}, "data.source"),
    ("train", {"seed": 1}, "train.seed"),
    ("train", {"loss_reduction": "sum"}, "train.loss_reduction"),
    ("model", {"alignment": {"kind": "decomposed"}}, "model.alignment.kind"),
])
def test_resume_refuses_changes_of_model_and_data_order(tmp_path, section, change, field):
    _run(tmp_path, total=2)
    p = tiny_profile(4).replace(**{section: change})
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        T.train(p, tmp_path, model=tiny_model(), train_set=TinyPatches(), val_set=None, progress=False)
    assert C.load_checkpoint(tmp_path / T.CHECKPOINT)["iteration"] == 2  # untouched


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    C.save_checkpoint(path, {"w": torch.arange(4.0), "meta": {"iteration": 1}})

    def torn_save(obj, f):  # dies half-way through writing
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk vanished")

    monkeypatch.setattr(C.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk vanished"):
        C.save_checkpoint(path, {"w": torch.zeros(4), "meta": {"iteration": 2}})
    monkeypatch.undo()
    back = C.load_checkpoint(path)
    assert torch.equal(back["w"], torch.arange(4.0)) and back["meta"]["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary left behind


def test_checkpoint_loads_with_weights_only(straight):
    ckpt = torch.load(straight[0].out_dir / T.CHECKPOINT, weights_only=True)
    assert ckpt["iteration"] == 8 and "exp_avg" in str(ckpt["optimizer"]["state"][0].keys())


# --------------------------------------------------------------------------- TSA stage, monitor


def test_tsa_stage_trains_only_fusion_first(tmp_path):
    p = tiny_profile(6, tsa_iter=4, ckpt_every=100)
    model = tiny_model()
    before = _weights(model)
    data = TinyPatches()
    res = T.train(p, tmp_path, model=model, train_set=data, val_set=None, stop_at=3, progress=False)
    after = _weights(res.model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fusion.weight", "fusion.bias"}
    assert [e["stage"] for e in res.history["train"]] == ["fusion", "fusion"]
    res = T.train(p, tmp_path, model=tiny_model(), train_set=data, val_set=None, progress=False)
    final = _weights(res.model)
    assert all(not torch.equal(before[k], final[k]) for k in ("feat.weight", "upconv.weight"))
    assert res.history["train"][-1]["stage"] == "all"


def test_tsa_stage_of_edvr_trains_exactly_its_fusion_module(tmp_path):
    """BasicSR's EDVRModel trains the parameters named 'fusion' first; so must the trainer."""
    p = tiny_profile(6, tsa_iter=4, ckpt_every=100, val_every=100)
    torch.manual_seed(0)
    model = EDVR.from_config(p.model)
    before = _weights(model)
    res = T.train(p, tmp_path, model=model, train_set=TinyPatches(), val_set=None, stop_at=2, progress=False)
    changed = {k for k, v in _weights(res.model).items() if not torch.equal(before[k], v)}
    assert changed and changed == {k for k in before if "fusion" in k}
    with pytest.raises(ValueError, match="with_tsa"):
        tiny_profile(6, tsa_iter=4).replace(model={"with_tsa": False})


def test_lr_mul_rules_pick_parameters_as_basicsr_dcn_lr_mul_does():
    """BasicSR's EDVRModel.setup_optimizers: names containing 'dcn' (the DCNs and the convs that
    predict their offsets) train at lr * dcn_lr_mul, the rest at lr -- train.lr_mul = (("dcn", m),).
    Each group follows its own cosine (the same eta_min), from any position (resume); the first
    rule that matches a name wins."""
    p = tiny_profile(10, lr_mul=(("dcn", 4.0),))
    model = EDVR.from_config(p.model)
    (base_mul, base), (mul, dcn) = lr_groups(model, p.train.lr_mul)
    assert (base_mul, mul) == (1.0, 4.0)
    assert {"pcd_align.dcn_pack.l1.conv_offset.weight", "pcd_align.cas_dcnpack.weight"} <= set(dcn)
    assert not any("offset_conv1" in n or "fusion" in n for n in dcn)
    named = dict(model.named_parameters())
    assert sorted(base + dcn) == sorted(named)
    opt = build_optimizer(model, p.train)
    assert [{id(q) for q in g["params"]} for g in opt.param_groups] == [{id(named[n]) for n in ns}
                                                                        for ns in (base, dcn)]
    sched = build_scheduler(opt, p.train, position=3)
    for t in range(3, 7):
        lrs = [g["lr"] for g in opt.param_groups]
        assert lrs == pytest.approx([_cosine(t, 1e-3, 10), _cosine(t, 4e-3, 10)], rel=1e-12)  # eta_min shared
        opt.step()
        sched.step()
    assert len(build_optimizer(model, tiny_profile(10).train).param_groups) == 1  # as BasicSR at 1
    frozen = build_optimizer(model, tiny_profile(10, lr_mul=(("conv_offset", 0.0),)).train)
    sched = build_scheduler(frozen, p.train, position=9)  # near the end of the cosine, lr ~ eta_min
    assert frozen.param_groups[1]["lr"] == 0.0 < frozen.param_groups[0]["lr"]  # eta_min does not move it
    features_and_alignment = r"^(conv_first|feature_extraction|conv_l[23]_|pcd_align)"  # a screen's rule
    front = lr_groups(model, (("conv_offset", 0.0), (features_and_alignment, 4.0)))
    assert {n.split(".")[0] for n in front[2][1]} == {"conv_first", "feature_extraction", "conv_l2_1",
                                                      "conv_l2_2", "conv_l3_1", "conv_l3_2", "pcd_align"}
    assert front[1][1] == [n for n in named if "conv_offset" in n]  # the first rule took them
    assert not any(n.startswith(("fusion", "reconstruction", "upconv", "conv_last")) for n in front[2][1])
    with pytest.raises(ValueError, match="'pcd_align' picks no parameter"):
        lr_groups(model, (("^pcd", 2.0), ("pcd_align", 4.0)))  # nothing left for the second: refused
    for bad in ((("", 2.0),), (("pcd_align(", 2.0),), (("dcn", -1.0),), ("dcn", 4.0)):
        with pytest.raises(ValueError, match="lr_mul"):
            tiny_profile(10, lr_mul=bad)
    assert Profile.from_dict(json.loads(json.dumps(p.to_dict()))) == p  # the pairs survive JSON


def test_lr_mul_reaches_the_trainer(tmp_path):
    """Adam's first step moves every weight by about lr (m / sqrt(v) = sign g): the DCNs by 4x,
    the offset predictors not at all under a multiplier of 0."""
    moves = {}
    for mul in (1.0, 4.0, 0.0):
        p = tiny_profile(1, lr_mul=(("dcn", mul),), tsa_iter=0, val_every=100, ckpt_every=100)
        torch.manual_seed(0)
        model = EDVR.from_config(p.model)
        before = _weights(model)
        res = T.train(p, tmp_path / str(mul), model=model, train_set=TinyPatches(), val_set=None,
                      progress=False)
        moves[mul] = {k: (v - before[k]).abs().max().item() for k, v in _weights(res.model).items()}
    for name in ("pcd_align.dcn_pack.l1.conv_offset.weight", "pcd_align.cas_dcnpack.weight"):
        assert moves[4.0][name] == pytest.approx(4 * moves[1.0][name], rel=1e-3)
    assert moves[4.0]["conv_last.weight"] == pytest.approx(moves[1.0]["conv_last.weight"], rel=1e-3)
    assert moves[0.0]["pcd_align.dcn_pack.l1.conv_offset.weight"] == 0.0 < moves[0.0]["conv_last.weight"]
    assert res.history["train"][-1]["lr"] == pytest.approx(1e-3)  # the base group's rate is logged


def test_offset_monitor_records_overflow(tmp_path):
    data = TinyPatches()
    with pytest.warns(RuntimeWarning, match="offset overflow"):
        res = T.train(tiny_profile(4), tmp_path, model=tiny_model(offset_bias=80.0), train_set=data,
                      val_set=None, progress=False)
    over = res.history["overflow"]
    assert over and {o["level"] for o in over} == {"l1"} and min(o["mean_abs"] for o in over) > 50
    stats = res.history["train"][0]["offsets"]["l1"]
    assert stats["frac_above"] == 1.0 and stats["max_abs"] >= stats["mean_abs"] > 50
    assert res.history["train"][0]["pcd_positive"] is None  # this model reports no aligned features
    assert res.overflow == over and '"overflow": [' in (tmp_path / T.HISTORY).read_text()


def test_the_monitor_logs_shut_masks_and_the_pcd_outputs_share_above_zero(tmp_path):
    p = tiny_profile(2, log_every=1, ckpt_every=100)
    torch.manual_seed(0)
    model = EDVR.from_config(p.model)  # DCNv2, G = 1, k = 3: 18 offset channels, then 9 masks
    with torch.no_grad():
        model.pcd_align.cas_dcnpack.conv_offset.bias[18:] = -30.0  # the cascade's masks shut
    res = T.train(p, tmp_path, model=model, train_set=TinyPatches(), val_set=None, progress=False)
    logged = res.history["train"]
    assert len(logged) == 2
    for entry in logged:
        assert entry["offsets"]["cascade"]["masks_off"] == 1.0 and entry["offsets"]["l1"]["masks_off"] == 0.0
        assert isinstance(entry["pcd_positive"], float) and 0 <= entry["pcd_positive"] <= 1


def test_offset_monitor_statistics_by_hand():
    mon = OffsetMonitor(threshold=1.0, overflow_mean=50.0)
    mon.update({"l1": torch.tensor([0.5, -2.0, 3.0, -0.5])})
    mon.update({"l1": torch.tensor([0.0, 0.0, -1.0, 3.0])})
    stats, overflow, positive = mon.flush()
    assert stats["l1"] == {"mean_abs": 1.0, "max_abs": 3.0, "frac_above": 0.25, "peak_mean_abs": 1.5}
    assert overflow == [] and positive is None
    mon.update({"l1": torch.tensor([1.0]), "l2": torch.tensor([2.0])},
               masks={"l1": torch.tensor([0.5, 0.005, 0.0, 0.02]), "l2": None},
               aligned=torch.tensor([-0.1, 0.0, 2.0, 3.0, -1.0]))
    stats, _, positive = mon.flush()
    assert stats["l1"]["masks_off"] == 0.5 and "masks_off" not in stats["l2"]  # no masks at l2
    assert positive == pytest.approx(0.4)  # 2 of 5 above zero (0 is not)
    assert mon.flush() == ({}, [], None)  # each flush starts afresh


# --------------------------------------------------------------------------- DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_on_cpu_trains_like_one_process(tmp_path):
    """2 gloo processes x batch 2 == 1 process x batch 4 (gradients are averaged), through the
    switch from the fusion-only stage to all parameters (DDP is rebuilt there)."""
    total = 6
    mp.start_processes(ddp_worker, args=(2, _free_port(), str(tmp_path), total, 4), nprocs=2,
                       join=True, start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    _assert_same(r0, r1)
    # no host sync per iteration: the ranks agree on stop requests at the log points 2 and 4 only
    assert int(r0["stop_checks"]) == 2
    single = T.train(tiny_profile(total, 4, tsa_iter=3), tmp_path / "single", model=tiny_model(),
                     train_set=TinyPatches(), val_set=None, progress=False, device="cpu")
    init = _weights(tiny_model())
    # Adam normalises each step to about lr = 1e-3, so gradients that differ in rounding
    # only (summed in another order) can move a near-zero-gradient weight by a few 1e-5.
    for k, v in _weights(single.model).items():
        torch.testing.assert_close(r0[k], v, rtol=0, atol=1e-4)
    assert (r0["fusion.weight"] - init["fusion.weight"]).abs().max() > 2e-3
    assert (r0["upconv.weight"] - init["upconv.weight"]).abs().max() > 1e-3
    hist = T.load_checkpoint(tmp_path / T.CHECKPOINT)["history"]
    assert hist["world_size"] == 2 and hist["iteration"] == total
    assert [e["stage"] for e in hist["train"]] == ["fusion", "all", "all"]


def test_sr_after_trains_under_ddp_like_one_process(tmp_path):
    """In the first ``sr_after`` iterations the warping term does not reach most parameters; the
    SR loss enters weighted 0 so that each still gets a (zero) gradient, and DDP trains as one
    process."""
    fields = {"photometric_weight": 1.0, "photometric_levels": ("l1",), "sr_after": 2}
    mp.start_processes(ddp_worker, args=(2, _free_port(), str(tmp_path), 4, 4, fields), nprocs=2,
                       join=True, start_method="spawn")
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    single = T.train(tiny_profile(4, 4, **fields), tmp_path / "single", model=tiny_model(),
                     train_set=TinyPatches(), val_set=None, progress=False, device="cpu")
    for k, v in _weights(single.model).items():
        torch.testing.assert_close(r0[k], v, rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- CLI with EDVR and real data


def test_cli_trains_quick_edvr_and_resumes(tmp_path, capsys):
    """`python -m dalign_nb train` end to end: EDVR, synthetic patches, held-out validation."""
    from dalign_nb.__main__ import main

    args = ["train", "--profile", "quick", "--out", str(tmp_path), "--no-progress",
            "--set", "data.patch_size=8", "--set", "data.batch_size=2", "--set", "train.log_every=2",
            "--set", "data.val_frames=1", "--set", "data.val_clips=1",
            "--alignment", "decomposed", "--num-offsets", "1"]
    assert main(args + ["--iters", "4", "--stop-at", "2"]) == 0
    assert "stopped at iteration 2 of 4" in capsys.readouterr().out
    assert main(args + ["--iters", "4"]) == 0
    out = capsys.readouterr().out
    assert "done at iteration 4 of 4" in out and "validation PSNR" in out
    h = T.load_checkpoint(tmp_path / T.CHECKPOINT)["history"]
    assert h["profile"]["model"]["alignment"]["kind"] == "decomposed" and h["iteration"] == 4
    assert set(h["train"][-1]["offsets"]) == {"l3", "l2", "l1", "cascade"}
    assert h["val"][0]["num_frames"] == 1 and h["val"][0]["psnr"] > 10
    assert (tmp_path / T.WEIGHTS).exists()
    # a longer schedule: iteration 6 runs at the new cosine's lr(5) (quick: lr 2e-3, 6 iterations)
    assert main(args + ["--iters", "6"]) == 0
    assert "done at iteration 6 of 6" in capsys.readouterr().out
    h = T.load_checkpoint(tmp_path / T.CHECKPOINT)["history"]
    assert h["train"][-1]["iter"] == 6
    assert h["train"][-1]["lr"] == pytest.approx(_cosine(5, 2e-3, 6), rel=1e-9)
    with pytest.raises(ValueError, match=r"data\.batch_size"):  # the data order may not change
        main(args + ["--iters", "8", "--batch-size", "4"])


def test_cli_sets_nested_fields_and_refuses_unknown_ones(capsys):
    from dalign_nb.__main__ import main

    assert main(["train", "--profile", "quick", "--print-config", "--set", "model.alignment.kind=flow",
                 "--set", "model.alignment.kernel_size=1", "--num-offsets", "5",
                 "--set", "train.lr=5e-4"]) == 0
    out = capsys.readouterr().out
    for line in ("model.alignment.kind = 'flow'", "model.alignment.kernel_size = 1",
                 "model.alignment.num_offsets = 5", "train.lr = 0.0005", "model.num_feat = 16"):
        assert line in out.splitlines()
    with pytest.raises(SystemExit, match="model.alignment.kind"):
        main(["train", "--print-config", "--set", "model.kind=flow"])
    with pytest.raises(SystemExit, match="with_tsa"):
        main(["train", "--profile", "standard", "--print-config", "--set", "train.tsa_iter=5",
              "--set", "model.with_tsa=False"])


def test_offset_fidelity_loss_is_added_with_the_data_flows(tmp_path):
    """At initialisation the offsets are zero; a flow of u = 30 px puts every dx 30 px away
    (beyond t = 10) and every dy on target: per offset pair the released loss is the mean over
    (2, H, W) of (0, 30) = 15, summed over 9 pairs, 3 frames and 2 samples = 810 (Eq. 4-5)."""
    losses = {}
    for weight in (0.0, 0.01):
        data = TinyPatches()
        data.flow = (30.0, 0.0)
        p = tiny_profile(1, log_every=1, offset_fidelity_weight=weight)
        res = T.train(p, tmp_path / str(weight), model=tiny_model(), train_set=data, val_set=None,
                      progress=False)
        losses[weight] = res.history["train"][0]["loss"]
        terms = res.history["train"][0]["terms"]
        assert set(terms) == ({"sr", "fidelity"} if weight else {"sr"})
        assert sum(terms.values()) == pytest.approx(losses[weight], rel=1e-6)
    assert losses[0.01] - losses[0.0] == pytest.approx(0.01 * 810, rel=1e-5)
    assert terms["fidelity"] == pytest.approx(0.01 * 810, rel=1e-5)  # the logged term is the weighted loss
    data = TinyPatches()
    with pytest.raises(ValueError, match="flow"):
        T.train(tiny_profile(1, offset_fidelity_weight=1.0), tmp_path / "noflow", model=tiny_model(),
                train_set=data, val_set=None, progress=False)


def test_exact_offsets_until_samples_l1_at_the_batch_flow_for_the_first_iterations(tmp_path, monkeypatch):
    """``exact_offsets_until = 2``: iterations 0 and 1 run under ``sample_at`` with the batch's
    flows, one per frame (the reference's zero), reporting the model's own offsets to the losses;
    from iteration 2 the model samples with its own offsets."""
    from dalign_nb.models import build_model

    entered = []
    real = T.sample_at

    def spy(model, flows, level, reports):
        entered.append((list(flows), level, reports))
        return real(model, flows, level, reports)

    monkeypatch.setattr(T, "sample_at", spy)
    flow_model = {"alignment": {"kind": "flow"}}
    p = tiny_profile(4, log_every=1).replace(model=flow_model, train={"exact_offsets_until": 2})
    data = TinyPatches()
    data.flow = (1.5, -0.5)
    torch.manual_seed(0)
    res = T.train(p, tmp_path / "teacher", model=build_model(p.model), train_set=data, val_set=None,
                  progress=False)
    assert res.history["status"] == "done" and len(entered) == 2
    for flows, level, reports in entered:
        assert (level, reports) == ("l1", "predicted") and len(flows) == 3
        assert flows[1].abs().max() == 0  # the reference frame's motion to itself
        for f in (flows[0], flows[2]):
            assert f.shape == (2, 2, 8, 8)
            torch.testing.assert_close(f[:, 0], torch.full((2, 8, 8), 1.5))
            torch.testing.assert_close(f[:, 1], torch.full((2, 8, 8), -0.5))
    with pytest.raises(ValueError, match="exact_offsets_until must be in"):
        tiny_profile(4).replace(model=flow_model, train={"exact_offsets_until": 4})
    with pytest.raises(ValueError, match="kernel grid"):  # a DCN at L1: its offsets start on the kernel grid
        tiny_profile(4).replace(train={"exact_offsets_until": 2})
    with pytest.raises(ValueError, match="flow"):  # the data must deliver them
        T.train(p, tmp_path / "noflow", train_set=TinyPatches(), val_set=None, progress=False)


# --------------------------------------------------------------------------- profiles hold the model config


def test_profile_holds_the_model_config_and_round_trips():
    k1 = {"kind": "dcn", "kernel_size": 1, "modulated": False}
    p = get_profile("quick").replace(model={"alignment": k1})
    assert isinstance(p.model, EDVRConfig) and p.model.alignment.kernel_size == 1
    assert type(p).from_dict(json.loads(json.dumps(p.to_dict()))) == p  # as history.json stores it
    model = EDVR.from_config(p.model)  # Table 1's k = 1 DCN: one offset per group
    dcn = model.pcd_align.dcn_pack["l1"]
    assert dcn.weight.shape[-2:] == (1, 1) and dcn.conv_offset.out_channels == 2 * p.model.deformable_groups
    assert model.conv_last.weight.abs().max() == 0  # quick's zero_init_output


# --------------------------------------------------------------------------- validation


class _NoFlowModel(torch.nn.Module):
    """Super-resolves by repeating pixels; has no ``flows`` argument (like most models)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.w * x[:, x.shape[1] // 2].repeat_interleave(4, -1).repeat_interleave(4, -2)


def test_evaluate_passes_flows_only_to_models_that_take_them():
    data = TinyPatches()
    samples = [{**s, "flow": torch.zeros(3, 2, 16, 16)} for s in data.val()]
    res = evaluate(_NoFlowModel(), samples)  # flows present, the model takes none
    ref = []  # the model: the centre frame, each pixel repeated 4 x 4, rounded to 8 bits
    for s in samples:
        up = s["lq"][1].repeat_interleave(4, -1).repeat_interleave(4, -2).permute(1, 2, 0).double().numpy()
        ref.append(peak_signal_noise_ratio(s["gt"].permute(1, 2, 0).double().numpy(),
                                           np.round(np.clip(up, 0, 1) * 255) / 255, data_range=1.0))
    assert res["num_frames"] == 2 and res["psnr"] == pytest.approx(np.mean(ref), abs=1e-6)
    flow_guided = EDVR.from_config(dataclasses.replace(tiny_profile().model, alignment="flow_guided"))
    with pytest.raises(ValueError, match="takes flows"):
        evaluate(flow_guided, data.val())
    assert evaluate(flow_guided, samples)["num_frames"] == 2


def test_bicubic_baseline_is_matlab_imresize_on_8_bit_output():
    """psnr_bicubic: MATLAB imresize x4 of the centre frame, rounded to 8 bits, RGB PSNR (skimage)."""
    data = TinyPatches()
    samples = data.val()
    res = evaluate(_NoFlowModel(), samples)
    ref = []
    for s in samples:
        centre = s["lq"][1].permute(1, 2, 0).double().numpy()
        up = np.round(np.clip(imresize(centre, 4), 0, 1) * 255) / 255
        ref.append(peak_signal_noise_ratio(s["gt"].permute(1, 2, 0).double().numpy(), up, data_range=1.0))
    assert res["psnr_bicubic"] == pytest.approx(np.mean(ref), abs=1e-6)


def test_synthetic_validation_uses_exact_flows(tmp_path):
    """val_source="synthetic": held-out scenes with their exact flows and occlusion, never
    re-estimated, centred on the scene's centre frame; the model and the data agree on flows."""
    from dalign_nb.data import SceneConfig, synthetic_scene

    p = tiny_profile(2).replace(data={"val_source": "synthetic", "val_clips": 2},
                                model={"alignment": {"kind": "flow_guided"}})
    _, val = build_data(p)
    assert len(val) == 2 and all(s["flow"].shape == (3, 2, 64, 64) for s in val)
    for i, s in enumerate(val):
        scene = synthetic_scene(SceneConfig(num_frames=3), 10**6 + i, texture_split="test").lr()
        exact = torch.from_numpy(scene.flows).permute(0, 3, 1, 2)
        torch.testing.assert_close(s["flow"], exact, rtol=0, atol=0)
        assert torch.equal(s["occlusion"], torch.from_numpy(scene.occlusion))
        torch.testing.assert_close(s["lq"][1], torch.from_numpy(scene.frames[1]).permute(2, 0, 1))
    assert max(float(s["flow"].abs().max()) for s in val) > 1  # scenes move (2-6 LR px per frame)
    torch.manual_seed(0)
    res = T.train(p, tmp_path, model=EDVR.from_config(p.model), train_set=TinyPatchesWithFlow(),
                  val_set=val, progress=False)
    assert res.final_val()["num_frames"] == 2


class TinyPatchesWithFlow(TinyPatches):
    def __init__(self):
        super().__init__()
        self.flow = (1.0, -0.5)


def test_photometric_loss_enters_only_for_its_iterations(tmp_path):
    """With lr = 0 the model never changes, so the logged losses of two runs differ by the
    weighted warping loss: present for the first ``photometric_until`` iterations, then 0 up to
    float rounding (the two runs' sums are not bit for bit the same; the term is above 1e-3)."""
    logged = {}
    for weight in (0.0, 0.5):
        p = tiny_profile(4, log_every=1, lr=0.0, photometric_weight=weight, photometric_until=2,
                         photometric_levels=("l1",))
        res = T.train(p, tmp_path / str(weight), model=tiny_model(), train_set=TinyPatches(),
                      val_set=None, progress=False)
        logged[weight] = [e["loss"] for e in res.history["train"]]
        terms = [e["terms"] for e in res.history["train"]]
    assert [sorted(t) for t in terms] == [["photometric", "sr"]] * 2 + [["sr"]] * 2
    diff = [a - b for a, b in zip(logged[0.5], logged[0.0])]
    assert [t["photometric"] for t in terms[:2]] == pytest.approx(diff[:2], rel=1e-5)
    assert min(diff[:2]) > 1e-3  # the random frames differ: the loss is far above sqrt(eps)
    assert diff[2:] == pytest.approx([0.0, 0.0], abs=1e-6)
    with pytest.raises(ValueError, match="photometric_levels"):
        tiny_profile(1, photometric_weight=1.0, photometric_levels=("l4",))


def test_sr_after_trains_the_alignment_alone_first(tmp_path):
    """For the first ``sr_after`` iterations only the warping term trains: the offset branch and
    the features below it move, the fusion and the upsampling (reached by the SR loss alone) do
    not; from then on the SR loss is back and every part trains."""
    p = tiny_profile(4, log_every=1, photometric_weight=1.0, photometric_levels=("l1",), sr_after=2,
                     ckpt_every=100, val_every=100)
    model = tiny_model(offset_bias=0.3)
    before = _weights(model)
    res = T.train(p, tmp_path, model=model, train_set=TinyPatches(), val_set=None, stop_at=2, progress=False)
    changed = {k for k, v in _weights(res.model).items() if not torch.equal(before[k], v)}
    assert changed == {"feat.weight", "feat.bias", "conv_offset.weight", "conv_offset.bias"}
    assert [sorted(e["terms"]) for e in res.history["train"]] == [["photometric"]] * 2
    res = T.train(p, tmp_path, model=tiny_model(offset_bias=0.3), train_set=TinyPatches(), val_set=None,
                  progress=False)
    assert [sorted(e["terms"]) for e in res.history["train"][2:]] == [["photometric", "sr"]] * 2
    after = _weights(res.model)
    assert all(not torch.equal(before[k], after[k]) for k in ("fusion.weight", "upconv.weight"))
    with pytest.raises(ValueError, match="sr_after"):
        tiny_profile(4, sr_after=2)  # nothing would train
    with pytest.raises(ValueError, match="sr_after"):
        tiny_profile(4, photometric_weight=1.0, sr_after=4)


@pytest.mark.parametrize("native", [False, True])
def test_cpu_autocast_where_the_cpu_has_bfloat16_and_float32_with_the_reason_elsewhere(tmp_path, monkeypatch,
                                                                                      native):
    monkeypatch.setattr(T, "cpu_bf16_support", lambda: (native, "native" if native else "no bf16 units"))
    p = tiny_profile(2, log_every=1, cpu_amp=True, channels_last=True)
    model = tiny_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = T.train(p, tmp_path, model=model, train_set=TinyPatches(), val_set=None, progress=False,
                      device="cpu")
    precision = res.history["precision"]
    assert precision["autocast"] == ("bfloat16" if native else None)
    assert precision["channels_last"] and model.feat.weight.is_contiguous(memory_format=torch.channels_last)
    assert ("no bf16 units" in precision["why"]) == (not native)
    assert any("no bf16 units" in str(w.message) for w in caught) == (not native)
    assert all(math.isfinite(e["loss"]) for e in res.history["train"])
    off = tiny_profile(2, log_every=1)
    res = T.train(off, tmp_path / "f32", model=tiny_model(), train_set=TinyPatches(), val_set=None,
                  progress=False, device="cpu")
    assert res.history["precision"] == {"autocast": None, "channels_last": False, "why": "float32"}
