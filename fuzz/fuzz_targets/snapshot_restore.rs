//! Rendezvous snapshots: arbitrary bytes restore or give a clear error;
//! a restored rendezvous snapshots to the same state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousSnapshot};

fuzz_target!(|bytes: &[u8]| {
    let Ok(snapshot) = RendezvousSnapshot::from_json(bytes) else { return };
    if let Ok(rendezvous) = Rendezvous::restore(Default::default(), snapshot, [0; 32]) {
        let again = Rendezvous::restore(Default::default(), rendezvous.snapshot(), [0; 32]).expect("own snapshot restores");
        assert_eq!(again.snapshot(), rendezvous.snapshot());
    }
});
