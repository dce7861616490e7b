"""Tests of triage.similarity: linear CKA by hand, block-1 records on tiny models and real runs."""
import numpy as np
import pytest
import torch

from triage.similarity import block1_activations, block1_record, linear_cka


def test_linear_cka_by_hand():
    # x = (1, 2, 3) centres to (-1, 0, 1); y = (1, 0, 0) to (2, -1, -1)/3.
    # <K, L> = (x.y)^2 = 1; ||K|| = |x|^2 = 2; ||L|| = |y|^2 = 2/3  ->  CKA = 1 / (2 * 2/3) = 0.75
    assert linear_cka([[1], [2], [3]], [[1], [0], [0]]) == pytest.approx(0.75)


def test_linear_cka_invariances_and_errors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(x, 5 * x @ q) == pytest.approx(1.0)          # rotation and scale
    assert linear_cka(x, x + 3) == pytest.approx(1.0)              # a shift is centred away
    assert linear_cka(x, rng.normal(size=(40, 3))) < 0.5
    assert np.isnan(linear_cka(x, np.ones((40, 2))))               # a constant representation
    with pytest.raises(ValueError, match="same n"):
        linear_cka(x, x[:10])


def test_block1_activations_of_a_resnet_stage():
    from triage.resnet import resnet8
    torch.manual_seed(0)
    m = resnet8(10, width=0.5).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = m.block(1)(m.prefix(1)(x))
    torch.testing.assert_close(block1_activations(m, x), expected)
    assert not m.block(1)._forward_hooks


def test_block1_record_of_the_base_is_one(tmp_path):
    from triage.loaders import get_loaders
    from triage.models import vgg16_bn
    torch.manual_seed(0)
    base = vgg16_bn(10, in_channels=1, width=1 / 16)
    _, test, _ = get_loaders("mnist", test_per_class=5, train_per_class=1)
    maps, cka, dead = block1_record(base, base, test, n=50)
    assert maps.shape == (4, 32, 32) and maps.dtype == np.float16 and cka == 1.0 and 0 <= dead <= 4
    other = vgg16_bn(10, in_channels=1, width=1 / 16)
    _, cka2, _ = block1_record(other, base, test, n=50)
    assert 0 < cka2 < 1
    # kill two of block 1's four channels: a large negative BN shift makes their ReLU output 0
    bn = base.block(1).bn2 if hasattr(base.block(1), "bn2") else [m for m in base.block(1).modules()
                                                                      if isinstance(m, torch.nn.BatchNorm2d)][-1]
    with torch.no_grad():
        bn.bias[:] = 0.0
        bn.weight[:] = 1.0
        bn.bias[[0, 2]] = -1e6
    _, _, dead = block1_record(base, base, test, n=50)
    assert dead == 2
    with torch.no_grad():
        bn.weight[:] = 0.0
        bn.bias[:] = 1.0     # every channel a constant 1: alive
    assert block1_record(base, base, test, n=50)[2] == 0


def test_dead_channels_by_hand():
    from triage.similarity import dead_channels
    a = torch.zeros(3, 4, 2, 2)
    a[2, 0, 1, 1] = 1e-3          # channel 0: positive once, on one image: alive
    a[:, 1] = 0.5                 # channel 1: alive everywhere
    a[1, 3, 0, 0] = -2.0          # channel 3: only negative values (not post-ReLU, still dead)
    assert dead_channels(a) == 2  # channels 2 and 3
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        dead_channels(torch.zeros(4, 2, 2))


def test_block_activations_of_a_later_block_by_hand():
    """Block 3's output is block 3 applied to blocks 1-2's output, its pool left out (VGG), and a
    ResNet stage's output after its prefix; block 1 is what block1_activations gives."""
    from triage.models import vgg16_bn
    from triage.resnet import resnet8
    from triage.similarity import block_activations
    from triage.surgery import compress_block
    torch.manual_seed(0)
    m = compress_block(vgg16_bn(10, width=1 / 8), 3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h = m.block(2)(m.block(1)(x))
        b3 = m.block(3)
        pool = [i for i, mod in enumerate(b3) if isinstance(mod, torch.nn.MaxPool2d)][-1]
        expected = b3[:pool](h)                       # the ReLU after the single compressed conv
    got = block_activations(m, x, 3)
    assert got.shape == (2, 32, 8, 8)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(block_activations(m, x, 1), block1_activations(m, x))
    r = resnet8(10, width=0.5).eval()
    with torch.no_grad():
        torch.testing.assert_close(block_activations(r, x, 2), r.block(2)(r.prefix(2)(x)))
    with pytest.raises(ValueError, match="block must be in 1..5"):
        block_activations(m, x, 6)


def test_dead_compressed_counts_the_compressed_blocks_channels():
    """Two of a compressed block 2's eight channels pushed below zero by their BN shift: 2 of 8 dead."""
    from triage.loaders import get_loaders
    from triage.models import vgg16_bn
    from triage.similarity import dead_compressed
    from triage.surgery import compress_block
    torch.manual_seed(0)
    child = compress_block(vgg16_bn(10, in_channels=1, width=1 / 16), 2)
    _, test, _ = get_loaders("mnist", test_per_class=5, train_per_class=1)
    bn = [m for m in child.block(2).modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]
    with torch.no_grad():
        bn.weight[:] = 0.0
        bn.bias[:] = 1.0          # every channel a constant 1: alive
        bn.bias[[1, 5]] = -1.0    # these two a constant -1 before the ReLU: dead
    assert dead_compressed(child, 2, test, n=50) == (2, 8)
