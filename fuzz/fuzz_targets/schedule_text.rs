//! Schedules as people type them (`0:500ms,5m:60s`): parsing never panics,
//! and an accepted schedule's written form reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wormhole_sync_core::{parse_duration, Schedule};

fuzz_target!(|text: &str| {
    let _ = parse_duration(text);
    if let Ok(schedule) = text.parse::<Schedule>() {
        let written = schedule.to_string();
        assert_eq!(written.parse::<Schedule>().as_ref(), Ok(&schedule), "{written}");
    }
});
