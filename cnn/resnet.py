"""Residual networks: ImageNet ResNets, CIFAR-stem ResNets and pre-activation ResNets.

Papers
------
- K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
  (arXiv:1512.03385). Table 1 gives the ImageNet networks ``resnet18/34/50/101/152``.
- K. He, X. Zhang, S. Ren, J. Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016
  (arXiv:1603.05027). Figure 4 / Table 2 give the residual-unit variants of ``preact_resnet110`` and
  ``preact_resnet164`` (CIFAR, 16-32-64 channels, three stages of 18 units).

Families
--------
``resnet18 .. resnet152``
    ImageNet stem (7x7/2 convolution, BatchNorm, ReLU, 3x3/2 max pooling), four stages of 64-128-256-512
    (times the block expansion) channels, global average pooling, one fully connected layer.
    Parameter counts equal torchvision's ``resnet18 .. resnet152`` builders (1000 classes:
    11,689,512 / 21,797,672 / 25,557,032 / 44,549,160 / 60,192,808).
``cifar_resnet18 .. cifar_resnet152``
    The same blocks and stages with a 3x3 stride-1 stem and no max pooling, for 32x32 inputs (the widely
    used "kuangliu/pytorch-cifar" variant). With 10 classes: 11,173,962 / 21,282,122 / 23,520,842 /
    42,512,970 / 58,156,618 parameters (11.174M / 21.282M / 23.521M / 42.513M / 58.157M).
``preact_resnet110``, ``preact_resnet164``
    CIFAR networks of the 2016 "Identity Mappings" paper: 3x3 stem with 16 channels, three stages of 18
    units (basic units 16-32-64 for depth 110 = 6*18 + 2; bottleneck units with 16-32-64 inner and
    64-128-256 output channels for depth 164 = 9*18 + 2), global average pooling, one fully connected
    layer. With 10 classes and ``unit="full_preact"``: 1,730,522 (110) and 1,703,258 (164) parameters,
    the paper's "1.7M" for both (post-activation units: 1,730,714 and 1,704,154, from BatchNorm
    placement and BN on the projection shortcuts).
    Option ``unit`` picks the residual unit of the paper's Figure 4 / Table 2:

    - ``"full_preact"`` (4e, default): x + conv(ReLU(BN(conv(ReLU(BN(x)))))).
    - ``"original"`` (4a, the 2015 unit): ReLU(x + BN(conv(ReLU(BN(conv(x)))))).
    - ``"bn_after_add"`` (4b): ReLU(BN(x + conv(ReLU(BN(conv(x))))));
      the last BatchNorm of the unit moves after the addition.
    - ``"relu_before_add"`` (4c): x + ReLU(BN(conv(ReLU(BN(conv(x))))));
      the final ReLU moves onto the residual branch, before the addition.
    - ``"relu_only_preact"`` (4d): x + BN(conv(ReLU(BN(conv(ReLU(x))))));
      only the ReLU is moved in front of the weights.

    Bottleneck units follow the same pattern with three convolutions (1x1, 3x3, 1x1).

Deviations from the papers (all listed)
---------------------------------------
- Bottleneck stride: the 2015 paper downsamples with the first 1x1 convolution of a bottleneck block;
  here (as in torchvision's "ResNet v1.5" and in the CIFAR variants) the stride sits on the 3x3
  convolution. Same parameter count, slightly more mult-adds, slightly higher accuracy.
- Shortcuts: where the shape changes, the shortcut is a strided 1x1 convolution followed by BatchNorm
  (the 2015 paper's option B) for ``resnet*``, ``cifar_resnet*`` and the post-activation ``unit``
  variants; for the pre-activation units (``full_preact``, ``relu_only_preact``) it is a bare strided
  1x1 convolution applied to the pre-activated input, as in the authors' ``resnet-1k-layers`` code. The
  2015 CIFAR ResNet-110 used zero-padding shortcuts (option A); for ``preact_resnet110`` the two
  projections add 2,560 weights (plus 192 BatchNorm parameters for the post-activation units).
- ``preact_resnet*`` stem and head depend on the unit so that every variant is a complete network: the
  post-activation units (``original``, ``bn_after_add``, ``relu_before_add``) use conv-BN-ReLU as stem
  and nothing after the last unit; ``relu_only_preact`` uses conv-BN as stem and a ReLU after the last
  unit; ``full_preact`` uses a bare convolution as stem and BN-ReLU after the last unit (the paper's
  "extra activation after the last element-wise addition").
- Global average pooling is adaptive, so every network accepts any input size large enough for its
  strides (ImageNet stem: 32x32 gives a 1x1 final map; CIFAR stems: 8x8 or more).

Weight initialisation
---------------------
Convolutions: He et al. 2015 ("Delving Deep into Rectifiers") normal initialisation with the fan-out
mode, ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``, as in the 2016 papers' Torch code and
torchvision. BatchNorm: weight 1, bias 0. Fully connected layer: PyTorch's default. Option
``zero_init_residual=True`` sets the weight of the last BatchNorm of each residual branch to 0 so every
block starts as the identity (Goyal et al. 2017, "Accurate, Large Minibatch SGD", section 5.1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._init import torchvision_init
from .registry import register_model

__all__ = [
    "ResNet", "PreActResNet", "BasicBlock", "Bottleneck", "PreActBasicUnit", "PreActBottleneckUnit",
    "PREACT_UNITS",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "cifar_resnet18", "cifar_resnet34", "cifar_resnet50", "cifar_resnet101", "cifar_resnet152",
    "preact_resnet110", "preact_resnet164",
]


# ----------------------------------------------------------------------------------------------
# Layer functions and initialisation
# ----------------------------------------------------------------------------------------------

def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (a BatchNorm follows or precedes it)."""
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias."""
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


def projection(in_ch: int, out_ch: int, stride: int, *, norm: bool) -> nn.Module | None:
    """Shortcut for a shape change (option B): strided 1x1 conv (+ BatchNorm); ``None`` if identity."""
    if stride == 1 and in_ch == out_ch:
        return None
    if norm:
        return nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))
    return conv1x1(in_ch, out_ch, stride)


def init_weights(model: nn.Module) -> None:
    """He normal (fan-out) for convolutions, BatchNorm weight 1 / bias 0, the classifier at PyTorch's
    default (see the module docstring)."""
    torchvision_init(model, linear_std=None)


# ----------------------------------------------------------------------------------------------
# Blocks of the 2015 ResNet (post-activation, conv-BN-ReLU)
# ----------------------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    """Two 3x3 convolutions: ReLU(x + BN(conv(ReLU(BN(conv(x)))))). Output channels = ``width``."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = conv3x3(in_ch, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = projection(in_ch, out_ch, stride, norm=True)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride: "v1.5"), 1x1 expand to ``4 * width`` channels."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = conv1x1(in_ch, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = projection(in_ch, out_ch, stride, norm=True)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# ----------------------------------------------------------------------------------------------
# Residual units of "Identity Mappings in Deep Residual Networks" (Figure 4)
# ----------------------------------------------------------------------------------------------

#: unit name -> (figure panel, whether the network treats it as pre-activation)
PREACT_UNITS: dict[str, tuple[str, bool]] = {
    "original": ("4a", False),
    "bn_after_add": ("4b", False),
    "relu_before_add": ("4c", False),
    "relu_only_preact": ("4d", True),
    "full_preact": ("4e", True),
}


class _Unit(nn.Module):
    """A residual unit of Figure 4 built from a list of (kernel, in, out, stride) convolutions.

    The ordering of BN and ReLU around the convolutions and the addition follows ``unit``; see the
    module docstring for the formula of each variant.
    """

    expansion = 1
    # (kernel size, stride applies here) for each convolution of the branch; set by subclasses
    _convs: tuple[tuple[int, bool], ...] = ()

    def __init__(self, in_ch: int, width: int, stride: int = 1, *, unit: str = "full_preact"):
        super().__init__()
        if unit not in PREACT_UNITS:
            raise ValueError(f"unknown unit {unit!r}; known: {', '.join(PREACT_UNITS)}")
        self.unit = unit
        out_ch = width * self.expansion
        chans = [in_ch] + [width] * (len(self._convs) - 1) + [out_ch]
        convs, norms = [], []
        for i, (k, strided) in enumerate(self._convs):
            s = stride if strided else 1
            convs.append(conv3x3(chans[i], chans[i + 1], s) if k == 3 else conv1x1(chans[i], chans[i + 1], s))
            if unit == "full_preact":
                norms.append(nn.BatchNorm2d(chans[i]))       # BN before each convolution
            else:
                norms.append(nn.BatchNorm2d(chans[i + 1]))   # BN after each convolution
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        self.relu = nn.ReLU(inplace=False)
        self.pre = PREACT_UNITS[unit][1]
        self.shortcut = projection(in_ch, out_ch, stride, norm=not self.pre)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.norms[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.unit
        n = len(self.convs)
        if u == "full_preact":
            pre = self.relu(self.norms[0](x))
            identity = x if self.shortcut is None else self.shortcut(pre)
            out = pre
            for i, conv in enumerate(self.convs):
                if i > 0:
                    out = self.relu(self.norms[i](out))
                out = conv(out)
            return out + identity
        if u == "relu_only_preact":
            pre = self.relu(x)
            identity = x if self.shortcut is None else self.shortcut(pre)
            out = pre
            for i, (conv, bn) in enumerate(zip(self.convs, self.norms)):
                out = bn(conv(out))
                if i < n - 1:
                    out = self.relu(out)
            return out + identity
        identity = x if self.shortcut is None else self.shortcut(x)
        out = x
        for i, (conv, bn) in enumerate(zip(self.convs, self.norms)):
            out = conv(out)
            if i < n - 1:
                out = self.relu(bn(out))
            elif u == "original":
                out = self.relu(bn(out) + identity)
            elif u == "bn_after_add":
                out = self.relu(bn(out + identity))
            else:  # relu_before_add
                out = self.relu(bn(out)) + identity
        return out


class PreActBasicUnit(_Unit):
    """Two 3x3 convolutions, the first strided."""

    expansion = 1
    _convs = ((3, True), (3, False))


class PreActBottleneckUnit(_Unit):
    """1x1 reduce, 3x3 (strided), 1x1 expand to ``4 * width`` channels."""

    expansion = 4
    _convs = ((1, False), (3, True), (1, False))


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------

class ResNet(nn.Module):
    """Stem, four stages of residual blocks, global average pooling, fully connected classifier.

    ``stem="imagenet"``: 7x7/2 conv (64) - BN - ReLU - 3x3/2 max pool. ``stem="cifar"``: 3x3/1 conv (64)
    - BN - ReLU. Stage ``i`` has ``layers[i]`` blocks of width 64 * 2**i; stages 2-4 start with stride 2.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int], *,
                 num_classes: int, in_channels: int = 3, stem: str = "imagenet",
                 zero_init_residual: bool = False):
        super().__init__()
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1))
        elif stem == "cifar":
            self.stem = nn.Sequential(conv3x3(in_channels, 64), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        stages, in_ch = [], 64
        for i, n in enumerate(layers):
            width = 64 * 2 ** i
            blocks = []
            for j in range(n):
                blocks.append(block(in_ch, width, 2 if (i > 0 and j == 0) else 1))
                in_ch = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class PreActResNet(nn.Module):
    """CIFAR network of "Identity Mappings": 3x3 stem (16), three stages of 16-32-64 (times the
    expansion) channels, stride 2 at the start of stages 2 and 3, global average pooling, linear layer.

    The stem and the activation after the last unit depend on ``unit`` (see the module docstring).
    """

    def __init__(self, unit_cls: type[_Unit], units_per_stage: int, *, num_classes: int,
                 in_channels: int = 3, unit: str = "full_preact", zero_init_residual: bool = False):
        super().__init__()
        if unit not in PREACT_UNITS:
            raise ValueError(f"unknown unit {unit!r}; known: {', '.join(PREACT_UNITS)}")
        pre = PREACT_UNITS[unit][1]
        stem: list[nn.Module] = [conv3x3(in_channels, 16)]
        if unit != "full_preact":
            stem.append(nn.BatchNorm2d(16))
        if not pre:
            stem.append(nn.ReLU(inplace=True))
        self.stem = nn.Sequential(*stem)
        stages, in_ch = [], 16
        for i, width in enumerate((16, 32, 64)):
            units = []
            for j in range(units_per_stage):
                units.append(unit_cls(in_ch, width, 2 if (i > 0 and j == 0) else 1, unit=unit))
                in_ch = width * unit_cls.expansion
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        if unit == "full_preact":
            self.head = nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True))
        elif unit == "relu_only_preact":
            self.head = nn.ReLU(inplace=True)
        else:
            self.head = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, _Unit):
                    nn.init.zeros_(m.last_bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.stages(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


# ----------------------------------------------------------------------------------------------
# Variants as data, private factories, public builders
# ----------------------------------------------------------------------------------------------

#: depth -> (block, blocks per stage), He et al. 2016 Table 1
RESNET_LAYERS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}

#: depth -> (unit, units per stage), "Identity Mappings" section 4 (depth = 6n+2 basic, 9n+2 bottleneck)
PREACT_LAYERS: dict[int, tuple[type[_Unit], int]] = {
    110: (PreActBasicUnit, 18),
    164: (PreActBottleneckUnit, 18),
}


def _resnet(depth: int, stem: str, **kwargs) -> ResNet:
    block, layers = RESNET_LAYERS[depth]
    return ResNet(block, layers, stem=stem, **kwargs)


def _preact(depth: int, **kwargs) -> PreActResNet:
    unit_cls, n = PREACT_LAYERS[depth]
    return PreActResNet(unit_cls, n, **kwargs)


@register_model()
def resnet18(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return _resnet(18, "imagenet", num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def resnet34(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return _resnet(34, "imagenet", num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def resnet50(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return _resnet(50, "imagenet", num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def resnet101(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return _resnet(101, "imagenet", num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def resnet152(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return _resnet(152, "imagenet", num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def cifar_resnet18(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return _resnet(18, "cifar", num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def cifar_resnet34(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return _resnet(34, "cifar", num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def cifar_resnet50(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return _resnet(50, "cifar", num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def cifar_resnet101(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return _resnet(101, "cifar", num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def cifar_resnet152(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return _resnet(152, "cifar", num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def preact_resnet110(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return _preact(110, num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def preact_resnet164(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return _preact(164, num_classes=num_classes, in_channels=in_channels, **options)
