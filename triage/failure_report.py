"""Compress to failure, read back: the stored paths, the failure verdict, its figure, the budget.

Reason to change: how the stored failure paths (:mod:`triage.failure`) are tabulated,
tested against the control and drawn, or how their cost is estimated. Reads only: nothing
here trains.

**Failure.** Per seed, the loss of step k is the control's accuracy minus the step's, in
points (the control: the base trained again with the children's schedule, the campaign's
``control`` run). Over seeds its mean gets a two-sided 95% t interval; step k *fails* when
the interval lies above the margin (``MARGIN`` = 1 point, the claims' "difference that
matters", :data:`triage.claims.MARGIN`), is *within margin* when it lies below, and is *not
testable at this n* otherwise; with fewer than 2 seeds nothing is testable. The failure
step is the first step that fails. Steps are tested one by one at alpha/2 each side (the
claims' convention), without a correction over the <= 5 steps: the path order is fixed
before the test, and losses grow along it.

**Scale and budget (issue 17, item 4).** The campaign's scale: width 1/8, full CIFAR-10
less a 10% validation split, the full test set, VGG16-BN only (ResNets: ``triage grid --set
model=resnet8 width=1.0``). When this was written, the 7 TM children of the campaign trained
on this machine's CPU (one thread each, two trainings side by side) had taken 470-1273 s,
median 553 s (20.9 s an epoch);
a path of 3 seeds x 5 steps is 15 networks (3 of them the grid's TM-MW children, reused)
plus 3 x 14 scoring epochs: 12 x 553 s + 42 x 20.9 s = about 2.1 hours of one core, within
the issue's 4 hours (a network with more blocks compressed has fewer FLOPs but may train
longer). :func:`budget` recomputes these numbers from the stored runs.

Example:
    >>> from triage import failure_report
    >>> res = failure_report.load("smoke", "cifar10")                            # doctest: +SKIP
    >>> failure_report.verdict(res)[1]["text"]                                   # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .claims import MARGIN
from .experiments import RunConfig, RunStore
from .failure import ACC, SCORE_EPOCHS, control_config, network_cost

__all__ = ["MARGIN", "FailureResults", "load", "verdict", "verdict_text", "plot", "budget", "budget_text"]


@dataclass
class FailureResults:
    """The stored paths of one profile and data set (see :func:`load`).

    Attributes:
        steps: one row per seed and step: seed, step, blocks ("1+3"), chosen, n_blocks, score
            (the chosen candidate's), params, flops, test_acc_at_best_val, best_val_acc,
            stop_reason, epochs_trained, train_seconds, status (done | missing), name, key.
        control: one row per seed: the control's test_acc_at_best_val and best_val_acc, the
            base's (``base_acc``), and the uncompressed network's params and flops.
        records: the path records (``path.json``), one per seed.
    """
    profile: str
    dataset: str
    steps: "pandas.DataFrame"
    control: "pandas.DataFrame"
    records: list = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """No step network has finished."""
        return self.steps.empty or self.steps[ACC].isna().all()

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.steps["seed"].unique()) if len(self.steps) else []

    @property
    def tag(self) -> str:
        s = self.seeds
        return f"[profile: {self.profile}; {self.dataset}; seed{'s' if len(s) != 1 else ''} {', '.join(map(str, s))}]"


def _summary(store: RunStore, cfg: RunConfig) -> dict | None:
    d = store.find(cfg)
    return json.loads((d / "summary.json").read_text()) if d is not None else None


def load(profile: str = "campaign", dataset: str = "cifar10", root="auto", runs_root=None, *,
         score_epochs: int = SCORE_EPOCHS, **overrides) -> FailureResults:
    """Read the stored failure paths of ``profile`` and ``dataset`` (the run store, else the export).

    Only paths with these settings (``score_epochs``, overrides) are read. Nothing stored
    gives empty tables (``FailureResults.empty``), never an error.

    Args:
        root: the results folder; "auto": as :class:`~triage.experiments.RunStore` decides (the
            checkout's ``results/triage`` for its own run store), None: none.
        runs_root: the run store (default ``$TRIAGE_RUNS`` or ``<checkout>/runs``).
    """
    import pandas as pd
    store = RunStore(runs_root, results=root)
    want = json.loads(json.dumps(overrides))
    recs = {}
    folders = ([store.results / profile / "failure" / dataset] if store.results is not None else []) + \
        [store.root / profile / dataset]
    for base in folders:
        for f in sorted(base.glob("failure-s*-*/path.json")):   # the run store's copy comes last and wins
            try:
                rec = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if rec.get("score_epochs") == score_epochs and rec.get("overrides", {}) == want:
                recs[f.parent.name] = rec
    rows, ctl, cost = [], [], {}

    def cost_of(cfg):
        if cfg.key() not in cost:
            cost[cfg.key()] = network_cost(cfg)
        return cost[cfg.key()]
    for rec in sorted(recs.values(), key=lambda r: r["seed"]):
        seed = int(rec["seed"])
        c = control_config(dataset, profile, seed, **overrides)
        cs, bs = _summary(store, c), _summary(store, c.parent())
        ctl.append({"seed": seed, ACC: (cs or {}).get(ACC, math.nan),
                    "best_val_acc": (cs or {}).get("best_val_acc", math.nan),
                    "base_acc": (bs or {}).get(ACC, math.nan), **_cost(cost_of(c.parent()))})
        for st in rec["steps"]:
            if "config" not in st:
                continue
            cfg = RunConfig(**st["config"])
            s = _summary(store, cfg) or {}
            score = st["scores"].get(str(st["chosen"]))
            rows.append({"seed": seed, "step": int(st["step"]), "blocks": "+".join(map(str, st["blocks"])),
                         "chosen": int(st["chosen"]), "n_blocks": len(st["blocks"]),
                         "score": math.nan if score is None else float(score), **_cost(cost_of(cfg)),
                         ACC: s.get(ACC, math.nan), "best_val_acc": s.get("best_val_acc", math.nan),
                         "stop_reason": s.get("stop_reason"), "epochs_trained": s.get("epochs_trained"),
                         "train_seconds": s.get("train_seconds", math.nan),
                         "status": "done" if s else "missing", "name": cfg.name, "key": cfg.key()})
    cols = ["seed", "step", "blocks", "chosen", "n_blocks", "score", "params", "flops", ACC, "best_val_acc",
            "stop_reason", "epochs_trained", "train_seconds", "status", "name", "key"]
    steps = pd.DataFrame(rows, columns=cols)
    control = pd.DataFrame(ctl, columns=["seed", ACC, "best_val_acc", "base_acc", "params", "flops"])
    return FailureResults(profile, dataset, steps, control, list(recs.values()))


def _cost(c: dict) -> dict:
    return {"params": c["params"], "flops": c["flops"]}


def _t_interval(x, alpha: float = 0.05) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of a two-sided 1 - alpha t interval; NaN bounds with n < 2."""
    import numpy as np
    from scipy import stats
    x = np.asarray([v for v in x if not math.isnan(v)], float)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    m = float(x.mean())
    if n < 2:
        return m, math.nan, math.nan, n
    h = float(stats.t.ppf(1 - alpha / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return m, m - h, m + h, n


def verdict(res: FailureResults, margin: float = MARGIN, alpha: float = 0.05):
    """Per step, the loss against the control over seeds, its CI and verdict; and the failure step.

    The loss of a seed's step is ``100 * (control - step)`` accuracy points (positive: the
    step is worse). A step *fails* when the two-sided 1 - alpha t interval of its mean loss
    lies above ``margin``, is *within margin* when it lies below, *not testable at this n*
    when it straddles the margin, and *not testable: fewer than 2 seeds* below 2 seeds. Seeds
    without a finished step or control are left out of that step.

    Returns:
        (table, summary): one row per step (n, loss, ci_low, ci_high, verdict, the step's mean
        accuracy with its CI, mean params and flops, the blocks of each seed); and a dict with
        ``failure_step`` (None when no step fails), ``margin``, ``n_seeds`` and ``text``.

    Raises:
        ValueError: margin <= 0 or alpha outside (0, 1).
    """
    import pandas as pd
    if not (isinstance(margin, (int, float)) and not isinstance(margin, bool) and margin > 0):
        raise ValueError(f"margin must be a positive number of accuracy points, got {margin!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    ctl = res.control.set_index("seed")[ACC]
    rows = []
    for step, part in res.steps.groupby("step"):
        part = part[part[ACC].notna() & part["seed"].map(ctl).notna()]
        loss, lo, hi, n = _t_interval(100 * (part["seed"].map(ctl) - part[ACC]), alpha)
        acc, acc_lo, acc_hi, _ = _t_interval(100 * part[ACC], alpha)
        if n < 2:
            v = "not testable: fewer than 2 seeds"
        elif lo > margin:
            v = "fails"
        elif hi < margin:
            v = "within margin"
        else:
            v = "not testable at this n"
        rows.append({"step": int(step), "n": n, "loss": loss, "ci_low": lo, "ci_high": hi, "verdict": v,
                     "acc": acc, "acc_low": acc_lo, "acc_high": acc_hi,
                     "params": part["params"].mean(), "flops": part["flops"].mean(),
                     "blocks": " | ".join(part["blocks"])})
    table = pd.DataFrame(rows, columns=["step", "n", "loss", "ci_low", "ci_high", "verdict", "acc", "acc_low",
                                        "acc_high", "params", "flops", "blocks"])
    fails = table[table["verdict"] == "fails"]
    first = int(fails["step"].iloc[0]) if len(fails) else None
    n_seeds = int(table["n"].max()) if len(table) else 0
    if table.empty or n_seeds == 0:
        text = "not run yet: no step network has finished."
    elif first is not None:
        r = fails.iloc[0]
        text = (f"step {first} is the first to fail: it loses {r['loss']:.2f} points against the control "
                f"(95% CI {r['ci_low']:.2f} to {r['ci_high']:.2f}, {int(r['n'])} seeds; margin {margin:g}), "
                f"with blocks {r['blocks']} compressed, {r['params']:,.0f} parameters on average.")
    elif n_seeds < 2:
        text = (f"not testable: {n_seeds} seed per step; the CI over seeds needs at least 2 "
                f"(run `python -m triage failure --profile {res.profile} --dataset {res.dataset} --seeds 0 1 2`).")
    else:
        open_ = table.loc[table["verdict"] != "within margin", "step"].tolist()
        text = (f"no step fails at margin {margin:g}: " + ("every step's loss lies within the margin."
                if not open_ else f"step(s) {', '.join(map(str, open_))} not testable at this n."))
    return table, {"failure_step": first, "margin": margin, "n_seeds": n_seeds, "text": text}


def plot(res: FailureResults, margin: float = MARGIN, axes=None, tag: str | None = None):
    """Test accuracy against parameters and against FLOPs, with the control and the failure step.

    Thin grey lines: one seed's path; blue: the mean per step with its 95% CI over seeds
    (numbered by step); red dotted: the control (mean over seeds), dashed: the control less
    the margin; a red ring marks the failure step.

    Returns:
        the Figure.
    """
    import matplotlib.pyplot as plt
    if res.empty:
        raise ValueError(f"no finished step network to plot for {res.profile}/{res.dataset}")
    table, summ = verdict(res, margin)
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    fig = axes[0].figure
    steps = res.steps[res.steps[ACC].notna()]
    ctl = res.control[ACC].dropna()
    for ax, x, label in zip(axes, ("params", "flops"), ("parameters", "FLOPs per image (conv + linear)")):
        for _, part in steps.groupby("seed"):
            ax.plot(part[x], 100 * part[ACC], "-", c="0.7", lw=0.8, marker=".", ms=5, zorder=1)
        ok = table[table["acc"].notna()]
        err = [(ok["acc"] - ok["acc_low"]).fillna(0), (ok["acc_high"] - ok["acc"]).fillna(0)]
        ax.errorbar(ok[x], ok["acc"], yerr=err, fmt="o", c="tab:blue", capsize=3, ms=6, zorder=3,
                    label="mean over seeds (95% CI)")
        for r in ok.itertuples():
            ax.annotate(str(r.step), (getattr(r, x), r.acc), textcoords="offset points", xytext=(5, 5), fontsize=8)
        if len(ctl):
            c = 100 * ctl.mean()
            ax.axhline(c, ls=":", c="tab:red", lw=1.4, label="control (continued base)")
            ax.axhline(c - margin, ls="--", c="tab:red", lw=0.8, alpha=0.6, label=f"control - {margin:g} pt")
            ax.plot(res.control[x].mean(), c, "*", c="tab:red", ms=10, zorder=3, label="control, uncompressed")
        if summ["failure_step"] is not None:
            r = table[table["step"] == summ["failure_step"]].iloc[0]
            ax.plot(r[x], r["acc"], "o", ms=16, mfc="none", mec="tab:red", mew=2, zorder=4,
                    label=f"failure: step {summ['failure_step']}")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy at best val. epoch (%)", fontsize=8)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Compress to failure: VGG16-BN, blocks compressed greedily {tag if tag is not None else res.tag}",
                 fontsize=10)
    return fig


def budget(profile: str = "campaign", dataset: str = "cifar10", root=None, *, seeds: int = 3,
           steps: int = 5, score_epochs: int = SCORE_EPOCHS, device: str = "cpu") -> dict:
    """The measured cost of a TM child here and what a path of ``seeds`` x ``steps`` costs.

    Reads the exported TM children of ``profile`` (``train_seconds``, epochs, the device in
    config.json). Step 1 of each path is the grid's TM-MW child (reused); the candidates'
    scoring costs ``score_epochs`` per candidate (5 + 4 + 3 + 2 for a full VGG path) at the
    measured seconds per epoch.

    Returns:
        dict: n (children measured), median and range of seconds per network, median seconds
        per epoch, networks, networks_reused, score_epochs_total, hours (the estimate).
    """
    import numpy as np
    from .experiments import default_results_root
    from .grid import results_table
    root = Path(root) if root is not None else default_results_root()
    t = results_table(root, profile, dataset, exported=True)
    secs, per_epoch = [], []
    for r in t[(t["block"] > 0) & (t["regime"] == "thawed")].itertuples() if len(t) else []:
        try:
            dev = json.loads((Path(r.run_dir) / "config.json").read_text()).get("device", "")
        except (OSError, ValueError):
            continue
        if str(dev).startswith(device) and r.train_seconds == r.train_seconds:
            secs.append(float(r.train_seconds))
            per_epoch.append(float(r.train_seconds) / max(int(r.epochs_trained), 1))
    n_blocks = 5
    scored = seeds * sum(n_blocks - k + 1 for k in range(1, min(steps, n_blocks - 1) + 1))
    out = {"n": len(secs), "device": device, "networks": seeds * steps, "networks_reused": seeds,
           "score_epochs_total": scored * score_epochs}
    if secs:
        med, med_ep = float(np.median(secs)), float(np.median(per_epoch))
        out.update(seconds_median=med, seconds_min=min(secs), seconds_max=max(secs), seconds_per_epoch=med_ep,
                   hours=((seeds * steps - seeds) * med + scored * score_epochs * med_ep) / 3600)
    return out


def budget_text(b: dict, dataset: str = "cifar10") -> str:
    """:func:`budget` in the Beyond chapter's words (markdown): what one TM child cost here and a path's estimate."""
    if not b["n"]:
        return f"No TM child of the {dataset} campaign is stored yet to measure the cost of a network."
    return (f"The {b['n']} TM children of the {dataset} campaign trained on this machine's CPU took "
            f"{b['seconds_min']:.0f}-{b['seconds_max']:.0f} s (median {b['seconds_median']:.0f} s, "
            f"{b['seconds_per_epoch']:.1f} s an epoch). A path of 3 seeds x 5 steps is {b['networks']} networks, "
            f"{b['networks_reused']} of them the grid's TM-MW children (reused), plus {b['score_epochs_total']} "
            f"scoring epochs: about {b['hours']:.1f} hours of one core.")


def verdict_text(res: FailureResults, summary: dict) -> str:
    """The failure verdict for the chapter (markdown), or how to run the path when none is stored.

    Args:
        res: :func:`load` output.
        summary: the second value of :func:`verdict`.
    """
    if res.empty:
        return (f"**Not run yet**: no step network of a compress-to-failure path is stored for the {res.profile} "
                f"profile and {res.dataset}. Run `python -m triage failure --profile {res.profile} --dataset "
                f"{res.dataset} --seeds 0 1 2` (after the campaign), then rebuild the book.")
    return f"Verdict {res.tag}: {summary['text']}"
