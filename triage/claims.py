"""The paper's conclusions (Sec. 4-5) as tests: seed-paired contrasts, 95% CIs, stated margins.

Every network is a cell of (block, init, regime); the base and the continued-base
control (the base trained again from its weights with the children's schedule) are
cells too, and the seeds pair the cells. Each claim is a set of *contrasts*: for each
seed, a difference of cells (averaged over the matched cells of that seed); the
contrast's estimate, 95% CI and p come from those per-seed differences (t with
``seeds - 1`` degrees of freedom), so seed is the unit of replication and every
contrast has its own error: FM and collapsing networks vary far more than TM ones.

Each claim is tested in its own direction against a margin, and every verdict is read
off the two-sided 95% CI (each one-sided test at alpha/2, the ICH E9 convention for
non-inferiority and equivalence; a Holm-corrected side at its adjusted level):

* *holds*: the CI lies on the claim's side of the margin;
* *does not hold*: it lies on the other side;
* *not testable at this n*: it straddles the margin; the minimum detectable effect
  (MDE, 80% power at this n and seed-to-seed SD) and the seeds that would decide it are given;
* *not testable: no control*: C3 and C4b need the continued-base control (results format 2).

One margin delta (``margin``, accuracy points) means "no difference that matters" in
every claim: a CI inside (-delta, delta) but excluding zero is a real but negligible
difference, so C1 *holds* (the blocks are equivalent), C3 does not count it as
exceeding the base and C4b *holds* (STN does not exceed the control by delta).

Claims (paper's words in ``PAPER``):

========  ===================================  ========================================
claim     contrast (per seed)                  verdict rule, multiplicity
========  ===================================  ========================================
C1        block a - block b, per regime,       equivalence |d| < delta, every pair by TOST
          mean over matched initialisers       (intersection-union: no correction); fails
                                               if some pair is beyond delta (Holm)
C2        TM - FM, mean over (block, init)     d > ``much`` (5 points): holds; d < much: fails
C3        TM config - control, 15 configs      existential: some config d > delta (Holm);
                                               fails if every config is below delta
C4a       epochs to 99%: STN - mean(RW, MW),   d < -``epoch_margin``, in some regime (Holm
          mean over blocks, per regime;        over the two); fails if neither is
          STN hint epochs counted
C4b       STN config - control, 10 configs     non-superiority d < delta for every config
                                               (no correction); fails if some d > delta (Holm)
========  ===================================  ========================================

Networks that collapsed (``majority_frac`` >= 0.9: one class for almost every input)
are failures, not results: they are left out of every estimate and listed
(:func:`collapsed_networks`). Networks stopped by the epoch cap (``stop_reason == "cap"``)
have no convergence time and are left out of C4a.

Both results formats are read: format 2 (the ``campaign`` profile: validation-selected
accuracy ``test_acc_at_best_val``, ``epochs_to_99pct_val``, the control, CKA) and format 1
(``cpu``: ``max_test_acc``, ``epochs_to_99pct``, no control, no CKA). :func:`measures`
says which columns were used.

Example:
    >>> from triage import claims, report
    >>> rep = claims.check_claims(report.load("cpu").runs)            # doctest: +SKIP
    >>> rep.verdicts[rep.verdicts["level"] == "data set"][["claim", "dataset", "verdict"]]  # doctest: +SKIP
    >>> rep.counts["summary"]                                          # doctest: +SKIP
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .vocabulary import LABELS

__all__ = ["VERDICTS", "CLAIMS", "PAPER", "MARGIN", "MUCH", "EPOCH_MARGIN", "COLLAPSE",
           "ClaimsReport", "check_claims", "measures", "collapsed_networks", "seed_sd",
           "block_effect", "explain", "summary_markdown", "cka_bases", "fig3_cka", "plot_claim",
           "plot_cka"]

VERDICTS = ("holds", "does not hold", "not testable at this n", "not testable: no control")
CLAIMS = {
    "C1": "No block is more critical than another.",
    "C2": "FM networks (only the compressed layer trains) are much worse than TM networks (all layers train).",
    "C3": "TM networks can exceed the base.",
    "C4a": "STN initialisation converges faster.",
    "C4b": "An STN network never exceeds the base.",
}
PAPER = {
    "C1": "We first note that no layer is more critical than any other. (Sec. 4)",
    "C2": "FM models [...] achieve significantly lower relative accuracy. (Sec. 4)",
    "C3": "One may also note that TM models [...] often out perform the baseline model. (Sec. 4)",
    "C4a": "Student-Teacher Networks can improve the rate of convergence of a large network model (Sec. 5)",
    "C4b": "[...] it cannot increase the student performance beyond that of its teacher. (Sec. 5)",
}
MARGIN = 1.0        # accuracy points: about the binomial SE of one accuracy on 2,000 test images
MUCH = 5.0          # accuracy points: C2's "much worse"
EPOCH_MARGIN = 1.0  # epochs: C4a's "faster"; the resolution of an epochs-to-99% count
COLLAPSE = 0.9      # majority_frac at or above which a network counts as collapsed
POWER = 0.8         # power of the minimum detectable effect and of the seeds needed

_SHORT = LABELS   # random -> RW, thawed -> TM, ...
_INITS = ("random", "mean", "stn")
_REGIMES = ("frozen", "thawed")
# (kind of each contrast, quantifier over the family, threshold parameter)
_RULES = {"C1": ("equiv", "all", "margin"), "C2": ("greater", "all", "much"),
          "C3": ("greater", "any", "margin"), "C4a": ("less", "any", "epoch_margin"),
          "C4b": ("less", "all", "margin")}


# ----------------------------------------------------------------------------- inputs

def measures(runs) -> dict:
    """The columns read as accuracy and as convergence, with a sentence for each.

    Format 2 results are selected on a validation split (``test_acc_at_best_val``,
    ``epochs_to_99pct_val``); format 1 results only have the paper's test-selected
    measures (``max_test_acc``, ``epochs_to_99pct``).
    """
    def has(c):
        return c in runs.columns and runs[c].notna().any()
    acc = "test_acc_at_best_val" if has("test_acc_at_best_val") else "max_test_acc"
    conv = "epochs_to_99pct_val" if has("epochs_to_99pct_val") else "epochs_to_99pct"
    return {
        "accuracy": acc, "convergence": conv,
        "accuracy_text": ("test accuracy at the epoch of best validation accuracy (test_acc_at_best_val)"
                          if acc == "test_acc_at_best_val" else
                          "maximum test accuracy over epochs (max_test_acc: the paper's Fig. 2 measure, "
                          "selected on the test set itself)"),
        "convergence_text": ("epochs to 99% of the best validation accuracy (epochs_to_99pct_val)"
                             if conv == "epochs_to_99pct_val" else
                             "epochs to 99% of the maximum test accuracy (epochs_to_99pct: the paper's Fig. 4)")
                            + ", plus STN's hint epochs",
    }


def _validate(runs, alpha, margin, much, epoch_margin):
    """All that is wrong with the input, as one ValueError."""
    from numbers import Real

    def number(v):
        return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)
    problems = []
    for name, v in (("margin", margin), ("much", much), ("epoch_margin", epoch_margin)):
        if not (number(v) and v > 0):
            problems.append(f"{name} must be a positive number of points (epochs for epoch_margin), got {v!r}")
    if not (number(alpha) and 0 < alpha < 1):
        problems.append(f"alpha must be in (0, 1), got {alpha!r}")
    cols = set(getattr(runs, "columns", []))
    if "seed" not in cols or runs["seed"].isna().all():
        problems.append("the runs table has no seeds (column 'seed'): seeds pair the networks and are "
                        "the unit of replication of every claim")
    missing = [c for c in ("dataset", "block") if c not in cols]
    if not ({"test_acc_at_best_val", "max_test_acc"} & cols):
        missing.append("test_acc_at_best_val or max_test_acc")
    if missing:
        problems.append(f"the runs table lacks {', '.join(missing)}; pass Results.runs")
    if problems:
        raise ValueError("check_claims: " + "; ".join(problems))


def _tidy(runs, collapse: float = COLLAPSE):
    """One row per network: dataset, seed, role (base | control | child), block, init, regime,
    acc (points), conv (epochs, hint epochs included), collapsed, capped."""
    import numpy as np
    m = measures(runs)
    t = runs[runs["seed"].notna()].reset_index(drop=True)
    block = t["block"].astype(int)
    name = t["name"].astype(str) if "name" in t else None
    scheme = t["scheme"].astype(str) if "scheme" in t else None
    is_control = (block == 0) & (((name == "control") if name is not None else False)
                                 | ((scheme == "Control") if scheme is not None else False))
    role = np.where(block > 0, "child", np.where(is_control, "control", "base"))
    init = t["init"].where(t["init"].notna(), "").astype(str) if "init" in t else ""
    regime = t["regime"].where(t["regime"].notna(), "").astype(str) if "regime" in t else ""
    hint = t["stn_epochs"].fillna(0) if "stn_epochs" in t else 0
    hint = np.where(init == "stn", hint, 0)
    conv = (t[m["convergence"]] + hint) if m["convergence"] in t else np.nan
    peaked = ((t["epoch_of_max"] >= t["epochs"]) if {"epoch_of_max", "epochs"} <= set(t.columns)
              and "stop_reason" not in t else False)
    maj = t["majority_frac"] if "majority_frac" in t else np.nan
    if scheme is None:
        scheme = np.where(block > 0, [f"{_SHORT.get(r, r)}-{_SHORT.get(i, i)}" for i, r in zip(init, regime)],
                          np.where(role == "control", "Control", "Base"))
    out = t[["dataset", "seed"]].assign(
        role=role, block=block, init=init, regime=regime, acc=100 * t[m["accuracy"]].astype(float),
        conv=conv, hint=hint, peaked_last=peaked, majority_frac=maj,
        collapsed=(maj >= collapse) if "majority_frac" in t else False,
        capped=(t["stop_reason"] == "cap") if "stop_reason" in t else False,
        cka=t["cka_block1"] if "cka_block1" in t else np.nan,
        name=name if name is not None else "", scheme=scheme)
    out["seed"] = out["seed"].astype(int)
    return out.dropna(subset=["acc"]).reset_index(drop=True)


def _wide(t, value: str):
    """seed x (role, block, init, regime) table of ``value`` (collapsed networks left out)."""
    keep = t[~t["collapsed"].astype(bool)]
    return keep.pivot_table(index="seed", columns=["role", "block", "init", "regime"], values=value,
                            aggfunc="mean")


def _cols(w, cells):
    """Columns ``cells`` of a wide table as a (seeds x cells) array, NaN where absent."""
    import numpy as np
    return np.column_stack([w[c].to_numpy(dtype=float) if c in w.columns else np.full(len(w), np.nan)
                            for c in cells]) if cells else np.empty((len(w), 0))


def _matched(a, b):
    """Per-seed means of a and b over the columns where both are present; seeds with none dropped."""
    import numpy as np
    ok = ~np.isnan(a) & ~np.isnan(b)
    n = ok.sum(axis=1)
    keep = n > 0
    x1 = np.where(ok, a, 0).sum(axis=1)[keep] / n[keep]
    x2 = np.where(ok, b, 0).sum(axis=1)[keep] / n[keep]
    return x1, x2


# ----------------------------------------------------------------------------- one contrast

def _contrast(x1, x2, kind: str, thr: float, alpha: float) -> dict:
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


def _mde(se: float, df: int, level: float, equivalence: bool = False) -> float:
    """Minimum detectable effect: how far past the threshold the true difference must lie for a
    one-sided t-test at ``level`` to reject with POWER; for equivalence, the narrowest margin
    TOST establishes with POWER when the true difference is 0."""
    from scipy import stats
    if not df >= 1 or math.isnan(se):
        return float("nan")
    beta = stats.t.ppf(1 - (1 - POWER) / 2 if equivalence else POWER, df)
    return float((stats.t.ppf(1 - level, df) + beta) * se)


def _seeds_needed(distance: float, sd: float, level: float) -> float:
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


# ----------------------------------------------------------------------------- families: multiplicity, verdict

def _holm(p):
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


def _decide(fam, quantifier: str, level: float):
    """Verdict of a family of contrasts and the row of the contrast that decided it (for a family
    left undecided: the contrast that kept it from being decided).

    "all" (universal claims C1, C2, C4b): holds when every contrast holds (intersection-union,
    no correction); does not hold when some contrast fails (Holm over the family).
    "any" (existential claims C3, C4a): holds when some contrast holds (Holm); does not hold
    when every contrast fails (no correction).
    """
    fam = fam.copy()
    if quantifier == "all":
        fam["p_adj"], fam["p_against_adj"] = fam["p"], _holm(fam["p_against"])
    else:
        fam["p_adj"], fam["p_against_adj"] = _holm(fam["p"]), fam["p_against"]
    ok_for = (fam["p_adj"] < level).to_numpy()
    ok_against = (fam["p_against_adj"] < level).to_numpy()
    pf, pa = fam["p_adj"].fillna(1.0), fam["p_against_adj"].fillna(1.0)
    if quantifier == "all":
        if ok_against.any():
            return "does not hold", fam, int(pa.idxmin())
        return ("holds" if ok_for.all() else "not testable at this n"), fam, int(pf.idxmax())
    if ok_for.any():
        return "holds", fam, int(pf.idxmin())
    # not testable: the contrast that keeps it from failing (the best candidate) is the one shown
    return ("does not hold" if ok_against.all() else "not testable at this n"), fam, int(pa.idxmax())


# ----------------------------------------------------------------------------- claims

def _family(claim: str, t) -> list[tuple[str, str, object, object]]:
    """The contrasts of a claim on one data set: (regime, label, x1 per seed, x2 per seed)."""
    import itertools
    import numpy as np
    acc = _wide(t, "acc")
    blocks = sorted(t.loc[t["role"] == "child", "block"].unique())

    def kids(w, cells):     # cells: (block, init, regime) of children
        return _cols(w, [("child", b, i, r) for b, i, r in cells])
    control = _cols(acc, [("control", 0, "", "")])
    out = []
    if claim == "C1":       # each pair of blocks, per regime, mean over the matched initialisers
        for r, (b1, b2) in itertools.product(_REGIMES, itertools.combinations(blocks, 2)):
            a, b = (kids(acc, [(blk, i, r) for i in _INITS]) for blk in (b1, b2))
            out.append((_SHORT[r], f"{_SHORT[r]}: block {b1} - block {b2}", *_matched(a, b)))
    elif claim == "C2":     # TM - FM over every (block, init)
        cells = list(itertools.product(blocks, _INITS))
        out.append(("TM vs FM", "TM - FM", *_matched(kids(acc, [(b, i, "thawed") for b, i in cells]),
                                                     kids(acc, [(b, i, "frozen") for b, i in cells]))))
    elif claim in ("C3", "C4b"):   # each TM config (C3) or STN config (C4b) against the control
        cells = (itertools.product(blocks, _INITS, ["thawed"]) if claim == "C3"
                 else ((b, "stn", r) for r in _REGIMES for b in blocks))
        for b, i, r in cells:
            out.append((_SHORT[r], f"b{b} {_SHORT[r]}-{_SHORT[i]} - control",
                        *_matched(kids(acc, [(b, i, r)]), control)))
    elif claim == "C4a":    # STN - mean(RW, MW) epochs, per regime, mean over blocks; capped runs left out
        conv = _wide(t[~t["capped"].astype(bool)], "conv")
        for r in _REGIMES:
            stn, rw, mw = (kids(conv, [(b, i, r) for b in blocks]) for i in ("stn", "random", "mean"))
            with np.errstate(invalid="ignore"):
                other = np.where(np.isnan(rw), mw, np.where(np.isnan(mw), rw, (rw + mw) / 2))
            out.append((_SHORT[r], f"{_SHORT[r]}-STN - {_SHORT[r]}-RW/MW (epochs)", *_matched(stn, other)))
    return out


@dataclass
class ClaimsReport:
    """What :func:`check_claims` found.

    Attributes:
        verdicts: one row per claim and data set (``level == "data set"``) and, for the claims
            tested per regime (C1, C4a, C4b), per regime (``level == "regime"``): verdict, the
            deciding contrast with its estimate, 95% CI, p (one-sided, adjusted where the family
            is), n (seeds), MDE, seeds needed, and a note.
        contrasts: every contrast tested (the claims' raw material).
        counts: one row per claim: in how many data sets it holds, fails, is not testable.
        collapsed: the collapsed networks (failures, left out of every estimate).
        measures: :func:`measures` of the table.
        params: alpha, margin, much, epoch_margin.
    """
    verdicts: "pandas.DataFrame"
    contrasts: "pandas.DataFrame"
    counts: "pandas.DataFrame"
    collapsed: "pandas.DataFrame"
    measures: dict
    params: dict = field(default_factory=dict)

    def table(self):
        """The data-set verdicts, formatted for the book (estimates in points, or epochs for C4a)."""
        v = self.verdicts[self.verdicts["level"] == "data set"]
        ci = [f"[{lo:+.2f}, {hi:+.2f}]" if not math.isnan(lo) else "n/a"
              for lo, hi in zip(v["ci_low"], v["ci_high"])]
        return v.assign(**{"95% CI": ci}).rename(columns={"p_adj": "p (holds)", "p_against_adj": "p (fails)"})[
            ["claim", "dataset", "verdict", "contrast", "estimate", "95% CI", "p (holds)", "p (fails)", "n",
             "mde", "note"]
        ].astype({"n": "Int64"}).set_index(["claim", "dataset"]).round(
            {"estimate": 2, "p (holds)": 4, "p (fails)": 4, "mde": 2})

    def verdict(self, claim: str, dataset: str, regime: str | None = None) -> str:
        v = self.verdicts
        sel = (v["claim"] == claim) & (v["dataset"] == dataset)
        sel &= (v["level"] == "data set") if regime is None else (v["regime"] == regime)
        return str(v.loc[sel, "verdict"].iloc[0])


def check_claims(runs, alpha: float = 0.05, margin: float = MARGIN, much: float = MUCH,
                 epoch_margin: float = EPOCH_MARGIN, collapse: float = COLLAPSE) -> ClaimsReport:
    """Test the paper's claims C1, C2, C3, C4a, C4b on a runs table, per data set and regime.

    Args:
        runs: ``Results.runs`` (format 1 or 2); needs dataset, seed, block, init, regime and an
            accuracy column; ``name == "control"`` rows (block 0) are the continued-base control.
        alpha: the CI is 1 - alpha; each one-sided test is at alpha / 2.
        margin: delta in accuracy points (C1, C3, C4b): differences within it do not matter.
        much: C2's "much worse", in accuracy points.
        epoch_margin: C4a's "faster", in epochs.
        collapse: ``majority_frac`` at or above which a network counts as collapsed.

    Returns:
        a :class:`ClaimsReport`.

    Raises:
        ValueError: margin, much or epoch_margin <= 0, alpha outside (0, 1), no seeds, or no accuracy.

    Example:
        >>> rep = check_claims(report.load("cpu").runs, margin=1.0)     # doctest: +SKIP
        >>> rep.verdict("C1", "mnist")                                   # doctest: +SKIP
        'not testable at this n'
    """
    import pandas as pd
    _validate(runs, alpha, margin, much, epoch_margin)
    params = {"alpha": alpha, "margin": margin, "much": much, "epoch_margin": epoch_margin,
              "collapse": collapse}
    meas = measures(runs)
    t = _tidy(runs, collapse)
    level = alpha / 2
    thresholds = {"margin": margin, "much": much, "epoch_margin": -epoch_margin}
    contrasts, verdicts = [], []
    for dataset, part in t.groupby("dataset", sort=False):
        has_control = (part["role"] == "control").any()
        n_coll = int(part["collapsed"].astype(bool).sum())
        for claim, (kind, quant, tname) in _RULES.items():
            thr = thresholds[tname]
            if claim in ("C3", "C4b") and not has_control:
                verdicts.append({"claim": claim, "dataset": dataset, "level": "data set",
                                 "regime": "TM" if claim == "C3" else "FM and TM",
                                 "verdict": "not testable: no control", "threshold": thr,
                                 "note": "no continued-base control in this table"})
                continue
            fam = pd.DataFrame([{"claim": claim, "dataset": dataset, "regime": regime, "contrast": label,
                                 "threshold": thr, **_contrast(x1, x2, kind, thr, alpha)}
                                for regime, label, x1, x2 in _family(claim, part)])
            if fam.empty:
                fam = pd.DataFrame(columns=["regime"])
            scopes = [("data set", "FM and TM" if claim in ("C1", "C4a", "C4b") else
                       ("TM" if claim == "C3" else "TM vs FM"), fam)]
            if claim in ("C1", "C4a", "C4b"):
                scopes += [("regime", r, fam[fam["regime"] == r].reset_index(drop=True)) for r in ("FM", "TM")]
            for lvl, regime, sub in scopes:
                if sub.empty:
                    verdicts.append({"claim": claim, "dataset": dataset, "level": lvl, "regime": regime,
                                     "verdict": "not testable at this n", "threshold": thr,
                                     "note": "no networks to compare"})
                    continue
                verdict, sub, i = _decide(sub, quant, level)
                if lvl == "data set":
                    contrasts.append(sub)
                row = sub.loc[i].to_dict()
                # MDE and seeds needed on the side where the estimate lies (where more seeds would
                # take the verdict), at Holm's first-step level when that side is Holm-corrected
                side_for = _on_claim_side(kind, row["estimate"], thr)
                lvl_side = level / (len(sub) if (quant == "any") == side_for else 1)
                row["mde"] = _mde(row["se"], row["df"], lvl_side, kind == "equiv" and side_for)
                distance = abs(abs(row["estimate"]) - thr) if kind == "equiv" else abs(row["estimate"] - thr)
                row["seeds_needed"] = (_seeds_needed(distance, row["sd"], lvl_side)
                                       if verdict == "not testable at this n" else float("nan"))
                row["likely"] = "holds" if side_for else "does not hold"
                verdicts.append({"claim": claim, "dataset": dataset, "level": lvl, "regime": regime,
                                 "verdict": verdict,
                                 **{k: row[k] for k in ("contrast", "estimate", "ci_low", "ci_high", "p",
                                                        "p_adj", "p_against", "p_against_adj", "n", "sd",
                                                        "mde", "seeds_needed", "likely", "threshold")},
                                 "contrasts": len(sub),
                                 "note": _note(claim, kind, verdict, sub, row, thr, n_coll, part)})
    v = pd.DataFrame(verdicts)
    c = pd.concat(contrasts, ignore_index=True) if contrasts else pd.DataFrame()
    return ClaimsReport(v, c, _counts(v), collapsed_networks(runs, collapse), meas, params)


def _on_claim_side(kind: str, estimate: float, thr: float) -> bool:
    if kind == "equiv":
        return abs(estimate) < thr
    return estimate > thr if kind == "greater" else estimate < thr




def _note(claim, kind, verdict, fam, row, thr, n_coll, part) -> str:
    """One sentence on what decided the verdict, and the CI-inside-margin-but-nonzero case."""
    parts = []
    if claim == "C4a":
        kids = part[part["role"] == "child"]
        hint = sorted({float(h) for h in kids.loc[kids["init"] == "stn", "hint"]})
        if hint and hint != [0.0]:
            parts.append(f"STN's {'/'.join(f'{h:g}' for h in hint)} hint epochs counted")
        if kids["capped"].astype(bool).any():
            parts.append(f"{int(kids['capped'].sum())} network(s) stopped by the epoch cap left out "
                         "(no convergence time)")
        elif kids["peaked_last"].astype(bool).any():
            parts.append(f"{int(kids['peaked_last'].sum())} of {len(kids)} networks peaked at their last "
                         "epoch (fixed schedule): their time to 99% may be a lower bound")
    unit = "epochs" if claim == "C4a" else "points"
    if row["n"] < 2:
        parts.append(f"{int(row['n'])} seed(s): a CI needs at least 2")
    nz = fam[(fam["ci_low"] > 0) | (fam["ci_high"] < 0)]
    if kind == "equiv":
        inside = nz[(nz["ci_low"] > -thr) & (nz["ci_high"] < thr)]
        if len(inside):
            parts.append(f"{len(inside)} of {len(fam)} block pair(s) differ beyond noise but by less than "
                         f"+-{thr:g} {unit} (CI inside the margin, excluding 0): counted as equal")
    elif claim in ("C3", "C4b"):
        inside = nz[(nz["ci_low"] > 0) & (nz["ci_high"] < thr)]
        if len(inside):
            parts.append(f"{len(inside)} of {len(fam)} config(s) above the control beyond noise but by less "
                         f"than {thr:g} {unit}: " + ("not counted as exceeding" if claim == "C3"
                                                     else "within the non-superiority margin"))
    elif claim == "C2" and row["ci_low"] > 0 and row["ci_high"] < thr:
        parts.append(f"FM is worse beyond noise, but by less than the {thr:g} points of 'much'")
    if n_coll:
        parts.append(f"{n_coll} collapsed network(s) left out")
    if verdict == "not testable at this n" and row["mde"] == row["mde"]:
        parts.append(f"MDE at this n: {row['mde']:.2f} {unit} " + (
            "(the narrowest margin it could show)" if kind == "equiv" and row["likely"] == "holds"
            else "past the margin (80% power)"))
    return "; ".join(parts)


def _counts(v):
    import pandas as pd
    d = v[v["level"] == "data set"]
    rows = []
    for claim, part in d.groupby("claim", sort=False):
        k = len(part)
        by = {w: list(part.loc[part["verdict"] == w, "dataset"]) for w in VERDICTS}
        text = "; ".join(f"{w} on {len(ds)} of {k} ({', '.join(ds)})" for w, ds in by.items() if ds)
        rows.append({"claim": claim, "statement": CLAIMS[claim], "datasets": k,
                     **{w: len(ds) for w, ds in by.items()}, "summary": text})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- text for the book

def explain(rep: ClaimsReport, claim: str, dataset: str) -> str:
    """What would change a data set's verdict: the margin at which it flips, or the seeds it needs."""
    v = rep.verdicts
    r = v[(v["claim"] == claim) & (v["dataset"] == dataset) & (v["level"] == "data set")].iloc[0]
    unit = "epochs" if claim == "C4a" else "points"
    if r["verdict"] == "not testable: no control":
        return ("A continued-base control (the base trained again from its weights with the children's "
                "schedule, results format 2) would make it testable.")
    if r["verdict"] == "not testable at this n":
        if not r["n"] >= 2:
            return ("At least 2 seeds per network are needed for a confidence interval." if r["n"] == r["n"]
                    else "There is nothing to compare in this table.")
        n = r["seeds_needed"]
        more = (f"about {int(n)} seeds (now {int(r['n'])}) would likely make it '{r['likely']}'" if n == n else
                "no number of seeds decides it while the estimate sits on the margin")
        return (f"The deciding contrast ({r['contrast']}) lies on the '{r['likely']}' side of the margin; at "
                f"its seed-to-seed SD ({r['sd']:.2f} {unit}) {more}.")
    kind = _RULES[claim][0]
    holds = r["verdict"] == "holds"
    if kind == "equiv":
        if holds:
            c = rep.contrasts
            fam = c[(c["claim"] == claim) & (c["dataset"] == dataset)]
            b = float(fam[["ci_low", "ci_high"]].abs().max(axis=1).max())
            return (f"It would stop holding with a margin below {b:.2f} points "
                    f"(the widest 95% CI bound of a pair).")
        b = min(abs(r["ci_low"]), abs(r["ci_high"]))
        return f"It would stop failing only with a margin above {b:.2f} points ({r['contrast']}'s 95% CI)."
    # the verdict flips when the threshold crosses the deciding contrast's 95% CI bound
    lo, hi = r["ci_low"], r["ci_high"]
    bound = (lo if holds else hi) if kind == "greater" else (hi if holds else lo)
    above = (kind == "greater") == holds          # the verdict changes if the threshold rises above the bound
    value = -bound if claim == "C4a" else bound   # C4a's threshold is -epoch_margin
    above = (not above) if claim == "C4a" else above
    name = {"C2": "'much'", "C3": "the margin", "C4a": "'faster'", "C4b": "the margin"}[claim]
    if value <= 0:
        return (f"No positive {name} would change it: the 95% CI of {r['contrast']} lies entirely on the "
                f"{'below' if hi <= 0 else 'above'} zero.")
    return (f"It would change if {name} were {'above' if above else 'below'} {value:.2f} {unit} "
            f"(the 95% CI bound of {r['contrast']}"
            + ("; about, as the family is Holm-corrected)." if r["contrasts"] > 1 else ")."))


def summary_markdown(rep: ClaimsReport, claim: str) -> str:
    """A claim's verdict per data set as Markdown bullets: verdict, deciding contrast with estimate,
    95% CI, p, n, the note, and what would change it (:func:`explain`)."""
    v = rep.verdicts
    unit = "epochs" if claim == "C4a" else "points"
    lines = []
    for r in v[(v["claim"] == claim) & (v["level"] == "data set")].itertuples():
        text = f"- **{r.dataset}**: *{r.verdict}*"
        if r.ci_low == r.ci_low:
            p = r.p_against_adj if r.verdict == "does not hold" else r.p_adj
            which = "fails" if r.verdict == "does not hold" else "holds"
            text += (f". {r.contrast}: {r.estimate:+.2f} {unit}, 95% CI [{r.ci_low:+.2f}, {r.ci_high:+.2f}], "
                     f"p ({which}) = {p:.3g}, n = {int(r.n)} seeds")
            regimes = v[(v["claim"] == claim) & (v["dataset"] == r.dataset) & (v["level"] == "regime")]
            if len(regimes):
                text += " (" + ", ".join(f"{x.regime}: {x.verdict}" for x in regimes.itertuples()) + ")"
        if r.note:
            text += f". {r.note[0].upper()}{r.note[1:]}"
        lines.append(text + f". {explain(rep, claim, r.dataset)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- supporting tables

def collapsed_networks(runs, collapse: float = COLLAPSE):
    """Networks that answer one class for almost every input (``majority_frac >= collapse``).

    Returns:
        DataFrame: dataset, seed, name, scheme, block, accuracy (points), majority_frac; empty
        when the table has no ``majority_frac`` column (format 1: collapse not measured).
    """
    import pandas as pd
    cols = ["dataset", "seed", "name", "scheme", "block", "accuracy", "majority_frac"]
    if "majority_frac" not in runs.columns:
        return pd.DataFrame(columns=cols)
    t = _tidy(runs, collapse)
    c = t[t["collapsed"].astype(bool)]
    return c.assign(accuracy=c["acc"])[cols].reset_index(drop=True)


def seed_sd(runs, collapse: float = COLLAPSE):
    """Seed-to-seed SD of accuracy (points), pooled over the networks of each data set and regime.

    The scale against which the margin is chosen: with ``n`` seeds a paired contrast has an SE
    of about ``sqrt(2) * sd / sqrt(n)``. ``test_se`` is the binomial SE of one base accuracy on
    the test set (points; needs ``test_images``).

    Returns:
        DataFrame: dataset, regime (FM | TM | base), sd, cells, test_se.
    """
    import numpy as np
    import pandas as pd
    t = _tidy(runs, collapse)
    t = t[~t["collapsed"].astype(bool)]
    rows = []
    for dataset, part in t.groupby("dataset", sort=False):
        base = part[part["role"] == "base"]
        se = float("nan")
        if "test_images" in runs.columns and len(base):
            p = base["acc"].mean() / 100
            n = runs.loc[runs["dataset"] == dataset, "test_images"].mean()
            se = 100 * math.sqrt(p * (1 - p) / n)
        groups = [("FM", part[part["regime"] == "frozen"]), ("TM", part[part["regime"] == "thawed"]),
                  ("base", base)]
        for regime, g in groups:
            cell = g.groupby(["role", "block", "init", "regime"])["acc"]
            var, n = cell.var(ddof=1), cell.count()
            ok = n >= 2
            sd = float(np.sqrt(((n[ok] - 1) * var[ok]).sum() / (n[ok] - 1).sum())) if ok.any() else float("nan")
            rows.append({"dataset": dataset, "regime": regime, "sd": sd, "cells": int(ok.sum()), "test_se": se})
    return pd.DataFrame(rows)


def block_effect(runs, collapse: float = COLLAPSE):
    """Omnibus test of any block effect: OLS ``acc ~ C(block) + C(init) + C(seed)`` per data set and
    regime, type-2 ANOVA with HC3 errors (statsmodels). A cross-check of C1's pairwise tests.

    Returns:
        DataFrame: dataset, regime, F, df, p, n (networks); p is NaN with fewer than 2 seeds.
    """
    import warnings
    import pandas as pd
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm
    t = _tidy(runs, collapse)
    t = t[(t["role"] == "child") & ~t["collapsed"].astype(bool)]
    rows = []
    for (dataset, regime), g in t.groupby(["dataset", "regime"], sort=False):
        row = {"dataset": dataset, "regime": _SHORT.get(regime, regime), "F": float("nan"),
               "df": float("nan"), "p": float("nan"), "n": len(g)}
        if g["seed"].nunique() >= 2 and g["block"].nunique() >= 2:
            terms = "C(block)" + (" + C(init)" if g["init"].nunique() > 1 else "") + " + C(seed)"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a = anova_lm(smf.ols(f"acc ~ {terms}", g).fit(), typ=2, robust="hc3")
            row.update(F=float(a.loc["C(block)", "F"]), df=float(a.loc["C(block)", "df"]),
                       p=float(a.loc["C(block)", "PR(>F)"]))
        rows.append(row)
    return pd.DataFrame(rows)


def cka_bases(results=None, root=None, profile: str | None = None):
    """Block-1 CKA of each base against the base of another seed (``cka_bases.csv``), or None.

    Args:
        results: a ``report.Results`` (reads ``results.extra["cka_bases"]``, else the file beside
            its ``runs.csv``); or None to read ``root/profile/cka_bases.csv``.
        root, profile: the results folder and profile when ``results`` is None.

    Returns:
        DataFrame: dataset, seed_a, seed_b, cka_block1; None when not exported (results format 1).
    """
    import pandas as pd
    if results is not None:
        extra = getattr(results, "extra", None) or {}
        if extra.get("cka_bases") is not None:
            return extra["cka_bases"]
        folder = getattr(results, "path", None)
    else:
        from .report import default_profile, default_results_root
        root = Path(root) if root is not None else default_results_root()
        folder = root / (profile or default_profile(root))
    path = Path(folder) / "cka_bases.csv" if folder is not None else None
    return pd.read_csv(path) if path is not None and path.is_file() else None


def fig3_cka(runs, bases=None, block: int = 1, collapse: float = COLLAPSE):
    """Fig. 3 in numbers: block-1 CKA of each scheme's networks with their own base, against the
    CKA of two bases of different seeds ("as similar as a retrained base").

    Args:
        runs: a runs table with ``cka_block1`` (results format 2).
        bases: :func:`cka_bases` (None: no reference column).
        block: the compressed block whose networks are shown (the paper's Fig. 3: block 1).

    Returns:
        DataFrame: dataset, scheme, n, cka (mean), ci_low, ci_high (95%, t over seeds), bases_cka
        (mean base-vs-base), bases_n, diff (cka - bases_cka), p (Welch t-test); None without CKA.
    """
    import warnings
    import numpy as np
    import pandas as pd
    from scipy import stats
    from statsmodels.stats.weightstats import DescrStatsW
    if "cka_block1" not in runs.columns or runs["cka_block1"].isna().all():
        return None
    t = _tidy(runs, collapse)
    t = t[~t["collapsed"].astype(bool)]
    t = t[(t["block"] == block) | (t["role"] == "control")]
    rows = []
    for (dataset, scheme), g in t.groupby(["dataset", "scheme"], sort=False):
        x = g["cka"].dropna().to_numpy(float)
        ref = (bases.loc[bases["dataset"] == dataset, "cka_block1"].dropna().to_numpy(float)
               if bases is not None else np.array([]))
        lo, hi = ((DescrStatsW(x).tconfint_mean() if x.std() > 0 else (x[0], x[0])) if len(x) >= 2
                  else (float("nan"),) * 2)
        with warnings.catch_warnings():     # identical values (e.g. a CKA of 1) warn of lost precision
            warnings.simplefilter("ignore", RuntimeWarning)
            p = (float(stats.ttest_ind(x, ref, equal_var=False).pvalue)
                 if len(x) >= 2 and len(ref) >= 2 else float("nan"))
        rows.append({"dataset": dataset, "scheme": scheme, "n": len(x),
                     "cka": float(x.mean()) if len(x) else float("nan"), "ci_low": lo, "ci_high": hi,
                     "bases_cka": float(ref.mean()) if len(ref) else float("nan"), "bases_n": len(ref),
                     "diff": float(x.mean() - ref.mean()) if len(x) and len(ref) else float("nan"), "p": p})
    order = ["Control", "FM-RW", "FM-MW", "FM-STN", "TM-RW", "TM-MW", "TM-STN"]
    out = pd.DataFrame(rows)
    key = out["scheme"].map({s: i for i, s in enumerate(order)}).fillna(len(order))
    ds = {d: i for i, d in enumerate(dict.fromkeys(out["dataset"]))}
    return out.assign(_d=out["dataset"].map(ds), _s=key).sort_values(["_d", "_s"]).drop(
        columns=["_d", "_s"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- figures

_COLOURS = {"holds": "tab:green", "does not hold": "tab:red", "not testable at this n": "tab:gray",
            "not testable: no control": "lightgray"}


def plot_claim(rep: ClaimsReport, claim: str, detail: bool = False, ax=None, title: str = ""):
    """Forest plot of one claim: estimate and 95% CI per data set (and regime), against its margin.

    Args:
        rep: :func:`check_claims`'s report.
        claim: C1 | C2 | C3 | C4a | C4b.
        detail: every contrast of the claim (each block pair, each configuration), one panel per
            data set, instead of the deciding contrast per data set and regime.
        ax: a matplotlib Axes (not with ``detail``); None: a new figure sized to the rows.
        title: the figure's title (default: the claim).

    Returns:
        the Axes (an array of Axes with ``detail``).

    Example:
        >>> plot_claim(check_claims(runs), "C4b")           # doctest: +SKIP
    """
    import matplotlib.pyplot as plt
    import numpy as np
    title = title or f"{claim}: {CLAIMS[claim]}"
    if detail:
        d = rep.contrasts[rep.contrasts["claim"] == claim] if len(rep.contrasts) else rep.contrasts
        groups = list(d.groupby("dataset", sort=False)) if len(d) else []
        if not groups:
            _, ax = plt.subplots(figsize=(7, 1.2))
            ax.set_axis_off()
            ax.set_title(title + ": no contrasts (no control?)", fontsize=10)
            return np.array([ax])
        rows = max(len(g) for _, g in groups)
        ncols = min(2, len(groups))
        fig, axes = plt.subplots(-(-len(groups) // ncols), ncols, squeeze=False, constrained_layout=True,
                                 figsize=(6.5 * ncols, (0.9 + 0.22 * rows) * -(-len(groups) // ncols)))
        for a, (dataset, g) in zip(axes.flat, groups):
            _forest(a, g, list(g["contrast"]), ["tab:blue"] * len(g), claim, rep.params)
            a.set_title(dataset, fontsize=9)
        for a in axes.flat[len(groups):]:
            a.set_axis_off()
        fig.suptitle(title, fontsize=10)
        return axes
    v = rep.verdicts[rep.verdicts["claim"] == claim]
    split = set(v.loc[v["level"] == "regime", "dataset"])       # data sets with per-regime rows
    d = v[(v["level"] == "regime") | ~v["dataset"].isin(split)]
    if not d["estimate"].notna().any():                         # e.g. no control: nothing to draw
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 0.8))
        ax.set_axis_off()
        ax.set_title(f"{title}: " + ", ".join(sorted(set(d["verdict"]))), fontsize=10)
        return ax
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 1.0 + 0.3 * max(len(d), 1)), constrained_layout=True)
    _forest(ax, d, [f"{ds} {r}: {w}" for ds, r, w in zip(d["dataset"], d["regime"], d["verdict"])],
            [_COLOURS[w] for w in d["verdict"]], claim, rep.params)
    ax.set_title(title, fontsize=10)
    return ax


def _forest(ax, d, labels, colours, claim, params):
    import numpy as np
    y = np.arange(len(d))[::-1]
    for yi, e, lo, hi, c in zip(y, d["estimate"], d["ci_low"], d["ci_high"], colours):
        if e == e:
            err = [[e - lo if lo == lo else 0], [hi - e if hi == hi else 0]]
            ax.errorbar(e, yi, xerr=err, fmt="o", color=c, capsize=3, ms=5)
    thr = params["epoch_margin"] if claim == "C4a" else params["much" if claim == "C2" else "margin"]
    if claim == "C1":
        ax.axvspan(-thr, thr, color="tab:green", alpha=0.12, label=f"margin +-{thr:g}")
    else:
        ax.axvline(-thr if claim == "C4a" else thr, ls="--", c="k", lw=1,
                   label=f"threshold {-thr if claim == 'C4a' else thr:+g}")
    ax.axvline(0, c="gray", lw=0.6)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(-0.7, len(d) - 0.3)
    ax.set_xlabel(("STN - RW/MW, epochs to 99%" if claim == "C4a" else "difference, accuracy points")
                  + " (95% CI)", fontsize=8)
    ax.legend(fontsize=7, loc="best")


def plot_cka(table, ax=None, title: str = ""):
    """Fig. 3 in numbers: mean block-1 CKA with the base per scheme (95% CI), and the CKA of two
    bases of different seeds as a tick (:func:`fig3_cka`'s table)."""
    import matplotlib.pyplot as plt
    import numpy as np
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.9 + 0.28 * len(table)), constrained_layout=True)
    y = np.arange(len(table))[::-1]
    err = np.vstack([table["cka"] - table["ci_low"], table["ci_high"] - table["cka"]]).clip(0)
    ax.errorbar(table["cka"], y, xerr=np.nan_to_num(err), fmt="o", capsize=3, ms=5)
    ref = table["bases_cka"].to_numpy(float)
    ax.scatter(ref, y, marker="|", s=200, c="k", label="base vs base of another seed")
    ax.set_yticks(y, [f"{d}: {s}" for d, s in zip(table["dataset"], table["scheme"])], fontsize=8)
    ax.set_xlabel("linear CKA of block-1 output with its own base (95% CI over seeds)")
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "Fig. 3 in numbers: block-1 representations against the base", fontsize=10)
    return ax
