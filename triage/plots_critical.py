"""Figures of "Distilling Critical Paths in Convolutional Neural Networks".

Reason to change: how the critical-paths paper's figures look (Fig. 1b, Fig. 2, Table 1 and
the reserved-ratio trade-off), drawn from :mod:`triage.critical`'s objects and tables.
Used by book/critical_paths.ipynb and the explorer's critical-paths tab. Every figure names
the profile (smoke/cpu/paper) that produced it.
"""
from __future__ import annotations

from .plots import _ax, _profile_tag


def plot_class_maps(maps, layer, classes=(), profile=None, axes=None, title=None):
    """Fig. 2a: mean absolute activation and contribution index maps (classes x filters) of a layer.

    Each map has its own colour scale; the rows of ``classes`` are outlined.

    Args:
        maps: ``triage.critical.ClassMaps``.
        layer: a layer of the maps (e.g. ``'Conv5_1'``).
        classes: class names or indices to outline (the paper shows cat and dog).
        profile: smoke/cpu/paper, written in the title.
        axes: two Axes (activation, contribution); None makes a figure.
        title: figure title (default names the layer).

    Returns:
        the Figure.

    Example:
        >>> plot_class_maps(maps, "Conv5_1", ["cat", "dog"], profile="smoke")   # doctest: +SKIP
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from .critical import paper_name
    name = maps.layer(layer)
    rows = [maps.class_index(c) for c in classes]
    if axes is None:
        n_f = maps.activation[name].shape[1]
        fig, axes = plt.subplots(2, 1, figsize=(min(14, 4 + n_f / 16), 5.6), constrained_layout=True)
    fig = axes[0].figure
    for ax, (what, t) in zip(axes, (("mean absolute activation", maps.activation[name]),
                                    ("contribution index", maps.contribution[name]))):
        im = ax.imshow(t.numpy(), aspect="auto", cmap="magma", interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
        ax.set_yticks(range(len(maps.classes)), maps.classes, fontsize=7)
        ax.set_xlabel("filter", fontsize=8)
        ax.set_title(what, fontsize=9)
        for r in rows:
            ax.add_patch(Rectangle((-0.5, r - 0.5), t.shape[1], 1, fill=False, ec="cyan", lw=1.5))
    fig.suptitle((title or f"{paper_name(name)}: per-class maps") + _profile_tag(profile), fontsize=10)
    return fig


def plot_top_filter_contributions(maps, layer, cls, k=3, ax=None, profile=None):
    """Fig. 2's bars: contribution index of class ``cls``'s top-k filters (by score) to every class.

    Returns:
        the Axes.
    """
    import pandas as pd
    import seaborn as sns
    from .critical import paper_name, top_filters
    t = top_filters(maps, layer, cls, k)
    long = pd.DataFrame([{"filter": f"filter {int(r['filter'])}", "class": c,
                          "contribution index": r[f"contribution_{c}"]}
                         for _, r in t.iterrows() for c in maps.classes])
    ax = _ax(ax, figsize=(7, 3))
    sns.barplot(data=long, x="class", y="contribution index", hue="filter", ax=ax)
    ax.tick_params(axis="x", rotation=45, labelsize=7)
    ax.set_xlabel("")
    name = maps.classes[maps.class_index(cls)]
    ax.set_title(f"{paper_name(maps.layer(layer))}: top-{k} filters of '{name}'" + _profile_tag(profile),
                 fontsize=10)
    return ax


def plot_layer_std(diff, ax=None, profile=None):
    """Fig. 1b: STD over classes of the per-class mean activation, averaged over each layer's filters.

    The relative STD (each filter's STD divided by its mean over classes) is drawn on a second
    axis, dashed: it removes the layers' different activation scales.

    Args:
        diff: ``triage.critical.layer_differentiation`` output.

    Returns:
        the Axes.
    """
    ax = _ax(ax, figsize=(7, 3.2))
    x = range(len(diff))
    ax.plot(x, diff["std"], "o-", color="C0", label="STD")
    ax.set_ylabel("mean STD across classes", color="C0")
    ax2 = ax.twinx()
    ax2.plot(x, diff["rel_std"], "s--", color="C1", label="relative STD")
    ax2.set_ylabel("mean STD / mean", color="C1")
    ax.set_xticks(list(x), diff["paper_name"], rotation=45, fontsize=7)
    ax.set_title("Layer differentiation (per-class mean activation)" + _profile_tag(profile), fontsize=10)
    return ax


def plot_am_grid(images, titles=None, ncols=None, profile=None, title="Activation maximisation"):
    """A grid of activation-maximisation images (``AMResult.images``, (B, C, H, W) in [0, 1]).

    One-channel images are drawn in grey.

    Returns:
        the Figure.
    """
    import math
    import matplotlib.pyplot as plt
    n = len(images)
    if n == 0:
        raise ValueError("no images to draw")
    ncols = ncols or min(n, 6)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.7 * ncols, 1.9 * nrows), squeeze=False,
                             constrained_layout=True)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        img = images[i].detach().cpu().permute(1, 2, 0).numpy()
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    fig.suptitle(title + _profile_tag(profile), fontsize=10)
    return fig


def plot_ratio_sweep(summary, ax=None, profile=None, paper=True):
    """Mean one-vs-all TP, FP, balanced accuracy and AUC against the reserved ratio, with model size.

    Args:
        summary: ``triage.critical_distill.summarise_sweep`` output.
        paper: mark the paper's Table-1 averages (TP 98.6%, FP 11.0% at ratio ~0.1).

    Returns:
        the Axes.
    """
    from .critical import PAPER_MEAN_FP, PAPER_MEAN_TP, PAPER_RATIO
    ax = _ax(ax, figsize=(7, 4.2))
    for col, style, label in (("tp", "o-", "TP rate"), ("fp", "s-", "FP rate"),
                              ("balanced", "^-", "balanced accuracy"), ("auc", "d-", "ROC AUC of z_c")):
        if col in summary.columns:
            ax.plot(summary["ratio"], summary[col], style, label=label)
    if paper:
        ax.plot([PAPER_RATIO], [PAPER_MEAN_TP], "*", color="C0", ms=12, mec="k", label="paper TP")
        ax.plot([PAPER_RATIO], [PAPER_MEAN_FP], "*", color="C1", ms=12, mec="k", label="paper FP")
    ax.set_xscale("log")
    ax.set_xlabel("reserved ratio (share of filters kept in the last six conv layers)")
    ax.set_ylabel("rate (mean over classes)")
    ax.set_ylim(-0.02, 1.02)
    ax2 = ax.twinx()
    ax2.plot(summary["ratio"], summary["mb"], "k:", label="size (MB)")
    ax2.set_ylabel("model size (MB)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    ax.set_title("Critical-path distillation: reserved ratio" + _profile_tag(profile), fontsize=10)
    return ax
