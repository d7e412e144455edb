"""Benchmark: orchestration overhead and memory on a big grid of tiny trainings.

    python -m bench.scale                      # 2,000 and 20,000 combinations (a few minutes on 2 cores)
    python -m bench.scale --combinations 1000
    python -m bench.scale --combinations 100000 --random   # the overnight random search (~10 minutes)

A grid of 1-epoch trainings of a tiny model (one hidden layer of 15 units)
on the example data, 3 reruns each (the default), through `python search.py`, so that
what the main process does per combination (claiming it in the study,
dispatching, scoring, recording, rewriting the CSVs) weighs as much as it
ever can against the training itself. Reported: the main process's CPU
time during the sweep as a share of the sweep's wall time (on a machine
whose cores all train, that is what it takes from the workers), its
peak memory, and both per 1,000 combinations; also its share of the whole
machine (CPU time over wall time x cores). With two or more grid sizes,
also the marginal cost of one more combination (the difference between the
sizes, so that once-per-run costs such as importing the report's libraries
drop out), the share of the largest sweep's wall time it adds up to, and
the peak memory added per 1,000 combinations.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


def write_config(combinations: int, random: bool = False) -> Path:
    """A grid of `combinations` (or, `random`, a grid 25% bigger and that many random draws from it)."""
    # learning rate x L2 x initialisation: every combination the same tiny architecture
    grid_size = combinations * 5 // 4 if random else combinations
    lrs = 25 if grid_size >= 1000 else 5
    l2s = max(1, grid_size // (lrs * 5) // 4) * 4 if grid_size >= 100 else 1
    grid = {"hidden_layers": [[0.5]], "max_epochs": [1],
            "learning_rate": [round(1e-4 * 1.25 ** i, 8) for i in range(lrs)],
            "l2_regularization": [round(1e-6 * i, 8) for i in range(l2s)],
            "weight_initialization": ["default", "xavier_uniform", "xavier_normal", "kaiming_uniform",
                                      "kaiming_normal"]}
    path = OUT / f"scale{'random' if random else ''}{combinations}.py"
    search = f"EXPLORE_ALL_COMBINATIONS = False\nNUMBER_OF_COMBINATIONS_TO_TRY = {combinations}\n" if random else ""
    path.write_text(f"hyperparameter_values = {grid!r}\n{search}"
                    "RERUN_COUNT = 3\nCPU_COUNT = 2\nSELECTION = 'test'\nDEVICE = 'cpu'\n"
                    "TRAIN_CSV = '../../example_data/train.csv'\nTEST_CSV = '../../example_data/test.csv'\n"
                    "RESULTS_DIR = '.'\n")
    return path


def run(combinations: int, random: bool = False) -> dict:
    config = write_config(combinations, random)
    name = config.stem
    shutil.rmtree(OUT / name, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "search.py", "--config", str(config), "--no-progress"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    total = time.perf_counter() - started
    summary = json.loads((OUT / name / "summary.json").read_text())
    n = summary["completed"]
    sweep = summary["sweep"]
    return {"combinations": n, "total_seconds": round(total, 1), "sweep_seconds": sweep["seconds"],
            "main_cpu_seconds": sweep["main_process_cpu_seconds"],
            "overhead_share": round(sweep["main_process_cpu_seconds"] / sweep["seconds"], 4),
            # the measure: its CPU time over wall time x the machine's cores
            "machine_share": round(sweep["main_process_cpu_seconds"] / (sweep["seconds"] * (os.cpu_count() or 1)), 4),
            "main_cpu_ms_per_combination": round(sweep["main_process_cpu_seconds"] / n * 1e3, 3),
            "main_peak_mib": sweep["main_process_peak_mib"]}


def marginal(small: dict, big: dict) -> dict:
    """What one more combination costs the main process, from two grid sizes: CPU time and peak memory."""
    more = big["combinations"] - small["combinations"]
    cpu = (big["main_cpu_seconds"] - small["main_cpu_seconds"]) / more
    return {"marginal_main_cpu_ms_per_combination": round(cpu * 1e3, 3),
            "marginal_share_at_largest": round(cpu * big["combinations"] / big["sweep_seconds"], 4),
            "peak_mib_per_1000_combinations": round((big["main_peak_mib"] - small["main_peak_mib"]) / more * 1e3, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--combinations", default="2000,20000",
                        help="comma-separated grid sizes (default: 2000,20000)")
    parser.add_argument("--random", action="store_true",
                        help="random search: that many distinct draws from a grid 25%% bigger")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in map(int, args.combinations.split(",")):
        row = run(size, args.random)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if len(rows) >= 2:
        row = marginal(rows[0], rows[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    (OUT / "scale.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
