"""Surgery: structural compression and pruning, each returning a new module.

Reason to change: how a trained network is cut into a smaller one. Every function here
returns a new module and leaves its input untouched (deep copies, or a new model loaded
from the input's state dict).

* Structural compression (Nowak & Corso, Sec. 2.2; :func:`compress_block`,
  :func:`compress_blocks`): a block of 2-3 convs (each conv -> BN -> ReLU) followed by a
  max-pool becomes a single conv (block input channels -> block output channels, 3x3) ->
  BN -> ReLU -> the same max-pool. Output shapes are unchanged, so every other layer of the
  parent is kept as it is.
* Critical-path distillation (*Distilling Critical Paths in CNNs*, Sec. 3; :func:`distill`):
  the filters not kept are removed physically, with the matching input channels of the next
  layer, and the logit biases are zeroed; :func:`mask_filters` zeroes the same filters
  instead, the reference :func:`distill` is tested against. Which filters to keep is
  :func:`triage.critical_distill.select_filters`'.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Mapping, Sequence

import torch
from torch import nn

from .models import _PAPER_NAME, VGG, conv_units, paper_name, resolve_layers

__all__ = ["compress_block", "compress_blocks", "compression_savings", "compressed_layer_names", "distill",
           "mask_filters"]


def compress_block(model: VGG, block: int) -> VGG:
    """Return a new model whose ``block`` is a single conv + BN + ReLU + max-pool.

    Every parameter and buffer outside the block is copied from ``model``; the
    new layer (``features.block{block}.conv1`` / ``bn1``) keeps a fresh default
    initialisation until one of :mod:`triage.init`'s initialisers is applied.
    ``model`` is not modified.

    Because the first conv of a VGG block already maps the block's input
    channels to its output channels, the new conv has exactly that conv's shape:
    the parameter count drops by the block's convs 2..n and BNs 2..n.

    Args:
        model: a :class:`~triage.models.VGG` (trained parent), or a
            :class:`~triage.resnet.ResNet`, handed to :func:`triage.resnet.compress_stage`.
        block: 1..5, the paper's block numbering (a ResNet's stage, 1..num_blocks).

    Example:
        >>> from triage.models import vgg16_bn
        >>> child = compress_block(vgg16_bn(10, width=0.25), 3)
        >>> len(child.block(3))   # conv1, bn1, relu1, pool
        4
    """
    from .resnet import ResNet, compress_stage  # lazy: surgery of stages lives with the ResNets

    if isinstance(model, ResNet):
        return compress_stage(model, block)
    if not isinstance(model, VGG):
        raise TypeError(f"compress_block needs a triage VGG or ResNet, got {type(model).__name__}")
    model.block(block)  # validates the index with a clear message
    cfg = list(model.cfg)
    cfg[block - 1] = (cfg[block - 1][-1],)
    child = VGG(cfg, model.num_classes, in_channels=model.in_channels,
                resolution=model.resolution, dropout=model.dropout)
    prefix = f"features.block{block}."
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}
    missing, unexpected = child.load_state_dict(kept, strict=False)
    assert not unexpected and all(k.startswith(prefix) for k in missing), (missing, unexpected)
    ref = next(model.parameters())
    child = child.to(device=ref.device, dtype=ref.dtype)
    child.train(model.training)
    return child


def compress_blocks(model, blocks) -> VGG:
    """Return a new model with every block of ``blocks`` compressed (compress to failure, issue 17).

    :func:`compress_block` applied block by block: each named block becomes one conv (+ BN,
    ReLU, and VGG's max-pool), every other parameter and buffer is copied from ``model``, and
    output shapes are unchanged. The new layers keep a fresh default initialisation until an
    initialiser of :mod:`triage.init` sets them (one call per block). ``model`` is not modified.

    Args:
        model: a :class:`~triage.models.VGG` or :class:`~triage.resnet.ResNet` (trained parent).
        blocks: block numbers (1..5 for VGG16), in any order, each at most once.

    Raises:
        ValueError: no block, a block named twice, a non-integer or out-of-range block.
        TypeError: ``model`` is neither a triage VGG nor a ResNet.

    Example:
        >>> from triage.models import vgg16_bn
        >>> child = compress_blocks(vgg16_bn(10, width=0.25), (2, 4))
        >>> [len(child.block(b)) for b in (1, 2, 3, 4, 5)]   # layers per block; 4 = conv, bn, relu, pool
        [7, 4, 10, 4, 10]
    """
    blocks = list(blocks) if not isinstance(blocks, int) else [blocks]
    if not blocks:
        raise ValueError("compress_blocks needs at least one block")
    if any(isinstance(b, bool) or not isinstance(b, int) for b in blocks):
        raise ValueError(f"blocks must be integers, got {blocks!r}")
    if len(set(blocks)) != len(blocks):
        raise ValueError(f"a block is named twice: {blocks!r}")
    from .resnet import ResNet
    if not isinstance(model, (VGG, ResNet)):
        raise TypeError(f"compress_blocks needs a triage VGG or ResNet, got {type(model).__name__}")
    for b in blocks:   # validate every index before building anything
        model.block(b)
    child = model
    for b in sorted(blocks):
        child = compress_block(child, b)   # a new module each time; `model` itself is never changed
    return child


def compression_savings(model: VGG):
    """What compressing each block of ``model`` saves: its convs, channels in -> out, and the
    parameters :func:`compress_block` removes (convs 2..n of the block and their BNs).

    Example:
        >>> from triage.models import vgg16_bn
        >>> compression_savings(vgg16_bn(10, width=1 / 16)).loc[1].tolist()   # 4*4*9 + 4 + 2*4
        [2, '3→4', 156]
    """
    import pandas as pd
    from .models import block_convs
    n = sum(p.numel() for p in model.parameters())
    rows = []
    for i in range(1, len(model.features) + 1):
        convs = block_convs(model.block(i))
        removed = n - sum(p.numel() for p in compress_block(model, i).parameters())
        rows.append({"block": i, "convs": len(convs), "channels": f"{convs[0].in_channels}→{convs[-1].out_channels}",
                     "parameters removed by compression": removed})
    return pd.DataFrame(rows).set_index("block")


def compressed_layer_names(block: int, model=None) -> tuple[str, str]:
    """Qualified names of the compressed conv and its BN in a child of :func:`compress_block`.

    Pass the child as ``model`` when it may be a ResNet (the names differ); without
    it the names are VGG's.
    """
    from .resnet import ResNet, compressed_stage_layer_names

    if isinstance(model, ResNet):
        return compressed_stage_layer_names(block)
    return f"features.block{block}.conv1", f"features.block{block}.bn1"


# ----------------------------------------------------------------------------- critical-path distillation
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
        kept: ``{layer: kept filter indices}`` (e.g. from :func:`triage.critical_distill.select_filters`).
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
        kept: ``{layer: kept filter indices}`` (e.g. from :func:`triage.critical_distill.select_filters`).
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
