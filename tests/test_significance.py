"""Multiple-testing corrections against statsmodels, and the permutation test of the winner."""
import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from significance import bh_q_values, block_permutations, family_wise_p_value, holm_adjusted


@pytest.mark.parametrize("seed", range(5))
def test_holm_and_bh_match_statsmodels(seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(size=20), rng.uniform(0, 1e-3, size=5), [1.0, 1.0, 0.5, 0.5]])
    rng.shuffle(p)
    np.testing.assert_allclose(holm_adjusted(p), multipletests(p, method="holm")[1], rtol=1e-12)
    np.testing.assert_allclose(bh_q_values(p), multipletests(p, method="fdr_bh")[1], rtol=1e-12)


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.04 with m = 3: 3*0.01, max(.03, 2*0.02), max(.04, 1*0.04)
    np.testing.assert_allclose(holm_adjusted([0.04, 0.01, 0.02]), [0.04, 0.03, 0.04])


def test_ranking_has_the_corrections(tmp_path):
    import pandas as pd
    from evaluate import rank_combinations, score_reruns
    rows = [{"combination": f"c{i}", "rerun": r, "tp": tp, "fp": 10, "tn": 80, "fn": 10, "diverged": False,
             **{h: 1 for h in ("model", "hidden_layers", "activation", "dropout", "learning_rate", "optimizer",
                               "batch_size", "max_epochs", "loss_function", "l1_regularization",
                               "l2_regularization", "weight_initialization", "lstm_hidden_size",
                               "lstm_num_layers")}, "seconds": 1.0}
            for i, tp in enumerate([2, 8, 30, 5]) for r in range(3)]
    ranking = rank_combinations(score_reruns(pd.DataFrame(rows)), false_discovery_rate=0.05)
    np.testing.assert_allclose(ranking["p_value_holm"], multipletests(ranking["p_value"], method="holm")[1])
    np.testing.assert_allclose(ranking["q_value"], multipletests(ranking["p_value"], method="fdr_bh")[1])
    assert ranking["significant"].tolist() == (ranking["q_value"] <= 0.05).tolist()
    assert ranking["significant"].iloc[0] and not ranking["significant"].iloc[-1]


def test_block_permutations_move_whole_blocks():
    orders = block_permutations(n_rows=23, block_length=5, n_permutations=20, seed=1)
    assert orders.shape == (20, 23)
    for order in orders:
        assert sorted(order) == list(range(23))
        starts = [i for i in range(23) if i == 0 or order[i] != order[i - 1] + 1]
        assert all(order[s] % 5 == 0 for s in starts)  # every run of rows starts at a block start
    assert len({tuple(o) for o in orders}) > 1


def test_no_skill_gives_a_near_uniform_family_wise_p_value():
    rng = np.random.default_rng(0)
    values = []
    for _ in range(60):
        labels = (rng.uniform(size=300) < 0.3).astype(int)
        predictions = (rng.uniform(size=(6 * 3, 300)) < 0.2).astype(int)  # 6 combinations x 3 reruns
        values.append(family_wise_p_value(predictions, np.repeat(np.arange(6), 3), labels,
                                          n_permutations=199, block_length=10, seed=int(rng.integers(1 << 30))))
    values = np.array(values)
    assert ((0 <= values) & (values <= 1)).all()
    assert stats.kstest(values, "uniform").pvalue > 0.01
    assert 0.3 < values.mean() < 0.7


def test_a_planted_signal_gives_a_small_family_wise_p_value():
    rng = np.random.default_rng(1)
    labels = (rng.uniform(size=400) < 0.3).astype(int)
    predictions = (rng.uniform(size=(5 * 3, 400)) < 0.2).astype(int)
    skilled = labels.astype(bool) & (rng.uniform(size=(3, 400)) < 0.5)  # combination 0 finds half the ups
    predictions[:3] = skilled | (rng.uniform(size=(3, 400)) < 0.03)
    p = family_wise_p_value(predictions, np.repeat(np.arange(5), 3), labels, n_permutations=499,
                            block_length=10, seed=2)
    assert p == pytest.approx(1 / 500)
