"""Dense SIFT and PHOW with VLFeat's ``vl_dsift`` / ``vl_phow`` conventions, vectorised in PyTorch.

Dense SIFT computes one 128-dimensional SIFT descriptor (4 x 4 spatial bins x 8 orientations) at
every node of a regular grid, all of the same size and with no rotation (the features of the
Fisher-vector image classifiers: Perronnin et al. 2010, Chatfield et al. 2011, the ILSVRC-2012
runner-up). Instead of looping over key points, the whole image is processed at once:

1. **Gradients** by central differences, one-sided at the image border (``np.gradient``'s rule):
   ``gx[y, x] = (I[y, x+1] - I[y, x-1]) / 2``, ``gy`` likewise along the rows (``y`` points down).
2. **Orientation channels.** With ``m = |g|`` and ``theta = atan2(gy, gx)`` taken in ``[0, 2 pi)``,
   ``n = theta * 8 / (2 pi)``, ``b = floor(n)``, ``r = n - b``, the magnitude is split by linear
   interpolation between two of eight channels: ``C[b mod 8] = (1 - r) m`` and
   ``C[(b + 1) mod 8] = r m``.
3. **Spatial pooling.** A bin of side ``s = bin_size`` centred at pixel ``c`` collects
   ``h_t(c) = sum_u  k(u_x) k(u_y) w(c + u - d) C_t(c + u)`` where ``k(u) = 1 - |u| / s`` for
   ``|u| < s`` is the triangular (bilinear) kernel, ``d`` is the descriptor centre and ``w`` the
   window. The channels are padded by replication ("by continuity") beyond the image border.

   - Gaussian window (``fast=False``): ``w(v) = exp(-|v|^2 / (2 sigma^2))`` with
     ``sigma = window_size * s`` pixels (VLFeat's default ``window_size`` is 2 bins; ``vl_phow``
     uses 1.5). The window is not normalised. Since the bin centre sits at a fixed offset
     ``delta_i = s (i - 3/2)`` from ``d``, bin ``i`` along each axis is a plain separable
     correlation with its own kernel ``k(u) exp(-(u + delta_i)^2 / (2 sigma^2))``.
   - Flat window (``fast=True``, VLFeat's ``'Fast'``): every pixel is pooled with the triangular
     kernel only, and afterwards bin ``(i, j)`` is multiplied by the constant ``omega_i omega_j``,
     ``omega_i = mean_{x = -s+1..s-1} exp(-(x - delta_i)^2 / (2 sigma^2))``: the average of the
     Gaussian window over the bin's support. One pooled map then serves all 16 bins.

   Both are computed as separable correlations evaluated only on the lattice of bin centres
   (stride ``gcd(step, bin_size)``), then sampled at the 4 x 4 bin centres of every descriptor.
4. **Normalisation** (Lowe's): ``v = h / (|h|_2 + eps)``, ``v = min(v, 0.2)``,
   ``v = v / (|v|_2 + eps)`` with ``eps = 2^-23``. VLFeat's *norm* of a frame, used by ``vl_phow``'s
   contrast threshold, is taken before normalising: the mass ``sum(h) / (3 s + 1)^2``
   (an L1 mass per pixel of the descriptor's extent, despite its name).

Conventions
-----------
- **Frames**: 0-based pixel coordinates, ``x`` = column, ``y`` = row, at the descriptor centre.
  VLFeat's MATLAB ``vl_dsift`` returns 1-based ``[x; y]``: ``frames_vlfeat = frames + 1``.
  The upper-left bin centre of a descriptor lies on the integer grid
  ``(xmin + p * step, ymin + q * step)``; the centre is ``1.5 * bin_size`` further right and down.
  A descriptor is kept only if all 16 bin centres lie inside ``bounds`` (by default the image), so a
  256 x 256 image with ``step=4, bin_size=4`` gives 61 x 61 = 3721 frames (centres 6, 10, ..., 246).
  Frames are listed row by row (``y`` outer, ``x`` inner); MATLAB lists them column by column.
- **Bounds**: ``(xmin, ymin, xmax, ymax)``, 0-based and inclusive, clipped to the image; they bound
  the bin centres, not the pixels pooled (which may reach ``bin_size - 1`` beyond, as in VLFeat).
  VLFeat's MATLAB ``'Bounds', [XMIN YMIN XMAX YMAX]`` is
  ``bounds = (XMIN-1, YMIN-1, XMAX-1, YMAX-1)``.
- **Descriptor layout** (VLFeat's): index ``t + 8 * i + 32 * j`` for orientation ``t`` (fastest),
  x bin ``i`` (left to right), y bin ``j`` (top to bottom). Orientation ``t`` covers the angle
  ``t * 45`` degrees measured from the +x axis towards +y, i.e. *clockwise* on screen since ``y``
  points down. The MATLAB toolbox runs the C code on the column-major (transposed) image and
  transposes the result back (``vl_dsift_transpose_descriptor``), which yields exactly this layout.
  OpenCV (and Lowe's) SIFT use the same spatial order but measure angles counter-clockwise with
  ``y`` up: OpenCV orientation ``k`` is our ``(8 - k) mod 8``.
- **Values**: ``output="unit"`` returns the C library's float descriptors (unit L2 norm, each
  entry at most 0.2 before the second normalisation); ``"scaled"`` returns ``min(512 v, 255)`` as
  floats (MATLAB's ``'FloatDescriptors'``); ``"uint8"`` truncates that to ``uint8`` (MATLAB's
  default output).
- **fast_math=True** reproduces VLFeat's two numerical shortcuts: its rational approximation of
  ``atan2`` (``vl_fast_atan2_f``, error up to 0.0061 rad) and the ``x < 1e-8 -> 0`` cut of its fast
  square root (gradient magnitudes below 1e-4 count as zero, and a descriptor whose squared norm is
  below 1e-8 is divided by ``eps`` instead of its norm, as VLFeat does). ``fast_math=False`` uses
  the exact ``atan2`` and square root. VLFeat's fast inverse square root itself (relative error
  about 5e-6) is replaced by the exact one in both modes.

Verification
------------
VLFeat itself cannot be installed here (its Python wrappers have no working package), so these
conventions were read from VLFeat's public sources: ``vl/dsift.c`` and ``vl/dsift.h`` (kernels,
window means, sampling, frame centres, mass, normalisation, transposition), ``vl/imopv.c``
(``vl_imconvcol`` is a true convolution with padding by continuity; ``vl_imconvcoltri`` a unit-area
triangular kernel ``max(s - |t|, 0) / s^2``), ``vl/mathop.h`` (``vl_fast_atan2_f``,
``vl_fast_sqrt_f``, ``vl_mod_2pi_f``), ``toolbox/sift/vl_dsift.c`` (1-based frames, bounds, the
``512 v`` conversion) and ``toolbox/sift/vl_phow.m`` with ``toolbox/imop/vl_imsmooth.c`` (scale
alignment, smoothing, contrast threshold). ``tests/fv/test_dsift.py`` checks this module against an
independently written per-key-point, per-pixel loop over the same definitions (flat and Gaussian
windows, steps 1 to 6, bin sizes 1 to 6, non-square images, bounds, both ``fast_math`` settings):
frames, norms and descriptors agree to 1e-12 in float64 and to 5e-6 in float32 (measured 1.2e-6).
Against OpenCV's ``SIFT.compute`` on the same grid of a photograph, the Gaussian window of
``window_size=2`` (OpenCV's window) gives a median cosine similarity of 1 - 3e-5 on interior
frames, limited by OpenCV's rounding of its descriptors; the fast window 0.998. VLFeat's own test
of the fast window (``toolbox/xtest/vl_test_dsift.m``: ``std(fast - slow) / std(slow) < 0.1`` at
window size 5) gives 0.014. No published VLFeat descriptor values were available to compare
against, so agreement with VLFeat's binaries is inferred from its sources, not measured.

The OpenCV backend
------------------
``backend="opencv"`` computes the descriptors with ``cv2.SIFT_create(sigma=0.5).compute`` on the
same key points, one image at a time (the slow reference). OpenCV's bin width is
``3 * size / 2`` pixels, so the key point size is ``2 * bin_size / 3``; the angle is 0 (OpenCV
measures ``360 - angle``; the default ``-1`` would rotate the patch by one degree). ``sigma=0.5``
makes OpenCV's initial blur ``sqrt(max(sigma^2 - 0.5^2, 0.01)) = 0.1`` pixel, i.e. none, like
``vl_dsift``. OpenCV always uses its Gaussian window of 2 bins (our ``fast=False,
window_size=2``) and rounds its descriptors to integers in ``[0, 255]``; ``fast``, ``window_size``
and ``fast_math`` do not apply to it. It needs 8-bit images: an image with values in ``[0, 1]`` is
scaled by 255 and rounded, any other range is first stretched to ``[0, 1]`` (SIFT descriptors are
invariant to such affine changes up to rounding). Frame norms (``norm=True``) always come from the
torch path.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._compute import chunk_rows, resolve_device

__all__ = ["DESCRIPTOR_SIZE", "dsift", "dsift_grid", "phow"]

NUM_SPATIAL_BINS = 4  # per axis
NUM_ORIENTATIONS = 8
DESCRIPTOR_SIZE = NUM_SPATIAL_BINS * NUM_SPATIAL_BINS * NUM_ORIENTATIONS  # 128

_EPS_F = 1.19209290e-07  # VL_EPSILON_F = 2^-23
_SQRT_CUT = 1e-8  # vl_fast_sqrt_f(x) returns 0 for x < 1e-8
_CLIP = 0.2  # Lowe's clipping of normalised histogram entries
_ATAN_C1, _ATAN_C3 = 0.9675, 0.1821  # vl_fast_atan2_f's cubic
_BINS_PER_RADIAN = NUM_ORIENTATIONS / (2.0 * math.pi)
# A batch is described in chunks of whole images (``_dsift_torch``); one image costs its working set
# per pixel times H * W. Per pixel: the two gradients and the eight orientation channels, plus about
# six values for the temporaries -- at the orientation step two float maps and two int64 bin indices
# (as large as four float32 maps); at the pooling step, which comes after them, the pooled maps on the
# lattice of bin centres (fewer values per pixel the coarser the lattice, gcd(step, bin_size) pixels
# apart; more when it is the pixel grid). In float32, 16 values are 64 bytes per pixel: 2**18 pixels
# per 16 MiB chunk on the CPU (the working set stays in cache), 2**24 per 1 GiB on a GPU
# (``fv._compute``).
_WORKING_VALUES_PER_PIXEL = 16

Output = Literal["unit", "scaled", "uint8"]
_OUTPUTS = ("unit", "scaled", "uint8")
_COLORS = ("gray", "rgb", "opponent", "hsv")


# ----------------------------------------------------------------------------------------------
# Grid geometry
# ----------------------------------------------------------------------------------------------


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _clip_bounds(bounds, height: int, width: int) -> tuple[int, int, int, int]:
    """``(xmin, ymin, xmax, ymax)`` clipped to the image as ``vl_dsift`` does; +-inf allowed."""
    if bounds is None:
        return 0, 0, width - 1, height - 1
    if len(bounds) != 4:
        raise ValueError(f"bounds must be (xmin, ymin, xmax, ymax), got {bounds!r}")
    values = [float(b) for b in bounds]
    if any(math.isnan(b) or not (math.isinf(b) or b.is_integer()) for b in values):
        raise ValueError(f"bounds must be integers (or +-inf), got {bounds!r}")
    xmin, ymin, xmax, ymax = values
    # clip to the image; an empty range (min > max) leaves no frames
    return (int(min(max(xmin, 0), width)), int(min(max(ymin, 0), height)),
            int(max(min(xmax, width - 1), -1)), int(max(min(ymax, height - 1), -1)))


def _grid_axis(lo: int, hi: int, step: int, bin_size: int) -> tuple[int, int]:
    """First upper-left bin centre and the number of descriptors along one axis."""
    span = hi - lo - (NUM_SPATIAL_BINS - 1) * bin_size
    return lo, (span // step + 1 if span >= 0 else 0)


def dsift_grid(height: int, width: int, *, step: int = 4, bin_size: int = 4,
               bounds: Sequence[float] | None = None) -> np.ndarray:
    """Descriptor centres of :func:`dsift` for an image of ``height x width`` pixels.

    Returns ``(N, 2)`` float64 ``(x, y)``, 0-based, row by row; ``N`` may be 0.
    """
    step = _check_positive_int("step", step)
    bin_size = _check_positive_int("bin_size", bin_size)
    xmin, ymin, xmax, ymax = _clip_bounds(bounds, height, width)
    x0, nx = _grid_axis(xmin, xmax, step, bin_size)
    y0, ny = _grid_axis(ymin, ymax, step, bin_size)
    offset = 0.5 * (NUM_SPATIAL_BINS - 1) * bin_size
    xs = x0 + step * np.arange(nx) + offset
    ys = y0 + step * np.arange(ny) + offset
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64)


# ----------------------------------------------------------------------------------------------
# Kernels (one axis; the 2-D weights are products)
# ----------------------------------------------------------------------------------------------


def _bin_offsets(bin_size: int) -> np.ndarray:
    """delta_i = s (i - 3/2): bin centre minus descriptor centre, i = 0..3."""
    return bin_size * (np.arange(NUM_SPATIAL_BINS) - 0.5 * (NUM_SPATIAL_BINS - 1))


def _triangular_kernel(bin_size: int) -> np.ndarray:
    """k(u) = 1 - |u| / s for u = -s+1 .. s-1 (length 2s - 1)."""
    u = np.arange(-bin_size + 1, bin_size)
    return 1.0 - np.abs(u) / bin_size


def _gaussian_bin_kernels(bin_size: int, window_size: float) -> np.ndarray:
    """(4, 2s - 1): weight of the pixel at offset u from the centre of bin i,
    k(u) exp(-(u + delta_i)^2 / (2 sigma^2)), sigma = window_size * s."""
    u = np.arange(-bin_size + 1, bin_size)
    sigma = bin_size * window_size
    z = (u[None, :] + _bin_offsets(bin_size)[:, None]) / sigma
    return _triangular_kernel(bin_size)[None, :] * np.exp(-0.5 * z * z)


def _window_means(bin_size: int, window_size: float) -> np.ndarray:
    """(4,): omega_i, the mean of the Gaussian window over the support of bin i (fast mode)."""
    u = np.arange(-bin_size + 1, bin_size)
    sigma = bin_size * window_size
    z = (u[None, :] - _bin_offsets(bin_size)[:, None]) / sigma
    return np.exp(-0.5 * z * z).mean(axis=1)


# ----------------------------------------------------------------------------------------------
# The vectorised pipeline (torch, CPU or CUDA, batched)
# ----------------------------------------------------------------------------------------------


def _padded_gradients(images: torch.Tensor, pad: int) -> torch.Tensor:
    """(B, H, W) -> (B, 2, H + 2 pad, W + 2 pad): (gx, gy) by central differences inside the
    image, one-sided on its border, then padded by replication.

    Padding the gradients by replication equals padding the orientation channels, which is how
    VLFeat pads them ("by continuity") before pooling.
    """
    batch, height, width = images.shape
    grads = images.new_empty((batch, 2, height + 2 * pad, width + 2 * pad))
    rows, cols = slice(pad, pad + height), slice(pad, pad + width)
    gx, gy = grads[:, 0, rows, cols], grads[:, 1, rows, cols]
    torch.sub(images[..., 2:], images[..., :-2], out=gx[..., 1:-1]).mul_(0.5)
    torch.sub(images[..., 1], images[..., 0], out=gx[..., 0])
    torch.sub(images[..., -1], images[..., -2], out=gx[..., -1])
    torch.sub(images[..., 2:, :], images[..., :-2, :], out=gy[..., 1:-1, :]).mul_(0.5)
    torch.sub(images[..., 1, :], images[..., 0, :], out=gy[..., 0, :])
    torch.sub(images[..., -1, :], images[..., -2, :], out=gy[..., -1, :])
    if pad:
        grads[..., rows, :pad] = grads[..., rows, pad:pad + 1]
        grads[..., rows, pad + width:] = grads[..., rows, pad + width - 1:pad + width]
        grads[..., :pad, :] = grads[..., pad:pad + 1, :]
        grads[..., pad + height:, :] = grads[..., pad + height - 1:pad + height, :]
    return grads


# vl_fast_atan2_f's coefficients converted from radians to orientation bins
_ATAN_C1_BINS = _ATAN_C1 * _BINS_PER_RADIAN
_ATAN_C3_BINS = _ATAN_C3 * _BINS_PER_RADIAN


def _orientation_bins(gx: torch.Tensor, gy: torch.Tensor, fast_math: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients -> (orientation + 8, magnitude): the orientation ``theta * 8 / (2 pi)`` with
    ``theta`` in ``(-pi, pi]``, shifted by 8 bins to be positive (so that truncation is floor).

    With ``fast_math`` the angle is VLFeat's ``vl_fast_atan2_f``: on
    ``r = (|x| - |y|) / (|x| + |y|)`` the first-quadrant angle is
    ``q = pi/4 + (0.1821 r^2 - 0.9675) r`` (which may leave ``[0, pi/2]`` by 2e-6), mirrored into
    the quadrant of ``(x, y)``; the magnitude is 0 where ``x^2 + y^2 < 1e-8`` (``vl_fast_sqrt_f``).
    The signs are taken by ``copysign``, so a gradient component of ``-0.0`` (possible only where
    the image holds ``-0.0``) counts as negative, where VLFeat counts it as positive: at most a
    2e-6 bin shift of that pixel. Written with in-place operations: on the CPU each new buffer
    costs page faults.
    """
    if not fast_math:
        bins = torch.atan2(gy, gx).mul_(_BINS_PER_RADIAN).add_(NUM_ORIENTATIONS)
        return bins, torch.mul(gx, gx).addcmul_(gy, gy).sqrt_()
    bins = gx.abs()
    buffer = gy.abs().add_(_EPS_F)
    r = bins - buffer
    r.div_(bins.add_(buffer))
    # first-quadrant angle in bins: q = 1 + p(r), p(r) = (4 / pi) (0.1821 r^2 - 0.9675) r
    torch.mul(r, r, out=bins).mul_(_ATAN_C3_BINS).sub_(_ATAN_C1_BINS).mul_(r)
    bins.neg_().add_(1.0)  # 2 - q
    one = gx.new_ones(())
    bins.mul_(torch.copysign(one, gx, out=buffer)).neg_().add_(2.0)  # q if x >= 0, else 4 - q
    bins.mul_(torch.copysign(one, gy, out=buffer)).add_(NUM_ORIENTATIONS)  # -angle if y < 0; + 8
    magnitude = torch.mul(gx, gx, out=r).addcmul_(gy, gy)
    F.threshold(magnitude, _SQRT_CUT, 0.0, inplace=True)
    return bins, magnitude.sqrt_()


def _orientation_channels(gx: torch.Tensor, gy: torch.Tensor, fast_math: bool) -> torch.Tensor:
    """(B, H, W) gradients -> (B, H, W, 8) magnitudes split linearly between the two nearest
    orientation bins (channels last)."""
    bins, magnitude = _orientation_bins(gx, gy, fast_math)
    lower_bin = bins.long()  # floor: bins are positive
    upper = bins.frac_().mul_(magnitude)
    lower = magnitude.sub_(upper)
    upper_bin = torch.add(lower_bin, 1).bitwise_and_(NUM_ORIENTATIONS - 1)  # mod 8
    lower_bin.bitwise_and_(NUM_ORIENTATIONS - 1)
    channels = gx.new_zeros(gx.shape + (NUM_ORIENTATIONS,))
    channels.scatter_(3, lower_bin.unsqueeze(-1), lower.unsqueeze(-1))
    channels.scatter_add_(3, upper_bin.unsqueeze(-1), upper.unsqueeze(-1))
    return channels


def _correlate_lattice(x: torch.Tensor, dim: int, start: int, stride: int, count: int,
                       kernel: Sequence[float]) -> torch.Tensor:
    """out[.., m, ..] = sum_k kernel[k] * x[.., start + stride * m + k, ..] for m < count."""
    index = [slice(None)] * x.ndim
    out = None
    for k, weight in enumerate(kernel):
        index[dim] = slice(start + k, start + k + stride * (count - 1) + 1, stride)
        term = x[tuple(index)]
        out = term * float(weight) if out is None else out.add_(term, alpha=float(weight))
    return out


def _pool_flat(channels: torch.Tensor, nx: int, ny: int, step: int, bin_size: int
               ) -> torch.Tensor:
    """(B, Hp, Wp, 8) padded channels -> (B, ny, nx, 4[j], 4[i], 8) triangular-kernel histograms
    (a strided view; the window weights omega_j omega_i are applied by the caller)."""
    g = math.gcd(step, bin_size)
    a, s = bin_size // g, step // g  # bin spacing and frame step on the lattice
    extent = (NUM_SPATIAL_BINS - 1) * a + 1  # lattice nodes spanned by one descriptor
    tri = _triangular_kernel(bin_size)
    pooled = _correlate_lattice(channels, 1, 0, g, (ny - 1) * s + extent, tri)
    pooled = _correlate_lattice(pooled, 2, 0, g, (nx - 1) * s + extent, tri)
    # (B, My, Mx, 8) -> (B, ny, Mx, 8, 4j) -> (B, ny, nx, 8, 4j, 4i)
    hist = pooled.unfold(1, extent, s)[..., ::a].unfold(2, extent, s)[..., ::a]
    return hist.permute(0, 1, 2, 4, 5, 3)


def _pool_gaussian(channels: torch.Tensor, nx: int, ny: int, step: int, bin_size: int,
                   window_size: float) -> torch.Tensor:
    """(B, Hp, Wp, 8) padded channels -> (B, ny, nx, 4[j], 4[i], 8) histograms, Gaussian window."""
    kernels = _gaussian_bin_kernels(bin_size, window_size)
    rows = torch.stack([_correlate_lattice(channels, 1, j * bin_size, step, ny, kernels[j])
                        for j in range(NUM_SPATIAL_BINS)], dim=2)  # (B, ny, 4j, Wp, 8)
    hist = torch.stack([_correlate_lattice(rows, 3, i * bin_size, step, nx, kernels[i])
                        for i in range(NUM_SPATIAL_BINS)], dim=4)  # (B, ny, 4j, nx, 4i, 8)
    return hist.permute(0, 1, 3, 2, 4, 5)


def _inverse_norm(v: torch.Tensor, fast_math: bool) -> torch.Tensor:
    """1 / (|v|_2 + eps) along the last axis (keepdim). With fast_math a norm below 1e-4
    (squared norm below 1e-8) counts as 0, as VLFeat's vl_fast_sqrt_f makes it."""
    norm = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    if fast_math:
        norm = F.threshold(norm, math.sqrt(_SQRT_CUT), 0.0)
    return norm.add_(_EPS_F).reciprocal_()


def _normalise_(hist: torch.Tensor, fast_math: bool) -> torch.Tensor:
    """L2 -> clip 0.2 -> L2 along the last axis, in place."""
    hist.mul_(_inverse_norm(hist, fast_math)).clamp_(max=_CLIP)
    return hist.mul_(_inverse_norm(hist, fast_math))


def _dsift_chunk(images: torch.Tensor, descriptors: torch.Tensor, mass: torch.Tensor, *,
                 x0: int, y0: int, nx: int, ny: int, step: int, bin_size: int, fast: bool,
                 window_size: float, fast_math: bool) -> None:
    """(b, H, W) images -> writes (b, ny * nx, 128) unit descriptors and (b, ny * nx) masses."""
    batch = images.shape[0]
    pad = bin_size - 1
    grads = _padded_gradients(images, pad)
    # crop to the rows and columns the grid reaches
    last_y = y0 + (ny - 1) * step + (NUM_SPATIAL_BINS - 1) * bin_size + 2 * pad
    last_x = x0 + (nx - 1) * step + (NUM_SPATIAL_BINS - 1) * bin_size + 2 * pad
    grads = grads[:, :, y0:last_y + 1, x0:last_x + 1]
    channels = _orientation_channels(grads[:, 0], grads[:, 1], fast_math)

    hist = descriptors.view(batch, ny, nx, NUM_SPATIAL_BINS, NUM_SPATIAL_BINS, NUM_ORIENTATIONS)
    if fast:
        hist.copy_(_pool_flat(channels, nx, ny, step, bin_size))
        omega = _window_means(bin_size, window_size)
        window_weights = np.repeat(np.outer(omega, omega).ravel(), NUM_ORIENTATIONS)  # layout order
        descriptors.mul_(torch.as_tensor(window_weights, dtype=hist.dtype, device=hist.device))
    else:
        hist.copy_(_pool_gaussian(channels, nx, ny, step, bin_size, window_size))
    del channels

    frame_extent = (NUM_SPATIAL_BINS - 1) * bin_size + 1
    torch.sum(descriptors, dim=-1, out=mass).div_(frame_extent * frame_extent)
    _normalise_(descriptors, fast_math)


def _dsift_torch(images: torch.Tensor, *, step: int, bin_size: int, fast: bool,
                 window_size: float, bounds, fast_math: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, H, W) float -> centres (N, 2), raw histograms' mass (B, N), descriptors (B, N, 128).

    The batch is processed in chunks of whole images, as many as the device's chunk budget
    holds at `_WORKING_VALUES_PER_PIXEL` values of the image dtype per pixel (``fv._compute``):
    in float32 about 2^18 pixels on the CPU, large enough to amortise the per-operation
    overhead over small images and small enough to keep the working set in cache, and 2^24 on a
    GPU.
    """
    batch, height, width = images.shape
    xmin, ymin, xmax, ymax = _clip_bounds(bounds, height, width)
    x0, nx = _grid_axis(xmin, xmax, step, bin_size)
    y0, ny = _grid_axis(ymin, ymax, step, bin_size)
    descriptors = images.new_empty((batch, ny * nx, DESCRIPTOR_SIZE))
    mass = images.new_empty((batch, ny * nx))
    image_bytes = height * width * _WORKING_VALUES_PER_PIXEL * images.element_size()
    images_per_chunk = chunk_rows(image_bytes, images.device)
    for start in range(0, batch, images_per_chunk):
        stop = min(start + images_per_chunk, batch)
        _dsift_chunk(images[start:stop], descriptors[start:stop], mass[start:stop], x0=x0, y0=y0,
                     nx=nx, ny=ny, step=step, bin_size=bin_size, fast=fast,
                     window_size=window_size, fast_math=fast_math)

    offset = 0.5 * (NUM_SPATIAL_BINS - 1) * bin_size
    xs = torch.arange(nx, dtype=images.dtype, device=images.device) * step + (x0 + offset)
    ys = torch.arange(ny, dtype=images.dtype, device=images.device) * step + (y0 + offset)
    centres = torch.stack([xs.repeat(ny), ys.repeat_interleave(nx)], dim=1)  # row by row
    return centres, mass, descriptors


# ----------------------------------------------------------------------------------------------
# The OpenCV reference backend
# ----------------------------------------------------------------------------------------------

# OpenCV orientation k is our (8 - k) mod 8: ours[t] = opencv[(8 - t) mod 8]
_OPENCV_ORIENTATION = (-np.arange(NUM_ORIENTATIONS)) % NUM_ORIENTATIONS


def _to_uint8(image: np.ndarray) -> np.ndarray:
    lo, hi = float(image.min()), float(image.max())
    if lo < 0.0 or hi > 1.0:
        image = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _dsift_opencv(images: np.ndarray, centres: np.ndarray, bin_size: int) -> np.ndarray:
    """(B, H, W) float -> (B, N, 128) float32 unit descriptors from cv2.SIFT, in our layout."""
    import cv2

    size = 2.0 * bin_size / 3.0  # OpenCV's bin width is 3 * size / 2 pixels
    keypoints = [cv2.KeyPoint(float(x), float(y), size, 0.0) for x, y in centres]
    sift = cv2.SIFT_create(sigma=0.5)
    out = np.empty((images.shape[0], len(keypoints), DESCRIPTOR_SIZE), np.float32)
    for k, image in enumerate(images):
        found, desc = sift.compute(_to_uint8(image), keypoints)
        if len(found) != len(keypoints):
            raise RuntimeError(f"OpenCV returned {len(found)} of {len(keypoints)} descriptors")
        desc = desc.reshape(-1, NUM_SPATIAL_BINS, NUM_SPATIAL_BINS, NUM_ORIENTATIONS)
        desc = desc[..., _OPENCV_ORIENTATION].reshape(-1, DESCRIPTOR_SIZE).astype(np.float64)
        norms = np.linalg.norm(desc, axis=1, keepdims=True)
        out[k] = desc / np.maximum(norms, _EPS_F)
    return out


# ----------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------


def _as_tensor(image, name: str, device) -> tuple[torch.Tensor, bool]:
    """numpy or torch floating image(s) -> torch tensor on the compute device
    (``fv._compute.resolve_device``: None is the tensor's device, or the CPU), was-numpy flag."""
    if isinstance(image, np.ndarray):
        if image.dtype not in (np.float32, np.float64):
            raise TypeError(
                f"{name} must be float32 or float64, got {image.dtype}; convert it first, e.g. "
                f"image.astype(np.float32) / 255 for 8-bit images")
        tensor = torch.from_numpy(np.ascontiguousarray(image))
        return tensor.to(resolve_device(device, tensor)), True
    if isinstance(image, torch.Tensor):
        if image.dtype not in (torch.float32, torch.float64):
            raise TypeError(
                f"{name} must be float32 or float64, got {image.dtype}; convert it first, e.g. "
                f"image.float() / 255 for 8-bit images")
        return image.to(resolve_device(device, image)).detach(), False
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(image).__name__}")


def _check_grayscale(images: torch.Tensor, name: str) -> None:
    if images.ndim == 3 and images.shape[-1] in (3, 4):
        raise ValueError(
            f"{name} of shape {tuple(images.shape)} looks like a colour image (H, W, C); dsift "
            f"takes grayscale (H, W) or a batch (B, H, W): convert it to gray first, or use "
            f"phow(..., color='rgb'|'opponent'|'hsv')")
    if images.ndim not in (2, 3):
        raise ValueError(
            f"{name} must be a grayscale image (H, W) or a batch (B, H, W), got shape "
            f"{tuple(images.shape)}")


def _check_output(output: str) -> None:
    if output not in _OUTPUTS:
        raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}")


def _format(descriptors: torch.Tensor, output: str) -> torch.Tensor:
    if output == "unit":
        return descriptors
    scaled = (512.0 * descriptors).clamp_(max=255.0)
    return scaled.to(torch.uint8) if output == "uint8" else scaled


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def dsift(
    image,
    *,
    step: int = 4,
    bin_size: int = 4,
    fast: bool = True,
    window_size: float = 2.0,
    bounds: Sequence[float] | None = None,
    norm: bool = False,
    output: Output = "unit",
    fast_math: bool = True,
    backend: Literal["torch", "opencv"] = "torch",
    device: str | torch.device | None = None,
):
    """Dense SIFT of a grayscale image, or of a batch of equally sized images, as ``vl_dsift``.

    Parameters
    ----------
    image : float32 or float64 array or tensor, ``(H, W)`` or ``(B, H, W)``
        Grayscale intensities, conventionally in ``[0, 1]`` (``phow``'s contrast threshold assumes
        it). The descriptors are computed in this dtype.
    step : int
        Grid spacing in pixels (VLFeat ``'Step'``).
    bin_size : int
        Side of a spatial bin in pixels (VLFeat ``'Size'``); a descriptor spans ``3 * bin_size + 1``
        pixels between its outer bin centres and pools ``4 * bin_size - 1`` pixels across.
    fast : bool
        Flat window with one Gaussian weight per bin (VLFeat ``'Fast'``) instead of the per-pixel
        Gaussian window.
    window_size : float
        Gaussian window sigma in bins (VLFeat ``'WindowSize'``, default 2).
    bounds : (xmin, ymin, xmax, ymax) or None
        0-based inclusive limits for the bin centres, clipped to the image (``+-inf`` allowed).
    norm : bool
        Append VLFeat's frame norm (the pre-normalisation mass, see the module docstring) as a
        third frame column. A zero norm flags a descriptor of a flat region (all zeros).
    output : "unit" | "scaled" | "uint8"
        Unit-norm floats, ``min(512 v, 255)`` floats, or that truncated to uint8.
    fast_math : bool
        Reproduce VLFeat's approximate ``atan2`` and its square-root cut-off (module docstring).
    backend : "torch" | "opencv"
        The vectorised implementation, or OpenCV's ``SIFT.compute`` on the same key points.
    device : torch device or None
        Where to compute; default: the tensor's device, or the CPU for numpy input; ``"cpu"`` is
        always the CPU.

    Returns
    -------
    frames : ``(N, 2)`` ``(x, y)``, or ``(N, 3)`` ``(x, y, norm)`` with ``norm=True``; batched
        input gives ``(B, N, 2|3)``. 0-based, row by row.
    descriptors : ``(N, 128)`` (``(B, N, 128)`` batched) in VLFeat's layout.
        numpy in, numpy out; a tensor in gives tensors on the compute device.

    Notes
    -----
    On the CPU an image costs a few dozen small tensor operations. On a busy machine torch's
    intra-op threads can stall on each of them; for throughput over many images run one torch
    thread per process (``torch.set_num_threads(1)``) and parallelise over images.
    """
    step = _check_positive_int("step", step)
    bin_size = _check_positive_int("bin_size", bin_size)
    if not (isinstance(window_size, (int, float, np.floating)) and window_size > 0):
        raise ValueError(f"window_size must be a positive number of bins, got {window_size!r}")
    _check_output(output)
    if backend not in ("torch", "opencv"):
        raise ValueError(f"backend must be 'torch' or 'opencv', got {backend!r}")

    images, was_numpy = _as_tensor(image, "image", device)
    _check_grayscale(images, "image")
    single = images.ndim == 2
    if single:
        images = images.unsqueeze(0)
    height, width = images.shape[-2:]
    extent = (NUM_SPATIAL_BINS - 1) * bin_size + 1
    if height < extent or width < extent:
        raise ValueError(
            f"image of {height} x {width} pixels is smaller than one descriptor of bin_size "
            f"{bin_size} ({extent} x {extent} pixels between outer bin centres): use a smaller "
            f"bin_size or upsample the image")
    xmin, ymin, xmax, ymax = _clip_bounds(bounds, height, width)
    if _grid_axis(xmin, xmax, step, bin_size)[1] * _grid_axis(ymin, ymax, step, bin_size)[1] == 0:
        raise ValueError(
            f"bounds {tuple(bounds)} leave no room for a descriptor of bin_size {bin_size} "
            f"({extent} x {extent} pixels) in a {height} x {width} image: widen the bounds")

    with torch.no_grad():
        centres, mass, descriptors = _dsift_torch(
            images, step=step, bin_size=bin_size, fast=fast, window_size=float(window_size),
            bounds=bounds, fast_math=fast_math)
        if backend == "opencv":
            reference = _dsift_opencv(images.cpu().numpy(), centres.cpu().numpy(), bin_size)
            descriptors = torch.as_tensor(reference, device=descriptors.device).to(images.dtype)
        frames = centres.expand(images.shape[0], -1, -1)
        if norm:
            frames = torch.cat([frames, mass.unsqueeze(-1)], dim=-1)
        descriptors = _format(descriptors, output)

    frames = frames.contiguous()
    if single:
        frames, descriptors = frames[0], descriptors[0]
    if was_numpy:
        return frames.cpu().numpy(), descriptors.cpu().numpy()
    return frames, descriptors


# ----------------------------------------------------------------------------------------------
# PHOW: multi-scale dense SIFT (vl_phow)
# ----------------------------------------------------------------------------------------------


def _smooth(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """vl_imsmooth: separable Gaussian of half-width ceil(4 sigma), normalised, padded by
    continuity; sigma < 0.01 leaves the image unchanged. (B, H, W) -> (B, H, W)."""
    if sigma < 0.01:
        return images
    half = int(math.ceil(4.0 * sigma))
    z = np.arange(-half, half + 1) / (sigma + _EPS_F)
    kernel = np.exp(-0.5 * z * z)
    kernel /= kernel.sum()
    height, width = images.shape[-2:]
    padded = F.pad(images.unsqueeze(1), (half, half, half, half), mode="replicate")[:, 0]
    out = _correlate_lattice(padded, 1, 0, 1, height, kernel)
    return _correlate_lattice(out, 2, 0, 1, width, kernel)


def _rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3) RGB in [0, 1] -> (..., 3) HSV in [0, 1], as MATLAB's rgb2hsv."""
    value, arg = rgb.max(dim=-1)
    delta = value - rgb.min(dim=-1).values
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    r, g, b = rgb.unbind(-1)
    hue = torch.where(arg == 0, (g - b) / safe,
                      torch.where(arg == 1, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = torch.where(delta > 0, torch.remainder(hue / 6.0, 1.0), torch.zeros_like(hue))
    positive = torch.where(value > 0, value, torch.ones_like(value))
    saturation = torch.where(value > 0, delta / positive, torch.zeros_like(value))
    return torch.stack([hue, saturation, value], dim=-1)


def _colour_channels(images: torch.Tensor, color: str) -> torch.Tensor:
    """(B, H, W) or (B, H, W, 3) -> (B, C, H, W) channels of vl_phow's colour space."""
    is_rgb = images.ndim == 4
    if color == "gray":
        if is_rgb:  # MATLAB's rgb2gray weights
            weights = images.new_tensor([0.2989, 0.5870, 0.1140])
            images = images @ weights
        return images.unsqueeze(1)
    rgb = images if is_rgb else images.unsqueeze(-1).expand(-1, -1, -1, 3)
    if color == "rgb":
        channels = rgb
    elif color == "opponent":  # vl_phow: intensity first, opponent axes with 1% of it added
        r, g, b = rgb.unbind(-1)
        mu = 0.3 * r + 0.59 * g + 0.11 * b
        alpha = 0.01
        channels = torch.stack([mu, (r - g) / math.sqrt(2) + alpha * mu,
                                (r + g - 2 * b) / math.sqrt(6) + alpha * mu], dim=-1)
    else:
        channels = _rgb_to_hsv(rgb)
    return channels.permute(0, 3, 1, 2)


def phow(
    image,
    *,
    sizes: Sequence[int] = (4, 6, 8, 10),
    step: int = 3,
    magnif: float = 6.0,
    window_size: float = 1.5,
    contrast_threshold: float = 0.005,
    color: Literal["gray", "rgb", "opponent", "hsv"] = "gray",
    fast: bool = True,
    output: Output = "unit",
    fast_math: bool = True,
    backend: Literal["torch", "opencv"] = "torch",
    device: str | torch.device | None = None,
):
    """Multi-scale dense SIFT as VLFeat's ``vl_phow`` (Bosch et al. 2007).

    For each bin size ``s`` in ``sizes`` the image is smoothed by a Gaussian of
    ``sigma = s / magnif`` (``vl_imsmooth``) and described by :func:`dsift` with
    ``bounds = (off, off, inf, inf)``, ``off = floor(3/2 (max(sizes) - s))``, so that all scales
    share the same descriptor centres (exactly when all sizes are even, or all odd). Descriptors
    whose contrast (the frame norm of ``dsift``; for ``'rgb'`` the mean over channels, for
    ``'hsv'`` the V channel's, for ``'opponent'`` the intensity channel's) is below
    ``contrast_threshold`` are set to zero, as in VLFeat; ``frames[:, 2] < contrast_threshold``
    flags them. (``vl_phow`` itself reports the first channel's norm in ``frames(3, :)``, which
    for ``'rgb'`` and ``'hsv'`` is not the contrast it thresholds; here the column is that
    contrast.)

    ``step=3`` is the setting of the Fisher-vector papers (Chatfield et al. 2011); ``vl_phow``'s
    own default is 2.

    Parameters
    ----------
    image : float32/float64, ``(H, W)`` or ``(B, H, W)`` gray, or ``(H, W, 3)`` / ``(B, H, W, 3)``
        RGB in ``[0, 1]``. With ``color='gray'`` RGB is converted by MATLAB's ``rgb2gray``
        weights; the colour modes replicate a gray image into three channels.
    color : "gray" | "rgb" | "opponent" | "hsv"
        ``vl_phow``'s colour variants; colour descriptors concatenate the three channels'
        128-d descriptors (``384`` dimensions, channel-major).
    Other parameters are those of :func:`dsift`.

    Returns
    -------
    frames : ``(N, 4)`` ``(x, y, contrast, size)`` (``(B, N, 4)`` batched), 0-based, scale by
        scale in the order of ``sizes`` and row by row within a scale.
    descriptors : ``(N, 128 * C)`` (``(B, N, 128 * C)`` batched).
    """
    if color not in _COLORS:
        raise ValueError(f"color must be one of {_COLORS}, got {color!r}")
    sizes = [_check_positive_int("sizes", s) for s in sizes]
    if not sizes:
        raise ValueError("sizes must name at least one bin size")
    if not magnif > 0:
        raise ValueError(f"magnif must be positive, got {magnif!r}")
    _check_output(output)

    images, was_numpy = _as_tensor(image, "image", device)
    is_rgb = images.ndim >= 3 and images.shape[-1] == 3
    if images.ndim - is_rgb not in (2, 3):
        raise ValueError(
            f"image must be (H, W), (B, H, W), (H, W, 3) or (B, H, W, 3), got shape "
            f"{tuple(images.shape)}")
    single = images.ndim - is_rgb == 2
    if single:
        images = images.unsqueeze(0)
    channels = _colour_channels(images, color)  # (B, C, H, W)
    batch, num_channels, height, width = channels.shape
    flat = channels.reshape(batch * num_channels, height, width)

    frames_per_size, descriptors_per_size = [], []
    largest = max(sizes)
    for size in sizes:
        offset = math.floor(1.5 * (largest - size))
        frames, descriptors = dsift(
            _smooth(flat, size / magnif), step=step, bin_size=size, fast=fast,
            window_size=window_size, bounds=(offset, offset, math.inf, math.inf), norm=True,
            output="unit", fast_math=fast_math, backend=backend)
        num = frames.shape[1]
        norms = frames[:, :, 2].reshape(batch, num_channels, num)
        if color == "rgb":
            contrast = norms.mean(dim=1)
        else:
            contrast = norms[:, 2 if color == "hsv" else 0]
        descriptors = descriptors.reshape(batch, num_channels, num, DESCRIPTOR_SIZE)
        descriptors = descriptors.permute(0, 2, 1, 3).reshape(batch, num, -1)
        descriptors = descriptors * (contrast >= contrast_threshold).unsqueeze(-1)
        xy = frames[::num_channels, :, :2]  # the same centres for every channel
        frames_per_size.append(torch.cat(
            [xy, contrast.unsqueeze(-1), torch.full_like(contrast, size).unsqueeze(-1)], dim=-1))
        descriptors_per_size.append(descriptors)

    frames = torch.cat(frames_per_size, dim=1)
    descriptors = _format(torch.cat(descriptors_per_size, dim=1), output)
    if single:
        frames, descriptors = frames[0], descriptors[0]
    if was_numpy:
        return frames.cpu().numpy(), descriptors.cpu().numpy()
    return frames, descriptors
