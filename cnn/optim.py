"""Optimiser and learning-rate schedule of the trainer.

* SGD (momentum, Nesterov) or AdamW over two parameter groups: weight decay on parameters with
  ``ndim >= 2`` (conv and linear weights), none on biases and normalisation weights (``ndim <= 1``).
* Learning rate updated every step, ``lr(s) = lr * f(s)`` for steps ``s = 0 .. T - 1``,
  ``T = epochs * steps_per_epoch``, warm-up ``W = round(warmup_epochs * steps_per_epoch)``:

  - ``constant``: ``f = 1`` (after warm-up);
  - ``step``: ``f = gamma ** floor(s / (step_size * steps_per_epoch))`` (after warm-up);
  - ``cosine``: ``f = (s + 1) / W`` for ``s < W``, then ``(1 + cos(pi (s - W) / (T - W))) / 2``
    (``f(T) = 0``: the value one step after the end);
  - ``onecycle``: the formula of ``torch.optim.lr_scheduler.OneCycleLR`` (cosine annealing,
    two phases; Smith and Topin, "Super-Convergence", 2017): from ``1 / div_factor`` up to 1 at
    step ``pct_start * T - 1``, then down to ``1 / (div_factor * final_div_factor)`` at step
    ``T - 1``; the momentum is not cycled.

The functions read the settings of a :class:`cnn.train.TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .train import TrainConfig

__all__ = ["build_optimizer", "build_scheduler", "last_lr", "lr_factor", "parameter_groups"]


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: parameters with ``ndim >= 2`` get ``weight_decay``; biases and normalisation
    weights (``ndim <= 1``) get none. Frozen parameters are left out."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (``momentum``, ``nesterov``) or AdamW (``betas=(momentum, 0.999)``) over :func:`parameter_groups`."""
    groups = parameter_groups(model, config.weight_decay)
    if not groups[0]["params"] and not groups[1]["params"]:
        raise ValueError("the model has no trainable parameters")
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999))


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of ``config.lr`` at optimiser step ``step`` (0-based); formulas in the module
    docstring. ``step = epochs * steps_per_epoch`` is the value one step after the end."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        initial = 1.0 / config.div_factor
        final = initial / config.final_div_factor
        peak = float(config.pct_start * total) - 1  # as torch.optim.lr_scheduler.OneCycleLR
        end = float(total - 1)

        def anneal(start: float, stop: float, pct: float) -> float:
            return stop + (start - stop) / 2.0 * (math.cos(math.pi * pct) + 1)

        if step <= peak:
            return anneal(initial, 1.0, step / peak) if peak > 0 else 1.0
        if end <= peak:
            return final
        return anneal(1.0, final, min(1.0, (step - peak) / (end - peak)))
    warm = round(config.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "step":
        return config.gamma ** (step // (config.step_size * steps_per_epoch))
    # cosine
    span = max(1, total - warm)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / span)))


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR`` over :func:`lr_factor` (call ``.step()`` after every optimiser step)."""
    cfg = dataclasses.replace(config)

    def factor(step: int) -> float:
        return lr_factor(cfg, step, steps_per_epoch)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def last_lr(config: TrainConfig, epoch: int, steps_per_epoch: int) -> float:
    """Learning rate of the last step of ``epoch`` (1-based)."""
    return config.lr * lr_factor(config, epoch * steps_per_epoch - 1, steps_per_epoch)
