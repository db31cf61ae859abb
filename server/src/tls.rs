//! HTTPS without a proxy: the certificate chain and key come from PEM
//! files, and are read again on demand (SIGHUP in the binaries) so a
//! renewed certificate is served without a restart.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The PEM files of the server's certificate chain and private key.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The TLS configuration in use; [`reload`](Self::reload) replaces it from
/// the files. Cheap to clone.
#[derive(Clone)]
pub struct TlsReloader {
    files: TlsFiles,
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
}

impl TlsReloader {
    pub(crate) fn load(files: TlsFiles) -> std::io::Result<TlsReloader> {
        let config = read(&files)?;
        Ok(TlsReloader { files, current: Arc::new(RwLock::new(config)) })
    }

    /// Reads the files again; on an error the configuration in use stays.
    pub fn reload(&self) -> std::io::Result<()> {
        let config = read(&self.files)?;
        *self.current.write() = config;
        Ok(())
    }

    /// The acceptor for the next connection.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().clone())
    }
}

fn read(files: &TlsFiles) -> std::io::Result<Arc<rustls::ServerConfig>> {
    let invalid = |what: &str, path: &PathBuf, e: String| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what} {}: {e}", path.display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| invalid("cannot read the certificates in", &files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid("no certificate in", &files.cert, "empty".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| invalid("cannot read the private key in", &files.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("unusable TLS settings for", &files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid("the key does not fit the certificate in", &files.cert, e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
