"""The sweep in the main process: plan the combinations, dispatch them to the workers, record, rank, confirm.

    plan      the grid or random draw, each combination's id and each training's seed
    tasks     trainings packed into fused tasks of one architecture, balanced over the workers
    rows      the rows each fold trains and evaluates on, saved for the workers; the run's fingerprint
    pool      the worker processes (they import torch; this process never does)
    samplers  Optuna's samplers and how a sampler's trial becomes a combination
    recorder  the results so far, from the study; ranking.csv and reruns.csv while it runs
    run       the loop: claim, train, record (Ctrl-C, dead workers, other processes)
    confirm   the top retrained and tested once on the test file
    finish    the end of the run: summary.json, the report, the verdict
    rerank    a study ranked again from its record (evaluate.py)
    predict   the winner scores the latest data (evaluate.py --predict)
    commands  the command line: search, evaluate, compare, predict
"""
import os

# The main process scores and records while the workers keep every core busy. numpy's and scipy's
# BLAS (OpenBLAS) would run each product on a thread per core and spin those threads between calls,
# taking that CPU from the workers: on a 20,000-combination grid of tiny models the main process
# spent 3 ms of CPU per combination instead of 0.7. One thread, set before numpy is first imported;
# the workers inherit it (they train with torch, which sets its own threads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
