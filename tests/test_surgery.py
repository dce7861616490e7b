import pytest
import torch

from triage.models import VGG16_CFG, vgg16_bn
from triage.surgery import compress_block


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
