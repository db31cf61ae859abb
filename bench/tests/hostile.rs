//! The hostile clients, bounded: against the server with its defaults for
//! the open internet, honest exchanges beside idle, slow and never-reading
//! connections, floods, guessers and the largest messages all complete, in
//! time, with the right data, and the server's memory stays bounded.

use std::process::Command;

#[test]
fn honest_exchanges_complete_beside_every_kind_of_attacker() {
    let output = Command::new(env!("CARGO_BIN_EXE_wormhole-sync-hostile"))
        .args(["--seconds", "8", "--storage", "memory", "--idle", "800", "--slow", "100", "--never-read", "50"])
        .args(["--flooders", "4", "--guessers", "4", "--big-posters", "4", "--max-rss-mib", "512"])
        .args(["--max-latency-ms", "3000"])
        .output()
        .expect("the hostile tool runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}\n{}", String::from_utf8_lossy(&output.stderr));
    let untouched = text.lines().find(|l| l.starts_with("honest exchanges on \"untouched\"")).expect("a report");
    let (done, of) = untouched
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split(" completed").next())
        .and_then(|counts| counts.split_once(" of "))
        .expect("counts");
    assert_eq!(done, of, "{untouched}");
    assert!(done.parse::<u32>().expect("a count") >= 3, "too few honest exchanges to tell: {untouched}");
    // The attackers met the server's limits, not an open door: the flood its
    // rate limit or, sooner on a slow machine, its cap on one client's channels.
    assert!(text.contains("429 rate-limited") || text.contains("allocate 429 too-many-client-channels"), "{text}");
    assert!(text.contains("post 429 over-budget") || text.contains("post ok"), "{text}");
}
