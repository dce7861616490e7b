"""Figures 1-7 of Lorieul et al., "Static and Dynamic Autopsy of Deep Networks".

Reason to change: how the autopsy paper's figures look. They are drawn from the tidy tables
of :mod:`triage.autopsy`; a table with a ``dataset`` column gets one colour per data set.
Used by book/autopsy.ipynb and the explorer's autopsy tab. Every figure names the profile
(smoke/cpu/paper) that produced it.
"""
from __future__ import annotations

from .plots import _ax, _profile_tag


def short_layer(name):
    """``features.block3.conv2`` -> ``b3.conv2``, ``classifier.0`` -> ``cls.0`` (axis labels)."""
    return str(name).replace("features.block", "b").replace("classifier.", "cls.")


def _hue(df):
    return "dataset" if "dataset" in df.columns and df["dataset"].nunique() > 1 else None


def plot_weight_distribution(hist, ax=None, profile=None, title="Parameter values", logy=False):
    """Density of parameter values per group (Fig. 1: conv vs fc; Fig. 3: fc6..fc8).

    Args:
        hist: ``triage.autopsy.weight_histogram`` output (optionally with a ``dataset`` column,
            which then splits the lines by style).
        ax: matplotlib Axes; None makes a figure.
        profile: smoke/cpu/paper, written in the title.
        logy: log-scale density (shows the tails).

    Returns:
        the Axes.
    """
    import seaborn as sns
    ax = _ax(ax)
    d = hist.assign(group=hist["group"].map(short_layer))
    style = "dataset" if "dataset" in d.columns and d["dataset"].nunique() > 1 else None
    sns.lineplot(data=d, x="centre", y="density", hue="group", style=style, ax=ax, lw=1.2)
    ax.set_xlabel("parameter value")
    ax.set_ylabel("density")
    if logy:
        ax.set_yscale("log")
    ax.set_title(title + _profile_tag(profile), fontsize=10)
    return ax


def plot_pca_curves(pca, ax=None, profile=None, x="k_frac"):
    """Cumulative explained variance alpha_k of each conv layer's filters (Fig. 2).

    Args:
        pca: ``triage.autopsy.filter_pca`` output (with ``dataset`` column: one panel
            per data set is up to the caller; here all lines share one Axes).
        x: ``'k_frac'`` (components kept / components, comparable across layers) or ``'k'``.
    """
    import seaborn as sns
    ax = _ax(ax)
    d = pca.assign(layer=pca["layer"].map(short_layer))
    style = "dataset" if "dataset" in d.columns and d["dataset"].nunique() > 1 else None
    sns.lineplot(data=d, x=x, y="alpha", hue="layer", style=style, ax=ax, palette="viridis", lw=1.2)
    ax.set_xlabel("share of components kept" if x == "k_frac" else "components kept k")
    ax.set_ylabel(r"cumulative variance $\alpha_k$")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Filter PCA per conv layer" + _profile_tag(profile), fontsize=10)
    return ax


def plot_sparsity(sparsity, ax=None, profile=None):
    """Share of exact zeros after each ReLU, and of the softmax output (Fig. 4).

    Args:
        sparsity: ``triage.autopsy.output_sparsity`` output (index: module), optionally
            concatenated over data sets with a ``dataset`` column.
    """
    import seaborn as sns
    ax = _ax(ax, figsize=(7, 3.4))
    d = sparsity.reset_index()
    d["layer"] = [("output" if m == "output" else short_layer(a)) for m, a in zip(d["module"], d["after"])]
    sns.barplot(data=d, x="layer", y="sparsity", hue=_hue(d), ax=ax)
    ax.set_xlabel("layer (ReLU after it)")
    ax.set_ylabel("share of zeros")
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", rotation=60, labelsize=8)
    ax.set_title("Output sparsity" + _profile_tag(profile), fontsize=10)
    return ax


def plot_noise(noise, ax=None, profile=None):
    """Top-1 error vs noise strength, mean and spread over draws (Fig. 5).

    Args:
        noise: ``triage.robustness.noise_sweep`` output; only rows with ``target == 'all'``.
    """
    import seaborn as sns
    ax = _ax(ax)
    d = noise[noise["target"] == "all"].assign(strength=lambda t: 100 * t["p"], error_pct=lambda t: 100 * t["error"])
    sns.lineplot(data=d, x="strength", y="error_pct", hue=_hue(d), marker="o", errorbar=("pi", 100), ax=ax)
    ax.set_xlabel("noise std, % of each layer's std")
    ax.set_ylabel("top-1 error (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Gaussian weight noise, all layers (band: min-max over draws)" + _profile_tag(profile),
                 fontsize=10)
    return ax


def plot_layer_noise(noise, base_acc, ax=None, profile=None):
    """Accuracy lost when one layer at a time gets noise: layers x strengths heatmap.

    The paper's future work (Sec. III-C): which layers are more sensitive.

    Args:
        noise: ``noise_sweep(..., per_layer=True)`` output (one data set).
        base_acc: accuracy of the unmodified model.
    """
    import seaborn as sns
    ax = _ax(ax, figsize=(6.5, 4))
    d = noise[noise["target"] != "all"]
    drop = (100 * (base_acc - d.groupby(["target", "p"], sort=False)["acc"].mean())).unstack("p")
    drop.index = [short_layer(i) for i in drop.index]
    drop.columns = [f"{100 * c:g}%" for c in drop.columns]
    sns.heatmap(drop, annot=True, fmt=".0f", cmap="rocket_r", vmin=0, ax=ax,
                cbar_kws={"label": "accuracy lost (points)"})
    ax.set_xlabel("noise std, % of the layer's std")
    ax.set_ylabel("noised layer")
    ax.set_title("Noise in one layer at a time" + _profile_tag(profile), fontsize=10)
    return ax


def plot_kmeans(kmeans, base_error=None, ax=None, profile=None, x="k", title=None, style=None):
    """Top-1 error vs codebook size K (Fig. 6) or vs filter clusters (Fig. 7).

    Args:
        kmeans: ``kmeans_sweep`` output (x='k') or ``filter_kmeans_sweep`` output
            (x='clusters'), optionally with a ``dataset`` column.
        base_error: error of the unquantised network (a float, or a dict dataset -> error),
            drawn as dashed lines.
        style: a column drawn as line styles (e.g. ``'bn'`` of filter_kmeans_sweep).
    """
    import seaborn as sns
    ax = _ax(ax)
    d = kmeans.assign(error_pct=100 * kmeans["error"])
    hue = _hue(d)
    sns.lineplot(data=d, x=x, y="error_pct", hue=hue, style=style, marker="o", ax=ax)
    ax.set_xscale("log", base=2)
    if base_error is not None:
        items = base_error.items() if isinstance(base_error, dict) else [(None, base_error)]
        # seaborn gives hue levels the palette's colours in order of appearance
        colours = dict(zip(dict.fromkeys(d["dataset"]), sns.color_palette())) if hue else {}
        for name, err in items:
            ax.axhline(100 * err, ls="--", lw=1, c=colours.get(name, "0.4"),
                       label=f"{name + ' ' if name else ''}unquantised")
        ax.legend(fontsize=8)
    ax.set_xlabel("K (values per layer)" if x == "k" else "clusters per conv layer")
    ax.set_ylabel("top-1 error (%)")
    ax.set_ylim(0, 100)
    default = "Scalar k-means weight sharing" if x == "k" else "Filter k-means (conv layers)"
    ax.set_title((title or default) + _profile_tag(profile), fontsize=10)
    return ax
