#!/usr/bin/env bash
# Start (or stop) a throwaway PostgreSQL server for the event-store tests.
#
#   scripts/start-postgres.sh start DIR [PORT]   -> prints postgresql://postgres@127.0.0.1:PORT/postgres
#   scripts/start-postgres.sh stop DIR
#
# DIR is created (initdb) when empty. The server listens on 127.0.0.1 only, with trust
# authentication: for tests, never for a deployment. As root, initdb and the server run
# as the `postgres` system user (initdb refuses root). The binaries are looked for on
# PATH, then under /usr/lib/postgresql/*/bin (Debian's layout). CI usage:
#   export RECLOOP_TEST_POSTGRES_URL=$(scripts/start-postgres.sh start /tmp/recloop-pg 55432)
set -euo pipefail
action=${1:?usage: start-postgres.sh start|stop DIR [PORT]}
dir=${2:?usage: start-postgres.sh start|stop DIR [PORT]}
port=${3:-55432}

bindir=""
if ! command -v pg_ctl >/dev/null 2>&1; then
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$bindir" ] || { echo "start-postgres.sh: PostgreSQL not found (apt-get install postgresql)" >&2; exit 1; }
  bindir="$bindir/"
fi
as_owner=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || { echo "start-postgres.sh: running as root needs a 'postgres' user" >&2; exit 1; }
  as_owner=(runuser -u postgres --)
fi

case "$action" in
  start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ "$(id -u)" = 0 ]; then
      chown postgres "$dir"
      runuser -u postgres -- test -x "$dir" || {
        echo "start-postgres.sh: user postgres cannot reach $dir; make its parent folders traversable (chmod o+x)" >&2
        exit 1; }
    fi
    if [ ! -f "$dir/PG_VERSION" ]; then
      "${as_owner[@]}" "${bindir}initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >"$dir/../$(basename "$dir").initdb.log" 2>&1 \
        || { echo "start-postgres.sh: initdb failed, see $dir/../$(basename "$dir").initdb.log" >&2; exit 1; }
    fi
    "${as_owner[@]}" "${bindir}pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=on -c max_connections=100" start >/dev/null \
      || { echo "start-postgres.sh: the server did not start, see $dir/server.log" >&2; exit 1; }
    echo "postgresql://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    dir=$(cd "$dir" && pwd)
    [ -f "$dir/postmaster.pid" ] && "${as_owner[@]}" "${bindir}pg_ctl" -D "$dir" -m fast -w stop >/dev/null
    ;;
  *)
    echo "usage: start-postgres.sh start|stop DIR [PORT]" >&2; exit 2;;
esac
