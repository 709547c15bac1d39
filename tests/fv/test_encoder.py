"""FisherVectorEncoder, ValidatedLinearSVM and the pipeline: composition, parallelism, layout, saving,
contract."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError, SkipTestWarning
from sklearn.model_selection import GridSearchCV
from sklearn.utils import estimator_checks, get_tags
from sklearn.utils.estimator_checks import estimator_checks_generator, parametrize_with_checks

from fv.dsift import phow
from fv.encoder import (SAVE_FORMAT_VERSION, FisherVectorEncoder, PyramidRegion, ValidatedLinearSVM,
                        encode_to_file, make_pipeline, root_sift)
from fv.fisher import fisher_vector, spatial_pyramid_fisher_vector
from fv.svm import LinearSVM

SMALL = dict(sizes=(4, 6), step=4, pca_components=8, n_components=4, gmm_max_iter=20, n_fit_descriptors=3000,
             batch_size=7, random_state=0)


def stripes(n, size=32, seed=0):
    """Noisy images of horizontal (label 0) or vertical (label 1) stripes of random period and phase."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    yy, xx = np.mgrid[:size, :size]
    images = np.empty((n, size, size), np.uint8)
    for i, lab in enumerate(labels):
        period, phase = rng.uniform(4, 9), rng.uniform(0, 2 * np.pi)
        coord = yy if lab == 0 else xx
        im = 0.5 + 0.4 * np.sin(2 * np.pi * coord / period + phase) + rng.normal(0, 0.05, (size, size))
        images[i] = np.clip(im * 255, 0, 255).astype(np.uint8)
    return images, labels


@pytest.fixture(scope="module")
def data():
    return stripes(40)


@pytest.fixture(scope="module")
def fitted(data):
    return FisherVectorEncoder(**SMALL).fit(data[0])


def test_root_sift_against_a_loop():
    rng = np.random.default_rng(0)
    d = rng.random((5, 128)).astype(np.float32)
    d[2] = 0
    out = root_sift(d)
    for i in range(5):
        s = d[i].sum()
        expected = np.sqrt(d[i] / s) if s > 0 else np.zeros(128)
        np.testing.assert_allclose(out[i], expected, rtol=1e-6)
    assert out.dtype == np.float32
    np.testing.assert_allclose((out[[0, 1, 3, 4]] ** 2).sum(1), 1, rtol=1e-5)  # Hellinger: unit L2
    import torch

    np.testing.assert_allclose(root_sift(torch.from_numpy(d)).numpy(), out, rtol=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        root_sift(-d)


def test_transform_is_the_composition_of_the_single_image_functions(data, fitted):
    images = data[0][:3]
    fvs = fitted.transform(images)
    pca, gmm = fitted.pca_, fitted.gmm_
    for i, im in enumerate(images):
        frames, desc = phow(im.astype(np.float32) / 255, sizes=(4, 6), step=4)
        keep = frames[:, 2] >= fitted.contrast_threshold
        proj = (root_sift(desc[keep]) - pca.mean_) @ pca.components_.T
        expected = spatial_pyramid_fisher_vector(proj, frames[keep], im.shape, gmm)
        np.testing.assert_allclose(fvs[i], expected, atol=2e-4)  # float32 path vs float64
    assert fvs.shape == (3, 8 * 2 * 4 * 8) == (3, fitted.n_features_out_)
    np.testing.assert_allclose(np.linalg.norm(fvs, axis=1), 1, rtol=1e-5)


def test_no_pyramid_gives_plain_fisher_vectors(data):
    enc = FisherVectorEncoder(**{**SMALL, "pyramid": None}).fit(data[0])
    fv0 = enc.transform(data[0][:1])[0]
    frames, desc = phow(data[0][0].astype(np.float32) / 255, sizes=(4, 6), step=4)
    keep = frames[:, 2] >= enc.contrast_threshold
    proj = (root_sift(desc[keep]) - enc.pca_.mean_) @ enc.pca_.components_.T
    np.testing.assert_allclose(fv0, fisher_vector(proj, enc.gmm_), atol=2e-4)


def test_parallel_and_memmap_outputs_equal_serial(data, fitted, tmp_path):
    serial = fitted.transform(data[0])
    for backend in ("loky", "threading", "auto"):
        parallel = clone(fitted).set_params(n_jobs=2, backend=backend)
        parallel.pca_, parallel.gmm_, parallel.n_features_out_ = fitted.pca_, fitted.gmm_, fitted.n_features_out_
        np.testing.assert_array_equal(parallel.transform(data[0]), serial)
    on_disk = encode_to_file(fitted, data[0], tmp_path / "fv.npy")
    assert isinstance(on_disk, np.memmap) and not on_disk.flags.writeable
    np.testing.assert_array_equal(on_disk, serial)
    assert [p.name for p in tmp_path.iterdir()] == ["fv.npy"]


def _thread_counts():
    from threadpoolctl import threadpool_info

    return torch.get_num_threads(), {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_parallel_tasks_run_with_one_torch_and_one_blas_thread(backend):
    enc = FisherVectorEncoder(n_jobs=2, backend=backend)
    for torch_threads, blas_threads in enc._map(_thread_counts, [()] * 4, 4, "test"):
        assert torch_threads == 1
        assert blas_threads <= {1}  # empty where numpy has no BLAS that threadpoolctl sees


def test_auto_backend_is_threads_for_two_workers_and_processes_beyond():
    assert FisherVectorEncoder(n_jobs=1)._backend() == "threading"
    assert FisherVectorEncoder(n_jobs=2)._backend() == "threading"
    assert FisherVectorEncoder(n_jobs=3)._backend() == "loky"
    assert FisherVectorEncoder(n_jobs=3, backend="threading")._backend() == "threading"
    with pytest.raises(ValueError, match="backend must be one of"):
        list(FisherVectorEncoder(n_jobs=2, backend="dask-ish")._map(_thread_counts, iter(()), 0, "test"))


def test_interrupted_encoding_leaves_no_file(data, fitted, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(FisherVectorEncoder, "transform", fail)
    with pytest.raises(KeyboardInterrupt):
        encode_to_file(fitted, data[0], tmp_path / "fv.npy")
    assert list(tmp_path.iterdir()) == []


def test_fit_is_deterministic_and_parallel_or_other_chunks_agree(data, fitted):
    for other in ({"n_jobs": 2}, {"batch_size": 13}, {"batch_size": None}):
        again = FisherVectorEncoder(**{**SMALL, **other}).fit(data[0])
        np.testing.assert_allclose(again.gmm_.means_, fitted.gmm_.means_, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(again.pca_.components_, fitted.pca_.components_, rtol=1e-5, atol=1e-6)
    different = FisherVectorEncoder(**{**SMALL, "random_state": 1}).fit(data[0])
    assert np.abs(different.gmm_.means_ - fitted.gmm_.means_).max() > 1e-3


def _on_cpu_as_on_a_gpu(monkeypatch):
    """Route the encoder through its GPU chain (one process, torch all the way) with the CPU as the device."""
    monkeypatch.setattr(FisherVectorEncoder, "_device", lambda self: torch.device("cpu"))


def flat_patches(images):
    """Images with flat (low-contrast) parts, whose descriptors are dropped: the left in odd images,
    the top in every fourth, the whole of the tenth."""
    out = images.copy()
    out[1::2, :, :22] = 128
    out[::4, :22, :] = 90
    out[9] = 30
    return out


@pytest.mark.parametrize("scale", [1.0, 1.5])
def test_device_chain_gives_the_cpu_workers_vectors(data, monkeypatch, scale):
    gray = flat_patches(data[0])
    rgb = np.repeat(gray[:, :, :, None], 3, axis=3)
    for images, color in ((gray, "gray"), (rgb, "opponent")):
        params = {**SMALL, "scale": scale, "color": color}
        cpu = FisherVectorEncoder(**params).fit(images)
        expected = cpu.transform(images)
        with monkeypatch.context() as m:
            _on_cpu_as_on_a_gpu(m)
            chain = FisherVectorEncoder(**{**params, "batch_size": None}).fit(images)  # other chunks
            # the same descriptors were sampled: PCA and GMM agree to float32 rounding
            np.testing.assert_allclose(chain.pca_.components_, cpu.pca_.components_, atol=1e-4)
            np.testing.assert_allclose(chain.gmm_.means_, cpu.gmm_.means_, rtol=1e-3, atol=1e-4)
            chain.pca_, chain.gmm_ = cpu.pca_, cpu.gmm_
            got = chain.transform(images)
        assert got.dtype == np.float32 and got.shape == expected.shape
        # both are float32 computations of one float64 value, compared before the square root of the
        # improved vector (which magnifies the rounding of values near zero): this toy GMM has
        # variances down to 4e-5, so float32 is good to about 4e-5 there
        exact = _unpowered(_float64_vectors(cpu, images))
        np.testing.assert_allclose(_unpowered(expected), exact, atol=1e-4)
        np.testing.assert_allclose(_unpowered(got), exact, atol=1e-4)


def _unpowered(fvs):
    """Improved Fisher vectors (alpha = 1/2) with the signed square root undone."""
    return fvs * np.abs(fvs)


def _float64_vectors(enc, images):
    from fv.encoder import _local_features
    from fv.fisher import spatial_pyramid_fisher_vectors

    descs, frames, shape = _local_features(images, enc._params())
    projected = [(d.astype(np.float64) - enc.pca_.mean_) @ enc.pca_.components_.T for d in descs]
    return spatial_pyramid_fisher_vectors(projected, frames, shape, enc.gmm_, dtype=torch.float64)


def test_device_chain_chunks_by_pixels_and_keeps_order(data, fitted, monkeypatch):
    # 1 GiB per GPU chunk at 1 KiB per pixel after scale and per channel described: 2**20 gray pixels
    assert FisherVectorEncoder(scale=2.0)._chunks(np.zeros((1000, 28, 28)), torch.device("cuda"))[0] == (
        0, 2**20 // (56 * 56))
    assert FisherVectorEncoder(scale=2.0, color="opponent")._chunks(
        np.zeros((1000, 28, 28, 3)), torch.device("cuda"))[0] == (0, 2**20 // (56 * 56 * 3))
    assert FisherVectorEncoder()._chunks(np.zeros((100, 28, 28)), None)[:2] == [(0, 32), (32, 64)]
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        FisherVectorEncoder(batch_size=0)._chunks(np.zeros((10, 28, 28)), None)
    images = flat_patches(data[0])
    expected = fitted.transform(images)
    _on_cpu_as_on_a_gpu(monkeypatch)
    chain = clone(fitted).set_params(batch_size=40)
    chain.pca_, chain.gmm_, chain.n_features_out_ = fitted.pca_, fitted.gmm_, fitted.n_features_out_
    all_at_once = chain.transform(images)
    np.testing.assert_allclose(_unpowered(all_at_once), _unpowered(expected), atol=1e-4)  # previous test
    for batch_size in (None, 3):  # one chunk (pixel budget), uneven chunks: the same rows in the same order
        chunked = chain.set_params(batch_size=batch_size).transform(images)
        np.testing.assert_allclose(_unpowered(chunked), _unpowered(all_at_once), atol=1e-4)
    np.testing.assert_allclose(_unpowered(chain.transform(images, regions="whole")),
                               _unpowered(fitted.transform(images, regions="whole")), atol=1e-4)


def test_device_image_resize_matches_opencv():
    from fv.encoder import _as_float_images

    rng = np.random.default_rng(0)
    for shape in ((3, 28, 28), (2, 37, 23), (2, 32, 32, 3)):
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        for scale in (1.0, 2.0, 0.5, 1.7):
            expected = _as_float_images(images, scale)
            got = _as_float_images(images, scale, torch.device("cpu"))
            assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
            np.testing.assert_allclose(got.numpy(), expected, atol=5e-6)


def test_device_needs_cuda_when_it_names_cuda(data):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        FisherVectorEncoder(**SMALL, device="cuda").fit(data[0])
    assert FisherVectorEncoder(device="cpu")._device() is None  # the CPU workers
    assert FisherVectorEncoder()._device() is None
    with pytest.raises(ValueError, match="is not a device"):
        FisherVectorEncoder(device="gpu-please")._device()


def test_rgb_images_and_scale(data):
    rgb = np.repeat(data[0][:12, :, :, None], 3, axis=3)
    enc = FisherVectorEncoder(**{**SMALL, "scale": 1.5, "n_fit_descriptors": 2000}).fit(rgb)
    out = enc.transform(rgb[:2])
    gray = FisherVectorEncoder(**{**SMALL, "scale": 1.5, "n_fit_descriptors": 2000}).fit(data[0][:12])
    # rgb2gray weights sum to 0.9999, so the gray images differ by up to 1e-4 before fitting; the fits
    # agree to that rounding magnified by EM (means to about 1e-3), so the vectors are compared with
    # one fitted PCA and GMM
    np.testing.assert_allclose(np.abs(enc.pca_.components_), np.abs(gray.pca_.components_), atol=1e-4)
    np.testing.assert_allclose(enc.gmm_.means_, gray.gmm_.means_, atol=1e-2)
    gray.pca_, gray.gmm_ = enc.pca_, enc.gmm_
    np.testing.assert_allclose(out, gray.transform(data[0][:2]), atol=2e-3)


def test_errors_are_clear(data, fitted):
    with pytest.raises(NotFittedError):
        FisherVectorEncoder().transform(data[0])
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, H, W, 3\)"):
        fitted.transform(data[0][0])
    with pytest.raises(ValueError, match="out must be float32"):
        fitted.transform(data[0][:2], out=np.zeros((2, 3), np.float32))
    flat = np.full((3, 32, 32), 128, np.uint8)
    with pytest.raises(ValueError, match="descriptors found"):
        FisherVectorEncoder(**SMALL).fit(flat)


def test_flat_images_encode_to_zeros_not_nan(fitted):
    out = fitted.transform(np.zeros((2, 32, 32), np.uint8))
    assert np.isfinite(out).all() and not out.any()


def test_estimator_contract(fitted):
    enc = FisherVectorEncoder(**SMALL)
    assert clone(enc).get_params() == enc.get_params()
    assert enc.set_params(n_components=6).n_components == 6
    assert not hasattr(FisherVectorEncoder(), "gmm_")  # __init__ does no work
    assert fitted.get_feature_names_out().shape == (fitted.n_features_out_,)


@pytest.mark.parametrize("solver", ["liblinear", "torch"])
def test_validated_svm_chooses_c_on_validation(solver):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 20)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=300) > 0).astype(int)
    svm = ValidatedLinearSVM(Cs=(1e-4, 1.0), solver=solver, validation_fraction=0.2).fit(X, y)
    assert svm.solver_ == solver and set(svm.validation_scores_) == {1e-4, 1.0}
    assert svm.best_C_ == max(svm.validation_scores_, key=lambda c: (svm.validation_scores_[c], -c))
    assert svm.score(X, y) > 0.85
    assert svm.estimator_.C == svm.best_C_


def test_validated_torch_svm_warm_starts_the_sweep_and_the_refit():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 30)).astype(np.float32)
    y = np.argmax(X[:, :3] + 0.5 * rng.normal(size=(400, 3)), axis=1)
    svm = ValidatedLinearSVM(Cs=(10.0, 0.01, 1.0), solver="torch", tol=1e-7, max_iter=5000).fit(X, y)
    assert list(svm.validation_scores_) == [0.01, 1.0, 10.0]  # tried in increasing order
    cold = LinearSVM(C=svm.best_C_, tol=1e-7, max_iter=5000).fit(X, y)
    np.testing.assert_allclose(svm.estimator_.objective_, cold.objective_, rtol=1e-6)
    assert svm.estimator_.n_iter_ < cold.n_iter_  # started from the chosen C's validation solution


def test_auto_solver_switches_on_size():
    X = np.random.default_rng(0).normal(size=(60, 10)).astype(np.float32)
    y = np.arange(60) % 3
    assert ValidatedLinearSVM(Cs=(1.0,)).fit(X, y).solver_ == "liblinear"
    assert ValidatedLinearSVM(Cs=(1.0,), liblinear_max_bytes=1000).fit(X, y).solver_ == "torch"


def test_pipeline_learns_stripes_and_works_in_grid_search():
    X, y = stripes(60, seed=1)
    X_test, y_test = stripes(30, seed=2)
    pipe = make_pipeline(Cs=(1.0, 10.0), **SMALL)
    assert pipe.fit(X, y).score(X_test, y_test) >= 0.95
    search = GridSearchCV(make_pipeline(Cs=(1.0,), **SMALL), {"fv__n_components": [2, 4]}, cv=2).fit(X, y)
    assert search.best_params_["fv__n_components"] in (2, 4)


def test_pipeline_device_reaches_the_encoder_and_the_svm():
    pipe = make_pipeline(device="cpu", n_components=8)
    assert pipe.named_steps["fv"].device == "cpu" and pipe.named_steps["svm"].device == "cpu"
    assert pipe.named_steps["fv"].n_components == 8
    configured = FisherVectorEncoder(n_components=4)
    pipe = make_pipeline(configured, device="cpu")
    assert pipe.named_steps["fv"] is configured and configured.device is None


# --------------------------------------------------------------------------- output layout


def _cell_of(frames, image_shape, grid):
    """(row, col) of each descriptor centre in a (rows, cols) grid, written out: floor(y rows / H)."""
    rows, cols = grid
    height, width = image_shape
    row = np.minimum(np.floor(frames[:, 1] * rows / height), rows - 1)
    col = np.minimum(np.floor(frames[:, 0] * cols / width), cols - 1)
    return row, col


def test_regions_name_the_pyramid_cells_in_output_order(data):
    enc = FisherVectorEncoder(**{**SMALL, "improved": False}).fit(data[0])  # raw vectors: one per cell
    block = 2 * 4 * 8
    cells = [((1, 1), (0, 0)), ((2, 2), (0, 0)), ((2, 2), (0, 1)), ((2, 2), (1, 0)), ((2, 2), (1, 1)),
             ((3, 1), (0, 0)), ((3, 1), (1, 0)), ((3, 1), (2, 0))]
    assert enc.regions_ == tuple(PyramidRegion(g, c, slice(i * block, (i + 1) * block))
                                 for i, (g, c) in enumerate(cells))
    assert enc.regions_[-1].slice.stop == enc.n_features_out_
    fvs = enc.transform(data[0][:2])
    for i, image in enumerate(data[0][:2]):
        frames, desc = phow(image.astype(np.float32) / 255, sizes=(4, 6), step=4)
        keep = frames[:, 2] >= enc.contrast_threshold
        projected = (root_sift(desc[keep]) - enc.pca_.mean_) @ enc.pca_.components_.T
        for region in enc.regions_:
            row, col = _cell_of(frames[keep], image.shape, region.grid)
            inside = (row == region.cell[0]) & (col == region.cell[1])
            expected = fisher_vector(projected[inside], enc.gmm_, improved=False)
            np.testing.assert_allclose(fvs[i, region.slice], expected, rtol=1e-4, atol=5e-4)


def _sharing(encoder, **params):
    """A clone of ``encoder`` with other parameters and the same fitted PCA and GMM."""
    other = clone(encoder).set_params(**params)
    other.pca_, other.gmm_ = encoder.pca_, encoder.gmm_
    other.n_features_out_ = other._n_features("whole") if other.pyramid is None else encoder.n_features_out_
    return other


@pytest.mark.parametrize("improved", [True, False])
def test_whole_image_vectors_are_those_of_the_encoder_without_pyramid(data, fitted, improved):
    images = flat_patches(data[0])[:12]  # flat parts: empty pyramid cells
    enc = fitted if improved else _sharing(fitted, improved=False)
    enc.regions_ = fitted.regions_
    expected = _sharing(enc, pyramid=None).transform(images)
    assert expected.shape == (12, 2 * 4 * 8)
    np.testing.assert_array_equal(enc.transform(images, regions="whole"), expected)
    derived = enc.whole_image_features(enc.transform(images))
    assert derived.dtype == np.float32 and derived.shape == expected.shape
    np.testing.assert_allclose(derived, expected, rtol=1e-5, atol=1e-6)
    if improved:
        np.testing.assert_allclose(np.linalg.norm(derived[np.abs(derived).sum(1) > 0], axis=1), 1, rtol=1e-5)


def test_a_pyramid_without_a_1x1_level_encodes_the_whole_image_on_request(data, tmp_path):
    enc = FisherVectorEncoder(**{**SMALL, "pyramid": ((2, 2), (1, 3))}).fit(data[0])
    assert [r.grid for r in enc.regions_] == [(2, 2)] * 4 + [(1, 3)] * 3
    images = data[0][:5]
    with pytest.raises(ValueError, match=re.escape('transform(images, regions="whole")')):
        enc.whole_image_features(enc.transform(images))
    expected = _sharing(enc, pyramid=None).transform(images)
    np.testing.assert_array_equal(enc.transform(images, regions="whole"), expected)
    on_disk = encode_to_file(enc, images, tmp_path / "whole.npy", regions="whole")
    np.testing.assert_array_equal(on_disk, expected)


def test_layout_errors_are_clear(data, fitted):
    with pytest.raises(ValueError, match="regions must be 'all'"):
        fitted.transform(data[0][:2], regions="1x1")
    with pytest.raises(ValueError, match=r"features must be \(N, 512\)"):
        fitted.whole_image_features(np.zeros((2, 64), np.float32))
    with pytest.raises(ValueError, match=r"out must be float32 of shape \(2, 64\)"):
        fitted.transform(data[0][:2], out=np.zeros((2, 512), np.float32), regions="whole")
    with pytest.raises(NotFittedError):
        FisherVectorEncoder().whole_image_features(np.zeros((2, 64), np.float32))


# --------------------------------------------------------------------------- saving and loading


def test_a_saved_encoder_loads_to_the_same_vectors_bit_for_bit(data, fitted, tmp_path):
    images = flat_patches(data[0])
    others = [FisherVectorEncoder(**{**SMALL, "whiten": True, "pyramid": None, "n_components": 3,
                                     "n_fit_descriptors": 1500}).fit(images)]
    for i, enc in enumerate([fitted] + others):
        folder = enc.save(tmp_path / f"encoder{i}")
        loaded = FisherVectorEncoder.load(folder)
        assert loaded.get_params() == enc.get_params() and loaded.regions_ == enc.regions_
        assert loaded.n_features_out_ == enc.n_features_out_ and loaded.n_fit_descriptors_ == enc.n_fit_descriptors_
        np.testing.assert_array_equal(loaded.transform(images), enc.transform(images))
        # the loaded PCA and GMM work as fitted ones, to float32 rounding (PCA's components_ is a
        # strided view of its SVD, saved contiguous, so BLAS may sum in another order)
        sample = np.random.default_rng(0).random((20, 128))
        projected = enc.pca_.transform(sample)
        np.testing.assert_allclose(loaded.pca_.transform(sample), projected, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(loaded.gmm_.score_samples(projected), enc.gmm_.score_samples(projected))
        files = sorted(p.name for p in folder.iterdir())
        assert "encoder.json" in files and all(f == "encoder.json" or f.endswith("_.npy") for f in files)
        for name in files:
            if name.endswith(".npy"):
                np.load(folder / name, allow_pickle=False)  # plain arrays, no pickled objects


def _damage(folder, how):
    """Damage a saved encoder; the file that is damaged."""
    manifest = folder / "encoder.json"
    target = folder / "gmm_means_.npy"
    if how == "missing array":
        target.unlink()
    elif how == "truncated array":
        target.write_bytes(target.read_bytes()[:-17])
    elif how == "changed array":
        means = np.load(target)
        means[0, 0] += 1e-9
        np.save(target, means)
    elif how == "missing manifest":
        manifest.unlink()
        return manifest
    elif how == "truncated manifest":
        manifest.write_text(manifest.read_text()[:-40])
        return manifest
    else:  # a parameter edited
        text = manifest.read_text()
        assert '"n_components": 4' in text
        manifest.write_text(text.replace('"n_components": 4', '"n_components": 5'))
        return manifest
    return target


@pytest.mark.parametrize("how", ["missing array", "truncated array", "changed array", "missing manifest",
                                 "truncated manifest", "edited manifest"])
def test_a_damaged_save_is_refused_naming_the_file(fitted, tmp_path, how):
    folder = fitted.save(tmp_path / "encoder")
    target = _damage(folder, how)
    error = FileNotFoundError if how.startswith("missing") else ValueError
    with pytest.raises(error, match=re.escape(str(target))):
        FisherVectorEncoder.load(folder)


def test_a_save_of_another_format_version_is_refused(fitted, tmp_path):
    folder = fitted.save(tmp_path / "encoder")
    manifest = json.loads((folder / "encoder.json").read_text())
    manifest["format_version"] = SAVE_FORMAT_VERSION + 1
    (folder / "encoder.json").write_text(json.dumps(manifest))
    other = f"format version {SAVE_FORMAT_VERSION + 1}; this version of fv reads version {SAVE_FORMAT_VERSION}"
    with pytest.raises(ValueError, match=other):
        FisherVectorEncoder.load(folder)
    (folder / "encoder.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="does not describe a saved FisherVectorEncoder"):
        FisherVectorEncoder.load(folder)


def test_save_refuses_what_json_cannot_hold_and_writes_through_temporary_names(fitted, tmp_path, monkeypatch):
    with pytest.raises(NotFittedError):
        FisherVectorEncoder().save(tmp_path / "unfitted")
    odd = copy.copy(fitted)
    odd.random_state = np.random.RandomState(0)
    with pytest.raises(TypeError, match="random_state"):
        odd.save(tmp_path / "odd")

    save, write_text, calls = np.save, Path.write_text, []

    def save_then_fail(file, array, **kwargs):  # the second array: half written, then interrupted
        calls.append(file)
        if len(calls) == 2:
            file.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt
        save(file, array, **kwargs)

    def write_then_fail(self, text, *args, **kwargs):  # the manifest: half written, then interrupted
        write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt

    for name, patch in (("arrays", ("numpy.save", save_then_fail)), ("manifest", ("pathlib.Path.write_text",
                                                                                  write_then_fail))):
        with monkeypatch.context() as m:
            m.setattr(*patch)
            with pytest.raises(KeyboardInterrupt):
                fitted.save(tmp_path / name)
        names = sorted(p.name for p in (tmp_path / name).iterdir())
        assert "encoder.json" not in names and not [n for n in names if n.startswith(".")]  # no temporaries
        arrays = sorted(p.name for p in fitted.save(tmp_path / "complete").iterdir() if p.suffix == ".npy")
        if name == "arrays":  # the first array, whole, under its name; not the second
            assert len(names) == 1 and names[0] in arrays
        else:
            assert names == arrays
        with pytest.raises(FileNotFoundError, match="encoder.json is missing"):
            FisherVectorEncoder.load(tmp_path / name)


# --------------------------------------------------------------------------- input checks and scikit-learn


def test_non_finite_pixels_are_refused_with_their_count(data, fitted):
    images = data[0][:3].astype(np.float32) / 255
    images[0, 1, 2] = np.nan
    images[2, 0, :2] = np.inf
    for call in (fitted.transform, FisherVectorEncoder(**SMALL).fit):
        with pytest.raises(ValueError, match="images hold 3 NaN or infinite pixel values"):
            call(images)


#: Settings small enough for scikit-learn's checks to run in a moment.
TINY = dict(sizes=(4,), step=4, pca_components=2, n_components=2, gmm_max_iter=5, n_fit_descriptors=200)


# The encoder's tags declare images (three_d_array, not two_d_array): scikit-learn then skips every
# check built on 2-D (samples, features) arrays, with a SkipTestWarning that states the input tags,
# and keeps check_estimator_cloneable. No check is expected to fail.
@parametrize_with_checks([FisherVectorEncoder(**TINY)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_sklearn_skips_its_2d_array_checks_for_the_image_tags():
    encoder = FisherVectorEncoder(**TINY)
    tags = get_tags(encoder)
    assert not tags.input_tags.two_d_array and tags.input_tags.three_d_array and not tags.input_tags.allow_nan
    assert tags.transformer_tags.preserves_dtype == ["float32"]
    with pytest.warns(SkipTestWarning, match="requires input .*two_d_array=False, three_d_array=True"):
        names = [check.func.__name__ for _, check in estimator_checks_generator(encoder)]
    assert names == ["check_estimator_cloneable"]


#: scikit-learn's checks that feed the encoder no 2-D array, or call it before fitting, or expect a
#: ValueError for 1-D input: they hold for an image transformer and run here.
CHECKS_WITHOUT_2D_ARRAYS = [
    estimator_checks.check_estimator_tags_renamed, estimator_checks.check_valid_tag_types,
    estimator_checks.check_estimator_repr, estimator_checks.check_no_attributes_set_in_init,
    estimator_checks.check_estimators_unfitted, estimator_checks.check_transformers_unfitted,
    estimator_checks.check_do_not_raise_errors_in_init_or_set_params, estimator_checks.check_mixin_order,
    estimator_checks.check_parameters_default_constructible, estimator_checks.check_get_params_invariance,
    estimator_checks.check_set_params, estimator_checks.check_fit1d,
]


@pytest.mark.parametrize("check", CHECKS_WITHOUT_2D_ARRAYS, ids=lambda check: check.__name__)
def test_sklearn_checks_without_2d_arrays(check):
    check("FisherVectorEncoder", FisherVectorEncoder(**TINY))
