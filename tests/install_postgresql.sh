#!/usr/bin/env bash
# Installs Debian's PostgreSQL server for the shared-study tests (tests/test_scale_out.py),
# if it is not there yet. The tests start their own throwaway server on 127.0.0.1; nothing
# is configured system-wide. Without root (and without sudo) it only says what is missing:
# the PostgreSQL tests then skip locally, and fail under CI=true.
set -euo pipefail
if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "note: PostgreSQL is not installed and this user cannot install it (apt-get install postgresql);" \
         "the PostgreSQL tests will be skipped." >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql >/dev/null
# Debian starts a cluster on install where it can; the tests do not need it
$SUDO service postgresql stop >/dev/null 2>&1 || true
