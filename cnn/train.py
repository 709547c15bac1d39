"""The trainer of the ``cnn`` package: one loop for every model of the registry, CPU or GPU.

    from cnn.train import TrainConfig, train, evaluate, predict
    history = train(model, (x_train, y_train), (x_val, y_val), TrainConfig(epochs=10, flip=False))
    metrics = evaluate(model, (x_test, y_test), mean=history.mean, std=history.std)

A library: it takes duck-typed data and knows no data-set names (those live in ``experiments``).

Data
----
``train_data``, ``val_data`` and ``data`` are any of

a. a tuple ``(images, labels)`` of numpy arrays or tensors: images ``uint8`` ``(N, H, W)`` (grey)
   or ``(N, H, W, C)`` (channels last, the layout of ``experiments.datasets``), or floating point
   ``(N, C, H, W)``; labels integers in ``0 .. num_classes - 1``;
b. any object with ``.images`` and ``.labels`` (the project's ``ImageSet``), read as (a);
c. a map-style data set (``torch.utils.data.Dataset`` or any object with ``__len__`` and
   ``__getitem__``, e.g. ``experiments.datasets.ImageFolder``) whose items are
   ``(image, label)``: a tensor ``(C, H, W)`` (float or uint8), or a numpy array ``(H, W)`` /
   ``(H, W, C)`` (uint8, channels last) or ``(C, H, W)`` (float). It is read through a
   ``DataLoader`` (``num_workers``, pinned memory on CUDA, persistent workers); all items must
   share one size.

(a) and (b) become an :class:`ArrayData`: the whole set as one ``uint8`` (or ``float32``) tensor
``N x C x H x W``, on the GPU when it fits (``data_on_device``). A batch is then a slice of a
per-epoch permutation drawn from a seeded ``torch.Generator`` and gathered by one indexing
operation: no per-image Python, no host copies on the GPU-resident path.

Per-batch pipeline (the same code for every input kind, run on the training device)
-----------------------------------------------------------------------------------
1. augmentation (training only, ``augment=True``), on the stored values (``uint8``: padding is
   black, as torchvision's ``RandomCrop(padding=p)``):
   random crop of a zero-padded image, offsets ``dy, dx ~ U{0 .. 2p}``, and horizontal flip with
   probability 1/2, both in one gather::

       out[b, c, i, j] = pad(x)[b, c, dy_b + i, dx_b + (W - 1 - j if flip_b else j)]

2. ``x = x * scale_c + shift_c`` with ``scale_c = 1 / (s * std_c)``, ``shift_c = -mean_c / std_c``,
   ``s = 255`` for ``uint8`` storage and 1 for float storage: the usual ``(x / 255 - mean) / std``;
   ``mean`` and ``std`` are in units of ``x / 255`` (``uint8``) or of the stored floats;
3. bilinear resize (``antialias=False``) to ``input_size`` when it is set;
4. channels-last memory format when ``channels_last``.

Loss and optimisation
---------------------
* ``loss = CE_ls(main, y) + sum_k w_k CE_ls(aux_k, y)`` where a model returns a tuple
  ``(main, *aux)`` in training mode; ``w_k`` is ``aux_weight`` when it is set, else the model's
  own ``aux_weights`` (GoogLeNet's two heads 0.3 each, Inception v3's one head 0.4), else 0.3; and
  ``CE_ls`` is ``F.cross_entropy(..., label_smoothing=eps)``: the target is
  ``(1 - eps) * onehot(y) + eps / K``. Reported ``train_loss`` is this full objective; validation
  loss is the plain cross-entropy of the main logits (no smoothing, no auxiliary heads).
* SGD (momentum, Nesterov) or AdamW over two parameter groups: weight decay on parameters with
  ``ndim >= 2`` (conv and linear weights), none on biases and normalisation weights (``ndim <= 1``).
* Learning rate updated every step, ``lr(s) = lr * f(s)`` for steps ``s = 0 .. T - 1``,
  ``T = epochs * steps_per_epoch``, warm-up ``W = round(warmup_epochs * steps_per_epoch)``:

  - ``constant``: ``f = 1`` (after warm-up);
  - ``step``: ``f = gamma ** floor(s / (step_size * steps_per_epoch))`` (after warm-up);
  - ``cosine``: ``f = (s + 1) / W`` for ``s < W``, then ``(1 + cos(pi (s - W) / (T - W))) / 2``
    (``f(T) = 0``: the value one step after the end);
  - ``onecycle``: the formula of ``torch.optim.lr_scheduler.OneCycleLR`` (cosine annealing,
    two phases): from ``1 / div_factor`` up to 1 at step ``pct_start * T - 1``, then down to
    ``1 / (div_factor * final_div_factor)`` at step ``T - 1``; the momentum is not cycled.

* bf16 autocast on CUDA by default (``precision="bf16"`` also on CPU); the loss is computed in
  float32. A non-finite training loss raises :class:`DivergedError` naming the epoch (checked
  every step on CPU, every ``16`` steps and at the end of each epoch on CUDA to avoid a host sync
  per step).
* The last partial batch of an epoch is kept (``drop_last=False``), except a final batch of a
  single image, which would break BatchNorm in training mode and is skipped.

Reproducibility
---------------
``seed`` seeds the global torch generator (dropout), the data-order generator and the
augmentation generator. On CPU two runs with the same seed, data and thread count give identical
parameters (``deterministic=True`` also turns on ``torch.use_deterministic_algorithms`` for the
duration of the call), and a run resumed from its checkpoint continues exactly as if never
interrupted: the checkpoint holds the model, optimizer, scheduler, epoch, history, best weights
and every generator state. On CUDA runs are seeded, but cuDNN autotuning (on while training on
CUDA) and atomic adds make them differ in the last bits.

Checkpoints are written to ``checkpoint + '.tmp-*'`` and moved over ``checkpoint`` with
``os.replace``, so a crash never leaves a half-written file; they contain only tensors and plain
Python values and are read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TrainConfig",
    "History",
    "ArrayData",
    "DivergedError",
    "train",
    "evaluate",
    "predict",
    "training_loss",
    "aux_weights",
    "parameter_groups",
    "build_optimizer",
    "lr_factor",
    "build_scheduler",
    "crop_flip",
    "random_crop_flip",
]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16")
#: Steps between divergence checks on CUDA (each check is a host-device sync); every step on CPU.
CUDA_CHECK_EVERY = 16
#: Items sampled from a map-style data set to estimate mean and std when they are not given.
STATS_SAMPLE = 2048


class DivergedError(FloatingPointError):
    """The training loss became NaN or infinite."""


# ----------------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """Every setting of :func:`train`. Units in the comments; validated on construction."""

    epochs: int = 10
    batch_size: int = 128  # images per step
    optimizer: str = "sgd"  # "sgd" (momentum, nesterov) | "adamw"
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9  # SGD momentum (AdamW: beta1)
    nesterov: bool = True
    weight_decay: float = 5e-4  # not applied to norm weights and biases (1-D params)
    schedule: str = "onecycle"  # "constant" | "step" | "cosine" | "onecycle"
    warmup_epochs: float = 0.0  # linear warm-up for "constant"/"cosine"/"step" (fractional epochs ok)
    pct_start: float = 0.25  # onecycle: fraction of steps rising to the peak
    div_factor: float = 25.0  # onecycle: initial lr = lr / div_factor
    final_div_factor: float = 1e4  # onecycle: final lr = initial lr / final_div_factor
    step_size: int = 30  # "step" schedule: epochs between drops
    gamma: float = 0.1  # "step" schedule: factor of each drop
    label_smoothing: float = 0.0  # epsilon of F.cross_entropy
    aux_weight: float | None = None  # weight of each auxiliary loss; None: the model's aux_weights, else 0.3
    augment: bool = True  # padded random crop + horizontal flip
    crop_padding: int = 2  # pixels of padding for the random crop (0: no crop)
    flip: bool = True  # horizontal flip (set False for digits etc.)
    input_size: int | None = None  # resize batches to this square size (px); None: as stored
    drop_last: bool = False  # drop the last partial batch of each epoch
    device: str = "auto"  # "auto" (cuda if available) | "cpu" | "cuda" | "cuda:1"
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 on CPU) | "fp32" | "bf16"
    channels_last: bool | None = None  # None: on for CUDA, off for CPU
    compile: bool = False  # torch.compile the model
    data_on_device: bool | None = None  # None: array data on the GPU when it fits in 1/4 of free memory
    num_workers: int = 0  # DataLoader workers for map-style data sets
    seed: int = 0
    deterministic: bool = True  # torch.use_deterministic_algorithms during training on CPU
    early_stopping: int | None = None  # patience (epochs) on validation top-1; None: off
    restore_best: bool = True  # end with the weights of the best validation epoch (needs val data)
    checkpoint: str | None = None  # path, written atomically after every epoch
    resume: bool = False  # continue from `checkpoint` if it exists
    stop_after: int | None = None  # end this call after this many epochs (a time-limited job); resume later
    log: str | None = None  # JSON-lines file, one line per epoch (appended)
    progress: bool | None = None  # tqdm bar; None: only when stderr is a terminal
    eval_batch_size: int = 512  # images per evaluation step
    threads: int | None = None  # torch.set_num_threads during the call on CPU; None: leave as is

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad value and how to fix it."""

        def bad(name: str, value, need: str) -> ValueError:
            return ValueError(f"TrainConfig.{name}={value!r} is invalid: {need}")

        def integer(name: str, low: int, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise bad(name, value, f"it must be an integer >= {low}" + (" or None" if allow_none else ""))

        def number(name: str, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
            value = getattr(self, name)
            ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)
            ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
            if not ok:
                lo, hi = "(" if low_open else "[", ")" if high_open else "]"
                raise bad(name, value, f"it must be a number in {lo}{low}, {high}{hi}")

        integer("epochs", 1)
        integer("batch_size", 1)
        integer("eval_batch_size", 1)
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", self.optimizer, f"choose one of {', '.join(map(repr, OPTIMIZERS))}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", self.schedule, f"choose one of {', '.join(map(repr, SCHEDULES))}")
        if self.precision not in PRECISIONS:
            raise bad("precision", self.precision, f"choose one of {', '.join(map(repr, PRECISIONS))}")
        number("lr", 0.0, math.inf, low_open=True, high_open=True)
        number("momentum", 0.0, 1.0, high_open=True)
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise bad("nesterov", True, "Nesterov momentum needs momentum > 0; set nesterov=False or momentum=0.9")
        number("weight_decay", 0.0, math.inf, high_open=True)
        number("warmup_epochs", 0.0, math.inf, high_open=True)
        if self.schedule in ("cosine", "step", "constant") and self.warmup_epochs >= self.epochs:
            raise bad("warmup_epochs", self.warmup_epochs, f"the warm-up must be shorter than epochs={self.epochs}")
        number("pct_start", 0.0, 1.0, low_open=True, high_open=True)
        number("div_factor", 1.0, math.inf, high_open=True)
        number("final_div_factor", 1.0, math.inf, high_open=True)
        integer("step_size", 1)
        number("gamma", 0.0, 1.0, low_open=True)
        number("label_smoothing", 0.0, 1.0, high_open=True)
        if self.aux_weight is not None:
            number("aux_weight", 0.0, math.inf, high_open=True)
        integer("crop_padding", 0)
        integer("input_size", 1, allow_none=True)
        integer("num_workers", 0)
        integer("early_stopping", 1, allow_none=True)
        integer("stop_after", 1, allow_none=True)
        integer("threads", 1, allow_none=True)
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        ):
            raise bad("device", self.device, "use 'auto', 'cpu', 'cuda' or 'cuda:N'")
        if self.resume and not self.checkpoint:
            raise bad("resume", True, "resume=True needs checkpoint='path/to/file.pt'")
        if self.stop_after is not None and not self.checkpoint:
            raise bad("stop_after", self.stop_after, "stop_after needs checkpoint= so the run can be resumed")


# ----------------------------------------------------------------------------- history


@dataclass
class History:
    """What :func:`train` did.

    ``epochs``: one dict per epoch with ``epoch`` (1-based), ``lr`` (of the epoch's last step),
    ``train_loss``, ``train_top1`` (on the augmented batches, in training mode), ``val_loss``,
    ``val_top1``, ``val_top5`` (None without val data; top-k with k = min(5, num_classes)),
    ``epoch_seconds`` (wall time of the epoch, evaluation and checkpoint included),
    ``train_seconds`` (cumulative training time, evaluation excluded), ``images_per_second``
    (training). ``best_epoch`` and ``best_val_top1`` refer to the validation top-1 (None without
    val data); ``mean`` and ``std`` are the normalisation used, to pass to :func:`evaluate`.
    """

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_top1: float | None = None
    train_seconds: float = 0.0
    stopped_early: bool = False
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    num_classes: int | None = None
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> History:
        d = dict(d)
        d["mean"], d["std"] = tuple(d.get("mean", ())), tuple(d.get("std", ()))
        return cls(**d)

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)


# ----------------------------------------------------------------------------- data


def _as_tensor(a, name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach()
    try:
        return torch.from_numpy(np.ascontiguousarray(np.asarray(a)))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a numpy array or a tensor, got {type(a).__name__} ({e})") from e


class ArrayData:
    """An in-memory image set as one tensor ``images`` ``(N, C, H, W)`` (``uint8`` or ``float32``)
    and ``labels`` ``(N,)`` int64 (or None, for prediction).

    Accepts ``ArrayData(images, labels)`` with images ``uint8`` ``(N, H, W)`` / ``(N, H, W, C)``
    (channels last) or floating point ``(N, C, H, W)`` / ``(N, H, W)``, as numpy arrays or
    tensors; :meth:`from_any` also takes a tuple ``(images, labels)`` or an object with
    ``.images`` and ``.labels``. ``uint8`` pixels are read as ``x / 255`` by the trainer
    (:attr:`scale`), float pixels as they are.
    """

    def __init__(self, images, labels=None) -> None:
        x = _as_tensor(images, "images")
        if x.dtype == torch.uint8:
            if x.ndim == 3:
                x = x.unsqueeze(1)
            elif x.ndim == 4:
                if x.shape[-1] > 4 and x.shape[1] <= 4:
                    raise ValueError(
                        f"uint8 images must be channels-last (N, H, W, C); shape {tuple(x.shape)} looks "
                        "channels-first: pass images.transpose(0, 2, 3, 1) (numpy) or "
                        "images.permute(0, 2, 3, 1) (torch), or float images (N, C, H, W)")
                x = x.permute(0, 3, 1, 2)
            else:
                raise ValueError(f"uint8 images must be (N, H, W) or (N, H, W, C), got shape {tuple(x.shape)}")
        elif x.is_floating_point():
            if x.ndim == 3:
                x = x.unsqueeze(1)
            elif x.ndim != 4:
                raise ValueError(f"float images must be (N, C, H, W) or (N, H, W), got shape {tuple(x.shape)}")
            x = x.float()
        else:
            raise ValueError(
                f"images must be uint8 (0..255) or floating point, got {x.dtype}; "
                "convert with .astype(np.uint8) or .astype(np.float32)")
        if len(x) == 0:
            raise ValueError("the data set is empty (0 images)")
        self.images = x.contiguous()
        if labels is None:
            self.labels = None
        else:
            y = _as_tensor(labels, "labels")
            if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
                raise ValueError(f"labels must be integers, got {y.dtype}")
            y = y.reshape(-1).long()
            if len(y) != len(x):
                raise ValueError(
                    f"images and labels differ in length: {len(x)} images, {len(y)} labels; "
                    "pass one label per image")
            self.labels = y.contiguous()

    @classmethod
    def from_any(cls, data) -> ArrayData:
        """``ArrayData`` from an ``ArrayData``, a tuple ``(images, labels)`` or an object with
        ``.images`` and ``.labels``; a lone array or tensor gives unlabeled data."""
        if isinstance(data, ArrayData):
            return data
        if isinstance(data, (tuple, list)) and len(data) == 2:
            return cls(data[0], data[1])
        if hasattr(data, "images") and hasattr(data, "labels"):
            return cls(data.images, data.labels)
        if isinstance(data, (np.ndarray, torch.Tensor)):
            return cls(data, None)
        raise ValueError(
            f"cannot read data of type {type(data).__name__}: pass (images, labels), an object with "
            ".images and .labels, or a map-style data set of (image, label) items")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[2:])

    @property
    def is_uint8(self) -> bool:
        return self.images.dtype == torch.uint8

    @property
    def scale(self) -> float:
        """Factor from stored values to the units of mean/std: 1/255 for uint8, else 1."""
        return 1 / 255 if self.is_uint8 else 1.0

    @property
    def nbytes(self) -> int:
        return self.images.numel() * self.images.element_size() + (0 if self.labels is None else 8 * len(self))

    def mean_std(self, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and standard deviation over every pixel (float64 accumulation), in the
        units of ``x * scale``. A constant channel gets std 1."""
        total = torch.zeros(self.channels, dtype=torch.float64)
        squares = torch.zeros(self.channels, dtype=torch.float64)
        for i in range(0, len(self), chunk):
            x = self.images[i:i + chunk].to("cpu", torch.float64) * self.scale
            total += x.sum((0, 2, 3))
            squares += x.square().sum((0, 2, 3))
        n = len(self) * self.image_size[0] * self.image_size[1]
        mean = total / n
        std = (squares / n - mean.square()).clamp_min(0).sqrt()
        std = torch.where(std > 1e-12, std, torch.ones_like(std))
        return tuple(mean.tolist()), tuple(std.tolist())

    def to(self, device) -> ArrayData:
        out = ArrayData.__new__(ArrayData)
        out.images = self.images.to(device)
        out.labels = None if self.labels is None else self.labels.to(device)
        return out


def _is_map_dataset(data) -> bool:
    if isinstance(data, (tuple, list, np.ndarray, torch.Tensor, ArrayData)):
        return False
    if hasattr(data, "images") and hasattr(data, "labels"):
        return False
    return isinstance(data, torch.utils.data.Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__"))


def _item_to_chw(img) -> torch.Tensor:
    """One image of a map-style data set as a (C, H, W) tensor (see the module docstring)."""
    if isinstance(img, torch.Tensor):
        t = img.detach()
        if t.ndim == 2:
            t = t.unsqueeze(0)
        return t
    a = np.asarray(img)  # numpy arrays and PIL images
    t = torch.from_numpy(np.ascontiguousarray(a))
    if t.ndim == 2:
        return t.unsqueeze(0)
    if t.ndim == 3 and t.dtype == torch.uint8:
        return t.permute(2, 0, 1)
    return t


def _collate(items):
    images, labels = [], []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ValueError("a map-style data set must yield (image, label) pairs")
        images.append(_item_to_chw(item[0]))
        labels.append(int(item[1]))
    shapes = {tuple(t.shape) for t in images}
    if len(shapes) > 1:
        raise ValueError(f"the images of a batch differ in shape {sorted(shapes)}; resize them in the data set")
    x = torch.stack(images)
    if not (x.dtype == torch.uint8 or x.is_floating_point()):
        raise ValueError(f"data set images must be uint8 or floating point, got {x.dtype}")
    if x.is_floating_point():
        x = x.float()
    return x, torch.tensor(labels, dtype=torch.long)


class _Source:
    """Batches of (stored images, labels) on ``device`` from an ArrayData or a map-style data set."""

    def __init__(self, data, *, device: torch.device, batch_size: int, shuffle: bool, drop_last: bool,
                 on_device: bool | None, num_workers: int, generator: torch.Generator | None,
                 name: str, need_labels: bool) -> None:
        self.device, self.batch_size, self.shuffle, self.drop_last = device, batch_size, shuffle, drop_last
        self.generator = generator
        self.name = name
        self.num_classes: int | None = None  # set once known: streamed labels are checked against it
        if _is_map_dataset(data):
            self.arrays = None
            self.dataset = data
            self.n = len(data)
            if self.n == 0:
                raise ValueError(f"{name} is empty (0 items)")
            first, _ = _collate([data[0]])
            self.sample, self.is_uint8 = first, first.dtype == torch.uint8
            self.scale = 1 / 255 if self.is_uint8 else 1.0
            sampler = torch.utils.data.RandomSampler(data, generator=generator) if shuffle else None
            loader_gen = torch.Generator()
            loader_gen.manual_seed(int(torch.randint(0, 2**62, (), generator=generator)) if generator else 0)
            self.loader = torch.utils.data.DataLoader(
                data, batch_size=batch_size, sampler=sampler, shuffle=False, drop_last=drop_last,
                num_workers=num_workers, collate_fn=_collate, pin_memory=device.type == "cuda",
                persistent_workers=num_workers > 0, generator=loader_gen)
        else:
            arrays = ArrayData.from_any(data)
            if need_labels and arrays.labels is None:
                raise ValueError(f"{name} has no labels: pass (images, labels)")
            self.dataset = None
            self.n = len(arrays)
            self.is_uint8, self.scale = arrays.is_uint8, arrays.scale
            self.sample = arrays.images[:2]
            self.host = arrays
            if device.type != "cpu":
                if on_device is None:
                    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 0
                    on_device = arrays.nbytes < free / 4
                if on_device:
                    arrays = arrays.to(device)
            self.arrays = arrays
        self.steps = self.n // batch_size if drop_last else math.ceil(self.n / batch_size)
        if not drop_last and self.n % batch_size == 1 and self.n > batch_size and shuffle:
            self.steps -= 1  # a final batch of one image breaks BatchNorm in training mode: skip it
        if self.steps == 0:
            raise ValueError(f"{name} has {self.n} images, fewer than batch_size={batch_size} with drop_last=True")

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self.arrays is not None:
            return self.host.mean_std()
        n = min(self.n, STATS_SAMPLE)
        g = torch.Generator()
        g.manual_seed(0)
        idx = torch.randperm(self.n, generator=g)[:n].tolist()
        x, _ = _collate([self.dataset[i] for i in idx])
        return ArrayData(x.float() * self.scale if self.is_uint8 else x).mean_std()

    def labels_max_min(self) -> tuple[int, int] | None:
        if self.arrays is None or self.arrays.labels is None:
            return None
        y = self.host.labels
        return int(y.max()), int(y.min())

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        cuda = self.device.type == "cuda"
        if self.arrays is None:
            for i, (x, y) in enumerate(self.loader):
                if i >= self.steps:
                    break
                if self.num_classes is not None:  # labels of a streamed data set, checked on the host
                    _check_batch_labels(y, self.num_classes, self.name)
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            return
        images, labels = self.arrays.images, self.arrays.labels
        if self.shuffle:
            order = torch.randperm(self.n, generator=self.generator).to(images.device)
        else:
            order = None
        for i in range(self.steps):
            lo, hi = i * self.batch_size, min((i + 1) * self.batch_size, self.n)
            if order is None:
                x = images[lo:hi]
                y = None if labels is None else labels[lo:hi]
            else:
                idx = order[lo:hi]
                x = images[idx]
                y = None if labels is None else labels[idx]
            if x.device != self.device:
                if cuda:
                    x = x.pin_memory()
                    y = None if y is None else y.pin_memory()
                x = x.to(self.device, non_blocking=True)
                y = None if y is None else y.to(self.device, non_blocking=True)
            yield x, y


# ----------------------------------------------------------------------------- augmentation


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop every image of ``x`` (B, C, H, W) from its zero-padded version at offsets
    ``(dy_b, dx_b)`` in ``0 .. 2 * padding`` and mirror it where ``flip_b``: one gather.

    ``out[b, c, i, j] = pad(x)[b, c, dy_b + i, dx_b + (W - 1 - j if flip_b else j)]``.
    Returns a contiguous (B, C, H, W) tensor of ``x``'s dtype.
    """
    b, c, h, w = x.shape
    p = padding
    if p > 0:
        x = F.pad(x, (p, p, p, p))
    hp, wp = h + 2 * p, w + 2 * p
    i = torch.arange(h, device=x.device)
    j = torch.arange(w, device=x.device)
    rows = dy.view(b, 1) + i  # (B, H)
    cols = torch.where(flip.view(b, 1), (w - 1) - j, j) + dx.view(b, 1)  # (B, W)
    index = (rows.unsqueeze(2) * wp + cols.unsqueeze(1)).view(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(x.reshape(b, c, hp * wp), 2, index).view(b, c, h, w)


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop of the zero-padded images and random horizontal flip (probability 1/2).

    Draws ``dy``, ``dx`` uniform in ``0 .. 2 * padding`` and the flips from ``generator`` (which
    must live on ``x``'s device), in this order, then calls :func:`crop_flip`.
    """
    b = x.shape[0]
    dev = x.device
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    if flip:
        flips = torch.rand(b, generator=generator, device=dev) < 0.5
    else:
        flips = torch.zeros(b, dtype=torch.bool, device=dev)
    return crop_flip(x, dy, dx, flips, padding)


class _Preprocess:
    """Stored batch -> model input (augment, normalise, resize, memory format)."""

    def __init__(self, *, mean, std, channels: int, scale: float, device: torch.device,
                 input_size: int | None, channels_last: bool) -> None:
        mean = _per_channel(mean, channels, "mean")
        std = _per_channel(std, channels, "std")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {std}")
        m = torch.tensor(mean, dtype=torch.float32)
        s = torch.tensor(std, dtype=torch.float32)
        self.scale = (scale / s).view(1, -1, 1, 1).to(device)
        self.shift = (-m / s).view(1, -1, 1, 1).to(device)
        self.input_size, self.channels_last = input_size, channels_last

    def __call__(self, x: torch.Tensor, *, augment: bool = False, padding: int = 0, flip: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        if augment and (padding > 0 or flip):
            x = random_crop_flip(x, padding, flip, generator)
        x = torch.addcmul(self.shift, x.float(), self.scale)
        if self.input_size is not None and tuple(x.shape[2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=False)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def _per_channel(v, channels: int, name: str) -> tuple[float, ...]:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().reshape(-1).tolist()
    elif isinstance(v, (int, float, np.number)):
        v = [float(v)]
    v = [float(a) for a in v]
    if len(v) == 1:
        v = v * channels
    if len(v) != channels:
        raise ValueError(f"{name} has {len(v)} values but the images have {channels} channels")
    return tuple(v)


# ----------------------------------------------------------------------------- loss, optimiser, schedule


def _main_and_aux(out) -> tuple[torch.Tensor, list[torch.Tensor]]:
    if isinstance(out, tuple):  # (logits, *aux); tuple subclasses and namedtuples too
        return out[0], [a for a in out[1:] if a is not None]
    return out, []


def training_loss(out, y: torch.Tensor, *, label_smoothing: float = 0.0,
                  aux_weight: float | Sequence[float] = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """``CE_ls(main, y) + sum_k w_k CE_ls(aux_k, y)`` in float32.

    ``out``: logits (B, K), or a tuple ``(main, *aux)`` of them. ``aux_weight``: one weight for
    every auxiliary head, or one per head. Returns ``(loss, main_logits)``.
    """
    main, aux = _main_and_aux(out)
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


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: parameters with ``ndim >= 2`` get ``weight_decay``; biases and normalisation
    weights (``ndim <= 1``) get none. Frozen parameters are left out."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
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


# ----------------------------------------------------------------------------- devices


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} but CUDA is not available; use device='cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={name!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return dev


def _amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {', '.join(map(repr, PRECISIONS))}")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:  # a disabled autocast still validates its dtype and warns on CUDA: skip it
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Settings:
    """Process-wide torch settings changed for the duration of a call, then put back."""

    def __init__(self, *, threads: int | None, deterministic: bool | None, cudnn_benchmark: bool | None) -> None:
        self.threads, self.deterministic, self.cudnn_benchmark = threads, deterministic, cudnn_benchmark

    def __enter__(self):
        self.saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                      torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        if self.deterministic is not None:
            torch.use_deterministic_algorithms(self.deterministic, warn_only=True)
        if self.cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = self.cudnn_benchmark
        return self

    def __exit__(self, *exc):
        threads, det, warn_only, bench = self.saved
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.benchmark = bench
        return False


# ----------------------------------------------------------------------------- evaluation


def _probe(model: nn.Module, x: torch.Tensor, device: torch.device, amp) -> int:
    """Run the model on two prepared images in eval mode; return its number of outputs."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _autocast(device, amp):
            out = model(x)
    except RuntimeError as e:
        raise ValueError(
            f"the model cannot run on batches of shape {tuple(x.shape)} (N, C, H, W): {e}. Check the "
            "model's in_channels against the data's channels and its smallest input size (input_size= "
            "resizes the batches)") from e
    finally:
        model.train(was_training)
    main, _ = _main_and_aux(out)
    if main.ndim != 2:
        raise ValueError(f"the model must return logits of shape (N, num_classes), got {tuple(main.shape)}")
    return main.shape[1]


def _check_labels(source: _Source, num_classes: int, name: str) -> None:
    source.num_classes = num_classes
    mm = source.labels_max_min()
    if mm is None:
        return
    hi, lo = mm
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{name} labels span {lo}..{hi} but the model has {num_classes} outputs (labels must be in "
            f"0..{num_classes - 1}); build the model with num_classes={max(hi + 1, num_classes)} or remove "
            "unlabeled (-1) images")


def _check_batch_labels(y: torch.Tensor, num_classes: int, name: str) -> None:
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"{name} has a label {lo if lo < 0 else hi} outside 0..{num_classes - 1} "
                         f"(the model has {num_classes} outputs)")


def _run_eval(model: nn.Module, source: _Source, prep: _Preprocess, device: torch.device, amp,
              *, keep_logits: bool) -> dict:
    was_training = model.training
    model.eval()
    k = None
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.long, device=device)
    topk = torch.zeros((), dtype=torch.long, device=device)
    logits, n, labelled = [], 0, True
    _sync(device)
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            for x, y in source:
                with _autocast(device, amp):
                    out = model(prep(x))
                main = _main_and_aux(out)[0].float()
                if keep_logits:
                    logits.append(main.cpu())
                n += len(main)
                if y is None:
                    labelled = False
                    continue
                k = min(5, main.shape[1])
                loss_sum += F.cross_entropy(main, y, reduction="sum").double()
                best = main.topk(k, dim=1).indices
                hit = best == y.view(-1, 1)
                top1 += hit[:, 0].sum()
                topk += hit.any(1).sum()
        _sync(device)
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - t0
    result = {"n": n, "seconds": seconds, "ms_per_image": 1e3 * seconds / max(n, 1)}
    if labelled and n:
        result.update(loss=float(loss_sum) / n, top1=int(top1) / n, top5=int(topk) / n, k=k)
    if keep_logits:
        result["logits"] = torch.cat(logits) if logits else torch.empty(0, 0)
    return result


def _inference_setup(model, data, batch_size, device, precision, mean, std, input_size, channels_last,
                     num_workers, need_labels, name):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    dev = _device(device)
    amp = _amp_dtype(precision, dev)
    cl = dev.type == "cuda" if channels_last is None else channels_last
    source = _Source(data, device=dev, batch_size=batch_size, shuffle=False, drop_last=False, on_device=None,
                     num_workers=num_workers, generator=None, name=name, need_labels=need_labels)
    channels = source.sample.shape[1]
    if mean is None or std is None:
        warnings.warn(
            "mean/std not given: normalising by the evaluated data's own statistics; pass "
            "mean=history.mean, std=history.std to use the training data's", stacklevel=3)
        m, s = source.mean_std()
        mean = m if mean is None else mean
        std = s if std is None else std
    prep = _Preprocess(mean=mean, std=std, channels=channels, scale=source.scale, device=dev,
                       input_size=input_size, channels_last=cl)
    model.to(dev)
    if cl:
        model.to(memory_format=torch.channels_last)
    num_classes = _probe(model, prep(source.sample[:2].to(dev)), dev, amp)
    return dev, amp, source, prep, num_classes


def evaluate(model: nn.Module, data, *, batch_size: int = 512, device: str = "auto", precision: str = "auto",
             mean=None, std=None, input_size: int | None = None, channels_last: bool | None = None,
             num_workers: int = 0) -> dict:
    """Loss (plain cross-entropy), top-1 and top-5 (top-k, k = min(5, num_classes)) of ``model`` on
    labelled ``data``, in eval mode, without augmentation.

    ``mean``/``std``: the training normalisation (``history.mean``, ``history.std``); when None,
    the data's own statistics are used, with a warning. The model is moved to ``device``.
    Returns ``dict(loss, top1, top5, k, n, seconds, ms_per_image)``.
    """
    dev, amp, source, prep, num_classes = _inference_setup(
        model, data, batch_size, device, precision, mean, std, input_size, channels_last, num_workers,
        True, "data")
    _check_labels(source, num_classes, "data")
    return _run_eval(model, source, prep, dev, amp, keep_logits=False)


def predict(model: nn.Module, data, *, batch_size: int = 512, device: str = "auto", precision: str = "auto",
            mean=None, std=None, input_size: int | None = None, channels_last: bool | None = None,
            num_workers: int = 0) -> torch.Tensor:
    """Logits of ``model`` (eval mode) on ``data`` (labels optional; a lone image array works):
    a float32 CPU tensor (N, num_classes), in the data's order."""
    dev, amp, source, prep, _ = _inference_setup(
        model, data, batch_size, device, precision, mean, std, input_size, channels_last, num_workers,
        False, "data")
    return _run_eval(model, source, prep, dev, amp, keep_logits=True)["logits"]


# ----------------------------------------------------------------------------- checkpoints


def _cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _save_atomic(obj, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


#: Settings that must not change between a checkpoint and its resumption.
_RESUME_KEYS = ("batch_size", "optimizer", "schedule", "lr", "seed", "drop_last")


def _check_resumable(saved: dict, config: TrainConfig, path: str) -> None:
    keys = list(_RESUME_KEYS)
    if config.schedule in ("onecycle", "cosine"):
        keys.append("epochs")
    for key in keys:
        if key in saved and saved[key] != getattr(config, key):
            raise ValueError(
                f"cannot resume from {path}: it was trained with {key}={saved[key]!r}, this run has "
                f"{key}={getattr(config, key)!r}; use the same value or a new checkpoint path")


# ----------------------------------------------------------------------------- training


def train(model: nn.Module, train_data, val_data=None, config: TrainConfig | None = None, *,
          mean=None, std=None) -> History:
    """Train ``model`` in place on ``train_data`` (see the module docstring for data kinds) and
    return its :class:`History`. The model ends on the training device, in training mode, with the
    best validation epoch's weights when ``val_data`` is given and ``config.restore_best``.

    ``mean``/``std``: per-channel normalisation (a number or one value per channel); None:
    computed from ``train_data`` (stored in ``history.mean``/``history.std``).
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.validate()
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if val_data is None and config.early_stopping is not None:
        raise ValueError("early_stopping needs val_data (it watches the validation top-1)")
    dev = _device(config.device)
    with _Settings(threads=config.threads if dev.type == "cpu" else None,
                   deterministic=config.deterministic if dev.type == "cpu" else None,
                   cudnn_benchmark=True if dev.type == "cuda" else None):
        return _train(model, train_data, val_data, config, dev, mean, std)


def _train(model, train_data, val_data, config: TrainConfig, dev: torch.device, mean, std) -> History:
    amp = _amp_dtype(config.precision, dev)
    cl = dev.type == "cuda" if config.channels_last is None else config.channels_last

    torch.manual_seed(config.seed)
    order_gen = torch.Generator()
    order_gen.manual_seed(config.seed)
    aug_gen = torch.Generator(device=dev)
    aug_gen.manual_seed(config.seed + 1)

    source = _Source(train_data, device=dev, batch_size=config.batch_size, shuffle=True,
                     drop_last=config.drop_last, on_device=config.data_on_device,
                     num_workers=config.num_workers, generator=order_gen, name="train_data", need_labels=True)
    val = None
    if val_data is not None:
        val = _Source(val_data, device=dev, batch_size=config.eval_batch_size, shuffle=False, drop_last=False,
                      on_device=config.data_on_device, num_workers=config.num_workers, generator=None,
                      name="val_data", need_labels=True)
        if val.sample.shape[1] != source.sample.shape[1]:
            raise ValueError(f"val_data has {val.sample.shape[1]} channels, train_data "
                             f"{source.sample.shape[1]}; they must match")
        if val.is_uint8 != source.is_uint8:
            raise ValueError("train_data and val_data must both be uint8 or both be float")
        if config.input_size is None and val.sample.shape[2:] != source.sample.shape[2:]:
            raise ValueError(f"val_data images are {tuple(val.sample.shape[2:])}, train_data "
                             f"{tuple(source.sample.shape[2:])}; resize them or set input_size")

    # resume state, if any
    ckpt = None
    if config.resume and config.checkpoint and os.path.exists(config.checkpoint):
        ckpt = torch.load(config.checkpoint, map_location="cpu", weights_only=True)
        _check_resumable(ckpt["config"], config, config.checkpoint)
        if mean is None:
            mean = ckpt["history"]["mean"]
        if std is None:
            std = ckpt["history"]["std"]
    if mean is None or std is None:
        m, s = source.mean_std()
        mean = m if mean is None else mean
        std = s if std is None else std
    channels = source.sample.shape[1]
    mean, std = _per_channel(mean, channels, "mean"), _per_channel(std, channels, "std")
    prep = _Preprocess(mean=mean, std=std, channels=channels, scale=source.scale, device=dev,
                       input_size=config.input_size, channels_last=cl)

    model.to(dev)
    if cl:
        model.to(memory_format=torch.channels_last)
    num_classes = _probe(model, prep(source.sample[:2].to(dev)), dev, amp)
    _check_labels(source, num_classes, "train_data")
    if val is not None:
        _check_labels(val, num_classes, "val_data")

    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, len(source))
    history = History(mean=mean, std=std, num_classes=num_classes, config=dataclasses.asdict(config))
    best_state = None
    start_epoch = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        saved = History.from_dict(ckpt["history"])
        history.epochs, history.best_epoch = saved.epochs, saved.best_epoch
        history.best_val_top1 = saved.best_val_top1
        history.train_seconds, history.stopped_early = saved.train_seconds, saved.stopped_early
        best_state = ckpt.get("best_state")
        start_epoch = int(ckpt["epoch"])
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"])
        if dev.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])
        order_gen.set_state(rng["order"])
        if rng.get("aug_device") == str(dev):
            aug_gen.set_state(rng["aug"])
        del ckpt

    fmodel = torch.compile(model) if config.compile else model
    show = config.progress if config.progress is not None else sys.stderr.isatty()
    if show:
        from tqdm.auto import tqdm
    total_epochs = config.epochs
    end_epoch = total_epochs if config.stop_after is None else min(total_epochs, start_epoch + config.stop_after)
    check_every = 1 if dev.type == "cpu" else CUDA_CHECK_EVERY
    ls, aw = config.label_smoothing, aux_weights(model, config.aux_weight)

    epoch = start_epoch
    while epoch < end_epoch and not history.stopped_early:
        epoch += 1
        model.train()
        t_epoch = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.long, device=dev)
        seen = 0
        bar = tqdm(total=len(source), desc=f"epoch {epoch}/{total_epochs}", leave=False,
                   dynamic_ncols=True) if show else None
        _sync(dev)
        t_train = time.perf_counter()
        for step, (x, y) in enumerate(source):
            x = prep(x, augment=config.augment, padding=config.crop_padding, flip=config.flip,
                     generator=aug_gen)
            with _autocast(dev, amp):
                out = fmodel(x)
            loss, main = training_loss(out, y, label_smoothing=ls, aux_weight=aw)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            b = len(y)
            seen += b
            loss_sum += loss.detach().double() * b
            correct += (main.detach().argmax(1) == y).sum()
            if (step + 1) % check_every == 0 and not torch.isfinite(loss_sum):
                _diverged(epoch, step, config)
            if bar is not None:
                bar.update()
        _sync(dev)
        train_time = time.perf_counter() - t_train
        if not torch.isfinite(loss_sum):
            _diverged(epoch, len(source) - 1, config)
        history.train_seconds += train_time
        row = {
            "epoch": epoch,
            "lr": _last_lr(config, epoch, len(source)),
            "train_loss": float(loss_sum) / seen,
            "train_top1": int(correct) / seen,
            "val_loss": None, "val_top1": None, "val_top5": None,
        }
        if bar is not None:
            bar.close()
        if val is not None:
            metrics = _run_eval(model, val, prep, dev, amp, keep_logits=False)
            row.update(val_loss=metrics["loss"], val_top1=metrics["top1"], val_top5=metrics["top5"])
            if history.best_val_top1 is None or metrics["top1"] > history.best_val_top1:
                history.best_val_top1, history.best_epoch = metrics["top1"], epoch
                if config.restore_best:
                    best_state = _cpu_state(model)
            elif config.early_stopping is not None and epoch - history.best_epoch >= config.early_stopping:
                history.stopped_early = True
        row.update(epoch_seconds=time.perf_counter() - t_epoch, train_seconds=history.train_seconds,
                   images_per_second=seen / train_time if train_time > 0 else float("inf"))
        history.epochs.append(row)
        if config.checkpoint:
            _save_atomic({
                "model": _cpu_state(model), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history.to_dict(),
                "best_state": best_state, "config": dataclasses.asdict(config),
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if dev.type == "cuda" else [],
                        "order": order_gen.get_state(), "aug": aug_gen.get_state(), "aug_device": str(dev)},
            }, config.checkpoint)
            row["epoch_seconds"] = time.perf_counter() - t_epoch
        if config.log:
            with open(config.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        if show:
            val_txt = ("" if row["val_top1"] is None
                       else f"  val_loss {row['val_loss']:.4f}  val_top1 {row['val_top1']:.4f}")
            tqdm.write(f"epoch {epoch}/{total_epochs}  loss {row['train_loss']:.4f}  top1 {row['train_top1']:.4f}"
                       f"{val_txt}  {row['images_per_second']:.0f} img/s")

    finished = epoch >= total_epochs or history.stopped_early
    if finished and val is not None and config.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    return history


def _last_lr(config: TrainConfig, epoch: int, steps_per_epoch: int) -> float:
    """Learning rate of the last step of ``epoch`` (1-based)."""
    return config.lr * lr_factor(config, epoch * steps_per_epoch - 1, steps_per_epoch)


def _diverged(epoch: int, step: int, config: TrainConfig) -> None:
    raise DivergedError(
        f"the training loss became NaN or infinite in epoch {epoch} (by step {step + 1}) at peak lr "
        f"{config.lr:g}: lower the learning rate (e.g. lr={config.lr / 10:g}), add warm-up or use "
        "precision='fp32'; the checkpoint, if any, holds the last finite epoch")
