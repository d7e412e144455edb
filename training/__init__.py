"""The worker side: fused training of a task's members (torch). Only worker processes import it
(but seeds, numpy alone, which evaluate.py --predict imports too).

    worker   the process's entry: one torch thread; run_task and run_latest
    loop     train a task's members fused, count their predictions on the evaluation rows
    pruning  report each epoch's validation loss to the study, stop when the pruner says so
    latest   the winner's reruns as an ensemble, scoring the latest rows (evaluate.py --predict)
    seeds    each training's seed, from SEED, its combination and its rerun alone
"""
