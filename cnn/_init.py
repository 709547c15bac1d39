"""Weight initialisation shared by model families that follow torchvision's convention."""

from __future__ import annotations

from torch import nn


def torchvision_init(model: nn.Module, *, linear_std: float | None = 0.01) -> None:
    """torchvision's VGG / MobileNet / ResNet initialisation: convolutions Kaiming-normal (fan_out,
    ReLU gain), BatchNorm weight 1 and bias 0, linear layers N(0, ``linear_std``) with bias 0, every
    convolution bias 0. ``linear_std=None`` leaves linear layers at PyTorch's default (ResNet)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)
