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


class PostgresServer:
    """A throwaway PostgreSQL server on 127.0.0.1 that a test may stop and start again (an outage).

    Uses Debian's `postgresql` package (.ci/run installs it). The server runs
    as the `postgres` user when the tests run as root (initdb refuses root)
    and listens on loopback only. With a password, connections over TCP
    must give it (scram-sha-256); without, they are trusted.
    """

    def __init__(self, folder: Path, basetemp: Path, password: str | None = None) -> None:
        initdb, self.pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
        if initdb is None or self.pg_ctl is None:
            message = "PostgreSQL is not installed (Debian package 'postgresql'; .ci/run installs it)"
            if os.environ.get("CI"):
                pytest.fail(message)  # in CI these tests must run, never skip
            pytest.skip(message)
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
            os.chmod(folder, 0o755)
            for parent in folder.parents:  # the postgres user must be able to reach its folder
                if str(parent).startswith(str(basetemp.parent)):
                    os.chmod(parent, os.stat(parent).st_mode | 0o011)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.folder, self.data, self.port = folder, folder / "data", _free_port()
        auth = ["--auth-local", "trust", "--auth-host", "scram-sha-256"] if password else ["-A", "trust"]
        subprocess.run(self.as_user + [initdb, "-D", str(self.data), *auth, "-U", "sweep", "--no-sync"],
                       check=True, capture_output=True)
        self.start()
        if password:  # set over the local socket, which stays trusted
            subprocess.run(self.as_user + [_postgres_bin("psql"), "-h", str(folder), "-p", str(self.port), "-U",
                                           "sweep", "-d", "postgres", "-c", f"ALTER ROLE sweep PASSWORD '{password}'"],
                           check=True, capture_output=True)
        login = f"sweep:{password}" if password else "sweep"
        engine = sqlalchemy.create_engine(f"postgresql://{login}@127.0.0.1:{self.port}/postgres",
                                          isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("CREATE DATABASE sweeps"))
        engine.dispose()
        self.url = f"postgresql://{login}@127.0.0.1:{self.port}/sweeps"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        subprocess.run(self.as_user + [self.pg_ctl, "-D", str(self.data), "-o", options, "-l",
                                       str(self.folder / "log"), "-w", "start"], check=True, capture_output=True)

    def stop(self) -> None:
        """As a crash or a cut network would: connections drop, nothing is shut down politely."""
        subprocess.run(self.as_user + [self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                       capture_output=True)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A database URL on a PostgreSQL server shared by the session's multi-machine tests."""
    server = PostgresServer(tmp_path_factory.mktemp("postgres"), tmp_path_factory.getbasetemp())
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_server(tmp_path_factory):
    """A PostgreSQL server of the test's own, which it may stop and start (outages)."""
    server = PostgresServer(tmp_path_factory.mktemp("postgres"), tmp_path_factory.getbasetemp())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_with_password(tmp_path_factory):
    """A PostgreSQL server of the test's own whose role `sweep` logs in with the password 'hunter2-secret'."""
    server = PostgresServer(tmp_path_factory.mktemp("postgres"), tmp_path_factory.getbasetemp(),
                            password="hunter2-secret")
    try:
        yield server
    finally:
        server.stop()
