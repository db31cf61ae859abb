#!/usr/bin/env python3
"""Runs the same workload on wormhole-sync and on Python magic-wormhole, in
one run, on this machine, and prints the figures side by side.

    python3 -m venv /tmp/mw
    /tmp/mw/bin/pip install magic-wormhole magic-wormhole-mailbox-server
    cargo build --release -p wormhole-sync-bench
    /tmp/mw/bin/python tools/compare_magic_wormhole.py --ours target/release/wormhole-sync-bench

For magic-wormhole it starts the reference mailbox server (`twist
wormhole-mailbox`, SQLite in a temporary directory) on 127.0.0.1 and drives
clients in this process with Twisted: an exchange is one message each way
(`send_message` / `get_message`) between two wormholes joined by a code,
timed from creating the first wormhole until both hold the other's message.
Both systems get the same counts: sequential exchanges, exchanges with C in
flight for S seconds, and W clients left waiting for a peer.

With `--magic-wormhole-rs PEER` (tools/magic-wormhole-rs-peer, built with
`cargo build --release --manifest-path tools/magic-wormhole-rs-peer/Cargo.toml`)
it also times magic-wormhole.rs clients (its `bench` mode: both sides of each
exchange in one process) against the reference server and, given `--server`
(our wormhole-sync-server), against ours on the same kind of storage: a
SQLite file in a temporary directory, as the reference server's. Our server
then runs with `--allow-list` (magic-wormhole.rs receivers ask `list` for
their nameplate, and a busy app's nameplates grow past the three digits
our default answer names) and without the per-address limits (every client
here is 127.0.0.1).
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from checklib import free_port

APPID = "bench.example/compare"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def percentile(sorted_values, p):
    return sorted_values[round((len(sorted_values) - 1) * p)]


def start_server(command, workdir, port):
    """Starts a mailbox server in `workdir` and waits until it listens on `port`."""
    server = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"{command[0]} never listened on port {port}")


def reference_server(workdir):
    """The reference mailbox server on a SQLite file in `workdir`: (process, URL)."""
    port = free_port()
    twist = shutil.which("twist", path=os.path.dirname(sys.executable)) or "twist"
    command = [twist, "wormhole-mailbox", f"--port=tcp:{port}:interface=127.0.0.1",
               f"--channel-db={workdir}/relay.sqlite"]
    return start_server(command, workdir, port), f"ws://127.0.0.1:{port}/v1"


def our_server(binary, workdir):
    """Our server on a SQLite file in `workdir`, set up for magic-wormhole.rs clients: (process, URL)."""
    port = free_port()
    command = [binary, "--listen", f"127.0.0.1:{port}", "--db", f"{workdir}/wormhole-sync.sqlite3", "--allow-list",
               "--rate-limit", "0", "--rate-limit-messages", "0", "--max-channels-per-address", "0",
               "--max-connections-per-address", "0", "--max-bytes-per-address", "0"]
    return start_server(command, workdir, port), f"ws://127.0.0.1:{port}/v1"


def run_magic_wormhole_rs(args, start):
    """magic-wormhole.rs clients (the peer's `bench` mode) against the server `start(workdir)` starts."""
    workdir = tempfile.mkdtemp()
    server, relay = start(workdir)
    results = {}
    try:
        bench = subprocess.Popen([args.magic_wormhole_rs, "bench", relay, APPID, str(args.sequential),
                                  str(args.in_flight), str(args.seconds)], stdout=subprocess.PIPE, text=True)
        server_cpu = None
        for line in bench.stdout:
            m = re.match(r"sequential: \d+ exchanges, p50 ([\d.]+) ms / p99 ([\d.]+) ms / max ([\d.]+) ms", line)
            if m:
                results["sequential"] = tuple(float(v) / 1000 for v in m.groups())
            elif line.startswith("throughput: start"):
                server_cpu = cpu_seconds(server.pid)
            m = re.match(r"throughput, \d+ in flight: ([\d.]+) exchanges/s, (\d+) exchanges, process CPU ticks (\d+)",
                         line)
            if m and server_cpu is not None:
                n = max(int(m.group(2)), 1)
                results["throughput"] = (float(m.group(1)), (cpu_seconds(server.pid) - server_cpu) / n,
                                         int(m.group(3)) / TICKS / n)
        if bench.wait() != 0:
            raise SystemExit(f"magic-wormhole.rs bench failed (exit {bench.returncode}; its error is above)")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def run_magic_wormhole(args):
    from twisted.internet import defer, reactor, task
    import wormhole

    workdir = tempfile.mkdtemp()
    server, relay = reference_server(workdir)
    results = {}

    async def one_exchange():
        started = time.perf_counter()
        w1 = wormhole.create(APPID, relay, reactor)
        w1.allocate_code()
        code = await w1.get_code()
        w2 = wormhole.create(APPID, relay, reactor)
        w2.set_code(code)
        w1.send_message(b"initiator's data")
        w2.send_message(b"receiver's data")
        got1, got2 = await defer.gatherResults([w1.get_message(), w2.get_message()])
        assert (got1, got2) == (b"receiver's data", b"initiator's data")
        took = time.perf_counter() - started
        await defer.gatherResults([w1.close(), w2.close()])
        return took

    async def main(_reactor):
        if args.sequential:
            for _ in range(5):
                await defer.ensureDeferred(one_exchange())
            times = sorted([await defer.ensureDeferred(one_exchange()) for _ in range(args.sequential)])
            results["sequential"] = (percentile(times, 0.5), percentile(times, 0.99), times[-1])
        if args.in_flight:
            done = [0]
            stop_at = time.perf_counter() + args.seconds
            server_cpu, client_cpu = cpu_seconds(server.pid), cpu_seconds(os.getpid())

            async def worker():
                while time.perf_counter() < stop_at:
                    await defer.ensureDeferred(one_exchange())
                    done[0] += 1

            started = time.perf_counter()
            await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(args.in_flight)])
            elapsed = time.perf_counter() - started
            n = max(done[0], 1)
            results["throughput"] = (done[0] / elapsed, (cpu_seconds(server.pid) - server_cpu) / n,
                                     (cpu_seconds(os.getpid()) - client_cpu) / n)
        if args.waiting:
            await task.deferLater(reactor, 1, lambda: None)
            baseline = rss_bytes(server.pid)
            waiting = []
            for _ in range(args.waiting):
                w = wormhole.create(APPID, relay, reactor)
                w.allocate_code()
                waiting.append(w)
            await defer.gatherResults([w.get_code() for w in waiting])
            await task.deferLater(reactor, 1, lambda: None)
            cpu = cpu_seconds(server.pid)
            await task.deferLater(reactor, args.idle_seconds, lambda: None)
            idle = (cpu_seconds(server.pid) - cpu) / args.idle_seconds
            loaded = rss_bytes(server.pid)
            # Closing a wormhole that never met a peer reports LonelyError: expected here.
            await defer.gatherResults([w.close().addErrback(lambda _failure: None) for w in waiting])
            await task.deferLater(reactor, 2, lambda: None)
            results["waiting"] = ((loaded - baseline) / args.waiting, idle, rss_bytes(server.pid) / max(baseline, 1))

    try:
        task.react(lambda r: defer.ensureDeferred(main(r)))
    except SystemExit:
        pass
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def run_ours(args, storage):
    command = [args.ours, "--storage", storage, "--transport", "tokio", "--sequential", str(args.sequential),
               "--in-flight", str(args.in_flight), "--seconds", str(args.seconds), "--waiting", str(args.waiting),
               "--idle-seconds", str(args.idle_seconds)]
    text = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    results = {}
    m = re.search(r"sequential: \d+ exchanges, p50 ([\d.]+) ms / p99 ([\d.]+) ms / max ([\d.]+) ms", text)
    if m:
        results["sequential"] = tuple(float(v) / 1000 for v in m.groups())
    m = re.search(r"throughput, \d+ in flight: (\d+) exchanges/s.*client CPU ([\d.]+) ms.*server CPU ([\d.]+) ms", text)
    if m:
        results["throughput"] = (float(m.group(1)), float(m.group(3)) / 1000, float(m.group(2)) / 1000)
    m = re.search(r"server memory ([\d.]+) KiB per waiting client .*: ([+-]?\d+) % of before\); "
                  r"server CPU ([\d.]+) % of a core", text)
    if m:
        results["waiting"] = (float(m.group(1)) * 1024, float(m.group(3)) / 100, 1 + float(m.group(2)) / 100)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ours", help="path to wormhole-sync-bench (omit to measure magic-wormhole only)")
    parser.add_argument("--magic-wormhole-rs", help="path to magic-wormhole-rs-peer: also time magic-wormhole.rs")
    parser.add_argument("--server", help="path to wormhole-sync-server: time magic-wormhole.rs on ours too")
    parser.add_argument("--sequential", type=int, default=100)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--waiting", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=int, default=20)
    args = parser.parse_args()
    # The servers run in temporary directories: resolve the paths given here first.
    args.magic_wormhole_rs, args.server = (p and os.path.abspath(p) for p in (args.magic_wormhole_rs, args.server))

    columns = []
    if args.ours:
        columns.append(("ours, memory", run_ours(args, "memory")))
        columns.append(("ours, SQLite", run_ours(args, "sqlite")))
    columns.append(("Python magic-wormhole 0.24 (reference server, SQLite)", run_magic_wormhole(args)))
    if args.magic_wormhole_rs:
        columns.append(("magic-wormhole.rs 0.8.1 on the reference server",
                        run_magic_wormhole_rs(args, reference_server)))
        if args.server:
            columns.append(("magic-wormhole.rs 0.8.1 on our server (SQLite)",
                            run_magic_wormhole_rs(args, lambda workdir: our_server(args.server, workdir))))

    def row(name, key, show):
        cells = [show(r[key]) if key in r else "—" for _, r in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")

    print(f"\nload: {os.getloadavg()[0]:.2f} (1-minute average at the end), {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| | " + " | ".join(name for name, _ in columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    row("one exchange, sequential, median / p99", "sequential",
        lambda v: f"{v[0] * 1e3:.1f} / {v[1] * 1e3:.1f} ms")
    row(f"exchanges per second, {args.in_flight} in flight", "throughput", lambda v: f"{v[0]:.0f}")
    row("server CPU per exchange", "throughput", lambda v: f"{v[1] * 1e3:.2f} ms")
    row("client CPU per exchange (both sides)", "throughput", lambda v: f"{v[2] * 1e3:.2f} ms")
    row(f"server memory per waiting client ({args.waiting} waiting)", "waiting", lambda v: f"{v[0] / 1024:.1f} KiB")
    row(f"server CPU holding {args.waiting} waiting clients", "waiting", lambda v: f"{v[1] * 100:.2f} % of a core")
    row("server RSS after they left, vs. before", "waiting", lambda v: f"{(v[2] - 1) * 100:+.0f} %")


if __name__ == "__main__":
    main()
