"""A combination's row of the permutation test's counts: from the workers' hits, or from its predictions.

The workers count each training's hits under every label order
(training/loop.py); here they are added up over a combination's reruns and
folds. Where they are missing (a resumed study, a grown combination whose
earlier reruns were trained before, the confirmation), the predictions
kept for the study (records/predictions.py) are read and scored instead.
"""
from __future__ import annotations

import math

import numpy as np

from ranking.significance import PermutationTest, pooled_predictions
from records.predictions import Predictions


def permutation_counts(test: PermutationTest, reruns: list[dict], bits: list,
                       predictions: Predictions) -> np.ndarray | None:
    """A combination's row of test.counts: its reruns' predictions pooled, a diverged rerun's left out.

    `bits` are its reruns' predictions as stored (read from `predictions`).
    None for a pruned combination: it is ranked with p = 1 (no evidence), as if never better than chance.
    """
    return permutation_counts_of(test, [(reruns, bits)], predictions)[0]


def permutation_counts_of(test: PermutationTest, combinations: list[tuple], predictions: Predictions) -> list:
    """permutation_counts of several combinations at once: (reruns, bits), or (reruns, bits, hits) each.

    `hits`, where given, are the workers' counts per rerun under every
    label order ((hits, predicted) each: training/loop.py), which spare the
    product of predictions with the labels here; the main process then only
    adds them up over the reruns that did not diverge. Otherwise (a resumed
    study, a grown combination whose earlier reruns were trained before)
    the predictions are scored here, in one product for all of them: the
    labels of every order are ~10 MB on a year of 48 tickers, read once
    instead of once per combination.
    """
    scored = [i for i, (reruns, *_) in enumerate(combinations)
              if not any(r.get("status") == "pruned" for r in reruns)]
    out = [None] * len(combinations)
    if not scored:
        return out
    sums, from_bits = {}, []
    for i in scored:
        reruns, bits, *worker = combinations[i]
        if worker and worker[0] is not None and (test.mask is None or all(p is not None for _, p in worker[0])):
            kept = [h for r, h in zip(reruns, worker[0]) if not r["diverged"]]
            sums[i] = (sum((h for h, _ in kept), np.zeros(test.orders, dtype=np.int64)),
                       None if test.mask is None else sum((p for _, p in kept), np.zeros(test.orders, dtype=np.int64)))
        else:
            from_bits.append(i)
    if from_bits:
        pooled = np.stack([pooled_predictions(
            [predictions.read(b) for r, b in zip(*combinations[i][:2]) if not r["diverged"]], len(test.labels))
            for i in from_bits])
        hits, predicted = test.hits(pooled)
        for j, i in enumerate(from_bits):
            sums[i] = (hits[j], None if predicted is None else predicted[j])
    hits = np.stack([sums[i][0] for i in scored])
    predicted = None if test.mask is None else np.stack([sums[i][1] for i in scored])
    for i, row in zip(scored, test.counts_of_hits(hits, predicted)):
        out[i] = row
    return out


def p_value_of(test: PermutationTest, counts: np.ndarray | None) -> float:
    """A combination's block permutation p-value from its row of counts (1 when pruned)."""
    return 1.0 if counts is None else float(counts[0] / test.orders)


def trial_value(p: float) -> float:
    """What the study records as a trial's value: -log10 p (the study maximizes; p is never 0 here)."""
    return 0.0 - math.log10(p)


def summed_hits(folds: list[dict]) -> dict:
    """A rerun's hits under every label order, summed over its folds (none unless every fold has them)."""
    if not all("hits" in f for f in folds):
        return {}
    predicted = [f["predicted"] for f in folds]
    return {"hits": sum(f["hits"] for f in folds),
            "predicted": None if any(p is None for p in predicted) else sum(predicted)}
