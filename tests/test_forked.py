"""forked.run_split: half the jobs in a forked copy when that is safe, and every job done exactly once in effect.

Each case runs in a fresh interpreter: the test process itself has threads
(from other tests), and with another thread alive run_split must not fork.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_case(tmp_path: Path, body: str) -> dict[str, int]:
    """Run jobs 'a'..'d', each writing the pid that ran it to a file; return {job: pid} and the parent's pid."""
    script = textwrap.dedent(f"""
        import json, os, sys, threading
        sys.path.insert(0, {str(ROOT)!r})
        from forked import run_split
        out = {str(tmp_path)!r}
        parent = os.getpid()
        def job(name):
            def run():
                with open(os.path.join(out, name), "w") as f:
                    f.write(str(os.getpid()))
            return run
        jobs = [job(name) for name in "abcd"]
    """) + textwrap.dedent(body) + textwrap.dedent("""
        run_split(jobs)
        print(json.dumps({"parent": parent}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pids = {name: int((tmp_path / name).read_text()) for name in "abcd"}
    return {**pids, "parent": json.loads(done.stdout.splitlines()[-1])["parent"]}


def test_half_the_jobs_run_in_a_forked_copy(tmp_path):
    pids = run_case(tmp_path, "")
    assert pids["a"] == pids["b"] == pids["parent"]
    assert pids["c"] == pids["d"] != pids["parent"]


def test_jobs_of_a_failed_copy_run_here(tmp_path):
    pids = run_case(tmp_path, """
        def failing_in_copy():
            if os.getpid() != parent:
                raise RuntimeError("the copy fails")
            job("d")()
        jobs[3] = failing_in_copy
    """)
    assert pids["d"] == pids["parent"]  # done again here after the copy failed


def test_no_fork_while_another_thread_runs(tmp_path):
    pids = run_case(tmp_path, """
        stop = threading.Event()
        threading.Thread(target=stop.wait, daemon=True).start()
    """)
    assert {pids[name] for name in "abcd"} == {pids["parent"]}
