"""Training loops, the frozen/thawed regimes and the paper's schedule.

Nowak & Corso, Sec. 3.2-3.4 and Tables 1-2: SGD with momentum 0.9 and weight
decay, Keras' ReduceLROnPlateau on test accuracy (patience 1, cooldown 3,
per-data-set decay factor and minimum learning rate).

Regimes after compression:

* ``frozen`` (FM): only the compressed conv and its BN learn. Every other
  parameter has ``requires_grad=False`` and every other BN stays in eval mode,
  so the frozen BNs keep the parent's running statistics (our choice -- the
  paper does not say; updating them would change the frozen network).
* ``thawed`` (TM): everything learns, all BNs in train mode.

Reason to change: how one epoch trains or evaluates, the regimes, or the schedule.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .surgery import compressed_layer_names

__all__ = [
    "REGIMES", "apply_regime", "set_train_mode", "trainable_parameters", "autocast_dtype",
    "train_one_epoch", "evaluate", "make_optimizer", "make_scheduler", "epochs_to_fraction",
    "summarise", "seed_everything", "KerasReduceLROnPlateau", "CachedFeatures", "predict",
    "rng_state", "set_rng_state", "hardware", "DTYPES", "channels_last", "onednn_1x1_hazard",
]

REGIMES = ("frozen", "thawed")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally force deterministic kernels."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def rng_state() -> dict:
    """Every RNG a run draws from (Python, NumPy, torch CPU and CUDA), for a checkpoint."""
    import random

    import numpy as np
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state) -> None:
    """Restore :func:`rng_state` (a bare torch CPU state, as older checkpoints hold, works too)."""
    import random

    import numpy as np
    if isinstance(state, torch.Tensor):
        torch.set_rng_state(state)
        return
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _new_layer_modules(block: int, model=None) -> tuple[str, ...]:
    return compressed_layer_names(block, model)


def apply_regime(model: nn.Module, regime: str | None, block: int = 0) -> nn.Module:
    """Set ``requires_grad`` for a regime (in place) and return the model.

    ``regime=None`` or ``'thawed'``: every parameter trains. ``'frozen'``: only the
    parameters of ``features.block{block}.conv1`` and ``bn1`` (the compressed layer).
    """
    if regime in (None, "thawed"):
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if regime != "frozen":
        raise ValueError(f"unknown regime {regime!r}; choose one of {', '.join(REGIMES)}")
    if block < 1:
        raise ValueError("the frozen regime needs a compressed block (>= 1)")
    keep = tuple(n + "." for n in _new_layer_modules(block, model))
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(keep))
    return model


def set_train_mode(model: nn.Module, regime: str | None, block: int = 0) -> nn.Module:
    """``model.train()``, except that under FM every BN but the new one stays in eval mode."""
    model.train()
    if regime == "frozen":
        keep = set(_new_layer_modules(block, model))
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and name not in keep:
                m.eval()
    return model


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def autocast_dtype(device: torch.device | str, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype to train with: None means fp32.

    ``auto`` picks bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16 / AMX),
    where bf16 autocast with channels_last measured several times fp32 here
    (see benchmarks/RESULTS.md); fp32 elsewhere.
    """
    device = torch.device(device)
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"unknown precision {precision!r}; choose auto, bf16 or fp32")
    if device.type == "cuda":
        return torch.bfloat16
    if device.type == "cpu":
        native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        return torch.bfloat16 if (native or amx) else None
    return None


# the names a run records for its arithmetic, and back (a checkpoint stores the name)
DTYPES = {None: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def channels_last(amp: torch.dtype | None, checkpoint: dict | None = None, model: nn.Module | None = None,
                  device: torch.device | str = "cpu") -> bool:
    """Whether a run trains in channels_last: yes, in every arithmetic, with two exceptions.

    bf16 needs it (oneDNN's bf16 convolutions and the tensor cores want NHWC; bf16 in NCHW
    measured ~10x slower on a Zen 4 CPU). fp32 gains too: on an AVX2 CPU (Zen 3) a VGG16-BN
    training step measured 1.27x the images/s of NCHW at width 1/8 and 64 px, 1.10x at width
    1/4 and 32 px (benchmarks/RESULTS.md).

    The exceptions:

    * a run resumed from a checkpoint keeps the layout it began in, as it keeps its
      arithmetic; a checkpoint from before the layout was recorded trained by that time's rule
      (channels_last only under autocast);
    * fp32 on a CPU when ``model`` has a 1x1 convolution with a stride and fewer than 16 input
      channels (a ResNet's projection shortcut at a small width): oneDNN's 1x1 kernel computes
      the weight gradient of that case wrongly in NHWC and writes past its workspace
      (uxlfoundation/oneDNN#6035, open; reproduced here with torch 2.13 on AVX2: heap corruption
      in backward for 2-4 input channels). VGG16-BN has no such convolution.

    >>> channels_last(None), channels_last(None, {"epoch": 3}), channels_last(None, {"channels_last": True})
    (True, False, True)
    """
    if checkpoint is not None:
        return bool(checkpoint.get("channels_last", amp is not None))
    if amp is None and torch.device(device).type == "cpu" and model is not None and onednn_1x1_hazard(model):
        return False
    return True


def onednn_1x1_hazard(model: nn.Module) -> list[str]:
    """The convolutions of ``model`` that oneDNN's fp32 NHWC 1x1 kernel gets wrong on a CPU:
    1x1, strided, fewer than 16 input channels (oneDNN#6035; the AVX2 kernel fails below its
    8-channel block, and 16 covers the AVX-512 kernel's block too)."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (1, 1)
            and tuple(m.stride) != (1, 1) and m.in_channels < 16]


def hardware(device: torch.device | str) -> str:
    """What the arithmetic ran on, in one line: the GPU's name, or the CPU's model, family and
    model numbers and the widest vector unit torch uses on it (with "bf16" where it has native
    bf16). ``precision="auto"`` resolves by this, so a run records it beside its config.

    >>> hardware("cpu")                                   # doctest: +SKIP
    'AMD EPYC (family 25 model 1), AVX2'
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
                if key.strip() == "flags":
                    break
    except OSError:
        pass
    import platform
    name = info.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']} model {info['model']})"
    text = f"{name}, {torch.backends.cpu.get_cpu_capability()}"
    if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        text += " bf16"
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        text += " AMX"
    return text


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_optimizer(model: nn.Module, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.SGD:
    """SGD with momentum over the parameters that require grad (Table 2: momentum 0.9)."""
    params = trainable_parameters(model)
    if not params:
        raise ValueError("no trainable parameters")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


class KerasReduceLROnPlateau:
    """Keras' ``ReduceLROnPlateau`` (the paper's scheduler, Sec. 3.4), epoch by epoch.

    torch's class of the same name counts patience and cooldown one epoch
    differently (it reduces after ``patience + 1`` bad epochs and its cooldown
    ends one epoch later), so we follow the Keras 2 code exactly:
    an epoch is an improvement if ``acc > best + min_delta`` (absolute); during
    cooldown the wait counter stays 0; otherwise ``wait += 1`` and when
    ``wait >= patience`` every group's lr becomes ``max(lr * factor, min_lr)``
    and a cooldown of ``cooldown`` epochs starts.
    """

    def __init__(self, optimizer, factor: float, patience: int, cooldown: int, min_lr: float,
                 min_delta: float = 1e-4):
        if not 0 < factor < 1:
            raise ValueError(f"lr decay factor must be in (0, 1), got {factor}")
        self.optimizer = optimizer
        self.factor, self.patience, self.cooldown = factor, patience, cooldown
        self.min_lr, self.min_delta = min_lr, min_delta
        self.best = -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def step(self, metric: float) -> None:
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if metric > self.best + self.min_delta:
            self.best = metric
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                for group in self.optimizer.param_groups:
                    if group["lr"] > self.min_lr:
                        group["lr"] = max(group["lr"] * self.factor, self.min_lr)
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("best", "wait", "cooldown_counter")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


def make_scheduler(optimizer, factor: float, patience: int, cooldown: int, min_lr: float):
    """The paper's schedule: Keras-style ReduceLROnPlateau on test accuracy."""
    return KerasReduceLROnPlateau(optimizer, factor=factor, patience=patience, cooldown=cooldown,
                                  min_lr=min_lr)


def train_one_epoch(model: nn.Module, optimizer, loader, *, device, amp_dtype=None,
                    regime: str | None = None, block: int = 0, progress: bool = True,
                    desc: str = "train", forward=None) -> dict:
    """One pass over ``loader`` with cross-entropy. Returns ``{'loss', 'acc'}``.

    Loss and accuracy are accumulated on the device and read once at the end
    (no host sync per batch). ``forward(model, x)`` replaces ``model(x)``: with a
    :class:`CachedFeatures` loader, ``x`` is the frozen prefix's output and the
    forward pass starts at the compressed block.
    """
    device = torch.device(device)
    set_train_mode(model, regime, block)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for x, y in tqdm(loader, desc=desc, disable=not progress, leave=False):
        with _autocast(device, amp_dtype):
            logits = model(x) if forward is None else forward(model, x)
            loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * y.shape[0]
        correct += (logits.argmax(1) == y).sum()
        n += y.shape[0]
    loss, acc = (loss_sum / max(n, 1)).item(), correct.item() / max(n, 1)
    if not math.isfinite(loss):
        raise FloatingPointError(f"training loss is {loss}; lower the learning rate")
    return {"loss": loss, "acc": acc}


@torch.no_grad()
def evaluate(model: nn.Module, loader, *, device="cpu", amp_dtype=None) -> dict:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``loader`` (eval mode).

    Example:
        >>> evaluate(model, test_loader)            # doctest: +SKIP
        {'loss': 0.31, 'acc': 0.912, 'n': 10000}
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    try:
        for x, y in loader:
            with _autocast(device, amp_dtype):
                logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            n += y.shape[0]
    finally:
        model.train(was_training)
    return {"loss": (loss_sum / max(n, 1)).item(), "acc": correct.item() / max(n, 1), "n": n}


@torch.no_grad()
def predict(model: nn.Module, loader, *, device="cpu", amp_dtype=None) -> torch.Tensor:
    """Predicted class of every image of an (unshuffled) loader, on the CPU."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out = []
    try:
        for x, _ in loader:
            with _autocast(device, amp_dtype):
                out.append(model(x).argmax(1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


class CachedFeatures:
    """A training loader over the outputs of a frozen function of the image, computed once.

    Under FM the blocks before the compressed one are frozen with BN in eval mode, and
    STN's hint input and target come from the frozen parent: each is a fixed function of
    the image and of whether it is mirrored. So ``fn`` runs once over every training image
    and its mirror image, and each epoch replays ``loader``'s own shuffle and flip draws
    over the stored outputs: the batches equal those the uncached pass computes (up to
    the kernels' batch-size-dependent rounding), at the cost of the memory the outputs take.

    Args:
        fn: frozen module or function ``x -> tensor`` (or a tuple of tensors).
        loader: the :class:`~triage.loaders.DeviceLoader` to mirror (train, shuffled).
        amp_dtype: autocast dtype the outputs are computed and kept in (None: fp32).
        batch_size: images per forward pass while filling the cache.

    Example:
        >>> feats = CachedFeatures(model.prefix(3).eval(), train_loader, amp_dtype=torch.bfloat16)
        >>> for h, y in feats: logits = model.forward_from(h, 3)      # doctest: +SKIP
    """

    def __init__(self, fn, loader, *, amp_dtype=None, batch_size: int = 512):
        self.loader = loader
        device = loader.device
        tables = {}
        with torch.no_grad(), _autocast(device, amp_dtype):
            for flipped in ((False, True) if loader.flip else (False,)):
                parts = [fn(x) for x in loader.fixed_batches(flipped, batch_size)]
                if isinstance(parts[0], tuple):
                    tables[flipped] = tuple(torch.cat(p) for p in zip(*parts))
                else:
                    tables[flipped] = (torch.cat(parts),)
        self.tables = tables
        self.tuple_out = isinstance(parts[0], tuple)

    @staticmethod
    def nbytes_per_image(fn, loader, amp_dtype=None) -> int:
        """Bytes the cache takes per image (both flips), measured on one image."""
        with torch.no_grad(), _autocast(loader.device, amp_dtype):
            out = fn(next(loader.fixed_batches(False, 1)))
        out = out if isinstance(out, tuple) else (out,)
        return sum(t.numel() * t.element_size() for t in out) * (2 if loader.flip else 1)

    @property
    def dataset_size(self) -> int:
        return self.loader.dataset_size

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __iter__(self):
        n, b, y = self.loader.dataset_size, self.loader.batch_size, self.loader.y
        order, flips = self.loader._draws()
        cl = self.loader.channels_last
        for i in range(len(self)):
            sl = slice(i * b, min(i * b + b, n))
            idx = order[sl] if order is not None else torch.arange(sl.start, sl.stop, device=y.device)
            outs = []
            for k, plain in enumerate(self.tables[False]):
                t = plain[idx]
                if flips is not None:
                    t = torch.where(flips[sl].view(-1, *([1] * (t.ndim - 1))), self.tables[True][k][idx], t)
                if cl and t.ndim == 4:
                    t = t.contiguous(memory_format=torch.channels_last)
                outs.append(t)
            yield (tuple(outs) if self.tuple_out else outs[0]), y[idx]


def epochs_to_fraction(test_acc: list[float], fraction: float = 0.99) -> int:
    """First epoch (1-based) whose test accuracy reaches ``fraction`` of the maximum.

    The paper's Fig. 4 measure ("epochs to converge to within 99% of maximal accuracy").
    """
    if not test_acc:
        raise ValueError("no epochs")
    target = fraction * max(test_acc)
    return next(i for i, a in enumerate(test_acc, start=1) if a >= target)


def summarise(test_acc: list[float]) -> dict:
    """max test accuracy, its epoch (1-based) and epochs to 99% of max."""
    best = max(test_acc)
    return {
        "max_test_acc": best,
        "epoch_of_max": test_acc.index(best) + 1,
        "epochs_to_99pct": epochs_to_fraction(test_acc, 0.99),
        "final_test_acc": test_acc[-1],
        "epochs": len(test_acc),
    }
