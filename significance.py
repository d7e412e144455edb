"""How much to trust the top of a ranking: multiple-testing corrections and a permutation test of the winner.

Ranking hundreds of combinations and reading off the smallest p-value is
data snooping: the winner's p-value is small partly because it was chosen
for being small. Holm's adjustment bounds the chance of any false
discovery, Benjamini-Hochberg's q-values the expected share of false
discoveries, and the permutation test asks directly: with labels that carry
no information, how often would the best of these combinations look at
least this good? (White's Reality Check, 2000; Westfall and Young, 1993.)
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special

import preload


def holm_adjusted(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate), in the input's order."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="mergesort")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def bh_q_values(p_values) -> np.ndarray:
    """Benjamini-Hochberg q-values (false discovery rate), via scipy."""
    preload.wait()  # never import scipy.stats while preload.py's thread is importing it
    from scipy.stats import false_discovery_control
    p = np.asarray(p_values, dtype=float)
    return false_discovery_control(p, method="bh") if len(p) else p


def block_permutations(n_rows: int, block_length: int, n_permutations: int, seed: int) -> np.ndarray:
    """[n_permutations, n_rows] row orders that shuffle whole blocks of consecutive rows.

    Rows are in time order, and neighbouring rows share market conditions;
    moving blocks rather than single rows keeps that dependence inside each
    block, so the permuted labels look like real ones except for their link
    to the predictions.
    """
    rng = np.random.default_rng(seed)
    n_blocks = math.ceil(n_rows / block_length)
    starts = np.arange(n_blocks) * block_length
    blocks = [np.arange(s, min(s + block_length, n_rows)) for s in starts]
    return np.stack([np.concatenate([blocks[b] for b in rng.permutation(n_blocks)])
                     for _ in range(n_permutations)])


def family_wise_p_value(predictions: np.ndarray, combination_of_row: np.ndarray, labels: np.ndarray,
                        n_permutations: int = 1000, block_length: int = 50, seed: int = 0) -> float:
    """Share of label permutations under which the best combination beats the observed best.

    predictions: [trainings, rows] 0/1; combination_of_row: the combination
    index of each training (every combination the same number of trainings);
    labels: [rows] 0/1. Each combination's statistic is the median of its
    trainings' binomial precision p-values, as in ranking.csv; the statistic
    of a permutation is the smallest of those. All permutations are scored
    at once: true positives for every training and permutation are one
    matrix product.
    """
    labels = np.asarray(labels, dtype=np.float32)
    predicted = np.asarray(predictions, dtype=np.float32)
    rate = labels.mean()
    observed = _best_median_p(predicted @ labels[:, None], predicted, combination_of_row, rate)[0]
    orders = block_permutations(len(labels), block_length, n_permutations, seed)
    permuted_labels = labels[orders].T  # [rows, permutations]
    best = _best_median_p(predicted @ permuted_labels, predicted, combination_of_row, rate)
    return float((1 + np.sum(best <= observed)) / (n_permutations + 1))


def _best_median_p(true_positives: np.ndarray, predicted: np.ndarray, combination_of_row, rate) -> np.ndarray:
    n = predicted.sum(axis=1, keepdims=True).astype(np.int64)
    tp = np.rint(true_positives).astype(np.int64)
    p = np.where(tp == 0, 1.0, special.bdtrc(np.maximum(tp - 1, 0), np.broadcast_to(n, tp.shape), rate))
    order = np.argsort(combination_of_row, kind="mergesort")
    n_combinations = len(np.unique(combination_of_row))
    per_combination = p[order].reshape(n_combinations, -1, p.shape[1])
    return np.median(per_combination, axis=1).min(axis=0)
