"""Score the latest data with a run's best combination.

    python evaluate.py results/config --predict example_data/latest.csv

The best combination's reruns (same seeds as in the sweep) are trained on
the whole train file and used as an ensemble: a ticker's score is the median
of their predicted probabilities. The training runs in a worker process, as
in the sweep; the weights are saved in the run folder (winner.npz, numpy
arrays) and reused next time. A winner the verdict does not call confirmed
is scored all the same, after a warning.
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from inputs.atomic import atomic_write, read_json, write_csv
from inputs.files import check_latest, feature_channels, load_labelled, load_latest
from inputs.hyperparameters import HYPERPARAMETERS, normalize_value
from inputs.scaling import Standardizer
from sweep import pool
from sweep.plan import combination_id
from training.seeds import training_seed

INTEGER_HYPERPARAMETERS = ("batch_size", "max_epochs", "lstm_hidden_size", "lstm_num_layers")
WINNER = "winner.npz"


def best_combination(run_dir: Path) -> tuple[str, dict]:
    """The ranking's first combination, with its hyperparameters as the sweep used them."""
    row = pd.read_csv(run_dir / "ranking.csv", dtype={"combination": str}).iloc[0]
    params = {}
    for name in HYPERPARAMETERS:
        value = row[name]
        if isinstance(value, float) and np.isnan(value):
            params[name] = None
        elif name == "hidden_layers":
            params[name] = normalize_value(name, json.loads(value))
        elif name in INTEGER_HYPERPARAMETERS:
            params[name] = int(value)
        else:
            params[name] = normalize_value(name, value.item() if hasattr(value, "item") else value)
    if combination_id(params) != row["combination"]:
        raise ValueError(f"ranking.csv's first row does not read back as combination {row['combination']}")
    return row["combination"], params


def predict_latest(run_dir: Path, latest_csv: Path, top: int = 10, file=sys.stdout) -> pd.DataFrame:
    """Score `latest_csv` with the winner's reruns; writes predictions.csv (and winner.npz) into `run_dir`."""
    run = read_json(run_dir / "run.json")
    cid, params = best_combination(run_dir)
    warning = verdict_warning(run_dir, cid)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    train = load_labelled(run["TRAIN_CSV"])
    tickers, x_latest = load_latest(latest_csv)
    check_latest(latest_csv, x_latest, train.x.shape[1])
    scaler = Standardizer().fit(train.x)
    seeds = [training_seed(run["SEED"], cid, r) for r in range(run["RERUN_COUNT"])]
    saved = saved_winner(run_dir / WINNER, cid, seeds)
    if saved is None:
        print(f"Training combination {cid} on the whole train file ({len(seeds)} reruns)...", file=sys.stderr)
    result = pool.run_one("run_latest", {"params": params, "seeds": seeds, "channels": feature_channels(train.features),
                                         "x_train": scaler.transform(train.x),
                                         "y_train": train.y, "x_latest": scaler.transform(x_latest),
                                         **(saved or {})})
    if result["trained"]:
        if saved is not None:
            print(f"Training combination {cid} again: {WINNER} holds its weights in another layout (saved by "
                  f"another version).", file=sys.stderr)
        save_winner(run_dir / WINNER, cid, params, seeds, result["weights"], result["layout"])
    scores = np.median(result["probabilities"], axis=0)
    table = pd.DataFrame({"ticker": tickers, "score": scores, "predicted_up": scores >= run["PREDICTION_THRESHOLD"]})
    table = table.sort_values("score", ascending=False, kind="mergesort").reset_index(drop=True)
    table.insert(2, "rank", np.arange(1, len(table) + 1))
    write_csv(table, run_dir / "predictions.csv")
    print(f"Combination {cid}, {run['RERUN_COUNT']} reruns as an ensemble (median score); "
          f"{int(table['predicted_up'].sum())} of {len(table)} tickers at or above the threshold "
          f"{run['PREDICTION_THRESHOLD']}. Top {min(top, len(table))}:", file=file)
    print(table.head(top).to_string(index=False), file=file)
    return table


def saved_winner(path: Path, cid: str, seeds: list[int]) -> dict | None:
    """The weights saved for this combination and these seeds ({weights, layout}), or None."""
    if not path.is_file():
        return None
    with np.load(path) as saved:
        meta = json.loads(str(saved["meta"]))
        if meta["combination"] != cid or meta["seeds"] != seeds:
            return None
        return {"weights": saved["weights"], "layout": meta["layout"]}


def save_winner(path: Path, cid: str, params: dict, seeds: list[int], weights: np.ndarray, layout: dict) -> None:
    """winner.npz: `weights` [reruns, n] and, in `meta`, the combination, its seeds and the weights' layout."""
    meta = json.dumps({"combination": cid, "hyperparameters": params, "seeds": seeds, "layout": layout})
    buffer = io.BytesIO()
    np.savez(buffer, weights=weights, meta=np.array(meta))
    atomic_write(path, lambda f: f.write(buffer.getvalue()), binary=True)


def verdict_warning(run_dir: Path, cid: str) -> str | None:
    """What to say before scoring with a winner that summary.json does not call confirmed; None when it does."""
    summary = read_json(run_dir / "summary.json")
    verdict = summary.get("verdict")
    if verdict == "confirmed" and summary.get("best_combination") == cid:
        return None
    if verdict is None:
        return (f"{run_dir / 'summary.json'} has no verdict (the sweep has not finished, or an older version wrote "
                f"it), so nothing says combination {cid} beats luck on data it was not chosen on. Scoring anyway.")
    reason = summary.get("verdict_reason", "")
    return (f"the verdict on combination {cid} is '{verdict}', not 'confirmed': {reason} Scoring anyway; "
            f"treat these scores as untested.")
