"""How images reach training: batches cut, flipped, normalised and resized on the device.

One reason to change: the input pipeline (batching, augmentation, normalisation, the
train/validation/test loaders a run trains with). *Which* images there are (the data
sets, their files, the decoded-array cache, channel statistics, the stratified subsets
and the validation split) is :mod:`triage.data`; this module only imports from it.

The decoded uint8 images are moved to the device once; every batch is then cut by
index, optionally flipped, converted to float32, normalised and resized there
(airbench style), so no DataLoader workers are needed.

    >>> train, test, sp = get_loaders("cifar10", batch_size=256, train_per_class=500)
    >>> x, y = next(iter(train))       # float32 (256, 3, 32, 32), int64 (256,)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .data import DatasetSpec, channel_stats, load_split, source_spec, stratified_subset, validation_split

__all__ = ["DeviceLoader", "get_loaders", "get_split_loaders"]


class DeviceLoader:
    """Batches device-resident uint8 images; augmentation and normalisation run per batch on the device.

    The images are moved to `device` once. Each batch is cut by index, optionally
    flipped (train only), converted to float32 and normalised as ``(x/255 - mean)/std``,
    and optionally resized with bilinear interpolation (the paper feeds 224x224 inputs).
    A train loader reshuffles every epoch with a generator seeded by ``seed + epoch``, so
    a resumed run reproduces the order; the epoch advances by one per iteration, or is
    set with set_epoch.

    Args:
        x: uint8 images (N, C, H, W).
        y: int64 labels (N,).
        batch_size: images per batch.
        mean, std: per-channel statistics in [0, 1] units (channel_stats).
        train: shuffle every epoch and (with `flip`) flip each image with probability 1/2.
        device: where the data and batches live.
        flip: random horizontal flips when training.
        resolution: side of the returned images; None keeps the stored size.
        seed: base seed of the shuffle and flips.
        channels_last: return batches in channels_last memory format.
        drop_last: drop the last incomplete batch.

    Example:
        >>> x, y = load_split("cifar10", "train")
        >>> loader = DeviceLoader(x, y, batch_size=512, mean=m, std=s, train=True, device="cuda")
        >>> for xb, yb in loader: ...
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, mean, std, train: bool,
                 device="cpu", flip: bool = True, resolution: int | None = None, seed: int = 0,
                 channels_last: bool = False, drop_last: bool = False):
        if x.dtype != torch.uint8 or x.ndim != 4 or len(x) != len(y):
            raise ValueError(f"x must be uint8 (N, C, H, W) with len(y) rows; got {x.dtype} {tuple(x.shape)}"
                             f" and {len(y)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = y.to(self.device, torch.int64)
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if mean.shape[1] != x.shape[1] or std.shape[1] != x.shape[1]:
            raise ValueError(f"mean/std need {x.shape[1]} channels, got {mean.shape[1]}/{std.shape[1]}")
        self.mean, self.std = tuple(mean.flatten().tolist()), tuple(std.flatten().tolist())
        # (x/255 - mean)/std as one fused multiply-add per element
        self._scale = (1 / (255 * std)).to(self.device)
        self._shift = (-mean / std).to(self.device)
        self.batch_size, self.train, self.flip = batch_size, train, flip
        self.resolution, self.seed = resolution, seed
        self.channels_last, self.drop_last = channels_last, drop_last
        self.epoch = 0

    @property
    def dataset_size(self) -> int:
        """Number of images."""
        return len(self.y)

    def __len__(self) -> int:
        n, b = self.dataset_size, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the shuffle and flips of `epoch`."""
        self.epoch = epoch

    def _draws(self):
        """(order, flips) of this epoch's pass (None for an eval loader), then advance the epoch.

        A CPU generator seeded with ``seed + epoch`` gives the same order on every device;
        :class:`triage.train.CachedFeatures` replays these draws over cached features.
        """
        order = flips = None
        if self.train:
            n, dev = self.dataset_size, self.device
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=g).to(dev)
            if self.flip:
                flips = (torch.rand(n, generator=g) < 0.5).to(dev)
        self.epoch += 1
        return order, flips

    def _prepare(self, xb: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> normalised float (resized, channels_last as configured)."""
        xb = torch.addcmul(self._shift, xb.float(), self._scale)
        if self.resolution is not None and self.resolution != self.x.shape[-1]:
            xb = F.interpolate(xb, size=(self.resolution, self.resolution), mode="bilinear",
                               align_corners=False)
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb

    def fixed_batches(self, flipped: bool = False, batch_size: int | None = None):
        """Every image in index order, all mirrored or none, normalised (no shuffle, no labels)."""
        b = batch_size or self.batch_size
        for i in range(0, self.dataset_size, b):
            xb = self.x[i:i + b]
            yield self._prepare(xb.flip(3) if flipped else xb)

    def __iter__(self):
        n, b = self.dataset_size, self.batch_size
        order, flips = self._draws()
        for i in range(len(self)):
            sl = slice(i * b, min(i * b + b, n))
            if order is None:
                xb, yb = self.x[sl], self.y[sl]
            else:
                idx = order[sl]
                xb, yb = self.x[idx], self.y[idx]
            if flips is not None:
                xb = torch.where(flips[sl].view(-1, 1, 1, 1), xb.flip(3), xb)
            yield self._prepare(xb), yb


def get_loaders(name: str, *, root=None, batch_size: int = 128, device="cpu",
                train_per_class: int | None = None, test_per_class: int | None = None, seed: int = 0,
                resolution: int | None = None, flip: bool = True,
                channels_last: bool = False) -> tuple[DeviceLoader, DeviceLoader, DatasetSpec]:
    """Train and test loaders of a data set, normalised with the full train split's statistics.

    Args:
        name: one of DATASETS.
        root: data root; None searches as resolve_root does.
        batch_size: images per batch (both loaders).
        device: where images live and batches are made.
        train_per_class, test_per_class: stratified subset sizes (None: everything).
        seed: seed of the subsets and of the train shuffle/flips.
        resolution: side of the images fed to the model (None: stored size; the paper uses 224).
        flip: random horizontal flips for the train loader.
        channels_last: batches in channels_last memory format.

    Returns:
        (train loader, test loader, spec); spec.note says how the images differ from the paper's.

    Example:
        >>> train, test, sp = get_loaders("mnist", train_per_class=100, test_per_class=50)
        >>> len(train.y), sp.num_classes
        (1000, 10)
    """
    sp = source_spec(name, root)
    mean, std = channel_stats(name, root)
    common = dict(batch_size=batch_size, mean=mean, std=std, device=device, resolution=resolution,
                  seed=seed, channels_last=channels_last)
    loaders = []
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        x, y = load_split(name, split, root)
        if per_class is not None:
            idx = stratified_subset(y, per_class, seed)
            x, y = x[idx], y[idx]
        loaders.append(DeviceLoader(x, y, train=split == "train", flip=flip and split == "train", **common))
    return loaders[0], loaders[1], sp


def get_split_loaders(name: str, *, root=None, batch_size: int = 128, device="cpu",
                      train_per_class: int | None = None, test_per_class: int | None = None,
                      val_fraction: float = 0.0, seed: int = 0, resolution: int | None = None,
                      flip: bool = True, channels_last: bool = False):
    """Train, validation and test loaders: the protocol that selects on validation data.

    The training subset (``train_per_class``, or all) is split by :func:`validation_split`;
    the validation loader neither shuffles nor flips. ``val_fraction=0`` gives no
    validation loader (None), as :func:`get_loaders`.

    Returns:
        (train, val or None, test, spec).

    Example:
        >>> tr, va, te, sp = get_split_loaders("mnist", val_fraction=0.1)
        >>> tr.dataset_size, va.dataset_size, te.dataset_size
        (54000, 6000, 10000)
    """
    train, test, sp = get_loaders(name, root=root, batch_size=batch_size, device=device,
                                  train_per_class=train_per_class, test_per_class=test_per_class,
                                  seed=seed, resolution=resolution, flip=flip, channels_last=channels_last)
    if not val_fraction:
        return train, None, test, sp
    tr_idx, va_idx = validation_split(train.y.cpu(), val_fraction, seed)
    x, y = train.x, train.y
    common = dict(batch_size=batch_size, mean=train.mean, std=train.std, device=device,
                  resolution=resolution, seed=seed, channels_last=channels_last)
    tr_idx, va_idx = tr_idx.to(x.device), va_idx.to(x.device)
    train = DeviceLoader(x[tr_idx], y[tr_idx], train=True, flip=flip, **common)
    val = DeviceLoader(x[va_idx], y[va_idx], train=False, flip=False, **common)
    return train, val, test, sp
