"""Tests for sweep/plan.py: grid expansion, random sampling, ids, seeds and task packing."""

import itertools
import json
import math
from collections import Counter

import pytest

from inputs.hyperparameters import HYPERPARAMETERS
from inputs.settings import load_settings
from sweep import plan
from training.seeds import training_seed


def make_settings(tmp_path, grid, name="config.py", **config):
    """Settings from a small config file written to tmp_path."""
    lines = [f"hyperparameter_values = {grid!r}"]
    lines += [f"{key} = {value!r}" for key, value in config.items()]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return load_settings(path)


MLP_GRID = {
    "hidden_layers": [[1], [2, 1]],
    "activation": ["relu", "tanh", "gelu"],
    "dropout": [0.0, 0.2],
    "learning_rate": [1e-3, 3e-4, 1e-4],
    "optimizer": ["adam", "sgd"],
}


def ids(combinations):
    return [plan.combination_id(c) for c in combinations]


# --------------------------------------------------------------------------
# Grid expansion
# --------------------------------------------------------------------------

@pytest.mark.parametrize("grid, expected", [
    (MLP_GRID, 2 * 3 * 2 * 3 * 2),
    ({"activation": ["relu"]}, 1),
    ({}, 1),
    ({"batch_size": [16, 32, 64, 128], "max_epochs": [1, 2, 3]}, 12),
    # LSTM-only values are ignored for an all-MLP grid
    ({"activation": ["relu", "tanh"], "lstm_hidden_size": [8, 16, 32]}, 2),
])
def test_grid_size_all_mlp(tmp_path, grid, expected):
    settings = make_settings(tmp_path, grid)
    combinations = plan.planned_combinations(settings)
    assert plan.grid_size(settings.hyperparameter_values) == expected
    assert len(combinations) == expected
    assert len(set(ids(combinations))) == expected
    assert all(c["model"] == "mlp" and c["lstm_hidden_size"] is None and c["lstm_num_layers"] is None
               for c in combinations)


def test_full_grid_is_the_cartesian_product(tmp_path):
    settings = make_settings(tmp_path, MLP_GRID)
    got = {(json.dumps(c["hidden_layers"]), c["activation"], c["dropout"], c["learning_rate"], c["optimizer"])
           for c in plan.planned_combinations(settings)}
    expected = {(json.dumps(h), a, float(d), float(lr), o) for h, a, d, lr, o in itertools.product(
        *[MLP_GRID[k] for k in ("hidden_layers", "activation", "dropout", "learning_rate", "optimizer")])}
    assert got == expected


def test_lstm_only_values_multiply_only_the_lstm_part(tmp_path):
    grid = {"model": ["mlp", "lstm"], "activation": ["relu", "tanh"], "learning_rate": [1e-3, 1e-4, 1e-5],
            "lstm_hidden_size": [8, 16, 32], "lstm_num_layers": [1, 2]}
    settings = make_settings(tmp_path, grid)
    shared = 2 * 3
    expected = shared + shared * 3 * 2   # 6 MLP + 36 LSTM, not 2 * 6 * 6 = 72
    combinations = plan.planned_combinations(settings)
    assert plan.grid_size(settings.hyperparameter_values) == expected == 42
    assert len(combinations) == expected
    by_model = Counter(c["model"] for c in combinations)
    assert by_model == {"mlp": 6, "lstm": 36}
    for c in combinations:
        if c["model"] == "mlp":
            assert c["lstm_hidden_size"] is None and c["lstm_num_layers"] is None
        else:
            assert c["lstm_hidden_size"] in (8, 16, 32) and c["lstm_num_layers"] in (1, 2)
    assert len(set(ids(combinations))) == expected


def test_lstm_defaults_apply_when_lstm_values_are_left_out(tmp_path):
    settings = make_settings(tmp_path, {"model": ["lstm", "mlp"]})
    combinations = plan.planned_combinations(settings)
    assert [(c["model"], c["lstm_hidden_size"], c["lstm_num_layers"]) for c in combinations] == [
        ("lstm", 16, 1), ("mlp", None, None)]


# --------------------------------------------------------------------------
# Random search
# --------------------------------------------------------------------------

RANDOM_GRID = {**MLP_GRID, "model": ["mlp", "lstm"], "lstm_hidden_size": [8, 16]}   # 72 + 144 = 216


@pytest.mark.parametrize("wanted", [1, 5, 40, 215])
def test_random_gives_exactly_n_distinct_grid_points(tmp_path, wanted):
    settings = make_settings(tmp_path, RANDOM_GRID, EXPLORE_ALL_COMBINATIONS=False,
                             NUMBER_OF_COMBINATIONS_TO_TRY=wanted, SEED=3)
    full = make_settings(tmp_path, RANDOM_GRID, name="full.py")
    assert plan.grid_size(settings.hyperparameter_values) == 216
    chosen = ids(plan.planned_combinations(settings))
    assert len(chosen) == wanted
    assert len(set(chosen)) == wanted
    assert set(chosen) <= set(ids(plan.planned_combinations(full)))


def test_random_same_seed_same_list_other_seed_other_list(tmp_path):
    def chosen(seed, name):
        settings = make_settings(tmp_path, RANDOM_GRID, name=name, EXPLORE_ALL_COMBINATIONS=False,
                                 NUMBER_OF_COMBINATIONS_TO_TRY=10, SEED=seed)
        return ids(plan.planned_combinations(settings))

    first, again, other = chosen(0, "a.py"), chosen(0, "b.py"), chosen(1, "c.py")
    assert first == again
    assert first != other
    assert set(first) != set(other)


def test_a_larger_random_budget_keeps_every_combination_of_the_smaller_one(tmp_path):
    """Growing NUMBER_OF_COMBINATIONS_TO_TRY only adds combinations: a finished run grows instead of starting over."""
    def chosen(wanted):
        settings = make_settings(tmp_path, RANDOM_GRID, name=f"n{wanted}.py", EXPLORE_ALL_COMBINATIONS=False,
                                 NUMBER_OF_COMBINATIONS_TO_TRY=wanted, SEED=5)
        return set(ids(plan.planned_combinations(settings)))

    sizes = [3, 6, 7, 30, 100, 215]  # random.sample changes its method (and picks) between such sizes
    for smaller, larger in zip(sizes, sizes[1:]):
        assert chosen(smaller) < chosen(larger)


def test_distinct_draws_are_uniform_over_the_grid():
    """Every grid position is equally likely to be among the first draws (chi-square over many seeds)."""
    from scipy import stats
    hits = Counter(x for seed in range(2000) for x in plan.distinct_draws(seed, 20, 5))
    assert set(hits) == set(range(20))
    assert stats.chisquare([hits[x] for x in range(20)]).pvalue > 0.001


def test_random_with_whole_grid_is_the_full_grid(tmp_path):
    random_settings = make_settings(tmp_path, RANDOM_GRID, name="r.py", EXPLORE_ALL_COMBINATIONS=False,
                                    NUMBER_OF_COMBINATIONS_TO_TRY=216)
    full = make_settings(tmp_path, RANDOM_GRID, name="f.py")
    assert plan.planned_combinations(random_settings) == plan.planned_combinations(full)


@pytest.mark.parametrize("wanted", [19, 1000])
def test_random_more_than_grid_is_clamped_with_warning(tmp_path, wanted):
    grid = {"activation": ["relu", "tanh", "gelu"], "optimizer": ["adam", "sgd"],
            "model": ["mlp", "lstm"], "lstm_num_layers": [1, 2]}   # 6 MLP + 12 LSTM
    settings = make_settings(tmp_path, grid, EXPLORE_ALL_COMBINATIONS=False,
                             NUMBER_OF_COMBINATIONS_TO_TRY=wanted)
    full = make_settings(tmp_path, grid, name="full.py")
    assert plan.grid_size(settings.hyperparameter_values) == 18
    with pytest.warns(UserWarning, match=rf"NUMBER_OF_COMBINATIONS_TO_TRY = {wanted} is more than "
                                         rf"the 18 combinations.*trying all 18"):
        chosen = plan.planned_combinations(settings)
    assert len(chosen) == 18
    assert sorted(ids(chosen)) == sorted(ids(plan.planned_combinations(full)))


# --------------------------------------------------------------------------
# Combination ids and training seeds
# --------------------------------------------------------------------------

def test_combination_id_is_stable_across_grids_and_spellings(tmp_path):
    small = make_settings(tmp_path, {"learning_rate": [1e-3], "hidden_layers": [[2, 1]]}, name="s.py")
    big = make_settings(tmp_path, {"learning_rate": [0.01, 0.001], "hidden_layers": [[2.0, 1.0], [3]],
                                   "dropout": [0]}, name="b.py")
    (only,) = plan.planned_combinations(small)
    matches = [c for c in plan.planned_combinations(big)
               if c["learning_rate"] == 1e-3 and c["hidden_layers"] == [2, 1]]
    assert len(matches) == 1
    assert plan.combination_id(only) == plan.combination_id(matches[0])
    # a fresh, equal dict in another key order gives the same id
    shuffled = dict(reversed(list(only.items())))
    assert plan.combination_id(shuffled) == plan.combination_id(only)
    assert len(plan.combination_id(only)) == 12
    # minus zero is zero: the same combination, the same id
    plus = make_settings(tmp_path, {"dropout": [0.0], "l2_regularization": [0.0]}, name="p.py")
    minus = make_settings(tmp_path, {"dropout": [-0.0], "l2_regularization": [-0.0]}, name="m.py")
    assert plan.combination_id(plan.planned_combinations(plus)[0]) == \
        plan.combination_id(plan.planned_combinations(minus)[0])


@pytest.mark.parametrize("name, value", [
    ("learning_rate", 3e-4), ("hidden_layers", [2, 1.5]), ("activation", "tanh"), ("dropout", 0.1),
    ("optimizer", "sgd"), ("batch_size", 64), ("max_epochs", 9), ("l2_regularization", 1e-4),
    ("weight_initialization", "orthogonal"), ("model", "lstm"), ("lstm_hidden_size", 32),
])
def test_combination_id_differs_when_any_hyperparameter_differs(tmp_path, name, value):
    (base,) = plan.planned_combinations(make_settings(tmp_path, {}))
    changed = {**base, name: value}
    assert plan.combination_id(changed) != plan.combination_id(base)


def test_combination_ids_are_unique_over_a_grid(tmp_path):
    combinations = plan.planned_combinations(make_settings(tmp_path, RANDOM_GRID))
    assert len(set(ids(combinations))) == len(combinations) == 216


def test_training_seed_depends_on_seed_combination_and_rerun_only(tmp_path):
    cid, other = "0a2e75a9e600", "1b2c3d4e5f60"
    seed = training_seed(0, cid, 0)
    assert training_seed(0, cid, 0) == seed           # deterministic
    assert 0 <= seed < 2 ** 63                            # fits a torch.Generator
    # each input changes it
    assert training_seed(1, cid, 0) != seed
    assert training_seed(0, other, 0) != seed
    assert training_seed(0, cid, 1) != seed
    # all (seed, combination, rerun) triples get different seeds
    triples = [(s, c, r) for s in range(3) for c in (cid, other) for r in range(5)]
    assert len({training_seed(*t) for t in triples}) == len(triples)


def test_training_seed_ignores_cpu_count_and_grid(tmp_path):
    """The same combination in two runs that differ in CPU_COUNT and grid gets the same seeds."""
    one = make_settings(tmp_path, {"activation": ["relu"]}, name="one.py", CPU_COUNT=1, SEED=7)
    two = make_settings(tmp_path, {"activation": ["tanh", "relu"], "dropout": [0.0, 0.5]}, name="two.py",
                        CPU_COUNT=2, SEED=7)
    (combination,) = plan.planned_combinations(one)
    cid = plan.combination_id(combination)
    assert cid in ids(plan.planned_combinations(two))
    seeds_one = [training_seed(one.seed, cid, r) for r in range(3)]
    seeds_two = [training_seed(two.seed, cid, r) for r in range(3)]
    assert seeds_one == seeds_two
    assert len(set(seeds_one)) == 3


# --------------------------------------------------------------------------
# Task packing
# --------------------------------------------------------------------------

def trainings_for(combinations, reruns, seed=0):
    out = []
    for c in combinations:
        cid = plan.combination_id(c)
        out += [{"combination": cid, "rerun": r, "params": c, "seed": training_seed(seed, cid, r)}
                for r in range(reruns)]
    return out


def check_tasks(tasks, trainings):
    """The invariants every packing must keep; returns the tasks' sizes."""
    keys = [(t["combination"], t["rerun"]) for task in tasks for t in task]
    assert Counter(keys) == Counter((t["combination"], t["rerun"]) for t in trainings)   # each exactly once
    assert all(task for task in tasks)
    owner = {}
    for i, task in enumerate(tasks):
        assert len({plan.architecture(t["params"]) for t in task}) == 1        # one architecture per task
        for t in task:
            assert owner.setdefault(t["combination"], i) == i                   # reruns stay together
    return [len(task) for task in tasks]


# Grids with two architectures (hidden_layers) and values that do not change it
PACK_GRID = {"hidden_layers": [[1], [2, 1]], "learning_rate": [1e-2, 1e-3, 1e-4, 1e-5],
             "dropout": [0.0, 0.1, 0.2, 0.3], "optimizer": ["adam", "sgd", "rmsprop", "adamw"]}


@pytest.mark.parametrize("reruns", [1, 3, 5])
@pytest.mark.parametrize("cpu_count", [1, 2, 3, 4, 7, 16])
def test_make_tasks_invariants(tmp_path, reruns, cpu_count):
    combinations = plan.planned_combinations(make_settings(tmp_path, PACK_GRID))   # 2 x 64
    trainings = trainings_for(combinations, reruns)
    tasks = plan.make_tasks(trainings, cpu_count, n_features=30)
    sizes = check_tasks(tasks, trainings)
    assert max(sizes) <= plan.MAX_MEMBERS_PER_TASK
    assert {len({plan.architecture(t["params"]) for t in task}) for task in tasks} == {1}
    # both architectures appear, in separate tasks
    assert len({plan.architecture(task[0]["params"]) for task in tasks}) == 2


def test_make_tasks_mixed_models_never_share_a_task(tmp_path):
    grid = {"model": ["mlp", "lstm"], "activation": ["relu", "tanh"], "learning_rate": [1e-3, 1e-4],
            "lstm_hidden_size": [8, 16]}
    combinations = plan.planned_combinations(make_settings(tmp_path, grid))
    trainings = trainings_for(combinations, 3)
    tasks = plan.make_tasks(trainings, 2, n_features=5)
    check_tasks(tasks, trainings)
    # architectures: mlp x 2 activations, lstm x 2 activations x 2 sizes; learning rate is fused
    assert len({plan.architecture(task[0]["params"]) for task in tasks}) == 6
    for task in tasks:
        assert len({t["params"]["model"] for t in task}) == 1


def test_make_tasks_small_group_is_one_task(tmp_path):
    combinations = plan.planned_combinations(make_settings(tmp_path, {"learning_rate": [1e-2, 1e-3, 1e-4]}))
    trainings = trainings_for(combinations, 2)     # 6 members < cpu_count * MIN_MEMBERS_TO_SPLIT
    tasks = plan.make_tasks(trainings, 4, n_features=10)
    assert check_tasks(tasks, trainings) == [6]
    assert [t["rerun"] for t in tasks[0]] == [0, 1] * 3                 # reruns in order, per combination


def test_a_small_lstm_group_is_still_split_across_the_workers(tmp_path):
    """An LSTM step is mostly per-member work (unlike an MLP's fixed per-step cost), so even 12
    trainings are worth two tasks on two workers: the benchmark's LSTM sweep ran on one worker before."""
    grid = {"model": ["lstm"], "hidden_layers": [[]], "optimizer": ["adam", "rmsprop"],
            "learning_rate": [1e-3, 1e-4]}
    trainings = trainings_for(plan.planned_combinations(make_settings(tmp_path, grid)), 3)
    assert len(trainings) < 2 * plan.MIN_MEMBERS_TO_SPLIT    # an MLP group this small stays whole
    tasks = plan.make_tasks(trainings, 2, n_features=30)
    assert check_tasks(tasks, trainings) == [6, 6]


@pytest.mark.parametrize("n_combinations, reruns, cpu_count", [
    (64, 1, 4), (64, 3, 4), (64, 3, 1), (64, 3, 3), (48, 3, 2), (40, 5, 4), (81, 1, 10), (36, 1, 4),
    (9, 4, 4), (100, 3, 8), (30, 2, 3), (64, 4, 16), (25, 3, 5),
])
def test_make_tasks_splits_large_group_into_multiple_of_cpu_count(n_combinations, reruns, cpu_count):
    base = {name: None for name in HYPERPARAMETERS}
    base.update(model="mlp", hidden_layers=[2, 1], activation="relu", batch_size=32, max_epochs=2,
                loss_function="bce", dropout=0.0, optimizer="adam", l1_regularization=0.0,
                l2_regularization=0.0, weight_initialization="default")
    combinations = [{**base, "learning_rate": 10.0 ** -(1 + i / 10)} for i in range(n_combinations)]
    trainings = trainings_for(combinations, reruns)
    members = n_combinations * reruns
    assert members >= cpu_count * plan.MIN_MEMBERS_TO_SPLIT       # large enough to split
    tasks = plan.make_tasks(trainings, cpu_count, n_features=8)
    sizes = check_tasks(tasks, trainings)
    assert len(tasks) % cpu_count == 0, sizes
    assert len(tasks) >= math.ceil(members / plan.MAX_MEMBERS_PER_TASK)
    assert max(sizes) <= plan.MAX_MEMBERS_PER_TASK, sizes
    assert max(sizes) - min(sizes) <= reruns, sizes                # equal chunks, to one combination


def test_make_tasks_most_expensive_first(tmp_path):
    grid = {"hidden_layers": [[1], [8, 8]], "max_epochs": [1, 4], "learning_rate": [1e-3, 1e-4]}
    combinations = plan.planned_combinations(make_settings(tmp_path, grid))
    tasks = plan.make_tasks(trainings_for(combinations, 2), 1, n_features=10)
    costs = [plan.task_cost(task, 10) for task in tasks]
    assert len(tasks) == 4
    assert costs == sorted(costs, reverse=True)
    assert tasks[0][0]["params"]["hidden_layers"] == [8, 8] and tasks[0][0]["params"]["max_epochs"] == 4


def reference_trainings(tmp_path, reruns=3):
    """The benchmark's reference sweep (bench/reference.py): 2 architectures x dropout x optimizer x 4 rates."""
    grid = {"hidden_layers": [[2, 3, 2, 1, 0.5], [2, 1, 0.5]], "dropout": [0.0, 0.2], "optimizer": ["adam", "rmsprop"],
            "learning_rate": [1e-3, 5e-4, 1e-4, 5e-5], "activation": ["leaky_relu"], "batch_size": [32],
            "max_epochs": [8]}
    return trainings_for(plan.planned_combinations(make_settings(tmp_path, grid)), reruns)


def test_task_cost_model_shape(tmp_path):
    trainings = reference_trainings(tmp_path)
    big = [t for t in trainings if len(t["params"]["hidden_layers"]) == 5]
    small = [t for t in trainings if len(t["params"]["hidden_layers"]) == 3]
    without = [t for t in big if t["params"]["dropout"] == 0]
    with_dropout = [t for t in big if t["params"]["dropout"] > 0]
    assert len(without) == len(with_dropout) == 24
    # dropout costs extra, and one member with dropout makes the whole task pay for masks
    assert plan.task_cost(with_dropout, 30) > plan.task_cost(without, 30)
    assert plan.task_cost(without[:21] + with_dropout[:3], 30) == pytest.approx(plan.task_cost(with_dropout, 30))
    assert plan.task_cost(big[:24], 30) > 2 * plan.task_cost(small[:24], 30)
    # a step's fixed cost is shared: twice the members cost less than twice as much
    assert plan.task_cost(small[:24], 30) < 2 * plan.task_cost(small[:12], 30)
    # more epochs or smaller batches: proportionally more steps
    longer = [{**t, "params": {**t["params"], "max_epochs": 16}} for t in small[:24]]
    assert plan.task_cost(longer, 30) == pytest.approx(2 * plan.task_cost(small[:24], 30))


def test_lpt_makespan():
    assert plan.lpt_makespan([5, 4, 3, 3, 3], 2) == 10      # 5 and 4; then 4+3, 5+3, 7+3
    assert plan.lpt_makespan([1.0], 4) == 1.0
    assert plan.lpt_makespan([2, 2, 2, 2], 2) == 4


def test_make_tasks_reference_sweep_balances_two_workers(tmp_path):
    """Tasks of one architecture with and without dropout go to different workers first, and the loads even out."""
    trainings = reference_trainings(tmp_path)
    tasks = plan.make_tasks(trainings, 2, n_features=30)
    check_tasks(tasks, trainings)
    first, second = tasks[0], tasks[1]
    assert len(first[0]["params"]["hidden_layers"]) == len(second[0]["params"]["hidden_layers"]) == 5
    assert {t["params"]["dropout"] for t in first} == {0.2}          # the dearer of the two first
    assert {t["params"]["dropout"] for t in second} == {0.0}
    costs = [plan.task_cost(task, 30) for task in tasks]
    assert plan.lpt_makespan(costs, 2) <= 1.05 * sum(costs) / 2
