#!/usr/bin/env bash
# Runs wormhole-sync-instances-load with the instances (and the load) in a
# network namespace of their own, so every round trip to PostgreSQL crosses
# a link (a veth pair) instead of the loopback interface. Needs root and
# `ip`; the cluster is one `tools/postgres.sh start DIR` made.
#
#   tools/netns-load.sh DIR [instances-load options...]
#
# The namespace, the link and the cluster's extra listen address last only
# for the run: the cluster is restarted listening on 10.77.0.1 too (and
# 10.77.0.0/24 trusted in pg_hba.conf), and restarted again without it at
# the end. Example, beside the same run on loopback:
#
#   tools/netns-load.sh /tmp/pg --instances 1,2,3
#   target/release/wormhole-sync-instances-load --postgres "$WORMHOLE_SYNC_TEST_POSTGRES" --instances 1,2,3
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 DIR [wormhole-sync-instances-load options]" >&2; exit 2; }
dir=$(realpath "$1")
shift
root=$(cd "$(dirname "$0")/.." && pwd)
load="$root/target/release/wormhole-sync-instances-load"
[ -x "$load" ] || { echo "$0: build it first: cargo build --release -p wormhole-sync-bench -p wormhole-sync-server" >&2; exit 1; }

ns=wormhole-sync-load
host_addr=10.77.0.1
ns_addr=10.77.0.2
port=$(cat "$dir/port")
hba="$dir/data/pg_hba.conf"
trusted="host all all 10.77.0.0/24 trust # tools/netns-load.sh"

cleanup() {
  ip netns del "$ns" 2>/dev/null || true
  ip link del ws-load-host 2>/dev/null || true
  sed -i '/# tools\/netns-load.sh/d' "$hba" 2>/dev/null || true
  "$root/tools/postgres.sh" stop "$dir" >/dev/null 2>&1 || true
  "$root/tools/postgres.sh" start "$dir" >/dev/null
}
trap cleanup EXIT

ip netns add "$ns"
ip link add ws-load-host type veth peer name ws-load-ns
ip link set ws-load-ns netns "$ns"
ip addr add "$host_addr/24" dev ws-load-host
ip link set ws-load-host up
ip netns exec "$ns" ip addr add "$ns_addr/24" dev ws-load-ns
ip netns exec "$ns" ip link set ws-load-ns up
ip netns exec "$ns" ip link set lo up

# The cluster listens on the link too, for this run only.
echo "$trusted" >>"$hba"
"$root/tools/postgres.sh" stop "$dir" >/dev/null
PG_LISTEN_ADDRESSES="127.0.0.1,$host_addr" "$root/tools/postgres.sh" start "$dir" >/dev/null

# A statement's round trip each way (psql's own timing, median of 200).
round_trip() {
  python3 - "$@" <<'PY'
import subprocess, sys, statistics
cmd = sys.argv[1:-1]
url = sys.argv[-1]
script = "\\timing on\n" + "SELECT 1;\n" * 200
out = subprocess.run(cmd + ["psql", "-qtA", url], input=script, capture_output=True, text=True).stdout
times = [float(l.split()[1]) for l in out.splitlines() if l.startswith("Time:")]
print(f"{statistics.median(times):.3f} ms")
PY
}
echo "SELECT 1 over loopback: $(round_trip env "postgres://wormhole@127.0.0.1:$port/postgres")"
echo "SELECT 1 over the link: $(round_trip ip netns exec "$ns" "postgres://wormhole@$host_addr:$port/postgres")"
cd "$root"
ip netns exec "$ns" "$load" --postgres "postgres://wormhole@$host_addr:$port/postgres" "$@"
