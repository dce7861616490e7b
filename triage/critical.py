"""Critical paths: which filters each class relies on (per-class filter attribution).

Reason to change: how a filter's activation, contribution and score for a class are defined or
measured (Sec. 2.2, Figs. 1b and 2), or how conv units and layers are named.

Reproduces *Distilling Critical Paths in Convolutional Neural Networks* (Sec. 2-3):
filters of high conv layers are class-specific (Fig. 1b), the filters a class
relies on can be found from activations and gradients (Fig. 2), and keeping only
those filters in the last six conv layers gives a much smaller one-vs-all
classifier without retraining (Table 1).

Definitions (the paper's symbols did not survive in its text; these are ours):

* **Unit, activation.** A conv layer's *unit* is the conv with the BatchNorm and
  ReLU that follow it (``convI -> bnI -> reluI`` in :class:`triage.models.VGG`).
  The *activation* ``a_k(x)`` of filter ``k`` is the unit's post-ReLU feature
  map (H x W), i.e. what the next layer sees. The paper takes the activation
  "after the filter" of a VGG16 whose convs feed ReLUs; with BN in between, the
  post-BN-ReLU map is the filter's only output, and removing the filter means
  setting exactly this map to zero (see :func:`triage.surgery.mask_filters`). A unit without
  ReLU (or BN) uses its BN (or conv) output instead.
* **Mean absolute activation** (Sec. 2.2 (1)), ``A[c, k]``: the mean over the
  images of class ``c`` and the H*W positions of ``|a_k(x)|`` (after a ReLU,
  ``|a| = a``).
* **Contribution index** (Sec. 2.2 (2), Eq. 2), ``CI[c, k]``: the mean over the
  images ``x`` of class ``c`` of ``|sum_{h,w} dz_c/da_k(x)[h, w]|``, where
  ``z_c`` is the logit of class ``c``. The sum is the first-order Taylor
  coefficient of ``z_c`` with respect to the filter's map as a whole (the
  derivative of ``z_c`` along ``a_k -> a_k + delta`` at every position), so
  ``z_c ~ z_c|_{a_k=0} + coefficient * mean(a_k)`` for a spatially flat map. For
  a head that global-average-pools ``a_k`` and applies a linear layer ``W`` it
  is ``|W[c, k]|`` exactly.
* **Score** (Sec. 3), ``A[c, k] * CI[c, k]``: the first-order size of filter
  ``k``'s share of ``z_c``; a class's critical filters are those with the
  largest scores.

Distillation (Sec. 3): for class ``c``, in each of the last six conv layers keep
the ``ceil(ratio * filters)`` filters of largest score (``ratio`` 0.1 keeps the
paper's 52 of 512), remove the others physically (their conv output channels
and BN entries, and the next conv's -- or the classifier's -- matching inputs),
set the logit biases to zero and do not retrain. Decision rule for
"positive" in the one-vs-all evaluation (the paper does not state its rule):
``argmax``, the distilled network of class ``c`` says "c" when ``z_c`` is
strictly larger than every other logit (ties count as "not c", so a network
whose logits are all equal never says "c"); or ``positive_logit``, ``z_c > 0``,
the one-logit reading of "respond to the chosen class and reject all other
classes" that zeroed biases suggest. Every rate table carries the balanced
accuracy ``(TP + 1 - FP) / 2`` and a ``collapsed`` flag (``|TP - FP| <=``
:data:`COLLAPSE_TOL`): a detector whose answer does not depend on the class --
"always c" has TP = FP = 1 -- is never a result. Both rules side by side, ROC
curves, thresholds chosen on validation images, calibration after distillation
and the exclusiveness of the kept filter sets are in :mod:`triage.critical_eval` and
:mod:`triage.critical_exclusive`.

This module holds the paper's numbers, the units and the class maps; activation maximisation
is in :mod:`triage.critical_am`, distillation and the one-vs-all detector in
:mod:`triage.critical_distill`, and the stored analyses of runs in :mod:`triage.studies`.

    >>> from triage import critical
    >>> maps = critical.class_maps(model, train_loader)                 # doctest: +SKIP
    >>> small, kept = critical_distill.distill_class(model, maps, "cat", 0.1)   # doctest: +SKIP
    >>> critical_distill.one_vs_all(small, test_loader, maps.class_index("cat"))  # doctest: +SKIP
    {'tp': 0.97, 'fp': 0.12, 'n_pos': 1000, 'n_neg': 9000}
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .models import Unit, conv_units, paper_name, resolve_layers  # noqa: F401
# (Unit ... resolve_layers address a model's conv layers: they live in models, re-exported here)

__all__ = [
    "PAPER_TABLE1", "PAPER_MEAN_TP", "PAPER_MEAN_FP", "PAPER_SIZE_MB", "PAPER_RATIO",
    "PAPER_LAYERS", "RULES", "COLLAPSE_TOL", "Unit", "conv_units", "resolve_layers", "paper_name", "ClassMaps",
    "class_maps", "layer_differentiation", "top_filters", "fig2_summary",
]

# ----------------------------------------------------------------------------- the paper's numbers
# Table 1: one-vs-all TP and FP rates of the distilled VGG16 (CIFAR-10, reserved ratio ~10%).
PAPER_TABLE1 = pd.DataFrame({
    "tp": [1.0, 1.0, 0.99, 0.95, 1.0, 0.98, 0.981, 1.0, 0.98, 0.98],
    "fp": [0.114, 0.126, 0.109, 0.096, 0.110, 0.091, 0.118, 0.114, 0.108, 0.113],
}).rename_axis("class")
PAPER_MEAN_TP = 0.986   # Sec. 1 and 4: average TP rate over the ten one-vs-all tasks
PAPER_MEAN_FP = 0.110   # average FP rate
PAPER_SIZE_MB = (59.0, 11.4)  # Sec. 3: original and distilled model size
PAPER_RATIO = 0.1       # Sec. 3: "52 filters out of 512" (ceil(0.1 * 512) = 52)
PAPER_LAYERS = 6        # Sec. 3: the last six conv layers are distilled

RULES = ("argmax", "positive_logit")
# A one-vs-all detector with |TP - FP| at most this is flagged ``collapsed``: its answer barely
# depends on the class (balanced accuracy within 0.025 of chance), e.g. "always c" (TP = FP = 1).
COLLAPSE_TOL = 0.05


def _check_classes(num_classes: int, class_names) -> tuple[str, ...]:
    if class_names is None:
        return tuple(str(c) for c in range(num_classes))
    class_names = tuple(str(c) for c in class_names)
    if len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names but the model has {num_classes} classes")
    return class_names


def _class_index(cls, classes: Sequence[str]) -> int:
    """Index of ``cls`` (an int or a class name) among ``classes``."""
    if isinstance(cls, (int, np.integer)) and not isinstance(cls, bool):
        if not 0 <= int(cls) < len(classes):
            raise ValueError(f"class index {int(cls)} is out of range: there are {len(classes)} classes")
        return int(cls)
    if isinstance(cls, str):
        if cls in classes:
            return classes.index(cls)
        low = [c.lower() for c in classes]
        if cls.lower() in low:
            return low.index(cls.lower())
    shown = ", ".join(classes[:20]) + (" ..." if len(classes) > 20 else "")
    raise ValueError(f"unknown class {cls!r}; the classes are {shown}")


def _check_ratio(ratio) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating)) or not 0 < ratio <= 1:
        raise ValueError(f"ratio must be a number in (0, 1] (the share of filters kept), got {ratio!r}")
    return float(ratio)


def _device_of(model: nn.Module) -> torch.device:
    p = next(itertools.chain(model.parameters(), model.buffers()), None)
    return p.device if p is not None else torch.device("cpu")


def _batches(loader, max_batches):
    if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(max_batches, int)
                                    or max_batches < 1):
        raise ValueError(f"max_batches must be a positive integer or None, got {max_batches!r}")
    it = iter(loader)
    return it if max_batches is None else itertools.islice(it, max_batches)


def _n_batches(loader, max_batches):
    try:
        n = len(loader)
    except TypeError:
        return max_batches
    return n if max_batches is None else min(n, max_batches)


class _EvalMode:
    """Put a model in eval mode for a block, restoring its train/eval state after (also on errors)."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for m, mode in self.modes:
            m.training = mode
        return False


# ----------------------------------------------------------------------------- class maps
@dataclass
class ClassMaps:
    """Per-class mean absolute activation and contribution index of every filter of some layers.

    ``activation[layer]`` and ``contribution[layer]`` are float64 tensors
    ``(classes, filters)`` (module docstring for the exact definitions); a class
    without images has a row of NaN. ``counts[c]`` is the number of images of class c.
    """
    layers: tuple[str, ...]
    activation: dict[str, torch.Tensor]
    contribution: dict[str, torch.Tensor]
    counts: torch.Tensor
    classes: tuple[str, ...]
    meta: dict = field(default_factory=dict)

    def class_index(self, cls) -> int:
        """Index of a class given by index or name (ValueError if unknown)."""
        return _class_index(cls, self.classes)

    def layer(self, layer: str) -> str:
        """The qualified name of one of the maps' layers (qualified, short or paper name)."""
        for n in self.layers:
            if str(layer).lower() in (n.lower(), paper_name(n).lower(), ".".join(n.split(".")[-2:]).lower()):
                return n
        raise ValueError(f"layer {layer!r} is not in these maps; they hold "
                         f"{', '.join(paper_name(n) for n in self.layers)}")

    def select(self, layers) -> "ClassMaps":
        """The maps of some of the layers only (e.g. to store the Fig. 2 layer's)."""
        names = [self.layer(n) for n in ([layers] if isinstance(layers, str) else layers)]
        return ClassMaps(tuple(names), {n: self.activation[n] for n in names},
                         {n: self.contribution[n] for n in names}, self.counts, self.classes, dict(self.meta))

    def score(self, layer: str) -> torch.Tensor:
        """``activation * contribution`` of a layer, (classes, filters)."""
        layer = self.layer(layer)
        return self.activation[layer] * self.contribution[layer]

    def frame(self, layers=None) -> pd.DataFrame:
        """Long table: one row per (layer, class, filter) with activation, contribution, score."""
        names = self.layers if layers is None else [self.layer(n) for n in (
            [layers] if isinstance(layers, str) else layers)]
        parts = []
        for n in names:
            a, g = self.activation[n], self.contribution[n]
            c, k = np.meshgrid(np.arange(a.shape[0]), np.arange(a.shape[1]), indexing="ij")
            parts.append(pd.DataFrame({
                "layer": n, "paper_name": paper_name(n), "class": c.ravel(),
                "class_name": np.asarray(self.classes)[c.ravel()], "filter": k.ravel(),
                "activation": a.numpy().ravel(), "contribution": g.numpy().ravel(),
                "score": (a * g).numpy().ravel(),
            }))
        return pd.concat(parts, ignore_index=True)

    def to_csv(self, path) -> Path:
        """Write :meth:`frame` (plus a ``count`` column) to ``path``."""
        df = self.frame()
        df["count"] = self.counts.numpy()[df["class"].to_numpy()]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
        return path

    @classmethod
    def from_csv(cls, path) -> "ClassMaps":
        """Read maps written by :meth:`to_csv`."""
        df = pd.read_csv(path)
        layers = tuple(dict.fromkeys(df["layer"]))
        n_cls = int(df["class"].max()) + 1
        names = df.drop_duplicates("class").sort_values("class")["class_name"].astype(str)
        act, con = {}, {}
        for n in layers:
            d = df[df["layer"] == n]
            k = int(d["filter"].max()) + 1
            rows = torch.tensor(d["class"].to_numpy(dtype=np.int64, copy=True))
            cols = torch.tensor(d["filter"].to_numpy(dtype=np.int64, copy=True))
            for out, col in ((act, "activation"), (con, "contribution")):
                t = torch.full((n_cls, k), float("nan"), dtype=torch.float64)
                t[rows, cols] = torch.tensor(d[col].to_numpy(dtype=np.float64, copy=True))
                out[n] = t
        counts = torch.zeros(n_cls, dtype=torch.long)
        first = df.drop_duplicates("class")
        counts[torch.tensor(first["class"].to_numpy(dtype=np.int64, copy=True))] = torch.tensor(
            first["count"].to_numpy(dtype=np.int64, copy=True))
        return cls(layers, act, con, counts, tuple(names))


def class_maps(model: nn.Module, loader, layers=None, *, class_names: Sequence[str] | None = None,
               max_batches: int | None = None, progress: bool = True) -> ClassMaps:
    """Per-class mean absolute activation and contribution index of every filter (Fig. 2a maps).

    One forward pass (Captum's ``LayerActivation``) gives the post-ReLU maps and one
    forward/backward pass (``LayerGradientXActivation`` with
    ``multiply_by_inputs=False``, i.e. the plain gradient) gives ``dz_y/da_k`` for
    each image's own class ``y``, for all layers at once. Captum clones the
    hooked outputs, so the inplace ReLUs of VGG do not corrupt them, and removes
    its hooks in a ``finally``. The model runs in eval mode (BN running
    statistics, no dropout) and is left in the mode it came in.

    Args:
        model: a classifier returning (batch, classes) logits.
        loader: iterable of (x, y) batches on the model's device (normalised as
            for training); a training subset, so that the filters chosen for
            distillation are never chosen on the test images.
        layers: conv layers (see :func:`resolve_layers`); None: all.
        class_names: names of the classes (e.g. ``spec.classes``); default '0', '1', ...
        max_batches: use only the first batches of the loader.
        progress: tqdm bar over the batches.

    Returns:
        :class:`ClassMaps`.

    Example:
        >>> train, test, sp = triage.get_loaders("cifar10", train_per_class=100)   # doctest: +SKIP
        >>> maps = class_maps(model, train, class_names=sp.classes)              # doctest: +SKIP
        >>> maps.activation["features.block5.conv1"].shape   # doctest: +SKIP
        torch.Size([10, 512])
    """
    from captum.attr import LayerActivation, LayerGradientXActivation

    names = resolve_layers(model, layers)
    all_units = conv_units(model)
    mods = [all_units[n].output for n in names]
    if len({id(m) for m in mods}) != len(mods):
        raise ValueError("two conv layers share one activation module (a reused nn.ReLU); give "
                         "each conv its own ReLU so that their outputs can be told apart")
    device = _device_of(model)
    acts = LayerActivation(model, mods)
    grads = LayerGradientXActivation(model, mods, multiply_by_inputs=False)
    a_sum = g_sum = counts = None
    classes = None
    with _EvalMode(model):
        bar = tqdm(_batches(loader, max_batches), total=_n_batches(loader, max_batches),
                   desc="class maps", disable=not progress, leave=False)
        for x, y in bar:
            x, y = x.to(device), torch.as_tensor(y).to(device).long()
            if classes is None:
                with torch.no_grad():
                    out = model(x[:1])
                if out.ndim != 2:
                    raise ValueError(f"the model must output (batch, classes) logits, got {tuple(out.shape)}")
                classes = _check_classes(out.shape[1], class_names)
                n_cls = len(classes)
                a_sum = {n: torch.zeros(n_cls, all_units[n].filters, dtype=torch.float64) for n in names}
                g_sum = {n: torch.zeros_like(a_sum[n]) for n in names}
                counts = torch.zeros(n_cls, dtype=torch.long)
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_cls):
                raise ValueError(f"labels must be in 0..{n_cls - 1} (the model's classes), got "
                                 f"{int(y.min())}..{int(y.max())}")
            a_list = acts.attribute(x)
            g_list = grads.attribute(x, target=y)
            if len(names) == 1:  # Captum returns a list only for a list of layers of length > 1
                a_list, g_list = ([a_list] if torch.is_tensor(a_list) else a_list,
                                  [g_list] if torch.is_tensor(g_list) else g_list)
            yc = y.cpu()
            for n, a, g in zip(names, a_list, g_list):
                # mean |a| over positions; |sum of dz/da over positions| (module docstring)
                a_sum[n].index_add_(0, yc, a.detach().abs().mean((2, 3)).double().cpu())
                g_sum[n].index_add_(0, yc, g.detach().sum((2, 3)).abs().double().cpu())
            counts += torch.bincount(yc, minlength=n_cls)
    if counts is None or int(counts.sum()) == 0:
        raise ValueError("the loader yielded no images")
    denom = counts.double().unsqueeze(1)
    nan = counts == 0
    act, con = {}, {}
    for n in names:
        act[n], con[n] = a_sum[n] / denom, g_sum[n] / denom
        act[n][nan], con[n][nan] = float("nan"), float("nan")
    return ClassMaps(tuple(names), act, con, counts, classes, {"images": int(counts.sum())})


def layer_differentiation(maps: ClassMaps) -> pd.DataFrame:
    """How class-specific each layer is (the paper's Fig. 1b).

    For every filter, the standard deviation over classes (population, ddof=0) of
    its per-class mean activation ``A[:, k]``; per layer, the mean of these over
    filters (``std``). Because a layer's overall activation scale also moves the
    STD, ``rel_std`` divides each filter's STD by its mean over classes first
    (coefficient of variation; filters that never fire are left out). Classes
    without images are ignored.

    Returns:
        DataFrame with one row per layer: ``layer``, ``paper_name``, ``depth``
        (1 = first conv), ``filters``, ``std``, ``rel_std``.

    Example:
        >>> layer_differentiation(maps)[["paper_name", "std"]]   # doctest: +SKIP
    """
    rows = []
    seen = maps.counts > 0
    if int(seen.sum()) < 2:
        raise ValueError("layer differentiation needs images of at least two classes")
    for depth, n in enumerate(maps.layers, start=1):
        a = maps.activation[n][seen]
        sd = a.std(0, unbiased=False)
        mu = a.mean(0)
        live = mu > 0
        rows.append({"layer": n, "paper_name": paper_name(n), "depth": depth, "filters": a.shape[1],
                     "std": float(sd.mean()),
                     "rel_std": float((sd[live] / mu[live]).mean()) if live.any() else float("nan")})
    return pd.DataFrame(rows)


def top_filters(maps: ClassMaps, layer: str, cls, k: int = 3) -> pd.DataFrame:
    """The ``k`` filters of ``layer`` with the largest score for class ``cls`` (Fig. 2's "top three").

    Returns:
        DataFrame (rank order): ``filter``, ``activation``, ``contribution``, ``score``,
        ``top_class`` (the class with the largest contribution index of that filter),
        and ``contribution_<class name>`` for every class.
    """
    c = maps.class_index(cls)
    layer = maps.layer(layer)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    s = maps.score(layer)[c]
    if torch.isnan(s).all():
        raise ValueError(f"no images of class {maps.classes[c]!r} in these maps")
    order = torch.argsort(torch.nan_to_num(s, nan=-1.0), descending=True, stable=True)[:k]
    con = maps.contribution[layer]
    rows = []
    for f in order.tolist():
        row = {"filter": f, "activation": float(maps.activation[layer][c, f]),
               "contribution": float(con[c, f]), "score": float(s[f]),
               "top_class": maps.classes[int(torch.nan_to_num(con[:, f], nan=-1.0).argmax())]}
        row.update({f"contribution_{name}": float(con[i, f]) for i, name in enumerate(maps.classes)})
        rows.append(row)
    return pd.DataFrame(rows)


def fig2_summary(maps: ClassMaps, layer: str, cls, k: int = 3) -> dict:
    """The paper's Fig. 2 observations for one class and layer, as numbers.

    Returns:
        ``spearman``: rank correlation over filters between the class's activation and
        contribution-index rows ("they point out similar filter groups");
        ``overlap``: share of the top-10% filters by activation that are also top-10% by
        contribution index (chance: about 0.1); ``own_class``: how many of the ``k``
        top-score filters have their largest contribution index for this class (paper:
        all three); ``k``.
    """
    c = maps.class_index(cls)
    name = maps.layer(layer)
    a = maps.activation[name][c].numpy()
    g = maps.contribution[name][c].numpy()
    if np.isnan(a).all():
        raise ValueError(f"no images of class {maps.classes[c]!r} in these maps")
    n = max(1, math.ceil(0.1 * len(a) - 1e-9))
    top_a = set(np.argsort(-a, kind="stable")[:n].tolist())
    top_g = set(np.argsort(-g, kind="stable")[:n].tolist())
    t = top_filters(maps, name, c, k)
    return {"spearman": float(pd.Series(a).corr(pd.Series(g), method="spearman")),
            "overlap": len(top_a & top_g) / n,
            "own_class": int((t["top_class"] == maps.classes[c]).sum()), "k": int(len(t))}
