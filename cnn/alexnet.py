"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) and a small-input variant of the same design.

Krizhevsky, A., Sutskever, I., Hinton, G. E. "ImageNet Classification with Deep Convolutional
Neural Networks." NeurIPS 2012, Section 3 (architecture), Section 4 (dropout), Section 5 (init).

``alexnet`` (the paper's network, Figure 2)::

    conv1  96 x 11x11 / 4  -> ReLU -> LRN -> maxpool 3x3 / 2
    conv2 256 x  5x5  pad 2 (groups) -> ReLU -> LRN -> maxpool 3x3 / 2
    conv3 384 x  3x3  pad 1          -> ReLU          (full connections across the two GPUs)
    conv4 384 x  3x3  pad 1 (groups) -> ReLU
    conv5 256 x  3x3  pad 1 (groups) -> ReLU -> maxpool 3x3 / 2
    fc6 9216 -> 4096 -> ReLU -> dropout 0.5
    fc7 4096 -> 4096 -> ReLU -> dropout 0.5
    fc8 4096 -> num_classes

* Local response normalisation with the paper's k=2, n=5, alpha=1e-4, beta=0.75. PyTorch's
  ``nn.LocalResponseNorm`` divides alpha by the window size n, so the paper's constants are
  ``nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)``.
* Overlapping max pooling, window 3, stride 2 (Section 3.4).
* ``groups=2`` reproduces the two-GPU split of Figure 2: conv2, conv4 and conv5 see only the
  feature maps of their own GPU (two groups); conv3 and the FC layers are connected across.
  ``groups=1`` (default) is the single-device network with full connections everywhere.
* Initialisation (Section 5): every weight N(0, 0.01); biases 1 in conv2, conv4, conv5 and the
  fully connected hidden layers fc6 and fc7, 0 in conv1, conv3 and fc8.

Deviations from the paper, all of them:

1. Input 224x224 with padding 2 on conv1. The paper states 224x224 inputs but its arithmetic
   (55x55 conv1 maps) needs 227; padding 2 gives floor((224 + 4 - 11) / 4) + 1 = 55, the same map
   sizes from conv1 on (and 227 inputs give 56 -> 27 after pooling, the same from conv2 on).
2. An ``nn.AdaptiveAvgPool2d((6, 6))`` before fc6: the identity at 224 and 227, it lets larger
   inputs through. The smallest input that keeps a non-empty map is 63x63.
3. ``in_channels`` other than 3 and ``num_classes`` other than 1000 change conv1 and fc8.
4. Options not in the paper: ``lrn=False`` drops both LRN layers; ``batch_norm=True`` inserts
   ``nn.BatchNorm2d`` after every convolution (before the ReLU); ``init="kaiming"`` replaces the
   paper's initialisation by Kaiming-normal (fan_out, ReLU) convolutions, N(0, 0.01) linear layers
   and zero biases (the convention of torchvision's VGG).
5. Data augmentation, PCA colour jitter and the 10-crop test of the paper belong to the trainer,
   not to the model.

Parameters at 1000 classes: 62,378,344 with ``groups=1`` and 60,965,224 with ``groups=2`` (the
paper's "60 million"). torchvision's ``alexnet`` (61,100,840) is a different network: the
single-GPU 64-192-384-256-256 variant of Krizhevsky's "One weird trick" (2014), without LRN and
with dropout before fc6 and fc7. Multiply-adds at 224x224 (``cnn.complexity``): 1,135,256,096
with ``groups=1``, 724,406,816 with ``groups=2`` (torchvision's: 714,188,480).

``alexnet_small`` at 10 classes: 7,703,370 parameters; 222,504,960 multiply-adds at 3x32x32.

``alexnet_small`` keeps the design (five convolutions with ReLU, LRN after the first two,
three overlapping 3x3 / 2 max pools after conv1, conv2 and conv5, two dropout-0.5 FC hidden
layers, the options above) for 28-32 px images, changing:

a. channels 64-192-384-256-256 instead of 96-256-384-384-256;
b. conv1 is 3x3, stride 1, padding 1 (not 11x11 / 4): a 28-32 px image has no room for a
   stride-4 stem;
c. the max pools have padding 1, so each halves the map rounding up: 32 -> 16 -> 8 -> 4 and
   28 -> 14 -> 7 -> 4; an ``nn.AdaptiveAvgPool2d((4, 4))`` follows (identity at 28-32 px);
d. fc6 and fc7 have 1024 units (not 4096); fc6 takes 256 * 4 * 4 = 4096 inputs;
e. default ``init="kaiming"`` (see 4.); the paper's initialisation stays available as
   ``init="paper"``. With the small kernels and fan-ins here, N(0, 0.01) weights leave almost no
   input-dependent signal: on N(0, 1) 32x32 inputs the spread of conv5's activations across
   images is about 2e-4 against a constant of about 1 set by the unit biases (Kaiming: about
   1e-2 around a mean of 4e-2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from .registry import register_model

__all__ = ["AlexNet", "alexnet", "alexnet_small"]


# ----------------------------------------------------------------------------- layers


def _lrn() -> nn.LocalResponseNorm:
    """The paper's LRN (k=2, n=5, alpha=1e-4, beta=0.75); PyTorch divides alpha by n: 5 * 1e-4."""
    return nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)


def _pool(padding: int) -> nn.MaxPool2d:
    """Overlapping max pooling: window 3, stride 2."""
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=padding)


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class _ConvSpec:
    out_channels: int
    kernel: int
    stride: int
    padding: int
    grouped: bool  # split into `groups` groups when groups > 1 (the two-GPU layers)
    bias_one: bool  # bias initialised to 1 under the paper's init
    lrn: bool  # followed by local response normalisation
    pool: bool  # followed by overlapping max pooling


@dataclass(frozen=True)
class _Config:
    convs: tuple[_ConvSpec, ...]
    pool_padding: int
    pooled_size: int  # side of the map entering fc6 (adaptive average pooling target)
    hidden: int  # units of fc6 and fc7
    init: str  # default weight initialisation, "paper" or "kaiming"


#                out   k  s  p  grouped bias1  lrn    pool
_PAPER = _Config(
    convs=(
        _ConvSpec(96, 11, 4, 2, False, False, True, True),
        _ConvSpec(256, 5, 1, 2, True, True, True, True),
        _ConvSpec(384, 3, 1, 1, False, False, False, False),
        _ConvSpec(384, 3, 1, 1, True, True, False, False),
        _ConvSpec(256, 3, 1, 1, True, True, False, True),
    ),
    pool_padding=0, pooled_size=6, hidden=4096, init="paper",
)

_SMALL = _Config(
    convs=(
        _ConvSpec(64, 3, 1, 1, False, False, True, True),
        _ConvSpec(192, 5, 1, 2, True, True, True, True),
        _ConvSpec(384, 3, 1, 1, False, False, False, False),
        _ConvSpec(256, 3, 1, 1, True, True, False, False),
        _ConvSpec(256, 3, 1, 1, True, True, False, True),
    ),
    pool_padding=1, pooled_size=4, hidden=1024, init="kaiming",
)


# ----------------------------------------------------------------------------- network


class AlexNet(nn.Module):
    """Five convolutions and three fully connected layers (see the module docstring)."""

    def __init__(self, config: _Config, *, num_classes: int, in_channels: int = 3, lrn: bool = True,
                 groups: int = 1, batch_norm: bool = False, dropout: float = 0.5,
                 init: str = "paper") -> None:
        super().__init__()
        if groups not in (1, 2):
            raise ValueError(f"groups must be 1 or 2, got {groups}")
        if init not in ("paper", "kaiming"):
            raise ValueError(f"init must be 'paper' or 'kaiming', got {init!r}")

        layers: list[nn.Module] = []
        bias_one: list[nn.Module] = []
        channels = in_channels
        for spec in config.convs:
            conv = nn.Conv2d(channels, spec.out_channels, spec.kernel, stride=spec.stride,
                             padding=spec.padding, groups=groups if spec.grouped else 1)
            layers.append(conv)
            if spec.bias_one:
                bias_one.append(conv)
            if batch_norm:
                layers.append(nn.BatchNorm2d(spec.out_channels))
            layers.append(nn.ReLU(inplace=True))
            if spec.lrn and lrn:
                layers.append(_lrn())
            if spec.pool:
                layers.append(_pool(config.pool_padding))
            channels = spec.out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((config.pooled_size, config.pooled_size))

        fc6 = nn.Linear(channels * config.pooled_size ** 2, config.hidden)
        fc7 = nn.Linear(config.hidden, config.hidden)
        self.classifier = nn.Sequential(
            fc6, nn.ReLU(inplace=True), nn.Dropout(dropout),
            fc7, nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(config.hidden, num_classes),
        )
        bias_one += [fc6, fc7]
        self._init(init, bias_one)

    def _init(self, init: str, bias_one: Sequence[nn.Module]) -> None:
        """Paper (Section 5): weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7, else 0.
        Kaiming: conv Kaiming-normal (fan_out, ReLU), linear N(0, 0.01), biases 0."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if init == "kaiming" and isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                else:
                    nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if init == "paper":
            for m in bias_one:
                nn.init.ones_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


# ----------------------------------------------------------------------------- factory


def _alexnet(config: _Config, *, num_classes: int, in_channels: int, **options) -> AlexNet:
    options.setdefault("init", config.init)
    return AlexNet(config, num_classes=num_classes, in_channels=in_channels, **options)


# ----------------------------------------------------------------------------- builders
# options: lrn=True, groups=1|2, batch_norm=False, dropout=0.5, init="paper"|"kaiming"


@register_model()
def alexnet(*, num_classes: int, in_channels: int = 3, **options) -> AlexNet:
    """The 2012 network for 224x224 inputs (paper initialisation by default)."""
    return _alexnet(_PAPER, num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def alexnet_small(*, num_classes: int, in_channels: int = 3, **options) -> AlexNet:
    """The same design for 28-32 px inputs (Kaiming initialisation by default)."""
    return _alexnet(_SMALL, num_classes=num_classes, in_channels=in_channels, **options)
