#!/usr/bin/env bash
# What `make test-infra` needs beyond `make install`: the PostgreSQL server from the distribution's
# packages and the `infra` extra (psycopg, the PostgreSQL driver) in the virtualenv.
#
#   scripts/infra-deps.sh                       # PYTHON defaults to .venv/bin/python
#
# The tests start every service themselves (tests/infra/services.py), on 127.0.0.1 only, and stop
# them at the end: this script installs, it starts nothing. Exit 2 with one line when PostgreSQL is
# missing and cannot be installed (not root, or no apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"

have_postgres() {
    ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1
}

if have_postgres; then
    echo "PostgreSQL server present"
elif command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing PostgreSQL (apt-get install postgresql)"
    # the package would create (and start) a default cluster on port 5432: the tests run a throw-away
    # one on a free port instead, so none is created
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/tidecast-infra.conf
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    have_postgres || { echo "error: apt-get installed postgresql but no pg_ctl was found" >&2; exit 2; }
else
    echo "error: the infra tests need the PostgreSQL server: run as root with apt-get, or install the 'postgresql' package" >&2
    exit 2
fi

"$PY" -c "import psycopg" 2>/dev/null || "$PY" -m pip install --quiet -e ".[infra]"
