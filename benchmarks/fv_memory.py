"""Peak memory of encoding the 60,000 Fashion-MNIST training images into one FV matrix.

    python benchmarks/fv_memory.py

Fits the encoder of ``fashion_mnist_fv.py`` (same settings), then encodes the training set into
one preallocated float32 array with two joblib workers, and prints the parent's peak resident
memory before and after, the largest worker's, and the size of the matrix.
"""
import os
import resource, time, numpy as np
from experiments import datasets
from fv.encoder import FisherVectorEncoder
import sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fashion_mnist_fv import SETTINGS
X = datasets.load("fashion-mnist", "train").images
enc = FisherVectorEncoder(n_jobs=2, random_state=0, **SETTINGS).fit(X)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
t = time.perf_counter(); F = enc.transform(X); dt = time.perf_counter() - t
self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
print(f"FV matrix {F.nbytes/1024**3:.2f} GiB; parent peak before transform {before:.2f} GiB, after {self_peak:.2f} GiB; "
      f"largest worker peak {kids:.2f} GiB; images {X.nbytes/1024**3:.3f} GiB; encode {dt:.0f} s")
