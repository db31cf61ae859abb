//! A rendezvous server's limits and timings, and the refusals past its caps.

use std::time::Duration;

use crate::wire::{ErrorCode, WireError};

/// The refusal of a new channel past [`RendezvousConfig::max_channels`]
/// (for an engine that counts channels elsewhere, as a shared database does).
pub fn server_channels_full() -> WireError {
    WireError::new(ErrorCode::ServerFull, "the server holds as many channels as it allows")
}

/// The refusal of a new channel past [`RendezvousConfig::max_channels_per_app`].
pub fn app_channels_full() -> WireError {
    WireError::new(ErrorCode::TooManyChannels, "this application holds as many channels as allowed")
}

/// Limits and timings of a rendezvous server.
///
/// ```
/// use std::time::Duration;
/// use wormhole_sync_core::rendezvous::RendezvousConfig;
///
/// let config = RendezvousConfig { channel_expiry: Duration::from_secs(60), ..Default::default() };
/// assert_eq!(config.max_messages_per_channel, 16);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RendezvousConfig {
    /// A mailbox with no request for this long is deleted (with its nameplate).
    pub channel_expiry: Duration,
    /// Largest message body, in bytes of its JSON string.
    pub max_message_bytes: usize,
    /// Most messages one mailbox holds.
    pub max_messages_per_channel: usize,
    /// Most mailboxes one application id holds at once, not counting the
    /// emptied ones kept for the retention (spent and burned codes): an app
    /// id may finish any number of exchanges within a retention.
    pub max_channels_per_app: usize,
    /// Most mailboxes the server holds at once, the emptied ones kept for the
    /// retention included (they hold memory too).
    pub max_channels: usize,
    /// Longest long-poll wait the server grants.
    pub max_wait: Duration,
    /// How long a burned mailbox, one two sides entered, or one its only
    /// side left holding the nameplate, stays after its members have all
    /// closed (emptied of its messages): its nameplate is not allocated
    /// again meanwhile, and a late join with the old code learns `burned`,
    /// `crowded` or `abandoned` instead of `unknown-channel`.
    pub burned_retention: Duration,
}

impl Default for RendezvousConfig {
    /// Three days' expiry (the "days" use case), 64 KiB messages, 16
    /// messages per mailbox, 10,000 mailboxes per app, a million in all,
    /// 60 s long-polls, burned mailboxes kept 5 minutes.
    fn default() -> Self {
        RendezvousConfig {
            channel_expiry: Duration::from_secs(3 * 24 * 3600),
            max_message_bytes: 64 * 1024,
            max_messages_per_channel: 16,
            max_channels_per_app: 10_000,
            max_channels: 1_000_000,
            max_wait: Duration::from_secs(60),
            burned_retention: Duration::from_secs(5 * 60),
        }
    }
}
