//! What an application chooses: application id, polling schedule, timeout,
//! code length and verifier confirmation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::code::MAX_CODE_WORDS;
use crate::time::{millis, Timestamp};
use crate::wire::validate_appid;
use crate::Error;

/// Shortest polling interval accepted, to keep a misconfigured client from
/// hammering the server.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Most steps a schedule may have.
pub const MAX_SCHEDULE_STEPS: usize = 64;

/// When to poll: a sorted list of `(when, interval)` steps. From `when` after
/// the first start, poll every `interval`.
///
/// Polls are long-polls where the server supports them: while the server
/// holds fetches, an online client keeps one open, so a message is delivered
/// within one round trip whatever the schedule. The schedule sets how often
/// a client asks a server that answers at once (or with long-polls off), and
/// how soon a failed request is retried.
///
/// ```
/// use std::time::Duration;
/// use wormhole_sync_core::Schedule;
///
/// // Every minute for the first ten minutes, then hourly.
/// let s = Schedule::from_secs(&[(0.0, 60.0), (600.0, 3600.0)]).unwrap();
/// assert_eq!(s.interval_at(Duration::from_secs(30)), Duration::from_secs(60));
/// assert_eq!(s.interval_at(Duration::from_secs(601)), Duration::from_secs(3600));
/// assert!(Schedule::from_secs(&[(10.0, 1.0), (5.0, 1.0)]).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<(u64, u64)>", into = "Vec<(u64, u64)>")]
pub struct Schedule {
    /// `(when, interval)` in milliseconds.
    steps: Vec<(u64, u64)>,
}

impl Schedule {
    /// A schedule from `(when, interval)` pairs.
    pub fn new(steps: &[(Duration, Duration)]) -> Result<Schedule, Error> {
        let steps: Vec<(u64, u64)> = steps.iter().map(|&(w, i)| (millis(w), millis(i))).collect();
        Schedule::try_from(steps)
    }

    /// A schedule from `(when, interval)` pairs in seconds, as people usually write them.
    pub fn from_secs(steps: &[(f64, f64)]) -> Result<Schedule, Error> {
        let to_duration = |s: f64| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| Error::InvalidConfig(format!("schedule time {s} is not a non-negative number of seconds")))
        };
        let steps =
            steps.iter().map(|&(w, i)| Ok((to_duration(w)?, to_duration(i)?))).collect::<Result<Vec<_>, Error>>()?;
        Schedule::new(&steps)
    }

    /// Poll every `interval` from the start.
    pub fn every(interval: Duration) -> Result<Schedule, Error> {
        Schedule::new(&[(Duration::ZERO, interval)])
    }

    /// Adds a later step: from `after` the first start, poll every
    /// `interval`. `after` must not come before the last step.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wormhole_sync_core::Schedule;
    ///
    /// const MINUTE: Duration = Duration::from_secs(60);
    /// // Every minute for the first ten minutes, then hourly.
    /// let s = Schedule::every(MINUTE)?.then_after(10 * MINUTE, 60 * MINUTE)?;
    /// assert_eq!(s, Schedule::from_secs(&[(0.0, 60.0), (600.0, 3600.0)])?);
    /// # Ok::<(), wormhole_sync_core::Error>(())
    /// ```
    pub fn then_after(self, after: Duration, interval: Duration) -> Result<Schedule, Error> {
        let mut steps = self.steps();
        steps.push((after, interval));
        Schedule::new(&steps)
    }

    /// The polling interval `elapsed` after the first start (the first step's
    /// interval applies before its `when`).
    pub fn interval_at(&self, elapsed: Duration) -> Duration {
        let elapsed = millis(elapsed);
        let step = self.steps.iter().rev().find(|(when, _)| *when <= elapsed).unwrap_or(&self.steps[0]);
        Duration::from_millis(step.1)
    }

    /// The steps as `(when, interval)` pairs.
    pub fn steps(&self) -> Vec<(Duration, Duration)> {
        self.steps.iter().map(|&(w, i)| (Duration::from_millis(w), Duration::from_millis(i))).collect()
    }
}

/// Parses a duration as people write it (humantime's syntax: `500ms`,
/// `90s`, `5m`, `3d`, `1h 30m`); a bare whole number is seconds.
///
/// ```
/// use std::time::Duration;
/// use wormhole_sync_core::parse_duration;
///
/// assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
/// assert!(parse_duration("5 fortnights").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let shown: String = text.chars().take(32).collect();
    let duration = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().map(Duration::from_secs).map_err(|_| format!("{shown:?} is too long"))?
    } else {
        humantime::parse_duration(text).map_err(|_| format!("{shown:?} is not a duration like 90s or 3d"))?
    };
    if duration > MAX_DURATION {
        return Err(format!("{shown:?} is longer than a century"));
    }
    // Whole milliseconds are what configurations keep.
    Ok(Duration::from_millis(millis(duration)))
}

/// The longest duration [`parse_duration`] reads: a century.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A duration in the largest unit [`parse_duration`] reads that keeps it whole.
fn format_duration(millis: u64) -> String {
    let units = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s")];
    match units.iter().find(|(size, _)| millis > 0 && millis % size == 0) {
        Some((size, unit)) => format!("{}{unit}", millis / size),
        None if millis == 0 => "0s".into(),
        None => format!("{millis}ms"),
    }
}

impl std::str::FromStr for Schedule {
    type Err = Error;

    /// Reads the form people write: `when:interval` steps separated by
    /// commas, each a duration [`parse_duration`] reads; a lone interval
    /// means from the start.
    ///
    /// ```
    /// use wormhole_sync_core::Schedule;
    ///
    /// let s: Schedule = "0:500ms,5m:60s".parse()?;
    /// assert_eq!(s, Schedule::from_secs(&[(0.0, 0.5), (300.0, 60.0)])?);
    /// assert_eq!(s.to_string(), "0s:500ms,5m:1m");
    /// assert_eq!("1m".parse::<Schedule>()?, Schedule::from_secs(&[(0.0, 60.0)])?);
    /// assert!("5m:60s,0:1s".parse::<Schedule>().is_err(), "steps must be sorted");
    /// # Ok::<(), wormhole_sync_core::Error>(())
    /// ```
    fn from_str(text: &str) -> Result<Schedule, Error> {
        let bad = |why: String| Error::InvalidConfig(format!("schedule: {why}"));
        let steps = text
            .split(',')
            .take(MAX_SCHEDULE_STEPS + 1)
            .map(|step| {
                let (when, interval) = step.split_once(':').unwrap_or(("0", step));
                Ok((parse_duration(when).map_err(bad)?, parse_duration(interval).map_err(bad)?))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Schedule::new(&steps)
    }
}

impl std::fmt::Display for Schedule {
    /// The form [`FromStr`](std::str::FromStr) reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let steps: Vec<String> =
            self.steps.iter().map(|&(w, i)| format!("{}:{}", format_duration(w), format_duration(i))).collect();
        f.write_str(&steps.join(","))
    }
}

impl Default for Schedule {
    /// Every half second: two people sitting together.
    fn default() -> Self {
        Schedule { steps: vec![(0, 500)] }
    }
}

impl TryFrom<Vec<(u64, u64)>> for Schedule {
    type Error = Error;

    fn try_from(steps: Vec<(u64, u64)>) -> Result<Schedule, Error> {
        if steps.is_empty() || steps.len() > MAX_SCHEDULE_STEPS {
            return Err(Error::InvalidConfig(format!("a schedule needs 1 to {MAX_SCHEDULE_STEPS} steps")));
        }
        if steps.windows(2).any(|w| w[0].0 > w[1].0) {
            return Err(Error::InvalidConfig("schedule steps must be sorted by time".into()));
        }
        if steps.iter().any(|&(_, interval)| interval < millis(MIN_INTERVAL)) {
            return Err(Error::InvalidConfig(format!("schedule intervals must be at least {MIN_INTERVAL:?}")));
        }
        Ok(Schedule { steps })
    }
}

impl From<Schedule> for Vec<(u64, u64)> {
    fn from(s: Schedule) -> Self {
        s.steps
    }
}

/// Default hard timeout: a few minutes, for two people side by side.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Default longest wait of one long-poll.
pub const DEFAULT_LONG_POLL: Duration = Duration::from_secs(30);
/// Default time to wait for an answer beyond a request's long-poll wait.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Settings of one exchange. Both sides must use the same application id.
///
/// ```
/// use std::time::Duration;
/// use wormhole_sync_core::{Config, Schedule};
///
/// let config = Config::new("example.com/app1")?
///     .with_schedule(Schedule::from_secs(&[(0.0, 60.0), (600.0, 3600.0)])?)
///     .with_timeout(Duration::from_secs(3 * 24 * 3600))
///     .with_code_words(3)?;
/// assert_eq!(config.appid(), "example.com/app1");
/// # Ok::<(), wormhole_sync_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    appid: String,
    schedule: Schedule,
    timeout_ms: u64,
    long_poll_ms: u64,
    request_timeout_ms: u64,
    code_words: usize,
    confirm_verifier: bool,
    /// Give up this long after the first start if the server never answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connect_timeout_ms: Option<u64>,
    /// The transport's server URL, kept here so a restored exchange knows
    /// where to continue. The core itself never uses it.
    #[serde(default)]
    rendezvous: Option<String>,
}

/// Shows every option, the rendezvous URL without credentials a user may
/// have written into it (`https://user:secret@host` shows as
/// `https://<credentials>@host`).
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("appid", &self.appid)
            .field("schedule", &self.schedule)
            .field("timeout_ms", &self.timeout_ms)
            .field("long_poll_ms", &self.long_poll_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("code_words", &self.code_words)
            .field("confirm_verifier", &self.confirm_verifier)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("rendezvous", &self.rendezvous.as_deref().map(without_credentials))
            .finish()
    }
}

/// A URL with any `user:password@` before its host replaced.
fn without_credentials(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    match url[start..authority_end].rfind('@') {
        Some(at) => format!("{}<credentials>{}", &url[..start], &url[start + at..]),
        None => url.to_string(),
    }
}

/// Longest timeout accepted: a year. Longer waits are better served by a
/// new code, and a saved state with more is refused as no exchange makes it.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(366 * 24 * 3600);

/// `config` with another timeout, refused over [`MAX_TIMEOUT`].
pub(crate) fn with_valid_timeout(config: &Config, timeout: Duration) -> Result<Config, Error> {
    if timeout > MAX_TIMEOUT {
        return Err(Error::InvalidConfig("the timeout must be at most 366 days".into()));
    }
    Ok(config.clone().with_timeout(timeout))
}

/// The rendezvous server transports use unless told otherwise: a server
/// started on this machine with `wormhole-sync-server` defaults. Both sides
/// must use the same server.
pub const DEFAULT_RENDEZVOUS_URL: &str = "http://127.0.0.1:4000";

/// Longest rendezvous URL accepted.
pub const MAX_URL_LEN: usize = 2048;

impl Config {
    /// Defaults for `appid`: poll every 0.5 s, time out after 5 minutes,
    /// two code words, no verifier confirmation.
    pub fn new(appid: &str) -> Result<Config, Error> {
        validate_appid(appid).map_err(|e| Error::InvalidConfig(e.message))?;
        Ok(Config {
            appid: appid.to_string(),
            schedule: Schedule::default(),
            timeout_ms: millis(DEFAULT_TIMEOUT),
            long_poll_ms: millis(DEFAULT_LONG_POLL),
            request_timeout_ms: millis(DEFAULT_REQUEST_TIMEOUT),
            code_words: 2,
            confirm_verifier: false,
            connect_timeout_ms: None,
            rendezvous: None,
        })
    }

    /// Sets the polling schedule.
    pub fn with_schedule(mut self, schedule: Schedule) -> Config {
        self.schedule = schedule;
        self
    }

    /// Sets the hard timeout, counted from the first start.
    pub fn with_timeout(mut self, timeout: Duration) -> Config {
        self.timeout_ms = millis(timeout);
        self
    }

    /// Gives up sooner while the server has never answered: if no answer
    /// came within `timeout` of the first start, the exchange fails with
    /// [`Error::ServerUnreachable`] instead of retrying until the hard
    /// timeout. For a person waiting at a screen, where a wrong address or a
    /// server that is not running should be said within a minute, not an
    /// hour. Once the server answered, only the hard timeout counts. Off by
    /// default: an exchange meant to wait for days also waits out a server
    /// that is down when it starts.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wormhole_sync_core::{Config, Error, Exchange, Timestamp};
    ///
    /// let config = Config::new("example.com/app")?
    ///     .with_timeout(Duration::from_secs(3600))
    ///     .with_connect_timeout(Duration::from_secs(60))?;
    /// let mut initiator = Exchange::initiator(config, b"data".to_vec(), [7; 32])?;
    /// initiator.start(Timestamp::from_millis(0));
    /// initiator.handle_timeout(Timestamp::from_millis(60_000));
    /// assert!(matches!(initiator.poll_event(), Some(wormhole_sync_core::Event::Outcome(Err(Error::ServerUnreachable { .. })))));
    /// # Ok::<(), wormhole_sync_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] over [`MAX_TIMEOUT`].
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Result<Config, Error> {
        if timeout > MAX_TIMEOUT {
            return Err(Error::InvalidConfig("the connect timeout must be at most 366 days".into()));
        }
        self.connect_timeout_ms = Some(millis(timeout));
        Ok(self)
    }

    /// How long an exchange waits for the server's first answer, if set
    /// with [`with_connect_timeout`](Self::with_connect_timeout).
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout_ms.map(Duration::from_millis)
    }

    /// When an exchange started at `started` gives up: the hard timeout, or
    /// sooner while the server has not answered once.
    pub(crate) fn give_up_at(&self, started: Timestamp, server_reached: bool) -> Timestamp {
        let hard = started + self.timeout();
        match self.connect_timeout() {
            Some(connect) if !server_reached => hard.min(started + connect),
            _ => hard,
        }
    }

    /// Sets the longest wait of one long-poll (default 30 s; zero: plain
    /// polling at the schedule's interval).
    pub fn with_long_poll(mut self, wait: Duration) -> Config {
        self.long_poll_ms = millis(wait);
        self
    }

    /// Sets how long to wait for an answer beyond a request's long-poll wait
    /// before the request counts as lost and is retried.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Result<Config, Error> {
        if timeout < Duration::from_millis(100) {
            return Err(Error::InvalidConfig("request timeout must be at least 100 ms".into()));
        }
        self.request_timeout_ms = millis(timeout);
        Ok(self)
    }

    /// Sets how many secret words an initiator's code has (1 to 16; each adds
    /// 8 bits; the default 2 gives an attacker a 1 in 65,536 guess).
    pub fn with_code_words(mut self, words: usize) -> Result<Config, Error> {
        if !(1..=MAX_CODE_WORDS).contains(&words) {
            return Err(Error::InvalidConfig(format!("code words must be 1 to {MAX_CODE_WORDS}")));
        }
        self.code_words = words;
        Ok(self)
    }

    /// Holds our data until the application has shown the verifier to a
    /// person and called [`Exchange::confirm_verifier`](crate::Exchange::confirm_verifier).
    pub fn with_verifier_confirmation(mut self, confirm: bool) -> Config {
        self.confirm_verifier = confirm;
        self
    }

    /// Records the rendezvous server's base URL for the transport (and for
    /// a restored exchange): 1 to 2048 printable ASCII characters.
    pub fn with_rendezvous(mut self, url: &str) -> Result<Config, Error> {
        validate_url(url)?;
        self.rendezvous = Some(url.to_string());
        Ok(self)
    }

    /// The rendezvous URL recorded with [`with_rendezvous`](Self::with_rendezvous).
    pub fn rendezvous(&self) -> Option<&str> {
        self.rendezvous.as_deref()
    }

    /// The application id.
    pub fn appid(&self) -> &str {
        &self.appid
    }

    /// The polling schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The hard timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The longest wait of one long-poll.
    pub fn long_poll(&self) -> Duration {
        Duration::from_millis(self.long_poll_ms)
    }

    /// How long an answer may take beyond the long-poll wait.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Words in an initiator's code.
    pub fn code_words(&self) -> usize {
        self.code_words
    }

    /// Whether our data waits for the verifier to be confirmed.
    pub fn confirms_verifier(&self) -> bool {
        self.confirm_verifier
    }

    /// Re-checks every field (for restored state).
    pub(crate) fn validate(&self) -> Result<(), Error> {
        validate_appid(&self.appid).map_err(|e| Error::InvalidConfig(e.message))?;
        Schedule::try_from(self.schedule.steps.clone())?;
        if !(1..=MAX_CODE_WORDS).contains(&self.code_words) || self.request_timeout_ms < 100 {
            return Err(Error::InvalidConfig("code words or request timeout out of range".into()));
        }
        if self.timeout_ms > millis(MAX_TIMEOUT) || self.connect_timeout_ms.is_some_and(|t| t > millis(MAX_TIMEOUT)) {
            return Err(Error::InvalidConfig("the timeout must be at most 366 days".into()));
        }
        if let Some(url) = &self.rendezvous {
            validate_url(url)?;
        }
        Ok(())
    }
}

fn validate_url(url: &str) -> Result<(), Error> {
    let ok = !url.is_empty() && url.len() <= MAX_URL_LEN && url.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(())
        .ok_or_else(|| Error::InvalidConfig("the rendezvous URL must be 1 to 2048 printable characters".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_credentials_in_the_rendezvous_url() {
        let config = Config::new("app").unwrap().with_rendezvous("https://user:s3cret@example.com:8443/x@y").unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("user"), "{shown}");
        assert!(shown.contains("https://<credentials>@example.com:8443/x@y"), "{shown}");
        assert_eq!(without_credentials("http://127.0.0.1:4000/v1"), "http://127.0.0.1:4000/v1");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert!(parse_duration("3 fortnights").is_err());
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(
            parse_duration("18446744073709551615").is_err(),
            "found by fuzzing: longer than any schedule writes back"
        );
    }

    proptest::proptest! {
        #[test]
        fn a_schedule_reads_back_what_it_writes(steps in proptest::collection::vec((0u64..10_000_000_000, 10u64..10_000_000_000), 1..5)) {
            let mut steps = steps;
            steps.sort();
            let schedule = Schedule::try_from(steps).unwrap();
            proptest::prop_assert_eq!(schedule.to_string().parse::<Schedule>().unwrap(), schedule);
        }
    }
}
