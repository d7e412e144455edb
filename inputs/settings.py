"""Load a config file, fill in defaults, and validate everything before any work starts.

A config file is plain Python (see config.py). It may set only what it
changes; everything it leaves out takes the default below. Every mistake is
reported as a ConfigError: one paragraph naming the key, the bad value and
what would be valid, which search.py prints before exiting with code 2.
"""
from __future__ import annotations

import difflib
import os
import runpy
from dataclasses import dataclass, field
from pathlib import Path

from inputs.errors import ConfigError
from inputs.hyperparameters import (
    is_int,
    is_number,
    is_range,
    suggest,
    validate_hyperparameters,
)
from inputs.space import RangeError

P_VALUE_TESTS = ("binomial", "fisher")
SELECTIONS = ("validation", "test")
DEVICES = ("auto", "cpu", "cuda")
# grid and random plan their combinations up front; the others are Optuna's
# model-based samplers, which choose each next combination from the results so far
PLANNED_SAMPLERS = ("grid", "random")
SAMPLERS = PLANNED_SAMPLERS + ("tpe", "cmaes", "gp", "qmc")
PRUNERS = ("median", "successive_halving", "hyperband")

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
    "STORAGE_RETRY_SECONDS": 300,
}


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
    storage_retry_seconds: float = 300.0
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
              "RESULTS_DIR": str(results_dir), "hyperparameter_values": record.get("hyperparameter_values", {})}
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
            raise ConfigError(f"Config file {path} sets unknown setting {name}{suggest(name, known)}. "
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


def _validate(path: Path, v: dict) -> Settings:
    notes = []
    grid = validate_hyperparameters(v.get("hyperparameter_values", {}))
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
    _require_fraction("PREDICTION_THRESHOLD", threshold,
                      "0.5 predicts 'up' when the model's probability is at least 50%")
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
    if not is_int(v["PERMUTATIONS"]) or v["PERMUTATIONS"] < 99:
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
    ranged = [name for name, values in grid.items() if is_range(values)]
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
    if not is_number(timeout) or timeout < 1:
        raise ConfigError(f"HEARTBEAT_TIMEOUT = {timeout!r} is not valid: it must be a number of seconds of at "
                          f"least 1 (how long a process sharing the study may go silent before the others "
                          f"take over its combinations; 60 is a good value).")
    patience = v["STORAGE_RETRY_SECONDS"]
    if not is_number(patience) or patience < 0:
        raise ConfigError(f"STORAGE_RETRY_SECONDS = {patience!r} is not valid: it must be a number of seconds of at "
                          f"least 0 (how long the sweep keeps retrying when the study's database or file does "
                          f"not answer before it stops with exit code 3; 300 rides out a database restart).")
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
        heartbeat_timeout=float(timeout), storage_retry_seconds=float(patience), warnings=tuple(notes))


def _require_int(key: str, value, minimum: int) -> None:
    if not is_int(value) or value < minimum:
        raise ConfigError(f"{key} = {value!r} is not valid: it must be a whole number of at least {minimum}.")


def _require_fraction(key: str, value, meaning: str) -> None:
    if not is_number(value) or not 0 < value < 1:
        raise ConfigError(f"{key} = {value!r} is not valid: it must be a number strictly between 0 and 1 ({meaning}).")


def _require_bool(key: str, value) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} = {value!r} is not valid: it must be True or False.")


def _require_choice(key: str, value, choices, aliases: dict | None = None) -> None:
    """`aliases`: what users write meaning a valid value (a GPU is 'cuda' to torch), suggested before look-alikes."""
    if value not in choices:
        alias = (aliases or {}).get(str(value).lower())
        hint = f" (did you mean {alias}?)" if alias else suggest(str(value), choices)
        raise ConfigError(f"{key} = {value!r} is not valid{hint}. Valid values: {', '.join(map(repr, choices))}.")
