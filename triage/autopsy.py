"""Static and dynamic autopsy of a trained classifier (Lorieul, Ghorra & Merialdo).

The paper dissects Caffe's AlexNet; every analysis here takes any ``nn.Module``
classifier (and, for the dynamic ones, a loader of ``(x, y)`` batches).

Static (weights only):

* :func:`parameter_table` -- parameters per layer and their share (Table I);
  :func:`filter_table` -- filters, spatial extent and depth per conv (Table II).
* :func:`weight_stats`, :func:`weight_histogram` -- value distributions of the
  conv and fully-connected parameters, their standard deviations and per-layer
  skewness (Sec. II-A/C, Figs. 1 and 3).
* :func:`filter_pca` -- cumulative explained variance alpha_k of the filters of
  each conv layer (Eq. 1, Fig. 2).

Dynamic (with data):

* :func:`output_sparsity` -- share of exact zeros after every ReLU (Fig. 4).
* :func:`add_weight_noise`, :func:`noise_sweep` -- Gaussian noise scaled by each
  layer's standard deviation, for all layers at once (Fig. 5) or one layer at a
  time (the paper's stated future work, Sec. III-C).
* :func:`round_weights`, :func:`rounding_table` -- keep d decimals (Table III).
* :func:`kmeans_1d`, :func:`kmeans_quantise`, :func:`kmeans_sweep` -- scalar
  k-means weight sharing, one codebook per layer (Fig. 6).
* :func:`filter_kmeans`, :func:`filter_kmeans_sweep` -- every conv filter replaced
  by its cluster centroid (Fig. 7); optionally followed by :func:`recalibrate_bn`
  (VGG16-BN's BatchNorm statistics, which AlexNet does not have).

All together: :func:`analyse_run` runs every analysis on a stored base model and
stores the tables under ``results/autopsy/``; :func:`findings` and :func:`verdicts`
check the paper's observations against them (book/autopsy.ipynb).

"Layer" means a module that owns a ``weight`` (by default every Conv and Linear,
the paper's conv1..fc8), and "its parameters" are its weight and bias together:
the paper's per-layer statistics, noise scale and k-means codebook are all over
"the parameters of that layer". BatchNorm affine parameters are left out by
default (AlexNet has none); pass ``layers=`` to choose others.

Every analysis that changes weights works on a deep copy: the model passed in is
unchanged afterwards, and forward hooks are removed even when an analysis raises.

    >>> from triage import autopsy
    >>> int(autopsy.parameter_table(autopsy.alexnet_caffe()).loc["total", "params"])
    60965224
"""
from __future__ import annotations

import copy
import itertools
import math
import numbers
from collections import OrderedDict
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .train import evaluate

__all__ = [
    "alexnet_caffe", "PAPER_TABLE1", "PAPER_TABLE1_SHARE", "PAPER_TABLE3", "PAPER_STD", "weight_layers", "layer_kind",
    "parameter_table", "filter_table", "layer_values", "weight_stats", "weight_histogram",
    "filter_pca", "check_compatible", "accuracy", "output_sparsity", "add_weight_noise",
    "noise_sweep", "round_weights", "rounding_table", "KMeans1D", "kmeans_1d", "kmeans_quantise",
    "kmeans_sweep", "filter_kmeans", "filter_kmeans_sweep", "recalibrate_bn", "SWEEPS", "analyse_run", "findings",
    "verdicts",
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


# ----------------------------------------------------------------------------- dynamic: noise
def _check_p(p: float) -> float:
    if not isinstance(p, numbers.Real) or isinstance(p, bool) or not math.isfinite(p):
        raise ValueError(f"noise strength p must be a finite number, got {p!r}")
    if p < 0:
        raise ValueError(f"noise strength p must be >= 0 (a fraction of each layer's std), got {p}")
    return float(p)


def _noise_into(layers: "OrderedDict[str, nn.Module]", originals: dict, p: float,
                generator: torch.Generator) -> None:
    """Set every selected layer's parameters to original + N(0, (p * sigma_layer)^2)."""
    with torch.no_grad():
        for name, m in layers.items():
            sigma = originals[name]["sigma"]
            for param, orig in zip(_layer_params(m), originals[name]["values"]):
                # Drawn on the CPU: the same seed gives the same noise on every device.
                noise = torch.randn(orig.shape, generator=generator, dtype=torch.float32)
                param.copy_(orig + (p * sigma) * noise.to(orig.device, orig.dtype))


def _restore(layers, originals: dict) -> None:
    with torch.no_grad():
        for name, m in layers.items():
            for param, orig in zip(_layer_params(m), originals[name]["values"]):
                param.copy_(orig)


def _originals(layers) -> dict:
    return {n: {"values": [q.detach().clone() for q in _layer_params(m)],
                "sigma": layer_values(m).std(unbiased=False).item()} for n, m in layers.items()}


def add_weight_noise(model: nn.Module, p: float, layers=None, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with Gaussian noise on its weights (Sec. III-C, Fig. 5).

    Each selected layer's parameters (weight and bias) get i.i.d. noise
    ``N(0, (p * sigma_layer)^2)``, where sigma_layer is the standard deviation of that
    layer's own parameters: "if a layer has a large standard deviation, a larger
    noise should be added". ``p = 0.1`` is the paper's 10% strength.

    Args:
        model: not modified.
        p: noise strength as a fraction of each layer's std (>= 0).
        layers: see :func:`weight_layers` (None: every Conv and Linear).
        seed: seed of the noise draw.

    Example:
        >>> noisy = add_weight_noise(model, 0.1, seed=1)        # doctest: +SKIP
    """
    p = _check_p(p)
    out = _working_copy(model)
    sel = weight_layers(out, layers)
    _noise_into(sel, _originals(sel), p, torch.Generator().manual_seed(seed))
    return out


def noise_sweep(model: nn.Module, loader, ps: Sequence[float] = (0, .05, .1, .2, .3, .4, .5, .6, .8, 1.0),
                draws: int = 3, per_layer: bool = False, layers=None, seed: int = 0,
                max_batches: int | None = None, num_classes: int | None = None,
                progress: bool = True) -> pd.DataFrame:
    """Accuracy under weight noise for a sweep of strengths, several draws each (Fig. 5).

    Args:
        model: not modified (one working copy is re-noised from the original values).
        loader: (x, y) batches; use a fixed (test) loader so that every point sees the
            same images.
        ps: noise strengths as fractions of each layer's std (0.1 = 10%).
        draws: noise draws per strength (the spread shows in the plot).
        per_layer: noise one layer at a time instead (one ``target`` per layer), the
            paper's future work on which layers are more sensitive.
        layers: layers to noise (None: every Conv and Linear).
        seed: draw d of strength index i uses seed ``seed + 1000 * i + d``, whichever target.
        max_batches: evaluate on the first batches only.
        num_classes: passed to :func:`check_compatible`.
        progress: tqdm bar.

    Returns:
        DataFrame with columns ``target`` (``'all'`` or a layer name), ``p``, ``draw``,
        ``acc``, ``error``, ``loss``.
    """
    ps = [_check_p(p) for p in ps]
    if not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws!r}")
    check_compatible(model, loader, num_classes)
    work = _working_copy(model)
    sel = weight_layers(work, layers)
    originals = _originals(sel)
    targets = [(n, OrderedDict([(n, m)])) for n, m in sel.items()] if per_layer else [("all", sel)]
    jobs = [(t, i, p, d) for t in targets for i, p in enumerate(ps) for d in range(draws)]
    rows = []
    for (tname, tlayers), i, p, d in tqdm(jobs, desc="noise", disable=not progress, leave=False):
        _restore(sel, originals)
        _noise_into(tlayers, originals, p, torch.Generator().manual_seed(seed + 1000 * i + d))
        r = accuracy(work, loader, max_batches)
        rows.append({"target": tname, "p": p, "draw": d, "acc": r["acc"], "error": 1 - r["acc"],
                     "loss": r["loss"]})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- dynamic: rounding
def _check_decimals(d) -> int | None:
    if d is None:
        return None
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
        raise ValueError(f"decimals must be an integer >= 0 or None (keep all), got {d!r}")
    if d < 0:
        raise ValueError(f"decimals must be >= 0 (digits after the decimal point), got {d}")
    return int(d)


def round_weights(model: nn.Module, decimals: int | None, layers=None) -> nn.Module:
    """A copy of ``model`` whose parameters keep ``decimals`` digits after the point (Table III).

    Decimals count after the decimal point, not significant digits (Table III's
    caption): with 2 decimals 0.00493 becomes 0.0 and 0.0187 becomes 0.02. Rounding is
    half-to-even (``torch.round``), done in float64 and stored back in the parameter's
    dtype (so 0.1 is float32's nearest value).

    Args:
        model: not modified.
        decimals: digits kept (>= 0); None keeps everything (the "all" row).
        layers: see :func:`weight_layers`.

    Example:
        >>> m = round_weights(model, 3)                           # doctest: +SKIP
    """
    decimals = _check_decimals(decimals)
    out = _working_copy(model)
    if decimals is None:
        return out
    with torch.no_grad():
        for m in weight_layers(out, layers).values():
            for param in _layer_params(m):
                param.copy_(torch.round(param.double(), decimals=decimals).to(param.dtype))
    return out


def rounding_table(model: nn.Module, loader, decimals: Sequence[int | None] = (None, 5, 4, 3, 2, 1),
                   layers=None, max_batches: int | None = None, num_classes: int | None = None,
                   progress: bool = True) -> pd.DataFrame:
    """Top-1 error after rounding every parameter to d decimals (the paper's Table III).

    Returns:
        DataFrame with columns ``decimals`` (``'all'`` or d), ``acc``, ``error`` (top-1,
        in [0, 1]), ``loss`` and ``distinct`` (distinct parameter values left, all
        selected layers together).
    """
    decimals = [_check_decimals(d) for d in decimals]
    check_compatible(model, loader, num_classes)
    rows = []
    for d in tqdm(decimals, desc="rounding", disable=not progress, leave=False):
        m = round_weights(model, d, layers)
        r = accuracy(m, loader, max_batches)
        vals = torch.cat([layer_values(x) for x in weight_layers(m, layers).values()])
        rows.append({"decimals": "all" if d is None else d, "acc": r["acc"], "error": 1 - r["acc"],
                     "loss": r["loss"], "distinct": int(torch.unique(vals.float()).numel())})
        del m
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- scalar k-means
class KMeans1D(NamedTuple):
    """Result of :func:`kmeans_1d`."""
    centroids: torch.Tensor   # (K,) float64, strictly increasing
    labels: torch.Tensor      # int64, the input's shape: index of each value's centroid
    inertia: float            # sum of squared distances to the centroids
    iterations: int           # Lloyd iterations (0 for the exact method or K >= distinct values)


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"the number of clusters K must be an integer >= 1, got {k!r}")
    if k < 1:
        raise ValueError(f"the number of clusters K must be >= 1, got {k}")
    return int(k)


def _dp_bounds(W: np.ndarray, S: np.ndarray, Q: np.ndarray, k: int) -> np.ndarray:
    """Optimal bounds b[0]=0 < ... < b[k]=m of k contiguous clusters, given prefix sums.

    W, S, Q (length m+1) are prefix sums of count, value and value^2 over m sorted
    cells. Dynamic programming D_k(i) = min_j D_{k-1}(j) + cost(j, i) over the first i
    cells. The optimal j is monotone in i, so each row is computed by divide and
    conquer; one level of the recursion (all its sub-problems at once) is one
    vectorised numpy pass over at most m + (#sub-problems) candidates: a row costs
    O(m log m) in ~log2(m) passes (Gronlund et al. 2017, "Fast exact k-means,
    k-medians and Bregman divergence clustering in 1D").
    """
    m = W.size - 1
    if k >= m:
        return np.arange(m + 1)
    if k * (m + 1) > 50_000_000:
        raise ValueError(f"exact 1-D k-means with K={k} on {m} distinct values needs K*m = "
                         f"{k * m:.2e} table entries (limit 5e7); use method='fast'")

    def cost(a, b):
        s, w = S[b] - S[a], W[b] - W[a]
        return np.maximum(Q[b] - Q[a] - s * s / np.maximum(w, 1e-300), 0.0)

    def argmin(prev, i, lo, hi):
        """min over j in [lo_s, hi_s] of prev[j] + cost(j, i_s), per segment s, in one pass."""
        lens = hi - lo + 1
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
        seg = np.repeat(np.arange(i.size), lens)
        j = lo[seg] + np.arange(seg.size) - starts[seg]
        val = prev[j] + cost(j, i[seg])
        best = np.minimum.reduceat(val, starts)
        hit = np.flatnonzero(val <= best[seg])              # first minimiser of each segment
        first = hit[np.concatenate([[True], seg[hit[1:]] != seg[hit[:-1]]])]
        return best, j[first]

    prev = cost(np.zeros(m + 1, dtype=np.int64), np.arange(m + 1))  # D_1(i): cells [0, i) in one cluster
    opts = np.zeros((k + 1, m + 1), dtype=np.int64)
    rows = np.arange(m + 1)
    budget = 3 * (m + 1) * max(1, int(np.log2(m + 1)))
    for kk in range(2, k + 1):
        cur = np.full(m + 1, np.inf)
        # The last cluster never starts earlier with one cluster more: opt_{k-1}(i) <= opt_k(i)
        # (the bound Ckmeans.1d.dp uses). With many clusters the candidate ranges
        # [opt_{k-1}(i), i-1] are short: then one pass over all of them beats the
        # ~log2(m) passes of divide and conquer.
        low = np.maximum(opts[kk - 1], kk - 1) if kk > 2 else np.full(m + 1, kk - 1)
        i_all = rows[kk:]
        if int((i_all - low[kk:]).sum()) <= budget:
            cur[kk:], opts[kk, kk:] = argmin(prev, i_all, low[kk:], i_all - 1)
            prev = cur
            continue
        # Divide and conquer: sub-problems are rows i in [il, ir] whose optimal j lies in [jl, jh].
        il, ir = np.array([kk]), np.array([m])
        jl, jh = np.array([kk - 1]), np.array([m - 1])
        while il.size:
            mid = (il + ir) // 2
            hi = np.minimum(jh, mid - 1)
            lo = np.minimum(np.maximum(jl, low[mid]), hi)
            best, opt = argmin(prev, mid, lo, hi)
            cur[mid], opts[kk, mid] = best, opt
            left, right = mid - 1 >= il, mid + 1 <= ir
            il, ir, jl, jh = (np.concatenate([il[left], mid[right] + 1]),
                              np.concatenate([mid[left] - 1, ir[right]]),
                              np.concatenate([jl[left], opt[right]]),
                              np.concatenate([opt[left], jh[right]]))
        prev = cur
    b = np.zeros(k + 1, dtype=np.int64)
    b[k] = i = m
    for kk in range(k, 1, -1):
        i = b[kk - 1] = opts[kk, i]
    return b


class _Sorted1D:
    """Distinct sorted values with counts and prefix sums: any contiguous cluster's size,
    sum and squared error cost O(1), so a k-means step costs O(K log m), not O(n K)."""

    def __init__(self, values):
        t = torch.as_tensor(values).detach()
        self.shape = tuple(t.shape)
        t = t.reshape(-1).cpu()
        if t.dtype not in (torch.float32, torch.float64):
            t = t.to(torch.float64)                          # ints, halves: exact in float64
        x = t.numpy()
        if x.size == 0:
            raise ValueError("k-means needs at least one value")
        if not np.isfinite(x).all():
            raise ValueError("k-means values must be finite (found nan or inf)")
        self.x = x
        # One O(n log n) sort, in the values' own dtype (float32 weights sort twice as fast);
        # sums are then taken in float64.
        self.u_native, c = np.unique(x, return_counts=True)
        self.u = self.u_native.astype(np.float64)
        self.shift = float(x.mean(dtype=np.float64))         # centre: keeps Q - S^2/W accurate
        v = self.u - self.shift
        self.W = np.concatenate([[0.0], np.cumsum(c, dtype=np.float64)])
        self.S = np.concatenate([[0.0], np.cumsum(c * v)])
        self.Q = np.concatenate([[0.0], np.cumsum(c * v * v)])
        self.m = self.u.size

    def cost(self, a, b):
        """Squared error of the clusters made of distinct values [a, b) (arrays allowed)."""
        s, w = self.S[b] - self.S[a], self.W[b] - self.W[a]
        return np.maximum(self.Q[b] - self.Q[a] - s * s / np.maximum(w, 1), 0.0)

    def result(self, b: np.ndarray, iterations: int) -> KMeans1D:
        """KMeans1D from cluster bounds b (b[0]=0 < ... < b[K]=m, indices into u)."""
        a, e = b[:-1], b[1:]
        cent = (self.S[e] - self.S[a]) / (self.W[e] - self.W[a]) + self.shift
        labels = np.searchsorted(self.u_native[b[1:-1]], self.x, side="right")
        inertia = float(self.cost(a, e).sum())
        return KMeans1D(torch.from_numpy(cent), torch.from_numpy(labels).reshape(self.shape),
                        inertia, iterations)

    @staticmethod
    def _strict(b: np.ndarray, k: int, m: int) -> np.ndarray:
        """Make inner bounds strictly increasing within [1, m-1]: no cluster is empty."""
        j = np.arange(1, k)
        b = np.maximum.accumulate(np.maximum(b, 1) - j) + j
        return np.minimum(b, m - k + j)

    def _lloyd_bounds(self, k: int, max_iter: int, inner: np.ndarray | None = None):
        """Lloyd's algorithm on the inner bounds (default start: equal-count clusters).

        Returns (bounds b[0]=0 < ... < b[K]=m, iterations)."""
        m = self.m
        if inner is None:
            inner = np.searchsorted(self.W, self.W[-1] * np.arange(1, k) / k, side="left")
        inner = self._strict(np.asarray(inner), k, m)
        it = 0
        for it in range(1, max_iter + 1):
            b = np.concatenate([[0], inner, [m]])
            cent = (self.S[b[1:]] - self.S[b[:-1]]) / (self.W[b[1:]] - self.W[b[:-1]])
            # Lloyd's assignment step in 1-D: each value goes to its nearest centroid, so the
            # bounds are the midpoints between consecutive centroids.
            mids = (cent[:-1] + cent[1:]) / 2 + self.shift
            new = self._strict(np.searchsorted(self.u, mids, side="left"), k, m)
            if np.array_equal(new, inner):
                break
            inner = new
        return np.concatenate([[0], inner, [m]]), it

    def lloyd(self, k: int, max_iter: int) -> KMeans1D:
        return self.result(*self._lloyd_bounds(k, max_iter))

    def exact(self, k: int) -> KMeans1D:
        """The optimal K-partition (every bound between distinct values allowed)."""
        return self.result(_dp_bounds(self.W, self.S, self.Q, k), 0)

    def fast(self, k: int, grid: int, max_iter: int) -> KMeans1D:
        """Optimal partition with bounds on a coarse grid, then Lloyd from it.

        The grid is the union of ``grid`` equal-count bounds (resolution where the values
        are dense), ``grid`` equal-width bounds (resolution in the tails, where the
        optimal clusters are wide and thin) and ``grid`` bounds evenly spaced over the
        distinct values. The DP on the grid is exact for clusters
        that start and end on grid bounds, so it lands next to the global optimum's
        basin; Lloyd then moves the bounds freely, never increasing the error.
        """
        m = self.m
        if m <= 2 * grid:
            return self.exact(k)
        by_count = np.searchsorted(self.W, self.W[-1] * np.arange(1, grid) / grid, side="left")
        by_value = np.searchsorted(self.u, np.linspace(self.u[0], self.u[-1], grid + 1)[1:-1], side="left")
        by_index = np.linspace(0, m, grid + 1).round().astype(np.int64)  # >= grid cells in all
        e = np.unique(np.concatenate([by_index, by_count, by_value]))
        start = e[_dp_bounds(self.W[e], self.S[e], self.Q[e], k)]
        b, it = self._lloyd_bounds(k, max_iter, start[1:-1])
        # Lloyd never increases the error; keep the start anyway should a clamp have done so
        if self.cost(b[:-1], b[1:]).sum() > self.cost(start[:-1], start[1:]).sum():
            b, it = start, 0
        return self.result(b, it)

    def fit(self, k: int, method: str = "fast", max_iter: int = 10_000, grid: int = 256) -> KMeans1D:
        k = _check_k(k)
        if method not in ("fast", "exact", "lloyd"):
            raise ValueError(f"method must be 'fast', 'exact' or 'lloyd', got {method!r}")
        if k >= self.m:  # every distinct value is its own centroid: zero error
            return self.result(np.arange(self.m + 1), 0)
        if method == "fast":
            return self.fast(k, max(grid, 4 * k), max_iter)
        if method == "exact":
            return self.exact(k)
        return self.lloyd(k, max_iter)


def kmeans_1d(values, k: int, method: str = "fast", max_iter: int = 10_000) -> KMeans1D:
    """Scalar k-means (the paper's 1-D codebook, Sec. III-D) of any array of values.

    Why this beats ``sklearn.cluster.KMeans`` on weights: in one dimension the clusters
    of the optimum, and of every Lloyd fixed point, are contiguous runs of the sorted
    values. After one O(n log n) sort (duplicates merged into counts) and prefix sums
    of count, value and value^2, the centroid and squared error of any run cost O(1),
    independent of its size. scikit-learn instead evaluates all n x K point-centroid
    distances in every Lloyd iteration and in its k-means++ seeding (O(n K log K)),
    and stops at a tolerance from a random start. Methods:

    * ``'fast'`` (default): the optimal partition among those whose bounds lie on a
      grid of a few thousand cells (equal-count, equal-width and equal-rank bounds),
      by the exact dynamic programme below; then Lloyd's algorithm on the bounds, where
      an iteration is K binary searches (nearest-centroid = between the midpoints) and
      K prefix-sum differences, run until the bounds stop moving. Cost after the sort:
      O(K g log g) for g grid cells, independent of n. On the 2.4M weights of a VGG16
      conv layer (2 CPU cores) it took 0.2-0.5 s for every K in 2..256, against 0.6 s
      (K=2) to 35 s (K=256) for ``KMeans(n_init=1)``, with an inertia 0.01% (K=2) to 5%
      (K=128) lower (benchmarks/kmeans_1d.py measures both). On 20k Gaussian, Laplace and
      mixture samples it came within 0.05% of the exact optimum for K <= 32 and 0.5% for
      K <= 256, where scikit-learn was 3-10% above it for K >= 32.
    * ``'exact'``: the optimal partition by dynamic programming over all distinct values
      (Gronlund et al. 2017), O(K m log m) time, O(K m) memory: for tests and small layers
      (``'fast'`` uses it when there are at most twice the grid's distinct values).
    * ``'lloyd'``: Lloyd's algorithm from equal-count clusters alone (fast, but stuck in
      poor local optima for large K; for comparison).

    If ``k`` is at least the number of distinct values, each distinct value is its own
    centroid. Otherwise there are exactly K clusters, none empty, so the quantised
    values ``centroids[labels]`` take exactly K distinct values.

    Args:
        values: tensor or array of any shape (flattened; computed in float64).
        k: number of clusters (>= 1).
        method: ``'fast'``, ``'exact'`` or ``'lloyd'``.
        max_iter: Lloyd iterations at most.

    Returns:
        :class:`KMeans1D` (centroids, labels of the input's shape, inertia, iterations).

    Example:
        >>> r = kmeans_1d(torch.tensor([0., 0.1, 0.9, 1.0, 5.0]), 2)
        >>> [round(c, 3) for c in r.centroids.tolist()], r.labels.tolist()
        ([0.5, 5.0], [0, 0, 0, 0, 1])
    """
    k = _check_k(k)
    return _Sorted1D(values).fit(k, method, max_iter)


def _quantise_layers(layers, prepared: dict, k: int, method: str) -> dict:
    """Replace each layer's parameters by their k-means centroids; returns distinct counts."""
    distinct = {}
    with torch.no_grad():
        for name, m in layers.items():
            r = prepared[name].fit(k, method)
            q = r.centroids[r.labels]
            offset = 0
            for param in _layer_params(m):
                n = param.numel()
                param.copy_(q[offset: offset + n].reshape(param.shape).to(param.device, param.dtype))
                offset += n
            distinct[name] = r.centroids.numel()
    return distinct


def kmeans_quantise(model: nn.Module, k: int, layers=None, method: str = "fast") -> nn.Module:
    """A copy of ``model`` sharing K values per layer (scalar k-means, Sec. III-D, Fig. 6).

    "We learn one specific codebook for each layer": all the parameters of a layer
    (weight and bias) are clustered together with :func:`kmeans_1d`, and each is
    replaced by its centroid, so every layer holds exactly ``min(K, distinct values)``
    distinct values. (Storing the float64 centroids back in float32 cannot merge two:
    clusters are runs of sorted float32 values, so each centroid rounds to a value
    between its cluster's smallest and largest member.)

    Args:
        model: not modified.
        k: codebook size per layer (>= 1).
        layers: see :func:`weight_layers`.
        method: ``'fast'``, ``'exact'`` or ``'lloyd'`` (see :func:`kmeans_1d`).

    Example:
        >>> q = kmeans_quantise(nn.Sequential(nn.Linear(100, 10)), 32)
        >>> torch.unique(torch.cat([q[0].weight.flatten(), q[0].bias])).numel()
        32
    """
    k = _check_k(k)
    out = _working_copy(model)
    sel = weight_layers(out, layers)
    _quantise_layers(sel, {n: _Sorted1D(layer_values(m)) for n, m in sel.items()}, k, method)
    return out


def kmeans_sweep(model: nn.Module, loader, ks: Sequence[int] = (2, 4, 8, 16, 32, 64, 128, 256),
                 layers=None, method: str = "fast", max_batches: int | None = None,
                 num_classes: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Accuracy after scalar k-means weight sharing, for a sweep of K (Fig. 6).

    Each layer's values are sorted once and reused for every K.

    Returns:
        DataFrame with columns ``k``, ``acc``, ``error``, ``loss``, ``max_distinct``
        (the largest number of distinct values in any layer: K, or less for a layer
        with fewer values) and ``bits`` (log2 K, the index width a codebook needs).
    """
    ks = [_check_k(k) for k in ks]
    check_compatible(model, loader, num_classes)
    work = _working_copy(model)
    sel = weight_layers(work, layers)
    prepared = {n: _Sorted1D(layer_values(m)) for n, m in sel.items()}
    rows = []
    for k in tqdm(ks, desc="k-means", disable=not progress, leave=False):
        distinct = _quantise_layers(sel, prepared, k, method)
        r = accuracy(work, loader, max_batches)
        rows.append({"k": k, "acc": r["acc"], "error": 1 - r["acc"], "loss": r["loss"],
                     "max_distinct": max(distinct.values()), "bits": math.log2(k)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- filter (vector) k-means
def _kmeans_vectors(x: torch.Tensor, c: int, generator: torch.Generator, n_iter: int = 100):
    """k-means++ seeding then Lloyd on the rows of x (float64). Returns (centroids, labels)."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    cent = [x[first]]
    d2 = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, c):
        if d2.sum() <= 0:  # fewer distinct filters than clusters: take any not yet chosen
            nxt = int(torch.randint(n, (1,), generator=generator))
        else:
            nxt = int(torch.multinomial(d2 / d2.sum(), 1, generator=generator))
        cent.append(x[nxt])
        d2 = torch.minimum(d2, ((x - x[nxt]) ** 2).sum(1))
    cent = torch.stack(cent)
    labels = torch.cdist(x, cent).argmin(1)
    for _ in range(n_iter):
        counts = torch.bincount(labels, minlength=c).to(x.dtype)
        sums = torch.zeros_like(cent).index_add_(0, labels, x)
        keep = counts > 0  # an emptied cluster keeps its old centroid
        cent = torch.where(keep[:, None], sums / counts.clamp(min=1)[:, None], cent)
        new = torch.cdist(x, cent).argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
    return cent, labels


def _filter_quantise(convs, originals: dict, clusters: int, seed: int) -> None:
    with torch.no_grad():
        for i, (name, m) in enumerate(convs.items()):
            w = originals[name]
            n = w.shape[0]
            if clusters >= n:
                m.weight.copy_(w)
                continue
            x = w.reshape(n, -1).double().cpu()
            cent, labels = _kmeans_vectors(x, clusters, torch.Generator().manual_seed(seed + i))
            m.weight.copy_(cent[labels].reshape(w.shape).to(w.device, w.dtype))


def filter_kmeans(model: nn.Module, clusters: int, layers=None, seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose conv filters are replaced by their cluster centroids (Fig. 7).

    Per conv layer, the filters (``weight[o]`` as vectors; biases unchanged) are
    clustered into ``clusters`` groups by k-means (k-means++ seeding, Lloyd to
    convergence) and each filter becomes its cluster's centroid: the layer keeps at
    most ``clusters`` distinct filters. A layer with no more filters than ``clusters``
    is left as it is.

    Args:
        model: not modified.
        clusters: clusters per layer (>= 1).
        layers: conv layer names (None: every conv layer).
        seed: seed of the k-means++ seeding.

    Raises:
        ValueError: the model has no conv layer, or clusters < 1.

    Example:
        >>> q = filter_kmeans(model, 8)                               # doctest: +SKIP
    """
    clusters = _check_k(clusters)
    out = _working_copy(model)
    convs = _conv_layers(out, layers)
    _filter_quantise(convs, {n: m.weight.detach().clone() for n, m in convs.items()}, clusters, seed)
    return out


def recalibrate_bn(model: nn.Module, loader, max_batches: int | None = None) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance on ``loader`` (in place).

    The statistics are reset and averaged over the batches with equal weight
    (``momentum=None``); only the BN layers run in train mode, nothing is learnt. Used
    after filter k-means: a centroid filter's outputs no longer match the running
    statistics of the filter it replaced (AlexNet, the paper's network, has no BN).

    Args:
        model: changed in place (pass a copy) and returned, in eval mode.
        loader: (x, y) batches, e.g. training images.
        max_batches: use only the first batches.

    Example:
        >>> q = recalibrate_bn(filter_kmeans(model, 8), train_loader, max_batches=10)   # doctest: +SKIP
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    model.eval()
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            for x, _ in _limit(loader, max_batches):
                model(x)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.eval()
    return model


def filter_kmeans_sweep(model: nn.Module, loader, clusters: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128),
                        layers=None, seed: int = 0, max_batches: int | None = None,
                        num_classes: int | None = None, bn_loader=None, bn_batches: int | None = None,
                        progress: bool = True) -> pd.DataFrame:
    """Accuracy after filter k-means in every conv layer at once, for a sweep of cluster counts (Fig. 7).

    Args:
        model: not modified.
        loader: (x, y) test batches.
        clusters: clusters per conv layer.
        layers: conv layers to cluster (None: all).
        seed: seed of the k-means++ seeding.
        max_batches: evaluate on the first batches only.
        num_classes: passed to :func:`check_compatible`.
        bn_loader: if given, every point is also evaluated after :func:`recalibrate_bn` on
            these (training) batches: rows with ``bn == 'recalibrated'``.
        bn_batches: batches of ``bn_loader`` to use.
        progress: tqdm bar.

    Returns:
        DataFrame with columns ``clusters``, ``bn`` (``'original'`` running statistics, or
        ``'recalibrated'``), ``acc``, ``error``, ``loss`` and ``filter_share``: the share of
        filters kept distinct, mean over conv layers of min(clusters, filters) / filters.
    """
    clusters = [_check_k(c) for c in clusters]
    convs_orig = _conv_layers(model, layers)
    check_compatible(model, loader, num_classes)
    work = _working_copy(model)
    convs = _conv_layers(work, list(convs_orig))
    originals = {n: m.weight.detach().clone() for n, m in convs.items()}
    bn_state = {k: v.clone() for k, v in work.state_dict().items() if "running_" in k or "num_batches" in k}
    rows = []
    for c in tqdm(clusters, desc="filter k-means", disable=not progress, leave=False):
        work.load_state_dict(bn_state, strict=False)       # the original running statistics
        _filter_quantise(convs, originals, c, seed)
        share = float(np.mean([min(c, m.out_channels) / m.out_channels for m in convs.values()]))
        modes = [("original", None)] + ([("recalibrated", bn_loader)] if bn_loader is not None else [])
        for mode, bl in modes:
            if bl is not None:
                recalibrate_bn(work, bl, bn_batches)
            r = accuracy(work, loader, max_batches)
            rows.append({"clusters": c, "bn": mode, "acc": r["acc"], "error": 1 - r["acc"], "loss": r["loss"],
                         "filter_share": share})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- one stored run, every analysis
# Default sweeps of the chapter (book/autopsy.ipynb); the paper's own points where it gives them.
SWEEPS = {
    "noise_ps": (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0),   # Fig. 5: 0-100%
    "noise_draws": 3,
    "layer_noise_ps": (0.2, 0.5),                                  # one layer at a time
    "layer_noise_draws": 1,
    "decimals": (None, 5, 4, 3, 2, 1),                             # Table III
    "ks": (1, 2, 4, 8, 16, 32, 64, 128, 256),                      # Fig. 6
    "filter_clusters": (1, 2, 4, 8, 16, 32, 64),                   # Fig. 7
    "bn_batches": 4,         # training batches (256 images) to re-estimate BN after filter k-means
}
# Bump when an analysis changes its output: stored results of older versions are then recomputed.
_ANALYSIS_VERSION = 1
_TABLES = ("params", "filters", "stats_layer", "stats_kind", "hist_kind", "hist_fc", "pca", "sparsity",
           "noise", "layer_noise", "rounding", "kmeans", "filter_kmeans")


def analyse_run(cfg, *, store=None, results_dir="results/autopsy", max_batches: int | None = None,
                recompute: bool = False, device="cpu", data_root=None, seed: int = 0,
                progress: bool = False, **sweeps) -> dict:
    """Every analysis of the paper on the trained network of one run config, stored and reused.

    The run is trained or reused with ``triage.run`` (so a stored base costs nothing),
    evaluated on the run's own test subset, and every table is written as CSV to
    ``<results_dir>/<profile>/<dataset>/<run name>-<run key>/<analysis key>/`` beside an
    ``autopsy.json`` with the parameters. A later call with the same run and parameters
    reads them back without touching the model (so a book can be built from stored
    results alone).

    Args:
        cfg: a ``RunConfig`` (``triage.make_config(dataset, profile=...)``).
        store: the ``RunStore`` of the runs (None: the default one).
        results_dir: root of the stored analysis results.
        max_batches: test batches per evaluation (None: the whole test subset).
        recompute: ignore stored results.
        device: where the model and data live during the analyses.
        data_root: data root for the loaders.
        seed: seed of the noise draws and filter k-means seeding.
        progress: tqdm bars.
        **sweeps: overrides of :data:`SWEEPS` (noise_ps, noise_draws, layer_noise_ps,
            layer_noise_draws, decimals, ks, filter_clusters, bn_batches).

    Returns:
        dict with ``meta`` (parameters, base accuracy, timings) and one DataFrame per
        table: params, filters, stats_layer, stats_kind, hist_kind, hist_fc, pca,
        sparsity, noise, layer_noise, rounding, kmeans, filter_kmeans.

    Example:
        >>> res = analyse_run(triage.make_config("mnist", profile="smoke"))   # doctest: +SKIP
        >>> res["rounding"]                                                   # doctest: +SKIP
    """
    import hashlib
    import json
    import time
    from pathlib import Path

    from . import __version__
    from .data import get_loaders, spec
    from .experiments import RunStore, load_model, run

    unknown = set(sweeps) - set(SWEEPS)
    if unknown:
        raise ValueError(f"unknown sweep(s) {', '.join(sorted(unknown))}; choose from {', '.join(SWEEPS)}")
    params = {**SWEEPS, **sweeps, "max_batches": max_batches, "seed": seed, "version": _ANALYSIS_VERSION}
    params = {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in params.items()}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    out = Path(results_dir) / cfg.profile / cfg.dataset / f"{cfg.name}-{cfg.key()}" / key
    meta_path = out / "autopsy.json"
    if not recompute and meta_path.exists() and all((out / f"{t}.csv").exists() for t in _TABLES):
        res = {"meta": json.loads(meta_path.read_text())}
        for t in _TABLES:
            res[t] = pd.read_csv(out / f"{t}.csv", keep_default_na=False, na_values=[""])
        return res

    t0 = time.perf_counter()
    store = store or RunStore()
    run_dir = run(cfg, store, data_root=data_root, device=device, progress=progress, log=lambda *a: None)
    model = load_model(run_dir, device)
    # The run's own stratified subsets: its test images, and training images for BN statistics.
    train, test, sp = get_loaders(cfg.dataset, root=data_root, batch_size=256, device=device,
                                  train_per_class=cfg.train_per_class, test_per_class=cfg.test_per_class,
                                  seed=cfg.seed, resolution=cfg.resolution)
    nc = spec(cfg.dataset).num_classes
    common = dict(max_batches=max_batches, num_classes=nc, progress=progress)
    base = accuracy(model, test, max_batches)
    fcs = list(weight_layers(model, kinds=("fc",)))
    res = {
        "params": parameter_table(model).reset_index(),
        "filters": filter_table(model).reset_index(),
        "stats_layer": weight_stats(model).reset_index(),
        "stats_kind": weight_stats(model, by="kind").reset_index(),
        "hist_kind": weight_histogram(model, by="kind"),
        "hist_fc": weight_histogram(model, by="layer", layers=fcs),
        "pca": filter_pca(model),
        "sparsity": output_sparsity(model, test, max_batches, num_classes=nc).reset_index(),
        "noise": noise_sweep(model, test, params["noise_ps"], params["noise_draws"], seed=seed, **common),
        "layer_noise": noise_sweep(model, test, params["layer_noise_ps"], params["layer_noise_draws"],
                                   per_layer=True, seed=seed, **common),
        "rounding": rounding_table(model, test, params["decimals"], **common),
        "kmeans": kmeans_sweep(model, test, params["ks"], **common),
        "filter_kmeans": filter_kmeans_sweep(model, test, params["filter_clusters"], seed=seed,
                                             bn_loader=train, bn_batches=params["bn_batches"], **common),
    }
    res["meta"] = {
        "params": params, "analysis_key": key, "run_key": cfg.key(), "run_name": cfg.name,
        "dataset": cfg.dataset, "profile": cfg.profile, "run_seed": cfg.seed,
        "base_acc": base["acc"], "base_loss": base["loss"], "test_images": base["n"],
        "num_classes": sp.num_classes, "data_note": sp.note, "triage_version": __version__,
        "seconds": round(time.perf_counter() - t0, 1), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.mkdir(parents=True, exist_ok=True)
    for t in _TABLES:
        res[t].to_csv(out / f"{t}.csv", index=False)
    meta_path.write_text(json.dumps(res["meta"], indent=2, sort_keys=True) + "\n")
    return res


# ----------------------------------------------------------------------------- the paper's claims, checked
def _smallest(df: pd.DataFrame, col: str, ok: pd.Series):
    """Smallest value of ``col`` among rows where ``ok`` holds and keeps holding above it."""
    d = df.assign(_ok=ok.to_numpy()).sort_values(col)
    bad = d.loc[~d["_ok"], col]
    rest = d[d[col] > bad.max()] if len(bad) else d
    return rest[col].iloc[0] if len(rest) else None


def findings(results: dict, tolerance: float = 1.0) -> pd.DataFrame:
    """The numbers behind each of the paper's observations, one row per data set.

    Args:
        results: data set -> :func:`analyse_run` output.
        tolerance: accuracy loss (points) that counts as "unaffected".

    Returns:
        DataFrame indexed by data set with: base_acc, test_images, conv_share (% of
        parameters in conv layers), conv_std, fc_std, fc_skew_first, fc_skew_last,
        pca_first_half (alpha at half the components in the first conv layer),
        pca_depth_corr (Spearman correlation of depth with alpha at half the components;
        negative = curves flatten with depth), sparsity_conv (mean over conv ReLUs),
        sparsity_fc (mean over fc ReLUs), noise10_drop (points lost at 10% noise, mean of
        draws), noise_tolerance (largest strength losing <= tolerance), noise_knee_drop
        (points lost at the strongest swept noise <= 60%), layer_most / layer_least
        (the layer whose noise alone costs most / least at the largest per-layer
        strength), decimals_needed (fewest decimals losing <= tolerance), k_needed
        (smallest K losing <= tolerance for it and every larger K), k32_drop,
        clusters_needed / clusters_share (same for filter k-means, and the share of filters
        it keeps distinct; None if none in the sweep), clusters_needed_recal /
        clusters_share_recal (the same after re-estimating the BN statistics).
    """
    rows = {}
    for ds, r in results.items():
        base = r["meta"]["base_acc"]
        pts = lambda acc: 100 * (base - acc)  # noqa: E731 - points of accuracy lost
        params = r["params"].set_index("layer")
        body = params.drop(index="total")
        st = r["stats_layer"].set_index("layer")
        fc = st[st["kind"] == "fc"]
        kind = r["stats_kind"].set_index("kind")
        pca = r["pca"]
        half = pca[pca["k"] == np.ceil(pca["components"] / 2)].drop_duplicates("layer")
        order = {n: i for i, n in enumerate(st.index)}
        depth = half["layer"].map(order)
        sp = r["sparsity"]
        relu = sp[sp["module"] != "output"]
        kinds = st["kind"].reindex(relu["after"]).to_numpy()
        noise = r["noise"].groupby("p")["acc"].mean()
        ln = r["layer_noise"]
        ln = ln[(ln["target"] != "all") & (ln["p"] == ln["p"].max())].groupby("target")["acc"].mean()
        rnd = r["rounding"].copy()
        rnd_num = rnd[rnd["decimals"].astype(str) != "all"].assign(decimals=lambda t: t["decimals"].astype(int))
        km, fk = r["kmeans"], r["filter_kmeans"]
        if "bn" not in fk.columns:
            fk = fk.assign(bn="original")
        knee = noise[noise.index <= 0.6]
        rows[ds] = {
            "base_acc": base, "test_images": r["meta"]["test_images"],
            "conv_share": 100 * body.loc[body["kind"] == "conv", "params"].sum() / params.loc["total", "params"],
            "conv_std": kind.loc["conv", "std"], "fc_std": kind.loc["fc", "std"] if "fc" in kind.index else np.nan,
            "fc_skew_first": fc["skewness"].iloc[0] if len(fc) else np.nan,
            "fc_skew_last": fc["skewness"].iloc[-1] if len(fc) else np.nan,
            "pca_first_half": half["alpha"].iloc[0],
            "pca_depth_corr": pd.Series(depth.to_numpy()).corr(pd.Series(half["alpha"].to_numpy()),
                                                              method="spearman"),
            "sparsity_conv": relu.loc[kinds == "conv", "sparsity"].mean(),
            "sparsity_fc": relu.loc[kinds == "fc", "sparsity"].mean(),
            "noise10_drop": pts(noise.get(0.1, np.nan)),
            "noise_tolerance": _smallest_tolerance(noise, base, tolerance),
            "noise_knee_p": knee.index.max(), "noise_knee_drop": pts(knee.iloc[-1]),
            "layer_noise_p": r["layer_noise"]["p"].max(),
            "layer_most": ln.idxmin(), "layer_most_drop": pts(ln.min()),
            "layer_least": ln.idxmax(), "layer_least_drop": pts(ln.max()),
            "decimals_needed": _smallest(rnd_num, "decimals", pts(rnd_num["acc"]) <= tolerance + 1e-9),
            "decimals2_drop": pts(rnd_num.set_index("decimals")["acc"].get(2, np.nan)),
            "k_needed": _smallest(km, "k", pts(km["acc"]) <= tolerance + 1e-9),
            "k32_drop": pts(km.set_index("k")["acc"].get(32, np.nan)),
            **_clusters_needed(fk, pts, tolerance),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _clusters_needed(fk: pd.DataFrame, pts, tolerance: float) -> dict:
    """Smallest filter-cluster count within tolerance, and its share of filters, per BN mode."""
    out = {}
    for mode, suffix in (("original", ""), ("recalibrated", "_recal")):
        d = fk[fk["bn"] == mode]
        c = _smallest(d, "clusters", pts(d["acc"]) <= tolerance + 1e-9) if len(d) else None
        out["clusters_needed" + suffix] = c
        out["clusters_share" + suffix] = d.set_index("clusters")["filter_share"].get(c, np.nan) if c else np.nan
    return out


def _smallest_tolerance(noise: pd.Series, base: float, tolerance: float) -> float:
    """Largest swept strength p such that it and every weaker one lose <= tolerance points."""
    ok = 100 * (base - noise) <= tolerance + 1e-9   # 1e-9: 71% - 70% is 1.0000000000000009 points
    bad = ok[~ok]
    return float(noise.index.max() if bad.empty else max([p for p in noise.index if p < bad.index.min()],
                                                         default=0.0))


def verdicts(f: pd.DataFrame, tolerance: float = 1.0) -> dict:
    """One markdown sentence per observation of the paper, true for whatever numbers ``f`` holds.

    Args:
        f: :func:`findings` output.
        tolerance: the points of accuracy that count as "unaffected" (as in findings).

    Returns:
        dict observation -> markdown string (glue them with ``IPython.display.Markdown``).
    """
    def each(fmt, col):
        vals = [fmt(v) for v in (f[col] if isinstance(col, str) else col)]
        if len(vals) > 1 and len(set(vals)) == 1:
            return f"{vals[0]} for every data set"
        return ", ".join(f"{ds}: {v}" for ds, v in zip(f.index, vals))

    def share(cond, yes, some, no):
        n = int(cond.sum())
        return yes if n == len(cond) else (no if n == 0 else some)

    pts = lambda v: f"{v:+.1f} points" if pd.notna(v) else "n/a"  # noqa: E731
    pct = lambda v: f"{100 * v:.0f}%"  # noqa: E731
    out = {}
    out["params"] = (f"Share of the parameters in conv layers: {each(lambda v: f'{v:.1f}%', 'conv_share')}. "
                     + share(f["conv_share"] < 4, "As in AlexNet, the convs hold under 4%.",
                             "Only some of our models have AlexNet's under 4% in the convs.",
                             "Not AlexNet's under 4%: at 32 or 64 px our VGG16-BN has a 512-wide head "
                             "instead of two 4096-wide layers, so most parameters sit in the convs."))
    out["std"] = (f"Standard deviation of conv vs fc parameters: "
                  + ", ".join(f"{ds}: {r.conv_std:.2e} vs {r.fc_std:.2e}" for ds, r in f.iterrows()) + ". "
                  + share(f["conv_std"] > f["fc_std"], "As in AlexNet (1.69e-2 vs 5.68e-3), the conv "
                          "parameters are the more spread.", "AlexNet's order (conv more spread than fc) "
                          "holds for some data sets only.", "Unlike AlexNet (1.69e-2 vs 5.68e-3), the fc "
                          "parameters are at least as spread as the conv ones."))
    out["skew"] = (f"Skewness of the first vs last fc layer: "
                   + ", ".join(f"{ds}: {r.fc_skew_first:.2f} vs {r.fc_skew_last:.2f}" for ds, r in f.iterrows())
                   + ". " + share(f["fc_skew_last"] > f["fc_skew_first"], "The skewness grows towards the "
                                  "output, as the paper saw from fc6 to fc8.", "The paper's growth of skewness "
                                  "towards the output shows for some data sets only.", "The skewness does not "
                                  "grow towards the output, unlike the paper's fc6 to fc8."))
    out["pca"] = (f"Spearman correlation between a conv layer's depth and the variance its first half "
                  f"of components explains: {each(lambda v: f'{v:.2f}', 'pca_depth_corr')}; first layer: "
                  f"{each(pct, 'pca_first_half')} with half of its components. "
                  + share(f["pca_depth_corr"] <= -0.5, "The curves flatten with depth, as the paper found: "
                          "deeper filters are less correlated.", "The curves flatten with depth for some "
                          "data sets only.", "The curves do not clearly flatten with depth, unlike the paper's."))
    out["sparsity"] = (f"Mean share of zeros after the conv ReLUs: {each(pct, 'sparsity_conv')}; after the "
                       f"fc ReLUs: {each(pct, 'sparsity_fc')}. "
                       + share(f["sparsity_fc"] > 0.8, "As in the paper, the fc features are over 80% sparse.",
                               "The paper's over-80% fc sparsity holds for some data sets only.",
                               "The fc features are less sparse than the paper's over 80%."))
    out["noise"] = (f"Noise of 10% of each layer's std changes the accuracy by "
                    f"{each(lambda v: pts(-v), 'noise10_drop')}; the largest strength costing at most "
                    f"{tolerance:g} point is {each(pct, 'noise_tolerance')}. "
                    + share(f["noise10_drop"] <= tolerance, "The paper's ~10% noise tolerance holds.",
                            "The paper's ~10% noise tolerance holds for some data sets only.",
                            "The paper's ~10% noise tolerance does not hold here."))
    out["layer_noise"] = ("Noise in one layer alone (at "
                          + each(pct, "layer_noise_p") + "): the most sensitive layer is "
                          + ", ".join(f"{ds}: {r.layer_most} ({pts(-r.layer_most_drop)})" for ds, r in f.iterrows())
                          + "; the least, " + ", ".join(f"{ds}: {r.layer_least} ({pts(-r.layer_least_drop)})"
                                                        for ds, r in f.iterrows()) + ".")
    dec = lambda v: "none of the swept" if v is None or pd.isna(v) else f"{int(v)}"  # noqa: E731
    pct = lambda v: "n/a" if pd.isna(v) else f"{100 * v:.0f}%"  # noqa: E731
    out["rounding"] = (f"Fewest decimals that cost at most {tolerance:g} point: {each(dec, 'decimals_needed')} "
                       f"(the paper: 4, with 3 costing 0.19 points). "
                       + share(f["decimals_needed"].fillna(99) <= 4, "Four decimals are enough here too, as in the paper.",
                               "Four decimals are enough for some data sets only.",
                               "Four decimals are not enough here."))
    out["kmeans"] = (f"Smallest codebook K within {tolerance:g} point of the unquantised network (and for every "
                     f"larger K): {each(dec, 'k_needed')}; K=32 changes the accuracy by "
                     f"{each(lambda v: pts(-v), 'k32_drop')}. "
                     + share(f["k32_drop"] <= tolerance, "The paper's K=32 sufficiency holds.",
                             "The paper's K=32 sufficiency holds for some data sets only.",
                             "The paper's K=32 sufficiency does not hold here."))
    def clusters(suffix):
        # "k (x% of the filters kept distinct)" per data set; a value, not a sentence part, so that
        # each()'s "... for every data set" reads right after the colon.
        return each(lambda v: "more than any swept" if v[0] is None or pd.isna(v[0]) else
                    f"{int(v[0])} ({100 * v[1]:.0f}% of the filters kept distinct on average)",
                    list(zip(f["clusters_needed" + suffix], f["clusters_share" + suffix])))

    out["filter_kmeans"] = (f"Clusters per conv layer that filter k-means needs to stay within {tolerance:g} "
                            f"point: {clusters('')}"
                            + (f"; with the BN statistics re-estimated afterwards: {clusters('_recal')}"
                               if "clusters_needed_recal" in f else "") + ". "
                            + share(f["clusters_share"].fillna(1) >= 0.5, "As in the paper, vector quantisation "
                                    "of filters needs many clusters.", "Many clusters are needed for some data "
                                    "sets only.", "Unlike in the paper, few clusters suffice."))
    return out


def profile_note(profile: str) -> str:
    """One sentence on what the autopsy verdicts of a profile's bases can claim (the chapter's caveat)."""
    from .experiments import PROFILES
    p = PROFILES[profile]
    if profile == "smoke":
        return ("At the `smoke` profile these verdicts describe tiny, briefly trained networks evaluated on a "
                "few hundred images: they illustrate the method, not the paper's claims.")
    if profile == "cpu":
        return (f"These verdicts describe networks of width {p.width:g} trained for {p.base_epochs} epochs on "
                f"about {p.train_images:,} images (see the first table for each base's accuracy, far below "
                "full scale on CIFAR-100 and Stanford Dogs); `-p profile paper` gives claims about full-width "
                "VGG16-BN trained as in the paper.")
    if p.stopping == "plateau":
        return (f"These verdicts describe the {profile} profile's converged bases: width {p.width:g} VGG16-BN "
                "trained on the full training sets to a validation plateau (see the first table for their "
                "accuracy), evaluated on the first test images as the first table says.")
    return "These verdicts describe full-width VGG16-BN trained as in the paper's Tables 1-2."
