"""Price histories into D.AT's windows and labels, split by date with no label crossing the cut.

A window ends on a ticker's trading day (its own rows are its trading
days), every `step` days: `window` closes divided by the last one, and, as
extra channels, the window's volume over its mean (log-scaled) and its daily
returns. Its label is 1 when the highest close of the next `horizon` days is
at least `gain` above the window's last close. A window whose days (label
included) span a gap longer than `max_gap` missing weekdays is dropped, not
bridged; so is a training window whose label horizon reaches the test cut.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inputs.prices import History

CHANNELS = ("closes", "volume", "returns")
COLUMN = {"closes": "close", "volume": "volume", "returns": "return"}


@dataclass(frozen=True)
class Shape:
    window: int = 30
    step: int = 5
    horizon: int = 10
    gain: float = 0.05
    max_gap: int = 5
    features: tuple = ("closes",)

    def names(self) -> list[str]:
        """The feature columns: per channel, one per day of the window (close_30 is the last close, 1.0)."""
        return [f"{COLUMN[c]}_{i}" for c in self.features for i in range(1, self.window + 1)]


@dataclass
class Windows:
    """Every ticker's windows, in date-then-ticker order, and what was dropped."""
    dates: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[D]"))
    tickers: np.ndarray = field(default_factory=lambda: np.array([], dtype=str))
    x: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    y: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    horizon_ends: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[D]"))
    dropped_for_gaps: int = 0


def features_of(history: History, end: int, shape: Shape) -> np.ndarray:
    """The feature row of the window ending at row `end` of `history`."""
    start = end - shape.window + 1
    parts = []
    for channel in shape.features:
        if channel == "closes":
            parts.append(history.closes[start:end + 1] / history.closes[end])
        elif channel == "volume":
            volume = history.volumes[start:end + 1]
            parts.append(np.log((volume + 1.0) / (volume.mean() + 1.0)))  # +1: a day without trades stays finite
        else:  # returns: each day's close over the day before's, the first against the day before the window
            parts.append(history.closes[start:end + 1] / history.closes[start - 1:end] - 1.0)
    return np.concatenate(parts)


def gaps(history: History, max_gap: int) -> np.ndarray:
    """[rows] True where more than `max_gap` weekdays are missing between a row and the one before."""
    missing = np.zeros(len(history.dates), dtype=bool)
    missing[1:] = np.busday_count(history.dates[:-1] + 1, history.dates[1:]) > max_gap
    return missing


def first_end(shape: Shape) -> int:
    """The first row a window can end on (daily returns need one day more)."""
    return shape.window - 1 + ("returns" in shape.features)


def ticker_windows(history: History, shape: Shape) -> tuple[list, int]:
    """[(end date, features, label, horizon's last date)] of one ticker, and how many windows a gap dropped."""
    gap_before = np.cumsum(gaps(history, shape.max_gap))  # gaps up to and including each row
    out, dropped = [], 0
    for end in range(first_end(shape), len(history.closes) - shape.horizon, shape.step):
        first = end - shape.window + 1 - ("returns" in shape.features)
        last = end + shape.horizon
        if gap_before[last] != gap_before[first]:
            dropped += 1
            continue
        best = history.closes[end + 1:last + 1].max()
        label = int(best >= history.closes[end] * (1 + shape.gain))
        out.append((history.dates[end], features_of(history, end, shape), label, history.dates[last]))
    return out, dropped


def all_windows(histories: list[History], shape: Shape) -> Windows:
    """Every ticker's windows, sorted by date, then ticker."""
    rows, dropped = [], 0
    for history in histories:
        windows, lost = ticker_windows(history, shape)
        rows += [(date, history.ticker, x, y, horizon_end) for date, x, y, horizon_end in windows]
        dropped += lost
    rows.sort(key=lambda r: (r[0], r[1]))
    if not rows:
        return Windows(dropped_for_gaps=dropped)
    dates, tickers, x, y, ends = zip(*rows)
    return Windows(np.array(dates, dtype="datetime64[D]"), np.array(tickers, dtype=str), np.vstack(x),
                   np.array(y, dtype=np.int8), np.array(ends, dtype="datetime64[D]"), dropped)


def latest_windows(histories: list[History], shape: Shape) -> tuple[list[str], np.ndarray, list[str]]:
    """Each ticker's most recent window (no label): tickers, features, and the tickers left out (a gap in it)."""
    tickers, rows, left_out = [], [], []
    for history in histories:
        end = len(history.closes) - 1
        first = end - shape.window + 1 - ("returns" in shape.features)
        if gaps(history, shape.max_gap)[first + 1:end + 1].any():
            left_out.append(history.ticker)
            continue
        tickers.append(history.ticker)
        rows.append(features_of(history, end, shape))
    return tickers, np.vstack(rows) if rows else np.zeros((0, len(shape.names()))), left_out


def cut_date(windows: Windows, test_fraction: float | None, test_from: np.datetime64 | None) -> np.datetime64:
    """The first test date: given, or the date that leaves `test_fraction` of the window dates after it."""
    if test_from is not None:
        return test_from
    days = np.unique(windows.dates)
    return days[min(len(days) - 1, int(len(days) * (1 - test_fraction)))]


def split(windows: Windows, cut: np.datetime64) -> tuple[np.ndarray, np.ndarray, int]:
    """(train rows, test rows, windows dropped because their label horizon crosses the cut)."""
    test = windows.dates >= cut
    train = ~test & (windows.horizon_ends < cut)
    return np.flatnonzero(train), np.flatnonzero(test), int((~test & ~train).sum())
