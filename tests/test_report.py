"""report.py: the plots, values.csv and report.md, on small hand-built rankings and studies."""
import json
import math
import os
import time

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution

from inputs.atomic import remove_abandoned_temporaries
from ranking import plots, report, values

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ["p_values.png", "p_by_hyperparameter.png", "precision_vs_predicted.png", "best_over_time.png"]
DEFAULTS = {"model": "mlp", "hidden_layers": "[2, 1, 0.5]", "activation": "leaky_relu", "dropout": 0.0,
            "learning_rate": 1e-3, "optimizer": "adam", "batch_size": 32, "max_epochs": 8,
            "loss_function": "bce", "l1_regularization": 0.0, "l2_regularization": 0.0,
            "weight_initialization": "default", "lstm_hidden_size": None, "lstm_num_layers": None}

# (combination, learning_rate, optimizer, hidden_layers, median p, tp, fp); the last three predict nothing
COMBINATIONS = [
    ("c0", 1e-3, "adam", "[2, 1, 0.5]", 0.001, 40, 30),
    ("c1", 1e-3, "sgd", "[2, 1, 0.5]", 0.1, 8, 9),
    ("c2", 1e-4, "adam", "[2, 1, 0.5]", 0.01, 20, 18),
    ("c3", 1e-4, "sgd", "[]", 1.0, 0, 0),
    ("c4", 1e-5, "adam", "[]", 1.0, 0, 0),
    ("c5", 1e-5, "sgd", "[]", 1.0, 0, 0),
]
TOTAL, POSITIVES = 1000, 350


def ranking_row(rank, cid, p, tp, fp, **hyperparameters):
    precision = tp / (tp + fp) if tp + fp else np.nan
    return {"rank": rank, "combination": cid, **{**DEFAULTS, **hyperparameters}, "p_value": p,
            "q_value": min(1.0, p * 3), "significant_fdr": p * 3 <= 0.05, "p_value_family_wise": min(1.0, p * 6),
            "precision": precision, "tp": tp, "fp": fp, "tn": TOTAL - POSITIVES - fp, "fn": POSITIVES - tp,
            "positive_rate": POSITIVES / TOTAL, "reruns": 2, "diverged": 0, "seconds": 1.5}


def make_ranking(combinations=COMBINATIONS):
    rows = [ranking_row(i + 1, cid, p, tp, fp, learning_rate=lr, optimizer=opt, hidden_layers=layers)
            for i, (cid, lr, opt, layers, p, tp, fp) in enumerate(combinations)]
    return pd.DataFrame(rows)


def make_study(combinations=COMBINATIONS):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="sweep", direction="maximize")  # values -log10 p, as the sweep records
    distributions = {"learning_rate": CategoricalDistribution([1e-3, 1e-4, 1e-5]),
                     "optimizer": CategoricalDistribution(["adam", "sgd"]),
                     "model": CategoricalDistribution(["mlp"])}
    for _, lr, opt, _, p, _, _ in combinations:
        study.add_trial(optuna.trial.create_trial(params={"learning_rate": lr, "optimizer": opt, "model": "mlp"},
                                                  distributions=distributions, value=-math.log10(p),
                                                  user_attrs={"p_value": p}))
    return study


def assert_pngs(run_dir):
    for name in PLOTS:
        data = (run_dir / name).read_bytes()
        assert len(data) > 1000, name
        assert data.startswith(PNG_SIGNATURE), name


# ------------------------------------------------------------------ the whole report
@pytest.mark.parametrize("with_study", [True, False])
def test_write_report_writes_every_file(tmp_path, with_study):
    ranking = make_ranking()
    written = report.write_report(tmp_path, ranking, make_study() if with_study else None)
    assert sorted(p.name for p in written) == sorted([*PLOTS, "values.csv", "report.md"])
    assert all(p.parent == tmp_path and p.is_file() for p in written)
    assert_pngs(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))  # every temporary file was renamed into place


def test_only_abandoned_temporary_files_are_removed(tmp_path):
    """A kill leaves a temporary file behind; a process sharing the folder may be writing one right now."""
    abandoned, in_flight = tmp_path / ".ranking.csv.1234-abc.tmp", tmp_path / ".reruns.csv.5678-def.tmp"
    abandoned.write_text("half a fi")
    in_flight.write_text("being writ")
    hour_ago = time.time() - 3600
    os.utime(abandoned, (hour_ago, hour_ago))
    remove_abandoned_temporaries(tmp_path)
    assert not abandoned.exists() and in_flight.exists()


def test_report_md_links_every_plot_and_names_the_best(tmp_path):
    ranking = make_ranking()
    report.write_report(tmp_path, ranking, make_study(), top=3)
    text = (tmp_path / "report.md").read_text()
    assert f"# Sweep report: {tmp_path.name}" in text
    for name in PLOTS:
        assert f"]({name})" in text
    assert "Best combination: `c0`" in text
    assert "p-value 0.001" in text and "base rate 0.350" in text
    assert "6 combinations" in text
    top_table = [line for line in text.splitlines() if line.startswith("| ") and "`c" in line]
    assert [line.split("|")[2].strip() for line in top_table] == ["`c0`", "`c1`", "`c2`"]
    header = next(line for line in text.splitlines() if line.startswith("| rank"))
    assert "learning_rate" in header and "optimizer" in header and "batch_size" not in header
    assert "## Hyperparameter importances" in text and "| learning_rate |" in text


# ------------------------------------------------------------------ value_summary
def test_value_summary_medians_by_hand():
    summary = values.value_summary(make_ranking()).set_index(["hyperparameter", "value"])
    # -log10 p: c0 3, c1 1, c2 2, c3..c5 0
    expected = {("learning_rate", "0.001"): (2, 2.0, 3.0), ("learning_rate", "0.0001"): (2, 1.0, 2.0),
                ("learning_rate", "1e-05"): (2, 0.0, 0.0),
                ("optimizer", "adam"): (3, 2.0, 3.0), ("optimizer", "sgd"): (3, 0.0, 1.0),
                ("hidden_layers", "[2, 1, 0.5]"): (3, 2.0, 3.0), ("hidden_layers", "[]"): (3, 0.0, 0.0)}
    assert set(summary.index) == set(expected)
    for key, (count, median, best) in expected.items():
        assert summary.loc[key, "combinations"] == count
        assert summary.loc[key, "median_minus_log10_p"] == pytest.approx(median)
        assert summary.loc[key, "best_minus_log10_p"] == pytest.approx(best)
    ordered = list(values.value_summary(make_ranking()).query("hyperparameter == 'learning_rate'")["value"])
    assert ordered == ["1e-05", "0.0001", "0.001"]  # numeric order, not alphabetical


def test_value_summary_is_the_same_after_a_csv_round_trip(tmp_path):
    """Read back from ranking.csv, 'not applicable' is NaN and lists are strings: same table."""
    ranking = make_ranking()
    ranking.to_csv(tmp_path / "ranking.csv", index=False)
    read_back = pd.read_csv(tmp_path / "ranking.csv", dtype={"combination": str})
    assert read_back["lstm_hidden_size"].isna().all()
    pd.testing.assert_frame_equal(values.value_summary(read_back), values.value_summary(ranking))


def test_not_applicable_values_are_left_out_of_a_hyperparameter():
    ranking = make_ranking()
    ranking["lstm_hidden_size"] = [16, 32, None, None, None, None]  # applies to two combinations only
    summary = values.value_summary(ranking).query("hyperparameter == 'lstm_hidden_size'")
    assert list(summary["value"]) == ["16", "32"]
    assert list(summary["combinations"]) == [1, 1]


def test_value_labels_spell_each_value_once_and_drop_what_does_not_apply():
    column = [None, 1, 1.0, "", float("nan"), 5e-05, 0.0, -0.0, "[2, 1, 0.5]"]
    ranking = pd.DataFrame({"dropout": pd.Series(column, dtype=object, index=range(10, 19))})
    labels = values.value_labels(ranking, "dropout")
    assert labels.to_dict() == {11: "1", 12: "1", 15: "5e-05", 16: "0", 17: "0", 18: "[2, 1, 0.5]"}
    lists = pd.DataFrame({"hidden_layers": pd.Series([[2, 1], None, [0.5]], dtype=object)})
    assert values.value_labels(lists, "hidden_layers").to_dict() == {0: "[2, 1]", 2: "[0.5]"}


# ------------------------------------------------------------------ importances
def test_importances_of_two_varying_parameters_sum_to_one():
    shares = values.importances(make_study())
    assert isinstance(shares, pd.Series)
    assert set(shares.index) == {"learning_rate", "optimizer"}  # "model" never varies: left out
    assert shares.sum() == pytest.approx(1.0)
    assert (shares >= 0).all()
    assert list(shares) == sorted(shares, reverse=True)


def test_importances_of_a_one_trial_study_is_none():
    assert values.importances(make_study(COMBINATIONS[:1])) is None


def test_importances_when_every_p_value_is_equal_is_none():
    flat = [(cid, lr, opt, layers, 1.0, 0, 0) for cid, lr, opt, layers, _, _, _ in COMBINATIONS]
    assert values.importances(make_study(flat)) is None


def test_completion_history_follows_the_study():
    p, label, _ = plots.completion_history(make_study())
    assert list(p) == [c[4] for c in COMBINATIONS]
    assert "completion order" in label
    p, _, _ = plots.completion_history(None)
    assert len(p) == 0


# ------------------------------------------------------------------ edge cases
def test_every_p_value_one_and_nothing_predicted(tmp_path):
    flat = [(cid, lr, opt, layers, 1.0, 0, 0) for cid, lr, opt, layers, _, _, _ in COMBINATIONS]
    ranking = make_ranking(flat)
    assert ranking["precision"].isna().all()
    report.write_report(tmp_path, ranking, make_study(flat))
    assert_pngs(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "Not available" in text  # no importances to show
    assert (values.value_summary(ranking)["median_minus_log10_p"] == 0).all()


def test_a_single_combination(tmp_path):
    ranking = make_ranking(COMBINATIONS[:1])
    report.write_report(tmp_path, ranking, make_study(COMBINATIONS[:1]))
    assert_pngs(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "Best combination: `c0`" in text and "1 combination;" in text
    assert "No hyperparameter takes more than one value." in text
    assert values.value_summary(ranking).empty


def test_a_hyperparameter_column_entirely_empty_and_a_p_value_of_zero(tmp_path):
    ranking = make_ranking()
    ranking["optimizer"] = None
    ranking.loc[0, "p_value"] = 0.0  # underflowed binomial tail
    report.write_report(tmp_path, ranking)
    assert_pngs(tmp_path)
    assert "optimizer" not in set(values.value_summary(ranking)["hyperparameter"])
    assert math.isfinite(values.value_summary(ranking)["best_minus_log10_p"].max())


def test_no_finished_combination(tmp_path):
    ranking = make_ranking().iloc[0:0]
    report.write_report(tmp_path, ranking)
    assert_pngs(tmp_path)
    assert "No combination has finished yet." in (tmp_path / "report.md").read_text()


# ------------------------------------------------------------------ verdict and scope
def test_report_md_opens_with_the_verdict_and_the_confirmation(tmp_path):
    statistics = {"test": "block permutation of the evaluated labels", "blocks": "consecutive rows (the files have "
                  "no dates)", "block_count": 20, "label_orders": 1000, "exact": False, "smallest_p_value": 0.001,
                  "evaluated_rows": 400, "effective_observations": 20, "purged_rows": {"validation fold 1": 80},
                  "purge_boundaries": {"validation fold 1": "row 1601"}, "assumed": "The files have no dates."}
    (tmp_path / "summary.json").write_text(json.dumps({
        "verdict": "not confirmed", "verdict_reason": "The winner, combination c0, ... p = 0.4.",
        "family_wise_p_value": 0.03, "statistics": statistics}))
    pd.DataFrame({"combination": ["c1", "c0"], "validation_rank": [2, 1], "p_value_validation": [0.01, 0.001],
                  "p_value_test": [0.5, 0.4], "q_value": [0.5, 0.5], "precision": [0.4, 0.41], "tp": [4, 41],
                  "fp": [6, 59]}).to_csv(tmp_path / "confirmation.csv", index=False)
    report.write_report(tmp_path, make_ranking())
    text = (tmp_path / "report.md").read_text()
    lines = text.splitlines()
    assert lines[2] == "## Verdict: not confirmed" and lines[4] == "The winner, combination c0, ... p = 0.4."
    rows = [line for line in lines if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert rows[0].startswith("| 1 | `c0` | 0.001 | 0.4 |")  # by validation rank
    assert text.index("## Verdict") < text.index("Best combination") < text.index("## What the test covers")
    assert "Family-wise p-value of the winner" in text and "0.03" in text
    assert "80 rows before row 1601 (validation fold 1)" in text
    assert "about 20 independent observations (the blocks)" in text
    assert "**Assumed:** The files have no dates." in text
    assert "Not corrected for:** the choices of a model-based sampler or a pruner" in text
