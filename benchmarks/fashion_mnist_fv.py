"""End to end: dense SIFT + improved Fisher vectors + linear SVM on Fashion-MNIST, as the main experiment runs it.

    python benchmarks/fashion_mnist_fv.py [--n-train 60000] [--jobs 2] [--device cuda] [--out fv-fashion.json]

The FV row of ``python -m experiments.run fv_vs_alexnet --preset full --methods fv_pyramid``, written
out with the library alone (the README's example): the training images are cut into a fit part and
a stratified 10% validation part (``datasets.validation_split``, seed 0); the encoder
(``FV_SMALL``: images scaled by 2, bin sizes 4, 6, 8, step 2, PCA to 32 dimensions, 32 Gaussians,
1x1 + 2x2 pyramid) is fitted on the fit part; ``fv.ValidatedLinearSVM`` trains one SVM per C on the
fit part and keeps the C with the best validation accuracy, without a refit; the test split gives
the final number only. Prints the time and peak memory of every stage.
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

import fv
from experiments import datasets
from experiments.fv_vs_alexnet import FV_SMALL, PRESETS

FULL = PRESETS["full"]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-train", type=int, default=60000, help="training images (a stratified subset)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--Cs", type=float, nargs="+", default=list(FULL.Cs))
    parser.add_argument("--device", default=None, help="cuda: encoder chain, GMM and SVM on the GPU")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    train, test = datasets.load("fashion-mnist", "train"), datasets.load("fashion-mnist", "test")
    keep = np.arange(len(train))
    if args.n_train < len(train):
        _, keep = datasets.validation_split(train.labels, args.n_train / len(train), seed=0)
    fit_rel, val_rel = datasets.validation_split(train.labels[keep], 0.1, seed=0)
    fit, val = keep[fit_rel], keep[val_rel]
    timings = {}

    t = time.perf_counter()
    encoder = fv.FisherVectorEncoder(**FV_SMALL, n_jobs=args.jobs, device=args.device, random_state=0,
                                     verbose=True).fit(train.images[fit])
    timings["fit_pca_gmm_s"] = time.perf_counter() - t
    features = {}
    for part, images in (("fit", train.images[fit]), ("val", train.images[val]), ("test", test.images)):
        t = time.perf_counter()
        features[part] = encoder.transform(images)
        timings[f"encode_{part}_s"] = time.perf_counter() - t
    t = time.perf_counter()
    svm = fv.ValidatedLinearSVM(Cs=args.Cs, refit=False, solver="torch", tol=FULL.svm_tol, device=args.device,
                                random_state=0)
    svm.fit(features["fit"], train.labels[fit], validation=(features["val"], train.labels[val]))
    timings["svm_s"] = time.perf_counter() - t
    accuracy = float(np.mean(svm.predict(features["test"]) == test.labels))
    figures = {
        "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "device": args.device or "cpu",
        "n_fit": len(fit), "n_val": len(val), "n_test": len(test),
        "settings": {k: str(v) for k, v in FV_SMALL.items()},
        "fv_dim": encoder.n_features_out_, "fv_matrix_gib": features["fit"].nbytes / 1024**3,
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
