//! The load generator runs end to end against the server it starts, and its
//! figures come from real traffic: eight HTTP requests per exchange.

use std::process::Command;

fn bench(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_wormhole-sync-bench")).args(args).output().expect("the bench runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{text}\n{}", String::from_utf8_lossy(&output.stderr));
    text
}

#[test]
fn both_transports_report_eight_requests_per_exchange() {
    let text = bench(&["--sequential", "5", "--in-flight", "4", "--seconds", "1", "--waiting", "0"]);
    for transport in ["Ureq", "Tokio"] {
        assert!(text.contains(&format!("## memory storage, {transport} client")), "{text}");
    }
    let sequential: Vec<&str> = text.lines().filter(|l| l.starts_with("sequential: 5 exchanges")).collect();
    assert_eq!(sequential.len(), 2, "{text}");
    for line in sequential {
        assert!(line.ends_with("; 8.0 HTTP requests per exchange"), "{line}");
    }
    let throughput: Vec<&str> = text.lines().filter(|l| l.starts_with("throughput, 4 in flight")).collect();
    assert_eq!(throughput.len(), 2, "{text}");
    for line in throughput {
        assert!(line.contains(" 0 failed)") && line.contains("server CPU"), "{line}");
    }
}

#[test]
fn waiting_clients_are_measured_on_sqlite() {
    let text = bench(&[
        "--storage",
        "sqlite",
        "--transport",
        "tokio",
        "--sequential",
        "0",
        "--in-flight",
        "0",
        "--waiting",
        "20",
        "--idle-seconds",
        "1",
        "--settle-seconds",
        "0",
    ]);
    let line = text.lines().find(|l| l.starts_with("waiting, 20 initiators")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("KiB per waiting client"), "{line}");
}
