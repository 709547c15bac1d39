"""fv.svm: LinearSVM (the same solution as liblinear, chunked float32 input, the contract) and
ValidatedLinearSVM (C chosen on a validation part, as a naive sweep chooses it)."""

from __future__ import annotations

import copy
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedShuffleSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.estimator_checks import parametrize_with_checks

from fv import svm
from fv.svm import LinearSVM, ValidatedLinearSVM, squared_hinge_objective

TIGHT = dict(tol=1e-8, max_iter=5000)  # certified relative suboptimality 1e-8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_problem(n=500, d=200, n_classes=5, separation=0.1, seed=0, dtype=np.float32):
    """Gaussian classes in d dimensions with nearby means, rows of norm about 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    X = rng.normal(size=(n_classes, d))[y] * separation + rng.normal(size=(n, d))
    return (X / np.sqrt(d)).astype(dtype), y


def naive_objective(X, y, coef, intercept, C, intercept_scaling=1.0, sample_weight=None):
    """f_k = 1/2 (|w_k|^2 + (b_k/S)^2) + C sum_i s_i max(0, 1 - y_ik (w_k.x_i + b_k))^2, loop over classes."""
    X = np.asarray(X, dtype=np.float64)
    classes = np.unique(y)
    positives = [classes[1]] if len(coef) == 1 else list(classes)
    s = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    values = []
    for w, b, positive in zip(np.asarray(coef), np.broadcast_to(intercept, (len(coef),)), positives):
        targets = np.where(y == positive, 1.0, -1.0)
        hinge = np.maximum(0.0, 1.0 - targets * (X @ w + b))
        values.append(0.5 * (w @ w + (b / intercept_scaling) ** 2) + C * np.sum(s * hinge**2))
    return np.array(values)


def liblinear(X, y, C, **kwargs):
    return LinearSVC(C=C, loss="squared_hinge", dual=False, tol=1e-10, max_iter=100_000, **kwargs).fit(X, y)


# --------------------------------------------------------------------------- against liblinear


@pytest.mark.parametrize("n_classes", [2, 5])
@pytest.mark.parametrize("C", [0.1, 1.0, 10.0])
def test_same_solution_as_linearsvc(n_classes, C):
    X, y = make_problem(n_classes=n_classes, seed=n_classes)
    ref = liblinear(X, y, C)
    ours = LinearSVM(C=C, **TIGHT).fit(X, y)

    f_ref = naive_objective(X, y, ref.coef_, ref.intercept_, C)
    f_ours = naive_objective(X, y, ours.coef_, ours.intercept_, C)
    np.testing.assert_allclose(f_ours, f_ref, rtol=1e-6)
    np.testing.assert_allclose(ours.objective_, f_ours, rtol=1e-6)
    assert np.linalg.norm(ours.coef_ - ref.coef_) <= 1e-3 * np.linalg.norm(ref.coef_)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=1e-3 * np.abs(ref.intercept_).max() + 1e-6)
    assert np.mean(ours.predict(X) == ref.predict(X)) >= 0.99
    assert ours.coef_.shape == ref.coef_.shape and ours.intercept_.shape == ref.intercept_.shape


def test_default_tolerance_is_close_to_linearsvc():
    X, y = make_problem(n_classes=4, seed=3)
    ref = liblinear(X, y, 1.0)
    ours = LinearSVM(C=1.0).fit(X, y)  # tol=1e-4: objective within 1e-4 relative, certified
    f_ref = naive_objective(X, y, ref.coef_, ref.intercept_, 1.0)
    f_ours = naive_objective(X, y, ours.coef_, ours.intercept_, 1.0)
    assert np.all(f_ours >= f_ref * (1 - 1e-9)) and np.all(f_ours <= f_ref * (1 + 1e-4))
    assert np.mean(ours.predict(X) == ref.predict(X)) >= 0.99


@pytest.mark.parametrize("dual", [False, True])
def test_same_solution_as_linearsvc_dual_and_float64(dual):
    X, y = make_problem(n_classes=3, seed=7)
    ref = LinearSVC(C=0.5, dual=dual, tol=1e-10, max_iter=200_000).fit(X, y)
    ours = LinearSVM(C=0.5, dtype="float64", **TIGHT).fit(X, y)
    np.testing.assert_allclose(
        naive_objective(X, y, ours.coef_, ours.intercept_, 0.5),
        naive_objective(X, y, ref.coef_, ref.intercept_, 0.5),
        rtol=1e-7,
    )
    assert np.linalg.norm(ours.coef_ - ref.coef_) <= 1e-4 * np.linalg.norm(ref.coef_)


@pytest.mark.parametrize("intercept_scaling", [0.1, 10.0])
def test_intercept_is_a_regularised_feature_as_in_liblinear(intercept_scaling):
    X, y = make_problem(n_classes=2, seed=11)
    X = X + 0.3  # a non-zero intercept matters
    ref = liblinear(X, y, 1.0, intercept_scaling=intercept_scaling)
    ours = LinearSVM(C=1.0, intercept_scaling=intercept_scaling, **TIGHT).fit(X, y)
    f = lambda m: naive_objective(X, y, m.coef_, m.intercept_, 1.0, intercept_scaling)  # noqa: E731
    np.testing.assert_allclose(f(ours), f(ref), rtol=1e-6)
    # the solution vector of the augmented problem, [w, b / S], agrees in its own norm
    augmented = lambda m: np.hstack([m.coef_, m.intercept_[:, None] / intercept_scaling])  # noqa: E731
    difference = np.linalg.norm(augmented(ours) - augmented(ref))
    assert difference <= 1e-3 * np.linalg.norm(augmented(ref))
    # a different scaling is a different problem: the intercept changes
    other = LinearSVM(C=1.0, intercept_scaling=1.0, **TIGHT).fit(X, y)
    assert abs(other.intercept_[0] - ours.intercept_[0]) > 1e-3


def test_without_intercept():
    X, y = make_problem(n_classes=3, seed=5)
    ref = liblinear(X, y, 1.0, fit_intercept=False)
    ours = LinearSVM(C=1.0, fit_intercept=False, **TIGHT).fit(X, y)
    np.testing.assert_array_equal(ours.intercept_, np.zeros(3))
    assert np.linalg.norm(ours.coef_ - ref.coef_) <= 1e-3 * np.linalg.norm(ref.coef_)


def test_sample_weight_as_linearsvc_and_as_repeated_rows():
    X, y = make_problem(n=300, d=50, n_classes=3, seed=2)
    weight = np.random.default_rng(0).integers(0, 4, len(y))  # zeros included
    ref = liblinear(X, y, 0.3).fit(X, y, sample_weight=weight)
    ours = LinearSVM(C=0.3, dtype="float64", **TIGHT).fit(X, y, sample_weight=weight)
    np.testing.assert_allclose(
        naive_objective(X, y, ours.coef_, ours.intercept_, 0.3, sample_weight=weight),
        naive_objective(X, y, ref.coef_, ref.intercept_, 0.3, sample_weight=weight),
        rtol=1e-7,
    )
    repeated = LinearSVM(C=0.3, dtype="float64", **TIGHT).fit(np.repeat(X, weight, 0), np.repeat(y, weight))
    np.testing.assert_allclose(ours.coef_, repeated.coef_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.intercept_, repeated.intercept_, rtol=1e-5, atol=1e-7)


def test_binary_shapes_and_sign_as_linearsvc():
    X, y = make_problem(n_classes=2, seed=1)
    ref = liblinear(X, y, 1.0)
    ours = LinearSVM(C=1.0, **TIGHT).fit(X, y)
    assert ours.coef_.shape == (1, X.shape[1]) and ours.intercept_.shape == (1,)
    scores = ours.decision_function(X)
    assert scores.shape == (len(X),) and scores.dtype == np.float64
    np.testing.assert_allclose(scores, ref.decision_function(X), atol=1e-3 * np.abs(scores).max())
    np.testing.assert_array_equal(ours.predict(X), ours.classes_[(scores > 0).astype(int)])


def test_squared_hinge_objective_matches_the_formula():
    X, y = make_problem(n=200, d=30, n_classes=4, seed=9)
    rng = np.random.default_rng(1)
    coef, intercept, weight = rng.normal(size=(4, 30)), rng.normal(size=4), rng.uniform(size=200)
    np.testing.assert_allclose(
        squared_hinge_objective(
            X, y, coef, intercept, C=0.7, intercept_scaling=2.0, sample_weight=weight, chunk_size=33
        ),
        naive_objective(X, y, coef, intercept, 0.7, 2.0, weight),
        rtol=1e-12,
    )


# --------------------------------------------------------------------------- the maths inside


def test_duality_gap_is_half_the_squared_gradient():
    """The stopping rule: P(w) - D(alpha(w)) = |grad P(w)|^2 / 2 with alpha_i = 2 C s_i slack_i."""
    rng = np.random.default_rng(4)
    n, d, C, S = 300, 40, 0.7, 2.0
    X, y, s = rng.normal(size=(n, d)), rng.integers(0, 2, n), rng.uniform(0.5, 2.0, n)
    W, v = rng.normal(size=(1, d)) * 0.1, rng.normal(size=1)
    chunks = svm._Chunks(X, 64, torch.device("cpu"), torch.float64)
    margins = torch.zeros(n, 1, dtype=torch.float64)
    grad = svm._gradient_pass(
        chunks, torch.as_tensor(y), torch.as_tensor(C * s), torch.as_tensor(W), torch.as_tensor(v), S, margins,
        refresh=True,
    )
    # naive primal and dual of the augmented problem (features [x, S], weights [w, v])
    t = 2.0 * y - 1
    Xa, wa = np.hstack([X, np.full((n, 1), S)]), np.concatenate([W[0], v])
    slack = np.maximum(0.0, 1.0 - t * (Xa @ wa))
    primal = 0.5 * wa @ wa + np.sum(C * s * slack**2)
    alpha = 2.0 * C * s * slack
    u = (alpha * t) @ Xa
    dual = alpha.sum() - 0.5 * u @ u - np.sum(alpha**2 / (4.0 * C * s))
    np.testing.assert_allclose(grad.objective.item(), primal, rtol=1e-12)
    np.testing.assert_allclose(0.5 * grad.squared_norm().item(), primal - dual, rtol=1e-10)


def test_exact_line_search_finds_the_minimum_along_the_direction():
    rng = np.random.default_rng(6)
    n, K = 400, 3
    margins = torch.as_tensor(rng.normal(size=(n, K)))
    change = torch.as_tensor(rng.normal(size=(n, K)))
    labels = torch.as_tensor(rng.integers(0, K, n))
    cost = torch.as_tensor(rng.uniform(0.1, 2.0, n))
    slope0 = torch.as_tensor([-500.0, 0.0, 5000.0])  # descent, either, ascent (no step)
    curvature0 = torch.as_tensor(rng.uniform(0.5, 2.0, K))
    targets = svm._targets(labels, K, torch.float64).numpy()

    def phi(t, k):  # the line function without its constant 1/2 |v|^2
        slack = np.maximum(0.0, 1.0 - targets[:, k] * (margins[:, k].numpy() + t * change[:, k].numpy()))
        return t * slope0[k].item() + 0.5 * t * t * curvature0[k].item() + np.sum(cost.numpy() * slack**2)

    t, decrease = svm._exact_line_search(labels, cost, margins, change, slope0, curvature0)
    assert t[0] > 0 and t[2] == 0
    grid = np.linspace(0.0, 3.0, 6_001)  # steps are searched for t >= 0
    for k in range(K):
        values = np.array([phi(s, k) for s in grid])
        assert phi(t[k].item(), k) <= values.min() + 1e-9 * abs(values.min())
        np.testing.assert_allclose(decrease[k].item(), phi(0.0, k) - phi(t[k].item(), k), rtol=1e-10)


# --------------------------------------------------------------------------- data handling


def test_memmap_gives_the_same_result_as_in_memory(tmp_path):
    X, y = make_problem(n=600, d=64, n_classes=3, seed=8)
    path = tmp_path / "X.f32"
    X.tofile(path)
    X_disk = np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)
    a = LinearSVM(C=1.0, batch_size=128).fit(X, y)
    b = LinearSVM(C=1.0, batch_size=128).fit(X_disk, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X_disk))


def test_chunked_equals_unchunked():
    X, y = make_problem(n=503, d=80, n_classes=4, seed=12)
    whole = LinearSVM(C=1.0, batch_size=10_000, **TIGHT).fit(X, y)
    chunked = LinearSVM(C=1.0, batch_size=50, **TIGHT).fit(X, y)  # 11 chunks, the last of 3 rows
    np.testing.assert_allclose(chunked.coef_, whole.coef_, rtol=1e-4, atol=1e-4 * np.abs(whole.coef_).max())
    np.testing.assert_allclose(chunked.decision_function(X), whole.decision_function(X), atol=1e-4)


def test_torch_tensor_input_same_as_numpy():
    X, y = make_problem(n=400, d=60, n_classes=3, seed=13)
    a = LinearSVM(C=1.0, batch_size=100).fit(X, y)
    b = LinearSVM(C=1.0, batch_size=100).fit(torch.from_numpy(X), torch.from_numpy(y))
    np.testing.assert_array_equal(a.coef_, b.coef_)
    scores = b.decision_function(torch.from_numpy(X))
    assert isinstance(scores, torch.Tensor) and scores.shape == (400, 3)
    np.testing.assert_allclose(scores.numpy(), a.decision_function(X), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(b.predict(torch.from_numpy(X)), a.predict(X))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("as_tensor", [False, True])
def test_cuda_same_solution_as_cpu(as_tensor):
    X, y = make_problem(n=800, d=100, n_classes=4, seed=14)
    cpu = LinearSVM(C=1.0, **TIGHT).fit(X, y)
    X_in = torch.from_numpy(X).cuda() if as_tensor else X
    gpu = LinearSVM(C=1.0, device=None if as_tensor else "cuda", **TIGHT).fit(X_in, y)
    assert np.linalg.norm(gpu.coef_ - cpu.coef_) <= 1e-4 * np.linalg.norm(cpu.coef_)
    assert np.mean(gpu.predict(X_in) == cpu.predict(X)) >= 0.99


@pytest.mark.parametrize("source_dtype", [np.float32, np.float64])
def test_float32_training_never_copies_x(tmp_path, source_dtype):
    """Peak numpy allocation during fit stays far below one copy of X (a float64 copy is 2x float32)."""
    X, y = make_problem(n=20_000, d=128, n_classes=3, seed=15, dtype=source_dtype)
    path = tmp_path / "X.bin"
    X.tofile(path)
    X_disk = np.memmap(path, dtype=source_dtype, mode="r", shape=X.shape)
    del X
    model = LinearSVM(C=1.0, batch_size=500, max_iter=3)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X_disk, y)
        model.decision_function(X_disk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    float32_copy = X_disk.shape[0] * X_disk.shape[1] * 4
    assert peak < 0.25 * float32_copy, f"peak {peak / 2**20:.1f} MiB for a {float32_copy / 2**20:.1f} MiB float32 X"


def test_float32_chunks_are_views_of_x():
    X = np.arange(60, dtype=np.float32).reshape(10, 6)
    chunks = list(svm._Chunks(X, 4, torch.device("cpu"), torch.float32))
    assert [rows for rows, _ in chunks] == [slice(0, 4), slice(4, 8), slice(8, 10)]
    for rows, x in chunks:
        assert x.data_ptr() == X[rows].ctypes.data  # shares X's memory: no copy


# --------------------------------------------------------------------------- estimator contract


def expected_failed_checks(estimator) -> dict[str, str]:
    """The scikit-learn checks each estimator is known to fail, and why."""
    if isinstance(estimator, LinearSVM):
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "float32 products at tol=1e-4 agree to about 1e-6, not the check's 1e-7; "
                "test_sample_weight_as_linearsvc_and_as_repeated_rows checks it at a tight tolerance"
            )
        }
    return {
        "check_non_transformer_estimators_n_iter": (
            "n_iter_ is a dict {C: iterations}, one count per C of the sweep, which the check cannot "
            "compare with 1; test_validated_attributes checks every count"
        )
    }


# The checks fit on 10 to 20 rows of up to 3 classes: a tenth of them holds out fewer rows than
# classes (a clear error, tested in test_validated_tiny_hold_out_is_a_clear_error), half does not.
@parametrize_with_checks(
    [
        LinearSVM(),
        ValidatedLinearSVM(validation_fraction=0.5),  # liblinear ("auto" on small data)
        ValidatedLinearSVM(validation_fraction=0.5, solver="torch"),
    ],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_pipeline_and_grid_search():
    X, y = make_problem(n=300, d=40, n_classes=3, separation=0.3, seed=16)
    X = X * 5.0 + 2.0
    pipe = Pipeline([("scale", StandardScaler()), ("svm", LinearSVM())])
    search = GridSearchCV(pipe, {"svm__C": [0.001, 0.01, 0.1]}, cv=3).fit(X, y)
    assert search.best_params_["svm__C"] in (0.001, 0.01, 0.1)
    assert isinstance(search.best_estimator_.named_steps["svm"], LinearSVM)
    assert search.best_estimator_.named_steps["svm"].coef_.shape == (3, 40)
    assert search.score(X, y) > 0.6  # three classes: chance is 1/3


def test_clone_and_get_params_round_trip():
    model = LinearSVM(C=3.0, tol=1e-6, batch_size=100, dtype="float64", intercept_scaling=5.0, verbose=0)
    params = model.get_params()
    twin = clone(model)
    assert twin.get_params() == params and twin is not model
    assert LinearSVM(**params).get_params() == params
    assert twin.set_params(C=0.5).C == 0.5 and model.C == 3.0
    LinearSVM(C=-1.0, loss="hinge", dtype="int8")  # __init__ stores, fit validates


def test_not_fitted_error():
    X, _ = make_problem(n=20, d=5)
    with pytest.raises(NotFittedError):
        LinearSVM().predict(X)
    with pytest.raises(NotFittedError):
        LinearSVM().decision_function(X)


@pytest.mark.parametrize("names", [["cat", "dog", "emu"], ["no", "yes"]])
def test_string_labels_round_trip(names):
    X, y = make_problem(n=300, d=20, n_classes=len(names), separation=0.5, seed=17)
    labels = np.array(names)[y]
    model = LinearSVM(C=1.0).fit(X, labels)
    np.testing.assert_array_equal(model.classes_, sorted(names))
    predicted = model.predict(X)
    assert predicted.dtype == labels.dtype and set(predicted) <= set(names)
    assert np.mean(predicted == labels) > 0.8


def test_deterministic_on_cpu():
    X, y = make_problem(n=300, d=50, n_classes=3, seed=18)
    a = LinearSVM(C=1.0, random_state=0).fit(X, y)
    b = LinearSVM(C=1.0, random_state=1).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_warm_start_reaches_the_cold_solution_in_fewer_iterations(n_classes):
    X, y = make_problem(n=400, d=80, n_classes=n_classes, seed=21)
    cold = LinearSVM(C=10.0, **TIGHT).fit(X, y)
    warm = LinearSVM(C=0.1, warm_start=True, **TIGHT).fit(X, y)
    warm.set_params(C=10.0).fit(X, y)
    np.testing.assert_allclose(warm.objective_, cold.objective_, rtol=1e-7)
    np.testing.assert_allclose(warm.objective_, naive_objective(X, y, warm.coef_, warm.intercept_, 10.0), rtol=1e-6)
    np.testing.assert_allclose(warm.coef_, cold.coef_, atol=1e-3 * np.abs(cold.coef_).max())
    assert warm.n_iter_ < cold.n_iter_


def test_warm_start_ignores_a_fit_on_other_classes_or_features():
    X, y = make_problem(n=300, d=40, n_classes=3, seed=22)
    cold = LinearSVM(C=1.0).fit(X, y)
    model = LinearSVM(C=1.0, warm_start=True).fit(X[:, :30], y)  # other features
    model.fit(X, y)
    np.testing.assert_array_equal(model.coef_, cold.coef_)
    model = LinearSVM(C=1.0, warm_start=True).fit(X[y < 2], y[y < 2])  # other classes
    model.fit(X, y)
    np.testing.assert_array_equal(model.coef_, cold.coef_)
    # refitting at the optimum stops at once, at the same solution
    again = clone(cold).set_params(warm_start=True).fit(X, y)
    n_iter = again.fit(X, y).n_iter_
    assert n_iter == 0
    np.testing.assert_allclose(again.coef_, cold.coef_, rtol=1e-6, atol=1e-9)


def test_convergence_warning_when_max_iter_is_too_small():
    X, y = make_problem(n=300, d=50, n_classes=3, seed=19)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        model = LinearSVM(C=10.0, max_iter=2).fit(X, y)
    assert model.n_iter_ == 2 and model.n_passes_ == 5


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda X, y: (X[:, 0], y), "Expected 2D array"),
        (lambda X, y: (np.where(np.eye(*X.shape) > 0, np.nan, X), y), "NaN"),
        (lambda X, y: (X, y[:-1]), "inconsistent numbers of samples"),
        (lambda X, y: (X, np.zeros_like(y)), "1 class"),
        (lambda X, y: (torch.from_numpy(X[:, 0]), y), "2-D tensor"),
        (lambda X, y: (torch.from_numpy(X).fill_diagonal_(float("inf")), y), "NaN or infinity"),
        (lambda X, y: (torch.from_numpy(X), y[:-1]), "one label per row"),
        (lambda X, y: (X, None), "requires y"),
    ],
)
def test_invalid_input_is_named(make_input, message):
    X, y = make_problem(n=40, d=6, n_classes=3)
    with pytest.raises(ValueError, match=message):
        LinearSVM().fit(*make_input(X, y))


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(C=0.0), "C must be a positive"),
        (dict(C=float("nan")), "C must be a positive"),
        (dict(loss="hinge"), "LinearSVC\\(loss='hinge'\\)"),
        (dict(intercept_scaling=-1.0), "intercept_scaling must be a positive"),
        (dict(max_iter=0), "max_iter must be an integer >= 1"),
        (dict(batch_size=2.5), "batch_size must be an integer"),
        (dict(dtype="float16"), "dtype must be 'float32' or 'float64'"),
        (dict(tol=-1.0), "tol must be a non-negative"),
    ],
)
def test_invalid_parameters_are_named(params, message):
    X, y = make_problem(n=40, d=6, n_classes=3)
    with pytest.raises(ValueError, match=message):
        LinearSVM(**params).fit(X, y)


def test_invalid_sample_weight_and_feature_count():
    X, y = make_problem(n=40, d=6, n_classes=3)
    with pytest.raises(ValueError, match="one weight per row"):
        LinearSVM().fit(X, y, sample_weight=np.ones(39))
    with pytest.raises(ValueError, match="non-negative"):
        LinearSVM().fit(X, y, sample_weight=-np.ones(40))
    model = LinearSVM().fit(X, y)
    with pytest.raises(ValueError, match="X has 5 features, but LinearSVM is expecting 6"):
        model.predict(X[:, :5])
    with pytest.raises(ValueError, match="X has 5 features, but LinearSVM is expecting 6"):
        model.predict(torch.from_numpy(X[:, :5]))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # two EM steps on purpose
def test_tensor_checks_are_shared_with_the_gmm():
    from fv import DiagonalGMM

    X, y = make_problem(n=40, d=6, n_classes=3, dtype=np.float64)
    for model, fit in ((LinearSVM(), lambda m, t: m.fit(t, y)), (DiagonalGMM(2, max_iter=2), lambda m, t: m.fit(t))):
        with pytest.raises(ValueError, match="Complex data not supported"):
            fit(model, torch.from_numpy(X).to(torch.complex64))
        with pytest.raises(ValueError, match="0 features"):
            fit(model, torch.zeros(40, 0))
        fitted = fit(model, torch.from_numpy(np.round(10 * X)).long())  # integers become float64
        assert fitted.n_features_in_ == 6


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_one_clear_error_for_every_estimator():
    from fv import DiagonalGMM

    X, y = make_problem(n=40, d=6, n_classes=3, dtype=np.float64)
    for model, fit in ((LinearSVM(device="cuda"), lambda m: m.fit(X, y)),
                       (ValidatedLinearSVM(device="cuda"), lambda m: m.fit(X, y)),
                       (DiagonalGMM(2, device="cuda:0"), lambda m: m.fit(X))):
        with pytest.raises(ValueError, match=r"device='cuda(:0)?' was requested but CUDA is not available"):
            fit(model)


# --------------------------------------------------------------------------- ValidatedLinearSVM


def naive_sweep(X_fit, y_fit, X_val, y_val, Cs, tol, seed):
    """The C search of the experiments, written out: one warm-started LinearSVM, C increasing, a copy
    of each model whose validation accuracy beats the best so far strictly (smallest C on ties)."""
    model = LinearSVM(tol=tol, max_iter=1000, warm_start=True, random_state=seed, device=None)
    best, scores, iterations = None, {}, {}
    for C in sorted(Cs):
        model.set_params(C=C).fit(X_fit, y_fit)
        accuracy = float(np.mean(model.predict(X_val) == y_val))
        scores[C], iterations[C] = accuracy, model.n_iter_
        if best is None or accuracy > best[0]:
            best = (accuracy, C, copy.deepcopy(model))
    return best, scores, iterations


def on_disk(tmp_path, name, X):
    """X written to a file and opened as a read-only float32 memmap (as the experiments pass it)."""
    path = tmp_path / name
    X.tofile(path)
    return np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)


@pytest.mark.parametrize("separation", [0.05, 3.0])  # noisy: C matters; separable: every C ties at 1.0
def test_validated_sweep_is_the_naive_sweep_exactly(tmp_path, separation):
    X, y = make_problem(n=500, d=60, n_classes=4, separation=separation, seed=31)
    X_fit, X_val = on_disk(tmp_path, "fit.f32", X[:400]), on_disk(tmp_path, "val.f32", X[400:])
    Cs = (10.0, 0.01, 1.0, 0.1)
    (_, best_C, best), scores, iterations = naive_sweep(X_fit, y[:400], X_val, y[400:], Cs, tol=1e-3, seed=7)
    model = ValidatedLinearSVM(Cs=Cs, refit=False, solver="torch", tol=1e-3, random_state=7)
    model.fit(X_fit, y[:400], validation=(X_val, y[400:]))
    assert model.best_C_ == best_C and model.solver_ == "torch"
    assert list(model.validation_scores_.items()) == list(scores.items())  # same Cs, order and accuracies
    assert model.n_iter_ == iterations
    np.testing.assert_array_equal(model.estimator_.coef_, best.coef_)
    np.testing.assert_array_equal(model.estimator_.intercept_, best.intercept_)
    np.testing.assert_array_equal(model.predict(X_val), best.predict(X_val))
    if separation > 1:
        assert set(scores.values()) == {1.0} and model.best_C_ == min(Cs)  # the tie rule was exercised
    else:
        assert len(set(scores.values())) > 1  # the choice was a real one


def test_validated_attributes():
    X, y = make_problem(n=300, d=30, n_classes=3, separation=0.3, seed=32)
    model = ValidatedLinearSVM(Cs=(1.0, 0.1, 1.0), solver="torch").fit(X[:200], y[:200], validation=(X[200:], y[200:]))
    assert list(model.validation_scores_) == list(model.fit_seconds_) == list(model.n_iter_) == [0.1, 1.0]
    assert all(0.0 <= score <= 1.0 for score in model.validation_scores_.values())
    assert all(seconds >= 0.0 for seconds in model.fit_seconds_.values()) and model.refit_seconds_ >= 0.0
    assert all(isinstance(n, int) and n >= 1 for n in model.n_iter_.values())
    assert model.n_features_in_ == 30 and list(model.classes_) == [0, 1, 2]
    assert isinstance(model.estimator_, LinearSVM) and model.estimator_.C == model.best_C_
    assert model.best_C_ == max(model.validation_scores_, key=lambda C: (model.validation_scores_[C], -C))
    model.set_params(refit=False).fit(X[:200], y[:200], validation=(X[200:], y[200:]))
    assert not hasattr(model, "refit_seconds_")  # no refit ran this time


def test_validated_refit_with_validation_trains_on_all_rows_from_the_chosen_solution():
    X, y = make_problem(n=400, d=50, n_classes=3, separation=0.2, seed=33)
    model = ValidatedLinearSVM(Cs=(0.01, 1.0, 100.0), solver="torch", tol=1e-7, max_iter=5000)
    model.fit(X[:300], y[:300], validation=(X[300:], y[300:]))
    cold = LinearSVM(C=model.best_C_, tol=1e-7, max_iter=5000).fit(X, y)  # all 400 rows
    np.testing.assert_allclose(model.estimator_.objective_, cold.objective_, rtol=1e-6)
    np.testing.assert_allclose(model.estimator_.objective_, naive_objective(
        X, y, model.estimator_.coef_, model.estimator_.intercept_, model.best_C_), rtol=1e-6)
    assert model.estimator_.n_iter_ < cold.n_iter_  # warm-started from the chosen C's solution


def test_validated_liblinear_refit_and_hold_out_as_linearsvc():
    X, y = make_problem(n=300, d=20, n_classes=3, separation=0.3, seed=34)
    given = ValidatedLinearSVM(Cs=(0.01, 1.0), solver="liblinear").fit(X[:200], y[:200], validation=(X[200:], y[200:]))
    reference = LinearSVC(C=given.best_C_, loss="squared_hinge", dual="auto", random_state=0).fit(X, y)
    np.testing.assert_array_equal(given.estimator_.coef_, reference.coef_)  # refit on X and X_val
    held_out = ValidatedLinearSVM(Cs=(0.01, 1.0), solver="liblinear", refit=False, validation_fraction=0.25).fit(X, y)
    fit_rows, validation_rows = next(StratifiedShuffleSplit(1, test_size=0.25, random_state=0).split(X, y))
    fit_rows, validation_rows = np.sort(fit_rows), np.sort(validation_rows)  # in the order of X
    for C in (0.01, 1.0):
        svc = LinearSVC(C=C, loss="squared_hinge", dual="auto", random_state=0).fit(X[fit_rows], y[fit_rows])
        assert held_out.validation_scores_[C] == np.mean(svc.predict(X[validation_rows]) == y[validation_rows])
        if C == held_out.best_C_:
            np.testing.assert_array_equal(held_out.estimator_.coef_, svc.coef_)  # kept, not refitted


@pytest.mark.parametrize("solver", ["liblinear", "torch"])
def test_validated_single_c_holds_nothing_out(solver):
    X, y = make_problem(n=200, d=20, n_classes=3, seed=35)
    model = ValidatedLinearSVM(Cs=(0.5,), solver=solver).fit(X, y)
    plain = (LinearSVC(C=0.5, dual="auto", random_state=0) if solver == "liblinear" else LinearSVM(C=0.5)).fit(X, y)
    np.testing.assert_array_equal(model.estimator_.coef_, plain.coef_)  # trained on every row, once
    assert model.best_C_ == 0.5 and model.validation_scores_ == {} and list(model.fit_seconds_) == [0.5]
    assert not hasattr(model, "refit_seconds_")
    scored = ValidatedLinearSVM(Cs=(0.5,), solver=solver, refit=False).fit(X[:150], y[:150], validation=(X[150:], y[150:]))
    assert scored.validation_scores_ == {0.5: float(np.mean(scored.predict(X[150:]) == y[150:]))}


def test_validated_tensors_lists_and_arrays_agree():
    X, y = make_problem(n=300, d=20, n_classes=3, separation=0.3, seed=36)
    arrays = ValidatedLinearSVM(Cs=(0.1, 1.0), solver="torch").fit(X[:200], y[:200], validation=(X[200:], y[200:]))
    tensors = ValidatedLinearSVM(Cs=(0.1, 1.0), solver="torch", device="cpu").fit(
        torch.from_numpy(X[:200]), torch.from_numpy(y[:200]), validation=(torch.from_numpy(X[200:]), y[200:]))
    assert tensors.validation_scores_ == arrays.validation_scores_
    np.testing.assert_allclose(tensors.estimator_.coef_, arrays.estimator_.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(tensors.predict(torch.from_numpy(X)), arrays.predict(X))
    held_out = ValidatedLinearSVM(Cs=(0.1, 1.0), solver="torch", validation_fraction=0.2)
    from_tensor = held_out.fit(torch.from_numpy(X), y).estimator_.coef_
    np.testing.assert_array_equal(from_tensor, held_out.fit(X, y).estimator_.coef_)
    float64 = ValidatedLinearSVM(Cs=(0.1, 1.0), solver="liblinear").fit(X.astype(np.float64), y)
    lists = ValidatedLinearSVM(Cs=(0.1, 1.0), solver="liblinear").fit(X.astype(np.float64).tolist(), y.tolist())
    on_host = ValidatedLinearSVM(Cs=(0.1, 1.0), solver="liblinear").fit(torch.from_numpy(X.astype(np.float64)), y)
    np.testing.assert_array_equal(lists.estimator_.coef_, float64.estimator_.coef_)
    np.testing.assert_array_equal(on_host.estimator_.coef_, float64.estimator_.coef_)
    np.testing.assert_array_equal(on_host.predict(torch.from_numpy(X)), float64.predict(X))


def test_validated_string_labels():
    X, y = make_problem(n=300, d=20, n_classes=3, separation=0.5, seed=37)
    labels = np.array(["cat", "dog", "emu"])[y]
    model = ValidatedLinearSVM(Cs=(0.1, 1.0), solver="torch").fit(X[:200], labels[:200], validation=(X[200:], labels[200:]))
    np.testing.assert_array_equal(model.classes_, ["cat", "dog", "emu"])
    assert model.score(X[200:], labels[200:]) > 0.8


def test_validated_sweep_never_copies_a_memmapped_x(tmp_path, monkeypatch):
    """refit=False with a given validation part reads the float32 memmaps in place: the numpy
    allocations of fit and predict (input checks and float64 score chunks included) stay far below
    one copy of X. Chunks of 500 rows, as the chunk budget gives them for a larger X."""
    monkeypatch.setattr(svm, "chunk_rows", lambda row_bytes, device: 500)
    X, y = make_problem(n=20_000, d=128, n_classes=3, seed=38)
    X_fit, X_val = on_disk(tmp_path, "fit.f32", X[:18_000]), on_disk(tmp_path, "val.f32", X[18_000:])
    del X
    model = ValidatedLinearSVM(Cs=(0.1, 1.0), refit=False, solver="torch", max_iter=3)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X_fit, y[:18_000], validation=(X_val, y[18_000:]))
        model.predict(X_fit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    float32_copy = X_fit.nbytes
    assert peak < 0.25 * float32_copy, f"peak {peak / 2**20:.1f} MiB for a {float32_copy / 2**20:.1f} MiB float32 X"


def test_finiteness_is_checked_in_chunks_with_the_count_and_first_row(tmp_path, monkeypatch):
    X = np.ones((50, 4), np.float32)
    X[17, 2], X[17, 3], X[40, 0] = np.nan, np.inf, -np.inf
    monkeypatch.setattr(svm, "chunk_rows", lambda row_bytes, device: 8)  # 7 chunks, two of them bad
    with pytest.raises(ValueError, match=r"contains 3 NaN or infinite value\(s\), the first in row 17"):
        svm._check_finite_rows(on_disk(tmp_path, "X.f32", X))
    large = np.full((50, 4), 3e38, np.float32)  # finite, though the chunk sums overflow
    svm._check_finite_rows(large)


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda X, y: ((X[:, 0], y), {}), "Expected 2D array"),
        (lambda X, y: ((np.where(np.eye(*X.shape) > 0, np.nan, X), y), {}), "6 NaN or infinite"),
        (lambda X, y: ((X, y[:-1]), {}), "inconsistent numbers of samples"),
        (lambda X, y: ((X, np.zeros_like(y)), {}), "1 class"),
        (lambda X, y: ((X, None), {}), "requires y"),
        (lambda X, y: ((torch.from_numpy(X).fill_diagonal_(float("nan")), y), {}), "NaN or infinity"),
        (lambda X, y: ((X, y), {"validation": X}), "a pair \\(X_val, y_val\\)"),
        (lambda X, y: ((X, y), {"validation": (X[:, :5], y)}), "validation.*X has 5 features.*expecting 6"),
        (lambda X, y: ((X, y), {"validation": (X, y[:-1])}), "validation.*inconsistent numbers of samples"),
        (lambda X, y: ((X, y), {"validation": (np.full_like(X, np.inf), y)}), "validation.*infinite"),
        (lambda X, y: ((X, y), {"validation": (X[:3], [0, 1, 7])}), "validation.*1 label\\(s\\) absent from y.*\\[7\\]"),
        (lambda X, y: ((X, y), {"validation": (torch.from_numpy(X[:, :5]), y)}), "validation.*5 features"),
    ],
)
def test_validated_invalid_input_is_named(make_input, message):
    X, y = make_problem(n=40, d=6, n_classes=3)
    args, kwargs = make_input(X, y)
    with pytest.raises(ValueError, match=message):
        ValidatedLinearSVM(Cs=(0.1, 1.0), validation_fraction=0.5).fit(*args, **kwargs)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(Cs=()), "Cs must hold at least one"),
        (dict(Cs=1.0), "Cs must be a sequence"),
        (dict(Cs=(1.0, -1.0)), "every C in Cs must be a positive"),
        (dict(Cs=(1.0, float("inf"))), "every C in Cs must be a positive"),
        (dict(validation_fraction=0.0), "validation_fraction must be a number between 0 and 1"),
        (dict(validation_fraction=1.5), "validation_fraction must be a number between 0 and 1"),
        (dict(refit="yes"), "refit must be True or False"),
        (dict(solver="sgd"), "solver must be 'auto', 'liblinear' or 'torch'"),
        (dict(max_iter=0), "max_iter must be an integer >= 1"),
        (dict(tol=-1.0), "tol must be a non-negative"),
        (dict(liblinear_max_bytes=-1), "liblinear_max_bytes must be a non-negative"),
        (dict(device="tpu"), "device='tpu' is not a device"),
    ],
)
def test_validated_invalid_parameters_are_named(params, message):
    X, y = make_problem(n=40, d=6, n_classes=3)
    with pytest.raises(ValueError, match=message):
        ValidatedLinearSVM(**params).fit(X, y)


def test_validated_tiny_hold_out_is_a_clear_error():
    X, y = make_problem(n=20, d=6, n_classes=3)
    with pytest.raises(ValueError, match="Cannot hold out a stratified validation_fraction=0.1 of 20 rows of 3 classes"):
        ValidatedLinearSVM().fit(X, y)


def test_validated_auto_solver_counts_the_validation_rows():
    X, y = make_problem(n=60, d=10, n_classes=3)
    budget = 60 * 10 * 8  # bytes of a float64 copy of the 60 rows
    assert ValidatedLinearSVM(Cs=(1.0,), liblinear_max_bytes=budget).fit(X, y).solver_ == "liblinear"
    model = ValidatedLinearSVM(Cs=(1.0,), liblinear_max_bytes=budget - 1)
    assert model.fit(X, y).solver_ == "torch"
    assert ValidatedLinearSVM(Cs=(1.0,), liblinear_max_bytes=budget).fit(
        X[:40], y[:40], validation=(X[40:], y[40:])).solver_ == "liblinear"
    assert ValidatedLinearSVM(Cs=(1.0,), liblinear_max_bytes=budget - 1).fit(
        X[:40], y[:40], validation=(X[40:], y[40:])).solver_ == "torch"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("as_tensor", [False, True])
def test_validated_cuda_same_choice_as_cpu(as_tensor):
    X, y = make_problem(n=800, d=100, n_classes=4, separation=0.1, seed=39)
    cpu = ValidatedLinearSVM(Cs=(0.01, 1.0), solver="torch", **TIGHT).fit(X[:600], y[:600], validation=(X[600:], y[600:]))
    X_in = torch.from_numpy(X).cuda() if as_tensor else X
    gpu = ValidatedLinearSVM(Cs=(0.01, 1.0), solver="torch", device=None if as_tensor else "cuda", **TIGHT)
    gpu.fit(X_in[:600], y[:600], validation=(X_in[600:], y[600:]))
    assert set(gpu.validation_scores_) == set(cpu.validation_scores_)
    for C, score in cpu.validation_scores_.items():
        assert abs(gpu.validation_scores_[C] - score) <= 2 / 200  # a row or two may flip near the boundary
    assert np.linalg.norm(gpu.estimator_.coef_ - cpu.estimator_.coef_) <= 1e-4 * np.linalg.norm(cpu.estimator_.coef_)
    assert np.mean(np.asarray(gpu.predict(X_in)) == cpu.predict(X)) >= 0.99
