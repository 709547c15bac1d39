"""One registry for every architecture: ``register_model``, ``get_model``, ``list_models``.

A model file registers its public builders with ``@register_model()``; a builder takes
``num_classes`` and ``in_channels`` as keywords (plus its own options) and returns an
``nn.Module``. Names are unique: registering a name twice raises, so two files cannot silently
shadow each other. The model modules are imported on first use of the registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

__all__ = ["register_model", "get_model", "list_models", "MODEL_MODULES"]

#: Modules whose import registers models (one file per family).
MODEL_MODULES: tuple[str, ...] = ("cnn.alexnet", "cnn.vgg", "cnn.resnet", "cnn.mobilenet", "cnn.inception")

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_loaded = False


def register_model(name: str | None = None):
    """Decorator: register ``builder`` under ``name`` (default: the function's name)."""

    def wrap(builder: Callable[..., nn.Module]):
        key = name or builder.__name__
        if key in _BUILDERS:
            raise ValueError(f"model {key!r} is already registered (by {_BUILDERS[key].__module__})")
        _BUILDERS[key] = builder
        return builder

    return wrap


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for module in MODEL_MODULES:
            importlib.import_module(module)
        _loaded = True


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _load_all()
    return sorted(_BUILDERS)


def get_model(name: str, *, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    """Build model ``name`` for ``num_classes`` classes and ``in_channels`` input channels.

    ``options`` go to the builder (e.g. ``width_mult`` for MobileNet); an unknown option raises
    ``TypeError`` rather than being dropped.
    """
    _load_all()
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(_BUILDERS))}")
    if num_classes < 1 or in_channels < 1:
        raise ValueError(f"num_classes and in_channels must be positive, got {num_classes}, {in_channels}")
    return _BUILDERS[name](num_classes=num_classes, in_channels=in_channels, **options)
