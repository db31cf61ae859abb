"""wormhole-sync: securely exchange a small piece of data between two computers
with a short invitation code like ``7-guitarist-revenge``.

The exchange itself is this project's Rust core; see ``wormhole_sync.transcribe``
for the blocking ``Initiator`` and ``Receiver``, and ``wormhole_sync.errors``
for the exceptions.
"""

from . import errors, transcribe
from .errors import WormholeSyncError

__all__ = ["errors", "transcribe", "WormholeSyncError"]
