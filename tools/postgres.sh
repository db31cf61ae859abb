#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, in a directory of its own, on a
# loopback port.
#
#   tools/postgres.sh start DIR   initdb (if DIR is new) and start; prints the
#                                 environment the tests read (export it with
#                                 eval "$(tools/postgres.sh start DIR | sed 's/^/export /')"):
#                                   WORMHOLE_SYNC_TEST_POSTGRES=postgres://...
#                                   WORMHOLE_SYNC_TEST_POSTGRES_DIR=DIR
#   tools/postgres.sh stop DIR    stop it (fast: open sessions are ended)
#   tools/postgres.sh kill DIR    stop it at once (immediate: as a crash)
#
# It listens on 127.0.0.1 only, unless PG_LISTEN_ADDRESSES (for `start`)
# names more addresses (tools/netns-load.sh adds a link's).
#
# Run as root, the cluster belongs to the `postgres` user (initdb refuses root).
# The binaries are found by pg_config, or under /usr/lib/postgresql/*/bin.
set -euo pipefail

usage() { echo "usage: $0 start|stop|kill DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
command=$1
dir=$(realpath -m "$2")

bindir=""
if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then
  bindir=$(pg_config --bindir)
else
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "$0: no PostgreSQL server binaries (initdb) found; install the postgresql package" >&2
  exit 1
fi

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$command" in
  start)
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      mkdir -p "$dir"
      [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
      as_owner "$bindir/initdb" --pgdata "$dir/data" --username wormhole --auth trust \
        --encoding UTF8 --locale C >"$dir/initdb.log"
      # A port the kernel chose, remembered so a restart keeps it.
      python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' \
        >"$dir/port"
    fi
    port=$(cat "$dir/port")
    as_owner "$bindir/pg_ctl" --pgdata "$dir/data" --log "$dir/server.log" --wait start \
      -o "-c listen_addresses=${PG_LISTEN_ADDRESSES:-127.0.0.1} -p $port -k $dir -c max_connections=300 -c fsync=on" >/dev/null
    echo "WORMHOLE_SYNC_TEST_POSTGRES=postgres://wormhole@127.0.0.1:$port/postgres"
    echo "WORMHOLE_SYNC_TEST_POSTGRES_DIR=$dir"
    ;;
  stop)
    as_owner "$bindir/pg_ctl" --pgdata "$dir/data" --mode fast --wait stop >/dev/null
    ;;
  kill)
    as_owner "$bindir/pg_ctl" --pgdata "$dir/data" --mode immediate --wait stop >/dev/null
    ;;
  *) usage ;;
esac
