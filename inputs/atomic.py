"""Writing the run folder's files: never half a file.

Every file is written to a temporary name in the same folder and renamed
into place, so a reader (or a crash) never sees half a file.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

# the process's umask, read once (setting it is the only way to read it): files get the mode
# any new file gets (0644 under the usual umask 022), not mkstemp's private 0600
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write, binary: bool = False) -> None:
    """Call write(file) on a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(fd, 0o666 & ~_UMASK)
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
    for tmp in Path(folder).glob(".*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > age_seconds:
                tmp.unlink()
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            pass


def atomic_write_text(text: str, path: Path) -> None:
    atomic_write(path, lambda f: f.write(text))


def write_csv(table: pd.DataFrame, path: Path) -> None:
    """`table` as a CSV, written straight into the temporary file (not first as text: a big sweep's
    reruns.csv is tens of MB, and the text's memory would stay in the process's peak)."""
    write_csv_parts([table], path)


def write_csv_parts(parts, path: Path) -> None:
    """Tables with the same columns, one after another, as one CSV (one header): a big table a part at a time."""
    def write(f):
        for i, part in enumerate(parts):
            part.to_csv(f, index=False, header=i == 0)
    atomic_write(path, write)


def read_json(path: Path) -> dict:
    """A JSON file the run wrote (run.json, summary.json), or {} when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
