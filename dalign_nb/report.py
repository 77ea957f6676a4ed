"""How the notebooks state a result: mean ± spread over seeds, and a verdict per trend.

Every analysis notebook (05-09) prints, per trend of the paper, one line: the paper's claim,
ours with its spread, and a verdict that follows from the numbers by one rule, written here
once:

* a **difference** between two conditions (seed for seed, ``paired``) is
  *reproduced* when its 95 % confidence interval (Student's t over the seeds' differences)
  excludes zero on the paper's side, *contradicted* when it excludes zero on the other side,
  and *inconclusive (within noise)* otherwise; with fewer than ``MIN_SEEDS`` seeds there is no
  spread and the verdict says so instead of guessing;
* a **level** (a share, a correlation) is compared with a threshold by the same interval.

With 3 seeds the 95 % interval is mean ± 2.48 sample standard deviations (t = 4.30 at 2
degrees of freedom, divided by sqrt 3): a difference must be large against its spread.
"""

from __future__ import annotations

import math

import numpy as np

MIN_SEEDS = 3  # a verdict on a difference rests on 3 seeds (issue: mean and spread)

# Student's t, two-sided 95 %, by degrees of freedom (1-10); beyond 10, 2.2 is close enough.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228}

VERDICTS = ("reproduced", "not reproduced at this scale", "inconclusive (within noise)")


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
    return "inconclusive (within noise)"


def level_verdict(s: dict, threshold: float, above: bool = True, min_seeds: int = MIN_SEEDS) -> str:
    """The verdict on a level (mean ± std over ``n`` seeds) that the paper puts above (or
    below) ``threshold``."""
    if s["n"] < min_seeds:
        side = s["mean"] > threshold if above else s["mean"] < threshold
        return (f"{'on' if side else 'off'} the paper's side with {s['n']} seed(s); "
                f"inconclusive without {min_seeds}")
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
