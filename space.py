"""Ranges for hyperparameters that a model-based sampler (SAMPLER = "tpe", ...) picks values from.

In a config file:

    from space import loguniform, uniform, intrange
    hyperparameter_values = {
        "learning_rate": loguniform(1e-5, 1e-1),   # any value, spread evenly over the orders of magnitude
        "dropout": uniform(0, 0.5),                # any value between 0 and 0.5
        "batch_size": intrange(16, 256),           # any whole number from 16 to 256, both included
        "optimizer": ["adam", "rmsprop"],          # lists still work: one of these values
    }

Grid and random search need lists (a range has no grid points); search.py
says so if a range reaches them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    kind: str      # "loguniform", "uniform" or "intrange"
    low: float
    high: float

    def __repr__(self) -> str:  # how the config wrote it, for error messages and run.json
        return f"{self.kind}({self.low!r}, {self.high!r})"

    @property
    def is_int(self) -> bool:
        return self.kind == "intrange"

    def distribution(self):
        """The Optuna distribution a sampler draws from."""
        from optuna.distributions import FloatDistribution, IntDistribution
        if self.is_int:
            return IntDistribution(int(self.low), int(self.high))
        return FloatDistribution(float(self.low), float(self.high), log=self.kind == "loguniform")


class RangeError(ValueError):
    """A range written with impossible bounds; settings.py turns it into a ConfigError naming the key."""


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RangeError(f"its {name} bound {value!r} is not a finite number")
    return value


def loguniform(low: float, high: float) -> Range:
    """Any value between low and high, as likely in [1e-4, 1e-3] as in [1e-3, 1e-2]."""
    low, high = _number(low, "low"), _number(high, "high")
    if not 0 < low < high:
        raise RangeError(f"loguniform({low!r}, {high!r}) needs 0 < low < high")
    return Range("loguniform", float(low), float(high))


def uniform(low: float, high: float) -> Range:
    """Any value between low and high, evenly spread."""
    low, high = _number(low, "low"), _number(high, "high")
    if not low < high:
        raise RangeError(f"uniform({low!r}, {high!r}) needs low < high")
    return Range("uniform", float(low), float(high))


def intrange(low: int, high: int) -> Range:
    """Any whole number from low to high, both included."""
    for value, name in ((low, "low"), (high, "high")):
        if isinstance(value, bool) or not isinstance(value, int):
            raise RangeError(f"intrange({low!r}, {high!r}) needs whole numbers; its {name} bound is {value!r}")
    if not low < high:
        raise RangeError(f"intrange({low!r}, {high!r}) needs low < high")
    return Range("intrange", low, high)


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
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from results import display_value
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if len(numbers) < len(values) or len(set(numbers)) < 2:
        return CategoricalDistribution([display_value(v) for v in values])
    low, high = min(numbers), max(numbers)
    log = low > 0 and high / low >= 10
    if all(isinstance(v, int) for v in numbers):
        return IntDistribution(low, high, log=log)
    return FloatDistribution(float(low), float(high), log=log)
