"""The confirmation: the top of the validation ranking, retrained and tested once on the test file."""
from __future__ import annotations

import sys

from optuna.trial import TrialState

from inputs.errors import DataError
from records.reruns import first_reruns, stored_rows, with_earlier
from records.storage import open_study
from sweep.pool import Pool
from sweep.rows import (
    file_digest,
    permutation_test,
    prepare_confirmation_data,
    too_few_blocks,
)
from sweep.scoring import p_value_of, permutation_counts, trial_value


def confirm(sweep) -> int:
    """Retrain the top CONFIRM_TOP_K combinations on the train file and test them once on the test file.

    The same reruns with the same seeds as in the validation sweep, trained
    on the train file purged against the test file's first date; the test
    file's labels are read here for the first time (its form was checked
    before the sweep). Processes sharing the study
    share this step too (its own study, claimed the same way). Returns an
    exit code when the test file is unusable (the validation ranking is
    kept), else 0. `sweep` is the run's Sweep (sweep/run.py): its loop does
    the claiming, training and recording here as well.
    """
    settings, recorder = sweep.settings, sweep.recorder
    top = list(recorder.ranking["combination"].head(settings.confirm_top_k))
    try:
        data = prepare_confirmation_data(settings)
    except DataError as err:
        print(f"error: {err} The validation ranking is in {sweep.run_dir}.", file=sys.stderr)
        return 2
    test = permutation_test(settings, data["evaluated"])
    sweep.confirmation_split = data["split"]
    if test.smallest_p_value > settings.significance_level:
        print(f"warning: {too_few_blocks(test, 'test rows', settings.significance_level)}", file=sys.stderr)
    # a combination's confirmation does not depend on the others': one study keeps them all, so that a
    # grown sweep whose top changes trains only the newcomers (and only the missing reruns of a grown RERUN_COUNT)
    fingerprint = {**sweep.fingerprint, "TEST_CSV": file_digest(settings.test_csv)}
    name = "confirmation" if sweep.storage_url is None else f"{sweep.study_name}:confirmation"
    study = sweep.ledger.patience.call(lambda: open_study(sweep.storage, name, fingerprint))
    ledger = sweep.new_ledger(study)
    swept, _ = sweep.ledger.refresh()  # each top combination's hyperparameters, as the study records them
    by_id = {cid: swept.records[cid].user_attrs["params"] for cid in top}
    status, _ = ledger.refresh()
    new = [cid for cid in top if cid not in status.records]
    split = data["split"]
    purged = (f"the train file but the {split.purged} rows purged before {split.boundary}" if split.purged
              else "the whole train file")
    if new:
        kept = f" ({len(top) - len(new)} of them already confirmed and kept)" if len(new) < len(top) else ""
        print(f"Confirming the top {len(top)} combinations on {settings.test_csv}{kept}: retraining "
              f"{len(new)} on {purged}...", file=sys.stderr)
    else:
        print(f"The top {len(top)} combinations were already confirmed on {settings.test_csv}; kept.",
              file=sys.stderr)
    pool = Pool(settings.cpu_count, lambda t: sweep._payload(t, data["files"]))

    def claim():
        claims, status = ledger.claim_planned([(cid, by_id[cid]) for cid in top], len(top), recorder.trial_template)
        return claims, all(cid in status.records or cid in status.failed for cid in top) and not pool.pending

    predictions = ledger.storage.predictions

    def record(task, results):
        rows = recorder.scored_rows(results, {(t["combination"], t["rerun"]): t for t in task})
        packed = dict(zip([(r["combination"], r["rerun"]) for r in results],
                          predictions.put([r["predictions"] for r in results])))
        for cid, reruns in rows.items():
            claim = sweep.claims.pop(cid)
            reruns, bits = with_earlier(claim.earlier, reruns, [packed[cid, row["rerun"]] for row in reruns],
                                        settings.rerun_count)
            p = p_value_of(test, permutation_counts(test, reruns, bits, predictions))
            ledger.finish(claim, TrialState.COMPLETE, trial_value(p),
                          {"reruns": stored_rows(reruns, bits), "p_value": p})
        return 0

    try:
        sweep._drive(ledger, claim, record, pool)
    finally:
        ledger.leave()
    status, _ = ledger.refresh()
    confirmed = {cid: first_reruns(status.records[cid].user_attrs, settings.rerun_count)
                 for cid in top if cid in status.records}
    recorder.set_confirmation(test, [row for cid in top if cid in confirmed for row in confirmed[cid][0]],
                              {cid: permutation_counts(test, *confirmed[cid], predictions)
                               for cid in confirmed})
    recorder.flush(force=True)
    return 0
