"""From finished trainings to a verdict: p-values, corrections, tables, plots and the report. No torch.

    scores        one training's precision and its independent-rows binomial p-value (D.AT's test)
    significance  the block permutation test, the family-wise p-value, Benjamini-Hochberg
    table         ranking.csv and confirmation.csv as tables
    verdict       confirmed / not confirmed / not tested, in plain words
    summary       summary.json
    values, plots, report    values.csv, the four plots, report.md
    compare       how two runs' rankings and configs differ
"""
