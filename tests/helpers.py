"""Helpers the tests share: small data files written by the tests themselves, and reading them back."""
import re
from pathlib import Path

import numpy as np

from inputs.errors import DataError
from inputs.files import load_labelled
from records.claims import finished_in


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


def xy(path) -> tuple[np.ndarray, np.ndarray]:
    """A labelled file's features and labels."""
    loaded = load_labelled(path)
    return loaded.x, loaded.y


def fmt(value) -> str:
    """Shortest text that parses back to exactly this float32 value."""
    return repr(float(np.float32(value)))


def labelled_text(X, y, newline="\n") -> str:
    rows = [",".join([fmt(v) for v in row] + [str(int(label))]) for row, label in zip(X, y)]
    return newline.join(rows) + newline


def random_labelled(n_rows, n_features, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n_rows, n_features)) * 10.0 ** rng.integers(-3, 4, size=n_features)).astype(np.float32)
    y = rng.integers(0, 2, size=n_rows).astype(np.int8)
    return X, y


def at_line(path: Path, line: int) -> str:
    """Regex for a message naming the file and then the given line number."""
    return rf"{re.escape(path.name)}.*\bline {line}\b"


def reported_line(exc: DataError) -> int:
    match = re.search(r"\bat line (\d+)\b", str(exc))
    assert match, f"no line number in message: {exc}"
    return int(match.group(1))


def finished_combinations(trials) -> list:
    """Each finished combination a study records, in order: a task's trial holds several (records/claims.py)."""
    return [record for t in trials if t.state.name == "COMPLETE" for _, record in finished_in(t)]
