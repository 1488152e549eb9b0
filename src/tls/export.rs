//! The local CA in the forms devices install (`wrenhub cert export-ca --format`):
//! PEM (Debian's `update-ca-certificates`, Firefox, Android), DER `.crt` (Windows,
//! Android, macOS), and an Apple configuration profile (`.mobileconfig`, iOS and
//! macOS) holding one `com.apple.security.root` payload.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// An export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pem,
    Der,
    MobileConfig,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "pem" => Ok(Format::Pem),
            "der" | "crt" => Ok(Format::Der),
            "mobileconfig" => Ok(Format::MobileConfig),
            other => Err(format!("unknown format {other:?}: use pem, der or mobileconfig")),
        }
    }
}

/// The CA certificate (PEM as stored) in `format`; `domain` names the profile.
pub fn export(pem: &[u8], format: Format, domain: &str) -> Result<Vec<u8>, String> {
    if format == Format::Pem {
        return Ok(pem.to_vec());
    }
    let der = CertificateDer::from_pem_slice(pem).map_err(|e| format!("the CA file is not a PEM certificate: {e}"))?;
    Ok(match format {
        Format::Der | Format::Pem => der.to_vec(),
        Format::MobileConfig => mobileconfig(&der, domain).into_bytes(),
    })
}

/// A UUID-shaped random identifier (the profile format wants one per payload).
fn uuid() -> String {
    let mut b = [0u8; 16];
    crate::random::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02X}")).collect();
    format!("{}-{}-{}-{}-{}", h[..4].concat(), h[4..6].concat(), h[6..8].concat(), h[8..10].concat(), h[10..].concat())
}

/// An unsigned configuration profile that installs the CA as a trusted root.
fn mobileconfig(der: &[u8], domain: &str) -> String {
    let escape = |s: String| {
        let mut out = Vec::new();
        crate::xml::text::escape_text(&mut out, &s);
        String::from_utf8_lossy(&out).into_owned()
    };
    let name = escape(format!("wrenhub hub {domain}"));
    let id = escape(format!("wrenhub.{domain}"));
    let data = B64.encode(der);
    let (profile, payload) = (uuid(), uuid());
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>PayloadCertificateFileName</key><string>wrenhub-ca.crt</string>
      <key>PayloadContent</key><data>{data}</data>
      <key>PayloadDescription</key><string>The chat hub's own certificate authority</string>
      <key>PayloadDisplayName</key><string>{name} CA</string>
      <key>PayloadIdentifier</key><string>{id}.ca</string>
      <key>PayloadType</key><string>com.apple.security.root</string>
      <key>PayloadUUID</key><string>{payload}</string>
      <key>PayloadVersion</key><integer>1</integer>
    </dict>
  </array>
  <key>PayloadDisplayName</key><string>{name}</string>
  <key>PayloadIdentifier</key><string>{id}</string>
  <key>PayloadType</key><string>Configuration</string>
  <key>PayloadUUID</key><string>{profile}</string>
  <key>PayloadVersion</key><integer>1</integer>
</dict>
</plist>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_and_profile_carry_the_same_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["hub.lan".into()]).unwrap().self_signed(&key).unwrap();
        let pem = cert.pem();
        let der = export(pem.as_bytes(), Format::Der, "hub.lan").unwrap();
        assert_eq!(der, cert.der().to_vec());
        let profile = String::from_utf8(export(pem.as_bytes(), Format::MobileConfig, "hub.lan").unwrap()).unwrap();
        assert!(profile.contains(&format!("<data>{}</data>", B64.encode(&der))), "{profile}");
        assert!(profile.contains("<string>com.apple.security.root</string>"));
        assert_eq!(export(pem.as_bytes(), Format::Pem, "hub.lan").unwrap(), pem.as_bytes());
        assert!(export(b"not a certificate", Format::Der, "hub.lan").is_err());
        assert_eq!("crt".parse::<Format>(), Ok(Format::Der));
        assert!("p12".parse::<Format>().is_err());
    }
}
