"""Load and check labelled and latest-data files: the plain D.AT form, or the dated form with a header.

A D.AT file is a headerless CSV. A labelled file (train or test) has N numeric
features followed by a 0/1 label on every row; a "latest" file has a ticker
followed by the same N features and no label. A dated labelled file starts
with the header date,ticker,<feature names>,label and gives every row its
date and ticker, which the purge and the permutation blocks then follow.
Every problem is a DataError naming the file and the first bad line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from inputs.errors import DataError
from inputs.scan import (
    DATED_FORM,
    as_float32,
    fast_parse,
    file_error,
    float32_row,
    label,
    line_error,
    number,
    read_content,
    show,
    slow_labelled,
    slow_latest,
    split_line,
)

# --------------------------------------------------------------------------
# Dated labelled files: a header row, then date, ticker, features, label
# --------------------------------------------------------------------------

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
        problem = f"the header row {show(','.join(names))} does not read date,ticker,<feature names>,label"
    elif any(not n for n in names[2:-1]):
        problem = "a feature column of the header row has no name"
    elif len(set(names[2:-1])) != len(names) - 3:
        twice = next(n for n in names[2:-1] if names[2:-1].count(n) > 1)
        problem = f"the feature name {show(twice)} appears twice in the header row"
    if problem:
        raise line_error(path, 1, problem, f"Either leave the header out (the plain D.AT form: features, then "
                                            f"the label, rows in time order) or write it in full: {DATED_FORM}.")
    return tuple(names[2:-1])


def _date(path: str, line: int, cell: str) -> np.datetime64:
    text = cell.strip()
    try:
        if _DATE.fullmatch(text):
            return np.datetime64(text, "D")
    except ValueError:  # 2021-02-30: the right shape, but no such day
        pass
    raise line_error(path, line, f"the date {show(cell)} is not a date written YYYY-MM-DD",
                      "Write every date as year-month-day with leading zeros, such as 2021-03-05.", 1)


def _fast_dated(path: str, data: bytes, features: tuple[str, ...]) -> Labelled | None:
    """pandas' reader on a dated file's rows; None when any check fails (the scan then names the line)."""
    body = data.split(b"\n", 1)[1] if b"\n" in data else b""
    parsed = fast_parse(body, text_columns=2, min_columns=4) if body.strip() else None
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
    return Labelled(as_float32(values[:, :-1]), labels.astype(np.int8), dates, tickers.to_numpy(dtype=str),
                    features, path)


def _slow_dated(path: str, data: bytes, features: tuple[str, ...]) -> Labelled:
    """Line-by-line load of a dated file; raises DataError at the first bad line."""
    width = len(features) + 3
    rows, labels, dates, tickers, seen = [], [], [], [], {}
    for line, raw in enumerate(data.splitlines()[1:], start=2):
        cells = split_line(path, line, raw)
        if len(cells) != width:
            raise line_error(path, line, f"the row has {len(cells)} columns but the header has {width}",
                              f"Every row must have the header's columns: {DATED_FORM}.")
        date = _date(path, line, cells[0])
        if dates and date < dates[-1]:
            raise line_error(path, line,
                             f"the date {date} is earlier than {dates[-1]} on the line before (dates out of order)",
                              "Sort the rows by date (the statistics need them in time order).", 1)
        ticker = cells[1].strip()
        if not ticker:
            raise line_error(path, line, "the ticker (second column) is empty",
                              "Every row needs its ticker symbol, such as AAPL, after the date.", 2)
        if (date, ticker) in seen:
            raise line_error(path, line, f"{ticker} on {date} repeats line {seen[date, ticker]}",
                              "Each ticker may have only one row per date.", 2)
        seen[date, ticker] = line
        values = [number(path, line, col, cell) for col, cell in enumerate(cells[2:-1], start=3)]
        rows.append(float32_row(path, line, cells[2:-1], values, first_column=3))
        labels.append(label(path, line, width, cells[-1]))
        dates.append(date)
        tickers.append(ticker)
    if not rows:
        raise file_error(path, "the file has a header row but no data rows", f"Add the data: {DATED_FORM}.")
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
        return replace(self, x=self.x[rows], y=self.y[rows], dates=None if self.dates is None else self.dates[rows],
                       tickers=None if self.tickers is None else self.tickers[rows])


def feature_channels(features: tuple[str, ...] | None) -> int:
    """How many channels a dated file's features hold: close_1..close_30,volume_1..volume_30 is 2 (of 30 days).

    Features named <channel>_1 .. <channel>_N, channel after channel, each
    the same N days; anything else (and a D.AT file) is one channel. The
    LSTM reads the channels of a day together (prepare.py writes them so).
    """
    if not features:
        return 1
    parts = [name.rpartition("_") for name in features]
    channels = list(dict.fromkeys(prefix for prefix, _, _ in parts))
    days = len(features) // len(channels)
    expected = [(c, "_", str(d)) for c in channels for d in range(1, days + 1)]
    return len(channels) if all(p[1] for p in parts) and parts == expected else 1


def load_labelled(path: str | os.PathLike) -> Labelled:
    """Load a labelled file: D.AT rows (features, 0/1 label; no header) or the dated form with a header.

    Raises DataError naming the file and first bad line if the file is invalid.
    """
    shown, data = read_content(path)
    if _is_dated(data):
        features = _dated_header(shown, split_line(shown, 1, data.splitlines()[0]))
        return _fast_dated(shown, data, features) or _slow_dated(shown, data, features)
    parsed = fast_parse(data, text_columns=0)
    if parsed is not None:
        _, values = parsed
        labels = values[:, -1]
        # Check labels in float64: a value like 1.0000001 would round to 1 in float32.
        if np.all((labels == 0.0) | (labels == 1.0)):
            return Labelled(as_float32(values[:, :-1]), labels.astype(np.int8), path=shown)
    x, y = slow_labelled(shown, data)
    return Labelled(x, y, path=shown)


def load_latest(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Load a latest-data file: returns tickers and X (float32, rows x N).

    Raises DataError naming the file and first bad line if the file is invalid.
    """
    shown, data = read_content(path)
    parsed = fast_parse(data, text_columns=1)
    if parsed is not None:
        frame, values = parsed
        tickers = [str(t).strip() for t in frame[0].tolist()]
        # Empty or repeated tickers go to the slow scan, which names the line.
        if all(tickers) and len(set(tickers)) == len(tickers):
            return tickers, as_float32(values)
    return slow_latest(shown, data)


def check_train_test(train: Labelled, test: Labelled, train_name: str | None = None,
                     test_name: str | None = None) -> None:
    """Check that a train/test pair can be used together; raise DataError if not.

    The names default to the files' paths; a validation fold passes its own
    ("train.csv (rows 7451-9312)").
    """
    check_same_form(train, test, train_name, test_name)
    train_path, test_path = train.path, test.path
    train_name, test_name = train_name or train_path, test_name or test_path
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


def check_same_form(train: Labelled, test: Labelled, train_name: str | None = None,
                    test_name: str | None = None) -> None:
    """The checks that read no label: the same form, header and features, and test rows after training rows.

    Checking the test file this far before a validation sweep tells nothing
    about how any combination does on it.
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


def check_latest(latest_path: str | os.PathLike, X_latest: np.ndarray, n_features: int) -> None:
    """Check that a latest-data file has the feature count the model was trained on."""
    if X_latest.shape[1] != n_features:
        shown = os.fspath(latest_path)
        raise DataError(
            f"The latest-data file '{shown}' has {X_latest.shape[1]} feature columns after the "
            f"ticker, but the training data has {n_features}. Each row must be the ticker followed "
            f"by the same {n_features} features, in the same order as in training.", shown)
