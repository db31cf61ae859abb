//! `send`, `receive` and `resume`: one exchange through the blocking
//! client, with its state saved at every step when asked.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use wormhole_sync_core::MAX_DATA_LEN;
use wormhole_sync_ureq::magic_wormhole::{self, text};
use wormhole_sync_ureq::transcribe::{Initiator, Receiver};
use wormhole_sync_ureq::{ureq, ApiMisuse, Builder, Canceller, Client, Code, Error, Observer, Schedule};

use crate::exit::{code, Failure};
use crate::state::StateFile;
use crate::terminal::{self, Status};

/// Which protocol an exchange speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// This project's own, over HTTP.
    Transcribe,
    /// magic-wormhole's, over a WebSocket, with the `wormhole` command's
    /// text convention.
    MagicWormhole,
}

/// The options every exchange takes.
#[derive(Debug, Clone)]
pub struct Options {
    pub flavour: Flavour,
    pub rendezvous: String,
    /// The settings file that named the server, if one did.
    pub rendezvous_from: Option<PathBuf>,
    pub appid: String,
    pub timeout: Duration,
    /// Give up this soon if the server never answered.
    pub connect_timeout: Option<Duration>,
    pub schedule: Option<Schedule>,
    pub code_words: Option<usize>,
    pub verify: bool,
    pub quiet: bool,
    /// Show the other side's command as a QR code too (on a terminal).
    pub qr: bool,
    pub state: StateFile,
    pub output: Option<PathBuf>,
    /// Replace an existing `--output` file.
    pub force: bool,
    /// Trust only this CA (PEM) for an HTTPS rendezvous server.
    pub ca_cert: Option<PathBuf>,
}

impl Options {
    /// An HTTP agent trusting only `--ca-cert`, if given.
    fn agent(&self) -> Result<Option<ureq::Agent>, Failure> {
        use wormhole_sync_ureq::ureq::tls::{Certificate, RootCerts, TlsConfig};
        let Some(path) = &self.ca_cert else { return Ok(None) };
        let unreadable =
            |why: String| Failure::usage(format!("cannot use the CA certificate {}: {why}", path.display()));
        let pem = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
        let certificate = Certificate::from_pem(&pem).map_err(|e| unreadable(e.to_string()))?;
        let tls = TlsConfig::builder().root_certs(RootCerts::Specific(std::sync::Arc::new(vec![certificate]))).build();
        Ok(Some(ureq::Agent::config_builder().http_status_as_error(false).tls_config(tls).build().into()))
    }

    /// A TLS configuration trusting only `--ca-cert`, if given (for `wss://`).
    fn tls_config(&self) -> Result<Option<magic_wormhole::TlsConfig>, Failure> {
        use wormhole_sync_ureq::rustls;
        let Some(path) = &self.ca_cert else { return Ok(None) };
        let unreadable =
            |why: String| Failure::usage(format!("cannot use the CA certificate {}: {why}", path.display()));
        let pem = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for certificate in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let certificate: rustls::pki_types::CertificateDer<'_> =
                certificate.map_err(|e| unreadable(e.to_string()))?;
            roots.add(certificate).map_err(|e| unreadable(e.to_string()))?;
        }
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        Ok(Some(std::sync::Arc::new(config)))
    }

    fn builder<C: Client<Http = ureq::Agent>>(&self, mut builder: Builder<C>) -> Result<Builder<C>, Failure> {
        if let Some(agent) = self.agent()? {
            builder = builder.http_client(agent);
        }
        self.settings(builder)
    }

    fn magic_builder<C: Client<Http = magic_wormhole::TlsConfig>>(
        &self,
        mut builder: Builder<C>,
    ) -> Result<Builder<C>, Failure> {
        if let Some(config) = self.tls_config()? {
            builder = builder.http_client(config);
        }
        self.settings(builder)
    }

    /// The options both flavours share.
    fn settings<C: Client>(&self, mut builder: Builder<C>) -> Result<Builder<C>, Failure> {
        builder = builder.rendezvous(&self.rendezvous).timeout(self.timeout).confirm_verifier(self.verify);
        if let Some(schedule) = &self.schedule {
            builder = builder.schedule(schedule.clone());
        }
        if let Some(words) = self.code_words {
            builder = builder.code_words(words);
        }
        if let Some(timeout) = self.connect_timeout {
            builder = builder.connect_timeout(timeout);
        }
        Ok(builder)
    }
}

/// Where our data comes from: the argument, a file, or standard input when
/// it is not a terminal. `None`: nothing given.
pub fn read_data(text: Option<String>, file: Option<PathBuf>, stdin_taken: bool) -> Result<Option<Vec<u8>>, Failure> {
    let too_large =
        || Failure::usage(format!("the data is larger than {MAX_DATA_LEN} bytes, the most one exchange carries"));
    let bounded = |reader: &mut dyn Read, what: &str| {
        let mut data = Vec::new();
        reader
            .take(MAX_DATA_LEN as u64 + 1)
            .read_to_end(&mut data)
            .map_err(|e| Failure::usage(format!("cannot read {what}: {e}")))?;
        if data.len() > MAX_DATA_LEN {
            return Err(too_large());
        }
        Ok(Some(data))
    };
    match (text, file) {
        (Some(_), Some(_)) => Err(Failure::usage("give the data as TEXT or --file, not both")),
        (Some(text), None) if text.len() > MAX_DATA_LEN => Err(too_large()),
        (Some(text), None) => Ok(Some(text.into_bytes())),
        (None, Some(path)) => {
            let mut file = std::fs::File::open(&path)
                .map_err(|e| Failure::usage(format!("cannot open {}: {e}", path.display())))?;
            bounded(&mut file, &path.display().to_string())
        }
        // Standard input gave the code: the data is TEXT or --file, if any.
        (None, None) if stdin_taken || std::io::stdin().is_terminal() => Ok(None),
        (None, None) => bounded(&mut std::io::stdin().lock(), "standard input"),
    }
}

/// Either side of either flavour, so one flow drives them all.
enum Party {
    Initiator(Initiator),
    Receiver(Receiver),
    MagicInitiator(magic_wormhole::Initiator),
    MagicReceiver(magic_wormhole::Receiver),
}

macro_rules! either {
    ($party:expr, $side:ident => $call:expr) => {
        match $party {
            Party::Initiator($side) => $call,
            Party::Receiver($side) => $call,
            Party::MagicInitiator($side) => $call,
            Party::MagicReceiver($side) => $call,
        }
    };
}

impl Party {
    fn serialize(&self) -> Vec<u8> {
        either!(self, side => side.serialize())
    }

    fn canceller(&self) -> Canceller {
        either!(self, side => side.canceller())
    }

    fn observer(&self) -> Observer {
        either!(self, side => side.observer())
    }
}

/// The canceller Ctrl-C uses, and whether it was pressed.
static CANCEL: OnceLock<Mutex<Option<Canceller>>> = OnceLock::new();
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C: with a state file, stop at once (the saved state resumes it);
/// otherwise cancel, so the channel is closed and the peer learns at once.
/// A second Ctrl-C stops at once in any case.
pub fn handle_ctrl_c(state: &StateFile) {
    let keeps_state = state.path().map(|p| p.display().to_string());
    let _ = ctrlc::set_handler(move || {
        let again = INTERRUPTED.swap(true, Ordering::SeqCst);
        let canceller = CANCEL.get().and_then(|c| c.lock().ok()?.clone());
        match (&keeps_state, canceller) {
            (None, Some(canceller)) if !again => canceller.cancel(),
            (Some(path), _) => {
                crate::state::remove_partial();
                terminal::clear_line();
                terminal::say(&format!("wormhole-sync: interrupted; continue with: wormhole-sync resume {path}"));
                std::process::exit(code::INTERRUPTED.into());
            }
            _ => {
                crate::state::remove_partial();
                terminal::clear_line();
                std::process::exit(code::INTERRUPTED.into())
            }
        }
    });
}

/// `send`: allocate a channel, show the code, exchange.
pub fn send(options: &Options, data: Vec<u8>, chosen: Option<String>) -> Result<Vec<u8>, Failure> {
    if options.flavour == Flavour::MagicWormhole {
        let message = String::from_utf8(data)
            .map_err(|_| Failure::usage("with --magic-wormhole, the data is a text message: it must be UTF-8"))?;
        let mut builder =
            options.magic_builder(magic_wormhole::Initiator::builder(&options.appid, text::offer(&message)))?;
        if let Some(chosen) = &chosen {
            builder = builder.code(chosen);
        }
        let initiator = builder.build().map_err(|e| fail(&e, options))?;
        return run(Party::MagicInitiator(initiator), options);
    }
    let mut builder = options.builder(Initiator::builder(&options.appid, data))?;
    if let Some(chosen) = &chosen {
        builder = builder.code(chosen);
    }
    let initiator = builder.build().map_err(|e| fail(&e, options))?;
    run(Party::Initiator(initiator), options)
}

/// Refuses at once a server URL that cannot work for `flavour`, saying what
/// to type instead (rather than retrying it until the timeout).
pub fn check_rendezvous(url: &str, flavour: Flavour) -> Result<(), Failure> {
    let shown = terminal::shown(url);
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let path = rest.find('/').map_or("", |slash| &rest[slash..]);
    let host = &rest[..rest.len() - path.len()];
    let refused = |why: String| Err(Failure::usage(format!("--rendezvous {shown}: {why}")));
    match (flavour, scheme.to_ascii_lowercase().as_str()) {
        (Flavour::Transcribe, "http" | "https") if matches!(path.trim_end_matches('/'), "/v1") => refused(format!(
            "give the server's address without /v1 (--rendezvous {scheme}://{})",
            terminal::shown(host)
        )),
        (Flavour::Transcribe, "http" | "https") => Ok(()),
        (Flavour::Transcribe, "ws" | "wss") => refused(
            "this is a magic-wormhole mailbox server's address: add --magic-wormhole, or give a wormhole-sync \
             server's http:// or https:// address"
                .into(),
        ),
        (Flavour::MagicWormhole, "ws" | "wss") if path.trim_end_matches('/').is_empty() => refused(format!(
            "a mailbox server's address ends in its path, usually /v1 (--rendezvous {scheme}://{}/v1)",
            terminal::shown(host)
        )),
        (Flavour::MagicWormhole, "ws" | "wss") => Ok(()),
        (Flavour::MagicWormhole, _) => {
            refused("with --magic-wormhole, the server is a mailbox server's ws:// or wss:// address".into())
        }
        (Flavour::Transcribe, _) => refused(format!(
            "the address starts with http:// or https:// (--rendezvous http://{})",
            terminal::shown(rest)
        )),
    }
}

/// `receive`: join the channel a typed code names, exchange.
pub fn receive(options: &Options, code: &Code, data: Vec<u8>, chosen: bool) -> Result<Vec<u8>, Failure> {
    if options.flavour == Flavour::MagicWormhole {
        if !data.is_empty() {
            return Err(Failure::usage("with --magic-wormhole, the receiver sends nothing back"));
        }
        // A chosen code's words need not come from the lists.
        let builder = magic_wormhole::Receiver::builder(&options.appid, code, Vec::new())
            .check_words(!chosen)
            .answer_text_offers(true);
        let receiver = options.magic_builder(builder)?.build().map_err(|e| fail(&e, options))?;
        return run(Party::MagicReceiver(receiver), options);
    }
    let builder = options.builder(Receiver::builder(&options.appid, code, data))?;
    let receiver = builder.create_channel_if_missing(chosen).build().map_err(|e| fail(&e, options))?;
    run(Party::Receiver(receiver), options)
}

/// `resume`: continue the exchange saved in the state file, with another
/// timeout (from its first start) if given.
pub fn resume(mut options: Options, saved: &[u8], timeout: Option<Duration>) -> Result<Vec<u8>, Failure> {
    let mut party = match resume_magic(&options, saved)? {
        Some(party) => {
            options.flavour = Flavour::MagicWormhole;
            party
        }
        None => resume_transcribe(&options, saved)?,
    };
    if let Some(timeout) = timeout {
        either!(&mut party, side => side.set_timeout(timeout))
            .map_err(|e| Failure::usage(format!("--timeout: {e}")))?;
    }
    options.rendezvous = either!(&party, side => side.rendezvous()).to_string();
    options.appid = either!(&party, side => side.appid()).to_string();
    run(party, &options)
}

/// A saved exchange of this tool's own protocol.
fn resume_transcribe(options: &Options, saved: &[u8]) -> Result<Party, Failure> {
    let agent = options.agent()?;
    match Initiator::from_serialized(saved) {
        Ok(initiator) => Ok(Party::Initiator(match agent {
            Some(agent) => initiator.with_http_client(agent),
            None => initiator,
        })),
        Err(Error::BadSerializedState(_)) => match Receiver::from_serialized(saved) {
            Ok(receiver) => Ok(Party::Receiver(match agent {
                Some(agent) => receiver.with_http_client(agent),
                None => receiver,
            })),
            Err(e) => Err(Failure::usage(format!("cannot resume: {e}"))),
        },
        Err(e) => Err(Failure::usage(format!("cannot resume: {e}"))),
    }
}

/// A saved magic-wormhole exchange, if that is what `saved` holds.
fn resume_magic(options: &Options, saved: &[u8]) -> Result<Option<Party>, Failure> {
    let tls = options.tls_config()?;
    let with_tls = |party: Party| match (party, tls.clone()) {
        (Party::MagicInitiator(side), Some(tls)) => Party::MagicInitiator(side.with_tls_config(tls)),
        (Party::MagicReceiver(side), Some(tls)) => Party::MagicReceiver(side.with_tls_config(tls)),
        (party, _) => party,
    };
    if let Ok(initiator) = magic_wormhole::Initiator::from_serialized(saved) {
        return Ok(Some(with_tls(Party::MagicInitiator(initiator))));
    }
    match magic_wormhole::Receiver::from_serialized(saved) {
        Ok(receiver) => Ok(Some(with_tls(Party::MagicReceiver(receiver)))),
        Err(_) => Ok(None),
    }
}

fn fail(error: &Error, options: &Options) -> Failure {
    Failure::from_error(error, &options.rendezvous, options.rendezvous_from.as_deref())
}

/// What an interrupted run tells its person: what Ctrl-C undid, if anything.
fn interrupted(party: &Party, code_shown: bool) -> &'static str {
    let server_reached = either!(party, side => side.server_reached());
    match party {
        _ if !server_reached => "interrupted: the server was never reached, so nothing was made or sent",
        Party::Initiator(_) | Party::MagicInitiator(_) if !code_shown => {
            "interrupted before a channel was made: nothing was sent"
        }
        _ => "interrupted: the channel was closed, so the other side knows",
    }
}

/// Drives one side to its end, saving its state after each step.
fn run(mut party: Party, options: &Options) -> Result<Vec<u8>, Failure> {
    let state = &options.state;
    let status = Status::new(options.quiet);
    *CANCEL.get_or_init(|| Mutex::new(None)).lock().unwrap_or_else(|e| e.into_inner()) = Some(party.canceller());
    state.save(|| party.serialize())?;
    let notice = trouble_notice(options);
    let watch = status.watch_server(party.observer(), move |trouble| Some(notice(trouble)));
    let mut code_shown = false;
    let outcome = exchange(&mut party, options, &status, &mut code_shown);
    drop(watch);
    let outcome = outcome.map_err(|failure| match &party {
        // Only Ctrl-C cancels: say what it undid, which is known here.
        _ if failure.code == code::INTERRUPTED => Failure::new(code::INTERRUPTED, interrupted(&party, code_shown)),
        // The sender typed no code: what went wrong is the other side's.
        Party::Initiator(_) | Party::MagicInitiator(_) if failure.code == code::WRONG_CODE => Failure::new(
            code::WRONG_CODE,
            "the other side typed a different code (a typo, or someone guessing it); the code is used up: \
             start again with a new code",
        ),
        _ => failure,
    });
    match &outcome {
        // Interrupted with a state file: it stays, to resume.
        Err(failure) if failure.code == code::INTERRUPTED && state.path().is_some() => {}
        _ => state.remove(),
    }
    outcome
}

/// Runs the exchange; `code_shown` tells, if it fails, whether the code was
/// shown (so a channel was made).
fn exchange(party: &mut Party, options: &Options, status: &Status, code_shown: &mut bool) -> Result<Vec<u8>, Failure> {
    let state = &options.state;
    let code = match party {
        Party::Initiator(initiator) => {
            status.waiting_for("allocating a channel on the rendezvous server");
            Some(initiator.get_code())
        }
        Party::MagicInitiator(initiator) => {
            status.waiting_for("allocating a nameplate on the mailbox server");
            Some(initiator.get_code())
        }
        _ => None,
    };
    if let Some(code) = code {
        let code = code.map_err(|e| fail(&e, options))?;
        *code_shown = true;
        state.save(|| party.serialize())?;
        status.say(&format!("Invitation code: {code}"));
        status.say(&format!("On the other computer, run:\n    {}", receive_command(&code, options)));
        if let Some(picture) = terminal::qr_code(&qr_text(&code, options)).filter(|_| options.qr) {
            status.say(&picture);
        }
        status.waiting_for("waiting for the other side to type the code");
    } else {
        status.waiting_for("joining the channel and agreeing keys with the other side");
    }
    let verifier = either!(party, side => side.get_verifier()).map_err(|e| fail(&e, options))?;
    state.save(|| party.serialize())?;
    if matches!(party, Party::Initiator(_) | Party::MagicInitiator(_)) && !options.quiet {
        status.say("wormhole-sync: the other side typed the code");
    }
    if !options.verify && !options.quiet {
        // If the other side asks its person to compare verifiers (--verify
        // there only), this is what they compare with.
        status.say(&format!("Verifier: {verifier} (the other side may ask you to compare it)"));
    }
    status.waiting_for("waiting for the other side's data (it may be away: this waits until the timeout)");
    loop {
        match either!(party, side => side.get_data()) {
            Err(Error::ApiMisuse(ApiMisuse::VerifierUnconfirmed)) => {
                let accept = status.pause(|| terminal::confirm_verifier(&verifier))?;
                let decided = match (party as &mut Party, accept) {
                    (Party::Initiator(side), true) => side.accept_verifier(),
                    (Party::Initiator(side), false) => side.reject_verifier(),
                    (Party::Receiver(side), true) => side.accept_verifier(),
                    (Party::Receiver(side), false) => side.reject_verifier(),
                    _ => Err(ApiMisuse::NoVerifierPending.into()),
                };
                decided.map_err(|e| fail(&e, options))?;
                state.save(|| party.serialize())?;
            }
            Ok(data) => {
                let data = text_outcome(party, data, status)?;
                if data.is_empty() && !options.quiet {
                    status.say(match party {
                        Party::Initiator(_) => {
                            "wormhole-sync: your data was delivered; the other side sent nothing back"
                        }
                        Party::Receiver(_) => "wormhole-sync: the other side sent empty data (0 bytes)",
                        _ => return Ok(data),
                    });
                }
                return Ok(data);
            }
            Err(error) => return Err(fail(&error, options)),
        }
    }
}

/// The line said when the server stops answering (or never did): which
/// server, why, how long this run keeps trying, and what to do.
fn trouble_notice(options: &Options) -> impl Fn(&wormhole_sync_ureq::ServerTrouble) -> String + Send + 'static {
    let mut server = terminal::shown(&options.rendezvous).into_owned();
    if let Some(file) = &options.rendezvous_from {
        server += &format!(" (set in {})", file.display());
    }
    let flavour = options.flavour;
    let until = match (options.connect_timeout, options.state.path()) {
        (Some(connect), _) => format!("for up to {} from the start (--connect-timeout)", humantime(connect)),
        (None, Some(_)) => "until the timeout (the state file keeps the exchange: Ctrl-C, and resume it later)".into(),
        (None, None) => "until the timeout".into(),
    };
    move |trouble| {
        if trouble.server_reached {
            return format!(
                "wormhole-sync: the server {server} stopped answering ({}); retrying until the timeout: the \
                 exchange goes on when it is back",
                trouble.cause
            );
        }
        let what_to_do = match flavour {
            Flavour::Transcribe => {
                "Is a wormhole-sync server running there? Start one with `wormhole-sync serve`, or give another \
                 with --rendezvous URL (or WORMHOLE_SYNC_RENDEZVOUS)"
            }
            Flavour::MagicWormhole => "Check the address (--rendezvous) and the network connection",
        };
        format!("wormhole-sync: cannot reach the server {server} ({}). Retrying {until}. {what_to_do}.", trouble.cause)
    }
}

/// A duration as the options take it: `90s`, `1m`, `2h`.
fn humantime(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        _ if secs % 3600 == 0 && secs > 0 => format!("{}h", secs / 3600),
        _ if secs % 60 == 0 && secs > 0 => format!("{}m", secs / 60),
        _ => format!("{secs}s"),
    }
}

/// With magic-wormhole, what the `wormhole` command's text convention
/// makes of the peer's message: the text offered, or nothing once the
/// receiver acknowledged ours.
fn text_outcome(party: &Party, data: Vec<u8>, status: &Status) -> Result<Vec<u8>, Failure> {
    let refused = |why: String| Failure::new(code::PEER, why);
    match party {
        Party::MagicInitiator(_) if text::is_ack(&data) => {
            status.say("text message sent");
            Ok(Vec::new())
        }
        Party::MagicInitiator(_) => Err(refused("the other side did not acknowledge the text message".into())),
        Party::MagicReceiver(_) => match text::read_offer(&data).map_err(|e| refused(e.to_string()))? {
            text::Offer::Text(message) => Ok(message.into_bytes()),
            text::Offer::Unsupported(kind) => Err(refused(format!(
                "the other side offered a {kind} (`wormhole send FILE`); wormhole-sync receives text messages \
                 only, and told it so: ask for `wormhole send --text TEXT`"
            ))),
            _ => Err(refused("the other side offered something this version does not know".into())),
        },
        _ => Ok(data),
    }
}

/// What the QR code holds: the command for the other side, or for a
/// `wormhole` peer of the default app id, the `wormhole-transfer:` URI that
/// magic-wormhole's apps (Warp, wormhole-rs) open.
fn qr_text(code: &Code, options: &Options) -> String {
    if options.flavour == Flavour::MagicWormhole && options.appid == magic_wormhole::TEXT_APPID {
        return magic_wormhole_uri(code, &options.rendezvous);
    }
    receive_command(code, options)
}

/// `wormhole-transfer:CODE`, with the mailbox server (without its `/v1`,
/// which the client adds) unless it is the public one.
fn magic_wormhole_uri(code: &Code, rendezvous: &str) -> String {
    let mut uri = format!("wormhole-transfer:{code}");
    if rendezvous != magic_wormhole::PUBLIC_MAILBOX_URL {
        let server = rendezvous.trim_end_matches('/').trim_end_matches("/v1");
        uri += "?rendezvous=";
        for byte in server.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => uri.push(byte.into()),
                _ => uri += &format!("%{byte:02X}"),
            }
        }
    }
    uri
}

/// The command the other person types.
fn receive_command(code: &Code, options: &Options) -> String {
    if options.flavour == Flavour::MagicWormhole {
        let mut command = String::from("wormhole");
        if options.rendezvous != magic_wormhole::PUBLIC_MAILBOX_URL {
            command += &format!(" --relay-url {}", terminal::shown(&options.rendezvous));
        }
        if options.appid != magic_wormhole::TEXT_APPID {
            command += &format!(" --appid '{}'", terminal::shown(&options.appid).replace('\'', "'\\''"));
        }
        return format!("{command} receive {code}");
    }
    // A code of words not from the lists (one the two people chose) is typed
    // after --code; as an argument it is checked against the lists.
    let code_flag = if code.unlisted_word().is_some() { "--code " } else { "" };
    let mut command = format!("wormhole-sync receive {code_flag}{code}");
    if options.rendezvous != wormhole_sync_ureq::DEFAULT_RENDEZVOUS_URL {
        command += &format!(" --rendezvous {}", terminal::shown(&options.rendezvous));
    }
    if options.appid != crate::DEFAULT_APPID {
        command += &format!(" --appid '{}'", terminal::shown(&options.appid).replace('\'', "'\\''"));
    }
    if options.verify {
        command += " --verify";
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wormhole_transfer_uri_names_a_mailbox_server_other_than_the_public_one() {
        let code: Code = "4-hurricane-equipment".parse().unwrap();
        assert_eq!(
            magic_wormhole_uri(&code, magic_wormhole::PUBLIC_MAILBOX_URL),
            "wormhole-transfer:4-hurricane-equipment"
        );
        assert_eq!(
            magic_wormhole_uri(&code, "ws://127.0.0.1:4000/v1"),
            "wormhole-transfer:4-hurricane-equipment?rendezvous=ws%3A%2F%2F127.0.0.1%3A4000"
        );
    }
}
