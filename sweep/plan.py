"""Which combinations a run trains, their ids, and how they are packed into tasks.

The grid is the product of the value lists, in itertools.product order; random search
takes the first distinct grid positions of a random stream seeded by SEED.
Both are a pure function of the config and SEED, so a resumed or re-run sweep
plans exactly the same combinations, and a larger NUMBER_OF_COMBINATIONS_TO_TRY
keeps every combination of the smaller one. Every training's seed comes from
(SEED, combination, rerun) alone (training/seeds.py): results never depend on
CPU_COUNT or on the order work finishes, and a grown sweep's trainings equal a
fresh run's.
"""
from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
import json
import math
import os
import warnings

import numpy as np

from inputs.hyperparameters import (
    ARCHITECTURE_KEYS,
    HYPERPARAMETERS,
    LSTM_ONLY,
    hidden_widths,
)
from inputs.settings import Settings

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
    return _point(grid_blocks(values), index)


def _point(blocks: list[dict], index: int) -> dict:
    for block in blocks:
        shape = [len(v) for v in block.values()]
        size = math.prod(shape)
        if index < size:
            position = np.unravel_index(index, shape)
            return {name: block[name][int(i)] for name, i in zip(block, position)}
        index -= size
    raise IndexError(index)


def planned_positions(settings: Settings) -> list[int] | None:
    """The grid positions a planned sweep trains, in order: None for the whole grid, else
    NUMBER_OF_COMBINATIONS_TO_TRY distinct random ones."""
    if settings.explore_all_combinations:
        return None
    size = grid_size(settings.hyperparameter_values)
    wanted = settings.number_of_combinations_to_try
    if wanted > size:
        warnings.warn(f"NUMBER_OF_COMBINATIONS_TO_TRY = {wanted} is more than the {size} combinations the "
                      f"grid holds; trying all {size}.", stacklevel=3)
        wanted = size
    return sorted(distinct_draws(settings.seed, size, wanted))


def planned_combinations(settings: Settings) -> list[dict]:
    """The grid in full, or NUMBER_OF_COMBINATIONS_TO_TRY distinct random points of it."""
    candidates = Candidates(settings)
    return [candidates.combination(k) for k in range(len(candidates))]


class Candidates:
    """A planned sweep's combinations, in order: their ids, and each combination built when asked.

    Only the grid positions and the ids are kept: a dict per combination
    for the whole run was most of what a big grid cost the main process.
    Read by records/ledger.py's claim_planned (`ids`, `combination(k)`).
    """

    def __init__(self, settings: Settings) -> None:
        self.blocks = grid_blocks(settings.hyperparameter_values)
        chosen = planned_positions(settings)
        self.positions = range(grid_size(settings.hyperparameter_values)) if chosen is None else chosen
        self.ids = [combination_id(_point(self.blocks, i)) for i in self.positions]

    def __len__(self) -> int:
        return len(self.ids)

    def combination(self, k: int) -> dict:
        return _point(self.blocks, self.positions[k])


def distinct_draws(seed: int, size: int, wanted: int, batch: int = 4096) -> list[int]:
    """The first `wanted` distinct numbers in [0, size) of a random stream seeded by `seed`.

    Unlike random.sample, whose method and so whose picks change with the
    count asked for, the first k of this are also the first k of any larger
    draw: growing the budget only adds combinations. The stream is drawn in
    batches of a fixed size, so it is the same whatever `wanted` is.
    """
    stream = np.random.Generator(np.random.PCG64(seed))
    seen: set[int] = set()
    picked: list[int] = []
    while len(picked) < wanted:
        for x in stream.integers(0, size, batch).tolist():
            if x not in seen:
                seen.add(x)
                picked.append(x)
                if len(picked) == wanted:
                    break
    return picked


def combination_id(combination: dict) -> str:
    """A short id that names the same hyperparameters in every run and every grid."""
    text = json.dumps([combination[name] for name in HYPERPARAMETERS])
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


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


# ---------------------------------------------------------------- task cost model
# Seconds of one fused MLP training step on one core (torch 2.13 CPU, one
# thread), fitted to `python -m bench.steps --members 12,24,36,48,64` on the
# development machine (within ~10% over 12-64 members, both reference
# architectures, with and without dropout):
#   step = STEP_S + members * (PARAM_STEP_S * params + batch * (PARAM_ROW_S * params + UNIT_ROW_S * units))
#          * (1 + CACHE_PER_MIB * working set in MiB)
# where params are a member's weights and biases, units its hidden units (the
# elementwise work; dropout adds DROPOUT_UNIT_SHARE to it, for every member of
# the task once any member drops out) and the working set is the members'
# parameters, gradients and two optimizer states. What it says: a step has a
# fixed ~0.55 ms (Python, dispatch, one optimizer call per group) that larger
# tasks share, until their parameters outgrow the caches.
# These were fitted to the torch operations' step. The C step (models/native.py),
# which the reference sweep's MLPs now train with, has a far smaller fixed cost
# (~0.02-0.1 ms) and dropout costs it little, so for those tasks the model
# overrates both: it errs towards fewer, larger tasks and puts dropout tasks
# first. Refitting it per step implementation is left to a later round.
STEP_S = 0.56e-3
PARAM_STEP_S = 0.8e-9          # the optimizer's pass over each parameter, once per step
PARAM_ROW_S = 0.059e-9         # matmuls: forward and backward, per parameter and row
UNIT_ROW_S = 3.5e-9            # activation, its backward and the bias sums, per unit and row
DROPOUT_UNIT_SHARE = 0.44
CACHE_PER_MIB = 0.061
# The LSTM's cost grows with its members: each member runs torch's LSTM kernel
# once per layer (models/fused_lstm.py), so nothing of it is shared. Fitted to
# FusedLSTM.train_step on one thread (hidden 16 and 32, 1 and 2 layers, batch
# 32 and 256): ~4-6 ms a step for 6 members at hidden 16, batch 32, ~10-12 for 12;
# within ~10% there, while hidden 64 (bigger matmuls, run faster) is overrated ~1.7x.
LSTM_CALL_S = 0.15e-3          # one kernel call forward and backward (dispatch, autograd), per member and layer
LSTM_UNIT_ROW_S = 9e-9         # per gate unit (5 per hidden unit), time step and row, forward and backward
CLEAR_GAIN = 0.05              # make_tasks departs from equal shares only for a modelled gain this large


def task_cost(task: list[dict], n_features: int) -> float:
    """Modelled seconds per training row of one fused task (times the rows: seconds of the task)."""
    return fused_cost(task[0]["params"], len(task), any(t["params"]["dropout"] > 0 for t in task), n_features)


def fused_cost(p: dict, members: int, dropout: bool, n_features: int) -> float:
    """task_cost of `members` members of architecture `p`, any of them with dropout or none."""
    batch = p["batch_size"]
    lstm = p["model"] == "lstm"
    n_in = p["lstm_hidden_size"] if lstm else n_features
    widths = [n_in] + hidden_widths(p["hidden_layers"], n_in) + [1]
    params = sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
    units = sum(widths[1:-1])
    step, per_member = STEP_S, 0.0
    if lstm:
        h, layers = p["lstm_hidden_size"], p["lstm_num_layers"]
        params += 4 * h * (h + 2) * layers
        per_member += LSTM_CALL_S * layers + batch * LSTM_UNIT_ROW_S * n_features * 5 * h * layers
    if dropout:
        units *= 1 + DROPOUT_UNIT_SHARE
    working_set = members * params * 16 / 2 ** 20
    per_member += PARAM_STEP_S * params + batch * (PARAM_ROW_S * params + UNIT_ROW_S * units)
    step += members * per_member * (1 + CACHE_PER_MIB * working_set)
    return p["max_epochs"] * step / batch


def lpt_makespan(costs: list[float], cpu_count: int) -> float:
    """When the last worker finishes if tasks go, biggest first, to whichever worker is free (as the pool runs them)."""
    loads = [0.0] * cpu_count
    for cost in sorted(costs, reverse=True):
        heapq.heapreplace(loads, loads[0] + cost)
    return max(loads)


def _unit_order(reruns: list[dict]) -> tuple:
    p = reruns[0]["params"]
    return (p["dropout"] > 0, p["optimizer"], p["learning_rate"], p["l2_regularization"], reruns[0]["combination"])


class _Group:
    """The trainings of one architecture (and fold), in combination units, and how to cut them into k tasks."""

    def __init__(self, units: list[list[dict]], n_features: int) -> None:
        self.units, self.n_features = units, n_features
        self.members = sum(map(len, units))
        self.k_min = math.ceil(len(units) / max(1, MAX_MEMBERS_PER_TASK // max(map(len, units))))
        # an MLP step's fixed cost makes small splits lose; an LSTM step is mostly per-member work
        lstm = units[0][0]["params"]["model"] == "lstm"
        self.k_max = max(self.k_min, min(len(units), self.members if lstm else self.members // MIN_MEMBERS_TO_SPLIT))
        self._cuts: dict[int, tuple[list[list[dict]], list[float]]] = {}
        # a task's modelled cost depends only on its member count and whether any drops out
        # (the architecture is the group's): running counts make each span's cost a lookup
        self._members_before = list(itertools.accumulate(map(len, units), initial=0))
        self._dropouts_before = list(itertools.accumulate(
            (any(t["params"]["dropout"] > 0 for t in unit) for unit in units), initial=0))
        self._cost_of = functools.cache(lambda members, dropout: fused_cost(units[0][0]["params"], members,
                                                                            dropout, n_features))

    def cost(self, start: int, stop: int) -> float:
        members = self._members_before[stop] - self._members_before[start]
        if members > MAX_MEMBERS_PER_TASK:
            return math.inf
        return self._cost_of(members, self._dropouts_before[stop] > self._dropouts_before[start])

    def cut(self, k: int) -> tuple[list[list[dict]], list[float]]:
        """k tasks of consecutive units, and their costs; the largest is as small as a local search finds."""
        if k not in self._cuts:
            # start from equal numbers of units, then move each boundary while the larger
            # of its two neighbours gets cheaper (dropout and cache pressure make units unequal)
            bounds = [i * len(self.units) // k for i in range(k + 1)]
            for _ in range(3):
                moved = False
                for i in range(1, k):
                    best = max(self.cost(bounds[i - 1], bounds[i]), self.cost(bounds[i], bounds[i + 1]))
                    for b in range(bounds[i - 1] + 1, bounds[i + 1]):
                        worst = max(self.cost(bounds[i - 1], b), self.cost(b, bounds[i + 1]))
                        if worst < best * (1 - 1e-9):
                            best, bounds[i], moved = worst, b, True
                if not moved:
                    break
            pairs = list(zip(bounds[:-1], bounds[1:]))
            self._cuts[k] = ([[t for unit in self.units[a:b] for t in unit] for a, b in pairs],
                             [self.cost(a, b) for a, b in pairs])
        return self._cuts[k]


def make_tasks(trainings: list[dict], cpu_count: int, n_features: int) -> list[list[dict]]:
    """Pack trainings (one dict each) into fused tasks, most expensive first.

    Trainings with the same architecture share one task, cut into a multiple
    of `cpu_count` chunks when large enough (at most MAX_MEMBERS_PER_TASK
    members each), so that every worker gets a share; the cut points balance
    the chunks' modelled cost (task_cost), not their member counts. The model
    may then cut an architecture once more or once less where that clearly
    shortens the run. Tasks are dispatched by modelled cost, biggest first
    (longest-processing-time order): that is what the pool's free workers take
    next, so the last worker does not finish long after the others, and it
    knows that a task with dropout costs more than one without. A
    combination's reruns always stay in one task, so a task finishes whole
    combinations.
    """
    by_group: dict[tuple, dict[str, list[dict]]] = {}
    architectures: dict[str, tuple] = {}  # per combination: its reruns share it
    for training in trainings:
        cid = training["combination"]
        if cid not in architectures:
            architectures[cid] = architecture(training["params"])
        # trainings on different walk-forward folds see different data: never fused
        combos = by_group.setdefault((architectures[cid], training.get("fold", 0)), {})
        combos.setdefault(cid, []).append(training)
    # Chunks that agree on dropout and optimizer run faster: a chunk without
    # dropout skips the mask multiplies, and one learning rate per optimizer
    # is one fused update kernel. So sort before cutting.
    groups = [_Group(sorted((sorted(reruns, key=lambda t: t["rerun"]) for reruns in combos.values()),
                            key=_unit_order), n_features) for combos in by_group.values()]
    # The default: each architecture in the fewest tasks the member cap allows, rounded up
    # to a multiple of cpu_count once it is large enough to split, so that every worker
    # gets an equal share of it (timed end to end, this beat the alternatives the model
    # rates within a few percent of it, e.g. tasks of 12 or of 48 members).
    ks = [min(len(g.units), cpu_count * math.ceil(g.k_min / cpu_count)) if g.members >= cpu_count * MIN_MEMBERS_TO_SPLIT
          else g.k_min for g in groups]

    def evaluate(ks: list[int]) -> tuple[float, float]:
        costs = [c for g, k in zip(groups, ks) for c in g.cut(k)[1]]
        return lpt_makespan(costs, cpu_count), sum(costs)

    # Then one architecture more or less cut, while the model says that ends the run
    # clearly sooner (a task too large for the others to balance, a split that only
    # adds fixed cost): the model is within ~10%, so smaller gains are left alone.
    best = evaluate(ks)
    while True:
        moves = [ks[:i] + [k] + ks[i + 1:] for i, g in enumerate(groups)
                 for k in (ks[i] - 1, ks[i] + 1) if g.k_min <= k <= g.k_max]
        scored = [(evaluate(trial), trial) for trial in moves]
        if not scored:
            break
        score, trial = min(scored)
        if not score[0] < best[0] * (1 - CLEAR_GAIN):
            break
        ks, best = trial, score
    tasks = [(cost, task) for g, k in zip(groups, ks) for task, cost in zip(*g.cut(k))]
    tasks.sort(key=lambda pair: -pair[0])
    return [task for _, task in tasks]


def round_size(settings: Settings, cpu_count: int, folds: int) -> int:
    """How many combinations to claim at a time: enough for two full fused tasks per worker.

    Big enough that fusing and balancing work as well as with the whole
    sweep in view (the reference sweep is claimed in one round), small enough
    that processes sharing a study each get a share.
    """
    if settings.pruner is not None:
        return cpu_count + 1  # one combination per task; a little queued so the workers never wait
    if not settings.planned:
        # a model-based sampler learns from results: ask for a few at a time (about a tenth
        # of the budget), trading some fusing for more rounds of feedback
        return max(cpu_count, min(settings.number_of_combinations_to_try // 10,
                                  2 * cpu_count * MAX_MEMBERS_PER_TASK // (settings.rerun_count * folds)))
    override = os.environ.get("SWEEP_ROUND_COMBINATIONS")  # tests: force several rounds on a small grid
    if override:
        return int(override)
    return max(cpu_count, 2 * cpu_count * MAX_MEMBERS_PER_TASK // (settings.rerun_count * folds))
