"""How the notebooks state a result: mean ± spread over seeds, and a verdict per trend.

Every analysis notebook (05-09) prints, per trend of the paper, one line: the paper's claim,
ours with its spread, and a verdict that follows from the numbers by one rule, written here
once:

* a **difference** between two conditions (seed for seed, ``paired``) is
  *reproduced* when its 95 % confidence interval (Student's t over the seeds' differences)
  excludes zero on the paper's side, *contradicted* when it excludes zero on the other side,
  and *inconclusive (within noise)* otherwise; with fewer than ``MIN_SEEDS`` seeds there is no
  spread and the verdict says so instead of guessing;
* a **level** (a share, a correlation) is compared with a threshold by the same interval;
* between *reproduced* and *inconclusive* sits **a trend, not shown**: the difference has the
  paper's sign on every seed, but its interval still includes zero;
* a **plateau** (PSNR saturates as N grows) needs a *flat* difference, its interval inside
  ``± PLATEAU_TOLERANCE``; a later step that is only smaller than the earlier one is
  *diminishing returns, plateau not established*;
* a **correlation** over three points or fewer is *weak* whatever its value (three points that
  rise together give r near 1), and never *reproduced*;
* one seed is always *inconclusive*: there is no spread to judge a difference against;
* a comparison that rests on a **baseline that aligns** (Sec. 4 measures what more offsets,
  groups or masks add to a G = N = 1 model whose offsets work) gives no verdict when that
  baseline does not beat the same model with its offsets held at zero by more than the seed
  spread (``baseline_premise``): it says so, with the gains per seed, instead.

With 3 seeds the 95 % interval is mean ± 2.48 sample standard deviations (t = 4.30 at 2
degrees of freedom, divided by sqrt 3): a difference must be large against its spread.
"""

from __future__ import annotations

import math
from operator import itemgetter
from typing import NamedTuple

import numpy as np

from . import paper
from .metrics import pearson_r

MIN_SEEDS = 3  # a verdict on a difference rests on 3 seeds (issue: mean and spread)

# Student's t, two-sided 95 %, by degrees of freedom (1-10); beyond 10, 2.2 is close enough.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228}



def half_width(std: float, n: int) -> float:
    """Half the width of the 95 % confidence interval of a mean of ``n`` values with sample
    standard deviation ``std`` (NaN for n < 2)."""
    if n < 2 or not math.isfinite(std):
        return math.nan
    return _T95.get(n - 1, 2.2) * std / math.sqrt(n)


def stats(values) -> dict:
    """Mean, sample standard deviation (NaN for one value), n and the values themselves."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        raise ValueError("stats of no values")
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else math.nan,
            "n": int(v.size), "values": v.tolist()}


def mean_sd(s: dict, digits: int = 2, percent: bool = False, signed: bool = False) -> str:
    """``"27.57 ± 0.07"`` from a dict with mean, std and n (``stats``, ``summarize``,
    ``paired``); no spread shown for a single value. ``percent`` scales by 100."""
    k = 100.0 if percent else 1.0
    sign = "+" if signed else ""
    text = f"{k * s['mean']:{sign}.{digits}f}"
    if s["n"] > 1 and math.isfinite(s["std"]):
        text += f" ± {k * s['std']:.{digits}f}"
    return text + (" %" if percent else "")


def difference_verdict(d: dict, expected_sign: int = 1, min_seeds: int = MIN_SEEDS) -> str:
    """The verdict on a seed-for-seed difference ``d`` (``paired``) whose sign the
    paper predicts (``expected_sign`` +1: the condition beats the baseline)."""
    if d["n"] < min_seeds:
        return f"inconclusive: {d['n']} seed(s), a spread needs {min_seeds}"
    h = half_width(d["std"], d["n"])
    lo, hi = d["mean"] - h, d["mean"] + h
    if expected_sign * lo > 0 and expected_sign * hi > 0:
        return "reproduced"
    if expected_sign * hi < 0 and expected_sign * lo < 0:
        return "not reproduced at this scale (the opposite, beyond noise)"
    if _every_seed(d, expected_sign):
        return TREND
    return "inconclusive (within noise)"


TREND = "a trend, not shown (the paper's sign on every seed; the 95 % interval includes zero)"

# A difference within ± 0.05 dB is "flat": the paper's own equivalent models (DCN and its
# decomposition, Table 1) differ by up to 0.041 dB.
PLATEAU_TOLERANCE = 0.05


def _every_seed(d: dict, sign: int) -> bool:
    values = d.get("values") or []
    return len(values) == d["n"] and all(sign * v > 0 for v in values)


def interval(d: dict) -> tuple[float, float]:
    """The 95 % interval ``(lo, hi)`` of the mean of ``d`` (``stats``, ``paired``); NaN for one value."""
    h = half_width(d["std"], d["n"])
    return d["mean"] - h, d["mean"] + h


def plateau_verdict(later: dict, earlier: dict, tolerance: float = PLATEAU_TOLERANCE,
                    min_seeds: int = MIN_SEEDS) -> str:
    """The verdict on "the gain saturates" (Fig. 9, A.4) from two seed-for-seed steps: ``earlier``
    (e.g. N = 5 - N = 1) and ``later`` (N = 15 - N = 5). A plateau is shown only by a flat
    ``later`` step, its 95 % interval within ``± tolerance``; a positive ``later`` step smaller
    than ``earlier`` is diminishing returns, not a plateau."""
    if later["n"] < min_seeds:
        return f"inconclusive: {later['n']} seed(s), a spread needs {min_seeds}"
    lo, hi = interval(later)
    if -tolerance <= lo and hi <= tolerance:
        return f"reproduced: flat within ± {tolerance:g}"
    rising = lo > 0 or _every_seed(later, +1)
    if rising and later["mean"] < earlier["mean"]:
        return ("diminishing returns, plateau not established (the later step is smaller on average, "
                + ("and still positive beyond noise)" if lo > 0 else "positive on every seed, not flat)"))
    if lo > 0:
        return "not reproduced at this scale: still rising, not slower on average"
    if hi < 0:
        return "not reproduced at this scale: falls beyond noise"
    return f"inconclusive (within noise): not flat within ± {tolerance:g}"


WEAK_POINTS = 3  # a Pearson r over this many points or fewer is weak evidence whatever its value


def correlation_verdict(r: dict, points: int, expected_sign: int = 1, min_seeds: int = MIN_SEEDS) -> str:
    """The verdict on a Pearson r (``stats`` of one r per seed, or of a single r) that the paper
    puts on the side ``expected_sign`` of zero, each r computed from ``points`` points. Over
    ``WEAK_POINTS`` points or fewer it is *weak*: two quantities that both rise over three
    points give r near 1, and no interval for r exists (``correlation_interval``)."""
    base = level_verdict(r, 0.0, above=expected_sign > 0, min_seeds=min_seeds)
    if points > WEAK_POINTS:
        return base
    side = {"reproduced": "its interval over the seeds lies on the paper's side"}.get(base, base)
    return f"weak: r from {points} points per seed; {side}"


def level_verdict(s: dict, threshold: float, above: bool = True, min_seeds: int = MIN_SEEDS) -> str:
    """The verdict on a level (mean ± std over ``n`` seeds) that the paper puts above (or
    below) ``threshold``."""
    if s["n"] < min_seeds:
        side = s["mean"] > threshold if above else s["mean"] < threshold
        return (f"inconclusive: {s['n']} seed(s), a spread needs {min_seeds} "
                f"({'on' if side else 'off'} the paper's side)")
    h = half_width(s["std"], s["n"])
    lo, hi = s["mean"] - h, s["mean"] + h
    sign = 1 if above else -1
    if sign * (lo - threshold) > 0 and sign * (hi - threshold) > 0:
        return "reproduced"
    if sign * (hi - threshold) < 0 and sign * (lo - threshold) < 0:
        return "not reproduced at this scale"
    return "inconclusive (within noise)"


def verdict_line(claim: str, ours: str, verdict: str, why: str = "") -> str:
    """The notebooks' one line per trend (printed and returned)."""
    text = f"paper: {claim}\n  ours: {ours}\n  verdict: {verdict}" + (f"\n  why: {why}" if why else "")
    print(text + "\n")
    return text


def correlation_interval(r: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % interval of a Pearson ``r`` from ``n`` points (Fisher's z): ``tanh(atanh r ±
    z / sqrt(n - 3))``. It treats the points as independent draws, so for the offsets of one
    model (Fig. 17) it says how firmly those points fix r, not how r varies over training
    seeds. NaN for n <= 3."""
    if n <= 3 or not math.isfinite(r):
        return math.nan, math.nan
    if abs(r) >= 1:
        return r, r
    h = z / math.sqrt(n - 3)
    return math.tanh(math.atanh(r) - h), math.tanh(math.atanh(r) + h)


def _get(result: dict, key: str):
    """The value at a dotted ``key`` of a result dict: ``"measures.offsets_vs_flow.psnr"``."""
    for part in key.split("."):
        result = result[part]
    return result


def summarize(results: list[dict], key: str) -> dict[str, dict]:
    """Per condition, ``stats`` of a dotted ``key`` over its seeds (the standard deviation of one
    seed is NaN: no spread) and the ``seeds``:
    ``summarize(load_results("fig5"), "measures.offsets_vs_flow.within_1px")``."""
    by_condition: dict[str, list] = {}
    for r in results:
        by_condition.setdefault(r["condition"], []).append((r["seed"], _get(r, key)))
    return {cond: {**stats(v for _, v in pairs), "seeds": [s for s, _ in pairs]}
            for cond, pairs in by_condition.items()}


def paired(results: list[dict], key: str, condition: str, baseline: str) -> dict:
    """Seed for seed, ``condition`` minus ``baseline`` of a dotted ``key`` over the seeds both
    have (same initial weights and batches; only the conditions' fields differ): ``stats`` of the
    differences (NaN spread with one seed, NaN mean with none) and the ``seeds``.
    ``paired(load_results("fig5"), "measures.offsets_vs_flow.psnr", "aligning", "sr_only")``."""
    by = {(r["condition"], r["seed"]): _get(r, key) for r in results}
    seeds = sorted(s for c, s in by if c == condition and (baseline, s) in by)
    if not seeds:
        return {"mean": math.nan, "std": math.nan, "n": 0, "values": [], "seeds": []}
    return {**stats(by[condition, s] - by[baseline, s] for s in seeds), "seeds": seeds}


# ------------------------------------------------------------------ the baseline's premise

GAIN_OVER_ZERO = "measures.offsets_vs_flow.psnr_gain_over_zero"
GAIN_OVER_ZERO_NEIGHBOURS = "measures.offsets_vs_flow.psnr_gain_over_zero_neighbours"
GAIN_OVER_REFERENCE = "measures.offsets_vs_flow.psnr_gain_over_reference_only"
PSNR = "measures.offsets_vs_flow.psnr"


def baseline_premise(results: list[dict], condition: str = "n1", min_seeds: int = MIN_SEEDS,
                     temporal: bool = True) -> dict:
    """Whether ``condition`` (fig9's G = N = 1 model, the baseline of Sec. 4's comparisons) uses
    its offsets: its PSNR gain over the same model with its offsets held at zero
    (``zero_offsets``), per seed, must be positive on every seed and its mean larger than the
    seed spread (sample standard deviation), over at least ``min_seeds`` seeds. Where every
    run records it, the gain over its *neighbours'* offsets held at zero
    (``psnr_gain_over_zero_neighbours``): EDVR aligns the reference frame with the same modules,
    and holding every frame's offsets at zero also disturbs the reference's own path, which
    can carry most of that gain (notebook 06). Older results record only the first, and the
    line says which was read.

    With ``temporal`` (for comparisons of PSNR), also whether what it aligns reaches its output:
    its gain over itself given the centre frame in place of its neighbours
    (``psnr_gain_over_reference_only``), by the same rule and larger than a flat difference
    (``PLATEAU_TOLERANCE``), where its results record it. A model
    whose offsets follow the motion but whose fusion takes nothing from the neighbours' content
    passes the first test (misaligned features hurt its fusion) and fails this one: PSNR
    differences between such models are not differences of alignment.

    Returns ``holds`` (bool), ``short`` (True while fewer than ``min_seeds`` seeds are in: the
    premise is not established yet, rather than failed), ``gain`` (``stats`` of the gains over
    zero offsets, with ``seeds``; None without runs), ``temporal`` (``stats`` of the gains over
    the reference alone, or None where not recorded or not asked), ``why`` and ``line``: the
    gains per seed and what follows, for a notebook to print beside a comparison."""
    runs = [r for r in results if r["condition"] == condition]
    neighbours_only = bool(runs) and all(_has(r, GAIN_OVER_ZERO_NEIGHBOURS) for r in runs)
    gains = summarize(runs, GAIN_OVER_ZERO_NEIGHBOURS if neighbours_only else GAIN_OVER_ZERO).get(condition)
    if gains is None:
        return {"holds": False, "short": True, "gain": None, "temporal": None, "why": f"{condition} not run",
                "line": f"{condition}: not run, no baseline to compare against"}
    per_seed = ", ".join(f"{v:+.2f}" for v in gains["values"])
    held = "its neighbours' offsets held at zero" if neighbours_only else "its offsets held at zero"
    text = f"{condition}'s gain over {held}: {per_seed} dB (seeds {gains['seeds']}" + (
        ")" if neighbours_only else "; every frame's offsets, the reference's own where the model aligns it)")
    if gains["n"] < min_seeds:
        holds, why = False, f"{gains['n']} seed(s): whether it aligns needs {min_seeds}"
    elif not all(v > 0 for v in gains["values"]):
        holds, why = False, "not positive on every seed: the baseline does not use its offsets"
    elif gains["mean"] <= gains["std"]:
        holds, why = False, (f"mean {gains['mean']:+.2f} dB within its seed spread "
                             f"({gains['std']:.2f} dB): not shown to use its offsets")
    else:
        holds, why = True, f"mean {mean_sd(gains, signed=True)} dB: the baseline uses its offsets"
    recorded = [r for r in runs if _has(r, GAIN_OVER_REFERENCE)]
    reference = summarize(recorded, GAIN_OVER_REFERENCE).get(condition) if temporal and recorded else None
    if reference is not None:
        text += (f"; over itself given the centre frame in place of its neighbours: "
                 f"{', '.join(f'{v:+.2f}' for v in reference['values'])} dB (seeds {reference['seeds']})")
        if holds and (reference["n"] < gains["n"] or not all(v > 0 for v in reference["values"])
                      or reference["mean"] <= max(reference["std"], PLATEAU_TOLERANCE)):
            holds = False
            seen = ("not measured on every seed" if reference["n"] < gains["n"]
                    else f"mean {mean_sd(reference, signed=True)} dB over the centre frame alone")
            why += (f"; but what it aligns does not reach its output: it takes nothing from its "
                    f"neighbours' content ({seen}), so PSNR differences between such models are not "
                    "differences of alignment")
    return {"holds": holds, "short": gains["n"] < min_seeds, "gain": gains, "temporal": reference, "why": why,
            "line": f"{text}; {why}"}


def _per_seed_cells(results: list[dict], key: str, conditions=None) -> dict[str, list[str]]:
    """Per condition (those of ``results`` in order of appearance, or ``conditions``): the value
    of ``key`` on every seed and their mean ± sd, as two cells (``"s0 +2.09, s1 -"``, "-" where
    a seed does not record it; "not run" without runs)."""
    by: dict[str, dict[int, float | None]] = {}
    for r in results:
        by.setdefault(r["condition"], {})[r["seed"]] = _get(r, key) if _has(r, key) else None
    cells = {}
    for cond in conditions or by:
        seeds = by.get(cond, {})
        values = [v for v in seeds.values() if v is not None]
        per_seed = ", ".join(f"s{s} {'-' if v is None else f'{v:+.2f}'}" for s, v in sorted(seeds.items()))
        cells[cond] = [per_seed or "not run", mean_sd(stats(values), signed=True) if values else "-"]
    return cells


def gains_over_zero(results: list[dict], conditions=None) -> list[list[str]]:
    """Per condition (those of ``results`` in order of appearance, or ``conditions``), its PSNR
    gain over the same model with its offsets held at zero on every seed and their mean ± sd:
    rows ``[condition, "s0 +2.09", ..., mean_sd]`` for ``paper.format_table`` (headers
    ``GAIN_HEADERS``), "-" for a model without offsets to hold (flow-guided)."""
    return [[cond, *cells] for cond, cells in _per_seed_cells(results, GAIN_OVER_ZERO, conditions).items()]


GAIN_HEADERS = ["condition", "gain over offsets held at zero, per seed (dB)", "mean ± sd (dB)"]


def gains_table(results: list[dict], conditions=None) -> list[list[str]]:
    """``gains_over_zero`` with two more columns: the PSNR gain over the same model given the
    centre frame in place of its neighbours (``psnr_gain_over_reference_only``: what the
    neighbours' content adds), per seed and mean ± sd, "-" where not recorded; headers
    ``GAINS_HEADERS``."""
    return _gain_columns(results, (GAIN_OVER_ZERO, GAIN_OVER_REFERENCE), conditions)


GAINS_HEADERS = GAIN_HEADERS + ["gain over the centre frame in place of the neighbours, per seed (dB)",
                                "mean ± sd (dB)"]


def gain_split(results: list[dict], conditions=None) -> list[list[str]]:
    """Where a model's gain over its offsets held at zero comes from, per condition and seed:
    holding every frame's offsets at zero (``GAIN_OVER_ZERO``; EDVR aligns the reference frame
    with the same modules, so this includes the reference's own path), the neighbours' offsets
    alone (``GAIN_OVER_ZERO_NEIGHBOURS``: what aligning the neighbours buys), and the centre frame
    in place of the neighbours (``GAIN_OVER_REFERENCE``: what the neighbours' content adds). Rows
    ``[condition, per seed, mean ± sd, per seed, mean ± sd, per seed, mean ± sd]`` under
    ``GAIN_SPLIT_HEADERS``; "-" where a run does not record a quantity (a model without offsets
    to hold, or measured before the split was recorded)."""
    return _gain_columns(results, (GAIN_OVER_ZERO, GAIN_OVER_ZERO_NEIGHBOURS, GAIN_OVER_REFERENCE),
                         conditions)


def _gain_columns(results: list[dict], keys, conditions=None) -> list[list[str]]:
    """Rows ``[condition, per seed, mean ± sd, ...]``: ``_per_seed_cells`` of each of ``keys``."""
    cells = [_per_seed_cells(results, key, conditions) for key in keys]
    return [[cond, *(c for column in cells for c in column[cond])] for cond in cells[0]]


GAIN_SPLIT_HEADERS = ["condition", "over every frame's offsets at 0, per seed (dB)", "mean ± sd",
                      "over the neighbours' offsets at 0, per seed (dB)", "mean ± sd",
                      "over the centre frame alone, per seed (dB)", "mean ± sd"]


WITHIN_1PX = "measures.offsets_vs_flow.within_1px"


def neighbour_use_verdict(gains: dict, min_seeds: int = MIN_SEEDS) -> str:
    """Whether a setting's models take anything from their neighbours' content, from ``stats`` of
    their gains over themselves given the centre frame alone (``psnr_gain_over_reference_only``),
    by the module's rule: one or two seeds are inconclusive; a 95 % interval inside
    ``± PLATEAU_TOLERANCE`` is flat (nothing taken); above zero and a mean beyond the tolerance,
    the neighbours reach the output; positive on every seed with an interval that touches zero, a
    trend, not shown."""
    if gains["n"] < min_seeds:
        return f"inconclusive: {gains['n']} seed(s), a spread needs {min_seeds}"
    lo, hi = interval(gains)
    if -PLATEAU_TOLERANCE < lo and hi < PLATEAU_TOLERANCE:
        return f"flat: the neighbours do not reach the output (95 % interval inside ± {PLATEAU_TOLERANCE} dB)"
    if lo > 0 and gains["mean"] > PLATEAU_TOLERANCE:
        return "the neighbours reach the output (95 % interval above zero)"
    if _every_seed(gains, 1):
        return ("a trend, not shown (positive on every seed; the 95 % interval includes zero or a flat "
                "difference)")
    if hi < 0:
        return "the neighbours cost the output (95 % interval below zero)"
    return "inconclusive (within noise)"


def neighbour_use(settings: dict[str, list[dict]], min_seeds: int = MIN_SEEDS) -> list[list[str]]:
    """One row per setting (label -> its runs, one condition, any seeds) for ``paper.format_table``
    (headers ``NEIGHBOUR_HEADERS``): within 1 px of the exact flow and PSNR (means ± sd over
    seeds; "-" for a model whose offsets were not scored), the gain over itself given the centre
    frame in place of every neighbour per seed and mean ± sd, and ``neighbour_use_verdict``. The
    question a setting must answer "yes" to before Sec. 4's PSNR comparisons mean anything about
    alignment (``baseline_premise``); runs that do not record the gain are left out of it."""
    rows = []
    for label, runs in settings.items():
        recorded = [r for r in runs if _has(r, GAIN_OVER_REFERENCE)]
        if not recorded:
            state = "not measured" if runs else "not run"
            rows.append([label, "-", "-", state, "-", "no runs with the measure" if runs else "not run"])
            continue
        within = stats(_get(r, WITHIN_1PX) for r in recorded)
        rows.append([label, mean_sd(within, 1, percent=True), mean_sd(stats(_get(r, PSNR) for r in recorded)),
                     *_gain_cells([_get(r, GAIN_OVER_REFERENCE) for r in recorded],
                                  [r["seed"] for r in recorded], min_seeds)])
    return rows


def _gain_cells(values: list[float], seeds: list[int], min_seeds: int) -> list[str]:
    """Gains over the centre frame alone as table cells: per seed, mean ± sd, the rule's verdict."""
    gains = {**stats(values), "seeds": seeds}
    per_seed = ", ".join(f"s{s} {v:+.2f}" for s, v in zip(seeds, gains["values"]))
    return [per_seed, mean_sd(gains, signed=True), neighbour_use_verdict(gains, min_seeds)]


NEIGHBOUR_HEADERS = ["setting", "within 1 px", "PSNR (dB)", "gain over the centre frame alone, per seed (dB)",
                     "mean ± sd (dB)", "verdict"]


TOLERANCE = "measures.flow_tolerance"


def flow_tolerance(runs: list[dict], min_seeds: int = MIN_SEEDS) -> list[list[str]]:
    """How exact the flow must be: one row per noise level of ``measures.flow_tolerance`` (a
    flow-taking model given the exact flow plus per-pixel noise, then DIS's flow) for
    ``paper.format_table`` (headers ``TOLERANCE_HEADERS``): the median end-point error of the
    flow given (mean over seeds), the gain over the model given the centre frame alone per seed
    and mean ± sd, and ``neighbour_use_verdict``. Runs without the measure are left out; the
    noise levels must be the same in every run."""
    recorded = [r for r in runs if _has(r, TOLERANCE)]
    if not recorded:
        raise ValueError("no run records measures.flow_tolerance (a flow-guided model's measure)")
    sigmas = _get(recorded[0], TOLERANCE)["sigmas"]
    if any(_get(r, TOLERANCE)["sigmas"] != sigmas for r in recorded):
        raise ValueError("the runs measured flow_tolerance at different noise levels")
    seeds, measured = [r["seed"] for r in recorded], [_get(r, TOLERANCE) for r in recorded]
    rows = []
    for i, sigma in enumerate(sigmas):
        epe = np.mean([t["median_epe"][i] for t in measured])
        rows.append([f"exact + noise, sigma {sigma:g} px", f"{epe:.2f}",
                     *_gain_cells([t["gain_over_reference_only"][i] for t in measured], seeds, min_seeds)])
    rows.append(["DIS", f"{np.mean([t['median_epe_dis'] for t in measured]):.2f}",
                 *_gain_cells([t["gain_dis"] for t in measured], seeds, min_seeds)])
    return rows


TOLERANCE_HEADERS = ["flow given", "median error (px)", "gain over the centre frame alone, per seed (dB)",
                     "mean ± sd (dB)", "verdict"]


def setting_difference(runs: list[dict], baseline_runs: list[dict], key: str) -> dict:
    """``paired`` across two settings run under different experiments or tags (each list one
    setting, any condition name): seed for seed, ``runs`` minus ``baseline_runs`` of a dotted
    ``key`` over the seeds both have. The pairing means what ``paired``'s does only where the
    two settings share every weight outside what differs and see the same batches (the Sec. 4
    sweep's ``seed_per_module``)."""
    for side, rs in (("runs", runs), ("baseline_runs", baseline_runs)):
        conditions = sorted({r["condition"] for r in rs})
        if len(conditions) > 1:
            raise ValueError(f"{side} must be one setting, got conditions {conditions}")
        if len({r["seed"] for r in rs}) < len(rs):
            raise ValueError(f"{side} has a seed twice")
    relabelled = ([{**r, "condition": "setting"} for r in runs]
                  + [{**r, "condition": "baseline"} for r in baseline_runs])
    return paired(relabelled, key, "setting", "baseline")


def setting_differences(pairs: dict[str, tuple[list[dict], list[dict]]],
                        keys: dict[str, str] | None = None, min_seeds: int = MIN_SEEDS) -> list[list[str]]:
    """One row per pair of settings (label -> ``(runs, baseline_runs)``; two conditions of one
    experiment are two such lists) and quantity (``keys``: label -> dotted key; by default
    ``SPLIT``) for ``paper.format_table`` (headers ``DIFFERENCE_HEADERS``): the seed-for-seed
    difference (``setting_difference``) per seed, its mean ± sd and ``difference_verdict`` with
    the expectation that the setting beats its baseline.

    ``SPLIT`` splits a PSNR difference in two that add up to it seed for seed: the difference of
    the two models given the centre frame in place of every neighbour (single-image SR: capacity,
    not alignment) and the difference of their gains over that (what reaches the output through
    the neighbours, the part alignment can claim). Where a baseline takes nothing from its
    neighbours (``baseline_premise``), the second row still says whether the setting takes more."""
    keys = keys or SPLIT
    rows = []
    for label, (runs, baseline_runs) in pairs.items():
        for quantity, key in keys.items():
            d = setting_difference([r for r in runs if _has(r, key)],
                                   [r for r in baseline_runs if _has(r, key)], key)
            if d["n"] == 0:
                rows.append([label, quantity, "no seed in both", "-", "not run"])
                continue
            per_seed = ", ".join(f"s{s} {v:+.2f}" for s, v in zip(d["seeds"], d["values"]))
            rows.append([label, quantity, per_seed, mean_sd(d, signed=True),
                         difference_verdict(d, +1, min_seeds)])
    return rows


SPLIT = {"PSNR": PSNR,
         "PSNR given the centre frame alone": "measures.offsets_vs_flow.psnr_reference_only",
         "gain over the centre frame alone (through the neighbours)": GAIN_OVER_REFERENCE}

DIFFERENCE_HEADERS = ["setting minus its baseline", "quantity", "per seed (dB)", "mean ± sd (dB)", "verdict"]


def premise_verdict(verdict: str, premise: dict) -> str:
    """``verdict`` where the baseline aligns (``baseline_premise``); else no verdict, why (the
    premise fails, or has too few seeds yet), and what the rule alone would say."""
    if premise["holds"]:
        return verdict
    state = "is not established yet" if premise.get("short") else "fails"
    return f"no verdict: the baseline's premise {state} ({premise['why']}); by the rule alone: {verdict}"


# ------------------------------------------------------------------ a faster path against float32

PARITY = {"within 1 px of the exact flow (%)": "measures.offsets_vs_flow.within_1px",
          "within 1 px, scenes of other seeds (%)": "measures.motion_sets.within_1px_other_seeds",
          "PSNR (dB)": PSNR,
          "gain over offsets held at zero (dB)": GAIN_OVER_ZERO,
          "gain over the centre frame alone (dB)": GAIN_OVER_REFERENCE}
# What "learns as float32 does" asks of a fast path (issue "Alignment, round 2"): the setting's
# two targets, the share of offsets within 1 px of the exact flow and the PSNR, each within
# float32's seed spread (parity_verdict); the other rows are shown, not asked.
PARITY_DECIDES = ("within 1 px of the exact flow (%)", "PSNR (dB)")
PARITY_HEADERS = ["quantity", "float32, per seed", "float32 mean ± sd", "fast path, per seed",
                  "fast path minus float32, per seed", "mean ± sd", "verdict"]


def parity_verdict(d: dict, baseline: dict, min_seeds: int = MIN_SEEDS) -> str:
    """Whether a setting learns as its baseline does (issue "Alignment, round 2": the CPU fast
    path against float32), from the seed-for-seed difference ``d`` (``paired``) and the
    baseline's own spread over seeds (``stats``): *within the seed spread* when the difference's
    95 % interval includes zero and its mean is no larger than the baseline's sample standard
    deviation; *different beyond noise* when the interval excludes zero; else *larger than the
    seed spread*. Equal on every seed is not asked: the paths round differently, and a rounding
    difference grows over training as a different seed would."""
    if d["n"] < min_seeds or baseline["n"] < min_seeds:
        return f"inconclusive: {min(d['n'], baseline['n'])} seed(s), a spread needs {min_seeds}"
    lo, hi = interval(d)
    if lo > 0 or hi < 0:
        return "different beyond noise"
    if abs(d["mean"]) <= baseline["std"]:
        return "within the seed spread"
    return "larger than the seed spread (the interval includes zero)"


def equivalence_verdict(d: dict, baseline: dict, tolerance: float = PLATEAU_TOLERANCE,
                        min_seeds: int = MIN_SEEDS) -> str:
    """The verdict on "the two perform alike" (Table 1: a DCN and its decomposition, "similar
    performance"), from the seed-for-seed difference ``d`` (``paired``) and the baseline's spread
    over seeds (``stats``). Alike is shown only as a plateau is: the difference's 95 % interval
    within ``± tolerance`` (the paper's own equivalent models differ by up to 0.041 dB). An
    interval that excludes zero is a difference beyond noise; anything else cannot tell, and
    says whether the difference is within the baseline's seed spread (``parity_verdict``)."""
    if d["n"] < min_seeds:
        return f"inconclusive: {d['n']} seed(s), a spread needs {min_seeds}"
    lo, hi = interval(d)
    if -tolerance <= lo and hi <= tolerance:
        return f"reproduced: alike within ± {tolerance:g} dB"
    spread = parity_verdict(d, baseline, min_seeds)
    if spread == "different beyond noise":
        return "not reproduced at this scale: they differ beyond noise"
    return (f"inconclusive: {spread}, not shown alike (the 95 % interval [{lo:+.2f}, {hi:+.2f}] is "
            f"wider than ± {tolerance:g})")


def twins(table1: list[dict], g: int, k: int, key: str = PSNR) -> tuple[dict, dict | None]:
    """Table 1's twins of ``G = g``, kernel ``k`` (``dcn-g{g}-k{k}`` and ``decomposed-g{g}-k{k}``):
    the seed-for-seed difference decomposition - DCN of ``key`` (``paired``) and the DCN's own
    ``stats`` over seeds (None without DCN runs), what ``equivalence_verdict`` reads."""
    suffix = f"-g{g}-k{k}"
    pairs = [dict(r, condition=r["condition"].removesuffix(suffix)) for r in table1
             if r["condition"].endswith(suffix)]
    return paired(pairs, key, "decomposed", "dcn"), summarize(pairs, key).get("dcn")


def precision_parity(runs: list[dict], baseline_runs: list[dict], keys: dict[str, str] | None = None,
                     min_seeds: int = MIN_SEEDS) -> list[list[str]]:
    """One row per quantity (``keys``, by default ``PARITY``) for ``paper.format_table`` (headers
    ``PARITY_HEADERS``): the baseline's values per seed and mean ± sd, the setting's, their
    seed-for-seed difference (``setting_difference``) and ``parity_verdict``. Shares (a key
    naming ``within_1px``) are shown in percent. Three seeds can show a difference, not that
    two paths are the same: "within the seed spread" says no difference beyond the seeds' own."""
    keys = keys or PARITY
    rows = []
    for quantity, key in keys.items():
        share = "within_1px" in key
        k = 100.0 if share else 1.0
        runs_k = [r for r in runs if _has(r, key)]
        base_k = [r for r in baseline_runs if _has(r, key)]
        if not runs_k or not base_k:
            rows.append([quantity, "-", "-", "-", "-", "-", "not run"])
            continue
        base = stats(_get(r, key) for r in base_k)
        d = setting_difference(runs_k, base_k, key)
        cells = [", ".join(f"s{r['seed']} {k * _get(r, key):.2f}" for r in sorted(rs, key=itemgetter("seed")))
                 for rs in (base_k, runs_k)]
        diffs = ", ".join(f"s{s} {k * v:+.2f}" for s, v in zip(d["seeds"], d["values"]))
        rows.append([quantity, cells[0], mean_sd(base, percent=share), cells[1], diffs or "no seed in both",
                     mean_sd(d, signed=True, percent=share) if d["n"] else "-",
                     parity_verdict(d, base, min_seeds) if d["n"] else "not run"])
    return rows


def learns_as_baseline(rows: list[list[str]]) -> bool:
    """Whether every quantity of ``PARITY_DECIDES`` in ``precision_parity``'s ``rows`` is within
    the baseline's seed spread."""
    verdicts = {r[0]: r[-1] for r in rows}
    return all(verdicts.get(q) == "within the seed spread" for q in PARITY_DECIDES)


# ------------------------------------------------------------------ the overview (notebook 09)

COLLAPSE_DB = 0.05  # dB: a run whose PSNR is this close to EDVR's bilinear base has learned nothing


def collapsed(result: dict, bilinear_psnr: float | None = None) -> bool:
    """Whether a run ended at EDVR's bilinear base (what an untrained EDVR outputs): its PSNR on
    the held-out scenes within ``COLLAPSE_DB`` of the base's, which the measure records
    (``psnr_bilinear_base``) or, for results measured before it did, ``bilinear_psnr`` gives."""
    m = result["measures"]["offsets_vs_flow"]
    base = m.get("psnr_bilinear_base", bilinear_psnr)
    if base is None:
        raise ValueError(f"{result.get('run', 'a run')} records no bilinear base PSNR: pass bilinear_psnr")
    return abs(m["psnr"] - base) < COLLAPSE_DB


def fidelity_verdict(d: dict, without_collapsed: bool | int, with_collapsed: bool | int,
                     min_seeds: int = MIN_SEEDS) -> str:
    """Sec. 4.3, Table 3: without the offset-fidelity loss the training diverges (offsets overflow,
    EDVR degrades), with it it does not, and PSNR is higher. ``d``: with - without (``paired``);
    ``without_collapsed`` / ``with_collapsed``: on how many of ``d``'s seeds each run ended at the
    bilinear base (``collapsed``), or a bool for all or none of them. The loss is credited only
    where the run without it collapses on every seed and the run with it on none; with fewer
    than ``min_seeds`` seeds the verdict is inconclusive and says only what happened."""
    n = d["n"]
    wo, wi = (n if c is True else 0 if c is False else int(c) for c in (without_collapsed, with_collapsed))
    seen = ("both runs collapse to the bilinear base, with and without the loss" if wo == wi == n else
            "only the run with the loss collapses" if wi == n and wo == 0 else
            "only the run without the loss collapses" if wo == n and wi == 0 else
            "no run collapses" if wo == wi == 0 else
            f"runs collapse to the bilinear base: without the loss on {wo} of {n} seeds, with it on {wi}")
    if n < min_seeds:
        return f"inconclusive: {n} seed(s), a spread needs {min_seeds}; {seen}"
    if wi:
        return f"not reproduced at this scale: {seen}"
    if wo == n:
        return f"the loss prevents the collapse (in kind); PSNR: {difference_verdict(d, +1)}"
    return f"{seen}; PSNR: {difference_verdict(d, +1)}"


class Provoking(NamedTuple):
    """A setting of table3 meant to provoke the overflow of Sec. 4.3 at this scale: the suffix of
    its conditions (the DCN without the loss is ``dcn_<suffix>``, with it ``with_loss``), its
    words, its control (a model whose offsets cannot overflow, trained in the same setting:
    whether the setting alone, without any overflow, breaks training) and what that control is;
    ``label`` names it in the overview's claims."""
    suffix: str
    words: str
    control: str
    control_words: str
    label: str
    with_loss: str

    def pairs(self) -> dict[str, str]:
        """Its runs with the loss -> the same model without it (of ``FIDELITY_OVERFLOW_PAIRS``)."""
        return {w: wo for w, wo in FIDELITY_OVERFLOW_PAIRS.items() if w.endswith(f"_{self.suffix}")}


PROVOKING = (
    Provoking("lr4x", "4x the rate", "flow_guided_lr4x",
              "flow-guided alignment, whose offsets cannot overflow", "4x learning rate",
              "dcn_fidelity_lr4x"),
    Provoking("align4x", "4x the rate on the alignment module", "flow_frozen_align4x",
              "alignment by the exact flow with its offset layers frozen, whose offsets cannot overflow",
              "the alignment module at 4x the rate", "dcn_fidelity_all_align4x"),
)


def rate_premise(table3: list[dict], bilinear_psnr: float | None = None,
                 setting: Provoking = PROVOKING[0]) -> dict:
    """Whether a ``setting`` meant to provoke the overflow (``PROVOKING``; 4x the learning rate by
    default) can test the offset-fidelity loss (Table 3, Sec. 4.3): the loss is meant to prevent a
    breakdown *by overflow*, so a model whose offsets cannot overflow (``setting.control``) must
    still train there. Returns ``holds`` (True, False, or None where the control was not run)
    and ``line``, what the control shows."""
    control = setting.control
    runs = [r for r in table3 if r["condition"] == control]
    if not runs:
        return {"holds": None, "line": f"{control} not run: whether {setting.words} alone breaks training "
                                       "is not known"}
    down = [r for r in runs if collapsed(r, bilinear_psnr)]
    if down:
        return {"holds": False, "line": (
            f"at {setting.words}, {setting.control_words}, ends at the bilinear base too ({control}: on "
            f"{len(down)} of {len(runs)} seed(s)): the rate alone breaks training, so these runs "
            "cannot show whether the loss prevents a breakdown by overflow")}
    return {"holds": True, "line": (f"at {setting.words}, {setting.control_words}, trains ({control}: on "
                                    f"{len(runs)} seed(s)): the rate alone does not break training")}


def _at_the_rate(verdict: str, premise: dict) -> str:
    """A provoking setting's verdict under ``rate_premise``: none where the setting alone breaks
    training."""
    if premise["holds"] is False:
        return f"no verdict: {premise['line']}; by the rule alone: {verdict}"
    return verdict


def _row(claim: str, theirs: str, ours: str, seeds, verdict: str) -> dict:
    return {"claim": claim, "paper": theirs, "ours": ours, "seeds": seeds, "verdict": verdict}


def _not_run(claim: str, theirs: str) -> dict:
    return _row(claim, theirs, "not run", 0, "no verdict: not run")


def _fig9_points(fig9: list[dict]) -> tuple[str, ...]:
    """Fig. 9's conditions that every seed of n1 has (n1, n5, n15 with 3 seeds; n3, n9, n25
    have one), in the order of N."""
    seeds = {r["seed"] for r in fig9 if r["condition"] == "n1"}
    have = {c for c in {r["condition"] for r in fig9}
            if seeds and seeds <= {r["seed"] for r in fig9 if r["condition"] == c}}
    return tuple(sorted(have, key=lambda c: int(c[1:])))


def _per_seed_r(fig9: list[dict], conditions=("n1", "n5", "n15")) -> list[float]:
    """Fig. 9's Pearson r of PSNR against diversity, one r per seed over ``conditions``."""
    runs = {(r["condition"], r["seed"]): r["measures"] for r in fig9}
    out = []
    for seed in sorted({s for _, s in runs}):
        if all((c, seed) in runs for c in conditions):
            pts = [(runs[c, seed]["diversity"]["diversity"], runs[c, seed]["offsets_vs_flow"]["psnr"])
                   for c in conditions]
            out.append(pearson_r(*zip(*pts)))
    return out


def _gain_per_million(runs: list[dict], baseline=lambda condition: "n1") -> list[dict]:
    """Per run with its seed's ``baseline(condition)`` (fig9: N = 1): PSNR gain over that
    baseline per million parameters added (Fig. 16 right, A.2), as ``{"condition", "seed",
    "gain_per_m"}`` for ``summarize`` / ``paired``; runs that add no parameters are left out."""
    by = {(r["condition"], r["seed"]): r for r in runs}
    out = []
    for r in runs:
        base = by.get((baseline(r["condition"]), r["seed"]))
        if base is None or base is r or not (r.get("num_params") and base.get("num_params")):
            continue
        extra = (r["num_params"] - base["num_params"]) / 1e6
        if extra > 0:
            gain = _get(r, "measures.offsets_vs_flow.psnr") - _get(base, "measures.offsets_vs_flow.psnr")
            out.append({"condition": r["condition"], "seed": r["seed"], "gain_per_m": gain / extra})
    return out


# ------------------------------------------------------------------ Fig. 16's grid (notebook 06)

FIG16_HEADERS = ["G", "N", "parameters", "PSNR, synthetic (dB)", "gain over N = 1, same G (dB)",
                 "gain per 1M parameters (dB)", "diversity (px)", "seeds"]


def fig16_runs(fig9: list[dict], fig16: list[dict]) -> list[dict]:
    """fig9's runs (G = 1) renamed ``g1-nN`` beside fig16's ``gG-nN``: one grid of G x N."""
    return [dict(r, condition=f"g1-{r['condition']}") for r in fig9] + list(fig16)


def _gn(condition: str) -> tuple[int, int]:
    g, n = condition.split("-")
    return int(g[1:]), int(n[1:])


def fig16_grid(fig9: list[dict], fig16: list[dict]) -> list[dict]:
    """Fig. 16 (A.4, A.2) over G x N: per grid point (fig9's G = 1 beside fig16's G > 1), ``g``,
    ``n``, ``params`` (one count; every seed has the same model), and ``stats`` over its seeds of
    ``psnr`` (held-out synthetic scenes), ``gain`` (over N = 1 of the same G, seed for seed),
    ``per_m`` (that gain per million parameters added) and ``diversity``; None where a grid
    point has no N = 1 or no such measure. Sorted by G, then N."""
    runs = fig16_runs(fig9, fig16)
    psnr = summarize(runs, PSNR)
    per_m = summarize(_gain_per_million(runs, lambda c: f"g{_gn(c)[0]}-n1"), "gain_per_m")
    div_key = "measures.diversity.diversity"
    div = summarize([r for r in runs if _has(r, div_key)], div_key)
    grid = []
    for cond in sorted(psnr, key=_gn):
        g, n = _gn(cond)
        gain = paired(runs, PSNR, cond, f"g{g}-n1") if n > 1 else None
        grid.append({"condition": cond, "g": g, "n": n,
                     "params": next(r.get("num_params") for r in runs if r["condition"] == cond),
                     "psnr": psnr[cond], "gain": gain if gain and gain["n"] else None,
                     "per_m": per_m.get(cond), "diversity": div.get(cond)})
    return grid


def fig16_table(grid: list[dict]) -> list[list[str]]:
    """``fig16_grid`` as rows for ``paper.format_table`` (``FIG16_HEADERS``)."""
    def cell(s, **fmt):
        return mean_sd(s, **fmt) if s else "-"

    return [[str(p["g"]), str(p["n"]), f"{p['params'] / 1e3:.0f}k" if p["params"] else "-",
             cell(p["psnr"], digits=3), cell(p["gain"], digits=3, signed=True),
             cell(p["per_m"], digits=2, signed=True), cell(p["diversity"], digits=3),
             ", ".join(map(str, p["psnr"]["seeds"]))] for p in grid]


def fig16_verdicts(fig9: list[dict], fig16: list[dict]) -> list[str]:
    """A.4's "the PSNR improves with G": each G > 1 against G = 1 at the same N, seed for seed,
    by the rule above, under the N = 1 baseline's premise (``baseline_premise`` on fig9). Prints
    and returns one ``verdict_line`` per (G, N) of fig16."""
    runs, premise = fig16_runs(fig9, fig16), baseline_premise(fig9)
    lines = []
    for cond in sorted({r["condition"] for r in fig16}, key=_gn):
        g, n = _gn(cond)
        claim = f"PSNR improves with G (up to +{paper.A4_G_GAIN_MAX} dB, A.4): G = {g} - G = 1 at N = {n}"
        lines.append(_psnr_step_line(claim, paired(runs, PSNR, cond, f"g1-n{n}"), premise,
                                     "G = 1 not run at this N"))
    return lines


def _psnr_step_line(claim: str, d: dict, premise: dict, missing: str = "not run") -> str:
    """The ``verdict_line`` of a PSNR step ``d`` (``paired``) that the paper says is positive:
    per seed, mean ± sd, the verdict under ``premise``; ``missing`` where nothing was paired."""
    if not d["n"]:
        return verdict_line(claim, missing, "no verdict: not run")
    per_seed = ", ".join(f"s{s} {v:+.3f}" for s, v in zip(d["seeds"], d["values"]))
    return verdict_line(claim, f"{mean_sd(d, 3, signed=True)} dB ({per_seed})",
                        premise_verdict(difference_verdict(d, +1), premise))


def _overflow_seen(result: dict) -> str:
    """What a run's overflow record says: where and when it first overflowed, or that it did not."""
    events = result["train"].get("overflow") or []
    name = f"{result['condition']} s{result['seed']}"
    if not events:
        return f"{name}: no overflow in {result['train']['iterations']} iterations"
    first = events[0]
    return (f"{name}: overflow from iteration {first['iter']} ({first['level']}, mean |offset| "
            f"{first['mean_abs']:.0f} px)")


def _overflow_verdict(runs: list[dict]) -> str:
    """Overflow is shown only where every run overflows; where some do, how many, and where."""
    seeds = len({r["seed"] for r in runs})
    loud = sum(bool(r["train"].get("overflow")) for r in runs)
    over = sorted({e["level"] for r in runs for e in r["train"].get("overflow") or []})
    seen = (f"overflow at this scale, in {', '.join(over)}, far earlier than the paper's" if over
            else "no overflow at this scale")
    some = bool(over) and loud < len(runs)
    if some:
        seen = f"{loud} of {len(runs)} runs overflow; {seen}"
    if seeds < MIN_SEEDS:
        return f"inconclusive: {seeds} seed(s), a spread needs {MIN_SEEDS}; {seen}"
    return f"not shown on every seed: {seen}" if some else seen


# table3's runs with the offset-fidelity loss in a provoking setting -> the same model without it
FIDELITY_OVERFLOW_PAIRS = {"dcn_fidelity_lr4x": "dcn_lr4x", "n1_fidelity_all_lr4x": "n1_lr4x",
                           "dcn_fidelity_all_align4x": "dcn_align4x"}


def _fidelity_levels(result: dict) -> list[str]:
    """The offset levels a run's offset-fidelity loss acted on, from its provenance."""
    try:
        return list(result["provenance"]["profile"]["train"]["offset_fidelity_levels"])
    except (KeyError, TypeError):
        return ["levels not recorded"]


def fidelity_overflow_verdict(table3: list[dict], min_seeds: int = MIN_SEEDS, pairs=None) -> str:
    """Sec. 3.4, 4.3: "our loss successfully avoids the overflow of offsets". Per model of
    ``FIDELITY_OVERFLOW_PAIRS`` run with the loss, seed for seed against the same model and seed
    without it: the loss is credited in kind only where, on at least ``min_seeds`` seeds, every
    run without it overflows and none with it does; a run with the loss that overflows where the
    one without it did is "not reproduced"; without an overflow to avoid there is no verdict.
    What happened is said per model in every case. ``pairs``: the with -> without names to read
    (all of ``FIDELITY_OVERFLOW_PAIRS`` by default)."""
    by = {(r["condition"], r["seed"]): r for r in table3}
    parts, verdicts = [], []
    for with_name, without_name in (FIDELITY_OVERFLOW_PAIRS if pairs is None else pairs).items():
        seeds = sorted(seed for (cond, seed) in by if cond == with_name)
        if not seeds:
            continue
        pairs = [(by[(with_name, s)], by.get((without_name, s))) for s in seeds]
        over_with = [s for s, (w, _) in zip(seeds, pairs) if w["train"].get("overflow")]
        paired_seeds = [s for s, (_, wo) in zip(seeds, pairs) if wo is not None]
        over_without = [s for s, (_, wo) in zip(seeds, pairs) if wo and wo["train"].get("overflow")]
        levels = ", ".join(_fidelity_levels(pairs[0][0]))
        parts.append(f"{with_name} (the loss on {levels}): overflow on {len(over_with)} of {len(seeds)} "
                     f"seed(s); {without_name}: on {len(over_without)} of {len(paired_seeds)}")
        if len(paired_seeds) < min_seeds:
            verdicts.append(f"{with_name}: inconclusive, {len(paired_seeds)} paired seed(s), "
                            f"a verdict needs {min_seeds}")
        elif len(over_without) < len(paired_seeds):
            verdicts.append(f"{with_name}: no verdict, the run without the loss does not overflow on every "
                            "seed (nothing to avoid)")
        elif any(s in over_with for s in paired_seeds):
            verdicts.append(f"{with_name}: not reproduced, it overflows with the loss too")
        else:
            verdicts.append(f"{with_name}: the loss avoids the overflow (in kind)")
    return "; ".join(verdicts + parts)


OVERVIEW_EXPERIMENTS = ("fig5", "table1", "fig9", "fig16", "table4", "fig17", "table3", "table2")


def overview(results: dict[str, list[dict]], bilinear_psnr: float | None = None) -> list[dict]:
    """Every number the paper states beside ours, one row per claim: ``claim``, ``paper`` (from
    ``dalign_nb.paper``), ``ours`` (mean ± sd over seeds), ``seeds``, ``verdict`` (by the rules
    above) and ``experiments`` (the experiments whose runs the row reads; ``overview_of``).
    ``results``: experiment name -> its result dicts (``experiments.load_results``); a missing
    experiment gives a "not run" row. ``bilinear_psnr``: EDVR's bilinear base on the
    held-out scenes, for results that do not record it (``collapsed``)."""
    R = {name: results.get(name, []) for name in OVERVIEW_EXPERIMENTS}
    rows = []
    tagged = 0

    def reads(*names):  # the experiments whose runs the rows added since the last call read
        nonlocal tagged
        for row in rows[tagged:]:
            row["experiments"] = names
        tagged = len(rows)

    theirs = f"> {100 * paper.FIG5_SHARE_WITHIN_1PX:.0f} % (PWC-Net flow)"
    within = summarize(R["fig5"], "measures.offsets_vs_flow.within_1px")
    for condition, setting in (("aligning", "align"), ("round2", "align2")):
        claim = f"Fig. 5: G = N = 1 offsets within 1 px of the flow ({setting}: {condition})"
        w = within.get(condition)
        rows.append(_row(claim, theirs, f"{mean_sd(w, 1, percent=True)} (exact flow)", w["n"],
                         level_verdict(w, paper.FIG5_SHARE_WITHIN_1PX)) if w else _not_run(claim, theirs))
    reads("fig5")

    t1 = R["table1"]
    for g, k in ((1, 1), (1, 3), (8, 3)):
        claim = f"Table 1: a DCN and its decomposition perform alike (decomposition - DCN, G = {g}, k = {k})"
        theirs = f"{paper.difference(paper.TABLE1_REDS4, 'decomposition', 'DCN', (g, k)):+.3f} dB"
        d, dcn_psnr = twins(t1, g, k)
        rows.append(_row(claim, theirs, f"{mean_sd(d, 3, signed=True)} dB", d["n"],
                         equivalence_verdict(d, dcn_psnr)) if d["n"] else _not_run(claim, theirs))
    reads("table1")

    fig9 = R["fig9"]
    premise = baseline_premise(fig9)  # for PSNR: its offsets used, and its neighbours' content
    offsets_premise = baseline_premise(fig9, temporal=False)  # for the offsets' own structure
    claim = "Sec. 4's baseline: G = N = 1 beats its offsets held at zero (premise of the rows below)"
    g, t, theirs = premise["gain"], premise["temporal"], "assumed (its offsets follow the flow, Fig. 5)"
    ours = g and f"{mean_sd(g, 2, signed=True)} dB" + (
        f"; over the centre frame in place of its neighbours {mean_sd(t, 2, signed=True)} dB" if t else "")
    if premise["holds"]:
        verdict = "holds"
    elif offsets_premise["holds"]:
        verdict = f"holds for the offsets' own structure, not for PSNR: {premise['line']}"
    else:
        verdict = f"{'not established yet' if premise['short'] else 'does not hold'}: {premise['line']}"
    rows.append(_row(claim, theirs, ours, g["n"], verdict) if g else _not_run(claim, theirs))
    rows[-1]["premise"] = True
    steps = {}
    for cond, base, theirs in (("n5", "n1", f"+{paper.SEC42_G1_N1_TO_N5_GAIN} dB (A.4)"),
                               ("n15", "n1", f"rises to the {paper.FIG9_PSNR_PLATEAU} dB plateau"),
                               ("n15", "n5", f"saturates (at about {paper.FIG9_PSNR_PLATEAU} dB)")):
        claim = f"Fig. 9: PSNR, N = {cond[1:]} - N = {base[1:]} (G = 1)"
        d = steps[cond, base] = paired(fig9, "measures.offsets_vs_flow.psnr", cond, base)
        if not d["n"]:
            rows.append(_not_run(claim, theirs))
            continue
        verdict = (plateau_verdict(d, steps["n5", "n1"]) if (cond, base) == ("n15", "n5")
                   else difference_verdict(d, +1))
        rows.append(_row(claim, theirs, f"{mean_sd(d, 3, signed=True)} dB", d["n"],
                         premise_verdict(verdict, premise)))
    # beyond the paper: the part of those steps that reaches the output through the neighbours
    # (SPLIT), which needs only a baseline that uses its offsets
    recorded = [r for r in fig9 if _has(r, GAIN_OVER_REFERENCE)]
    for cond in ("n5", "n15"):
        claim = (f"Fig. 9, beyond the paper: gain over the centre frame alone (through the neighbours), "
                 f"N = {cond[1:]} - N = 1")
        theirs = "not measured (Sec. 4.2: more offsets, better alignment)"
        d = paired(recorded, GAIN_OVER_REFERENCE, cond, "n1")
        rows.append(_row(claim, theirs, f"{mean_sd(d, 3, signed=True)} dB", d["n"],
                         premise_verdict(difference_verdict(d, +1), offsets_premise))
                    if d["n"] else _not_run(claim, theirs))

    claim = "A.4: parameters that N = 1 -> 5 adds (G = 1)"
    params = {r["condition"]: r.get("num_params") for r in fig9}
    if params.get("n1") and params.get("n5"):
        rows.append(_row(claim, f"{paper.A4_N1_TO_N5_EXTRA_PARAMS // 1000}K (EDVR-M, 64 features)",
                         f"{(params['n5'] - params['n1']) / 1e3:+.1f}K (32 features)", 0,
                         "a count, not a finding: the offset branch grows with the model's width"))
    else:
        rows.append(_not_run(claim, f"{paper.A4_N1_TO_N5_EXTRA_PARAMS // 1000}K (EDVR-M)"))
    claim = "Fig. 16 (A.2): PSNR gain over N = 1 per 1M parameters added falls with N (N = 25 - N = 5)"
    theirs = " / ".join(f"{v} dB at N = {n}" for n, v in paper.A2_GAIN_PER_M_PARAMS.items())
    per_m = _gain_per_million(fig9)
    d = paired(per_m, "gain_per_m", "n25", "n5")
    ours = ", ".join(f"N = {c[1:]}: {mean_sd(summarize(per_m, 'gain_per_m')[c], signed=True)}"
                     for c in ("n5", "n25") if any(r["condition"] == c for r in per_m))
    rows.append(_row(claim, theirs, f"{ours} dB per 1M", d["n"],
                     premise_verdict(difference_verdict(d, -1), premise) if d["n"] else "not run: N = 25")
                if ours else _not_run(claim, theirs))

    claim = "Fig. 9: diversity rises with N, N = 15 - N = 5 (N = 1 has none by definition)"
    d = paired(fig9, "measures.diversity.diversity", "n15", "n5")
    rows.append(_row(claim, "rises, then saturates", f"{mean_sd(d, 3, signed=True)} px", d["n"],
                     premise_verdict(difference_verdict(d, +1), offsets_premise))
                if d["n"] else _not_run(claim, "rises, then saturates"))

    claim = "Fig. 9: Pearson r of PSNR and diversity"
    theirs = f"{paper.FIG9_PEARSON_R} (six values of N)"
    points = _fig9_points(fig9)
    rs = _per_seed_r(fig9, points) if len(points) >= 3 else []
    rows.append(_row(claim, theirs, f"{mean_sd(stats(rs))} (per seed, {len(points)} values of N)", len(rs),
                     premise_verdict(correlation_verdict(stats(rs), len(points)), premise))
                if rs else _not_run(claim, theirs))

    for key, what in (("diversity_auc_occlusion", "occlusion"), ("diversity_auc_mean_offset_error",
                                                                  "the mean offset's misses")):
        claim = f"Fig. 6: diversity larger where a flow fails (ROC AUC for {what}, N = 15)"
        auc = summarize(fig9, f"measures.diversity.{key}").get("n15")
        theirs = "shown, not measured (> 0.5)"
        rows.append(_row(claim, theirs, mean_sd(auc, 3), auc["n"],
                         premise_verdict(level_verdict(auc, 0.5), offsets_premise))
                    if auc else _not_run(claim, theirs))
    reads("fig9")

    theirs = f"up to +{paper.A4_G_GAIN_MAX} dB over G"
    grid_runs = fig16_runs(fig9, R["fig16"])
    psnr = summarize(grid_runs, PSNR)
    for n in (1, 5):
        claim = f"Fig. 16: PSNR, G = 4 - G = 1 (N = {n})"
        d = paired(grid_runs, PSNR, f"g4-n{n}", f"g1-n{n}")
        if d["n"]:  # against the G = 1 mean over all its seeds, not only the seeds G = 4 has
            g1, g4 = psnr[f"g1-n{n}"], psnr[f"g4-n{n}"]
            ours = (f"{g4['mean'] - g1['mean']:+.3f} dB against the G = 1 mean of {g1['n']} seeds "
                    f"(seed for seed: {mean_sd(d, 3, signed=True)} dB)")
            verdict = premise_verdict(difference_verdict(d, +1), premise)
            rows.append(_row(claim, theirs, ours, d["n"], verdict))
        else:
            rows.append(_not_run(claim, theirs))
    reads("fig16", "fig9")

    claim = "Table 4: feature - image warping"
    theirs = f"{paper.difference(paper.TABLE4_REDS4, 'feature warping', 'image warping'):+.3f} dB"
    feature = [dict(r, condition="feature_warping") for r in fig9 if r["condition"] == "n1"]
    d = paired(R["table4"] + feature, "measures.offsets_vs_flow.psnr", "feature_warping",
                           "image_warping")
    rows.append(_row(claim, theirs, f"{mean_sd(d, 3, signed=True)} dB", d["n"],
                     premise_verdict(difference_verdict(d, +1), premise))
                if d["n"] else _not_run(claim, theirs))
    reads("table4", "fig9")

    for cond, n in (("dcnv2-k3", 9), ("dcnv2-k5", 25)):
        claim = f"Fig. 17: mean mask against distance to the flow, per offset (N = {n})"
        theirs = "r < 0 (far offsets get small masks)"
        mr = [r["measures"]["masks"]["pearson_r"] for r in R["fig17"]
              if r["condition"] == cond and r["measures"].get("masks")]
        rows.append(_row(claim, theirs, f"r = {mean_sd(stats(mr))}", len(mr),
                         level_verdict(stats(mr), 0.0, above=paper.A5_MASK_VS_DISTANCE_SIGN > 0))
                    if mr else _not_run(claim, theirs))
    claim = "A.5: with many offsets a large share of masks is near 0 (share < 0.1, N = 25 - N = 9)"
    theirs = "'a significant proportion' (no share given)"
    d = paired([r for r in R["fig17"] if r["measures"].get("masks")], "measures.masks.share_small",
               "dcnv2-k5", "dcnv2-k3")
    rows.append(_row(claim, theirs, f"{mean_sd(d, 1, percent=True, signed=True)} (points)", d["n"],
                     difference_verdict(d, +1)) if d["n"] else _not_run(claim, theirs))
    reads("fig17")

    gain = paper.difference(paper.TABLE3, "with offset-fidelity loss", "without offset-fidelity loss",
                            "REDS4")
    theirs = f"{gain:+.2f} dB (REDS4, after overflow)"
    premises = {p.suffix: rate_premise(R["table3"], bilinear_psnr, p) for p in PROVOKING}
    # at the normal rate the DCN without the loss is fig17's dcnv2-k3 (the same model and training)
    without = [dict(r, condition="dcn") for r in R["fig17"] if r["condition"] == "dcnv2-k3"]
    settings = [(None, "the normal learning rate", "dcn_fidelity",
                 without + [r for r in R["table3"] if r["condition"] == "dcn_fidelity"])]
    for p in PROVOKING:
        plain, with_loss = f"dcn_{p.suffix}", p.with_loss
        settings.append((p, p.label, with_loss,
                         [dict(r, condition="dcn") for r in R["table3"] if r["condition"] == plain]
                         + [r for r in R["table3"] if r["condition"] == with_loss]))
    for setting, label, with_loss, pair in settings:
        claim = f"Table 3: with - without the offset-fidelity loss ({label})"
        d = paired(pair, "measures.offsets_vs_flow.psnr", with_loss, "dcn")
        if d["n"]:
            down = {(r["condition"], r["seed"]) for r in pair if collapsed(r, bilinear_psnr)}
            verdict = fidelity_verdict(d, sum(("dcn", s) in down for s in d["seeds"]),
                                       sum((with_loss, s) in down for s in d["seeds"]))
            if setting is not None:
                verdict = _at_the_rate(verdict, premises[setting.suffix])
            rows.append(_row(claim, theirs, f"{mean_sd(d, 3, signed=True)} dB", d["n"], verdict))
        else:
            rows.append(_not_run(claim, theirs))
    vimeo = paper.difference(paper.TABLE3, "with offset-fidelity loss", "without offset-fidelity loss",
                             "Vimeo-90K-T")
    theirs = f"{vimeo:+.2f} dB (Vimeo-90K-T)"
    rows.append(_row("Table 3: with - without the offset-fidelity loss, Vimeo-90K-T", theirs,
                     "not run (no Vimeo-90K-T here; REDS4's row stands for both)", 0,
                     "no verdict: no Vimeo-90K-T here"))
    for p in PROVOKING:
        premise, pairs = premises[p.suffix], p.pairs()
        claim = f"Fig. 10(a): without the loss, training breaks down (overflow; {p.label})"
        theirs = f"at about {paper.SEC43_OVERFLOW_ITER // 1000}K iterations (EDVR-L, REDS)"
        runs = [r for r in R["table3"] if r["condition"] in set(pairs.values())]
        if runs:
            verdict = _overflow_verdict(runs)
            if premise["holds"] is False:  # the overflow is seen; that it is what breaks training is not
                verdict += f"; but {premise['line']}"
            rows.append(_row(claim, theirs, "; ".join(_overflow_seen(r) for r in runs),
                             len({r["seed"] for r in runs}), verdict))
        else:
            rows.append(_not_run(claim, theirs))
        claim = f"Sec. 4.3: with the loss the offsets do not overflow ({p.label})"
        theirs = "no overflow with the loss (EDVR-L; Fig. 10, 19)"
        with_loss = [r for r in R["table3"] if r["condition"] in pairs]
        if with_loss:
            seen = "; ".join(f"{_overflow_seen(r)} (the loss on {', '.join(_fidelity_levels(r))})"
                             for r in with_loss)
            rows.append(_row(claim, theirs, seen, len({r["seed"] for r in with_loss}),
                             fidelity_overflow_verdict(R["table3"], pairs=pairs)))
        else:
            rows.append(_not_run(claim, theirs))
    reads("table3", "fig17")

    t2 = results.get("table2", [])
    for family, prefix in TABLE2_FAMILIES:
        ns = sorted(paper.TABLE2_VIMEO90K_T[family])
        claim = f"Table 2: {family}, N = {ns[-1]} - N = 1"
        theirs = f"{paper.table2_gain(family):+.3f} dB (Vimeo-90K-T)"
        d = paired(t2, PSNR, f"{prefix}-n{ns[-1]}", f"{prefix}-n1")
        verdict = premise_verdict(difference_verdict(d, +1), baseline_premise(t2, f"{prefix}-n1"))
        rows.append(_row(claim, theirs, f"{mean_sd(d, 3, signed=True)} dB", d["n"], verdict)
                    if d["n"] else _not_run(claim, theirs))
    reads("table2")
    return rows


OVERVIEW_HEADERS = ["the paper's claim", "paper", "ours", "seeds", "verdict"]


ON_THE_BASELINE = ("fig9", "fig16", "table4", "fig17", "table3")  # Sec. 4's comparisons with fig9's n1


def overview_of(rows: list[dict], *names: str, premise: bool = True) -> list[list]:
    """The rows of ``overview`` that read any of the experiments ``names`` (a row's
    ``experiments``; every row without ``names``), as table rows under ``OVERVIEW_HEADERS``;
    with ``premise`` and one of ``ON_THE_BASELINE`` in ``names``, Sec. 4's baseline row too
    (fig9's G = N = 1 against its offsets held at zero, on which those comparisons rest)."""
    premise = premise and bool(set(names) & set(ON_THE_BASELINE))
    return [[row["claim"], row["paper"], row["ours"], row["seeds"], row["verdict"]] for row in rows
            if not names or set(names) & set(row["experiments"]) or (premise and row.get("premise"))]


# ------------------------------------------------------------------ Table 2 (notebook 11)

TABLE2_FAMILIES = (("TDAN", "tdan"), ("flow-based (TOFlow-like, N SPyNets)", "flownet"))
TABLE2_HEADERS = ["model", "N", "paper, Vimeo-90K-T (dB)", "ours, synthetic (dB)", "ours, real clips (dB)",
                  "gain over offsets at 0 (dB)", "gain over the centre frame alone (dB)", "diversity (px)",
                  "within 1 px", "seeds"]


def table2(results: list[dict]) -> list[list]:
    """Table 2 beside ours, one row per model family and N (``TABLE2_HEADERS``, for
    ``paper.format_table``): the paper's PSNR on Vimeo-90K-T; ours as mean ± sd over seeds, on
    the held-out synthetic scenes and the real held-out clips; the gain over the same model
    with its offsets (flows) held at zero and over it given the centre frame in place of its
    neighbours ("not run" where not recorded); the offsets' diversity (pixelwise standard deviation
    of the N offsets, 0 for N = 1) and the share of visible pixels whose mean offset is within
    1 px of the exact flow; the seeds. ``results``: experiment ``table2``'s (``load_results``);
    a grid point without runs reads "not run"."""
    keys = (PSNR, "measures.psnr_real.psnr", GAIN_OVER_ZERO, GAIN_OVER_REFERENCE,
            "measures.diversity.diversity", "measures.offsets_vs_flow.within_1px")
    by_key = {key: summarize([r for r in results if _has(r, key)], key) for key in keys}
    rows = []
    for family, prefix in TABLE2_FAMILIES:
        for n, theirs in sorted(paper.TABLE2_VIMEO90K_T[family].items()):
            cond = f"{prefix}-n{n}"
            cells = []
            for key, fmt in zip(keys, ({"digits": 2}, {"digits": 2}, {"digits": 2, "signed": True},
                                       {"digits": 2, "signed": True}, {"digits": 3},
                                       {"digits": 1, "percent": True})):
                s = by_key[key].get(cond)
                cells.append(mean_sd(s, **fmt) if s else "not run")
            seeds = by_key[PSNR].get(cond, {}).get("seeds", [])
            rows.append([family, n, theirs, *cells, ", ".join(map(str, seeds)) or "-"])
    return rows


def _has(result: dict, key: str) -> bool:
    """Whether ``result`` records a value (not None) at the dotted ``key``."""
    try:
        return _get(result, key) is not None
    except (KeyError, TypeError):
        return False


def table2_verdicts(results: list[dict]) -> list[str]:
    """Per model family, whether more offsets raise PSNR (Table 2: every larger N beats N = 1),
    seed for seed on the held-out synthetic scenes, by the rule above, and only where the
    family's N = 1 model beats its offsets held at zero (``baseline_premise``): Table 2 asks
    what diversity adds to a model that aligns. Prints and returns one ``verdict_line`` per
    larger N of each family."""
    lines = []
    for family, prefix in TABLE2_FAMILIES:
        premise = baseline_premise(results, f"{prefix}-n1")
        print(f"{family}: {premise['line']}")
        row = paper.TABLE2_VIMEO90K_T[family]
        for n in sorted(row)[1:]:
            claim = f"{family}, N = {n} - N = 1: {row[n] - row[1]:+.3f} dB on Vimeo-90K-T"
            lines.append(_psnr_step_line(claim, paired(results, PSNR, f"{prefix}-n{n}", f"{prefix}-n1"),
                                         premise))
    return lines
