"""Per-value summaries of a ranking: labels for hyperparameter values, -log10 p, values.csv, importances."""
from __future__ import annotations

import warnings

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from inputs.hyperparameters import HYPERPARAMETERS, grid_distribution

SMALLEST_P = np.finfo(float).tiny  # p-values are clipped to this before -log10, so p = 0 stays finite


def minus_log10(p) -> np.ndarray:
    """-log10 of p-values, the scale every plot uses: 0 is p = 1, 2 is p = 0.01, higher is better."""
    return 0.0 - np.log10(np.clip(np.asarray(p, dtype=float), SMALLEST_P, 1.0))  # 0.0 - 0.0 is +0.0, not -0.0


def is_missing(value) -> bool:
    """A hyperparameter that does not apply to a combination: None, NaN, or '' (an empty CSV cell)."""
    if isinstance(value, str):
        return value == ""
    if isinstance(value, (list, tuple)):
        return False
    return value is None or bool(pd.isna(value))


def value_label(value) -> str:
    """One spelling per value: 0.0 and 0 read '0', 5e-05 reads '5e-05', lists stay '[2, 1, 0.5]'."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return str(value.item() if isinstance(value, np.generic) else value)
    return str(value)


def value_labels(ranking: pd.DataFrame, name: str) -> pd.Series:
    """The hyperparameter's value per combination as labels; combinations where it does not apply are dropped."""
    if name not in ranking:
        return pd.Series(dtype=object)
    column = ranking[name]
    try:  # each distinct value labelled once: a big sweep has 10,000s of rows and a few values
        codes, distinct = pd.factorize(column)
    except TypeError:  # unhashable values (lists)
        return column[~column.map(is_missing)].map(value_label)
    labels = np.array([None if is_missing(v) else value_label(v) for v in distinct] + [None], dtype=object)
    mapped = pd.Series(labels[codes], index=column.index, dtype=object)  # code -1 (NaN, None) -> None
    return mapped[mapped.notna()]


def ordered_values(labels: pd.Series) -> list[str]:
    """The distinct values, numerically when they are all numbers, else alphabetically."""
    distinct = list(dict.fromkeys(labels))
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct)


def varying_hyperparameters(ranking: pd.DataFrame) -> list[str]:
    """The hyperparameters that take more than one value across the ranked combinations."""
    return [name for name in HYPERPARAMETERS if value_labels(ranking, name).nunique() > 1]


def value_summary(ranking: pd.DataFrame) -> pd.DataFrame:
    """Per value of every varying hyperparameter: how many combinations have it, their median -log10 p and best.

    The best is there because the median is often 0: when most combinations
    predict nothing (p = 1), the median hides the values that did work.
    """
    rows = []
    for name in varying_hyperparameters(ranking):
        labels = value_labels(ranking, name)
        scores = pd.Series(minus_log10(ranking.loc[labels.index, "p_value"]), index=labels.index)
        for value in ordered_values(labels):
            chosen = scores[labels == value]
            rows.append({"hyperparameter": name, "value": value, "combinations": len(chosen),
                         "median_minus_log10_p": float(chosen.median()),
                         "best_minus_log10_p": float(chosen.max())})
    return pd.DataFrame(rows, columns=["hyperparameter", "value", "combinations", "median_minus_log10_p",
                                       "best_minus_log10_p"])


def ranked_trials(study, combinations=None) -> list:
    """The study's COMPLETE trials of the ranked combinations: one each, the last recorded.

    A study can hold more than the ranking: combinations of a wider earlier
    grid (left out unless in `combinations`; None keeps all), and a
    combination recorded twice when a grown RERUN_COUNT added reruns (the
    later trial holds them all).
    """
    latest = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        cid = trial.user_attrs.get("combination", trial.number)
        if trial.value is not None and (combinations is None or cid in combinations):
            latest[cid] = trial  # get_trials returns them in the order they were created
    return list(latest.values())


def importances(study, combinations=None) -> pd.Series | None:
    """Optuna's hyperparameter importances (default evaluator), shares summing to 1, largest first.

    None where they mean nothing: fewer than 2 finished combinations, all
    with the same p-value, no hyperparameter that varies, or an evaluator
    that fails. Optuna would instead return equal shares there, which reads
    as an answer. Hyperparameters fixed for the whole run are left out.
    Computed on the ranked trials (ranked_trials) alone, each parameter
    spanning the values they hold: a grown grid's trials were recorded with
    narrower ranges, which Optuna would leave out as a changing search space.
    """
    trials = ranked_trials(study, combinations)
    if len(trials) < 2 or len({t.value for t in trials}) < 2:
        return None
    names = dict.fromkeys(name for t in trials for name in t.params)
    space = {name: grid_distribution(list(dict.fromkeys(t.params[name] for t in trials if name in t.params)))
             for name in names}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning for normalize=, "too few trials" notes
            ranked = optuna.create_study(direction=study.direction)
            ranked.add_trials([optuna.trial.create_trial(params=t.params, value=t.value,
                                                         distributions={n: space[n] for n in t.params})
                               for t in trials])
            raw = optuna.importance.get_param_importances(ranked, normalize=False)
    except Exception:  # noqa: BLE001 - any failure only means "no importances in the report"
        return None
    varying = {name for name, d in space.items() if not d.single()}
    shares = pd.Series({name: float(v) for name, v in raw.items() if name in varying}, dtype=float)
    total = shares.sum()
    if shares.empty or not np.isfinite(total) or total <= 0:
        return None
    return (shares / total).sort_values(ascending=False).rename("importance")
