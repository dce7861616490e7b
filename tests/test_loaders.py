"""Tests of triage.loaders on the real data in shared/data: the on-device batches and the loaders of a run."""
import pytest
import torch

from triage.data import channel_stats, load_split, spec, stratified_subset
from triage.loaders import DeviceLoader, get_loaders, get_split_loaders


@pytest.fixture(autouse=True, scope="module")
def _cache(triage_cache):
    """All tests here decode into a session-private cache."""
    return triage_cache


@pytest.fixture(scope="module")
def cifar_small(shared_data):
    x, y = load_split("cifar10", "train", shared_data)
    idx = stratified_subset(y, 100, seed=0)
    mean, std = channel_stats("cifar10", shared_data)
    return x[idx], y[idx], mean, std


def test_loader_normalises(cifar_small):
    x, y, mean, std = cifar_small
    loader = DeviceLoader(x, y, batch_size=128, mean=mean, std=std, train=True)
    assert len(loader) == 8 and loader.dataset_size == 1000
    xs, ys = zip(*loader)
    xb = torch.cat(xs)
    assert xb.dtype == torch.float32 and xb.shape == (1000, 3, 32, 32)
    assert torch.bincount(torch.cat(ys)).tolist() == [100] * 10      # every image once
    assert xb.mean(dim=(0, 2, 3)).abs().max() < 0.05
    assert (xb.std(dim=(0, 2, 3)) - 1).abs().max() < 0.05


def test_loader_flip_and_order(cifar_small):
    x, y, mean, std = cifar_small
    kw = dict(batch_size=100, mean=mean, std=std, train=True, seed=7)
    plain = list(DeviceLoader(x, y, flip=False, **kw))
    flipped = list(DeviceLoader(x, y, flip=True, **kw))
    n_flipped = 0
    for (a, ya), (b, yb) in zip(plain, flipped):
        assert torch.equal(ya, yb)                              # flips do not change the order
        same = (a == b).flatten(1).all(1)
        mirrored = (torch.flip(a, dims=[3]) == b).flatten(1).all(1)
        assert (same ^ mirrored).all()                          # each sample: exactly one of the two
        n_flipped += int(mirrored.sum())
    assert 400 < n_flipped < 600
    again = list(DeviceLoader(x, y, flip=True, **kw))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(flipped, again))   # same seed, same batches
    loader = DeviceLoader(x, y, flip=False, **kw)
    e0 = torch.cat([b[1] for b in loader])
    e1 = torch.cat([b[1] for b in loader])                      # next epoch: reshuffled
    loader.set_epoch(0)
    assert torch.equal(torch.cat([b[1] for b in loader]), e0)   # resumable
    assert not torch.equal(e0, e1)


def test_test_loader_is_plain(cifar_small):
    x, y, mean, std = cifar_small
    loader = DeviceLoader(x, y, batch_size=300, mean=mean, std=std, train=False)
    xb = torch.cat([b[0] for b in loader])
    expected = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(xb, expected, atol=1e-5)              # no shuffle, no flip
    assert len(loader) == 4 and len(DeviceLoader(x, y, batch_size=300, mean=mean, std=std, train=False,
                                                 drop_last=True)) == 3


def test_loader_resolution_and_layout(cifar_small):
    x, y, mean, std = cifar_small
    loader = DeviceLoader(x, y, batch_size=16, mean=mean, std=std, train=True, resolution=64, channels_last=True)
    xb, yb = next(iter(loader))
    assert xb.shape == (16, 3, 64, 64) and yb.shape == (16,)
    assert xb.is_contiguous(memory_format=torch.channels_last)


def test_get_loaders(shared_data):
    train, test, sp = get_loaders("mnist", root=shared_data, batch_size=64, train_per_class=20,
                                  test_per_class=10, seed=1)
    assert sp == spec("mnist")
    assert train.dataset_size == 200 and test.dataset_size == 100 and len(train) == 4
    assert train.train and train.flip and not test.train and not test.flip
    assert train.mean == pytest.approx(channel_stats("mnist", shared_data)[0])
    xb, yb = next(iter(train))
    assert xb.shape == (64, 1, 32, 32) and yb.dtype == torch.int64


def test_get_split_loaders(shared_data):
    tr, va, te, sp = get_split_loaders("mnist", root=shared_data, batch_size=64, train_per_class=20,
                                       test_per_class=10, val_fraction=0.1, seed=1)
    assert (tr.dataset_size, va.dataset_size, te.dataset_size) == (180, 20, 100) and sp == spec("mnist")
    assert tr.train and tr.flip and not va.train and not va.flip and not te.train
    assert torch.bincount(va.y).tolist() == [2] * 10
    full, _, _ = get_loaders("mnist", root=shared_data, train_per_class=20, test_per_class=10, seed=1)
    assert sorted(torch.cat([tr.y, va.y]).tolist()) == sorted(full.y.tolist())   # a split of get_loaders' images
    assert get_split_loaders("mnist", root=shared_data, train_per_class=20, test_per_class=10, seed=1)[1] is None
