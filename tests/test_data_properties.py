"""Property tests for inputs/files.py: valid files round-trip, malformed ones name their first bad line, no bytes crash."""

import os
import re
import string

import numpy as np
import pytest
from helpers import fmt, reported_line, write, xy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inputs import scan
from inputs.errors import DataError
from inputs.files import (
    load_labelled,
    load_latest,
)

# --------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------

FLOAT32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def valid_labelled(draw):
    """A valid file as text, plus the exact arrays it should load to."""
    n_features = draw(st.integers(1, 12))
    n_rows = draw(st.integers(1, 15))
    style = draw(st.sampled_from(["repr", "short", "int"]))
    rows, X, y = [], [], []
    for _ in range(n_rows):
        if style == "int":
            values = draw(st.lists(st.integers(-10**6, 10**6), min_size=n_features, max_size=n_features))
            cells = [str(v) for v in values]
        else:
            # "%.4g" can round float32's largest values past its range, so
            # the short style draws from a narrower interval.
            floats = FLOAT32 if style == "repr" else st.floats(-2.0**120, 2.0**120, width=32)
            values = draw(st.lists(floats, min_size=n_features, max_size=n_features))
            cells = [fmt(v) if style == "repr" else f"{v:.4g}" for v in values]
        label = draw(st.integers(0, 1))
        rows.append(cells + [draw(st.sampled_from([str(label), f"{label}.0"]))])
        X.append([float(c) for c in cells])
        y.append(label)
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    tail = draw(st.sampled_from(["", newline, newline * 3]))
    text = newline.join(",".join(r) for r in rows) + tail
    return text, np.array(X, dtype=np.float64).astype(np.float32), np.array(y, dtype=np.int8)


@PROPERTY
@given(valid_labelled())
def test_property_valid_files_round_trip(tmp_path, case):
    text, X, y = case
    path = write(tmp_path / "valid.csv", text)
    X2, y2 = xy(path)
    assert X2.dtype == np.float32 and y2.dtype == np.int8
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    # The slow scan is the reference: it must agree with the fast path.
    Xs, ys = scan.slow_labelled(str(path), scan.read_content(path)[1])
    np.testing.assert_array_equal(Xs, X2)
    np.testing.assert_array_equal(ys, y2)


LETTERS = st.text(alphabet=string.ascii_letters, min_size=1, max_size=60)
BAD_KINDS = ["text", "nan", "inf", "empty", "label", "ragged"]


def bad_row(draw, kind, n_features, good):
    """A copy of a good row broken in one way; ragged rows change the width."""
    row = list(good)
    feature = draw(st.integers(0, n_features - 1))
    if kind == "text":
        row[draw(st.integers(0, n_features))] = draw(LETTERS)  # may hit the label
    elif kind == "nan":
        row[feature] = draw(st.sampled_from(["nan", "NaN", "-nan", "NAN"]))
    elif kind == "inf":
        row[feature] = draw(st.sampled_from(["inf", "-inf", "Infinity", "1e39", "-1e400"]))
    elif kind == "empty":
        row[feature] = draw(st.sampled_from(["", " "]))
    elif kind == "label":
        row[-1] = draw(st.sampled_from(["2", "-1", "0.5", "1.5", "1e-9", "yes", ""]))
    else:  # ragged: any width but the right one, at least one cell
        width = draw(st.integers(1, n_features + 4).filter(lambda w: w != n_features + 1))
        row = (row * 5)[:width]
    return row


@st.composite
def malformed_labelled(draw):
    """A valid file with bad rows inserted at random lines; returns (text, first bad line)."""
    n_features = draw(st.integers(1, 8))
    n_good = draw(st.integers(1, 12))
    rows = []  # (is_bad, cells)
    for _ in range(n_good):
        cells = [fmt(v) for v in draw(st.lists(FLOAT32, min_size=n_features, max_size=n_features))]
        rows.append((False, cells + [draw(st.sampled_from(["0", "1", "1.0"]))]))
    template = rows[0][1]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(BAD_KINDS))
        # Line 1 defines the expected width, so a ragged line 1 would make
        # line 2 the first "bad" one; keep ragged rows off line 1.
        lowest = 1 if kind == "ragged" else 0
        at = draw(st.integers(lowest, len(rows)))
        rows.insert(at, (True, bad_row(draw, kind, n_features, template)))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(",".join(cells) for _, cells in rows) + draw(st.sampled_from(["", newline, newline * 2]))
    first_bad = 1 + next(i for i, (is_bad, _) in enumerate(rows) if is_bad)
    return text, first_bad


@PROPERTY
@given(malformed_labelled())
def test_property_malformed_labelled_reports_first_bad_line(tmp_path, case):
    text, first_bad = case
    path = write(tmp_path / "malformed.csv", text)
    with pytest.raises(DataError, match=re.escape(path.name)) as info:
        load_labelled(path)
    assert reported_line(info.value) == first_bad, str(info.value)
    assert info.value.line == first_bad


@st.composite
def malformed_latest(draw):
    """Latest-data variant: unique tickers, then bad rows inserted at random lines."""
    n_features = draw(st.integers(1, 6))
    n_good = draw(st.integers(1, 10))
    rows = []
    for i in range(n_good):
        cells = [fmt(v) for v in draw(st.lists(FLOAT32, min_size=n_features, max_size=n_features))]
        rows.append((False, [f"T{i}"] + cells))
    for j in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["text", "nan", "inf", "empty", "ticker", "ragged"]))
        cells = list(rows[0][1][1:])
        feature = draw(st.integers(0, n_features - 1))
        if kind == "text":
            cells[feature] = draw(LETTERS)
        elif kind == "nan":
            cells[feature] = "nan"
        elif kind == "inf":
            cells[feature] = draw(st.sampled_from(["inf", "1e39"]))
        elif kind == "empty":
            cells[feature] = ""
        if kind == "ticker":
            row = [draw(st.sampled_from(["", "  "]))] + cells
        elif kind == "ragged":
            width = draw(st.integers(1, n_features + 4).filter(lambda w: w != n_features + 1))
            row = ([f"BAD{j}"] + cells * 5)[:width]
        else:
            row = [f"BAD{j}"] + cells
        at = draw(st.integers(1 if kind == "ragged" else 0, len(rows)))
        rows.insert(at, (True, row))
    text = "\n".join(",".join(cells) for _, cells in rows) + "\n"
    return text, 1 + next(i for i, (is_bad, _) in enumerate(rows) if is_bad)


@PROPERTY
@given(malformed_latest())
def test_property_malformed_latest_reports_first_bad_line(tmp_path, case):
    text, first_bad = case
    path = write(tmp_path / "malformed_latest.csv", text)
    with pytest.raises(DataError, match=re.escape(path.name)) as info:
        load_latest(path)
    assert reported_line(info.value) == first_bad, str(info.value)


@PROPERTY
@given(st.binary(max_size=200))
def test_property_arbitrary_bytes_never_crash(tmp_path, blob):
    """Whatever the bytes, the loaders either succeed or raise DataError."""
    path = write(tmp_path / "noise.csv", blob)
    for loader in (load_labelled, load_latest):
        try:
            loader(path)
        except DataError as exc:
            assert os.fspath(path) in str(exc)
