"""The Inception family: GoogLeNet (v1), Inception v3, Inception v4 and Inception-ResNet v2.

Papers
------
- C. Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 (arXiv:1409.4842). Table 1 and
  Section 5 give ``googlenet``.
- C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna, "Rethinking the Inception Architecture for
  Computer Vision", CVPR 2016 (arXiv:1512.00567). ``inception_v3``, as implemented by the authors'
  TF-slim code and by torchvision's ``inception_v3`` (299x299 inputs).
- C. Szegedy, S. Ioffe, V. Vanhoucke, A. Alemi, "Inception-v4, Inception-ResNet and the Impact of
  Residual Connections on Learning", AAAI 2017 (arXiv:1602.07261). Figures 3-9 give
  ``inception_v4``, Figures 3 and 15-19 ``inception_resnet_v2``.

Return convention of the models with auxiliary classifiers (``googlenet``, ``inception_v3``)
------------------------------------------------------------------------------------------------
In training mode with ``aux_logits=True`` (the default) ``forward`` returns an ``InceptionOutputs``,
a ``tuple`` subclass ``(logits, aux_1, ..., aux_k)``: element 0 is the main classifier's logits
``(N, num_classes)``, the remaining elements are the auxiliary classifiers' logits, each
``(N, num_classes)``, in the order of their position in the network (``googlenet``: after 4a, after
4d; ``inception_v3``: after Mixed_6e). ``out.logits`` is ``out[0]`` and ``out.aux`` is ``out[1:]``.
A trainer can therefore do::

    out = model(x)
    if isinstance(out, tuple):
        logits, aux = out[0], out[1:]
        loss = ce(logits, y) + sum(w * ce(a, y) for w, a in zip(model.aux_weights, aux))

In eval mode, and whenever ``aux_logits=False``, ``forward`` returns the logits tensor alone (the
auxiliary heads are not even evaluated). ``model.aux_weights`` holds the auxiliary loss weights of
the papers' training recipes: (0.3, 0.3) for GoogLeNet (Section 5 of the paper), (0.4,) for
Inception v3 (the weight of TF-slim's ``train_image_classifier.py``; the paper gives none).
``inception_v4`` and ``inception_resnet_v2`` have no auxiliary heads and always return a tensor.

Counts (``cnn.complexity``; 1000 classes; mult-adds of convolution and linear layers for one image)
-------------------------------------------------------------------------------------------------

============================================  =====  ==========  ==================  ==============
model                                         input  params      conv_linear_params  mult_adds
============================================  =====  ==========  ==================  ==============
googlenet(aux_logits=False)                   224    6,998,552   6,998,552           1,582,671,872
googlenet (both auxiliary heads)              224    13,378,280  13,378,280          1,582,671,872
googlenet(aux_logits=False, batch_norm=True)  224    7,005,832   6,991,272           1,582,671,872
torchvision googlenet(aux_logits=False)       224    6,624,904   6,610,344           1,498,376,192
inception_v3 (auxiliary head)                 299    27,161,264  27,125,040          5,713,216,096
inception_v3(aux_logits=False)                299    23,834,568  23,800,136          5,713,216,096
inception_v4                                  299    42,679,816  42,616,648          12,253,974,624
inception_resnet_v2                           299    55,843,464  55,782,920          13,155,794,016
============================================  =====  ==========  ==================  ==============

Mult-adds are counted in eval mode, so without the auxiliary heads; the parameter counts of
``inception_v3``, ``inception_v4`` and ``inception_resnet_v2`` equal torchvision's ``inception_v3``
and timm's ``inception_v4`` (42,679,816) and ``inception_resnet_v2`` (55,843,464) exactly (the
Cadene ``pretrainedmodels`` versions are the same networks, with 1001 classes by default).
``lrn=False`` changes no count.

``googlenet``
    Table 1 of the paper, one layer per row: 7x7/2 convolution (64), 3x3/2 max pooling, LRN, 1x1 (64)
    and 3x3 (192) convolutions, LRN, 3x3/2 max pooling, Inception 3a-3b, max pooling, 4a-4e, max pooling,
    5a-5b, global average pooling, dropout 0.4, linear. Each Inception module concatenates a 1x1
    convolution, 1x1 reduce -> 3x3, 1x1 reduce -> **5x5**, and 3x3/1 max pooling -> 1x1 projection
    (Figure 2b); every convolution has a bias and a ReLU, there is no BatchNorm (the paper predates it).
    Auxiliary classifiers (Section 5) after 4a and 4d: 5x5/3 average pooling, 1x1 convolution (128) -
    ReLU, fully connected 1024 - ReLU, dropout 0.7, linear. The paper's rounded figures are "6.8M"
    parameters (MobileNet paper, Table 8) and "1.5 billion multiply-adds" (Section 5); we count
    6,998,552 and 1.583G without the auxiliary heads (each auxiliary head adds 3,189,864 parameters at
    1000 classes, mostly its 2048 x 1024 FC layer).
    **torchvision's googlenet is a different network** (6,624,904 parameters without its auxiliary
    heads, 1.498G mult-adds): its "5x5" branches are 3x3 convolutions (a known bug, labelled as such
    in torchvision's source, pytorch/vision issue 906), it uses BatchNorm after every convolution
    and no LRN, its auxiliary heads pool adaptively to 4x4 and use dropout 0.7 after the first FC.
    Options: ``aux_logits=True``; ``lrn=True`` (``False`` drops both LRN layers);
    ``batch_norm=False`` (``True``: convolution without bias - BatchNorm - ReLU everywhere, like
    torchvision); ``dropout=0.4``; ``aux_dropout=0.7``; ``init="caffe"|"kaiming"``;
    ``small_input=False``.
``inception_v3``
    The layer-for-layer network of torchvision's ``inception_v3`` (itself a port of the authors'
    TF-slim model): the module and parameter names are torchvision's, so its ImageNet state dict
    loads unchanged and gives the same outputs (tested). Stem Conv2d_1a..4a with two 3x3/2 max
    poolings, Mixed_5b-5d (Figure 5 modules: 5x5 kept in one branch as in the authors' code, double
    3x3 in another), Mixed_6a (grid reduction), Mixed_6b-6e (Figure 6: 7x7 factorised into 1x7 and
    7x1), Mixed_7a (grid reduction), Mixed_7b-7c (Figure 7: expanded 1x3 / 3x1 filter banks), global
    average pooling, dropout 0.5, linear. BatchNorm (eps 0.001) after every convolution. Auxiliary
    head after Mixed_6e: 5x5/3 average pooling, 1x1 convolution (128), 5x5 convolution (768), both
    with BatchNorm ("BN-auxiliary", Section 7 of the paper), linear. With ``aux_logits=True`` the
    parameter count equals torchvision's ``inception_v3(aux_logits=True, init_weights=False)``:
    27,161,264 at 1000 classes; without the auxiliary head 23,834,568 and 5.71G mult-adds at 299 px
    (the paper's abstract: "5 billion multiply-adds" and "less than 25 million parameters"). Label
    smoothing (epsilon 0.1, Section 7) belongs to the trainer. Options: ``aux_logits=True``,
    ``dropout=0.5``, ``small_input=False``.
``inception_v4``
    Figure 9: the stem of Figure 3 (three 3x3 convolutions; max pooling || 3x3/2 convolution; two
    branches ending in 3x3 valid convolutions, one with 7x1 and 1x7; 3x3/2 convolution || max pooling:
    35x35x384), 4 x Inception-A (Figure 4), Reduction-A (Figure 7 with k, l, m, n = 192, 224, 256, 384),
    7 x Inception-B (Figure 5), Reduction-B (Figure 8), 3 x Inception-C (Figure 6), global average
    pooling, dropout 0.2 (keep 0.8), linear. 42,679,816 parameters at 1000 classes, the count of the
    timm and Cadene (``pretrainedmodels``) implementations, which follow the paper. Options:
    ``dropout=0.2``.
``inception_resnet_v2``
    The network the authors released (TF-slim ``inception_resnet_v2``, also the timm / Cadene
    implementations, 55,843,464 parameters at 1000 classes), which differs from the paper's figures as
    listed under deviations: the Inception v3 stem (Conv2d_1a..4a, two max poolings) followed by a
    Mixed_5b module (96 || 48->64 5x5 || 64->96->96 || avg pool->64 = 320 channels),
    10 x Inception-ResNet-A (Figure 16: 32 || 32->32 || 32->48->64, 1x1 linear up-projection to 320,
    scale 0.17), Reduction-A (Figure 7 with k, l, m, n = 256, 256, 384, 384: 1088 channels),
    20 x Inception-ResNet-B (Figure 17: 192 || 128->160 (1x7)->192 (7x1), up to 1088, scale 0.10),
    Reduction-B (Figure 18: 2080 channels), 9 x Inception-ResNet-C (Figure 19: 192 || 192->224 (1x3)
    ->256 (3x1), up to 2080, scale 0.20) and a tenth without the final ReLU (scale 1.0), a 1x1
    convolution to 1536 channels, global average pooling, dropout 0.2, linear. A residual unit is
    ``ReLU(x + scale * up(concat(branches(x))))`` (Figure 20); the up-projection has a bias and no
    BatchNorm ("we used batch-normalization only on top of the traditional layers, but not on top of
    the summations", Section 3.2). Options: ``dropout=0.2``, ``scales=(0.17, 0.10, 0.20)``.

Inception v2 (BN-Inception, Ioffe & Szegedy 2015, Figure 5) is not included: we could not source
its layer table faithfully (no copy of the paper was at hand to check against). The table as we
recall it is not self-consistent: for modules 4c and 4d the branch widths we remember sum to 608
channels where the output depth column says 576 (the pool projections of the released Caffe model,
96, would fix the sums, but that is a later model, not the paper), and the first convolution is a
depthwise-separable 7x7 (depth multiplier 8) whose exact form the table does not give. A "v2" built
from memory would be a guess labelled as the paper's network.

Smallest inputs (forward in both modes, auxiliary heads included; tested): ``googlenet`` 31x31
(a 1x1 map from 5a on; 28x28 fails, so MNIST-sized images need ``small_input=True``, whose smallest
input is 8x8); ``inception_v3``, ``inception_v4`` and ``inception_resnet_v2`` 75x75
(``inception_v3(small_input=True)``: 21x21). Global pooling is adaptive, so every larger size works.

Deviations from the papers (all listed)
---------------------------------------
- Auxiliary heads on small maps (``googlenet``, ``inception_v3``): the 5x5/3 average pooling is applied
  only when the map is at least 5x5, and it is followed by adaptive average pooling to the map the
  head expects at the reference input (4x4 for GoogLeNet, 5x5 for Inception v3), the identity at 224
  and 299 px. Without it the heads would only work near the reference sizes: GoogLeNet's first FC
  layer expects the 4x4 map that 5x5/3 pooling leaves of a 14x14-16x16 grid, Inception v3's 5x5
  convolution needs a 17x17 grid (torchvision's head raises below 299 px in training mode).
  Parameter counts do not change.
- ``googlenet``: the paper's 7x7 average pooling is global adaptive pooling (the same at 224 px).
  Max poolings round up (``ceil_mode=True``), as in the authors' Caffe release, so 224 -> 112 -> 56
  -> 28 -> 14 -> 7 as Table 1 lists. LRN: size 5, alpha 1e-4, beta 0.75, k 1 of the released
  Caffe model (the paper gives no constants; Caffe and PyTorch both divide alpha by the size).
- ``googlenet(small_input=True)`` (our addition for 28-32 px images, as the CIFAR variants do): the
  first convolution is 3x3 stride 1 (padding 1) instead of 7x7 stride 2 and the first max pooling is
  dropped, so the total stride is 8: 32 -> 4x4 and 28 -> 3x3 final maps.
- ``inception_v3``: the average poolings inside the modules count the zero padding
  (``count_include_pad=True``), as torchvision does; TF-slim's "SAME" pooling excludes it.
  ``small_input=True`` (our addition) makes Conv2d_1a stride 1 and drops the first max pooling
  (total stride 8: 32 -> 2x2 and 28 -> 1x1 final maps; the parameter names and counts are unchanged).
- ``inception_v4`` / ``inception_resnet_v2``: pooling branches use ``count_include_pad=False`` (TF
  "SAME" pooling, as the reference implementations). The order of the 1x7 / 7x1 pairs follows the
  figures; parameter counts do not depend on it. No auxiliary head (the paper describes none).
- ``inception_resnet_v2`` differs from the paper's Figures 15-19, following the released model: the
  stem is Inception v3's plus Mixed_5b (320 channels) instead of Figure 3 (384 channels), hence grids
  of 320 / 1088 / 2080 channels instead of 384 / 1154 (sic) / 2048 for the up-projections, blocks
  repeat 10 / 20 / 10 times (Figure 15 draws 5 / 10 / 5), and a 1x1 convolution to 1536 channels
  precedes the pooling. The residual scales (0.17, 0.10, 0.20) lie in the paper's 0.1-0.3 range.

Weight initialisation (explicit, in each network's ``__init__``)
----------------------------------------------------------------
- ``googlenet``, ``init="caffe"`` (default): the released Caffe model's "xavier" filler, i.e.
  uniform in +-sqrt(3 / fan_in) (variance 1 / fan_in) for every convolution and linear layer; biases
  0.2 in the convolutions and the auxiliary heads' hidden FC layers, 0 in the classifiers.
  ``init="kaiming"``: He-normal (fan_in, ReLU) convolutions, N(0, 0.01) linear layers, zero biases.
  BatchNorm (when enabled): weight 1, bias 0. Measured at 224 px on N(0, 1) images (batch 8, eval,
  no BatchNorm): with "caffe" the pooled 1024 features are dominated by the 0.2 biases (mean 0.30,
  spread across images 1e-3), with "kaiming" mean 2.8 and spread 0.06. He-normal with fan_out (the
  ResNet convention) is not offered: without BatchNorm the 1x1 reductions then amplify the signal
  about 25-fold over the network (mean 55, logits with std 31).
- ``inception_v3``: truncated normal, std 0.1 for every convolution and linear layer, 0.01 for the
  auxiliary 5x5 convolution, 0.001 for the auxiliary classifier (TF-slim's ``inception_v3_arg_scope``
  and torchvision's ``init_weights=True``), truncated at two standard deviations as in TensorFlow
  (torchvision truncates at +-2 absolute, i.e. not at all for these stds). BatchNorm 1 / 0.
- ``inception_v4``, ``inception_resnet_v2``: He-normal with fan_in for the convolutions, the variance
  2 / fan_in of TF-slim's ``inception_arg_scope`` used by its ``inception_v4``
  (``variance_scaling_initializer()``, factor 2, FAN_IN, drawn there from a truncated normal of that
  variance); the same for ``inception_resnet_v2`` (our choice); biases of the residual up-projections
  0; linear classifier N(0, 0.01), bias 0 (our choice); BatchNorm 1 / 0.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

__all__ = [
    "InceptionOutputs", "BasicConv2d", "Concat", "InceptionV1Module", "AuxClassifierV1", "GoogLeNet",
    "InceptionV3A", "InceptionV3B", "InceptionV3C", "InceptionV3D", "InceptionV3E", "InceptionV3Aux",
    "InceptionV3", "ResidualInception", "InceptionV4", "InceptionResNetV2", "GOOGLENET_MODULES",
    "googlenet", "inception_v3", "inception_v4", "inception_resnet_v2",
]


# ----------------------------------------------------------------------------------------------
# Output convention, layer helpers and initialisation
# ----------------------------------------------------------------------------------------------

class InceptionOutputs(tuple):
    """``(logits, *aux_logits)`` returned in training mode by models with auxiliary classifiers.

    A plain tuple to any consumer: ``out[0]`` is the main logits, ``out[1:]`` the auxiliary logits,
    in network order. ``out.logits`` and ``out.aux`` name the two parts.
    """

    def __new__(cls, logits: torch.Tensor, *aux: torch.Tensor) -> InceptionOutputs:
        return super().__new__(cls, (logits, *aux))

    def __getnewargs__(self) -> tuple:  # pickle / copy rebuild from the elements
        return tuple(self)

    @property
    def logits(self) -> torch.Tensor:
        return self[0]

    @property
    def aux(self) -> tuple[torch.Tensor, ...]:
        return tuple(self[1:])

    def __repr__(self) -> str:
        return f"InceptionOutputs(logits={self[0]!r}, aux={tuple(self[1:])!r})"


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nn.Module):
    """Convolution (no bias) - BatchNorm (eps 0.001) - ReLU; ``batch_norm=False``: convolution with
    bias - ReLU. ``padding="same"`` pads ``kernel // 2`` on each axis (odd kernels)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] | str = 0, *, batch_norm: bool = True):
        super().__init__()
        if padding == "same":
            padding = tuple(k // 2 for k in _pair(kernel))
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(out_ch, eps=0.001) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Concat(nn.Module):
    """Apply every branch to the same input and concatenate the results along the channels."""

    def __init__(self, *branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


def _max_pool(stride: int = 2) -> nn.MaxPool2d:
    """3x3 max pooling, "valid" (no padding) for stride 2, "same" for stride 1."""
    return nn.MaxPool2d(3, stride=stride, padding=1 if stride == 1 else 0)


def _avg_pool_same() -> nn.AvgPool2d:
    """3x3/1 average pooling, padding excluded from the mean (TensorFlow "SAME")."""
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


def _aux_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """The auxiliary heads' 5x5/3 average pooling (when the map is at least 5x5), then adaptive
    pooling to ``size`` x ``size``: the identity at the reference input, a fallback on small maps."""
    if min(x.shape[-2:]) >= 5:
        x = F.avg_pool2d(x, kernel_size=5, stride=3)
    return F.adaptive_avg_pool2d(x, size)


def _trunc_normal(w: torch.Tensor, std: float) -> None:
    nn.init.trunc_normal_(w, 0.0, std, a=-2 * std, b=2 * std)


def _init_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _init_he_fan_in(model: nn.Module) -> None:
    """Inception v4 / Inception-ResNet v2 (see the module docstring)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    _init_bn(model)


# ----------------------------------------------------------------------------------------------
# GoogLeNet (Inception v1)
# ----------------------------------------------------------------------------------------------

#: Table 1: (name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); "pool" = 3x3/2 max pooling
GOOGLENET_MODULES: tuple[tuple[str, int, int, int, int, int, int] | str, ...] = (
    ("3a", 64, 96, 128, 16, 32, 32),
    ("3b", 128, 128, 192, 32, 96, 64),
    "pool",
    ("4a", 192, 96, 208, 16, 48, 64),
    ("4b", 160, 112, 224, 24, 64, 64),
    ("4c", 128, 128, 256, 24, 64, 64),
    ("4d", 112, 144, 288, 32, 64, 64),
    ("4e", 256, 160, 320, 32, 128, 128),
    "pool",
    ("5a", 256, 160, 320, 32, 128, 128),
    ("5b", 384, 192, 384, 48, 128, 128),
)
_GOOGLENET_AUX_AFTER = ("4a", "4d")


def _lrn_caffe() -> nn.LocalResponseNorm:
    """LRN of the released Caffe GoogLeNet: size 5, alpha 1e-4, beta 0.75, k 1 (alpha / size, as Caffe)."""
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


class InceptionV1Module(nn.Module):
    """Figure 2b: 1x1 || 1x1 -> 3x3 || 1x1 -> 5x5 || 3x3/1 max pool -> 1x1, concatenated."""

    def __init__(self, in_ch: int, c1: int, c3_reduce: int, c3: int, c5_reduce: int, c5: int,
                 pool_proj: int, *, batch_norm: bool):
        super().__init__()
        bn = {"batch_norm": batch_norm}
        self.branch1 = BasicConv2d(in_ch, c1, 1, **bn)
        self.branch2 = nn.Sequential(BasicConv2d(in_ch, c3_reduce, 1, **bn),
                                     BasicConv2d(c3_reduce, c3, 3, padding=1, **bn))
        self.branch3 = nn.Sequential(BasicConv2d(in_ch, c5_reduce, 1, **bn),
                                     BasicConv2d(c5_reduce, c5, 5, padding=2, **bn))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_ch, pool_proj, 1, **bn))
        self.out_channels = c1 + c3 + c5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class AuxClassifierV1(nn.Module):
    """Section 5: 5x5/3 average pooling (-> 4x4), 1x1 conv 128 - ReLU, FC 1024 - ReLU, dropout, linear."""

    def __init__(self, in_ch: int, num_classes: int, *, batch_norm: bool, dropout: float = 0.7):
        super().__init__()
        self.conv = BasicConv2d(in_ch, 128, 1, batch_norm=batch_norm)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(_aux_pool(x, 4))
        x = self.dropout(F.relu(self.fc1(x.flatten(1)), inplace=True))
        return self.fc2(x)


class GoogLeNet(nn.Module):
    """Table 1 of Szegedy et al. 2015 (see the module docstring)."""

    def __init__(self, *, num_classes: int, in_channels: int = 3, aux_logits: bool = True, lrn: bool = True,
                 batch_norm: bool = False, dropout: float = 0.4, aux_dropout: float = 0.7,
                 init: str = "caffe", small_input: bool = False):
        super().__init__()
        if init not in ("caffe", "kaiming"):
            raise ValueError(f"init must be 'caffe' or 'kaiming', got {init!r}")
        bn = {"batch_norm": batch_norm}

        def pool() -> nn.MaxPool2d:
            return nn.MaxPool2d(3, stride=2, ceil_mode=True)

        def norm() -> nn.Module:
            return _lrn_caffe() if lrn else nn.Identity()

        conv1 = (BasicConv2d(in_channels, 64, 3, padding=1, **bn) if small_input
                 else BasicConv2d(in_channels, 64, 7, stride=2, padding=3, **bn))
        self.stem = nn.Sequential(
            conv1, nn.Identity() if small_input else pool(), norm(),
            BasicConv2d(64, 64, 1, **bn), BasicConv2d(64, 192, 3, padding=1, **bn), norm(), pool(),
        )
        self.blocks = nn.ModuleDict()
        channels = 192
        for i, entry in enumerate(GOOGLENET_MODULES):
            if entry == "pool":
                self.blocks[f"pool{i}"] = pool()
                continue
            name, *widths = entry
            block = InceptionV1Module(channels, *widths, **bn)
            self.blocks[f"inception{name}"] = block
            channels = block.out_channels
        self.aux_logits = aux_logits
        self.aux = nn.ModuleDict({
            f"inception{name}": AuxClassifierV1(self.blocks[f"inception{name}"].out_channels, num_classes,
                                                dropout=aux_dropout, **bn)
            for name in _GOOGLENET_AUX_AFTER
        }) if aux_logits else None
        self.aux_weights = (0.3,) * len(_GOOGLENET_AUX_AFTER) if aux_logits else ()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        self._init(init)

    def _init(self, init: str) -> None:
        """See "Weight initialisation" in the module docstring."""
        classifiers = {self.fc} | ({a.fc2 for a in self.aux.values()} if self.aux is not None else set())
        for m in self.modules():
            if not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            if init == "caffe":
                nn.init.kaiming_uniform_(m.weight, nonlinearity="linear")  # U(+-sqrt(3 / fan_in))
                bias = 0.0 if m in classifiers else 0.2
            else:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                else:
                    nn.init.normal_(m.weight, 0.0, 0.01)
                bias = 0.0
            if m.bias is not None:
                nn.init.constant_(m.bias, bias)
        _init_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | InceptionOutputs:
        x = self.stem(x)
        aux: list[torch.Tensor] = []
        use_aux = self.training and self.aux is not None
        for name, block in self.blocks.items():
            x = block(x)
            if use_aux and name in self.aux:
                aux.append(self.aux[name](x))
        logits = self.fc(self.dropout(self.avgpool(x).flatten(1)))
        return InceptionOutputs(logits, *aux) if use_aux else logits


# ----------------------------------------------------------------------------------------------
# Inception v3 (module and parameter names of torchvision's Inception3)
# ----------------------------------------------------------------------------------------------

def _v3_pool_branch(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


class InceptionV3A(nn.Module):
    """35x35 module (Figure 5, with the authors' 5x5 branch): 64 || 48->64 (5x5) || 64->96->96 || pool->p."""

    def __init__(self, in_ch: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_ch, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_ch, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_ch, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_ch, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_v3_pool_branch(x)),
        ], 1)


class InceptionV3B(nn.Module):
    """35 -> 17 grid reduction (Figure 10): 3x3/2 (384) || 64->96->96/2 || 3x3/2 max pooling."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_ch, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_ch, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class InceptionV3C(nn.Module):
    """17x17 module (Figure 6, n = 7): 192 || c7 (1x7, 7x1) -> 192 || c7 (7x1, 1x7, 7x1, 1x7) -> 192
    || pool -> 192."""

    def __init__(self, in_ch: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_ch, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_ch, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_ch, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_ch, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            d = conv(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_v3_pool_branch(x))], 1)


class InceptionV3D(nn.Module):
    """17 -> 8 grid reduction: 192 -> 320/2 || 192 (1x7, 7x1, 3x3/2) || 3x3/2 max pooling."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_ch, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_ch, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = x
        for conv in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7,
                          F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionV3E(nn.Module):
    """8x8 module with expanded filter banks (Figure 7): 320 || 384 -> (1x3 || 3x1) ||
    448 -> 384 (3x3) -> (1x3 || 3x1) || pool -> 192."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_ch, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_ch, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_ch, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_ch, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(_v3_pool_branch(x)),
        ], 1)


class InceptionV3Aux(nn.Module):
    """BN-auxiliary head: 5x5/3 average pooling (-> 5x5), 1x1 conv 128, 5x5 conv 768, linear."""

    def __init__(self, in_ch: int, num_classes: int):
        super().__init__()
        self.conv0 = BasicConv2d(in_ch, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(_aux_pool(x, 5)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class InceptionV3(nn.Module):
    """Inception v3 for 299x299 inputs (see the module docstring)."""

    def __init__(self, *, num_classes: int, in_channels: int = 3, aux_logits: bool = True,
                 dropout: float = 0.5, small_input: bool = False):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(in_channels, 32, 3, stride=1 if small_input else 2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool1 = nn.Identity() if small_input else nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = InceptionV3A(192, pool_features=32)
        self.Mixed_5c = InceptionV3A(256, pool_features=64)
        self.Mixed_5d = InceptionV3A(288, pool_features=64)
        self.Mixed_6a = InceptionV3B(288)
        self.Mixed_6b = InceptionV3C(768, channels_7x7=128)
        self.Mixed_6c = InceptionV3C(768, channels_7x7=160)
        self.Mixed_6d = InceptionV3C(768, channels_7x7=160)
        self.Mixed_6e = InceptionV3C(768, channels_7x7=192)
        self.aux_logits = aux_logits
        self.AuxLogits = InceptionV3Aux(768, num_classes) if aux_logits else None
        self.aux_weights = (0.4,) if aux_logits else ()
        self.Mixed_7a = InceptionV3D(768)
        self.Mixed_7b = InceptionV3E(1280)
        self.Mixed_7c = InceptionV3E(2048)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2048, num_classes)
        self._init()

    def _init(self) -> None:
        """Truncated normal std 0.1 (aux 5x5 conv 0.01, aux classifier 0.001); BatchNorm 1 / 0."""
        special = {}
        if self.AuxLogits is not None:
            special = {self.AuxLogits.conv1.conv: 0.01, self.AuxLogits.fc: 0.001}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                _trunc_normal(m.weight, special.get(m, 0.1))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        _init_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | InceptionOutputs:
        for layer in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3, self.maxpool1,
                      self.Conv2d_3b_1x1, self.Conv2d_4a_3x3, self.maxpool2,
                      self.Mixed_5b, self.Mixed_5c, self.Mixed_5d,
                      self.Mixed_6a, self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e):
            x = layer(x)
        use_aux = self.training and self.AuxLogits is not None
        aux = self.AuxLogits(x) if use_aux else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        logits = self.fc(self.dropout(self.avgpool(x).flatten(1)))
        return InceptionOutputs(logits, aux) if use_aux else logits


# ----------------------------------------------------------------------------------------------
# Inception v4 blocks (Figures 3-8) and Inception-ResNet v2 blocks (Figures 16-19)
# ----------------------------------------------------------------------------------------------

def _seq(*convs: tuple) -> nn.Sequential:
    """A branch of ``BasicConv2d(*args)`` for each tuple (``(in, out, kernel[, stride[, padding]])``)."""
    return nn.Sequential(*(BasicConv2d(*c) for c in convs))


def _pool_proj(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(_avg_pool_same(), BasicConv2d(in_ch, out_ch, 1))


def _v4_stem(in_ch: int) -> nn.Sequential:
    """Figure 3: 299x299xC -> 35x35x384 ("V" = valid padding, the rest "same")."""
    s = "same"
    return nn.Sequential(
        _seq((in_ch, 32, 3, 2), (32, 32, 3), (32, 64, 3, 1, s)),
        Concat(_max_pool(), BasicConv2d(64, 96, 3, 2)),                               # 160
        Concat(_seq((160, 64, 1), (64, 96, 3)),
               _seq((160, 64, 1), (64, 64, (7, 1), 1, s), (64, 64, (1, 7), 1, s), (64, 96, 3))),  # 192
        Concat(BasicConv2d(192, 192, 3, 2), _max_pool()),                             # 384
    )


def _v4_block_a(c: int = 384) -> Concat:
    """Figure 4, 35x35: avg pool -> 96 || 96 || 64 -> 96 || 64 -> 96 -> 96."""
    s = "same"
    return Concat(_pool_proj(c, 96), BasicConv2d(c, 96, 1), _seq((c, 64, 1), (64, 96, 3, 1, s)),
                  _seq((c, 64, 1), (64, 96, 3, 1, s), (96, 96, 3, 1, s)))


def _reduction_a(c: int, k: int, l: int, m: int, n: int) -> Concat:
    """Figure 7, 35 -> 17: max pool || 3x3/2 (n) || k -> l (3x3) -> m (3x3/2); c + n + m channels."""
    return Concat(_max_pool(), BasicConv2d(c, n, 3, 2), _seq((c, k, 1), (k, l, 3, 1, "same"), (l, m, 3, 2)))


def _v4_block_b(c: int = 1024) -> Concat:
    """Figure 5, 17x17: avg pool -> 128 || 384 || 192 -> 224 (1x7) -> 256 (7x1) ||
    192 -> 192 (1x7) -> 224 (7x1) -> 224 (1x7) -> 256 (7x1)."""
    s = "same"
    return Concat(_pool_proj(c, 128), BasicConv2d(c, 384, 1),
                  _seq((c, 192, 1), (192, 224, (1, 7), 1, s), (224, 256, (7, 1), 1, s)),
                  _seq((c, 192, 1), (192, 192, (1, 7), 1, s), (192, 224, (7, 1), 1, s),
                       (224, 224, (1, 7), 1, s), (224, 256, (7, 1), 1, s)))


def _v4_reduction_b(c: int = 1024) -> Concat:
    """Figure 8, 17 -> 8: max pool || 192 -> 192 (3x3/2) || 256 -> 256 (1x7) -> 320 (7x1) -> 320 (3x3/2)."""
    s = "same"
    return Concat(_max_pool(), _seq((c, 192, 1), (192, 192, 3, 2)),
                  _seq((c, 256, 1), (256, 256, (1, 7), 1, s), (256, 320, (7, 1), 1, s), (320, 320, 3, 2)))


def _split(in_ch: int, out_ch: int) -> Concat:
    """The expanded filter bank: 1x3 || 3x1 on the same input (2 * out_ch channels)."""
    return Concat(BasicConv2d(in_ch, out_ch, (1, 3), padding="same"),
                  BasicConv2d(in_ch, out_ch, (3, 1), padding="same"))


def _v4_block_c(c: int = 1536) -> Concat:
    """Figure 6, 8x8: avg pool -> 256 || 256 || 384 -> (256 || 256) ||
    384 -> 448 (1x3) -> 512 (3x1) -> (256 || 256)."""
    s = "same"
    return Concat(_pool_proj(c, 256), BasicConv2d(c, 256, 1),
                  nn.Sequential(BasicConv2d(c, 384, 1), _split(384, 256)),
                  nn.Sequential(_seq((c, 384, 1), (384, 448, (1, 3), 1, s), (448, 512, (3, 1), 1, s)),
                                _split(512, 256)))


class ResidualInception(nn.Module):
    """Figure 20: ``act(x + scale * up(concat(branches(x))))``; ``up`` is a linear 1x1 convolution
    with bias (no BatchNorm), ``act`` a ReLU unless ``activate=False``."""

    def __init__(self, branches: Concat, branch_channels: int, channels: int, scale: float,
                 activate: bool = True):
        super().__init__()
        self.branches = branches
        self.up = nn.Conv2d(branch_channels, channels, 1, bias=True)
        self.scale = scale
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x + self.scale * self.up(self.branches(x))
        return F.relu(out, inplace=True) if self.activate else out

    def extra_repr(self) -> str:
        return f"scale={self.scale}, activate={self.activate}"


def _ir_stem(in_ch: int) -> nn.Sequential:
    """The released model's stem: Inception v3's Conv2d_1a..4a with two max poolings, then Mixed_5b
    (96 || 48 -> 64 (5x5) || 64 -> 96 -> 96 || avg pool -> 64): 299x299xC -> 35x35x320."""
    s = "same"
    return nn.Sequential(
        _seq((in_ch, 32, 3, 2), (32, 32, 3), (32, 64, 3, 1, s)), _max_pool(),
        _seq((64, 80, 1), (80, 192, 3)), _max_pool(),
        Concat(BasicConv2d(192, 96, 1), _seq((192, 48, 1), (48, 64, 5, 1, s)),
               _seq((192, 64, 1), (64, 96, 3, 1, s), (96, 96, 3, 1, s)), _pool_proj(192, 64)),
    )


def _ir_block_a(scale: float, c: int = 320) -> ResidualInception:
    """Figure 16, 35x35: 32 || 32 -> 32 || 32 -> 48 -> 64, up to ``c``."""
    s = "same"
    return ResidualInception(Concat(BasicConv2d(c, 32, 1), _seq((c, 32, 1), (32, 32, 3, 1, s)),
                                    _seq((c, 32, 1), (32, 48, 3, 1, s), (48, 64, 3, 1, s))), 128, c, scale)


def _ir_block_b(scale: float, c: int = 1088) -> ResidualInception:
    """Figure 17, 17x17: 192 || 128 -> 160 (1x7) -> 192 (7x1), up to ``c``."""
    s = "same"
    return ResidualInception(Concat(BasicConv2d(c, 192, 1),
                                    _seq((c, 128, 1), (128, 160, (1, 7), 1, s), (160, 192, (7, 1), 1, s))),
                             384, c, scale)


def _ir_reduction_b(c: int = 1088) -> Concat:
    """Figure 18, 17 -> 8: max pool || 256 -> 384 (3x3/2) || 256 -> 288 (3x3/2) ||
    256 -> 288 -> 320 (3x3/2)."""
    return Concat(_max_pool(), _seq((c, 256, 1), (256, 384, 3, 2)), _seq((c, 256, 1), (256, 288, 3, 2)),
                  _seq((c, 256, 1), (256, 288, 3, 1, "same"), (288, 320, 3, 2)))


def _ir_block_c(scale: float, c: int = 2080, activate: bool = True) -> ResidualInception:
    """Figure 19, 8x8: 192 || 192 -> 224 (1x3) -> 256 (3x1), up to ``c``."""
    s = "same"
    return ResidualInception(Concat(BasicConv2d(c, 192, 1),
                                    _seq((c, 192, 1), (192, 224, (1, 3), 1, s), (224, 256, (3, 1), 1, s))),
                             448, c, scale, activate)


# ----------------------------------------------------------------------------------------------
# Inception v4 and Inception-ResNet v2 networks
# ----------------------------------------------------------------------------------------------

#: Figure 9: blocks per stage (Inception-A, -B, -C)
V4_REPEATS = (4, 7, 3)
#: the released Inception-ResNet v2: Inception-ResNet-A, -B, -C units (the last C unit without ReLU)
IR_V2_REPEATS = (10, 20, 10)


class InceptionV4(nn.Module):
    """Figure 9: stem, 4 x A, Reduction-A, 7 x B, Reduction-B, 3 x C, pooling, dropout, linear."""

    def __init__(self, *, num_classes: int, in_channels: int = 3, dropout: float = 0.2):
        super().__init__()
        na, nb, nc = V4_REPEATS
        self.features = nn.Sequential(
            _v4_stem(in_channels),
            *(_v4_block_a() for _ in range(na)),
            _reduction_a(384, k=192, l=224, m=256, n=384),      # 384 + 384 + 256 = 1024
            *(_v4_block_b() for _ in range(nb)),
            _v4_reduction_b(),                                   # 1024 + 192 + 320 = 1536
            *(_v4_block_c() for _ in range(nc)),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1536, num_classes)
        _init_he_fan_in(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.avgpool(self.features(x)).flatten(1)))


class InceptionResNetV2(nn.Module):
    """The released Inception-ResNet v2 (see the module docstring for its deviations from Figure 15)."""

    def __init__(self, *, num_classes: int, in_channels: int = 3, dropout: float = 0.2,
                 scales: tuple[float, float, float] = (0.17, 0.10, 0.20)):
        super().__init__()
        na, nb, nc = IR_V2_REPEATS
        sa, sb, sc = scales
        self.features = nn.Sequential(
            _ir_stem(in_channels),
            *(_ir_block_a(sa) for _ in range(na)),
            _reduction_a(320, k=256, l=256, m=384, n=384),      # 320 + 384 + 384 = 1088
            *(_ir_block_b(sb) for _ in range(nb)),
            _ir_reduction_b(),                                   # 1088 + 384 + 288 + 320 = 2080
            *(_ir_block_c(sc) for _ in range(nc - 1)),
            _ir_block_c(1.0, activate=False),
            BasicConv2d(2080, 1536, 1),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1536, num_classes)
        _init_he_fan_in(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.avgpool(self.features(x)).flatten(1)))


# ----------------------------------------------------------------------------------------------
# Public builders
# ----------------------------------------------------------------------------------------------

@register_model()
def googlenet(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return GoogLeNet(num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def inception_v3(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return InceptionV3(num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def inception_v4(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return InceptionV4(num_classes=num_classes, in_channels=in_channels, **options)


@register_model()
def inception_resnet_v2(*, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    return InceptionResNetV2(num_classes=num_classes, in_channels=in_channels, **options)
