"""Riding out a storage outage: retry a whole step with backoff for a bounded time, then give up clearly.

A database restart, a network blip, a SQLite file locked by another
process or a journal on a briefly unreachable disk should cost an overnight
sweep a pause, not the night. The steps of the main loop (a heartbeat, a
refresh, a claim round, recording a result, the final reads) each run under
`Patience.call`: on a transient storage error the whole step is tried again,
from its start, after 0.5, 1, 2, ... (at most 10) seconds. A claim round is
therefore always redone under a freshly taken lock, never resumed halfway
(a reconnect drops the database's advisory lock). The workers keep training
what they were given meanwhile; their results wait in memory. After
STORAGE_RETRY_SECONDS without success, StorageUnavailable ends the run.
"""
from __future__ import annotations

import functools
import sys
import time

from optuna.exceptions import StorageInternalError
from sqlalchemy.exc import InterfaceError, OperationalError

# what a storage that is down, restarting, locked or unreachable raises; Optuna wraps a failed
# commit in StorageInternalError ("An exception is raised during the commit...")
TRANSIENT = (OperationalError, InterfaceError, StorageInternalError, OSError)
LONGEST_WAIT = 10.0


class StorageUnavailable(Exception):
    """The storage stayed unreachable for longer than the run is willing to wait."""

    def __init__(self, seconds: float, error: BaseException) -> None:
        self.seconds, self.error = seconds, error
        super().__init__(f"unreachable for {seconds:.0f} s: {describe(error)}")


def describe(error: BaseException) -> str:
    """One line for an error, without a URL's password (drivers quote connection strings)."""
    cause = error.__cause__ or error.__context__ or error
    line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    return f"{type(cause).__name__}: {line}"


class Patience:
    """How long a step may keep failing before the run gives up, and what to do once the storage is back."""

    def __init__(self, limit_seconds: float, on_recovery=None) -> None:
        self.limit = limit_seconds
        self.on_recovery = on_recovery  # called once the storage answers again after an outage
        self._depth = 0                 # > 0 inside a step: errors go up to the step, which retries whole

    def call(self, step):
        """Run `step()`; on a transient storage error, run it again from the start until the limit."""
        if self._depth:
            return step()
        first_failure, wait = None, 0.5
        while True:
            self._depth += 1
            try:
                result = step()
            except TRANSIENT as error:
                now = time.monotonic()
                if first_failure is None:
                    first_failure = now
                    print(f"note: the study's storage is not answering ({describe(error)}); retrying for up to "
                          f"{self.limit:g} s (STORAGE_RETRY_SECONDS) while the workers go on training.",
                          file=sys.stderr)
                if now - first_failure >= self.limit:
                    raise StorageUnavailable(now - first_failure, error) from None
                time.sleep(min(wait, max(0.0, first_failure + self.limit - now)))
                wait = min(2 * wait, LONGEST_WAIT)
                continue
            finally:
                self._depth -= 1
            if first_failure is not None:
                print(f"note: the study's storage answers again after {time.monotonic() - first_failure:.0f} s; "
                      f"going on.", file=sys.stderr)
                if self.on_recovery is not None:
                    self.on_recovery()
            return result


def patiently(method):
    """A method of an object with a `patience` (a Patience) that runs as one step under it."""
    @functools.wraps(method)
    def step(self, *args, **kwargs):
        return self.patience.call(lambda: method(self, *args, **kwargs))
    return step
