"""Calibration: do the p-values hold where the truth is known? Full sweeps on simulated markets.

    python -m bench.calibration                   # 40 markets with no skill, 40 with planted skill (~10 min)
    python -m bench.calibration --runs 100 --skill 0

Each run simulates a market (bench/market.py: 40 tickers, 6 years, a common
market move, 10-day labels), writes it in the dated form and runs
`python search.py` on it as a user would: an 8-combination grid, 3 reruns,
validation selection, the top 3 confirmed on the test year. With no skill
every p-value should be uniform, so at a level of 0.05 about 5% of runs (and
of p-values) come out significant; with planted skill most runs should. The
table gives, per variant, the share of runs with a family-wise p-value of
the winner at most 0.05 and 0.2, with any combination significant at a 5%
false discovery rate, with the verdict "confirmed", and the share of all
combination p-values at most 0.05, beside the same share for the binomial
p-value that assumes independent rows. Results also go to
bench/out/calibration.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.market import simulate_market, write_market

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"

CONFIG = """
hyperparameter_values = {
    "hidden_layers": [[2, 1, 0.5], [1]],
    "learning_rate": [1e-3, 3e-3],
    "dropout": [0.0, 0.2],
}
RERUN_COUNT = 3
CONFIRM_TOP_K = 3
DEVICE = "cpu"
SEED = {seed}
TRAIN_CSV, TEST_CSV, LATEST_CSV = "train.csv", "test.csv", "latest.csv"
"""


def run_one(seed: int, skill: float, folder: Path, cpu_count: int) -> dict:
    """One simulated market through search.py; the figures the calibration counts."""
    write_market(simulate_market(seed, skill=skill), folder)
    config = folder / "calibration.py"
    config.write_text(CONFIG.replace("{seed}", str(seed)))
    done = subprocess.run([sys.executable, str(ROOT / "search.py"), "--config", str(config), "--results",
                           str(folder / "results"), "--no-progress", "--cpu-count", str(cpu_count)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"search.py failed on market {seed}:\n{done.stderr}")
    run = folder / "results" / "calibration"
    summary = json.loads((run / "summary.json").read_text())
    ranking = pd.read_csv(run / "ranking.csv", dtype={"combination": str})
    return {"seed": seed, "family_wise": summary["family_wise_p_value"], "verdict": summary["verdict"],
            "p_value_test": summary["p_value_test"], "any_significant": bool(ranking["significant_fdr"].any()),
            "p_values": ranking["p_value"].tolist(),
            "p_values_independent_rows": ranking["p_value_independent_rows"].tolist()}


def rates(runs: list[dict]) -> dict:
    """The shares the calibration reports, over runs (and over all combinations for the p-value shares)."""
    family = np.array([r["family_wise"] for r in runs])
    p = np.concatenate([r["p_values"] for r in runs])
    iid = np.concatenate([r["p_values_independent_rows"] for r in runs])
    return {"runs": len(runs),
            "family_wise_at_most_0.05": float(np.mean(family <= 0.05)),
            "family_wise_at_most_0.2": float(np.mean(family <= 0.2)),
            "any_significant_at_fdr": float(np.mean([r["any_significant"] for r in runs])),
            "combination_p_at_most_0.05": float(np.mean(p <= 0.05)),
            "confirmed": float(np.mean([r["verdict"] == "confirmed" for r in runs])),
            "independent_rows_p_at_most_0.05": float(np.mean(iid <= 0.05))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Check the sweep's p-values on simulated markets.")
    parser.add_argument("--runs", type=int, default=40, help="markets per variant (default 40)")
    parser.add_argument("--skill", type=float, action="append",
                        help="planted skill of a variant (repeatable; default: 0 and 0.5)")
    parser.add_argument("--cpu-count", type=int, default=2)
    args = parser.parse_args(argv)
    variants = args.skill or [0.0, 0.5]
    OUT.mkdir(parents=True, exist_ok=True)
    results = {}
    for skill in variants:
        runs = []
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="calibration-") as folder:
                runs.append(run_one(1000 + i, skill, Path(folder), args.cpu_count))
            print(f"skill {skill:g}, market {i + 1}/{args.runs}: family-wise p {runs[-1]['family_wise']:.3g}, "
                  f"{runs[-1]['verdict']}", file=sys.stderr)
        results[f"skill {skill:g}"] = {"rates": rates(runs), "runs": runs}
    (OUT / "calibration.json").write_text(json.dumps(results, indent=2))
    print("| variant | runs | family-wise p <= 0.05 | family-wise p <= 0.2 | any significant (5% FDR) | "
          "combination p <= 0.05 | confirmed | independent-rows p <= 0.05 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, result in results.items():
        r = result["rates"]
        print(f"| {name} | {r['runs']} | {r['family_wise_at_most_0.05']:.1%} | {r['family_wise_at_most_0.2']:.1%} | "
              f"{r['any_significant_at_fdr']:.1%} | {r['combination_p_at_most_0.05']:.1%} | {r['confirmed']:.1%} | "
              f"{r['independent_rows_p_at_most_0.05']:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
