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

Windows and labels are prepare.py's (inputs/windows.py, D.AT's defaults):
30 closes divided by the last close, one window every 5 trading days, label
1 when the highest close of the next 10 trading days is at least 5% above
the last close. The last year is the test file; windows whose label horizon
crosses into it are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inputs.prepare import build, write
from inputs.prices import History
from inputs.windows import Shape, Windows, all_windows

HORIZON = Shape().horizon
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


def histories(market: Market) -> list[History]:
    """The market's price histories, as prepare.py reads them from files."""
    return [History(ticker, market.days, market.closes[t], None, "simulated")
            for t, ticker in enumerate(market.tickers)]


def windows(market: Market) -> Windows:
    """The market's windows and labels, D.AT's way (inputs/windows.py): sorted by date, then ticker."""
    return all_windows(histories(market), Shape())


def write_market(market: Market, folder: Path) -> dict:
    """train.csv and test.csv (dated form, the last year the test file), latest.csv and a data card, as
    prepare.py writes them; returns the row counts."""
    prepared = build(histories(market), Shape(), test_from=market.days[-DAYS_PER_YEAR])
    write(Path(folder), prepared, ["(simulated by bench/market.py)"])
    return {"train": len(prepared.train), "test": len(prepared.test), "latest": len(prepared.latest[0])}
