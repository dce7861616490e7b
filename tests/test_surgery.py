import pytest
import torch

from test_critical import expected_params, tiny_vgg
from tiny_nets import assert_unchanged, snapshot
from triage.critical import conv_units
from triage.critical_distill import last_conv_layers, model_size
from triage.models import VGG16_CFG, vgg16_bn
from triage.surgery import compress_block, compress_blocks, compression_savings, distill, mask_filters

# tiny models: one intra-op thread avoids oversubscribing a shared CPU (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def removed_params(cfg, block, in_channels):
    """Hand count: convs 2..n of the block (3x3 weights + bias) and their BNs (gamma, beta)."""
    out = cfg[block - 1][-1]
    n_convs = len(cfg[block - 1])
    return (n_convs - 1) * (out * out * 9 + out + 2 * out)


@pytest.mark.parametrize("block", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("width, in_ch", [(1.0, 3), (0.25, 1)])
def test_compression_shapes_and_exact_parameter_delta(block, width, in_ch):
    parent = vgg16_bn(10, in_channels=in_ch, width=width).eval()
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    child = compress_block(parent, block).eval()
    cfg = parent.cfg
    assert n_params(parent) - n_params(child) == removed_params(cfg, block, in_ch)
    # the block is one conv (block input -> block output channels), BN, ReLU, pool
    b = child.block(block)
    assert list(dict(b.named_children())) == ["conv1", "bn1", "relu1", "pool"]
    c_in = in_ch if block == 1 else cfg[block - 2][-1]
    assert (b.conv1.in_channels, b.conv1.out_channels, b.conv1.kernel_size) == (c_in, cfg[block - 1][-1], (3, 3))
    # same output shapes, block by block
    x = torch.randn(2, in_ch, 32, 32)
    with torch.no_grad():
        hp, hc = x, x
        for i in range(1, 6):
            hp, hc = parent.block(i)(hp), child.block(i)(hc)
            assert hp.shape == hc.shape
        assert child(x).shape == (2, 10)
    # parent untouched
    after = parent.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len(parent.block(block)) == 3 * len(VGG16_CFG[block - 1]) + 1


def test_other_layers_copied():
    parent = vgg16_bn(10, width=0.125)
    child = compress_block(parent, 3)
    ps, cs = parent.state_dict(), child.state_dict()
    for k, v in cs.items():
        if not k.startswith("features.block3."):
            assert torch.equal(v, ps[k]), k
    # the copy is independent
    with torch.no_grad():
        child.block(1).conv1.weight.add_(1)
    assert not torch.equal(parent.block(1).conv1.weight, child.block(1).conv1.weight)


def test_compressing_twice_and_bad_block():
    parent = vgg16_bn(10, width=0.125)
    twice = compress_block(compress_block(parent, 2), 4)
    assert len(twice.block(2)) == 4 and len(twice.block(4)) == 4
    with pytest.raises(ValueError, match="1..5"):
        compress_block(parent, 0)
    with pytest.raises(TypeError):
        compress_block(torch.nn.Linear(2, 2), 1)


def test_compression_savings_by_hand():
    model = vgg16_bn(10, width=1 / 16)   # channels 4, 8, 16, 32, 32
    before = snapshot(model)
    t = compression_savings(model)
    assert list(t.index) == [1, 2, 3, 4, 5] and list(t["convs"]) == [2, 2, 3, 3, 3]
    assert list(t["channels"]) == ["3→4", "4→8", "8→16", "16→32", "32→32"]
    # block 1: conv1_2 (4*4*9 + 4) and bn1_2 (2*4); block 5: two of (32*32*9 + 32 + 2*32)
    assert t.loc[1, "parameters removed by compression"] == 156
    assert t.loc[5, "parameters removed by compression"] == 2 * (32 * 32 * 9 + 32 + 64)
    assert list(t["parameters removed by compression"]) == [removed_params(model.cfg, b, 3) for b in range(1, 6)]
    assert_unchanged(model, before)


# ----------------------------------------------------------------------------- critical-path distillation
def test_distill_keeps_exact_channels_and_matches_the_masked_copy():
    model = tiny_vgg()
    before = snapshot(model)
    g = torch.Generator().manual_seed(1)
    layers = last_conv_layers(model)
    assert layers == ["features.block4.conv1", "features.block4.conv2", "features.block4.conv3",
                      "features.block5.conv1", "features.block5.conv2", "features.block5.conv3"]
    sizes = [3, 5, 1, 7, 2, 4]
    kept = {n: torch.randperm(32, generator=g)[:k] for n, k in zip(layers, sizes)}
    small = distill(model, kept)
    # exact channel counts: convs, BNs, next convs' inputs, classifier input
    units = conv_units(small)
    c_in = 16  # block 3's output at width 1/16
    for n, k in zip(layers, sizes):
        u = units[n]
        assert (u.conv.in_channels, u.conv.out_channels, u.norm.num_features) == (c_in, k, k)
        assert u.norm.running_mean.shape == (k,)
        c_in = k
    assert small.classifier[0].in_features == 4 and small.classifier[0].out_features == 32
    assert small.cfg == ((4, 4), (8, 8), (16, 16, 16), (3, 5, 1), (7, 2, 4))
    assert model_size(small)["params"] == expected_params(small.cfg, 3, 10, 32)
    assert torch.count_nonzero(small.classifier[-1].bias) == 0
    # same logits as the original with the removed filters' outputs zeroed (and zero logit biases)
    masked = mask_filters(model, kept)
    x = torch.randn(6, 3, 32, 32, generator=g)
    with torch.no_grad():
        zs, zm, z0 = small(x), masked(x), model(x)
    assert torch.allclose(zs, zm, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(zs, z0, atol=1e-2)  # the removal does change the network
    # the masked copy really silences the removed filters after the ReLU
    acts = []
    relu = conv_units(masked)["features.block5.conv1"].act
    h = relu.register_forward_hook(lambda _m, _i, out: acts.append(out.clone()))
    with torch.no_grad():
        masked(x)
    h.remove()
    dropped = sorted(set(range(32)) - set(kept["features.block5.conv1"].tolist()))
    assert acts[0][:, dropped].abs().max() == 0
    # ratio 1 keeps everything: the original network with zero logit biases
    full = distill(model, {n: range(32) for n in layers})
    with torch.no_grad():
        assert torch.allclose(full(x), z0 - model.classifier[-1].bias, atol=1e-5)
    assert_unchanged(model, before)


def test_distill_a_middle_layer_and_the_224_px_head():
    model = tiny_vgg(resolution=224)
    kept = {"conv4_2": [0, 2, 9], "conv5_3": [1, 30]}
    small = distill(model, kept, zero_logit_bias=False)
    assert small.features.block4.conv2.out_channels == 3
    assert small.features.block4.conv3.in_channels == 3 and small.features.block4.conv3.out_channels == 32
    assert small.classifier[0].in_features == 2 * 49  # 7 x 7 columns per kept channel
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(small(x), mask_filters(model, kept, zero_logit_bias=False)(x), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("surgery", [
    lambda m: compress_block(m, 2), lambda m: compress_blocks(m, (1, 4)),
    lambda m: distill(m, {"conv5_1": [0, 3], "conv5_3": [1]}), lambda m: mask_filters(m, {"conv4_2": [2, 5]})])
@pytest.mark.parametrize("training", [True, False])
def test_surgery_returns_a_new_module_and_leaves_its_input_untouched(surgery, training):
    model = tiny_vgg().train(training)
    before = snapshot(model)
    modules = list(model.modules())
    out = surgery(model)
    assert out is not model and out.training == training
    # nothing shared: changing the result never changes the input
    assert not {p.data_ptr() for p in out.parameters()} & {p.data_ptr() for p in model.parameters()}
    assert not {id(m) for m in out.modules()} & {id(m) for m in modules}
    assert list(model.modules()) == modules and model.training == training
    assert_unchanged(model, before)


def test_distill_and_mask_filters_stay_importable_from_critical_distill():
    from triage import critical_distill
    assert critical_distill.distill is distill and critical_distill.mask_filters is mask_filters
