//! The options of one exchange, gathered by a builder whose setters cannot
//! fail; [`Builder::build`] checks them all at once. Both client crates
//! hand out this builder (`Initiator::builder`, `Receiver::builder`), so the
//! options read the same in the blocking and the async flavour.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::code::{Code, CodeError, CodeInput};
use crate::config::{Config, Schedule, DEFAULT_RENDEZVOUS_URL};
use crate::magic_wormhole::MailboxExchange;
use crate::{Error, Exchange, Role};

/// What a client crate builds: its `Initiator` or `Receiver`, wrapping a new
/// exchange and the HTTP client it will send requests with.
pub trait Client: Sized {
    /// The HTTP client type (a `ureq::Agent`, a `reqwest::Client`), or `()`
    /// for clients that bring their own connections.
    type Http;
    /// The state machine it drives: an [`Exchange`] (transcribe mode) or a
    /// [`MailboxExchange`] (the magic-wormhole flavour).
    type Machine: Machine;
    /// Which side this client is.
    const ROLE: Role;
    /// Wraps a machine that has not started; `http` is `None` unless the
    /// application gave one ([`Builder::http_client`]).
    fn from_machine(machine: Self::Machine, http: Option<Self::Http>) -> Self;
}

/// A state machine a [`Builder`] can make.
pub trait Machine: Sized {
    /// The server clients reach unless told otherwise.
    const DEFAULT_RENDEZVOUS: &'static str;
    /// A new machine for `role` (`code`: the typed or chosen one).
    fn build(role: Role, config: Config, code: Option<Code>, data: Vec<u8>, seed: [u8; 32]) -> Result<Self, Error>;
    /// For [`Builder::create_channel_if_missing`]: a receiver may create
    /// the channel its code names (a mailbox server's claim always does).
    fn create_channel_if_missing(self) -> Self {
        self
    }
    /// For [`Builder::answer_text_offers`]: a magic-wormhole receiver
    /// answers as `wormhole receive` does; other machines refuse.
    fn answering_text_offers(self) -> Result<Self, Error> {
        Err(Error::InvalidConfig("only the magic-wormhole flavour's receiver answers text offers".into()))
    }
}

impl Machine for Exchange {
    const DEFAULT_RENDEZVOUS: &'static str = DEFAULT_RENDEZVOUS_URL;

    fn build(role: Role, config: Config, code: Option<Code>, data: Vec<u8>, seed: [u8; 32]) -> Result<Self, Error> {
        match (role, code) {
            (Role::Initiator, None) => Exchange::initiator(config, data, seed),
            (Role::Initiator, Some(code)) => Exchange::initiator_with_code(config, code, data, seed),
            (Role::Receiver, Some(code)) => Exchange::receiver(config, code, data, seed),
            (Role::Receiver, None) => Err(Error::InvalidConfig("a receiver needs the code".into())),
        }
    }

    fn create_channel_if_missing(self) -> Self {
        match self.role() {
            Role::Receiver => Exchange::create_channel_if_missing(self),
            Role::Initiator => self,
        }
    }
}

impl Machine for MailboxExchange {
    /// magic-wormhole's public mailbox server, which the `wormhole` command
    /// uses by default.
    const DEFAULT_RENDEZVOUS: &'static str = crate::magic_wormhole::PUBLIC_MAILBOX_URL;

    fn build(role: Role, config: Config, code: Option<Code>, data: Vec<u8>, seed: [u8; 32]) -> Result<Self, Error> {
        if config.confirms_verifier() {
            return Err(Error::InvalidConfig("the magic-wormhole flavour does not confirm verifiers".into()));
        }
        match (role, code) {
            (Role::Initiator, None) => MailboxExchange::initiator(config, data, seed),
            (Role::Initiator, Some(code)) => MailboxExchange::initiator_with_code(config, code, data, seed),
            (Role::Receiver, Some(code)) => MailboxExchange::receiver(config, code, data, seed),
            (Role::Receiver, None) => Err(Error::InvalidConfig("a receiver needs the code".into())),
        }
    }

    fn answering_text_offers(self) -> Result<Self, Error> {
        MailboxExchange::answering_text_offers(self)
    }
}

/// Options of one exchange, for a client crate's `Initiator` or `Receiver`.
///
/// ```
/// use std::time::Duration;
/// use wormhole_sync_core::builder::{Builder, Client};
/// use wormhole_sync_core::{Exchange, Role, Schedule};
///
/// /// A stand-in for a client crate's `Initiator`.
/// struct Initiator(Exchange);
/// impl Client for Initiator {
///     type Http = ();
///     type Machine = Exchange;
///     const ROLE: Role = Role::Initiator;
///     fn from_machine(exchange: Exchange, _: Option<()>) -> Self { Initiator(exchange) }
/// }
///
/// let initiator: Initiator = Builder::new("example.com/app1", b"data".to_vec())
///     .rendezvous("https://rendezvous.example.com")
///     .schedule(Schedule::every(Duration::from_secs(60))?.then_after(Duration::from_secs(600), Duration::from_secs(3600))?)
///     .timeout(Duration::from_secs(3 * 24 * 3600))
///     .code_words(3)
///     .build()?;
/// assert_eq!(initiator.0.config().rendezvous(), Some("https://rendezvous.example.com"));
///
/// // Every option is checked once, by `build`:
/// let refused = Builder::<Initiator>::new("example.com/app1", vec![]).code_words(99).build();
/// assert!(refused.is_err());
/// # Ok::<(), wormhole_sync_core::Error>(())
/// ```
///
/// `Debug` never shows the data or the code.
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder<C: Client> {
    appid: String,
    data: Vec<u8>,
    code: Option<CodeInput>,
    check_words: Option<bool>,
    connect_timeout: Option<Duration>,
    rendezvous: Option<String>,
    schedule: Option<Schedule>,
    timeout: Option<Duration>,
    long_poll: Option<Duration>,
    request_timeout: Option<Duration>,
    code_words: Option<usize>,
    confirm_verifier: bool,
    create_channel: bool,
    answer_text_offers: bool,
    seed: Option<[u8; 32]>,
    http: Option<C::Http>,
    client: PhantomData<fn() -> C>,
}

impl<C: Client> Builder<C> {
    /// Options for an exchange in application `appid` that sends `data`
    /// (at most [`MAX_DATA_LEN`](crate::MAX_DATA_LEN)); a receiver also
    /// needs [`code`](Self::code).
    pub fn new(appid: &str, data: Vec<u8>) -> Builder<C> {
        Builder {
            appid: appid.to_string(),
            data,
            code: None,
            check_words: None,
            connect_timeout: None,
            rendezvous: None,
            schedule: None,
            timeout: None,
            long_poll: None,
            request_timeout: None,
            code_words: None,
            confirm_verifier: false,
            create_channel: false,
            answer_text_offers: false,
            seed: None,
            http: None,
            client: PhantomData,
        }
    }

    /// The invitation code: for a receiver, the one a person typed; for an
    /// initiator, one the application chose instead of allocating one (both
    /// people then type it).
    /// Text or a parsed [`Code`] both do.
    pub fn code(mut self, code: impl Into<CodeInput>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Refuses, before anything is sent, a code with a word that is not
    /// from the word list allocated codes take it from
    /// ([`CodeError::UnlistedWord`]): a typo would otherwise spend the
    /// invitation's one guess and fail both sides with a wrong code. On by
    /// default for a receiver's code (an initiator allocates codes from the
    /// lists); off by default for codes the two people chose (an
    /// initiator's [`code`](Self::code), or a receiver that may
    /// [create the channel](Self::create_channel_if_missing)).
    ///
    /// ```
    /// use wormhole_sync_core::builder::{Builder, Client};
    /// use wormhole_sync_core::{CodeError, Error, Exchange, Role};
    ///
    /// struct Receiver(Exchange);
    /// impl Client for Receiver {
    ///     type Http = ();
    ///     type Machine = Exchange;
    ///     const ROLE: Role = Role::Receiver;
    ///     fn from_machine(exchange: Exchange, _: Option<()>) -> Self { Receiver(exchange) }
    /// }
    ///
    /// let typo = Builder::<Receiver>::new("example.com/app1", vec![]).code("7-guitarst-revenge").seed([1; 32]).build();
    /// assert!(matches!(typo, Err(Error::BadCode(CodeError::UnlistedWord { position: 1 }))));
    /// let chosen = Builder::<Receiver>::new("example.com/app1", vec![])
    ///     .code("7-our-secret")
    ///     .check_words(false)
    ///     .seed([1; 32])
    ///     .build();
    /// assert!(chosen.is_ok());
    /// # Ok::<(), wormhole_sync_core::Error>(())
    /// ```
    pub fn check_words(mut self, check: bool) -> Self {
        self.check_words = Some(check);
        self
    }

    /// The rendezvous server's base URL (default [`DEFAULT_RENDEZVOUS_URL`]).
    /// Both sides must use the same server.
    pub fn rendezvous(mut self, url: &str) -> Self {
        self.rendezvous = Some(url.to_string());
        self
    }

    /// The polling schedule, from the first start (default: every 0.5 s).
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = Some(schedule);
        self
    }

    /// The hard timeout, from the first start (default 5 minutes): then
    /// every waiter gets [`Error::Timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Gives up after `timeout` if the server has not answered once by
    /// then (a wrong address, no server running), instead of retrying until
    /// the hard timeout: see
    /// [`Config::with_connect_timeout`](crate::Config::with_connect_timeout).
    /// Off by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The longest time the server may hold one request waiting for the
    /// peer (default 30 s; 5 s and growing while the peer is busy
    /// answering; the server may cap it). While the server holds requests,
    /// an online client keeps one open and sends about one request per
    /// window; `Duration::ZERO` turns long-polls off, and the schedule's
    /// interval then sets how often it asks.
    pub fn long_poll(mut self, wait: Duration) -> Self {
        self.long_poll = Some(wait);
        self
    }

    /// How long to wait for an answer beyond a request's long-poll wait
    /// before it counts as lost and is retried (default 15 s, at least 100 ms).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// How many secret words an initiator's allocated code has (1 to 16,
    /// default 2; each adds 8 bits).
    pub fn code_words(mut self, words: usize) -> Self {
        self.code_words = Some(words);
        self
    }

    /// Holds our data until the application has shown the verifier to a
    /// person and accepted it.
    pub fn confirm_verifier(mut self, confirm: bool) -> Self {
        self.confirm_verifier = confirm;
        self
    }

    /// Lets a receiver create its channel if it does not exist yet (codes
    /// both people typed, when the receiver may start first).
    pub fn create_channel_if_missing(mut self, create: bool) -> Self {
        self.create_channel = create;
        self
    }

    /// A magic-wormhole receiver answers as `wormhole receive` does instead
    /// of sending its data: an ack to a text offer, a refusal the `wormhole`
    /// command shows to a file or directory offer. See
    /// [`MailboxExchange::answering_text_offers`]; other clients refuse it
    /// at [`build`](Self::build).
    pub fn answer_text_offers(mut self, answer: bool) -> Self {
        self.answer_text_offers = answer;
        self
    }

    /// Sends requests with this HTTP client instead of the one every
    /// exchange of the process shares (a proxy, a private CA, your own
    /// connection pool).
    pub fn http_client(mut self, http: C::Http) -> Self {
        self.http = Some(http);
        self
    }

    /// The 32-byte secret every secret of the exchange derives from
    /// (default: fresh from the operating system). For reproducible tests
    /// only: a seed used twice repeats the side id and PAKE messages.
    pub fn seed(mut self, seed: [u8; 32]) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks every option and builds the client, not started yet.
    pub fn build(self) -> Result<C, Error> {
        let mut config = Config::new(&self.appid)?
            .with_schedule(self.schedule.unwrap_or_default())
            .with_verifier_confirmation(self.confirm_verifier)
            .with_rendezvous(self.rendezvous.as_deref().unwrap_or(C::Machine::DEFAULT_RENDEZVOUS))?;
        if let Some(timeout) = self.timeout {
            config = config.with_timeout(timeout);
        }
        if let Some(wait) = self.long_poll {
            config = config.with_long_poll(wait);
        }
        if let Some(timeout) = self.request_timeout {
            config = config.with_request_timeout(timeout)?;
        }
        if let Some(words) = self.code_words {
            config = config.with_code_words(words)?;
        }
        if let Some(timeout) = self.connect_timeout {
            config = config.with_connect_timeout(timeout)?;
        }
        config.validate()?;
        let code = self.code.map(CodeInput::parse).transpose()?;
        let check_words = self.check_words.unwrap_or(C::ROLE == Role::Receiver && !self.create_channel);
        if let Some(position) = code.as_ref().and_then(Code::unlisted_word).filter(|_| check_words) {
            return Err(CodeError::UnlistedWord { position: position + 1 }.into());
        }
        let seed = match self.seed {
            Some(seed) => seed,
            None => os_seed()?,
        };
        let mut machine = C::Machine::build(C::ROLE, config, code, self.data, seed)?;
        if self.create_channel {
            machine = machine.create_channel_if_missing();
        }
        if self.answer_text_offers {
            machine = machine.answering_text_offers()?;
        }
        Ok(C::from_machine(machine, self.http))
    }
}

/// A fresh secret seed from the operating system's generator.
#[cfg(feature = "os-rng")]
fn os_seed() -> Result<[u8; 32], Error> {
    use rand_core::{OsRng, RngCore};
    let mut seed = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|_| Error::InvalidConfig("the operating system gave no randomness".into()))?;
    Ok(seed)
}

#[cfg(not(feature = "os-rng"))]
fn os_seed() -> Result<[u8; 32], Error> {
    Err(Error::InvalidConfig("without the `os-rng` feature, give a seed with `Builder::seed`".into()))
}

impl<C: Client> fmt::Debug for Builder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("role", &C::ROLE)
            .field("appid", &self.appid)
            .field("rendezvous", &self.rendezvous)
            .field("schedule", &self.schedule)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("code_words", &self.code_words)
            .field("confirm_verifier", &self.confirm_verifier)
            .finish_non_exhaustive()
    }
}
