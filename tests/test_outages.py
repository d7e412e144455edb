"""Shared sweeps on a real PostgreSQL server: fair claims, outages ridden out, and no password anywhere.

Every end-to-end test runs `search.py` as users do, each process with its own
host id, as on separate machines; the server is one of the test's own where
the test stops it (tests/conftest.py).
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
from helpers import finished_combinations
from sqlalchemy.exc import OperationalError
from test_scale_out import GRID12, _check_exactly_once
from test_search import ROOT, write_config

from records.ledger import Ledger
from records.outage import Patience, StorageUnavailable
from records.storage import Storage as StudyStorage
from records.storage import journal_storage, open_study

GRID24 = {**GRID12, "dropout": [0.0, 0.2]}


def start(config: Path, results: Path, url: str, study: str, host: str, env=None, rounds=None):
    environment = {**os.environ, "SWEEP_HOST_ID": host, **(env or {})}
    environment.pop("SWEEP_ROUND_COMBINATIONS", None)
    if rounds:
        environment["SWEEP_ROUND_COMBINATIONS"] = str(rounds)
    return subprocess.Popen([sys.executable, "search.py", "--config", str(config), "--results", str(results),
                             "--no-progress", "--cpu-count", "1", "--storage", url, "--study", study],
                            cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finished_trials(url: str, study: str) -> list:
    try:
        return finished_combinations(optuna.load_study(study_name=study, storage=url).trials)
    except (KeyError, OperationalError):
        return []


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def by_machine(trials) -> dict:
    counts = {}
    for t in trials:
        host = t.system_attrs["claimant"].split(":")[0]
        counts[host] = counts.get(host, 0) + 1
    return counts


# ------------------------------------------------------------------ fair claims
def test_two_processes_started_together_split_a_grid_smaller_than_one_round(tmp_path, data_dir, postgres_url):
    """24 combinations fit one claim round; two machines started together still get half each."""
    config = write_config(tmp_path, data_dir, grid={**GRID24, "max_epochs": [1200]})
    study = f"pair-{tmp_path.name}"
    started = time.monotonic()
    procs = [start(config, tmp_path / "results", postgres_url, study, host) for host in ("machine-a", "machine-b")]
    outputs = [p.communicate(timeout=600) for p in procs]
    print(f"two processes: {time.monotonic() - started:.1f} s")
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    finished = _check_exactly_once(optuna.load_study(study_name=study, storage=postgres_url).trials, 24)
    counts = by_machine(finished)
    assert set(counts) == {"machine-a", "machine-b"}, counts
    assert min(counts.values()) >= 8, counts  # each trained at least a third: the wall time is about halved


def test_a_process_joining_a_running_sweep_finds_work(tmp_path, data_dir, postgres_url):
    """The first machine claims while alone; one started after that still gets a share of the grid."""
    config = write_config(tmp_path, data_dir, grid={**GRID24, "max_epochs": [3000]})
    study = f"join-{tmp_path.name}"
    first = start(config, tmp_path / "results", postgres_url, study, "machine-a")

    def first_holds() -> bool:
        try:
            storage = optuna.storages.RDBStorage(postgres_url)
            attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(study))
        except (KeyError, OperationalError):
            return False
        return any(record.get("holds") for key, record in attrs.items() if key.startswith("claimant:"))

    wait_for(first_holds, 300, "the first process's claims")
    second = start(config, tmp_path / "results", postgres_url, study, "machine-b")
    for p in (first, second):
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    counts = by_machine(_check_exactly_once(optuna.load_study(study_name=study, storage=postgres_url).trials, 24))
    assert counts.get("machine-b", 0) >= 2, counts


# ------------------------------------------------------------------ outages
def test_a_database_restart_mid_run_is_ridden_out(tmp_path, data_dir, postgres_server):
    """The server goes down for 20 s while two processes work: both finish, as if nothing had happened."""
    config = write_config(tmp_path, data_dir, grid=GRID12)
    whole = subprocess.run([sys.executable, "search.py", "--config", str(config), "--results",
                            str(tmp_path / "whole"), "--no-progress", "--cpu-count", "1"], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr
    study = "outage"
    procs = [start(config, tmp_path / "results", postgres_server.url, study, host, rounds=2)
             for host in ("machine-a", "machine-b")]
    wait_for(lambda: len(finished_trials(postgres_server.url, study)) >= 2, 300, "the first results")
    postgres_server.stop()
    time.sleep(20)
    postgres_server.start()
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    assert any("not answering" in err for _, err in outputs) and any("answers again" in err for _, err in outputs)
    _check_exactly_once(optuna.load_study(study_name=study, storage=postgres_server.url).trials, 12)
    compare = ["rank", "combination", "p_value", "q_value", "tp", "fp", "tn", "fn"]
    expected = pd.read_csv(tmp_path / "whole" / "small" / "ranking.csv")[compare]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "results" / "small" / "ranking.csv")[compare], expected)


def test_an_outage_longer_than_the_retry_limit_stops_with_exit_code_3(tmp_path, data_dir, postgres_server):
    config = write_config(tmp_path, data_dir, grid=GRID12, STORAGE_RETRY_SECONDS=4)
    url = postgres_server.url.replace("sweep@", "sweep:pw-in-url@")  # trust auth ignores it; it must not show
    proc = start(config, tmp_path / "results", url, "gone", "machine-a", rounds=2)
    wait_for(lambda: len(finished_trials(postgres_server.url, "gone")) >= 1, 300, "the first result")
    postgres_server.stop()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err
    assert "did not answer" in err and "STORAGE_RETRY_SECONDS = 4" in err and "resume with:" in err
    assert "postgresql://sweep:***@127.0.0.1" in err and "pw-in-url" not in out + err
    assert "Traceback" not in err


# ------------------------------------------------------------------ passwords
def test_ctrl_c_with_a_password_in_the_url_shows_it_nowhere(tmp_path, data_dir, postgres_with_password):
    server = postgres_with_password
    config = write_config(tmp_path, data_dir, grid={**GRID12, "max_epochs": [1200]})
    proc = start(config, tmp_path / "results", server.url, "secret", "machine-a", rounds=2)
    wait_for(lambda: len(finished_trials(server.url, "secret")) >= 1, 300, "the first result")
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Resume with:" in err and "sweep:***@127.0.0.1" in err
    assert "hunter2-secret" not in out + err
    written = [p for p in (tmp_path / "results").rglob("*") if p.is_file()]
    assert written and not [p for p in written if b"hunter2-secret" in p.read_bytes()]


def test_the_password_can_come_from_the_environment(tmp_path, data_dir, postgres_with_password):
    """A URL without the password, PGPASSWORD beside it: nothing secret on the command line (or in `ps`)."""
    server = postgres_with_password
    config = write_config(tmp_path, data_dir, grid={"learning_rate": [1e-2, 1e-3]})
    bare = server.url.replace(":hunter2-secret@", "@")
    refused = start(config, tmp_path / "results", bare, "env", "machine-a")
    _, err = refused.communicate(timeout=300)
    assert refused.returncode == 2 and "password" in err.lower() and "Traceback" not in err
    proc = start(config, tmp_path / "results", bare, "env", "machine-a", env={"PGPASSWORD": "hunter2-secret"})
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert len(finished_trials(server.url, "env")) == 2


# ------------------------------------------------------------------ the retry policy itself
def test_patience_retries_a_step_until_it_succeeds_then_reports_recovery(capsys):
    calls, recovered = [], []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))
        return "done"

    assert Patience(30, on_recovery=lambda: recovered.append(True)).call(flaky) == "done"
    assert len(calls) == 3 and recovered == [True]
    assert calls[2] - calls[1] >= 2 * (calls[1] - calls[0]) * 0.9  # backing off
    err = capsys.readouterr().err
    assert "database is locked" in err and "answers again" in err


def test_patience_gives_up_after_its_limit_and_does_not_retry_other_errors():
    def down():
        raise OSError("No such file or directory")

    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="No such file"):
        Patience(1.0).call(down)
    assert 0.9 <= time.monotonic() - started < 5
    with pytest.raises(ValueError):  # a bug is not an outage: it goes up at once
        Patience(30).call(lambda: (_ for _ in ()).throw(ValueError("bug")))


def test_a_claim_round_cut_short_by_an_outage_leaves_no_claim_behind(tmp_path, monkeypatch):
    """The heartbeat that would publish a round's claims fails: the round is redone whole, once."""
    storage = StudyStorage(journal_storage(str(tmp_path / "study.journal")), None, journal=tmp_path / "study.journal")
    study = open_study(storage, "sweep", None)
    ledger = Ledger(storage, study, heartbeat_timeout=60)
    candidates = [(f"{i:012x}", {"i": i}) for i in range(6)]
    real, failures = storage.optuna.set_study_system_attr, []

    def set_attr_failing_once(*args):
        if not failures:
            failures.append(args)
            raise OSError("disk went away")
        return real(*args)

    monkeypatch.setattr(storage.optuna, "set_study_system_attr", set_attr_failing_once)
    claims, _ = ledger.claim_planned(candidates, 3, lambda combination, cid: {})
    assert failures and [c.cid for c in claims] == [cid for cid, _ in candidates[:3]]
    assert ledger.holds == {c.cid for c in claims}
    record = storage.optuna.get_study_system_attrs(ledger.study_id)[f"claimant:{ledger.me}"]
    assert sorted(record["holds"]) == sorted(ledger.holds)
