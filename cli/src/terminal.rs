//! What the tool says and asks on the terminal: the spinner while it waits,
//! the interactive code prompt with Tab completion, and the verifier
//! question. Everything goes to standard error (or the terminal itself), so
//! standard output carries only the received data.

use std::borrow::Cow;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};
use rustyline::completion::{Completer, Pair};
use rustyline::{Context, Helper, Highlighter, Hinter, Validator};
use wormhole_sync_core::{word_list, Code, ServerTrouble, Timestamp, Verifier};
use wormhole_sync_ureq::Observer;

use crate::exit::Failure;

/// The spinner: shown only when standard error is a terminal and not
/// `--quiet`; otherwise every call does nothing.
pub struct Status {
    bar: ProgressBar,
    /// What it waits for, and the server trouble to add to it, if any.
    message: Arc<Mutex<(&'static str, Option<String>)>>,
}

impl Status {
    pub fn new(quiet: bool) -> Status {
        let shown = !quiet && std::io::stderr().is_terminal();
        let bar = if shown {
            let bar = ProgressBar::new_spinner();
            bar.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        Status { bar, message: Arc::default() }
    }

    /// What it waits for now.
    pub fn waiting_for(&self, what: &'static str) {
        let mut message = self.message.lock().unwrap_or_else(PoisonError::into_inner);
        message.0 = what;
        self.bar.set_message(spinner_text(&message));
    }

    /// Until the returned watch is dropped, shows why the server does not
    /// answer while the exchange retries: the line `notice` makes when
    /// trouble begins (`None`: no line), a line when the server answers
    /// again, and how long it has not answered on the spinner.
    pub fn watch_server(
        &self,
        observer: Observer,
        notice: impl Fn(&ServerTrouble) -> Option<String> + Send + 'static,
    ) -> ServerWatch {
        let (bar, message) = (self.bar.clone(), self.message.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut noticed = false;
            while !stopped.load(Ordering::Relaxed) {
                let trouble = observer.server_trouble();
                match &trouble {
                    Some(trouble) if !noticed => {
                        noticed = true;
                        if let Some(line) = notice(trouble) {
                            bar.suspend(|| say(&line));
                        }
                    }
                    None if noticed => {
                        noticed = false;
                        bar.suspend(|| say("wormhole-sync: the server answers again"));
                    }
                    _ => {}
                }
                let mut message = message.lock().unwrap_or_else(PoisonError::into_inner);
                message.1 = trouble.map(|t| {
                    let silent = Timestamp::from_system_time(SystemTime::now()).saturating_since(t.since).as_secs();
                    format!("no answer from the server for {silent}s: {}", t.cause)
                });
                bar.set_message(spinner_text(&message));
                drop(message);
                std::thread::park_timeout(Duration::from_millis(250));
            }
        });
        ServerWatch { stop, thread: Some(thread) }
    }

    /// Prints a line to standard error without tearing the spinner.
    pub fn say(&self, line: &str) {
        self.bar.suspend(|| say(line));
    }

    /// Runs `f` (a question to the person) with the spinner out of the way.
    pub fn pause<T>(&self, f: impl FnOnce() -> T) -> T {
        self.bar.suspend(f)
    }
}

fn spinner_text((what, trouble): &(&'static str, Option<String>)) -> String {
    match trouble {
        Some(trouble) => format!("{what} ({trouble}; retrying)"),
        None => what.to_string(),
    }
}

/// Stops showing server trouble when dropped.
pub struct ServerWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ServerWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for Status {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// `text` as a QR code drawn with half blocks (two rows per line), light
/// on dark as terminals show it, with its quiet zone; `None` when standard
/// error is not a terminal, or the text does not fit a QR code.
pub fn qr_code(text: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(code.render::<Dense1x2>().dark_color(Dense1x2::Light).light_color(Dense1x2::Dark).build())
}

/// Completes a code as it is typed: after the number, each word from the
/// list its position takes words from.
#[derive(Helper, Hinter, Highlighter, Validator)]
struct CodeCompleter;

impl Completer for CodeCompleter {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let typed = &line[..pos];
        let start = typed.rfind('-').map_or(0, |i| i + 1);
        let (parts, current) = (typed[..start].split('-').filter(|p| !p.is_empty()).count(), &typed[start..]);
        let pair = |text: String| Pair { display: text.clone(), replacement: text };
        if parts == 0 {
            // The number: nothing to look up, but Tab after it moves on to the words.
            let done = !current.is_empty() && current.bytes().all(|b| b.is_ascii_digit());
            return Ok((start, if done { vec![pair(format!("{current}-"))] } else { Vec::new() }));
        }
        let current = current.to_ascii_lowercase();
        let words: Vec<&str> = word_list(parts - 1).iter().copied().filter(|w| w.starts_with(&current)).collect();
        // One candidate for the first word: the dash follows (codes have two
        // words unless their sender chose otherwise).
        if let ([only], 1) = (words.as_slice(), parts) {
            return Ok((start, vec![pair(format!("{only}-"))]));
        }
        Ok((start, words.into_iter().map(|w| pair(w.to_string())).collect()))
    }
}

/// Asks for the code on the terminal, completing words with Tab (a second
/// Tab lists the candidates), and checks every word against its list before
/// anything is sent: a mistyped code is shown again to correct, with the
/// closest words.
pub fn ask_code() -> Result<Code, Failure> {
    // On the terminal itself, not standard output: with `receive > FILE` the
    // prompt and the typed code would otherwise land in the data.
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty") {
        return Err(Failure::usage(format!(
            "no code given, and no terminal to ask for one on ({e}): give the code as an argument, \
             `-` to read it from standard input, or WORMHOLE_SYNC_CODE"
        )));
    }
    let config = rustyline::Config::builder()
        .behavior(rustyline::config::Behavior::PreferTerm)
        .completion_type(rustyline::CompletionType::List)
        .build();
    let mut editor = rustyline::Editor::<CodeCompleter, rustyline::history::DefaultHistory>::with_config(config)
        .map_err(|e| Failure::usage(format!("cannot read the code from the terminal: {e}")))?;
    editor.set_helper(Some(CodeCompleter));
    let mut typed = String::new();
    loop {
        let prompt = "Enter the invitation code (Tab completes words): ";
        typed = editor.readline_with_initial(prompt, (&typed, "")).map_err(|e| match e {
            rustyline::error::ReadlineError::Interrupted | rustyline::error::ReadlineError::Eof => {
                Failure::new(crate::exit::code::INTERRUPTED, "no code entered")
            }
            other => Failure::usage(format!("cannot read the code from the terminal: {other}")),
        })?;
        match typed_code(&typed) {
            Ok(code) => return Ok(code),
            // The person's own typing, shown back on their terminal to correct.
            Err(failure) => say(&format!("{}; correct it and press Enter (Ctrl-C to stop)", failure.message)),
        }
    }
}

/// The code on the first line of standard input (`receive -`, `--code -`),
/// so it need not be on the command line, where `ps` shows it to every
/// user of the machine. At most a code's length is read.
pub fn code_from_stdin() -> Result<String, Failure> {
    let mut line = Vec::new();
    let limit = wormhole_sync_core::MAX_CODE_LEN as u64 + 2;
    std::io::stdin()
        .lock()
        .take(limit)
        .read_until(b'\n', &mut line)
        .map_err(|e| Failure::usage(format!("cannot read the code from standard input: {e}")))?;
    let text = String::from_utf8(line).map_err(|_| Failure::usage("the code on standard input is not text"))?;
    let code = text.trim();
    if code.is_empty() {
        return Err(Failure::usage("no code on standard input"));
    }
    Ok(code.to_string())
}

/// A code a person typed (on the command line or at the prompt): well
/// formed, and every word from the list of its position; a word that is not
/// is named (it is the person's own typing, on their own terminal), with
/// the closest words of its list.
pub fn typed_code(text: &str) -> Result<Code, Failure> {
    let code: Code = text.parse().map_err(|e| Failure::usage(format!("invalid code: {e}")))?;
    if let Some(position) = code.unlisted_word() {
        let word = &code.words()[position];
        let suggestions = closest_words(word, position);
        let suggestion = match suggestions.as_slice() {
            [] => String::new(),
            [one] => format!(" (did you mean {one}?)"),
            [rest @ .., last] => format!(" (did you mean {} or {last}?)", rest.join(", ")),
        };
        return Err(Failure::usage(format!(
            "invalid code: word {} \"{}\" is not a word codes use there{suggestion}; check the code (a code you \
             chose together goes with --code)",
            position + 1,
            shown(word),
        )));
    }
    Ok(code)
}

/// Up to three words of the list for `position` closest to `typed`
/// (within two edits, closest first).
fn closest_words(typed: &str, position: usize) -> Vec<&'static str> {
    let mut near: Vec<(usize, &'static str)> = word_list(position)
        .iter()
        .map(|w| (strsim::damerau_levenshtein(typed, w), *w))
        .filter(|(distance, _)| *distance <= 2)
        .collect();
    near.sort();
    near.into_iter().take(3).map(|(_, w)| w).collect()
}

/// Shows the verifier and asks the person, on the terminal itself (standard
/// input may carry the data), whether the other computer shows the same.
pub fn confirm_verifier(verifier: &Verifier) -> Result<bool, Failure> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| Failure::usage(format!("--verify asks on the terminal, and there is none: {e}")))?;
    let mut writer = &tty;
    write!(writer, "Verifier: {verifier}\nDoes the other computer show the same verifier? [y/N] ")
        .and_then(|()| writer.flush())
        .map_err(|e| Failure::usage(format!("cannot ask on the terminal: {e}")))?;
    let mut answer = String::new();
    std::io::BufReader::new(&tty)
        .read_line(&mut answer)
        .map_err(|e| Failure::usage(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Erases the spinner's line (and the `^C` the terminal echoed) when the
/// process exits at once, without the spinner's own clean-up.
pub fn clear_line() {
    if std::io::stderr().is_terminal() {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
}

/// Writes a line to standard error; a closed standard error is no reason
/// to stop (the exchange and its output matter more).
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The person-readable form of `text` for a message (no control characters).
pub fn shown(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(text.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect())
    } else {
        Cow::Borrowed(text)
    }
}
