"""The study read as one trial per finished combination: what the report's plots and importances read.

A planned sweep records a task's combinations in one trial
(records/claims.py: finished_in); Optuna's own tools and ranking/ read
trials, one per combination, with the hyperparameters as their params. This
view gives them that, whichever way each combination was recorded.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime

from inputs.hyperparameters import HYPERPARAMETERS, display_value
from records.claims import TASK_ENTRIES, finished_in


@dataclass(frozen=True)
class CombinationTrial:
    """A combination's entry in its task's trial, read as a COMPLETE trial of its own."""
    number: int
    state: object
    value: float
    params: dict
    user_attrs: dict
    datetime_start: datetime | None
    datetime_complete: datetime | None


class PerCombination:
    """`study` with each task's trial split into a trial per combination (get_trials and direction)."""

    def __init__(self, study) -> None:
        self.study = study
        self.direction = study.direction

    def get_trials(self, deepcopy: bool = False, states=None) -> list:
        """The trials in the order they were recorded, a task's combinations in its place."""
        out = []
        for trial in self.study.get_trials(deepcopy=deepcopy, states=states):
            if TASK_ENTRIES not in trial.user_attrs:
                out.append(trial)
                continue
            for _, record in finished_in(trial):
                attrs = record.user_attrs
                shown = {name: display_value(attrs["params"][name]) for name in HYPERPARAMETERS
                         if attrs["params"].get(name) is not None}
                out.append(CombinationTrial(trial.number, trial.state, 0.0 - math.log10(attrs["p_value"]), shown,
                                            attrs, trial.datetime_start, trial.datetime_complete))
        # as a trial of its own shows them: only the hyperparameters that vary
        split = [t for t in out if isinstance(t, CombinationTrial)]
        values: dict[str, set] = {}
        for t in split:
            for name, value in t.params.items():
                values.setdefault(name, set()).add(repr(value))
        fixed = {name for name, seen in values.items() if len(seen) == 1 and all(name in t.params for t in split)}
        return [dataclasses.replace(t, params={n: v for n, v in t.params.items() if n not in fixed})
                if isinstance(t, CombinationTrial) else t for t in out]
