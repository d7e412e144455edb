"""Steady-state throughput: time per training once the workers are busy, ours against the naive way.

    python -m bench.steady                                  # the MLP reference grid at 40 epochs (~5 minutes)
    python -m bench.steady --variant lstm                   # the LSTM grid at 8 epochs
    python -m bench.steady --skip-naive --ours base=/path/to/other/checkout --ours now=.
    python -m bench.steady --skip-naive --ours c=. --ours torch=.:SWEEP_NATIVE=0

Overnight sweeps spend their hours training, so this is the figure that
counts. Our sweep runs end to end (`python search.py`; the mlp variant is
the reference grid, 32 combinations x 3 reruns, at max_epochs 40) and also
at half the epochs (the lstm grid at 40 and at its 8 epochs): the difference,
scaled to the timed epochs, is the time per training with start-up and the
end of the run taken out (steady state); the whole run per training is
reported beside it. The naive way (bench/naive.py: one model at
a time per process, DataLoader, torch.optim, a pool of CPU_COUNT processes
with one torch thread each) trains every 4th combination of the mlp grid
(the whole lstm grid), its time per training the whole run over the
trainings it did. Each `--ours NAME=CHECKOUT[:ENV=VALUE,...]` is a sweep to
time: a checkout's search.py with extra environment, so a change can be
measured against the commit before it, or an accelerator against its
fallback, side by side in one run; runs interleave and medians count. The
share of the arithmetic bound is the sweep's forward and backward FLOPs per
training over the machine's one-thread 512x512 matmul rate times the cores,
against our steady-state time. Results go to bench/out/steady-VARIANT.json.
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

# epochs: what a training is timed at; runs: the two epoch counts our sweep runs at, whose difference
# is pure training (the LSTM grid is small: at 16 against 8 epochs the difference was ~3 s against 1-2 s of
# noise between runs, so it runs at 40 against 8)
VARIANTS = {
    "mlp": {"epochs": 40, "runs": (40, 20), "every": 4, "grid": {}},
    "lstm": {"epochs": 8, "runs": (40, 8), "every": 1,
             "grid": {"model": ["lstm"], "hidden_layers": [[]], "lstm_hidden_size": [16], "lstm_num_layers": [1],
                      "dropout": [0.0], "learning_rate": [1e-3, 1e-4], "optimizer": ["adam", "rmsprop"]}},
}


def write_config(variant: str, epochs: int, every: int = 1) -> Path:
    """The variant's sweep at `epochs` epochs (every `every`-th learning rate only, for the naive way)."""
    text = REFERENCE.read_text().replace('"../example_data/', f'"{ROOT}/example_data/').replace(
        'RESULTS_DIR = "out"', f'RESULTS_DIR = "{OUT}"')
    text += f"\nhyperparameter_values.update({VARIANTS[variant]['grid']!r})\n"
    text += f'hyperparameter_values["max_epochs"] = [{epochs}]\n'
    if every > 1:  # with 4 learning rates, every 4th combination
        text += f'hyperparameter_values["learning_rate"] = hyperparameter_values["learning_rate"][::{every}]\n'
    path = OUT / f"steady-{variant}-{epochs}-every{every}.py"
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


def measure(variant: str, sweeps: list, repeat: int, cpu_count: int, naive: bool) -> dict:
    epochs = VARIANTS[variant]["epochs"]
    high, low = VARIANTS[variant]["runs"]
    configs = {e: write_config(variant, e) for e in (high, low)}
    times = {(name, e): [] for name, _, _ in sweeps for e in configs}
    quality_of = {}
    for _ in range(repeat):
        for e, config in configs.items():
            for name, checkout, extra in sweeps:
                seconds, peak, folder = run_ours(name, checkout, extra, config, cpu_count)
                times[name, e].append((seconds, peak))
                if e == epochs:
                    quality_of[name] = quality(pd.read_csv(folder / "reruns.csv"))
                    trainings = len(pd.read_csv(folder / "reruns.csv"))
    bound = sweep_flops(configs[epochs]) / (matmul_gflops() * 1e9 * cpu_count) / trainings
    rows = []
    for name, checkout, extra in sweeps:
        whole = statistics.median(s for s, _ in times[name, epochs])
        steady = (statistics.median(s for s, _ in times[name, high]) -
                  statistics.median(s for s, _ in times[name, low])) * epochs / (high - low) / trainings
        rows.append({"sweep": name, "checkout": str(checkout), "env": extra, "trainings": trainings,
                     "runs_s": [round(s, 2) for s, _ in times[name, epochs]],
                     "runs_at_s": {e: [round(s, 2) for s, _ in times[name, e]] for e in configs},
                     "per_training_s": steady, "end_to_end_per_training_s": whole / trainings,
                     "peak_mib": max(m for _, m in times[name, epochs]), "bound_share": bound / steady,
                     **quality_of[name]})
    result = {"variant": variant, "epochs": epochs, "ours": rows, "bound_per_training_s": bound, "naive": None}
    if naive:
        config = write_config(variant, epochs, every=VARIANTS[variant]["every"])
        counts_file = OUT / f"steady-{variant}-naive.json"
        seconds, peak = timed([sys.executable, "-m", "bench.naive", "--config", str(config), "--out", str(counts_file)])
        counts = pd.DataFrame(json.loads(counts_file.read_text()))
        result["naive"] = {"per_training_s": seconds / len(counts), "trainings_timed": len(counts), "peak_mib": peak,
                           **quality(counts)}
        for row in rows:
            row["speedup"] = result["naive"]["per_training_s"] / row["per_training_s"]
            row["end_to_end_speedup"] = result["naive"]["per_training_s"] / row["end_to_end_per_training_s"]
    return result


def report(result: dict) -> list[str]:
    lines = []
    for row in result["ours"]:
        lines.append(f"{result['variant']} {row['sweep']}: {row['per_training_s']:.3f} s per training in steady state "
                     f"({row['end_to_end_per_training_s']:.3f} s end to end: median of "
                     f"{', '.join(f'{s:.1f}' for s in row['runs_s'])} s for {row['trainings']} trainings at "
                     f"{result['epochs']} epochs); {row['bound_share']:.0%} of the arithmetic bound "
                     f"({result['bound_per_training_s']:.3f} s); accuracy {row['accuracy']:.3f}"
                     + (f"; {row['speedup']:.1f}x the naive way ({row['end_to_end_speedup']:.1f}x end to end)"
                        if "speedup" in row else ""))
    if result["naive"]:
        naive = result["naive"]
        lines.append(f"{result['variant']} naive: {naive['per_training_s']:.3f} s per training "
                     f"({naive['trainings_timed']} timed); accuracy {naive['accuracy']:.3f}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, default="mlp")
    parser.add_argument("--ours", action="append", metavar="NAME=CHECKOUT[:ENV=VALUE,...]",
                        help="a sweep to time (repeatable; default: this checkout, 'ours=.')")
    parser.add_argument("--skip-naive", action="store_true", help="time only our sweeps")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each of our sweeps (default 2)")
    parser.add_argument("--cpu-count", type=int, default=2)
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    sweeps = [parse_ours(s) for s in (args.ours or ["ours=."])]
    result = measure(args.variant, sweeps, args.repeat, args.cpu_count, not args.skip_naive)
    (OUT / f"steady-{args.variant}.json").write_text(json.dumps(result, indent=2))
    print("\n".join(report(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
