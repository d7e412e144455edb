"""What runs inside each worker process. Kept free of heavy imports at module level.

The main process pickles `run_task` by reference, so importing this module
must stay cheap there: torch is imported only inside the workers.
"""
from __future__ import annotations

import os


_executor = None


def initialize() -> None:
    """Runs once when a worker process starts: one torch thread, and torch loaded early."""
    # Ctrl-C in a terminal reaches every process of the group; only the main
    # process should act on it (it stops the sweep and then ends the workers).
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch
    # Several processes that each spin up torch's default thread pool on the
    # same cores run 5-15x slower (PERF_NOTES.md): one thread per worker.
    torch.set_num_threads(1)
    # Adam's second moments decay into subnormal floats, which x86 handles
    # ~100x slower; flushing them to zero changes no result we measure.
    torch.set_flush_denormal(True)
    import training  # noqa: F401  (load models and optimizers before the first task arrives)
    # loky runs a full garbage collection after a task (at most once a second) when
    # psutil is not installed. With torch loaded that walks ~170,000 objects, ~0.1 s
    # in which the worker trains nothing. They live as long as the process, so
    # moving them out of the collector's sight makes that collection ~free.
    import gc
    gc.freeze()


def warm_up() -> None:
    """Start the process the workers are forked from; it imports torch once, in the background.

    Call it first thing: the import (~1.7 s of CPU) then overlaps with the main
    process loading the data and opening the study, and every worker, including
    one restarted after a crash, is forked with torch already loaded instead of
    importing it again (a spawned worker each would: 2 workers, 2 imports).
    Forking is safe here because that server process never runs a torch
    operation, so it holds no thread pool a child could inherit half-locked.
    """
    from multiprocessing import forkserver

    import mkl_shim
    # The server and the workers forked from it read these when torch loads;
    # the main process itself never runs torch.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    mkl_shim.preload_into(os.environ)  # MKL's AVX-512 kernels on AMD CPUs
    forkserver.set_forkserver_preload(["torch"])
    forkserver.ensure_running()


def start_workers(cpu_count: int):
    """joblib's reusable loky pool, its workers forked from the warm_up() server (started here if need be)."""
    global _executor
    import multiprocessing
    from joblib.externals.loky import get_reusable_executor
    warm_up()
    _executor = get_reusable_executor(max_workers=cpu_count, initializer=initialize, timeout=300,
                                      context=multiprocessing.get_context("forkserver"))
    return _executor


def stop_workers(wait: bool = False) -> None:
    """End the workers now: they hold nothing once a sweep is done, and letting them wind down costs most of a second.

    wait: also wait for the pool's management thread in this process to end.
    """
    if _executor is not None:
        _executor.shutdown(wait=wait, kill_workers=True)


def run_task(task: dict) -> list[dict]:
    """Train a task; its first result carries any note this worker has for the user (sweep.py prints each once)."""
    from models import native
    from training import train_task
    results = train_task(task)
    if native.build_note and results:
        results[0]["note"] = native.build_note
    return results
