"""Rank a study again from its record: what `python evaluate.py RUN_DIR` (or `--storage URL --study NAME`) does.

The study holds every finished combination's reruns and their predictions,
so the ranking, the confirmation, summary.json and the report come out the
same as the sweep wrote them, from any machine that has the data files.
"""
from __future__ import annotations

import sys
from pathlib import Path

from optuna.trial import TrialState

from inputs.atomic import read_json
from inputs.errors import ConfigError, DataError
from inputs.settings import settings_from_record
from ranking.report import write_report
from ranking.summary import write_summary
from ranking.table import print_ranking
from ranking.verdict import headline
from records.claims import finished_in, reruns_in
from records.ledger import Ledger
from records.outage import StorageUnavailable, describe
from records.reruns import first_reruns
from records.storage import open_storage, open_study, redact
from records.view import PerCombination
from sweep.plan import Candidates
from sweep.recorder import Recorder
from sweep.rows import (
    confirmation_rows,
    evaluation_folds,
    file_digest,
    permutation_test,
)
from sweep.scoring import permutation_counts


def rank_study(url: str | None, name: str, run_dir: Path, top: int) -> int:
    """Rank a study again from its record: ranking.csv, reruns.csv, errors.csv, summary.json and the report.

    The run folder's own journal (url None), or a study shared through a
    database, from any machine. The ranked rows are read again from the data
    files the run names, which must be the ones it was run on.
    """
    try:
        storage = open_storage(url, run_dir)
        study = open_study(storage, name, None, create=False)
        settings = settings_from_record(study.user_attrs.get("run") or read_json(run_dir / "run.json"), run_dir.parent)
        digest = (study.user_attrs.get("fingerprint") or {}).get("TRAIN_CSV")
        if digest is not None and Path(settings.train_csv).is_file() and file_digest(settings.train_csv) != digest:
            raise DataError(f"The train file '{settings.train_csv}' has changed since this sweep ran: its rows "
                            f"are what the sweep was ranked on. Put back the file the sweep used.")
        _, evaluated, splits = evaluation_folds(settings)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir.mkdir(parents=True, exist_ok=True)
    test = permutation_test(settings, evaluated)
    # the combinations the latest config plans (a study keeps those of a wider earlier grid too)
    planned = set(Candidates(settings).ids) if settings.planned else None
    recorder = Recorder(run_dir, study, settings, [], test, storage.predictions, planned)
    try:  # a reader waits for no outage: it says so at once
        status, trials = Ledger(storage, study, heartbeat_timeout=60, beat=False, reruns=settings.rerun_count,
                                patience=0).refresh()
    except StorageUnavailable as err:
        print(f"error: the study's storage {redact(url) if url else run_dir / 'study.journal'} does not answer "
              f"({describe(err.error)}). Try again when it does.", file=sys.stderr)
        return 3
    try:
        recorder.sync(trials)
    except DataError as err:  # e.g. a journal copied without its predictions/
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not recorder.rows:
        print(f"error: the study {name!r} has no finished combination yet.", file=sys.stderr)
        return 2
    tested = None
    try:
        confirmed = open_study(storage, "confirmation" if url is None else f"{name}:confirmation", None,
                               create=False)
        confirmed_top = set(recorder.ranking["combination"].head(settings.confirm_top_k))
        records = {}
        for cid, t in (pair for trial in confirmed.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                       for pair in finished_in(trial)):
            if cid in confirmed_top and cid not in records and reruns_in(t) >= settings.rerun_count:
                records[cid] = first_reruns(t.user_attrs, settings.rerun_count)
        records = list(records.values())
        if records:
            _, test_rows, split = confirmation_rows(settings)
            tested = (permutation_test(settings, test_rows), split)
            recorder.set_confirmation(tested[0], [row for rows, _ in records for row in rows],
                                      {rows[0]["combination"]: permutation_counts(tested[0], rows, bits,
                                                                                  storage.predictions)
                                       for rows, bits in records})
    except ConfigError:
        pass  # no confirmation step (SELECTION = "test", or it has not started)
    except DataError as err:
        print(f"warning: the confirmation on the test file is left out: {err}", file=sys.stderr)
    recorder.flush(force=True)
    ranking = recorder.ranking
    running = len(status.claimed)
    print(f"{len(ranking)} combinations from study {name!r}" +
          (f" ({running} still being trained by other processes)" if running else ""))
    print_ranking(ranking, top)
    failed = sum(e["outcome"] == "failed" for e in recorder.errors)
    pruned = int((ranking["status"] == "pruned").sum())
    timing = read_json(run_dir / "summary.json").get("sweep")
    result = write_summary(run_dir, settings, ranking, recorder.confirmation, (test, splits), tested,
                           {"completed": len(ranking) - pruned, "pruned": pruned, "failed": failed}, timing)
    write_report(run_dir, ranking, PerCombination(study))
    print(f"Ranking and report: {run_dir}")
    print(f"\n{headline(result)}\n{result.reason}")
    return 0
