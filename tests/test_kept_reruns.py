"""The recorder's packed reruns read back as the table the same rows give as plain dicts."""
import numpy as np
import pandas as pd

from inputs.hyperparameters import HYPERPARAMETER_DEFAULTS, hyperparameter_columns
from ranking.significance import KeptCounts
from ranking.table import rank_combinations, reruns_table
from sweep.kept_reruns import KeptReruns


def rerun(cid: str, k: int, **changes) -> dict:
    row = {"combination": cid, "rerun": k, "seed": 2**62 + k, "tp": 300 + k, "fp": 7, "tn": 1200, "fn": 0,
           "precision": 0.5 + k / 10, "p_value_independent_rows": 1e-9 * (k + 1), "status": "completed",
           "epochs": 40, "diverged": False, "train_loss": 0.25, "seconds": 0.125}
    return {**row, **changes}


def test_the_table_holds_every_value_as_the_rows_gave_it():
    combinations = {"a": {**HYPERPARAMETER_DEFAULTS, "learning_rate": 1, "hidden_layers": [2, 1]},
                    "b": {**HYPERPARAMETER_DEFAULTS, "learning_rate": 1.0, "dropout": 0.25},
                    "c": {**HYPERPARAMETER_DEFAULTS, "learning_rate": 1e-3}}
    reruns = {"a": [rerun("a", 0), rerun("a", 1, precision=None, train_loss=None, diverged=True)],
              "b": [rerun("b", 0, status="pruned", epochs=3)],
              "c": [rerun("c", k, tp=k) for k in range(3)]}
    kept = KeptReruns()
    expected = []
    for cid, rows in reruns.items():
        full = [{**row, **hyperparameter_columns(combinations[cid])} for row in rows]
        if cid == "c":  # the columns given once, beside reruns that do not repeat them
            kept.add(cid, rows, hyperparameter_columns(combinations[cid]))
        else:
            kept.add(cid, full)
        expected += full
    assert len(kept) == 3 and "b" in kept and "d" not in kept and kept.ids == ["a", "b", "c"]
    table = kept.table()
    want = pd.DataFrame(expected)[list(table.columns)]
    pd.testing.assert_frame_equal(table, want)


def test_a_field_an_older_study_lacks_stays_empty_and_the_others_keep_their_type():
    kept = KeptReruns()
    old = {k: v for k, v in rerun("a", 0).items() if k not in ("epochs", "status")}
    kept.add("a", [{**old, **hyperparameter_columns(HYPERPARAMETER_DEFAULTS)}])
    kept.add("b", [{**rerun("b", 0), **hyperparameter_columns(HYPERPARAMETER_DEFAULTS)}])
    table = kept.table()
    assert table["epochs"].isna().tolist() == [True, False] and table["epochs"].iloc[1] == 40
    assert table["status"].isna().tolist() == [True, False] and table["status"].iloc[1] == "completed"
    assert table["seed"].dtype == np.int64 and table["seed"].iloc[0] == 2**62


def test_reruns_csv_parts_are_the_table_by_combination_and_rerun_and_the_ranking_needs_no_repeated_columns():
    rng = np.random.default_rng(3)
    kept, rows = KeptReruns(), []
    for k in rng.permutation(40):
        cid = f"{k:012x}"
        combination = {**HYPERPARAMETER_DEFAULTS, "learning_rate": float(k) / 100, "hidden_layers": [int(k % 3) + 1]}
        reruns = [{**rerun(cid, r, tp=int(rng.integers(0, 50))), **hyperparameter_columns(combination)}
                  for r in rng.permutation(3)]
        kept.add(cid, reruns)
        rows += reruns
    whole = kept.table()
    parts = list(kept.sorted_parts(rows=7))
    assert [len(p) for p in parts] == [7] * 17 + [1]
    expected = whole.sort_values(["combination", "rerun"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), expected)
    # the hyperparameter columns once per combination give the same ranking as repeated per rerun
    counts = KeptCounts(11)
    for cid in kept.ids:
        counts.add(cid, rng.integers(1, 12, 11))
    pd.testing.assert_frame_equal(
        rank_combinations(reruns_table(kept.table(hyperparameters=False)), counts, columns=kept.columns()),
        rank_combinations(reruns_table(rows), counts))
