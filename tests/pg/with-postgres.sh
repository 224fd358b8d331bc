#!/usr/bin/env bash
# Runs CMD... with ACP_TEST_POSTGRES_URL pointing at a PostgreSQL server.
#
# - ACP_TEST_POSTGRES_URL already set: runs CMD as it is.
# - Otherwise, when Debian's PostgreSQL server is installed (/usr/lib/postgresql/*/bin/initdb),
#   starts a throw-away cluster in a temporary directory, listening on a unix socket and a free
#   loopback port only, runs CMD against it and removes the cluster afterwards.
# - Otherwise runs CMD without it (the PostgreSQL tests are then skipped) and says so.
# The throw-away cluster skips fsync (tests need no durability), unless ACP_PG_DURABLE=1 (the
# ingest bench): then it runs as a production server would, fsync and synchronous commit on,
# with the WAL room of a write-heavy one.
set -euo pipefail

if [[ -n "${ACP_TEST_POSTGRES_URL:-}" ]]; then
    exec "$@"
fi
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z "$bindir" || ! -x "$bindir/initdb" ]]; then
    echo "with-postgres: no PostgreSQL server installed; PostgreSQL tests are skipped" >&2
    exec "$@"
fi

dir=$(mktemp -d /tmp/acp-pg.XXXXXX)
# initdb refuses to run as root: the cluster belongs to an unprivileged user.
as_owner=()
if [[ $(id -u) -eq 0 ]]; then
    owner=postgres
    id -u "$owner" >/dev/null 2>&1 || owner=nobody
    chown "$owner" "$dir"
    as_owner=(runuser -u "$owner" --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop() {
    "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT

"${as_owner[@]}" "$bindir/initdb" -D "$dir/data" -U acp --auth=trust --no-sync >/dev/null
settings="-c fsync=off"
# Durable, with the WAL room a write-heavy server is given (PostgreSQL's default max_wal_size of
# 1 GB starts a checkpoint about every 40 s at the bench's rate, in the middle of its runs).
[[ "${ACP_PG_DURABLE:-}" == 1 ]] && settings="-c fsync=on -c max_wal_size=8GB -c checkpoint_timeout=15min"
"${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir $settings -c max_connections=200" start >/dev/null
export ACP_TEST_POSTGRES_URL="postgres://acp@127.0.0.1:$port/postgres"
echo "with-postgres: throw-away PostgreSQL at $ACP_TEST_POSTGRES_URL" >&2
"$@"
