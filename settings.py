"""Load a config file, fill in defaults, and validate everything before any work starts.

A config file is plain Python (see config.py). It may set only what it
changes; everything it leaves out takes the default below. Every mistake is
reported as a ConfigError: one paragraph naming the key, the bad value and
what would be valid, which search.py prints before exiting with code 2.
"""
from __future__ import annotations

import difflib
import math
import os
import runpy
from dataclasses import dataclass, field
from pathlib import Path

# Option names are listed here, not imported from models/, so that the main
# process can validate a config without importing torch (2 s on these machines).
MODELS = ("mlp", "lstm")
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "tanh", "sigmoid", "elu", "gelu", "silu", "selu",
               "softplus", "mish")
LOSS_FUNCTIONS = ("bce", "mse", "huber", "smooth_l1")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "adamax")
WEIGHT_INITIALIZATIONS = ("default", "xavier_uniform", "xavier_normal", "kaiming_uniform",
                          "kaiming_normal", "orthogonal")
P_VALUE_TESTS = ("binomial", "fisher")
SELECTIONS = ("validation", "test")
DEVICES = ("auto", "cpu", "cuda")
# grid and random plan their combinations up front; the others are Optuna's
# model-based samplers, which choose each next combination from the results so far
PLANNED_SAMPLERS = ("grid", "random")
SAMPLERS = PLANNED_SAMPLERS + ("tpe", "cmaes", "gp", "qmc")
PRUNERS = ("median", "successive_halving", "hyperband")

# What a hyperparameter left out of hyperparameter_values is fixed to.
HYPERPARAMETER_DEFAULTS = {
    "model": "mlp",
    "hidden_layers": [2, 1, 0.5],
    "activation": "leaky_relu",
    "dropout": 0.0,
    "learning_rate": 1e-3,
    "optimizer": "adam",
    "batch_size": 32,
    "max_epochs": 8,
    "loss_function": "bce",
    "l1_regularization": 0.0,
    "l2_regularization": 0.0,
    "weight_initialization": "default",
    "lstm_hidden_size": 16,
    "lstm_num_layers": 1,
}
HYPERPARAMETERS = tuple(HYPERPARAMETER_DEFAULTS)
LSTM_ONLY = ("lstm_hidden_size", "lstm_num_layers")

# Hyperparameters a range (space.py) may stand for, and the values it must stay within.
RANGE_LIMITS = {
    "learning_rate": ("float", 0.0, None, "learning rates must be positive"),
    "dropout": ("float", 0.0, 1.0, "dropout is a fraction from 0 up to but not including 1"),
    "l1_regularization": ("float", 0.0, None, "regularization strengths must be >= 0"),
    "l2_regularization": ("float", 0.0, None, "regularization strengths must be >= 0"),
    "batch_size": ("int", 1, None, "batch sizes are whole numbers of at least 1"),
    "max_epochs": ("int", 1, None, "epoch counts are whole numbers of at least 1"),
    "lstm_hidden_size": ("int", 1, None, "LSTM sizes are whole numbers of at least 1"),
    "lstm_num_layers": ("int", 1, None, "LSTM layer counts are whole numbers of at least 1"),
}

# Hyperparameters that fix the shape of the computation; trainings that agree
# on these can be fused into one batched training (see training.py).
ARCHITECTURE_KEYS = ("model", "hidden_layers", "activation", "batch_size", "max_epochs",
                     "loss_function", "lstm_hidden_size", "lstm_num_layers")

SETTING_DEFAULTS = {
    "EXPLORE_ALL_COMBINATIONS": True,
    "NUMBER_OF_COMBINATIONS_TO_TRY": 20,
    "RERUN_COUNT": 3,
    "CPU_COUNT": None,  # None: every core
    "PREDICTION_THRESHOLD": 0.5,
    "SEED": 0,
    "TRAIN_CSV": "example_data/train.csv",
    "TEST_CSV": "example_data/test.csv",
    "LATEST_CSV": "example_data/latest.csv",
    "RESULTS_DIR": "results",
    "DEVICE": "auto",
    "P_VALUE_TEST": "binomial",
    "SELECTION": "validation",
    "VALIDATION_FRACTION": 0.2,
    "VALIDATION_FOLDS": 1,
    "CONFIRM_TOP_K": 5,
    "FALSE_DISCOVERY_RATE": 0.05,
    "SIGNIFICANCE_LEVEL": 0.05,
    "PERMUTATIONS": 1000,
    "PERMUTATION_BLOCK_LENGTH": None,  # None: a twentieth of the evaluated rows (files without dates only)
    "LABEL_HORIZON": 10,
    "EMBARGO_DAYS": 2,
    "SAMPLER": None,  # None: "grid" if EXPLORE_ALL_COMBINATIONS else "random"
    "PRUNER": None,
    "HEARTBEAT_TIMEOUT": 60,
}


def hidden_widths(multipliers, n_inputs: int) -> list[int]:
    """`[2, 3, 0.5]` x 30 inputs -> [60, 90, 15] units; never fewer than one."""
    return [max(1, int(m * n_inputs + 0.5)) for m in multipliers]


class ConfigError(Exception):
    """A mistake in the config file or the command line, explained for the user."""


@dataclass(frozen=True)
class Settings:
    config_path: Path
    hyperparameter_values: dict
    explore_all_combinations: bool
    number_of_combinations_to_try: int
    rerun_count: int
    cpu_count: int
    prediction_threshold: float
    seed: int
    train_csv: Path
    test_csv: Path
    latest_csv: Path
    results_dir: Path
    device: str
    p_value_test: str
    selection: str = "validation"
    validation_fraction: float = 0.2
    validation_folds: int = 1
    confirm_top_k: int = 5
    false_discovery_rate: float = 0.05
    significance_level: float = 0.05
    permutations: int = 1000
    permutation_block_length: int | None = None
    label_horizon: int = 10
    embargo_days: int = 2
    sampler: str = "grid"
    pruner: str | None = None
    heartbeat_timeout: float = 60.0
    warnings: tuple = field(default=())

    @property
    def planned(self) -> bool:
        """True when the combinations are fixed up front (grid or random), not chosen as results come in."""
        return self.sampler in PLANNED_SAMPLERS


def load_settings(config_path: str | os.PathLike, overrides: dict | None = None) -> Settings:
    """Read `config_path`, apply command-line `overrides` (NAME -> value), validate."""
    path = Path(config_path)
    values = _read_config_file(path)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _validate(path.resolve(), values)


def settings_from_record(record: dict, results_dir: Path) -> Settings:
    """The settings a run was ranked with, from its run.json (or its shared study's "run" attr).

    The record's paths are absolute; what it leaves out (a run written by an
    older version) takes today's default.
    """
    values = {**SETTING_DEFAULTS, **{k: v for k, v in record.items() if k in SETTING_DEFAULTS},
              "RESULTS_DIR": str(results_dir)}
    return _validate(Path(values["TRAIN_CSV"]).parent / "run.json", values)


def _read_config_file(path: Path) -> dict:
    if path.is_dir():
        inside = path / "config.py"
        example = inside if inside.is_file() else path / "my_sweep.py"
        raise ConfigError(f"Config file {path} is a folder, not a file. Pass the config file itself with "
                          f"--config, for example --config {example}.")
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist. Pass an existing file with "
                          f"--config, for example --config config.py.")
    try:
        namespace = runpy.run_path(str(path))
    except SyntaxError as err:
        raise ConfigError(f"Config file {path} is not valid Python: {err.msg} on line {err.lineno}. "
                          f"Fix that line and run again.") from None
    except Exception as err:  # the config's own code failed; say where
        line = _config_line(err, path)
        from space import RangeError
        if isinstance(err, RangeError):
            raise ConfigError(f"Config file {path}{line}: the range {err}. Fix the bounds and run again.") from None
        raise ConfigError(f"Config file {path} failed to run{line}: {type(err).__name__}: {err}. "
                          f"A config file must be plain Python that runs on its own.") from None
    known = set(SETTING_DEFAULTS) | {"hyperparameter_values"}
    for name in namespace:
        if name != "hyperparameter_values" and difflib.get_close_matches(name, ["hyperparameter_values"], cutoff=0.8):
            raise ConfigError(f"Config file {path} sets {name}, which is not a setting (did you mean "
                              f"hyperparameter_values?). As written, the sweep would ignore it.")
        if name.isupper() and name not in known:
            raise ConfigError(f"Config file {path} sets unknown setting {name}{_suggest(name, known)}. "
                              f"Valid settings: {', '.join(sorted(known))}.")
    values = dict(SETTING_DEFAULTS)
    values.update({k: v for k, v in namespace.items() if k in known})
    return values


def _config_line(err: Exception, path: Path) -> str:
    tb = err.__traceback__
    line = None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == path.resolve():
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" on line {line}" if line else ""


def _suggest(name: str, valid) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _validate(path: Path, v: dict) -> Settings:
    notes = []
    grid = _validate_hyperparameters(v.get("hyperparameter_values", {}))
    _require_bool("EXPLORE_ALL_COMBINATIONS", v["EXPLORE_ALL_COMBINATIONS"])
    _require_int("NUMBER_OF_COMBINATIONS_TO_TRY", v["NUMBER_OF_COMBINATIONS_TO_TRY"], minimum=1)
    _require_int("RERUN_COUNT", v["RERUN_COUNT"], minimum=1)
    cores = os.cpu_count() or 1
    cpu_count = v["CPU_COUNT"] if v["CPU_COUNT"] is not None else cores
    _require_int("CPU_COUNT", cpu_count, minimum=1)
    if cpu_count > cores:
        notes.append(f"CPU_COUNT = {cpu_count} is more than this machine's {cores} cores; using {cores} "
                     f"(more worker processes than cores only slows every one of them down).")
        cpu_count = cores
    threshold = v["PREDICTION_THRESHOLD"]
    _require_fraction("PREDICTION_THRESHOLD", threshold, "0.5 predicts 'up' when the model's probability is at least 50%")
    _require_int("SEED", v["SEED"], minimum=0)
    _require_choice("DEVICE", v["DEVICE"], DEVICES, aliases={"gpu": "cuda"})
    _require_choice("P_VALUE_TEST", v["P_VALUE_TEST"], P_VALUE_TESTS)
    _require_choice("SELECTION", v["SELECTION"], SELECTIONS)
    fraction = v["VALIDATION_FRACTION"]
    _require_fraction("VALIDATION_FRACTION", fraction,
                      "the share of the train file's last rows used to rank combinations; 0.2 = 20%")
    _require_int("CONFIRM_TOP_K", v["CONFIRM_TOP_K"], minimum=0)
    _require_int("VALIDATION_FOLDS", v["VALIDATION_FOLDS"], minimum=1)
    fdr = v["FALSE_DISCOVERY_RATE"]
    _require_fraction("FALSE_DISCOVERY_RATE", fdr,
                      "the share of false discoveries tolerated among 'significant' rows; 0.05 = 5%")
    level = v["SIGNIFICANCE_LEVEL"]
    _require_fraction("SIGNIFICANCE_LEVEL", level, "the verdict calls the winner confirmed when its test "
                      "p-value is at most this; 0.05 = 5%")
    if not _is_int(v["PERMUTATIONS"]) or v["PERMUTATIONS"] < 99:
        raise ConfigError(f"PERMUTATIONS = {v['PERMUTATIONS']!r} is not valid: every p-value of the ranking comes "
                          f"from the block permutation test, which needs a whole number of at least 99 label "
                          f"orders (1000, the default, resolves p-values down to 0.001).")
    if v["PERMUTATION_BLOCK_LENGTH"] is not None:
        _require_int("PERMUTATION_BLOCK_LENGTH", v["PERMUTATION_BLOCK_LENGTH"], minimum=1)
    _require_int("LABEL_HORIZON", v["LABEL_HORIZON"], minimum=1)
    _require_int("EMBARGO_DAYS", v["EMBARGO_DAYS"], minimum=0)
    sampler = v["SAMPLER"]
    if sampler is None:
        sampler = "grid" if v["EXPLORE_ALL_COMBINATIONS"] else "random"
    _require_choice("SAMPLER", sampler, SAMPLERS)
    ranged = [name for name, values in grid.items() if _is_range(values)]
    if ranged and sampler in PLANNED_SAMPLERS:
        raise ConfigError(
            f"hyperparameter_values[{ranged[0]!r}] = {grid[ranged[0]]!r} is a range, but SAMPLER is {sampler!r}, "
            f"which needs a list of values to try (a range has no grid points). Either list the values, e.g. "
            f"[1e-4, 1e-3, 1e-2], or set SAMPLER = \"tpe\" (or \"cmaes\", \"gp\", \"qmc\") to search the range "
            f"with NUMBER_OF_COMBINATIONS_TO_TRY trials.")
    if v["PRUNER"] is not None:
        _require_choice("PRUNER", v["PRUNER"], PRUNERS)
        if v["VALIDATION_FOLDS"] > 1:
            raise ConfigError(f"PRUNER = {v['PRUNER']!r} cannot be combined with VALIDATION_FOLDS = "
                              f"{v['VALIDATION_FOLDS']}: pruning compares each epoch's validation loss, and with "
                              f"walk-forward folds a combination's folds train separately. Set VALIDATION_FOLDS = 1 "
                              f"or PRUNER = None.")
    timeout = v["HEARTBEAT_TIMEOUT"]
    if not _is_number(timeout) or timeout < 1:
        raise ConfigError(f"HEARTBEAT_TIMEOUT = {timeout!r} is not valid: it must be a number of seconds of at "
                          f"least 1 (how long a process sharing the study may go silent before the others "
                          f"take over its combinations; 60 is a good value).")
    paths = {}
    for key in ("TRAIN_CSV", "TEST_CSV", "LATEST_CSV", "RESULTS_DIR"):
        if not isinstance(v[key], (str, os.PathLike)) or str(v[key]) == "":
            raise ConfigError(f"{key} = {v[key]!r} is not valid: it must be a path (a string). "
                              f"Relative paths are taken from the config file's folder.")
        paths[key] = (path.parent / Path(v[key]).expanduser()).resolve()
    return Settings(
        config_path=path, hyperparameter_values=grid,
        explore_all_combinations=v["EXPLORE_ALL_COMBINATIONS"],
        number_of_combinations_to_try=v["NUMBER_OF_COMBINATIONS_TO_TRY"],
        rerun_count=v["RERUN_COUNT"], cpu_count=cpu_count, prediction_threshold=float(threshold),
        seed=v["SEED"], train_csv=paths["TRAIN_CSV"], test_csv=paths["TEST_CSV"],
        latest_csv=paths["LATEST_CSV"], results_dir=paths["RESULTS_DIR"], device=v["DEVICE"],
        p_value_test=v["P_VALUE_TEST"], selection=v["SELECTION"], validation_fraction=float(fraction),
        validation_folds=v["VALIDATION_FOLDS"],
        confirm_top_k=v["CONFIRM_TOP_K"], false_discovery_rate=float(fdr), significance_level=float(level),
        permutations=v["PERMUTATIONS"], permutation_block_length=v["PERMUTATION_BLOCK_LENGTH"],
        label_horizon=v["LABEL_HORIZON"], embargo_days=v["EMBARGO_DAYS"], sampler=sampler, pruner=v["PRUNER"],
        heartbeat_timeout=float(timeout), warnings=tuple(notes))


def _validate_hyperparameters(grid) -> dict:
    """Check every list in hyperparameter_values; return it with defaults filled in."""
    if not isinstance(grid, dict):
        raise ConfigError(f"hyperparameter_values must be a dict of name -> list of values, "
                          f"not {type(grid).__name__}.")
    for name, values in grid.items():
        if name not in HYPERPARAMETER_DEFAULTS:
            raise ConfigError(f"hyperparameter_values has unknown hyperparameter {name!r}"
                              f"{_suggest(str(name), HYPERPARAMETERS)}. Valid names: {', '.join(HYPERPARAMETERS)}.")
        if _is_range(values):
            _validate_range(name, values)
            continue
        if isinstance(values, (list, tuple)) and len(values) == 0:
            raise ConfigError(f"hyperparameter_values[{name!r}] is an empty list: give at least one value, "
                              f"or remove the key to use the default {HYPERPARAMETER_DEFAULTS[name]!r}.")
        if not isinstance(values, (list, tuple)) or (name == "hidden_layers" and _is_layer_list(values)):
            example = f"[{list(values)!r}]" if name == "hidden_layers" and isinstance(values, (list, tuple)) \
                else f"[{values!r}]"
            raise ConfigError(f"hyperparameter_values[{name!r}] = {values!r} must be a list of values to try, "
                              f"even for a single value: write {example}.")
        for value in values:
            _validate_value(name, value)
        if len({repr(normalize_value(name, x)) for x in values}) != len(values):  # 2 and 2.0 are one value
            raise ConfigError(f"hyperparameter_values[{name!r}] = {values!r} lists a value twice; "
                              f"each value is tried once, so list it once.")
    full = {name: [default] for name, default in HYPERPARAMETER_DEFAULTS.items()}
    full.update({name: values if _is_range(values) else [normalize_value(name, x) for x in values]
                 for name, values in grid.items()})
    return full


def _is_range(values) -> bool:
    from space import Range
    return isinstance(values, Range)


def _validate_range(name: str, r) -> None:
    where = f"hyperparameter_values[{name!r}] = {r!r}"
    if name not in RANGE_LIMITS:
        raise ConfigError(f"{where} is a range, but {name} takes one of a list of values, not a range. "
                          f"Ranges work for {', '.join(RANGE_LIMITS)}; write a list, e.g. "
                          f"[{HYPERPARAMETER_DEFAULTS[name]!r}].")
    kind, low, high, meaning = RANGE_LIMITS[name]
    if kind == "int" and not r.is_int:
        raise ConfigError(f"{where} is not valid: {name} is a whole number, so write intrange({int(r.low)}, "
                          f"{int(r.high)}) ({meaning}).")
    if kind == "float" and r.is_int:
        raise ConfigError(f"{where} is not valid: {name} is not a whole number; use uniform() or loguniform().")
    too_low = r.low < low or (name == "learning_rate" and r.low <= 0)
    if too_low or (high is not None and r.high >= high):
        raise ConfigError(f"{where} is not valid: {meaning}.")


_CHOICES = {"model": MODELS, "activation": ACTIVATIONS, "loss_function": LOSS_FUNCTIONS,
            "optimizer": OPTIMIZERS, "weight_initialization": WEIGHT_INITIALIZATIONS}


def _validate_value(name: str, value) -> None:
    where = f"hyperparameter_values[{name!r}]"
    if name in _CHOICES:
        if value not in _CHOICES[name]:
            hint = _suggest(str(value), _CHOICES[name]) if isinstance(value, str) else ""
            raise ConfigError(f"{where} contains {value!r}, which is not a valid {name}{hint}. "
                              f"Valid values: {', '.join(_CHOICES[name])}.")
    elif name == "hidden_layers":
        if not _is_layer_list(value) or any(not _is_number(m) or not m > 0 for m in value):
            raise ConfigError(f"{where} contains {value!r}; each entry must be a list of positive numbers, "
                              f"the widths of the hidden layers as multiples of the input width "
                              f"(e.g. [2, 3, 2, 1, 0.5], or [] for no hidden layer).")
    elif name in ("batch_size", "max_epochs", "lstm_hidden_size", "lstm_num_layers"):
        if not _is_int(value) or value < 1:
            raise ConfigError(f"{where} contains {value!r}; {name} values must be whole numbers of at least 1.")
    elif name == "learning_rate":
        if not _is_number(value) or not value > 0:
            raise ConfigError(f"{where} contains {value!r}; learning rates must be positive numbers such as 1e-3.")
    elif name == "dropout":
        if not _is_number(value) or not 0 <= value < 1:
            raise ConfigError(f"{where} contains {value!r}; dropout is the fraction of units dropped, "
                              f"a number from 0 (none) up to but not including 1.")
    elif name in ("l1_regularization", "l2_regularization"):
        if not _is_number(value) or value < 0:
            raise ConfigError(f"{where} contains {value!r}; regularization strengths must be numbers >= 0.")


def normalize_value(name: str, value):
    """One spelling per value, so 2 and 2.0 (and -0.0 and 0.0) are the same combination, with the same id."""
    if name == "hidden_layers":
        return [int(m) if float(m).is_integer() else float(m) for m in value]
    if name in ("learning_rate", "dropout", "l1_regularization", "l2_regularization"):
        return float(value) + 0.0  # -0.0 + 0.0 is 0.0
    return value


def _is_layer_list(value) -> bool:
    return isinstance(value, (list, tuple)) and all(not isinstance(m, (list, tuple)) for m in value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_int(key: str, value, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise ConfigError(f"{key} = {value!r} is not valid: it must be a whole number of at least {minimum}.")


def _require_fraction(key: str, value, meaning: str) -> None:
    if not _is_number(value) or not 0 < value < 1:
        raise ConfigError(f"{key} = {value!r} is not valid: it must be a number strictly between 0 and 1 ({meaning}).")


def _require_bool(key: str, value) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} = {value!r} is not valid: it must be True or False.")


def _require_choice(key: str, value, choices, aliases: dict | None = None) -> None:
    """`aliases`: what users write meaning a valid value (a GPU is 'cuda' to torch), suggested before look-alikes."""
    if value not in choices:
        alias = (aliases or {}).get(str(value).lower())
        hint = f" (did you mean {alias}?)" if alias else _suggest(str(value), choices)
        raise ConfigError(f"{key} = {value!r} is not valid{hint}. Valid values: {', '.join(map(repr, choices))}.")
