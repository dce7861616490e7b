"""Tests of triage.kmeans: 1-D k-means against brute force and scikit-learn, filter k-means and BN
re-estimation by hand."""
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from triage import autopsy as ap
from triage import kmeans as km

from tiny_nets import assert_unchanged, fake_batches, no_hooks, snapshot, tiny_vgg

# tiny models: one intra-op thread avoids oversubscribing a shared CPU (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- 1-D k-means
def test_kmeans_1d_exact_equals_brute_force():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, generator=g, dtype=torch.float64)
    xs = np.sort(x.numpy())
    for k in (1, 2, 3, 4):
        best = min(sum(((c - c.mean()) ** 2).sum() for c in np.split(xs, list(cut)))
                   for cut in itertools.combinations(range(1, 9), k - 1))
        for method in ("exact", "fast"):
            r = km.kmeans_1d(x, k, method=method)
            assert r.inertia == pytest.approx(best, rel=1e-9, abs=1e-12)
            q = r.centroids[r.labels]
            assert torch.unique(q).numel() == k
            assert ((x - q) ** 2).sum().item() == pytest.approx(r.inertia, rel=1e-9)


def test_kmeans_1d_hand_example_and_duplicates():
    r = km.kmeans_1d(torch.tensor([0.0, 0.25, 0.75, 1.0, 5.0], dtype=torch.float64), 2)
    assert r.centroids.tolist() == [0.5, 5.0]
    assert r.labels.tolist() == [0, 0, 0, 0, 1]
    assert r.inertia == pytest.approx(0.25 + 0.0625 * 2 + 0.25)
    # more clusters than distinct values: each distinct value is its own centroid
    r = km.kmeans_1d(torch.tensor([[1.0, 1.0], [2.0, 2.0]]), 8)
    assert r.centroids.tolist() == [1.0, 2.0] and r.inertia == 0 and r.labels.shape == (2, 2)
    # heavy duplicates: clusters are never empty
    x = torch.cat([torch.zeros(1000), torch.linspace(1, 2, 50)])
    for method in ("fast", "lloyd", "exact"):
        r = km.kmeans_1d(x, 10, method=method)
        assert torch.unique(r.centroids[r.labels]).numel() == 10


@pytest.mark.parametrize("dist", ["normal", "laplace", "mixture"])
def test_kmeans_1d_at_least_as_good_as_sklearn(dist):
    KMeans = pytest.importorskip("sklearn.cluster").KMeans
    rng = np.random.default_rng(0)
    n = 20_000
    x = {"normal": rng.normal(0, 0.02, n), "laplace": rng.laplace(0, 0.01, n),
         "mixture": np.concatenate([rng.normal(0, 0.01, n // 2), rng.normal(0.1, 0.03, n // 2)])}[dist]
    x = x.astype(np.float32)
    for k in (2, 8, 32, 128):
        ours = km.kmeans_1d(torch.from_numpy(x), k)
        ref = KMeans(k, n_init=1, random_state=0).fit(x.astype(np.float64).reshape(-1, 1))
        assert ours.inertia <= ref.inertia_ * (1 + 1e-9), (dist, k)
        assert torch.unique(ours.centroids[ours.labels]).numel() == k
        if k <= 8:
            assert ours.inertia == pytest.approx(km.kmeans_1d(torch.from_numpy(x), k, method="exact").inertia,
                                                 rel=1e-3)


def test_kmeans_quantise_gives_exactly_k_values_per_layer():
    m = tiny_vgg()
    before = snapshot(m)
    for k in (2, 7, 64):
        q = km.kmeans_quantise(m, k)
        for name, layer in ap.weight_layers(q).items():
            orig = dict(m.named_modules())[name]
            want = min(k, torch.unique(ap.layer_values(orig)).numel())
            got = torch.unique(torch.cat([layer.weight.detach().flatten(), layer.bias.detach().flatten()]))
            assert got.numel() == want, (name, k)
        # BN layers are not quantised by default
        assert torch.equal(q.features.block1.bn1.weight, m.features.block1.bn1.weight)
    assert_unchanged(m, before)


def test_kmeans_sweep_on_tiny_vgg():
    m = tiny_vgg()
    loader = fake_batches()
    df = km.kmeans_sweep(m, loader, ks=[2, 16], progress=False)
    assert df["k"].tolist() == [2, 16] and df["max_distinct"].tolist() == [2, 16]
    assert df["bits"].tolist() == [1.0, 4.0]
    assert no_hooks(m)


# ----------------------------------------------------------------------------- filter k-means
def test_filter_kmeans_by_hand():
    conv = nn.Conv2d(1, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 1.2, 5.0, 5.4]).reshape(4, 1, 1, 1))
    m = nn.Sequential(conv, nn.ReLU())
    before = snapshot(m)
    q = km.filter_kmeans(m, 2)
    assert q[0].weight.flatten().tolist() == pytest.approx([1.1, 1.1, 5.2, 5.2])
    assert torch.equal(km.filter_kmeans(m, 4)[0].weight, m[0].weight)
    one = km.filter_kmeans(m, 1)
    assert one[0].weight.flatten().tolist() == pytest.approx([3.15] * 4)
    assert_unchanged(m, before)


def test_filter_kmeans_distinct_filters_and_sweep():
    m = tiny_vgg()
    before = snapshot(m)
    q = km.filter_kmeans(m, 3)
    for name, conv in ap.weight_layers(q, kinds=("conv",)).items():
        assert torch.unique(conv.weight.detach().flatten(1), dim=0).shape[0] == min(3, conv.out_channels)
        assert torch.equal(conv.bias, dict(m.named_modules())[name].bias)
    df = km.filter_kmeans_sweep(m, fake_batches(), clusters=[1, 4, 64], progress=False)
    assert df["filter_share"].iloc[-1] == 1.0
    assert df["acc"].iloc[-1] == ap.accuracy(m, fake_batches())["acc"]
    assert_unchanged(m, before)


def test_recalibrate_bn_by_hand():
    conv = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(2.0)
        conv.bias.fill_(0.0)
    m = nn.Sequential(conv, nn.BatchNorm2d(1)).eval()
    x = torch.arange(8.0).reshape(2, 1, 2, 2)
    km.recalibrate_bn(m, [(x, torch.zeros(2, dtype=torch.long))])
    bn = m[1]
    assert bn.running_mean.item() == pytest.approx(2 * x.mean().item())
    assert bn.running_var.item() == pytest.approx(4 * x.var().item())       # unbiased, as BN keeps it
    assert bn.momentum == 0.1 and not bn.training


def test_filter_kmeans_sweep_with_bn_recalibration():
    m = tiny_vgg()
    before = snapshot(m)
    test, train = fake_batches(seed=0), fake_batches(seed=5)
    df = km.filter_kmeans_sweep(m, test, clusters=[2, 64], bn_loader=train, progress=False)
    assert df[["clusters", "bn"]].values.tolist() == [[2, "original"], [2, "recalibrated"],
                                                       [64, "original"], [64, "recalibrated"]]
    # all filters kept and the original statistics restored: exactly the base model
    assert df["acc"].iloc[2] == ap.accuracy(m, test)["acc"]
    assert_unchanged(m, before)
