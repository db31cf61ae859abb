#!/usr/bin/env python3
"""Interop scenarios for magic-wormhole's mailbox protocol: the unmodified
`wormhole` command (and raw WebSocket clients) against a mailbox server on
127.0.0.1, each scenario checking what the reference client reports.

    python3 -m venv /tmp/mw
    /tmp/mw/bin/pip install magic-wormhole==0.24.0 magic-wormhole-mailbox-server==0.8.0 websockets==15.0.1
    /tmp/mw/bin/python tools/mailbox_interop.py --venv /tmp/mw --server reference
    cargo build -p wormhole-sync-server
    /tmp/mw/bin/python tools/mailbox_interop.py --venv /tmp/mw --server ours
    cargo build -p wormhole-sync -p wormhole-sync-ureq --example magic_wormhole_peer
    /tmp/mw/bin/python tools/mailbox_interop.py --venv /tmp/mw --server reference --client target/debug/wormhole-sync

Scenarios:
  text       `wormhole send --text` to `wormhole receive`: the text arrives, both exit 0
  wrong-code `wormhole receive` with a wrong word: both sides fail, reporting it
  crowded    two sides hold a nameplate; `wormhole receive` with its code is turned away
  restart    the server restarts (same database) between `send` and `receive`: the text arrives
  crash      the same, with the server killed (SIGKILL) instead of stopped

With --client (our command-line tool; --peer, our example peer, next to it):
  ours-send           `wormhole-sync send --magic-wormhole` to `wormhole receive`
  ours-receive        `wormhole send --text` to `wormhole-sync receive --magic-wormhole`
  ours-receive-file   `wormhole send FILE` to `wormhole-sync receive --magic-wormhole`: both say only text goes
  ours-wrong-send     our sender, `wormhole receive` with a wrong word: both report it
  ours-wrong-receive  `wormhole send`, our receiver with a wrong word: both report it
  library             our library (the example peer) and magic-wormhole's library
                      (tools/mw_library_peer.py): binary data both ways, each side starting
  ours-restart        our sender waits; the server is killed and restarted; then
                      `wormhole receive`: our sender reconnects and the text arrives

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
import signal
import socket
import subprocess
import sys
import tempfile
import time

from checklib import free_port

CODE = re.compile(r"Wormhole code is: (\S+)")


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
             "--rate-limit", "0", "--rate-limit-messages", "0", "--max-channels-per-address", "0", "--motd", "interop test server"],
            cwd=self.state_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)


class Wormhole:
    """The `wormhole` command of the virtualenv, pointed at one server."""

    def __init__(self, venv, server):
        self.venv, self.binary, self.server = venv, os.path.join(venv, "bin", "wormhole"), server

    def start(self, *args):
        # No transit: text travels through the mailbox only. No terminal: no prompts.
        command = [self.binary, "--relay-url", self.server.url, "--transit-helper", "tcp:127.0.0.1:9", *args]
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def send_text(self, text):
        """Starts a sender; returns the process and the code it shows."""
        return self.send("--text", text)

    def send(self, *args):
        """Starts `wormhole send ARGS`; returns the process and the code it shows."""
        sender = self.start("send", *args)
        for line in sender.stderr:
            match = CODE.search(line)
            if match:
                return sender, match.group(1)
        raise RuntimeError(f"the sender showed no code (exit {sender.wait()})")


class Ours:
    """Our command-line tool and example peer, pointed at one server."""

    def __init__(self, client, peer, server):
        self.client, self.peer, self.server = client, peer, server

    def start(self, *args):
        command = [self.client, *args, "--magic-wormhole", "--rendezvous", self.server.url, "--quiet", "--timeout", "60s"]
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def send_text(self, text):
        sender = self.start("send", text)
        for line in sender.stderr:
            match = re.search(r"Invitation code: (\S+)", line)
            if match:
                return sender, match.group(1)
        raise RuntimeError(f"our sender showed no code (exit {sender.wait()})")


def library_peer(command, role, server, data, code=None):
    """Starts one side of a byte exchange; returns the process and, for a sender, its code."""
    args = [*command, role, server.url, "example.com/interop-bytes", data.hex(), *([code] if code else [])]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if role != "send":
        return process, None
    line = process.stdout.readline()
    match = re.match(r"code: (\S+)", line)
    if not match:
        raise RuntimeError(f"the sender showed no code: {line!r} {process.stderr.read()[-500:]}")
    return process, match.group(1)


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


def scenario_ours_send(wormhole, server, ours):
    sender, code = ours.send_text("hello from wormhole-sync")
    status, out, err = finish(wormhole.start("receive", code))
    check(status == 0, f"wormhole receive exited {status}: {err[-500:]}")
    check(out.strip() == "hello from wormhole-sync", f"wormhole received {out!r}")
    status, out, err = finish(sender)
    check(status == 0, f"our send exited {status}: {err[-500:]}")
    check("text message sent" in err, f"our sender said: {err[-500:]}")


def scenario_ours_receive(wormhole, server, ours):
    sender, code = wormhole.send_text("hello from the reference client")
    status, out, err = finish(ours.start("receive", code))
    check(status == 0, f"our receive exited {status}: {err[-500:]}")
    check(out == "hello from the reference client", f"we received {out!r}")
    status, _, err = finish(sender)
    check(status == 0, f"wormhole send exited {status}: {err[-500:]}")


WRONG_CODE_EXIT = 3  # the command-line tool's exit status for a wrong code
PEER_EXIT = 9  # ... for the other side stopping, declining or sending what it cannot take


def scenario_ours_receive_file(wormhole, server, ours):
    """`wormhole send FILE` to our receiver: both sides say plainly that only text goes."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "notes.txt")
        with open(path, "w") as file:
            file.write("a file, not a text message")
        sender, code = wormhole.send(path)
        status, out, err = finish(ours.start("receive", code))
        check(status == PEER_EXIT and out == "", f"our receive exited {status}: {err[-500:]}")
        check("the other side offered a file or directory" in err and "wormhole send --text" in err,
              f"our receiver said: {err[-500:]}")
        status, _, err = finish(sender)
        check(status != 0, "wormhole send reported success")
        check("remote error, transfer abandoned: wormhole-sync receives text messages only" in err,
              f"wormhole send said: {err[-500:]}")
        check("ambiguous" not in err, f"wormhole send said: {err[-500:]}")



def scenario_ours_wrong_send(wormhole, server, ours):
    sender, code = ours.send_text("not for guessers")
    status, out, err = finish(wormhole.start("receive", code.split("-")[0] + "-wrong-guess"))
    check(status != 0 and "not for guessers" not in out, "wormhole receive accepted a wrong code")
    check("Key confirmation failed" in err or "WrongPassword" in err, f"wormhole receive said: {err[-500:]}")
    status, _, err = finish(sender)
    check(status == WRONG_CODE_EXIT, f"our send exited {status}: {err[-500:]}")
    check("the other side typed a different code" in err, f"our sender said: {err[-500:]}")


def scenario_ours_wrong_receive(wormhole, server, ours):
    sender, code = wormhole.send_text("not for guessers")
    # Another word from the same list: our tool refuses a word no code uses before trying it.
    nameplate, first, second = code.split("-")
    wrong = f"{nameplate}-{'adroitness' if first != 'adroitness' else 'adviser'}-{second}"
    status, out, err = finish(ours.start("receive", wrong))
    check(status == WRONG_CODE_EXIT and "not for guessers" not in out, f"our receive exited {status}: {err[-500:]}")
    check("codes did not match" in err, f"our receiver said: {err[-500:]}")
    status, _, err = finish(sender)
    check(status != 0, "wormhole send succeeded with a wrong code on the other side")
    check("Key confirmation failed" in err or "WrongPassword" in err, f"wormhole send said: {err[-500:]}")


def scenario_library(wormhole, server, ours):
    python = [os.path.join(wormhole.venv, "bin", "python"), os.path.join(os.path.dirname(__file__), "mw_library_peer.py")]
    rust = [ours.peer]
    ours_data, theirs_data = bytes([0, 255, 16, 128, 10, 13]), bytes(range(256))
    for first, second in [(rust, python), (python, rust)]:
        sender, code = library_peer(first, "send", server, ours_data)
        receiver, _ = library_peer(second, "receive", server, theirs_data, code)
        for process, expected in [(receiver, ours_data), (sender, theirs_data)]:
            status, out, err = finish(process)
            check(status == 0, f"{process.args[0]} exited {status}: {err[-500:]}")
            check(f"received: {expected.hex()}" in out, f"{process.args[0]} received {out[-200:]!r}")


def scenario_ours_restart(wormhole, server, ours):
    sender, code = ours.send_text("survives a crash")
    time.sleep(1)  # our claim and PAKE message are stored
    server.stop(kill=True)
    time.sleep(1)  # our sender finds the server gone, and retries
    server.start()
    status, out, err = finish(wormhole.start("receive", code))
    check(status == 0, f"wormhole receive exited {status}: {err[-500:]}")
    check(out.strip() == "survives a crash", f"wormhole received {out!r}")
    status, _, err = finish(sender)
    check(status == 0, f"our send exited {status}: {err[-500:]}")


def receiver_after_a_cancelled_sender(wormhole, sender, code):
    """Interrupts `sender` before anyone used `code`; a `wormhole receive` of
    it then waits for a new sender (the nameplate was freed), as on the
    reference server, rather than being refused."""
    time.sleep(1)  # its claim and PAKE message are stored
    sender.send_signal(signal.SIGINT)
    try:
        sender.wait(timeout=30)
    except subprocess.TimeoutExpired:
        sender.kill()
        raise AssertionError("the sender did not stop on SIGINT")
    receiver = wormhole.start("receive", code)
    try:
        time.sleep(3)
        ended = receiver.poll() is not None
    finally:
        receiver.kill()
        _, err = receiver.communicate()
    check(not ended, f"the receiver ended ({receiver.returncode}): {err[-500:]}")


def scenario_cancelled(wormhole, server):
    receiver_after_a_cancelled_sender(wormhole, *wormhole.send_text("never sent"))


def scenario_ours_cancelled(wormhole, server, ours):
    receiver_after_a_cancelled_sender(wormhole, *ours.send_text("never sent"))


CLIENT_SCENARIOS = {
    "ours-send": scenario_ours_send,
    "ours-receive": scenario_ours_receive,
    "ours-receive-file": scenario_ours_receive_file,
    "ours-wrong-send": scenario_ours_wrong_send,
    "ours-wrong-receive": scenario_ours_wrong_receive,
    "library": scenario_library,
    "ours-restart": scenario_ours_restart,
    "ours-cancelled": scenario_ours_cancelled,
}

SCENARIOS = {
    "text": scenario_text,
    "wrong-code": scenario_wrong_code,
    "crowded": scenario_crowded,
    "restart": scenario_restart,
    "crash": lambda wormhole, server: scenario_restart(wormhole, server, kill=True),
    "cancelled": scenario_cancelled,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", required=True, help="virtualenv with magic-wormhole, its mailbox server and websockets")
    parser.add_argument("--server", choices=["reference", "ours"], default="reference")
    parser.add_argument("--binary", default=os.path.join("target", "debug", "wormhole-sync-server"),
                        help="our server's binary (with --server ours)")
    parser.add_argument("--client", help="our command-line tool: run the scenarios of our client too")
    parser.add_argument("--peer", help="our example peer (default: examples/magic_wormhole_peer next to --client)")
    parser.add_argument("scenarios", nargs="*")
    args = parser.parse_args()
    if not args.scenarios:
        args.scenarios = list(SCENARIOS) + (list(CLIENT_SCENARIOS) if args.client else [])
    failed = 0
    with tempfile.TemporaryDirectory() as state_dir:
        if args.server == "ours":
            server = OurServer(os.path.abspath(args.binary), state_dir)
        else:
            server = ReferenceServer(args.venv, state_dir)
        server.start()
        try:
            wormhole = Wormhole(args.venv, server)
            ours = None
            if args.client:
                client = os.path.abspath(args.client)
                peer = args.peer or os.path.join(os.path.dirname(client), "examples", "magic_wormhole_peer")
                ours = Ours(client, os.path.abspath(peer), server)
            for name in args.scenarios:
                started = time.time()
                try:
                    if name in CLIENT_SCENARIOS:
                        if ours is None:
                            raise RuntimeError("this scenario needs --client")
                        CLIENT_SCENARIOS[name](wormhole, server, ours)
                    else:
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
