//! Fuzz targets with invariants for the server (feature `fuzzing`): each
//! reads the fuzzer's bytes with `arbitrary`, runs them through the
//! server's own code and panics with the rule that broke. The `fuzz/`
//! crate's targets call them; this crate's tests replay the committed
//! corpus and every input that once failed.
//!
//! ```
//! // Any bytes are a valid input.
//! wormhole_sync_server::fuzzing::http_requests::run(b"\x01\x00\x02POST");
//! wormhole_sync_server::fuzzing::sqlite_file::run(b"\x01\x10\x00\x07");
//! wormhole_sync_server::fuzzing::notification::run(br#"["app","abc"]"#);
//! ```

pub mod http_requests;
pub mod notification;
pub mod sqlite_file;
