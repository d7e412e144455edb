"""summary.json and the end-of-run lines: the winner, the verdict, and what the statistics assumed."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from inputs.atomic import atomic_write_text
from inputs.splits import Split
from ranking.significance import PermutationTest
from ranking.verdict import Verdict, decide


def statistics_record(test: PermutationTest, horizon: int, splits: list[Split]) -> dict:
    """How the ranked rows were tested: blocks, label orders, the smallest reachable p-value, purged rows."""
    blocks = test.blocks
    record = {
        "test": "block permutation of the evaluated labels; per combination, the binomial tail of its reruns' "
                "pooled predictions; family-wise: minP over all combinations (Westfall and Young)",
        "blocks": "whole dates, each block at least LABEL_HORIZON weekdays long, every ticker keeping its own labels"
                  if blocks.by_date else "consecutive rows (the files have no dates)",
        "block_count": blocks.count,
        "label_orders": test.orders,
        "exact": test.exact,
        "smallest_p_value": test.smallest_p_value,
        "evaluated_rows": int(len(test.labels)),
        "purged_rows": {split.name: split.purged for split in splits},
        "purge_boundaries": {split.name: split.boundary for split in splits},
    }
    if blocks.by_date:
        record["evaluated_dates"] = blocks.slots
        record["effective_observations"] = round(blocks.span_days / horizon, 1)
        record["assumed"] = None
    else:
        record["effective_observations"] = blocks.count
        record["assumed"] = (
            "The files have no dates, so the rows are taken to be in time order. Permutation blocks are "
            f"{blocks.count} runs of consecutive rows, which cannot follow dates or tickers, and the purge before "
            "each boundary is a fixed 5% of the training rows. Both are guesses at how many rows share a date: "
            "give the files dates (header date,ticker,...,label) for blocks of whole dates and an exact purge.")
    return record


def summary_record(ranking: pd.DataFrame, verdict: Verdict, statistics: dict, confirmation: pd.DataFrame | None,
                   false_discovery_rate: float, counts: dict, timing: dict | None) -> dict:
    """Everything summary.json holds: the winner, the verdict with its test p-values, the statistics, the sweep."""
    best = ranking.iloc[0]
    tested = [] if confirmation is None else [
        {"combination": row.combination, "validation_rank": int(row.validation_rank),
         "p_value_test": float(row.p_value_test), "precision_test": _finite(row.precision)}
        for row in confirmation.sort_values("validation_rank").itertuples()]
    return {
        "verdict": verdict.verdict,
        "verdict_reason": verdict.reason,
        "best_combination": best["combination"],
        "best_p_value": float(best["p_value"]),
        "family_wise_p_value": float(best["p_value_family_wise"]),
        "p_value_test": verdict.p_value_test,
        "significance_level": verdict.level,
        "test_results": tested,
        "significant_at_fdr": int(ranking["significant_fdr"].sum()),
        "false_discovery_rate": false_discovery_rate,
        **counts,
        "statistics": statistics,
        "sweep": timing,
    }


def write_summary(run_dir: Path, settings, ranking: pd.DataFrame, confirmation: pd.DataFrame | None,
                  ranked: tuple[PermutationTest, list[Split]],
                  tested: tuple[PermutationTest, Split] | None, counts: dict, timing: dict | None) -> Verdict:
    """Decide the verdict and write summary.json; returns the verdict.

    ranked: the ranked rows' test and their splits; tested: the test file's
    test and split, when the top combinations were confirmed there.
    """
    result = decide(ranking, confirmation, settings.selection, settings.significance_level, settings.test_csv.name)
    statistics = statistics_record(ranked[0], settings.label_horizon, ranked[1])
    if tested is not None:
        statistics["test_file"] = statistics_record(tested[0], settings.label_horizon, [tested[1]])
    record = summary_record(ranking, result, statistics, confirmation, settings.false_discovery_rate, counts, timing)
    atomic_write_text(json.dumps(record, indent=2), Path(run_dir) / "summary.json")
    return result


def _finite(value) -> float | None:
    value = float(value)
    return None if value != value else value
