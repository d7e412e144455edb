"""inputs/files.py's dated form: a header row, then date, ticker, features, label; its errors name file, line and column."""
import numpy as np
import pytest
from helpers import write

from inputs import files
from inputs.errors import DataError
from inputs.files import load_labelled

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
    monkeypatch.setattr(files, "fast_parse", lambda *a, **k: None)
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
