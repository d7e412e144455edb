"""Tests for inputs/files.py and inputs/scan.py (D.AT and dated loading, strict validation) and inputs/scaling.py."""

import re

import numpy as np
import pytest
from helpers import at_line, fmt, labelled_text, random_labelled, write, xy

from inputs import files, scan
from inputs.errors import DataError
from inputs.files import (
    Labelled,
    check_latest,
    check_train_test,
    load_labelled,
    load_latest,
)

# --------------------------------------------------------------------------
# Well-formed labelled files round-trip exactly
# --------------------------------------------------------------------------

@pytest.mark.parametrize("n_features", [1, 2, 7, 31, 45])
def test_labelled_round_trip(tmp_path, n_features):
    X, y = random_labelled(50, n_features, seed=n_features)
    path = write(tmp_path / "train.csv", labelled_text(X, y))
    X2, y2 = xy(path)
    assert X2.dtype == np.float32 and y2.dtype == np.int8
    assert X2.shape == (50, n_features) and y2.shape == (50,)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


def test_labelled_accepts_str_path_single_row_and_float_labels(tmp_path):
    path = write(tmp_path / "one.csv", "0.5,-2,1.0\n")
    X, y = xy(str(path))
    np.testing.assert_array_equal(X, np.array([[0.5, -2.0]], dtype=np.float32))
    np.testing.assert_array_equal(y, np.array([1], dtype=np.int8))
    path = write(tmp_path / "zero.csv", "3,0.0\n4,1e0\n")
    np.testing.assert_array_equal(load_labelled(path).y, [0, 1])


@pytest.mark.parametrize("text", [
    "1,2,0\n3,4,1",                 # no final newline
    "1,2,0\n3,4,1\n\n\n",           # blank trailing lines
    "1,2,0\n3,4,1\n  \n\t\n",       # whitespace-only trailing lines
    "1,2,0\r\n3,4,1\r\n",           # Windows line endings
    "\ufeff1,2,0\n3,4,1\n",         # UTF-8 byte-order mark
    "1, 2 ,0\n3,4, 1\n",            # spaces around cells
    '"1",2,0\n3,"4",1\n',           # quoted numbers (slow path, still valid)
    "1.0,2.0,0.0\n3e0,+4,1.0\n",    # float-formatted values and labels
])
def test_labelled_formatting_variants(tmp_path, text):
    X, y = xy(write(tmp_path / "v.csv", text))
    np.testing.assert_array_equal(X, np.array([[1, 2], [3, 4]], dtype=np.float32))
    np.testing.assert_array_equal(y, np.array([0, 1], dtype=np.int8))


def test_fast_path_used_for_well_formed_file(tmp_path, monkeypatch):
    """A clean file must never reach the slow scan (which is ~20x slower)."""
    X, y = random_labelled(10_000, 30)
    path = write(tmp_path / "big.csv", labelled_text(X, y))

    def boom(*args):
        raise AssertionError("slow path used for a well-formed file")

    monkeypatch.setattr(files, "slow_labelled", boom)
    X2, y2 = xy(path)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


@pytest.mark.parametrize("newline, bom", [("\n", b""), ("\r\n", b""), ("\n", b"\xef\xbb\xbf")])
def test_large_file_takes_fast_path(tmp_path, monkeypatch, newline, bom):
    """10,000 x 31 (the size that matters in practice) loads without the line-by-line scan.

    No timing assertion (timed checks are flaky on shared CI machines): the
    slow scan is replaced by one that fails, so falling back to it, the
    reason a load would be ~20x slower, fails the test deterministically.
    """
    X, y = random_labelled(10_000, 30, seed=7)
    path = write(tmp_path / "big.csv", bom + labelled_text(X, y, newline).encode("utf-8"))

    def boom(*args):
        raise AssertionError("slow path used for a well-formed 10,000 x 31 file")

    monkeypatch.setattr(files, "slow_labelled", boom)
    X2, y2 = xy(path)
    assert X2.shape == (10_000, 30) and y2.shape == (10_000,)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


def test_slow_path_guard_is_effective(tmp_path, monkeypatch):
    """The guard above can fail: a file that needs the scan does reach the patched function."""
    path = write(tmp_path / "text.csv", "1,2,0\n3,abc,1\n")  # the fast path rejects text cells
    calls = []
    monkeypatch.setattr(files, "slow_labelled", lambda *args: calls.append(args) or (None, None))
    load_labelled(path)
    assert len(calls) == 1


def test_fast_and_slow_paths_agree(tmp_path):
    X, y = random_labelled(200, 9, seed=3)
    path = write(tmp_path / "t.csv", labelled_text(X, y))
    _, content = scan.read_content(path)
    Xs, ys = scan.slow_labelled(str(path), content)
    Xf, yf = xy(path)
    np.testing.assert_array_equal(Xs, Xf)
    np.testing.assert_array_equal(ys, yf)
    assert Xs.dtype == Xf.dtype and ys.dtype == yf.dtype


# --------------------------------------------------------------------------
# Labelled-file errors: file name and exact line in the message
# --------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError, match=r"nope\.csv.*does not exist"):
        load_labelled(path)
    with pytest.raises(DataError, match=r"nope\.csv.*does not exist"):
        load_latest(path)


def test_directory_instead_of_file(tmp_path):
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    with pytest.raises(DataError, match=r"folder\.csv.*directory"):
        load_labelled(folder)


@pytest.mark.parametrize("text", ["", "\n\n", "  \n \r\n", "\ufeff"])
def test_empty_file(tmp_path, text):
    path = write(tmp_path / "empty.csv", text)
    with pytest.raises(DataError, match=r"empty\.csv.*empty"):
        load_labelled(path)
    with pytest.raises(DataError, match=r"empty\.csv.*empty"):
        load_latest(path)


# (file text, bad line, bad column or None, extra regex the message must contain)
LABELLED_ERRORS = {
    "text cell": ("1,2,0\n3,4,1\n5,abc,0\n", 3, 2, r"'abc' is not a number"),
    "empty cell": ("1,2,0\n,4,1\n", 2, 1, r"empty"),
    "nan": ("1,2,0\n3,4,1\n5,6,1\n7,nan,0\n", 4, 2, r"NaN"),
    "NA text": ("1,2,0\nNA,4,1\n", 2, 1, r"'NA' is not a number"),
    "inf": ("1,2,0\n3,inf,1\n", 2, 2, r"infinite"),
    "-Infinity": ("1,2,0\n-Infinity,4,1\n", 2, 1, r"infinite"),
    "float64 overflow": ("1,2,0\n3,1e400,1\n", 2, 2, r"too large"),
    "float32 overflow": ("1,2,0\n3,4,1\n1e39,2,0\n", 3, 1, r"too large.*32-bit"),
    "label 2": ("1,2,0\n3,4,2\n", 2, 3, r"label '2' is not 0 or 1"),
    "label -1": ("1,2,-1\n", 1, 3, r"0 or 1"),
    "label 0.5": ("1,2,0\n3,4,1\n1,2,0.5\n", 3, 3, r"0 or 1"),
    "label text": ("1,2,yes\n", 1, 3, r"'yes'.*0 or 1"),
    "label True": ("1,2,0\n3,4,True\n", 2, 3, r"0 or 1"),
    "label empty": ("1,2,0\n3,4,\n", 2, 3, r"label cell is empty"),
    "label nan": ("1,2,0\n3,4,nan\n", 2, 3, r"0 or 1"),
    "ragged short": ("1,2,0\n3,4,1\n5,6,1\n7,0\n", 4, None, r"has 2 columns but the first line has 3"),
    "ragged long": ("1,2,0\n3,4,5,1\n", 2, None, r"has 4 columns but the first line has 3"),
    "one column first": ("1\n0\n", 1, None, r"only one column"),
    "one column later": ("1,2,0\n3,4,1\n1\n", 3, None, r"only one column"),
    "header": ("f1,f2,label\n1,2,0\n", 1, None, r"must not have a header row"),
    "blank middle": ("1,2,0\n\n3,4,1\n", 2, None, r"blank"),
    "blank first": ("\n1,2,0\n", 1, None, r"blank"),
    "unbalanced quote": ('1,2,0\n"3,4,1\n5,6,0\n', 2, None, r"not valid CSV"),
    "underscore digits": ("1,2,0\n1_000,4,1\n", 2, 1, r"not a number"),
    "bare CR lines": ("1,2,0\r3,x,1\r", 2, 2, r"not a number"),
}


@pytest.mark.parametrize("case", list(LABELLED_ERRORS), ids=list(LABELLED_ERRORS))
def test_labelled_errors(tmp_path, case):
    text, line, column, detail = LABELLED_ERRORS[case]
    path = write(tmp_path / "bad_train.csv", text)
    with pytest.raises(DataError, match=at_line(path, line)) as info:
        load_labelled(path)
    message = str(info.value)
    assert re.search(detail, message), message
    if column is not None:
        assert f"line {line}, column {column}" in message
    assert "\n" not in message  # one paragraph, printable as-is by the CLI
    assert info.value.line == line and info.value.column == column


def test_invalid_utf8(tmp_path):
    path = write(tmp_path / "bin.csv", b"1,2,0\n\xff\xfe,4,1\n")
    with pytest.raises(DataError, match=at_line(path, 2) + ".*UTF-8"):
        load_labelled(path)


def test_long_cell_is_truncated(tmp_path):
    cell = "x" * 500
    path = write(tmp_path / "long.csv", f"1,2,0\n3,{cell},1\n")
    with pytest.raises(DataError, match=at_line(path, 2)) as info:
        load_labelled(path)
    message = str(info.value)
    assert "..." in message and cell not in message and len(message) < 400


def test_error_reports_first_bad_line(tmp_path):
    path = write(tmp_path / "two_bad.csv", "1,2,0\n3,x,1\n5,6,7\n")
    with pytest.raises(DataError, match=at_line(path, 2)):
        load_labelled(path)


# --------------------------------------------------------------------------
# Latest-data files
# --------------------------------------------------------------------------

@pytest.mark.parametrize("n_features", [1, 3, 45])
def test_latest_round_trip(tmp_path, n_features):
    X, _ = random_labelled(20, n_features, seed=n_features)
    tickers = [f"TCK{i}" for i in range(20)]
    text = "".join(",".join([t] + [fmt(v) for v in row]) + "\n" for t, row in zip(tickers, X))
    got_tickers, X2 = load_latest(write(tmp_path / "latest.csv", text))
    assert got_tickers == tickers
    assert X2.dtype == np.float32 and X2.shape == (20, n_features)
    np.testing.assert_array_equal(X2, X)


def test_latest_odd_but_valid_tickers(tmp_path):
    # "NA" and "nan" are real-looking tickers, numeric codes exist (e.g. 7203),
    # and surrounding spaces are trimmed.
    path = write(tmp_path / "latest.csv", "NA,1,2\nnan,3,4\n7203,5,6\n BRK.B ,7,8\n")
    tickers, X = load_latest(path)
    assert tickers == ["NA", "nan", "7203", "BRK.B"]
    np.testing.assert_array_equal(X, np.arange(1, 9, dtype=np.float32).reshape(4, 2))


LATEST_ERRORS = {
    "empty ticker": ("AAA,1,2\n,3,4\n", 2, r"ticker .*is empty"),
    "blank ticker": ("AAA,1,2\nBBB,3,4\n  ,5,6\n", 3, r"ticker .*is empty"),
    "duplicate ticker": ("AAA,1,2\nBBB,3,4\nAAA,5,6\n", 3, r"'AAA' repeats line 1"),
    "header": ("ticker,f1,f2\nAAA,1,2\n", 1, r"must not have a header row"),
    "ticker only": ("AAA,1,2\nBBB\n", 2, r"only a ticker"),
    "text feature": ("AAA,1,2\nBBB,3,four\n", 2, r"line 2, column 3 the cell 'four' is not a number"),
    "nan feature": ("AAA,1,2\nBBB,nan,4\n", 2, r"column 2 .*NaN"),
    "ragged": ("AAA,1,2\nBBB,3,4,5\n", 2, r"has 4 columns but the first line has 3"),
    "blank middle": ("AAA,1,2\n\nBBB,3,4\n", 2, r"blank"),
}


@pytest.mark.parametrize("case", list(LATEST_ERRORS), ids=list(LATEST_ERRORS))
def test_latest_errors(tmp_path, case):
    text, line, detail = LATEST_ERRORS[case]
    path = write(tmp_path / "bad_latest.csv", text)
    with pytest.raises(DataError, match=at_line(path, line)) as info:
        load_latest(path)
    assert re.search(detail, str(info.value)), str(info.value)


# --------------------------------------------------------------------------
# Cross-file checks
# --------------------------------------------------------------------------

def rows(x, y, path, dates=None, tickers=None, features=None) -> Labelled:
    return Labelled(np.asarray(x, np.float32), np.asarray(y, np.int8),
                    None if dates is None else np.array(dates, dtype="datetime64[D]"),
                    None if tickers is None else np.array(tickers), features, path)


def test_check_train_test_ok():
    X = np.zeros((4, 3), dtype=np.float32)
    check_train_test(rows(X, [0, 1, 0, 1], "train.csv"), rows(X, [0, 0, 1, 0], "test.csv"))


def test_check_train_test_feature_mismatch():
    with pytest.raises(DataError, match=r"train\.csv.*has 3 feature columns.*test\.csv.*has 2"):
        check_train_test(rows(np.zeros((2, 3)), [0, 1], "train.csv"), rows(np.zeros((2, 2)), [0, 1], "test.csv"))


@pytest.mark.parametrize("label", [0, 1])
def test_check_train_test_single_class(label):
    with pytest.raises(DataError, match=rf"train\.csv.*label {label}.*both classes"):
        check_train_test(rows(np.zeros((5, 2)), [label] * 5, "train.csv"), rows(np.zeros((2, 2)), [0, 1], "test.csv"))


def test_check_train_test_no_positive_in_test():
    with pytest.raises(DataError, match=r"test\.csv.*label 1"):
        check_train_test(rows(np.zeros((2, 2)), [0, 1], "train.csv"), rows(np.zeros((3, 2)), [0, 0, 0], "test.csv"))


def dated(path, days, features=("a", "b")):
    n = len(days)
    return rows(np.zeros((n, len(features))), [i % 2 for i in range(n)], path, days, ["X"] * n, tuple(features))


def test_check_train_test_headers_must_match_naming_the_file_and_line():
    with pytest.raises(DataError, match=r"'test\.csv': at line 1 its header \(a,c\) does not match .*train\.csv.*\(a,b\)") as err:
        check_train_test(dated("train.csv", ["2020-01-01", "2020-01-02"]),
                         dated("test.csv", ["2020-02-03", "2020-02-04"], features=("a", "c")))
    assert err.value.path == "test.csv" and err.value.line == 1


def test_check_train_test_one_dated_file_and_one_plain_is_refused():
    with pytest.raises(DataError, match=r"'train\.csv' has dates.*'test\.csv' has none"):
        check_train_test(dated("train.csv", ["2020-01-01", "2020-01-02"]), rows(np.zeros((2, 2)), [0, 1], "test.csv"))


def test_check_train_test_the_test_rows_must_come_after_the_training_rows():
    with pytest.raises(DataError, match=r"'test\.csv' starts on 2020-01-02.*runs until 2020-01-03"):
        check_train_test(dated("train.csv", ["2020-01-01", "2020-01-03"]), dated("test.csv", ["2020-01-02", "2020-01-06"]))


def test_check_latest():
    check_latest("latest.csv", np.zeros((3, 4)), 4)
    with pytest.raises(DataError, match=r"latest\.csv.*has 3 feature columns.*training data has 4"):
        check_latest("latest.csv", np.zeros((3, 3)), 4)
