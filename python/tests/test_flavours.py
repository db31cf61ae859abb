"""The Twisted and asyncio flavours: the Twisted examples as written for
Python users (apart from the import line and the misspelt ``lambda``), each
side in a process of its own, timeouts as errbacks and exceptions,
cancellation, and many exchanges at once."""

import asyncio

import pytest

from conftest import exchange_in_processes, run_python
from wormhole_sync import errors
from wormhole_sync.transcribe import AsyncInitiator, AsyncReceiver

APP = "example.com/python-flavours"

TWISTED_INITIATOR = '''
from twisted.internet import reactor
from wormhole_sync.transcribe import TwistedInitiator
data = b"initiator's data"
ti = TwistedInitiator("appid", data, reactor)
ti.startService()
d1 = ti.when_get_code()
d1.addCallback(lambda code: print("Invitation Code: %s" % code, flush=True))
d2 = ti.when_get_data()
d2.addCallback(lambda theirdata:
               print("Their data: %s" % theirdata.decode("ascii")))
d2.addCallback(lambda _: reactor.stop())
reactor.run()
'''

TWISTED_RECEIVER = '''
import sys
from twisted.internet import reactor
from wormhole_sync.transcribe import TwistedReceiver
data = b"receiver's data"
code = sys.argv[1]
tr = TwistedReceiver("appid", code, data, reactor)
tr.startService()
d = tr.when_get_data()
d.addCallback(lambda theirdata:
              print("Their data: %s" % theirdata.decode("ascii")))
d.addCallback(lambda _: reactor.stop())
reactor.run()
'''


def test_the_twisted_examples_exchange_data_between_two_processes(server):
    exchange_in_processes(server, TWISTED_INITIATOR, TWISTED_RECEIVER)


def test_a_twisted_timeout_errbacks_every_waiter_with_a_timeout_error(server):
    waiting = run_python(
        "from twisted.internet import reactor, defer\n"
        "from wormhole_sync.transcribe import TwistedInitiator\n"
        "ti = TwistedInitiator('%s', b'x', reactor, rendezvous='%s', schedule=[(0, 0.1)], timeout=1.0)\n"
        "ti.startService()\n"
        "seen = []\n"
        "waits = [ti.when_get_data(), ti.when_get_verifier()]\n"
        "for d in waits:\n"
        "    d.addErrback(lambda f: seen.append(f.check(TimeoutError) and type(f.value).__name__))\n"
        "defer.DeferredList(waits).addCallback(lambda _: (print(seen), reactor.stop()))\n"
        "reactor.run()\n" % (APP, server)
    )
    out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, err
    assert out.strip() == "['ExchangeTimeoutError', 'ExchangeTimeoutError']"


async def one_exchange(server, n):
    initiator = AsyncInitiator(APP, b"i%d" % n, rendezvous=server, timeout=60)
    code = await initiator.get_code()
    receiver = AsyncReceiver(APP, code, b"r%d" % n, rendezvous=server, timeout=60)
    got_i, got_r = await asyncio.gather(initiator.get_data(), receiver.get_data())
    assert (got_i, got_r) == (b"r%d" % n, b"i%d" % n)
    verifiers = await asyncio.gather(initiator.get_verifier(), receiver.get_verifier())
    assert verifiers[0] == verifiers[1] and len(verifiers[0]) == 32


def test_a_hundred_asyncio_exchanges_at_once(server):
    async def main():
        await asyncio.gather(*(one_exchange(server, n) for n in range(100)))

    asyncio.run(main())


def test_an_asyncio_timeout_is_a_timeout_error(server):
    async def main():
        initiator = AsyncInitiator(APP, b"alone", rendezvous=server, schedule=[(0, 0.1)], timeout=1.0)
        await initiator.get_code()
        with pytest.raises(TimeoutError) as raised:
            await initiator.get_data()
        assert isinstance(raised.value, errors.ExchangeTimeoutError)

    asyncio.run(main())


def test_cancelling_an_asyncio_wait_cancels_the_exchange(server):
    async def main():
        initiator = AsyncInitiator(APP, b"x", rendezvous=server, timeout=600)
        code = await initiator.get_code()
        waiting = asyncio.ensure_future(initiator.get_data())
        await asyncio.sleep(0.2)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # The channel was closed: a receiver finds its peer gone.
        receiver = AsyncReceiver(APP, code, b"late", rendezvous=server, timeout=10)
        with pytest.raises((errors.PeerClosedError, errors.UnknownChannelError)):
            await receiver.get_data()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_twisted_flavour_of_magic_wormhole_and_a_cancelled_deferred(server):
    mailbox = server.replace("http://", "ws://") + "/v1"
    done = run_python(
        "from twisted.internet import reactor, defer\n"
        "from wormhole_sync import errors\n"
        "from wormhole_sync.magic_wormhole import TwistedInitiator, TwistedReceiver\n"
        "@defer.inlineCallbacks\n"
        "def main():\n"
        "    ti = TwistedInitiator('%(app)s', b'initiator', reactor, rendezvous='%(url)s')\n"
        "    ti.startService()\n"
        "    code = yield ti.when_get_code()\n"
        "    tr = TwistedReceiver('%(app)s', code, b'receiver', reactor, rendezvous='%(url)s')\n"
        "    got = yield defer.gatherResults([ti.when_get_data(), tr.when_get_data()])\n"
        "    print(got)\n"
        "    lonely = TwistedInitiator('%(app)s', b'alone', reactor, rendezvous='%(url)s')\n"
        "    yield lonely.when_get_code()\n"
        "    waiting = lonely.when_get_data()\n"
        "    waiting.cancel()\n"
        "    try:\n"
        "        yield waiting\n"
        "    except defer.CancelledError:\n"
        "        print('cancelled')\n"
        "    again = lonely.when_get_data()\n"
        "    try:\n"
        "        yield again\n"
        "    except errors.CancelledError:\n"
        "        print('the exchange was cancelled too')\n"
        "    yield lonely.stopService()\n"
        "main().addBoth(lambda r: (print(r) if r else None, reactor.stop()))\n"
        "reactor.run()\n" % {"app": APP, "url": mailbox}
    )
    out, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    assert out.split("\n")[:3] == ["[b'receiver', b'initiator']", "cancelled", "the exchange was cancelled too"], (out, err)
