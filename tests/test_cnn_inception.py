"""GoogLeNet, Inception v3, Inception v4 and Inception-ResNet v2: outputs, gradients, counts."""

from __future__ import annotations

import pickle

import pytest
import torch
import torchvision
from torch import nn

import cnn
from cnn.inception import BasicConv2d, Concat, InceptionOutputs, InceptionV1Module, ResidualInception
from cnn.registry import get_model

# (name, options, smallest input side): forward and backward at batch 2
CASES = [
    ("googlenet", {}, 31),
    ("googlenet", {"small_input": True}, 8),
    ("googlenet", {"batch_norm": True, "lrn": False, "init": "kaiming"}, 31),
    ("inception_v3", {}, 75),
    ("inception_v3", {"small_input": True}, 21),
    ("inception_v4", {}, 75),
    ("inception_resnet_v2", {}, 75),
]
NAMES = ["googlenet", "inception_v3", "inception_v4", "inception_resnet_v2"]
N_AUX = {"googlenet": 2, "inception_v3": 1, "inception_v4": 0, "inception_resnet_v2": 0}
SMALLEST = {name: side for name, options, side in CASES if not options}


def _case_id(name: str, options: dict) -> str:
    return "-".join([name] + [f"{k}={v}" for k, v in options.items()])


def on_meta(builder, **kwargs) -> nn.Module:
    """Build without allocating or initialising weights (counting only)."""
    with torch.device("meta"):
        return get_model(builder, **kwargs) if isinstance(builder, str) else builder(**kwargs)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------------------------
# Output convention, shapes, NaN, gradients
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,options,side", CASES, ids=[_case_id(n, o) for n, o, _ in CASES])
def test_training_step_every_parameter_gets_a_gradient(name, options, side):
    torch.manual_seed(0)
    model = get_model(name, num_classes=10, **options).train()
    x = torch.randn(2, 3, side, side)
    y = torch.tensor([1, 7])
    out = model(x)
    if N_AUX[name]:
        assert isinstance(out, InceptionOutputs) and isinstance(out, tuple)
        assert len(out) == 1 + N_AUX[name] and len(model.aux_weights) == N_AUX[name]
        logits, aux = out[0], out[1:]  # the trainer's unpacking
        assert out.logits is logits and out.aux == tuple(aux)
    else:
        assert type(out) is torch.Tensor
        logits, aux = out, ()
    for t in (logits, *aux):
        assert t.shape == (2, 10) and torch.isfinite(t).all()
    ce = nn.functional.cross_entropy
    loss = ce(logits, y) + sum(w * ce(a, y) for w, a in zip(model.aux_weights if aux else (), aux))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing

    model.eval()
    with torch.no_grad():
        z = model(x)
    assert type(z) is torch.Tensor and z.shape == (2, 10) and torch.isfinite(z).all()


@pytest.mark.parametrize("name", NAMES)
def test_below_the_smallest_input_fails(name):
    model = get_model(name, num_classes=3).eval()
    with torch.no_grad(), pytest.raises(RuntimeError):
        model(torch.zeros(1, 3, SMALLEST[name] - 1, SMALLEST[name] - 1))


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_without_aux_logits_training_returns_a_tensor(name):
    model = get_model(name, num_classes=4, aux_logits=False).train()
    assert model.aux_weights == ()
    assert not any("aux" in n.lower() for n, _ in model.named_parameters())
    y = model(torch.randn(2, 3, SMALLEST[name], SMALLEST[name]))
    assert type(y) is torch.Tensor and y.shape == (2, 4)


@pytest.mark.parametrize("name", NAMES)
def test_classes_and_channels(name):
    model = get_model(name, num_classes=7, in_channels=1).eval()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1
    assert [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features == 7
    with torch.no_grad():
        y = model(torch.randn(1, 1, SMALLEST[name], SMALLEST[name]))
    assert y.shape == (1, 7) and torch.isfinite(y).all()


def test_inception_outputs_is_a_tuple_that_survives_pickle():
    a, b, c = torch.zeros(2, 3), torch.ones(2, 3), torch.full((2, 3), 2.0)
    out = InceptionOutputs(a, b, c)
    assert isinstance(out, tuple) and len(out) == 3
    assert out.logits is a and out.aux == (b, c) and out[1:] == (b, c)
    back = pickle.loads(pickle.dumps(out))
    assert type(back) is InceptionOutputs and len(back) == 3
    assert all(torch.equal(u, v) for u, v in zip(back, out))
    assert InceptionOutputs(a).aux == ()


def test_unknown_option_raises():
    for name in NAMES:
        with pytest.raises(TypeError):
            get_model(name, num_classes=10, no_such_option=True)
    with pytest.raises(ValueError):
        get_model("googlenet", num_classes=10, init="nope")


def test_registered():
    assert set(NAMES) <= set(cnn.list_models())


# ----------------------------------------------------------------------------------------------
# GoogLeNet as in the paper
# ----------------------------------------------------------------------------------------------

def test_googlenet_follows_table_1():
    model = on_meta("googlenet", num_classes=1000)
    modules = [m for m in model.modules() if isinstance(m, InceptionV1Module)]
    assert [m.out_channels for m in modules] == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    # the true 5x5 (torchvision's googlenet has 3x3 there)
    assert all(m.branch3[1].conv.kernel_size == (5, 5) for m in modules)
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in model.modules()) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.dropout.p == 0.4 and all(a.dropout.p == 0.7 for a in model.aux.values())
    assert list(model.aux) == ["inception4a", "inception4d"] and model.aux_weights == (0.3, 0.3)
    no_lrn = on_meta("googlenet", num_classes=1000, lrn=False)
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in no_lrn.modules())


def test_googlenet_caffe_initialisation():
    model = get_model("googlenet", num_classes=10)
    conv = model.stem[0].conv
    bound = (3 / (conv.in_channels * 49)) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert (conv.bias == 0.2).all() and (model.fc.bias == 0).all()
    assert all((a.fc1.bias == 0.2).all() and (a.fc2.bias == 0).all() for a in model.aux.values())


# ----------------------------------------------------------------------------------------------
# Inception v3 is torchvision's network
# ----------------------------------------------------------------------------------------------

def test_inception_v3_has_torchvisions_parameters():
    ours = on_meta("inception_v3", num_classes=1000)
    theirs = on_meta(torchvision.models.inception_v3, weights=None, aux_logits=True, init_weights=False)
    def shapes(model: nn.Module) -> dict[str, torch.Size]:
        return {k: v.shape for k, v in model.state_dict().items()}

    assert sum(p.numel() for p in ours.parameters()) == 27_161_264
    assert sum(p.numel() for p in theirs.parameters()) == 27_161_264
    assert shapes(ours) == shapes(theirs)  # same names, same shapes: torchvision's weights load
    assert shapes(on_meta("inception_v3", num_classes=1000, small_input=True)) == shapes(ours)


def test_inception_v3_computes_what_torchvision_computes():
    torch.manual_seed(0)
    theirs = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True,
                                             num_classes=10).eval()
    for bn in (m for m in theirs.modules() if isinstance(m, nn.BatchNorm2d)):  # non-trivial statistics
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 2)
    ours = get_model("inception_v3", num_classes=10)
    ours.load_state_dict(theirs.state_dict())
    ours.eval()
    x = torch.randn(2, 3, 75, 75)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_inception_v3_initialisation():
    model = get_model("inception_v3", num_classes=10)
    w = model.Mixed_6b.branch7x7_2.conv.weight
    assert w.abs().max() <= 0.2 and 0.07 < w.std() < 0.1
    assert model.AuxLogits.fc.weight.abs().max() <= 0.002
    assert model.AuxLogits.conv1.conv.weight.abs().max() <= 0.02


# ----------------------------------------------------------------------------------------------
# Inception-ResNet units
# ----------------------------------------------------------------------------------------------

def test_residual_unit_computes_its_formula():
    torch.manual_seed(0)
    branches = Concat(BasicConv2d(8, 4, 1), BasicConv2d(8, 6, 3, padding="same"))
    x = torch.randn(2, 8, 5, 5)
    for activate in (True, False):
        unit = ResidualInception(branches, 10, 8, scale=0.17, activate=activate).eval()
        with torch.no_grad():
            expected = x + 0.17 * unit.up(torch.cat([b(x) for b in branches.branches], 1))
            torch.testing.assert_close(unit(x), torch.relu(expected) if activate else expected)


def test_inception_resnet_v2_scales():
    model = on_meta("inception_resnet_v2", num_classes=10)
    units = [m for m in model.modules() if isinstance(m, ResidualInception)]
    assert [u.scale for u in units] == [0.17] * 10 + [0.10] * 20 + [0.20] * 9 + [1.0]
    assert [u.activate for u in units] == [True] * 39 + [False]


# ----------------------------------------------------------------------------------------------
# Counts (1000 classes; mult-adds at the reference input, eval mode: no auxiliary heads)
# ----------------------------------------------------------------------------------------------

COUNTS = [
    # name, options, side, params, conv_linear_params, mult_adds
    ("googlenet", {"aux_logits": False}, 224, 6_998_552, 6_998_552, 1_582_671_872),
    ("googlenet", {}, 224, 13_378_280, 13_378_280, 1_582_671_872),
    ("googlenet", {"aux_logits": False, "batch_norm": True}, 224, 7_005_832, 6_991_272, 1_582_671_872),
    ("inception_v3", {}, 299, 27_161_264, 27_125_040, 5_713_216_096),
    ("inception_v3", {"aux_logits": False}, 299, 23_834_568, 23_800_136, 5_713_216_096),
    ("inception_v4", {}, 299, 42_679_816, 42_616_648, 12_253_974_624),
    ("inception_resnet_v2", {}, 299, 55_843_464, 55_782_920, 13_155_794_016),
]


@pytest.mark.parametrize("name,options,side,params,conv_linear,madds", COUNTS,
                         ids=[_case_id(c[0], c[1]) for c in COUNTS])
def test_documented_counts(name, options, side, params, conv_linear, madds):
    counts = cnn.complexity(on_meta(name, num_classes=1000, **options), (3, side, side))
    assert counts == {"params": params, "conv_linear_params": conv_linear, "mult_adds": madds}
    assert f"{params:,}" in cnn.inception.__doc__  # the docstring's table says the same


def test_googlenet_counts_match_the_papers_rounded_figures():
    counts = cnn.complexity(on_meta("googlenet", num_classes=1000, aux_logits=False), (3, 224, 224))
    assert 6.8e6 <= counts["params"] <= 7.0e6  # "6.8M" (MobileNet paper, Table 8)
    assert 1.5e9 <= counts["mult_adds"] <= 1.6e9  # "1.5 billion multiply-adds" (Section 5)
    theirs = cnn.complexity(on_meta(torchvision.models.googlenet, aux_logits=False, init_weights=False),
                            (3, 224, 224))
    # torchvision's 3x3-for-5x5 network with BatchNorm: smaller, as the module docstring says
    assert (theirs["params"], theirs["mult_adds"]) == (6_624_904, 1_498_376_192)


@pytest.mark.parametrize("name,cited", [("inception_v4", 42_679_816), ("inception_resnet_v2", 55_843_464)])
def test_v4_counts_match_the_reference_implementations(name, cited):
    params = cnn.complexity(on_meta(name, num_classes=1000), (3, 299, 299))["params"]
    assert abs(params - cited) <= 0.005 * cited


# ----------------------------------------------------------------------------------------------
# Reference input sizes (slow)
# ----------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name,side", [("googlenet", 224), ("inception_v3", 299), ("inception_v4", 299),
                                       ("inception_resnet_v2", 299)])
def test_training_step_at_the_reference_size(name, side):
    torch.manual_seed(0)
    model = get_model(name, num_classes=10).train()
    out = model(torch.randn(2, 3, side, side))
    outs = out if isinstance(out, tuple) else (out,)
    assert len(outs) == 1 + N_AUX[name]
    assert all(t.shape == (2, 10) and torch.isfinite(t).all() for t in outs)
    sum(t.square().mean() for t in outs).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
def test_inception_v3_training_mode_matches_torchvision_at_299():
    torch.manual_seed(0)
    theirs = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True, num_classes=10)
    ours = get_model("inception_v3", num_classes=10)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 299, 299)
    torch.manual_seed(1)
    a = ours.train()(x)
    torch.manual_seed(1)
    b = theirs.train()(x)
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.aux[0], b.aux_logits)
