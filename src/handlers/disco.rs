//! XEP-0030: Service Discovery. disco#info on the server lists the identity and
//! every feature the handler table announces; on an account it lists the account
//! identity. disco#items on the server lists the connected components.

use super::{Handler, IqReply, IqRequest, IqType, Services, HANDLERS};
use crate::stanza::{Condition, StanzaError};
use crate::xml::writer::XmlWriter;

pub const NS_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const NS_ITEMS: &str = "http://jabber.org/protocol/disco#items";

pub const INFO: Handler = Handler {
    namespace: NS_INFO,
    element: "query",
    features: &[NS_INFO, NS_ITEMS],
    for_server: true,
    for_account: true,
    for_remote: true,
    handle: info,
};

pub const ITEMS: Handler = Handler {
    namespace: NS_ITEMS,
    element: "query",
    features: &[],
    for_server: true,
    for_account: true,
    for_remote: true,
    handle: items,
};

fn info(_: &Services<'_>, req: &IqRequest<'_>, _: &mut Vec<u8>) -> IqReply {
    if req.iq_type != IqType::Get {
        return IqReply::Error(StanzaError::new(Condition::BadRequest));
    }
    if req.payload.attr("node").is_some() {
        return IqReply::Error(StanzaError::new(Condition::ItemNotFound));
    }
    let mut p = Vec::new();
    let mut w = XmlWriter::new(&mut p);
    w.start("query").attr("xmlns", NS_INFO).open();
    if req.on_behalf_of.is_some() {
        w.start("identity").attr("category", "account").attr("type", "registered").close_empty();
    } else {
        w.start("identity").attr("category", "server").attr("type", "im").attr("name", "wrenhub").close_empty();
    }
    let mut features: Vec<&str> = HANDLERS
        .iter()
        .filter(|h| if req.on_behalf_of.is_some() { h.for_account } else { h.for_server })
        .flat_map(|h| h.features.iter().copied())
        .collect();
    features.sort_unstable();
    features.dedup();
    for f in features {
        XmlWriter::new(&mut p).start("feature").attr("var", f).close_empty();
    }
    XmlWriter::new(&mut p).end("query");
    IqReply::Result(Some(p))
}

/// The server's items are the connected components (XEP-0114 gateways).
fn items(services: &Services<'_>, req: &IqRequest<'_>, _: &mut Vec<u8>) -> IqReply {
    if req.iq_type != IqType::Get {
        return IqReply::Error(StanzaError::new(Condition::BadRequest));
    }
    let domains = if req.on_behalf_of.is_none() { services.components.domains() } else { Vec::new() };
    let mut p = Vec::new();
    let mut w = XmlWriter::new(&mut p);
    w.start("query").attr("xmlns", NS_ITEMS);
    if domains.is_empty() {
        w.close_empty();
    } else {
        w.open();
        for d in &domains {
            XmlWriter::new(&mut p).start("item").attr("jid", d).close_empty();
        }
        XmlWriter::new(&mut p).end("query");
    }
    IqReply::Result(Some(p))
}

/// XEP-0115 §5.1: the verification string of the server's disco#info (identity
/// `server/im//wrenhub`, then the sorted features), SHA-1, base64.
pub fn server_caps_ver() -> String {
    use base64::Engine;
    let mut features: Vec<&str> =
        HANDLERS.iter().filter(|h| h.for_server).flat_map(|h| h.features.iter().copied()).collect();
    features.sort_unstable();
    features.dedup();
    let mut s = String::from("server/im//wrenhub<");
    for f in features {
        s.push_str(f);
        s.push('<');
    }
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// `http://jabber.org/protocol/caps`
pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
/// The node wrenhub names in its caps.
pub const CAPS_NODE: &str = "https://wrenhub.invalid/caps";
