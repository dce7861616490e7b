"""Did the networks finish learning? Audits of the stored runs' stopping.

One reason to change: what counts as "converged" for a stored run (issue 12's criteria).
A base must stop on a validation plateau at the lr floor, and gain little when trained
twice as long (:func:`convergence_audit`); a network that stopped at its epoch
cap must not have been still learning when it stopped (:func:`cap_audit`, here). Pure
functions of the tables :func:`triage.report.load` returns (``runs`` and per-epoch
``metrics``).

Example:
    >>> from triage import convergence, report
    >>> res = report.load("campaign")                                   # doctest: +SKIP
    >>> convergence.cap_audit(res.runs, res.metrics)                     # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["CAP_GAIN", "CAP_EPOCHS", "cap_audit", "cap_audit_text", "convergence_audit", "convergence_audit_text",
           "width_pilot", "ACCURACY_FLOORS", "base_floors"]

CAP_GAIN = 0.003    # issue 12: no child stops at its cap "while still gaining > 0.3 pt per epoch"
CAP_EPOCHS = 8      # the trend is fitted over the last 8 epochs: 5 give a CI of about +-0.6 pt/epoch
                    # on CIFAR-10's 5,000 validation images, 8 about +-0.25


def _slope(epochs, acc, level: float = 0.95) -> tuple[float, float, float]:
    """Least-squares slope of ``acc`` per epoch with its two-sided ``level`` t interval."""
    from scipy import stats
    fit = stats.linregress(np.asarray(epochs, float), np.asarray(acc, float))
    half = stats.t.ppf(0.5 + level / 2, len(epochs) - 2) * fit.stderr
    return float(fit.slope), float(fit.slope - half), float(fit.slope + half)


def cap_audit(runs, metrics, last: int = CAP_EPOCHS, threshold: float = CAP_GAIN, level: float = 0.95):
    """The networks stopped by their epoch cap, and their trend when they stopped.

    For every run whose ``stop_reason`` is ``cap``, the least-squares slope of its
    validation accuracy (what the stopping rule reads) over its last ``last`` epochs, with
    a ``level`` t interval; the test accuracy's slope beside it. The issue's criterion reads
    the point estimate: ``still_gaining`` when the validation slope exceeds ``threshold``
    (0.3 pt per epoch). ``ci_excludes_gain`` says whether the interval's upper end is below it
    too, i.e. whether the data rule the gain out rather than merely not showing it.

    Args:
        runs: one row per network with ``key``, ``dataset``, ``seed``, ``name``, ``scheme``,
            ``stop_reason`` (``Results.runs``).
        metrics: one row per network and epoch with ``key``, ``epoch``, ``val_acc``,
            ``test_acc`` (``Results.metrics``).
        last: how many final epochs the trend is fitted on (at least 3).
        threshold: the gain per epoch (fraction, 0.003 = 0.3 pt) that still counts as learning.
        level: the interval's confidence level.

    Returns:
        DataFrame, one row per cap-stopped network: dataset, seed, name, scheme, epochs,
        val_slope, val_lo, val_hi, test_slope (all per epoch, fractions), still_gaining,
        ci_excludes_gain. Empty when no run stopped at its cap.
    """
    import pandas as pd
    cols = ["dataset", "seed", "name", "scheme", "epochs", "val_slope", "val_lo", "val_hi", "test_slope",
            "still_gaining", "ci_excludes_gain"]
    if last < 3:
        raise ValueError(f"a trend with a confidence interval needs at least 3 epochs, got last={last}")
    if runs.empty or "stop_reason" not in runs.columns:
        return pd.DataFrame(columns=cols)
    rows = []
    for r in runs[runs["stop_reason"] == "cap"].itertuples():
        m = metrics[metrics["key"] == r.key].sort_values("epoch").tail(last)
        if len(m) < 3 or m["val_acc"].isna().any():
            continue
        slope, lo, hi = _slope(m["epoch"], m["val_acc"], level)
        test_slope = _slope(m["epoch"], m["test_acc"], level)[0]
        rows.append({"dataset": r.dataset, "seed": int(r.seed), "name": r.name, "scheme": r.scheme,
                     "epochs": int(m["epoch"].max()), "val_slope": slope, "val_lo": lo, "val_hi": hi,
                     "test_slope": test_slope, "still_gaining": slope > threshold,
                     "ci_excludes_gain": hi < threshold})
    return pd.DataFrame(rows, columns=cols)


def cap_audit_text(audit, n_runs: int, threshold: float = CAP_GAIN, last: int = CAP_EPOCHS) -> str:
    """One paragraph on :func:`cap_audit`'s table for the results chapter."""
    if audit is None or audit.empty:
        return f"None of the {n_runs} networks stopped at its epoch cap."
    gaining = audit[audit["still_gaining"]]
    worst = audit.loc[audit["val_slope"].idxmax()]
    text = (f"{len(audit)} of {n_runs} networks stopped at their epoch cap. Over their last {last} epochs "
            f"their validation accuracy changed by {100 * audit['val_slope'].min():+.2f} to "
            f"{100 * audit['val_slope'].max():+.2f} pt per epoch (the steepest: {worst['dataset']} seed "
            f"{worst['seed']} {worst['name']}, 95% CI {100 * worst['val_lo']:+.2f} to {100 * worst['val_hi']:+.2f}). ")
    if gaining.empty:
        undecided = int((~audit["ci_excludes_gain"]).sum())
        text += (f"None was still gaining more than {100 * threshold:.1f} pt per epoch by the point estimate"
                 + (f"; for {undecided} of them the interval cannot rule such a gain out at this noise."
                    if undecided else ", and every interval rules such a gain out."))
    else:
        text += (f"**{len(gaining)} still gained more than {100 * threshold:.1f} pt per epoch** ("
                 + ", ".join(f"{g.dataset} seed {g.seed} {g.name}" for g in gaining.itertuples())
                 + "): their accuracy is a lower bound, and the cap should rise for them.")
    return text


def convergence_audit(table, margin: float = 0.005):
    """Did the bases converge? Each base against the same base trained twice as long.

    An audit run is a base config of the same data set, profile and seed with
    ``stopping="fixed"`` (it trains its whole ``epochs``, about twice what the base
    trained); issue 12 asks that it gain less than ``margin`` (0.5 points) of test accuracy
    at the best validation epoch.

    Two gains are reported. ``gain``: the audit run's accuracy minus the base's. When the
    two ran on different devices (a GPU base, a CPU audit) their trajectories differ from
    the first step, so this gain mixes training length with device noise. ``gain_within``
    compares like with like: inside the audit run, the test accuracy at the best validation
    epoch of all its epochs minus that of its first ``base_epochs`` epochs (where the base
    stopped; the lr schedule is the same up to there). The verdict uses ``gain_within`` when
    the audit's per-epoch metrics are at hand (``run_dir``), else ``gain``.

    Args:
        table: runs of a profile with format-2 columns, audit runs included (e.g.
            ``triage.grid.results_table(results_root, profile, exported=True)``; ``runs.csv``
            leaves audit runs out as they are not grid networks).
        margin: the largest gain that still counts as converged.

    Returns:
        DataFrame: dataset, seed, width, base and audit epochs and accuracies, gain,
        gain_within, converged, devices (base / audit).
    """
    import pandas as pd
    cols = ["dataset", "seed", "width", "base_epochs", "base_acc", "audit_epochs", "audit_acc", "gain", "gain_within",
            "converged", "devices"]
    if table.empty or "stopping" not in table.columns:
        return pd.DataFrame(columns=cols)
    b0 = table[(table["block"] == 0) & (table["name"] == "base")]
    # a base is audited only by a run of its own width (a wider pilot of the same data set and
    # seed is another network, not a longer training of this one)
    by = ["dataset", "seed"] + (["width"] if "width" in b0.columns else [])
    rows = []
    for key, part in b0.groupby(by):
        ds, seed = key[0], key[1]
        base = part[part["stopping"] == "plateau"]
        audit = part[part["stopping"] == "fixed"]
        if base.empty or audit.empty:
            continue
        b, a = base.iloc[0], audit.sort_values("epochs").iloc[-1]
        gain = float(a["test_acc_at_best_val"] - b["test_acc_at_best_val"])
        within = _gain_within(a.get("run_dir"), int(b["epochs_trained"]))
        rows.append({"dataset": ds, "seed": int(seed), "width": float(key[2]) if len(key) > 2 else float("nan"),
                     "base_epochs": int(b["epochs_trained"]),
                     "base_acc": float(b["test_acc_at_best_val"]), "audit_epochs": int(a["epochs_trained"]),
                     "audit_acc": float(a["test_acc_at_best_val"]), "gain": gain, "gain_within": within,
                     "converged": (gain if within != within else within) < margin,
                     "devices": f"{b.get('device') or '?'} / {a.get('device') or '?'}"})
    return pd.DataFrame(rows, columns=cols)


def convergence_audit_text(audit, margin: float = 0.005, bases=None) -> str:
    """One paragraph on :func:`convergence_audit`'s table, for the results chapter.

    ``bases``, the grid's runs (``Results.runs``), adds which data sets' grid bases (at their
    grid width) no audit run covers yet, so a reader does not take a narrower network's audit
    for theirs.
    """
    missing = ""
    if bases is not None and not bases.empty and "width" in bases.columns:
        grid = bases[(bases["block"] == 0) & (bases["name"] == "base")][["dataset", "width"]].drop_duplicates()
        have = set() if audit is None or audit.empty else set(zip(audit["dataset"], audit["width"]))
        gaps = [f"{r.dataset} (width {r.width:g})" for r in grid.itertuples() if (r.dataset, r.width) not in have]
        if gaps:
            missing = " No audit run covers the grid bases of " + ", ".join(gaps) + " yet."
    if audit is None or audit.empty:
        return "No audit run is stored for this profile yet." + missing
    parts = []
    for r in audit.itertuples():
        within = ("n/a" if r.gain_within != r.gain_within else f"{100 * r.gain_within:+.2f}")
        width = "" if r.width != r.width else f" (width {r.width:g})"
        parts.append(f"{r.dataset}{width} seed {r.seed}: {r.audit_epochs} epochs against {r.base_epochs}, "
                     f"{100 * r.gain:+.2f} pt against the base ({r.devices}), {within} pt within the audit run")
    ok = audit["converged"].all()
    verdict = (f"every audited base is converged by the issue's criterion (a gain below {100 * margin:.1f} pt)"
               if ok else "at least one audited base is **not** converged: " +
               ", ".join(audit.loc[~audit["converged"], "dataset"]))
    return (f"Audited: {'; '.join(parts)}. So {verdict}. The *within* figure is the one the verdict reads: "
            "it compares the long run with its own first epochs, on one device." + missing)


def _gain_within(run_dir, first: int) -> float:
    """Test accuracy at the best validation epoch of all epochs minus of the first ``first`` epochs."""
    import pandas as pd
    path = Path(run_dir) / "metrics.csv" if isinstance(run_dir, str) and run_dir else None
    if path is None or not path.is_file():
        return float("nan")
    m = pd.read_csv(path)
    if m["val_acc"].isna().all() or len(m) <= first:
        return float("nan")
    at_best = lambda part: float(part.loc[part["val_acc"].idxmax(), "test_acc"])   # noqa: E731
    return at_best(m) - at_best(m.iloc[:first])


def width_pilot(table, dataset: str):
    """The bases of one data set by width: what decides a per-data-set width (issue 12 lets
    CIFAR-100 train at 1/4 when 1/8 cannot reach 40%).

    Args:
        table: stored runs with format-2 columns, pilots and audits included
            (``triage.grid.results_table(..., exported=True)``).
        dataset: the data set.

    Returns:
        DataFrame indexed by width: bases (how many seeds), acc_mean, acc_min, acc_max (test
        accuracy at the best validation epoch of the bases that stopped on a plateau),
        audit_acc and audit_gain_within (the longest fixed-length run of that width, when one
        is stored; see :func:`convergence_audit`).
    """
    import pandas as pd
    cols = ["bases", "acc_mean", "acc_min", "acc_max", "audit_acc", "audit_gain_within"]
    if table.empty or "stopping" not in table.columns:
        return pd.DataFrame(columns=cols).rename_axis("width")
    b0 = table[(table["block"] == 0) & (table["name"] == "base") & (table["dataset"] == dataset)]
    audit = convergence_audit(b0)
    rows = {}
    for width, part in b0[b0["stopping"] == "plateau"].groupby("width"):
        acc = part["test_acc_at_best_val"]
        a = audit[audit["width"] == width]
        rows[float(width)] = {"bases": len(part), "acc_mean": float(acc.mean()), "acc_min": float(acc.min()),
                              "acc_max": float(acc.max()),
                              "audit_acc": float(a["audit_acc"].iloc[0]) if len(a) else float("nan"),
                              "audit_gain_within": float(a["gain_within"].iloc[0]) if len(a) else float("nan")}
    return pd.DataFrame.from_dict(rows, orient="index", columns=cols).rename_axis("width")


# issue 12's floors for the bases' mean test accuracy (full test set, at the best validation epoch)
ACCURACY_FLOORS = {"mnist": 0.993, "cifar10": 0.80, "cifar100": 0.40}


def base_floors(runs, audit=None):
    """The grid bases' mean test accuracy against issue 12's floors, with what the audit says.

    Args:
        runs: the grid's runs (``Results.runs``).
        audit: :func:`convergence_audit`'s table, or None.

    Returns:
        DataFrame, one row per data set with a floor: width, bases, acc_mean, floor, met, and
        at_ceiling (an audit of that width found no better validation epoch in twice the
        training, i.e. the shortfall is the network's, not the schedule's; NaN without an audit).
    """
    import pandas as pd
    cols = ["dataset", "width", "bases", "acc_mean", "floor", "met", "at_ceiling"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    b = runs[(runs["block"] == 0) & (runs["name"] == "base") & runs["dataset"].isin(list(ACCURACY_FLOORS))]
    rows = []
    for (ds, width), part in b.groupby(["dataset", "width"]):
        a = None if audit is None or audit.empty else audit[(audit["dataset"] == ds) & (audit["width"] == width)]
        acc = float(part["test_acc_at_best_val"].mean())
        rows.append({"dataset": ds, "width": float(width), "bases": len(part), "acc_mean": acc,
                     "floor": ACCURACY_FLOORS[ds], "met": acc >= ACCURACY_FLOORS[ds],
                     "at_ceiling": (bool((a["gain_within"] <= 0).all()) if a is not None and len(a)
                                    and a["gain_within"].notna().all() else float("nan"))})
    return pd.DataFrame(rows, columns=cols)
