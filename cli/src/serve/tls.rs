//! HTTPS for `serve`: a listener that completes each TLS handshake (rustls, ring provider) before
//! handing the connection to the HTTP server. The certificate chain and key are read from PEM
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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
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

/// Accepts TCP connections and yields them once their TLS handshake is done. Handshakes run
/// concurrently, so a slow client never holds up the others.
#[derive(Debug)]
pub struct TlsListener {
    connections: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TlsListener {
    /// Loads the certificate (failing if it cannot be used) and starts accepting. The SIGHUP
    /// handler is in place when this returns.
    pub fn start(listener: TcpListener, files: TlsFiles) -> anyhow::Result<Self> {
        let config = Arc::new(RwLock::new(files.load()?));
        let hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("listening for SIGHUP")?;
        let local = listener.local_addr()?;
        let (sender, connections) = mpsc::channel(64);
        let tasks =
            vec![tokio::spawn(accept(listener, config.clone(), sender)), tokio::spawn(reload(files, config, hangup))];
        Ok(Self { connections, local, tasks })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accepting task is gone only when the listener is being dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept(
    listener: TcpListener,
    config: Arc<RwLock<Arc<ServerConfig>>>,
    handshaken: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(connection) => connection,
            Err(error) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let current = config.read().map_or_else(|poisoned| poisoned.into_inner().clone(), |config| config.clone());
        let acceptor = TlsAcceptor::from(current);
        let handshaken = handshaken.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let _ = handshaken.send((stream, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
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
