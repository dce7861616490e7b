import pytest
import torch
import torch.nn.functional as F

from triage.models import vgg16_bn
from triage.surgery import compress_block
from triage.train import (KerasReduceLROnPlateau, apply_regime, autocast_dtype, epochs_to_fraction,
                          evaluate, make_optimizer, set_train_mode, summarise, train_one_epoch)


def batches(n=3, bs=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, 3, 32, 32, generator=g), torch.randint(0, 10, (bs,), generator=g))
            for _ in range(n)]


def snapshot(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_frozen_regime_changes_only_compressed_layer_and_keeps_bn_stats():
    torch.manual_seed(0)
    child = compress_block(vgg16_bn(10, width=1 / 16), 3)
    apply_regime(child, "frozen", 3)
    trainable = {n for n, p in child.named_parameters() if p.requires_grad}
    assert trainable == {"features.block3.conv1.weight", "features.block3.conv1.bias",
                         "features.block3.bn1.weight", "features.block3.bn1.bias"}
    before = snapshot(child)
    opt = make_optimizer(child, lr=0.1, momentum=0.9, weight_decay=5e-4)
    train_one_epoch(child, opt, batches(), device="cpu", regime="frozen", block=3, progress=False)
    after = child.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"features.block3.conv1.weight", "features.block3.conv1.bias",
                       "features.block3.bn1.weight", "features.block3.bn1.bias",
                       "features.block3.bn1.running_mean", "features.block3.bn1.running_var",
                       "features.block3.bn1.num_batches_tracked"}


def test_thawed_regime_trains_everything():
    torch.manual_seed(0)
    child = compress_block(vgg16_bn(10, width=1 / 16), 2)
    apply_regime(child, "frozen", 2)
    apply_regime(child, "thawed", 2)  # thawing after freezing restores every parameter
    before = snapshot(child)
    opt = make_optimizer(child, lr=0.1)
    train_one_epoch(child, opt, batches(), device="cpu", regime="thawed", block=2, progress=False)
    after = child.state_dict()
    params = {n for n, _ in child.named_parameters()}
    assert all(not torch.equal(after[k], before[k]) for k in params)


def test_train_mode_under_frozen_keeps_other_bns_in_eval():
    child = compress_block(vgg16_bn(10, width=1 / 16), 4)
    set_train_mode(child, "frozen", 4)
    assert child.block(4).bn1.training
    assert not child.block(1).bn1.training and not child.block(5).bn3.training
    assert child.classifier.training  # dropout as in training
    set_train_mode(child, "thawed", 4)
    assert child.block(1).bn1.training


def test_bad_regime():
    with pytest.raises(ValueError, match="unknown regime"):
        apply_regime(vgg16_bn(10, width=1 / 16), "melted", 1)


def test_keras_plateau_schedule_by_hand():
    # Keras 2: patience 1 -> cut after the first epoch without improvement; cooldown 3
    # -> the next cut comes 3 epochs later at the earliest.
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = KerasReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=3, min_lr=0.2)
    lrs = []
    for acc in [0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7]:
        s.step(acc)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2]
    # restored state continues identically
    s2 = KerasReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=3, min_lr=0.2)
    s2.load_state_dict(s.state_dict())
    assert s2.state_dict() == s.state_dict()


def test_epochs_to_99pct_of_max():
    assert epochs_to_fraction([0.5, 0.9, 0.95, 1.0, 0.99]) == 4
    assert epochs_to_fraction([0.5, 0.995, 1.0]) == 2
    s = summarise([0.2, 0.8, 0.79, 0.805])
    assert s["max_test_acc"] == 0.805 and s["epoch_of_max"] == 4 and s["epochs_to_99pct"] == 2


def test_evaluate_counts_correct():
    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    y = torch.tensor([0, 1, 1, 1])  # third is wrong
    out = evaluate(model, [(x[:2], y[:2]), (x[2:], y[2:])])
    assert out["acc"] == 0.75 and out["n"] == 4
    assert out["loss"] == pytest.approx(F.cross_entropy(x, y).item(), rel=1e-6)


def test_autocast_choice():
    assert autocast_dtype("cpu", "fp32") is None
    assert autocast_dtype("cpu", "bf16") is torch.bfloat16
    assert autocast_dtype("cuda", "auto") is torch.bfloat16
    with pytest.raises(ValueError):
        autocast_dtype("cpu", "fp8")
