"""Tiny models and batches shared by the tests of the autopsy paper's analyses (autopsy, robustness,
kmeans): small enough to reason about by hand and to run on 2 CPU cores."""
import torch

from triage.models import vgg16_bn


def snapshot(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def assert_unchanged(m, before):
    after = m.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


def no_hooks(m):
    return all(len(x._forward_hooks) == 0 and len(x._forward_pre_hooks) == 0 for x in m.modules())


def tiny_vgg(seed=0, classes=10):
    torch.manual_seed(seed)
    return vgg16_bn(classes, in_channels=1, width=1 / 16).eval()


def fake_batches(n=2, bs=16, classes=10, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, channels, 32, 32, generator=g), torch.randint(0, classes, (bs,), generator=g))
            for _ in range(n)]
