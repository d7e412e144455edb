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
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

__all__ = [
    "DataError",
    "Labelled",
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


def _fast_parse(data: bytes, text_columns: int, min_columns: int = 2) -> tuple[pd.DataFrame, np.ndarray] | None:
    """Parse well-formed bytes with pandas' C reader.

    `text_columns` leading columns are kept as text (a latest file's ticker; a
    dated file's date and ticker); the rest must be numbers. Returns (frame,
    numeric columns as float64), or None whenever anything is off, so the
    caller falls back to the precise line-by-line scan.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. dtype warnings: the checks below decide
            frame = pd.read_csv(
                io.BytesIO(data), header=None, engine="c",
                # na_filter=False keeps "NA", "nan" and empty cells as text so
                # they fail the numeric-dtype check instead of becoming NaN.
                na_filter=False, low_memory=False,
                dtype={i: str for i in range(text_columns)} or None,
            )
    except Exception:  # any parser complaint: the slow scan will explain it precisely
        return None
    # pandas silently skips blank lines and lets quoted cells span lines; a
    # row count that differs from the line count means one of those happened.
    if len(frame) != data.count(b"\n") + 1 or frame.shape[1] < min_columns:
        return None
    numeric = frame.iloc[:, text_columns:]
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
                              f"The file must not have a header row: every line must be data, {layout}"
                              + ("." if ticker else f"; or, with dates, {DATED_FORM}."))
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
# Dated labelled files: a header row, then date, ticker, features, label
# --------------------------------------------------------------------------

DATED_FORM = ("a dated file starts with the header row date,ticker,<feature names>,label and then has one row "
              "per date and ticker: the date as YYYY-MM-DD, the ticker, the feature values and the 0/1 label")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _is_dated(data: bytes) -> bool:
    """Whether the first line is a dated file's header (its first cell reads 'date')."""
    first = data.split(b"\n", 1)[0].split(b"\r", 1)[0]
    return first.split(b",", 1)[0].strip().strip(b'"').lower() == b"date"


def _dated_header(path: str, cells: list[str]) -> tuple[str, ...]:
    """The feature names of a dated file's header; raises DataError unless it reads date,ticker,...,label."""
    names = [c.strip() for c in cells]
    lowered = [n.lower() for n in names]
    problem = None
    if len(names) < 4 or lowered[1] != "ticker" or lowered[-1] != "label":
        problem = f"the header row {_show(','.join(names))} does not read date,ticker,<feature names>,label"
    elif any(not n for n in names[2:-1]):
        problem = "a feature column of the header row has no name"
    elif len(set(names[2:-1])) != len(names) - 3:
        twice = next(n for n in names[2:-1] if names[2:-1].count(n) > 1)
        problem = f"the feature name {_show(twice)} appears twice in the header row"
    if problem:
        raise _line_error(path, 1, problem, f"Either leave the header out (the plain D.AT form: features, then "
                                            f"the label, rows in time order) or write it in full: {DATED_FORM}.")
    return tuple(names[2:-1])


def _date(path: str, line: int, cell: str) -> np.datetime64:
    text = cell.strip()
    try:
        if _DATE.fullmatch(text):
            return np.datetime64(text, "D")
    except ValueError:  # 2021-02-30: the right shape, but no such day
        pass
    raise _line_error(path, line, f"the date {_show(cell)} is not a date written YYYY-MM-DD",
                      "Write every date as year-month-day with leading zeros, such as 2021-03-05.", 1)


def _fast_dated(path: str, data: bytes, features: tuple[str, ...]) -> Labelled | None:
    """pandas' reader on a dated file's rows; None when any check fails (the scan then names the line)."""
    body = data.split(b"\n", 1)[1] if b"\n" in data else b""
    parsed = _fast_parse(body, text_columns=2, min_columns=4) if body.strip() else None
    if parsed is None or parsed[0].shape[1] != len(features) + 3:
        return None
    frame, values = parsed
    labels = values[:, -1]
    text = frame[0].str.strip()
    tickers = frame[1].str.strip()
    if not (np.all((labels == 0.0) | (labels == 1.0)) and text.str.fullmatch(_DATE.pattern).all()
            and tickers.str.len().gt(0).all()):
        return None
    dates = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    if dates.isna().any():
        return None
    dates = dates.to_numpy().astype("datetime64[D]")
    if np.any(dates[1:] < dates[:-1]) or pd.MultiIndex.from_arrays([dates, tickers]).has_duplicates:
        return None
    return Labelled(_as_float32(values[:, :-1]), labels.astype(np.int8), dates, tickers.to_numpy(dtype=str),
                    features, path)


def _slow_dated(path: str, data: bytes, features: tuple[str, ...]) -> Labelled:
    """Line-by-line load of a dated file; raises DataError at the first bad line."""
    width = len(features) + 3
    rows, labels, dates, tickers, seen = [], [], [], [], {}
    for line, raw in enumerate(data.splitlines()[1:], start=2):
        cells = _split_line(path, line, raw)
        if len(cells) != width:
            raise _line_error(path, line, f"the row has {len(cells)} columns but the header has {width}",
                              f"Every row must have the header's columns: {DATED_FORM}.")
        date = _date(path, line, cells[0])
        if dates and date < dates[-1]:
            raise _line_error(path, line, f"the date {date} is earlier than {dates[-1]} on the line before (dates out of order)",
                              "Sort the rows by date (the statistics need them in time order).", 1)
        ticker = cells[1].strip()
        if not ticker:
            raise _line_error(path, line, "the ticker (second column) is empty",
                              "Every row needs its ticker symbol, such as AAPL, after the date.", 2)
        if (date, ticker) in seen:
            raise _line_error(path, line, f"{ticker} on {date} repeats line {seen[date, ticker]}",
                              "Each ticker may have only one row per date.", 2)
        seen[date, ticker] = line
        values = [_number(path, line, col, cell) for col, cell in enumerate(cells[2:-1], start=3)]
        rows.append(_float32_row(path, line, cells[2:-1], values, first_column=3))
        labels.append(_label(path, line, width, cells[-1]))
        dates.append(date)
        tickers.append(ticker)
    if not rows:
        raise _file_error(path, "the file has a header row but no data rows", f"Add the data: {DATED_FORM}.")
    return Labelled(np.array(rows, dtype=np.float32), np.array(labels, dtype=np.int8),
                    np.array(dates, dtype="datetime64[D]"), np.array(tickers, dtype=str), features, path)


# --------------------------------------------------------------------------
# Public loaders and cross-file checks
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Labelled:
    """A labelled file's rows: features, 0/1 labels and, in a dated file, each row's date and ticker."""
    x: np.ndarray                            # float32, rows x features
    y: np.ndarray                            # int8, 0/1
    dates: np.ndarray | None = None          # datetime64[D], in order; None for a D.AT file
    tickers: np.ndarray | None = None        # str; None for a D.AT file
    features: tuple[str, ...] | None = None  # a dated file's feature names
    path: str = ""

    @property
    def dated(self) -> bool:
        return self.dates is not None

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows) -> "Labelled":
        """The rows at `rows` (a slice or index array), as a Labelled of their own."""
        pick = lambda a: None if a is None else a[rows]
        return replace(self, x=self.x[rows], y=self.y[rows], dates=pick(self.dates), tickers=pick(self.tickers))


def load_labelled(path: str | os.PathLike) -> Labelled:
    """Load a labelled file: D.AT rows (features, 0/1 label; no header) or the dated form with a header.

    Raises DataError naming the file and first bad line if the file is invalid.
    """
    shown, data = _read_content(path)
    if _is_dated(data):
        features = _dated_header(shown, _split_line(shown, 1, data.splitlines()[0]))
        return _fast_dated(shown, data, features) or _slow_dated(shown, data, features)
    parsed = _fast_parse(data, text_columns=0)
    if parsed is not None:
        _, values = parsed
        labels = values[:, -1]
        # Check labels in float64: a value like 1.0000001 would round to 1 in float32.
        if np.all((labels == 0.0) | (labels == 1.0)):
            return Labelled(_as_float32(values[:, :-1]), labels.astype(np.int8), path=shown)
    x, y = _slow_labelled(shown, data)
    return Labelled(x, y, path=shown)


def load_latest(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Load a latest-data file: returns tickers and X (float32, rows x N).

    Raises DataError naming the file and first bad line if the file is invalid.
    """
    shown, data = _read_content(path)
    parsed = _fast_parse(data, text_columns=1)
    if parsed is not None:
        frame, values = parsed
        tickers = [str(t).strip() for t in frame[0].tolist()]
        # Empty or repeated tickers go to the slow scan, which names the line.
        if all(tickers) and len(set(tickers)) == len(tickers):
            return tickers, _as_float32(values)
    return _slow_latest(shown, data)


def check_train_test(train: Labelled, test: Labelled, train_name: str | None = None,
                     test_name: str | None = None) -> None:
    """Check that a train/test pair can be used together; raise DataError if not.

    The names default to the files' paths; a validation fold passes its own
    ("train.csv (rows 7451-9312)").
    """
    train_path, test_path = train.path, test.path
    train_name, test_name = train_name or train_path, test_name or test_path
    if train.dated != test.dated:
        dated, plain = (train_name, test_name) if train.dated else (test_name, train_name)
        raise DataError(f"'{dated}' has dates (a header row date,ticker,...,label) but '{plain}' has none. "
                        f"Give both files in the same form: both dated (recommended; the statistics then "
                        f"block and purge by date) or both plain D.AT rows.", plain)
    if train.dated and train.features != test.features:
        raise DataError(f"Cannot load data file '{test_name}': at line 1 its header "
                        f"({','.join(test.features)}) does not match the header of '{train_name}' "
                        f"({','.join(train.features)}). Both files need the same features in the same order, "
                        f"under the same names.", test_path, 1)
    if train.x.shape[1] != test.x.shape[1]:
        raise DataError(
            f"The training file '{train_name}' has {train.x.shape[1]} feature columns but the test file "
            f"'{test_name}' has {test.x.shape[1]}. Both files must have the same features in the same "
            f"order, each followed by the 0/1 label.", train_path)
    if train.dated and len(train) and len(test) and test.dates[0] <= train.dates[-1]:
        raise DataError(f"'{test_name}' starts on {test.dates[0]}, but '{train_name}' runs until "
                        f"{train.dates[-1]}. The rows a model is tested on must all come after the rows it is "
                        f"trained on; otherwise the test measures the past it has already seen.", test_path)
    classes = np.unique(train.y)
    if classes.size < 2:
        only = int(classes[0]) if classes.size else "none"
        raise DataError(
            f"Cannot train on '{train_name}': every one of its {len(train.y)} rows has label {only}. "
            f"The training file needs rows of both classes, some labelled 0 and some labelled 1.",
            train_path)
    if not np.any(test.y == 1):
        raise DataError(
            f"Cannot evaluate on '{test_name}': none of its {len(test.y)} rows has label 1, so the "
            f"positive class cannot be scored. The test file needs at least one row labelled 1.",
            test_path)


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
