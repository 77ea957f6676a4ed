"""Table 2's models in the profiles, the trainer, ``zero_offsets``, the measures and the ``table2``
experiment: a profile holds a TDAN or FlowNet config as it holds EDVR's (its type stored, rebuilt,
compared on resume), every offset of both models can be held at zero, the measures read both, and
the experiment plans 6 conditions x 3 seeds and runs end to end in a tiny configuration."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from train_helpers import TinyPatches, tiny_profile

from dalign_nb import experiments as E
from dalign_nb import train as T
from dalign_nb.__main__ import main
from dalign_nb.alignment import zero_offsets
from dalign_nb.config import Profile, get_profile, with_overrides
from dalign_nb.models import (
    TDAN,
    EDVRConfig,
    FlowNet,
    FlowNetConfig,
    TDANConfig,
    build_model,
    flownet_config,
    tdan_config,
)
from dalign_nb.training import checkpoint as C

TINY_TDAN, TINY_FLOWNET = tdan_config("tiny", num_offsets=9), flownet_config("tiny", num_offsets=2)
SCENE = {"num_scenes": 1, "size": 32}  # one held-out scene of 8 x 8 LR pixels
REAL = {"clips": ("carphone/shot0",), "frames_per_clip": 1}


@pytest.fixture
def torch_threads():
    """``run_experiment(threads=...)`` sets torch's thread count: put it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _offset_branches(model) -> list[torch.nn.Conv2d]:
    if isinstance(model, FlowNet):
        return [conv for conv, _ in model.offset_branches()]
    return [model.dconv.conv_offset]


def _with_offsets(config, seed: int = 0):
    """The model of ``config`` with its (zero-initialised) offset branches drawn at random, so
    that its offsets are not zero, and its last convolution too (``zero_init_output``), so that
    its output depends on them."""
    torch.manual_seed(seed)
    model = build_model(config).eval()
    with torch.no_grad():
        model.up[-1].weight.normal_(0.0, 0.01)
        for conv in _offset_branches(model):
            conv.weight.normal_(0.0, 0.05)
            conv.bias.normal_(0.0, 0.5)
    return model


# --------------------------------------------------------------------------- profiles


@pytest.mark.parametrize("config, name", [(TINY_TDAN, "tdan"), (TINY_FLOWNET, "flownet")])
def test_profile_with_a_table2_model_round_trips_as_history_stores_it(config, name):
    p = get_profile("quick").with_overrides({"model": config})
    stored = json.loads(json.dumps(p.to_dict()))
    assert stored["model"]["type"] == name and p.flat()["model.type"] == name
    back = Profile.from_dict(stored)
    assert back == p and type(back.model) is type(config)
    old = get_profile("quick").to_dict()  # stored before Table 2's models: no type, EDVR
    del old["model"]["type"]
    assert Profile.from_dict(old) == get_profile("quick")
    stored["model"]["type"] = "resnet"
    with pytest.raises(ValueError, match="model.type"):
        Profile.from_dict(stored)


def test_every_model_config_says_n_per_group_and_its_offset_levels():
    assert EDVRConfig().offsets_per_group == 9 and get_profile("align").model.offsets_per_group == 1
    assert [tdan_config("small", num_offsets=n).offsets_per_group for n in (1, 9, 25)] == [1, 9, 25]
    assert [flownet_config("small", num_offsets=n).offsets_per_group for n in (1, 2, 3)] == [1, 2, 3]
    assert tdan_config("small").offset_levels == ("l1",)
    assert flownet_config("small").offset_levels == ("l3", "l2", "l1")
    assert EDVRConfig().has_masks and not TINY_TDAN.has_masks and not TINY_FLOWNET.has_masks


@pytest.mark.parametrize("config", [TINY_TDAN, TINY_FLOWNET], ids=["tdan", "flownet"])
def test_resume_refuses_a_changed_model(tmp_path, config):
    """The trainer builds the profile's model (``build_model``) and refuses to resume it as
    another N, or as another type of model."""
    p = tiny_profile(2).with_overrides({"model": config})
    res = T.train(p, tmp_path, train_set=TinyPatches(), val_set=None, progress=False)
    assert type(res.model) is (TDAN if isinstance(config, TDANConfig) else FlowNet) and res.status == "done"
    more = {"train.total_iter": 4}
    for change, field in (({"model.num_offsets": 1}, r"model\.num_offsets"),
                          ({"model.type": "edvr"}, r"model\.type")):
        with pytest.raises(ValueError, match=field):
            T.train(p.with_overrides({**more, **change}), tmp_path, train_set=TinyPatches(), val_set=None,
                    progress=False)
    assert C.load_checkpoint(tmp_path / T.CHECKPOINT)["iteration"] == 2  # untouched


def test_overrides_reach_the_fields_of_table2_models():
    align = get_profile("align")
    p = with_overrides(align, {**E.table2_model(tdan_config("small", num_offsets=9)),
                               "model.num_offsets": 25, "model.num_feat": 16})
    assert isinstance(p.model, TDANConfig) and (p.model.num_offsets, p.model.num_feat) == (25, 16)
    assert p.model.kernel_size == 5 and p.train.photometric_levels == ("l1",)
    q = with_overrides(align, {"model.type": "flownet", "model.num_offsets": 3, "model.num_levels": 3})
    assert isinstance(q.model, FlowNetConfig) and (q.model.num_offsets, q.model.num_levels) == (3, 3)
    assert q.model.num_feat == FlowNetConfig().num_feat  # another type starts from its defaults
    assert with_overrides(q, {"model.type": "flownet"}) == q  # the same type: nothing changes
    with pytest.raises(ValueError, match=r"model\.alignment\.kind"):  # EDVR's field, not TDAN's
        with_overrides(p, {"model.alignment.kind": "flow"})
    with pytest.raises(ValueError, match=r"model\.type"):
        with_overrides(align, {"model.type": "tof"})
    with pytest.raises(ValueError, match="'model'"):
        with_overrides(align, {"model": {"num_feat": 8}})
    with pytest.raises(ValueError, match="photometric_levels"):  # align's l2, l3: TDAN has l1 only
        with_overrides(align, {"model": tdan_config("small")})


# --------------------------------------------------------------------------- zero offsets


@pytest.mark.parametrize("config", [TINY_TDAN, TINY_FLOWNET], ids=["tdan", "flownet"])
def test_zero_offsets_zeroes_every_offset_and_restores_them(config):
    model = _with_offsets(config)
    x = torch.rand(1, 3, 3, 8, 8)
    with torch.no_grad():
        _, before = model(x, return_aux=True)
        assert set(before["offsets"]) == set(config.offset_levels)
        assert all(o[:, [0, 2]].abs().max() > 1e-2 for o in before["offsets"].values())  # neighbours move
        with zero_offsets(model):
            _, zero = model(x, return_aux=True)
        _, after = model(x, return_aux=True)
    for level in config.offset_levels:
        assert zero["offsets"][level].abs().max() == 0, level
        assert torch.equal(after["offsets"][level], before["offsets"][level]), level
    if isinstance(model, FlowNet):  # zero flow: every warped copy is the neighbour itself
        copies = zero["aligned"]["l1"].unflatten(2, (2, 3))  # (B, T, N, 3, h, w)
        torch.testing.assert_close(copies, x[:, :, None].expand_as(copies), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- measures


@pytest.mark.parametrize("config", [TINY_TDAN, TINY_FLOWNET], ids=["tdan", "flownet"])
def test_measures_read_table2_models(config):
    """offsets_vs_flow's zero-offset PSNR is the PSNR of the model with its branches zeroed by
    hand; the N offsets of a perturbed model spread (diversity > 0), N = 1 has none."""
    profile = get_profile("align").with_overrides(E.table2_model(config))
    model = _with_offsets(config)
    res = E.offsets_vs_flow(model, profile, **SCENE)
    assert res["num_pixels"] > 0 and math.isfinite(res["psnr"]) and math.isfinite(res["within_1px"])
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        for conv in _offset_branches(zeroed):
            conv.weight.zero_()
            conv.bias.zero_()
    by_hand = E.offsets_vs_flow(zeroed, profile, **SCENE)
    assert res["psnr_zero_offsets"] == pytest.approx(by_hand["psnr"], abs=1e-9)
    assert res["psnr_gain_over_zero"] == pytest.approx(res["psnr"] - by_hand["psnr"], abs=1e-9)
    assert abs(res["psnr_gain_over_zero"]) > 1e-4  # the perturbed offsets change the output
    div = E.diversity(model, profile, **SCENE)
    assert div["settings"]["offsets_per_group"] == config.num_offsets and div["diversity"] > 1e-3
    single = profile.with_overrides({"model.num_offsets": 1})
    none = E.diversity(_with_offsets(single.model), single, **SCENE)["diversity"]
    assert none == pytest.approx(0, abs=1e-7)
    real = E.psnr_real(model, profile, **REAL)
    assert real["num_frames"] == 1 and math.isfinite(real["psnr"])


def test_measures_refuse_a_level_or_reference_frame_the_model_does_not_have():
    profile = get_profile("align").with_overrides(E.table2_model(TINY_TDAN))
    with pytest.raises(ValueError, match="level"):
        E.diversity(build_model(TINY_TDAN), profile, level="l2", **SCENE)
    first = profile.with_overrides({"model.center_frame_idx": 0})
    with pytest.raises(ValueError, match="center_frame_idx"):
        E.offsets_vs_flow(build_model(first.model), first, **SCENE)


# --------------------------------------------------------------------------- the experiment


def test_table2_plans_six_conditions_times_three_seeds_on_align2(tmp_path, capsys):
    runs = E.plan("table2")
    conditions = ("tdan-n1", "tdan-n9", "tdan-n25", "flownet-n1", "flownet-n2", "flownet-n3")
    assert [r.name for r in runs] == [f"{c}-s{s}" for c in conditions for s in (0, 1, 2)]
    for r in runs:
        p, family = r.profile, r.condition.split("-")[0]
        assert isinstance(p.model, TDANConfig if family == "tdan" else FlowNetConfig)
        assert f"n{p.model.offsets_per_group}" == r.condition.split("-")[1] and p.train.seed == r.seed
        assert (p.name, p.train.total_iter, p.data.batch_size, p.data.patch_size, p.model.num_frame) == \
            ("align2", 3000, 4, 32, 3)
        assert (p.train.photometric_penalty, p.train.smoothness_weight) == ("census", 0.1)
        assert p.train.photometric_scales == ((1, 2, 4) if family == "tdan" else (1,))  # TDAN: pooled too
        assert p.train.photometric_target == "mean" and p.train.photometric_weight > 0
        assert set(p.train.photometric_levels) == set(p.model.offset_levels)
        assert not (p.train.cpu_amp or p.train.channels_last)  # float32 on every machine, as its two runs
    first = {}
    for r in E.plan("table2", seeds=[0]):  # within a family the runs differ in N alone
        flat = r.profile.flat()
        ref = first.setdefault(r.condition.split("-")[0], flat)
        assert {k for k in flat if flat[k] != ref[k]} <= {"model.num_offsets"}
    exp = E.experiment("table2")
    assert exp.keep_weights == (0,) and exp.measures == ("offsets_vs_flow", "diversity", "psnr_real")
    args = ["experiment", "table2", "--list", "--runs", str(tmp_path / "runs"), "--results",
            str(tmp_path / "results")]
    main(args)
    out = capsys.readouterr().out
    assert out.count("pending") == 18 and all(f"{c}-s2" in out for c in conditions)


def test_table2_runs_end_to_end_in_a_tiny_configuration(tmp_path, torch_threads):
    """One TDAN and one FlowNet condition, 2 iterations on the quick profile with tiny fields
    that both models have; the results read back, seed 0's weights load into its model."""
    overrides = {**E.TINY_MODEL, **E.TINY_RUN, "train.total_iter": 2, "data.num_scenes": 1,
                 "data.val_source": "synthetic", "train.photometric_weight": 1.0}
    options = {"offsets_vs_flow": SCENE, "diversity": SCENE, "psnr_real": REAL}
    only = ("tdan-n9-s0", "flownet-n2-s0")
    status = E.run_experiment("table2", profile="quick", seeds=[0], only=only, overrides=overrides,
                              options=options, runs_dir=tmp_path / "runs", results_dir=tmp_path / "results",
                              progress=False, threads=1)
    assert status == dict.fromkeys(only, "done")
    results = {r["run"]: r for r in E.load_results("table2", tmp_path / "results")}
    assert sorted(results) == sorted(only)
    for run, cls in zip(only, (TDAN, FlowNet)):
        res = results[run]
        assert res["train"]["iterations"] == 2 and res["provenance"]["profile"]["name"] == "quick"
        assert set(res["measures"]) == {"offsets_vs_flow", "diversity", "psnr_real"}
        assert res["measures"]["offsets_vs_flow"]["psnr_gain_over_zero"] is not None
        model = E.load_model("table2", run, tmp_path / "results")
        assert type(model) is cls and model.config.num_feat == 8
