"""ranking.csv and confirmation.csv as tables: one row per combination, best first, with the corrections."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from inputs.hyperparameters import HYPERPARAMETERS
from ranking.significance import KeptCounts, bh_q_values

COUNT_COLUMNS = ["tp", "fp", "tn", "fn"]
RERUN_COLUMNS = ["combination", "rerun", "seed", *HYPERPARAMETERS, "tp", "fp", "tn", "fn",
                 "precision", "p_value_independent_rows", "status", "epochs", "diverged", "train_loss", "seconds"]
ERROR_COLUMNS = ["combination", *HYPERPARAMETERS, "outcome", "error", "traceback"]
RANKING_COLUMNS = ["rank", "combination", *HYPERPARAMETERS, "p_value", "q_value", "significant_fdr",
                   "p_value_family_wise", "p_value_independent_rows", "precision", "positive_rate",
                   *COUNT_COLUMNS, "reruns", "diverged", "seconds", "status", "epochs"]


def rank_combinations(reruns: pd.DataFrame, counts: KeptCounts, false_discovery_rate: float = 0.05,
                      columns: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per combination, sorted by its block permutation p-value.

    reruns: one row per training (reruns.csv); its hyperparameter columns may
    be left out and given as `columns` instead, one row per combination
    (indexed by combination), which a big sweep's table need not repeat per
    rerun. counts: what is kept of the
    combinations' rows of PermutationTest.counts (a pruned one: p = 1), for
    the same combinations. The tp/fp/tn/fn counts are the reruns' own, summed over
    those that did not diverge, and the precision is tp / (tp + fp) of those
    sums (empty when nothing was predicted). Ties (equal p-values, common at
    the smallest p-value the test can give and at p = 1) are broken by the
    independent-rows p-value, then higher precision, then more true
    positives, then the combination id, so the order is the same on every run.
    """
    if reruns.empty:
        return pd.DataFrame(columns=RANKING_COLUMNS)
    grouped = reruns.groupby("combination", sort=False)
    table = grouped[list(HYPERPARAMETERS)].first() if columns is None else columns.loc[grouped.size().index]
    diverged = reruns["diverged"].astype(bool)
    pooled = reruns[~diverged].groupby("combination")[COUNT_COLUMNS].sum()
    pooled = pooled.reindex(table.index, fill_value=0).astype(np.int64)
    table["p_value"] = counts.p_values(table.index)
    table["q_value"] = bh_q_values(table["p_value"].to_numpy())
    table["significant_fdr"] = table["q_value"] <= false_discovery_rate
    table["p_value_family_wise"] = counts.family_wise(table.index)
    table["p_value_independent_rows"] = grouped["p_value_independent_rows"].median()
    predicted = pooled["tp"] + pooled["fp"]
    table["precision"] = (pooled["tp"] / predicted.where(predicted > 0)).astype(float)
    table["positive_rate"] = grouped["positive_rate"].first()
    table[COUNT_COLUMNS] = pooled
    table["reruns"] = grouped.size()
    table["diverged"] = diverged.groupby(reruns["combination"], sort=False).sum().astype(int)
    table["seconds"] = grouped["seconds"].sum()
    if "status" in reruns:  # "pruned" when the pruner stopped it
        pruned = (reruns["status"] == "pruned").groupby(reruns["combination"], sort=False).any()
        table["status"] = np.where(pruned.loc[table.index], "pruned", "completed")
        table["epochs"] = grouped["epochs"].median()
    table = table.reset_index()
    table = table.sort_values(["p_value", "p_value_independent_rows", "precision", "tp", "combination"],
                              ascending=[True, True, False, False, True], na_position="last", kind="mergesort")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table.reindex(columns=[c for c in RANKING_COLUMNS if c in table]).reset_index(drop=True)


def label_sources(ranking, selection: str, confirmation):
    """Say which data set each p-value comes from: ranked_on, p_value_validation, p_value_test."""
    ranking = ranking.copy()
    at = ranking.columns.get_loc("p_value_family_wise") + 1
    ranking.insert(at, "ranked_on", selection)
    if selection == "test":
        ranking.insert(at + 1, "p_value_validation", np.nan)
        ranking.insert(at + 2, "p_value_test", ranking["p_value"])
    else:
        confirmed = {} if confirmation is None else dict(zip(confirmation["combination"], confirmation["p_value_test"]))
        ranking.insert(at + 1, "p_value_validation", ranking["p_value"])
        ranking.insert(at + 2, "p_value_test", ranking["combination"].map(confirmed))
    return ranking


def print_ranking(ranking: pd.DataFrame, top: int = 10, file=sys.stdout) -> None:
    varying = [h for h in HYPERPARAMETERS if h in ranking and ranking[h].astype(str).nunique() > 1]
    columns = ["rank", "combination", *varying, "p_value", "q_value", "precision", "tp", "fp"]
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(ranking[columns].head(top).to_string(index=False), file=file)


def reruns_table(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """reruns.csv's rows as a table, with each training's evaluation rows' positive rate."""
    table = pd.DataFrame(rows)
    table["positive_rate"] = (table["tp"] + table["fn"]) / table[COUNT_COLUMNS].sum(axis=1)
    return table


def confirmation_table(ranking: pd.DataFrame, reruns: pd.DataFrame, counts: KeptCounts,
                       false_discovery_rate: float) -> pd.DataFrame:
    """confirmation.csv: the confirmed combinations ranked by their test p-value, corrections across them."""
    table = rank_combinations(reruns, counts, false_discovery_rate)
    validation = ranking.set_index("combination")
    table = table.rename(columns={"p_value": "p_value_test", "p_value_family_wise": "p_value_test_family_wise"})
    table.insert(2, "validation_rank", validation.loc[table["combination"], "rank"].to_numpy())
    table.insert(table.columns.get_loc("p_value_test"), "p_value_validation",
                 validation.loc[table["combination"], "p_value"].to_numpy())
    return table
