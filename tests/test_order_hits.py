"""The workers count each training's hits under every label order; added up, they rank exactly as the predictions do."""
import base64

import numpy as np
import pytest
import torch

from ranking.significance import PermutationTest, date_blocks
from records.predictions import Predictions
from sweep.rows import share_label_orders
from sweep.scoring import permutation_counts_of, summed_hits
from training.loop import order_hits


def masked_and_unmasked_tests(seed: int = 5):
    """Two permutation tests on dated rows: every ticker on every date, and one ticker that starts late."""
    dates = np.repeat(np.arange(np.datetime64("2021-01-04"), np.datetime64("2021-04-01")), 3)
    dates = dates[np.is_busday(dates)]
    tickers = np.tile(np.array(["A", "B", "C"]), len(dates) // 3)
    rng = np.random.default_rng(seed)
    for late in (False, True):
        keep = ~((tickers == "C") & (dates < np.datetime64("2021-02-01"))) if late else np.ones(len(dates), bool)
        labels = (rng.uniform(size=keep.sum()) < 0.35).astype(int)
        test = PermutationTest(labels, date_blocks(dates[keep], tickers[keep], horizon=3), permutations=199, seed=1)
        assert (test.mask is not None) == late
        yield test


@pytest.mark.parametrize("test", list(masked_and_unmasked_tests()), ids=["all tickers", "a ticker starts late"])
def test_worker_hits_over_two_folds_rank_as_the_pooled_predictions(tmp_path, test):
    rows = len(test.labels)
    rng = np.random.default_rng(3)
    predictions = rng.uniform(size=(3, rows)) < 0.3           # three reruns
    reruns = [{"diverged": False}, {"diverged": True}, {"diverged": False}]  # a diverged one is left out
    bits = [base64.b64encode(np.packbits(p).tobytes()).decode() for p in predictions]
    # each fold's rows of the label orders, as sweep/rows.py saves them, and the worker's counts on each
    split = rows // 3
    folds = []
    for start, stop in ((0, split), (split, rows)):
        data = {}
        for name, matrix in (("order_labels", test.labels), ("order_mask", test.mask)):
            if matrix is not None:
                data[name] = str(tmp_path / f"{name}{start}.npy")
                np.save(data[name], matrix[start:stop])
        hits, predicted = order_hits(torch.from_numpy(predictions[:, start:stop]), data, torch.device("cpu"))
        assert hits.shape == (3, test.orders) and (predicted is None) == (test.mask is None)
        folds.append([{"hits": hits[r], "predicted": None if predicted is None else predicted[r]} for r in range(3)])
    summed = [summed_hits([fold[r] for fold in folds]) for r in range(3)]
    worker = [(s["hits"], s["predicted"]) for s in summed]

    # scored together, each combination's own reruns are added up: none kept, or only the first
    none_kept = [{"diverged": True}] * 3
    only_first = [{"diverged": False}, {"diverged": True}, {"diverged": True}]
    from_workers, from_bits, from_none, from_first = permutation_counts_of(
        test, [(reruns, bits, worker), (reruns, bits), (none_kept, bits, worker), (only_first, bits, worker)],
        Predictions(None))
    pooled = predictions[[0, 2]].sum(axis=0)
    np.testing.assert_array_equal(from_workers, test.counts(pooled)[0])
    np.testing.assert_array_equal(from_bits, test.counts(pooled)[0])
    np.testing.assert_array_equal(from_none, test.counts(np.zeros(rows, dtype=int))[0])
    np.testing.assert_array_equal(from_first, test.counts(predictions[0].astype(int))[0])


def test_without_label_orders_a_worker_counts_nothing():
    assert order_hits(torch.ones(2, 5, dtype=torch.bool), {"eval_y": "unused"}, torch.device("cpu")) == (None, None)


def test_a_fold_without_hits_leaves_the_rerun_to_be_scored_from_its_predictions():
    assert summed_hits([{"hits": np.ones(3)}, {}]) == {}


def test_each_fold_gets_its_own_rows_of_the_label_orders(tmp_path):
    test = list(masked_and_unmasked_tests())[1]
    rows = len(test.labels)
    folds = []
    for k in range(2):
        (tmp_path / str(k)).mkdir()
        folds.append({"eval_y": str(tmp_path / str(k) / "eval_y.npy")})
    share_label_orders(test, {"folds": folds, "fold_rows": [rows - 40, 40]})
    np.testing.assert_array_equal(np.load(folds[0]["order_labels"]), test.labels[:rows - 40])
    np.testing.assert_array_equal(np.load(folds[1]["order_labels"]), test.labels[rows - 40:])
    np.testing.assert_array_equal(np.load(folds[1]["order_mask"]), test.mask[rows - 40:])
