"""Which combinations a run trains, their ids and seeds, and how they are packed into tasks.

The grid is the product of the value lists (itertools.product); random search
draws distinct grid positions with random.sample. Both are a pure function of
the config and SEED, so a resumed or re-run sweep plans exactly the same
combinations, and every training's seed comes from (SEED, combination, rerun)
alone: results never depend on CPU_COUNT or on the order work finishes.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import warnings

import numpy as np

from settings import ARCHITECTURE_KEYS, HYPERPARAMETERS, LSTM_ONLY, Settings, hidden_widths

MAX_MEMBERS_PER_TASK = 64   # past this a fused step is compute-bound; bigger tasks only delay results
MIN_MEMBERS_TO_SPLIT = 8    # below this, splitting a group costs more in per-step overhead than it balances


def grid_blocks(values: dict) -> list[dict]:
    """The grid as one product per model: LSTM-only settings do not multiply MLP combinations."""
    blocks = []
    for model in values["model"]:
        block = {name: ([None] if name in LSTM_ONLY and model != "lstm" else values[name])
                 for name in HYPERPARAMETERS}
        block["model"] = [model]
        blocks.append(block)
    return blocks


def grid_size(values: dict) -> int:
    return sum(math.prod(len(v) for v in block.values()) for block in grid_blocks(values))


def combination_at(values: dict, index: int) -> dict:
    """The `index`-th grid point, counting through each model's product in turn."""
    for block in grid_blocks(values):
        shape = [len(v) for v in block.values()]
        size = math.prod(shape)
        if index < size:
            position = np.unravel_index(index, shape)
            return {name: block[name][int(i)] for name, i in zip(block, position)}
        index -= size
    raise IndexError(index)


def planned_combinations(settings: Settings) -> list[dict]:
    """The grid in full, or NUMBER_OF_COMBINATIONS_TO_TRY distinct random points of it."""
    values = settings.hyperparameter_values
    size = grid_size(values)
    if settings.explore_all_combinations:
        return [dict(zip(block, point)) for block in grid_blocks(values)
                for point in itertools.product(*block.values())]
    wanted = settings.number_of_combinations_to_try
    if wanted > size:
        warnings.warn(f"NUMBER_OF_COMBINATIONS_TO_TRY = {wanted} is more than the {size} combinations the "
                      f"grid holds; trying all {size}.", stacklevel=2)
        wanted = size
    # sampling positions without replacement: never the same combination twice
    indices = sorted(random.Random(settings.seed).sample(range(size), wanted))
    return [combination_at(values, i) for i in indices]


def combination_id(combination: dict) -> str:
    """A short id that names the same hyperparameters in every run and every grid."""
    text = json.dumps([combination[name] for name in HYPERPARAMETERS])
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def training_seed(seed: int, combination: str, rerun: int) -> int:
    """Seed of one training: depends on SEED, the combination and the rerun number only."""
    state = np.random.SeedSequence([seed, int(combination, 16), rerun]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1  # 63 bits: any torch.Generator accepts it


def architecture(combination: dict) -> tuple:
    return tuple(json.dumps(combination[k]) for k in ARCHITECTURE_KEYS)


def training_flops(combination: dict, n_features: int, n_rows: int) -> float:
    """Forward and backward FLOPs of one training (2 per multiply-add, backward twice the forward)."""
    lstm = combination["model"] == "lstm"
    n_in = combination["lstm_hidden_size"] if lstm else n_features
    widths = [n_in] + hidden_widths(combination["hidden_layers"], n_in) + [1]
    weights = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    if lstm:  # every feature is one step through each layer's 4 gates
        h = combination["lstm_hidden_size"]
        weights += n_features * 4 * h * (h + 1) * combination["lstm_num_layers"]
    return 6 * weights * n_rows * combination["max_epochs"]


def _unit_order(reruns: list[dict]) -> tuple:
    p = reruns[0]["params"]
    return (p["dropout"] > 0, p["optimizer"], p["learning_rate"], p["l2_regularization"], reruns[0]["combination"])


def make_tasks(trainings: list[dict], cpu_count: int, n_features: int) -> list[list[dict]]:
    """Pack trainings (one dict each) into fused tasks, most expensive first.

    Trainings with the same architecture share one task, cut into a multiple
    of `cpu_count` equal chunks when large enough so the workers end
    together; dispatching the biggest first (longest-processing-time order)
    keeps the last worker from finishing long after the others. A
    combination's reruns always stay in one task, so a task finishes whole
    combinations.
    """
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for training in trainings:
        # trainings on different walk-forward folds see different data: never fused
        combos = groups.setdefault((architecture(training["params"]), training.get("fold", 0)), {})
        combos.setdefault(training["combination"], []).append(training)
    tasks = []
    for combos in groups.values():
        # Chunks that agree on dropout and optimizer run faster: a chunk without
        # dropout skips the mask multiplies, and one learning rate per optimizer
        # is one fused update kernel. So sort before cutting.
        units = sorted((sorted(reruns, key=lambda t: t["rerun"]) for reruns in combos.values()),
                       key=_unit_order)
        n_members = sum(map(len, units))
        # count chunks in whole combinations, so that rounding never pushes one past the cap
        units_per_task = max(1, MAX_MEMBERS_PER_TASK // max(map(len, units)))
        chunks = math.ceil(len(units) / units_per_task)
        if n_members >= cpu_count * MIN_MEMBERS_TO_SPLIT:
            chunks = cpu_count * math.ceil(chunks / cpu_count)
        chunks = min(chunks, len(units))
        # exactly `chunks` tasks whose sizes differ by at most one combination
        bounds = [i * len(units) // chunks for i in range(chunks + 1)]
        for start, stop in zip(bounds[:-1], bounds[1:]):
            tasks.append([t for unit in units[start:stop] for t in unit])
    tasks.sort(key=lambda task: -sum(training_flops(t["params"], n_features, 1) for t in task))
    return tasks
