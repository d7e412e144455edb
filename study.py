"""The run's Optuna study, and how several search.py processes share it without doing work twice.

One process or many, on one machine (the default journal file) or on many
(`--storage postgresql://...`): a process claims combinations before it
trains them, under a lock; it records each finished combination as one
trial (COMPLETE, PRUNED or FAIL, every rerun's counts in the trial's user
attrs); and it writes a heartbeat while it works. A process that stops
beating (killed, machine lost, network gone) loses its claims: the next
process to claim declares it stopped and trains those combinations itself.
So a grid is finished exactly once in total: no combination trained twice,
none left out.

Two ways to hold a claim. A planned combination (grid, or a random draw
made up front) is held in the process's heartbeat record: a whole round of
claims is one record, and the finished combination's trial is created
whole, so a combination costs the study one record instead of three (on a
10,000-combination grid of tiny models the per-trial records were most of
the main process's work). A combination that needs a trial while it trains
(a sampler's ask, a pruner's reports) is held by a RUNNING trial that names
the process, as Optuna does it.

Why a lock rather than trusting trial numbers: on a database, a trial
created by one process can become visible to another after a trial that was
created later, so "lowest number wins" could let two processes both win.
Under the lock, checking what is free and claiming it is one step.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from settings import ConfigError

# Tests give each process its own "machine" to exercise the heartbeat path.
HOST = os.environ.get("SWEEP_HOST_ID") or socket.gethostname()
STARTED = time.time()


# ------------------------------------------------------------------ storage
@dataclass
class Storage:
    """An Optuna storage and the lock that serializes claims on it."""
    optuna: object
    url: str | None                 # None: the run folder's journal file
    journal: Path | None = None
    engine: object = None

    @property
    def spec(self) -> dict:
        """What a worker process needs to open the same storage (for pruning reports)."""
        return {"url": self.url, "journal": str(self.journal) if self.journal else None}

    @contextlib.contextmanager
    def lock(self):
        if self.journal is not None:
            with _flocked(str(self.journal) + ".claims"):
                yield
            return
        with self._database_lock():
            yield

    @contextlib.contextmanager
    def _database_lock(self):
        from sqlalchemy import text
        dialect = self.engine.dialect.name
        key = int.from_bytes(hashlib.blake2b(b"sweep-claims", digest_size=7).digest(), "big")
        with self.engine.connect() as conn:
            # The lock belongs to this connection: if the process dies, the
            # server drops the connection and the lock with it.
            if dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            elif dialect in ("mysql", "mariadb"):
                conn.execute(text("SELECT GET_LOCK('sweep-claims', -1)"))
                try:
                    yield
                finally:
                    conn.execute(text("SELECT RELEASE_LOCK('sweep-claims')"))
            else:  # sqlite: a local file, so a lock file beside it serves
                with _flocked(str(self.engine.url.database) + ".claims"):
                    yield


@contextlib.contextmanager
def _flocked(path: str):
    """An exclusive lock on `path` that the kernel releases if this process dies holding it."""
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


SYNC_SECONDS = 1.0  # how often appended journal records are forced to disk


def journal_storage(path: str):
    """Optuna's journal file storage, appending under an flock, forced to disk once a second.

    Optuna's own file locks (a symlink or a created file) outlive a process
    killed while holding them, and the next run then waits a minute before
    breaking the lock; an flock dies with its process. Optuna also fsyncs
    every record, which cost ~1 ms each here (at 4 records per combination,
    as it was then: a third of the sweep on a grid of tiny models). A killed
    process loses nothing by syncing less (its records are in the page
    cache); a power cut may lose the last second of records, whose
    combinations are then trained again (and a torn last line is repaired on
    the next start). The files stay open: Optuna opens the journal for every
    read and write and its lock file for every write, which was a third of
    the cost of a record on a big grid.
    """
    import json

    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal._file import BaseJournalFileLock

    class FlockLock(BaseJournalFileLock):
        def __init__(self) -> None:
            self._file = open(path + ".flock", "a+")

        def acquire(self) -> bool:
            fcntl.flock(self._file, fcntl.LOCK_EX)
            return True

        def release(self) -> None:
            fcntl.flock(self._file, fcntl.LOCK_UN)

    class Backend(JournalFileBackend):
        last_sync = 0.0

        def __init__(self) -> None:
            super().__init__(path, lock_obj=FlockLock())
            self._log_number_offset = None  # Optuna's offset of every record: memory that grows with the run
            self._append = open(path, "ab")
            self._read = open(path, "rb")
            self._next = (0, 0)  # (number, byte offset) of the first record not yet read

        def append_logs(self, logs: list[dict]) -> None:
            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            self._lock.acquire()
            try:
                self._append.write(text.encode("utf-8"))
                self._append.flush()
                if time.monotonic() - Backend.last_sync >= SYNC_SECONDS:
                    os.fsync(self._append.fileno())
                    Backend.last_sync = time.monotonic()
            finally:
                self._lock.release()

        def read_logs(self, log_number_from: int):
            """The complete records from number `log_number_from` on (Optuna reads forward only)."""
            number, offset = self._next
            if log_number_from < number:  # not how Optuna reads; start over rather than guess
                number, offset = 0, 0
            end = os.fstat(self._read.fileno()).st_size  # another process may be appending right now
            self._read.seek(offset)
            while offset < end:
                line = self._read.readline(end - offset)
                if not line.endswith(b"\n"):
                    break  # a record still being written: read it next time
                offset += len(line)
                number += 1
                self._next = (number, offset)
                if number > log_number_from:
                    yield json.loads(line)

    return JournalStorage(Backend())


def open_storage(url: str | None, run_dir: Path) -> Storage:
    """The run folder's journal file, or the database at `url` (e.g. postgresql://user:pw@host/db)."""
    if url is None:
        path = run_dir / "study.journal"
        repair_torn_journal(path)
        return Storage(journal_storage(str(path)), None, journal=path)
    try:
        rdb = create_rdb(url)
    except Exception as err:  # bad URL, missing driver, server down, wrong password
        raise ConfigError(
            f"Could not open the study storage --storage {redact(url)}: {type(err).__name__}: "
            f"{str(err).splitlines()[0]}. Give a database URL such as "
            f"postgresql://user:password@host:5432/database (the database must exist and the server must "
            f"accept connections from this machine), or leave --storage out to use the run folder's "
            f"journal file.") from None
    if rdb.engine.dialect.name not in ("postgresql", "mysql", "mariadb", "sqlite"):
        raise ConfigError(f"--storage {redact(url)}: {rdb.engine.dialect.name} is not supported for shared "
                          f"sweeps; use PostgreSQL, MySQL or SQLite.")
    return Storage(rdb, url, engine=rdb.engine)


def create_rdb(url: str, attempts: int = 5):
    """Optuna's RDBStorage; retried when several processes create its tables at the same moment.

    Machines started together all find an empty database and create the
    tables at once; all but one then fail (PostgreSQL on its catalog
    constraints, SQLite and MySQL with "table ... already exists"). A moment
    later the tables exist and opening succeeds. Processes sharing a SQLite
    file are on one machine, so they also take turns under a lock file.
    """
    from optuna.storages import RDBStorage
    from sqlalchemy.engine import make_url
    url_parts = make_url(url)
    sqlite_file = url_parts.database if url_parts.get_backend_name() == "sqlite" else None
    if not sqlite_file or sqlite_file == ":memory:" or not os.path.isdir(os.path.dirname(os.path.abspath(sqlite_file))):
        sqlite_file = None  # nothing to share (or nowhere to open it: sqlite's own error says so)
    for attempt in range(attempts):
        try:
            with _flocked(sqlite_file + ".create") if sqlite_file else contextlib.nullcontext():
                return RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except Exception as err:
            if attempt == attempts - 1 or not _lost_table_creation_race(err):
                raise
            time.sleep(0.5 + attempt)


def _lost_table_creation_race(err: Exception) -> bool:
    """Whether `err` is another process having created Optuna's tables first."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
    if isinstance(err, (IntegrityError, ProgrammingError)):
        return True
    return isinstance(err, OperationalError) and "already exists" in str(err)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<the given URL>"


def repair_torn_journal(path: Path) -> None:
    """Drop a last record cut short by a kill or power loss.

    Optuna reads past a torn last line, but appends the next record straight
    after it, which makes the journal unreadable from then on. The torn
    record was a combination that never finished recording; it is retrained.
    """
    if not path.exists():
        return
    with _flocked(str(path) + ".flock"), open(path, "rb+") as f:  # another process may be appending now
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
            print(f"note: {path} ended in a record cut short (the previous run was killed while "
                  f"writing it); dropped it, the combination it held is trained again.", file=sys.stderr)


def open_study(storage: Storage, name: str, fingerprint: dict, sampler=None, pruner=None, create: bool = True):
    """The study `name`; refuses one that holds another config's or data's results."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if create:
        study = optuna.create_study(study_name=name, storage=storage.optuna, direction="minimize",
                                    load_if_exists=True, sampler=sampler, pruner=pruner)
    else:
        try:
            study = optuna.load_study(study_name=name, storage=storage.optuna, sampler=sampler, pruner=pruner)
        except KeyError:
            names = [s.study_name for s in optuna.get_all_study_summaries(storage.optuna)]
            raise ConfigError(f"There is no study named {name!r} in that storage. Studies there: "
                              f"{', '.join(map(repr, names)) or 'none'}.") from None
    previous = study.user_attrs.get("fingerprint")
    if previous is None and fingerprint is not None:
        study.set_user_attr("fingerprint", fingerprint)
    elif fingerprint is not None and previous != fingerprint:
        differs = ", ".join(k for k in fingerprint if previous.get(k) != fingerprint[k])
        where = "The results folder's study" if storage.url is None else f"The study {name!r} in {redact(storage.url)}"
        raise ConfigError(
            f"{where} holds a sweep with a different {differs} than this one, and mixing them would corrupt "
            f"the ranking. Run under another name with --name NEW_NAME (or --study NEW_NAME with --storage), "
            f"or move the old results away to start over.")
    return study


# ------------------------------------------------------------------- claims
@dataclass
class Claim:
    trial_id: int | None            # the RUNNING trial holding it; None: held in the heartbeat record
    combination: dict
    cid: str
    since: float = field(default_factory=time.time)


@dataclass
class Status:
    """What the study holds, per combination id."""
    records: dict = field(default_factory=dict)   # cid -> finished trial (COMPLETE or PRUNED)
    failed: dict = field(default_factory=dict)    # cid -> FAIL trial with an error (failed in this run)
    claimed: dict = field(default_factory=dict)   # cid -> RUNNING trial of a live process (this one included)
    claimants: int = 1                            # live processes, this one included

    def taken(self, cid: str) -> bool:
        return cid in self.records or cid in self.failed or cid in self.claimed

    @property
    def used(self) -> int:
        return len(set(self.records) | set(self.failed) | set(self.claimed))


class Ledger:
    """This process's view of who does what in a study: claims, heartbeats, stale takeovers, results."""

    def __init__(self, storage: Storage, study, heartbeat_timeout: float, beat: bool = True) -> None:
        self.storage, self.study = storage, study
        self.study_id = study._study_id
        self.me = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.timeout = heartbeat_timeout
        self._last_beat = 0.0
        self._seen: dict[str, tuple] = {}   # claimant -> (last heartbeat value, when this process first saw it)
        self.taken_over: list[str] = []     # combinations taken from processes that went silent
        # what refresh() has classified for good: finished trials do not change
        self._records: dict = {}
        self._failed: dict = {}
        self._open: list[int] = []          # trials (by index) that were still running
        self._seen_trials = 0
        self.holds: set[str] = set()        # combinations claimed in the heartbeat record, not yet recorded
        self.lost: set[str] = set()         # held ones that others took over while this process was silent
        self._template = None               # combination, cid -> what its trial holds (claim_planned's)
        self._cursor = (None, 0)            # (candidates, index of the first not finished for good)
        if beat:  # a reader (evaluate.py) does not count as a process working on the study
            self.beat(force=True)

    # -- heartbeats
    def beat(self, force: bool = False) -> None:
        """Tell the other processes this one is alive (every quarter of the timeout), and what it holds."""
        now = time.time()
        if force or now - self._last_beat >= max(0.5, self.timeout / 4):
            if self.holds and now - self._last_beat >= 0.9 * self.timeout:
                self._check_declared_stopped()
            self.storage.optuna.set_study_system_attr(
                self.study_id, f"claimant:{self.me}",
                {"host": HOST, "pid": os.getpid(), "beat": now, "holds": sorted(self.holds)})
            self._last_beat = now

    def _check_declared_stopped(self) -> None:
        """After a silence as long as the timeout, see whether another process took this one's claims.

        Others wait a whole timeout of silence before they declare a process
        stopped, so a process that beat more recently cannot have been; the
        check costs a read of the study only after such a silence (a
        suspended machine, a stalled disk or network).
        """
        record = self.storage.optuna.get_study_system_attrs(self.study_id).get(f"claimant:{self.me}", {})
        if record.get("stale"):
            self.lost |= self.holds
            self.holds = set()

    def _alive(self, claimant: str | None, beats: dict, now: float) -> bool:
        if claimant == self.me:
            return True
        record = beats.get(f"claimant:{claimant}")
        if record is not None and record.get("left"):
            return False
        if record is not None and record["host"] == HOST and not _pid_alive(record["pid"]):
            return False  # same machine and its process is gone: no need to wait for the timeout
        beat = None if record is None else record["beat"]
        last, since = self._seen.get(claimant, (object(), now))
        if beat != last:  # the beat moved (or first sight): alive, and start timing from here
            self._seen[claimant] = (beat, now)
            return True
        return now - since < self.timeout

    # -- reading the study
    def refresh(self, take_over: bool = False):
        """Classify every combination; with take_over, fail the trials of processes that went silent.

        Finished trials never change, so each is classified once: a round
        looks only at the trials that are new or were still running.
        """
        from optuna.trial import TrialState
        now = time.time()
        beats = self.storage.optuna.get_study_system_attrs(self.study_id)
        status = Status(records=self._records, failed=self._failed)
        live = {self.me}
        trials = self.storage.optuna.get_all_trials(self.study_id, deepcopy=False)
        if len(trials) < self._seen_trials:  # not the study this ledger read before: start over
            self._records, self._failed, self._open, self._seen_trials = {}, {}, [], 0
            status = Status(records=self._records, failed=self._failed)
        fresh = self._open + list(range(self._seen_trials, len(trials)))
        self._open, self._seen_trials = [], len(trials)
        for index in fresh:
            trial = trials[index]
            cid = trial.user_attrs.get("combination")
            if cid is None:
                if not trial.state.is_finished():
                    self._open.append(index)  # its combination may not be set yet (an ask in progress)
                continue
            if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
                self._records.setdefault(cid, trial)
            elif trial.state == TrialState.FAIL:
                # an error recorded during this run; errors from before a restart get one more try
                if "error" in trial.user_attrs and trial.datetime_complete is not None and \
                        trial.datetime_complete.timestamp() >= STARTED - 1:
                    self._failed.setdefault(cid, trial)
            elif trial.state == TrialState.RUNNING:
                self._open.append(index)
                claimant = trial.system_attrs.get("claimant")
                if self._alive(claimant, beats, now):
                    status.claimed[cid] = trial
                    live.add(claimant)
                elif take_over:
                    self._fail_stale(trial, claimant)
            else:
                self._open.append(index)  # WAITING: not finished, look again next time
        for key, record in beats.items():
            if not key.startswith("claimant:") or key == f"claimant:{self.me}":
                continue
            claimant = key[len("claimant:"):]
            if self._alive(claimant, beats, now):
                live.add(claimant)
                status.claimed.update(dict.fromkeys(record.get("holds", ())))
            elif take_over and record.get("holds"):
                self._declare_stopped(claimant, record, status)
        status.claimed.update(dict.fromkeys(self.holds))
        status.claimants = len(live)
        # a combination recorded elsewhere is no longer "claimed" (a late duplicate record is ignored)
        for cid in list(status.claimed):
            if cid in status.records:
                del status.claimed[cid]
        return status, trials

    def _fail_stale(self, trial, claimant: str | None) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState
        try:
            reason = f"{claimant} stopped (its process is gone, or no heartbeat for {self.timeout:g} s)"
            self.storage.optuna.set_trial_system_attr(trial._trial_id, "stale", reason)
            self.storage.optuna.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            return  # it finished after all (or another process failed it first)
        self.taken_over.append(trial.user_attrs["combination"])

    def _declare_stopped(self, claimant: str, record: dict, status: Status) -> None:
        """Free what a silent process held in its heartbeat record (under the claims lock)."""
        reason = f"stopped (its process is gone, or no heartbeat for {self.timeout:g} s)"
        self.storage.optuna.set_study_system_attr(
            self.study_id, f"claimant:{claimant}", {**record, "holds": [], "left": True, "stale": reason})
        self.taken_over += [cid for cid in record["holds"] if cid not in status.records and cid not in status.failed]

    # -- claiming
    def claim_planned(self, candidates: list[tuple[str, dict]], limit: int, trial_template,
                      running_trials: bool = False) -> tuple[list[Claim], Status]:
        """Claim up to `limit` of `candidates` (cid, combination) that nobody has done or holds, in order.

        Held in the heartbeat record (one record for the round), or with
        `running_trials` as a RUNNING trial each (for a pruner's reports).
        """
        with self.storage.lock():
            status, _ = self.refresh(take_over=True)
            # leave the others a share when several processes work on this study
            open_count = len(candidates) - len(status.records) - len(status.failed) - len(status.claimed)
            share = max(1, -(-open_count // status.claimants))
            picked = self._first_free(candidates, status, min(limit, share))
            self._template = trial_template
            if running_trials:
                claims = [Claim(self._create_trial(self._running_trial(combination, cid)), combination, cid)
                          for cid, combination in picked]
            else:
                claims = [Claim(None, combination, cid) for cid, combination in picked]
                if claims:
                    self.holds.update(c.cid for c in claims)
                    self.beat(force=True)
            status.claimed.update(dict.fromkeys(c.cid for c in claims))
        return claims, status

    def _first_free(self, candidates: list[tuple[str, dict]], status: Status, count: int) -> list[tuple[str, dict]]:
        """The first `count` candidates nobody has done or holds.

        Scans on from the first candidate not yet finished for good, rather
        than from the start each round: a 10,000-combination grid is claimed
        in ~120 rounds.
        """
        first = self._cursor[1] if self._cursor[0] is candidates else 0
        while first < len(candidates) and (candidates[first][0] in status.records or
                                           candidates[first][0] in status.failed):
            first += 1
        self._cursor = (candidates, first)
        picked = []
        for cid, combination in candidates[first:]:
            if len(picked) == count:
                break
            if not status.taken(cid):
                picked.append((cid, combination))
        return picked

    def _running_trial(self, combination: dict, cid: str):
        from optuna.trial import TrialState
        return self._frozen_trial(TrialState.RUNNING, None, combination, cid, time.time(), None, {})

    def _frozen_trial(self, state, value, combination: dict, cid: str, since: float, until: float | None,
                      user_attrs: dict):
        """A trial as Optuna stores it, built directly: optuna.trial.create_trial checks every
        parameter against its distribution again, which cost more than writing the record."""
        import datetime

        from optuna.trial import FrozenTrial
        template = self._template(combination, cid)
        return FrozenTrial(number=-1, state=state, value=value,
                           datetime_start=datetime.datetime.fromtimestamp(since),
                           datetime_complete=None if until is None else datetime.datetime.fromtimestamp(until),
                           params=template["params"], distributions=template["distributions"],
                           user_attrs={**template["user_attrs"], **user_attrs},
                           system_attrs={"claimant": self.me}, intermediate_values={}, trial_id=-1)

    def _create_trial(self, trial) -> int:
        return self.storage.optuna.create_new_trial(self.study_id, template_trial=trial)

    def claim_asked(self, count: int, budget: int, suggest, trial_template,
                    max_duplicates: int = 50) -> tuple[list[Claim], Status, bool]:
        """Ask the sampler for up to `count` new combinations within `budget` in all.

        Returns (claims, status, exhausted): exhausted when the sampler keeps
        proposing combinations that were already tried (a small space).
        """
        from optuna.trial import TrialState
        claims, duplicates = [], 0
        with self.storage.lock():
            status, _ = self.refresh(take_over=True)
            while len(claims) < count and status.used < budget:
                trial = self.study.ask()
                self.storage.optuna.set_trial_system_attr(trial._trial_id, "claimant", self.me)
                combination, cid = suggest(trial)
                self.storage.optuna.set_trial_user_attr(trial._trial_id, "combination", cid)
                if status.taken(cid):
                    # the same point again: recorded as a failed trial (not trained twice), and ask again
                    self.storage.optuna.set_trial_system_attr(trial._trial_id, "duplicate_of", cid)
                    self.storage.optuna.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                    duplicates += 1
                    if duplicates >= max_duplicates:
                        return claims, status, True
                    continue
                for key, value in trial_template(combination, cid)["user_attrs"].items():
                    if key != "combination":
                        self.storage.optuna.set_trial_user_attr(trial._trial_id, key, value)
                status.claimed[cid] = trial
                claims.append(Claim(trial._trial_id, combination, cid))
        return claims, status, False

    # -- results
    def finish(self, claim: Claim, state, value: float | None, user_attrs: dict) -> bool:
        """Record a finished claim. False if this process had lost it (another took it over meanwhile).

        A claim held in the heartbeat record becomes one trial, created
        whole. If another process declared this one stopped meanwhile, the
        first beat after the silence finds out, and the result is dropped
        with a note. (Where the declaration lands just after that beat, both
        results are recorded: the same seeds, so the same result within float
        rounding, and the first record is the one read.)
        """
        from optuna.exceptions import UpdateFinishedTrialError
        storage = self.storage.optuna
        if claim.trial_id is None:
            self.beat()  # after a long silence, this finds out whether the claim was taken over
            if claim.cid in self.lost:
                self._note_lost(claim.cid)
                return False
            self._create_trial(self._frozen_trial(state, value, claim.combination, claim.cid, claim.since,
                                                  time.time(), user_attrs))
            self.holds.discard(claim.cid)
            return True
        try:
            for key, val in user_attrs.items():
                storage.set_trial_user_attr(claim.trial_id, key, val)
            storage.set_trial_state_values(claim.trial_id, state, None if value is None else [value])
        except UpdateFinishedTrialError:
            self._note_lost(claim.cid)
            return False
        return True

    def _note_lost(self, cid: str) -> None:
        print(f"note: combination {cid} was taken over by another process while this one trained "
              f"it (this process's heartbeat stopped for more than {self.timeout:g} s); its result "
              f"from here is dropped, the other one counts.", file=sys.stderr)

    def release(self, claims: list[Claim]) -> None:
        """Give back claims this process will not train (Ctrl-C): others may take them at once."""
        from optuna.trial import TrialState
        held = [c.cid for c in claims if c.trial_id is None]
        if held:
            self.holds.difference_update(held)
            with contextlib.suppress(Exception):  # best effort on the way out, as below
                self.beat(force=True)
        for claim in (c for c in claims if c.trial_id is not None):
            try:
                self.storage.optuna.set_trial_system_attr(claim.trial_id, "released", True)
                self.storage.optuna.set_trial_state_values(claim.trial_id, TrialState.FAIL)
            except Exception:  # noqa: BLE001 (best effort on the way out; the heartbeat timeout covers it)
                pass

    def leave(self) -> None:
        """Stop counting as a live claimant."""
        try:
            self.storage.optuna.set_study_system_attr(
                self.study_id, f"claimant:{self.me}", {"host": HOST, "pid": os.getpid(), "beat": 0, "left": True})
        except Exception:  # noqa: BLE001
            pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child that nobody has reaped yet still answers kill(0): it is a zombie
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
