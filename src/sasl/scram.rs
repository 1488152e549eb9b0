//! SCRAM (RFC 5802) with SHA-1 and SHA-256 (RFC 7677), and their -PLUS variants
//! with channel binding (`tls-exporter`, RFC 9266; `tls-server-end-point`, RFC
//! 5929). The server stores only the salt, the iteration count and, per hash,
//! StoredKey and ServerKey; a login costs HMACs, never PBKDF2.

use super::Failure;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use std::num::NonZeroU32;

/// The hash of a SCRAM mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramHash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            ScramHash::Sha256 => hmac::HMAC_SHA256,
        }
    }
    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramHash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            ScramHash::Sha256 => &digest::SHA256,
        }
    }
    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramHash::Sha1 => pbkdf2::PBKDF2_HMAC_SHA1,
            ScramHash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
        }
    }
    /// Output length of the hash in bytes.
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }
}

/// StoredKey and ServerKey for one hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramKeys {
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// What an account stores for SCRAM: never the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramRecord {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
}

/// Iterations for new records (RFC 7677 §4 asks for at least 4096).
pub const DEFAULT_ITERATIONS: u32 = 4096;

impl ScramRecord {
    /// Derives the record from a password (normalised by the caller). This is the
    /// one PBKDF2 run; do it off the event loop.
    pub fn derive(password: &str, salt: Vec<u8>, iterations: u32) -> ScramRecord {
        let keys = |hash: ScramHash| {
            let salted = salted_password(hash, password, &salt, iterations);
            let client_key = hmac_of(hash, &salted, b"Client Key");
            ScramKeys {
                stored_key: digest::digest(hash.digest(), &client_key).as_ref().to_vec(),
                server_key: hmac_of(hash, &salted, b"Server Key"),
            }
        };
        ScramRecord { iterations, sha1: keys(ScramHash::Sha1), sha256: keys(ScramHash::Sha256), salt }
    }

    /// A record with a fresh random salt.
    pub fn new(password: &str) -> ScramRecord {
        let mut salt = vec![0u8; 16];
        crate::random::fill(&mut salt);
        ScramRecord::derive(password, salt, DEFAULT_ITERATIONS)
    }

    /// A record no password matches, for unknown users: checking against it costs
    /// the same one PBKDF2 run as a real record.
    pub fn unmatchable(salt: Vec<u8>) -> ScramRecord {
        let none = |len| ScramKeys { stored_key: vec![0; len], server_key: vec![0; len] };
        ScramRecord { iterations: DEFAULT_ITERATIONS, salt, sha1: none(20), sha256: none(32) }
    }

    pub fn keys(&self, hash: ScramHash) -> &ScramKeys {
        match hash {
            ScramHash::Sha1 => &self.sha1,
            ScramHash::Sha256 => &self.sha256,
        }
    }

    /// Checks a plaintext password (SASL PLAIN): one PBKDF2 run.
    pub fn verify_password(&self, password: &str) -> bool {
        let salted = salted_password(ScramHash::Sha256, password, &self.salt, self.iterations);
        let client_key = hmac_of(ScramHash::Sha256, &salted, b"Client Key");
        let stored = digest::digest(&digest::SHA256, &client_key);
        ct_eq(stored.as_ref(), &self.sha256.stored_key)
    }
}

fn salted_password(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; hash.output_len()];
    let n = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(hash.pbkdf2(), n, salt, password.as_bytes(), &mut out);
    out
}

fn hmac_of(hash: ScramHash, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hash.hmac(), key), data).as_ref().to_vec()
}

/// Constant-time equality (length is public).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The channel binding the client chose in its GS2 header.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Gs2Binding {
    /// `n`: the client does not support channel binding.
    None,
    /// `y`: the client supports it but thinks the server does not.
    SupportedNotUsed,
    /// `p=type`.
    Used(String),
}

/// The first client message, parsed.
#[derive(Debug)]
pub struct ClientFirst {
    pub username: String,
    pub authzid: Option<String>,
    binding: Gs2Binding,
    gs2_header: String,
    bare: String,
    client_nonce: String,
}

/// Parses `gs2-header client-first-message-bare` (RFC 5802 §7).
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, Failure> {
    let msg = std::str::from_utf8(msg).map_err(|_| Failure::MalformedRequest)?;
    let mut parts = msg.splitn(3, ',');
    let flag = parts.next().ok_or(Failure::MalformedRequest)?;
    let authz = parts.next().ok_or(Failure::MalformedRequest)?;
    let bare = parts.next().ok_or(Failure::MalformedRequest)?;
    let binding = match flag {
        "n" => Gs2Binding::None,
        "y" => Gs2Binding::SupportedNotUsed,
        f => match f.strip_prefix("p=") {
            Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') => {
                Gs2Binding::Used(t.to_string())
            }
            _ => return Err(Failure::MalformedRequest),
        },
    };
    let authzid = match authz {
        "" => None,
        a => Some(decode_saslname(a.strip_prefix("a=").ok_or(Failure::MalformedRequest)?)?),
    };
    let mut fields = bare.split(',');
    let username = decode_saslname(fields.next().and_then(|f| f.strip_prefix("n=")).ok_or(Failure::MalformedRequest)?)?;
    let client_nonce = fields.next().and_then(|f| f.strip_prefix("r=")).ok_or(Failure::MalformedRequest)?;
    if username.is_empty()
        || client_nonce.is_empty()
        || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(Failure::MalformedRequest);
    }
    // A mandatory extension (`m=`) is not supported (RFC 5802 §5.1).
    if fields.any(|f| f.starts_with("m=")) {
        return Err(Failure::MalformedRequest);
    }
    Ok(ClientFirst {
        username,
        authzid,
        binding,
        gs2_header: format!("{flag},{authz},"),
        bare: bare.to_string(),
        client_nonce: client_nonce.to_string(),
    })
}

/// `saslname`: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed.
fn decode_saslname(s: &str) -> Result<String, Failure> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(Failure::MalformedRequest),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What the server knows about channel binding on this connection.
#[derive(Clone, Debug, Default)]
pub struct ChannelBindings {
    /// `tls-exporter` data (TLS 1.3 only, RFC 9266).
    pub tls_exporter: Option<Vec<u8>>,
    /// `tls-server-end-point` data (RFC 5929 §4).
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBindings {
    pub fn any(&self) -> bool {
        self.tls_exporter.is_some() || self.tls_server_end_point.is_some()
    }
    fn data(&self, kind: &str) -> Option<&[u8]> {
        match kind {
            "tls-exporter" => self.tls_exporter.as_deref(),
            "tls-server-end-point" => self.tls_server_end_point.as_deref(),
            _ => None,
        }
    }
}

/// A SCRAM exchange after the server-first message.
pub struct ScramServer {
    hash: ScramHash,
    keys: ScramKeys,
    /// False for an unknown user: the exchange runs to the end, then fails like a
    /// wrong password (no user enumeration).
    known: bool,
    nonce: String,
    gs2_header: String,
    cb_data: Vec<u8>,
    auth_prefix: String,
}

impl ScramServer {
    /// Starts the exchange: checks the channel-binding choice against the mechanism
    /// (`plus`) and returns the server-first message.
    pub fn start(
        hash: ScramHash,
        plus: bool,
        first: &ClientFirst,
        record: Option<&ScramRecord>,
        fake_salt: Vec<u8>,
        bindings: &ChannelBindings,
    ) -> Result<(ScramServer, String), Failure> {
        let cb_data = match (&first.binding, plus) {
            (Gs2Binding::Used(kind), true) => bindings.data(kind).ok_or(Failure::MalformedRequest)?.to_vec(),
            (Gs2Binding::Used(_), false) => return Err(Failure::MalformedRequest),
            (_, true) => return Err(Failure::MalformedRequest),
            // RFC 5802 §6: "y" while the server offers channel binding is a downgrade.
            (Gs2Binding::SupportedNotUsed, false) if bindings.any() => return Err(Failure::NotAuthorized),
            (_, false) => Vec::new(),
        };
        let mut server_nonce = [0u8; 18];
        crate::random::fill(&mut server_nonce);
        let nonce = format!("{}{}", first.client_nonce, B64.encode(server_nonce));
        let (known, iterations, salt, keys) = match record {
            Some(r) => (true, r.iterations, r.salt.clone(), r.keys(hash).clone()),
            None => {
                let fake = vec![0u8; hash.output_len()];
                (false, DEFAULT_ITERATIONS, fake_salt, ScramKeys { stored_key: fake.clone(), server_key: fake })
            }
        };
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        let auth_prefix = format!("{},{server_first},", first.bare);
        let server =
            ScramServer { hash, keys, known, nonce, gs2_header: first.gs2_header.clone(), cb_data, auth_prefix };
        Ok((server, server_first))
    }

    /// Checks the client-final message; returns the server-final message.
    pub fn finish(&self, msg: &[u8]) -> Result<String, Failure> {
        let msg = std::str::from_utf8(msg).map_err(|_| Failure::MalformedRequest)?;
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(Failure::MalformedRequest)?;
        let mut fields = without_proof.split(',');
        let cbind = fields.next().and_then(|f| f.strip_prefix("c=")).ok_or(Failure::MalformedRequest)?;
        let nonce = fields.next().and_then(|f| f.strip_prefix("r=")).ok_or(Failure::MalformedRequest)?;
        let cbind = B64.decode(cbind).map_err(|_| Failure::IncorrectEncoding)?;
        let proof = B64.decode(proof).map_err(|_| Failure::IncorrectEncoding)?;
        let mut expected_cbind = self.gs2_header.as_bytes().to_vec();
        expected_cbind.extend_from_slice(&self.cb_data);
        if nonce != self.nonce {
            return Err(Failure::MalformedRequest);
        }
        if !ct_eq(&cbind, &expected_cbind) {
            return Err(Failure::NotAuthorized);
        }
        if proof.len() != self.hash.output_len() {
            return Err(Failure::MalformedRequest);
        }
        let auth_message = format!("{}{without_proof}", self.auth_prefix);
        let signature = hmac_of(self.hash, &self.keys.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let stored = digest::digest(self.hash.digest(), &client_key);
        if !(ct_eq(stored.as_ref(), &self.keys.stored_key) && self.known) {
            return Err(Failure::NotAuthorized);
        }
        let server_signature = hmac_of(self.hash, &self.keys.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// A deterministic salt for an unknown user, so repeated probes see a stable salt.
pub fn fake_salt(secret: &[u8], username: &str) -> Vec<u8> {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), username.as_bytes());
    tag.as_ref()[..16].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal SCRAM client, computing what RFC 5802 §3 says a client computes.
    fn client_final(
        hash: ScramHash,
        password: &str,
        first_bare: &str,
        gs2: &str,
        cb: &[u8],
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let mut fields = server_first.split(',');
        let nonce = &fields.next().unwrap()[2..];
        let salt = B64.decode(&fields.next().unwrap()[2..]).unwrap();
        let iterations: u32 = fields.next().unwrap()[2..].parse().unwrap();
        let salted = salted_password(hash, password, &salt, iterations);
        let client_key = hmac_of(hash, &salted, b"Client Key");
        let stored = digest::digest(hash.digest(), &client_key);
        let mut cbind = gs2.as_bytes().to_vec();
        cbind.extend_from_slice(cb);
        let without_proof = format!("c={},r={nonce}", B64.encode(cbind));
        let auth = format!("{first_bare},{server_first},{without_proof}");
        let sig = hmac_of(hash, stored.as_ref(), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_key = hmac_of(hash, &salted, b"Server Key");
        (format!("{without_proof},p={}", B64.encode(proof)), hmac_of(hash, &server_key, auth.as_bytes()))
    }

    #[test]
    fn rfc7677_test_vector_sha256() {
        // RFC 7677 §3: user "user", password "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let record = ScramRecord::derive("pencil", salt, 4096);
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let (mut server, _) =
            ScramServer::start(ScramHash::Sha256, false, &first, Some(&record), vec![], &ChannelBindings::default())
                .unwrap();
        // Pin the server nonce to the RFC's.
        server.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        server.auth_prefix = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,".into();
        let final_msg = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(server.finish(final_msg).unwrap(), "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert!(record.verify_password("pencil"));
        assert!(!record.verify_password("pencil!"));
    }

    #[test]
    fn full_exchange_with_and_without_channel_binding() {
        let record = ScramRecord::new("s3cret");
        let bindings = ChannelBindings { tls_exporter: Some(vec![7; 32]), tls_server_end_point: Some(vec![9; 32]) };
        for (hash, plus, gs2, cb) in [
            (ScramHash::Sha256, true, "p=tls-exporter,,", vec![7u8; 32]),
            (ScramHash::Sha1, true, "p=tls-server-end-point,,", vec![9u8; 32]),
            (ScramHash::Sha256, false, "n,,", vec![]),
            (ScramHash::Sha1, false, "n,,", vec![]),
        ] {
            let bare = "n=juliet,r=abcdef";
            let first = parse_client_first(format!("{gs2}{bare}").as_bytes()).unwrap();
            let (server, server_first) =
                ScramServer::start(hash, plus, &first, Some(&record), vec![], &bindings).unwrap();
            let (msg, expected_v) = client_final(hash, "s3cret", bare, gs2, &cb, &server_first);
            assert_eq!(server.finish(msg.as_bytes()).unwrap(), format!("v={}", B64.encode(expected_v)));
            let (bad, _) = client_final(hash, "wrong", bare, gs2, &cb, &server_first);
            assert_eq!(server.finish(bad.as_bytes()), Err(Failure::NotAuthorized));
        }
    }

    #[test]
    fn unknown_user_fails_like_a_wrong_password() {
        let first = parse_client_first(b"n,,n=nobody,r=xyz").unwrap();
        let (server, server_first) = ScramServer::start(
            ScramHash::Sha256,
            false,
            &first,
            None,
            fake_salt(b"k", "nobody"),
            &ChannelBindings::default(),
        )
        .unwrap();
        assert!(server_first.contains(&format!("s={}", B64.encode(fake_salt(b"k", "nobody")))));
        let (msg, _) = client_final(ScramHash::Sha256, "anything", "n=nobody,r=xyz", "n,,", &[], &server_first);
        assert_eq!(server.finish(msg.as_bytes()), Err(Failure::NotAuthorized));
    }

    #[test]
    fn downgrade_and_malformed_messages_are_refused() {
        let with_cb = ChannelBindings { tls_exporter: Some(vec![1]), tls_server_end_point: None };
        let first = parse_client_first(b"y,,n=u,r=n").unwrap();
        assert_eq!(
            ScramServer::start(ScramHash::Sha1, false, &first, None, vec![], &with_cb).err(),
            Some(Failure::NotAuthorized)
        );
        let first = parse_client_first(b"p=tls-unique,,n=u,r=n").unwrap();
        assert_eq!(
            ScramServer::start(ScramHash::Sha1, true, &first, None, vec![], &with_cb).err(),
            Some(Failure::MalformedRequest)
        );
        for bad in
            [&b""[..], b"n", b"x,,n=u,r=n", b"n,,r=n", b"n,,n=u", b"n,,n=a=b,r=n", b"n,,n=u,r=n,m=ext", b"n,b,n=u,r=n"]
        {
            assert!(parse_client_first(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let first = parse_client_first(b"n,a=juliet@localhost,n=u=2Cv=3D,r=n").unwrap();
        assert_eq!(first.username, "u,v=");
        assert_eq!(first.authzid.as_deref(), Some("juliet@localhost"));
    }
}
