"""Score trainings by the significance of their precision, and rank combinations.

    python evaluate.py results/config          # re-rank and print a finished or running sweep
    python evaluate.py --compare results/last_week results/config
    python evaluate.py results/config --predict example_data/latest.csv
    python evaluate.py --storage postgresql://user:pw@host/db --study NAME   # a shared study -> results/NAME

A training's precision tp / (tp + fp) is compared with what guessing would
give: if the model had no skill, each of its tp + fp positive predictions
would be right with probability equal to the evaluation set's positive rate,
so tp ~ Binomial(tp + fp, positive rate). The p-value is P(X >= tp) under
that law, one-sided: how often luck alone would do at least this well.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

import preload
from settings import HYPERPARAMETERS
from significance import bh_q_values, family_wise_p_values

COUNT_COLUMNS = ["tp", "fp", "tn", "fn"]


def binomial_precision_p_value(tp, fp, positive_rate):
    """P(X >= tp), X ~ Binomial(tp + fp, positive_rate); 1.0 where nothing was predicted positive.

    The survival function is evaluated directly (not 1 - cdf), so p-values
    of 1e-30 keep their digits instead of rounding to 0.
    """
    tp, fp = np.asarray(tp).astype(np.int64), np.asarray(fp).astype(np.int64)
    n = tp + fp
    # bdtrc(k, n, r) = P(X > k): the same regularized incomplete beta as
    # scipy.stats.binom.sf, without importing scipy.stats (1.3 s per process)
    p = special.bdtrc(np.maximum(tp - 1, 0), n, positive_rate)
    return np.where(tp == 0, 1.0, p)  # tp = 0 includes "nothing predicted positive"


def fisher_precision_p_value(tp, fp, tn, fn):
    """One-sided Fisher's exact test on [[tp, fp], [fn, tn]] (alternative 'greater').

    Written as the hypergeometric tail so that it runs on whole columns at
    once; it equals scipy.stats.fisher_exact(table, alternative="greater").
    """
    preload.wait()  # never import scipy.stats while preload.py's thread is importing it
    from scipy import stats
    tp, fp, tn, fn = map(np.asarray, (tp, fp, tn, fn))
    total, positives, predicted = tp + fp + tn + fn, tp + fn, tp + fp
    p = stats.hypergeom.sf(tp - 1, total, positives, predicted)
    return np.where(predicted == 0, 1.0, np.clip(p, 0.0, 1.0))


def score_counts(tp, fp, tn, fn, hopeless, test: str = "binomial"):
    """(precision, p_value, positive_rate) arrays for per-training counts; hopeless trainings get p = 1.

    A training is hopeless when it diverged or the pruner stopped it: no
    evidence of skill, whatever its counts.
    """
    tp, fp, tn, fn = (np.asarray(c, dtype=np.int64) for c in (tp, fp, tn, fn))
    predicted = tp + fp
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), np.nan)
    positive_rate = (tp + fn) / (tp + fp + tn + fn)
    if test == "fisher":
        p = fisher_precision_p_value(tp, fp, tn, fn)
    else:
        p = binomial_precision_p_value(tp, fp, positive_rate)
    return precision, np.where(np.asarray(hopeless, dtype=bool), 1.0, p), positive_rate


RANKING_COLUMNS = ["rank", "combination", *HYPERPARAMETERS, "p_value", "q_value", "significant_fdr",
                   "p_value_family_wise", "p_value_independent_rows", "precision", "positive_rate",
                   *COUNT_COLUMNS, "reruns", "diverged", "seconds", "status", "epochs"]


def rank_combinations(reruns: pd.DataFrame, counts: dict, orders: int,
                      false_discovery_rate: float = 0.05) -> pd.DataFrame:
    """One row per combination, sorted by its block permutation p-value.

    reruns: one row per training (reruns.csv). counts: combination -> its
    row of PermutationTest.counts (None when pruned: p = 1); orders: how many
    label orders the test has. The counts are the reruns' own, summed over
    those that did not diverge, and the precision is tp / (tp + fp) of those
    sums (empty when nothing was predicted). Ties (equal p-values, common at
    the smallest p-value the test can give and at p = 1) are broken by the
    independent-rows p-value, then higher precision, then more true
    positives, then the combination id, so the order is the same on every run.
    """
    if reruns.empty:
        return pd.DataFrame(columns=RANKING_COLUMNS)
    grouped = reruns.groupby("combination", sort=False)
    table = grouped[list(HYPERPARAMETERS)].first()
    diverged = reruns["diverged"].astype(bool)
    pooled = reruns[~diverged].groupby("combination")[COUNT_COLUMNS].sum()
    pooled = pooled.reindex(table.index, fill_value=0).astype(np.int64)
    matrix = np.stack([np.full(orders, orders) if counts.get(cid) is None else counts[cid] for cid in table.index])
    table["p_value"] = matrix[:, 0] / orders
    table["q_value"] = bh_q_values(table["p_value"].to_numpy())
    table["significant_fdr"] = table["q_value"] <= false_discovery_rate
    table["p_value_family_wise"] = family_wise_p_values(matrix)
    table["p_value_independent_rows"] = grouped["p_value_independent_rows"].median()
    predicted = pooled["tp"] + pooled["fp"]
    table["precision"] = (pooled["tp"] / predicted.where(predicted > 0)).astype(float)
    table["positive_rate"] = grouped["positive_rate"].first()
    table[COUNT_COLUMNS] = pooled
    table["reruns"] = grouped.size()
    table["diverged"] = diverged.groupby(reruns["combination"], sort=False).sum().astype(int)
    table["seconds"] = grouped["seconds"].sum()
    if "status" in reruns:  # "pruned" when the pruner stopped it
        pruned = (reruns["status"] == "pruned").groupby(reruns["combination"], sort=False).any()
        table["status"] = np.where(pruned.loc[table.index], "pruned", "completed")
        table["epochs"] = grouped["epochs"].median()
    table = table.reset_index()
    table = table.sort_values(["p_value", "p_value_independent_rows", "precision", "tp", "combination"],
                              ascending=[True, True, False, False, True], na_position="last", kind="mergesort")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table.reindex(columns=[c for c in RANKING_COLUMNS if c in table]).reset_index(drop=True)


def label_sources(ranking, selection: str, confirmation):
    """Say which data set each p-value comes from: ranked_on, p_value_validation, p_value_test."""
    ranking = ranking.copy()
    at = ranking.columns.get_loc("p_value_family_wise") + 1
    ranking.insert(at, "ranked_on", selection)
    if selection == "test":
        ranking.insert(at + 1, "p_value_validation", np.nan)
        ranking.insert(at + 2, "p_value_test", ranking["p_value"])
    else:
        confirmed = {} if confirmation is None else dict(zip(confirmation["combination"], confirmation["p_value_test"]))
        ranking.insert(at + 1, "p_value_validation", ranking["p_value"])
        ranking.insert(at + 2, "p_value_test", ranking["combination"].map(confirmed))
    return ranking


def print_ranking(ranking: pd.DataFrame, top: int = 10, file=sys.stdout) -> None:
    varying = [h for h in HYPERPARAMETERS if h in ranking and ranking[h].astype(str).nunique() > 1]
    columns = ["rank", "combination", *varying, "p_value", "q_value", "precision", "tp", "fp"]
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(ranking[columns].head(top).to_string(index=False), file=file)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Rank a finished or running sweep again from its study, or compare two sweeps "
                    "(rank agreement, biggest rank changes, config differences) with --compare.")
    parser.add_argument("run", nargs="?", help="the run's results folder, e.g. results/config")
    parser.add_argument("--storage", metavar="URL",
                        help="rank a study shared through this database (with --study) instead of a run folder")
    parser.add_argument("--study", metavar="NAME", help="the study's name in --storage")
    parser.add_argument("--results", metavar="DIR", default="results",
                        help="with --storage: write the ranking to DIR/NAME (default: results)")
    parser.add_argument("--top", type=int, default=10, help="how many rows to print (default 10)")
    parser.add_argument("--predict", nargs="?", const="", metavar="LATEST_CSV",
                        help="score a latest-data file (default: the run's LATEST_CSV) with the best "
                             "combination's reruns as an ensemble; writes predictions.csv and winner.pt")
    parser.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                        help="compare two run folders' ranking.csv and config.py instead of re-ranking one")
    args = parser.parse_args(argv)
    if args.storage is not None or args.study is not None:
        if args.storage is None or args.study is None or args.run is not None or args.compare is not None:
            parser.error("rank a shared study with both --storage URL and --study NAME (and no run folder)")
        return _rank_study(args.storage, args.study,
                           Path(args.results) / args.study.replace("/", "_").replace(":", "_"), args.top)
    if args.compare is not None and args.run is not None:
        parser.error("give either a run folder to re-rank or --compare RUN_A RUN_B, not both")
    if args.compare is None and args.run is None:
        parser.error("give a run folder to re-rank (e.g. results/config) or --compare RUN_A RUN_B")
    if args.compare is not None:
        from compare import CompareError, compare_runs, print_comparison
        try:
            result = compare_runs(Path(args.compare[0]), Path(args.compare[1]))
        except CompareError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print_comparison(result)
        return 0
    run = Path(args.run)
    if args.predict is not None:
        return _predict(run, args.predict, args.top)
    if not (run / "study.journal").is_file():
        print(f"error: {run / 'study.journal'} does not exist. Pass a run folder written by search.py, "
              f"such as results/config.", file=sys.stderr)
        return 2
    return _rank_study(None, "sweep", run, args.top)


def _rank_study(url: str | None, name: str, run_dir: Path, top: int) -> int:
    """Rank a study again from its record: ranking.csv, reruns.csv, errors.csv, summary.json and the report.

    The run folder's own journal (url None), or a study shared through a
    database, from any machine. The ranked rows are read again from the data
    files the run names, which must be the ones it was run on.
    """
    from data import DataError
    from settings import ConfigError, settings_from_record
    from study import Ledger, open_storage, open_study
    from sweep import (Recorder, confirmation_rows, evaluation_folds, file_digest, permutation_counts,
                       permutation_test, rows_from_study)
    from summary import write_summary
    from verdict import headline
    try:
        storage = open_storage(url, run_dir)
        study = open_study(storage, name, None, create=False)
        settings = settings_from_record(study.user_attrs.get("run") or _run_record(run_dir), run_dir.parent)
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
    recorder = Recorder(run_dir, study, settings, [], test)
    status, trials = Ledger(storage, study, heartbeat_timeout=60, beat=False).refresh()
    recorder.sync(trials)
    if not recorder.rows:
        print(f"error: the study {name!r} has no finished combination yet.", file=sys.stderr)
        return 2
    tested = None
    try:
        confirmed = open_study(storage, "confirmation" if url is None else f"{name}:confirmation", None,
                               create=False)
        records = [rows_from_study(t.user_attrs) for t in confirmed.get_trials(deepcopy=False)
                   if t.state.name == "COMPLETE" and "reruns" in t.user_attrs]
        if records:
            _, test_rows, split = confirmation_rows(settings)
            tested = (permutation_test(settings, test_rows), split)
            recorder.set_confirmation(tested[0], [row for rows, _ in records for row in rows],
                                      {rows[0]["combination"]: permutation_counts(tested[0], rows, bits)
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
    timing = _previous_summary(run_dir).get("sweep")
    result = write_summary(run_dir, settings, ranking, recorder.confirmation, (test, splits), tested,
                           {"completed": len(ranking) - pruned, "pruned": pruned, "failed": failed}, timing)
    from report import write_report
    write_report(run_dir, ranking, study)
    print(f"Ranking and report: {run_dir}")
    print(f"\n{headline(result)}\n{result.reason}")
    return 0


def _run_record(run_dir: Path) -> dict:
    import json
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def _previous_summary(run_dir: Path) -> dict:
    import json
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def _run_setting(run: Path, key: str, default):
    import json
    try:
        return json.loads((run / "run.json").read_text())[key]
    except (OSError, ValueError, KeyError):
        return default


def _predict(run: Path, latest: str, top: int) -> int:
    from data import DataError
    from predict import predict_latest
    latest_path = Path(latest) if latest else _run_setting(run, "LATEST_CSV", None)
    if not latest_path or not (run / "run.json").is_file():
        print(f"error: no latest-data file given and {run / 'run.json'} does not name one; pass it as "
              f"--predict path/to/latest.csv.", file=sys.stderr)
        return 2
    try:
        predict_latest(run, Path(latest_path), top)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
