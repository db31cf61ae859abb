#!/usr/bin/env python3
"""magic-wormhole.rs clients against our mailbox server with its defaults
(no --allow-list): a magic-wormhole.rs receiver asks `list` whether the
code's nameplate exists before it claims it, so this checks that our answer
to `list` lets it through without naming the nameplates in use.

  tools/magic_wormhole_rs.py --server target/debug/wormhole-sync-server \\
      --peer target/magic-wormhole-rs-peer/debug/magic-wormhole-rs-peer \\
      --ours target/debug/examples/magic_wormhole_peer

Scenarios, each both ways where the pair differs: magic-wormhole.rs to
magic-wormhole.rs; our library's magic-wormhole flavour to a
magic-wormhole.rs receiver; a magic-wormhole.rs sender to ours. Exits
non-zero on any failure.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

from checklib import free_port

APPID = "example.com/magic-wormhole-rs-interop"


def wait_for_port(port, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"FAILED: the server never listened on port {port}")


def exchange(url, sender, receiver):
    """`sender` sends, `receiver` receives (each a peer binary with the
    example peer's command line); returns what each received, in hex."""
    to_receiver, to_sender = b"from the sender".hex(), b"from the receiver".hex()
    sending = subprocess.Popen([sender, "send", url, APPID, to_receiver], stdout=subprocess.PIPE, text=True)
    code = None
    for line in sending.stdout:
        if line.startswith("code: "):
            code = line.split(": ", 1)[1].strip()
            break
    if code is None:
        raise SystemExit(f"FAILED: {sender} showed no code (exit {sending.wait()})")
    received = subprocess.run([receiver, "receive", url, APPID, to_sender, code],
                              stdout=subprocess.PIPE, text=True, timeout=60)
    if received.returncode != 0:
        sending.kill()
        sending.wait()
        raise SystemExit(f"FAILED: {os.path.basename(receiver)} could not receive from "
                         f"{os.path.basename(sender)} (exit {received.returncode}; its error is above)")
    rest, _ = sending.communicate(timeout=60)
    got_sender = next((l.split(": ", 1)[1].strip() for l in rest.splitlines() if l.startswith("received: ")), None)
    got_receiver = next((l.split(": ", 1)[1].strip() for l in received.stdout.splitlines()
                         if l.startswith("received: ")), None)
    ok = (got_sender, got_receiver) == (to_sender, to_receiver)
    if not ok or sending.returncode != 0 or received.returncode != 0:
        raise SystemExit(f"FAILED: {os.path.basename(sender)} -> {os.path.basename(receiver)}: the sender got "
                         f"{got_sender} (exit {sending.returncode}), the receiver {got_receiver} "
                         f"(exit {received.returncode})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True, help="our wormhole-sync-server binary")
    parser.add_argument("--peer", required=True, help="the magic-wormhole.rs peer (tools/magic-wormhole-rs-peer)")
    parser.add_argument("--ours", required=True, help="our example peer (examples/magic_wormhole_peer)")
    args = parser.parse_args()
    args.server, args.peer, args.ours = map(os.path.abspath, (args.server, args.peer, args.ours))
    state = tempfile.mkdtemp()
    port = free_port()
    # The server's defaults, but for the per-address limits: every client here is 127.0.0.1.
    server = subprocess.Popen([args.server, "--listen", f"127.0.0.1:{port}", "--memory",
                               "--rate-limit", "0", "--rate-limit-messages", "0"],
                              cwd=state, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        url = f"ws://127.0.0.1:{port}/v1"
        for sender, receiver in [(args.peer, args.peer), (args.ours, args.peer), (args.peer, args.ours)]:
            exchange(url, sender, receiver)
            print(f"ok: {os.path.basename(sender)} sent to {os.path.basename(receiver)} and back, through our server")
        print("magic-wormhole.rs interop: all passed")
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
