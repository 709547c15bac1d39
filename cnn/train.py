"""The trainer of the ``cnn`` package: one loop for every model of the registry, CPU or GPU.

    from cnn.train import TrainConfig, train, evaluate, predict
    history = train(model, (x_train, y_train), (x_val, y_val), TrainConfig(epochs=10, flip=False))
    metrics = evaluate(model, (x_test, y_test), mean=history.mean, std=history.std)

A library: it takes duck-typed data and knows no data-set names (those live in ``experiments``).
The trainer is a few units, each in its own module (after DeiT's ``main.py`` / ``engine.py``,
Touvron et al., "Training data-efficient image transformers & distillation through attention",
ICML 2021):

* :mod:`cnn.data` -- the data kinds accepted (arrays, ``ImageSet``-like objects, map-style data
  sets), :class:`ArrayData`, the batch sources, :func:`crop_flip` / :func:`random_crop_flip` and
  the per-batch preprocessing (augment, normalise, resize, memory format);
* :mod:`cnn.engine` -- :func:`training_loss`, one training epoch and one evaluation pass;
* :mod:`cnn.optim` -- the two parameter groups, SGD / AdamW, and the per-step learning-rate
  schedules with their formulas;
* :mod:`cnn.checkpoint` -- what a checkpoint holds, saved and restored in one place;
* :mod:`cnn.logger` -- the progress bar and the JSON-lines log;
* this module -- :class:`TrainConfig`, :class:`History`, where and how a model runs
  (:func:`resolve_device`, :func:`resolve_precision`), and :func:`train`, :func:`evaluate`,
  :func:`predict`. The public functions and classes above are importable from here.

Devices and precision
---------------------
``device="auto"`` is the first CUDA device when there is one, else the CPU. ``precision="auto"``
is bf16 autocast where the device computes bfloat16 natively -- CUDA devices for which
``torch.cuda.is_bf16_supported()`` (compute capability 8.0 and up; ROCm), CPUs with AVX512-BF16 or
AMX-BF16 (:func:`cpu_supports_bf16`) -- and fp32 elsewhere; ``"bf16"`` and ``"fp32"`` are used as
given. Under autocast the weights stay float32 and the loss is computed in float32.
``channels_last=None`` is on for CUDA, off for the CPU. An experiment calls
:func:`resolve_device` and :func:`resolve_precision` to record the values a run will use;
:func:`train`, :func:`evaluate` and :func:`predict` apply the same rule.

Reproducibility
---------------
``seed`` seeds the global torch generator (dropout), the data-order generator and the
augmentation generator. On CPU two runs with the same seed, data, precision and thread count give
identical parameters (``deterministic=True`` also turns on ``torch.use_deterministic_algorithms``
for the duration of the call), and a run resumed from its checkpoint continues exactly as if never
interrupted: the checkpoint holds the model, optimizer, scheduler, epoch, history, best weights and
every generator state (:mod:`cnn.checkpoint`). On CUDA runs are seeded, but cuDNN autotuning (on
while training on CUDA) and atomic adds make them differ in the last bits.

Checkpoints are written to ``checkpoint + '.tmp-*'`` and moved over ``checkpoint`` with
``os.replace``, so a crash never leaves a half-written file; they contain only tensors and plain
Python values and are read back with ``torch.load(weights_only=True)``; an empty or damaged file
raises :class:`cnn.checkpoint.CheckpointError` (a ``ValueError``) naming it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import RandomStreams, TrainingState, read_checkpoint
from .data import ArrayData, BatchSource, Preprocess, check_labels, crop_flip, random_crop_flip
from .engine import DivergedError, aux_weights, count_outputs, evaluate_pass, train_one_epoch, training_loss
from .logger import EpochLogger
from .optim import build_optimizer, build_scheduler, last_lr, lr_factor, parameter_groups

__all__ = [
    "TrainConfig",
    "History",
    "ArrayData",
    "DivergedError",
    "train",
    "evaluate",
    "predict",
    "resolve_device",
    "resolve_precision",
    "cpu_supports_bf16",
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
    precision: str = "auto"  # "auto" (bf16 where the device has native bf16: resolve_precision) | "fp32" | "bf16"
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



# ----------------------------------------------------------------------------- devices and precision


def resolve_device(name: str) -> torch.device:
    """The device a run uses: ``"auto"`` (the first CUDA device when there is one, else the CPU),
    ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Raises ``ValueError`` for a CUDA device that is not there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} but CUDA is not available; use device='cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={name!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return dev


@functools.lru_cache(maxsize=None)
def cpu_supports_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU multiplies bfloat16 natively: the ``flags`` of ``cpuinfo`` (Linux
    ``/proc/cpuinfo``) name ``avx512_bf16`` (AVX512-BF16) or ``amx_bf16`` (AMX-BF16). False when the
    file cannot be read (other systems) or has no such flag."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _cuda_supports_bf16(device: torch.device) -> bool:
    with torch.cuda.device(device):
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch before 2.4 has no emulation argument and answers for native support
            return torch.cuda.is_bf16_supported()


def resolve_precision(precision: str, device) -> str:
    """The autocast precision a run uses on ``device``: ``"bf16"`` or ``"fp32"``.

    ``"bf16"`` and ``"fp32"`` are returned as given; ``"auto"`` is ``"bf16"`` where the device
    computes bfloat16 natively (CUDA devices for which ``torch.cuda.is_bf16_supported()``, CPUs
    with AVX512-BF16 or AMX-BF16: :func:`cpu_supports_bf16`), else ``"fp32"``. ``device``: a
    ``torch.device`` or a name as :func:`resolve_device` takes.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {', '.join(map(repr, PRECISIONS))}")
    if precision != "auto":
        return precision
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if dev.type == "cuda":
        native = _cuda_supports_bf16(dev)
    else:
        native = dev.type == "cpu" and cpu_supports_bf16()
    return "bf16" if native else "fp32"


@dataclass(frozen=True)
class Placement:
    """Where and how a model runs: ``device``, autocast ``precision`` ("bf16" | "fp32", resolved)
    and the ``channels_last`` memory format of the model and its inputs."""

    device: torch.device
    precision: str
    channels_last: bool

    @classmethod
    def resolve(cls, device: str, precision: str, channels_last: bool | None) -> Placement:
        """The settings of :class:`TrainConfig` resolved: :func:`resolve_device`,
        :func:`resolve_precision`, channels-last on CUDA when ``channels_last`` is None."""
        dev = resolve_device(device)
        memory_format_last = dev.type == "cuda" if channels_last is None else bool(channels_last)
        return cls(dev, resolve_precision(precision, dev), memory_format_last)

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for fp32 (no autocast)."""
        return torch.bfloat16 if self.precision == "bf16" else None

    def apply(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device (and channels-last memory format), in place."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model


class TorchSettings:
    """Process-wide torch settings changed for the duration of a call, then put back."""

    def __init__(self, *, threads: int | None, deterministic: bool | None, cudnn_benchmark: bool | None) -> None:
        self.threads, self.deterministic, self.cudnn_benchmark = threads, deterministic, cudnn_benchmark

    @classmethod
    def for_training(cls, config: TrainConfig, device: torch.device) -> TorchSettings:
        """Threads and deterministic algorithms on the CPU, cuDNN autotuning on CUDA."""
        cpu = device.type == "cpu"
        return cls(threads=config.threads if cpu else None, deterministic=config.deterministic if cpu else None,
                   cudnn_benchmark=True if device.type == "cuda" else None)

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


def _prepare(model: nn.Module, source: BatchSource, place: Placement, input_size: int | None,
             mean, std) -> tuple[Preprocess, int]:
    """The preprocessing of ``source``'s batches (missing ``mean``/``std``: the source's own) and
    the model placed and probed on two of them; returns ``(preprocess, num_classes)``."""
    mean, std = source.fill_mean_std(mean, std)
    prep = Preprocess(mean=mean, std=std, channels=source.channels, scale=source.scale, device=place.device,
                      input_size=input_size, channels_last=place.channels_last)
    place.apply(model)
    num_classes = count_outputs(model, prep(source.sample[:2].to(place.device)), place.device, place.amp_dtype)
    return prep, num_classes


# ----------------------------------------------------------------------------- training


def train(model: nn.Module, train_data, val_data=None, config: TrainConfig | None = None, *,
          mean=None, std=None) -> History:
    """Train ``model`` in place on ``train_data`` (see :mod:`cnn.data` for data kinds) and return
    its :class:`History`. The model ends on the training device, in training mode, with the best
    validation epoch's weights when ``val_data`` is given and ``config.restore_best``.

    ``mean``/``std``: per-channel normalisation (a number or one value per channel); None: those
    of the checkpoint being resumed, else computed from ``train_data`` (stored in
    ``history.mean``/``history.std``).
    """
    config = _checked_config(model, val_data, config)
    place = Placement.resolve(config.device, config.precision, config.channels_last)
    with TorchSettings.for_training(config, place.device):
        random = RandomStreams.seeded(config.seed, place.device)
        source, val = _training_sources(train_data, val_data, config, place.device, random.order)
        resumed = _resumable_checkpoint(config)
        if resumed is not None:  # the normalisation of the interrupted run
            mean = resumed["history"]["mean"] if mean is None else mean
            std = resumed["history"]["std"] if std is None else std
        prep, num_classes = _prepare(model, source, place, config.input_size, mean, std)
        check_labels(source, num_classes, "train_data")
        if val is not None:
            check_labels(val, num_classes, "val_data")
        optimizer = build_optimizer(model, config)
        history = History(mean=prep.mean, std=prep.std, num_classes=num_classes, config=dataclasses.asdict(config))
        state = TrainingState(model, optimizer, build_scheduler(optimizer, config, len(source)), history, random)
        if resumed is not None:
            state.restore(resumed)
            del resumed
        _run_epochs(state, source, val, prep, place, config)
    finished = state.epoch >= config.epochs or history.stopped_early
    if finished and val is not None and config.restore_best and state.best_state is not None:
        model.load_state_dict(state.best_state)
    return history


def _checked_config(model, val_data, config: TrainConfig | None) -> TrainConfig:
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.validate()
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if val_data is None and config.early_stopping is not None:
        raise ValueError("early_stopping needs val_data (it watches the validation top-1)")
    return config


def _training_sources(train_data, val_data, config: TrainConfig, device: torch.device,
                      order: torch.Generator) -> tuple[BatchSource, BatchSource | None]:
    """The shuffled training source (order drawn from ``order``) and the validation source, if any."""
    source = BatchSource(train_data, device=device, batch_size=config.batch_size, shuffle=True,
                         drop_last=config.drop_last, on_device=config.data_on_device,
                         num_workers=config.num_workers, generator=order, name="train_data", need_labels=True)
    if val_data is None:
        return source, None
    val = BatchSource(val_data, device=device, batch_size=config.eval_batch_size, shuffle=False, drop_last=False,
                      on_device=config.data_on_device, num_workers=config.num_workers, generator=None,
                      name="val_data", need_labels=True)
    if val.channels != source.channels:
        raise ValueError(f"val_data has {val.channels} channels, train_data {source.channels}; they must match")
    if val.is_uint8 != source.is_uint8:
        raise ValueError("train_data and val_data must both be uint8 or both be float")
    if config.input_size is None and val.sample.shape[2:] != source.sample.shape[2:]:
        raise ValueError(f"val_data images are {tuple(val.sample.shape[2:])}, train_data "
                         f"{tuple(source.sample.shape[2:])}; resize them or set input_size")
    return source, val


def _resumable_checkpoint(config: TrainConfig) -> dict | None:
    """The checkpoint to continue from: ``config.checkpoint`` when ``resume`` and the file exists."""
    if config.resume and config.checkpoint and Path(config.checkpoint).exists():
        return read_checkpoint(config.checkpoint, config)
    return None


def _run_epochs(state: TrainingState, source: BatchSource, val: BatchSource | None, prep: Preprocess,
                place: Placement, config: TrainConfig) -> None:
    """Epochs from ``state.epoch + 1`` until ``config.epochs``, ``stop_after`` epochs or early
    stopping: train, validate, checkpoint, log."""
    model = torch.compile(state.model) if config.compile else state.model
    logger = EpochLogger(config.epochs, log=config.log, progress=config.progress)
    weights = aux_weights(state.model, config.aux_weight)
    end = config.epochs if config.stop_after is None else min(config.epochs, state.epoch + config.stop_after)
    while state.epoch < end and not state.history.stopped_early:
        state.epoch += 1
        t_epoch = time.perf_counter()
        with logger.progress(state.epoch, len(source)) as advance:
            trained = train_one_epoch(model, source, prep, state.optimizer, state.scheduler, config,
                                      epoch=state.epoch, device=place.device, amp=place.amp_dtype,
                                      generator=state.random.augment, aux_weight=weights, on_step=advance)
        state.history.train_seconds += trained["seconds"]
        row = {"epoch": state.epoch, "lr": last_lr(config, state.epoch, len(source)),
               "train_loss": trained["loss"], "train_top1": trained["top1"],
               "val_loss": None, "val_top1": None, "val_top5": None}
        if val is not None:
            row.update(_validate(state, val, prep, place, config))
        seconds = trained["seconds"]
        row.update(epoch_seconds=time.perf_counter() - t_epoch, train_seconds=state.history.train_seconds,
                   images_per_second=trained["images"] / seconds if seconds > 0 else float("inf"))
        state.history.epochs.append(row)
        if config.checkpoint:
            state.save(config.checkpoint, config)
            row["epoch_seconds"] = time.perf_counter() - t_epoch
        logger.record(row)


def _validate(state: TrainingState, val: BatchSource, prep: Preprocess, place: Placement,
              config: TrainConfig) -> dict:
    """Evaluate on ``val``; track the best top-1 (its weights when ``restore_best``) and early
    stopping (``early_stopping`` epochs without a better top-1). Returns the epoch's val_* values."""
    metrics = evaluate_pass(state.model, val, prep, place.device, place.amp_dtype, keep_logits=False)
    history = state.history
    if history.best_val_top1 is None or metrics["top1"] > history.best_val_top1:
        history.best_val_top1, history.best_epoch = metrics["top1"], state.epoch
        if config.restore_best:
            state.keep_best()
    elif config.early_stopping is not None and state.epoch - history.best_epoch >= config.early_stopping:
        history.stopped_early = True
    return {"val_loss": metrics["loss"], "val_top1": metrics["top1"], "val_top5": metrics["top5"]}


# ----------------------------------------------------------------------------- evaluation


def evaluate(model: nn.Module, data, *, batch_size: int = 512, device: str = "auto", precision: str = "auto",
             mean=None, std=None, input_size: int | None = None, channels_last: bool | None = None,
             num_workers: int = 0) -> dict:
    """Loss (plain cross-entropy), top-1 and top-5 (top-k, k = min(5, num_classes)) of ``model`` on
    labelled ``data``, in eval mode, without augmentation.

    ``mean``/``std``: the training normalisation (``history.mean``, ``history.std``); when None,
    the data's own statistics are used, with a warning. The model is moved to ``device``;
    ``precision`` and ``channels_last`` follow the rule of :func:`train` (:func:`resolve_precision`).
    Returns ``dict(loss, top1, top5, k, n, seconds, ms_per_image)``.
    """
    place, source, prep, num_classes = _inference_setup(
        model, data, batch_size, device, precision, mean, std, input_size, channels_last, num_workers, True)
    check_labels(source, num_classes, "data")
    return evaluate_pass(model, source, prep, place.device, place.amp_dtype, keep_logits=False)


def predict(model: nn.Module, data, *, batch_size: int = 512, device: str = "auto", precision: str = "auto",
            mean=None, std=None, input_size: int | None = None, channels_last: bool | None = None,
            num_workers: int = 0) -> torch.Tensor:
    """Logits of ``model`` (eval mode) on ``data`` (labels optional; a lone image array works):
    a float32 CPU tensor (N, num_classes), in the data's order. Arguments as :func:`evaluate`."""
    place, source, prep, _ = _inference_setup(
        model, data, batch_size, device, precision, mean, std, input_size, channels_last, num_workers, False)
    return evaluate_pass(model, source, prep, place.device, place.amp_dtype, keep_logits=True)["logits"]


def _inference_setup(model, data, batch_size, device, precision, mean, std, input_size, channels_last,
                     num_workers, need_labels) -> tuple[Placement, BatchSource, Preprocess, int]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    place = Placement.resolve(device, precision, channels_last)
    source = BatchSource(data, device=place.device, batch_size=batch_size, shuffle=False, drop_last=False,
                         on_device=None, num_workers=num_workers, generator=None, name="data",
                         need_labels=need_labels)
    if mean is None or std is None:
        warnings.warn(
            "mean/std not given: normalising by the evaluated data's own statistics; pass "
            "mean=history.mean, std=history.std to use the training data's", stacklevel=3)
    prep, num_classes = _prepare(model, source, place, input_size, mean, std)
    return place, source, prep, num_classes
