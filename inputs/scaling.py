"""Per-feature standardization fitted on the training rows only."""

from __future__ import annotations

import numpy as np


class Standardizer:
    """Per-feature z-scoring with statistics fitted on the training set only.

    Fitting on train alone keeps test/latest data from leaking into the model.
    """

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> "Standardizer":
        """Learn mean and std per feature (float64, for accuracy) from X."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"Standardizer.fit needs a non-empty 2-D array, got shape {X.shape}")
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        # A constant feature has std 0 (or rounding noise around 0), and
        # dividing by it gives NaN/inf; with std 1 it simply maps to ~0.
        constant = X.max(axis=0) == X.min(axis=0)
        self.std_ = np.where(constant | ~(std > 0), 1.0, std)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Return (X - mean) / std as float32, using the fitted statistics."""
        if self.mean_ is None or self.std_ is None:
            raise RuntimeError("Standardizer.transform called before fit")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.mean_.shape[0]:
            raise ValueError(f"expected a 2-D array with {self.mean_.shape[0]} features, got shape {X.shape}")
        return ((X - self.mean_) / self.std_).astype(np.float32)
