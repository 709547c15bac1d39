"""AlexNet and VGG: shapes, gradients, options, parameter and multiply-add counts, the counter itself."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnn.alexnet
import cnn.vgg
from cnn import registry
from cnn.complexity import complexity

VGG_NAMES = [f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")]
OURS = ["alexnet", "alexnet_small", *VGG_NAMES]

# name, image side, in_channels, num_classes. The 224 px runs are the expensive ones on CPU: only
# alexnet (whose smallest supported input we test at 224) and vgg11; the other VGGs run at 32x32,
# the smallest size their five pools allow. Each VGG build initialises a 102M-weight fc6, so three
# of them run only under `-m slow`; their parameter counts are checked against torchvision below.
CASES = [
    ("alexnet", 224, 3, 1000),
    ("alexnet_small", 32, 3, 10),
    ("alexnet_small", 28, 1, 10),
    ("vgg11", 224, 3, 7),
    ("vgg11_bn", 32, 1, 10),
    ("vgg13", 32, 3, 3),
    ("vgg13_bn", 32, 3, 10),
    ("vgg16", 32, 1, 10),
    ("vgg16_bn", 32, 3, 10),
    ("vgg19", 32, 1, 10),
    ("vgg19_bn", 32, 3, 10),
    pytest.param("vgg13_bn", 32, 3, 10, marks=pytest.mark.slow),
    pytest.param("vgg16", 32, 1, 10, marks=pytest.mark.slow),
    pytest.param("vgg19_bn", 32, 3, 10, marks=pytest.mark.slow),
]


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_count(build, **kwargs) -> int:
    """Parameter count without allocating or initialising weights."""
    with torch.device("meta"):
        return _count(build(**kwargs))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_every_model_is_registered():
    assert set(OURS) <= set(registry.list_models())
    assert {case.values[0] if hasattr(case, "values") else case[0] for case in CASES} == set(OURS)


@pytest.mark.parametrize(("name", "side", "in_channels", "num_classes"), CASES)
def test_forward_backward(name, side, in_channels, num_classes):
    model = registry.get_model(name, num_classes=num_classes, in_channels=in_channels)
    model.train()
    x = torch.randn(2, in_channels, side, side)
    out = model(x)
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()
    nn.functional.cross_entropy(out, torch.tensor([0, num_classes - 1])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname


def test_unknown_option_raises():
    with pytest.raises(TypeError):
        registry.get_model("alexnet_small", num_classes=10, no_such_option=1)
    with pytest.raises(TypeError):
        registry.get_model("vgg11", num_classes=10, no_such_option=1)


def test_registry_refuses_duplicate_names(monkeypatch):
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))

    def dummy(*, num_classes, in_channels=3, **options):
        return nn.Linear(in_channels, num_classes)

    registry.register_model("test_dummy_model")(dummy)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model("test_dummy_model")(dummy)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model()(cnn.vgg.vgg16)


# ----------------------------------------------------------------------------- AlexNet


def test_alexnet_parameter_counts():
    assert _meta_count(cnn.alexnet.alexnet, num_classes=1000) == 62_378_344
    grouped = _meta_count(cnn.alexnet.alexnet, num_classes=1000, groups=2)
    assert grouped == 60_965_224
    assert abs(grouped - 61e6) / 61e6 < 0.01  # the paper's "60 million", torchvision's 61.1M
    assert _meta_count(cnn.alexnet.alexnet, num_classes=1000, lrn=False) == 62_378_344
    assert _meta_count(cnn.alexnet.alexnet_small, num_classes=10) == 7_703_370


def test_alexnet_layers_follow_the_paper():
    model = cnn.alexnet.alexnet(num_classes=1000, groups=2)
    lrns = [m for m in model.modules() if isinstance(m, nn.LocalResponseNorm)]
    assert len(lrns) == 2
    for m in lrns:  # k=2, n=5, alpha=1e-4 per element (PyTorch: alpha / n), beta=0.75
        assert (m.size, m.alpha, m.beta, m.k) == (5, 5e-4, 0.75, 2.0)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 2)] * 3
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    # paper init: N(0, 0.01) weights, biases 1 in conv2, conv4, conv5, fc6, fc7, else 0
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [float(m.bias.detach().mean()) for m in convs + linears] == [0, 1, 0, 1, 1, 1, 1, 0]
    assert abs(float(linears[0].weight.detach().std()) - 0.01) < 1e-4
    assert abs(float(linears[0].weight.detach().mean())) < 1e-4

    plain = cnn.alexnet.alexnet_small(num_classes=10, lrn=False, batch_norm=True)
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in plain.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules()) == 5
    with pytest.raises(ValueError):
        cnn.alexnet.alexnet_small(num_classes=10, groups=3)


@pytest.mark.parametrize("options", [{"lrn": False, "batch_norm": True, "groups": 2}, {"init": "paper"}])
def test_alexnet_small_options_run(options):
    model = cnn.alexnet.alexnet_small(num_classes=10, **options)
    out = model(torch.randn(2, 3, 28, 28))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


# ----------------------------------------------------------------------------- VGG


@pytest.mark.parametrize("name", VGG_NAMES)
def test_vgg_parameter_counts_equal_torchvision(name):
    ours = _meta_count(getattr(cnn.vgg, name), num_classes=1000)
    with torch.device("meta"):
        theirs = _count(torchvision.models.get_model(name))
    assert ours == theirs
    assert ours == torchvision.models.get_model_weights(name).IMAGENET1K_V1.meta["num_params"]
    assert _meta_count(getattr(cnn.vgg, name), num_classes=10, in_channels=1) == (
        theirs - 4097 * 990 - 2 * 64 * 9)  # fc8: 4096*1000+1000 -> 4096*10+10; conv1: 3 -> 1 channel


# ----------------------------------------------------------------------------- complexity


def test_complexity_vgg16():
    c = complexity(cnn.vgg.vgg16(num_classes=1000), (3, 224, 224))
    assert c["params"] == 138_357_544
    assert c["conv_linear_params"] == 138_357_544
    assert abs(c["mult_adds"] - 15.47e9) / 15.47e9 < 0.005
    assert c["mult_adds"] == 15_470_264_320


def test_complexity_reproduces_torchvision_metadata_alexnet():
    meta = torchvision.models.get_model_weights("alexnet").IMAGENET1K_V1.meta
    c = complexity(torchvision.models.alexnet(), (3, 224, 224))
    assert c["params"] == meta["num_params"] == 61_100_840
    assert round(c["mult_adds"] / 1e9, 3) == meta["_ops"]  # _ops: GFLOPs counted as multiply-adds


def test_complexity_alexnet():
    c = complexity(cnn.alexnet.alexnet(num_classes=1000, groups=2), (3, 224, 224))
    assert c["params"] == 60_965_224
    assert c["mult_adds"] == 724_406_816


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2, bias=False)
        self.fc = nn.Linear(16 * 4 * 4, 5)
        self.frozen = nn.Parameter(torch.zeros(7), requires_grad=False)

    def forward(self, x):
        x = self.conv2(torch.relu(self.bn(self.conv1(x))))
        return self.fc(x.flatten(1))


def test_complexity_hand_count():
    model = _Tiny().train()
    c = complexity(model, (3, 8, 8))
    conv1 = (8 * 8 * 8) * 3 * 3 * 3  # out elements * in/groups * kh * kw
    conv2 = (16 * 4 * 4) * (8 // 2) * 3 * 3
    fc = 5 * 256
    assert c["mult_adds"] == conv1 + conv2 + fc == 24_320
    assert c["conv_linear_params"] == (8 * 27 + 8) + (16 * 4 * 9) + (256 * 5 + 5) == 2_085
    assert c["params"] == 2_085 + 2 * 8  # BatchNorm counted, the frozen parameter not
    assert model.training  # mode restored
    assert model.bn.num_batches_tracked == 0  # ran in eval mode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, 8, 8))
    assert counter.get_total_flops() == 2 * c["mult_adds"]


def test_complexity_linear_rows():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    c = complexity(model, (6, 4))  # 6 rows per sample
    assert c["mult_adds"] == 6 * (4 * 3 + 3 * 2)
