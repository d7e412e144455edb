"""The worker processes (joblib's loky pool) and the tasks in flight.

The main process never imports torch: it names the worker's module as a
string, and only the workers import it (and torch with it). That saves the
main process ~2 s and ~200 MB it would never use, and keeps it free of
torch's threads, which a process must not hold when it forks.
"""
from __future__ import annotations

import importlib
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool

from joblib.externals.loky import get_reusable_executor
from joblib.externals.loky.process_executor import ShutdownExecutorError

from models import mkl_shim

WORKER = "training.worker"  # imported in the worker processes only (see the module's docstring)
_executor = None           # the pool of this process, once started


def _initialize() -> None:
    importlib.import_module(WORKER).initialize()


def call_worker(function: str, payload):
    """Runs in a worker process: the worker module's `function` on `payload`."""
    return getattr(importlib.import_module(WORKER), function)(payload)


def start_workers(cpu_count: int):
    """joblib's reusable loky pool of `cpu_count` workers, one torch thread each (with the opt-in MKL shim)."""
    global _executor
    _executor = get_reusable_executor(max_workers=cpu_count, initializer=_initialize, timeout=300,
                                      env=mkl_shim.worker_environment())
    return _executor


def stop_workers() -> None:
    """End the workers now (they hold nothing once a sweep is done)."""
    if _executor is not None:
        _executor.shutdown(wait=True, kill_workers=True)


def run_one(function: str, payload):
    """One call in a worker process, waited for (evaluate.py --predict); the worker is ended after it.

    Ending it here, not at the interpreter's exit, lets loky release its semaphores in order: left to
    the exit, its resource tracker sometimes found one gone and printed a warning under load.
    """
    try:
        return start_workers(1).submit(call_worker, function, payload).result()
    finally:
        stop_workers()


class Pool:
    """The tasks in flight on the workers; brings the pool back if a worker dies.

    The workers are started at the first task, so that the main process has
    done its own setup first.
    """

    def __init__(self, cpu_count: int, payload, folds: int = 1) -> None:
        self.cpu_count, self.payload, self.folds = cpu_count, payload, folds
        self.executor = None
        self.pending: dict = {}

    def submit(self, task: list[dict]) -> None:
        if self.executor is None:
            self.executor = start_workers(self.cpu_count)
        try:
            future = self.executor.submit(call_worker, "run_task", self.payload(task))
        except (BrokenProcessPool, ShutdownExecutorError, RuntimeError):
            # a dead worker breaks loky's pool; the reusable executor starts a fresh one
            self.executor = start_workers(self.cpu_count)
            future = self.executor.submit(call_worker, "run_task", self.payload(task))
        self.pending[future] = task

    def wait_for_some(self, timeout: float) -> list:
        finished, _ = wait(self.pending, timeout=timeout, return_when=FIRST_COMPLETED)
        return [(future, self.pending.pop(future)) for future in finished]

    def stop(self) -> None:
        """Drop what is in flight and end the workers at once (Ctrl-C)."""
        for future in self.pending:
            future.cancel()
        if self.executor is not None:
            self.executor.shutdown(wait=False, kill_workers=True)
