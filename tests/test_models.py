import pytest
import torch

from triage._compat import import_torchvision
from triage.models import VGG16_CFG, block_convs, conv_layers, vgg16_bn


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_paper_architecture_matches_torchvision_count():
    # torchvision's vgg16_bn at 1000 classes, 224 px: 138,365,992 parameters
    assert n_params(vgg16_bn(1000, resolution=224)) == 138_365_992


def test_torchvision_state_dict_loads():
    tv = import_torchvision()
    ref = tv.models.vgg16_bn(weights=None, num_classes=10).eval()
    ours = vgg16_bn(10, resolution=224).eval()
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=True)
    assert not missing and not unexpected
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))


def test_small_head_and_blocks():
    m = vgg16_bn(10, in_channels=1, width=0.25, resolution=32)
    assert [len(block_convs(m.block(i))) for i in range(1, 6)] == [len(b) for b in VGG16_CFG]
    assert m.block(1).conv1.in_channels == 1
    assert m.block(5).conv3.out_channels == 128
    # 512w -> 512w -> classes
    assert [l.out_features for l in m.classifier if isinstance(l, torch.nn.Linear)] == [128, 10]
    assert m(torch.randn(3, 1, 32, 32)).shape == (3, 10)
    assert len(conv_layers(m)) == 13


def test_64px_input_uses_global_pool():
    m = vgg16_bn(120, width=0.125, resolution=64)
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 120)


@pytest.mark.parametrize("kwargs, match", [
    (dict(width=0), "width"), (dict(width=-1), "width"), (dict(resolution=16), "resolution"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        vgg16_bn(10, **kwargs)


def test_block_index_checked():
    with pytest.raises(ValueError, match="1..5"):
        vgg16_bn(10, width=0.1).block(6)
