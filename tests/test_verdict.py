"""The verdict in its four places (terminal, report.md, summary.json, --predict), end to end on simulated markets."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.market import simulate_market, write_market
from ranking.verdict import decide

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def markets(tmp_path_factory):
    """Dated files of a market with a planted stock-picking edge, and of one where nothing can be predicted."""
    folder = tmp_path_factory.mktemp("markets")
    write_market(simulate_market(5, tickers=20, years=3, skill=2.0), folder / "skilled")
    write_market(simulate_market(6, tickers=20, years=3), folder / "random")
    return folder


def sweep(tmp_path: Path, data: Path, **settings) -> tuple[subprocess.CompletedProcess, Path]:
    lines = ["hyperparameter_values = {'learning_rate': [1e-3, 3e-3], 'max_epochs': [4]}",
             "RERUN_COUNT = 2", "DEVICE = 'cpu'", "CONFIRM_TOP_K = 2",
             *(f"{name} = {str(data / name.split('_')[0].lower()) + '.csv'!r}" for name in
               ("TRAIN_CSV", "TEST_CSV", "LATEST_CSV")),
             *(f"{key} = {value!r}" for key, value in settings.items())]
    config = tmp_path / "verdict.py"
    config.write_text("\n".join(lines) + "\n")
    done = subprocess.run([sys.executable, "search.py", "--config", str(config), "--results", str(tmp_path),
                           "--no-progress", "--cpu-count", "2"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return done, tmp_path / "verdict"


def predict(run: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "evaluate.py", str(run), "--predict"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def assert_verdict_everywhere(done, run: Path, verdict: str) -> dict:
    last = done.stdout.rstrip().splitlines()[-2:]
    assert last[0].startswith(f"Verdict: {verdict.upper()}")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["verdict"] == verdict and last[1] == summary["verdict_reason"]
    report = (run / "report.md").read_text().splitlines()
    assert report[2] == f"## Verdict: {verdict}" and report[4] == summary["verdict_reason"]
    return summary


def test_planted_skill_is_confirmed_in_all_four_places(tmp_path, markets):
    done, run = sweep(tmp_path, markets / "skilled")
    summary = assert_verdict_everywhere(done, run, "confirmed")
    assert summary["p_value_test"] <= 0.05 and summary["family_wise_p_value"] <= 0.05
    assert [r["validation_rank"] for r in summary["test_results"]] == [1, 2]
    assert summary["test_results"][0]["p_value_test"] == summary["p_value_test"]
    assert summary["statistics"]["assumed"] is None and summary["statistics"]["block_count"] >= 8
    assert summary["statistics"]["test_file"]["evaluated_dates"] > 40
    assert "| validation rank |" in (run / "report.md").read_text()  # the confirmation table under the verdict
    assert "warning" not in predict(run).stderr


def test_no_skill_is_not_confirmed_and_predict_warns(tmp_path, markets):
    done, run = sweep(tmp_path, markets / "random")
    summary = assert_verdict_everywhere(done, run, "not confirmed")
    assert summary["p_value_test"] > 0.05
    assert "Do not trade on it" in summary["verdict_reason"]
    scored = predict(run)
    assert f"warning: the verdict on combination {summary['best_combination']} is 'not confirmed'" in scored.stderr
    assert scored.stderr.index("warning") < scored.stderr.index("Training combination")  # before it scores


def test_without_confirmation_the_winner_is_not_tested(tmp_path, markets):
    done, run = sweep(tmp_path, markets / "skilled", CONFIRM_TOP_K=0)
    summary = assert_verdict_everywhere(done, run, "not tested")
    assert summary["p_value_test"] is None and summary["test_results"] == []
    assert "'not tested'" in predict(run).stderr


def test_ranked_on_the_test_file_the_verdict_is_the_family_wise_p_value(tmp_path, markets):
    done, run = sweep(tmp_path, markets / "skilled", SELECTION="test")
    summary = assert_verdict_everywhere(done, run, "confirmed")
    assert summary["p_value_test"] == summary["family_wise_p_value"] <= 0.05
    assert "chosen on test.csv itself" in summary["verdict_reason"]


def test_too_few_blocks_to_reach_the_level_are_warned_of_before_training(tmp_path, markets):
    done, run = sweep(tmp_path, markets / "random", VALIDATION_FRACTION=0.03, CONFIRM_TOP_K=0)
    assert "warning: the evaluated rows make only" in done.stderr
    assert "the smallest p-value the test can give is" in done.stderr and "nothing can reach the 0.05 level" in done.stderr
    smallest = json.loads((run / "summary.json").read_text())["statistics"]["smallest_p_value"]
    assert smallest > 0.05 and f"{smallest:.3g}" in done.stderr


def test_dates_out_of_order_stop_the_run_naming_the_file_and_line(tmp_path, markets):
    lines = (markets / "random" / "train.csv").read_text().splitlines()
    lines[5], lines[60] = lines[60], lines[5]  # a later date moved up
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "train.csv").write_text("\n".join(lines) + "\n")
    for name in ("test.csv", "latest.csv"):
        (bad / name).write_text((markets / "random" / name).read_text())
    config = tmp_path / "bad.py"
    config.write_text(f"TRAIN_CSV = {str(bad / 'train.csv')!r}\nTEST_CSV = {str(bad / 'test.csv')!r}\n")
    done = subprocess.run([sys.executable, "search.py", "--config", str(config), "--results", str(tmp_path / "out"),
                           "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"'{bad / 'train.csv'}': at line 7, column 1" in done.stderr and "out of order" in done.stderr
    assert not (tmp_path / "out").exists()  # nothing written


# ---------------------------------------------------------------- the rule, on hand-made rankings
def decided(test_p, family, selection="validation", tested=True):
    ranking = pd.DataFrame({"combination": ["w", "x"], "p_value_family_wise": [family, 1.0], "tp": [30, 1],
                            "fp": [20, 9], "positive_rate": [0.4, 0.4]})
    confirmation = pd.DataFrame({"combination": ["w"], "p_value_test": [test_p], "tp": [12], "fp": [8],
                                 "positive_rate": [0.35]}) if tested else None
    return decide(ranking, confirmation, selection, 0.05, "test.csv")


@pytest.mark.parametrize("test_p, family, verdict, says", [
    (0.01, 0.02, "confirmed", "beats the base rate by more than luck"),
    (0.20, 0.02, "not confirmed", "within what luck gives"),
    (0.01, 0.40, "not confirmed", "not significant as the best of 2 combinations"),
    (0.05, 0.05, "confirmed", "at most the 0.05 level"),
])
def test_confirmed_needs_the_test_and_the_choice_to_be_significant(test_p, family, verdict, says):
    result = decided(test_p, family)
    assert result.verdict == verdict and says in result.reason
    assert result.p_value_test == test_p and result.family_wise_p_value == family
    assert "precision 0.600 against the base rate 0.350 (20 positive predictions" in result.reason


def test_untested_and_ranked_on_test():
    assert decided(0.01, 0.01, tested=False).verdict == "not tested"
    assert decided(None, 0.01, selection="test", tested=False).verdict == "confirmed"
    assert decided(None, 0.2, selection="test", tested=False).verdict == "not confirmed"
