"""The naive way to run a sweep, kept as the benchmark's baseline and the tests' reference.

One model at a time per process: torch.nn layers, a DataLoader with
shuffle=True, a torch.optim optimizer, in a pool of worker processes with
one torch thread each (already the thread-correct version of the naive way).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from joblib import Parallel, delayed
from torch.utils.data import DataLoader, TensorDataset

from inputs.hyperparameters import hidden_widths
from inputs.settings import load_settings
from sweep import plan
from sweep.rows import prepare_data
from training.seeds import training_seed

_ACTIVATIONS = {"relu": torch.nn.ReLU, "leaky_relu": torch.nn.LeakyReLU, "tanh": torch.nn.Tanh,
                "elu": torch.nn.ELU, "gelu": torch.nn.GELU, "silu": torch.nn.SiLU, "selu": torch.nn.SELU,
                "sigmoid": torch.nn.Sigmoid, "prelu": torch.nn.PReLU, "softplus": torch.nn.Softplus,
                "mish": torch.nn.Mish}
_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop,
               "adagrad": torch.optim.Adagrad, "adamax": torch.optim.Adamax,
               "sgd": lambda p, lr, weight_decay: torch.optim.SGD(p, lr, momentum=0.9, weight_decay=weight_decay)}


class LastStep(torch.nn.Module):
    """nn.LSTM over the features as a sequence, then the MLP head on its last hidden state."""

    def __init__(self, hp: dict, head: torch.nn.Module) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(1, hp["lstm_hidden_size"], hp["lstm_num_layers"], batch_first=True,
                                  dropout=hp["dropout"] if hp["lstm_num_layers"] > 1 else 0.0)
        self.drop = torch.nn.Dropout(hp["dropout"])
        self.head = head

    def forward(self, x):
        out, _ = self.lstm(x.unsqueeze(-1))
        return self.head(self.drop(out[:, -1]))


def build_naive_model(hp: dict, n_features: int) -> torch.nn.Module:
    n_inputs = hp["lstm_hidden_size"] if hp["model"] == "lstm" else n_features
    widths = [n_inputs] + hidden_widths(hp["hidden_layers"], n_inputs)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(a, b), _ACTIVATIONS[hp["activation"]]()]
        if hp["dropout"] > 0:
            layers.append(torch.nn.Dropout(hp["dropout"]))
    head = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], 1))
    return LastStep(hp, head) if hp["model"] == "lstm" else head


def train_naive(hp: dict, seed: int, x_train, y_train, x_test, y_test, threshold: float = 0.5) -> dict:
    """Train one model the plain way; return its confusion counts on the test set."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    x_train, y_train = torch.as_tensor(x_train), torch.as_tensor(y_train).float()
    model = build_naive_model(hp, x_train.shape[1])
    optimizer = _OPTIMIZERS[hp["optimizer"]](model.parameters(), lr=hp["learning_rate"],
                                             weight_decay=hp["l2_regularization"])
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=hp["batch_size"], shuffle=True)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(hp["max_epochs"]):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss_fn(model(xb).squeeze(-1), yb).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = (torch.sigmoid(model(torch.as_tensor(x_test)).squeeze(-1)) >= threshold).numpy()
    actual = np.asarray(y_test).astype(bool)
    return {"tp": int((predicted & actual).sum()), "fp": int((predicted & ~actual).sum()),
            "tn": int((~predicted & ~actual).sum()), "fn": int((~predicted & actual).sum())}


def _train_one(hp, seed, files, threshold):
    arrays = {k: np.load(v) for k, v in files.items()}
    return train_naive(hp, seed, arrays["train_x"], arrays["train_y"], arrays["eval_x"], arrays["eval_y"], threshold)


def main(argv=None) -> int:
    """python -m bench.naive --config bench/reference.py --out counts.json: the whole sweep, the naive way."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True, help="JSON file for the per-training confusion counts")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    data = prepare_data(settings)
    jobs = [(c, training_seed(settings.seed, plan.combination_id(c), r))
            for c in plan.planned_combinations(settings) for r in range(settings.rerun_count)]
    if any(c["loss_function"] != "bce" for c, _ in jobs):
        raise SystemExit("the naive baseline implements the bce loss only")
    counts = Parallel(n_jobs=settings.cpu_count, backend="loky")(
        delayed(_train_one)(c, seed, data["folds"][0], settings.prediction_threshold) for c, seed in jobs)
    with open(args.out, "w") as f:
        json.dump(counts, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
