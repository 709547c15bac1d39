"""Images to Fisher vectors, as a scikit-learn transformer, and the full FV + linear SVM pipeline.

Data flow of :class:`FisherVectorEncoder` (Chatfield et al. 2011; Sanchez et al. 2013)::

    uint8 images (N, H, W[, 3])
      -> float in [0, 1], optionally rescaled (``scale``; small images such as 28 x 28 need it)
      -> multi-scale dense SIFT (:func:`fv.phow`), low-contrast descriptors dropped
      -> RootSIFT (:func:`root_sift`, optional)
      -> PCA to ``pca_components`` dimensions (optionally whitened), fitted on a sample
      -> diagonal GMM with ``n_components`` components (:class:`fv.DiagonalGMM`), fitted on a sample
      -> improved Fisher vector per image (:func:`fv.fisher_vectors`), or one per spatial-pyramid
         region (:func:`fv.spatial_pyramid_fisher_vectors`)
      -> (N, dim) float32, dim = R * 2 * K * D  (R pyramid regions, K components, D PCA dims)

``transform`` works on chunks of ``batch_size`` images, in parallel with joblib (``n_jobs``,
``backend``), one torch/BLAS thread per worker; every chunk goes straight into its rows of one
preallocated float32 array, or of a disk memmap given as ``out`` (see :func:`encode_to_file`), so the
whole FV matrix never needs two copies in memory. With a CUDA ``device`` the same chain runs on the
GPU, chunk after chunk: the uint8 images go up, the Fisher vectors come back.

Output layout: a fitted encoder's ``regions_`` lists the regions of the output vector in order, one
:class:`PyramidRegion` (grid, cell, slice) per pyramid cell: for each grid of ``pyramid`` in order,
its cells row-major, each a block of 2 K D values (:mod:`fv.fisher`, Spatial pyramid).
``transform(images, regions="whole")`` encodes the whole image only (one block), and
:meth:`FisherVectorEncoder.whole_image_features` derives the same vectors from pyramid features
that hold a 1x1 level, without encoding again. Its cost (descriptors, parameters, multiply-adds per
image) is :func:`fv.complexity`.

Saving: :meth:`FisherVectorEncoder.save` writes a folder of ``.npy`` arrays and one JSON manifest
(parameters, fitted values, a SHA-256 checksum per array and one of the manifest itself), each
file through a temporary name; :meth:`FisherVectorEncoder.load` reads it back with
``allow_pickle=False`` and refuses a missing, truncated or changed file by name, and a folder of
another format version.

:func:`make_pipeline` ends the encoder in :class:`ValidatedLinearSVM`, a linear SVM whose C is chosen
on a stratified validation part of the training data, then refitted on all of it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs, parallel_config
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from .dsift import DESCRIPTOR_SIZE, phow
from .fisher import DEFAULT_GRID, fisher_vectors, gather_rows, spatial_pyramid_fisher_vectors
from .gmm import DiagonalGMM
from ._compute import atomic_path, chunk_rows, resolve_device
from .svm import ValidatedLinearSVM

BACKENDS = ("auto", "threading", "loky", "multiprocessing")
#: Images per CPU task when ``batch_size=None``: a task size, not a memory budget -- enough work that
#: joblib's cost per task is small beside it, few enough images that the tasks spread evenly over the
#: workers (a chunk's memory, about 1 MiB per 56 x 56 image, stays far below any budget).
_CPU_CHUNK_IMAGES = 32
#: Working set of a GPU chunk per pixel of the rescaled image and per colour channel described, in
#: bytes, when ``batch_size=None``: the chunk gets ``fv._compute.chunk_rows`` of the device's budget
#: (1 GiB), 2**20 pixels per channel. The descriptors dominate: at step 2 with three bin sizes (the
#: small-image settings) 3/4 of a descriptor of 128 float32 per pixel, 384 bytes, held about three
#: times at the peak (dense SIFT's output, its compacted copy, RootSIFT's result), where one scale's
#: smoothed image, gradients and 8 orientation maps take about 80 bytes per pixel.
_DEVICE_BYTES_PER_PIXEL = 1024
#: Version of the folder layout written by ``FisherVectorEncoder.save``; ``load`` reads this one only.
SAVE_FORMAT_VERSION = 1

__all__ = ["root_sift", "FisherVectorEncoder", "ValidatedLinearSVM", "make_pipeline", "encode_to_file",
           "PyramidRegion", "descriptor_channels", "scaled_size", "SAVE_FORMAT_VERSION"]


def root_sift(descriptors, eps: float = 1e-12):
    """RootSIFT (Arandjelovic & Zisserman 2012): L1-normalise each descriptor, then square root.

    The Euclidean distance between RootSIFT vectors is the Hellinger kernel's distance between
    the original histograms. ``descriptors``: (N, 128) non-negative, numpy or torch; zero rows stay
    zero. Returns the same kind and dtype.
    """
    if isinstance(descriptors, torch.Tensor):
        return torch.sqrt(descriptors / descriptors.sum(dim=-1, keepdim=True).clamp_min(eps))
    d = np.asarray(descriptors)
    if d.size and d.min() < 0:
        raise ValueError("root_sift needs non-negative descriptors (SIFT histograms)")
    return np.sqrt(d / np.maximum(d.sum(axis=-1, keepdims=True), eps)).astype(d.dtype, copy=False)


def descriptor_channels(color: str) -> int:
    """Channels that dense SIFT describes in the colour mode ``color`` of :func:`fv.phow`: 1 for
    ``"gray"``, 3 for ``"rgb"``, ``"opponent"`` and ``"hsv"`` (whatever the images hold: phow turns
    RGB into gray and replicates gray into three channels). A descriptor has 128 values per channel."""
    return 1 if color == "gray" else 3


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(H', W') = (round(H scale), round(W scale)): the size of an image after the encoder's ``scale``."""
    return int(round(height * scale)), int(round(width * scale))


@dataclass(frozen=True)
class PyramidRegion:
    """One region of an encoder's output vector: cell ``cell = (row, col)`` of the grid
    ``grid = (rows, cols)``, whose Fisher vector (2 K D values) is ``vector[slice]``.

    Cells number the image from the top left, row-major; a descriptor centred at (x, y) of an
    H' x W' image lies in row floor(y rows / H'), column floor(x cols / W') (:mod:`fv.fisher`).
    """

    grid: tuple[int, int]
    cell: tuple[int, int]
    slice: slice


def _pyramid_regions(pyramid, block: int) -> tuple[PyramidRegion, ...]:
    """The regions of the output vector in order: for each grid of ``pyramid`` in order, its cells
    row-major, ``block`` values each; ``pyramid=None`` is the whole image, one 1x1 region."""
    grids = ((1, 1),) if not pyramid else tuple((int(rows), int(cols)) for rows, cols in pyramid)
    cells = [(grid, (row, col)) for grid in grids for row in range(grid[0]) for col in range(grid[1])]
    return tuple(PyramidRegion(grid, cell, slice(i * block, (i + 1) * block))
                 for i, (grid, cell) in enumerate(cells))


# --------------------------------------------------------------------------- per-chunk work


def _as_float_images(images, scale: float, device=None):
    """uint8 (or float in [0, 1]) images -> float32 in [0, 1], resized by ``scale`` (bilinear, as
    OpenCV's ``INTER_LINEAR``). NumPy on the CPU; a tensor on ``device`` when one is given."""
    x = np.asarray(images)
    size = scaled_size(*x.shape[1:3], scale)
    if device is None:
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32, copy=False)
        if scale != 1.0:
            import cv2

            x = np.stack([cv2.resize(im, size[::-1], interpolation=cv2.INTER_LINEAR) for im in x])
        return x
    t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    t = t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()
    if scale != 1.0:  # the same half-pixel bilinear rule as cv2.resize (agrees to 3e-6, tested)
        planes = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
        planes = torch.nn.functional.interpolate(planes, size=size, mode="bilinear", align_corners=False)
        t = planes[:, 0] if t.ndim == 3 else planes.permute(0, 2, 3, 1).contiguous()
    return t


def _phow(x, params: dict):
    return phow(
        x, sizes=params["sizes"], step=params["step"], magnif=params["magnif"],
        contrast_threshold=params["contrast_threshold"], fast=params["fast"], color=params["color"],
        window_size=params["window_size"],
    )


def _local_features(images, params: dict):
    """Descriptors of a chunk of equally sized images: lists of (N_i, 128) float32 and (N_i, 2) frames,
    low-contrast descriptors dropped, RootSIFT applied; plus the (H, W) the frames refer to."""
    x = _as_float_images(images, params["scale"])
    frames, desc = _phow(x, params)
    keep = frames[..., 2] >= params["contrast_threshold"]
    descs, frs = [], []
    for b in range(len(x)):
        d = desc[b][keep[b]]
        if params["root_sift"]:
            d = root_sift(d)
        descs.append(d.astype(np.float32, copy=False))
        frs.append(frames[b][keep[b], :2])
    return descs, frs, x.shape[1:3]


def _local_features_padded(device: torch.device, images, params: dict):
    """``_local_features`` computed in torch on ``device``, the chunk kept as one padded tensor:
    descriptors (B, n, 128) and frames (B, n, 2) with each image's kept rows first (in their order),
    the per-image counts of kept rows, and the (H, W) the frames refer to."""
    x = _as_float_images(images, params["scale"], device)
    frames, desc = _phow(x, params)
    keep = frames[..., 2] >= params["contrast_threshold"]
    order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)
    desc = gather_rows(desc, order)
    if params["root_sift"]:
        desc = root_sift(desc)
    return desc, gather_rows(frames[..., :2], order), keep.sum(1).tolist(), tuple(x.shape[1:3])


def _project(desc, pca: dict):
    """PCA projection of (..., 128) descriptors, NumPy or torch (``pca`` holds the same kind)."""
    y = (desc - pca["mean"]) @ pca["components"].T
    if pca["whiten"]:
        y /= pca["scale"]
    return y if isinstance(y, torch.Tensor) else y.astype(np.float32, copy=False)


def _fisher(projected, frames, shape, params: dict, gmm: DiagonalGMM, counts=None):
    """Fisher vectors (B, dim) float32 of the projected descriptor sets of one chunk under the fitted
    mixture ``gmm``, on the sets' device: lists of per-image arrays, or padded tensors with ``counts``."""
    common = dict(improved=params["improved"], alpha=params["alpha"], dtype=torch.float32, counts=counts)
    if params["pyramid"]:
        return spatial_pyramid_fisher_vectors(projected, frames, shape, gmm, grid=params["pyramid"], **common)
    return fisher_vectors(projected, gmm, **common)


def _encode_chunk(images, params: dict, pca: dict, gmm: DiagonalGMM) -> np.ndarray:
    descs, frames, shape = _local_features(images, params)
    return _fisher([_project(d, pca) for d in descs], frames, shape, params, gmm)


def _encode_chunk_padded(device: torch.device, images, params: dict, pca: dict, gmm: DiagonalGMM) -> np.ndarray:
    """``_encode_chunk`` on ``device``, the chunk padded throughout (no step per image); ``pca``
    holds tensors on ``device``."""
    desc, frames, counts, shape = _local_features_padded(device, images, params)
    return _fisher(_project(desc, pca), frames, shape, params, gmm, counts=counts).cpu().numpy()


def _pick(descs: list, per_image: int, seeds, width: int) -> np.ndarray:
    """Up to ``per_image`` random descriptors of each image (for fitting PCA and GMM), drawn with the
    image's own seed, so that the sample does not depend on how the images were chunked."""
    picked = [d[np.random.default_rng(s).choice(len(d), min(per_image, len(d)), replace=False)]
              for d, s in zip(descs, seeds) if len(d)]
    return np.concatenate(picked) if picked else np.empty((0, width), np.float32)


def _sample_chunk(images, params: dict, per_image: int, seeds) -> np.ndarray:
    descs, _, _ = _local_features(images, params)
    return _pick(descs, per_image, seeds, DESCRIPTOR_SIZE * descriptor_channels(params["color"]))


def _sample_chunk_padded(device: torch.device, images, params: dict, per_image: int, seeds) -> np.ndarray:
    """``_sample_chunk`` on ``device`` from the padded descriptors of ``_local_features_padded``."""
    desc, _, counts, _ = _local_features_padded(device, images, params)
    desc = desc.cpu().numpy()
    width = DESCRIPTOR_SIZE * descriptor_channels(params["color"])
    return _pick([d[:c] for d, c in zip(desc, counts)], per_image, seeds, width)


def _one_thread(fn, *args):
    """Run ``fn`` with one torch thread (joblib limits BLAS threads in its workers itself)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(previous)


# --------------------------------------------------------------------------- saving and loading

_MANIFEST = "encoder.json"
_FORMAT = "fv.FisherVectorEncoder"
#: The fitted estimators a saved encoder holds, by the name its manifest gives them; loading builds
#: these classes only, from their parameters and arrays (no code is read from the folder).
_SAVED_CLASSES = {"sklearn.decomposition.PCA": PCA, "fv.DiagonalGMM": DiagonalGMM}


def _json_value(value, name: str):
    """``value`` as JSON data: NumPy scalars as Python numbers, tuples as lists, a torch device by its
    name; a ``TypeError`` naming ``name`` for anything else."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v, name) for v in value]
    raise TypeError(f"{name} = {value!r} ({type(value).__name__}) cannot be saved as JSON; "
                    "use numbers, strings, None or sequences of them")


def _tuples(value):
    """JSON lists back into tuples (the sequence parameters of the encoder are tuples)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_checksum(body: dict) -> str:
    """SHA-256 of the manifest without its own checksum, as canonical JSON (sorted keys)."""
    return _sha256(json.dumps(body, sort_keys=True).encode())


def _save_array(array: np.ndarray, path: Path) -> dict:
    """``array`` into the ``.npy`` file ``path`` (through a temporary name); its manifest record."""
    array = np.ascontiguousarray(array)
    with atomic_path(path, suffix=".tmp.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    return {"file": path.name, "shape": list(array.shape), "dtype": array.dtype.str,
            "sha256": _sha256(array.tobytes())}


def _load_array(folder: Path, record: dict) -> np.ndarray:
    """The array of a manifest record, checked against its shape, dtype and checksum."""
    name = str(record["file"])
    path = folder / name
    if Path(name).name != name:
        raise ValueError(f"{folder / _MANIFEST} names the array file {name!r} outside its folder; not loaded")
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: the encoder saved in {folder} is incomplete; "
                                "save it again") from None
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npy array ({exc}): the file is truncated or damaged; "
                         "save the encoder again") from exc
    if (list(array.shape) != record["shape"] or array.dtype.str != record["dtype"]
            or _sha256(np.ascontiguousarray(array).tobytes()) != record["sha256"]):
        raise ValueError(f"{path} does not match the shape, dtype or SHA-256 checksum recorded in "
                         f"{folder / _MANIFEST}: it changed after saving; save the encoder again")
    return array


def _save_estimator(estimator, prefix: str, folder: Path) -> dict:
    """The manifest entry of a fitted PCA or DiagonalGMM: its class, its parameters, its fitted values
    (JSON) and arrays (``<prefix><attribute>.npy``, one record each)."""
    name = next((k for k, cls in _SAVED_CLASSES.items() if type(estimator) is cls), None)
    if name is None:
        raise TypeError(f"cannot save a {type(estimator).__name__}; FisherVectorEncoder.save knows "
                        f"{', '.join(_SAVED_CLASSES)}")
    params = estimator.get_params(deep=False)
    entry = {"class": name, "params": {k: _json_value(v, f"{prefix}{k}") for k, v in params.items()},
             "values": {}, "arrays": {}}
    for key, value in vars(estimator).items():
        if key in params:
            continue
        if isinstance(value, np.ndarray):
            entry["arrays"][key] = _save_array(value, folder / f"{prefix}{key}.npy")
        else:
            entry["values"][key] = _json_value(value, f"{prefix}{key}")
    return entry


def _load_estimator(entry: dict, folder: Path):
    """The fitted estimator of a manifest entry (``_save_estimator``)."""
    estimator = _SAVED_CLASSES[entry["class"]](**entry["params"])
    for key, value in entry["values"].items():
        setattr(estimator, key, value)
    for key, record in entry["arrays"].items():
        setattr(estimator, key, _load_array(folder, record))
    return estimator


def _read_manifest(folder: Path) -> dict:
    """The checked manifest of a saved encoder: its format, version and checksum."""
    path = folder / _MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: {folder} holds no saved FisherVectorEncoder "
                                "(FisherVectorEncoder.save writes it last)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path} is not readable JSON ({exc}): the file is truncated or damaged; "
                         "save the encoder again") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        raise ValueError(f"{path} does not describe a saved FisherVectorEncoder")
    version = manifest.get("format_version")
    if version != SAVE_FORMAT_VERSION:
        raise ValueError(f"{path} was written in save format version {version!r}; this version of fv reads "
                         f"version {SAVE_FORMAT_VERSION} only: fit the encoder again and save it")
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    if manifest.get("sha256") != _manifest_checksum(body):
        raise ValueError(f"{path} does not match its SHA-256 checksum: it changed after saving; "
                         "save the encoder again")
    return manifest


# --------------------------------------------------------------------------- the encoder


class FisherVectorEncoder(TransformerMixin, BaseEstimator):
    """Images -> improved Fisher vectors of multi-scale dense SIFT (module docstring).

    Parameters
    ----------
    sizes, step, magnif, window_size, contrast_threshold, fast, color :
        Dense SIFT, as :func:`fv.phow` (bin sizes in pixels of the rescaled image, grid step,
        smoothing sigma = size / magnif, Gaussian window in bins, contrast threshold below which
        descriptors are dropped, flat-window fast mode, colour mode).
    scale : float, default 1.0
        Resize factor applied to every image first (bilinear); 2 or more for 28 x 28 or 32 x 32 data.
    root_sift : bool, default True
        Apply RootSIFT before PCA.
    pca_components : int or None, default 64
        PCA dimension D (None keeps all 128 x channels).
    whiten : bool, default False
        Scale the PCA components to unit variance.
    n_components : int, default 256
        GMM components K.
    gmm_max_iter : int, default 100
    n_fit_descriptors : int, default 200_000
        Descriptors sampled (evenly over the fitting images) to fit PCA and the GMM.
    n_fit_images : int or None, default 10_000
        Images sampled to draw those descriptors from (None: all).
    pyramid : sequence of (rows, cols) or None, default 1x1 + 2x2 + 3x1
        Spatial pyramid; None encodes the whole image only.
    improved : bool, default True
        Signed power (``alpha``) and L2 normalisation (per region, then the whole vector).
    alpha : float, default 0.5
    batch_size : int or None, default None
        Images per chunk (one parallel task, or one step on a GPU). A chunk's descriptors are held at
        once, so its memory grows with the image size: about 1 MiB per 56 x 56 image at the
        Fashion-MNIST settings. None: 32 on the CPU (a task size: ``_CPU_CHUNK_IMAGES``); on a GPU,
        as many images as fit the device's chunk budget (``fv._compute``, 1 GiB) at about 1 KiB
        per pixel after ``scale`` and per colour channel described (``_DEVICE_BYTES_PER_PIXEL``):
        2**20 pixels, 334 gray Fashion-MNIST images at ``scale=2``.
    n_jobs : int, default 1
        Parallel workers on the CPU (joblib; -1: all cores).
    backend : str, default "auto"
        joblib backend: "threading", "loky", "multiprocessing", or "auto" (threads for up to two
        workers, else loky processes; see ``_backend``).
    device : None or str, default None
        Where to compute. None or "cpu": descriptors and Fisher vectors on the CPU in ``n_jobs``
        workers, the GMM fit in torch on the CPU. A CUDA device ("cuda", "cuda:1"): the whole chain
        -- resizing, dense SIFT, RootSIFT, PCA projection, GMM fit and Fisher vectors -- runs in
        torch on that GPU, one chunk at a time in this process (``n_jobs`` and ``backend`` are then
        unused), and only the finished Fisher vectors come back to the host. Both give the same
        vectors to float32 rounding (tested on the CPU).
    random_state : int or None, default 0
    verbose : bool, default False
        Progress bars (tqdm) for extraction and encoding.

    Attributes
    ----------
    pca_ : sklearn PCA
    gmm_ : fv.DiagonalGMM
    n_features_out_ : int
        Length of one Fisher vector, R * 2 K D.
    regions_ : tuple of PyramidRegion
        The R regions of the output vector in order (grid, cell, slice; module docstring).
    n_fit_descriptors_ : int
        Descriptors PCA and the GMM were fitted on.

    Input: a stack of equally sized images, (N, H, W) gray or (N, H, W, 3) RGB, uint8 or float in
    [0, 1] (finite); the scikit-learn tags say so (``three_d_array``, not ``two_d_array``), so
    scikit-learn's checks built on 2-D arrays do not apply.
    """

    def __init__(self, *, sizes=(4, 6, 8, 10), step=3, magnif=6.0, window_size=1.5, contrast_threshold=0.005,
                 fast=True, color="gray", scale=1.0, root_sift=True, pca_components=64, whiten=False,
                 n_components=256, gmm_max_iter=100, n_fit_descriptors=200_000, n_fit_images=10_000,
                 pyramid=DEFAULT_GRID, improved=True, alpha=0.5, batch_size=None, n_jobs=1, backend="auto",
                 device=None, random_state=0, verbose=False):
        self.sizes = sizes
        self.step = step
        self.magnif = magnif
        self.window_size = window_size
        self.contrast_threshold = contrast_threshold
        self.fast = fast
        self.color = color
        self.scale = scale
        self.root_sift = root_sift
        self.pca_components = pca_components
        self.whiten = whiten
        self.n_components = n_components
        self.gmm_max_iter = gmm_max_iter
        self.n_fit_descriptors = n_fit_descriptors
        self.n_fit_images = n_fit_images
        self.pyramid = pyramid
        self.improved = improved
        self.alpha = alpha
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.backend = backend
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        """scikit-learn's tags: the input is a stack of images, (N, H, W) or (N, H, W, 3), not a 2-D
        (samples, features) array; no NaN; the output is float32 whatever the input."""
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # -- helpers ----------------------------------------------------------------

    def _params(self) -> dict:
        pyramid = tuple(tuple(int(v) for v in g) for g in self.pyramid) if self.pyramid else None
        return {
            "sizes": tuple(int(s) for s in self.sizes), "step": int(self.step), "magnif": float(self.magnif),
            "window_size": float(self.window_size), "contrast_threshold": float(self.contrast_threshold),
            "fast": bool(self.fast), "color": self.color, "scale": float(self.scale),
            "root_sift": bool(self.root_sift), "pyramid": pyramid, "improved": bool(self.improved),
            "alpha": float(self.alpha),
        }

    def _check_images(self, X) -> np.ndarray:
        X = np.asarray(X) if not isinstance(X, np.ndarray) else X
        if X.ndim not in (3, 4) or (X.ndim == 4 and X.shape[-1] != 3):
            raise ValueError(
                f"images must be an array (N, H, W) or (N, H, W, 3); got shape {X.shape}. Stack images of "
                "one size (datasets.load(..., size=...) resizes image folders)")
        if X.dtype != np.uint8 and not np.issubdtype(X.dtype, np.floating):
            raise ValueError(f"images must be uint8 (0..255) or float (0..1); got {X.dtype}")
        if len(X) == 0:
            raise ValueError("no images given")
        if X.ndim == 3 and self.color != "gray":
            raise ValueError(f"color={self.color!r} needs RGB images (N, H, W, 3); got gray images {X.shape}")
        if X.dtype != np.uint8:
            rows = max(1, (64 << 20) // max(1, X[0].nbytes))  # about 64 MiB of pixels per finiteness test
            bad = sum(int(X[i : i + rows].size - np.count_nonzero(np.isfinite(X[i : i + rows])))
                      for i in range(0, len(X), rows))
            if bad:
                raise ValueError(f"images hold {bad} NaN or infinite pixel values; replace them (numpy.nan_to_num) "
                                 "or leave those images out")
        return X

    def _device(self) -> torch.device | None:
        """The GPU that describes and encodes, or None for the CPU workers: ``fv._compute.resolve_device``
        of ``device``, None for the CPU (``device`` None or "cpu")."""
        device = resolve_device(self.device)
        return None if device.type == "cpu" else device

    def _chunks(self, X: np.ndarray, device: torch.device | None, n: int | None = None) -> list[tuple[int, int]]:
        """(start, stop) of the chunks of the first ``n`` images of ``X`` (default all)."""
        n = len(X) if n is None else n
        if self.batch_size is not None:
            if int(self.batch_size) < 1:
                raise ValueError(f"batch_size must be a positive number of images or None; got {self.batch_size!r}")
            b = int(self.batch_size)
        elif device is None:
            b = _CPU_CHUNK_IMAGES
        else:
            height, width = scaled_size(X.shape[1], X.shape[2], self.scale)
            b = chunk_rows(height * width * descriptor_channels(self.color) * _DEVICE_BYTES_PER_PIXEL, device)
        return [(i, min(i + b, n)) for i in range(0, n, b)]

    def _backend(self) -> str:
        """The joblib backend that ``backend="auto"`` stands for: threads for up to two workers,
        processes (loky) for more.

        Threads share one copy of the libraries and the images and pass results without pickling:
        on two cores, encoding Fashion-MNIST (56 x 56, ``batch_size`` 32) took 1.3 ms per image
        with two threads against 1.6 ms with two loky workers, and 0.7 GiB less memory at the peak
        for the 60,000 training images (each worker process imports torch). But the Python part of each chunk holds the GIL -- two
        threads ran 1.6x as fast as one, not 2x -- so more workers scale better as processes.
        """
        if self.backend != "auto":
            return self.backend
        workers = effective_n_jobs(self.n_jobs)
        return "threading" if workers <= 2 else "loky"

    def _map(self, fn, jobs, total: int, desc: str, device: torch.device | None = None):
        """Yield ``fn(*job)`` for each job, in order, with a progress bar when ``verbose``.

        On a GPU (``device``), ``fn(device, *job)`` one job after another in this process. On the
        CPU, in ``n_jobs`` joblib workers, each job with one torch thread (``_one_thread``) and one
        BLAS thread: loky sets the BLAS limit inside its worker processes; threads share the
        process's BLAS, so for them the limit is set here, process-wide, for the duration (two
        threads calling a two-threaded OpenBLAS at once stall each other: 1.8 ms per image instead
        of 1.15 ms in our measurement).
        """
        from threadpoolctl import threadpool_limits
        from tqdm.auto import tqdm

        def progress(results):
            return tqdm(results, total=total, desc=desc, disable=not self.verbose, mininterval=1.0)

        if device is not None:
            yield from progress(fn(device, *job) for job in jobs)
            return
        backend = self._backend()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(repr(b) for b in BACKENDS)}; got {backend!r}")
        blas = threadpool_limits(1, user_api="blas") if backend == "threading" else nullcontext()
        with blas, parallel_config(backend=backend, inner_max_num_threads=1 if backend == "loky" else None):
            tasks = (delayed(_one_thread)(fn, *job) for job in jobs)
            yield from progress(Parallel(n_jobs=self.n_jobs, return_as="generator")(tasks))

    # -- fitting ----------------------------------------------------------------

    def fit(self, X, y=None):
        """Fit PCA and the GMM on descriptors sampled from the images ``X`` (labels unused)."""
        X = self._check_images(X)
        params, device = self._params(), self._device()
        rng = np.random.default_rng(self.random_state)
        n_images = len(X) if self.n_fit_images is None else min(len(X), int(self.n_fit_images))
        chosen = np.sort(rng.choice(len(X), n_images, replace=False))
        per_image = max(1, math.ceil(int(self.n_fit_descriptors) / n_images))
        chunks = self._chunks(X, device, n_images)
        seeds = rng.integers(0, 2**31, n_images)  # one per image: the sample is the same for any chunking
        jobs = ((X[chosen[a:b]], params, per_image, seeds[a:b]) for a, b in chunks)
        sample_chunk = _sample_chunk if device is None else _sample_chunk_padded
        sample = np.concatenate(list(self._map(sample_chunk, jobs, len(chunks), "descriptors", device)))
        if len(sample) > self.n_fit_descriptors:
            sample = sample[rng.choice(len(sample), int(self.n_fit_descriptors), replace=False)]
        n_dims = sample.shape[1] if self.pca_components is None else int(self.pca_components)
        if len(sample) < max(self.n_components, n_dims):
            raise ValueError(
                f"only {len(sample)} descriptors found in {n_images} images, fewer than n_components="
                f"{self.n_components} or pca_components={n_dims}: use more or larger images, smaller "
                "sizes/step, a larger scale, or a lower contrast_threshold")
        self.pca_ = PCA(n_components=n_dims, whiten=False, random_state=self.random_state).fit(sample)
        projected = _project(sample, self._pca_params())
        self.gmm_ = DiagonalGMM(self.n_components, max_iter=self.gmm_max_iter, random_state=self.random_state,
                                device=self.device).fit(projected)
        self.regions_ = _pyramid_regions(params["pyramid"], 2 * self.n_components * n_dims)
        self.n_features_out_ = self.regions_[-1].slice.stop
        self.n_fit_descriptors_ = len(sample)
        return self

    def _pca_params(self) -> dict:
        return {
            "mean": self.pca_.mean_.astype(np.float32),
            "components": self.pca_.components_.astype(np.float32),
            "whiten": bool(self.whiten),
            "scale": np.sqrt(self.pca_.explained_variance_).astype(np.float32),
        }

    def _gmm_params(self) -> DiagonalGMM:
        """The fitted mixture, as the Fisher-vector functions take it."""
        return self.gmm_

    # -- encoding ---------------------------------------------------------------

    def _n_features(self, regions: str) -> int:
        """Output length of ``transform(..., regions=regions)``: R * 2 K D for "all", 2 K D for "whole"."""
        if regions not in ("all", "whole"):
            raise ValueError(f"regions must be 'all' (every pyramid region) or 'whole' (the whole image only); "
                             f"got {regions!r}")
        if regions == "all":
            return self.n_features_out_
        return 2 * len(self.gmm_.weights_) * int(self.pca_.n_components_)

    def transform(self, X, out=None, *, regions="all"):
        """Fisher vectors of the images ``X``: (N, n_features_out_) float32, laid out as ``regions_``.

        ``regions="whole"``: the improved Fisher vector of the whole image only, (N, 2 K D) -- the
        vectors of an encoder with ``pyramid=None`` and the same PCA and GMM, for any pyramid.
        ``out``: an array or ``numpy.memmap`` of that shape and dtype float32 to write into
        (returned); by default a new array.
        """
        check_is_fitted(self, "gmm_")
        X = self._check_images(X)
        shape = (len(X), self._n_features(regions))
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32:
            raise ValueError(f"out must be float32 of shape {shape}; got {out.dtype} {out.shape}")
        params, pca, gmm, device = self._params(), self._pca_params(), self._gmm_params(), self._device()
        if regions == "whole":
            params["pyramid"] = None
        chunks = self._chunks(X, device)
        if device is not None:
            pca = {k: torch.as_tensor(v, device=device) if isinstance(v, np.ndarray) else v for k, v in pca.items()}
        jobs = ((X[a:b], params, pca, gmm) for a, b in chunks)
        encode_chunk = _encode_chunk if device is None else _encode_chunk_padded
        for (a, b), fvs in zip(chunks, self._map(encode_chunk, jobs, len(chunks), "fisher vectors", device)):
            out[a:b] = fvs
        return out

    def whole_image_features(self, features) -> np.ndarray:
        """The Fisher vectors of the whole images, (N, 2 K D) float32, from the features
        ``transform(images)`` gave (N, n_features_out_; an array or a memmap), without encoding again.

        The 1x1 region of the pyramid holds the whole image's vector. With ``improved`` it was
        power- and L2-normalised, then divided by the norm of the whole pyramid vector, so
        L2-normalising it again gives the improved whole-image vector exactly, to float32 rounding
        (a zero row stays zero); without ``improved`` the block is the raw whole-image vector
        itself. The same vectors as ``transform(images, regions="whole")``, which is the way when the
        pyramid has no 1x1 level.
        """
        check_is_fitted(self, "regions_")
        whole = next((r for r in self.regions_ if r.grid == (1, 1)), None)
        if whole is None:
            raise ValueError(f"the pyramid {self.pyramid!r} has no 1x1 level, so its features hold no "
                             "whole-image vector: encode the images with transform(images, regions=\"whole\")")
        if getattr(features, "ndim", None) != 2 or features.shape[1] != self.n_features_out_:
            raise ValueError(f"features must be (N, {self.n_features_out_}) as transform(images) gives them; "
                             f"got shape {getattr(features, 'shape', None)}")
        vectors = np.array(features[:, whole.slice], dtype=np.float32)
        if self.improved:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            np.divide(vectors, norms, out=vectors, where=norms > 0)
        return vectors

    # -- saving -----------------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the fitted encoder into ``folder`` (created when missing) without pickle; returns it.

        One ``.npy`` file per fitted array of ``pca_`` and ``gmm_`` (``pca_components_.npy``,
        ``gmm_means_.npy``, ...) and ``encoder.json``, written last: the format and its version, the
        parameters, the other fitted values, per array its file, shape, dtype and SHA-256, and the
        SHA-256 of the manifest itself. Every file goes through a temporary name
        (``fv._compute.atomic_path``). Parameters must be JSON values (a ``random_state`` of a
        generator is refused).
        """
        check_is_fitted(self, "gmm_")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        body = {
            "format": _FORMAT, "format_version": SAVE_FORMAT_VERSION,
            "params": {k: _json_value(v, k) for k, v in self.get_params(deep=False).items()},
            "values": {"n_features_out_": int(self.n_features_out_),
                       "n_fit_descriptors_": int(self.n_fit_descriptors_)},
            "pca_": _save_estimator(self.pca_, "pca_", folder),
            "gmm_": _save_estimator(self.gmm_, "gmm_", folder),
            "versions": {"numpy": np.__version__, "torch": torch.__version__},
        }
        with atomic_path(folder / _MANIFEST) as tmp:
            tmp.write_text(json.dumps({**body, "sha256": _manifest_checksum(body)}, indent=1, sort_keys=True))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "FisherVectorEncoder":
        """The encoder ``save`` wrote into ``folder``; it transforms to the same vectors, bit for bit.

        Arrays are read with ``allow_pickle=False`` and checked against their recorded shape, dtype
        and SHA-256. A missing file raises ``FileNotFoundError``, a truncated or changed one (or a
        manifest of another format version) ``ValueError``, each naming the file. Parameters come
        back as saved (``device`` included: ``set_params(device=...)`` moves the loaded encoder).
        """
        folder = Path(folder)
        manifest = _read_manifest(folder)
        try:
            encoder = cls(**{k: _tuples(v) for k, v in manifest["params"].items()})
            encoder.pca_ = _load_estimator(manifest["pca_"], folder)
            encoder.gmm_ = _load_estimator(manifest["gmm_"], folder)
            for key, value in manifest["values"].items():
                setattr(encoder, key, value)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{folder / _MANIFEST} lacks or misnames an entry ({exc!r}); "
                             "save the encoder again") from exc
        encoder.regions_ = _pyramid_regions(encoder._params()["pyramid"], encoder._n_features("whole"))
        return encoder

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "gmm_")
        return np.array([f"fv{i}" for i in range(self.n_features_out_)], dtype=object)


def encode_to_file(encoder: FisherVectorEncoder, images, path: str | os.PathLike, *, regions="all") -> np.ndarray:
    """Encode ``images`` into a ``.npy`` file at ``path`` and return it memory-mapped (read-only).

    The matrix (``encoder.transform(images, regions=regions)``) is written through a disk memmap (no
    in-memory copy) into a temporary file beside ``path`` (``fv._compute.atomic_path``), which is
    renamed into place only when every row is written: an interrupted run leaves no partial file.
    """
    check_is_fitted(encoder, "gmm_")
    with atomic_path(path, suffix=".tmp.npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                        shape=(len(images), encoder._n_features(regions)))
        encoder.transform(images, out=out, regions=regions)
        out.flush()
        del out
    return np.load(path, mmap_mode="r", allow_pickle=False)


# --------------------------------------------------------------------------- encoder + SVM with C chosen on validation


def make_pipeline(encoder: FisherVectorEncoder | None = None, *, Cs=(0.1, 1.0, 10.0), validation_fraction=0.1,
                  solver="auto", device=None, random_state=0, **encoder_params) -> Pipeline:
    """``Pipeline([("fv", FisherVectorEncoder(...)), ("svm", ValidatedLinearSVM(...))])``.

    Pass a configured ``encoder`` or its parameters as keywords (``make_pipeline(scale=2,
    n_components=64)``). ``pipeline.fit(images, labels)`` then ``pipeline.score(test_images,
    test_labels)``. ``device`` ("cuda") puts the SVM on the GPU, and the encoder too unless a
    configured ``encoder`` is passed.
    """
    if encoder is None:
        encoder = FisherVectorEncoder(random_state=random_state, device=device, **encoder_params)
    elif encoder_params:
        encoder = clone(encoder).set_params(**encoder_params)
    svm = ValidatedLinearSVM(Cs=Cs, validation_fraction=validation_fraction, solver=solver, device=device,
                             random_state=random_state)
    return Pipeline([("fv", encoder), ("svm", svm)])
