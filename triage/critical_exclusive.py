"""Are the critical paths of different classes exclusive? Overlap of kept filter sets against chance.

Reason to change: how the overlap of two classes' kept filters is measured or compared with chance.

*Distilling Critical Paths in CNNs* finds the critical paths of different classes
"co-existing but almost exclusive". For each distilled layer and each pair of classes,
:func:`exclusiveness` measures the Jaccard overlap of their kept filter sets
(:func:`kept_filters`, from :func:`triage.critical_distill.select_filters`) against the
overlap of two random sets of the same size (:func:`chance_overlap`, exact, from the
hypergeometric distribution) and against ten random sets at once (:func:`null_mean_jaccard`,
simulated); :func:`exclusiveness_summary` gives one row per layer, :func:`plot_exclusiveness`
the figure.

    >>> pairs = critical_exclusive.exclusiveness(maps, 0.1)        # doctest: +SKIP
    >>> critical_exclusive.exclusiveness_summary(pairs)             # doctest: +SKIP
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import critical as cr
from . import critical_distill as cd
from .critical_eval import _class_list

__all__ = ["kept_filters", "chance_overlap", "null_mean_jaccard", "exclusiveness", "exclusiveness_summary",
           "plot_exclusiveness"]


# ----------------------------------------------------------------------------- exclusiveness
def kept_filters(maps: cr.ClassMaps, ratio: float = cr.PAPER_RATIO, classes=None, layers=None) -> pd.DataFrame:
    """The critical filters of every class (:func:`triage.critical_distill.select_filters`), long:
    ``class``, ``class_name``, ``layer``, ``paper_name``, ``filter``."""
    rows = []
    for c in _class_list(maps, classes):
        for layer, idx in cd.select_filters(maps, c, ratio, layers).items():
            rows += [{"class": c, "class_name": maps.classes[c], "layer": layer, "paper_name": cr.paper_name(layer),
                      "filter": int(f)} for f in idx]
    return pd.DataFrame(rows)


def chance_overlap(n: int, k: int) -> dict:
    """Overlap of two independent uniformly random ``k``-subsets of ``n`` filters, exactly.

    ``X = |A & B|`` is hypergeometric (``scipy.stats.hypergeom(M=n, n=k, N=k)``: draw k of
    n of which k are "in A"), so ``E[X] = k^2 / n``. The Jaccard index ``X / (2k - X)``
    is a function of X, and its expectation is summed over X's distribution:
    ``E[J] = sum_x P(X = x) x / (2k - x)``.

    Returns:
        ``{'overlap': E[X], 'jaccard': E[J], 'jaccard_lo', 'jaccard_hi' (2.5% and 97.5%
        quantiles of J), 'p_disjoint': P(X = 0)}``.

    Example:
        >>> round(chance_overlap(8, 2)["jaccard"], 6), chance_overlap(8, 2)["overlap"]
        (0.178571, 0.5)
    """
    from scipy.stats import hypergeom
    for name, v in (("n", n), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if k > n:
        raise ValueError(f"cannot keep k={k} of n={n} filters")
    x = np.arange(k + 1)
    p = hypergeom(int(n), int(k), int(k)).pmf(x)
    j = x / (2 * k - x)
    cdf = np.cumsum(p)
    return {"overlap": k * k / n, "jaccard": float((p * j).sum()),
            "jaccard_lo": float(j[np.searchsorted(cdf, 0.025)]), "jaccard_hi": float(j[np.searchsorted(cdf, 0.975)]),
            "p_disjoint": float(p[0])}


def null_mean_jaccard(n: int, k: int, classes: int, sims: int = 2000, seed: int = 0) -> np.ndarray:
    """Mean pairwise Jaccard of ``classes`` independent random ``k``-subsets of ``n``, ``sims`` times.

    The pairs of one layer share classes, so their mean is not a sum of independent
    terms; this simulates its distribution under "the kept sets are random".
    """
    if classes < 2:
        raise ValueError("exclusiveness needs at least two classes")
    rng = np.random.default_rng(seed)
    out = np.empty(sims)
    iu = np.triu_indices(classes, 1)
    for s in range(0, sims, 250):
        b = min(250, sims - s)
        member = np.argsort(rng.random((b, classes, n)), axis=2)[:, :, :k]
        m = np.zeros((b, classes, n), dtype=np.float32)
        np.put_along_axis(m, member, 1.0, axis=2)
        inter = np.einsum("bcn,bdn->bcd", m, m)[:, iu[0], iu[1]]
        out[s:s + b] = (inter / (2 * k - inter)).mean(1)
    return out


def exclusiveness(maps: cr.ClassMaps, ratio: float = cr.PAPER_RATIO, layers=None, classes=None) -> pd.DataFrame:
    """Overlap of the kept filter sets of every pair of classes in every distilled layer.

    Args:
        maps: the class maps (the kept sets are :func:`triage.critical_distill.select_filters`).
        ratio: reserved ratio.
        layers: layers; default the maps' last six.
        classes: classes; default all.

    Returns:
        One row per (layer, pair): ``layer``, ``paper_name``, ``n`` (filters), ``k`` (kept),
        ``class_a``, ``class_b``, ``name_a``, ``name_b``, ``overlap`` (shared filters),
        ``jaccard`` (``overlap / |A | B|``), ``chance_overlap`` (``k^2/n``), ``chance_jaccard``
        (:func:`chance_overlap`).
    """
    kept = {c: cd.select_filters(maps, c, ratio, layers) for c in _class_list(maps, classes)}
    if len(kept) < 2:
        raise ValueError("exclusiveness needs at least two classes")
    cls = list(kept)
    rows = []
    for layer in next(iter(kept.values())):
        n = maps.activation[layer].shape[1]
        sets = {c: set(kept[c][layer].tolist()) for c in cls}
        k = len(sets[cls[0]])
        ch = chance_overlap(n, k)
        for i, a in enumerate(cls):
            for b in cls[i + 1:]:
                inter = len(sets[a] & sets[b])
                rows.append({"layer": layer, "paper_name": cr.paper_name(layer), "n": n, "k": k,
                             "class_a": a, "class_b": b, "name_a": maps.classes[a], "name_b": maps.classes[b],
                             "overlap": inter, "jaccard": inter / len(sets[a] | sets[b]),
                             "chance_overlap": ch["overlap"], "chance_jaccard": ch["jaccard"]})
    return pd.DataFrame(rows)


def exclusiveness_summary(pairs: pd.DataFrame, sims: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per layer: observed mean overlap and Jaccard against chance (:func:`chance_overlap`), the
    share of disjoint pairs against ``P(X = 0)``, and the simulated chance distribution of the
    mean Jaccard (:func:`null_mean_jaccard`): ``null_lo``/``null_hi`` (2.5%/97.5%), ``p_exclusive``
    (P(chance mean <= observed): small when the paths are more exclusive than random sets) and
    ``p_shared`` (P(chance mean >= observed))."""
    if pairs.empty:
        raise ValueError("no pairs to summarise")
    rows = []
    for layer, d in pairs.groupby("layer", sort=False):
        n, k = int(d["n"].iloc[0]), int(d["k"].iloc[0])
        classes = len(set(d["class_a"]) | set(d["class_b"]))
        ch, obs = chance_overlap(n, k), float(d["jaccard"].mean())
        null = null_mean_jaccard(n, k, classes, sims, seed)
        rows.append({"layer": layer, "paper_name": cr.paper_name(layer), "n": n, "k": k, "pairs": len(d),
                     "mean_overlap": float(d["overlap"].mean()), "chance_overlap": ch["overlap"],
                     "mean_jaccard": obs, "chance_jaccard": ch["jaccard"],
                     "jaccard_vs_chance": obs / ch["jaccard"] if ch["jaccard"] > 0 else float("nan"),
                     "disjoint_share": float((d["overlap"] == 0).mean()), "chance_disjoint": ch["p_disjoint"],
                     "null_lo": float(np.quantile(null, 0.025)), "null_hi": float(np.quantile(null, 0.975)),
                     "p_exclusive": float((null <= obs + 1e-12).mean()),
                     "p_shared": float((null >= obs - 1e-12).mean())})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- plot
def plot_exclusiveness(pairs: pd.DataFrame, layers=None, ncols: int = 3, profile: str | None = None):
    """Heat maps of the pairwise Jaccard overlap of the kept filter sets, one panel per layer.

    The colour scale is shared and centred on each layer's chance level (white): red
    pairs share more filters than random sets of the same size would, blue fewer.

    Args:
        pairs: :func:`exclusiveness` output.
        layers: layers to draw (names as in the table); default all.
        ncols: panels per row.
        profile: written in the title.

    Returns:
        the Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm
    names = list(dict.fromkeys(pairs["layer"])) if layers is None else list(layers)
    if not names:
        raise ValueError("no layers to draw")
    classes = sorted(set(pairs["class_a"]) | set(pairs["class_b"]))
    labels = {int(r.class_a): r.name_a for r in pairs.itertuples()} | {int(r.class_b): r.name_b
                                                                        for r in pairs.itertuples()}
    pos = {c: i for i, c in enumerate(classes)}
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, min(ncols, len(names)), figsize=(3.6 * min(ncols, len(names)), 3.3 * nrows),
                             squeeze=False, constrained_layout=True)
    vmax = max(float(pairs["jaccard"].max()), float(pairs["chance_jaccard"].max()) * 2, 1e-3)
    for ax, layer in zip(axes.flat, names):
        d = pairs[pairs["layer"] == layer]
        if d.empty:
            raise ValueError(f"layer {layer!r} is not in the table")
        m = np.full((len(classes), len(classes)), np.nan)
        for r in d.itertuples():
            m[pos[r.class_a], pos[r.class_b]] = m[pos[r.class_b], pos[r.class_a]] = r.jaccard
        chance = float(d["chance_jaccard"].iloc[0])
        im = ax.imshow(m, cmap="RdBu_r", norm=TwoSlopeNorm(vcenter=chance, vmin=0, vmax=max(vmax, chance * 1.01)))
        ax.set_xticks(range(len(classes)), [labels[c] for c in classes], rotation=90, fontsize=6)
        ax.set_yticks(range(len(classes)), [labels[c] for c in classes], fontsize=6)
        ax.set_title(f"{cr.paper_name(layer)}: {int(d['k'].iloc[0])} of {int(d['n'].iloc[0])} kept\n"
                     f"mean J {d['jaccard'].mean():.3f}, chance {chance:.3f}", fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.set_axis_off()
    fig.colorbar(im, ax=axes, fraction=0.025, label="Jaccard overlap of kept filters")
    fig.suptitle("Exclusiveness of critical paths (white: chance)" + (f" [profile: {profile}]" if profile else ""),
                 fontsize=10)
    return fig
