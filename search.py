"""Run a hyperparameter sweep and rank every combination by the significance of its precision.

    python search.py                                   # the sweep described in config.py
    python search.py --config overnight.py --cpu-count 8
    python search.py --help

Results go to RESULTS_DIR/<run name>/ (the run name defaults to the config
file's name): ranking.csv, reruns.csv, errors.csv, a copy of the config, and
the Optuna study (study.journal). Running the same command again resumes.

    python search.py --config big.py --storage postgresql://sweep:pw@db-host/sweeps

on several machines shares one study in the database: each machine trains
its own share with its own CPU_COUNT, and every combination is trained once.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from settings import ConfigError, load_settings


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train every hyperparameter combination of a config, rank them by how unlikely their "
                    "precision is under luck (a block permutation test on the validation tail of the train file, "
                    "or on the test file with SELECTION = 'test'), and test the winner once on the test file.")
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
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.study is not None and args.storage is None:
        return _fail(ConfigError("--study names a study in a shared database; give the database with "
                                 "--storage URL as well (without --storage the run folder's journal is used, "
                                 "and --name picks the folder)."))
    overrides = {"CPU_COUNT": args.cpu_count, "RERUN_COUNT": args.rerun_count}
    try:
        settings = load_settings(args.config, overrides)
        if args.results is not None:
            settings = _with_results_dir(settings, args.results)
    except ConfigError as err:
        return _fail(err)
    for note in settings.warnings:
        print(f"warning: {note}", file=sys.stderr)

    # Before anything else: the workers' parent process spends ~1.7 s importing
    # torch, which then overlaps with the data loading and planning below.
    import worker
    worker.warm_up()
    from data import DataError
    from sweep import Sweep
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sweep = Sweep(settings, run_name=args.name or Path(args.config).stem,
                          progress=not args.no_progress, storage_url=args.storage, study_name=args.study)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        return sweep.run()
    except (ConfigError, DataError) as err:
        return _fail(err)
    finally:
        worker.stop_workers()


def _with_results_dir(settings, results: str):
    from dataclasses import replace
    return replace(settings, results_dir=Path(results).expanduser().resolve())


def _fail(err: Exception) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 2


def exit_without_teardown(code: int) -> None:
    """Exit once everything is written, skipping the interpreter's teardown of its modules.

    Freeing pandas, scipy, matplotlib and Optuna object by object took ~0.5 s
    after the last file was written. The exit handlers still run (they remove
    the temporary data folder and end the workers' parent process), and the
    output streams are flushed; nothing else is left to do.
    """
    import atexit
    import os
    import threading
    if any(t is not threading.main_thread() and t.is_alive() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)  # a thread is still at work (an interrupted run's pool): let the interpreter wait for it
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    import preload
    preload.defer_garbage_collection()
    exit_without_teardown(main())
