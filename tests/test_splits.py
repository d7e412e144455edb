"""Chronological splits and the purge at every boundary, against rows counted by hand."""
import math

import numpy as np
import pytest

from bench.market import HORIZON, simulate_market, windows
from inputs.errors import DataError
from inputs.files import Labelled
from inputs.splits import (
    UNDATED_PURGE_SHARE,
    holdout_split,
    purge_mask,
    validation_splits,
)


def panel(first: str, dates: int, tickers: int, every: int = 1) -> Labelled:
    """`tickers` rows on each of `dates` weekdays, `every` weekdays apart, in date-then-ticker order."""
    days = np.busday_offset(first, np.arange(dates) * every, roll="forward")
    n = dates * tickers
    return Labelled(np.zeros((n, 2), np.float32), (np.arange(n) % 3 == 0).astype(np.int8),
                    np.repeat(days, tickers), np.tile([f"T{i}" for i in range(tickers)], dates), ("a", "b"), "x.csv")


def test_the_validation_tail_purges_every_row_whose_label_reaches_it():
    # 30 consecutive weekdays x 2 tickers; the tail starts at row round(60 * 0.8) = 48, the 25th date (index 24).
    # A row dated i weekdays in has busday_count(i, 24) = 24 - i; with horizon 10 + embargo 2 it is purged
    # when 24 - i <= 12, i.e. dates 12..23: 12 dates x 2 tickers = 24 rows, leaving dates 0..11 (24 rows).
    rows = panel("2021-01-04", 30, 2)
    [split] = validation_splits(rows, fraction=0.2, folds=1, horizon=10, embargo=2)
    assert split.evaluate.tolist() == list(range(48, 60))
    assert split.train.tolist() == list(range(24)) and split.purged == 24
    assert split.boundary == str(rows.dates[48])


def test_weekly_windows_lose_the_two_dates_before_the_boundary():
    # one window a week (every 5 weekdays), 48 tickers, as D.AT: the dates 5 and 10 weekdays before the
    # boundary are within 10 + 2, the one 15 before is not: 2 dates x 48 rows purged
    rows = panel("2021-01-04", 40, 48, every=5)
    [split] = validation_splits(rows, fraction=0.2, folds=1, horizon=10, embargo=2)
    assert split.purged == 96
    assert rows.dates[split.train[-1]] == rows.dates[split.evaluate[0]] - np.timedelta64(21, "D")  # 3 weeks back


def test_a_boundary_never_splits_a_date():
    # 10 dates x 3 tickers; round(30 * 0.75) = 22 falls on the 8th date (rows 21-23): its rows all go to the tail
    rows = panel("2021-01-04", 10, 3)
    [split] = validation_splits(rows, fraction=0.25, folds=1, horizon=1, embargo=0)
    assert split.evaluate.tolist() == list(range(21, 30))


def test_each_walk_forward_fold_is_purged_at_its_own_boundary():
    rows = panel("2021-01-04", 60, 1)  # one row per weekday
    splits = validation_splits(rows, fraction=0.5, folds=3, horizon=10, embargo=0)
    assert [s.evaluate[0] for s in splits] == [30, 40, 50] and splits[-1].evaluate[-1] == 59
    for split in splits:  # the rows less than 11 weekdays before each boundary are out, the rest in
        start = split.evaluate[0]
        assert split.train.tolist() == list(range(start - 10)) and split.purged == 10


def test_no_kept_training_label_reaches_into_the_evaluated_period():
    market = simulate_market(seed=1, tickers=5, years=2)
    simulated = windows(market)
    rows = Labelled(simulated.x.astype(np.float32), simulated.y, simulated.dates, simulated.tickers, None, "sim.csv")
    for split in validation_splits(rows, 0.3, 2, horizon=HORIZON, embargo=0):
        first = rows.dates[split.evaluate[0]]
        label_ends = np.busday_offset(rows.dates[split.train], HORIZON)  # the last day each label looks at
        assert (label_ends < first).all()
        later = np.setdiff1d(np.arange(split.evaluate[0]), split.train)
        assert (np.busday_offset(rows.dates[later], HORIZON) >= first).all()  # and only those were purged


def test_a_file_without_dates_purges_a_share_of_its_rows():
    rows = Labelled(np.zeros((100, 2), np.float32), (np.arange(100) % 2).astype(np.int8), path="plain.csv")
    [split] = validation_splits(rows, fraction=0.2, folds=1, horizon=10, embargo=2)
    assert split.evaluate.tolist() == list(range(80, 100))
    assert split.purged == math.ceil(UNDATED_PURGE_SHARE * 80) == 4 and split.train.tolist() == list(range(76))
    assert split.boundary == "row 81"


def test_the_test_file_split_purges_the_end_of_the_train_file():
    train = panel("2021-01-04", 20, 2)  # weekdays 2021-01-04 .. 2021-01-29
    test = panel("2021-02-01", 5, 2)
    split = holdout_split(train, test, horizon=3, embargo=1)
    # 2021-02-01 is a Monday: the last 4 weekdays (Jan 26-29) are within 3 + 1 of it
    assert split.purged == 8 and split.train.tolist() == list(range(32))
    assert split.evaluate.tolist() == list(range(10)) and split.boundary == "2021-02-01"


def test_purge_mask_counts_weekdays_across_a_weekend():
    friday, monday = np.datetime64("2021-01-08"), np.datetime64("2021-01-11")
    assert purge_mask(np.array([friday]), monday, horizon=1, embargo=0).tolist() == [False]  # 1 weekday
    assert purge_mask(np.array([friday - np.timedelta64(1, "D")]), monday, 1, 0).tolist() == [True]  # Thu: 2


def test_too_short_a_file_for_the_folds_is_refused():
    rows = panel("2021-01-04", 3, 2)
    with pytest.raises(DataError, match=r"too short.*VALIDATION_FOLDS"):
        validation_splits(rows, fraction=0.2, folds=4, horizon=1, embargo=0)
