"""The verdict rules of ``dalign_nb.report`` on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from dalign_nb import report


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
    assert report.level_verdict(report.stats([0.9]), 0.8).startswith("on the paper's side with 1 seed")


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
