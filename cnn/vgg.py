"""VGG networks, configurations A, B, D and E, with and without BatchNorm.

Simonyan, K., Zisserman, A. "Very Deep Convolutional Networks for Large-Scale Image Recognition."
ICLR 2015, Table 1 (configurations) and Section 3.1 (training).

A stack of 3x3 convolutions (stride 1, padding 1, ReLU) in five stages separated by 2x2 / 2 max
pooling, then three fully connected layers: 512*7*7 -> 4096 -> ReLU -> dropout 0.5 -> 4096 -> ReLU
-> dropout 0.5 -> num_classes. The configurations are the lists in ``_CONFIGS`` (a number is a
convolution's output channels, ``"M"`` a max pool):

    vgg11 = A (8 conv + 3 FC), vgg13 = B (10 + 3), vgg16 = D (13 + 3), vgg19 = E (16 + 3).

The ``_bn`` variants put ``nn.BatchNorm2d`` after every convolution, before the ReLU (BatchNorm
post-dates the paper; the layout is the usual one and torchvision's).

Initialisation, as torchvision's ``torchvision/models/vgg.py``: convolutions Kaiming-normal
(He et al. 2015, fan_out, ReLU gain), linear layers N(0, 0.01), every bias 0, BatchNorm scale 1
and shift 0. The paper instead trained A from N(0, 0.01) weights and initialised the deeper nets'
first four convolutions and last three FC layers from A (Section 3.1), noting afterwards that
Glorot initialisation works without pre-training.

Deviations from the paper, all of them:

1. An ``nn.AdaptiveAvgPool2d((7, 7))`` between the convolutions and fc6: the identity at 224x224;
   for other sizes it pools (or, below 224, repeats) the map so the FC layers stay the same. The
   paper instead evaluates larger images densely, turning the FC layers into convolutions.
   Inputs down to 32x32 run (the five pools leave a 1x1 map).
2. Convolution layers keep their bias in the ``_bn`` variants (as torchvision's do).
3. ``in_channels`` and ``num_classes`` change the first convolution and fc8; the paper's LRN
   variant A-LRN (Table 1, column 2) is not provided.

Parameters at 1000 classes equal torchvision's builders: vgg11 132,863,336, vgg13 133,047,848,
vgg16 138,357,544, vgg19 143,667,240; vgg11_bn 132,868,840, vgg13_bn 133,053,736, vgg16_bn
138,365,992, vgg19_bn 143,678,248. vgg16 at 224x224: 15,470,264,320 multiply-adds
(torchvision's metadata: 15.47 G).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ._init import torchvision_init
from .registry import register_model

__all__ = ["VGG", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]

# ----------------------------------------------------------------------------- configurations
# Table 1 of the paper: output channels of each 3x3 convolution, "M" = 2x2 / 2 max pooling.

_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"),
}


# ----------------------------------------------------------------------------- blocks


def _features(config: Sequence[int | str], in_channels: int, batch_norm: bool) -> nn.Sequential:
    """The convolutional stack of one configuration."""
    layers: list[nn.Module] = []
    channels = in_channels
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(channels, int(item), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(item)))
        layers.append(nn.ReLU(inplace=True))
        channels = int(item)
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- network


class VGG(nn.Module):
    """Convolutional stack, adaptive 7x7 average pool, three FC layers (see the module docstring)."""

    def __init__(self, config: Sequence[int | str], *, num_classes: int, in_channels: int = 3,
                 batch_norm: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = _features(config, in_channels, batch_norm)
        last = [c for c in config if c != "M"][-1]
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(int(last) * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        torchvision_init(self)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


# ----------------------------------------------------------------------------- factory


def _vgg(config: str, batch_norm: bool, *, num_classes: int, in_channels: int, **options) -> VGG:
    return VGG(_CONFIGS[config], num_classes=num_classes, in_channels=in_channels,
               batch_norm=batch_norm, **options)


# ----------------------------------------------------------------------------- builders
# option: dropout=0.5


@register_model()
def vgg11(*, num_classes: int, in_channels: int = 3, **options) -> VGG:
    """Configuration A (11 weight layers)."""
    return _vgg("A", False, num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def vgg13(*, num_classes: int, in_channels: int = 3, **options) -> VGG:
    """Configuration B (13 weight layers)."""
    return _vgg("B", False, num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def vgg16(*, num_classes: int, in_channels: int = 3, **options) -> VGG:
    """Configuration D (16 weight layers)."""
    return _vgg("D", False, num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def vgg19(*, num_classes: int, in_channels: int = 3, **options) -> VGG:
    """Configuration E (19 weight layers)."""
    return _vgg("E", False, num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def vgg11_bn(*, num_classes: int, in_channels: int = 3, **options) -> VGG:
    """Configuration A (11 weight layers) with BatchNorm."""
    return _vgg("A", True, num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def vgg13_bn(*, num_classes: int, in_channels: int = 3, **options) -> VGG:
    """Configuration B (13 weight layers) with BatchNorm."""
    return _vgg("B", True, num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def vgg16_bn(*, num_classes: int, in_channels: int = 3, **options) -> VGG:
    """Configuration D (16 weight layers) with BatchNorm."""
    return _vgg("D", True, num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def vgg19_bn(*, num_classes: int, in_channels: int = 3, **options) -> VGG:
    """Configuration E (19 weight layers) with BatchNorm."""
    return _vgg("E", True, num_classes=num_classes, in_channels=in_channels, **options)
