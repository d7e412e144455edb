"""The sweep to run: which hyperparameter values to try, how often, on which data.

    python search.py                      # runs this file
    python search.py --config mine.py     # runs another file written like this one

Plain Python. A config file only needs the settings it changes; anything left
out takes the default documented in the README (and in inputs/settings.py). Paths
are relative to this file's folder.
"""

# Each hyperparameter maps to the list of values to try; the sweep trains
# every combination of them (or a random subset, see below). Leave a
# hyperparameter out to fix it at its default.
hyperparameter_values = {
    "model": ["mlp"],                               # mlp, or lstm (reads the 30 closes as a sequence)
    "hidden_layers": [[2, 1, 0.5], [2, 3, 2, 1, 0.5]],  # widths as multiples of the input width: 30 -> 60, 30, 15
    "activation": ["leaky_relu", "tanh"],           # relu, leaky_relu, prelu, tanh, sigmoid, elu, gelu, silu, selu,
                                                    # softplus, mish
    "dropout": [0.0, 0.2],                          # fraction of hidden units dropped while training
    "learning_rate": [1e-3, 3e-4],                  # the knob that matters most; try a few decades
    "optimizer": ["adam", "rmsprop"],               # adam, adamw, sgd (momentum 0.9), rmsprop, adagrad, adamax
    "batch_size": [32],                             # smaller: noisier steps, slower epochs
    "max_epochs": [8],                              # passes over the training set
    "loss_function": ["bce"],                       # bce, mse, huber, smooth_l1 (all on the sigmoid output)
    "l1_regularization": [0.0],                     # pushes weights to exactly zero
    "l2_regularization": [0.0],                     # weight decay (decoupled for adamw)
    "weight_initialization": ["default"],           # default (torch's), xavier_uniform, xavier_normal,
                                                    # kaiming_uniform, kaiming_normal, orthogonal
    # "lstm_hidden_size": [16, 32],                 # LSTM only: units per LSTM layer
    # "lstm_num_layers": [1, 2],                    # LSTM only: stacked LSTM layers
}

# An overnight sweep on a many-core machine: 1,152 combinations. Uncomment
# to replace the demo grid above (and consider RERUN_COUNT = 5).
# hyperparameter_values = {
#     "hidden_layers": [[1], [2, 1, 0.5], [2, 3, 2, 1, 0.5], [4, 4, 2, 1]],
#     "activation": ["leaky_relu", "elu", "gelu", "tanh"],
#     "dropout": [0.0, 0.1, 0.2, 0.4],
#     "learning_rate": [3e-3, 1e-3, 3e-4, 1e-4],
#     "optimizer": ["adam", "adamw", "rmsprop"],
#     "l2_regularization": [0.0, 1e-4, 1e-3],
#     "max_epochs": [8],
# }

EXPLORE_ALL_COMBINATIONS = True      # True: the full grid. False: NUMBER_OF_COMBINATIONS_TO_TRY random ones
NUMBER_OF_COMBINATIONS_TO_TRY = 20   # random search budget; each combination is tried at most once
RERUN_COUNT = 3                      # trainings per combination, each with its own seed; their predictions are pooled
CPU_COUNT = None                     # worker processes; None uses every core
PREDICTION_THRESHOLD = 0.5           # predict "up" when the model's probability is at least this
SEED = 0                             # same SEED, same results, whatever CPU_COUNT
DEVICE = "auto"                      # auto (a GPU if there is one), cpu, or cuda
P_VALUE_TEST = "binomial"            # the extra p_value_independent_rows column: binomial, or fisher (exact)

SELECTION = "validation"             # rank on the train file's recent tail, confirm the best on the test file once;
                                     # "test" ranks directly on the test file (then its p-values are not out-of-sample)
VALIDATION_FRACTION = 0.2            # the last 20% of the train file's rows (it is in time order) rank the combinations
VALIDATION_FOLDS = 1                 # >1: walk-forward folds over that tail (more robust, that many times the work)
CONFIRM_TOP_K = 5                    # how many of the best are retrained on all of train and tested on the test file
LABEL_HORIZON = 10                   # trading days a label looks ahead: training rows that close to an evaluated
                                     # date are purged (their labels see it)
EMBARGO_DAYS = 2                     # weekdays purged beyond the horizon (market holidays stretch it)
SIGNIFICANCE_LEVEL = 0.05            # the verdict: "confirmed" when the winner's test p-value is at most this
FALSE_DISCOVERY_RATE = 0.05          # significant_fdr in ranking.csv: Benjamini-Hochberg q-value at most this
PERMUTATIONS = 1000                  # label orders of the block permutation test (p-values down to 1/1001)
PERMUTATION_BLOCK_LENGTH = None      # files without dates only: rows per block (None: a twentieth of the rows)

TRAIN_CSV = "example_data/train.csv"     # header date,ticker,features...,label (or D.AT rows: features..., label)
TEST_CSV = "example_data/test.csv"       # same format, later dates; the winner is tested once on it
LATEST_CSV = "example_data/latest.csv"   # rows: ticker, features...; scored by the winner
RESULTS_DIR = "results"                  # each run writes RESULTS_DIR/<config name>/
