"""wormhole-sync: securely exchange a small piece of data between two computers
with a short invitation code like ``7-guitarist-revenge``.

The exchange itself is this project's Rust core. ``wormhole_sync.transcribe``
has the ``Initiator`` and ``Receiver`` (blocking, asyncio and Twisted),
``wormhole_sync.magic_wormhole`` the same for magic-wormhole's protocol and
the ``wormhole`` command, ``wormhole_sync.sans_io`` the state machine for your
own event loop, and ``wormhole_sync.errors`` the exceptions.
"""

from . import errors, magic_wormhole, sans_io, transcribe
from .errors import WormholeSyncError

__all__ = ["errors", "magic_wormhole", "sans_io", "transcribe", "WormholeSyncError"]
