//! Budgets of stored bytes, so no one can pin the server's memory and disk
//! for the days channels live: per application id, per client address
//! (IPv6 by /64) and in total, plus a cap on application ids. Each stored
//! message is charged to its app and to the client that posted it, and
//! given back when its channel's log is dropped (closed, burned, expired).
//!
//! And a cap on the channels one client address holds: each channel is
//! charged to the client that made it, whatever it holds, until it is
//! deleted or finished (every side closed: kept, emptied, only for the
//! retention), so one host cannot fill an application id (or hold the
//! one-digit ids, and so choose which id the next code gets). Finished
//! channels are not counted, so a host that runs many exchanges one after
//! the other is not refused; their few minutes are bounded by the rate
//! limit instead.

use std::collections::HashMap;
use std::net::IpAddr;

use parking_lot::Mutex;
use wormhole_sync_core::rendezvous::{Op, Rendezvous, RendezvousSnapshot};
use wormhole_sync_core::wire::MailboxId;
use wormhole_sync_core::wire::{ErrorCode, WireError};

use crate::client_address::subscriber;

/// The limits; 0 turns one off.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) per_app: u64,
    pub(crate) per_client: u64,
    pub(crate) total: u64,
    /// Channels one client address may have made and not yet seen deleted.
    pub(crate) channels_per_client: usize,
}

/// What one channel's log holds, by whom (`None`: restored from disk,
/// where the poster's address is not kept).
type Charges = Vec<(Option<IpAddr>, u64)>;

#[derive(Default)]
struct Usage {
    total: u64,
    apps: HashMap<String, u64>,
    clients: HashMap<IpAddr, u64>,
    mailboxes: HashMap<(String, MailboxId), Charges>,
    /// Live channels per client that made them, and who made each (channels
    /// restored from disk are charged to nobody: their makers are not kept).
    channels: HashMap<IpAddr, usize>,
    makers: HashMap<(String, MailboxId), IpAddr>,
}

pub(crate) struct Budgets {
    limits: Limits,
    usage: Mutex<Usage>,
}

/// The refusal of a new application id past `--max-apps`.
pub(crate) fn too_many_apps() -> WireError {
    WireError::new(ErrorCode::ServerFull, "the server holds as many application ids as it allows")
}

/// The refusal of a channel past its maker's cap.
pub(crate) fn too_many_client_channels() -> WireError {
    WireError::new(
        ErrorCode::TooManyClientChannels,
        "this address holds as many channels as the server allows one client; finish or close some, or retry later",
    )
}

pub(crate) fn over(what: &str) -> WireError {
    WireError::new(ErrorCode::OverBudget, format!("{what} stores as many bytes as this server allows; retry later"))
}

impl Budgets {
    /// Refuses `op` before it runs (under the state's lock, so concurrent
    /// operations cannot pass a cap together) if what it would add is past
    /// a cap or budget of `client`'s, in this order: a new application id
    /// past `max_apps`, a new channel past the client's, a new message past
    /// the server's, the app's or the client's bytes. (A shared database
    /// checks the same, in the same order, over its counters:
    /// `postgres::caps`.)
    pub(crate) fn admit(
        &self,
        core: &Rendezvous,
        op: &Op,
        client: Option<IpAddr>,
        max_apps: usize,
    ) -> Result<(), WireError> {
        let Some(client) = client else { return Ok(()) };
        let demands = core.demands(op);
        if demands.new_app && max_apps > 0 && core.stats().apps >= max_apps {
            return Err(too_many_apps());
        }
        if demands.new_channel {
            self.check_channels(client)?;
        }
        if demands.stored_bytes > 0 {
            self.check(op.appid(), client, demands.stored_bytes)?;
        }
        Ok(())
    }

    /// Budgets already charged with what `saved` holds.
    pub(crate) fn new(limits: Limits, saved: &RendezvousSnapshot) -> Budgets {
        let mut usage = Usage::default();
        for mailbox in &saved.mailboxes {
            let bytes: u64 = mailbox.messages.iter().map(|m| m.body.len() as u64).sum();
            if bytes > 0 {
                usage.total += bytes;
                *usage.apps.entry(mailbox.appid.clone()).or_default() += bytes;
                usage.mailboxes.insert((mailbox.appid.clone(), mailbox.mailbox.clone()), vec![(None, bytes)]);
            }
        }
        Budgets { limits, usage: Mutex::new(usage) }
    }

    /// Whether storing `bytes` more for `appid` from `client` stays within
    /// every budget.
    pub(crate) fn check(&self, appid: &str, client: IpAddr, bytes: u64) -> Result<(), WireError> {
        let usage = self.usage.lock();
        let within = |used: u64, limit: u64| limit == 0 || used + bytes <= limit;
        if !within(usage.total, self.limits.total) {
            return Err(over("the server"));
        }
        if !within(usage.apps.get(appid).copied().unwrap_or(0), self.limits.per_app) {
            return Err(over("this application id"));
        }
        if !within(usage.clients.get(&subscriber(client)).copied().unwrap_or(0), self.limits.per_client) {
            return Err(over("this address"));
        }
        Ok(())
    }

    /// Charges a stored message.
    pub(crate) fn charge(&self, appid: &str, mailbox: &MailboxId, client: IpAddr, bytes: u64) {
        let client = subscriber(client);
        let mut usage = self.usage.lock();
        usage.total += bytes;
        *usage.apps.entry(appid.to_string()).or_default() += bytes;
        *usage.clients.entry(client).or_default() += bytes;
        usage.mailboxes.entry((appid.to_string(), mailbox.clone())).or_default().push((Some(client), bytes));
    }

    /// Gives back everything a mailbox's log held.
    pub(crate) fn release(&self, appid: &str, mailbox: &MailboxId) {
        let mut usage = self.usage.lock();
        let Some(charges) = usage.mailboxes.remove(&(appid.to_string(), mailbox.clone())) else { return };
        for (client, bytes) in charges {
            usage.total -= bytes;
            if let Some(app) = usage.apps.get_mut(appid) {
                *app -= bytes;
                if *app == 0 {
                    usage.apps.remove(appid);
                }
            }
            if let Some(client) = client {
                if let Some(used) = usage.clients.get_mut(&client) {
                    *used -= bytes;
                    if *used == 0 {
                        usage.clients.remove(&client);
                    }
                }
            }
        }
    }

    /// Refuses a new channel for a client that holds as many as it may.
    pub(crate) fn check_channels(&self, client: IpAddr) -> Result<(), WireError> {
        let limit = self.limits.channels_per_client;
        let held = self.usage.lock().channels.get(&subscriber(client)).copied().unwrap_or(0);
        if limit > 0 && held >= limit {
            return Err(too_many_client_channels());
        }
        Ok(())
    }

    /// Charges a channel made by `client`.
    pub(crate) fn channel_made(&self, appid: &str, mailbox: &MailboxId, client: IpAddr) {
        let client = subscriber(client);
        let mut usage = self.usage.lock();
        if usage.makers.insert((appid.to_string(), mailbox.clone()), client).is_none() {
            *usage.channels.entry(client).or_default() += 1;
        }
    }

    /// Gives back a deleted or finished channel.
    pub(crate) fn channel_gone(&self, appid: &str, mailbox: &MailboxId) {
        let mut usage = self.usage.lock();
        let Some(client) = usage.makers.remove(&(appid.to_string(), mailbox.clone())) else { return };
        if let Some(held) = usage.channels.get_mut(&client) {
            *held -= 1;
            if *held == 0 {
                usage.channels.remove(&client);
            }
        }
    }

    /// Bytes stored in all, and how many client addresses hold some.
    pub(crate) fn usage(&self) -> (u64, usize) {
        let usage = self.usage.lock();
        (usage.total, usage.clients.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_bounded_and_given_back() {
        let limits = Limits { per_app: 1_000, per_client: 300, total: 1_500, channels_per_client: 0 };
        let budgets = Budgets::new(limits, &RendezvousSnapshot::new(Vec::new()));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let ch = |n: u32| MailboxId::new(format!("m{n}")).unwrap();
        budgets.check("app", a, 300).unwrap();
        budgets.charge("app", &ch(1), a, 300);
        assert_eq!(budgets.check("app", a, 1).unwrap_err().code, ErrorCode::OverBudget, "the address is full");
        budgets.check("app", b, 300).unwrap();
        budgets.charge("app", &ch(2), b, 300);
        budgets.release("app", &ch(1));
        assert_eq!(budgets.usage(), (300, 1));
        budgets.check("app", a, 300).unwrap();
        budgets.charge("other", &ch(1), "2001:db8::1".parse().unwrap(), 300);
        assert!(budgets.check("other", "2001:db8::2".parse().unwrap(), 1).is_err(), "a /64 shares one budget");
        budgets.release("app", &ch(2));
        budgets.release("other", &ch(1));
        assert_eq!(budgets.usage(), (0, 0));
    }

    #[test]
    fn channels_are_capped_per_client_until_deleted() {
        let limits = Limits { per_app: 0, per_client: 0, total: 0, channels_per_client: 2 };
        let budgets = Budgets::new(limits, &RendezvousSnapshot::new(Vec::new()));
        let (a, b): (IpAddr, IpAddr) = ("2001:db8:1:2::1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let ch = |n: u32| MailboxId::new(format!("m{n}")).unwrap();
        budgets.channel_made("app", &ch(1), a);
        budgets.channel_made("app", &ch(1), a); // The same channel again: charged once.
        budgets.check_channels(a).unwrap();
        budgets.channel_made("other", &ch(2), "2001:db8:1:2::9".parse().unwrap());
        let refused = budgets.check_channels(a).unwrap_err();
        assert_eq!(refused.code, ErrorCode::TooManyClientChannels, "a /64 is one client");
        budgets.check_channels(b).unwrap();
        budgets.channel_gone("app", &ch(1));
        budgets.check_channels(a).unwrap();
        budgets.channel_gone("app", &ch(1)); // Gone twice: given back once.
        budgets.channel_gone("other", &ch(2));
        assert!(budgets.usage.lock().channels.is_empty());
    }
}
