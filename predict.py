"""Score the latest data with a run's best combination.

    python evaluate.py results/config --predict example_data/latest.csv

The best combination's reruns (same seeds as in the sweep) are trained on
the whole train file and used as an ensemble: a ticker's score is the median
of their predicted probabilities. The weights are saved in the run folder
(winner.pt, loadable with torch.load(weights_only=True)) and reused next time.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import plan
from data import Standardizer, check_latest, load_labelled, load_latest
from results import atomic_write, write_csv
from settings import HYPERPARAMETERS, normalize_value

INTEGER_HYPERPARAMETERS = ("batch_size", "max_epochs", "lstm_hidden_size", "lstm_num_layers")


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
    if plan.combination_id(params) != row["combination"]:
        raise ValueError(f"ranking.csv's first row does not read back as combination {row['combination']}")
    return row["combination"], params


def predict_latest(run_dir: Path, latest_csv: Path, top: int = 10, file=sys.stdout) -> pd.DataFrame:
    import torch
    run = json.loads((run_dir / "run.json").read_text())
    cid, params = best_combination(run_dir)
    warning = verdict_warning(run_dir, cid)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    train = load_labelled(run["TRAIN_CSV"])
    x_train, y_train = train.x, train.y
    tickers, x_latest = load_latest(latest_csv)
    check_latest(latest_csv, x_latest, x_train.shape[1])
    scaler = Standardizer().fit(x_train)
    model = winner_model(run_dir, run, cid, params, scaler.transform(x_train), y_train)
    with torch.no_grad():
        x = torch.from_numpy(scaler.transform(x_latest))
        probabilities = torch.sigmoid(model.forward(x.unsqueeze(0).expand(model.params.members, -1, -1), None))
    scores = np.median(probabilities.numpy(), axis=0)
    table = pd.DataFrame({"ticker": tickers, "score": scores,
                          "predicted_up": scores >= run["PREDICTION_THRESHOLD"]})
    table = table.sort_values("score", ascending=False, kind="mergesort").reset_index(drop=True)
    table.insert(2, "rank", np.arange(1, len(table) + 1))
    write_csv(table, run_dir / "predictions.csv")
    print(f"Combination {cid}, {run['RERUN_COUNT']} reruns as an ensemble (median score); "
          f"{int(table['predicted_up'].sum())} of {len(table)} tickers at or above the threshold "
          f"{run['PREDICTION_THRESHOLD']}. Top {min(top, len(table))}:", file=file)
    print(table.head(top).to_string(index=False), file=file)
    return table


def verdict_warning(run_dir: Path, cid: str) -> str | None:
    """What to say before scoring with a winner that summary.json does not call confirmed; None when it does."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    verdict = summary.get("verdict")
    if verdict == "confirmed" and summary.get("best_combination") == cid:
        return None
    if verdict is None:
        return (f"{run_dir / 'summary.json'} has no verdict (the sweep has not finished, or an older version wrote "
                f"it), so nothing says combination {cid} beats luck on data it was not chosen on. Scoring anyway.")
    reason = summary.get("verdict_reason", "")
    return (f"the verdict on combination {cid} is '{verdict}', not 'confirmed': {reason} Scoring anyway; "
            f"treat these scores as untested.")


def winner_model(run_dir: Path, run: dict, cid: str, params: dict, x_train, y_train):
    """The trained ensemble: loaded from winner.pt if it holds this combination, trained and saved otherwise."""
    import torch
    from models import build_model
    from training import member_generator, train_members
    torch.set_num_threads(1)
    seeds = [plan.training_seed(run["SEED"], cid, r) for r in range(run["RERUN_COUNT"])]
    members = [{"seed": seed, "params": params} for seed in seeds]
    path = run_dir / "winner.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        if saved["combination"] == cid and saved["seeds"] == seeds:
            model = build_model(params, [params] * len(seeds), x_train.shape[1],
                                [member_generator(s, "init") for s in seeds], torch.device("cpu"))
            if saved.get("layout") == parameter_layout(model):  # saved by a version that lays weights out alike
                model.params.load_rows(saved["weights"])
                return model
    print(f"Training combination {cid} on the whole train file ({len(seeds)} reruns)...", file=sys.stderr)
    model, *_ = train_members(params, members, torch.from_numpy(x_train), torch.from_numpy(y_train),
                            torch.device("cpu"))
    state = {"combination": cid, "hyperparameters": json.dumps(params), "seeds": seeds,
             "weights": model.params.rows(), "layout": parameter_layout(model)}
    atomic_write(path, lambda f: torch.save(state, f), binary=True)
    return model


def parameter_layout(model) -> dict[str, list[int]]:
    """Each parameter's name and per-member shape, in the order of the saved rows."""
    return {name: list(shape) for name, shape in model.params.shapes.items()}
