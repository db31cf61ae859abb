//! The built `wormhole-sync` binary against a server this test starts on
//! 127.0.0.1: pipes, files, exit codes, `--verify`, resume after SIGKILL,
//! Ctrl-C, interactive code entry through a pseudo-terminal, the spinner.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use expectrl::{Eof, Regex, Session};
use wormhole_sync_core::rendezvous::RendezvousSnapshot;
use wormhole_sync_core::word_list;
use wormhole_sync_server::{BackgroundServer, ServerConfig, Storage};

const BIN: &str = env!("CARGO_BIN_EXE_wormhole-sync");
const APPID: &str = "wormhole-sync/cli";

struct Server {
    _running: BackgroundServer,
    url: String,
}

impl Server {
    fn start() -> Server {
        Server::with(ServerConfig::default().without_rate_limits())
    }

    fn with(config: ServerConfig) -> Server {
        let saved = RendezvousSnapshot::new(Vec::new());
        let inner = BackgroundServer::start("127.0.0.1:0".parse().unwrap(), config, Storage::memory(), saved).unwrap();
        let url = inner.url();
        Server { _running: inner, url }
    }

    /// The tool with this server and a short timeout.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.args(args).env("WORMHOLE_SYNC_RENDEZVOUS", &self.url).env_remove("WORMHOLE_SYNC_APPID");
        // No settings file of the person running the tests.
        command.env("XDG_CONFIG_HOME", "/nonexistent/wormhole-sync-tests").env_remove("WORMHOLE_SYNC_CONFIG");
        command
    }

    fn open_channels(&self) -> f64 {
        let mut text = String::new();
        let mut body = ureq_get(&format!("{}/metrics", self.url));
        body.read_to_string(&mut text).unwrap();
        text.lines().find_map(|l| l.strip_prefix("wormhole_channels_open ")?.trim().parse().ok()).expect("the metric")
    }
}

fn ureq_get(url: &str) -> impl Read {
    wormhole_sync_ureq::ureq::get(url).call().unwrap().into_body().into_reader()
}

/// A process whose standard error is being read as it comes.
struct Running {
    child: Child,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

impl Running {
    fn kill(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

/// Starts `send` with `stdin` as its data; returns the process, the code it
/// printed on standard error and the lines up to the command for the other
/// side (the rest of standard error is kept for `finish`).
fn start_send(server: &Server, args: &[&str], stdin: &[u8]) -> (Running, String, Vec<String>) {
    let mut child = server
        .command(&[&["send"], args].concat())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut next_line = || {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "send ended before printing its code");
        line.trim_end().to_string()
    };
    let mut seen = Vec::new();
    let code = loop {
        let line = next_line();
        seen.push(line.clone());
        if let Some(code) = line.strip_prefix("Invitation code: ") {
            break code.to_string();
        }
    };
    // The command line for the other side follows.
    for _ in 0..2 {
        seen.push(next_line());
    }
    let stderr = std::thread::spawn(move || {
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        rest
    });
    (Running { child, stderr }, code, seen)
}

fn run(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn finish(running: Running) -> Output {
    let mut output = running.child.wait_with_output().unwrap();
    output.stderr = running.stderr.join().unwrap();
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Another code on the same channel, made of listed words.
fn wrong_code(code: &str) -> String {
    let (channel, words) = code.split_once('-').unwrap();
    let first = words.split('-').next().unwrap();
    let other = word_list(0).iter().find(|w| **w != first).unwrap();
    format!("{channel}-{other}-{}", word_list(1)[0])
}

#[test]
fn text_goes_both_ways_through_pipes() {
    let server = Server::start();
    let (sender, code, said) = start_send(&server, &[], b"initiator's key\n");
    assert!(
        said.iter().any(|l| l.trim() == format!("wormhole-sync receive {code} --rendezvous {}", server.url)),
        "{said:?}"
    );
    let received = run(server.command(&["receive", &code]), b"receiver's key\n");
    assert!(received.status.success(), "{}", stderr(&received));
    assert_eq!(received.stdout, b"initiator's key\n");
    let sent = finish(sender);
    assert!(sent.status.success(), "{}", stderr(&sent));
    assert_eq!(sent.stdout, b"receiver's key\n", "standard output carries only the data");
    // Standard error was not a terminal: no spinner, no escape sequences.
    for text in [stderr(&sent), stderr(&received)] {
        assert!(!text.contains('\r') && !text.contains('\u{1b}'), "{text:?}");
    }
}

#[test]
fn binary_files_go_both_ways_with_file_and_output() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let mine: Vec<u8> = (0..32 * 1024).map(|i| (i * 7 % 256) as u8).collect();
    let theirs: Vec<u8> = vec![0, 255, 10, 13, 0, 27];
    std::fs::write(dir.path().join("mine"), &mine).unwrap();
    std::fs::write(dir.path().join("theirs"), &theirs).unwrap();
    let [mine_path, theirs_path, got_i, got_r] =
        ["mine", "theirs", "got-i", "got-r"].map(|n| dir.path().join(n).display().to_string());
    let (sender, code, _) = start_send(&server, &["--file", &mine_path, "--output", &got_i], b"");
    let received = run(server.command(&["receive", &code, "--file", &theirs_path, "--output", &got_r]), b"");
    assert!(received.status.success(), "{}", stderr(&received));
    let sent = finish(sender);
    assert!(sent.status.success(), "{}", stderr(&sent));
    assert_eq!(std::fs::read(&got_r).unwrap(), mine);
    assert_eq!(std::fs::read(&got_i).unwrap(), theirs);
    assert!(sent.stdout.is_empty() && received.stdout.is_empty());
    // One byte more than an exchange carries is refused before anything is sent.
    std::fs::write(dir.path().join("big"), vec![1u8; 32 * 1024 + 1]).unwrap();
    let big = run(server.command(&["send", "--file", &dir.path().join("big").display().to_string()]), b"");
    assert_eq!(big.status.code(), Some(2), "{}", stderr(&big));
    assert!(stderr(&big).contains("larger than"), "{}", stderr(&big));
}

#[test]
fn a_wrong_code_fails_both_sides_with_its_exit_code() {
    let server = Server::start();
    let (sender, code, _) = start_send(&server, &[], b"secret");
    let received = run(server.command(&["receive", &wrong_code(&code)]), b"guess");
    assert_eq!(received.status.code(), Some(3), "{}", stderr(&received));
    let sent = finish(sender);
    assert_eq!(sent.status.code(), Some(3), "{}", stderr(&sent));
    // The sender typed no code: it is told the other side typed another one.
    assert!(stderr(&sent).contains("the other side typed a different code"), "{}", stderr(&sent));
    assert!(stderr(&received).contains("codes did not match"), "{}", stderr(&received));
    assert!(sent.stdout.is_empty());
}

/// Each run ends with a word on what happened, even when nothing came back;
/// an empty pipe is not sent as if it were data.
#[test]
fn runs_say_what_was_delivered_and_refuse_an_empty_pipe() {
    let server = Server::start();
    let (sender, code, _) = start_send(&server, &[], b"for you");
    let received = run(server.command(&["receive", &code]), b"");
    assert!(received.status.success(), "{}", stderr(&received));
    let sent = finish(sender);
    assert!(sent.status.success(), "{}", stderr(&sent));
    assert!(stderr(&sent).contains("your data was delivered; the other side sent nothing back"), "{}", stderr(&sent));

    let empty = run(server.command(&["send"]), b"");
    assert_eq!(empty.status.code(), Some(2), "{}", stderr(&empty));
    assert!(stderr(&empty).contains("standard input was empty"), "{}", stderr(&empty));
    assert_eq!(server.open_channels(), 0.0, "nothing was allocated");
}

/// Data shown on a terminal ends its line, so the shell's prompt does not
/// follow it on the same line.
#[test]
fn data_on_a_terminal_ends_with_a_newline() {
    let server = Server::start();
    let (sender, code, _) = start_send(&server, &[], b"no newline at the end");
    let mut session = pty(&server, &["receive", &code, "--quiet"]);
    expect(&mut session, "no newline at the end\r\n");
    assert_eq!(exit_code(&mut session), Some(0));
    assert!(finish(sender).status.success());
}

#[test]
fn nobody_coming_is_a_timeout() {
    let server = Server::start();
    let started = Instant::now();
    let sent = run(server.command(&["send", "--timeout", "1s", "x"]), b"");
    assert_eq!(sent.status.code(), Some(4), "{}", stderr(&sent));
    assert!(stderr(&sent).contains("timed out"), "{}", stderr(&sent));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_third_side_finds_the_code_used() {
    use wormhole_sync_ureq::transcribe::{Initiator, Receiver};
    let server = Server::start();
    // Two sides hold the channel, the initiator waiting for a verdict on the verifier: the
    // code is spent, and a third side is told someone else may have used it.
    let initiator = Initiator::builder(APPID, b"i".to_vec()).rendezvous(&server.url).confirm_verifier(true);
    let mut initiator = initiator.build().unwrap();
    let code = initiator.get_code().unwrap().to_string();
    let mut receiver = Receiver::builder(APPID, &code, b"r".to_vec()).rendezvous(&server.url).build().unwrap();
    let receiving = std::thread::spawn(move || receiver.get_data());
    initiator.get_verifier().unwrap();
    let third = run(server.command(&["receive", &code]), b"");
    assert_eq!(third.status.code(), Some(5), "{}", stderr(&third));
    assert!(stderr(&third).contains("someone else may have used your code"), "{}", stderr(&third));
    initiator.accept_verifier().unwrap();
    assert_eq!(initiator.get_data().unwrap(), b"r");
    assert_eq!(receiving.join().unwrap().unwrap(), b"i");
}

#[test]
fn an_unknown_channel_unreachable_server_refusal_and_bad_usage_have_their_codes() {
    let server = Server::start();
    let code = format!("98765-{}-{}", word_list(0)[0], word_list(1)[0]);
    let unknown = run(server.command(&["receive", &code]), b"");
    assert_eq!(unknown.status.code(), Some(6), "{}", stderr(&unknown));
    assert!(stderr(&unknown).contains("no such channel"), "{}", stderr(&unknown));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut unreachable = server.command(&["send", "--timeout", "1s", "x"]);
    unreachable.env("WORMHOLE_SYNC_RENDEZVOUS", format!("http://{closed}"));
    let unreachable = run(unreachable, b"");
    assert_eq!(unreachable.status.code(), Some(7), "{}", stderr(&unreachable));
    assert!(stderr(&unreachable).contains(&format!("could not reach the rendezvous server at http://{closed}")));

    let mut small = ServerConfig::default().without_rate_limits();
    small.rendezvous.max_message_bytes = 200;
    let small = Server::with(small);
    let (sender, code, _) = start_send(&small, &[], &[b'x'; 2_000]);
    let received = run(small.command(&["receive", &code]), b"short");
    let sent = finish(sender);
    assert_eq!(sent.status.code(), Some(8), "{}", stderr(&sent));
    assert!(stderr(&sent).contains("message-too-large"), "{}", stderr(&sent));
    assert_ne!(received.status.code(), Some(0));

    for args in [&["receive", "not-a-code"][..], &["receive", "7-guitarst-revenge"], &["send", "--bogus"]] {
        let usage = run(server.command(args), b"");
        assert_eq!(usage.status.code(), Some(2), "{args:?}: {}", stderr(&usage));
    }
    assert_eq!(server.open_channels(), 0.0, "mistyped codes sent nothing");
}

/// With no server at the address, the reason is said at the first failure
/// (which server, why, what to do), the spinner counts the silence, and the
/// run gives up at the connect timeout instead of retrying for an hour.
#[test]
fn no_server_is_said_at_once_and_given_up_at_the_connect_timeout() {
    let server = Server::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let nobody = format!("http://{closed}");
    let started = Instant::now();
    let mut send = server.command(&["send", "--timeout", "1h", "--connect-timeout", "2s", "x"]);
    send.env("WORMHOLE_SYNC_RENDEZVOUS", &nobody);
    let sent = run(send, b"");
    assert_eq!(sent.status.code(), Some(7), "{}", stderr(&sent));
    assert!(started.elapsed() < Duration::from_secs(30), "gave up at the connect timeout, not the hour");
    let said = stderr(&sent);
    let notice = said.lines().next().unwrap();
    assert!(notice.starts_with(&format!("wormhole-sync: cannot reach the server {nobody} (")), "{said}");
    assert!(notice.contains("Retrying for up to 2s") && notice.contains("`wormhole-sync serve`"), "{said}");
    assert!(notice.contains("--rendezvous URL (or WORMHOLE_SYNC_RENDEZVOUS)"), "{said}");
    let last = said.lines().last().unwrap();
    assert!(last.starts_with(&format!("wormhole-sync: could not reach the rendezvous server at {nobody}")), "{said}");
    assert!(last.contains("--listen 0.0.0.0:4000"), "{said}");

    // With a state file, the exchange waits for its server until the timeout.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("invitation.json");
    let mut send = server.command(&["send", "--timeout", "2s", "--state", state.to_str().unwrap(), "x"]);
    send.env("WORMHOLE_SYNC_RENDEZVOUS", &nobody);
    let sent = run(send, b"");
    assert_eq!(sent.status.code(), Some(7), "{}", stderr(&sent));
    assert!(
        stderr(&sent).contains("Retrying until the timeout (the state file keeps the exchange"),
        "{}",
        stderr(&sent)
    );

    // magic-wormhole's mailbox servers are named alike.
    let mut send = server.command(&["send", "--magic-wormhole", "--connect-timeout", "1s", "x"]);
    send.env("WORMHOLE_SYNC_RENDEZVOUS", format!("ws://{closed}/v1"));
    let sent = run(send, b"");
    assert_eq!(sent.status.code(), Some(7), "{}", stderr(&sent));
    assert!(stderr(&sent).contains("Check the address (--rendezvous) and the network connection"), "{}", stderr(&sent));

    // On a terminal, the spinner counts the silence.
    let mut command = server.command(&["send", "--connect-timeout", "4s", "x"]);
    command.env("WORMHOLE_SYNC_RENDEZVOUS", &nobody);
    let mut session = Session::spawn(command).unwrap();
    session.set_expect_timeout(Some(Duration::from_secs(20)));
    expect(&mut session, r"allocating a channel on the rendezvous server \(no answer from the server for \d+s: ");
    assert_eq!(exit_code(&mut session), Some(7));
}

/// `send --qr` draws the printed command as a QR code on the terminal (and
/// never into a pipe), and the sender hears when the other side typed the code.
#[test]
fn the_command_shows_as_a_qr_code_and_the_sender_hears_when_the_code_is_typed() {
    let server = Server::start();
    let mut sender = pty(&server, &["send", "--qr", "scan me"]);
    let command = expect(&mut sender, r"On the other computer, run:\s+(wormhole-sync receive [^\r\n]+)");
    let picture = qrcode::QrCode::new(command.as_bytes()).unwrap();
    use qrcode::render::unicode::Dense1x2;
    let expected = picture.render::<Dense1x2>().dark_color(Dense1x2::Light).light_color(Dense1x2::Dark).build();
    // The terminal shows it line by line; a middle line is as unique as the picture.
    let rows: Vec<&str> = expected.lines().collect();
    let middle = rows[rows.len() / 2];
    sender.expect(middle).unwrap_or_else(|e| panic!("the QR code's middle row: {e}"));
    let code = command.split_whitespace().nth(2).unwrap().to_string();
    let received = run(server.command(&["receive", &code]), b"");
    assert_eq!(received.stdout, b"scan me", "{}", stderr(&received));
    expect(&mut sender, "the other side typed the code");
    assert_eq!(exit_code(&mut sender), Some(0));

    // Into a pipe, no picture.
    let piped = run(server.command(&["send", "--qr", "--timeout", "1s", "piped"]), b"");
    assert_eq!(piped.status.code(), Some(4), "{}", stderr(&piped));
    assert!(stderr(&piped).contains("On the other computer, run:"));
    assert!(!stderr(&piped).contains(['\u{2588}', '\u{2580}', '\u{2584}']), "{}", stderr(&piped));
}

/// The settings file in the platform's folder sets the server once; the
/// environment and options win over it; a bad file is refused, named.
#[test]
fn the_settings_file_sets_the_server_below_the_environment_and_options() {
    let server = Server::start();
    let home = tempfile::tempdir().unwrap();
    let folder = home.path().join("wormhole-sync");
    std::fs::create_dir(&folder).unwrap();
    let file = folder.join("config.toml");
    let settings_only = |args: &[&str]| {
        let mut command = server.command(args);
        command.env_remove("WORMHOLE_SYNC_RENDEZVOUS").env("XDG_CONFIG_HOME", home.path());
        command
    };
    std::fs::write(&file, format!("rendezvous = \"{}\"\n", server.url)).unwrap();
    let (sender, code, _) = start_send(&server, &[], b"via the settings");
    let received = run(settings_only(&["receive", &code]), b"");
    assert_eq!(received.status.code(), Some(0), "{}", stderr(&received));
    assert_eq!(received.stdout, b"via the settings");
    assert_eq!(finish(sender).status.code(), Some(0));

    // The environment wins over a settings file naming a server that is not there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    std::fs::write(&file, format!("rendezvous = \"http://{closed}\"\n")).unwrap();
    let (sender, code, _) = start_send(&server, &[], b"via the environment");
    let mut receive = settings_only(&["receive", &code]);
    receive.env("WORMHOLE_SYNC_RENDEZVOUS", &server.url);
    let received = run(receive, b"");
    assert_eq!(received.stdout, b"via the environment", "{}", stderr(&received));
    assert_eq!(finish(sender).status.code(), Some(0));
    // Alone, it is used, and messages say where the server came from.
    let sent = run(settings_only(&["send", "--connect-timeout", "1s", "x"]), b"");
    assert_eq!(sent.status.code(), Some(7), "{}", stderr(&sent));
    assert!(stderr(&sent).contains(&format!("http://{closed} (set in {})", file.display())), "{}", stderr(&sent));

    // A typo, a malformed file and a named file that is missing are usage errors naming the file.
    for (text, said) in [("rendevous = \"http://a:4000\"", "unknown field"), ("rendezvous = 4000", "string")] {
        std::fs::write(&file, text).unwrap();
        let refused = run(settings_only(&["send", "x"]), b"");
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
        let message = stderr(&refused);
        assert!(
            message.contains(&format!("the settings file {}", file.display())) && message.contains(said),
            "{message}"
        );
    }
    let mut named = settings_only(&["send", "x"]);
    named.env("WORMHOLE_SYNC_CONFIG", home.path().join("missing.toml"));
    let refused = run(named, b"");
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("missing.toml"), "{}", stderr(&refused));
}

/// Reads what a pseudo-terminal session printed up to `pattern`; returns
/// the first capture group.
fn expect(session: &mut Session, pattern: &str) -> String {
    let found = session.expect(Regex(pattern)).unwrap_or_else(|e| panic!("waiting for {pattern:?}: {e}"));
    let group = found.get(1).unwrap_or(found.get(0).unwrap());
    String::from_utf8_lossy(group).into_owned()
}

fn pty(server: &Server, args: &[&str]) -> Session {
    let mut session = Session::spawn(server.command(args)).unwrap();
    session.set_expect_timeout(Some(Duration::from_secs(20)));
    session
}

fn exit_code(session: &mut Session) -> Option<i32> {
    session.expect(Eof).unwrap();
    match session.get_process_mut().wait().unwrap() {
        expectrl::WaitStatus::Exited(_, code) => Some(code),
        _ => None,
    }
}

#[test]
fn verify_shows_the_verifier_on_both_sides_and_asks() {
    let server = Server::start();
    let mut sender = pty(&server, &["send", "--verify", "from the sender"]);
    let code = expect(&mut sender, r"Invitation code: (\S+)\r?\n");
    // The spinner is there on a terminal, saying what it waits for.
    expect(&mut sender, "waiting for the other side to type the code");
    let mut receiver = pty(&server, &["receive", &code, "--verify", "from the receiver"]);
    let shown_r = expect(&mut receiver, r"Verifier: ([0-9a-f ]+)\r?\n");
    let shown_s = expect(&mut sender, r"Verifier: ([0-9a-f ]+)\r?\n");
    assert_eq!(shown_r, shown_s);
    expect(&mut sender, r"same verifier\? \[y/N\]");
    sender.send_line("y").unwrap();
    expect(&mut receiver, r"same verifier\? \[y/N\]");
    receiver.send_line("yes").unwrap();
    expect(&mut receiver, "from the sender");
    expect(&mut sender, "from the receiver");
    assert_eq!(exit_code(&mut sender), Some(0));
    assert_eq!(exit_code(&mut receiver), Some(0));

    // Declined: nothing is released, and the other side is told.
    let mut sender = pty(&server, &["send", "--verify", "secret"]);
    let code = expect(&mut sender, r"Invitation code: (\S+)\r?\n");
    let mut receiver = server.command(&["receive", &code]);
    let receiver = receiver.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let receiver = Running { child: receiver, stderr: std::thread::spawn(Vec::new) };
    expect(&mut sender, r"same verifier\? \[y/N\]");
    sender.send_line("n").unwrap();
    expect(&mut sender, "you said the verifiers differ");
    assert_eq!(exit_code(&mut sender), Some(11), "a local no has its own exit code");
    let received = receiver.child.wait_with_output().unwrap();
    assert_eq!(received.status.code(), Some(9), "{}", stderr(&received));
    assert!(stderr(&received).contains("declined"), "{}", stderr(&received));
    assert!(received.stdout.is_empty());
}

#[test]
fn a_send_killed_mid_wait_resumes_with_the_same_code() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("invitation.json");
    let state_arg = state.display().to_string();
    let (mut sender, code, _) = start_send(&server, &["--state", &state_arg], b"survives a crash");
    sender.kill();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the state file holds secrets");
    }
    let mut resumed = server.command(&["resume", &state_arg]);
    let resumed = resumed.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let received = run(server.command(&["receive", &code]), b"reply");
    assert!(received.status.success(), "{}", stderr(&received));
    assert_eq!(received.stdout, b"survives a crash");
    let resumed = resumed.wait_with_output().unwrap();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(resumed.stdout, b"reply");
    assert!(stderr(&resumed).contains(&format!("Invitation code: {code}")), "the same code is shown again");
    assert!(!state.exists(), "the state file is removed when the exchange ends");
}

/// A saved invitation can be given longer when it is resumed, counted from
/// its first start; without that, one past its timeout ends at once.
#[test]
fn resume_can_extend_the_timeout() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let [extended, expired] = ["extended.json", "expired.json"].map(|n| dir.path().join(n).display().to_string());
    let (mut sender, code, _) = start_send(&server, &["--state", &extended, "--timeout", "2s"], b"still here");
    sender.kill();
    let (mut other, _, _) = start_send(&server, &["--state", &expired, "--timeout", "2s"], b"gone");
    other.kill();
    std::thread::sleep(Duration::from_millis(2500));

    let late = run(server.command(&["resume", &expired]), b"");
    assert_eq!(late.status.code(), Some(4), "{}", stderr(&late));

    let mut resumed = server.command(&["resume", &extended, "--timeout", "1h"]);
    let resumed = resumed.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let received = run(server.command(&["receive", &code]), b"reply");
    assert!(received.status.success(), "{}", stderr(&received));
    assert_eq!(received.stdout, b"still here");
    let resumed = resumed.wait_with_output().unwrap();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(resumed.stdout, b"reply");

    let (mut third, _, _) = start_send(&server, &["--state", &expired], b"third");
    third.kill();
    let too_long = run(server.command(&["resume", &expired, "--timeout", "400d"]), b"");
    assert_eq!(too_long.status.code(), Some(2), "{}", stderr(&too_long));
    assert!(stderr(&too_long).contains("at most 366 days"), "{}", stderr(&too_long));
}

#[cfg(unix)]
fn interrupt(running: &Running) {
    let status = Command::new("kill").args(["-INT", &running.child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[cfg(unix)]
#[test]
fn ctrl_c_closes_the_channel_so_the_code_is_dead_at_once() {
    let server = Server::start();
    let (sender, code, _) = start_send(&server, &[], b"x");
    assert_eq!(server.open_channels(), 1.0);
    interrupt(&sender);
    let sent = finish(sender);
    assert_eq!(sent.status.code(), Some(130), "{}", stderr(&sent));
    assert!(
        stderr(&sent).contains("interrupted: the channel was closed, so the other side knows"),
        "{}",
        stderr(&sent)
    );
    assert_eq!(server.open_channels(), 0.0, "closed on the way out");
    // A receiver who types the code afterwards learns that the sender left,
    // rather than that the code expired or was mistyped.
    let late = run(server.command(&["receive", &code]), b"");
    assert_eq!(late.status.code(), Some(9), "{}", stderr(&late));
    assert!(
        stderr(&late).contains("the other side gave up waiting (lonely) or was stopped; start again with a new code"),
        "{}",
        stderr(&late)
    );

    // With a state file, Ctrl-C leaves the channel and the file for `resume`.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json").display().to_string();
    let (sender, _, _) = start_send(&server, &["--state", &state], b"x");
    interrupt(&sender);
    let sent = finish(sender);
    assert_eq!(sent.status.code(), Some(130));
    assert!(stderr(&sent).contains(&format!("wormhole-sync resume {state}")), "{}", stderr(&sent));
    assert!(std::path::Path::new(&state).exists());
    assert_eq!(server.open_channels(), 1.0);

    // With no server, Ctrl-C says nothing was made, rather than that a channel was closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut send = server.command(&["send", "x"]);
    send.env("WORMHOLE_SYNC_RENDEZVOUS", format!("http://{closed}"));
    let mut child = send.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // The first failure is said at once; then the run is interrupted while it retries.
    let first = stderr_lines.next().unwrap().unwrap();
    assert!(first.contains("cannot reach the server"), "{first}");
    let running = Running {
        child,
        stderr: std::thread::spawn(move || stderr_lines.map(|l| l.unwrap() + "\n").collect::<String>().into_bytes()),
    };
    interrupt(&running);
    let sent = finish(running);
    assert_eq!(sent.status.code(), Some(130), "{}", stderr(&sent));
    assert!(stderr(&sent).contains("the server was never reached, so nothing was made or sent"), "{}", stderr(&sent));
}

/// Ctrl-C on a terminal with a state file exits at once: the spinner's
/// line is erased first, so only the way to resume stays on screen.
#[test]
fn ctrl_c_on_a_terminal_leaves_no_spinner_behind() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json").display().to_string();
    let mut sender = pty(&server, &["send", "--state", &state, "x"]);
    expect(&mut sender, "waiting for the other side to type the code");
    sender.send("\x03").unwrap(); // Ctrl-C, as the terminal delivers it.
    expect(&mut sender, r"\r\x1b\[2Kwormhole-sync: interrupted; continue with: wormhole-sync resume");
    assert_eq!(exit_code(&mut sender), Some(130));
}

/// The shortest prefix of `word` no other word of its list starts with.
fn unique_prefix(word: &str, position: usize) -> &str {
    (1..=word.len())
        .map(|n| &word[..n])
        .find(|p| word_list(position).iter().filter(|w| w.starts_with(p)).count() == 1)
        .unwrap()
}

#[test]
fn receive_asks_for_the_code_and_completes_words_with_tab() {
    let server = Server::start();
    let (sender, code, _) = start_send(&server, &[], b"typed by hand");
    let mut parts = code.split('-');
    let channel = parts.next().unwrap();
    let words: Vec<&str> = parts.collect();
    let mut receiver = pty(&server, &["receive"]);
    expect(&mut receiver, "Enter the invitation code");
    receiver.send(format!("{channel}\t")).unwrap(); // Tab after the number adds the dash.
    for (position, word) in words.iter().enumerate() {
        receiver.send(format!("{}\t", unique_prefix(word, position))).unwrap();
        // Tab after the first word adds the dash too; later ones are typed.
        if position >= 1 && position + 1 < words.len() {
            receiver.send("-").unwrap();
        }
    }
    receiver.send("\r").unwrap();
    expect(&mut receiver, "typed by hand");
    assert_eq!(exit_code(&mut receiver), Some(0));
    assert!(finish(sender).status.success());

    // A second Tab lists the candidates; a mistyped word is named, with the
    // closest words, before anything is sent, and the code is asked again.
    let (sender, code, _) = start_send(&server, &[], b"after a typo");
    let (channel, words) = code.split_once('-').unwrap();
    let first = words.split('-').next().unwrap();
    let initial = &first[..1];
    let candidates: Vec<&str> = word_list(0).iter().copied().filter(|w| w.starts_with(initial)).collect();
    let mut receiver = pty(&server, &["receive"]);
    expect(&mut receiver, "Enter the invitation code");
    receiver.send(format!("{channel}-{initial}\t\t")).unwrap();
    if candidates.len() > 1 {
        expect(&mut receiver, candidates[0]);
        expect(&mut receiver, candidates[candidates.len() - 1]);
    }
    receiver.send("\x15").unwrap(); // Ctrl-U: the line is empty again.
    let typo = [&first[..first.len() - 1], &first[1..]].into_iter().find(|t| !word_list(0).contains(t)).unwrap();
    receiver.send(format!("{channel}-{typo}-{}\r", &words[first.len() + 1..])).unwrap();
    expect(&mut receiver, &format!(r#"word 1 "{typo}" is not a word codes use there \(did you mean [^)]*{first}"#));
    expect(&mut receiver, "correct it and press Enter");
    receiver.send("\x15").unwrap();
    receiver.send(format!("{code}\r")).unwrap();
    expect(&mut receiver, "after a typo");
    assert_eq!(exit_code(&mut receiver), Some(0));
    assert!(finish(sender).status.success());
}

/// Runs a command line the tool printed, through the shell, with this
/// build first on the PATH and this server's URL in the environment.
fn run_printed(server: &Server, line: &str, stdin: &[u8]) -> Output {
    let dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new("sh");
    command.args(["-c", line.trim()]).env("PATH", path);
    command.env("WORMHOLE_SYNC_RENDEZVOUS", &server.url).env_remove("WORMHOLE_SYNC_APPID");
    run(command, stdin)
}

/// The command `send` (or `resume`) printed for the other computer.
fn printed_command(said: &[String]) -> &str {
    let at = said.iter().position(|l| l.starts_with("On the other computer, run:")).expect("a command is printed");
    said[at + 1].trim()
}

#[test]
fn every_printed_receive_command_works_as_printed() {
    let server = Server::start();
    // A chosen code: its words are not from the lists, so it goes after --code.
    let chosen = "42-zzbanana-zzsplit";
    let (sender, _, said) = start_send(&server, &["--code", chosen, "--appid", "it's mine"], b"chosen");
    let command = printed_command(&said);
    assert!(command.contains(&format!("--code {chosen}")), "{command}");
    let received = run_printed(&server, command, b"");
    assert!(received.status.success(), "{command}: {}", stderr(&received));
    assert_eq!(received.stdout, b"chosen");
    assert!(finish(sender).status.success());

    // A resumed send prints the command with its own app id, not an empty one.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("invitation.json").display().to_string();
    let (mut sender, _, _) = start_send(&server, &["--state", &state, "--appid", "example.com/resumed"], b"again");
    sender.kill();
    let mut resumed = server.command(&["resume", &state]);
    let mut resumed = resumed.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut reader = BufReader::new(resumed.stderr.take().unwrap());
    let mut said: Vec<String> = Vec::new();
    while said.len() < 2 || !said[said.len() - 2].starts_with("On the other computer") {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "resume ended before printing a command: {said:?}");
        said.push(line.trim_end().to_string());
    }
    let command = printed_command(&said);
    assert!(command.contains("--appid 'example.com/resumed'"), "{command}");
    let received = run_printed(&server, command, b"");
    assert!(received.status.success(), "{command}: {}", stderr(&received));
    assert_eq!(received.stdout, b"again");
    assert!(resumed.wait().unwrap().success());
}

/// With standard output redirected, the code prompt and what is typed go to
/// the terminal, never into the received data.
#[cfg(unix)]
#[test]
fn the_code_prompt_stays_on_the_terminal_when_standard_output_is_a_file() {
    let server = Server::start();
    let (sender, code, _) = start_send(&server, &[], b"only the data");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let mut shell = Command::new("sh");
    shell.args(["-c", "exec \"$0\" receive > \"$1\"", BIN, &out.display().to_string()]);
    shell.env("WORMHOLE_SYNC_RENDEZVOUS", &server.url).env_remove("WORMHOLE_SYNC_APPID");
    let mut session = Session::spawn(shell).unwrap();
    session.set_expect_timeout(Some(Duration::from_secs(20)));
    expect(&mut session, "Enter the invitation code");
    session.send(format!("{code}\r")).unwrap();
    assert_eq!(exit_code(&mut session), Some(0));
    assert_eq!(std::fs::read(&out).unwrap(), b"only the data");
    assert!(finish(sender).status.success());
}

#[test]
fn help_completions_and_man_page_are_generated() {
    let help = Command::new(BIN).args(["send", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("Examples:") && help.contains("Exit codes:") && help.contains("--rendezvous"), "{help}");
    for shell in ["bash", "zsh", "fish"] {
        let script = Command::new(BIN).args(["completions", shell]).output().unwrap();
        assert!(script.status.success() && String::from_utf8_lossy(&script.stdout).contains("resume"), "{shell}");
    }
    // A reader that stops at once (`| head -1`) is no failure, and no panic.
    let mut early = Command::new(BIN);
    let mut early = early.args(["completions", "bash"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(early.stdout.take());
    let early = early.wait_with_output().unwrap();
    assert!(early.status.success() && !stderr(&early).contains("panicked"), "{}", stderr(&early));

    let man = Command::new(BIN).arg("man").output().unwrap();
    let top = String::from_utf8_lossy(&man.stdout).into_owned();
    assert!(top.contains(".TH") && top.contains("EXIT STATUS") && top.contains("wrong code"), "{top}");
    let send = Command::new(BIN).args(["man", "send"]).output().unwrap();
    let send = String::from_utf8_lossy(&send.stdout).into_owned();
    assert!(send.contains("rendezvous") && send.contains("timeout") && send.contains("Exit codes"), "{send}");
    // Every page the top page names is generated.
    let dir = tempfile::tempdir().unwrap();
    let written = Command::new(BIN).args(["man", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(written.status.success(), "{}", stderr(&written));
    let named: Vec<&str> = top
        .split("wormhole\\-sync\\-")
        .skip(1)
        .filter_map(|rest| rest.split_once("(1)").map(|(name, _)| name))
        .filter(|name| name.bytes().all(|b| b.is_ascii_lowercase()))
        .collect();
    assert!(named.len() >= 5, "{top}");
    for name in named {
        let page = dir.path().join(format!("wormhole-sync-{name}.1"));
        assert!(page.exists(), "the top page names {} but it was not generated", page.display());
    }
    assert!(dir.path().join("wormhole-sync.1").exists());
    let serve = Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    let serve = String::from_utf8(serve.stdout).unwrap();
    for flag in ["--listen", "--db", "--memory", "--channel-expiry", "--rate-limit", "WORMHOLE_SYNC_DB"] {
        assert!(serve.contains(flag), "serve --help lacks {flag}");
    }
}

#[test]
fn serve_runs_the_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut serve =
        Command::new(BIN).args(["serve", "--memory", "--listen", &listen]).stdout(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        match wormhole_sync_ureq::ureq::get(format!("http://{listen}/health")).call() {
            Ok(response) => break response.status().as_u16(),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("serve did not come up: {e}"),
        }
    };
    assert_eq!(health, 200);
    // `systemctl reload` (SIGHUP) on a server without TLS leaves it serving.
    let hangup = Command::new("kill").args(["-HUP", &serve.id().to_string()]).status().unwrap();
    assert!(hangup.success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(serve.try_wait().unwrap(), None, "SIGHUP stopped the server");
    let health = wormhole_sync_ureq::ureq::get(format!("http://{listen}/health")).call().unwrap();
    assert_eq!(health.status().as_u16(), 200);
    serve.kill().unwrap();
    serve.wait().unwrap();
}

/// A fresh CA (its DER and PEM) and a certificate for 127.0.0.1 it signed,
/// written to `cert` and `key`.
fn issue_certificate(cert: &std::path::Path, key: &std::path::Path) -> (Vec<u8>, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names.push(rcgen::SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    std::fs::write(cert, leaf.pem()).unwrap();
    std::fs::write(key, leaf_key.serialize_pem()).unwrap();
    (ca.der().to_vec(), ca.pem())
}

/// GET /health over HTTPS trusting only `ca`, on a fresh connection.
fn healthy_with(url: &str, ca: &[u8]) -> bool {
    use wormhole_sync_ureq::ureq;
    let roots =
        ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![ureq::tls::Certificate::from_der(ca).to_owned()]));
    let tls = ureq::tls::TlsConfig::builder().root_certs(roots).build();
    let agent: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).build().into();
    agent.get(format!("{url}/health")).call().is_ok_and(|r| r.status() == 200)
}

#[cfg(unix)]
#[test]
fn serve_speaks_https_and_reloads_its_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (first_ca, _) = issue_certificate(&cert, &key);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let args = ["serve", "--memory", "--listen", &listen, "--tls-cert", &cert_arg, "--tls-key", &key_arg];
    let mut serve = Command::new(BIN).args(args).stdout(Stdio::null()).spawn().unwrap();
    let url = format!("https://{listen}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !healthy_with(&url, &first_ca) {
        assert!(Instant::now() < deadline, "serve did not come up over HTTPS");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A renewed certificate from another CA, then SIGHUP: new connections get it.
    let (second_ca, _) = issue_certificate(&cert, &key);
    assert!(!healthy_with(&url, &second_ca), "the old certificate is still served before the signal");
    let status = Command::new("kill").args(["-HUP", &serve.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !healthy_with(&url, &second_ca) {
        assert!(Instant::now() < deadline, "the renewed certificate was not served after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!healthy_with(&url, &first_ca));
    serve.kill().unwrap();
    serve.wait().unwrap();
}

#[test]
fn send_and_receive_over_https_with_a_private_ca() {
    use wormhole_sync_server::TlsFiles;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (_, pem) = issue_certificate(&cert, &key);
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, pem).unwrap();
    let config = ServerConfig { tls: Some(TlsFiles { cert, key }), ..ServerConfig::default().without_rate_limits() };
    let server = Server::with(config);
    assert!(server.url.starts_with("https://"));
    let ca = ca_pem.display().to_string();
    let (sender, code, _) = start_send(&server, &["--ca-cert", &ca], b"over TLS");
    let received = run(server.command(&["receive", &code, "--ca-cert", &ca]), b"back over TLS");
    assert!(received.status.success(), "{}", stderr(&received));
    assert_eq!(received.stdout, b"over TLS");
    let sent = finish(sender);
    assert_eq!(sent.stdout, b"back over TLS");
    // Without the CA, the certificate is refused at once: unreachable, not a timeout.
    let started = Instant::now();
    let refused = run(server.command(&["send", "--timeout", "1h", "x"]), b"");
    assert_eq!(refused.status.code(), Some(7), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("certificate"), "{}", stderr(&refused));
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// The server's mailbox (WebSocket) URL, for `--magic-wormhole`.
fn mailbox_url(server: &Server) -> String {
    format!("{}/v1", server.url.replace("http://", "ws://"))
}

#[test]
fn magic_wormhole_text_goes_from_send_to_receive_and_a_killed_send_resumes() {
    let server = Server::start();
    let ws = mailbox_url(&server);
    let (sender, code, said) = start_send(&server, &["--magic-wormhole", "--rendezvous", &ws], b"hello wormhole\n");
    assert!(said.iter().any(|l| l.trim() == format!("wormhole --relay-url {ws} receive {code}")), "{said:?}");
    let received = run(server.command(&["receive", "--magic-wormhole", "--rendezvous", &ws, &code]), b"");
    assert!(received.status.success(), "{}", stderr(&received));
    assert_eq!(received.stdout, b"hello wormhole\n");
    let sent = finish(sender);
    assert!(sent.status.success(), "{}", stderr(&sent));
    assert!(sent.stdout.is_empty() && stderr(&sent).contains("text message sent"), "{}", stderr(&sent));

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("magic.json").display().to_string();
    let args = ["--magic-wormhole", "--rendezvous", &ws, "--state", &state];
    let (mut sender, code, _) = start_send(&server, &args, b"after a crash");
    sender.kill();
    let resumed = server.command(&["resume", &state]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let received = run(server.command(&["receive", "--magic-wormhole", "--rendezvous", &ws, &code]), b"");
    assert!(received.status.success(), "{}", stderr(&received));
    assert_eq!(received.stdout, b"after a crash");
    let resumed = resumed.wait_with_output().unwrap();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains(&format!("Invitation code: {code}")), "{}", stderr(&resumed));
}

#[test]
fn magic_wormhole_refuses_what_it_cannot_do_with_usage_errors() {
    let server = Server::start();
    let ws = mailbox_url(&server);
    let cases: [(&[&str], &[u8], &str); 4] = [
        // The environment names this server's HTTP API, not a mailbox server.
        (&["send", "--magic-wormhole", "hi"], b"", "ws://"),
        (&["send", "--magic-wormhole", "--rendezvous", &ws, "--verify", "hi"], b"", "--verify"),
        (&["receive", "--magic-wormhole", "--rendezvous", &ws, "4-guitarist-revenge", "a reply"], b"", "nothing back"),
        // Piped data that is not text.
        (&["send", "--magic-wormhole", "--rendezvous", &ws], b"\xff\xfe", "UTF-8"),
    ];
    for (args, stdin, said) in cases {
        let refused = run(server.command(args), stdin);
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {}", stderr(&refused));
        assert!(stderr(&refused).contains(said), "{args:?}: {}", stderr(&refused));
    }
}

/// A server address that cannot work is refused at once, saying what to
/// type instead; https:// against a plain-HTTP server says so.
#[test]
fn server_address_mistakes_are_caught_at_once_with_the_fix() {
    let server = Server::start();
    let host = server.url.trim_start_matches("http://").to_string();
    let (ws_v1, http_v1, ws_bare) = (format!("ws://{host}/v1"), format!("{}/v1", server.url), format!("ws://{host}"));
    let cases = [
        (vec!["send", "--rendezvous", &ws_v1, "x"], "add --magic-wormhole".to_string()),
        (vec!["send", "--rendezvous", &http_v1, "x"], format!("--rendezvous {}", server.url)),
        (vec!["send", "--rendezvous", &host, "x"], format!("--rendezvous http://{host}")),
        (vec!["send", "--magic-wormhole", "--rendezvous", &ws_bare, "x"], format!("--rendezvous ws://{host}/v1")),
    ];
    for (args, fix) in cases {
        let started = Instant::now();
        let refused = run(server.command(&args), b"");
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {}", stderr(&refused));
        assert!(stderr(&refused).contains(&fix), "{args:?}: {}", stderr(&refused));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    let tls = run(server.command(&["send", "--timeout", "3s", "--rendezvous", &format!("https://{host}"), "x"]), b"");
    assert!(stderr(&tls).contains("use http:// instead of https://"), "{}", stderr(&tls));
}

/// `--output` writes a new private file, never through a symbolic link,
/// and replaces an existing file only with `--force` (refused before any
/// exchange starts, so no code is spent).
#[test]
fn the_output_file_is_private_and_never_overwritten_by_surprise() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("existing");
    std::fs::write(&existing, b"keep me").unwrap();
    let existing = existing.display().to_string();
    let refused = run(server.command(&["receive", "5-guitarist-revenge", "--output", &existing]), b"");
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
    let link = link.display().to_string();
    let refused = run(server.command(&["send", "x", "--output", &link, "--force"]), b"");
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("symbolic link"), "{}", stderr(&refused));
    assert!(!dir.path().join("elsewhere").exists());
    assert_eq!(server.open_channels(), 0.0, "refused before any channel was made");

    let (sender, code, _) = start_send(&server, &["--output", &existing, "--force"], b"secret");
    let received = dir.path().join("received");
    let received_path = received.display().to_string();
    let output = run(server.command(&["receive", &code, "reply", "--output", &received_path]), b"");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(finish(sender).status.success());
    assert_eq!(std::fs::read(&received).unwrap(), b"secret");
    assert_eq!(std::fs::metadata(&received).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&existing).unwrap(), b"reply", "replaced with --force");
}

/// The code need not be on the command line (where `ps` shows it): from
/// standard input with `-`, or from WORMHOLE_SYNC_CODE.
#[test]
fn the_code_comes_from_standard_input_or_the_environment() {
    let server = Server::start();
    let (sender, code, _) = start_send(&server, &[], b"first");
    let received = run(server.command(&["receive", "-", "reply"]), format!("{code}\n").as_bytes());
    assert!(received.status.success(), "{}", stderr(&received));
    assert_eq!(received.stdout, b"first");
    assert_eq!(finish(sender).stdout, b"reply");

    let (sender, code, _) = start_send(&server, &[], b"second");
    let mut receiving = server.command(&["receive"]);
    receiving.env("WORMHOLE_SYNC_CODE", &code);
    let received = run(receiving, b"");
    assert!(received.status.success(), "{}", stderr(&received));
    assert_eq!(received.stdout, b"second");
    assert!(finish(sender).status.success());

    // A chosen code from standard input on both sides.
    let chosen = format!("{}-{}-{}", 77, word_list(0)[3], word_list(1)[5]);
    let mut sending = server.command(&["send", "--code", "-", "chosen data"]);
    sending.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut sending = sending.spawn().unwrap();
    sending.stdin.take().unwrap().write_all(format!("{chosen}\n").as_bytes()).unwrap();
    let received = run(server.command(&["receive", "--code", "-"]), format!("{chosen}\n").as_bytes());
    assert!(received.status.success(), "{}", stderr(&received));
    assert_eq!(received.stdout, b"chosen data");
    assert!(sending.wait_with_output().unwrap().status.success());
}

/// `resume` reads a regular file of at most a saved exchange's size: a FIFO
/// or a huge file is refused at once instead of hanging or filling memory.
#[test]
fn resume_refuses_what_is_not_a_saved_state_at_once() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let huge = dir.path().join("huge");
    std::fs::File::create(&huge).unwrap().set_len(1 << 30).unwrap(); // sparse: 1 GiB
    for (path, why) in [(&fifo, "not a regular file"), (&huge, "larger than any saved exchange")] {
        let started = Instant::now();
        let refused = run(server.command(&["resume", &path.display().to_string()]), b"");
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
        assert!(stderr(&refused).contains(why), "{}", stderr(&refused));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    let dev = run(server.command(&["resume", "/dev/zero"]), b"");
    assert!(stderr(&dev).contains("not a regular file"), "{}", stderr(&dev));
}

/// Data shown on a terminal cannot drive it: control characters are shown
/// escaped, with a note on how to get the exact bytes.
#[test]
fn escape_sequences_in_received_data_are_shown_escaped_on_a_terminal() {
    let server = Server::start();
    let (sender, code, _) = start_send(&server, &[], b"\x1b]0;pwned\x07 hello\n");
    let mut session = pty(&server, &["receive", &code, "--quiet"]);
    expect(&mut session, r"\\u\{1b\}\]0;pwned\\u\{7\} hello");
    expect(&mut session, "use --output FILE");
    assert_eq!(exit_code(&mut session), Some(0));
    assert!(finish(sender).status.success());
}
