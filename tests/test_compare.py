"""`python evaluate.py --compare RUN_A RUN_B` and compare.py, on run folders the tests write by hand."""
import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from inputs.hyperparameters import HYPERPARAMETER_DEFAULTS, HYPERPARAMETERS
from ranking.compare import CompareError, compare_runs, print_comparison

ROOT = Path(__file__).resolve().parent.parent

LEARNING_RATES = [1e-2, 1e-3, 3e-4]
OPTIMIZERS = ["adam", "sgd", "rmsprop", "adamw", "adagrad"]

CONFIG_A = """\
hyperparameter_values = {"learning_rate": [1e-2, 1e-3], "optimizer": ["adam", "sgd", "rmsprop"]}
TRAIN_CSV = "data/train.csv"
RERUN_COUNT = 3
DEVICE = "cpu"
"""
CONFIG_B = """\
hyperparameter_values = {"learning_rate": [1e-2, 1e-3, 3e-4], "optimizer": ["adam", "sgd", "rmsprop"]}
TRAIN_CSV = "data/train.csv"
RERUN_COUNT = 5
DEVICE = "cpu"
"""


def combination_id(i: int) -> str:
    # all digits for some ids: they must stay strings ("000000000007"), not become integers
    return f"{i:012d}" if i % 2 else f"c0ffee{i:06x}"


def hyperparameters(i: int) -> dict:
    row = {name: HYPERPARAMETER_DEFAULTS[name] for name in HYPERPARAMETERS}
    row["hidden_layers"] = json.dumps(row["hidden_layers"])
    row["lstm_hidden_size"] = row["lstm_num_layers"] = None  # not used by an mlp: empty in ranking.csv
    row["learning_rate"] = LEARNING_RATES[i % 3]
    row["optimizer"] = OPTIMIZERS[i // 3 % 5]
    return row


def write_run(folder: Path, order: list, config: str | None) -> Path:
    """A run folder whose ranking.csv ranks the combinations numbered in `order`, best first."""
    folder.mkdir(parents=True)
    rows = []
    for rank, i in enumerate(order, start=1):
        p = rank / 100
        rows.append({"rank": rank, "combination": combination_id(i), **hyperparameters(i), "p_value": p,
                     "q_value": p, "significant_fdr": p <= 0.05, "p_value_family_wise": min(1.0, p * len(order)),
                     "precision": 0.6 - rank / 100, "tp": 20 - rank, "fp": 10, "tn": 150, "fn": 20,
                     "positive_rate": 0.2, "reruns": 3, "diverged": 0, "seconds": 1.5})
    pd.DataFrame(rows).to_csv(folder / "ranking.csv", index=False)
    if config is not None:
        (folder / "config.py").write_text(config)
    return folder


# Shared combinations are 0..13; A also has 100 and 101, B also has 200.
# Among the shared, A ranks 0..13 in order; B moves 0 from 1st to 11th and 13 from 14th to 10th.
ORDER_A = [0, 100, 1, 2, 3, 4, 5, 101, 6, 7, 8, 9, 10, 11, 12, 13]
ORDER_B = [200, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 0, 10, 11, 12]
SHARED = list(range(14))


@pytest.fixture
def runs(tmp_path):
    a = write_run(tmp_path / "results" / "a", ORDER_A, CONFIG_A)
    b = write_run(tmp_path / "results" / "b", ORDER_B, CONFIG_B)
    return a, b


def test_counts_and_correlations_match_scipy_on_the_shared_subset(runs):
    result = compare_runs(*runs)
    assert (result.combinations_a, result.combinations_b) == (16, 15)
    assert (result.shared, result.only_a, result.only_b) == (14, 2, 1)
    # the ranks as written in each ranking.csv: re-ranking the shared subset must not change the correlations
    rank_a = [ORDER_A.index(i) + 1 for i in SHARED]
    rank_b = [ORDER_B.index(i) + 1 for i in SHARED]
    assert result.spearman == pytest.approx(stats.spearmanr(rank_a, rank_b).statistic)
    assert result.kendall == pytest.approx(stats.kendalltau(rank_a, rank_b).statistic)
    assert result.spearman_p == pytest.approx(stats.spearmanr(rank_a, rank_b).pvalue)
    assert result.kendall_p == pytest.approx(stats.kendalltau(rank_a, rank_b).pvalue)
    assert 0 < result.kendall < result.spearman < 1


def test_top_ten_overlap(runs):
    result = compare_runs(*runs)
    # A's top 10 among the shared: 0..9; B's: 1..9 and 13
    assert result.top_k == 10
    assert result.top_overlap == 9


def test_biggest_movers_are_ranked_within_the_shared_subset(runs):
    movers = compare_runs(*runs).movers
    assert len(movers) == 5
    first = movers.iloc[0]
    assert first["combination"] == combination_id(0)
    assert (first["rank_a"], first["rank_b"], first["change"]) == (1, 11, 10)  # not 1 -> 12 as in ranking.csv
    assert first["p_value_a"] == pytest.approx(0.01) and first["p_value_b"] == pytest.approx(0.12)
    assert first["learning_rate"] == pytest.approx(LEARNING_RATES[0]) and first["optimizer"] == "adam"
    second = movers.iloc[1]
    assert second["combination"] == combination_id(13)
    assert (second["rank_a"], second["rank_b"], second["change"]) == (14, 10, -4)
    assert movers["change"].abs().is_monotonic_decreasing
    assert "model" not in movers.columns  # only the hyperparameters that vary are shown


def test_config_differences(runs):
    result = compare_runs(*runs)
    assert result.config_errors == {}
    grid = {d.name: (d.only_a, d.only_b) for d in result.hyperparameter_differences}
    assert grid == {"learning_rate": ((), (3e-4,))}
    settings = {d.name: (d.a, d.b) for d in result.setting_differences}
    # TRAIN_CSV is the same relative path in both copies (resolved against different run folders): not a difference
    assert settings == {"RERUN_COUNT": (3, 5)}


def test_a_different_absolute_data_path_is_reported(tmp_path):
    a = write_run(tmp_path / "a", [0, 1, 2], CONFIG_A.replace('"data/train.csv"', repr(str(tmp_path / "one.csv"))))
    b = write_run(tmp_path / "b", [0, 1, 2], CONFIG_A.replace('"data/train.csv"', repr(str(tmp_path / "two.csv"))))
    result = compare_runs(a, b)
    assert [(d.name, d.a, d.b) for d in result.setting_differences] == \
        [("TRAIN_CSV", str(tmp_path / "one.csv"), str(tmp_path / "two.csv"))]


def test_identical_runs_agree_completely(runs, tmp_path):
    a, _ = runs
    copy = write_run(tmp_path / "copy", ORDER_A, CONFIG_A)
    result = compare_runs(a, copy)
    assert (result.shared, result.only_a, result.only_b) == (16, 0, 0)
    assert result.spearman == pytest.approx(1.0) and result.kendall == pytest.approx(1.0)
    assert result.top_overlap == result.top_k == 10
    assert result.movers.empty
    assert not result.configs_differ and result.config_errors == {}
    out = _printed(result)
    assert "Spearman rho   1.000" in out
    assert "same rank in both runs" in out
    assert "none: both runs used the same settings" in out


@pytest.mark.parametrize("shared", [0, 1, 2])
def test_fewer_than_three_shared_combinations(tmp_path, shared):
    a = write_run(tmp_path / "a", [*range(shared), 100, 101], CONFIG_A)
    b = write_run(tmp_path / "b", [200, *reversed(range(shared))], CONFIG_A)
    result = compare_runs(a, b)
    assert result.shared == shared
    assert result.spearman is None and result.kendall is None
    assert result.top_k == shared and result.top_overlap == shared
    out = _printed(result)
    assert "correlations are undefined" in out and "at least 3 shared" in out
    if shared == 2:
        assert result.movers["combination"].tolist() == [combination_id(0), combination_id(1)]


def test_a_config_that_does_not_load_is_reported_not_raised(runs):
    a, b = runs
    (b / "config.py").write_text(CONFIG_B + "SEED = -1\n")
    result = compare_runs(a, b)
    assert set(result.config_errors) == {"B"}
    assert "SEED" in result.config_errors["B"] and str(b / "config.py") in result.config_errors["B"]
    assert result.setting_differences == [] and result.shared == 14
    assert "config B:" in _printed(result)


def test_a_missing_config_copy_is_reported(tmp_path):
    a = write_run(tmp_path / "a", [0, 1, 2], CONFIG_A)
    b = write_run(tmp_path / "b", [0, 1, 2], None)
    result = compare_runs(a, b)
    assert "does not exist" in result.config_errors["B"]
    assert result.spearman == pytest.approx(1.0)


def test_missing_folder_or_ranking_raises_compare_error(runs, tmp_path):
    a, _ = runs
    with pytest.raises(CompareError, match="nowhere does not exist"):
        compare_runs(a, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompareError, match=r"ranking\.csv does not exist"):
        compare_runs(tmp_path / "empty", a)
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "ranking.csv").write_text("")
    with pytest.raises(CompareError, match="could not be read"):
        compare_runs(a, tmp_path / "blank")


def test_printed_report_is_short_and_aligned(runs):
    out = _printed(compare_runs(*runs))
    assert "14 shared, 2 only in A, 1 only in B" in out
    assert "Top-10 overlap  9 of A's top 10 are in B's top 10" in out
    assert "1 -> 11" in out and "+10" in out
    assert "hyperparameter_values['learning_rate']  only in B: 0.0003" in out
    assert "RERUN_COUNT" in out and "3 -> 5" in out
    assert len(out.splitlines()) < 30


def _printed(result) -> str:
    buffer = io.StringIO()
    print_comparison(result, file=buffer)
    return buffer.getvalue()


def evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "evaluate.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_cli_compare(runs):
    a, b = runs
    done = evaluate("--compare", str(a), str(b))
    assert done.returncode == 0, done.stderr
    rank_a = [ORDER_A.index(i) + 1 for i in SHARED]
    rank_b = [ORDER_B.index(i) + 1 for i in SHARED]
    assert f"{stats.spearmanr(rank_a, rank_b).statistic:6.3f}" in done.stdout
    assert f"{stats.kendalltau(rank_a, rank_b).statistic:6.3f}" in done.stdout
    assert "14 shared, 2 only in A, 1 only in B" in done.stdout
    assert "9 of A's top 10" in done.stdout
    assert combination_id(0) in done.stdout and "1 -> 11" in done.stdout
    assert "RERUN_COUNT" in done.stdout and "3 -> 5" in done.stdout
    assert "0.0003" in done.stdout
    assert done.stderr == ""


def test_cli_missing_folder_or_ranking(runs, tmp_path):
    a, _ = runs
    missing = tmp_path / "no_such_run"
    done = evaluate("--compare", str(a), str(missing))
    assert done.returncode == 2
    assert str(missing) in done.stderr and done.stderr.startswith("error: ")
    assert "Traceback" not in done.stderr and done.stdout == ""
    (tmp_path / "unranked").mkdir()
    done = evaluate("--compare", str(tmp_path / "unranked"), str(a))
    assert done.returncode == 2
    assert str(tmp_path / "unranked" / "ranking.csv") in done.stderr and "Traceback" not in done.stderr


def test_cli_needs_a_run_or_compare(runs):
    a, b = runs
    neither = evaluate()
    assert neither.returncode == 2 and "--compare RUN_A RUN_B" in neither.stderr
    both = evaluate(str(a), "--compare", str(a), str(b))
    assert both.returncode == 2 and "not both" in both.stderr
    one = evaluate("--compare", str(a))
    assert one.returncode == 2 and "expected 2 arguments" in one.stderr


def test_combinations_tied_at_their_p_value_are_not_movers(tmp_path):
    """Combinations with the same p-value (all p = 1, say) are ordered by the tie-break: no evidence moved."""
    a = write_run(tmp_path / "a", list(range(6)), CONFIG_A)
    b = write_run(tmp_path / "b", [1, 0, 5, 4, 3, 2], CONFIG_A)
    for folder in (a, b):  # the last four of each run tie at p = 1
        ranking = pd.read_csv(folder / "ranking.csv", dtype={"combination": str})
        ranking.loc[2:, "p_value"] = 1.0
        ranking.to_csv(folder / "ranking.csv", index=False)
    movers = compare_runs(a, b).movers
    assert movers["combination"].tolist() == [combination_id(0), combination_id(1)]
