"""The study ledger (records/ledger.py, records/storage.py): claims held in heartbeat records, trials created whole, takeovers.

Several "processes" here are several Ledgers on one journal file in one
test process; they tell each other apart by their heartbeat records (their
process id is the same, so a silent one is noticed by its heartbeat only).
"""
import fcntl
import json
import threading
import time

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from sqlalchemy.exc import OperationalError

from records import storage
from records.claims import read_task_text, task_text
from records.ledger import Ledger
from records.storage import journal_storage, open_storage, open_study

CANDIDATES = [(f"c{i:02d}", {"lr": [0.1, 0.2][i % 2], "i": i}) for i in range(10)]


def template(combination: dict, cid: str) -> dict:
    return {"params": {"lr": combination["lr"]}, "distributions": {"lr": CategoricalDistribution([0.1, 0.2])},
            "user_attrs": {"combination": cid, "params": combination}}


@pytest.fixture
def journal(tmp_path):
    storage = open_storage(None, tmp_path)
    return storage, open_study(storage, "sweep", None)


def ledger(journal, timeout: float = 60.0) -> Ledger:
    storage, study = journal
    return Ledger(storage, study, heartbeat_timeout=timeout)


def records(tmp_path) -> int:
    return len((tmp_path / "study.journal").read_text().splitlines())


def trials(tmp_path):
    return optuna.load_study(study_name="sweep", storage=journal_storage(str(tmp_path / "study.journal"))).trials


def finish(ledger_: Ledger, claim, value: float = 0.5) -> bool:
    return ledger_.finish(claim, TrialState.COMPLETE, value, {"reruns": [{"rerun": 0, "p_value": value}]})


def test_a_round_of_claims_is_one_record_and_each_finished_combination_one_more(journal, tmp_path):
    a = ledger(journal)
    before = records(tmp_path)
    claims, status = a.claim_planned(CANDIDATES, 5, template)
    assert [c.cid for c in claims] == ["c00", "c01", "c02", "c03", "c04"]
    assert records(tmp_path) == before + 1  # the heartbeat record that holds the round
    assert set(status.claimed) == {c.cid for c in claims}
    for c in claims:
        assert finish(a, c, value=0.1 * int(c.cid[1:]) + 0.05)
    assert records(tmp_path) == before + 1 + 5
    done = trials(tmp_path)
    assert [t.state for t in done] == [TrialState.COMPLETE] * 5
    first = done[0]
    assert first.params == {"lr": 0.1} and first.value == pytest.approx(0.05)
    assert first.user_attrs["combination"] == "c00" and first.user_attrs["params"] == CANDIDATES[0][1]
    assert first.user_attrs["reruns"] == [{"rerun": 0, "p_value": 0.05}]
    assert first.system_attrs["claimant"] == a.me
    assert first.datetime_start <= first.datetime_complete
    # and what is finished is never claimed again
    again, _ = a.claim_planned(CANDIDATES, 10, template)
    assert [c.cid for c in again] == [cid for cid, _ in CANDIDATES[5:]]


def test_two_processes_never_hold_the_same_combination(journal):
    a, b = ledger(journal), ledger(journal)
    held = {a.me: set(), b.me: set()}
    while sum(map(len, held.values())) < len(CANDIDATES):
        for who in (a, b):
            claims, status = who.claim_planned(CANDIDATES, 4, template)
            assert status.claimants == 2
            held[who.me] |= {c.cid for c in claims}
    assert not held[a.me] & held[b.me]
    assert held[a.me] | held[b.me] == {cid for cid, _ in CANDIDATES}
    assert len(held[a.me]) >= 3 and len(held[b.me]) >= 3  # each left the other a share


def test_a_silent_process_is_declared_stopped_its_claims_taken_over_and_its_late_results_dropped(
        journal, tmp_path, capsys):
    a = ledger(journal, timeout=0.3)
    claims_a, _ = a.claim_planned(CANDIDATES[:3], 3, template)
    b = ledger(journal, timeout=0.3)
    b.refresh()  # b sees a's heartbeat ...
    time.sleep(0.6)  # ... which then does not change for longer than the timeout
    claims_b, _ = b.claim_planned(CANDIDATES[:3], 3, template)
    assert sorted(c.cid for c in claims_b) == ["c00", "c01", "c02"]
    assert sorted(b.taken_over) == ["c00", "c01", "c02"]
    # a comes back (a suspended machine): its result is dropped with a note, b's counts
    assert not finish(a, claims_a[0])
    assert "was taken over by another process" in capsys.readouterr().err
    assert all(finish(b, c) for c in claims_b)
    done = trials(tmp_path)
    assert len(done) == 3 and {t.system_attrs["claimant"] for t in done} == {b.me}
    # and a goes on claiming as a live process again, without what it lost
    assert a.holds == set() and a.lost == {"c00", "c01", "c02"}


def test_a_process_that_beats_keeps_its_claims(journal):
    a = ledger(journal, timeout=0.8)
    assert len(a.claim_planned(CANDIDATES[:3], 3, template)[0]) == 3
    b = ledger(journal, timeout=0.8)
    b.refresh()
    for _ in range(4):
        time.sleep(0.3)
        a.beat()
    claims_b, status = b.claim_planned(CANDIDATES[:3], 3, template)
    assert claims_b == [] and b.taken_over == [] and len(status.claimed) == 3


def test_released_claims_are_free_at_once_and_a_left_process_holds_nothing(journal):
    a, b = ledger(journal), ledger(journal)
    claims, _ = a.claim_planned(CANDIDATES[:4], 4, template)
    assert len(claims) == 2  # two live processes: a takes its half
    a.release(claims[:1])
    got, _ = b.claim_planned(CANDIDATES[:4], 4, template)
    assert [c.cid for c in got] == ["c00", "c02"]  # the released one, and b's share of the rest
    a.leave()
    got, _ = b.claim_planned(CANDIDATES[:4], 4, template)
    assert [c.cid for c in got] == ["c01", "c03"] and b.taken_over == []  # left, not stale: nothing to take over


def test_a_failed_combination_is_recorded_whole_and_not_claimed_again_in_this_run(journal, tmp_path):
    a = ledger(journal)
    (claim,), _ = a.claim_planned(CANDIDATES[:1], 1, template)
    assert a.finish(claim, TrialState.FAIL, None, {"error": "ValueError: boom", "traceback": "..."})
    (trial,) = trials(tmp_path)
    assert trial.state == TrialState.FAIL and trial.user_attrs["error"] == "ValueError: boom"
    claims, status = a.claim_planned(CANDIDATES[:1], 1, template)
    assert claims == [] and "c00" in status.failed


class FlakyRDBStorage:
    """Stands in for optuna's RDBStorage: fails with `errors` in turn, then opens."""

    def __init__(self, errors):
        self.errors, self.calls = list(errors), 0

    def __call__(self, url, engine_kwargs=None):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "opened"


def test_opening_a_database_retries_when_another_process_created_the_tables_first(tmp_path, monkeypatch):
    # what SQLite said when three processes started on one new file at once (a CI failure)
    race = OperationalError("CREATE TABLE trial_user_attributes", {},
                            Exception("table trial_user_attributes already exists"))
    flaky = FlakyRDBStorage([race, race])
    monkeypatch.setattr(storage, "RDBStorage", flaky)
    monkeypatch.setattr(storage.time, "sleep", lambda s: None)
    assert storage.create_rdb(f"sqlite:///{tmp_path / 'shared.db'}") == "opened"
    assert flaky.calls == 3


def test_opening_a_database_does_not_retry_other_errors(tmp_path, monkeypatch):
    unreachable = OperationalError("connect", {}, Exception("could not connect to server"))
    flaky = FlakyRDBStorage([unreachable])
    monkeypatch.setattr(storage, "RDBStorage", flaky)
    monkeypatch.setattr(storage.time, "sleep", lambda s: None)
    with pytest.raises(OperationalError):
        storage.create_rdb("postgresql://sweep@127.0.0.1:1/sweeps")
    assert flaky.calls == 1


def test_processes_opening_one_new_sqlite_file_take_turns(tmp_path, monkeypatch):
    """While one process creates the tables, another waits on the lock file beside the database."""
    database = tmp_path / "shared.db"
    holder = open(str(database) + ".create", "a+")
    fcntl.flock(holder, fcntl.LOCK_EX)  # "another process" is creating the tables
    released, opened = threading.Event(), []

    def open_after_release(url, engine_kwargs=None):
        return "opened" if released.is_set() else "opened while the other process was creating the tables"
    monkeypatch.setattr(storage, "RDBStorage", open_after_release)
    waiter = threading.Thread(target=lambda: opened.append(storage.create_rdb(f"sqlite:///{database}")))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and not opened  # waiting for the lock
    released.set()
    fcntl.flock(holder, fcntl.LOCK_UN)
    waiter.join(5)
    holder.close()
    assert opened == ["opened"]


def test_a_tasks_text_reads_back_its_entries_whatever_their_rows():
    row = {"rerun": 0, "tp": 3, "precision": None, "bits": "AAE="}
    same = [{"combination": f"c{i}", "params": {"learning_rate": 0.1 * i, "hidden_layers": [2, 1]},
             "reruns": [row, {**row, "rerun": 1}], "p_value": 0.5} for i in range(3)]
    assert read_task_text(task_text(same)) == same
    assert len(task_text(same)) < len(json.dumps(same))  # the names once for the task
    # an older rerun with other fields (a grown combination's): written as it is
    mixed = [same[0], {**same[1], "reruns": [{"rerun": 0, "p_value": 0.2}, row]}]
    assert read_task_text(task_text(mixed)) == mixed
