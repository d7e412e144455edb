"""End to end: `python search.py --config ...` as a user runs it, on small D.AT files of the test's own."""
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from helpers import finished_combinations
from optuna.distributions import (
    CategoricalDistribution,
    distribution_to_json,
)
from scipy import stats
from statsmodels.stats.multitest import multipletests

from models import native
from ranking.significance import PermutationTest, pooled_predictions, row_blocks
from ranking.values import importances
from records.claims import read_task_text, task_entries
from records.predictions import Predictions
from records.reruns import rows_from_study
from records.storage import journal_storage
from records.view import PerCombination
from sweep import commands, rows
from sweep import run as run_module
from training.seeds import training_seed

ROOT = Path(__file__).resolve().parent.parent


def write_config(folder: Path, data_dir: Path, name: str = "small", **settings) -> Path:
    grid = settings.pop("grid", {
        "hidden_layers": [[1], [2, 1], [0.5]],
        "learning_rate": [1e-2, 1e-3],
        "optimizer": ["adam", "sgd"],
    })
    lines = [f"hyperparameter_values = {grid!r}",
             "hyperparameter_values.setdefault('max_epochs', [2])",
             f"TRAIN_CSV = {str(data_dir / 'train.csv')!r}",
             f"TEST_CSV = {str(data_dir / 'test.csv')!r}",
             "RERUN_COUNT = 3", "DEVICE = 'cpu'", f"SELECTION = {settings.pop('SELECTION', 'test')!r}"]
    lines += [f"{key} = {value!r}" for key, value in settings.items()]
    path = folder / f"{name}.py"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_search(config: Path, results: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "search.py", "--config", str(config), "--results", str(results),
                           "--no-progress", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_grid_sweep_end_to_end(tmp_path, data_dir):
    config = write_config(tmp_path, data_dir)
    done = run_search(config, tmp_path / "results", "--cpu-count", "2")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "results" / "small"
    ranking = pd.read_csv(run / "ranking.csv", dtype={"combination": str})
    reruns = pd.read_csv(run / "reruns.csv", dtype={"combination": str})
    assert len(ranking) == 12 and len(reruns) == 36
    assert (reruns.groupby("combination").size() == 3).all()
    assert set(ranking["combination"]) == set(reruns["combination"])
    # each training's seed, derived by its worker, is that of (SEED, combination, rerun) alone
    assert [training_seed(0, row.combination, row.rerun) for row in reruns.itertuples()] == reruns["seed"].tolist()
    positive_rate = np.loadtxt(data_dir / "test.csv", delimiter=",")[:, -1].mean()
    for row in reruns.itertuples():
        n = row.tp + row.fp
        expected = stats.binomtest(row.tp, n, positive_rate, alternative="greater").pvalue if n else 1.0
        assert row.p_value_independent_rows == pytest.approx(expected, rel=1e-9)
        assert row.tp + row.fp + row.tn + row.fn == 200
    medians = reruns.groupby("combination")["p_value_independent_rows"].median()
    by_id = ranking.set_index("combination")
    assert np.allclose(by_id["p_value_independent_rows"], medians.loc[ranking["combination"]])
    sums = reruns.groupby("combination")[["tp", "fp"]].sum().loc[ranking["combination"]]
    assert (by_id[["tp", "fp"]].to_numpy() == sums.to_numpy()).all()  # pooled over the reruns
    # each p-value is the block permutation test of the reruns' pooled predictions, recomputed from the study
    assert np.allclose(by_id["p_value"], permutation_p_values(run, data_dir / "test.csv").loc[ranking["combination"]])
    assert ranking["p_value"].is_monotonic_increasing
    assert ranking["rank"].tolist() == list(range(1, 13))
    # optuna-dashboard reads the study: -log10 p, maximized, so its plots spread the small p-values out
    study = load_study(run / "study.journal")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    recorded = {t.user_attrs["combination"]: t for t in PerCombination(study).get_trials()}
    for row in ranking.itertuples():
        assert recorded[row.combination].user_attrs["p_value"] == pytest.approx(row.p_value, rel=1e-12)
        assert recorded[row.combination].value == pytest.approx(-np.log10(row.p_value), rel=1e-12)
    np.testing.assert_allclose(ranking["q_value"], multipletests(ranking["p_value"], method="fdr_bh")[1])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["family_wise_p_value"] == ranking["p_value_family_wise"].iloc[0]
    assert ranking["p_value"].iloc[0] <= summary["family_wise_p_value"] <= 1
    assert summary["statistics"]["assumed"].startswith("The files have no dates")
    assert set(summary["sweep"]) == {"seconds", "main_process_cpu_seconds", "main_process_peak_mib", "c_step",
                                     "mkl_avx512_on_amd", "trainings"}
    assert summary["sweep"]["trainings"] == 36
    assert summary["sweep"]["mkl_avx512_on_amd"] is False  # opt-in only (SWEEP_MKL_SHIM=1)
    assert (run / "config.py").read_text() == config.read_text()
    assert pd.read_csv(run / "errors.csv").empty
    assert "12 combinations completed, 0 failed" in done.stdout
    # the counts are whole numbers, and the precision is theirs: empty where nothing was predicted
    for table in (ranking, reruns):
        assert all(pd.api.types.is_integer_dtype(table[c]) for c in ("tp", "fp", "tn", "fn"))
        predicted = table["tp"] + table["fp"]
        expected = (table["tp"] / predicted).where(predicted > 0)
        np.testing.assert_allclose(table["precision"], expected, rtol=1e-12)
        assert table["precision"].isna().tolist() == (predicted == 0).tolist()
    assert "Best combination" in done.stdout


def test_random_search_is_distinct_and_independent_of_cpu_count(tmp_path, data_dir):
    config = write_config(tmp_path, data_dir, EXPLORE_ALL_COMBINATIONS=False, NUMBER_OF_COMBINATIONS_TO_TRY=5)
    rankings = []
    for cpus in ("1", "2"):
        done = run_search(config, tmp_path / f"results{cpus}", "--cpu-count", cpus)
        assert done.returncode == 0, done.stderr
        rankings.append(pd.read_csv(tmp_path / f"results{cpus}" / "small" / "ranking.csv"))
    one, two = rankings
    assert len(one) == 5
    assert not one.duplicated(subset=["hidden_layers", "learning_rate", "optimizer"]).any()
    compare = ["rank", "combination", "p_value", "tp", "fp", "tn", "fn"]
    pd.testing.assert_frame_equal(one[compare], two[compare])


def test_lstm_sweep_is_independent_of_cpu_count(tmp_path, data_dir):
    """An LSTM grid, with and without dropout, through search.py (the whole step in C) on 1 and on 2 workers:
    every rerun's counts and training loss are the same. (Here each architecture is one task either way;
    a member trained fused and alone is compared in tests/test_fused.py.)"""
    config = write_config(tmp_path, data_dir, grid={"model": ["lstm"], "hidden_layers": [[], [1]],
                                                    "dropout": [0.0, 0.2], "learning_rate": [1e-2, 1e-3]})
    tables = []
    for cpus in ("1", "2"):
        done = run_search(config, tmp_path / f"results{cpus}", "--cpu-count", cpus)
        assert done.returncode == 0, done.stderr
        tables.append(pd.read_csv(tmp_path / f"results{cpus}" / "small" / "reruns.csv", dtype={"combination": str}))
    one, two = (t.sort_values(["combination", "rerun"]).reset_index(drop=True) for t in tables)
    assert len(one) == 8 * 3 and (one["model"] == "lstm").all()
    compare = ["combination", "rerun", "seed", "tp", "fp", "tn", "fn", "train_loss", "diverged"]
    pd.testing.assert_frame_equal(one[compare], two[compare])


def test_running_again_resumes_without_retraining(tmp_path, data_dir):
    config = write_config(tmp_path, data_dir, grid={"learning_rate": [1e-2, 1e-3]})
    first = run_search(config, tmp_path / "results")
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "results" / "small" / "reruns.csv").read_text()
    again = run_search(config, tmp_path / "results")
    assert again.returncode == 0, again.stderr
    assert "2 of 2 combinations already finished" in again.stderr
    assert (tmp_path / "results" / "small" / "reruns.csv").read_text() == before


def permutation_p_values(run: Path, evaluated_csv: Path, permutations: int = 1000, seed: int = 0) -> pd.Series:
    """Each finished combination's block permutation p-value, recomputed from its predictions in the study."""
    labels = np.loadtxt(evaluated_csv, delimiter=",")[:, -1]
    test = PermutationTest(labels, row_blocks(len(labels), None), permutations, seed)
    p = {}
    kept = Predictions(run / "predictions")
    for record in finished_combinations(load_study(run / "study.journal").trials):
        reruns, bits = rows_from_study(record.user_attrs)
        pooled = pooled_predictions([kept.read(b) for r, b in zip(reruns, bits) if not r["diverged"]], len(labels))
        p[record.user_attrs["combination"]] = test.p_values(test.counts(pooled))[0]
    return pd.Series(p)


def load_study(journal: Path):
    return optuna.load_study(study_name="sweep", storage=journal_storage(str(journal)))


def test_the_study_records_each_task_once_and_reads_as_one_trial_per_combination(tmp_path, data_dir):
    config = write_config(tmp_path, data_dir, grid={"learning_rate": [1e-2, 1e-3, 1e-4], "optimizer": ["adam", "sgd"]})
    done = run_search(config, tmp_path / "results")
    assert done.returncode == 0, done.stderr
    journal = tmp_path / "results" / "small" / "study.journal"
    trials = load_study(journal).trials
    assert len(finished_combinations(trials)) == 6 and len(trials) < 6  # a trial per task, not per combination
    for trial in trials:
        entries = task_entries(trial)
        assert trial.value == pytest.approx(max(-np.log10(e["p_value"]) for e in entries))  # the task's best
    # the report reads one trial per combination, its hyperparameters as params where they vary
    view = PerCombination(load_study(journal)).get_trials()
    assert len(view) == 6
    for trial in view:
        assert trial.params == {k: trial.user_attrs["params"][k] for k in ("learning_rate", "optimizer")}
        assert trial.value == pytest.approx(-np.log10(trial.user_attrs["p_value"]))
    assert set(importances(PerCombination(load_study(journal))).index) == {"learning_rate", "optimizer"}
    # A study begun by an older version, which recorded a trial per combination with every value as a
    # categorical choice and its predictions as base64 text, and stopped after 2 combinations: resumed,
    # both layouts are read.
    old = CategoricalDistribution([0.01, 0.001, 0.0001])
    kept = Predictions(journal.parent / "predictions")
    lines = []
    for line in journal.read_text().splitlines():
        record = json.loads(line)
        if record["op_code"] != 4:  # not a trial created
            lines.append(json.dumps(record))
            continue
        for entry in read_task_text(record["user_attrs"]["combinations"])[:2 - sum('"op_code": 4' in x for x in lines)]:
            params = entry["params"]
            for row in entry["reruns"]:
                row["bits"] = base64.b64encode(kept.read(row["bits"])).decode()
            lines.append(json.dumps({**record, "user_attrs": entry,
                                     "distributions": {"learning_rate": distribution_to_json(old),
                                                       "optimizer": distribution_to_json(CategoricalDistribution(
                                                           ["adam", "sgd"]))},
                                     "params": {"learning_rate": old.to_internal_repr(params["learning_rate"]),
                                                "optimizer": ["adam", "sgd"].index(params["optimizer"])}}))
    journal.write_text("\n".join(lines) + "\n")
    assert len(load_study(journal).trials) == 2
    again = run_search(config, tmp_path / "results")
    assert again.returncode == 0, again.stderr
    assert "2 of 6 combinations already finished" in again.stderr
    trials = load_study(journal).trials
    assert len(finished_combinations(trials)) == 6
    assert all(t.distributions["learning_rate"] == old for t in trials[:2])
    view = PerCombination(load_study(journal)).get_trials()
    assert {t.params["learning_rate"] for t in view} == {0.01, 0.001, 0.0001}
    assert set(importances(PerCombination(load_study(journal))).index) == {"learning_rate", "optimizer"}


def test_a_change_that_alters_the_trainings_is_refused_naming_each_setting(tmp_path, data_dir):
    config = write_config(tmp_path, data_dir, grid={"learning_rate": [1e-2]})
    assert run_search(config, tmp_path / "results").returncode == 0
    run = tmp_path / "results" / "small"
    before = {name: (run / name).read_bytes() for name in ("ranking.csv", "reruns.csv", "study.journal")}
    changed = write_config(tmp_path, data_dir, grid={"learning_rate": [1e-2, 1e-3]}, SEED=7,
                           PREDICTION_THRESHOLD=0.6)
    refused = run_search(changed, tmp_path / "results")
    assert refused.returncode == 2
    assert "SEED 0 -> 7" in refused.stderr and "PREDICTION_THRESHOLD 0.5 -> 0.6" in refused.stderr
    assert "learning_rate" not in refused.stderr  # more values only grow the sweep
    assert "--name" in refused.stderr and "Traceback" not in refused.stderr
    # other data: the file is named, and nothing written before is touched
    other = tmp_path / "other"
    other.mkdir()
    (other / "train.csv").write_text((data_dir / "train.csv").read_text().replace("1\n", "0\n", 1))
    (other / "test.csv").write_text((data_dir / "test.csv").read_text())
    refused = run_search(write_config(tmp_path, other, grid={"learning_rate": [1e-2]}), tmp_path / "results")
    assert refused.returncode == 2 and "TRAIN_CSV (the file's contents have changed" in refused.stderr
    assert "SEED" not in refused.stderr
    assert {name: (run / name).read_bytes() for name in before} == before


def test_growing_a_finished_run_trains_only_what_is_new(tmp_path, data_dir):
    """More values, then more reruns: only the new trainings run, the earlier ones are kept byte for byte,
    and the grown ranking is a fresh run's."""
    small = {"learning_rate": [1e-2, 1e-3], "optimizer": ["adam", "sgd"]}
    wider = {"learning_rate": [1e-2, 1e-3, 3e-4], "optimizer": ["adam", "sgd"]}
    results, run = tmp_path / "results", tmp_path / "results" / "small"

    def trainings() -> int:
        return json.loads((run / "summary.json").read_text())["sweep"]["trainings"]

    first = run_search(write_config(tmp_path, data_dir, grid=small, RERUN_COUNT=2), results)
    assert first.returncode == 0, first.stderr
    assert trainings() == 4 * 2
    first_ranking = pd.read_csv(run / "ranking.csv")
    first_lines = (run / "reruns.csv").read_text().splitlines()
    first_bits = stored_bits(run)

    more_values = run_search(write_config(tmp_path, data_dir, grid=wider, RERUN_COUNT=2), results)
    assert more_values.returncode == 0, more_values.stderr
    assert "4 of 6 combinations already finished and kept" in more_values.stderr
    assert trainings() == 2 * 2  # the two new learning-rate combinations, two reruns each

    more_reruns = run_search(write_config(tmp_path, data_dir, grid=wider, RERUN_COUNT=3), results)
    assert more_reruns.returncode == 0, more_reruns.stderr
    assert "6 combinations with fewer than RERUN_COUNT = 3 reruns train only the missing ones" in more_reruns.stderr
    assert trainings() == 6  # one more rerun of each combination
    grown = pd.read_csv(run / "ranking.csv")
    assert (grown["reruns"] == 3).all() and len(grown) == 6
    # the first run's reruns are kept as they were: their CSV rows and their predictions in the study
    assert set(first_lines) <= set((run / "reruns.csv").read_text().splitlines())
    grown_bits = stored_bits(run)
    assert all(grown_bits[key] == bits for key, bits in first_bits.items())

    fresh = run_search(write_config(tmp_path, data_dir, grid=wider, RERUN_COUNT=3), tmp_path / "fresh")
    assert fresh.returncode == 0, fresh.stderr
    fresh_ranking = pd.read_csv(tmp_path / "fresh" / "small" / "ranking.csv")
    pd.testing.assert_frame_equal(grown.drop(columns="seconds"), fresh_ranking.drop(columns="seconds"))

    # fewer values again: the study keeps everything, the ranking is that of the smaller grid
    back = run_search(write_config(tmp_path, data_dir, grid=small, RERUN_COUNT=2), results)
    assert back.returncode == 0, back.stderr
    assert "Nothing new to train: 4 of 4 combinations already finished" in back.stderr
    assert trainings() == 0
    pd.testing.assert_frame_equal(pd.read_csv(run / "ranking.csv").drop(columns="seconds"),
                                  first_ranking.drop(columns="seconds"))
    assert len(finished_combinations(load_study(run / "study.journal").trials)) == 4 + 2 + 6


def stored_bits(run: Path) -> dict:
    """(combination, rerun) -> the packed predictions its latest trial in the study holds."""
    bits = {}
    kept = Predictions(run / "predictions")
    for record in finished_combinations(load_study(run / "study.journal").trials):
        reruns, packed = rows_from_study(record.user_attrs)
        bits.update({(record.user_attrs["combination"], r["rerun"]): kept.read(b) for r, b in zip(reruns, packed)})
    return bits


def test_growing_reruns_under_validation_confirms_like_a_fresh_run(tmp_path, data_dir):
    grid = {"learning_rate": [1e-2, 1e-3, 3e-4]}
    settings = dict(grid=grid, SELECTION="validation", CONFIRM_TOP_K=2)
    assert run_search(write_config(tmp_path, data_dir, RERUN_COUNT=2, **settings), tmp_path / "grown").returncode == 0
    grown = run_search(write_config(tmp_path, data_dir, RERUN_COUNT=3, **settings), tmp_path / "grown")
    assert grown.returncode == 0, grown.stderr
    fresh = run_search(write_config(tmp_path, data_dir, RERUN_COUNT=3, **settings), tmp_path / "fresh")
    assert fresh.returncode == 0, fresh.stderr
    for name in ("ranking.csv", "confirmation.csv"):
        a, b = (pd.read_csv(tmp_path / where / "small" / name) for where in ("grown", "fresh"))
        pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    again = run_search(write_config(tmp_path, data_dir, RERUN_COUNT=3, **settings), tmp_path / "grown")
    assert "already confirmed" in again.stderr and "retraining" not in again.stderr
    assert json.loads((tmp_path / "grown" / "small" / "summary.json").read_text())["sweep"]["trainings"] == 0


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_result_files_follow_the_umask(tmp_path, data_dir, umask, mode):
    config = write_config(tmp_path, data_dir, grid={"learning_rate": [1e-2]})
    done = subprocess.run([sys.executable, "search.py", "--config", str(config), "--results", str(tmp_path / "r"),
                           "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          preexec_fn=lambda: os.umask(umask))
    assert done.returncode == 0, done.stderr
    files = [p for p in (tmp_path / "r" / "small").iterdir() if p.is_file()]
    assert {"ranking.csv", "summary.json", "report.md", "study.journal", "p_values.png"} <= {p.name for p in files}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: oct(mode) for p in files}


def test_validation_selection_ranks_on_the_train_tail_and_confirms_the_top_on_test(tmp_path, data_dir):
    config = write_config(tmp_path, data_dir, SELECTION="validation", CONFIRM_TOP_K=3)
    done = run_search(config, tmp_path / "results")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "results" / "small"
    ranking = pd.read_csv(run / "ranking.csv", dtype={"combination": str})
    reruns = pd.read_csv(run / "reruns.csv")
    confirmation = pd.read_csv(run / "confirmation.csv", dtype={"combination": str})
    assert (ranking["ranked_on"] == "validation").all() and len(ranking) == 12
    assert (reruns[["tp", "fp", "tn", "fn"]].sum(axis=1) == 80).all()  # the last 20% of 400 train rows
    np.testing.assert_allclose(ranking["p_value_validation"], ranking["p_value"])
    assert ranking["p_value_test"].notna().tolist() == [True] * 3 + [False] * 9
    assert set(confirmation["combination"]) == set(ranking["combination"].head(3))
    assert sorted(confirmation["validation_rank"]) == [1, 2, 3]
    assert confirmation["p_value_test"].is_monotonic_increasing
    positive_rate = np.loadtxt(data_dir / "test.csv", delimiter=",")[:, -1].mean()
    for row in confirmation.itertuples():  # 3 reruns' counts on the 200 test rows, pooled
        assert row.tp + row.fp + row.tn + row.fn == 3 * 200
        assert row.positive_rate == pytest.approx(positive_rate)
    assert "Confirming the top 3" in done.stderr and "tested once on test.csv" in done.stdout


def test_validation_selection_uses_the_test_labels_only_to_confirm(tmp_path, data_dir, monkeypatch):
    """In-process, with the data's uses spied on: before the confirmation, the test file is read only to check
    its form; no training, evaluation or permutation test sees its rows or labels."""
    events = []

    def spy(module, name, rows_of):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **k: events.append((name, rows_of(*a))) or real(*a, **k))

    spy(rows, "load_labelled", lambda path: Path(path).name)
    spy(rows, "check_train_test", lambda train, test, *rest: Path(test.path).name)
    spy(rows, "save_for_workers", lambda train, evaluated: Path(evaluated.path).name)
    spy(run_module, "permutation_test", lambda settings, evaluated: Path(evaluated.path).name)
    spy(run_module, "confirm", lambda sweep: None)
    config = write_config(tmp_path, data_dir, SELECTION="validation", CONFIRM_TOP_K=2,
                          grid={"learning_rate": [1e-2, 1e-3, 3e-4]})
    assert commands.search(["--config", str(config), "--results", str(tmp_path / "results"), "--no-progress",
                            "--cpu-count", "1"]) == 0
    first_confirm = events.index(("confirm", None))
    before, after = events[:first_confirm], events[first_confirm:]
    assert ("load_labelled", "test.csv") in before  # its form, checked before the first training
    assert [e for e in before if e[1] == "test.csv" and e[0] != "load_labelled"] == []
    assert ("save_for_workers", "test.csv") in after and ("check_train_test", "test.csv") in after


def test_a_malformed_test_file_stops_a_validation_sweep_before_any_training(tmp_path, data_dir):
    lines = (data_dir / "test.csv").read_text().splitlines()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.csv").write_text((data_dir / "train.csv").read_text())
    for line_number, broken in ((5, lines[4].rsplit(",", 2)[0]),            # a short row
                                (7, lines[6].rsplit(",", 1)[0] + ",2")):   # a label of 2
        text = lines.copy()
        text[line_number - 1] = broken
        (bad / "test.csv").write_text("\n".join(text) + "\n")
        config = write_config(tmp_path, bad, SELECTION="validation", grid={"learning_rate": [1e-2]})
        done = run_search(config, tmp_path / "results")
        assert done.returncode == 2, done.stderr
        assert "test.csv" in done.stderr and f"line {line_number}" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "results").exists()  # stopped before anything was trained or written


def test_walk_forward_folds_pool_counts_over_the_validation_tail(tmp_path, data_dir):
    config = write_config(tmp_path, data_dir, SELECTION="validation", CONFIRM_TOP_K=1, VALIDATION_FOLDS=3,
                          VALIDATION_FRACTION=0.3, grid={"learning_rate": [1e-2, 1e-3]})
    done = run_search(config, tmp_path / "results")
    assert done.returncode == 0, done.stderr
    reruns = pd.read_csv(tmp_path / "results" / "small" / "reruns.csv")
    assert len(reruns) == 2 * 3  # one row per rerun: the 3 folds are summed
    assert (reruns[["tp", "fp", "tn", "fn"]].sum(axis=1) == 120).all()  # the last 30% of 400 rows
    assert "Family-wise p-value" in done.stdout


def test_a_failed_c_step_build_is_noted_once_per_run_not_per_worker(tmp_path, data_dir):
    if native.mkl_gemm_batch() is None:
        pytest.skip("torch without MKL: the C step does not apply, so nothing is built")
    config = write_config(tmp_path, data_dir)
    # an empty cache and a compiler that always fails: every worker tries the build and fails
    env = {**os.environ, "CC": "false", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop(native.OPT_OUT, None)
    done = subprocess.run([sys.executable, "search.py", "--config", str(config), "--results", str(tmp_path / "out"),
                           "--no-progress", "--cpu-count", "2"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("building the C training step failed") == 1, done.stderr
    assert "12 combinations completed, 0 failed" in done.stdout
