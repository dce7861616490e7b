"""Figures of the Deep Net Triage paper (matplotlib/seaborn): runs, method and results.

Reason to change: how the triage paper's figures (learning curves, Fig. 1's compression
diagram, Figs. 2-4 and the claim plots) look. The other papers' figures live in
:mod:`triage.plots_autopsy` and :mod:`triage.plots_critical`.

Every figure names the profile (smoke/cpu/paper) that produced it.
"""
from __future__ import annotations

from .similarity import block1_activations  # noqa: F401  (Fig. 3's activations; kept importable here)
from .vocabulary import INIT_LABELS, REGIME_LABELS, SCHEMES, is_base


# ---- triage runs ----
# Learning curves of one run and the paper's Fig. 3 view (block-1 activations of one
# fixed test image). Used by book/templates/triage_experiment.ipynb.

def load_metrics(run_dir):
    """metrics.csv of a run folder as a DataFrame (one row per epoch)."""
    import pandas as pd
    from pathlib import Path
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise ValueError(f"{run_dir} has no metrics.csv; is it a triage run folder?")
    return pd.read_csv(path)


def _run_meta(run_dir):
    import json
    from pathlib import Path
    return json.loads((Path(run_dir) / "config.json").read_text())


def plot_learning_curves(run_dir, axes=None):
    """Train and test accuracy and loss per epoch of one run (seaborn), with the base's best accuracy.

    For a compressed child the base it started from is drawn as a dashed line
    (the paper's Fig. 2 compares every child with its base).

    Args:
        run_dir: a run folder (``triage.run`` returns it).
        axes: two matplotlib Axes (accuracy, loss); None makes a new figure.

    Returns:
        the Figure.

    Example:
        >>> fig = plot_learning_curves(triage.run(triage.make_config("mnist")))   # doctest: +SKIP
    """
    import json
    from pathlib import Path
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns
    from .experiments import RunConfig, RunStore

    run_dir = Path(run_dir)
    m = load_metrics(run_dir)
    meta = _run_meta(run_dir)
    cfg = RunConfig(**meta["config"])
    long = pd.concat([
        pd.DataFrame({"epoch": m["epoch"], "split": split, "accuracy": m[f"{split}_acc"],
                      "loss": m[f"{split}_loss"]}) for split in ("train", "test")])
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    fig = axes[0].figure
    from matplotlib.ticker import MaxNLocator
    for ax, y in zip(axes, ("accuracy", "loss")):
        sns.lineplot(data=long, x="epoch", y=y, hue="split", marker="o", ax=ax)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, m["epoch"].max() + 0.5)  # a 1-epoch child still gets a readable axis
        ax.ticklabel_format(axis="y", useOffset=False)
    if cfg.block:
        # run_dir is <root>/<profile>/<dataset>/<name>-<hash>: the base lives in the same store.
        base = RunStore(run_dir.parents[2]).path(cfg.parent()) / "summary.json"
        if base.exists():
            best = json.loads(base.read_text())["max_test_acc"]
            axes[0].axhline(best, ls="--", c="0.4", lw=1, label="base (max test)")
            axes[0].legend()
    axes[0].set_ylim(0, 1.02)
    fig.suptitle(f"{cfg.dataset} {cfg.name} ({meta['scheme']}), seed {cfg.seed} [profile: {cfg.profile}]")
    return fig


def fixed_test_image(dataset, index=0, data_root=None, resolution=None):
    """One test image, normalised as the loaders do: ``(x (1, C, H, W) float32, raw uint8 (C, H, W))``.

    The paper shows "an image chosen at random"; a fixed index lets every network of
    the grid be compared on the same image.

    Example:
        >>> x, raw = fixed_test_image("cifar10", 0)      # doctest: +SKIP
    """
    import torch
    import torch.nn.functional as F
    from .data import channel_stats, load_split
    xs, _ = load_split(dataset, "test", data_root)
    if not 0 <= index < len(xs):
        raise ValueError(f"image index must be in 0..{len(xs) - 1}, got {index}")
    raw = xs[index]
    mean, std = channel_stats(dataset, data_root)
    mean = torch.tensor(mean).view(1, -1, 1, 1)
    std = torch.tensor(std).view(1, -1, 1, 1)
    x = (raw[None].float() / 255 - mean) / std
    if resolution is not None and resolution != x.shape[-1]:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return x, raw


def plot_block1_activations(run_dir, n_filters=10, image_index=0, data_root=None, device="cpu"):
    """The paper's Fig. 3 view of one run: a fixed test image and its first block-1 activation maps.

    Args:
        run_dir: a run folder.
        n_filters: how many filters to show (Fig. 3 shows the first ten; fewer when block 1
            has fewer filters, e.g. 4 at the smoke profile's width 1/16).
        image_index: index of the test image (same for every network).
        data_root: data folder (default search as in triage.data).
        device: where to evaluate.

    Returns:
        the Figure. The maps share one colour scale, so brightness compares across filters.
    """
    import matplotlib.pyplot as plt
    from .experiments import RunConfig, load_model
    meta = _run_meta(run_dir)
    cfg = RunConfig(**meta["config"])
    model = load_model(run_dir, device)
    x, raw = fixed_test_image(cfg.dataset, image_index, data_root, cfg.resolution)
    acts = block1_activations(model, x)[0].float().cpu()
    n = max(1, min(n_filters, acts.shape[0]))
    fig, axes = plt.subplots(1, n + 1, figsize=(1.6 * (n + 1), 2.0), constrained_layout=True)
    img = raw.permute(1, 2, 0).numpy()
    axes[0].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray")
    axes[0].set_title("input", fontsize=8)
    vmax = float(acts[:n].max()) or 1.0
    for i, ax in enumerate(axes[1:]):
        ax.imshow(acts[i].numpy(), cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(f"filter {i}", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    where = "compressed conv" if cfg.block == 1 else "conv 2"
    fig.suptitle(f"{cfg.dataset} {cfg.name} ({meta['scheme']}): block-1 activations after {where}, "
                 f"test image {image_index} [profile: {cfg.profile}]", fontsize=9)
    return fig


# ---- shared by the figure modules ----
# plots_autopsy and plots_critical draw on these too.

def _profile_tag(profile):
    return f" [profile: {profile}]" if profile else ""


def _ax(ax, figsize=(5.5, 3.4)):
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    return ax


# ---- method ----
# The structural-compression diagram of the book's Method chapter, drawn from the model itself.

def plot_compression(parent, block, ax=None):
    """Draw a VGG's blocks and the same network with ``block`` compressed (paper Fig. 1).

    Each conv is a bar whose height is its output channels; the compressed block's
    single conv is highlighted. Built from ``parent.cfg`` and
    :func:`triage.surgery.compress_block`, so it shows exactly what the code builds.

    Args:
        parent: a :class:`triage.models.VGG`.
        block: 1..5.
        ax: a matplotlib Axes, or None for a new figure.

    Returns:
        the Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .models import block_convs
    from .surgery import compress_block

    child = compress_block(parent, block)
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 3.6))
    top = max(max(b) for b in parent.cfg)
    for row, (model, label) in enumerate([(parent, "parent"), (child, f"child (block {block} compressed)")]):
        y0, x = (1 - row) * 1.4, 0.0
        ax.text(-0.3, y0 + 0.5, label, ha="right", va="center", fontsize=9)
        for b in range(1, len(model.cfg) + 1):
            convs = block_convs(model.block(b))
            for conv in convs:
                h = conv.out_channels / top
                new = model is child and b == block
                ax.add_patch(Rectangle((x, y0), 0.8, h, color="tab:red" if new else "tab:blue", alpha=0.8))
                ax.text(x + 0.4, y0 + h + 0.03, f"{conv.in_channels}\u2192{conv.out_channels}",
                        ha="center", va="bottom", fontsize=6, rotation=90)
                x += 1.0
            ax.add_patch(Rectangle((x, y0), 0.3, 0.15, color="grey"))  # max-pool
            x += 0.8
        ax.text(x, y0 + 0.3, "head", fontsize=8, va="center")
    n_removed = sum(p.numel() for p in parent.parameters()) - sum(p.numel() for p in child.parameters())
    ax.set_title(f"Structural compression of block {block}: convs (height = output channels), "
                 f"grey = max-pool; {n_removed:,} parameters removed", fontsize=10)
    ax.set_xlim(-3.5, x + 1.5)
    ax.set_ylim(-0.1, 2.9)
    ax.axis("off")
    return ax.figure


# ---- results ----
# The book's Results, Claims and Explorer chapters: the paper's Figs. 2-4 and the claim tests,
# drawn from the exported tables of triage.report (runs.csv, metrics.csv, fig3_activations.npz),
# so that no figure needs the weights. Every title ends with the Results tag
# ("[profile: cpu; cifar10; seed 0]").

_SCHEMES = SCHEMES
_INIT_LABEL = INIT_LABELS
_REGIME_LABEL = REGIME_LABELS


def scheme_palette():
    """Colours of the six schemes: one hue per initialiser, light for FM, full for TM."""
    import seaborn as sns
    base = dict(zip(("RW", "MW", "STN"), sns.color_palette("tab10", 3)))
    pal = {}
    for s in _SCHEMES:
        regime, init = s.split("-")
        c = base[init]
        pal[s] = tuple(0.45 * x + 0.55 for x in c) if regime == "FM" else c
    return pal


def panel_grid(n, width, height, ncols=2):
    """A figure of ``n`` panels, ``ncols`` a row (one per data set, say); unused slots hidden.

    Four data sets side by side shrink to illegible on a book page; two a row stay readable.

    Args:
        n: panels wanted (>= 1).
        width, height: inches per panel.
        ncols: panels per row at most.

    Returns:
        (Figure, list of the ``n`` Axes in row-major order).
    """
    import matplotlib.pyplot as plt
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False,
                             constrained_layout=True)
    axes = list(grid.ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _children_long(runs):
    kids = runs[runs["block"] > 0].copy()
    kids["init_label"] = kids["init"].map(_INIT_LABEL)
    kids["regime_label"] = kids["regime"].map(_REGIME_LABEL)
    return kids


def accuracy_measure(runs) -> str:
    """The accuracy a runs table reports: ``test_acc_at_best_val`` (results format 2: the test
    accuracy at the epoch of best validation accuracy) where present, else the paper's
    ``max_test_acc``."""
    col = "test_acc_at_best_val"
    return col if col in runs.columns and runs[col].notna().any() else "max_test_acc"


_MEASURE_LABEL = {"test_acc_at_best_val": "test accuracy at best validation epoch",
                  "max_test_acc": "max test accuracy over epochs (the paper's)",
                  "epochs_to_99pct_val": "epochs to 99% of best validation accuracy",
                  "epochs_to_99pct": "epochs to 99% of max test accuracy"}


def plot_max_accuracy(runs, tag="", axes=None, measure=None):
    """The paper's Fig. 2: accuracy per compressed block and scheme, one panel per data set.

    Points: one per seed; a larger marker with (with >= 3 seeds) its 95% CI: the mean
    over seeds. The dashed line is the uncompressed base (mean over seeds; the band
    spans its seeds' min and max when there are several); the dotted line is the
    continued-base control where the results have one (the fair reference for a child).

    Args:
        runs: ``triage.report.Results.runs``.
        tag: appended to the title (``Results.tag``).
        axes: one Axes per data set; None makes a figure.
        measure: the column plotted (default :func:`accuracy_measure`; ``max_test_acc`` is
            the paper's measure).

    Returns:
        the Figure.
    """
    import seaborn as sns
    datasets = list(dict.fromkeys(runs["dataset"]))
    if not datasets:
        raise ValueError("no runs to plot")
    measure = measure or accuracy_measure(runs)
    if axes is None:
        _, axes = panel_grid(len(datasets), 8.5, 4.2)
    fig = axes[0].figure
    pal = scheme_palette()
    for ax, ds in zip(axes, datasets):
        part = runs[runs["dataset"] == ds]
        kids = _children_long(part)
        n_seeds = part["seed"].nunique()
        if len(kids):
            present = [s for s in _SCHEMES if s in set(kids["scheme"])]
            sns.stripplot(data=kids, x="block", y=measure, hue="scheme", hue_order=present,
                          palette=pal, dodge=True, order=[1, 2, 3, 4, 5], size=4, alpha=0.55,
                          jitter=False, ax=ax, legend=False)
            sns.pointplot(data=kids, x="block", y=measure, hue="scheme", hue_order=present,
                          palette=pal, dodge=0.8 - 0.8 / len(present), order=[1, 2, 3, 4, 5],
                          errorbar=("ci", 95) if n_seeds >= 3 else None, linestyle="none",
                          markers=["v" if s.startswith("FM") else "o" for s in present],
                          markersize=7, ax=ax)
        if kids.empty:
            ax.text(0.5, 0.5, "no compressed network stored yet", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9, color="0.4")
        is_control = part["name"].eq("control") if "name" in part.columns else False
        base = part[(part["block"] == 0) & ~is_control][measure]
        if len(base):
            ax.axhline(base.mean(), ls="--", c="k", lw=1.2, label="base")
            if len(base) > 1:
                ax.axhspan(base.min(), base.max(), color="k", alpha=0.08, lw=0)
        control = part[(part["block"] == 0) & is_control][measure]
        if len(control):
            ax.axhline(control.mean(), ls=":", c="tab:red", lw=1.4, label="control (continued base)")
        ax.set_xlabel("compressed block")
        ax.set_ylabel(_MEASURE_LABEL.get(measure, measure), fontsize=8)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title(f"{ds}: {len(part)} networks", fontsize=10)
    fig.suptitle(f"Fig. 2: {_MEASURE_LABEL.get(measure, measure)} per block and scheme {tag}", fontsize=11)
    return fig


def plot_convergence(runs, tag="", by="dataset", axes=None, measure=None):
    """The paper's Fig. 4: epochs to reach 99% of each network's maximum accuracy, FM and TM panels.

    Bars: mean over the networks of a group (blocks and seeds); points: the networks.

    Args:
        runs: ``Results.runs``.
        by: ``"dataset"`` (the paper's x axis) or ``"block"``.
        axes: two Axes (FM, TM); None makes a figure.
        measure: ``epochs_to_99pct_val`` (default where present) or the paper's ``epochs_to_99pct``.

    Returns:
        the Figure.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator
    if by not in ("dataset", "block"):
        raise ValueError(f"by must be 'dataset' or 'block', got {by!r}")
    kids = _children_long(runs)
    if kids.empty:
        raise ValueError("no compressed networks to plot")
    if measure is None:
        measure = "epochs_to_99pct_val" if "epochs_to_99pct_val" in kids.columns and \
            kids["epochs_to_99pct_val"].notna().any() else "epochs_to_99pct"
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True, constrained_layout=True)
    fig = axes[0].figure
    pal = dict(zip(("RW", "MW", "STN"), sns.color_palette("tab10", 3)))
    order = list(dict.fromkeys(runs["dataset"])) if by == "dataset" else [1, 2, 3, 4, 5]
    for ax, regime in zip(axes, ("FM", "TM")):
        part = kids[kids["regime_label"] == regime]
        if part.empty:
            ax.text(0.5, 0.5, f"no {regime} networks yet", ha="center", transform=ax.transAxes)
        else:
            hue_order = [i for i in ("RW", "MW", "STN") if i in set(part["init_label"])]
            sns.barplot(data=part, x=by, y=measure, hue="init_label", hue_order=hue_order,
                        order=order, palette=pal, errorbar=None, alpha=0.6, ax=ax)
            sns.stripplot(data=part, x=by, y=measure, hue="init_label", hue_order=hue_order,
                          order=order, palette=pal, dodge=True, size=4, ax=ax, legend=False,
                          edgecolor="k", linewidth=0.5)
            ax.legend(title="init", fontsize=8)
        ax.set_title(f"{regime} (" + ("only the compressed layer trains" if regime == "FM"
                                       else "every layer trains") + ")", fontsize=10)
        ax.set_xlabel("data set" if by == "dataset" else "compressed block")
        ax.set_ylabel(_MEASURE_LABEL.get(measure, measure), fontsize=8)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"Fig. 4: convergence after compression {tag}", fontsize=11)
    return fig


def plot_activation_maps(acts, tag=""):
    """The paper's Fig. 3 from exported arrays: one fixed test image and the first block-1 maps per model.

    Rows: Base, FM-STN, TM-STN, TM-RW (block 1 compressed); one colour scale for the
    whole figure, so brightness compares across models and filters.

    Args:
        acts: ``Results.activations`` (``fig3_activations.npz`` as a dict).

    Returns:
        the Figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np
    a = np.asarray(acts["activations"], dtype=np.float32)
    labels = [str(x) for x in acts["labels"]]
    n_models, n = a.shape[:2]
    fig, axes = plt.subplots(n_models, n + 1, figsize=(1.25 * (n + 1), 1.35 * n_models + 0.6),
                             squeeze=False, constrained_layout=True)
    img = np.asarray(acts["image"]).transpose(1, 2, 0)
    vmax = float(a.max()) or 1.0
    for r in range(n_models):
        axes[r, 0].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray")
        axes[r, 0].set_ylabel(labels[r], fontsize=9)
        for f in range(n):
            axes[r, f + 1].imshow(a[r, f], cmap="viridis", vmin=0, vmax=vmax)
            if r == 0:
                axes[r, f + 1].set_title(f"filter {f}", fontsize=8)
    axes[0, 0].set_title("input", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Fig. 3: block-1 activations, {acts['dataset']} test image {acts['image_index']} "
                 f"({acts['image_class']}), block 1 compressed {tag}", fontsize=10)
    return fig


def plot_curve_grid(metrics, runs, dataset, tag="", y="test_acc"):
    """Learning curves of every compressed network of a data set: blocks as rows, FM/TM as columns.

    Lines: one per initialiser (mean over seeds, band: 95% CI with >= 3 seeds); the
    dashed line is the base's max test accuracy. The explorer's static view.

    Args:
        metrics, runs: ``Results.metrics`` and ``Results.runs``.
        dataset: which data set.
        y: ``test_acc``, ``train_acc``, ``test_loss`` or ``train_loss``.

    Returns:
        the Figure.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator
    m = metrics[(metrics["dataset"] == dataset) & (metrics["block"] > 0)].copy()
    if m.empty:
        raise ValueError(f"no compressed {dataset} networks in the metrics")
    m["init_label"] = m["init"].map(_INIT_LABEL)
    pal = dict(zip(("RW", "MW", "STN"), sns.color_palette("tab10", 3)))
    base = runs[(runs["dataset"] == dataset) & is_base(runs)]["max_test_acc"]
    fig, axes = plt.subplots(5, 2, figsize=(9, 11), sharex=True, sharey=True, constrained_layout=True)
    n_seeds = m["seed"].nunique()
    for (r, block), (c, regime) in ((rb, cr) for rb in enumerate(range(1, 6))
                                    for cr in enumerate(("frozen", "thawed"))):
        ax = axes[r, c]
        part = m[(m["block"] == block) & (m["regime"] == regime)]
        if len(part):
            sns.lineplot(data=part, x="epoch", y=y, hue="init_label", hue_order=["RW", "MW", "STN"],
                         palette=pal, marker="o", errorbar=("ci", 95) if n_seeds >= 3 else None,
                         ax=ax, legend=(r == 0 and c == 1))
            if ax.get_legend() is not None:
                ax.get_legend().set_title("init")
        else:
            ax.text(0.5, 0.5, "not run yet", ha="center", va="center", transform=ax.transAxes, color="0.5")
        if len(base) and y.endswith("acc"):
            ax.axhline(base.mean(), ls="--", c="k", lw=1)
        ax.set_title(f"block {block}, {_REGIME_LABEL[regime]}", fontsize=9)
        ax.set_ylabel(y.replace("_", " "))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, m["epoch"].max() + 0.5)  # a 1-epoch child still gets a readable axis
    fig.suptitle(f"{dataset}: {y.replace('_', ' ')} per epoch after compression "
                 f"(dashed: base) {tag}", fontsize=10)
    return fig


def plot_run_curves(metrics, runs, dataset, block, init=None, regime=None, tag="", axes=None):
    """Train and test accuracy and loss per epoch of one config (every seed), with the base's best.

    The explorer's per-selection view, from the exported metrics (no run folder needed).

    Returns:
        the Figure.
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator
    sel = (metrics["dataset"] == dataset) & (metrics["block"] == block)
    if block:
        sel &= (metrics["init"] == init) & (metrics["regime"] == regime)
    m = metrics[sel]
    name = "base" if not block else f"b{block} {_REGIME_LABEL.get(regime, regime)}-{_INIT_LABEL.get(init, init)}"
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    fig = axes[0].figure
    if m.empty:
        for ax in axes:
            ax.text(0.5, 0.5, f"{dataset} {name}: not in these results", ha="center", transform=ax.transAxes)
        return fig
    long = pd.concat([m.assign(split=s, accuracy=m[f"{s}_acc"], loss=m[f"{s}_loss"])
                      for s in ("train", "test")])
    for ax, y in zip(axes, ("accuracy", "loss")):
        sns.lineplot(data=long, x="epoch", y=y, hue="split", style="seed" if m["seed"].nunique() > 1 else None,
                     marker="o", ax=ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, m["epoch"].max() + 0.5)  # a 1-epoch child still gets a readable axis
    base = runs[(runs["dataset"] == dataset) & is_base(runs)]["max_test_acc"]
    if block and len(base):
        axes[0].axhline(base.mean(), ls="--", c="k", lw=1, label="base (max test)")
        axes[0].legend(fontsize=8)
    fig.suptitle(f"{dataset} {name}: learning curves {tag}", fontsize=10)
    return fig


def plot_claim_points(df, x, y, hue=None, ref=0.0, title="", ylabel=None, ax=None, scale=100.0,
                      order=None, hue_order=None):
    """Per-network points and their group means (95% CI with >= 3 points) against a reference line.

    The claims chapter's view of each test's raw numbers (differences in accuracy
    points, or epochs).

    Args:
        df: a tidy table (``triage.report.margins``, ``regime_gaps``, ``convergence_diffs``).
        x, y, hue: its columns; ``init`` and ``regime`` are shown as the paper's labels
            (RW/MW/STN, FM/TM) in the paper's order, with the colours of the other figures.
        ref: the line a claim compares with (0: no difference), in ``y``'s unit.
        scale: multiplier of ``y`` (100: fractions to points).

    Returns:
        the Axes.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.4), constrained_layout=True)
    d = df.assign(_y=df[y] * scale)
    palette = None
    for col, labels in (("init", _INIT_LABEL), ("regime", _REGIME_LABEL)):
        if col in (x, hue):
            d[col] = d[col].map(labels)
            present = [v for v in labels.values() if v in set(d[col])]
            if col == x:
                order = order or present
            else:
                hue_order = hue_order or present
                if col == "init":
                    palette = dict(zip(("RW", "MW", "STN"), sns.color_palette("tab10", 3)))
    if hue and hue not in ("init", "regime") and d[hue].dtype.kind in "if":
        # numeric levels (blocks, seeds) as categories, in order, on a discrete ramp
        levels = sorted(d[hue].unique())
        d[hue] = d[hue].map(lambda v: f"{v:g}")
        hue_order = [f"{v:g}" for v in (hue_order or levels)]
        palette = dict(zip(hue_order, sns.color_palette("viridis", len(hue_order))))
    counts = d.groupby([x] + ([hue] if hue else []))["_y"].count()
    n_hue = len(hue_order) if hue_order else (d[hue].nunique() if hue else 1)
    sns.stripplot(data=d, x=x, y="_y", hue=hue, order=order, hue_order=hue_order, palette=palette,
                  dodge=bool(hue), alpha=0.5, size=4, jitter=0.05, ax=ax, legend=False)
    sns.pointplot(data=d, x=x, y="_y", hue=hue, order=order, hue_order=hue_order, palette=palette,
                  dodge=(0.8 - 0.8 / n_hue) if hue else False, linestyle="none", markers="D",
                  markersize=6, errorbar=("ci", 95) if len(counts) and counts.min() >= 3 else None, ax=ax)
    if hue and ax.get_legend() is not None:
        ax.legend(title=hue, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.axhline(ref * scale, ls="--", c="k", lw=1)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title, fontsize=10)
    return ax
