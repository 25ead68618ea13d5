//! TLS to PostgreSQL, chosen by the URL's `sslmode` as libpq reads it, with rustls:
//!
//! - absent or `disable`: no TLS (what this backend has always done);
//! - `prefer`, `require`: encrypted, the server's certificate not checked (libpq's meaning when no
//!   root certificate is given); `prefer` falls back to plain text when the server offers no TLS;
//! - `verify-ca`: the certificate must chain to a trusted root;
//! - `verify-full`: that, and name the host connected to.
//!
//! The trusted roots are `sslrootcert=FILE` (PEM) when given, otherwise the system's.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// How a connection is secured, from the URL's `sslmode` and `sslrootcert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS part of a PostgreSQL URL, taken out of it (tokio-postgres knows neither `verify-*` nor
/// `sslrootcert`).
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    mode: Mode,
    root_cert: Option<PathBuf>,
}

impl Tls {
    /// Splits `sslmode` and `sslrootcert` off a URL's query: the URL without them, and the TLS.
    pub(crate) fn split(url: &str) -> Result<(String, Self), StoreError> {
        let mut tls = Self { mode: Mode::Disable, root_cert: None };
        let Some((base, query)) = url.split_once('?') else { return Ok((url.to_owned(), tls)) };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("sslmode", mode)) => {
                    tls.mode = match mode {
                        "disable" => Mode::Disable,
                        "prefer" => Mode::Prefer,
                        "require" => Mode::Require,
                        "verify-ca" => Mode::VerifyCa,
                        "verify-full" => Mode::VerifyFull,
                        other => {
                            return Err(StoreError::UnsupportedUrl(format!(
                                "sslmode `{other}`: use disable, prefer, require, verify-ca or verify-full"
                            )));
                        }
                    };
                }
                Some(("sslrootcert", path)) => tls.root_cert = Some(PathBuf::from(percent_decoded(path))),
                _ => kept.push(pair),
            }
        }
        let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        Ok((url, tls))
    }

    /// What tokio-postgres asks the server for.
    pub(crate) fn ssl_mode(&self) -> SslMode {
        match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }

    /// The connector every connection of the store uses (tokio-postgres calls it only when the
    /// mode asks for TLS).
    pub(crate) fn connector(&self) -> Result<Connector, StoreError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            Mode::Disable | Mode::Prefer | Mode::Require => {
                Arc::new(Unchecked(provider.signature_verification_algorithms))
            }
            Mode::VerifyCa | Mode::VerifyFull => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|error| StoreError::Postgres(format!("TLS roots: {error}")))?;
                if self.mode == Mode::VerifyCa { Arc::new(AnyName(webpki)) } else { webpki }
            }
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| StoreError::Postgres(format!("TLS versions: {error}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Connector(MakeRustlsConnect::new(config)))
    }

    fn roots(&self) -> Result<RootCertStore, StoreError> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let certificates = CertificateDer::pem_file_iter(path)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|error| StoreError::Postgres(format!("sslrootcert {}: {error}", path.display())))?;
                roots.add_parsable_certificates(certificates);
            }
            None => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        if roots.is_empty() {
            return Err(StoreError::Postgres(
                "sslmode verify-ca/verify-full: no trusted root certificate (set sslrootcert=FILE)".to_owned(),
            ));
        }
        Ok(roots)
    }
}

/// What every connection of the store connects with; TLS only when the mode asks for it.
#[derive(Clone)]
pub(crate) struct Connector(pub(crate) MakeRustlsConnect);

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector(rustls)")
    }
}

/// `%2F` → `/`: a path in a URL's query may be percent-encoded.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(byte) = text.get(index + 1..index + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            decoded.push(byte);
            index += 3;
            continue;
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// `require`: encryption against eavesdropping, as libpq gives it, without knowing whom the
/// certificate belongs to. The handshake's signatures are still checked.
#[derive(Debug)]
struct Unchecked(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain is checked, the name is not.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_the_url() {
        let (url, tls) = Tls::split(
            "postgres://u:p@db:5432/ledger?connect_timeout=5&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(url, "postgres://u:p@db:5432/ledger?connect_timeout=5");
        assert_eq!((tls.mode, tls.root_cert), (Mode::VerifyFull, Some(PathBuf::from("/etc/ca.pem"))));
        let (url, tls) = Tls::split("postgres://db/ledger").unwrap();
        assert_eq!((url.as_str(), tls.mode), ("postgres://db/ledger", Mode::Disable));
        assert_eq!(Tls::split("postgres://db/ledger?sslmode=require").unwrap().1.ssl_mode(), SslMode::Require);
        assert!(Tls::split("postgres://db/ledger?sslmode=allow-anything").is_err());
    }
}
