"""Critical-path distillation: keep a class's critical filters, cut the rest, measure the detector.

Reason to change: how the kept filters are chosen, how the network is cut, or how the
one-vs-all detector it leaves is scored.

Sec. 3 of *Distilling Critical Paths in Convolutional Neural Networks* (definitions in
:mod:`triage.critical`): for class ``c``, in each of the last six conv layers keep the
``ceil(ratio * filters)`` filters of largest score (:func:`select_filters`), remove the others
physically (:func:`triage.surgery.distill`; :func:`triage.surgery.mask_filters` zeroes them
instead), zero the logit biases and do not retrain; then read the distilled network as a one-vs-all detector of ``c``
(:func:`one_vs_all`, :func:`distillation_table`, :func:`ratio_sweep`). :func:`analyse` does
all of it with the maps and Fig. 1b. Thresholds, calibration and exclusiveness are in
:mod:`triage.critical_eval` and :mod:`triage.critical_exclusive`. The surgery itself,
:func:`~triage.surgery.distill` and :func:`~triage.surgery.mask_filters`, is :mod:`triage.surgery`'s
(it returns a new module); both stay importable from here.

    >>> maps = critical.class_maps(model, train_loader)                          # doctest: +SKIP
    >>> small, kept = critical_distill.distill_class(model, maps, "cat", 0.1)    # doctest: +SKIP
    >>> critical_distill.one_vs_all(small, test_loader, maps.class_index("cat"))  # doctest: +SKIP
    {'tp': 0.97, 'fp': 0.12, 'n_pos': 1000, 'n_neg': 9000}
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .critical import (COLLAPSE_TOL, PAPER_LAYERS, PAPER_RATIO, RULES, ClassMaps, _batches, _check_ratio, _device_of,
                       _EvalMode, class_maps, conv_units, layer_differentiation, resolve_layers)
from .models import VGG
from .surgery import distill, mask_filters  # noqa: F401  (the surgery lives in triage.surgery; kept importable here)

__all__ = ["last_conv_layers", "select_filters", "distill", "mask_filters", "distill_class", "model_size",
           "distilled_size", "one_vs_all", "distillation_table", "ratio_sweep", "summarise_sweep", "breakdown_ratio",
           "analyse"]

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
