"""How alike two networks' block-1 representations are (paper Fig. 3, made quantitative).

The paper compares block-1 activation maps of the base and of compressed children on one
image by eye. Per-filter comparisons are meaningless for RW children (their filters are not
aligned with the base's by construction), so we compare whole representations with linear
CKA (Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited"),
which is invariant to orthogonal transforms and isotropic scaling of the features: two
networks whose block-1 outputs span the same space score near 1, whatever the filter order.

    >>> maps, cka = block1_record(child, base, test_loader)     # doctest: +SKIP

The same probe images count a block's dead channels (:func:`dead_channels`; at the compressed
block of a child, :func:`dead_compressed`): the units no training can revive.

Reason to change: how a network's block representations are compared and probed (CKA, the Fig. 3
maps, dead channels).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["block_activations", "block1_activations", "linear_cka", "dead_channels", "block1_features",
           "block1_record", "dead_compressed",
           "CKA_IMAGES", "FIG3_FILTERS"]

CKA_IMAGES = 500     # the first 500 test images (index order) are the CKA probe set
FIG3_FILTERS = 10    # the paper's Fig. 3 shows the first ten filters


def block_activations(model: nn.Module, x: torch.Tensor, block: int = 1) -> torch.Tensor:
    """Post-ReLU output of block ``block``'s last conv for inputs ``x`` (N, C, H, W) -> (N, F, H', W').

    For block 1 of the base that is ReLU(BN(conv2)); for a child whose block was
    compressed, the ReLU after the single compressed conv (paper Sec. 4, Fig. 3: "at
    the output of the ReLU activation layer after the compressed layer ... and after
    Conv 2 of Block 1 on the baseline model"); before the block's pool. A ResNet stage's
    output for a ResNet. Only the layers up to the block run, in eval mode, without
    gradients; the forward hook is removed also when the forward fails.

    Example:
        >>> import triage
        >>> acts = block_activations(triage.vgg16_bn(10, width=0.25), torch.randn(1, 3, 32, 32), 2)
        >>> acts.shape
        torch.Size([1, 32, 16, 16])
    """
    mod = model.block(block)
    relus = [m for m in mod.children() if isinstance(m, nn.ReLU)]
    # VGG: the last ReLU inside the block (before its pool); a ResNet stage: the stage's output
    target = relus[-1] if relus else mod
    if not relus and not hasattr(model, "prefix"):
        raise ValueError(f"block {block} of this model has no ReLU")
    captured = []
    handle = target.register_forward_hook(lambda m, inp, out: captured.append(out.detach().clone()))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            x = x.to(next(model.parameters()).device)
            # the layers before the block (VGG: its earlier blocks); the rest is not needed
            stem = model.prefix(block) if hasattr(model, "prefix") else model.features[: block - 1]
            mod(stem(x))
    finally:
        handle.remove()
        model.train(was_training)
    return captured[0]


def block1_activations(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """:func:`block_activations` of block 1, the layer of the paper's Fig. 3.

    Example:
        >>> import triage
        >>> acts = block1_activations(triage.vgg16_bn(10, width=0.25), torch.randn(1, 3, 32, 32))
        >>> acts.shape
        torch.Size([1, 16, 32, 32])
    """
    return block_activations(model, x, 1)


def linear_cka(x, y) -> float:
    """Linear CKA of two representations of the same n inputs: x (n, p), y (n, q).

    ``CKA = <Kc, Lc>_F / (||Kc||_F ||Lc||_F)`` with ``K = x x^T``, ``L = y y^T`` and
    ``Kc = H K H`` the doubly centred Gram matrices (Kornblith et al. 2019, Eq. 2 with a
    linear kernel), computed in float64. 1 for identical (or rotated/scaled) features.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(50, 8))
        >>> round(linear_cka(x, 3 * x), 6)
        1.0
    """
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need the same n >= 2 inputs in both, got {len(x)} and {len(y)}")
    x = x - x.mean(0)
    y = y - y.mean(0)
    k, l_ = x @ x.T, y @ y.T
    denom = np.linalg.norm(k) * np.linalg.norm(l_)
    if denom == 0:
        return float("nan")   # a constant representation has no similarity to speak of
    return float((k * l_).sum() / denom)


def dead_channels(acts) -> int:
    """Channels of post-ReLU activations ``acts`` (N, C, H, W) that are zero at every position of
    every input: dead units, whose gradient is zero as well, so training cannot revive them.

    Under FM only the compressed layer trains; a dead channel of a compressed block 1 takes its
    share of block 2's input away for good, as block 2 is frozen (the campaign's unstable FM
    block-1 cells are the networks with several dead block-1 channels).

    Example:
        >>> a = torch.zeros(2, 3, 4, 4); a[0, 1, 2, 2] = 0.5
        >>> dead_channels(a)
        2
    """
    a = torch.as_tensor(acts)
    if a.dim() != 4:
        raise ValueError(f"need activations of shape (N, C, H, W), got {tuple(a.shape)}")
    return int((~(a > 0).flatten(2).any(2).any(0)).sum())


def block1_features(model: nn.Module, loader, n: int = CKA_IMAGES, amp_dtype=None, block: int = 1) -> torch.Tensor:
    """Block-1 (or ``block``'s) activations of the first ``n`` images of ``loader`` (index order,
    no flips), fp32 CPU: the probe set of the CKA and of the dead-channel counts."""
    device = next(model.parameters()).device
    x = next(loader.fixed_batches(False, n))
    with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        acts = block_activations(model, x, block)
    return acts.float().cpu()


def dead_compressed(model: nn.Module, block: int, loader, *, amp_dtype=None, n: int = CKA_IMAGES) -> tuple[int, int]:
    """Dead channels of the compressed block's output on the probe images, and its channel count.

    A child's compressed conv is the layer FM trains alone: a channel of it that is zero on
    every probe image has zero gradient and stays dead, and under FM nothing downstream can
    make up for it. For a block-1 child it is the run's ``dead_block1``.
    """
    acts = block1_features(model, loader, n, amp_dtype, block)
    return dead_channels(acts), int(acts.shape[1])


def block1_record(model: nn.Module, base: nn.Module, loader, *, device=None, amp_dtype=None,
                  n: int = CKA_IMAGES, filters: int = FIG3_FILTERS) -> tuple[np.ndarray, float, int]:
    """What a finished run exports for Fig. 3: its block-1 maps on test image 0, its CKA to the
    base and its dead block-1 channels.

    Returns:
        maps float16 (filters, H, W) of the first test image, the linear CKA of the block-1
        output of ``model`` against ``base`` over the first ``n`` test images (1.0 when
        ``model`` is the base), and :func:`dead_channels` of ``model``'s block 1 on them.
    """
    mine = block1_features(model, loader, n, amp_dtype)
    maps = mine[0, :filters].numpy().astype(np.float16)
    dead = dead_channels(mine)
    if base is model:
        return maps, 1.0, dead
    theirs = block1_features(base, loader, n, amp_dtype)
    return maps, linear_cka(mine.flatten(1).numpy(), theirs.flatten(1).numpy()), dead
