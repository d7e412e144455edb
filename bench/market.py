"""Simulated markets where the truth is known, for checking the p-values (bench.calibration, the tests).

    from bench.market import simulate_market, write_market
    market = simulate_market(seed=3)                  # no skill is possible
    market = simulate_market(seed=3, skill=0.3)       # a learnable stock-picking edge
    write_market(market, folder)                      # train.csv, test.csv (dated form), latest.csv

Daily log-returns are a common market move (each ticker with its own beta)
plus the ticker's own move, at a per-ticker volatility. With skill 0 the
future is a random walk: nothing in a window of past closes predicts the
label, so every combination has no skill and its p-values must be uniform.
But rows are far from independent: every ticker of a date shares the market
move, and each label overlaps the next windows of its ticker. With skill > 0
part of a ticker's own move over the last 5 days reverts over the next days
(-skill x that move, spread over 5 days): which stocks will rise is partly
readable from their windows, so a model can pick them.

Windows and labels follow D.AT: 30 closes divided by the last close, one
window every 5 trading days, label 1 when the highest close of the next 10
trading days is at least 5% above the last close. The last year is the test
file; windows whose label horizon crosses into it are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

WINDOW, STEP, HORIZON, GAIN = 30, 5, 10, 0.05
DAYS_PER_YEAR = 252
FIRST_DAY = "2015-01-02"


@dataclass(frozen=True)
class Market:
    closes: np.ndarray   # [tickers, days]
    days: np.ndarray     # datetime64[D] weekdays
    tickers: list[str]


def simulate_market(seed: int, tickers: int = 40, years: int = 6, skill: float = 0.0,
                    market_vol: float = 0.012, vol_range: tuple = (0.02, 0.032)) -> Market:
    """A market of `tickers` random walks sharing a market move; `skill` > 0 plants a reversal."""
    rng = np.random.default_rng(seed)
    n_days = years * DAYS_PER_YEAR
    market = rng.standard_normal(n_days) * market_vol
    beta = rng.uniform(0.6, 1.4, tickers)
    vol = rng.uniform(*vol_range, tickers)
    shocks = rng.standard_normal((tickers, n_days)) * vol[:, None]
    own = np.zeros((tickers, n_days))
    for t in range(n_days):  # the ticker's own move; with skill, part of its last 5 days reverts
        past = own[:, max(0, t - 5):t].sum(axis=1)
        own[:, t] = shocks[:, t] - skill * past / 5
    returns = beta[:, None] * market[None, :] + own
    closes = 50.0 * np.exp(np.cumsum(returns, axis=1))
    days = np.busday_offset(FIRST_DAY, np.arange(n_days), roll="forward")
    return Market(closes, days, [f"T{i:03d}" for i in range(tickers)])


def windows(market: Market) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(features [rows, 30], labels [rows], end day index [rows], ticker index [rows]), by date then ticker."""
    closes = market.closes
    n_tickers, n_days = closes.shape
    x, y, end_days, ticker = [], [], [], []
    for end in range(WINDOW - 1, n_days - HORIZON, STEP):
        window = closes[:, end - WINDOW + 1:end + 1]
        x.append(window / window[:, -1:])
        best = closes[:, end + 1:end + 1 + HORIZON].max(axis=1)
        y.append((best >= closes[:, end] * (1 + GAIN)).astype(np.int8))
        end_days.append(np.full(n_tickers, end))
        ticker.append(np.arange(n_tickers))
    return np.concatenate(x), np.concatenate(y), np.concatenate(end_days), np.concatenate(ticker)


def write_market(market: Market, folder: Path) -> dict:
    """train.csv and test.csv in the dated form, latest.csv in the D.AT form; returns the row counts."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x, y, end, ticker = windows(market)
    split = market.closes.shape[1] - DAYS_PER_YEAR
    train, test = end + HORIZON < split, end >= split
    header = "date,ticker," + ",".join(f"f{i + 1}" for i in range(WINDOW)) + ",label\n"
    for name, rows in (("train.csv", train), ("test.csv", test)):
        with open(folder / name, "w") as out:
            out.write(header)
            for i in np.flatnonzero(rows):
                out.write(f"{market.days[end[i]]},{market.tickers[ticker[i]]},"
                          + ",".join(f"{v:.6g}" for v in x[i]) + f",{y[i]}\n")
    last = market.closes[:, -WINDOW:]
    with open(folder / "latest.csv", "w") as out:
        for name, row in zip(market.tickers, last / last[:, -1:]):
            out.write(name + "," + ",".join(f"{v:.6g}" for v in row) + "\n")
    return {"train": int(train.sum()), "test": int(test.sum()), "latest": len(market.tickers)}
