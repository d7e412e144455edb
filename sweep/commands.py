"""The command line: `python search.py`, `python evaluate.py`, and `precision-sweep COMMAND` once installed.

    precision-sweep search [--config FILE] ...        run a sweep (python search.py)
    precision-sweep evaluate RUN_DIR                  rank a run again from its study (python evaluate.py)
    precision-sweep compare RUN_A RUN_B               how two runs' rankings and configs differ
    precision-sweep predict RUN_DIR [LATEST_CSV]      score the latest data with the winner
    precision-sweep prepare PRICES... --out DIR       price histories into windows and labels (python prepare.py)

Every command exits with 0 when it did its work, 2 on bad input (a config or
data file, a command-line mistake: one paragraph naming what is wrong and
what would be valid, no traceback), 1 when every combination failed, and
130 after Ctrl-C.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
import warnings
from dataclasses import replace
from pathlib import Path

from inputs.atomic import read_json
from inputs.errors import ConfigError, DataError
from inputs.prepare import prepare
from inputs.settings import load_settings
from ranking.compare import CompareError, compare_runs, print_comparison
from sweep.pool import stop_workers
from sweep.predict import predict_latest
from sweep.rerank import rank_study
from sweep.run import Sweep


def search_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train every hyperparameter combination of a config, rank them by how unlikely their "
                    "precision is under luck (a block permutation test on the validation tail of the train file, "
                    "or on the test file with SELECTION = 'test'), and test the winner once on the test file. "
                    "Run it again to resume a stopped run, or to grow a finished one (more values, a larger "
                    "NUMBER_OF_COMBINATIONS_TO_TRY, a higher RERUN_COUNT): only what is new is trained.")
    parser.add_argument("--config", default="config.py",
                        help="config file to run (default: config.py); paths in it are relative to its folder")
    parser.add_argument("--cpu-count", type=int, metavar="N",
                        help="worker processes for this run (overrides CPU_COUNT)")
    parser.add_argument("--rerun-count", type=int, metavar="N",
                        help="trainings per combination for this run (overrides RERUN_COUNT)")
    parser.add_argument("--results", metavar="DIR",
                        help="folder under which this run's folder is written (overrides RESULTS_DIR)")
    parser.add_argument("--name", help="this run's folder name (default: the config file's name without .py)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.add_argument("--storage", metavar="URL",
                        help="share the sweep through this database (e.g. postgresql://user:password@host/db): "
                             "the same command on several machines splits the work (default: the run "
                             "folder's study.journal)")
    parser.add_argument("--study", metavar="NAME",
                        help="the study's name in --storage (default: the run name)")
    return parser


def search(argv=None, prog: str | None = None) -> int:
    """Run the sweep a config describes; the exit code."""
    args = search_parser(prog).parse_args(argv)
    if args.study is not None and args.storage is None:
        return fail(ConfigError("--study names a study in a shared database; give the database with "
                                "--storage URL as well (without --storage the run folder's journal is used, "
                                "and --name picks the folder)."))
    try:
        settings = load_settings(args.config, {"CPU_COUNT": args.cpu_count, "RERUN_COUNT": args.rerun_count})
        if args.results is not None:
            settings = replace(settings, results_dir=Path(args.results).expanduser().resolve())
        for note in settings.warnings:
            print(f"warning: {note}", file=sys.stderr)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sweep = Sweep(settings, run_name=args.name or Path(args.config).stem, progress=not args.no_progress,
                          storage_url=args.storage, study_name=args.study)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        return sweep.run()
    except (ConfigError, DataError) as err:
        return fail(err)
    finally:
        stop_workers()


def evaluate_parser(prog: str | None = None, script: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Rank a finished or running sweep again from its study: ranking.csv, reruns.csv, "
                    "summary.json (with the verdict) and the report."
                    + (" Or compare two sweeps with --compare, or score the latest data with --predict." if script
                       else ""))
    parser.add_argument("run", nargs="?", help="the run's results folder, e.g. results/config")
    parser.add_argument("--storage", metavar="URL",
                        help="rank a study shared through this database (with --study) instead of a run folder")
    parser.add_argument("--study", metavar="NAME", help="the study's name in --storage")
    parser.add_argument("--results", metavar="DIR", default="results",
                        help="with --storage: write the ranking to DIR/NAME (default: results)")
    parser.add_argument("--top", type=int, default=10, help="how many rows to print (default 10)")
    if script:
        parser.add_argument("--predict", nargs="?", const="", metavar="LATEST_CSV",
                            help="score a latest-data file (default: the run's LATEST_CSV) with the best "
                                 "combination's reruns as an ensemble; writes predictions.csv and winner.npz")
        parser.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                            help="compare two run folders' ranking.csv and config.py instead of ranking one")
    return parser


def evaluate(argv=None, prog: str | None = None, script: bool = False) -> int:
    """`python evaluate.py` (script: with --compare and --predict) or `precision-sweep evaluate`."""
    parser = evaluate_parser(prog, script)
    args = parser.parse_args(argv)
    compare, latest = getattr(args, "compare", None), getattr(args, "predict", None)
    if args.storage is not None or args.study is not None:
        if args.storage is None or args.study is None or args.run is not None or compare is not None:
            parser.error("rank a shared study with both --storage URL and --study NAME (and no run folder)")
        return rank_study(args.storage, args.study,
                          Path(args.results) / args.study.replace("/", "_").replace(":", "_"), args.top)
    if compare is not None and args.run is not None:
        parser.error("give either a run folder to rank or --compare RUN_A RUN_B, not both")
    if compare is not None:
        return compare_two(*compare)
    if args.run is None:
        parser.error("give a run folder to rank (e.g. results/config)"
                     + (" or --compare RUN_A RUN_B" if script else ""))
    run = Path(args.run)
    if latest is not None:
        return predict_run(run, latest, args.top)
    if not (run / "study.journal").is_file():
        return fail(f"{run / 'study.journal'} does not exist. Pass a run folder written by search.py, "
                    f"such as results/config.")
    return rank_study(None, "sweep", run, args.top)


def compare(argv=None, prog: str | None = None) -> int:
    """`precision-sweep compare RUN_A RUN_B`."""
    parser = argparse.ArgumentParser(prog=prog, description="Compare two run folders: rank agreement, the "
                                                            "biggest rank changes, and how their configs differ.")
    parser.add_argument("run_a", help="the earlier run's folder, e.g. results/last_week")
    parser.add_argument("run_b", help="the later run's folder, e.g. results/config")
    args = parser.parse_args(argv)
    return compare_two(args.run_a, args.run_b)


def compare_two(run_a: str, run_b: str) -> int:
    try:
        result = compare_runs(Path(run_a), Path(run_b))
    except CompareError as err:
        return fail(err)
    print_comparison(result)
    return 0


def predict(argv=None, prog: str | None = None) -> int:
    """`precision-sweep predict RUN_DIR [LATEST_CSV]`."""
    parser = argparse.ArgumentParser(prog=prog, description="Score a latest-data file with a run's best "
                                                            "combination (its reruns as an ensemble); writes "
                                                            "predictions.csv and winner.npz into the run folder.")
    parser.add_argument("run", help="the run's results folder, e.g. results/config")
    parser.add_argument("latest", nargs="?", default="", help="the latest-data file (default: the run's LATEST_CSV)")
    parser.add_argument("--top", type=int, default=10, help="how many rows to print (default 10)")
    args = parser.parse_args(argv)
    return predict_run(Path(args.run), args.latest, args.top)


def predict_run(run: Path, latest: str, top: int) -> int:
    latest_path = latest or read_json(run / "run.json").get("LATEST_CSV")
    if not latest_path:
        return fail(f"no latest-data file given and {run / 'run.json'} does not name one; pass it as "
                    f"--predict path/to/latest.csv.")
    try:
        predict_latest(run, Path(latest_path), top)
    except DataError as err:
        return fail(err)
    finally:
        stop_workers()
    return 0


def fail(err) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 2


COMMANDS = {"search": search, "evaluate": evaluate, "compare": compare, "predict": predict, "prepare": prepare}


def main(argv=None) -> int:
    """`precision-sweep COMMAND ...` (installed with `pip install .`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage:\n" + textwrap.dedent(__doc__.split("\n\n")[1]))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command {argv[0]!r}; the commands are {', '.join(COMMANDS)}.", file=sys.stderr)
            return 2
        return 0 if argv else 2
    return COMMANDS[argv[0]](argv[1:], prog=f"precision-sweep {argv[0]}")
