"""Pruning, on the worker's side: after each epoch, report the validation loss to the trial and ask whether to stop.

A pruned combination trains alone (its reruns fused), so stopping it saves
its remaining epochs outright. The value reported is the median over the
reruns of the mean loss on the evaluation rows (the same rows the ranking
uses), with dropout off: smooth from epoch to epoch, unlike the precision
p-value, which is 1 for every model that does not yet predict any positive.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

WORST = 1e30  # what a diverged (NaN) loss is reported as: worse than anything real


@lru_cache(maxsize=4)
def _study(url: str | None, journal: str | None, name: str, pruner: str):
    """The study, opened once per worker process (opening a journal replays it)."""
    import optuna
    from strategies import pruner_named
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url is None:
        from study import journal_storage
        storage = journal_storage(journal)
    else:
        from study import create_rdb
        storage = create_rdb(url)
    return optuna.load_study(study_name=name, storage=storage, pruner=pruner_named(pruner))


def after_epoch_reporter(spec: dict, x_eval, y_eval, loss_name: str):
    """The `after_epoch` hook for training.train_members: True means stop (pruned)."""
    import optuna
    from training import evaluation_loss
    study = _study(spec["storage"]["url"], spec["storage"]["journal"], spec["study"], spec["pruner"])
    trial = optuna.trial.Trial(study, spec["trial_id"])

    def after_epoch(epoch: int, model) -> bool:
        value = float(np.median(evaluation_loss(model, x_eval, y_eval, loss_name)))
        trial.report(value if math.isfinite(value) else WORST, epoch)
        # after the last epoch there is nothing left to save
        return epoch + 1 < spec["max_epochs"] and trial.should_prune()

    return after_epoch
