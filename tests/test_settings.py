"""Tests for settings.py (config loading, defaults, validation) and the CLI's handling of bad input."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import inputs.settings as settings_module
from inputs.errors import ConfigError
from inputs.hyperparameters import HYPERPARAMETER_DEFAULTS
from inputs.settings import SETTING_DEFAULTS, load_settings
from inputs.space import Range

REPO_ROOT = Path(__file__).resolve().parent.parent


def write_config(folder: Path, text: str, name: str = "config.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


# --------------------------------------------------------------------------
# Defaults, paths and overrides
# --------------------------------------------------------------------------

def test_empty_config_takes_every_default(tmp_path, monkeypatch):
    monkeypatch.setattr(settings_module.os, "cpu_count", lambda: 3)
    s = load_settings(write_config(tmp_path, ""))
    assert s.hyperparameter_values == {name: [value] for name, value in HYPERPARAMETER_DEFAULTS.items()}
    assert s.explore_all_combinations is True
    assert s.number_of_combinations_to_try == SETTING_DEFAULTS["NUMBER_OF_COMBINATIONS_TO_TRY"] == 20
    assert s.rerun_count == 3
    assert s.cpu_count == 3            # None: every core
    assert s.prediction_threshold == 0.5
    assert s.seed == 0
    assert s.device == "auto" and s.p_value_test == "binomial"
    assert s.train_csv == (tmp_path / "example_data" / "train.csv").resolve()
    assert s.results_dir == (tmp_path / "results").resolve()
    assert s.warnings == ()


def test_partial_config_keeps_defaults_for_the_rest(tmp_path):
    path = write_config(tmp_path, """
        hyperparameter_values = {"learning_rate": [1e-2, 1e-3], "hidden_layers": [[4, 2.0]]}
        RERUN_COUNT = 5
        SEED = 11
    """)
    s = load_settings(path)
    assert s.rerun_count == 5 and s.seed == 11
    assert s.hyperparameter_values["learning_rate"] == [1e-2, 1e-3]
    assert s.hyperparameter_values["hidden_layers"] == [[4, 2]]      # one spelling per value
    assert s.hyperparameter_values["optimizer"] == ["adam"]
    assert s.hyperparameter_values["dropout"] == [0.0]
    assert s.hyperparameter_values["lstm_hidden_size"] == [16]
    assert s.prediction_threshold == 0.5 and s.p_value_test == "binomial"
    assert set(s.hyperparameter_values) == set(HYPERPARAMETER_DEFAULTS)


def test_shipped_config_loads():
    s = load_settings(REPO_ROOT / "config.py")
    assert s.train_csv == REPO_ROOT / "example_data" / "train.csv"
    assert s.hyperparameter_values["activation"] == ["leaky_relu", "tanh"]


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write_config(tmp_path / "project" / "configs", f"""
        TRAIN_CSV = "data/train.csv"
        TEST_CSV = "../shared/test.csv"
        LATEST_CSV = {str(tmp_path / "abs" / "latest.csv")!r}
        RESULTS_DIR = "~/sweeps"
    """)
    # loaded through a path relative to the working directory
    s = load_settings(os.path.relpath(path, elsewhere))
    configs = (tmp_path / "project" / "configs").resolve()
    assert s.config_path == path.resolve()
    assert s.train_csv == configs / "data" / "train.csv"
    assert s.test_csv == configs.parent / "shared" / "test.csv"
    assert s.latest_csv == (tmp_path / "abs" / "latest.csv").resolve()
    assert s.results_dir == (tmp_path / "home" / "sweeps").resolve()
    assert all(p.is_absolute() for p in (s.train_csv, s.test_csv, s.latest_csv, s.results_dir))


def test_overrides_win_over_the_config(tmp_path):
    path = write_config(tmp_path, "RERUN_COUNT = 3\nCPU_COUNT = 1\nSEED = 4\n")
    s = load_settings(path, {"RERUN_COUNT": 7, "CPU_COUNT": None})
    assert s.rerun_count == 7          # the override wins
    assert s.cpu_count == 1            # None means "not given": the config's value stays
    assert s.seed == 4
    with pytest.raises(ConfigError, match=r"RERUN_COUNT = 0 is not valid"):
        load_settings(path, {"RERUN_COUNT": 0})


def test_cpu_count_above_the_machine_warns_and_clamps(tmp_path, monkeypatch):
    monkeypatch.setattr(settings_module.os, "cpu_count", lambda: 2)
    s = load_settings(write_config(tmp_path, "CPU_COUNT = 64\n"))
    assert s.cpu_count == 2
    assert len(s.warnings) == 1
    assert re.search(r"CPU_COUNT = 64 is more than this machine's 2 cores; using 2", s.warnings[0])
    ok = load_settings(write_config(tmp_path, "CPU_COUNT = 2\n", name="ok.py"))
    assert ok.cpu_count == 2 and ok.warnings == ()


# --------------------------------------------------------------------------
# Bad configs: every mistake is one ConfigError naming the key and what is valid
# --------------------------------------------------------------------------

BAD_CONFIGS = {
    "unknown hyperparameter": (
        'hyperparameter_values = {"learning_rat": [1e-3]}',
        r"unknown hyperparameter 'learning_rat' \(did you mean learning_rate\?\)\. Valid names: model, "),
    "unknown option value": (
        'hyperparameter_values = {"optimizer": ["adam", "adamm"]}',
        r"\['optimizer'\] contains 'adamm', which is not a valid optimizer \(did you mean adam\?\)\. "
        r"Valid values: adam, adamw, sgd, rmsprop, adagrad, adamax\."),
    "unknown activation": (
        'hyperparameter_values = {"activation": ["leakyrelu"]}',
        r"\['activation'\] contains 'leakyrelu'.*did you mean leaky_relu\?.*Valid values: relu, leaky_relu"),
    "empty list": (
        'hyperparameter_values = {"dropout": []}',
        r"\['dropout'\] is an empty list: give at least one value, or remove the key to use the default 0\.0"),
    "scalar instead of list": (
        'hyperparameter_values = {"learning_rate": 1e-3}',
        r"\['learning_rate'\] = 0\.001 must be a list of values to try.*write \[0\.001\]"),
    "string instead of list": (
        'hyperparameter_values = {"model": "mlp"}',
        r"\['model'\] = 'mlp' must be a list of values to try.*write \['mlp'\]"),
    "hidden_layers flat list": (
        'hyperparameter_values = {"hidden_layers": [2, 1, 0.5]}',
        r"\['hidden_layers'\] = \[2, 1, 0\.5\] must be a list.*write \[\[2, 1, 0\.5\]\]"),
    "hidden layer width 0": (
        'hyperparameter_values = {"hidden_layers": [[2, 1], [2, 0]]}',
        r"\['hidden_layers'\] contains \[2, 0\]; each entry must be a list of positive numbers"),
    "string learning rate": (
        'hyperparameter_values = {"learning_rate": ["1e-3"]}',
        r"\['learning_rate'\] contains '1e-3'; learning rates must be positive numbers"),
    "bool batch size": (
        'hyperparameter_values = {"batch_size": [True]}',
        r"\['batch_size'\] contains True; batch_size values must be whole numbers of at least 1"),
    "float epochs": (
        'hyperparameter_values = {"max_epochs": [8.0]}',
        r"\['max_epochs'\] contains 8\.0; max_epochs values must be whole numbers of at least 1"),
    "dropout 1.0": (
        'hyperparameter_values = {"dropout": [0.0, 1.0]}',
        r"\['dropout'\] contains 1\.0; dropout is .* from 0 \(none\) up to but not including 1"),
    "negative regularization": (
        'hyperparameter_values = {"l2_regularization": [-1e-4]}',
        r"\['l2_regularization'\] contains -0\.0001; regularization strengths must be numbers >= 0"),
    "same value twice": (
        'hyperparameter_values = {"activation": ["relu", "tanh", "relu"]}',
        r"\['activation'\] = \['relu', 'tanh', 'relu'\] lists a value twice"),
    "same number spelled twice": (
        'hyperparameter_values = {"learning_rate": [1, 1.0]}',
        r"\['learning_rate'\] = \[1, 1\.0\] lists a value twice"),
    "zero spelled twice": (
        'hyperparameter_values = {"dropout": [0.0, -0.0]}', r"\['dropout'\] = \[0\.0, -0\.0\] lists a value twice"),
    "same layers spelled twice": (
        'hyperparameter_values = {"hidden_layers": [[2, 1], [2.0, 1.0]]}',
        r"\['hidden_layers'\] = \[\[2, 1\], \[2\.0, 1\.0\]\] lists a value twice"),
    "hyperparameter_values not a dict": (
        'hyperparameter_values = [("dropout", [0.1])]',
        r"hyperparameter_values must be a dict of name -> list of values, not list"),
    "RERUN_COUNT 0": ("RERUN_COUNT = 0", r"RERUN_COUNT = 0 is not valid: it must be a whole number of at least 1"),
    "CPU_COUNT 0": ("CPU_COUNT = 0", r"CPU_COUNT = 0 is not valid: it must be a whole number of at least 1"),
    "CPU_COUNT float": ("CPU_COUNT = 2.0", r"CPU_COUNT = 2\.0 is not valid: it must be a whole number"),
    "NUMBER_OF_COMBINATIONS_TO_TRY 0": (
        "NUMBER_OF_COMBINATIONS_TO_TRY = 0",
        r"NUMBER_OF_COMBINATIONS_TO_TRY = 0 is not valid: it must be a whole number of at least 1"),
    "PREDICTION_THRESHOLD 1.5": (
        "PREDICTION_THRESHOLD = 1.5",
        r"PREDICTION_THRESHOLD = 1\.5 is not valid: it must be a number strictly between 0 and 1"),
    "PREDICTION_THRESHOLD 0": ("PREDICTION_THRESHOLD = 0", r"PREDICTION_THRESHOLD = 0 is not valid"),
    "SEED negative": ("SEED = -1", r"SEED = -1 is not valid: it must be a whole number of at least 0"),
    "EXPLORE_ALL_COMBINATIONS string": (
        'EXPLORE_ALL_COMBINATIONS = "yes"', r"EXPLORE_ALL_COMBINATIONS = 'yes' is not valid: it must be True or False"),
    "P_VALUE_TEST typo": (
        'P_VALUE_TEST = "fischer"',
        r"P_VALUE_TEST = 'fischer' is not valid \(did you mean fisher\?\)\. Valid values: 'binomial', 'fisher'"),
    "DEVICE unknown": ('DEVICE = "tpu"', r"DEVICE = 'tpu' is not valid.*Valid values: 'auto', 'cpu', 'cuda'"),
    "DEVICE gpu": ('DEVICE = "GPU"', r"DEVICE = 'GPU' is not valid \(did you mean cuda\?\)\. Valid values: 'auto', "),
    "TRAIN_CSV empty": ('TRAIN_CSV = ""', r"TRAIN_CSV = '' is not valid: it must be a path"),
    "SAMPLER typo": ('SAMPLER = "tpee"', r"SAMPLER = 'tpee' is not valid \(did you mean tpe\?\)\. Valid values: 'grid', "),
    "PRUNER unknown": ('PRUNER = "asha"', r"PRUNER = 'asha' is not valid.*'median', 'successive_halving', 'hyperband'"),
    "PRUNER with folds": ('PRUNER = "median"\nVALIDATION_FOLDS = 3',
                          r"PRUNER = 'median' cannot be combined with VALIDATION_FOLDS = 3"),
    "HEARTBEAT_TIMEOUT 0": ("HEARTBEAT_TIMEOUT = 0", r"HEARTBEAT_TIMEOUT = 0 is not valid: it must be a number of seconds"),
    "range with grid search": (
        'from inputs.space import loguniform\nhyperparameter_values = {"learning_rate": loguniform(1e-5, 1e-1)}',
        r"\['learning_rate'\] = loguniform\(1e-05, 0\.1\) is a range, but SAMPLER is 'grid'.*SAMPLER = \"tpe\""),
    "range with random search": (
        'from inputs.space import uniform\nEXPLORE_ALL_COMBINATIONS = False\nhyperparameter_values = {"dropout": uniform(0, 0.5)}',
        r"is a range, but SAMPLER is 'random'"),
    "range for a list-only hyperparameter": (
        'from inputs.space import uniform\nSAMPLER = "tpe"\nhyperparameter_values = {"optimizer": uniform(0, 1)}',
        r"\['optimizer'\] = uniform\(0\.0, 1\.0\) is a range, but optimizer takes one of a list of values"),
    "float range for an integer": (
        'from inputs.space import uniform\nSAMPLER = "tpe"\nhyperparameter_values = {"batch_size": uniform(16, 256)}',
        r"batch_size is a whole number, so write intrange\(16, 256\)"),
    "integer range for a float": (
        'from inputs.space import intrange\nSAMPLER = "tpe"\nhyperparameter_values = {"dropout": intrange(0, 1)}',
        r"dropout is not a whole number; use uniform\(\) or loguniform\(\)"),
    "dropout range reaching 1": (
        'from inputs.space import uniform\nSAMPLER = "tpe"\nhyperparameter_values = {"dropout": uniform(0, 1)}',
        r"\['dropout'\] = uniform\(0\.0, 1\.0\) is not valid: dropout is a fraction from 0 up to but not including 1"),
    "impossible range bounds": (
        'from inputs.space import loguniform\nSAMPLER = "tpe"\nhyperparameter_values = {"learning_rate": loguniform(0, 1)}',
        r"on line 3: the range loguniform\(0, 1\) needs 0 < low < high\. Fix the bounds"),
    "no permutations": (
        "PERMUTATIONS = 0",
        r"PERMUTATIONS = 0 is not valid: every p-value of the ranking comes from the block permutation test, "
        r"which needs a whole number of at least 99"),
    "label horizon zero": ("LABEL_HORIZON = 0", r"LABEL_HORIZON = 0 is not valid: it must be a whole number of at least 1"),
    "label horizon float": ("LABEL_HORIZON = 2.5", r"LABEL_HORIZON = 2\.5 is not valid: it must be a whole number"),
    "negative embargo": ("EMBARGO_DAYS = -1", r"EMBARGO_DAYS = -1 is not valid: it must be a whole number of at least 0"),
    "significance level 1": ("SIGNIFICANCE_LEVEL = 1", r"SIGNIFICANCE_LEVEL = 1 is not valid: .*strictly between 0 and 1"),
    "block length zero": ("PERMUTATION_BLOCK_LENGTH = 0", r"PERMUTATION_BLOCK_LENGTH = 0 is not valid"),
    "unknown UPPERCASE setting": (
        "RERUN_COUNTS = 3",
        r"sets unknown setting RERUN_COUNTS \(did you mean RERUN_COUNT\?\)\. Valid settings: CONFIRM_TOP_K, CPU_COUNT, "),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS), ids=list(BAD_CONFIGS))
def test_bad_config(tmp_path, case):
    text, message = BAD_CONFIGS[case]
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(write_config(tmp_path, text + "\n"))
    assert "\n" not in str(info.value)       # one paragraph, printed as-is by search.py


def test_ranges_load_for_a_model_based_sampler(tmp_path):
    s = load_settings(write_config(tmp_path, """
        from inputs.space import loguniform, uniform, intrange
        SAMPLER = "tpe"
        PRUNER = "hyperband"
        hyperparameter_values = {"learning_rate": loguniform(1e-5, 1e-1), "dropout": uniform(0, 0.5),
                                 "batch_size": intrange(16, 256), "optimizer": ["adam", "sgd"]}
    """))
    assert s.sampler == "tpe" and not s.planned and s.pruner == "hyperband"
    assert s.hyperparameter_values["learning_rate"] == Range("loguniform", 1e-5, 1e-1)
    assert s.hyperparameter_values["batch_size"].distribution().high == 256
    assert s.hyperparameter_values["optimizer"] == ["adam", "sgd"]


def test_sampler_defaults_follow_explore_all_combinations(tmp_path):
    assert load_settings(write_config(tmp_path, "", "a.py")).sampler == "grid"
    assert load_settings(write_config(tmp_path, "EXPLORE_ALL_COMBINATIONS = False", "b.py")).sampler == "random"


def test_config_file_missing(tmp_path):
    path = tmp_path / "nope.py"
    with pytest.raises(ConfigError, match=rf"Config file {re.escape(str(path))} does not exist.*--config"):
        load_settings(path)


def test_config_folder_says_it_is_a_folder_and_names_the_file_inside(tmp_path):
    with pytest.raises(ConfigError, match=rf"Config file {re.escape(str(tmp_path))} is a folder, not a file\. "
                                          rf".*--config {re.escape(str(tmp_path / 'my_sweep.py'))}\."):
        load_settings(tmp_path)
    (tmp_path / "config.py").write_text("RERUN_COUNT = 1\n")
    with pytest.raises(ConfigError, match=rf"--config {re.escape(str(tmp_path / 'config.py'))}\."):
        load_settings(tmp_path)


@pytest.mark.parametrize("text, line", [
    ("RERUN_COUNT = 3\nSEED = 1\nCPU_COUNT = = 2\n", 3),
    ('hyperparameter_values = {\n    "dropout": [0.0, 0.2\n}\n', 3),   # Python points at the '}'
    ("SEED = 1\n  RERUN_COUNT = 2\n", 2),          # IndentationError
])
def test_config_syntax_error_names_the_line(tmp_path, text, line):
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"config\.py is not valid Python: .* on line {line}\. "
                                          rf"Fix that line"):
        load_settings(path)


def test_config_raising_names_the_exception_and_line(tmp_path):
    path = write_config(tmp_path, "SEED = 1\nRERUN_COUNT = 1 / 0\n")
    with pytest.raises(ConfigError, match=r"config\.py failed to run on line 2: ZeroDivisionError: division by zero"):
        load_settings(path)


def test_config_raising_inside_a_function(tmp_path):
    path = write_config(tmp_path, """
        def rates():
            return [10 ** -k for k in undefined_name]

        hyperparameter_values = {"learning_rate": rates()}
    """)
    with pytest.raises(ConfigError, match=r"failed to run on line 3: NameError: .*undefined_name"):
        load_settings(path)


def test_lowercase_helpers_are_allowed(tmp_path):
    path = write_config(tmp_path, """
        import math
        base = 1e-3
        hyperparameter_values = {"learning_rate": [base, base / math.sqrt(10)]}
    """)
    assert len(load_settings(path).hyperparameter_values["learning_rate"]) == 2


# --------------------------------------------------------------------------
# The real CLI: exit code 2, a clear message, no traceback, nothing written
# --------------------------------------------------------------------------

def run_cli(config: Path, results: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "search.py", "--config", str(config), "--results", str(results), "--no-progress", *extra],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def assert_clean_failure(result, results: Path, *expected: str):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.stderr.startswith("error: ")
    for pattern in expected:
        assert re.search(pattern, result.stderr), result.stderr
    assert not results.exists() or not any(results.iterdir())


CLI_BAD_CONFIGS = {
    "unknown hyperparameter": ('hyperparameter_values = {"learning_rat": [1e-3]}',
                               [r"learning_rat", r"did you mean learning_rate"]),
    "flat hidden_layers": ('hyperparameter_values = {"hidden_layers": [2, 1, 0.5]}',
                           [r"hidden_layers", r"\[\[2, 1, 0\.5\]\]"]),
    "RERUN_COUNT 0": ("RERUN_COUNT = 0", [r"RERUN_COUNT = 0", r"at least 1"]),
    "syntax error": ("SEED = 1\nRERUN_COUNT = (\n", [r"BAD\.py is not valid Python", r"line 2"]),
    "exception": ("SEED = 1\nCPU_COUNT = int('many')\n", [r"BAD\.py failed to run on line 2", r"ValueError"]),
}


@pytest.mark.parametrize("case", list(CLI_BAD_CONFIGS), ids=list(CLI_BAD_CONFIGS))
def test_cli_bad_config(tmp_path, case):
    text, expected = CLI_BAD_CONFIGS[case]
    config = write_config(tmp_path, text + "\n", name="BAD.py")
    results = tmp_path / "results"
    assert_clean_failure(run_cli(config, results), results, *expected)


def test_cli_missing_config(tmp_path):
    results = tmp_path / "results"
    assert_clean_failure(run_cli(tmp_path / "missing.py", results), results, r"missing\.py does not exist")


def write_bad_data_config(folder: Path) -> Path:
    """A config whose train file has a text cell on line 3 (the test file is fine)."""
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.csv").write_text("0.1,0.2,0\n0.3,0.4,1\n0.5,oops,0\n0.7,0.8,1\n")
    (folder / "data" / "test.csv").write_text("0.1,0.2,0\n0.3,0.4,1\n")
    return write_config(folder, """
        hyperparameter_values = {"max_epochs": [1]}
        TRAIN_CSV = "data/train.csv"
        TEST_CSV = "data/test.csv"
        RERUN_COUNT = 1
        CPU_COUNT = 1
    """, name="baddata.py")


def test_cli_bad_data_names_file_and_line(tmp_path):
    config = write_bad_data_config(tmp_path)
    results = tmp_path / "results"
    result = run_cli(config, results)
    assert_clean_failure(result, results, r"train\.csv", r"\bline 3\b", r"'oops' is not a number")


def test_cli_override_wins_over_config(tmp_path):
    # The config alone would get as far as its bad data; --rerun-count 0 must be rejected first.
    config = write_bad_data_config(tmp_path)
    results = tmp_path / "results"
    result = run_cli(config, results, "--rerun-count", "0")
    assert_clean_failure(result, results, r"RERUN_COUNT = 0 is not valid")
    assert "train.csv" not in result.stderr
