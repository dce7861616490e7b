"""Tests of triage.robustness: weight noise scaled by hand-computed layer stds, rounding by hand."""
import math

import pytest
import torch
from torch import nn

from triage import autopsy as ap
from triage import robustness as rb

from tiny_nets import assert_unchanged, fake_batches, no_hooks, snapshot, tiny_vgg

# tiny models: one intra-op thread avoids oversubscribing a shared CPU (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


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
        noisy = rb.add_weight_noise(m, p, seed=3)
        for i in range(2):
            d = ap.layer_values(noisy[i]) - ap.layer_values(m[i])
            assert d.std().item() == pytest.approx(p * sig[i], rel=0.02)
            assert abs(d.mean().item()) < 4 * p * sig[i] / math.sqrt(d.numel())
    assert_unchanged(m, before)
    same = rb.add_weight_noise(m, 0.3, seed=3)
    again = rb.add_weight_noise(m, 0.3, seed=3)
    assert torch.equal(same[0].weight, again[0].weight)
    zero = rb.add_weight_noise(m, 0.0)
    assert_unchanged(zero, before)
    only = rb.add_weight_noise(m, 0.5, layers=["1"])
    assert torch.equal(only[0].weight, m[0].weight) and not torch.equal(only[1].weight, m[1].weight)


def test_noise_sweep_rows_and_unchanged_model():
    m = tiny_vgg()
    loader = fake_batches()
    before = snapshot(m)
    layers = ["features.block1.conv1", "classifier.3"]
    df = rb.noise_sweep(m, loader, ps=[0, 0.5], draws=2, per_layer=True, layers=layers, progress=False)
    assert len(df) == 2 * 2 * 2
    base = ap.accuracy(m, loader)["acc"]
    assert (df[df.p == 0]["acc"] == base).all()      # p = 0 leaves the network as it was
    assert set(df.target) == set(layers)
    # per-layer noise with the same seed equals add_weight_noise on that layer alone
    one = rb.add_weight_noise(m, 0.5, layers=["classifier.3"], seed=1000 * 1 + 1)
    row = df[(df.target == "classifier.3") & (df.p == 0.5) & (df.draw == 1)]
    assert row["acc"].item() == ap.accuracy(one, loader)["acc"]
    alld = rb.noise_sweep(m, loader, ps=[0.5], draws=1, progress=False)
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
    r2 = rb.round_weights(m, 2)
    assert r2[0].weight.tolist()[0] == pytest.approx([0.12, -0.99, 0.0])
    assert r2[0].bias.item() == pytest.approx(0.02)
    r0 = rb.round_weights(m, 0)
    assert r0[0].weight.tolist()[0] == [0.0, -1.0, 0.0]
    r4 = rb.round_weights(m, 4)
    assert r4[0].weight.tolist()[0] == pytest.approx([0.1235, -0.9877, 0.0049], abs=1e-7)
    assert torch.equal(rb.round_weights(m, None)[0].weight, m[0].weight)
    assert_unchanged(m, before)


def test_rounding_table_on_tiny_vgg():
    m = tiny_vgg()
    loader = fake_batches()
    before = snapshot(m)
    t = rb.rounding_table(m, loader, progress=False)
    assert t["decimals"].tolist() == ["all", 5, 4, 3, 2, 1]
    assert t["distinct"].is_monotonic_decreasing
    assert t.loc[t.decimals == 1, "distinct"].item() <= 21        # -1.0 .. 1.0 at most
    assert t.loc[0, "acc"] == ap.accuracy(m, loader)["acc"]
    assert_unchanged(m, before)
