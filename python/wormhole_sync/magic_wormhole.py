"""The magic-wormhole flavour: one message each way with magic-wormhole's
ecosystem (the ``wormhole`` command, applications on its Python library, other
clients of its protocol) through any magic-wormhole mailbox server, over a
WebSocket. The same shape and flavours as ``wormhole_sync.transcribe``:
``Initiator``/``Receiver`` (blocking), ``AsyncInitiator``/``AsyncReceiver``,
and ``TwistedInitiator``/``TwistedReceiver`` (Twisted imported only when they
are).

With a magic-wormhole library application of the same ``appid``::

    from wormhole_sync.magic_wormhole import Initiator
    i = Initiator("lothar.com/example", b"hello", rendezvous="ws://relay.example:4000/v1")
    print("code:", i.get_code())
    print("they sent:", i.get_data())

With a person running ``wormhole send --text "meet at 6"``::

    from wormhole_sync.magic_wormhole import Receiver, read_text
    r = Receiver.for_text("7-guitarist-revenge")
    print(read_text(r.get_data()))

``rendezvous`` is the mailbox server's WebSocket URL (``ws://`` or ``wss://``,
usually ending in ``/v1``); by default magic-wormhole's public server
(``PUBLIC_MAILBOX_URL``), which the ``wormhole`` command uses too. Verifier
confirmation is not part of this protocol.
"""

from typing import Any, Optional

from . import _native
from ._flavours import AsyncInitiatorSide, AsyncSide, BlockingInitiator, BlockingReceiver, Schedule, options
from .errors import ProtocolError

#: The ``wormhole`` command's application id (for text and files).
TEXT_APPID: str = _native.TEXT_APPID
#: magic-wormhole's public mailbox server.
PUBLIC_MAILBOX_URL: str = _native.PUBLIC_MAILBOX_URL


def _options(rendezvous: Optional[str], schedule: Optional[Schedule], timeout: Optional[float], **more: Any) -> dict:
    # WORMHOLE_SYNC_RENDEZVOUS names a transcribe-mode server, not a mailbox server.
    return options(rendezvous, schedule, timeout, default_rendezvous_from_environment=False, **more)


def text_offer(message: str) -> bytes:
    """The message ``wormhole send --text MESSAGE`` sends."""
    if not isinstance(message, str):
        raise TypeError("message must be a string, not %s" % type(message).__name__)
    return _native.text_offer(message)


def read_text(data: bytes) -> str:
    """The text of a ``wormhole send --text`` offer. A file or directory
    offer (``wormhole send FILE``), which this package does not transfer, or
    any other message raises ``ProtocolError``."""
    kind, value = _native.read_offer(bytes(data))
    if kind != "text":
        raise ProtocolError(
            "the other side offered a %s, not text: ask it to use `wormhole send --text`" % (value or "file")
        )
    return value


def is_ack(data: bytes) -> bool:
    """Whether a receiver's answer (``get_data()`` of ``Initiator.for_text``)
    acknowledges the text, as ``wormhole receive`` does."""
    return _native.is_ack(bytes(data))


class Initiator(BlockingInitiator):
    """The side that allocates a nameplate and shows the code (as
    ``wormhole send`` does)."""

    _flavour = "magic-wormhole"

    def __init__(
        self,
        appid: str,
        data: bytes,
        rendezvous: Optional[str] = None,
        schedule: Optional[Schedule] = None,
        timeout: Optional[float] = None,
        code_words: Optional[int] = None,
    ) -> None:
        self._make(appid, data, **_options(rendezvous, schedule, timeout, code_words=code_words))

    @classmethod
    def for_text(cls, message: str, **options: Any) -> "Initiator":
        """Sends ``message`` as ``wormhole send --text`` does, to a person
        running ``wormhole receive``; ``get_data()`` is the answer, which
        ``is_ack`` checks."""
        return cls(TEXT_APPID, text_offer(message), **options)


class Receiver(BlockingReceiver):
    """The side that types the code (as ``wormhole receive`` does)."""

    _flavour = "magic-wormhole"

    def __init__(
        self,
        appid: str,
        code: str,
        data: bytes,
        rendezvous: Optional[str] = None,
        schedule: Optional[Schedule] = None,
        timeout: Optional[float] = None,
        _answer_text: bool = False,
    ) -> None:
        self._make(appid, code, data, **_options(rendezvous, schedule, timeout), answer_text=_answer_text)

    @classmethod
    def for_text(cls, code: str, **options: Any) -> "Receiver":
        """Receives what ``wormhole send --text`` sends (read it with
        ``read_text(get_data())``), answering as ``wormhole receive`` does:
        an acknowledgement, or a refusal the sender shows cleanly if it
        offered a file or a directory."""
        return cls(TEXT_APPID, code, b"", _answer_text=True, **options)


class AsyncInitiator(AsyncInitiatorSide):
    """The initiator, for asyncio."""

    _blocking_class = Initiator

    def __init__(self, appid: str, data: bytes, **options: Any) -> None:
        self._blocking = Initiator(appid, data, **options)

    @classmethod
    def for_text(cls, message: str, **options: Any) -> "AsyncInitiator":
        """See ``Initiator.for_text``."""
        return cls(TEXT_APPID, text_offer(message), **options)


class AsyncReceiver(AsyncSide):
    """The receiver, for asyncio."""

    _blocking_class = Receiver

    def __init__(self, appid: str, code: str, data: bytes, **options: Any) -> None:
        self._blocking = Receiver(appid, code, data, **options)

    @classmethod
    def for_text(cls, code: str, **options: Any) -> "AsyncReceiver":
        """See ``Receiver.for_text``."""
        return cls(TEXT_APPID, code, b"", _answer_text=True, **options)


def __getattr__(name: str) -> Any:
    # Twisted is imported only by those who use its flavour.
    if name in ("TwistedInitiator", "TwistedReceiver"):
        from . import _twisted

        return getattr(_twisted, name.replace("Twisted", "TwistedMagicWormhole"))
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


__all__ = [
    "Initiator",
    "Receiver",
    "AsyncInitiator",
    "AsyncReceiver",
    "TEXT_APPID",
    "PUBLIC_MAILBOX_URL",
    "text_offer",
    "read_text",
    "is_ack",
]
