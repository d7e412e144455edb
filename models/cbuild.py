"""Compile a small C library once per machine into the user's cache folder, and reuse it.

Used for the fused training step's C library (models/native.py). The file name carries a digest of what makes the
build what it is (source, flags and, for code compiled for this very CPU, the
CPU's model and features), so a changed source or a home folder shared by
different machines never loads the wrong library; once built, a library is
found again without a compiler.
Builds are atomic: processes starting together never see half a file.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "precision-sweep"


def compiler() -> str:
    """The C compiler to use; raises FileNotFoundError when there is none."""
    found = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if found is None:
        raise FileNotFoundError("no C compiler (cc or gcc) on PATH")
    return found


def cpu_identity(cpuinfo_path: str = "/proc/cpuinfo") -> str:
    """The first processor's model name and feature flags (what -march=native compiles for)."""
    try:
        text = Path(cpuinfo_path).read_text()
    except OSError:
        return ""
    wanted = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "flags", "Features", "CPU part") and key not in wanted:
            wanted[key] = value.strip()
    return repr(sorted(wanted.items()))


def build(name: str, source: str, flags: list[str], folder: Path | None = None, for_this_cpu: bool = False) -> Path:
    """The shared library compiled from `source` with `flags`, built on first use.

    for_this_cpu: the flags target this machine's CPU (-march=native), so the
    CPU's identity is part of the digest.
    Raises OSError (no compiler, nowhere to write) or subprocess errors.
    """
    folder = folder or cache_folder()
    identity = "\0".join([source, " ".join(flags), cpu_identity() if for_this_cpu else ""])
    digest = hashlib.blake2b(identity.encode(), digest_size=6).hexdigest()
    library = folder / f"{name}_{digest}.so"
    if library.exists():  # built before: no compiler needed
        return library
    cc = compiler()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        source_file = Path(scratch) / f"{name}.c"
        source_file.write_text(source)
        built = Path(scratch) / library.name
        try:
            # libraries after the source: a linker that drops unneeded ones (--as-needed) reads in order
            libraries = [flag for flag in flags if flag.startswith("-l")]
            options = [flag for flag in flags if not flag.startswith("-l")]
            subprocess.run([cc, "-shared", "-fPIC", *options, "-o", str(built), str(source_file), *libraries],
                           check=True, capture_output=True, timeout=120)
        except subprocess.CalledProcessError as err:  # the compiler's words, without the scratch folder
            err.stderr = (err.stderr or b"").replace(f"{scratch}{os.sep}".encode(), b"")
            raise
        os.replace(built, library)
    return library


def failure(err: BaseException) -> str:
    """A failed build, said in a few words (no scratch paths, so the same failure reads the same in every process)."""
    if isinstance(err, subprocess.CalledProcessError):
        said = (err.stderr or b"").decode(errors="replace").strip().splitlines()
        said = [line for line in said if "error" in line] or said
        return f"{Path(err.cmd[0]).name} exited with status {err.returncode}" + (f": {said[0]}" if said else "")
    if isinstance(err, subprocess.TimeoutExpired):
        return f"the compiler took longer than {err.timeout:g} s"
    return str(err)
