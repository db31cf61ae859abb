"""A rendezvous server for the tests: the project's own, started on 127.0.0.1
with a port the OS chooses, in memory, and stopped afterwards.

The server is ``$WORMHOLE_SYNC_SERVER``, else the workspace's debug or release
build of ``wormhole-sync-server``, else the CLI's ``serve`` (the same server);
the CLI is ``$WORMHOLE_SYNC``, else the workspace's build. The tests fail
(never skip) without them. ``cargo test --workspace`` runs these tests too
(``cli/tests/python_package.rs``).
"""

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _binary(name: str, required: bool = True):
    given = os.environ.get(name.upper().replace("-", "_"))
    if given:
        return given
    for profile in ("debug", "release"):
        path = ROOT / "target" / profile / name
        if path.exists():
            return str(path)
    if not required:
        return None
    raise RuntimeError(
        "no %s binary: build it (cargo build -p wormhole-sync-server -p wormhole-sync) "
        "or set %s" % (name, name.upper().replace("-", "_"))
    )


@pytest.fixture(scope="session")
def server():
    """The server's URL."""
    binary = _binary("wormhole-sync-server", required=False)
    command = [binary] if binary else [_binary("wormhole-sync"), "serve"]
    process = subprocess.Popen(
        # Every test client is on 127.0.0.1: no per-address rate limit or cap.
        [
            *command,
            "--listen",
            "127.0.0.1:0",
            "--memory",
            "--rate-limit-exempt-loopback",
            "--max-channels-per-address",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RUST_LOG": "info", "NO_COLOR": "1"},
    )
    url = None
    for line in process.stdout:
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if found:
            url = found.group(1)
            break
    if url is None:
        process.kill()
        raise RuntimeError("the server did not start")
    # Its log goes on: read it, or a full pipe would stop the server mid-write.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def cli():
    """The Rust command-line tool."""
    return _binary("wormhole-sync")


def run_python(source: str, *args: str, env=None, **kwargs) -> subprocess.Popen:
    """Starts ``python -c source args...``."""
    return subprocess.Popen(
        [sys.executable, "-c", source, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def exchange_in_processes(server: str, initiator_source: str, receiver_source: str) -> None:
    """Runs an initiator and a receiver example, each in a process of its
    own: the initiator prints the code, the receiver is given it; each must
    print the other's data."""
    env = {"WORMHOLE_SYNC_RENDEZVOUS": server}
    initiator = run_python(initiator_source, env=env)
    first = initiator.stdout.readline()
    code = re.match(r"Invitation Code: (\S+)", first)
    assert code, (first, initiator.stderr.read() if initiator.poll() is not None else "")
    receiver = run_python(receiver_source, code.group(1), env=env)
    out_r, err_r = receiver.communicate(timeout=60)
    out_i, err_i = initiator.communicate(timeout=60)
    assert (receiver.returncode, initiator.returncode) == (0, 0), (err_r, err_i)
    assert out_r.strip() == "Their data: initiator's data"
    assert out_i.strip() == "Their data: receiver's data"


def both_data(initiator, receiver):
    """Both sides' ``get_data()`` at once (the receiver on a thread): the
    initiator's result, then the receiver's; an exception of either is raised."""
    got = {}

    def receive():
        try:
            got["receiver"] = receiver.get_data()
        except BaseException as error:  # raised below, on the test's thread
            got["error"] = error

    thread = threading.Thread(target=receive)
    thread.start()
    try:
        mine = initiator.get_data()
    finally:
        thread.join(60)
    if "error" in got:
        raise got["error"]
    return mine, got["receiver"]
