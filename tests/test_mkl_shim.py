"""The opt-in MKL shim (models/mkl_shim.py): which CPUs want it, and that the workers, only they, load it."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_search import ROOT, write_config

from models import mkl_shim

AMD_AVX512 = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu sse avx2 avx512f avx512cd avx512bw avx512dq avx512vl\n"


@pytest.mark.parametrize("cpuinfo, wanted", [
    (AMD_AVX512, True),
    (AMD_AVX512.replace(" avx512vl", ""), False),           # a subset MKL's AVX-512 path needs is missing
    (AMD_AVX512.replace("AuthenticAMD", "GenuineIntel"), False),  # MKL picks AVX-512 on Intel by itself
    ("vendor_id\t: AuthenticAMD\nflags\t\t: fpu sse avx2\n", False),
])
def test_which_cpus_want_the_shim(cpuinfo, wanted):
    assert mkl_shim.cpu_wants_shim(cpuinfo) == wanted


def test_nothing_without_opting_in(monkeypatch):
    monkeypatch.delenv(mkl_shim.OPT_IN, raising=False)
    mkl_shim.worker_environment.cache_clear()
    assert mkl_shim.worker_environment() == {}
    mkl_shim.worker_environment.cache_clear()


def test_opted_in_the_workers_load_it_and_the_main_process_does_not(tmp_path, data_dir):
    if not mkl_shim.cpu_wants_shim(Path("/proc/cpuinfo").read_text()):
        pytest.skip("this CPU does not want the shim (not an AMD CPU with AVX-512)")
    config = write_config(tmp_path, data_dir, grid={"learning_rate": [1e-2]})
    script = ("import sys; from models import mkl_shim; from sweep.commands import search; "
              "code = search(sys.argv[1:]); print(code, mkl_shim.loaded_here())")
    done = subprocess.run([sys.executable, "-c", script, "--config", str(config), "--results", str(tmp_path / "out"),
                           "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, mkl_shim.OPT_IN: "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["0", "False"]  # the main process never loads it
    summary = json.loads((tmp_path / "out" / "small" / "summary.json").read_text())
    assert summary["sweep"]["mkl_avx512_on_amd"] is True
