"""Where a sweep's study lives, and the lock that serializes claims on it.

The default is the run folder's journal file (study.journal); --storage
names a database instead (PostgreSQL, MySQL, SQLite) that several machines
share. open_study opens the study and refuses one that holds another
config's or data's results.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import BaseJournalBackend
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from inputs.errors import ConfigError
from records.predictions import Predictions


@dataclass
class Storage:
    """An Optuna storage and the lock that serializes claims on it."""
    optuna: object
    url: str | None                 # None: the run folder's journal file
    journal: Path | None = None
    engine: object = None
    # each training's predictions: beside the journal, or in a database's records (records/predictions.py)
    predictions: Predictions = field(default_factory=lambda: Predictions(None))

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


class JournalFile(BaseJournalBackend):
    """Optuna's journal in a file (Optuna's public backend interface), appended under an flock.

    Optuna's own file backend takes its lock through a symlink or a created
    file, which outlives a process killed while holding it (the next run
    then waits a minute to break it); an flock dies with its process. It
    also fsyncs every record, ~1 ms each here; this one forces records to
    disk once a second: a killed process loses nothing by that (its records
    are in the page cache), a power cut the last second of records, whose
    combinations are then trained again (and a torn last line is repaired
    on the next start). The files stay open between records, and reading
    resumes where the last read stopped.
    """

    last_sync = 0.0  # shared by every journal of the process: one fsync a second in all

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = open(path + ".flock", "a+")
        self._append = open(path, "ab")
        self._read = open(path, "rb")
        self._next = (0, 0)  # (number, byte offset) of the first record not yet read

    def append_logs(self, logs: list[dict]) -> None:
        data = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self._append.write(data.encode("utf-8"))
            self._append.flush()
            if time.monotonic() - JournalFile.last_sync >= SYNC_SECONDS:
                os.fsync(self._append.fileno())
                JournalFile.last_sync = time.monotonic()
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    def read_logs(self, log_number_from: int) -> Iterator[dict]:
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


def journal_storage(path: str) -> JournalStorage:
    """Optuna's journal storage on the file at `path` (see JournalFile)."""
    return JournalStorage(JournalFile(path))


def open_storage(url: str | None, run_dir: Path) -> Storage:
    """The run folder's journal file, or the database at `url` (e.g. postgresql://user:pw@host/db)."""
    if url is None:
        path = run_dir / "study.journal"
        repair_torn_journal(path)
        return Storage(journal_storage(str(path)), None, journal=path, predictions=Predictions(run_dir / "predictions"))
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
    if isinstance(err, (IntegrityError, ProgrammingError)):
        return True
    return isinstance(err, OperationalError) and "already exists" in str(err)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
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


def fingerprint_differences(previous: dict, fingerprint: dict) -> list[str]:
    """Each setting of `fingerprint` that differs from the study's, with its old and new value.

    Keys the study has but `fingerprint` lacks are what an older version
    counted and this one no longer does (the grid, RERUN_COUNT): not a difference.
    """
    out = []
    for key, new in fingerprint.items():
        old = previous.get(key)
        if old == new:
            continue
        if key.endswith("_CSV") and old is not None and new is not None:
            out.append(f"{key} (the file's contents have changed since the study's trainings used it)")
        elif key.endswith("_CSV"):
            continue  # read or not read by SELECTION, which is named itself
        elif key not in previous:
            out.append(f"{key} = {new!r} (not part of the study's sweep)")
        else:
            out.append(f"{key} {old!r} -> {new!r}")
    return out


def open_study(storage: Storage, name: str, fingerprint: dict, sampler=None, pruner=None, create: bool = True):
    """The study `name`; refuses one that holds another config's or data's results."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:  # loaded first: creating an existing study would write a (refused) record to it
        study = optuna.load_study(study_name=name, storage=storage.optuna, sampler=sampler, pruner=pruner)
    except KeyError:
        if not create:
            names = [s.study_name for s in optuna.get_all_study_summaries(storage.optuna)]
            raise ConfigError(f"There is no study named {name!r} in that storage. Studies there: "
                              f"{', '.join(map(repr, names)) or 'none'}.") from None
        # trial values are -log10 p (ranking/significance.py's p-value): higher is better, and
        # optuna-dashboard's plots spread the small p-values that matter instead of piling them at 0
        study = optuna.create_study(study_name=name, storage=storage.optuna, direction="maximize",
                                    load_if_exists=True, sampler=sampler, pruner=pruner)
    previous = study.user_attrs.get("fingerprint")
    if previous is None and fingerprint is not None:
        study.set_user_attr("fingerprint", fingerprint)
    elif fingerprint is not None and (differences := fingerprint_differences(previous, fingerprint)):
        where = "The results folder's study" if storage.url is None else f"The study {name!r} in {redact(storage.url)}"
        why_reruns = (" RERUN_COUNT can grow only under grid or random search without a pruner: a model-based "
                      "sampler and a pruner decide from all of a combination's reruns together."
                      if any(d.startswith("RERUN_COUNT") for d in differences) else "")
        raise ConfigError(
            f"{where} holds trainings that this config would compute differently, so the two cannot be mixed: "
            f"{'; '.join(differences)}. Growing a sweep is fine (more hyperparameter values, a larger "
            f"NUMBER_OF_COMBINATIONS_TO_TRY or RERUN_COUNT train only what is new), but these settings change "
            f"what every training computes.{why_reruns} Set them back, run under another name with --name "
            f"NEW_NAME (or --study NEW_NAME with --storage), or move the old results away to start over.")
    return study


