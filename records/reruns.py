"""A finished combination's reruns as the study keeps them, and read back.

Its entry (a trial's user attrs, or its entry in its task's trial:
records/claims.py) holds the combination once (its "params") and, per
rerun, the reruns.csv row without the hyperparameter columns and, as
"bits", where its packed predictions are (records/predictions.py: a place
on disk, or base64 text) beside its counts: smaller records are faster to
write and read. Older layouts are read too. Predictions are passed around
in that stored form and read (Predictions.read) only where they are scored.
"""
from __future__ import annotations

from inputs.hyperparameters import HYPERPARAMETERS, hyperparameter_columns


def first_reruns(attrs: dict, count: int) -> tuple[list[dict], list]:
    """A finished trial's first `count` reruns and their stored predictions (a study may hold more)."""
    reruns, bits = rows_from_study(attrs)
    kept = [i for i, row in enumerate(reruns) if row["rerun"] < count]
    return [reruns[i] for i in kept], [bits[i] for i in kept]


def with_earlier(earlier, reruns: list[dict], bits: list, count: int) -> tuple[list[dict], list]:
    """A grown combination's reruns: those its earlier trial holds, then the ones just trained, by rerun."""
    if earlier is None:
        return reruns, bits
    old_reruns, old_bits = first_reruns(earlier.user_attrs, count)
    pairs = sorted(zip(old_reruns + reruns, old_bits + list(bits)), key=lambda pair: pair[0]["rerun"])
    return [row for row, _ in pairs], [b for _, b in pairs]


def stored_rows(reruns: list[dict], bits: list) -> list[dict]:
    """A combination's reruns as the study keeps them: without the hyperparameter columns
    (the trial holds the combination once, in its "params" attr) and with where each rerun's
    predictions are beside its counts. Smaller records are faster to write and read."""
    return [{**without_columns(row), "bits": b} for row, b in zip(reruns, bits)]


def without_columns(row: dict) -> dict:
    """A reruns.csv row without its hyperparameter columns (kept once per combination instead)."""
    return {k: v for k, v in row.items() if k not in HYPERPARAMETERS}


def rows_from_study(attrs: dict) -> tuple[list[dict], list]:
    """(reruns.csv rows, stored predictions) of a finished trial; also reads the older layouts
    (full rows, predictions in their own attr, the independent-rows p-value as "p_value")."""
    columns = columns_of(attrs)
    renamed = {"p_value": "p_value_independent_rows"}
    rows = [{**columns, **{renamed.get(k, k): v for k, v in row.items() if k != "bits"}} for row in attrs["reruns"]]
    packed = [row.get("bits") for row in attrs["reruns"]]
    if not all(packed):
        packed = attrs.get("predictions", [])
    return rows, list(packed)


def columns_of(attrs: dict) -> dict:
    """A recorded trial's hyperparameter columns (kept in a "columns" attr by older runs)."""
    return attrs.get("columns") or (hyperparameter_columns(attrs["params"]) if "params" in attrs else {})
