"""Every finished combination's reruns as the recorder keeps them: packed records, a table when asked.

The recorder keeps every combination's reruns until the sweep ends, and
rewrites reruns.csv and ranking.csv from them. As Python objects (a tuple
and a dozen numbers per rerun, a tuple of hyperparameter columns per
combination) they were most of the main process's memory growth, ~1.4 KB
per combination. Here each rerun is one fixed-size record in a buffer
(~90 bytes), each combination's hyperparameter columns are codes into the
values seen so far, and the table is built from the buffers in a few numpy
calls.
"""
from __future__ import annotations

import math
import struct

import numpy as np
import pandas as pd

from inputs.hyperparameters import HYPERPARAMETERS

# a rerun's record: its combination's position, then reruns.csv's fields (but the hyperparameter columns)
RECORD = np.dtype([("combination", "<i4"), ("rerun", "<i8"), ("seed", "<i8"), ("tp", "<i8"), ("fp", "<i8"),
                   ("tn", "<i8"), ("fn", "<i8"), ("precision", "<f8"), ("p_value_independent_rows", "<f8"),
                   ("status", "i1"), ("epochs", "<i8"), ("diverged", "i1"), ("train_loss", "<f8"),
                   ("seconds", "<f8")])
FIELDS = RECORD.names[1:]
STATUSES = ("completed", "pruned")
MISSING = np.iinfo(np.int64).min  # an integer field an older study's row does not have
_PACK = struct.Struct("<iqqqqqqddbqbdd")  # RECORD's fields, in order, as struct packs them
_CODES = struct.Struct(f"<{len(HYPERPARAMETERS)}i")
assert _PACK.size == RECORD.itemsize


class KeptReruns:
    """Finished combinations' reruns (reruns.csv's rows), in the order they were added."""

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._known: set[str] = set()
        self._records = bytearray()
        self._columns = bytearray()                     # per combination, a code per hyperparameter
        self._values: list[list] = [[] for _ in HYPERPARAMETERS]   # per hyperparameter, the values seen
        self._codes: list[dict] = [{} for _ in HYPERPARAMETERS]    # (type, value) -> its position there

    def __contains__(self, cid: str) -> bool:
        return cid in self._known

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def add(self, cid: str, reruns: list[dict], columns: dict | None = None) -> None:
        """A finished combination's reruns (dicts with reruns.csv's fields) and its hyperparameter
        columns (None: its first rerun's)."""
        position = len(self._ids)
        self._ids.append(cid)
        self._known.add(cid)
        columns = reruns[0] if columns is None else columns
        self._columns += _CODES.pack(*(self._code(i, columns.get(name)) for i, name in enumerate(HYPERPARAMETERS)))
        for row in reruns:
            status = row.get("status")
            self._records += _PACK.pack(
                position, _integer(row.get("rerun")), _integer(row.get("seed")),
                *(_integer(row.get(k)) for k in ("tp", "fp", "tn", "fn")),
                _real(row.get("precision")), _real(row.get("p_value_independent_rows")),
                STATUSES.index(status) if status in STATUSES else -1, _integer(row.get("epochs")),
                -1 if row.get("diverged") is None else int(bool(row["diverged"])),
                _real(row.get("train_loss")), _real(row.get("seconds")))

    def _code(self, i: int, value) -> int:
        # keyed by type too: 1, 1.0 and True are equal in a dict, but not in a CSV
        key = (type(value), value)
        code = self._codes[i].get(key)
        if code is None:
            code = self._codes[i][key] = len(self._values[i])
            self._values[i].append(value)
        return code

    def table(self, hyperparameters: bool = True) -> pd.DataFrame:
        """Every rerun as a row, in the order added: "combination", FIELDS and (unless not
        `hyperparameters`: see `columns`) the hyperparameter columns."""
        return self._frame(self._array(), hyperparameters)

    def sorted_parts(self, rows: int = 20_000):
        """Every rerun with its hyperparameter columns, by combination and rerun, `rows` at a time:
        reruns.csv is written a part at a time, so that its whole table is never in memory at once."""
        records = self._array()
        ids = np.array(self._ids, dtype=object)
        by_name = np.empty(len(ids), dtype=np.int64)
        by_name[np.argsort(ids)] = np.arange(len(ids))
        order = np.lexsort((records["rerun"], by_name[records["combination"]]))
        for start in range(0, max(len(order), 1), rows):
            yield self._frame(records[order[start:start + rows]], True)

    def columns(self) -> pd.DataFrame:
        """Each combination's hyperparameter columns, indexed by combination."""
        return self._columns_of(np.arange(len(self._ids))).set_axis(pd.Index(self._ids, name="combination"))

    def _array(self) -> np.ndarray:
        return np.frombuffer(bytes(self._records), dtype=RECORD)

    def _frame(self, records: np.ndarray, hyperparameters: bool) -> pd.DataFrame:
        ids = np.array(self._ids, dtype=object)
        table = pd.DataFrame({"combination": ids[records["combination"]]})
        for name in FIELDS:
            column = records[name]
            if name == "status":
                column = np.array([*STATUSES, None], dtype=object)[column]  # -1: the None at the end
            elif name == "diverged":
                column = column == 1 if (column >= 0).all() else pd.array(
                    [None if v < 0 else bool(v) for v in column], dtype="boolean")
            elif column.dtype.kind == "i" and (column == MISSING).any():
                column = pd.array(np.where(column == MISSING, 0, column), dtype="Int64")
                column[records[name] == MISSING] = pd.NA
            table[name] = column
        if not hyperparameters:
            return table
        return pd.concat([table, self._columns_of(records["combination"])], axis=1)

    def _columns_of(self, positions: np.ndarray) -> pd.DataFrame:
        """The hyperparameter columns of the combinations at `positions`, a row each."""
        codes = np.frombuffer(bytes(self._columns), dtype=np.int32).reshape(len(self._ids), len(HYPERPARAMETERS))
        columns = {}
        for i, name in enumerate(HYPERPARAMETERS):
            values = np.empty(len(self._values[i]), dtype=object)
            for j, value in enumerate(self._values[i]):  # one by one: a value may itself be a sequence
                values[j] = value
            columns[name] = values[codes[positions, i]]
        # each column's type as pandas infers it from the values (numbers as numbers)
        return pd.DataFrame(columns).infer_objects()


def _integer(value) -> int:
    return MISSING if value is None else int(value)


def _real(value) -> float:
    return math.nan if value is None else float(value)
