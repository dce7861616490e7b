"""Tables derived from stored runs: margins, gaps, convergence, similarity, cost and setting.

One reason to change: what the book measures on the stored runs. Every function here is
a pure function of tables the store already holds (``Results.runs`` of
:func:`triage.report.load`, :func:`triage.grid.results_table`, ``Results.activations``)
and returns a tidy DataFrame (or a line of prose about one); :func:`cka_bases` and
:func:`child_lr_pilot` read the run weights or the stored pilot decision. Exporting and
reading the results is :mod:`triage.report`; the paper's claims are tested on these
tables by :mod:`triage.claims`.

Example:
    >>> from triage import report, tables
    >>> res = report.load("campaign")                          # doctest: +SKIP
    >>> tables.regime_gaps(res.runs).groupby("block")["gap"].mean()   # doctest: +SKIP
"""
from __future__ import annotations

import json
from pathlib import Path

from .vocabulary import GRID_SIZE, is_base

__all__ = ["PILOT_CHILDREN", "PAPER_TRAIN_IMAGES", "PAPER_TEST_IMAGES", "PAPER_RESOLUTION",
           "margins", "regime_gaps", "convergence_diffs", "activation_similarity", "cka_bases",
           "child_lr_pilot", "grid_cost", "device_repeats", "device_repeats_text", "device_mix",
           "mixed_device_text", "compressed_dead", "remaining_cost",
           "setting_differences", "setting_caveat", "timings"]

# The child-lr pilot (tools/gpu_campaign.py): one child per block, all three initialisers, both regimes.
PILOT_CHILDREN = ((1, "random", "thawed"), (3, "mean", "thawed"), (5, "stn", "thawed"),
                  (2, "random", "frozen"), (4, "mean", "frozen"))
# Paper Sec. 3.3-3.4 and Tables 1-2: the setting our profiles scale down.
PAPER_TRAIN_IMAGES = {"mnist": 60000, "cifar10": 50000, "cifar100": 50000, "stanford_dogs": 12000}
PAPER_TEST_IMAGES = {"mnist": 10000, "cifar10": 10000, "cifar100": 10000, "stanford_dogs": 8500}
PAPER_RESOLUTION = 224    # "We upsampled the inputs to (224,224,3)"


# ----------------------------------------------------------------------------- accuracy and convergence

def _bases(runs):
    b = runs[is_base(runs)][["dataset", "seed", "max_test_acc"]]
    return b.drop_duplicates(["dataset", "seed"]).rename(columns={"max_test_acc": "base_acc"})


def margins(runs):
    """Every compressed network with its accuracy relative to its own seed's base.

    Returns:
        DataFrame: dataset, seed, block, init, regime, scheme, acc (max test accuracy),
        base_acc, delta = acc - base_acc. Children whose base is missing are dropped.
    """
    kids = runs[runs["block"] > 0][["dataset", "seed", "block", "init", "regime", "scheme",
                                    "max_test_acc"]].rename(columns={"max_test_acc": "acc"})
    m = kids.merge(_bases(runs), on=["dataset", "seed"], how="inner")
    m["delta"] = m["acc"] - m["base_acc"]
    return m.reset_index(drop=True)


def regime_gaps(runs):
    """TM minus FM accuracy for each (data set, seed, block, init) that has both.

    Returns:
        DataFrame: dataset, seed, block, init, acc_fm, acc_tm, gap = acc_tm - acc_fm.
    """
    kids = runs[runs["block"] > 0]
    w = kids.pivot_table("max_test_acc", ["dataset", "seed", "block", "init"], "regime").reset_index()
    w.columns.name = None
    for r in ("frozen", "thawed"):
        if r not in w.columns:
            w[r] = float("nan")
    w = w.rename(columns={"frozen": "acc_fm", "thawed": "acc_tm"}).dropna(subset=["acc_fm", "acc_tm"])
    w["gap"] = w["acc_tm"] - w["acc_fm"]
    return w[["dataset", "seed", "block", "init", "acc_fm", "acc_tm", "gap"]].reset_index(drop=True)


def convergence_diffs(runs):
    """Epochs to 99% of max of STN against RW and MW of the same (data set, seed, block, regime).

    Returns:
        DataFrame: dataset, seed, block, regime, e_stn, e_other (mean of RW and MW, either
        alone when the other is missing), diff = e_stn - e_other (negative: STN faster).
    """
    kids = runs[runs["block"] > 0]
    w = kids.pivot_table("epochs_to_99pct", ["dataset", "seed", "block", "regime"], "init").reset_index()
    w.columns.name = None
    for i in ("random", "mean", "stn"):
        if i not in w.columns:
            w[i] = float("nan")
    w["e_stn"] = w["stn"]
    w["e_other"] = w[["random", "mean"]].mean(axis=1)  # NaN only when both are missing
    w = w.dropna(subset=["e_stn", "e_other"])
    w["diff"] = w["e_stn"] - w["e_other"]
    return w[["dataset", "seed", "block", "regime", "e_stn", "e_other", "diff"]].reset_index(drop=True)


def activation_similarity(acts: dict):
    """Pearson correlation of each model's block-1 maps with the base's, filter by filter (Fig. 3).

    The compressed conv of block 1 keeps the parent's output channels, and STN trains
    it to reproduce the parent's (pooled) block output, so filter i of an STN child is
    comparable with filter i of the base; an RW child starts from random weights, so
    its filter i has no reason to match (paper Sec. 4: "the STN networks have been
    forced to learn the same filter responses as the parent network").

    Args:
        acts: the Fig. 3 arrays (``Results.activations``).

    Returns:
        DataFrame: model, filter, r (NaN for a constant map).
    """
    import numpy as np
    import pandas as pd
    a = np.asarray(acts["activations"], dtype=np.float64)
    labels = [str(x) for x in acts["labels"]]
    base = a[labels.index("Base")]
    rows = []
    for m, label in enumerate(labels):
        if label == "Base":
            continue
        for f in range(a.shape[1]):
            x, y = base[f].ravel(), a[m, f].ravel()
            r = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")
            rows.append({"model": label, "filter": f, "r": r})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- setting

def setting_differences(runs):
    """Our setting against the paper's (Sec. 3.3-3.4, Tables 1-2), one row per data set and field.

    Returns:
        DataFrame: dataset, setting, ours, paper, same (bool).
    """
    import pandas as pd
    from .config import TABLE1, TABLE2
    rows = []
    for dataset, part in runs.groupby("dataset", sort=False):
        base = part[part["block"] == 0]
        if "name" in base:   # the control is a block-0 row trained with the children's schedule
            base = base[base["name"] != "control"]
        kids = part[part["block"] > 0]

        def vals(frame, col):
            v = sorted({x for x in frame[col].dropna()}) if col in frame and len(frame) else []
            return ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) or "n/a"

        def trained(frame, cap_col, done_col):
            # with early stopping the config's value is a cap: say what the networks trained
            cap = vals(frame, cap_col)
            if done_col not in frame or frame[done_col].dropna().empty:
                return cap
            d = frame[done_col].dropna().astype(int)
            return f"cap {cap}; trained {d.min()}" + (f"-{d.max()}" if d.max() > d.min() else "")

        items = [
            ("width (channel multiplier)", vals(part, "width"), "1"),
            ("input resolution (px)", vals(part, "resolution"), str(PAPER_RESOLUTION)),
            ("training images", vals(part, "train_images"), str(PAPER_TRAIN_IMAGES.get(dataset, "n/a"))),
            ("test images", vals(part, "test_images"), str(PAPER_TEST_IMAGES.get(dataset, "n/a"))),
            ("base epochs", trained(base, "epochs", "epochs_trained"), str(TABLE1[dataset].base_epochs)),
            ("epochs after compression", trained(kids, "epochs", "epochs_trained"), str(TABLE2["comp_epochs"])),
            ("STN epochs", trained(kids[kids["init"] == "stn"] if "init" in kids else kids, "stn_epochs",
                                   "stn_epochs_trained"), str(TABLE2["stn_epochs"])),
            ("initial learning rate", vals(part, "lr"), f"{TABLE1[dataset].lr:g}"),
            ("batch size", vals(part, "batch_size"), "not stated"),
            ("seeds", str(part["seed"].nunique()), "not stated"),
        ]
        if dataset == "stanford_dogs":  # both our sources give box crops (triage.data)
            items.insert(0, ("images", "64x64 crops of the dog boxes", "full photographs"))
        for name, ours, paper in items:
            rows.append({"dataset": dataset, "setting": name, "ours": ours, "paper": paper,
                         "same": ours == paper})
    return pd.DataFrame(rows)


def setting_caveat(runs, dataset: str | None = None) -> str:
    """One short line naming where our setting differs from the paper's (for a verdict's caveat).

    Example:
        >>> setting_caveat(runs)                    # doctest: +SKIP
        'ours vs paper: width 0.25 vs 1; 32 vs 224 px; 5000 vs 50000 training images; ...'
    """
    d = setting_differences(runs if dataset is None else runs[runs["dataset"] == dataset])
    short = {"images": "{o} vs {p}", "width (channel multiplier)": "width {o} vs {p}", "input resolution (px)": "{o} vs {p} px",
             "training images": "{o} vs {p} training images", "test images": "{o} vs {p} test images",
             "initial learning rate": "lr {o} vs {p}"}
    parts = []
    for _, part in d.groupby("dataset", sort=False):
        v = part.set_index("setting")
        parts += [fmt.format(o=v.loc[k, "ours"], p=v.loc[k, "paper"]) for k, fmt in short.items()
                  if k in v.index and not v.loc[k, "same"]]
        ep = ["base epochs", "epochs after compression", "STN epochs"]
        if not v.loc[ep, "same"].all():
            parts.append("epochs base/compressed/STN " + "/".join(v.loc[ep, "ours"]) + " vs "
                         + "/".join(v.loc[ep, "paper"]))
    parts = list(dict.fromkeys(parts))
    return "ours vs paper: " + "; ".join(parts) if parts else "same setting as the paper"


def timings(runs):
    """Measured cost of the stored networks, per data set, seed and device.

    ``train_seconds`` is the sum of the epochs' wall time (training and the test
    evaluation of each epoch; not the STN initialisation), from ``summary.json``;
    ``notebook_seconds`` is papermill's wall time of the executed run notebook
    (training included only for networks trained inside the grid; NaN for networks
    trained without a notebook). Networks trained on different devices are never
    summed together (a campaign's bases ran on a GPU, most children on the CPU).

    Returns:
        DataFrame: dataset, seed, device, networks, base_s, control_s, child_median_s,
        child_mean_s, child_max_s, train_total_s, notebook_total_s, train_total_h,
        children_estimate_h: the control (if any) and ``GRID_SIZE - 1`` children at the mean
        child's time, and grid_estimate_h: that plus the base (NaN where the base ran on
        another device), a full grid's training time on that device.
    """
    import pandas as pd
    runs = runs.assign(device=runs["device"].fillna("cpu")) if "device" in runs else runs.assign(device="cpu")
    name = runs["name"] if "name" in runs else pd.Series("base", index=runs.index).where(runs["block"] == 0)
    rows = []
    for (dataset, seed, device), part in runs.groupby(["dataset", "seed", "device"]):
        kids = part[part["block"] > 0]
        base = part[(part["block"] == 0) & (name[part.index] != "control")]
        control = part[(part["block"] == 0) & (name[part.index] == "control")]
        nb = part["notebook_seconds"] if "notebook_seconds" in part else pd.Series(dtype=float)
        rows.append({
            "dataset": dataset, "seed": int(seed), "device": device, "networks": len(part),
            "base_s": float(base["train_seconds"].sum()) if len(base) else float("nan"),
            "control_s": float(control["train_seconds"].sum()) if len(control) else float("nan"),
            "child_median_s": float(kids["train_seconds"].median()) if len(kids) else float("nan"),
            "child_mean_s": float(kids["train_seconds"].mean()) if len(kids) else float("nan"),
            "child_max_s": float(kids["train_seconds"].max()) if len(kids) else float("nan"),
            "train_total_s": float(part["train_seconds"].sum()),
            "notebook_total_s": float(nb.sum(min_count=1)),
        })
    t = pd.DataFrame(rows)
    if len(t):
        t["train_total_h"] = t["train_total_s"] / 3600
        t["children_estimate_h"] = (t["control_s"].fillna(0) + (GRID_SIZE - 1) * t["child_mean_s"]) / 3600
        t["grid_estimate_h"] = t["base_s"] / 3600 + t["children_estimate_h"]
    return t


# ----------------------------------------------------------------------------- stored runs and files

def cka_bases(runs, data_root=None):
    """Linear CKA of block 1 between the bases of every two seeds of a data set.

    The reference for a child's ``cka_block1``: "as similar to the base as a base trained
    from another seed". Needs the bases' weights (committed for format-2 profiles) and the
    test images; None when no data set has two bases with weights.

    Returns:
        DataFrame with dataset, seed_a, seed_b, cka_block1.
    """
    import itertools
    import pandas as pd
    from .data import DataError
    from .loaders import get_loaders
    from .experiments import load_model
    from .similarity import CKA_IMAGES, block1_features, linear_cka
    rows = []
    bases = runs[(runs["block"] == 0) & (runs["name"] == "base")]
    for dataset, part in bases.groupby("dataset", sort=False):
        part = part[[(Path(d) / "weights.pt").is_file() for d in part["run_dir"]]]
        if len(part) < 2:
            continue
        try:
            _, test, _ = get_loaders(dataset, root=data_root, batch_size=CKA_IMAGES)
        except DataError:
            continue
        feats = {int(r.seed): block1_features(load_model(r.run_dir, "cpu"), test).flatten(1).numpy()
                 for r in part.itertuples()}
        for a, b in itertools.combinations(sorted(feats), 2):
            rows.append({"dataset": dataset, "seed_a": a, "seed_b": b, "cka_block1": linear_cka(feats[a], feats[b])})
    return pd.DataFrame(rows) if rows else None


def child_lr_pilot(root=None, profile: str = "campaign"):
    """The pre-registered child-lr pilot of ``tools/gpu_campaign.py`` as stored.

    Returns:
        (table, decision): one row per pilot child with its best validation accuracy under
        each reading (``initial``: a fresh SGD at the profile's lr; ``continue``: the base's
        final lr), and the stored decision dict (choice, means, margin, why); (None, None)
        when no pilot is stored.
    """
    import pandas as pd
    from .store import default_results_root
    root = Path(root) if root is not None else default_results_root()
    path = root / profile / "child_lr_pilot.json"
    if not path.is_file():
        return None, None
    dec = json.loads(path.read_text())
    n = len(dec["acc"]["initial"])
    names = [f"b{b}-{i}-{r}" for b, i, r in PILOT_CHILDREN][:n]
    table = pd.DataFrame({"initial": dec["acc"]["initial"], "continue": dec["acc"]["continue"][:n]},
                         index=pd.Index(names, name="pilot child (CIFAR-10, seed 0)"))
    table["initial - continue (pt)"] = 100 * (table["initial"] - table["continue"])
    return table, dec


def grid_cost(table):
    """Measured cost of one grid (base excluded: 15 FM + 15 TM children and the control).

    One row per data set, device and arithmetic, because they differ several-fold: a
    Stanford Dogs epoch (64 px) costs ~4x a CIFAR-10 one, CIFAR-100 trains at twice the
    width, and an fp32 CPU is ~2x slower than one with native bf16. From the stored runs'
    ``train_seconds`` (wall time, STN hint epochs included): the median per kind of network
    and the hours one grid takes in one process, ``15 x FM + 15 x TM + control``. Wall time
    also counts pauses and other processes on the cores, so where runs recorded
    ``train_cpu_seconds`` the same sum is given in CPU time (``grid_cpu_hours``, from the
    runs that have it). Audit runs, pilot runs (``child_lr`` other than the profile's) and
    compress-to-failure steps are left out.

    Args:
        table: runs with ``dataset``, ``device``, ``train_seconds`` and config columns, and
            optionally ``autocast`` and ``train_cpu_seconds`` (e.g.
            ``triage.grid.results_table(results_root, "campaign", exported=True)``).

    Returns:
        DataFrame indexed by (dataset, device, arithmetic): n and median seconds of FM
        children, TM children and controls, ``grid_hours`` and ``grid_cpu_hours``.
        ``arithmetic`` is the recorded autocast dtype ("bfloat16", "float32") or "not
        recorded" for runs from before runs recorded it. Empty when nothing is stored.
    """
    import pandas as pd
    cols = ["n_fm", "fm_s", "n_tm", "tm_s", "n_control", "control_s", "grid_hours", "n_cpu_time",
            "grid_cpu_hours"]
    index = ["dataset", "device", "arithmetic"]
    if table.empty or "device" not in table.columns:
        return pd.DataFrame(columns=cols, index=pd.MultiIndex.from_tuples([], names=index))
    table = _grid_runs(table)
    t = pd.concat([table[table["block"] > 0], table[(table["block"] == 0) & (table["name"] == "control")]])
    t["arithmetic"] = (t["autocast"] if "autocast" in t.columns else pd.Series(None, index=t.index))
    t["arithmetic"] = t["arithmetic"].fillna("not recorded")
    if "train_cpu_seconds" not in t.columns:
        t["train_cpu_seconds"] = float("nan")

    def med(x):
        x = x.dropna()
        return float(x.median()) if len(x) else float("nan")

    def medians(part, column):
        """Median FM, TM and control time; no control stored: it trains like a TM child."""
        fm = med(part.loc[part["regime"] == "frozen", column])
        tm = med(part.loc[part["regime"] == "thawed", column])
        ctl = med(part.loc[part["name"] == "control", column])
        return fm, tm, ctl, (15 * fm + 15 * tm + (tm if ctl != ctl else ctl)) / 3600

    rows = {}
    for group, part in t.groupby(index, sort=True):
        fm, tm, ctl, wall_h = medians(part, "train_seconds")
        rows[group] = {"n_fm": int((part["regime"] == "frozen").sum()), "fm_s": fm,
                       "n_tm": int((part["regime"] == "thawed").sum()), "tm_s": tm,
                       "n_control": int((part["name"] == "control").sum()), "control_s": ctl,
                       "grid_hours": wall_h,
                       "n_cpu_time": int(part["train_cpu_seconds"].notna().sum()),
                       "grid_cpu_hours": medians(part, "train_cpu_seconds")[3]}
    out = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    out.index = pd.MultiIndex.from_tuples(out.index, names=index)
    return out


def device_repeats(root=None, profile: str = "campaign"):
    """Grid networks trained on both the GPU and the CPU: the grid's run and its repeat.

    ``<root>/<profile>/device_repeats/<dataset>/<name>-<key>/`` holds the run of the same
    config and seed on the other device (``config.json``, ``summary.json``, ``metrics.csv``);
    the grid's run of that key is read from the export (``<root>/<profile>/runs/``). On one
    device the CPU reproduces a config bit for bit; across devices the trajectories part from
    the first step, and this table measures how far the reported accuracy moves.

    Returns:
        DataFrame: dataset, seed, name, key, grid_device (which of the two the grid uses),
        cpu_acc, cuda_acc (test accuracy at the best validation epoch) and diff (CPU minus
        GPU); empty when no pair is stored.
    """
    import pandas as pd
    from .store import default_results_root
    root = Path(root) if root is not None else default_results_root()
    cols = ["dataset", "seed", "name", "key", "grid_device", "cpu_acc", "cuda_acc", "diff"]
    rows = []
    for summ in sorted((root / profile / "device_repeats").glob("*/*/summary.json")):
        grid_dir = root / profile / "runs" / summ.parent.parent.name / summ.parent.name
        if not (grid_dir / "summary.json").is_file():
            continue
        acc, grid_device = {}, None
        for d, is_grid in ((summ.parent, False), (grid_dir, True)):
            device = json.loads((d / "config.json").read_text()).get("device", "?")
            acc[device] = json.loads((d / "summary.json").read_text())["test_acc_at_best_val"]
            grid_device = device if is_grid else grid_device
        if set(acc) != {"cpu", "cuda"}:
            continue    # a pair on one device type (or unrecorded) measures nothing here
        rep = json.loads(summ.read_text())
        rows.append({"dataset": rep["dataset"], "seed": int(rep["seed"]), "name": rep["name"], "key": rep["key"],
                     "grid_device": grid_device, "cpu_acc": acc["cpu"], "cuda_acc": acc["cuda"],
                     "diff": acc["cpu"] - acc["cuda"]})
    return pd.DataFrame(rows, columns=cols)


_ARITH = {"bfloat16": "bf16", "float32": "fp32", "float16": "fp16"}


def device_mix(runs):
    """Where the grid's networks trained: one row per data set, seed and kind (base, control,
    child) with a column per device, counting networks. A device offset is a confound only
    where one seed's children trained on more than one device.

    The device is named with its arithmetic where the run recorded it (``autocast``, e.g.
    "cpu fp32": ``precision="auto"`` gives bf16 only on CPUs with native bf16), and alone
    where it did not (runs from before it was recorded).
    """
    import pandas as pd
    if runs.empty or "device" not in runs.columns:
        return pd.DataFrame()
    kind = runs["name"].where(runs["block"] == 0, "child")
    device = runs["device"].fillna("?")
    if "autocast" in runs.columns:
        arith = runs["autocast"].map(_ARITH)
        device = device.where(arith.isna(), device + " " + arith.fillna(""))
    return (runs.assign(kind=kind, device=device)
            .pivot_table(index=["dataset", "seed", "kind"], columns="device", values="key", aggfunc="count",
                         fill_value=0))


def mixed_device_text(mix) -> str:
    """The seeds whose children trained on more than one device, from :func:`device_mix`:
    e.g. ``"cifar10 seed 0: 11 of 30 on cuda"``, or ``"none"``."""
    if mix is None or mix.empty or len(mix.columns) < 2:
        return "none"
    parts = []
    for (dataset, seed, kind), row in mix.iterrows():
        used = row[row > 0]
        if kind == "child" and len(used) > 1:
            least = used.idxmin()
            parts.append(f"{dataset} seed {seed}: {int(used.min())} of {int(used.sum())} on {least}")
    return "; ".join(parts) or "none"


def fp32_text(runs) -> str:
    """The seeds whose children and controls trained in fp32 (``precision="auto"`` on a CPU
    without native bf16) and in which memory layout: e.g. ``"stanford_dogs seed 2: 6 networks
    (4 NCHW, 2 channels_last)"``, or ``"none"``.

    A run that did not record its layout trained by the rule of its time: channels_last under
    bf16, NCHW in fp32 (:func:`triage.train.channels_last`). The two layouts differ in rounding
    (summation order), as two thread counts do, not in arithmetic.
    """
    import pandas as pd

    from .vocabulary import is_base
    if runs is None or runs.empty or "autocast" not in runs.columns:
        return "none"
    fp32 = runs[~is_base(runs) & (runs["autocast"] == "float32")]
    cl = (fp32["channels_last"].astype("boolean").fillna(False) if "channels_last" in fp32.columns
          else pd.Series(False, index=fp32.index))
    parts = []
    for (dataset, seed), g in fp32.assign(cl=cl).groupby(["dataset", "seed"], sort=True):
        n_cl = int(g["cl"].sum())
        layout = [f"{len(g) - n_cl} NCHW"] * (len(g) > n_cl) + [f"{n_cl} channels_last"] * (n_cl > 0)
        parts.append(f"{dataset} seed {seed}: {len(g)} network{'s' * (len(g) > 1)} ({', '.join(layout)})")
    return "; ".join(parts) or "none"


def device_repeats_text(rep) -> str:
    """One sentence on :func:`device_repeats`: how many pairs, and the CPU-minus-GPU shift with a
    95% t interval (a paired mean; "not testable" below 3 pairs)."""
    if rep is None or rep.empty:
        return "no network is stored on both devices"
    d = 100 * rep["diff"]
    text = (f"{len(rep)} network(s) trained on both devices ({', '.join(sorted(rep['dataset'].unique()))}): "
            f"CPU minus GPU {d.mean():+.2f} points on average, from {d.min():+.2f} to {d.max():+.2f}")
    if len(rep) < 3:
        return text + " (too few pairs for an interval)"
    from scipy import stats
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    return text + f" (95% CI {lo:+.2f} to {hi:+.2f})"


def compressed_dead(t):
    """A runs table's dead channels at each child's compressed block and that block's width, as two
    Series (NaN where not recorded). A block-1 child recorded before ``dead_compressed`` existed
    has it as its ``dead_block1``, of the VGG's 64 * width channels."""
    import numpy as np
    import pandas as pd
    nan = pd.Series(np.nan, index=t.index)
    dead = t["dead_compressed"] if "dead_compressed" in t else nan
    channels = t["compressed_channels"] if "compressed_channels" in t else nan
    if "dead_block1" in t:
        first = (t["block"].astype(int) == 1) & dead.isna()
        dead = dead.where(~first, t["dead_block1"])
        vgg = t["model"].fillna("vgg16_bn") == "vgg16_bn" if "model" in t else True
        if "width" in t:
            channels = channels.where(~(first & vgg & channels.isna()), (64 * t["width"]).round())
    return dead, channels


def remaining_cost(status, table):
    """What the networks not yet done would cost one process, from the finished ones' times.

    Each network of ``status`` that is not done (missing, partial, failed or running: the last
    two counted whole, so the figure errs high) costs the median ``train_seconds`` of the finished
    networks of its kind (base, control, FM child, TM child) of its data set, on the device and
    arithmetic most of them used (an fp32 CPU is several times slower than a GPU). A kind with
    nothing finished costs its nearest stand-in: a control as a TM child, a TM child as a control,
    an FM child as half a TM child (the campaign's FM costs 0.3-0.5 of TM); else it is not counted.

    Args:
        status: :func:`triage.grid.grid_status` (dataset, name, scheme, state).
        table: the finished runs (:func:`triage.grid.results_table`, the store's and the exported).

    Returns:
        DataFrame per data set: left (networks not done), counted (of those, priced), hours (of
        one process), basis (the device and arithmetic priced, and how many runs).
    """
    import pandas as pd
    cols = ["left", "counted", "hours", "basis"]
    rows = {}
    for dataset, st in status.groupby("dataset", sort=True):
        left = st[st["state"] != "done"]
        if left.empty:
            continue
        done = _grid_runs(table[table["dataset"] == dataset]) if len(table) and "train_seconds" in table \
            else table.iloc[:0]
        basis, med = "nothing finished", {}
        if len(done):
            arith = done["autocast"].fillna("not recorded") if "autocast" in done else pd.Series("not recorded",
                                                                                                 index=done.index)
            dev = done["device"].fillna("cpu").map(lambda d: str(d).split(":")[0]) + ", " + arith
            top = dev.value_counts().index[0]
            done = done[dev == top]
            kind = _kind(done["name"].astype(str), done["regime"] if "regime" in done else None)
            med = done.groupby(kind)["train_seconds"].median().to_dict()
            basis = f"{top}, {len(done)} runs"
        tm, ctl = med.get("TM", med.get("control")), med.get("control", med.get("TM"))
        price = {"base": med.get("base"), "control": ctl, "TM": tm,
                 "FM": med.get("FM", tm / 2 if tm is not None else None)}
        secs = [price[k] for k in _kind(left["name"].astype(str), None, left["scheme"].astype(str))]
        priced = [x for x in secs if x is not None and x == x]
        rows[dataset] = {"left": len(left), "counted": len(priced), "hours": sum(priced) / 3600, "basis": basis}
    return pd.DataFrame.from_dict(rows, orient="index", columns=cols)


def _grid_runs(table):
    """The grid's own runs of a table: without compress-to-failure steps (``extra_blocks``), runs
    at another starting lr than their profile's (the pilot, the starting-lr test) and audit runs
    (another ``stopping`` than their profile's)."""
    from .config import PROFILES
    t = table
    if "extra_blocks" in t:
        t = t[t["extra_blocks"].isna()]
    for field in ("child_lr", "stopping"):
        if field in t and "profile" in t:
            own = t["profile"].map(lambda p, f=field: getattr(PROFILES[p], f) if p in PROFILES else None)
            t = t[(t[field] == own) | own.isna()]
    return t.copy()


def _kind(names, regimes=None, schemes=None):
    """base / control / FM / TM of each network, from its name and its regime (or its scheme)."""
    import pandas as pd
    names = pd.Series(list(names))
    if regimes is not None:
        child = pd.Series(list(regimes)).map({"frozen": "FM", "thawed": "TM"})
    else:
        child = pd.Series(list(schemes)).str.split("-").str[0]
    out = names.where(names.isin(["base", "control"]), child)
    return out.set_axis(names.index).tolist()
