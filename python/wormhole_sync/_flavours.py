"""The three flavours of one side (blocking, asyncio, Twisted), written once
for both protocols: ``transcribe`` and ``magic_wormhole`` only choose the
protocol and the defaults. Every side is a ``_native.Side`` running on the
package's tokio runtime."""

import asyncio
import os
from typing import Any, Callable, Optional, Sequence, Tuple, Type, TypeVar

from . import _native

Schedule = Sequence[Tuple[float, float]]
Side = TypeVar("Side", bound="BlockingSide")
AsyncSideT = TypeVar("AsyncSideT", bound="AsyncSide")

# Called on a runtime thread with (value, None) or (None, exception).
Callback = Callable[[Any, Optional[BaseException]], None]


def check_data(data: Any) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("data must be bytes, not %s" % type(data).__name__)
    return bytes(data)


def check_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("%s must be a string, not %s" % (name, type(value).__name__))
    return value


def options(
    rendezvous: Optional[str],
    schedule: Optional[Schedule],
    timeout: Optional[float],
    code_words: Optional[int] = None,
    default_rendezvous_from_environment: bool = True,
) -> dict:
    """The options every side takes, checked: wrong types are a
    ``TypeError``, wrong values a ``ValueError`` (from the native module)."""
    if rendezvous is not None:
        check_text("rendezvous", rendezvous)
    elif default_rendezvous_from_environment:
        rendezvous = os.environ.get("WORMHOLE_SYNC_RENDEZVOUS") or None
    steps = None
    if schedule is not None:
        try:
            steps = [(float(when), float(interval)) for when, interval in schedule]
        except (TypeError, ValueError):
            raise TypeError("schedule must be a list of (when, interval) pairs of seconds") from None
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError("timeout must be a number of seconds, not %s" % type(timeout).__name__)
        timeout = float(timeout)
    if code_words is not None:
        if isinstance(code_words, bool) or not isinstance(code_words, int):
            raise TypeError("code_words must be an int, not %s" % type(code_words).__name__)
        if code_words < 1:
            raise ValueError("code_words must be at least 1")
    return {"rendezvous": rendezvous, "schedule": steps, "timeout": timeout, "code_words": code_words}


class BlockingSide:
    """What both sides of the blocking flavour share. Every wait releases the
    GIL; a Ctrl-C interrupts it and closes the channel (unless serialized)."""

    _flavour: str
    _role: str
    _side: Any

    def get_verifier(self) -> bytes:
        """Blocks until the keys are agreed; returns the 32-byte verifier
        (both people may compare it)."""
        return self._side.get_verifier()

    def get_data(self) -> bytes:
        """Blocks until the exchange completed and its channel is closed;
        returns the peer's data. Calling it again returns the same."""
        return self._side.get_data()

    def finish(self) -> bytes:
        """The older name of ``get_data()``."""
        return self.get_data()

    def serialize(self) -> bytes:
        """The whole state as printable JSON bytes (the same as the Rust
        crates'), at any point. It contains secrets: the code and the data.
        Once serialized, closing or dropping this object leaves the channel
        open for the saved copy."""
        return self._side.serialize()

    @classmethod
    def from_serialized(cls: Type[Side], data: bytes, timeout: Optional[float] = None) -> Side:
        """Restores an exchange from ``serialize()``'s output (of Python or of
        the Rust crates and command). ``timeout`` gives it another one,
        counted from the first start."""
        side = cls.__new__(cls)
        timeout = options(None, None, timeout, default_rendezvous_from_environment=False)["timeout"]
        side._side = _native.Side.restore(cls._flavour, cls._role, check_data(data), timeout)
        return side

    def close(self) -> None:
        """Stops the exchange and blocks until its channel is closed (unless
        the state was serialized); the object cannot be used afterwards."""
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

    def __exit__(self, *exc: Any) -> None:
        self.close()


class BlockingInitiator(BlockingSide):
    _role = "initiator"

    def _make(self, appid: str, data: bytes, **given: Any) -> None:
        self._side = _native.Side(self._flavour, self._role, check_text("appid", appid), check_data(data), **given)

    def get_code(self) -> str:
        """Blocks until the server allocated a channel; returns the code."""
        return self._side.get_code()

    def start(self) -> str:
        """The older name of ``get_code()``."""
        return self.get_code()


class BlockingReceiver(BlockingSide):
    _role = "receiver"

    def _make(self, appid: str, code: str, data: bytes, **given: Any) -> None:
        self._side = _native.Side(
            self._flavour, self._role, check_text("appid", appid), check_data(data), check_text("code", code), **given
        )

    def start(self) -> None:
        """The older flow's first step: starts the exchange."""
        self._side.start()


def _settle(future: "asyncio.Future[Any]", value: Any, error: Optional[BaseException]) -> None:
    if future.done():  # cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class AsyncSide:
    """The asyncio flavour: each wait is awaitable and takes no thread;
    cancelling the task that awaits it cancels the exchange (closing its
    channel unless serialized)."""

    _blocking_class: Type[BlockingSide]
    _blocking: BlockingSide

    @classmethod
    def from_serialized(cls: Type[AsyncSideT], data: bytes, timeout: Optional[float] = None) -> AsyncSideT:
        """Restores an exchange from ``serialize()``'s output."""
        side = cls.__new__(cls)
        side._blocking = cls._blocking_class.from_serialized(data, timeout)
        return side

    async def _wait(self, start: Callable[[Callback], None]) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def settle(value: Any, error: Optional[BaseException]) -> None:
            try:
                loop.call_soon_threadsafe(_settle, future, value, error)
            except RuntimeError:  # the loop was closed: nobody waits
                pass

        start(settle)
        try:
            return await future
        except asyncio.CancelledError:
            self._blocking.cancel()
            raise

    async def get_verifier(self) -> bytes:
        """The 32-byte verifier, once the keys are agreed."""
        return await self._wait(self._blocking._side.when_verifier)

    async def get_data(self) -> bytes:
        """The peer's data, once the exchange completed and its channel is
        closed."""
        return await self._wait(self._blocking._side.when_data)

    def serialize(self) -> bytes:
        """The whole state as printable JSON bytes (it contains secrets)."""
        return self._blocking.serialize()

    async def close(self) -> None:
        """Stops the exchange; returns once its channel is closed (unless
        serialized)."""
        await self._wait(self._blocking._side.when_closed)

    def cancel(self) -> None:
        """Stops the exchange: a waiting coroutine raises ``CancelledError``."""
        self._blocking.cancel()

    @property
    def rendezvous(self) -> str:
        """The rendezvous server's URL."""
        return self._blocking.rendezvous

    @property
    def appid(self) -> str:
        """The application id."""
        return self._blocking.appid

    async def __aenter__(self: AsyncSideT) -> AsyncSideT:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class AsyncInitiatorSide(AsyncSide):
    async def get_code(self) -> str:
        """The invitation code, once the server allocated a channel."""
        return await self._wait(self._blocking._side.when_code)
