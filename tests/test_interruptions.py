"""End to end, interrupted: a run killed, a journal cut short, a worker killed, Ctrl-C; each resumes to the whole result."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from test_search import ROOT, run_search, write_config


def test_killed_sweep_resumes_to_the_uninterrupted_result(tmp_path, data_dir):
    """SIGKILL after some combinations finished, run again: same ranking as a run never killed."""
    grid = {"hidden_layers": [[1], [2, 1], [0.5], [3]], "learning_rate": [1e-2, 1e-3, 3e-4],
            "optimizer": ["adam", "sgd"], "max_epochs": [3]}
    config = write_config(tmp_path, data_dir, grid=grid)
    whole = run_search(config, tmp_path / "whole", "--cpu-count", "2")
    assert whole.returncode == 0, whole.stderr

    killed = subprocess.Popen([sys.executable, "search.py", "--config", str(config), "--results",
                               str(tmp_path / "killed"), "--no-progress", "--cpu-count", "1"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    journal = tmp_path / "killed" / "small" / "study.journal"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and killed.poll() is None:
        # two combinations recorded (a task's entries are JSON text inside its trial's record)
        if journal.exists() and journal.read_text().count('\\"reruns\\"') >= 2:
            break
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)  # the main process and its workers, as a power cut would
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"

    resumed = run_search(config, tmp_path / "killed", "--cpu-count", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "already finished and kept" in resumed.stderr
    compare = ["rank", "combination", "p_value", "tp", "fp", "tn", "fn"]
    before = pd.read_csv(tmp_path / "whole" / "small" / "ranking.csv")
    after = pd.read_csv(tmp_path / "killed" / "small" / "ranking.csv")
    pd.testing.assert_frame_equal(before[compare], after[compare])
    reruns = pd.read_csv(tmp_path / "killed" / "small" / "reruns.csv")
    assert len(reruns) == 24 * 3 and not reruns.duplicated(subset=["combination", "rerun"]).any()


def test_a_journal_cut_short_by_a_kill_is_repaired(tmp_path, data_dir):
    # two architectures, so two tasks: each recorded by a trial of its own
    config = write_config(tmp_path, data_dir, grid={"hidden_layers": [[1], [2, 1]]})
    assert run_search(config, tmp_path / "results").returncode == 0
    journal = tmp_path / "results" / "small" / "study.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    # cut the journal inside the record that finished the second task, as a kill mid-write would
    last = max(i for i, line in enumerate(lines) if b'"state":1,' in line)  # COMPLETE
    journal.write_bytes(b"".join(lines[:last]) + lines[last][:40])
    again = run_search(config, tmp_path / "results")
    assert again.returncode == 0, again.stderr
    assert "cut short" in again.stderr and "1 of 2 combinations already finished" in again.stderr
    third = run_search(config, tmp_path / "results")  # and the repaired journal stays readable
    assert "2 of 2 combinations already finished" in third.stderr
    assert len(pd.read_csv(tmp_path / "results" / "small" / "ranking.csv")) == 2


def worker_pids(parent: int, min_cpu_seconds: float = 0.0) -> list[int]:
    """The worker processes of a running search.py (loky's, its children) that have used at least
    `min_cpu_seconds` of CPU."""
    processes = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            status = (cmdline.parent / "status").read_text()
            command = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        processes[int(cmdline.parent.name)] = (ppid, command)
    workers = [pid for pid, (ppid, command) in processes.items() if ppid == parent and "popen_loky" in command]
    return [pid for pid in workers if cpu_seconds(pid) >= min_cpu_seconds]


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_a_worker_killed_mid_combination_costs_only_a_retry(tmp_path, data_dir):
    # long enough (~6 s a task with the C training step) that the kill lands mid-task even on a busy machine
    grid = {"hidden_layers": [[1], [2, 1]], "learning_rate": [1e-2, 1e-3], "max_epochs": [15000]}
    config = write_config(tmp_path, data_dir, grid=grid)
    proc = subprocess.Popen([sys.executable, "search.py", "--config", str(config), "--results",
                             str(tmp_path / "results"), "--no-progress", "--cpu-count", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, victims = time.monotonic() + 120, []
    while time.monotonic() < deadline and not victims and proc.poll() is None:
        time.sleep(0.1)
        # a worker busy for a while is training: loading torch costs it ~1.5 s of CPU, then it trains
        victims = worker_pids(proc.pid, min_cpu_seconds=3.0)
    assert victims, "no worker process found training"
    os.kill(victims[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    run = tmp_path / "results" / "small"
    ranking = pd.read_csv(run / "ranking.csv")
    assert len(ranking) == 4 and (ranking["reruns"] == 3).all()
    errors = pd.read_csv(run / "errors.csv")
    assert len(errors) >= 1 and set(errors["outcome"]) == {"retried"}
    assert errors["traceback"].str.contains("worker process").all()
    assert "4 combinations completed, 0 failed" in out


def test_ctrl_c_keeps_finished_work_and_says_how_to_resume(tmp_path, data_dir):
    # long enough (~0.3 s a task) that Ctrl-C lands after the first combination and before the last
    grid = {"hidden_layers": [[1], [2, 1], [0.5], [3]], "learning_rate": [1e-2, 1e-3, 3e-4], "max_epochs": [400]}
    config = write_config(tmp_path, data_dir, grid=grid)
    proc = subprocess.Popen([sys.executable, "search.py", "--config", str(config), "--results",
                             str(tmp_path / "results"), "--no-progress", "--cpu-count", "1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    journal = tmp_path / "results" / "small" / "study.journal"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and '\\"reruns\\"' in journal.read_text():
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Resume with:" in err and "Traceback" not in err
    finished = pd.read_csv(tmp_path / "results" / "small" / "ranking.csv")
    assert 0 < len(finished) < 12
    resumed = run_search(config, tmp_path / "results")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(finished)} of 12 combinations already finished" in resumed.stderr
    assert len(pd.read_csv(tmp_path / "results" / "small" / "ranking.csv")) == 12
