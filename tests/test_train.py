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


def test_layout_choice_keeps_a_resumed_runs_layout():
    from triage.train import channels_last
    # a new run: channels_last in either arithmetic
    assert channels_last(None) is True and channels_last(torch.bfloat16) is True
    # a checkpoint that records its layout keeps it
    assert channels_last(None, {"channels_last": False}) is False
    assert channels_last(torch.bfloat16, {"channels_last": True}) is True
    # one written before the layout was recorded: fp32 trained NCHW then, bf16 channels_last
    assert channels_last(None, {"epoch": 3}) is False
    assert channels_last(torch.bfloat16, {"epoch": 3}) is True


def _grads(model, x, y, fmt, dtype=torch.float32):
    torch.manual_seed(1)                          # the same dropout masks in every call
    model = model.to(dtype=dtype, memory_format=fmt)
    F.cross_entropy(model(x.to(dtype).contiguous(memory_format=fmt)), y).backward()
    # a conv bias right before BN has a zero gradient in exact arithmetic: its value is rounding
    return {n: p.grad.double() for n, p in model.named_parameters()
            if not (n.endswith("bias") and "conv" in n and not n.startswith("fc"))}


@pytest.mark.parametrize("arch", ["vgg-mnist", "vgg-cifar-child", "resnet8-w1"])
def test_channels_last_fp32_gives_the_gradients_of_nchw(arch):
    """The networks triage trains channels_last in fp32 get the exact gradients (fp64, NCHW) to
    fp32 rounding on this CPU, as NCHW does; small channel counts included (width 1/16: 1-, 3-
    and 4-channel convs). A kernel with a layout bug (oneDNN#6035) is off by orders more."""
    import copy

    from triage.models import vgg16_bn
    from triage.resnet import resnet8
    from triage.surgery import compress_block
    from triage.train import channels_last, onednn_1x1_hazard
    torch.manual_seed(0)
    if arch == "vgg-mnist":
        model, x = vgg16_bn(10, in_channels=1, width=1 / 16), torch.randn(16, 1, 32, 32)
    elif arch == "vgg-cifar-child":
        model, x = compress_block(vgg16_bn(10, width=1 / 16), 2), torch.randn(16, 3, 32, 32)
    else:
        model, x = resnet8(10, width=1.0), torch.randn(16, 3, 32, 32)
    assert channels_last(None, model=model) and not onednn_1x1_hazard(model)
    y = torch.randint(0, 10, (16,))
    exact = _grads(copy.deepcopy(model), x, y, torch.contiguous_format, torch.float64)
    for fmt in (torch.contiguous_format, torch.channels_last):
        got = _grads(copy.deepcopy(model), x, y, fmt)
        err = {n: float((got[n] - exact[n]).abs().max() / exact[n].abs().max()) for n in exact}
        worst = max(err, key=err.get)
        assert err[worst] < 1e-3, (fmt, worst, err[worst])


def test_channels_last_avoids_onednn_small_strided_1x1_in_fp32():
    from triage.resnet import resnet8
    from triage.train import channels_last, onednn_1x1_hazard
    small = resnet8(10, width=1 / 16)         # shortcuts 1x1 stride 2 from 1 and 2 channels
    assert onednn_1x1_hazard(small) == ["layer2.0.downsample.0", "layer3.0.downsample.0"]
    assert channels_last(None, model=small) is False                      # fp32 on a CPU: NCHW
    assert channels_last(torch.bfloat16, model=small) is True             # bf16 is another kernel
    assert channels_last(None, model=small, device="cuda") is True        # cuDNN, not oneDNN
    assert channels_last(None, {"channels_last": True}, model=small) is True   # a resumed run keeps its layout
    assert onednn_1x1_hazard(resnet8(10, width=1.0)) == []              # 16 and 32 input channels
