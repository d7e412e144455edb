"""Train a task's members as one fused model and count their predictions on the evaluation set.

Each member is one training (a combination's rerun). Members share the
architecture, batch size and epoch count; learning rate, optimizer, dropout,
L1/L2 and initialisation are per member. A member gets its own initial
weights, dropout masks and batch order from its own seed, exactly as if it
were trained alone: fusing only changes how many members one batched matmul
serves, so results never depend on how trainings were grouped.
"""
from __future__ import annotations

import time
from functools import lru_cache

import numpy as np
import torch

from models import build_model
from models.components import LOSSES
from models.dropout import DropoutPool
from fused_optim import FusedOptimizer, group_key

_STREAMS = {"init": 0, "dropout": 1, "shuffle": 2}  # independent random streams per member


def member_generator(seed: int, stream: str) -> torch.Generator:
    state = np.random.SeedSequence([seed, _STREAMS[stream]]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@lru_cache(maxsize=8)
def load_arrays(path: str, device: str) -> torch.Tensor:
    """Read a prepared array once per worker process and keep it (the data is sent once, not per task)."""
    return torch.from_numpy(np.load(path)).to(device)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def train_task(task: dict) -> list[dict]:
    """Train every member of `task`; return one result dict per member, in task order."""
    started = time.perf_counter()
    device = resolve_device(task["device"])
    x_train = load_arrays(task["data"]["train_x"], str(device))
    y_train = load_arrays(task["data"]["train_y"], str(device))
    x_eval = load_arrays(task["data"]["eval_x"], str(device))
    y_eval = load_arrays(task["data"]["eval_y"], str(device))

    # the optimizer updates contiguous row ranges, so order members by optimizer group
    order = sorted(range(len(task["members"])), key=lambda i: group_key(task["members"][i]["params"]))
    members = [task["members"][i] for i in order]
    model, losses, diverged = train_members(task["arch"], members, x_train, y_train, device)
    predictions = predict(model, x_eval, task["threshold"])
    counts = confusion_counts(predictions, y_eval)
    seconds = (time.perf_counter() - started) / len(members)

    results = [None] * len(members)
    for row, i in enumerate(order):
        member = members[row]
        results[i] = {
            "combination": member["combination"], "rerun": member["rerun"], "seed": member["seed"],
            **{k: int(v[row]) for k, v in counts.items()},
            "train_loss": float(losses[row]), "diverged": bool(diverged[row]), "seconds": seconds,
            "predictions": np.packbits(predictions[row].cpu().numpy()).tobytes(),
        }
    return results


def train_members(arch: dict, members: list[dict], x: torch.Tensor, y: torch.Tensor, device: torch.device):
    """The fused training loop. Returns (model, last-epoch mean loss per member, diverged flags)."""
    n_rows, n_features = x.shape
    seeds = [m["seed"] for m in members]
    params = [m["params"] for m in members]
    model = build_model(arch, params, n_features, [member_generator(s, "init") for s in seeds], device)
    optimizer = FusedOptimizer(model.params.data, model.params.grad, params)
    batch = arch["batch_size"]
    dropout = DropoutPool([p["dropout"] for p in params], [member_generator(s, "dropout") for s in seeds],
                          max_window=min(batch, n_rows) * model.max_dropout_window, device=device)
    shufflers = [member_generator(s, "shuffle") for s in seeds]
    loss_fn = LOSSES[arch["loss_function"]]
    y = y.float()
    count = len(members)
    diverged = torch.zeros(count, dtype=torch.bool, device=device)
    for _ in range(arch["max_epochs"]):
        # each member's own batch order; rows are gathered per step, which is
        # cheaper than copying the whole epoch in shuffled order
        order = torch.stack([torch.randperm(n_rows, generator=g) for g in shufflers]).to(device)
        total = torch.zeros(count, device=device)
        for start in range(0, n_rows, batch):
            rows = order[:, start:start + batch]
            xb, yb = x[rows], y[rows]
            per_member = model.train_step(xb, yb, dropout, loss_fn)
            optimizer.step()
            total += per_member
        diverged |= ~torch.isfinite(total)
    diverged |= ~torch.isfinite(model.params.data).all(dim=1)
    return model, (total / n_rows).cpu().numpy(), diverged.cpu().numpy()


@torch.no_grad()
def predict(model, x: torch.Tensor, threshold: float, chunk: int = 4096) -> torch.Tensor:
    """0/1 predictions [members, rows]: probability >= threshold. NaN weights predict 0."""
    members = model.params.data.shape[0]
    out = []
    for start in range(0, x.shape[0], chunk):
        xb = x[start:start + chunk].unsqueeze(0).expand(members, -1, -1)
        out.append(torch.sigmoid(model.forward(xb, None)) >= threshold)
    return torch.cat(out, dim=1)


def confusion_counts(predictions: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    actual = y.bool().unsqueeze(0)
    counts = {
        "tp": (predictions & actual).sum(dim=1),
        "fp": (predictions & ~actual).sum(dim=1),
        "tn": (~predictions & ~actual).sum(dim=1),
        "fn": (~predictions & actual).sum(dim=1),
    }
    return {k: v.cpu().numpy() for k, v in counts.items()}
