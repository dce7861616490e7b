"""Robustness of a trained classifier to perturbed weights (Lorieul, Ghorra & Merialdo, Sec. III-B/C).

Reason to change: how weights are perturbed (noise, rounding) or how the damage is measured.

* :func:`add_weight_noise`, :func:`noise_sweep` -- Gaussian noise scaled by each layer's
  standard deviation, for all layers at once (Fig. 5) or one layer at a time (the paper's
  stated future work, Sec. III-C).
* :func:`round_weights`, :func:`rounding_table` -- keep d decimals (Table III).

Like every analysis in :mod:`triage.autopsy`, these work on a deep copy: the model passed in
is unchanged afterwards. Codebook quantisation (k-means) is in :mod:`triage.kmeans`.

    >>> from triage import robustness
    >>> robustness.noise_sweep(model, test_loader, ps=(0, 0.1))   # doctest: +SKIP
"""
from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .autopsy import _layer_params, _working_copy, accuracy, check_compatible, layer_values, weight_layers

__all__ = ["add_weight_noise", "noise_sweep", "round_weights", "rounding_table"]


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
