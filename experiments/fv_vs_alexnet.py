"""Experiment ``fv_vs_alexnet``: SIFT + Fisher vectors + linear SVM against AlexNet, one data set.

The 2012 story (ILSVRC-2012: SIFT + FVs 26.2% top-5 error, AlexNet 15.3%) at a scale a
laptop can run, and at full scale where the data and the hardware are::

    python -m experiments.run fv_vs_alexnet                      # Fashion-MNIST, preset "quick"
    python -m experiments.run fv_vs_alexnet --preset full --seeds 3
    python -m experiments.run fv_vs_alexnet --dataset cifar10 --device cuda
    python -m experiments.run fv_vs_alexnet --dataset imagefolder --data-dir ~/photos --image-size 96

Protocol
--------
* One split for both branches: the training split (or a stratified subset of ``n_train`` images)
  is cut into a *fit* part and a stratified *validation* part (``validation_fraction``, seed 0,
  :func:`experiments.datasets.validation_split`); the test split (or ``n_test`` images of it) gives
  the final numbers only. Nothing is ever chosen on the test split.
* FV branch (:mod:`fv`): multi-scale dense SIFT (RootSIFT) -> PCA -> diagonal GMM, both fitted on
  descriptors of the fit images -> improved Fisher vectors with a spatial pyramid (``fv_pyramid``)
  and of the whole image only (``fv``: the first region of the pyramid vector, L2-normalised again,
  which is exactly the 1x1 improved FV) -> one-vs-rest linear SVM (:class:`fv.LinearSVM`) trained
  on the fit part for every C of the preset (increasing, each fit warm-started from the previous),
  the C with the best validation accuracy kept. Features are extracted in parallel (``--jobs``)
  and cached on disk (``cache_dir``/fv/<key>/): the key covers the data set's checksums, the
  subset, the split and the FV configuration, so a rerun with the same settings skips extraction.
* CNN branch (:mod:`cnn`): ``alexnet_small`` for images under 64 pixels, the 2012 ``alexnet`` at
  224 x 224 (batches resized on the fly) otherwise, without the two LRN layers unless ``--lrn``
  (they take about 30% of the training time on a CPU), trained by :func:`cnn.train.train` on the
  fit part with ``CNN_RECIPE`` for the preset's epochs, in bf16 on CUDA and on CPUs with native
  bfloat16 (fp32 elsewhere); the weights of the epoch with the best validation accuracy are kept
  (early stopping where the preset sets a patience). ``--reference`` adds the textbook row:
  the 2012 AlexNet at 224 x 224, SGD lr 0.01, momentum 0.9, batch 128, 10 epochs, fp32 (meant for
  a GPU: on a CPU it takes hours).

Columns of ``results.csv`` (one row per method and seed)
--------------------------------------------------------
``top1_accuracy``/``top5_accuracy`` and the errors (1 - accuracy) on the test images;
``train_seconds``: wall time from the raw training images to the final classifier, hyper-parameter
search on the validation part included (FV: PCA + GMM fit, encoding fit and validation images, the
SVM for every C; CNN: every epoch with its validation pass). For cached features the extraction
times recorded when the cache was written are used (``features_cached`` says so).
``inference_ms_per_image``: wall time per test image (FV: encoding with ``--jobs`` workers plus
the SVM; CNN: forward passes in batches of 512). ``feature_dim`` (FV length; CNN: width of the
penultimate layer), ``params`` (FV: PCA + GMM + SVM numbers; CNN: trainable parameters),
``mult_adds`` per image (CNN: conv and linear layers, :func:`cnn.complexity`; FV: PCA projection,
GMM log-likelihoods, moments per pyramid level and SVM as matrix products, plus an estimate of
dense SIFT's filtering, see :func:`fv_mult_adds`), ``peak_memory_gib`` (resident memory of this
process and its workers during the method, :class:`experiments.report.PeakMemory`; on CUDA
``cuda_peak_gib`` too).

Other tables: ``summary`` (mean and standard deviation over seeds), ``validation`` (the validation
accuracy of every C and every epoch), ``published`` (the published ILSVRC figures, with their
sources, and the Fashion-MNIST benchmark's best classical baseline). ``accuracy.png`` plots test
accuracy against training time and against mult-adds per image.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import datasets as ds
from . import report

DESCRIPTION = "SIFT + Fisher vectors + linear SVM against AlexNet on one data set (the 2012 comparison)"

# --------------------------------------------------------------------------- presets (data)

#: FV settings for small images (side < 64 px: Fashion-MNIST, CIFAR, SVHN): images scaled by 2,
#: bin sizes 4, 6, 8 px with step 2, PCA to 32 dimensions, 32 Gaussians, a 1x1 + 2x2 pyramid.
FV_SMALL = dict(scale=2.0, sizes=(4, 6, 8), step=2, pca_components=32, n_components=32,
                pyramid=((1, 1), (2, 2)), n_fit_descriptors=200_000, n_fit_images=10_000)
#: FV settings for larger images: vl_phow's bin sizes 4, 6, 8, 10 with step 4, PCA 64, 64 Gaussians.
FV_LARGE = dict(scale=1.0, sizes=(4, 6, 8, 10), step=4, pca_components=64, n_components=64,
                pyramid=((1, 1), (2, 2)), n_fit_descriptors=200_000, n_fit_images=5_000)

#: The CNN recipe: AdamW (decoupled weight decay 0.05, none on biases) with a one-cycle learning
#: rate peaking at 2e-3 after a quarter of the steps, label smoothing 0.1, padded random crop and
#: flip, batch 128. Chosen on the validation part of a 10,000-image subset, where it learned faster
#: in the first epochs than one-cycle Nesterov SGD (peak 0.05) with or without BatchNorm.
CNN_RECIPE = dict(batch_size=128, optimizer="adamw", lr=2e-3, weight_decay=0.05, schedule="onecycle",
                  pct_start=0.25, label_smoothing=0.1, augment=True, crop_padding=2)
#: Model options of the CNN branch. Without LRN: on a CPU the two LRN layers take about 30% of
#: alexnet_small's training time (BENCHMARKS.md); ``--lrn`` puts them back.
CNN_MODEL_OPTIONS = dict(lrn=False)


@dataclass(frozen=True)
class Preset:
    """Sizes and budgets of one preset. ``None`` sizes mean the whole split."""

    n_train: int | None  # images of the training split used (fit + validation), stratified subset
    n_test: int | None  # test images used
    fv: dict  # overrides of FV_SMALL / FV_LARGE
    Cs: tuple[float, ...]  # SVM C values tried on the validation part
    svm_tol: float  # LinearSVM tolerance (relative duality gap)
    epochs: int  # CNN epochs
    patience: int | None  # early stopping on validation top-1 (epochs), None: off
    cnn: dict = field(default_factory=dict)  # overrides of CNN_RECIPE


PRESETS: dict[str, Preset] = {
    # seconds: the code path end to end on a few hundred images (tests, first try on new data)
    "smoke": Preset(n_train=600, n_test=300,
                    fv=dict(sizes=(4, 8), step=4, pca_components=16, n_components=8, n_fit_descriptors=20_000,
                            n_fit_images=300, gmm_max_iter=50),
                    Cs=(1.0,), svm_tol=1e-3, epochs=1, patience=None, cnn=dict(batch_size=64)),
    # about 5 minutes on 2 CPU cores: 10,000 training images, the whole test split
    "quick": Preset(n_train=10_000, n_test=None, fv={}, Cs=(0.3, 1.0, 3.0), svm_tol=1e-3, epochs=6,
                    patience=None),
    # the real comparison: every image
    "full": Preset(n_train=None, n_test=None, fv={}, Cs=(0.3, 1.0, 3.0), svm_tol=1e-3, epochs=10,
                   patience=None),
}

#: The textbook AlexNet-at-224 recipe of the reference row (``--reference``).
REFERENCE_RECIPE = dict(batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False,
                        weight_decay=5e-4, schedule="constant", label_smoothing=0.0, augment=False,
                        precision="fp32", input_size=224)
REFERENCE_EPOCHS = 10

#: Data sets whose classes change under a horizontal flip (digits): no flip augmentation.
NO_FLIP = {"mnist", "svhn"}

#: Published figures, to be read beside ours (they are on other data, at another scale).
PUBLISHED = [
    {"benchmark": "ILSVRC-2012 test", "method": "SIFT + FVs (runner-up, team ISI)", "top1_error": None,
     "top5_error": 0.262, "source": "Krizhevsky et al. 2012, Table 2"},
    {"benchmark": "ILSVRC-2012 test", "method": "AlexNet, 7 CNNs (winner, SuperVision)", "top1_error": None,
     "top5_error": 0.153, "source": "Krizhevsky et al. 2012, Table 2"},
    {"benchmark": "ILSVRC-2012 val", "method": "AlexNet, 1 CNN", "top1_error": 0.407, "top5_error": 0.182,
     "source": "Krizhevsky et al. 2012, Table 2"},
    {"benchmark": "ILSVRC-2010 test", "method": "SIFT + FVs (Sanchez & Perronnin 2011)", "top1_error": 0.457,
     "top5_error": 0.257, "source": "Krizhevsky et al. 2012, Table 1"},
    {"benchmark": "ILSVRC-2010 test", "method": "AlexNet, 1 CNN", "top1_error": 0.375, "top5_error": 0.170,
     "source": "Krizhevsky et al. 2012, Table 1"},
    {"benchmark": "Fashion-MNIST test", "method": "SVC, RBF kernel, C=10 (best classical baseline)",
     "top1_error": 0.103, "top5_error": None,
     "source": "Xiao et al. 2017, Fashion-MNIST benchmark (github.com/zalandoresearch/fashion-mnist)"},
]


@dataclass
class Config:
    dataset: str = field(default="fashion-mnist", metadata={"help": "data set (see 'experiments.run datasets')"})
    data_dir: str | None = field(default=None, metadata={"help": "folder to look in first for the data set"})
    preset: str = field(default="quick", metadata={"help": "sizes and budgets", "choices": tuple(PRESETS)})
    seeds: int = field(default=1, metadata={"help": "repetitions with seeds 0..N-1 (GMM, SVM, CNN init, order)"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda or auto (cuda when available)"})
    jobs: int = field(default=-1, metadata={"help": "parallel workers of FV extraction (-1: all cores)"})
    methods: list[str] = field(default_factory=lambda: ["fv", "fv_pyramid", "alexnet"],
                               metadata={"help": "methods to run: fv, fv_pyramid, alexnet"})
    reference: bool = field(default=False, metadata={"help": "add the textbook AlexNet-at-224 row (GPU)"})
    n_train: int | None = field(default=None, metadata={"help": "training images (fit + validation); "
                                                                "default: the preset's"})
    n_test: int | None = field(default=None, metadata={"help": "test images; default: the preset's"})
    epochs: int | None = field(default=None, metadata={"help": "CNN epochs; default: the preset's"})
    validation_fraction: float = field(default=0.1, metadata={"help": "share of the training images held out"})
    lrn: bool = field(default=False, metadata={"help": "keep AlexNet's local response normalisation layers"})
    image_size: int | None = field(default=None, metadata={"help": "imagefolder: square size every image is "
                                                                    "scaled and centre-cropped to"})
    fv_color: str = field(default="auto", metadata={
        "help": "dense SIFT colour mode; auto: gray for gray images, opponent for RGB",
        "choices": ("auto", "gray", "rgb", "opponent", "hsv")})
    cache_dir: str = field(default="results/cache", metadata={"help": "where FV features are cached ('' : off)"})


# --------------------------------------------------------------------------- data


def _subset(labels: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a stratified subset of about ``n`` images (all when ``n`` is None or too big)."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    if n < 1:
        raise ValueError(f"asked for {n} images; use a positive number")
    _, chosen = ds.validation_split(labels, n / len(labels), seed=seed)
    return chosen


@dataclass
class Split:
    """The images of the experiment: fit / validation / test, uint8 as the data set stores them."""

    name: str
    classes: tuple[str, ...]
    fit: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    checksums: dict[str, str]  # split name -> checksum of its images and labels

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.fit[0].shape[1:]

    @property
    def channels(self) -> int:
        return 1 if self.fit[0].ndim == 3 else self.fit[0].shape[3]


def load_split(config: Config, preset: Preset, ctx) -> Split:
    name = ds.canonical_name(config.dataset)
    options = {}
    if name == "imagefolder":
        if config.image_size is None:
            raise ds.DatasetError("an image folder needs --image-size N: every image is scaled and centre-"
                                  "cropped to N x N so that both branches get arrays of one shape")
        options["size"] = config.image_size
    with ctx.timer("load data"):
        train = ds.load(name, "train", data_dir=config.data_dir, **options)
        test = ds.load(name, "test", data_dir=config.data_dir, **options)
    ctx.record_dataset(train)
    ctx.record_dataset(test)
    n_train = config.n_train if config.n_train is not None else preset.n_train
    n_test = config.n_test if config.n_test is not None else preset.n_test
    keep = _subset(train.labels, n_train)
    fit_rel, val_rel = ds.validation_split(train.labels[keep], config.validation_fraction, seed=0)
    fit_idx, val_idx = keep[fit_rel], keep[val_rel]
    test_idx = _subset(test.labels, n_test)
    if len(np.unique(train.labels[fit_idx])) < 2:
        raise ValueError(f"the fit part holds {len(fit_idx)} images of fewer than 2 classes; use more images")
    parts = {
        "fit": (train.images[fit_idx], train.labels[fit_idx]),
        "val": (train.images[val_idx], train.labels[val_idx]),
        "test": (test.images[test_idx], test.labels[test_idx]),
    }
    checksums = {k: ds.array_checksum(*v) for k, v in parts.items()}
    ctx.log(f"{name}: fit {len(fit_idx)}, validation {len(val_idx)}, test {len(test_idx)} images "
            f"of {train.images.shape[1:]}")
    return Split(name, train.classes, parts["fit"], parts["val"], parts["test"], checksums)


# --------------------------------------------------------------------------- metrics


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the ``k`` highest scores (k capped at the class count)."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.mean((top == labels[:, None]).any(axis=1)))


def _row(method: str, split: Split, seed: int, device: str, **values) -> dict:
    top1, top5 = values.pop("top1"), values.pop("top5")
    return {
        "method": method, "dataset": split.name, "seed": seed, "n_train": len(split.fit[1]),
        "n_val": len(split.val[1]), "n_test": len(split.test[1]),
        "top1_accuracy": round(top1, 5), "top5_accuracy": round(top5, 5),
        "top1_error": round(1 - top1, 5), "top5_error": round(1 - top5, 5),
        **values, "device": device,
    }


# --------------------------------------------------------------------------- FV branch


def fv_settings(split: Split, preset: Preset, color: str) -> dict:
    """Encoder parameters for the data: small- or large-image settings, the preset's overrides."""
    side = min(split.image_shape[:2])
    params = dict(FV_SMALL if side < 64 else FV_LARGE)
    params.update(preset.fv)
    if color == "auto":
        color = "gray" if split.channels == 1 else "opponent"
    if split.channels == 1 and color != "gray":
        raise ValueError(f"fv_color={color!r} needs RGB images; this data set is grayscale (use gray or auto)")
    params["color"] = color
    params["n_fit_images"] = min(params["n_fit_images"], len(split.fit[1]))
    return params


def _fv_key(split: Split, params: dict, seed: int) -> str:
    material = {"dataset": split.name, "fit": split.checksums["fit"], "params": params, "seed": seed,
                "version": 1}
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _atomic_dump(obj, path: Path) -> None:
    import joblib

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        joblib.dump(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FeatureCache:
    """Fisher vectors of the fit, validation and test images, computed once per configuration.

    Layout: ``<root>/fv/<key>/`` with ``encoder.joblib`` (the fitted encoder), one
    ``<part>-<checksum>.npy`` per part (written through a memmap into a temporary file, then
    renamed) and ``meta.json`` (timings and sizes of the extraction). ``key`` hashes the fit
    images' checksum, the FV parameters and the seed; each part's file name carries its own
    images' checksum. With ``root=None`` nothing is kept on disk beyond a temporary folder.
    """

    def __init__(self, root: str | None, split: Split, params: dict, seed: int):
        self.key = _fv_key(split, params, seed)
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
        return (self.folder / "encoder.joblib").exists() and all(
            self.path(p).exists() and f"encode_{p}_s" in meta for p in ("fit", "val", "test"))

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def extract_features(split: Split, params: dict, seed: int, config: Config, device: str, ctx):
    """(features {part: memmapped (n, dim) float32}, encoder, meta, cached) for one seed."""
    import joblib

    from fv.encoder import FisherVectorEncoder, encode_to_file

    cache = FeatureCache(config.cache_dir or None, split, params, seed)
    cached = cache.complete()
    if cached:
        ctx.log(f"FV features (seed {seed}) from the cache: {cache.folder}")
        encoder = joblib.load(cache.folder / "encoder.joblib")
        meta = cache.meta()
    else:
        verbose = sys.stderr.isatty() and not ctx.quiet
        encoder = FisherVectorEncoder(**params, n_jobs=config.jobs, random_state=seed, verbose=verbose,
                                      device=device if device != "cpu" else None)
        meta = {"params": params, "seed": seed, "dataset": split.name}
        ctx.log(f"FV (seed {seed}): fitting PCA + GMM on descriptors of {params['n_fit_images']} images")
        t = time.perf_counter()
        encoder.fit(split.fit[0])
        meta["fit_encoder_s"] = time.perf_counter() - t
        _atomic_dump(encoder, cache.folder / "encoder.joblib")
        for part in ("fit", "val", "test"):
            images = getattr(split, part)[0]
            ctx.log(f"FV (seed {seed}): encoding {len(images)} {part} images -> {encoder.n_features_out_} dims")
            t = time.perf_counter()
            encode_to_file(encoder, images, cache.path(part))
            meta[f"encode_{part}_s"] = time.perf_counter() - t
            meta[f"n_{part}"] = len(images)
            report.write_json(cache.folder / "meta.json", meta)
    features = {p: np.load(cache.path(p), mmap_mode="r") for p in ("fit", "val", "test")}
    return features, encoder, meta, cached, cache


def _whole_image(F: np.ndarray, block: int) -> np.ndarray:
    """The 1x1 region of a pyramid FV, L2-normalised again: the improved FV of the whole image."""
    X = np.array(F[:, :block], dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    np.divide(X, norms, out=X, where=norms > 0)
    return X


def train_svm(F_fit, y_fit, F_val, y_val, preset: Preset, device: str, seed: int, method: str):
    """Linear SVMs for the preset's Cs (increasing, warm-started); returns (best model, validation rows)."""
    from fv import LinearSVM

    svm = LinearSVM(tol=preset.svm_tol, max_iter=1000, warm_start=True, random_state=seed,
                    device=device if device != "cpu" else None)
    best, rows = None, []
    for C in sorted(preset.Cs):
        t = time.perf_counter()
        svm.set_params(C=C).fit(F_fit, y_fit)
        seconds = time.perf_counter() - t
        accuracy = float(np.mean(svm.predict(F_val) == y_val))
        rows.append({"method": method, "seed": seed, "setting": f"C={C:g}", "val_top1": round(accuracy, 5),
                     "seconds": round(time.perf_counter() - t, 2), "fit_seconds": round(seconds, 2),
                     "iterations": svm.n_iter_})
        if best is None or accuracy > best[0]:
            best = (accuracy, C, copy.deepcopy(svm))
    return best, rows


def fv_mult_adds(n_descriptors: int, descriptor_dim: int, pca_dim: int, n_gauss: int, levels: int,
                 n_classes: int, fv_dim: int, dsift_pixels: float, sizes) -> int:
    """Multiply-adds per image of the FV pipeline, as matrix products plus a dense SIFT estimate.

    PCA ``N 128c D`` + GMM log-likelihoods ``2 N K D`` (products with 1/sigma^2 and mu/sigma^2) +
    first and second moments ``2 N K D`` per pyramid level + SVM ``classes x dim``; dense SIFT per
    scale of bin size s on P pixels (per channel): Gaussian smoothing ``2 (2 ceil(4 s / 6) + 1) P``,
    gradients and orientation binning about ``12 P``, pooling of 8 orientation maps by a separable
    kernel of width s ``16 s P``, and ``4 x 128`` per descriptor for sampling and normalisation.
    """
    N, K, D = n_descriptors, n_gauss, pca_dim
    sift = sum((2 * (2 * math.ceil(4 * s / 6) + 1) + 12 + 16 * s) * dsift_pixels for s in sizes) + 512 * N
    return int(sift + N * descriptor_dim * D + 2 * N * K * D + levels * 2 * N * K * D + n_classes * fv_dim)


def run_fv(split: Split, preset: Preset, config: Config, seed: int, device: str, methods: list[str], ctx):
    """The FV rows (``fv`` and/or ``fv_pyramid``) of one seed, and their validation rows."""
    from fv import phow

    params = fv_settings(split, preset, config.fv_color)
    with report.PeakMemory() as extraction_memory, ctx.timer("fv features"):
        features, encoder, meta, cached, cache = extract_features(split, params, seed, config, device, ctx)
    try:
        y_fit, y_val, y_test = split.fit[1], split.val[1], split.test[1]
        K, D = encoder.n_components, encoder.pca_.n_components_
        block = 2 * K * D
        levels = len(params["pyramid"])
        regions = " + ".join(f"{r}x{c}" for r, c in params["pyramid"])
        # descriptors per image (before the contrast filter: all are computed), for the cost estimate
        side = tuple(int(round(s * params["scale"])) for s in split.image_shape[:2])
        frames, _ = phow(np.zeros(side, np.float32), sizes=params["sizes"], step=params["step"])
        channels = 1 if params["color"] == "gray" else 3
        extract_train_s = meta["fit_encoder_s"] + meta["encode_fit_s"] + meta["encode_val_s"]
        rows, val_rows = [], []
        for method in methods:
            pyramid = method == "fv_pyramid"
            with report.PeakMemory() as memory, ctx.timer(f"{method} svm"):
                if pyramid:
                    F_fit, F_val, F_test = features["fit"], features["val"], features["test"]
                else:
                    F_fit, F_val, F_test = (_whole_image(features[p], block) for p in ("fit", "val", "test"))
                t = time.perf_counter()
                (val_top1, C, svm), selection = train_svm(F_fit, y_fit, F_val, y_val, preset, device, seed, method)
                svm_s = time.perf_counter() - t
                t = time.perf_counter()
                scores = svm.decision_function(F_test)
                predict_s = time.perf_counter() - t
            val_rows += selection
            dim = F_fit.shape[1]
            n_params = (encoder.pca_.components_.size + encoder.pca_.mean_.size + K * (2 * D + 1)
                        + svm.coef_.size + svm.intercept_.size)
            mult_adds = fv_mult_adds(len(frames), 128 * channels, D, K, levels if pyramid else 1,
                                     len(split.classes), dim, side[0] * side[1] * channels, params["sizes"])
            rows.append(_row(
                method, split, seed, device,
                top1=topk_accuracy(scores, y_test, 1), top5=topk_accuracy(scores, y_test, 5),
                train_seconds=round(extract_train_s + svm_s, 2),
                inference_ms_per_image=round(1000 * (meta["encode_test_s"] + predict_s) / len(y_test), 4),
                feature_dim=dim, params=int(n_params), mult_adds=mult_adds,
                peak_memory_gib=round(max(memory.peak_gib, 0 if cached else extraction_memory.peak_gib), 3),
                selected=f"C={C:g}", val_top1=round(val_top1, 5), features_cached=cached,
                model=f"PCA {D}, GMM {K}, regions {regions if pyramid else '1x1'}", precision="fp32",
            ))
            ctx.log(f"{method} (seed {seed}): test top-1 {rows[-1]['top1_accuracy']:.4f} with C={C:g} "
                    f"(validation {val_top1:.4f})")
        return rows, val_rows
    finally:
        del features
        cache.close()


# --------------------------------------------------------------------------- CNN branch


def cnn_setup(split: Split) -> tuple[str, int | None]:
    """(model name, input size): the small-input AlexNet below 64 px, the 2012 network at 224 above."""
    side = min(split.image_shape[:2])
    return ("alexnet_small", None) if side < 64 else ("alexnet", 224)


def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX-BF16; Linux /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cnn_precision(device: str) -> str:
    """bf16 autocast on CUDA and on CPUs with native bfloat16 (about 1.5-1.8x faster there), else fp32."""
    return "bf16" if device != "cpu" or cpu_has_bf16() else "fp32"


def _model_label(name: str, options: dict) -> str:
    return name + ("(" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")" if options else "")


def run_cnn(split: Split, method: str, recipe: dict, epochs: int, patience: int | None, seed: int, device: str,
            ctx, model_options: dict | None = None) -> tuple[dict, list[dict]]:
    import torch

    from cnn import complexity, get_model
    from cnn.train import TrainConfig, evaluate, train

    if method == "alexnet":
        model_name, input_size = cnn_setup(split)
    else:  # the textbook reference
        model_name, input_size = "alexnet", 224
    recipe = dict(recipe)
    input_size = recipe.pop("input_size", input_size)
    recipe.setdefault("precision", cnn_precision(device))
    model_options = dict(model_options or {})
    torch.manual_seed(seed)
    model = get_model(model_name, num_classes=len(split.classes), in_channels=split.channels, **model_options)
    size = input_size or split.image_shape[0]
    cost = complexity(model, (split.channels, size, size if input_size else split.image_shape[1]))
    train_config = TrainConfig(
        **recipe, epochs=epochs, early_stopping=patience, seed=seed, device=device,
        flip=recipe.get("augment", True) and split.name not in NO_FLIP, input_size=input_size,
        log=str(ctx.out_dir / f"{method}-seed{seed}.jsonl"), progress=None if not ctx.quiet else False,
    )
    ctx.log(f"{method} (seed {seed}): {_model_label(model_name, model_options)}, {cost['params']:,} parameters, "
            f"{epochs} epochs on {len(split.fit[1])} images, device {device}, {train_config.precision}")
    with report.PeakMemory() as memory, ctx.timer(f"{method} train"):
        t = time.perf_counter()
        history = train(model, split.fit, split.val, train_config)
        train_s = time.perf_counter() - t
    metrics = evaluate(model, split.test, batch_size=512, device=device, precision=train_config.precision,
                       mean=history.mean, std=history.std, input_size=input_size)
    val_rows = [{"method": method, "seed": seed, "setting": f"epoch={e['epoch']}",
                 "val_top1": round(e["val_top1"], 5), "seconds": round(e["epoch_seconds"], 2)}
                for e in history.epochs]
    row = _row(
        method, split, seed, device, top1=metrics["top1"], top5=metrics["top5"],
        train_seconds=round(train_s, 2), inference_ms_per_image=round(metrics["ms_per_image"], 4),
        feature_dim=_penultimate_width(model), params=cost["params"], mult_adds=cost["mult_adds"],
        peak_memory_gib=round(memory.peak_gib, 3), selected=f"epoch={history.best_epoch}",
        val_top1=round(history.best_val_top1, 5), features_cached=False,
        model=_model_label(model_name, model_options), precision=train_config.precision,
    )
    if memory.cuda_peak_bytes is not None:
        row["cuda_peak_gib"] = round(memory.cuda_peak_bytes / 1024**3, 3)
    ctx.log(f"{method} (seed {seed}): test top-1 {row['top1_accuracy']:.4f} after {train_s:.0f} s "
            f"(best validation epoch {history.best_epoch})")
    return row, val_rows


def _penultimate_width(model) -> int:
    """Input width of the last linear layer (the learned feature the classifier reads)."""
    from torch import nn

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return int(linears[-1].in_features) if linears else 0


# --------------------------------------------------------------------------- tables and plot


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
    """accuracy.png: test top-1 against training seconds and against mult-adds per image."""
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- the experiment


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"--device must be cpu, cuda or auto, not {device!r}")
    return device


def check_config(config: Config) -> Preset:
    if config.preset not in PRESETS:
        raise ValueError(f"unknown preset {config.preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = set(config.methods) - {"fv", "fv_pyramid", "alexnet"}
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose among fv, fv_pyramid, alexnet")
    if not config.methods and not config.reference:
        raise ValueError("no method to run: give --methods and/or --reference")
    if config.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, not {config.seeds}")
    if config.jobs == 0:
        raise ValueError("--jobs 0 runs nothing; use a positive count or -1 for all cores")
    for name in ("n_train", "n_test", "epochs"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, not {value}")
    return PRESETS[config.preset]


def run(config: Config, ctx) -> dict[str, list[dict]]:
    preset = check_config(config)
    device = _resolve_device(config.device)
    split = load_split(config, preset, ctx)
    rows, val_rows = [], []
    fv_methods = [m for m in ("fv", "fv_pyramid") if m in config.methods]
    epochs = config.epochs or preset.epochs
    for seed in range(config.seeds):
        if fv_methods:
            fv_rows, fv_val = run_fv(split, preset, config, seed, device, fv_methods, ctx)
            rows += fv_rows
            val_rows += fv_val
        if "alexnet" in config.methods:
            options = {**CNN_MODEL_OPTIONS, "lrn": config.lrn}
            row, cnn_val = run_cnn(split, "alexnet", {**CNN_RECIPE, **preset.cnn}, epochs, preset.patience, seed,
                                   device, ctx, options)
            rows.append(row)
            val_rows += cnn_val
        if config.reference:
            row, cnn_val = run_cnn(split, "alexnet_224_textbook", REFERENCE_RECIPE,
                                   config.epochs or REFERENCE_EPOCHS, None, seed, device, ctx)
            rows.append(row)
            val_rows += cnn_val
    summary = summarise(rows)
    plot(summary, ctx.out_dir / "accuracy.png",
         f"{split.name}, preset {config.preset}: {len(split.fit[1])} training images, {len(split.test[1])} test")
    return {"results": rows, "summary": summary, "validation": val_rows, "published": PUBLISHED}
