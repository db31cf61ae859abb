#!/usr/bin/env python3
"""Where a waiting client's server memory goes: starts the release server on
127.0.0.1 (memory storage), opens N connections, then on each answers one
join and holds one fetch, printing the server's RSS growth per client after
each step.

    cargo build --release -p wormhole-sync-server
    python3 tools/connection_memory.py [N] [--large-answers]    # default 5000

With --large-answers it then also measures what a kept-alive connection
holds after one large answer (200 connections, each reading a 1 MiB log).
"""

import json
import os
import socket
import subprocess
import sys
import time

SERVER = os.environ.get("WORMHOLE_SYNC_SERVER", "target/release/wormhole-sync-server")


def read_answer(sock):
    """Reads one whole HTTP answer (headers and Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(1 << 20)
    return body


def large_answers(port, rss_kib, post, pairs=100):
    """Kept-alive connections after one large answer each (a log of 16
    messages of 60 KiB, read whole): what the server holds for them while
    they idle, beyond the stored messages themselves."""
    body = "A" * (60 * 1024)
    socks = []
    for k in range(pairs):
        a, b = socket.create_connection(("127.0.0.1", port)), socket.create_connection(("127.0.0.1", port))
        channel = 100_000 + k
        for sock, side in ((a, "la"), (b, "lb")):
            post(sock, "/v1/join", f'{{"appid":"l","side":"{side}{k}","channel":{channel},"create":true}}')
            read_answer(sock)
        for phase in range(16):
            post(a, "/v1/post", f'{{"appid":"l","side":"la{k}","channel":{channel},"phase":"p{phase}","body":"{body}"}}')
            read_answer(a)
        socks += [(a, f"la{k}", channel), (b, f"lb{k}", channel)]
    time.sleep(2)
    before = rss_kib()
    for sock, side, channel in socks:
        post(sock, "/v1/fetch", f'{{"appid":"l","side":"{side}","channel":{channel},"after":0}}')
        assert len(read_answer(sock)) > 16 * 60 * 1024, "the whole log"
    time.sleep(2)
    after = rss_kib()
    print(f"a kept-alive connection after one 1 MiB answer: {(after - before) / len(socks):.1f} KiB held "
          f"({len(socks)} connections)")


def main():
    large = "--large-answers" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--large-answers"]
    n = int(args[0]) if args else 5000
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([SERVER, "--memory", "--listen", f"127.0.0.1:{port}", "--rate-limit", "0", "--rate-limit-messages", "0",
                               "--max-channels-per-address", "0", "--max-bytes-per-address", "0",
                               "--max-connections-per-address", "0",
                               "--max-bytes-per-app", "0", "--max-bytes", "0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)

        def rss_kib():
            with open(f"/proc/{server.pid}/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

        def post(sock, path, body):
            body = body.encode()
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            sock.sendall(head.encode() + body)

        steps = [("start", rss_kib())]
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
        time.sleep(2)
        steps.append(("an accepted connection that has sent nothing", rss_kib()))
        for i, sock in enumerate(socks):
            post(sock, "/v1/join", f'{{"appid":"m","side":"s{i}","channel":{i + 1},"create":true}}')
        # A fetch names the mailbox its join was answered with.
        mailboxes = [json.loads(read_answer(sock))["mailbox"] for sock in socks]
        time.sleep(1)
        steps.append(("one answered request on it (a join creating a channel)", rss_kib()))
        for i, (sock, mailbox) in enumerate(zip(socks, mailboxes)):
            post(sock, "/v1/fetch",
                 f'{{"appid":"m","side":"s{i}","channel":{i + 1},"mailbox":"{mailbox}","after":0,"wait_ms":60000}}')
        time.sleep(2)
        steps.append(("a fetch held on it", rss_kib()))
        for (_, before), (name, after) in zip(steps, steps[1:]):
            print(f"{name}: {(after - before) / n:.1f} KiB per client")
        print(f"total: {(steps[-1][1] - steps[0][1]) / n:.1f} KiB per waiting client ({n} clients)")
        if large:
            large_answers(port, rss_kib, post)
    finally:
        server.kill()


if __name__ == "__main__":
    main()
