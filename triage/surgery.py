"""Structural compression (Nowak & Corso, Sec. 2.2): one VGG block -> one conv.

A block of 2-3 convs (each conv -> BN -> ReLU) followed by a max-pool becomes
a single conv (block input channels -> block output channels, 3x3) -> BN -> ReLU
-> the same max-pool. Output shapes are unchanged, so every other layer of the
parent is kept as it is.
"""
from __future__ import annotations

from .models import VGG

__all__ = ["compress_block", "compress_blocks", "compressed_layer_names"]


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


def compressed_layer_names(block: int, model=None) -> tuple[str, str]:
    """Qualified names of the compressed conv and its BN in a child of :func:`compress_block`.

    Pass the child as ``model`` when it may be a ResNet (the names differ); without
    it the names are VGG's.
    """
    from .resnet import ResNet, compressed_stage_layer_names

    if isinstance(model, ResNet):
        return compressed_stage_layer_names(block)
    return f"features.block{block}.conv1", f"features.block{block}.bn1"
