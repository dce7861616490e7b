import pytest
import torch
from torch import nn

from triage._compat import import_torchvision
from triage.models import VGG16_CFG, block_convs, conv_layers, count_flops, vgg16_bn


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


# ----------------------------------------------------------------------------- cost (compress to failure)

def test_count_flops_by_hand_and_no_hook_leaks():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 4, 3, stride=2, padding=1),
                        nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.Flatten(), nn.Linear(16, 3))
    # MACs on a 1x4x4 image: conv1 2*4*4 outputs x 1*9 = 288; conv2 (stride 2) 4*2*2 x 2*9 = 288;
    # conv3 (2 groups) 4*2*2 x (4/2)*9 = 288; linear 3 x 16 = 48. Params: 20 + 76 + 76 + 51.
    assert count_flops(net, (1, 4, 4)) == {"params": 223, "macs": 912, "flops": 1824}
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
    with pytest.raises(RuntimeError):
        count_flops(net, (3, 4, 4))          # wrong channels: the forward fails
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_count_flops_matches_torch_and_torchvision():
    from torch.utils.flop_counter import FlopCounterMode
    m = vgg16_bn(10, width=1 / 16).eval()
    with FlopCounterMode(display=False) as fc:
        m(torch.zeros(1, 3, 32, 32))
    assert count_flops(m)["flops"] == fc.get_total_flops()
    # torchvision lists VGG16-BN (224 px, width 1) at 15.47 G multiply-adds ("GFLOPS")
    big = count_flops(vgg16_bn(1000, resolution=224))
    assert big["params"] == 138365992 and round(big["macs"] / 1e9, 2) == 15.47
