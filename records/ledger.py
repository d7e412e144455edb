"""The run's Optuna study, and how several search.py processes share it without doing work twice.

One process or many, on one machine (the default journal file) or on many
(`--storage postgresql://...`): a process claims combinations before it
trains them, under a lock; it records each finished task of a planned
sweep as one trial, and otherwise each finished combination (COMPLETE,
PRUNED or FAIL, every rerun's counts in the user attrs: records/results.py);
and it writes a heartbeat while it works. A process that stops
beating (killed, machine lost, network gone) loses its claims: the next
process to claim declares it stopped and trains those combinations itself.
So a grid is finished exactly once in total: no combination trained twice,
none left out.

A sweep can grow: with a higher RERUN_COUNT, a combination whose trial
holds fewer reruns is not finished. It is claimed again, trains only its
missing reruns, and is recorded anew holding all of them; the record with
the most reruns is the one that counts.

How a claim is held, and how much of a round each process takes: records/claims.py.

Every step that reads or writes the study runs under records/outage.py's
Patience: a storage outage is ridden out, and a claim round that failed
halfway leaves no claim behind (its held combinations are dropped from the
heartbeat, its RUNNING trials are failed at the next round).

Why a lock rather than trusting trial numbers: on a database, a trial
created by one process can become visible to another after a trial that was
created later, so "lowest number wins" could let two processes both win.
Under the lock, checking what is free and claiming it is one step.
"""
from __future__ import annotations

import os
import time
import uuid

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from records.claims import (
    HOST,
    STARTED,
    Claim,
    Listed,
    Status,
    claim_trial,
    fair_share,
    finished_in,
    pid_alive,
    reruns_in,
)
from records.outage import Patience, patiently
from records.results import Results
from records.storage import Storage


class Ledger(Results):
    """This process's view of who does what in a study: claims, heartbeats, stale takeovers, results."""

    def __init__(self, storage: Storage, study, heartbeat_timeout: float, beat: bool = True,
                 reruns: int | None = None, cpus: int = 1, sharing: bool = False,
                 patience: float = 300.0) -> None:
        self.storage, self.study = storage, study
        self.reruns = reruns                # a finished trial with fewer is not finished (None: any trial is)
        self.cpus = cpus                    # this process's workers: its weight in the fair shares
        self.sharing = sharing              # a database other machines may join: leave them work each round
        self.patience = Patience(patience, on_recovery=self._after_outage)
        self.study_id = self.patience.call(lambda: storage.optuna.get_study_id_from_name(study.study_name))
        self.me = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.timeout = heartbeat_timeout
        self._last_beat = 0.0
        self._seen: dict[str, tuple] = {}   # claimant -> (last heartbeat value, when this process first saw it)
        self.taken_over: list[str] = []     # combinations taken from processes that went silent
        # what refresh() has classified for good: finished trials do not change
        self._records: dict = {}
        self._failed: dict = {}
        self._earlier: dict = {}
        self._open: list[int] = []          # trials (by index) that were still running
        self._seen_trials = 0
        self.holds: set[str] = set()        # combinations claimed in the heartbeat record, not yet recorded
        self.lost: set[str] = set()         # held ones that others took over while this process was silent
        self._template = None               # combination, cid -> what its trial holds (claim_planned's)
        self._cursor = (None, 0)            # (candidates, index of the first not finished for good)
        self._orphans: list[int] = []       # RUNNING trials of a claim round that failed halfway
        self._finishing: set[str] = set()   # claims whose recording was attempted (a retry checks first)
        if beat:  # a reader (evaluate.py) does not count as a process working on the study
            self.beat(force=True)
        self.joined = time.monotonic()  # when the others could first see this process

    def _after_outage(self) -> None:
        """Nobody could be watched while the storage was down: every other process's silence counts from now."""
        self._seen.clear()

    # -- heartbeats
    @patiently
    def beat(self, force: bool = False) -> None:
        """Tell the other processes this one is alive (every quarter of the timeout), and what it holds."""
        now = time.time()
        if force or now - self._last_beat >= max(0.5, self.timeout / 4):
            if self.holds and now - self._last_beat >= 0.9 * self.timeout:
                self._check_declared_stopped()
            self.storage.optuna.set_study_system_attr(
                self.study_id, f"claimant:{self.me}",
                {"host": HOST, "pid": os.getpid(), "beat": now, "cpus": self.cpus, "holds": sorted(self.holds)})
            self._last_beat = now

    def _check_declared_stopped(self) -> None:
        """After a silence as long as the timeout, see whether another process took this one's claims.

        Others wait a whole timeout of silence before they declare a process
        stopped, so a process that beat more recently cannot have been; the
        check costs a read of the study only after such a silence (a
        suspended machine, a stalled disk or network).
        """
        record = self.storage.optuna.get_study_system_attrs(self.study_id).get(f"claimant:{self.me}", {})
        if record.get("stale"):
            self.lost |= self.holds
            self.holds = set()

    def _alive(self, claimant: str | None, beats: dict, now: float) -> bool:
        if claimant == self.me:
            return True
        record = beats.get(f"claimant:{claimant}")
        if record is not None and record.get("left"):
            return False
        if record is not None and record["host"] == HOST and not pid_alive(record["pid"]):
            return False  # same machine and its process is gone: no need to wait for the timeout
        beat = None if record is None else record["beat"]
        last, since = self._seen.get(claimant, (object(), now))
        if beat != last:  # the beat moved (or first sight): alive, and start timing from here
            self._seen[claimant] = (beat, now)
            return True
        return now - since < self.timeout

    # -- reading the study
    @patiently
    def refresh(self, take_over: bool = False):
        """Classify every combination; with take_over, fail the trials of processes that went silent.

        Finished trials never change, so each is classified once: a round
        looks only at the trials that are new or were still running.
        """
        now = time.time()
        beats = self.storage.optuna.get_study_system_attrs(self.study_id)
        status = Status(records=self._records, failed=self._failed, earlier=self._earlier)
        live = {self.me: self.cpus}
        trials = self.storage.optuna.get_all_trials(self.study_id, deepcopy=False)
        if len(trials) < self._seen_trials:  # not the study this ledger read before: start over
            self._records, self._failed, self._earlier, self._open, self._seen_trials = {}, {}, {}, [], 0
            status = Status(records=self._records, failed=self._failed, earlier=self._earlier)
        fresh = self._open + list(range(self._seen_trials, len(trials)))
        self._open, self._seen_trials = [], len(trials)
        for index in fresh:
            trial = trials[index]
            if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
                # kept light: a big study's entries are read from their trials' text when asked
                for cid, record in finished_in(trial, light=True):
                    if self.reruns is None or reruns_in(record) >= self.reruns:
                        self._records.setdefault(cid, record)
                    elif reruns_in(record) > reruns_in(self._earlier.get(cid)):
                        self._earlier[cid] = record
                continue
            cid = trial.user_attrs.get("combination")
            if cid is None:
                if not trial.state.is_finished():
                    self._open.append(index)  # its combination may not be set yet (an ask in progress)
                continue
            if trial.state == TrialState.FAIL:
                # an error recorded during this run; errors from before a restart get one more try
                if "error" in trial.user_attrs and trial.datetime_complete is not None and \
                        trial.datetime_complete.timestamp() >= STARTED - 1:
                    self._failed.setdefault(cid, trial)
            elif trial.state == TrialState.RUNNING:
                self._open.append(index)
                claimant = trial.system_attrs.get("claimant")
                if self._alive(claimant, beats, now):
                    status.claimed[cid] = trial
                    status.held_here += claimant == self.me
                    live.setdefault(claimant, beats.get(f"claimant:{claimant}", {}).get("cpus", 1))
                elif take_over:
                    self._fail_stale(trial, claimant)
            else:
                self._open.append(index)  # WAITING: not finished, look again next time
        for key, record in beats.items():
            if not key.startswith("claimant:") or key == f"claimant:{self.me}":
                continue
            claimant = key[len("claimant:"):]
            if self._alive(claimant, beats, now):
                live[claimant] = record.get("cpus", 1)
                status.claimed.update(dict.fromkeys(record.get("holds", ())))
            elif take_over and record.get("holds"):
                self._declare_stopped(claimant, record, status)
        status.claimed.update(dict.fromkeys(self.holds))
        status.held_here += len(self.holds)
        status.claimants, status.live_cpus = len(live), sum(live.values())
        # a combination recorded elsewhere is no longer "claimed" (a late duplicate record is ignored)
        for cid in list(status.claimed):
            if cid in status.records:
                del status.claimed[cid]
        return status, trials

    def _fail_stale(self, trial, claimant: str | None) -> None:
        try:
            reason = f"{claimant} stopped (its process is gone, or no heartbeat for {self.timeout:g} s)"
            trial_id = self._trial_id(trial)
            self.storage.optuna.set_trial_system_attr(trial_id, "stale", reason)
            self.storage.optuna.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            return  # it finished after all (or another process failed it first)
        self.taken_over.append(trial.user_attrs["combination"])

    def _declare_stopped(self, claimant: str, record: dict, status: Status) -> None:
        """Free what a silent process held in its heartbeat record (under the claims lock)."""
        reason = f"stopped (its process is gone, or no heartbeat for {self.timeout:g} s)"
        self.storage.optuna.set_study_system_attr(
            self.study_id, f"claimant:{claimant}", {**record, "holds": [], "left": True, "stale": reason})
        self.taken_over += [cid for cid in record["holds"] if cid not in status.records and cid not in status.failed]

    # -- claiming
    @patiently
    def claim_planned(self, candidates, limit: int, trial_template,
                      running_trials: bool = False) -> tuple[list[Claim], Status]:
        """Claim up to `limit` of `candidates` that nobody has done or holds, in order.

        `candidates`: a list of (cid, combination), or an object with `ids`
        and `combination(k)` (a planned sweep's: sweep/plan.py's Candidates).
        Held in the heartbeat record (one record for the round), or with
        `running_trials` as a RUNNING trial each (for a pruner's reports).
        """
        if isinstance(candidates, list):
            candidates = Listed(candidates)
        new: set[str] = set()
        try:
            with self.storage.lock():
                self._fail_orphans()
                status, _ = self.refresh(take_over=True)
                free = len(candidates) - len(status.records) - len(status.failed) - len(status.claimed)
                share = fair_share(status, free, self.cpus, self.sharing)
                picked = self._first_free(candidates, status, min(limit, share))
                self._template = trial_template
                if running_trials:
                    claims = []
                    for cid, combination in picked:
                        trial_id = self._create_trial(self._running_trial(combination, cid))
                        self._orphans.append(trial_id)  # until the round is complete
                        claims.append(Claim(trial_id, combination, cid))
                else:
                    claims = [Claim(None, combination, cid, earlier=status.earlier.get(cid))
                              for cid, combination in picked]
                    new = {c.cid for c in claims} - self.holds
                    if new:
                        self.holds |= new
                        self.beat(force=True)
                status.claimed.update(dict.fromkeys(c.cid for c in claims))
        except BaseException:
            # the round failed somewhere, the lock's release included: none of it was claimed. (A heartbeat
            # that did go out lists them until the next one; its RUNNING trials are failed next round.)
            self.holds -= new
            raise
        self._orphans = []
        return claims, status

    def _fail_orphans(self) -> None:
        """Fail the RUNNING trials of a claim round that an outage cut short (nobody trains them)."""
        while self._orphans:
            try:
                self.storage.optuna.set_trial_system_attr(self._orphans[-1], "abandoned", True)
                self.storage.optuna.set_trial_state_values(self._orphans[-1], TrialState.FAIL)
            except UpdateFinishedTrialError:
                pass
            self._orphans.pop()

    def _first_free(self, candidates, status: Status, count: int) -> list[tuple[str, dict]]:
        """The first `count` candidates nobody has done or holds, as (cid, combination).

        Scans on from the first candidate not yet finished for good, rather
        than from the start each round: a 10,000-combination grid is claimed
        in ~120 rounds.
        """
        ids = candidates.ids
        first = self._cursor[1] if self._cursor[0] is candidates else 0
        while first < len(ids) and (ids[first] in status.records or ids[first] in status.failed):
            first += 1
        self._cursor = (candidates, first)
        picked = []
        for k in range(first, len(ids)):
            if len(picked) == count:
                break
            if not status.taken(ids[k]):
                picked.append((ids[k], candidates.combination(k)))
        return picked

    def _running_trial(self, combination: dict, cid: str):
        return self._frozen_trial(TrialState.RUNNING, None, combination, cid, time.time(), None, {})

    def _frozen_trial(self, state, value, combination: dict, cid: str, since: float, until: float | None,
                      user_attrs: dict):
        return claim_trial(self._template(combination, cid), state, value, since, until, user_attrs, self.me)

    def _trial_id(self, trial) -> int:
        """A trial's id in the storage, through Optuna's public storage API."""
        return self.storage.optuna.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)

    def _create_trial(self, trial) -> int:
        return self.storage.optuna.create_new_trial(self.study_id, template_trial=trial)

    @patiently
    def claim_asked(self, count: int, budget: int, suggest, trial_template,
                    max_duplicates: int = 50) -> tuple[list[Claim], Status, bool]:
        """Ask the sampler for up to `count` new combinations within `budget` in all.

        Returns (claims, status, exhausted): exhausted when the sampler keeps
        proposing combinations that were already tried (a small space).
        """
        claims, duplicates, exhausted = [], 0, False
        with self.storage.lock():
            self._fail_orphans()
            status, _ = self.refresh(take_over=True)
            count = min(count, fair_share(status, budget - status.used, self.cpus, self.sharing))
            while len(claims) < count and status.used < budget:
                trial = self.study.ask()
                trial_id = self._trial_id(trial)
                self._orphans.append(trial_id)  # until the round is complete
                self.storage.optuna.set_trial_system_attr(trial_id, "claimant", self.me)
                combination, cid = suggest(trial)
                self.storage.optuna.set_trial_user_attr(trial_id, "combination", cid)
                if status.taken(cid):
                    # the same point again: recorded as a failed trial (not trained twice), and ask again
                    self.storage.optuna.set_trial_system_attr(trial_id, "duplicate_of", cid)
                    self.storage.optuna.set_trial_state_values(trial_id, TrialState.FAIL)
                    self._orphans.remove(trial_id)
                    duplicates += 1
                    if duplicates >= max_duplicates:
                        exhausted = True
                        break
                    continue
                for key, value in trial_template(combination, cid)["user_attrs"].items():
                    if key != "combination":
                        self.storage.optuna.set_trial_user_attr(trial_id, key, value)
                status.claimed[cid] = trial
                claims.append(Claim(trial_id, combination, cid))
        self._orphans = []
        return claims, status, exhausted

    def leave(self) -> None:
        """Stop counting as a live claimant."""
        try:
            self.storage.optuna.set_study_system_attr(
                self.study_id, f"claimant:{self.me}", {"host": HOST, "pid": os.getpid(), "beat": 0, "left": True})
        except Exception:  # noqa: BLE001
            pass
