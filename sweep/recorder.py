"""The results so far, as the study records them, and the CSVs written from them while the sweep runs."""
from __future__ import annotations

import collections
import functools
import math
import time
import traceback
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pandas as pd
from optuna.distributions import (
    CategoricalDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from inputs.atomic import write_csv, write_csv_parts
from inputs.hyperparameters import (
    HYPERPARAMETERS,
    display_value,
    grid_distribution,
    hyperparameter_columns,
)
from inputs.settings import Settings
from inputs.space import Range
from ranking.scores import score_counts
from ranking.significance import KeptCounts, PermutationTest
from ranking.table import (
    ERROR_COLUMNS,
    RERUN_COLUMNS,
    confirmation_table,
    label_sources,
    rank_combinations,
    reruns_table,
)
from records.claims import finished_in, reruns_in
from records.predictions import Predictions
from records.reruns import columns_of, first_reruns
from sweep.kept_reruns import KeptReruns
from sweep.scoring import p_value_of, permutation_counts, permutation_counts_of, summed_hits

FLUSH_SECONDS = 5.0  # rewrite ranking.csv / reruns.csv at most this often while running


class Recorder:
    """The results so far (this process's and, after sync, every process's); writes the CSVs every few seconds.

    The study is the record: each finished combination's reruns live on its
    trial, and `sync` reads back what other processes sharing the study have
    finished. Ranking is done lazily, when the CSVs are written, so that
    recording stays cheap however many combinations a sweep has.

    The study may hold more than this run ranks: combinations of a wider
    grid, or more reruns than RERUN_COUNT, from an earlier config. Only the
    `planned` combinations (None: every one, as a model-based sampler asks
    them) and their first RERUN_COUNT reruns are ranked, so the ranking is
    the one a fresh run of this config would give.
    """

    def __init__(self, run_dir: Path, study, settings: Settings, fold_rows: list[int],
                 test: PermutationTest, predictions: Predictions, planned: set[str] | None = None) -> None:
        self.run_dir, self.study, self.settings = run_dir, study, settings
        self.predictions = predictions                 # where the study's predictions are kept
        self.planned = planned
        self.fold_rows = fold_rows
        self.test = test                             # the ranked rows' block permutation test
        self.counts = KeptCounts(test.orders)            # what the ranking needs of each row of test.counts
        self.confirmation_test: PermutationTest | None = None
        self.confirmation_counts: KeptCounts | None = None
        self.partial: dict[str, dict[tuple[int, int], dict]] = {}  # combination -> (rerun, fold) -> result
        self.rows = KeptReruns()                     # each finished combination's scored reruns
        self.confirmation_rows: list[dict] = []
        self.errors: list[dict] = []
        self._synced: set[int] = set()               # trial numbers already taken in
        self._recorded_distributions: dict = {}      # the first trial's, when resuming a study
        self.best_p = None
        self._ranking = None
        self._confirmation = None
        self._last_flush = 0.0
        self._flush_took = 0.0
        self._dirty = True

    # -- taking results in
    def sync(self, trials) -> None:
        """Take in the finished combinations and recorded failures of the study's trials."""
        finished = {}
        for trial in trials:
            if trial.number in self._synced or not trial.state.is_finished():
                continue
            self._synced.add(trial.number)
            if trial.distributions and not self._recorded_distributions:
                self._recorded_distributions = trial.distributions
            if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
                for cid, record in finished_in(trial):
                    if cid in self.rows or cid in finished or (self.planned is not None and cid not in self.planned) \
                            or "reruns" not in record.user_attrs:
                        continue
                    if reruns_in(record) < self.settings.rerun_count:
                        continue  # some of its reruns: the sweep trains the others, then records it whole
                    finished[cid] = first_reruns(record.user_attrs, self.settings.rerun_count)
                continue
            cid = trial.user_attrs.get("combination")
            if cid is None or cid in self.rows or (self.planned is not None and cid not in self.planned):
                continue
            if trial.state == TrialState.FAIL and "error" in trial.user_attrs and \
                    not any(e["combination"] == cid and e["outcome"] == "failed" for e in self.errors):
                self.errors.append({"combination": cid, **columns_of(trial.user_attrs), "outcome": "failed",
                                    "error": trial.user_attrs["error"], "traceback": trial.user_attrs["traceback"]})
                self._dirty = True
        items = list(finished.items())
        for start in range(0, len(items), 256):  # scored in batches (permutation_counts_of)
            chunk = items[start:start + 256]
            counts = permutation_counts_of(self.test, [(reruns, bits) for _, (reruns, bits) in chunk],
                                           self.predictions)
            for (cid, (reruns, bits)), row in zip(chunk, counts):
                self.keep(cid, reruns, bits, counts=row, scored=True)

    def keep(self, cid: str, reruns: list[dict], bits: list, counts: np.ndarray | None = None,
             scored: bool = False, params: dict | None = None) -> None:
        """One finished combination's reruns, and its permutation counts (computed here unless `scored`).

        Its hyperparameter columns are those of `params` (the combination), or else its first rerun's.

        The predictions themselves stay on disk only (`bits` says where): the counts are all the ranking needs.
        """
        self.rows.add(cid, reruns, None if params is None else hyperparameter_columns(params))
        counts = counts if scored else permutation_counts(self.test, reruns, bits, self.predictions)
        self.counts.add(cid, counts)
        p = p_value_of(self.test, counts)
        self.best_p = p if self.best_p is None else min(self.best_p, p)
        self._ranking = None
        self._dirty = True

    def add_results(self, results: list[dict], trainings: dict, fold: int = 0) -> list[tuple]:
        """A task's results; returns the combinations they completed as (cid, scored reruns, where their
        predictions are kept, the workers' hits per rerun or None: see permutation_counts_of).

        With walk-forward folds a combination is complete once every rerun
        has every fold; its counts are then summed over the folds (one
        p-value per rerun on the whole validation tail). A combination's
        reruns are always in one task: those in `trainings` are all that it
        trains (all of RERUN_COUNT, or the missing ones of a grown sweep).
        """
        complete = []
        training_reruns = collections.Counter(cid for cid, _ in trainings)
        for r in results:
            parts = self.partial.setdefault(r["combination"], {})
            parts[(r["rerun"], fold)] = r
            if len(parts) == training_reruns[r["combination"]] * len(self.fold_rows):
                complete.extend(self._pool_folds(self.partial.pop(r["combination"])))
        if not complete:
            return []
        out = []
        by_rerun = {(r["combination"], r["rerun"]): r for r in complete}
        scored = self.scored_rows(complete, trainings)
        done = {cid: [by_rerun[cid, row["rerun"]] for row in reruns] for cid, reruns in scored.items()}
        kept = iter(self.predictions.put([r["predictions"] for rows in done.values() for r in rows]))
        for cid, reruns in scored.items():
            bits = [next(kept) for _ in reruns]
            hits = [(r["hits"], r["predicted"]) for r in done[cid]] if all("hits" in r for r in done[cid]) else None
            out.append((cid, reruns, bits, hits))
        return out

    def _pool_folds(self, parts: dict) -> list[dict]:
        reruns = sorted({rerun for rerun, _ in parts})
        if len(self.fold_rows) == 1:  # one evaluation set: each rerun's result as it came
            return [parts[(rerun, 0)] for rerun in reruns]
        pooled = []
        for rerun in reruns:
            folds = [parts[(rerun, k)] for k in range(len(self.fold_rows))]
            bits = np.concatenate([np.unpackbits(np.frombuffer(f["predictions"], dtype=np.uint8), count=n)
                                   for f, n in zip(folds, self.fold_rows)])
            pooled.append({**folds[0], **{k: sum(f[k] for f in folds) for k in ("tp", "fp", "tn", "fn", "seconds")},
                           "diverged": any(f["diverged"] for f in folds),
                           "train_loss": float(np.mean([f["train_loss"] for f in folds])),
                           "predictions": np.packbits(bits).tobytes(), **summed_hits(folds)})
        return pooled

    def scored_rows(self, results: list[dict], trainings: dict) -> dict[str, list[dict]]:
        """Per combination, its reruns as reruns.csv rows (but the hyperparameter columns, which the
        combination holds once): counts, precision, p-value, status.

        Plain dicts and numpy rather than a DataFrame per task: this runs for
        every finished task, and pandas' per-call overhead was most of it.
        """
        pruned = [bool(r.get("pruned")) for r in results]
        precision, p_value, _ = score_counts(
            *([r[k] for r in results] for k in ("tp", "fp", "tn", "fn")),
            [bool(r["diverged"]) or x for r, x in zip(results, pruned)], self.settings.p_value_test)
        by_combination: dict[str, list[dict]] = {}
        for r, prec, p, was_pruned in zip(results, precision, p_value, pruned):
            training = trainings[(r["combination"], r["rerun"])]
            row = {"combination": r["combination"], "rerun": int(r["rerun"]), "seed": int(r["seed"]),
                   **{k: int(r[k]) for k in ("tp", "fp", "tn", "fn")},
                   "precision": None if math.isnan(prec) else float(prec), "p_value_independent_rows": float(p),
                   "status": "pruned" if was_pruned else "completed",
                   "epochs": int(r.get("epochs", training["params"]["max_epochs"])),
                   "diverged": bool(r["diverged"]), "train_loss": _finite_or_none(r["train_loss"]),
                   "seconds": float(r["seconds"])}
            by_combination.setdefault(r["combination"], []).append(row)
        return by_combination

    def trial_template(self, combination: dict, cid: str) -> dict:
        """What a claim's trial holds: the parameters as Optuna shows them, the combination as the sweep uses it.

        Optuna's params are the hyperparameters this sweep varies: one fixed
        for the whole run says nothing in the dashboard or the importances,
        and its distribution, written and read back in every trial's record,
        was most of a record's size on a big grid. The whole combination is
        in the "params" user attr.
        """
        shown = _optuna_params(combination)
        shown = {name: shown[name] for name in self._varying if name in shown}
        return {"params": shown, "distributions": {name: self._distribution_of[name] for name in shown},
                "user_attrs": {"combination": cid, "params": combination}}

    def set_confirmation(self, test: PermutationTest, rows: list[dict], counts: dict) -> None:
        """The top combinations' reruns on the test file and their permutation counts there.

        They fill p_value_test and confirmation.csv."""
        self.confirmation_test, self.confirmation_rows = test, rows
        self.confirmation_counts = KeptCounts.of(counts, test.orders)
        self._ranking = None
        self._dirty = True

    def add_error(self, training: dict, error: BaseException, outcome: str) -> dict:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        cause = getattr(error, "__cause__", None)
        if cause is not None:  # loky attaches the worker's own traceback as the cause
            text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)) + text
        if isinstance(error, BrokenProcessPool):
            text = ("The worker process training this combination died (killed, out of memory, or a crash "
                    "in native code); its other trainings were not affected.\n" + text)
        entry = {"combination": training["combination"], **hyperparameter_columns(training["params"]),
                 "outcome": outcome, "error": f"{type(error).__name__}: {error}", "traceback": text}
        self.errors.append(entry)
        self._dirty = True
        return entry

    @functools.cached_property
    def _distribution_of(self) -> dict:
        """Each hyperparameter's Optuna distribution: the same for every combination, so built once.

        A resumed study goes on with the distributions its trials were
        recorded with (an older version recorded numbers as categorical
        choices): Optuna's importances leave out a parameter whose
        distribution differs between trials. The run's fingerprint
        guarantees the same values, so every one of them fits.
        """
        values = self.settings.hyperparameter_values
        own = {name: values[name].distribution() if isinstance(values[name], Range)
               else grid_distribution(values[name]) for name in values}
        # a grown grid's new values may lie outside what the study recorded: then this run's own
        return {**own, **{name: d for name, d in self._recorded_distributions.items()
                          if name in own and _holds(d, values[name])}}

    @functools.cached_property
    def _varying(self) -> list[str]:
        return [name for name, distribution in self._distribution_of.items() if not distribution.single()]

    # -- ranking
    @property
    def ranking(self):
        """ranking.csv as a table (None before the first result); computed when asked, then kept until new results."""
        if self._ranking is None and self.rows:
            # the hyperparameter columns once per combination, not once per rerun: on a big sweep the
            # reruns' table is the flush's largest, and its memory stays in the process's peak
            ranking = rank_combinations(reruns_table(self.rows.table(hyperparameters=False)), self.counts,
                                        self.settings.false_discovery_rate, columns=self.rows.columns())
            self._confirmation = self._confirmation_table(ranking)
            self._ranking = label_sources(ranking, self.settings.selection, self._confirmation)
        return self._ranking

    @property
    def confirmation(self):
        return None if self.ranking is None else self._confirmation

    def _confirmation_table(self, ranking):
        """confirmation.csv: the confirmed combinations ranked by their test p-value (corrections across them)."""
        if not self.confirmation_rows:
            return None
        return confirmation_table(ranking, reruns_table(self.confirmation_rows), self.confirmation_counts,
                                  self.settings.false_discovery_rate)

    def flush(self, force: bool) -> None:
        """Rewrite the CSVs (atomically) if something changed and enough time passed."""
        # at least FLUSH_SECONDS apart, and far enough apart that rewriting big CSVs (a
        # 10,000-combination sweep) never takes more than 1% of this process's time: at 2%, it
        # was an eighth of what the main process spent on a big grid of tiny trainings
        interval = max(FLUSH_SECONDS, 100 * self._flush_took)
        if not self._dirty or (not force and time.monotonic() - self._last_flush < interval):
            return
        started = time.monotonic()
        if self.rows:
            write_csv_parts((part.reindex(columns=RERUN_COLUMNS) for part in self.rows.sorted_parts()),
                            self.run_dir / "reruns.csv")
            write_csv(self.ranking, self.run_dir / "ranking.csv")
        if self.confirmation is not None:
            write_csv(self.confirmation, self.run_dir / "confirmation.csv")
        write_csv(pd.DataFrame(self.errors, columns=ERROR_COLUMNS), self.run_dir / "errors.csv")
        self._last_flush = time.monotonic()
        self._flush_took = self._last_flush - started
        self._dirty = False


def _optuna_params(params: dict) -> dict:
    """Optuna's categorical values must be None/bool/int/float/str: lists become '[2, 1, 0.5]'."""
    return {name: display_value(params[name]) for name in HYPERPARAMETERS if params[name] is not None}


def _finite_or_none(value) -> float | None:
    """JSON (and so the study) has no NaN: a diverged training's loss is stored as empty."""
    value = float(value)
    return value if math.isfinite(value) else None


def _holds(distribution, values) -> bool:
    """Whether a recorded distribution holds every value of a grid (a range's own distribution is kept)."""
    if isinstance(values, Range):
        return False
    if isinstance(distribution, CategoricalDistribution):
        return all(display_value(v) in distribution.choices for v in values)
    numeric = (int,) if isinstance(distribution, IntDistribution) else (int, float)
    return all(isinstance(v, numeric) and not isinstance(v, bool) and distribution.low <= v <= distribution.high
               for v in values)
