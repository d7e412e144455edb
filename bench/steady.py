"""Steady-state throughput: the reference grid at 40 epochs, our sweep end to end against the naive way.

    python -m bench.steady                                  # ours vs the naive way (~3 minutes on 2 cores)
    python -m bench.steady --skip-naive --ours base=/path/to/other/checkout --ours now=.
    python -m bench.steady --skip-naive --ours c=. --ours torch=.:SWEEP_NATIVE=0

Overnight sweeps spend their hours training, so this is the figure that
counts: time per training once training dominates. Our sweep runs end to
end (`python search.py`, 32 combinations x 3 reruns at max_epochs 40,
start-up and files included); the naive way (bench/naive.py: one model at a
time per process, DataLoader, torch.optim, a pool of CPU_COUNT processes with
one torch thread each) trains every 4th combination, its 3 reruns each, and
its time per training is scaled to the same count. Each `--ours NAME=CHECKOUT[:ENV=VALUE,...]`
is a sweep to time: a checkout's search.py with extra environment, so a
change can be measured against the commit before it, or an accelerator
against its fallback, side by side in one run. Runs interleave (A B A B);
medians count. Also reported: the share of the arithmetic bound (the
sweep's FLOPs over the machine's one-thread 512x512 matmul rate, times the
cores). Results go to bench/out/steady.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import pandas as pd

from bench.run import OUT, REFERENCE, ROOT, matmul_gflops, quality, sweep_flops, timed

EPOCHS = 40


def write_config(every: int = 1) -> Path:
    """The reference sweep at EPOCHS epochs (every `every`-th combination only, for the naive way)."""
    text = REFERENCE.read_text().replace('"../example_data/', f'"{ROOT}/example_data/').replace(
        'RESULTS_DIR = "out"', f'RESULTS_DIR = "{OUT}"')
    text += f'\nhyperparameter_values["max_epochs"] = [{EPOCHS}]\n'
    if every > 1:  # keep every `every`-th learning rate: with 4 rates, every 4th combination
        text += 'hyperparameter_values["learning_rate"] = hyperparameter_values["learning_rate"][::%d]\n' % every
    path = OUT / f"steady-every{every}.py"
    path.write_text(text)
    return path


def parse_ours(spec: str) -> tuple[str, Path, dict]:
    """NAME=CHECKOUT[:KEY=VALUE,...] -> (name, checkout, environment)."""
    name, _, rest = spec.partition("=")
    checkout, _, env = rest.partition(":")
    extra = dict(pair.split("=", 1) for pair in env.split(",") if pair)
    return name, Path(checkout or ".").resolve(), extra


def run_ours(name: str, checkout: Path, extra: dict, config: Path, cpu_count: int) -> tuple[float, float, Path]:
    results = OUT / f"steady-{name}"
    shutil.rmtree(results, ignore_errors=True)  # a second run in the same folder would resume the first
    seconds, peak = timed([sys.executable, str(checkout / "search.py"), "--config", str(config), "--name", "run",
                           "--results", str(results), "--no-progress", "--cpu-count", str(cpu_count)],
                          {**os.environ, **extra})
    return seconds, peak, results / "run"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", action="append", metavar="NAME=CHECKOUT[:ENV=VALUE,...]",
                        help="a sweep to time (repeatable; default: this checkout, 'ours=.')")
    parser.add_argument("--skip-naive", action="store_true", help="time only our sweeps")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each of our sweeps (default 2)")
    parser.add_argument("--cpu-count", type=int, default=2)
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    config = write_config()
    sweeps = [parse_ours(s) for s in (args.ours or ["ours=."])]
    times: dict[str, list] = {name: [] for name, _, _ in sweeps}
    folders = {}
    for _ in range(args.repeat):
        for name, checkout, extra in sweeps:
            seconds, peak, folders[name] = run_ours(name, checkout, extra, config, args.cpu_count)
            times[name].append((seconds, peak))
    trainings = len(pd.read_csv(folders[sweeps[0][0]] / "reruns.csv"))
    bound = sweep_flops(config) / (matmul_gflops() * 1e9 * args.cpu_count) / trainings
    rows = []
    for name, checkout, extra in sweeps:
        median = statistics.median(s for s, _ in times[name])
        rows.append({"sweep": name, "checkout": str(checkout), "env": extra, "trainings": trainings,
                     "runs_s": [round(s, 2) for s, _ in times[name]], "per_training_s": median / trainings,
                     "peak_mib": max(m for _, m in times[name]), "bound_share": bound / (median / trainings),
                     **quality(pd.read_csv(folders[name] / "reruns.csv"))})
    if not args.skip_naive:
        naive_config = write_config(every=4)
        counts_file = OUT / "steady-naive.json"
        seconds, peak = timed([sys.executable, "-m", "bench.naive", "--config", str(naive_config),
                               "--out", str(counts_file)])
        counts = pd.DataFrame(json.loads(counts_file.read_text()))
        naive = {"per_training_s": seconds / len(counts), "trainings_timed": len(counts), "peak_mib": peak,
                 **quality(counts)}
        for row in rows:
            row["speedup"] = naive["per_training_s"] / row["per_training_s"]
    (OUT / "steady.json").write_text(json.dumps({"ours": rows, "naive": None if args.skip_naive else naive,
                                                 "bound_per_training_s": bound}, indent=2))
    for row in rows:
        print(f"{row['sweep']}: {row['per_training_s']:.3f} s per training (median of "
              f"{', '.join(f'{s:.1f}' for s in row['runs_s'])} s for {trainings}); "
              f"{row['bound_share']:.0%} of the arithmetic bound ({bound:.3f} s); accuracy {row['accuracy']:.3f}"
              + (f"; {row['speedup']:.1f}x the naive way" if "speedup" in row else ""))
    if not args.skip_naive:
        print(f"naive: {naive['per_training_s']:.3f} s per training ({naive['trainings_timed']} timed); "
              f"accuracy {naive['accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
