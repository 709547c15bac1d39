"""Peak memory of encoding the 60,000 Fashion-MNIST training images into one FV matrix.

    python benchmarks/fv_memory.py [--jobs 2] [--backend auto|threading|loky]

Fits the encoder of ``fashion_mnist_fv.py`` (same settings), then encodes the training set into
one preallocated float32 array with ``--jobs`` workers, and prints:

- the size of the FV matrix;
- the memory of the whole process tree (this process and its workers, proportional set size, so
  that libraries shared between processes count once), sampled every 0.1 s: just before encoding,
  and its peak during encoding; the peak minus the matrix is what the encoding needs beyond it;
- for comparison, this process's peak resident set size as the kernel reports it (``getrusage``).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from experiments import datasets
from experiments.fv_vs_alexnet import FV_SMALL as SETTINGS  # the settings of fashion_mnist_fv.py
from experiments.report import PeakMemory
from fv.encoder import FisherVectorEncoder

GIB = 1024**3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--backend", default="auto", help="joblib backend of the encoder (default: its own)")
    args = parser.parse_args()

    X = datasets.load("fashion-mnist", "train").images
    encoder = FisherVectorEncoder(n_jobs=args.jobs, backend=args.backend, random_state=0, **SETTINGS).fit(X)
    with PeakMemory(interval=0.1) as before:
        pass
    t = time.perf_counter()
    with PeakMemory(interval=0.1) as during:
        F = encoder.transform(X)
    seconds = time.perf_counter() - t
    figures = {
        "fv_matrix_gib": F.nbytes / GIB,
        "tree_before_encoding_gib": before.peak_bytes / GIB,
        "tree_peak_during_encoding_gib": during.peak_bytes / GIB,
        "tree_peak_minus_matrix_gib": (during.peak_bytes - F.nbytes) / GIB,
        "parent_maxrss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "images_gib": X.nbytes / GIB,
        "jobs": args.jobs,
        "backend": encoder._backend(),
        "encode_s": round(seconds, 1),
    }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}, indent=2))


if __name__ == "__main__":
    main()
