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
    maps, cka = block1_record(base, base, test, n=50)
    assert maps.shape == (4, 32, 32) and maps.dtype == np.float16 and cka == 1.0
    other = vgg16_bn(10, in_channels=1, width=1 / 16)
    _, cka2 = block1_record(other, base, test, n=50)
    assert 0 < cka2 < 1
