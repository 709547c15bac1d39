r"""Linear SVM (L2-regularised squared hinge, one-vs-rest) trained in torch on float32 data.

`LinearSVM` solves the same problem as ``sklearn.svm.LinearSVC(penalty="l2",
loss="squared_hinge", multi_class="ovr")`` and gives the same solution, but it reads X in row
chunks as float32 (numpy array, ``np.memmap`` on disk or torch tensor, on the CPU or CUDA) and
never copies it. LinearSVC hands liblinear a float64 copy of X: a 60,000 x 40,000 Fisher-vector
matrix is 9.6 GB in float32 and would need another 19.2 GB.

Objective (Fan et al. 2008, LIBLINEAR, eq. 3 with the L2 loss)
---------------------------------------------------------------
With classes c_1 < ... < c_K, targets y_ik = +1 if y_i = c_k else -1 (one-vs-rest) and sample
weights s_i (default 1), class k gets the weights w_k in R^d and the intercept b_k that minimise

    f_k(w_k, b_k) = 1/2 (||w_k||^2 + (b_k / S)^2) + C sum_i s_i max(0, 1 - y_ik (w_k . x_i + b_k))^2.

Two classes give one problem (K = 1) whose positive class is ``classes_[1]``, as in LinearSVC.

Intercept, as liblinear: each x_i is augmented with a constant feature S = ``intercept_scaling``
and the bias is an ordinary, *regularised* weight w_b of that feature; ``intercept_ = S * w_b``,
hence the penalty (b_k / S)^2 above. A large S weakens the penalty on the intercept (at the cost of
conditioning). ``fit_intercept=False`` fixes b_k = 0.

All K problems are solved together: the weights form one (K, d) matrix W, the targets a (n, K)
matrix of +-1, and every pass over X is one matrix product (``X P^T`` or ``R^T X``) serving all
classes at once. The problems stay independent: each class has its own search direction, step
size, curvature history and stopping test.

Optimiser: L-BFGS with exact line search
----------------------------------------
The squared hinge is differentiable, convex and piecewise quadratic, so a quasi-Newton method on
the full gradient converges fast and needs only matrix products with X (Keerthi & DeCoste 2005
and Chapelle 2007 use Newton's method on the same objective; liblinear's ``dual=False`` solver is
a trust-region Newton method). With margins o_ik = w_k . x_i + b_k and
slack_ik = max(0, 1 - y_ik o_ik), the gradient with respect to v_k = [w_k, b_k / S] is::

    g_k = v_k - 2 C sum_i s_i y_ik slack_ik [x_i, S]

One iteration, per class k:

1. direction p_k = -H_k g_k by the L-BFGS two-loop recursion over the last 20 pairs of steps and
   gradient changes of that class (Liu & Nocedal 1989; Nocedal & Wright 2006, algorithm 7.4);
2. one pass over X: D = X P^T + S p_v (n, K), the change of the margins along p (P (K, d) and
   p_v (K,) are the weight and bias parts of the K directions);
3. exact line search, without reading X: phi_k(t) = f_k(v_k + t p_k) is a convex piecewise
   quadratic in t, computable for any t from the stored margins O and D (the exact line search
   of Keerthi & DeCoste 2005, who sort the breakpoints; here safeguarded one-dimensional Newton
   steps find the minimiser, usually in 2-5 steps). Then v_k += t_k p_k and O += t_k D;
4. one pass over X: the gradient ``R^T X`` from the updated margins (every 10th iteration the
   margins are recomputed from X in the same pass, so that round-off cannot accumulate).

So an iteration reads X twice (``n_passes_ = 1 + 2 n_iter_``), one matrix product each time.
Truncated Newton with conjugate gradients, the other natural choice, needs two products per CG
step; on synthetic Gaussian problems (500-6,000 samples, 10 classes, C = 0.01-100, raw and
L2-normalised rows) it needed about 2-4 times as many products to reach the same objective,
and a diagonal (Jacobi) preconditioner made it slower on L2-normalised rows.

Stopping rule (``tol``): with the dual point alpha_i = 2 C s_i slack_ik that the weights define,
the duality gap of the squared-hinge SVM equals exactly ||g_k||^2 / 2, and since the objective is
1-strongly convex, f_k - f_k* <= ||g_k||^2 / 2 and ||v_k - v_k*|| <= ||g_k||. A class stops when

    ||g_k||^2 / 2 <= tol * f_k,

a certificate that its objective is within a relative ``tol`` of the optimum. (liblinear stops
on ||g|| relative to the gradient at zero instead, which for large C can leave the objective far
from its minimum; compare solutions with the objective, not with ``n_iter_``.) A class whose
line search can no longer decrease its objective (relative decrease below 1e-12, because the
products are float32) restarts from the steepest descent; if that fails too, it has reached the
precision of the products and counts as converged.

Numerics
--------
The products with X run in ``dtype`` (float32 by default); the weights, margins, gradients,
L-BFGS history and all sums over samples are float64. ``dtype="float64"`` converts each chunk,
never X as a whole. On the tests' problems float32 products reach relative objective errors
below 1e-8.

Data, chunks and devices
------------------------
X may be a numpy array, an ``np.memmap`` (read-only is fine), or a torch tensor on any device.
It is read ``batch_size`` rows at a time, each chunk converted to ``dtype`` on ``device`` (no
copy at all when the chunk already has that dtype and lives there); ``batch_size=None`` takes
the chunk budget of ``fv._compute`` (about 16 MiB of X per chunk on the CPU, 1 GiB on a GPU).
Input checks never copy X either: its finiteness is checked chunk by chunk. Besides X the
working memory is a few (n, K) float64 arrays (margins, their change, line-search temporaries)
and the L-BFGS history of 2 x 20 (K, d) float64 arrays (128 MB for K = 10, d = 40,000).
``device`` is resolved by ``fv._compute.resolve_device``: None is the device of X when X is a
tensor, else the CPU; "cpu" is the CPU. With ``device="cuda"`` and numpy X every pass copies X
to the GPU chunk by chunk, so pass a CUDA tensor when X fits in GPU memory. ``random_state`` is
accepted for compatibility with LinearSVC: the solver makes no random choices and is
deterministic on the CPU. Scores (``decision_function``) are products in float64 chunk by chunk,
so that a row's score does not depend on the other rows it is scored with (float32 products
differ in their last bit between a matrix and a single row).

Choosing C: `ValidatedLinearSVM`
--------------------------------
`ValidatedLinearSVM` trains one SVM per C of ``Cs`` on a fit part, in increasing order of C,
scores each by its accuracy on a validation part, keeps the C of the best accuracy (the
smallest C on ties) and, with ``refit``, trains that C again on all rows. The validation part
is given (``fit(X, y, validation=(X_val, y_val))``) or carved from X (a stratified
``validation_fraction`` of the rows). The solver is scikit-learn's ``LinearSVC`` (liblinear)
when a float64 copy of X fits in ``liblinear_max_bytes``, else `LinearSVM`, warm-started along
the sweep: the solution moves continuously with C, so each C starts from the previous C's
solution, and the refit from the chosen C's.

References
----------
* R.-E. Fan, K.-W. Chang, C.-J. Hsieh, X.-R. Wang, C.-J. Lin. LIBLINEAR: a library for large
  linear classification. JMLR 9, 2008.
* S. S. Keerthi, D. DeCoste. A modified finite Newton method for fast solution of large scale
  linear SVMs. JMLR 6, 2005.
* O. Chapelle. Training a support vector machine in the primal. Neural Computation 19(5), 2007.
* D. C. Liu, J. Nocedal. On the limited memory BFGS method for large scale optimization.
  Mathematical Programming 45, 1989.
* J. Nocedal, S. J. Wright. Numerical Optimization, 2nd ed. Springer, 2006.
* C.-J. Lin, R. C. Weng, S. S. Keerthi. Trust region Newton method for large-scale logistic
  regression. JMLR 9, 2008 (liblinear's primal solver).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Iterator
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.svm import LinearSVC
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._compute import chunk_rows, resolve_device
from ._validation import validate_tensor

__all__ = ["LinearSVM", "ValidatedLinearSVM", "squared_hinge_objective"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_SOLVERS = ("auto", "liblinear", "torch")
_HISTORY = 20  # L-BFGS pairs kept per class
_REFRESH = 10  # recompute the margins from X (instead of updating them) every this many iterations
_LINE_SEARCH_STEPS = 60  # one-dimensional Newton/bisection steps of the exact line search, at most
_STALL = 1e-12  # a line search that decreases f_k by less than this, relatively, has stalled


# ----------------------------------------------------------------------------------------
# Reference objective (numpy, float64, chunked)
# ----------------------------------------------------------------------------------------


def squared_hinge_objective(
    X,
    y,
    coef,
    intercept,
    *,
    C: float,
    intercept_scaling: float = 1.0,
    classes=None,
    sample_weight=None,
    chunk_size: int = 4096,
) -> np.ndarray:
    """One-vs-rest objective f_k of every class, as LinearSVC and `LinearSVM` minimise it.

    f_k = 1/2 (||coef_k||^2 + (intercept_k / S)^2) + C sum_i s_i max(0, 1 - y_ik (coef_k . x_i +
    intercept_k))^2 with S = ``intercept_scaling`` (pass ``intercept=0`` for a model fitted without
    intercept; its term then vanishes). Works for any fitted linear model, for example to compare
    LinearSVC's solution with `LinearSVM`'s.

    Parameters
    ----------
    X : array of shape (n, d)
        Read in chunks of ``chunk_size`` rows, each converted to float64.
    y : array of shape (n,)
        Class labels.
    coef : array of shape (K, d)
        K = 1 for two classes (positive class ``classes[1]``), else K = number of classes.
    intercept : array of shape (K,) or scalar
    classes : array of shape (K,) or (2,), default=None
        Sorted class labels; None takes ``np.unique(y)``.
    sample_weight : array of shape (n,), default=None

    Returns
    -------
    ndarray of shape (K,)
    """
    coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    intercept = np.broadcast_to(np.asarray(intercept, dtype=np.float64), (coef.shape[0],))
    y = np.asarray(y)
    classes = np.unique(y) if classes is None else np.asarray(classes)
    positive = classes[1:2] if coef.shape[0] == 1 else classes
    weight = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    loss = np.zeros(coef.shape[0])
    for start in range(0, len(y), chunk_size):
        x = np.asarray(X[start : start + chunk_size], dtype=np.float64)
        targets = np.where(y[start : start + chunk_size, None] == positive[None, :], 1.0, -1.0)
        slack = np.maximum(0.0, 1.0 - targets * (x @ coef.T + intercept))
        loss += weight[start : start + chunk_size] @ slack**2
    regulariser = (coef**2).sum(1) + (intercept / intercept_scaling) ** 2
    return 0.5 * regulariser + C * loss


# ----------------------------------------------------------------------------------------
# Reading X in row chunks
# ----------------------------------------------------------------------------------------


class _Chunks:
    """Row chunks (rows, x) of X, x of shape (<= rows_per_chunk, d) in ``dtype`` on ``device``.

    Iterating once is one pass over X; ``passes`` counts them. Numpy chunks are wrapped without a
    copy when they already have the compute dtype (read-only memmaps included) and converted
    otherwise, one chunk at a time.
    """

    def __init__(self, X, rows_per_chunk: int, device: torch.device, dtype: torch.dtype):
        self.X = X
        self.rows_per_chunk = rows_per_chunk
        self.device = device
        self.dtype = dtype
        self.np_dtype = np.float32 if dtype == torch.float32 else np.float64
        self.passes = 0

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def __iter__(self) -> Iterator[tuple[slice, torch.Tensor]]:
        self.passes += 1
        for start in range(0, len(self), self.rows_per_chunk):
            rows = slice(start, min(start + self.rows_per_chunk, len(self)))
            yield rows, self._load(rows)

    def _load(self, rows: slice) -> torch.Tensor:
        x = self.X[rows]
        if isinstance(x, torch.Tensor):
            return x.to(device=self.device, dtype=self.dtype)
        if x.dtype != self.np_dtype or any(stride < 0 for stride in x.strides):
            x = np.asarray(x, dtype=self.np_dtype, order="C")
        with warnings.catch_warnings():  # read-only memmaps: torch only reads the chunk
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(x).to(self.device)


def _targets(labels: torch.Tensor, n_problems: int, dtype: torch.dtype) -> torch.Tensor:
    """One-vs-rest targets (n, K) of +-1 from class indices (n,); K = 1: positive class 1."""
    if n_problems == 1:
        return (2 * labels - 1).to(dtype)[:, None]
    targets = torch.full((len(labels), n_problems), -1.0, dtype=dtype, device=labels.device)
    return targets.scatter_(1, labels[:, None], 1.0)


def _dot(a: torch.Tensor, b: torch.Tensor, a_bias: torch.Tensor, b_bias: torch.Tensor) -> torch.Tensor:
    """Per-class inner products (K,) of augmented vectors [a_k, a_bias_k] . [b_k, b_bias_k]."""
    return (a * b).sum(1) + a_bias * b_bias


# ----------------------------------------------------------------------------------------
# The passes over X. Weights W (K, d) and biases v (K,) are float64; the margins are
# o_ik = x_i . W_k + S v_k, so v is the weight of the constant feature S (intercept = S v).
# cost (n,) holds C s_i in the compute dtype; labels (n,) the class indices.
# ----------------------------------------------------------------------------------------


def _forward_pass(chunks: _Chunks, P: torch.Tensor, p_v: torch.Tensor, scale: float, out: torch.Tensor) -> None:
    """One pass: out (n, K) <- X P^T + S p_v, for P (K, d) and p_v (K,)."""
    P_c, bias_c = P.to(chunks.dtype), (scale * p_v).to(chunks.dtype)
    for rows, x in chunks:
        out[rows] = torch.addmm(bias_c, x, P_c.T)


class _Gradient(NamedTuple):
    objective: torch.Tensor  # (K,) float64
    W: torch.Tensor  # (K, d) float64, gradient with respect to W
    v: torch.Tensor  # (K,) float64, gradient with respect to v

    def squared_norm(self) -> torch.Tensor:
        return _dot(self.W, self.W, self.v, self.v)


def _gradient_pass(chunks: _Chunks, labels, cost, W, v, scale: float, margins, *, refresh: bool) -> _Gradient:
    """One pass: objective f (K,) and gradient at (W, v) from the margins (n, K).

    With ``refresh`` the margins are recomputed from X in the same pass (and written back);
    otherwise the stored ones are used. With slack_ik = max(0, 1 - y_ik o_ik):

        f_k = 1/2 (||W_k||^2 + v_k^2) + sum_i cost_i slack_ik^2
        grad_W f_k = W_k + sum_i r_ik x_i,  grad_v f_k = v_k + S sum_i r_ik,
        r_ik = d f_k / d o_ik = -2 cost_i y_ik slack_ik.
    """
    K, d = W.shape
    loss = torch.zeros(K, dtype=torch.float64, device=W.device)
    grad_W, grad_v = torch.zeros_like(W), torch.zeros_like(v)
    W_c, bias_c = W.to(chunks.dtype), (scale * v).to(chunks.dtype)
    for rows, x in chunks:
        if refresh:
            margins[rows] = torch.addmm(bias_c, x, W_c.T)
        y = _targets(labels[rows], K, margins.dtype)
        c = cost[rows, None].to(margins.dtype)
        slack = (1.0 - y * margins[rows]).clamp_min_(0.0)  # (n_c, K)
        loss += (c * slack * slack).sum(0)
        r = -2.0 * c * y * slack
        grad_W += torch.mm(r.T.to(chunks.dtype), x)
        grad_v += r.sum(0)
    objective = 0.5 * _dot(W, W, v, v) + loss
    return _Gradient(objective, W + grad_W, v + scale * grad_v)


# ----------------------------------------------------------------------------------------
# Exact line search and the L-BFGS direction
# ----------------------------------------------------------------------------------------


def _exact_line_search(labels, cost, margins, change, slope0: torch.Tensor, curvature0: torch.Tensor):
    """Step sizes t (K,) minimising phi_k(t) = f_k(v_k + t p_k), and the decreases phi(0) - phi(t).

    phi_k(t) = 1/2 ||v + t p||^2 + sum_i cost_i max(0, 1 - m_ik - t e_ik)^2 with m = y o, e = y D
    (D = X p^T, the change of the margins) is convex and piecewise quadratic:

        phi'(t)  = v.p + t p.p - 2 sum_i cost_i e_ik max(0, 1 - m_ik - t e_ik)
        phi''(t) = p.p + 2 sum_i cost_i e_ik^2 [1 - m_ik - t e_ik > 0]

    ``slope0`` = v.p and ``curvature0`` = p.p (K,) are the regulariser's parts. Newton steps on
    phi' from t = 1, kept inside a bracket [lo, hi] of the root (phi'(lo) < 0 <= phi'(hi)) and
    replaced by the secant step between the bracket's ends (or by doubling t while no upper end
    is known) when they leave it. A Newton step that stays on one piece of phi' lands exactly on
    its root, so a few steps usually suffice. Works on (n, K) arrays only; steps are t >= 0 and a
    class whose direction is not a descent direction gets t = 0.
    """
    K = change.shape[1]
    y = _targets(labels, K, torch.float64)
    slack0 = 1.0 - y * margins  # (n, K); slack at t is slack0 - t e
    e = y * change.to(torch.float64)
    ce = 2.0 * cost[:, None].to(torch.float64) * e  # 2 c e
    cee = ce * e  # 2 c e^2

    def derivatives(t):
        slack = slack0 - t * e
        on = slack > 0
        first = slope0 + t * curvature0 - (ce * slack.clamp_min_(0.0)).sum(0)
        second = curvature0 + (cee * on).sum(0)
        return first, second

    def loss(t):
        slack = (slack0 - t * e).clamp_min_(0.0)
        return (cost[:, None] * slack * slack).sum(0, dtype=torch.float64)

    zero = torch.zeros(K, dtype=torch.float64, device=change.device)
    first0, _ = derivatives(zero)
    lo, hi = zero.clone(), torch.full_like(zero, math.inf)  # bracket, and phi' at its ends
    first_lo, first_hi = first0.clone(), torch.full_like(zero, math.inf)
    t = torch.ones_like(zero)
    for _ in range(_LINE_SEARCH_STEPS):
        first, second = derivatives(t)
        done = first.abs() <= 1e-12 * first0.abs()
        below = first < 0
        lo, first_lo = torch.where(below, t, lo), torch.where(below, first, first_lo)
        hi, first_hi = torch.where(below, hi, t), torch.where(below, first_hi, first)
        newton = t - first / second
        secant = lo - first_lo * (hi - lo) / (first_hi - first_lo)
        fallback = torch.where(torch.isinf(hi), 2.0 * t, secant)
        t = torch.where(done, t, torch.where((newton > lo) & (newton < hi), newton, fallback))
        if bool((done | (torch.isfinite(hi) & (hi - lo <= 1e-12 * hi))).all()):
            break
    t = torch.where(first0 < 0, t, zero)  # not a descent direction (round-off): no step
    decrease = loss(zero) - loss(t) - t * slope0 - 0.5 * t * t * curvature0
    return t, decrease


class _LBFGSMemory:
    """The last ``size`` pairs (s, y) of every class: steps and gradient changes, float64.

    Stored as (size, K, d) and (size, K) (bias) tensors; a pair with rho = 1 / (s.y) = 0 is
    empty, so each class keeps and resets its own history.
    """

    def __init__(self, size: int, K: int, d: int, device: torch.device):
        f64 = dict(dtype=torch.float64, device=device)
        self.S, self.Y = torch.zeros(size, K, d, **f64), torch.zeros(size, K, d, **f64)
        self.S_v, self.Y_v = torch.zeros(size, K, **f64), torch.zeros(size, K, **f64)
        self.rho = torch.zeros(size, K, **f64)
        self.gamma = torch.ones(K, **f64)  # initial inverse Hessian gamma I
        self.order: list[int] = []  # slots, oldest first

    def direction(self, g_W: torch.Tensor, g_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-H g by the two-loop recursion (Nocedal & Wright 2006, algorithm 7.4), per class."""
        q, q_v = g_W.clone(), g_v.clone()
        alphas = []
        for j in reversed(self.order):
            a = self.rho[j] * _dot(self.S[j], q, self.S_v[j], q_v)
            q -= a[:, None] * self.Y[j]
            q_v -= a * self.Y_v[j]
            alphas.append(a)
        q *= self.gamma[:, None]
        q_v *= self.gamma
        for j, a in zip(self.order, reversed(alphas)):
            b = self.rho[j] * _dot(self.Y[j], q, self.Y_v[j], q_v)
            q += (a - b)[:, None] * self.S[j]
            q_v += (a - b) * self.S_v[j]
        return -q, -q_v

    def push(self, s, s_v, y, y_v) -> None:
        """Store a pair for every class whose curvature s.y is positive (others keep theirs)."""
        if len(self.order) < self.S.shape[0]:
            j = len(self.order)
        else:
            j = self.order.pop(0)
        self.order.append(j)
        sy, yy = _dot(s, y, s_v, y_v), _dot(y, y, y_v, y_v)
        good = sy > 1e-10 * torch.sqrt(_dot(s, s, s_v, s_v) * yy)
        self.S[j], self.S_v[j], self.Y[j], self.Y_v[j] = s, s_v, y, y_v
        self.rho[j] = torch.where(good, 1.0 / sy, 0.0)
        self.gamma = torch.where(good, sy / yy, self.gamma)

    def reset(self, classes: torch.Tensor) -> None:
        """Forget the history of the classes in the boolean mask (K,): next step is -g."""
        self.rho[:, classes] = 0.0
        self.gamma = torch.where(classes, 1.0, self.gamma)


# ----------------------------------------------------------------------------------------
# The solver
# ----------------------------------------------------------------------------------------


class _Solution(NamedTuple):
    W: torch.Tensor  # (K, d) float64
    v: torch.Tensor  # (K,) float64; intercept = scale * v
    objective: torch.Tensor  # (K,) float64, at the returned weights
    converged: bool
    n_iter: int
    n_passes: int


def _train(chunks: _Chunks, labels, cost, n_problems: int, *, scale, tol, max_iter, verbose,
           init=None) -> _Solution:
    """L-BFGS with exact line search on the K one-vs-rest objectives, from ``init`` = (W, v) or zero."""
    n, d = len(chunks), chunks.X.shape[1]
    device = chunks.device
    W = torch.zeros(n_problems, d, dtype=torch.float64, device=device)
    v = torch.zeros(n_problems, dtype=torch.float64, device=device)
    if init is not None:
        W.copy_(torch.as_tensor(init[0]))
        v.copy_(torch.as_tensor(init[1]))
    margins = torch.zeros(n, n_problems, dtype=torch.float64, device=device)
    change = torch.empty(n, n_problems, dtype=chunks.dtype, device=device)
    memory = _LBFGSMemory(_HISTORY, n_problems, d, device)
    converged = torch.zeros(n_problems, dtype=torch.bool, device=device)
    grad = _gradient_pass(chunks, labels, cost, W, v, scale, margins, refresh=init is not None)
    start, n_iter = time.perf_counter(), 0
    while True:
        converged |= 0.5 * grad.squared_norm() <= tol * grad.objective
        if verbose:
            gap = (0.5 * grad.squared_norm() / grad.objective).max().item()
            print(
                f"[LinearSVM] iter {n_iter:4d}  objective {grad.objective.sum().item():.10g}  "
                f"max rel. gap {gap:.2e}  classes left {int((~converged).sum())}  "
                f"passes {chunks.passes}  {time.perf_counter() - start:.1f} s"
            )
        if bool(converged.all()) or n_iter >= max_iter:
            break
        keep = ~converged
        p, p_v = memory.direction(grad.W * keep[:, None], grad.v * keep)
        _forward_pass(chunks, p, p_v, scale, change)
        t, decrease = _exact_line_search(labels, cost, margins, change, _dot(W, p, v, p_v), _dot(p, p, p_v, p_v))
        stalled = keep & (decrease <= _STALL * grad.objective)
        converged |= stalled & (memory.rho == 0).all(0)  # steepest descent cannot improve it
        memory.reset(stalled)  # the others retry from steepest descent
        W += t[:, None] * p
        v += t * p_v
        margins += t * change.to(torch.float64)
        n_iter += 1
        previous = grad
        grad = _gradient_pass(chunks, labels, cost, W, v, scale, margins, refresh=n_iter % _REFRESH == 0)
        moved = keep & ~stalled
        memory.push(
            t[:, None] * p * moved[:, None],
            t * p_v * moved,
            (grad.W - previous.W) * moved[:, None],
            (grad.v - previous.v) * moved,
        )
    return _Solution(W, v, grad.objective, bool(converged.all()), n_iter, chunks.passes)


# ----------------------------------------------------------------------------------------
# Input checks, shared by the two estimators
# ----------------------------------------------------------------------------------------


def _check_number(name: str, value, *, positive: bool) -> None:
    """``value`` must be a finite real number (not a bool), > 0 with ``positive``, else >= 0."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        kind = "a positive" if positive else "a non-negative"
        raise ValueError(f"{name} must be {kind} finite number, got {value!r}.")


def _check_integer(name: str, value, minimum: int) -> None:
    """``value`` must be an integer (not a bool) >= ``minimum``."""
    if not isinstance(value, Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def _check_finite_rows(X: np.ndarray) -> None:
    """Refuse NaN and infinity in the 2-D numpy array X, read a chunk of rows at a time.

    Each chunk (the CPU chunk budget of ``fv._compute``) is summed first, which needs no
    temporary array, and a finite sum proves the chunk finite; only a chunk whose sum is not
    finite is checked value by value. So a float32 ``np.memmap`` is read once and never copied.
    The error gives the number of bad values and the first row holding one.
    """
    rows_per_chunk = chunk_rows(X.shape[1] * X.itemsize, torch.device("cpu"))
    n_bad, first_bad_row = 0, None
    for start in range(0, X.shape[0], rows_per_chunk):
        chunk = X[start : start + rows_per_chunk]
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(chunk.sum()):
                continue
        bad = ~np.isfinite(chunk)
        n_bad += int(bad.sum())
        if first_bad_row is None and n_bad:
            first_bad_row = start + int(np.flatnonzero(bad.any(axis=1))[0])
    if n_bad:
        raise ValueError(
            f"Input X contains {n_bad} NaN or infinite value(s), the first in row {first_bad_row}; "
            "remove or impute those values."
        )


def _validate_features(estimator, X, *, reset: bool):
    """(X, is_tensor): X as a finite 2-D numpy float array or a finite 2-D torch tensor.

    Numpy float32 and float64 arrays (``np.memmap`` included) are kept as they are, never copied;
    other array-likes (lists, integers) become float64 arrays. With ``reset`` the estimator's
    ``n_features_in_`` is set, otherwise X must have that many columns.
    """
    if isinstance(X, torch.Tensor):
        return validate_tensor(estimator, X, reset=reset), True
    X = validate_data(estimator, X, reset=reset, dtype=[np.float32, np.float64], ensure_all_finite=False)
    _check_finite_rows(X)
    return X, False


def _validate_features_and_labels(estimator, X, y, *, reset: bool):
    """(X, y): X as `_validate_features` returns it, y a 1-D numpy array of one label per row."""
    if y is None:
        raise ValueError(
            f"{type(estimator).__name__} requires y to be passed, but the target y is None; pass the "
            "class labels of the rows of X."
        )
    if isinstance(y, torch.Tensor):
        y = y.cpu().numpy()
    if not isinstance(X, torch.Tensor):
        X, y = validate_data(estimator, X, y, reset=reset, dtype=[np.float32, np.float64], ensure_all_finite=False)
        _check_finite_rows(X)
        return X, y
    X = validate_tensor(estimator, X, reset=reset)
    y = column_or_1d(y, warn=True)
    if len(y) != X.shape[0]:
        raise ValueError(
            f"X has {X.shape[0]} rows but y has {len(y)} labels; pass one label per row of X."
        )
    return X, y


def _check_classes(estimator, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(classes, labels): the sorted classes of y (at least two) and each row's class index."""
    check_classification_targets(y)
    classes, labels = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"y contains 1 class ({classes[0]!r}); {type(estimator).__name__} needs samples of at "
            "least 2 classes. Check the labels (or the train split) passed to fit."
        )
    return classes, labels


def _check_sample_weight(sample_weight, n_samples: int) -> np.ndarray:
    """Sample weights (n,) float64: ones when None; finite, non-negative, one per row."""
    if sample_weight is None:
        return np.ones(n_samples)
    if isinstance(sample_weight, torch.Tensor):
        sample_weight = sample_weight.cpu().numpy()
    weight = np.asarray(sample_weight, dtype=np.float64)
    if weight.ndim == 0:
        return np.full(n_samples, float(weight))
    if weight.shape != (n_samples,):
        raise ValueError(
            f"sample_weight has shape {weight.shape}; expected ({n_samples},), one weight per row of X."
        )
    if not np.all(np.isfinite(weight)) or np.any(weight < 0):
        raise ValueError("sample_weight must be finite and non-negative.")
    if not np.any(weight > 0):
        raise ValueError("sample_weight is zero everywhere; give at least one sample a positive weight.")
    return weight


# ----------------------------------------------------------------------------------------
# The estimators
# ----------------------------------------------------------------------------------------


class LinearSVM(ClassifierMixin, BaseEstimator):
    """Linear SVM, L2 penalty and squared hinge, one-vs-rest; LinearSVC's problem, trained in torch.

    Minimises, for every class k (one-vs-rest; a single problem for two classes),
    1/2 (||w_k||^2 + (b_k / intercept_scaling)^2) + C sum_i s_i max(0, 1 - y_ik (w_k . x_i + b_k))^2
    by L-BFGS with exact line search over row chunks of X in float32, on the CPU or CUDA. The
    solution is LinearSVC's (``loss="squared_hinge"``, same ``C`` and ``intercept_scaling``); see
    the module docstring for the intercept convention, the optimiser, the stopping rule and the
    references.

    Parameters
    ----------
    C : float, default=1.0
        Weight of the loss (inverse regularisation strength), > 0.
    loss : {"squared_hinge"}, default="squared_hinge"
        Only the squared hinge (differentiable, which the quasi-Newton method needs). For the
        hinge loss use LinearSVC.
    fit_intercept : bool, default=True
        Fit b_k; False fixes b_k = 0.
    intercept_scaling : float, default=1.0
        Value S of the constant feature carrying the intercept; the intercept's penalty is
        (b_k / S)^2 / 2, as liblinear's.
    max_iter : int, default=1000
        Maximum number of L-BFGS iterations; each reads X twice.
    tol : float, default=1e-4
        A class stops when its duality gap ||g_k||^2 / 2, an upper bound on f_k - min f_k, is at
        most ``tol * f_k``: its objective is then within a relative ``tol`` of the minimum.
    batch_size : int or None, default=None
        Rows of X per chunk; None takes the chunk budget of ``fv._compute``: about 16 MiB of X per
        chunk on the CPU, 1 GiB on a GPU.
    device : str, torch.device or None, default=None
        Compute device: None is the device of X when X is a torch tensor, else the CPU; "cpu" is
        the CPU.
    dtype : {"float32", "float64"}, default="float32"
        Type of the products with X; sums and the weights are always float64.
    random_state : None, int or RandomState, default=None
        Unused; the solver is deterministic. Accepted for compatibility with LinearSVC.
    warm_start : bool, default=False
        Start ``fit`` from the current ``coef_`` and ``intercept_`` when the estimator is already
        fitted on data with the same classes and features (as scikit-learn's ``warm_start``): a
        sweep over increasing C then starts each fit near its solution. Otherwise from zero.
    verbose : bool or int, default=False
        Print the objective, the largest relative duality gap and the passes at every iteration.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) for two classes, else (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)
        Zeros when ``fit_intercept=False``.
    classes_ : ndarray of shape (n_classes,)
    objective_ : ndarray of shape (1,) or (n_classes,)
        Objective f_k at the solution (margins from the products in ``dtype``, sums in float64).
    n_iter_ : int
        L-BFGS iterations run.
    n_passes_ : int
        Passes over X during ``fit``.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has string column names (a DataFrame).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 20)).astype(np.float32)
    >>> y = np.repeat(["a", "b", "c"], 100)
    >>> X[y == "a", 0] += 2.0
    >>> clf = LinearSVM(C=0.1).fit(X, y)
    >>> clf.coef_.shape, clf.predict(X[:2])
    ((3, 20), array(['a', 'a'], dtype='<U1'))
    """

    def __init__(
        self,
        C=1.0,
        *,
        loss="squared_hinge",
        fit_intercept=True,
        intercept_scaling=1.0,
        max_iter=1000,
        tol=1e-4,
        batch_size=None,
        device=None,
        dtype="float32",
        random_state=None,
        warm_start=False,
        verbose=False,
    ):
        self.C = C
        self.loss = loss
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.max_iter = max_iter
        self.tol = tol
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting

    def fit(self, X, y, sample_weight=None):
        """Fit the K one-vs-rest problems on X (n, d) with labels y (n,); returns self.

        ``sample_weight`` (n,) multiplies each sample's loss (C s_i), as in LinearSVC.
        """
        self._check_params()
        previous = self._warm_start_point()
        X, y = _validate_features_and_labels(self, X, y, reset=True)
        classes, labels = _check_classes(self, y)
        weight = _check_sample_weight(sample_weight, len(y))
        device, dtype = resolve_device(self.device, X), self._compute_dtype()
        chunks = _Chunks(X, self._rows_per_chunk(X.shape[1], device, dtype), device, dtype)
        n_problems = 1 if len(classes) == 2 else len(classes)
        scale = float(self.intercept_scaling) if self.fit_intercept else 0.0
        init = None
        if previous is not None and np.array_equal(previous[0], classes) and previous[1].shape == (n_problems, X.shape[1]):
            init = (previous[1], previous[2] / scale if scale else np.zeros(n_problems))
        with torch.no_grad():
            solution = _train(
                chunks,
                torch.as_tensor(labels, dtype=torch.long, device=device),
                torch.as_tensor(float(self.C) * weight, dtype=dtype, device=device),
                n_problems,
                scale=scale,
                tol=float(self.tol),
                max_iter=int(self.max_iter),
                verbose=self.verbose,
                init=init,
            )
        if not solution.converged:
            warnings.warn(
                f"LinearSVM did not converge in max_iter={self.max_iter} iterations "
                f"(tol={self.tol}); increase max_iter, or scale the features.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.classes_ = classes
        self.coef_ = solution.W.cpu().numpy()
        self.intercept_ = scale * solution.v.cpu().numpy()
        self.objective_ = solution.objective.cpu().numpy()
        self.n_iter_ = solution.n_iter
        self.n_passes_ = solution.n_passes
        return self

    def _warm_start_point(self):
        """(classes_, coef_, intercept_) of the previous fit when ``warm_start`` applies, else None."""
        if not self.warm_start or not hasattr(self, "coef_"):
            return None
        return self.classes_, np.asarray(self.coef_, dtype=np.float64), np.asarray(self.intercept_, dtype=np.float64)

    # ------------------------------------------------------------------ prediction

    def decision_function(self, X):
        """Signed distances (n,) for two classes (> 0: ``classes_[1]``), else (n, n_classes).

        x_i . coef_k + intercept_k, computed in float64 chunk by chunk (module docstring). Numpy
        float64 for numpy input; a tensor in the compute ``dtype`` on the compute device for torch
        input.
        """
        check_is_fitted(self)
        X, is_tensor = _validate_features(self, X, reset=False)
        device = resolve_device(self.device, X)
        chunks = _Chunks(X, self._rows_per_chunk(X.shape[1], device, torch.float64), device, torch.float64)
        coef = torch.as_tensor(self.coef_, dtype=torch.float64, device=device)
        intercept = torch.as_tensor(self.intercept_, dtype=torch.float64, device=device)
        scores = torch.empty(len(chunks), len(coef), dtype=torch.float64, device=device)
        with torch.no_grad():
            for rows, x in chunks:
                scores[rows] = torch.addmm(intercept, x, coef.T)
        scores = scores[:, 0] if len(coef) == 1 else scores
        return scores.to(self._compute_dtype()) if is_tensor else scores.cpu().numpy()

    def predict(self, X):
        """Class labels (n,) from ``classes_``: the largest score, or its sign for two classes."""
        scores = torch.as_tensor(self.decision_function(X))
        index = (scores > 0).long() if scores.ndim == 1 else scores.argmax(1)
        return self.classes_[index.cpu().numpy()]

    # ------------------------------------------------------------------ checks

    def _check_params(self) -> None:
        _check_number("C", self.C, positive=True)
        _check_number("intercept_scaling", self.intercept_scaling, positive=True)
        _check_number("tol", self.tol, positive=False)
        if self.loss != "squared_hinge":
            raise ValueError(
                f"loss={self.loss!r} is not supported: LinearSVM minimises the squared hinge only "
                "(loss='squared_hinge'); for the hinge loss use sklearn.svm.LinearSVC(loss='hinge')."
            )
        _check_integer("max_iter", self.max_iter, 1)
        if self.batch_size is not None:
            _check_integer("batch_size", self.batch_size, 1)
        if str(self.dtype).removeprefix("torch.") not in _DTYPES:
            raise ValueError(
                f"dtype must be 'float32' or 'float64' (or the torch dtype), got {self.dtype!r}."
            )
        resolve_device(self.device)

    def _compute_dtype(self) -> torch.dtype:
        return _DTYPES[str(self.dtype).removeprefix("torch.")]

    def _rows_per_chunk(self, n_features: int, device: torch.device, dtype: torch.dtype) -> int:
        """``batch_size``, or the rows of X in ``dtype`` that fill the chunk budget of ``device``."""
        if self.batch_size is not None:
            return int(self.batch_size)
        return chunk_rows(n_features * (torch.finfo(dtype).bits // 8), device)


# ----------------------------------------------------------------------------------------
# Choosing C on a validation part
# ----------------------------------------------------------------------------------------


def _take_rows(X, rows: np.ndarray):
    """The rows ``rows`` (indices) of X, copied: a numpy array, or a tensor on X's device."""
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(rows, device=X.device)]
    return X[rows]


def _stack_rows(X, X_val):
    """The rows of X, then those of X_val, in one new array of X's kind, dtype and device."""
    if isinstance(X, torch.Tensor):
        return torch.cat([X, torch.as_tensor(X_val, dtype=X.dtype, device=X.device)])
    return np.concatenate([X, np.asarray(_on_host(X_val), dtype=X.dtype)])


def _on_host(X):
    """A torch tensor as a numpy array on the host (what liblinear reads); numpy X unchanged."""
    return X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else X


class ValidatedLinearSVM(ClassifierMixin, BaseEstimator):
    """Linear SVM (squared hinge, one-vs-rest) whose C is chosen by accuracy on a validation part.

    ``fit(X, y, validation=(X_val, y_val))`` trains one SVM per C of ``Cs`` on X, in increasing
    order of C, and scores each by its accuracy on (X_val, y_val); ``fit(X, y)`` first holds out a
    stratified ``validation_fraction`` of the rows of X as the validation part. The C of the best
    accuracy wins, the smallest C on ties. With ``refit`` it is then trained again on all rows (X,
    and X_val when given); otherwise its model trained on the fit part is kept. A single C without
    ``validation`` is trained on X whole, with nothing held out.

    Solver: scikit-learn's ``LinearSVC`` (liblinear, ``dual="auto"``) when a float64 copy of all
    rows (n x d x 8 bytes) fits in ``liblinear_max_bytes``, else :class:`LinearSVM` (torch,
    float32 products, X read in chunks, CPU or CUDA); ``solver`` forces one. The torch solver is
    warm-started: each C starts from the previous C's solution, and the refit from the chosen C's
    (BENCHMARKS.md: the Fashion-MNIST end-to-end run).

    Memory: checking X does not copy it (float32 and float64 arrays and ``np.memmap`` are read in
    place, their finiteness tested chunk by chunk) and the torch solver reads X in place, so
    ``refit=False`` with ``validation`` given copies no row. Two steps do copy rows into memory:
    holding out a validation part (``validation=None`` and several Cs) copies the fit rows and
    the validation rows, one copy of X in all; a refit with ``validation`` given trains on the
    concatenation of X and X_val, a new array of all n + n_val rows (for a 2-GB memmapped X, over
    2 GB of RAM). liblinear itself copies the rows of each fit to float64.

    Parameters
    ----------
    Cs : sequence of float, default=(0.1, 1.0, 10.0)
        Values of C (> 0) to choose from; tried in increasing order, each value once.
    validation_fraction : float, default=0.1
        Share of the rows held out, stratified by class, when ``validation`` is not given
        (0 < validation_fraction < 1).
    refit : bool, default=True
        Train the chosen C again on all rows (X, plus X_val when ``validation`` is given); False
        keeps the chosen C's model trained on the fit part.
    solver : {"auto", "liblinear", "torch"}, default="auto"
    liblinear_max_bytes : int, default=2 GiB
        Largest float64 copy of all rows for which ``solver="auto"`` picks liblinear.
    max_iter : int, default=1000
        Iterations of each SVM fit, at most.
    tol : float, default=1e-4
        Tolerance of each SVM fit (:class:`LinearSVM`: relative duality gap).
    device : str, torch.device or None, default=None
        Device of the torch solver: None is the device of X when X is a tensor, else the CPU.
    random_state : int or None, default=0
        Seeds the held-out split (and liblinear).

    Attributes
    ----------
    best_C_ : float
        The chosen C.
    validation_scores_ : dict {C: float}
        Validation accuracy of each C, in increasing order of C; empty when nothing was scored
        (a single C and no ``validation``).
    fit_seconds_ : dict {C: float}
        Wall time of each C's fit on the fit part, in seconds.
    n_iter_ : dict {C: int}
        Iterations of each C's fit on the fit part.
    refit_seconds_ : float
        Wall time of the refit, in seconds; set only when a refit ran.
    estimator_ : LinearSVC or LinearSVM
        The model that predicts: the refitted one, or the chosen C's model on the fit part.
    solver_ : {"liblinear", "torch"}
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has string column names (a DataFrame).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> svm = ValidatedLinearSVM(Cs=(0.01, 1.0), refit=False, solver="torch")
    >>> svm = svm.fit(X[:150], y[:150], validation=(X[150:], y[150:]))
    >>> sorted(svm.validation_scores_) == [0.01, 1.0], svm.estimator_.C == svm.best_C_
    (True, True)
    """

    def __init__(self, Cs=(0.1, 1.0, 10.0), *, validation_fraction=0.1, refit=True, solver="auto",
                 liblinear_max_bytes=2 * 1024**3, max_iter=1000, tol=1e-4, device=None, random_state=0):
        self.Cs = Cs
        self.validation_fraction = validation_fraction
        self.refit = refit
        self.solver = solver
        self.liblinear_max_bytes = liblinear_max_bytes
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting

    def fit(self, X, y, *, validation=None):
        """Choose C on the validation part and (``refit``) train it on all rows; returns self.

        X (n, d): numpy array, ``np.memmap`` or torch tensor; y (n,): class labels;
        ``validation``: None, or a pair (X_val (m, d), y_val (m,)) whose labels all occur in y.
        """
        Cs = self._check_params()
        X, y, validation = self._validate_fit_input(X, y, validation)
        self.solver_ = self._choose_solver(X, validation)
        if self.solver_ == "liblinear":
            X = _on_host(X)
            validation = None if validation is None else (_on_host(validation[0]), validation[1])
        if validation is not None:
            X_fit, y_fit, X_val, y_val = X, y, *validation
        elif len(Cs) > 1:
            X_fit, y_fit, X_val, y_val = self._hold_out(X, y)
        else:
            X_fit, y_fit, X_val, y_val = X, y, None, None
        self.__dict__.pop("refit_seconds_", None)  # from an earlier fit
        chosen = self._sweep(Cs, X_fit, y_fit, X_val, y_val)
        validated = X_val is not None
        del X_fit, X_val  # the held-out copies, before the refit needs memory
        self.best_C_ = chosen.C
        self.estimator_ = self._refit(chosen, X, y, validation) if self.refit and validated else chosen
        self.classes_ = self.estimator_.classes_
        return self

    def _sweep(self, Cs: list[float], X_fit, y_fit, X_val, y_val):
        """The model of the best C, trained on the fit part; sets the per-C attributes.

        One model, its C raised step by step (the torch solver starts each fit from the previous
        solution); a copy is kept of each model that beats the best validation accuracy so far,
        strictly, so the smallest C wins ties. Without a validation part (one C) its model.
        """
        model = self._make_svm(Cs[0])
        chosen = None
        self.validation_scores_, self.fit_seconds_, self.n_iter_ = {}, {}, {}
        for C in Cs:
            start = time.perf_counter()
            model.set_params(C=C).fit(X_fit, y_fit)
            self.fit_seconds_[C] = time.perf_counter() - start
            self.n_iter_[C] = int(np.max(model.n_iter_))
            if X_val is None:
                return model
            self.validation_scores_[C] = float(np.mean(model.predict(X_val) == y_val))
            if chosen is None or self.validation_scores_[C] > self.validation_scores_[chosen.C]:
                chosen = copy.deepcopy(model)
        return chosen

    def _refit(self, chosen, X, y, validation):
        """The chosen C trained on all rows: X, or the rows of X and X_val stacked (a copy)."""
        if validation is not None:
            X, y = _stack_rows(X, validation[0]), np.concatenate([y, validation[1]])
        model = chosen if self.solver_ == "torch" else self._make_svm(chosen.C)  # torch: warm start
        start = time.perf_counter()
        model.fit(X, y)
        self.refit_seconds_ = time.perf_counter() - start
        return model

    def _make_svm(self, C: float):
        if self.solver_ == "liblinear":
            return LinearSVC(C=C, loss="squared_hinge", dual="auto", max_iter=self.max_iter, tol=self.tol,
                             random_state=self.random_state)
        return LinearSVM(C=C, max_iter=self.max_iter, tol=self.tol, device=self.device, warm_start=True,
                         random_state=self.random_state)

    def _hold_out(self, X, y):
        """(X_fit, y_fit, X_val, y_val): a stratified ``validation_fraction`` of the rows held out;
        both parts are copies of their rows, in the order of X."""
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=self.validation_fraction,
                                          random_state=self.random_state)
        try:
            fit_rows, validation_rows = next(splitter.split(np.zeros((len(y), 1)), y))
        except ValueError as error:
            raise ValueError(
                f"Cannot hold out a stratified validation_fraction={self.validation_fraction} of "
                f"{len(y)} rows of {len(np.unique(y))} classes ({error}). Pass validation=(X_val, "
                "y_val), more rows, another validation_fraction, or a single C."
            ) from error
        fit_rows.sort()
        validation_rows.sort()
        return _take_rows(X, fit_rows), y[fit_rows], _take_rows(X, validation_rows), y[validation_rows]

    def _choose_solver(self, X, validation) -> str:
        """``solver``; for "auto", liblinear when a float64 copy of all rows fits in
        ``liblinear_max_bytes``, else torch."""
        if self.solver != "auto":
            return self.solver
        n_rows = X.shape[0] + (0 if validation is None else validation[0].shape[0])
        return "liblinear" if n_rows * X.shape[1] * 8 <= self.liblinear_max_bytes else "torch"

    # ------------------------------------------------------------------ prediction

    def decision_function(self, X):
        """Scores of ``estimator_``: (n,) for two classes (> 0: ``classes_[1]``), else (n, n_classes)."""
        X = self._validate_predict_input(X)
        return self.estimator_.decision_function(X)

    def predict(self, X):
        """Class labels (n,) from ``classes_``, as ``estimator_`` predicts them."""
        X = self._validate_predict_input(X)
        return self.estimator_.predict(X)

    # ------------------------------------------------------------------ checks

    def _check_params(self) -> list[float]:
        """The distinct values of ``Cs`` in increasing order, once every parameter is checked."""
        if isinstance(self.Cs, (str, bytes)) or not np.iterable(self.Cs):
            raise ValueError(f"Cs must be a sequence of values of C, such as (0.1, 1.0, 10.0); got {self.Cs!r}.")
        Cs = list(self.Cs)
        if not Cs:
            raise ValueError("Cs must hold at least one value of C, such as Cs=(0.1, 1.0, 10.0).")
        for C in Cs:
            _check_number("every C in Cs", C, positive=True)
        fraction = self.validation_fraction
        if not (isinstance(fraction, Real) and not isinstance(fraction, bool) and 0 < fraction < 1):
            raise ValueError(f"validation_fraction must be a number between 0 and 1 (both excluded), got {fraction!r}.")
        if not isinstance(self.refit, (bool, np.bool_)):
            raise ValueError(f"refit must be True or False, got {self.refit!r}.")
        if not any(self.solver == name for name in _SOLVERS):
            raise ValueError(f"solver must be 'auto', 'liblinear' or 'torch', got {self.solver!r}.")
        _check_number("liblinear_max_bytes", self.liblinear_max_bytes, positive=False)
        _check_integer("max_iter", self.max_iter, 1)
        _check_number("tol", self.tol, positive=False)
        resolve_device(self.device)
        return sorted({float(C) for C in Cs})

    def _validate_fit_input(self, X, y, validation):
        """(X, y, validation): X and y checked as `LinearSVM` checks them (two classes at least);
        ``validation`` None, or the pair checked likewise, of X's width, with labels of y only."""
        X, y = _validate_features_and_labels(self, X, y, reset=True)
        classes, _ = _check_classes(self, y)
        if validation is None:
            return X, y, None
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise ValueError(
                "validation must be None or a pair (X_val, y_val) of validation rows and their labels; "
                f"got {type(validation).__name__}."
            )
        try:
            X_val, y_val = _validate_features_and_labels(self, *validation, reset=False)
        except ValueError as error:
            raise ValueError(f"validation=(X_val, y_val): {error}") from error
        known = set(classes.tolist())
        unseen = [label for label in np.unique(y_val).tolist() if label not in known]
        if unseen:
            raise ValueError(
                f"validation=(X_val, y_val): y_val holds {len(unseen)} label(s) absent from y, such as "
                f"{unseen[:5]}; the SVM predicts only the classes of y. Train on rows of every class, or "
                "drop those validation rows."
            )
        return X, y, (X_val, y_val)

    def _validate_predict_input(self, X):
        check_is_fitted(self, "estimator_")
        X, _ = _validate_features(self, X, reset=False)
        return _on_host(X) if self.solver_ == "liblinear" else X
