"""What the deployment and interop checks in tools/ share: loopback ports the
kernel chooses, and waiting for a server to answer."""

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
