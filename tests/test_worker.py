"""The worker processes as search.py starts them: one torch thread each, and torch's objects out of the collector's way."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SCRIPT = """
import gc, json, worker
def inside():
    import gc, torch
    return {"threads": torch.get_num_threads(), "frozen": gc.get_freeze_count()}
worker.warm_up()
pool = worker.start_workers(1)
print(json.dumps({"worker": pool.submit(inside).result(), "main_frozen": gc.get_freeze_count()}))
worker.stop_workers(wait=True)
"""


def test_workers_train_on_one_thread_with_torch_frozen_out_of_garbage_collection():
    out = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.splitlines()[-1])
    # two processes on two cores that each keep torch's default thread count run 5-15x slower
    assert seen["worker"]["threads"] == 1
    # loky collects garbage after tasks; with torch's ~170,000 objects frozen that costs nothing
    assert seen["worker"]["frozen"] > 50_000
    assert seen["main_frozen"] == 0  # the main process keeps collecting normally
