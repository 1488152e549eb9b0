//! Peer certificates on server-to-server links (RFC 6120 §13.7.2, XEP-0178).
//!
//! TLS itself accepts whatever certificate a peer server presents (the handshake
//! signature is still verified), because an untrusted certificate is not a reason
//! to drop the link: Server Dialback (XEP-0220) can still authenticate the domain.
//! Whether the certificate *authenticates* a domain is decided afterwards, here:
//! a pinned SHA-256 fingerprint for that domain, or a chain to a trusted root (the
//! configured LAN CA, the system roots) that names the domain. Where a domain is
//! pinned, or lies within the Name Constraints of a CA in `s2s_ca_file` (a LAN CA
//! made for those domains: its peers all have its certificates), or
//! `s2s_secure_auth` is on, nothing else will do, in both directions (REVIEW S2):
//! an outbound link whose peer's certificate does not authenticate it is closed
//! before any stanza goes out, and inbound dialback is refused.

use crate::config::S2sPeer;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// Where a system's trusted roots usually are (Debian, Alpine, OpenWrt, Fedora).
const SYSTEM_BUNDLES: &[&str] =
    &["/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/cert.pem", "/etc/pki/tls/certs/ca-bundle.crt"];

/// Decides whether a peer's certificate chain authenticates a domain.
pub struct PeerTrust {
    verifier: Option<Arc<WebPkiServerVerifier>>,
    /// Per-domain pinned end-entity fingerprints (`[[s2s_peer]]`).
    pins: Vec<S2sPeer>,
    /// How many roots were loaded (for the log).
    pub roots: usize,
    /// Every peer must be authenticated by its certificate (`s2s_secure_auth`).
    secure_auth: bool,
    /// Domains the configured CAs' Name Constraints permit: their peers must
    /// present its certificates.
    covered: Vec<String>,
}

impl PeerTrust {
    /// Roots from `ca_file` (a LAN CA) and, if asked, the system bundle.
    pub fn load(
        ca_file: Option<&Path>,
        system_roots: bool,
        pins: &[S2sPeer],
        secure_auth: bool,
    ) -> Result<PeerTrust, super::TlsError> {
        let mut roots = RootCertStore::empty();
        let mut covered = Vec::new();
        if let Some(path) = ca_file {
            for cert in super::read_chain(path)? {
                covered.extend(super::der::permitted_dns_names(&cert));
                roots.add(cert).map_err(|e| super::TlsError::Rustls(format!("{}: {e}", path.display())))?;
            }
        }
        if system_roots {
            if let Some(bundle) = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.exists()) {
                if let Ok(chain) = super::read_chain(bundle) {
                    roots.add_parsable_certificates(chain);
                }
            }
        }
        let count = roots.len();
        let verifier = if roots.is_empty() {
            None
        } else {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().ok()
        };
        Ok(PeerTrust { verifier, pins: pins.to_vec(), roots: count, secure_auth, covered })
    }

    /// Trusts nothing (certificates never authenticate; dialback only).
    pub fn none() -> PeerTrust {
        PeerTrust { verifier: None, pins: Vec::new(), roots: 0, secure_auth: false, covered: Vec::new() }
    }

    /// Must `domain` be authenticated by its certificate (pinned, covered by a
    /// configured CA's Name Constraints, or every peer under `s2s_secure_auth`)?
    /// Then dialback does not count for it.
    pub fn must_authenticate(&self, domain: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        self.secure_auth
            || self.pins.iter().any(|p| p.domain.as_str() == domain)
            || self.covered.iter().any(|c| crate::jid::within(&domain, c))
    }

    /// Does this chain (end entity first) authenticate `domain`?
    pub fn authenticates(&self, chain: &[CertificateDer<'_>], domain: &str) -> bool {
        let Some((end_entity, intermediates)) = chain.split_first() else { return false };
        let fingerprint: [u8; 32] = match ring::digest::digest(&ring::digest::SHA256, end_entity).as_ref().try_into() {
            Ok(f) => f,
            Err(_) => return false,
        };
        if self.pins.iter().any(|p| p.domain.as_str() == domain && p.fingerprint == fingerprint) {
            return true;
        }
        let Some(verifier) = &self.verifier else { return false };
        let Ok(name) = ServerName::try_from(domain.trim_start_matches('[').trim_end_matches(']').to_string()) else {
            return false;
        };
        verifier.verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now()).is_ok()
    }
}

/// Accepts any server certificate during the handshake (see the module doc).
#[derive(Debug)]
pub struct AnyServerCert(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Asks peer servers for a certificate and accepts any (see the module doc).
#[derive(Debug)]
pub struct AnyClientCert(pub Arc<CryptoProvider>);

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
