"""mkl_shim: which CPUs get MKL's AVX-512 kernels, that the library builds and answers yes, and that workers load it."""
import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mkl_shim

ROOT = Path(__file__).resolve().parent.parent
AVX512 = "avx512f avx512dq avx512cd avx512bw avx512vl"


def cpuinfo(vendor: str, flags: str) -> str:
    # two processors, as /proc/cpuinfo lists them
    block = f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: 26\nflags\t\t: fpu sse2 avx2 fma {flags}\n"
    return block + "\n" + block.replace(": 0", ": 1", 1)


@pytest.mark.parametrize("vendor, flags, wanted", [
    ("AuthenticAMD", AVX512 + " avx512_bf16", True),           # Zen 4 / Zen 5
    ("AuthenticAMD", "", False),                               # Zen 2 / Zen 3: MKL's AVX2 code is all it can run
    ("AuthenticAMD", AVX512.replace(" avx512bw", ""), False),  # a subset MKL's AVX-512 path needs is missing
    ("GenuineIntel", AVX512, False),                           # MKL already picks its best kernels on Intel
])
def test_which_cpus_get_the_shim(vendor, flags, wanted):
    assert mkl_shim.cpu_wants_shim(cpuinfo(vendor, flags)) is wanted


def _compiler_or_skip():
    if not (shutil.which("cc") or shutil.which("gcc")):
        if os.environ.get("CI"):
            pytest.fail("CI machines have gcc; the shim must build there")
        pytest.skip("no C compiler")


def test_built_library_answers_that_the_cpu_is_intel(tmp_path):
    _compiler_or_skip()
    library = mkl_shim.build(tmp_path)
    assert library.exists() and library.parent == tmp_path
    assert ctypes.CDLL(str(library)).mkl_serv_intel_cpu_true() == 1
    assert mkl_shim.build(tmp_path) == library  # built once, then reused
    assert [p.name for p in tmp_path.iterdir()] == [library.name]  # no scratch files left behind


def test_opt_out_and_other_cpus_get_no_preload(tmp_path, monkeypatch):
    amd = tmp_path / "amd"
    amd.write_text(cpuinfo("AuthenticAMD", AVX512))
    intel = tmp_path / "intel"
    intel.write_text(cpuinfo("GenuineIntel", AVX512))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mkl_shim.worker_preload.cache_clear()
    try:
        assert mkl_shim.worker_preload(str(intel)) is None
        monkeypatch.setenv(mkl_shim.OPT_OUT, "0")
        assert mkl_shim.worker_preload(str(amd)) is None
        monkeypatch.delenv(mkl_shim.OPT_OUT)
        mkl_shim.worker_preload.cache_clear()
        _compiler_or_skip()
        assert mkl_shim.worker_preload(str(amd)).parent == tmp_path / "cache" / "precision-sweep"
    finally:
        mkl_shim.worker_preload.cache_clear()


def test_environment_puts_the_shim_first_once():
    env = {"LD_PRELOAD": "/opt/other.so"}
    mkl_shim.add_to_environment(Path("/cache/mkl_intel_cpu_x.so"), env)
    mkl_shim.add_to_environment(Path("/cache/mkl_intel_cpu_x.so"), env)
    assert env["LD_PRELOAD"] == "/cache/mkl_intel_cpu_x.so /opt/other.so"


def test_workers_load_the_shim_on_cpus_that_want_it():
    """The sweep's own workers, started as search.py starts them: the library is mapped there, never in this process."""
    wanted = mkl_shim.cpu_wants_shim(Path("/proc/cpuinfo").read_text())
    if wanted:
        _compiler_or_skip()
    script = ("import sys, worker, mkl_shim; worker.warm_up(); pool = worker.start_workers(1); "
              "print(pool.submit(mkl_shim.loaded_here).result(), mkl_shim.loaded_here()); "
              "worker.stop_workers(wait=True)")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", mkl_shim.OPT_OUT)}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr
    in_worker, in_main = out.stdout.split()
    assert in_worker == str(wanted) and in_main == "False"
