//! The local CA for a LAN hub with no public domain: on first start wrenhub makes a
//! small CA and a server certificate it signs for the served domain and its service
//! subdomains (`*.domain`), ECDSA P-256 (fast handshakes on small CPUs). Keys are
//! written with mode 0600. The CA stays; the server certificate is re-issued by the
//! same CA when the domain changes or it nears expiry, so phones that trust the CA
//! keep trusting the hub.

use super::der::summarize;
use super::TlsError;
use crate::jid::Domain;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The CA lives ten years; server certificates 825 days (the most Apple devices
/// accept from a user-installed CA); they are re-issued 30 days before expiry.
const CA_DAYS: u64 = 3650;
const SERVER_DAYS: u64 = 825;
const RENEW_BEFORE_DAYS: i64 = 30;

/// Where the local CA's files are.
#[derive(Clone, Debug)]
pub struct LocalCa {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl LocalCa {
    pub fn in_data_dir(data_dir: &Path) -> LocalCa {
        let dir = data_dir.join("tls");
        LocalCa {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }

    /// Makes the CA if there is none, and a server certificate if there is none or
    /// the present one does not cover `domain` or expires soon. Returns true when
    /// something was created.
    pub fn ensure(&self, domain: &Domain) -> Result<bool, TlsError> {
        let dir = self.ca_cert.parent().unwrap_or(Path::new("."));
        crate::store::create_private_dir(dir).map_err(|e| TlsError::Io(dir.to_path_buf(), e))?;

        let mut created = false;
        if !self.ca_cert.exists() || !self.ca_key.exists() {
            self.create_ca()?;
            created = true;
        }
        if created || self.server_needs_renewal(domain) {
            self.create_server_cert(domain)?;
            created = true;
        }
        Ok(created)
    }

    fn create_ca(&self) -> Result<(), TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut tag = [0u8; 4];
        let _ = getrandom::fill(&mut tag);
        let cn = format!("wrenhub local CA {:02x}{:02x}{:02x}{:02x}", tag[0], tag[1], tag[2], tag[3]);
        let params = ca_params(&cn, CA_DAYS)?;
        let cert = params.self_signed(&key).map_err(gen_err)?;
        write_file(&self.ca_key, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&self.ca_cert, cert.pem().as_bytes(), 0o644)?;
        log::info!("created a local CA in {}", self.ca_cert.display());
        Ok(())
    }

    fn server_needs_renewal(&self, domain: &Domain) -> bool {
        let Ok(pem) = std::fs::read(&self.server_cert) else {
            return true;
        };
        if !self.server_key.exists() {
            return true;
        }
        let Some(der) = super::first_cert_der(&pem) else {
            return true;
        };
        let Some(summary) = summarize(&der) else {
            return true;
        };
        let wanted = subject_names(domain);
        let covers = wanted.iter().all(|n| summary.names.iter().any(|have| have == n));
        !(covers && summary.not_after_unix - now_unix() > RENEW_BEFORE_DAYS * 86400)
    }

    fn create_server_cert(&self, domain: &Domain) -> Result<(), TlsError> {
        let ca_pem = std::fs::read(&self.ca_cert).map_err(|e| TlsError::Io(self.ca_cert.clone(), e))?;
        let ca_key_pem = std::fs::read_to_string(&self.ca_key).map_err(|e| TlsError::Io(self.ca_key.clone(), e))?;
        let ca_der = super::first_cert_der(&ca_pem).ok_or_else(|| TlsError::NoCertificate(self.ca_cert.clone()))?;
        let ca_cn = summarize(&ca_der)
            .and_then(|s| s.subject_cn)
            .ok_or_else(|| TlsError::Generate("the local CA certificate has no common name".into()))?;
        let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(gen_err)?;
        let issuer = Issuer::new(ca_params(&ca_cn, CA_DAYS)?, ca_key);

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, domain.as_str());
        params.subject_alt_names = subject_names(domain)
            .into_iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n.try_into().map(SanType::DnsName).map_err(gen_err),
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // serverAuth for clients; clientAuth so the same certificate serves s2s.
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        set_validity(&mut params, SERVER_DAYS)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let cert = params.signed_by(&key, &issuer).map_err(gen_err)?;
        let mut chain = cert.pem();
        chain.push_str(&String::from_utf8_lossy(&ca_pem));
        write_file(&self.server_key, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&self.server_cert, chain.as_bytes(), 0o644)?;
        log::info!("issued a server certificate for {} from the local CA", subject_names(domain).join(", "));
        Ok(())
    }
}

/// The names a server certificate for `domain` must carry: the domain, and for a
/// host name its service subdomains (group chat, components) as `*.domain`.
pub fn subject_names(domain: &Domain) -> Vec<String> {
    let d = domain.as_str();
    if let Some(ip) = d.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        return vec![ip.to_string()];
    }
    if d.parse::<std::net::Ipv4Addr>().is_ok() {
        return vec![d.to_string()];
    }
    vec![d.to_string(), format!("*.{d}")]
}

fn ca_params(cn: &str, days: u64) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, days)?;
    Ok(params)
}

fn set_validity(params: &mut CertificateParams, days: u64) -> Result<(), TlsError> {
    let now = SystemTime::now();
    let from = now.checked_sub(Duration::from_secs(3600)).unwrap_or(now);
    let until = now + Duration::from_secs(days * 86400);
    params.not_before = to_offset(from)?;
    params.not_after = to_offset(until)?;
    Ok(())
}

fn to_offset(t: SystemTime) -> Result<time::OffsetDateTime, TlsError> {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| TlsError::Generate(e.to_string()))
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn gen_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Generate(e.to_string())
}

/// Writes a file atomically (temporary file, then rename) with the given mode.
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    let result = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(data).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    result.map_err(|e| TlsError::Io(path.to_path_buf(), e))
}
