//! The settings file, where a person sets their server once: below the
//! command line and the environment variables, above the defaults.
//!
//! ```toml
//! # ~/.config/wormhole-sync/config.toml
//! rendezvous = "http://rendezvous.example:4000"
//! magic-wormhole-rendezvous = "ws://relay.example:4000/v1"
//! appid = "example.com/family"
//! ca-cert = "/etc/ssl/private-ca.pem"
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::exit::Failure;

/// Names another settings file than the one in the platform's folder.
pub const PATH_VARIABLE: &str = "WORMHOLE_SYNC_CONFIG";

/// Longest settings file read: a few lines are expected.
const MAX_LEN: u64 = 64 * 1024;

/// What the settings file may set; every key is optional, and an unknown
/// one (a typo, most likely) is refused rather than ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// The wormhole-sync server both sides use.
    pub rendezvous: Option<String>,
    /// The mailbox server, with `--magic-wormhole`.
    pub magic_wormhole_rendezvous: Option<String>,
    /// The application id (not with `--magic-wormhole`, whose default is the
    /// `wormhole` command's).
    pub appid: Option<String>,
    /// A CA certificate (PEM) to trust alone for an HTTPS server.
    pub ca_cert: Option<PathBuf>,
    /// Where these settings were read from; `None`: no file.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Settings {
    /// Where the settings file is: `WORMHOLE_SYNC_CONFIG`, else
    /// `wormhole-sync/config.toml` in the platform's configuration folder
    /// (`$XDG_CONFIG_HOME` or `~/.config` on Linux, `~/Library/Application
    /// Support` on macOS).
    pub fn path() -> Option<PathBuf> {
        match std::env::var_os(PATH_VARIABLE) {
            Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
            _ => dirs::config_dir().map(|dir| dir.join("wormhole-sync").join("config.toml")),
        }
    }

    /// The settings, or none if there is no file (a file named by
    /// `WORMHOLE_SYNC_CONFIG` must exist). A file that cannot be read or
    /// parsed is a usage error naming it.
    pub fn load() -> Result<Settings, Failure> {
        let named = std::env::var_os(PATH_VARIABLE).is_some_and(|p| !p.is_empty());
        match Settings::path() {
            Some(path) if named || path.exists() => Settings::read(&path),
            _ => Ok(Settings::default()),
        }
    }

    fn read(path: &Path) -> Result<Settings, Failure> {
        let refused = |why: String| Failure::usage(format!("the settings file {}: {why}", path.display()));
        let file = std::fs::File::open(path).map_err(|e| refused(e.to_string()))?;
        let mut text = String::new();
        file.take(MAX_LEN + 1).read_to_string(&mut text).map_err(|e| refused(e.to_string()))?;
        if text.len() as u64 > MAX_LEN {
            return Err(refused(format!("it is larger than {MAX_LEN} bytes")));
        }
        let mut settings = Settings::parse(&text).map_err(refused)?;
        settings.source = Some(path.to_path_buf());
        Ok(settings)
    }

    /// The settings in `text`, or why they cannot be used.
    pub fn parse(text: &str) -> Result<Settings, String> {
        toml::from_str(text).map_err(|e: toml::de::Error| e.to_string().trim_end().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_reads_and_a_typo_is_refused() {
        let settings = Settings::parse(
            "rendezvous = \"http://a:4000\"\nmagic-wormhole-rendezvous = \"ws://b/v1\"\nappid = \"x\"\nca-cert = \"/c.pem\"\n",
        )
        .unwrap();
        assert_eq!(settings.rendezvous.as_deref(), Some("http://a:4000"));
        assert_eq!(settings.magic_wormhole_rendezvous.as_deref(), Some("ws://b/v1"));
        assert_eq!(settings.appid.as_deref(), Some("x"));
        assert_eq!(settings.ca_cert, Some(PathBuf::from("/c.pem")));
        assert!(Settings::parse("").unwrap().rendezvous.is_none());
        let typo = Settings::parse("rendevous = \"http://a:4000\"").unwrap_err();
        assert!(typo.contains("unknown field") && typo.contains("rendevous"), "{typo}");
        assert!(Settings::parse("rendezvous = 4000").is_err());
        assert!(Settings::parse("rendezvous = \"unterminated").is_err());
    }
}
