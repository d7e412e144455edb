"""prepare.py: price histories into windows and labels, checked against windows built by hand."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from test_search import ROOT

from inputs.prepare import prepare

# weekdays from Monday 2024-01-01: index i is the i-th weekday
DAYS = [str(d) for d in np.busday_offset("2024-01-01", np.arange(20), roll="forward")]
AAA = [10, 11, 12, 11, 13, 12, 12, 14, 13, 15]
SMALL = ["--window", "3", "--step", "2", "--horizon", "2", "--gain", "0.05"]


def long_file(path, rows):
    """rows: (date, ticker, close[, volume])."""
    header = "Date,Ticker,Close" + (",Volume" if len(rows[0]) == 4 else "")
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def yahoo_file(path, closes, adjusted=None, days=DAYS):
    adjusted = adjusted or closes
    path.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n" + "".join(
        f"{d},{c},{c},{c},{c},{a},1000\n" for d, c, a in zip(days, closes, adjusted)))
    return path


def run(tmp_path, *args):
    out = tmp_path / "out"
    code = prepare([*map(str, args), "--out", str(out)])
    return code, out


def test_windows_and_labels_by_hand(tmp_path, capsys):
    prices = long_file(tmp_path / "prices.csv", [(d, "AAA", c) for d, c in zip(DAYS, AAA)])
    code, out = run(tmp_path, prices, *SMALL, "--test-from", DAYS[6])
    assert code == 0, capsys.readouterr().err
    train, test = pd.read_csv(out / "train.csv"), pd.read_csv(out / "test.csv")
    # windows end on weekdays 2, 4, 6 (every 2nd, with 2 days left for the label)
    # end 2: [10, 11, 12] / 12, next 2 closes 11, 13: 13 >= 12 * 1.05 -> 1 (its label ends on day 4: training)
    # end 4: [12, 11, 13] / 13, next 12, 12 -> 0; its label ends on day 6, the first test day: dropped
    # end 6: [13, 12, 12] / 12, next 14, 13 -> 1 (test)
    assert list(train.columns) == ["date", "ticker", "close_1", "close_2", "close_3", "label"]
    assert train["date"].tolist() == [DAYS[2]] and test["date"].tolist() == [DAYS[6]]
    np.testing.assert_allclose(train.iloc[0, 2:5], [10 / 12, 11 / 12, 1.0], rtol=1e-5)
    np.testing.assert_allclose(test.iloc[0, 2:5], [13 / 12, 1.0, 1.0], rtol=1e-5)
    assert train["label"].tolist() == [1] and test["label"].tolist() == [1]
    latest = (out / "latest.csv").read_text().split(",")
    assert latest[0] == "AAA" and np.allclose([float(v) for v in latest[1:]], [14 / 15, 13 / 15, 1.0], rtol=1e-5)
    card = json.loads((out / "data_card.json").read_text())
    assert card["dropped"]["label crossing the test cut"] == 1 and card["rows"] == {"train": 1, "test": 1, "latest": 1}
    assert card["command"].startswith("python prepare.py") and "--test-from" in card["command"]
    assert "# Data card" in (out / "data_card.md").read_text()


def test_adjusted_closes_are_used_across_a_split(tmp_path):
    """A 2:1 split on day 5: Close halves there, Adj Close (the pre-split closes halved) does not."""
    adjusted = [c / 2 for c in AAA]
    closes = [c if i < 5 else c / 2 for i, c in enumerate(AAA)]
    code, out = run(tmp_path, yahoo_file(tmp_path / "BBB.csv", closes, adjusted), *SMALL, "--test-from", DAYS[6])
    assert code == 0
    train = pd.read_csv(out / "train.csv")
    assert train["ticker"].tolist() == ["BBB"]  # the file's name
    np.testing.assert_allclose(train.iloc[0, 2:5], [10 / 12, 11 / 12, 1.0], rtol=1e-5)  # as AAA: no split seen


def test_a_gap_drops_the_windows_across_it_and_a_late_ticker_gets_its_own(tmp_path):
    # CCC misses 6 weekdays after its 5th day (more than --max-gap 5); DDD starts on day 4
    ccc_days = DAYS[:5] + DAYS[11:20]
    rows = [(d, "CCC", 20 + i) for i, d in enumerate(ccc_days)] + [(d, "DDD", 30 + i % 3) for i, d in enumerate(DAYS[4:20])]
    code, out = run(tmp_path, long_file(tmp_path / "p.csv", rows), *SMALL, "--test-from", DAYS[15])
    assert code == 0
    card = json.loads((out / "data_card.json").read_text())
    both = pd.concat([pd.read_csv(out / "train.csv"), pd.read_csv(out / "test.csv")])
    ccc = both[both["ticker"] == "CCC"]
    # CCC's rows 0-4, then 5-13: a window (3 days and 2 more for its label) spanning rows 4 and 5 is dropped
    # ends 2 (rows 0-4), 4 (2-6: across), 6 (4-8: across), 8 (6-10), 10 (8-12): 2 dropped; end 8's label
    # reaches row 10 (weekday 16), past the cut on weekday 15: dropped too
    assert card["dropped"]["spanning a gap"] == 2
    assert sorted(ccc["date"]) == [ccc_days[2], ccc_days[10]]
    ddd = both[both["ticker"] == "DDD"]
    assert ddd["date"].min() == DAYS[6]  # its own first window: 3 of its days in
    train = pd.read_csv(out / "train.csv")
    horizon_end = np.busday_offset(train["date"].to_numpy(dtype="datetime64[D]"), 2)
    assert (horizon_end < np.datetime64(DAYS[15])).all()  # no training label reaches the test period
    assert len((out / "latest.csv").read_text().splitlines()) == 2  # one row per ticker


def test_channels_are_written_channel_after_channel(tmp_path):
    rows = [(d, "AAA", c, 100 * (i + 1)) for i, (d, c) in enumerate(zip(DAYS, AAA))]
    code, out = run(tmp_path, long_file(tmp_path / "p.csv", rows), *SMALL, "--test-from", DAYS[6],
                    "--features", "closes,volume,returns")
    assert code == 0
    train = pd.read_csv(out / "train.csv")
    assert list(train.columns[2:-1]) == ["close_1", "close_2", "close_3", "volume_1", "volume_2", "volume_3",
                                         "return_1", "return_2", "return_3"]
    # returns need a day before the window: the first window ends on day 3 ([11, 12, 11])
    row = train.iloc[0]
    assert row["date"] == DAYS[3]
    np.testing.assert_allclose(row[["return_1", "return_2", "return_3"]].astype(float), [11 / 10 - 1, 12 / 11 - 1, 11 / 12 - 1],
                               rtol=1e-5)
    volume = np.array([200, 300, 400])
    np.testing.assert_allclose(row[["volume_1", "volume_2", "volume_3"]].astype(float),
                               np.log((volume + 1) / (volume.mean() + 1)),
                               rtol=1e-5)


def test_dates_out_of_order_are_sorted_with_a_note(tmp_path, capsys):
    rows = [(d, "AAA", c) for d, c in zip(DAYS, AAA)]
    rows[3], rows[4] = rows[4], rows[3]
    code, _ = run(tmp_path, long_file(tmp_path / "p.csv", rows), *SMALL, "--test-from", DAYS[6])
    assert code == 0 and "not in date order; they are sorted" in capsys.readouterr().err


def test_a_ticker_too_short_is_skipped_with_a_warning(tmp_path, capsys):
    rows = [(d, "AAA", c) for d, c in zip(DAYS, AAA)] + [(DAYS[0], "EEE", 5), (DAYS[1], "EEE", 6)]
    code, out = run(tmp_path, long_file(tmp_path / "p.csv", rows), *SMALL, "--test-from", DAYS[6])
    assert code == 0 and "warning: EEE" in capsys.readouterr().err
    assert json.loads((out / "data_card.json").read_text())["dropped"]["tickers too short for one window"] == 1


BAD = {
    "no Date column": ("Day,Ticker,Close\n2024-01-01,AAA,10\n", 1, r"has no Date column"),
    "no close column": ("Date,Ticker,Open\n2024-01-01,AAA,10\n", 1, r"neither Close nor Adj Close"),
    "bad date": ("Date,Ticker,Close\n2024-01-01,AAA,10\n01/02/2024,AAA,11\n", 3, r"'01/02/2024' is not a date written YYYY-MM-DD"),
    "bad price": ("Date,Ticker,Close\n2024-01-01,AAA,10\n2024-01-02,AAA,null\n", 3, r"the Close 'null' is not a number"),
    "price zero": ("Date,Ticker,Close\n2024-01-01,AAA,10\n2024-01-02,AAA,0\n", 3, r"the Close 0 is zero or less"),
    "date twice": ("Date,Ticker,Close\n2024-01-01,AAA,10\n2024-01-01,AAA,11\n", 3, r"AAA has 2024-01-01 twice"),
    "all too short": ("Date,Ticker,Close\n2024-01-01,AAA,10\n2024-01-02,AAA,11\n", None, r"No ticker in .* has the 5 trading days .* \(the longest has 2\)"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_prices_exit_2_naming_file_and_line_and_write_nothing(tmp_path, case):
    text, line, message = BAD[case]
    prices = tmp_path / "prices.csv"
    prices.write_text(text)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "prepare.py", str(prices), "--out", str(out), *SMALL], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(prices) in done.stderr and (line is None or f"at line {line}" in done.stderr)
    assert __import__("re").search(message, done.stderr), done.stderr
    assert not out.exists()


def test_a_sweep_runs_on_prepared_prices_with_an_lstm_reading_three_channels(tmp_path):
    from bench.market import simulate_market
    market = simulate_market(3, tickers=6, years=2)
    rows = [(str(d), ticker, f"{market.closes[t, i]:.4f}", 1000 + 10 * i)
            for i, d in enumerate(market.days) for t, ticker in enumerate(market.tickers)]
    prices = long_file(tmp_path / "prices.csv", rows)
    code, out = run(tmp_path, prices, "--features", "closes,volume,returns", "--test-fraction", "0.3")
    assert code == 0
    config = tmp_path / "lstm.py"
    config.write_text("hyperparameter_values = {'model': ['lstm'], 'hidden_layers': [[]], 'learning_rate': [1e-3],"
                      " 'max_epochs': [2]}\nRERUN_COUNT = 2\nCONFIRM_TOP_K = 1\nDEVICE = 'cpu'\n"
                      "TRAIN_CSV, TEST_CSV, LATEST_CSV = 'out/train.csv', 'out/test.csv', 'out/latest.csv'\n")
    done = subprocess.run([sys.executable, "search.py", "--config", str(config), "--results", str(tmp_path / "r"),
                           "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "r" / "lstm" / "summary.json").read_text())
    assert summary["verdict"] in ("confirmed", "not confirmed") and summary["statistics"]["assumed"] is None
    predicted = subprocess.run([sys.executable, "evaluate.py", str(tmp_path / "r" / "lstm"), "--predict"], cwd=ROOT,
                               capture_output=True, text=True, timeout=600)
    assert predicted.returncode == 0, predicted.stderr
    assert len(pd.read_csv(tmp_path / "r" / "lstm" / "predictions.csv")) == 6
