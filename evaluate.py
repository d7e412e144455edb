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
from significance import bh_q_values, holm_adjusted

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


def score_reruns(reruns: pd.DataFrame, test: str = "binomial") -> pd.DataFrame:
    """Add precision, p_value and positive_rate columns to per-training counts (see score_counts)."""
    out = reruns.copy()
    hopeless = out["diverged"].astype(bool)
    if "status" in out:
        hopeless |= out["status"] == "pruned"
    out["precision"], out["p_value"], out["positive_rate"] = score_counts(
        out["tp"], out["fp"], out["tn"], out["fn"], hopeless, test)
    return out


def rank_combinations(reruns: pd.DataFrame, false_discovery_rate: float = 0.05) -> pd.DataFrame:
    """One row per combination: medians over its reruns, sorted by p_value.

    Ties (equal median p-values, common when several combinations predict
    nothing and get p = 1) are broken by higher median precision, then more
    true positives (more evidence), then the combination id, so the order is
    the same on every run.
    """
    if reruns.empty:
        return pd.DataFrame(columns=["rank", "combination", *HYPERPARAMETERS, "p_value", "p_value_holm", "q_value",
                                     "significant", "precision", "positive_rate", *COUNT_COLUMNS, "reruns",
                                     "diverged", "seconds", "status", "epochs"])
    grouped = reruns.groupby("combination", sort=False)
    table = grouped[list(HYPERPARAMETERS)].first()
    medians = grouped[["p_value", "precision", *COUNT_COLUMNS]].median()
    table = table.join(medians)
    table["positive_rate"] = grouped["positive_rate"].first()
    table["reruns"] = grouped.size()
    table["diverged"] = grouped["diverged"].sum().astype(int)
    table["seconds"] = grouped["seconds"].sum()
    if "status" in reruns:  # "pruned" when the pruner stopped it; older run folders have no such column
        pruned = (reruns["status"] == "pruned").groupby(reruns["combination"], sort=False).any()
        table["status"] = np.where(pruned.loc[table.index], "pruned", "completed")
        table["epochs"] = grouped["epochs"].median()
    table = table.reset_index()
    table = table.sort_values(["p_value", "precision", "tp", "combination"],
                              ascending=[True, False, False, True], na_position="last", kind="mergesort")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    # corrections across every combination of the run, on the median p-values
    at = table.columns.get_loc("p_value") + 1
    table.insert(at, "p_value_holm", holm_adjusted(table["p_value"]))
    table.insert(at + 1, "q_value", bh_q_values(table["p_value"]))
    table.insert(at + 2, "significant", table["q_value"] <= false_discovery_rate)
    return table.reset_index(drop=True)


def label_sources(ranking, selection: str, confirmation):
    """Say which data set each p-value comes from: p_value_validation, p_value_test, ranked_on."""
    ranking = ranking.copy()
    at = ranking.columns.get_loc("p_value") + 1
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


def _run_false_discovery_rate(run: Path) -> float:
    """FALSE_DISCOVERY_RATE of the config copy the run saved (its paths need not exist here)."""
    from settings import ConfigError, load_settings
    try:
        return load_settings(run / "config.py").false_discovery_rate
    except ConfigError:
        return 0.05


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Re-rank a finished or running sweep from its reruns.csv, or compare two sweeps "
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
        return _rank_study(args.storage, args.study, Path(args.results), args.top)
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
    path = Path(args.run) / "reruns.csv"
    if not path.is_file():
        print(f"error: {path} does not exist. Pass a run folder written by search.py, "
              f"such as results/config.", file=sys.stderr)
        return 2
    from results import read_reruns, write_csv  # noqa: E402 (keeps `import evaluate` light)
    reruns = read_reruns(path)
    reruns["positive_rate"] = (reruns["tp"] + reruns["fn"]) / reruns[COUNT_COLUMNS].sum(axis=1)
    run = Path(args.run)
    if args.predict is not None:
        return _predict(run, args.predict, args.top)
    ranking = rank_combinations(reruns, _run_false_discovery_rate(run))
    confirmation = pd.read_csv(run / "confirmation.csv", dtype={"combination": str}) \
        if (run / "confirmation.csv").is_file() else None
    ranking = label_sources(ranking, _run_setting(run, "SELECTION", "test"), confirmation)
    write_csv(ranking, run / "ranking.csv")
    print(f"{len(ranking)} combinations from {path}")
    print_ranking(ranking, args.top)
    from report import write_report
    write_report(run, ranking, reruns)
    return 0


def _rank_study(url: str, name: str, results: Path, top: int) -> int:
    """Write ranking.csv, reruns.csv, errors.csv and the report of a shared study, from any machine."""
    from types import SimpleNamespace
    from settings import ConfigError
    from study import Ledger, open_storage, open_study
    from sweep import Recorder
    try:
        storage = open_storage(url, results)
        study = open_study(storage, name, None, create=False)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run = study.user_attrs.get("run", {})
    settings = SimpleNamespace(false_discovery_rate=run.get("FALSE_DISCOVERY_RATE", 0.05),
                               selection=run.get("SELECTION", "test"), p_value_test=run.get("P_VALUE_TEST", "binomial"))
    run_dir = results / name.replace("/", "_").replace(":", "_")
    run_dir.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(run_dir, study, settings, fold_rows=[])
    status, trials = Ledger(storage, study, heartbeat_timeout=60, beat=False).refresh()
    recorder.sync(trials)
    if not recorder.rows:
        print(f"error: the study {name!r} has no finished combination yet.", file=sys.stderr)
        return 2
    try:
        confirmed = open_study(storage, f"{name}:confirmation", None, create=False)
        rows = [row for t in confirmed.get_trials(deepcopy=False) if t.state.name == "COMPLETE"
                for row in t.user_attrs.get("reruns", [])]
        recorder.set_confirmation(rows)
    except ConfigError:
        pass  # no confirmation step (SELECTION = "test", or it has not started)
    recorder.flush(force=True)
    ranking = recorder.ranking
    running = len(status.claimed)
    print(f"{len(ranking)} combinations from study {name!r}" +
          (f" ({running} still being trained by other processes)" if running else ""))
    print_ranking(ranking, top)
    from report import write_report
    from results import read_reruns
    write_report(run_dir, ranking, read_reruns(run_dir / "reruns.csv"), study)
    print(f"Ranking and report: {run_dir}")
    return 0


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
