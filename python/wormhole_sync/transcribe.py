"""Transcribe mode: the initiator allocates a channel and shows the code; the
receiver types it; each gets the other's data. Three flavours of the same
exchange: blocking (``Initiator``, ``Receiver``), asyncio (``AsyncInitiator``,
``AsyncReceiver``) and Twisted (``TwistedInitiator``, ``TwistedReceiver``,
whose methods return Deferreds; Twisted is imported only when they are).

::

    from wormhole_sync.transcribe import Initiator
    i = Initiator("example.com/app", b"initiator's data")
    print("Invitation Code: %s" % i.get_code())
    print("Their data: %s" % i.get_data().decode("ascii"))

Every wait releases the GIL; a Ctrl-C interrupts it promptly and closes the
channel (unless the state was serialized). ``rendezvous`` defaults to the
``WORMHOLE_SYNC_RENDEZVOUS`` environment variable, then to the project's
public server. ``schedule`` is a sorted list of ``(when, interval)`` pairs of
seconds from the first start; ``timeout`` is in seconds.
"""

from typing import Any, Optional

from ._flavours import AsyncInitiatorSide, AsyncSide, BlockingInitiator, BlockingReceiver, Schedule, options


class Initiator(BlockingInitiator):
    """The side that goes first: it gets a channel from the rendezvous server
    and shows the invitation code."""

    _flavour = "transcribe"

    def __init__(
        self,
        appid: str,
        data: bytes,
        rendezvous: Optional[str] = None,
        schedule: Optional[Schedule] = None,
        timeout: Optional[float] = None,
        code_words: Optional[int] = None,
    ) -> None:
        self._make(appid, data, **options(rendezvous, schedule, timeout, code_words))


class Receiver(BlockingReceiver):
    """The side that types the invitation code."""

    _flavour = "transcribe"

    def __init__(
        self,
        appid: str,
        code: str,
        data: bytes,
        rendezvous: Optional[str] = None,
        schedule: Optional[Schedule] = None,
        timeout: Optional[float] = None,
    ) -> None:
        self._make(appid, code, data, **options(rendezvous, schedule, timeout))


class AsyncInitiator(AsyncInitiatorSide):
    """The initiator, for asyncio: ``code = await initiator.get_code()``."""

    _blocking_class = Initiator

    def __init__(self, appid: str, data: bytes, **options: Any) -> None:
        self._blocking = Initiator(appid, data, **options)


class AsyncReceiver(AsyncSide):
    """The receiver, for asyncio: ``data = await receiver.get_data()``."""

    _blocking_class = Receiver

    def __init__(self, appid: str, code: str, data: bytes, **options: Any) -> None:
        self._blocking = Receiver(appid, code, data, **options)


def __getattr__(name: str) -> Any:
    # Twisted is imported only by those who use its flavour.
    if name in ("TwistedInitiator", "TwistedReceiver"):
        from . import _twisted

        return getattr(_twisted, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


# The Twisted classes are left out: `import *` must not need Twisted.
__all__ = ["Initiator", "Receiver", "AsyncInitiator", "AsyncReceiver"]
