"""The paper's further remarks on convergence, as estimates with intervals (claims chapter).

Reason to change: how the paper's convergence remarks beyond C4a and C5 are estimated: that
networks take longer to converge on harder data sets (Sec. 4, Fig. 4), and the poster's
"convergence rate and relative accuracy are directly correlated". They read the same tidy runs
table as :mod:`triage.claims` (collapsed networks left out); the first is decided like a claim
(against ``epoch_margin``), the second only estimated (its wording reads both ways).

Example:
    >>> from triage import claims_convergence, report
    >>> t = claims_convergence.complexity_convergence(report.load("campaign").runs)   # doctest: +SKIP
    >>> claims_convergence.complexity_convergence_text(t)                              # doctest: +SKIP
"""
from __future__ import annotations

from .claims import COLLAPSE, EPOCH_MARGIN, _tidy
from .contrasts import paired_contrast

__all__ = ["COMPLEXITY", "complexity_convergence", "complexity_convergence_text",
           "convergence_accuracy_correlation", "convergence_accuracy_text"]

# the paper's order of "increasing granularity and complexity" (Sec. 1, 3.2)
COMPLEXITY = ("mnist", "cifar10", "cifar100", "stanford_dogs")


def _seed_means(runs, collapse: float = COLLAPSE, keep_capped: bool = False):
    """Per data set and seed, the children's mean epochs to 99% (STN's hint epochs not counted:
    the paper's Fig. 4 counts epochs after compression), from the seeds that trained every child
    cell of the grid; collapsed networks, and capped ones unless ``keep_capped``, left out
    of the mean (they were trained, so their seed still counts)."""
    t = _tidy(runs, collapse, count_hint=False)
    t = t[t["role"] == "child"]
    # the grid's cells are the same for every data set: a data set whose every seed is partial
    # (a grid just begun) has no complete seed
    cells = len(t.drop_duplicates(["block", "init", "regime"]))
    trained = t.drop_duplicates(["dataset", "seed", "block", "init", "regime"]).groupby(["dataset", "seed"]).size()
    complete = trained[trained >= cells].index
    t = t[t.set_index(["dataset", "seed"]).index.isin(complete) & ~t["collapsed"].astype(bool)]
    if not keep_capped:
        t = t[~t["capped"].astype(bool)]
    return t.groupby(["dataset", "seed"])["conv"].mean()


def complexity_convergence(runs, alpha: float = 0.05, epoch_margin: float = EPOCH_MARGIN, collapse: float = COLLAPSE,
                           keep_capped: bool = False):
    """The paper's "as data set complexity increases, so too does the time it takes for each
    network to converge" (Sec. 4, Fig. 4), tested pair by pair along :data:`COMPLEXITY`.

    The unit is a seed's grid: its children's mean epochs to 99% of their best (validation)
    accuracy. Data sets are not paired by seed (seed 0 of MNIST and of CIFAR-10 share nothing), so
    each consecutive pair of the data sets present is compared by Welch's t interval
    (``statsmodels`` ``CompareMeans``). A pair *holds* when its interval lies above
    ``epoch_margin`` (the harder set converges later by more than an epoch), *does not hold*
    when it lies below, and is *not testable at this n* otherwise. The claim is universal: it
    holds when every pair holds and fails when one fails, read off that pair's simultaneous
    interval (Bonferroni over the pairs).

    Returns:
        DataFrame, one row per consecutive pair: easier, harder, n_easier, n_harder (seeds),
        mean_easier, mean_harder, estimate (harder - easier, epochs), ci_low, ci_high, sim_low,
        sim_high, verdict.
    """
    import pandas as pd
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW
    cols = ["easier", "harder", "n_easier", "n_harder", "mean_easier", "mean_harder", "estimate", "ci_low",
            "ci_high", "sim_low", "sim_high", "verdict"]
    means = _seed_means(runs, collapse, keep_capped)
    have = [d for d in COMPLEXITY if d in means.index.get_level_values(0)]
    pairs = list(zip(have, have[1:]))
    rows = []
    for easy, hard in pairs:
        a, b = means.loc[hard].to_numpy(float), means.loc[easy].to_numpy(float)
        row = {"easier": easy, "harder": hard, "n_easier": len(b), "n_harder": len(a),
               "mean_easier": float(b.mean()), "mean_harder": float(a.mean()), "estimate": float(a.mean() - b.mean())}
        if len(a) >= 2 and len(b) >= 2:
            cm = CompareMeans(DescrStatsW(a), DescrStatsW(b))
            row["ci_low"], row["ci_high"] = map(float, cm.tconfint_diff(alpha, usevar="unequal"))
            row["sim_low"], row["sim_high"] = map(float, cm.tconfint_diff(alpha / len(pairs), usevar="unequal"))
        else:
            row.update(ci_low=float("nan"), ci_high=float("nan"), sim_low=float("nan"), sim_high=float("nan"))
        row["verdict"] = ("holds" if row["ci_low"] > epoch_margin else "does not hold"
                          if row["ci_high"] < epoch_margin else "not testable at this n")
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def complexity_convergence_text(table, epoch_margin: float = EPOCH_MARGIN) -> str:
    """:func:`complexity_convergence` in words, with the claim's verdict over the pairs."""
    if table is None or table.empty:
        return "Fewer than two data sets have a complete grid of children: nothing to compare yet."
    parts = [f"{r.harder} - {r.easier}: {r.estimate:+.2f} epochs" + (
             f", 95% CI [{r.ci_low:+.2f}, {r.ci_high:+.2f}] (n = {r.n_harder} and {r.n_easier} seeds): "
             f"*{r.verdict}*" if r.ci_low == r.ci_low else f" (n = {r.n_harder} and {r.n_easier} seeds: a CI needs "
             "two on each side)") for r in table.itertuples()]
    fails = table[table["sim_high"] < epoch_margin]
    if len(fails):
        verdict = "does not hold"
    elif (table["verdict"] == "holds").all():
        verdict = "holds"
    else:
        verdict = "not testable at this n"
    untested = [d for d in COMPLEXITY if d not in set(table["easier"]) | set(table["harder"])]
    return ("Mean epochs to 99% per seed's grid, harder minus easier data set: " + "; ".join(parts)
            + f". Over the pairs compared the claim *{verdict}*"
            + (f" (not yet compared: {', '.join(untested)}, whose grids are not complete)" if untested else "") + ".")


def convergence_accuracy_correlation(runs, alpha: float = 0.05, collapse: float = COLLAPSE):
    """The poster's "convergence rate and relative accuracy are directly correlated" (STN aside).

    Per data set and seed, Spearman's rank correlation across the seed's RW and MW children
    (not capped, not collapsed) between epochs to 99% and test accuracy; the estimate is the mean
    over seeds (on Fisher's z scale) with its t interval. A positive rho means the networks that take longer reach
    higher accuracy, i.e. a *higher* rate goes with *lower* accuracy: the poster's sentence
    can be read either way, so no verdict is given, only the sign and its interval.

    Returns:
        DataFrame, one row per data set: n (seeds), networks, rho (mean over seeds), ci_low, ci_high.
    """
    import numpy as np
    import pandas as pd
    from scipy import stats
    cols = ["dataset", "n", "networks", "rho", "ci_low", "ci_high"]
    t = _tidy(runs, collapse, count_hint=False)
    t = t[(t["role"] == "child") & ~t["collapsed"].astype(bool) & ~t["capped"].astype(bool)
          & t["init"].isin(["random", "mean"]) & t["conv"].notna()]
    rows = []
    for dataset, g in t.groupby("dataset", sort=False):
        rhos = [stats.spearmanr(x["conv"], x["acc"]).statistic for _, x in g.groupby("seed") if len(x) >= 5]
        # averaged on Fisher's z scale, where a t interval stays inside (-1, 1) once transformed back
        z = np.arctanh(np.clip(np.array([r for r in rhos if r == r], float), -0.999999, 0.999999))
        row = {"dataset": dataset, "n": len(z), "networks": len(g),
               "rho": float(np.tanh(z.mean())) if len(z) else float("nan"), "ci_low": float("nan"),
               "ci_high": float("nan")}
        if len(z) >= 2:
            r = paired_contrast(z, np.zeros_like(z), "greater", 0.0, alpha)
            row["ci_low"], row["ci_high"] = float(np.tanh(r["ci_low"])), float(np.tanh(r["ci_high"]))
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def convergence_accuracy_text(table) -> str:
    """:func:`convergence_accuracy_correlation` in words."""
    t = table[table["n"] >= 1] if table is not None and len(table) else table
    if t is None or t.empty:
        return "No data set has enough RW and MW children for a correlation."
    parts = []
    for r in t.itertuples():
        ci = f", 95% CI [{r.ci_low:+.2f}, {r.ci_high:+.2f}]" if r.ci_low == r.ci_low else " (one seed: no CI)"
        sign = ("the slower networks are the more accurate" if r.ci_low > 0 else
                "the faster networks are the more accurate" if r.ci_high < 0 else "no sign shown at this n")
        parts.append(f"{r.dataset}: rho {r.rho:+.2f}{ci}, {r.n} seed(s), {r.networks} networks: {sign}")
    return ("Spearman's rho between epochs to 99% and test accuracy, RW and MW children of both regimes, mean "
            "over seeds: "
            + "; ".join(parts) + ".")
