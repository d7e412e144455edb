"""The sweep's run loop: claim combinations, fan fused tasks out to the workers, record each result.

The main process never imports torch: it validates, plans, dispatches,
scores and writes; the joblib (loky) workers train and count hits
(sweep/pool.py). Each finished task is recorded at once in the Optuna study
(study.journal), which is also what a resumed run reads to skip finished
work, and what processes sharing a study read to split it.
"""
from __future__ import annotations

import json
import os
import resource
import shlex
import signal
import sys
import time
import warnings
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from optuna.trial import TrialState
from tqdm import tqdm

from inputs.atomic import atomic_write_text, remove_abandoned_temporaries
from inputs.settings import Settings
from records.ledger import Ledger
from records.outage import StorageUnavailable, describe
from records.reruns import stored_rows, with_earlier
from records.storage import open_storage, open_study, redact
from sweep import plan
from sweep.confirm import confirm
from sweep.finish import finish
from sweep.pool import Pool, stop_workers
from sweep.recorder import Recorder
from sweep.rows import (
    permutation_test,
    prepare_data,
    run_fingerprint,
    run_record,
    share_label_orders,
    too_few_blocks,
)
from sweep.samplers import make_pruner, make_sampler, suggest_combination
from sweep.scoring import p_value_of, permutation_counts_of, trial_value

JOIN_SECONDS = 1.0  # on a shared database, the wait from the first heartbeat to the first claim


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
        share_label_orders(self.test, self.data)
        if self.test.smallest_p_value > settings.significance_level:
            warnings.warn(too_few_blocks(self.test, "evaluated rows", settings.significance_level))
        # ids computed once: a big grid is claimed in many rounds
        self.candidates = plan.Candidates(settings) if settings.planned else None
        self.fingerprint = run_fingerprint(settings)
        self.confirmation_split = None

    @property
    def total(self) -> int:
        return len(self.candidates) if self.settings.planned else self.settings.number_of_combinations_to_try

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        """The whole sweep; the exit code (0, 1: every combination failed, 2: bad input, 3: storage gone, 130)."""
        try:
            return self._run()
        except StorageUnavailable as err:
            return self._gave_up(err)

    def _run(self) -> int:
        if self.storage_url is not None:  # an unreachable database is reported before anything is written
            self.storage = open_storage(self.storage_url, self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        remove_abandoned_temporaries(self.run_dir)
        if self.storage_url is None:
            self.storage = open_storage(None, self.run_dir)
        study = open_study(self.storage, self.study_name, self.fingerprint,
                           sampler=make_sampler(self.settings), pruner=make_pruner(self.settings))
        # what `evaluate.py` needs to rank this study: the latest config's (a sweep may grow)
        if study.user_attrs.get("run") != json.loads(json.dumps(run_record(self.settings))):
            study.set_user_attr("run", run_record(self.settings))
        atomic_write_text(self.settings.config_path.read_text(), self.run_dir / "config.py")
        atomic_write_text(json.dumps(run_record(self.settings), indent=2), self.run_dir / "run.json")
        self.ledger = self.new_ledger(study)
        planned = set(self.candidates.ids) if self.settings.planned else None
        self.recorder = Recorder(self.run_dir, study, self.settings, self.data["fold_rows"], self.test,
                                 self.storage.predictions, planned)
        status, trials = self.ledger.refresh()
        self.recorder.sync(trials)
        self._say_what_is_kept(status)
        self.pool = Pool(self.settings.cpu_count, self._payload, folds=len(self.data["folds"]))
        self.trained = 0  # trainings this process ran (a resumed or grown sweep runs only what is new)
        self.crashes: dict[str, int] = {}
        self.notes_shown: set[str] = set()
        self.accelerators: dict[str, bool] = {}  # what the workers ran (their first results say)
        self.bar = tqdm(total=self.total, initial=len(self.recorder.rows), unit="combination",
                        disable=not self.progress, dynamic_ncols=True, smoothing=0.1)
        # Ctrl-C only sets a flag, checked between results, so that it never
        # lands halfway through recording one; a second Ctrl-C exits at once.
        self.stop_requested = False
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        try:
            if self.storage_url is not None:
                # machines started together see each other's heartbeats before the first claim, and split it
                time.sleep(max(0.0, JOIN_SECONDS - (time.monotonic() - self.ledger.joined)))
            wall, cpu = time.monotonic(), time.process_time()
            self._drive(self.ledger, self._claim_sweep, self._record_sweep, self.pool)
            # what this process spent orchestrating (claiming, recording, dispatching, CSVs) while
            # the workers trained: on a machine whose cores all train, it comes out of their time
            self.timing = {"seconds": round(time.monotonic() - wall, 3),
                           "main_process_cpu_seconds": round(time.process_time() - cpu, 3),
                           "main_process_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                           "trainings": self.trained, **self.accelerators}
            if self.stop_requested:
                return self._interrupted()
            self.bar.close()
            self._sync()
            self.recorder.flush(force=True)
            confirming = self.settings.selection == "validation" and self.settings.confirm_top_k
            if confirming and self.recorder.ranking is not None:
                failed = confirm(self)
                if self.stop_requested:
                    return self._interrupted()
                if failed:
                    return failed
            self.timing["trainings"] = self.trained  # the confirmation's included
        finally:
            signal.signal(signal.SIGINT, previous)
            self.bar.close()
            self.ledger.leave()
            self.storage.predictions.close()
        stop_workers()  # all training is done
        return finish(self)

    def new_ledger(self, study):
        """This process's ledger of `study` (the sweep's, or the confirmation's)."""
        return Ledger(self.storage, study, self.settings.heartbeat_timeout, reruns=self.settings.rerun_count,
                      cpus=self.settings.cpu_count, sharing=self.storage_url is not None,
                      patience=self.settings.storage_retry_seconds)

    def _gave_up(self, err: StorageUnavailable) -> int:
        """The storage stayed down past STORAGE_RETRY_SECONDS: stop, say what is safe and how to go on."""
        if hasattr(self, "pool"):
            self.pool.stop()
        if hasattr(self, "recorder"):
            self.recorder.flush(force=True)
        where = redact(self.storage_url) if self.storage_url else str(self.run_dir / "study.journal")
        print(f"\nerror: the study's storage {where} did not answer for {err.seconds:.0f} s "
              f"({describe(err.error)}), longer than STORAGE_RETRY_SECONDS = "
              f"{self.settings.storage_retry_seconds:g}, so this run stops. Every combination recorded before "
              f"is safe in the study; the trainings in flight are dropped and will run again. When the storage "
              f"answers again, resume with:  {resume_command()}", file=sys.stderr)
        return 3

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
                    trainings = self._trainings(group, folds=pool.folds)
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
        round_size = plan.round_size(self.settings, self.pool.cpu_count, len(self.data["folds"]))
        if self.settings.planned:
            candidates = self.candidates
            claims, status = self.ledger.claim_planned(candidates, round_size, self.recorder.trial_template,
                                                       running_trials=self.settings.pruner is not None)
            finished = len(status.records) + len(status.failed) >= len(candidates) and \
                all(cid in status.records or cid in status.failed for cid in candidates.ids)
        else:
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

    def _say_what_is_kept(self, status) -> None:
        """On a resumed or grown sweep: what is kept from the study, and what is left to train."""
        finished = len(self.recorder.rows)
        if not finished and not status.earlier:
            return
        where = self.run_dir if self.storage_url is None else f"study {self.study_name!r}"
        growing = sum(cid in status.earlier and cid not in status.records for cid in self.candidates.ids) \
            if self.settings.planned else 0
        if self.settings.planned and finished == self.total:
            print(f"Nothing new to train: {finished} of {self.total} combinations already finished and kept in "
                  f"{where}. Writing the ranking and report again.", file=sys.stderr)
            return
        new = self.total - finished - growing
        told = [f"{finished} of {self.total} combinations already finished and kept" if finished else "",
                f"{growing} combinations with fewer than RERUN_COUNT = {self.settings.rerun_count} reruns train only "
                f"the missing ones" if growing else "",
                f"{new} to train" if new > 0 else ""]
        print(f"Resuming {where}: {'; '.join(t for t in told if t)}.", file=sys.stderr)

    def _record_sweep(self, task: list[dict], results: list[dict]) -> int:
        """Record a finished task of the sweep; returns how many combinations it completed."""
        completed = self.recorder.add_results(results, {(t["combination"], t["rerun"]): t for t in task},
                                              fold=task[0]["fold"])
        # a grown combination's earlier reruns have predictions only: those are scored from them
        merged = [(cid, *with_earlier(self.claims[cid].earlier, reruns, bits, self.settings.rerun_count),
                   hits if self.claims[cid].earlier is None else None)
                  for cid, reruns, bits, hits in completed]
        scored = permutation_counts_of(self.test, [combination[1:] for combination in merged],  # None: pruned
                                       self.storage.predictions)
        together = []  # held in the heartbeat record and completed: recorded as one trial for the task
        for (cid, reruns, bits, _), counts in zip(merged, scored):
            claim = self.claims.pop(cid)
            p = p_value_of(self.test, counts)
            attrs = {"reruns": stored_rows(reruns, bits), "p_value": p}
            if claim.trial_id is None and counts is not None:
                together.append((claim, trial_value(p), attrs, reruns, bits, counts))
            elif self.ledger.finish(claim, TrialState.COMPLETE if counts is not None else TrialState.PRUNED,
                                    None if counts is None else trial_value(p), attrs):
                self.recorder.keep(cid, reruns, bits, counts=counts, scored=True, params=claim.combination)
        if together:
            recorded = self.ledger.finish_task([(claim, value, attrs) for claim, value, attrs, *_ in together])
            for claim, _, _, reruns, bits, counts in together:
                if claim.cid in recorded:
                    self.recorder.keep(claim.cid, reruns, bits, counts=counts, scored=True, params=claim.combination)
        if self.recorder.best_p is not None:
            self.bar.set_postfix_str(f"best p={self.recorder.best_p:.3g}")
        return len(completed)

    def _sync(self) -> None:
        """Take in what other processes sharing the study have recorded."""
        _, trials = self.ledger.refresh()
        self.recorder.sync(trials)

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
        print(f"\nInterrupted: {len(self.recorder.rows)} of {self.total} combinations are "
              f"finished and saved in {self.run_dir} (the trainings in flight were dropped).\n"
              f"Resume with:  {resume_command()}", file=sys.stderr)
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
            if results:
                self._show_note(results[0].get("note"))
                self.accelerators.update(results[0].get("accelerators", {}))
            self.trained += len(results)
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

    def _trainings(self, claims: list, folds: int = 1) -> list[dict]:
        """The trainings of claimed combinations: every rerun an earlier trial lacks, on every fold."""
        out = []
        for claim in claims:
            done = {row["rerun"] for row in claim.earlier.user_attrs["reruns"]} if claim.earlier else set()
            for rerun in range(self.settings.rerun_count):
                if rerun in done:
                    continue
                for fold in range(folds):  # each training's seed is derived by its worker (training/seeds.py)
                    out.append({"combination": claim.cid, "rerun": rerun, "fold": fold, "params": claim.combination})
        return out

    def _payload(self, task: list[dict], files: dict | None = None) -> dict:
        payload = {"arch": task[0]["params"], "members": task, "data": files or self.data["folds"][task[0]["fold"]],
                   "channels": self.data["channels"], "threshold": self.settings.prediction_threshold,
                   "device": self.settings.device, "sweep_seed": self.settings.seed}
        if self.settings.pruner is not None and files is None:
            claim = self.claims[task[0]["combination"]]
            payload["prune"] = {"storage": self.storage.spec, "study": self.study_name, "trial_id": claim.trial_id,
                                "pruner": self.settings.pruner, "max_epochs": task[0]["params"]["max_epochs"]}
        return payload


def resume_command() -> str:
    """This process's command line, to run again: a --storage URL without its password."""
    if not sys.argv or not sys.argv[0]:
        return "python search.py"
    shown = []
    for arg in sys.argv:
        if "://" in arg:
            key, eq, url = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
            arg = key + eq + redact(url)
        shown.append(shlex.quote(arg))
    return " ".join([Path(sys.executable).name, *shown])


def _with_id(combination: dict) -> tuple[dict, str]:
    return combination, plan.combination_id(combination)
