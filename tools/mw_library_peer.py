#!/usr/bin/env python3
"""One side of a magic-wormhole exchange of bytes through magic-wormhole's
own library API (`wormhole.create`, `send_message`, `get_message`), for
tools/mailbox_interop.py:

    mw_library_peer.py send    URL APPID DATA_HEX        prints "code: CODE", then "received: HEX"
    mw_library_peer.py receive URL APPID DATA_HEX CODE   prints "received: HEX"
"""

import sys

from twisted.internet import defer, task

import wormhole


@defer.inlineCallbacks
def main(reactor, role, url, appid, data_hex, code=None):
    w = wormhole.create(appid, url, reactor)
    if role == "send":
        w.allocate_code()
        code = yield w.get_code()
        print(f"code: {code}", flush=True)
    else:
        w.set_code(code)
    w.send_message(bytes.fromhex(data_hex))
    try:
        received = yield w.get_message()
        print(f"received: {received.hex()}", flush=True)
    finally:
        yield w.close()


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
