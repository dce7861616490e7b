"""The Results and Reproduce chapters' numbers and prose, read off the stored runs.

Reason to change: what book/results.ipynb or book/reproduce.ipynb says about the stored
results (the headline numbers of Fig. 2, Fig. 4 and Fig. 3, the measured run times), or how
it words them. Every function is a pure function of tables :func:`triage.report.load` already
read (``Results.runs``, ``.activations``, ``.provenance``) and returns the values the chapter
glues: ``(values, markdown)`` pairs of dicts, glued as they are and as ``Markdown`` (the
chapter cites the second kind with ``{glue:md}``). The tables themselves are
:mod:`triage.tables`; the claims are :mod:`triage.claims`.

Example:
    >>> from triage import report, results_chapter
    >>> res = report.load("campaign")                                               # doctest: +SKIP
    >>> values, md = results_chapter.headline_glue(res.runs, "cifar10", "test_acc_at_best_val")  # doctest: +SKIP
    >>> values["best_name"], md["control_note"]                                     # doctest: +SKIP
"""
from __future__ import annotations

import pandas as pd

from .tables import activation_similarity, timings
from .vocabulary import GRID_SIZE, SCHEMES

__all__ = ["COLLAPSE_FRAC", "grid_state_text", "like_with_like", "at_chance", "at_chance_text", "stop_reasons", "collapsed_text", "provenance_table", "headline_glue",
           "convergence_glue", "fig3_glue", "profile_timings", "timing_glue"]

COLLAPSE_FRAC = 0.9   # a network giving one class to >= 90% of the test images failed: it is no result


# ----------------------------------------------------------------------------- what is stored (results chapter)
def grid_state_text(complete: bool) -> str:
    """Whether every network of the grid is stored (markdown): the figures of a partial grid show what is there."""
    return ("Every network of the grid is present." if complete else
            "**The grid is partial**: the figures show the networks present; the missing ones are listed "
            "in the table below.")


def like_with_like(runs: pd.DataFrame, coverage: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The runs whose means over seeds the figures and tables of a data set may take, and what is
    left out, in markdown ("" when nothing is).

    A mean over seeds per cell compares cells only if every cell averages the same seeds: a base
    mean over three seeds beside children of one seed sets the children against other bases than
    their own (CIFAR-100 while its campaign runs: only seed 2 has children, and its base is not the
    three seeds' mean). So per data set: the seeds whose grid is complete;
    where none is, the seeds that have trained any child (their grid is partial, and the chapter
    says so). The seeds left out are named, with how far their grids are.

    Args:
        runs: ``Results.runs``.
        coverage: ``Results.coverage()`` (networks per data set and seed, of the grid's).
    """
    cov = coverage.assign(complete=coverage["networks"] >= coverage["of"])
    has_kids = runs[runs["block"] > 0].groupby("dataset")["seed"].unique().to_dict()
    keep, dropped = [], []
    for dataset, c in cov.groupby("dataset", sort=False):
        seeds = set(c.loc[c["complete"], "seed"]) or {int(s) for s in has_kids.get(dataset, [])}
        if not seeds:       # only bases: nothing to compare, nothing to leave out
            seeds = set(c["seed"])
        keep += [(dataset, int(s)) for s in seeds]
        dropped += [f"{dataset} seed {r.seed} ({r.networks} of {r.of})" for r in c.itertuples() if r.seed not in seeds]
    idx = pd.MultiIndex.from_frame(runs[["dataset", "seed"]].astype({"seed": int}))
    shown = runs[idx.isin(keep)]
    text = ("" if not dropped else
            "**Like with like:** the means over seeds below take, per data set, the seeds whose grid is complete "
            "(where none is, those that have trained any child), so every cell averages the same seeds. Left out "
            "here (their networks count in the tables above and in the claims once complete): "
            + ", ".join(dropped) + ".")
    return shown, text


def stop_reasons(runs: pd.DataFrame) -> pd.DataFrame | None:
    """Networks per (data set, scheme) and reason they stopped (converged / cap); None without ``stop_reason``."""
    if "stop_reason" not in runs.columns:
        return None
    return runs.pivot_table("key", ["dataset", "scheme"], "stop_reason", aggfunc="count", fill_value=0)


def collapsed_text(runs: pd.DataFrame) -> str | None:
    """The collapsed networks (``majority_frac`` >= :data:`COLLAPSE_FRAC`), counted and named, in
    markdown; None when the results do not measure collapse."""
    if "majority_frac" not in runs.columns:
        return None
    dead = runs[runs["majority_frac"] >= COLLAPSE_FRAC]
    return (f"**Collapsed networks** (≥ 90% of test images given one class: a failure, not a result): {len(dead)}"
            + ("" if dead.empty else ", " + ", ".join(f"{r.dataset} seed {r.seed} {r.name}"
                                                       for r in dead.itertuples())))


def at_chance(runs: pd.DataFrame, level: float = 0.05) -> pd.DataFrame:
    """Networks whose test accuracy is not above chance (1 / classes): one-sided exact binomial test
    (``scipy.stats.binomtest``) of their correct answers on the ``test_images`` test images.

    Such a network learned nothing, though it need not answer one class (it is not collapsed, and
    the claims keep it, like every trained network, as what its recipe gave; the claims chapter's
    unstable cells say why they fail). Rows without ``test_images`` are not tested.

    Returns:
        DataFrame: dataset, seed, name, accuracy, chance, test_images, p (one-sided), majority_frac.
    """
    from scipy.stats import binomtest
    from .data import spec
    cols = ["dataset", "seed", "name", "accuracy", "chance", "test_images", "p", "majority_frac"]
    acc = "test_acc_at_best_val" if "test_acc_at_best_val" in runs else "max_test_acc"
    rows = []
    for r in runs.dropna(subset=[acc] + (["test_images"] if "test_images" in runs else [])).itertuples():
        n = int(getattr(r, "test_images", 0) or 0)
        if n <= 0:
            continue
        chance = 1 / spec(r.dataset).num_classes
        p = binomtest(int(round(getattr(r, acc) * n)), n, chance, alternative="greater").pvalue
        if p >= level:
            rows.append({"dataset": r.dataset, "seed": int(r.seed), "name": r.name, "accuracy": getattr(r, acc),
                         "chance": chance, "test_images": n, "p": p,
                         "majority_frac": getattr(r, "majority_frac", float("nan"))})
    return pd.DataFrame(rows, columns=cols)


def at_chance_text(table: pd.DataFrame) -> str:
    """:func:`at_chance` in one markdown line."""
    if table.empty:
        return "**Networks at chance** (test accuracy not above 1 / classes, exact binomial test): none."
    return ("**Networks at chance** (test accuracy not above 1 / classes, exact binomial test; they learned "
            f"nothing, a failure of training to report; kept in the claims as what their recipe gave): {len(table)}, "
            + ", ".join(f"{r.dataset} seed {r.seed} {r.name} ({100 * r.accuracy:.2f}%, chance {100 * r.chance:.2f}%)"
                        for r in table.itertuples()))


def provenance_table(prov: dict) -> pd.DataFrame:
    """What produced the stored numbers (``provenance.json``): export time, versions, machine, devices."""
    machine = prov.get("machine", {})
    return pd.Series({
        "exported": prov.get("exported"), "triage": prov.get("triage_version"), "git": prov.get("git_hash"),
        "machine": f"{machine.get('cpu')}, {machine.get('cores')} cores",
        "devices of the runs": ", ".join(prov.get("runs_devices", [])),
    }, name="value").to_frame()


# ----------------------------------------------------------------------------- Fig. 2, Fig. 4, Fig. 3 in numbers
def headline_glue(runs: pd.DataFrame, dataset: str, measure: str) -> tuple[dict, dict]:
    """Fig. 2 on one data set in numbers: the base, the FM and TM networks, the best child, the control.

    Means are over every network and seed of the data set; "above" counts networks at least
    as accurate as the base's mean. The control (the base trained again with the children's
    schedule) is the fair reference for "a child exceeds its base"; results without one say so.

    Args:
        runs: ``Results.runs``.
        dataset: the data set the prose describes.
        measure: the accuracy column (``plots.accuracy_measure(runs)``).

    Returns:
        ``(values, markdown)``: ``base_acc``; per regime (``fm``, ``tm``) ``_n``, ``_mean``, ``_min``,
        ``_max``, ``_above``; ``best_name``, ``best_acc``, ``base_epochs``, ``base_epoch_of_max``;
        and ``control_note`` (markdown).
    """
    part = runs[runs["dataset"] == dataset]
    is_base = (part["block"] == 0) & (part["name"] == "base")
    base_acc = float(part.loc[is_base, measure].mean())
    values = {"base_acc": base_acc}
    for regime, label in (("frozen", "fm"), ("thawed", "tm")):
        a = part.loc[part["regime"] == regime, measure]
        values |= {f"{label}_n": len(a), f"{label}_mean": float(a.mean()), f"{label}_min": float(a.min()),
                   f"{label}_max": float(a.max()), f"{label}_above": int((a >= base_acc).sum())}
    kids = part[part["block"] > 0]
    best = kids.loc[kids[measure].idxmax()] if len(kids) else None
    b = part[is_base]
    values |= {"best_name": f"block {best['block']} {best['scheme']}" if best is not None else "none",
               "best_acc": float(best[measure]) if best is not None else float("nan"),
               "base_epochs": int(b["epochs"].iloc[0]) if len(b) else 0,
               # one base per seed: every seed's best epoch (in seed order), and the epochs they trained
               "base_epoch_of_max": ", ".join(str(int(e)) for e in _by_seed(b, "best_epoch" if "best_epoch" in b
                                                                             else "epoch_of_max")) or "n/a",
               "base_trained": _span_int(b, "epochs_trained") or (str(int(b["epochs"].iloc[0])) if len(b) else "n/a")}
    ctl = part[(part["block"] == 0) & (part["name"] == "control")]
    note = (f"The control (the base trained {int(ctl['epochs_trained'].mean())} more epochs with the children's "
            f"schedule) reaches {ctl[measure].mean():.3f}: the reference a child must beat." if len(ctl) else
            "These results have no control, so a child above the base may owe its lead to the extra training "
            "rather than to the compression.")
    return values, {"control_note": note}


def _by_seed(frame: pd.DataFrame, col: str) -> list:
    """``col`` of each row in seed order (rows as given when there is no seed column)."""
    f = frame.sort_values("seed") if "seed" in frame else frame
    return [v for v in f[col] if v == v]


def _span_int(frame: pd.DataFrame, col: str) -> str:
    """``"a-b"`` (or ``"a"``) over the integer column ``col``; ``""`` when absent or empty."""
    if col not in frame or frame[col].dropna().empty:
        return ""
    v = frame[col].dropna().astype(int)
    return f"{v.min()}-{v.max()}" if v.max() > v.min() else f"{v.min()}"


def convergence_glue(runs: pd.DataFrame, dataset: str, measure: str) -> tuple[pd.DataFrame, dict]:
    """Fig. 4 in numbers: mean epochs to 99% of the best per data set and scheme, and one data set's.

    Epochs to 99% are read on validation accuracy when ``measure`` is (results with a
    validation split), else on test accuracy as the paper did.

    Returns:
        ``(table, values)``: the children's mean per data set (rows) and scheme (columns, Fig. 2's
        order); ``child_epochs`` (the epochs after compression on ``dataset``) and ``e99_<scheme>``
        (e.g. ``e99_TM_STN``) on ``dataset``.
    """
    col = "epochs_to_99pct_val" if measure != "max_test_acc" else "epochs_to_99pct"
    e99 = runs[runs["block"] > 0].pivot_table(col, "dataset", "scheme", aggfunc="mean")
    table = e99.reindex(columns=[s for s in SCHEMES if s in e99.columns]).round(2)
    kids = runs[(runs["dataset"] == dataset) & (runs["block"] > 0)]
    cap = ", ".join(f"{e:g}" for e in sorted(kids["epochs"].unique())) or "n/a"
    trained = _span_int(kids, "epochs_trained")
    values = {"child_epochs": f"{cap} (a cap; they trained {trained})" if trained else cap}
    for s in SCHEMES:
        values[f"e99_{s.replace('-', '_')}"] = float(kids.loc[kids["scheme"] == s, col].mean())
    return table, values


def fig3_glue(acts: dict | None) -> tuple[pd.DataFrame | None, dict, dict]:
    """Fig. 3 in numbers: each model's block-1 maps against the base's, and the paper's observation.

    The paper sees both STN models' maps match the base's while TM-RW's differ; here "match"
    is the mean over filters of :func:`triage.tables.activation_similarity`'s correlation.

    Args:
        acts: ``Results.activations`` (None: not stored).

    Returns:
        ``(table, values, markdown)``: correlation per model (rows) and filter, with its ``mean``
        (None without activations); ``r_FM_STN``, ``r_TM_STN``, ``r_TM_RW`` (NaN when missing);
        ``fig3_note`` (markdown).
    """
    models = ("FM-STN", "TM-STN", "TM-RW")
    if acts is None:
        return None, {f"r_{m.replace('-', '_')}": float("nan") for m in models}, {
            "fig3_note": "No Fig. 3 activations are stored for this profile: the four block-1 models were not all "
                         "present at export time."}
    sim = activation_similarity(acts)
    r = sim.groupby("model", sort=False)["r"].mean()
    table = sim.pivot(index="model", columns="filter", values="r").assign(mean=r).round(2)
    values = {f"r_{m.replace('-', '_')}": float(r.get(m, float("nan"))) for m in models}
    closer = min(r.get("FM-STN", float("nan")), r.get("TM-STN", float("nan"))) > r.get("TM-RW", float("nan"))
    note = (f"Here the {acts['dataset']} maps of both STN models are "
            + ("closer to the base's than TM-RW's, as the paper saw." if closer else
               "*not* both closer to the base's than TM-RW's, unlike the paper's observation."))
    return table, values, {"fig3_note": note}


# ----------------------------------------------------------------------------- measured run times (reproduce chapter)
def profile_timings(results: dict) -> pd.DataFrame:
    """:func:`triage.tables.timings` of every stored profile, with its ``profile`` and ``machine``.

    Args:
        results: profile -> ``Results`` (:func:`triage.report.load`).
    """
    rows = []
    for profile, res in results.items():
        t = timings(res.runs).assign(profile=profile)
        m = res.provenance.get("machine", {})
        # provenance names the exporting machine, which is the CPU runs' machine; a GPU run's
        # card is named in the profile's device_logs/, not per run
        t["machine"] = [f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores" if d == "cpu" else f"GPU ({d})"
                        for d in t["device"]] if len(t) else []
        rows.append(t)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _span(frame: pd.DataFrame, col: str, scale: float = 1.0, fmt: str = "{:.1f}") -> str:
    """'lo-hi' of a column over the rows of ``frame``, one value when they round alike, 'n/a' when empty."""
    v = frame[col].dropna() * scale if len(frame) else frame
    if not len(v):
        return "n/a"
    lo, hi = fmt.format(v.min()), fmt.format(v.max())
    return lo if lo == hi else f"{lo}-{hi}"


def timing_glue(times: pd.DataFrame) -> tuple[dict, dict]:
    """The cpu profile's measured times in the Reproduce chapter's words.

    The 32-px data sets (MNIST, CIFAR-10, CIFAR-100) and Stanford Dogs (64 px, four times the
    pixels) are told apart: a range over data sets and seeds would mix two costs.

    Args:
        times: :func:`profile_timings` output.

    Returns:
        ``(values, markdown)``: ``cpu_machine``, ``cpu_grids``, ``cpu_networks``, ``cpu_base_min``,
        ``cpu_child_s``, ``cpu_grid_h``, ``cpu_total_h``, ``cpu_notebook_h``, ``grid_size``; and
        ``cpu_dogs``, ``smoke_note`` (markdown).
    """
    cpu = times[times["profile"] == "cpu"] if len(times) else times
    small = cpu[cpu["dataset"] != "stanford_dogs"] if len(cpu) else cpu
    dogs = cpu[cpu["dataset"] == "stanford_dogs"] if len(cpu) else cpu
    values = {
        "cpu_machine": cpu["machine"].iloc[0] if len(cpu) else "no cpu results stored",
        "cpu_grids": len(cpu), "cpu_networks": int(cpu["networks"].sum()) if len(cpu) else 0,
        "cpu_base_min": _span(small, "base_s", 1 / 60), "cpu_child_s": _span(small, "child_median_s", fmt="{:.0f}"),
        "cpu_grid_h": _span(small, "grid_estimate_h", fmt="{:.2f}"),
        "cpu_total_h": float(cpu["train_total_h"].sum()) if len(cpu) else float("nan"),
        "cpu_notebook_h": float(cpu["notebook_total_s"].sum()) / 3600 if len(cpu) else float("nan"),
        "grid_size": GRID_SIZE}
    markdown = {
        "cpu_dogs": (f"Stanford Dogs (64x64 crops, four times the pixels): base {_span(dogs, 'base_s', 1 / 60)} min, "
                     f"a compressed network {_span(dogs, 'child_median_s', fmt='{:.0f}')} s, "
                     f"{_span(dogs, 'grid_estimate_h', fmt='{:.2f}')} h per grid." if len(dogs) else
                     "No Stanford Dogs cpu grid is stored."),
        "smoke_note": ("The smoke profile's times are in the table above." if "smoke" in set(times.get("profile", []))
                       else "No smoke results are stored in this checkout (they are not committed, and the book "
                       "builds from the stored cpu results when they exist); `python -m triage grid --dataset mnist "
                       "--profile smoke` followed by `python -m triage export --profile smoke` adds them to this "
                       "table.")}
    return values, markdown


def device_timing_text(times: pd.DataFrame, profile: str) -> str:
    """One profile's measured costs as markdown bullets, one per device and data set.

    Per device because a profile may have trained its bases on a GPU and its children
    on the CPU: a sum over devices would describe no machine. Each bullet gives the
    bases' training time, the median child's and the children of one grid (control
    plus ``GRID_SIZE - 1`` children at the mean child's time), over the seeds stored.

    Args:
        times: :func:`profile_timings` output.
        profile: the profile to describe.
    """
    part = times[times["profile"] == profile] if len(times) else times
    if not len(part):
        return f"No {profile} results are stored."
    lines = []
    for (device, machine), on in part.groupby(["device", "machine"], sort=False):
        for dataset, d in on.groupby("dataset"):
            n, seeds = int(d["networks"].sum()), int(d["base_s"].notna().sum())
            bits = [f"{n} network{'s' * (n != 1)}"]
            if seeds:
                bits.append(f"base {_span(d, 'base_s', 1 / 60)} min ({seeds} seed{'s' * (seeds != 1)})")
            kids = d[d["child_median_s"].notna()]
            if len(kids):
                bits.append(f"median child {_span(kids, 'child_median_s', fmt='{:.0f}')} s")
                bits.append(f"children of a grid {_span(kids, 'children_estimate_h', fmt='{:.1f}')} h")
            lines.append(f"- **{dataset}** on {machine}: " + ", ".join(bits))
    return "\n".join(lines)
