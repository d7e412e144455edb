"""Pruning, on the worker's side: after each epoch, report the validation loss to the trial and ask whether to stop.

A pruned combination trains alone (its reruns fused), so stopping it saves
its remaining epochs outright. The value reported is minus the median over
the reruns of the mean loss on the evaluation rows (the same rows the
ranking uses), with dropout off: smooth from epoch to epoch, unlike the
precision p-value, which is 1 for every model that does not yet predict any
positive; negated because the study maximizes (its values are -log10 p).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import optuna

from records.storage import create_rdb, journal_storage

WORST = -1e30  # what a diverged (NaN) loss is reported as: worse than anything real


def pruner_named(name: str | None) -> optuna.pruners.BasePruner:
    """The Optuna pruner behind PRUNER (None: never prune)."""
    if name is None:
        return optuna.pruners.NopPruner()
    if name == "median":
        # the first 4 combinations always finish, and nothing is judged on its first epoch alone
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    raise ValueError(name)


@lru_cache(maxsize=4)
def _study(url: str | None, journal: str | None, name: str, pruner: str) -> optuna.Study:
    """The study, opened once per worker process (opening a journal replays it)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = journal_storage(journal) if url is None else create_rdb(url)
    return optuna.load_study(study_name=name, storage=storage, pruner=pruner_named(pruner))


def after_epoch_reporter(spec: dict, evaluation_losses):
    """The `after_epoch` hook for training.loop.train_members: True means stop (pruned).

    evaluation_losses(model): every member's mean loss on the evaluation rows.
    """
    study = _study(spec["storage"]["url"], spec["storage"]["journal"], spec["study"], spec["pruner"])
    trial = optuna.trial.Trial(study, spec["trial_id"])

    def after_epoch(epoch: int, model) -> bool:
        value = -float(np.median(evaluation_losses(model)))
        trial.report(value if math.isfinite(value) else WORST, epoch)
        # after the last epoch there is nothing left to save
        return epoch + 1 < spec["max_epochs"] and trial.should_prune()

    return after_epoch
