"""MobileNet v1 and v2: depthwise separable convolutions, width multiplier, inverted residuals.

Papers
------
- A. G. Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
  Applications", arXiv:1704.04861, 2017 (``mobilenet_v1``; Table 1 architecture, Table 4 full
  convolution, Table 6 width multiplier).
- M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen, "MobileNetV2: Inverted Residuals and Linear
  Bottlenecks", CVPR 2018, arXiv:1801.04381 (``mobilenet_v2``; Table 2 architecture).

``mobilenet_v1(width_mult=1.0, depthwise=True, small_input=False)``
    3x3/2 convolution with 32 channels, then 13 depthwise separable blocks (3x3 depthwise conv - BN -
    ReLU - 1x1 pointwise conv - BN - ReLU), global average pooling, one fully connected layer.
    ``width_mult`` is the paper's alpha: every layer's channel count ``c`` becomes
    ``max(int(c * alpha), 8)`` (TF-Slim's ``min_depth=8``; no effect for alpha >= 0.25).
    ``depthwise=False`` is the paper's "Conv MobileNet" of Table 4: each separable block is replaced by
    one full 3x3 convolution with the same input/output channels and stride.
    The paper's resolution multiplier rho is the input size: global pooling is adaptive, so the network
    takes 224, 192, 160 or 128 px images (or any other size) unchanged.
    Counts (1000 classes, 224x224, weights and biases of convolution and linear layers only, mult-adds
    over convolution and linear layers), ours vs the paper's Tables 4 and 6:

    ============  ====================  =================  ==================
    width         conv+linear params    mult-adds          paper
    ============  ====================  =================  ==================
    1.0           4,210,088             568,740,352        4.2M / 569M
    0.75          2,569,144             325,400,448        2.6M / 325M
    0.5           1,320,648             149,497,088        1.3M / 149M
    0.25          464,600               41,030,272         0.5M / 41M
    full conv     29,282,120            4,867,293,184      29.3M / 4866M
    ============  ====================  =================  ==================

``mobilenet_v2(width_mult=1.0, dropout=0.2, small_input=False)``
    3x3/2 convolution (32), the inverted-residual stages of ``V2_SETTINGS`` (``# t, c, n, s``: expansion,
    output channels, repeats, stride of the first repeat), 1x1 convolution to 1280 channels, global
    average pooling, dropout, one fully connected layer. An inverted residual is 1x1 expansion - BN -
    ReLU6, 3x3 depthwise - BN - ReLU6, 1x1 linear projection - BN (no activation: the linear
    bottleneck), with an identity shortcut when stride is 1 and input and output channels agree.
    Channel counts times ``width_mult`` are rounded to a multiple of 8 (``make_divisible``, the rounding
    of the authors' TensorFlow code); the last 1280 is scaled only for ``width_mult > 1``.
    1000 classes, width 1.0: 3,504,872 parameters, equal to torchvision's ``mobilenet_v2``.

Small inputs (28x28, 32x32): both networks already run there unchanged (five stride-2 layers, each
``ceil(h / 2)``: 32 -> 16 -> 8 -> 4 -> 2 -> 1 and 28 -> 14 -> 7 -> 4 -> 2 -> 1), but the last stages
then see a 1x1 map. ``small_input=True`` makes the stem stride 1 instead of 2, so both 32x32 and 28x28
images end in a 2x2 map; parameters do not change, mult-adds grow about four-fold.

Deviations from the papers (all listed)
---------------------------------------
- v1: Table 1 of the paper lists the last depthwise convolution as stride 2 on a 7x7 input with a 7x7
  output; that is a typo (the authors' TF-Slim code and every reference implementation use stride 1).
  We use stride 1.
- v1: convolutions have no bias (BatchNorm follows each one), as in the authors' code; the paper does
  not say. No dropout before the classifier (the paper does not mention one).
- v2: dropout 0.2 before the classifier (the paper does not specify it; the authors' code and
  torchvision use it). Parameter counts are unaffected.
- ``small_input=True`` is our addition for 28-32 px images (see above).

Weight initialisation (both networks, torchvision's MobileNet convention): convolutions He normal with
fan-out (He et al. 2015), BatchNorm weight 1 and bias 0, the fully connected layer normal(0, 0.01) with
zero bias.
"""

from __future__ import annotations

import torch
from torch import nn

from ._init import torchvision_init
from .registry import register_model

__all__ = ["MobileNetV1", "MobileNetV2", "InvertedResidual", "V1_SETTINGS", "V2_SETTINGS",
           "make_divisible", "mobilenet_v1", "mobilenet_v2"]


# ----------------------------------------------------------------------------------------------
# Layer functions
# ----------------------------------------------------------------------------------------------

def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below ``divisor`` and never more
    than 10% below ``value`` (the rounding of the MobileNetV2 authors' TensorFlow code)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_bn_act(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    """Convolution (no bias, "same" padding) - BatchNorm - activation (``act=None``: none)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------


def separable_block(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """MobileNet v1 block (Figure 3, right): 3x3 depthwise - BN - ReLU - 1x1 pointwise - BN - ReLU."""
    return nn.Sequential(conv_bn_act(in_ch, in_ch, 3, stride, groups=in_ch),
                         conv_bn_act(in_ch, out_ch, 1))


def full_block(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """The "Conv MobileNet" replacement of a separable block: 3x3 convolution - BN - ReLU."""
    return conv_bn_act(in_ch, out_ch, 3, stride)


class InvertedResidual(nn.Module):
    """MobileNet v2 bottleneck (Table 1): 1x1 expand by ``t`` - ReLU6, 3x3 depthwise - ReLU6,
    1x1 linear projection; identity shortcut when ``stride == 1`` and ``in_ch == out_ch``."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int):
        super().__init__()
        hidden = in_ch * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_act(in_ch, hidden, 1, act=nn.ReLU6))
        layers += [conv_bn_act(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   conv_bn_act(hidden, out_ch, 1, act=None)]
        self.branch = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        return x + out if self.residual else out


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------

#: MobileNet v1 Table 1: (output channels, stride) of the 13 separable blocks after the 32-channel stem
#: (the last stride is 1; the paper's "s2" there is a typo, see the module docstring).
V1_SETTINGS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)

#: MobileNet v2 Table 2.
V2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    # t, c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV1(nn.Module):
    """Stem 3x3 conv (32 * alpha), 13 separable (or full) blocks, global average pooling, linear."""

    def __init__(self, *, num_classes: int, in_channels: int = 3, width_mult: float = 1.0,
                 depthwise: bool = True, small_input: bool = False, min_depth: int = 8):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")

        def depth(c: int) -> int:
            return max(int(c * width_mult), min_depth)

        block = separable_block if depthwise else full_block
        layers: list[nn.Module] = [conv_bn_act(in_channels, depth(32), 3, 1 if small_input else 2)]
        in_ch = depth(32)
        for c, s in V1_SETTINGS:
            layers.append(block(in_ch, depth(c), s))
            in_ch = depth(c)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        torchvision_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class MobileNetV2(nn.Module):
    """Stem 3x3 conv (32), inverted residual stages of ``V2_SETTINGS``, 1x1 conv (1280), pooling,
    dropout, linear."""

    def __init__(self, *, num_classes: int, in_channels: int = 3, width_mult: float = 1.0,
                 dropout: float = 0.2, small_input: bool = False, last_channels: int = 1280):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        in_ch = make_divisible(32 * width_mult)
        last = make_divisible(last_channels * max(1.0, width_mult))
        layers: list[nn.Module] = [conv_bn_act(in_channels, in_ch, 3, 1 if small_input else 2, act=nn.ReLU6)]
        for t, c, n, s in V2_SETTINGS:
            out_ch = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
                in_ch = out_ch
        layers.append(conv_bn_act(in_ch, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        torchvision_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# ----------------------------------------------------------------------------------------------
# Public builders
# ----------------------------------------------------------------------------------------------

@register_model()
def mobilenet_v1(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return MobileNetV1(num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def mobilenet_v2(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return MobileNetV2(num_classes=num_classes, in_channels=in_channels, **options)
