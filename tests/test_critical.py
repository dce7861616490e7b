"""Tests of triage.critical: hand-computed maps on toy models, finite differences for the
contribution index, exact surgery checks against a masked copy, and one real-data smoke check
on the smoke-profile CIFAR-10 base."""
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from triage import critical as cr
from triage import critical_am as cam
from triage import critical_distill as cd
from triage import surgery
from tiny_nets import assert_unchanged, snapshot
from triage.models import vgg16_bn


# ----------------------------------------------------------------------------- helpers
# tiny models: one intra-op thread avoids oversubscribing a shared CPU (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def no_hooks(model):
    """No module hook of any kind is left on ``model``, and no global module hook either."""
    from torch.nn.modules import module as M
    for m in model.modules():
        for d in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if len(getattr(m, d, {})):
                return False
    return not (M._global_forward_hooks or M._global_forward_pre_hooks or M._global_backward_hooks)


def toy():
    """1x1 conv (filters +x and -x) -> inplace ReLU -> global average pool -> Linear(2, 3).

    a_0 = relu(x), a_1 = relu(-x); z_c = sum_k W[c, k] mean(a_k) + b_c, so the contribution
    index of filter k to class c is |W[c, k]| for every image.
    """
    conv = nn.Conv2d(1, 2, 1, bias=False)
    fc = nn.Linear(2, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        fc.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 3.0], [-4.0, 0.0]]))
        fc.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    return nn.Sequential(OrderedDict(conv=conv, relu=nn.ReLU(inplace=True), pool=nn.AdaptiveAvgPool2d(1),
                                     flat=nn.Flatten(), fc=fc))


TOY_X = torch.tensor([[[[1.0, -1.0], [2.0, 0.0]]],
                      [[[-2.0, -2.0], [0.0, 4.0]]],
                      [[[3.0, 3.0], [3.0, 3.0]]]])
TOY_Y = torch.tensor([0, 0, 2])


def toy_loader():
    return [(TOY_X[:1], TOY_Y[:1]), (TOY_X[1:], TOY_Y[1:])]  # two batches: sums must accumulate


def tiny_vgg(seed=0, in_channels=3, resolution=32, dtype=torch.float32):
    """A width-1/16 VGG16-BN with random BN statistics, so that no layer is an identity."""
    torch.manual_seed(seed)
    m = vgg16_bn(10, in_channels=in_channels, width=1 / 16, resolution=resolution)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
            elif isinstance(mod, nn.Linear):
                mod.weight.normal_(0, 0.3)
                mod.bias.uniform_(-0.5, 0.5)
    return m.to(dtype).eval()


def random_loader(n=12, batch=4, classes=10, seed=0, shape=(3, 32, 32), dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g, dtype=dtype)
    y = torch.arange(n) % classes
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def hand_maps(act, con, counts=None, classes=None, layers=None):
    """ClassMaps from explicit per-layer (classes, filters) lists."""
    layers = layers or [f"features.block{i + 1}.conv1" for i in range(len(act))]
    a = {n: torch.tensor(v, dtype=torch.float64) for n, v in zip(layers, act)}
    g = {n: torch.tensor(v, dtype=torch.float64) for n, v in zip(layers, con)}
    n_cls = a[layers[0]].shape[0]
    counts = torch.tensor(counts if counts is not None else [1] * n_cls)
    return cr.ClassMaps(tuple(layers), a, g, counts, tuple(classes or [str(i) for i in range(n_cls)]))


# ----------------------------------------------------------------------------- class maps by hand
def test_class_maps_by_hand_on_a_linear_head():
    model = toy().train()
    before = snapshot(model)
    maps = cr.class_maps(model, toy_loader(), class_names=["a", "b", "c"], progress=False)
    assert maps.layers == ("conv",)
    # class 0: images 1 and 2. a_0 = relu(x): means 3/4 and 1; a_1 = relu(-x): means 1/4 and 1
    # class 2: image 3. a_0 mean 3, a_1 = 0. Class 1 has no image: NaN row.
    a = maps.activation["conv"]
    assert torch.allclose(a[0], torch.tensor([0.875, 0.625], dtype=torch.float64))
    assert torch.allclose(a[2], torch.tensor([3.0, 0.0], dtype=torch.float64))
    assert torch.isnan(a[1]).all()
    # contribution index = |W[c, k]| (for a_1 of image 3 too: the gradient is taken at the ReLU's
    # output, so a silent filter still has its coefficient)
    g = maps.contribution["conv"]
    assert torch.allclose(g[0], torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert torch.allclose(g[2], torch.tensor([4.0, 0.0], dtype=torch.float64))
    assert torch.isnan(g[1]).all()
    assert maps.counts.tolist() == [2, 0, 1]
    assert torch.allclose(maps.score("conv")[0], torch.tensor([0.875, 1.25], dtype=torch.float64))
    # the model is unchanged, back in train mode, and carries no hook
    assert model.training and all(m.training for m in model.modules())
    assert_unchanged(model, before)
    assert no_hooks(model)


def test_contribution_index_equals_finite_differences_on_vgg():
    """CI = |d z_c / d delta| where a_k -> a_k + delta at every position of the post-ReLU map."""
    model = tiny_vgg(dtype=torch.float64)
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    c = 4
    maps = cr.class_maps(model, [(x, torch.tensor([c]))], progress=False)
    units = cr.conv_units(model)
    for layer, k in [("features.block5.conv3", 5), ("features.block5.conv1", 0), ("features.block4.conv2", 7),
                     ("features.block2.conv1", 3)]:
        relu = units[layer].act

        def z(delta):
            def shift(_m, _i, out):
                out = out.clone()
                out[:, k] += delta
                return out
            h = relu.register_forward_hook(shift)
            try:
                with torch.no_grad():
                    return model(x)[0, c].item()
            finally:
                h.remove()

        eps = 1e-6
        fd = abs(z(eps) - z(-eps)) / (2 * eps)
        assert maps.contribution[layer][c, k].item() == pytest.approx(fd, rel=1e-4, abs=1e-9), layer
        # and the activation is the post-ReLU mean (checked against a hook of our own)
        got = []
        h = relu.register_forward_hook(lambda _m, _i, out: got.append(out[0, k].mean().item()))
        with torch.no_grad():
            model(x)
        h.remove()
        assert maps.activation[layer][c, k].item() == pytest.approx(got[0], rel=1e-9)
    assert no_hooks(model)


def test_class_maps_layer_selection_and_csv_round_trip(tmp_path):
    model = tiny_vgg()
    maps = cr.class_maps(model, random_loader(), layers=["conv5_1", "block4.conv3"], progress=False)
    assert maps.layers == ("features.block4.conv3", "features.block5.conv1")
    assert maps.activation["features.block5.conv1"].shape == (10, 32)
    assert int(maps.counts.sum()) == 12
    assert (maps.activation["features.block5.conv1"][:2] >= 0).all()
    back = cr.ClassMaps.from_csv(maps.to_csv(tmp_path / "maps.csv"))
    assert back.layers == maps.layers and back.classes == maps.classes
    assert torch.equal(back.counts, maps.counts)
    for n in maps.layers:
        assert torch.allclose(back.activation[n], maps.activation[n], equal_nan=True)
        assert torch.allclose(back.contribution[n], maps.contribution[n], equal_nan=True)


def test_layer_differentiation_by_hand():
    # layer 1: filter 0 has per-class means 1, 3 (STD 1, mean 2), filter 1: 2, 2 (STD 0)
    # layer 2: filter 0: 0, 4 (STD 2, mean 2); filter 1 never fires (left out of rel_std)
    # class 2 has no images: its (NaN) row is ignored
    nan = float("nan")
    maps = hand_maps(act=[[[1, 2], [3, 2], [nan, nan]], [[0, 0], [4, 0], [nan, nan]]],
                     con=[[[1, 1], [1, 1], [nan, nan]], [[1, 1], [1, 1], [nan, nan]]], counts=[5, 5, 0])
    d = cr.layer_differentiation(maps)
    assert d["std"].tolist() == pytest.approx([0.5, 1.0])
    assert d["rel_std"].tolist() == pytest.approx([0.25, 1.0])
    assert d["paper_name"].tolist() == ["Conv1_1", "Conv2_1"]
    assert d["depth"].tolist() == [1, 2]


def test_top_filters_by_hand():
    maps = hand_maps(act=[[[1, 2, 3, 0.5], [1, 1, 1, 1]]], con=[[[1, 2, 0.1, 10], [5, 0, 0, 0]]],
                     classes=["cat", "dog"])
    t = cr.top_filters(maps, "conv1_1", "cat", k=3)
    # scores for cat: 1, 4, 0.3, 5
    assert t["filter"].tolist() == [3, 1, 0]
    assert t["score"].tolist() == pytest.approx([5, 4, 1])
    assert t["top_class"].tolist() == ["cat", "cat", "dog"]
    assert t["contribution_dog"].tolist() == pytest.approx([0, 0, 5])


# ----------------------------------------------------------------------------- hooks never leak
class Boom(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


def test_hooks_removed_when_the_forward_raises():
    model = nn.Sequential(OrderedDict(conv1=nn.Conv2d(3, 4, 3, padding=1), relu1=nn.ReLU(inplace=True),
                                      boom=Boom(), conv2=nn.Conv2d(4, 4, 3, padding=1), relu2=nn.ReLU(),
                                      pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(4, 2)))
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(RuntimeError, match="boom"):
        cr.class_maps(model, [(x, torch.tensor([0, 1]))], progress=False)
    assert no_hooks(model)
    with pytest.raises(RuntimeError, match="boom"):
        cam.activation_maximisation(model, "conv2", [0], steps=2, shape=(3, 8, 8), progress=False)
    assert no_hooks(model)
    # the hooked layer runs before the failing one: AM stops there and never reaches it
    am = cam.activation_maximisation(model, "conv1", [1], steps=3, shape=(3, 8, 8), progress=False)
    assert am.images.shape == (1, 3, 8, 8)
    assert no_hooks(model)


def test_hooks_removed_when_the_loader_raises():
    model = tiny_vgg().train()

    def loader():
        yield random_loader(n=4)[0]
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        cr.class_maps(model, loader(), progress=False)
    assert no_hooks(model)
    assert model.training  # the mode is restored on the error path too


# ----------------------------------------------------------------------------- activation maximisation
def test_am_finds_the_known_optimum_of_a_one_channel_toy():
    """Filter 0 is +x, filter 1 is -x: the optimal images are all white and all black."""
    model = toy()
    am = cam.activation_maximisation(model, "conv", [0, 1], steps=60, lr=0.1, mean=(0.5,), std=(0.25,),
                                    shape=(1, 8, 8), progress=False)
    assert am.images.shape == (2, 1, 8, 8)
    assert float(am.images[0].mean()) > 0.95
    assert float(am.images[1].mean()) < 0.05
    # de-normalised into [0, 1]; the objective is the (pre-ReLU) conv output: (1 - 0.5) / 0.25 = 2 at best
    assert am.images.min() >= 0 and am.images.max() <= 1
    assert am.activation[0].item() == pytest.approx(2.0, abs=0.05)
    assert no_hooks(model)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_am_raises_filter_and_logit_on_vgg(in_channels):
    model = tiny_vgg(in_channels=in_channels)
    before = snapshot(model)
    mean, std = (0.5,) * in_channels, (0.25,) * in_channels
    am = cam.activation_maximisation(model, "Conv5_1", [0, 3], steps=25, mean=mean, std=std, progress=False)
    assert am.images.shape == (2, in_channels, 32, 32)
    assert am.layer == "features.block5.conv1" and am.units == (0, 3)
    assert (am.activation > am.start).all()
    # without the regularisers (which hold back a random network's high-frequency optimum) it climbs faster
    free = cam.activation_maximisation(model, "Conv5_1", [0, 3], steps=25, jitter=0, blur_sigma=0, l2=0,
                                      mean=mean, std=std, progress=False)
    assert (free.activation > am.start + 0.05).all()
    assert 0 <= float(am.images.min()) and float(am.images.max()) <= 1
    lg = cam.activation_maximisation(model, "logits", 2, steps=25, mean=mean, std=std, progress=False)
    assert lg.activation[0] > lg.start[0]
    assert_unchanged(model, before)
    assert no_hooks(model)


# ----------------------------------------------------------------------------- selection and surgery
def test_select_filters_by_hand_and_ceil_rule():
    maps = hand_maps(act=[[[1, 2, 3, 0.5], [1, 1, 1, 1]]], con=[[[1, 2, 0.1, 10], [4, 3, 2, 1]]],
                     classes=["cat", "dog"])
    assert cd.select_filters(maps, "cat", 0.5)["features.block1.conv1"].tolist() == [1, 3]
    assert cd.select_filters(maps, "dog", 0.25)["features.block1.conv1"].tolist() == [0]
    assert cd.select_filters(maps, 1, 0.3)["features.block1.conv1"].tolist() == [0, 1]  # ceil(1.2) = 2
    assert cd.select_filters(maps, "cat", 1.0)["features.block1.conv1"].tolist() == [0, 1, 2, 3]
    # the paper's 52 of 512 at ratio 0.1, in each of the last six layers by default
    big = hand_maps(act=[torch.rand(2, 512).tolist()] * 8, con=[torch.rand(2, 512).tolist()] * 8)
    kept = cd.select_filters(big, 0, 0.1)
    assert list(kept) == list(big.layers[-6:])
    assert all(len(v) == 52 for v in kept.values())


def expected_params(cfg, in_channels, classes, hidden):
    """Hand count of a VGG with the 32-px head: conv weights + bias, BN gamma + beta, two Linears."""
    n, c_in = 0, in_channels
    for block in cfg:
        for c in block:
            n += c_in * c * 9 + c + 2 * c
            c_in = c
    return n + (c_in * hidden + hidden) + (hidden * classes + classes)


def test_distilled_size_at_paper_scale():
    s = cd.distilled_size(vgg16_bn(10), 0.1)
    assert s["base_params"] == expected_params(vgg16_bn(10).cfg, 3, 10, 512)
    cfg = ((64, 64), (128, 128), (256, 256, 256), (52, 52, 52), (52, 52, 52))
    assert s["params"] == expected_params(cfg, 3, 10, 512)
    # MB: float32 parameters + BN running mean/var, 10^6 bytes
    n_bn = sum(sum(b) for b in cfg)
    assert s["mb"] == pytest.approx((s["params"] + 2 * n_bn) * 4 / 1e6)
    assert s["mb"] < s["base_mb"] / 5


# ----------------------------------------------------------------------------- one-vs-all
class Logits(nn.Module):
    """A 'model' whose input already is its logits (for hand-computed TP/FP rates)."""

    def forward(self, x):
        return x


def test_one_vs_all_by_hand():
    z = torch.tensor([[2.0, 1.0, -1.0], [0.5, 0.6, -3.0], [-0.1, -0.2, -0.3], [3.0, 0.0, 4.0], [1.0, 0.0, 0.0]])
    y = torch.tensor([0, 0, 0, 1, 2])
    loader = [(z[:2], y[:2]), (z[2:], y[2:])]
    # argmax == 0: rows 0, 2, 4 -> TP 2/3 (rows 0, 2), FP 1/2 (row 4)
    r = cd.one_vs_all(Logits(), loader, 0)
    assert (r["tp"], r["fp"], r["n_pos"], r["n_neg"]) == (pytest.approx(2 / 3), 0.5, 3, 2)
    # z_0 > 0: rows 0, 1, 3, 4 -> TP 2/3, FP 2/2
    r = cd.one_vs_all(Logits(), loader, 0, rule="positive_logit")
    assert (r["tp"], r["fp"]) == (pytest.approx(2 / 3), 1.0)
    r = cd.one_vs_all(Logits(), loader, 2)
    assert (r["tp"], r["fp"]) == (0.0, 0.25)
    # AUC of z_0 (class 0 = rows 0-2: 2.0, 0.5, -0.1; rest: 3.0, 1.0): pairs won 1 + 0 + 0 of 6
    assert cd.one_vs_all(Logits(), loader, 0)["auc"] == pytest.approx(1 / 6)
    # z_1 (row 3: 0.0 against 1.0, 0.6, -0.2, 0.0): wins 1, ties 1 -> 1.5 / 4
    assert cd.one_vs_all(Logits(), loader, 1)["auc"] == pytest.approx(1.5 / 4)
    # balanced accuracy and the collapse flag: class 0 under z_0 > 0 says "0" to 2/3 and 2/2
    r = cd.one_vs_all(Logits(), loader, 0, rule="positive_logit")
    assert (r["balanced"], r["collapsed"]) == (pytest.approx((2 / 3 + 1 - 1) / 2), False)


def test_argmax_rule_is_strict_and_a_constant_detector_is_flagged():
    """All logits equal (every path but one cut, zero biases): the arg-max never says "c"."""
    z, y = torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])
    r = cd.one_vs_all(Logits(), [(z, y)], 0)
    assert (r["tp"], r["fp"], r["balanced"], r["collapsed"]) == (0.0, 0.0, 0.5, True)
    # "always c": TP = FP = 1, collapsed under either rule
    z = torch.tensor([[1.0, -1.0, -1.0]]).repeat(4, 1)
    for rule in cr.RULES:
        r = cd.one_vs_all(Logits(), [(z, y)], 0, rule=rule)
        assert (r["tp"], r["fp"], r["collapsed"]) == (1.0, 1.0, True)


def test_distillation_table_matches_direct_evaluation():
    model = tiny_vgg()
    maps = cr.class_maps(model, random_loader(n=20, batch=10), progress=False)
    test = random_loader(n=30, batch=8, seed=5)
    t = cd.distillation_table(model, maps, test, 0.25, classes=[0, "3"], progress=False)
    assert t["class"].tolist() == [0, 3] and (t["kept"] == "8/32").all()
    for _, row in t.iterrows():
        small, _ = cd.distill_class(model, maps, int(row["class"]), 0.25)
        direct = cd.one_vs_all(small, test, int(row["class"]))
        assert (row["tp"], row["fp"]) == (direct["tp"], direct["fp"])
        assert row["auc"] == pytest.approx(direct["auc"])
        base = cd.one_vs_all(model, test, int(row["class"]))
        assert (row["base_tp"], row["base_fp"], row["base_auc"]) == (base["tp"], base["fp"], base["auc"])
        assert (row["balanced"], row["collapsed"]) == (direct["balanced"], direct["collapsed"])
        assert row["params"] == cd.model_size(small)["params"]
    sw = cd.ratio_sweep(model, maps, test, ratios=(0.05, 0.25, 1.0), classes=[0, 3], progress=False)
    assert len(sw) == 6
    assert sw[sw.ratio == 0.25][["tp", "fp"]].to_numpy().tolist() == t[["tp", "fp"]].to_numpy().tolist()
    s = cd.summarise_sweep(sw)
    assert s["ratio"].tolist() == [0.05, 0.25, 1.0]
    assert s["mb"].is_monotonic_increasing
    assert s["balanced"].tolist() == pytest.approx(((s["tp"] + 1 - s["fp"]) / 2).tolist())


def test_breakdown_ratio_by_hand():
    s = pd.DataFrame({"ratio": [0.02, 0.05, 0.1, 0.5, 1.0], "balanced": [0.5, 0.6, 0.85, 0.9, 0.92]})
    assert cd.breakdown_ratio(s, tolerance=0.1) == 0.05
    assert cd.breakdown_ratio(s, tolerance=0.5) is None
    with pytest.raises(ValueError, match="no column 'nope'"):
        cd.breakdown_ratio(s, column="nope")


# ----------------------------------------------------------------------------- clear errors
@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, float("nan"), True, "0.1", None])
def test_bad_ratio(ratio):
    maps = hand_maps(act=[[[1, 2], [3, 4]]], con=[[[1, 1], [1, 1]]])
    with pytest.raises(ValueError, match="ratio"):
        cd.select_filters(maps, 0, ratio)
    with pytest.raises(ValueError, match="ratio"):
        cd.distilled_size(tiny_vgg(), ratio)


def test_clear_errors_for_bad_input():
    model = tiny_vgg()
    maps = hand_maps(act=[[[1, 2], [3, 4]]], con=[[[1, 1], [1, 1]]], classes=["cat", "dog"], counts=[1, 0])
    with pytest.raises(ValueError, match="unknown class 'zebra'"):
        cd.select_filters(maps, "zebra")
    with pytest.raises(ValueError, match="out of range"):
        maps.class_index(2)
    with pytest.raises(ValueError, match="no images of class 'dog'"):
        cd.select_filters(maps, "dog")
    with pytest.raises(ValueError, match="unknown conv layer 'conv6_1'"):
        cr.resolve_layers(model, "conv6_1")
    with pytest.raises(ValueError, match="unknown conv layer"):
        cr.class_maps(model, random_loader(), layers=["features.block5.bn1"], progress=False)
    with pytest.raises(ValueError, match="not in these maps"):
        cd.select_filters(maps, "cat", 0.5, layers=["conv5_1"])
    with pytest.raises(ValueError, match="no Conv2d"):
        cr.class_maps(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)), random_loader(), progress=False)
    with pytest.raises(ValueError, match="no Conv2d"):
        cam.activation_maximisation(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), "conv1_1", 0, shape=(3, 2, 2))
    with pytest.raises(TypeError, match="triage VGG"):
        surgery.distill(toy(), {"conv": [0]})
    with pytest.raises(ValueError, match="0..31"):
        surgery.distill(model, {"conv5_1": [0, 32]})
    with pytest.raises(ValueError, match="at least one filter"):
        surgery.mask_filters(model, {"conv5_1": []})
    with pytest.raises(ValueError, match="repeat"):
        surgery.distill(model, {"conv5_1": [1, 1]})
    with pytest.raises(ValueError, match="filter index out of range"):
        cam.activation_maximisation(model, "conv5_1", [32], steps=1, progress=False)
    with pytest.raises(ValueError, match="labels must be in 0..9"):
        cr.class_maps(model, [(torch.randn(2, 3, 32, 32), torch.tensor([0, 10]))], progress=False)
    with pytest.raises(ValueError, match="unknown rule"):
        cd.one_vs_all(model, random_loader(), 0, rule="max")
    with pytest.raises(ValueError, match="max_batches"):
        cr.class_maps(model, random_loader(), max_batches=0, progress=False)
    assert no_hooks(model)


# ----------------------------------------------------------------------------- real data (smoke CIFAR-10 base)
def test_real_cifar10_smoke_base(cifar_base):
    model, train, test, sp = cifar_base
    before = snapshot(model)
    maps = cr.class_maps(model, train, class_names=sp.classes, progress=False)
    assert maps.counts.tolist() == [50] * 10
    for n in maps.layers:
        assert torch.isfinite(maps.activation[n]).all() and (maps.activation[n] >= 0).all()
        assert torch.isfinite(maps.contribution[n]).all() and (maps.contribution[n] > 0).any()
    # The score finds the filters a class depends on: silencing the top 10% of Conv5_3 for class c
    # moves z_c on the test images of c far more than silencing the bottom 10% (measured on the
    # smoke base: 10-50x). Random or misaligned filter indices give a ratio near 1.
    z0, y0 = cd._logits(model, test)
    top_moves, bottom_moves = [], []
    layer = "features.block5.conv3"
    for c in range(10):
        order = torch.argsort(maps.score(layer)[c], descending=True)
        k = max(1, len(order) // 10)
        z_top, _ = cd._logits(surgery.mask_filters(model, {layer: order[k:]}, zero_logit_bias=False), test)
        z_bot, _ = cd._logits(surgery.mask_filters(model, {layer: order[:-k]}, zero_logit_bias=False), test)
        m = y0 == c
        top_moves.append(float((z_top[m, c] - z0[m, c]).abs().mean()))
        bottom_moves.append(float((z_bot[m, c] - z0[m, c]).abs().mean()))
    assert np.mean(top_moves) > 5 * np.mean(bottom_moves)
    assert sum(t > b for t, b in zip(top_moves, bottom_moves)) >= 8
    # distillation at the paper's ratio: every class, 10% of the filters, a much smaller network
    t = cd.distillation_table(model, maps, test, 0.1, progress=False)
    assert len(t) == 10 and (t["n_pos"] == 50).all() and (t["n_neg"] == 450).all()
    assert t["tp"].between(0, 1).all() and t["fp"].between(0, 1).all()
    base = cd.model_size(model)
    assert (t["mb"] < base["mb"] / 3).all()
    assert_unchanged(model, before)
    assert no_hooks(model)
