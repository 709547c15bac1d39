"""The deep models: a registry of the architectures of the story and a complexity counter.

A library: no command line and no knowledge of data sets (those live in ``experiments``).

    model = cnn.get_model("alexnet_small", num_classes=10, in_channels=1)
    cnn.complexity(model, (1, 28, 28))   # params, conv_linear_params, mult_adds
    cnn.list_models()
"""

from .complexity import complexity
from .registry import get_model, list_models, register_model

__all__ = ["complexity", "get_model", "list_models", "register_model"]
