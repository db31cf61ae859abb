//! The caps and budgets that span a deployment sharing one database,
//! checked in each operation's transaction over the counters every
//! instance keeps up to date: the same caps and budgets, in the same
//! order, that a single server checks beforehand (`crate::engine`).

use std::collections::{BTreeMap, BTreeSet};

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use wormhole_sync_core::rendezvous::{app_channels_full, server_channels_full};
use wormhole_sync_core::wire::WireError;

use super::operation::{execute, query_one, Fail};
use super::writes::Written;
use crate::ServerConfig;

/// The caps and budgets an operation's writes may go past, counted over
/// the whole database (so over every instance): read by one statement that
/// runs after the writes, in their pipeline ([`Checks::statement`]), and
/// judged by [`Checks::first_over`]; or, in a batch, judged by the
/// statement itself, which fails past a limit so the `COMMIT` sent behind
/// it rolls back ([`Checks::guarded_statement`]). A limit of 0 reads nothing.
///
/// The statement reads the counters every check needs (kept by the
/// migration's triggers, already updated by this transaction's writes). A
/// client's channels, and the app ids when this one is new, are counted one
/// such transaction at a time (a lock held to the commit), so racing
/// requests cannot pass those caps together.
pub(super) fn checks<'a>(config: &ServerConfig, written: &'a Written) -> Checks<'a> {
    let limits = &config.rendezvous;
    let mut checks = Checks::default();
    // In the order a single server checks them (after the app ids, below).
    // The makers are locked already (`writes::Locks`).
    let makers: BTreeSet<&String> = written.makers.iter().collect();
    if config.max_channels_per_address > 0 {
        for maker in makers {
            let sql = "SELECT sum(mailboxes - tombstones) FROM wormhole_sync_usage WHERE scope = 'maker' AND key = $";
            let limit = config.max_channels_per_address as u64;
            checks.add(sql, Some(maker), limit, crate::budgets::too_many_client_channels);
        }
    }
    let mut made: BTreeMap<&String, i64> = BTreeMap::new();
    for appid in &written.made {
        *made.entry(appid).or_default() += 1;
    }
    if !made.is_empty() {
        checks.add(&server_sum("mailboxes"), None, limits.max_channels as u64, server_channels_full);
    }
    for (appid, count) in made {
        let sql = "SELECT sum(mailboxes - tombstones) FROM wormhole_sync_usage WHERE scope = 'app' AND key = $";
        checks.add(sql, Some(appid), limits.max_channels_per_app as u64, app_channels_full);
        if config.max_apps > 0 {
            // Its first mailboxes: the app id is new.
            let sql = format!(
                "SELECT (sum(mailboxes) = {count})::INT FROM wormhole_sync_usage WHERE scope = 'app' AND key = $"
            );
            let column = checks.read(&sql, Some(appid));
            checks.new_apps.push(column);
        }
    }
    let stored: BTreeSet<&(String, Option<String>)> = written.stored.iter().collect();
    if !stored.is_empty() && config.max_bytes > 0 {
        checks.add(&server_sum("bytes"), None, config.max_bytes, || crate::budgets::over("the server"));
    }
    for (appid, poster) in stored {
        if config.max_bytes_per_app > 0 {
            let sql = "SELECT sum(bytes) FROM wormhole_sync_usage WHERE scope = 'app' AND key = $";
            checks.add(sql, Some(appid), config.max_bytes_per_app, || crate::budgets::over("this application id"));
        }
        if let (Some(poster), true) = (poster, config.max_bytes_per_address > 0) {
            let sql = "SELECT sum(bytes) FROM wormhole_sync_usage WHERE scope = 'poster' AND key = $";
            checks.add(sql, Some(poster), config.max_bytes_per_address, || crate::budgets::over("this address"));
        }
    }
    checks
}

/// The cap or budget the writes went past, given the values
/// [`Checks::statement`] read, if any: the operation is then rolled back
/// and refused, as a single server refuses it beforehand.
pub(super) async fn over_caps(
    tx: &impl GenericClient,
    config: &ServerConfig,
    checks: &Checks<'_>,
    values: &[i64],
) -> Result<Option<WireError>, Box<Fail>> {
    // A new app id past the cap is refused first, as a single server does.
    if checks.new_apps.iter().any(|column| values.get(*column) == Some(&1)) {
        let lock = [&super::LOCK_CLASS as &(dyn ToSql + Sync), &super::NEW_APP_LOCK];
        execute(tx, "SELECT pg_advisory_xact_lock($1, $2)", &lock).await?;
        let apps = format!("SELECT coalesce(sum(apps), 0)::BIGINT {}", super::TOTALS);
        if u64::try_from(query_one(tx, &apps, &[]).await?.get::<_, i64>(0)).unwrap_or(0) > config.max_apps as u64 {
            return Ok(Some(crate::budgets::too_many_apps()));
        }
    }
    Ok(checks.first_over(values))
}

/// Counter checks read together: each a scalar query (its key parameter
/// written `$`) and, for a check, the limit its value may not pass.
#[derive(Default)]
pub(super) struct Checks<'a> {
    columns: Vec<String>,
    keys: Vec<&'a String>,
    limits: Vec<Option<Limit>>,
    /// The columns that say whether an app id the writes made is new.
    new_apps: Vec<usize>,
}

/// The most a checked value may be, and the refusal past it.
type Limit = (u64, fn() -> WireError);

impl<'a> Checks<'a> {
    /// A value to read; returns its column.
    fn read(&mut self, sql: &str, key: Option<&'a String>) -> usize {
        let sql = match key {
            Some(key) => {
                self.keys.push(key);
                sql.replace('$', &format!("${}", self.keys.len()))
            }
            None => sql.to_string(),
        };
        self.columns.push(format!("coalesce(({sql}), 0)::BIGINT"));
        self.limits.push(None);
        self.columns.len() - 1
    }

    /// A value that may not pass `limit`, else `refusal`.
    fn add(&mut self, sql: &str, key: Option<&'a String>, limit: u64, refusal: fn() -> WireError) {
        let column = self.read(sql, key);
        self.limits[column] = Some((limit, refusal));
    }

    /// The statement that reads every value, in one row, and its
    /// parameters; `None` when nothing is checked.
    pub(super) fn statement(&self) -> Option<(String, Vec<&(dyn ToSql + Sync)>)> {
        if self.columns.is_empty() {
            return None;
        }
        let sql = format!("SELECT {}", self.columns.join(", "));
        Some((sql, self.keys.iter().map(|key| *key as &(dyn ToSql + Sync)).collect()))
    }

    /// The statement of [`statement`](Self::statement) with the guard of
    /// migration 6 over it: it fails ([`is_past_caps`]) when a value passed
    /// its limit, or when the writes made an app id's first mailbox while
    /// `--max-apps` is on (the app ids are counted under a lock, in
    /// [`over_caps`], which the operations run one at a time then reach).
    /// Failing fails the transaction, so a `COMMIT` sent behind it rolls
    /// back.
    pub(super) fn guarded_statement(&self) -> Option<(String, Vec<&(dyn ToSql + Sync)>)> {
        let (sql, params) = self.statement()?;
        let limits = self
            .limits
            .iter()
            .enumerate()
            .filter_map(|(i, check)| check.as_ref().map(|(limit, _)| (i, i64::try_from(*limit).unwrap_or(i64::MAX))))
            .map(|(i, limit)| format!("v.c{i} <= {limit}"));
        let old_apps = self.new_apps.iter().map(|i| format!("v.c{i} = 0"));
        let within: Vec<String> = limits.chain(old_apps).collect();
        if within.is_empty() {
            return Some((sql, params));
        }
        let named: Vec<String> =
            self.columns.iter().enumerate().map(|(i, column)| format!("{column} AS c{i}")).collect();
        let listed: Vec<String> = (0..self.columns.len()).map(|i| format!("v.c{i}")).collect();
        let sql = format!(
            "SELECT {}, wormhole_sync_within_caps({}) FROM (SELECT {}) v",
            listed.join(", "),
            within.join(" AND "),
            named.join(", ")
        );
        Some((sql, params))
    }

    /// The values the statement read.
    pub(super) fn values(&self, row: Option<&tokio_postgres::Row>) -> Vec<i64> {
        row.map_or_else(Vec::new, |row| (0..self.columns.len()).map(|i| row.get(i)).collect())
    }

    /// The refusal of the first check whose value passed its limit.
    pub(super) fn first_over(&self, values: &[i64]) -> Option<WireError> {
        let over = |(limit, refusal): &Limit, value: i64| (u64::try_from(value).unwrap_or(0) > *limit).then(refusal);
        self.limits.iter().zip(values).find_map(|(check, value)| check.as_ref().and_then(|c| over(c, *value)))
    }
}

/// The statement summing a column of the server-wide counter rows.
fn server_sum(column: &str) -> String {
    format!("SELECT sum({column}) FROM wormhole_sync_usage WHERE scope = 'server' AND key = ''")
}

/// Whether `e` is the guard of [`Checks::guarded_statement`] failing.
pub(super) fn is_past_caps(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|code| code.code() == "WSCAP")
}
