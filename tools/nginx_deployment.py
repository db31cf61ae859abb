#!/usr/bin/env python3
"""Runs deploy/nginx-two-instances.conf as written: two server instances on one
PostgreSQL database behind nginx, on loopback ports the kernel chose.

Checks, through nginx only:
  1. an exchange over the HTTP API, with both instances serving part of it;
  2. an exchange over the mailbox protocol (WebSocket, --magic-wormhole);
  3. an exchange whose instance is killed with SIGKILL while the sender waits
     for the receiver: both sides finish on the other instance;
  4. a client that forges Forwarded, X-Forwarded-For and X-Real-IP headers
     with a new address on every request is still held to the per-address
     rate limit (nginx replaces X-Forwarded-For and clears the others; the
     server reads only X-Forwarded-For, from the right).

  tools/nginx_deployment.py --server target/debug/wormhole-sync-server \\
      --client target/debug/wormhole-sync --postgres "$WORMHOLE_SYNC_TEST_POSTGRES"

Needs nginx (Debian's nginx-light) and psql. Exits non-zero on any failure.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from checklib import free_port, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "deploy", "nginx-two-instances.conf")




def requests_served(port):
    """HTTP API requests an instance has answered, from its /metrics."""
    text = wait_for(f"http://127.0.0.1:{port}/metrics")
    return sum(float(n) for n in re.findall(r'^wormhole_request_duration_seconds_count\{[^}]*\} (\S+)', text, re.M))


def exchange(client, rendezvous, flavour, before_receive=None):
    """A send and a receive through `rendezvous`; returns what each printed."""
    common = ["--rendezvous", rendezvous, "--quiet", "--timeout", "60s"] + flavour
    sender = subprocess.Popen(
        [client, "send", *common, "from the sender"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    code = None
    deadline = time.time() + 30
    lines = []
    while code is None:
        line = sender.stderr.readline()
        if not line:
            if sender.poll() is not None or time.time() > deadline:
                raise SystemExit(f"FAILED: the sender printed no code: {''.join(lines)}")
            continue
        lines.append(line)
        found = re.search(r"code: (\S+)", line)
        if found:
            code = found.group(1)
    if before_receive:
        before_receive()
    receive_data = [] if flavour else ["from the receiver"]
    received = subprocess.run(
        [client, "receive", *common, code, *receive_data], capture_output=True, text=True, timeout=90
    )
    sent_out, sent_err = sender.communicate(timeout=90)
    if received.returncode != 0 or sender.returncode != 0:
        raise SystemExit(
            f"FAILED: exit codes {sender.returncode}/{received.returncode}\n"
            f"sender: {''.join(lines)}{sent_err}\nreceiver: {received.stderr}"
        )
    return sent_out, received.stdout


def forged_allocate(front, i):
    """An allocation whose forwarding headers claim a new client each time."""
    request = urllib.request.Request(
        f"{front}/v1/allocate",
        data=json.dumps({"appid": "example.com/forged", "side": f"f{i:04d}"}).encode(),
        headers={
            "Content-Type": "application/json",
            "Forwarded": f"for=198.51.100.{i % 250}",
            "X-Forwarded-For": f"203.0.113.{i % 250}",
            "X-Real-IP": f"192.0.2.{i % 250}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--postgres", required=True, help="a database of the cluster (a new one is made)")
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    args = parser.parse_args()

    database = f"nginx_deployment_{os.getpid()}"
    base = re.sub(r"/[^/?]*(\?.*)?$", "", args.postgres)
    subprocess.run(["psql", "-q", args.postgres, "-c", f"CREATE DATABASE {database}"], check=True)
    url = f"{base}/{database}"
    work = tempfile.mkdtemp()
    os.chmod(work, 0o755)  # nginx's workers (nobody, under root) use its temporary paths
    processes = {}
    try:
        ports = [free_port(), free_port()]
        for i, port in enumerate(ports):
            processes[f"instance{i}"] = subprocess.Popen(
                [args.server, "--listen", f"127.0.0.1:{port}", "--postgres", url, "--trusted-proxy", "127.0.0.1"],
                stdout=subprocess.DEVNULL,
            )
        for port in ports:
            wait_for(f"http://127.0.0.1:{port}/health")

        proxy_port = free_port()
        with open(CONFIG) as f:
            config = f.read()
        config = config.replace("127.0.0.1:4001", f"127.0.0.1:{ports[0]}")
        config = config.replace("127.0.0.1:4002", f"127.0.0.1:{ports[1]}")
        config = config.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{proxy_port};")
        with open(os.path.join(work, "site.conf"), "w") as f:
            f.write(config)
        with open(os.path.join(work, "nginx.conf"), "w") as f:
            f.write(
                f"daemon off;\npid {work}/nginx.pid;\nerror_log {work}/error.log;\n"
                "events { worker_connections 1024; }\n"
                f"http {{\n  access_log off;\n  client_body_temp_path {work}/body;\n"
                f"  proxy_temp_path {work}/proxy;\n  include {work}/site.conf;\n}}\n"
            )
        processes["nginx"] = subprocess.Popen([args.nginx, "-p", work, "-c", f"{work}/nginx.conf"])
        wait_for(f"http://127.0.0.1:{proxy_port}/health")
        front = f"http://127.0.0.1:{proxy_port}"

        before = [requests_served(port) for port in ports]
        sent, received = exchange(args.client, front, [])
        assert (sent, received) == ("from the receiver", "from the sender"), (sent, received)
        served = [requests_served(port) - b for port, b in zip(ports, before)]
        if min(served) <= 0:
            raise SystemExit(f"FAILED: one instance served the whole exchange: {served}")
        print(f"ok: an HTTP exchange through nginx, requests served by the instances: {served}")

        sent, received = exchange(args.client, f"ws://127.0.0.1:{proxy_port}/v1", ["--magic-wormhole"])
        assert received == "from the sender", (sent, received)
        print("ok: a mailbox-protocol exchange through nginx (WebSocket)")

        def kill_first():
            processes["instance0"].send_signal(signal.SIGKILL)
            processes["instance0"].wait()

        sent, received = exchange(args.client, front, [], before_receive=kill_first)
        assert (sent, received) == ("from the receiver", "from the sender"), (sent, received)
        print("ok: an exchange whose instance was killed (SIGKILL) while the sender waited finished on the other")

        # One instance is left, so one limiter: 120 allocations a minute per address.
        statuses = [forged_allocate(front, i) for i in range(200)]
        passed, limited = statuses.count(200), statuses.count(429)
        if passed > 120 or limited == 0:
            raise SystemExit(f"FAILED: forged forwarding headers escaped the rate limit: {passed} of 200 passed")
        print(f"ok: allocations with forged forwarding headers are limited as one client: {passed} of 200 passed")
        print("nginx deployment: all passed")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM if process is processes.get("nginx") else signal.SIGKILL)
                process.wait(timeout=10)
        subprocess.run(["psql", "-q", args.postgres, "-c", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
