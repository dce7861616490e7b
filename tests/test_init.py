import math

import pytest
import torch

from triage.init import glorot_, hint_loss, initialise, parent_mean_, student_teacher_
from triage.models import vgg16_bn
from triage.surgery import compress_block


def tiny_parent(seed=0, width=1 / 16, in_channels=3):
    torch.manual_seed(seed)
    m = vgg16_bn(10, in_channels=in_channels, width=width)
    # give every BN non-trivial parameters and statistics, as a trained parent has
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
                mod.running_mean.uniform_(-1, 1)
                mod.running_var.uniform_(0.5, 2)
            if isinstance(mod, torch.nn.Conv2d):
                mod.bias.uniform_(-0.1, 0.1)
    return m


def test_glorot_bound_bias_and_fresh_bn():
    parent = tiny_parent()
    child = compress_block(parent, 2)
    glorot_(child, 2)
    conv, bn = child.block(2).conv1, child.block(2).bn1
    fan_in, fan_out = conv.in_channels * 9, conv.out_channels * 9
    a = math.sqrt(6 / (fan_in + fan_out))
    assert conv.weight.abs().max() <= a
    # a uniform on (-a, a) has variance a^2 / 3; 4*8*9 = 288 samples
    assert conv.weight.var().item() == pytest.approx(a * a / 3, rel=0.25)
    assert torch.count_nonzero(conv.bias) == 0
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.count_nonzero(bn.bias) == 0
    assert torch.count_nonzero(bn.running_mean) == 0 and torch.equal(bn.running_var, torch.ones_like(bn.running_var))


def test_mean_init_by_hand_block_with_different_input_widths():
    parent = tiny_parent()
    block = 3                       # convs: 8->16, 16->16, 16->16 at width 1/16
    child = compress_block(parent, block)
    parent_mean_(child, parent, block)
    p = parent.block(block)
    w = child.block(block).conv1.weight
    c_out, c_in = w.shape[:2]
    assert (c_in, c_out) == (8, 16)
    for o in range(c_out):
        for i in range(c_in):
            expected = (p.conv1.weight[o, i] + p.conv2.weight[o, i] + p.conv3.weight[o, i]) / 3
            torch.testing.assert_close(w[o, i], expected)
        assert child.block(block).conv1.bias[o].item() == pytest.approx(
            (p.conv1.bias[o] + p.conv2.bias[o] + p.conv3.bias[o]).item() / 3, abs=1e-6)
    bn = child.block(block).bn1
    torch.testing.assert_close(bn.weight, (p.bn1.weight + p.bn2.weight + p.bn3.weight) / 3)
    torch.testing.assert_close(bn.bias, (p.bn1.bias + p.bn2.bias + p.bn3.bias) / 3)
    assert torch.count_nonzero(bn.running_mean) == 0  # statistics are re-estimated


def test_mean_init_block5_is_plain_mean():
    parent = tiny_parent()
    child = compress_block(parent, 5)
    parent_mean_(child, parent, 5)
    p = parent.block(5)
    torch.testing.assert_close(child.block(5).conv1.weight,
                               torch.stack([p.conv1.weight, p.conv2.weight, p.conv3.weight]).mean(0))


def test_mean_init_block1_mnist_two_convs():
    parent = tiny_parent(in_channels=1)
    child = compress_block(parent, 1)
    parent_mean_(child, parent, 1)
    p = parent.block(1)
    torch.testing.assert_close(child.block(1).conv1.weight,
                               (p.conv1.weight + p.conv2.weight[:, :1]) / 2)


def test_initialisers_need_compressed_block():
    parent = tiny_parent()
    with pytest.raises(ValueError, match="not compressed"):
        glorot_(parent, 1)
    with pytest.raises(ValueError, match="unknown init"):
        initialise(compress_block(parent, 1), parent, 1, "xavier")
    with pytest.raises(ValueError, match="needs a training loader"):
        initialise(compress_block(parent, 1), parent, 1, "stn")


def test_stn_changes_only_new_layer_and_lowers_hint_loss():
    parent = tiny_parent().eval()
    block = 2
    child = compress_block(parent, block)
    glorot_(child, block)
    g = torch.Generator().manual_seed(1)
    loader = [(torch.randn(16, 3, 32, 32, generator=g), torch.zeros(16, dtype=torch.long)) for _ in range(4)]
    before_child = {k: v.clone() for k, v in child.state_dict().items()}
    before_parent = {k: v.clone() for k, v in parent.state_dict().items()}
    loss0 = hint_loss(child, parent, block, loader)
    losses = student_teacher_(child, parent, block, loader, epochs=8, lr=1e-2, progress=False)
    loss1 = hint_loss(child, parent, block, loader)
    assert loss1 < 0.75 * loss0, (loss0, loss1, losses)
    assert losses[-1] < losses[0]
    new = ("features.block2.conv1.", "features.block2.bn1.")
    after = child.state_dict()
    for k, v in after.items():
        if k.startswith(new):
            if k.endswith(("weight", "running_mean")):
                assert not torch.equal(v, before_child[k]), k
        else:
            assert torch.equal(v, before_child[k]), k
    assert all(torch.equal(v, before_parent[k]) for k, v in parent.state_dict().items())
    assert not parent.training  # modes restored
