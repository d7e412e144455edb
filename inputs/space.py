"""Ranges for hyperparameters that a model-based sampler (SAMPLER = "tpe", ...) picks values from.

In a config file:

    from inputs.space import loguniform, uniform, intrange
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

from optuna.distributions import FloatDistribution, IntDistribution


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
        if self.is_int:
            return IntDistribution(int(self.low), int(self.high))
        return FloatDistribution(float(self.low), float(self.high), log=self.kind == "loguniform")


class RangeError(ValueError):
    """A range written with impossible bounds; inputs/settings.py turns it into a ConfigError naming the key."""


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
