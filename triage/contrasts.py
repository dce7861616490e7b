"""One seed-paired contrast: its estimate, t interval, one-sided p-values, power and multiplicity.

One reason to change: how a single contrast is estimated and tested (the t interval over
seeds, TOST, the minimum detectable effect, the seeds needed, Holm and the simultaneous
interval). What the contrasts are and how a claim is decided from them is
:mod:`triage.claims`.

Example:
    >>> import numpy as np
    >>> r = paired_contrast(np.array([80.0, 81.0, 79.5]), np.array([78.0, 80.5, 78.0]), "greater", 1.0, 0.05)
    >>> round(r["estimate"], 3), r["n"]
    (1.333, 3)
"""
from __future__ import annotations

import math

__all__ = ["POWER", "paired_contrast", "mde", "seeds_needed", "holm", "simultaneous_ci", "toward_claim", "first_by"]

POWER = 0.8         # power of the minimum detectable effect and of the seeds needed


def paired_contrast(x1, x2, kind: str, thr: float, alpha: float) -> dict:
    """Estimate, 95% CI and one-sided p-values of mean(x1 - x2) against a threshold.

    kind: "greater" (the claim: mean > thr), "less" (mean < thr), "equiv" (|mean| < thr, TOST).
    ``p`` is the claim's one-sided p, ``p_against`` the opposite one (for "equiv": the smaller of
    "beyond +thr" and "beyond -thr"); each is compared with alpha/2.
    """
    import numpy as np
    from scipy import stats
    from statsmodels.stats.weightstats import DescrStatsW, ttost_paired
    x1, x2 = np.asarray(x1, float), np.asarray(x2, float)
    d = x1 - x2
    n = len(d)
    nan = float("nan")
    out = {"n": n, "estimate": float(d.mean()) if n else nan, "sd": nan, "ci_low": nan, "ci_high": nan,
           "p": nan, "p_against": nan, "se": nan, "df": n - 1}
    if n < 2:
        return out
    ds = DescrStatsW(d)
    se = float(ds.std_mean)
    out["sd"], out["se"] = float(d.std(ddof=1)), se
    lo_hi = (out["estimate"],) * 2 if se == 0 else ds.tconfint_mean(alpha)
    out["ci_low"], out["ci_high"] = map(float, lo_hi)

    def p_larger(v):     # H1: mean > v
        if se == 0:
            return 0.0 if out["estimate"] > v else 1.0
        return float(stats.ttest_1samp(d, v, alternative="greater").pvalue)

    def p_smaller(v):    # H1: mean < v
        if se == 0:
            return 0.0 if out["estimate"] < v else 1.0
        return float(stats.ttest_1samp(d, v, alternative="less").pvalue)

    if kind == "greater":
        out["p"], out["p_against"] = p_larger(thr), p_smaller(thr)
    elif kind == "less":
        out["p"], out["p_against"] = p_smaller(thr), p_larger(thr)
    elif kind == "equiv":
        out["p"] = (max(p_larger(-thr), p_smaller(thr)) if se == 0
                    else float(ttost_paired(x1, x2, -thr, thr)[0]))
        out["p_against"] = min(p_larger(thr), p_smaller(-thr))
    else:
        raise ValueError(f"unknown contrast kind {kind!r}")
    return out


def mde(se: float, df: int, level: float, equivalence: bool = False) -> float:
    """Minimum detectable effect: how far past the threshold the true difference must lie for a
    one-sided t-test at ``level`` to reject with POWER; for equivalence, the narrowest margin
    TOST establishes with POWER when the true difference is 0."""
    from scipy import stats
    if not df >= 1 or math.isnan(se):
        return float("nan")
    beta = stats.t.ppf(1 - (1 - POWER) / 2 if equivalence else POWER, df)
    return float((stats.t.ppf(1 - level, df) + beta) * se)


def seeds_needed(distance: float, sd: float, level: float) -> float:
    """Seeds for POWER to put the 95% CI on one side of a margin ``distance`` away (NaN: unknown)."""
    from statsmodels.stats.power import TTestPower
    if not (distance > 0 and sd > 0) or any(map(math.isnan, (distance, sd))):
        return float("nan")
    try:
        n = TTestPower().solve_power(effect_size=distance / sd, alpha=level, power=POWER,
                                     alternative="larger")
    except (ValueError, RuntimeError):
        return float("nan")
    return float(max(2, math.ceil(float(n))))


def holm(p):
    """Holm-adjusted p-values (NaN kept): ``statsmodels.stats.multitest.multipletests(p, method="holm")``.

    Written out because statsmodels' Holm branch calls ``gc.collect()`` on every call (~0.25 s
    with torch loaded, eleven times per data set); tests/test_claims.py checks it against statsmodels.
    """
    import numpy as np
    p = np.asarray(p, float)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * np.arange(m, 0, -1)))
    return out


def simultaneous_ci(row, alpha: float, m: int) -> tuple[float, float]:
    """The contrast's CI at the family-wise level: two-sided alpha/m (Bonferroni over the family's
    m contrasts). A Holm-corrected side is decided at this level for its strongest contrast
    (Holm's first step), so this is the interval that side's verdict can be read off; the 95% CI
    decides the uncorrected side."""
    from scipy import stats
    se, df, est = row["se"], row["df"], row["estimate"]
    if not df >= 1 or math.isnan(se):
        return float("nan"), float("nan")
    h = float(stats.t.ppf(1 - alpha / (2 * m), df)) * se
    return est - h, est + h


def toward_claim(kind: str, estimate, thr):
    """How far estimates lie on the claim's side of their thresholds (negative: the other side;
    -inf where undefined), for a ``kind`` of :func:`paired_contrast`. Scalars or arrays.

    >>> toward_claim("equiv", [-0.4, 1.5], 1.0).tolist()
    [0.6, -0.5]
    """
    import numpy as np
    est = np.asarray(estimate, dtype=float)
    d = {"greater": est - thr, "less": thr - est, "equiv": thr - np.abs(est)}[kind]
    return np.where(np.isnan(d), -np.inf, d)


def first_by(p, toward, lowest_p: bool, most_toward: bool) -> int:
    """Position of the contrast with the lowest (or highest) p, a NaN p counting as 1; among equal
    p the one furthest toward the claim (or from it), not the first listed: with one seed every p
    is NaN, and the family's first contrast may lie far from the one that would decide.

    >>> first_by([float("nan")] * 3, toward_claim("greater", [1.1, 1.8, 0.2], 1.0), True, True)
    1
    """
    import numpy as np
    p = np.nan_to_num(np.asarray(p, dtype=float), nan=1.0)
    toward = np.asarray(toward, dtype=float)
    # np.lexsort sorts by its last key first
    return int(np.lexsort((-toward if most_toward else toward, p if lowest_p else -p))[0])
