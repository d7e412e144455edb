"""The Optuna distributions grid values are recorded with (sweep/recorder.py)."""
import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from inputs.hyperparameters import grid_distribution


@pytest.mark.parametrize("values, expected", [
    ([1e-3, 1e-4, 1e-5], FloatDistribution(1e-5, 1e-3, log=True)),   # spans orders of magnitude: log scale
    ([0.0, 0.2, 0.5], FloatDistribution(0.0, 0.5)),                  # zero: no log scale
    ([1e-3, 5e-4], FloatDistribution(5e-4, 1e-3)),                   # a factor of 2: linear
    ([0, 0.25], FloatDistribution(0.0, 0.25)),                       # ints mixed with floats are floats
    ([16, 256], IntDistribution(16, 256, log=True)),
    ([32, 64, 128], IntDistribution(32, 128)),
    (["adam", "sgd"], CategoricalDistribution(["adam", "sgd"])),
    ([[2, 1, 0.5], [1]], CategoricalDistribution(["[2, 1, 0.5]", "[1]"])),  # layer lists as readable strings
    ([True, False], CategoricalDistribution([True, False])),         # flags are not numbers
    ([None, 16], CategoricalDistribution([None, 16])),
    ([0.001], CategoricalDistribution([0.001])),                     # one value: nothing to range over
    ([4, 4.0], CategoricalDistribution([4, 4.0])),
])
def test_grid_values_get_a_numeric_range_or_categorical_choices(values, expected):
    distribution = grid_distribution(values)
    assert distribution == expected
    for value in values:  # every grid value is recordable as it is
        shown = "[2, 1, 0.5]" if value == [2, 1, 0.5] else "[1]" if value == [1] else value
        assert distribution._contains(distribution.to_internal_repr(shown))
