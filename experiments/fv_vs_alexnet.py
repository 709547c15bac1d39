"""Experiment ``fv_vs_alexnet``: SIFT + Fisher vectors + linear SVM against AlexNet, one data set.

The 2012 story (ILSVRC-2012: SIFT + FVs 26.2% top-5 error, AlexNet 15.3%) at a scale a
laptop can run, and at full scale where the data and the hardware are::

    python -m experiments.run fv_vs_alexnet                      # Fashion-MNIST, preset "quick"
    python -m experiments.run fv_vs_alexnet --preset full --seeds 3
    python -m experiments.run fv_vs_alexnet --dataset cifar10 --device cuda
    python -m experiments.run fv_vs_alexnet --dataset imagefolder --data-dir ~/photos --image-size 96
    python -m experiments.run fv_vs_alexnet --model cifar_resnet18  # any registered model as the CNN row
    python -m experiments.run --rerun results/fv_vs_alexnet/<run-id>/manifest.json

The protocol (one split for both branches, the FV row, the CNN row, every column) is
:mod:`experiments.protocol`'s. This module holds the settings, as typed values checked when it is
imported, and :func:`resolve`, which turns the command line into one frozen :class:`Plan`: every
decision of the run (image-size rule, colour mode, model and its options, precision, Cs, epochs,
flip, device, batch sizes). The run reads only the plan, and ``manifest.json`` records it whole.

* FV branch: multi-scale dense SIFT (RootSIFT) -> PCA -> diagonal GMM fitted on descriptors of the
  fit images -> improved Fisher vectors with a spatial pyramid (``fv_pyramid``) and of the whole
  image (``fv``) -> :class:`fv.ValidatedLinearSVM` on the fit part, C chosen on the validation part.
  Small images (side under 64 px: Fashion-MNIST, CIFAR, SVHN) use ``FV_SMALL``, others ``FV_LARGE``;
  grey images give gray SIFT, RGB images opponent SIFT unless ``--fv-color`` says otherwise.
* CNN branch (``--model``, default ``alexnet``): for ``alexnet``, ``alexnet_small`` on images under
  64 px, the 2012 network at 224 x 224 otherwise (batches resized on the fly), without its two LRN
  layers unless ``--lrn`` (they take about 30% of the training time on a CPU); any other registered
  model trains on the images as stored, and a model that cannot take them is refused before the run
  starts. Recipe ``CNN_RECIPE`` with the preset's epochs; precision ``auto`` (bf16 where the device
  multiplies bfloat16 natively, :func:`cnn.train.resolve_precision`); no flip for digits.
  ``--reference`` adds the textbook row: the 2012 AlexNet at 224 x 224, SGD lr 0.01, momentum 0.9,
  batch 128, 10 epochs, fp32 (meant for a GPU: on a CPU it takes hours).

Tables: ``results`` (one row per method and seed), ``summary`` (mean and standard deviation over
seeds), ``validation`` (every C and every epoch on the validation part), ``published`` (the ILSVRC
figures with their sources, and the Fashion-MNIST benchmark's best classical baseline);
``accuracy.png`` plots test accuracy against training time and against mult-adds per image.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from cnn import list_models
from cnn.train import TrainConfig, resolve_device, resolve_precision
from fv import FisherVectorEncoder

from . import datasets as ds
from .protocol import (CNNPlan, DataPlan, FeatureCache, FVPlan, Split, check_model, cnn_row, fv_rows, load_split,
                       model_input_shape, plot, summarise)

DESCRIPTION = "SIFT + Fisher vectors + linear SVM against AlexNet on one data set (the 2012 comparison)"

# --------------------------------------------------------------------------- settings (typed, checked at import)

#: Parameters of the encoder that the plan sets elsewhere: where and how fast it computes, and the seed.
_COMPUTE_ONLY = (*FeatureCache.COMPUTE_ONLY, "random_state")


def encoder_params(**params) -> dict:
    """Every parameter of a ``FisherVectorEncoder`` built with ``params`` (defaults filled in),
    less those that only say where it computes: a misspelt name fails here, when the module is
    imported, not in the middle of a run."""
    full = FisherVectorEncoder(**params).get_params()
    return {k: v for k, v in full.items() if k not in _COMPUTE_ONLY}


#: FV settings for small images (side < 64 px: Fashion-MNIST, CIFAR, SVHN): images scaled by 2,
#: bin sizes 4, 6, 8 px with step 2, PCA to 32 dimensions, 32 Gaussians, a 1x1 + 2x2 pyramid.
FV_SMALL = encoder_params(scale=2.0, sizes=(4, 6, 8), step=2, pca_components=32, n_components=32,
                          pyramid=((1, 1), (2, 2)), n_fit_descriptors=200_000, n_fit_images=10_000)
#: FV settings for larger images: vl_phow's bin sizes 4, 6, 8, 10 with step 4, PCA 64, 64 Gaussians.
FV_LARGE = encoder_params(scale=1.0, sizes=(4, 6, 8, 10), step=4, pca_components=64, n_components=64,
                          pyramid=((1, 1), (2, 2)), n_fit_descriptors=200_000, n_fit_images=5_000)

#: The CNN recipe: AdamW (decoupled weight decay 0.05, none on biases) with a one-cycle learning
#: rate peaking at 2e-3 after a quarter of the steps, label smoothing 0.1, padded random crop and
#: flip, batch 128. Chosen on the validation part of a 10,000-image subset, where it learned faster
#: in the first epochs than one-cycle Nesterov SGD (peak 0.05) with or without BatchNorm.
CNN_RECIPE = TrainConfig(epochs=10, batch_size=128, optimizer="adamw", lr=2e-3, weight_decay=0.05,
                         schedule="onecycle", pct_start=0.25, label_smoothing=0.1, augment=True, crop_padding=2)

#: The textbook AlexNet-at-224 recipe of the reference row (``--reference``).
REFERENCE_RECIPE = TrainConfig(epochs=10, batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False,
                               weight_decay=5e-4, schedule="constant", label_smoothing=0.0, augment=False,
                               precision="fp32", input_size=224)


@dataclass(frozen=True)
class Preset:
    """Sizes and budgets of one preset, every value typed and checked. ``None`` sizes: the whole split."""

    n_train: int | None  # images of the training split used (fit + validation), stratified subset
    n_test: int | None  # test images used
    fv_small: dict  # encoder parameters for images under 64 px (encoder_params)
    fv_large: dict  # encoder parameters for larger images
    Cs: tuple[float, ...]  # SVM C values tried on the validation part
    svm_tol: float  # LinearSVM tolerance (relative duality gap)
    cnn: TrainConfig  # the CNN recipe with the preset's epochs and batch size


def _preset(n_train, n_test, *, Cs, svm_tol=1e-3, fv=None, **cnn) -> Preset:
    fv = fv or {}
    return Preset(n_train, n_test, encoder_params(**{**FV_SMALL, **fv}), encoder_params(**{**FV_LARGE, **fv}),
                  tuple(float(c) for c in Cs), svm_tol, dataclasses.replace(CNN_RECIPE, **cnn))


PRESETS: dict[str, Preset] = {
    # seconds: the code path end to end on a few hundred images (tests, first try on new data)
    "smoke": _preset(600, 300, Cs=(1.0,), epochs=1, batch_size=64,
                     fv=dict(sizes=(4, 8), step=4, pca_components=16, n_components=8, n_fit_descriptors=20_000,
                             n_fit_images=300, gmm_max_iter=50)),
    # about 5 minutes on 2 CPU cores: 10,000 training images, the whole test split
    "quick": _preset(10_000, None, Cs=(0.3, 1.0, 3.0), epochs=6),
    # the real comparison: every image
    "full": _preset(None, None, Cs=(0.3, 1.0, 3.0), epochs=10),
}

#: Data sets whose classes change under a horizontal flip (digits): no flip augmentation.
NO_FLIP = {"mnist", "svhn"}
#: Images with a side below this many pixels get FV_SMALL and alexnet_small.
SMALL_IMAGE = 64
FV_METHODS = ("fv", "fv_pyramid")

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


# --------------------------------------------------------------------------- command line and plan


@dataclass
class Config:
    dataset: str = field(default="fashion-mnist", metadata={"help": "data set (see 'experiments.run datasets')"})
    data_dir: str | None = field(default=None, metadata={"help": "the folder to read the data set from"})
    preset: str = field(default="quick", metadata={"help": "sizes and budgets", "choices": tuple(PRESETS)})
    seeds: int = field(default=1, metadata={"help": "repetitions with seeds 0..N-1 (GMM, SVM, CNN init, order)"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda or auto (cuda when available)"})
    jobs: int = field(default=-1, metadata={"help": "parallel workers of FV extraction (-1: all cores)"})
    methods: list[str] = field(default_factory=lambda: ["fv", "fv_pyramid", "cnn"],
                               metadata={"help": "methods to run: fv, fv_pyramid, cnn (the --model row)"})
    model: str = field(default="alexnet", metadata={"help": "the CNN row's model (alexnet: alexnet_small below "
                                                            "64 px, the 2012 network at 224 above)",
                                                    "choices": tuple(list_models())})
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


@dataclass(frozen=True)
class Plan:
    """Every decision of one run (module docstring). Built by :func:`resolve`, recorded whole in
    ``manifest.json``, read back by ``python -m experiments.run --rerun``."""

    preset: str  # the preset's name, for the record: what it stood for is spelt out below
    data: DataPlan
    seeds: int  # seeds 0 .. seeds - 1
    fv_methods: tuple[str, ...]  # among "fv", "fv_pyramid"
    fv: FVPlan | None  # None when no FV method runs
    cnn: tuple[CNNPlan, ...]  # the CNN rows, in order


def check_config(config: Config) -> Preset:
    """The preset of ``config``; a clear error for any value that cannot run."""
    if config.preset not in PRESETS:
        raise ValueError(f"unknown preset {config.preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = set(config.methods) - {*FV_METHODS, "cnn"}
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose among fv, fv_pyramid, cnn")
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
    if config.model not in list_models():
        raise ValueError(f"unknown model {config.model!r}; choose one of {', '.join(list_models())}")
    if config.lrn and config.model != "alexnet":
        raise ValueError(f"--lrn applies to alexnet only, not to --model {config.model}")
    return PRESETS[config.preset]


def data_plan(config: Config) -> DataPlan:
    """The images a run of ``config`` uses (the part of the plan known before reading any data)."""
    preset = check_config(config)
    return DataPlan(dataset=ds.canonical_name(config.dataset), data_dir=config.data_dir,
                    image_size=config.image_size,
                    n_train=config.n_train if config.n_train is not None else preset.n_train,
                    n_test=config.n_test if config.n_test is not None else preset.n_test,
                    validation_fraction=config.validation_fraction)


def _fv_plan(config: Config, preset: Preset, split: Split, device: str) -> FVPlan:
    small = min(split.image_shape[:2]) < SMALL_IMAGE
    params = dict(preset.fv_small if small else preset.fv_large)
    color = config.fv_color
    if color == "auto":
        color = "gray" if split.channels == 1 else "opponent"
    if split.channels == 1 and color != "gray":
        raise ValueError(f"--fv-color {color} needs RGB images; this data set is grayscale (use gray or auto)")
    params.update(color=color, n_fit_images=min(params["n_fit_images"], len(split.fit[1])),
                  n_jobs=config.jobs, device=device)
    return FVPlan(encoder=params, Cs=tuple(sorted(preset.Cs)), svm_tol=preset.svm_tol, svm_max_iter=1000,
                  device=device, cache_dir=config.cache_dir or None)


def _cnn_plan(method: str, model: str, options: dict, recipe: TrainConfig, split: Split, device: str,
              epochs: int | None) -> CNNPlan:
    train = dataclasses.replace(
        recipe, epochs=epochs or recipe.epochs, device=device, precision=resolve_precision(recipe.precision, device),
        flip=recipe.augment and split.name not in NO_FLIP)
    check_model(model, options, len(split.classes), model_input_shape(split.image_shape, split.channels,
                                                                      train.input_size))
    return CNNPlan(method=method, model=model, model_options=options, train=train)


def resolve(config: Config, split: Split) -> Plan:
    """The plan of a run of ``config`` on the images of ``split``: every decision made here, once."""
    preset = check_config(config)
    device = str(resolve_device(config.device))
    fv_methods = tuple(m for m in FV_METHODS if m in config.methods)
    cnn = []
    if "cnn" in config.methods:
        if config.model == "alexnet":
            small = min(split.image_shape[:2]) < SMALL_IMAGE
            model, recipe = ("alexnet_small", preset.cnn) if small else (
                "alexnet", dataclasses.replace(preset.cnn, input_size=224))
            cnn.append(_cnn_plan("alexnet", model, {"lrn": config.lrn}, recipe, split, device, config.epochs))
        else:
            cnn.append(_cnn_plan(config.model, config.model, {}, preset.cnn, split, device, config.epochs))
    if config.reference:
        cnn.append(_cnn_plan("alexnet_224_textbook", "alexnet", {}, REFERENCE_RECIPE, split, device, config.epochs))
    return Plan(preset=config.preset, data=data_plan(config), seeds=config.seeds, fv_methods=fv_methods,
                fv=_fv_plan(config, preset, split, device) if fv_methods else None, cnn=tuple(cnn))


# --------------------------------------------------------------------------- the experiment


def run(config: Config | Plan, ctx) -> dict[str, list[dict]]:
    """Run from the command line's ``config``, or redo a recorded ``Plan``; the tables."""
    if isinstance(config, Plan):
        plan = config
        split = load_split(plan.data, ctx)
    else:
        split = load_split(data_plan(config), ctx)
        plan = resolve(config, split)
    ctx.record_plan(plan)
    rows, validation = [], []
    for seed in range(plan.seeds):
        if plan.fv_methods:
            fv_table, fv_validation = fv_rows(split, plan.fv, seed, plan.fv_methods, ctx)
            rows += fv_table
            validation += fv_validation
        for cnn_plan in plan.cnn:
            row, cnn_validation = cnn_row(split, cnn_plan, seed, ctx)
            rows.append(row)
            validation += cnn_validation
    summary = summarise(rows)
    plot(summary, ctx.out_dir / "accuracy.png",
         f"{split.name}, preset {plan.preset}: {len(split.fit[1])} training images, {len(split.test[1])} test")
    return {"results": rows, "summary": summary, "validation": validation, "published": PUBLISHED}
