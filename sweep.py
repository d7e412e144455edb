"""The sweep itself: prepare the run folder, fan fused tasks out to workers, record and rank results.

The main process never imports torch: it validates, plans, dispatches,
scores and writes; the joblib (loky) workers train. Each finished
combination is recorded at once in the Optuna study (study.journal), which
is also what a resumed run reads to skip finished work.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from joblib.externals.loky.process_executor import ShutdownExecutorError

import plan
import preload
import worker
from data import DataError, Labelled, Standardizer, check_train_test, load_labelled
from settings import HYPERPARAMETERS, Settings
from significance import PermutationTest, date_blocks, pooled_predictions, row_blocks
from splits import Split, holdout_split, validation_splits
from summary import write_summary
from verdict import headline

FLUSH_SECONDS = 5.0  # rewrite ranking.csv / reruns.csv at most this often while running


class Sweep:
    def __init__(self, settings: Settings, run_name: str, progress: bool = True,
                 storage_url: str | None = None, study_name: str | None = None) -> None:
        self.settings = settings
        self.progress = progress
        self.run_dir = settings.results_dir / run_name
        self.storage_url = storage_url
        # the local journal holds one sweep per run folder; a shared database holds many, by name
        self.study_name = study_name or (run_name if storage_url else "sweep")
        self.data = prepare_data(settings)
        self.test = permutation_test(settings, self.data["evaluated"])
        if self.test.smallest_p_value > settings.significance_level:
            warnings.warn(too_few_blocks(self.test, "evaluated rows", settings.significance_level))
        self.combinations = plan.planned_combinations(settings) if settings.planned else []
        self.fingerprint = run_fingerprint(settings, self.combinations)

    @property
    def total(self) -> int:
        return len(self.combinations) if self.settings.planned else self.settings.number_of_combinations_to_try

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        from tqdm import tqdm
        from results import atomic_write_text, remove_abandoned_temporaries
        from study import Ledger, open_storage, open_study
        from strategies import make_pruner, make_sampler

        if self.storage_url is not None:  # an unreachable database is reported before anything is written
            self.storage = open_storage(self.storage_url, self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        remove_abandoned_temporaries(self.run_dir)
        if self.storage_url is None:
            self.storage = open_storage(None, self.run_dir)
        study = open_study(self.storage, self.study_name, self.fingerprint,
                           sampler=make_sampler(self.settings), pruner=make_pruner(self.settings))
        if "run" not in study.user_attrs:  # what `evaluate.py --storage` needs to rank this study
            study.set_user_attr("run", run_record(self.settings))
        atomic_write_text(self.settings.config_path.read_text(), self.run_dir / "config.py")
        atomic_write_text(json.dumps(run_record(self.settings), indent=2), self.run_dir / "run.json")
        self.ledger = Ledger(self.storage, study, self.settings.heartbeat_timeout)
        self.recorder = Recorder(self.run_dir, study, self.settings, self.data["fold_rows"], self.test)
        status, trials = self.ledger.refresh()
        self.recorder.sync(trials)
        if self.recorder.finished:
            print(f"Resuming {self.run_dir if self.storage_url is None else 'study ' + repr(self.study_name)}: "
                  f"{len(self.recorder.finished)} of {self.total} combinations already finished and kept; "
                  f"training the others.", file=sys.stderr)
        self.pool = Pool(self.settings.cpu_count, self._payload, folds=len(self.data["folds"]))
        self.crashes: dict[str, int] = {}
        self.notes_shown: set[str] = set()
        self.bar = tqdm(total=self.total, initial=len(self.recorder.finished), unit="combination",
                        disable=not self.progress, dynamic_ncols=True, smoothing=0.1)
        # Ctrl-C only sets a flag, checked between results, so that it never
        # lands halfway through recording one; a second Ctrl-C exits at once.
        self.stop_requested = False
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        try:
            wall, cpu = time.monotonic(), time.process_time()
            self._drive(self.ledger, self._claim_sweep, self._record_sweep, self.pool)
            import resource
            # what this process spent orchestrating (claiming, recording, dispatching, CSVs) while
            # the workers trained: on a machine whose cores all train, it comes out of their time
            import mkl_shim
            self.timing = {"seconds": round(time.monotonic() - wall, 3),
                           "main_process_cpu_seconds": round(time.process_time() - cpu, 3),
                           "main_process_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                           # whether the workers ran MKL's AVX-512 kernels on an AMD CPU (mkl_shim.py):
                           # runs with and without differ in the last digits of their sums
                           "mkl_amd_avx512": mkl_shim.worker_preload() is not None}
            if self.stop_requested:
                return self._interrupted()
            self.bar.close()
            self._sync()
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
            self.ledger.leave()
        worker.stop_workers(wait=True)  # all training is done; their threads here end with them
        return self._summary()

    # ---------------------------------------------------------- the loop
    def _drive(self, ledger, claim, record, pool) -> None:
        """Claim, train and record until the study is finished by all processes, or Ctrl-C.

        New work is claimed whenever fewer tasks are queued than there are
        workers, so the workers never wait while this process records. When
        nothing is left to claim but other processes still hold combinations,
        this one waits: if one of them goes silent, its combinations come free
        and are claimed here.
        """
        self.claims: dict[str, object] = {}  # cid -> Claim, for the combinations this process is training
        self.active_ledger = ledger
        finished, last_claim, eager = False, 0.0, True
        # The ranking's and the report's libraries load while this thread waits for
        # the workers to start (their parent process is still importing torch).
        preload.start()
        while not self.stop_requested:
            ledger.beat()
            # claim when a worker may soon be idle: at once after progress, else once a second
            # (while other processes hold the rest and this one waits for them)
            if len(pool.pending) < pool.cpu_count and (eager or time.monotonic() - last_claim >= 1.0):
                last_claim = time.monotonic()
                claims, finished = claim()
                eager = bool(claims)
                for c in claims:
                    self.claims[c.cid] = c
                # with a pruner, each combination trains alone: its trial decides after each epoch
                groups = [[c] for c in claims] if self.settings.pruner is not None else [claims]
                for group in groups:
                    trainings = self._trainings([(c.cid, c.combination) for c in group], folds=pool.folds)
                    for task in plan.make_tasks(trainings, pool.cpu_count, self.data["n_features"]):
                        pool.submit(task)
                if taken := ledger.taken_over:
                    print(f"note: took over {len(taken)} combinations from a process that stopped (it is no "
                          f"longer running, or sent no heartbeat for {ledger.timeout:g} s).", file=sys.stderr)
                    ledger.taken_over = []
            if pool.pending:
                for future, task in pool.wait_for_some(timeout=0.5):
                    eager = True
                    for retry in self._collect(future, task, record):
                        pool.submit(retry)
            elif finished:
                return
            else:  # other processes hold the rest: wait for them, or for their heartbeats to stop
                self.bar.set_postfix_str("waiting for other processes")
                time.sleep(0.5)
            self.recorder.flush(force=False)

    def _claim_sweep(self):
        """Claim the next round of the sweep; returns (claims, whether the sweep is finished everywhere)."""
        round_size = _round_size(self.settings, self.pool.cpu_count, len(self.data["folds"]))
        if self.settings.planned:
            if not hasattr(self, "candidates"):  # ids computed once: a big grid is claimed in many rounds
                self.candidates = [(plan.combination_id(c), c) for c in self.combinations]
            candidates = self.candidates
            claims, status = self.ledger.claim_planned(candidates, round_size, self.recorder.trial_template,
                                                       running_trials=self.settings.pruner is not None)
            finished = len(status.records) + len(status.failed) >= len(candidates) and \
                all(cid in status.records or cid in status.failed for cid, _ in candidates)
        else:
            from strategies import suggest_combination
            values = self.settings.hyperparameter_values
            claims, status, exhausted = self.ledger.claim_asked(
                round_size, self.settings.number_of_combinations_to_try,
                lambda trial: _with_id(suggest_combination(trial, values)), self.recorder.trial_template)
            if exhausted and not claims and not self.claims:
                print(f"note: the sampler keeps proposing combinations already tried; the space holds no more "
                      f"new ones, so the sweep stops at {status.used}.", file=sys.stderr)
            done = len(status.records) + len(status.failed)
            finished = not status.claimed and (exhausted or done >= self.settings.number_of_combinations_to_try)
        self._show_progress(status)
        return claims, finished and not self.pool.pending

    def _show_progress(self, status) -> None:
        done = len(status.records) + len(status.failed)
        if done != self.bar.n:
            self.bar.n = done
            self.bar.refresh()
        if status.claimants > 1:
            self.bar.set_postfix_str(f"{status.claimants} processes", refresh=False)

    def _record_sweep(self, task: list[dict], results: list[dict]) -> int:
        """Record a finished task of the sweep; returns how many combinations it completed."""
        from optuna.trial import TrialState
        completed = self.recorder.add_results(results, {(t["combination"], t["rerun"]): t for t in task},
                                              fold=task[0]["fold"])
        for cid, reruns, bits in completed:
            claim = self.claims.pop(cid)
            counts = permutation_counts(self.test, reruns, bits)  # None when pruned
            value = None if counts is None else p_value_of(self.test, counts)
            if self.ledger.finish(claim, TrialState.COMPLETE if counts is not None else TrialState.PRUNED, value,
                                  {"reruns": stored_rows(reruns, bits)}):
                self.recorder.keep(cid, reruns, bits, counts=counts)
        if self.recorder.best_p is not None:
            self.bar.set_postfix_str(f"best p={self.recorder.best_p:.3g}")
        return len(completed)

    def _sync(self) -> None:
        """Take in what other processes sharing the study have recorded."""
        _, trials = self.ledger.refresh()
        self.recorder.sync(trials)

    def _confirm(self) -> int:
        """Retrain the top CONFIRM_TOP_K combinations on the whole train file and test them once on the test file.

        The same reruns with the same seeds as in the validation sweep; the
        test file is opened here for the first time. Processes sharing the
        study share this step too (its own study, claimed the same way).
        Returns an exit code when the test file is unusable (the validation
        ranking is kept).
        """
        from study import Ledger, open_study
        top = list(self.recorder.ranking["combination"].head(self.settings.confirm_top_k))
        try:
            data = prepare_confirmation_data(self.settings)
        except DataError as err:
            print(f"error: {err} The validation ranking is in {self.run_dir}.", file=sys.stderr)
            return 2
        test = permutation_test(self.settings, data["evaluated"])
        self.confirmation_split = data["split"]
        if test.smallest_p_value > self.settings.significance_level:
            print(f"warning: {too_few_blocks(test, 'test rows', self.settings.significance_level)}", file=sys.stderr)
        fingerprint = {**self.fingerprint, "TEST_CSV": file_digest(self.settings.test_csv), "top": top}
        name = "confirmation" if self.storage_url is None else f"{self.study_name}:confirmation"
        study = open_study(self.storage, name, fingerprint)
        ledger = Ledger(self.storage, study, self.settings.heartbeat_timeout)
        by_id = {cid: self.recorder.params[cid] for cid in top}
        print(f"Confirming the top {len(top)} combinations on {self.settings.test_csv} (retrained on the whole "
              f"train file but the {data['split'].purged} rows purged before {data['split'].boundary})...",
              file=sys.stderr)
        pool = Pool(self.settings.cpu_count, lambda t: self._payload(t, data["files"]))

        def claim():
            claims, status = ledger.claim_planned([(cid, by_id[cid]) for cid in top], len(top),
                                                  self.recorder.trial_template)
            return claims, all(cid in status.records or cid in status.failed for cid in top) and not pool.pending

        def record(task, results):
            from optuna.trial import TrialState
            rows = self.recorder.scored_rows(results, {(t["combination"], t["rerun"]): t for t in task})
            packed = {(r["combination"], r["rerun"]): base64.b64encode(r["predictions"]).decode() for r in results}
            for cid, reruns in rows.items():
                bits = [packed[cid, row["rerun"]] for row in reruns]
                ledger.finish(self.claims.pop(cid), TrialState.COMPLETE,
                              p_value_of(test, permutation_counts(test, reruns, bits)),
                              {"reruns": stored_rows(reruns, bits)})
            return 0

        try:
            self._drive(ledger, claim, record, pool)
        finally:
            ledger.leave()
        _, trials = ledger.refresh()
        confirmed = {t.user_attrs["combination"]: rows_from_study(t.user_attrs) for t in trials
                     if t.state.name == "COMPLETE" and "reruns" in t.user_attrs}
        self.recorder.set_confirmation(test, [row for cid in top if cid in confirmed for row in confirmed[cid][0]],
                                       {cid: permutation_counts(test, *confirmed[cid]) for cid in confirmed})
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
        self.ledger.release(list(self.claims.values()))  # others sharing the study may take them at once
        self.bar.close()
        self._sync()
        self.recorder.flush(force=True)
        command = " ".join([Path(sys.executable).name, *sys.argv]) if sys.argv and sys.argv[0] else "python search.py"
        print(f"\nInterrupted: {len(self.recorder.finished)} of {self.total} combinations are "
              f"finished and saved in {self.run_dir} (the trainings in flight were dropped).\n"
              f"Resume with:  {command}", file=sys.stderr)
        return 130

    def _collect(self, future, task: list[dict], record) -> list[list[dict]]:
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
            results = future.result()
            self._show_note(results[0].get("note") if results else None)
            self.bar.update(record(task, results))
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
            entry = self.recorder.add_error(alone[0], error, outcome="failed")
            claim = self.claims.pop(cid, None)
            if claim is not None:
                from optuna.trial import TrialState
                self.active_ledger.finish(claim, TrialState.FAIL, None, {"error": entry["error"],
                                                                          "traceback": entry["traceback"]})
            self.bar.update(1)
        return retries

    def _show_note(self, note: str | None) -> None:
        """A worker's note for the user (e.g. the C training step could not be built): once per run, not per worker."""
        if note and note not in self.notes_shown:
            self.notes_shown.add(note)
            self.bar.write(note, file=sys.stderr)

    @staticmethod
    def _combinations_in(task: list[dict]) -> list[str]:
        return list(dict.fromkeys(t["combination"] for t in task))

    def _trainings(self, combinations: list[tuple[str, dict]], folds: int = 1) -> list[dict]:
        """The trainings of (combination id, combination) pairs: every rerun, on every fold."""
        out = []
        for cid, combination in combinations:
            for rerun in range(self.settings.rerun_count):
                seed = plan.training_seed(self.settings.seed, cid, rerun)
                for fold in range(folds):
                    out.append({"combination": cid, "rerun": rerun, "fold": fold, "params": combination, "seed": seed})
        return out

    def _payload(self, task: list[dict], files: dict | None = None) -> dict:
        payload = {"arch": task[0]["params"], "members": task, "data": files or self.data["folds"][task[0]["fold"]],
                   "threshold": self.settings.prediction_threshold, "device": self.settings.device}
        if self.settings.pruner is not None and files is None:
            claim = self.claims[task[0]["combination"]]
            payload["prune"] = {"storage": self.storage.spec, "study": self.study_name, "trial_id": claim.trial_id,
                                "pruner": self.settings.pruner, "max_epochs": task[0]["params"]["max_epochs"]}
        return payload

    def _summary(self) -> int:
        ranking = self.recorder.ranking
        pruned = 0 if ranking is None else int((ranking["status"] == "pruned").sum())
        completed = 0 if ranking is None else len(ranking) - pruned
        failed = sum(e["outcome"] == "failed" for e in self.recorder.errors)
        retried = sum(e["outcome"] == "retried" for e in self.recorder.errors)
        print(f"\n{completed} combinations completed, " + (f"{pruned} pruned, " if self.settings.pruner else "")
              + f"{failed} failed" + (f" ({retried} retried after a worker died)" if retried else "")
              + f". Results: {self.run_dir}")
        if completed + pruned == 0:
            print(f"error: every combination failed; see {self.run_dir / 'errors.csv'} for the errors.",
                  file=sys.stderr)
            return 1
        from evaluate import print_ranking
        best = ranking.iloc[0]
        varying = ", ".join(f"{h}={best[h]:.4g}" if isinstance(best[h], float) else f"{h}={best[h]}"
                            for h in HYPERPARAMETERS if ranking[h].astype(str).nunique() > 1)
        on = "the validation tail" if self.settings.selection == "validation" else "the test file"
        print(f"Best combination on {on}: {best['combination']} ({varying}): p-value {best['p_value']:.4g}, "
              f"precision {best['precision']:.3f} vs base rate {best['positive_rate']:.3f} "
              f"({int(best['tp'])} of {int(best['tp'] + best['fp'])} positive predictions right, pooled over "
              f"{int(best['reruns'])} reruns)")
        blocks = self.test.blocks
        print(f"Family-wise p-value of the winner: {best['p_value_family_wise']:.3g} (how often the best of these "
              f"{completed} combinations looks at least this good when the labels of {on} are permuted in "
              f"{blocks.count} blocks of {'whole dates' if blocks.by_date else 'rows'}; {self.test.orders} "
              f"label orders{', all of them' if self.test.exact else ''})")
        print(f"{int(ranking['significant_fdr'].sum())} of {completed} combinations are significant at a "
              f"{self.settings.false_discovery_rate:.0%} false discovery rate (q_value in ranking.csv).")
        print_ranking(ranking, top=5)
        confirmation = self.recorder.confirmation
        if confirmation is not None:
            print(f"\nRanked on the validation tail of {self.settings.train_csv.name}; the top {len(confirmation)} "
                  f"retrained on the train file and tested once on {self.settings.test_csv.name} "
                  f"(confirmation.csv; q_value corrects across these {len(confirmation)}):")
            columns = ["combination", "validation_rank", "p_value_validation", "p_value_test", "q_value",
                       "precision", "tp", "fp"]
            print(confirmation.sort_values("validation_rank")[columns].to_string(index=False))
        if failed:
            print(f"warning: {failed} combinations failed; see {self.run_dir / 'errors.csv'}.", file=sys.stderr)
        tested = None if self.recorder.confirmation_test is None else \
            (self.recorder.confirmation_test, self.confirmation_split)
        result = write_summary(self.run_dir, self.settings, ranking, confirmation, (self.test, self.data["splits"]),
                               tested, {"completed": completed, "pruned": pruned, "failed": failed}, self.timing)
        from report import write_report
        preload.wait()  # its warm-up figure must not be drawn at the same time as the report's
        write_report(self.run_dir, ranking, self.recorder.study)
        print(f"Report with plots: {self.run_dir / 'report.md'}")
        print(f"\n{headline(result)}\n{result.reason}")
        return 0


class Pool:
    """The worker processes and the tasks in flight; brings the pool back if a worker dies.

    The workers are started at the first task, so that the main process has
    done all its own setup while the workers' parent process was importing torch.
    """

    def __init__(self, cpu_count: int, payload, folds: int = 1) -> None:
        self.cpu_count, self.payload, self.folds = cpu_count, payload, folds
        self.executor = None
        self.pending: dict = {}

    def submit(self, task: list[dict]) -> None:
        if self.executor is None:
            self.executor = worker.start_workers(self.cpu_count)
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
        if self.executor is not None:
            self.executor.shutdown(wait=False, kill_workers=True)


# ---------------------------------------------------------------------- data
def evaluation_folds(settings: Settings) -> tuple[list[tuple], Labelled, list[Split]]:
    """The rows the combinations are ranked on: [(training rows, evaluated rows)] per fold, all evaluated rows, splits.

    SELECTION = "test": train on the train file (purged against the test
    file's first date), evaluate on the test file. SELECTION = "validation":
    train on the train file's first rows, evaluate on its chronological
    tail, cut into VALIDATION_FOLDS consecutive folds; fold k trains on every
    row before it (walk-forward), purged at its boundary, so no fold learns
    from its own future. The test file is then not even opened (only its
    existence is checked) until the top combinations are confirmed on it.
    """
    train = load_labelled(settings.train_csv)
    if settings.selection == "test":
        test = load_labelled(settings.test_csv)
        check_train_test(train, test)
        split = holdout_split(train, test, settings.label_horizon, settings.embargo_days)
        return [(train.take(split.train), test)], test, [split]
    if not Path(settings.test_csv).is_file():
        raise DataError(f"The test file '{settings.test_csv}' does not exist. It is only read to confirm the "
                        f"best combinations at the end of the sweep, but it must be there from the start.")
    splits = validation_splits(train, settings.validation_fraction, settings.validation_folds,
                               settings.label_horizon, settings.embargo_days)
    folds = []
    for split in splits:
        rows = split.evaluate
        fold = (train.take(split.train), train.take(rows))
        check_train_test(*fold, test_name=f"{settings.train_csv} (rows {rows[0] + 1}-{rows[-1] + 1}, {split.name})")
        folds.append(fold)
    return folds, train.take(slice(int(splits[0].evaluate[0]), None)), splits


def prepare_data(settings: Settings) -> dict:
    """The data the combinations are ranked on, checked, purged, standardized and saved for the workers."""
    folds, evaluated, splits = evaluation_folds(settings)
    saved = [save_for_workers(train, rows) for train, rows in folds]
    return {"folds": [s["files"] for s in saved], "fold_rows": [s["rows"] for s in saved],
            "n_features": saved[0]["n_features"], "evaluated": evaluated, "splits": splits}


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
    import atexit
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


RUN_RECORD = ("TRAIN_CSV", "TEST_CSV", "LATEST_CSV", "SEED", "RERUN_COUNT", "PREDICTION_THRESHOLD", "SELECTION",
              "P_VALUE_TEST", "FALSE_DISCOVERY_RATE", "SIGNIFICANCE_LEVEL", "PERMUTATIONS",
              "PERMUTATION_BLOCK_LENGTH", "LABEL_HORIZON", "EMBARGO_DAYS", "VALIDATION_FRACTION",
              "VALIDATION_FOLDS", "CONFIRM_TOP_K")


def run_record(settings: Settings) -> dict:
    """The resolved settings later commands need to rank and predict (evaluate.py), with absolute paths."""
    return {key: str(value) if isinstance(value, Path) else value
            for key, value in ((key, getattr(settings, key.lower())) for key in RUN_RECORD)}


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def run_fingerprint(settings: Settings, combinations: list[dict]) -> dict:
    """Everything that changes results: a run folder only ever holds results of one fingerprint."""
    if settings.planned:
        planned = json.dumps(sorted(map(plan.combination_id, combinations)))
    else:  # a model-based sampler: the space it searches (the budget may grow on a resume)
        planned = json.dumps({k: repr(v) for k, v in settings.hyperparameter_values.items()}, sort_keys=True)
    return {
        "combinations": hashlib.sha256(planned.encode()).hexdigest()[:16],
        "SAMPLER": None if settings.planned else settings.sampler, "PRUNER": settings.pruner,
        "RERUN_COUNT": settings.rerun_count, "SEED": settings.seed,
        "PREDICTION_THRESHOLD": settings.prediction_threshold, "P_VALUE_TEST": settings.p_value_test,
        "SELECTION": settings.selection, "TRAIN_CSV": file_digest(settings.train_csv),
        # they decide which training rows are purged at each boundary
        "LABEL_HORIZON": settings.label_horizon, "EMBARGO_DAYS": settings.embargo_days,
        # in validation mode the test file is read only at confirmation; its digest is checked then
        "TEST_CSV": file_digest(settings.test_csv) if settings.selection == "test" else None,
        "VALIDATION_FRACTION": settings.validation_fraction if settings.selection == "validation" else None,
        "VALIDATION_FOLDS": settings.validation_folds if settings.selection == "validation" else None,
    }


# ------------------------------------------------------------------ recording
class Recorder:
    """The results so far (this process's and, after sync, every process's); writes the CSVs every few seconds.

    The study is the record: each finished combination's reruns live on its
    trial, and `sync` reads back what other processes sharing the study have
    finished. Ranking is done lazily, when the CSVs are written, so that
    recording stays cheap however many combinations a sweep has.
    """

    def __init__(self, run_dir: Path, study, settings: Settings, fold_rows: list[int],
                 test: PermutationTest) -> None:
        self.run_dir, self.study, self.settings = run_dir, study, settings
        self.fold_rows = fold_rows
        self.test = test                             # the ranked rows' block permutation test
        self.counts: dict[str, np.ndarray | None] = {}  # combination -> its row of test.counts (None: pruned)
        self.confirmation_test: PermutationTest | None = None
        self.confirmation_counts: dict[str, np.ndarray | None] = {}
        self.partial: dict[str, dict[tuple[int, int], dict]] = {}  # combination -> (rerun, fold) -> result
        self.rows: dict[str, list[dict]] = {}        # combination -> its scored reruns
        self.params: dict[str, dict] = {}            # combination -> its hyperparameters
        self.confirmation_rows: list[dict] = []
        self.errors: list[dict] = []
        self._synced: set[int] = set()               # trial ids already taken in
        self._recorded_distributions: dict = {}      # the first trial's, when resuming a study
        self.best_p = None
        self._ranking = None
        self._confirmation = None
        self._last_flush = 0.0
        self._flush_took = 0.0
        self._dirty = True

    @property
    def finished(self) -> set[str]:
        return set(self.rows)

    # -- taking results in
    def sync(self, trials) -> None:
        """Take in the finished combinations and recorded failures of the study's trials."""
        from optuna.trial import TrialState
        for trial in trials:
            if trial._trial_id in self._synced or not trial.state.is_finished():
                continue
            self._synced.add(trial._trial_id)
            if len(self._synced) == 1:
                self._recorded_distributions = trial.distributions
            cid = trial.user_attrs.get("combination")
            if cid is None or cid in self.rows:
                continue
            if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and "reruns" in trial.user_attrs:
                reruns, bits = rows_from_study(trial.user_attrs)
                self.keep(cid, reruns, bits, trial.user_attrs.get("params"))
            elif trial.state == TrialState.FAIL and "error" in trial.user_attrs and \
                    not any(e["combination"] == cid and e["outcome"] == "failed" for e in self.errors):
                self.errors.append({"combination": cid, **_columns_of(trial.user_attrs), "outcome": "failed",
                                    "error": trial.user_attrs["error"], "traceback": trial.user_attrs["traceback"]})
                self._dirty = True

    def keep(self, cid: str, reruns: list[dict], bits: list, params: dict | None = None,
             counts: np.ndarray | None = None) -> None:
        """One finished combination's reruns, and its permutation counts from their packed predictions.

        The predictions themselves stay in the study only: the counts are all the ranking needs.
        """
        self.rows[cid] = reruns
        if params is not None:
            self.params[cid] = params
        self.counts[cid] = counts if counts is not None else permutation_counts(self.test, reruns, bits)
        p = p_value_of(self.test, self.counts[cid])
        self.best_p = p if self.best_p is None else min(self.best_p, p)
        self._ranking = None
        self._dirty = True

    def add_results(self, results: list[dict], trainings: dict, fold: int = 0) -> list[tuple]:
        """A task's results; returns the combinations they completed as (cid, scored reruns, prediction bits).

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
        if not complete:
            return []
        out = []
        predictions = {(r["combination"], r["rerun"]): r["predictions"] for r in complete}
        for cid, reruns in self.scored_rows(complete, trainings).items():
            self.params[cid] = trainings[(cid, 0)]["params"]
            bits = [base64.b64encode(predictions[cid, row["rerun"]]).decode() for row in reruns]
            out.append((cid, reruns, bits))
        return out

    def _pool_folds(self, parts: dict) -> list[dict]:
        if len(self.fold_rows) == 1:  # one evaluation set: each rerun's result as it came
            return [parts[(rerun, 0)] for rerun in range(self.settings.rerun_count)]
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

    def scored_rows(self, results: list[dict], trainings: dict) -> dict[str, list[dict]]:
        """Per combination, its reruns as reruns.csv rows: counts, precision, p-value, status.

        Plain dicts and numpy rather than a DataFrame per task: this runs for
        every finished task, and pandas' per-call overhead was most of it.
        """
        from evaluate import score_counts
        from results import hyperparameter_columns
        pruned = [bool(r.get("pruned")) for r in results]
        precision, p_value, _ = score_counts(
            *([r[k] for r in results] for k in ("tp", "fp", "tn", "fn")),
            [bool(r["diverged"]) or x for r, x in zip(results, pruned)], self.settings.p_value_test)
        columns = {}
        by_combination: dict[str, list[dict]] = {}
        for r, prec, p, was_pruned in zip(results, precision, p_value, pruned):
            training = trainings[(r["combination"], r["rerun"])]
            if r["combination"] not in columns:
                columns[r["combination"]] = hyperparameter_columns(training["params"])
            row = {"combination": r["combination"], "rerun": int(r["rerun"]), "seed": int(r["seed"]),
                   **columns[r["combination"]], **{k: int(r[k]) for k in ("tp", "fp", "tn", "fn")},
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
        self.confirmation_test, self.confirmation_rows, self.confirmation_counts = test, rows, counts
        self._ranking = None
        self._dirty = True

    def add_error(self, training: dict, error: BaseException, outcome: str) -> dict:
        from results import hyperparameter_columns
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
        from space import Range, grid_distribution
        values = self.settings.hyperparameter_values
        own = {name: values[name].distribution() if isinstance(values[name], Range)
               else grid_distribution(values[name]) for name in values}
        return {**own, **{name: d for name, d in self._recorded_distributions.items() if name in own}}

    @functools.cached_property
    def _varying(self) -> list[str]:
        return [name for name, distribution in self._distribution_of.items() if not distribution.single()]

    # -- ranking
    @property
    def ranking(self):
        """ranking.csv as a table (None before the first result); computed when asked, then kept until new results."""
        return self._ranking_of(None)

    def _ranking_of(self, reruns):
        """The ranking, computed from `reruns` (this run's _reruns_table, if the caller has it) where not kept."""
        if self._ranking is None and self.rows:
            from evaluate import label_sources, rank_combinations
            ranking = rank_combinations(self._reruns_table() if reruns is None else reruns, self.counts,
                                        self.test.orders, self.settings.false_discovery_rate)
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
        from evaluate import rank_combinations
        table = rank_combinations(self._reruns_table(self.confirmation_rows), self.confirmation_counts,
                                  self.confirmation_test.orders, self.settings.false_discovery_rate)
        validation = ranking.set_index("combination")
        table = table.rename(columns={"p_value": "p_value_test", "p_value_family_wise": "p_value_test_family_wise"})
        table.insert(2, "validation_rank", validation.loc[table["combination"], "rank"].to_numpy())
        table.insert(table.columns.get_loc("p_value_test"), "p_value_validation",
                     validation.loc[table["combination"], "p_value"].to_numpy())
        return table

    def _reruns_table(self, rows=None):
        import pandas as pd
        if rows is None:
            rows = [row for reruns in self.rows.values() for row in reruns]
        table = pd.DataFrame(rows)
        table["positive_rate"] = (table["tp"] + table["fn"]) / table[["tp", "fp", "tn", "fn"]].sum(axis=1)
        return table

    def flush(self, force: bool) -> None:
        """Rewrite the CSVs (atomically) if something changed and enough time passed."""
        # at least FLUSH_SECONDS apart, and far enough apart that rewriting big CSVs (a
        # 10,000-combination sweep) never takes more than 2% of this process's time
        interval = max(FLUSH_SECONDS, 50 * self._flush_took)
        if not self._dirty or (not force and (time.monotonic() - self._last_flush < interval or not preload.ready())):
            return
        started = time.monotonic()
        import pandas as pd
        from results import ERROR_COLUMNS, RERUN_COLUMNS, write_csv
        if self.rows:
            reruns = self._reruns_table()  # built once for both files: ~0.1 s at 10,000 combinations
            write_csv(reruns.reindex(columns=RERUN_COLUMNS).sort_values(["combination", "rerun"]),
                      self.run_dir / "reruns.csv")
            write_csv(self._ranking_of(reruns), self.run_dir / "ranking.csv")
        if self.confirmation is not None:
            write_csv(self.confirmation, self.run_dir / "confirmation.csv")
        write_csv(pd.DataFrame(self.errors, columns=ERROR_COLUMNS), self.run_dir / "errors.csv")
        self._last_flush = time.monotonic()
        self._flush_took = self._last_flush - started
        self._dirty = False


def stored_rows(reruns: list[dict], bits: list[str]) -> list[dict]:
    """A combination's reruns as the study keeps them: without the hyperparameter columns
    (the trial holds the combination once, in its "params" attr) and with each rerun's packed
    predictions (base64) beside its counts. Smaller records are faster to write and read."""
    return [{**{k: v for k, v in row.items() if k not in HYPERPARAMETERS}, "bits": b} for row, b in zip(reruns, bits)]


def rows_from_study(attrs: dict) -> tuple[list[dict], list[bytes]]:
    """(reruns.csv rows, packed predictions) of a finished trial; also reads the older layouts
    (full rows, predictions in their own attr, the independent-rows p-value as "p_value")."""
    columns = _columns_of(attrs)
    renamed = {"p_value": "p_value_independent_rows"}
    rows = [{**columns, **{renamed.get(k, k): v for k, v in row.items() if k != "bits"}} for row in attrs["reruns"]]
    packed = [row.get("bits") for row in attrs["reruns"]]
    if not all(packed):
        packed = attrs.get("predictions", [])
    return rows, [base64.b64decode(b) for b in packed]


def _columns_of(attrs: dict) -> dict:
    """A recorded trial's hyperparameter columns (kept in a "columns" attr by older runs)."""
    from results import hyperparameter_columns
    return attrs.get("columns") or (hyperparameter_columns(attrs["params"]) if "params" in attrs else {})


def _round_size(settings: Settings, cpu_count: int, folds: int) -> int:
    """How many combinations to claim at a time: enough for two full fused tasks per worker.

    Big enough that fusing and balancing work as well as with the whole
    sweep in view (the reference sweep is claimed in one round), small enough
    that processes sharing a study each get a share.
    """
    if settings.pruner is not None:
        return cpu_count + 1  # one combination per task; a little queued so the workers never wait
    if not settings.planned:
        # a model-based sampler learns from results: ask for a few at a time (about a tenth
        # of the budget), trading some fusing for more rounds of feedback
        return max(cpu_count, min(settings.number_of_combinations_to_try // 10,
                                  2 * cpu_count * plan.MAX_MEMBERS_PER_TASK // (settings.rerun_count * folds)))
    override = os.environ.get("SWEEP_ROUND_COMBINATIONS")  # tests: force several rounds on a small grid
    if override:
        return int(override)
    return max(cpu_count, 2 * cpu_count * plan.MAX_MEMBERS_PER_TASK // (settings.rerun_count * folds))


def _with_id(combination: dict) -> tuple[dict, str]:
    return combination, plan.combination_id(combination)


def _optuna_params(params: dict) -> dict:
    """Optuna's categorical values must be None/bool/int/float/str: lists become '[2, 1, 0.5]'."""
    from results import display_value
    return {name: display_value(params[name]) for name in HYPERPARAMETERS if params[name] is not None}


def permutation_counts(test: PermutationTest, reruns: list[dict], bits: list) -> np.ndarray | None:
    """A combination's row of test.counts: its reruns' predictions pooled, a diverged rerun's left out.

    None for a pruned combination: it is ranked with p = 1 (no evidence), as if never better than chance.
    """
    if any(r.get("status") == "pruned" for r in reruns):
        return None
    kept = [_as_bytes(b) for r, b in zip(reruns, bits) if not r["diverged"]]
    return test.counts(pooled_predictions(kept, len(test.labels)))[0]


def p_value_of(test: PermutationTest, counts: np.ndarray | None) -> float:
    """A combination's block permutation p-value from its row of counts (1 when pruned)."""
    return 1.0 if counts is None else float(counts[0] / test.orders)


def too_few_blocks(test: PermutationTest, rows: str, level: float) -> str:
    """The warning for a permutation test whose smallest p-value cannot reach the significance level."""
    blocks = test.blocks
    unit = "whole dates spanning at least LABEL_HORIZON weekdays each" if blocks.by_date else "rows"
    return (f"the {rows} make only {blocks.count} permutation block(s) of {unit}, so the smallest p-value the "
            f"test can give is {test.smallest_p_value:.3g}: nothing can reach the {level:g} level. Evaluate on "
            f"a longer period (a larger VALIDATION_FRACTION or test file)"
            + (" or a smaller LABEL_HORIZON, if the labels really look less far ahead." if blocks.by_date
               else " or set PERMUTATION_BLOCK_LENGTH to fewer rows."))


def _as_bytes(bits) -> bytes:
    """Packed predictions as bytes, from the study's base64 text or as they are."""
    return bits if isinstance(bits, bytes) else base64.b64decode(bits)


def _finite_or_none(value) -> float | None:
    """JSON (and so the study) has no NaN: a diverged training's loss is stored as empty."""
    value = float(value)
    return value if math.isfinite(value) else None


