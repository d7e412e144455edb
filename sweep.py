"""The sweep itself: prepare the run folder, fan fused tasks out to workers, record and rank results.

The main process never imports torch: it validates, plans, dispatches,
scores and writes; the joblib (loky) workers train. Each finished
combination is recorded at once in the Optuna study (study.journal), which
is also what a resumed run reads to skip finished work.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path

import numpy as np

import plan
import worker
from data import Standardizer, check_train_test, load_labelled
from settings import HYPERPARAMETERS, ConfigError, Settings

FLUSH_SECONDS = 5.0  # rewrite ranking.csv / reruns.csv at most this often while running


class Sweep:
    def __init__(self, settings: Settings, run_name: str, progress: bool = True) -> None:
        self.settings = settings
        self.progress = progress
        self.run_dir = settings.results_dir / run_name
        self.data = prepare_data(settings)
        self.combinations = plan.planned_combinations(settings)
        self.fingerprint = run_fingerprint(settings, self.combinations)

    # ------------------------------------------------------------------ run
    def run(self, executor) -> int:
        import optuna
        from tqdm import tqdm
        from results import atomic_write_text

        self.run_dir.mkdir(parents=True, exist_ok=True)
        study = open_study(self.run_dir, self.fingerprint, self.settings)
        atomic_write_text(self.settings.config_path.read_text(), self.run_dir / "config.py")
        self.recorder = Recorder(self.run_dir, study, self.settings)

        done = self.recorder.load_finished()
        todo = [c for c in self.combinations if plan.combination_id(c) not in done]
        if done:
            print(f"Resuming {self.run_dir}: {len(done)} of {len(self.combinations)} combinations "
                  f"already finished and kept; training the other {len(todo)}.", file=sys.stderr)
        tasks = plan.make_tasks(self._trainings(todo), self.settings.cpu_count, self.data["n_features"])
        pending = {executor.submit(worker.run_task, self._payload(t)): t for t in tasks}
        bar = tqdm(total=len(self.combinations), initial=len(done), unit="combination",
                   disable=not self.progress, dynamic_ncols=True, smoothing=0.1)
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = pending.pop(future)
                    for retry in self._collect(future, task):
                        pending[executor.submit(worker.run_task, self._payload(retry))] = retry
                    bar.update(len(self._combinations_in(task)) if future.exception() is None
                               or len(self._combinations_in(task)) == 1 else 0)
                    if self.recorder.best_p is not None:
                        bar.set_postfix_str(f"best p={self.recorder.best_p:.3g}")
                self.recorder.flush(force=False)
        except KeyboardInterrupt:
            for future in pending:
                future.cancel()
            executor.shutdown(wait=False, kill_workers=True)
            bar.close()
            self.recorder.flush(force=True)
            print(f"\nInterrupted. Finished combinations are saved in {self.run_dir}; run the same "
                  f"command again to resume.", file=sys.stderr)
            return 130
        finally:
            bar.close()
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.recorder.flush(force=True)
        return self._summary()

    def _collect(self, future, task: list[dict]) -> list[list[dict]]:
        """Record a finished task; return the retries it needs (a failed task is split per combination)."""
        error = future.exception()
        if error is None:
            self.recorder.add_results(future.result(), {(t["combination"], t["rerun"]): t for t in task})
            return []
        ids = self._combinations_in(task)
        if len(ids) > 1:  # find out which combination(s) failed by training each alone
            return [[t for t in task if t["combination"] == cid] for cid in ids]
        self.recorder.add_error(task[0], error)
        return []

    @staticmethod
    def _combinations_in(task: list[dict]) -> list[str]:
        return list(dict.fromkeys(t["combination"] for t in task))

    def _trainings(self, combinations: list[dict]) -> list[dict]:
        out = []
        for combination in combinations:
            cid = plan.combination_id(combination)
            for rerun in range(self.settings.rerun_count):
                out.append({"combination": cid, "rerun": rerun, "params": combination,
                            "seed": plan.training_seed(self.settings.seed, cid, rerun)})
        return out

    def _payload(self, task: list[dict]) -> dict:
        return {"arch": task[0]["params"], "members": task, "data": self.data["files"],
                "threshold": self.settings.prediction_threshold, "device": self.settings.device}

    def _summary(self) -> int:
        ranking = self.recorder.ranking
        completed, failed = len(ranking), len(self.recorder.errors)
        print(f"\n{completed} combinations completed, {failed} failed. Results: {self.run_dir}")
        if completed == 0:
            print(f"error: every combination failed; see {self.run_dir / 'errors.csv'} for the errors.",
                  file=sys.stderr)
            return 1
        from evaluate import print_ranking
        best = ranking.iloc[0]
        varying = {h: best[h] for h in HYPERPARAMETERS if ranking[h].astype(str).nunique() > 1}
        print(f"Best combination {best['combination']}: p-value {best['p_value']:.4g}, precision "
              f"{best['precision']:.3f} vs positive rate {best['positive_rate']:.3f} "
              f"(median of {int(best['reruns'])} reruns) {varying}")
        print_ranking(ranking, top=5)
        if failed:
            print(f"warning: {failed} combinations failed; see {self.run_dir / 'errors.csv'}.", file=sys.stderr)
        return 0


# ---------------------------------------------------------------------- data
def prepare_data(settings: Settings) -> dict:
    """Load and check train/test, standardize with the train set's statistics, save for the workers."""
    x_train, y_train = load_labelled(settings.train_csv)
    x_test, y_test = load_labelled(settings.test_csv)
    check_train_test(settings.train_csv, x_train, y_train, settings.test_csv, x_test, y_test)
    scaler = Standardizer().fit(x_train)
    folder = Path(tempfile.mkdtemp(prefix="sweep-data-"))
    import atexit
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    files = {}
    for name, array in {"train_x": scaler.transform(x_train), "train_y": y_train,
                        "eval_x": scaler.transform(x_test), "eval_y": y_test}.items():
        files[name] = str(folder / f"{name}.npy")
        np.save(files[name], np.ascontiguousarray(array))
    return {"files": files, "n_features": x_train.shape[1], "positive_rate": float(y_test.mean())}


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def run_fingerprint(settings: Settings, combinations: list[dict]) -> dict:
    """Everything that changes results: a run folder only ever holds results of one fingerprint."""
    return {
        "combinations": hashlib.sha256(json.dumps(sorted(map(plan.combination_id, combinations))).encode()
                                       ).hexdigest()[:16],
        "RERUN_COUNT": settings.rerun_count, "SEED": settings.seed,
        "PREDICTION_THRESHOLD": settings.prediction_threshold, "P_VALUE_TEST": settings.p_value_test,
        "TRAIN_CSV": file_digest(settings.train_csv), "TEST_CSV": file_digest(settings.test_csv),
    }


def open_study(run_dir: Path, fingerprint: dict, settings: Settings):
    """The run's Optuna study; refuses a folder that holds another config's or data's results."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    study = optuna.create_study(study_name="sweep", storage=storage, direction="minimize", load_if_exists=True)
    previous = study.user_attrs.get("fingerprint")
    if previous is None:
        study.set_user_attr("fingerprint", fingerprint)
    elif previous != fingerprint:
        differs = ", ".join(k for k in fingerprint if previous.get(k) != fingerprint[k])
        raise ConfigError(
            f"The results folder {run_dir} holds a sweep with a different {differs} than this one, and "
            f"mixing them would corrupt the ranking. Run under another name with --name NEW_NAME (or "
            f"another --results folder), or move that folder away to start over.")
    return study


# ------------------------------------------------------------------ recording
class Recorder:
    """Holds the results so far; writes them to the study at once and to the CSVs every few seconds."""

    def __init__(self, run_dir: Path, study, settings: Settings) -> None:
        self.run_dir, self.study, self.settings = run_dir, study, settings
        self.rerun_rows: list[dict] = []
        self.errors: list[dict] = []
        self.best_p = None
        self.ranking = None
        self._last_flush = 0.0
        self._dirty = True

    def load_finished(self) -> set[str]:
        """Combinations a previous run of this folder finished; their rows are kept as they were."""
        from optuna.trial import TrialState
        done = set()
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            cid = trial.user_attrs["combination"]
            if cid in done:
                continue
            done.add(cid)
            self.rerun_rows.extend(trial.user_attrs["reruns"])
        self._update_best()
        return done

    def add_results(self, results: list[dict], trainings: dict) -> None:
        import optuna
        from evaluate import score_reruns
        from results import hyperparameter_columns
        import pandas as pd
        rows = []
        for r in results:
            training = trainings[(r["combination"], r["rerun"])]
            rows.append({"combination": r["combination"], "rerun": r["rerun"], "seed": r["seed"],
                         **hyperparameter_columns(training["params"]),
                         **{k: r[k] for k in ("tp", "fp", "tn", "fn", "diverged", "train_loss", "seconds")}})
        scored = score_reruns(pd.DataFrame(rows), self.settings.p_value_test)
        scored["diverged"] = scored["diverged"].astype(bool)
        scored = scored.drop(columns=["positive_rate"])
        by_combination: dict[str, list[dict]] = {}
        for row in scored.to_dict("records"):
            row = {k: (None if isinstance(v, float) and np.isnan(v) else _plain(v)) for k, v in row.items()}
            by_combination.setdefault(row["combination"], []).append(row)
        trials = []
        for cid, reruns in by_combination.items():
            params = trainings[(cid, 0)]["params"]
            trials.append(optuna.trial.create_trial(
                params=_optuna_params(params), distributions=self._distributions(params),
                value=float(np.median([r["p_value"] for r in reruns])),
                user_attrs={"combination": cid, "reruns": reruns}))
        self.study.add_trials(trials)
        self.rerun_rows.extend(row for reruns in by_combination.values() for row in reruns)
        self._update_best()

    def add_error(self, training: dict, error: BaseException) -> None:
        from results import hyperparameter_columns
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        cause = getattr(error, "__cause__", None)
        if cause is not None:  # loky attaches the worker's own traceback as the cause
            text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)) + text
        self.errors.append({"combination": training["combination"],
                            **hyperparameter_columns(training["params"]),
                            "error": f"{type(error).__name__}: {error}", "traceback": text})
        self._dirty = True

    def _distributions(self, params: dict) -> dict:
        from optuna.distributions import CategoricalDistribution
        from results import display_value
        values = self.settings.hyperparameter_values
        return {name: CategoricalDistribution([display_value(v) for v in values[name]])
                for name in _optuna_params(params)}

    def _update_best(self) -> None:
        self._dirty = True
        if self.rerun_rows:
            import pandas as pd
            from evaluate import rank_combinations
            self.ranking = rank_combinations(self._reruns_table())
            self.best_p = float(self.ranking["p_value"].iloc[0])

    def _reruns_table(self):
        import pandas as pd
        from results import RERUN_COLUMNS
        table = pd.DataFrame(self.rerun_rows)
        table["positive_rate"] = (table["tp"] + table["fn"]) / table[["tp", "fp", "tn", "fn"]].sum(axis=1)
        return table

    def flush(self, force: bool) -> None:
        """Rewrite the CSVs (atomically) if something changed and enough time passed."""
        if not self._dirty or (not force and time.monotonic() - self._last_flush < FLUSH_SECONDS):
            return
        import pandas as pd
        from results import ERROR_COLUMNS, RERUN_COLUMNS, write_csv
        if self.rerun_rows:
            reruns = pd.DataFrame(self.rerun_rows, columns=RERUN_COLUMNS).sort_values(["combination", "rerun"])
            write_csv(reruns, self.run_dir / "reruns.csv")
            write_csv(self.ranking, self.run_dir / "ranking.csv")
        write_csv(pd.DataFrame(self.errors, columns=ERROR_COLUMNS), self.run_dir / "errors.csv")
        self._last_flush = time.monotonic()
        self._dirty = False


def _optuna_params(params: dict) -> dict:
    """Optuna's categorical values must be None/bool/int/float/str: lists become '[2, 1, 0.5]'."""
    from results import display_value
    return {name: display_value(params[name]) for name in HYPERPARAMETERS if params[name] is not None}


def _plain(value):
    """numpy scalars -> Python scalars, so they serialize into the study's JSON."""
    return value.item() if isinstance(value, np.generic) else value
