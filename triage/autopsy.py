"""Autopsy of a trained classifier: what its weights and activations look like (Lorieul, Ghorra & Merialdo).

Reason to change: how the paper's static statistics (Sec. II) or its output sparsity (Sec. III-A)
are measured, or which modules count as a network's layers.

The paper dissects Caffe's AlexNet; every analysis here takes any ``nn.Module``
classifier (and, for the dynamic ones, a loader of ``(x, y)`` batches) and returns tables.

Static (weights only):

* :func:`parameter_table` -- parameters per layer and their share (Table I);
  :func:`filter_table` -- filters, spatial extent and depth per conv (Table II).
* :func:`weight_stats`, :func:`weight_histogram` -- value distributions of the
  conv and fully-connected parameters, their standard deviations and per-layer
  skewness (Sec. II-A/C, Figs. 1 and 3).
* :func:`filter_pca` -- cumulative explained variance alpha_k of the filters of
  each conv layer (Eq. 1, Fig. 2).

Dynamic (with data): :func:`output_sparsity` -- share of exact zeros after every ReLU
(Fig. 4); :func:`accuracy` and :func:`check_compatible`, shared with the perturbations of
:mod:`triage.robustness` (noise, rounding) and :mod:`triage.kmeans` (weight sharing).

Elsewhere: :mod:`triage.studies` runs every analysis on a stored base model and stores
the tables (``autopsy_run``); :mod:`triage.findings` checks the paper's observations
against them (book/autopsy.ipynb).

"Layer" means a module that owns a ``weight`` (by default every Conv and Linear,
the paper's conv1..fc8), and "its parameters" are its weight and bias together:
the paper's per-layer statistics, noise scale and k-means codebook are all over
"the parameters of that layer". BatchNorm affine parameters are left out by
default (AlexNet has none); pass ``layers=`` to choose others.

Every analysis works on the model without changing it, and forward hooks are removed
even when an analysis raises.

    >>> from triage import autopsy
    >>> int(autopsy.parameter_table(autopsy.alexnet_caffe()).loc["total", "params"])
    60965224
"""
from __future__ import annotations

import copy
import itertools
import numbers
from collections import OrderedDict
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .train import evaluate

__all__ = [
    "alexnet_caffe", "PAPER_TABLE1", "PAPER_TABLE1_SHARE", "PAPER_TABLE3", "PAPER_STD", "weight_layers", "layer_kind",
    "parameter_table", "filter_table", "layer_values", "weight_stats", "weight_histogram",
    "filter_pca", "check_compatible", "accuracy", "output_sparsity",
]

# ----------------------------------------------------------------------------- the paper's numbers
# Table I as printed. Its fc7 row (16,777,216 = 4096 x 4096) omits fc7's 4,096 biases, which
# its total counts: the rows sum to 60,961,128, the total is 60,965,224 (every weight and bias
# of Caffe's bvlc_alexnet). parameter_table's `weights` column reproduces the fc7 entry, its
# `params` column the total.
PAPER_TABLE1 = {
    "conv1": 34_944, "conv2": 307_456, "conv3": 885_120, "conv4": 663_936, "conv5": 442_624,
    "fc6": 37_752_832, "fc7": 16_777_216, "fc8": 4_097_000, "total": 60_965_224,
}
# Table I's "ratio of parameters" column, in percent.
PAPER_TABLE1_SHARE = {
    "conv1": 0.06, "conv2": 0.50, "conv3": 1.45, "conv4": 1.09, "conv5": 0.73,
    "fc6": 61.93, "fc7": 27.52, "fc8": 6.72,
}
# Table III: top-1 error (%) of AlexNet on the paper's 120-class ILSVRC subset (None: all decimals).
PAPER_TABLE3 = {None: 22.06, 5: 22.06, 4: 22.07, 3: 22.25, 2: 27.45, 1: 100.0}
# Sec. II-A: standard deviation of all conv / all fully-connected parameters of AlexNet.
PAPER_STD = {"conv": 1.69e-2, "fc": 5.68e-3}


# ----------------------------------------------------------------------------- AlexNet as the paper used it
def alexnet_caffe(num_classes: int = 1000) -> nn.Sequential:
    """Caffe's ``bvlc_alexnet`` (the network the paper dissects), untrained.

    Unlike torchvision's single-GPU AlexNet (64-192-384-256-256 filters), Caffe keeps
    Krizhevsky et al.'s two-GPU layout: 96-256-384-384-256 filters, with conv2, conv4
    and conv5 split into two groups, so their filters see half of the previous layer
    (depths 48, 192, 192) and fc6 sees 256 x 6 x 6 inputs of a 227 px image. With
    1000 classes this gives exactly Table I's total of 60,965,224 parameters.

    Only the structure is meaningful here: the weights are PyTorch's default
    initialisation, not Caffe's trained ones.

    Args:
        num_classes: outputs of fc8 (ILSVRC: 1000).

    Example:
        >>> m = alexnet_caffe()
        >>> m(torch.zeros(1, 3, 227, 227)).shape
        torch.Size([1, 1000])
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    lrn = dict(size=5, alpha=1e-4, beta=0.75, k=1.0)  # Caffe's norm1/norm2
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 96, 11, stride=4)), ("relu1", nn.ReLU(inplace=True)),
        ("norm1", nn.LocalResponseNorm(**lrn)), ("pool1", nn.MaxPool2d(3, 2)),
        ("conv2", nn.Conv2d(96, 256, 5, padding=2, groups=2)), ("relu2", nn.ReLU(inplace=True)),
        ("norm2", nn.LocalResponseNorm(**lrn)), ("pool2", nn.MaxPool2d(3, 2)),
        ("conv3", nn.Conv2d(256, 384, 3, padding=1)), ("relu3", nn.ReLU(inplace=True)),
        ("conv4", nn.Conv2d(384, 384, 3, padding=1, groups=2)), ("relu4", nn.ReLU(inplace=True)),
        ("conv5", nn.Conv2d(384, 256, 3, padding=1, groups=2)), ("relu5", nn.ReLU(inplace=True)),
        ("pool5", nn.MaxPool2d(3, 2)), ("flatten", nn.Flatten()),
        ("fc6", nn.Linear(256 * 6 * 6, 4096)), ("relu6", nn.ReLU(inplace=True)), ("drop6", nn.Dropout()),
        ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU(inplace=True)), ("drop7", nn.Dropout()),
        ("fc8", nn.Linear(4096, num_classes)),
    ]))


# ----------------------------------------------------------------------------- layers
def layer_kind(module: nn.Module) -> str:
    """``'conv'`` for any convolution, ``'fc'`` for nn.Linear, else the class name in lower case."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "fc"
    return type(module).__name__.lower()


def weight_layers(model: nn.Module, layers: Iterable[str] | None = None,
                  kinds: Sequence[str] = ("conv", "fc")) -> "OrderedDict[str, nn.Module]":
    """The layers an analysis works on, by qualified name, in registration (forward) order.

    Args:
        model: any nn.Module.
        layers: qualified module names (e.g. ``'features.block1.conv1'``); None selects
            every module whose :func:`layer_kind` is in ``kinds``.
        kinds: kinds selected when ``layers`` is None.

    Raises:
        ValueError: a named layer does not exist or owns no ``weight`` parameter, or
            nothing is selected.

    Example:
        >>> list(weight_layers(alexnet_caffe(), kinds=("fc",)))
        ['fc6', 'fc7', 'fc8']
    """
    modules = dict(model.named_modules())
    if layers is None:
        out = OrderedDict((n, m) for n, m in modules.items() if n and layer_kind(m) in kinds
                          and isinstance(getattr(m, "weight", None), nn.Parameter))
        if not out:
            raise ValueError(f"the model has no layer of kind {', '.join(kinds)} (Conv or Linear modules)")
        return out
    if isinstance(layers, str):
        layers = [layers]
    out = OrderedDict()
    for name in layers:
        if name not in modules:
            raise ValueError(f"the model has no module named {name!r}")
        if not isinstance(getattr(modules[name], "weight", None), nn.Parameter):
            raise ValueError(f"module {name!r} ({type(modules[name]).__name__}) has no weight parameter")
        out[name] = modules[name]
    if not out:
        raise ValueError("layers is empty; pass None for every Conv and Linear layer")
    return out


def _conv_layers(model: nn.Module, layers=None) -> "OrderedDict[str, nn.Module]":
    try:
        convs = weight_layers(model, layers, kinds=("conv",))
    except ValueError as e:
        if layers is None:
            raise ValueError("the model has no convolutional layer; filter analyses need nn.Conv2d "
                             "modules") from None
        raise e
    bad = [n for n, m in convs.items() if layer_kind(m) != "conv"]
    if bad:
        raise ValueError(f"filter analyses need conv layers; {', '.join(bad)} are not")
    return convs


def _layer_params(module: nn.Module) -> list[nn.Parameter]:
    """The layer's own weight and bias (the parameters the paper counts per layer)."""
    return [p for p in (getattr(module, "weight", None), getattr(module, "bias", None))
            if isinstance(p, nn.Parameter)]


def layer_values(module: nn.Module) -> torch.Tensor:
    """Every parameter value of a layer (weight then bias), flattened, detached, float64 on CPU."""
    return torch.cat([p.detach().reshape(-1).double().cpu() for p in _layer_params(module)])


# ----------------------------------------------------------------------------- static: tables
def parameter_table(model: nn.Module, total: bool = True) -> pd.DataFrame:
    """Parameters per layer and their share of the model's total (the paper's Table I).

    One row per module that directly owns parameters (Conv, Linear, BatchNorm, ...),
    in registration order, indexed by qualified name.

    Args:
        model: any nn.Module.
        total: append a ``total`` row (share 100%).

    Returns:
        DataFrame with columns ``kind``, ``weights`` (the ``weight`` tensor's size),
        ``biases``, ``params`` (all the module's own parameters) and ``share`` (percent
        of every parameter of the model).

    Example:
        >>> t = parameter_table(alexnet_caffe())
        >>> int(t.loc["conv1", "params"]), round(float(t.loc["fc6", "share"]), 2)
        (34944, 61.93)
    """
    rows = []
    for name, m in model.named_modules():
        own = list(m.named_parameters(recurse=False))
        if not own:
            continue
        w = sum(p.numel() for n, p in own if n == "weight")
        b = sum(p.numel() for n, p in own if n == "bias")
        rows.append({"layer": name or type(m).__name__, "kind": layer_kind(m), "weights": w,
                     "biases": b, "params": sum(p.numel() for _, p in own)})
    if not rows:
        raise ValueError("the model has no parameters")
    df = pd.DataFrame(rows).set_index("layer")
    n = int(df["params"].sum())
    df["share"] = 100.0 * df["params"] / n
    if total:
        df.loc["total"] = {"kind": "", "weights": int(df["weights"].sum()), "biases": int(df["biases"].sum()),
                           "params": n, "share": 100.0}
    for c in ("weights", "biases", "params"):
        df[c] = df[c].astype("int64")
    return df


def filter_table(model: nn.Module) -> pd.DataFrame:
    """Filters, spatial extent and depth of every conv layer (the paper's Table II).

    The depth is what one filter sees: ``in_channels / groups``. For Caffe's AlexNet
    that is 48 for conv2 (the paper's Table II prints 96, the whole of conv1's output,
    but its own Table I count of 307,456 needs 48), 192 for conv4 and conv5.

    Example:
        >>> filter_table(alexnet_caffe())["depth"].tolist()
        [3, 48, 256, 192, 192]
    """
    convs = _conv_layers(model)
    rows = [{"layer": n, "filters": m.out_channels, "extent": "×".join(map(str, m.kernel_size)),
             "depth": m.in_channels // m.groups, "groups": m.groups} for n, m in convs.items()]
    return pd.DataFrame(rows).set_index("layer")


# ----------------------------------------------------------------------------- static: distributions
def _moments(v: torch.Tensor) -> dict:
    """n, mean, std (population), Fisher-Pearson skewness g1 and excess kurtosis (scipy.stats defaults)."""
    v = v.double()
    mu = v.mean()
    d = v - mu
    m2 = (d * d).mean()
    sd = m2.sqrt()
    skew = ((d ** 3).mean() / m2 ** 1.5).item() if m2 > 0 else float("nan")
    kurt = ((d ** 4).mean() / m2 ** 2 - 3).item() if m2 > 0 else float("nan")
    return {"n": v.numel(), "mean": mu.item(), "std": sd.item(), "skewness": skew, "kurtosis": kurt}


def weight_stats(model: nn.Module, by: str = "layer", layers=None) -> pd.DataFrame:
    """Mean, standard deviation, skewness and excess kurtosis of the parameter values.

    Sec. II-A compares the standard deviation of all conv parameters with that of all
    fully-connected ones (AlexNet: 1.69e-2 vs 5.68e-3); Sec. II-C (Fig. 3) notes a
    skewness growing from fc6 to fc8. Standard deviations are population ones
    (ddof=0), skewness is Fisher-Pearson's g1, as ``scipy.stats.skew`` computes it.

    Args:
        model: any nn.Module.
        by: ``'layer'`` (one row per layer) or ``'kind'`` (all conv parameters pooled,
            all fc parameters pooled).
        layers: see :func:`weight_layers`.

    Example:
        >>> weight_stats(model, by="kind").loc["conv", "std"]      # doctest: +SKIP
        0.0169
    """
    sel = weight_layers(model, layers)
    if by == "layer":
        rows = [{"layer": n, "kind": layer_kind(m), **_moments(layer_values(m))} for n, m in sel.items()]
        return pd.DataFrame(rows).set_index("layer")
    if by == "kind":
        groups: dict[str, list[torch.Tensor]] = {}
        for m in sel.values():
            groups.setdefault(layer_kind(m), []).append(layer_values(m))
        rows = [{"kind": k, **_moments(torch.cat(vs))} for k, vs in groups.items()]
        return pd.DataFrame(rows).set_index("kind")
    raise ValueError(f"by must be 'layer' or 'kind', got {by!r}")


def weight_histogram(model: nn.Module, by: str = "kind", bins: int = 101, layers=None,
                     clip: float | None = 4.0) -> pd.DataFrame:
    """Histograms of the parameter values, as a tidy table (Figs. 1 and 3).

    Computed with ``torch.histc`` so that 100M-parameter models plot instantly.

    Args:
        model: any nn.Module.
        by: ``'kind'`` (conv vs fc, Fig. 1) or ``'layer'`` (e.g. fc6..fc8, Fig. 3).
        bins: bins per group.
        layers: see :func:`weight_layers`.
        clip: the range of each group is mean +- clip standard deviations (the
            extreme tails are a handful of values); None uses min..max.

    Returns:
        DataFrame with columns ``group``, ``kind``, ``centre``, ``count``, ``density``
        (count / (n * bin width), so groups of different sizes compare).
    """
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    sel = weight_layers(model, layers)
    if by == "layer":
        groups = [(n, layer_kind(m), layer_values(m)) for n, m in sel.items()]
    elif by == "kind":
        pooled: dict[str, list[torch.Tensor]] = {}
        for m in sel.values():
            pooled.setdefault(layer_kind(m), []).append(layer_values(m))
        groups = [(k, k, torch.cat(vs)) for k, vs in pooled.items()]
    else:
        raise ValueError(f"by must be 'layer' or 'kind', got {by!r}")
    frames = []
    for name, kind, v in groups:
        if clip is None:
            lo, hi = v.min().item(), v.max().item()
        else:
            mu, sd = v.mean().item(), v.std(unbiased=False).item()
            lo, hi = max(v.min().item(), mu - clip * sd), min(v.max().item(), mu + clip * sd)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        counts = torch.histc(v, bins=bins, min=lo, max=hi)
        width = (hi - lo) / bins
        centre = lo + width * (torch.arange(bins, dtype=torch.float64) + 0.5)
        frames.append(pd.DataFrame({"group": name, "kind": kind, "centre": centre.numpy(),
                                    "count": counts.numpy(), "density": (counts / (v.numel() * width)).numpy()}))
    return pd.concat(frames, ignore_index=True)


def filter_pca(model: nn.Module, layers=None) -> pd.DataFrame:
    """Cumulative explained variance of the filters of each conv layer (Eq. 1, Fig. 2).

    Each filter (``weight[o]``, in_channels/groups x kh x kw values) is one sample;
    the eigenvalues lambda_1 >= lambda_2 >= ... of the filters' covariance give
    ``alpha_k = sum_{i<=k} lambda_i / sum_i lambda_i`` (the paper writes ``i < k`` with
    0-based indices). There are ``min(filters, depth*kh*kw)`` components, as in
    scikit-learn's PCA; ``k_frac = k / components`` lets layers of different sizes
    share one axis. A curve that rises slowly means filters that are less correlated.

    Args:
        model: a model with conv layers.
        layers: conv layer names; None for all.

    Returns:
        DataFrame with columns ``layer``, ``k``, ``components``, ``k_frac``, ``alpha``.

    Raises:
        ValueError: the model has no conv layer.

    Example:
        >>> df = filter_pca(alexnet_caffe())
        >>> df[df.k == 1].set_index("layer").alpha          # doctest: +SKIP
    """
    frames = []
    for name, m in _conv_layers(model, layers).items():
        w = m.weight.detach().double().cpu().reshape(m.weight.shape[0], -1)
        r = min(w.shape)
        if w.shape[0] < 2:
            lam = torch.zeros(r, dtype=torch.float64)
        else:
            s = torch.linalg.svdvals(w - w.mean(0, keepdim=True))
            lam = torch.zeros(r, dtype=torch.float64)
            lam[: min(r, s.numel())] = (s ** 2)[:r] / (w.shape[0] - 1)
        tot = lam.sum()
        alpha = torch.cumsum(lam, 0) / tot if tot > 0 else torch.ones(r, dtype=torch.float64)
        k = np.arange(1, r + 1)
        frames.append(pd.DataFrame({"layer": name, "k": k, "components": r, "k_frac": k / r,
                                    "alpha": alpha.numpy()}))
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- dynamic: data and evaluation
def _device_of(model: nn.Module) -> torch.device:
    p = next(itertools.chain(model.parameters(), model.buffers()), None)
    return p.device if p is not None else torch.device("cpu")


class _Limited:
    """Re-iterable view of the first ``max_batches`` batches of a loader."""

    def __init__(self, loader, max_batches: int | None):
        self.loader, self.max_batches = loader, max_batches

    def __iter__(self):
        return iter(self.loader) if self.max_batches is None else itertools.islice(self.loader, self.max_batches)


def _limit(loader, max_batches):
    if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(max_batches, numbers.Integral)
                                    or max_batches < 1):
        raise ValueError(f"max_batches must be a positive integer or None, got {max_batches!r}")
    return _Limited(loader, None if max_batches is None else int(max_batches))


def check_compatible(model: nn.Module, loader, num_classes: int | None = None) -> int:
    """Check that ``loader``'s data fits ``model`` and return the model's number of outputs.

    Runs the model on the first batch (in eval mode, without gradients) and compares
    its output size with the labels: every label must be a valid output index (a
    model may have more outputs than the data has classes, as the paper's 1000-class
    AlexNet on a 120-class subset), and ``num_classes`` (e.g. ``spec.num_classes``),
    when given, must equal the output size. Labels are read from ``loader.y`` when the
    loader has it (triage's DeviceLoader), else from the first batch.

    Raises:
        ValueError: the loader is empty, the images do not fit the model's input
            (e.g. 1-channel MNIST into a 3-channel model), or the classes differ.

    Example:
        >>> _, test, sp = get_loaders("cifar10", test_per_class=10)   # doctest: +SKIP
        >>> check_compatible(model, test, sp.num_classes)                 # doctest: +SKIP
        10
    """
    try:
        x, y = next(iter(loader))
    except StopIteration:
        raise ValueError("the loader yields no batch") from None
    except (TypeError, ValueError) as e:
        raise ValueError(f"the loader must yield (x, y) batches ({type(e).__name__}: {e})") from None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except RuntimeError as e:
        raise ValueError(f"the loader's images (shape {tuple(x.shape)}) do not fit the model: "
                         f"{str(e).splitlines()[0]}") from None
    finally:
        model.train(was_training)
    if out.ndim != 2:
        raise ValueError(f"the model must output (batch, classes) logits, got shape {tuple(out.shape)}")
    n_out = out.shape[1]
    labels = getattr(loader, "y", y)
    top = int(torch.as_tensor(labels).max()) if len(labels) else -1
    if num_classes is not None and num_classes != n_out:
        raise ValueError(f"the data set has {num_classes} classes but the model outputs {n_out}; "
                         "pass the loader of the data set the model was trained on")
    if top >= n_out or int(torch.as_tensor(labels).min()) < 0:
        raise ValueError(f"the data set has labels up to {top} but the model outputs only {n_out} "
                         "classes; pass the loader of the data set the model was trained on")
    return n_out


def accuracy(model: nn.Module, loader, max_batches: int | None = None, amp_dtype=None) -> dict:
    """``triage.train.evaluate`` on the first ``max_batches`` batches: ``{'loss', 'acc', 'n'}``."""
    return evaluate(model, _limit(loader, max_batches), device=_device_of(model), amp_dtype=amp_dtype)


def _working_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode: analyses change it, never the caller's model."""
    return copy.deepcopy(model).eval()


# ----------------------------------------------------------------------------- dynamic: sparsity
def output_sparsity(model: nn.Module, loader, max_batches: int | None = None,
                    modules: Iterable[str] | None = None, check: bool = True,
                    num_classes: int | None = None) -> pd.DataFrame:
    """Share of exact zeros in the output of every ReLU over a data set (Fig. 4).

    A forward hook on each ``nn.ReLU`` counts the zeros of its output as it is
    produced (VGG's ReLUs are in place, so the input tensor *is* the output; nothing
    after the hook runs before the count). Hooks are removed in a ``finally``, also
    when the forward raises. ``functional.relu`` calls cannot be hooked: the model
    must use ``nn.ReLU`` modules. The row ``output`` is the softmax of the logits
    (the paper's fc8, sparsity 0 unless probabilities underflow).

    Args:
        model: the classifier (not modified; run in eval mode).
        loader: (x, y) batches, e.g. a test DeviceLoader.
        max_batches: use only the first batches.
        modules: names of the modules to hook; None for every nn.ReLU.
        check: run :func:`check_compatible` first.
        num_classes: passed to :func:`check_compatible`.

    Returns:
        DataFrame indexed by module name, with ``after`` (the last Conv/Linear before
        it, e.g. ``features.block1.conv1``), ``zeros``, ``values`` and ``sparsity``.

    Example:
        >>> output_sparsity(model, test_loader, max_batches=4).sparsity   # doctest: +SKIP
    """
    named = dict(model.named_modules())
    if modules is None:
        names = [n for n, m in named.items() if isinstance(m, nn.ReLU)]
        if not names:
            raise ValueError("the model has no nn.ReLU module to hook (functional relu cannot be hooked)")
    else:
        names = [modules] if isinstance(modules, str) else list(modules)
        missing = [n for n in names if n not in named]
        if missing:
            raise ValueError(f"the model has no module named {', '.join(map(repr, missing))}")
    # The producing layer of each ReLU: the last conv/linear registered before it.
    after, last = {}, ""
    for n, m in named.items():
        if layer_kind(m) in ("conv", "fc"):
            last = n
        after[n] = last
    if check:
        check_compatible(model, loader, num_classes)
    dev = _device_of(model)
    zeros = {n: torch.zeros((), dtype=torch.long, device=dev) for n in names}
    total = dict.fromkeys(names, 0)

    def counter(name):
        def hook(_module, _inputs, output):
            zeros[name] += (output == 0).sum()
            total[name] += output.numel()
        return hook

    out_zeros = torch.zeros((), dtype=torch.long, device=dev)
    out_total = 0
    handles = []
    was_training = model.training
    try:
        for n in names:
            handles.append(named[n].register_forward_hook(counter(n)))
        model.eval()
        with torch.no_grad():
            for x, _ in _limit(loader, max_batches):
                probs = torch.softmax(model(x).float(), dim=1)
                out_zeros += (probs == 0).sum()
                out_total += probs.numel()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    rows = [{"module": n, "after": after.get(n, ""), "zeros": int(zeros[n]), "values": total[n]} for n in names]
    rows.append({"module": "output", "after": "softmax", "zeros": int(out_zeros), "values": out_total})
    df = pd.DataFrame(rows).set_index("module")
    df["sparsity"] = df["zeros"] / df["values"].clip(lower=1)
    return df
