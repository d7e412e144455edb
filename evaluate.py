"""Score trainings by the significance of their precision, and rank combinations.

    python evaluate.py results/config          # re-rank and print a finished or running sweep

A training's precision tp / (tp + fp) is compared with what guessing would
give: if the model had no skill, each of its tp + fp positive predictions
would be right with probability equal to the evaluation set's positive rate,
so tp ~ Binomial(tp + fp, positive rate). The p-value is P(X >= tp) under
that law, one-sided: how often luck alone would do at least this well.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

from settings import HYPERPARAMETERS
from significance import bh_q_values, holm_adjusted

COUNT_COLUMNS = ["tp", "fp", "tn", "fn"]


def binomial_precision_p_value(tp, fp, positive_rate):
    """P(X >= tp), X ~ Binomial(tp + fp, positive_rate); 1.0 where nothing was predicted positive.

    The survival function is evaluated directly (not 1 - cdf), so p-values
    of 1e-30 keep their digits instead of rounding to 0.
    """
    tp, fp = np.asarray(tp).astype(np.int64), np.asarray(fp).astype(np.int64)
    n = tp + fp
    # bdtrc(k, n, r) = P(X > k): the same regularized incomplete beta as
    # scipy.stats.binom.sf, without importing scipy.stats (1.3 s per process)
    p = special.bdtrc(np.maximum(tp - 1, 0), n, positive_rate)
    return np.where(tp == 0, 1.0, p)  # tp = 0 includes "nothing predicted positive"


def fisher_precision_p_value(tp, fp, tn, fn):
    """One-sided Fisher's exact test on [[tp, fp], [fn, tn]] (alternative 'greater').

    Written as the hypergeometric tail so that it runs on whole columns at
    once; it equals scipy.stats.fisher_exact(table, alternative="greater").
    """
    from scipy import stats
    tp, fp, tn, fn = map(np.asarray, (tp, fp, tn, fn))
    total, positives, predicted = tp + fp + tn + fn, tp + fn, tp + fp
    p = stats.hypergeom.sf(tp - 1, total, positives, predicted)
    return np.where(predicted == 0, 1.0, np.clip(p, 0.0, 1.0))


def score_reruns(reruns: pd.DataFrame, test: str = "binomial") -> pd.DataFrame:
    """Add precision and p_value columns to per-training counts. Diverged trainings get p = 1."""
    out = reruns.copy()
    predicted = out["tp"] + out["fp"]
    out["precision"] = np.where(predicted > 0, out["tp"] / predicted.where(predicted > 0, 1), np.nan)
    positive_rate = (out["tp"] + out["fn"]) / out[COUNT_COLUMNS].sum(axis=1)
    if test == "fisher":
        p = fisher_precision_p_value(out["tp"], out["fp"], out["tn"], out["fn"])
    else:
        p = binomial_precision_p_value(out["tp"], out["fp"], positive_rate)
    out["p_value"] = np.where(out["diverged"].astype(bool), 1.0, p)
    out["positive_rate"] = positive_rate
    return out


def rank_combinations(reruns: pd.DataFrame, false_discovery_rate: float = 0.05) -> pd.DataFrame:
    """One row per combination: medians over its reruns, sorted by p_value.

    Ties (equal median p-values, common when several combinations predict
    nothing and get p = 1) are broken by higher median precision, then more
    true positives (more evidence), then the combination id, so the order is
    the same on every run.
    """
    if reruns.empty:
        return pd.DataFrame(columns=["rank", "combination", *HYPERPARAMETERS, "p_value", "p_value_holm", "q_value",
                                     "significant", "precision", "positive_rate", *COUNT_COLUMNS, "reruns",
                                     "diverged", "seconds"])
    grouped = reruns.groupby("combination", sort=False)
    table = grouped[list(HYPERPARAMETERS)].first()
    medians = grouped[["p_value", "precision", *COUNT_COLUMNS]].median()
    table = table.join(medians)
    table["positive_rate"] = grouped["positive_rate"].first()
    table["reruns"] = grouped.size()
    table["diverged"] = grouped["diverged"].sum().astype(int)
    table["seconds"] = grouped["seconds"].sum()
    table = table.reset_index()
    table = table.sort_values(["p_value", "precision", "tp", "combination"],
                              ascending=[True, False, False, True], na_position="last", kind="mergesort")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    # corrections across every combination of the run, on the median p-values
    at = table.columns.get_loc("p_value") + 1
    table.insert(at, "p_value_holm", holm_adjusted(table["p_value"]))
    table.insert(at + 1, "q_value", bh_q_values(table["p_value"]))
    table.insert(at + 2, "significant", table["q_value"] <= false_discovery_rate)
    return table.reset_index(drop=True)


def print_ranking(ranking: pd.DataFrame, top: int = 10, file=sys.stdout) -> None:
    varying = [h for h in HYPERPARAMETERS if h in ranking and ranking[h].astype(str).nunique() > 1]
    columns = ["rank", "combination", *varying, "p_value", "q_value", "precision", "tp", "fp"]
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(ranking[columns].head(top).to_string(index=False), file=file)


def _run_false_discovery_rate(run: Path) -> float:
    """FALSE_DISCOVERY_RATE of the config copy the run saved (its paths need not exist here)."""
    from settings import ConfigError, load_settings
    try:
        return load_settings(run / "config.py").false_discovery_rate
    except ConfigError:
        return 0.05


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Re-rank a finished or running sweep from its reruns.csv.")
    parser.add_argument("run", help="the run's results folder, e.g. results/config")
    parser.add_argument("--top", type=int, default=10, help="how many rows to print (default 10)")
    args = parser.parse_args(argv)
    path = Path(args.run) / "reruns.csv"
    if not path.is_file():
        print(f"error: {path} does not exist. Pass a run folder written by search.py, "
              f"such as results/config.", file=sys.stderr)
        return 2
    from results import read_reruns, write_csv  # noqa: E402 (keeps `import evaluate` light)
    reruns = read_reruns(path)
    reruns["positive_rate"] = (reruns["tp"] + reruns["fn"]) / reruns[COUNT_COLUMNS].sum(axis=1)
    ranking = rank_combinations(reruns, _run_false_discovery_rate(Path(args.run)))
    write_csv(ranking, Path(args.run) / "ranking.csv")
    print(f"{len(ranking)} combinations from {path}")
    print_ranking(ranking, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
