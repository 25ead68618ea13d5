//! HTTPS for `serve`: each connection's TLS handshake (rustls, ring provider), completed before
//! the connection is handed to the HTTP server. The certificate chain and key are read from PEM
//! files, and read again on SIGHUP or when either file changes; connections already open keep
//! the certificate they started with, new ones get the new one. A certificate that cannot be read
//! at start stops the server; one that cannot be read on reload is logged and the current one
//! stays.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A client that opens a connection and never finishes the handshake is dropped after this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the files are checked for a change (SIGHUP reloads at once).
const CHANGE_CHECK: Duration = Duration::from_secs(5);

/// The PEM files of the server's certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads and checks both files into a rustls configuration.
    fn load(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .with_context(|| format!("reading the certificate chain {}", self.cert.display()))?;
        anyhow::ensure!(!chain.is_empty(), "{} holds no PEM certificate", self.cert.display());
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .with_context(|| format!("reading the private key {}", self.key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .with_context(|| {
                format!("{} and {} do not make a certificate and its key", self.cert.display(), self.key.display())
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// When the files were last changed, to notice a renewal.
    fn modified(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let at = |path: &PathBuf| std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
        (at(&self.cert), at(&self.key))
    }
}

/// The server's current TLS configuration, read again on SIGHUP or when its files change.
#[derive(Debug)]
pub struct Tls {
    config: Arc<RwLock<Arc<ServerConfig>>>,
    reloading: tokio::task::JoinHandle<()>,
}

impl Tls {
    /// Loads the certificate (failing if it cannot be used) and starts watching its files. The
    /// SIGHUP handler is in place when this returns.
    pub fn start(files: TlsFiles) -> anyhow::Result<Self> {
        let config = Arc::new(RwLock::new(files.load()?));
        let hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("listening for SIGHUP")?;
        let reloading = tokio::spawn(reload(files, config.clone(), hangup));
        Ok(Self { config, reloading })
    }

    /// Completes a connection's TLS handshake with the current certificate; a client that does
    /// not finish it within [`HANDSHAKE_TIMEOUT`] is dropped.
    pub async fn handshake(&self, stream: TcpStream, peer: SocketAddr) -> Option<TlsStream<TcpStream>> {
        let current = self.config.read().map_or_else(|poisoned| poisoned.into_inner().clone(), |config| config.clone());
        let acceptor = TlsAcceptor::from(current);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                None
            }
        }
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        self.reloading.abort();
    }
}

async fn reload(files: TlsFiles, config: Arc<RwLock<Arc<ServerConfig>>>, mut hangup: tokio::signal::unix::Signal) {
    let mut seen = files.modified();
    let mut check = tokio::time::interval(CHANGE_CHECK);
    check.tick().await;
    loop {
        let reason = tokio::select! {
            _ = hangup.recv() => "SIGHUP",
            _ = check.tick() => {
                if files.modified() == seen {
                    continue;
                }
                "the files changed"
            }
        };
        seen = files.modified();
        match files.load() {
            Ok(loaded) => {
                match config.write() {
                    Ok(mut current) => *current = loaded,
                    Err(poisoned) => *poisoned.into_inner() = loaded,
                }
                tracing::info!(reason, cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(error) => {
                tracing::error!(
                    reason,
                    error = format!("{error:#}"),
                    "TLS certificate not reloaded: the current one stays"
                );
            }
        }
    }
}
