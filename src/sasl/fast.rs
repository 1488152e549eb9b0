//! The Hashed Token mechanisms XEP-0484 (FAST) authenticates with
//! (draft-schmaus-kitten-sasl-ht-08): one message each way, no PBKDF2.
//!
//! - initial response: `authcid NUL HMAC-SHA-256(token, "Initiator" || cb-data)`
//! - server's final message (SASL2 additional data): `HMAC-SHA-256(token,
//!   "Responder" || cb-data)`, so the client knows it talked to the issuer.
//!
//! Tokens are 72 characters, longer than SHA-256's 64-byte block, so HMAC keys
//! with their SHA-256 (RFC 2104 §2): the store keeps only that digest, never the
//! text the client holds. The digest verifies as well as the token (inherent to
//! HT-*: a verifier that can check an HMAC can compute it), so it is kept like a
//! SCRAM record: in the private store, revoked with the password.

use super::scram::ChannelBindings;
use super::Failure;
use crate::store::fast_tokens::FastToken;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::{digest, hmac};

/// One HT-SHA-256 variant: which channel binding it folds in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HtMechanism {
    /// `HT-SHA-256-NONE`: no channel binding (web clients).
    None,
    /// `HT-SHA-256-ENDP`: `tls-server-end-point` (RFC 5929).
    EndPoint,
    /// `HT-SHA-256-EXPR`: `tls-exporter` (RFC 9266).
    Exporter,
}

impl HtMechanism {
    /// Channel-binding variants first.
    pub const ALL: [HtMechanism; 3] = [HtMechanism::Exporter, HtMechanism::EndPoint, HtMechanism::None];

    pub fn name(self) -> &'static str {
        match self {
            HtMechanism::None => "HT-SHA-256-NONE",
            HtMechanism::EndPoint => "HT-SHA-256-ENDP",
            HtMechanism::Exporter => "HT-SHA-256-EXPR",
        }
    }

    pub fn from_name(name: &str) -> Option<HtMechanism> {
        HtMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The stored tag of the mechanism a token is bound to.
    pub fn code(self) -> u8 {
        match self {
            HtMechanism::None => 0,
            HtMechanism::EndPoint => 1,
            HtMechanism::Exporter => 2,
        }
    }

    /// The channel-binding data this connection gives the mechanism; `None` when
    /// the connection has no such binding (then it is not offered).
    pub fn binding(self, bindings: &ChannelBindings) -> Option<&[u8]> {
        match self {
            HtMechanism::None => Some(&[]),
            HtMechanism::EndPoint => bindings.tls_server_end_point.as_deref(),
            HtMechanism::Exporter => bindings.tls_exporter.as_deref(),
        }
    }
}

/// A fresh token: its text (for the client, once) and what the store keeps.
pub fn issue(mechanism: HtMechanism, expiry: u64) -> (String, FastToken) {
    let mut raw = [0u8; 54];
    crate::random::fill(&mut raw);
    let text = URL_SAFE_NO_PAD.encode(raw);
    let key = key_of(&text);
    (text, FastToken { mechanism: mechanism.code(), expiry, key })
}

/// What the store keeps of a token's text.
fn key_of(text: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    key.copy_from_slice(digest::digest(&digest::SHA256, text.as_bytes()).as_ref());
    key
}

/// The parsed initial response.
pub struct HtResponse {
    pub username: String,
    proof: Vec<u8>,
}

pub fn parse(payload: &[u8]) -> Result<HtResponse, Failure> {
    let nul = payload.iter().position(|b| *b == 0).ok_or(Failure::MalformedRequest)?;
    let username = std::str::from_utf8(&payload[..nul]).map_err(|_| Failure::MalformedRequest)?;
    let proof = &payload[nul + 1..];
    if username.is_empty() || proof.len() != digest::SHA256_OUTPUT_LEN {
        return Err(Failure::MalformedRequest);
    }
    Ok(HtResponse { username: username.to_string(), proof: proof.to_vec() })
}

fn mac(key: &[u8; 32], label: &[u8], cb: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(label);
    ctx.update(cb);
    ctx.sign()
}

/// The live token (of `tokens`, issued for `mechanism`) the proof was made with,
/// and the server's final message; compared in constant time.
pub fn verify<'t>(
    response: &HtResponse,
    mechanism: HtMechanism,
    cb: &[u8],
    tokens: &'t [FastToken],
    now: u64,
) -> Option<(&'t FastToken, Vec<u8>)> {
    tokens.iter().filter(|t| t.mechanism == mechanism.code() && t.expiry > now).find_map(|t| {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &t.key);
        let mut message = b"Initiator".to_vec();
        message.extend_from_slice(cb);
        hmac::verify(&key, &message, &response.proof).ok()?;
        Some((t, mac(&t.key, b"Responder", cb).as_ref().to_vec()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client computes: HMAC keyed with the token text itself.
    fn client_proof(text: &str, cb: &[u8]) -> Vec<u8> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, text.as_bytes());
        let mut m = b"Initiator".to_vec();
        m.extend_from_slice(cb);
        hmac::sign(&key, &m).as_ref().to_vec()
    }

    #[test]
    fn a_proof_made_with_the_token_text_verifies_against_the_stored_digest() {
        let (text, stored) = issue(HtMechanism::EndPoint, 100);
        assert_eq!(text.len(), 72);
        let cb = [9u8; 32];
        let mut payload = b"juliet\0".to_vec();
        payload.extend(client_proof(&text, &cb));
        let response = parse(&payload).unwrap();
        assert_eq!(response.username, "juliet");
        let tokens = [stored.clone()];
        let (used, server_final) = verify(&response, HtMechanism::EndPoint, &cb, &tokens, 50).unwrap();
        assert_eq!(used, &stored);
        let key = hmac::Key::new(hmac::HMAC_SHA256, text.as_bytes());
        let mut m = b"Responder".to_vec();
        m.extend_from_slice(&cb);
        assert_eq!(server_final, hmac::sign(&key, &m).as_ref());
        // Another mechanism, other binding data, an expired token: refused.
        assert!(verify(&response, HtMechanism::None, &cb, &tokens, 50).is_none());
        assert!(verify(&response, HtMechanism::EndPoint, &[1; 32], &tokens, 50).is_none());
        assert!(verify(&response, HtMechanism::EndPoint, &cb, &tokens, 100).is_none());
        assert!(parse(b"juliet").is_err());
        assert!(parse(b"\0aaaa").is_err());
    }
}
