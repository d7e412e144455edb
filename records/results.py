"""How a finished claim becomes the study's record: one trial per combination, or one per task.

A part of records/ledger.py's Ledger (its claims, heartbeat and lost
claims are the ledger's): a claim held in the heartbeat record becomes a
trial created whole, a task's claims one trial for them all; a claim held
by a RUNNING trial finishes that trial. A result whose claim another
process took over meanwhile is dropped with a note, and an attempt that an
outage cut short is checked before it is written again.
"""
from __future__ import annotations

import contextlib
import sys
import time

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from records.claims import Claim, claim_trial, task_attrs
from records.outage import patiently


class Results:
    """The ledger's results: `finish`, `finish_task`, `release` (mixed into records.ledger.Ledger)."""

    @patiently
    def finish(self, claim: Claim, state, value: float | None, user_attrs: dict) -> bool:
        """Record a finished claim. False if this process had lost it (another took it over meanwhile).

        A claim held in the heartbeat record becomes one trial, created
        whole. If another process declared this one stopped meanwhile, the
        first beat after the silence finds out, and the result is dropped
        with a note. (Where the declaration lands just after that beat, both
        results are recorded: the same seeds, so the same result within float
        rounding, and the first record is the one read.)
        """
        storage = self.storage.optuna
        if claim.cid in self._finishing and self._recorded_by_me(claim):
            self._finishing.discard(claim.cid)  # the attempt an outage cut short had been written after all
            self.holds.discard(claim.cid)
            return True
        self._finishing.add(claim.cid)
        if claim.trial_id is None:
            self.beat()  # after a long silence, this finds out whether the claim was taken over
            if claim.cid in self.lost:
                self._finishing.discard(claim.cid)
                self._note_lost(claim.cid)
                return False
            self._create_trial(self._frozen_trial(state, value, claim.combination, claim.cid, claim.since,
                                                  time.time(), user_attrs))
            self._finishing.discard(claim.cid)
            self.holds.discard(claim.cid)
            return True
        self._finishing.discard(claim.cid)
        try:
            for key, val in user_attrs.items():
                storage.set_trial_user_attr(claim.trial_id, key, val)
            storage.set_trial_state_values(claim.trial_id, state, None if value is None else [value])
        except UpdateFinishedTrialError:
            if storage.get_trial(claim.trial_id).state in (TrialState.COMPLETE, TrialState.PRUNED):
                return True  # only its claimant finishes a trial: this process, before an outage cut the reply
            self._note_lost(claim.cid)  # failed as stale by another process
            return False
        return True

    @patiently
    def finish_task(self, finished: list[tuple[Claim, float, dict]]) -> set[str]:
        """Record a task's finished claims, held in the heartbeat record, as one COMPLETE trial; returns
        the combinations recorded (those another process took over meanwhile are dropped, as in `finish`).

        (claim, value, user attrs) each. The trial's user attrs
        (claims.task_attrs) list each combination's entry, what a trial of its
        own would hold (claims.finished_in); its value is the best of theirs, for the
        dashboard. One record per task instead of one per combination: on a
        big grid of small trainings, Optuna's per-trial work was most of the
        main process's, and its per-trial memory most of its growth.
        """
        cids = [claim.cid for claim, _, _ in finished]
        if cids and cids[0] in self._finishing and self._recorded_by_me(finished[0][0]):
            # the attempt an outage cut short had been written after all (the whole trial, or none of it)
            self._finishing.difference_update(cids)
            self.holds.difference_update(cids)
            return set(cids)
        self._finishing.update(cids)
        self.beat()  # after a long silence, this finds out whether the claims were taken over
        kept = []
        for claim, value, user_attrs in finished:
            if claim.cid in self.lost:
                self._finishing.discard(claim.cid)
                self._note_lost(claim.cid)
            else:
                kept.append((claim, value, user_attrs))
        if kept:
            entries = [{"combination": claim.cid, "params": claim.combination, **user_attrs}
                       for claim, _, user_attrs in kept]
            since = min(claim.since for claim, _, _ in kept)
            self._create_trial(claim_trial({"params": {}, "distributions": {}, "user_attrs": {}}, TrialState.COMPLETE,
                                           max(value for _, value, _ in kept), since, time.time(),
                                           task_attrs(entries), self.me))
        recorded = {claim.cid for claim, _, _ in kept}
        self._finishing.difference_update(recorded)
        self.holds.difference_update(recorded)
        return recorded

    def _recorded_by_me(self, claim: Claim) -> bool:
        """Whether this process's record of `claim` reached the study (before an outage cut the reply short)."""
        status, _ = self.refresh()
        trial = status.records.get(claim.cid)
        return trial is not None and trial.system_attrs.get("claimant") == self.me

    def _note_lost(self, cid: str) -> None:
        print(f"note: combination {cid} was taken over by another process while this one trained "
              f"it (this process's heartbeat stopped for more than {self.timeout:g} s); its result "
              f"from here is dropped, the other one counts.", file=sys.stderr)

    def release(self, claims: list[Claim]) -> None:
        """Give back claims this process will not train (Ctrl-C): others may take them at once."""
        held = [c.cid for c in claims if c.trial_id is None]
        if held:
            self.holds.difference_update(held)
            with contextlib.suppress(Exception):  # best effort on the way out, as below
                self.beat(force=True)
        for claim in (c for c in claims if c.trial_id is not None):
            try:
                self.storage.optuna.set_trial_system_attr(claim.trial_id, "released", True)
                self.storage.optuna.set_trial_state_values(claim.trial_id, TrialState.FAIL)
            except Exception:  # noqa: BLE001 (best effort on the way out; the heartbeat timeout covers it)
                pass
