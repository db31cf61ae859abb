#!/usr/bin/env python3
"""Where a waiting client's server memory goes: starts the release server on
127.0.0.1 (memory storage), opens N connections, then on each answers one
join and holds one fetch, printing the server's RSS growth per client after
each step.

    cargo build --release -p wormhole-sync-server
    python3 tools/connection_memory.py [N]    # default 5000
"""

import socket
import subprocess
import sys
import time

SERVER = "target/release/wormhole-sync-server"


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([SERVER, "--memory", "--listen", f"127.0.0.1:{port}", "--rate-limit", "0", "--rate-limit-messages", "0",
                               "--max-channels-per-address", "0"],
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
        for sock in socks:
            sock.recv(65536)
        time.sleep(1)
        steps.append(("one answered request on it (a join creating a channel)", rss_kib()))
        for i, sock in enumerate(socks):
            post(sock, "/v1/fetch", f'{{"appid":"m","side":"s{i}","channel":{i + 1},"after":0,"wait_ms":60000}}')
        time.sleep(2)
        steps.append(("a fetch held on it", rss_kib()))
        for (_, before), (name, after) in zip(steps, steps[1:]):
            print(f"{name}: {(after - before) / n:.1f} KiB per client")
        print(f"total: {(steps[-1][1] - steps[0][1]) / n:.1f} KiB per waiting client ({n} clients)")
    finally:
        server.kill()


if __name__ == "__main__":
    main()
