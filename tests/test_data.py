"""Tests for data.py: D.AT loading, strict validation and standardization."""

import os
import re
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import data  # importable through tests/conftest.py, which puts the repo root on sys.path
from data import (
    DataError,
    Labelled,
    Standardizer,
    check_latest,
    check_train_test,
    load_labelled,
    load_latest,
)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def write(path: Path, text) -> Path:
    """Write str (as UTF-8, newlines untouched) or bytes to path."""
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def xy(path) -> tuple[np.ndarray, np.ndarray]:
    """A labelled file's features and labels."""
    loaded = load_labelled(path)
    return loaded.x, loaded.y


def fmt(value) -> str:
    """Shortest text that parses back to exactly this float32 value."""
    return repr(float(np.float32(value)))


def labelled_text(X, y, newline="\n") -> str:
    rows = [",".join([fmt(v) for v in row] + [str(int(label))]) for row, label in zip(X, y)]
    return newline.join(rows) + newline


def random_labelled(n_rows, n_features, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n_rows, n_features)) * 10.0 ** rng.integers(-3, 4, size=n_features)).astype(np.float32)
    y = rng.integers(0, 2, size=n_rows).astype(np.int8)
    return X, y


def at_line(path: Path, line: int) -> str:
    """Regex for a message naming the file and then the given line number."""
    return rf"{re.escape(path.name)}.*\bline {line}\b"


def reported_line(exc: DataError) -> int:
    match = re.search(r"\bat line (\d+)\b", str(exc))
    assert match, f"no line number in message: {exc}"
    return int(match.group(1))


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

    monkeypatch.setattr(data, "_slow_labelled", boom)
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

    monkeypatch.setattr(data, "_slow_labelled", boom)
    X2, y2 = xy(path)
    assert X2.shape == (10_000, 30) and y2.shape == (10_000,)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


def test_slow_path_guard_is_effective(tmp_path, monkeypatch):
    """The guard above can fail: a file that needs the scan does reach the patched function."""
    path = write(tmp_path / "text.csv", "1,2,0\n3,abc,1\n")  # the fast path rejects text cells
    calls = []
    monkeypatch.setattr(data, "_slow_labelled", lambda *args: calls.append(args) or (None, None))
    load_labelled(path)
    assert len(calls) == 1


def test_fast_and_slow_paths_agree(tmp_path):
    X, y = random_labelled(200, 9, seed=3)
    path = write(tmp_path / "t.csv", labelled_text(X, y))
    _, content = data._read_content(path)
    Xs, ys = data._slow_labelled(str(path), content)
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


# --------------------------------------------------------------------------
# Dated files: a header row, then date, ticker, features, label
# --------------------------------------------------------------------------

DATED = "date,ticker,f1,f2,label\n2021-03-01,AAA,1.5,2,0\n2021-03-01,BBB,3,4,1\n2021-03-08,AAA,5,6,1\n"


def test_a_dated_file_loads_its_dates_tickers_and_feature_names(tmp_path):
    loaded = load_labelled(write(tmp_path / "dated.csv", DATED))
    assert loaded.dated and loaded.features == ("f1", "f2")
    np.testing.assert_array_equal(loaded.x, [[1.5, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(loaded.y, [0, 1, 1])
    assert loaded.dates.tolist() == [np.datetime64("2021-03-01")] * 2 + [np.datetime64("2021-03-08")]
    assert loaded.tickers.tolist() == ["AAA", "BBB", "AAA"]
    picked = loaded.take(np.array([2]))
    assert picked.tickers.tolist() == ["AAA"] and picked.x.tolist() == [[5, 6]] and len(picked) == 1


def test_the_fast_and_slow_paths_agree_on_a_dated_file(tmp_path, monkeypatch):
    path = write(tmp_path / "dated.csv", DATED)
    fast = load_labelled(path)
    monkeypatch.setattr(data, "_fast_parse", lambda *a, **k: None)
    slow = load_labelled(path)
    for name in ("x", "y", "dates", "tickers"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name))


# (file text, bad line, bad column or None, the message must contain)
DATED_ERRORS = {
    "slashed date": ("date,ticker,f1,label\n2021/03/01,AAA,1,0\n", 2, 1, r"'2021/03/01' is not a date written YYYY-MM-DD"),
    "no such day": ("date,ticker,f1,label\n2021-03-01,AAA,1,0\n2021-02-30,BBB,1,0\n", 3, 1, r"'2021-02-30' is not a date"),
    "short year": ("date,ticker,f1,label\n21-03-01,AAA,1,0\n", 2, 1, r"YYYY-MM-DD"),
    "out of order": ("date,ticker,f1,label\n2021-03-08,AAA,1,0\n2021-03-01,BBB,1,1\n", 3, 1,
                     r"2021-03-01 is earlier than 2021-03-08.*out of order"),
    "pair twice": ("date,ticker,f1,label\n2021-03-01,AAA,1,0\n2021-03-01,BBB,1,1\n2021-03-01,AAA,2,1\n", 4, 2,
                   r"AAA on 2021-03-01 repeats line 2"),
    "empty ticker": ("date,ticker,f1,label\n2021-03-01, ,1,0\n", 2, 2, r"ticker.*empty"),
    "bad header": ("date,symbol,f1,label\n2021-03-01,AAA,1,0\n", 1, None, r"does not read date,ticker"),
    "feature twice": ("date,ticker,f1,f1,label\n2021-03-01,AAA,1,2,0\n", 1, None, r"'f1' appears twice"),
    "no label column": ("date,ticker,f1,f2\n2021-03-01,AAA,1,0\n", 1, None, r"does not read date,ticker"),
    "short row": ("date,ticker,f1,f2,label\n2021-03-01,AAA,1,0\n", 2, None, r"has 4 columns but the header has 5"),
    "label 2": ("date,ticker,f1,label\n2021-03-01,AAA,1,2\n", 2, 4, r"label '2' is not 0 or 1"),
    "text feature": ("date,ticker,f1,label\n2021-03-01,AAA,x,0\n", 2, 3, r"'x' is not a number"),
}


@pytest.mark.parametrize("case", list(DATED_ERRORS), ids=list(DATED_ERRORS))
def test_dated_errors_name_the_file_line_and_column(tmp_path, case):
    text, line, column, message = DATED_ERRORS[case]
    path = write(tmp_path / "dated.csv", text)
    with pytest.raises(DataError, match=message) as err:
        load_labelled(path)
    assert err.value.path == str(path) and err.value.line == line and err.value.column == column
    assert str(path) in str(err.value) and f"line {line}" in str(err.value)


def test_a_header_without_rows_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"header row but no data rows"):
        load_labelled(write(tmp_path / "dated.csv", "date,ticker,f1,label\n"))


def test_check_latest():
    check_latest("latest.csv", np.zeros((3, 4)), 4)
    with pytest.raises(DataError, match=r"latest\.csv.*has 3 feature columns.*training data has 4"):
        check_latest("latest.csv", np.zeros((3, 3)), 4)


# --------------------------------------------------------------------------
# Standardizer
# --------------------------------------------------------------------------

def test_standardizer_uses_train_statistics_only():
    train = np.array([[1, 10], [3, 20], [5, 60]], dtype=np.float32)
    test = np.array([[2, 0], [100, -5]], dtype=np.float32)
    scaler = Standardizer().fit(train)

    # Hand-computed from the training set (population std, ddof=0).
    mean = np.array([3.0, 30.0])
    std = np.array([np.sqrt(8 / 3), np.sqrt(((10 - 30) ** 2 + (20 - 30) ** 2 + (60 - 30) ** 2) / 3)])
    np.testing.assert_allclose(scaler.mean_, mean)
    np.testing.assert_allclose(scaler.std_, std)

    out = scaler.transform(test)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (test - mean) / std, rtol=1e-6)
    # Transforming the test set must not refit: statistics are unchanged.
    np.testing.assert_allclose(scaler.mean_, mean)
    # And the result differs from what test-set statistics would give.
    assert not np.allclose(out, Standardizer().fit_transform(test))
    # The training set itself comes out with mean 0, std 1.
    z = scaler.transform(train)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-6)


@pytest.mark.parametrize("value", [0.0, 5.0, 0.1, -3.3e-7, 1e30])
def test_standardizer_constant_column(value):
    train = np.column_stack([np.full(7, value), np.arange(7)]).astype(np.float32)
    scaler = Standardizer().fit(train)
    assert scaler.std_[0] == 1.0
    out = scaler.transform(train)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, 0], 0, atol=1e-6 * max(1, abs(value)))
    test = np.array([[value + 2, 3]], dtype=np.float32)
    assert np.isfinite(scaler.transform(test)).all()


def test_standardizer_misuse():
    with pytest.raises(RuntimeError):
        Standardizer().transform(np.zeros((1, 2)))
    with pytest.raises(ValueError):
        Standardizer().fit(np.zeros((0, 2)))
    with pytest.raises(ValueError):
        Standardizer().fit(np.zeros((3, 2))).transform(np.zeros((3, 3)))


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
    Xs, ys = data._slow_labelled(str(path), data._read_content(path)[1])
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
