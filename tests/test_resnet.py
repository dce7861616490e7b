import functools
import math

import pytest
import torch
from torch import nn

from triage.resnet import (BasicBlock, ResNet, compress_stage, compressed_stage_layer_names, resnet8,
                           resnet18, resnet20, stage_glorot_, stage_mean_)
from triage.surgery import compress_block, compressed_layer_names


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def stage_params(c_in, c_out, depth, stride):
    """Hand count of one stage: per block 2 3x3 convs (no bias) + 2 BNs (gamma, beta);
    the first block's conv1 is C_in -> C_out; a 1x1 projection + BN where the shape changes."""
    first = 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out
    proj = c_in * c_out + 2 * c_out if (stride != 1 or c_in != c_out) else 0
    return first + proj + (depth - 1) * 2 * (9 * c_out * c_out + 2 * c_out)


def total_params(stem_kernel, in_ch, widths, depths, classes):
    n = stem_kernel ** 2 * in_ch * widths[0] + 2 * widths[0]
    c_in = widths[0]
    for i, (w, d) in enumerate(zip(widths, depths)):
        n += stage_params(c_in, w, d, 1 if i == 0 else 2)
        c_in = w
    return n + c_in * classes + classes


ARCHS = {  # builder: (stem kernel, widths, depths, a small input side that still tests shapes)
    resnet8: (3, (16, 32, 64), (1, 1, 1), 16),
    resnet20: (3, (16, 32, 64), (3, 3, 3), 16),
    resnet18: (7, (64, 128, 256, 512), (2, 2, 2, 2), 32),
}
CASES = [(b, s) for b, (_, w, _, _) in ARCHS.items() for s in range(1, len(w) + 1)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: a second thread only spins (and slows other workers' jobs)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@functools.lru_cache(maxsize=None)
def _parent(builder):
    """One parent per architecture for the whole module (compress_stage must not touch it)."""
    torch.manual_seed(0)
    return builder(10).eval()


@pytest.mark.parametrize("builder", list(ARCHS))
def test_parameter_counts_by_formula(builder):
    k, widths, depths, _ = ARCHS[builder]
    assert n_params(builder(10)) == total_params(k, 3, widths, depths, 10)
    assert n_params(builder(7, in_channels=1)) == total_params(k, 1, widths, depths, 7)
    # the published sizes: ResNet-20 with option-A shortcuts has 269,722; B adds the projections
    assert n_params(resnet20(10)) == 269_722 + (16 * 32 + 64) + (32 * 64 + 128)
    assert n_params(resnet18(1000)) == 11_689_512


def test_torchvision_resnet18_state_dict_loads_as_is():
    from triage._compat import import_torchvision

    torch.manual_seed(0)
    tv = import_torchvision().models.resnet18(num_classes=10).eval()
    with torch.no_grad():  # non-trivial BN statistics, so eval outputs test them too
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    ours = resnet18(10).eval()
    assert list(ours.state_dict()) == list(tv.state_dict())
    ours.load_state_dict(tv.state_dict())  # strict
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), rtol=0, atol=0)


@pytest.mark.parametrize("builder", list(ARCHS))
def test_forward_and_addressing(builder):
    _, widths, _, side = ARCHS[builder]
    m = builder(10, in_channels=1).eval()
    assert (m.num_blocks, m.num_classes, m.in_channels) == (len(widths), 10, 1)
    x = torch.randn(2, 1, side, side)
    with torch.no_grad():
        out = m(x)
        assert out.shape == (2, 10)
        for i in range(1, m.num_blocks + 1):
            assert m.block(i) is getattr(m, f"layer{i}")
            h = m.prefix(i)(x)
            assert h.shape[1] == (widths[0] if i == 1 else widths[i - 2])
            torch.testing.assert_close(m.forward_from(h, i), out, rtol=0, atol=0)
            if i < m.num_blocks:
                torch.testing.assert_close(m.block(i)(h), m.prefix(i + 1)(x), rtol=0, atol=0)
    assert m.prefix(2).layer1 is m.layer1 and m.prefix(1).conv1 is m.conv1  # shared, not copied


@pytest.mark.parametrize("builder, stage", CASES)
def test_compress_stage_exact_delta_shapes_and_parent_untouched(builder, stage):
    _, widths, depths, side = ARCHS[builder]
    parent = _parent(builder)
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    child = compress_stage(parent, stage)
    assert not child.training
    c_in, c_out = (widths[0] if stage == 1 else widths[stage - 2]), widths[stage - 1]
    stride, d = (1 if stage == 1 else 2), depths[stage - 1]
    proj = c_in * c_out + 2 * c_out if stride != 1 or c_in != c_out else 0
    assert n_params(parent) - n_params(child) == (2 * d - 1) * (9 * c_out ** 2 + 2 * c_out) + proj
    new = child.block(stage)
    assert list(dict(new.named_children())) == ["conv1", "bn1", "relu1"]
    conv = new.conv1
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.bias) == \
        (c_in, c_out, (3, 3), (stride, stride), None)
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        hp = hc = parent.prefix(1)(x)
        for i in range(1, parent.num_blocks + 1):  # same shapes, stage by stage
            hp, hc = parent.block(i)(hp), child.block(i)(hc)
            assert hp.shape == hc.shape
        assert child(x).shape == (2, 10)
    # everything outside the stage copied; the copy is independent; the parent untouched
    ps = parent.state_dict()
    for k, v in child.state_dict().items():
        if not k.startswith(f"layer{stage}."):
            assert torch.equal(v, ps[k]), k
    with torch.no_grad():
        child.fc.weight.add_(1)
    after = parent.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert len(parent.block(stage)) == d and parent.compressed == ()


def test_dispatch_from_surgery_and_fm_names():
    parent = resnet8(10)
    child = compress_block(parent, 2)
    assert isinstance(child, ResNet) and child.compressed == (2,)
    names = compressed_layer_names(2, child)
    assert names == compressed_stage_layer_names(2) == ("layer2.conv1", "layer2.bn1")
    keep = tuple(n + "." for n in names)
    assert [n for n, _ in child.named_parameters() if n.startswith(keep)] == \
        ["layer2.conv1.weight", "layer2.bn1.weight", "layer2.bn1.bias"]
    assert compressed_layer_names(2) == ("features.block2.conv1", "features.block2.bn1")  # VGG's


def test_compress_twice_and_rebuild_from_config():
    twice = compress_stage(compress_stage(resnet20(10), 1), 3)
    assert twice.compressed == (1, 3)
    # what load_model does: rebuild the architecture, then load the stored weights
    rebuilt = ResNet(**twice.config)
    rebuilt.load_state_dict(twice.state_dict())
    again = compress_stage(twice, 3)  # a compressed stage compresses to a fresh conv of its shape
    assert again.block(3).conv1.weight.shape == twice.block(3).conv1.weight.shape


def _tiny():
    """stage 1: two blocks 2 -> 2 (identity shortcuts); stage 2: one block 2 -> 3, stride 2 (projection)."""
    return ResNet(widths=(2, 3), depths=(2, 1), num_classes=2, in_channels=1)


def test_stage_mean_by_hand():
    parent = _tiny()
    with torch.no_grad():
        # stage 1: four 2->2 kernels filled 1, 2, 3, 4 -> mean 2.5 everywhere
        for v, c in enumerate([parent.layer1[0].conv1, parent.layer1[0].conv2,
                               parent.layer1[1].conv1, parent.layer1[1].conv2], start=1):
            c.weight.fill_(v)
        for v, b in enumerate([parent.layer1[0].bn1, parent.layer1[0].bn2,
                               parent.layer1[1].bn1, parent.layer1[1].bn2], start=1):
            b.weight.fill_(v)
            b.bias.fill_(-v)
        # stage 2: conv1 (3, 2, 3, 3) = 1 except one tap 5; conv2 (3, 3, 3, 3) = 3, its
        # input channel 2 (which the new 2-input conv has not) = 100; the projection 1000
        blk = parent.layer2[0]
        blk.conv1.weight.fill_(1)
        blk.conv1.weight[0, 0, 0, 0] = 5
        blk.conv2.weight.fill_(3)
        blk.conv2.weight[:, 2] = 100
        blk.downsample[0].weight.fill_(1000)
        blk.bn1.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
        blk.bn2.weight.copy_(torch.tensor([3.0, 4.0, 5.0]))
        blk.bn1.bias.zero_()
        blk.bn2.bias.copy_(torch.tensor([1.0, -1.0, 2.0]))
        blk.downsample[1].weight.fill_(100)
    child = compress_stage(compress_stage(parent, 1), 2)
    with torch.no_grad():
        child.layer2.bn1.running_mean.fill_(7)
    stage_mean_(child, parent, 1)
    stage_mean_(child, parent, 2)
    torch.testing.assert_close(child.layer1.conv1.weight, torch.full((2, 2, 3, 3), 2.5))
    torch.testing.assert_close(child.layer1.bn1.weight, torch.full((2,), 2.5))
    torch.testing.assert_close(child.layer1.bn1.bias, torch.full((2,), -2.5))
    expected = torch.full((3, 2, 3, 3), 2.0)  # (1 + 3) / 2
    expected[0, 0, 0, 0] = 4.0                # (5 + 3) / 2
    torch.testing.assert_close(child.layer2.conv1.weight, expected)
    torch.testing.assert_close(child.layer2.bn1.weight, torch.tensor([2.0, 3.0, 4.0]))
    torch.testing.assert_close(child.layer2.bn1.bias, torch.tensor([0.5, -0.5, 1.0]))
    assert torch.equal(child.layer2.bn1.running_mean, torch.zeros(3))
    assert torch.equal(child.layer2.bn1.running_var, torch.ones(3))


def test_stage_glorot():
    torch.manual_seed(0)
    child = compress_stage(resnet20(10), 3)
    with torch.no_grad():
        child.layer3.bn1.weight.fill_(3)
        child.layer3.bn1.running_mean.fill_(2)
    stage_glorot_(child, 3)
    w = child.layer3.conv1.weight
    bound = math.sqrt(6 / (32 * 9 + 64 * 9))
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert abs(w.std().item() - bound / math.sqrt(3)) < 0.05 * bound
    assert torch.equal(child.layer3.bn1.weight, torch.ones(64))
    assert torch.equal(child.layer3.bn1.running_mean, torch.zeros(64))


def _one_line_error(fn, match):
    with pytest.raises(ValueError, match=match) as e:
        fn()
    assert "\n" not in str(e.value)


def test_errors_are_one_clear_line():
    from triage._compat import import_torchvision

    m = resnet8(10)
    _one_line_error(lambda: compress_stage(nn.Linear(2, 2), 1), "no addressable stages")
    _one_line_error(lambda: compress_stage(import_torchvision().models.resnet18(), 1),
                    "no addressable stages")
    _one_line_error(lambda: ResNet(widths=(), depths=(), num_classes=10), "at least one stage")
    for bad in (0, 4, True):
        _one_line_error(lambda: compress_stage(m, bad), r"stage must be in 1\.\.3")
        _one_line_error(lambda: m.prefix(bad), r"stage must be in 1\.\.3")
    # a stage that halves twice: one conv with the stage's stride cannot give its output shape
    pooled = resnet8(10)
    pooled.layer2 = nn.Sequential(pooled.layer2[0], nn.MaxPool2d(2))
    _one_line_error(lambda: compress_stage(pooled, 2), "shapes cannot be matched")
    # a stage that does not take the channels the stage before gives
    rewired = resnet8(10)
    rewired.layer2 = nn.Sequential(BasicBlock(8, 32, 2))
    _one_line_error(lambda: compress_stage(rewired, 2), "shapes cannot be matched.*16 channels")
    # initialisers on the wrong side of the surgery
    child = compress_stage(m, 2)
    _one_line_error(lambda: stage_glorot_(m, 2), "not compressed")
    _one_line_error(lambda: stage_mean_(m, m, 2), "not compressed")
    _one_line_error(lambda: stage_mean_(child, child, 2), "parent stage 2 is compressed")
    with pytest.raises(TypeError):  # VGG's path is unchanged for anything else
        compress_block(nn.Linear(2, 2), 1)
