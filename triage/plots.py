"""Plots of triage (matplotlib/seaborn); each area of the project has its own section.

Every figure names the profile (smoke/cpu/paper) that produced it.
"""
from __future__ import annotations


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


def block1_activations(model, x):
    """Post-ReLU output of block 1's last conv for inputs ``x`` (N, C, H, W) -> (N, F, H, W).

    For the base that is ReLU(BN(conv2)) of block 1; for a child whose block 1 was
    compressed, the ReLU after the single compressed conv (paper Sec. 4, Fig. 3: "at
    the output of the ReLU activation layer after the compressed layer ... and after
    Conv 2 of Block 1 on the baseline model"). Evaluated in eval mode, without
    gradients; the forward hook is removed also when the forward fails.

    Example:
        >>> acts = block1_activations(triage.vgg16_bn(10, width=0.25), torch.randn(1, 3, 32, 32))
        >>> acts.shape
        torch.Size([1, 16, 32, 32])
    """
    import torch
    from torch import nn
    block = model.block(1)
    relus = [m for m in block.children() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError("block 1 of this model has no ReLU")
    captured = []
    handle = relus[-1].register_forward_hook(lambda mod, inp, out: captured.append(out.detach().clone()))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            block(x.to(next(model.parameters()).device))  # the rest of the network is not needed
    finally:
        handle.remove()
        model.train(was_training)
    return captured[0]


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


# ---- autopsy ----
# Figures 1-7 of Lorieul et al., "Static and Dynamic Autopsy of Deep Networks", drawn from
# the tidy tables of triage.autopsy. A table with a ``dataset`` column gets one colour per
# data set. Used by book/autopsy.ipynb.

def short_layer(name):
    """``features.block3.conv2`` -> ``b3.conv2``, ``classifier.0`` -> ``cls.0`` (axis labels)."""
    return str(name).replace("features.block", "b").replace("classifier.", "cls.")


def _profile_tag(profile):
    return f" [profile: {profile}]" if profile else ""


def _ax(ax, figsize=(5.5, 3.4)):
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    return ax


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
        noise: ``triage.autopsy.noise_sweep`` output; only rows with ``target == 'all'``.
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


# ---- critical paths ----
# Figures of "Distilling Critical Paths in Convolutional Neural Networks" (Fig. 1b, Fig. 2,
# Table 1 and the reserved-ratio trade-off), drawn from triage.critical's objects and tables.
# Used by book/critical_paths.ipynb.

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
        summary: ``triage.critical.summarise_sweep`` output.
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
