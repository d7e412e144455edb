"""What a sweep starts from: the config, the search space and the data files, checked before anything trains.

    settings         the config file: defaults, validation, the resolved Settings
    hyperparameters  the hyperparameters, their defaults and valid values
    space            ranges for the model-based samplers (loguniform, uniform, intrange)
    files, scan      labelled and latest-data files (D.AT rows or the dated form), line by line when bad
    scaling          standardization fitted on training rows only
    splits           chronological splits, purged at every boundary
    prices, windows, prepare    price histories into dated windows and labels (prepare.py), with a data card
    atomic           every file written to a temporary name and renamed: never half a file
    errors           ConfigError and DataError: one paragraph for the user, exit code 2
"""
