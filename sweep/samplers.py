"""Optuna's samplers and pruners as the config names them, and how a sampler's trial becomes a combination.

grid and random are planned up front by sweep/plan.py; the model-based
samplers (tpe, cmaes, gp, qmc) are asked for each next combination as
results come in (records/ledger.py's Ledger.claim_asked). Pruners stop a
combination's training early when its validation loss after some epochs is
worse than what other combinations had at the same epoch (training/pruning.py
reports it each epoch, and names the pruners).
"""
from __future__ import annotations

import hashlib
import os
import warnings

import optuna

from inputs.hyperparameters import (
    HYPERPARAMETERS,
    LSTM_ONLY,
    display_value,
    normalize_value,
)
from inputs.settings import Settings
from inputs.space import Range
from records.claims import HOST
from training.pruning import pruner_named


def make_sampler(settings: Settings):
    """The Optuna sampler behind SAMPLER, or None for the planned ones (they do not ask).

    Several processes sharing a study must not propose the same points: TPE
    runs with constant liar (it treats the combinations other processes are
    training as if they had come out badly, so it looks elsewhere), and each
    process seeds its sampler from SEED and its own identity, because equal
    seeds would make every process propose the same sequence. QMC is the
    exception: its points are numbered through the shared study, so every
    process must use the same scrambling (SEED alone).
    """
    if settings.planned:
        return None
    identity = f"{settings.seed}:{HOST}:{os.getpid()}".encode()
    own = int.from_bytes(hashlib.blake2b(identity, digest_size=4).digest(), "big")
    if settings.sampler == "tpe":
        with warnings.catch_warnings():  # multivariate and group are Optuna's "experimental" options
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=own, constant_liar=True, multivariate=True, group=True)
    if settings.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=own, warn_independent_sampling=False)
    if settings.sampler == "gp":
        return optuna.samplers.GPSampler(seed=own, warn_independent_sampling=False)
    if settings.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=settings.seed, scramble=True, warn_independent_sampling=False)
    raise ValueError(settings.sampler)


def make_pruner(settings: Settings):
    """The Optuna pruner behind PRUNER (None: never prune)."""
    return pruner_named(settings.pruner)


def suggest_combination(trial, values: dict) -> dict:
    """Ask `trial` for one value of every hyperparameter: from the list, or within the range.

    The LSTM-only settings are asked only for LSTM models, so an MLP never
    carries them (the same combination as grid search would make).
    """
    combination = {}
    model = None
    for name in HYPERPARAMETERS:
        if name in LSTM_ONLY and model != "lstm":
            combination[name] = None
            continue
        options = values[name]
        if isinstance(options, Range):
            value = (trial.suggest_int(name, int(options.low), int(options.high)) if options.is_int else
                     trial.suggest_float(name, options.low, options.high, log=options.kind == "loguniform"))
        else:
            shown = [display_value(v) for v in options]
            value = options[shown.index(trial.suggest_categorical(name, shown))]
        combination[name] = normalize_value(name, value)
        if name == "model":
            model = value
    return combination
