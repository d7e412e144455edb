"""Tests for evaluate.py: the precision p-values, per-training scoring and the ranking."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from evaluate import (
    binomial_precision_p_value,
    fisher_precision_p_value,
    rank_combinations,
    score_reruns,
)
from settings import HYPERPARAMETERS


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
# score_reruns
# --------------------------------------------------------------------------

def reruns_frame(rows):
    """rows: (combination, rerun, tp, fp, tn, fn, diverged)."""
    frame = pd.DataFrame(rows, columns=["combination", "rerun", "tp", "fp", "tn", "fn", "diverged"])
    frame["seconds"] = 1.0
    return frame


def test_score_reruns_precision_and_binomial_p_value():
    frame = reruns_frame([
        ("a", 0, 3, 1, 4, 2, False),   # 10 rows, 5 positive: rate 0.5
        ("a", 1, 0, 0, 6, 4, False),   # nothing predicted
        ("a", 2, 2, 6, 2, 0, False),   # 2 positive out of 10: rate 0.2
    ])
    out = score_reruns(frame)
    assert out["precision"].iloc[0] == pytest.approx(0.75)
    assert np.isnan(out["precision"].iloc[1])
    assert out["precision"].iloc[2] == pytest.approx(0.25)
    np.testing.assert_allclose(out["positive_rate"], [0.5, 0.4, 0.2])
    np.testing.assert_allclose(out["p_value"], [scipy_binomial(3, 1, 0.5), 1.0, scipy_binomial(2, 6, 0.2)],
                               rtol=1e-9)
    # the input is not modified
    assert "p_value" not in frame and "precision" not in frame


def test_score_reruns_diverged_rows_get_p_value_one():
    frame = reruns_frame([
        ("a", 0, 9, 0, 9, 0, True),    # would be very significant, but the training diverged
        ("a", 1, 9, 0, 9, 0, False),
        ("b", 0, 9, 0, 9, 0, 1),       # 0/1 flags as read back from a CSV
        ("b", 1, 9, 0, 9, 0, 0),
    ])
    out = score_reruns(frame)
    expected_significant = scipy_binomial(9, 0, 0.5)
    assert expected_significant < 0.01
    np.testing.assert_allclose(out["p_value"], [1.0, expected_significant, 1.0, expected_significant],
                               rtol=1e-9)


def test_score_reruns_fisher_option():
    rows = [("a", 0, 3, 1, 5, 2, False), ("a", 1, 7, 2, 40, 30, False), ("a", 2, 0, 0, 5, 5, False),
            ("a", 3, 7, 2, 40, 30, True)]
    out = score_reruns(reruns_frame(rows), test="fisher")
    expected = [scipy_fisher(3, 1, 5, 2), scipy_fisher(7, 2, 40, 30), 1.0, 1.0]
    np.testing.assert_allclose(out["p_value"], expected, rtol=1e-9)
    # and it is not the binomial p-value
    binomial = score_reruns(reruns_frame(rows))
    assert not np.allclose(out["p_value"][:2], binomial["p_value"][:2])


# --------------------------------------------------------------------------
# rank_combinations
# --------------------------------------------------------------------------

def scored_rows(spec):
    """spec: combination -> list of (p_value, tp, fp) per rerun; builds a reruns table."""
    rows = []
    for cid, reruns in spec.items():
        for rerun, (p, tp, fp) in enumerate(reruns):
            row = {"combination": cid, "rerun": rerun, **{h: None for h in HYPERPARAMETERS},
                   "model": "mlp", "learning_rate": 1e-3, "tp": tp, "fp": fp, "tn": 10, "fn": 10,
                   "p_value": p, "precision": tp / (tp + fp) if tp + fp else np.nan,
                   "positive_rate": (tp + 10) / (tp + fp + 20), "diverged": False, "seconds": 2.0}
            rows.append(row)
    return pd.DataFrame(rows)


def test_rank_one_row_per_combination_with_medians():
    table = scored_rows({
        "odd": [(0.30, 5, 5), (0.01, 9, 1), (0.20, 7, 3)],                # median p 0.20, tp 7, fp 3
        "even": [(0.40, 2, 8), (0.10, 6, 4), (0.02, 8, 2), (0.90, 1, 9)],  # median p (0.1 + 0.4) / 2
        "single": [(0.05, 4, 1)],
    })
    ranking = rank_combinations(table)
    assert len(ranking) == 3
    assert sorted(ranking["combination"]) == ["even", "odd", "single"]
    row = ranking.set_index("combination")
    assert row.loc["odd", "p_value"] == pytest.approx(0.20)
    assert row.loc["even", "p_value"] == pytest.approx(0.25)
    assert row.loc["single", "p_value"] == pytest.approx(0.05)
    assert (row.loc["odd", "tp"], row.loc["odd", "fp"]) == (7, 3)
    assert (row.loc["even", "tp"], row.loc["even", "fp"]) == (4, 6)   # medians of 1,2,6,8 and 2,4,8,9
    assert row.loc["odd", "reruns"] == 3 and row.loc["even", "reruns"] == 4 and row.loc["single", "reruns"] == 1
    assert row.loc["even", "seconds"] == pytest.approx(8.0)
    # sorted by p-value, ranks 1..n
    assert list(ranking["combination"]) == ["single", "odd", "even"]
    assert list(ranking["rank"]) == [1, 2, 3]
    assert ranking["p_value"].is_monotonic_increasing


def test_rank_counts_diverged_reruns():
    table = scored_rows({"a": [(1.0, 0, 0), (0.2, 3, 1), (0.3, 2, 1)], "b": [(0.4, 2, 2)]})
    table.loc[0, "diverged"] = True
    ranking = rank_combinations(table).set_index("combination")
    assert ranking.loc["a", "diverged"] == 1 and ranking.loc["b", "diverged"] == 0
    assert ranking.loc["a", "p_value"] == pytest.approx(0.3)


def test_rank_ties_broken_by_precision_then_tp_then_id():
    """Equal median p-values: higher precision first, then more true positives, then the id."""
    table = scored_rows({
        # all four have median p-value 0.5
        "d_low_precision": [(0.5, 2, 6)],    # precision 0.25
        "c_more_tp": [(0.5, 8, 8)],          # precision 0.5, tp 8
        "b_fewer_tp": [(0.5, 2, 2)],         # precision 0.5, tp 2
        "a_fewer_tp": [(0.5, 2, 2)],         # same as b: the id decides
        "e_best": [(0.1, 1, 3)],             # lower p-value beats everything above
        "f_nothing": [(1.0, 0, 0)],          # predicted nothing: p = 1, precision NaN
        "g_bad": [(1.0, 0, 4)],              # p = 1, precision 0: before NaN precision
    })
    ranking = rank_combinations(table)
    assert list(ranking["combination"]) == [
        "e_best", "c_more_tp", "a_fewer_tp", "b_fewer_tp", "d_low_precision", "g_bad", "f_nothing"]
    assert list(ranking["rank"]) == list(range(1, 8))


def test_rank_is_independent_of_row_order():
    table = scored_rows({"x": [(0.5, 3, 3), (0.5, 3, 3)], "y": [(0.5, 3, 3), (0.5, 3, 3)],
                         "z": [(0.2, 1, 1), (0.6, 4, 1)]})
    forward = rank_combinations(table)
    backward = rank_combinations(table.iloc[::-1].reset_index(drop=True))
    assert list(forward["combination"]) == list(backward["combination"]) == ["z", "x", "y"]


def test_rank_empty_table():
    ranking = rank_combinations(pd.DataFrame())
    assert ranking.empty
    assert list(ranking.columns[:2]) == ["rank", "combination"] and "p_value" in ranking
