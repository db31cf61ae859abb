"""The exchange as a state machine, for programs with an event loop and an
HTTP client of their own (any loop: asyncio, Trio, Twisted, a ``selectors``
loop, a GUI's). It never does I/O and never reads a clock: you pass in the
time and the server's answers, and take out the requests to send, when to
wake it, and what happened. ``wormhole_sync.transcribe`` is this same
machine with a driver.

The loop, in short::

    exchange = Exchange.initiator("example.com/app", b"data", rendezvous=url)
    exchange.start(time.time())
    while not exchange.is_finished():
        while (request := exchange.poll_transmit(time.time())) is not None:
            send it (POST request.body to request.url within request.timeout);
            later: exchange.handle_response(time.time(), request.id, status, body)
               or  exchange.handle_transport_error(time.time(), request.id, "why")
        while (event := exchange.poll_event()) is not None:
            Code / Verifier / Data / Failed
        sleep until an answer arrives or exchange.poll_timeout(), then
        exchange.handle_timeout(time.time())

``python/examples/own_loop.py`` in the repository is a whole one on asyncio
streams. Times are seconds since the Unix epoch, as ``time.time()`` gives.
"""

from dataclasses import dataclass
from typing import Optional, Union

from . import _native
from ._flavours import Schedule, check_data, check_text, options
from .errors import WormholeSyncError


@dataclass(frozen=True)
class Transmit:
    """A request to send: ``POST`` ``body`` (JSON) to ``url`` with
    ``Content-Type: application/json``, giving up after ``timeout`` seconds;
    report the answer with ``id``."""

    id: int
    method: str
    url: str
    body: bytes
    timeout: float


@dataclass(frozen=True)
class Code:
    """The invitation code is known (the initiator's allocated, the
    receiver's given)."""

    code: str

    def __repr__(self) -> str:  # never print the code's words
        return "Code(%s-<words>)" % self.code.split("-", 1)[0]


@dataclass(frozen=True)
class Verifier:
    """The keys are agreed: 32 bytes both people may compare."""

    verifier: bytes


@dataclass(frozen=True)
class Data:
    """The exchange succeeded: the peer's data. The channel may still be
    closing: keep running the loop until ``is_finished()``."""

    data: bytes

    def __repr__(self) -> str:  # never print the data
        return "Data(<%d bytes>)" % len(self.data)


@dataclass(frozen=True)
class Failed:
    """The exchange failed: ``error`` is the exception (``WrongCodeError``,
    ``ExchangeTimeoutError``, ...), not raised."""

    error: WormholeSyncError


Event = Union[Code, Verifier, Data, Failed]


class Exchange:
    """One side of a transcribe-mode exchange, as a state machine."""

    def __init__(self, native: "_native.Exchange") -> None:
        self._native = native

    @classmethod
    def initiator(
        cls,
        appid: str,
        data: bytes,
        rendezvous: Optional[str] = None,
        schedule: Optional[Schedule] = None,
        timeout: Optional[float] = None,
        code_words: Optional[int] = None,
    ) -> "Exchange":
        """The side that allocates a channel and shows the code."""
        given = options(rendezvous, schedule, timeout, code_words)
        return cls(_native.Exchange("initiator", check_text("appid", appid), check_data(data), **given))

    @classmethod
    def receiver(
        cls,
        appid: str,
        code: str,
        data: bytes,
        rendezvous: Optional[str] = None,
        schedule: Optional[Schedule] = None,
        timeout: Optional[float] = None,
    ) -> "Exchange":
        """The side that types the code."""
        given = options(rendezvous, schedule, timeout)
        native = _native.Exchange("receiver", check_text("appid", appid), check_data(data), check_text("code", code), **given)
        return cls(native)

    @classmethod
    def from_serialized(cls, data: bytes) -> "Exchange":
        """Restores an exchange from ``serialize()``'s output (of any flavour
        of this package, or of the Rust crates); call ``start()`` again."""
        return cls(_native.Exchange.from_serialized(check_data(data)))

    def start(self, now: float) -> None:
        """Starts the exchange; its schedule and timeout count from the first
        start (also across a restore)."""
        self._native.start(now)

    def poll_transmit(self, now: float) -> Optional[Transmit]:
        """The next request to send, if one is due; call until ``None``."""
        due = self._native.poll_transmit(now)
        return None if due is None else Transmit(*due)

    def handle_response(self, now: float, id: int, status: int, body: bytes) -> None:
        """The server answered request ``id`` with an HTTP status and body."""
        self._native.handle_response(now, id, status, check_data(body))

    def handle_transport_error(self, now: float, id: int, description: str, permanent: bool = False) -> None:
        """Request ``id`` got no answer (refused, reset, timed out: say why,
        it is shown if the server is never reached). It is retried per the
        schedule, unless ``permanent`` (an untrusted certificate, say)."""
        self._native.handle_transport_error(now, id, check_text("description", description), permanent)

    def handle_timeout(self, now: float) -> None:
        """Time has passed (call it at ``poll_timeout()``)."""
        self._native.handle_timeout(now)

    def poll_event(self) -> Optional[Event]:
        """The next piece of news (each once), or ``None``."""
        event = self._native.poll_event()
        if event is None:
            return None
        kind, value = event
        return {"code": Code, "verifier": Verifier, "data": Data, "failed": Failed}[kind](value)

    def poll_timeout(self) -> Optional[float]:
        """When to call ``handle_timeout`` if nothing else happens first, in
        seconds since the epoch; ``None`` when nothing is left to wait for."""
        return self._native.poll_timeout()

    def cancel(self, now: float) -> None:
        """Gives up: fails with ``CancelledError`` and closes the channel
        (keep running the loop until ``is_finished()`` to send the close)."""
        self._native.cancel(now)

    def is_finished(self) -> bool:
        """Whether nothing is left to do: the outcome is known and the
        channel closed (or its close given up)."""
        return self._native.is_finished()

    def serialize(self) -> bytes:
        """The whole state as printable JSON bytes, at any point. It contains
        secrets: the code and the data."""
        return self._native.serialize()

    @property
    def role(self) -> str:
        """``"initiator"`` or ``"receiver"``."""
        return self._native.role


__all__ = ["Exchange", "Transmit", "Event", "Code", "Verifier", "Data", "Failed"]
