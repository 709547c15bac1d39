"""End to end: dense SIFT + improved Fisher vectors + linear SVM on Fashion-MNIST.

    python benchmarks/fashion_mnist_fv.py [--n-train 60000] [--jobs 2] [--device cuda] [--out fv-fashion.json]

Fits the encoder on the training images (PCA + GMM on a descriptor sample), encodes train and test,
picks C on a stratified 10% validation part of train, refits on all of train and reports test
accuracy, with the time and peak memory of every stage. The test split is used for the final number
only. The encoder settings are the main experiment's for small images (``FV_SMALL`` of
``experiments.fv_vs_alexnet``: images scaled by 2, bin sizes 4, 6, 8, step 2, PCA to 32 dimensions,
32 Gaussians, 1x1 + 2x2 pyramid); the SVM's are ``ValidatedLinearSVM``'s defaults but for ``--Cs``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from datetime import datetime, timezone

import numpy as np

from experiments import datasets
from experiments.fv_vs_alexnet import FV_SMALL
from fv.encoder import FisherVectorEncoder, ValidatedLinearSVM

#: the small-image settings of the main experiment (see its FV_SMALL)
SETTINGS = FV_SMALL


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-train", type=int, default=60000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--Cs", type=float, nargs="+", default=[1.0, 10.0, 100.0])
    parser.add_argument("--solver", default="auto", choices=("auto", "liblinear", "torch"))
    parser.add_argument("--device", default=None, help="cuda: encoder chain, GMM and SVM on the GPU")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    train, test = datasets.load("fashion-mnist", "train"), datasets.load("fashion-mnist", "test")
    idx = np.arange(len(train))
    if args.n_train < len(train):
        idx = np.sort(np.random.default_rng(0).choice(len(train), args.n_train, replace=False))
    X_train, y_train = train.images[idx], train.labels[idx]
    timings = {}
    encoder = FisherVectorEncoder(n_jobs=args.jobs, random_state=0, verbose=True, device=args.device, **SETTINGS)

    t = time.perf_counter()
    encoder.fit(X_train)
    timings["fit_pca_gmm_s"] = time.perf_counter() - t
    t = time.perf_counter()
    F_train = encoder.transform(X_train)
    timings["encode_train_s"] = time.perf_counter() - t
    t = time.perf_counter()
    F_test = encoder.transform(test.images)
    timings["encode_test_s"] = time.perf_counter() - t
    t = time.perf_counter()
    svm = ValidatedLinearSVM(Cs=args.Cs, solver=args.solver, device=args.device, random_state=0).fit(F_train, y_train)
    timings["svm_s"] = time.perf_counter() - t
    accuracy = float(np.mean(svm.predict(F_test) == test.labels))
    figures = {
        "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "device": args.device or "cpu",
        "n_train": len(idx), "n_test": len(test), "settings": {k: str(v) for k, v in SETTINGS.items()},
        "fv_dim": encoder.n_features_out_, "fv_matrix_gib": F_train.nbytes / 1024**3,
        "solver": svm.solver_, "validation_scores": svm.validation_scores_, "best_C": svm.best_C_,
        "test_accuracy": accuracy, "peak_rss_gib": peak_rss_gib(),
        **{k: round(v, 1) for k, v in timings.items()}, "total_s": round(sum(timings.values()), 1),
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
