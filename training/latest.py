"""The worker's side of `evaluate.py --predict`: the winner's reruns as an ensemble, scoring the latest rows.

The reruns are trained with the sweep's own seeds on the standardized train
file, or loaded from the weights saved the last time (when they are this
combination's, in this layout), and every rerun scores every latest row.
"""
from __future__ import annotations

import numpy as np
import torch

from models.build import build_model
from training.loop import member_generator, train_members


def parameter_layout(model) -> dict[str, list[int]]:
    """Each parameter's name and per-member shape, in the order of the saved rows."""
    return {name: list(shape) for name, shape in model.params.shapes.items()}


def score_latest(task: dict) -> dict:
    """task: params, seeds, channels, x_train, y_train, x_latest (standardized), and weights/layout saved before.

    Returns the probabilities [reruns, latest rows], the weights [reruns, n]
    and their layout, and whether they were trained here (else loaded).
    """
    params, seeds = task["params"], task["seeds"]
    x_train = torch.from_numpy(task["x_train"])
    channels = task.get("channels", 1)
    model = build_model(params, [params] * len(seeds), x_train.shape[1],
                        [member_generator(s, "init") for s in seeds], torch.device("cpu"), channels)
    trained = task.get("weights") is None or task.get("layout") != parameter_layout(model)
    if trained:  # nothing saved, or saved by a version that lays the weights out otherwise
        members = [{"seed": seed, "params": params} for seed in seeds]
        model, *_ = train_members(params, members, x_train, torch.from_numpy(task["y_train"]), torch.device("cpu"),
                                  channels=channels)
    else:
        model.params.load_rows(torch.from_numpy(task["weights"]))
    with torch.no_grad():
        x = torch.from_numpy(task["x_latest"]).unsqueeze(0).expand(len(seeds), -1, -1)
        probabilities = torch.sigmoid(model.forward(x, None)).numpy()
    return {"probabilities": np.asarray(probabilities), "weights": model.params.rows().numpy(),
            "layout": parameter_layout(model), "trained": trained}
