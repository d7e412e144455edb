"""Turn price histories into a sweep's data files: dated windows and labels, a train/test split, a data card.

    python prepare.py prices/*.csv --out my_data                 # one CSV per ticker (Yahoo Finance's columns)
    python prepare.py prices.csv --out my_data --features closes,volume,returns
    python prepare.py --help

Then point TRAIN_CSV, TEST_CSV and LATEST_CSV at my_data/ in a config.
"""
import sys

from inputs.prepare import prepare

if __name__ == "__main__":
    sys.exit(prepare())
