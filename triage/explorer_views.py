"""What the explorer shows of one stored network, without widgets: lookup, stored data, figures.

Reason to change: which stored results a network's view reads and how its figures look
(learning curves, its place in Fig. 2, block-1 activations beside its base's, the panels of
its stored critical paths and autopsy) and what its summaries list. Pure
functions of ``report.load``'s results and a runs-table row; :mod:`triage.explorer` wires
them to widgets. Nothing is trained: block-1 maps are computed only from stored weights.

Example:
    >>> from triage import explorer_views, report
    >>> res = report.load("cpu")                                              # doctest: +SKIP
    >>> row = explorer_views.find_network(res, "cifar10", 1, "stn", "thawed")  # doctest: +SKIP
    >>> explorer_views.curves_figure(res, row)                                # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
from pathlib import Path

from .vocabulary import LABELS, is_base

__all__ = ["headline", "find_network", "find_or_first", "network_label", "network_summary", "block1_maps",
           "stored_analysis", "am_of", "autopsy_summary", "curves_figure", "fig2_figure", "activations_figure",
           "critical_figure", "autopsy_figure"]

N_FILTERS = 10            # Fig. 3 shows the first ten block-1 filters
_LABEL = LABELS      # random -> RW, thawed -> TM, ...
_SPLIT_COLOURS = {"train": "C0", "val": "C2", "test": "C3"}


# ----------------------------------------------------------------------------- stored results

def headline(runs) -> str:
    """The accuracy column a network is judged by: results format 2's ``test_acc_at_best_val``, else
    format 1's ``max_test_acc`` (the paper's Fig. 2 measure)."""
    return "test_acc_at_best_val" if "test_acc_at_best_val" in runs.columns else "max_test_acc"


def _is_control(runs):
    return (runs["block"] == 0) & ~is_base(runs)   # one definition of base and control (vocabulary)


def find_network(results, dataset: str, block, init=None, regime=None, seed: int = 0):
    """The stored row of one network (``results.runs``), or ``LookupError`` saying what is missing.

    Args:
        results: ``triage.report.load`` output.
        block: 0 (the base), 1..5, or ``"control"`` (the base trained on with the children's schedule).
        init, regime: the child's initialiser and regime (ignored for the base and the control).

    Example:
        >>> find_network(report.load("cpu"), "cifar10", 3, "stn", "thawed", seed=1)["key"]   # doctest: +SKIP
    """
    runs = results.runs
    part = runs[runs["dataset"] == dataset]
    if part.empty:
        have = ", ".join(results.datasets) or "none"
        raise LookupError(f"No {dataset} results in the {results.profile} results (stored: {have}). Train "
                          f"them with `python -m triage grid --dataset {dataset} --profile {results.profile}`.")
    if int(seed) not in set(int(s) for s in part["seed"]):
        seeds = ", ".join(str(int(s)) for s in sorted(part["seed"].unique()))
        raise LookupError(f"No {dataset} network of seed {seed} is stored (seeds: {seeds}).")
    part = part[part["seed"] == int(seed)]
    ctrl = _is_control(part)
    if block == "control":
        sel = part[ctrl]
    elif int(block) == 0:
        sel = part[is_base(part)]
    else:
        sel = part[(part["block"] == int(block)) & (part["init"] == init) & (part["regime"] == regime)]
    if sel.empty:
        name = _name(block, init, regime)
        why = ("the control is trained only by results format 2 profiles (e.g. campaign)" if block == "control"
               else f"{len(part)} {dataset} networks of seed {seed} are stored: the grid is partial")
        raise LookupError(f"{dataset} {name} (seed {seed}) is not in the {results.profile} results; {why}.")
    return sel.iloc[0]


def find_or_first(results, dataset: str, block, init=None, regime=None, seed: int = 0):
    """:func:`find_network`, or, where that network is not stored (a partial grid), the first
    compressed network of the data set and seed that is (else its base), with a note saying so.

    Returns:
        (row, note): ``note`` is "" when the asked-for network was found.
    """
    try:
        return find_network(results, dataset, block, init, regime, seed), ""
    except LookupError as e:
        runs = results.runs
        part = runs[(runs["dataset"] == dataset) & (runs["seed"] == int(seed))]
        if part.empty:
            raise
        kids = part[part["block"] > 0]
        row = (kids if len(kids) else part).iloc[0]
        return row, f"{e} Showing {row['name']} instead."


def _name(block, init, regime) -> str:
    if block == "control":
        return "control"
    if not int(block):
        return "base"
    return f"b{int(block)} {_LABEL[regime]}-{_LABEL[init]}"


def network_label(row) -> str:
    """``cifar10 b1 TM-STN, seed 0`` (for titles and messages)."""
    block = "control" if row["name"] == "control" else row["block"]
    return f"{row['dataset']} {_name(block, row['init'], row['regime'])}, seed {int(row['seed'])}"


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def network_summary(results, row) -> dict:
    """What the explorer lists of one network: label, headline accuracy, the gap to its base and
    the stored training facts (best epoch, stop reason, CKA, ...), as display strings."""
    hl = headline(results.runs)
    base = _same(results.runs, row, block=0)
    base = base[~_is_control(base)]
    out = {"network": f"{network_label(row)} ({row['scheme']}, key {row['key']})",
           hl.replace("_", " "): _fmt(row[hl])}
    if len(base) and row["key"] != base["key"].iloc[0]:
        out["vs its base"] = f"{100 * (row[hl] - base[hl].iloc[0]):+.2f} points"
    for col, label in (("best_val_acc", "best validation accuracy"), ("best_epoch", "best epoch"),
                       ("epoch_of_max", "epoch of max test accuracy"), ("epochs_trained", "epochs trained"),
                       ("epochs", "epochs (cap)"), ("stop_reason", "stopped"),
                       ("cka_block1", "block-1 CKA with the base"),
                       ("dead_block1", "dead block-1 channels"),
                       ("majority_frac", "share of the most-predicted class"),
                       ("train_seconds", "training seconds"), ("train_cpu_seconds", "training CPU seconds"),
                       ("device", "device"),
                       ("autocast", "arithmetic"), ("hardware", "hardware")):
        if col in row.index and _fmt(row[col]) != "-":
            out[label] = _fmt(row[col])
    if "dead_compressed" in row.index and row["dead_compressed"] == row["dead_compressed"]:
        of = (f" of {int(row['compressed_channels'])}" if "compressed_channels" in row.index
              and row["compressed_channels"] == row["compressed_channels"] else "")
        out[f"dead channels of the compressed block {int(row['block'])}"] = f"{int(row['dead_compressed'])}{of}"
    return out


def _run(row) -> str:
    return f"{row['name']}-{row['key']}"


def _analyses_root() -> Path:
    from .report import default_results_root
    return default_results_root().parent


def _config(row, results=None):
    """The ``RunConfig`` of a stored network: its exported config.json, else rebuilt from its row
    (checked against the stored key); None when neither gives the stored key."""
    from .experiments import RunConfig
    folder = _export_dir(results, row) if results is not None else None
    if folder is not None and (folder / "config.json").is_file():
        return RunConfig(**json.loads((folder / "config.json").read_text())["config"])
    kw = {}
    for f in dataclasses.fields(RunConfig):
        if f.name not in row.index:
            continue
        v = row[f.name]
        v = v.item() if hasattr(v, "item") else v
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            t = str(f.type)  # CSV round trip: ints come back as floats where a column has NaNs
            v = bool(v) if t.startswith("bool") else int(v) if t.startswith("int") else \
                float(v) if t.startswith("float") else str(v)
        else:
            v = None
        kw[f.name] = v
    try:
        cfg = RunConfig(**kw)
    except (TypeError, ValueError):
        return None
    return cfg if cfg.key() == row["key"] else None


def _export_dir(results, row) -> Path | None:
    """``results/triage/<profile>/runs/<dataset>/<name>-<key>/`` (results format 2), if exported."""
    d = Path(results.path) / "runs" / row["dataset"] / _run(row) if results.path is not None else None
    return d if d is not None and d.is_dir() else None


def _weights_dir(results, row, runs_root=None) -> Path | None:
    """The folder holding the network's weights: its run-store folder, or its export (bases, controls)."""
    from .experiments import default_runs_root
    root = Path(runs_root) if runs_root is not None else default_runs_root()
    for d in (root / results.profile / row["dataset"] / _run(row), _export_dir(results, row)):
        if d is not None and (d / "weights.pt").is_file() and (d / "config.json").is_file():
            return d
    return None


def block1_maps(results, row, runs_root=None, data_root=None):
    """The first ten block-1 activation maps of a network on the fixed Fig. 3 test image.

    Read, in order, from its exported ``block1.npz`` (results format 2), from the
    exported Fig. 3 arrays (format 1: Base, FM-STN, TM-STN and TM-RW of block 1),
    or computed from its weights when they are present.

    Returns:
        ((F, H, W) float32 array, where it came from), or (None, why not).
    """
    import numpy as np
    export = _export_dir(results, row)
    if export is not None and (export / "block1.npz").is_file():
        with np.load(export / "block1.npz", allow_pickle=False) as z:
            return z["maps"][:N_FILTERS].astype(np.float32), "exported block1.npz"
    acts = results.activations
    if acts is not None and row["key"] in [str(k) for k in acts["keys"]]:
        i = [str(k) for k in acts["keys"]].index(row["key"])
        return np.asarray(acts["activations"][i], dtype=np.float32), "exported Fig. 3 arrays"
    wdir = _weights_dir(results, row, runs_root)
    if wdir is None:
        return None, (f"the block-1 maps of {network_label(row)} are not stored (results format 1 exports "
                      "them for Fig. 3's four networks only) and its weights are not in the run store")
    from .experiments import load_model
    from .plots import fixed_test_image
    from .similarity import block1_activations
    model = load_model(wdir, "cpu")
    x, _ = fixed_test_image(row["dataset"], _image_index(results), data_root, int(row["resolution"]))
    return block1_activations(model, x)[0, :N_FILTERS].float().numpy(), f"computed from the weights in {wdir}"


def _image_index(results) -> int:
    acts = results.activations
    return int(acts["image_index"]) if acts is not None and "image_index" in acts else 0


def _input_image(results, dataset, data_root=None):
    """The fixed test image (H, W[, C]) uint8, or None where neither exported nor on disk."""
    import numpy as np
    acts = results.activations
    if acts is not None and str(acts.get("dataset")) == dataset:
        img = np.asarray(acts["image"])
    else:
        from .data import DataError
        from .plots import fixed_test_image
        try:
            img = fixed_test_image(dataset, _image_index(results), data_root)[1].numpy()
        except (DataError, OSError, ValueError):
            return None
    img = img.transpose(1, 2, 0)
    return img[..., 0] if img.shape[-1] == 1 else img


def stored_analysis(kind: str, results, row, root=None) -> dict | None:
    """The stored autopsy or critical-paths results of one network, or None.

    Reads the newest complete entry below ``<root>/<kind>/<profile>/<dataset>/<name>-<key>/``
    of the result store that ``triage.studies.autopsy_run`` / ``triage.studies.critical_run``
    wrote (:func:`triage.studies.read_analysis`): one DataFrame per CSV table, ``meta`` and,
    for critical paths, ``maps`` (``ClassMaps``). Never computes anything.

    Args:
        kind: ``"autopsy"`` or ``"critical"``.
        root: the results folder (default: ``<checkout>/results`` or ``$TRIAGE_RESULTS``).
    """
    from .store import ResultStore
    from .studies import read_analysis
    if kind not in ("autopsy", "critical"):
        raise ValueError(f"kind must be 'autopsy' or 'critical', got {kind!r}")
    found = ResultStore(Path(root or _analyses_root()) / kind).entries(
        (results.profile, row["dataset"], _run(row)), analysis=kind)
    return read_analysis(found[0]) if found else None


def _stored_runs(kind: str, results, dataset, root=None) -> list[str]:
    """Labels of the networks of ``dataset`` that have stored ``kind`` results."""
    from .store import ResultStore
    found = ResultStore(Path(root or _analyses_root()) / kind).entries((results.profile, dataset, "*"), analysis=kind)
    keys = {e.spec["run"].rsplit("-", 1)[-1] for e in found}
    runs = results.runs
    return [network_label(r) for _, r in runs[runs["key"].isin(keys)].iterrows()]


def am_of(am, cls):
    """The activation-maximisation images of ``cls`` (its top filters', then its logit's) in a stored
    ``am`` record that may hold other classes too: (images, titles)."""
    keep = [i for i, t in enumerate(am["titles"]) if t.startswith(f"{cls}:") or t == f"logit '{cls}'"]
    return am["images"][keep], [am["titles"][i] for i in keep]


def autopsy_summary(data, layer) -> dict:
    """One layer's autopsy facts (``stored_analysis("autopsy", ...)``) as display strings."""
    st = data["stats_layer"].set_index("layer").loc[layer]
    sp = data["sparsity"][data["sparsity"]["after"] == layer]
    pca = data["pca"][data["pca"]["layer"] == layer]
    info = {"kind": st["kind"], "parameters": int(st["n"]), "std": f"{st['std']:.3g}",
            "skewness": f"{st['skewness']:.2f}", "excess kurtosis": f"{st['kurtosis']:.2f}",
            "zeros after its ReLU": f"{sp['sparsity'].iloc[0]:.1%}" if len(sp) else "-"}
    if len(pca):
        k90 = pca[pca["alpha"] >= 0.9]
        info["components for 90% of the variance"] = (f"{int(k90['k'].iloc[0])} of {int(pca['components'].iloc[0])}"
                                                      if len(k90) else "-")
    return info


# ----------------------------------------------------------------------------- figures

@contextlib.contextmanager
def _closing_figures():
    """Close every figure opened inside (also on error): nothing leaks to a notebook's next cell."""
    import matplotlib.pyplot as plt
    before = set(plt.get_fignums())
    try:
        yield
    finally:
        for n in set(plt.get_fignums()) - before:
            plt.close(n)


def _png(fig, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _same(runs, row, **match):
    sel = (runs["dataset"] == row["dataset"]) & (runs["seed"] == row["seed"])
    for k, v in match.items():
        sel &= runs[k] == v
    return runs[sel]


def curves_figure(results, row):
    """Accuracy and loss per epoch of one network (train, validation, test where stored).

    Against: the base's headline accuracy (dotted), the control's test curve (dashed:
    the base trained on with the children's schedule, results format 2; after the base's
    own epochs when the network is the base) and the other seeds of the same config (thin).

    Returns:
        the Figure.
    """
    import matplotlib.pyplot as plt
    m, runs, hl = results.metrics, results.runs, headline(results.runs)
    mine = m[m["key"] == row["key"]]
    if mine.empty:
        raise LookupError(f"no epochs of {network_label(row)} in metrics.csv")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    ctrl = _same(runs, row, name="control")
    is_base = row["block"] == 0 and row["name"] != "control"
    others = runs[(runs["dataset"] == row["dataset"]) & (runs["name"] == row["name"])
                  & (runs["seed"] != row["seed"])]
    for ax, what in zip(axes, ("acc", "loss")):
        for key in others["key"]:
            o = m[m["key"] == key]
            ax.plot(o["epoch"], o[f"test_{what}"], "-", color=_SPLIT_COLOURS["test"], lw=0.8, alpha=0.3)
        for split in ("train", "val", "test"):
            col = f"{split}_{what}"
            if col in mine.columns and mine[col].notna().any():
                ax.plot(mine["epoch"], mine[col], "o-", ms=3, color=_SPLIT_COLOURS[split], label=split)
        if len(ctrl) and row["name"] != "control":
            c = m[m["key"] == ctrl["key"].iloc[0]]
            shift = mine["epoch"].max() if is_base else 0
            ax.plot(c["epoch"] + shift, c[f"test_{what}"], "--", color="0.35", label="control (test)")
        ax.set_xlabel("epoch" + (" of the base" if is_base else " after compression" if row["block"] else ""))
        ax.set_ylabel("accuracy" if what == "acc" else "loss")
    base = _same(runs, row, block=0)
    base = base[~_is_control(base)]
    if not is_base and len(base):
        axes[0].axhline(base[hl].iloc[0], ls=":", c="k", lw=1.2, label=f"base ({hl.replace('_', ' ')})")
    if len(others):
        axes[0].plot([], [], color=_SPLIT_COLOURS["test"], lw=0.8, alpha=0.3, label="test, other seeds")
    axes[0].set_ylim(0, 1.02)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{network_label(row)} ({row['scheme']}): learning curves [profile: {results.profile}]",
                 fontsize=9)
    return fig


def fig2_figure(results, row, fig=None):
    """The paper's Fig. 2 for the network's data set (``plots.plot_max_accuracy``), the network circled.

    Accuracy is :func:`headline`'s column; the control's mean is drawn dotted when stored.

    Args:
        fig: a figure this function returned for the same results and data set: reused (only
            the circle moves), since Fig. 2's bootstrapped intervals take seconds to draw.

    Returns:
        the Figure.
    """
    from . import plots
    runs, hl = results.runs, headline(results.runs)
    if fig is None:
        from .results_chapter import like_with_like
        # every cell over the same seeds, as in the results chapter (a base mean over seeds that
        # have no children would not be the base those children left)
        part = like_with_like(runs, results.coverage())[0]
        part = part[part["dataset"] == row["dataset"]]
        ctrl = part[_is_control(part)]
        part = part[~_is_control(part)]
        fig = plots.plot_max_accuracy(part.assign(max_test_acc=part[hl]), results.tag)
        fig.set_size_inches(8.5, 3.6)
        if len(ctrl):
            fig.axes[0].axhline(ctrl[hl].mean(), ls=":", c="0.35", lw=1.2, label="control")
        fig.axes[0].set_ylabel(hl.replace("_", " "))
        fig.suptitle(f"Fig. 2: {hl.replace('_', ' ')} per compressed block and scheme "
                     f"[profile: {results.profile}]", fontsize=10)
    ax = fig.axes[0]
    for artist in [a for a in ax.lines if a.get_gid() == "triage-mark"]:
        artist.remove()
    y, label = row[hl], f"this network (seed {int(row['seed'])})"
    if row["block"] == 0:   # the base or the control: a line, as Fig. 2 draws the base
        ax.axhline(y, color="red", lw=2, alpha=0.7, label=label, gid="triage-mark")
    else:
        # seaborn's dodge puts hue i of n at block - 1 - 0.4 + 0.8 (i + 0.5) / n
        from .report import SCHEMES
        kids = runs[(runs["dataset"] == row["dataset"]) & (runs["block"] > 0)]
        present = [s for s in SCHEMES if s in set(kids["scheme"])]
        i, n = present.index(row["scheme"]), len(present)
        ax.plot(int(row["block"]) - 1 - 0.4 + 0.8 * (i + 0.5) / n, y, "o", ms=15, mfc="none", mec="red",
                mew=2, label=label, gid="triage-mark")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{network_label(row)}: its place in Fig. 2", fontsize=9)
    return fig


def activations_figure(results, row, runs_root=None, data_root=None):
    """Block-1 activation maps of a network (top row) and of its base (bottom row), one colour scale.

    Returns:
        (the Figure, a note on where the maps came from) or (None, why there are none).
    """
    import matplotlib.pyplot as plt
    import numpy as np
    maps, src = block1_maps(results, row, runs_root, data_root)
    if maps is None:
        return None, src
    rows, notes = [(network_label(row), maps)], [f"{network_label(row)}: {src}"]
    base = _same(results.runs, row, block=0)
    base = base[~_is_control(base)]
    if len(base) and base["key"].iloc[0] != row["key"]:
        bmaps, bsrc = block1_maps(results, base.iloc[0], runs_root, data_root)
        notes.append(f"base: {bsrc}")
        if bmaps is not None:
            rows.append(("base", bmaps))
    img = _input_image(results, row["dataset"], data_root)
    n = min(len(a) for _, a in rows)
    vmax = max(float(a[:n].max()) for _, a in rows) or 1.0
    fig, axes = plt.subplots(len(rows), n + 1, figsize=(1.1 * (n + 1), 1.25 * len(rows) + 0.5),
                             squeeze=False, constrained_layout=True)
    for r, (label, a) in enumerate(rows):
        if img is not None:
            axes[r, 0].imshow(img, cmap="gray")
        axes[r, 0].set_ylabel(label if r else "this network", fontsize=8)
        for f in range(n):
            axes[r, f + 1].imshow(np.asarray(a[f]), cmap="viridis", vmin=0, vmax=vmax)
            if r == 0:
                axes[r, f + 1].set_title(f"filter {f}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{network_label(row)}: block-1 activations, test image {_image_index(results)} "
                 f"[profile: {results.profile}]", fontsize=9)
    return fig, "; ".join(notes)


def critical_figure(data, cls, top_k: int, profile=None):
    """The top-``top_k`` filters of class ``cls`` by contribution, and the distilled network's rates
    per reserved ratio, from ``stored_analysis("critical", ...)``.

    Returns:
        the Figure.
    """
    import matplotlib.pyplot as plt
    from . import plots_critical
    maps = data["maps"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), constrained_layout=True)
    plots_critical.plot_top_filter_contributions(maps, maps.layers[0], cls, top_k, ax=axes[0], profile=profile)
    sweep = data["sweep"]
    plots_critical.plot_ratio_sweep(sweep[sweep["class_name"] == cls], ax=axes[1], paper=False)
    axes[1].set_title(f"'{cls}': distilled network per reserved ratio", fontsize=9)
    axes[1].set_ylabel("rate")
    return fig


def autopsy_figure(data, layer, profile=None):
    """One layer's weight histogram, filter-PCA curve and the sparsity after every layer (``layer``'s
    bar red), from ``stored_analysis("autopsy", ...)``.

    Returns:
        the Figure.
    """
    import matplotlib.pyplot as plt
    from . import plots_autopsy
    d, short = data, plots_autopsy.short_layer(layer)
    kind = d["stats_layer"].set_index("layer").loc[layer, "kind"]
    pca = d["pca"][d["pca"]["layer"] == layer]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), constrained_layout=True)
    hist, what = d["hist_fc"][d["hist_fc"]["group"] == layer], short
    if hist.empty:   # per-layer histograms are stored for the fc layers; conv ones by kind
        hist, what = d["hist_kind"][d["hist_kind"]["kind"] == kind], f"all {kind} layers"
    plots_autopsy.plot_weight_distribution(hist, ax=axes[0], profile=profile, title=f"Parameter values: {what}")
    if len(pca):
        plots_autopsy.plot_pca_curves(pca, ax=axes[1], profile=profile)
    else:
        axes[1].text(0.5, 0.5, "filter PCA: conv layers only", ha="center", transform=axes[1].transAxes)
    plots_autopsy.plot_sparsity(d["sparsity"].set_index("module"), ax=axes[2], profile=profile)
    names = [t.get_text() for t in axes[2].get_xticklabels()]
    if short in names:
        axes[2].patches[names.index(short)].set_color("red")
    return fig
