"""Per-step cost of fused training, for tuning the trainer and plan.py's cost model.

    python -m bench.steps                                  # both reference architectures, E = 24
    python -m bench.steps --members 12,24,48 --dropout 0,0.2
    python -m bench.steps --code /tmp/old --code .         # A/B: another checkout's trainer against this one

Each configuration (code, architecture, members, dropout) runs in its own
process, as a worker runs it: one torch thread, synthetic data of the
reference sweep's shape (9,312 rows x 30 features, batch 32), members
alternating adam/rmsprop over four learning rates and sorted into optimizer
groups as train_task sorts them, rows gathered as train_members gathers them.
The processes stay up and take turns: each round, every configuration times
a burst of steps in CPU time while the others wait. On a shared, noisy
machine this keeps every variant under the same conditions, and the lower
quartile over the rounds is the steadiest figure (the median is printed too).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import mkl_shim  # noqa: E402
ARCHS = {"big": [2, 3, 2, 1, 0.5], "small": [2, 1, 0.5]}

_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
torch.set_flush_denormal(True)
import training
from fused_optim import FusedOptimizer, group_key
from models import build_model
from models.components import LOSSES
from models.dropout import DropoutPool
hidden, members, dropout, rows = json.loads(sys.argv[2])
g = torch.Generator().manual_seed(0)
x = torch.randn(rows, 30, generator=g)
y = (torch.rand(rows, generator=g) < 0.34).float()
arch = {"model": "mlp", "hidden_layers": hidden, "activation": "leaky_relu", "batch_size": 32, "max_epochs": 1,
        "loss_function": "bce", "dropout": dropout, "weight_initialization": "default",
        "l1_regularization": 0.0, "l2_regularization": 0.0, "lstm_hidden_size": None, "lstm_num_layers": None}
lrs = [1e-3, 5e-4, 1e-4, 5e-5]
params = sorted(({**arch, "optimizer": "adam" if i % 2 == 0 else "rmsprop", "learning_rate": lrs[(i // 2) % 4]}
                 for i in range(members)), key=group_key)
model = build_model(arch, params, 30, [training.member_generator(i, "init") for i in range(members)],
                    torch.device("cpu"))
blocks = (model.params.data_blocks, model.params.grad_blocks) if hasattr(model.params, "data_blocks") else (
    model.params.data, model.params.grad)  # an older checkout's one flat matrix
optimizer = FusedOptimizer(*blocks, params)
pool = DropoutPool([p["dropout"] for p in params], [training.member_generator(i, "dropout") for i in range(members)],
                   32 * model.max_dropout_window, torch.device("cpu"))
loss_fn = LOSSES["bce"]
order = torch.stack([torch.randperm(rows, generator=g) for _ in range(members)]).reshape(-1)
if hasattr(model.params, "own_block"):  # a feature-major checkout: gathered as train_members gathers
    xs = x.T.contiguous().index_select(1, order).view(30, members, rows).permute(1, 2, 0)
else:
    xs = x.index_select(0, order).view(members, rows, 30)
ys = y.index_select(0, order).view(members, rows)
start = 0
logits = torch.empty(members, rows)
def step():
    global start
    model.train_step(xs[:, start:start + 32], ys[:, start:start + 32], pool, loss_fn)
    optimizer.step()
    start = (start + 32) % (rows - 32)
def steps(n):
    # n steps, as train_members runs them: a block in one call where the checkout has that (models/native.py)
    global start
    if start + 32 * n > rows:
        start = 0
    window = slice(start, start + 32 * n)
    if not (hasattr(model, "train_block")
            and model.train_block(xs[:, window], ys[:, window], pool, loss_fn, optimizer, out=logits[:, window])):
        for _ in range(n):
            step()
    start = (start + 32 * n) % (rows - 32)
steps(30)
print("ready", flush=True)
for line in sys.stdin:
    n = int(line)
    t = time.thread_time()
    steps(n)
    print((time.thread_time() - t) / n * 1e3, flush=True)
"""


def start(code: Path, hidden, members: int, dropout: float, rows: int = 9312) -> subprocess.Popen:
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": ""}
    mkl_shim.preload_into(env)  # as the workers train: with MKL's AVX-512 kernels on AMD CPUs
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(code), json.dumps([hidden, members, dropout, rows])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"measurement process failed ({code})")
    return proc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="big,small", help=f"from {', '.join(ARCHS)}")
    parser.add_argument("--members", default="24")
    parser.add_argument("--dropout", default="0,0.2")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=60, help="steps per burst")
    parser.add_argument("--code", action="append", default=None,
                        help="checkout(s) whose trainer to time (default: this one)")
    args = parser.parse_args(argv)
    codes = [Path(c).resolve() for c in (args.code or [str(ROOT)])]
    configs = [(c, arch, members, dropout) for arch in args.arch.split(",")
               for members in map(int, args.members.split(",")) for dropout in map(float, args.dropout.split(","))
               for c in codes]
    procs = {}
    try:
        for config in configs:
            code, arch, members, dropout = config
            procs[config] = start(code, ARCHS[arch], members, dropout)
        times = {config: [] for config in configs}
        for _ in range(args.rounds):
            for config, proc in procs.items():
                proc.stdin.write(f"{args.steps}\n")
                proc.stdin.flush()
                times[config].append(float(proc.stdout.readline()))
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    for (code, arch, members, dropout), values in times.items():
        values = sorted(values)
        q25, median = values[len(values) // 4], statistics.median(values)
        print(json.dumps({"code": str(code), "arch": arch, "members": members, "dropout": dropout,
                          "ms_per_step_q25": round(q25, 3), "ms_per_step_median": round(median, 3),
                          "us_per_member_step_q25": round(q25 / members * 1e3, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
