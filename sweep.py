"""The sweep itself: prepare the run folder, fan fused tasks out to workers, record and rank results.

The main process never imports torch: it validates, plans, dispatches,
scores and writes; the joblib (loky) workers train. Each finished
combination is recorded at once in the Optuna study (study.journal), which
is also what a resumed run reads to skip finished work.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from joblib.externals.loky.process_executor import ShutdownExecutorError

import plan
import worker
from data import DataError, Standardizer, check_train_test, load_labelled
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
        from tqdm import tqdm
        from results import atomic_write_text

        self.run_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.run_dir.glob(".*.tmp"):  # a write that a kill interrupted before its rename
            stale.unlink()
        study = open_study(self.run_dir, self.fingerprint, self.settings)
        atomic_write_text(self.settings.config_path.read_text(), self.run_dir / "config.py")
        atomic_write_text(json.dumps(run_record(self.settings), indent=2), self.run_dir / "run.json")
        self.recorder = Recorder(self.run_dir, study, self.settings, self.data["fold_rows"])

        done = self.recorder.load_finished()
        todo = [c for c in self.combinations if plan.combination_id(c) not in done]
        if done:
            print(f"Resuming {self.run_dir}: {len(done)} of {len(self.combinations)} combinations "
                  f"already finished and kept; training the other {len(todo)}.", file=sys.stderr)
        self.pool = Pool(executor, self.settings.cpu_count, self._payload)
        self.crashes: dict[str, int] = {}
        trainings = self._trainings(todo, folds=len(self.data["folds"]))
        for task in plan.make_tasks(trainings, self.settings.cpu_count, self.data["n_features"]):
            self.pool.submit(task)
        self.bar = tqdm(total=len(self.combinations), initial=len(done), unit="combination",
                        disable=not self.progress, dynamic_ncols=True, smoothing=0.1)
        # Ctrl-C only sets a flag, checked between results, so that it never
        # lands halfway through recording one; a second Ctrl-C exits at once.
        self.stop_requested = False
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        try:
            while self.pool.pending and not self.stop_requested:
                for future, task in self.pool.wait_for_some(timeout=0.5):
                    for retry in self._collect(future, task):
                        self.pool.submit(retry)
                self.recorder.flush(force=False)
            if self.stop_requested:
                return self._interrupted()
            self.bar.close()
            self.recorder.flush(force=True)
            if self.settings.selection == "validation" and self.settings.confirm_top_k and self.recorder.ranking is not None:
                failed = self._confirm()
                if self.stop_requested:
                    return self._interrupted()
                if failed:
                    return failed
        finally:
            signal.signal(signal.SIGINT, previous)
            self.bar.close()
        return self._summary()

    def _confirm(self) -> int:
        """Retrain the top CONFIRM_TOP_K combinations on the whole train file and test them once on the test file.

        The same reruns with the same seeds as in the validation sweep; the
        test file is opened here for the first time. Returns an exit code
        when the test file is unusable (the validation ranking is kept).
        """
        import pandas as pd
        from evaluate import score_reruns
        from results import hyperparameter_columns
        top = list(self.recorder.ranking["combination"].head(self.settings.confirm_top_k))
        try:
            data = prepare_confirmation_data(self.settings)
        except DataError as err:
            print(f"error: {err} The validation ranking is in {self.run_dir}.", file=sys.stderr)
            return 2
        fingerprint = {**self.fingerprint, "TEST_CSV": file_digest(self.settings.test_csv), "top": top}
        study = open_study(self.run_dir, fingerprint, self.settings, name="confirmation")
        done = {t.user_attrs["combination"]: t.user_attrs["reruns"] for t in study.get_trials(deepcopy=False)
                if t.state.name == "COMPLETE"}
        by_id = {plan.combination_id(c): c for c in self.combinations}
        trainings = self._trainings([by_id[cid] for cid in top if cid not in done])
        print(f"Confirming the top {len(top)} combinations on {self.settings.test_csv} "
              f"(retrained on the whole train file)...", file=sys.stderr)
        pool = Pool(self.pool.executor, self.settings.cpu_count, lambda t: self._payload(t, data["files"]))
        for task in plan.make_tasks(trainings, self.settings.cpu_count, data["n_features"]):
            pool.submit(task)
        while pool.pending and not self.stop_requested:
            for future, task in pool.wait_for_some(timeout=0.5):
                if future.exception() is not None:
                    for cid in self._combinations_in(task):
                        self.recorder.add_error(next(t for t in task if t["combination"] == cid),
                                                future.exception(), outcome="failed in confirmation")
                    continue
                params = {(t["combination"], t["rerun"]): t["params"] for t in task}
                rows = [{"combination": r["combination"], "rerun": r["rerun"], "seed": r["seed"],
                         **hyperparameter_columns(params[(r["combination"], r["rerun"])]),
                         **{k: r[k] for k in ("tp", "fp", "tn", "fn", "diverged", "train_loss", "seconds")}}
                        for r in future.result()]
                scored = score_reruns(pd.DataFrame(rows), self.settings.p_value_test).drop(columns="positive_rate")
                for cid, group in scored.groupby("combination"):
                    reruns = [{k: (None if isinstance(v, float) and np.isnan(v) else _plain(v)) for k, v in r.items()}
                              for r in group.to_dict("records")]
                    self.recorder.record_trial(study, by_id[cid], cid, reruns)
                    done[cid] = reruns
        self.recorder.set_confirmation([row for cid in top if cid in done for row in done[cid]])
        self.recorder.flush(force=True)
        return 0

    def _on_interrupt(self, signum, frame) -> None:
        if self.stop_requested:
            # Every file is replaced by rename (and a torn journal record is
            # dropped on the next start), so leaving now still leaves consistent files.
            os._exit(130)
        self.stop_requested = True

    def _interrupted(self) -> int:
        """First Ctrl-C: stop dispatching, drop the trainings in flight, keep what finished, say how to resume."""
        self.pool.stop()
        self.bar.close()
        self.recorder.flush(force=True)
        command = " ".join([Path(sys.executable).name, *sys.argv]) if sys.argv and sys.argv[0] else "python search.py"
        print(f"\nInterrupted: {len(self.recorder.finished)} of {len(self.combinations)} combinations are "
              f"finished and saved in {self.run_dir} (the trainings in flight were dropped).\n"
              f"Resume with:  {command}", file=sys.stderr)
        return 130

    def _collect(self, future, task: list[dict]) -> list[list[dict]]:
        """Record a finished task; return the retries it needs.

        A failed task with several combinations is split so that each runs
        alone: that finds the one that fails without losing the others. A
        worker that died (killed, out of memory, segfault) costs its
        combinations one retry each; a second death, or a Python error in a
        lone combination, records the combination as failed.
        """
        ids = self._combinations_in(task)
        error = future.exception()
        if error is None:
            completed = self.recorder.add_results(future.result(), {(t["combination"], t["rerun"]): t for t in task},
                                                  fold=task[0]["fold"])
            self.bar.update(completed)
            if self.recorder.best_p is not None:
                self.bar.set_postfix_str(f"best p={self.recorder.best_p:.3g}")
            return []
        crashed = isinstance(error, BrokenProcessPool)
        retries = []
        for cid in ids:
            alone = [t for t in task if t["combination"] == cid]
            if crashed:
                self.crashes[cid] = self.crashes.get(cid, 0) + 1
                if self.crashes[cid] == 1:
                    self.recorder.add_error(alone[0], error, outcome="retried")
                    retries.append(alone)
                    continue
            elif len(ids) > 1:
                retries.append(alone)
                continue
            self.recorder.add_error(alone[0], error, outcome="failed")
            self.bar.update(1)
        return retries

    def _family_wise_p_value(self) -> float | None:
        """The winner's max-statistic permutation p-value over every finished combination."""
        from significance import family_wise_p_value
        if self.settings.permutations == 0:
            return None
        labels = np.load(self.data["labels"])
        combos = sorted(self.recorder.finished)
        index = {cid: i for i, cid in enumerate(combos)}
        keys = [k for k in sorted(self.recorder.predictions) if k[0] in index]
        counts = np.bincount([index[k[0]] for k in keys], minlength=len(combos))
        if len(keys) == 0 or counts.min() != counts.max():
            return None  # a combination without all its reruns' predictions (an older results folder)
        bits = np.stack([np.unpackbits(np.frombuffer(self.recorder.predictions[k], dtype=np.uint8),
                                       count=len(labels)) for k in keys])
        return family_wise_p_value(bits, np.array([index[k[0]] for k in keys]), labels,
                                   self.settings.permutations, self.settings.permutation_block_length,
                                   self.settings.seed)

    @staticmethod
    def _combinations_in(task: list[dict]) -> list[str]:
        return list(dict.fromkeys(t["combination"] for t in task))

    def _trainings(self, combinations: list[dict], folds: int = 1) -> list[dict]:
        out = []
        for combination in combinations:
            cid = plan.combination_id(combination)
            for rerun in range(self.settings.rerun_count):
                for fold in range(folds):
                    out.append({"combination": cid, "rerun": rerun, "fold": fold, "params": combination,
                                "seed": plan.training_seed(self.settings.seed, cid, rerun)})
        return out

    def _payload(self, task: list[dict], files: dict | None = None) -> dict:
        return {"arch": task[0]["params"], "members": task, "data": files or self.data["folds"][task[0]["fold"]],
                "threshold": self.settings.prediction_threshold, "device": self.settings.device}

    def _summary(self) -> int:
        ranking = self.recorder.ranking
        completed = 0 if ranking is None else len(ranking)
        failed = sum(e["outcome"] == "failed" for e in self.recorder.errors)
        retried = sum(e["outcome"] == "retried" for e in self.recorder.errors)
        print(f"\n{completed} combinations completed, {failed} failed"
              + (f" ({retried} retried after a worker died)" if retried else "") + f". Results: {self.run_dir}")
        if completed == 0:
            print(f"error: every combination failed; see {self.run_dir / 'errors.csv'} for the errors.",
                  file=sys.stderr)
            return 1
        from evaluate import print_ranking
        best = ranking.iloc[0]
        varying = ", ".join(f"{h}={best[h]}" for h in HYPERPARAMETERS if ranking[h].astype(str).nunique() > 1)
        on = "on the validation tail" if self.settings.selection == "validation" else "on the test file"
        print(f"Best combination {on}: {best['combination']} ({varying}): p-value {best['p_value']:.4g}, precision "
              f"{best['precision']:.3f} vs positive rate {best['positive_rate']:.3f} "
              f"(median of {int(best['reruns'])} reruns)")
        fwp = self._family_wise_p_value()
        if fwp is not None:
            labels = "validation" if self.settings.selection == "validation" else "test"
            print(f"Family-wise p-value of the winner: {fwp:.3g} (how often the best of these "
                  f"{completed} combinations looks at least this good when the {labels} labels are shuffled "
                  f"in blocks of {self.settings.permutation_block_length} rows; "
                  f"{self.settings.permutations} permutations)")
            from results import atomic_write_text
            atomic_write_text(json.dumps({"best_combination": best["combination"],
                                          "best_p_value": float(best["p_value"]),
                                          "family_wise_p_value": fwp,
                                          "significant_at_fdr": int(ranking["significant"].sum()),
                                          "false_discovery_rate": self.settings.false_discovery_rate}, indent=2),
                              self.run_dir / "summary.json")
        print(f"{int(ranking['significant'].sum())} of {completed} combinations are significant at a "
              f"{self.settings.false_discovery_rate:.0%} false discovery rate (q_value in ranking.csv).")
        print_ranking(ranking, top=5)
        confirmation = self.recorder.confirmation
        if confirmation is not None:
            print(f"\nRanked on the validation tail of {self.settings.train_csv.name}; the top {len(confirmation)} "
                  f"retrained on the whole train file and tested once on {self.settings.test_csv.name} "
                  f"(confirmation.csv; q_value corrects across these {len(confirmation)}):")
            columns = ["combination", "validation_rank", "p_value_validation", "p_value_test", "q_value",
                       "precision", "tp", "fp"]
            print(confirmation.sort_values("validation_rank")[columns].to_string(index=False))
        if failed:
            print(f"warning: {failed} combinations failed; see {self.run_dir / 'errors.csv'}.", file=sys.stderr)
        from report import write_report
        from results import read_reruns
        write_report(self.run_dir, ranking, read_reruns(self.run_dir / "reruns.csv"), self.recorder.study)
        print(f"Report with plots: {self.run_dir / 'report.md'}")
        return 0


class Pool:
    """The worker processes and the tasks in flight; brings the pool back if a worker dies."""

    def __init__(self, executor, cpu_count: int, payload) -> None:
        self.executor, self.cpu_count, self.payload = executor, cpu_count, payload
        self.pending: dict = {}

    def submit(self, task: list[dict]) -> None:
        try:
            future = self.executor.submit(worker.run_task, self.payload(task))
        except (BrokenProcessPool, ShutdownExecutorError, RuntimeError):
            # a dead worker breaks loky's pool; the reusable executor starts a fresh one
            self.executor = worker.start_workers(self.cpu_count)
            future = self.executor.submit(worker.run_task, self.payload(task))
        self.pending[future] = task

    def wait_for_some(self, timeout: float) -> list:
        finished, _ = wait(self.pending, timeout=timeout, return_when=FIRST_COMPLETED)
        return [(future, self.pending.pop(future)) for future in finished]

    def stop(self) -> None:
        for future in self.pending:
            future.cancel()
        self.executor.shutdown(wait=False, kill_workers=True)


# ---------------------------------------------------------------------- data
def prepare_data(settings: Settings) -> dict:
    """The data the combinations are ranked on, checked, standardized and saved for the workers.

    SELECTION = "test": train on the train file, evaluate on the test file.
    SELECTION = "validation": train on the train file's first rows, evaluate
    on its chronological tail; the test file is not even opened (only its
    existence is checked) until the top combinations are confirmed on it.
    """
    x_train, y_train = load_labelled(settings.train_csv)
    if settings.selection == "test":
        x_test, y_test = load_labelled(settings.test_csv)
        check_train_test(settings.train_csv, x_train, y_train, settings.test_csv, x_test, y_test)
        return combine_folds([save_for_workers(x_train, y_train, x_test, y_test)], y_test)
    if not Path(settings.test_csv).is_file():
        raise DataError(f"The test file '{settings.test_csv}' does not exist. It is only read to confirm the "
                        f"best combinations at the end of the sweep, but it must be there from the start.")
    # The validation tail, cut into VALIDATION_FOLDS consecutive blocks; fold k
    # trains on every row before its block (walk-forward), so no fold ever
    # learns from its own future.
    n = len(y_train)
    start = int(round(n * (1 - settings.validation_fraction)))
    bounds = [start + (n - start) * k // settings.validation_folds for k in range(settings.validation_folds + 1)]
    folds = []
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        check_train_test(settings.train_csv, x_train[:a], y_train[:a],
                         f"{settings.train_csv} (rows {a + 1}-{b}, validation fold {k + 1})", x_train[a:b], y_train[a:b])
        folds.append(save_for_workers(x_train[:a], y_train[:a], x_train[a:b], y_train[a:b]))
    return combine_folds(folds, y_train[start:])


def combine_folds(folds: list[dict], labels) -> dict:
    """Per-fold worker files, and the labels of all folds in order (for the permutation test)."""
    path = Path(folds[0]["files"]["eval_y"]).parent / "all_eval_y.npy"
    np.save(path, np.ascontiguousarray(labels))
    return {"folds": [f["files"] for f in folds], "fold_rows": [f["rows"] for f in folds],
            "n_features": folds[0]["n_features"], "labels": str(path)}


def prepare_confirmation_data(settings: Settings) -> dict:
    """The whole train file and the test file, for confirming the top combinations."""
    x_train, y_train = load_labelled(settings.train_csv)
    x_test, y_test = load_labelled(settings.test_csv)
    check_train_test(settings.train_csv, x_train, y_train, settings.test_csv, x_test, y_test)
    return save_for_workers(x_train, y_train, x_test, y_test)


def save_for_workers(x_train, y_train, x_eval, y_eval) -> dict:
    """Standardize with the training rows' statistics only, and save as .npy files the workers load once."""
    scaler = Standardizer().fit(x_train)
    folder = Path(tempfile.mkdtemp(prefix="sweep-data-"))
    import atexit
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    files = {}
    for name, array in {"train_x": scaler.transform(x_train), "train_y": y_train,
                        "eval_x": scaler.transform(x_eval), "eval_y": y_eval}.items():
        files[name] = str(folder / f"{name}.npy")
        np.save(files[name], np.ascontiguousarray(array))
    return {"files": files, "n_features": x_train.shape[1], "rows": len(y_eval)}


def run_record(settings: Settings) -> dict:
    """The resolved settings later commands need (evaluate.py --predict), with absolute paths."""
    return {"TRAIN_CSV": str(settings.train_csv), "TEST_CSV": str(settings.test_csv),
            "LATEST_CSV": str(settings.latest_csv), "SEED": settings.seed, "RERUN_COUNT": settings.rerun_count,
            "PREDICTION_THRESHOLD": settings.prediction_threshold, "SELECTION": settings.selection,
            "P_VALUE_TEST": settings.p_value_test, "FALSE_DISCOVERY_RATE": settings.false_discovery_rate}


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def run_fingerprint(settings: Settings, combinations: list[dict]) -> dict:
    """Everything that changes results: a run folder only ever holds results of one fingerprint."""
    return {
        "combinations": hashlib.sha256(json.dumps(sorted(map(plan.combination_id, combinations))).encode()
                                       ).hexdigest()[:16],
        "RERUN_COUNT": settings.rerun_count, "SEED": settings.seed,
        "PREDICTION_THRESHOLD": settings.prediction_threshold, "P_VALUE_TEST": settings.p_value_test,
        "SELECTION": settings.selection, "TRAIN_CSV": file_digest(settings.train_csv),
        # in validation mode the test file is read only at confirmation; its digest is checked then
        "TEST_CSV": file_digest(settings.test_csv) if settings.selection == "test" else None,
        "VALIDATION_FRACTION": settings.validation_fraction if settings.selection == "validation" else None,
        "VALIDATION_FOLDS": settings.validation_folds if settings.selection == "validation" else None,
    }


def repair_torn_journal(path: Path) -> None:
    """Drop a last record cut short by a kill or power loss.

    Optuna reads past a torn last line, but appends the next record straight
    after it, which makes the journal unreadable from then on. The torn
    record was a combination that never finished recording; it is retrained.
    """
    if not path.exists():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
            print(f"note: {path} ended in a record cut short (the previous run was killed while "
                  f"writing it); dropped it, the combination it held is trained again.", file=sys.stderr)


def open_study(run_dir: Path, fingerprint: dict, settings: Settings, name: str = "sweep"):
    """The run's Optuna study; refuses a folder that holds another config's or data's results."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    repair_torn_journal(run_dir / "study.journal")
    storage = JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True)
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

    def __init__(self, run_dir: Path, study, settings: Settings, fold_rows: list[int]) -> None:
        self.run_dir, self.study, self.settings = run_dir, study, settings
        self.fold_rows = fold_rows
        self.partial: dict[str, dict[tuple[int, int], dict]] = {}  # combination -> (rerun, fold) -> result
        self.rerun_rows: list[dict] = []
        self.predictions: dict[tuple[str, int], bytes] = {}  # packed 0/1 predictions on the ranked set
        self.confirmation_rows: list[dict] = []
        self.confirmation = None
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
            for row, bits in zip(trial.user_attrs["reruns"], trial.user_attrs.get("predictions", [])):
                self.predictions[(cid, row["rerun"])] = base64.b64decode(bits)
        self._update_best()
        return done

    def add_results(self, results: list[dict], trainings: dict, fold: int = 0) -> int:
        """Record a task's results; returns how many combinations they completed.

        With walk-forward folds a combination is complete once every rerun
        has every fold; its counts are then summed over the folds (one
        p-value per rerun on the whole validation tail).
        """
        complete = []
        for r in results:
            parts = self.partial.setdefault(r["combination"], {})
            parts[(r["rerun"], fold)] = r
            if len(parts) == self.settings.rerun_count * len(self.fold_rows):
                complete.extend(self._pool_folds(self.partial.pop(r["combination"])))
        if complete:
            self._record(complete, trainings)
        return len({r["combination"] for r in complete})

    def _pool_folds(self, parts: dict) -> list[dict]:
        pooled = []
        for rerun in range(self.settings.rerun_count):
            folds = [parts[(rerun, k)] for k in range(len(self.fold_rows))]
            bits = np.concatenate([np.unpackbits(np.frombuffer(f["predictions"], dtype=np.uint8), count=n)
                                   for f, n in zip(folds, self.fold_rows)])
            pooled.append({**folds[0], **{k: sum(f[k] for f in folds) for k in ("tp", "fp", "tn", "fn", "seconds")},
                           "diverged": any(f["diverged"] for f in folds),
                           "train_loss": float(np.mean([f["train_loss"] for f in folds])),
                           "predictions": np.packbits(bits).tobytes()})
        return pooled

    def _record(self, results: list[dict], trainings: dict) -> None:
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
        for r in results:
            self.predictions[(r["combination"], r["rerun"])] = r["predictions"]
        for cid, reruns in by_combination.items():
            bits = [base64.b64encode(self.predictions[(cid, r["rerun"])]).decode() for r in reruns]
            self.record_trial(self.study, trainings[(cid, 0)]["params"], cid, reruns, predictions=bits)
        self.rerun_rows.extend(row for reruns in by_combination.values() for row in reruns)
        self._update_best()

    def record_trial(self, study, params: dict, cid: str, reruns: list[dict], predictions=None) -> None:
        """One finished combination as one COMPLETE Optuna trial (value: the median p-value)."""
        import optuna
        attrs = {"combination": cid, "reruns": reruns}
        if predictions is not None:
            attrs["predictions"] = predictions
        study.add_trial(optuna.trial.create_trial(
            params=_optuna_params(params), distributions=self._distributions(params),
            value=float(np.median([r["p_value"] for r in reruns])), user_attrs=attrs))

    def set_confirmation(self, rows: list[dict]) -> None:
        """The top combinations' reruns on the test file; they fill p_value_test and confirmation.csv."""
        self.confirmation_rows = rows
        self._update_best()

    @property
    def finished(self) -> set[str]:
        return {row["combination"] for row in self.rerun_rows}

    def add_error(self, training: dict, error: BaseException, outcome: str) -> None:
        from results import hyperparameter_columns
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        cause = getattr(error, "__cause__", None)
        if cause is not None:  # loky attaches the worker's own traceback as the cause
            text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)) + text
        if isinstance(error, BrokenProcessPool):
            text = ("The worker process training this combination died (killed, out of memory, or a crash "
                    "in native code); its other trainings were not affected.\n" + text)
        self.errors.append({"combination": training["combination"],
                            **hyperparameter_columns(training["params"]), "outcome": outcome,
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
            from evaluate import rank_combinations
            self.ranking = rank_combinations(self._reruns_table(), self.settings.false_discovery_rate)
            self.best_p = float(self.ranking["p_value"].iloc[0])
            self.confirmation = self._confirmation_table()
            from evaluate import label_sources
            self.ranking = label_sources(self.ranking, self.settings.selection, self.confirmation)

    def _confirmation_table(self):
        """confirmation.csv: the confirmed combinations ranked by their test p-value (corrections across them)."""
        if not self.confirmation_rows:
            return None
        from evaluate import rank_combinations
        table = rank_combinations(self._reruns_table(self.confirmation_rows), self.settings.false_discovery_rate)
        validation = self.ranking.set_index("combination")
        table = table.rename(columns={"p_value": "p_value_test"})
        table.insert(2, "validation_rank", validation.loc[table["combination"], "rank"].to_numpy())
        table.insert(table.columns.get_loc("p_value_test"), "p_value_validation",
                     validation.loc[table["combination"], "p_value"].to_numpy())
        return table

    def _reruns_table(self, rows=None):
        import pandas as pd
        table = pd.DataFrame(self.rerun_rows if rows is None else rows)
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
        if self.confirmation is not None:
            write_csv(self.confirmation, self.run_dir / "confirmation.csv")
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
