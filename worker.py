"""What runs inside each worker process. Kept free of heavy imports at module level.

The main process pickles `run_task` by reference, so importing this module
must stay cheap there: torch is imported only inside the workers.
"""
from __future__ import annotations

import os


def initialize() -> None:
    """Runs once when a worker process starts: one torch thread, and torch loaded early."""
    # Several processes that each spin up torch's default thread pool on the
    # same cores run 5-15x slower (PERF_NOTES.md): one thread per worker.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Ctrl-C in a terminal reaches every process of the group; only the main
    # process should act on it (it stops the sweep and then ends the workers).
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch
    torch.set_num_threads(1)
    # Adam's second moments decay into subnormal floats, which x86 handles
    # ~100x slower; flushing them to zero changes no result we measure.
    torch.set_flush_denormal(True)
    import training  # noqa: F401  (load models and optimizers before the first task arrives)


def start_workers(cpu_count: int):
    """The reusable loky pool (joblib's), started at once so workers import torch while the main process plans."""
    from joblib.externals.loky import get_reusable_executor
    executor = get_reusable_executor(
        max_workers=cpu_count, initializer=initialize, timeout=300,
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    executor.submit(ready)
    return executor


def run_task(task: dict) -> list[dict]:
    from training import train_task
    return train_task(task)


def ready() -> int:
    """A no-op task: submitting it starts the workers while the main process does its own setup."""
    return os.getpid()
