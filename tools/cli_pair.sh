#!/usr/bin/env bash
# One whole `send`/`receive` pair on loopback, as two processes: send starts,
# prints its code, receive types it, both exit. Times the pair as a whole:
#   tools/cli_pair.sh BINARY RENDEZVOUS_URL
# (start a server first: wormhole-sync serve --memory --listen 127.0.0.1:4711).
set -euo pipefail
bin=${1:?binary}; url=${2:?rendezvous URL}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
mkfifo "$dir/err"
WORMHOLE_SYNC_RENDEZVOUS=$url "$bin" send 'initiator data' >"$dir/out" 2>"$dir/err" &
sender=$!
code=$(grep -m1 '^Invitation code: ' "$dir/err" | cut -d' ' -f3; cat "$dir/err" >/dev/null &)
got=$(WORMHOLE_SYNC_RENDEZVOUS=$url "$bin" receive "$code" 'receiver data' </dev/null)
wait "$sender"
[ "$got" = 'initiator data' ] && [ "$(cat "$dir/out")" = 'receiver data' ]
