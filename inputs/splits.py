"""Which rows train and which rows evaluate: chronological splits, purged at every boundary.

A row's label looks LABEL_HORIZON trading days past its date. A training row
dated less than that before the first evaluated date has a label computed
from prices inside the evaluated period, so training on it shows the model
part of what it is then judged on. Every split here keeps such rows out of
training (purging, as in Lopez de Prado's purged cross-validation, Advances
in Financial Machine Learning ch. 7), plus EMBARGO_DAYS more weekdays: market
holidays stretch a horizon of trading days over more weekdays, and market
moves stay correlated a little past the label.

Trading days are counted as weekdays (numpy's busday_count). A file without
dates gives no way to tell how many rows share a date, so the purge there is
a conservative share of the training rows (UNDATED_PURGE_SHARE).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from inputs.errors import DataError
from inputs.files import Labelled

UNDATED_PURGE_SHARE = 0.05  # of the rows before the first boundary: 5% of 9,000 rows is ~9 dates of 48 tickers


@dataclass(frozen=True)
class Split:
    """One boundary: the training rows kept, the rows evaluated, and how many rows the purge dropped."""
    name: str              # "validation fold 1", "test file"
    train: np.ndarray      # indices into the training rows' file
    evaluate: np.ndarray   # indices into the evaluated rows' file
    purged: int
    boundary: str          # the first evaluated date, or "row N" in a file without dates


def purge_mask(train_dates: np.ndarray, first_evaluated: np.datetime64, horizon: int, embargo: int) -> np.ndarray:
    """True for the training rows to keep: their label horizon (plus embargo) ends before `first_evaluated`.

    A row dated t has its label from the `horizon` trading days after t; the
    last of them is on or after `first_evaluated` when fewer than horizon + 1
    weekdays lie in [t, first_evaluated).
    """
    return np.busday_count(train_dates, first_evaluated) > horizon + embargo


def validation_splits(rows: Labelled, fraction: float, folds: int, horizon: int, embargo: int) -> list[Split]:
    """The train file's chronological tail as `folds` consecutive folds; fold k trains on the purged rows before it."""
    n = len(rows)
    start = int(round(n * (1 - fraction)))
    cuts = [start + (n - start) * k // folds for k in range(folds + 1)]
    if rows.dated:  # a boundary never splits a date: its rows all go to the evaluated side
        cuts = [int(np.searchsorted(rows.dates, rows.dates[c], side="left")) if c < n else n for c in cuts]
    if cuts[0] == 0 or len(set(cuts)) != len(cuts):
        raise DataError(f"'{rows.path}' is too short to hold out a validation tail of {fraction:.0%} in {folds} "
                        f"fold(s) with training rows before each ({n} rows"
                        + (f" on {len(np.unique(rows.dates))} dates" if rows.dated else "")
                        + "). Use a longer train file, a smaller VALIDATION_FRACTION or fewer VALIDATION_FOLDS.",
                        rows.path)
    undated_purge = math.ceil(UNDATED_PURGE_SHARE * cuts[0])
    splits = []
    for k, (start, stop) in enumerate(zip(cuts[:-1], cuts[1:])):
        if rows.dated:
            kept = np.flatnonzero(purge_mask(rows.dates[:start], rows.dates[start], horizon, embargo))
            boundary = str(rows.dates[start])
        else:
            kept = np.arange(max(0, start - undated_purge))
            boundary = f"row {start + 1}"
        splits.append(Split(f"validation fold {k + 1}", kept, np.arange(start, stop), start - len(kept), boundary))
    return splits


def holdout_split(train: Labelled, test: Labelled, horizon: int, embargo: int) -> Split:
    """Train on the whole train file but the rows whose label horizon reaches the test file's first date."""
    if train.dated:
        kept = np.flatnonzero(purge_mask(train.dates, test.dates[0], horizon, embargo))
        boundary = str(test.dates[0])
    else:
        kept = np.arange(len(train) - math.ceil(UNDATED_PURGE_SHARE * len(train)))
        boundary = "the test file's first row"
    return Split("test file", kept, np.arange(len(test)), len(train) - len(kept), boundary)
