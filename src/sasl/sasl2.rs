//! XEP-0388 Extensible SASL Profile (`urn:xmpp:sasl:2`): the `<authenticate/>`
//! request with what it asks for inline (XEP-0386 Bind 2, XEP-0198 resumption,
//! XEP-0484 FAST), and the `<failure/>` element. The c2s stream runs the exchange.

use super::{decode_payload, Failure};
use crate::ns::NS_SASL;
use crate::xml::writer::XmlWriter;
use crate::xml::Element;

pub const NS_SASL2: &str = "urn:xmpp:sasl:2";
pub const NS_BIND2: &str = "urn:xmpp:bind:0";
pub const NS_FAST: &str = "urn:xmpp:fast:0";

/// Longest `<user-agent id>` kept (XEP-0388 suggests a UUID).
const MAX_AGENT_ID: usize = 128;
/// Longest Bind 2 `<tag>` used in a resource.
const MAX_TAG: usize = 64;

/// XEP-0386: what the client asks for when its resource is bound.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindRequest {
    pub tag: Option<String>,
    /// `<enable xmlns='urn:xmpp:carbons:2'/>`.
    pub carbons: bool,
    /// `<enable xmlns='urn:xmpp:sm:3'/>`, with whether it asks for resumption.
    pub sm: Option<bool>,
    /// `<inactive xmlns='urn:xmpp:csi:0'/>`.
    pub inactive: bool,
}

/// XEP-0198 inline resumption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeRequest {
    pub previd: String,
    pub h: Option<u32>,
}

/// XEP-0484: the client authenticates with a token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FastUse {
    /// `invalidate='true'`: the token ends with this login.
    pub invalidate: bool,
}

/// Everything `<authenticate/>` asks for besides the SASL exchange.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inline {
    /// `<user-agent id>`: identifies the client installation (FAST tokens and a
    /// stable Bind 2 resource are tied to it).
    pub agent: Option<String>,
    pub bind: Option<BindRequest>,
    pub resume: Option<ResumeRequest>,
    /// `<request-token mechanism>`.
    pub request_token: Option<String>,
    pub fast: Option<FastUse>,
}

/// The parsed `<authenticate mechanism>`.
pub struct Authenticate {
    pub mechanism: String,
    /// Absent: the client waits for an empty challenge.
    pub initial_response: Option<Vec<u8>>,
    pub inline: Inline,
}

fn truthy(v: Option<std::borrow::Cow<'_, str>>) -> bool {
    matches!(v.as_deref(), Some("true") | Some("1"))
}

pub fn parse_authenticate(el: &Element<'_>) -> Result<Authenticate, Failure> {
    let mechanism = el.attr("mechanism").map(|m| m.into_owned()).filter(|m| !m.is_empty());
    let Some(mechanism) = mechanism else { return Err(Failure::InvalidMechanism) };
    let initial_response = match el.child("initial-response", NS_SASL2) {
        Some(r) => Some(decode_payload(&r.text())?),
        None => None,
    };
    let mut inline = Inline::default();
    if let Some(ua) = el.child("user-agent", NS_SASL2) {
        inline.agent = ua.attr("id").map(|id| id.into_owned()).filter(|id| !id.is_empty() && id.len() <= MAX_AGENT_ID);
    }
    if let Some(bind) = el.child("bind", NS_BIND2) {
        let mut request = BindRequest {
            tag: bind
                .child("tag", NS_BIND2)
                .map(|t| t.text().trim().chars().take(MAX_TAG).collect::<String>())
                .filter(|t| !t.is_empty()),
            ..BindRequest::default()
        };
        for child in bind.children() {
            match (child.ns(), child.name()) {
                (crate::ns::NS_CARBONS, "enable") => request.carbons = true,
                (crate::stream::sm::NS_SM, "enable") => request.sm = Some(truthy(child.attr("resume"))),
                (crate::ns::NS_CSI, "inactive") => request.inactive = true,
                _ => {}
            }
        }
        inline.bind = Some(request);
    }
    if let Some(resume) = el.child("resume", crate::stream::sm::NS_SM) {
        inline.resume = Some(ResumeRequest {
            previd: resume.attr("previd").map(|p| p.into_owned()).unwrap_or_default(),
            h: resume.attr("h").and_then(|h| h.parse().ok()),
        });
    }
    if let Some(request) = el.child("request-token", NS_FAST) {
        inline.request_token = request.attr("mechanism").map(|m| m.into_owned());
    }
    if let Some(fast) = el.child("fast", NS_FAST) {
        inline.fast = Some(FastUse { invalidate: truthy(fast.attr("invalidate")) });
    }
    Ok(Authenticate { mechanism, initial_response, inline })
}

/// XEP-0388 §2.6.2: `<failure/>` with the RFC 6120 §6.5 condition.
pub fn write_failure(failure: Failure, text: Option<&str>, out: &mut Vec<u8>) {
    let mut w = XmlWriter::new(out);
    w.start("failure").attr("xmlns", NS_SASL2).open();
    w.empty_ns(failure.wire_name(), NS_SASL);
    if let Some(t) = text {
        w.start("text").open().text(t).end("text");
    }
    w.end("failure");
}

/// `<challenge/>` with a base64 payload.
pub fn write_challenge(payload: &[u8], out: &mut Vec<u8>) {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(payload);
    XmlWriter::new(out).start("challenge").attr("xmlns", NS_SASL2).open().text(&text).end("challenge");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Authenticate {
        use crate::xml::framer::{Event, Framer, Limits};
        let mut framer = Framer::new(Limits::default());
        let input = format!(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>{xml}"
        );
        assert_eq!(framer.feed(input.as_bytes()), input.len());
        assert!(matches!(framer.next_event(), Ok(Some(Event::Header(_)))));
        match framer.next_event() {
            Ok(Some(Event::Element(el))) => parse_authenticate(&el).unwrap(),
            _ => panic!("no element"),
        }
    }

    #[test]
    fn an_authenticate_request_with_everything_inline_parses() {
        let a = parse(
            "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-256'>\
             <initial-response>bixuPWp1bGlldCxyPWFiYw==</initial-response>\
             <user-agent id='d4565fa7'><software>X</software></user-agent>\
             <bind xmlns='urn:xmpp:bind:0'><tag>Phone</tag><enable xmlns='urn:xmpp:carbons:2'/>\
             <enable xmlns='urn:xmpp:sm:3' resume='true'/><inactive xmlns='urn:xmpp:csi:0'/></bind>\
             <request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/></authenticate>",
        );
        assert_eq!(a.mechanism, "SCRAM-SHA-256");
        assert_eq!(a.initial_response.as_deref(), Some(&b"n,n=juliet,r=abc"[..]));
        assert_eq!(a.inline.agent.as_deref(), Some("d4565fa7"));
        let bind = a.inline.bind.unwrap();
        assert_eq!(bind, BindRequest { tag: Some("Phone".into()), carbons: true, sm: Some(true), inactive: true });
        assert_eq!(a.inline.request_token.as_deref(), Some("HT-SHA-256-NONE"));
        let b = parse(
            "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='HT-SHA-256-NONE'>\
             <resume xmlns='urn:xmpp:sm:3' previd='abc' h='7'/><fast xmlns='urn:xmpp:fast:0' invalidate='1'/></authenticate>",
        );
        assert!(b.initial_response.is_none());
        assert_eq!(b.inline.resume, Some(ResumeRequest { previd: "abc".into(), h: Some(7) }));
        assert_eq!(b.inline.fast, Some(FastUse { invalidate: true }));
    }
}
