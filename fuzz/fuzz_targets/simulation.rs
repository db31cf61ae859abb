//! Whole exchanges under simulated faults, with fuzzer-chosen seeds: every
//! run must end correctly (see `wormhole_sync_core::sim::check`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wormhole_sync_core::sim::{check, run, Scenario};

fuzz_target!(|seed: u64| {
    let scenario = Scenario::from_seed(seed);
    let report = run(&scenario);
    if let Err(why) = check(&scenario, &report) {
        panic!("seed {seed}: {why}");
    }
});
