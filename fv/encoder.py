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

:func:`make_pipeline` ends the encoder in :class:`ValidatedLinearSVM`, a linear SVM whose C is chosen
on a stratified validation part of the training data, then refitted on all of it.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
from contextlib import nullcontext
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs, parallel_config
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.decomposition import PCA
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC
from sklearn.utils.validation import check_is_fitted

from .dsift import phow
from .fisher import DEFAULT_GRID, fisher_vectors, gather_rows, spatial_pyramid_fisher_vectors
from .gmm import DiagonalGMM
from ._validation import check_device
from .svm import LinearSVM

BACKENDS = ("auto", "threading", "loky", "multiprocessing")
_CPU_CHUNK_IMAGES = 32  # images per CPU task (``batch_size=None``)
_DEVICE_CHUNK_PIXELS = 2**20  # pixels per GPU chunk (``batch_size=None``)

__all__ = ["root_sift", "FisherVectorEncoder", "ValidatedLinearSVM", "make_pipeline", "encode_to_file"]


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


# --------------------------------------------------------------------------- per-chunk work


def _as_float_images(images, scale: float, device=None):
    """uint8 (or float in [0, 1]) images -> float32 in [0, 1], resized by ``scale`` (bilinear, as
    OpenCV's ``INTER_LINEAR``). NumPy on the CPU; a tensor on ``device`` when one is given."""
    x = np.asarray(images)
    h, w = x.shape[1:3]
    size = (int(round(h * scale)), int(round(w * scale)))
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


def _local_features_on(device: torch.device, images, params: dict):
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


def _fisher(projected, frames, shape, params: dict, gmm: dict, counts=None):
    """Fisher vectors (B, dim) float32 of the projected descriptor sets of one chunk, on the sets'
    device: lists of per-image arrays, or padded tensors with ``counts``."""
    common = dict(improved=params["improved"], alpha=params["alpha"], dtype=torch.float32, counts=counts)
    if params["pyramid"]:
        return spatial_pyramid_fisher_vectors(projected, frames, shape, gmm["means"], gmm["covariances"],
                                              gmm["priors"], grid=params["pyramid"], **common)
    return fisher_vectors(projected, gmm["means"], gmm["covariances"], gmm["priors"], **common)


def _encode_chunk(images, params: dict, pca: dict, gmm: dict) -> np.ndarray:
    descs, frames, shape = _local_features(images, params)
    return _fisher([_project(d, pca) for d in descs], frames, shape, params, gmm)


def _encode_chunk_on(device: torch.device, images, params: dict, pca: dict, gmm: dict) -> np.ndarray:
    """``_encode_chunk`` on ``device``, the chunk padded throughout (no step per image); ``pca``
    holds tensors on ``device``."""
    desc, frames, counts, shape = _local_features_on(device, images, params)
    return _fisher(_project(desc, pca), frames, shape, params, gmm, counts=counts).cpu().numpy()


def _pick(descs: list, per_image: int, seeds, width: int) -> np.ndarray:
    """Up to ``per_image`` random descriptors of each image (for fitting PCA and GMM), drawn with the
    image's own seed, so that the sample does not depend on how the images were chunked."""
    picked = [d[np.random.default_rng(s).choice(len(d), min(per_image, len(d)), replace=False)]
              for d, s in zip(descs, seeds) if len(d)]
    return np.concatenate(picked) if picked else np.empty((0, width), np.float32)


def _sample_chunk(images, params: dict, per_image: int, seeds) -> np.ndarray:
    descs, _, _ = _local_features(images, params)
    return _pick(descs, per_image, seeds, 128 * _channels(params))


def _sample_chunk_on(device: torch.device, images, params: dict, per_image: int, seeds) -> np.ndarray:
    desc, _, counts, _ = _local_features_on(device, images, params)
    desc = desc.cpu().numpy()
    return _pick([d[:c] for d, c in zip(desc, counts)], per_image, seeds, 128 * _channels(params))


def _channels(params: dict) -> int:
    return 1 if params["color"] == "gray" else 3


def _one_thread(fn, *args):
    """Run ``fn`` with one torch thread (joblib limits BLAS threads in its workers itself)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(previous)


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
        Fashion-MNIST settings. None: 32 on the CPU; on a GPU, as many images as hold about 2**20
        pixels after ``scale`` (334 Fashion-MNIST images at ``scale=2``).
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
        Length of one Fisher vector.
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
        return X

    def _device(self) -> torch.device | None:
        """The GPU that describes and encodes, or None for the CPU workers (``device`` None or "cpu")."""
        device = check_device(self.device)
        return device if device is not None and device.type != "cpu" else None

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
            pixels = round(X.shape[1] * self.scale) * round(X.shape[2] * self.scale)
            b = max(1, _DEVICE_CHUNK_PIXELS // max(1, pixels))
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
        sample_chunk = _sample_chunk if device is None else _sample_chunk_on
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
        regions = sum(r * c for r, c in params["pyramid"]) if params["pyramid"] else 1
        self.n_features_out_ = regions * 2 * self.n_components * n_dims
        self.n_fit_descriptors_ = len(sample)
        return self

    def _pca_params(self) -> dict:
        return {
            "mean": self.pca_.mean_.astype(np.float32),
            "components": self.pca_.components_.astype(np.float32),
            "whiten": bool(self.whiten),
            "scale": np.sqrt(self.pca_.explained_variance_).astype(np.float32),
        }

    def _gmm_params(self) -> dict:
        return {"means": self.gmm_.means_, "covariances": self.gmm_.covariances_, "priors": self.gmm_.weights_}

    # -- encoding ---------------------------------------------------------------

    def transform(self, X, out=None):
        """Fisher vectors of the images ``X``: (N, n_features_out_) float32.

        ``out``: an array or ``numpy.memmap`` of that shape and dtype float32 to write into
        (returned); by default a new array.
        """
        check_is_fitted(self, "gmm_")
        X = self._check_images(X)
        shape = (len(X), self.n_features_out_)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32:
            raise ValueError(f"out must be float32 of shape {shape}; got {out.dtype} {out.shape}")
        params, pca, gmm, device = self._params(), self._pca_params(), self._gmm_params(), self._device()
        chunks = self._chunks(X, device)
        if device is not None:
            pca = {k: torch.as_tensor(v, device=device) if isinstance(v, np.ndarray) else v for k, v in pca.items()}
        jobs = ((X[a:b], params, pca, gmm) for a, b in chunks)
        encode_chunk = _encode_chunk if device is None else _encode_chunk_on
        for (a, b), fvs in zip(chunks, self._map(encode_chunk, jobs, len(chunks), "fisher vectors", device)):
            out[a:b] = fvs
        return out

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "gmm_")
        return np.array([f"fv{i}" for i in range(self.n_features_out_)], dtype=object)


def encode_to_file(encoder: FisherVectorEncoder, images, path: str | os.PathLike) -> np.ndarray:
    """Encode ``images`` into a ``.npy`` file at ``path`` and return it memory-mapped (read-only).

    The matrix is written through a disk memmap (no in-memory copy) into a temporary file beside
    ``path``, which is renamed into place only when every row is written: an interrupted run leaves
    no partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_is_fitted(encoder, "gmm_")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.npy", dir=path.parent)
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                        shape=(len(images), encoder.n_features_out_))
        encoder.transform(images, out=out)
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return np.load(path, mmap_mode="r")


# --------------------------------------------------------------------------- SVM with C chosen on validation


class ValidatedLinearSVM(ClassifierMixin, BaseEstimator):
    """Linear SVM (squared hinge, one-vs-rest) whose C is chosen on a validation split.

    ``fit`` holds out a stratified ``validation_fraction`` of the training rows, trains one SVM per C
    in ``Cs`` on the rest, keeps the C with the best validation accuracy (the smallest on ties), and
    refits on all rows with it. The solver: scikit-learn's ``LinearSVC`` (liblinear) when a float64
    copy of X fits in ``liblinear_max_bytes``, else :class:`fv.LinearSVM` (torch, float32, streams X in
    chunks, CPU or CUDA); ``solver`` forces one. The torch solver is warm-started: the Cs are tried in
    increasing order, each fit starting from the previous solution, and the refit starts from the
    chosen C's (BENCHMARKS.md: the Fashion-MNIST end-to-end run).

    Attributes: ``best_C_``, ``validation_scores_`` ({C: accuracy}), ``estimator_`` (the refitted
    SVM), ``solver_``, ``classes_``.
    """

    def __init__(self, Cs=(0.1, 1.0, 10.0), *, validation_fraction=0.1, solver="auto",
                 liblinear_max_bytes=2 * 1024**3, max_iter=1000, tol=1e-4, device=None, random_state=0):
        self.Cs = Cs
        self.validation_fraction = validation_fraction
        self.solver = solver
        self.liblinear_max_bytes = liblinear_max_bytes
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.random_state = random_state

    def _make(self, C: float, solver: str):
        if solver == "liblinear":
            return LinearSVC(C=C, loss="squared_hinge", dual="auto", max_iter=self.max_iter, tol=self.tol,
                             random_state=self.random_state)
        return LinearSVM(C=C, max_iter=self.max_iter, tol=self.tol, device=self.device, warm_start=True)

    def fit(self, X, y):
        if self.solver not in ("auto", "liblinear", "torch"):
            raise ValueError(f"solver must be 'auto', 'liblinear' or 'torch', not {self.solver!r}")
        if not self.Cs:
            raise ValueError("Cs must hold at least one value of C")
        y = np.asarray(y)
        n, d = X.shape
        solver = self.solver
        if solver == "auto":
            solver = "liblinear" if n * d * 8 <= self.liblinear_max_bytes else "torch"
        self.solver_ = solver
        Cs = [float(c) for c in self.Cs]
        if len(Cs) > 1:
            split = StratifiedShuffleSplit(n_splits=1, test_size=self.validation_fraction,
                                           random_state=self.random_state)
            fit_idx, val_idx = next(split.split(np.zeros(n), y))
            fit_idx.sort()
            val_idx.sort()
            X_fit, X_val = X[fit_idx], X[val_idx]
            self.validation_scores_, start = {}, None
            model = self._make(min(Cs), solver)
            for C in sorted(set(Cs)):  # increasing: each warm start is near its solution
                model.set_params(C=C).fit(X_fit, y[fit_idx])
                self.validation_scores_[C] = float(np.mean(model.predict(X_val) == y[val_idx]))
                if start is None or self.validation_scores_[C] > self.validation_scores_[start.C]:
                    start = copy.deepcopy(model)  # the smallest C wins ties
            del X_fit, X_val
            self.best_C_ = start.C
        else:
            self.validation_scores_, start = {}, None
            self.best_C_ = Cs[0]
        if start is None or solver == "liblinear":
            start = self._make(self.best_C_, solver)
        self.estimator_ = start.fit(X, y)
        self.classes_ = self.estimator_.classes_
        return self

    def decision_function(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.decision_function(X)

    def predict(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(X)


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
