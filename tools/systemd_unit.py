#!/usr/bin/env python3
"""Checks deploy/wormhole-sync.service as written:

  1. `systemd-analyze verify` accepts it without a word, as shipped and with its
     port-443 lines uncommented (the binary's path pointed at the one built here);
  2. its ExecStart command line runs: the server starts on SQLite in the state
     directory (a temporary one here, on a loopback port), answers /health and an
     exchange, survives ExecReload's SIGHUP, and exits 0 on KillSignal (SIGTERM)
     within TimeoutStopSec, its database in the state directory.

  tools/systemd_unit.py --binary target/debug/wormhole-sync

Needs systemd-analyze (Debian's systemd). Exits non-zero on any failure.
"""

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time

from checklib import free_port, shown_code, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT = os.path.join(ROOT, "deploy", "wormhole-sync.service")
INSTALLED = "/usr/local/bin/wormhole-sync"
STATE = "/var/lib/wormhole-sync"


def fail(why):
    raise SystemExit(f"FAILED: {why}")


def setting(text, key):
    values = re.findall(rf"^{key}=(.*)$", text, re.M)
    if len(values) != 1:
        fail(f"the unit sets {key} {len(values)} times")
    return values[0]


def verify(text, folder, name):
    path = os.path.join(folder, name)
    with open(path, "w") as unit:
        unit.write(text)
    result = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True)
    said = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or said:
        fail(f"systemd-analyze verify {name} (exit {result.returncode}): {said}")
    print(f"{name}: systemd-analyze verify says nothing: ok")




def exchange(binary, url):
    """One exchange through the server with the command-line tool."""
    env = {**os.environ, "WORMHOLE_SYNC_RENDEZVOUS": url}
    sender = subprocess.Popen([binary, "send", "--quiet", "from the service"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code = shown_code(sender, "the sender")
    received = subprocess.run([binary, "receive", "--quiet", code, "reply"], env=env, capture_output=True, text=True,
                              timeout=60)
    out, _ = sender.communicate(timeout=60)
    if received.stdout != "from the service" or out != "reply":
        fail(f"the exchange gave {received.stdout!r} and {out!r}: {received.stderr}")
    print("an exchange through the service's server: ok")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True, help="the built wormhole-sync binary")
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    text = open(UNIT).read()

    with tempfile.TemporaryDirectory() as folder:
        here = text.replace(INSTALLED, binary)
        verify(here, folder, "wormhole-sync.service")
        https = re.sub(r"^#(AmbientCapabilities|CapabilityBoundingSet)=", r"\1=", here, flags=re.M)
        bounding = re.findall(r"^CapabilityBoundingSet=(.*)$", https, re.M)
        if "AmbientCapabilities=CAP_NET_BIND_SERVICE" not in https or bounding[-1:] != ["CAP_NET_BIND_SERVICE"]:
            # A later empty CapabilityBoundingSet= would take the capability away again.
            fail(f"uncommented, the port-443 lines do not grant CAP_NET_BIND_SERVICE last: {bounding}")
        verify(https, folder, "wormhole-sync-https.service")

        # ExecStart as written, with the state directory and port moved to this test's own.
        state = os.path.join(folder, "state")
        os.mkdir(state, 0o700)
        port = free_port()
        command = setting(text, "ExecStart").replace(INSTALLED, binary).replace(STATE, state)
        command = command.replace("0.0.0.0:4000", f"127.0.0.1:{port}")
        if f"127.0.0.1:{port}" not in command or state not in command:
            fail(f"ExecStart is not the command this check expects: {command}")
        server = subprocess.Popen(shlex.split(command), cwd=state, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            url = f"http://127.0.0.1:{port}"
            health = wait_for(f"{url}/health")
            if '"ok"' not in health:
                fail(f"/health said {health}")
            exchange(binary, url)
            if setting(text, "ExecReload") != "/bin/kill -HUP $MAINPID":
                fail("ExecReload is not the SIGHUP this check sends")
            server.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            wait_for(f"{url}/health")
            print("SIGHUP (ExecReload): the server goes on: ok")
            if setting(text, "KillSignal") != "SIGTERM":
                fail("KillSignal is not the SIGTERM this check sends")
            stop_within = int(setting(text, "TimeoutStopSec"))
            server.send_signal(signal.SIGTERM)
            status = server.wait(timeout=stop_within)
            if status != 0:
                fail(f"the server exited {status} on SIGTERM: {server.stderr.read().decode()[-2000:]}")
            print(f"SIGTERM (KillSignal): exit 0 within {stop_within}s: ok")
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        if not os.path.exists(os.path.join(state, "rendezvous.sqlite3")):
            fail("no database in the state directory")
        print("the database is in the state directory: ok")


if __name__ == "__main__":
    sys.exit(main())
