"""One training's precision and its binomial p-value, the test that assumes independent rows.

A training's precision tp / (tp + fp) is compared with what guessing would
give: if the model had no skill and rows were independent, each of its
tp + fp positive predictions would be right with probability equal to the
evaluation rows' positive rate, so tp ~ Binomial(tp + fp, positive rate).
The p-value is P(X >= tp) under that law, one-sided. Market rows are not
independent, so this is not what the ranking sorts by (ranking/significance.py
is): it stays as the column p_value_independent_rows, D.AT's test, for comparison.
"""
from __future__ import annotations

import numpy as np
from scipy import special, stats


def binomial_precision_p_value(tp, fp, positive_rate):
    """P(X >= tp), X ~ Binomial(tp + fp, positive_rate); 1.0 where nothing was predicted positive.

    The survival function is evaluated directly (not 1 - cdf), so p-values
    of 1e-30 keep their digits instead of rounding to 0.
    """
    tp, fp = np.asarray(tp).astype(np.int64), np.asarray(fp).astype(np.int64)
    n = tp + fp
    # bdtrc(k, n, r) = P(X > k): the same regularized incomplete beta as scipy.stats.binom.sf
    p = special.bdtrc(np.maximum(tp - 1, 0), n, positive_rate)
    return np.where(tp == 0, 1.0, p)  # tp = 0 includes "nothing predicted positive"


def fisher_precision_p_value(tp, fp, tn, fn):
    """One-sided Fisher's exact test on [[tp, fp], [fn, tn]] (alternative 'greater').

    Written as the hypergeometric tail so that it runs on whole columns at
    once; it equals scipy.stats.fisher_exact(table, alternative="greater").
    """
    tp, fp, tn, fn = map(np.asarray, (tp, fp, tn, fn))
    total, positives, predicted = tp + fp + tn + fn, tp + fn, tp + fp
    p = stats.hypergeom.sf(tp - 1, total, positives, predicted)
    return np.where(predicted == 0, 1.0, np.clip(p, 0.0, 1.0))


def score_counts(tp, fp, tn, fn, hopeless, test: str = "binomial"):
    """(precision, p_value, positive_rate) arrays for per-training counts; hopeless trainings get p = 1.

    A training is hopeless when it diverged or the pruner stopped it: no
    evidence of skill, whatever its counts.
    """
    tp, fp, tn, fn = (np.asarray(c, dtype=np.int64) for c in (tp, fp, tn, fn))
    predicted = tp + fp
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), np.nan)
    positive_rate = (tp + fn) / (tp + fp + tn + fn)
    if test == "fisher":
        p = fisher_precision_p_value(tp, fp, tn, fn)
    else:
        p = binomial_precision_p_value(tp, fp, positive_rate)
    return precision, np.where(np.asarray(hopeless, dtype=bool), 1.0, p), positive_rate
