"""The classical pipeline: dense SIFT, PCA/RootSIFT, diagonal GMM, Fisher vectors, linear SVM.

A library: no command line and no knowledge of data sets (those live in ``experiments``).

    images -> phow (multi-scale dense SIFT) -> root_sift -> PCA -> DiagonalGMM
           -> (spatial-pyramid) improved Fisher vectors -> linear SVM

``FisherVectorEncoder`` and ``make_pipeline`` wrap the whole chain as scikit-learn estimators.
"""

from .dsift import dsift, dsift_grid, phow
from .encoder import FisherVectorEncoder, ValidatedLinearSVM, encode_to_file, make_pipeline, root_sift
from .complexity import complexity
from .fisher import (
    fisher_information,
    fisher_kernel,
    fisher_score,
    fisher_vector,
    fisher_vectors,
    spatial_pyramid_cells,
    spatial_pyramid_fisher_vector,
    spatial_pyramid_fisher_vectors,
)
from .gmm import DiagonalGMM, GMMParameters
from .svm import LinearSVM

__all__ = [
    "dsift", "dsift_grid", "phow", "root_sift",
    "DiagonalGMM", "GMMParameters",
    "fisher_vector", "fisher_vectors", "fisher_score", "fisher_information", "fisher_kernel",
    "spatial_pyramid_cells", "spatial_pyramid_fisher_vector", "spatial_pyramid_fisher_vectors",
    "LinearSVM", "ValidatedLinearSVM",
    "FisherVectorEncoder", "make_pipeline", "encode_to_file", "complexity",
]
