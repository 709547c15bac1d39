"""Throughput of the classical pipeline on a GPU: dense SIFT, GMM fitting, batched Fisher vectors.

    python benchmarks/gpu_fv.py [--device cuda] [--repeats 5] [--out gpu-fv.json]

- dsift: ``fv.dsift`` (fast mode, step 4, bin size 4) on a batch of 256 x 256 images on the device:
  images per second.
- gmm: ``fv.DiagonalGMM`` on 100,000 x 64 descriptors (``--gmm-rows``), K = 64, 20 EM iterations:
  seconds.
- fisher: ``fv.fisher_vectors`` (improved) on a padded (B, 1000, 64) batch already on the device,
  K = 256 (and K = 64), fp32: images per second (the goal: 100,000 per second on an
  H100/H200 for K = 256).
- encoder: ``FisherVectorEncoder`` with ``fv_vs_alexnet``'s settings for small images, fitted on
  2,000 Fashion-MNIST training images (``--fit-images``; random uint8 images where the data set is
  missing), encoding ``--encode-images`` test images from uint8 on the host to Fisher vectors on the
  host, on the device and, on the first 512 of them, with the CPU workers (``--jobs``): images per
  second for each, and the largest difference between the two (before the signed square root, where
  float32 rounding is not magnified). Timed once, after a warm-up on 64 images.

The other figures are the median of ``--repeats`` timed runs after one warm-up, with
``torch.cuda.synchronize`` around each. ``--device cpu`` runs the same code on the CPU (a check
that the script works, run by the tests at small sizes; the CPU comparison against the peers is
``bench_fv.py``).
"""

from __future__ import annotations

import argparse
import json
import os
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


def fashion_or_random(split: str, n: int) -> tuple[np.ndarray, str]:
    try:
        from experiments import datasets

        return datasets.load("fashion-mnist", split).images[:n], "Fashion-MNIST"
    except (FileNotFoundError, OSError, ValueError) as err:
        print(f"Fashion-MNIST not found ({err}); random images instead")
        return np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8), "random 28 x 28"


def bench_encoder(device: torch.device, n_fit: int, n_images: int, jobs: int) -> dict:
    from experiments.fv_vs_alexnet import FV_SMALL
    from fv.encoder import FisherVectorEncoder

    train, source = fashion_or_random("train", n_fit)
    test, _ = fashion_or_random("test", n_images)
    params = {**FV_SMALL, "n_fit_images": len(train)}
    on_device = FisherVectorEncoder(**params, device=device).fit(train)
    on_device.transform(test[:64])  # warm-up
    t = time.perf_counter()
    got = on_device.transform(test)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t
    workers = FisherVectorEncoder(**params, n_jobs=jobs)
    workers.pca_, workers.gmm_, workers.n_features_out_ = on_device.pca_, on_device.gmm_, on_device.n_features_out_
    few = test[:512]
    t = time.perf_counter()
    expected = workers.transform(few)
    cpu_seconds = time.perf_counter() - t
    difference = float(np.abs(got[: len(few)] * np.abs(got[: len(few)]) - expected * np.abs(expected)).max())
    print(f"FisherVectorEncoder ({source}, fv_vs_alexnet's small-image settings, dim {got.shape[1]}): "
          f"{len(test) / seconds:,.0f} images/s on {device}, {len(few) / cpu_seconds:,.0f} images/s with "
          f"{jobs} CPU workers; largest difference {difference:.1e} (before the square root)")
    return {"encoder_images_per_s": round(len(test) / seconds, 1),
            "encoder_cpu_workers_images_per_s": round(len(few) / cpu_seconds, 1), "encoder_cpu_workers": jobs,
            "encoder_max_unpowered_difference": difference, "encoder_data": source}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dsift-batch", type=int, default=64)
    parser.add_argument("--fv-batch", type=int, default=2048)
    parser.add_argument("--gmm-rows", type=int, default=100_000)
    parser.add_argument("--fit-images", type=int, default=2000)
    parser.add_argument("--encode-images", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
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

    X = torch.randn(args.gmm_rows, 64, generator=gen).to(device)
    X[: args.gmm_rows // 2] += 2.0

    def fit_gmm():
        fv.DiagonalGMM(64, max_iter=20, tol=0.0, random_state=0, device=device).fit(X)

    seconds = timed(fit_gmm, device, max(1, args.repeats // 2))
    figures["gmm_rows"] = args.gmm_rows
    figures["gmm_x64_K64_20it_s"] = round(seconds, 3)
    print(f"GMM {args.gmm_rows:,} x 64, K=64, 20 iterations: {seconds:.3f} s")

    D, N, B = 64, 1000, args.fv_batch
    descriptors = torch.randn(B, N, D, generator=gen).to(device)
    for K in (256, 64):
        rng = np.random.default_rng(K)
        means = rng.normal(size=(K, D)).astype(np.float32)
        variances = rng.uniform(0.5, 2.0, size=(K, D)).astype(np.float32)
        mixture = fv.GMMParameters(means, variances, np.full(K, 1.0 / K, np.float32))
        seconds = timed(lambda: fv.fisher_vectors(descriptors, mixture, improved=True,
                                                  device=device, dtype=torch.float32), device, args.repeats)
        figures[f"fv_K{K}_images_per_s"] = round(B / seconds, 1)
        print(f"Fisher vectors N={N}, D={D}, K={K}, batch {B}: {B / seconds:,.0f} images/s")
    figures.update(bench_encoder(device, args.fit_images, args.encode_images, args.jobs))
    print(json.dumps(figures, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
