"""Rank a sweep again from its study, compare two sweeps, or score the latest data with the winner.

    python evaluate.py results/config          # rank a finished or running sweep again, and print it
    python evaluate.py --compare results/last_week results/config
    python evaluate.py results/config --predict example_data/latest.csv
    python evaluate.py --storage postgresql://user@host/db --study NAME   # a shared study -> results/NAME
"""
import sys

from sweep.commands import evaluate

if __name__ == "__main__":
    sys.exit(evaluate(script=True))
