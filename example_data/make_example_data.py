"""Run: python example_data/make_example_data.py

Regenerates train.csv, test.csv and latest.csv (D.AT format) next to this file.

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
Returns only ever depend on the past; a seeded numpy Generator makes the
output byte-identical run to run.

Rows (dated form): date, ticker, 30 closes divided by the window's last
close (f1..f30), then label 1 if the max close over the next 10 trading days
is >= 5% above that last close. latest.csv is in the D.AT form: the ticker,
then the 30 features.
"""
from pathlib import Path

import numpy as np

WINDOW, HORIZON, STEP, DAYS_PER_YEAR = 30, 10, 5, 252
TARGET_GAIN = 0.05
FMT = "%.6g"
VOL_RANGE = (0.012, 0.028)  # per-ticker base daily volatility
REGIME_VOL = (0.9, 1.25)    # vol multiplier in calm / turbulent spells
SHARP_SIGMAS = 2.0          # a 5-day move beyond this many base vols is "sharp"
REVERSAL = 0.3              # daily expected reversal per unit of excess move
MARKET_VOL = 0.006          # the common daily market move every ticker shares
BETA_RANGE = (0.6, 1.4)     # how strongly each ticker follows it
FIRST_DAY = "2019-01-02"


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


# 48 tickers (not 50) keeps the three CSVs under 3 MB at 6 significant digits.
def make_market(seed=7, n_tickers=48, n_years=5):
    """Return (tickers, closes) with closes shaped (n_tickers, n_days)."""
    rng = np.random.default_rng(seed)
    n_days = n_years * DAYS_PER_YEAR
    market = rng.standard_normal(n_days) * MARKET_VOL
    closes = np.stack([_simulate_ticker(rng, n_days, market) for _ in range(n_tickers)])
    tickers = [f"SIM{i + 1:03d}" for i in range(n_tickers)]
    return tickers, closes


def _features(closes, end):
    """Window of 30 closes ending at day `end`, scaled so the last is 1.0."""
    win = closes[:, end - WINDOW + 1:end + 1]
    return win / win[:, -1:]


def _labels(closes, end):
    """1 if the best close in the next HORIZON days is >= 5% above today's."""
    future_max = closes[:, end + 1:end + 1 + HORIZON].max(axis=1)
    return (future_max >= closes[:, end] * (1 + TARGET_GAIN)).astype(int)


def make_datasets(closes):
    """Weekly windows, chronological (end day, then ticker), with their end day.
    The last year is test; train windows' label horizon lies entirely before it."""
    n_days = closes.shape[1]
    split = n_days - DAYS_PER_YEAR
    train, test = [], []
    for end in range(WINDOW - 1, n_days - HORIZON, STEP):
        rows = (end, np.column_stack([_features(closes, end), _labels(closes, end)]))
        if end + HORIZON < split:
            train.append(rows)
        elif end >= split:
            test.append(rows)
        # windows straddling the split are dropped to avoid leakage
    return train, test


def _write_labeled(path, windows, tickers):
    """The dated form: a header, then date, ticker, features, label per row."""
    names = ",".join(f"f{i + 1}" for i in range(WINDOW))
    with open(path, "w", newline="\n") as fh:
        fh.write(f"date,ticker,{names},label\n")
        for end, rows in windows:
            day = np.busday_offset(FIRST_DAY, end, roll="forward")
            for tic, row in zip(tickers, rows):
                fh.write(f"{day},{tic}," + ",".join(FMT % v for v in row[:-1]) + f",{int(row[-1])}\n")


def _write_latest(path, tickers, closes):
    feats = _features(closes, closes.shape[1] - 1)
    with open(path, "w", newline="\n") as fh:
        for tic, row in zip(tickers, feats):
            fh.write(tic + "," + ",".join(FMT % v for v in row) + "\n")


def write_example_data(out_dir, seed=7, n_tickers=48, n_years=5):
    """Simulate the market and write train.csv, test.csv, latest.csv."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tickers, closes = make_market(seed=seed, n_tickers=n_tickers, n_years=n_years)
    train, test = make_datasets(closes)
    _write_labeled(out / "train.csv", train, tickers)
    _write_labeled(out / "test.csv", test, tickers)
    _write_latest(out / "latest.csv", tickers, closes)
    return {"train": n_tickers * len(train), "test": n_tickers * len(test), "latest": len(tickers)}


if __name__ == "__main__":
    counts = write_example_data(Path(__file__).resolve().parent)
    print(", ".join(f"{k}: {v} rows" for k, v in counts.items()))
