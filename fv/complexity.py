"""Size and cost of a Fisher-vector encoder: descriptors, feature length, parameters, multiply-adds.

``complexity(encoder, image_shape, n_classes=None, *, regions="all")`` describes ONE image of
``image_shape = (H, W[, C])`` pixels as stored (before the encoder's ``scale``) and returns:

``descriptors``
    N, the dense SIFT descriptors :func:`fv.phow` computes on the rescaled H' x W' image,
    H' = round(H scale), W' = round(W scale): for each bin size s of ``sizes``, the grid of
    :func:`fv.dsift_grid` with the encoder's ``step`` inside the bounds phow gives that scale (top
    and left offset floor(3/2 (max(sizes) - s)), so that all scales share their centres). Counted
    before the contrast filter: every descriptor is computed, the low-contrast ones are dropped
    afterwards.
``descriptor_dim``, ``pca_dim``, ``n_components``, ``n_regions``
    F = 128 c (c = 1 channel for ``color="gray"``, 3 for the colour modes), the PCA dimension D,
    the GMM components K and the regions R (the cells of the pyramid; 1 with ``regions="whole"``).
``feature_dim``
    R 2 K D, the length of the Fisher vector (``transform(images, regions=regions)``).
``params`` (with ``params_by_stage``)
    pca:  D F + F (the projection and the mean), + D when ``whiten`` (the scales);
    gmm:  K (2 D + 1) (means, variances, weights);
    svm:  with ``n_classes``, P (feature_dim + 1) weights and biases of the linear SVM, one-vs-rest:
          P = n_classes problems, one for two classes.
``mult_adds`` (with ``mult_adds_by_stage``), per image, as matrix products::

    dense_sift  sum over s of (2 (2 ceil(4 s / magnif) + 1) + 12 + 16 s) H' W' c   + 4 F N
                (an estimate: Gaussian smoothing, sigma = s / magnif, two separable passes of
                2 ceil(4 sigma) + 1 taps; gradients and orientation binning, about 12 per pixel;
                pooling of the 8 orientation maps by a separable kernel of width s, 16 s per
                pixel; 4 per descriptor value for sampling and normalisation)
    pca         N F D        (projection of every descriptor)
    gmm         2 N K D      (log-likelihoods: [x, x^2] times [mu / sigma^2, -1 / (2 sigma^2)])
    moments     L 2 N K D    (first and second order moments, once per pyramid level, L levels;
                             L = 1 with ``regions="whole"``)
    svm         P feature_dim  (with ``n_classes``)

    RootSIFT, the posterior softmax, the per-region normalisation and additions are not counted:
    the convention of :func:`cnn.complexity` (multiply-accumulates of the products), whose counts
    the FV figures are compared with. ``fv.fisher`` puts the cost of the Fisher-vector products at
    8 N K D flops, i.e. the gmm and moments terms of one level, two flops per multiply-add.

The encoder may be unfitted: D and K are then its ``pca_components`` (F when None) and
``n_components``.
"""

from __future__ import annotations

import math

from .dsift import DESCRIPTOR_SIZE, dsift_grid
from .encoder import FisherVectorEncoder, _pyramid_regions, descriptor_channels, scaled_size

__all__ = ["complexity"]


def _descriptors_per_image(height: int, width: int, sizes, step: int) -> int:
    """Descriptors :func:`fv.phow` computes on one ``height x width`` image (module docstring); a
    ``ValueError`` where a bin size leaves no room for one, as phow raises then."""
    largest = max(int(s) for s in sizes)
    total = 0
    for size in sizes:
        offset = math.floor(1.5 * (largest - int(size)))
        bounds = (offset, offset, math.inf, math.inf)
        count = len(dsift_grid(height, width, step=int(step), bin_size=int(size), bounds=bounds))
        if count == 0:
            raise ValueError(f"a {height} x {width} image (after scale) has no room for a descriptor of bin size "
                             f"{size} inside phow's bounds (offset {offset}): the encoder cannot describe it; "
                             "use a larger scale or smaller sizes")
        total += count
    return total


def _check_arguments(encoder, image_shape, n_classes, regions) -> tuple[int, int]:
    """(H, W) of ``image_shape``; clear errors for bad arguments."""
    if not isinstance(encoder, FisherVectorEncoder):
        raise TypeError(f"encoder must be a FisherVectorEncoder; got {type(encoder).__name__}")
    shape = tuple(image_shape)
    if len(shape) not in (2, 3) or any(int(s) < 1 for s in shape):
        raise ValueError(f"image_shape must be (H, W) or (H, W, C) of one image; got {image_shape!r}")
    if n_classes is not None and int(n_classes) < 2:
        raise ValueError(f"n_classes must be at least 2 (or None: no SVM); got {n_classes!r}")
    if regions not in ("all", "whole"):
        raise ValueError(f"regions must be 'all' (every pyramid region) or 'whole' (the whole image only); "
                         f"got {regions!r}")
    return int(shape[0]), int(shape[1])


def _dimensions(encoder: FisherVectorEncoder) -> tuple[int, int, int]:
    """(F, D, K): descriptor length, PCA dimension, GMM components, fitted or from the parameters."""
    F = DESCRIPTOR_SIZE * descriptor_channels(encoder.color)
    if hasattr(encoder, "gmm_"):
        return F, int(encoder.pca_.n_components_), int(len(encoder.gmm_.weights_))
    D = F if encoder.pca_components is None else int(encoder.pca_components)
    return F, D, int(encoder.n_components)


def complexity(encoder: FisherVectorEncoder, image_shape, n_classes: int | None = None, *,
               regions: str = "all") -> dict:
    """Descriptors, feature length, parameters and multiply-adds per image of ``encoder`` (plus a
    linear SVM over ``n_classes`` classes when given) for images of ``image_shape = (H, W[, C])``;
    ``regions="whole"`` for the whole-image vector only. Every term is in the module docstring."""
    height, width = scaled_size(*_check_arguments(encoder, image_shape, n_classes, regions), encoder.scale)
    F, D, K = _dimensions(encoder)
    channels = descriptor_channels(encoder.color)
    pyramid = encoder.pyramid if regions == "all" else None
    n_regions = len(_pyramid_regions(pyramid, 2 * K * D))
    levels = len(pyramid) if pyramid else 1
    feature_dim = n_regions * 2 * K * D
    problems = 0 if n_classes is None else (1 if int(n_classes) == 2 else int(n_classes))
    N = _descriptors_per_image(height, width, encoder.sizes, encoder.step)

    per_pixel = sum(2 * (2 * math.ceil(4.0 * (int(s) / float(encoder.magnif))) + 1) + 12 + 16 * int(s)
                    for s in encoder.sizes)
    mult_adds = {
        "dense_sift": per_pixel * height * width * channels + 4 * F * N,
        "pca": N * F * D,
        "gmm": 2 * N * K * D,
        "moments": levels * 2 * N * K * D,
        "svm": problems * feature_dim,
    }
    params = {
        "pca": D * F + F + (D if encoder.whiten else 0),
        "gmm": K * (2 * D + 1),
        "svm": problems * (feature_dim + 1),
    }
    return {
        "descriptors": N, "descriptor_dim": F, "pca_dim": D, "n_components": K, "n_regions": n_regions,
        "feature_dim": feature_dim, "params": sum(params.values()), "params_by_stage": params,
        "mult_adds": sum(mult_adds.values()), "mult_adds_by_stage": mult_adds,
    }
