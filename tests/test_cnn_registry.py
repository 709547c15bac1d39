"""The registry as users reach it: ``cnn.list_models`` / ``cnn.get_model``."""

from __future__ import annotations

import pytest
import torch

import cnn

FAMILIES = {
    "alexnet": ["alexnet", "alexnet_small"],
    "vgg": [f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")],
    "resnet": [f"{p}resnet{d}" for p in ("", "cifar_") for d in (18, 34, 50, 101, 152)]
    + ["preact_resnet110", "preact_resnet164"],
    "mobilenet": ["mobilenet_v1", "mobilenet_v2"],
    "inception": ["googlenet", "inception_v3", "inception_v4", "inception_resnet_v2"],
}


def test_every_family_is_registered_once_loaded_through_the_registry():
    names = cnn.list_models()
    assert names == sorted(names) and len(names) == len(set(names))
    assert set(names) == {n for family in FAMILIES.values() for n in family}


def test_get_model_builds_with_classes_and_channels():
    model = cnn.get_model("alexnet_small", num_classes=7, in_channels=1)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 7)
    counts = cnn.complexity(model, (1, 28, 28))
    assert counts["params"] == sum(p.numel() for p in model.parameters())
    assert 0 < counts["mult_adds"]


def test_get_model_rejects_bad_requests():
    with pytest.raises(ValueError, match="unknown model 'alexnet2'.*alexnet_small"):
        cnn.get_model("alexnet2", num_classes=10)
    with pytest.raises(ValueError, match="num_classes and in_channels must be positive"):
        cnn.get_model("vgg11", num_classes=0)
    with pytest.raises(TypeError):
        cnn.get_model("resnet18", num_classes=10, no_such_option=True)


def test_every_registered_model_has_a_forward_backward_case():
    """Each family's test file runs forward and backward (shape, no NaN, every parameter gets a
    gradient) at the smallest input it supports; a model added to the registry without such a
    case fails here."""
    from tests import test_cnn_alexnet_vgg, test_cnn_inception, test_cnn_resnet_mobilenet

    covered = {case[0] for case in test_cnn_alexnet_vgg.CASES}
    covered |= {case[0] for case in test_cnn_resnet_mobilenet.TRAINABLE}
    covered |= {case[0] for case in test_cnn_inception.CASES}
    assert set(cnn.list_models()) <= covered, sorted(set(cnn.list_models()) - covered)
