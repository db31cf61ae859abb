"""One side of an exchange through the Python package, for the page's tests:

    python python_peer.py URL send DATA          # prints "Invitation code: ..." on stderr
    python python_peer.py URL receive CODE DATA

The peer's data goes to standard output. The application id is the CLI's,
which the page uses."""

import sys

from wormhole_sync.transcribe import Initiator, Receiver

APPID = "wormhole-sync/cli"


def main() -> None:
    url, role = sys.argv[1], sys.argv[2]
    if role == "send":
        side = Initiator(APPID, sys.argv[3].encode(), rendezvous=url, timeout=60)
        print(f"Invitation code: {side.get_code()}", file=sys.stderr, flush=True)
    else:
        side = Receiver(APPID, sys.argv[3], sys.argv[4].encode(), rendezvous=url, timeout=60)
    sys.stdout.write(side.get_data().decode())


if __name__ == "__main__":
    main()
