"""ResNet, CIFAR ResNet, pre-activation ResNet and MobileNet v1/v2: shapes, gradients, counts."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import cnn.mobilenet  # noqa: F401  (registers the models)
import cnn.resnet  # noqa: F401
from cnn.mobilenet import make_divisible
from cnn.registry import get_model
from cnn.resnet import PREACT_UNITS, PreActBasicUnit, PreActBottleneckUnit, PreActResNet

# (name, options, input side); forward and backward at batch 2
TRAINABLE = [
    ("resnet18", {}, 32),
    ("resnet34", {}, 32),
    ("resnet50", {}, 32),
    ("resnet101", {}, 32),
    ("cifar_resnet18", {}, 32),
    ("cifar_resnet34", {}, 32),
    ("cifar_resnet50", {}, 32),
    ("cifar_resnet101", {}, 32),
    ("preact_resnet110", {}, 32),
    ("resnet152", {}, 32),
    ("cifar_resnet152", {}, 32),
    ("preact_resnet164", {}, 32),
    ("mobilenet_v1", {}, 28),
    ("mobilenet_v1", {"small_input": True}, 28),
    ("mobilenet_v1", {"width_mult": 0.25}, 32),
    ("mobilenet_v1", {"depthwise": False}, 32),
    ("mobilenet_v2", {}, 28),
    ("mobilenet_v2", {"small_input": True, "width_mult": 0.5}, 32),
]
DEEP = ["resnet152", "cifar_resnet152", "preact_resnet164"]  # in_channels=1: layer shapes only
ALL = sorted({name for name, _, _ in TRAINABLE})


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def conv_linear_params(model: nn.Module) -> int:
    return sum(p.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
               for p in m.parameters())


def mult_adds(model: nn.Module, side: int, in_channels: int = 3) -> int:
    """Mult-adds of conv and linear layers for one image, counted on the meta device (shapes only)."""
    total = 0

    def hook(m, inputs, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total += out[0].numel() * (m.in_channels // m.groups) * kh * kw
        else:
            total += m.in_features * m.out_features

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles = [m.register_forward_hook(hook) for m in layers]
    model.to("meta").eval()(torch.empty(1, in_channels, side, side, device="meta"))
    for h in handles:
        h.remove()
    return total


def on_meta(name: str, **kwargs) -> nn.Module:
    """Build without allocating or initialising weights (counting only)."""
    with torch.device("meta"):
        return get_model(name, **kwargs) if isinstance(name, str) else name(**kwargs)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _forward_backward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.train()
    y = model(x)
    y.square().mean().backward()
    return y


# ----------------------------------------------------------------------------------------------
# Shapes, NaN, gradients
# ----------------------------------------------------------------------------------------------

def _case_id(name: str, options: dict) -> str:
    return "-".join([name] + [f"{k}={v}" for k, v in options.items()])


@pytest.mark.parametrize("name,options,side", TRAINABLE, ids=[_case_id(n, o) for n, o, _ in TRAINABLE])
def test_forward_backward_every_parameter_gets_a_gradient(name, options, side):
    torch.manual_seed(0)
    model = get_model(name, num_classes=10, **options)
    y = _forward_backward(model, torch.randn(2, 3, side, side))
    assert y.shape == (2, 10)
    assert torch.isfinite(y).all()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


@pytest.mark.parametrize("name", ALL)
def test_one_input_channel(name):
    model = get_model(name, num_classes=10, in_channels=1).eval()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1
    if name in DEEP:
        return
    with torch.no_grad():
        y = model(torch.randn(1, 1, 28, 28))
    assert y.shape == (1, 10) and torch.isfinite(y).all()


@pytest.mark.parametrize("unit", list(PREACT_UNITS))
@pytest.mark.parametrize("unit_cls", [PreActBasicUnit, PreActBottleneckUnit], ids=["basic", "bottleneck"])
def test_every_residual_unit_variant_trains(unit, unit_cls):
    torch.manual_seed(0)
    model = PreActResNet(unit_cls, 2, num_classes=10, in_channels=3, unit=unit)
    y = _forward_backward(model, torch.randn(2, 3, 16, 16))
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    assert all(p.grad is not None for p in model.parameters())


def test_unit_variants_compute_their_formula():
    """Each variant against its formula of Figure 4, written out for one identity-shortcut basic unit."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    relu = torch.relu
    for unit in PREACT_UNITS:
        u = PreActBasicUnit(8, 8, 1, unit=unit).eval()
        for bn in u.norms:  # non-trivial running statistics and affine parameters
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.data.uniform_(0.5, 2)
            bn.bias.data.uniform_(-1, 1)
        c1, c2 = u.convs
        b1, b2 = u.norms
        expected = {
            "original": lambda: relu(x + b2(c2(relu(b1(c1(x)))))),
            "bn_after_add": lambda: relu(b2(x + c2(relu(b1(c1(x)))))),
            "relu_before_add": lambda: x + relu(b2(c2(relu(b1(c1(x)))))),
            "relu_only_preact": lambda: x + b2(c2(relu(b1(c1(relu(x)))))),
            "full_preact": lambda: x + c2(relu(b2(c1(relu(b1(x)))))),
        }[unit]
        with torch.no_grad():
            torch.testing.assert_close(u(x), expected(), msg=unit)


def test_zero_init_residual():
    model = get_model("resnet18", num_classes=10, zero_init_residual=True)
    last = [b.last_bn.weight for b in model.modules() if hasattr(b, "last_bn")]
    assert len(last) == 8 and all((w == 0).all() for w in last)
    model = get_model("resnet50", num_classes=10)
    assert all((b.last_bn.weight == 1).all() for b in model.modules() if hasattr(b, "last_bn"))


def test_unknown_option_raises():
    with pytest.raises(TypeError):
        get_model("resnet18", num_classes=10, widht=2)
    with pytest.raises(ValueError):
        get_model("preact_resnet110", num_classes=10, unit="nope")


# ----------------------------------------------------------------------------------------------
# Counts
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_resnet_parameter_count_equals_torchvision(depth):
    ours = on_meta(f"resnet{depth}", num_classes=1000)
    theirs = on_meta(getattr(torchvision.models, f"resnet{depth}"))
    assert n_params(ours) == n_params(theirs)
    # the same architecture: the same parameter shapes in the same order
    assert [p.shape for p in ours.parameters()] == [p.shape for p in theirs.parameters()]


# The seed's table: CIFAR-style ResNets, 10 classes
@pytest.mark.parametrize("depth,exact,published", [
    (18, 11_173_962, "11.174M"), (34, 21_282_122, "21.282M"), (50, 23_520_842, "23.521M"),
    (101, 42_512_970, "42.513M"), (152, 58_156_618, "58.157M")])
def test_cifar_resnet_parameter_table(depth, exact, published):
    count = n_params(on_meta(f"cifar_resnet{depth}", num_classes=10))
    assert count == exact
    assert f"{count / 1e6:.3f}M" == published


@pytest.mark.parametrize("depth,exact", [(110, 1_730_522), (164, 1_703_258)])
def test_preact_resnet_parameter_count(depth, exact):
    count = n_params(on_meta(f"preact_resnet{depth}", num_classes=10))
    assert count == exact
    assert round(count / 1e6, 1) == 1.7  # "1.7M" in He et al. 2016, Table 3


def test_mobilenet_v2_parameter_count_equals_torchvision():
    for width in (1.0, 0.5, 1.4):
        ours = on_meta("mobilenet_v2", num_classes=1000, width_mult=width)
        theirs = on_meta(torchvision.models.mobilenet_v2, width_mult=width)
        assert n_params(ours) == n_params(theirs), width
    assert n_params(on_meta("mobilenet_v2", num_classes=1000)) == 3_504_872


def test_make_divisible():
    assert [make_divisible(v) for v in (32, 16 * 0.5, 24 * 0.35, 320 * 1.4, 3)] == [32, 8, 8, 448, 8]


# MobileNet v1, Tables 4 and 6: 1000 classes, 224x224, conv+linear parameters (M), mult-adds (M)
@pytest.mark.parametrize("options,params_m,madds_m", [
    ({}, 4.2, 569), ({"width_mult": 0.75}, 2.6, 325), ({"width_mult": 0.5}, 1.3, 149),
    ({"width_mult": 0.25}, 0.5, 41), ({"depthwise": False}, 29.3, 4866)])
def test_mobilenet_v1_published_counts(options, params_m, madds_m):
    model = on_meta("mobilenet_v1", num_classes=1000, **options)
    assert round(conv_linear_params(model) / 1e6, 1) == params_m
    assert abs(mult_adds(model, 224) / 1e6 - madds_m) <= 0.01 * madds_m
    # no BatchNorm in that count, but BatchNorm is in the model
    assert n_params(model) > conv_linear_params(model)


def test_small_input_keeps_parameters_and_grows_the_last_map():
    for name in ("mobilenet_v1", "mobilenet_v2"):
        plain = on_meta(name, num_classes=10)
        small = on_meta(name, num_classes=10, small_input=True)
        assert n_params(plain) == n_params(small)
        assert 3.5 < mult_adds(small, 32) / mult_adds(plain, 32) < 4.5
