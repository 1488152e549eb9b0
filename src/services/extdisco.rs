//! XEP-0215 External Service Discovery (`urn:xmpp:extdisco:2`): the STUN and TURN
//! servers a hub's clients use for calls, with TURN credentials that expire,
//! made from a secret shared with the TURN server (the scheme of coturn's
//! `use-auth-secret`: username `<expiry>:<account>`, password
//! base64(HMAC-SHA1(secret, username))). Answered to the hub's own users only.

use crate::handlers::{Handler, IqReply, IqRequest, IqType};
use crate::hub::Hub;
use crate::stanza::{Condition, StanzaError};
use crate::xml::writer::XmlWriter;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

pub const NS_EXTDISCO: &str = "urn:xmpp:extdisco:2";

/// The configured services (`stun_servers`, `turn_servers`, `turn_secret`).
#[derive(Clone, Debug, Default)]
pub struct ExternalServices {
    /// `(host, port)` of each STUN server.
    pub stun: Vec<(String, u16)>,
    pub turn: Vec<(String, u16)>,
    /// The TURN server's shared secret; without it TURN is announced without
    /// credentials.
    pub turn_secret: Option<String>,
    /// How long credentials are valid.
    pub credential_secs: u64,
}

/// §3: `services`; §3.3: `credentials`.
pub const SERVICES: Handler = Handler {
    namespace: NS_EXTDISCO,
    element: "services",
    features: &[NS_EXTDISCO],
    for_server: true,
    advertised_on_server: true,
    for_account: false,
    for_remote: false,
    handle: services,
};

pub const CREDENTIALS: Handler = Handler {
    namespace: NS_EXTDISCO,
    element: "credentials",
    features: &[],
    for_server: true,
    advertised_on_server: true,
    for_account: false,
    for_remote: false,
    handle: credentials,
};

fn services(hub: &Hub<'_>, req: &IqRequest<'_>, _: &mut Vec<u8>) -> IqReply {
    if req.iq_type != IqType::Get {
        return IqReply::Error(StanzaError::new(Condition::BadRequest));
    }
    let wanted = req.payload.attr("type");
    let account = req.sender.jid.to_bare().to_string();
    let mut body = Vec::new();
    XmlWriter::new(&mut body).start("services").attr("xmlns", NS_EXTDISCO).open();
    hub.external.write(&account, wanted.as_deref(), None, crate::clock::now_unix(), &mut body);
    XmlWriter::new(&mut body).end("services");
    IqReply::Result(Some(body))
}

fn credentials(hub: &Hub<'_>, req: &IqRequest<'_>, _: &mut Vec<u8>) -> IqReply {
    if req.iq_type != IqType::Get {
        return IqReply::Error(StanzaError::new(Condition::BadRequest));
    }
    let Some(service) = req.payload.child("service", NS_EXTDISCO) else {
        return IqReply::Error(StanzaError::with_text(Condition::BadRequest, "name the service"));
    };
    let host = service.attr("host").map(|h| h.to_string()).unwrap_or_default();
    if !hub.external.turn.iter().any(|(h, _)| *h == host) {
        return IqReply::Error(StanzaError::new(Condition::ItemNotFound));
    }
    let account = req.sender.jid.to_bare().to_string();
    let mut body = Vec::new();
    XmlWriter::new(&mut body).start("credentials").attr("xmlns", NS_EXTDISCO).open();
    hub.external.write(&account, Some("turn"), Some(&host), crate::clock::now_unix(), &mut body);
    XmlWriter::new(&mut body).end("credentials");
    IqReply::Result(Some(body))
}

impl ExternalServices {
    /// The `<service/>` elements of type `wanted` (all without), of `host` (all
    /// without), for `account` at `now`.
    fn write(&self, account: &str, wanted: Option<&str>, host: Option<&str>, now: u64, out: &mut Vec<u8>) {
        let kinds = [("stun", &self.stun), ("turn", &self.turn)];
        for (kind, servers) in kinds {
            if wanted.is_some_and(|w| w != kind) {
                continue;
            }
            for (h, port) in servers.iter().filter(|(h, _)| host.is_none_or(|want| want == h)) {
                for transport in ["udp", "tcp"] {
                    let mut w = XmlWriter::new(out);
                    w.start("service")
                        .attr("type", kind)
                        .attr("host", h)
                        .attr("port", &port.to_string())
                        .attr("transport", transport);
                    if let (Some(secret), "turn") = (&self.turn_secret, kind) {
                        let (username, password, expires) = self.credentials(secret, account, now);
                        w.attr("username", &username).attr("password", &password).attr("expires", &expires);
                        w.attr("restricted", "1");
                    }
                    w.close_empty();
                }
            }
        }
    }

    /// coturn's time-limited credentials: (username, password, expiry stamp).
    fn credentials(&self, secret: &str, account: &str, now: u64) -> (String, String, String) {
        let expires = now + self.credential_secs;
        let username = format!("{expires}:{account}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
        let password = B64.encode(ring::hmac::sign(&key, username.as_bytes()).as_ref());
        let stamp = crate::clock::utc_timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(expires));
        (username, password, stamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_credentials_follow_coturns_rest_scheme() {
        let s = ExternalServices {
            stun: vec![("stun.hub".into(), 3478)],
            turn: vec![("turn.hub".into(), 3478)],
            turn_secret: Some("north".into()),
            credential_secs: 86400,
        };
        let (user, password, expires) = s.credentials("north", "juliet@hub", 1_000_000_000);
        assert_eq!(user, "1000086400:juliet@hub");
        // echo -n '1000086400:juliet@hub' | openssl dgst -sha1 -hmac north -binary | base64
        assert_eq!(password, "X7dxflGvFoQAgjpt4GY+DQZrS70=");
        assert_eq!(expires, "2001-09-10T01:46:40.000Z");
        let mut out = Vec::new();
        s.write("juliet@hub", Some("stun"), None, 0, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("<service ").count(), 2, "udp and tcp: {text}");
        assert!(!text.contains("password"));
    }
}
