"""The headline figures, each measured side by side in one run:  python -m bench

    python -m bench                  # ~6 minutes on 2 cores
    python -m bench --quick          # smaller scale grids (1,000 and 5,000), for a look

1. steady state, the MLP reference grid at 40 epochs: ours against the naive
   way per training, and our share of the arithmetic bound (bench.steady);
2. the LSTM grid at 8 epochs, ours against the naive way (bench.steady);
3. orchestration: the main process's share of the machine on a grid of
   20,000 1-epoch tiny models (bench.scale);
4. memory: the main process's peak added per 1,000 combinations, from
   2,000 to 20,000 (bench.scale).

Each figure is printed beside the goal it is measured against; the whole
result goes to bench/out/headline.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import scale, steady
from bench.run import OUT

GOALS = {"steady_speedup": (50.0, ">="), "bound_share": (0.50, ">="), "lstm_speedup": (10.0, ">="),
         "orchestration_machine_share": (0.05, "<="), "peak_mib_per_1000_combinations": (2.0, "<=")}


def headline(quick: bool = False, cpu_count: int = 2) -> dict:
    here = [("ours", Path(".").resolve(), {})]
    mlp = steady.measure("mlp", here, repeat=1 if quick else 2, cpu_count=cpu_count, naive=True)
    lstm = steady.measure("lstm", here, repeat=1 if quick else 2, cpu_count=cpu_count, naive=True)
    small, big = (scale.run(n) for n in ((1000, 5000) if quick else (2000, 20000)))
    return {"steady_speedup": mlp["ours"][0]["speedup"], "bound_share": mlp["ours"][0]["bound_share"],
            "lstm_speedup": lstm["ours"][0]["speedup"],
            "orchestration_machine_share": big["machine_share"],
            "peak_mib_per_1000_combinations": scale.marginal(small, big)["peak_mib_per_1000_combinations"],
            "details": {"mlp": mlp, "lstm": lstm, "scale": [small, big]}}


def lines(result: dict) -> list[str]:
    big = result["details"]["scale"][1]
    names = {"steady_speedup": "steady state, MLP reference grid: ours over the naive way",
             "bound_share": "share of the arithmetic bound",
             "lstm_speedup": "LSTM grid: ours over the naive way",
             "orchestration_machine_share": f"main process's share of the machine, {big['combinations']:,} "
                                            "combinations",
             "peak_mib_per_1000_combinations": "main process's peak memory added per 1,000 combinations (MiB)"}
    out = []
    for key, (goal, sense) in GOALS.items():
        value = result[key]
        met = value >= goal if sense == ">=" else value <= goal
        shown = f"{value:.1%}" if "share" in key else f"{value:.1f}" + ("x" if "speedup" in key else "")
        wanted = f"{goal:.0%}" if "share" in key else f"{goal:g}" + ("x" if "speedup" in key else "")
        out.append(f"{names[key]}: {shown} (goal {sense} {wanted}: {'met' if met else 'not met'})")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller scale grids and one run each")
    parser.add_argument("--cpu-count", type=int, default=2)
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    result = headline(args.quick, args.cpu_count)
    (OUT / "headline.json").write_text(json.dumps(result, indent=2, default=str))
    for name in ("mlp", "lstm"):
        print("\n".join(steady.report(result["details"][name])))
    for row in result["details"]["scale"]:
        print(json.dumps(row))
    print("\n".join(lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
