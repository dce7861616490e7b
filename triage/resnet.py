"""ResNets with addressable stages, and triage of a stage (beyond the paper, issue 17).

Architecture as data, as torchvision's ``models/resnet.py``: a stem, then stages
(``layer1 ... layerK``) of BasicBlocks, global average pool and ``fc``. Module
names are torchvision's (``conv1, bn1, relu, maxpool, layer1..4, avgpool, fc``;
inside a block ``conv1, bn1, relu, conv2, bn2, downsample``), so a torchvision
``resnet18`` state dict loads into :func:`resnet18` as it is.

* :func:`resnet8`, :func:`resnet20` -- He et al. 2016, Sec. 4.2 (CIFAR): a 3x3
  conv stem with 16 channels and no max-pool, three stages of n = 1 or 3
  BasicBlocks with 16/32/64 channels and strides 1/2/2 (6n + 2 layers).
* :func:`resnet18` -- torchvision's: 7x7/2 conv stem + 3x3/2 max-pool, four
  stages of two BasicBlocks, 64/128/256/512 channels, strides 1/2/2/2.

Shortcuts: identity where a block keeps its shape; where it changes shape
(stride 2 or more channels, i.e. the first block of every stage but the first)
a 1x1 conv with the block's stride + BN -- He et al.'s *option B*, torchvision's
``downsample``. He et al. used option A (zero-padded identity) for CIFAR; we use
B everywhere so the CIFAR nets and ResNet-18 share one block. So ResNet-20 here
has 272,474 parameters with 10 classes (option A: 269,722).

The model answers the same addressing as :class:`triage.models.VGG`, with
"block" meaning a stage: ``.block(i)`` (stage i, 1-based), ``.prefix(i)`` (stem
and stages < i: the module that computes stage i's input), ``.num_blocks``,
``.num_classes``, ``.in_channels``.

Compressing a stage (:func:`compress_stage`) replaces all of its BasicBlocks by
ONE conv: 3x3, the stage's input channels -> output channels, the stage's stride,
no bias, then BN and ReLU (``layer{i}.conv1``, ``bn1``, ``relu1``) -- the paper's
"block of convs -> one conv" (Sec. 2.2) applied to a stage. We chose one conv over
one BasicBlock because a CIFAR ResNet-8 has one block per stage already, where
"one block" would compress nothing. The compressed stage has no shortcut: the
projection shortcut (1x1 conv + BN) and the identity shortcuts are removed with
the blocks, as a plain conv with the stage's stride already gives the stage's
output shape. Like a BasicBlock the new layer ends in a ReLU, so STN's hint at
the stage output compares like with like.

Reason to change: the ResNets' architecture or how a stage is compressed and initialised.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

__all__ = ["RESNET_CFGS", "RESNETS", "BasicBlock", "ResNet", "resnet8", "resnet20", "resnet18",
           "compress_stage", "compressed_stage_layer_names", "stage_glorot_", "stage_mean_"]

# stem, channels of each stage, BasicBlocks per stage (strides: 1 for stage 1, then 2).
RESNET_CFGS: dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]] = {
    "resnet8": ("cifar", (16, 32, 64), (1, 1, 1)),       # He et al. 2016, n = 1
    "resnet20": ("cifar", (16, 32, 64), (3, 3, 3)),      # He et al. 2016, n = 3
    "resnet18": ("imagenet", (64, 128, 256, 512), (2, 2, 2, 2)),  # torchvision
}
STEMS = ("cifar", "imagenet")


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:  # option B: project only where the shape changes
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False),
                                            nn.BatchNorm2d(c_out))
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _compressed_layer(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """A compressed stage: one 3x3 conv (stage's channels and stride) -> BN -> ReLU."""
    return nn.Sequential(OrderedDict([("conv1", _conv3x3(c_in, c_out, stride)),
                                      ("bn1", nn.BatchNorm2d(c_out)),
                                      ("relu1", nn.ReLU(inplace=True))]))


class ResNet(nn.Module):
    """A ResNet of BasicBlocks with addressable stages.

    Args:
        widths: output channels of each stage (the stem outputs ``widths[0]``).
        depths: BasicBlocks per stage.
        num_classes: outputs of ``fc``.
        in_channels: image channels (1 for MNIST, 3 for colour).
        stem: ``'cifar'`` (3x3/1 conv, no pool) or ``'imagenet'`` (7x7/2 conv, 3x3/2 max-pool).
        strides: stride of each stage (default 1, then 2 for every later stage).
        compressed: stages (1-based) built as one conv -> BN -> ReLU instead of
            BasicBlocks (see :func:`compress_stage`).

    Example:
        >>> m = resnet20(10)
        >>> m.num_blocks, [m.block(i)[0].conv1.out_channels for i in (1, 2, 3)]
        (3, [16, 32, 64])
    """

    def __init__(self, widths, depths, num_classes: int, in_channels: int = 3, stem: str = "cifar",
                 strides=None, compressed=()):
        super().__init__()
        widths, depths = tuple(int(w) for w in widths), tuple(int(d) for d in depths)
        strides = (1,) + (2,) * (len(widths) - 1) if strides is None else tuple(int(s) for s in strides)
        if not widths:
            raise ValueError("a ResNet needs at least one stage (widths is empty)")
        if not len(widths) == len(depths) == len(strides):
            raise ValueError(f"widths, depths and strides need one entry per stage, got "
                             f"{len(widths)}, {len(depths)}, {len(strides)}")
        if min(widths) < 1 or min(depths) < 1 or min(strides) < 1:
            raise ValueError(f"widths, depths and strides must be >= 1, got {widths}, {depths}, {strides}")
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}")
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
        compressed = tuple(sorted({int(i) for i in compressed}))
        if compressed and not (compressed[0] >= 1 and compressed[-1] <= len(widths)):
            raise ValueError(f"compressed stages must be in 1..{len(widths)}, got {compressed}")
        self.widths, self.depths, self.strides = widths, depths, strides
        self.num_classes, self.in_channels, self.stem = num_classes, in_channels, stem
        self.compressed = compressed

        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = _conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        c_in = widths[0]
        for i, (c_out, depth, stride) in enumerate(zip(widths, depths, strides), start=1):
            if i in compressed:
                stage = _compressed_layer(c_in, c_out, stride)
            else:
                stage = nn.Sequential(*[BasicBlock(c_in if j == 0 else c_out, c_out, stride if j == 0 else 1)
                                        for j in range(depth)])
            self.add_module(f"layer{i}", stage)
            c_in = c_out
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c_in, num_classes)
        self.reset_parameters()

    @property
    def num_blocks(self) -> int:
        """Number of stages (a stage is what triage calls a block)."""
        return len(self.widths)

    @property
    def config(self) -> dict:
        """Constructor arguments: ``ResNet(**m.config)`` rebuilds the architecture."""
        return dict(widths=self.widths, depths=self.depths, num_classes=self.num_classes,
                    in_channels=self.in_channels, stem=self.stem, strides=self.strides,
                    compressed=self.compressed)

    def reset_parameters(self) -> None:
        """torchvision's ResNet initialisation (Kaiming-normal convs, BN 1/0, default linear)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
                m.reset_running_stats()
            elif isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(self.maxpool(self.relu(self.bn1(self.conv1(x)))), 1)

    def _check_stage(self, i: int) -> None:
        if isinstance(i, bool) or not isinstance(i, int) or not 1 <= i <= self.num_blocks:
            raise ValueError(f"stage must be in 1..{self.num_blocks}, got {i!r}")

    def block(self, i: int) -> nn.Sequential:
        """Stage ``i`` (1-based): ``layer{i}``, its BasicBlocks or its compressed conv."""
        self._check_stage(i)
        return getattr(self, f"layer{i}")

    def prefix(self, i: int) -> nn.Sequential:
        """The module computing stage ``i``'s input from the image: stem + stages 1..i-1.

        It shares its modules with the model (no copy), as ``VGG.features[: i - 1]`` does.
        """
        self._check_stage(i)
        mods = [("conv1", self.conv1), ("bn1", self.bn1), ("relu", self.relu), ("maxpool", self.maxpool)]
        mods += [(f"layer{j}", getattr(self, f"layer{j}")) for j in range(1, i)]
        return nn.Sequential(OrderedDict(mods))

    def forward_from(self, h: torch.Tensor, i: int) -> torch.Tensor:
        """The forward pass from stage ``i``'s input ``h`` (= ``self.prefix(i)(x)``) to the logits."""
        self._check_stage(i)
        for j in range(i, self.num_blocks + 1):
            h = getattr(self, f"layer{j}")(h)
        return self.fc(torch.flatten(self.avgpool(h), 1))

    def stage_shape(self, i: int) -> tuple[int, int, int]:
        """``(input channels, output channels, stride)`` of stage ``i``."""
        self._check_stage(i)
        return self.widths[max(i - 2, 0)], self.widths[i - 1], self.strides[i - 1]


def _scaled(widths, width: float) -> tuple[int, ...]:
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    return tuple(max(1, int(round(c * width))) for c in widths)


def _build(name: str, num_classes: int, in_channels: int, width: float) -> ResNet:
    stem, widths, depths = RESNET_CFGS[name]
    return ResNet(_scaled(widths, width), depths, num_classes, in_channels=in_channels, stem=stem)


def resnet8(num_classes: int, in_channels: int = 3, width: float = 1.0) -> ResNet:
    """CIFAR ResNet-8 (He et al. 2016, n = 1; option-B shortcuts). ``width`` scales every stage.

    Example:
        >>> sum(p.numel() for p in resnet8(10).parameters())
        78042
    """
    return _build("resnet8", num_classes, in_channels, width)


def resnet20(num_classes: int, in_channels: int = 3, width: float = 1.0) -> ResNet:
    """CIFAR ResNet-20 (He et al. 2016, n = 3; option-B shortcuts). ``width`` scales every stage.

    Example:
        >>> sum(p.numel() for p in resnet20(10).parameters())
        272474
    """
    return _build("resnet20", num_classes, in_channels, width)


def resnet18(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0) -> ResNet:
    """torchvision's ResNet-18; its state dicts load as they are (at width 1, 3 channels).

    Example:
        >>> sum(p.numel() for p in resnet18(1000).parameters())
        11689512
    """
    return _build("resnet18", num_classes, in_channels, width)


RESNETS = {"resnet8": resnet8, "resnet20": resnet20, "resnet18": resnet18}


# ----------------------------------------------------------------------------- surgery

def _as_resnet(model) -> ResNet:
    if not isinstance(model, ResNet):
        raise ValueError(f"{type(model).__name__} has no addressable stages; build it with "
                         "triage.resnet (resnet8/resnet20/resnet18) and load its state dict")
    return model


def _check_matchable(model: ResNet, stage: int) -> None:
    """Refuse a stage that one 3x3 conv (its channels, its stride) cannot stand in for.

    A shape-only forward on the meta device (no compute, the model is not touched)
    compares the stage's output with the conv's at an even and an odd input side.
    """
    from torch.func import functional_call

    c_in, c_out, stride = model.stage_shape(stage)
    mod = model.block(stage)
    dtype = next(model.parameters()).dtype
    conv = _conv3x3(c_in, c_out, stride).to(device="meta", dtype=dtype)
    tensors = {k: torch.empty_like(v, device="meta")
               for k, v in [*mod.named_parameters(), *mod.named_buffers()]}
    for side in (8, 9):
        x = torch.empty(1, c_in, side, side, device="meta", dtype=dtype)
        want = tuple(conv(x).shape)
        try:
            got = tuple(functional_call(mod, tensors, (x,)).shape)
        except RuntimeError as e:
            raise ValueError(f"stage {stage}'s shapes cannot be matched: it does not take "
                             f"{c_in} channels ({str(e).splitlines()[0]})") from None
        if got != want:
            raise ValueError(f"stage {stage}'s shapes cannot be matched: it maps {tuple(x.shape)[1:]} "
                             f"to {got[1:]}, one conv with stride {stride} gives {want[1:]}")


def compress_stage(model: ResNet, stage: int) -> ResNet:
    """Return a new ResNet whose ``stage`` is one 3x3 conv -> BN -> ReLU.

    The stage's BasicBlocks, with their identity and projection shortcuts, are
    replaced by a single conv with the stage's input channels, output channels
    and stride (no bias: a BN follows, as everywhere in a ResNet), so output
    shapes are unchanged. Every other parameter and buffer is copied from
    ``model``; the new layer (``layer{stage}.conv1`` / ``bn1``) keeps a fresh
    default initialisation until :func:`stage_glorot_` / :func:`stage_mean_`
    (or STN) sets it. ``model`` is not modified.

    Parameters removed, for a stage of d blocks, C_in -> C_out channels:
    (2d - 1) * (9 C_out^2 + 2 C_out) for the convs and BNs beyond the first
    conv's shape, plus C_in C_out + 2 C_out for a projection shortcut.

    Args:
        model: a :class:`ResNet` (trained parent).
        stage: 1..``model.num_blocks``.

    Raises:
        ValueError: ``model`` is not a triage ResNet, ``stage`` is out of range,
            or the stage's shapes cannot be matched by one conv.

    Example:
        >>> child = compress_stage(resnet20(10), 2)
        >>> list(dict(child.block(2).named_children()))
        ['conv1', 'bn1', 'relu1']
    """
    model = _as_resnet(model)
    model._check_stage(stage)
    _check_matchable(model, stage)
    cfg = model.config
    child = ResNet(**{**cfg, "compressed": cfg["compressed"] + (stage,)})
    prefix = f"layer{stage}."
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}
    try:
        missing, unexpected = child.load_state_dict(kept, strict=False)
    except RuntimeError as e:
        raise ValueError(f"this ResNet differs from its config outside stage {stage}: "
                         f"{str(e).splitlines()[-1].strip()}") from None
    if unexpected or not all(k.startswith(prefix) for k in missing):
        raise ValueError(f"this ResNet differs from its config outside stage {stage} "
                         f"(unexpected {unexpected[:3]}, missing {missing[:3]})")
    ref = next(model.parameters())
    child = child.to(device=ref.device, dtype=ref.dtype)
    child.train(model.training)
    return child


def compressed_stage_layer_names(stage: int) -> tuple[str, str]:
    """Qualified names of the new conv and BN in a child of :func:`compress_stage`
    (what the frozen regime, FM, leaves trainable).

    Example:
        >>> compressed_stage_layer_names(2)
        ('layer2.conv1', 'layer2.bn1')
    """
    return f"layer{stage}.conv1", f"layer{stage}.bn1"


# ----------------------------------------------------------------------------- initialisers

def _new_layer(child: ResNet, stage: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    mod = _as_resnet(child).block(stage)
    if stage not in child.compressed:
        raise ValueError(f"stage {stage} of this model is not compressed; call compress_stage first")
    return mod.conv1, mod.bn1


def stage_glorot_(child: ResNet, stage: int) -> ResNet:
    """RW for a compressed stage: Glorot/Xavier-uniform conv weights, a fresh BN.

    W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)), fan_in = C_in*3*3,
    fan_out = C_out*3*3 (as :func:`triage.init.glorot_`); the conv has no bias;
    BN: gamma = 1, beta = 0, running mean 0, running var 1. Acts in place.
    """
    from .init import glorot_layer_
    glorot_layer_(*_new_layer(child, stage))
    return child


@torch.no_grad()
def stage_mean_(child: ResNet, parent: ResNet, stage: int) -> ResNet:
    """MW for a stage: the unweighted mean of the 3x3 kernels of the parent stage.

    Averaged: ``conv1`` and ``conv2`` of every BasicBlock of the stage (2d kernels
    for d blocks), aligned by index as :func:`triage.init.parent_mean_` does for
    VGG: the first block's ``conv1`` is (C_out, C_in, 3, 3), every other conv is
    (C_out, C_out, 3, 3); filter o, input channel i of the new conv is

        W[o, i] = 1/(2d) * sum_j W_j[o, i],   i < C_in

    (where C_in = C_out, e.g. stage 1, this is the element-wise mean). The stride
    is the new conv's, whatever the kernel's conv had.
    Not averaged: the projection shortcut's 1x1 kernel and its BN -- a 1x1 kernel
    is no 3x3 filter, and identity-shortcut stages have none, so MW means the
    same for every stage.

    BN: gamma and beta are the means of the residual-branch BNs' (``bn1``, ``bn2``
    of every block, all C_out long); running statistics reset (mean 0, var 1), as
    the averaged conv's outputs have no statistics the parent measured. Acts in place.

    Raises:
        ValueError: the child's stage is not compressed, the parent's is, or a
            parent conv has fewer than C_in input channels or another kernel size.
    """
    conv, bn = _new_layer(child, stage)
    p = _as_resnet(parent).block(stage)
    if stage in parent.compressed:
        raise ValueError(f"parent stage {stage} is compressed; MW needs the uncompressed parent")
    blocks = [b for b in p if isinstance(b, BasicBlock)]
    convs = [c for b in blocks for c in (b.conv1, b.conv2)]
    c_in, c_out = conv.in_channels, conv.out_channels
    if not blocks or any(c.out_channels != c_out or c.in_channels < c_in or c.kernel_size != (3, 3)
                         for c in convs):
        raise ValueError(f"stage {stage}'s shapes cannot be matched: MW needs 3x3 convs with "
                         f"{c_out} outputs and >= {c_in} inputs")
    conv.weight.copy_(torch.stack([c.weight[:, :c_in] for c in convs]).mean(0))
    bns = [m for b in blocks for m in (b.bn1, b.bn2)]
    bn.weight.copy_(torch.stack([m.weight for m in bns]).mean(0))
    bn.bias.copy_(torch.stack([m.bias for m in bns]).mean(0))
    bn.reset_running_stats()
    return child
