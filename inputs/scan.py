"""Reading a data file line by line: the precise path that names the first bad line and column.

Loading has two paths. The fast path hands the whole file to pandas' C reader
and accepts the result only if every check passes. If anything looks wrong, a
slower line-by-line scan with the csv module re-reads the file. The scan is
the authority on what is valid: it either returns the same arrays or raises a
DataError that names the first bad line, so users get a precise message and
well-formed files stay fast. This module holds the scan, the fast reader and
the messages; inputs/files.py puts them together per kind of file.
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

from inputs.errors import DataError

_UTF8_BOM = b"\xef\xbb\xbf"
_MAX_SHOWN = 40  # longest cell text quoted in a message before truncation
_INF_WORDS = {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
_NUMBER_EXAMPLE = "a plain number such as 0.25, -3 or 1.5e-4"
DATED_FORM = ("a dated file starts with the header row date,ticker,<feature names>,label and then has one row "
              "per date and ticker: the date as YYYY-MM-DD, the ticker, the feature values and the 0/1 label")


# --------------------------------------------------------------------------
# Message helpers
# --------------------------------------------------------------------------

def file_error(path: str, problem: str, advice: str) -> DataError:
    """An error about the file as a whole (not tied to a line)."""
    return DataError(f"Cannot load data file '{path}': {problem}. {advice}", path)


def line_error(path: str, line: int, problem: str, advice: str,
                column: int | None = None) -> DataError:
    """An error located at a 1-based line (and optionally column)."""
    where = f"line {line}" if column is None else f"line {line}, column {column}"
    return DataError(f"Cannot load data file '{path}': at {where} {problem}. {advice}",
                     path, line, column)


def show(cell: str) -> str:
    """Quote a cell for a message: truncated, with invisible characters escaped."""
    if len(cell) > _MAX_SHOWN:
        cell = cell[: _MAX_SHOWN - 3] + "..."
    return repr(cell)


# --------------------------------------------------------------------------
# Reading the file
# --------------------------------------------------------------------------

def read_content(path: str | os.PathLike) -> tuple[str, bytes]:
    """Return (display path, file bytes without BOM and trailing blank lines)."""
    shown = os.fspath(path)
    p = Path(path)
    if not p.exists():
        raise file_error(shown, "the file does not exist",
                          "Check the path and file name.")
    if p.is_dir():
        raise file_error(shown, "this path is a directory, not a file",
                          "Give the path of a CSV file inside it.")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise file_error(shown, f"the file could not be read ({exc.strerror or exc})",
                          "Check that it exists and that you have permission to read it.")
    # Strip the BOM here so both parsing paths see identical bytes; rstrip
    # drops trailing blank (or whitespace-only) lines, which are harmless.
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM):]
    data = raw.rstrip()
    if not data:
        raise file_error(shown, "the file is empty (it has no data rows)",
                          "It must contain at least one comma-separated row of numbers.")
    return shown, data


def fast_parse(data: bytes, text_columns: int, min_columns: int = 2) -> tuple[pd.DataFrame, np.ndarray] | None:
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
    if not np.isfinite(as_float32(values)).all():
        return None
    return frame, values


def as_float32(values: np.ndarray) -> np.ndarray:
    """Cast to float32; values beyond float32 range become inf (checked by callers)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(np.float32)


# --------------------------------------------------------------------------
# Slow, precise line-by-line scan
# --------------------------------------------------------------------------

def parse_float(cell: str) -> float | None:
    """Python's float() minus its extras (underscores, non-ASCII digits), or None."""
    text = cell.strip()
    if not text or not text.isascii() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def split_line(path: str, line: int, raw: bytes) -> list[str]:
    """Decode one line and split it into cells, rejecting blank or broken lines."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise line_error(path, line, "the text is not valid UTF-8",
                          "Save the file as plain UTF-8 (or ASCII) text.")
    if not text.strip():
        raise line_error(path, line, "the line is blank",
                          "Blank lines are only allowed at the end of the file; "
                          "remove it or fill it with a data row.")
    try:
        # strict=True turns unbalanced quotes into an error instead of a
        # cell that silently swallows the rest of the line.
        return next(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise line_error(path, line, f"the line is not valid CSV ({exc})",
                          "Write cells separated by commas, without stray quote characters.")


def is_header(cells: list[str]) -> bool:
    """A first line where no cell is a number is taken to be a header row."""
    return bool(cells) and all(parse_float(cell) is None for cell in cells)


def scan_rows(path: str, data: bytes, ticker: bool) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, cells) for each line, after the line-level checks."""
    layout = ("the ticker followed by the feature values" if ticker
              else "the feature values followed by the 0/1 label")
    width = None
    for line, raw in enumerate(data.splitlines(), start=1):
        cells = split_line(path, line, raw)
        if line == 1 and is_header(cells[1:] if ticker else cells):
            raise line_error(path, line, f"there is what looks like a header row ({show(raw.decode())})",
                              f"The file must not have a header row: every line must be data, {layout}"
                              + ("." if ticker else f"; or, with dates, {DATED_FORM}."))
        if len(cells) < 2:
            only = "a ticker" if ticker else "one column"
            raise line_error(path, line, f"the row has only {only} and no features",
                              f"Every row needs {layout}, separated by commas.")
        if width is None:
            width = len(cells)
        elif len(cells) != width:
            raise line_error(path, line, f"the row has {len(cells)} columns but the first line has {width}",
                              f"Every row must have the same number of columns: {layout}.")
        yield line, cells


def number(path: str, line: int, column: int, cell: str) -> float:
    """Parse one feature cell, rejecting text, NaN and infinity."""
    value = parse_float(cell)
    if value is None:
        found = "the cell is empty" if not cell.strip() else f"the cell {show(cell)} is not a number"
        raise line_error(path, line, found, f"Every feature cell must hold {_NUMBER_EXAMPLE}.", column)
    if math.isnan(value):
        raise line_error(path, line, f"the cell {show(cell)} is NaN (not a number)",
                          f"Missing values are not allowed; every feature cell must hold {_NUMBER_EXAMPLE}.",
                          column)
    if math.isinf(value):
        found = "is infinite" if cell.strip().lower() in _INF_WORDS else "is too large"
        raise line_error(path, line, f"the cell {show(cell)} {found}",
                          "Every feature cell must hold a finite number such as 0.25, -3 or 1.5e-4.",
                          column)
    return value


def float32_row(path: str, line: int, cells: list[str], values: list[float],
                 first_column: int) -> np.ndarray:
    """Cast a row's features to float32, rejecting values beyond float32 range."""
    row = as_float32(np.asarray(values, dtype=np.float64))
    bad = np.flatnonzero(~np.isfinite(row))
    if bad.size:
        i = int(bad[0])
        raise line_error(path, line, f"the cell {show(cells[i])} is too large to store as a 32-bit float",
                          "Feature values must lie between about -3.4e38 and 3.4e38; rescale the feature.",
                          first_column + i)
    return row


def label(path: str, line: int, column: int, cell: str) -> int:
    """Parse the label cell: it must be 0 or 1 (0.0 and 1.0 are fine too)."""
    value = parse_float(cell)
    if value not in (0.0, 1.0):
        found = "the label cell is empty" if not cell.strip() else f"the label {show(cell)} is not 0 or 1"
        raise line_error(path, line, found,
                          "The last column of every row must be the class label, 0 or 1 (0.0 and 1.0 are accepted).",
                          column)
    return int(value)


def ticker(path: str, line: int, cell: str, seen: dict[str, int]) -> str:
    """Validate one ticker: non-empty and not repeated on an earlier line."""
    ticker = cell.strip()
    if not ticker:
        raise line_error(path, line, "the ticker (first column) is empty",
                          "Every row must start with a ticker symbol such as AAPL.", 1)
    if ticker in seen:
        raise line_error(path, line, f"the ticker {show(ticker)} repeats line {seen[ticker]}",
                          "Each ticker may appear only once in the latest-data file.", 1)
    seen[ticker] = line
    return ticker


def slow_labelled(path: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Line-by-line load of a labelled file; raises DataError at the first bad line."""
    rows, labels = [], []
    for line, cells in scan_rows(path, data, ticker=False):
        features = cells[:-1]
        values = [number(path, line, col, cell) for col, cell in enumerate(features, start=1)]
        labels.append(label(path, line, len(cells), cells[-1]))
        rows.append(float32_row(path, line, features, values, first_column=1))
    return np.array(rows, dtype=np.float32), np.array(labels, dtype=np.int8)


def slow_latest(path: str, data: bytes) -> tuple[list[str], np.ndarray]:
    """Line-by-line load of a latest-data file; raises DataError at the first bad line."""
    tickers, rows, seen = [], [], {}
    for line, cells in scan_rows(path, data, ticker=True):
        tickers.append(ticker(path, line, cells[0], seen))
        features = cells[1:]
        values = [number(path, line, col, cell) for col, cell in enumerate(features, start=2)]
        rows.append(float32_row(path, line, features, values, first_column=2))
    return tickers, np.array(rows, dtype=np.float32)


