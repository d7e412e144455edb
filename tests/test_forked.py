"""forked.run_split / start_split: jobs in a forked copy when that is safe, and every job done exactly once in effect.

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


def test_start_split_leaves_this_process_free_until_finish(tmp_path):
    """The copy runs its jobs while this process works; this process's jobs run at finish()."""
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from forked import start_split
        out = {str(tmp_path)!r}
        def job(name):
            def run():
                with open(os.path.join(out, name), "w") as f:
                    f.write(f"{{os.getpid()}} {{time.monotonic()}}")
            return run
        split = start_split([job("here")], [job("there")])
        time.sleep(0.5)  # the copy is done with its job long before this ends
        with open(os.path.join(out, "between"), "w") as f:
            f.write(f"{{os.getpid()}} {{time.monotonic()}}")
        split.finish()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pid, when = {}, {}
    for name in ("here", "there", "between"):
        p, t = (tmp_path / name).read_text().split()
        pid[name], when[name] = int(p), float(t)
    assert pid["here"] == pid["between"] != pid["there"]
    assert when["there"] < when["between"] < when["here"]
