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

from models.build import build_model
from models.components import LOSSES
from models.dropout import DropoutPool
from models.optim import FusedOptimizer, group_key
from training.pruning import after_epoch_reporter
from training.seeds import training_seed

_STREAMS = {"init": 0, "dropout": 1, "shuffle": 2}  # independent random streams per member


def member_generator(seed: int, stream: str) -> torch.Generator:
    state = np.random.SeedSequence([seed, _STREAMS[stream]]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@lru_cache(maxsize=64)  # a fold's six arrays, for up to ten folds
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
    members = [{**task["members"][i], "seed": training_seed(task["sweep_seed"], task["members"][i]["combination"],
                                                            task["members"][i]["rerun"])} for i in order]
    after_epoch = None
    if task.get("prune"):  # one combination whose trial may be pruned after any epoch (training/pruning.py)
        loss_name = task["arch"]["loss_function"]
        after_epoch = after_epoch_reporter(task["prune"],
                                           lambda model: evaluation_loss(model, x_eval, y_eval, loss_name))
    model, losses, diverged, epochs = train_members(task["arch"], members, x_train, y_train, device,
                                                    after_epoch=after_epoch, channels=task.get("channels", 1))
    predictions = predict(model, x_eval, task["threshold"])
    counts = confusion_counts(predictions, y_eval)
    hits, predicted = order_hits(predictions, task["data"], device)
    seconds = (time.perf_counter() - started) / len(members)

    results = [None] * len(members)
    for row, i in enumerate(order):
        member = members[row]
        results[i] = {
            "combination": member["combination"], "rerun": member["rerun"], "seed": member["seed"],
            **{k: int(v[row]) for k, v in counts.items()},
            "train_loss": float(losses[row]), "diverged": bool(diverged[row]), "seconds": seconds,
            "epochs": epochs, "pruned": epochs < task["arch"]["max_epochs"],
            "predictions": np.packbits(predictions[row].cpu().numpy()).tobytes(),
        }
        if hits is not None:
            results[i]["hits"] = hits[row]
            results[i]["predicted"] = None if predicted is None else predicted[row]
    return results


def order_hits(predictions: torch.Tensor, data: dict, device: torch.device):
    """Each member's true positives under every label order of the permutation test [members, orders]
    (and the positives each order counts, where some orders leave rows out), or (None, None) without them.

    Sums over rows, which the main process adds up over a combination's
    reruns and folds (ranking/significance.py: PermutationTest.hits);
    counted here, the product with the labels runs on every core.
    """
    if "order_labels" not in data:
        return None, None
    as_float = predictions.float()
    out = []
    for name in ("order_labels", "order_mask"):
        matrix = load_arrays(data[name], str(device)) if name in data else None
        out.append(None if matrix is None else torch.round(as_float @ matrix).to(torch.int32).cpu().numpy())
    return out[0], out[1]


# Rows are gathered in each member's batch order for a block of steps at a time,
# into buffers allocated once: one index_select per block costs ~15 us a step,
# where a gather per step cost ~150 us and a fresh multi-megabyte buffer per
# block as much again in page faults. They are gathered feature-major (columns
# of x transposed), the layout the MLP computes in (models/fused_mlp.py). The
# block is capped so that large data sets or tasks never copy more than this at once.
GATHER_BYTES = 4 << 20


def train_members(arch: dict, members: list[dict], x: torch.Tensor, y: torch.Tensor, device: torch.device,
                  after_epoch=None, channels: int = 1):
    """The fused training loop.

    Returns (model, last epoch's mean training loss per member, diverged flags,
    epochs trained). `after_epoch(epoch_index, model)`, when given, is called
    after each epoch (epoch_index from 0); when it returns True, training stops.
    `channels`: how many channels the features hold (an LSTM reads them a day at a time).
    """
    n_rows, n_features = x.shape
    seeds = [m["seed"] for m in members]
    params = [m["params"] for m in members]
    model = build_model(arch, params, n_features, [member_generator(s, "init") for s in seeds], device, channels)
    optimizer = FusedOptimizer(model.params.data_blocks, model.params.grad_blocks, params)
    batch = arch["batch_size"]
    dropout = DropoutPool([p["dropout"] for p in params], [member_generator(s, "dropout") for s in seeds],
                          max_window=min(batch, n_rows) * model.max_dropout_window, device=device)
    shufflers = [member_generator(s, "shuffle") for s in seeds]
    loss_fn = LOSSES[arch["loss_function"]]
    y = y.float()
    count = len(members)
    diverged = torch.zeros(count, dtype=torch.bool, device=device)
    steps_per_block = max(1, GATHER_BYTES // (count * batch * n_features * x.element_size()))
    block_rows = min(batch * steps_per_block, n_rows)
    x_columns = x.T.contiguous()  # [features, rows]
    x_block = torch.empty(n_features * count * block_rows, dtype=x.dtype, device=device)
    y_block = torch.empty(count * block_rows, device=device)
    logits = torch.empty(count, block_rows, device=device)
    epochs = 0
    for epoch in range(arch["max_epochs"]):
        # each member's own batch order
        order = torch.stack([torch.randperm(n_rows, generator=g) for g in shufflers]).to(device)
        total = torch.zeros(count, device=device)
        for block in range(0, n_rows, block_rows):
            rows = order[:, block:block + block_rows]
            width = rows.shape[1]
            gathered = x_block[:n_features * count * width].view(n_features, count * width)
            torch.index_select(x_columns, 1, rows.reshape(-1), out=gathered)
            # [members, width, features] as a view of the [features, members, width] gather
            xs = gathered.view(n_features, count, width).permute(1, 2, 0)
            ys = torch.index_select(y, 0, rows.reshape(-1), out=y_block[:count * width]).view(count, width)
            # the whole block in one C call where that applies (models/native.py), else batch by batch
            if not (hasattr(model, "train_block")
                    and model.train_block(xs, ys, dropout, loss_fn, optimizer, out=logits[:, :width])):
                for start in range(0, width, batch):
                    stop = min(start + batch, width)
                    model.train_step(xs[:, start:stop], ys[:, start:stop], dropout, loss_fn, out=logits[:, start:stop])
                    optimizer.step()
            # each batch's loss as it was seen (before its update), summed once per block
            total += loss_fn(logits[:, :width], ys).sum(dim=1)
        diverged |= ~torch.isfinite(total)
        epochs += 1
        if after_epoch is not None and after_epoch(epoch, model):
            break
    diverged |= ~model.params.finite_rows()
    return model, (total / n_rows).cpu().numpy(), diverged.cpu().numpy(), epochs


@torch.no_grad()
def evaluation_loss(model, x, y, loss_name: str, chunk: int = 4096) -> np.ndarray:
    """Each member's mean loss on (x, y) [members], in eval mode (no dropout); NaN weights give NaN."""
    weights = model.params.buffer
    x = torch.as_tensor(x).to(device=weights.device, dtype=weights.dtype)
    y = torch.as_tensor(y).to(device=weights.device, dtype=weights.dtype)
    loss_fn = LOSSES[loss_name]
    members = model.params.members
    total = torch.zeros(members, dtype=torch.float64, device=weights.device)
    for start in range(0, x.shape[0], chunk):
        xb = x[start:start + chunk].unsqueeze(0).expand(members, -1, -1)
        yb = y[start:start + chunk].unsqueeze(0).expand(members, -1)
        total += loss_fn(model.forward(xb, None), yb).sum(dim=1, dtype=torch.float64)
    return (total / x.shape[0]).cpu().numpy()


@torch.no_grad()
def predict(model, x: torch.Tensor, threshold: float, chunk: int = 4096) -> torch.Tensor:
    """0/1 predictions [members, rows]: probability >= threshold. NaN weights predict 0."""
    members = model.params.members
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
