"""Benchmark: the reference sweep through `python search.py`, against the naive way, back to back.

    python -m bench.run                      # reference sweep, both ways (~3 minutes on 2 cores)
    python -m bench.run --variants batch256,lstm
    python -m bench.run --skip-naive         # ours only (quick check)

Each way runs as its own process, timed from process start to files
written, so start-up, data loading and writing count. Ratios are taken
within one run because these machines are noisy. Our sweep takes seconds,
so a passing burst of load on a shared machine can swing one run by 15%:
it runs --repeat times (default 4), half before and half after the naive
way, and the median counts; the naive way runs once (minutes long, it
averages such bursts out by itself). Results also go to
bench/out/benchmark.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd

from inputs.files import load_labelled
from inputs.settings import load_settings
from sweep import plan

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
REFERENCE = ROOT / "bench" / "reference.py"

VARIANTS = {
    "reference": {},
    "batch256": {"batch_size": [256]},
    # a smaller LSTM sweep: the naive LSTM takes ~20 s per model
    "lstm": {"model": ["lstm"], "hidden_layers": [[]], "lstm_hidden_size": [16], "dropout": [0.0],
             "learning_rate": [1e-3, 1e-4]},
}


def write_variant_config(name: str) -> Path:
    """The reference config with the variant's hyperparameters replaced."""
    path = OUT / f"{name}.py"
    text = REFERENCE.read_text().replace('"../example_data/', '"../../example_data/').replace(
        'RESULTS_DIR = "out"', 'RESULTS_DIR = "."')
    text += f"\nhyperparameter_values.update({VARIANTS[name]!r})\n"
    path.write_text(text)
    return path


# The measuring process becomes a "subreaper": processes its command leaves behind
# (our workers' parent, the fork server, outlives search.py by a moment) are
# handed to it rather than to init, so their peak memory, and their workers',
# counts too once it has waited for them.
_MEASURE = ("import ctypes, os, resource, subprocess, sys, time; "
            "ctypes.CDLL(None).prctl(36, 1, 0, 0, 0); "  # PR_SET_CHILD_SUBREAPER
            "t = time.perf_counter(); "
            "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
            "elapsed = time.perf_counter() - t\n"
            "while True:\n"
            "    try:\n"
            "        os.wait()\n"
            "    except ChildProcessError:\n"
            "        break\n"
            "print(elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def timed(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds until the command exits, peak resident memory in MiB of the largest process of the run).

    A fresh wrapper process per measurement: RUSAGE_CHILDREN only ever grows,
    so measuring two runs from one process would report the larger for both.
    """
    out = subprocess.run([sys.executable, "-c", _MEASURE, *command], cwd=ROOT, check=True,
                         capture_output=True, text=True, env=env).stdout.split()
    return float(out[0]), int(out[1]) / 1024


def quality(counts: pd.DataFrame) -> dict:
    total = counts[["tp", "fp", "tn", "fn"]].sum(axis=1)
    predicted = counts["tp"] + counts["fp"]
    precision = (counts["tp"] / predicted.where(predicted > 0)).mean()
    return {"accuracy": float(((counts["tp"] + counts["tn"]) / total).mean()), "precision": float(precision)}


_GFLOPS = ("import time, torch; torch.set_num_threads(1); a, b = torch.randn(512, 512), torch.randn(512, 512)\n"
           "for _ in range(3): a @ b\n"
           "start, n = time.perf_counter(), 20\n"
           "for _ in range(n): a @ b\n"
           "print(2 * 512 ** 3 * n / (time.perf_counter() - start) / 1e9)")


def matmul_gflops() -> float:
    """Best-case single-thread float32 matmul throughput with the kernels our workers use, in GFLOP/s."""
    out = subprocess.run([sys.executable, "-c", _GFLOPS], check=True, capture_output=True, text=True)
    return float(out.stdout)


def sweep_flops(config: Path) -> float:
    """The sweep's forward and backward FLOPs, summed over its trainings."""
    settings = load_settings(config)
    train = load_labelled(settings.train_csv)
    rows, features = train.x.shape
    return sum(plan.training_flops(c, features, rows) * settings.rerun_count
               for c in plan.planned_combinations(settings))


def run_variant(name: str, skip_naive: bool, cpu_count: int, repeat: int = 4) -> dict:
    config = REFERENCE if name == "reference" else write_variant_config(name)
    run_name = f"bench-{name}"

    def run_ours() -> tuple[float, float]:
        shutil.rmtree(OUT / run_name, ignore_errors=True)  # a second run in the same folder would resume the first
        return timed([sys.executable, "search.py", "--config", str(config), "--name", run_name,
                      "--results", str(OUT), "--no-progress", "--cpu-count", str(cpu_count)])

    runs = [run_ours() for _ in range((repeat + 1) // 2)]
    naive_row = {} if skip_naive else run_naive(name, config)
    runs += [run_ours() for _ in range(repeat // 2)]
    ours_s = statistics.median(s for s, _ in runs)
    ours = pd.read_csv(OUT / run_name / "reruns.csv")
    trainings = len(ours)
    row = {"variant": name, "trainings": trainings, "ours_s": ours_s, "ours_runs_s": [round(s, 2) for s, _ in runs],
           "ours_models_per_min": trainings / ours_s * 60, "ours_peak_mib": max(m for _, m in runs),
           **{f"ours_{k}": v for k, v in quality(ours).items()}}
    flops = sweep_flops(config)
    row["bound_s"] = flops / (matmul_gflops() * 1e9 * cpu_count)
    if naive_row:
        naive_s = naive_row.pop("naive_s")
        row.update({"naive_s": naive_s, "naive_models_per_min": trainings / naive_s * 60,
                    "speedup": naive_s / ours_s, **naive_row})
    return row


def run_naive(name: str, config: Path, env: dict | None = None) -> dict:
    counts_file = OUT / f"naive-{name}.json"
    naive_s, naive_mem = timed([sys.executable, "-m", "bench.naive", "--config", str(config),
                                "--out", str(counts_file)],
                               env)
    naive = pd.DataFrame(json.loads(counts_file.read_text()))
    return {"naive_s": naive_s, "naive_peak_mib": naive_mem, **{f"naive_{k}": v for k, v in quality(naive).items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="reference",
                        help=f"comma-separated, from {', '.join(VARIANTS)} (default: reference)")
    parser.add_argument("--skip-naive", action="store_true", help="time only our runner")
    parser.add_argument("--cpu-count", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=4,
                        help="runs of our sweep, half before and half after the naive way; the median counts "
                             "(default 4)")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.variants.split(","):
        row = run_variant(name.strip(), args.skip_naive, args.cpu_count, args.repeat)
        rows.append(row)
        print(format_row(row), flush=True)
    (OUT / "benchmark.json").write_text(json.dumps(rows, indent=2))
    return 0


def format_row(r: dict) -> str:
    runs = ", ".join(f"{s:.1f}" for s in r["ours_runs_s"])
    text = (f"{r['variant']}: {r['trainings']} trainings. ours {r['ours_s']:.1f} s (median of {runs}; "
            f"{r['ours_models_per_min']:.0f} models/min, peak {r['ours_peak_mib']:.0f} MiB, "
            f"accuracy {r['ours_accuracy']:.3f}, precision {r['ours_precision']:.3f}); "
            f"arithmetic bound {r['bound_s']:.1f} s")
    if "naive_s" in r:
        text += (f"; naive {r['naive_s']:.1f} s ({r['naive_models_per_min']:.1f} models/min, peak "
                 f"{r['naive_peak_mib']:.0f} MiB, accuracy {r['naive_accuracy']:.3f}, precision "
                 f"{r['naive_precision']:.3f}); speed-up {r['speedup']:.1f}x")
    return text


if __name__ == "__main__":
    sys.exit(main())
