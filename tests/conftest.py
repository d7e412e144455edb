"""Shared test setup: the repository's packages importable, small D.AT files, a PostgreSQL server."""
import glob
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy
from helpers import write_dat

REPO_ROOT = Path(__file__).resolve().parent.parent

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


# ---------------------------------------------------------------- small D.AT files
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    write_dat(folder / "train.csv", 400, seed=1)
    write_dat(folder / "test.csv", 200, seed=2)
    return folder


# ---------------------------------------------------------------- PostgreSQL

def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A throwaway PostgreSQL server on 127.0.0.1 for the multi-machine tests, and a database URL on it.

    Uses Debian's `postgresql` package (.ci/run installs it). The server runs
    as the `postgres` user when the tests run as root (initdb refuses root),
    listens on loopback only, and is stopped at the end of the session.
    """
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        message = "PostgreSQL is not installed (Debian package 'postgresql'; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)  # in CI these tests must run, never skip
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("postgres")
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        os.chmod(folder, 0o755)
        for parent in folder.parents:  # the postgres user must be able to reach its folder
            if str(parent).startswith(str(tmp_path_factory.getbasetemp().parent)):
                os.chmod(parent, os.stat(parent).st_mode | 0o011)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    subprocess.run(as_user + [initdb, "-D", str(data), "-A", "trust", "-U", "sweep", "--no-sync"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(as_user + [pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        engine = sqlalchemy.create_engine(f"postgresql://sweep@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("CREATE DATABASE sweeps"))
        engine.dispose()
        yield f"postgresql://sweep@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run(as_user + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
