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

import asyncio
import concurrent.futures
import os
import threading
from typing import Any, Callable, Optional, Sequence, Tuple, Type, TypeVar

from . import _native

Schedule = Sequence[Tuple[float, float]]
Side = TypeVar("Side", bound="_Side")


def _rendezvous(url: Optional[str]) -> Optional[str]:
    if url is not None and not isinstance(url, str):
        raise TypeError("rendezvous must be a URL string")
    return url or os.environ.get("WORMHOLE_SYNC_RENDEZVOUS") or None


def _schedule(schedule: Optional[Schedule]):
    if schedule is None:
        return None
    try:
        return [(float(when), float(interval)) for when, interval in schedule]
    except (TypeError, ValueError):
        raise TypeError("schedule must be a list of (when, interval) pairs of seconds") from None


def _data(data: bytes) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("data must be bytes, not %s" % type(data).__name__)
    return bytes(data)


class _Side:
    _native_class: type

    def __init__(self) -> None:
        self._side = None

    def get_verifier(self) -> bytes:
        """Blocks until the keys are agreed; returns the 32-byte verifier."""
        return self._side.get_verifier()

    def get_data(self) -> bytes:
        """Blocks until the exchange completes; returns the peer's data."""
        return self._side.get_data()

    def finish(self) -> bytes:
        """The older name of ``get_data()``."""
        return self.get_data()

    def serialize(self) -> bytes:
        """The whole state as printable JSON bytes (the same as the Rust
        crates'). It contains secrets: the code and the data."""
        return self._side.serialize()

    @classmethod
    def from_serialized(cls: Type[Side], data: bytes) -> Side:
        """Restores an exchange from ``serialize()``'s output."""
        side = cls.__new__(cls)
        side._side = cls._native_class.from_serialized(_data(data))
        return side

    def close(self) -> None:
        """Stops the exchange and closes its channel (unless serialized)."""
        self._side.close()

    def cancel(self) -> None:
        """Stops the exchange from any thread: a waiting call raises
        ``CancelledError``; the channel is closed unless serialized."""
        self._side.cancel()

    @property
    def rendezvous(self) -> str:
        """The rendezvous server's URL."""
        return self._side.rendezvous

    @property
    def appid(self) -> str:
        """The application id."""
        return self._side.appid

    def __enter__(self: Side) -> Side:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Initiator(_Side):
    """The side that goes first: it gets a channel from the rendezvous server
    and shows the invitation code."""

    _native_class = _native.Initiator

    def __init__(
        self,
        appid: str,
        data: bytes,
        rendezvous: Optional[str] = None,
        schedule: Optional[Schedule] = None,
        timeout: Optional[float] = None,
        code_words: Optional[int] = None,
    ) -> None:
        super().__init__()
        self._side = _native.Initiator(
            appid, _data(data), _rendezvous(rendezvous), _schedule(schedule), timeout, code_words
        )

    def get_code(self) -> str:
        """Blocks until the server allocated a channel; returns the code."""
        return self._side.get_code()

    def start(self) -> str:
        """The older name of ``get_code()``."""
        return self.get_code()


class Receiver(_Side):
    """The side that types the invitation code."""

    _native_class = _native.Receiver

    def __init__(
        self,
        appid: str,
        code: str,
        data: bytes,
        rendezvous: Optional[str] = None,
        schedule: Optional[Schedule] = None,
        timeout: Optional[float] = None,
    ) -> None:
        super().__init__()
        if not isinstance(code, str):
            raise TypeError("code must be a string like '7-guitarist-revenge'")
        self._side = _native.Receiver(appid, code, _data(data), _rendezvous(rendezvous), _schedule(schedule), timeout)

    def start(self) -> None:
        """Nothing to wait for before the exchange: the older flow's first step."""


def _in_thread(call: Callable[[], Any]) -> "concurrent.futures.Future[Any]":
    """Runs a blocking call on a thread of its own (a waiting exchange holds
    its thread, so a bounded pool could starve the others)."""
    future: "concurrent.futures.Future[Any]" = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(call())
        except BaseException as error:  # handed to the waiter
            future.set_exception(error)

    threading.Thread(target=run, name="wormhole-sync", daemon=True).start()
    return future


class _AsyncSide:
    """The asyncio flavour: each wait is awaitable, and cancelling the task
    that awaits it cancels the exchange (closing its channel unless
    serialized)."""

    _blocking: _Side
    _blocking_class: Type[_Side]

    @classmethod
    def from_serialized(cls, data: bytes) -> Any:
        """Restores an exchange from ``serialize()``'s output."""
        side = cls.__new__(cls)
        side._blocking = cls._blocking_class.from_serialized(data)
        return side

    async def _wait(self, call: Callable[[], Any]) -> Any:
        future = asyncio.wrap_future(_in_thread(call))
        try:
            return await future
        except asyncio.CancelledError:
            self._blocking.cancel()
            raise

    async def get_verifier(self) -> bytes:
        """The 32-byte verifier, once the keys are agreed."""
        return await self._wait(self._blocking.get_verifier)

    async def get_data(self) -> bytes:
        """The peer's data, once the exchange completed."""
        return await self._wait(self._blocking.get_data)

    def serialize(self) -> bytes:
        """The whole state as printable JSON bytes (it contains secrets)."""
        return self._blocking.serialize()

    async def close(self) -> None:
        """Stops the exchange and closes its channel (unless serialized)."""
        await self._wait(self._blocking.close)

    def cancel(self) -> None:
        """Stops the exchange: a waiting coroutine raises ``CancelledError``."""
        self._blocking.cancel()


class AsyncInitiator(_AsyncSide):
    """The initiator, for asyncio: ``code = await initiator.get_code()``."""

    _blocking_class = Initiator

    def __init__(self, appid: str, data: bytes, **options: Any) -> None:
        self._blocking = Initiator(appid, data, **options)

    async def get_code(self) -> str:
        """The invitation code, once the server allocated a channel."""
        return await self._wait(self._blocking.get_code)


class AsyncReceiver(_AsyncSide):
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
