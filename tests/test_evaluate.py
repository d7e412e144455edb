"""evaluate.py end to end: ranking a run again from its study, and scoring the latest data with the winner."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
from test_search import ROOT, run_search, write_config

from sweep.predict import predict_latest, save_winner


def test_predict_scores_the_latest_file_with_the_winner(tmp_path, data_dir, capsys):
    config = write_config(tmp_path, data_dir, grid={"learning_rate": [1e-2, 1e-3]})
    assert run_search(config, tmp_path / "results").returncode == 0
    rng = np.random.default_rng(5)
    latest = tmp_path / "latest.csv"
    latest.write_text("".join(f"T{i:02d}," + ",".join(f"{v:.4f}" for v in rng.normal(size=8)) + "\n"
                              for i in range(15)))
    run = tmp_path / "results" / "small"
    table = predict_latest(run, latest)
    assert sorted(table["ticker"]) == [f"T{i:02d}" for i in range(15)]
    assert table["rank"].tolist() == list(range(1, 16)) and table["score"].is_monotonic_decreasing
    assert table["score"].between(0, 1).all()
    saved = np.load(run / "winner.npz")
    meta = json.loads(str(saved["meta"]))
    ranking = pd.read_csv(run / "ranking.csv", dtype={"combination": str})
    assert meta["combination"] == ranking["combination"].iloc[0] and saved["weights"].shape[0] == 3
    assert "Training combination" in capsys.readouterr().err
    again = predict_latest(run, latest)  # from the saved weights this time
    assert "Training combination" not in capsys.readouterr().err
    pd.testing.assert_frame_equal(table, again)
    # weights saved in another layout (an older version's) are trained again, never misread
    meta["layout"] = {name: shape[::-1] for name, shape in meta["layout"].items()}
    save_winner(run / "winner.npz", meta["combination"], meta["hyperparameters"], meta["seeds"], saved["weights"],
                meta["layout"])
    retrained = predict_latest(run, latest)
    assert "Training combination" in capsys.readouterr().err
    pd.testing.assert_frame_equal(table, retrained)
    written = pd.read_csv(run / "predictions.csv")
    assert written["ticker"].tolist() == table["ticker"].tolist()


def test_evaluate_cli_reranks_reports_and_predicts(tmp_path, data_dir):
    config = write_config(tmp_path, data_dir, SELECTION="validation", CONFIRM_TOP_K=2,
                          grid={"learning_rate": [1e-2, 1e-3, 3e-4]})
    assert run_search(config, tmp_path / "results").returncode == 0
    run = tmp_path / "results" / "small"
    before = pd.read_csv(run / "ranking.csv")
    (run / "p_values.png").unlink()
    rerank = subprocess.run([sys.executable, "evaluate.py", str(run)], cwd=ROOT, capture_output=True, text=True)
    assert rerank.returncode == 0, rerank.stderr
    pd.testing.assert_frame_equal(before, pd.read_csv(run / "ranking.csv"))  # same labels and confirmed p-values
    assert (run / "p_values.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    latest = tmp_path / "latest.csv"
    latest.write_text("AAA," + ",".join(["0.1"] * 8) + "\nBBB," + ",".join(["2.5"] * 8) + "\n")
    predicted = subprocess.run([sys.executable, "evaluate.py", str(run), "--predict", str(latest)],
                               cwd=ROOT, capture_output=True, text=True)
    assert predicted.returncode == 0, predicted.stderr
    assert "AAA" in predicted.stdout and (run / "predictions.csv").is_file()
    bad = tmp_path / "bad.csv"
    bad.write_text("AAA,0.1,0.2\n")  # 2 features, the model wants 8
    refused = subprocess.run([sys.executable, "evaluate.py", str(run), "--predict", str(bad)],
                             cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode == 2 and "bad.csv" in refused.stderr and "Traceback" not in refused.stderr
