"""The Twisted flavour: services whose ``when_*`` methods return Deferreds.

Waits run on threads of their own, so the reactor thread never blocks; their
results come back to it with ``callFromThread``. Any reactor works (no asyncio
reactor needed). At the timeout every waiter errbacks with
``ExchangeTimeoutError``, a ``TimeoutError``.
"""

from typing import Any, Callable

from twisted.application import service
from twisted.internet import defer
from twisted.python import failure

from .transcribe import Initiator, Receiver, _in_thread


class _TwistedSide(service.Service):
    _blocking: Any
    _blocking_class: Any

    @classmethod
    def from_serialized(cls, data: bytes, reactor: Any) -> Any:
        """Restores an exchange from ``serialize()``'s output."""
        side = cls.__new__(cls)
        side._bind(reactor)
        side._blocking = cls._blocking_class.from_serialized(data)
        return side

    def _bind(self, reactor: Any) -> None:
        self._reactor = reactor

    def _when(self, call: Callable[[], Any]) -> defer.Deferred:
        deferred: defer.Deferred = defer.Deferred()
        future = _in_thread(call)

        def finished(done: Any) -> None:
            error = done.exception()
            if error is None:
                self._reactor.callFromThread(deferred.callback, done.result())
            else:
                self._reactor.callFromThread(deferred.errback, failure.Failure(error))

        future.add_done_callback(finished)
        return deferred

    def when_get_verifier(self) -> defer.Deferred:
        """Fires with the 32-byte verifier once the keys are agreed."""
        return self._when(self._blocking.get_verifier)

    def when_get_data(self) -> defer.Deferred:
        """Fires with the peer's data once the exchange completed."""
        return self._when(self._blocking.get_data)

    def serialize(self) -> bytes:
        """The whole state as printable JSON bytes (it contains secrets)."""
        return self._blocking.serialize()

    def stopService(self) -> Any:
        """Stops the exchange (waiters errback with ``CancelledError``) and
        closes its channel unless it was serialized."""
        self._blocking.cancel()
        super().stopService()
        return self._when(self._blocking.close)


class TwistedInitiator(_TwistedSide):
    """The initiator as a Twisted service."""

    _blocking_class = Initiator

    def __init__(self, appid: str, data: bytes, reactor: Any, **options: Any) -> None:
        self._bind(reactor)
        self._blocking = Initiator(appid, data, **options)

    def when_get_code(self) -> defer.Deferred:
        """Fires with the invitation code once the server allocated a channel."""
        return self._when(self._blocking.get_code)


class TwistedReceiver(_TwistedSide):
    """The receiver as a Twisted service."""

    _blocking_class = Receiver

    def __init__(self, appid: str, code: str, data: bytes, reactor: Any, **options: Any) -> None:
        self._bind(reactor)
        self._blocking = Receiver(appid, code, data, **options)
