"""The process boundary: the workers train on one torch thread each, and the main process never loads torch."""
import json
import subprocess
import sys
from pathlib import Path

from helpers import write_dat
from test_search import write_config

ROOT = Path(__file__).resolve().parent.parent

_SCRIPT = """
import json, sys
from sweep import pool
from sweep.commands import search
def threads(_):
    import torch
    return torch.get_num_threads()
code = search(["--config", sys.argv[1], "--results", sys.argv[2], "--no-progress", "--cpu-count", "2"])
executor = pool.start_workers(2)
print(json.dumps({"code": code, "torch_here": "torch" in sys.modules,
                  "worker_threads": executor.submit(threads, None).result()}))
pool.stop_workers()
"""


def test_workers_train_on_one_thread_and_the_main_process_never_imports_torch(tmp_path):
    write_dat(tmp_path / "train.csv", 200, seed=1)
    write_dat(tmp_path / "test.csv", 100, seed=2)
    config = write_config(tmp_path, tmp_path, grid={"learning_rate": [1e-2, 1e-3]})
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(config), str(tmp_path / "results")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.splitlines()[-1])
    assert seen["code"] == 0
    assert not seen["torch_here"]  # the sweep trained, in the workers only
    # two processes on two cores that each keep torch's default thread count run 5-15x slower
    assert seen["worker_threads"] == 1
