"""Run a hyperparameter sweep and rank every combination by the significance of its precision.

    python search.py                                   # the sweep described in config.py
    python search.py --config overnight.py --cpu-count 8
    python search.py --help

Results go to RESULTS_DIR/<run name>/ (the run name defaults to the config
file's name): ranking.csv, reruns.csv, errors.csv, summary.json with the
verdict, report.md, a copy of the config, and the Optuna study
(study.journal). Running the same command again resumes.

    python search.py --config big.py --storage postgresql://sweep@db-host/sweeps

on several machines shares one study in the database: each machine trains
its own share with its own CPU_COUNT, and every combination is trained once.
"""
import sys

from sweep.commands import search

if __name__ == "__main__":
    sys.exit(search())
