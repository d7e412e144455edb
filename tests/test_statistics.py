"""Tests for ranking/scores.py and ranking/table.py: the precision p-values, per-training scoring and the ranking."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import multipletests

from inputs.hyperparameters import HYPERPARAMETERS
from ranking.scores import (
    binomial_precision_p_value,
    fisher_precision_p_value,
    score_counts,
)
from ranking.significance import KeptCounts, family_wise_p_values
from ranking.table import rank_combinations


def scipy_binomial(tp, fp, rate):
    return stats.binomtest(tp, tp + fp, rate, alternative="greater").pvalue


def scipy_fisher(tp, fp, tn, fn):
    return stats.fisher_exact([[tp, fp], [fn, tn]], alternative="greater")[1]


# --------------------------------------------------------------------------
# binomial_precision_p_value
# --------------------------------------------------------------------------

BINOMIAL_CASES = [
    # (tp, fp, positive rate)
    (0, 1, 0.5),
    (0, 20, 0.3),          # no true positive: P(X >= 0) = 1
    (1, 0, 0.5),
    (7, 0, 0.2),           # no false positive
    (1, 9, 0.1),
    (5, 5, 0.5),
    (6, 4, 0.5),
    (30, 70, 0.25),
    (55, 45, 0.5),
    (12, 3, 0.6),
    (1, 0, 1e-9),          # rate near 0
    (0, 3, 1e-9),
    (3, 2, 1 - 1e-9),      # rate near 1
    (10, 0, 1 - 1e-6),
    (2600, 2400, 0.5),     # n = 5000
    (4000, 1000, 0.7),
    (1600, 3400, 0.3),
    (5000, 0, 0.999),
    (0, 5000, 0.5),
]


@pytest.mark.parametrize("tp, fp, rate", BINOMIAL_CASES)
def test_binomial_matches_scipy_binomtest(tp, fp, rate):
    expected = scipy_binomial(tp, fp, rate)
    got = float(binomial_precision_p_value(tp, fp, rate))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("tp, fp, rate, expected", [
    (3, 0, 0.5, 0.125),               # all three right: 0.5^3
    (2, 1, 0.5, 0.5),                 # P(X >= 2), X ~ Bin(3, 1/2) = (3 + 1) / 8
    (1, 1, 0.5, 0.75),                # 1 - P(X = 0) = 1 - 1/4
    (0, 4, 0.5, 1.0),                 # P(X >= 0)
    (1, 2, 0.1, 1 - 0.9 ** 3),        # P(X >= 1) = 1 - 0.9^3 = 0.271
    (2, 0, 0.3, 0.09),                # 0.3^2
    (4, 1, 0.5, 6 / 32),              # (C(5,4) + C(5,5)) / 2^5
])
def test_binomial_hand_computed(tp, fp, rate, expected):
    assert float(binomial_precision_p_value(tp, fp, rate)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("rate", [1e-9, 0.3, 0.5, 0.999])
def test_binomial_nothing_predicted_is_one(rate):
    assert float(binomial_precision_p_value(0, 0, rate)) == 1.0


def test_binomial_nothing_predicted_is_one_in_columns():
    p = binomial_precision_p_value(np.array([0, 3, 0]), np.array([0, 0, 2]), np.array([0.5, 0.5, 0.5]))
    np.testing.assert_allclose(p, [1.0, 0.125, 1.0], rtol=1e-12)


@pytest.mark.parametrize("tp, rate", [(200, 0.3), (100, 0.5), (60, 0.01), (1000, 0.5)])
def test_binomial_tiny_p_values_keep_their_digits(tp, rate):
    # With fp = 0, P(X >= tp) = rate^tp exactly: far below 1 - cdf's resolution.
    exact = math.exp(tp * math.log(rate))
    got = float(binomial_precision_p_value(tp, 0, rate))
    assert got > 0.0
    assert got == pytest.approx(exact, rel=1e-10)


def test_binomial_tiny_p_value_with_false_positives():
    # P(X >= 199), X ~ Bin(200, 0.3) = 0.3^200 + 200 * 0.3^199 * 0.7
    exact = 0.3 ** 200 + 200 * 0.3 ** 199 * 0.7
    got = float(binomial_precision_p_value(199, 1, 0.3))
    assert got > 0.0
    assert got == pytest.approx(exact, rel=1e-10)


def test_binomial_vectorized_matches_scalar():
    tp = np.array([c[0] for c in BINOMIAL_CASES])
    fp = np.array([c[1] for c in BINOMIAL_CASES])
    rate = np.array([c[2] for c in BINOMIAL_CASES])
    expected = [scipy_binomial(*c) for c in BINOMIAL_CASES]
    np.testing.assert_allclose(binomial_precision_p_value(tp, fp, rate), expected, rtol=1e-9, atol=1e-300)


@settings(max_examples=200, deadline=None)
@given(tp=st.integers(0, 400), fp=st.integers(0, 400), rate=st.floats(1e-6, 1 - 1e-6))
def test_property_binomial_is_a_probability(tp, fp, rate):
    p = float(binomial_precision_p_value(tp, fp, rate))
    assert 0.0 <= p <= 1.0


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 400), data=st.data(), rate=st.floats(1e-4, 1 - 1e-4))
def test_property_more_true_positives_never_raise_p(n, data, rate):
    """Same number of positive predictions, more of them right: the p-value cannot go up."""
    tp = data.draw(st.integers(0, n - 1))
    fewer = float(binomial_precision_p_value(tp, n - tp, rate))
    more = float(binomial_precision_p_value(tp + 1, n - tp - 1, rate))
    assert more <= fewer


@settings(max_examples=100, deadline=None)
@given(tp=st.integers(0, 300), fp=st.integers(0, 300), rate=st.floats(1e-3, 1 - 1e-3))
def test_property_binomial_matches_scipy(tp, fp, rate):
    got = float(binomial_precision_p_value(tp, fp, rate))
    if tp + fp == 0:
        assert got == 1.0
    else:
        assert got == pytest.approx(scipy_binomial(tp, fp, rate), rel=1e-8, abs=1e-300)


# --------------------------------------------------------------------------
# fisher_precision_p_value
# --------------------------------------------------------------------------

FISHER_CASES = [
    # (tp, fp, tn, fn)
    (3, 1, 5, 2),
    (10, 0, 10, 0),
    (0, 5, 5, 0),
    (5, 0, 0, 5),
    (1, 1, 1, 1),
    (0, 3, 3, 3),
    (7, 2, 40, 30),
    (50, 30, 80, 40),
    (200, 150, 300, 250),
    (4, 0, 96, 0),         # every positive found, nothing else predicted
    (0, 4, 0, 96),
    (9, 1, 0, 0),          # no negatives at all
]


@pytest.mark.parametrize("tp, fp, tn, fn", FISHER_CASES)
def test_fisher_matches_scipy(tp, fp, tn, fn):
    got = float(fisher_precision_p_value(tp, fp, tn, fn))
    assert got == pytest.approx(scipy_fisher(tp, fp, tn, fn), rel=1e-9, abs=1e-300)


def test_fisher_hand_computed():
    # [[2, 0], [0, 2]]: only one table with these margins is at least as extreme:
    # P = 1 / C(4, 2) = 1/6
    assert float(fisher_precision_p_value(2, 0, 2, 0)) == pytest.approx(1 / 6, rel=1e-12)


@pytest.mark.parametrize("tn, fn", [(5, 5), (0, 3), (10, 0)])
def test_fisher_nothing_predicted_is_one(tn, fn):
    assert float(fisher_precision_p_value(0, 0, tn, fn)) == 1.0


@settings(max_examples=150, deadline=None)
@given(st.tuples(*[st.integers(0, 60)] * 4))
def test_property_fisher_matches_scipy_and_is_a_probability(table):
    tp, fp, tn, fn = table
    got = float(fisher_precision_p_value(tp, fp, tn, fn))
    assert 0.0 <= got <= 1.0
    if tp + fp > 0:
        assert got == pytest.approx(scipy_fisher(tp, fp, tn, fn), rel=1e-8, abs=1e-300)


# --------------------------------------------------------------------------
# score_counts: one training's precision and independent-rows p-value
# --------------------------------------------------------------------------

def score(rows, test="binomial"):
    """rows: (tp, fp, tn, fn, hopeless) per training."""
    tp, fp, tn, fn, hopeless = (list(c) for c in zip(*rows))
    return score_counts(tp, fp, tn, fn, hopeless, test)


def test_score_counts_precision_and_binomial_p_value():
    precision, p, rate = score([(3, 1, 4, 2, False),    # 10 rows, 5 positive: rate 0.5
                                (0, 0, 6, 4, False),    # nothing predicted
                                (2, 6, 2, 0, False)])   # 2 positive out of 10: rate 0.2
    assert precision[0] == pytest.approx(0.75) and np.isnan(precision[1]) and precision[2] == pytest.approx(0.25)
    np.testing.assert_allclose(rate, [0.5, 0.4, 0.2])
    np.testing.assert_allclose(p, [scipy_binomial(3, 1, 0.5), 1.0, scipy_binomial(2, 6, 0.2)], rtol=1e-9)


def test_score_counts_hopeless_trainings_get_p_value_one():
    _, p, _ = score([(9, 0, 9, 0, True), (9, 0, 9, 0, False)])  # diverged (or pruned), then a good one
    assert scipy_binomial(9, 0, 0.5) < 0.01
    np.testing.assert_allclose(p, [1.0, scipy_binomial(9, 0, 0.5)], rtol=1e-9)


def test_score_counts_fisher_option():
    rows = [(3, 1, 5, 2, False), (7, 2, 40, 30, False), (0, 0, 5, 5, False), (7, 2, 40, 30, True)]
    _, p, _ = score(rows, test="fisher")
    np.testing.assert_allclose(p, [scipy_fisher(3, 1, 5, 2), scipy_fisher(7, 2, 40, 30), 1.0, 1.0], rtol=1e-9)
    _, binomial, _ = score(rows)
    assert not np.allclose(p[:2], binomial[:2])


# --------------------------------------------------------------------------
# rank_combinations
# --------------------------------------------------------------------------

ORDERS = 20


def reruns_table(spec):
    """spec: combination -> list of (independent-rows p, tp, fp, diverged) per rerun."""
    rows = []
    for cid, reruns in spec.items():
        for rerun, (p, tp, fp, diverged) in enumerate(reruns):
            rows.append({"combination": cid, "rerun": rerun, **{h: None for h in HYPERPARAMETERS},
                         "model": "mlp", "learning_rate": 1e-3, "tp": tp, "fp": fp, "tn": 10, "fn": 10,
                         "p_value_independent_rows": p, "positive_rate": 0.4, "diverged": diverged,
                         "seconds": 2.0, "status": "completed", "epochs": 8})
    return pd.DataFrame(rows)


def rows_of(first: dict) -> dict:
    """combination -> a row of permutation counts whose first entry is `first[cid]` (None: pruned)."""
    rng = np.random.default_rng(0)
    return {cid: None if k is None else np.concatenate([[k], rng.integers(1, ORDERS + 1, ORDERS - 1)])
            for cid, k in first.items()}


def counts_of(first: dict) -> KeptCounts:
    return KeptCounts.of(rows_of(first), ORDERS)


def test_rank_pools_the_reruns_counts_and_takes_the_permutation_p_value():
    table = reruns_table({
        "odd": [(0.30, 5, 5, False), (0.01, 9, 1, False), (0.20, 7, 3, False)],
        "even": [(0.40, 2, 8, False), (0.10, 6, 4, False), (0.02, 8, 2, False), (0.90, 1, 9, True)],
        "none": [(1.0, 0, 0, False)],
    })
    counts = counts_of({"odd": 2, "even": 5, "none": ORDERS})
    ranking = rank_combinations(table, counts)
    row = ranking.set_index("combination")
    assert list(ranking["combination"]) == ["odd", "even", "none"] and list(ranking["rank"]) == [1, 2, 3]
    assert row.loc["odd", "p_value"] == pytest.approx(2 / ORDERS) and row.loc["none", "p_value"] == 1.0
    assert (row.loc["odd", "tp"], row.loc["odd", "fp"]) == (21, 9)  # sums, whole numbers
    assert (row.loc["even", "tp"], row.loc["even", "fp"]) == (16, 14)  # the diverged rerun left out
    assert ranking["tp"].dtype.kind == "i" and ranking["fp"].dtype.kind == "i"
    assert row.loc["odd", "precision"] == pytest.approx(21 / 30) and row.loc["even", "precision"] == pytest.approx(16 / 30)
    assert np.isnan(row.loc["none", "precision"])  # nothing predicted: no precision
    assert row.loc["odd", "p_value_independent_rows"] == pytest.approx(0.20)  # the median of the reruns'
    assert row.loc["even", "p_value_independent_rows"] == pytest.approx(0.25)
    assert row.loc["even", "diverged"] == 1 and row.loc["even", "reruns"] == 4
    assert row.loc["even", "seconds"] == pytest.approx(8.0)


def test_rank_has_the_corrections_beside_the_p_value():
    table = reruns_table({c: [(0.5, 3, 3, False)] for c in "abcd"})
    rows = rows_of({"a": 1, "b": 2, "c": 10, "d": None})
    ranking = rank_combinations(table, KeptCounts.of(rows, ORDERS), false_discovery_rate=0.1)
    np.testing.assert_allclose(ranking["q_value"], multipletests(ranking["p_value"], method="fdr_bh")[1])
    assert ranking["significant_fdr"].tolist() == (ranking["q_value"] <= 0.1).tolist()
    matrix = np.stack([np.full(ORDERS, ORDERS) if rows[c] is None else rows[c] for c in ranking["combination"]])
    np.testing.assert_allclose(ranking["p_value_family_wise"], family_wise_p_values(matrix))
    columns = list(ranking.columns)
    assert columns[columns.index("p_value"):columns.index("p_value") + 4] == [
        "p_value", "q_value", "significant_fdr", "p_value_family_wise"]
    assert ranking.set_index("combination").loc["d", "p_value"] == 1.0  # pruned: no evidence


def test_rank_ties_broken_by_independent_rows_then_precision_then_tp_then_id():
    table = reruns_table({
        "d_low_precision": [(0.5, 2, 6, False)],   # precision 0.25
        "c_more_tp": [(0.5, 8, 8, False)],         # precision 0.5, tp 8
        "b_fewer_tp": [(0.5, 2, 2, False)],        # precision 0.5, tp 2
        "a_fewer_tp": [(0.5, 2, 2, False)],        # same as b: the id decides
        "h_stronger": [(0.3, 1, 3, False)],        # same permutation p, smaller independent-rows p
        "e_best": [(0.9, 1, 3, False)],            # lower permutation p beats everything above
        "f_nothing": [(1.0, 0, 0, False)],         # predicted nothing: precision NaN, last
        "g_bad": [(1.0, 0, 4, False)],             # precision 0: before NaN precision
    })
    first = {cid: 5 for cid in set(table["combination"])} | {"e_best": 1}
    ranking = rank_combinations(table, counts_of(first))
    assert list(ranking["combination"]) == ["e_best", "h_stronger", "c_more_tp", "a_fewer_tp", "b_fewer_tp",
                                            "d_low_precision", "g_bad", "f_nothing"]


def test_rank_is_independent_of_row_order():
    table = reruns_table({"x": [(0.5, 3, 3, False)] * 2, "y": [(0.5, 3, 3, False)] * 2,
                          "z": [(0.2, 1, 1, False), (0.6, 4, 1, False)]})
    counts = counts_of({"x": 3, "y": 3, "z": 1})
    forward = rank_combinations(table, counts)
    backward = rank_combinations(table.iloc[::-1].reset_index(drop=True), counts)
    assert list(forward["combination"]) == list(backward["combination"]) == ["z", "x", "y"]


def test_rank_empty_table():
    ranking = rank_combinations(pd.DataFrame(), KeptCounts(ORDERS))
    assert ranking.empty
    assert list(ranking.columns[:2]) == ["rank", "combination"] and "p_value" in ranking
