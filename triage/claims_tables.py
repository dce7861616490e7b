"""Statistics shown beside the claims: seed-to-seed SD, unstable cells, an omnibus block test,
Fig. 3's CKA, and what the paper's protocol choices would do to the verdicts.

Reason to change: which supporting tables the claims chapter shows and how they are
estimated. They read the same tidy runs table as :mod:`triage.claims` (collapsed networks
left out) but decide nothing: the verdicts are :func:`triage.claims.check_claims`'s.

Example:
    >>> from triage import claims_tables, report
    >>> res = report.load("campaign")                                         # doctest: +SKIP
    >>> claims_tables.fig3_cka(res.runs, claims_tables.cka_bases(res))        # doctest: +SKIP
"""
from __future__ import annotations

import math
from pathlib import Path

from .claims import _INITS, _SHORT, COLLAPSE, MUCH, _cols, _matched, _tidy, _wide, check_claims
from .tables import compressed_dead
from .contrasts import paired_contrast, simultaneous_ci

__all__ = ["seed_sd", "unstable_cells", "unstable_text", "dead_by_block", "dead_by_block_text", "device_spread_text", "block_effect", "cka_bases", "fig3_cka",
           "c2_by_block", "c2_by_block_text", "PROTOCOLS", "protocol_sensitivity", "protocol_effects", "base_fit", "child_lr_pairs", "child_lr_text"]

# Our protocol and the paper's two choices that can be put back on our runs: its accuracy
# measure (the maximum test accuracy over epochs, selected on the test set itself) and its
# reference for "exceeds the base" (the base, not the base trained as long as the children).
PROTOCOLS = {"ours": ("validation", "control"), "paper's measure": ("paper", "control"),
             "against the base": ("validation", "base"), "paper's protocol": ("paper", "base")}


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


def unstable_cells(runs, spread: float = 10.0, collapse: float = COLLAPSE):
    """Cells (data set, block, initialiser, regime) whose accuracy spans more than ``spread``
    points across seeds: the same recipe lands on very different networks.

    Such a cell is not a noisy estimate of one accuracy but a mixture (a network that trained
    and one that barely did), so its mean over three seeds says little and its seed SD
    dominates every contrast it enters (C1's FM block pairs, C2). Collapsed networks (at or above
    ``collapse``) are listed by :func:`triage.claims.collapsed_networks` and kept out here too.

    Returns:
        DataFrame: dataset, scheme (e.g. ``b1 FM-MW``), seeds, low, high, range (points),
        max_majority (the largest share of test images given to one class by a network of the
        cell; NaN without ``majority_frac``) and per_seed: each seed's accuracy and, where
        recorded, the dead channels of its compressed block (``dead_compressed``), widest first.
    """
    import numpy as np
    import pandas as pd
    cols = ["dataset", "scheme", "seeds", "low", "high", "range", "max_majority", "per_seed"]
    t = _tidy(runs, collapse)
    t = t[(t["role"] == "child") & ~t["collapsed"].astype(bool)]
    rows = []
    for (dataset, block, init, regime), g in t.groupby(["dataset", "block", "init", "regime"], sort=False):
        if len(g) < 2:
            continue
        lo, hi = float(g["acc"].min()), float(g["acc"].max())
        if hi - lo > spread:
            rows.append({"dataset": dataset, "scheme": f"b{int(block)} {_SHORT[regime]}-{_SHORT[init]}",
                         "seeds": len(g), "low": lo, "high": hi, "range": hi - lo,
                         "max_majority": float(np.nanmax(g["majority_frac"])) if g["majority_frac"].notna().any()
                         else float("nan"),
                         "per_seed": ", ".join(f"seed {int(r.seed)}: {r.acc:.1f}%" + _dead_note(r)
                                               for r in g.sort_values("seed").itertuples())})
    return pd.DataFrame(rows, columns=cols).sort_values("range", ascending=False, ignore_index=True)


def _dead_note(r) -> str:
    """" (k of C dead)" for a child whose dead channels at its compressed block are recorded."""
    if not r.dead_c == r.dead_c:
        return ""
    return f" ({int(r.dead_c)} of {int(r.channels)} dead)" if r.channels == r.channels else f" ({int(r.dead_c)} dead)"


def unstable_text(cells, spread: float = 10.0) -> str:
    """One sentence on :func:`unstable_cells`: how many cells, the widest, per data set."""
    if cells is None or cells.empty:
        return f"No cell's accuracy spans more than {spread:g} points across seeds."
    parts = []
    for dataset, g in cells.groupby("dataset", sort=False):
        w = g.iloc[0]
        parts.append(f"{dataset}: {len(g)} cell(s), widest {w['scheme']} from {w['low']:.1f}% to "
                     f"{w['high']:.1f}% over {int(w['seeds'])} seeds")
    return (f"Cells whose accuracy spans more than {spread:g} points across seeds: " + "; ".join(parts) + ".")


def dead_by_block(runs, share: float = 0.25, collapse: float = COLLAPSE):
    """Dead channels at the compressed block's output (``dead_compressed``), by data set, block and
    regime, and what the networks with many of them reach.

    FM trains the compressed conv alone, between frozen layers: a dead channel of it (zero on all
    500 probe images, so zero gradient) stays dead and nothing downstream adapts to the loss. TM
    can adapt. Whether many dead channels cost accuracy is then a matter of the block.

    Args:
        runs: ``Results.runs``.
        share: the share of a block's channels from which a network counts as having many dead.
        collapse: ``majority_frac`` at which a network counts as collapsed (left out).

    Returns:
        DataFrame, one row per data set, block and regime with the measure recorded: channels,
        networks, dead_median, dead_max (counts), many (networks with at least ``share`` of the
        channels dead), acc_many, acc_rest (accuracy ranges, points, "-" where none), unknown
        (networks without the measure).
    """
    import pandas as pd
    cols = ["dataset", "block", "regime", "channels", "networks", "dead_median", "dead_max", "many",
            "acc_many", "acc_rest", "unknown"]
    t = _tidy(runs, collapse)
    t = t[(t["role"] == "child") & ~t["collapsed"].astype(bool)]

    def span(x):
        lo, hi = (f"{x.min():.1f}", f"{x.max():.1f}") if len(x) else ("-", "-")
        return lo if lo == hi else f"{lo}-{hi}"
    rows = []
    for (dataset, block, regime), g in t.groupby(["dataset", "block", "regime"], sort=True):
        known = g[g["dead_c"].notna() & g["channels"].notna()]
        if known.empty:
            continue
        ch = int(known["channels"].iloc[0])
        many = known["dead_c"] >= share * ch
        rows.append({"dataset": dataset, "block": int(block), "regime": _SHORT.get(regime, regime), "channels": ch,
                     "networks": len(known), "dead_median": float(known["dead_c"].median()),
                     "dead_max": int(known["dead_c"].max()), "many": int(many.sum()),
                     "acc_many": span(known.loc[many, "acc"]), "acc_rest": span(known.loc[~many, "acc"]),
                     "unknown": len(g) - len(known)})
    return pd.DataFrame(rows, columns=cols)


def dead_by_block_text(table, share: float = 0.25) -> str:
    """:func:`dead_by_block` in words: per data set, the FM blocks whose networks with many dead
    channels fall short of the others, and the most dead channels any TM network has."""
    if table is None or table.empty:
        return "Dead channels at the compressed block are not recorded in these results."
    parts = []
    for dataset, g in table.groupby("dataset", sort=False):
        fm, tm = g[g["regime"] == "FM"], g[g["regime"] == "TM"]
        said = [f"block {r.block}: {r.many} of {r.networks} with at least {share * r.channels:g} of {r.channels} "
                f"dead reach {r.acc_many}%" + (f", the others {r.acc_rest}%" if r.many < r.networks else "")
                for r in fm.itertuples() if r.many]
        clean = [str(r.block) for r in fm.itertuples() if not r.many]
        text = f"**{dataset}**, FM: " + ("; ".join(said) if said else "no network with that many dead")
        if clean:
            text += f"; none with that many at block{'s' if len(clean) > 1 else ''} {', '.join(clean)}"
        if len(tm):
            worst = tm.assign(frac=tm["dead_max"] / tm["channels"]).sort_values("frac").iloc[-1]
            text += (f". TM: at most {int(worst['dead_max'])} of {int(worst['channels'])} dead "
                     f"(block {int(worst['block'])})")
        unknown = int(g["unknown"].sum())
        if unknown:   # trained before the measure existed, with their weights elsewhere
            text += f" ({unknown} network(s) without the measure)"
        parts.append(text)
    return "Dead channels of the compressed block (zero on all 500 probe images): " + ". ".join(parts) + "."


def device_spread_text(repeats) -> str:
    """How far one config and seed moves between the CPU and the GPU, FM children apart from the
    rest, from :func:`triage.tables.device_repeats` (its ``name`` ends in the regime)."""
    if repeats is None or repeats.empty:
        return "No network is stored on both devices."
    fm = repeats["name"].str.endswith("-frozen")
    parts = []
    for label, sel in (("FM children", fm), ("TM children and bases", ~fm)):
        d = 100 * repeats.loc[sel, "diff"].abs()
        if len(d):
            parts.append(f"{label} up to {d.max():.1f} points apart (median {d.median():.1f}, {len(d)} pairs)")
    return "The same config and seed trained on the CPU and on the GPU: " + "; ".join(parts) + "."


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
        # a seed with one network of this regime (a grid just begun) has leverage 1 once seed is a
        # factor: it says nothing about blocks, and HC3 divides by 1 - leverage
        size = g.groupby("seed")["acc"].transform("size")
        g = g[size >= 2]
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


def c2_by_block(runs, alpha: float = 0.05, much: float = MUCH, collapse: float = COLLAPSE):
    """C2's contrast block by block: TM - FM per seed, mean over the three initialisers of one block.

    The paper states C2 for the grid as a whole, and so does :func:`triage.claims.check_claims`;
    this breakdown asks where the gap lives. It decides no claim: five looks at one data set, so
    each block's *reading* is taken off its simultaneous interval (Bonferroni over the data set's
    blocks), and the 95% CI is shown beside it. Seeds are matched as in the claims (a seed counts
    for a block once it has trained all six of its networks; a collapsed one is left out of its
    seed's mean).

    Args:
        runs: ``Results.runs``.
        alpha: 1 - the CI's level.
        much: C2's "much worse", accuracy points.
        collapse: ``majority_frac`` at which a network counts as collapsed.

    Returns:
        DataFrame, one row per data set and block: dataset, block, n (seeds), estimate, ci_low,
        ci_high, sim_low, sim_high (points), per_seed (the seeds' differences, rounded), reading:
        "much worse" (the simultaneous interval lies above ``much``), "not much worse" (below it)
        or "undecided at this n".
    """
    import pandas as pd
    cols = ["dataset", "block", "n", "estimate", "ci_low", "ci_high", "sim_low", "sim_high", "per_seed", "reading"]
    t = _tidy(runs, collapse)
    t = t[t["role"] == "child"]
    rows = []
    for dataset, g in t.groupby("dataset", sort=False):
        acc, made = _wide(g, "acc"), _wide(g, "acc", keep_collapsed=True)
        blocks = sorted(g["block"].unique())
        for b in blocks:
            tm, fm = ([("child", b, i, r) for i in _INITS] for r in ("thawed", "frozen"))
            x1, x2 = _matched(_cols(acc, tm), _cols(acc, fm), _cols(made, tm), _cols(made, fm))
            r = paired_contrast(x1, x2, "greater", much, alpha)
            lo, hi = simultaneous_ci(r, alpha, len(blocks))
            reading = ("much worse" if lo > much else "not much worse" if hi < much else "undecided at this n")
            rows.append({"dataset": dataset, "block": int(b), "n": r["n"], "estimate": r["estimate"],
                         "ci_low": r["ci_low"], "ci_high": r["ci_high"], "sim_low": lo, "sim_high": hi,
                         "per_seed": ", ".join(f"{v:+.1f}" for v in (x1 - x2)),
                         "reading": reading if r["n"] >= 2 else "undecided at this n"})
    return pd.DataFrame(rows, columns=cols)


def c2_by_block_text(table, much: float = MUCH) -> str:
    """:func:`c2_by_block` in words: per data set, the blocks where FM is much worse, where it is
    not, and where the seeds cannot tell yet."""
    if table is None or table.empty or not table["n"].ge(1).any():
        return "No data set has a seed that trained both regimes of a block: no breakdown yet."
    # a data set with one complete seed so far: its differences are shown, without an interval
    one = [f"**{dataset}** (one seed: " + ", ".join(f"block {int(r.block)} {r.estimate:+.1f}" for r in g.itertuples())
           + ")" for dataset, g in table[table["n"] == 1].groupby("dataset", sort=False)
           if not (table.loc[table["dataset"] == dataset, "n"] >= 2).any()]
    tail = (" One seed has no interval: " + "; ".join(one) + ".") if one else ""
    if not table["n"].ge(2).any():
        return "No data set has two seeds that trained both regimes of a block: no interval yet." + tail
    parts = []
    for dataset, g in table[table["n"] >= 2].groupby("dataset", sort=False):
        est = ", ".join(f"block {int(r.block)} {r.estimate:+.1f} [{r.ci_low:+.1f}, {r.ci_high:+.1f}]"
                        for r in g.itertuples())
        said = []
        for reading in ("much worse", "not much worse", "undecided at this n"):
            b = g.loc[g["reading"] == reading, "block"].astype(int).tolist()
            if b:
                said.append(f"{reading} at block{'s' if len(b) > 1 else ''} {', '.join(map(str, b))}")
        parts.append(f"**{dataset}** (n = {int(g['n'].min())}" + (f"-{int(g['n'].max())}" if g["n"].nunique() > 1
                     else "") + f" seeds): {est}; FM is {'; '.join(said)}")
    return ("TM - FM by block (points, 95% CI; the reading uses the simultaneous interval over the blocks "
            f"against C2's {much:g} points): " + ". ".join(parts) + "." + tail)


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
        from .store import default_profile, default_results_root
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


def protocol_sensitivity(runs, **kw):
    """Every claim's verdict per data set under our protocol and under the paper's choices put
    back, one at a time and both (:data:`PROTOCOLS`), on the same networks.

    Args:
        runs: a format-2 runs table (it has both measures and the control).
        **kw: passed to :func:`triage.claims.check_claims` (margin, alpha, ...).

    Returns:
        DataFrame: dataset, claim, protocol, verdict, estimate, ci_low, ci_high, n, and
        ``changed``: the verdict differs from ours and one of the two is decided (a move between
        "not testable at this n" and "not testable: no control" is no change of verdict).
    """
    import pandas as pd
    rows = []
    for name, (measure, reference) in PROTOCOLS.items():
        v = check_claims(runs, measure=measure, reference=reference, **kw).verdicts
        for r in v[v["level"] == "data set"].itertuples():
            rows.append({"dataset": r.dataset, "claim": r.claim, "protocol": name, "verdict": r.verdict,
                         **{k: getattr(r, k, float("nan")) for k in ("estimate", "ci_low", "ci_high", "n")}})
    out = pd.DataFrame(rows)
    ours = out[out["protocol"] == "ours"].set_index(["dataset", "claim"])["verdict"]
    def changed(d, c, v):
        o = ours.get((d, c))
        return v != o and not (v.startswith("not testable") and str(o).startswith("not testable"))
    out["changed"] = [changed(d, c, v) for d, c, v in zip(out["dataset"], out["claim"], out["verdict"])]
    return out


def protocol_effects(runs, alpha: float = 0.05, collapse: float = COLLAPSE):
    """The two protocol differences measured directly, per data set, with 95% t intervals over seeds.

    * ``extra training``: the continued-base control minus the base, per seed (points): what a
      child's extra epochs alone are worth, which the paper's comparison with the base credits
      to compression;
    * ``test selection``: per seed, the mean over its networks of the maximum test accuracy minus
      the test accuracy at the best validation epoch (points): how much the paper's measure,
      selected on the test set, flatters every network.

    Returns:
        DataFrame: dataset, effect, estimate, ci_low, ci_high, n (seeds).
    """
    import numpy as np
    import pandas as pd
    rows = []
    t = runs[runs["seed"].notna()]
    majority = t["majority_frac"] if "majority_frac" in t else pd.Series(0.0, index=t.index)
    t = t[~(majority >= collapse)]
    for dataset, part in t.groupby("dataset", sort=False):
        name = part["name"].astype(str) if "name" in part else pd.Series("", index=part.index)
        acc = part.assign(acc=100 * part["test_acc_at_best_val"]) if "test_acc_at_best_val" in part else None
        if acc is not None:
            base = acc[(acc["block"] == 0) & (name != "control")].groupby("seed")["acc"].mean()
            control = acc[name == "control"].groupby("seed")["acc"].mean()
            both = base.index.intersection(control.index)
            r = paired_contrast(control[both].to_numpy(), base[both].to_numpy(), "greater", 0.0, alpha)
            rows.append({"dataset": dataset, "effect": "extra training (control - base)", **_interval(r)})
        if {"max_test_acc", "test_acc_at_best_val"} <= set(part.columns):
            gap = (100 * (part["max_test_acc"] - part["test_acc_at_best_val"])).groupby(part["seed"]).mean().dropna()
            r = paired_contrast(gap.to_numpy(), np.zeros(len(gap)), "greater", 0.0, alpha)
            rows.append({"dataset": dataset, "effect": "test selection (max test - test at best val)",
                         **_interval(r)})
    return pd.DataFrame(rows, columns=["dataset", "effect", "estimate", "ci_low", "ci_high", "n"])


def base_fit(runs, metrics, alpha: float = 0.05):
    """How far each data set's bases fit their training set: train and test accuracy at the base's
    best epoch and their gap (points), mean over seeds with a 95% t interval of the gap.

    The paper explains children beating their base by the base overfitting; a base that does not
    fit its training images (a gap near zero at low accuracy) leaves that mechanism no room. The
    train accuracy is the one logged while training (flip augmentation on, BN in training mode),
    a slight underestimate of the fit.

    Args:
        runs: the runs table (needs name, key, best_epoch).
        metrics: the per-epoch table (``Results.metrics``: key, epoch, train_acc, test_acc).

    Returns:
        DataFrame: dataset, train_acc, test_acc, gap, ci_low, ci_high, n (seeds).
    """
    import numpy as np
    import pandas as pd
    cols = ["dataset", "train_acc", "test_acc", "gap", "ci_low", "ci_high", "n"]
    need = {"name", "key", "best_epoch"}
    if not need <= set(runs.columns) or metrics is None or not len(metrics):
        return pd.DataFrame(columns=cols)
    bases = runs[(runs["block"] == 0) & (runs["name"] == "base")][["dataset", "seed", "key", "best_epoch"]]
    at = metrics.merge(bases, on=["dataset", "seed", "key"])
    at = at[at["epoch"] == at["best_epoch"]]
    rows = []
    for dataset, g in at.groupby("dataset", sort=False):
        tr, te = 100 * g["train_acc"].to_numpy(float), 100 * g["test_acc"].to_numpy(float)
        r = paired_contrast(tr, te, "greater", 0.0, alpha)
        rows.append({"dataset": dataset, "train_acc": float(np.mean(tr)), "test_acc": float(np.mean(te)),
                     "gap": r["estimate"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": r["n"]})
    return pd.DataFrame(rows, columns=cols)


def child_lr_pairs(table, block: int | None = None, regime: str = "frozen"):
    """Children of one config and seed trained at both starting lrs (``child_lr`` "initial", the
    campaign's, and "continue", the base's final lr), on the same device, side by side.

    Args:
        table: every exported run of a profile, the grid's and the others
            (:func:`triage.grid.results_table` with ``exported=True``).
        block: which compressed block (None: every block with a pair); regime: which regime
            (default FM, whose unstable cells these pairs test).

    Returns:
        DataFrame: dataset, block, seed, init, device, acc_initial, acc_continue (points),
        dead_initial, dead_continue (dead channels of the compressed block, ``dead_compressed``,
        or for block 1 ``dead_block1``; NaN where not recorded), channels, one row per pair.
    """
    import pandas as pd
    cols = ["dataset", "block", "seed", "init", "device", "acc_initial", "acc_continue", "dead_initial",
            "dead_continue", "channels"]
    if table is None or not len(table) or "child_lr" not in table or "test_acc_at_best_val" not in table:
        return pd.DataFrame(columns=cols)
    t = table[(table["block"] > 0) & (table["regime"] == regime)].copy()
    if block is not None:
        t = t[t["block"] == block]
    t["device"] = t["device"].fillna("cpu") if "device" in t else "cpu"
    t["dead"], t["channels"] = compressed_dead(t)
    rows = []
    for (dataset, b, seed, init, device), g in t.groupby(["dataset", "block", "seed", "init", "device"], sort=True):
        a, c = g[g["child_lr"] == "initial"], g[g["child_lr"] == "continue"]
        if len(a) and len(c):
            rows.append({"dataset": dataset, "block": int(b), "seed": int(seed), "init": init, "device": device,
                         "acc_initial": 100 * float(a["test_acc_at_best_val"].iloc[0]),
                         "acc_continue": 100 * float(c["test_acc_at_best_val"].iloc[0]),
                         "dead_initial": float(a["dead"].iloc[0]), "dead_continue": float(c["dead"].iloc[0]),
                         "channels": float(pd.concat([a["channels"], c["channels"]]).max())})
    return pd.DataFrame(rows, columns=cols)


def child_lr_text(pairs, alpha: float = 0.05) -> str:
    """:func:`child_lr_pairs` in words, per data set and block: accuracies and dead channels at each
    lr, and the per-seed mean difference (continue - initial) with its t interval."""
    if pairs is None or pairs.empty:
        return "No child was trained at both starting lrs."
    parts = []
    for (dataset, block), g in pairs.groupby(["dataset", "block"], sort=True):
        per_seed = g.groupby("seed")[["acc_continue", "acc_initial"]].mean()
        r = paired_contrast(per_seed["acc_continue"].to_numpy(), per_seed["acc_initial"].to_numpy(), "greater",
                            0.0, alpha)
        ci = (f", 95% CI [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]" if r["ci_low"] == r["ci_low"] else
              " (one seed: no interval)")
        of = f" of {int(g['channels'].max())}" if g["channels"].notna().any() else ""

        def dead(col):
            d = g[col].dropna()
            if not len(d):
                return "dead channels not recorded"
            return (f"{int(d.min())}{of} dead" if d.min() == d.max() else f"{int(d.min())}-{int(d.max())}{of} dead")

        def span(col):
            return f"{g[col].min():.1f}%" if g[col].min() == g[col].max() else f"{g[col].min():.1f}-{g[col].max():.1f}%"
        parts.append(
            f"{dataset} block {block}, {len(g)} network(s) of seed(s) "
            f"{', '.join(str(s) for s in sorted(g['seed'].unique()))}: {span('acc_initial')} ({dead('dead_initial')}) "
            f"from lr0, {span('acc_continue')} ({dead('dead_continue')}) from the base's final lr; continue - initial "
            f"{r['estimate']:+.1f} points per seed{ci}")
    return "; ".join(parts) + "."


def _interval(r: dict) -> dict:
    return {k: r[k] for k in ("estimate", "ci_low", "ci_high", "n")}
