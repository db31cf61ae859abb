//! Server side: any request body for any route parses or gets a typed error,
//! and whatever parses is handled by the rendezvous without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig};
use wormhole_sync_core::wire::{Request, Route};
use wormhole_sync_core::Timestamp;

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else { return };
    let route = Route::ALL[usize::from(selector) % Route::ALL.len()];
    match Request::parse(route, body) {
        Ok(request) => {
            assert_eq!(Request::parse(route, &request.to_json()).as_ref(), Ok(&request));
            let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
            let now = Timestamp::from_millis(1);
            let _ = server.handle(now, &request);
            let _ = server.handle(now, &request);
        }
        Err(error) => assert!((400..600).contains(&error.http_status())),
    }
});
