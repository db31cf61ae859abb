"""The exceptions of wormhole-sync: one base class, one subclass per outcome.

Every exception carries a message for people and, where the rendezvous server
refused, the server's error code (``server_code``, e.g. ``"rate-limited"``).
Messages never contain the code, keys or data.
"""

from typing import Optional


class WormholeSyncError(Exception):
    """The base class of every wormhole-sync error."""

    def __init__(self, message: str, server_code: Optional[str] = None) -> None:
        super().__init__(message)
        self.server_code = server_code


class WrongCodeError(WormholeSyncError):
    """The two sides used different codes; the channel is burned."""


class ExchangeTimeoutError(WormholeSyncError, TimeoutError):
    """The hard timeout passed before the exchange completed."""


class CrowdedError(WormholeSyncError):
    """Two other sides already used this code's channel."""


class UnknownChannelError(WormholeSyncError):
    """No channel has the number at the start of the code."""


class ChannelGoneError(WormholeSyncError):
    """The channel expired, was lost, or was burned by a failed attempt."""


class PeerClosedError(WormholeSyncError):
    """The other side closed, declined or vanished before the exchange completed."""


class ServerUnreachableError(WormholeSyncError, ConnectionError):
    """The rendezvous server could not be reached until the timeout."""


class ServerRefusedError(WormholeSyncError):
    """The rendezvous server refused (see ``server_code``)."""


class ServerBusyError(ServerRefusedError):
    """The rendezvous server kept refusing for now (rate limited, full, its
    storage unavailable: see ``server_code``) until the timeout; trying
    again later may work."""


class BadStateError(WormholeSyncError, ValueError):
    """A serialized state could not be restored."""


class BadCodeError(WormholeSyncError, ValueError):
    """The invitation code is not well formed."""


class CancelledError(WormholeSyncError):
    """The exchange was stopped (a Ctrl-C during a wait, or ``close()``)."""


class UsageError(WormholeSyncError, ValueError):
    """An argument or a call the exchange does not allow."""


class ProtocolError(WormholeSyncError):
    """The peer or the server broke the protocol."""
