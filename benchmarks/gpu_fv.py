"""Throughput of the classical pipeline on a GPU: dense SIFT, GMM fitting, batched Fisher vectors.

    python benchmarks/gpu_fv.py [--device cuda] [--repeats 5] [--out gpu-fv.json]

- dsift: ``fv.dsift`` (fast mode, step 4, bin size 4) on a batch of 256 x 256 images on the device:
  images per second.
- gmm: ``fv.DiagonalGMM`` on 100,000 x 64 descriptors, K = 64, 20 EM iterations: seconds.
- fisher: ``fv.fisher_vectors`` (improved) on a padded (B, 1000, 64) batch already on the device,
  K = 256 (and K = 64), fp32: images per second (the goal: 100,000 per second on an
  H100/H200 for K = 256).

Every figure is the median of ``--repeats`` timed runs after one warm-up, with
``torch.cuda.synchronize`` around each. ``--device cpu`` runs the same code on the CPU (a check
that the script works; the CPU comparison against the peers is ``bench_fv.py``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone

import numpy as np
import torch

import fv


def timed(fn, device: torch.device, repeats: int) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dsift-batch", type=int, default=64)
    parser.add_argument("--fv-batch", type=int, default=2048)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    figures: dict = {
        "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine()),
        "torch": torch.__version__,
    }

    images = torch.rand(args.dsift_batch, 256, 256, generator=gen).to(device)
    seconds = timed(lambda: fv.dsift(images, step=4, bin_size=4, fast=True, device=device), device, args.repeats)
    figures["dsift_images_per_s"] = round(args.dsift_batch / seconds, 1)
    print(f"dsift 256x256, batch {args.dsift_batch}: {args.dsift_batch / seconds:,.0f} images/s")

    X = torch.randn(100_000, 64, generator=gen).to(device)
    X[:50_000] += 2.0

    def fit_gmm():
        fv.DiagonalGMM(64, max_iter=20, tol=0.0, random_state=0, device=device).fit(X)

    seconds = timed(fit_gmm, device, max(1, args.repeats // 2))
    figures["gmm_100k_x64_K64_20it_s"] = round(seconds, 3)
    print(f"GMM 100,000 x 64, K=64, 20 iterations: {seconds:.3f} s")

    D, N, B = 64, 1000, args.fv_batch
    descriptors = torch.randn(B, N, D, generator=gen).to(device)
    for K in (256, 64):
        rng = np.random.default_rng(K)
        means = rng.normal(size=(K, D)).astype(np.float32)
        variances = rng.uniform(0.5, 2.0, size=(K, D)).astype(np.float32)
        priors = np.full(K, 1.0 / K, np.float32)
        seconds = timed(lambda: fv.fisher_vectors(descriptors, means, variances, priors, improved=True,
                                                  device=device, dtype=torch.float32), device, args.repeats)
        figures[f"fv_K{K}_images_per_s"] = round(B / seconds, 1)
        print(f"Fisher vectors N={N}, D={D}, K={K}, batch {B}: {B / seconds:,.0f} images/s")
    print(json.dumps(figures, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
