"""What the deployment and interop checks in tools/ share: loopback ports the
kernel chooses, waiting for a server to answer, and reading the code a
`wormhole-sync send` shows."""

import re
import socket
import time
import urllib.request


def free_port():
    """A loopback port the kernel chose, free when this returns."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, seconds=30):
    """The body of `url` once it answers; exits with FAILED if it never does in `seconds`."""
    deadline = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.read().decode()
        except Exception:
            if time.time() > deadline:
                raise SystemExit(f"FAILED: {url} never answered")
            time.sleep(0.1)


def shown_code(sender, what):
    """The invitation code a running `wormhole-sync send` (`sender`, its standard
    error a text pipe) shows; exits with FAILED, naming `what`, if it shows none."""
    for line in sender.stderr:
        match = re.match(r"Invitation code: (\S+)", line)
        if match:
            return match.group(1)
    raise SystemExit(f"FAILED: {what}: showed no code (exit {sender.wait()})")
