"""Helpers the tests share: small data files written by the tests themselves."""
from pathlib import Path

import numpy as np


def write_dat(path: Path, rows: int, seed: int) -> None:
    """A small D.AT file with a learnable signal: label 1 when the first two features are high."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 8))
    y = (x[:, 0] + x[:, 1] + rng.normal(scale=1.0, size=rows) > 0.8).astype(int)
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", fmt=["%.5f"] * 8 + ["%d"])


def write(path: Path, text) -> Path:
    """Write str (as UTF-8, newlines untouched) or bytes to path."""
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path
