"""Tests of fv.gmm.DiagonalGMM against scikit-learn's GaussianMixture(covariance_type="diag")
and a naive formula, plus precision, chunking, determinism and the estimator contract."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import GaussianMixture
from sklearn.utils.estimator_checks import parametrize_with_checks

from fv.gmm import DiagonalGMM, diagonal_gmm_log_prob, log_joint_matrix

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def make_blobs(n_samples=1500, n_features=5, n_components=4, separation=8.0, offset=0.0, seed=0):
    """Samples (N, D) of a diagonal mixture and its true weights, means, variances."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_components, 5.0))
    means = rng.normal(scale=separation, size=(n_components, n_features)) + offset
    variances = rng.uniform(0.3, 2.0, size=(n_components, n_features))
    labels = rng.choice(n_components, size=n_samples, p=weights)
    X = means[labels] + rng.normal(size=(n_samples, n_features)) * np.sqrt(variances[labels])
    return X, weights, means, variances


def naive_weighted_log_prob(X, weights, means, variances):
    """log w_k + log N(x_i | mu_k, diag s2_k) by a loop over components (float64)."""
    out = np.empty((len(X), len(weights)))
    for k in range(len(weights)):
        diff = X - means[k]
        out[:, k] = np.log(weights[k]) - 0.5 * (
            np.log(2 * np.pi * variances[k]).sum() + (diff**2 / variances[k]).sum(1)
        )
    return out


def sklearn_with_parameters(weights, means, variances):
    """A GaussianMixture(diag) whose fitted parameters are set by hand."""
    reference = GaussianMixture(len(weights), covariance_type="diag")
    reference.weights_ = np.array(weights, dtype=np.float64)
    reference.means_ = np.array(means, dtype=np.float64)
    reference.covariances_ = np.array(variances, dtype=np.float64)
    reference.precisions_cholesky_ = 1.0 / np.sqrt(reference.covariances_)
    return reference


def initial_parameters(X, n_components, seed=1):
    """Deliberately rough initial weights, means and precisions (for identical starts)."""
    rng = np.random.default_rng(seed)
    means = X[rng.choice(len(X), n_components, replace=False)]
    weights = np.full(n_components, 1.0 / n_components)
    precisions = np.tile(1.0 / X.var(0), (n_components, 1))
    return weights, means, precisions


def matched(estimated_means, true_means):
    """Order of the estimated components that pairs each with the nearest true component."""
    distance = ((true_means[:, None, :] - estimated_means[None, :, :]) ** 2).sum(-1)
    order = distance.argmin(1)
    assert len(set(order.tolist())) == len(order), "two true components matched the same estimate"
    return order


# --------------------------------------------------------------------- against scikit-learn


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 2e-6)])
def test_scores_match_sklearn_with_same_parameters(dtype, rtol):
    # float32 log-densities of about -10 to -20 carry absolute errors of a few 1e-6
    X, *_ = make_blobs(offset=3.0)
    ours = DiagonalGMM(4, max_iter=5, dtype=dtype, random_state=0).fit(X)
    reference = sklearn_with_parameters(ours.weights_, ours.means_, ours.covariances_)
    X_new, *_ = make_blobs(n_samples=300, offset=3.0, seed=1)

    assert_allclose(ours.score_samples(X_new), reference.score_samples(X_new), rtol=rtol)
    assert_allclose(ours.predict_proba(X_new), reference.predict_proba(X_new), atol=10 * rtol)
    assert_array_equal(ours.predict(X_new), reference.predict(X_new))
    assert ours.score(X_new) == pytest.approx(reference.score(X_new), rel=rtol)
    assert ours.bic(X_new) == pytest.approx(reference.bic(X_new), rel=rtol)
    assert ours.aic(X_new) == pytest.approx(reference.aic(X_new), rel=rtol)
    assert_allclose(ours.precisions_cholesky_, reference.precisions_cholesky_)


def test_weighted_log_prob_matches_naive_formula():
    X, weights, means, variances = make_blobs(n_samples=200)
    expected = naive_weighted_log_prob(X, weights, means, variances)
    result = diagonal_gmm_log_prob(torch.from_numpy(X), weights, means, variances)
    assert_allclose(result.numpy(), expected, rtol=1e-12, atol=1e-10)


def test_log_joint_matrix_matches_naive_formula_and_drops_only_a_constant():
    X, weights, means, variances = make_blobs(n_samples=200, offset=2.0)
    as64 = dict(dtype=torch.float64)
    params = [torch.as_tensor(p, **as64) for p in (weights, means, variances)]
    stacked = torch.cat([torch.as_tensor(X, **as64), torch.as_tensor(X * X, **as64), torch.ones(len(X), 1, **as64)], 1)
    expected = naive_weighted_log_prob(X, weights, means, variances)
    exact = (stacked @ log_joint_matrix(*params, torch.float64)).numpy()
    assert_allclose(exact, expected, rtol=1e-12, atol=1e-10)
    shifted = (stacked @ log_joint_matrix(*params, torch.float64, up_to_constant=True)).numpy()
    offset = expected - shifted  # one constant, the largest c_k, for every sample and component
    assert_allclose(offset, offset[0, 0], rtol=1e-12)
    constants = np.log(weights) - 0.5 * (np.log(2 * np.pi * variances).sum(1) + (means**2 / variances).sum(1))
    assert offset[0, 0] == pytest.approx(constants.max(), rel=1e-12)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-9), ("float32", 5e-5)])
def test_em_matches_sklearn_from_identical_initial_parameters(dtype, rtol):
    # A clamp (our floor) and an additive reg_covar agree when the floor never binds and
    # reg_covar is 0: variance_floor=0 leaves only a 1e-10 relative guard. Overlapping
    # components (about half of the responsibilities strictly between 0.01 and 0.99).
    X, *_ = make_blobs(n_samples=2000, separation=1.5)
    weights, means, precisions = initial_parameters(X, 4)
    common = dict(weights_init=weights, means_init=means, precisions_init=precisions)
    common.update(max_iter=12, tol=0.0)
    reference = GaussianMixture(4, covariance_type="diag", reg_covar=0.0, **common).fit(X)
    ours = DiagonalGMM(4, variance_floor=0.0, dtype=dtype, **common).fit(X)

    assert ours.n_iter_ == reference.n_iter_ == 12
    assert_allclose(ours.weights_, reference.weights_, rtol=rtol)
    assert_allclose(ours.means_, reference.means_, rtol=rtol, atol=rtol)
    assert_allclose(ours.covariances_, reference.covariances_, rtol=rtol)
    assert_allclose(ours.lower_bounds_, reference.lower_bounds_, rtol=rtol / 10)
    assert ours.lower_bound_ == pytest.approx(reference.lower_bound_, rel=rtol / 10)
    assert ours.score(X) == pytest.approx(reference.score(X), rel=rtol / 10)


def test_stops_like_sklearn_with_tolerance():
    X, *_ = make_blobs(n_samples=2000, separation=1.5)
    weights, means, precisions = initial_parameters(X, 4)
    common = dict(weights_init=weights, means_init=means, precisions_init=precisions)
    common.update(max_iter=200, tol=1e-3)
    reference = GaussianMixture(4, covariance_type="diag", reg_covar=0.0, **common).fit(X)
    ours = DiagonalGMM(4, variance_floor=0.0, dtype="float64", **common).fit(X)
    assert reference.converged_ and ours.converged_
    assert ours.n_iter_ == reference.n_iter_
    assert len(ours.lower_bounds_) == ours.n_iter_


# --------------------------------------------------------------------- fitting behaviour


@pytest.mark.parametrize("init", ["kmeans++", "kmeans", "random"])
def test_recovers_well_separated_components(init):
    X, weights, means, variances = make_blobs(4000, n_features=4, n_components=3, separation=10.0)
    gmm = DiagonalGMM(3, init=init, n_init=3, random_state=0).fit(X)
    order = matched(gmm.means_, means)
    assert gmm.converged_
    assert_allclose(gmm.weights_[order], weights, atol=0.03)
    assert_allclose(gmm.means_[order], means, atol=0.15)
    assert_allclose(gmm.covariances_[order], variances, rtol=0.2)


def test_float32_with_offset_100_matches_float64():
    X, *_ = make_blobs(n_samples=3000, offset=100.0)
    settings = dict(max_iter=25, tol=0.0, random_state=0)
    gmm64 = DiagonalGMM(4, dtype="float64", **settings).fit(X)
    gmm32 = DiagonalGMM(4, dtype="float32", **settings).fit(X.astype(np.float32))

    assert_allclose(gmm32.weights_, gmm64.weights_, atol=1e-5)
    assert_allclose(gmm32.means_, gmm64.means_, rtol=0, atol=1e-4)
    assert_allclose(gmm32.covariances_, gmm64.covariances_, rtol=1e-4)
    assert gmm32.lower_bound_ == pytest.approx(gmm64.lower_bound_, rel=1e-6)
    assert_allclose(gmm32.score_samples(X), gmm64.score_samples(X), rtol=3e-5)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 5e-5)])
def test_chunked_equals_unchunked(dtype, rtol):
    X, *_ = make_blobs(n_samples=1000)
    settings = dict(max_iter=10, tol=0.0, random_state=0, dtype=dtype)
    whole = DiagonalGMM(4, chunk_size=len(X), **settings).fit(X)
    chunked = DiagonalGMM(4, chunk_size=300, **settings).fit(X)  # 2 x 128 + 44 rows, and 100
    assert_allclose(chunked.means_, whole.means_, rtol=rtol, atol=rtol)
    assert_allclose(chunked.covariances_, whole.covariances_, rtol=rtol)
    assert_allclose(chunked.weights_, whole.weights_, rtol=rtol)
    assert chunked.lower_bound_ == pytest.approx(whole.lower_bound_, rel=rtol)
    assert_allclose(chunked.score_samples(X), whole.score_samples(X), rtol=rtol)


@pytest.mark.parametrize("init", ["kmeans++", "kmeans", "random"])
def test_deterministic_given_random_state(init):
    X, *_ = make_blobs(n_samples=1000, n_components=6, separation=2.0)
    first = DiagonalGMM(6, init=init, max_iter=5, random_state=3).fit(X)
    second = DiagonalGMM(6, init=init, max_iter=5, random_state=3).fit(X)
    other = DiagonalGMM(6, init=init, max_iter=5, random_state=4).fit(X)
    assert_array_equal(first.means_, second.means_)
    assert_array_equal(first.covariances_, second.covariances_)
    assert_array_equal(first.weights_, second.weights_)
    assert not np.array_equal(first.means_, other.means_)


def test_variance_floor_is_relative_to_largest_data_variance():
    X, *_ = make_blobs(n_samples=1000)
    X[:, 2] = 1.5  # a constant dimension: its variance would be zero without the floor
    gmm = DiagonalGMM(4, variance_floor=1e-3, random_state=0).fit(X)
    assert gmm.variance_floor_ == pytest.approx(1e-3 * X.var(0).max(), rel=1e-6)
    assert np.all(gmm.covariances_ >= gmm.variance_floor_)
    assert_allclose(gmm.covariances_[:, 2], gmm.variance_floor_)
    assert np.all(np.isfinite(gmm.score_samples(X)))


def test_empty_component_is_reseeded_without_nan():
    X, *_ = make_blobs(n_samples=1000, n_components=3)
    weights, means, precisions = initial_parameters(X, 4)
    means[3] = 1e4  # a component that no sample will ever choose
    gmm = DiagonalGMM(
        4, max_iter=20, weights_init=weights, means_init=means, precisions_init=precisions
    ).fit(X)
    for value in (gmm.weights_, gmm.means_, gmm.covariances_, gmm.lower_bounds_):
        assert np.all(np.isfinite(value))
    assert np.abs(gmm.means_[3]).max() < np.abs(X).max() + 1.0  # moved onto the data
    assert gmm.weights_[3] > 0
    assert np.all(np.isfinite(gmm.score_samples(X)))


def test_torch_input_gives_tensors_equal_to_numpy_path():
    X, *_ = make_blobs(n_samples=500)
    from_numpy = DiagonalGMM(4, max_iter=5, random_state=0).fit(X)
    from_torch = DiagonalGMM(4, max_iter=5, random_state=0).fit(torch.from_numpy(X))
    assert_allclose(from_torch.means_, from_numpy.means_, rtol=1e-6)
    scores = from_torch.score_samples(torch.from_numpy(X))
    assert isinstance(scores, torch.Tensor)
    assert_allclose(scores.numpy(), from_numpy.score_samples(X), rtol=1e-5)
    assert isinstance(from_numpy.predict(X), np.ndarray)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    X, *_ = make_blobs(n_samples=2000, offset=50.0)
    settings = dict(max_iter=10, tol=0.0, random_state=0)
    cpu = DiagonalGMM(4, **settings).fit(X)
    cuda = DiagonalGMM(4, device="cuda", **settings).fit(X)
    assert_allclose(cuda.means_, cpu.means_, atol=1e-4)
    assert_allclose(cuda.covariances_, cpu.covariances_, rtol=1e-4)
    scores = cuda.score_samples(torch.as_tensor(X, device="cuda"))
    assert scores.device.type == "cuda"
    assert_allclose(scores.cpu().numpy(), cpu.score_samples(X), rtol=1e-5)


def test_sample_draws_from_the_mixture():
    X, *_ = make_blobs(n_samples=2000, n_components=3)
    gmm = DiagonalGMM(3, random_state=0).fit(X)
    samples, labels = gmm.sample(20000)
    assert samples.shape == (20000, X.shape[1]) and labels.shape == (20000,)
    assert_allclose(np.bincount(labels, minlength=3) / 20000, gmm.weights_, atol=0.02)
    assert_allclose(samples[labels == 0].mean(0), gmm.means_[0], atol=0.1)


# --------------------------------------------------------------------- estimator contract


def test_clone_and_params_round_trip():
    gmm = DiagonalGMM(8, max_iter=7, init="random", variance_floor=1e-3, random_state=5)
    params = gmm.get_params()
    assert params["n_components"] == 8 and params["init"] == "random"
    copy = clone(gmm)
    assert copy is not gmm and copy.get_params() == params
    copy.set_params(n_components=3, tol=0.5)
    assert copy.n_components == 3 and copy.tol == 0.5
    assert DiagonalGMM(**copy.get_params()).get_params() == copy.get_params()


@parametrize_with_checks(
    [
        DiagonalGMM(n_components=2, random_state=0),
        DiagonalGMM(n_components=2, random_state=0, dtype="float64"),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.mark.parametrize("method", ["score_samples", "score", "predict_proba", "predict"])
def test_not_fitted_error(method):
    with pytest.raises(NotFittedError):
        getattr(DiagonalGMM(2), method)(np.zeros((3, 2)))


def test_clear_errors_for_bad_input():
    X, *_ = make_blobs(n_samples=100)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        DiagonalGMM(2).fit(bad)
    with pytest.raises(ValueError, match="NaN"):
        DiagonalGMM(2).fit(torch.from_numpy(bad))
    with pytest.raises(ValueError, match="n_components=200 is larger than n_samples=100"):
        DiagonalGMM(200).fit(X)
    gmm = DiagonalGMM(2, max_iter=2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but DiagonalGMM is expecting 5"):
        gmm.score_samples(X[:, :3])
    with pytest.raises(ValueError, match="X has 3 features, but DiagonalGMM is expecting 5"):
        gmm.predict_proba(torch.from_numpy(X[:, :3]))
    with pytest.raises(ValueError, match="init must be one of"):
        DiagonalGMM(2, init="kmeans+").fit(X)
    with pytest.raises(ValueError, match="n_components must be an integer >= 1"):
        DiagonalGMM(0).fit(X)
    with pytest.raises(ValueError, match="weights_init must be non-negative and sum to 1"):
        DiagonalGMM(2, weights_init=[0.2, 0.2]).fit(X)
    with pytest.raises(ValueError, match=r"means_init has shape \(2, 4\), expected \(2, 5\)"):
        DiagonalGMM(2, means_init=np.zeros((2, 4))).fit(X)
    with pytest.raises(ValueError, match="dtype must be"):
        DiagonalGMM(2, dtype="float16").fit(X)


def test_lower_bound_is_mean_log_likelihood_before_last_m_step():
    X, *_ = make_blobs(n_samples=800)
    before = DiagonalGMM(4, max_iter=4, tol=0.0, random_state=0, dtype="float64").fit(X)
    one_less = DiagonalGMM(4, max_iter=3, tol=0.0, random_state=0, dtype="float64").fit(X)
    assert before.lower_bound_ == pytest.approx(one_less.score(X), rel=1e-12)
    assert np.all(np.diff(before.lower_bounds_) >= -1e-12)  # EM never decreases the likelihood
    assert math.isfinite(before.lower_bound_)


def test_verbose_reports_every_iteration(capsys):
    X, *_ = make_blobs(n_samples=300)
    DiagonalGMM(2, max_iter=3, tol=0.0, verbose=True, random_state=0).fit(X)
    lines = capsys.readouterr().out.splitlines()
    assert sum("mean log-likelihood" in line for line in lines) == 3


def test_tensor_requiring_grad_is_accepted():
    X, *_ = make_blobs(n_samples=300)
    tensor = torch.from_numpy(X).requires_grad_(True)
    gmm = DiagonalGMM(2, max_iter=3, random_state=0).fit(tensor)
    assert not gmm.score_samples(tensor).requires_grad
