"""The verdict rules of ``dalign_nb.report`` on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from dalign_nb import paper, report


def test_half_width_is_students_t_interval():
    # 3 values 1, 2, 3: sd 1, t(2) = 4.303, half width 4.303 / sqrt 3
    s = report.stats([1.0, 2.0, 3.0])
    assert (s["mean"], s["std"], s["n"]) == (2.0, 1.0, 3)
    assert report.half_width(s["std"], s["n"]) == pytest.approx(4.303 / math.sqrt(3))
    assert math.isnan(report.half_width(1.0, 1))
    assert math.isnan(report.stats([5.0])["std"])
    with pytest.raises(ValueError):
        report.stats([])


@pytest.mark.parametrize("values, sign, verdict", [
    ([0.30, 0.25, 0.35], 1, "reproduced"),  # mean 0.30, half width 0.124
    ([0.30, 0.25, 0.35], -1, "not reproduced at this scale (the opposite, beyond noise)"),
    ([0.10, -0.05, 0.20], 1, "inconclusive (within noise)"),  # mean 0.083, half width 0.31
    ([-0.06, -0.16], 1, "inconclusive: 2 seed(s), a spread needs 3"),
])
def test_difference_verdict(values, sign, verdict):
    assert report.difference_verdict(report.stats(values), sign) == verdict


def test_level_verdict_against_a_threshold():
    assert report.level_verdict(report.stats([0.45, 0.43, 0.47]), 0.8) == "not reproduced at this scale"
    assert report.level_verdict(report.stats([0.85, 0.83, 0.87]), 0.8) == "reproduced"
    assert report.level_verdict(report.stats([0.7, 0.9, 0.8]), 0.8) == "inconclusive (within noise)"
    assert report.level_verdict(report.stats([0.1, 0.12, 0.08]), 0.5, above=False) == "reproduced"
    assert report.level_verdict(report.stats([0.9]), 0.8) == ("inconclusive: 1 seed(s), a spread needs 3 "
                                                             "(on the paper's side)")


def test_mean_sd_formats(capsys):
    assert report.mean_sd(report.stats([27.5, 27.6, 27.7])) == "27.60 ± 0.10"
    assert report.mean_sd(report.stats([0.454]), digits=1, percent=True) == "45.4 %"
    assert report.mean_sd({"mean": 0.11, "std": 0.07, "n": 2}, signed=True) == "+0.11 ± 0.07"
    text = report.verdict_line("a claim", "ours", "reproduced", why="because")
    expected = "paper: a claim\n  ours: ours\n  verdict: reproduced\n  why: because"
    assert capsys.readouterr().out.startswith(expected)
    assert text.endswith("because")


def test_correlation_interval_is_fishers_z():
    # r = 0.5 from 12 points: atanh 0.5493, half width 1.96 / 3 = 0.6533 -> tanh(-0.104), tanh(1.2026)
    lo, hi = report.correlation_interval(0.5, 12)
    assert (lo, hi) == (pytest.approx(-0.1036, abs=1e-4), pytest.approx(0.8345, abs=1e-4))
    lo, hi = report.correlation_interval(-0.9, 9)  # 9 points: a strong r is still wide
    assert -0.98 < lo < -0.97 and -0.60 < hi < -0.58
    assert report.correlation_interval(1.0, 9) == (1.0, 1.0)
    assert all(math.isnan(v) for v in report.correlation_interval(0.5, 3))


def test_one_seed_has_no_spread_whichever_way_it_is_summarised():
    """summarize, paired and stats give the same answer for one seed: the mean, and NaN spread."""
    rows = [{"condition": c, "seed": 0, "measures": {"psnr": v}} for c, v in (("a", 30.0), ("b", 29.5))]
    one = report.summarize(rows, "measures.psnr")["a"]
    d = report.paired(rows, "measures.psnr", "a", "b")
    assert (one["n"], one["mean"], one["seeds"], d["n"], d["mean"]) == (1, 30.0, [0], 1, 0.5)
    assert math.isnan(one["std"]) and math.isnan(d["std"]) and math.isnan(report.stats([30.0])["std"])
    assert report.mean_sd(one) == "30.00"
    none = report.paired(rows, "measures.psnr", "a", "c")
    assert none["n"] == 0 and math.isnan(none["mean"])


def test_summarize_is_stats_per_condition():
    rows = [{"condition": "a", "seed": s, "m": v} for s, v in ((0, 1.0), (1, 2.0), (2, 4.0))]
    assert report.summarize(rows, "m") == {"a": {**report.stats([1.0, 2.0, 4.0]), "seeds": [0, 1, 2]}}
    assert report.summarize(rows, "m")["a"]["std"] == pytest.approx(math.sqrt(7 / 3))


@pytest.mark.parametrize("values, sign, verdict", [
    ([0.05, 0.30, 0.02], 1, report.TREND),  # every seed positive; mean 0.123, half width 0.38
    ([-0.05, -0.30, -0.02], -1, report.TREND),  # the paper's sign is negative here
    ([0.05, 0.30, -0.02], 1, "inconclusive (within noise)"),  # one seed against it
    ([0.05, 0.30, 0.02], -1, "inconclusive (within noise)"),  # every seed against the paper, within noise
])
def test_a_difference_on_every_seed_within_noise_is_a_trend_not_shown(values, sign, verdict):
    assert report.difference_verdict(report.stats(values), sign) == verdict


N5_MINUS_N1 = report.stats([0.30, 0.35, 0.40])


@pytest.mark.parametrize("later, earlier, verdict", [
    ([0.01, -0.01, 0.0], N5_MINUS_N1, "reproduced: flat within ± 0.05"),  # interval ±0.025
    # notebook 06's case: positive on every seed, interval [-0.01, +0.19]: smaller, not flat
    ([0.123, 0.047, 0.104], N5_MINUS_N1, "diminishing returns, plateau not established (the later step is "
                                         "smaller on average, positive on every seed, not flat)"),
    ([0.10, 0.11, 0.12], N5_MINUS_N1, "diminishing returns, plateau not established (the later step is "
                                      "smaller on average, and still positive beyond noise)"),
    ([0.40, 0.45, 0.42], N5_MINUS_N1, "not reproduced at this scale: still rising, not slower on average"),
    ([-0.20, -0.25, -0.22], N5_MINUS_N1, "not reproduced at this scale: falls beyond noise"),
    ([0.04, -0.03, 0.01], N5_MINUS_N1, "inconclusive (within noise): not flat within ± 0.05"),  # ±0.09
    ([0.01, 0.0], N5_MINUS_N1, "inconclusive: 2 seed(s), a spread needs 3"),
])
def test_a_plateau_needs_a_flat_difference_not_a_smaller_one(later, earlier, verdict):
    assert report.plateau_verdict(report.stats(later), earlier) == verdict


def test_a_correlation_over_three_points_is_weak_whatever_its_value():
    high = report.stats([0.99, 0.84, 0.99])  # notebook 06's three r per seed
    assert report.correlation_verdict(high, points=9) == "reproduced"
    weak = report.correlation_verdict(high, points=3)
    assert weak.startswith("weak: r from 3 points") and "reproduced" not in weak
    assert report.correlation_verdict(report.stats([-0.9, -0.8, -0.95]), points=3).endswith(
        "not reproduced at this scale")
    one = report.correlation_verdict(report.stats([0.9]), points=3)
    assert one.startswith("weak: r from 3 points per seed; inconclusive: 1 seed(s)")


def test_collapsed_is_within_a_twentieth_of_a_db_of_the_bilinear_base():
    run = {"run": "x", "measures": {"offsets_vs_flow": {"psnr": 24.80}}}
    assert report.collapsed(run, bilinear_psnr=24.773)  # 0.027 dB above
    assert not report.collapsed(run, bilinear_psnr=24.70)  # 0.10 dB above
    recorded = {"measures": {"offsets_vs_flow": {"psnr": 24.80, "psnr_bilinear_base": 24.50}}}
    assert not report.collapsed(recorded, bilinear_psnr=24.80)  # the measure's own base wins
    with pytest.raises(ValueError, match="bilinear"):
        report.collapsed(run)


def _run(experiment, condition, seed, psnr, **measures):
    m = {"offsets_vs_flow": {"psnr": psnr, "within_1px": measures.pop("within_1px", 0.5),
                             "psnr_gain_over_zero": measures.pop("gain", None)}}
    m.update(measures)
    return {"experiment": experiment, "run": f"{condition}-s{seed}", "condition": condition, "seed": seed,
            "measures": m, "train": {"overflow": [], "iterations": 3000}}


def _fig9(n5_gain, n15_gain, diversity=(0.0, 0.4, 0.9), n1_over_zero=(1.2, 0.9, 1.5)):
    """fig9's n1, n5, n15 on 3 seeds; ``n1_over_zero``: the baseline's gain over its offsets
    held at zero (``report.baseline_premise``), per seed."""
    runs = []
    for seed, base in enumerate((26.6, 26.3, 26.8)):
        steps = (("n1", 0.0), ("n5", n5_gain[seed]), ("n15", n15_gain[seed]))
        for (cond, gain), div in zip(steps, diversity):
            over_zero = n1_over_zero[seed] if cond == "n1" else 0.5
            runs.append(_run("fig9", cond, seed, base + gain, gain=over_zero,
                             diversity={
                "diversity": div + 0.1 * seed * (cond != "n1"), "diversity_auc_occlusion": 0.37,
                "diversity_auc_mean_offset_error": 0.45}))
    return runs


def _overview(**results):
    return {row["claim"]: row for row in report.overview(results, bilinear_psnr=24.77)}


def test_overview_verdicts_follow_our_numbers():
    rows = _overview(fig9=_fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50)))
    n5 = rows["Fig. 9: PSNR, N = 5 - N = 1 (G = 1)"]
    assert (n5["ours"], n5["seeds"], n5["verdict"]) == ("+0.350 ± 0.050 dB", 3, "reproduced")
    plateau = rows["Fig. 9: PSNR, N = 15 - N = 5 (G = 1)"]  # +0.10, +0.09, +0.10: smaller, not flat
    assert plateau["verdict"].startswith("diminishing returns, plateau not established")
    assert rows["Fig. 9: Pearson r of PSNR and diversity"]["verdict"].startswith("weak")
    assert rows["Fig. 5: G = N = 1 offsets within 1 px of the flow (align: aligning)"]["ours"] == "not run"
    premise = "Sec. 4's baseline: G = N = 1 beats its offsets held at zero (premise of the rows below)"
    row = _overview()[premise]
    assert (row["ours"], row["verdict"]) == ("not run", "no verdict: not run")
    # the same runs with N = 5 below N = 1 on every seed, and a flat step from 5 to 15
    rows = _overview(fig9=_fig9((-0.30, -0.35, -0.40), (-0.30, -0.34, -0.41)))
    assert rows["Fig. 9: PSNR, N = 5 - N = 1 (G = 1)"]["verdict"] == (
        "not reproduced at this scale (the opposite, beyond noise)")
    assert rows["Fig. 9: PSNR, N = 15 - N = 5 (G = 1)"]["verdict"] == "reproduced: flat within ± 0.05"


def test_overview_verdicts_follow_the_papers_numbers(monkeypatch):
    fig5 = [_run("fig5", "aligning", s, 27.5, within_1px=w) for s, w in enumerate((0.45, 0.47, 0.43))]
    row = _overview(fig5=fig5)["Fig. 5: G = N = 1 offsets within 1 px of the flow (align: aligning)"]
    assert (row["paper"], row["verdict"]) == ("> 80 % (PWC-Net flow)", "not reproduced at this scale")
    monkeypatch.setattr(paper, "FIG5_SHARE_WITHIN_1PX", 0.40)
    row = _overview(fig5=fig5)["Fig. 5: G = N = 1 offsets within 1 px of the flow (align: aligning)"]
    assert (row["paper"], row["verdict"]) == ("> 40 % (PWC-Net flow)", "reproduced")
    monkeypatch.setitem(paper.TABLE4_REDS4, "image warping", 30.1)
    row = _overview()["Table 4: feature - image warping"]
    assert (row["paper"], row["ours"], row["verdict"]) == ("-0.108 dB", "not run", "no verdict: not run")


def test_overview_says_when_both_table3_runs_collapse():
    claim = "Table 3: with - without the offset-fidelity loss (4x learning rate)"
    both = [_run("table3", "dcn_lr4x", 0, 24.77), _run("table3", "dcn_fidelity_lr4x", 0, 24.78)]
    one_seed = "inconclusive: 1 seed(s), a spread needs 3; "  # one seed: what happened, no verdict
    assert _overview(table3=both)[claim]["verdict"] == (one_seed + "both runs collapse to the bilinear base, "
                                                        "with and without the loss")
    one = [_run("table3", "dcn_lr4x", 0, 24.77), _run("table3", "dcn_fidelity_lr4x", 0, 25.90)]
    row = _overview(table3=one)[claim]
    assert (row["ours"], row["seeds"]) == ("+1.130 dB", 1)
    assert row["verdict"] == one_seed + "only the run without the loss collapses"
    neither = [_run("table3", "dcn_lr4x", 0, 25.90), _run("table3", "dcn_fidelity_lr4x", 0, 24.78)]
    only = one_seed + "only the run with the loss collapses"
    assert _overview(table3=neither)[claim]["verdict"] == only
    three = {"mean": 1.1, "std": 0.1, "n": 3}  # with three seeds the rule speaks
    assert report.fidelity_verdict(three, True, True).startswith("not reproduced at this scale: both runs")
    assert report.fidelity_verdict(three, True, False) == ("the loss prevents the collapse (in kind); "
                                                           "PSNR: reproduced")
    assert report.fidelity_verdict(three, 2, 0) == ("runs collapse to the bilinear base: without the loss "
                                                    "on 2 of 3 seeds, with it on 0; PSNR: reproduced")
    assert report.fidelity_verdict(three, 3, 1).startswith("not reproduced at this scale: runs collapse")
    mixed = both + [_run("table3", "dcn_lr4x", s, 24.77) for s in (1, 2)] + [
        _run("table3", "dcn_fidelity_lr4x", 1, 24.78), _run("table3", "dcn_fidelity_lr4x", 2, 25.9)]
    assert _overview(table3=mixed)[claim]["verdict"] == ("not reproduced at this scale: runs collapse to the "
                                                         "bilinear base: without the loss on 3 of 3 seeds, "
                                                         "with it on 2")


@pytest.mark.parametrize("gains, holds, why", [
    ((1.2, 0.9, 1.5), True, "mean +1.20 ± 0.30 dB: the baseline uses its offsets"),
    ((-0.17, -0.05, -0.26), False, "not positive on every seed: the baseline does not use its offsets"),
    ((0.1, 0.1, 2.0), False, "mean +0.73 dB within its seed spread (1.10 dB): not shown to use its offsets"),
    ((1.2,), False, "1 seed(s): whether it aligns needs 3"),
])
def test_the_baseline_premise_needs_a_gain_over_zero_offsets_beyond_the_seed_spread(gains, holds, why):
    runs = [_run("fig9", "n1", s, 27.0, gain=g) for s, g in enumerate(gains)]
    premise = report.baseline_premise(runs)
    assert (premise["holds"], premise["why"]) == (holds, why)
    assert premise["line"].startswith("n1's gain over its offsets held at zero: " +
                                      ", ".join(f"{g:+.2f}" for g in gains))
    assert report.premise_verdict("reproduced", premise) == (
        "reproduced" if holds
        else f"no verdict: the baseline's premise {'is not established yet' if len(gains) < 3 else 'fails'} "
             f"({why}); by the rule alone: reproduced")
    assert premise["short"] == (len(gains) < 3)
    assert not report.baseline_premise([])["holds"] and report.baseline_premise([])["short"]


def test_overview_gives_no_verdict_on_a_baseline_that_does_not_align():
    """Sec. 4's comparisons rest on a G = N = 1 model that uses its offsets: the same numbers
    give verdicts when it beats its offsets held at zero and none when it does not."""
    n5 = "Fig. 9: PSNR, N = 5 - N = 1 (G = 1)"
    premise = "Sec. 4's baseline: G = N = 1 beats its offsets held at zero (premise of the rows below)"
    rows = _overview(fig9=_fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50)))
    assert rows[premise]["verdict"] == "holds" and rows[n5]["verdict"] == "reproduced"
    rows = _overview(fig9=_fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50), n1_over_zero=(-0.17, -0.05, -0.26)))
    assert rows[premise]["verdict"].startswith("does not hold: n1's gain over its offsets held at zero: "
                                               "-0.17, -0.05, -0.26 dB")
    for claim, row in rows.items():
        if claim.startswith(("Fig. 9", "Fig. 6", "Fig. 16", "Table 4")) and row["seeds"]:
            assert row["verdict"].startswith("no verdict: the baseline's premise fails"), claim
    assert rows[n5]["verdict"].endswith("by the rule alone: reproduced")


def _table2(n1_over_zero=(1.0, 1.2, 1.4)):
    """table2's TDAN N = 1 and N = 25 on 3 seeds; N = 25 ahead by 0.20, 0.21, 0.22 dB."""
    return [_run("table2", c, s, 27.0 + 0.1 * s + (0.2 + 0.01 * s if c.endswith("n25") else 0),
                 gain=n1_over_zero[s] if c.endswith("n1") else 0.8,
                 diversity={"diversity": 0.0 if c.endswith("n1") else 0.3 + 0.1 * s},
                 psnr_real={"psnr": 30.0 + 0.1 * s})
            for c in ("tdan-n1", "tdan-n25") for s in range(3)]


def test_overview_reads_table2_seed_for_seed():
    rows = _overview(table2=_table2())
    tdan = rows["Table 2: TDAN, N = 25 - N = 1"]
    assert (tdan["paper"], tdan["ours"], tdan["seeds"], tdan["verdict"]) == (
        "+0.227 dB (Vimeo-90K-T)", "+0.210 ± 0.010 dB", 3, "reproduced")
    assert rows["Table 2: flow-based (TOFlow-like, N SPyNets), N = 3 - N = 1"]["ours"] == "not run"
    # a TDAN whose N = 1 does not beat its offsets held at zero gets no verdict
    tdan = _overview(table2=_table2(n1_over_zero=(0.3, -0.1, 0.2)))["Table 2: TDAN, N = 25 - N = 1"]
    assert tdan["verdict"].startswith("no verdict: the baseline's premise fails")
    assert tdan["verdict"].endswith("by the rule alone: reproduced")


def test_table2_beside_the_paper_per_family_and_n(capsys):
    rows = report.table2(_table2())
    assert len(rows) == 6 and len(rows[0]) == len(report.TABLE2_HEADERS)
    assert rows[0] == ["TDAN", 1, 33.313, "27.10 ± 0.10", "30.10 ± 0.10", "+1.20 ± 0.20", "not run",
                       "0.000 ± 0.000", "50.0 ± 0.0 %", "0, 1, 2"]  # results without the reference-only PSNR
    assert rows[1][:4] == ["TDAN", 9, 33.483, "not run"] and rows[1][-1] == "-"
    assert rows[2][3:8] == ["27.31 ± 0.11", "30.10 ± 0.10", "+0.80 ± 0.00", "not run", "0.400 ± 0.100"]
    heard = _table2()
    for r in heard:
        r["measures"]["offsets_vs_flow"]["psnr_gain_over_reference_only"] = 0.1 * (r["seed"] + 1)
    assert report.table2(heard)[0][6] == "+0.20 ± 0.10"
    assert [r[1] for r in rows[3:]] == [1, 2, 3] and all(r[3] == "not run" for r in rows[3:])
    lines = report.table2_verdicts(_table2())
    out = capsys.readouterr().out
    assert "TDAN: tdan-n1's gain over its offsets held at zero: +1.00, +1.20, +1.40 dB" in out
    assert len(lines) == 4  # N = 9, 25 of TDAN; N = 2, 3 of the flow-based network
    assert "verdict: no verdict: not run" in lines[0]
    assert "ours: +0.210 ± 0.010 dB (s0 +0.200, s1 +0.210, s2 +0.220)" in lines[1]
    assert lines[1].endswith("verdict: reproduced")
    assert all("not run" in line for line in lines[2:])


def test_gains_over_zero_per_condition_and_seed():
    runs = [_run("fig9", "n1", s, 27.0, gain=g) for s, g in enumerate((1.2, 0.9, 1.5))]
    runs += [_run("fig9", "n5", 0, 27.3, gain=0.4), _run("table3", "flow_guided", 0, 27.1, gain=None)]
    rows = report.gains_over_zero(runs)
    assert rows == [["n1", "s0 +1.20, s1 +0.90, s2 +1.50", "+1.20 ± 0.30"], ["n5", "s0 +0.40", "+0.40"],
                    ["flow_guided", "s0 -", "-"]]
    assert report.gains_over_zero(runs, conditions=["n15"]) == [["n15", "not run", "-"]]


def test_overview_rows_for_overflow_masks_and_gain_per_parameter():
    """Fig. 10(a) says where and when a run overflowed, or that none did; A.5 compares the share of
    masks near 0 seed for seed between N = 25 and N = 9; A.2's gain per million parameters is
    PSNR over N = 1 divided by the parameters added, and falls with N (expected sign -1)."""
    quiet = dict(_run("table3", "dcn_lr4x", 0, 25.9), train={"overflow": [], "iterations": 3000})
    loud = dict(_run("table3", "n1_lr4x", 0, 24.8),
                train={"overflow": [{"iter": 50, "level": "cascade", "mean_abs": 412.6}], "iterations": 3000})
    claim = "Fig. 10(a): without the loss, training breaks down (overflow; 4x learning rate)"
    row = _overview(table3=[quiet, loud])[claim]
    assert row["ours"] == ("dcn_lr4x s0: no overflow in 3000 iterations; n1_lr4x s0: overflow from "
                           "iteration 50 (cascade, mean |offset| 413 px)")
    assert row["verdict"].endswith("overflow at this scale, in cascade, far earlier than the paper's")
    assert "1 of 2 runs overflow" in row["verdict"]
    seeds = [dict(loud, condition="dcn_align4x", seed=s) for s in (0, 2)] + [
        dict(quiet, condition="dcn_align4x", seed=1)]
    align4x = claim.replace("4x learning rate", "the alignment module at 4x the rate")
    some = _overview(table3=seeds)[align4x]
    assert some["verdict"] == ("not shown on every seed: 2 of 3 runs overflow; overflow at this scale, in "
                               "cascade, far earlier than the paper's")
    every = _overview(table3=[dict(loud, condition="dcn_align4x", seed=s) for s in range(3)])
    assert every[align4x]["verdict"] == "overflow at this scale, in cascade, far earlier than the paper's"
    masks = [_run("fig17", c, s, 27.0, masks={"pearson_r": -0.3, "share_small": v})
             for s in range(3) for c, v in (("dcnv2-k3", 0.10 + 0.01 * s), ("dcnv2-k5", 0.30 + 0.02 * s))]
    row = _overview(fig17=masks)["A.5: with many offsets a large share of masks is near 0 (share < 0.1, "
                                 "N = 25 - N = 9)"]
    assert (row["ours"], row["verdict"]) == ("+21.0 ± 1.0 % (points)", "reproduced")
    fig9 = _fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50))
    params = {"n1": 1_000_000, "n5": 1_100_000, "n15": 1_300_000}
    fig9 = [dict(r, num_params=params[r["condition"]]) for r in fig9]
    div = {"diversity": 1.0, "diversity_auc_occlusion": 0.4, "diversity_auc_mean_offset_error": 0.4}
    fig9 += [dict(_run("fig9", "n25", 0, 26.6 + 0.5, gain=0.5, diversity=div), num_params=1_500_000)]
    row = _overview(fig9=fig9)["Fig. 16 (A.2): PSNR gain over N = 1 per 1M parameters added falls with N "
                               "(N = 25 - N = 5)"]
    assert row["ours"] == "N = 5: +3.50 ± 0.50, N = 25: +1.00 dB per 1M"  # 0.35 dB / 0.1M; 0.5 dB / 0.5M
    assert row["seeds"] == 1 and row["verdict"].startswith("inconclusive: 1 seed")


def test_fig16_grid_puts_fig9_as_g1_beside_fig16_seed_for_seed(capsys):
    """Fig. 16 over G x N: fig9's runs are its G = 1 row; gains over N = 1 of the same G seed for
    seed, per million parameters added; the verdict on G compares the same N seed for seed."""
    fig9 = _fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50))
    params = {"n1": 500_000, "n5": 600_000, "n15": 800_000, "g4-n1": 520_000, "g4-n5": 900_000,
              "g2-n1": 510_000}
    for r in fig9:
        r["num_params"] = params[r["condition"]]
    fig16 = [dict(_run("fig16", c, s, (26.6, 26.3, 26.8)[s] + gain), num_params=params[c])
             for c, gain, seeds in (("g4-n1", 0.05, (0, 1, 2)), ("g4-n5", 0.50, (0, 1, 2)),
                                    ("g2-n1", 0.02, (0,)))
             for s in seeds]
    grid = report.fig16_grid(fig9, fig16)
    assert [(p["g"], p["n"]) for p in grid] == [(1, 1), (1, 5), (1, 15), (2, 1), (4, 1), (4, 5)]
    g1n5, g4n5 = grid[1], grid[5]
    assert g1n5["gain"]["values"] == pytest.approx([0.30, 0.35, 0.40])
    assert g1n5["per_m"]["values"] == pytest.approx([3.0, 3.5, 4.0])  # 0.1M parameters added
    assert g4n5["gain"]["values"] == pytest.approx([0.45] * 3)
    assert g4n5["per_m"]["mean"] == pytest.approx(0.45 / 0.38)
    assert grid[3]["gain"] is None and grid[3]["psnr"]["seeds"] == [0]
    rows = report.fig16_table(grid)
    assert rows[1] == ["1", "5", "600k", "26.917 ± 0.275", "+0.350 ± 0.050", "+3.50 ± 0.50", "0.500 ± 0.100",
                       "0, 1, 2"]
    assert rows[3][4:7] == ["-", "-", "-"] and len(rows[0]) == len(report.FIG16_HEADERS)
    lines = report.fig16_verdicts(fig9, fig16)
    assert len(lines) == 3 and "G = 2 - G = 1 at N = 1" in lines[0] and "inconclusive: 1 seed(s)" in lines[0]
    assert "+0.050 ± 0.000 dB (s0 +0.050, s1 +0.050, s2 +0.050)" in lines[1]
    assert lines[1].endswith("reproduced")
    assert "G = 4 - G = 1 at N = 5\n" in lines[2] and "+0.150 ± 0.050 dB" in lines[2]
    # a baseline that does not align: no verdict
    fig9_flat = _fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50), n1_over_zero=(-0.2, 0.1, -0.1))
    assert "verdict: no verdict: the baseline's premise fails" in report.fig16_verdicts(fig9_flat, fig16)[1]
    capsys.readouterr()


def test_overview_rows_name_the_experiments_they_read():
    rows = report.overview({"fig9": _fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50))}, bilinear_psnr=24.77)
    known = {"fig5", "table1", "fig9", "fig16", "table4", "fig17", "table3", "table2"}
    assert all(row["experiments"] and set(row["experiments"]) <= known for row in rows)
    claims = {name: [r[0] for r in report.overview_of(rows, name)] for name in known}
    premise = "Sec. 4's baseline: G = N = 1 beats its offsets held at zero (premise of the rows below)"
    assert all((c[0] == premise) == (name in report.ON_THE_BASELINE) for name, c in claims.items())
    assert claims["table4"] == [premise, "Table 4: feature - image warping"]
    assert "Fig. 16: PSNR, G = 4 - G = 1 (N = 1)" in claims["fig16"] and premise not in claims["fig5"]
    alone = report.overview_of(rows, "table4", premise=False)
    assert [r[0] for r in alone] == ["Table 4: feature - image warping"]
    assert len(report.overview_of(rows)) == len(rows)
    table = report.overview_of(rows, "fig9")
    assert all(len(r) == len(report.OVERVIEW_HEADERS) for r in table)
    row = {r[0]: r for r in table}["Fig. 9: PSNR, N = 5 - N = 1 (G = 1)"]
    assert row[2:] == ["+0.350 ± 0.050 dB", 3, "reproduced"]


def test_a_premise_with_too_few_seeds_is_not_established_rather_than_failed():
    n1 = [r for r in _fig9((0.3,) * 3, (0.4,) * 3, n1_over_zero=(1.5, 1.5, 1.5)) if r["run"] == "n1-s0"]
    rows = _overview(fig9=n1)
    premise = rows["Sec. 4's baseline: G = N = 1 beats its offsets held at zero (premise of the rows below)"]
    assert premise["verdict"].startswith("not established yet: n1's gain over its offsets held at zero: "
                                         "+1.50")
    per_m = rows["Fig. 16 (A.2): PSNR gain over N = 1 per 1M parameters added falls with N (N = 25 - N = 5)"]
    assert (per_m["ours"], per_m["verdict"]) == ("not run", "no verdict: not run")


TABLE1_CLAIM = "Table 1: a DCN and its decomposition perform alike"


def test_overview_rows_for_table1_g8_fig16_n5_and_table3_at_the_normal_rate():
    t1 = [_run("table1", f"{kind}-g8-k3", 0, p) for kind, p in (("dcn", 27.00), ("decomposed", 27.02))]
    row = _overview(table1=t1)[f"{TABLE1_CLAIM} (decomposition - DCN, G = 8, k = 3)"]
    assert (row["paper"], row["ours"], row["seeds"]) == ("-0.033 dB", "+0.020 dB", 1)
    assert row["verdict"].startswith("inconclusive")
    fig9 = _fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50))  # n5 at base + 0.30 / 0.35 / 0.40
    fig16 = [_run("fig16", "g4-n5", s, b + n5 + 0.1) for s, (b, n5) in enumerate(zip((26.6, 26.3, 26.8),
                                                                                     (0.30, 0.35, 0.40)))]
    row = _overview(fig9=fig9, fig16=fig16)["Fig. 16: PSNR, G = 4 - G = 1 (N = 5)"]
    assert (row["seeds"], row["verdict"]) == (3, "reproduced")
    assert "(seed for seed: +0.100 ± 0.000 dB)" in row["ours"]
    claim = "Table 3: with - without the offset-fidelity loss (the normal learning rate)"
    assert _overview(table3=[_run("table3", "dcn_fidelity", 0, 26.0)])[claim]["ours"] == "not run"
    pair = dict(fig17=[_run("fig17", "dcnv2-k3", s, 26.0 + 0.1 * s) for s in range(3)],
                table3=[_run("table3", "dcn_fidelity", s, 26.2 + 0.1 * s + 0.01 * s) for s in range(3)])
    row = _overview(**pair)[claim]
    assert (row["ours"], row["seeds"]) == ("+0.210 ± 0.010 dB", 3)
    assert row["verdict"] == "no run collapses; PSNR: reproduced"
    assert {"table3", "fig17"} <= set(_overview(**pair)[claim]["experiments"])


def _with_reference(runs, gains):
    """``runs`` with ``psnr_gain_over_reference_only`` recorded: ``gains[seed]`` for n1, 0.3 else."""
    for r in runs:
        g = gains[r["seed"]] if r["condition"] == "n1" else 0.3
        if g is not None:
            r["measures"]["offsets_vs_flow"]["psnr_gain_over_reference_only"] = g
    return runs


def test_psnr_comparisons_need_a_baseline_whose_neighbours_reach_its_output():
    """Offsets that follow the motion (+1.2 dB over zero offsets) in a model that takes nothing
    from its neighbours (the centre frame in their place scores the same): PSNR rows get no
    verdict, rows on the offsets' own structure (diversity, Fig. 6) keep theirs."""
    deaf = _with_reference(_fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50)), (0.01, -0.02, 0.00))
    premise = report.baseline_premise(deaf)
    assert not premise["holds"] and not premise["short"] and premise["temporal"]["n"] == 3
    assert "takes nothing from its neighbours' content" in premise["why"]
    assert report.baseline_premise(deaf, temporal=False)["holds"]
    rows = _overview(fig9=deaf)
    base = rows["Sec. 4's baseline: G = N = 1 beats its offsets held at zero (premise of the rows below)"]
    assert base["verdict"].startswith("holds for the offsets' own structure, not for PSNR")
    assert "over the centre frame in place of its neighbours" in base["ours"]
    assert rows["Fig. 9: PSNR, N = 5 - N = 1 (G = 1)"]["verdict"].startswith("no verdict")
    diversity = rows["Fig. 9: diversity rises with N, N = 15 - N = 5 (N = 1 has none by definition)"]
    assert diversity["verdict"] == "reproduced"
    hearing = _with_reference(_fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50)), (0.5, 0.6, 0.7))
    assert report.baseline_premise(hearing)["holds"]
    assert _overview(fig9=hearing)["Fig. 9: PSNR, N = 5 - N = 1 (G = 1)"]["verdict"] == "reproduced"
    partly = _with_reference(_fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50)), (0.5, None, 0.7))
    assert "not measured on every seed" in report.baseline_premise(partly)["why"]
    unmeasured = _fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50))  # results from before the measure: as before
    before = report.baseline_premise(unmeasured)
    assert before["holds"] and before["temporal"] is None


def test_gains_table_puts_the_reference_only_gain_beside_the_zero_offset_one():
    runs = _with_reference(_fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50)), (0.01, None, -0.02))
    rows = {r[0]: r for r in report.gains_table(runs)}
    assert rows["n1"] == ["n1", "s0 +1.20, s1 +0.90, s2 +1.50", "+1.20 ± 0.30", "s0 +0.01, s1 -, s2 -0.02",
                          "-0.01 ± 0.02"]
    assert rows["n5"][3:] == ["s0 +0.30, s1 +0.30, s2 +0.30", "+0.30 ± 0.00"]
    assert len(report.GAINS_HEADERS) == len(rows["n1"])
    assert report.gains_table(_fig9((0.3,) * 3, (0.4,) * 3))[0][3:] == ["s0 -, s1 -, s2 -", "-"]


def test_gain_split_reads_every_frame_the_neighbours_and_the_centre_frame_per_seed():
    runs = _with_reference(_fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50)), (0.01, None, -0.02))
    for r in runs:  # the neighbours' share on seeds 0 and 2 of n1 only (seed 1 measured before the split)
        if r["condition"] == "n1" and r["seed"] != 1:
            r["measures"]["offsets_vs_flow"]["psnr_gain_over_zero_neighbours"] = 0.1 * (r["seed"] + 1)
    rows = {r[0]: r for r in report.gain_split(runs)}
    assert rows["n1"] == ["n1", "s0 +1.20, s1 +0.90, s2 +1.50", "+1.20 ± 0.30",
                          "s0 +0.10, s1 -, s2 +0.30", "+0.20 ± 0.14",
                          "s0 +0.01, s1 -, s2 -0.02", "-0.01 ± 0.02"]
    assert rows["n5"][3:5] == ["s0 -, s1 -, s2 -", "-"]
    assert len(report.GAIN_SPLIT_HEADERS) == len(rows["n1"])
    assert report.gain_split(runs, ["n25"]) == [["n25"] + ["not run", "-"] * 3]


def test_a_gain_over_the_centre_frame_alone_must_be_more_than_flat():
    """+0.005, +0.010, +0.006 dB: positive on every seed and beyond its spread, but flat."""
    tiny = _with_reference(_fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50)), (0.005, 0.010, 0.006))
    assert not report.baseline_premise(tiny)["holds"]
    enough = _with_reference(_fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50)), (0.10, 0.12, 0.09))
    assert report.baseline_premise(enough)["holds"]


def _neighbour_runs(gains, within=0.8):
    return [_run("fig9", "n1", s, 27.5, offsets_vs_flow={
        "psnr": 27.5 + 0.01 * s, "psnr_gain_over_zero": 1.0, "psnr_gain_over_reference_only": g,
        "within_1px": within}) for s, g in enumerate(gains)]


@pytest.mark.parametrize("gains, verdict", [
    ((0.36,), "inconclusive: 1 seed(s)"),
    ((0.36, 0.30, 0.41), "the neighbours reach the output"),
    ((0.00, 0.01, 0.00), "flat: the neighbours do not reach the output"),
    ((0.04, 0.03, 0.05), "a trend, not shown"),  # above zero, but no more than a flat difference
    ((0.40, 0.02, 0.90), "a trend, not shown"),
    ((-0.01, -0.02, 0.39), "inconclusive (within noise)"),
    ((-0.30, -0.35, -0.40), "the neighbours cost the output"),
])
def test_neighbour_use_follows_the_rule(gains, verdict):
    (row,) = report.neighbour_use({"setting": _neighbour_runs(gains)})
    assert row[0] == "setting" and row[-1].startswith(verdict)
    assert row[3].startswith("s0 ") and len(row) == len(report.NEIGHBOUR_HEADERS)


def test_neighbour_use_leaves_out_runs_without_the_measure():
    old = _run("fig9", "n1", 0, 27.5,
               offsets_vs_flow={"psnr": 27.5, "psnr_gain_over_zero": 1.0, "within_1px": 0.7})
    rows = report.neighbour_use({"old": [old], "mixed": [old, *_neighbour_runs((0.36,), within=0.9)[:1]],
                                 "none": []})
    assert rows[0][3] == "not measured" and rows[2][3] == rows[2][-1] == "not run"
    assert rows[1][1] == "90.0 %" and rows[1][3] == "s0 +0.36"


def _tolerance_run(seed, gains, dis_gain, sigmas=(0.0, 0.2)):
    tolerance = {"sigmas": list(sigmas), "gain_over_reference_only": list(gains),
                 "median_epe": [1.18 * s for s in sigmas], "gain_dis": dis_gain, "median_epe_dis": 0.4}
    return _run("table3", "flow_guided", seed, 28.0, flow_tolerance=tolerance)


def test_flow_tolerance_gives_a_row_per_noise_level_with_the_rule_verdict():
    runs = [_tolerance_run(s, g, d) for s, (g, d) in
            enumerate((((0.36, 0.01), 0.18), ((0.56, -0.02), 0.25), ((0.30, 0.00), 0.20)))]
    runs.append(_run("table3", "dcn_fidelity", 0, 27.5, flow_tolerance=None))  # left out
    runs.append(_run("table3", "flow_guided", 3, 28.0))  # measured before the measure existed: left out
    rows = report.flow_tolerance(runs)
    assert [r[0] for r in rows] == ["exact + noise, sigma 0 px", "exact + noise, sigma 0.2 px", "DIS"]
    assert all(len(r) == len(report.TOLERANCE_HEADERS) for r in rows)
    assert rows[0][1] == "0.00" and rows[1][1] == "0.24" and rows[2][1] == "0.40"
    assert rows[0][2] == "s0 +0.36, s1 +0.56, s2 +0.30"
    assert rows[0][-1].startswith("the neighbours reach the output")
    assert rows[1][-1].startswith("flat") and rows[2][-1].startswith("the neighbours reach the output")
    one = report.flow_tolerance(runs[:1])
    assert all(r[-1].startswith("inconclusive: 1 seed") for r in one)
    with pytest.raises(ValueError, match="no run records"):
        report.flow_tolerance(runs[3:])  # neither records it
    with pytest.raises(ValueError, match="different noise levels"):
        report.flow_tolerance([runs[0], _tolerance_run(1, (0.3, 0.1, 0.0), 0.2, sigmas=(0.0, 0.1, 0.2))])


def _setting(condition, psnrs, gains, experiment="table3"):
    return [_run(experiment, condition, s, p, offsets_vs_flow={
        "psnr": p, "psnr_gain_over_zero": None, "psnr_gain_over_reference_only": g,
        "psnr_reference_only": p - g, "within_1px": 0.8})
        for s, (p, g) in enumerate(zip(psnrs, gains))]


def test_setting_difference_pairs_two_settings_seed_for_seed_whatever_their_names():
    nine = _setting("flow_guided", (27.81, 27.88, 27.74), (0.12, 0.17, 0.21), "table3-dis-scene")
    one = _setting("flow_guided", (27.73, 27.76), (0.07, 0.08), "table3-dis-scene-k1")  # no seed 2
    d = report.setting_difference(nine, one, report.PSNR)
    assert d["seeds"] == [0, 1] and d["values"] == pytest.approx([0.08, 0.12])
    with pytest.raises(ValueError, match="one setting"):
        report.setting_difference(nine + _setting("n1", (27.5,), (0.0,)), one, report.PSNR)
    with pytest.raises(ValueError, match="seed twice"):
        report.setting_difference(nine + nine[:1], one, report.PSNR)


def test_setting_differences_give_the_rule_verdict_per_quantity():
    nine = _setting("flow_guided", (27.81, 27.88, 27.74), (0.12, 0.17, 0.21))
    one = _setting("flow_guided", (27.73, 27.76, 27.73), (0.07, 0.08, 0.10))
    rows = report.setting_differences({"N = 9 - N = 1": (nine, one), "alone": (nine, [])})
    assert [r[1] for r in rows] == list(report.SPLIT) * 2
    assert all(len(r) == len(report.DIFFERENCE_HEADERS) for r in rows)
    assert rows[0][2] == "s0 +0.08, s1 +0.12, s2 +0.01" and rows[0][-1] == report.TREND
    assert rows[1][2] == "s0 +0.03, s1 +0.03, s2 -0.10"  # single-image part: PSNR minus the gain
    assert rows[2][3] == "+0.08 ± 0.03" and rows[2][-1] == "reproduced"  # through the neighbours
    assert rows[3][-1] == rows[4][-1] == rows[5][-1] == "not run"
    (one_seed,) = report.setting_differences({"x": (nine[:1], one)}, {"PSNR": report.PSNR})
    assert one_seed[-1].startswith("inconclusive: 1 seed")


def test_overview_splits_off_what_more_offsets_take_through_the_neighbours():
    """A baseline that takes nothing from its neighbours leaves the PSNR steps without a verdict;
    the step of the gain over the centre frame alone needs only a baseline that uses its offsets."""
    runs = _fig9((0.02, 0.00, 0.04), (0.15, 0.10, 0.20))
    through = {"n1": (0.00, 0.01, -0.01), "n5": (0.05, 0.04, 0.05), "n15": (0.11, 0.13, 0.12)}
    for r in runs:
        r["measures"]["offsets_vs_flow"]["psnr_gain_over_reference_only"] = through[r["condition"]][r["seed"]]
    rows = _overview(fig9=runs)
    assert rows["Fig. 9: PSNR, N = 15 - N = 1 (G = 1)"]["verdict"].startswith("no verdict")
    n15 = rows["Fig. 9, beyond the paper: gain over the centre frame alone (through the neighbours), "
               "N = 15 - N = 1"]
    assert (n15["ours"], n15["seeds"], n15["verdict"]) == ("+0.120 ± 0.010 dB", 3, "reproduced")
    unrecorded = _overview(fig9=_fig9((0.30, 0.35, 0.40), (0.40, 0.44, 0.50)))
    assert unrecorded[n15["claim"]]["ours"] == "not run"


@pytest.mark.parametrize("diffs, verdict", [
    ((0.02, -0.03, 0.01), "within the seed spread"),          # float32's sd here: 0.10
    ((0.20, 0.25, 0.22), "different beyond noise"),
    ((0.30, -0.05, 0.20), "larger than the seed spread (the interval includes zero)"),
])
def test_a_fast_path_learns_as_float32_within_float32s_own_seed_spread(diffs, verdict):
    base = {"mean": 27.5, "std": 0.10, "n": 3}
    d = report.stats(diffs)
    assert report.parity_verdict(d, base) == verdict
    assert report.parity_verdict(report.stats(diffs[:2]), base).startswith("inconclusive: 2 seed")


def test_precision_parity_pairs_seed_for_seed_and_shows_shares_in_percent():
    f32 = _setting("round2", (27.57, 27.44, 27.50), (0.00, 0.01, 0.00), "fig5")
    bf16 = _setting("round2", (27.55, 27.47, 27.49), (0.01, 0.00, 0.00), "fig5-bf16")
    for r, w in zip(f32 + bf16, (0.774, 0.735, 0.775, 0.781, 0.744, 0.768)):
        r["measures"]["offsets_vs_flow"]["within_1px"] = w
    rows = report.precision_parity(bf16, f32)
    assert [r[0] for r in rows] == list(report.PARITY)
    assert all(len(r) == len(report.PARITY_HEADERS) for r in rows)
    share, other_seeds, psnr, over_zero, _ = rows
    assert other_seeds[-1] == "not run"
    assert share[1] == "s0 77.40, s1 73.50, s2 77.50" and share[4] == "s0 +0.70, s1 +0.90, s2 -0.70"
    assert share[-1] == "within the seed spread"
    assert psnr[4] == "s0 -0.02, s1 +0.03, s2 -0.01" and psnr[-1] == "within the seed spread"
    assert over_zero[-1] == "not run"  # neither records it
    assert report.learns_as_baseline(rows)
    bf16[1]["measures"]["offsets_vs_flow"]["within_1px"] = 0.835  # s1 +10 points: beyond float32's spread
    assert not report.learns_as_baseline(report.precision_parity(bf16, f32))
    assert not report.learns_as_baseline(report.precision_parity(bf16[:2], f32))  # 2 seeds: inconclusive


@pytest.mark.parametrize("diffs, verdict", [
    ((0.01, -0.02, 0.00), "reproduced: alike within ± 0.05 dB"),
    ((0.20, 0.25, 0.22), "not reproduced at this scale: they differ beyond noise"),
    ((-0.02, 0.27, 0.05), "inconclusive: within the seed spread, not shown alike"),   # DCN's sd here: 0.20
    ((0.60, -0.05, 0.40), "inconclusive: larger than the seed spread"),
])
def test_alike_needs_a_flat_difference_not_merely_one_within_noise(diffs, verdict):
    base = {"mean": 27.0, "std": 0.20, "n": 3}
    assert report.equivalence_verdict(report.stats(diffs), base).startswith(verdict)
    assert report.equivalence_verdict(report.stats(diffs[:2]), base).startswith("inconclusive: 2 seed")


def test_overview_judges_table1_as_an_equivalence():
    t1 = [_run("table1", f"{kind}-g1-k1", s, p + (0.01 * (s - 1) if kind == "decomposed" else 0.0))
          for kind in ("dcn", "decomposed") for s, p in enumerate((27.1, 26.7, 27.0))]
    row = _overview(table1=t1)[f"{TABLE1_CLAIM} (decomposition - DCN, G = 1, k = 1)"]
    assert (row["ours"], row["seeds"]) == ("+0.000 ± 0.010 dB", 3)
    assert row["verdict"] == "reproduced: alike within ± 0.05 dB"


def test_the_premise_reads_the_neighbours_gain_where_every_run_records_it():
    runs = [_run("fig9", "n1", s, 27.0, gain=g) for s, g in enumerate((1.5, 1.9, 2.9))]
    line = report.baseline_premise(runs)["line"]
    assert "every frame's offsets, the reference's own where the model aligns it" in line
    for r, g in zip(runs, (0.39, 0.02, -0.10)):
        r["measures"]["offsets_vs_flow"]["psnr_gain_over_zero_neighbours"] = g
    premise = report.baseline_premise(runs)
    assert premise["line"].startswith("n1's gain over its neighbours' offsets held at zero: "
                                      "+0.39, +0.02, -0.10 dB")
    assert not premise["holds"] and premise["why"].startswith("not positive on every seed")
    runs[2]["measures"]["offsets_vs_flow"]["psnr_gain_over_zero_neighbours"] = None  # measured before it
    assert report.baseline_premise(runs)["holds"]  # read from every frame's gain, as recorded on all three


def test_fidelity_overflow_row_credits_the_loss_only_where_the_run_without_it_overflows_on_every_seed():
    """Sec. 4.3's "the loss avoids the overflow": per model, seed for seed against the same model
    without the loss; one seed is inconclusive; an overflow with the loss is "not reproduced"."""
    def run(condition, seed, over, levels=("l1",)):
        r = _run("table3", condition, seed, 25.0)
        r["train"] = {"iterations": 3000,
                      "overflow": [{"iter": 200, "level": "cascade", "mean_abs": 155.0}] if over else []}
        r["provenance"] = {"profile": {"train": {"offset_fidelity_levels": list(levels)}}}
        return r

    claim = "Sec. 4.3: with the loss the offsets do not overflow (4x learning rate)"
    assert _overview(table3=[run("dcn_lr4x", 0, True)])[claim]["ours"] == "not run"
    one = _overview(table3=[run("dcn_lr4x", 0, True), run("dcn_fidelity_lr4x", 0, True)])[claim]
    assert one["ours"] == ("dcn_fidelity_lr4x s0: overflow from iteration 200 (cascade, mean |offset| "
                           "155 px) (the loss on l1)")
    assert one["verdict"].startswith("dcn_fidelity_lr4x: inconclusive, 1 paired seed(s)")
    assert "overflow on 1 of 1 seed(s); dcn_lr4x: on 1 of 1" in one["verdict"]
    every = ("l1", "l2", "l3", "cascade")
    avoided = [run("n1_lr4x", s, True) for s in range(3)] + [run("n1_fidelity_all_lr4x", s, False, every)
                                                              for s in range(3)]
    assert report.fidelity_overflow_verdict(avoided).startswith(
        "n1_fidelity_all_lr4x: the loss avoids the overflow (in kind)")
    kept = avoided[:2] + [run("n1_lr4x", 2, False)] + avoided[3:]  # one seed without: nothing to avoid
    assert "nothing to avoid" in report.fidelity_overflow_verdict(kept)
    broken = avoided[:5] + [run("n1_fidelity_all_lr4x", 2, True, every)]
    assert "not reproduced" in report.fidelity_overflow_verdict(broken)


def test_the_4x_rows_give_no_verdict_where_the_rate_alone_breaks_a_model_that_cannot_overflow():
    """Table 3 at 4x the rate tests the loss only if flow-guided alignment (offsets bounded, no
    overflow possible) still trains at that rate (``report.rate_premise``)."""
    claim = "Table 3: with - without the offset-fidelity loss (4x learning rate)"
    pair = [_run("table3", "dcn_lr4x", 0, 24.77), _run("table3", "dcn_fidelity_lr4x", 0, 25.90)]
    assert report.rate_premise(pair)["holds"] is None
    plain = _overview(table3=pair)[claim]["verdict"]
    assert plain == "inconclusive: 1 seed(s), a spread needs 3; only the run without the loss collapses"
    broken = _overview(table3=pair + [_run("table3", "flow_guided_lr4x", 0, 24.78)])
    line = ("at 4x the rate, flow-guided alignment, whose offsets cannot overflow, ends at the bilinear base "
            "too (flow_guided_lr4x: on 1 of 1 seed(s)): the rate alone breaks training, so these runs cannot "
            "show whether the loss prevents a breakdown by overflow")
    assert broken[claim]["verdict"] == f"no verdict: {line}; by the rule alone: {plain}"
    overflow = "Fig. 10(a): without the loss, training breaks down (overflow; 4x learning rate)"
    assert broken[overflow]["verdict"].endswith(f"; but {line}")
    trains = _overview(table3=pair + [_run("table3", "flow_guided_lr4x", 0, 27.9)])
    assert trains[claim]["verdict"] == plain
    assert report.rate_premise([_run("table3", "flow_guided_lr4x", 0, 27.9)], 24.77)["holds"] is True
    normal = "Table 3: with - without the offset-fidelity loss (the normal learning rate)"
    normal_rate = [_run("fig17", "dcnv2-k3", 0, 27.6), _run("table3", "dcn_fidelity", 0, 27.5)]
    control = [_run("table3", "flow_guided_lr4x", 0, 24.78)]
    row = _overview(fig17=normal_rate[:1], table3=normal_rate[1:] + control)
    assert row[normal]["verdict"] == "inconclusive: 1 seed(s), a spread needs 3; no run collapses"


def test_each_provoking_setting_is_read_under_its_own_control():
    """table3's second setting (the alignment module at 4x the rate) has rows of its own, read
    under its own control (exact-flow alignment, its offset layers frozen): a control that
    breaks withholds that setting's verdict only."""
    align = report.PROVOKING[1]
    assert (align.suffix, align.control) == ("align4x", "flow_frozen_align4x")
    assert align.pairs() == {"dcn_fidelity_all_align4x": "dcn_align4x"} and align.with_loss in align.pairs()
    pair = [_run("table3", "dcn_align4x", 0, 24.77), _run("table3", "dcn_fidelity_all_align4x", 0, 25.90)]
    claim = "Table 3: with - without the offset-fidelity loss (the alignment module at 4x the rate)"
    plain = "inconclusive: 1 seed(s), a spread needs 3; only the run without the loss collapses"
    assert _overview(table3=pair)[claim]["verdict"] == plain
    trains = _overview(table3=pair + [_run("table3", "flow_frozen_align4x", 0, 27.9)])
    assert trains[claim]["verdict"] == plain
    broken = _overview(table3=pair + [_run("table3", "flow_frozen_align4x", 0, 24.78),
                                      _run("table3", "flow_guided_lr4x", 0, 27.9)])
    assert broken[claim]["verdict"].startswith(
        "no verdict: at 4x the rate on the alignment module, alignment by the exact flow with its offset "
        "layers frozen, whose offsets cannot overflow, ends at the bilinear base too (flow_frozen_align4x: "
        "on 1 of 1 seed(s))")
    lr4x = [dict(r, condition=c) for r, c in zip(pair, ("dcn_lr4x", "dcn_fidelity_lr4x"))]
    other = _overview(table3=lr4x + [_run("table3", "flow_frozen_align4x", 0, 24.78),
                                                  _run("table3", "flow_guided_lr4x", 0, 27.9)])
    assert other["Table 3: with - without the offset-fidelity loss (4x learning rate)"]["verdict"] == plain
    assert report.rate_premise(pair, 24.77, align)["holds"] is None
    setting = "the alignment module at 4x the rate"
    for claim in (f"Fig. 10(a): without the loss, training breaks down (overflow; {setting})",
                  f"Sec. 4.3: with the loss the offsets do not overflow ({setting})"):
        assert _overview(table3=[])[claim]["ours"] == "not run"
