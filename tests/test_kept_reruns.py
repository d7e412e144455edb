"""The recorder's packed reruns read back as the table the same rows give as plain dicts."""
import numpy as np
import pandas as pd

from inputs.hyperparameters import HYPERPARAMETER_DEFAULTS, hyperparameter_columns
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
