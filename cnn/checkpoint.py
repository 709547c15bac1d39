"""Checkpoints of the trainer: what a run needs to continue exactly, saved and restored in one place.

A checkpoint is a ``dict`` of tensors and plain Python values::

    model        state dict of the model (CPU tensors)
    optimizer    optimizer state dict          scheduler   LambdaLR state dict
    epoch        epochs completed (int)        history     History.to_dict()
    best_state   CPU state dict of the best validation epoch, or None
    config       the TrainConfig as a dict (settings checked on resumption: RESUME_KEYS)
    rng          {"torch": global CPU generator state, "cuda": the CUDA generators' states ([] on CPU),
                  "order": data-order generator, "aug": augmentation generator,
                  "aug_device": the device the augmentation generator lives on}

With every generator state in the file, a run resumed on the CPU continues bit for bit as if never
interrupted. Files are written by :func:`atomic_write` (a temporary file in the same folder,
flushed, synced, then ``os.replace``: a crash never leaves a half-written checkpoint) and read with
``torch.load(weights_only=True)`` (no unpickling of arbitrary objects); an empty, damaged or foreign
file raises :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .train import History, TrainConfig

__all__ = ["CheckpointError", "RandomStreams", "TrainingState", "atomic_write", "read_checkpoint"]

#: Settings that must not change between a checkpoint and its resumption (and "epochs" for the
#: schedules whose shape depends on the run's length).
RESUME_KEYS = ("batch_size", "optimizer", "schedule", "lr", "seed", "drop_last")
#: Entries every checkpoint holds.
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "history", "best_state", "config", "rng")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back: empty, damaged, or not written by the trainer."""


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, flush and fsync it, then move it over
    ``path`` with ``os.replace``; on any error the temporary file is removed and ``path`` is left
    as it was. Missing folders are created."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def cpu_state(model: nn.Module) -> dict:
    """A copy of the model's state dict on the CPU."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- random streams


@dataclass
class RandomStreams:
    """The generators of a run: the global torch generator (dropout), ``order`` (CPU; the
    per-epoch data order) and ``augment`` (on the training device; crops and flips)."""

    order: torch.Generator
    augment: torch.Generator
    device: torch.device

    @classmethod
    def seeded(cls, seed: int, device: torch.device) -> RandomStreams:
        """Seed the global generator with ``seed``, ``order`` with ``seed``, ``augment`` with ``seed + 1``."""
        torch.manual_seed(seed)
        order = torch.Generator()
        order.manual_seed(seed)
        augment = torch.Generator(device=device)
        augment.manual_seed(seed + 1)
        return cls(order, augment, device)

    def state_dict(self) -> dict:
        cuda = self.device.type == "cuda"
        return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if cuda else [],
                "order": self.order.get_state(), "aug": self.augment.get_state(), "aug_device": str(self.device)}

    def load_state_dict(self, rng: dict) -> None:
        """Put back every state of :meth:`state_dict`; the CUDA and augmentation states only on the
        device they were saved from (elsewhere those streams stay freshly seeded)."""
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.order.set_state(rng["order"])
        if rng.get("aug_device") == str(self.device):
            self.augment.set_state(rng["aug"])


# ----------------------------------------------------------------------------- reading


def read_checkpoint(path: str, config: TrainConfig) -> dict:
    """The checkpoint at ``path``, on the CPU, after checking that ``config`` may continue it.

    Raises :class:`CheckpointError` naming the file when it is empty, damaged or lacks an entry,
    and ``ValueError`` when a setting of ``RESUME_KEYS`` differs.
    """
    advice = "delete it to start afresh, or point checkpoint= at another file"
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): {advice}")
    with open(path, "rb") as f:  # a missing or unreadable file raises OSError here, as it is
        try:
            checkpoint = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated or foreign archive, objects outside the weights-only allow-list
            raise CheckpointError(f"checkpoint {path} is damaged or not a trainer checkpoint "
                                  f"({_load_failure(e)}): {advice}") from e
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a trainer checkpoint: it lacks "
                              f"{', '.join(missing)}; {advice}")
    _check_resumable(checkpoint["config"], config, path)
    return checkpoint


def _load_failure(error: Exception) -> str:
    """One line on why ``torch.load`` failed (its unpickling errors run to a paragraph)."""
    if isinstance(error, pickle.UnpicklingError):
        return "its content does not read back as tensors and plain Python values"
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def _check_resumable(saved: dict, config: TrainConfig, path: str) -> None:
    keys = list(RESUME_KEYS)
    if config.schedule in ("onecycle", "cosine"):
        keys.append("epochs")
    for key in keys:
        if key in saved and saved[key] != getattr(config, key):
            raise ValueError(
                f"cannot resume from {path}: it was trained with {key}={saved[key]!r}, this run has "
                f"{key}={getattr(config, key)!r}; use the same value or a new checkpoint path")


# ----------------------------------------------------------------------------- the state of a run


@dataclass
class TrainingState:
    """Everything of a run that a checkpoint holds: saved by :meth:`save`, put back by :meth:`restore`."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    history: History
    random: RandomStreams
    epoch: int = 0  # epochs completed
    best_state: dict | None = None  # CPU weights of the best validation epoch

    def keep_best(self) -> None:
        """Remember the model's current weights (on the CPU) as the best ones."""
        self.best_state = cpu_state(self.model)

    def save(self, path: str, config: TrainConfig) -> None:
        """Write the checkpoint (layout in the module docstring) atomically to ``path``."""
        checkpoint = {
            "model": cpu_state(self.model), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "history": self.history.to_dict(),
            "best_state": self.best_state, "config": dataclasses.asdict(config),
            "rng": self.random.state_dict(),
        }
        atomic_write(path, lambda f: torch.save(checkpoint, f))

    def restore(self, checkpoint: dict) -> None:
        """Continue from ``checkpoint`` (from :func:`read_checkpoint`): weights, optimizer and
        scheduler states, epochs done, the history so far, the best weights and every generator."""
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        saved = checkpoint["history"]
        for key in ("epochs", "best_epoch", "best_val_top1", "train_seconds", "stopped_early"):
            setattr(self.history, key, saved[key])
        self.best_state = checkpoint["best_state"]
        self.epoch = int(checkpoint["epoch"])
        self.random.load_state_dict(checkpoint["rng"])
