//! Typed codes: parsing never panics, and an accepted code's canonical form
//! parses back to the same code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wormhole_sync_core::Code;

fuzz_target!(|text: &str| {
    if let Ok(code) = text.parse::<Code>() {
        let canonical = code.to_string();
        assert_eq!(canonical.parse::<Code>().as_ref(), Ok(&code));
        assert!(!format!("{code:?}").contains(&canonical), "Debug must hide the code");
    }
});
