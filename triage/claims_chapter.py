"""The claims chapter's prose and figures: verdict bullets, what would change a verdict, forest plots.

Reason to change: how the verdicts of :func:`triage.claims.check_claims` are told in the book
(book/claims.ipynb); the tests themselves are :mod:`triage.claims`.

Example:
    >>> from triage import claims, claims_chapter, report
    >>> rep = claims.check_claims(report.load("cpu").runs)                   # doctest: +SKIP
    >>> print(claims_chapter.summary_markdown(rep, "C1"))                      # doctest: +SKIP
    >>> claims_chapter.plot_claim(rep, "C4b")                                  # doctest: +SKIP
"""
from __future__ import annotations

from .claims import _RULES, CLAIMS, EPOCH_CLAIMS, MARGIN, MUCH, ClaimsReport, check_claims

__all__ = ["explain", "summary_markdown", "noise_glue", "c4a_sensitivity_text", "claims_by_model", "model_verdict_text", "not_run_text",
           "protocol_text", "setting_text", "plot_claim", "plot_c2_by_block", "plot_cka"]


def explain(rep: ClaimsReport, claim: str, dataset: str) -> str:
    """What would change a data set's verdict: the margin at which it flips, or the seeds it needs."""
    v = rep.verdicts
    r = v[(v["claim"] == claim) & (v["dataset"] == dataset) & (v["level"] == "data set")].iloc[0]
    unit = "epochs" if claim in EPOCH_CLAIMS else "points"
    if r["verdict"] == "not testable: no control":
        if str(r.get("note", "")).startswith("no networks"):
            return "Its grid has not been trained yet: neither the children nor the control are stored."
        return ("A continued-base control (the base trained again from its weights with the children's "
                "schedule, results format 2) would make it testable.")
    if r["verdict"] == "not testable at this n":
        if not r["n"] >= 2:
            return ("At least 2 seeds that trained every network of the contrast are needed for a confidence "
                    "interval (a seed whose grid is still partial waits until it is complete)." if r["n"] == r["n"]
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
    epochs = claim in EPOCH_CLAIMS                # their threshold is -epoch_margin
    value = -bound if epochs else bound
    above = (not above) if epochs else above
    name = {"C2": "'much'", "C3": "the margin", "C4a": "'faster'", "C4b": "the margin", "C5": "'faster'"}[claim]
    if value <= 0:
        return (f"No positive {name} would change it: the 95% CI of {r['contrast']} lies entirely "
                f"{'below' if hi <= 0 else 'above'} zero.")
    return (f"It would change if {name} were {'above' if above else 'below'} {value:.2f} {unit} "
            f"(the 95% CI bound of {r['contrast']}"
            + ("; about, as the family is Holm-corrected)." if r["contrasts"] > 1 else ")."))


def summary_markdown(rep: ClaimsReport, claim: str) -> str:
    """A claim's verdict per data set as Markdown bullets: verdict, deciding contrast with estimate,
    95% CI, p, n, the note, and what would change it (:func:`explain`)."""
    v = rep.verdicts
    unit = "epochs" if claim in EPOCH_CLAIMS else "points"
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


def noise_glue(sd) -> dict:
    """The noise the margin is set against, in words: ``tm_sd_text`` (the range of a TM network's
    seed-to-seed SD, or why it cannot be measured yet), ``se_lo`` and ``se_hi`` (the range of the
    binomial SE of one base accuracy), all in points.

    Args:
        sd: :func:`triage.claims_tables.seed_sd` output.
    """
    tm_sd, se = sd[sd["regime"] == "TM"]["sd"], sd[sd["regime"] == "base"]["test_se"]
    return {"tm_sd_text": (f"{tm_sd.min():.2f}-{tm_sd.max():.2f} points" if tm_sd.notna().any() else
                           "not measurable yet (TM networks of one seed only)"),
            "se_lo": float(se.min()), "se_hi": float(se.max())}


def c4a_sensitivity_text(runs, rep: ClaimsReport) -> str:
    """C4a under the two readings the default settles: with the networks stopped by their epoch
    cap counted, and without STN's hint epochs. One sentence per reading and data set, saying
    whether the verdict moves."""
    p = {k: v for k, v in rep.params.items() if k not in ("keep_capped", "count_hint")}
    readings = [("with STN's hint epochs not counted", check_claims(runs, **p, count_hint=False), None)]
    if "stop_reason" in runs.columns:
        capped = runs[(runs["block"] > 0) & (runs["stop_reason"] == "cap")].groupby("dataset").size()
        if len(capped):
            readings.insert(0, ("with its capped children counted", check_claims(runs, **p, keep_capped=True),
                                capped))
    parts = []
    for label, alt, counts in readings:
        v = alt.verdicts[(alt.verdicts["claim"] == "C4a") & (alt.verdicts["level"] == "data set")]
        for _, a in v.iterrows():
            if a["estimate"] != a["estimate"]:
                continue
            ci = (f"95% CI [{a['ci_low']:+.2f}, {a['ci_high']:+.2f}]" if a["ci_low"] == a["ci_low"] else "no CI")
            what = label if counts is None else label.replace("its", f"its {int(counts.get(a['dataset'], 0))}")
            was = rep.verdict("C4a", a["dataset"])
            parts.append(f"{a['dataset']} {what}: *{a['verdict']}* ({a['estimate']:+.2f} epochs, {ci})"
                         + ("" if a["verdict"] == was else f", against *{was}* by default"))
    return ("; ".join(parts) + ".") if parts else "No data set has a convergence time to compare."


def claims_by_model(runs_by_model: dict, margin: float = MARGIN):
    """The claims tested on each architecture's grid, side by side (the Beyond chapter).

    Args:
        runs_by_model: model label -> its runs table (an empty one is left out).
        margin: the claims' margin (points).

    Returns:
        ``(table, reports)``: :meth:`ClaimsReport.table` of every model (without its notes) with a
        ``model`` column; and model label -> :class:`ClaimsReport`.
    """
    import pandas as pd
    reports = {name: check_claims(runs, margin=margin) for name, runs in runs_by_model.items() if len(runs)}
    table = pd.concat([rep.table().drop(columns="note", errors="ignore").assign(model=name)
                       for name, rep in reports.items()], ignore_index=True)
    return table, reports


def model_verdict_text(rep: ClaimsReport, runs, model: str, dataset: str) -> str:
    """One line on a model's grid: its networks and seeds, then each claim's verdict on ``dataset``."""
    v = rep.verdicts[rep.verdicts["level"] == "data set"]
    return (f"On {dataset}, {len(runs)} {model} networks over {runs['seed'].nunique()} seed(s): "
            + "; ".join(f"{r.claim} {r.verdict}" for r in v.itertuples()) + ".")


def not_run_text(model: str, profile: str, dataset: str, width: float) -> str:
    """Markdown for a model grid not stored yet: what is missing and the command that trains it."""
    return (f"**Not run yet**: no {model} runs are stored for the {profile} profile and {dataset}. Run "
            f"`python -m triage grid --profile {profile} --dataset {dataset} --seeds 0 1 2 --set model={model} "
            f"width={width} --regimes thawed --no-notebooks` (after the campaign), then rebuild the book.")


def protocol_text(sensitivity, effects) -> str:
    """What the paper's protocol would do to our verdicts, in words, from
    :func:`triage.claims_tables.protocol_sensitivity` and :func:`~triage.claims_tables.protocol_effects`."""
    def ci(r, unit="pt"):
        if r["estimate"] != r["estimate"]:
            return "no estimate"
        if r["ci_low"] != r["ci_low"]:
            return f"{r['estimate']:+.2f} {unit} (n = {int(r['n'])}: no interval)"
        return f"{r['estimate']:+.2f} {unit} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] (n = {int(r['n'])} seeds)"
    parts = []
    e = effects[effects["n"] >= 1] if len(effects) else effects
    extra = e[e["effect"].str.startswith("extra")]
    sel = e[e["effect"].str.startswith("test selection")]
    if len(extra):
        parts.append("**Extra training.** The continued-base control minus the base: "
                     + "; ".join(f"{r['dataset']} {ci(r)}" for _, r in extra.iterrows())
                     + ". This is what a child's extra epochs are worth without any compression; the paper's "
                     "comparison with the base credits it to the compressed network (C3, C4b).")
    if len(sel):
        parts.append("**Test selection.** The paper's measure (the best test accuracy over epochs) minus ours "
                     "(the test accuracy at the best validation epoch), mean over a seed's networks: "
                     + "; ".join(f"{r['dataset']} {ci(r)}" for _, r in sel.iterrows())
                     + ". What it does to the claims is the *paper's measure* column of the table below.")
    if len(sensitivity):
        ours = sensitivity[sensitivity["protocol"] == "ours"].set_index(["dataset", "claim"])
        moved = []
        for _, r in sensitivity[sensitivity["protocol"] != "ours"].iterrows():
            o = ours.loc[(r["dataset"], r["claim"])]
            if r["changed"]:
                how = {"paper's measure": "the paper's measure", "against the base": "the base as the reference",
                       "paper's protocol": "both (the paper's protocol)"}.get(r["protocol"], r["protocol"])
                moved.append(f"{r['claim']} on {r['dataset']} becomes *{r['verdict']}* with {how} "
                             f"(ours: *{o['verdict']}*; {ci(r)} against {ci(o)})")
        big = sensitivity[(sensitivity["protocol"] == "paper's protocol") & sensitivity["estimate"].notna()]
        shifts = []
        for _, r in big.iterrows():
            o = ours.loc[(r["dataset"], r["claim"])]
            if o["estimate"] == o["estimate"] and abs(r["estimate"] - o["estimate"]) >= 0.5 and r["claim"] not in EPOCH_CLAIMS:
                shifts.append(f"{r['claim']} on {r['dataset']}: {o['estimate']:+.2f} with ours, "
                              f"{r['estimate']:+.2f} with the paper's protocol")
        if moved:
            parts.append("**Verdicts that change.** " + "; ".join(moved) + ".")
        else:
            parts.append("**No verdict changes** with the paper's measure, its reference or both on these runs.")
        if shifts:
            parts.append("Deciding estimates that move by half a point or more: " + "; ".join(shifts) + ".")
    return "\n\n".join(parts) if parts else "Nothing to compare: no format-2 results are stored."


def setting_text(runs, fit) -> str:
    """Markdown bullets on the setting differences that need training again to undo (width,
    resolution, seeds, Stanford Dogs' crops, the schedule) and which way each pushes the verdicts.

    Args:
        runs: the runs table (width, resolution, dataset, seed).
        fit: :func:`triage.claims_tables.base_fit`'s table (the bases' train-test gap).
    """
    def one(col, default):
        v = runs[col].dropna() if col in runs else []
        return v.mode().iloc[0] if len(v) else default
    lines = []
    widths = runs.groupby("dataset")["width"].first().dropna() if "width" in runs else None
    if widths is not None and len(widths):
        w = ", ".join(f"{d} {x:g}" for d, x in widths.items())
        gaps = "; ".join(f"{r.dataset} {r.gap:+.1f} [{r.ci_low:+.1f}, {r.ci_high:+.1f}] (train {r.train_acc:.1f}%)"
                         if r.ci_low == r.ci_low else f"{r.dataset} {r.gap:+.1f} (train {r.train_acc:.1f}%)"
                         for r in fit.itertuples()) if len(fit) else "not measured"
        lines.append(
            f"- **Width** (channel multiplier: {w}; the paper 1). A narrow network has little capacity to "
            "spare, so losing all but one of a block's convs costs it more than it would cost the full network: "
            "this pushes toward blocks that matter (against C1) and toward children below their base "
            "(against C3). The paper explains C3 by its bases overfitting. Our bases' train minus test "
            f"accuracy at their best epoch (points, 95% CI over seeds): {gaps}. Where the gap is near zero "
            "the base does not overfit, and C3's mechanism has no room.")
    pxs = sorted({int(x) for x in runs["resolution"].dropna()}) if "resolution" in runs else [32]

    def maps(px, div):
        return f"{max(px // div, 1)}x{max(px // div, 1)}"
    lines.append(
        f"- **Resolution** ({' and '.join(f'{p} px' for p in pxs)}; the paper 224 px). After four poolings "
        "block 5 works on " + " and ".join(f"{maps(p, 16)} maps at {p} px" for p in pxs)
        + f" (the paper's {maps(224, 16)}), block 4 on " + " and ".join(maps(p, 8) for p in pxs)
        + f" ({maps(224, 8)}): our last blocks see little spatial context, so C1's pairs with blocks 4-5 "
        "compare other layers than the paper's.")
    lines.append(
        "- **Seeds** (ours: every network on several seeds, the verdicts' unit of replication; the paper: "
        "one network per cell). The unstable cells above show one recipe landing on very different "
        "networks: one network per cell, as in the paper's Fig. 2, cannot tell a scheme's effect from a "
        "seed's.")
    dogs = fit[fit["dataset"] == "stanford_dogs"] if len(fit) else fit
    if len(dogs):
        d = dogs.iloc[0]
        lines.append(
            "- **Stanford Dogs** (64x64 crops of the dog boxes; the paper's full photographs at 224 px). "
            f"Our bases reach {d.test_acc:.1f}% on the test set and {d.train_acc:.1f}% on their own "
            "training images: they barely learn the task, so a Dogs verdict is about networks at the "
            "edge of learning anything. The paper, too, finds that there \"no model is able to do well\".")
    lr = one("lr", float("nan"))
    text = (f"- **Schedule** (SGD from lr {lr:g} with a plateau schedule and early stopping; the paper's "
            "Table 1 rates). C4a counts epochs of our schedule: its sign (is STN faster?) carries over, its "
            "size in epochs does not.")
    if one("child_lr", None) == "initial" and lr == lr:
        from .config import TABLE1
        ratios = ", ".join(f"{lr / TABLE1[d].lr:g}x Table 1's {d} rate" for d in sorted(set(runs["dataset"]))
                           if d in TABLE1)
        text += (f" Every child starts afresh at lr {lr:g} ({ratios}): under FM a large first step kills "
                 "channels of the compressed conv for good (the dead-channel table above), so FM looks worse "
                 "than it need be and C2 is favoured.")
    lines.append(text)
    return "\n".join(lines)


_COLOURS = {"holds": "tab:green", "does not hold": "tab:red", "not testable at this n": "tab:gray",
            "not testable: no control": "lightgray"}


def plot_claim(rep: ClaimsReport, claim: str, detail: bool = False, ax=None, title: str = ""):
    """Forest plot of one claim: estimate and 95% CI per data set (and regime), against its margin.

    Args:
        rep: :func:`triage.claims.check_claims`'s report.
        claim: C1 | C2 | C3 | C4a | C4b | C5.
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
    epochs = claim in EPOCH_CLAIMS
    thr = params["epoch_margin"] if epochs else params["much" if claim == "C2" else "margin"]
    if claim == "C1":
        ax.axvspan(-thr, thr, color="tab:green", alpha=0.12, label=f"margin +-{thr:g}")
    else:
        ax.axvline(-thr if epochs else thr, ls="--", c="k", lw=1, label=f"threshold {-thr if epochs else thr:+g}")
    ax.axvline(0, c="gray", lw=0.6)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(-0.7, len(d) - 0.3)
    ax.set_xlabel(({"C4a": "STN - RW/MW, epochs to 99%", "C5": "MW - RW, epochs to 99%"}.get(claim)
                   or "difference, accuracy points")
                  + " (95% CI)", fontsize=8)
    ax.legend(fontsize=7, loc="best")


def plot_c2_by_block(table, much: float = MUCH, title: str = ""):
    """Forest plot of :func:`triage.claims_tables.c2_by_block`: TM - FM per block, one panel per
    data set, the 95% CI (thick) inside the simultaneous interval the reading uses (thin).

    Returns:
        the array of Axes.
    """
    import matplotlib.pyplot as plt
    import numpy as np
    t = table[table["n"] >= 2] if table is not None and len(table) else table
    title = title or "TM - FM by block"
    if t is None or t.empty:
        _, ax = plt.subplots(figsize=(7, 0.8))
        ax.set_axis_off()
        ax.set_title(title + ": no data set has two complete seeds", fontsize=10)
        return np.array([ax])
    groups = list(t.groupby("dataset", sort=False))
    fig, axes = plt.subplots(1, len(groups), squeeze=False, constrained_layout=True,
                             figsize=(4.2 * len(groups), 0.9 + 0.35 * t.groupby("dataset").size().max()))
    colours = {"much worse": "tab:red", "not much worse": "tab:blue", "undecided at this n": "tab:gray"}
    for ax, (dataset, g) in zip(axes.flat, groups):
        y = -g["block"].to_numpy()
        ax.hlines(y, g["sim_low"], g["sim_high"], colors=[colours[r] for r in g["reading"]], lw=1)
        ax.hlines(y, g["ci_low"], g["ci_high"], colors=[colours[r] for r in g["reading"]], lw=3)
        ax.scatter(g["estimate"], y, c=[colours[r] for r in g["reading"]], zorder=3, s=20)
        ax.axvline(much, ls="--", c="k", lw=1, label=f"much = {much:g}")
        ax.axvline(0, c="gray", lw=0.6)
        ax.set_yticks(y, [f"block {b}: {r}" for b, r in zip(g["block"], g["reading"])], fontsize=8)
        ax.set_xlabel("TM - FM, accuracy points", fontsize=8)
        ax.set_title(f"{dataset} (n = {int(g['n'].min())})", fontsize=9)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    return axes


def plot_cka(table, ax=None, title: str = ""):
    """Fig. 3 in numbers: mean block-1 CKA with the base per scheme (95% CI), and the CKA of two
    bases of different seeds as a tick (:func:`triage.claims_tables.fig3_cka`'s table)."""
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
