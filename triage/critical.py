"""Critical paths: per-class filter attribution, activation maximisation and distillation.

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
  setting exactly this map to zero (see :func:`mask_filters`). A unit without
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
and the exclusiveness of the kept filter sets are in :mod:`triage.critical_eval`.

    >>> from triage import critical
    >>> maps = critical.class_maps(model, train_loader)                 # doctest: +SKIP
    >>> small, kept = critical.distill_class(model, maps, "cat", 0.1)   # doctest: +SKIP
    >>> critical.one_vs_all(small, test_loader, maps.class_index("cat"))  # doctest: +SKIP
    {'tp': 0.97, 'fp': 0.12, 'n_pos': 1000, 'n_neg': 9000}
"""
from __future__ import annotations

import copy
import itertools
import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .models import VGG, conv_layers

__all__ = [
    "PAPER_TABLE1", "PAPER_MEAN_TP", "PAPER_MEAN_FP", "PAPER_SIZE_MB", "PAPER_RATIO",
    "PAPER_LAYERS", "RULES", "COLLAPSE_TOL", "Unit", "conv_units", "resolve_layers", "paper_name", "ClassMaps",
    "class_maps", "layer_differentiation", "top_filters", "fig2_summary", "AMResult", "activation_maximisation",
    "last_conv_layers", "select_filters", "distill", "mask_filters", "distill_class",
    "model_size", "distilled_size", "one_vs_all", "distillation_table", "ratio_sweep",
    "summarise_sweep", "breakdown_ratio", "analyse", "analyse_run",
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


# ----------------------------------------------------------------------------- units and names
@dataclass(frozen=True)
class Unit:
    """One conv layer with the BN and ReLU that follow it (names are qualified module names)."""
    name: str                     # the conv's name, e.g. 'features.block5.conv1'
    conv: nn.Conv2d
    norm_name: str | None = None
    norm: nn.Module | None = None
    act_name: str | None = None
    act: nn.Module | None = None

    @property
    def output(self) -> nn.Module:
        """The module whose output is the filters' activation (ReLU, else BN, else conv)."""
        return next(m for m in (self.act, self.norm, self.conv) if m is not None)

    @property
    def pre_activation(self) -> nn.Module:
        """The module whose output feeds the ReLU (BN, else conv)."""
        return self.norm if self.norm is not None else self.conv

    @property
    def filters(self) -> int:
        return self.conv.out_channels


def conv_units(model: nn.Module) -> "OrderedDict[str, Unit]":
    """Every conv layer of ``model`` as a :class:`Unit`, by conv name, in forward order.

    The BN and ReLU of a unit are the modules that directly follow the conv in the
    same parent container (``conv -> BatchNorm2d -> ReLU``, as in torchvision's and
    triage's VGG).

    Raises:
        ValueError: the model has no ``nn.Conv2d``.

    Example:
        >>> from triage.models import vgg16_bn
        >>> u = conv_units(vgg16_bn(10, width=1 / 16))["features.block5.conv1"]
        >>> u.norm_name, u.act_name
        ('features.block5.bn1', 'features.block5.relu1')
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    found = {}
    for parent_name, parent in model.named_modules():
        children = list(parent.named_children())
        for i, (child_name, child) in enumerate(children):
            if not isinstance(child, nn.Conv2d):
                continue
            q = f"{parent_name}.{child_name}" if parent_name else child_name
            norm_name = norm = act_name = act = None
            rest = children[i + 1:i + 3]
            if rest and isinstance(rest[0][1], nn.modules.batchnorm._BatchNorm):
                (n, norm), rest = rest[0], rest[1:]
                norm_name = f"{parent_name}.{n}" if parent_name else n
            if rest and isinstance(rest[0][1], nn.ReLU):
                n, act = rest[0]
                act_name = f"{parent_name}.{n}" if parent_name else n
            found[q] = Unit(q, child, norm_name, norm, act_name, act)
    order = list(conv_layers(model))
    if not order:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer; critical paths need a CNN")
    # a conv that is not a direct child of a container (a bare Conv2d model) is its own unit
    return OrderedDict((n, found.get(n) or Unit(n, model.get_submodule(n))) for n in order)


_PAPER_NAME = re.compile(r"block(\d+)\.conv(\d+)$")


def paper_name(layer: str) -> str:
    """The paper's name of a VGG conv layer: ``'features.block5.conv1'`` -> ``'Conv5_1'``."""
    m = _PAPER_NAME.search(layer)
    return f"Conv{m.group(1)}_{m.group(2)}" if m else layer


def resolve_layers(model: nn.Module, layers: str | Iterable[str] | None = None) -> list[str]:
    """Qualified conv names for ``layers``, in forward order.

    Args:
        model: the network.
        layers: None (every conv layer), one name or a list. A name is a qualified
            conv name (``'features.block5.conv1'``), its last two parts
            (``'block5.conv1'``) or the paper's name (``'Conv5_1'``, any case).

    Raises:
        ValueError: a name matches no conv layer (the message lists the valid ones).

    Example:
        >>> from triage.models import vgg16_bn
        >>> resolve_layers(vgg16_bn(10, width=1 / 16), ["conv5_1", "block4.conv3"])
        ['features.block4.conv3', 'features.block5.conv1']
    """
    all_units = conv_units(model)
    names = list(all_units)
    if layers is None:
        return names
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: name at least one conv layer (or pass None for all)")
    alias = {}
    for n in names:
        alias[n.lower()] = n
        alias[paper_name(n).lower()] = n
        alias[".".join(n.split(".")[-2:]).lower()] = n
    chosen = set()
    for layer in layers:
        if not isinstance(layer, str) or layer.lower() not in alias:
            shown = ", ".join(paper_name(n) for n in names[:16]) + (" ..." if len(names) > 16 else "")
            raise ValueError(f"unknown conv layer {layer!r}; the model's conv layers are {shown} "
                             f"(qualified names like {names[-1]!r} also work)")
        chosen.add(alias[layer.lower()])
    return [n for n in names if n in chosen]


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


# ----------------------------------------------------------------------------- activation maximisation
class _Stop(Exception):
    """Raised by a capture hook to end the forward pass once the target layer has run."""


def _capture(model: nn.Module, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Output of ``module`` for input ``x``, with gradient, stopping the forward pass there.

    Our own hook rather than Captum's: Captum's LayerActivation runs without
    gradients and always finishes the forward pass, while activation maximisation
    needs d(activation)/d(input) and gains from skipping the layers above.
    """
    store = {}

    def hook(_m, _inp, out):
        store["out"] = out
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if "out" not in store:
        raise ValueError("the layer did not run in the model's forward pass")
    return store["out"]


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel (reflected borders)."""
    r = max(1, math.ceil(2 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    mode = "reflect" if r < min(x.shape[-2:]) else "replicate"
    x = F.pad(x, (r, r, r, r), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@dataclass
class AMResult:
    """Images that maximise some units, and how strongly they activate them."""
    images: torch.Tensor     # (B, C, H, W) in [0, 1], de-normalised for display
    activation: torch.Tensor  # (B,) objective at the end (mean pre-ReLU map, or the logit)
    start: torch.Tensor      # (B,) objective at the starting image
    layer: str               # conv name, or 'logits'
    units: tuple[int, ...]   # filter (or class) per image


def activation_maximisation(model: nn.Module, layer: str, units: int | Sequence[int], *,
                            steps: int = 200, lr: float = 0.05, jitter: int = 2,
                            blur_sigma: float = 0.5, blur_every: int = 4, l2: float = 1e-3,
                            mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                            shape: tuple[int, int, int] | None = None, seed: int = 0,
                            progress: bool = True) -> AMResult:
    """Activation maximisation (Sec. 2.2 (3), Eq. 3; Yosinski et al. 2015's regularisers).

    Gradient ascent on the input ``x <- x + lr * g / mean|g|``, where ``g`` is the
    gradient of the objective; each image of the batch maximises one unit. The
    objective of filter ``k`` is the mean over positions of its *pre*-ReLU map (BN
    output): on positive values it is the post-ReLU activation of the maps, and,
    unlike it, it has a gradient where the filter is silent. For ``layer='logits'``
    the objective is the class logit ``z_c``. Regularisers, so that the images are
    not high-frequency noise: a random shift of up to ``jitter`` px before each
    step (undone after), L2 decay ``x *= 1 - l2`` towards the data mean, a
    Gaussian blur every ``blur_every`` steps, and clipping to the valid pixel
    range. The gradient is normalised per image so that ``lr`` is in units of the
    normalised pixels, whatever the scale of the unit.

    Args:
        model: the classifier (run in eval mode; its weights are not changed).
        layer: a conv layer (:func:`resolve_layers`) or ``'logits'``.
        units: filter index (or class index for logits), or a list of them.
        steps, lr, jitter, blur_sigma, blur_every, l2: see above (``blur_sigma=0``
            or ``blur_every=0`` turns blurring off).
        mean, std: the per-channel normalisation of the model's inputs (in [0, 1]
            units, e.g. ``loader.mean, loader.std``); None: pixels are unbounded and
            images are min-max scaled for display.
        shape: (C, H, W) of an input; default from a triage VGG
            (``in_channels``, ``resolution``).
        seed: seed of the starting noise and the jitter.
        progress: tqdm bar over the steps.

    Returns:
        :class:`AMResult`.

    Example:
        >>> am = activation_maximisation(model, "conv5_1", [3, 7], mean=test.mean, std=test.std)  # doctest: +SKIP
        >>> am.images.shape   # doctest: +SKIP
        torch.Size([2, 3, 32, 32])
    """
    for name, v in (("steps", steps), ("blur_every", blur_every), ("jitter", jitter)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "steps" else 0):
            raise ValueError(f"{name} must be a {'positive' if name == 'steps' else 'non-negative'} "
                             f"integer, got {v!r}")
    if not lr > 0 or not 0 <= l2 < 1 or not blur_sigma >= 0:
        raise ValueError(f"need lr > 0, 0 <= l2 < 1 and blur_sigma >= 0; got {lr}, {l2}, {blur_sigma}")
    ids = [units] if isinstance(units, (int, np.integer)) else list(units)
    if not ids:
        raise ValueError("units is empty: give at least one filter (or class) index")
    if shape is None:
        if not (hasattr(model, "in_channels") and hasattr(model, "resolution")):
            raise ValueError("pass shape=(C, H, W): the model does not say its input size")
        shape = (model.in_channels, model.resolution, model.resolution)
    device = _device_of(model)
    if layer == "logits":
        module, n_units = None, None
    else:
        name = resolve_layers(model, layer)[0]
        unit = conv_units(model)[name]
        module, n_units, layer = unit.pre_activation, unit.filters, name
    idx = torch.as_tensor(ids, dtype=torch.long, device=device)
    g = torch.Generator().manual_seed(seed)
    lo = hi = None
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    if mean is not None:
        m = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        if m.shape[1] != shape[0] or s.shape[1] != shape[0]:
            raise ValueError(f"mean/std have {m.shape[1]}/{s.shape[1]} channels, the input has {shape[0]}")
        lo, hi = ((0 - m) / s).to(device), ((1 - m) / s).to(device)

    def objective(x):
        if module is None:
            out = model(x)
            if out.ndim != 2:
                raise ValueError(f"the model must output (batch, classes) logits, got {tuple(out.shape)}")
            if int(idx.max()) >= out.shape[1] or int(idx.min()) < 0:
                raise ValueError(f"class index out of range: the model has {out.shape[1]} classes")
            return out[torch.arange(len(idx), device=device), idx]
        fmap = _capture(model, module, x)
        return fmap[torch.arange(len(idx), device=device), idx].mean((1, 2))

    if n_units is not None and (int(idx.max()) >= n_units or int(idx.min()) < 0):
        raise ValueError(f"filter index out of range: {paper_name(layer)} has {n_units} filters")
    x = 0.1 * torch.randn(len(ids), *shape, generator=g)
    x = x.to(device)
    with _EvalMode(model):
        with torch.no_grad():
            start = objective(x).detach().cpu()
        for step in tqdm(range(steps), desc="activation maximisation", disable=not progress, leave=False):
            dy, dx = (torch.randint(-jitter, jitter + 1, (2,), generator=g).tolist() if jitter else (0, 0))
            xj = torch.roll(x, (dy, dx), (2, 3)).requires_grad_(True)
            grad, = torch.autograd.grad(objective(xj).sum(), xj)
            grad = torch.roll(grad, (-dy, -dx), (2, 3))
            scale = grad.abs().mean((1, 2, 3), keepdim=True).clamp_min(1e-12)
            x = (x + lr * grad / scale) * (1 - l2)
            if blur_sigma > 0 and blur_every and (step + 1) % blur_every == 0:
                x = _gaussian_blur(x, blur_sigma)
            if lo is not None:
                x = torch.maximum(torch.minimum(x, hi), lo)
        with torch.no_grad():
            final = objective(x).detach().cpu()
    if mean is not None:
        img = (x.cpu() * s + m).clamp(0, 1)
    else:
        flat = x.cpu().flatten(1)
        mn, mx = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
        img = (x.cpu() - mn) / (mx - mn).clamp_min(1e-12)
    return AMResult(img, final, start, layer, tuple(int(i) for i in ids))


# ----------------------------------------------------------------------------- distillation
def last_conv_layers(model: nn.Module, n: int = PAPER_LAYERS) -> list[str]:
    """The last ``n`` conv layers (the paper distils the last six of VGG16)."""
    names = list(conv_units(model))
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(names):
        raise ValueError(f"n must be an integer in 1..{len(names)} (the model's conv layers), got {n!r}")
    return names[-n:]


def _distil_layers(maps: ClassMaps, layers) -> list[str]:
    """The maps' names of the layers to distil (default: the maps' last six), in forward order."""
    if layers is None:
        return list(maps.layers[-PAPER_LAYERS:])
    names = {maps.layer(n) for n in ([layers] if isinstance(layers, str) else layers)}
    if not names:
        raise ValueError("layers is empty: name at least one conv layer to distil")
    return [n for n in maps.layers if n in names]


def select_filters(maps: ClassMaps, cls, ratio: float = PAPER_RATIO, layers=None) -> dict[str, torch.Tensor]:
    """The critical filters of class ``cls``: per layer, the ``ceil(ratio * filters)`` of largest score.

    Args:
        maps: :func:`class_maps` of the model.
        cls: class index or name.
        ratio: reserved ratio in (0, 1] (paper: 0.1, 52 of 512).
        layers: layers to distil (names as in :func:`resolve_layers`); default the
            last six layers of the maps.

    Returns:
        ``{conv name: sorted LongTensor of kept filter indices}``.
    """
    ratio = _check_ratio(ratio)
    c = maps.class_index(cls)
    if int(maps.counts[c]) == 0:
        raise ValueError(f"the maps have no images of class {maps.classes[c]!r}; compute them on a "
                         "loader that has some")
    names = _distil_layers(maps, layers)
    kept = {}
    for n in names:
        s = maps.score(n)[c]
        k = max(1, math.ceil(ratio * len(s) - 1e-9))  # ceil, so 0.1 of 512 keeps the paper's 52
        order = torch.argsort(s, descending=True, stable=True)
        kept[n] = torch.sort(order[:k]).values
    return kept


def _check_kept(model: nn.Module, kept: Mapping[str, Sequence[int]]) -> "OrderedDict[str, torch.Tensor]":
    all_units = conv_units(model)
    out = OrderedDict()
    for name, idx in kept.items():
        q = resolve_layers(model, name)[0]
        idx = torch.as_tensor(idx, dtype=torch.long).flatten().cpu()
        k = all_units[q].filters
        if len(idx) == 0:
            raise ValueError(f"{paper_name(q)}: at least one filter must be kept")
        if int(idx.min()) < 0 or int(idx.max()) >= k:
            raise ValueError(f"{paper_name(q)}: filter indices must be in 0..{k - 1}")
        if len(torch.unique(idx)) != len(idx):
            raise ValueError(f"{paper_name(q)}: kept filter indices repeat")
        out[q] = torch.sort(idx).values
    return out


def _logit_layer(model: nn.Module) -> nn.Linear:
    lin = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not lin:
        raise ValueError("the model has no nn.Linear logit layer")
    return lin[-1]


def mask_filters(model: nn.Module, kept: Mapping[str, Sequence[int]], *,
                 zero_logit_bias: bool = True) -> nn.Module:
    """A copy of ``model`` whose removed filters output zero: the reference for :func:`distill`.

    For every layer in ``kept``, the filters not kept get BN weight and bias 0
    (and, in a unit without BN, conv weight and bias 0). In eval mode, and in
    train mode too, their BN output -- and so their post-ReLU map -- is then
    exactly 0, which is what removing them means to every later layer.

    Args:
        model: the network (not modified).
        kept: ``{layer: kept filter indices}`` (e.g. from :func:`select_filters`).
        zero_logit_bias: zero the last Linear's bias, as distillation does.
    """
    kept = _check_kept(model, kept)
    out = copy.deepcopy(model)
    all_units = conv_units(out)
    with torch.no_grad():
        for name, idx in kept.items():
            u = all_units[name]
            drop = torch.ones(u.filters, dtype=torch.bool)
            drop[idx] = False
            drop = drop.to(u.conv.weight.device)
            if u.norm is not None and u.norm.affine:
                u.norm.weight[drop] = 0
                u.norm.bias[drop] = 0
            else:
                u.conv.weight[drop] = 0
                if u.conv.bias is not None:
                    u.conv.bias[drop] = 0
                if u.norm is not None:  # BN without affine: (0 - mean)/std is not 0
                    raise ValueError(f"{paper_name(name)}: cannot mask a filter followed by a "
                                     "BatchNorm without affine parameters")
        if zero_logit_bias and _logit_layer(out).bias is not None:
            _logit_layer(out).bias.zero_()
    return out


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def distill(model: VGG, kept: Mapping[str, Sequence[int]], *, zero_logit_bias: bool = True) -> VGG:
    """Physically remove every filter not in ``kept`` (Sec. 3), without retraining.

    Each listed conv keeps only the kept output channels (weights, bias and its BN's
    weight, bias and running statistics); the next conv keeps only the matching
    input channels, and after the last conv the classifier's first Linear keeps
    only the matching input columns (one per channel with the 32/64-px head's
    global pooling, 7*7 per channel with the 224-px head). The logit biases are set
    to zero (Sec. 3: the old biases no longer fit the smaller network).
    ``model`` is not modified.

    Args:
        model: a :class:`triage.models.VGG`.
        kept: ``{layer: kept filter indices}`` (e.g. from :func:`select_filters`).
        zero_logit_bias: set the last Linear's bias to zero (the paper's choice).

    Returns:
        A new VGG; its ``cfg`` lists the new channel counts.

    Example:
        >>> from triage.models import vgg16_bn
        >>> m = vgg16_bn(10, width=1 / 16)
        >>> small = distill(m, {"conv5_3": [0, 5]})
        >>> small.features.block5.conv3.out_channels, small.classifier[0].in_features
        (2, 2)
    """
    if not isinstance(model, VGG):
        raise TypeError(f"distill needs a triage VGG (for its classifier layout), got {type(model).__name__}")
    kept = _check_kept(model, kept)
    out = copy.deepcopy(model)
    prev = None  # kept output channels of the previous conv (None: all)
    block_cfg = {}
    with torch.no_grad():
        for name, u in conv_units(out).items():
            keep_out, keep_in = kept.get(name), prev
            conv = u.conv
            if keep_out is not None or keep_in is not None:
                if conv.groups != 1:
                    raise ValueError(f"{paper_name(name)}: grouped convs are not supported")
                w = conv.weight
                b = conv.bias
                if keep_out is not None:
                    w = w[keep_out.to(w.device)]
                    b = b[keep_out.to(w.device)] if b is not None else None
                if keep_in is not None:
                    w = w[:, keep_in.to(w.device)]
                new = nn.Conv2d(w.shape[1], w.shape[0], conv.kernel_size, conv.stride, conv.padding,
                                conv.dilation, bias=b is not None, padding_mode=conv.padding_mode)
                new = new.to(device=w.device, dtype=w.dtype)
                new.weight.copy_(w)
                if b is not None:
                    new.bias.copy_(b)
                _set(out, name, new)
                if keep_out is not None and u.norm is not None:
                    bn, i = u.norm, keep_out.to(w.device)
                    nb = type(bn)(len(i), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                                  track_running_stats=bn.track_running_stats).to(device=w.device, dtype=w.dtype)
                    if bn.affine:
                        nb.weight.copy_(bn.weight[i])
                        nb.bias.copy_(bn.bias[i])
                    if bn.track_running_stats:
                        nb.running_mean.copy_(bn.running_mean[i])
                        nb.running_var.copy_(bn.running_var[i])
                        nb.num_batches_tracked.copy_(bn.num_batches_tracked)
                    nb.train(bn.training)
                    _set(out, u.norm_name, nb)
            prev = keep_out
            m = _PAPER_NAME.search(name)
            if m:
                block_cfg.setdefault(int(m.group(1)), []).append(
                    len(keep_out) if keep_out is not None else conv.out_channels)
        if prev is not None:  # the last conv was distilled: cut the classifier's input columns
            first = out.classifier[0]
            per_channel = first.in_features // model.cfg[-1][-1]
            cols = (prev.to(first.weight.device).view(-1, 1) * per_channel
                    + torch.arange(per_channel, device=first.weight.device)).flatten()
            lin = nn.Linear(len(cols), first.out_features, bias=first.bias is not None)
            lin = lin.to(device=first.weight.device, dtype=first.weight.dtype)
            lin.weight.copy_(first.weight[:, cols])
            if first.bias is not None:
                lin.bias.copy_(first.bias)
            out.classifier[0] = lin
        if zero_logit_bias and _logit_layer(out).bias is not None:
            _logit_layer(out).bias.zero_()
    out.cfg = tuple(tuple(block_cfg[b]) for b in sorted(block_cfg)) if block_cfg else model.cfg
    out.train(model.training)
    return out


def distill_class(model: VGG, maps: ClassMaps, cls, ratio: float = PAPER_RATIO, layers=None
                  ) -> tuple[VGG, dict[str, torch.Tensor]]:
    """:func:`select_filters` then :func:`distill`: the critical-path network of one class.

    Returns:
        (distilled VGG, kept filter indices per layer).
    """
    kept = select_filters(maps, cls, ratio, layers)
    return distill(model, kept), kept


def model_size(model: nn.Module) -> dict:
    """Parameter count and storage size of a model.

    ``mb`` is the storage of all parameters and buffers (BN running statistics) in
    10^6 bytes, at their dtype (float32: 4 bytes each) -- the size of the saved
    state dict without its small overhead. The paper's 59.0 MB matches a VGG16-BN
    for CIFAR of ~14.7 M float32 parameters.
    """
    params = sum(p.numel() for p in model.parameters())
    nbytes = sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers())
                 if t.is_floating_point())
    return {"params": int(params), "mb": nbytes / 1e6}


def distilled_size(model: VGG, ratio: float = PAPER_RATIO, layers=None) -> dict:
    """Size of the distilled architecture of ``model`` at ``ratio`` (weights do not matter).

    Keeps ``ceil(ratio * filters)`` filters of each of ``layers`` (default: the last
    six). Use it with ``vgg16_bn(10)`` for the paper-scale sizes.

    Returns:
        ``{'params', 'mb', 'base_params', 'base_mb'}``.

    Example:
        >>> from triage.models import vgg16_bn
        >>> round(distilled_size(vgg16_bn(10), 0.1)["mb"], 1)
        8.1
    """
    ratio = _check_ratio(ratio)
    names = last_conv_layers(model) if layers is None else resolve_layers(model, layers)
    all_units = conv_units(model)
    kept = {n: torch.arange(max(1, math.ceil(ratio * all_units[n].filters - 1e-9))) for n in names}
    small, base = model_size(distill(model, kept)), model_size(model)
    return {**small, "base_params": base["params"], "base_mb": base["mb"]}


@torch.no_grad()
def _logits(model: nn.Module, loader, max_batches=None) -> tuple[torch.Tensor, torch.Tensor]:
    device = _device_of(model)
    zs, ys = [], []
    with _EvalMode(model):
        for x, y in _batches(loader, max_batches):
            zs.append(model(x.to(device)).float().cpu())
            ys.append(torch.as_tensor(y).cpu().long())
    if not zs:
        raise ValueError("the loader yielded no images")
    return torch.cat(zs), torch.cat(ys)


def _check_rule(rule) -> str:
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    return rule


def _says_c(z: torch.Tensor, c: int, rule: str) -> torch.Tensor:
    """Boolean (N,): the images a detector of class ``c`` calls positive under ``rule``.

    ``argmax`` is strict: ``z_c`` above every other logit. A tie (e.g. all logits 0 once
    every path but one is cut) is "not c", so ties never make a detector look good.
    """
    _check_rule(rule)
    if not 0 <= c < z.shape[1]:
        raise ValueError(f"class index {c} is out of range: the model has {z.shape[1]} classes")
    if rule == "positive_logit":
        return z[:, c] > 0
    others = torch.cat([z[:, :c], z[:, c + 1:]], 1)
    return z[:, c] > others.max(1).values if others.shape[1] else torch.ones(len(z), dtype=torch.bool)


def _tp_fp(pos: torch.Tensor, is_c: torch.Tensor) -> dict:
    """TP, FP, balanced accuracy and the collapse flag of one detector's answers."""
    n_pos, n_neg = int(is_c.sum()), int((~is_c).sum())
    tp = float(pos[is_c].float().mean()) if n_pos else float("nan")
    fp = float(pos[~is_c].float().mean()) if n_neg else float("nan")
    return {"tp": tp, "fp": fp, "balanced": (tp + 1 - fp) / 2, "collapsed": bool(abs(tp - fp) <= COLLAPSE_TOL)}


def _rates(z: torch.Tensor, y: torch.Tensor, c: int, rule: str) -> dict:
    """One-vs-all TP/FP rates (with balanced accuracy, collapse flag, AUC) of class ``c``
    from logits ``z`` and labels ``y``."""
    pos = _says_c(z, c, rule)
    is_c = y == c
    return {**_tp_fp(pos, is_c), "auc": _auc(z[:, c], is_c), "n_pos": int(is_c.sum()),
            "n_neg": int((~is_c).sum())}


def _auc(score: torch.Tensor, positive: torch.Tensor) -> float:
    """ROC AUC of ``score`` for ``positive`` vs the rest (Mann-Whitney U; ties count 1/2)."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = pd.Series(score.double().numpy()).rank(method="average").to_numpy()
    return float((ranks[positive.numpy()].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _split(model: VGG, layer: str) -> tuple[nn.Sequential, nn.Sequential]:
    """(head, tail) with ``tail(head(x)) == model(x)``; the tail starts at conv ``layer``.

    Relies on VGG.forward being features -> avgpool -> flatten -> classifier. The
    modules are shared with ``model``, not copied.
    """
    leaves = [(f"features.{b}.{n}", m) for b, blk in model.features.named_children()
              for n, m in blk.named_children()]
    i = [n for n, _ in leaves].index(layer)
    head = nn.Sequential(*[m for _, m in leaves[:i]])
    tail = nn.Sequential(*[m for _, m in leaves[i:]], model.avgpool, nn.Flatten(1), model.classifier)
    return head, tail


class _Evaluator:
    """Logits of a model and of its distilled copies on one test set.

    Every distilled copy shares the original's layers below the first distilled
    conv, so their outputs are computed once and kept (when they fit in
    ``cache_mb``); each copy then runs only its own upper layers -- at 32 px that
    skips about 70% of VGG16's FLOPs per network.
    """

    def __init__(self, model: VGG, loader, first_layer: str, max_batches=None, cache_mb: float = 2048):
        self.model, self.loader, self.max_batches = model, loader, max_batches
        self.first, self.cached = first_layer, None
        device = _device_of(model)
        head, tail = _split(model, first_layer)
        zs, ys, hs, size = [], [], [], 0.0
        with torch.no_grad(), _EvalMode(model):
            for x, y in _batches(loader, max_batches):
                h = head(x.to(device))
                size += h.numel() * h.element_size() / 1e6
                if size <= cache_mb:
                    hs.append(h)
                zs.append(tail(h).float().cpu())
                ys.append(torch.as_tensor(y).cpu().long())
        if not zs:
            raise ValueError("the loader yielded no images")
        self.z, self.y = torch.cat(zs), torch.cat(ys)
        if size <= cache_mb:
            self.cached = hs

    def logits(self, distilled: VGG) -> torch.Tensor:
        if self.cached is None:
            return _logits(distilled, self.loader, self.max_batches)[0]
        _, tail = _split(distilled, self.first)
        with torch.no_grad(), _EvalMode(distilled):
            return torch.cat([tail(h).float().cpu() for h in self.cached])


def one_vs_all(model: nn.Module, loader, cls: int, *, rule: str = "argmax",
               max_batches: int | None = None) -> dict:
    """One-vs-all TP and FP rates of ``model`` as a detector of class ``cls`` (Table 1).

    A test image counts as "positive" when ``z_cls`` is strictly the largest logit
    (``rule='argmax'``; ties are negative) or when ``z_cls > 0``
    (``rule='positive_logit'``, the one-logit reading with the zeroed biases). TP rate =
    positives among the images of class ``cls``; FP rate = positives among all
    others; ``balanced`` = (TP + 1 - FP) / 2; ``collapsed``: |TP - FP| <=
    :data:`COLLAPSE_TOL`, a detector whose answer does not depend on the class. ``auc``
    is the ROC AUC of ``z_cls`` for class ``cls`` against the rest: how well the logit
    separates the classes whatever the threshold, i.e. independently of the decision rule.

    Returns:
        ``{'tp', 'fp', 'balanced', 'collapsed', 'auc', 'n_pos', 'n_neg'}``.
    """
    _check_rule(rule)
    if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)):
        raise ValueError(f"cls must be a class index here, got {cls!r} (ClassMaps.class_index maps names)")
    z, y = _logits(model, loader, max_batches)
    return _rates(z, y, int(cls), rule)


def distillation_table(model: VGG, maps: ClassMaps, loader, ratio: float = PAPER_RATIO, *,
                       classes=None, layers=None, rule: str = "argmax", max_batches: int | None = None,
                       progress: bool = True, _evaluator: _Evaluator | None = None) -> pd.DataFrame:
    """Table 1: distil every class at ``ratio`` and measure its one-vs-all TP/FP rates.

    Args:
        model: the trained VGG.
        maps: its :func:`class_maps` (on training images).
        loader: the test loader.
        ratio: reserved ratio in (0, 1].
        classes: classes to distil (indices or names); default all.
        layers: layers to distil; default the last six.
        rule: decision rule of "positive" (:func:`one_vs_all`).
        max_batches: use only the first test batches.
        progress: tqdm bar over the classes.

    Returns:
        One row per class: ``class``, ``class_name``, ``ratio``, ``kept`` (filters kept
        in the last distilled layer, e.g. ``52/512``), ``params``, ``mb``, ``tp``, ``fp``,
        ``balanced``, ``collapsed``, ``auc`` (distilled; see :func:`one_vs_all`), ``base_tp``, ``base_fp``, ``base_auc``
        (the original network, same rule, with its biases), ``n_pos``, ``n_neg``.
    """
    ratio = _check_ratio(ratio)
    _check_rule(rule)
    if not isinstance(model, VGG):
        raise TypeError(f"distillation needs a triage VGG, got {type(model).__name__}")
    cls_idx = (list(range(len(maps.classes))) if classes is None
               else [maps.class_index(c) for c in ([classes] if isinstance(classes, (str, int)) else classes)])
    names = _distil_layers(maps, layers)
    ev = _evaluator if _evaluator is not None else _Evaluator(model, loader, resolve_layers(model, names)[0],
                                                             max_batches)
    z0, y0 = ev.z, ev.y
    if z0.shape[1] != len(maps.classes):
        raise ValueError(f"the maps have {len(maps.classes)} classes, the model {z0.shape[1]}")
    rows = []
    for c in tqdm(cls_idx, desc=f"distil (ratio {ratio:g})", disable=not progress, leave=False):
        small, kept = distill_class(model, maps, c, ratio, names)
        last = list(kept)[-1]
        base = _rates(z0, y0, c, rule)
        rows.append({"class": c, "class_name": maps.classes[c], "ratio": ratio,
                     "kept": f"{len(kept[last])}/{conv_units(model)[last].filters}", **model_size(small),
                     **_rates(ev.logits(small), y0, c, rule), "base_tp": base["tp"], "base_fp": base["fp"],
                     "base_auc": base["auc"]})
    cols = ["class", "class_name", "ratio", "kept", "params", "mb", "tp", "fp", "balanced", "collapsed", "auc",
            "base_tp", "base_fp", "base_auc", "n_pos", "n_neg"]
    return pd.DataFrame(rows)[cols]


def ratio_sweep(model: VGG, maps: ClassMaps, loader,
                ratios: Sequence[float] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0), *, classes=None,
                layers=None, rule: str = "argmax", max_batches: int | None = None,
                progress: bool = True) -> pd.DataFrame:
    """:func:`distillation_table` for every ratio, concatenated (one row per ratio and class).

    Ratio 1 keeps every filter; only the zeroed logit biases differ from the
    original network there.
    """
    ratios = [_check_ratio(r) for r in ratios]
    if not ratios:
        raise ValueError("ratios is empty")
    if not isinstance(model, VGG):
        raise TypeError(f"distillation needs a triage VGG, got {type(model).__name__}")
    names = _distil_layers(maps, layers)
    ev = _Evaluator(model, loader, resolve_layers(model, names)[0], max_batches)
    parts = [distillation_table(model, maps, loader, r, classes=classes, layers=names, rule=rule,
                                max_batches=max_batches, progress=False, _evaluator=ev)
             for r in tqdm(ratios, desc="ratio sweep", disable=not progress, leave=False)]
    return pd.concat(parts, ignore_index=True)


def summarise_sweep(sweep: pd.DataFrame) -> pd.DataFrame:
    """Mean over classes per ratio: ``tp``, ``fp``, ``balanced`` (= (TP + 1 - FP) / 2), ``auc``,
    ``mb``, ``params``.

    ``balanced`` is the one number that falls when distillation fails under the decision
    rule: a network that calls everything positive has TP = 1 and FP = 1, i.e. 0.5, the
    same as chance. ``auc`` measures the same without a rule.
    """
    d = sweep.assign(balanced=(sweep["tp"] + 1 - sweep["fp"]) / 2)
    return (d.groupby("ratio", as_index=False)[["tp", "fp", "balanced", "auc", "mb", "params"]].mean()
            .sort_values("ratio", ignore_index=True))


def breakdown_ratio(summary: pd.DataFrame, tolerance: float = 0.1, column: str = "balanced") -> float | None:
    """The largest ratio whose mean ``column`` (balanced accuracy, or ``auc``) is more than
    ``tolerance`` below its value at the largest ratio swept (the "catastrophic drop");
    None if none is.

    Args:
        summary: :func:`summarise_sweep` output.
        tolerance: allowed drop (absolute).
        column: ``'balanced'`` or ``'auc'``.
    """
    if summary.empty:
        raise ValueError("the sweep summary is empty")
    if column not in summary.columns:
        raise ValueError(f"the summary has no column {column!r}")
    s = summary.sort_values("ratio")
    ref = float(s[column].iloc[-1])
    below = s[s[column] < ref - tolerance]
    return float(below["ratio"].max()) if len(below) else None


def analyse(model: VGG, train_loader, test_loader, *, class_names: Sequence[str] | None = None,
            ratio: float = PAPER_RATIO, ratios: Sequence[float] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0),
            rule: str = "argmax", map_batches: int | None = None, test_batches: int | None = None,
            progress: bool = True) -> dict:
    """Everything the chapter shows, in one call: maps, Fig. 1b, Table 1 and the ratio sweep.

    Args:
        model: the trained VGG.
        train_loader: images for the maps (and so for choosing the filters).
        test_loader: images for the one-vs-all rates.
        class_names: e.g. ``spec.classes``.
        ratio: the reserved ratio of the table (always part of the sweep).
        ratios: the sweep.
        rule: decision rule of "positive" (:func:`one_vs_all`).
        map_batches, test_batches: use only the first batches of each loader.
        progress: tqdm bars.

    Returns:
        ``{'maps', 'layer_std', 'table', 'sweep', 'meta'}``; ``meta`` holds the base
        network's test accuracy and size, the image counts, ``ratio`` and ``rule``.

    Example:
        >>> res = analyse(model, train, test, class_names=sp.classes)   # doctest: +SKIP
        >>> res["table"][["class_name", "tp", "fp"]]                    # doctest: +SKIP
    """
    ratio = _check_ratio(ratio)
    maps = class_maps(model, train_loader, class_names=class_names, max_batches=map_batches, progress=progress)
    all_ratios = sorted({_check_ratio(r) for r in ratios} | {ratio})
    sweep = ratio_sweep(model, maps, test_loader, all_ratios, rule=rule, max_batches=test_batches,
                        progress=progress)
    table = sweep[sweep["ratio"] == ratio].reset_index(drop=True)
    z, y = _logits(model, test_loader, test_batches)
    size = model_size(model)
    meta = {"base_acc": float((z.argmax(1) == y).float().mean()), "base_params": size["params"],
            "base_mb": size["mb"], "map_images": int(maps.counts.sum()), "test_images": int(len(y)),
            "ratio": ratio, "rule": rule}
    return {"maps": maps, "layer_std": layer_differentiation(maps), "table": table, "sweep": sweep,
            "meta": meta}


# ----------------------------------------------------------------------------- stored results
_RESULT_TABLES = ("table", "sweep", "layer_std", "maps")
_RESULTS_FORMAT = 3  # bump when the stored tables change, so that older results are recomputed


def analyse_run(cfg, *, store=None, results_dir="results/critical", layer: str = "Conv5_1",
                ratio: float = PAPER_RATIO, ratios: Sequence[float] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0),
                rule: str = "argmax", map_batches: int | None = None, test_batches: int | None = None,
                batch_size: int = 250, recompute: bool = False, device="cpu", data_root=None,
                progress: bool = False) -> dict:
    """:func:`analyse` on the trained network of one run config, stored as CSV/JSON and reused.

    The run is trained or reused with ``triage.run``; the maps come from the run's
    training subset, the rates from its test subset (both without flips). Results go
    to ``<results_dir>/<profile>/<dataset>/<run name>-<run key>/<parameter key>/``
    (``table.csv``, ``sweep.csv``, ``layer_std.csv``, ``maps.csv`` -- the maps of
    ``layer`` only -- and ``critical.json``). A later call with the same run and
    parameters reads them back without touching the model, so the book can be built
    from stored results alone; a retrained run (new config key) or other parameters
    give a new folder.

    Args:
        cfg: a ``RunConfig`` (``triage.make_config(dataset, profile=...)``).
        store: the ``RunStore`` of the runs (None: the default one).
        results_dir: root of the stored results.
        layer: the layer whose maps are kept (Fig. 2's Conv5_1).
        ratio, ratios, rule, map_batches, test_batches: as in :func:`analyse`.
        batch_size: loader batch size. With ``map_batches``/``test_batches`` it sets how many
            images are used, so it is part of the results' key.
        recompute: ignore stored results.
        device: where the model and data live.
        data_root: data root for the loaders.
        progress: tqdm bars.

    Returns:
        :func:`analyse`'s dict, with ``maps`` holding ``layer`` only and ``meta`` also
        naming the run, its profile and the folder.

    Example:
        >>> res = analyse_run(triage.make_config("cifar10", profile="smoke"))   # doctest: +SKIP
        >>> res["table"][["class_name", "tp", "fp"]]                            # doctest: +SKIP
    """
    import hashlib
    import json

    from . import __version__
    from .data import get_loaders
    from .experiments import RunStore, atomic_write_json, load_model, run

    ratio = _check_ratio(ratio)
    ratios = sorted({_check_ratio(r) for r in ratios} | {ratio})
    _check_rule(rule)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    # map_batches/test_batches count batches: the batch size decides how many images they are
    params = {"layer": layer, "ratio": ratio, "ratios": ratios, "rule": rule, "map_batches": map_batches,
              "test_batches": test_batches, "batch_size": batch_size, "format": _RESULTS_FORMAT}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    out = Path(results_dir) / cfg.profile / cfg.dataset / f"{cfg.name}-{cfg.key()}" / key
    if not recompute and (out / "critical.json").is_file() and all(
            (out / f"{t}.csv").is_file() for t in _RESULT_TABLES):
        res = {t: pd.read_csv(out / f"{t}.csv") for t in ("table", "sweep", "layer_std")}
        res["maps"] = ClassMaps.from_csv(out / "maps.csv")
        res["meta"] = json.loads((out / "critical.json").read_text())
        res["meta"]["source"] = f"read from {out}"
        return res
    store = store or RunStore()
    run_dir = run(cfg, store, data_root=data_root, device=device, progress=progress, log=lambda *a: None)
    model = load_model(run_dir, device)
    name = resolve_layers(model, layer)[0]
    train, test, sp = get_loaders(cfg.dataset, root=data_root, batch_size=batch_size, device=device,
                                  train_per_class=cfg.train_per_class, test_per_class=cfg.test_per_class,
                                  seed=cfg.seed, resolution=cfg.resolution, flip=False)
    res = analyse(model, train, test, class_names=sp.classes, ratio=ratio, ratios=ratios, rule=rule,
                  map_batches=map_batches, test_batches=test_batches, progress=progress)
    res["maps"] = res["maps"].select([name])
    res["meta"].update(params=params, run=f"{cfg.name}-{cfg.key()}", profile=cfg.profile, dataset=cfg.dataset,
                       seed=cfg.seed, width=cfg.width, triage_version=__version__, data_note=sp.note)
    out.mkdir(parents=True, exist_ok=True)
    for t in ("table", "sweep", "layer_std"):
        res[t].to_csv(out / f"{t}.csv", index=False)
    res["maps"].to_csv(out / "maps.csv")
    # the marker that the folder is complete: written last, whole or not at all
    atomic_write_json(out / "critical.json", json.loads(json.dumps(res["meta"], default=str)))
    res["meta"]["source"] = "computed now"
    return res


def am_run(cfg, maps: ClassMaps, classes: Sequence, *, layer: str = "Conv5_1", top_k: int = 3,
           steps: int = 128, seed: int = 0, store=None, results_dir="results/critical",
           recompute: bool = False, device="cpu", data_root=None, progress: bool = False) -> dict | None:
    """Activation maximisation of each class's top filters and of the class logits, stored and reused.

    For every class of ``classes`` its ``top_k`` filters of ``layer`` (:func:`top_filters`
    on ``maps``), then one image per class logit, as in the paper's Fig. 2. The images
    and objectives are written to ``am-<key>.npz`` in the run's folder under
    ``<results_dir>/<profile>/<dataset>/<run name>-<run key>/``, the key covering the
    filters chosen and every AM parameter. A later call reads them back without the
    model, so a book built from stored results still shows them. Nothing is trained
    for AM alone: without stored images and without a finished run in ``store`` the
    result is None.

    Args:
        cfg: the run config whose trained network is analysed.
        maps: that network's :class:`ClassMaps` (``analyse_run(...)["maps"]``).
        classes: class names or indexes.
        layer, top_k: the filters, as in :func:`top_filters`.
        steps, seed: as in :func:`activation_maximisation`.
        store: the ``RunStore`` of the runs (None: the default one).
        results_dir: root of the stored results (that of :func:`analyse_run`).
        recompute: ignore stored images.
        device, data_root: where the model runs; data root for the normalisation.
        progress: tqdm bars.

    Returns:
        None, or a dict with ``images`` ((n, C, H, W) in [0, 1]), ``titles``, ``start``
        and ``final`` (the objective before and after, per image), ``layer`` (its
        name in the model), ``filters`` ({class name: filters}) and ``source``.
    """
    import hashlib
    import json

    from .data import channel_stats
    from .experiments import RunStore, load_model, run

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    names = [maps.classes[maps.class_index(c)] for c in classes]
    if not names:
        raise ValueError("classes is empty: give at least one class")
    top = {c: [int(f) for f in top_filters(maps, layer, c, top_k)["filter"]] for c in names}
    params = {"layer": maps.layer(layer), "filters": top, "steps": steps, "seed": seed, "format": 1}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    path = Path(results_dir) / cfg.profile / cfg.dataset / f"{cfg.name}-{cfg.key()}" / f"am-{key}.npz"
    titles = [f"{c}: filter {f}" for c in names for f in top[c]] + [f"logit '{c}'" for c in names]
    out = {"titles": titles, "layer": params["layer"], "filters": top}
    if not recompute and path.is_file():
        with np.load(path) as z:
            return {**out, **{k: torch.from_numpy(z[k]) for k in ("images", "start", "final")},
                    "source": f"read from {path}"}
    store = store or RunStore()
    if not store.is_done(cfg):
        return None
    model = load_model(run(cfg, store, data_root=data_root, device=device, progress=False, log=lambda *a: None),
                       device)
    mean, std = channel_stats(cfg.dataset, data_root)
    kw = dict(steps=steps, mean=mean, std=std, seed=seed, progress=progress)
    am = activation_maximisation(model, params["layer"], [f for c in names for f in top[c]], **kw)
    logit = activation_maximisation(model, "logits", [maps.class_index(c) for c in names], **kw)
    res = {"images": torch.cat([am.images, logit.images]), "start": torch.cat([am.start, logit.start]),
           "final": torch.cat([am.activation, logit.activation])}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")   # written whole, then renamed: no half file is read back
    np.savez_compressed(tmp, **{k: v.numpy().astype(np.float32) for k, v in res.items()})
    tmp.replace(path)
    return {**out, **res, "source": "computed now"}
