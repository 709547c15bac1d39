"""One epoch of training and one evaluation pass, with the loss they share.

Loss
----
``loss = CE_ls(main, y) + sum_k w_k CE_ls(aux_k, y)`` where a model returns a tuple
``(main, *aux)`` in training mode; ``w_k`` comes from :func:`aux_weights` (``aux_weight`` when it
is set, else the model's own ``aux_weights`` -- GoogLeNet's two heads 0.3 each, Inception v3's one
head 0.4 -- else 0.3); and ``CE_ls`` is ``F.cross_entropy(..., label_smoothing=eps)``: the target
is ``(1 - eps) * onehot(y) + eps / K``. The reported ``train_loss`` is this full objective, in
float32 whatever the autocast precision; the evaluation loss is the plain cross-entropy of the main
logits (no smoothing, no auxiliary heads).

Divergence
----------
A non-finite training loss raises :class:`DivergedError` naming the epoch: checked every step on
the CPU, every ``CUDA_CHECK_EVERY`` steps and at the end of each epoch on CUDA (each check is a
host-device synchronisation).

Metrics are accumulated on the device (loss sums in float64, hit counts in int64) and read once
per epoch or pass.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .data import BatchSource, Preprocess

if TYPE_CHECKING:
    from .train import TrainConfig

__all__ = ["DivergedError", "aux_weights", "evaluate_pass", "train_one_epoch", "training_loss"]

#: Steps between divergence checks on CUDA (each check is a host-device sync); every step on CPU.
CUDA_CHECK_EVERY = 16


class DivergedError(FloatingPointError):
    """The training loss became NaN or infinite."""


# ----------------------------------------------------------------------------- device helpers


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``; no context at all when ``dtype`` is None."""
    if dtype is None:  # a disabled autocast still validates its dtype and warns on CUDA: skip it
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so that wall-clock times measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- loss


def main_and_aux(out) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A model's output as (main logits, [auxiliary logits])."""
    if isinstance(out, tuple):  # (logits, *aux); tuple subclasses and namedtuples too
        return out[0], [a for a in out[1:] if a is not None]
    return out, []


def training_loss(out, y: torch.Tensor, *, label_smoothing: float = 0.0,
                  aux_weight: float | Sequence[float] = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """``CE_ls(main, y) + sum_k w_k CE_ls(aux_k, y)`` in float32.

    ``out``: logits (B, K), or a tuple ``(main, *aux)`` of them. ``aux_weight``: one weight for
    every auxiliary head, or one per head. Returns ``(loss, main_logits)``.
    """
    main, aux = main_and_aux(out)
    weights = [float(aux_weight)] * len(aux) if isinstance(aux_weight, (int, float)) else list(aux_weight)
    if len(weights) != len(aux):
        raise ValueError(f"the model returned {len(aux)} auxiliary outputs but {len(weights)} aux weights were "
                         "given; set TrainConfig.aux_weight to one number for all heads")
    loss = F.cross_entropy(main.float(), y, label_smoothing=label_smoothing)
    for w, a in zip(weights, aux):
        loss = loss + w * F.cross_entropy(a.float(), y, label_smoothing=label_smoothing)
    return loss, main


def aux_weights(model: nn.Module, aux_weight: float | None) -> float | tuple[float, ...]:
    """The auxiliary-loss weights to use: ``aux_weight`` if given, else ``model.aux_weights``, else 0.3."""
    if aux_weight is not None:
        return float(aux_weight)
    own = getattr(model, "aux_weights", None)
    return tuple(float(w) for w in own) if own is not None else 0.3


# ----------------------------------------------------------------------------- training


def train_one_epoch(model: nn.Module, source: BatchSource, prep: Preprocess, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, config: TrainConfig, *, epoch: int,
                    device: torch.device, amp: torch.dtype | None, generator: torch.Generator,
                    aux_weight: float | Sequence[float], on_step: Callable[[], None] | None = None) -> dict:
    """One pass over ``source`` in training mode: augment (``config.augment``, ``crop_padding``,
    ``flip``, drawn from ``generator``), forward under autocast to ``amp``, :func:`training_loss`,
    backward, optimiser step, scheduler step (per step). ``on_step`` is called after every step.

    Returns ``dict(loss, top1, images, seconds)``: the mean training loss and top-1 over the
    epoch's images (augmented, training mode) and the training wall time in seconds.
    Raises :class:`DivergedError` when the loss stops being finite.
    """
    model.train()
    check_every = 1 if device.type == "cpu" else CUDA_CHECK_EVERY
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    sync(device)
    t0 = time.perf_counter()
    for step, (x, y) in enumerate(source):
        x = prep(x, augment=config.augment, padding=config.crop_padding, flip=config.flip, generator=generator)
        with autocast(device, amp):
            out = model(x)
        loss, main = training_loss(out, y, label_smoothing=config.label_smoothing, aux_weight=aux_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        seen += len(y)
        loss_sum += loss.detach().double() * len(y)
        correct += (main.detach().argmax(1) == y).sum()
        if (step + 1) % check_every == 0 and not torch.isfinite(loss_sum):
            _diverged(epoch, step, config.lr)
        if on_step is not None:
            on_step()
    sync(device)
    seconds = time.perf_counter() - t0
    if not torch.isfinite(loss_sum):
        _diverged(epoch, len(source) - 1, config.lr)
    return {"loss": float(loss_sum) / seen, "top1": int(correct) / seen, "images": seen, "seconds": seconds}


def _diverged(epoch: int, step: int, lr: float) -> None:
    raise DivergedError(
        f"the training loss became NaN or infinite in epoch {epoch} (by step {step + 1}) at peak lr "
        f"{lr:g}: lower the learning rate (e.g. lr={lr / 10:g}), add warm-up or use "
        "precision='fp32'; the checkpoint, if any, holds the last finite epoch")


# ----------------------------------------------------------------------------- evaluation


def count_outputs(model: nn.Module, x: torch.Tensor, device: torch.device, amp: torch.dtype | None) -> int:
    """Run the model on a few prepared images ``x`` in eval mode; return its number of outputs."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast(device, amp):
            out = model(x)
    except RuntimeError as e:
        raise ValueError(
            f"the model cannot run on batches of shape {tuple(x.shape)} (N, C, H, W): {e}. Check the "
            "model's in_channels against the data's channels and its smallest input size (input_size= "
            "resizes the batches)") from e
    finally:
        model.train(was_training)
    main, _ = main_and_aux(out)
    if main.ndim != 2:
        raise ValueError(f"the model must return logits of shape (N, num_classes), got {tuple(main.shape)}")
    return main.shape[1]


def evaluate_pass(model: nn.Module, source: BatchSource, prep: Preprocess, device: torch.device,
                  amp: torch.dtype | None, *, keep_logits: bool) -> dict:
    """One pass over ``source`` in eval mode, without augmentation; the model's mode is put back.

    Returns ``dict(n, seconds, ms_per_image)``, with ``loss`` (mean plain cross-entropy), ``top1``,
    ``top5`` (top-k, ``k = min(5, num_classes)``) and ``k`` when every batch is labelled, and
    ``logits`` (float32 CPU ``(N, num_classes)``) when ``keep_logits``.
    """
    was_training = model.training
    model.eval()
    k = None
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.long, device=device)
    topk = torch.zeros((), dtype=torch.long, device=device)
    logits, n, labelled = [], 0, True
    sync(device)
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            for x, y in source:
                with autocast(device, amp):
                    out = model(prep(x))
                main = main_and_aux(out)[0].float()
                if keep_logits:
                    logits.append(main.cpu())
                n += len(main)
                if y is None:
                    labelled = False
                    continue
                k = min(5, main.shape[1])
                loss_sum += F.cross_entropy(main, y, reduction="sum").double()
                hit = main.topk(k, dim=1).indices == y.view(-1, 1)
                top1 += hit[:, 0].sum()
                topk += hit.any(1).sum()
        sync(device)
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - t0
    result = {"n": n, "seconds": seconds, "ms_per_image": 1e3 * seconds / max(n, 1)}
    if labelled and n:
        result.update(loss=float(loss_sum) / n, top1=int(top1) / n, top5=int(topk) / n, k=k)
    if keep_logits:
        result["logits"] = torch.cat(logits) if logits else torch.empty(0, 0)
    return result
