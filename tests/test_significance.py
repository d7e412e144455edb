"""The block permutation test: by hand on tiny cases, against scipy, and on simulated markets where the truth is known."""
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from bench.market import simulate_market, windows
from ranking.significance import (
    KeptCounts,
    PermutationTest,
    at_least_as_many,
    bh_q_values,
    block_orders,
    date_blocks,
    family_wise_p_values,
    pooled_predictions,
    row_blocks,
)


def weekdays(first: str, count: int, every: int = 1) -> np.ndarray:
    return np.busday_offset(first, np.arange(count) * every, roll="forward")


def test_bh_matches_statsmodels():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(size=20), rng.uniform(0, 1e-3, size=5), [1.0, 1.0, 0.5, 0.5]])
    np.testing.assert_allclose(bh_q_values(p), multipletests(p, method="fdr_bh")[1], rtol=1e-12)


def test_blocks_of_whole_dates_span_at_least_the_horizon():
    days = weekdays("2021-01-04", 23)  # 23 consecutive weekdays, one ticker
    blocks = date_blocks(days, np.array(["A"] * 23), horizon=5)
    sizes = np.diff(blocks.bounds)
    assert sizes.tolist() == [5, 5, 5, 8]  # the 3 weekdays left over join the last block
    assert blocks.by_date and blocks.span_days == 23


def test_every_ticker_keeps_its_own_labels_under_every_order():
    days = np.repeat(weekdays("2021-01-04", 8), 3)
    tickers = np.tile(["A", "B", "C"], 8)
    labels = np.arange(24) % 2
    test = PermutationTest(labels, date_blocks(days, tickers, horizon=2), permutations=50, seed=1)
    # a row's label under any order is a label of the same ticker on the same weekday offset in some block
    for column in range(test.orders):
        for row in range(24):
            source = np.flatnonzero((tickers == tickers[row]) & (labels == test.labels[row, column]))
            assert source.size  # that ticker has such a label somewhere
    assert test.mask is None  # every ticker on every date: nothing left out
    np.testing.assert_array_equal(test.labels[:, 0], labels)  # order 0 is the real one


def test_an_exact_test_by_hand():
    # 3 blocks of one row each: 6 orders, all enumerated. Labels 1, 0, 0; one model predicts row 0 only.
    test = PermutationTest(np.array([1, 0, 0]), row_blocks(3, 1), permutations=99, seed=0)
    assert test.exact and test.orders == 6 and test.smallest_p_value == pytest.approx(1 / 6)
    counts = test.counts(np.array([1.0, 0, 0]))
    # the hit lands on row 0 in the 2 orders that keep block 0 first (the real one included): p = 2/6
    assert test.p_values(counts)[0] == pytest.approx(2 / 6)


def test_the_statistic_is_the_binomial_tail_and_the_p_value_counts_orders():
    rng = np.random.default_rng(3)
    labels = (rng.uniform(size=200) < 0.3).astype(int)
    pooled = (rng.uniform(size=(3, 200)) < 0.2).sum(axis=0).astype(np.float32)  # 3 reruns pooled
    test = PermutationTest(labels, row_blocks(200, 10), permutations=199, seed=4)
    hits = np.rint(pooled @ test.labels)
    tails = stats.binom.sf(hits - 1, pooled.sum(), labels.mean())  # P(X >= hits)
    expected = np.mean(tails <= tails[0])  # orders at least as extreme as the real one, itself included
    assert test.p_values(test.counts(pooled))[0] == pytest.approx(expected)


def test_pooled_predictions_add_the_reruns():
    bits = [np.packbits(np.array(v, dtype=np.uint8)).tobytes() for v in ([1, 0, 1, 1, 0], [1, 1, 0, 1, 0])]
    assert pooled_predictions(bits, 5).tolist() == [2, 1, 1, 2, 0]


def test_family_wise_p_values_by_hand():
    # 2 combinations, 4 orders (the first the real one). Counts: how many orders are at least as extreme.
    counts = np.array([[1, 4, 2, 3],    # the best of its own orders: p = 1/4
                       [3, 1, 4, 2]])   # p = 3/4
    # the best count over both per order: 1, 1, 2, 2; the first is <= 1 in 2 of 4, the second <= 3 in 4 of 4
    np.testing.assert_allclose(family_wise_p_values(counts), [2 / 4, 4 / 4])


def test_few_blocks_are_enumerated_and_many_are_drawn():
    assert len(block_orders(4, permutations=999, seed=0)) == 24
    drawn = block_orders(12, permutations=99, seed=0)
    assert drawn.shape == (100, 12) and drawn[0].tolist() == list(range(12))
    assert all(sorted(order) == list(range(12)) for order in drawn)
    np.testing.assert_array_equal(drawn, block_orders(12, permutations=99, seed=0))  # the same in every run


def test_every_order_is_ranked_by_its_binomial_tail_with_and_without_missing_tickers():
    """counts() for every order, against scipy's tail: all tickers present (ranked by hits, the same order)
    and a ticker that starts late (each order with its own rows and positive rate)."""
    rng = np.random.default_rng(11)
    dates = np.repeat(np.arange(np.datetime64("2021-01-04"), np.datetime64("2021-03-01")), 3)
    dates = dates[np.is_busday(dates)]
    tickers = np.tile(np.array(["A", "B", "C"]), len(dates) // 3)
    for late in (False, True):
        keep = ~((tickers == "C") & (dates < np.datetime64("2021-02-01"))) if late else np.ones(len(dates), bool)
        d, t = dates[keep], tickers[keep]
        labels = (rng.uniform(size=len(d)) < 0.35).astype(int)
        pooled = (rng.uniform(size=(3, len(d))) < 0.3).sum(axis=0).astype(np.float32)
        test = PermutationTest(labels, date_blocks(d, t, horizon=3), permutations=299, seed=2)
        assert (test.mask is not None) == late
        mask = test.mask if late else np.ones_like(test.labels)
        hits, n = np.rint(pooled @ test.labels), np.rint(pooled @ mask)
        tails = np.where(hits > 0, stats.binom.sf(hits - 1, n, test.rate), 1.0)
        np.testing.assert_array_equal(test.counts(pooled)[0], stats.rankdata(tails, method="max"))


def test_a_ticker_missing_on_the_source_date_is_left_out_of_that_order():
    # ticker B starts on the third date: when its rows' labels come from the first two dates, they count nothing
    days = np.array(["2021-01-04", "2021-01-05", "2021-01-06", "2021-01-06", "2021-01-07", "2021-01-07"],
                    dtype="datetime64[D]")
    tickers = np.array(["A", "A", "A", "B", "A", "B"])
    test = PermutationTest(np.array([1, 0, 1, 1, 0, 1]), date_blocks(days, tickers, horizon=1), 99, seed=0)
    assert test.exact and test.orders == math.factorial(4) and test.mask is not None
    counted = test.mask.sum(axis=0)
    assert counted[0] == 6 and counted.min() < 6  # all rows in the real order, fewer in some others
    for column in range(test.orders):
        assert test.rate[column] == pytest.approx(test.labels[:, column].sum() / counted[column])


# ---------------------------------------------------------------- calibration on simulated markets
def market_rows(seed: int, skill: float):
    """The last 40% of a simulated market's windows, as the evaluated rows, with their dates and tickers."""
    market = simulate_market(seed, tickers=30, years=3, skill=skill)
    rows = windows(market)
    evaluated = rows.dates >= np.unique(rows.dates)[int(0.6 * len(np.unique(rows.dates)))]
    return rows.x[evaluated], rows.y[evaluated], rows.dates[evaluated], rows.tickers[evaluated]


def no_skill_models(rng, x, count=6) -> np.ndarray:
    """Stand-ins for nets trained on a market without skill: fixed random functions of the window's returns.

    Like real nets they predict from recent moves, so their positives cluster on dates and tickers.
    """
    returns = np.log(x[:, 1:] / x[:, :-1])
    features = np.column_stack([returns[:, -10:], returns[:, -5:].sum(axis=1), returns.std(axis=1)])
    features = (features - features.mean(axis=0)) / features.std(axis=0)
    out = []
    for _ in range(count):
        score = np.tanh(features @ rng.standard_normal((features.shape[1], 8))) @ rng.standard_normal(8)
        out.append(score >= np.quantile(score, rng.uniform(0.6, 0.9)))
    return np.array(out, dtype=np.float32)


def reversal_model(x, dates) -> np.ndarray:
    """Each date, buy the fifth of the tickers that fell most over the last 5 days: the planted edge."""
    last5 = np.log(x[:, -1] / x[:, -6])
    picks = np.zeros(len(x), dtype=np.float32)
    for day in np.unique(dates):
        rows = np.flatnonzero(dates == day)
        picks[rows[last5[rows] <= np.quantile(last5[rows], 0.2)]] = 1
    return picks


def test_no_skill_gives_calibrated_p_values_where_independent_rows_do_not():
    rng = np.random.default_rng(7)
    ours, family, independent = [], [], []
    for seed in range(40):
        x, y, dates, tickers = market_rows(seed, skill=0.0)
        test = PermutationTest(y, date_blocks(dates, tickers, horizon=10), permutations=199, seed=seed)
        predictions = no_skill_models(rng, x)
        counts = test.counts(predictions)
        ours.extend(test.p_values(counts))
        family.append(family_wise_p_values(counts).min())
        hits, n = predictions @ y, predictions.sum(axis=1)
        independent.extend(stats.binom.sf(hits - 1, n, y.mean()))
    ours, family, independent = map(np.array, (ours, family, independent))
    assert np.mean(ours <= 0.05) <= 0.08 and np.mean(ours <= 0.2) <= 0.26
    assert np.mean(family <= 0.05) <= 0.1 and np.mean(family <= 0.2) <= 0.3
    assert stats.kstest(ours, "uniform").pvalue > 0.001  # close to uniform (discrete and clustered, so not exact)
    # the binomial test that assumes independent rows finds far more "skill" than there is
    assert np.mean(independent <= 0.05) > 1.5 * np.mean(ours <= 0.05)


def test_planted_stock_picking_skill_gives_small_p_values():
    small = []
    for seed in range(10):
        x, y, dates, tickers = market_rows(100 + seed, skill=1.0)
        test = PermutationTest(y, date_blocks(dates, tickers, horizon=10), permutations=199, seed=seed)
        small.append(test.p_values(test.counts(reversal_model(x, dates)))[0] <= 0.05)
    assert np.mean(small) >= 0.8


def test_at_least_as_many_is_scipys_max_rank_of_the_negated_hits():
    rng = np.random.default_rng(3)
    hits = rng.integers(0, 40, size=(30, 101))
    hits[0] = 7  # a row of ties
    np.testing.assert_array_equal(at_least_as_many(hits), stats.rankdata(-hits, method="max", axis=1))


def test_kept_counts_give_the_family_wise_p_values_of_the_whole_matrix():
    rng = np.random.default_rng(4)
    orders = 50
    rows = {f"c{i}": rng.integers(1, orders + 1, orders) for i in range(40)} | {"pruned": None}
    kept = KeptCounts(orders)
    for cid, row in rows.items():  # one at a time, as a sweep records them
        kept.add(cid, row)
    matrix = np.stack([np.full(orders, orders) if row is None else row for row in rows.values()])
    np.testing.assert_allclose(kept.family_wise(list(rows)), family_wise_p_values(matrix))
    np.testing.assert_allclose(kept.p_values(list(rows)), matrix[:, 0] / orders)


def test_at_least_as_many_tallies_large_hits_within_each_rows_spread():
    rng = np.random.default_rng(5)
    hits = 10**9 + rng.integers(0, 50, size=(4, 101))  # a tally from 0 would need billions of slots
    np.testing.assert_array_equal(at_least_as_many(hits), stats.rankdata(-hits, method="max", axis=1))
