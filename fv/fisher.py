r"""Fisher vectors, Fisher scores, the Fisher information and the Fisher kernel of a diagonal GMM.

Model
-----
A Gaussian mixture with K components in D dimensions, diagonal covariances:

    p(x) = sum_k w_k N(x; mu_k, diag(sigma_k^2)),    w_k > 0,  sum_k w_k = 1.

Every function of this module takes the mixture as one argument ``gmm``: a fitted `fv.DiagonalGMM`,
a fitted ``sklearn.mixture.GaussianMixture(covariance_type="diag")``, or the record
``fv.GMMParameters(means, covariances, weights)``. ``means`` is (K, D), ``covariances`` holds the
variances sigma_k^2 as (K, D) (the ``covariances_`` of ``covariance_type="diag"``, VLFeat's ``vl_gmm``
covariances) and ``weights`` holds the w_k, (K,). For example::

    fv.fisher_vectors(descriptor_sets, gmm, improved=True)

The posterior (soft assignment) of descriptor x_i to component k is

    q_ik = w_k N(x_i; mu_k, sigma_k^2) / sum_j w_j N(x_i; mu_j, sigma_j^2),

computed as a softmax over k of the log-joint densities (log-sum-exp), so it never underflows to 0/0.

Fisher vector (Perronnin, Sanchez & Mensink 2010; Sanchez et al. 2013, IJCV)
----------------------------------------------------------------------------
For descriptors x_1..x_N of one image, with diff_ikd = (x_id - mu_kd) / sigma_kd:

    u_k = 1 / (N sqrt(w_k))   sum_i q_ik diff_ik                 (D values, mean block)
    v_k = 1 / (N sqrt(2 w_k)) sum_i q_ik (diff_ik^2 - 1)         (D values, variance block)
    a_k = 1 / (N sqrt(w_k))   sum_i (q_ik - w_k)                 (1 value, weight block, optional)

Layout, as VLFeat's ``vl_fisher`` (vl/fisher.c): all mean blocks, then all variance blocks,

    FV = [u_1, ..., u_K, v_1, ..., v_K]                          shape (2 K D,)

and with ``weights_block=True`` the K weight entries come FIRST (as in scikit-image):

    FV = [a_1, ..., a_K, u_1, ..., u_K, v_1, ..., v_K]           shape (K + 2 K D,)

scikit-image's ``skimage.feature.fisher_vector`` uses the weights-first layout but its variance block
is the negative of v_k (it differentiates with respect to the variance and flips the sign).

Improved Fisher vector (Perronnin, Sanchez & Mensink 2010, section 3)
---------------------------------------------------------------------
``improved=True`` applies the signed power z -> sign(z) |z|^alpha (alpha = 0.5: signed square root)
element-wise, then L2-normalises the whole vector (weight block included when present). A vector of
zeros stays zero: an image with no descriptors, or whose descriptors were all dropped (see Numerics),
encodes to zeros, never NaN.

Fisher score, information and kernel (Jaakkola & Haussler 1998; Perronnin & Dance 2007)
---------------------------------------------------------------------------------------
The Fisher score of a set X = {x_1..x_N} is U_X = grad_theta log P(X | theta) = sum_i grad_theta
log p(x_i | theta), unnormalised (no 1/N). The parameters theta are, in this order:

* alpha_k, the softmax parametrisation of the weights, w_k = exp(alpha_k) / sum_j exp(alpha_j)
  (Sanchez et al. 2013), which removes the sum-to-one constraint:
      dlog P / dalpha_k = sum_i (q_ik - w_k);
* mu_kd:     dlog P / dmu_kd    = sum_i q_ik (x_id - mu_kd) / sigma_kd^2;
* sigma_kd (standard deviations, not variances):
             dlog P / dsigma_kd = sum_i q_ik [ (x_id - mu_kd)^2 / sigma_kd^3 - 1 / sigma_kd ].

``fisher_score`` returns U_X flat as [alpha_1..alpha_K, mu_1..mu_K, sigma_1..sigma_K] (K + 2 K D,),
each mu_k and sigma_k block of D values, i.e. the layout of ``fisher_vector(..., weights_block=True)``.

The closed-form diagonal approximation of the Fisher information of N descriptors (Perronnin & Dance
2007; Sanchez et al. 2013; it assumes sharp posteriors, q_ik in {0, 1}):

    F_alpha_k = N w_k,    F_mu_kd = N w_k / sigma_kd^2,    F_sigma_kd = 2 N w_k / sigma_kd^2.

For the softmax weights the information under the same assumption is the (K, K) matrix
N (diag(w) - w w^T): with one-hot posteriors drawn with probabilities w, E[(q_ik - w_k)(q_il - w_l)] =
w_k delta_kl - w_k w_l. Its diagonal, N w_k (1 - w_k), is not what is kept. The matrix is singular: its
rows sum to zero, as every weight score does (sum_k (q_ik - w_k) = 0), so the scores lie in its range
{u : sum_k u_k = 0}. What is kept is N diag(w), because its inverse is a generalised inverse of the
exact matrix: with sum_k w_k = 1,

    (diag(w) - w w^T) diag(1 / w) (diag(w) - w w^T) = diag(w) - w w^T,

and for scores u, v in the range u^T G v is the same for every generalised inverse G (the
pseudo-inverse included). So diag(1 / (N w)) gives the exact Fisher kernel of the weight block, and the
weight entries of the Fisher vector are a_k = U_alpha_k / (N sqrt(w_k)), as in Sanchez et al. 2013.
For one descriptor their variance is 1 - w_k, not 1 (the mean and sigma entries have unit variance).
``fisher_information(gmm, n_descriptors=1)`` gives the per-descriptor information F_1 in the layout
of ``fisher_score``.

Identity tying the three together, exact with these conventions: the unnormalised Fisher vector is the
score whitened by the per-descriptor information and averaged over the descriptors,

    fisher_vector(X, improved=False, weights_block=True) = F_1^{-1/2} U_X / N_X
                                                          = F_{N_X}^{-1/2} U_X / sqrt(N_X),

so the Fisher kernel with the per-descriptor information, K(X, Y) = U_X^T F_1^{-1} U_Y
(``fisher_kernel``), equals N_X N_Y <FV(X), FV(Y)> of the unnormalised Fisher vectors with the weight
block. Without the weight block the same holds for the kernel restricted to the means and sigmas.

Spatial pyramid (Lazebnik et al. 2006; Perronnin, Sanchez & Mensink 2010, section 3)
------------------------------------------------------------------------------------
A grid (rows, cols) splits an H x W image into cells; a descriptor whose frame centre is (x, y)
(x = column, y = row, 0-based pixel coordinates) belongs to the cell

    row = clip(floor(y * rows / H), 0, rows - 1),    col = clip(floor(x * cols / W), 0, cols - 1),

numbered row-major (row * cols + col). The pyramid vector concatenates, for each grid in order and each
cell in row-major order, the Fisher vector of the cell's descriptors (N = the number in the cell). With
``improved=True`` each region's vector is power- and L2-normalised, then the whole concatenation is
L2-normalised; empty regions are zero blocks. With ``improved=False`` the raw region vectors are
concatenated without any normalisation. Default grid: 1x1 + 2x2 + 3x1 (8 regions).

Numerics and cost
-----------------
Log-joint densities use the expansion (x - mu)^2 / sigma^2 = x^2 / sigma^2 - 2 x mu / sigma^2 +
mu^2 / sigma^2, i.e. one matrix product of [x, x^2, 1] (N x (2D + 1)) with a (2D + 1) x K matrix, and
the moments sum_i q_ik x_i, sum_i q_ik x_i^2 and sum_i q_ik are one product Q^T [x, x^2, 1]: about
8 N K D flops per image, batched over images in ``fisher_vectors``. Expanded forms lose precision in
float32 when the data sit far from the origin (with an offset of 100 on descriptors and means the
error reaches 10% of the vector), so both descriptors and means are first shifted by the mixture mean
c = sum_k w_k mu_k (computed in float64): x - c and mu_k - c are O(spread of the data), and the
matrix products run on those. The small K x D sums S0, S1 = sum_i q_ik (x_i - c) and
S2 = sum_i q_ik (x_i - c)^2 are then re-centred on each mean in float64 arithmetic,
sum_i q_ik (x_i - mu_k) = S1_k - S0_k (mu_k - c) and
sum_i q_ik (x_i - mu_k)^2 = S2_k - 2 (mu_k - c) S1_k + S0_k (mu_k - c)^2,
and the blocks and normalisation are formed in float64 before casting back. In float32 the unnormalised
vector then agrees with a float64 computation to about 1e-5 of its largest entry, offset or not (the
log-densities themselves carry a float32 rounding of ~1e-7 of their magnitude); the signed square root
of the improved vector turns an absolute error e of an entry near zero into about sqrt(e).

A descriptor whose log-joint densities are not finite for any component (NaN input, or a squared
distance overflowing the working precision) is dropped: it contributes nothing and N counts only the
kept descriptors. A vector that still holds a non-finite value (accumulated overflow) is set to zero.
Descriptors far from every mean (say 1e6 standard deviations) are not dropped: their posteriors
become one-hot on the nearest component, as the log-sum-exp prescribes.

References
----------
* F. Perronnin, C. Dance. Fisher kernels on visual vocabularies for image categorization. CVPR 2007.
* F. Perronnin, J. Sanchez, T. Mensink. Improving the Fisher kernel for large-scale image
  classification. ECCV 2010.
* J. Sanchez, F. Perronnin, T. Mensink, J. Verbeek. Image classification with the Fisher vector:
  theory and practice. IJCV 105(3), 2013.
* T. Jaakkola, D. Haussler. Exploiting generative models in discriminative classifiers. NIPS 1998.
* S. Lazebnik, C. Schmid, J. Ponce. Beyond bags of features: spatial pyramid matching. CVPR 2006.
* A. Vedaldi, B. Fulkerson. VLFeat (vl/fisher.c documents the same derivation and layout).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
from sklearn.utils.validation import check_is_fitted

from ._compute import chunk_rows, resolve_device
from .gmm import DiagonalGMM, GMMParameters, log_joint_matrix

__all__ = [
    "fisher_vector",
    "fisher_vectors",
    "spatial_pyramid_cells",
    "spatial_pyramid_fisher_vector",
    "spatial_pyramid_fisher_vectors",
    "fisher_score",
    "fisher_information",
    "fisher_kernel",
]

DEFAULT_GRID = ((1, 1), (2, 2), (3, 1))

# Chunks of the batched products (``_chunks``). A row of a chunk is one descriptor set, padded to the
# longest of the chunk, n descriptors. What it costs grows with n K: its posteriors (n x K values of the
# compute dtype) and about as much again beside them -- the augmented descriptors [y, y^2, 1]
# (n x (2D + 1) values, as many as the posteriors for 2D + 1 = K) and, for spatial pyramids, the rows
# gathered cell by cell. So a row costs this many values per (descriptor, component). With the budgets
# of ``fv._compute`` that is 2**21 posteriors per chunk in float32 on a CPU (16 MiB: the working set
# stays in cache; larger chunks measured slower) and 2**27 on a GPU (1 GiB).
_VALUES_PER_POSTERIOR = 2


# --------------------------------------------------------------------------------------------------
# Input validation and conversion
# --------------------------------------------------------------------------------------------------


def _to_float64_numpy(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array or tensor; got {type(a).__name__}") from exc


def _check_gmm(gmm) -> GMMParameters:
    """The mixture ``gmm`` (module docstring, Model) as validated float64 NumPy parameters."""
    if isinstance(gmm, (DiagonalGMM, GaussianMixture, BayesianGaussianMixture)):
        check_is_fitted(gmm, ("means_", "covariances_", "weights_"))
        covariance_type = getattr(gmm, "covariance_type", "diag")
        if covariance_type != "diag":
            raise ValueError(
                f"gmm has covariance_type={covariance_type!r}; Fisher vectors need diagonal covariances: "
                "fit GaussianMixture(covariance_type='diag') or fv.DiagonalGMM"
            )
        gmm = GMMParameters(gmm.means_, gmm.covariances_, gmm.weights_)
    elif not isinstance(gmm, GMMParameters):
        hint = " (wrap a tuple as fv.GMMParameters(means, covariances, weights))" if isinstance(gmm, tuple) else ""
        raise TypeError(
            "gmm must be a fitted fv.DiagonalGMM, a fitted sklearn.mixture.GaussianMixture(covariance_type='diag')"
            f" or fv.GMMParameters(means, covariances, weights); got {type(gmm).__name__}{hint}"
        )
    means = _to_float64_numpy(gmm.means, "means")
    variances = _to_float64_numpy(gmm.covariances, "covariances")
    weights = _to_float64_numpy(gmm.weights, "weights")
    if means.ndim != 2 or means.shape[0] == 0 or means.shape[1] == 0:
        raise ValueError(f"means must have shape (n_components, n_features); got shape {means.shape}")
    K, D = means.shape
    if variances.shape != (K, D):
        raise ValueError(
            f"covariances must hold diagonal variances of shape (n_components, n_features) = ({K}, {D})"
            f" to match means; got shape {variances.shape}"
        )
    if weights.shape != (K,):
        raise ValueError(f"weights must have shape (n_components,) = ({K},); got shape {weights.shape}")
    for name, a in (("means", means), ("covariances", variances), ("weights", weights)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite")
    if np.any(variances <= 0):
        raise ValueError("covariances (variances) must be strictly positive")
    if np.any(weights <= 0):
        raise ValueError("weights must be strictly positive")
    if not np.isclose(weights.sum(), 1.0, rtol=0.0, atol=1e-4):
        raise ValueError(f"weights must sum to 1; they sum to {weights.sum():.6g}")
    return GMMParameters(means, variances, weights)


def _check_descriptors(x, n_features: int, name: str = "descriptors"):
    """Return x (NumPy array or tensor) of shape (N, D); a size-0 input of any shape means N = 0."""
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise TypeError(f"{name} must be numeric; got dtype {x.dtype}")
    if x.ndim == 2 and x.shape[1] == n_features:
        return x
    if x.ndim <= 2 and (x.shape[0] if x.ndim else 1) == 0:
        return x.reshape(0, n_features)
    raise ValueError(
        f"{name} must have shape (n_descriptors, {n_features}) to match means; got shape {tuple(x.shape)}"
    )


def _check_alpha(alpha) -> float:
    alpha = float(alpha)
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1]; got {alpha}")
    return alpha


def _check_grid(grid) -> tuple[tuple[int, int], ...]:
    try:
        cells = tuple((int(r), int(c)) for r, c in grid)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"grid must be a sequence of (rows, cols) pairs; got {grid!r}") from exc
    if not cells or any(r < 1 or c < 1 for r, c in cells):
        raise ValueError(f"grid must be a non-empty sequence of positive (rows, cols) pairs; got {grid!r}")
    return cells


def _check_image_shape(shape) -> tuple[int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"image_shape must be (height, width[, channels]); got {shape}")
    return shape[0], shape[1]


def _torch_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        out = dtype
    else:
        out = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}.get(np.dtype(dtype))
    if out not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be float32 or float64; got {dtype!r}")
    return out


def _check_batch_size(batch_size) -> int | None:
    if batch_size is None:
        return None
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}")
    return int(batch_size)


def _natural_dtype(x) -> torch.dtype:
    """float32 stays float32, everything else is computed in float64."""
    return torch.float32 if x.dtype in (np.float32, torch.float32) else torch.float64


def _feature_dim(K: int, D: int, weights_block: bool) -> int:
    return 2 * K * D + (K if weights_block else 0)


# --------------------------------------------------------------------------------------------------
# The batched core: posteriors and moments for a padded chunk of images
# --------------------------------------------------------------------------------------------------


class _FisherCoefficients(NamedTuple):
    """What the batched core needs of the mixture, on the compute device.

    ``log_joint`` maps the augmented descriptor z = [y, y^2, 1] with y = x - c (2D + 1 values) to the
    log-joint density log w_k + log N(x; mu_k, sigma_k^2), up to one constant shared by all k
    (``fv.gmm.log_joint_matrix`` of the centred means m_k = mu_k - c). The float64 coefficients turn
    the sums S0 = sum_i q_ik, Sy = sum_i q_ik y_i, Syy = sum_i q_ik y_i^2 into the Fisher vector blocks:

        sqrt(w_k) N u_k      = (Sy - S0 m_k) / sigma_k
        sqrt(2 w_k) N v_k    = sum_i q_ik (x_i - mu_k)^2 / sigma_k^2 - S0
                             = Syy / sigma_k^2 - 2 Sy m_k / sigma_k^2 + S0 (m_k^2 / sigma_k^2 - 1)
        sqrt(w_k) N a_k      = S0 - N w_k
    """

    log_joint: torch.Tensor  # (2D + 1, K), compute dtype
    centre: torch.Tensor  # (D,), compute dtype: c = sum_k w_k mu_k
    u_y: torch.Tensor  # (K, D) float64: 1 / (sigma_k sqrt(w_k))
    u_0: torch.Tensor  # (K, D): -m_k / (sigma_k sqrt(w_k))
    v_yy: torch.Tensor  # (K, D): 1 / (sigma_k^2 sqrt(2 w_k))
    v_y: torch.Tensor  # (K, D): -2 m_k / (sigma_k^2 sqrt(2 w_k))
    v_0: torch.Tensor  # (K, D): (m_k^2 / sigma_k^2 - 1) / sqrt(2 w_k)
    weights: torch.Tensor  # (K,) float64


def _fisher_coefficients(mixture: GMMParameters, device, dtype: torch.dtype) -> _FisherCoefficients:
    """The coefficients of validated float64 mixture parameters, on ``device``."""
    means, variances, weights = (torch.as_tensor(a, dtype=torch.float64, device=device) for a in mixture)
    centre = weights @ means
    m = means - centre
    precision = 1.0 / variances
    sqrt_w = torch.sqrt(weights)[:, None]
    sqrt_2w = math.sqrt(2.0) * sqrt_w
    sigma = torch.sqrt(variances)
    return _FisherCoefficients(
        log_joint=log_joint_matrix(weights, m, variances, dtype, up_to_constant=True),
        centre=centre.to(dtype),
        u_y=1.0 / (sigma * sqrt_w),
        u_0=-m / (sigma * sqrt_w),
        v_yy=precision / sqrt_2w,
        v_y=-2.0 * m * precision / sqrt_2w,
        v_0=(m * m * precision - 1.0) / sqrt_2w,
        weights=weights,
    )


class _Workspace:
    """Buffers reused from chunk to chunk: fresh multi-MiB tensors cost page faults on every chunk."""

    def __init__(self, device, dtype: torch.dtype):
        self.device, self.dtype = device, dtype
        self._buffers: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> torch.Tensor:
        """An uninitialised tensor of ``shape``, valid until ``name`` is taken again."""
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size or (dtype is not None and buffer.dtype != dtype):
            buffer = torch.empty(size, dtype=dtype or self.dtype, device=self.device)
            self._buffers[name] = buffer
        return buffer[:size].view(shape)


def _augment_(Z: torch.Tensor, counts: torch.Tensor, coefficients: _FisherCoefficients) -> torch.Tensor:
    """In place: Z (b, n, 2D + 1) holding descriptors x in Z[..., :D] becomes [x - c, (x - c)^2, 1],
    with zero rows past each image's count (whatever they held). Returns the row mask (b, n)."""
    b, n, width = Z.shape
    D = (width - 1) // 2
    y = Z[..., :D]
    y.sub_(coefficients.centre)
    row_mask = torch.arange(n, device=Z.device) < counts[:, None]
    if n and bool((counts < n).any()):
        y.masked_fill_(~row_mask[..., None], 0.0)
    torch.mul(y, y, out=Z[..., D : 2 * D])
    Z[..., 2 * D] = row_mask.to(Z.dtype)
    return row_mask


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``out[i, j] = x[i, index[i, j]]`` for x (B, n, F) and index (B, m): one ``index_select`` on the
    flattened rows (``gather`` and ``take_along_dim`` broadcast the index over the F columns, several
    times slower on a CPU)."""
    B, n = x.shape[:2]
    rows = (index + n * torch.arange(B, device=x.device)[:, None]).reshape(-1)
    return x.reshape(B * n, -1).index_select(0, rows).view(B, index.shape[1], -1)


def _cell_sums(Q: torch.Tensor, Z: torch.Tensor, keep: torch.Tensor, cells, n_cells: int, ws: _Workspace):
    """Per-cell sums Q^T Z over the kept rows: counts (b, C) and sums (b, C, K, 2D + 1).

    One cell is a plain batched product. Several cells are gathered cell by cell into a padded
    (b * C, m, .) batch (m = the largest cell) so that each cell costs one product over its own rows.
    """
    b, n, K = Q.shape
    width = Z.shape[-1]
    if n_cells == 1:
        sums = torch.bmm(Q.transpose(1, 2), Z, out=ws.take("sums", (b, K, width)))
        return keep.sum(1, keepdim=True), sums.unsqueeze(1)
    key = torch.where(keep, cells, n_cells)  # dropped and padding rows go to a spare cell
    counts = torch.zeros(b, n_cells + 1, dtype=torch.long, device=Q.device)
    counts.scatter_add_(1, key, torch.ones_like(key))
    m = int(counts[:, :n_cells].max()) if b else 0
    if m == 0:
        return counts[:, :n_cells], Q.new_zeros(b, n_cells, K, width)
    order = torch.argsort(key, dim=1, stable=True)
    sorted_key = key.gather(1, order)
    first = torch.cumsum(counts, 1) - counts  # sorted position of each cell's first row
    rank = torch.arange(n, device=Q.device) - first.gather(1, sorted_key)
    slot = torch.where(sorted_key < n_cells, sorted_key * m + rank, n_cells * m)
    index = torch.full((b, n_cells * m + 1), n, dtype=torch.long, device=Q.device)
    index.scatter_(1, slot, order)  # the spare slot n_cells * m collects the rows to leave out
    index = index[:, : n_cells * m]  # row n of each image is a zero row (padding)
    Zg = gather_rows(torch.cat([Z, Z.new_zeros(b, 1, width)], 1), index)
    Qg = gather_rows(torch.cat([Q, Q.new_zeros(b, 1, K)], 1), index)
    sums = torch.bmm(Qg.view(b * n_cells, m, K).transpose(1, 2), Zg.view(b * n_cells, m, width))
    return counts[:, :n_cells], sums.view(b, n_cells, K, width)


def _chunk_sums(Z: torch.Tensor, counts: torch.Tensor, coefficients: _FisherCoefficients, levels, ws: _Workspace) -> list:
    """(counts (b, C), sums (b, C, K, 2D + 1)) for each (cells, C) level of a chunk of b images.

    Z (b, n, 2D + 1) holds the descriptors in Z[..., :D] (``_augment_`` fills in the rest).
    """
    b, n, _ = Z.shape
    K = coefficients.log_joint.shape[1]
    row_mask = _augment_(Z, counts, coefficients)
    Q = torch.mm(Z.view(b * n, Z.shape[-1]), coefficients.log_joint, out=ws.take("posteriors", (b * n, K)))
    torch.softmax(Q, dim=-1, out=Q)  # log-joint densities -> posteriors, in place
    Q = Q.view(b, n, K)
    sums = [_cell_sums(Q, Z, row_mask, cells, c, ws) for cells, c in levels]
    if not all(bool(torch.isfinite(s.sum())) for _, s in sums):  # a finite total implies finite terms
        # Rare path: some descriptor has no finite log-joint density (NaN input or overflow), so its
        # posteriors are NaN (0/0 or inf - inf) and spread into the sums. Drop it and sum again.
        keep = row_mask & ~torch.isnan(Q).any(-1)
        Z.masked_fill_(~keep[..., None], 0.0)
        Q.masked_fill_(~keep[..., None], 0.0)
        sums = [_cell_sums(Q, Z, keep, cells, c, ws) for cells, c in levels]
    return sums


def _fisher_blocks(count, sums, coefficients: _FisherCoefficients, weights_block: bool, per_descriptor: bool,
                   out: torch.Tensor):
    """Unnormalised Fisher vectors written into ``out`` (b, C, dim) float64, from the sums.

    The coefficients are those of ``_FisherCoefficients``. With ``per_descriptor=False`` the 1/N factor
    is left out (the improved vector does not depend on it). A vector holding a non-finite value
    (overflow) is set to zero.
    """
    b, C, K, width = sums.shape
    D = (width - 1) // 2
    s0, sy, syy = sums[..., 2 * D : 2 * D + 1], sums[..., :D], sums[..., D : 2 * D]
    offset = K if weights_block else 0
    vectors = out  # (b, C, dim) float64
    u = vectors[..., offset : offset + K * D].view(b, C, K, D)
    torch.mul(sy, coefficients.u_y, out=u)
    u.addcmul_(s0, coefficients.u_0)
    v = vectors[..., offset + K * D :].view(b, C, K, D)
    torch.mul(syy, coefficients.v_yy, out=v)
    v.addcmul_(sy, coefficients.v_y).addcmul_(s0, coefficients.v_0)
    n = count.to(torch.float64)[..., None]  # (b, C, 1)
    if weights_block:
        weights = coefficients.weights
        torch.sub(s0[..., 0], n * weights, out=vectors[..., :K]).div_(torch.sqrt(weights))
    if per_descriptor:
        vectors.div_(n.clamp(min=1.0))  # empty cells have zero sums
    bad = ~torch.isfinite(vectors.sum(-1))
    if bool(bad.any()):
        vectors[bad] = 0.0
    return vectors


def _l2_normalise_(vectors: torch.Tensor) -> torch.Tensor:
    norm = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
    return vectors.div_(torch.where(norm > 0, norm, 1.0))


def _improve_(vectors: torch.Tensor, alpha: float, scratch: torch.Tensor) -> torch.Tensor:
    """In place: signed power sign(z) |z|^alpha, then L2 over the last axis; zero vectors stay zero."""
    powered = torch.abs(vectors, out=scratch)
    if alpha == 0.5:
        powered.sqrt_()  # faster than pow
    else:
        powered.pow_(alpha)
    return _l2_normalise_(vectors.copy_(powered.copysign_(vectors)))


# --------------------------------------------------------------------------------------------------
# Driver: many ragged descriptor sets, in chunks, in any order of lengths
# --------------------------------------------------------------------------------------------------


def _pyramid_cells(frames: torch.Tensor, height, width, grid) -> torch.Tensor:
    """Cell index per descriptor and grid, (..., len(grid)) int64 for frames (..., F >= 2) (formula in
    the module docstring); ``height`` and ``width`` are numbers or tensors broadcasting against
    ``frames[..., 0]`` (one size per image of a padded batch)."""
    x = frames[..., 0].to(torch.float64)
    y = frames[..., 1].to(torch.float64)
    columns = []
    for rows, cols in grid:
        r = torch.floor(y * rows / height).clamp(0, rows - 1).long()
        c = torch.floor(x * cols / width).clamp(0, cols - 1).long()
        columns.append(r * cols + c)
    return torch.stack(columns, dim=-1) if columns else frames.new_zeros(frames.shape[:-1] + (0,), dtype=torch.long)


class _DescriptorSets(NamedTuple):
    """B descriptor sets: ragged (a list of (N_i, D) arrays or tensors) or padded ((B, N, D) + lengths)."""

    lengths: list[int]
    ragged: list | None = None
    padded: np.ndarray | torch.Tensor | None = None

    def is_torch(self) -> bool:
        if self.padded is not None:
            return isinstance(self.padded, torch.Tensor)
        return any(isinstance(s, torch.Tensor) for s in self.ragged)

    def any_tensor(self) -> torch.Tensor | None:
        """The padded tensor or the first tensor among the ragged sets (None for NumPy input): where
        ``device=None`` computes (``fv._compute.resolve_device``)."""
        if isinstance(self.padded, torch.Tensor):
            return self.padded
        return next((s for s in self.ragged or () if isinstance(s, torch.Tensor)), None)

    def write(self, index: list[int], out: torch.Tensor) -> None:
        """Copy images ``index`` into out (len(index), n_max, D); rows past each length are left as they are.

        Host data bound for a GPU is gathered on the host and moved in one transfer.
        """
        n_max = out.shape[1]
        if self.padded is not None:
            if isinstance(self.padded, torch.Tensor):
                out.copy_(self.padded[torch.as_tensor(index, device=self.padded.device), :n_max])
            else:
                out.copy_(torch.from_numpy(self.padded[np.asarray(index), :n_max]))
            return
        items = [self.ragged[i] for i in index]
        direct = out.device.type == "cpu" or all(isinstance(a, torch.Tensor) and a.device == out.device for a in items)
        target = out if direct else torch.empty(out.shape, dtype=out.dtype)
        for row, a in zip(target, items):
            if len(a):
                row[: len(a)].copy_(a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a)))
        if target is not out:
            out.copy_(target)


def _prepare_sets(descriptor_sets, counts, D: int) -> _DescriptorSets:
    """Validate a list of (N_i, D) arrays/tensors, or a padded (B, N, D) array with optional counts."""
    if isinstance(descriptor_sets, (np.ndarray, torch.Tensor)) and descriptor_sets.ndim == 3:
        B, N, d = descriptor_sets.shape
        if d != D:
            raise ValueError(
                f"descriptor_sets must have shape (n_images, n_descriptors, {D}) to match means;"
                f" got shape {tuple(descriptor_sets.shape)}"
            )
        lengths = [N] * B if counts is None else [int(c) for c in _to_float64_numpy(counts, "counts").reshape(-1)]
        if len(lengths) != B or any(c < 0 or c > N for c in lengths):
            raise ValueError(f"counts must hold {B} integers in [0, {N}]; got {lengths if B <= 8 else '...'}")
        if not isinstance(descriptor_sets, torch.Tensor):
            descriptor_sets = np.asarray(descriptor_sets)
        return _DescriptorSets(lengths, padded=descriptor_sets)
    if counts is not None:
        raise ValueError("counts is only used with a padded (n_images, n_descriptors, n_features) array")
    if isinstance(descriptor_sets, (np.ndarray, torch.Tensor)):
        raise ValueError(
            f"descriptor_sets must be a sequence of (n_descriptors, {D}) arrays or a padded "
            f"(n_images, n_descriptors, {D}) array; got an array of shape {tuple(descriptor_sets.shape)}"
        )
    ragged = [_check_descriptors(s, D, name=f"descriptor_sets[{i}]") for i, s in enumerate(descriptor_sets)]
    return _DescriptorSets([len(s) for s in ragged], ragged=ragged)


def _pad(items: list[torch.Tensor], n_max: int, device) -> torch.Tensor:
    """Stack (N_i, F) tensors into a zero-padded (len(items), n_max, F) tensor on ``device``."""
    out = items[0].new_zeros(len(items), n_max, items[0].shape[1])
    for row, a in zip(out, items):
        row[: len(a)] = a
    return out.to(device)


def _chunks(lengths: Sequence[int], K: int, device: torch.device, dtype: torch.dtype, batch_size: int | None):
    """Image indices in chunks, longest sets first, so that each chunk pads little.

    ``batch_size`` images per chunk, or by default as many as the device's budget holds when each costs
    what the longest remaining set of n descriptors does: n K `_VALUES_PER_POSTERIOR` values of ``dtype``.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    start = 0
    while start < len(order):
        if batch_size is not None:
            size = batch_size
        else:
            row_bytes = lengths[order[start]] * K * _VALUES_PER_POSTERIOR * dtype.itemsize
            size = chunk_rows(row_bytes, device)
        yield order[start : start + size]
        start += size


def _encode_sets(
    sets: _DescriptorSets,
    mixture: GMMParameters,
    *,
    improved: bool,
    alpha: float,
    weights_block: bool,
    device,
    dtype: torch.dtype,
    batch_size: int | None,
    out,
    frames=None,
    shapes=None,
    grid=None,
):
    """Fisher vectors of validated descriptor sets, written into ``out`` (B, dim) row by row."""
    K, D = mixture.means.shape
    dim = _feature_dim(K, D, weights_block)
    coefficients = _fisher_coefficients(mixture, device, dtype)
    workspace = _Workspace(device, dtype)
    lengths = sets.lengths
    n_regions = 1 if grid is None else sum(r * c for r, c in grid)
    levels_spec = [(None, 1)] if grid is None else [(level, r * c) for level, (r, c) in enumerate(grid)]
    for chunk in _chunks(lengths, K, device, dtype, batch_size):
        n_max = max(lengths[i] for i in chunk)
        Z = workspace.take("z", (len(chunk), n_max, 2 * D + 1))
        sets.write(chunk, Z[..., :D])
        counts = torch.tensor([lengths[i] for i in chunk], device=device)
        if grid is None:
            levels = levels_spec
        else:
            if isinstance(frames, torch.Tensor):  # padded (B, N, F): the chunk's cells in one go
                f = frames[torch.as_tensor(chunk, device=frames.device), :n_max].to(device)
                height, width = torch.tensor([shapes[i] for i in chunk], dtype=torch.float64, device=device).T
                cells = _pyramid_cells(f, height[:, None], width[:, None], grid)
            else:
                cell_ids = [_pyramid_cells(torch.as_tensor(frames[i]), *shapes[i], grid) for i in chunk]
                cells = _pad(cell_ids, n_max, device)
            levels = [(cells[..., level] if c > 1 else None, c) for level, c in levels_spec]
        vectors = workspace.take("fv", (len(chunk), n_regions, dim), torch.float64)
        region = 0
        for count, sums in _chunk_sums(Z, counts, coefficients, levels, workspace):
            n_cells = sums.shape[1]
            _fisher_blocks(count, sums, coefficients, weights_block, not improved,
                           out=vectors[:, region : region + n_cells])
            region += n_cells
        if improved:  # in the working precision: the power and the norms need no more
            vectors = workspace.take("improved", vectors.shape).copy_(vectors)
            _improve_(vectors, alpha, scratch=workspace.take("scratch", vectors.shape))
            if n_regions > 1:
                _l2_normalise_(vectors.view(len(chunk), -1))
        vectors = vectors.view(len(chunk), -1)
        if isinstance(out, torch.Tensor):
            out[torch.as_tensor(chunk, device=out.device)] = vectors.to(device=out.device, dtype=out.dtype)
        else:
            out[np.asarray(chunk)] = vectors.cpu().numpy()
    return out


def _make_out(out, B: int, dim: int, dtype: torch.dtype, as_torch: bool, device: torch.device):
    if out is None:
        if as_torch:
            return torch.empty(B, dim, dtype=dtype, device=device)
        return np.empty((B, dim), dtype=np.float32 if dtype == torch.float32 else np.float64)
    if tuple(out.shape) != (B, dim):
        raise ValueError(f"out must have shape (n_images, dim) = ({B}, {dim}); got {tuple(out.shape)}")
    return out


# --------------------------------------------------------------------------------------------------
# Public API: Fisher vectors
# --------------------------------------------------------------------------------------------------


def fisher_vector(descriptors, gmm, *, improved=True, alpha=0.5, weights_block=False):
    """Fisher vector of one set of descriptors under a diagonal GMM (VLFeat ``vl_fisher`` layout).

    Formulas, layout and normalisation are in the module docstring (Perronnin, Sanchez & Mensink 2010;
    Sanchez et al. 2013).

    Parameters
    ----------
    descriptors : array or tensor, shape (N, D)
        Local descriptors of one image. N may be 0 (the result is zeros).
    gmm : fitted fv.DiagonalGMM, fitted GaussianMixture(covariance_type="diag"), or fv.GMMParameters
        The mixture: K components in D dimensions, positive weights summing to 1 (module docstring).
    improved : bool, default True
        Apply the signed power and L2 normalisation.
    alpha : float in (0, 1], default 0.5
        Exponent of the signed power (used when ``improved``).
    weights_block : bool, default False
        Prepend the K weight entries a_k (VLFeat omits them; scikit-image includes them first).

    Returns
    -------
    fv : shape (2 K D,), or (K + 2 K D,) with ``weights_block``
        A NumPy array for NumPy input, a tensor on the descriptors' device for tensor input; float32
        for float32 input, float64 otherwise (which is also the precision of the computation).
    """
    mixture = _check_gmm(gmm)
    K, D = mixture.means.shape
    x = _check_descriptors(descriptors, D)
    as_torch = isinstance(x, torch.Tensor)
    device = resolve_device(None, x)
    dtype = _natural_dtype(x)
    out = _make_out(None, 1, _feature_dim(K, D, weights_block), dtype, as_torch, device)
    with torch.no_grad():
        _encode_sets(
            _DescriptorSets([len(x)], ragged=[x]), mixture, improved=improved, alpha=_check_alpha(alpha),
            weights_block=weights_block, device=device, dtype=dtype, batch_size=1, out=out,
        )
    return out[0]


def fisher_vectors(
    descriptor_sets,
    gmm,
    *,
    improved=True,
    alpha=0.5,
    weights_block=False,
    counts=None,
    device=None,
    dtype=torch.float32,
    batch_size=None,
    out=None,
):
    """Fisher vectors of many images at once, as batched matrix products in PyTorch (CPU or CUDA).

    Each image gives the same vector as ``fisher_vector`` (to the precision of ``dtype``). Images are
    padded into chunks of similar lengths; per chunk, one product gives all log-joint densities and one
    batched product all moments (module docstring, Numerics), about 8 N K D flops per image.

    Parameters
    ----------
    descriptor_sets : sequence of arrays/tensors of shape (N_i, D), or a padded array (B, N, D)
        The descriptors of B images; N_i may differ and may be 0.
    gmm, improved, alpha, weights_block :
        As in ``fisher_vector``.
    counts : sequence of B ints, optional
        With a padded (B, N, D) array: the number of valid leading rows of each image (default N).
    device : torch device, optional
        Where to compute; default the device of tensor input, else the CPU (``"cpu"``: the CPU).
    dtype : torch.float32 or torch.float64 (or the NumPy equivalents), default float32
        Working and output precision.
    batch_size : int, optional
        Images per batched product; by default as many as fit the device's chunk budget
        (``fv._compute``): in float32 about 2**21 posteriors per chunk on a CPU (cache-sized) and
        2**27 on a GPU.
    out : array or tensor of shape (B, dim), optional
        Written row by row (for instance a ``numpy.memmap``); returned.

    Returns
    -------
    fvs : shape (B, dim), dim = 2 K D (+ K with ``weights_block``)
        A NumPy array for NumPy input and a tensor on ``device`` for tensor input, unless ``out``.
    """
    mixture = _check_gmm(gmm)
    K, D = mixture.means.shape
    sets = _prepare_sets(descriptor_sets, counts, D)
    device = resolve_device(device, sets.any_tensor())
    dtype = _torch_dtype(dtype)
    out = _make_out(out, len(sets.lengths), _feature_dim(K, D, weights_block), dtype, sets.is_torch(), device)
    with torch.no_grad():
        return _encode_sets(
            sets, mixture, improved=improved, alpha=_check_alpha(alpha), weights_block=weights_block,
            device=device, dtype=dtype, batch_size=_check_batch_size(batch_size), out=out,
        )


# --------------------------------------------------------------------------------------------------
# Public API: spatial pyramids
# --------------------------------------------------------------------------------------------------


def spatial_pyramid_cells(frames, image_shape, grid=DEFAULT_GRID):
    """Cell of each descriptor in each grid of a spatial pyramid.

    Parameters
    ----------
    frames : array, shape (N, 2) or (N, F >= 2)
        Descriptor centres; column 0 is x (column), column 1 is y (row), 0-based pixel coordinates.
    image_shape : (H, W) or (H, W, C)
    grid : sequence of (rows, cols)

    Returns
    -------
    cells : int64 array (N, len(grid))
        ``cells[i, g]`` = row * cols + col of descriptor i in grid g, with row = floor(y rows / H) and
        col = floor(x cols / W), clipped to the grid. Same kind as ``frames`` (array or tensor).
    """
    grid = _check_grid(grid)
    height, width = _check_image_shape(image_shape)
    as_torch = isinstance(frames, torch.Tensor)
    f = frames if as_torch else torch.as_tensor(np.asarray(frames, dtype=np.float64))
    if f.ndim != 2 or f.shape[1] < 2:
        raise ValueError(f"frames must have shape (n_descriptors, 2) holding (x, y); got shape {tuple(f.shape)}")
    cells = _pyramid_cells(f, height, width, grid)
    return cells if as_torch else cells.numpy()


def _check_frames(frames, n: int, name: str):
    if not isinstance(frames, torch.Tensor):
        frames = np.asarray(frames, dtype=np.float64)
        if frames.size == 0 and n == 0:
            frames = frames.reshape(0, 2)
    if frames.ndim != 2 or frames.shape[0] != n or frames.shape[1] < 2:
        raise ValueError(
            f"{name} must have shape ({n}, 2) holding (x, y) for its {n} descriptors;"
            f" got shape {tuple(frames.shape)}"
        )
    return frames


def _check_padded_frames(frames, shape: tuple[int, int]) -> torch.Tensor:
    """Padded frames (B, N, F >= 2) for padded descriptors (B, N, D), as a tensor."""
    if not isinstance(frames, torch.Tensor):
        try:
            frames = torch.as_tensor(np.asarray(frames, dtype=np.float64))
        except ValueError:  # ragged
            frames = None
    if frames is None or frames.ndim != 3 or tuple(frames.shape[:2]) != shape or frames.shape[2] < 2:
        got = "a ragged sequence" if frames is None else f"shape {tuple(frames.shape)}"
        raise ValueError(
            f"frame_sets must be a padded array of shape ({shape[0]}, {shape[1]}, 2) holding (x, y) to go with"
            f" padded descriptor_sets; got {got}"
        )
    return frames


def spatial_pyramid_fisher_vector(
    descriptors,
    frames,
    image_shape,
    gmm,
    *,
    grid=DEFAULT_GRID,
    improved=True,
    alpha=0.5,
    weights_block=False,
):
    """Spatial-pyramid Fisher vector of one image (module docstring, Spatial pyramid).

    Parameters
    ----------
    descriptors : array or tensor, shape (N, D)
    frames : array, shape (N, 2) or (N, F >= 2)
        Descriptor centres (x = column, y = row, 0-based pixels).
    image_shape : (H, W) or (H, W, C)
    gmm :
        As in ``fisher_vector``.
    grid : sequence of (rows, cols), default 1x1 + 2x2 + 3x1
    improved, alpha, weights_block :
        As in ``fisher_vector``; ``improved`` normalises each region, then the whole vector.

    Returns
    -------
    fv : shape (R * dim,), R = sum of rows * cols over the grid, dim = 2 K D (+ K)
        Regions in grid order, cells row-major; same kind and dtype rules as ``fisher_vector``.
    """
    mixture = _check_gmm(gmm)
    K, D = mixture.means.shape
    grid = _check_grid(grid)
    x = _check_descriptors(descriptors, D)
    frames = _check_frames(frames, len(x), "frames")
    as_torch = isinstance(x, torch.Tensor)
    device = resolve_device(None, x)
    dtype = _natural_dtype(x)
    n_regions = sum(r * c for r, c in grid)
    out = _make_out(None, 1, n_regions * _feature_dim(K, D, weights_block), dtype, as_torch, device)
    with torch.no_grad():
        _encode_sets(
            _DescriptorSets([len(x)], ragged=[x]), mixture, improved=improved, alpha=_check_alpha(alpha),
            weights_block=weights_block, device=device, dtype=dtype, batch_size=1, out=out,
            frames=[frames], shapes=[_check_image_shape(image_shape)], grid=grid,
        )
    return out[0]


def spatial_pyramid_fisher_vectors(
    descriptor_sets,
    frame_sets,
    image_shapes,
    gmm,
    *,
    grid=DEFAULT_GRID,
    improved=True,
    alpha=0.5,
    weights_block=False,
    counts=None,
    device=None,
    dtype=torch.float32,
    batch_size=None,
    out=None,
):
    """Batched ``spatial_pyramid_fisher_vector``: posteriors once per descriptor, moments per cell.

    Parameters
    ----------
    descriptor_sets : sequence of B arrays/tensors (N_i, D), or a padded array (B, N, D)
    frame_sets : sequence of B arrays (N_i, 2) or (N_i, F >= 2); with padded descriptors, a padded
        array (B, N, F >= 2) (rows past each image's count are ignored)
    image_shapes : one (H, W) for all images, or a sequence of B shapes
    gmm, grid, improved, alpha, weights_block :
        As in ``spatial_pyramid_fisher_vector``.
    counts, device, dtype, batch_size, out :
        As in ``fisher_vectors``. Padded input (for instance a batch of images described at once on a
        GPU) is encoded without a step per image.

    Returns
    -------
    fvs : shape (B, R * dim)
    """
    mixture = _check_gmm(gmm)
    K, D = mixture.means.shape
    grid = _check_grid(grid)
    sets = _prepare_sets(descriptor_sets, counts, D)
    B = len(sets.lengths)
    if sets.padded is not None:
        frames = _check_padded_frames(frame_sets, tuple(sets.padded.shape[:2]))
    elif len(frame_sets) != B:
        raise ValueError(f"frame_sets must hold one (N_i, 2) array per image ({B}); got {len(frame_sets)}")
    else:
        frames = [_check_frames(f, n, f"frame_sets[{i}]") for i, (f, n) in enumerate(zip(frame_sets, sets.lengths))]
    if len(image_shapes) in (2, 3) and all(np.isscalar(s) or getattr(s, "ndim", 1) == 0 for s in image_shapes):
        shapes = [_check_image_shape(image_shapes)] * B
    else:
        if len(image_shapes) != B:
            raise ValueError(f"image_shapes must be one (H, W) or {B} shapes; got {len(image_shapes)}")
        shapes = [_check_image_shape(s) for s in image_shapes]
    device = resolve_device(device, sets.any_tensor())
    dtype = _torch_dtype(dtype)
    n_regions = sum(r * c for r, c in grid)
    out = _make_out(out, B, n_regions * _feature_dim(K, D, weights_block), dtype, sets.is_torch(), device)
    with torch.no_grad():
        return _encode_sets(
            sets, mixture, improved=improved, alpha=_check_alpha(alpha), weights_block=weights_block,
            device=device, dtype=dtype, batch_size=_check_batch_size(batch_size), out=out,
            frames=frames, shapes=shapes, grid=grid,
        )


# --------------------------------------------------------------------------------------------------
# Public API: Fisher score, information and kernel
# --------------------------------------------------------------------------------------------------


def _information(mixture: GMMParameters, n: float) -> np.ndarray:
    """The diagonal information of N = ``n`` descriptors (float64, (K + 2 K D,)) of validated parameters."""
    w = mixture.weights[:, None]
    variances = mixture.covariances
    return n * np.concatenate([mixture.weights, (w / variances).ravel(), (2.0 * w / variances).ravel()])


def _score(x, mixture: GMMParameters, device) -> torch.Tensor:
    """Fisher score (K + 2 K D,) in float64 on ``device``, as U_X = N_X F_1^{1/2} FV(X) (module docstring)."""
    coefficients = _fisher_coefficients(mixture, device, torch.float64)
    K, D = mixture.means.shape
    Z = torch.empty(1, len(x), 2 * D + 1, dtype=torch.float64, device=device)
    _DescriptorSets([len(x)], ragged=[x]).write([0], Z[..., :D])
    counts = torch.tensor([len(x)], device=device)
    count, sums = _chunk_sums(Z, counts, coefficients, [(None, 1)], _Workspace(device, torch.float64))[0]
    whitened_sum = torch.empty(1, 1, _feature_dim(K, D, True), dtype=torch.float64, device=device)
    _fisher_blocks(count, sums, coefficients, weights_block=True, per_descriptor=False, out=whitened_sum)
    information = torch.as_tensor(_information(mixture, 1.0), device=device)
    return whitened_sum[0, 0] * torch.sqrt(information)


def fisher_score(X, gmm):
    """Fisher score U_X = grad_theta log P(X | theta) = sum_i grad_theta log p(x_i | theta).

    Unnormalised (no 1/N), with respect to the softmax weight parameters alpha_k
    (w_k = exp(alpha_k) / sum_j exp(alpha_j)), the means and the standard deviations sigma_kd, in
    the flat layout [alpha (K), mu_1..mu_K (K D), sigma_1..sigma_K (K D)] (module docstring).

    Parameters
    ----------
    X : array or tensor, shape (N, D)
    gmm :
        As in ``fisher_vector``.

    Returns
    -------
    score : float64, shape (K + 2 K D,); a tensor on X's device for tensor input, else a NumPy array.
    """
    mixture = _check_gmm(gmm)
    x = _check_descriptors(X, mixture.means.shape[1], name="X")
    with torch.no_grad():
        score = _score(x, mixture, resolve_device(None, x))
    return score if isinstance(x, torch.Tensor) else score.numpy()


def fisher_information(gmm, n_descriptors=1):
    """Closed-form diagonal approximation of the Fisher information, in ``fisher_score``'s layout.

    F_alpha_k = N w_k, F_mu_kd = N w_k / sigma_kd^2, F_sigma_kd = 2 N w_k / sigma_kd^2 with
    N = ``n_descriptors`` (Perronnin & Dance 2007; Sanchez et al. 2013). It assumes sharp posteriors.
    For the softmax weights the exact information is the singular N (diag(w) - w w^T); F_alpha is not
    its diagonal N w (1 - w) but N w, whose inverse diag(1 / (N w)) is a generalised inverse of it and
    so gives the exact Fisher kernel on the scores, which sum to zero over k (module docstring).

    Parameters
    ----------
    gmm :
        As in ``fisher_vector``.
    n_descriptors : float, default 1
        N; 1 gives the per-descriptor information F_1 used by ``fisher_kernel``.

    Returns
    -------
    information : float64, shape (K + 2 K D,); a tensor if ``gmm`` is a ``GMMParameters`` of tensors (on
        the device of its means), else a NumPy array.
    """
    mixture = _check_gmm(gmm)
    n = float(n_descriptors)
    if not n > 0:
        raise ValueError(f"n_descriptors must be positive; got {n_descriptors}")
    information = _information(mixture, n)
    means = gmm.means if isinstance(gmm, GMMParameters) else None
    if isinstance(means, torch.Tensor):
        return torch.as_tensor(information, device=means.device)
    return information


def fisher_kernel(X, Y, gmm) -> float:
    """Fisher kernel K(X, Y) = U_X^T F_1^{-1} U_Y with the per-descriptor diagonal information F_1.

    Equals N_X N_Y <FV(X), FV(Y)> for the unnormalised Fisher vectors with the weight block,
    ``fisher_vector(., gmm, improved=False, weights_block=True)`` (module docstring).

    Parameters
    ----------
    X : array or tensor, shape (N_X, D)
    Y : array or tensor, shape (N_Y, D)
    gmm :
        As in ``fisher_vector``.

    Returns
    -------
    kernel : float
    """
    mixture = _check_gmm(gmm)
    information = _information(mixture, 1.0)
    u_x = _to_float64_numpy(fisher_score(X, mixture), "score")
    u_y = _to_float64_numpy(fisher_score(Y, mixture), "score")
    return float(np.dot(u_x / information, u_y))
