//! JSON whose every byte is printable ASCII: anything else inside a string
//! (an application id in another script, DEL) is written as a `\uXXXX`
//! escape, so saved state survives channels that mangle other bytes and
//! never carries raw control characters.

use std::io;

use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};

struct AsciiFormatter;

impl Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        // serde_json escapes quotes, backslashes and C0 controls itself before
        // calling this; everything else outside ' '..='~' is escaped here.
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                writer.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// `value` as JSON made of printable ASCII only.
pub(crate) fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut serializer = Serializer::with_formatter(&mut out, AsciiFormatter);
    value.serialize(&mut serializer).expect("serializing to memory cannot fail for these types");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_everything_outside_printable_ascii_and_round_trips() {
        let text = "app \u{e9}\u{1f600}\u{7f}\u{1}\"\\";
        let json = super::to_vec(&text);
        assert!(json.iter().all(|b| (b' '..=b'~').contains(b)), "{}", String::from_utf8_lossy(&json));
        assert_eq!(String::from_utf8(json.clone()).unwrap(), r#""app \u00e9\ud83d\ude00\u007f\u0001\"\\""#);
        assert_eq!(serde_json::from_slice::<String>(&json).unwrap(), text);
    }
}
