"""The hyperparameters a combination sets: their defaults, valid values, and how a config's lists are checked.

Option names are listed here, not imported from models/, so that the main
process validates a config without importing torch (2 s on these machines).
"""
from __future__ import annotations

import difflib
import json
import math

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from inputs.errors import ConfigError
from inputs.space import Range

MODELS = ("mlp", "lstm")
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "tanh", "sigmoid", "elu", "gelu", "silu", "selu",
               "softplus", "mish")
LOSS_FUNCTIONS = ("bce", "mse", "huber", "smooth_l1")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "adamax")
WEIGHT_INITIALIZATIONS = ("default", "xavier_uniform", "xavier_normal", "kaiming_uniform",
                          "kaiming_normal", "orthogonal")
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

# Hyperparameters a range (inputs/space.py) may stand for, and the values it must stay within.
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
# on these can be fused into one batched training (see training/loop.py).
ARCHITECTURE_KEYS = ("model", "hidden_layers", "activation", "batch_size", "max_epochs",
                     "loss_function", "lstm_hidden_size", "lstm_num_layers")

def hidden_widths(multipliers, n_inputs: int) -> list[int]:
    """`[2, 3, 0.5]` x 30 inputs -> [60, 90, 15] units; never fewer than one."""
    return [max(1, int(m * n_inputs + 0.5)) for m in multipliers]


def display_value(value):
    """How a hyperparameter value reads in a CSV and in the study: lists as [2, 1, 0.5], 'not used' as empty."""
    if value is None:
        return None
    if isinstance(value, list):
        return json.dumps(value)
    return value


def hyperparameter_columns(combination: dict) -> dict:
    """A combination as table columns, one per hyperparameter."""
    return {name: display_value(combination[name]) for name in HYPERPARAMETERS}


def validate_hyperparameters(grid) -> dict:
    """Check every list in hyperparameter_values; return it with defaults filled in."""
    if not isinstance(grid, dict):
        raise ConfigError(f"hyperparameter_values must be a dict of name -> list of values, "
                          f"not {type(grid).__name__}.")
    for name, values in grid.items():
        if name not in HYPERPARAMETER_DEFAULTS:
            raise ConfigError(f"hyperparameter_values has unknown hyperparameter {name!r}"
                              f"{suggest(str(name), HYPERPARAMETERS)}. Valid names: {', '.join(HYPERPARAMETERS)}.")
        if is_range(values):
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
    full.update({name: values if is_range(values) else [normalize_value(name, x) for x in values]
                 for name, values in grid.items()})
    return full


def is_range(values) -> bool:
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
            hint = suggest(str(value), _CHOICES[name]) if isinstance(value, str) else ""
            raise ConfigError(f"{where} contains {value!r}, which is not a valid {name}{hint}. "
                              f"Valid values: {', '.join(_CHOICES[name])}.")
    elif name == "hidden_layers":
        if not _is_layer_list(value) or any(not is_number(m) or not m > 0 for m in value):
            raise ConfigError(f"{where} contains {value!r}; each entry must be a list of positive numbers, "
                              f"the widths of the hidden layers as multiples of the input width "
                              f"(e.g. [2, 3, 2, 1, 0.5], or [] for no hidden layer).")
    elif name in ("batch_size", "max_epochs", "lstm_hidden_size", "lstm_num_layers"):
        if not is_int(value) or value < 1:
            raise ConfigError(f"{where} contains {value!r}; {name} values must be whole numbers of at least 1.")
    elif name == "learning_rate":
        if not is_number(value) or not value > 0:
            raise ConfigError(f"{where} contains {value!r}; learning rates must be positive numbers such as 1e-3.")
    elif name == "dropout":
        if not is_number(value) or not 0 <= value < 1:
            raise ConfigError(f"{where} contains {value!r}; dropout is the fraction of units dropped, "
                              f"a number from 0 (none) up to but not including 1.")
    elif name in ("l1_regularization", "l2_regularization"):
        if not is_number(value) or value < 0:
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


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def suggest(name: str, valid) -> str:
    """' (did you mean X?)' for a close match among `valid`, else ''."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def grid_distribution(values: list):
    """The Optuna distribution a list of grid values is recorded with.

    Numbers get a numeric range over their smallest to largest value (on a
    log scale where they are all positive and span a factor of 10 or more,
    as learning rates do), the way Optuna's own grid examples declare them
    with suggest_float: the dashboard and the importances then know that
    1e-4 lies between 1e-5 and 1e-3. Everything else (names, layer lists
    as strings, flags, a single value) is categorical. A categorical
    distribution also lists every choice in every trial's record: on a big
    grid that was over half of what recording a combination cost.
    """
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if len(numbers) < len(values) or len(set(numbers)) < 2:
        return CategoricalDistribution([display_value(v) for v in values])
    low, high = min(numbers), max(numbers)
    log = low > 0 and high / low >= 10
    if all(isinstance(v, int) for v in numbers):
        return IntDistribution(low, high, log=log)
    return FloatDistribution(float(low), float(high), log=log)
