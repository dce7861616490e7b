"""The paper's three initialisers of a compressed layer (Nowak & Corso, Sec. 3.1).

Each acts in place on the child returned by :func:`triage.surgery.compress_block`
(its ``features.block{b}.conv1`` and ``bn1``) and returns it.

* ``random`` (RW) -- :func:`glorot_`
* ``mean``   (MW) -- :func:`parent_mean_`
* ``stn``    (STN) -- :func:`student_teacher_`

Reason to change: how a compressed layer starts (a new initialiser, or a change to one of the three).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .models import VGG, block_convs

__all__ = ["INITS", "glorot_", "parent_mean_", "student_teacher_", "hint_loss", "initialise"]

INITS = ("random", "mean", "stn")


def _new_layer(child: VGG, block: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    b = child.block(block)
    if len(block_convs(b)) != 1:
        raise ValueError(f"block {block} of this model is not compressed (it has "
                         f"{len(block_convs(b))} convs); call triage.compress_block first")
    return b.conv1, b.bn1


def glorot_(child: VGG, block: int) -> VGG:
    """RW: Glorot/Xavier-uniform weights, zero bias, a fresh BN.

    W ~ U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), fan_in = C_in*3*3 and
    fan_out = C_out*3*3 (Glorot & Bengio 2010, as Keras' ``glorot_uniform``);
    BN: gamma = 1, beta = 0, running mean 0, running var 1.
    """
    glorot_layer_(*_new_layer(child, block))
    return child


@torch.no_grad()
def glorot_layer_(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """RW for one new conv + BN (in place): Glorot-uniform weights, zero bias if any, a fresh BN."""
    nn.init.xavier_uniform_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    bn.reset_parameters()
    bn.reset_running_stats()


@torch.no_grad()
def parent_mean_(child: VGG, parent: VGG, block: int) -> VGG:
    """MW: the unweighted mean of the parent block's filters.

    The paper averages the 3x3 kernels of the block's convs. The convs differ in
    input width: conv1 is (C_out, C_in, 3, 3), conv2..n are (C_out, C_out, 3, 3)
    with C_out >= C_in in VGG16. We align kernels by index -- output filter o
    and input channel i of the new conv average the kernel (o, i) of every conv
    of the block, using the first C_in input channels of conv2..n:

        W[o, i] = 1/n * sum_j W_j[o, i],   b[o] = 1/n * sum_j b_j[o]

    Where all shapes agree (block 5: 512 -> 512 throughout) this is exactly the
    element-wise mean of the block's conv weights.

    BN: gamma and beta are the mean of the block's BN gammas and betas (same
    index alignment, all are C_out long). The running statistics are reset
    (mean 0, var 1): the averaged conv's outputs have no statistics the parent
    measured, and the new BN re-estimates them in its first training batches
    (it is in train mode in both regimes).
    """
    conv, bn = _new_layer(child, block)
    p = parent.block(block)
    convs = block_convs(p)
    if len(convs) < 2:
        raise ValueError(f"parent block {block} has {len(convs)} conv(s); MW needs the uncompressed parent")
    c_in = conv.in_channels
    conv.weight.copy_(torch.stack([c.weight[:, :c_in] for c in convs]).mean(0))
    conv.bias.copy_(torch.stack([c.bias for c in convs]).mean(0))
    bns = [m for m in p if isinstance(m, nn.BatchNorm2d)]
    bn.weight.copy_(torch.stack([m.weight for m in bns]).mean(0))
    bn.bias.copy_(torch.stack([m.bias for m in bns]).mean(0))
    bn.reset_running_stats()
    return child


def student_teacher_(child: VGG, parent: VGG, block: int, loader, epochs: int = 12,
                     lr: float = 1e-3, autocast_dtype: torch.dtype | None = None,
                     progress: bool = True, tol: float = 0.0, cache: bool = False) -> list[float]:
    """STN: fit the new layer to the parent block's output (FitNets-style hint).

    Minimises the L2 distance between the child's and the parent's activations
    *after the block's max-pool*, on the training data, updating only the new
    conv and its BN (paper Sec. 3.1, ``stn_epochs`` = 12 in Table 2):

        L = 1/N sum_i || s(x_i) - t(x_i) ||^2 / D

    where D is the number of elements of one activation tensor. Dividing by D
    (the mean squared error) only rescales the paper's loss; we optimise it with
    Adam, which is invariant to that scale (the paper names no optimiser for this
    stage). Blocks before ``block`` are identical in parent and child, so the
    block's input is computed once per batch by the frozen parent in eval mode.

    Call after :func:`glorot_` (the layer starts from RW). Returns the mean hint
    loss of every epoch (the first entry is measured while training epoch 1).

    ``tol > 0`` stops the hint training once an epoch (from the second on) lowers the
    best hint loss by less than that fraction: "until its loss plateaus", ``epochs``
    being the cap. ``cache=True`` computes the frozen parent's hint input and target
    once per image and mirror image (:class:`triage.train.CachedFeatures`): the same
    batches without the parent's forward pass in every epoch.
    """
    from .train import CachedFeatures
    conv, bn = _new_layer(child, block)
    if epochs < 1:
        raise ValueError(f"stn_epochs must be >= 1, got {epochs}")
    parent_was_training, child_was_training = parent.training, child.training
    parent.eval()
    child.eval()
    new_block = child.block(block)
    new_block.train()  # the new BN learns its statistics
    prefix = parent.prefix(block)
    teacher = parent.block(block)
    params = list(conv.parameters()) + list(bn.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    device = conv.weight.device
    losses = []
    if cache:
        def hint_pair(x):
            h = prefix(x)
            return h, teacher(h)
        batches = CachedFeatures(hint_pair, loader, amp_dtype=autocast_dtype)
    try:
        for epoch in tqdm(range(epochs), desc=f"STN block {block}", disable=not progress, leave=False):
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            total, n = 0.0, 0
            for x, _ in (batches if cache else loader):
                if cache:
                    h, target = x
                else:
                    with torch.no_grad(), _autocast(device, autocast_dtype):
                        h = prefix(x)
                        target = teacher(h)
                with _autocast(device, autocast_dtype):
                    loss = F.mse_loss(new_block(h).float(), target.float())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * h.shape[0]
                n += h.shape[0]
            losses.append(float(total / max(n, 1)))
            if tol > 0 and len(losses) >= 2 and losses[-1] > min(losses[:-1]) * (1 - tol):
                break   # plateau: this epoch improved the best loss by less than tol
    finally:
        parent.train(parent_was_training)
        child.train(child_was_training)
    return losses


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


@torch.no_grad()
def hint_loss(child: VGG, parent: VGG, block: int, loader, max_batches: int | None = None) -> float:
    """Mean squared distance between child and parent activations after ``block`` (eval mode)."""
    was = child.training, parent.training
    child.eval(), parent.eval()
    total, n = 0.0, 0
    try:
        for i, (x, _) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            h = parent.prefix(block)(x)
            total += F.mse_loss(child.block(block)(h), parent.block(block)(h)).item() * x.shape[0]
            n += x.shape[0]
    finally:
        child.train(was[0]), parent.train(was[1])
    return total / max(n, 1)


def initialise(child: VGG, parent: VGG, block: int, method: str, loader=None, *,
               stn_epochs: int = 12, stn_lr: float = 1e-3, autocast_dtype=None,
               progress: bool = True, stn_tol: float = 0.0, cache: bool = False) -> list[float]:
    """Apply initialiser ``method`` ('random', 'mean' or 'stn') to ``child``'s block.

    Returns the STN hint losses per epoch ([] for the others).
    """
    from .resnet import ResNet, stage_glorot_, stage_mean_
    rw, mw = (stage_glorot_, stage_mean_) if isinstance(child, ResNet) else (glorot_, parent_mean_)
    if method == "random":
        rw(child, block)
        return []
    if method == "mean":
        mw(child, parent, block)
        return []
    if method == "stn":
        if loader is None:
            raise ValueError("the 'stn' initialiser needs a training loader")
        rw(child, block)
        return student_teacher_(child, parent, block, loader, epochs=stn_epochs, lr=stn_lr,
                                autocast_dtype=autocast_dtype, progress=progress, tol=stn_tol,
                                cache=cache)
    raise ValueError(f"unknown init {method!r}; choose one of {', '.join(INITS)}")
