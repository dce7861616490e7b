"""The paper's conclusions (Sec. 4-5) as tests: seed-paired contrasts, 95% CIs, stated margins.

Reason to change: how a claim is tested and decided (its contrasts, margins, multiplicity
and verdict rule). The chapter's prose and figures are :mod:`triage.claims_chapter`; the
tables shown beside the claims (seed SD, unstable cells, omnibus block test, Fig. 3's CKA)
are :mod:`triage.claims_tables`; the statistics of one contrast (t interval, TOST, MDE, Holm)
are :mod:`triage.contrasts`.

Every network is a cell of (block, init, regime); the base and the continued-base
control (the base trained again from its weights with the children's schedule) are
cells too, and the seeds pair the cells. Each claim is a set of *contrasts*: for each
seed, a difference of cells (averaged over the matched cells of that seed); the
contrast's estimate, 95% CI and p come from those per-seed differences (t with
``seeds - 1`` degrees of freedom), so seed is the unit of replication and every
contrast has its own error: FM and collapsing networks vary far more than TM ones.
A seed counts in a contrast only once it has trained every network the contrast
averages over: a partial grid's mean would be over other cells than a complete one's.

Each claim is tested in its own direction against a margin, and every verdict is read
off the two-sided 95% CI (each one-sided test at alpha/2, the ICH E9 convention for
non-inferiority and equivalence; a Holm-corrected side at its adjusted level, which the
verdict table shows as the simultaneous CI, two-sided alpha/m):

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
C5        epochs to 99%: MW - RW, mean over    d > -``epoch_margin`` (MW not faster) in both
          blocks, per regime                   regimes (no correction); fails if MW is
                                               faster in one (Holm over the two)
========  ===================================  ========================================

Networks that collapsed (``majority_frac`` >= 0.9: one class for almost every input)
are failures, not results: they are left out of every estimate and listed
(:func:`collapsed_networks`). Networks stopped by the epoch cap (``stop_reason == "cap"``)
are left out of C4a and C5 by default (``keep_capped=True`` counts them).

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

from .tables import compressed_dead
from .vocabulary import LABELS
from .contrasts import holm as _holm, mde as _mde, paired_contrast as _contrast
from .contrasts import first_by, seeds_needed as _seeds_needed, simultaneous_ci as _simultaneous_ci, toward_claim

__all__ = ["VERDICTS", "CLAIMS", "PAPER", "MARGIN", "MUCH", "EPOCH_MARGIN", "EPOCH_CLAIMS", "COLLAPSE",
           "ClaimsReport", "check_claims", "measures", "collapsed_networks"]

VERDICTS = ("holds", "does not hold", "not testable at this n", "not testable: no control")
CLAIMS = {
    "C1": "No block is more critical than another.",
    "C2": "FM networks (only the compressed layer trains) are much worse than TM networks (all layers train).",
    "C3": "TM networks can exceed the base.",
    "C4a": "STN initialisation converges faster.",
    "C4b": "An STN network never exceeds the base.",
    "C5": "Initialising with the parent's mean filters (MW) does not speed convergence.",
}
PAPER = {
    "C1": "We first note that no layer is more critical than any other. (Sec. 4)",
    "C2": "FM models [...] achieve significantly lower relative accuracy. (Sec. 4)",
    "C3": "One may also note that TM models [...] often out perform the baseline model. (Sec. 4)",
    "C4a": "Student-Teacher Networks can improve the rate of convergence of a large network model (Sec. 5)",
    "C4b": "[...] it cannot increase the student performance beyond that of its teacher. (Sec. 5)",
    "C5": ("initialization with an average set of weights from the parent network not only doesn't help, "
           "it may even reduce the rate of convergence. (Sec. 4)"),
}
MARGIN = 1.0        # accuracy points: about the binomial SE of one accuracy on 2,000 test images
MUCH = 5.0          # accuracy points: C2's "much worse"
EPOCH_MARGIN = 1.0  # epochs: C4a's and C5's "faster"; the resolution of an epochs-to-99% count
EPOCH_CLAIMS = ("C4a", "C5")   # the claims about convergence, in epochs to 99%
COLLAPSE = 0.9      # majority_frac at or above which a network counts as collapsed

_SHORT = LABELS   # random -> RW, thawed -> TM, ...
_INITS = ("random", "mean", "stn")
_REGIMES = ("frozen", "thawed")
# (kind of each contrast, quantifier over the family, threshold parameter)
_RULES = {"C1": ("equiv", "all", "margin"), "C2": ("greater", "all", "much"),
          "C3": ("greater", "any", "margin"), "C4a": ("less", "any", "epoch_margin"),
          "C4b": ("less", "all", "margin"), "C5": ("greater", "all", "epoch_margin")}


# ----------------------------------------------------------------------------- inputs

def measures(runs, measure: str = "validation") -> dict:
    """The columns read as accuracy and as convergence, with a sentence for each.

    Format 2 results are selected on a validation split (``test_acc_at_best_val``,
    ``epochs_to_99pct_val``); format 1 results only have the paper's test-selected
    measures (``max_test_acc``, ``epochs_to_99pct``), which ``measure="paper"`` reads
    from format 2 too.
    """
    def has(c):
        return c in runs.columns and runs[c].notna().any()
    paper = measure == "paper"
    acc = "test_acc_at_best_val" if has("test_acc_at_best_val") and not paper else "max_test_acc"
    conv = "epochs_to_99pct_val" if has("epochs_to_99pct_val") and not paper else "epochs_to_99pct"
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


MEASURES = ("validation", "paper")
REFERENCES = ("control", "base")


def _validate(runs, alpha, margin, much, epoch_margin, measure="validation", reference="control"):
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
    if measure not in MEASURES:
        problems.append(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    if reference not in REFERENCES:
        problems.append(f"reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
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


def _tidy(runs, collapse: float = COLLAPSE, count_hint: bool = True, measure: str = "validation"):
    """One row per network: dataset, seed, role (base | control | child), block, init, regime,
    acc (points), conv (epochs, STN's hint epochs included unless ``count_hint`` is False),
    collapsed, capped, cka, dead (dead block-1 channels), dead_c and channels (a child's dead
    channels at its compressed block's output, and that block's width)."""
    import numpy as np
    m = measures(runs, measure)
    t = runs[runs["seed"].notna()].reset_index(drop=True)
    block = t["block"].astype(int)
    name = t["name"].astype(str) if "name" in t else None
    scheme = t["scheme"].astype(str) if "scheme" in t else None
    is_control = (block == 0) & (((name == "control") if name is not None else False)
                                 | ((scheme == "Control") if scheme is not None else False))
    role = np.where(block > 0, "child", np.where(is_control, "control", "base"))
    init = t["init"].where(t["init"].notna(), "").astype(str) if "init" in t else ""
    regime = t["regime"].where(t["regime"].notna(), "").astype(str) if "regime" in t else ""
    # the hint epochs STN actually trained (its hint stops on a loss plateau, often before the
    # cap); format-1 results trained a fixed number, their config's stn_epochs
    trained = t["stn_epochs_trained"] if "stn_epochs_trained" in t else None
    hint = t["stn_epochs"].fillna(0) if "stn_epochs" in t else 0
    if trained is not None:
        hint = trained.where(trained.notna(), hint).fillna(0)
    hint = np.where((init == "stn") & count_hint, hint, 0)
    conv = (t[m["convergence"]] + hint) if m["convergence"] in t else np.nan
    peaked = ((t["epoch_of_max"] >= t["epochs"]) if {"epoch_of_max", "epochs"} <= set(t.columns)
              and "stop_reason" not in t else False)
    maj = t["majority_frac"] if "majority_frac" in t else np.nan
    if scheme is None:
        scheme = np.where(block > 0, [f"{_SHORT.get(r, r)}-{_SHORT.get(i, i)}" for i, r in zip(init, regime)],
                          np.where(role == "control", "Control", "Base"))
    dead_c, channels = compressed_dead(t)
    out = t[["dataset", "seed"]].assign(
        role=role, block=block, init=init, regime=regime, acc=100 * t[m["accuracy"]].astype(float),
        conv=conv, hint=hint, peaked_last=peaked, majority_frac=maj,
        collapsed=(maj >= collapse) if "majority_frac" in t else False,
        capped=(t["stop_reason"] == "cap") if "stop_reason" in t else False,
        cka=t["cka_block1"] if "cka_block1" in t else np.nan,
        dead=t["dead_block1"] if "dead_block1" in t else np.nan,
        dead_c=dead_c, channels=channels,
        name=name if name is not None else "", scheme=scheme)
    out["seed"] = out["seed"].astype(int)
    return out.dropna(subset=["acc"]).reset_index(drop=True)


def _wide(t, value: str, keep_collapsed: bool = False):
    """seed x (role, block, init, regime) table of ``value``, one row for every seed of ``t``
    (collapsed networks left out unless ``keep_collapsed``)."""
    keep = t if keep_collapsed else t[~t["collapsed"].astype(bool)]
    w = keep.pivot_table(index="seed", columns=["role", "block", "init", "regime"], values=value,
                         aggfunc="mean")
    return w.reindex(sorted(t["seed"].unique()))


def _cols(w, cells):
    """Columns ``cells`` of a wide table as a (seeds x cells) array, NaN where absent."""
    import numpy as np
    return np.column_stack([w[c].to_numpy(dtype=float) if c in w.columns else np.full(len(w), np.nan)
                            for c in cells]) if cells else np.empty((len(w), 0))


def _matched(a, b, trained_a=None, trained_b=None):
    """Per-seed means of a and b over the columns where both have a value, from the seeds
    that trained every network of the contrast.

    A seed whose grid is still partial would average over other cells than the complete
    seeds (MNIST seed 0 with blocks 1-2 beside seed 1 with all five), so its difference
    would not be the same contrast; it is left out until its networks are trained.
    ``trained_a``/``trained_b`` say which networks exist (collapsed and capped ones too:
    they are trained, just not counted); a cell no seed has trained is not required.
    Within a complete seed, a value missing because its network collapsed (or, in C4a,
    was capped) is left out of that seed's mean.
    """
    import numpy as np
    trained_a = ~np.isnan(a) if trained_a is None else ~np.isnan(trained_a)
    trained_b = ~np.isnan(b) if trained_b is None else ~np.isnan(trained_b)
    complete = (trained_a | ~trained_a.any(axis=0)).all(axis=1) & (trained_b | ~trained_b.any(axis=0)).all(axis=1)
    ok = ~np.isnan(a) & ~np.isnan(b)
    n = ok.sum(axis=1)
    keep = (n > 0) & complete
    x1 = np.where(ok, a, 0).sum(axis=1)[keep] / n[keep]
    x2 = np.where(ok, b, 0).sum(axis=1)[keep] / n[keep]
    return x1, x2


# ----------------------------------------------------------------------------- families: multiplicity, verdict

def _decide(fam, quantifier: str, level: float, kind: str):
    """Verdict of a family of contrasts and the row of the contrast that decided it (for a family
    left undecided: the contrast that kept it from being decided).

    "all" (universal claims C1, C2, C4b): holds when every contrast holds (intersection-union,
    no correction); does not hold when some contrast fails (Holm over the family).
    "any" (existential claims C3, C4a): holds when some contrast holds (Holm); does not hold
    when every contrast fails (no correction).

    Among equal p-values (one seed: all NaN) the estimate decides (:func:`contrasts.first_by`).
    """
    fam = fam.copy()
    if quantifier == "all":
        fam["p_adj"], fam["p_against_adj"] = fam["p"], _holm(fam["p_against"])
    else:
        fam["p_adj"], fam["p_against_adj"] = _holm(fam["p"]), fam["p_against"]
    ok_for = (fam["p_adj"] < level).to_numpy()
    ok_against = (fam["p_against_adj"] < level).to_numpy()
    toward = toward_claim(kind, fam["estimate"].to_numpy(dtype=float), fam["threshold"].to_numpy(dtype=float))
    pf, pa = fam["p_adj"].to_numpy(dtype=float), fam["p_against_adj"].to_numpy(dtype=float)
    pick = lambda p, lowest_p, most_toward: int(fam.index[first_by(p, toward, lowest_p, most_toward)])  # noqa: E731
    if quantifier == "all":
        if ok_against.any():    # the clearest failure
            return "does not hold", fam, pick(pa, lowest_p=True, most_toward=False)
        # the weakest contrast: the one that keeps (or would keep) the claim from holding
        return ("holds" if ok_for.all() else "not testable at this n"), fam, pick(pf, False, False)
    if ok_for.any():            # the clearest success
        return "holds", fam, pick(pf, lowest_p=True, most_toward=True)
    # not testable: the contrast that keeps it from failing (the best candidate) is the one shown
    return ("does not hold" if ok_against.all() else "not testable at this n"), fam, pick(pa, False, True)


# ----------------------------------------------------------------------------- claims

def _family(claim: str, t) -> list[tuple[str, str, object, object]]:
    """The contrasts of a claim on one data set: (regime, label, x1 per seed, x2 per seed)."""
    import itertools
    import numpy as np
    acc = _wide(t, "acc")
    made = _wide(t, "acc", keep_collapsed=True)   # which networks were trained
    blocks = sorted(t.loc[t["role"] == "child", "block"].unique())

    def kids(w, cells):     # cells: (block, init, regime) of children
        return _cols(w, [("child", b, i, r) for b, i, r in cells])

    def pair(w, cells_a, cells_b):   # a contrast of two sets of child cells, complete seeds only
        return _matched(kids(w, cells_a), kids(w, cells_b), kids(made, cells_a), kids(made, cells_b))
    control, control_made = (_cols(w, [("control", 0, "", "")]) for w in (acc, made))
    out = []
    if claim == "C1":       # each pair of blocks, per regime, mean over the matched initialisers
        for r, (b1, b2) in itertools.product(_REGIMES, itertools.combinations(blocks, 2)):
            out.append((_SHORT[r], f"{_SHORT[r]}: block {b1} - block {b2}",
                        *pair(acc, [(b1, i, r) for i in _INITS], [(b2, i, r) for i in _INITS])))
    elif claim == "C2":     # TM - FM over every (block, init)
        cells = list(itertools.product(blocks, _INITS))
        out.append(("TM vs FM", "TM - FM", *pair(acc, [(b, i, "thawed") for b, i in cells],
                                                 [(b, i, "frozen") for b, i in cells])))
    elif claim in ("C3", "C4b"):   # each TM config (C3) or STN config (C4b) against the control
        cells = (itertools.product(blocks, _INITS, ["thawed"]) if claim == "C3"
                 else ((b, "stn", r) for r in _REGIMES for b in blocks))
        for b, i, r in cells:
            out.append((_SHORT[r], f"b{b} {_SHORT[r]}-{_SHORT[i]} - control",
                        *_matched(kids(acc, [(b, i, r)]), control, kids(made, [(b, i, r)]), control_made)))
    elif claim == "C4a":    # STN - mean(RW, MW) epochs, per regime, mean over blocks; capped runs left out
        conv = _wide(t[~t["capped"].astype(bool)], "conv").reindex(acc.index)
        for r in _REGIMES:
            stn, rw, mw = (kids(conv, [(b, i, r) for b in blocks]) for i in ("stn", "random", "mean"))
            made_stn, made_rw, made_mw = (kids(made, [(b, i, r) for b in blocks]) for i in ("stn", "random", "mean"))
            with np.errstate(invalid="ignore"):
                other = np.where(np.isnan(rw), mw, np.where(np.isnan(mw), rw, (rw + mw) / 2))
            # the RW/MW side needs both initialisers of every block trained
            made_other = np.where(np.isnan(made_rw) | np.isnan(made_mw), np.nan, 1.0)
            out.append((_SHORT[r], f"{_SHORT[r]}-STN - {_SHORT[r]}-RW/MW (epochs)",
                        *_matched(stn, other, made_stn, made_other)))
    elif claim == "C5":     # MW - RW epochs, per regime, mean over blocks; capped runs left out
        conv = _wide(t[~t["capped"].astype(bool)], "conv").reindex(acc.index)
        for r in _REGIMES:
            cells_mw, cells_rw = ([(b, i, r) for b in blocks] for i in ("mean", "random"))
            out.append((_SHORT[r], f"{_SHORT[r]}-MW - {_SHORT[r]}-RW (epochs)",
                        *_matched(kids(conv, cells_mw), kids(conv, cells_rw), kids(made, cells_mw),
                                  kids(made, cells_rw))))
    return out


@dataclass
class ClaimsReport:
    """What :func:`check_claims` found.

    Attributes:
        verdicts: one row per claim and data set (``level == "data set"``) and, for the claims
            tested per regime (C1, C4a, C4b, C5), per regime (``level == "regime"``): verdict, the
            deciding contrast with its estimate, 95% CI, p (one-sided, adjusted where the family
            is), n (seeds), MDE, seeds needed, and a note.
        contrasts: every contrast tested (the claims' raw material).
        counts: one row per claim: in how many data sets it holds, fails, is not testable.
        collapsed: the collapsed networks (failures, left out of every estimate).
        measures: :func:`measures` of the table.
        params: alpha, margin, much, epoch_margin, collapse, keep_capped, count_hint, measure, reference.
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
        partial = v["note"].fillna("").str.startswith("partial grid")   # the table drops the note: say it here
        v = v.assign(contrast=v["contrast"].where(~partial, v["contrast"] + " (partial grid)"))
        def fmt(lo_col, hi_col):
            if lo_col not in v:
                return ["n/a"] * len(v)
            return [f"[{lo:+.2f}, {hi:+.2f}]" if not math.isnan(lo) else "n/a"
                    for lo, hi in zip(v[lo_col], v[hi_col])]
        return v.assign(**{"95% CI": fmt("ci_low", "ci_high"), "simultaneous CI": fmt("ci_fw_low", "ci_fw_high")}
                        ).rename(columns={"p_adj": "p (holds)", "p_against_adj": "p (fails)"})[
            ["claim", "dataset", "verdict", "contrast", "estimate", "95% CI", "simultaneous CI", "p (holds)",
             "p (fails)", "n", "mde", "note"]
        ].astype({"n": "Int64"}).set_index(["claim", "dataset"]).round(
            {"estimate": 2, "p (holds)": 4, "p (fails)": 4, "mde": 2})

    def verdict(self, claim: str, dataset: str, regime: str | None = None) -> str:
        v = self.verdicts
        sel = (v["claim"] == claim) & (v["dataset"] == dataset)
        sel &= (v["level"] == "data set") if regime is None else (v["regime"] == regime)
        return str(v.loc[sel, "verdict"].iloc[0])


def check_claims(runs, alpha: float = 0.05, margin: float = MARGIN, much: float = MUCH,
                 epoch_margin: float = EPOCH_MARGIN, collapse: float = COLLAPSE,
                 keep_capped: bool = False, count_hint: bool = True, measure: str = "validation",
                 reference: str = "control") -> ClaimsReport:
    """Test the paper's claims C1, C2, C3, C4a, C4b, C5 on a runs table, per data set and regime.

    Args:
        runs: ``Results.runs`` (format 1 or 2); needs dataset, seed, block, init, regime and an
            accuracy column; ``name == "control"`` rows (block 0) are the continued-base control.
        alpha: the CI is 1 - alpha; each one-sided test is at alpha / 2.
        margin: delta in accuracy points (C1, C3, C4b): differences within it do not matter.
        much: C2's "much worse", in accuracy points.
        epoch_margin: C4a's and C5's "faster", in epochs.
        collapse: ``majority_frac`` at or above which a network counts as collapsed.
        keep_capped: count networks stopped by the epoch cap in C4a and C5 (their epochs to 99% are
            defined; whether the cap cut them short is :func:`triage.convergence.cap_audit`'s
            question). Default False: left out, the conservative reading.
        count_hint: add the hint epochs STN trained to its epochs to 99% in C4a (default: they
            are training epochs the other initialisers do not get).
        measure: "validation" (default: test accuracy at the best validation epoch, epochs to
            99% of the best validation accuracy) or "paper" (the paper's test-selected maximum
            test accuracy and epochs to 99% of it), to see what the paper's measure does.
        reference: what C3 and C4b compare a child with: "control" (default: the continued
            base, trained as long as the children) or "base" (the paper's comparison, the
            base as it was before the children's extra training).

    Returns:
        a :class:`ClaimsReport`.

    Raises:
        ValueError: margin, much or epoch_margin <= 0, alpha outside (0, 1), an unknown measure or
            reference, no seeds, or no accuracy.

    Example:
        >>> rep = check_claims(report.load("cpu").runs, margin=1.0)     # doctest: +SKIP
        >>> rep.verdict("C1", "mnist")                                   # doctest: +SKIP
        'not testable at this n'
    """
    import pandas as pd
    _validate(runs, alpha, margin, much, epoch_margin, measure, reference)
    params = {"alpha": alpha, "margin": margin, "much": much, "epoch_margin": epoch_margin,
              "collapse": collapse, "keep_capped": keep_capped, "count_hint": count_hint,
              "measure": measure, "reference": reference}
    meas = measures(runs, measure)
    t = _tidy(runs, collapse, count_hint, measure)
    if keep_capped:
        t = t.assign(capped=False)
    if reference == "base":    # the base takes the control's place in C3 and C4b
        t = t[t["role"] != "control"].assign(role=lambda x: x["role"].replace({"base": "control"}))
    level = alpha / 2
    thresholds = {"margin": margin, "much": much, "epoch_margin": -epoch_margin}
    contrasts, verdicts = [], []
    design = _configs(t)   # every child configuration some data set trained: the grid's design
    for dataset, part in t.groupby("dataset", sort=False):
        has_control = (part["role"] == "control").any()
        n_coll = int(part["collapsed"].astype(bool).sum())
        # a data set none of whose seeds has trained the whole design: its contrasts average the
        # configurations it has, so an estimate is not yet the claim's and will move
        n_cfg = len(_configs(part))
        partial = (f"partial grid: {n_cfg} of {len(design)} configurations trained in any seed; the estimate "
                   "covers those only" if 0 < n_cfg < len(design) else "")
        for claim, (kind, quant, tname) in _RULES.items():
            thr = thresholds[tname]
            if claim in ("C3", "C4b") and not has_control:
                no_kids = not (part["role"] == "child").any()
                verdicts.append({"claim": claim, "dataset": dataset, "level": "data set",
                                 "regime": "TM" if claim == "C3" else "FM and TM",
                                 "verdict": "not testable: no control", "threshold": thr,
                                 "note": "no networks to compare: only the base is stored" if no_kids
                                 else "no continued-base control in this table"})
                continue
            fam = pd.DataFrame([{"claim": claim, "dataset": dataset, "regime": regime, "contrast": label,
                                 "threshold": thr, **_contrast(x1, x2, kind, thr, alpha)}
                                for regime, label, x1, x2 in _family(claim, part)])
            if fam.empty:
                fam = pd.DataFrame(columns=["regime"])
            scopes = [("data set", "FM and TM" if claim in ("C1", "C4a", "C4b", "C5") else
                       ("TM" if claim == "C3" else "TM vs FM"), fam)]
            if claim in ("C1", "C4a", "C4b", "C5"):
                scopes += [("regime", r, fam[fam["regime"] == r].reset_index(drop=True)) for r in ("FM", "TM")]
            for lvl, regime, sub in scopes:
                if sub.empty:
                    verdicts.append({"claim": claim, "dataset": dataset, "level": lvl, "regime": regime,
                                     "verdict": "not testable at this n", "threshold": thr,
                                     "note": "no networks to compare"})
                    continue
                verdict, sub, i = _decide(sub, quant, level, kind)
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
                row["ci_fw_low"], row["ci_fw_high"] = _simultaneous_ci(row, alpha, len(sub))
                verdicts.append({"claim": claim, "dataset": dataset, "level": lvl, "regime": regime,
                                 "verdict": verdict,
                                 **{k: row[k] for k in ("contrast", "estimate", "ci_low", "ci_high", "p",
                                                        "p_adj", "p_against", "p_against_adj", "n", "sd",
                                                        "mde", "seeds_needed", "likely", "threshold",
                                                        "ci_fw_low", "ci_fw_high")},
                                 "contrasts": len(sub),
                                 "note": "; ".join(x for x in (partial, _note(claim, kind, verdict, sub, row, thr,
                                                                                n_coll, part, quant)) if x)})
    v = pd.DataFrame(verdicts)
    c = pd.concat(contrasts, ignore_index=True) if contrasts else pd.DataFrame()
    return ClaimsReport(v, c, _counts(v), collapsed_networks(runs, collapse), meas, params)


def _configs(t) -> set:
    """The (block, init, regime) configurations of the children in a tidy table."""
    return set(map(tuple, t.loc[t["role"] == "child", ["block", "init", "regime"]].to_numpy()))


def _on_claim_side(kind: str, estimate: float, thr: float) -> bool:
    return bool(toward_claim(kind, estimate, thr) > 0)


def _note(claim, kind, verdict, fam, row, thr, n_coll, part, quant="all") -> str:
    """One sentence on what decided the verdict, and the CI-inside-margin-but-nonzero case."""
    parts = []
    m = len(fam)
    # the contrast's 95% CI is past the threshold on a side that is Holm-corrected over the family,
    # yet the verdict is undecided: say why, or the table reads as contradicting itself
    holm_side_is_against = quant == "all"
    beyond = (not _on_claim_side(kind, row["estimate"], thr)) == holm_side_is_against
    ci_past = (row["ci_low"] > thr or row["ci_high"] < thr) if kind != "equiv" else (
        row["ci_low"] > thr or row["ci_high"] < -thr)
    if verdict == "not testable at this n" and m > 1 and beyond and ci_past:
        parts.append(f"its 95% CI lies past the margin, but it is one of {m} contrasts: after Holm "
                     f"p = {row['p_against_adj' if holm_side_is_against else 'p_adj']:.3g}, and its "
                     f"simultaneous CI [{row['ci_fw_low']:+.2f}, {row['ci_fw_high']:+.2f}] reaches across")
    if claim in EPOCH_CLAIMS:
        kids = part[part["role"] == "child"]
        hint = kids.loc[kids["init"] == "stn", "hint"].astype(float)
        if claim == "C4a" and len(hint) and hint.max() > 0:
            span = f"{hint.min():g}" if hint.min() == hint.max() else f"{hint.min():g}-{hint.max():g}"
            parts.append(f"STN's {span} hint epochs counted")
        if kids["capped"].astype(bool).any():
            parts.append(f"{int(kids['capped'].sum())} network(s) stopped by the epoch cap left out "
                         "(the cap may have cut their time short; the chapter also counts them)")
        elif kids["peaked_last"].astype(bool).any():
            parts.append(f"{int(kids['peaked_last'].sum())} of {len(kids)} networks peaked at their last "
                         "epoch (fixed schedule): their time to 99% may be a lower bound")
    unit = "epochs" if claim in EPOCH_CLAIMS else "points"
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
