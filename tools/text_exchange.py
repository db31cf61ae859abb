#!/usr/bin/env python3
"""One text exchange between two command-line clients through a mailbox
server, for timing whole exchanges (BENCHMARKS.md): the sender shows a
code, the receiver types it, the text arrives, both exit 0.

    tools/text_exchange.py --venv /tmp/mw --relay ws://127.0.0.1:4000/v1 \\
        --sender wormhole --receiver ours --ours target/release/wormhole-sync

Each of --sender and --receiver is `wormhole` (magic-wormhole's command from
--venv) or `ours` (wormhole-sync --magic-wormhole, the binary --ours).
Exits non-zero unless the text arrived and both sides succeeded.
"""

import argparse
import os
import re
import subprocess
import sys

TEXT = "the quick brown fox jumps over the lazy dog"


def command(kind, args, role, code=None):
    if kind == "wormhole":
        base = [os.path.join(args.venv, "bin", "wormhole"), "--relay-url", args.relay, "--transit-helper", "tcp:127.0.0.1:9"]
        return base + (["send", "--text", TEXT] if role == "send" else ["receive", code])
    base = [args.ours]
    rest = ["--magic-wormhole", "--rendezvous", args.relay, "--quiet"]
    return base + (["send", *rest, TEXT] if role == "send" else ["receive", *rest, code])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", required=True)
    parser.add_argument("--relay", required=True)
    parser.add_argument("--ours", default=os.path.join("target", "release", "wormhole-sync"))
    parser.add_argument("--sender", choices=["wormhole", "ours"], required=True)
    parser.add_argument("--receiver", choices=["wormhole", "ours"], required=True)
    args = parser.parse_args()
    sender = subprocess.Popen(command(args.sender, args, "send"), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    code = None
    for line in sender.stderr:
        match = re.search(r"(?:Wormhole code is|Invitation code): (\S+)", line)
        if match:
            code = match.group(1)
            break
    if code is None:
        sys.exit(f"the sender showed no code (exit {sender.wait()})")
    received = subprocess.run(command(args.receiver, args, "receive", code), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60)
    sender.stderr.read()
    if received.returncode != 0 or received.stdout.strip() != TEXT or sender.wait(timeout=60) != 0:
        sys.exit(f"the exchange failed: receiver {received.returncode} {received.stderr[-300:]!r}")


if __name__ == "__main__":
    main()
