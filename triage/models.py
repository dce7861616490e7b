"""VGG16 with batch normalisation, as data: a cfg list and a builder.

The paper (Nowak & Corso, Sec. 2.2) frames VGG16 as five blocks of 2-3 3x3
convolutions, each followed by a max-pool. We keep that structure addressable:
``model.features.block1 ... block5``, each an ``nn.Sequential`` with children
``conv1, bn1, relu1, conv2, ..., pool``, so surgery never counts layer indices.

Two heads:

* ``resolution >= 224``: torchvision's head (7x7 adaptive average pool,
  25088 -> 4096 -> 4096 -> classes), so that at width 1 the parameter count is
  torchvision's 138,365,992 and its state dicts load (see ``load_state_dict``).
* smaller inputs (32 px CIFAR/MNIST, 64 px dog crops): global average pool,
  then 512w -> 512w -> classes. At 32 px the last feature map is 1x1 already,
  so the pool changes nothing there.

Reason to change: VGG16-BN's architecture, its parts' names, its parameter and FLOP counts, or how any
network's conv layers are addressed (:func:`conv_units`, :func:`resolve_layers`, the paper's names).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

__all__ = ["VGG16_CFG", "VGG", "vgg16_bn", "block_names", "block_convs", "conv_layers", "count_flops",
           "Unit", "conv_units", "paper_name", "resolve_layers"]

# Channels of each conv, block by block (torchvision's cfg "D" with the 'M's as block ends).
VGG16_CFG: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def make_block(in_channels: int, convs: tuple[int, ...]) -> nn.Sequential:
    """One VGG block: (conv3x3 -> BN -> ReLU) per entry of ``convs``, then 2x2 max-pool."""
    layers: list[tuple[str, nn.Module]] = []
    c_in = in_channels
    for i, c_out in enumerate(convs, start=1):
        layers += [
            (f"conv{i}", nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)),
            (f"bn{i}", nn.BatchNorm2d(c_out)),
            (f"relu{i}", nn.ReLU(inplace=True)),
        ]
        c_in = c_out
    layers.append(("pool", nn.MaxPool2d(kernel_size=2, stride=2)))
    return nn.Sequential(OrderedDict(layers))


class VGG(nn.Module):
    """VGG with addressable blocks.

    Args:
        cfg: channels per conv, one tuple per block (already scaled by width).
        num_classes: classifier outputs.
        in_channels: image channels (1 for MNIST, 3 for colour).
        resolution: input side in pixels; >= 224 selects torchvision's 4096-wide head.
        dropout: dropout probability in the classifier (VGG's 0.5).
    """

    def __init__(self, cfg, num_classes: int, in_channels: int = 3, resolution: int = 32,
                 dropout: float = 0.5):
        super().__init__()
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}")
        if resolution < 32:
            raise ValueError(f"resolution must be >= 32 (five 2x2 pools), got {resolution}")
        self.cfg = tuple(tuple(int(c) for c in b) for b in cfg)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.resolution = resolution
        self.dropout = dropout
        blocks, c_in = [], in_channels
        for i, convs in enumerate(self.cfg, start=1):
            blocks.append((f"block{i}", make_block(c_in, convs)))
            c_in = convs[-1]
        self.features = nn.Sequential(OrderedDict(blocks))
        if resolution >= 224:
            hidden = 4096
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(c_in * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(dropout),
                nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            )
        else:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.classifier = nn.Sequential(
                nn.Linear(c_in, c_in), nn.ReLU(True), nn.Dropout(dropout),
                nn.Linear(c_in, num_classes),
            )
        self.register_load_state_dict_pre_hook(_torchvision_keys_hook)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's VGG initialisation (Kaiming-normal convs, N(0, 0.01) linears)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
                m.reset_running_stats()
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))

    def prefix(self, i: int) -> nn.Sequential:
        """The blocks before block ``i``: they compute block ``i``'s input from the image."""
        self.block(i)
        return self.features[: i - 1]

    def forward_from(self, h: torch.Tensor, i: int) -> torch.Tensor:
        """The forward pass from block ``i``'s input ``h`` (= ``self.prefix(i)(x)``) to the logits."""
        self.block(i)
        x = self.avgpool(self.features[i - 1:](h))
        return self.classifier(torch.flatten(x, 1))

    def block(self, i: int) -> nn.Sequential:
        """Block ``i`` (1..5, the paper's numbering)."""
        if not 1 <= i <= len(self.features):
            raise ValueError(f"block must be in 1..{len(self.features)}, got {i}")
        return getattr(self.features, f"block{i}")


def vgg16_bn(num_classes: int, in_channels: int = 3, width: float = 1.0, resolution: int = 32,
             dropout: float = 0.5) -> VGG:
    """VGG16-BN (Simonyan & Zisserman, config D, with BN after every conv).

    Args:
        num_classes: number of classes.
        in_channels: 1 for MNIST, 3 for colour images.
        width: multiplier of every conv's channels (1.0 is the paper's network;
            the smoke/cpu profiles use narrower ones). The small head is 512*width wide.
        resolution: input side; 224 gives torchvision's 4096-4096 head.

    Example:
        >>> m = vgg16_bn(1000, resolution=224)
        >>> sum(p.numel() for p in m.parameters())
        138365992
    """
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    cfg = tuple(tuple(_scaled(c, width) for c in block) for block in VGG16_CFG)
    return VGG(cfg, num_classes, in_channels=in_channels, resolution=resolution, dropout=dropout)


def block_names(model: VGG) -> list[str]:
    """``['block1', ..., 'block5']`` for a VGG."""
    return [name for name, _ in model.features.named_children()]


def block_convs(block: nn.Sequential) -> list[nn.Conv2d]:
    """The conv layers of one block, in order."""
    return [m for m in block if isinstance(m, nn.Conv2d)]


def conv_layers(model: nn.Module) -> "OrderedDict[str, nn.Conv2d]":
    """Every ``nn.Conv2d`` of a model by qualified name, in forward order."""
    return OrderedDict((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))


@torch.no_grad()
def count_flops(model: nn.Module, input_shape=None) -> dict:
    """Parameters and FLOPs of one image's forward pass through the convs and linear layers.

    A conv's multiply-accumulates (MACs) are ``out_elements * in_channels / groups * kh * kw``,
    a linear layer's ``rows * in_features * out_features``; FLOPs = 2 x MACs. BN, ReLU,
    pooling and biases are not counted (a few operations per output element, against a conv's
    9 x in_channels multiply-adds). The counts are read
    from the output shapes of one forward pass (eval mode; hooks removed, also on error).

    Args:
        model: any module of Conv2d and Linear layers.
        input_shape: (channels, height, width); default the model's ``in_channels`` and its
            ``resolution`` (32 where it has none).

    Returns:
        ``{"params", "macs", "flops"}``.

    Example:
        >>> count_flops(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False)), (1, 4, 4))["macs"]
        288
    """
    if input_shape is None:
        input_shape = (model.in_channels, getattr(model, "resolution", 32), getattr(model, "resolution", 32))
    macs = []

    def conv_hook(m, _, out):
        kh, kw = m.kernel_size
        macs.append(out.numel() * (m.in_channels // m.groups) * kh * kw)

    def linear_hook(m, _, out):
        macs.append(out.numel() * m.in_features)

    handles = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    ref = next(model.parameters())
    was = model.training
    try:
        model.eval()
        model(torch.zeros(1, *input_shape, device=ref.device, dtype=ref.dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    total = int(sum(macs))
    return {"params": sum(p.numel() for p in model.parameters()), "macs": total, "flops": 2 * total}


# torchvision's vgg16_bn keeps its features in one flat Sequential: features.0 is the
# first conv, features.1 its BN, 2 ReLU, ... with a MaxPool after each block. This maps
# those flat indices onto our block/layer names so `load_state_dict` accepts both.
_FLAT_KEY = re.compile(r"^features\.(\d+)\.(.+)$")


def _torchvision_index_map(cfg) -> dict[int, str]:
    mapping, idx = {}, 0
    for b, convs in enumerate(cfg, start=1):
        for i in range(1, len(convs) + 1):
            mapping[idx] = f"block{b}.conv{i}"
            mapping[idx + 1] = f"block{b}.bn{i}"
            idx += 3  # conv, bn, relu
        idx += 1  # max-pool
    return mapping


def _torchvision_keys_hook(module, state_dict, prefix, local_metadata, strict, missing_keys,
                           unexpected_keys, error_msgs):
    mapping = None
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        m = _FLAT_KEY.match(key[len(prefix):])
        if m is None:
            continue
        if mapping is None:
            mapping = _torchvision_index_map(module.cfg)
        name = mapping.get(int(m.group(1)))
        if name is not None:
            state_dict[f"{prefix}features.{name}.{m.group(2)}"] = state_dict.pop(key)


# ----------------------------------------------------------------------------- conv units and their names
# Any network's conv layers, addressed by name (the critical-paths analyses and the
# distillation surgery work on units, so they apply to other models than VGG too).
@dataclass(frozen=True)
class Unit:
    """One conv layer with the BN and ReLU that follow it (names are qualified module names)."""
    name: str                     # the conv's name, e.g. 'features.block5.conv1'
    conv: nn.Conv2d
    norm_name: str | None = None
    norm: nn.Module | None = None
    act_name: str | None = None
    act: nn.Module | None = None

    @property
    def output(self) -> nn.Module:
        """The module whose output is the filters' activation (ReLU, else BN, else conv)."""
        return next(m for m in (self.act, self.norm, self.conv) if m is not None)

    @property
    def pre_activation(self) -> nn.Module:
        """The module whose output feeds the ReLU (BN, else conv)."""
        return self.norm if self.norm is not None else self.conv

    @property
    def filters(self) -> int:
        return self.conv.out_channels


def conv_units(model: nn.Module) -> "OrderedDict[str, Unit]":
    """Every conv layer of ``model`` as a :class:`Unit`, by conv name, in forward order.

    The BN and ReLU of a unit are the modules that directly follow the conv in the
    same parent container (``conv -> BatchNorm2d -> ReLU``, as in torchvision's and
    triage's VGG).

    Raises:
        ValueError: the model has no ``nn.Conv2d``.

    Example:
        >>> from triage.models import vgg16_bn
        >>> u = conv_units(vgg16_bn(10, width=1 / 16))["features.block5.conv1"]
        >>> u.norm_name, u.act_name
        ('features.block5.bn1', 'features.block5.relu1')
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    found = {}
    for parent_name, parent in model.named_modules():
        children = list(parent.named_children())
        for i, (child_name, child) in enumerate(children):
            if not isinstance(child, nn.Conv2d):
                continue
            q = f"{parent_name}.{child_name}" if parent_name else child_name
            norm_name = norm = act_name = act = None
            rest = children[i + 1:i + 3]
            if rest and isinstance(rest[0][1], nn.modules.batchnorm._BatchNorm):
                (n, norm), rest = rest[0], rest[1:]
                norm_name = f"{parent_name}.{n}" if parent_name else n
            if rest and isinstance(rest[0][1], nn.ReLU):
                n, act = rest[0]
                act_name = f"{parent_name}.{n}" if parent_name else n
            found[q] = Unit(q, child, norm_name, norm, act_name, act)
    order = list(conv_layers(model))
    if not order:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer; critical paths need a CNN")
    # a conv that is not a direct child of a container (a bare Conv2d model) is its own unit
    return OrderedDict((n, found.get(n) or Unit(n, model.get_submodule(n))) for n in order)


_PAPER_NAME = re.compile(r"block(\d+)\.conv(\d+)$")


def paper_name(layer: str) -> str:
    """The paper's name of a VGG conv layer: ``'features.block5.conv1'`` -> ``'Conv5_1'``."""
    m = _PAPER_NAME.search(layer)
    return f"Conv{m.group(1)}_{m.group(2)}" if m else layer


def resolve_layers(model: nn.Module, layers: str | Iterable[str] | None = None) -> list[str]:
    """Qualified conv names for ``layers``, in forward order.

    Args:
        model: the network.
        layers: None (every conv layer), one name or a list. A name is a qualified
            conv name (``'features.block5.conv1'``), its last two parts
            (``'block5.conv1'``) or the paper's name (``'Conv5_1'``, any case).

    Raises:
        ValueError: a name matches no conv layer (the message lists the valid ones).

    Example:
        >>> from triage.models import vgg16_bn
        >>> resolve_layers(vgg16_bn(10, width=1 / 16), ["conv5_1", "block4.conv3"])
        ['features.block4.conv3', 'features.block5.conv1']
    """
    all_units = conv_units(model)
    names = list(all_units)
    if layers is None:
        return names
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: name at least one conv layer (or pass None for all)")
    alias = {}
    for n in names:
        alias[n.lower()] = n
        alias[paper_name(n).lower()] = n
        alias[".".join(n.split(".")[-2:]).lower()] = n
    chosen = set()
    for layer in layers:
        if not isinstance(layer, str) or layer.lower() not in alias:
            shown = ", ".join(paper_name(n) for n in names[:16]) + (" ..." if len(names) > 16 else "")
            raise ValueError(f"unknown conv layer {layer!r}; the model's conv layers are {shown} "
                             f"(qualified names like {names[-1]!r} also work)")
        chosen.add(alias[layer.lower()])
    return [n for n in names if n in chosen]
