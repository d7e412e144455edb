"""The reference sweep of the benchmark (issue 3): 32 combinations x 3 reruns = 96 trainings.

    python search.py --config bench/reference.py
"""
hyperparameter_values = {
    "hidden_layers": [[2, 3, 2, 1, 0.5], [2, 1, 0.5]],
    "dropout": [0.0, 0.2],
    "optimizer": ["adam", "rmsprop"],
    "learning_rate": [1e-3, 5e-4, 1e-4, 5e-5],
    "activation": ["leaky_relu"],
    "loss_function": ["bce"],
    "batch_size": [32],
    "max_epochs": [8],
}
RERUN_COUNT = 3
CPU_COUNT = 2
TRAIN_CSV = "../example_data/train.csv"
TEST_CSV = "../example_data/test.csv"
LATEST_CSV = "../example_data/latest.csv"
RESULTS_DIR = "out"
DEVICE = "cpu"
SELECTION = "test"   # rank on the test file, as the naive baseline does: 96 trainings, no confirmation
