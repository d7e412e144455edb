"""Run: python example_data/make_example_data.py

Simulates price histories into prices.csv (Date,Ticker,Close,Volume), then
runs prepare.py on them, exactly as you would on your own prices: it writes
train.csv, test.csv (the last year) and latest.csv in the dated form, and
data_card.md, next to this file.

Simulated market: 48 tickers (SIM001..), 5 years of 252 trading days from
2019-01-02 (weekdays). Daily log-returns = small drift + a common market move
(every ticker shares it, with its own beta) + noise with a per-ticker base
volatility of 1.2%-2.8%. The market move makes rows of one date move
together, as on a real market. Two weak, honest effects make the label
learnable from the window:
  * volatility regimes: each ticker switches between calm and turbulent spells
    that persist, so a volatile window tends to be followed by big moves;
  * short-term reversal: the part of a 5-day move beyond 2 base vols partly
    reverts over the next days (bounce after a sharp drop, give-back after a
    spike).
Volume is higher on days of big moves. Returns only ever depend on the past;
seeded numpy Generators make the output byte-identical run to run.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np

DAYS_PER_YEAR = 252
VOL_RANGE = (0.012, 0.028)  # per-ticker base daily volatility
REGIME_VOL = (0.9, 1.25)    # vol multiplier in calm / turbulent spells
SHARP_SIGMAS = 2.0          # a 5-day move beyond this many base vols is "sharp"
REVERSAL = 0.3              # daily expected reversal per unit of excess move
MARKET_VOL = 0.006          # the common daily market move every ticker shares
BETA_RANGE = (0.6, 1.4)     # how strongly each ticker follows it
FIRST_DAY = "2019-01-02"
HERE = Path(__file__).resolve().parent


def _regimes(rng, n_days):
    """Two-state Markov chain (calm=0, turbulent=1) with long spells, so the
    regime seen in the window usually persists into the label horizon."""
    state = np.empty(n_days, dtype=int)
    state[0] = rng.random() < 0.3
    flips = rng.random(n_days)
    for t in range(1, n_days):
        p_switch = 0.02 if state[t - 1] == 0 else 0.05  # ~30% time turbulent
        state[t] = 1 - state[t - 1] if flips[t] < p_switch else state[t - 1]
    return np.where(state == 1, REGIME_VOL[1], REGIME_VOL[0])


def _simulate_ticker(rng, n_days, market):
    """One ticker's closes; returns depend only on the past (no look-ahead)."""
    base_vol = rng.uniform(*VOL_RANGE)
    drift = rng.normal(0.0002, 0.0002)
    vol = base_vol * _regimes(rng, n_days)
    shocks = rng.standard_normal(n_days) * vol + rng.uniform(*BETA_RANGE) * market
    rets = np.zeros(n_days)
    for t in range(1, n_days):
        past5 = rets[max(0, t - 5):t].sum()
        # Only the part of a 5-day move beyond SHARP_SIGMAS base vols reverts
        # (bounce after sharp drops, give-back after spikes): a weak nonlinear
        # effect that leaves the long-run drift roughly unchanged.
        excess = np.sign(past5) * max(0.0, abs(past5) - SHARP_SIGMAS * base_vol)
        rets[t] = drift - REVERSAL * excess + shocks[t]
    return rng.uniform(20, 200) * np.exp(np.cumsum(rets))


# 48 tickers (not 50) keeps the files under 6 MB at 6 significant digits.
def make_market(seed=7, n_tickers=48, n_years=5):
    """Return (tickers, closes, volumes) with closes and volumes shaped (n_tickers, n_days)."""
    rng = np.random.default_rng(seed)
    n_days = n_years * DAYS_PER_YEAR
    market = rng.standard_normal(n_days) * MARKET_VOL
    closes = np.stack([_simulate_ticker(rng, n_days, market) for _ in range(n_tickers)])
    moves = np.abs(np.diff(np.log(closes), axis=1, prepend=np.log(closes[:, :1])))
    noise = np.random.default_rng(seed + 1).lognormal(0.0, 0.3, closes.shape)  # its own stream: closes unchanged
    volumes = np.rint(1e6 * noise * (1 + 20 * moves)).astype(np.int64)
    return [f"SIM{i + 1:03d}" for i in range(n_tickers)], closes, volumes


def write_prices(path, tickers, closes, volumes):
    """The long form prepare.py reads: Date,Ticker,Close,Volume, one row per ticker and trading day."""
    days = np.busday_offset(FIRST_DAY, np.arange(closes.shape[1]), roll="forward")
    with open(path, "w", newline="\n") as out:
        out.write("Date,Ticker,Close,Volume\n")
        for t, ticker in enumerate(tickers):
            for day, close, volume in zip(days, closes[t], volumes[t]):
                out.write(f"{day},{ticker},{close:.6g},{volume}\n")
    return days


def main():
    tickers, closes, volumes = make_market()
    days = write_prices(HERE / "prices.csv", tickers, closes, volumes)
    test_from = days[-DAYS_PER_YEAR]  # the last year is the test file
    command = [sys.executable, "prepare.py", "example_data/prices.csv", "--out", "example_data",
               "--test-from", str(test_from)]
    return subprocess.run(command, cwd=HERE.parent).returncode


if __name__ == "__main__":
    sys.exit(main())
