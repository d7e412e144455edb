"""Each training's packed predictions: on disk beside the journal, read memory-mapped.

The permutation test needs every finished training's predictions again
when a resumed or shared study is scored, when a grown combination pools
its earlier reruns, and when evaluate.py ranks a study. Kept in the study's
records they were most of each record's size, and Optuna holds every record
in RAM, so the main process's memory grew with the sweep. Here each process
appends to a file of its own in the run folder's predictions/ (one writer
per file, so no lock), and a rerun's row in the study holds only where its
predictions are: [file, offset, length].

A database study (--storage) keeps them in its records, as base64 text:
machines that share it cannot read this machine's files. Older journals
hold base64 text too; `read` takes every form.
"""
from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

import numpy as np

from inputs.errors import DataError


class Predictions:
    """Where a study's predictions are kept: `folder` (beside its journal file), or None (in its records)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._file = None       # this process's file, opened at its first write
        self._name = ""
        self._end = 0
        self._maps: dict[str, np.memmap] = {}

    def put(self, packed: list[bytes]) -> list:
        """Keep a task's packed predictions; returns what each rerun's row holds in their place.

        They reach the disk before the study's record that points to them
        is written, so a record never points past the end of its file.
        """
        if self.folder is None:
            return [base64.b64encode(p).decode() for p in packed]
        if not packed:
            return []
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._name = uuid.uuid4().hex[:12]
            self._file = open(self.folder / f"{self._name}.bits", "xb")  # noqa: SIM115 (kept open for the run)
        refs = []
        for p in packed:
            refs.append([self._name, self._end, len(p)])
            self._end += len(p)
        self._file.write(b"".join(packed))
        self._file.flush()
        os.fsync(self._file.fileno())
        return refs

    def read(self, stored) -> bytes:
        """A rerun's packed predictions from what its row holds: [file, offset, length], base64 text, or bytes."""
        if isinstance(stored, bytes):
            return stored
        if isinstance(stored, str):
            return base64.b64decode(stored)
        name, offset, length = stored
        mapped = self._maps.get(name)
        if mapped is None or offset + length > len(mapped):  # not mapped yet, or grown since (another process's)
            mapped = self._maps[name] = self._map(name)
        if offset + length > len(mapped):
            raise self._missing(name, "is shorter than the study says")
        return mapped[offset:offset + length].tobytes()

    def _path(self, name: str) -> Path:
        # a database study's records hold no places on disk; if one did, it would be looked for here
        return (self.folder or Path("predictions")) / f"{name}.bits"

    def _map(self, name: str) -> np.memmap:
        try:
            return np.memmap(self._path(name), dtype=np.uint8, mode="r")
        except (FileNotFoundError, ValueError):  # ValueError: an empty file cannot be mapped
            raise self._missing(name, "is missing or empty") from None

    def _missing(self, name: str, what: str) -> DataError:
        path = self._path(name)
        return DataError(f"The study's predictions file {path} {what}. A journal study keeps each training's "
                         f"predictions in the predictions/ folder beside its study.journal: copy or move the two "
                         f"together. To start over instead, remove the run folder (or give search.py another --name).",
                         path=str(path))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._maps.clear()
