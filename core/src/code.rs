//! Invitation codes: `<channel-id>-<word>-<word>…`, e.g. `7-guitarist-revenge`.
//!
//! The channel id is public (the server allocated it); the words are the
//! secret. The whole canonical code is the PAKE password, so both sides must
//! hold the same code, but the way a person typed it (case, spaces, leading
//! zeros, spaces instead of dashes) does not matter.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::words::{EVEN_WORDS, ODD_WORDS};

/// Longest code text accepted before parsing, so a pasted novel is refused cheaply.
pub const MAX_CODE_LEN: usize = 512;
/// Most words a code may have.
pub const MAX_CODE_WORDS: usize = 16;
/// Longest single word.
pub const MAX_WORD_LEN: usize = 32;
/// Largest channel id (nine digits).
pub const MAX_CHANNEL_ID: u32 = 999_999_999;

/// A channel id: a small positive integer, scoped to an application id.
///
/// ```
/// use wormhole_sync_core::ChannelId;
///
/// let id = ChannelId::new(7).unwrap();
/// assert_eq!(id.get(), 7);
/// assert!(ChannelId::new(0).is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct ChannelId(u32);

impl ChannelId {
    /// A channel id, if `id` is in `1..=MAX_CHANNEL_ID`.
    pub fn new(id: u32) -> Option<ChannelId> {
        (1..=MAX_CHANNEL_ID).contains(&id).then_some(ChannelId(id))
    }

    /// The number itself.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for ChannelId {
    type Error = CodeError;

    fn try_from(id: u32) -> Result<Self, CodeError> {
        ChannelId::new(id).ok_or(CodeError::InvalidChannel)
    }
}

impl From<ChannelId> for u32 {
    fn from(id: ChannelId) -> u32 {
        id.0
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a typed code was refused. Messages never repeat the secret words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CodeError {
    /// Nothing but spaces.
    #[error("the code is empty")]
    Empty,
    /// More than [`MAX_CODE_LEN`] bytes.
    #[error("the code is too long")]
    TooLong,
    /// The code does not start with a channel number.
    #[error("the code must start with the channel number, like 7-guitarist-revenge")]
    MissingChannel,
    /// The channel number is zero or has more than nine digits.
    #[error("the channel number must be between 1 and 999999999")]
    InvalidChannel,
    /// Only a channel number, no secret words.
    #[error("the code has no words after the channel number")]
    MissingWords,
    /// The code ends with a separator, as if a word were still missing.
    #[error("the code ends with a dash: is a word missing?")]
    TrailingSeparator,
    /// More than [`MAX_CODE_WORDS`] words.
    #[error("the code has too many words")]
    TooManyWords,
    /// A word is empty, too long, or has characters other than letters and digits.
    #[error("word {position} of the code is not a plain word of letters and digits")]
    InvalidWord {
        /// 1-based position of the word.
        position: usize,
    },
    /// A word is not from the list allocated codes take that word from: a
    /// typo, most likely, which would spend the code's one guess (see
    /// [`Builder::check_words`](crate::builder::Builder::check_words)).
    #[error("word {position} of the code is not one of the words codes are made of: check it for a typo")]
    UnlistedWord {
        /// 1-based position of the word.
        position: usize,
    },
}

/// An invitation code: a channel id plus secret words.
///
/// `Display` renders the canonical form to show a person; `Debug` hides the
/// words so a code never leaks into logs by accident.
///
/// ```
/// use wormhole_sync_core::Code;
///
/// let code: Code = "  7-Guitarist REVENGE ".parse().unwrap();
/// assert_eq!(code.to_string(), "7-guitarist-revenge");
/// assert_eq!(code.channel().get(), 7);
/// assert!(!format!("{code:?}").contains("guitarist"));
/// assert!("guitarist-revenge".parse::<Code>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Code {
    channel: ChannelId,
    words: Vec<String>,
}

impl Code {
    /// A code from a channel id and words (validated and lower-cased).
    ///
    /// Use this when an application chooses its own code; both sides then
    /// type the same code.
    pub fn new(channel: ChannelId, words: &[&str]) -> Result<Code, CodeError> {
        if words.is_empty() {
            return Err(CodeError::MissingWords);
        }
        if words.len() > MAX_CODE_WORDS {
            return Err(CodeError::TooManyWords);
        }
        let words = words
            .iter()
            .enumerate()
            .map(|(i, w)| normalize_word(w).ok_or(CodeError::InvalidWord { position: i + 1 }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Code { channel, words })
    }

    /// A code for `channel` whose words come from `entropy`, one byte per word,
    /// alternating between the PGP odd and even lists.
    pub(crate) fn from_entropy(channel: ChannelId, entropy: &[u8]) -> Code {
        let words = entropy.iter().enumerate().map(|(i, &b)| word_list(i)[usize::from(b)].to_string()).collect();
        Code { channel, words }
    }

    /// The channel this code names.
    pub fn channel(&self) -> ChannelId {
        self.channel
    }

    /// The secret words, lower-case.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The position (from 0) of the first word that is not in the list an
    /// allocated code takes that position's word from ([`word_list`]): a
    /// typo to catch before any request. `None` if every word is listed
    /// (codes the application chose may use other words).
    ///
    /// ```
    /// use wormhole_sync_core::Code;
    ///
    /// assert_eq!("7-guitarist-revenge".parse::<Code>()?.unlisted_word(), None);
    /// assert_eq!("7-guitarst-revenge".parse::<Code>()?.unlisted_word(), Some(0));
    /// assert_eq!("7-revenge-guitarist".parse::<Code>()?.unlisted_word(), Some(0), "lists alternate");
    /// # Ok::<(), wormhole_sync_core::CodeError>(())
    /// ```
    pub fn unlisted_word(&self) -> Option<usize> {
        self.words.iter().enumerate().position(|(i, w)| !word_list(i).contains(&w.as_str()))
    }
}

/// A code as the builders take it: text a person typed (`&str`,
/// `String`), or a [`Code`] already parsed (an initiator's `get_code()`,
/// say). `Debug` never shows it.
///
/// ```
/// use wormhole_sync_core::{Code, CodeInput};
///
/// let typed: CodeInput = "7-guitarist-revenge".into();
/// let parsed: Code = "7-guitarist-revenge".parse()?;
/// assert_eq!(typed.parse()?, CodeInput::from(&parsed).parse()?);
/// # Ok::<(), wormhole_sync_core::CodeError>(())
/// ```
#[derive(Clone)]
pub struct CodeInput(CodeInputRepr);

#[derive(Clone)]
enum CodeInputRepr {
    Typed(String),
    Parsed(Code),
}

impl CodeInput {
    /// The code, parsed if it was typed.
    pub fn parse(self) -> Result<Code, CodeError> {
        match self.0 {
            CodeInputRepr::Typed(text) => text.parse(),
            CodeInputRepr::Parsed(code) => Ok(code),
        }
    }
}

impl From<&str> for CodeInput {
    fn from(text: &str) -> CodeInput {
        CodeInput(CodeInputRepr::Typed(text.to_string()))
    }
}

impl From<String> for CodeInput {
    fn from(text: String) -> CodeInput {
        CodeInput(CodeInputRepr::Typed(text))
    }
}

impl From<&String> for CodeInput {
    fn from(text: &String) -> CodeInput {
        CodeInput::from(text.as_str())
    }
}

impl From<Code> for CodeInput {
    fn from(code: Code) -> CodeInput {
        CodeInput(CodeInputRepr::Parsed(code))
    }
}

impl From<&Code> for CodeInput {
    fn from(code: &Code) -> CodeInput {
        CodeInput::from(code.clone())
    }
}

impl fmt::Debug for CodeInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeInput(<secret>)")
    }
}

/// The words an allocated code takes its word at `position` (from 0) from:
/// the PGP lists, alternating, so a swapped or dropped word lands in the
/// wrong list. For completing a code as a person types it.
pub fn word_list(position: usize) -> &'static [&'static str; 256] {
    if position % 2 == 0 {
        &ODD_WORDS
    } else {
        &EVEN_WORDS
    }
}

fn normalize_word(word: &str) -> Option<String> {
    let ok = !word.is_empty() && word.len() <= MAX_WORD_LEN && word.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then(|| word.to_ascii_lowercase())
}

impl FromStr for Code {
    type Err = CodeError;

    /// Parses a typed code (PROTOCOL.md 3.1): at most 512 bytes as typed;
    /// surrounding white space is ignored, and so are letter case and leading
    /// zeros in the number; inside, any run of `-` and white space separates
    /// two parts. It must start with the number and end with a word.
    fn from_str(text: &str) -> Result<Code, CodeError> {
        if text.len() > MAX_CODE_LEN {
            return Err(CodeError::TooLong);
        }
        let text = text.trim();
        let is_separator = |c: char| c == '-' || c.is_whitespace();
        if text.is_empty() {
            return Err(CodeError::Empty);
        }
        let mut parts = text.split(is_separator).filter(|p| !p.is_empty());
        let first = parts.next().ok_or(CodeError::MissingChannel)?;
        if !text.starts_with(|c: char| c.is_ascii_digit()) || !first.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodeError::MissingChannel);
        }
        let digits = first.trim_start_matches('0');
        if digits.len() > 9 {
            return Err(CodeError::InvalidChannel);
        }
        let number: u32 = digits.parse().unwrap_or(0);
        let channel = ChannelId::new(number).ok_or(CodeError::InvalidChannel)?;
        let words: Vec<&str> = parts.take(MAX_CODE_WORDS + 1).collect();
        let code = Code::new(channel, &words)?;
        if text.ends_with(is_separator) {
            return Err(CodeError::TrailingSeparator);
        }
        Ok(code)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.channel)?;
        for word in &self.words {
            write!(f, "-{word}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Code")
            .field("channel", &self.channel)
            .field("words", &format_args!("<{} words redacted>", self.words.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_example_code() {
        let code: Code = "7-guitarist-revenge".parse().unwrap();
        assert_eq!(code.channel().get(), 7);
        assert_eq!(code.words(), ["guitarist", "revenge"]);
    }

    #[test]
    fn tolerates_what_people_type() {
        for typed in [
            "7-guitarist-revenge",
            " 7-Guitarist-Revenge\n",
            "007-GUITARIST-REVENGE",
            "7 guitarist revenge",
            "7--guitarist-revenge",
            "7 - guitarist - revenge",
            "\u{3000}7\tguitarist\u{a0}revenge\r\n",
        ] {
            let code: Code = typed.parse().unwrap();
            assert_eq!(code.to_string(), "7-guitarist-revenge", "typed {typed:?}");
        }
    }

    #[test]
    fn rejects_bad_codes_with_clear_errors() {
        let cases = [
            ("", CodeError::Empty),
            ("   ", CodeError::Empty),
            ("guitarist-revenge", CodeError::MissingChannel),
            ("7", CodeError::MissingWords),
            ("7-", CodeError::MissingWords),
            ("0-guitarist", CodeError::InvalidChannel),
            ("1234567890-guitarist", CodeError::InvalidChannel),
            ("99999999999999999999999-a", CodeError::InvalidChannel),
            ("7-gui_tarist", CodeError::InvalidWord { position: 1 }),
            ("7-a-é", CodeError::InvalidWord { position: 2 }),
            ("-7x-a", CodeError::MissingChannel),
            ("-7-a", CodeError::MissingChannel),
            (" - 7-a", CodeError::MissingChannel),
            ("7-a-", CodeError::TrailingSeparator),
            ("7 a - ", CodeError::TrailingSeparator),
            ("7x-a", CodeError::MissingChannel),
            ("\u{0663}-a", CodeError::MissingChannel),
        ];
        for (typed, expected) in cases {
            assert_eq!(typed.parse::<Code>(), Err(expected.clone()), "typed {typed:?}");
        }
        let long = format!("7-{}", "a".repeat(MAX_CODE_LEN));
        assert_eq!(long.parse::<Code>(), Err(CodeError::TooLong));
        // The limit is on the text as typed, white space included.
        let padded = format!("7-a{}", " ".repeat(MAX_CODE_LEN));
        assert_eq!(padded.parse::<Code>(), Err(CodeError::TooLong));
        let many = format!("7{}", "-a".repeat(MAX_CODE_WORDS + 1));
        assert_eq!(many.parse::<Code>(), Err(CodeError::TooManyWords));
        let long_word = format!("7-{}", "a".repeat(MAX_WORD_LEN + 1));
        assert_eq!(long_word.parse::<Code>(), Err(CodeError::InvalidWord { position: 1 }));
    }

    #[test]
    fn errors_never_repeat_the_words() {
        let err = "7-secretword-ü".parse::<Code>().unwrap_err();
        assert!(!err.to_string().contains("secretword"));
    }

    #[test]
    fn generated_words_alternate_lists() {
        let code = Code::from_entropy(ChannelId::new(7).unwrap(), &[0x69, 0xA9, 0x00]);
        assert_eq!(code.to_string(), "7-guitarist-revenge-adroitness");
    }

    proptest! {
        #[test]
        fn generated_codes_round_trip(channel in 1..=MAX_CHANNEL_ID, entropy in proptest::collection::vec(any::<u8>(), 1..=MAX_CODE_WORDS)) {
            let code = Code::from_entropy(ChannelId::new(channel).unwrap(), &entropy);
            let text = code.to_string();
            prop_assert_eq!(text.parse::<Code>(), Ok(code.clone()));
            prop_assert_eq!(text.to_uppercase().parse::<Code>(), Ok(code.clone()));
            prop_assert_eq!(format!(" {} ", text.replace('-', " ")).parse::<Code>(), Ok(code));
        }

        #[test]
        fn parsing_never_panics_and_is_canonical(text in "\\PC{0,80}") {
            if let Ok(code) = text.parse::<Code>() {
                // The canonical form parses back to the same code.
                prop_assert_eq!(code.to_string().parse::<Code>(), Ok(code));
            }
        }
    }
}
