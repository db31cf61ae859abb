#!/usr/bin/env python3
"""Runs the README's quick start ("Quick start: the command-line tool") as a
newcomer would, command by command, reading each from the README itself:

  1. `cargo install --locked --path cli` (into a temporary root, and with
     `--debug` unless --release: the same command, the faster profile);
  2. `wormhole-sync serve` (its port from WORMHOLE_SYNC_LISTEN, a free loopback
     port; its database in a temporary folder);
  3. `wormhole-sync send 'meet at six'`, then the receive command the sender
     printed, with 'see you' as the README adds: each side gets the other's text;
  4. the two-computers form: `serve --listen ...` and the exported
     WORMHOLE_SYNC_RENDEZVOUS (the README's example address replaced by the
     loopback one), then the same exchange with the settings file instead;
  5. the invitation that survives Ctrl-C: `send --state invitation.json ...
     --file my.key`, Ctrl-C once the code shows, `resume invitation.json`, and
     the other side receiving my.key.

  tools/readme_quickstart.py               # installs the tool first
  tools/readme_quickstart.py --binary target/debug/wormhole-sync   # skips step 1

Exits non-zero on any failure, saying which command did what.
"""

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile

from checklib import free_port, shown_code, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def fail(why):
    raise SystemExit(f"FAILED: {why}")


def quick_start_blocks():
    """The quick start's code blocks, as (language, [command lines without comments])."""
    text = open(README).read()
    start = text.index("## Quick start: the command-line tool")
    section = text[start:text.index("\n## ", start + 1)]
    blocks = []
    for language, body in re.findall(r"```(\w+)\n(.*?)```", section, re.S):
        lines = []
        for line in body.splitlines():
            if language == "sh":
                line = line.split("#", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
            if line.strip():
                lines.append(line.strip())
        blocks.append((language, lines))
    return blocks


def command_starting(blocks, prefix):
    """The one command that is `prefix` or starts with it (`prefix` plus a space, if it ends in a word)."""
    def matches(line):
        return line == prefix or line.startswith(prefix if not prefix[-1].isalnum() else prefix + " ")
    found = [line for language, lines in blocks if language == "sh" for line in lines if matches(line)]
    if len(found) != 1:
        fail(f"the quick start has {len(found)} commands starting with {prefix!r}: {found}")
    return found[0]



class Tool:
    """The installed binary, run as the README writes its commands."""

    def __init__(self, binary, folder, env):
        self.binary, self.folder, self.env = binary, folder, env

    def argv(self, line):
        words = shlex.split(line)
        if words[0] != "wormhole-sync":
            fail(f"not a wormhole-sync command: {line}")
        return [self.binary, *words[1:]]

    def start(self, line, env=None):
        return subprocess.Popen(self.argv(line), cwd=self.folder, env={**self.env, **(env or {})},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def serve(self, line, port, env=None):
        server = self.start(line, {"WORMHOLE_SYNC_LISTEN": f"127.0.0.1:{port}", **(env or {})})
        wait_for(f"http://127.0.0.1:{port}/health")
        return server

    def exchange(self, send_line, reply, env=None, expect=None):
        """Runs `send_line`, then the receive command it prints with `reply`."""
        sender = self.start(send_line, env)
        printed = None
        for line in sender.stderr:
            if line.strip().startswith("wormhole-sync receive "):
                printed = line.strip()
                break
        if printed is None:
            fail(f"{send_line}: printed no receive command (exit {sender.wait()})")
        receiver = subprocess.run([*self.argv(printed), reply], cwd=self.folder, env={**self.env, **(env or {})},
                                  capture_output=True, text=True, timeout=60)
        sent, _ = sender.communicate(timeout=60)
        expected = expect if expect is not None else shlex.split(send_line)[-1]
        if receiver.returncode != 0 or receiver.stdout.rstrip("\n") != expected:
            fail(f"{printed} {reply!r}: exit {receiver.returncode}, printed {receiver.stdout!r}: {receiver.stderr}")
        if sender.returncode != 0 or sent.rstrip("\n") != reply:
            fail(f"{send_line}: exit {sender.returncode}, printed {sent!r}")
        return printed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", help="a built wormhole-sync binary: skip the install")
    parser.add_argument("--release", action="store_true", help="install with the release profile, as written")
    args = parser.parse_args()
    blocks = quick_start_blocks()

    with tempfile.TemporaryDirectory() as folder:
        # No settings file or server address of the person running this.
        env = {key: value for key, value in os.environ.items() if not key.startswith("WORMHOLE_SYNC_")}
        env["XDG_CONFIG_HOME"] = os.path.join(folder, "config")
        install = command_starting(blocks, "cargo install")
        if args.binary:
            binary = os.path.abspath(args.binary)
            print(f"{install}: skipped, using {binary}")
        else:
            root = os.path.join(folder, "root")
            argv = [*shlex.split(install), "--root", root, *([] if args.release else ["--debug"])]
            # Builds in the workspace's own target folder, as `cargo install --path` in a checkout may.
            result = subprocess.run(argv, cwd=ROOT, env={**env, "CARGO_TARGET_DIR": os.path.join(ROOT, "target")})
            if result.returncode != 0:
                fail(f"{' '.join(argv)} exited {result.returncode}")
            binary = os.path.join(root, "bin", "wormhole-sync")
            print(f"{install}: ok ({binary})")
        tool = Tool(binary, folder, env)

        # One machine: the server, and an exchange between two terminals.
        port = free_port()
        serve = next((line for language, lines in blocks for line in lines if line == "wormhole-sync serve"), None)
        if serve is None:
            fail("the quick start has no plain `wormhole-sync serve`")
        server = tool.serve(serve, port)
        local = {"WORMHOLE_SYNC_RENDEZVOUS": f"http://127.0.0.1:{port}"}
        try:
            send = command_starting(blocks, "wormhole-sync send '")
            receive = command_starting(blocks, "wormhole-sync receive ")
            reply = shlex.split(receive)[-1]
            printed = tool.exchange(send, reply, local)
            print(f"{serve}; {send}; {printed} {reply!r}: ok")

            # The invitation that survives Ctrl-C.
            with open(os.path.join(folder, "my.key"), "wb") as key:
                key.write(b"-----BEGIN KEY-----\nnot really a key\n")
            stateful = command_starting(blocks, "wormhole-sync send --state")
            sender = tool.start(stateful, local)
            code = shown_code(sender, stateful)
            sender.send_signal(signal.SIGINT)
            if sender.wait(timeout=30) != 130 or not os.path.exists(os.path.join(folder, "invitation.json")):
                fail(f"{stateful}: Ctrl-C did not leave invitation.json (exit {sender.returncode})")
            resume = command_starting(blocks, "wormhole-sync resume")
            resumed = tool.start(resume, local)
            received = subprocess.run([binary, "receive", code], cwd=folder, env={**env, **local},
                                      capture_output=True, timeout=60)
            if received.returncode != 0 or received.stdout != b"-----BEGIN KEY-----\nnot really a key\n":
                fail(f"receive {code} after {resume}: exit {received.returncode}: {received.stderr.decode()}")
            if resumed.wait(timeout=60) != 0:
                fail(f"{resume}: exit {resumed.returncode}: {resumed.stderr.read()}")
            print(f"{stateful}; Ctrl-C; {resume}; the other side received my.key: ok")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)

        # Two computers: the server on every interface in the README; on loopback here.
        listen = command_starting(blocks, "wormhole-sync serve --listen")
        export = command_starting(blocks, "export WORMHOLE_SYNC_RENDEZVOUS=")
        example = export.split("=", 1)[1]
        port = free_port()
        listen_here = re.sub(r"--listen \S+", f"--listen 127.0.0.1:{port}", listen)
        server = tool.start(listen_here)
        wait_for(f"http://127.0.0.1:{port}/health")
        here = f"http://127.0.0.1:{port}"
        try:
            tool.exchange("wormhole-sync send 'two computers'", "ok", {"WORMHOLE_SYNC_RENDEZVOUS": here})
            print(f"{listen}; {export} (as {here}): ok")
            # The settings file instead of the variable, its example address made this server's.
            toml = [lines for language, lines in blocks if language == "toml"]
            if len(toml) != 1:
                fail(f"the quick start has {len(toml)} settings examples")
            settings_dir = os.path.join(env["XDG_CONFIG_HOME"], "wormhole-sync")
            os.makedirs(settings_dir)
            with open(os.path.join(settings_dir, "config.toml"), "w") as settings:
                for line in toml[0]:
                    key = line.split("=", 1)[0].strip()
                    if key == "ca-cert":
                        continue  # a file of the reader's own
                    line = line.replace(example, here)
                    if key == "magic-wormhole-rendezvous":
                        line = re.sub(r'"ws://[^/"]+', f'"ws://127.0.0.1:{port}', line)
                    settings.write(line + "\n")
            tool.exchange("wormhole-sync send 'set once'", "ok")
            print("the settings file, as the README shows it: ok")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
