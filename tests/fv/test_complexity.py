"""fv.complexity: descriptor counts against fv.phow, sizes against fitted arrays, the multiply-add terms
against the formula the experiment used before the library owned it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.svm import LinearSVC

import fv
from fv import FisherVectorEncoder, phow

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # tiny fits

#: The smoke preset of experiments/fv_vs_alexnet.py on 28 x 28 images (the small-image settings'
#: scale and pyramid, the preset's sizes, step, PCA and GMM).
SMOKE = dict(scale=2.0, sizes=(4, 8), step=4, pca_components=16, n_components=8, pyramid=((1, 1), (2, 2)),
             n_fit_descriptors=3000, gmm_max_iter=10, random_state=0)


def gratings(n, size=28, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.empty((n, size, size), np.uint8)
    for i in range(n):
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 9)
        im = 0.5 + 0.4 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
        images[i] = np.clip((im + rng.normal(0, 0.05, im.shape)) * 255, 0, 255).astype(np.uint8)
    return images


@pytest.fixture(scope="module")
def images():
    return gratings(30)


@pytest.fixture(scope="module")
def smoke(images):
    return FisherVectorEncoder(**SMOKE).fit(images)


def fv_mult_adds(n_descriptors, descriptor_dim, pca_dim, n_gauss, levels, n_classes, fv_dim, dsift_pixels, sizes):
    """The experiment's cost formula as it stood before ``fv.complexity`` (experiments/fv_vs_alexnet.py)."""
    N, K, D = n_descriptors, n_gauss, pca_dim
    sift = sum((2 * (2 * math.ceil(4 * s / 6) + 1) + 12 + 16 * s) * dsift_pixels for s in sizes) + 512 * N
    return int(sift + N * descriptor_dim * D + 2 * N * K * D + levels * 2 * N * K * D + n_classes * fv_dim)


@pytest.mark.parametrize("regions", ["all", "whole"])
def test_the_experiments_figures_are_reproduced(smoke, images, regions):
    n_classes = 10
    # as the experiment computed them: phow on a blank image, the colour rule, the fitted shapes
    side = tuple(int(round(s * SMOKE["scale"])) for s in images.shape[1:3])
    frames, _ = phow(np.zeros(side, np.float32), sizes=SMOKE["sizes"], step=SMOKE["step"])
    K, D = smoke.n_components, smoke.pca_.n_components_
    levels = len(SMOKE["pyramid"]) if regions == "all" else 1
    dim = smoke.n_features_out_ if regions == "all" else 2 * K * D
    expected = fv_mult_adds(len(frames), 128, D, K, levels, n_classes, dim, side[0] * side[1], SMOKE["sizes"])
    features = np.random.default_rng(0).normal(size=(2 * n_classes, dim))
    svm = LinearSVC(max_iter=50).fit(features, np.arange(2 * n_classes) % n_classes)
    n_params = (smoke.pca_.components_.size + smoke.pca_.mean_.size + K * (2 * D + 1)
                + svm.coef_.size + svm.intercept_.size)

    cost = fv.complexity(smoke, images.shape[1:], n_classes=n_classes, regions=regions)
    assert cost["mult_adds"] == expected == sum(cost["mult_adds_by_stage"].values())
    assert cost["params"] == n_params == sum(cost["params_by_stage"].values())
    assert cost["descriptors"] == len(frames) and cost["feature_dim"] == dim
    assert cost["feature_dim"] == smoke.transform(images[:2], regions=regions).shape[1]
    assert cost["n_regions"] == (5 if regions == "all" else 1)


@pytest.mark.parametrize("settings, shape", [
    (dict(sizes=(4, 8), step=4, scale=2.0), (28, 28)),
    (dict(sizes=(4, 6, 8, 10), step=3), (47, 43)),
    (dict(sizes=(3, 6), step=2, scale=1.5, color="opponent"), (32, 32, 3)),  # odd and even sizes
    (dict(sizes=(5,), step=7, scale=0.7), (40, 31)),
    (dict(sizes=(2, 3), step=5), (13, 61)),
])
def test_the_descriptor_count_is_what_phow_computes(settings, shape):
    encoder = FisherVectorEncoder(**settings)
    side = tuple(int(round(s * encoder.scale)) for s in shape[:2]) + tuple(shape[2:])
    frames, descriptors = phow(np.zeros(side, np.float32), sizes=encoder.sizes, step=encoder.step,
                               color=encoder.color)
    cost = fv.complexity(encoder, shape)
    assert cost["descriptors"] == len(frames)
    assert cost["descriptor_dim"] == descriptors.shape[1]


def test_images_too_small_for_a_scale_are_refused_as_phow_refuses_them():
    encoder = FisherVectorEncoder(sizes=(4, 6, 8, 10), step=3)  # bin size 6 sits 6 px in: no room in 23 px
    with pytest.raises(ValueError, match="no room"):
        phow(np.zeros((37, 23), np.float32), sizes=encoder.sizes, step=encoder.step)
    with pytest.raises(ValueError, match="no room for a descriptor of bin size 6"):
        fv.complexity(encoder, (37, 23))


def test_sizes_are_those_of_the_fitted_arrays_and_of_an_svm(images):
    encoder = FisherVectorEncoder(**{**SMOKE, "whiten": True, "pyramid": None, "color": "rgb"})
    rgb = np.repeat(images[:, :, :, None], 3, axis=3)
    unfitted = fv.complexity(encoder, rgb.shape[1:])
    encoder.fit(rgb)
    cost = fv.complexity(encoder, rgb.shape[1:])
    assert cost == unfitted  # the same from the parameters as from the fitted arrays
    pca, gmm = encoder.pca_, encoder.gmm_
    assert cost["params_by_stage"] == {
        "pca": pca.components_.size + pca.mean_.size + pca.explained_variance_.size,  # whitening scales
        "gmm": gmm.means_.size + gmm.covariances_.size + gmm.weights_.size, "svm": 0}
    assert cost["mult_adds_by_stage"]["svm"] == 0 and cost["feature_dim"] == encoder.n_features_out_
    features = np.random.default_rng(0).normal(size=(12, cost["feature_dim"]))
    for n_classes in (2, 3):  # one-vs-rest: one problem for two classes
        svm = LinearSVC(max_iter=50).fit(features, np.arange(12) % n_classes)
        with_svm = fv.complexity(encoder, rgb.shape[1:], n_classes)
        assert with_svm["params_by_stage"]["svm"] == svm.coef_.size + svm.intercept_.size
        assert with_svm["mult_adds_by_stage"]["svm"] == svm.coef_.size


def test_the_terms_by_hand():
    # 10 x 10 gray image, bin size 2 at step 3: outer bin centres 3 * 2 apart, so 9 - 6 = 3 pixels of
    # play, 3 // 3 + 1 = 2 positions per axis, 4 descriptors; magnif 4: 2 ceil(4 * 2 / 4) + 1 = 5 taps
    encoder = FisherVectorEncoder(sizes=(2,), step=3, magnif=4.0, pca_components=4, n_components=2,
                                  pyramid=((1, 1), (1, 2)))
    cost = fv.complexity(encoder, (10, 10), n_classes=3)
    N, F, D, K = 4, 128, 4, 2
    assert cost["descriptors"] == N and cost["n_regions"] == 3 and cost["feature_dim"] == 3 * 2 * K * D
    assert cost["mult_adds_by_stage"] == {
        "dense_sift": (2 * 5 + 12 + 16 * 2) * 100 + 4 * F * N, "pca": N * F * D, "gmm": 2 * N * K * D,
        "moments": 2 * 2 * N * K * D, "svm": 3 * 3 * 2 * K * D}
    assert cost["params_by_stage"] == {"pca": D * F + F, "gmm": K * (2 * D + 1), "svm": 3 * (3 * 2 * K * D + 1)}


def test_errors_are_clear():
    encoder = FisherVectorEncoder()
    with pytest.raises(ValueError, match="regions must be 'all'"):
        fv.complexity(encoder, (28, 28), regions="1x1")
    with pytest.raises(ValueError, match="n_classes must be at least 2"):
        fv.complexity(encoder, (28, 28), n_classes=1)
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W\)"):
        fv.complexity(encoder, (10, 28, 28, 3))
    with pytest.raises(TypeError, match="must be a FisherVectorEncoder"):
        fv.complexity("encoder", (28, 28))
