"""Input checks shared by the torch estimators of ``fv`` (``DiagonalGMM``, ``LinearSVM``).

Numpy input goes through scikit-learn's ``validate_data`` in each estimator; a torch tensor is
checked here with the same rules and messages, without copying it to the host. Devices are
resolved by ``fv._compute.resolve_device``.
"""

from __future__ import annotations

import torch

from ._compute import chunk_rows


def validate_tensor(estimator, X: torch.Tensor, *, reset: bool, min_samples: int = 1) -> torch.Tensor:
    """``X`` checked as a real, finite 2-D tensor of at least ``min_samples`` rows and one column.

    Integer tensors become float64. With ``reset`` the estimator's ``n_features_in_`` is set (and a
    ``feature_names_in_`` of an earlier fit dropped); otherwise X must have that many features.
    """
    name = type(estimator).__name__
    if X.ndim != 2:
        raise ValueError(
            f"Expected a 2-D tensor of shape (n_samples, n_features), got shape "
            f"{tuple(X.shape)}. Reshape 1-D input with X.reshape(-1, 1) or X.reshape(1, -1)."
        )
    if X.is_complex():
        raise ValueError("Complex data not supported; pass real features.")
    if not X.is_floating_point():
        X = X.to(torch.float64)
    if X.shape[0] < min_samples:
        raise ValueError(f"Found a tensor with {X.shape[0]} sample(s); at least {min_samples} required.")
    if X.shape[1] < 1:
        raise ValueError("Found a tensor with 0 features; at least 1 required.")
    # The finiteness check goes over X in chunks of rows, so a large tensor needs no full-size mask.
    # A row is one sample: D values of X and D one-byte values of the mask.
    rows = chunk_rows(X.shape[1] * (X.element_size() + 1), X.device)
    for start in range(0, X.shape[0], rows):
        if not bool(torch.isfinite(X[start : start + rows]).all()):
            raise ValueError(
                "Input X contains NaN or infinity (first in rows "
                f"{start}..{min(start + rows, X.shape[0]) - 1}); remove or impute those values."
            )
    if reset:
        estimator.n_features_in_ = X.shape[1]
        if hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    elif X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {name} is expecting {estimator.n_features_in_} features as input."
        )
    return X
