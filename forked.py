"""Run independent jobs in this process and in a forked copy of it, side by side.

For the end of a sweep: drawing the report's figures is pure Python
(~0.1-0.3 s each), so threads would not run them in parallel, and a fresh
process would spend longer importing matplotlib and pandas than drawing.
A forked copy of this process has them loaded and the data in memory, and at
the end of a sweep the other cores are idle.

Forking is only safe when no other thread could hold a lock the copy then
needs, so it is used only when this is the last thread left (after the
workers' pool was shut down); otherwise, and on systems without fork, the
jobs run here one after another. A copy that fails or hangs costs only time:
its jobs are then run here. Each job must write its own files (atomically)
and print nothing.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable

CHILD_TIMEOUT_S = 120.0


def run_split(jobs: list[Callable[[], None]]) -> None:
    """Run every job once: the second half in a forked copy when that is safe, the rest here."""
    split = len(jobs) // 2
    start_split(jobs[:split], jobs[split:]).finish()


def start_split(here: list[Callable[[], None]], there: list[Callable[[], None]]) -> "Split":
    """Start `there` in a forked copy when that is safe; `here` (and `there`, if no copy) run at finish().

    Between the two calls this process is free for other work while the copy
    runs its jobs, e.g. the sweep's permutation test while the copy draws.
    """
    child = _start_copy(there) if here and there and _fork_is_safe() else None
    return Split(here, there, child)


class Split:
    def __init__(self, here, there, child) -> None:
        self.here, self.there, self.child = here, there, child

    def finish(self) -> None:
        """Run this process's jobs, then wait for the copy (and run its jobs here if it failed)."""
        for job in self.here:
            job()
        if self.child is None:
            for job in self.there:
                job()
            return
        self.child.join(CHILD_TIMEOUT_S)
        if self.child.exitcode != 0:  # failed, killed or still running: do its share here
            self.child.kill()
            self.child.join()
            for job in self.there:
                job()


def _fork_is_safe(grace_s: float = 0.2) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    deadline = time.monotonic() + grace_s  # threads of a pool just shut down take a moment to end
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    return threading.active_count() == 1


def _start_copy(jobs: list[Callable[[], None]]):
    import multiprocessing
    # what sits in this process's output buffers would otherwise be written twice
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        process = multiprocessing.get_context("fork").Process(target=_run_all, args=(jobs,), daemon=True)
        process.start()
    except OSError:  # no memory or process slots for a copy: run everything here
        return None
    return process


def _run_all(jobs: list[Callable[[], None]]) -> None:
    for job in jobs:
        job()
