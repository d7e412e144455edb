"""The run folder's files: atomic CSV writes, and the tables built from training results.

Every file is written to a temporary name in the same folder and renamed
into place, so a reader (or a crash) never sees half a file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from settings import HYPERPARAMETERS

RERUN_COLUMNS = ["combination", "rerun", "seed", *HYPERPARAMETERS, "tp", "fp", "tn", "fn",
                 "precision", "p_value_independent_rows", "status", "epochs", "diverged", "train_loss", "seconds"]
ERROR_COLUMNS = ["combination", *HYPERPARAMETERS, "outcome", "error", "traceback"]


def atomic_write(path: Path, write, binary: bool = False) -> None:
    """Call write(file) on a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_abandoned_temporaries(folder: Path, age_seconds: float = 60.0) -> None:
    """Delete temporary files that a kill left behind before their rename.

    Only old ones: another process sharing the folder (several processes on one
    study) may be writing one right now, and a write takes milliseconds.
    """
    import time
    for tmp in Path(folder).glob(".*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > age_seconds:
                tmp.unlink()
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            pass


def atomic_write_text(text: str, path: Path) -> None:
    atomic_write(path, lambda f: f.write(text))


def write_csv(table: pd.DataFrame, path: Path) -> None:
    atomic_write_text(table.to_csv(index=False), path)


def display_value(value):
    """How a hyperparameter value reads in a CSV: lists as [2, 1, 0.5], 'not used' as empty."""
    if value is None:
        return None
    if isinstance(value, list):
        return json.dumps(value)
    return value


def hyperparameter_columns(combination: dict) -> dict:
    return {name: display_value(combination[name]) for name in HYPERPARAMETERS}


def read_reruns(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"combination": str})
