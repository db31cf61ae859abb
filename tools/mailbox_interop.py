#!/usr/bin/env python3
"""Interop scenarios for magic-wormhole's mailbox protocol: the unmodified
`wormhole` command (and raw WebSocket clients) against a mailbox server on
127.0.0.1, each scenario checking what the reference client reports.

    python3 -m venv /tmp/mw
    /tmp/mw/bin/pip install magic-wormhole==0.24.0 magic-wormhole-mailbox-server==0.8.0 websockets==15.0.1
    /tmp/mw/bin/python tools/mailbox_interop.py --venv /tmp/mw --server reference
    cargo build -p wormhole-sync-server
    /tmp/mw/bin/python tools/mailbox_interop.py --venv /tmp/mw --server ours

Scenarios:
  text       `wormhole send --text` to `wormhole receive`: the text arrives, both exit 0
  wrong-code `wormhole receive` with a wrong word: both sides fail, reporting it
  crowded    two sides hold a nameplate; `wormhole receive` with its code is turned away
  restart    the server restarts (same database) between `send` and `receive`: the text arrives
  crash      the same, with the server killed (SIGKILL) instead of stopped

Servers:
  reference  magic-wormhole's own mailbox server (`twist wormhole-mailbox`), so
             the scenarios themselves are known to be right
  ours       wormhole-sync-server (--binary, default target/debug/) on SQLite

Exits non-zero if a scenario fails (or a server or client cannot start).
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

CODE = re.compile(r"Wormhole code is: (\S+)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


class ReferenceServer:
    """magic-wormhole-mailbox-server with its SQLite channel database in `state_dir`."""

    def __init__(self, venv, state_dir):
        self.venv, self.state_dir, self.port, self.process = venv, state_dir, free_port(), None

    def start(self):
        twist = os.path.join(self.venv, "bin", "twist")
        self.process = subprocess.Popen(
            [twist, "wormhole-mailbox", f"--port=tcp:{self.port}:interface=127.0.0.1",
             f"--channel-db={os.path.join(self.state_dir, 'channels.sqlite')}"],
            cwd=self.state_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self, kill=False):
        if self.process:
            self.process.kill() if kill else self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/v1"


class OurServer(ReferenceServer):
    """wormhole-sync-server with its SQLite database in `state_dir`, rate
    limits off (every client here comes from 127.0.0.1)."""

    def __init__(self, binary, state_dir):
        super().__init__(None, state_dir)
        self.binary = binary

    def start(self):
        self.process = subprocess.Popen(
            [self.binary, "--listen", f"127.0.0.1:{self.port}",
             "--db", os.path.join(self.state_dir, "ours.sqlite3"),
             "--rate-limit", "0", "--rate-limit-messages", "0", "--motd", "interop test server"],
            cwd=self.state_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)


class Wormhole:
    """The `wormhole` command of the virtualenv, pointed at one server."""

    def __init__(self, venv, server):
        self.binary, self.server = os.path.join(venv, "bin", "wormhole"), server

    def start(self, *args):
        # No transit: text travels through the mailbox only. No terminal: no prompts.
        command = [self.binary, "--relay-url", self.server.url, "--transit-helper", "tcp:127.0.0.1:9", *args]
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def send_text(self, text):
        """Starts a sender; returns the process and the code it shows."""
        sender = self.start("send", "--text", text)
        for line in sender.stderr:
            match = CODE.search(line)
            if match:
                return sender, match.group(1)
        raise RuntimeError(f"the sender showed no code (exit {sender.wait()})")


def finish(process, seconds=60):
    try:
        out, err = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"still running after {seconds} s: {err[-500:]}")
    return process.returncode, out, err


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def scenario_text(wormhole, server):
    sender, code = wormhole.send_text("hello from the reference client")
    status, out, err = finish(wormhole.start("receive", code))
    check(status == 0, f"receive exited {status}: {err[-500:]}")
    check(out.strip() == "hello from the reference client", f"received {out!r}")
    status, _, err = finish(sender)
    check(status == 0, f"send exited {status}: {err[-500:]}")


def scenario_wrong_code(wormhole, server):
    sender, code = wormhole.send_text("not for guessers")
    nameplate = code.split("-")[0]
    status, out, err = finish(wormhole.start("receive", f"{nameplate}-wrong-guess"))
    check(status != 0, "a wrong code was accepted by the receiver")
    check("not for guessers" not in out, "the text reached a wrong code")
    check("Key confirmation failed" in err or "WrongPassword" in err, f"the receiver said: {err[-500:]}")
    status, _, err = finish(sender)
    check(status != 0, "the sender succeeded with a wrong code on the other side")
    check("Key confirmation failed" in err or "WrongPassword" in err, f"the sender said: {err[-500:]}")


def scenario_crowded(wormhole, server):
    from websockets.sync.client import connect

    def holder(side):
        ws = connect(server.url, open_timeout=10)
        json.loads(ws.recv(timeout=10))  # welcome
        ws.send(json.dumps({"type": "bind", "appid": "lothar.com/wormhole/text-or-file-xfer", "side": side, "id": side + "1"}))
        return ws

    first = holder("aaaa")
    first.send(json.dumps({"type": "allocate", "id": "a2"}))
    nameplate = None
    while nameplate is None:
        message = json.loads(first.recv(timeout=10))
        if message.get("type") == "allocated":
            nameplate = message["nameplate"]
    first.send(json.dumps({"type": "claim", "nameplate": nameplate, "id": "a3"}))
    second = holder("bbbb")
    second.send(json.dumps({"type": "claim", "nameplate": nameplate, "id": "b2"}))
    time.sleep(0.5)
    try:
        status, out, err = finish(wormhole.start("receive", f"{nameplate}-third-side"), seconds=30)
        check(status != 0, "a third side got into a held nameplate")
        check("crowded" in err.lower(), f"the third side said: {err[-500:]}")
    finally:
        first.close()
        second.close()


def scenario_restart(wormhole, server, kill=False):
    sender, code = wormhole.send_text("survives a restart")
    time.sleep(1)  # the sender's claim and PAKE message are stored
    server.stop(kill=kill)
    server.start()
    status, out, err = finish(wormhole.start("receive", code))
    check(status == 0, f"receive exited {status}: {err[-500:]}")
    check(out.strip() == "survives a restart", f"received {out!r}")
    status, _, err = finish(sender)
    check(status == 0, f"send exited {status}: {err[-500:]}")


SCENARIOS = {
    "text": scenario_text,
    "wrong-code": scenario_wrong_code,
    "crowded": scenario_crowded,
    "restart": scenario_restart,
    "crash": lambda wormhole, server: scenario_restart(wormhole, server, kill=True),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", required=True, help="virtualenv with magic-wormhole, its mailbox server and websockets")
    parser.add_argument("--server", choices=["reference", "ours"], default="reference")
    parser.add_argument("--binary", default=os.path.join("target", "debug", "wormhole-sync-server"),
                        help="our server's binary (with --server ours)")
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    args = parser.parse_args()
    failed = 0
    with tempfile.TemporaryDirectory() as state_dir:
        if args.server == "ours":
            server = OurServer(os.path.abspath(args.binary), state_dir)
        else:
            server = ReferenceServer(args.venv, state_dir)
        server.start()
        try:
            wormhole = Wormhole(args.venv, server)
            for name in args.scenarios:
                started = time.time()
                try:
                    SCENARIOS[name](wormhole, server)
                    print(f"{args.server} server, {name}: ok ({time.time() - started:.1f} s)")
                except Exception as e:  # report every scenario, then fail
                    failed += 1
                    print(f"{args.server} server, {name}: FAILED: {e}")
        finally:
            server.stop()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
