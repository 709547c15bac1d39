"""The protocol the experiments share: one split, the FV row, the CNN row, the summary and the plot.

Every experiment that sets the classical pipeline against a CNN composes these parts; it imports
no other experiment. The libraries own the maths and the costs (``fv.ValidatedLinearSVM``,
``fv.complexity``, ``FisherVectorEncoder.regions_``; ``cnn.train``, ``cnn.complexity``); this module
only calls them, times them and writes rows.

Split
-----
The training split (or a stratified subset of ``n_train`` images) is cut into a *fit* part and a
stratified *validation* part (``validation_fraction``, seed 0,
:func:`experiments.datasets.validation_split`); the test split (or ``n_test`` images of it) gives
the final numbers only. Both branches see the same parts; nothing is chosen on the test split.

FV row
------
Fisher vectors of the fit, validation and test images (cached on disk, :class:`FeatureCache`) ->
``fv.ValidatedLinearSVM`` trained on the fit part for every C (increasing, warm-started), the C
with the best validation accuracy kept (no refit) -> scores of the test images. ``fv`` is the
improved FV of the whole image (:meth:`fv.FisherVectorEncoder.whole_image_features` of the pyramid
features), ``fv_pyramid`` the whole pyramid vector.

CNN row
-------
A registered model trained by :func:`cnn.train.train` on the fit part with the plan's
:class:`cnn.train.TrainConfig`, the weights of the best validation epoch kept, then evaluated on
the test images.

Columns of a result row
-----------------------
``top1_accuracy``/``top5_accuracy`` and the errors (1 - accuracy) on the test images;
``train_seconds``: wall time from the raw training images to the final classifier, the search on
the validation part included (FV: PCA + GMM fit, encoding of the fit and validation images, the
SVM for every C; CNN: every epoch with its validation pass); for cached features the extraction
times recorded when the cache was written (``features_cached`` says so).
``inference_ms_per_image``: wall time per test image (FV: encoding plus the SVM; CNN: forward
passes in batches of 512). ``feature_dim`` (FV length; CNN: width of the penultimate layer),
``params`` and ``mult_adds`` per image (:func:`fv.complexity`, :func:`cnn.complexity`: their
docstrings list every term), ``peak_memory_gib`` (resident memory of this process and its workers
during the method, :class:`experiments.report.PeakMemory`; on CUDA ``cuda_peak_gib`` too).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cnn.train import TrainConfig

from . import datasets as ds
from . import report

__all__ = [
    "DataPlan", "Split", "load_split", "topk_accuracy", "result_row",
    "FVPlan", "FeatureCache", "fv_rows", "CNNPlan", "check_model", "cnn_row", "summarise", "plot",
]


# --------------------------------------------------------------------------- the split


@dataclass(frozen=True)
class DataPlan:
    """Which images a run uses."""

    dataset: str  # canonical data-set name
    data_dir: str | None  # the folder the data set is read from; None: the standard places
    image_size: int | None  # imagefolder: side (px) every image is scaled and centre-cropped to
    n_train: int | None  # training images used (fit + validation); None: the whole split
    n_test: int | None  # test images used; None: the whole split
    validation_fraction: float  # share of the training images held out for validation


@dataclass
class Split:
    """The images of a run: fit / validation / test, uint8 as the data set stores them."""

    name: str
    classes: tuple[str, ...]
    fit: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    checksums: dict[str, str]  # part name -> checksum of its images and labels

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.fit[0].shape[1:]

    @property
    def channels(self) -> int:
        return 1 if self.fit[0].ndim == 3 else self.fit[0].shape[3]


def _subset(labels: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a stratified subset of about ``n`` images (all when ``n`` is None or too big)."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    if n < 1:
        raise ValueError(f"asked for {n} images; use a positive number")
    _, chosen = ds.validation_split(labels, n / len(labels), seed=seed)
    return chosen


def load_split(data: DataPlan, ctx) -> Split:
    """The fit / validation / test parts of ``data`` (module docstring), recorded in the manifest."""
    options = {}
    if data.dataset == "imagefolder":
        if data.image_size is None:
            raise ds.DatasetError("an image folder needs --image-size N: every image is scaled and centre-"
                                  "cropped to N x N so that both branches get arrays of one shape")
        options["size"] = data.image_size
    with ctx.timer("load data"):
        train = ds.load(data.dataset, "train", data_dir=data.data_dir, **options)
        test = ds.load(data.dataset, "test", data_dir=data.data_dir, **options)
    ctx.record_dataset(train)
    ctx.record_dataset(test)
    keep = _subset(train.labels, data.n_train)
    fit_rel, val_rel = ds.validation_split(train.labels[keep], data.validation_fraction, seed=0)
    fit_idx, val_idx = keep[fit_rel], keep[val_rel]
    test_idx = _subset(test.labels, data.n_test)
    if len(np.unique(train.labels[fit_idx])) < 2:
        raise ValueError(f"the fit part holds {len(fit_idx)} images of fewer than 2 classes; use more images")
    parts = {
        "fit": (train.images[fit_idx], train.labels[fit_idx]),
        "val": (train.images[val_idx], train.labels[val_idx]),
        "test": (test.images[test_idx], test.labels[test_idx]),
    }
    checksums = {k: ds.array_checksum(*v) for k, v in parts.items()}
    ctx.log(f"{data.dataset}: fit {len(fit_idx)}, validation {len(val_idx)}, test {len(test_idx)} images "
            f"of {train.images.shape[1:]}")
    return Split(data.dataset, train.classes, parts["fit"], parts["val"], parts["test"], checksums)


# --------------------------------------------------------------------------- rows


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the ``k`` highest scores (k capped at the class count)."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.mean((top == labels[:, None]).any(axis=1)))


def result_row(method: str, split: Split, seed: int, device: str, *, top1: float, top5: float, **values) -> dict:
    """One row of ``results``: the method, the split's sizes, the test accuracies, then ``values``
    (the module docstring lists the columns)."""
    return {
        "method": method, "dataset": split.name, "seed": seed, "n_train": len(split.fit[1]),
        "n_val": len(split.val[1]), "n_test": len(split.test[1]),
        "top1_accuracy": round(top1, 5), "top5_accuracy": round(top5, 5),
        "top1_error": round(1 - top1, 5), "top5_error": round(1 - top5, 5),
        **values, "device": device,
    }


# --------------------------------------------------------------------------- FV row


@dataclass(frozen=True)
class FVPlan:
    """The FV branch of a run: encoder parameters, SVM search, workers, cache."""

    encoder: dict[str, Any]  # FisherVectorEncoder parameters (random_state is the run's seed)
    Cs: tuple[float, ...]  # SVM C values tried on the validation part, increasing
    svm_tol: float  # LinearSVM tolerance (relative duality gap)
    svm_max_iter: int  # L-BFGS iterations per C, at most
    device: str  # "cpu" (joblib workers) or a CUDA device (the whole chain on the GPU)
    cache_dir: str | None  # root of the feature cache; None: nothing kept


class FeatureCache:
    """Fisher vectors of the fit, validation and test images, computed once per configuration.

    Layout: ``<root>/fv/<key>/`` with ``encoder/`` (the fitted encoder,
    :meth:`fv.FisherVectorEncoder.save`: arrays and JSON, no pickle), one ``<part>-<checksum>.npy``
    per part (written through a memmap into a temporary file, then renamed) and ``meta.json``
    (timings and sizes of the extraction). ``key`` hashes the fit images' checksum, the encoder
    parameters and the seed; each part's file name carries its own images' checksum. With
    ``root=None`` nothing is kept beyond a temporary folder.
    """

    VERSION = 2  # of the layout; a change makes a new key, so old entries are never read
    #: Encoder parameters that say only where and how fast it computes (same vectors): not in the key.
    COMPUTE_ONLY = ("n_jobs", "backend", "batch_size", "device", "verbose")

    def __init__(self, root: str | None, split: Split, params: dict, seed: int):
        what = {k: v for k, v in params.items() if k not in self.COMPUTE_ONLY}
        material = {"dataset": split.name, "fit": split.checksums["fit"], "params": what, "seed": seed,
                    "version": self.VERSION}
        self.key = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:20]
        self._tmp = None
        if root:
            self.folder = Path(root) / "fv" / self.key
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="fv-features-")
            self.folder = Path(self._tmp.name)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.split = split

    def path(self, part: str) -> Path:
        return self.folder / f"{part}-{self.split.checksums[part][:16]}.npy"

    def meta(self) -> dict:
        try:
            return json.loads((self.folder / "meta.json").read_text())
        except (OSError, ValueError):
            return {}

    def complete(self) -> bool:
        meta = self.meta()
        return (self.folder / "encoder" / "encoder.json").exists() and all(
            self.path(p).exists() and f"encode_{p}_s" in meta for p in ("fit", "val", "test"))

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _encode_parts(split: Split, plan: FVPlan, seed: int, cache: FeatureCache, ctx):
    """Fit the encoder on the fit images, encode every part into the cache; (encoder, meta)."""
    from fv import FisherVectorEncoder
    from fv.encoder import encode_to_file

    verbose = sys.stderr.isatty() and not ctx.quiet
    encoder = FisherVectorEncoder(**plan.encoder, random_state=seed, verbose=verbose)
    meta = {"params": plan.encoder, "seed": seed, "dataset": split.name}
    ctx.log(f"FV (seed {seed}): fitting PCA + GMM on descriptors of {plan.encoder['n_fit_images']} images")
    t = time.perf_counter()
    encoder.fit(split.fit[0])
    meta["fit_encoder_s"] = time.perf_counter() - t
    encoder.save(cache.folder / "encoder")
    for part in ("fit", "val", "test"):
        images = getattr(split, part)[0]
        ctx.log(f"FV (seed {seed}): encoding {len(images)} {part} images -> {encoder.n_features_out_} dims")
        t = time.perf_counter()
        encode_to_file(encoder, images, cache.path(part))
        meta[f"encode_{part}_s"] = time.perf_counter() - t
        meta[f"n_{part}"] = len(images)
        report.write_json(cache.folder / "meta.json", meta)
    return encoder, meta


def _features(split: Split, plan: FVPlan, seed: int, ctx):
    """(features {part: memmapped (n, dim) float32}, encoder, meta, cached, cache) for one seed."""
    from fv import FisherVectorEncoder

    cache = FeatureCache(plan.cache_dir, split, plan.encoder, seed)
    cached = cache.complete()
    if cached:
        ctx.log(f"FV features (seed {seed}) from the cache: {cache.folder}")
        encoder, meta = FisherVectorEncoder.load(cache.folder / "encoder"), cache.meta()
    else:
        encoder, meta = _encode_parts(split, plan, seed, cache, ctx)
    features = {p: np.load(cache.path(p), mmap_mode="r", allow_pickle=False) for p in ("fit", "val", "test")}
    return features, encoder, meta, cached, cache


def _fv_row(method: str, F: dict, encoder, split: Split, plan: FVPlan, seed: int, extraction: dict):
    """Train the SVM of one FV method on its features; (row, validation rows)."""
    import fv

    regions = "whole" if method == "fv" else "all"
    with report.PeakMemory() as memory:
        svm = fv.ValidatedLinearSVM(Cs=plan.Cs, refit=False, solver="torch", max_iter=plan.svm_max_iter,
                                    tol=plan.svm_tol, device=plan.device, random_state=seed)
        t = time.perf_counter()
        svm.fit(F["fit"], split.fit[1], validation=(F["val"], split.val[1]))
        svm_s = time.perf_counter() - t
        t = time.perf_counter()
        scores = svm.decision_function(F["test"])
        predict_s = time.perf_counter() - t
    cost = fv.complexity(encoder, split.image_shape[:2], n_classes=len(split.classes), regions=regions)
    layout = "1x1" if regions == "whole" else " + ".join(f"{r}x{c}" for r, c in encoder.pyramid)
    row = result_row(
        method, split, seed, plan.device,
        top1=topk_accuracy(scores, split.test[1], 1), top5=topk_accuracy(scores, split.test[1], 5),
        train_seconds=round(extraction["train_s"] + svm_s, 2),
        inference_ms_per_image=round(1000 * (extraction["test_s"] + predict_s) / len(split.test[1]), 4),
        feature_dim=cost["feature_dim"], params=cost["params"], mult_adds=cost["mult_adds"],
        peak_memory_gib=round(max(memory.peak_gib, extraction["peak_gib"]), 3),
        selected=f"C={svm.best_C_:g}", val_top1=round(svm.validation_scores_[svm.best_C_], 5),
        features_cached=extraction["cached"], precision="fp32",
        model=f"PCA {encoder.pca_.n_components_}, GMM {encoder.n_components}, regions {layout}",
    )
    validation = [{"method": method, "seed": seed, "setting": f"C={C:g}", "val_top1": round(score, 5),
                   "seconds": round(svm.fit_seconds_[C], 2), "iterations": svm.n_iter_[C]}
                  for C, score in svm.validation_scores_.items()]
    return row, validation


def fv_rows(split: Split, plan: FVPlan, seed: int, methods: tuple[str, ...], ctx):
    """The rows of the FV methods (``fv``, ``fv_pyramid``) for one seed, and their validation rows."""
    with report.PeakMemory() as memory, ctx.timer("fv features"):
        features, encoder, meta, cached, cache = _features(split, plan, seed, ctx)
    extraction = {"train_s": meta["fit_encoder_s"] + meta["encode_fit_s"] + meta["encode_val_s"],
                  "test_s": meta["encode_test_s"], "cached": cached, "peak_gib": 0 if cached else memory.peak_gib}
    try:
        rows, validation = [], []
        for method in methods:
            with ctx.timer(f"{method} svm"):
                F = features if method == "fv_pyramid" else {
                    part: encoder.whole_image_features(features[part]) for part in features}
                row, val = _fv_row(method, F, encoder, split, plan, seed, extraction)
            rows.append(row)
            validation += val
            ctx.log(f"{method} (seed {seed}): test top-1 {row['top1_accuracy']:.4f} with {row['selected']} "
                    f"(validation {row['val_top1']:.4f})")
        return rows, validation
    finally:
        del features
        cache.close()


# --------------------------------------------------------------------------- CNN row


@dataclass(frozen=True)
class CNNPlan:
    """One CNN row of a run: which model, with what options, trained how."""

    method: str  # the row's name in the tables
    model: str  # name in the registry (cnn.list_models())
    model_options: dict[str, Any]  # keyword arguments of the model's builder
    train: TrainConfig  # recipe, epochs, flip, input size, device, precision (the seed is the run's)


def model_input_shape(split_shape: tuple[int, ...], channels: int, input_size: int | None) -> tuple[int, int, int]:
    """(C, H, W) the model sees: the stored images, or ``input_size`` squares when set."""
    h, w = split_shape[:2]
    return (channels, input_size, input_size) if input_size else (channels, h, w)


def check_model(name: str, options: dict, num_classes: int, input_shape: tuple[int, int, int]) -> dict:
    """``cnn.complexity`` of the model on ``input_shape``; a clear error when the model does not
    accept images of that size (too small for its pooling, or another input layout)."""
    import torch

    from cnn import complexity, get_model

    c, h, w = input_shape
    try:
        model = get_model(name, num_classes=num_classes, in_channels=c, **options)
        with torch.no_grad():
            return complexity(model, input_shape)
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"model {name!r} does not accept {c}-channel {h} x {w} images ({first}); choose a model for "
            "images of this size (for small images: alexnet_small, cifar_resnet*, preact_resnet*), or "
            "larger images (--image-size for image folders)") from exc


def cnn_row(split: Split, plan: CNNPlan, seed: int, ctx) -> tuple[dict, list[dict]]:
    """Train and evaluate one CNN row for one seed; (row, validation rows)."""
    import torch

    from cnn import complexity, get_model
    from cnn.train import evaluate, train

    torch.manual_seed(seed)
    model = get_model(plan.model, num_classes=len(split.classes), in_channels=split.channels,
                      **plan.model_options)
    cost = complexity(model, model_input_shape(split.image_shape, split.channels, plan.train.input_size))
    config = dataclasses.replace(plan.train, seed=seed, log=str(ctx.out_dir / f"{plan.method}-seed{seed}.jsonl"),
                                 progress=None if not ctx.quiet else False)
    label = plan.model + ("(" + ", ".join(f"{k}={v}" for k, v in plan.model_options.items()) + ")"
                          if plan.model_options else "")
    ctx.log(f"{plan.method} (seed {seed}): {label}, {cost['params']:,} parameters, {config.epochs} epochs on "
            f"{len(split.fit[1])} images, device {config.device}, {config.precision}")
    with report.PeakMemory() as memory, ctx.timer(f"{plan.method} train"):
        t = time.perf_counter()
        history = train(model, split.fit, split.val, config)
        train_s = time.perf_counter() - t
    metrics = evaluate(model, split.test, batch_size=512, device=config.device, precision=config.precision,
                       mean=history.mean, std=history.std, input_size=config.input_size)
    row = result_row(
        plan.method, split, seed, config.device, top1=metrics["top1"], top5=metrics["top5"],
        train_seconds=round(train_s, 2), inference_ms_per_image=round(metrics["ms_per_image"], 4),
        feature_dim=_penultimate_width(model), params=cost["params"], mult_adds=cost["mult_adds"],
        peak_memory_gib=round(memory.peak_gib, 3), selected=f"epoch={history.best_epoch}",
        val_top1=round(history.best_val_top1, 5), features_cached=False, model=label, precision=config.precision,
    )
    if memory.cuda_peak_bytes is not None:
        row["cuda_peak_gib"] = round(memory.cuda_peak_bytes / 1024**3, 3)
    validation = [{"method": plan.method, "seed": seed, "setting": f"epoch={e['epoch']}",
                   "val_top1": round(e["val_top1"], 5), "seconds": round(e["epoch_seconds"], 2)}
                  for e in history.epochs]
    ctx.log(f"{plan.method} (seed {seed}): test top-1 {row['top1_accuracy']:.4f} after {train_s:.0f} s "
            f"(best validation epoch {history.best_epoch})")
    return row, validation


def _penultimate_width(model) -> int:
    """Input width of the last linear layer (the learned feature the classifier reads)."""
    from torch import nn

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return int(linears[-1].in_features) if linears else 0


# --------------------------------------------------------------------------- summary and plot


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation (ddof 1; 0 for one seed) over seeds, per method."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        group = [r for r in rows if r["method"] == method]
        entry = {"method": method, "dataset": group[0]["dataset"], "seeds": len(group)}
        for key in ("top1_accuracy", "top5_accuracy", "top1_error", "top5_error", "train_seconds",
                    "inference_ms_per_image", "peak_memory_gib"):
            values = np.array([r[key] for r in group], dtype=float)
            entry[f"{key}_mean"] = round(float(values.mean()), 5)
            entry[f"{key}_std"] = round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 5)
        for key in ("feature_dim", "params", "mult_adds", "device"):
            entry[key] = group[0][key]
        out.append(entry)
    return out


def plot(summary: list[dict], path: Path, title: str) -> None:
    """Test top-1 against training seconds and against mult-adds per image (a PNG at ``path``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, key, label in ((axes[0], "train_seconds_mean", "training time (s)"),
                           (axes[1], "mult_adds", "mult-adds per image")):
        for entry in summary:
            ax.errorbar(entry[key], 100 * entry["top1_accuracy_mean"], yerr=100 * entry["top1_accuracy_std"],
                        fmt="o", capsize=3, label=entry["method"])
            ax.annotate(entry["method"], (entry[key], 100 * entry["top1_accuracy_mean"]),
                        textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap
        ax.set_xlabel(label)
        ax.set_ylabel("test top-1 accuracy (%)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    try:
        with report.atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
