"""Opt-in (SWEEP_MKL_SHIM=1): let Intel MKL use its AVX-512 kernels on AMD CPUs, in the workers only.

MKL, which torch calls for its matmuls on the CPU, picks its kernels by CPU
*vendor*: on an AMD CPU with AVX-512 (Zen 4 and later) it runs its AVX2
code. MKL asks one internal function, mkl_serv_intel_cpu_true(), whether the
CPU is Intel's; a one-line library that answers yes, preloaded into the
worker processes, makes MKL choose by the CPU's features, as it does on
Intel CPUs. Measured in steady state (python -m bench.steady, AMD EPYC,
2 cores): 1.33x faster training on the reference grid.

The risk, and why it is opt-in: it replaces a function inside MKL, which a
future MKL may rename or stop asking (then it silently does nothing: the
first task reports whether it took effect, summary.json records it); and the
AVX-512 kernels sum in another order, so a run's numbers differ in the last
digits from a run without it (a p-value at a tie can move; a resumed run
should keep the same choice). Linux only; built once with the system's C
compiler (models/cbuild.py). Nothing here imports torch: the main process
builds the library and hands the workers their environment (sweep/pool.py).
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

from models import cbuild

OPT_IN = "SWEEP_MKL_SHIM"
SOURCE = "int mkl_serv_intel_cpu_true(void) { return 1; }\n"
# MKL's AVX-512 code path is that of Intel's Skylake-SP and later: these subsets
NEEDED_FLAGS = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}


def cpu_wants_shim(cpuinfo: str) -> bool:
    """Whether MKL would run slower kernels than this CPU can take (/proc/cpuinfo's text)."""
    vendor, flags = None, set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and vendor is None:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return vendor == "AuthenticAMD" and NEEDED_FLAGS <= flags


@functools.cache
def worker_environment(cpuinfo_path: str = "/proc/cpuinfo") -> dict:
    """The environment variables the workers need for the shim: {} unless opted in and it applies and builds."""
    if os.environ.get(OPT_IN) != "1" or not sys.platform.startswith("linux"):
        return {}
    try:
        wanted = cpu_wants_shim(Path(cpuinfo_path).read_text())
    except OSError:
        wanted = False
    if not wanted:
        print(f"note: {OPT_IN}=1 does nothing here: it helps only on AMD CPUs with AVX-512.", file=sys.stderr)
        return {}
    try:
        library = cbuild.build("mkl_intel_cpu", SOURCE, ["-O2"])
    except (OSError, subprocess.SubprocessError) as err:
        print(f"note: {OPT_IN}=1, but building its library failed ({cbuild.failure(err)}); training runs with "
              f"MKL's AVX2 kernels.", file=sys.stderr)
        return {}
    if any(c.isspace() or c == ":" for c in str(library)):  # LD_PRELOAD separates entries with spaces and colons
        return {}
    return {"LD_PRELOAD": f"{library} {os.environ.get('LD_PRELOAD', '')}".strip()}


def loaded_here() -> bool:
    """Whether this process has the library loaded: a worker's answer says the shim took effect."""
    try:
        with open("/proc/self/maps") as maps:
            return any("/mkl_intel_cpu_" in line for line in maps)
    except OSError:
        return False
