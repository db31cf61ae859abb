#!/usr/bin/env python3
"""An exchange driven by a loop of your own: wormhole_sync.sans_io's state
machine on asyncio streams, with a minimal HTTP/1.1 client written here
rather than the package's driver. Both sides run in this process.

    python3 python/examples/own_loop.py --rendezvous http://127.0.0.1:4000

Any other loop hosts it the same way: send what ``poll_transmit`` gives, feed
back answers and failures, read ``poll_event``, and sleep until an answer
arrives or ``poll_timeout()``.
"""

import argparse
import asyncio
import time
import urllib.parse

from wormhole_sync.sans_io import Code, Data, Exchange, Failed, Transmit, Verifier

# An answer larger than this is refused rather than read whole.
MAX_ANSWER = 1 << 20


async def post(transmit: Transmit):
    """POSTs the request; returns (status, body). Raises OSError or
    asyncio.TimeoutError if there is no answer."""
    url = urllib.parse.urlsplit(transmit.url)
    port = url.port or (443 if url.scheme == "https" else 80)

    async def exchange():
        reader, writer = await asyncio.open_connection(url.hostname, port, ssl=url.scheme == "https" or None)
        try:
            head = (
                f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(transmit.body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + transmit.body)
            await writer.drain()
            answer = await reader.read(MAX_ANSWER + 1)
            while len(answer) <= MAX_ANSWER:
                more = await reader.read(MAX_ANSWER + 1 - len(answer))
                if not more:
                    break
                answer += more
        finally:
            writer.close()
        if len(answer) > MAX_ANSWER:
            raise OSError("the answer is too large")
        head, _, body = answer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, body

    return await asyncio.wait_for(exchange(), transmit.timeout)


async def drive(name: str, exchange: Exchange, code_found: "asyncio.Future[str]") -> bytes:
    """Runs one side until it is finished; returns the peer's data."""
    exchange.start(time.time())
    in_flight = {}  # task -> request id
    outcome = None
    while True:
        now = time.time()
        while (transmit := exchange.poll_transmit(now)) is not None:
            in_flight[asyncio.create_task(post(transmit))] = transmit.id
        while (event := exchange.poll_event()) is not None:
            if isinstance(event, Code) and not code_found.done():
                code_found.set_result(event.code)
            elif isinstance(event, Verifier):
                print(f"{name}: verifier {event.verifier.hex()[:16]}...")
            elif isinstance(event, (Data, Failed)):
                outcome = event
        if exchange.is_finished():
            break
        wake = exchange.poll_timeout()
        wait = None if wake is None else max(0.0, wake - time.time())
        if in_flight:
            done, _ = await asyncio.wait(in_flight, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.sleep(wait if wait is not None else 1.0)
            done = set()
        for task in done:
            request = in_flight.pop(task)
            try:
                status, body = task.result()
            except (OSError, asyncio.TimeoutError, ValueError, IndexError) as error:
                exchange.handle_transport_error(time.time(), request, f"{type(error).__name__}: {error}")
            else:
                exchange.handle_response(time.time(), request, status, body)
        exchange.handle_timeout(time.time())
    for task in in_flight:
        task.cancel()
    if isinstance(outcome, Failed):
        raise outcome.error
    return outcome.data


async def main(rendezvous: str) -> None:
    app = "example.com/own-loop"
    initiator = Exchange.initiator(app, b"initiator's data", rendezvous=rendezvous)
    code: "asyncio.Future[str]" = asyncio.get_running_loop().create_future()
    initiating = asyncio.create_task(drive("initiator", initiator, code))
    print(f"Invitation Code: {await code}")
    receiver = Exchange.receiver(app, await code, b"receiver's data", rendezvous=rendezvous)
    theirs, mine = await asyncio.gather(initiating, drive("receiver", receiver, asyncio.Future()))
    print(f"initiator got: {theirs.decode()}")
    print(f"receiver got: {mine.decode()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rendezvous", required=True, help="the rendezvous server's URL")
    asyncio.run(main(parser.parse_args().rendezvous))
