"""The rows a sweep trains and evaluates on, saved for the workers; what a run folder remembers of its settings.

SELECTION = "test": train on the train file (purged against the test file's
first date), evaluate on the test file. SELECTION = "validation": train on
the train file's first rows, evaluate on its chronological tail, cut into
VALIDATION_FOLDS consecutive folds; fold k trains on every row before it
(walk-forward), purged at its boundary, so no fold learns from its own
future. The test file is then not even opened (only its existence is
checked) until the top combinations are confirmed on it.
"""
from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from pathlib import Path

import numpy as np

from inputs.files import (
    Labelled,
    check_latest,
    check_same_form,
    check_train_test,
    feature_channels,
    load_labelled,
    load_latest,
)
from inputs.scaling import Standardizer
from inputs.settings import Settings
from inputs.splits import Split, holdout_split, validation_splits
from ranking.significance import PermutationTest, date_blocks, row_blocks


def evaluation_folds(settings: Settings) -> tuple[list[tuple], Labelled, list[Split]]:
    """The rows the combinations are ranked on: [(training, evaluated rows)] per fold, all evaluated rows, splits."""
    train = load_labelled(settings.train_csv)
    if settings.selection == "test":
        test = load_labelled(settings.test_csv)
        check_train_test(train, test)
        split = holdout_split(train, test, settings.label_horizon, settings.embargo_days)
        return [(train.take(split.train), test)], test, [split]
    # the test file's form is checked now, so that a bad file stops the run before it trains rather than
    # after; its labels are first used when the top combinations are confirmed on it
    check_same_form(train, load_labelled(settings.test_csv))
    splits = validation_splits(train, settings.validation_fraction, settings.validation_folds,
                               settings.label_horizon, settings.embargo_days)
    folds = []
    for split in splits:
        rows = split.evaluate
        fold = (train.take(split.train), train.take(rows))
        check_train_test(*fold, test_name=f"{settings.train_csv} (rows {rows[0] + 1}-{rows[-1] + 1}, {split.name})")
        folds.append(fold)
    return folds, train.take(slice(int(splits[0].evaluate[0]), None)), splits


def check_latest_file(settings: Settings, n_features: int) -> None:
    """The latest-data file, when there is one, must be readable and have the training data's features."""
    if Path(settings.latest_csv).is_file():
        tickers, x = load_latest(settings.latest_csv)
        check_latest(settings.latest_csv, x, n_features)


def prepare_data(settings: Settings) -> dict:
    """The data the combinations are ranked on, checked, purged, standardized and saved for the workers."""
    folds, evaluated, splits = evaluation_folds(settings)
    check_latest_file(settings, evaluated.x.shape[1])
    saved = [save_for_workers(train, rows) for train, rows in folds]
    return {"folds": [s["files"] for s in saved], "fold_rows": [s["rows"] for s in saved],
            "n_features": saved[0]["n_features"], "channels": feature_channels(folds[0][0].features),
            "evaluated": evaluated, "splits": splits}


def confirmation_rows(settings: Settings) -> tuple[Labelled, Labelled, Split]:
    """The train file (purged against the test file's first date), the test file, and their split."""
    train, test = load_labelled(settings.train_csv), load_labelled(settings.test_csv)
    check_train_test(train, test)
    split = holdout_split(train, test, settings.label_horizon, settings.embargo_days)
    return train.take(split.train), test, split


def prepare_confirmation_data(settings: Settings) -> dict:
    """The confirmation's rows, saved for the workers."""
    train, test, split = confirmation_rows(settings)
    return {**save_for_workers(train, test), "evaluated": test, "split": split}


def save_for_workers(train: Labelled, evaluated: Labelled) -> dict:
    """Standardize with the training rows' statistics only, and save as .npy files the workers load once."""
    scaler = Standardizer().fit(train.x)
    folder = Path(tempfile.mkdtemp(prefix="sweep-data-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    files = {}
    for name, array in {"train_x": scaler.transform(train.x), "train_y": train.y,
                        "eval_x": scaler.transform(evaluated.x), "eval_y": evaluated.y}.items():
        files[name] = str(folder / f"{name}.npy")
        np.save(files[name], np.ascontiguousarray(array))
    return {"files": files, "n_features": train.x.shape[1], "rows": len(evaluated)}


def permutation_test(settings: Settings, rows: Labelled) -> PermutationTest:
    """The block permutation test of these evaluated rows: blocks of whole dates, or of rows without dates."""
    blocks = date_blocks(rows.dates, rows.tickers, settings.label_horizon) if rows.dated \
        else row_blocks(len(rows), settings.permutation_block_length)
    return PermutationTest(rows.y, blocks, settings.permutations, settings.seed)


def share_label_orders(test: PermutationTest, data: dict) -> None:
    """Save each fold's rows of the test's label orders beside its data files, for the workers.

    A worker counts its trainings' true positives under every order
    (training/loop.py): the product of predictions with the labels is most
    of what scoring a combination costs, and done in the workers it runs on
    every core instead of in the one main process. The sums add up over
    folds, whose evaluated rows follow each other in the test's rows.
    """
    assert sum(data["fold_rows"]) == len(test.labels), "the folds' evaluated rows are the test's rows"
    start = 0
    for files, rows in zip(data["folds"], data["fold_rows"]):
        folder = Path(files["eval_y"]).parent
        for name, matrix in (("order_labels", test.labels), ("order_mask", test.mask)):
            if matrix is not None:
                files[name] = str(folder / f"{name}.npy")
                np.save(files[name], np.ascontiguousarray(matrix[start:start + rows]))
        start += rows


RUN_RECORD = ("TRAIN_CSV", "TEST_CSV", "LATEST_CSV", "SEED", "RERUN_COUNT", "PREDICTION_THRESHOLD", "SELECTION",
              "EXPLORE_ALL_COMBINATIONS", "NUMBER_OF_COMBINATIONS_TO_TRY", "SAMPLER", "PRUNER",
              "P_VALUE_TEST", "FALSE_DISCOVERY_RATE", "SIGNIFICANCE_LEVEL", "PERMUTATIONS",
              "PERMUTATION_BLOCK_LENGTH", "LABEL_HORIZON", "EMBARGO_DAYS", "VALIDATION_FRACTION",
              "VALIDATION_FOLDS", "CONFIRM_TOP_K")


def run_record(settings: Settings) -> dict:
    """The resolved settings later commands need to rank and predict (evaluate.py), with absolute paths.

    With grid or random search it holds the hyperparameter values too: a
    study keeps every combination it ever finished, and is ranked on the
    ones its latest config plans.
    """
    record = {key: str(value) if isinstance(value, Path) else value
              for key, value in ((key, getattr(settings, key.lower())) for key in RUN_RECORD)}
    if settings.planned:
        record["hyperparameter_values"] = settings.hyperparameter_values
    return record


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def run_fingerprint(settings: Settings) -> dict:
    """Every setting that changes what a training computes: a study only ever holds trainings of one fingerprint.

    What only chooses which trainings run is left out, so that a finished
    sweep can grow: more hyperparameter values, a larger
    NUMBER_OF_COMBINATIONS_TO_TRY and (for grid and random search without a
    pruner) a higher RERUN_COUNT train only what is new, because a training's
    seed depends on (SEED, combination, rerun) alone. A model-based sampler
    chooses each combination from the results so far, and a pruner compares
    each epoch's loss with the other combinations': there, the space and
    RERUN_COUNT change the results, so they are part of the fingerprint.
    """
    fingerprint = {
        "SEED": settings.seed, "PREDICTION_THRESHOLD": settings.prediction_threshold,
        "P_VALUE_TEST": settings.p_value_test, "SELECTION": settings.selection,
        "TRAIN_CSV": file_digest(settings.train_csv),
        # they decide which training rows are purged at each boundary
        "LABEL_HORIZON": settings.label_horizon, "EMBARGO_DAYS": settings.embargo_days,
        # in validation mode the test file's labels are read only at confirmation; its digest is checked then
        "TEST_CSV": file_digest(settings.test_csv) if settings.selection == "test" else None,
        "VALIDATION_FRACTION": settings.validation_fraction if settings.selection == "validation" else None,
        "VALIDATION_FOLDS": settings.validation_folds if settings.selection == "validation" else None,
        "PRUNER": settings.pruner,
        # grid and random search plan the same kind of combinations, each trained alone
        "SAMPLER": "grid or random" if settings.planned else settings.sampler,
    }
    if not settings.planned or settings.pruner is not None:
        fingerprint["RERUN_COUNT"] = settings.rerun_count
    if not settings.planned:
        fingerprint.update({f"hyperparameter_values[{name!r}]": repr(values)
                            for name, values in settings.hyperparameter_values.items()})
    return fingerprint


def too_few_blocks(test: PermutationTest, rows: str, level: float) -> str:
    """The warning for a permutation test whose smallest p-value cannot reach the significance level."""
    blocks = test.blocks
    unit = "whole dates spanning at least LABEL_HORIZON weekdays each" if blocks.by_date else "rows"
    return (f"the {rows} make only {blocks.count} permutation block(s) of {unit}, so the smallest p-value the "
            f"test can give is {test.smallest_p_value:.3g}: nothing can reach the {level:g} level. Evaluate on "
            f"a longer period (a larger VALIDATION_FRACTION or test file)"
            + (" or a smaller LABEL_HORIZON, if the labels really look less far ahead." if blocks.by_date
               else " or set PERMUTATION_BLOCK_LENGTH to fewer rows."))


