"""What runs inside each worker process: one torch thread, then tasks of fused trainings.

Only worker processes import this module (and with it torch): the main
process names it as a string (sweep/pool.py), so it never loads torch.
"""
from __future__ import annotations

import signal

import torch

from models import mkl_shim, native
from training.latest import score_latest
from training.loop import train_task


def initialize() -> None:
    """Runs once when a worker process starts."""
    # Ctrl-C in a terminal reaches every process of the group; only the main
    # process should act on it (it stops the sweep and then ends the workers).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Several processes that each spin up torch's default thread pool on the
    # same cores run 5-15x slower: one thread per worker.
    torch.set_num_threads(1)
    # Adam's second moments decay into subnormal floats, which x86 handles
    # ~100x slower; flushing them to zero changes no result we measure.
    torch.set_flush_denormal(True)


def run_task(task: dict) -> list[dict]:
    """Train a task. Its first result carries any note this worker has for the user (printed once per run)
    and which accelerators it ran (recorded in summary.json)."""
    results = train_task(task)
    if results:
        results[0]["accelerators"] = {"c_step": native.available(), "mkl_avx512_on_amd": mkl_shim.loaded_here()}
        if native.build_note:
            results[0]["note"] = native.build_note
    return results


def run_latest(task: dict) -> dict:
    """Train (or load) the winner's reruns and score the latest rows: evaluate.py --predict's work."""
    return score_latest(task)

