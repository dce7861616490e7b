"""Tests of triage.autopsy: hand-computed values on tiny models, scikit-learn as reference,
one real-data smoke check on the smoke-profile MNIST base."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from triage import autopsy as ap
from triage.models import vgg16_bn


# ----------------------------------------------------------------------------- helpers
# tiny models: one intra-op thread avoids oversubscribing a shared CPU (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def snapshot(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def assert_unchanged(m, before):
    after = m.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


def no_hooks(m):
    return all(len(x._forward_hooks) == 0 and len(x._forward_pre_hooks) == 0 for x in m.modules())


def tiny_vgg(seed=0, classes=10):
    torch.manual_seed(seed)
    return vgg16_bn(classes, in_channels=1, width=1 / 16).eval()


def fake_batches(n=2, bs=16, classes=10, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, channels, 32, 32, generator=g), torch.randint(0, classes, (bs,), generator=g))
            for _ in range(n)]


class TinyConvNet(nn.Module):
    """conv(1->4, 3x3) -> ReLU -> global pool -> fc(4->3): small enough to reason about."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


# ----------------------------------------------------------------------------- static: tables
@pytest.fixture(scope="module")
def alexnet():
    return ap.alexnet_caffe(num_classes=1000)


def test_alexnet_parameter_table_matches_paper_table1(alexnet):
    t = ap.parameter_table(alexnet)
    layers = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    assert t.index.tolist() == layers + ["total"]
    for name in layers:
        if name == "fc7":
            # The paper's fc7 row is 4096 x 4096 weights without the 4,096 biases its total counts.
            assert t.loc[name, "weights"] == ap.PAPER_TABLE1[name] == 16_777_216
            assert t.loc[name, "params"] == 16_777_216 + 4096
            assert round(100 * t.loc[name, "weights"] / t.loc["total", "params"], 2) == ap.PAPER_TABLE1_SHARE[name]
        else:
            assert t.loc[name, "params"] == ap.PAPER_TABLE1[name]
            assert round(t.loc[name, "share"], 2) == ap.PAPER_TABLE1_SHARE[name]
    assert t.loc["total", "params"] == ap.PAPER_TABLE1["total"] == 60_965_224
    assert t.loc["total", "share"] == 100.0
    # conv layers: less than 4% of the parameters (Sec. II-A)
    assert t.loc[layers[:5], "share"].sum() < 4


def test_alexnet_structure_and_filter_table(alexnet):
    with torch.no_grad():
        assert alexnet(torch.zeros(1, 3, 227, 227)).shape == (1, 1000)   # 227 px -> 256 x 6 x 6 at fc6
    ft = ap.filter_table(alexnet)
    assert ft["filters"].tolist() == [96, 256, 384, 384, 256]
    assert ft["extent"].tolist() == ["11×11", "5×5", "3×3", "3×3", "3×3"]
    assert ft["depth"].tolist() == [3, 48, 256, 192, 192]   # conv2/4/5 grouped (Caffe)
    with pytest.raises(ValueError, match="num_classes"):
        ap.alexnet_caffe(0)


def test_parameter_table_counts_every_parameter_of_vgg():
    m = tiny_vgg()
    t = ap.parameter_table(m)
    assert t.loc["total", "params"] == sum(p.numel() for p in m.parameters())
    assert t.drop(index="total")["share"].sum() == pytest.approx(100)
    assert t.loc["features.block1.conv1", "params"] == 4 * 1 * 9 + 4
    assert t.loc["features.block1.bn1", "kind"] == "batchnorm2d"


# ----------------------------------------------------------------------------- static: distributions
def test_weight_stats_by_hand():
    m = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        m[0].weight.fill_(3.0)
        m[0].bias.fill_(1.0)                                    # conv values: 3, 1
        m[2].weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 4.0]]))
        m[2].bias.copy_(torch.tensor([0.0, 0.0]))               # fc values: 0,0,0,4,0,0
    s = ap.weight_stats(m)
    assert s.loc["0", "mean"] == pytest.approx(2.0)
    assert s.loc["0", "std"] == pytest.approx(1.0)              # population std of {3, 1}
    fc = np.array([0, 0, 0, 4, 0, 0.0])
    mu, sd = fc.mean(), fc.std()
    assert s.loc["2", "std"] == pytest.approx(sd)
    assert s.loc["2", "skewness"] == pytest.approx(((fc - mu) ** 3).mean() / sd ** 3)
    assert s.loc["2", "skewness"] == pytest.approx(1.7888543819998317)   # scipy.stats.skew(fc)
    k = ap.weight_stats(m, by="kind")
    assert k.loc["conv", "n"] == 2 and k.loc["fc", "n"] == 6
    with pytest.raises(ValueError, match="by must be"):
        ap.weight_stats(m, by="block")


def test_weight_stats_match_scipy_on_vgg():
    scipy_stats = pytest.importorskip("scipy.stats")
    m = tiny_vgg()
    s = ap.weight_stats(m)
    v = ap.layer_values(m.features.block3.conv2).numpy()
    row = s.loc["features.block3.conv2"]
    assert row["std"] == pytest.approx(v.std(), rel=1e-9)
    assert row["skewness"] == pytest.approx(scipy_stats.skew(v), rel=1e-6)
    assert row["kurtosis"] == pytest.approx(scipy_stats.kurtosis(v), rel=1e-6)


def test_weight_histogram_counts_every_value():
    m = tiny_vgg()
    h = ap.weight_histogram(m, by="kind", bins=50, clip=None)
    n = ap.weight_stats(m, by="kind")["n"]
    for kind, g in h.groupby("group"):
        assert g["count"].sum() == n[kind]
        width = g["centre"].diff().iloc[1]
        assert (g["density"] * width).sum() == pytest.approx(1)
    with pytest.raises(ValueError, match="bins"):
        ap.weight_histogram(m, bins=0)


def test_filter_pca_known_spectrum():
    # Four 1x2x2 filters: +-2 e1 and +-1 e2. Mean 0; covariance eigenvalues 8/3, 2/3, 0, 0:
    # alpha = [8/(8+2), 1, 1, 1].
    conv = nn.Conv2d(1, 4, 2, bias=False)
    e1, e2 = torch.eye(4)[0], torch.eye(4)[1]
    with torch.no_grad():
        conv.weight.copy_(torch.stack([2 * e1, -2 * e1, e2, -e2]).reshape(4, 1, 2, 2))
    df = ap.filter_pca(nn.Sequential(conv))
    assert df["alpha"].tolist() == pytest.approx([0.8, 1.0, 1.0, 1.0])
    assert df["components"].tolist() == [4] * 4
    assert df["k_frac"].tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_filter_pca_matches_sklearn():
    PCA = pytest.importorskip("sklearn.decomposition").PCA
    m = tiny_vgg()
    df = ap.filter_pca(m)
    for name in ("features.block1.conv2", "features.block4.conv1", "features.block5.conv3"):
        w = dict(m.named_modules())[name].weight.detach().double()
        ref = np.cumsum(PCA().fit(w.reshape(w.shape[0], -1).numpy()).explained_variance_ratio_)
        got = df[df.layer == name]["alpha"].to_numpy()
        assert got == pytest.approx(ref, abs=1e-9)


# ----------------------------------------------------------------------------- dynamic: sparsity and hooks
def test_output_sparsity_by_hand_with_inplace_relu():
    lin1 = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
    lin2 = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin2.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]))
    m = nn.Sequential(lin1, nn.ReLU(inplace=True), lin2, nn.ReLU())
    x = torch.tensor([[1.0, 2.0], [-1.0, 3.0], [-2.0, -1.0]])
    # lin1: [1,2,-3] -> relu [1,2,0]; [-1,3,-2] -> [0,3,0]; [-2,-1,3] -> [0,0,3]: 5 zeros of 9
    # lin2: row sums 3, 3, 3 -> [3,-3] each -> relu [3,0]: 3 zeros of 6
    loader = [(x[:2], torch.tensor([0, 1])), (x[2:], torch.tensor([0]))]
    before = snapshot(m)
    s = ap.output_sparsity(m, loader)
    assert s.loc["1", "zeros"] == 5 and s.loc["1", "values"] == 9
    assert s.loc["1", "sparsity"] == pytest.approx(5 / 9)
    assert s.loc["3", "sparsity"] == pytest.approx(3 / 6)
    assert s.loc["1", "after"] == "0" and s.loc["3", "after"] == "2"
    assert s.loc["output", "sparsity"] == 0          # softmax of [3, 0]: never exactly zero
    assert no_hooks(m)
    assert_unchanged(m, before)
    one = ap.output_sparsity(m, loader, max_batches=1)
    assert one.loc["1", "values"] == 6 and one.loc["1", "zeros"] == 3


class Boom(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


def test_hooks_removed_when_the_forward_raises():
    m = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), Boom())
    loader = [(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))]
    with pytest.raises(RuntimeError, match="boom"):
        ap.output_sparsity(m, loader, check=False)
    assert no_hooks(m)
    # also the VGG path, failing in the middle of a sweep of batches
    v = tiny_vgg()
    good = fake_batches(1)

    class Bad:
        def __iter__(self):
            yield good[0]
            raise OSError("disk gone")

    with pytest.raises(OSError):
        ap.output_sparsity(v, Bad(), check=False)
    assert no_hooks(v) and not v.training


def test_output_sparsity_needs_relu_modules():
    m = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="nn.ReLU"):
        ap.output_sparsity(m, [(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))])


# ----------------------------------------------------------------------------- noise
def test_noise_sigma_scales_with_p_and_layer_std():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(300, 400), nn.Linear(400, 300))
    with torch.no_grad():
        m[1].weight.mul_(10)
        m[1].bias.mul_(10)
    before = snapshot(m)
    sig = [ap.layer_values(layer).std(unbiased=False).item() for layer in m]
    assert sig[1] / sig[0] == pytest.approx(10 * 400 ** -0.5 / 300 ** -0.5, rel=0.05)
    for p in (0.1, 0.5):
        noisy = ap.add_weight_noise(m, p, seed=3)
        for i in range(2):
            d = ap.layer_values(noisy[i]) - ap.layer_values(m[i])
            assert d.std().item() == pytest.approx(p * sig[i], rel=0.02)
            assert abs(d.mean().item()) < 4 * p * sig[i] / math.sqrt(d.numel())
    assert_unchanged(m, before)
    same = ap.add_weight_noise(m, 0.3, seed=3)
    again = ap.add_weight_noise(m, 0.3, seed=3)
    assert torch.equal(same[0].weight, again[0].weight)
    zero = ap.add_weight_noise(m, 0.0)
    assert_unchanged(zero, before)
    only = ap.add_weight_noise(m, 0.5, layers=["1"])
    assert torch.equal(only[0].weight, m[0].weight) and not torch.equal(only[1].weight, m[1].weight)


def test_noise_sweep_rows_and_unchanged_model():
    m = tiny_vgg()
    loader = fake_batches()
    before = snapshot(m)
    layers = ["features.block1.conv1", "classifier.3"]
    df = ap.noise_sweep(m, loader, ps=[0, 0.5], draws=2, per_layer=True, layers=layers, progress=False)
    assert len(df) == 2 * 2 * 2
    base = ap.accuracy(m, loader)["acc"]
    assert (df[df.p == 0]["acc"] == base).all()      # p = 0 leaves the network as it was
    assert set(df.target) == set(layers)
    # per-layer noise with the same seed equals add_weight_noise on that layer alone
    one = ap.add_weight_noise(m, 0.5, layers=["classifier.3"], seed=1000 * 1 + 1)
    row = df[(df.target == "classifier.3") & (df.p == 0.5) & (df.draw == 1)]
    assert row["acc"].item() == ap.accuracy(one, loader)["acc"]
    alld = ap.noise_sweep(m, loader, ps=[0.5], draws=1, progress=False)
    assert alld["target"].tolist() == ["all"]
    assert_unchanged(m, before)
    assert no_hooks(m)


# ----------------------------------------------------------------------------- rounding
def test_round_weights_by_hand():
    lin = nn.Linear(3, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.123456, -0.98766, 0.00493]]))
        lin.bias.fill_(0.0187)
    m = nn.Sequential(lin)
    before = snapshot(m)
    r2 = ap.round_weights(m, 2)
    assert r2[0].weight.tolist()[0] == pytest.approx([0.12, -0.99, 0.0])
    assert r2[0].bias.item() == pytest.approx(0.02)
    r0 = ap.round_weights(m, 0)
    assert r0[0].weight.tolist()[0] == [0.0, -1.0, 0.0]
    r4 = ap.round_weights(m, 4)
    assert r4[0].weight.tolist()[0] == pytest.approx([0.1235, -0.9877, 0.0049], abs=1e-7)
    assert torch.equal(ap.round_weights(m, None)[0].weight, m[0].weight)
    assert_unchanged(m, before)


def test_rounding_table_on_tiny_vgg():
    m = tiny_vgg()
    loader = fake_batches()
    before = snapshot(m)
    t = ap.rounding_table(m, loader, progress=False)
    assert t["decimals"].tolist() == ["all", 5, 4, 3, 2, 1]
    assert t["distinct"].is_monotonic_decreasing
    assert t.loc[t.decimals == 1, "distinct"].item() <= 21        # -1.0 .. 1.0 at most
    assert t.loc[0, "acc"] == ap.accuracy(m, loader)["acc"]
    assert_unchanged(m, before)


# ----------------------------------------------------------------------------- 1-D k-means
def test_kmeans_1d_exact_equals_brute_force():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, generator=g, dtype=torch.float64)
    xs = np.sort(x.numpy())
    for k in (1, 2, 3, 4):
        best = min(sum(((c - c.mean()) ** 2).sum() for c in np.split(xs, list(cut)))
                   for cut in itertools.combinations(range(1, 9), k - 1))
        for method in ("exact", "fast"):
            r = ap.kmeans_1d(x, k, method=method)
            assert r.inertia == pytest.approx(best, rel=1e-9, abs=1e-12)
            q = r.centroids[r.labels]
            assert torch.unique(q).numel() == k
            assert ((x - q) ** 2).sum().item() == pytest.approx(r.inertia, rel=1e-9)


def test_kmeans_1d_hand_example_and_duplicates():
    r = ap.kmeans_1d(torch.tensor([0.0, 0.25, 0.75, 1.0, 5.0], dtype=torch.float64), 2)
    assert r.centroids.tolist() == [0.5, 5.0]
    assert r.labels.tolist() == [0, 0, 0, 0, 1]
    assert r.inertia == pytest.approx(0.25 + 0.0625 * 2 + 0.25)
    # more clusters than distinct values: each distinct value is its own centroid
    r = ap.kmeans_1d(torch.tensor([[1.0, 1.0], [2.0, 2.0]]), 8)
    assert r.centroids.tolist() == [1.0, 2.0] and r.inertia == 0 and r.labels.shape == (2, 2)
    # heavy duplicates: clusters are never empty
    x = torch.cat([torch.zeros(1000), torch.linspace(1, 2, 50)])
    for method in ("fast", "lloyd", "exact"):
        r = ap.kmeans_1d(x, 10, method=method)
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
        ours = ap.kmeans_1d(torch.from_numpy(x), k)
        ref = KMeans(k, n_init=1, random_state=0).fit(x.astype(np.float64).reshape(-1, 1))
        assert ours.inertia <= ref.inertia_ * (1 + 1e-9), (dist, k)
        assert torch.unique(ours.centroids[ours.labels]).numel() == k
        if k <= 8:
            assert ours.inertia == pytest.approx(ap.kmeans_1d(torch.from_numpy(x), k, method="exact").inertia,
                                                 rel=1e-3)


def test_kmeans_quantise_gives_exactly_k_values_per_layer():
    m = tiny_vgg()
    before = snapshot(m)
    for k in (2, 7, 64):
        q = ap.kmeans_quantise(m, k)
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
    df = ap.kmeans_sweep(m, loader, ks=[2, 16], progress=False)
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
    q = ap.filter_kmeans(m, 2)
    assert q[0].weight.flatten().tolist() == pytest.approx([1.1, 1.1, 5.2, 5.2])
    assert torch.equal(ap.filter_kmeans(m, 4)[0].weight, m[0].weight)
    one = ap.filter_kmeans(m, 1)
    assert one[0].weight.flatten().tolist() == pytest.approx([3.15] * 4)
    assert_unchanged(m, before)


def test_filter_kmeans_distinct_filters_and_sweep():
    m = tiny_vgg()
    before = snapshot(m)
    q = ap.filter_kmeans(m, 3)
    for name, conv in ap.weight_layers(q, kinds=("conv",)).items():
        assert torch.unique(conv.weight.detach().flatten(1), dim=0).shape[0] == min(3, conv.out_channels)
        assert torch.equal(conv.bias, dict(m.named_modules())[name].bias)
    df = ap.filter_kmeans_sweep(m, fake_batches(), clusters=[1, 4, 64], progress=False)
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
    ap.recalibrate_bn(m, [(x, torch.zeros(2, dtype=torch.long))])
    bn = m[1]
    assert bn.running_mean.item() == pytest.approx(2 * x.mean().item())
    assert bn.running_var.item() == pytest.approx(4 * x.var().item())       # unbiased, as BN keeps it
    assert bn.momentum == 0.1 and not bn.training


def test_filter_kmeans_sweep_with_bn_recalibration():
    m = tiny_vgg()
    before = snapshot(m)
    test, train = fake_batches(seed=0), fake_batches(seed=5)
    df = ap.filter_kmeans_sweep(m, test, clusters=[2, 64], bn_loader=train, progress=False)
    assert df[["clusters", "bn"]].values.tolist() == [[2, "original"], [2, "recalibrated"],
                                                       [64, "original"], [64, "recalibrated"]]
    # all filters kept and the original statistics restored: exactly the base model
    assert df["acc"].iloc[2] == ap.accuracy(m, test)["acc"]
    assert_unchanged(m, before)


# ----------------------------------------------------------------------------- bad input
def test_clear_errors_for_bad_input():
    m = tiny_vgg()
    loader = fake_batches()
    for k in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="K"):
            ap.kmeans_quantise(m, k)
    with pytest.raises(ValueError, match="K must be >= 1"):
        ap.kmeans_1d(torch.ones(3), 0)
    with pytest.raises(ValueError, match="clusters K"):
        ap.filter_kmeans(m, 0)
    with pytest.raises(ValueError, match="p must be >= 0"):
        ap.add_weight_noise(m, -0.1)
    with pytest.raises(ValueError, match="p must be >= 0"):
        ap.noise_sweep(m, loader, ps=[0.1, -1], progress=False)
    with pytest.raises(ValueError, match="decimals must be >= 0"):
        ap.round_weights(m, -1)
    with pytest.raises(ValueError, match="decimals"):
        ap.rounding_table(m, loader, decimals=[2, 1.5], progress=False)
    with pytest.raises(ValueError, match="method"):
        ap.kmeans_1d(torch.ones(3), 2, method="magic")
    with pytest.raises(ValueError, match="finite"):
        ap.kmeans_1d(torch.tensor([1.0, float("nan")]), 1)
    with pytest.raises(ValueError, match="no module named"):
        ap.add_weight_noise(m, 0.1, layers=["features.block9"])
    with pytest.raises(ValueError, match="max_batches"):
        ap.accuracy(m, loader, max_batches=0)


def test_models_without_conv_layers_are_refused():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    for fn in (ap.filter_pca, ap.filter_table, lambda mm: ap.filter_kmeans(mm, 2)):
        with pytest.raises(ValueError, match="no convolutional layer"):
            fn(mlp)
    with pytest.raises(ValueError, match="no convolutional layer"):
        ap.filter_kmeans_sweep(mlp, [(torch.zeros(1, 4), torch.zeros(1, dtype=torch.long))], progress=False)
    with pytest.raises(ValueError, match="not"):
        ap.filter_pca(mlp, layers=["1"])
    # the weight analyses still work on it
    assert ap.parameter_table(mlp).loc["total", "params"] == 4 * 3 + 3 + 3 * 2 + 2


def test_data_that_does_not_match_the_model_is_refused():
    m = tiny_vgg(classes=10)
    hundred = fake_batches(classes=100, seed=1)
    assert max(int(y.max()) for _, y in hundred) >= 10
    with pytest.raises(ValueError, match="labels up to"):
        ap.noise_sweep(m, hundred, ps=[0], progress=False)
    with pytest.raises(ValueError, match="labels up to"):
        ap.output_sparsity(m, hundred)

    class WithLabels(list):            # like DeviceLoader: all labels in .y
        y = torch.tensor([0, 3, 57])
    with pytest.raises(ValueError, match="labels up to 57"):
        ap.kmeans_sweep(m, WithLabels(fake_batches()), ks=[2], progress=False)
    with pytest.raises(ValueError, match="100 classes but the model outputs 10"):
        ap.rounding_table(m, fake_batches(), num_classes=100, progress=False)
    with pytest.raises(ValueError, match="do not fit the model"):
        ap.check_compatible(m, fake_batches(channels=3))
    with pytest.raises(ValueError, match="no batch"):
        ap.check_compatible(m, [])
    assert ap.check_compatible(m, fake_batches(), num_classes=10) == 10
    assert no_hooks(m)


# ----------------------------------------------------------------------------- the paper's claims as sentences
def test_verdicts_follow_the_numbers():
    row = dict(base_acc=0.9, test_images=500, conv_share=97.0, conv_std=0.02, fc_std=0.01, fc_skew_first=0.1,
               fc_skew_last=0.5, pca_first_half=0.9, pca_depth_corr=-0.8, sparsity_conv=0.5, sparsity_fc=0.9,
               noise10_drop=0.4, noise_tolerance=0.1, noise_knee_p=0.6, noise_knee_drop=40.0, layer_noise_p=0.5,
               layer_most="b1", layer_most_drop=3.0, layer_least="b5", layer_least_drop=0.0, decimals_needed=3,
               decimals2_drop=5.0, k_needed=16, k32_drop=0.2, clusters_needed=64, clusters_share=1.0,
               clusters_needed_recal=32, clusters_share_recal=0.6)
    good = ap.verdicts(pd.DataFrame([row], index=["mnist"]))
    assert "noise tolerance holds" in good["noise"] and "+0.4" not in good["noise"] and "-0.4 points" in good["noise"]
    assert "K=32 sufficiency holds" in good["kmeans"]
    assert "flatten with depth, as the paper found" in good["pca"]
    bad = ap.verdicts(pd.DataFrame([{**row, "noise10_drop": 5.0, "k32_drop": 3.0, "pca_depth_corr": 0.2}],
                                   index=["cifar10"]))
    assert "does not hold" in bad["noise"] and "does not hold" in bad["kmeans"]
    assert "do not clearly flatten" in bad["pca"]
    two = ap.verdicts(pd.DataFrame([row, {**row, "k32_drop": 3.0}], index=["mnist", "cifar10"]))
    assert "for some data sets only" in two["kmeans"]
    assert "97.0% for every data set" in two["params"]
    assert "point: mnist: 64 (100% of the filters kept distinct on average)" in good["filter_kmeans"]
    assert "re-estimated afterwards: mnist: 32 (60% of" in good["filter_kmeans"]
    # no swept cluster count suffices: said as a value, whatever each() appends
    none = ap.verdicts(pd.DataFrame([{**row, "clusters_needed": None, "clusters_share": float("nan")}] * 2,
                                    index=["mnist", "cifar10"]))
    assert "point: more than any swept for every data set;" in none["filter_kmeans"]
    assert "As in the paper, vector quantisation of filters needs many clusters." in none["filter_kmeans"]


# ----------------------------------------------------------------------------- real data (smoke MNIST base)
@pytest.fixture(scope="module")
def mnist_base():
    import triage
    cfg = triage.make_config("mnist", profile="smoke")
    try:
        _, test, sp = triage.get_loaders("mnist", test_per_class=cfg.test_per_class, seed=cfg.seed,
                                         batch_size=250)
    except triage.DataError as e:
        pytest.skip(f"MNIST not available: {e}")
    run_dir = triage.run(cfg, progress=False, log=lambda *a: None)   # seconds; reused once stored
    return triage.load_model(run_dir), test, sp


def test_real_mnist_smoke_base(mnist_base, tmp_path, monkeypatch):
    import triage
    model, test, sp = mnist_base
    before = snapshot(model)
    base = ap.accuracy(model, test)["acc"]
    assert base > 0.4, "the smoke MNIST base should be well above chance (0.1)"
    cfg = triage.make_config("mnist", profile="smoke")
    sweeps = dict(noise_ps=[0, 1.0], noise_draws=2, layer_noise_ps=[0.5], decimals=[None, 4, 0], ks=[1, 256],
                  filter_clusters=[1, 1024], bn_batches=1)
    res = ap.analyse_run(cfg, results_dir=tmp_path, **sweeps)
    assert res["meta"]["base_acc"] == base and res["meta"]["test_images"] == 500
    # rounding to 4 decimals keeps accuracy within a point; to 0 decimals destroys the network
    t = res["rounding"]
    assert t["acc"].iloc[0] == base
    assert abs(t["acc"].iloc[1] - base) <= 0.01
    assert t["acc"].iloc[2] < base - 0.2
    # noise p=0 changes nothing; p=1 (noise as large as the weights) hurts
    n = res["noise"]
    assert (n[n.p == 0]["acc"] == base).all()
    assert n[n.p == 1.0]["acc"].mean() < base - 0.05
    # K=256 weight sharing is close to the unquantised network, K=1 is not
    k = res["kmeans"]
    assert abs(k["acc"].iloc[1] - base) <= 0.02
    assert k["acc"].iloc[0] < base - 0.2
    # one filter per conv layer is useless; as many clusters as filters changes nothing
    fk = res["filter_kmeans"].set_index(["clusters", "bn"])["acc"]
    assert fk[(1, "original")] < base - 0.2 and fk[(1024, "original")] == base
    # ReLU outputs of a trained net are sparse but not dead
    relu = res["sparsity"].set_index("module").drop(index="output")["sparsity"]
    assert ((relu > 0.05) & (relu < 0.99)).all()
    assert res["params"].set_index("layer").loc["total", "params"] == sum(p.numel() for p in model.parameters())
    assert set(res["layer_noise"]["target"]) == set(ap.weight_layers(model))
    f = ap.findings({"mnist": res})
    assert f.loc["mnist", "k_needed"] == 256 and f.loc["mnist", "decimals_needed"] == 4
    # stored: a second call reads the tables back without training or evaluating anything
    monkeypatch.setattr(triage.experiments, "run", lambda *a, **k: pytest.fail("should read the store"))
    again = ap.analyse_run(cfg, results_dir=tmp_path, **sweeps)
    assert again["meta"] == res["meta"]
    pd.testing.assert_frame_equal(again["kmeans"], res["kmeans"], check_dtype=False)
    assert_unchanged(model, before)
    assert no_hooks(model)
