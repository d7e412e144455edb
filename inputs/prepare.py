"""Price histories to a sweep's data folder: train.csv, test.csv (dated), latest.csv and a data card.

    python prepare.py prices/*.csv --out my_data
    python prepare.py prices.csv --out my_data --features closes,volume,returns --test-from 2024-01-02

Everything is read and checked before anything is written, and every file
is written whole (a temporary file, renamed), so a bad input leaves the
folder as it was.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from inputs.atomic import atomic_write_text
from inputs.errors import DataError
from inputs.prices import History, load_histories
from inputs.windows import CHANNELS, Shape, Windows, all_windows, cut_date, first_end, latest_windows, split


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Turn price histories into a sweep's data files: windows of "
                                "closes divided by the last close, 0/1 labels, a chronological train/test split "
                                "(dated form), each ticker's latest window, and a data card.")
    p.add_argument("prices", nargs="+", help="price files: one per ticker (Yahoo Finance's columns), or long files "
                   "with Date,Ticker,Close (and optionally Adj Close, Volume)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write train.csv, test.csv, latest.csv "
                   "and data_card.md into")
    p.add_argument("--window", type=int, default=30, help="closes per window (default 30)")
    p.add_argument("--step", type=int, default=5, help="trading days between windows (default 5)")
    p.add_argument("--horizon", type=int, default=10, help="trading days the label looks ahead (default 10)")
    p.add_argument("--gain", type=float, default=0.05, help="the rise the label asks for (default 0.05: 5%%)")
    p.add_argument("--max-gap", type=int, default=5, help="missing weekdays a window may not span (default 5)")
    p.add_argument("--features", default="closes", help=f"channels, comma-separated: {', '.join(CHANNELS)} "
                   "(default closes, as D.AT)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--test-fraction", type=float, default=None, help="the last share of dates that is the test "
                       "file (default 0.2)")
    group.add_argument("--test-from", metavar="YYYY-MM-DD", help="the first date of the test file")
    return p


def shape_of(args) -> Shape:
    features = tuple(f.strip() for f in args.features.split(",") if f.strip())
    unknown = [f for f in features if f not in CHANNELS]
    if unknown or not features:
        raise DataError(f"--features {args.features!r} is not valid: give channels from {', '.join(CHANNELS)}, "
                        f"comma-separated (closes is D.AT's own).")
    for name, value, low in (("--window", args.window, 2), ("--step", args.step, 1), ("--horizon", args.horizon, 1),
                             ("--max-gap", args.max_gap, 0)):
        if value < low:
            raise DataError(f"{name} {value} is not valid: it must be a whole number of at least {low}.")
    if not args.gain > 0:
        raise DataError(f"--gain {args.gain} is not valid: it is the rise the label asks for, above 0 (0.05 is 5%).")
    return Shape(args.window, args.step, args.horizon, args.gain, args.max_gap, features)


def usable(histories: list[History], shape: Shape) -> tuple[list[History], list[str]]:
    """The histories long enough for one window and its label; notes for the ones skipped."""
    needed = first_end(shape) + 1 + shape.horizon
    kept, notes = [], []
    for h in histories:
        if "volume" in shape.features and h.volumes is None:
            raise DataError(f"--features asks for volume, but '{h.source}' has no Volume column. Add it, or leave "
                            f"volume out of --features.", h.source)
        if len(h.closes) < needed:
            notes.append(f"warning: {h.ticker} ({h.source}) has {len(h.closes)} trading days, fewer than the "
                         f"{needed} one window and its label need; it is left out.")
        else:
            kept.append(h)
    if not kept:
        sources = ", ".join(sorted({f"'{h.source}'" for h in histories}))
        longest = max((len(h.closes) for h in histories), default=0)
        raise DataError(f"No ticker in {sources} has the {needed} trading days one window of {shape.window} and a "
                        f"label {shape.horizon} days ahead need (the longest has {longest}). Give longer price "
                        f"histories, or a smaller --window.")
    return kept, notes


@dataclass
class Prepared:
    """What prepare.py writes: the windows, which of them train and which test, and what was dropped."""
    histories: list[History]
    shape: Shape
    windows: Windows
    train: np.ndarray
    test: np.ndarray
    cut: np.datetime64
    crossing: int                # training windows whose label reaches the cut
    latest: tuple                # (tickers, features, tickers left out)
    skipped: list[str] = field(default_factory=list)


def build(histories: list[History], shape: Shape, test_fraction: float = 0.2,
          test_from: np.datetime64 | None = None) -> Prepared:
    """The windows of `histories` split at the cut; raises DataError when nothing usable is left."""
    if not 0 < test_fraction < 1:
        raise DataError(f"--test-fraction {test_fraction} is not valid: it is the share of dates for the test file, "
                        f"between 0 and 1 (0.2 is the last 20%).")
    histories, skipped = usable(histories, shape)
    windows = all_windows(histories, shape)
    if len(windows.y) == 0:
        raise DataError("Every window spans a gap in its ticker's prices; nothing is left to train on. "
                        "Fill the gaps, or allow longer ones with --max-gap.")
    cut = cut_date(windows, test_fraction, test_from)
    train, test, crossing = split(windows, cut)
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"The cut on {cut} leaves {len(train)} training and {len(test)} test windows; both "
                        f"need some. Move --test-from, or change --test-fraction.")
    return Prepared(histories, shape, windows, train, test, cut, crossing, latest_windows(histories, shape), skipped)


def write(out: Path, prepared: Prepared, command: list[str]) -> None:
    """train.csv, test.csv, latest.csv and the data card into `out`, each file whole."""
    out.mkdir(parents=True, exist_ok=True)
    write_dated(out / "train.csv", prepared.windows, prepared.train, prepared.shape)
    write_dated(out / "test.csv", prepared.windows, prepared.test, prepared.shape)
    tickers, x_latest, _ = prepared.latest
    atomic_write_text("".join(f"{t}," + ",".join(f"{v:.6g}" for v in row) + "\n" for t, row in zip(tickers, x_latest)),
                      out / "latest.csv")
    card = data_card(command, prepared)
    atomic_write_text(json.dumps(card, indent=2), out / "data_card.json")
    atomic_write_text(card_markdown(card), out / "data_card.md")


def prepare(argv=None, prog: str | None = None) -> int:
    """`python prepare.py` / `precision-sweep prepare`: 0 when written, 2 on bad input."""
    given = list(sys.argv[1:] if argv is None else argv)
    args = parser(prog).parse_args(given)
    try:
        shape = shape_of(args)
        test_from = None if args.test_from is None else _date(args.test_from)
        histories, notes = load_histories(args.prices)
        prepared = build(histories, shape, 0.2 if args.test_fraction is None else args.test_fraction, test_from)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for note in notes + prepared.skipped:
        print(note, file=sys.stderr)
    write(Path(args.out), prepared, given)
    print(f"{len(prepared.train)} training and {len(prepared.test)} test windows of {len(prepared.histories)} "
          f"tickers (test from {prepared.cut}), {len(prepared.latest[0])} latest windows: {args.out}")
    return 0


def _date(text: str) -> np.datetime64:
    try:
        return np.datetime64(text, "D")
    except ValueError:
        raise DataError(f"--test-from {text!r} is not a date written YYYY-MM-DD, such as 2024-01-02.") from None


def write_dated(path: Path, windows: Windows, rows: np.ndarray, shape: Shape) -> None:
    """The dated form: a header, then date, ticker, features, label per row (sorted by date, then ticker)."""
    table = pd.DataFrame(windows.x[rows], columns=shape.names())
    table.insert(0, "ticker", windows.tickers[rows])
    table.insert(0, "date", windows.dates[rows].astype(str))
    table["label"] = windows.y[rows]
    atomic_write_text(table.to_csv(index=False, float_format="%.6g", lineterminator="\n"), path)


def data_card(given: list[str], prepared: Prepared) -> dict:
    """What the data card says: tickers, dates, rows and base rates per split, what was dropped and why."""
    histories, shape, windows = prepared.histories, prepared.shape, prepared.windows
    train, test, left_out = prepared.train, prepared.test, prepared.latest[2]
    first = min(h.dates[0] for h in histories)
    last = max(h.dates[-1] for h in histories)
    return {
        "command": "python prepare.py " + " ".join(shlex.quote(a) for a in given),
        "tickers": sorted(h.ticker for h in histories),
        "prices_from": str(first), "prices_to": str(last),
        "window": shape.window, "step": shape.step, "horizon": shape.horizon, "gain": shape.gain,
        "max_gap_weekdays": shape.max_gap, "features": list(shape.features), "columns": len(shape.names()),
        "test_from": str(prepared.cut),
        "rows": {"train": int(len(train)), "test": int(len(test)), "latest": len(histories) - len(left_out)},
        "base_rate": {name: round(float(windows.y[rows].mean()), 4)
                      for name, rows in (("train", train), ("test", test))},
        "dates": {"train": [str(windows.dates[train].min()), str(windows.dates[train].max())],
                  "test": [str(windows.dates[test].min()), str(windows.dates[test].max())]},
        "dropped": {"spanning a gap": windows.dropped_for_gaps, "label crossing the test cut": prepared.crossing,
                    "tickers too short for one window": len(prepared.skipped),
                    "latest windows spanning a gap": left_out},
    }


def card_markdown(card: dict) -> str:
    dropped = card["dropped"]
    lines = [
        "# Data card", "",
        f"- **Tickers:** {len(card['tickers'])} ({', '.join(card['tickers'][:12])}"
        f"{', ...' if len(card['tickers']) > 12 else ''}); prices from {card['prices_from']} to {card['prices_to']}.",
        f"- **Windows:** {card['window']} days of {', '.join(card['features'])} ({card['columns']} columns), one every "
        f"{card['step']} trading days; label 1 when the highest close of the next {card['horizon']} trading days is "
        f"at least {card['gain']:.1%} above the window's last close.",
        f"- **Train:** {card['rows']['train']} rows, {card['dates']['train'][0]} to {card['dates']['train'][1]}, "
        f"base rate {card['base_rate']['train']:.3f}.",
        f"- **Test:** {card['rows']['test']} rows from {card['test_from']} ({card['dates']['test'][0]} to "
        f"{card['dates']['test'][1]}), base rate {card['base_rate']['test']:.3f}.",
        f"- **Latest:** {card['rows']['latest']} tickers' most recent windows.",
        f"- **Dropped:** {dropped['spanning a gap']} windows spanning a gap of more than {card['max_gap_weekdays']} "
        f"missing weekdays; {dropped['label crossing the test cut']} training windows whose label reaches the test "
        f"period; {dropped['tickers too short for one window']} tickers too short for one window"
        + (f"; latest windows of {', '.join(dropped['latest windows spanning a gap'])} (a gap)"
           if dropped["latest windows spanning a gap"] else "") + ".",
    ]
    lines.append(f"- **Made with:** `{card['command']}`")
    return "\n".join(lines) + "\n"
