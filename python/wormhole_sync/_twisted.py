"""The Twisted flavour of both protocols: services whose ``when_*`` methods
return Deferreds.

Nothing blocks the reactor thread: each wait runs on the package's own
runtime and its result comes back with ``reactor.callFromThread``. Any
reactor works (no asyncio reactor needed). At the timeout every waiter
errbacks with ``ExchangeTimeoutError``, a ``TimeoutError``; cancelling a
Deferred cancels the exchange.
"""

from typing import Any, Callable, Optional, Type

from twisted.application import service
from twisted.internet import defer
from twisted.python import failure

from . import magic_wormhole, transcribe
from ._flavours import BlockingSide, Callback


def _fire(deferred: defer.Deferred, value: Any, error: Optional[BaseException]) -> None:
    if deferred.called:  # cancelled meanwhile
        return
    if error is not None:
        deferred.errback(failure.Failure(error))
    else:
        deferred.callback(value)


class _TwistedSide(service.Service):
    _blocking_class: Type[BlockingSide]
    _blocking: Any

    @classmethod
    def from_serialized(cls, data: bytes, reactor: Any, timeout: Optional[float] = None) -> Any:
        """Restores an exchange from ``serialize()``'s output."""
        side = cls.__new__(cls)
        side._reactor = reactor
        side._blocking = cls._blocking_class.from_serialized(data, timeout)
        return side

    def _when(self, start: Callable[[Callback], None]) -> defer.Deferred:
        deferred: defer.Deferred = defer.Deferred(lambda _: self._blocking.cancel())

        def settle(value: Any, error: Optional[BaseException]) -> None:
            self._reactor.callFromThread(_fire, deferred, value, error)

        start(settle)
        return deferred

    def startService(self) -> None:
        """Starts the exchange (the first ``when_*`` call would too)."""
        super().startService()
        self._blocking._side.start()

    def when_get_verifier(self) -> defer.Deferred:
        """Fires with the 32-byte verifier once the keys are agreed."""
        return self._when(self._blocking._side.when_verifier)

    def when_get_data(self) -> defer.Deferred:
        """Fires with the peer's data once the exchange completed and its
        channel is closed."""
        return self._when(self._blocking._side.when_data)

    def serialize(self) -> bytes:
        """The whole state as printable JSON bytes (it contains secrets)."""
        return self._blocking.serialize()

    def stopService(self) -> defer.Deferred:
        """Stops the exchange (waiters errback with ``CancelledError``);
        fires once its channel is closed (unless it was serialized)."""
        super().stopService()
        return self._when(self._blocking._side.when_closed)


class _TwistedInitiator(_TwistedSide):
    def when_get_code(self) -> defer.Deferred:
        """Fires with the invitation code once the server allocated a channel."""
        return self._when(self._blocking._side.when_code)


class TwistedInitiator(_TwistedInitiator):
    """The transcribe-mode initiator as a Twisted service."""

    _blocking_class = transcribe.Initiator

    def __init__(self, appid: str, data: bytes, reactor: Any, **options: Any) -> None:
        self._reactor = reactor
        self._blocking = transcribe.Initiator(appid, data, **options)


class TwistedReceiver(_TwistedSide):
    """The transcribe-mode receiver as a Twisted service."""

    _blocking_class = transcribe.Receiver

    def __init__(self, appid: str, code: str, data: bytes, reactor: Any, **options: Any) -> None:
        self._reactor = reactor
        self._blocking = transcribe.Receiver(appid, code, data, **options)


class TwistedMagicWormholeInitiator(_TwistedInitiator):
    """The magic-wormhole flavour's initiator as a Twisted service."""

    _blocking_class = magic_wormhole.Initiator

    def __init__(self, appid: str, data: bytes, reactor: Any, **options: Any) -> None:
        self._reactor = reactor
        self._blocking = magic_wormhole.Initiator(appid, data, **options)


class TwistedMagicWormholeReceiver(_TwistedSide):
    """The magic-wormhole flavour's receiver as a Twisted service."""

    _blocking_class = magic_wormhole.Receiver

    def __init__(self, appid: str, code: str, data: bytes, reactor: Any, **options: Any) -> None:
        self._reactor = reactor
        self._blocking = magic_wormhole.Receiver(appid, code, data, **options)
