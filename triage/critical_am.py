"""Activation maximisation: the input image a filter or a logit responds to most (Fig. 2's pictures).

Reason to change: how the image is optimised (steps, jitter, blur, its parametrisation).

Reproduces the pictures of *Distilling Critical Paths in Convolutional Neural Networks*
(Fig. 2): gradient ascent on the input of the trained network, from a grey image, with
jitter and Gaussian blur as regularisers, for a conv unit's filters (see
:mod:`triage.critical` for units and layer names) or for class logits.

    >>> from triage import critical_am
    >>> am = critical_am.activation_maximisation(model, "Conv5_1", [3, 7], steps=128)   # doctest: +SKIP
    >>> am.images.shape                                                               # doctest: +SKIP
    torch.Size([2, 3, 32, 32])
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .critical import _EvalMode, _device_of, conv_units, paper_name, resolve_layers

__all__ = ["AMResult", "activation_maximisation"]

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
