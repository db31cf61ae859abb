#!/usr/bin/env python3
"""One exchange at a time, both sides in this process: the Python package's
blocking and asyncio flavours against our server, and, with
``--magic-wormhole``, magic-wormhole's Python library (on Twisted) against its
own mailbox server, in the same run. Prints the median and p99 time of an
exchange (from creating the initiator until both sides hold the other's data)
and this process's CPU time per exchange (all threads, both sides).

    python3 -m venv /tmp/pybench
    /tmp/pybench/bin/pip install ./python magic-wormhole==0.24.0 magic-wormhole-mailbox-server==0.8.0
    cargo build --release -p wormhole-sync-server
    /tmp/pybench/bin/python python/bench/exchange.py --server target/release/wormhole-sync-server --magic-wormhole
"""

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

APPID = "bench.example/python"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summary(samples):
    times = sorted(t for t, _ in samples)
    cpu = sorted(c for _, c in samples)
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))], cpu[len(cpu) // 2]


def start_ours(binary):
    process = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--memory", "--rate-limit-exempt-loopback",
         "--max-channels-per-address", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "NO_COLOR": "1"})
    for line in process.stdout:
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if found:
            # Its log goes on: read it, or a full pipe would stop the server mid-write.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, found.group(1)
    raise RuntimeError("the server did not start")


def blocking(url, count):
    from wormhole_sync.transcribe import Initiator, Receiver

    def one():
        started, cpu = time.perf_counter(), time.process_time()
        i = Initiator(APPID, b"initiator's data", rendezvous=url)
        r = Receiver(APPID, i.get_code(), b"receiver's data", rendezvous=url)
        got = {}
        thread = threading.Thread(target=lambda: got.setdefault("r", r.get_data()))
        thread.start()
        assert i.get_data() == b"receiver's data"
        thread.join()
        assert got["r"] == b"initiator's data"
        return time.perf_counter() - started, time.process_time() - cpu

    for _ in range(5):
        one()
    return [one() for _ in range(count)]


def asyncio_flavour(url, count):
    from wormhole_sync.transcribe import AsyncInitiator, AsyncReceiver

    async def one():
        started, cpu = time.perf_counter(), time.process_time()
        i = AsyncInitiator(APPID, b"initiator's data", rendezvous=url)
        r = AsyncReceiver(APPID, await i.get_code(), b"receiver's data", rendezvous=url)
        got = await asyncio.gather(i.get_data(), r.get_data())
        assert got == [b"receiver's data", b"initiator's data"]
        return time.perf_counter() - started, time.process_time() - cpu

    async def main():
        for _ in range(5):
            await one()
        return [await one() for _ in range(count)]

    return asyncio.run(main())


def magic_wormhole(count):
    from twisted.internet import defer, reactor, task
    import wormhole

    port = free_port()
    workdir = tempfile.mkdtemp()
    twist = shutil.which("twist", path=os.path.dirname(sys.executable)) or "twist"
    server = subprocess.Popen(
        [twist, "wormhole-mailbox", f"--port=tcp:{port}:interface=127.0.0.1", f"--channel-db={workdir}/db.sqlite"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    relay = f"ws://127.0.0.1:{port}/v1"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.1)
    samples = []

    async def one():
        started, cpu = time.perf_counter(), time.process_time()
        w1 = wormhole.create(APPID, relay, reactor)
        w1.allocate_code()
        code = await w1.get_code()
        w2 = wormhole.create(APPID, relay, reactor)
        w2.set_code(code)
        w1.send_message(b"initiator's data")
        w2.send_message(b"receiver's data")
        got = await defer.gatherResults([w1.get_message(), w2.get_message()])
        assert got == [b"receiver's data", b"initiator's data"]
        sample = (time.perf_counter() - started, time.process_time() - cpu)
        await defer.gatherResults([w1.close(), w2.close()])
        return sample

    async def main(_reactor):
        for _ in range(5):
            await defer.ensureDeferred(one())
        for _ in range(count):
            samples.append(await defer.ensureDeferred(one()))

    try:
        task.react(lambda r: defer.ensureDeferred(main(r)))
    except SystemExit:
        pass
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="target/release/wormhole-sync-server", help="our server binary")
    parser.add_argument("--count", type=int, default=100, help="exchanges measured per flavour")
    parser.add_argument("--magic-wormhole", action="store_true", help="also measure magic-wormhole 0.24")
    args = parser.parse_args()
    process, url = start_ours(args.server)
    rows = []
    try:
        rows.append(("wormhole_sync, blocking", summary(blocking(url, args.count))))
        rows.append(("wormhole_sync, asyncio", summary(asyncio_flavour(url, args.count))))
    finally:
        process.terminate()
        process.wait()
    if args.magic_wormhole:
        rows.append(("magic-wormhole 0.24 (Twisted)", summary(magic_wormhole(args.count))))
    print(f"{args.count} sequential exchanges each, both sides in one process, on {os.cpu_count()} cores")
    print("| client | median | p99 | CPU per exchange (median) |")
    print("| --- | --- | --- | --- |")
    for name, (median, p99, cpu) in rows:
        print(f"| {name} | {median * 1000:.2f} ms | {p99 * 1000:.2f} ms | {cpu * 1000:.2f} ms |")


if __name__ == "__main__":
    main()
