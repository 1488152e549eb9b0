//! TLS with rustls (ring provider, TLS 1.2 and 1.3 only, rustls' default suites):
//! server configurations for STARTTLS (RFC 6120 §5) and Direct TLS (XEP-0368, ALPN
//! `xmpp-client`), from configured PEM files or the local CA.

pub mod der;
pub mod export;
pub mod local_ca;
pub mod peer;

use crate::config::Config;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ServerConfig};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why TLS could not be set up.
#[derive(Debug)]
pub enum TlsError {
    Io(PathBuf, std::io::Error),
    NoCertificate(PathBuf),
    Key(PathBuf, String),
    Generate(String),
    Rustls(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            TlsError::NoCertificate(p) => write!(f, "{}: no PEM certificate found", p.display()),
            TlsError::Key(p, e) => write!(f, "{}: no usable PEM private key ({e})", p.display()),
            TlsError::Generate(e) => write!(f, "cannot create the local CA or certificate: {e}"),
            TlsError::Rustls(e) => write!(f, "the certificate and key do not make a TLS configuration: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// The server's TLS configurations and certificate.
pub struct TlsSetup {
    /// For STARTTLS on the client port.
    pub starttls: Arc<ServerConfig>,
    /// For Direct TLS (ALPN `xmpp-client`).
    pub direct: Arc<ServerConfig>,
    /// For the HTTPS listener (ALPN `http/1.1`).
    pub http: Arc<ServerConfig>,
    /// Server-to-server, accepting side: asks the peer for its certificate;
    /// STARTTLS, and Direct TLS with ALPN `xmpp-server` (XEP-0368).
    pub s2s_starttls: Arc<ServerConfig>,
    pub s2s_direct: Arc<ServerConfig>,
    /// Server-to-server, connecting side: presents our certificate (for SASL
    /// EXTERNAL); plain, and with ALPN `xmpp-server` for Direct TLS.
    pub s2s_client: Arc<ClientConfig>,
    pub s2s_client_direct: Arc<ClientConfig>,
    /// The end-entity certificate (for `tls-server-end-point` channel binding).
    pub end_entity: CertificateDer<'static>,
    /// Where the certificate came from.
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// The certificate and key files the configuration points at: `tls_cert`/`tls_key`,
/// else the local CA's server certificate (created when missing).
pub fn cert_paths(config: &Config) -> Result<(PathBuf, PathBuf, Option<local_ca::LocalCa>), TlsError> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Ok((cert.clone(), key.clone(), None)),
        _ => {
            let ca = local_ca::LocalCa::in_data_dir(&config.data_dir);
            ca.ensure(&config.domain)?;
            Ok((ca.server_cert.clone(), ca.server_key.clone(), Some(ca)))
        }
    }
}

/// Loads (or creates) the certificate and builds the TLS configurations.
pub fn load(config: &Config) -> Result<TlsSetup, TlsError> {
    let (cert_path, key_path, _) = cert_paths(config)?;
    let chain = read_chain(&cert_path)?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsError::Key(key_path.clone(), e.to_string()))?;
    let end_entity = chain.first().cloned().ok_or_else(|| TlsError::NoCertificate(cert_path.clone()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let build = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, TlsError> {
        let mut c = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(c))
    };
    let build_s2s = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, TlsError> {
        let mut c = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_client_cert_verifier(Arc::new(peer::AnyClientCert(Arc::clone(&provider))))
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(c))
    };
    let build_client = |alpn: &[&[u8]]| -> Result<Arc<ClientConfig>, TlsError> {
        let mut c = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(peer::AnyServerCert(Arc::clone(&provider))))
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(c))
    };
    Ok(TlsSetup {
        starttls: build(&[])?,
        direct: build(&[b"xmpp-client"])?,
        http: build(&[b"http/1.1"])?,
        s2s_starttls: build_s2s(&[])?,
        s2s_direct: build_s2s(&[b"xmpp-server"])?,
        s2s_client: build_client(&[])?,
        s2s_client_direct: build_client(&[b"xmpp-server"])?,
        end_entity,
        cert_path,
        key_path,
    })
}

/// Reads a PEM certificate chain (end entity first).
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| TlsError::Io(path.to_path_buf(), e))?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(chain)
}

/// The first certificate of a PEM text, as DER.
pub fn first_cert_der(pem: &[u8]) -> Option<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem).find_map(Result::ok).map(|c| c.to_vec())
}

/// Logs what a certificate file holds: names, expiry, SHA-256 fingerprint.
pub fn describe(label: &str, path: &Path) -> Vec<String> {
    let Ok(chain) = read_chain(path) else {
        return vec![format!("{label}: cannot read {}", path.display())];
    };
    chain
        .iter()
        .take(1)
        .map(|der| {
            let fp = der::fingerprint(der);
            match der::summarize(der) {
                Some(s) => format!(
                    "{label}: {} (names: {}; expires {}; SHA-256 {fp})",
                    s.subject_cn.unwrap_or_default(),
                    if s.names.is_empty() { "-".to_string() } else { s.names.join(", ") },
                    s.not_after
                ),
                None => format!("{label}: SHA-256 {fp}"),
            }
        })
        .collect()
}
