"""Parameter and multiply-add counts of a network.

``complexity(model, input_size)`` returns three numbers:

``params``
    every trainable parameter (``requires_grad``), BatchNorm scales and shifts included; this is
    what ``sum(p.numel() for p in model.parameters())`` and torchvision's ``num_params`` metadata
    report.
``conv_linear_params``
    the weights and biases of convolution and linear layers only (frozen or not), the count of tables that leave
    BatchNorm out (e.g. Howard et al. 2017, MobileNet, Tables 4-8).
``mult_adds``
    multiply-accumulate operations of convolution and linear layers for ONE image of
    ``input_size = (C, H, W)``, measured on a real forward pass (eval mode, no grad) with forward
    hooks. Per layer::

        Conv (any dimension):      out_elements * (in_channels / groups) * prod(kernel_size)
        ConvTranspose:             in_elements  * (out_channels / groups) * prod(kernel_size)
        Linear:                    rows * out_features * in_features
                                   (rows = input elements / in_features, i.e. 1 per image
                                   for a flat feature vector)

    Biases, normalisation, activations, pooling and additions are not counted. This is the
    convention of the papers' tables and of torchvision's ``_ops`` metadata (GFLOPs there are
    multiply-adds: VGG16 reports 15.47 and so does this counter).
    ``torch.utils.flop_counter.FlopCounterMode`` counts a multiply-add as two FLOPs and reports
    ``2 * mult_adds`` for the same layers.

The model's training flag is restored afterwards; hooks are always removed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["complexity"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _layer_mult_adds(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """Multiply-adds of one conv / linear call (whole batch)."""
    if isinstance(module, _CONV):
        k = math.prod(module.kernel_size)
        return output.numel() * (module.in_channels // module.groups) * k
    if isinstance(module, _CONV_T):
        k = math.prod(module.kernel_size)
        return inputs[0].numel() * (module.out_channels // module.groups) * k
    if isinstance(module, nn.Linear):
        rows = inputs[0].numel() // module.in_features
        return rows * module.out_features * module.in_features
    return 0


def complexity(model: nn.Module, input_size: tuple[int, ...]) -> dict[str, int]:
    """Count ``params``, ``conv_linear_params`` and ``mult_adds`` of ``model`` (see module docstring).

    ``input_size`` is the shape of one image without the batch dimension, e.g. ``(3, 224, 224)``.
    The forward pass runs on the device and dtype of the model's first parameter (float32 if it
    has none) with a batch of one.
    """
    layers = _CONV + _CONV_T + (nn.Linear,)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    conv_linear_params = sum(p.numel() for m in model.modules() if isinstance(m, layers)
                             for p in m.parameters(recurse=False))

    total = 0

    def hook(module, inputs, output):
        nonlocal total
        total += _layer_mult_adds(module, inputs, output)

    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layers)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_size), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {"params": params, "conv_linear_params": conv_linear_params, "mult_adds": total}
