"""What a study holds per combination, a process's claim on one, and its fair share of a claim round.

Two ways to hold a claim. A planned combination (grid, or a random draw
made up front) is held in the process's heartbeat record: a whole round of
claims is one record, and a finished task's combinations are one trial
created whole (finished_in), so a task costs the study one record instead
of three per combination (on a 20,000-combination grid of tiny models the
per-trial records were most of the main process's work and memory). A
combination that needs a trial while it trains
(a sampler's ask, a pruner's reports) is held by a RUNNING trial that names
the process, as Optuna does it.

Fair shares: each claim round takes at most this process's share of the
unfinished work, weighted by the CPU_COUNT every live process announces in
its heartbeat; with a shared database (`sharing`), a process that sees no
other takes at most half of what is free a round, so that one joining
later still finds work.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import socket
import time
from dataclasses import dataclass, field

from optuna.trial import FrozenTrial, TrialState

# Tests give each process its own "machine" to exercise the heartbeat path.
HOST = os.environ.get("SWEEP_HOST_ID") or socket.gethostname()
STARTED = time.time()


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished combination as the study records it: its own trial, or its entry in its task's trial.

    Read like a trial of its own: `user_attrs` are the combination's
    ("combination", "params", "reruns", "p_value"), the rest is the trial's.
    A task's entries are kept in the trial as one JSON text (a text costs
    Optuna a fraction of what the same entries cost as objects, in memory
    and in the work of each record); a light record (no `attrs`) keeps only
    where the entry is, and its user_attrs are read from the text when asked.
    """
    trial: FrozenTrial
    index: int | None = None         # its entry in the task's trial; None: a trial of its own
    reruns: int = 0                  # how many reruns it holds
    attrs: dict | None = None        # its entry as read (None in a light record: read again when asked)

    @property
    def user_attrs(self) -> dict:
        if self.index is None:
            return self.trial.user_attrs
        return self.attrs if self.attrs is not None else task_entries(self.trial)[self.index]

    @property
    def state(self):
        return self.trial.state

    @property
    def system_attrs(self) -> dict:
        return self.trial.system_attrs


TASK_ENTRIES = "combinations"  # the user attr of a task's trial: its combinations' entries, as JSON text
# and which combinations those are, with how many reruns each ([[cid, reruns], ...] as JSON text): what a
# round of claims needs of every new trial, read without the entries' text
TASK_IDS = "combination_reruns"


def task_attrs(entries: list[dict]) -> dict:
    """The user attrs of a task's trial: its entries' text, and which combinations they are."""
    return {TASK_ENTRIES: task_text(entries),
            TASK_IDS: json.dumps([[e["combination"], len(e["reruns"])] for e in entries], separators=(",", ":"))}


def task_text(entries: list[dict]) -> str:
    """A task's entries as the JSON text its trial keeps (read back by task_entries).

    The names of the hyperparameters and of the rows' fields are written
    once for the task and each entry holds their values, which halves the
    text; entries whose rows differ in their fields (a grown combination's
    older reruns) are written as they are.
    """
    params = list(entries[0]["params"])
    fields = list(entries[0]["reruns"][0]) if entries[0]["reruns"] else []
    if any(list(e["params"]) != params or any(list(row) != fields for row in e["reruns"]) for e in entries):
        return json.dumps({"entries": entries}, separators=(",", ":"))
    packed = [{**e, "params": list(e["params"].values()), "reruns": [list(row.values()) for row in e["reruns"]]}
              for e in entries]
    return json.dumps({"params": params, "reruns": fields, "entries": packed}, separators=(",", ":"))


def task_entries(trial: FrozenTrial) -> list[dict]:
    """A task's entries, each as a trial of its own holds its user attrs."""
    return read_task_text(trial.user_attrs[TASK_ENTRIES])


def read_task_text(text: str) -> list[dict]:
    """The entries of a task_text."""
    task = json.loads(text)
    if "params" not in task:
        return task["entries"]
    params, fields = task["params"], task["reruns"]
    return [{**e, "params": dict(zip(params, e["params"])), "reruns": [dict(zip(fields, row)) for row in e["reruns"]]}
            for e in task["entries"]]


def finished_in(trial: FrozenTrial, light: bool = False) -> list[tuple[str, Finished]]:
    """(combination id, Finished) of each combination a finished trial records (`light`: without `attrs`).

    A planned sweep records each finished task as one trial whose
    "combinations" user attr lists its combinations' entries (one record
    per task instead of one per combination: on a big grid of small
    trainings, the records were most of the main process's work and
    memory); a trial of its own holds one combination in its user attrs.
    Light records of a task are read from its TASK_IDS, without its text.
    """
    if light and TASK_IDS in trial.user_attrs:
        return [(cid, Finished(trial, i, reruns))
                for i, (cid, reruns) in enumerate(json.loads(trial.user_attrs[TASK_IDS]))]
    if TASK_ENTRIES in trial.user_attrs:
        return [(entry["combination"], Finished(trial, i, len(entry.get("reruns", ())), None if light else entry))
                for i, entry in enumerate(task_entries(trial))]
    cid = trial.user_attrs.get("combination")
    return [] if cid is None else [(cid, Finished(trial, None, len(trial.user_attrs.get("reruns", ()))))]


@dataclass
class Claim:
    trial_id: int | None            # the RUNNING trial holding it; None: held in the heartbeat record
    combination: dict
    cid: str
    since: float = field(default_factory=time.time)
    earlier: Finished | None = None  # a finished record with some of its reruns (a grown RERUN_COUNT)


class Listed:
    """Candidates given as a list of (cid, combination) pairs, read as the ledger reads a plan's."""

    def __init__(self, pairs: list[tuple[str, dict]]) -> None:
        self.ids = [cid for cid, _ in pairs]
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def combination(self, k: int) -> dict:
        return self.pairs[k][1]


@dataclass
class Status:
    """What the study holds, per combination id."""
    records: dict = field(default_factory=dict)   # cid -> Finished (its trial COMPLETE or PRUNED)
    failed: dict = field(default_factory=dict)    # cid -> FAIL trial with an error (failed in this run)
    claimed: dict = field(default_factory=dict)   # cid -> RUNNING trial of a live process (this one included)
    claimants: int = 1                            # live processes, this one included
    live_cpus: int = 1                            # their CPU_COUNTs added up
    held_here: int = 0                            # combinations this process holds and has not recorded
    earlier: dict = field(default_factory=dict)   # cid -> Finished with fewer reruns than wanted

    def taken(self, cid: str) -> bool:
        return cid in self.records or cid in self.failed or cid in self.claimed

    @property
    def used(self) -> int:
        return len(set(self.records) | set(self.failed) | set(self.claimed))


def fair_share(status: Status, free: int, cpus: int, sharing: bool) -> int:
    """How many of `free` combinations a process with `cpus` workers may claim now.

    Its CPU_COUNT's part of the work nobody has finished (free, and held
    by live processes), less what it holds already. Alone on a shared
    database, at most half of what is free: a process joining later
    then finds some. At least one while anything is free.
    """
    unfinished = free + len(status.claimed)
    share = -(-unfinished * cpus // max(status.live_cpus, cpus)) - status.held_here
    if sharing and status.claimants == 1:
        share = min(share, -(-free // 2))
    return max(1, share) if free else 0


def claim_trial(template: dict, state, value, since: float, until: float | None, user_attrs: dict,
                claimant: str) -> FrozenTrial:
    """A claim's trial as Optuna stores it (`template`: its params, distributions and user attrs), built
    directly: optuna.trial.create_trial checks every parameter against its distribution again, which cost
    more than writing the record."""
    return FrozenTrial(number=-1, state=state, value=value, datetime_start=datetime.datetime.fromtimestamp(since),
                       datetime_complete=None if until is None else datetime.datetime.fromtimestamp(until),
                       params=template["params"], distributions=template["distributions"],
                       user_attrs={**template["user_attrs"], **user_attrs}, system_attrs={"claimant": claimant},
                       intermediate_values={}, trial_id=-1)


def reruns_in(record: Finished | None) -> float:
    """How many reruns a finished record holds; a pruned one counts as all (the pruner stopped it for good)."""
    if record is None:
        return 0
    if record.state == TrialState.PRUNED:
        return math.inf
    return record.reruns


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child that nobody has reaped yet still answers kill(0): it is a zombie
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
