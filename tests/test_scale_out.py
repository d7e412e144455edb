"""Issue 6 end to end: model-based samplers, pruning, and several processes sharing one study.

Every test runs `search.py` as users do. The shared-study tests run on the
default journal file and on a real PostgreSQL server (tests/conftest.py).
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import sqlalchemy
from helpers import finished_combinations
from test_search import ROOT, run_search, write_config

from records.storage import journal_storage


def ranged_config(folder, data_dir, name="ranged", **settings):
    """A config file using ranges, as a user writes it (with the import from inputs/space.py)."""
    grid = settings.pop("grid")
    lines = ["from inputs.space import loguniform, uniform, intrange",
             f"hyperparameter_values = {grid}",
             f"TRAIN_CSV = {str(data_dir / 'train.csv')!r}", f"TEST_CSV = {str(data_dir / 'test.csv')!r}",
             "DEVICE = 'cpu'", "SELECTION = 'test'", "PERMUTATIONS = 99"]
    lines += [f"{key} = {value!r}" for key, value in settings.items()]
    path = folder / f"{name}.py"
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------ samplers
def test_tpe_run_of_40_trials_over_a_range_space(tmp_path, data_dir):
    config = ranged_config(tmp_path, data_dir, SAMPLER="tpe", NUMBER_OF_COMBINATIONS_TO_TRY=40, RERUN_COUNT=1,
                           grid='{"learning_rate": loguniform(1e-4, 1e-1), "dropout": uniform(0.0, 0.5), '
                                '"hidden_layers": [[1], [2, 1]], "max_epochs": [1]}')
    done = run_search(config, tmp_path / "results", "--cpu-count", "2")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "results" / "ranged"
    ranking = pd.read_csv(run / "ranking.csv", dtype={"combination": str})
    assert len(ranking) == 40 and ranking["combination"].is_unique
    assert ranking["learning_rate"].between(1e-4, 1e-1).all() and ranking["dropout"].between(0, 0.5).all()
    assert ranking["learning_rate"].nunique() == 40
    for name in ("reruns.csv", "errors.csv", "report.md", "summary.json", "p_values.png"):
        assert (run / name).is_file(), name
    study = optuna.load_study(study_name="sweep", storage=_journal(run))
    complete = finished_combinations(study.trials)
    assert len(complete) == 40 and len({t.user_attrs["combination"] for t in complete}) == 40
    assert "40 combinations completed, 0 failed" in done.stdout


@pytest.mark.parametrize("sampler", ["cmaes", "gp", "qmc", "tpe"])
def test_each_sampler_searches_a_small_range_space(tmp_path, data_dir, sampler):
    config = ranged_config(tmp_path, data_dir, SAMPLER=sampler, NUMBER_OF_COMBINATIONS_TO_TRY=6, RERUN_COUNT=1,
                           grid='{"learning_rate": loguniform(1e-4, 1e-1), "dropout": uniform(0.0, 0.3), '
                                '"batch_size": intrange(16, 64), "max_epochs": [1]}')
    done = run_search(config, tmp_path / "results", "--cpu-count", "1")
    assert done.returncode == 0, done.stderr
    ranking = pd.read_csv(tmp_path / "results" / "ranged" / "ranking.csv")
    assert len(ranking) == 6 and ranking["combination"].is_unique
    assert ranking["batch_size"].between(16, 64).all() and (ranking["batch_size"] % 1 == 0).all()
    assert ranking["learning_rate"].between(1e-4, 1e-1).all()


def test_a_small_categorical_space_stops_when_every_point_is_tried(tmp_path, data_dir):
    config = write_config(tmp_path, data_dir, SAMPLER="tpe", NUMBER_OF_COMBINATIONS_TO_TRY=10, RERUN_COUNT=1,
                          grid={"learning_rate": [1e-2, 1e-3], "optimizer": ["adam", "sgd"]})
    done = run_search(config, tmp_path / "results", "--cpu-count", "1")
    assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(tmp_path / "results" / "small" / "ranking.csv")) == 4  # no point trained twice
    assert "no more new ones" in done.stderr


def test_ranges_with_grid_search_are_refused_with_the_key(tmp_path, data_dir):
    config = ranged_config(tmp_path, data_dir, grid='{"learning_rate": loguniform(1e-4, 1e-1)}')
    done = run_search(config, tmp_path / "results")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "hyperparameter_values['learning_rate']" in done.stderr and 'SAMPLER = "tpe"' in done.stderr
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------- pruning
GOOD, HOPELESS = [3e-2, 2e-2, 1e-2, 5e-3], [1e-9, 2e-9, 3e-9, 5e-9]  # the latter learn nothing in 10 epochs


def pruned_sweep(tmp_path, data_dir, pruner: str):
    """A sweep with `pruner` over learning rates, half of them hopeless: (search.py's run, reruns, ranking)."""
    config = write_config(tmp_path, data_dir, PRUNER=pruner, RERUN_COUNT=2,
                          grid={"learning_rate": GOOD + HOPELESS, "max_epochs": [10]})
    done = run_search(config, tmp_path / "results", "--cpu-count", "1")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "results" / "small"
    return done, pd.read_csv(run / "reruns.csv"), pd.read_csv(run / "ranking.csv")


def test_pruning_stops_hopeless_combinations_early(tmp_path, data_dir):
    """Half the learning rates cannot learn anything in 10 epochs: the median pruner stops them."""
    done, reruns, ranking = pruned_sweep(tmp_path, data_dir, "median")
    run = tmp_path / "results" / "small"
    trained = reruns.groupby("learning_rate")["epochs"].max()
    assert (trained.loc[GOOD] == 10).all()  # the first four finish: the pruner needs them to compare with
    assert (trained.loc[HOPELESS] < 10).all()
    full = len(reruns) * 10
    assert reruns["epochs"].sum() <= 0.7 * full, reruns[["learning_rate", "epochs"]]
    pruned = ranking[ranking["status"] == "pruned"]
    assert set(pruned["learning_rate"]) == set(HOPELESS) and (pruned["p_value"] == 1.0).all()
    assert "4 combinations completed, 4 pruned, 0 failed" in done.stdout
    study = optuna.load_study(study_name="sweep", storage=_journal(run))
    assert sum(t.state.name == "PRUNED" for t in study.trials) == 4
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)  # every epoch reported


@pytest.mark.parametrize("pruner", ["successive_halving", "hyperband"])
def test_rung_based_pruners_run_end_to_end(tmp_path, data_dir, pruner):
    """Successive halving and Hyperband judge a combination at rungs (epochs 1, 4, ...) against the others."""
    done, reruns, ranking = pruned_sweep(tmp_path, data_dir, pruner)
    run = tmp_path / "results" / "small"
    assert len(ranking) == 8 and (reruns.groupby("combination").size() == 2).all()
    study = optuna.load_study(study_name="sweep", storage=_journal(run))
    states = [t.state.name for t in study.trials]
    assert len(states) == 8 and set(states) <= {"COMPLETE", "PRUNED"}
    pruned = ranking[ranking["status"] == "pruned"]
    assert len(pruned) == states.count("PRUNED") >= 1  # this space has combinations worth stopping
    assert (pruned["p_value"] == 1.0).all()
    epochs = reruns.groupby("learning_rate")["epochs"].max()
    assert (epochs.loc[pruned["learning_rate"]] < 10).all()
    assert (epochs.drop(pruned["learning_rate"]) == 10).all()
    assert f"{8 - len(pruned)} combinations completed, {len(pruned)} pruned, 0 failed" in done.stdout


# ------------------------------------------------------ several processes
def _journal(run: Path):
    return journal_storage(str(run / "study.journal"))


def _start(config: Path, results: Path, *args, host: str | None = None, env=None) -> subprocess.Popen:
    environment = {**os.environ, "SWEEP_ROUND_COMBINATIONS": "2", **(env or {})}
    if host:
        environment["SWEEP_HOST_ID"] = host
    return subprocess.Popen([sys.executable, "search.py", "--config", str(config), "--results", str(results),
                             "--no-progress", "--cpu-count", "1", *args], cwd=ROOT, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _trials(storage_args: list[str], run: Path, name: str):
    if storage_args:
        return optuna.load_study(study_name=name, storage=storage_args[1]).trials
    return optuna.load_study(study_name="sweep", storage=_journal(run)).trials


def _check_exactly_once(trials, expected: int):
    """Every combination recorded once; nothing trained twice, nothing missing."""
    finished = finished_combinations(trials)
    ids = [t.user_attrs["combination"] for t in finished]
    assert len(ids) == expected and len(set(ids)) == expected, sorted(ids)
    assert not any(t.state.name == "RUNNING" for t in trials)
    return finished


GRID12 = {"hidden_layers": [[1], [2, 1], [0.5]], "learning_rate": [1e-2, 1e-3], "optimizer": ["adam", "sgd"],
          "max_epochs": [160]}


@pytest.fixture(params=["journal", "postgresql", "sqlite"])
def shared(request, tmp_path):
    """How the processes share the study: the run folder's journal, or --storage on PostgreSQL or SQLite."""
    if request.param == "journal":
        return []
    if request.param == "sqlite":  # one machine's processes sharing a database file
        return ["--storage", f"sqlite:///{tmp_path / 'shared.db'}", "--study", f"grid-{tmp_path.name}"]
    url = request.getfixturevalue("postgres_url")
    return ["--storage", url, "--study", f"grid-{tmp_path.name}"]


def test_three_processes_finish_a_grid_exactly_once(tmp_path, data_dir, shared):
    config = write_config(tmp_path, data_dir, SELECTION="validation", CONFIRM_TOP_K=2, grid=GRID12)
    procs = [_start(config, tmp_path / "results", *shared) for _ in range(3)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    run = tmp_path / "results" / "small"
    finished = _check_exactly_once(_trials(shared, run, shared[-1] if shared else "sweep"), 12)
    workers = {t.system_attrs["claimant"].rsplit(":", 2)[1] for t in finished}
    assert len(workers) >= 2, "the processes did not share the work"
    ranking = pd.read_csv(run / "ranking.csv")
    assert len(ranking) == 12 and (ranking["reruns"] == 3).all()
    assert pd.read_csv(run / "confirmation.csv")["combination"].nunique() == 2
    if shared:  # any machine can write the ranking from the database
        out = tmp_path / "from_db"
        done = subprocess.run([sys.executable, "evaluate.py", *shared, "--results", str(out)], cwd=ROOT,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        again = pd.read_csv(out / shared[-1] / "ranking.csv")
        pd.testing.assert_frame_equal(again[["combination", "p_value"]], ranking[["combination", "p_value"]])


def _claimants(storage_args: list[str], run: Path, name: str) -> dict:
    """The heartbeat records of the processes working on the study: what each holds, whether it left."""
    storage = optuna.storages.RDBStorage(storage_args[1]) if storage_args else _journal(run)
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(name))
    return {key[len("claimant:"):]: record for key, record in attrs.items() if key.startswith("claimant:")}


def test_a_killed_process_loses_its_combinations_to_the_others(tmp_path, data_dir, shared):
    """Three "machines"; one is killed while it holds combinations; the other two finish its share."""
    # trainings long enough (~1 s a task with the C training step) that the victim still holds unfinished
    # ones when it is killed
    config = write_config(tmp_path, data_dir, HEARTBEAT_TIMEOUT=3, grid={**GRID12, "max_epochs": [2400]})
    run = tmp_path / "results" / "small"
    name = shared[-1] if shared else "sweep"

    def victims_holds() -> set:
        try:
            records = _claimants(shared, run, name)
        except (KeyError, FileNotFoundError, ValueError):
            return set()  # the study does not exist yet
        except sqlalchemy.exc.OperationalError:
            return set()  # sqlite's lock, held by the victim frozen mid-write below: look again once it runs on
        return {cid for who, r in records.items() if who.startswith("machine-a") for cid in r.get("holds", ())}

    def victims_unfinished_holds() -> set:
        # the heartbeat record is as of the last beat (every timeout / 4), so it can still list combinations
        # the victim has finished since: only those without a trial count as held
        try:
            recorded = {t.user_attrs.get("combination") for t in finished_combinations(_trials(shared, run, name))}
        except (KeyError, FileNotFoundError, ValueError):
            recorded = set()
        except sqlalchemy.exc.OperationalError:
            return set()  # as above: not knowing what it finished, count nothing as held
        return victims_holds() - recorded

    victim = _start(config, tmp_path / "results", *shared, host="machine-a")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not victims_holds():
        time.sleep(0.3)
    assert victims_holds(), "the first process never claimed anything"
    others = [_start(config, tmp_path / "results", *shared, host=f"machine-{m}") for m in "bc"]
    time.sleep(1.0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # frozen while we look, so that what it holds unfinished is still unfinished when it is killed
        os.killpg(victim.pid, signal.SIGSTOP)
        if held := victims_unfinished_holds():
            break
        os.killpg(victim.pid, signal.SIGCONT)
        time.sleep(0.1)
    assert held, "the first process never held an unfinished combination"
    os.killpg(victim.pid, signal.SIGKILL)  # the machine is gone: no goodbye, no release
    victim.wait()
    outputs = [p.communicate(timeout=600) for p in others]
    for p, (out, err) in zip(others, outputs):
        assert p.returncode == 0, err
    trials = _trials(shared, run, name)
    finished = _check_exactly_once(trials, 12)
    by = {t.user_attrs["combination"]: t.system_attrs["claimant"] for t in finished}
    # what it finished before the kill counts; what it still held must have gone to the others
    lost = {cid for cid in held if not by[cid].startswith("machine-a")}  # so finished by machine b or c
    assert lost, "the killed process held no unfinished combination"
    victim_record = next(r for who, r in _claimants(shared, run, name).items() if who.startswith("machine-a"))
    assert victim_record.get("stale") and victim_record["holds"] == []  # declared stopped, its claims freed
    assert any("took over" in err for _, err in outputs)


def test_an_unreachable_database_is_a_clear_error_and_writes_nothing(tmp_path, data_dir):
    config = write_config(tmp_path, data_dir, grid={"learning_rate": [1e-2]})
    done = run_search(config, tmp_path / "results", "--storage", "postgresql://sweep:secret@127.0.0.1:1/sweeps")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--storage postgresql://sweep:***@127.0.0.1:1/sweeps" in done.stderr  # the password is not echoed
    assert not (tmp_path / "results").exists()
    alone = run_search(config, tmp_path / "results", "--study", "x")
    assert alone.returncode == 2 and "--storage URL" in alone.stderr
