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
