"""Is a distilled critical path the detector of Table 1? Decision rules, thresholds, calibration.

Reason to change: how a distilled network is calibrated or read as a one-vs-all detector.

:mod:`triage.critical` finds a class's critical filters and :mod:`triage.critical_distill`
cuts the network down to them (Sec. 3 of *Distilling Critical Paths in CNNs*). This module
measures the cut networks so that a network which has collapsed to a constant answer can
never be read as a result:

* **Decision rules, side by side** (:func:`detector_rates`). The paper says its
  distilled network "responds to the chosen class and rejects all other classes"
  but not how "responds" is read. ``argmax``: ``z_c`` strictly above every other
  logit; ``positive_logit``: ``z_c > 0`` (its biases are zeroed, so 0 is the natural
  cut); ``val_threshold``: ``z_c >= t`` with ``t`` chosen on validation images so
  that their TP rate is the paper's 98.6%, reported on the test images.
* **Threshold-free numbers**: the ROC AUC of ``z_c`` and the FP rate read off the
  test ROC at TP = 98.6% (``fp_at_tp_roc``; an optimistic bound, as its threshold
  is chosen on the test images themselves).
* **Collapse**: every rule carries the balanced accuracy ``(TP + 1 - FP) / 2`` and a
  ``collapsed`` flag, ``|TP - FP| <= critical.COLLAPSE_TOL``.
* **Calibration after distillation** (:data:`CALIBRATIONS`): the paper's procedure
  (logit biases zeroed, nothing retrained) first, then our departures, each
  labelled: BN running statistics of the distilled layers re-estimated on training
  images (:func:`triage.kmeans.recalibrate_bn`), and the hidden Linear layer's bias
  zeroed as well as the logits'.

The exclusiveness of the kept filter sets is in :mod:`triage.critical_exclusive`; the whole
chapter on one network, and its verdicts, in :mod:`triage.critical_chapter`.

    >>> from triage import critical, critical_eval
    >>> maps = critical.class_maps(model, map_loader)                         # doctest: +SKIP
    >>> rates = critical_eval.distillation_rates(model, maps, test, val_loader=val,
    ...                                          bn_loader=map_loader)      # doctest: +SKIP
    >>> critical_eval.paper_table(rates)                                      # doctest: +SKIP
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from . import critical as cr
from . import critical_distill as cd
from .kmeans import recalibrate_bn
from .models import VGG
from .surgery import distill

__all__ = ["PAPER_TP", "DECISION_RULES", "Calibration", "CALIBRATIONS", "DEFAULT_RATIOS", "decision",
           "threshold_for_tp", "fp_at_tp", "detector_rates", "roc_points", "calibrate", "distillation_rates",
           "original_rates", "summarise_rates", "paper_table", "plot_roc", "plot_calibration_sweep"]

PAPER_TP = cr.PAPER_MEAN_TP  # Table 1's mean TP rate: the operating point of the threshold rule
DEFAULT_RATIOS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
# rule -> suffix of its columns in the rate tables
DECISION_RULES = {"argmax": "argmax", "positive_logit": "positive", "val_threshold": "threshold"}


@dataclass(frozen=True)
class Calibration:
    """What is done to a distilled network before it is evaluated (logit biases are always zeroed)."""
    name: str
    bn: bool            # re-estimate the BN running statistics of the distilled layers on training images
    hidden_bias: bool   # keep the hidden Linear layer's bias (the paper zeroes only the logit layer's)
    label: str


CALIBRATIONS = {c.name: c for c in (
    Calibration("paper", bn=False, hidden_bias=True,
                label="paper (Sec. 3): logit biases zeroed, no retraining"),
    Calibration("hidden0", bn=False, hidden_bias=False,
                label="departure: hidden Linear bias zeroed too"),
    Calibration("bn", bn=True, hidden_bias=True,
                label="departure: BN statistics re-estimated on training images"),
    Calibration("bn+hidden0", bn=True, hidden_bias=False,
                label="departures: BN statistics re-estimated and hidden bias zeroed"),
)}


def _check_calibrations(calibrations) -> list[Calibration]:
    names = [calibrations] if isinstance(calibrations, str) else list(calibrations)
    if not names:
        raise ValueError("calibrations is empty: name at least one of " + ", ".join(CALIBRATIONS))
    for n in names:
        if n not in CALIBRATIONS:
            raise ValueError(f"unknown calibration {n!r}; choose from {', '.join(CALIBRATIONS)}")
    return [CALIBRATIONS[n] for n in dict.fromkeys(names)]


def _check_tp(tp) -> float:
    if isinstance(tp, bool) or not isinstance(tp, (int, float)) or not 0 < tp <= 1:
        raise ValueError(f"tp must be a rate in (0, 1], got {tp!r}")
    return float(tp)


def _check_class(c, n_classes: int) -> int:
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= int(c) < n_classes:
        raise ValueError(f"class {c!r} is not one of the model's classes 0..{n_classes - 1}")
    return int(c)


# ----------------------------------------------------------------------------- rules and thresholds
def decision(z: torch.Tensor, c: int, rule: str, threshold: float | None = None) -> torch.Tensor:
    """Which images the detector of class ``c`` calls "c" (bool, (N,)), from logits ``z`` (N, classes).

    Args:
        z: logits.
        c: class index.
        rule: ``'argmax'`` (``z_c`` strictly largest; ties are "not c"), ``'positive_logit'``
            (``z_c > 0``) or ``'val_threshold'`` (``z_c >= threshold``).
        threshold: the threshold of ``'val_threshold'`` (:func:`threshold_for_tp`).

    Example:
        >>> decision(torch.tensor([[1., 0.], [0., 0.]]), 0, "argmax").tolist()
        [True, False]
    """
    if rule not in DECISION_RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(DECISION_RULES)}")
    c = _check_class(c, z.shape[1])
    if rule == "val_threshold":
        if threshold is None:
            raise ValueError("rule 'val_threshold' needs a threshold (threshold_for_tp on validation logits)")
        return z[:, c] >= threshold
    return cd._says_c(z, c, rule)


def threshold_for_tp(score: torch.Tensor, positive: torch.Tensor, tp: float = PAPER_TP) -> float:
    """The largest threshold ``t`` with TP rate ``mean(score[positive] >= t) >= tp``.

    With ``n`` positives and ``m = ceil(tp * n)``, ``t`` is the ``m``-th largest positive
    score (Table 1's 98.6% on 500 positives: the 493rd largest).

    Example:
        >>> threshold_for_tp(torch.tensor([0., 1., 2., 3.]), torch.tensor([True] * 4), 0.75)
        1.0
    """
    tp = _check_tp(tp)
    s = torch.sort(score[positive].double()).values
    if len(s) == 0:
        raise ValueError("no positive images: a threshold for a TP rate needs some")
    m = math.ceil(tp * len(s) - 1e-9)
    return float(s[len(s) - m])


def fp_at_tp(score: torch.Tensor, positive: torch.Tensor, tp: float = PAPER_TP) -> float:
    """FP rate where the ROC curve of ``score`` first reaches TP rate ``tp`` (threshold from the same images)."""
    t = threshold_for_tp(score, positive, tp)
    neg = score[~positive]
    return float((neg >= t).double().mean()) if len(neg) else float("nan")


def detector_rates(z: torch.Tensor, y: torch.Tensor, c: int, *, z_val: torch.Tensor | None = None,
                   y_val: torch.Tensor | None = None, tp: float = PAPER_TP) -> dict:
    """Every rule's one-vs-all rates of the detector of class ``c`` on test logits ``z``, labels ``y``.

    Args:
        z, y: test logits (N, classes) and labels.
        c: the detector's class.
        z_val, y_val: validation logits and labels; the ``val_threshold`` rule needs them.
        tp: the TP rate the threshold aims at (paper: 98.6%).

    Returns:
        For each rule suffix ``s`` of :data:`DECISION_RULES`: ``tp_s``, ``fp_s``, ``balanced_s``,
        ``collapsed_s``; then ``threshold`` and ``val_tp`` (its TP on validation), ``auc``,
        ``fp_at_tp_roc`` (test ROC read at ``tp``), ``n_pos``, ``n_neg``.

    Example:
        >>> z = torch.tensor([[2., 0.], [-1., 0.5], [1., 3.]]); y = torch.tensor([0, 1, 1])
        >>> r = detector_rates(z, y, 0, z_val=z, y_val=y)
        >>> r["tp_positive"], r["fp_positive"], r["fp_argmax"]
        (1.0, 0.5, 0.0)
    """
    c = _check_class(c, z.shape[1])
    y = torch.as_tensor(y).cpu()
    z = z.cpu()
    is_c = y == c
    row = {}
    for rule in ("argmax", "positive_logit"):
        row.update({f"{k}_{DECISION_RULES[rule]}": v for k, v in cd._tp_fp(decision(z, c, rule), is_c).items()})
    if z_val is not None:
        z_val, y_val = z_val.cpu(), torch.as_tensor(y_val).cpu()
        t = threshold_for_tp(z_val[:, c], y_val == c, tp)
        row.update({f"{k}_threshold": v for k, v in cd._tp_fp(decision(z, c, "val_threshold", t), is_c).items()})
        row.update(threshold=t, val_tp=float((z_val[y_val == c, c] >= t).double().mean()))
    else:
        row.update({f"{k}_threshold": float("nan") for k in ("tp", "fp", "balanced")},
                   collapsed_threshold=False, threshold=float("nan"), val_tp=float("nan"))
    has_both = bool(is_c.any()) and bool((~is_c).any())
    row.update(auc=cd._auc(z[:, c], is_c), fp_at_tp_roc=fp_at_tp(z[:, c], is_c, tp) if has_both else float("nan"),
               n_pos=int(is_c.sum()), n_neg=int((~is_c).sum()))
    return row


ROC_GRID = np.unique(np.round(np.concatenate([np.linspace(0, 0.1, 51), np.linspace(0.1, 1, 91)]), 6))


def roc_points(score: torch.Tensor, positive: torch.Tensor, grid: Sequence[float] | None = None) -> pd.DataFrame:
    """ROC curve of ``score`` for ``positive`` (scikit-learn's ``roc_curve``, collinear points dropped).

    Args:
        score, positive: scores and the boolean truth.
        grid: FP rates at which to read the curve (a compact curve for storing): the TP rate
            on the curve's straight segment through each, exact since the ROC of finite data is
            piecewise linear (tied scores give its diagonal segments), and the threshold of the
            last point at or below it; None: every point.

    Returns:
        DataFrame ``fpr``, ``tpr``, ``threshold``.
    """
    from sklearn.metrics import roc_curve
    positive = torch.as_tensor(positive).cpu().numpy().astype(bool)
    if positive.all() or not positive.any():
        raise ValueError("a ROC curve needs positive and negative images")
    fpr, tpr, thr = roc_curve(positive, torch.as_tensor(score).cpu().double().numpy(), drop_intermediate=True)
    if grid is not None:
        grid = np.asarray(grid, dtype=float)
        i = np.searchsorted(fpr, grid, side="right") - 1   # fpr[0] = 0, so i >= 0 for grid >= 0
        j = np.minimum(i + 1, len(fpr) - 1)
        step = fpr[j] - fpr[i]
        frac = np.divide(grid - fpr[i], step, out=np.zeros_like(grid), where=step > 0)
        fpr, tpr, thr = grid, tpr[i] + frac * (tpr[j] - tpr[i]), thr[i]
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr})


# ----------------------------------------------------------------------------- distilled networks, evaluated
class _Heads:
    """The model's layers below the first distilled conv, run once on each image set.

    Every distilled network (any class, ratio or calibration) shares those layers
    with the original, so only its own upper layers run per network.
    """

    def __init__(self, model: VGG, first_layer: str, loaders: dict, progress: bool = False):
        head, _ = cd._split(model, first_layer)
        device = cr._device_of(model)
        self.h, self.y = {}, {}
        with torch.no_grad(), cr._EvalMode(model):
            for name, loader in loaders.items():
                if loader is None:
                    continue
                hs, ys = [], []
                for x, yb in tqdm(loader, desc=f"heads ({name})", disable=not progress, leave=False):
                    hs.append(head(x.to(device)))
                    ys.append(torch.as_tensor(yb).cpu().long())
                if not hs:
                    raise ValueError(f"the {name} loader yielded no images")
                self.h[name], self.y[name] = hs, torch.cat(ys)


def _tail(model: VGG, first_layer: str) -> tuple[nn.Sequential, nn.Sequential]:
    """(convs from ``first_layer`` through the pooling and flattening, classifier), sharing modules."""
    _, tail = cd._split(model, first_layer)
    return tail[:-1], tail[-1]


@torch.no_grad()
def _run(module: nn.Module, hs: list[torch.Tensor]) -> torch.Tensor:
    with cr._EvalMode(module):
        return torch.cat([module(h) for h in hs])


def _classifier(classifier: nn.Sequential, hidden_bias: bool) -> nn.Sequential:
    """The classifier, or a copy whose hidden Linear layers (all but the last) have zero bias."""
    if hidden_bias:
        return classifier
    out = copy.deepcopy(classifier)
    linears = [m for m in out.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for m in linears[:-1]:
            if m.bias is not None:
                m.bias.zero_()
    return out


def calibrate(distilled: VGG, calibration: str, bn_loader=None, *, first_layer: str | None = None,
              bn_batches: int | None = None) -> VGG:
    """A copy of a distilled network prepared as :data:`CALIBRATIONS` ``[calibration]`` says.

    ``paper`` changes nothing (:func:`triage.surgery.distill` has zeroed the logit biases).
    ``bn``: the running statistics of every BN from ``first_layer`` up are re-estimated on
    ``bn_loader`` (training images) with :func:`triage.kmeans.recalibrate_bn`; the layers
    below are those of the original network, whose statistics still hold. ``hidden0``:
    the hidden Linear layers' biases are zeroed too.

    Args:
        distilled: output of :func:`triage.surgery.distill` (not modified).
        calibration: a name in :data:`CALIBRATIONS`.
        bn_loader: training images (needed by the ``bn`` calibrations).
        first_layer: the first distilled conv; default the first of the last six.
        bn_batches: use only the first batches of ``bn_loader``.

    Example:
        >>> small = calibrate(surgery.distill(model, kept), "bn", train_loader)   # doctest: +SKIP
    """
    cal = _check_calibrations(calibration)[0]
    if not isinstance(distilled, VGG):
        raise TypeError(f"calibrate needs a triage VGG, got {type(distilled).__name__}")
    out = copy.deepcopy(distilled)
    first = cr.resolve_layers(out, first_layer)[0] if first_layer is not None else cd.last_conv_layers(out)[0]
    if cal.bn:
        if bn_loader is None:
            raise ValueError(f"calibration {cal.name!r} re-estimates BN statistics: pass bn_loader")
        heads = _Heads(out, first, {"bn": bn_loader})
        recalibrate_bn(_tail(out, first)[0], [(h, None) for h in heads.h["bn"]], max_batches=bn_batches)
    out.classifier = _classifier(out.classifier, cal.hidden_bias)
    out.train(distilled.training)
    return out


def _calibrated_logits(model: VGG, first: str, heads: _Heads, calibrations: list[Calibration],
                       bn_batches: int | None) -> dict[str, dict[str, torch.Tensor]]:
    """{calibration: {'val': logits, 'test': logits}} of one network (already distilled)."""
    convs, clf = _tail(model, first)
    feats = {}
    for bn in sorted({c.bn for c in calibrations}):
        tail = convs
        if bn:
            tail = copy.deepcopy(convs)
            # the statistics of the distilled layers only: the shared lower layers are unchanged
            recalibrate_bn(tail, [(h, None) for h in heads.h["bn"]], max_batches=bn_batches)
        feats[bn] = {s: _run(tail, heads.h[s]) for s in ("val", "test") if s in heads.h}
    return {c.name: {s: _run(_classifier(clf, c.hidden_bias), [f]).float().cpu()
                     for s, f in feats[c.bn].items()} for c in calibrations}


def _class_list(maps: cr.ClassMaps, classes) -> list[int]:
    if classes is None:
        return list(range(len(maps.classes)))
    items = [classes] if isinstance(classes, (str, int, np.integer)) else list(classes)
    if not items:
        raise ValueError("classes is empty: give at least one class (or None for all)")
    return [maps.class_index(c) for c in items]


def distillation_rates(model: VGG, maps: cr.ClassMaps, test_loader, *, val_loader=None, bn_loader=None,
                       ratios: Sequence[float] = (cr.PAPER_RATIO,), calibrations=tuple(CALIBRATIONS),
                       classes=None, layers=None, tp: float = PAPER_TP, bn_batches: int | None = None,
                       progress: bool = True, _heads: _Heads | None = None,
                       _logits_at: tuple[float, dict] | None = None) -> pd.DataFrame:
    """Table 1 under every decision rule and calibration: distil each class at each ratio and measure it.

    Args:
        model: the trained VGG (not modified).
        maps: its :func:`triage.critical.class_maps` on training images.
        test_loader: images for the reported rates.
        val_loader: validation images (held out of training) for the ``val_threshold`` rule;
            None leaves that rule's columns NaN.
        bn_loader: training images for the ``bn`` calibrations (needed only by those).
        ratios: reserved ratios in (0, 1].
        calibrations: names in :data:`CALIBRATIONS` (default all four).
        classes: classes to distil (indexes or names); default all.
        layers: layers to distil; default the maps' last six.
        tp: operating point of the threshold rule and of ``fp_at_tp_roc``.
        bn_batches: use only the first batches of ``bn_loader``.
        progress: tqdm bar.

    Returns:
        One row per (ratio, calibration, class): ``ratio``, ``calibration``, ``class``,
        ``class_name``, ``kept`` (in the last distilled layer, e.g. ``26/256``), ``params``,
        ``mb``, then :func:`detector_rates`' columns.

    Example:
        >>> r = distillation_rates(model, maps, test, val_loader=val, bn_loader=train)   # doctest: +SKIP
        >>> r.groupby("calibration")[["balanced_argmax", "balanced_positive"]].mean()    # doctest: +SKIP
    """
    if not isinstance(model, VGG):
        raise TypeError(f"distillation needs a triage VGG, got {type(model).__name__}")
    ratios = [cr._check_ratio(r) for r in ([ratios] if isinstance(ratios, (int, float)) else ratios)]
    if not ratios:
        raise ValueError("ratios is empty")
    cals = _check_calibrations(calibrations)
    _check_tp(tp)
    cls_idx = _class_list(maps, classes)
    if any(c.bn for c in cals) and bn_loader is None and (_heads is None or "bn" not in _heads.h):
        raise ValueError("the 'bn' calibrations re-estimate BN statistics on training images: pass bn_loader")
    names = cd._distil_layers(maps, layers)
    first = cr.resolve_layers(model, names)[0]
    heads = _heads or _Heads(model, first, {"test": test_loader, "val": val_loader,
                                            "bn": bn_loader if any(c.bn for c in cals) else None})
    n_cls = _run(nn.Sequential(*_tail(model, first)), heads.h["test"][:1]).shape[1]
    if n_cls != len(maps.classes):
        raise ValueError(f"the maps have {len(maps.classes)} classes, the model {n_cls}")
    units = cr.conv_units(model)
    rows = []
    bar = tqdm(total=len(ratios) * len(cls_idx), desc="distil", disable=not progress, leave=False)
    for ratio in ratios:
        done = {}  # kept filters -> results: at ratio 1 every class keeps the same network
        for c in cls_idx:
            kept = cd.select_filters(maps, c, ratio, names)
            sig = tuple((n, tuple(v.tolist())) for n, v in kept.items())
            if sig not in done:
                small = distill(model, kept)
                done[sig] = (_calibrated_logits(small, first, heads, cals, bn_batches), cd.model_size(small))
            logits, size = done[sig]
            if _logits_at is not None and ratio == _logits_at[0]:
                _logits_at[1][c] = {cal: z["test"] for cal, z in logits.items()}
            last = list(kept)[-1]
            for cal in cals:
                z = logits[cal.name]
                rows.append({"ratio": ratio, "calibration": cal.name, "class": c, "class_name": maps.classes[c],
                             "kept": f"{len(kept[last])}/{units[last].filters}", **size,
                             **detector_rates(z["test"], heads.y["test"], c, z_val=z.get("val"),
                                              y_val=heads.y.get("val"), tp=tp)})
            bar.update()
    bar.close()
    return pd.DataFrame(rows)


def original_rates(model: VGG, test_loader, *, val_loader=None, tp: float = PAPER_TP, classes=None,
                   class_names: Sequence[str] | None = None, _heads: _Heads | None = None,
                   _first: str | None = None) -> pd.DataFrame:
    """The original network (its biases intact) read as ten one-vs-all detectors, every rule.

    Returns:
        One row per class with :func:`detector_rates`' columns, plus ``class``, ``class_name``.
    """
    first = _first or list(cr.conv_units(model))[0]
    heads = _heads or _Heads(model, first, {"test": test_loader, "val": val_loader})
    convs, clf = _tail(model, first)
    z = {s: _run(nn.Sequential(convs, clf), h).float().cpu() for s, h in heads.h.items() if s in ("val", "test")}
    names = cr._check_classes(z["test"].shape[1], class_names)
    idx = range(len(names)) if classes is None else [cr._class_index(c, names) for c in classes]
    return pd.DataFrame([{"class": c, "class_name": names[c],
                          **detector_rates(z["test"], heads.y["test"], c, z_val=z.get("val"),
                                           y_val=heads.y.get("val"), tp=tp)} for c in idx])


def summarise_rates(rates: pd.DataFrame) -> pd.DataFrame:
    """Mean over classes per (ratio, calibration); ``collapsed_*`` become counts of collapsed classes."""
    if rates.empty:
        raise ValueError("the rate table is empty")
    num = [c for c in rates.columns if c.startswith(("tp_", "fp_", "balanced_")) and c != "fp_at_tp_roc"] + [
        "auc", "fp_at_tp_roc", "val_tp", "mb", "params"]
    flags = [c for c in rates.columns if c.startswith("collapsed_")]
    g = rates.groupby(["ratio", "calibration"], sort=False)
    out = g[num].mean().join(g[flags].sum().astype(int)).join(g.size().rename("classes")).reset_index()
    order = {n: i for i, n in enumerate(CALIBRATIONS)}
    return out.sort_values(["ratio", "calibration"], key=lambda s: s.map(order) if s.name == "calibration" else s,
                           ignore_index=True)


def paper_table(rates: pd.DataFrame, *, ratio: float = cr.PAPER_RATIO, calibration: str = "paper",
                base_mb: float | None = None) -> pd.DataFrame:
    """The paper's Table 1 beside ours, per class, with the model size before and after distillation.

    Args:
        rates: :func:`distillation_rates` output (CIFAR-10: the paper's classes 0-9).
        ratio, calibration: which of our networks.
        base_mb: size of our original network (MB), for ``mb_before``.

    Returns:
        One row per class and a last ``mean`` row: the paper's ``paper_tp``, ``paper_fp``,
        ``paper_mb_before``/``after`` (59.0 / 11.4, one figure for all classes), then ours:
        TP/FP, balanced accuracy and collapse flag under each rule, ``auc``, ``fp_at_tp_roc``,
        ``mb_before``, ``mb_after``.
    """
    ratio = cr._check_ratio(ratio)
    _check_calibrations(calibration)
    sel = rates[np.isclose(rates["ratio"], ratio) & (rates["calibration"] == calibration)]
    if sel.empty:
        raise ValueError(f"no rates at ratio {ratio:g} with calibration {calibration!r}")
    cols = ["class", "class_name"] + [f"{m}_{s}" for s in DECISION_RULES.values()
                                      for m in ("tp", "fp", "balanced", "collapsed")] + ["auc", "fp_at_tp_roc"]
    t = sel[cols].set_index("class").join(cr.PAPER_TABLE1.add_prefix("paper_"), how="left")
    t["paper_mb_before"], t["paper_mb_after"] = cr.PAPER_SIZE_MB
    t["mb_before"] = base_mb if base_mb is not None else float("nan")
    t["mb_after"] = sel.set_index("class")["mb"]
    front = ["class_name", "paper_tp", "paper_fp"]
    t = t[front + [c for c in t.columns if c not in front]]
    mean = t.drop(columns="class_name").mean(numeric_only=True).astype(object)
    for c in t.columns:
        if c.startswith("collapsed_"):
            mean[c] = int(t[c].sum())  # the mean row counts collapsed classes
    mean["class_name"] = "mean"
    return pd.concat([t.reset_index(), pd.DataFrame([mean])], ignore_index=True)


# ----------------------------------------------------------------------------- plots
def plot_roc(roc: pd.DataFrame, ax=None, tp: float = PAPER_TP, title: str = "ROC of z_c", profile: str | None = None):
    """ROC curves (one per class of ``roc``: columns ``class_name``, ``fpr``, ``tpr``), with the
    paper's operating point (TP 98.6%, FP 11.0%) marked.

    Returns:
        the Axes.
    """
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4), constrained_layout=True)
    for name, d in roc.groupby("class_name", sort=False):
        ax.plot(d["fpr"], d["tpr"], lw=1, label=str(name))
    ax.axhline(tp, color="k", lw=0.6, ls=":")
    ax.plot([cr.PAPER_MEAN_FP], [cr.PAPER_MEAN_TP], "k*", ms=10, label="paper (mean)")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.6, ls="--")
    ax.set_xlabel("FP rate")
    ax.set_ylabel("TP rate")
    ax.set_title(title + (f" [profile: {profile}]" if profile else ""), fontsize=9)
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    return ax


def plot_calibration_sweep(summary: pd.DataFrame, profile: str | None = None):
    """Mean over classes against the reserved ratio, one line per calibration: balanced accuracy
    under the arg-max and z_c > 0 rules, ROC AUC, and the test FP rate at the validation
    threshold for TP 98.6% (the paper's mean FP, 11.0%, marked).

    Args:
        summary: :func:`summarise_rates` output.

    Returns:
        the Figure.
    """
    import matplotlib.pyplot as plt
    panels = (("balanced_argmax", "balanced accuracy, arg-max"), ("balanced_positive", "balanced accuracy, z_c > 0"),
              ("auc", "ROC AUC of z_c"), ("fp_threshold", "FP at TP 98.6% (val. threshold)"))
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.3), constrained_layout=True, sharex=True)
    for ax, (col, title) in zip(axes, panels):
        for i, (cal, d) in enumerate(summary.groupby("calibration", sort=False)):
            ax.plot(d["ratio"], d[col], "o-", ms=3, color=f"C{i}", label=cal)
        if col == "fp_threshold":
            ax.plot([cr.PAPER_RATIO], [cr.PAPER_MEAN_FP], "k*", ms=10, label="paper")
        else:
            ax.axhline(0.5, color="0.6", lw=0.6, ls="--")
        ax.set_xscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("reserved ratio")
        ax.set_ylim(-0.02, 1.02)
    axes[-1].legend(fontsize=7)
    fig.suptitle("Distillation by calibration (mean over classes)" + (f" [profile: {profile}]" if profile else ""),
                 fontsize=10)
    return fig
