"""Load and validate D.AT files, and standardize their features.

A D.AT file is a headerless CSV. A labelled file (train or test) has N numeric
features followed by a 0/1 label on every row; a "latest" file has a ticker
followed by the same N features and no label.

Loading has two paths. The fast path hands the whole file to pandas' C reader
and accepts the result only if every check passes. If anything looks wrong, a
slower line-by-line scan with the csv module re-reads the file. The scan is the
authority on what is valid: it either returns the same arrays or raises a
DataError that names the first bad line, so users get a precise message and
well-formed files stay fast.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

__all__ = [
    "DataError",
    "load_labelled",
    "load_latest",
    "check_train_test",
    "check_latest",
    "Standardizer",
]

_UTF8_BOM = b"\xef\xbb\xbf"
_MAX_SHOWN = 40  # longest cell text quoted in a message before truncation
_INF_WORDS = {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
_NUMBER_EXAMPLE = "a plain number such as 0.25, -3 or 1.5e-4"


class DataError(Exception):
    """A data file is unusable; the message is one paragraph meant for the end user.

    `path`, `line` and `column` repeat what the message says (1-based; None
    where not relevant) so callers can act on them without parsing text.
    """

    def __init__(self, message: str, path: str | None = None,
                 line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column


# --------------------------------------------------------------------------
# Message helpers
# --------------------------------------------------------------------------

def _file_error(path: str, problem: str, advice: str) -> DataError:
    """An error about the file as a whole (not tied to a line)."""
    return DataError(f"Cannot load data file '{path}': {problem}. {advice}", path)


def _line_error(path: str, line: int, problem: str, advice: str,
                column: int | None = None) -> DataError:
    """An error located at a 1-based line (and optionally column)."""
    where = f"line {line}" if column is None else f"line {line}, column {column}"
    return DataError(f"Cannot load data file '{path}': at {where} {problem}. {advice}",
                     path, line, column)


def _show(cell: str) -> str:
    """Quote a cell for a message: truncated, with invisible characters escaped."""
    if len(cell) > _MAX_SHOWN:
        cell = cell[: _MAX_SHOWN - 3] + "..."
    return repr(cell)


# --------------------------------------------------------------------------
# Reading the file
# --------------------------------------------------------------------------

def _read_content(path: str | os.PathLike) -> tuple[str, bytes]:
    """Return (display path, file bytes without BOM and trailing blank lines)."""
    shown = os.fspath(path)
    p = Path(path)
    if not p.exists():
        raise _file_error(shown, "the file does not exist",
                          "Check the path and file name.")
    if p.is_dir():
        raise _file_error(shown, "this path is a directory, not a file",
                          "Give the path of a CSV file inside it.")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise _file_error(shown, f"the file could not be read ({exc.strerror or exc})",
                          "Check that it exists and that you have permission to read it.")
    # Strip the BOM here so both parsing paths see identical bytes; rstrip
    # drops trailing blank (or whitespace-only) lines, which are harmless.
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM):]
    data = raw.rstrip()
    if not data:
        raise _file_error(shown, "the file is empty (it has no data rows)",
                          "It must contain at least one comma-separated row of numbers.")
    return shown, data


def _fast_parse(data: bytes, ticker: bool) -> tuple[pd.DataFrame, np.ndarray] | None:
    """Parse well-formed bytes with pandas' C reader.

    Returns (frame, numeric columns as float64), or None whenever anything is
    off, so the caller falls back to the precise line-by-line scan.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. dtype warnings: the checks below decide
            frame = pd.read_csv(
                io.BytesIO(data), header=None, engine="c",
                # na_filter=False keeps "NA", "nan" and empty cells as text so
                # they fail the numeric-dtype check instead of becoming NaN.
                na_filter=False, low_memory=False,
                dtype={0: str} if ticker else None,
            )
    except Exception:  # any parser complaint: the slow scan will explain it precisely
        return None
    # pandas silently skips blank lines and lets quoted cells span lines; a
    # row count that differs from the line count means one of those happened.
    if len(frame) != data.count(b"\n") + 1 or frame.shape[1] < 2:
        return None
    numeric = frame.iloc[:, 1:] if ticker else frame
    # Inference gives object/bool columns for text, "True", "nan" or empty
    # cells; only integer and float columns are plain numbers.
    if any(dtype.kind not in "iuf" for dtype in numeric.dtypes):
        return None
    values = numeric.to_numpy(np.float64)
    if not np.isfinite(_as_float32(values)).all():
        return None
    return frame, values


def _as_float32(values: np.ndarray) -> np.ndarray:
    """Cast to float32; values beyond float32 range become inf (checked by callers)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(np.float32)


# --------------------------------------------------------------------------
# Slow, precise line-by-line scan
# --------------------------------------------------------------------------

def _parse_float(cell: str) -> float | None:
    """Python's float() minus its extras (underscores, non-ASCII digits), or None."""
    text = cell.strip()
    if not text or not text.isascii() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _split_line(path: str, line: int, raw: bytes) -> list[str]:
    """Decode one line and split it into cells, rejecting blank or broken lines."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _line_error(path, line, "the text is not valid UTF-8",
                          "Save the file as plain UTF-8 (or ASCII) text.")
    if not text.strip():
        raise _line_error(path, line, "the line is blank",
                          "Blank lines are only allowed at the end of the file; "
                          "remove it or fill it with a data row.")
    try:
        # strict=True turns unbalanced quotes into an error instead of a
        # cell that silently swallows the rest of the line.
        return next(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise _line_error(path, line, f"the line is not valid CSV ({exc})",
                          "Write cells separated by commas, without stray quote characters.")


def _is_header(cells: list[str]) -> bool:
    """A first line where no cell is a number is taken to be a header row."""
    return bool(cells) and all(_parse_float(cell) is None for cell in cells)


def _scan_rows(path: str, data: bytes, ticker: bool) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, cells) for each line, after the line-level checks."""
    layout = ("the ticker followed by the feature values" if ticker
              else "the feature values followed by the 0/1 label")
    width = None
    for line, raw in enumerate(data.splitlines(), start=1):
        cells = _split_line(path, line, raw)
        if line == 1 and _is_header(cells[1:] if ticker else cells):
            raise _line_error(path, line, f"there is what looks like a header row ({_show(raw.decode())})",
                              f"The file must not have a header row: every line must be data, {layout}.")
        if len(cells) < 2:
            only = "a ticker" if ticker else "one column"
            raise _line_error(path, line, f"the row has only {only} and no features",
                              f"Every row needs {layout}, separated by commas.")
        if width is None:
            width = len(cells)
        elif len(cells) != width:
            raise _line_error(path, line, f"the row has {len(cells)} columns but the first line has {width}",
                              f"Every row must have the same number of columns: {layout}.")
        yield line, cells


def _number(path: str, line: int, column: int, cell: str) -> float:
    """Parse one feature cell, rejecting text, NaN and infinity."""
    value = _parse_float(cell)
    if value is None:
        found = "the cell is empty" if not cell.strip() else f"the cell {_show(cell)} is not a number"
        raise _line_error(path, line, found, f"Every feature cell must hold {_NUMBER_EXAMPLE}.", column)
    if math.isnan(value):
        raise _line_error(path, line, f"the cell {_show(cell)} is NaN (not a number)",
                          f"Missing values are not allowed; every feature cell must hold {_NUMBER_EXAMPLE}.",
                          column)
    if math.isinf(value):
        found = "is infinite" if cell.strip().lower() in _INF_WORDS else "is too large"
        raise _line_error(path, line, f"the cell {_show(cell)} {found}",
                          "Every feature cell must hold a finite number such as 0.25, -3 or 1.5e-4.",
                          column)
    return value


def _float32_row(path: str, line: int, cells: list[str], values: list[float],
                 first_column: int) -> np.ndarray:
    """Cast a row's features to float32, rejecting values beyond float32 range."""
    row = _as_float32(np.asarray(values, dtype=np.float64))
    bad = np.flatnonzero(~np.isfinite(row))
    if bad.size:
        i = int(bad[0])
        raise _line_error(path, line, f"the cell {_show(cells[i])} is too large to store as a 32-bit float",
                          "Feature values must lie between about -3.4e38 and 3.4e38; rescale the feature.",
                          first_column + i)
    return row


def _label(path: str, line: int, column: int, cell: str) -> int:
    """Parse the label cell: it must be 0 or 1 (0.0 and 1.0 are fine too)."""
    value = _parse_float(cell)
    if value not in (0.0, 1.0):
        found = "the label cell is empty" if not cell.strip() else f"the label {_show(cell)} is not 0 or 1"
        raise _line_error(path, line, found,
                          "The last column of every row must be the class label, 0 or 1 (0.0 and 1.0 are accepted).",
                          column)
    return int(value)


def _ticker(path: str, line: int, cell: str, seen: dict[str, int]) -> str:
    """Validate one ticker: non-empty and not repeated on an earlier line."""
    ticker = cell.strip()
    if not ticker:
        raise _line_error(path, line, "the ticker (first column) is empty",
                          "Every row must start with a ticker symbol such as AAPL.", 1)
    if ticker in seen:
        raise _line_error(path, line, f"the ticker {_show(ticker)} repeats line {seen[ticker]}",
                          "Each ticker may appear only once in the latest-data file.", 1)
    seen[ticker] = line
    return ticker


def _slow_labelled(path: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Line-by-line load of a labelled file; raises DataError at the first bad line."""
    rows, labels = [], []
    for line, cells in _scan_rows(path, data, ticker=False):
        features = cells[:-1]
        values = [_number(path, line, col, cell) for col, cell in enumerate(features, start=1)]
        labels.append(_label(path, line, len(cells), cells[-1]))
        rows.append(_float32_row(path, line, features, values, first_column=1))
    return np.array(rows, dtype=np.float32), np.array(labels, dtype=np.int8)


def _slow_latest(path: str, data: bytes) -> tuple[list[str], np.ndarray]:
    """Line-by-line load of a latest-data file; raises DataError at the first bad line."""
    tickers, rows, seen = [], [], {}
    for line, cells in _scan_rows(path, data, ticker=True):
        tickers.append(_ticker(path, line, cells[0], seen))
        features = cells[1:]
        values = [_number(path, line, col, cell) for col, cell in enumerate(features, start=2)]
        rows.append(_float32_row(path, line, features, values, first_column=2))
    return tickers, np.array(rows, dtype=np.float32)


# --------------------------------------------------------------------------
# Public loaders and cross-file checks
# --------------------------------------------------------------------------

def load_labelled(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Load a labelled D.AT file: returns X (float32, rows x N) and y (int8, 0/1).

    Raises DataError naming the file and first bad line if the file is invalid.
    """
    shown, data = _read_content(path)
    parsed = _fast_parse(data, ticker=False)
    if parsed is not None:
        _, values = parsed
        labels = values[:, -1]
        # Check labels in float64: a value like 1.0000001 would round to 1 in float32.
        if np.all((labels == 0.0) | (labels == 1.0)):
            return _as_float32(values[:, :-1]), labels.astype(np.int8)
    return _slow_labelled(shown, data)


def load_latest(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Load a latest-data file: returns tickers and X (float32, rows x N).

    Raises DataError naming the file and first bad line if the file is invalid.
    """
    shown, data = _read_content(path)
    parsed = _fast_parse(data, ticker=True)
    if parsed is not None:
        frame, values = parsed
        tickers = [str(t).strip() for t in frame[0].tolist()]
        # Empty or repeated tickers go to the slow scan, which names the line.
        if all(tickers) and len(set(tickers)) == len(tickers):
            return tickers, _as_float32(values)
    return _slow_latest(shown, data)


def check_train_test(train_path: str | os.PathLike, X_train: np.ndarray, y_train: np.ndarray,
                     test_path: str | os.PathLike, X_test: np.ndarray, y_test: np.ndarray) -> None:
    """Check that a train/test pair can be used together; raise DataError if not."""
    train, test = os.fspath(train_path), os.fspath(test_path)
    if X_train.shape[1] != X_test.shape[1]:
        raise DataError(
            f"The training file '{train}' has {X_train.shape[1]} feature columns but the test file "
            f"'{test}' has {X_test.shape[1]}. Both files must have the same features in the same "
            f"order, each followed by the 0/1 label.", train)
    classes = np.unique(y_train)
    if classes.size < 2:
        only = int(classes[0]) if classes.size else "none"
        raise DataError(
            f"Cannot train on '{train}': every one of its {len(y_train)} rows has label {only}. "
            f"The training file needs rows of both classes, some labelled 0 and some labelled 1.",
            train)
    if not np.any(y_test == 1):
        raise DataError(
            f"Cannot evaluate on '{test}': none of its {len(y_test)} rows has label 1, so the "
            f"positive class cannot be scored. The test file needs at least one row labelled 1.",
            test)


def check_latest(latest_path: str | os.PathLike, X_latest: np.ndarray, n_features: int) -> None:
    """Check that a latest-data file has the feature count the model was trained on."""
    if X_latest.shape[1] != n_features:
        shown = os.fspath(latest_path)
        raise DataError(
            f"The latest-data file '{shown}' has {X_latest.shape[1]} feature columns after the "
            f"ticker, but the training data has {n_features}. Each row must be the ticker followed "
            f"by the same {n_features} features, in the same order as in training.", shown)


# --------------------------------------------------------------------------
# Standardization
# --------------------------------------------------------------------------

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

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        """Fit on X and return X standardized."""
        return self.fit(X).transform(X)
