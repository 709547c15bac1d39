"""Dense SIFT and PHOW (fv.dsift) against an independent per-key-point loop, OpenCV and identities.

The reference below re-derives VLFeat's vl_dsift from its definition, not from fv.dsift: for every
key point and every one of its 16 spatial bins it visits the pixels of the bin's support, reads the
(replicated) gradient there, splits its magnitude between two orientations and accumulates it with
the bilinear weight times the window, then normalises (L2, clip 0.2, L2). VLFeat's numerical
shortcuts are re-stated from their documented formulas in vl/mathop.h (the cubic atan2
approximation, the wrap into [0, 2 pi), the 1e-8 cut of the fast square root); the fast window's
per-bin constant is the mean of the Gaussian over the bin's support, as vl/dsift.c defines it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fv.dsift import DESCRIPTOR_SIZE, dsift, dsift_grid, phow
from fv.dsift import _normalise_  # the normalisation alone, for its property test

EPS_F = 1.19209290e-07


# ---------------------------------------------------------------------------------------------
# The naive reference
# ---------------------------------------------------------------------------------------------


def vl_fast_atan2(y: float, x: float) -> float:
    abs_y = abs(y) + EPS_F
    if x >= 0:
        r = (x - abs_y) / (x + abs_y)
        angle = math.pi / 4
    else:
        r = (x + abs_y) / (abs_y - x)
        angle = 3 * math.pi / 4
    angle += (0.1821 * r * r - 0.9675) * r
    return -angle if y < 0 else angle


def vl_fast_sqrt(x: float) -> float:
    return 0.0 if x < 1e-8 else math.sqrt(x)


def pixel_orientations(image: np.ndarray, fast_math: bool) -> dict:
    """(y, x) -> ((bin, weight), (bin, weight)): the magnitude split between two orientations."""
    height, width = image.shape
    out = {}
    for y in range(height):
        for x in range(width):
            if x == 0:
                gx = image[y, 1] - image[y, 0]
            elif x == width - 1:
                gx = image[y, x] - image[y, x - 1]
            else:
                gx = 0.5 * (image[y, x + 1] - image[y, x - 1])
            if y == 0:
                gy = image[1, x] - image[0, x]
            elif y == height - 1:
                gy = image[y, x] - image[y - 1, x]
            else:
                gy = 0.5 * (image[y + 1, x] - image[y - 1, x])
            if fast_math:
                angle, magnitude = vl_fast_atan2(gy, gx), vl_fast_sqrt(gx * gx + gy * gy)
            else:
                angle, magnitude = math.atan2(gy, gx), math.sqrt(gx * gx + gy * gy)
            while angle > 2 * math.pi:
                angle -= 2 * math.pi
            while angle < 0:
                angle += 2 * math.pi
            n = angle * 8 / (2 * math.pi)
            b = math.floor(n)
            r = n - b
            out[y, x] = ((b % 8, (1 - r) * magnitude), ((b + 1) % 8, r * magnitude))
    return out


def naive_dsift(image, *, step, bin_size, fast, window_size=2.0, bounds=None, fast_math=True):
    """Frames (N, 3) = (x, y, norm) and unit descriptors (N, 128), one key point at a time."""
    image = np.asarray(image, dtype=np.float64)
    height, width = image.shape
    orientations = pixel_orientations(image, fast_math)
    s = bin_size
    sigma = window_size * s
    xmin, ymin, xmax, ymax = (0, 0, width - 1, height - 1) if bounds is None else bounds
    xmin, ymin = max(xmin, 0), max(ymin, 0)
    xmax, ymax = min(xmax, width - 1), min(ymax, height - 1)

    def window_mean(i):  # the fast window's constant for bin i: mean Gaussian over its support
        offset = s * (i - 1.5)
        return np.mean([math.exp(-0.5 * ((x - offset) / sigma) ** 2) for x in range(-s + 1, s)])

    omega = [window_mean(i) for i in range(4)]

    def normalise(v):
        squared = float((v ** 2).sum())
        length = vl_fast_sqrt(squared) if fast_math else math.sqrt(squared)
        return v / (length + EPS_F)

    frames, descriptors = [], []
    for top in range(ymin, ymax - 3 * s + 1, step):
        for left in range(xmin, xmax - 3 * s + 1, step):
            cx, cy = left + 1.5 * s, top + 1.5 * s
            hist = np.zeros(DESCRIPTOR_SIZE)
            for j in range(4):
                for i in range(4):
                    bx, by = left + i * s, top + j * s
                    for v in range(by - s + 1, by + s):
                        for u in range(bx - s + 1, bx + s):
                            weight = (1 - abs(u - bx) / s) * (1 - abs(v - by) / s)
                            if fast:
                                weight *= omega[i] * omega[j]
                            else:
                                weight *= math.exp(-((u - cx) ** 2 + (v - cy) ** 2)
                                                   / (2 * sigma ** 2))
                            pixel = (min(max(v, 0), height - 1), min(max(u, 0), width - 1))
                            for t, m in orientations[pixel]:
                                hist[t + 8 * i + 32 * j] += weight * m
            norm = hist.sum() / (3 * s + 1) ** 2
            hist = normalise(np.minimum(normalise(hist), 0.2))
            frames.append((cx, cy, norm))
            descriptors.append(hist)
    return np.array(frames), np.array(descriptors)


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


def textured(shape, seed=0) -> np.ndarray:
    """Random float32-representable image in [0, 1] with a flat block (zero gradients)."""
    rng = np.random.default_rng(seed)
    image = rng.random(shape).astype(np.float32)
    h, w = shape
    image[h // 4:h // 2, w // 3:2 * w // 3] = 0.3
    return image.astype(np.float64)


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    """A 200 x 200 crop of scikit-image's camera man as uint8 (a real photograph)."""
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(data.camera()[100:300, 150:350])


# ---------------------------------------------------------------------------------------------
# Agreement with the per-key-point loop
# ---------------------------------------------------------------------------------------------

NAIVE_CASES = [
    dict(shape=(37, 45), step=3, bin_size=4, fast=True),
    dict(shape=(37, 45), step=3, bin_size=4, fast=False),
    dict(shape=(30, 41), step=2, bin_size=3, fast=True, window_size=1.5),
    dict(shape=(41, 30), step=5, bin_size=2, fast=False, window_size=1.5, bounds=(3, 4, 26, 35)),
    dict(shape=(44, 33), step=4, bin_size=5, fast=True, bounds=(2, 1, 40, 30)),  # clipped
    dict(shape=(12, 15), step=1, bin_size=1, fast=False),
    dict(shape=(27, 20), step=6, bin_size=6, fast=True),  # a single column of descriptors
]


@pytest.mark.parametrize("case", NAIVE_CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_matches_naive_loop(case):
    case = dict(case)
    image = textured(case.pop("shape"))
    ref_frames, ref_descriptors = naive_dsift(image, **case)
    assert len(ref_frames) > 0

    frames, descriptors = dsift(image, norm=True, **case)  # float64
    np.testing.assert_allclose(frames, ref_frames, rtol=0, atol=1e-12)
    np.testing.assert_allclose(descriptors, ref_descriptors, rtol=0, atol=1e-12)

    frames32, descriptors32 = dsift(image.astype(np.float32), norm=True, **case)
    assert descriptors32.dtype == np.float32
    np.testing.assert_allclose(frames32, ref_frames, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(descriptors32, ref_descriptors, rtol=0, atol=5e-6)


@pytest.mark.parametrize("fast", [True, False])
def test_exact_math_matches_naive_loop(fast):
    """fast_math=False: exact atan2 and square roots, no 1e-8 cut."""
    image = textured((33, 38), seed=3)
    ref_frames, ref_descriptors = naive_dsift(image, step=3, bin_size=4, fast=fast,
                                              fast_math=False)
    frames, descriptors = dsift(image, step=3, bin_size=4, fast=fast, norm=True, fast_math=False)
    np.testing.assert_allclose(frames, ref_frames, rtol=0, atol=1e-12)
    np.testing.assert_allclose(descriptors, ref_descriptors, rtol=0, atol=1e-12)


def test_fast_math_differs_from_exact_atan2_by_vlfeat_error():
    """The two angle paths really differ (VLFeat's atan2 is off by up to 0.0061 rad), slightly."""
    image = textured((40, 40), seed=4)
    _, approx = dsift(image, fast_math=True)
    _, exact = dsift(image, fast_math=False)
    difference = np.abs(approx - exact).max()
    assert 1e-4 < difference < 0.05


def test_fast_window_approximates_the_gaussian_window_as_in_vlfeats_own_test(camera):
    """vl_test_dsift.m: with window size 5, std(fast - slow) / std(slow) < 0.1 (0.014 here)."""
    image = camera.astype(np.float32) / 255
    options = dict(bin_size=4, step=10, bounds=(19, 19, 209, 139), window_size=5,
                   output="scaled")
    _, slow = dsift(image, fast=False, **options)
    _, fast = dsift(image, fast=True, **options)
    assert np.std(fast - slow) / np.std(slow) < 0.1


# ---------------------------------------------------------------------------------------------
# Geometry, batching, dtypes, devices
# ---------------------------------------------------------------------------------------------


def test_grid_of_a_256_image_has_61_by_61_descriptors():
    image = np.random.default_rng(0).random((256, 256)).astype(np.float32)
    frames, descriptors = dsift(image, step=4, bin_size=4)
    assert frames.shape == (3721, 2) and descriptors.shape == (3721, DESCRIPTOR_SIZE)
    axis = 6 + 4 * np.arange(61)  # first upper-left bin centre 0, centre 1.5 * 4 further
    np.testing.assert_array_equal(frames[:, 0], np.tile(axis, 61))  # x fastest: row by row
    np.testing.assert_array_equal(frames[:, 1], np.repeat(axis, 61))
    np.testing.assert_array_equal(dsift_grid(256, 256, step=4, bin_size=4), frames)


def test_grid_respects_bounds_on_bin_centres():
    centres = dsift_grid(50, 60, step=5, bin_size=4, bounds=(7, 3, 40, math.inf))
    # upper-left bin centre >= (7, 3), lower-right bin centre = centre + 6 <= (40, 49)
    assert centres[:, 0].min() == 7 + 6 and centres[:, 1].min() == 3 + 6
    assert centres[:, 0].max() + 6 <= 40 and centres[:, 1].max() + 6 <= 49
    assert centres[:, 0].max() + 6 + 5 > 40  # no room for one more column
    assert len(dsift_grid(12, 12, step=1, bin_size=4)) == 0


@pytest.mark.parametrize("options", [dict(), dict(fast=False), dict(step=3, bin_size=6),
                                     dict(fast_math=False)])
def test_batch_equals_single_images(options):
    images = np.random.default_rng(1).random((3, 50, 61))
    frames, descriptors = dsift(images, norm=True, **options)
    assert frames.shape[0] == descriptors.shape[0] == 3
    for k in range(3):
        f, d = dsift(images[k], norm=True, **options)
        np.testing.assert_allclose(frames[k], f, rtol=0, atol=1e-12)
        np.testing.assert_allclose(descriptors[k], d, rtol=0, atol=1e-12)


def test_float32_agrees_with_float64(camera):
    image = camera.astype(np.float64) / 255
    for fast in (True, False):
        f64, d64 = dsift(image, fast=fast, norm=True)
        f32, d32 = dsift(image.astype(np.float32), fast=fast, norm=True)
        assert d32.dtype == np.float32 and d64.dtype == np.float64
        assert np.abs(d64 - d32).max() < 2e-6  # measured 2.5e-7
        np.testing.assert_allclose(f32, f64, rtol=2e-6, atol=1e-9)


def test_tensor_input_gives_tensors_with_the_same_values():
    image = textured((40, 47), seed=5).astype(np.float32)
    frames, descriptors = dsift(image, norm=True)
    t_frames, t_descriptors = dsift(torch.from_numpy(image), norm=True)
    assert isinstance(t_frames, torch.Tensor) and isinstance(t_descriptors, torch.Tensor)
    np.testing.assert_array_equal(t_frames.numpy(), frames)
    np.testing.assert_array_equal(t_descriptors.numpy(), descriptors)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    images = np.random.default_rng(2).random((2, 64, 72)).astype(np.float32)
    for options in (dict(), dict(fast=False), dict(step=3, bin_size=6)):
        frames, descriptors = dsift(images, norm=True, **options)
        c_frames, c_descriptors = dsift(torch.from_numpy(images).cuda(), norm=True, **options)
        assert c_descriptors.device.type == "cuda"
        np.testing.assert_allclose(c_frames.cpu().numpy(), frames, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c_descriptors.cpu().numpy(), descriptors, rtol=0, atol=1e-5)
    frames, descriptors = phow(images[0])
    c_frames, c_descriptors = phow(images[0], device="cuda")
    assert isinstance(c_descriptors, np.ndarray)
    np.testing.assert_allclose(c_descriptors, descriptors, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Values: flat regions, normalisation, output formats
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [dict(), dict(fast=False), dict(fast_math=False)])
def test_constant_image_gives_zero_descriptors_flagged_by_zero_norm(options):
    image = np.full((40, 44), 0.5, np.float32)
    frames, descriptors = dsift(image, norm=True, **options)
    assert np.all(descriptors == 0) and np.all(frames[:, 2] == 0)
    frames, descriptors = phow(image, sizes=(4, 6))
    assert np.all(descriptors == 0) and np.all(frames[:, 2] < 0.005)


def test_vlfeat_square_root_cut_zeroes_tiny_gradients():
    """VLFeat's vl_fast_sqrt_f returns 0 below 1e-8: gradients under 1e-4 vanish."""
    ramp = np.tile(5e-5 * np.arange(40), (36, 1))  # gradient 5e-5 everywhere
    frames, descriptors = dsift(ramp, norm=True)
    assert np.all(descriptors == 0) and np.all(frames[:, 2] == 0)
    frames, descriptors = dsift(ramp, norm=True, fast_math=False)
    assert np.all(frames[:, 2] > 0)
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1, atol=1e-6)  # eps / 1e-4
    by_orientation = descriptors.reshape(-1, 16, 8)
    assert np.all(by_orientation[:, :, 0] > 0) and np.all(by_orientation[:, :, 1:] == 0)  # +x


def test_normalisation_is_l2_clip_l2():
    rng = np.random.default_rng(6)
    hist = rng.random((50, DESCRIPTOR_SIZE)) ** 8  # spiky: some entries exceed 0.2 after L2
    hist[:5] *= 1e-6  # and a few with a norm below VLFeat's cut
    unit = hist / (np.linalg.norm(hist, axis=1, keepdims=True) + EPS_F)
    assert np.all(unit[5:].max(axis=1) > 0.2)
    clipped = np.minimum(unit, 0.2)
    expected = clipped / (np.linalg.norm(clipped, axis=1, keepdims=True) + EPS_F)
    result = _normalise_(torch.from_numpy(hist.copy()), fast_math=False).numpy()
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-15)
    # the clipped entries share the largest value, and clipping is before renormalising
    for v, c in zip(result[5:], clipped[5:]):
        assert np.sum(np.isclose(v, v.max())) == np.sum(c == 0.2)
        np.testing.assert_allclose(v.max() * (np.linalg.norm(c) + EPS_F), 0.2, rtol=1e-9)
    # with VLFeat's cut, a norm below 1e-4 counts as 0: the histogram is divided by eps alone
    tiny = _normalise_(torch.from_numpy(hist[:5].copy()), fast_math=True).numpy()
    first = np.minimum(hist[:5] / EPS_F, 0.2)
    np.testing.assert_allclose(tiny, first / np.linalg.norm(first, axis=1, keepdims=True),
                               rtol=1e-6)


def test_descriptors_are_unit_vectors(camera):
    image = camera.astype(np.float32) / 255
    frames, descriptors = dsift(image, norm=True)
    textured_frames = frames[:, 2] > 1e-3
    assert textured_frames.mean() > 0.9
    norms = np.linalg.norm(descriptors[textured_frames], axis=1)
    np.testing.assert_allclose(norms, 1, atol=1e-5)
    assert descriptors.min() >= 0


def test_output_formats_follow_vl_dsift():
    image = textured((40, 40), seed=7).astype(np.float32)
    _, unit = dsift(image)
    _, scaled = dsift(image, output="scaled")
    _, as_bytes = dsift(image, output="uint8")
    np.testing.assert_allclose(scaled, np.minimum(512 * unit, 255), rtol=1e-6)
    assert as_bytes.dtype == np.uint8
    np.testing.assert_array_equal(as_bytes, np.floor(scaled).astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# OpenCV's SIFT on the same grid
# ---------------------------------------------------------------------------------------------


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


@pytest.mark.parametrize("bin_size", [4, 8])
def test_agrees_with_opencv_sift_on_the_same_grid(camera, bin_size):
    """OpenCV's window is Gaussian with sigma = 2 bins: our fast=False, window_size=2.

    Measured on this crop (interior frames, 1936 and 1521 of them): median cosine similarity
    1 - 3.0e-5 and 1 - 2.8e-5, 5th percentile 1 - 4.6e-5 and 1 - 3.7e-5 (OpenCV rounds its
    descriptors to integers out of 512); the fast window gives 0.998 (5th percentile 0.996).
    Mapping the orientations without reversal gives 0.58 and 0.72, a key point size of
    2 * bin_size (3x too big) 0.60 and 0.67, so both conventions are pinned down.
    """
    cv2 = pytest.importorskip("cv2")
    image = camera.astype(np.float32) / 255
    height, width = image.shape
    frames, gaussian = dsift(image, bin_size=bin_size, fast=False, window_size=2.0)
    cv_frames, reference = dsift(image, bin_size=bin_size, backend="opencv")
    np.testing.assert_array_equal(cv_frames, frames)
    reach = 2.5 * bin_size  # OpenCV skips the border pixels, VLFeat replicates them
    inner = ((frames[:, 0] - reach >= 1) & (frames[:, 0] + reach <= width - 2)
             & (frames[:, 1] - reach >= 1) & (frames[:, 1] + reach <= height - 2))
    assert inner.sum() > 1000

    similarity = cosines(gaussian[inner], reference[inner])
    assert np.median(similarity) > 1 - 2e-4
    assert np.percentile(similarity, 5) > 1 - 5e-4

    _, flat = dsift(image, bin_size=bin_size)
    assert np.median(cosines(flat[inner], reference[inner])) > 0.995

    unreversed = reference.reshape(-1, 16, 8)[:, :, (-np.arange(8)) % 8].reshape(-1, 128)
    assert np.median(cosines(gaussian[inner], unreversed[inner])) < 0.9
    sift = cv2.SIFT_create(sigma=0.5)
    too_big = [cv2.KeyPoint(float(x), float(y), 2.0 * bin_size, 0.0) for x, y in frames]
    _, big = sift.compute(camera, too_big)
    big = big.reshape(-1, 16, 8)[:, :, (-np.arange(8)) % 8].reshape(-1, 128)
    assert np.median(cosines(gaussian[inner], big[inner])) < 0.9


def test_opencv_backend_takes_any_float_range(camera):
    image = camera.astype(np.float32)
    _, unit_range = dsift(image / 255, backend="opencv")
    _, byte_range = dsift(image, backend="opencv")  # stretched from its own min-max
    assert np.median(cosines(unit_range, byte_range)) > 0.999


# ---------------------------------------------------------------------------------------------
# PHOW
# ---------------------------------------------------------------------------------------------


def vl_imsmooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian of half-width ceil(4 sigma), normalised, padded by continuity (scipy)."""
    from scipy.ndimage import correlate1d

    half = math.ceil(4 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / (sigma + EPS_F)) ** 2)
    kernel /= kernel.sum()
    return correlate1d(correlate1d(image, kernel, axis=0, mode="nearest"), kernel, axis=1,
                       mode="nearest")


def test_phow_is_dsift_of_the_smoothed_image_per_scale():
    rng = np.random.default_rng(8)
    image = vl_imsmooth(rng.random((60, 71)), 1.0)
    image[:20, :30] = 0.5  # flat: low contrast, zeroed
    sizes, step, threshold = (4, 6, 8), 3, 0.005
    frames, descriptors = phow(image, sizes=sizes, step=step, contrast_threshold=threshold)
    start = 0
    for size in sizes:
        off = math.floor(1.5 * (max(sizes) - size))
        f, d = dsift(vl_imsmooth(image, size / 6), step=step, bin_size=size, window_size=1.5,
                     bounds=(off, off, math.inf, math.inf), norm=True)
        d[f[:, 2] < threshold] = 0
        stop = start + len(f)
        np.testing.assert_allclose(frames[start:stop, :3], f, rtol=0, atol=1e-12)
        assert np.all(frames[start:stop, 3] == size)
        np.testing.assert_allclose(descriptors[start:stop], d, rtol=0, atol=1e-10)
        assert np.all(frames[start:stop, 0][:1] == frames[0, 0])  # centres aligned over scales
        start = stop
    assert start == len(frames)
    low = frames[:, 2] < threshold
    assert 0 < low.sum() < len(frames) and np.all(descriptors[low] == 0)


def test_phow_colour_variants():
    rng = np.random.default_rng(9)
    rgb = np.stack([vl_imsmooth(rng.random((40, 44)), 1.0) for _ in range(3)], axis=-1)
    options = dict(sizes=(4, 6), contrast_threshold=0.0)

    frames, descriptors = phow(rgb, color="rgb", **options)
    assert descriptors.shape == (len(frames), 3 * DESCRIPTOR_SIZE)
    for channel in range(3):
        f, d = phow(rgb[..., channel], **options)
        np.testing.assert_allclose(descriptors[:, 128 * channel:128 * (channel + 1)], d,
                                   atol=1e-12)
    per_channel = [phow(rgb[..., c], **options)[0][:, 2] for c in range(3)]
    np.testing.assert_allclose(frames[:, 2], np.mean(per_channel, axis=0), rtol=1e-12)

    gray = rgb @ np.array([0.2989, 0.5870, 0.1140])
    np.testing.assert_allclose(phow(rgb, **options)[1], phow(gray, **options)[1], atol=1e-12)

    color = pytest.importorskip("skimage.color")
    hsv = color.rgb2hsv(rgb)
    frames, descriptors = phow(rgb, color="hsv", **options)
    for channel in range(3):
        f, d = phow(hsv[..., channel], **options)
        np.testing.assert_allclose(descriptors[:, 128 * channel:128 * (channel + 1)], d,
                                   atol=1e-9)
    np.testing.assert_allclose(frames[:, 2], phow(hsv[..., 2], **options)[0][:, 2], rtol=1e-9)

    mu = 0.3 * rgb[..., 0] + 0.59 * rgb[..., 1] + 0.11 * rgb[..., 2]
    frames, descriptors = phow(rgb, color="opponent", **options)
    f, d = phow(mu, **options)
    np.testing.assert_allclose(descriptors[:, :128], d, atol=1e-12)
    np.testing.assert_allclose(frames[:, 2], f[:, 2], rtol=1e-12)


def test_phow_batch_equals_single_images():
    images = np.random.default_rng(10).random((2, 45, 50)).astype(np.float32)
    frames, descriptors = phow(images, sizes=(4, 6), output="uint8")
    assert descriptors.dtype == np.uint8
    for k in range(2):
        f, d = phow(images[k], sizes=(4, 6), output="uint8")
        np.testing.assert_array_equal(frames[k], f)
        np.testing.assert_array_equal(descriptors[k], d)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("image, options, error, message", [
    (np.zeros((40, 40, 3), np.float32), {}, ValueError, "colour image"),
    (np.zeros((2, 3, 40, 40), np.float32), {}, ValueError, "grayscale"),
    (np.zeros((40, 40), np.uint8), {}, TypeError, "float32 or float64.*astype"),
    (torch.zeros(40, 40, dtype=torch.int64), {}, TypeError, "float32 or float64"),
    ([[0.0] * 40] * 40, {}, TypeError, "numpy array or a torch tensor"),
    (np.zeros((12, 40), np.float32), {}, ValueError, "smaller than one descriptor.*bin_size"),
    (np.zeros((40, 40), np.float32), dict(bounds=(30, 0, 39, 39)), ValueError, "widen the bounds"),
    (np.zeros((40, 40), np.float32), dict(bounds=(0.5, 0, 39, 39)), ValueError, "integers"),
    (np.zeros((40, 40), np.float32), dict(step=0), ValueError, "step must be a positive"),
    (np.zeros((40, 40), np.float32), dict(bin_size=2.0), ValueError, "bin_size must be"),
    (np.zeros((40, 40), np.float32), dict(window_size=0), ValueError, "window_size"),
    (np.zeros((40, 40), np.float32), dict(output="float"), ValueError, "output must be one of"),
    (np.zeros((40, 40), np.float32), dict(backend="vlfeat"), ValueError, "backend must be"),
])
def test_bad_input_raises_a_clear_error(image, options, error, message):
    with pytest.raises(error, match=message):
        dsift(image, **options)


def test_phow_bad_input_raises_a_clear_error():
    with pytest.raises(ValueError, match="color must be one of"):
        phow(np.zeros((40, 40), np.float32), color="lab")
    with pytest.raises(ValueError, match="smaller than one descriptor"):
        phow(np.zeros((28, 28), np.float32))  # size 10 needs 31 x 31 pixels
    with pytest.raises(ValueError, match=r"\(H, W\), \(B, H, W\)"):
        phow(np.zeros((2, 2, 40, 40), np.float32))
