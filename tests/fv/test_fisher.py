"""Tests of fv.fisher against naive loops, scikit-image, finite differences and exact identities."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from fv.gmm import DiagonalGMM, GMMParameters
from fv.fisher import (
    fisher_information,
    fisher_kernel,
    fisher_score,
    fisher_vector,
    fisher_vectors,
    spatial_pyramid_cells,
    spatial_pyramid_fisher_vector,
    spatial_pyramid_fisher_vectors,
)

K, D = 5, 4


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gmm():
    """A fitted scikit-learn diagonal GMM (scikit-image's fisher_vector needs the object)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(K, D))
    X = np.concatenate([c + rng.normal(scale=rng.uniform(0.5, 1.5, D), size=(100, D)) for c in centres])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(K, covariance_type="diag", random_state=0, max_iter=20).fit(X)


@pytest.fixture(scope="module")
def params(gmm):
    return GMMParameters(gmm.means_, gmm.covariances_, gmm.weights_)


@pytest.fixture(scope="module")
def descriptors(gmm):
    X, _ = gmm.sample(60)
    return np.random.default_rng(1).permutation(X)


# --------------------------------------------------------------------------------------------------
# Naive references: one descriptor, one component, one dimension at a time
# --------------------------------------------------------------------------------------------------


def naive_posteriors(X, means, variances, weights):
    q = np.zeros((len(X), len(weights)))
    for i, x in enumerate(X):
        log_joint = []
        for k in range(len(weights)):
            s = math.log(weights[k])
            for d in range(len(x)):
                s -= 0.5 * (math.log(2 * math.pi * variances[k, d]) + (x[d] - means[k, d]) ** 2 / variances[k, d])
            log_joint.append(s)
        top = max(log_joint)
        total = sum(math.exp(v - top) for v in log_joint)
        for k in range(len(weights)):
            q[i, k] = math.exp(log_joint[k] - top) / total
    return q


def naive_fisher_vector(X, means, variances, weights, improved, alpha=0.5, weights_block=False):
    N = len(X)
    Kc, Dc = means.shape
    q = naive_posteriors(X, means, variances, weights)
    a = np.zeros(Kc)
    u = np.zeros((Kc, Dc))
    v = np.zeros((Kc, Dc))
    for k in range(Kc):
        for i in range(N):
            a[k] += (q[i, k] - weights[k]) / (N * math.sqrt(weights[k]))
            for d in range(Dc):
                z = (X[i, d] - means[k, d]) / math.sqrt(variances[k, d])
                u[k, d] += q[i, k] * z / (N * math.sqrt(weights[k]))
                v[k, d] += q[i, k] * (z * z - 1) / (N * math.sqrt(2 * weights[k]))
    fv = np.concatenate(([a] if weights_block else []) + [u.ravel(), v.ravel()])
    if improved:
        fv = np.array([math.copysign(abs(z) ** alpha, z) for z in fv])
        fv /= math.sqrt(sum(z * z for z in fv))
    return fv


def naive_fisher_score(X, means, variances, weights):
    Kc, Dc = means.shape
    q = naive_posteriors(X, means, variances, weights)
    d_alpha = np.zeros(Kc)
    d_mu = np.zeros((Kc, Dc))
    d_sigma = np.zeros((Kc, Dc))
    for i in range(len(X)):
        for k in range(Kc):
            d_alpha[k] += q[i, k] - weights[k]
            for d in range(Dc):
                sigma = math.sqrt(variances[k, d])
                diff = X[i, d] - means[k, d]
                d_mu[k, d] += q[i, k] * diff / sigma**2
                d_sigma[k, d] += q[i, k] * (diff**2 / sigma**3 - 1 / sigma)
    return np.concatenate([d_alpha, d_mu.ravel(), d_sigma.ravel()])


def naive_fisher_information(means, variances, weights, n):
    Kc, Dc = means.shape
    f_alpha = [n * weights[k] for k in range(Kc)]
    f_mu = [n * weights[k] / variances[k, d] for k in range(Kc) for d in range(Dc)]
    f_sigma = [2 * n * weights[k] / variances[k, d] for k in range(Kc) for d in range(Dc)]
    return np.array(f_alpha + f_mu + f_sigma)


def log_likelihood(X, alphas, means, sigmas):
    """sum_i log p(x_i) with softmax weights and standard deviations: the function fisher_score differentiates."""
    weights = np.exp(alphas - alphas.max())
    weights /= weights.sum()
    log_joint = (
        np.log(weights)
        - 0.5 * np.sum(np.log(2 * np.pi * sigmas**2), axis=1)
        - 0.5 * np.sum(((X[:, None, :] - means) / sigmas) ** 2, axis=2)
    )
    top = log_joint.max(1, keepdims=True)
    return float(np.sum(top[:, 0] + np.log(np.exp(log_joint - top).sum(1))))


def assert_float32_close(got, want, rel, improved):
    """Agreement to ``rel`` times the largest entry of ``want``.

    The signed square root maps an absolute error e of an entry near zero to about sqrt(e), so improved
    vectors are compared after undoing it (sign(z) z^2, which is the raw vector over its L1 norm).
    """
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if improved:
        got, want = np.sign(got) * got**2, np.sign(want) * want**2
    np.testing.assert_allclose(got, want, rtol=0, atol=rel * np.abs(want).max())


def to_skimage_layout(fv):
    """Ours with weights_block=True -> scikit-image: same order, variance block negated."""
    out = fv.copy()
    out[K + K * D :] *= -1
    return out


# --------------------------------------------------------------------------------------------------
# Fisher vector formulas
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("improved", [False, True])
@pytest.mark.parametrize("weights_block", [False, True])
@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_fisher_vector_matches_naive_loop(params, descriptors, improved, weights_block, alpha):
    X = descriptors[:25]
    got = fisher_vector(X, params, improved=improved, alpha=alpha, weights_block=weights_block)
    want = naive_fisher_vector(X, *params, improved=improved, alpha=alpha, weights_block=weights_block)
    assert got.shape == (2 * K * D + (K if weights_block else 0),)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("improved", [False, True])
def test_fisher_vector_matches_scikit_image(gmm, params, descriptors, improved):
    skimage_feature = pytest.importorskip("skimage.feature")
    want = skimage_feature.fisher_vector(descriptors, gmm, improved=improved, alpha=0.5)
    got = fisher_vector(descriptors, params, improved=improved, alpha=0.5, weights_block=True)
    np.testing.assert_allclose(to_skimage_layout(got), want, rtol=1e-9, atol=1e-12)
    # Without the weight block our vector is scikit-image's without its first K entries.
    if not improved:
        plain = fisher_vector(descriptors, params, improved=False)
        padded = to_skimage_layout(np.r_[np.zeros(K), plain])
        np.testing.assert_allclose(padded[K:], want[K:], rtol=1e-9, atol=1e-12)


def test_fisher_vector_mean_block_comes_first(params, descriptors):
    """VLFeat layout: u_1..u_K then v_1..v_K; moving descriptors changes u linearly, v quadratically."""
    means, variances, weights = params
    one = np.repeat(means[2:3], 3, axis=0)  # three copies of component 2's mean: u_2 ~ 0, v_2 ~ -1
    fv = fisher_vector(one, params, improved=False)
    q = naive_posteriors(one, *params)[0, 2]
    np.testing.assert_allclose(fv[2 * D : 3 * D], 0.0, atol=1e-12)
    np.testing.assert_allclose(fv[K * D + 2 * D : K * D + 3 * D], -q / math.sqrt(2 * weights[2]), rtol=1e-10)


# --------------------------------------------------------------------------------------------------
# Fisher score, information and kernel
# --------------------------------------------------------------------------------------------------


def test_fisher_score_matches_naive_loop(params, descriptors):
    X = descriptors[:20]
    got = fisher_score(X, params)
    assert got.shape == (K + 2 * K * D,)
    np.testing.assert_allclose(got, naive_fisher_score(X, *params), rtol=1e-10, atol=1e-10)


def test_fisher_score_is_the_gradient_of_the_log_likelihood(params, descriptors):
    """Central differences of sum_i log p(x_i) in (alpha, mu, sigma), alpha the softmax weights."""
    means, variances, weights = params
    X = descriptors[:20]
    theta = np.concatenate([np.log(weights), means.ravel(), np.sqrt(variances).ravel()])

    def f(t):
        return log_likelihood(X, t[:K], t[K : K + K * D].reshape(K, D), t[K + K * D :].reshape(K, D))

    h = 1e-6
    numeric = np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])
    np.testing.assert_allclose(fisher_score(X, params), numeric, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [1, 37])
def test_fisher_information_matches_naive_loop(params, n):
    got = fisher_information(params, n_descriptors=n)
    np.testing.assert_allclose(got, naive_fisher_information(*params, n), rtol=1e-14)


def test_fisher_information_is_the_score_variance_for_separated_components():
    """With well-separated components the whitened per-descriptor mean and sigma scores have unit variance."""
    rng = np.random.default_rng(3)
    means = np.array([[0.0, 0.0], [40.0, 0.0], [0.0, 40.0]])
    variances = np.array([[1.0, 4.0], [0.25, 1.0], [2.0, 0.5]])
    weights = np.array([0.5, 0.3, 0.2])
    n = 40000
    comp = rng.choice(3, size=n, p=weights)
    X = means[comp] + rng.standard_normal((n, 2)) * np.sqrt(variances[comp])
    # Whitened per-descriptor scores F_1^{-1/2} u(x_i) are the unnormalised FVs of single descriptors.
    fvs = fisher_vectors(
        X[:, None, :], GMMParameters(means, variances, weights), improved=False, weights_block=True, dtype=np.float64
    )
    squares = fvs[:, 3:] ** 2
    standard_error = squares.std(0) / math.sqrt(n)
    assert np.all(np.abs(squares.mean(0) - 1.0) < 4 * standard_error)
    # The mean scores themselves have expectation zero.
    assert np.all(np.abs(fvs.mean(0)) < 4 * fvs.std(0) / math.sqrt(n))


def test_fisher_kernel_matches_naive_loop(params, descriptors):
    X, Y = descriptors[:15], descriptors[15:40]
    u_x = naive_fisher_score(X, *params)
    u_y = naive_fisher_score(Y, *params)
    info = naive_fisher_information(*params, 1)
    want = sum(a * b / f for a, b, f in zip(u_x, u_y, info))
    assert math.isclose(fisher_kernel(X, Y, params), want, rel_tol=1e-10)


def test_fisher_kernel_is_scaled_dot_product_of_unnormalised_fisher_vectors(params, descriptors):
    X, Y = descriptors[:15], descriptors[15:40]
    fv_x = fisher_vector(X, params, improved=False, weights_block=True)
    fv_y = fisher_vector(Y, params, improved=False, weights_block=True)
    assert math.isclose(fisher_kernel(X, Y, params), len(X) * len(Y) * float(fv_x @ fv_y), rel_tol=1e-10)
    # The vector itself: FV = F_1^{-1/2} U_X / N_X.
    info = fisher_information(params)
    np.testing.assert_allclose(fv_x, fisher_score(X, params) / np.sqrt(info) / len(X), rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights_block", [False, True])
@pytest.mark.parametrize("improved", [False, True])
def test_batched_equals_single_for_ragged_sets(params, descriptors, weights_block, improved):
    rng = np.random.default_rng(4)
    sets = [rng.permutation(descriptors[:n]) for n in (7, 60, 0, 1, 33, 33, 12)]
    kw = dict(improved=improved, weights_block=weights_block)
    single = np.stack([fisher_vector(s, params, **kw) for s in sets])
    single32 = np.stack([fisher_vector(s.astype(np.float32), params, **kw) for s in sets])
    assert single32.dtype == np.float32
    assert_float32_close(single32, single, 5e-5, improved)
    for batch_size in (None, 1, 3):
        got = fisher_vectors(sets, params, batch_size=batch_size, **kw)
        assert got.shape == single.shape and got.dtype == np.float32
        assert_float32_close(got, single32, 1e-5, improved)
    got64 = fisher_vectors(sets, params, dtype=np.float64, batch_size=3, **kw)
    np.testing.assert_allclose(got64, single, rtol=1e-10, atol=1e-13)
    assert not np.any(got64[2])  # the empty set


def test_batched_accepts_padded_array_with_counts_and_out(params, descriptors):
    counts = [10, 0, 25]
    padded = np.full((3, 25, D), np.nan)  # whatever the padding holds must not leak in
    for i, n in enumerate(counts):
        padded[i, :n] = descriptors[i * 10 : i * 10 + n]
    out = np.zeros((3, 2 * K * D), dtype=np.float64)
    got = fisher_vectors(padded, params, counts=counts, dtype=torch.float64, out=out)
    assert got is out
    for i, n in enumerate(counts):
        np.testing.assert_allclose(out[i], fisher_vector(padded[i, :n], params), rtol=1e-10, atol=1e-13)


def test_torch_input_gives_torch_output(params, descriptors):
    x = torch.as_tensor(descriptors)
    fv = fisher_vector(x, params)
    assert isinstance(fv, torch.Tensor) and fv.dtype == torch.float64
    np.testing.assert_allclose(fv.numpy(), fisher_vector(descriptors, params), rtol=1e-12)
    torch_params = GMMParameters(*[torch.as_tensor(p, dtype=torch.float32) for p in params])
    fvs = fisher_vectors([x[:10].float(), x[10:].float()], torch_params)
    assert isinstance(fvs, torch.Tensor) and fvs.shape == (2, 2 * K * D) and fvs.dtype == torch.float32
    want = np.stack([fisher_vector(descriptors[:10], torch_params), fisher_vector(descriptors[10:], torch_params)])
    assert_float32_close(fvs.numpy(), want, 1e-5, improved=True)
    padded = torch.zeros(2, 50, D, dtype=torch.float64)
    padded[0, :10], padded[1] = x[:10], x[10:]
    fvs = fisher_vectors(padded, params, counts=torch.tensor([10, 50]), dtype=torch.float64)
    assert isinstance(fvs, torch.Tensor) and fvs.dtype == torch.float64
    np.testing.assert_allclose(fvs[0].numpy(), fisher_vector(descriptors[:10], params), rtol=1e-10, atol=1e-13)
    score = fisher_score(x, params)
    assert isinstance(score, torch.Tensor)
    np.testing.assert_allclose(score.numpy(), fisher_score(descriptors, params), rtol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(params, descriptors):
    sets = [descriptors[:40], descriptors[40:], descriptors[:0]]
    cpu = fisher_vectors(sets, params)
    gpu = fisher_vectors([torch.as_tensor(s, device="cuda") for s in sets], params)
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# Degenerate input and precision
# --------------------------------------------------------------------------------------------------


def test_zero_descriptors_give_zeros(params):
    for x in (np.empty((0, D)), np.empty(0), np.empty((0, D), dtype=np.float32)):
        for improved in (False, True):
            fv = fisher_vector(x, params, improved=improved, weights_block=True)
            assert fv.shape == (K + 2 * K * D,) and not np.any(fv) and np.all(np.isfinite(fv))
    assert not np.any(fisher_score(np.empty((0, D)), params))
    assert fisher_vectors([], params).shape == (0, 2 * K * D)


def test_far_descriptors_give_one_hot_posteriors_not_nan(params, descriptors):
    """1e6 away every density underflows; the log-sum-exp still picks the nearest component."""
    far = descriptors[:10] + 1e6
    fv = fisher_vector(far, params, weights_block=True)
    want = naive_fisher_vector(far, *params, improved=True, weights_block=True)
    np.testing.assert_allclose(fv, want, rtol=1e-6, atol=1e-9)
    fv32 = fisher_vector(far.astype(np.float32), params)
    assert np.all(np.isfinite(fv32)) and math.isclose(np.linalg.norm(fv32), 1.0, rel_tol=1e-5)
    batched = fisher_vectors([far, descriptors[:5]], params)
    assert np.all(np.isfinite(batched))


def test_overflowing_or_nan_descriptors_are_dropped(params, descriptors):
    """Descriptors without a finite log-density (1e25 squared overflows float32; NaN) do not count."""
    good = descriptors[:12].astype(np.float32)
    overflow, nan = np.full((2, D), 1e25, np.float32), np.full((1, D), np.nan, np.float32)
    with_bad = np.concatenate([good[:5], overflow, nan, good[5:]])
    assert with_bad.dtype == np.float32
    want = fisher_vector(good, params, weights_block=True)
    assert_float32_close(fisher_vector(with_bad, params, weights_block=True), want, 1e-5, improved=True)
    all_bad = np.full((4, D), 1e25, np.float32)
    got = fisher_vectors([all_bad, good, with_bad], params, weights_block=True)
    assert not np.any(got[0]) and np.all(np.isfinite(got))
    assert_float32_close(got[2], want, 1e-5, improved=True)
    cells = spatial_pyramid_fisher_vector(with_bad, np.zeros((len(with_bad), 2)), (8, 8), params)
    assert np.all(np.isfinite(cells))


@pytest.mark.parametrize("improved", [False, True])
def test_float32_with_offset_matches_float64(params, descriptors, improved):
    """An offset of 100 on descriptors and means: float32 keeps 5e-5 of the largest entry.

    Without the global shift of the expanded products the error here is about 10%.
    """
    means, variances, weights = params
    rng = np.random.default_rng(5)
    sets = [descriptors[rng.choice(60, size=n)] for n in (60, 40, 9)]
    want = np.stack([fisher_vector(s, params, improved=improved) for s in sets])  # float64, no offset
    shifted = GMMParameters(means + 100, variances, weights)
    single = np.stack([fisher_vector((s + 100).astype(np.float32), shifted, improved=improved) for s in sets])
    batched = fisher_vectors([(s + 100).astype(np.float32) for s in sets], shifted, improved=improved)
    for got in (single, batched):
        assert got.dtype == np.float32
        assert_float32_close(got, want, 5e-5, improved)


# --------------------------------------------------------------------------------------------------
# Spatial pyramids
# --------------------------------------------------------------------------------------------------


def test_spatial_pyramid_cells_match_a_loop():
    rng = np.random.default_rng(6)
    H, W = 37, 50
    frames = np.column_stack([rng.uniform(0, W - 1, 200), rng.uniform(0, H - 1, 200)])
    frames[:4] = [[0, 0], [W - 1, H - 1], [25, 18.5], [W / 2 - 1e-9, H / 3]]
    grid = ((1, 1), (2, 2), (3, 1), (2, 5))
    cells = spatial_pyramid_cells(frames, (H, W, 3), grid)
    assert cells.shape == (200, 4)
    for i, (x, y) in enumerate(frames):
        for g, (rows, cols) in enumerate(grid):
            row = next(r for r in range(rows) if y < (r + 1) * H / rows)
            col = next(c for c in range(cols) if x < (c + 1) * W / cols)
            assert cells[i, g] == row * cols + col, (i, g)


def test_spatial_pyramid_is_normalised_concatenation_of_region_vectors(params, descriptors):
    rng = np.random.default_rng(7)
    H, W = 40, 60
    X = descriptors
    frames = np.column_stack([rng.uniform(0, W / 2, len(X)), rng.uniform(0, H, len(X))])  # right half empty
    grid = ((1, 1), (2, 2), (3, 1))
    got = spatial_pyramid_fisher_vector(X, frames, (H, W), params, grid=grid)
    dim = 2 * K * D
    assert got.shape == (8 * dim,)
    blocks = []
    for rows, cols in grid:
        for r in range(rows):
            for c in range(cols):
                inside = [
                    i for i, (x, y) in enumerate(frames)
                    if r * H / rows <= y < (r + 1) * H / rows and c * W / cols <= x < (c + 1) * W / cols
                ]
                blocks.append(fisher_vector(X[inside], params) if inside else np.zeros(dim))
    want = np.concatenate(blocks)
    want /= np.linalg.norm(want)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    assert math.isclose(np.linalg.norm(got), 1.0, rel_tol=1e-12)
    for empty in (2, 4):  # cells (0, 1) and (1, 1) of the 2x2 grid
        assert not np.any(got[empty * dim : (empty + 1) * dim])
    raw = spatial_pyramid_fisher_vector(X, frames, (H, W), params, grid=grid, improved=False)
    np.testing.assert_allclose(raw[:dim], fisher_vector(X, params, improved=False), rtol=1e-10)


def test_spatial_pyramid_batched_equals_single(params, descriptors):
    rng = np.random.default_rng(8)
    shapes = [(30, 30), (20, 45), (30, 30), (10, 10)]
    sets = [descriptors[:50], descriptors[10:60], descriptors[:0], descriptors[:3]]
    frames = [
        np.column_stack([rng.uniform(0, w, len(s)), rng.uniform(0, h, len(s))]) for s, (h, w) in zip(sets, shapes)
    ]
    single = np.stack([spatial_pyramid_fisher_vector(s, f, hw, params) for s, f, hw in zip(sets, frames, shapes)])
    for batch_size in (None, 2):
        got = spatial_pyramid_fisher_vectors(sets, frames, shapes, params, batch_size=batch_size)
        assert_float32_close(got, single, 5e-5, improved=True)
    assert not np.any(single[2])
    same_shape = spatial_pyramid_fisher_vectors(sets[:2], frames[:2], (30, 30), params, dtype=np.float64)
    np.testing.assert_allclose(same_shape[0], single[0], rtol=1e-10, atol=1e-13)


def test_gather_rows_matches_torch_gather():
    from fv.fisher import gather_rows

    x = torch.randn(3, 7, 5)
    index = torch.randint(0, 7, (3, 4))
    expected = x.gather(1, index[..., None].expand(-1, -1, 5))
    assert torch.equal(gather_rows(x, index), expected)


def test_spatial_pyramid_padded_with_counts_equals_ragged(params, descriptors):
    rng = np.random.default_rng(9)
    shapes = [(30, 30), (20, 45), (30, 30), (10, 10)]
    counts = [50, 41, 0, 3]
    padded = rng.normal(size=(4, 50, D)) * 100  # rows past each count hold garbage
    frames = rng.uniform(-1e3, 1e3, size=(4, 50, 3))
    for i, ((h, w), n) in enumerate(zip(shapes, counts)):
        padded[i, :n] = descriptors[i : i + n]
        frames[i, :n, :2] = np.column_stack([rng.uniform(0, w, n), rng.uniform(0, h, n)])
    ragged = spatial_pyramid_fisher_vectors([padded[i, :n] for i, n in enumerate(counts)],
                                            [frames[i, :n] for i, n in enumerate(counts)], shapes, params,
                                            dtype=np.float64)
    for batch_size in (None, 3):
        got = spatial_pyramid_fisher_vectors(padded, frames, shapes, params, counts=counts, dtype=np.float64,
                                             batch_size=batch_size)
        np.testing.assert_allclose(got, ragged, rtol=1e-10, atol=1e-13)
    as_tensors = spatial_pyramid_fisher_vectors(torch.from_numpy(padded), torch.from_numpy(frames), shapes, params,
                                                counts=torch.tensor(counts), dtype=torch.float64)
    np.testing.assert_allclose(as_tensors.numpy(), ragged, rtol=1e-10, atol=1e-13)
    one_shape = spatial_pyramid_fisher_vectors(padded[:1], frames[:1], (30, 30), params, dtype=np.float64)
    np.testing.assert_allclose(one_shape[0], ragged[0], rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError, match=r"frame_sets must be a padded array of shape \(4, 50, 2\)"):
        spatial_pyramid_fisher_vectors(padded, [frames[i, :n] for i, n in enumerate(counts)], shapes, params,
                                       counts=counts)


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def test_wrong_shapes_raise_clear_errors(params, descriptors):
    means, variances, weights = params
    with pytest.raises(ValueError, match=r"descriptors must have shape \(n_descriptors, 4\).*got shape \(60, 3\)"):
        fisher_vector(descriptors[:, :3], params)
    with pytest.raises(ValueError, match=r"covariances .* \(5, 4\).*got shape \(5, 4, 4\)"):
        fisher_vector(descriptors, GMMParameters(means, np.stack([np.diag(v) for v in variances]), weights))
    with pytest.raises(ValueError, match=r"weights must have shape \(n_components,\) = \(5,\); got shape \(4,\)"):
        fisher_vector(descriptors, GMMParameters(means, variances, weights[:4]))
    with pytest.raises(ValueError, match="weights must sum to 1"):
        fisher_vector(descriptors, GMMParameters(means, variances, weights * 2))
    with pytest.raises(ValueError, match="strictly positive"):
        fisher_vector(descriptors, GMMParameters(means, -variances, weights))
    with pytest.raises(ValueError, match=r"descriptor_sets\[1\] must have shape \(n_descriptors, 4\)"):
        fisher_vectors([descriptors, descriptors[:, :2]], params)
    with pytest.raises(ValueError, match="alpha"):
        fisher_vector(descriptors, params, alpha=0.0)
    with pytest.raises(ValueError, match=r"frames must have shape \(60, 2\)"):
        spatial_pyramid_fisher_vector(descriptors, np.zeros((59, 2)), (10, 10), params)


def test_every_kind_of_mixture_gives_the_same_vectors(gmm, params, descriptors):
    """A fitted GaussianMixture, a fitted DiagonalGMM and GMMParameters of the same numbers agree, and
    the DiagonalGMM's vector matches the naive loop on its own parameters."""
    X = descriptors[:25]
    np.testing.assert_array_equal(fisher_vector(X, gmm), fisher_vector(X, params))
    np.testing.assert_array_equal(fisher_information(gmm), fisher_information(params))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        diagonal = DiagonalGMM(K, max_iter=5, random_state=0, dtype="float64").fit(descriptors)
    own = GMMParameters(diagonal.means_, diagonal.covariances_, diagonal.weights_)
    got = fisher_vector(X, diagonal, weights_block=True)
    np.testing.assert_array_equal(got, fisher_vector(X, own, weights_block=True))
    want = naive_fisher_vector(X, *own, improved=True, weights_block=True)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    sets = [X[:10], X[10:]]
    np.testing.assert_array_equal(fisher_vectors(sets, diagonal), fisher_vectors(sets, own))
    assert math.isclose(fisher_kernel(X[:10], X[10:], diagonal), fisher_kernel(X[:10], X[10:], own))


def test_unusable_mixtures_raise_clear_errors(params, descriptors):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="DiagonalGMM instance is not fitted"):
        fisher_vector(descriptors, DiagonalGMM(K))
    with pytest.raises(NotFittedError, match="GaussianMixture instance is not fitted"):
        fisher_vectors([descriptors], GaussianMixture(K, covariance_type="diag"))
    full = GaussianMixture(2, covariance_type="full", max_iter=5, random_state=0).fit(descriptors)
    with pytest.raises(ValueError, match="covariance_type='full'.*covariance_type='diag'"):
        fisher_vector(descriptors, full)
    with pytest.raises(TypeError, match=r"wrap a tuple as fv.GMMParameters\(means, covariances, weights\)"):
        fisher_vector(descriptors, tuple(params))
    with pytest.raises(TypeError, match="gmm must be a fitted fv.DiagonalGMM.*got ndarray"):
        fisher_score(descriptors, params.means)
    with pytest.raises(ValueError, match=r"weights must have shape \(n_components,\) = \(5,\); got shape \(5, 1\)"):
        fisher_information(GMMParameters(params.means, params.covariances, params.weights[:, None]))


def test_weight_information_is_a_generalised_inverse_of_the_singular_exact_one(params, descriptors):
    """F_alpha = N w, not the diagonal N w (1 - w) of the exact N (diag(w) - w w^T): diag(1 / w) is a
    generalised inverse of diag(w) - w w^T, so on scores (which sum to zero over k) it gives the same
    kernel as the pseudo-inverse."""
    w = params.weights
    exact = np.diag(w) - np.outer(w, w)
    f_alpha = fisher_information(params)[:K]
    np.testing.assert_allclose(f_alpha, w, rtol=1e-15)
    inverse = np.diag(1.0 / f_alpha)
    np.testing.assert_allclose(exact @ inverse @ exact, exact, rtol=0, atol=1e-14)
    u_x = fisher_score(descriptors[:15], params)[:K]
    u_y = fisher_score(descriptors[15:40], params)[:K]
    assert abs(u_x.sum()) < 1e-10 and abs(u_y.sum()) < 1e-10
    pseudo = float(u_x @ np.linalg.pinv(exact) @ u_y)
    assert math.isclose(float(u_x @ inverse @ u_y), pseudo, rel_tol=1e-8)


def test_weight_scores_have_the_exact_information_for_separated_components():
    """Monte Carlo: per-descriptor weight scores q - w have covariance diag(w) - w w^T, so the weight
    entries of the vector (scores over sqrt(w)) have variance 1 - w_k."""
    rng = np.random.default_rng(11)
    means = np.array([[0.0, 0.0], [40.0, 0.0], [0.0, 40.0]])
    variances = np.array([[1.0, 4.0], [0.25, 1.0], [2.0, 0.5]])
    w = np.array([0.5, 0.3, 0.2])
    n = 20000
    comp = rng.choice(3, size=n, p=w)
    X = means[comp] + rng.standard_normal((n, 2)) * np.sqrt(variances[comp])
    fvs = fisher_vectors(X[:, None, :], GMMParameters(means, variances, w), improved=False, weights_block=True,
                         dtype=np.float64)
    scores = fvs[:, :3] * np.sqrt(w)  # q_i - w
    covariance = scores.T @ scores / n
    # the products of scores lie in [-1, 1]: their mean has a standard error of at most 1 / sqrt(n)
    np.testing.assert_allclose(covariance, np.diag(w) - np.outer(w, w), rtol=0, atol=4 / math.sqrt(n))
    squares = fvs[:, :3] ** 2
    assert np.all(np.abs(squares.mean(0) - (1 - w)) <= 4 * squares.std(0) / math.sqrt(n) + 1e-12)  # w = 1/2: exact
