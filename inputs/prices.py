"""Read price histories: one CSV per ticker (Yahoo Finance's columns) or one long file with a Ticker column.

    AAPL.csv       Date,Open,High,Low,Close,Adj Close,Volume     (the ticker is the file's name)
    prices.csv     Date,Ticker,Close[,Adj Close][,Volume]

Column names are matched without regard to case, spaces or underscores.
Adj Close is used where present (it accounts for splits and dividends),
otherwise Close. Every problem is a DataError naming the file, the line and
what would be valid; dates out of order are sorted, with a note.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from inputs.errors import DataError

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SHAPES = ("one file per ticker, named after it, with Yahoo Finance's columns Date,Open,High,Low,Close,Adj Close,"
           "Volume; or one long file with the columns Date,Ticker,Close and optionally Adj Close and Volume")


@dataclass(frozen=True)
class History:
    """One ticker's trading days, in date order."""
    ticker: str
    dates: np.ndarray         # datetime64[D], increasing
    closes: np.ndarray        # float64 > 0 (adjusted where the file had Adj Close)
    volumes: np.ndarray | None
    source: str               # the file it came from


def _key(name: str) -> str:
    return re.sub(r"[\s_]", "", str(name)).lower()


def _error(path: str, line: int | None, problem: str, advice: str) -> DataError:
    where = f" at line {line}" if line else ""
    return DataError(f"Cannot read price file '{path}'{where}: {problem}. {advice}", path, line)


def load_histories(paths: list[str | os.PathLike]) -> tuple[list[History], list[str]]:
    """Every ticker's history from `paths` (each file per ticker or long), and the notes to show the user."""
    histories, notes, seen = [], [], {}
    for path in paths:
        for history, note in _load_file(os.fspath(path)):
            if history.ticker in seen:
                raise _error(history.source, None, f"the ticker {history.ticker!r} is also in '{seen[history.ticker]}'",
                             "Give each ticker's prices once, in one file.")
            seen[history.ticker] = history.source
            histories.append(history)
            if note:
                notes.append(note)
    return histories, notes


def _load_file(path: str) -> list[tuple[History, str | None]]:
    if not Path(path).is_file():
        raise _error(path, None, "the file does not exist", "Check the path and file name.")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise _error(path, None, f"it is not a readable CSV file ({str(err).splitlines()[0]})",
                     f"Price files are CSV with a header row: {_SHAPES}.") from None
    columns = {_key(c): c for c in frame.columns}
    if "date" not in columns:
        raise _error(path, 1, f"the header ({','.join(frame.columns)}) has no Date column", f"Give {_SHAPES}.")
    close = columns.get("adjclose") or columns.get("close")
    if close is None:
        raise _error(path, 1, f"the header ({','.join(frame.columns)}) has neither Close nor Adj Close",
                     f"Give {_SHAPES}.")
    if frame.empty:
        raise _error(path, None, "the file has a header but no rows", "Add the prices, one row per trading day.")
    line = pd.Series(np.arange(2, len(frame) + 2), index=frame.index)
    dates = _dates(path, frame[columns["date"]], line)
    closes = _numbers(path, frame[close], line, close, positive=True)
    volumes = _numbers(path, frame[columns["volume"]], line, columns["volume"], positive=False) \
        if "volume" in columns else None
    if "ticker" in columns:
        tickers = frame[columns["ticker"]].str.strip()
        empty = tickers.eq("")
        if empty.any():
            raise _error(path, int(line[empty].iloc[0]), "the ticker is empty",
                         "Every row needs its ticker, such as AAPL.")
        groups = [(str(ticker), rows.index.to_numpy()) for ticker, rows in frame.groupby(tickers, sort=True)]
    else:
        groups = [(Path(path).stem, frame.index.to_numpy())]
    return [_history(path, ticker, rows, dates, closes, volumes, line) for ticker, rows in groups]


def _dates(path: str, cells: pd.Series, line: pd.Series) -> np.ndarray:
    text = cells.str.strip()
    parsed = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    bad = ~text.str.fullmatch(_DATE.pattern) | parsed.isna()
    if bad.any():
        first = bad.idxmax()
        raise _error(path, int(line[first]), f"the date {text[first]!r} is not a date written YYYY-MM-DD",
                     "Write every date as year-month-day with leading zeros, such as 2021-03-05.")
    return parsed.to_numpy().astype("datetime64[D]")


def _numbers(path: str, cells: pd.Series, line: pd.Series, name: str, positive: bool) -> np.ndarray:
    values = pd.to_numeric(cells.str.strip(), errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values) | ((values <= 0) if positive else (values < 0))
    if bad.any():
        first = int(np.argmax(bad))
        shown = cells.iloc[first]
        problem = (f"the {name} {shown!r} is not a number" if not np.isfinite(values[first]) else
                   f"the {name} {shown} is {'zero or less' if positive else 'negative'}")
        valid = "a price above zero, such as 101.25" if positive else "a whole number of shares, 0 or more"
        raise _error(path, int(line.iloc[first]), problem, f"Every row needs {valid}.")
    return values


def _history(path, ticker, rows, dates, closes, volumes, line) -> tuple[History, str | None]:
    order = np.argsort(dates[rows], kind="stable")
    note = None
    if np.any(order != np.arange(len(rows))):
        note = f"note: {path}: {ticker}'s rows were not in date order; they are sorted."
    rows = rows[order]
    days = dates[rows]
    repeated = np.flatnonzero(days[1:] == days[:-1])
    if repeated.size:
        at = rows[repeated[0] + 1]
        raise _error(path, int(line[at]), f"{ticker} has {days[repeated[0]]} twice",
                     "Give each trading day once per ticker.")
    return History(ticker, days, closes[rows], None if volumes is None else volumes[rows], path), note
