"""Side-by-side speed of the classical pipeline's parts against the peers a user would otherwise pick.

    python benchmarks/bench_fv.py [--repeats 7] [--only dsift,fisher,gmm] [--threads N]

- dsift: ``fv.dsift`` (fast mode) against OpenCV's ``SIFT.compute`` on the same 61 x 61 grid of a
  256 x 256 image (step 4, bin size 4: 3,721 descriptors). OpenCV is timed with the key-point size
  whose bins match ours (size = 2 * bin / 3, bin width 4 px) and, for reference, with a size four
  times larger (bin width 16 px).
- fisher: ``fv.fisher_vectors`` (improved, batched, float32) against scikit-image's ``fisher_vector``
  in float32 (GMM and descriptors) and in float64, per image, N = 1000 descriptors, D = 64, K = 256
  and K = 64; and the time of our two matrix products alone, the floor of the formulation.
- gmm: ``fv.DiagonalGMM`` against scikit-learn's ``GaussianMixture(covariance_type="diag")`` on
  100,000 x 64, K = 64, 20 EM iterations from the same initial parameters; log-likelihoods compared.

Every pair is timed in this one process, alternating, and the median of ``--repeats`` runs is
reported with the ratio peer / ours. Results print as a Markdown table (paste into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from datetime import datetime, timezone

import numpy as np
import torch


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_dsift(repeats: int) -> list[dict]:
    import cv2
    from skimage import data

    from fv.dsift import dsift, dsift_grid

    u8 = np.ascontiguousarray(data.camera()[128:384, 128:384])
    img = u8.astype(np.float32) / 255
    batch = np.stack([img] * 16)
    centres = dsift_grid(256, 256, step=4, bin_size=4)
    sift = cv2.SIFT_create(sigma=0.5)
    matched = [cv2.KeyPoint(float(x), float(y), 8 / 3, 0.0) for x, y in centres]  # bin width 1.5 * size = 4 px
    large = [cv2.KeyPoint(float(x), float(y), 32 / 3, 0.0) for x, y in centres]  # 16 px
    ours = median_time(lambda: dsift(img, step=4, bin_size=4, fast=True), repeats)
    ours_batch = median_time(lambda: dsift(batch, step=4, bin_size=4, fast=True), max(3, repeats // 2)) / 16
    cv_matched = median_time(lambda: sift.compute(u8, matched), repeats)
    cv_large = median_time(lambda: sift.compute(u8, large), max(3, repeats // 2))
    return [
        {"task": "dsift 256x256, step 4, bin 4, fast (per image)", "ours_ms": ours * 1e3,
         "peer": "OpenCV SIFT.compute, same bins (size 8/3)", "peer_ms": cv_matched * 1e3, "ratio": cv_matched / ours},
        {"task": "dsift, batch of 16 (per image)", "ours_ms": ours_batch * 1e3,
         "peer": "OpenCV SIFT.compute, same bins (size 8/3)", "peer_ms": cv_matched * 1e3, "ratio": cv_matched / ours_batch},
        {"task": "dsift (per image)", "ours_ms": ours * 1e3,
         "peer": "OpenCV SIFT.compute, 16 px bins (size 32/3)", "peer_ms": cv_large * 1e3, "ratio": cv_large / ours},
    ]


def bench_fisher(repeats: int) -> list[dict]:
    from skimage.feature import fisher_vector as sk_fisher_vector
    from sklearn.mixture import GaussianMixture

    from fv.fisher import fisher_vectors

    rows = []
    rng = np.random.default_rng(0)
    n_images, n, d = 64, 1000, 64
    sets = [rng.normal(size=(n, d)).astype(np.float32) for _ in range(n_images)]
    for k in (256, 64):
        gmm = GaussianMixture(k, covariance_type="diag", max_iter=1, init_params="random_from_data",
                              random_state=0).fit(np.concatenate(sets[:8]))
        ours = median_time(lambda: fisher_vectors(sets, gmm, improved=True), repeats) / n_images
        # the floor of this formulation: its two matrix products alone, chunked as fisher_vectors does
        chunk = max(1, 2**21 // (n * k))
        z, w = torch.randn(chunk * n, 2 * d + 1), torch.randn(2 * d + 1, k)
        q = torch.rand(chunk, n, k)
        products = median_time(lambda: (z @ w, torch.bmm(q.transpose(1, 2), z.view(chunk, n, -1))), repeats) / chunk
        rows.append({"task": f"FV encode K={k}: its two matrix products alone (per image)",
                     "ours_ms": products * 1e3, "peer": "(fv.fisher_vectors, whole)", "peer_ms": ours * 1e3,
                     "ratio": ours / products, "note": "the share of the time that is not the products"})
        sk_sets = sets[:8]
        # scikit-image computes in the precision of the GMM and the descriptors: float32 throughout
        # (GMM fitted on float32 data, descriptors as dense SIFT gives them), as ours, and float64
        # throughout (scikit-learn's default for float64 data)
        gmm64 = copy.deepcopy(gmm)
        for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
            setattr(gmm64, attr, getattr(gmm, attr).astype(np.float64))
        for name, model, dtype in (("float32", gmm, np.float32), ("float64", gmm64, np.float64)):
            cast = [s.astype(dtype) for s in sk_sets]
            peer = median_time(lambda: [sk_fisher_vector(s, model, improved=True) for s in cast],
                               max(3, repeats // 2)) / len(cast)
            rows.append({"task": f"FV encode N=1000, D=64, K={k}, improved (per image)", "ours_ms": ours * 1e3,
                         "peer": f"scikit-image fisher_vector, {name}", "peer_ms": peer * 1e3, "ratio": peer / ours})
    return rows


def bench_gmm(repeats: int) -> list[dict]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    from fv.gmm import DiagonalGMM

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(64, 64))
    X64 = centres[rng.integers(0, 64, 100_000)] + rng.normal(size=(100_000, 64))
    X = X64.astype(np.float32)  # ours computes in float32; scikit-learn gets float64 (float32 breaks it here)
    init = X[rng.choice(len(X), 64, replace=False)].astype(np.float64)
    weights = np.full(64, 1 / 64)
    precisions = np.ones((64, 64))
    results = {}

    def ours():
        results["ours"] = DiagonalGMM(64, max_iter=20, tol=0, means_init=init, weights_init=weights,
                                      precisions_init=precisions).fit(X)

    def peer():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            results["peer"] = GaussianMixture(64, covariance_type="diag", max_iter=20, tol=0, means_init=init,
                                              weights_init=weights, precisions_init=precisions,
                                              reg_covar=0.0).fit(X64)

    r = max(3, repeats // 2)
    t_ours, t_peer = median_time(ours, r), median_time(peer, r)
    ll_ours, ll_peer = results["ours"].score(X64), results["peer"].score(X64)
    return [{"task": "GMM fit 100,000 x 64, K=64, 20 EM iterations", "ours_ms": t_ours * 1e3,
             "peer": "scikit-learn GaussianMixture(diag)", "peer_ms": t_peer * 1e3, "ratio": t_peer / t_ours,
             "note": f"mean log-likelihood {ll_ours:.4f} vs {ll_peer:.4f} "
                     f"({abs(ll_ours - ll_peer) / abs(ll_peer) * 100:.4f}% apart)"}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", default="dsift,fisher,gmm")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for torch, OpenCV and BLAS alike (default: each library's own)")
    args = parser.parse_args()
    if args.threads:
        import cv2
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
        threadpool_limits(args.threads)  # numpy/scipy BLAS (scikit-image, scikit-learn)
    benches = {"dsift": bench_dsift, "fisher": bench_fisher, "gmm": bench_gmm}
    rows = []
    for name in args.only.split(","):
        rows += benches[name](args.repeats)
    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"median of {args.repeats} runs")
    print("\n| task | ours (ms) | peer | peer (ms) | peer / ours | note |")
    print("|---|---:|---|---:|---:|---|")
    for r in rows:
        print(f"| {r['task']} | {r['ours_ms']:.2f} | {r['peer']} | {r['peer_ms']:.2f} | {r['ratio']:.1f}x | "
              f"{r.get('note', '')} |")


if __name__ == "__main__":
    main()
