//! Where the database is and how to reach it: the `--postgres` URL, read by
//! tokio-postgres, with the TLS settings libpq users know.
//!
//! `sslmode=require` (or `verify-ca`, `verify-full`) encrypts every
//! connection with rustls and verifies the database's certificate: a chain
//! to a trusted root and the host name the URL gives. The trusted roots are
//! the ones built into the server (Mozilla's, from webpki-roots) or, with
//! `sslrootcert=/path/ca.pem`, only the certificates in that file (a
//! private CA's, or a cloud provider's bundle). An encrypted connection
//! that is not verified would protect against nothing that can also
//! intercept, so `require` verifies too, and `prefer` and `allow` (which
//! fall back to plain TCP without a word) are refused. Without `sslmode`,
//! connections are plain TCP.

use std::path::PathBuf;
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::TlsStream;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::StorageError;

/// How to connect to the database: tokio-postgres's settings and the TLS
/// connector they use when `sslmode` asks for TLS.
#[derive(Clone)]
pub(crate) struct Connector {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: MakeRustlsConnect,
}

impl Connector {
    /// Reads a `postgres://` URL (or tokio-postgres's `key=value` form, where
    /// only its own options are understood). The error never repeats the
    /// URL, which may hold a password.
    pub(super) fn parse(url: &str) -> Result<Connector, StorageError> {
        let settings = TlsSettings::take_from(url)?;
        let mut config: tokio_postgres::Config =
            settings.url.parse().map_err(|e| StorageError::caused("invalid PostgreSQL URL", e))?;
        // tokio-postgres's default is `prefer`, which with a TLS connector
        // would try TLS whenever the database offers it.
        config.ssl_mode(if settings.require { SslMode::Require } else { SslMode::Disable });
        let roots = match &settings.root_cert {
            Some(path) => read_roots(path)?,
            None => rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StorageError::caused("unusable TLS settings", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Connector { config, tls: MakeRustlsConnect::new(tls) })
    }

    /// Whether connections are encrypted.
    pub(super) fn encrypted(&self) -> bool {
        self.config.get_ssl_mode() == SslMode::Require
    }

    /// One connection, outside the pool: the caller drives the returned
    /// connection half.
    pub(super) async fn connect(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<tokio_postgres::Socket, impl TlsStream + Unpin + Send + 'static>,
        ),
        tokio_postgres::Error,
    > {
        self.config.connect(self.tls.clone()).await
    }
}

/// The TLS options of a URL, taken out of it (tokio-postgres knows neither
/// `sslrootcert` nor the `verify-*` modes).
#[derive(Debug, PartialEq)]
struct TlsSettings {
    /// The URL without the options taken.
    url: String,
    require: bool,
    root_cert: Option<PathBuf>,
}

impl TlsSettings {
    fn take_from(url: &str) -> Result<TlsSettings, StorageError> {
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let (Some((base, query)), true) = (url.split_once('?'), is_url) else {
            // The key=value form: tokio-postgres reads it all; its `sslmode`
            // knows `disable`, `prefer` and `require`.
            let require = url.parse::<tokio_postgres::Config>().is_ok_and(|c| c.get_ssl_mode() == SslMode::Require);
            return Ok(TlsSettings { url: url.to_string(), require, root_cert: None });
        };
        let mut kept = Vec::new();
        let mut require = false;
        let mut root_cert = None;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode_str(value).decode_utf8().map_err(|_| {
                StorageError::new(format!("the PostgreSQL URL's {key} is not UTF-8 once percent-decoded"))
            })?;
            match key {
                "sslmode" => {
                    require = match value.as_ref() {
                        "disable" => false,
                        "require" | "verify-ca" | "verify-full" => true,
                        "prefer" | "allow" => {
                            return Err(StorageError::new(format!(
                                "sslmode={value} would fall back to plain TCP without a word; use sslmode=require \
                                 (encrypted, the database's certificate verified) or sslmode=disable"
                            )));
                        }
                        _ => {
                            return Err(StorageError::new(
                                "unknown sslmode in the PostgreSQL URL (use disable, require, verify-ca or verify-full)",
                            ));
                        }
                    }
                }
                "sslrootcert" => root_cert = Some(PathBuf::from(value.as_ref())),
                _ => kept.push(pair),
            }
        }
        if root_cert.is_some() && !require {
            return Err(StorageError::new(
                "sslrootcert is given but sslmode does not ask for TLS (use sslmode=require)",
            ));
        }
        let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
        Ok(TlsSettings { url, require, root_cert })
    }
}

/// The certificates of a PEM file, as the only trusted roots.
fn read_roots(path: &PathBuf) -> Result<rustls::RootCertStore, StorageError> {
    let unreadable = |e: String| StorageError::new(format!("cannot read sslrootcert {}: {e}", path.display()));
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(path).and_then(|certs| certs.collect()).map_err(|e| unreadable(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(unreadable("no usable certificate in it".into()));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> TlsSettings {
        TlsSettings::take_from(url).unwrap()
    }

    #[test]
    fn tls_options_are_taken_out_of_the_url_and_the_rest_kept_as_written() {
        assert_eq!(
            settings(
                "postgres://u:p%40ss@db:5432/x?sslmode=verify-full&options=-c%20a%3Db&sslrootcert=%2Fetc%2Fca%20b.pem"
            ),
            TlsSettings {
                url: "postgres://u:p%40ss@db:5432/x?options=-c%20a%3Db".into(),
                require: true,
                root_cert: Some("/etc/ca b.pem".into()),
            }
        );
        assert_eq!(
            settings("postgresql://db/x?sslmode=require"),
            TlsSettings { url: "postgresql://db/x".into(), require: true, root_cert: None }
        );
        assert_eq!(
            settings("postgres://db/x?host=/run/postgresql"),
            TlsSettings { url: "postgres://db/x?host=/run/postgresql".into(), require: false, root_cert: None }
        );
        assert!(!settings("postgres://db/x").require);
        assert!(settings("host=db sslmode=require").require);
        assert!(!settings("host=db").require);
    }

    #[test]
    fn modes_that_fall_back_to_plain_tcp_and_unknown_modes_are_refused_without_the_password() {
        for mode in ["prefer", "allow", "bogus"] {
            let error = TlsSettings::take_from(&format!("postgres://u:secret@db/x?sslmode={mode}")).unwrap_err();
            assert!(error.to_string().contains("sslmode"), "{error}");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
        let error = TlsSettings::take_from("postgres://db/x?sslrootcert=/ca.pem").unwrap_err();
        assert!(error.to_string().contains("sslmode=require"), "{error}");
    }

    #[test]
    fn without_sslmode_connections_are_plain_even_where_tokio_postgres_would_try_tls() {
        let connector = Connector::parse("postgres://db/x").unwrap();
        assert!(!connector.encrypted());
        assert_eq!(connector.config.get_ssl_mode(), SslMode::Disable);
        assert!(Connector::parse("postgres://db/x?sslmode=verify-ca").unwrap().encrypted());
    }

    #[test]
    fn a_root_file_without_certificates_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let url = format!("postgres://db/x?sslmode=require&sslrootcert={}", path.display());
        let error = Connector::parse(&url).err().unwrap().to_string();
        assert!(error.contains("empty.pem") && error.contains("no usable certificate"), "{error}");
        let missing = Connector::parse("postgres://db/x?sslmode=require&sslrootcert=/nonexistent.pem").err().unwrap();
        assert!(missing.to_string().contains("/nonexistent.pem"), "{missing}");
    }
}
