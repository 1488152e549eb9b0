//! The local CA for a LAN hub with no public domain: on first start wrenhub makes a
//! small CA and a server certificate it signs for the served domain and its service
//! subdomains (`conference.domain`, ...), ECDSA P-256 (fast handshakes on small CPUs). Keys are
//! written with mode 0600. The CA carries Name Constraints for the hub's domain
//! (RFC 5280 §4.2.1.10), so a stolen CA key cannot mint certificates for other
//! sites. The CA stays while the domain does; the server certificate is re-issued
//! by the same CA when it nears expiry, so phones that trust the CA keep trusting
//! the hub. A new domain gets a new CA.

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
        // The CA is constrained to the domain it was made for (S7): a new domain
        // needs a new CA. A CA made before constraints existed is kept (phones trust
        // it), with a warning.
        let ca_domain = std::fs::read_to_string(self.ca_domain_file()).ok();
        let other_domain = ca_domain.as_deref().is_some_and(|d| d.trim() != domain.as_str());
        if !self.ca_cert.exists() || !self.ca_key.exists() || other_domain {
            if other_domain {
                log::warn!(
                    "the domain changed to {domain}: a new local CA is made for it; install the new CA on every device \
                     and remove the old one"
                );
            }
            self.create_ca(domain)?;
            created = true;
        } else if ca_domain.is_none() {
            log::warn!(
                "the local CA in {} has no name constraints (made by an older wrenhub): devices that trust it would \
                 trust any certificate it signs; to replace it, stop the server, delete tls/ca.pem and tls/ca.key, \
                 start it, and install the new CA",
                self.ca_cert.display()
            );
        }
        if created || self.server_needs_renewal(domain) {
            self.create_server_cert(domain)?;
            created = true;
        }
        Ok(created)
    }

    /// Where the domain the CA is constrained to is recorded.
    fn ca_domain_file(&self) -> PathBuf {
        self.ca_cert.with_file_name("ca.domain")
    }

    fn create_ca(&self, domain: &Domain) -> Result<(), TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut tag = [0u8; 4];
        getrandom::fill(&mut tag).map_err(gen_err)?;
        let cn = format!("wrenhub local CA {:02x}{:02x}{:02x}{:02x}", tag[0], tag[1], tag[2], tag[3]);
        let mut params = ca_params(&cn, CA_DAYS)?;
        params.name_constraints = Some(name_constraints(domain));
        let cert = params.self_signed(&key).map_err(gen_err)?;
        write_file(&self.ca_key, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&self.ca_cert, cert.pem().as_bytes(), 0o644)?;
        write_file(&self.ca_domain_file(), domain.as_str().as_bytes(), 0o644)?;
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

/// The subdomains the hub's own services use (group chat, upload, proxy, pubsub).
pub const SERVICE_SUBDOMAINS: &[&str] = &["conference", "directory", "upload", "proxy", "pubsub"];

/// The names a server certificate for `domain` must carry: the domain, and for a
/// host name its service subdomains, named one by one: a wildcard under a
/// name-constrained CA is refused by rustls' verifier (webpki), so `*.domain` would
/// lock out rustls-based peers.
pub fn subject_names(domain: &Domain) -> Vec<String> {
    let d = domain.as_str();
    if let Some(ip) = d.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        return vec![ip.to_string()];
    }
    if d.parse::<std::net::Ipv4Addr>().is_ok() {
        return vec![d.to_string()];
    }
    std::iter::once(d.to_string()).chain(SERVICE_SUBDOMAINS.iter().map(|s| format!("{s}.{d}"))).collect()
}

/// RFC 5280 §4.2.1.10: the CA may sign only for the hub's domain and the names
/// below it (a DNS constraint `hub.lan` covers `*.hub.lan`), or its IP address.
fn name_constraints(domain: &Domain) -> rcgen::NameConstraints {
    let d = domain.as_str();
    let ip = d.strip_prefix('[').and_then(|d| d.strip_suffix(']')).unwrap_or(d).parse::<std::net::IpAddr>();
    let permitted = match ip {
        Ok(ip) => rcgen::GeneralSubtree::IpAddress(rcgen::CidrSubnet::from_addr_prefix(
            ip,
            if ip.is_ipv4() { 32 } else { 128 },
        )),
        Err(_) => rcgen::GeneralSubtree::DnsName(d.to_string()),
    };
    rcgen::NameConstraints { permitted_subtrees: vec![permitted], excluded_subtrees: Vec::new() }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The DER of the first certificate in a PEM file.
    fn der(path: &Path) -> Vec<u8> {
        crate::tls::first_cert_der(&std::fs::read(path).unwrap()).unwrap().to_vec()
    }

    #[test]
    fn the_local_ca_is_constrained_to_the_hubs_domain_and_renewed_with_it() {
        // S7: without Name Constraints the CA on the board could sign for any site.
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::in_data_dir(dir.path());
        ca.ensure(&Domain::parse("hub.lan").unwrap()).unwrap();
        let first = der(&ca.ca_cert);
        // id-ce-nameConstraints (2.5.29.30), then the permitted dNSName "hub.lan".
        let oid = [0x06, 0x03, 0x55, 0x1d, 0x1e];
        assert!(first.windows(oid.len()).any(|w| w == oid), "no nameConstraints extension");
        assert!(first.windows(7).any(|w| w == b"hub.lan"));
        assert_eq!(crate::tls::der::permitted_dns_names(&first), ["hub.lan"]);
        ca.ensure(&Domain::parse("hub.lan").unwrap()).unwrap();
        assert_eq!(der(&ca.ca_cert), first, "the same domain keeps its CA");
        ca.ensure(&Domain::parse("home.arpa").unwrap()).unwrap();
        let second = der(&ca.ca_cert);
        assert_ne!(second, first, "another domain gets a CA of its own");
        assert!(second.windows(9).any(|w| w == b"home.arpa"));
    }
}
