"""Gaussian mixture with diagonal covariances, fitted by EM with matrix products in torch.

`DiagonalGMM` is a scikit-learn estimator interchangeable with
``sklearn.mixture.GaussianMixture(covariance_type="diag")``: same attribute names and
meanings (``weights_`` (K,), ``means_`` (K, D), ``covariances_`` (K, D) holding the
diagonal variances, ``precisions_cholesky_`` (K, D) = 1 / sqrt(covariances_)), same
``score`` / ``score_samples`` / ``predict_proba`` / ``predict``, same stopping rule. The
EM iterations run in torch on the CPU or on CUDA, over the data in chunks, as matrix
products.

Model and EM (Bishop, *Pattern Recognition and Machine Learning*, 2006, section 9.2.2;
the conventions of VLFeat's vl/gmm.c for the variance floor and empty components)
-----------------------------------------------------------------------------------
Density of x in R^D with weights w_k, means mu_k and diagonal variances s2_k (k = 1..K)::

    p(x) = sum_k w_k N(x | mu_k, diag(s2_k))
    log w_k N(x | mu_k, s2_k) = log w_k - 1/2 sum_d [log 2pi + log s2_kd + (x_d - mu_kd)^2 / s2_kd]

E-step, for all samples of a chunk X (n, D) at once. Expanding the square gives one
matrix product with the stacked features [X, X*X, 1] (n, 2D + 1) (`log_joint_matrix`, which
the Fisher-vector code of ``fv.fisher`` shares)::

    log w_k N(x_i | k) = sum_d x_id (mu_kd / s2_kd) + sum_d x_id^2 (-1 / (2 s2_kd)) + c_k
                       = ([X, X*X, 1] @ W)_ik,    W = [mu / s2 ; -1 / (2 s2) ; c]^T  (2D + 1, K)
    c_k = log w_k - 1/2 (sum_d mu_kd^2 / s2_kd + sum_d log s2_kd + D log 2pi)
    q_ik = softmax_k(log w_k N(x_i | k))                      (responsibilities, (n, K))
    log p(x_i) = logsumexp_k(log w_k N(x_i | k))
    l = 1/N sum_i log p(x_i)                                  (mean log-likelihood)

M-step, from the sufficient statistics Q^T X, Q^T X^2 (K, D) and Q^T 1 (K,): again one
matrix product, Q^T [X, X*X, 1] (K, 2D + 1), per chunk, summed over chunks in float64::

    N_k = sum_i q_ik,   w_k = N_k / sum_j N_j
    mu_k = (Q^T X)_k / N_k
    s2_k = max((Q^T X^2)_k / N_k - mu_k^2, floor)

That is about 8 N K D floating-point operations per iteration, nearly all in two GEMMs.

Precision in float32. The expanded forms above cancel digits when the data sit far from
the origin (with a descriptor offset of 100, float32 keeps at most three significant
digits of a unit variance). So the data are centred first: the data mean (computed in
float64) is subtracted before EM and added back to ``means_`` afterwards; for scoring
new data the model's own mean ``sum_k w_k mu_k`` is subtracted. The E-step product runs
in the compute dtype. In the M-step product no float32 sum runs over more than 128 rows
(a batched product over blocks of rows); the block sums, the sums over chunks and the
parameters are float64. What remains is the cancellation inside each component: the
relative error of s2_kd is of order 1e-8 to 1e-7 times (1 + (mu_kd - mean_d)^2 / s2_kd)
(measured: 1e-5 after one M-step for components up to 20 standard deviations away from
the data mean, 2e-4 without the blocking). Where that matters,
``dtype="float64"`` is exact to rounding at about twice the cost. On CUDA, leave
``torch.backends.cuda.matmul.allow_tf32`` off (its default): TF32 products keep only
about three digits.

Conventions
-----------
* **Variance floor** (``variance_floor``, relative): every variance is clamped from below,
  after every M-step and on the initial parameters, at
  ``variance_floor * max_d Var(X[:, d])`` -- the bound VLFeat's recognition code
  (apps/recognition/trainEncoder.m) passes to vl_gmm: ``CovarianceBound = 1e-4 * max(v)``
  with v the per-dimension data variance (vl_gmm's own default is an absolute 1e-5). A
  floor is a clamp, not scikit-learn's ``reg_covar`` (which is added to every variance);
  with the floor inactive and ``reg_covar=0`` the two EMs coincide. The value in absolute units is
  stored in ``variance_floor_``. It is never below ``1e-10 * max_d Var(X[:, d])``.
* **Initialisation** (``init``): ``"kmeans++"`` (default) seeds K centres by k-means++
  (scikit-learn's ``kmeans_plusplus``) on a random subsample of at most
  ``max(10_000, 50 K)`` samples, refines them with up to 10 Lloyd iterations on all the
  data (matrix-product distances in torch), then sets weights, means and variances from
  the hard assignment to the nearest centre. ``"kmeans"`` does the same from
  scikit-learn's ``KMeans(n_init=1)`` run to convergence on all the data (on the CPU;
  slow for large N; this is GaussianMixture's default). ``"random"`` (VLFeat's random
  initialisation) takes K distinct samples as means, the data variance as every
  variance and uniform weights. ``weights_init`` / ``means_init`` / ``precisions_init``
  override the corresponding initial parameters as in GaussianMixture; when
  ``means_init`` is given and another one is not, it is computed from the hard
  assignment of the samples to the nearest given mean.
* **Empty components**: a component whose total responsibility N_k falls below 1e-3 (a
  thousandth of one sample) after an M-step is re-seeded: its mean moves to the sample
  worst explained by the current model (lowest log p(x)), its variances become the
  weighted mean of the other components' variances and its weight that of one sample.
  VLFeat splits a large component instead; both keep every parameter finite. The
  re-seeded model may have a lower likelihood for one iteration.
* **Stopping**: as GaussianMixture, iterate until the change of the mean log-likelihood
  between two E-steps is below ``tol`` or ``max_iter`` iterations are done;
  ``lower_bound_`` is the mean log-likelihood at the last E-step (of the parameters
  before the final M-step), so ``tol=0`` runs exactly ``max_iter`` iterations.
* **Chunking**: the data are processed ``chunk_size`` rows at a time; the working memory
  beyond one centred copy of X (N, D) is a few (chunk_size, 2D + K) buffers. By default
  a chunk's working set is the budget of ``fv._compute.chunk_bytes``: about 16 MiB on the
  CPU and 1 GiB on CUDA.
* **Devices and types**: ``device=None`` runs on the device of the input if it is a torch
  tensor, else on the CPU; ``"cpu"`` always on the CPU; ``"cuda"`` moves numpy input over
  in chunks (``fv._compute.resolve_device``). ``dtype`` is the
  compute type (``"float32"`` or ``"float64"``). Learned attributes are float64 numpy
  arrays whatever the device. Methods return numpy float64 arrays for numpy input and
  torch tensors on the compute device for torch input.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from numbers import Integral, Real
from typing import Any, NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ._compute import chunk_rows, resolve_device
from ._validation import validate_tensor

__all__ = ["DiagonalGMM", "GMMParameters", "diagonal_gmm_log_prob", "log_joint_matrix"]

_LOG_2PI = math.log(2.0 * math.pi)
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_INITS = ("kmeans++", "kmeans", "random")
_MIN_RELATIVE_FLOOR = 1e-10  # variances never fall below this times the largest data variance
_EMPTY_MASS = 1e-3  # a component with less total responsibility than this is re-seeded
_LLOYD_ITERATIONS = 10  # Lloyd refinements after k-means++ seeding
_SUM_BLOCK = 128  # longest float32 sum in the M-step statistics (see _block_sums)
_MIN_CHUNK_ROWS = 2 * _SUM_BLOCK  # so that most rows of a chunk fall in whole sum blocks


class GMMParameters(NamedTuple):
    """The parameters of a Gaussian mixture with diagonal covariances, in scikit-learn's names.

    ``means`` (K, D); ``covariances`` (K, D), the diagonal variances sigma_k^2 (as
    ``GaussianMixture(covariance_type="diag").covariances_``); ``weights`` (K,), positive and
    summing to one. NumPy arrays or torch tensors. The Fisher-vector functions of ``fv`` take
    this record, a fitted `DiagonalGMM` or a fitted ``GaussianMixture(covariance_type="diag")``
    as their ``gmm`` argument.
    """

    means: Any
    covariances: Any
    weights: Any


# ----------------------------------------------------------------------------------------
# Maths on torch tensors. Parameters are float64 (K,), (K, D), (K, D); data chunks are in
# the compute dtype and already centred (the parameters' means in the same coordinates).
# ----------------------------------------------------------------------------------------


def log_joint_matrix(
    weights: torch.Tensor,
    means: torch.Tensor,
    variances: torch.Tensor,
    dtype: torch.dtype,
    *,
    up_to_constant: bool = False,
) -> torch.Tensor:
    """Matrix W (2D + 1, K) with ``log w_k + log N(x | mu_k, diag(s2_k)) = ([x, x*x, 1] @ W)_k``.

    weights (K,), means (K, D), variances (K, D), float64 tensors on one device -> W in
    ``dtype`` on that device. Its rows are the scaled means mu / s2 (D rows), the halved
    negative precisions -1 / (2 s2) (D rows) and the constant of each component

        c_k = log w_k - 1/2 (sum_d mu_kd^2 / s2_kd + sum_d log s2_kd + D log 2pi)

    (module docstring). A zero weight gives c_k = -inf. With ``up_to_constant`` the largest
    c_k is subtracted from every c_k: the posteriors (a softmax over k) do not change, the
    log-densities lose their common offset, and float32 keeps the smaller values more
    accurately. The E-step of `DiagonalGMM` and the Fisher vectors of ``fv.fisher`` both
    build their products from this matrix.
    """
    precisions = 1.0 / variances
    n_features = means.shape[1]
    scaled_means = means * precisions
    constants = torch.log(weights) - 0.5 * (
        (means * means * precisions).sum(1) + torch.log(variances).sum(1) + n_features * _LOG_2PI
    )
    if up_to_constant:
        constants = constants - constants.max()
    W = torch.cat([scaled_means, -0.5 * precisions, constants[:, None]], dim=1).T
    return W.to(dtype).contiguous()


def _stack_moments(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """[x, x*x, 1] (n, 2D + 1) for a chunk x (n, D), written into ``out`` (>= n rows).

    The last column of ``out`` must already hold ones.
    """
    n, d = x.shape
    stacked = out[:n]
    stacked[:, :d].copy_(x)
    torch.mul(x, x, out=stacked[:, d : 2 * d])
    return stacked


def _moments_buffer(rows: int, n_features: int, dtype, device) -> torch.Tensor:
    """Reusable (rows, 2D + 1) buffer for `_stack_moments`, its last column set to one."""
    buffer = torch.empty(rows, 2 * n_features + 1, dtype=dtype, device=device)
    buffer[:, -1] = 1.0
    return buffer


def _responsibilities(log_prob: torch.Tensor, sample_log_prob: torch.Tensor) -> torch.Tensor:
    """Responsibilities (n, K) from weighted log-probabilities (n, K); log p(x) into (n,).

    log p(x_i) = max_k l_ik + log sum_k exp(l_ik - max_k l_ik) = max_k l_ik - log max_k q_ik,
    since the largest responsibility is exp(0) / sum_k exp(l_ik - max_k l_ik) >= 1 / K.
    """
    top = log_prob.amax(dim=1)
    resp = torch.softmax(log_prob, dim=1)
    torch.sub(top, resp.amax(dim=1).log_(), out=sample_log_prob)
    return resp


def _block_sums(resp: torch.Tensor, stacked: torch.Tensor) -> torch.Tensor:
    """resp^T @ stacked (K, M) in float64 for resp (n, K), stacked (n, M).

    In float32 the product is taken over blocks of `_SUM_BLOCK` rows (one batched
    product) and the block results are summed in float64, so no float32 sum runs over
    more than `_SUM_BLOCK` terms. This keeps Q^T X^2, whose later subtraction of mu^2
    cancels digits, accurate: its relative error grows with the length of the float32 sum.
    """
    if resp.dtype == torch.float64:
        return torch.mm(resp.T, stacked)
    (n, n_components), n_columns, block = resp.shape, stacked.shape[1], _SUM_BLOCK
    whole = n - n % block
    blocks = torch.bmm(
        resp[:whole].view(whole // block, block, n_components).transpose(1, 2),
        stacked[:whole].view(whole // block, block, n_columns),
    )
    total = blocks.sum(0, dtype=torch.float64)
    if whole < n:
        total += torch.mm(resp[whole:].T, stacked[whole:])
    return total


def _em_sweep(
    X: torch.Tensor, W: torch.Tensor, chunk_size: int, sample_log_prob: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """E-step over centred data X (N, D) plus the M-step sufficient statistics.

    W (2D + 1, K) from `log_joint_matrix`. Returns the mean log-likelihood (0-d float64
    tensor) and the statistics Q^T [X, X*X, 1] (K, 2D + 1) in float64, whose last column
    is N_k; fills ``sample_log_prob`` (N,) with log p(x_i).
    """
    n_samples, n_features = X.shape
    moments = torch.zeros(W.shape[1], W.shape[0], dtype=torch.float64, device=X.device)
    buffer = _moments_buffer(min(chunk_size, n_samples), n_features, X.dtype, X.device)
    for start in range(0, n_samples, chunk_size):
        stacked = _stack_moments(X[start : start + chunk_size], buffer)
        stop = start + len(stacked)
        resp = _responsibilities(torch.mm(stacked, W), sample_log_prob[start:stop])
        moments += _block_sums(resp, stacked)
    mean_log_prob = sample_log_prob.sum(dtype=torch.float64) / n_samples
    return mean_log_prob, moments


def _m_step(
    moments: torch.Tensor, floor: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights (K,), means (K, D), floored variances (K, D) from Q^T [X, X*X, 1] (K, 2D + 1)."""
    n_features = moments.shape[1] // 2
    mass = moments[:, -1]
    denominator = mass.clamp_min(torch.finfo(torch.float64).tiny)[:, None]
    means = moments[:, :n_features] / denominator
    variances = (moments[:, n_features:-1] / denominator - means * means).clamp_min(floor)
    weights = mass / mass.sum()
    return weights, means, variances


def _reseed_empty(
    weights: torch.Tensor,
    means: torch.Tensor,
    variances: torch.Tensor,
    mass: torch.Tensor,
    X: torch.Tensor,
    sample_log_prob: torch.Tensor,
) -> int:
    """Move components with N_k < 1e-3 onto the worst-explained samples (in place).

    Returns the number of components re-seeded.
    """
    empty = mass < _EMPTY_MASS
    n_empty = int(empty.sum())
    if n_empty == 0 or n_empty == len(mass):
        return 0
    worst = torch.topk(sample_log_prob, n_empty, largest=False).indices
    live = ~empty
    typical_variance = (weights[live, None] * variances[live]).sum(0) / weights[live].sum()
    means[empty] = X[worst].to(torch.float64)
    variances[empty] = typical_variance
    weights[empty] = 1.0 / len(X)
    weights /= weights.sum()
    return n_empty


def _nearest_centre(X: torch.Tensor, centres: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Index (N,) of the nearest centre (K, D) for every row of X (N, D), by matrix products."""
    centres_x = centres.to(X.dtype)
    half_norms = 0.5 * (centres * centres).sum(1).to(X.dtype)
    labels = torch.empty(len(X), dtype=torch.long, device=X.device)
    for start in range(0, len(X), chunk_size):
        x = X[start : start + chunk_size]
        # argmin_k |x - m_k|^2 = argmin_k (|m_k|^2 / 2 - x . m_k)
        distance = torch.addmm(half_norms, x, centres_x.T, alpha=-1.0)
        labels[start : start + len(x)] = distance.argmin(dim=1)
    return labels


def _cluster_parameters(
    X: torch.Tensor,
    labels: torch.Tensor,
    fallback_means: torch.Tensor,
    data_variance: torch.Tensor,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights (K,), means (K, D), variances (K, D) of the hard clusters ``labels`` (N,) of X.

    Float64, variances not yet floored. An empty cluster k keeps ``fallback_means[k]``,
    gets the data variance (D,) and the weight of one sample.
    """
    n_components, n_features = fallback_means.shape
    float64 = dict(dtype=torch.float64, device=X.device)
    count = torch.zeros(n_components, **float64)
    first = torch.zeros(n_components, n_features, **float64)
    second = torch.zeros(n_components, n_features, **float64)
    for start in range(0, len(X), chunk_size):
        x = X[start : start + chunk_size].to(torch.float64)
        label = labels[start : start + len(x)]
        count.index_add_(0, label, torch.ones(len(x), **float64))
        first.index_add_(0, label, x)
        second.index_add_(0, label, x * x)
    filled = (count > 0)[:, None]
    denominator = count.clamp_min(1.0)[:, None]
    means = torch.where(filled, first / denominator, fallback_means)
    variances = torch.where(filled, second / denominator - means * means, data_variance)
    weights = count.clamp_min(1.0)
    return weights / weights.sum(), means, variances


def diagonal_gmm_log_prob(
    X: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor
) -> torch.Tensor:
    """Weighted log-densities ``log w_k + log N(x_i | mu_k, diag(s2_k))`` as one product.

    X (N, D); weights (K,), means (K, D), variances (K, D) -> (N, K), in the dtype of X.
    The parameters are converted to float64 to build the product's operands. For data far
    from the origin, subtract a common point from X and the means first (see the module
    docstring).
    """
    float64 = dict(dtype=torch.float64, device=X.device)
    params = (torch.as_tensor(p, **float64) for p in (weights, means, variances))
    W = log_joint_matrix(*params, X.dtype)
    return torch.cat([X, X * X, torch.ones_like(X[:, :1])], dim=1) @ W


# ----------------------------------------------------------------------------------------
# The estimator
# ----------------------------------------------------------------------------------------


class DiagonalGMM(DensityMixin, BaseEstimator):
    """Gaussian mixture with diagonal covariances, fitted by EM in torch (CPU or CUDA).

    A drop-in for ``sklearn.mixture.GaussianMixture(covariance_type="diag")`` with the
    E-step and M-step written as chunked matrix products; see the module docstring for the
    formulas, the precision safeguards and the conventions.

    Parameters
    ----------
    n_components : int, default=64
        Number of mixture components K.
    max_iter : int, default=100
        Maximum number of EM iterations (0: only initialise).
    tol : float, default=1e-3
        Stop when the mean log-likelihood changes by less than ``tol`` between two
        iterations (GaussianMixture's rule; 0 runs exactly ``max_iter`` iterations).
    init : {"kmeans++", "kmeans", "random"}, default="kmeans++"
        Initialisation method (module docstring, *Initialisation*).
    n_init : int, default=1
        Number of initialisations; the run with the highest final ``lower_bound_`` wins.
    variance_floor : float, default=1e-4
        Lower bound on every variance, relative to the largest per-dimension variance
        of the training data (absolute value in ``variance_floor_``).
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation; EM itself is deterministic.
    device : str, torch.device or None, default=None
        Compute device: None is the input's device for a torch tensor, else the CPU;
        ``"cpu"`` is always the CPU.
    dtype : {"float32", "float64"}, default="float32"
        Compute dtype of the matrix products (statistics are always summed in float64).
    verbose : bool or int, default=False
        Print the log-likelihood at every iteration.
    chunk_size : int or None, default=None
        Rows per chunk; None picks about 16 MiB of working set per chunk on the CPU and
        1 GiB on CUDA (``fv._compute.chunk_bytes``).
    weights_init : array of shape (K,), default=None
        Initial weights (non-negative, summing to 1), as in GaussianMixture.
    means_init : array of shape (K, D), default=None
        Initial means, as in GaussianMixture.
    precisions_init : array of shape (K, D), default=None
        Initial precisions 1 / variance, as GaussianMixture's for ``covariance_type="diag"``.

    Attributes
    ----------
    weights_ : ndarray of shape (K,)
    means_ : ndarray of shape (K, D)
    covariances_ : ndarray of shape (K, D)
        Diagonal variances.
    precisions_ : ndarray of shape (K, D)
        1 / covariances_.
    precisions_cholesky_ : ndarray of shape (K, D)
        1 / sqrt(covariances_).
    converged_ : bool
    n_iter_ : int
        EM iterations of the best run.
    lower_bound_ : float
        Mean log-likelihood of the training data at the last E-step of the best run.
    lower_bounds_ : list of float
        Mean log-likelihood at every iteration of the best run.
    variance_floor_ : float
        The variance floor in the units of the data.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(1000, 8))
    >>> gmm = DiagonalGMM(n_components=4, random_state=0).fit(X)
    >>> gmm.means_.shape, gmm.predict_proba(X).shape
    ((4, 8), (1000, 4))
    """

    def __init__(
        self,
        n_components=64,
        *,
        max_iter=100,
        tol=1e-3,
        init="kmeans++",
        n_init=1,
        variance_floor=1e-4,
        random_state=None,
        device=None,
        dtype="float32",
        verbose=False,
        chunk_size=None,
        weights_init=None,
        means_init=None,
        precisions_init=None,
    ):
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.n_init = n_init
        self.variance_floor = variance_floor
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose
        self.chunk_size = chunk_size
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init

    # ------------------------------------------------------------------ fitting

    @torch.no_grad()
    def fit(self, X, y=None):
        """Estimate the mixture parameters by EM.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self

        Warns ``ConvergenceWarning``, as GaussianMixture does, when the best run stopped
        at ``max_iter`` before the change of the mean log-likelihood fell below ``tol``.
        """
        self._check_params()
        X, _ = self._validate_input(X, reset=True)
        n_samples, n_features = X.shape
        if n_samples < self.n_components:
            raise ValueError(
                f"n_components={self.n_components} is larger than n_samples={n_samples}: a "
                "mixture cannot have more components than training samples. Use fewer "
                "components or more data."
            )
        self._check_initial_parameters(n_features)
        device = resolve_device(self.device, X)
        dtype = _DTYPES[self.dtype] if isinstance(self.dtype, str) else self.dtype
        chunk_size = self._chunk_rows(n_features, device, dtype)

        centre, Xc, data_variance = _centre_data(X, dtype, device, chunk_size)
        largest_variance = float(data_variance.max())
        largest_variance = largest_variance if largest_variance > 0 else 1.0
        floor = max(float(self.variance_floor), _MIN_RELATIVE_FLOOR) * largest_variance
        random_state = check_random_state(self.random_state)

        best = None
        for run in range(self.n_init):
            weights, means, variances = self._initial_parameters(
                Xc, centre, data_variance, random_state, chunk_size
            )
            variances = variances.clamp_min(floor)
            result = self._run_em(Xc, weights, means, variances, floor, chunk_size, run)
            if best is None or result["lower_bound"] > best["lower_bound"]:
                best = result

        if not best["converged"] and self.max_iter > 0:
            warnings.warn(
                f"EM did not converge in max_iter={self.max_iter} iterations (last change of "
                f"the mean log-likelihood above tol={self.tol}). Increase max_iter or tol.",
                ConvergenceWarning,
            )
        weights, means, variances = best["params"]
        self.weights_ = weights.cpu().numpy()
        self.means_ = (means + centre).cpu().numpy()
        self.covariances_ = variances.cpu().numpy()
        self.precisions_ = 1.0 / self.covariances_
        self.precisions_cholesky_ = 1.0 / np.sqrt(self.covariances_)
        self.converged_ = best["converged"]
        self.n_iter_ = best["n_iter"]
        self.lower_bound_ = best["lower_bound"]
        self.lower_bounds_ = best["lower_bounds"]
        self.variance_floor_ = floor
        return self

    def _run_em(self, Xc, weights, means, variances, floor, chunk_size, run) -> dict:
        """EM iterations from centred initial parameters; returns the final state."""
        dtype = Xc.dtype
        sample_log_prob = torch.empty(len(Xc), dtype=dtype, device=Xc.device)
        lower_bound, lower_bounds = -math.inf, []
        converged, n_iter = False, 0
        if self.verbose:
            print(f"DiagonalGMM: initialisation {run + 1} of {self.n_init}")
        for n_iter in range(1, self.max_iter + 1):
            tic = time.perf_counter()
            previous = lower_bound
            W = log_joint_matrix(weights, means, variances, dtype)
            mean_log_prob, moments = _em_sweep(Xc, W, chunk_size, sample_log_prob)
            weights, means, variances = _m_step(moments, floor)
            mass = moments[:, -1]
            n_reseeded = _reseed_empty(weights, means, variances, mass, Xc, sample_log_prob)
            lower_bound = float(mean_log_prob)
            lower_bounds.append(lower_bound)
            change = lower_bound - previous
            if self.verbose:
                extra = f", {n_reseeded} empty components re-seeded" if n_reseeded else ""
                print(
                    f"  iteration {n_iter}: mean log-likelihood {lower_bound:.6f} "
                    f"(change {change:.3g}, {time.perf_counter() - tic:.3f} s{extra})"
                )
            if abs(change) < self.tol:
                converged = True
                break
        return {
            "params": (weights, means, variances),
            "lower_bound": lower_bound,
            "lower_bounds": lower_bounds,
            "converged": converged,
            "n_iter": n_iter,
        }

    def _initial_parameters(self, Xc, centre, data_variance, random_state, chunk_size):
        """Centred initial weights (K,), means (K, D), variances (K, D), float64 tensors."""
        float64 = dict(dtype=torch.float64, device=Xc.device)
        given = {
            name: torch.as_tensor(np.asarray(value, dtype=np.float64), **float64)
            for name, value in (
                ("weights", self.weights_init),
                ("means", self.means_init),
                ("precisions", self.precisions_init),
            )
            if value is not None
        }
        if "means" in given:
            means = given["means"] - centre
            if len(given) == 3:
                weights, variances = given["weights"], 1.0 / given["precisions"]
            else:
                labels = _nearest_centre(Xc, means, chunk_size)
                weights, _, variances = _cluster_parameters(
                    Xc, labels, means, data_variance, chunk_size
                )
        else:
            weights, means, variances = self._initialise(
                Xc, data_variance, random_state, chunk_size
            )
        if "weights" in given:
            weights = given["weights"]
        if "precisions" in given:
            variances = 1.0 / given["precisions"]
        return weights, means, variances

    def _initialise(self, Xc, data_variance, random_state, chunk_size):
        """Initial parameters by ``self.init`` (module docstring, *Initialisation*)."""
        K = self.n_components
        float64 = dict(dtype=torch.float64, device=Xc.device)
        if self.init == "random":
            index = np.sort(random_state.choice(len(Xc), size=K, replace=False))
            means = Xc[torch.as_tensor(index, device=Xc.device)].to(torch.float64)
            variances = data_variance.expand(K, -1).clone()
            weights = torch.full((K,), 1.0 / K, **float64)
            return weights, means, variances
        if self.init == "kmeans":
            kmeans = KMeans(n_clusters=K, n_init=1, random_state=random_state).fit(Xc.cpu().numpy())
            centres = torch.as_tensor(kmeans.cluster_centers_, **float64)
            labels = torch.as_tensor(kmeans.labels_, dtype=torch.long, device=Xc.device)
            return _cluster_parameters(Xc, labels, centres, data_variance, chunk_size)
        # "kmeans++": seeding on a subsample, then Lloyd iterations on all the data
        centres = _kmeans_plus_plus(Xc, K, random_state)
        labels = _nearest_centre(Xc, centres, chunk_size)
        for _ in range(_LLOYD_ITERATIONS):
            weights, centres, variances = _cluster_parameters(
                Xc, labels, centres, data_variance, chunk_size
            )
            new_labels = _nearest_centre(Xc, centres, chunk_size)
            if torch.equal(new_labels, labels):
                return weights, centres, variances
            labels = new_labels
        return _cluster_parameters(Xc, labels, centres, data_variance, chunk_size)

    # ------------------------------------------------------------------ inference

    def score_samples(self, X):
        """Log-likelihood ``log p(x_i)`` of each sample.

        X (n_samples, n_features) -> (n_samples,): float64 numpy for numpy input, a
        tensor on the compute device for torch input.
        """
        return self._infer(X, "score_samples")

    def score(self, X, y=None):
        """Mean log-likelihood per sample of X (as GaussianMixture.score)."""
        return float(self.score_samples(X).mean())

    def predict_proba(self, X):
        """Responsibilities q_ik (n_samples, n_components): the posterior of each component."""
        return self._infer(X, "predict_proba")

    def predict(self, X):
        """Most probable component (n_samples,) of each sample."""
        return self._infer(X, "predict")

    def bic(self, X):
        """Bayesian information criterion on X (lower is better)."""
        n_samples = _num_samples(X)
        return -2.0 * self.score(X) * n_samples + self._n_parameters() * math.log(n_samples)

    def aic(self, X):
        """Akaike information criterion on X (lower is better)."""
        return -2.0 * self.score(X) * _num_samples(X) + 2.0 * self._n_parameters()

    def sample(self, n_samples=1):
        """Draw samples (n_samples, D) and their components (n_samples,) from the model (numpy)."""
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(f"n_samples={n_samples} must be at least 1.")
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_ / self.weights_.sum())
        X = np.vstack(
            [
                mean + rng.standard_normal((count, len(mean))) * np.sqrt(variance)
                for mean, variance, count in zip(self.means_, self.covariances_, counts)
            ]
        )
        y = np.repeat(np.arange(self.n_components), counts)
        return X, y

    def _n_parameters(self) -> int:
        K, D = self.means_.shape
        return 2 * K * D + K - 1

    @torch.no_grad()
    def _infer(self, X, what: str):
        check_is_fitted(self)
        X, is_tensor = self._validate_input(X, reset=False)
        device = resolve_device(self.device, X)
        dtype = _DTYPES[self.dtype] if isinstance(self.dtype, str) else self.dtype
        chunk_size = self._chunk_rows(X.shape[1], device, dtype)
        float64 = dict(dtype=torch.float64, device=device)
        weights = torch.as_tensor(np.asarray(self.weights_, dtype=np.float64), **float64)
        means = torch.as_tensor(np.asarray(self.means_, dtype=np.float64), **float64)
        variances = torch.as_tensor(np.asarray(self.covariances_, dtype=np.float64), **float64)
        centre = (weights[:, None] * means).sum(0) / weights.sum()
        W = log_joint_matrix(weights, means - centre, variances, dtype)

        outputs = []
        buffer = _moments_buffer(min(chunk_size, len(X)), X.shape[1], dtype, device)
        for x in _centred_chunks(X, centre, dtype, device, chunk_size):
            log_prob = torch.mm(_stack_moments(x, buffer), W)
            if what == "predict":
                outputs.append(log_prob.argmax(dim=1))
                continue
            sample_log_prob = torch.empty(len(x), dtype=dtype, device=device)
            resp = _responsibilities(log_prob, sample_log_prob)
            outputs.append(sample_log_prob if what == "score_samples" else resp)
        result = torch.cat(outputs)
        if is_tensor:
            return result
        result = result.cpu().numpy()
        return result if what == "predict" else result.astype(np.float64)

    # ------------------------------------------------------------------ checks

    def _check_params(self) -> None:
        def positive_int(name, minimum):
            value = getattr(self, name)
            if not isinstance(value, Integral) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")

        positive_int("n_components", 1)
        positive_int("max_iter", 0)
        positive_int("n_init", 1)
        if self.chunk_size is not None:
            positive_int("chunk_size", 1)
        for name in ("tol", "variance_floor"):
            value = getattr(self, name)
            if not isinstance(value, Real) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}.")
        if self.init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, got {self.init!r}.")
        if not (self.dtype in _DTYPES or self.dtype in _DTYPES.values()):
            raise ValueError(
                f"dtype must be 'float32' or 'float64' (or the torch dtype), got {self.dtype!r}."
            )
        resolve_device(self.device)  # a clear error for an unknown device or missing CUDA

    def _check_initial_parameters(self, n_features: int) -> None:
        K = self.n_components
        checks = {
            "weights_init": (self.weights_init, (K,)),
            "means_init": (self.means_init, (K, n_features)),
            "precisions_init": (self.precisions_init, (K, n_features)),
        }
        for name, (value, shape) in checks.items():
            if value is None:
                continue
            value = np.asarray(value, dtype=np.float64)
            if value.shape != shape:
                raise ValueError(
                    f"{name} has shape {value.shape}, expected {shape} for n_components={K} "
                    f"and {n_features} features."
                )
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{name} contains NaN or infinity.")
        if self.weights_init is not None:
            weights = np.asarray(self.weights_init, dtype=np.float64)
            if np.any(weights < 0) or abs(weights.sum() - 1.0) > 1e-6:
                raise ValueError(
                    f"weights_init must be non-negative and sum to 1, got sum {weights.sum():.6g}."
                )
        if self.precisions_init is not None and np.any(np.asarray(self.precisions_init) <= 0):
            raise ValueError("precisions_init must be positive (precision = 1 / variance).")

    def _validate_input(self, X, *, reset: bool):
        """Validated X as a 2-D float numpy array or torch tensor; plus whether it is a tensor."""
        if not isinstance(X, torch.Tensor):
            X = validate_data(
                self,
                X,
                reset=reset,
                dtype=[np.float64, np.float32],
                ensure_min_samples=2 if reset else 1,
            )
            return X, False
        return validate_tensor(self, X, reset=reset, min_samples=2 if reset else 1), True

    def _chunk_rows(self, n_features: int, device: torch.device, dtype: torch.dtype) -> int:
        """Samples per chunk: ``chunk_size``, else the device's budget (``fv._compute``).

        A row of a chunk is one sample. It costs, in the compute dtype, its centred copy
        (D values; a fresh copy when it comes from NumPy or another device), its stacked
        features [x, x*x, 1] (2D + 1, counted 2D) and its K log-joint densities and K
        responsibilities: (3D + 2K) values. At least `_MIN_CHUNK_ROWS` rows.
        """
        if self.chunk_size is not None:
            return int(self.chunk_size)
        row_bytes = (3 * n_features + 2 * self.n_components) * torch.finfo(dtype).bits // 8
        return chunk_rows(row_bytes, device, minimum=_MIN_CHUNK_ROWS)


# ----------------------------------------------------------------------------------------
# Data preparation and initialisation
# ----------------------------------------------------------------------------------------


def _num_samples(X) -> int:
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)


def _centred_chunks(
    X, centre: torch.Tensor, dtype, device, chunk_size: int
) -> Iterator[torch.Tensor]:
    """Chunks (<= chunk_size, D) of X - centre (float64 subtraction) in ``dtype`` on ``device``."""
    if isinstance(X, torch.Tensor):
        for start in range(0, len(X), chunk_size):
            x = X[start : start + chunk_size].to(device=device, dtype=torch.float64)
            yield (x - centre).to(dtype)
    else:
        centre_np = centre.cpu().numpy()
        np_dtype = np.float32 if dtype == torch.float32 else np.float64
        for start in range(0, len(X), chunk_size):
            x = X[start : start + chunk_size].astype(np.float64) - centre_np
            yield torch.from_numpy(x.astype(np_dtype, copy=False)).to(device)


def _centre_data(X, dtype, device, chunk_size: int):
    """Data mean (D,), centred copy of X (N, D) in ``dtype`` and per-dimension variance (D,).

    Mean and variance are float64 tensors on ``device``.
    """
    n_samples, n_features = X.shape
    zero = torch.zeros(n_features, dtype=torch.float64, device=device)
    total = zero.clone()
    for x in _centred_chunks(X, zero, torch.float64, device, chunk_size):
        total += x.sum(0)
    centre = total / n_samples
    Xc = torch.empty(n_samples, n_features, dtype=dtype, device=device)
    square = zero.clone()
    start = 0
    for x in _centred_chunks(X, centre, dtype, device, chunk_size):
        Xc[start : start + len(x)] = x
        square += (x.to(torch.float64) ** 2).sum(0)
        start += len(x)
    return centre, Xc, square / n_samples


def _kmeans_plus_plus(X: torch.Tensor, n_components: int, random_state) -> torch.Tensor:
    """k-means++ seeds (K, D) float64 from a subsample of at most max(10_000, 50 K) rows of X."""
    n_samples = len(X)
    size = min(n_samples, max(10_000, 50 * n_components))
    index = np.sort(random_state.choice(n_samples, size=size, replace=False))
    subsample = X[torch.as_tensor(index, device=X.device)].to(torch.float64).cpu().numpy()
    centres, _ = kmeans_plusplus(subsample, n_components, random_state=random_state)
    return torch.as_tensor(centres, dtype=torch.float64, device=X.device)
