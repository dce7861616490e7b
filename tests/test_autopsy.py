"""Tests of triage.autopsy: hand-computed values on tiny models, scikit-learn as reference; bad input
refused with one clear error across the autopsy paper's analyses (autopsy, robustness, kmeans)."""

import numpy as np
import pytest
import torch
from torch import nn

from triage import autopsy as ap
from triage import kmeans as km
from triage import robustness as rb

from tiny_nets import assert_unchanged, fake_batches, no_hooks, snapshot, tiny_vgg

# tiny models: one intra-op thread avoids oversubscribing a shared CPU (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


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


# ----------------------------------------------------------------------------- bad input
def test_clear_errors_for_bad_input():
    m = tiny_vgg()
    loader = fake_batches()
    for k in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="K"):
            km.kmeans_quantise(m, k)
    with pytest.raises(ValueError, match="K must be >= 1"):
        km.kmeans_1d(torch.ones(3), 0)
    with pytest.raises(ValueError, match="clusters K"):
        km.filter_kmeans(m, 0)
    with pytest.raises(ValueError, match="p must be >= 0"):
        rb.add_weight_noise(m, -0.1)
    with pytest.raises(ValueError, match="p must be >= 0"):
        rb.noise_sweep(m, loader, ps=[0.1, -1], progress=False)
    with pytest.raises(ValueError, match="decimals must be >= 0"):
        rb.round_weights(m, -1)
    with pytest.raises(ValueError, match="decimals"):
        rb.rounding_table(m, loader, decimals=[2, 1.5], progress=False)
    with pytest.raises(ValueError, match="method"):
        km.kmeans_1d(torch.ones(3), 2, method="magic")
    with pytest.raises(ValueError, match="finite"):
        km.kmeans_1d(torch.tensor([1.0, float("nan")]), 1)
    with pytest.raises(ValueError, match="no module named"):
        rb.add_weight_noise(m, 0.1, layers=["features.block9"])
    with pytest.raises(ValueError, match="max_batches"):
        ap.accuracy(m, loader, max_batches=0)


def test_models_without_conv_layers_are_refused():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    for fn in (ap.filter_pca, ap.filter_table, lambda mm: km.filter_kmeans(mm, 2)):
        with pytest.raises(ValueError, match="no convolutional layer"):
            fn(mlp)
    with pytest.raises(ValueError, match="no convolutional layer"):
        km.filter_kmeans_sweep(mlp, [(torch.zeros(1, 4), torch.zeros(1, dtype=torch.long))], progress=False)
    with pytest.raises(ValueError, match="not"):
        ap.filter_pca(mlp, layers=["1"])
    # the weight analyses still work on it
    assert ap.parameter_table(mlp).loc["total", "params"] == 4 * 3 + 3 + 3 * 2 + 2


def test_data_that_does_not_match_the_model_is_refused():
    m = tiny_vgg(classes=10)
    hundred = fake_batches(classes=100, seed=1)
    assert max(int(y.max()) for _, y in hundred) >= 10
    with pytest.raises(ValueError, match="labels up to"):
        rb.noise_sweep(m, hundred, ps=[0], progress=False)
    with pytest.raises(ValueError, match="labels up to"):
        ap.output_sparsity(m, hundred)

    class WithLabels(list):            # like DeviceLoader: all labels in .y
        y = torch.tensor([0, 3, 57])
    with pytest.raises(ValueError, match="labels up to 57"):
        km.kmeans_sweep(m, WithLabels(fake_batches()), ks=[2], progress=False)
    with pytest.raises(ValueError, match="100 classes but the model outputs 10"):
        rb.rounding_table(m, fake_batches(), num_classes=100, progress=False)
    with pytest.raises(ValueError, match="do not fit the model"):
        ap.check_compatible(m, fake_batches(channels=3))
    with pytest.raises(ValueError, match="no batch"):
        ap.check_compatible(m, [])
    assert ap.check_compatible(m, fake_batches(), num_classes=10) == 10
    assert no_hooks(m)
